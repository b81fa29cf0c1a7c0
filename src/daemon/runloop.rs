//! The daemon's main loop around a [`FilterLoop`]: per-interval stats line and metrics,
//! backend maintenance (PF reset recovery, link), hot reload of the rules, and a draining stop.
//! [`run_loop`] is an outline; each concern is a piece it calls: the clock, the idle naps, the
//! reload intake, the maintenance triage, the interval output, the drain and the final count.
//!
//! Nothing slow runs here between two polls: a reload's new rule set is built on another thread
//! and only moved in (see [`LoopControl::new_rules`]); signals are taken by a signal thread that
//! sets [`LoopControl::stop`] / [`LoopControl::abort`]; a stop drains the rings for at most
//! [`LoopControl::drain_timeout`] and counts what it leaves behind.

use crate::backend::{BackendError, PacketBackend};
use crate::daemon::filterloop::FilterLoop;
use crate::daemon::metrics::{Metrics, RuleSnapshot, Snapshot, WorkerSnapshot};
use crate::filter::RuleSet;
use crate::sink::PassSink;
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
    /// How long reading, parsing, compiling and building took (for the log; the reload
    /// thread measures it from the request).
    pub took: Duration,
    /// When the set was built: `took` plus the time since then is the reload's latency.
    pub built: Instant,
}

impl PreparedRules {
    /// Builds `rules` and `workers` forks of it.
    pub fn new(rules: RuleSet, workers: usize) -> PreparedRules {
        let forks = (0..workers).map(|_| rules.fork()).collect();
        PreparedRules {
            rules,
            forks,
            took: Duration::ZERO,
            built: Instant::now(),
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
    /// Its time is measured apart from the polls' ([`LoopReport::pump_time`]).
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
    /// Time the polling thread spent in its polls (receive, judge or dispatch, drop, hand
    /// over survivors), measured around each poll: not the model's pump, naps, reloads or
    /// the per-interval housekeeping. With workers, their judging runs on other threads and
    /// is not in here.
    pub filter_time: Duration,
    /// Time spent in [`LoopControl::pump`] (the model, in lockstep with the loop).
    pub pump_time: Duration,
    /// Accepted reloads' latency, request to new rules in force.
    pub reload_latency: crate::daemon::metrics::ReloadLatency,
}

impl LoopReport {
    /// The loop's own time per received packet, in nanoseconds (0 when nothing was received).
    pub fn filter_ns_per_packet(&self) -> f64 {
        per_packet(self.filter_time, self.counters.rx_packets)
    }

    /// The pump's (the model's) time per received packet, in nanoseconds.
    pub fn pump_ns_per_packet(&self) -> f64 {
        per_packet(self.pump_time, self.counters.rx_packets)
    }
}

fn per_packet(t: Duration, packets: u64) -> f64 {
    if packets == 0 {
        return 0.0;
    }
    t.as_nanos() as f64 / packets as f64
}

/// The loop ended because the device failed (it is gone, or an unrecoverable driver error):
/// the error, and the report of everything counted up to then. What the NIC had already written
/// into host memory was judged and the workers were stopped before this was returned, so the
/// report's counters are final and the invariant holds for them.
#[derive(Debug, thiserror::Error)]
#[error("the packet backend failed")]
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
        workers: fl
            .worker_reports()
            .iter()
            .map(|r| WorkerSnapshot {
                rx: r.rx_packets,
                dropped: r.counters.dropped,
                passed: r.counters.passed,
            })
            .collect(),
        top_sources: fl.top_sources(crate::topsrc::TOP_N),
        reload_latency: rep.reload_latency,
        backend: Some((fl.backend().kind(), fl.backend().mode())),
    }
}

/// The polling thread's clock: the rules' time stamps and where the thread's time goes.
///
/// One clock read ends each stretch of the thread's time and attributes the time since the
/// previous read to the polls ([`lap_filter`](Self::lap_filter)), to the pump
/// ([`lap_pump`](Self::lap_pump)) or to neither ([`lap_idle`](Self::lap_idle): naps,
/// housekeeping).
/// Rule time stamps are nanoseconds since the Unix epoch (sampled frames are written with
/// them); the monotonic clock advances them, so a stepping wall clock cannot run them back.
struct Clock {
    start: Instant,
    epoch_base: u64,
    /// The last read.
    mark: Instant,
    filter: Duration,
    pump: Duration,
}

impl Clock {
    fn start() -> Clock {
        let start = Instant::now();
        let epoch_base = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Clock {
            start,
            epoch_base,
            mark: start,
            filter: Duration::ZERO,
            pump: Duration::ZERO,
        }
    }

    /// The rules' time at the last read.
    fn rule_ns(&self) -> u64 {
        self.epoch_base + self.mark.duration_since(self.start).as_nanos() as u64
    }

    fn read(&mut self) -> (Instant, Duration) {
        let now = Instant::now();
        let since = now.duration_since(self.mark);
        self.mark = now;
        (now, since)
    }

    /// The time since the last read was the loop's polling.
    fn lap_filter(&mut self) -> Instant {
        let (now, d) = self.read();
        self.filter += d;
        now
    }

    /// The time since the last read was the pump's.
    fn lap_pump(&mut self) {
        let (_, d) = self.read();
        self.pump += d;
    }

    /// The time since the last read was neither polling nor pumping.
    fn lap_idle(&mut self) -> Instant {
        self.read().0
    }

    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Copies the time accounts into the report.
    fn report(&self, rep: &mut LoopReport) {
        rep.filter_time = self.filter;
        rep.pump_time = self.pump;
    }
}

/// Runs the model's pump, if there is one, and times it apart from the loop's work. Returns
/// the frames it moved.
fn pump(ctl: &mut LoopControl, clock: &mut Clock) -> usize {
    let Some(p) = ctl.pump.as_mut() else {
        return 0;
    };
    let moved = p();
    clock.lap_pump();
    moved
}

/// Naps on empty rings as the [`IdlePolicy`] says.
struct Idler {
    policy: IdlePolicy,
    /// Empty polls in a row.
    empty: u32,
    empty_since: Instant,
    napping: bool,
}

impl Idler {
    fn new(policy: IdlePolicy) -> Idler {
        if policy.nap.is_some() {
            // Naps of tens of microseconds would otherwise be stretched by the default 50 µs
            // timer slack of a normal thread.
            // SAFETY: PR_SET_TIMERSLACK takes an integer argument and affects only this thread.
            unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong, 0, 0, 0) };
        }
        Idler {
            policy,
            empty: 0,
            empty_since: Instant::now(),
            napping: false,
        }
    }

    /// After a poll at `now` that found `polled` packets: spins while the rings have been
    /// empty for less than `spin`, then naps after each further empty poll. Returns true when
    /// it napped.
    fn after_poll(&mut self, polled: usize, now: Instant) -> bool {
        if polled > 0 {
            self.empty = 0;
            return false;
        }
        self.empty = self.empty.saturating_add(1);
        let Some(nap) = self.policy.nap else {
            return false;
        };
        if self.empty == 1 {
            self.empty_since = now;
            self.napping = false;
        } else if !self.napping && now.duration_since(self.empty_since) >= self.policy.spin {
            self.napping = true;
        }
        if self.napping {
            std::thread::sleep(nap);
        }
        self.napping
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
                let (took, built) = (p.took, p.built);
                let old = fl.install_rules(p.rules, p.forks);
                rep.reloads += 1;
                rep.reload_latency.observe(took + built.elapsed());
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

/// A reload asked for through [`LoopControl::reload`] (SIGHUP for embedders): builds the new
/// rules with [`LoopControl::reloader`] on this thread and swaps them in.
fn reload_on_request<B: PacketBackend, S: PassSink>(
    fl: &mut FilterLoop<B, S>,
    ctl: &mut LoopControl,
    rep: &mut LoopReport,
) {
    if !ctl.reload.swap(false, Ordering::AcqRel) {
        return;
    }
    let asked = Instant::now();
    match ctl.reloader.as_mut().map(|f| f()) {
        Some(Ok(rules)) => {
            fl.replace_rules(rules);
            rep.reloads += 1;
            rep.reload_latency.observe(asked.elapsed());
            log::info!("reloaded rules ({} rules)", fl.rule_names().len());
        }
        Some(Err(e)) => {
            rep.reload_errors += 1;
            log::error!("reload rejected, old rules keep running: {e}");
        }
        None => log::warn!("reload requested but this run has no config file"),
    }
}

/// Backend housekeeping, once per interval. A transient failure (a PF reset still in
/// progress, a mailbox that did not answer in time, a PF that refused a request of the
/// re-initialisation after a reset) is counted and retried at the next interval: the VF keeps
/// its buffers and its reset stays pending, so the next pass redoes the whole
/// re-initialisation. Any other failure (the device is gone, an unrecoverable driver error) is
/// returned and ends the loop.
fn maintain<B: PacketBackend, S: PassSink>(
    fl: &mut FilterLoop<B, S>,
    rep: &mut LoopReport,
) -> Result<(), BackendError> {
    match fl.maintain() {
        Ok(m) => {
            if m.reinitialised {
                rep.pf_resets += 1;
                log::warn!("PF reset: VF and queues re-initialised");
            }
            if let Some(l) = m.link_changed {
                log::info!("link changed: {l:?}");
            }
            Ok(())
        }
        Err(e) if e.is_transient() => {
            rep.maintenance_retries += 1;
            log::warn!("{} maintenance will be retried: {e}", fl.backend().kind());
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Reads the NIC's missed-frame counter into the report.
fn read_nic_missed(ctl: &mut LoopControl, rep: &mut LoopReport) {
    if let Some(f) = ctl.nic_missed.as_mut() {
        rep.nic_missed = Some(f());
    }
}

/// The per-interval output: the stats line on stderr and the metrics snapshot.
struct Interval {
    last_tick: Instant,
    last: Counters,
}

impl Interval {
    fn new(start: Instant, counters: Counters) -> Interval {
        Interval {
            last_tick: start,
            last: counters,
        }
    }

    fn due(&self, now: Instant, every: Duration) -> bool {
        now.duration_since(self.last_tick) >= every
    }

    /// Flushes sampled packets, then prints the line for the interval ending `now` and
    /// publishes the metrics.
    fn emit<B: PacketBackend, S: PassSink>(
        &mut self,
        fl: &mut FilterLoop<B, S>,
        ctl: &mut LoopControl,
        rep: &mut LoopReport,
        now: Instant,
    ) {
        if let Err(e) = fl.flush_samples() {
            log::warn!("writing sampled packets: {e}");
        }
        let c = fl.counters();
        let missed_before = rep.nic_missed;
        read_nic_missed(ctl, rep);
        rep.transport_timeouts = fl.backend().transport_timeouts();
        if ctl.progress {
            let mut line = progress_line(&c.since(&self.last), now.duration_since(self.last_tick));
            if let Some(m) = rep.nic_missed {
                line.push_str(&format!(
                    " | nic missed {}",
                    m.saturating_sub(missed_before.unwrap_or(0))
                ));
            }
            eprintln!("{line}");
        }
        if let Some(metrics) = &ctl.metrics {
            metrics.publish(snapshot(fl, rep));
        }
        self.last = c;
        self.last_tick = now;
    }
}

/// The deadline passed or a stop was asked for.
fn stop_requested(ctl: &LoopControl, now: Instant) -> bool {
    ctl.deadline.is_some_and(|d| now >= d)
        || ctl.stop.load(Ordering::Acquire)
        || ctl.abort.load(Ordering::Acquire)
}

/// Drain: keeps polling until the rings stay empty for a while (100 polls, 10 ms apart at
/// most), so no received packet is left without a verdict; but no longer than the drain
/// timeout, since a flood may never let the rings go quiet, and not at all after a second
/// stop signal. What it cannot take in time is released and counted as `left`.
fn drain<B: PacketBackend, S: PassSink>(
    fl: &mut FilterLoop<B, S>,
    ctl: &mut LoopControl,
    rep: &mut LoopReport,
    clock: &mut Clock,
) {
    let deadline = Instant::now() + ctl.drain_timeout;
    let mut quiet = 0;
    rep.aborted = ctl.abort.load(Ordering::Acquire);
    rep.drain_cut = rep.aborted;
    while quiet < 100 && !rep.drain_cut {
        let pumped = pump(ctl, clock);
        let polled = fl.poll(clock.rule_ns());
        let now = clock.lap_filter();
        if polled == 0 && pumped == 0 {
            quiet += 1;
            std::thread::sleep(Duration::from_micros(100));
            clock.lap_idle();
        } else {
            quiet = 0;
        }
        if ctl.abort.load(Ordering::Acquire) {
            rep.aborted = true;
            rep.drain_cut = true;
        } else if now >= deadline {
            rep.drain_cut = true;
        }
    }
    if !rep.drain_cut {
        return;
    }
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

/// Survivors sent back out of the backend: waits (up to 1 s, still pumping a lockstep model)
/// until the device reports them sent, so a stop does not cut off packets already counted as
/// `vf_tx`. A second stop signal does not wait.
fn wait_for_tx<B: PacketBackend, S: PassSink>(
    fl: &mut FilterLoop<B, S>,
    ctl: &mut LoopControl,
    rep: &mut LoopReport,
) {
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut outstanding = fl.tx_outstanding();
    while outstanding > 0 && Instant::now() < deadline && !ctl.abort.load(Ordering::Acquire) {
        if let Some(p) = ctl.pump.as_mut() {
            p();
        }
        std::thread::sleep(Duration::from_micros(100));
        outstanding = fl.tx_outstanding();
    }
    if outstanding > 0 {
        log::warn!(
            "{outstanding} survivors were still on the {} TX queue 1 s after the stop \
             (counted as vf_tx; the device may not have sent them)",
            fl.backend().kind()
        );
    }
    rep.vf_tx_unsent = outstanding;
}

/// The final counters once the workers have stopped: receive errors, sampled packets, the
/// NIC's and the transport's counts, the last metrics snapshot.
fn settle<B: PacketBackend, S: PassSink>(
    fl: &mut FilterLoop<B, S>,
    ctl: &mut LoopControl,
    rep: &mut LoopReport,
    clock: &Clock,
) {
    fl.sync_rx_errors();
    if let Err(e) = fl.flush_samples() {
        log::warn!("writing sampled packets: {e}");
    }
    rep.counters = fl.counters();
    read_nic_missed(ctl, rep);
    rep.transport_timeouts = fl.backend().transport_timeouts();
    clock.report(rep);
    if let Some(metrics) = &ctl.metrics {
        metrics.publish(snapshot(fl, rep));
    }
}

/// The device failed: judges what the NIC had already written into host memory (bounded: a
/// device that is gone writes nothing more), stops the workers and takes the final counters,
/// so a failure still ends with exact counts.
fn fail<B: PacketBackend, S: PassSink>(
    fl: &mut FilterLoop<B, S>,
    ctl: &mut LoopControl,
    mut rep: LoopReport,
    clock: &mut Clock,
    error: BackendError,
) -> Box<LoopFailure> {
    rep.elapsed = clock.elapsed();
    clock.lap_idle();
    let mut polls = 0;
    while fl.poll(clock.rule_ns()) > 0 && polls < 100_000 {
        clock.lap_filter();
        polls += 1;
    }
    fl.finish();
    settle(fl, ctl, &mut rep, clock);
    Box::new(LoopFailure { error, report: rep })
}

/// Runs until `ctl.stop` is set or the deadline passes, then drains the rings.
///
/// Each turn pumps the model (if any), polls every queue and naps if the rings have been empty
/// for a while ([`IdlePolicy`]); every 256 turns it takes finished reloads, feeds the
/// watchdog, and once per interval does the backend's housekeeping and the output.
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
    let mut clock = Clock::start();
    let mut idler = Idler::new(ctl.idle);
    let mut interval = Interval::new(clock.start, fl.counters());
    let mut rep = LoopReport::default();
    let mut turn: u32 = 0;
    loop {
        pump(ctl, &mut clock);
        let polled = fl.poll(clock.rule_ns());
        let now = clock.lap_filter();
        if idler.after_poll(polled, now) {
            rep.idle_naps += 1;
            clock.lap_idle();
        }
        turn = turn.wrapping_add(1);
        if !turn.is_multiple_of(256) {
            continue;
        }
        take_new_rules(fl, ctl, &mut rep);
        if let Some(w) = ctl.watchdog.as_mut() {
            // Paces itself (at most one message per half watchdog period).
            w.feed(now);
        }
        reload_on_request(fl, ctl, &mut rep);
        let now = clock.lap_idle();
        if interval.due(now, ctl.interval) {
            if let Err(e) = maintain(fl, &mut rep) {
                return Err(fail(fl, ctl, rep, &mut clock, e));
            }
            interval.emit(fl, ctl, &mut rep, now);
            clock.lap_idle();
        }
        if stop_requested(ctl, now) {
            break;
        }
    }
    rep.elapsed = clock.elapsed();
    crate::sdnotify::stopping();
    // Reloads that finished before the stop are counted (and installed: the drain judges with
    // the newest rules).
    take_new_rules(fl, ctl, &mut rep);
    if let Some(f) = ctl.before_drain.take() {
        f();
    }
    clock.lap_idle();
    drain(fl, ctl, &mut rep, &mut clock);
    // Workers drain their rings and stop; what they handed back for transmission goes out.
    fl.finish();
    wait_for_tx(fl, ctl, &mut rep);
    settle(fl, ctl, &mut rep, &clock);
    Ok(rep)
}
