//! One AF_XDP ring as the kernel lays it out: producer and consumer indices, flags, and a
//! power-of-two array of entries. The producer publishes entries with a release store of its
//! index, the consumer reads the other side's index with an acquire load; an index that moves
//! by more than the ring's size is clamped and counted.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use super::sys::Mmap;

/// One ring: producer and consumer indices, flags, and `size` entries of `T`.
pub(crate) struct Ring<T> {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    descs: NonNull<T>,
    size: u32,
    /// Entries the other side claimed beyond `size` (a kernel that breaks the protocol).
    pub(crate) overruns: u64,
    _map: Option<Mmap>,
}

impl<T: Copy> Ring<T> {
    /// # Safety
    /// The pointers must be valid, suitably aligned, and stay valid while the ring lives
    /// (`map` keeps them mapped); `descs` must have `size` entries.
    pub(crate) unsafe fn from_raw(
        base: *mut u8,
        off: &libc::xdp_ring_offset,
        size: u32,
        map: Option<Mmap>,
    ) -> Ring<T> {
        let at = |o: u64| {
            // SAFETY: the kernel's ring offsets lie inside the mapping `base` starts (the
            // caller's contract).
            NonNull::new(unsafe { base.add(o as usize) }).expect("mapping is not null")
        };
        Ring {
            producer: at(off.producer).cast(),
            consumer: at(off.consumer).cast(),
            flags: at(off.flags).cast(),
            descs: at(off.desc).cast(),
            size,
            overruns: 0,
            _map: map,
        }
    }

    fn prod(&self) -> &AtomicU32 {
        // SAFETY: valid for the ring's life (from_raw's contract).
        unsafe { self.producer.as_ref() }
    }
    fn cons(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { self.consumer.as_ref() }
    }

    pub(crate) fn needs_wakeup(&self) -> bool {
        // SAFETY: as above.
        let f = unsafe { self.flags.as_ref() }.load(Ordering::Relaxed);
        f & libc::XDP_RING_NEED_WAKEUP != 0
    }

    /// Producer side: how many entries we may still add.
    pub(crate) fn free(&self) -> u32 {
        let prod = self.prod().load(Ordering::Relaxed);
        let cons = self.cons().load(Ordering::Acquire);
        self.size.saturating_sub(prod.wrapping_sub(cons))
    }

    /// Producer side: entries added and not yet taken by the other side.
    pub(crate) fn pending(&self) -> u32 {
        let prod = self.prod().load(Ordering::Relaxed);
        let cons = self.cons().load(Ordering::Acquire);
        prod.wrapping_sub(cons).min(self.size)
    }

    /// Producer side: adds as many of `items` as fit; returns how many.
    pub(crate) fn produce(&mut self, items: impl Iterator<Item = T>) -> u32 {
        let free = self.free();
        let prod = self.prod().load(Ordering::Relaxed);
        let mut n = 0;
        for item in items.take(free as usize) {
            let i = prod.wrapping_add(n) & (self.size - 1);
            // SAFETY: i < size; the entry is ours until the producer index passes it.
            unsafe { self.descs.as_ptr().add(i as usize).write_volatile(item) };
            n += 1;
        }
        if n > 0 {
            self.prod().store(prod.wrapping_add(n), Ordering::Release);
        }
        n
    }

    /// Consumer side: hands up to `max` entries to `f`; returns how many.
    pub(crate) fn consume(&mut self, max: u32, mut f: impl FnMut(T)) -> u32 {
        let cons = self.cons().load(Ordering::Relaxed);
        let prod = self.prod().load(Ordering::Acquire);
        let mut avail = prod.wrapping_sub(cons);
        if avail > self.size {
            self.overruns += 1;
            avail = self.size;
        }
        let n = avail.min(max);
        for k in 0..n {
            let i = cons.wrapping_add(k) & (self.size - 1);
            // SAFETY: i < size; the entry was published by the producer (acquire above).
            f(unsafe { self.descs.as_ptr().add(i as usize).read_volatile() });
        }
        if n > 0 {
            self.cons().store(cons.wrapping_add(n), Ordering::Release);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ring memory laid out like the kernel's, on the heap.
    #[repr(C)]
    struct FakeRing<T, const N: usize> {
        producer: AtomicU32,
        consumer: AtomicU32,
        flags: AtomicU32,
        descs: [T; N],
    }

    fn fake<T: Copy, const N: usize>(init: T) -> (Box<FakeRing<T, N>>, Ring<T>) {
        let mut b = Box::new(FakeRing {
            producer: AtomicU32::new(0),
            consumer: AtomicU32::new(0),
            flags: AtomicU32::new(0),
            descs: [init; N],
        });
        let off = libc::xdp_ring_offset {
            producer: std::mem::offset_of!(FakeRing<T, N>, producer) as u64,
            consumer: std::mem::offset_of!(FakeRing<T, N>, consumer) as u64,
            flags: std::mem::offset_of!(FakeRing<T, N>, flags) as u64,
            desc: std::mem::offset_of!(FakeRing<T, N>, descs) as u64,
        };
        // SAFETY: the box outlives the ring in each test (returned together, ring dropped
        // first by declaration order at the call sites), and holds N entries.
        let r = unsafe {
            Ring::from_raw(
                &mut *b as *mut FakeRing<T, N> as *mut u8,
                &off,
                N as u32,
                None,
            )
        };
        (b, r)
    }

    #[test]
    fn full_producer_ring_takes_nothing_more() {
        let (mem, mut r) = fake::<u64, 8>(0);
        assert_eq!(r.produce(0..5u64), 5);
        assert_eq!(r.produce(10..20u64), 3, "only 3 slots left");
        assert_eq!(r.free(), 0);
        assert_eq!(r.produce(20..21u64), 0, "full ring");
        assert_eq!(mem.producer.load(Ordering::Relaxed), 8);
        // The consumer takes 2; 2 slots free again, written at the wrapped positions.
        mem.consumer.store(2, Ordering::Release);
        assert_eq!(r.produce(30..40u64), 2);
        assert_eq!(mem.descs, [30, 31, 2, 3, 4, 10, 11, 12]);
        drop(r);
    }

    #[test]
    fn empty_consumer_ring_yields_nothing() {
        let (mut mem, mut r) = fake::<u64, 4>(0);
        let mut seen = Vec::new();
        assert_eq!(r.consume(16, |a| seen.push(a)), 0);
        mem.descs = [7, 8, 9, 10];
        mem.producer.store(3, Ordering::Release);
        assert_eq!(r.consume(2, |a| seen.push(a)), 2);
        assert_eq!(r.consume(16, |a| seen.push(a)), 1);
        assert_eq!(r.consume(16, |a| seen.push(a)), 0);
        assert_eq!(seen, [7, 8, 9]);
        assert_eq!(mem.consumer.load(Ordering::Relaxed), 3);
        drop(r);
    }

    #[test]
    fn lying_producer_index_is_clamped_and_counted() {
        let (mem, mut r) = fake::<u64, 4>(1);
        mem.producer.store(1000, Ordering::Release);
        let mut n = 0;
        assert_eq!(
            r.consume(u32::MAX, |_| n += 1),
            4,
            "never more than the ring holds"
        );
        assert_eq!(r.overruns, 1);
        drop(r);
    }
}
