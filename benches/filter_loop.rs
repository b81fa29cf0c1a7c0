//! The filter loop's own cost per packet: what the daemon does for every received frame and
//! nothing else. The NIC model fills the VF's RX ring *outside* the timed section (as in
//! `benches/pmd_rx.rs`); the timed section is `FilterLoop::poll` until every frame of the fill
//! was received, judged by the rules, counted, dropped (buffer straight back to the ring) or
//! handed to a sink that only counts.
//!
//! Rule sets (TOML files that `floodgate check-config` accepts): `benches/rules/demo.toml`,
//! `operator.toml`, `tcpdump.toml` (needs libpcap0.8 at run time; skipped with one line
//! without it). Traffic: `demo-mix` (the demo's flood from random sources plus the known
//! clients' queries) and `reflection-mix` (DNS responses to port 53 plus queries).
//!
//! Run: `cargo bench --bench filter_loop` (one packet per criterion element, so the
//! throughput column is packets per second). Instructions per packet: see
//! `examples/filter_instr.rs`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::{Duration, Instant};

#[path = "kit/filter_loop.rs"]
pub mod kit;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("filter_loop");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_millis(500));
    g.sample_size(20);
    let start = Instant::now();
    for (set, toml) in kit::RULE_SETS {
        for mix in kit::MIXES {
            if set == "tcpdump" && !floodgate::libpcap::LibPcap::available() {
                eprintln!("skipped: filter_loop/{set}/{mix}: libpcap is not installed (apt-get install libpcap0.8)");
                continue;
            }
            let mut b = kit::Bench::new(toml, mix);
            g.bench_function(BenchmarkId::new(set, mix), |bench| {
                bench.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    let mut done = 0u64;
                    while done < iters {
                        let filled = b.fill((iters - done) as usize);
                        assert!(filled > 0, "the model wrote nothing into the ring");
                        // The rules' clock, as the run loop gives it (read outside the timing).
                        let now = start.elapsed().as_nanos() as u64;
                        let t = Instant::now();
                        b.filter(filled, now);
                        total += t.elapsed();
                        done += filled as u64;
                    }
                    total
                })
            });
            let c = b.fl.counters();
            assert!(c.invariant_holds(), "{set}/{mix}: {c:?}");
            assert_eq!(c.errors, 0, "{set}/{mix}: the driver dropped frames: {c:?}");
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
