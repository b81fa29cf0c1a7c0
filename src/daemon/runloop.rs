//! The daemon's main loop around a [`FilterLoop`]: per-interval stats line and metrics,
//! VF maintenance (PF reset recovery, link), hot reload of the rules, and a draining stop.
//!
//! Nothing slow runs here between two polls: a reload's new rule set is built on another thread
//! and only moved in (see [`LoopControl::new_rules`]); signals are taken by a signal thread that
//! sets [`LoopControl::stop`] / [`LoopControl::abort`]; a stop drains the rings for at most
//! [`LoopControl::drain_timeout`] and counts what it leaves behind.

use crate::backend::{BackendError, PacketBackend};
use crate::daemon::filterloop::{FilterLoop, PassSink};
use crate::daemon::metrics::{Metrics, RuleSnapshot, Snapshot};
use crate::filter::RuleSet;
use crate::stats::{progress_line, Counters};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Produces a new rule set on reload, or the reason the new config was rejected. Runs on the
/// polling thread: for tests and embedders; the daemon builds its rules on a reload thread and
/// hands them over through [`LoopControl::new_rules`].
pub type Reloader = Box<dyn FnMut() -> Result<RuleSet, String>>;

/// A rule set built off the data path for a reload: the set itself and one fork per worker
/// (see [`FilterLoop::workers`]), so installing it allocates nothing on the polling thread.
pub struct PreparedRules {
    /// The new rules.
    pub rules: RuleSet,
    /// One copy per worker (empty when judging inline).
    pub forks: Vec<RuleSet>,
    /// How long reading, parsing, compiling and building took (for the log).
    pub took: Duration,
}

impl PreparedRules {
    /// Builds `rules` and `workers` forks of it.
    pub fn new(rules: RuleSet, workers: usize) -> PreparedRules {
        let forks = (0..workers).map(|_| rules.fork()).collect();
        PreparedRules {
            rules,
            forks,
            took: Duration::ZERO,
        }
    }
}

/// The outcome of one reload request, sent by the reload thread: new rules, or why the new
/// config was rejected.
pub type ReloadOutcome = Result<PreparedRules, String>;

/// Reads the NIC's count of frames it could not place in the VF's RX rings (no free
/// descriptor, or a full packet buffer): a running total, read once per stats interval.
pub type NicMissed = Box<dyn FnMut() -> u64>;

/// Frames per queue a stop takes from the rings (and counts as `left`) once the drain's time
/// is up: as many as the largest ring holds (8192 descriptors on 82599/X540, facts §6), so
/// every frame that was in a ring is counted, and bounded, so a flood cannot hold the stop.
const ABANDON_PER_QUEUE: usize = 8192;

/// How the loop is steered from outside.
pub struct LoopControl {
    /// Set (by SIGINT/SIGTERM or the caller) to stop: the loop drains the rings (for at most
    /// `drain_timeout`) and returns.
    pub stop: Arc<AtomicBool>,
    /// Set (by a second SIGINT/SIGTERM) to stop at once: no drain, no wait for the VF's TX ring;
    /// what is in the rings is counted as `left`.
    pub abort: Arc<AtomicBool>,
    /// How long a stop keeps judging what is in the rings before it gives up on the rest (which
    /// is counted as `left`): traffic that never stops cannot hold the stop longer than this.
    pub drain_timeout: Duration,
    /// Rule sets prepared by a reload thread (or rejections), taken between two bursts.
    pub new_rules: Option<Receiver<ReloadOutcome>>,
    /// Where replaced rule sets go to be freed off the data path (dropped here when `None`).
    pub retired: Option<Sender<RuleSet>>,
    /// The NIC's missed-frame counter, when the device has one the daemon can read.
    pub nic_missed: Option<NicMissed>,
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
    /// Fed by the polling thread itself (systemd's `WatchdogSec`, see
    /// [`crate::sdnotify::WatchdogFeeder`]): a loop that is stuck stops feeding it and is
    /// restarted; a busy one keeps feeding it.
    pub watchdog: Option<crate::sdnotify::WatchdogFeeder>,
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
            abort: Arc::new(AtomicBool::new(false)),
            drain_timeout: Duration::from_millis(u64::from(
                crate::config::defaults::DRAIN_TIMEOUT_MS,
            )),
            new_rules: None,
            retired: None,
            nic_missed: None,
            reload: Arc::new(AtomicBool::new(false)),
            deadline: None,
            interval: Duration::from_secs(1),
            progress: false,
            metrics: None,
            reloader: None,
            before_drain: None,
            idle: IdlePolicy::default(),
            pump: None,
            watchdog: None,
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
    /// The drain ran out of time (or was cut short by a second stop signal): what was still
    /// in the rings is counted in `counters.left`.
    pub drain_cut: bool,
    /// The stop was a second signal's: no drain.
    pub aborted: bool,
    /// Frames the NIC could not place in the VF's rings during the run (`None`: the device
    /// has no counter the daemon can read).
    pub nic_missed: Option<u64>,
    /// Device requests that timed out without the device being gone (vfio-user).
    pub transport_timeouts: u64,
}

/// The loop ended because the device failed (it is gone, or an unrecoverable driver error):
/// the error, and the report of everything counted up to then. What the NIC had already written
/// into host memory was judged and the workers were stopped before this was returned, so the
/// report's counters are final and the invariant holds for them.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct LoopFailure {
    /// What ended the loop.
    #[source]
    pub error: BackendError,
    /// The counters and events up to the failure.
    pub report: LoopReport,
}

fn snapshot<B: PacketBackend, S: PassSink>(
    fl: &mut FilterLoop<B, S>,
    rep: &LoopReport,
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
        pf_resets: rep.pf_resets,
        reloads: rep.reloads,
        reload_errors: rep.reload_errors,
        nic_missed: rep.nic_missed,
        pool_free: Some(fl.pool_free()),
        transport_timeouts: rep.transport_timeouts,
        backend: Some((fl.backend().kind(), fl.backend().mode())),
    }
}

/// Takes the reload outcomes that are ready (never waits) and installs the last good rule set.
fn take_new_rules<B: PacketBackend, S: PassSink>(
    fl: &mut FilterLoop<B, S>,
    ctl: &mut LoopControl,
    rep: &mut LoopReport,
) {
    let Some(rx) = ctl.new_rules.as_ref() else {
        return;
    };
    loop {
        match rx.try_recv() {
            Ok(Ok(p)) => {
                let took = p.took;
                let old = fl.install_rules(p.rules, p.forks);
                rep.reloads += 1;
                crate::sdnotify::ready();
                log::info!(
                    "reloaded rules ({} rules; prepared off the polling thread in {} ms)",
                    fl.rule_names().len(),
                    took.as_millis()
                );
                if let (Some(old), Some(tx)) = (old, ctl.retired.as_ref()) {
                    // Freed on the reload thread; if it is gone, freed here.
                    let _ = tx.send(old);
                }
            }
            Ok(Err(e)) => {
                rep.reload_errors += 1;
                log::error!("reload rejected, old rules keep running: {e}");
                crate::sdnotify::status("reload rejected: the old rules keep running");
                crate::sdnotify::ready();
            }
            Err(TryRecvError::Empty) => return,
            Err(TryRecvError::Disconnected) => {
                ctl.new_rules = None;
                return;
            }
        }
    }
}

/// Reads the NIC's missed-frame counter into the report.
fn read_nic_missed(ctl: &mut LoopControl, rep: &mut LoopReport) {
    if let Some(f) = ctl.nic_missed.as_mut() {
        rep.nic_missed = Some(f());
    }
}

/// The device failed: judges what the NIC had already written into host memory (bounded: a
/// device that is gone writes nothing more), stops the workers and takes the final counters,
/// so a failure still ends with exact counts.
fn settle_after_failure<B: PacketBackend, S: PassSink>(
    fl: &mut FilterLoop<B, S>,
    ctl: &mut LoopControl,
    rep: &mut LoopReport,
    now_ns: u64,
) {
    let mut polls = 0;
    while fl.poll(now_ns) > 0 && polls < 100_000 {
        polls += 1;
    }
    fl.finish();
    fl.sync_rx_errors();
    if let Err(e) = fl.flush_samples() {
        log::warn!("writing sampled packets: {e}");
    }
    rep.counters = fl.counters();
    read_nic_missed(ctl, rep);
    rep.transport_timeouts = fl.backend().transport_timeouts();
    if let Some(metrics) = &ctl.metrics {
        metrics.publish(snapshot(fl, rep));
    }
}

/// Runs until `ctl.stop` is set or the deadline passes, then drains the rings.
///
/// A reload swaps the rule set between two bursts: every packet of a burst is judged by exactly
/// one rule set, so none is lost or counted twice. A rejected config is logged and the old rules
/// keep running. Reloads prepared on another thread ([`LoopControl::new_rules`]) are looked for
/// every 256 polls without waiting.
///
/// A stop drains for at most [`LoopControl::drain_timeout`]; then (or at once after
/// [`LoopControl::abort`]) what is still in the rings is taken and counted as `left`.
pub fn run_loop<B: PacketBackend, S: PassSink>(
    fl: &mut FilterLoop<B, S>,
    ctl: &mut LoopControl,
) -> Result<LoopReport, Box<LoopFailure>> {
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
        take_new_rules(fl, ctl, &mut rep);
        if let Some(w) = ctl.watchdog.as_mut() {
            // Paces itself (at most one message per half watchdog period).
            w.feed(Instant::now());
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
            // A PF reset still in progress, a mailbox that did not answer in time, or a PF that
            // refused a request of the re-initialisation after a reset, is retried at the next
            // interval (the VF keeps its buffers and its reset stays pending, so the next pass
            // redoes the whole re-initialisation); only a device that is gone (or an
            // unrecoverable driver error) ends the loop.
            let m = match fl.maintain() {
                Ok(m) => m,
                Err(e) if e.is_transient() => {
                    rep.maintenance_retries += 1;
                    log::warn!("{} maintenance will be retried: {e}", fl.backend().kind());
                    Default::default()
                }
                Err(error) => {
                    rep.elapsed = start.elapsed();
                    settle_after_failure(
                        fl,
                        ctl,
                        &mut rep,
                        epoch_base + start.elapsed().as_nanos() as u64,
                    );
                    return Err(Box::new(LoopFailure { error, report: rep }));
                }
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
            let missed_before = rep.nic_missed;
            read_nic_missed(ctl, &mut rep);
            rep.transport_timeouts = fl.backend().transport_timeouts();
            if ctl.progress {
                let mut line = progress_line(&c.since(&last), now.duration_since(last_tick));
                if let Some(m) = rep.nic_missed {
                    line.push_str(&format!(
                        " | nic missed {}",
                        m.saturating_sub(missed_before.unwrap_or(0))
                    ));
                }
                eprintln!("{line}");
            }
            if let Some(metrics) = &ctl.metrics {
                metrics.publish(snapshot(fl, &rep));
            }
            last = c;
            last_tick = now;
        }
        let deadline_passed = ctl.deadline.is_some_and(|d| now >= d);
        if deadline_passed || ctl.stop.load(Ordering::Acquire) || ctl.abort.load(Ordering::Acquire)
        {
            break;
        }
    }
    rep.elapsed = start.elapsed();
    crate::sdnotify::stopping();
    // Reloads that finished before the stop are counted (and installed: the drain judges with
    // the newest rules).
    take_new_rules(fl, ctl, &mut rep);
    if let Some(f) = ctl.before_drain.take() {
        f();
    }
    // Drain: keep polling until the rings stay empty for a while (100 polls, 10 ms apart at
    // most), so no received packet is left without a verdict; but no longer than the drain
    // timeout, since a flood may never let the rings go quiet, and not at all after a second
    // stop signal.
    let drain_deadline = Instant::now() + ctl.drain_timeout;
    let mut idle = 0;
    rep.aborted = ctl.abort.load(Ordering::Acquire);
    rep.drain_cut = rep.aborted;
    while idle < 100 && !rep.drain_cut {
        let pumped = ctl.pump.as_mut().map_or(0, |p| p());
        let polled = fl.poll(epoch_base + start.elapsed().as_nanos() as u64);
        if polled == 0 && pumped == 0 {
            idle += 1;
            std::thread::sleep(Duration::from_micros(100));
        } else {
            idle = 0;
        }
        if ctl.abort.load(Ordering::Acquire) {
            rep.aborted = true;
            rep.drain_cut = true;
        } else if Instant::now() >= drain_deadline {
            rep.drain_cut = true;
        }
    }
    if rep.drain_cut {
        let left = fl.abandon_rings(ABANDON_PER_QUEUE);
        log::warn!(
            "stop: {}; {left} frame(s) still in the RX rings were released without a verdict \
             (counted as left in rings)",
            if rep.aborted {
                "second stop signal, drain skipped".to_string()
            } else {
                format!(
                    "the rings did not go quiet within the drain timeout ({} ms)",
                    ctl.drain_timeout.as_millis()
                )
            }
        );
    }
    // Workers drain their rings and stop; what they handed back for the VF goes out.
    fl.finish();
    // Survivors sent out of the VF: wait (up to 1 s, still pumping a lockstep model) until the
    // NIC reports them sent, so a stop does not cut off packets already counted as `vf_tx`.
    // A second stop signal does not wait.
    let tx_deadline = Instant::now() + Duration::from_secs(1);
    let mut outstanding = fl.tx_outstanding();
    while outstanding > 0 && Instant::now() < tx_deadline && !ctl.abort.load(Ordering::Acquire) {
        if let Some(p) = ctl.pump.as_mut() {
            p();
        }
        std::thread::sleep(Duration::from_micros(100));
        outstanding = fl.tx_outstanding();
    }
    if outstanding > 0 {
        log::warn!(
            "{outstanding} survivors were still on the VF's TX ring 1 s after the stop \
             (counted as vf_tx; the NIC may not have sent them)"
        );
    }
    rep.vf_tx_unsent = outstanding;
    fl.sync_rx_errors();
    if let Err(e) = fl.flush_samples() {
        log::warn!("writing sampled packets: {e}");
    }
    rep.counters = fl.counters();
    read_nic_missed(ctl, &mut rep);
    rep.transport_timeouts = fl.backend().transport_timeouts();
    if let Some(metrics) = &ctl.metrics {
        metrics.publish(snapshot(fl, &rep));
    }
    Ok(rep)
}
