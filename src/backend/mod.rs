//! Where packets come from and where they can leave: the one interface the filter loop uses.
//!
//! The daemon has two packet backends:
//! - the ixgbe VF driven by the PMD ([`IxgbeVf`], over kernel VFIO, vfio-user or the in-process
//!   model), steered by the NIC's flow director;
//! - an AF_XDP socket on any Linux interface, steered by an XDP program (see `docs/af_xdp.md`, [`af_xdp::XskBackend`]).
//!
//! Both hand out [`Packet`]s from a [`floodgate_pmd::Mempool`], so the headroom/metadata
//! contract of `docs/soft-rss.md` and the zero-copy rules hold for either: a dropped packet's
//! buffer goes straight back to the pool from any thread, and the backend refills its receive
//! ring from that pool.
//!
//! The filter loop (`crate::daemon::filterloop`) and the run loop are generic over
//! [`PacketBackend`] and never name a backend.
//!
//! [`Packet`]: floodgate_pmd::Packet

pub mod af_xdp;
pub mod csum;

use floodgate_pmd::{IxgbeVf, Maintenance, PacketBatch, RxChunk, RxJudge, RxJudged, MAX_BATCH};
use floodgate_vfio::Device;

/// What one transmit call did with a batch. The batch is always left empty: every packet is
/// in exactly one of the three counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxOutcome {
    /// Packets put on the TX ring (their buffers come back to the pool once sent).
    pub sent: usize,
    /// Packets the backend refused as invalid (bad length, no buffer): dropped.
    pub refused: usize,
    /// Packets that did not fit (TX ring full): dropped, their buffers reused at once.
    pub ring_full: usize,
}

/// A backend failure seen by housekeeping.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The VF driver.
    #[error(transparent)]
    Vf(#[from] floodgate_pmd::Error),
    /// Another backend (AF_XDP): what failed and where.
    #[error("{what}")]
    Other {
        /// What failed, for the log.
        what: String,
        /// Retry at the next interval instead of ending the loop.
        transient: bool,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl BackendError {
    /// True when housekeeping should be retried at the next interval (a PF reset in progress,
    /// a mailbox that did not answer in time, a PF that refused part of the re-initialisation);
    /// false when the device is gone or the driver cannot go on, which ends the loop.
    pub fn is_transient(&self) -> bool {
        match self {
            BackendError::Vf(
                floodgate_pmd::Error::PfResetInProgress { .. }
                | floodgate_pmd::Error::ResetTimeout { .. }
                | floodgate_pmd::Error::MailboxTimeout { .. }
                | floodgate_pmd::Error::PfRefused { .. },
            ) => true,
            BackendError::Vf(_) => false,
            BackendError::Other { transient, .. } => *transient,
        }
    }
}

/// The packet I/O a filter loop needs. Implemented by [`IxgbeVf`] and by the AF_XDP backend.
///
/// Every method is called from the one polling thread that owns the backend; packets it hands
/// out may be dropped on any thread.
pub trait PacketBackend {
    /// A short name for logs and metrics: `"ixgbevf"`, `"af_xdp"`.
    fn kind(&self) -> &'static str;
    /// How packets reach memory, for the start-up log and the `floodgate_backend_info`
    /// metric: `"vfio"`, `"zero-copy"`, `"copy"`.
    fn mode(&self) -> &'static str;
    /// Receive queues the loop polls (at least 1).
    fn rx_queues(&self) -> usize;
    /// Transmit queues survivors can leave on (0 when the backend cannot transmit).
    fn tx_queues(&self) -> usize;
    /// Receives up to `batch.free_slots()` packets from `queue` into `batch`; returns how many.
    fn rx_burst(&mut self, queue: usize, batch: &mut PacketBatch) -> usize;
    /// Receives from `queue` and lets `judge` drop frames before they reach `batch`: the judge
    /// sees the received frames in chunks of up to [`floodgate_pmd::RX_CHUNK`], in order, and
    /// returns a drop mask per chunk (bits past the chunk are ignored); the frames it keeps are
    /// appended to `batch`, the others are released. Returns what was received, kept and
    /// dropped.
    ///
    /// The default receives with [`rx_burst`](Self::rx_burst), judges the new packets and frees
    /// the dropped ones in bulk (the survivors stay in order). A backend that can judge frames
    /// in its receive ring overrides it (and [`judges_in_place`](Self::judges_in_place)): the
    /// VF re-arms a dropped frame's buffer in its own descriptor.
    fn rx_burst_judged<J: RxJudge>(
        &mut self,
        queue: usize,
        batch: &mut PacketBatch,
        judge: &mut J,
    ) -> RxJudged
    where
        Self: Sized,
    {
        let start = batch.len();
        let n = self.rx_burst(queue, batch);
        judge_received(batch, start, n, judge)
    }
    /// Whether [`rx_burst_judged`](Self::rx_burst_judged) drops frames without building packets
    /// for them (then it is the cheaper way to receive and judge; otherwise receiving a batch
    /// and judging it is as cheap).
    fn judges_in_place(&self) -> bool {
        false
    }
    /// Drops every packet of `batch` after the loop is done with them (a sink took copies),
    /// giving their buffers back as cheaply as the backend can; `queue` is the receive queue
    /// they came from. The default frees them to their pools in bulk; the VF puts buffers of
    /// its own pool straight into that queue's buffer cache, where its next receive takes them.
    fn release(&mut self, queue: usize, batch: &mut PacketBatch) {
        let _ = queue;
        batch.clear();
    }
    /// Transmits `batch` on `queue` (one doorbell/kick per call). Leaves `batch` empty.
    fn tx_burst(&mut self, queue: usize, batch: &mut PacketBatch) -> TxOutcome;
    /// Packets sent on `queue` whose completion the device has not reported yet (after
    /// reclaiming what it has).
    fn tx_outstanding(&mut self, queue: usize) -> u64;
    /// Running total of frames the backend received but threw away before the loop saw them
    /// (bad descriptors, invalid frames): counted by the loop as received and `errors`.
    fn rx_errors(&self) -> u64;
    /// Housekeeping once per stats interval: reset recovery, link, device counters.
    fn maintain(&mut self) -> Result<Maintenance, BackendError>;
    /// Free buffers in the packet pool (a gauge).
    fn pool_free(&self) -> u64;
    /// Requests to the device that got no answer in time (vfio-user); 0 elsewhere.
    fn transport_timeouts(&self) -> u64 {
        0
    }
    /// The backend's own MAC address, when it has one (VF reinjection rewrites sources to it).
    fn mac(&self) -> Option<[u8; 6]> {
        None
    }
}

/// The default judged receive after `rx_burst` appended `n` packets at `start` of `batch`:
/// judges them in chunks, then frees the dropped ones in bulk, keeping the rest in order.
fn judge_received<J: RxJudge>(
    batch: &mut PacketBatch,
    start: usize,
    n: usize,
    judge: &mut J,
) -> RxJudged {
    let end = (start + n).min(batch.len());
    let mut res = RxJudged::default();
    let mut marks = [0u32; MAX_BATCH / 32];
    let mut at = start;
    while at < end {
        let chunk = RxChunk::from_packets(&batch.as_slice()[at..end]);
        let k = chunk.len().max(1);
        for i in 0..chunk.len() {
            res.bytes += chunk.frame(i).len() as u64;
        }
        let valid = u32::MAX >> (32 - k.min(32));
        let mut m = judge.judge(&chunk) & valid;
        res.dropped += m.count_ones() as usize;
        while m != 0 {
            let j = at + m.trailing_zeros() as usize;
            m &= m - 1;
            if let Some(w) = marks.get_mut(j / 32) {
                *w |= 1 << (j % 32);
            }
        }
        at += k;
    }
    res.received = end - start;
    res.kept = res.received - res.dropped;
    if res.dropped > 0 {
        let mut r = 0;
        batch.retain(|_| {
            let drop = marks.get(r / 32).is_some_and(|w| w >> (r % 32) & 1 != 0);
            r += 1;
            !drop
        });
    }
    res
}

impl<D: Device> PacketBackend for IxgbeVf<D> {
    fn kind(&self) -> &'static str {
        "ixgbevf"
    }

    fn mode(&self) -> &'static str {
        "vfio"
    }

    fn rx_queues(&self) -> usize {
        self.num_queues().max(1)
    }

    fn tx_queues(&self) -> usize {
        self.num_queues()
    }

    #[inline]
    fn rx_burst(&mut self, queue: usize, batch: &mut PacketBatch) -> usize {
        IxgbeVf::rx_burst(self, queue, batch)
    }

    #[inline]
    fn rx_burst_judged<J: RxJudge>(
        &mut self,
        queue: usize,
        batch: &mut PacketBatch,
        judge: &mut J,
    ) -> RxJudged {
        IxgbeVf::rx_burst_judged(self, queue, batch, judge)
    }

    fn judges_in_place(&self) -> bool {
        true
    }

    #[inline]
    fn release(&mut self, queue: usize, batch: &mut PacketBatch) {
        self.recycle(queue, batch);
    }

    #[inline]
    fn tx_burst(&mut self, queue: usize, batch: &mut PacketBatch) -> TxOutcome {
        let n = batch.len();
        let rejected = |vf: &IxgbeVf<D>| vf.queue_stats(queue).map_or(0, |(_, t)| t.rejected);
        let before = rejected(self);
        let taken = IxgbeVf::tx_burst(self, queue, batch).min(n);
        let refused = (rejected(self).saturating_sub(before) as usize).min(taken);
        if !batch.is_empty() {
            // TX ring full: these are dropped, their buffers reused at once.
            self.recycle(queue, batch);
        }
        TxOutcome {
            sent: taken - refused,
            refused,
            ring_full: n - taken,
        }
    }

    fn tx_outstanding(&mut self, queue: usize) -> u64 {
        self.tx_reclaim(queue);
        match self.queue_stats(queue) {
            Some((_, t)) => t
                .packets
                .saturating_sub(t.completed)
                .saturating_sub(t.dropped_reset),
            None => 0,
        }
    }

    fn rx_errors(&self) -> u64 {
        (0..self.num_queues())
            .filter_map(|q| self.queue_stats(q))
            .map(|(rx, _)| rx.dropped())
            .sum()
    }

    fn maintain(&mut self) -> Result<Maintenance, BackendError> {
        Ok(IxgbeVf::maintain(self)?)
    }

    fn pool_free(&self) -> u64 {
        u64::from(self.mempool().available())
    }

    fn transport_timeouts(&self) -> u64 {
        self.device().transport_timeouts()
    }

    fn mac(&self) -> Option<[u8; 6]> {
        Some(IxgbeVf::mac(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floodgate_pmd::{Mempool, MempoolConfig};
    use floodgate_vfio::HugePages;

    /// A backend whose receive queue hands out `frames` pool buffers per burst, the first byte
    /// of each counting up from 0.
    struct Counting {
        pool: Mempool,
        next: u8,
        frames: usize,
    }

    impl PacketBackend for Counting {
        fn kind(&self) -> &'static str {
            "test"
        }
        fn mode(&self) -> &'static str {
            "copy"
        }
        fn rx_queues(&self) -> usize {
            1
        }
        fn tx_queues(&self) -> usize {
            0
        }
        fn rx_burst(&mut self, _: usize, batch: &mut PacketBatch) -> usize {
            let mut n = 0;
            while n < self.frames && batch.free_slots() > 0 {
                let mut p = self.pool.alloc().expect("buffer");
                p.copy_from_slice(&[self.next; 60]).expect("fits");
                self.next = self.next.wrapping_add(1);
                assert!(batch.push(p).is_ok(), "a free slot was checked");
                n += 1;
            }
            n
        }
        fn tx_burst(&mut self, _: usize, batch: &mut PacketBatch) -> TxOutcome {
            let ring_full = batch.len();
            batch.clear();
            TxOutcome {
                ring_full,
                ..TxOutcome::default()
            }
        }
        fn tx_outstanding(&mut self, _: usize) -> u64 {
            0
        }
        fn rx_errors(&self) -> u64 {
            0
        }
        fn maintain(&mut self) -> Result<Maintenance, BackendError> {
            Ok(Maintenance::default())
        }
        fn pool_free(&self) -> u64 {
            u64::from(self.pool.available())
        }
    }

    #[test]
    fn default_judged_receive_frees_the_drops_and_keeps_the_rest_in_order() {
        let pool = Mempool::new(&MempoolConfig {
            buffers: 256,
            huge_pages: HugePages::Never,
            ..Default::default()
        })
        .unwrap();
        let mut b = Counting {
            pool: pool.clone(),
            next: 0,
            frames: 70,
        };
        assert!(!b.judges_in_place());
        // Three packets already in the batch stay untouched.
        let mut batch = PacketBatch::new(100);
        for _ in 0..3 {
            let mut p = pool.alloc().unwrap();
            p.copy_from_slice(&[201; 60]).unwrap();
            batch.push(p).ok().unwrap();
        }
        let mut chunks = Vec::new();
        // Drop frames whose first byte is a multiple of 3; junk bits past the chunk ignored.
        let mut judge = |c: &RxChunk<'_>| {
            chunks.push(c.len());
            let mut m = !0u32 << c.len().min(31) << 1;
            for i in 0..c.len() {
                assert_eq!(c.headroom(i).len(), pool.headroom());
                if c.frame(i)[0].is_multiple_of(3) {
                    m |= 1 << i;
                }
            }
            m
        };
        let r = b.rx_burst_judged(0, &mut batch, &mut judge);
        assert_eq!(chunks, vec![32, 32, 6]);
        let dropped = (0..70u32).filter(|x| x % 3 == 0).count();
        assert_eq!(
            r,
            RxJudged {
                received: 70,
                kept: 70 - dropped,
                dropped,
                bytes: 70 * 60,
            }
        );
        let firsts: Vec<u8> = batch.iter().map(|p| p.data()[0]).collect();
        let want: Vec<u8> = [201, 201, 201]
            .into_iter()
            .chain((0..70u8).filter(|x| x % 3 != 0))
            .collect();
        assert_eq!(firsts, want, "survivors in order");
        assert_eq!(pool.available() as usize, 256 - batch.len());
    }
}
