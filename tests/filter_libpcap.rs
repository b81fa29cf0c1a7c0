//! tcpdump expressions compiled by the run-time loaded libpcap, executed by our interpreter and
//! as native code, and compared with libpcap's own. Skipped (with one line) when libpcap is not installed.

pub mod filter_util;

use std::net::Ipv6Addr;

use filter_util::*;
use floodgate::bpf::{CompiledBpf, Program, RawInsn};
use floodgate::libpcap::{LibPcap, PcapError};
use proptest::prelude::*;

fn lib() -> Option<&'static LibPcap> {
    match LibPcap::get() {
        Ok(l) => Some(l),
        Err(e) => {
            assert!(e.to_string().contains("apt-get install libpcap0.8"), "{e}");
            println!("skipped: libpcap not installed (apt-get install libpcap0.8)");
            None
        }
    }
}

fn frames() -> Vec<Vec<u8>> {
    let v6a: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let v6b: Ipv6Addr = "2001:db8::53".parse().unwrap();
    let mut out = vec![
        ipv4(
            UDP,
            [10, 0, 0, 1],
            [192, 0, 2, 53],
            40000,
            53,
            &dns_query(40),
        ),
        ipv4(
            UDP,
            [198, 51, 100, 7],
            [192, 0, 2, 53],
            53,
            53,
            &dns_response(500),
        ),
        ipv4(TCP, [10, 0, 0, 1], [192, 0, 2, 80], 40000, 80, b"GET /"),
        ipv4(ICMP, [10, 0, 0, 1], [192, 0, 2, 1], 0, 0, b"ping"),
        ipv4_full(
            UDP,
            [10, 0, 0, 9],
            [192, 0, 2, 53],
            1,
            53,
            &dns_query(20),
            Some(100),
            0,
        ),
        ipv4_full(
            UDP,
            [10, 0, 0, 9],
            [192, 0, 2, 53],
            1,
            53,
            &dns_query(20),
            None,
            185,
        ),
        ipv6(UDP, v6a, v6b, 5353, 53, &dns_query(30)),
        ipv6(TCP, v6b, v6a, 443, 50000, b"x"),
        arp(),
        vec![],
        vec![0xff; 13],
    ];
    // Truncations of a DNS query at every length.
    let q = ipv4(
        UDP,
        [10, 0, 0, 1],
        [192, 0, 2, 53],
        40000,
        53,
        &dns_query(40),
    );
    for n in 0..q.len() {
        out.push(q[..n].to_vec());
    }
    out
}

const EXPRESSIONS: &[&str] = &[
    "udp",
    "udp dst port 53",
    "udp and src port 53 and dst port 53",
    "tcp[tcpflags] & tcp-syn != 0",
    "ip6 and udp port 53",
    "net 198.51.100.0/24",
    "src host 10.0.0.1 and not icmp",
    "vlan 100 and udp",
    "ip[6:2] & 0x1fff != 0",
    "greater 200",
    "less 64",
    "portrange 1-1024",
    "udp[8:2] = 0x1234",
    "ether proto 0x0806",
    "icmp or (tcp and dst port 80)",
];

#[test]
fn our_interpreter_agrees_with_libpcap() {
    let Some(lib) = lib() else { return };
    let frames = frames();
    for expr in EXPRESSIONS {
        let theirs = lib.compile_program(expr).unwrap_or_else(|e| panic!("{e}"));
        let ours = Program::new(theirs.insns()).unwrap_or_else(|e| panic!("{expr}: {e}"));
        let compiled = CompiledBpf::new(&ours);
        let mut matched = 0;
        for (n, f) in frames.iter().enumerate() {
            let a = ours.matches(f);
            assert_eq!(
                compiled.run(f),
                ours.run(f),
                "{expr:?} compiled on frame {n} ({} bytes)",
                f.len()
            );
            assert_eq!(
                a,
                theirs.offline_filter(f),
                "{expr:?} on frame {n} ({} bytes)",
                f.len()
            );
            matched += usize::from(a);
        }
        assert!(
            matched > 0 || *expr == "less 64",
            "{expr:?} matched no test frame"
        );
    }
}

#[test]
fn compile_errors_are_passed_through() {
    let Some(lib) = lib() else { return };
    match lib.compile("udp and port banana") {
        Err(PcapError::Compile { expr, message }) => {
            assert_eq!(expr, "udp and port banana");
            assert!(message.contains("banana"), "{message}");
        }
        other => panic!("expected a compile error, got {other:?}"),
    }
    assert!(matches!(
        lib.compile("a\0b"),
        Err(PcapError::NulInExpression { .. })
    ));
}

#[test]
fn missing_library_says_what_to_install() {
    let e = LibPcap::load_from(&["libpcap-does-not-exist.so.9".to_string()]).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("apt-get install libpcap0.8"), "{msg}");
    assert!(msg.contains("libpcap-does-not-exist.so.9"), "{msg}");
}

fn valid_insn() -> impl Strategy<Value = RawInsn> {
    let codes: Vec<u16> = vec![
        0x00, 0x20, 0x28, 0x30, 0x40, 0x48, 0x50, 0x80, 0x01, 0x81, 0xb1, 0x02, 0x03, 0x04, 0x0c,
        0x14, 0x1c, 0x24, 0x2c, 0x34, 0x3c, 0x44, 0x4c, 0x54, 0x5c, 0x64, 0x74, 0x84, 0x94, 0x9c,
        0xa4, 0xac, 0x05, 0x15, 0x1d, 0x25, 0x2d, 0x35, 0x3d, 0x45, 0x4d, 0x06, 0x16, 0x07, 0x87,
    ];
    (proptest::sample::select(codes), 0u8..6, 0u8..6, 0u32..80)
        .prop_map(|(c, jt, jf, k)| RawInsn::new(c, jt, jf, k))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// On random valid programs (no shifts by X, whose result C leaves undefined) both
    /// interpreters and the compiled program return the same value.
    #[test]
    fn random_programs_agree_with_libpcap(
        mut insns in proptest::collection::vec(valid_insn(), 1..24),
        frame in proptest::collection::vec(any::<u8>(), 0..96),
    ) {
        let Ok(lib) = LibPcap::get() else { return Ok(()) };
        insns.push(RawInsn::new(0x16, 0, 0, 0));
        if let Ok(p) = Program::new(&insns) {
            let theirs = lib.run_insns(&insns, &frame).expect("validated");
            prop_assert_eq!(p.run(&frame), theirs);
            prop_assert_eq!(CompiledBpf::new(&p).run(&frame), theirs);
        }
    }
}

/// Sequences the interpreter fuses into one operation: a load, optionally an AND or an
/// indexed load, then a conditional jump against a constant.
fn fusable_block() -> impl Strategy<Value = Vec<RawInsn>> {
    let first = proptest::sample::select(vec![0x20u16, 0x28, 0x30, 0x48, 0x50, 0xb1, 0x54, 0x01]);
    let middle = proptest::sample::select(vec![None, Some(0x54u16), Some(0x48)]);
    let jump = proptest::sample::select(vec![0x15u16, 0x25, 0x35, 0x45]);
    (
        first,
        middle,
        jump,
        0u32..40,
        any::<u32>(),
        0u32..40,
        0u32..300,
        0u8..4,
        0u8..4,
    )
        .prop_map(|(f, m, j, k1, mask, k2, k3, jt, jf)| {
            let mut v = vec![RawInsn::new(f, 0, 0, if f == 0x54 { mask } else { k1 })];
            if let Some(m) = m {
                v.push(RawInsn::new(m, 0, 0, if m == 0x54 { mask } else { k2 }));
            }
            v.push(RawInsn::new(j, jt, jf, k3 & mask.max(1)));
            v
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Programs made of fusable blocks (and jumps into their middles) agree with libpcap,
    /// interpreted and compiled.
    #[test]
    fn fused_sequences_agree_with_libpcap(
        blocks in proptest::collection::vec(fusable_block(), 1..8),
        frame in proptest::collection::vec(any::<u8>(), 0..96),
    ) {
        let Ok(lib) = LibPcap::get() else { return Ok(()) };
        let mut insns: Vec<RawInsn> = blocks.concat();
        insns.push(RawInsn::new(0x16, 0, 0, 0));
        insns.push(RawInsn::new(0x06, 0, 0, 7));
        insns.push(RawInsn::new(0x06, 0, 0, 9));
        if let Ok(p) = Program::new(&insns) {
            let theirs = lib.run_insns(&insns, &frame).expect("validated");
            prop_assert_eq!(p.run(&frame), theirs);
            prop_assert_eq!(CompiledBpf::new(&p).run(&frame), theirs);
        }
    }
}
