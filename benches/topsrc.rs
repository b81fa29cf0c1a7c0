//! The dropped-source sample (`floodgate::topsrc`): what `TopSources::on_drop` adds to each
//! dropped frame, on flood frames from the demo's generator (random sources, a quarter from six
//! heavy ones), against the same loop without it; and one sample (a source read and the
//! 32-entry space-saving update on a full table), the cost paid about once in 64 drops.
//!
//! `cargo bench --bench topsrc` — criterion's "thrpt" column is in frames per second.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use floodgate::topsrc::{source_address, TopSources};
use floodgate_sim::generator::{Generator, GeneratorConfig, Rate, TrafficClass, MAX_GEN_FRAME};
use std::time::Duration;

const BATCH: usize = 1024;

fn flood() -> Vec<Vec<u8>> {
    let mut cfg = GeneratorConfig {
        rate: Rate::MaxSpeed,
        ..GeneratorConfig::default()
    };
    cfg.flood.heavy_sources = (1..=6).map(|i| [198, 18, 7, i * 11]).collect();
    cfg.flood.heavy_percent = 25;
    let mut g = Generator::new(cfg).expect("generator");
    let mut buf = vec![0u8; MAX_GEN_FRAME];
    let mut out = Vec::with_capacity(BATCH);
    while out.len() < BATCH {
        let f = g.next_into(&mut buf).expect("frame");
        if f.class == TrafficClass::Flood {
            out.push(buf[..f.len].to_vec());
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let frames = flood();
    let mut g = c.benchmark_group("topsrc");
    g.throughput(Throughput::Elements(BATCH as u64))
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    g.bench_function("drop_loop_without_sample", |b| {
        b.iter(|| {
            for f in &frames {
                black_box(f.as_slice());
            }
        })
    });
    let mut t = TopSources::new();
    g.bench_function("drop_loop_with_on_drop", |b| {
        b.iter(|| {
            for f in &frames {
                t.on_drop(black_box(f.as_slice()));
            }
        })
    });
    black_box(t.sampled());
    // Every frame sampled: the cost of one sample on a full table.
    let mut t = TopSources::new();
    g.bench_function("sample_every_frame", |b| {
        b.iter(|| {
            for f in &frames {
                if let Some(a) = source_address(black_box(f.as_slice())) {
                    t.record(a, 1);
                }
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
