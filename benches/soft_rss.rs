//! Soft RSS: dissector + symmetric hash per encapsulation (packets/s on one core), and Toeplitz
//! table-driven against bitwise in the same run.
//!
//! `cargo bench --bench soft_rss` — criterion's "thrpt" column is in packets (elements) per
//! second.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use floodgate::softrss::{
    toeplitz_bitwise, HashAlgorithm, RssConfig, SoftRss, Toeplitz, SYMMETRIC_KEY,
};
use std::time::Duration;

#[path = "../tests/softrss_util/mod.rs"]
mod softrss_util;
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

fn dissect_hash(c: &mut Criterion) {
    let cases: [(&str, Encap, bool); 14] = [
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
    for (alg_name, alg) in [
        ("toeplitz", HashAlgorithm::ToeplitzSymmetric),
        ("fast", HashAlgorithm::Fast { seed: 1 }),
    ] {
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
                b.iter(|| {
                    let mut acc = 0usize;
                    for f in &fr {
                        let c = rss.classify(black_box(f));
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

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = dissect_hash, toeplitz
}
criterion_main!(benches);
