//! Our classic-BPF interpreter and its compiled (native code) form against libpcap's own
//! interpreter (`pcap_offline_filter`), on the same programs (compiled by libpcap from tcpdump
//! expressions) and the same frames; plus the built-in matchers of the rules engine. Reports
//! packets per second, and for each expression two paired figures against libpcap: `paired
//! NAME` (the interpreter) and `paired compiled NAME`.
//!
//! Run: `cargo bench --bench filter`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use floodgate::bpf::{parse_bytecode, CompiledBpf, Program};
use floodgate::filter::{
    ByteMatch, Decision, Layer, Matcher, PortSet, Proto, ProtoSet, Rule, RuleSet,
};
use floodgate::libpcap::LibPcap;

fn frame_v4(
    proto: u8,
    src: [u8; 4],
    sport: u16,
    dport: u16,
    payload: &[u8],
    vlan: bool,
) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    if vlan {
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
    }
    f.extend_from_slice(&[0x08, 0x00]);
    let l4len = if proto == 6 { 20 } else { 8 };
    let total = (20 + l4len + payload.len()) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0, 0, 64, proto, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[192, 0, 2, 53]);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    if proto == 6 {
        f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    } else {
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
    }
    f.extend_from_slice(payload);
    f.resize(f.len().max(60), 0);
    f
}

/// A DNS-flood mix: mostly reflected responses (UDP 53 -> 53, QR set), some queries, some TCP,
/// a few IPv6 and VLAN-tagged frames.
fn traffic() -> Vec<Vec<u8>> {
    let mut resp = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    resp.resize(200, 0);
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    query.resize(30, 0);
    let mut v = Vec::new();
    for i in 0..256u32 {
        let s = [198, 51, 100, i as u8];
        v.push(match i % 16 {
            0..=10 => frame_v4(17, s, 53, 53, &resp, false),
            11 | 12 => frame_v4(17, [10, 0, 0, i as u8], 40000 + i as u16, 53, &query, false),
            13 => frame_v4(6, s, 40000, 80, b"", false),
            14 => frame_v4(17, s, 53, 53, &resp, true),
            _ => {
                let mut f = vec![
                    2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x86, 0xdd, 0x60, 0, 0, 0, 0, 16, 17, 64,
                ];
                f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
                f.resize(54, 1);
                f.extend_from_slice(&[
                    0, 53, 0, 53, 0, 16, 0, 0, 0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1,
                ]);
                f
            }
        });
    }
    v
}

const EXPRESSIONS: &[(&str, &str)] = &[
    ("udp-dst-53", "udp dst port 53"),
    (
        "dns-reflection",
        "udp and src port 53 and dst port 53 and udp[10] & 0x80 != 0",
    ),
    (
        "mixed",
        "(ip and net 198.51.100.0/24 and not tcp) or (ip6 and udp port 53) or (vlan and udp)",
    ),
];

/// `udp dst port 53`, as libpcap 1.10 compiles it, for machines without libpcap.
const UDP_DST_53: &str = "16,40 0 0 12,21 0 4 34525,48 0 0 20,21 0 11 17,40 0 0 56,21 8 9 53,21 0 8 2048,48 0 0 23,21 0 6 17,40 0 0 20,69 4 0 8191,177 0 0 14,72 0 0 16,21 0 1 53,6 0 0 65535,6 0 0 0";

/// A paired measurement that tolerates a busy machine: the two interpreters alternate over the
/// same batch many times and the fastest pass of each is kept.
fn paired(
    name: &str,
    frames: &[Vec<u8>],
    ours: impl Fn(&[u8]) -> bool,
    theirs: impl Fn(&[u8]) -> bool,
) {
    fn pass(frames: &[Vec<u8>], f: &impl Fn(&[u8]) -> bool) -> f64 {
        let t = Instant::now();
        let mut n = 0u32;
        for fr in frames {
            n += u32::from(f(black_box(fr)));
        }
        black_box(n);
        t.elapsed().as_secs_f64()
    }
    let (mut a, mut b) = (f64::MAX, f64::MAX);
    for _ in 0..3000 {
        a = a.min(pass(frames, &ours));
        b = b.min(pass(frames, &theirs));
    }
    let ns = |t: f64| t * 1e9 / frames.len() as f64;
    println!(
        "paired {name}: ours {:.2} ns/pkt ({:.1} Mpps), libpcap {:.2} ns/pkt ({:.1} Mpps), speed-up {:.2}x",
        ns(a),
        1e3 / ns(a),
        ns(b),
        1e3 / ns(b),
        b / a
    );
}

fn bpf(c: &mut Criterion) {
    let frames = traffic();
    let mut g = c.benchmark_group("filter");
    g.throughput(Throughput::Elements(frames.len() as u64));
    match LibPcap::get() {
        Ok(lib) => {
            for (name, expr) in EXPRESSIONS {
                let theirs = lib.compile_program(expr).expect("compile");
                let ours = Program::new(theirs.insns()).expect("validate");
                let compiled = CompiledBpf::new(&ours);
                let agree = frames
                    .iter()
                    .filter(|f| {
                        ours.matches(f) == theirs.offline_filter(f)
                            && compiled.run(f) == ours.run(f)
                    })
                    .count();
                assert_eq!(agree, frames.len(), "interpreters disagree on {expr:?}");
                let hits = frames.iter().filter(|f| ours.matches(f)).count();
                eprintln!(
                    "{name}: {expr:?}: {} insns, {hits}/{} frames match",
                    ours.len(),
                    frames.len()
                );
                paired(
                    name,
                    &frames,
                    |f| ours.matches(f),
                    |f| theirs.offline_filter(f),
                );
                paired(
                    &format!("compiled {name}"),
                    &frames,
                    |f| compiled.matches(f),
                    |f| theirs.offline_filter(f),
                );
                g.bench_function(format!("compiled/{name}"), |b| {
                    b.iter(|| {
                        let mut n = 0u32;
                        for f in &frames {
                            n += u32::from(compiled.matches(black_box(f)));
                        }
                        n
                    })
                });
                g.bench_function(format!("ours/{name}"), |b| {
                    b.iter(|| {
                        let mut n = 0u32;
                        for f in &frames {
                            n += u32::from(ours.matches(black_box(f)));
                        }
                        n
                    })
                });
                g.bench_function(format!("libpcap/{name}"), |b| {
                    b.iter(|| {
                        let mut n = 0u32;
                        for f in &frames {
                            n += u32::from(theirs.offline_filter(black_box(f)));
                        }
                        n
                    })
                });
            }
        }
        Err(_) => {
            println!(
                "skipped: libpcap comparison: libpcap not installed (apt-get install libpcap0.8)"
            );
            let ours =
                Program::new(&parse_bytecode(UDP_DST_53).expect("bytecode")).expect("validate");
            g.bench_function("ours/udp-dst-53", |b| {
                b.iter(|| frames.iter().filter(|f| ours.matches(black_box(f))).count())
            });
            let compiled = CompiledBpf::new(&ours);
            g.bench_function("compiled/udp-dst-53", |b| {
                b.iter(|| {
                    frames
                        .iter()
                        .filter(|f| compiled.matches(black_box(f)))
                        .count()
                })
            });
        }
    }

    // The rules engine with built-in matchers on the same traffic: drop reflected responses,
    // pass the rest.
    let rules = vec![Rule::new(
        "reflection",
        vec![
            Matcher::Proto(ProtoSet::new(&[Proto::Udp])),
            Matcher::SrcPort(PortSet::new(&[(53, 53)])),
            Matcher::DstPort(PortSet::new(&[(53, 53)])),
            Matcher::Bytes(ByteMatch::new(Layer::L4, 10, &[0x80], Some(&[0x80])).expect("bytes")),
        ],
        floodgate::filter::Action::Drop,
    )];
    let mut rs = RuleSet::new(rules, Decision::Pass);
    g.bench_function("ruleset/builtin-dns-reflection", |b| {
        b.iter(|| {
            let mut n = 0u32;
            for f in &frames {
                n += u32::from(rs.classify(black_box(f), 0).action == Decision::Drop);
            }
            n
        })
    });
    if let Ok(lib) = LibPcap::get() {
        let insns = lib.compile(EXPRESSIONS[1].1).expect("compile");
        let prog = Arc::new(CompiledBpf::new(&Program::new(&insns).expect("validate")));
        let mut rs = RuleSet::new(
            vec![Rule::new(
                "reflection",
                vec![Matcher::Bpf(prog)],
                floodgate::filter::Action::Drop,
            )],
            Decision::Pass,
        );
        g.bench_function("ruleset/tcpdump-dns-reflection", |b| {
            b.iter(|| {
                let mut n = 0u32;
                for f in &frames {
                    n += u32::from(rs.classify(black_box(f), 0).action == Decision::Drop);
                }
                n
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bpf);
criterion_main!(benches);
