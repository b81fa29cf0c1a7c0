//! Soft RSS: dissector + symmetric hash per encapsulation (packets/s on one core), and Toeplitz
//! table-driven against bitwise in the same run.
//!
//! `cargo bench --bench soft_rss` — criterion's "thrpt" column is in packets (elements) per
//! second.
//!
//! Also a worker's judging: the rules of `benches/rules/` parsing each frame again
//! (`RuleSet::classify`) against reading the dispatcher's headroom record
//! (`RuleSet::classify_dispatched`).

use criterion::{black_box, criterion_group, Criterion, Throughput};
use floodgate::config::Config;
use floodgate::filter::{Decision, RuleSet};
use floodgate::softrss::{
    toeplitz_bitwise, Classified, Dispatcher, FramePacket, HashAlgorithm, RssConfig, SoftRss,
    Toeplitz, SYMMETRIC_KEY,
};
use std::time::Duration;

#[path = "../tests/softrss_util/mod.rs"]
pub mod softrss_util;
use softrss_util::{build, flow, Encap, L4};

const BATCH: usize = 1024;

fn frames(encap: Encap, v6: bool) -> Vec<Vec<u8>> {
    (0..BATCH as u32)
        .map(|i| {
            let f = flow(i * 7 + 1, v6, L4::Udp);
            // Inner flows to ports other than the tunnel ports.
            let f = softrss_util::Flow { dport: 53, ..f };
            // 64-byte-ish payloads as in a flood.
            build(&f, encap, !i.is_multiple_of(2), &[0u8; 18])
        })
        .collect()
}

const CASES: [(&str, Encap, bool); 14] = [
    ("udp4", Encap::Plain, false),
    ("udp6", Encap::Plain, true),
    ("vlan", Encap::Vlan, false),
    ("qinq", Encap::QinQ, false),
    ("pppoe", Encap::Pppoe, false),
    ("ipv6_ext", Encap::Ipv6Ext, true),
    ("gre", Encap::Gre, false),
    ("gre_csum_key_seq", Encap::GreKeySeqCsum, false),
    ("gre_eth", Encap::GreEth, false),
    ("gtpu", Encap::GtpU, false),
    ("gtpu_ext", Encap::GtpUExt, false),
    ("vxlan", Encap::Vxlan, false),
    ("ipip", Encap::IpIp4, false),
    ("qinq_pppoe_gre_gtpu", Encap::GreGtpU, false),
];

const ALGS: [(&str, HashAlgorithm); 2] = [
    ("toeplitz", HashAlgorithm::ToeplitzSymmetric),
    ("fast", HashAlgorithm::Fast { seed: 1 }),
];

fn dissect_hash(c: &mut Criterion) {
    let cases = CASES;
    for (alg_name, alg) in ALGS {
        let rss = SoftRss::new(RssConfig {
            workers: 4,
            algorithm: alg,
            ..RssConfig::default()
        })
        .expect("config");
        let mut g = c.benchmark_group(format!("soft_rss/{alg_name}"));
        g.throughput(Throughput::Elements(BATCH as u64));
        for (name, encap, v6) in cases {
            let fr = frames(encap, v6);
            g.bench_function(name, |b| {
                let mut c = Classified::default();
                b.iter(|| {
                    let mut acc = 0usize;
                    for f in &fr {
                        rss.classify_into(black_box(f), &mut c);
                        acc = acc.wrapping_add(c.worker ^ c.hash as usize);
                    }
                    acc
                })
            });
        }
        g.finish();
    }
}

fn toeplitz(c: &mut Criterion) {
    let table = Toeplitz::new(&SYMMETRIC_KEY);
    let inputs: Vec<[u8; 36]> = (0..BATCH as u64)
        .map(|i| {
            let mut a = [0u8; 36];
            for (k, b) in a.iter_mut().enumerate() {
                *b = (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (k % 8 * 8)) as u8 ^ k as u8;
            }
            a
        })
        .collect();
    let mut g = c.benchmark_group("toeplitz");
    g.throughput(Throughput::Elements(BATCH as u64));
    for (name, len) in [("ipv4_tcp_12B", 12usize), ("ipv6_tcp_36B", 36)] {
        g.bench_function(format!("table/{name}"), |b| {
            b.iter(|| {
                let mut acc = 0u32;
                for x in &inputs {
                    acc ^= table.hash(black_box(&x[..len])).unwrap_or(0);
                }
                acc
            })
        });
        g.bench_function(format!("bitwise/{name}"), |b| {
            b.iter(|| {
                let mut acc = 0u32;
                for x in &inputs {
                    acc ^= toeplitz_bitwise(&SYMMETRIC_KEY, black_box(&x[..len])).unwrap_or(0);
                }
                acc
            })
        });
    }
    g.finish();
}

/// A bench packet: owned bytes plus a 128-byte headroom.
struct BenchPkt {
    data: Box<[u8]>,
    headroom: Box<[u8; 128]>,
}

impl FramePacket for BenchPkt {
    fn data(&self) -> &[u8] {
        &self.data
    }
    fn headroom(&self) -> &[u8] {
        &self.headroom[..]
    }
    fn headroom_mut(&mut self) -> &mut [u8] {
        &mut self.headroom[..]
    }
}

/// Dispatcher round trip on one core: classify, write metadata, push to one of 4 rings, then
/// pop everything back (the pop side is included in the figure).
fn dispatch(c: &mut Criterion) {
    let rss = SoftRss::new(RssConfig {
        workers: 4,
        algorithm: HashAlgorithm::Fast { seed: 1 },
        ..RssConfig::default()
    })
    .expect("config");
    let (mut d, mut queues) = Dispatcher::<BenchPkt>::new(rss, BATCH).expect("dispatcher");
    let mut pkts: Vec<BenchPkt> = frames(Encap::GtpU, false)
        .into_iter()
        .map(|f| BenchPkt {
            data: f.into_boxed_slice(),
            headroom: Box::new([0; 128]),
        })
        .collect();
    let mut g = c.benchmark_group("dispatch");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("gtpu_4_workers_push_pop", |b| {
        b.iter(|| {
            let n = d.dispatch_burst(pkts.drain(..));
            for q in queues.iter_mut() {
                q.pop_burst(&mut pkts, BATCH);
            }
            n
        })
    });
    g.finish();
}

/// The measured loop of the instruction-count mode (kept out of line so that callgrind's
/// `--toggle-collect` can isolate it).
#[inline(never)]
fn ipp_loop(rss: &SoftRss, frames: &[Vec<u8>], rounds: usize) -> usize {
    let mut c = Classified::default();
    let mut acc = 0usize;
    for _ in 0..rounds {
        for f in frames {
            rss.classify_into(black_box(f), &mut c);
            acc = acc.wrapping_add(c.worker ^ c.hash as usize);
        }
    }
    acc
}

/// Instruction-count mode: `SOFT_RSS_IPP=fast/udp4 valgrind --tool=callgrind
/// --toggle-collect='*ipp_loop*' <bench binary>`; divide the collected Ir by the packet
/// count printed. `SOFT_RSS_ROUNDS=n` repeats the batch n times (default 10), e.g. for
/// `perf stat -e cycles:u` at two round counts (the difference cancels the setup).
fn ipp_mode(case: &str) {
    let rounds = std::env::var("SOFT_RSS_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    if case.starts_with("judge/") {
        judge_ipp_mode(case, rounds);
        return;
    }
    for (alg_name, alg) in ALGS {
        for (name, encap, v6) in CASES {
            if case != format!("{alg_name}/{name}") {
                continue;
            }
            let rss = SoftRss::new(RssConfig {
                workers: 4,
                algorithm: alg,
                ..RssConfig::default()
            })
            .expect("config");
            let fr = frames(encap, v6);
            let acc = ipp_loop(&rss, &fr, rounds);
            println!("{case}: {} packets (acc {acc})", rounds * fr.len());
            return;
        }
    }
    eprintln!("unknown case {case}");
}

/// The rule sets a worker judges with in the judging benchmarks.
const JUDGE_RULES: [&str; 2] = ["demo", "operator"];

fn rules(name: &str) -> RuleSet {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches/rules")
        .join(format!("{name}.toml"));
    let cfg = Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    cfg.filter.ruleset()
}

/// The frames of one case with the headroom the dispatcher wrote for each.
fn dispatched(encap: Encap, v6: bool) -> (Vec<Vec<u8>>, Vec<[u8; 128]>) {
    let rss = SoftRss::new(RssConfig {
        workers: 4,
        ..RssConfig::default()
    })
    .expect("config");
    let fr = frames(encap, v6);
    let rooms = fr
        .iter()
        .map(|f| {
            let mut room = [0u8; 128];
            let m = rss.classify(f).meta().for_frame(f);
            m.write_to(&mut room).expect("128-byte headroom");
            room
        })
        .collect();
    (fr, rooms)
}

/// The measured loop of a worker's judging: with `meta` the rules read the headroom record,
/// without they parse each frame again. Returns the number of drops.
#[inline(never)]
fn judge_loop(
    rs: &mut RuleSet,
    frames: &[Vec<u8>],
    rooms: &[[u8; 128]],
    rounds: usize,
    meta: bool,
) -> usize {
    let mut drops = 0;
    for r in 0..rounds {
        let now = r as u64 * 1_000_000;
        for (f, room) in frames.iter().zip(rooms) {
            let v = if meta {
                rs.classify_dispatched(black_box(f), black_box(room), now).0
            } else {
                rs.classify(black_box(f), now)
            };
            drops += usize::from(v.action == Decision::Drop);
        }
    }
    drops
}

const JUDGE_CASES: [(&str, Encap, bool); 4] = [
    ("udp4", Encap::Plain, false),
    ("udp6", Encap::Plain, true),
    ("vlan", Encap::Vlan, false),
    ("gtpu", Encap::GtpU, false),
];

fn worker_judge(c: &mut Criterion) {
    let mut g = c.benchmark_group("worker_judge");
    g.throughput(Throughput::Elements(BATCH as u64));
    for rules_name in JUDGE_RULES {
        for (name, encap, v6) in JUDGE_CASES {
            let (fr, rooms) = dispatched(encap, v6);
            for (how, meta) in [("reparse", false), ("headroom", true)] {
                let mut rs = rules(rules_name);
                g.bench_function(format!("{rules_name}/{name}/{how}"), |b| {
                    b.iter(|| judge_loop(&mut rs, &fr, &rooms, 1, meta))
                });
            }
        }
    }
    g.finish();
}

/// Instruction-count mode of a worker's judging: `SOFT_RSS_IPP=judge/<rules>/<case>/<how>`
/// with `how` = `reparse` or `headroom`, and `--toggle-collect='*judge_loop*'`.
fn judge_ipp_mode(case: &str, rounds: usize) {
    for rules_name in JUDGE_RULES {
        for (name, encap, v6) in JUDGE_CASES {
            for (how, meta) in [("reparse", false), ("headroom", true)] {
                if case != format!("judge/{rules_name}/{name}/{how}") {
                    continue;
                }
                let (fr, rooms) = dispatched(encap, v6);
                let mut rs = rules(rules_name);
                let drops = judge_loop(&mut rs, &fr, &rooms, rounds, meta);
                println!("{case}: {} packets ({drops} dropped)", rounds * fr.len());
                return;
            }
        }
    }
    eprintln!("unknown case {case}");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = dissect_hash, toeplitz, dispatch, worker_judge
}
fn main() {
    if let Ok(case) = std::env::var("SOFT_RSS_IPP") {
        ipp_mode(&case);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
