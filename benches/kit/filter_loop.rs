//! What the filter-loop benchmark and its instruction-count example share: the rule sets
//! (TOML files under `benches/rules/`), the traffic mixes, and a loop over the NIC model whose
//! RX ring is filled outside the measured part.
//!
//! Included with `#[path]` by `benches/filter_loop.rs` and `examples/filter_instr.rs`.

use floodgate::config::Config;
use floodgate::daemon::filterloop::{FilterLoop, LoopOptions};
use floodgate::daemon::run::pmd_config;
use floodgate::sink::CountingSink;
use floodgate_pmd::IxgbeVf;
use floodgate_sim::generator::{
    build_udp4, write_dns_query, FloodConfig, FloodPayload, Generator, GeneratorConfig,
    LegitConfig, Rate, SplitMix64, TrafficClass, MAX_GEN_FRAME,
};
use floodgate_sim::{Feeder, Nic, NicConfig, SimVf};

/// The rule sets: name and TOML file (relative to the crate root).
pub const RULE_SETS: [(&str, &str); 3] = [
    ("demo", "benches/rules/demo.toml"),
    ("operator", "benches/rules/operator.toml"),
    ("tcpdump", "benches/rules/tcpdump.toml"),
];

/// The traffic mixes.
pub const MIXES: [&str; 2] = ["demo-mix", "reflection-mix"];

/// Distinct frames per mix (the feeder writes them in turn).
pub const MIX_FRAMES: usize = 4096;

/// The demo's steered traffic: the generator's flood from random sources to the DNS port and
/// the known clients' queries (weights 90:2, as in `floodgate demo`; the background traffic
/// is not steered into the VF).
pub fn demo_mix(dst_mac: [u8; 6]) -> Vec<Vec<u8>> {
    let mut g = Generator::new(GeneratorConfig {
        rate: Rate::MaxSpeed,
        dst_mac,
        flood: FloodConfig {
            weight: 90,
            payload: FloodPayload::Random { min: 16, max: 64 },
            heavy_sources: Vec::new(),
            heavy_percent: 0,
        },
        legit: LegitConfig {
            weight: 2,
            ..GeneratorConfig::default().legit
        },
        background: floodgate_sim::generator::BackgroundConfig {
            weight: 0,
            ..GeneratorConfig::default().background
        },
        ..GeneratorConfig::default()
    })
    .expect("generator config");
    let mut buf = vec![0u8; MAX_GEN_FRAME];
    let mut out = Vec::with_capacity(MIX_FRAMES);
    while out.len() < MIX_FRAMES {
        let m = g.next_into(&mut buf).expect("generator");
        if m.class != TrafficClass::Background {
            out.push(buf[..m.len].to_vec());
        }
    }
    out
}

/// A DNS-reflection flood: responses (QR set, 100-480 bytes) from random resolvers' port 53 to
/// the server's port 53, with one legitimate query from a known client in every 50 frames.
pub fn reflection_mix(dst_mac: [u8; 6]) -> Vec<Vec<u8>> {
    let src_mac = [0x02, 0, 0, 0, 0x0a, 0x01];
    let server = [10, 0, 0, 1];
    let clients = GeneratorConfig::default().legit.clients;
    let mut rng = SplitMix64::new(0x0F1E_C7ED);
    let mut buf = vec![0u8; MAX_GEN_FRAME];
    let mut msg = [0u8; 512];
    let mut out = Vec::with_capacity(MIX_FRAMES);
    for i in 0..MIX_FRAMES {
        let id = rng.next_u64() as u16;
        let q = write_dns_query(&mut msg, id, "example.com", 255).expect("query");
        let (src, sport, len) = if i % 50 == 0 {
            (
                clients[i / 50 % clients.len()],
                1024 + rng.below(60000) as u16,
                q,
            )
        } else {
            // The response: QR, AA and RA set, one answer; the answer bytes are random.
            msg[2] = 0x84;
            msg[3] = 0x80;
            msg[6..8].copy_from_slice(&1u16.to_be_bytes());
            let len = 100 + rng.below(381) as usize;
            for b in &mut msg[q..len] {
                *b = rng.next_u64() as u8;
            }
            let ip = (rng.next_u64() as u32 % (223 << 24)) + (1 << 24);
            (ip.to_be_bytes(), 53, len)
        };
        let n = build_udp4(
            &mut buf,
            dst_mac,
            src_mac,
            src,
            server,
            sport,
            53,
            &msg[..len],
        )
        .expect("frame");
        out.push(buf[..n].to_vec());
    }
    out
}

/// The frames of mix `name`.
pub fn mix(name: &str, dst_mac: [u8; 6]) -> Vec<Vec<u8>> {
    match name {
        "demo-mix" => demo_mix(dst_mac),
        "reflection-mix" => reflection_mix(dst_mac),
        other => panic!("no traffic mix {other:?}"),
    }
}

/// A filter loop on VF 0 of a fresh model, with the rules of `toml`, and a feeder that writes
/// the frames of `mix` into its RX ring.
pub struct Bench {
    pub nic: Nic,
    pub fl: FilterLoop<IxgbeVf<SimVf>, CountingSink>,
    pub feeder: Feeder,
    /// Ring size minus one: the most frames one fill can write.
    pub ring: usize,
}

impl Bench {
    pub fn new(toml: &str, mix_name: &str) -> Bench {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(toml);
        let cfg = Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let nic = Nic::new(NicConfig {
            num_vfs: 1,
            capture_egress: false,
            ..Default::default()
        });
        let mut pc = pmd_config(&cfg);
        pc.max_queues = Some(1);
        let ring = pc.rx_ring_size;
        let vf = IxgbeVf::open(nic.vf(0), pc).expect("bring-up against the model");
        let frames = mix(mix_name, vf.mac());
        let feeder = nic.feeder_mix(0, 0, &frames);
        let opts = LoopOptions::inline(cfg.device.burst as usize, CountingSink::default());
        let fl = FilterLoop::new(vf, cfg.filter.ruleset(), opts).expect("the filter loop");
        Bench {
            nic,
            fl,
            feeder,
            ring: ring - 1,
        }
    }

    /// Model side: fills up to `max` descriptors; returns the frames written.
    #[inline(never)]
    pub fn fill(&mut self, max: usize) -> usize {
        self.feeder.fill_max(max.min(self.ring))
    }

    /// The daemon's per-packet work: polls until `n` packets were received and judged.
    #[inline(never)]
    pub fn filter(&mut self, n: usize, now_ns: u64) -> usize {
        let mut got = 0;
        let mut empty = 0u32;
        while got < n {
            let k = self.fl.poll(now_ns);
            got += k;
            empty = if k == 0 { empty + 1 } else { 0 };
            assert!(
                empty < 1_000_000,
                "frames never arrived: {:?}",
                self.fl.counters()
            );
        }
        got
    }
}
