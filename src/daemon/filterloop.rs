//! The filter loop: backend RX burst → rules → drop (buffer straight back) or pass (batched
//! sink).
//!
//! Generic over the [`PacketBackend`], so the same loop runs on a real VF (kernel VFIO), on the
//! in-process model (`demo`), over vfio-user and on an AF_XDP socket. Zero copy: a passed packet
//! is handed to the sink as a slice of its DMA buffer; the sink's submission is the only copy
//! (the kernel's, for a TAP).
//!
//! With `workers > 1` the loop becomes a dispatcher: each packet is classified by the soft-RSS
//! stage (symmetric, tunnel-aware hash; metadata written into the headroom) and moved, without
//! copying, to one worker thread's ring; each worker runs its own copy of the rules and its own
//! sink. Packet order within a flow is kept (one flow, one worker, FIFO rings). A full worker
//! ring drops the packet and counts it under `dispatch_full`.
//!
//! Survivors go to a [`PassSink`] (the TAP), or, with a [`TxBack`] (`[reinject] to = "vf"`),
//! back out of the backend: the received buffer itself is put on its TX queue (zero copy, one
//! doorbell per burst; TX completion returns it to the pool), after the optional source and
//! destination MAC rewrites. What the TX queue cannot take is counted in `vf_tx_dropped`. The
//! backend is owned by the polling thread, so in fan-out mode workers hand their survivors back
//! through one bounded ring each and the polling thread transmits them.
//!
//! Loop guard: if the NIC loops a transmitted survivor back in (the switch delivers it to the
//! PF pool and the steering rule catches it again — the model does this, see
//! `docs/reinject-vf.md`), the frame arrives with the backend's own MAC as source, which no
//! frame from the wire has. Such frames are dropped before the rules and counted as `looped`,
//! so a misrouted setup shows up in the counters instead of spinning survivors forever.
//!
//! Judging one burst (loop guard, rules, survivors to their place) is `daemon/judge.rs`, used
//! here when judging inline and by every worker; the worker threads are `daemon/workers.rs`.
//! When judging inline on a backend that can judge frames in its receive ring (the VF), the
//! loop does that instead (`daemon/inplace.rs`): a dropped frame never becomes a packet, its
//! buffer is re-armed where it is, and only survivors come out of the ring.

use crate::backend::{BackendError, PacketBackend};
use crate::daemon::inplace::InPlace;
use crate::daemon::judge::{caught_looping, Judge, Survivors, ToSink};
use crate::daemon::workers::Worker;
pub use crate::daemon::workers::WorkerReport;
use crate::filter::{Counters as RuleCounters, RuleSet};
use crate::sink::PassSink;
use crate::softrss::{Dispatcher, RssConfig, SoftRss};
use crate::stats::Counters;
use crossbeam::queue::ArrayQueue;
use floodgate_pmd::{Maintenance, Packet, PacketBatch};
use std::sync::Arc;

/// Survivors transmitted back out of the backend they came in on (`[reinject] to = "vf"`), with
/// the MAC rewrites resolved at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxBack {
    /// The backend's TX queue survivors are sent on.
    pub queue: usize,
    /// Rewrite the source MAC to this (the backend's own MAC: the PF's anti-spoofing, on by
    /// default in Linux, drops a VF transmission with any other source; facts §4.1).
    pub src_mac: Option<[u8; 6]>,
    /// Rewrite the destination MAC to this (the next hop, or the PF).
    pub dst_mac: Option<[u8; 6]>,
    /// Received frames with this source MAC are the daemon's own transmissions looped back by
    /// the NIC: dropped before the rules and counted as `looped`.
    pub loop_guard: Option<[u8; 6]>,
}

impl TxBack {
    /// Survivors leave on `queue`. With `src_from_own` their source MAC becomes `own_mac`, the
    /// backend's (and the loop guard watches for it); with `dst_mac` their destination becomes
    /// that address.
    pub fn new(
        own_mac: [u8; 6],
        queue: usize,
        src_from_own: bool,
        dst_mac: Option<[u8; 6]>,
    ) -> TxBack {
        let src = src_from_own.then_some(own_mac);
        TxBack {
            queue,
            src_mac: src,
            dst_mac,
            loop_guard: src,
        }
    }

    /// Applies the MAC rewrites in place (12 bytes per packet at most; no copy of the frame).
    #[inline]
    pub(super) fn rewrite(&self, batch: &mut PacketBatch) {
        if self.src_mac.is_none() && self.dst_mac.is_none() {
            return;
        }
        for p in batch.iter_mut() {
            let d = p.data_mut();
            if d.len() < 12 {
                continue;
            }
            if let Some(m) = self.dst_mac {
                d[..6].copy_from_slice(&m);
            }
            if let Some(m) = self.src_mac {
                d[6..12].copy_from_slice(&m);
            }
        }
    }
}

/// Packets each worker's ring (and, with [`TxBack`], its hand-back ring) holds in the daemon.
pub const WORKER_RING: usize = 4096;

/// Errors building a filter loop.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    /// The configured TX queue does not exist on this backend.
    #[error(
        "reinject: TX queue {queue} is not one of the backend's {count} TX queue(s) (fewer \
         queues were granted than [device] queues asked for?)"
    )]
    NoTxQueue {
        /// Requested queue.
        queue: usize,
        /// TX queues the backend has.
        count: usize,
    },
    /// Starting the soft-RSS workers failed.
    #[error(transparent)]
    Rss(#[from] crate::softrss::RssError),
}

/// Back out of the backend, on the polling thread: `vf_tx` / `vf_tx_dropped`.
struct ToBackend<'a, B: PacketBackend> {
    backend: &'a mut B,
    tx: &'a TxBack,
}

impl<B: PacketBackend> Survivors for ToBackend<'_, B> {
    #[inline]
    fn take(&mut self, pass: &mut PacketBatch, c: &mut Counters) {
        self.tx.rewrite(pass);
        transmit(self.backend, self.tx.queue, pass, c);
    }
}

/// Hands the batch to the backend's TX queue (one doorbell). What did not fit, and what the
/// backend refused as invalid, is counted in `vf_tx_dropped`; their buffers are reused.
#[inline]
fn transmit<B: PacketBackend>(b: &mut B, q: usize, batch: &mut PacketBatch, c: &mut Counters) {
    let o = b.tx_burst(q, batch);
    c.vf_tx += o.sent as u64;
    c.vf_tx_dropped += (o.refused + o.ring_full) as u64;
}

enum Stage<S> {
    Inline {
        judge: Judge,
        sink: S,
    },
    Fanout {
        dispatcher: Box<Dispatcher<Packet>>,
        workers: Vec<Worker<S>>,
        /// Rule names and the default action, for reports (the workers own the rule sets).
        template: RuleSet,
        finished: Vec<S>,
        /// With [`TxBack`]: one hand-back ring per worker (survivors to transmit).
        back: Vec<Arc<ArrayQueue<Packet>>>,
    },
}

/// One filter loop over all RX queues of one packet backend, judging inline or fanning out to
/// workers.
pub struct FilterLoop<B: PacketBackend, S: PassSink> {
    backend: B,
    stage: Stage<S>,
    rx: PacketBatch,
    counters: Counters,
    queues: usize,
    rx_errors_seen: u64,
    /// `Some`: survivors leave through the backend instead of the sink.
    tx: Option<TxBack>,
    /// Handed-back survivors on their way to the TX ring (fan-out with [`TxBack`]).
    txb: PacketBatch,
    looped_reported: u64,
}

/// How a [`FilterLoop`] is built: the one argument of [`FilterLoop::new`].
///
/// With one sink and no `rss`, packets are judged on the polling thread. With several sinks,
/// or with `rss` given, the loop fans out to one worker thread per sink (soft RSS; `rss`
/// defaults to [`RssConfig::default`], its `workers` is set from the number of sinks).
pub struct LoopOptions<S> {
    /// RX burst size (clamped to 1..=`floodgate_pmd::MAX_BATCH`).
    pub burst: usize,
    /// Where survivors go: one sink per judging thread. With `tx` they are kept but receive
    /// nothing.
    pub sinks: Vec<S>,
    /// `Some`: survivors are transmitted back out of the backend (`[reinject] to = "vf"`)
    /// instead of going to the sinks. Its queue must be one of the backend's TX queues.
    pub tx: Option<TxBack>,
    /// Fan out with this soft-RSS configuration, even to a single worker.
    pub rss: Option<RssConfig>,
    /// Packets each worker's ring (and, with `tx`, its hand-back ring) holds.
    pub ring_capacity: usize,
}

impl<S> LoopOptions<S> {
    /// Survivors to `sinks` (inline when there is one), default soft RSS, worker rings of
    /// [`WORKER_RING`] packets.
    pub fn new(burst: usize, sinks: Vec<S>) -> LoopOptions<S> {
        LoopOptions {
            burst,
            sinks,
            tx: None,
            rss: None,
            ring_capacity: WORKER_RING,
        }
    }

    /// Judging inline on the polling thread, survivors to `sink`.
    pub fn inline(burst: usize, sink: S) -> LoopOptions<S> {
        LoopOptions::new(burst, vec![sink])
    }
}

impl<B: PacketBackend, S: PassSink + Send + 'static> FilterLoop<B, S> {
    /// The loop over every RX queue of `backend`, judging with `rules` as `opts` says (inline,
    /// or fanned out to workers that each get a fork of `rules`), survivors to the sinks or,
    /// with `opts.tx`, back out of the backend.
    pub fn new(backend: B, rules: RuleSet, opts: LoopOptions<S>) -> Result<Self, LoopError> {
        let LoopOptions {
            burst,
            sinks,
            tx,
            rss,
            ring_capacity,
        } = opts;
        if let Some(tx) = &tx {
            let count = backend.tx_queues();
            if tx.queue >= count {
                return Err(LoopError::NoTxQueue {
                    queue: tx.queue,
                    count,
                });
            }
        }
        let burst = burst.clamp(1, floodgate_pmd::MAX_BATCH);
        let stage = match (rss, <[S; 1]>::try_from(sinks)) {
            (None, Ok([sink])) => Stage::Inline {
                judge: Judge::new(rules, burst),
                sink,
            },
            (rss, sinks) => {
                let sinks = sinks.map_or_else(|many| many, Vec::from);
                Stage::fanout(
                    rules,
                    sinks,
                    burst,
                    rss.unwrap_or_default(),
                    ring_capacity,
                    tx,
                )?
            }
        };
        Ok(FilterLoop {
            queues: backend.rx_queues(),
            backend,
            stage,
            rx: PacketBatch::new(burst),
            counters: Counters::default(),
            rx_errors_seen: 0,
            tx,
            txb: PacketBatch::new(burst),
            looped_reported: 0,
        })
    }
}

impl<S: PassSink + Send + 'static> Stage<S> {
    /// Starts one worker per sink, each with a fork of `rules` (and, with `tx`, a hand-back
    /// ring for its survivors).
    fn fanout(
        rules: RuleSet,
        sinks: Vec<S>,
        burst: usize,
        mut rss: RssConfig,
        ring_capacity: usize,
        tx: Option<TxBack>,
    ) -> Result<Stage<S>, LoopError> {
        rss.workers = sinks.len();
        let (dispatcher, qs) = Dispatcher::new(SoftRss::new(rss)?, ring_capacity)?;
        let mut workers = Vec::with_capacity(sinks.len());
        let mut back = Vec::new();
        for (q, sink) in qs.into_iter().zip(sinks) {
            let wb = tx.map(|tx| {
                let ring = Arc::new(ArrayQueue::new(ring_capacity.max(1)));
                back.push(ring.clone());
                (ring, tx)
            });
            workers.push(Worker::spawn(q, rules.fork(), sink, wb, burst)?);
        }
        Ok(Stage::Fanout {
            dispatcher: Box::new(dispatcher),
            workers,
            template: rules,
            finished: Vec::new(),
            back,
        })
    }
}

impl<B: PacketBackend, S: PassSink> FilterLoop<B, S> {
    /// Polls every queue once (and, fanned out with [`TxBack`], transmits what the workers handed
    /// back). Returns the packets received plus those transmitted for workers.
    #[inline]
    pub fn poll(&mut self, now: u64) -> usize {
        if self.backend.judges_in_place() && matches!(self.stage, Stage::Inline { .. }) {
            return (0..self.queues).map(|q| self.poll_in_place(q, now)).sum();
        }
        let mut total = 0;
        let guard = self.tx.and_then(|t| t.loop_guard);
        for q in 0..self.queues {
            let n = self.backend.rx_burst(q, &mut self.rx);
            if n == 0 {
                continue;
            }
            total += n;
            let c = &mut self.counters;
            c.rx_packets += n as u64;
            c.rx_bytes += self.rx.iter().map(|p| p.len() as u64).sum::<u64>();
            match &mut self.stage {
                Stage::Inline { judge, sink } => match &self.tx {
                    Some(tx) => {
                        let mut out = ToBackend {
                            backend: &mut self.backend,
                            tx,
                        };
                        judge.burst(&mut self.rx, &mut out, c, now, guard);
                    }
                    None => judge.burst(&mut self.rx, &mut ToSink(sink), c, now, None),
                },
                Stage::Fanout { dispatcher, .. } => {
                    for p in self.rx.drain() {
                        if caught_looping(&p, guard, c) {
                            continue;
                        }
                        if dispatcher.dispatch(p).is_err() {
                            // The rejected packet is dropped here, its buffer goes back.
                            c.dropped += 1;
                            c.dispatch_full += 1;
                        }
                    }
                    if dispatcher.under_pressure() {
                        // A worker is falling behind: if it shares this core, let it run now
                        // rather than drop its packets when its ring overflows. Its flows keep
                        // their own ring, so other workers are not held up.
                        std::thread::yield_now();
                    }
                }
            }
        }
        if matches!(self.stage, Stage::Fanout { .. }) {
            total += self.transmit_handed_back(4);
        }
        total
    }

    /// One burst of queue `q` judged in the receive ring (a backend that
    /// [judges in place](PacketBackend::judges_in_place), one inline judge): only the survivors
    /// become packets. Returns the frames received. Its own function, so that the common path
    /// is compiled apart from the fanned-out and batch-judging ones.
    #[inline(never)]
    fn poll_in_place(&mut self, q: usize, now: u64) -> usize {
        let guard = self.tx.and_then(|t| t.loop_guard);
        let Stage::Inline { judge, sink } = &mut self.stage else {
            return 0;
        };
        let c = &mut self.counters;
        let mut j = InPlace::new(judge, c, now, guard);
        let r = self.backend.rx_burst_judged(q, &mut self.rx, &mut j);
        c.rx_packets += r.received as u64;
        c.rx_bytes += r.bytes;
        if !self.rx.is_empty() {
            match &self.tx {
                Some(tx) => {
                    let mut out = ToBackend {
                        backend: &mut self.backend,
                        tx,
                    };
                    out.take(&mut self.rx, c);
                }
                None => {
                    // Then the buffers go back to the queue they came from.
                    ToSink(sink).submit(&self.rx, c);
                    self.backend.release(q, &mut self.rx);
                }
            }
        }
        r.received
    }

    /// Fanned out with [`TxBack`]: moves up to `bursts` bursts per worker from the hand-back rings to the
    /// TX ring. Returns the packets taken from the rings.
    fn transmit_handed_back(&mut self, bursts: usize) -> usize {
        let (Some(tx), Stage::Fanout { back, .. }) = (&self.tx, &self.stage) else {
            return 0;
        };
        let mut moved = 0;
        for ring in back {
            for _ in 0..bursts {
                while self.txb.free_slots() > 0 {
                    match ring.pop() {
                        Some(p) => {
                            if let Err(p) = self.txb.push(p) {
                                // Cannot happen (a free slot was checked); count it all the same.
                                self.counters.passed += 1;
                                self.counters.vf_tx_dropped += 1;
                                drop(p);
                            }
                        }
                        None => break,
                    }
                }
                let n = self.txb.len();
                if n == 0 {
                    break;
                }
                moved += n;
                // The worker judged them; their fate is counted here.
                self.counters.passed += n as u64;
                transmit(
                    &mut self.backend,
                    tx.queue,
                    &mut self.txb,
                    &mut self.counters,
                );
            }
        }
        moved
    }

    /// Folds the frames the backend threw away before the loop saw them (bad descriptors,
    /// invalid frames) into the `errors` bucket. They never reach the loop, so they are added
    /// to `rx_packets` as well: the loop's view of "received" is every frame the backend took.
    pub fn sync_rx_errors(&mut self) {
        let total = self.backend.rx_errors();
        let new = total.saturating_sub(self.rx_errors_seen);
        self.rx_errors_seen = total;
        self.counters.errors += new;
        self.counters.rx_packets += new;
    }

    /// Backend housekeeping: receive errors, reset recovery, link, device counters. Also
    /// reports survivors the loop guard caught coming back in.
    pub fn maintain(&mut self) -> Result<Maintenance, BackendError> {
        self.sync_rx_errors();
        let looped = self.counters.looped;
        if looped > self.looped_reported {
            if self.looped_reported == 0 {
                log::warn!(
                    "survivors come back in ({looped} so far, counted as `looped` and \
                     dropped): the NIC looped frames we sent back to the PF and the steering rule \
                     pulled them in again. Send survivors to a next hop on the wire \
                     ([reinject] dst_mac) or use [reinject] to = \"tap\"; see docs/reinject-vf.md"
                );
            } else {
                log::debug!("loop guard: {looped} looped-back frames so far");
            }
            self.looped_reported = looped;
        }
        self.backend.maintain()
    }

    /// The reinjection settings, when survivors leave back out of the backend.
    pub fn tx_back(&self) -> Option<&TxBack> {
        self.tx.as_ref()
    }

    /// Counters so far, summed over workers. With workers, what was dispatched but not yet
    /// judged (or not yet published by its worker) is `in_flight`.
    pub fn counters(&self) -> Counters {
        let mut c = self.counters;
        if let Stage::Fanout { workers, .. } = &self.stage {
            for w in workers {
                let r = w.shared.report();
                c.dropped += r.counters.dropped;
                // Survivors handed back are counted as passed by the polling thread, when it
                // transmits them (`vf_tx`) or the TX ring refuses them (`vf_tx_dropped`).
                c.passed += r.counters.passed.saturating_sub(r.handed_back);
                c.tap += r.counters.tap;
                c.tap_dropped += r.counters.tap_dropped;
                c.vf_tx_dropped += r.counters.vf_tx_dropped;
            }
            let accounted = c.dropped + c.passed + c.errors + c.left;
            c.in_flight = c.rx_packets.saturating_sub(accounted);
        }
        c
    }

    /// Per-worker reports (empty when judging inline).
    pub fn worker_reports(&self) -> Vec<WorkerReport> {
        match &self.stage {
            Stage::Inline { .. } => Vec::new(),
            Stage::Fanout { workers, .. } => {
                workers.iter().map(|w| w.shared.report().clone()).collect()
            }
        }
    }

    /// Rule names in order (then the default action is reported separately).
    pub fn rule_names(&self) -> Vec<String> {
        let rs = match &self.stage {
            Stage::Inline { judge, .. } => &judge.rules,
            Stage::Fanout { template, .. } => template,
        };
        rs.rules().iter().map(|r| r.name.clone()).collect()
    }

    /// Per-rule counters, merged over workers.
    pub fn rule_counters(&self) -> RuleCounters {
        match &self.stage {
            Stage::Inline { judge, .. } => judge.rules.counters().clone(),
            Stage::Fanout {
                workers, template, ..
            } => {
                let mut total = template.counters().clone();
                for w in workers {
                    let r = w.shared.report();
                    total.merge(&r.rules);
                }
                total
            }
        }
    }

    /// The `n` largest dropped sources (sampled estimates, merged over workers).
    pub fn top_sources(&self, n: usize) -> Vec<crate::topsrc::TopSource> {
        let w = self.worker_reports();
        let inline = match &self.stage {
            Stage::Inline { judge, .. } => Some(judge.top_sources()),
            Stage::Fanout { .. } => None,
        };
        let tables = inline.into_iter().chain(w.iter().map(|r| &r.top_sources));
        crate::topsrc::merged_top(tables, n)
    }

    /// Flushes sampled packets (inline; workers flush their own when idle and at the end).
    pub fn flush_samples(&self) -> std::io::Result<()> {
        match &self.stage {
            Stage::Inline { judge, .. } => judge.rules.flush_samples(),
            Stage::Fanout { .. } => Ok(()),
        }
    }

    /// Swaps in a new rule set (hot reload) between two bursts, keeping the hit counters of
    /// rules with the same name and the rate-limit state of unchanged rate-limit rules (see
    /// [`RuleSet::adopt_state`]). Workers take theirs before their next burst.
    pub fn replace_rules(&mut self, new: RuleSet) {
        drop(self.install_rules(new, Vec::new()));
    }

    /// How many rule sets a reload should prepare in [`install_rules`](Self::install_rules)'s
    /// `forks`: one per worker (0 when judging inline).
    pub fn workers(&self) -> usize {
        match &self.stage {
            Stage::Inline { .. } => 0,
            Stage::Fanout { workers, .. } => workers.len(),
        }
    }

    /// Hot reload with the work done beforehand: `new` was built (parsed, compiled, tables
    /// allocated) on another thread, and so were `forks`, one per worker (see
    /// [`workers`](Self::workers); missing ones are forked here). Installing is then a few
    /// pointer moves on the polling thread. Returns the rule set taken out (judging inline), for
    /// the caller to free off the data path; workers free theirs themselves.
    pub fn install_rules(&mut self, mut new: RuleSet, forks: Vec<RuleSet>) -> Option<RuleSet> {
        match &mut self.stage {
            Stage::Inline { judge, .. } => {
                let rules = &mut judge.rules;
                new.adopt_counters(rules);
                new.adopt_state(rules);
                Some(std::mem::replace(rules, new))
            }
            Stage::Fanout {
                workers, template, ..
            } => {
                let mut forks = forks.into_iter();
                for w in workers.iter() {
                    let mine = forks.next().unwrap_or_else(|| new.fork());
                    w.shared.offer_rules(mine);
                }
                let names = new.rules().len();
                log::debug!("rules handed to {} workers ({names} rules)", workers.len());
                // The template only names the rules and carries no traffic.
                Some(std::mem::replace(template, new))
            }
        }
    }

    /// Stop after a drain that ran out of time: takes what is still in the RX rings (at most
    /// `max_per_queue` frames per queue, so a flood that keeps coming cannot hold the stop)
    /// and releases it without a verdict, counted in `rx_packets` and `left`. Returns the count.
    pub fn abandon_rings(&mut self, max_per_queue: usize) -> u64 {
        let mut left = 0u64;
        for q in 0..self.queues {
            let mut taken = 0;
            while taken < max_per_queue {
                let n = self.backend.rx_burst(q, &mut self.rx);
                if n == 0 {
                    break;
                }
                taken += n;
                self.counters.rx_bytes += self.rx.iter().map(|p| p.len() as u64).sum::<u64>();
                self.rx.clear();
            }
            left += taken as u64;
        }
        self.counters.rx_packets += left;
        self.counters.left += left;
        left
    }

    /// Free buffers in the backend's packet pool (a gauge: it drops while packets are in
    /// flight and comes back once they are released).
    pub fn pool_free(&self) -> u64 {
        self.backend.pool_free()
    }

    /// Stops the workers after they have drained their rings (call after the RX rings were
    /// drained). Afterwards `counters()` is final and `sinks()` returns every worker's sink.
    pub fn finish(&mut self) {
        if let Stage::Fanout {
            dispatcher,
            workers,
            finished,
            ..
        } = &mut self.stage
        {
            dispatcher.close();
            for w in workers.iter_mut() {
                if let Some(h) = w.handle.take() {
                    match h.join() {
                        Ok(s) => finished.push(s),
                        Err(_) => log::error!("a worker thread panicked"),
                    }
                }
            }
        }
        // What the workers handed back before they stopped still goes out.
        while self.transmit_handed_back(usize::MAX) > 0 {}
    }

    /// Survivors handed to the backend's TX queue that the device has not reported sent yet
    /// (after reclaiming what it has). Always 0 when reinjecting into the sinks.
    pub fn tx_outstanding(&mut self) -> u64 {
        match self.tx.as_ref() {
            Some(t) => self.backend.tx_outstanding(t.queue),
            None => 0,
        }
    }

    /// The sinks: the loop's own, or (after [`finish`](Self::finish)) the workers'.
    pub fn sinks(&self) -> Vec<&S> {
        match &self.stage {
            Stage::Inline { sink, .. } => vec![sink],
            Stage::Fanout { finished, .. } => finished.iter().collect(),
        }
    }

    /// The packet backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The packet backend, for calls the loop does not make itself (tests, fault injection).
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }
}

impl<B: PacketBackend, S: PassSink> Drop for FilterLoop<B, S> {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::Decision;
    use crate::sink::CountingSink;
    use crate::softrss::RssError;
    use floodgate_pmd::{IxgbeVf, Timeouts};
    use floodgate_sim::{Nic, NicConfig, SimVf};

    fn model_vf() -> (Nic, IxgbeVf<SimVf>) {
        let nic = Nic::new(NicConfig::default());
        let cfg = floodgate_pmd::Config {
            timeouts: Timeouts::fast(),
            ..Default::default()
        };
        let vf = IxgbeVf::open(nic.vf(0), cfg).expect("VF 0 up on the model");
        (nic, vf)
    }

    fn pass_all() -> RuleSet {
        RuleSet::new(vec![], Decision::Pass)
    }

    #[test]
    fn one_sink_judges_inline_unless_soft_rss_is_asked_for() {
        let (_nic, vf) = model_vf();
        let opts = LoopOptions::inline(32, CountingSink::default());
        let fl = FilterLoop::new(vf, pass_all(), opts).unwrap();
        assert_eq!(fl.workers(), 0);
        assert!(fl.tx_back().is_none());
        drop(fl);

        let (_nic, vf) = model_vf();
        let opts = LoopOptions {
            rss: Some(RssConfig::default()),
            ..LoopOptions::inline(32, CountingSink::default())
        };
        let fl = FilterLoop::new(vf, pass_all(), opts).unwrap();
        assert_eq!(fl.workers(), 1, "fanned out to one worker");

        let (_nic, vf) = model_vf();
        let sinks = (0..3).map(|_| CountingSink::default()).collect();
        let fl = FilterLoop::new(vf, pass_all(), LoopOptions::new(32, sinks)).unwrap();
        assert_eq!(fl.workers(), 3);
    }

    #[test]
    fn passed_packets_buffers_go_back_to_the_receive_queue_not_the_pool() {
        let (nic, vf) = model_vf();
        let mut frame = vec![0u8; 60];
        frame[..6].copy_from_slice(&vf.mac());
        frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 9]);
        frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let mut feeder = nic.feeder(0, 0, &frame);
        let mut fl = FilterLoop::new(
            vf,
            pass_all(),
            LoopOptions::inline(32, CountingSink::default()),
        )
        .unwrap();
        // The first receive fills the queue's buffer cache from the pool; from then on every
        // passed packet's buffer goes back into that cache once the sink has read it.
        feeder.fill_max(32);
        while fl.poll(0) == 0 {}
        let free = fl.pool_free();
        let mut sent = 32;
        for round in 0..50 {
            sent += feeder.fill_max(7 + round % 40);
            while fl.counters().rx_packets < sent as u64 {
                fl.poll(0);
            }
            assert_eq!(fl.pool_free(), free, "round {round}: the pool was touched");
        }
        let c = fl.counters();
        assert_eq!(c.passed, sent as u64);
        assert_eq!(
            fl.sinks()[0].packets,
            sent as u64,
            "every packet reached the sink"
        );
        assert!(c.invariant_holds(), "{c:?}");
    }

    #[test]
    fn no_sink_is_refused_with_a_reason() {
        let (_nic, vf) = model_vf();
        let e = FilterLoop::new(vf, pass_all(), LoopOptions::<CountingSink>::new(32, vec![]))
            .err()
            .expect("no sink, no judging thread");
        assert!(matches!(e, LoopError::Rss(RssError::Workers(0))), "{e}");
    }
}
