//! Runs N frames through the rules alone (no driver, no filter loop) for instruction counting
//! with callgrind: the rules' own share of the filter loop's cost, frame by frame
//! (`RuleSet::classify`) or by bursts of 32 (`RuleSet::classify_burst`).
//!
//! ```text
//! cargo build --release --example rules_instr
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/ri.out \
//!     target/release/examples/rules_instr demo demo-mix burst 1000000
//! callgrind_annotate --inclusive=yes /tmp/ri.out | grep 'rules_instr::run'
//! ```
//!
//! Divide the inclusive Ir of `rules_instr::run` by the frame count. Rule sets and mixes as in
//! `filter_instr`; the mode is `single` or `burst`.

#[path = "../benches/kit/filter_loop.rs"]
pub mod kit;

use floodgate::config::Config;
use floodgate::filter::{Decision, RuleSet, Verdict};

const BURST: usize = 32;

#[inline(never)]
fn run(rules: &mut RuleSet, frames: &[Vec<u8>], burst: bool, n: usize) -> u64 {
    let mut dropped = 0u64;
    let mut out = [Verdict {
        action: Decision::Pass,
        rule_index: None,
        rate_limited: false,
    }; BURST];
    let mut done = 0;
    let mut at = 0;
    let mut now = 0u64;
    while done < n {
        if at + BURST > frames.len() {
            at = 0;
        }
        let chunk = &frames[at..at + BURST];
        now += 1_000;
        if burst {
            rules.classify_burst(chunk, now, &mut out);
            dropped += out.iter().filter(|v| v.action == Decision::Drop).count() as u64;
        } else {
            for f in chunk {
                dropped += u64::from(rules.classify(f, now).action == Decision::Drop);
            }
        }
        at += BURST;
        done += BURST;
    }
    dropped
}

fn main() {
    let mut args = std::env::args().skip(1);
    let set = args.next().unwrap_or_else(|| "demo".into());
    let mix = args.next().unwrap_or_else(|| "demo-mix".into());
    let mode = args.next().unwrap_or_else(|| "burst".into());
    let n: usize = args
        .next()
        .map(|s| s.parse().expect("frame count"))
        .unwrap_or(1_000_000);
    let Some((_, toml)) = kit::RULE_SETS.iter().find(|(s, _)| *s == set) else {
        eprintln!("no rule set {set:?}");
        std::process::exit(2);
    };
    if !kit::MIXES.contains(&mix.as_str()) || !["single", "burst"].contains(&mode.as_str()) {
        eprintln!("usage: rules_instr SET MIX single|burst N");
        std::process::exit(2);
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(toml);
    let cfg = Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rules = cfg.filter.ruleset();
    let frames = kit::mix(&mix, [2, 0, 0, 0, 0, 1]);
    let dropped = run(&mut rules, &frames, mode == "burst", n);
    let c = rules.counters();
    println!(
        "{set}/{mix}/{mode}: {} frames, dropped {dropped}, counters: passed {} dropped {}",
        c.packets,
        c.passed(),
        c.dropped()
    );
    if c.packets != c.passed() + c.dropped() || c.dropped() != dropped {
        eprintln!("counters do not add up");
        std::process::exit(1);
    }
}
