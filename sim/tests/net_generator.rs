//! Traffic generator: determinism, class mix, valid IPv4/UDP/TCP headers, real DNS queries,
//! rate timestamps.

use floodgate_sim::frame::{FrameInfo, L3, L4};
use floodgate_sim::generator::{
    inet_checksum, parse_dns_query, FloodPayload, GenError, Generator, GeneratorConfig, Rate,
    TrafficClass, MAX_GEN_FRAME,
};

fn run(cfg: GeneratorConfig, n: usize) -> Vec<(TrafficClass, Vec<u8>)> {
    let mut g = Generator::new(cfg).unwrap();
    let mut buf = vec![0u8; MAX_GEN_FRAME];
    (0..n)
        .map(|_| {
            let f = g.next_into(&mut buf).unwrap();
            (f.class, buf[..f.len].to_vec())
        })
        .collect()
}

fn l4_checksum_ok(f: &[u8], info: &FrameInfo) -> bool {
    let L3::Ipv4 {
        src, dst, proto, ..
    } = info.l3
    else {
        return false;
    };
    let ip = &f[info.l3_offset..];
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let l4 = &ip[20..total];
    let mut sum = 0u32;
    for c in [src, dst] {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]))
            + u32::from(u16::from_be_bytes([c[2], c[3]]));
    }
    sum += u32::from(proto) + l4.len() as u32;
    inet_checksum(l4, sum) == 0
}

#[test]
fn same_seed_same_frames_other_seed_other_frames() {
    let a = run(GeneratorConfig::default(), 500);
    let b = run(GeneratorConfig::default(), 500);
    assert_eq!(a, b);
    let c = run(
        GeneratorConfig {
            seed: 7,
            ..Default::default()
        },
        500,
    );
    assert_ne!(a, c);
}

#[test]
fn every_frame_is_well_formed() {
    let cfg = GeneratorConfig::default();
    let frames = run(cfg.clone(), 3000);
    let mut counts = [0usize; 3];
    for (class, f) in &frames {
        assert!(f.len() >= 60 && f.len() <= 1514);
        let info = FrameInfo::parse(f).unwrap();
        assert_eq!(info.dst_mac, cfg.dst_mac);
        let L3::Ipv4 { dst, src, .. } = info.l3 else {
            panic!("not IPv4")
        };
        assert_eq!(dst, cfg.server_ip);
        // IPv4 header checksum verifies to 0, total length fits the frame.
        let ip = &f[14..34];
        assert_eq!(inet_checksum(ip, 0), 0);
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        assert!(14 + total <= f.len());
        assert!(l4_checksum_ok(f, &info), "bad L4 checksum");
        match class {
            TrafficClass::Flood => {
                counts[0] += 1;
                assert!(matches!(info.l4, L4::Udp { dst: 53, .. }));
                assert!(!cfg.legit.clients.contains(&src));
            }
            TrafficClass::Legit => {
                counts[1] += 1;
                let L4::Udp { dst: 53, .. } = info.l4 else {
                    panic!("legit not UDP/53")
                };
                assert!(cfg.legit.clients.contains(&src));
                let udp = &f[34..];
                let ulen = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
                assert_eq!(ulen, total - 20);
                let (_, qname, qtype) = parse_dns_query(&udp[8..ulen]).expect("real DNS query");
                assert!(cfg.legit.qnames.contains(&qname));
                assert!(qtype == 1 || qtype == 28);
            }
            TrafficClass::Background => {
                counts[2] += 1;
                assert_ne!(info.l4.ports().unwrap().1, 53);
            }
        }
    }
    // 90/2/8 mix: loose bounds on 3000 frames.
    assert!(
        counts[0] > 2500 && counts[1] > 20 && counts[2] > 150,
        "{counts:?}"
    );
}

#[test]
fn random_subdomain_flood_is_dns_too() {
    let cfg = GeneratorConfig {
        flood: floodgate_sim::generator::FloodConfig {
            weight: 1,
            payload: FloodPayload::RandomSubdomains {
                domain: "victim.example".into(),
            },
            heavy_sources: Vec::new(),
            heavy_percent: 0,
        },
        ..Default::default()
    };
    for (class, f) in run(cfg, 200) {
        if class == TrafficClass::Flood {
            let (_, name, _) = parse_dns_query(&f[42..]).unwrap();
            assert!(
                name.ends_with(".victim.example") && name.len() == 12 + 15,
                "{name}"
            );
        }
    }
}

#[test]
fn vlan_tag_is_applied() {
    let cfg = GeneratorConfig {
        vlan: Some(77),
        ..Default::default()
    };
    for (_, f) in run(cfg, 50) {
        assert_eq!(FrameInfo::parse(&f).unwrap().vlan_id(), Some(77));
    }
}

#[test]
fn rate_gives_virtual_timestamps() {
    let mut g = Generator::new(GeneratorConfig {
        rate: Rate::Pps(4),
        ..Default::default()
    })
    .unwrap();
    let mut buf = [0u8; MAX_GEN_FRAME];
    let ts: Vec<u64> = (0..5)
        .map(|_| g.next_into(&mut buf).unwrap().time_ns)
        .collect();
    assert_eq!(
        ts,
        vec![0, 250_000_000, 500_000_000, 750_000_000, 1_000_000_000]
    );
    // 5 frames generated; after 2 s, 8 were due in total: 3 more.
    assert_eq!(g.frames_due(2_000_000_000), 3);
    let g = Generator::new(GeneratorConfig {
        rate: Rate::MaxSpeed,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(g.frames_due(1), u64::MAX);
}

#[test]
fn small_buffer_is_an_error_and_consumes_nothing() {
    let mut g = Generator::new(GeneratorConfig::default()).unwrap();
    let mut small = [0u8; 100];
    assert!(matches!(
        g.next_into(&mut small),
        Err(GenError::BufferTooSmall { .. })
    ));
    assert_eq!(g.generated(), 0);
    let mut buf = [0u8; MAX_GEN_FRAME];
    let first = g.next_into(&mut buf).unwrap();
    let again = run(GeneratorConfig::default(), 1);
    assert_eq!(buf[..first.len], again[0].1[..]);
}

/// The bytes the generator produces for a seed are fixed: a digest of the first 20 000 frames of
/// four configurations (with and without a VLAN tag, random and random-subdomain flood
/// payloads, background TCP and UDP), so that speed work on the generator cannot change its
/// output unnoticed.
#[test]
fn output_is_stable_across_implementations() {
    let mut cfgs = Vec::new();
    for (vlan, subdomains) in [
        (None, false),
        (Some(100), false),
        (None, true),
        (Some(7), true),
    ] {
        let mut c = GeneratorConfig {
            rate: Rate::MaxSpeed,
            vlan,
            ..GeneratorConfig::default()
        };
        c.background.weight = 30;
        if subdomains {
            c.flood.payload = FloodPayload::RandomSubdomains {
                domain: "victim.example".into(),
            };
        }
        cfgs.push(c);
    }
    let mut digests = Vec::new();
    for cfg in cfgs {
        let mut g = Generator::new(cfg).unwrap();
        // FNV-1a over every frame's length, class and bytes.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |b: u8| {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        };
        let mut buf = vec![0xa5u8; MAX_GEN_FRAME];
        for _ in 0..20_000 {
            let f = g.next_into(&mut buf).unwrap();
            for b in (f.len as u32).to_le_bytes() {
                eat(b);
            }
            eat(f.class as u8);
            for &b in &buf[..f.len] {
                eat(b);
            }
        }
        digests.push(h);
    }
    assert_eq!(
        digests,
        [
            0xc624_52cc_51df_84c5,
            0x8283_82a0_6fa8_f066,
            0x5f92_950b_bb01_ac1b,
            0x8e41_9fa6_2b48_259a,
        ],
        "digests {digests:#x?}"
    );
}

#[test]
fn heavy_sources_take_their_share_of_the_flood_first_ones_most() {
    let heavy = vec![[198, 18, 7, 1], [198, 18, 7, 2], [198, 18, 7, 3]];
    let mut cfg = GeneratorConfig {
        rate: Rate::MaxSpeed,
        ..Default::default()
    };
    cfg.flood.heavy_sources = heavy.clone();
    cfg.flood.heavy_percent = 30;
    let frames = run(cfg, 20_000);
    let mut from = [0usize; 3];
    let mut flood = 0;
    for (class, f) in &frames {
        if *class != TrafficClass::Flood {
            continue;
        }
        flood += 1;
        let src: [u8; 4] = f[26..30].try_into().unwrap();
        if let Some(i) = heavy.iter().position(|h| *h == src) {
            from[i] += 1;
        }
        let info = FrameInfo::parse(f).unwrap();
        assert!(l4_checksum_ok(f, &info), "heavy or not, checksums hold");
    }
    let share = from.iter().sum::<usize>() as f64 / flood as f64;
    assert!(
        (0.27..0.33).contains(&share),
        "{share} of the flood from heavy sources"
    );
    assert!(from[0] > from[1] && from[1] > from[2], "{from:?}");
    // Without heavy sources the traffic of a seed is what it always was.
    let plain = run(GeneratorConfig::default(), 2000);
    let mut cfg = GeneratorConfig::default();
    cfg.flood.heavy_sources = heavy;
    cfg.flood.heavy_percent = 0;
    assert_eq!(plain, run(cfg, 2000));
}
