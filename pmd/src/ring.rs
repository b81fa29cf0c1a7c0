//! A lock-free multi-producer multi-consumer ring of `u32` buffer indices.
//!
//! The design is the classic two-stage ring (as in DPDK's `rte_ring`): producers reserve a range
//! of slots by moving `prod_head` with one compare-and-swap, write their values, then publish them
//! by moving `prod_tail` in reservation order; consumers do the same with `cons_head` and
//! `cons_tail`. Bulk operations move any number of entries with one CAS. Indices are free-running
//! `u32` counters masked by a power-of-two capacity, so the ring can hold exactly `capacity`
//! entries.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, Ordering};

/// Keeps a hot atomic on its own cache line.
#[repr(align(64))]
struct Padded(AtomicU32);

/// See the module documentation.
pub(crate) struct IndexRing {
    prod_head: Padded,
    prod_tail: Padded,
    cons_head: Padded,
    cons_tail: Padded,
    mask: u32,
    /// Slot `i` is written only by the producer that reserved it and read only by the consumer
    /// that reserved it; the head/tail protocol orders the two.
    slots: Box<[UnsafeCell<u32>]>,
}

// SAFETY: slots are accessed only inside ranges reserved by one CAS on prod_head/cons_head and
// published/retired through release stores of prod_tail/cons_tail (see enqueue/dequeue).
unsafe impl Sync for IndexRing {}
// SAFETY: plain data.
unsafe impl Send for IndexRing {}

/// Waits for an earlier producer/consumer to publish its range. Spins briefly, then yields, so a
/// preempted thread on a busy machine does not stall the others for a whole time slice.
#[inline(always)]
fn wait_turn(tail: &AtomicU32, expected: u32) {
    let mut spins = 0u32;
    while tail.load(Ordering::Acquire) != expected {
        if spins < 64 {
            std::hint::spin_loop();
            spins += 1;
        } else {
            std::thread::yield_now();
        }
    }
}

/// Copies `n` u32s; short runs (the usual burst) with a plain loop instead of a memcpy call.
///
/// # Safety
/// As `ptr::copy_nonoverlapping`.
#[inline(always)]
unsafe fn copy_u32(src: *const u32, dst: *mut u32, n: usize) {
    if n <= 64 {
        for i in 0..n {
            // SAFETY: i < n, guaranteed valid by the caller.
            unsafe { dst.add(i).write(src.add(i).read()) };
        }
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, n) };
    }
}

impl IndexRing {
    /// A ring that can hold at least `min_capacity` entries (rounded up to a power of two).
    pub(crate) fn new(min_capacity: u32) -> Self {
        let cap = min_capacity.max(1).next_power_of_two();
        IndexRing {
            prod_head: Padded(AtomicU32::new(0)),
            prod_tail: Padded(AtomicU32::new(0)),
            cons_head: Padded(AtomicU32::new(0)),
            cons_tail: Padded(AtomicU32::new(0)),
            mask: cap - 1,
            slots: (0..cap).map(|_| UnsafeCell::new(0)).collect(),
        }
    }

    /// Number of slots.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> u32 {
        self.mask + 1
    }

    /// Entries currently published (a snapshot; exact when no operation is in flight).
    pub(crate) fn len(&self) -> u32 {
        let cons = self.cons_tail.0.load(Ordering::Acquire);
        let prod = self.prod_tail.0.load(Ordering::Acquire);
        prod.wrapping_sub(cons)
    }

    /// Start slot of `n` entries at counter `head`, and how many fit before the wrap.
    #[inline(always)]
    fn segments(&self, head: u32, n: usize) -> (usize, usize) {
        let start = (head & self.mask) as usize;
        let cap = self.mask as usize + 1;
        (start, n.min(cap - start))
    }

    /// Adds all of `vals` or nothing. Returns false when there is not enough room.
    #[inline]
    pub(crate) fn enqueue_bulk(&self, vals: &[u32]) -> bool {
        let n = vals.len() as u32;
        if n == 0 {
            return true;
        }
        let cap = self.mask + 1;
        let mut head = self.prod_head.0.load(Ordering::Relaxed);
        loop {
            let cons_tail = self.cons_tail.0.load(Ordering::Acquire);
            let used = head.wrapping_sub(cons_tail);
            if used > cap {
                // `head` is stale (consumers moved past it); reload and retry.
                head = self.prod_head.0.load(Ordering::Relaxed);
                continue;
            }
            if cap - used < n {
                return false;
            }
            match self.prod_head.0.compare_exchange_weak(
                head,
                head.wrapping_add(n),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(h) => head = h,
            }
        }
        let (start, first) = self.segments(head, vals.len());
        let base = UnsafeCell::raw_get(self.slots.as_ptr());
        // SAFETY: we reserved slots head..head+n (mod capacity) with the CAS above, so nobody
        // else touches them until we publish them; the two segments stay inside `slots`.
        unsafe {
            copy_u32(vals.as_ptr(), base.add(start), first);
            copy_u32(vals.as_ptr().add(first), base, vals.len() - first);
        }
        wait_turn(&self.prod_tail.0, head);
        // Release: publishes the slot writes above (and, through the acquire in wait_turn, the
        // earlier producers' ones) to consumers.
        self.prod_tail
            .0
            .store(head.wrapping_add(n), Ordering::Release);
        true
    }

    /// Removes up to `out.len()` entries into the front of `out`; returns how many.
    #[inline]
    pub(crate) fn dequeue_burst(&self, out: &mut [u32]) -> usize {
        let want = out.len() as u32;
        if want == 0 {
            return 0;
        }
        let mut head = self.cons_head.0.load(Ordering::Relaxed);
        let n = loop {
            let prod_tail = self.prod_tail.0.load(Ordering::Acquire);
            let avail = prod_tail.wrapping_sub(head);
            // A stale `head` can make `avail` look huge; the CAS below then fails and retries.
            let n = avail.min(want);
            if n == 0 || avail > self.mask + 1 {
                if avail > self.mask + 1 {
                    head = self.cons_head.0.load(Ordering::Relaxed);
                    continue;
                }
                return 0;
            }
            match self.cons_head.0.compare_exchange_weak(
                head,
                head.wrapping_add(n),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break n,
                Err(h) => head = h,
            }
        };
        let (start, first) = self.segments(head, n as usize);
        let base = UnsafeCell::raw_get(self.slots.as_ptr()) as *const u32;
        // SAFETY: we reserved slots head..head+n, which producers published (acquire of
        // prod_tail above) and cannot reuse before we move cons_tail.
        unsafe {
            copy_u32(base.add(start), out.as_mut_ptr(), first);
            copy_u32(base, out.as_mut_ptr().add(first), n as usize - first);
        }
        wait_turn(&self.cons_tail.0, head);
        // Release: our slot reads happen before producers may reuse the slots.
        self.cons_tail
            .0
            .store(head.wrapping_add(n), Ordering::Release);
        n as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn fifo_and_capacity() {
        let r = IndexRing::new(6);
        assert_eq!(r.capacity(), 8);
        assert!(r.enqueue_bulk(&[1, 2, 3, 4, 5]));
        assert!(!r.enqueue_bulk(&[6, 7, 8, 9]), "only 3 slots left");
        assert!(r.enqueue_bulk(&[6, 7, 8]));
        assert_eq!(r.len(), 8);
        let mut out = [0u32; 3];
        assert_eq!(r.dequeue_burst(&mut out), 3);
        assert_eq!(out, [1, 2, 3]);
        let mut out = [0u32; 10];
        assert_eq!(r.dequeue_burst(&mut out), 5);
        assert_eq!(&out[..5], &[4, 5, 6, 7, 8]);
        assert_eq!(r.dequeue_burst(&mut out), 0);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn wraps_many_times() {
        let r = IndexRing::new(4);
        let mut out = [0u32; 3];
        for i in 0..10_000u32 {
            assert!(r.enqueue_bulk(&[i, i + 1, i + 2]));
            assert_eq!(r.dequeue_burst(&mut out), 3);
            assert_eq!(out, [i, i + 1, i + 2]);
        }
    }

    #[test]
    fn concurrent_producers_and_consumers_lose_nothing() {
        const N: u32 = 4096;
        let r = Arc::new(IndexRing::new(N));
        let vals: Vec<u32> = (0..N).collect();
        assert!(r.enqueue_bulk(&vals));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u32; 7];
                    for _ in 0..2000 {
                        let n = r.dequeue_burst(&mut buf);
                        assert!(r.enqueue_bulk(&buf[..n]));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut all = vec![0u32; N as usize + 1];
        assert_eq!(r.dequeue_burst(&mut all), N as usize);
        all.truncate(N as usize);
        all.sort_unstable();
        assert_eq!(all, vals);
    }
}
