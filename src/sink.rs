//! Where the filter's survivors go when they are not sent back out of the backend: a
//! [`PassSink`]. The TAP's sink lives next to the TAP (`crate::tap::TapSink`); the demo has its
//! own (the model's "kernel side"); [`CountingSink`] only counts.
//!
//! This sits below both the filter loop and the TAP, so neither imports the other.

use floodgate_pmd::Packet;

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
