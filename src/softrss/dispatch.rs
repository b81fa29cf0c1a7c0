//! Dispatcher: one producer classifies packets and moves their handles into one bounded
//! lock-free ring per worker (crossbeam `ArrayQueue`).
//!
//! Guarantees:
//! - Packet handles move, bytes are never copied.
//! - Same flow -> same worker (symmetric hash), one producer, FIFO rings: order inside a flow
//!   is preserved.
//! - A full ring is counted per worker (`full`) and the packet handed back to the caller
//!   ([`Dispatcher::dispatch`]) or dropped, which returns its buffer
//!   ([`Dispatcher::dispatch_burst`]). Nothing is lost silently:
//!   `offered = Σ enqueued + Σ full`, and `enqueued = dequeued + queued` per worker.

use super::{Classified, RssError, SoftRss};
use crossbeam::queue::ArrayQueue;
use crossbeam::utils::CachePadded;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// What the dispatcher needs from a packet handle. Implemented for `floodgate_pmd::Packet`.
pub trait FramePacket: Send {
    /// The frame bytes, starting at the Ethernet header.
    fn data(&self) -> &[u8];
    /// The headroom in front of the frame (metadata is read from its start).
    fn headroom(&self) -> &[u8];
    /// The headroom, writable (metadata is written at its start).
    fn headroom_mut(&mut self) -> &mut [u8];
}

/// A packet that did not fit its worker's ring.
#[derive(Debug)]
pub struct Rejected<P> {
    /// The packet, handed back (drop it to return its buffer).
    pub packet: P,
    /// The worker whose ring was full.
    pub worker: usize,
}

/// Construction errors (an alias: they are configuration errors).
pub type DispatchError = RssError;

#[derive(Default)]
struct Counters {
    enqueued: AtomicU64,
    full: AtomicU64,
    dequeued: AtomicU64,
}

struct Shared<P> {
    rings: Box<[ArrayQueue<P>]>,
    counters: Box<[CachePadded<Counters>]>,
    offered: CachePadded<AtomicU64>,
    no_meta: AtomicU64,
    closed: AtomicBool,
}

/// Counters of one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkerStats {
    /// Packets put into this worker's ring.
    pub enqueued: u64,
    /// Packets for this worker that found its ring full ("dispatch_full").
    pub full: u64,
    /// Packets the worker took out.
    pub dequeued: u64,
    /// Packets in the ring at the time of the snapshot.
    pub queued: u64,
}

/// A snapshot of the dispatcher's counters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DispatchStats {
    /// Packets handed to the dispatcher.
    pub offered: u64,
    /// Packets dispatched without metadata because their headroom was too small.
    pub no_meta: u64,
    /// Per-worker counters.
    pub workers: Vec<WorkerStats>,
}

impl DispatchStats {
    /// Σ enqueued.
    pub fn enqueued(&self) -> u64 {
        self.workers.iter().map(|w| w.enqueued).sum()
    }
    /// Σ full ("dispatch_full").
    pub fn full(&self) -> u64 {
        self.workers.iter().map(|w| w.full).sum()
    }
    /// Σ dequeued.
    pub fn dequeued(&self) -> u64 {
        self.workers.iter().map(|w| w.dequeued).sum()
    }
    /// Σ queued.
    pub fn queued(&self) -> u64 {
        self.workers.iter().map(|w| w.queued).sum()
    }
}

impl<P> Shared<P> {
    fn snapshot(&self) -> DispatchStats {
        DispatchStats {
            offered: self.offered.load(Ordering::Acquire),
            no_meta: self.no_meta.load(Ordering::Relaxed),
            workers: self
                .counters
                .iter()
                .zip(self.rings.iter())
                .map(|(c, r)| WorkerStats {
                    enqueued: c.enqueued.load(Ordering::Relaxed),
                    full: c.full.load(Ordering::Relaxed),
                    dequeued: c.dequeued.load(Ordering::Relaxed),
                    queued: r.len() as u64,
                })
                .collect(),
        }
    }
}

/// Single-writer counter bump: only one thread ever writes `c`, so a load and a store suffice
/// (no locked read-modify-write on the hot path).
#[inline(always)]
fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// The producer side. Owned by one thread (`&mut self` methods), which keeps flows in order.
pub struct Dispatcher<P: FramePacket> {
    rss: SoftRss,
    shared: Arc<Shared<P>>,
    scratch: Classified,
}

impl<P: FramePacket> std::fmt::Debug for Dispatcher<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("workers", &self.shared.rings.len())
            .finish_non_exhaustive()
    }
}

/// The consumer side of one worker's ring. Send it to the worker thread.
pub struct WorkerQueue<P: FramePacket> {
    index: usize,
    shared: Arc<Shared<P>>,
}

impl<P: FramePacket> std::fmt::Debug for WorkerQueue<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerQueue")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl<P: FramePacket> Dispatcher<P> {
    /// Builds a dispatcher with one ring of `ring_capacity` packets per worker of `rss`, and
    /// returns the worker ends in worker order.
    pub fn new(
        rss: SoftRss,
        ring_capacity: usize,
    ) -> Result<(Dispatcher<P>, Vec<WorkerQueue<P>>), DispatchError> {
        if ring_capacity == 0 || ring_capacity > 1 << 20 {
            return Err(RssError::RingCapacity(ring_capacity));
        }
        let n = rss.workers();
        let shared = Arc::new(Shared {
            rings: (0..n).map(|_| ArrayQueue::new(ring_capacity)).collect(),
            counters: (0..n)
                .map(|_| CachePadded::new(Counters::default()))
                .collect(),
            offered: CachePadded::new(AtomicU64::new(0)),
            no_meta: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        let queues = (0..n)
            .map(|index| WorkerQueue {
                index,
                shared: Arc::clone(&shared),
            })
            .collect();
        log::debug!("soft RSS dispatcher: {n} workers, ring capacity {ring_capacity}");
        Ok((
            Dispatcher {
                rss,
                shared,
                scratch: Classified::default(),
            },
            queues,
        ))
    }

    /// The classification stage.
    pub fn rss(&self) -> &SoftRss {
        &self.rss
    }

    /// Classifies `pkt`, writes its metadata into the headroom (counted under `no_meta` if the
    /// headroom is too small) and moves it to its worker's ring. Returns the worker index, or
    /// the packet back if that ring is full (already counted under that worker's `full`).
    #[inline]
    pub fn dispatch(&mut self, mut pkt: P) -> Result<usize, Rejected<P>> {
        self.rss.classify_into(pkt.data(), &mut self.scratch);
        let c = &self.scratch;
        let w = c.worker;
        let meta = c.meta().for_frame(pkt.data());
        if meta.write_to(pkt.headroom_mut()).is_err() {
            bump(&self.shared.no_meta);
        }
        let s = &*self.shared;
        let res = match s.rings.get(w) {
            Some(ring) => match ring.push(pkt) {
                Ok(()) => {
                    if let Some(c) = s.counters.get(w) {
                        bump(&c.enqueued);
                    }
                    Ok(w)
                }
                Err(packet) => {
                    if let Some(c) = s.counters.get(w) {
                        bump(&c.full);
                    }
                    Err(Rejected { packet, worker: w })
                }
            },
            // Unreachable: the indirection table only holds indices < workers.
            None => Err(Rejected {
                packet: pkt,
                worker: w,
            }),
        };
        // Published last (Release): a reader that sees `offered` sees the per-worker counts.
        s.offered
            .store(s.offered.load(Ordering::Relaxed) + 1, Ordering::Release);
        res
    }

    /// Dispatches every packet of `pkts`; packets whose ring is full are dropped (their
    /// buffers return to their pool) and counted. Returns how many were enqueued.
    #[inline]
    pub fn dispatch_burst<I: IntoIterator<Item = P>>(&mut self, pkts: I) -> usize {
        let mut n = 0;
        for p in pkts {
            if self.dispatch(p).is_ok() {
                n += 1;
            }
        }
        n
    }

    /// Counter snapshot.
    pub fn stats(&self) -> DispatchStats {
        self.shared.snapshot()
    }

    /// Whether some worker's ring is at least three quarters full: that worker is falling
    /// behind. The daemon's dispatcher yields its CPU then, so a worker sharing the core gets
    /// to run before its ring overflows.
    #[inline]
    pub fn under_pressure(&self) -> bool {
        self.shared
            .rings
            .iter()
            .any(|r| r.len() * 4 >= r.capacity() * 3)
    }

    /// Tells the workers that no more packets will come (also done on drop).
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
    }
}

impl<P: FramePacket> Drop for Dispatcher<P> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<P: FramePacket> WorkerQueue<P> {
    /// This worker's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Takes the next packet, if any.
    #[inline]
    pub fn pop(&mut self) -> Option<P> {
        let p = self.shared.rings.get(self.index)?.pop()?;
        if let Some(c) = self.shared.counters.get(self.index) {
            bump(&c.dequeued);
        }
        Some(p)
    }

    /// Moves up to `max` packets into `out`; returns how many.
    #[inline]
    pub fn pop_burst(&mut self, out: &mut Vec<P>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            match self.pop() {
                Some(p) => {
                    out.push(p);
                    n += 1;
                }
                None => break,
            }
        }
        n
    }

    /// Packets waiting in this ring.
    pub fn len(&self) -> usize {
        self.shared.rings.get(self.index).map_or(0, |r| r.len())
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True once the dispatcher is closed or dropped and this ring is drained: the worker may
    /// stop.
    pub fn is_finished(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire) && self.is_empty()
    }

    /// Counter snapshot of the whole dispatcher (any worker may read it).
    pub fn stats(&self) -> DispatchStats {
        self.shared.snapshot()
    }
}
