//! The workers behind the soft-RSS dispatcher: each takes packets from its own ring, judges
//! them with its own copy of the rules, and hands the survivors to its sink or, with
//! [`TxBack`], back to the polling thread (which owns the backend) through a bounded ring.

use crate::daemon::filterloop::TxBack;
use crate::daemon::judge::{HandBack, Judge, ToSink};
use crate::filter::{Counters as RuleCounters, RuleSet};
use crate::sink::PassSink;
use crate::softrss::{RssError, WorkerQueue};
use crate::stats::Counters;
use crossbeam::queue::ArrayQueue;
use floodgate_pmd::Packet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Counters one worker publishes.
#[derive(Debug, Clone, Default)]
pub struct WorkerReport {
    /// Packets taken from the worker's ring.
    pub rx_packets: u64,
    /// Verdict counters (`dropped`, `passed`, `tap`, `tap_dropped`, and `vf_tx_dropped` for
    /// survivors the hand-back ring could not take).
    pub counters: Counters,
    /// Survivors handed back to the polling thread for transmission out of the backend (part of
    /// `counters.passed`; the polling thread counts them as `vf_tx` or `vf_tx_dropped`).
    pub handed_back: u64,
    /// Per-rule counters of this worker's rule set.
    pub rules: RuleCounters,
    /// Packets the rules parsed again because the dispatcher's headroom record could not be
    /// used (none written, or written for another frame). Normally 0.
    pub reparsed: u64,
    /// This worker's sample of dropped sources.
    pub top_sources: crate::topsrc::TopSources,
}

/// What a worker and the polling thread share.
pub(super) struct WorkerShared {
    report: Mutex<WorkerReport>,
    new_rules: Mutex<Option<RuleSet>>,
    reload: AtomicBool,
}

impl WorkerShared {
    /// The worker's last published report.
    pub(super) fn report(&self) -> MutexGuard<'_, WorkerReport> {
        self.report.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands the worker a new rule set, taken before its next burst.
    pub(super) fn offer_rules(&self, rules: RuleSet) {
        *self.new_rules.lock().unwrap_or_else(|e| e.into_inner()) = Some(rules);
        self.reload.store(true, Ordering::Release);
    }
}

/// A running worker, seen from the polling thread.
pub(super) struct Worker<S> {
    pub(super) shared: Arc<WorkerShared>,
    pub(super) handle: Option<JoinHandle<S>>,
}

/// Survivors going back to the polling thread.
type Back = (Arc<ArrayQueue<Packet>>, TxBack);

impl<S: PassSink + Send + 'static> Worker<S> {
    /// Starts a worker on `q` with `rules` (its own copy) and `sink`; with `back`, its
    /// survivors go onto that ring instead.
    pub(super) fn spawn(
        q: WorkerQueue<Packet>,
        rules: RuleSet,
        sink: S,
        back: Option<Back>,
        burst: usize,
    ) -> Result<Worker<S>, RssError> {
        let shared = Arc::new(WorkerShared {
            report: Mutex::new(WorkerReport {
                rules: rules.counters().clone(),
                ..Default::default()
            }),
            new_rules: Mutex::new(None),
            reload: AtomicBool::new(false),
        });
        let idx = q.index();
        let w = WorkerLoop {
            q,
            judge: Judge::new(rules, burst),
            sink,
            back,
            shared: shared.clone(),
            c: Counters::default(),
            rx: 0,
            handed: 0,
            epoch: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            start: Instant::now(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("floodgate-w{idx}"))
            .spawn(move || w.run(burst))
            .map_err(|_| RssError::Workers(idx))?;
        Ok(Worker {
            shared,
            handle: Some(handle),
        })
    }
}

/// One worker thread.
struct WorkerLoop<S> {
    q: WorkerQueue<Packet>,
    judge: Judge,
    sink: S,
    back: Option<Back>,
    shared: Arc<WorkerShared>,
    c: Counters,
    rx: u64,
    handed: u64,
    /// The rules' clock: nanoseconds since the epoch at `start`.
    epoch: u64,
    start: Instant,
}

impl<S: PassSink> WorkerLoop<S> {
    /// Judges bursts from the ring until the dispatcher closes it and it is empty; returns the
    /// sink.
    fn run(mut self, burst: usize) -> S {
        let mut buf: Vec<Packet> = Vec::with_capacity(burst);
        let mut bursts = 0u32;
        let mut idle = 0u32;
        loop {
            self.take_new_rules();
            if self.q.pop_burst(&mut buf, burst) == 0 {
                if self.q.is_finished() {
                    break;
                }
                idle += 1;
                self.wait(idle);
                continue;
            }
            idle = 0;
            self.judge_burst(&mut buf);
            bursts = bursts.wrapping_add(1);
            if bursts.is_multiple_of(64) {
                self.publish();
            }
        }
        self.flush_samples();
        self.publish();
        self.sink
    }

    /// Installs the rule set the polling thread offered, if any, keeping counters and
    /// rate-limit state. The old set (and the fresh tables it now holds) is freed here.
    fn take_new_rules(&mut self) {
        if !self.shared.reload.swap(false, Ordering::AcqRel) {
            return;
        }
        let offered = self
            .shared
            .new_rules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut r) = offered {
            let old = &mut self.judge.rules;
            r.adopt_counters(old);
            r.adopt_state(old);
            *old = r;
        }
    }

    /// An empty ring: publishes and flushes once, then spins briefly, yields, then naps.
    /// Workers share cores with the polling thread (and, in the demo, the model). A
    /// 4096-packet ring outlasts a 50 µs nap at any rate one core can dispatch.
    fn wait(&mut self, idle: u32) {
        if idle == 64 {
            self.publish();
            self.flush_samples();
        }
        if idle > 256 {
            std::thread::sleep(Duration::from_micros(50));
        } else if idle > 16 {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }

    fn judge_burst(&mut self, buf: &mut Vec<Packet>) {
        self.rx += buf.len() as u64;
        let now = self.epoch + self.start.elapsed().as_nanos() as u64;
        // The loop guard runs on the polling thread, before dispatch.
        match &self.back {
            Some((ring, tx)) => {
                let mut out = HandBack {
                    ring,
                    tx,
                    handed: &mut self.handed,
                };
                self.judge.burst_dispatched(buf, &mut out, &mut self.c, now);
            }
            None => {
                let mut out = ToSink(&mut self.sink);
                self.judge.burst_dispatched(buf, &mut out, &mut self.c, now);
            }
        }
    }

    fn publish(&self) {
        let mut r = self.shared.report();
        r.rx_packets = self.rx;
        r.counters = self.c;
        r.handed_back = self.handed;
        r.rules = self.judge.rules.counters().clone();
        r.reparsed = self.judge.reparsed;
        r.top_sources.clone_from(self.judge.top_sources());
    }

    fn flush_samples(&self) {
        if let Err(e) = self.judge.rules.flush_samples() {
            log::warn!("worker {}: writing sampled packets: {e}", self.q.index());
        }
    }
}
