//! The rules engine: matchers, ordering, actions, counters.

pub mod filter_util;

use std::net::Ipv6Addr;
use std::sync::Arc;

use filter_util::*;
use floodgate::bpf::{CompiledBpf, Program, RawInsn};
use floodgate::config::Config;
use floodgate::filter::*;
use floodgate::pcapfile::{PcapReader, RotationPolicy};

fn proto(p: Proto) -> Matcher {
    Matcher::Proto(ProtoSet::new(&[p]))
}
fn cidrs(list: &[&str]) -> CidrSet {
    let v: Vec<Cidr> = list.iter().map(|s| s.parse().unwrap()).collect();
    CidrSet::new(&v)
}
fn ports(r: &[(u16, u16)]) -> PortSet {
    PortSet::new(r)
}
fn one(m: Vec<Matcher>) -> RuleSet {
    RuleSet::new(vec![Rule::new("r", m, Action::Drop)], Decision::Pass)
}
fn hit(rs: &mut RuleSet, f: &[u8]) -> bool {
    rs.classify(f, 0).rule_index == Some(0)
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn protocol_matcher_v4_v6() {
    let mut udp = one(vec![proto(Proto::Udp)]);
    let mut icmp = one(vec![proto(Proto::Icmp)]);
    let u4 = ipv4(UDP, [1, 1, 1, 1], [2, 2, 2, 2], 1, 2, b"");
    let t4 = ipv4(TCP, [1, 1, 1, 1], [2, 2, 2, 2], 1, 2, b"");
    let i4 = ipv4(ICMP, [1, 1, 1, 1], [2, 2, 2, 2], 0, 0, b"");
    let u6 = ipv6(UDP, v6("::1"), v6("::2"), 1, 2, b"");
    let i6 = ipv6(58, v6("::1"), v6("::2"), 0, 0, b"");
    assert!(hit(&mut udp, &u4) && hit(&mut udp, &u6));
    assert!(!hit(&mut udp, &t4) && !hit(&mut udp, &arp()) && !hit(&mut udp, &i4));
    assert!(hit(&mut icmp, &i4) && hit(&mut icmp, &i6) && !hit(&mut icmp, &u4));
    let mut fam6 = one(vec![Matcher::Ipv4(false)]);
    assert!(hit(&mut fam6, &u6) && !hit(&mut fam6, &u4) && !hit(&mut fam6, &arp()));
}

#[test]
fn cidr_sets_v4_v6() {
    let set = cidrs(&[
        "10.0.0.0/8",
        "192.0.2.128/25",
        "192.0.2.0/25",
        "2001:db8::/32",
        "203.0.113.7",
    ]);
    // The two /25 halves merge into one range.
    assert_eq!(set.ranges(), 4);
    for (a, want) in [
        ("10.255.255.255", true),
        ("11.0.0.0", false),
        ("9.255.255.255", false),
        ("192.0.2.0", true),
        ("192.0.2.255", true),
        ("192.0.3.0", false),
        ("203.0.113.7", true),
        ("203.0.113.8", false),
        ("2001:db8:ffff::1", true),
        ("2001:db9::", false),
        ("::ffff:10.0.0.1", false),
    ] {
        assert_eq!(set.contains(a.parse().unwrap()), want, "{a}");
    }
    let all = cidrs(&["0.0.0.0/0", "::/0"]);
    assert!(all.contains("255.255.255.255".parse().unwrap()));
    assert!(all.contains("ffff::".parse().unwrap()));
    // Host bits below the prefix are ignored.
    assert!(cidrs(&["10.1.2.3/8"]).contains("10.9.9.9".parse().unwrap()));

    let mut src = one(vec![Matcher::Src(cidrs(&[
        "198.51.100.0/24",
        "2001:db8::/32",
    ]))]);
    assert!(hit(
        &mut src,
        &ipv4(UDP, [198, 51, 100, 9], [1, 1, 1, 1], 1, 1, b"")
    ));
    assert!(!hit(
        &mut src,
        &ipv4(UDP, [1, 1, 1, 1], [198, 51, 100, 9], 1, 1, b"")
    ));
    assert!(hit(
        &mut src,
        &ipv6(UDP, v6("2001:db8::5"), v6("::1"), 1, 1, b"")
    ));
    assert!(!hit(&mut src, &arp()));
    let mut dst = one(vec![Matcher::Dst(cidrs(&["198.51.100.0/24"]))]);
    assert!(hit(
        &mut dst,
        &ipv4(UDP, [1, 1, 1, 1], [198, 51, 100, 9], 1, 1, b"")
    ));
}

#[test]
fn ports_vlan_fragments() {
    let mut rs = one(vec![
        Matcher::DstPort(ports(&[(53, 53), (1000, 2000)])),
        Matcher::SrcPort(ports(&[(0, 65535)])),
    ]);
    for (dport, want) in [
        (53, true),
        (54, false),
        (1000, true),
        (2000, true),
        (2001, false),
    ] {
        assert_eq!(
            hit(
                &mut rs,
                &ipv4(UDP, [1, 1, 1, 1], [2, 2, 2, 2], 9, dport, b"")
            ),
            want,
            "{dport}"
        );
    }
    assert!(hit(
        &mut rs,
        &ipv4(TCP, [1, 1, 1, 1], [2, 2, 2, 2], 9, 53, b"")
    ));
    assert!(hit(&mut rs, &ipv6(UDP, v6("::1"), v6("::2"), 9, 53, b"")));
    // Behind a VLAN tag.
    assert!(hit(
        &mut rs,
        &ipv4_full(UDP, [1, 1, 1, 1], [2, 2, 2, 2], 9, 53, b"", Some(7), 0)
    ));
    // A non-first fragment has no ports.
    assert!(!hit(
        &mut rs,
        &ipv4_full(UDP, [1, 1, 1, 1], [2, 2, 2, 2], 9, 53, b"", None, 100)
    ));
    // ICMP has no ports.
    assert!(!hit(
        &mut rs,
        &ipv4(ICMP, [1, 1, 1, 1], [2, 2, 2, 2], 0, 53, b"")
    ));
    // Truncated before the ports.
    let f = ipv4(UDP, [1, 1, 1, 1], [2, 2, 2, 2], 9, 53, b"");
    assert!(!hit(&mut rs, &f[..35]));
    assert!(hit(&mut rs, &f[..38]));
}

#[test]
fn length_and_bytes() {
    let mut len = one(vec![Matcher::Len(vec![(100, 200), (1500, 1500)])]);
    assert!(
        hit(&mut len, &[0u8; 100]) && hit(&mut len, &[0u8; 200]) && hit(&mut len, &[0u8; 1500])
    );
    assert!(!hit(&mut len, &[0u8; 99]) && !hit(&mut len, &[0u8; 201]));
    // The wire length counts, not the captured one.
    assert_eq!(len.classify_wire(&[0u8; 60], 150, 0).rule_index, Some(0));

    // DNS response bit at UDP payload offset 2 (l4 offset 10).
    let qr = ByteMatch::new(Layer::L4, 10, &[0x80], Some(&[0x80])).unwrap();
    let mut resp = one(vec![Matcher::Bytes(qr)]);
    assert!(hit(
        &mut resp,
        &ipv4(UDP, [1, 1, 1, 1], [2, 2, 2, 2], 53, 53, &dns_response(20))
    ));
    assert!(!hit(
        &mut resp,
        &ipv4(UDP, [1, 1, 1, 1], [2, 2, 2, 2], 53, 53, &dns_query(20))
    ));
    assert!(hit(
        &mut resp,
        &ipv6(UDP, v6("::1"), v6("::2"), 53, 53, &dns_response(20))
    ));
    assert!(!hit(&mut resp, &arp()));
    // L2 ethertype, L3 TTL.
    let mut l2 = one(vec![Matcher::Bytes(
        ByteMatch::new(Layer::L2, 12, &[0x08, 0x06], None).unwrap(),
    )]);
    assert!(hit(&mut l2, &arp()));
    let mut ttl = one(vec![Matcher::Bytes(
        ByteMatch::new(Layer::L3, 8, &[64], None).unwrap(),
    )]);
    assert!(hit(
        &mut ttl,
        &ipv4(UDP, [1, 1, 1, 1], [2, 2, 2, 2], 1, 1, b"")
    ));
    // Past the end: no match, no panic.
    let mut far = one(vec![Matcher::Bytes(
        ByteMatch::new(Layer::L4, 65535, &[0; 16], None).unwrap(),
    )]);
    assert!(!hit(
        &mut far,
        &ipv4(UDP, [1, 1, 1, 1], [2, 2, 2, 2], 1, 1, b"")
    ));
    assert!(ByteMatch::new(Layer::L2, 0, &[], None).is_err());
    assert!(ByteMatch::new(Layer::L2, 0, &[1, 2], Some(&[1])).is_err());
}

#[test]
fn bpf_matcher_and_and_semantics() {
    // "ip6" as classic BPF, combined with a UDP matcher: both must hold.
    let prog = Program::new(&[
        RawInsn::new(0x28, 0, 0, 12),
        RawInsn::new(0x15, 0, 1, 0x86dd),
        RawInsn::new(0x06, 0, 0, 65535),
        RawInsn::new(0x06, 0, 0, 0),
    ])
    .unwrap();
    let mut rs = one(vec![
        Matcher::Bpf(Arc::new(CompiledBpf::new(&prog))),
        proto(Proto::Udp),
    ]);
    assert!(hit(&mut rs, &ipv6(UDP, v6("::1"), v6("::2"), 1, 1, b"")));
    assert!(!hit(&mut rs, &ipv6(TCP, v6("::1"), v6("::2"), 1, 1, b"")));
    assert!(!hit(
        &mut rs,
        &ipv4(UDP, [1, 1, 1, 1], [2, 2, 2, 2], 1, 1, b"")
    ));
}

#[test]
fn order_default_and_counters() {
    let rules = vec![
        Rule::new(
            "allow-resolver",
            vec![Matcher::Src(cidrs(&["10.0.0.53"]))],
            Action::Pass,
        ),
        Rule::new(
            "drop-dns",
            vec![proto(Proto::Udp), Matcher::DstPort(ports(&[(53, 53)]))],
            Action::Drop,
        ),
    ];
    let mut rs = RuleSet::new(rules, Decision::Drop);
    let resolver = ipv4(UDP, [10, 0, 0, 53], [2, 2, 2, 2], 1, 53, b"");
    let other = ipv4(UDP, [10, 0, 0, 1], [2, 2, 2, 2], 1, 53, b"");
    let web = ipv4(TCP, [10, 0, 0, 1], [2, 2, 2, 2], 1, 80, b"");
    assert_eq!(
        rs.classify(&resolver, 0),
        Verdict {
            action: Decision::Pass,
            rule_index: Some(0),
            rate_limited: false
        }
    );
    assert_eq!(
        rs.classify(&other, 0),
        Verdict {
            action: Decision::Drop,
            rule_index: Some(1),
            rate_limited: false
        }
    );
    assert_eq!(
        rs.classify(&web, 0),
        Verdict {
            action: Decision::Drop,
            rule_index: None,
            rate_limited: false
        }
    );
    let c = rs.counters();
    assert_eq!(c.packets, 3);
    assert_eq!((c.rules[0].hits, c.rules[0].passed), (1, 1));
    assert_eq!((c.rules[1].hits, c.rules[1].dropped), (1, 1));
    assert_eq!((c.default.hits, c.default.dropped), (1, 1));
    assert_eq!(c.rules[0].bytes, resolver.len() as u64);
    assert_eq!(c.passed() + c.dropped(), c.packets);
    // An empty rule set applies the default.
    let mut empty = RuleSet::new(vec![], Decision::Pass);
    assert_eq!(empty.classify(&web, 0).action, Decision::Pass);
}

fn rate_rule(key: RateKey, table: usize) -> RuleSet {
    RuleSet::new(
        vec![Rule::new(
            "limit",
            vec![proto(Proto::Udp)],
            Action::RateLimit(RateLimit {
                rate_pps: 10,
                burst: 2,
                key,
                table_size: table,
            }),
        )],
        Decision::Pass,
    )
}

#[test]
fn rate_limit_per_source() {
    let mut rs = rate_rule(
        RateKey::Source {
            v4_prefix: 32,
            v6_prefix: 128,
        },
        1024,
    );
    let a = ipv4(UDP, [10, 0, 0, 1], [2, 2, 2, 2], 1, 53, b"");
    let b = ipv4(UDP, [10, 0, 0, 2], [2, 2, 2, 2], 1, 53, b"");
    let out: Vec<bool> = (0..4)
        .map(|_| rs.classify(&a, 0).action == Decision::Pass)
        .collect();
    assert_eq!(out, [true, true, false, false]);
    // Another source has its own bucket.
    assert_eq!(rs.classify(&b, 0).action, Decision::Pass);
    // 100 ms later at 10 pps: one more token.
    let v = rs.classify(&a, 100_000_000);
    assert_eq!(v.action, Decision::Pass);
    let v = rs.classify(&a, 100_000_000);
    assert_eq!(
        v,
        Verdict {
            action: Decision::Drop,
            rule_index: Some(0),
            rate_limited: true
        }
    );
    let c = &rs.counters().rules[0];
    assert_eq!((c.hits, c.passed, c.dropped, c.rate_limited), (7, 4, 3, 3));
}

#[test]
fn rate_limit_state_survives_a_reload_only_for_unchanged_rules() {
    let key = RateKey::Source {
        v4_prefix: 32,
        v6_prefix: 128,
    };
    let a = ipv4(UDP, [10, 0, 0, 1], [2, 2, 2, 2], 1, 53, b"");
    let mut old = rate_rule(key, 1024);
    // Empty `a`'s bucket (burst 2).
    for _ in 0..3 {
        old.classify(&a, 0);
    }
    assert_eq!(old.classify(&a, 0).action, Decision::Drop);
    // The same rule reloaded: the bucket comes along, `a` stays limited.
    let mut same = rate_rule(key, 1024);
    assert_eq!(same.adopt_state(&mut old), 1);
    assert_eq!(same.classify(&a, 0).action, Decision::Drop);
    // A changed rule (other table size) starts with fresh buckets.
    let mut changed = rate_rule(key, 2048);
    assert_eq!(changed.adopt_state(&mut same), 0);
    assert_eq!(changed.classify(&a, 0).action, Decision::Pass);
    // A renamed rule too.
    let mut renamed = RuleSet::new(
        vec![Rule::new(
            "other",
            vec![proto(Proto::Udp)],
            Action::RateLimit(RateLimit {
                rate_pps: 10,
                burst: 2,
                key,
                table_size: 1024,
            }),
        )],
        Decision::Pass,
    );
    let mut again = rate_rule(key, 1024);
    for _ in 0..3 {
        again.classify(&a, 0);
    }
    assert_eq!(renamed.adopt_state(&mut again), 0);
    assert_eq!(renamed.classify(&a, 0).action, Decision::Pass);
}

#[test]
fn rate_limit_per_prefix_and_flow() {
    let mut rs = rate_rule(
        RateKey::Source {
            v4_prefix: 24,
            v6_prefix: 48,
        },
        1024,
    );
    // Different hosts of one /24 share a bucket of 2.
    let pass: usize = (1..=5)
        .filter(|&h| {
            rs.classify(&ipv4(UDP, [10, 0, 0, h], [2, 2, 2, 2], 1, 53, b""), 0)
                .action
                == Decision::Pass
        })
        .count();
    assert_eq!(pass, 2);
    assert_eq!(
        rs.classify(&ipv4(UDP, [10, 0, 1, 1], [2, 2, 2, 2], 1, 53, b""), 0)
            .action,
        Decision::Pass
    );
    // IPv6 /48.
    let v6pass = ["2001:db8:1:1::1", "2001:db8:1:2::1", "2001:db8:1:3::1"]
        .iter()
        .filter(|a| {
            rs.classify(&ipv6(UDP, v6(a), v6("::1"), 1, 53, b""), 0)
                .action
                == Decision::Pass
        })
        .count();
    assert_eq!(v6pass, 2);

    let mut flow = rate_rule(RateKey::Flow, 1024);
    // One source, different source ports: different flows.
    let pass: usize = (0..5)
        .filter(|&p| {
            flow.classify(
                &ipv4(UDP, [10, 0, 0, 1], [2, 2, 2, 2], 1000 + p, 53, b""),
                0,
            )
            .action
                == Decision::Pass
        })
        .count();
    assert_eq!(pass, 5);
    let same = ipv4(UDP, [10, 0, 0, 1], [2, 2, 2, 2], 1000, 53, b"");
    assert_eq!(flow.classify(&same, 0).action, Decision::Pass);
    assert_eq!(flow.classify(&same, 0).action, Decision::Drop);
}

#[test]
fn rate_limit_table_is_bounded() {
    // A flood of distinct spoofed sources through a table of 16: memory does not grow, the
    // counters stay exact, and old sources are evicted (they come back with a fresh bucket).
    let mut rs = rate_rule(
        RateKey::Source {
            v4_prefix: 32,
            v6_prefix: 128,
        },
        16,
    );
    for i in 0..10_000u32 {
        let s = i.to_be_bytes();
        rs.classify(
            &ipv4(UDP, [s[0], s[1], s[2], s[3]], [2, 2, 2, 2], 1, 53, b""),
            u64::from(i),
        );
    }
    let c = &rs.counters().rules[0];
    assert_eq!(c.hits, 10_000);
    assert_eq!(c.passed + c.dropped, 10_000);
    assert_eq!(c.dropped, 0, "every new source gets its burst");
}

#[test]
fn sample_to_rotating_pcap() {
    let dir = std::env::temp_dir().join(format!("floodgate-sample-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.pcap");
    let policy = RotationPolicy {
        path: path.clone(),
        max_bytes: 24 + 3 * (16 + 60),
        max_files: 3,
        snaplen: 65535,
        format: Default::default(),
        rule: String::new(),
    };
    let rules = vec![
        Rule::new(
            "sample",
            vec![proto(Proto::Udp)],
            Action::Sample(Sample { every: 3, policy }),
        ),
        Rule::new("drop-udp", vec![proto(Proto::Udp)], Action::Drop),
    ];
    let mut rs = RuleSet::new(rules, Decision::Pass);
    for n in 0..30u64 {
        let f = ipv4(UDP, [10, 0, 0, n as u8], [2, 2, 2, 2], 1, 53, b"");
        assert_eq!(f.len(), 60);
        // Sampling is not terminal: the next rule decides.
        assert_eq!(
            rs.classify(&f, 1_700_000_000_000_000_000 + n).rule_index,
            Some(1)
        );
    }
    rs.classify(&ipv4(TCP, [1, 1, 1, 1], [2, 2, 2, 2], 1, 1, b""), 0);
    rs.flush_samples().unwrap();
    let c = rs.counters();
    assert_eq!(
        (
            c.rules[0].hits,
            c.rules[0].sampled,
            c.rules[0].sample_errors
        ),
        (30, 10, 0)
    );
    assert_eq!((c.rules[0].passed, c.rules[0].dropped), (0, 0));
    assert_eq!(c.rules[1].dropped, 30);
    assert_eq!(c.passed() + c.dropped(), c.packets);
    // 10 samples, 3 per file: files hold 1 (current), 3 (.1), 3 (.2); .3 was deleted.
    let count = |p: &std::path::Path| {
        let mut r = PcapReader::open(p).unwrap();
        let mut buf = Vec::new();
        let mut srcs = Vec::new();
        while r.next_record(&mut buf).unwrap().is_some() {
            srcs.push(buf[29]);
        }
        srcs
    };
    assert_eq!(count(&path), [27]);
    assert_eq!(count(&dir.join("s.pcap.1")), [18, 21, 24]);
    assert_eq!(count(&dir.join("s.pcap.2")), [9, 12, 15]);
    assert!(!dir.join("s.pcap.3").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sample_write_errors_are_counted() {
    let policy = RotationPolicy {
        path: "/nonexistent-dir/floodgate/s.pcap".into(),
        max_bytes: 1 << 20,
        max_files: 1,
        snaplen: 128,
        format: Default::default(),
        rule: String::new(),
    };
    let mut rs = RuleSet::new(
        vec![Rule::new(
            "s",
            vec![],
            Action::Sample(Sample { every: 1, policy }),
        )],
        Decision::Pass,
    );
    for _ in 0..3 {
        assert_eq!(rs.classify(&arp(), 0).action, Decision::Pass);
    }
    assert_eq!(rs.counters().rules[0].sample_errors, 3);
    assert_eq!(rs.counters().rules[0].sampled, 0);
}

#[test]
fn fork_and_merge() {
    let rules = vec![
        Rule::new("drop-udp", vec![proto(Proto::Udp)], Action::Drop),
        Rule::new(
            "limit-tcp",
            vec![proto(Proto::Tcp)],
            Action::RateLimit(RateLimit {
                rate_pps: 1,
                burst: 1,
                key: RateKey::Flow,
                table_size: 64,
            }),
        ),
    ];
    let mut a = RuleSet::new(rules, Decision::Pass);
    let mut b = a.fork();
    let udp = ipv4(UDP, [1, 1, 1, 1], [2, 2, 2, 2], 1, 1, b"");
    let tcp = ipv4(TCP, [1, 1, 1, 1], [2, 2, 2, 2], 1, 1, b"");
    a.classify(&udp, 0);
    a.classify(&tcp, 0);
    a.classify(&tcp, 0);
    // The fork has its own (empty) rate table: its first TCP packet passes.
    assert_eq!(b.classify(&tcp, 0).action, Decision::Pass);
    b.classify(&arp(), 0);
    assert_eq!(b.counters().rules[0].hits, 0);
    let mut total = a.counters().clone();
    total.merge(b.counters());
    assert_eq!(total.packets, 5);
    assert_eq!(total.rules[0].dropped, 1);
    assert_eq!(
        (
            total.rules[1].hits,
            total.rules[1].passed,
            total.rules[1].rate_limited
        ),
        (3, 2, 1)
    );
    assert_eq!(total.default.passed, 1);
    assert_eq!(total.passed() + total.dropped(), total.packets);
    // take_counters resets.
    let taken = a.take_counters();
    assert_eq!(taken.packets, 3);
    assert_eq!(a.counters().packets, 0);
    assert_eq!(a.counters().rules.len(), 2);
}

#[test]
fn reload_keeps_counters_by_name() {
    let mut old = RuleSet::new(
        vec![
            Rule::new("a", vec![proto(Proto::Udp)], Action::Drop),
            Rule::new("b", vec![], Action::Pass),
        ],
        Decision::Pass,
    );
    old.classify(&ipv4(UDP, [1, 1, 1, 1], [2, 2, 2, 2], 1, 1, b""), 0);
    old.classify(&arp(), 0);
    let mut new = RuleSet::new(
        vec![
            Rule::new("c", vec![], Action::Drop),
            Rule::new("a", vec![proto(Proto::Udp)], Action::Drop),
        ],
        Decision::Pass,
    );
    assert_eq!(new.adopt_counters(&old), 1);
    assert_eq!(new.counters().rules[1].hits, 1);
    assert_eq!(new.counters().rules[0].hits, 0);
    assert_eq!(new.counters().packets, 2);
}

#[test]
fn rules_from_config() {
    let cfg = Config::from_str_named(
        r#"
[device]
pci = "sim"
[filter]
default = "drop"
[[filter.rule]]
name = "legit"
action = "pass"
proto = "udp"
dst_port = 53
len = "0-200"
bytes = { layer = "l4", offset = 10, value = "0x00", mask = "0x80" }
[[filter.rule]]
name = "v6-net"
action = "pass"
src = "2001:db8::/32"
"#,
        "t.toml",
    )
    .unwrap();
    let mut rs = cfg.filter.ruleset();
    assert_eq!(
        rs.classify(
            &ipv4(UDP, [1, 1, 1, 1], [2, 2, 2, 2], 1, 53, &dns_query(40)),
            0
        )
        .rule_index,
        Some(0)
    );
    assert_eq!(
        rs.classify(
            &ipv4(UDP, [1, 1, 1, 1], [2, 2, 2, 2], 1, 53, &dns_response(40)),
            0
        )
        .rule_index,
        None
    );
    assert_eq!(
        rs.classify(
            &ipv4(UDP, [1, 1, 1, 1], [2, 2, 2, 2], 1, 53, &dns_query(400)),
            0
        )
        .action,
        Decision::Drop
    );
    assert_eq!(
        rs.classify(&ipv6(TCP, v6("2001:db8::9"), v6("::1"), 1, 1, b""), 0)
            .rule_index,
        Some(1)
    );
    assert_eq!(cfg.filter.rules[0].summary, "proto udp and dst_port 53 and len 0-200 and bytes { layer = \"l4\", mask = \"0x80\", offset = 10, value = \"0x00\" }");
}

/// IPv6 with extension headers before UDP: hop-by-hop (8 bytes), then a first fragment; and a
/// non-first fragment, which has no ports.
#[test]
fn ipv6_extension_headers() {
    let build = |frag_off: u16| {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd];
        f.extend_from_slice(&[0x60, 0, 0, 0, 0, 32, 0, 64]); // next header 0 = hop-by-hop
        f.extend_from_slice(&v6("2001:db8::1").octets());
        f.extend_from_slice(&v6("2001:db8::2").octets());
        f.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]); // hop-by-hop -> fragment (44), len 8
        let fo = (frag_off << 3).to_be_bytes();
        f.extend_from_slice(&[17, 0, fo[0], fo[1] | 1, 0, 0, 0, 7]); // fragment -> UDP
        f.extend_from_slice(&[0x13, 0x88, 0, 53, 0, 8, 0, 0]);
        f
    };
    let mut rs = one(vec![
        proto(Proto::Udp),
        Matcher::DstPort(ports(&[(53, 53)])),
    ]);
    assert!(hit(&mut rs, &build(0)));
    assert!(!hit(&mut rs, &build(1)));
    let p = Parsed::parse(&build(0));
    assert_eq!(
        (p.proto, p.ports, p.l4_off),
        (17, Some((5000, 53)), Some(14 + 40 + 16))
    );
    // Cut inside the extension headers: no transport header, no panic.
    for n in 0..build(0).len() {
        let _ = Parsed::parse(&build(0)[..n]);
        let _ = rs.classify(&build(0)[..n], 0);
    }
}

#[test]
fn rule_sets_and_configs_move_between_threads() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    send::<RuleSet>();
    send::<Config>();
    sync::<Config>();
    sync::<Program>();
}

mod random_frames {
    use super::*;
    use proptest::prelude::*;

    fn every_matcher() -> RuleSet {
        let prog = Program::new(&[
            RawInsn::new(0xb1, 0, 0, 14),
            RawInsn::new(0x48, 0, 0, 16),
            RawInsn::new(0x15, 0, 1, 53),
            RawInsn::new(0x06, 0, 0, 1),
            RawInsn::new(0x06, 0, 0, 0),
        ])
        .unwrap();
        let rules = vec![
            Rule::new(
                "bytes-l4",
                vec![Matcher::Bytes(
                    ByteMatch::new(Layer::L4, 2, &[0, 53], None).unwrap(),
                )],
                Action::Drop,
            ),
            Rule::new(
                "bytes-l3",
                vec![Matcher::Bytes(
                    ByteMatch::new(Layer::L3, 9, &[17], None).unwrap(),
                )],
                Action::Drop,
            ),
            Rule::new(
                "ports",
                vec![
                    Matcher::SrcPort(ports(&[(0, 100)])),
                    Matcher::DstPort(ports(&[(0, 100)])),
                ],
                Action::Pass,
            ),
            Rule::new(
                "nets",
                vec![
                    Matcher::Src(cidrs(&["10.0.0.0/8", "2001:db8::/32"])),
                    Matcher::Dst(cidrs(&["0.0.0.0/0", "::/0"])),
                ],
                Action::Drop,
            ),
            Rule::new(
                "proto",
                vec![Matcher::Proto(ProtoSet::new(&[
                    Proto::Icmp,
                    Proto::Sctp,
                    Proto::Number(47),
                ]))],
                Action::Drop,
            ),
            Rule::new(
                "bpf",
                vec![
                    Matcher::Bpf(Arc::new(CompiledBpf::new(&prog))),
                    Matcher::Len(vec![(0, 2000)]),
                ],
                Action::Drop,
            ),
            Rule::new(
                "limit",
                vec![Matcher::Ipv4(true)],
                Action::RateLimit(RateLimit {
                    rate_pps: 5,
                    burst: 1,
                    key: RateKey::Flow,
                    table_size: 8,
                }),
            ),
            Rule::new(
                "limit6",
                vec![Matcher::Ipv4(false)],
                Action::RateLimit(RateLimit {
                    rate_pps: 5,
                    burst: 1,
                    key: RateKey::Source {
                        v4_prefix: 0,
                        v6_prefix: 0,
                    },
                    table_size: 8,
                }),
            ),
        ];
        RuleSet::new(rules, Decision::Pass)
    }

    fn frame() -> impl Strategy<Value = Vec<u8>> {
        // Random bytes behind a plausible Ethernet/VLAN/IP prefix, so the parser goes deep.
        let ethertype = proptest::sample::select(vec![
            [0x08u8, 0x00],
            [0x86, 0xdd],
            [0x81, 0x00],
            [0x88, 0xa8],
            [0x08, 0x06],
        ]);
        (
            ethertype,
            proptest::collection::vec(any::<u8>(), 0..120),
            any::<bool>(),
        )
            .prop_map(|(et, rest, ipish)| {
                let mut f = vec![0u8; 12];
                f.extend_from_slice(&et);
                let mut rest = rest;
                if ipish && !rest.is_empty() {
                    rest[0] = if et == [0x86, 0xdd] { 0x60 } else { 0x45 };
                }
                f.extend_from_slice(&rest);
                f
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        /// Arbitrary frames never panic the parser or the engine, and every frame is counted
        /// exactly once.
        #[test]
        fn random_frames_are_classified(frames in proptest::collection::vec(frame(), 1..20), cut in 0usize..200) {
            let mut rs = every_matcher();
            for (i, f) in frames.iter().enumerate() {
                let _ = Parsed::parse(f);
                let n = f.len().min(cut);
                rs.classify(&f[..n], i as u64 * 1000);
                rs.classify_wire(f, u32::MAX, i as u64);
            }
            let c = rs.counters();
            prop_assert_eq!(c.packets, 2 * frames.len() as u64);
            prop_assert_eq!(c.passed() + c.dropped(), c.packets);
        }
    }
}
