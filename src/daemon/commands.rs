//! `check-config` and `rules test`.

use crate::config::Config;
use crate::filter::run_pcap;
use crate::filter::{Action, Decision};
use anyhow::{Context, Result};
use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// What `check-config` prints: the validated config, rule by rule.
pub fn describe_config(cfg: &Config) -> String {
    format!("{cfg}\nconfig OK\n")
}

/// `check-config`: loads and validates the file, checks that `[daemon] user` and `group`
/// exist, and returns what [`describe_config`] prints.
pub fn check_config(path: &Path) -> Result<String> {
    let cfg = Config::load(path)
        .and_then(|c| c.check_accounts().map(|()| c))
        .with_context(|| format!("checking {}", path.display()))?;
    Ok(describe_config(&cfg))
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

/// A private directory (mode 0700) deleted when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Result<ScratchDir> {
        let template = std::env::temp_dir().join("floodgate-rules-test-XXXXXX");
        let mut bytes = std::os::unix::ffi::OsStrExt::as_bytes(template.as_os_str()).to_vec();
        bytes.push(0);
        // SAFETY: `bytes` is a writable NUL-terminated template ending in XXXXXX.
        let p = unsafe { libc::mkdtemp(bytes.as_mut_ptr().cast()) };
        if p.is_null() {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("creating {}", template.display()));
        }
        bytes.pop();
        Ok(ScratchDir(PathBuf::from(
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&bytes),
        )))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Points every sample rule of `cfg` into `dir`, keeping the file name (made unique with the
/// rule's index if two rules use the same one). Returns how many sample rules there are.
fn redirect_samples(cfg: &mut Config, dir: &Path) -> usize {
    let mut seen = HashSet::new();
    let mut n = 0;
    for (i, r) in cfg.filter.rules.iter_mut().enumerate() {
        if let Action::Sample(s) = &mut r.action {
            let base = s
                .policy
                .path
                .file_name()
                .map(|n| n.to_owned())
                .unwrap_or_else(|| OsString::from("sample.pcap"));
            let mut name = base.clone();
            if !seen.insert(name.clone()) {
                name = OsString::from(format!("{i}-"));
                name.push(&base);
                seen.insert(name.clone());
            }
            s.policy.path = dir.join(name);
            n += 1;
        }
    }
    n
}

/// Runs the config's rules over a capture, printing per-packet verdicts when `verbose` and
/// the per-rule hit counts at the end.
///
/// The sample files named in the config are never written: with `samples` the sample rules
/// write into that directory instead (same file names, mode 0600); without it they write into
/// a private temporary directory that is deleted before returning, so the sampled counts are
/// real but nothing is kept.
pub fn rules_test(
    pcap: &Path,
    config: &Path,
    verbose: bool,
    samples: Option<&Path>,
) -> Result<RulesTestTotals> {
    let mut cfg = Config::load(config).with_context(|| format!("loading {}", config.display()))?;
    let scratch;
    let sample_dir = match samples {
        Some(d) => {
            if !d.is_dir() {
                anyhow::bail!("--samples {}: not a directory", d.display());
            }
            d.to_path_buf()
        }
        None if cfg
            .filter
            .rules
            .iter()
            .any(|r| matches!(r.action, Action::Sample(_))) =>
        {
            scratch = ScratchDir::new()?;
            scratch.0.clone()
        }
        None => PathBuf::new(),
    };
    let sample_rules = redirect_samples(&mut cfg, &sample_dir);
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
    rules
        .flush_samples()
        .with_context(|| format!("writing samples into {}", sample_dir.display()))?;
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
    if sample_rules > 0 {
        let sampled: u64 = c.rules.iter().map(|r| r.sampled).sum();
        let errors: u64 = c.rules.iter().map(|r| r.sample_errors).sum();
        match samples {
            Some(d) => println!(
                "  samples: {sampled} frames written into {} ({errors} errors)",
                d.display()
            ),
            None => println!(
                "  samples: {sampled} frames sampled, not kept (--samples DIR writes them there)"
            ),
        }
    }
    Ok(totals)
}
