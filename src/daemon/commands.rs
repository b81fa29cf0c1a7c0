//! `check-config` and `rules test`.

use crate::config::Config;
use crate::filter::run_pcap;
use crate::filter::Decision;
use anyhow::{Context, Result};
use std::path::Path;

/// What `check-config` prints: the validated config, rule by rule.
pub fn describe_config(cfg: &Config) -> String {
    format!("{cfg}\nconfig OK\n")
}

/// Totals of a `rules test` run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RulesTestTotals {
    /// Frames in the capture.
    pub frames: u64,
    /// Frames passed.
    pub passed: u64,
    /// Frames dropped.
    pub dropped: u64,
    /// Per rule: name and hits; the last entry is the default action.
    pub hits: Vec<(String, u64)>,
}

/// Runs the config's rules over a capture, printing per-packet verdicts when `verbose` and
/// the per-rule hit counts at the end.
pub fn rules_test(pcap: &Path, config: &Path, verbose: bool) -> Result<RulesTestTotals> {
    let cfg = Config::load(config)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("loading {}", config.display()))?;
    let mut rules = cfg.filter.ruleset();
    let names: Vec<String> = rules.rules().iter().map(|r| r.name.clone()).collect();
    let mut totals = RulesTestTotals::default();
    run_pcap(&mut rules, pcap, |v| {
        totals.frames += 1;
        match v.verdict.action {
            Decision::Pass => totals.passed += 1,
            Decision::Drop => totals.dropped += 1,
        }
        if verbose {
            let by = v
                .verdict
                .rule_index
                .and_then(|i| names.get(i as usize).cloned())
                .unwrap_or_else(|| "default".into());
            println!(
                "{:>8} {:>5} bytes  {:<4} by {}{}",
                v.number,
                v.header.orig_len,
                v.verdict.action,
                by,
                if v.verdict.rate_limited {
                    " (rate limited)"
                } else {
                    ""
                }
            );
        }
    })
    .with_context(|| format!("running rules over {}", pcap.display()))?;
    let c = rules.counters();
    for (name, rc) in names.iter().zip(c.rules.iter()) {
        totals.hits.push((name.clone(), rc.hits));
    }
    totals.hits.push(("default".into(), c.default.hits));
    println!(
        "{}: {} frames, {} passed, {} dropped",
        pcap.display(),
        totals.frames,
        totals.passed,
        totals.dropped
    );
    for ((name, hits), rc) in totals
        .hits
        .iter()
        .zip(c.rules.iter().chain(std::iter::once(&c.default)))
    {
        println!(
            "  {name:<24} {hits:>10} hits  passed {:>10}  dropped {:>10}  rate-limited {:>8}",
            rc.passed, rc.dropped, rc.rate_limited
        );
    }
    Ok(totals)
}
