//! Runs N packets through the daemon's filter loop for instruction counting with callgrind.
//!
//! The model fills the VF's RX ring in `Bench::fill`; the daemon's work per packet is the
//! inclusive cost of `Bench::filter` (FilterLoop::poll: receive, classify, count, drop or hand
//! to a counting sink):
//!
//! ```text
//! cargo build --release --example filter_instr
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/fl.out \
//!     target/release/examples/filter_instr demo demo-mix 1000000
//! callgrind_annotate --inclusive=yes /tmp/fl.out | grep -E 'Bench::(filter|fill)'
//! ```
//!
//! Divide the inclusive Ir of `Bench::filter` by the packet count the program prints. The rule
//! sets are `demo`, `operator` and `tcpdump` (files under `benches/rules/`), or the path of any
//! config ending in `.toml` (to measure a rule set of your own); the mixes `demo-mix` and
//! `reflection-mix`.

#[path = "../benches/kit/filter_loop.rs"]
pub mod kit;

fn main() {
    let mut args = std::env::args().skip(1);
    let set = args.next().unwrap_or_else(|| "demo".into());
    let mix = args.next().unwrap_or_else(|| "demo-mix".into());
    let n: usize = args
        .next()
        .map(|s| s.parse().expect("packet count"))
        .unwrap_or(1_000_000);
    // A rule set by name, or any config file by path (for experiments).
    let by_path = set.ends_with(".toml").then_some(set.as_str());
    let Some(toml) = by_path.or_else(|| {
        kit::RULE_SETS
            .iter()
            .find(|(s, _)| *s == set)
            .map(|(_, t)| *t)
    }) else {
        eprintln!(
            "no rule set {set:?}; one of: {}",
            kit::RULE_SETS.map(|(s, _)| s).join(", ")
        );
        std::process::exit(2);
    };
    if !kit::MIXES.contains(&mix.as_str()) {
        eprintln!("no traffic mix {mix:?}; one of: {}", kit::MIXES.join(", "));
        std::process::exit(2);
    }
    let mut b = kit::Bench::new(toml, &mix);
    let start = std::time::Instant::now();
    let mut done = 0;
    while done < n {
        let filled = b.fill(n - done);
        if filled == 0 {
            eprintln!("the model wrote nothing into the ring");
            std::process::exit(1);
        }
        done += b.filter(filled, start.elapsed().as_nanos() as u64);
    }
    let c = b.fl.counters();
    println!(
        "{set}/{mix}: {done} packets: dropped {}, passed {}, errors {}, invariant {}",
        c.dropped,
        c.passed,
        c.errors,
        if c.invariant_holds() {
            "holds"
        } else {
            "VIOLATED"
        }
    );
    if !c.invariant_holds() || c.errors > 0 {
        std::process::exit(1);
    }
}
