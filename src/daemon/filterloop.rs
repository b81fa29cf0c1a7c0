//! The filter loop: VF RX burst → rules → drop (buffer straight back) or pass (batched sink).
//!
//! Generic over the device, so the same loop runs on a real VF (kernel VFIO), on the in-process
//! model (`demo`) and over vfio-user. Zero copy: a passed packet is handed to the sink as a
//! slice of its DMA buffer; the sink's submission is the only copy (the kernel's, for a TAP).

use crate::filter::{Decision, RuleSet};
use crate::stats::Counters;
use floodgate_pmd::{IxgbeVf, Packet, PacketBatch};
use floodgate_vfio::Device;

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

/// One filter loop over all RX queues of one VF.
pub struct FilterLoop<D: Device, S: PassSink> {
    vf: IxgbeVf<D>,
    rules: RuleSet,
    sink: S,
    rx: PacketBatch,
    pass: PacketBatch,
    counters: Counters,
    queues: usize,
    /// Packets seen by the driver as bad descriptors (for the `errors` bucket), last reading.
    driver_errors_seen: u64,
}

impl<D: Device, S: PassSink> FilterLoop<D, S> {
    /// Wraps an opened VF. `burst` is the RX burst size (1..=`floodgate_pmd::MAX_BATCH`).
    pub fn new(vf: IxgbeVf<D>, rules: RuleSet, sink: S, burst: usize) -> Self {
        let burst = burst.clamp(1, floodgate_pmd::MAX_BATCH);
        let queues = vf.num_queues().max(1);
        FilterLoop {
            vf,
            rules,
            sink,
            rx: PacketBatch::new(burst),
            pass: PacketBatch::new(burst),
            counters: Counters::default(),
            queues,
            driver_errors_seen: 0,
        }
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
            self.counters.rx_packets += n as u64;
            for p in self.rx.drain() {
                self.counters.rx_bytes += p.len() as u64;
                let v = self.rules.classify(p.data(), now);
                match v.action {
                    Decision::Drop => {
                        self.counters.dropped += 1;
                        // Dropping `p` here returns its buffer without touching the bytes.
                    }
                    Decision::Pass => {
                        self.counters.passed += 1;
                        if let Err(p) = self.pass.push(p) {
                            // Cannot happen (pass has the rx batch's capacity), but never lose
                            // a packet: count it as refused by the sink.
                            self.counters.tap_dropped += 1;
                            drop(p);
                        }
                    }
                }
            }
            self.flush_pass();
        }
        total
    }

    fn flush_pass(&mut self) {
        if self.pass.is_empty() {
            return;
        }
        let accepted = self.sink.submit(self.pass.as_slice()).min(self.pass.len());
        self.counters.tap += accepted as u64;
        self.counters.tap_dropped += (self.pass.len() - accepted) as u64;
        self.pass.clear();
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

    /// Counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The rules (for per-rule hit counters).
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Swaps in a new rule set (hot reload), keeping hit counters of rules with the same name.
    pub fn replace_rules(&mut self, mut rules: RuleSet) {
        rules.adopt_counters(&self.rules);
        self.rules = rules;
    }

    /// The driver.
    pub fn vf(&mut self) -> &mut IxgbeVf<D> {
        &mut self.vf
    }

    /// The sink.
    pub fn sink(&self) -> &S {
        &self.sink
    }
}
