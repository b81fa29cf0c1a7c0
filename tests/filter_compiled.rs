//! The compiled decision program against the plain reading of the rules: on random rule lists
//! and random frames, the deciding rule (first match wins), the action and every rule's hit
//! count are the same as a walk over the rules in order; the burst form gives the same verdicts
//! and counters as frame-by-frame classification; the straight-line parse, the header walk and
//! the parse read back from the soft-RSS metadata agree.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use floodgate::bpf::{parse_bytecode, CompiledBpf, Program};
use floodgate::filter::reference::walk;
use floodgate::filter::*;
use floodgate::pcapfile::RotationPolicy;
use floodgate::softrss::{RssConfig, SoftRss};
use proptest::prelude::*;

const V4: [[u8; 4]; 4] = [
    [10, 0, 0, 1],
    [10, 0, 1, 2],
    [192, 0, 2, 7],
    [203, 0, 113, 9],
];
const V6: [u16; 3] = [0x1, 0xbad, 0xface];
const PORTS: [u16; 6] = [0, 53, 80, 443, 1024, 65535];

fn v6(tail: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, tail)
}

fn bpf(text: &str) -> Arc<CompiledBpf> {
    Arc::new(CompiledBpf::new(
        &Program::new(&parse_bytecode(text).unwrap()).unwrap(),
    ))
}

fn arb_cidr() -> impl Strategy<Value = Cidr> {
    prop_oneof![
        (0..V4.len(), 0u8..=32).prop_map(|(i, len)| Cidr {
            addr: IpAddr::V4(Ipv4Addr::from(V4[i])),
            len,
        }),
        (
            0..V6.len(),
            prop_oneof![Just(0u8), Just(32), Just(64), Just(128)]
        )
            .prop_map(|(i, len)| Cidr {
                addr: IpAddr::V6(v6(V6[i])),
                len,
            }),
    ]
}

fn arb_ports() -> impl Strategy<Value = PortSet> {
    prop_oneof![
        3 => prop::collection::vec(
            prop_oneof![
                (0..PORTS.len()).prop_map(|i| (PORTS[i], PORTS[i])),
                (0u16..2000, 0u16..2000).prop_map(|(a, b)| (a.min(b), a.max(b))),
                Just((1024, 65535)),
            ],
            1..3,
        ),
        // Single ports spread out: more than 8 ranges, which the burst classifier tests per
        // frame instead of with vector compares.
        1 => prop::collection::vec(
            prop_oneof![
                (0..PORTS.len()).prop_map(|i| (PORTS[i], PORTS[i])),
                (0u16..=6000).prop_map(|p| (p * 10 + 1, p * 10 + 1)),
            ],
            9..20,
        ),
    ]
    .prop_map(|r| PortSet::new(&r))
}

fn arb_proto() -> impl Strategy<Value = Proto> {
    prop_oneof![
        Just(Proto::Udp),
        Just(Proto::Tcp),
        Just(Proto::Icmp),
        Just(Proto::Sctp),
        (0u8..=255).prop_map(Proto::Number),
    ]
}

fn arb_matcher() -> impl Strategy<Value = Matcher> {
    prop_oneof![
        prop::collection::vec(arb_proto(), 1..3).prop_map(|p| Matcher::Proto(ProtoSet::new(&p))),
        any::<bool>().prop_map(Matcher::Ipv4),
        prop::collection::vec(arb_cidr(), 1..4).prop_map(|c| Matcher::Src(CidrSet::new(&c))),
        prop::collection::vec(arb_cidr(), 1..4).prop_map(|c| Matcher::Dst(CidrSet::new(&c))),
        // Many prefixes (more than 8 merged IPv4 ranges: binary search per frame).
        prop::collection::vec(
            prop_oneof![
                arb_cidr(),
                (any::<u32>(), 20u8..=32).prop_map(|(a, len)| Cidr {
                    addr: IpAddr::V4(Ipv4Addr::from(a)),
                    len,
                }),
            ],
            9..24
        )
        .prop_map(|c| Matcher::Src(CidrSet::new(&c))),
        arb_ports().prop_map(Matcher::SrcPort),
        arb_ports().prop_map(Matcher::DstPort),
        (0u32..200, 0u32..300).prop_map(|(a, b)| Matcher::Len(vec![(a, a + b)])),
        prop::collection::vec((0u32..200, 0u32..30), 9..12)
            .prop_map(|r| Matcher::Len(r.into_iter().map(|(a, b)| (a, a + b)).collect())),
        (
            prop_oneof![Just(Layer::L2), Just(Layer::L3), Just(Layer::L4)],
            0u16..80,
            prop::collection::vec(any::<u8>(), 1..17),
            any::<u64>(),
        )
            .prop_map(|(layer, off, value, mbits)| {
                // Sparse masks, so that random frames match now and then.
                let mask: Vec<u8> = (0..value.len())
                    .map(|i| {
                        if mbits >> (i % 64) & 1 == 1 {
                            1 << ((mbits >> ((i * 3) % 61)) & 7)
                        } else {
                            0
                        }
                    })
                    .collect();
                Matcher::Bytes(ByteMatch::new(layer, off, &value, Some(&mask)).unwrap())
            }),
        prop_oneof![
            Just("4,40 0 0 12,21 0 1 34525,6 0 0 65535,6 0 0 0"),
            Just("4,48 0 0 23,21 0 1 17,6 0 0 65535,6 0 0 0"),
        ]
        .prop_map(|t| Matcher::Bpf(bpf(t))),
    ]
}

fn arb_action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => Just(Action::Drop),
        3 => Just(Action::Pass),
        // Every 1 to 7 frames: the burst classifier counts down a whole chunk at once when
        // no sample is due in it (the writes fail, and the failures are counted).
        1 => (1u64..8).prop_map(|every| Action::Sample(Sample {
            every,
            policy: RotationPolicy {
                path: "/nonexistent-dir/floodgate/compiled.pcap".into(),
                max_bytes: 1 << 20,
                max_files: 1,
                snaplen: 128,
                format: Default::default(),
                rule: String::new(),
            },
        })),
        1 => Just(Action::RateLimit(RateLimit {
            // Never runs dry within a test: the limit always passes.
            rate_pps: 1_000_000_000,
            burst: 1_000_000,
            key: RateKey::Flow,
            table_size: 64,
        })),
    ]
}

fn arb_rules() -> impl Strategy<Value = Vec<Rule>> {
    prop::collection::vec(
        (prop::collection::vec(arb_matcher(), 0..4), arb_action()),
        0..8,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (m, a))| Rule::new(format!("r{i}"), m, a))
            .collect()
    })
}

/// Frames shaped like traffic (Ethernet, optional VLAN tags, IPv4 or IPv6, transport header),
/// with random fields from small pools so that rules match, cut anywhere; or random bytes.
fn arb_frame() -> impl Strategy<Value = Vec<u8>> {
    let shaped = (
        0u8..3, // VLAN tags
        0u8..4, // 0: IPv4, 1: IPv6, 2: IPv6 + fragment header, 3: ARP
        prop_oneof![
            Just(17u8),
            Just(6),
            Just(1),
            Just(58),
            Just(132),
            any::<u8>()
        ],
        (0..V4.len(), 0..V4.len(), 0..V6.len(), 0..V6.len()),
        (0..PORTS.len(), 0..PORTS.len(), 0u16..2000),
        (any::<bool>(), 0u16..3, any::<u8>()),
        prop::collection::vec(any::<u8>(), 0..120),
        any::<u16>(),
    )
        .prop_map(
            |(
                tags,
                l3,
                proto,
                (s4, d4, s6, d6),
                (sp, dp, rp),
                (rand_port, frag, ihl),
                payload,
                cut,
            )| {
                let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
                for t in 0..tags {
                    f.extend_from_slice(if t == 0 { &[0x88, 0xa8] } else { &[0x81, 0x00] });
                    f.extend_from_slice(&[0, 7]);
                }
                let (sport, dport) = if rand_port {
                    (rp, PORTS[dp])
                } else {
                    (PORTS[sp], PORTS[dp])
                };
                match l3 {
                    0 => {
                        f.extend_from_slice(&[0x08, 0x00]);
                        let ihl = if ihl < 200 { 5 } else { ihl % 16 };
                        let total = (ihl as usize * 4 + 8 + payload.len()) as u16;
                        f.push(0x40 | ihl);
                        f.push(0);
                        f.extend_from_slice(&total.to_be_bytes());
                        f.extend_from_slice(&[0, 1]);
                        f.extend_from_slice(&(frag * 0x1000 / 2).to_be_bytes());
                        f.extend_from_slice(&[64, proto, 0, 0]);
                        f.extend_from_slice(&V4[s4]);
                        f.extend_from_slice(&V4[d4]);
                        for _ in 5..ihl.max(5) {
                            f.extend_from_slice(&[1, 1, 1, 1]);
                        }
                    }
                    1 | 2 => {
                        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
                        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
                        f.push(if l3 == 2 { 44 } else { proto });
                        f.push(64);
                        f.extend_from_slice(&v6(V6[s6]).octets());
                        f.extend_from_slice(&v6(V6[d6]).octets());
                        if l3 == 2 {
                            f.extend_from_slice(&[proto, 0, 0, (frag as u8) << 3, 0, 0, 0, 1]);
                        }
                    }
                    _ => f.extend_from_slice(&[0x08, 0x06]),
                }
                f.extend_from_slice(&sport.to_be_bytes());
                f.extend_from_slice(&dport.to_be_bytes());
                f.extend_from_slice(&[0, 8, 0, 0]);
                f.extend_from_slice(&payload);
                let n = f.len();
                if cut % 4 == 0 {
                    f.truncate(usize::from(cut) % (n + 1));
                }
                f
            },
        );
    prop_oneof![4 => shaped, 1 => prop::collection::vec(any::<u8>(), 0..100)]
}

fn expected_action(rules: &[Rule], by: Option<usize>, default: Decision) -> Decision {
    match by.map(|i| &rules[i].action) {
        None => default,
        Some(Action::Drop) => Decision::Drop,
        Some(_) => Decision::Pass,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn compiled_program_decides_like_the_plain_walk(
        rules in arb_rules(),
        frames in prop::collection::vec(arb_frame(), 1..40),
        default_drop in any::<bool>(),
    ) {
        let default = if default_drop { Decision::Drop } else { Decision::Pass };
        let mut one = RuleSet::new(rules.clone(), default);
        let mut burst = one.fork();
        let mut hits = vec![0u64; rules.len()];
        let mut verdicts = Vec::new();
        for f in &frames {
            let w = walk(&rules, f, f.len() as u32);
            for &i in &w.matched {
                hits[i] += 1;
            }
            let v = one.classify(f, 0);
            prop_assert_eq!(v.rule_index, w.decided_by.map(|i| i as u32), "frame {:02x?}", f);
            prop_assert_eq!(v.action, expected_action(&rules, w.decided_by, default));
            prop_assert!(!v.rate_limited);
            verdicts.push(v);
        }
        let got: Vec<u64> = one.counters().rules.iter().map(|c| c.hits).collect();
        prop_assert_eq!(&got, &hits);

        let mut out = vec![
            Verdict { action: Decision::Pass, rule_index: None, rate_limited: false };
            frames.len()
        ];
        prop_assert_eq!(burst.classify_burst(&frames, 0, &mut out), frames.len());
        prop_assert_eq!(&out, &verdicts);
        prop_assert_eq!(burst.counters(), one.counters());
    }

    #[test]
    fn one_parse_three_ways(frame in arb_frame()) {
        let p = Parsed::parse(&frame);
        prop_assert_eq!(p, Parsed::walk(&frame));
        let rss = SoftRss::new(RssConfig::default()).unwrap();
        let meta = rss.classify(&frame).meta();
        prop_assert_eq!(Parsed::from_meta(&meta, &frame), p);
    }
}

/// First match wins across the dispatch: a later, more specific rule never takes a frame an
/// earlier rule matched, whichever port region or class the frame falls in.
#[test]
fn first_match_order_survives_dispatch() {
    let any_udp = Matcher::Proto(ProtoSet::new(&[Proto::Udp]));
    let dns = Matcher::DstPort(PortSet::new(&[(53, 53)]));
    let high = Matcher::DstPort(PortSet::new(&[(1024, 65535)]));
    let rules = vec![
        Rule::new("high", vec![any_udp.clone(), high], Action::Pass),
        Rule::new("dns", vec![any_udp.clone(), dns], Action::Drop),
        Rule::new("udp", vec![any_udp], Action::Pass),
        Rule::new("short", vec![Matcher::Len(vec![(0, 64)])], Action::Drop),
    ];
    let mut rs = RuleSet::new(rules.clone(), Decision::Pass);
    let udp = |dport: u16, pad: usize| {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&[0x13, 0x88]);
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&[0, 8, 0, 0]);
        f.resize(f.len() + pad, 0);
        f
    };
    for (dport, pad, want) in [
        (53, 0, Some(1)),
        (53, 100, Some(1)),
        (2000, 0, Some(0)),
        (80, 0, Some(2)),
        (1023, 0, Some(2)),
        (1024, 0, Some(0)),
    ] {
        let f = udp(dport, pad);
        assert_eq!(rs.classify(&f, 0).rule_index, want, "port {dport}");
        assert_eq!(
            walk(&rules, &f, f.len() as u32).decided_by,
            want.map(|i| i as usize)
        );
    }
    // Not UDP: only the length rule is a candidate.
    assert_eq!(rs.classify(&[0u8; 60], 0).rule_index, Some(3));
    let (tables, entries) = rs.program_size();
    assert!(tables >= 2, "UDP and not-UDP classes differ: {tables}");
    assert!(entries > 0);
}

/// Byte matches near the end of the frame (where a whole 8- or 16-byte word cannot be loaded)
/// and past it, every length and offset, against the plain walk.
#[test]
fn byte_matches_at_the_frame_end() {
    let frame: Vec<u8> = (0u8..40).map(|b| b.wrapping_mul(37) ^ 0x5a).collect();
    for n in 1..=16usize {
        for off in 20..40u16 {
            for flip in [false, true] {
                let at = usize::from(off);
                let mut value: Vec<u8> = frame[at.min(40)..(at + n).min(40)].to_vec();
                value.resize(n, 0xee);
                if flip {
                    value[n - 1] ^= 0x01;
                }
                let m = Matcher::Bytes(ByteMatch::new(Layer::L2, off, &value, None).unwrap());
                let rules = vec![Rule::new("b", vec![m], Action::Drop)];
                let mut rs = RuleSet::new(rules.clone(), Decision::Pass);
                let want = walk(&rules, &frame, 40).decided_by;
                assert_eq!(want.is_some(), !flip && at + n <= 40, "n {n} off {off}");
                assert_eq!(
                    rs.classify(&frame, 0).rule_index,
                    want.map(|i| i as u32),
                    "n {n} off {off} flip {flip}"
                );
            }
        }
    }
}

/// A tight rate limit in the burst form (lookups located and prefetched first, buckets taken
/// after) limits exactly the frames that frame-by-frame classification limits, with a small
/// table that evicts.
#[test]
fn burst_rate_limits_like_frame_by_frame() {
    let rules = vec![
        Rule::new(
            "sample",
            vec![Matcher::Len(vec![(0, 70)])],
            Action::Sample(Sample {
                every: 3,
                policy: RotationPolicy {
                    path: "/nonexistent-dir/floodgate/burst.pcap".into(),
                    max_bytes: 1 << 20,
                    max_files: 1,
                    snaplen: 128,
                    format: Default::default(),
                    rule: String::new(),
                },
            }),
        ),
        Rule::new(
            "limit",
            vec![Matcher::Proto(ProtoSet::new(&[Proto::Udp]))],
            Action::RateLimit(RateLimit {
                rate_pps: 1000,
                burst: 2,
                key: RateKey::Source {
                    v4_prefix: 32,
                    v6_prefix: 128,
                },
                // The fork hashes as its parent does (same secret seed), so the two tables put
                // the five keys in the same sets and evict alike whatever the seed.
                table_size: 64,
            }),
        ),
    ];
    let frames: Vec<Vec<u8>> = (0..300u32)
        .map(|i| {
            let mut f = vec![0u8; 12];
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]);
            f.extend_from_slice(&[10, 0, 0, (i % 5) as u8, 10, 0, 0, 2]);
            f.extend_from_slice(&[0x13, 0x88, 0, 53, 0, 8, 0, 0]);
            f.resize(60 + (i as usize % 3) * 10, 0);
            f
        })
        .collect();
    limits_like_frame_by_frame(rules, &frames, 100);
}

/// Keyed by source prefix, the burst form takes the keys of IPv4 frames from their column and
/// those of other frames (IPv6, non-IP) from their parse: interleaved in one chunk, every frame
/// is limited in its own bucket exactly as frame by frame.
#[test]
fn burst_rate_limits_mixed_families_like_frame_by_frame() {
    let rules = vec![Rule::new(
        "limit",
        vec![],
        Action::RateLimit(RateLimit {
            rate_pps: 1000,
            burst: 2,
            key: RateKey::Source {
                v4_prefix: 24,
                v6_prefix: 48,
            },
            table_size: 256,
        }),
    )];
    let frames: Vec<Vec<u8>> = (0..320u32)
        .map(|i| {
            let mut f = vec![0u8; 12];
            match i % 4 {
                // IPv4 from four /24s (two sources each).
                0 | 1 => {
                    f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]);
                    f.extend_from_slice(&[10, 0, (i % 8) as u8 / 2, (i % 8) as u8, 10, 0, 0, 2]);
                    f.extend_from_slice(&[0x13, 0x88, 0, 53, 0, 8, 0, 0]);
                }
                // IPv6 from three /48s.
                2 => {
                    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 8, 17, 64]);
                    let mut src = [0x20, 0x01, 0x0d, 0xb8, 0, (i % 3) as u8, 0, 0, 0, 0, 0, 0];
                    src[11] = i as u8;
                    f.extend_from_slice(&src);
                    f.extend_from_slice(&[0, 0, 0, 1]);
                    f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0]);
                    f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 2]);
                    f.extend_from_slice(&[0x13, 0x88, 0, 53, 0, 8, 0, 0]);
                }
                // ARP: all non-IP frames share one bucket.
                _ => {
                    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
                    f.resize(42, 0);
                }
            }
            f.resize(f.len().max(60), 0);
            f
        })
        .collect();
    limits_like_frame_by_frame(rules, &frames, 32);
}

/// Classifies `frames` frame by frame with one rule set and in bursts of `burst` with its fork
/// (1 ms apart: one token back per key), and checks that both give the same verdicts and
/// counters, with some frames rate-limited and some not.
fn limits_like_frame_by_frame(rules: Vec<Rule>, frames: &[Vec<u8>], burst: usize) {
    let mut one = RuleSet::new(rules, Decision::Pass);
    let mut forked = one.fork();
    let mut want = Vec::new();
    let mut got = Vec::new();
    let mut out = vec![
        Verdict {
            action: Decision::Pass,
            rule_index: None,
            rate_limited: false,
        };
        burst
    ];
    for (k, chunk) in frames.chunks(burst).enumerate() {
        let now = k as u64 * 1_000_000;
        want.extend(chunk.iter().map(|f| one.classify(f, now)));
        let n = forked.classify_burst(chunk, now, &mut out);
        got.extend_from_slice(&out[..n]);
    }
    assert_eq!(got, want);
    assert!(want.iter().any(|v| v.rate_limited), "the limit must bite");
    assert!(want.iter().any(|v| !v.rate_limited), "and let some through");
    assert_eq!(forked.counters(), one.counters());
}

/// A sample rule counts its one-in-`every` down across bursts exactly as frame by frame,
/// whatever the burst sizes (the burst classifier skips a whole chunk when no sample is due).
#[test]
fn sampling_counts_down_across_bursts_like_frame_by_frame() {
    let frame = {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2, 0x13, 0x88, 0, 53, 0, 8, 0, 0]);
        f.resize(60, 0);
        f
    };
    for every in [2u64, 5, 31, 32, 33, 100] {
        let rules = vec![Rule::new(
            "sample",
            vec![Matcher::Proto(ProtoSet::new(&[Proto::Udp]))],
            Action::Sample(Sample {
                every,
                policy: RotationPolicy {
                    path: "/nonexistent-dir/floodgate/sampling.pcap".into(),
                    max_bytes: 1 << 20,
                    max_files: 1,
                    snaplen: 128,
                    format: Default::default(),
                    rule: String::new(),
                },
            }),
        )];
        let mut one = RuleSet::new(rules, Decision::Pass);
        let mut burst = one.fork();
        let frames = vec![frame.clone(); 97];
        let mut out = [Verdict {
            action: Decision::Drop,
            rule_index: None,
            rate_limited: false,
        }; 97];
        for size in [1usize, 7, 32, 50, 97, 3, 64] {
            for f in &frames[..size] {
                one.classify(f, 0);
            }
            assert_eq!(burst.classify_burst(&frames[..size], 0, &mut out), size);
            // After every burst, not only at the end: the same frames were sampled.
            let (a, b) = (&one.counters().rules[0], &burst.counters().rules[0]);
            assert_eq!(b, a, "every {every}, after a burst of {size}");
        }
        assert!(
            one.counters().rules[0].sample_errors > 0,
            "every {every}: samples were attempted"
        );
    }
}
