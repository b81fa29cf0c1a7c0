//! The daemon's main loop around a [`FilterLoop`]: per-interval stats line and metrics,
//! VF maintenance (PF reset recovery, link), hot reload of the rules, and a draining stop.

use crate::daemon::filterloop::{FilterLoop, PassSink};
use crate::daemon::metrics::{Metrics, RuleSnapshot, Snapshot};
use crate::filter::RuleSet;
use crate::stats::{progress_line, Counters};
use floodgate_vfio::Device;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Produces a new rule set on reload, or the reason the new config was rejected.
pub type Reloader = Box<dyn FnMut() -> Result<RuleSet, String>>;

/// How the loop is steered from outside.
pub struct LoopControl {
    /// Set (by SIGINT/SIGTERM or the caller) to stop: the loop drains the rings and returns.
    pub stop: Arc<AtomicBool>,
    /// Set (by SIGHUP) to reload the rules through `reloader`.
    pub reload: Arc<AtomicBool>,
    /// Stop at this time (the demo's `--seconds`).
    pub deadline: Option<Instant>,
    /// Stats interval.
    pub interval: Duration,
    /// Print the per-interval line on stderr.
    pub progress: bool,
    /// Publish snapshots here (Prometheus endpoint).
    pub metrics: Option<Arc<Metrics>>,
    /// Builds the new rules on reload.
    pub reloader: Option<Reloader>,
    /// Called once the deadline or stop flag is seen, before draining (the demo stops its
    /// traffic generator here, so the drain really empties the rings).
    pub before_drain: Option<Box<dyn FnOnce()>>,
    /// Busy-poll or nap when the rings are empty.
    pub idle: IdlePolicy,
    /// Called before every poll, also while draining (the demo runs the NIC model here, in
    /// lockstep with the loop; see `floodgate_sim::InlineEngine`). Returns the frames it moved.
    pub pump: Option<Box<dyn FnMut() -> usize>>,
}

/// What the polling thread does when the rings are empty.
///
/// A poll-mode driver that spins on an empty ring burns a core for nothing, and worse, on a
/// shared machine the scheduler then treats it as a CPU hog: when traffic returns it may wait a
/// whole time slice for the CPU while the NIC fills the ring. With a nap policy the thread spins
/// while the rings have been empty for less than `spin` (so back-to-back bursts never sleep) and
/// then sleeps `nap` after each further empty poll until a packet arrives. The nap must be shorter than the time the
/// NIC needs to fill the RX ring: 4096 descriptors last 275 µs at 10 GbE line rate (14.88 Mpps
/// of 64-byte frames), so the default 50 µs nap (plus a few µs of timer slack, which the loop
/// sets to 1 µs) loses nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdlePolicy {
    /// How long the rings must have been empty before the first nap.
    pub spin: Duration,
    /// Nap length; `None` = busy-poll always.
    pub nap: Option<Duration>,
}

impl IdlePolicy {
    /// Always spin (lowest latency, one core at 100 %).
    pub const BUSY: IdlePolicy = IdlePolicy {
        spin: Duration::ZERO,
        nap: None,
    };

    /// Spin while the rings have been empty for less than 20 µs, then nap `us` microseconds per
    /// empty poll (`0` = [`Self::BUSY`]).
    pub fn nap_us(us: u32) -> IdlePolicy {
        if us == 0 {
            return IdlePolicy::BUSY;
        }
        IdlePolicy {
            spin: Duration::from_micros(20),
            nap: Some(Duration::from_micros(u64::from(us))),
        }
    }
}

impl Default for IdlePolicy {
    fn default() -> Self {
        IdlePolicy::nap_us(crate::config::defaults::IDLE_SLEEP_US)
    }
}

impl LoopControl {
    /// A control with no deadline, a 1 s interval, no metrics and no reload.
    pub fn new() -> LoopControl {
        LoopControl {
            stop: Arc::new(AtomicBool::new(false)),
            reload: Arc::new(AtomicBool::new(false)),
            deadline: None,
            interval: Duration::from_secs(1),
            progress: false,
            metrics: None,
            reloader: None,
            before_drain: None,
            idle: IdlePolicy::default(),
            pump: None,
        }
    }
}

impl Default for LoopControl {
    fn default() -> Self {
        LoopControl::new()
    }
}

/// What the loop did.
#[derive(Debug, Clone, Default)]
pub struct LoopReport {
    /// Final counters (after the drain: nothing in flight).
    pub counters: Counters,
    /// Accepted reloads.
    pub reloads: u64,
    /// Rejected reloads (the old rules kept running).
    pub reload_errors: u64,
    /// PF resets the VF recovered from.
    pub pf_resets: u64,
    /// Maintenance passes that hit a PF reset in progress or a mailbox timeout and were retried.
    pub maintenance_retries: u64,
    /// Wall time from start to the stop request.
    pub elapsed: Duration,
    /// Naps taken on empty rings (see [`IdlePolicy`]).
    pub idle_naps: u64,
    /// Survivors still on the VF's TX ring (not reported sent) 1 s after the stop, with
    /// `[reinject] to = "vf"`.
    pub vf_tx_unsent: u64,
}

fn snapshot<D: Device, S: PassSink>(
    fl: &mut FilterLoop<D, S>,
    reloads: u64,
    reload_errors: u64,
    pf_resets: u64,
) -> Snapshot {
    let names = fl.rule_names();
    let c = fl.rule_counters();
    let mut rs: Vec<RuleSnapshot> = names
        .into_iter()
        .zip(c.rules.iter())
        .map(|(name, rc)| RuleSnapshot {
            name,
            hits: rc.hits,
            passed: rc.passed,
            dropped: rc.dropped,
            rate_limited: rc.rate_limited,
        })
        .collect();
    rs.push(RuleSnapshot {
        name: "default".into(),
        hits: c.default.hits,
        passed: c.default.passed,
        dropped: c.default.dropped,
        rate_limited: c.default.rate_limited,
    });
    Snapshot {
        counters: fl.counters(),
        rules: rs,
        pf_resets,
        reloads,
        reload_errors,
    }
}

/// Runs until `ctl.stop` is set or the deadline passes, then drains the rings.
///
/// A reload swaps the rule set between two bursts: every packet of a burst is judged by exactly
/// one rule set, so none is lost or counted twice. A rejected config is logged and the old rules
/// keep running.
pub fn run_loop<D: Device, S: PassSink>(
    fl: &mut FilterLoop<D, S>,
    ctl: &mut LoopControl,
) -> Result<LoopReport, floodgate_pmd::Error> {
    let start = Instant::now();
    let mut rep = LoopReport::default();
    let mut last_tick = start;
    let mut last = fl.counters();
    let mut iter: u32 = 0;
    // The rules' clock (rate limiters) is refreshed every 32 polls: a few microseconds of
    // granularity, and no clock read per burst.
    // Rule time stamps are nanoseconds since the Unix epoch (sampled frames are written with
    // them); the monotonic clock advances them so a stepping wall clock cannot run them back.
    let epoch_base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut now_ns = epoch_base;
    let mut empty: u32 = 0;
    let mut empty_since = start;
    let mut napping = false;
    if ctl.idle.nap.is_some() {
        // Naps of tens of microseconds would otherwise be stretched by the default 50 µs timer
        // slack of a normal thread.
        // SAFETY: PR_SET_TIMERSLACK takes an integer argument and affects only this thread.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong, 0, 0, 0) };
    }
    loop {
        if iter.is_multiple_of(32) {
            now_ns = epoch_base + start.elapsed().as_nanos() as u64;
        }
        if let Some(p) = ctl.pump.as_mut() {
            p();
        }
        if fl.poll(now_ns) == 0 {
            empty = empty.saturating_add(1);
            if let Some(nap) = ctl.idle.nap {
                // The clock is read on the first empty poll and then every 16th: an empty
                // poll costs tens of nanoseconds, a clock read about twenty.
                if empty == 1 {
                    empty_since = Instant::now();
                    napping = false;
                } else if !napping
                    && empty.is_multiple_of(16)
                    && empty_since.elapsed() >= ctl.idle.spin
                {
                    napping = true;
                }
                if napping {
                    std::thread::sleep(nap);
                    rep.idle_naps += 1;
                    // The clock moved on while asleep.
                    now_ns = epoch_base + start.elapsed().as_nanos() as u64;
                }
            }
        } else {
            empty = 0;
        }
        iter = iter.wrapping_add(1);
        if !iter.is_multiple_of(256) {
            continue;
        }
        if ctl.reload.swap(false, Ordering::AcqRel) {
            match ctl.reloader.as_mut().map(|f| f()) {
                Some(Ok(rules)) => {
                    fl.replace_rules(rules);
                    rep.reloads += 1;
                    log::info!("reloaded rules ({} rules)", fl.rule_names().len());
                }
                Some(Err(e)) => {
                    rep.reload_errors += 1;
                    log::error!("reload rejected, old rules keep running: {e}");
                }
                None => log::warn!("reload requested but this run has no config file"),
            }
        }
        let now = Instant::now();
        if now.duration_since(last_tick) >= ctl.interval {
            // A PF reset still in progress, or a mailbox that did not answer in time, is retried
            // at the next interval (the VF keeps its buffers); only a device that is gone (or an
            // unrecoverable driver error) ends the loop.
            let m = match fl.maintain() {
                Ok(m) => m,
                Err(
                    e @ (floodgate_pmd::Error::PfResetInProgress { .. }
                    | floodgate_pmd::Error::ResetTimeout { .. }
                    | floodgate_pmd::Error::MailboxTimeout { .. }),
                ) => {
                    rep.maintenance_retries += 1;
                    log::warn!("VF maintenance will be retried: {e}");
                    Default::default()
                }
                Err(e) => return Err(e),
            };
            if m.reinitialised {
                rep.pf_resets += 1;
                log::warn!("PF reset: VF and queues re-initialised");
            }
            if let Some(l) = m.link_changed {
                log::info!("link changed: {l:?}");
            }
            if let Err(e) = fl.flush_samples() {
                log::warn!("writing sampled packets: {e}");
            }
            let c = fl.counters();
            if ctl.progress {
                eprintln!(
                    "{}",
                    progress_line(&c.since(&last), now.duration_since(last_tick))
                );
            }
            if let Some(metrics) = &ctl.metrics {
                metrics.publish(snapshot(fl, rep.reloads, rep.reload_errors, rep.pf_resets));
            }
            last = c;
            last_tick = now;
        }
        let deadline_passed = ctl.deadline.is_some_and(|d| now >= d);
        if deadline_passed || ctl.stop.load(Ordering::Acquire) {
            break;
        }
    }
    rep.elapsed = start.elapsed();
    if let Some(f) = ctl.before_drain.take() {
        f();
    }
    // Drain: keep polling until the rings stay empty for a while (100 polls, 10 ms apart at
    // most), so no received packet is left without a verdict.
    let mut idle = 0;
    while idle < 100 {
        let pumped = ctl.pump.as_mut().map_or(0, |p| p());
        let polled = fl.poll(epoch_base + start.elapsed().as_nanos() as u64);
        if polled == 0 && pumped == 0 {
            idle += 1;
            std::thread::sleep(Duration::from_micros(100));
        } else {
            idle = 0;
        }
    }
    // Workers drain their rings and stop; what they handed back for the VF goes out.
    fl.finish();
    // Survivors sent out of the VF: wait (up to 1 s, still pumping a lockstep model) until the
    // NIC reports them sent, so a stop does not cut off packets already counted as `vf_tx`.
    let tx_deadline = Instant::now() + Duration::from_secs(1);
    let mut outstanding = fl.vf_tx_outstanding();
    while outstanding > 0 && Instant::now() < tx_deadline {
        if let Some(p) = ctl.pump.as_mut() {
            p();
        }
        std::thread::sleep(Duration::from_micros(100));
        outstanding = fl.vf_tx_outstanding();
    }
    if outstanding > 0 {
        log::warn!(
            "{outstanding} survivors were still on the VF's TX ring 1 s after the stop \
             (counted as vf_tx; the NIC may not have sent them)"
        );
    }
    rep.vf_tx_unsent = outstanding;
    fl.sync_driver_errors();
    if let Err(e) = fl.flush_samples() {
        log::warn!("writing sampled packets: {e}");
    }
    rep.counters = fl.counters();
    if let Some(metrics) = &ctl.metrics {
        metrics.publish(snapshot(fl, rep.reloads, rep.reload_errors, rep.pf_resets));
    }
    Ok(rep)
}
