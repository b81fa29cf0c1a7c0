//! The filter loop: VF RX burst → rules → drop (buffer straight back) or pass (batched sink).
//!
//! Generic over the device, so the same loop runs on a real VF (kernel VFIO), on the in-process
//! model (`demo`) and over vfio-user. Zero copy: a passed packet is handed to the sink as a
//! slice of its DMA buffer; the sink's submission is the only copy (the kernel's, for a TAP).
//!
//! With `workers > 1` the loop becomes a dispatcher: each packet is classified by the soft-RSS
//! stage (symmetric, tunnel-aware hash; metadata written into the headroom) and moved, without
//! copying, to one worker thread's ring; each worker runs its own copy of the rules and its own
//! sink. Packet order within a flow is kept (one flow, one worker, FIFO rings). A full worker
//! ring drops the packet and counts it under `dispatch_full`.

use crate::filter::{Counters as RuleCounters, Decision, RuleSet};
use crate::softrss::{Dispatcher, RssConfig, SoftRss, WorkerQueue};
use crate::stats::Counters;
use floodgate_pmd::{IxgbeVf, Maintenance, Packet, PacketBatch};
use floodgate_vfio::Device;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Where passed packets go: a TAP (batched), the model's kernel side, or a counter.
pub trait PassSink {
    /// Submits a burst of passed packets. Returns how many the sink accepted; the rest were
    /// pushed back (queue full) and are counted as `tap_dropped`, never lost silently.
    fn submit(&mut self, packets: &[Packet]) -> usize;
}

/// A sink that accepts and counts everything: the model's "kernel side" when no TAP is given.
#[derive(Debug, Default)]
pub struct CountingSink {
    /// Packets accepted.
    pub packets: u64,
    /// Bytes accepted.
    pub bytes: u64,
}

impl PassSink for CountingSink {
    fn submit(&mut self, packets: &[Packet]) -> usize {
        self.packets += packets.len() as u64;
        self.bytes += packets.iter().map(|p| p.len() as u64).sum::<u64>();
        packets.len()
    }
}

/// Judges one burst with `rules` and hands the survivors to `sink`. Returns nothing; the
/// counters say what happened.
#[inline]
fn judge<S: PassSink>(
    pkts: impl Iterator<Item = Packet>,
    rules: &mut RuleSet,
    sink: &mut S,
    pass: &mut PacketBatch,
    drops: &mut PacketBatch,
    c: &mut Counters,
    now: u64,
) {
    for p in pkts {
        match rules.classify(p.data(), now).action {
            // Dropped buffers go back to the pool together at the end of the burst (one free-list
            // operation per burst, not per packet), without their bytes being touched.
            Decision::Drop => {
                c.dropped += 1;
                if let Err(p) = drops.push(p) {
                    drop(p);
                }
            }
            Decision::Pass => {
                c.passed += 1;
                if let Err(p) = pass.push(p) {
                    // The pass batch is as large as a burst, so this cannot happen; never
                    // lose a packet silently all the same.
                    c.tap_dropped += 1;
                    drop(p);
                }
            }
        }
    }
    drops.clear();
    if !pass.is_empty() {
        let accepted = sink.submit(pass.as_slice()).min(pass.len());
        c.tap += accepted as u64;
        c.tap_dropped += (pass.len() - accepted) as u64;
        pass.clear();
    }
}

/// Counters one worker publishes.
#[derive(Debug, Clone, Default)]
pub struct WorkerReport {
    /// Packets taken from the worker's ring.
    pub rx_packets: u64,
    /// Verdict counters (`dropped`, `passed`, `tap`, `tap_dropped`).
    pub counters: Counters,
    /// Per-rule counters of this worker's rule set.
    pub rules: RuleCounters,
}

struct WorkerShared {
    report: Mutex<WorkerReport>,
    new_rules: Mutex<Option<RuleSet>>,
    reload: AtomicBool,
}

struct Worker<S> {
    shared: Arc<WorkerShared>,
    handle: Option<JoinHandle<S>>,
}

fn worker_main<S: PassSink>(
    mut q: WorkerQueue<Packet>,
    mut rules: RuleSet,
    mut sink: S,
    shared: Arc<WorkerShared>,
    burst: usize,
) -> S {
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let start = std::time::Instant::now();
    let mut buf: Vec<Packet> = Vec::with_capacity(burst);
    let mut pass = PacketBatch::new(burst);
    let mut drops = PacketBatch::new(burst);
    let mut c = Counters::default();
    let mut rx = 0u64;
    let mut bursts = 0u32;
    let mut idle = 0u32;
    let publish = |c: &Counters, rx: u64, rules: &RuleSet| {
        let mut r = shared.report.lock().unwrap_or_else(|e| e.into_inner());
        r.rx_packets = rx;
        r.counters = *c;
        r.rules = rules.counters().clone();
    };
    loop {
        if shared.reload.swap(false, Ordering::AcqRel) {
            if let Some(mut r) = shared
                .new_rules
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
            {
                r.adopt_counters(&rules);
                rules = r;
            }
        }
        let n = q.pop_burst(&mut buf, burst);
        if n == 0 {
            if q.is_finished() {
                break;
            }
            idle += 1;
            if idle == 64 {
                publish(&c, rx, &rules);
                if let Err(e) = rules.flush_samples() {
                    log::warn!("worker {}: writing sampled packets: {e}", q.index());
                }
            }
            // Workers share cores with the polling thread (and, in the demo, the model): spin
            // briefly, then yield, then nap. A 4096-packet ring outlasts a 50 µs nap at any
            // rate one core can dispatch.
            if idle > 256 {
                std::thread::sleep(std::time::Duration::from_micros(50));
            } else if idle > 16 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
            continue;
        }
        idle = 0;
        rx += n as u64;
        let now = epoch + start.elapsed().as_nanos() as u64;
        judge(
            buf.drain(..),
            &mut rules,
            &mut sink,
            &mut pass,
            &mut drops,
            &mut c,
            now,
        );
        bursts = bursts.wrapping_add(1);
        if bursts.is_multiple_of(64) {
            publish(&c, rx, &rules);
        }
    }
    if let Err(e) = rules.flush_samples() {
        log::warn!("worker {}: writing sampled packets: {e}", q.index());
    }
    publish(&c, rx, &rules);
    sink
}

enum Stage<S> {
    Inline {
        rules: RuleSet,
        sink: S,
        pass: PacketBatch,
        drops: PacketBatch,
    },
    Fanout {
        dispatcher: Box<Dispatcher<Packet>>,
        workers: Vec<Worker<S>>,
        /// Rule names and the default action, for reports (the workers own the rule sets).
        template: RuleSet,
        finished: Vec<S>,
    },
}

/// One filter loop over all RX queues of one VF, judging inline or fanning out to workers.
pub struct FilterLoop<D: Device, S: PassSink> {
    vf: IxgbeVf<D>,
    stage: Stage<S>,
    rx: PacketBatch,
    counters: Counters,
    queues: usize,
    driver_errors_seen: u64,
}

impl<D: Device, S: PassSink> FilterLoop<D, S> {
    /// A loop that judges packets on this thread. `burst` is the RX burst size
    /// (1..=`floodgate_pmd::MAX_BATCH`).
    pub fn new(vf: IxgbeVf<D>, rules: RuleSet, sink: S, burst: usize) -> Self {
        let burst = burst.clamp(1, floodgate_pmd::MAX_BATCH);
        let queues = vf.num_queues().max(1);
        FilterLoop {
            vf,
            stage: Stage::Inline {
                rules,
                sink,
                pass: PacketBatch::new(burst),
                drops: PacketBatch::new(burst),
            },
            rx: PacketBatch::new(burst),
            counters: Counters::default(),
            queues,
            driver_errors_seen: 0,
        }
    }

    /// A loop that dispatches packets to `sinks.len()` worker threads by the soft-RSS hash
    /// (`rss.workers` is set from the number of sinks). Each worker gets a fork of `rules`.
    pub fn with_workers(
        vf: IxgbeVf<D>,
        rules: RuleSet,
        sinks: Vec<S>,
        burst: usize,
        mut rss: RssConfig,
        ring_capacity: usize,
    ) -> Result<Self, crate::softrss::RssError>
    where
        S: Send + 'static,
    {
        let burst = burst.clamp(1, floodgate_pmd::MAX_BATCH);
        let queues = vf.num_queues().max(1);
        rss.workers = sinks.len();
        let (dispatcher, qs) = Dispatcher::new(SoftRss::new(rss)?, ring_capacity)?;
        let mut workers = Vec::with_capacity(sinks.len());
        for (q, sink) in qs.into_iter().zip(sinks) {
            let shared = Arc::new(WorkerShared {
                report: Mutex::new(WorkerReport {
                    rules: rules.counters().clone(),
                    ..Default::default()
                }),
                new_rules: Mutex::new(None),
                reload: AtomicBool::new(false),
            });
            let (s2, r) = (shared.clone(), rules.fork());
            let idx = q.index();
            let handle = std::thread::Builder::new()
                .name(format!("floodgate-w{idx}"))
                .spawn(move || worker_main(q, r, sink, s2, burst))
                .map_err(|_| crate::softrss::RssError::Workers(idx))?;
            workers.push(Worker {
                shared,
                handle: Some(handle),
            });
        }
        Ok(FilterLoop {
            vf,
            stage: Stage::Fanout {
                dispatcher: Box::new(dispatcher),
                workers,
                template: rules,
                finished: Vec::new(),
            },
            rx: PacketBatch::new(burst),
            counters: Counters::default(),
            queues,
            driver_errors_seen: 0,
        })
    }

    /// Polls every queue once. Returns the packets received.
    #[inline]
    pub fn poll(&mut self, now: u64) -> usize {
        let mut total = 0;
        for q in 0..self.queues {
            let n = self.vf.rx_burst(q, &mut self.rx);
            if n == 0 {
                continue;
            }
            total += n;
            let c = &mut self.counters;
            c.rx_packets += n as u64;
            c.rx_bytes += self.rx.iter().map(|p| p.len() as u64).sum::<u64>();
            match &mut self.stage {
                Stage::Inline {
                    rules,
                    sink,
                    pass,
                    drops,
                } => judge(self.rx.drain(), rules, sink, pass, drops, c, now),
                Stage::Fanout { dispatcher, .. } => {
                    for p in self.rx.drain() {
                        if dispatcher.dispatch(p).is_err() {
                            // The rejected packet is dropped here, its buffer goes back.
                            c.dropped += 1;
                            c.dispatch_full += 1;
                        }
                    }
                }
            }
        }
        total
    }

    /// Folds the driver's bad-descriptor drops into the `errors` bucket. The driver counts them
    /// before a packet ever reaches the loop, so they are added to `rx_packets` as well: the
    /// loop's view of "received" is every descriptor the VF completed.
    pub fn sync_driver_errors(&mut self) {
        let mut total = 0;
        for q in 0..self.queues {
            if let Some((rx, _)) = self.vf.queue_stats(q) {
                total += rx.dropped();
            }
        }
        let new = total.saturating_sub(self.driver_errors_seen);
        self.driver_errors_seen = total;
        self.counters.errors += new;
        self.counters.rx_packets += new;
    }

    /// Driver housekeeping: bad-descriptor counts, PF reset recovery, link, hardware counters.
    pub fn maintain(&mut self) -> Result<Maintenance, floodgate_pmd::Error> {
        self.sync_driver_errors();
        self.vf.maintain()
    }

    /// Counters so far, summed over workers. With workers, what was dispatched but not yet
    /// judged (or not yet published by its worker) is `in_flight`.
    pub fn counters(&self) -> Counters {
        let mut c = self.counters;
        if let Stage::Fanout { workers, .. } = &self.stage {
            for w in workers {
                let r = w.shared.report.lock().unwrap_or_else(|e| e.into_inner());
                c.dropped += r.counters.dropped;
                c.passed += r.counters.passed;
                c.tap += r.counters.tap;
                c.tap_dropped += r.counters.tap_dropped;
            }
            let accounted = c.dropped + c.passed + c.errors;
            c.in_flight = c.rx_packets.saturating_sub(accounted);
        }
        c
    }

    /// Per-worker reports (empty when judging inline).
    pub fn worker_reports(&self) -> Vec<WorkerReport> {
        match &self.stage {
            Stage::Inline { .. } => Vec::new(),
            Stage::Fanout { workers, .. } => workers
                .iter()
                .map(|w| {
                    w.shared
                        .report
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone()
                })
                .collect(),
        }
    }

    /// Rule names in order (then the default action is reported separately).
    pub fn rule_names(&self) -> Vec<String> {
        let rs = match &self.stage {
            Stage::Inline { rules, .. } => rules,
            Stage::Fanout { template, .. } => template,
        };
        rs.rules().iter().map(|r| r.name.clone()).collect()
    }

    /// Per-rule counters, merged over workers.
    pub fn rule_counters(&self) -> RuleCounters {
        match &self.stage {
            Stage::Inline { rules, .. } => rules.counters().clone(),
            Stage::Fanout {
                workers, template, ..
            } => {
                let mut total = template.counters().clone();
                for w in workers {
                    let r = w.shared.report.lock().unwrap_or_else(|e| e.into_inner());
                    total.merge(&r.rules);
                }
                total
            }
        }
    }

    /// Flushes sampled packets (inline; workers flush their own when idle and at the end).
    pub fn flush_samples(&self) -> std::io::Result<()> {
        match &self.stage {
            Stage::Inline { rules, .. } => rules.flush_samples(),
            Stage::Fanout { .. } => Ok(()),
        }
    }

    /// Swaps in a new rule set (hot reload) between two bursts, keeping the hit counters of
    /// rules with the same name. Workers take theirs before their next burst.
    pub fn replace_rules(&mut self, mut new: RuleSet) {
        match &mut self.stage {
            Stage::Inline { rules, .. } => {
                new.adopt_counters(rules);
                *rules = new;
            }
            Stage::Fanout {
                workers, template, ..
            } => {
                for w in workers.iter() {
                    *w.shared.new_rules.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(new.fork());
                    w.shared.reload.store(true, Ordering::Release);
                }
                let names = new.rules().len();
                *template = RuleSet::new(new.rules().to_vec(), new.default_action());
                log::debug!("rules handed to {} workers ({names} rules)", workers.len());
            }
        }
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
    }

    /// The sinks: the loop's own, or (after [`finish`](Self::finish)) the workers'.
    pub fn sinks(&self) -> Vec<&S> {
        match &self.stage {
            Stage::Inline { sink, .. } => vec![sink],
            Stage::Fanout { finished, .. } => finished.iter().collect(),
        }
    }

    /// The driver.
    pub fn vf(&mut self) -> &mut IxgbeVf<D> {
        &mut self.vf
    }
}

impl<D: Device, S: PassSink> Drop for FilterLoop<D, S> {
    fn drop(&mut self) {
        self.finish();
    }
}
