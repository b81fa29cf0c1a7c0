//! Cost of the model's per-frame switch work: the classifier (FDIR, L2, RSS), the Toeplitz
//! hash and the traffic generator. Reported as frames per second (Throughput::Elements, 1024
//! frames per iteration). These run on the model's side of every non-feeder benchmark, so they
//! must stay well above the driver's rate.

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use floodgate_sim::ethtool::{FlowType, RxFlowSpec};
use floodgate_sim::fdir::PoolLayout;
use floodgate_sim::generator::{
    build_tcp4_vlan, build_udp4, Generator, GeneratorConfig, Rate, MAX_GEN_FRAME, TCP_ACK,
};
use floodgate_sim::l2::PoolConfig;
use floodgate_sim::switch::{Classification, Ingress, Switch};
use floodgate_sim::toeplitz::{Toeplitz, MICROSOFT_RSS_KEY};

const BATCH: usize = 1024;
const VF0: [u8; 6] = [2, 0, 0, 0, 0, 0x10];

fn frames(make: impl Fn(&mut [u8], u16) -> usize) -> Vec<Vec<u8>> {
    (0..BATCH as u16)
        .map(|i| {
            let mut b = vec![0u8; 128];
            let n = make(&mut b, i);
            b.truncate(n);
            b
        })
        .collect()
}

fn bench_switch(c: &mut Criterion) {
    let mut sw = Switch::new(PoolLayout::new(2, 4).unwrap());
    for vf in 0..2u16 {
        let mut p = PoolConfig::vf_default([2, 0, 0, 0, 0, 0x10 + vf as u8]);
        p.rqpl = 2;
        sw.set_pool(vf, p).unwrap();
    }
    sw.ethtool_add_ntuple(
        &RxFlowSpec::new(FlowType::UdpV4)
            .dst_port(53)
            .to_vf(0, 1)
            .at(0),
    )
    .unwrap();
    let pf = sw.pf_mac();
    let tcp = frames(|b, i| {
        build_tcp4_vlan(
            b,
            VF0,
            [2; 6],
            None,
            [10, 1, (i >> 8) as u8, i as u8],
            [10, 0, 0, 1],
            1000 + i,
            80,
            1,
            TCP_ACK,
            b"",
        )
        .unwrap()
    });
    let dns = frames(|b, i| {
        build_udp4(
            b,
            pf,
            [2; 6],
            [10, 2, (i >> 8) as u8, i as u8],
            [10, 0, 0, 1],
            1000 + i,
            53,
            b"q",
        )
        .unwrap()
    });
    let bcast = frames(|b, i| {
        build_udp4(
            b,
            [0xFF; 6],
            [2; 6],
            [10, 3, 0, i as u8],
            [10, 0, 0, 255],
            67,
            68,
            b"d",
        )
        .unwrap()
    });
    let mut g = c.benchmark_group("sim_switch");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(500));
    let mut out = Box::<Classification>::default();
    for (name, set) in [
        ("l2_rss_tcp", &tcp),
        ("fdir_hit_udp53", &dns),
        ("broadcast_3_pools", &bcast),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                for f in set.iter() {
                    sw.classify_into(f, Ingress::Wire, &mut out);
                    black_box(out.destinations().len());
                }
            })
        });
    }
    let t = Toeplitz::new(&MICROSOFT_RSS_KEY);
    g.bench_function("toeplitz_ipv4_ports", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for i in 0..BATCH as u32 {
                acc ^= t.hash_ipv4_ports(i.to_be_bytes(), [10, 0, 0, 1], i as u16, 53);
            }
            black_box(acc)
        })
    });
    let mut gen = Generator::new(GeneratorConfig {
        rate: Rate::MaxSpeed,
        ..Default::default()
    })
    .unwrap();
    let mut buf = vec![0u8; MAX_GEN_FRAME];
    g.bench_function("generator_default_mix", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                black_box(gen.next_into(&mut buf).unwrap().len);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_switch);
criterion_main!(benches);
