//! Judged receive: the application sees each good frame in its receive buffer, in chunks of up
//! to 32, before the driver decides anything about the buffer. A frame it drops never becomes
//! a [`Packet`]: its buffer is re-armed in its own descriptor (no cache swap, no pool traffic).
//! A frame it keeps is delivered exactly as [`IxgbeVf::rx_burst`](crate::IxgbeVf::rx_burst)
//! does, with a fresh buffer from the queue's cache in its descriptor.

use super::gather::{rearm_run, Delivery, Gather};
use super::RxQueue;
use crate::batch::PacketBatch;
use crate::mempool::Packet;
use crate::regs::*;
use floodgate_vfio::Bar;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::atomic::{fence, Ordering};

/// Most frames in one [`RxChunk`] (one bit each in a [`RxJudge`]'s drop mask).
pub const RX_CHUNK: usize = 32;

/// Frames of a receive burst as a [`RxJudge`] sees them: up to [`RX_CHUNK`] good frames (bad
/// descriptors were already counted and recycled), in ring order, in place in their buffers.
/// All frames of a chunk come from buffers with the same headroom size.
pub struct RxChunk<'a> {
    n: usize,
    headroom: usize,
    pub(super) data: [MaybeUninit<*const u8>; RX_CHUNK],
    pub(super) len: [MaybeUninit<u32>; RX_CHUNK],
    /// Ring slot of each frame (judged receive only).
    pub(super) slot: [MaybeUninit<u32>; RX_CHUNK],
    _frames: PhantomData<&'a [u8]>,
}

impl<'a> RxChunk<'a> {
    fn empty(headroom: usize) -> RxChunk<'a> {
        RxChunk {
            n: 0,
            headroom,
            data: [const { MaybeUninit::uninit() }; RX_CHUNK],
            len: [const { MaybeUninit::uninit() }; RX_CHUNK],
            slot: [const { MaybeUninit::uninit() }; RX_CHUNK],
            _frames: PhantomData,
        }
    }

    /// A chunk over the first packets of `pkts`: at most [`RX_CHUNK`], and only as many as
    /// share the first packet's headroom size (see [`RxChunk::len`] for how many were taken).
    /// For backends that receive into [`Packet`]s first and judge them afterwards.
    pub fn from_packets(pkts: &'a [Packet]) -> RxChunk<'a> {
        let headroom = pkts.first().map_or(0, |p| p.headroom().len());
        let mut c = RxChunk::empty(headroom);
        for p in pkts.iter().take(RX_CHUNK) {
            if p.headroom().len() != headroom {
                break;
            }
            c.data[c.n].write(p.data().as_ptr());
            c.len[c.n].write(p.len() as u32);
            c.n += 1;
        }
        c
    }

    /// Number of frames.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the chunk holds no frame.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The bytes of frame `i` (empty when `i >= len()`).
    #[inline(always)]
    pub fn frame(&self, i: usize) -> &[u8] {
        if i >= self.n {
            return &[];
        }
        // SAFETY: entries below n were written when the frame was added. The pointer and
        // length describe a frame inside a buffer that stays ours (completed by the device,
        // not re-armed, or owned by a Packet borrowed for 'a) while the chunk exists.
        unsafe {
            std::slice::from_raw_parts(
                self.data[i].assume_init(),
                self.len[i].assume_init() as usize,
            )
        }
    }

    /// Frames `i..i + 4` at once, with one bounds check (`None` when the chunk holds fewer).
    #[inline(always)]
    pub fn frames4(&self, i: usize) -> Option<[&[u8]; 4]> {
        if i.checked_add(4)? > self.n {
            return None;
        }
        Some(std::array::from_fn(|k| {
            // SAFETY: i + k < n: as in `frame`.
            unsafe {
                std::slice::from_raw_parts(
                    self.data[i + k].assume_init(),
                    self.len[i + k].assume_init() as usize,
                )
            }
        }))
    }

    /// The headroom in front of frame `i` (the application's metadata area; empty when
    /// `i >= len()`). The driver never writes it.
    #[inline(always)]
    pub fn headroom(&self, i: usize) -> &[u8] {
        if i >= self.n {
            return &[];
        }
        // SAFETY: as in `frame`; the `headroom` bytes in front of the data belong to the same
        // buffer (the pool's layout guarantees data_off >= headroom).
        unsafe {
            std::slice::from_raw_parts(self.data[i].assume_init().sub(self.headroom), self.headroom)
        }
    }
}

/// Decides which frames of a received chunk are dropped before they become packets.
pub trait RxJudge {
    /// Returns the drop mask of `chunk`: bit `i` set drops frame `i`. Bits at or above
    /// `chunk.len()` are ignored.
    fn judge(&mut self, chunk: &RxChunk<'_>) -> u32;
}

impl<F: FnMut(&RxChunk<'_>) -> u32> RxJudge for F {
    #[inline(always)]
    fn judge(&mut self, chunk: &RxChunk<'_>) -> u32 {
        self(chunk)
    }
}

/// What one judged receive burst did. Every good frame is either kept (appended to the batch)
/// or dropped; descriptors the device marked bad are counted in [`crate::RxStats`] only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxJudged {
    /// Good frames handed to the judge: `kept + dropped`.
    pub received: usize,
    /// Frames appended to the batch.
    pub kept: usize,
    /// Frames the judge dropped.
    pub dropped: usize,
    /// Bytes of the received frames (kept and dropped, without CRC).
    pub bytes: u64,
}

/// Mask of the first `n` bits (`n <= 32`).
#[inline(always)]
fn low_bits(n: usize) -> u32 {
    if n >= 32 {
        u32::MAX
    } else {
        (1u32 << n) - 1
    }
}

impl<B: Bar> RxQueue<B> {
    /// Receives up to `batch.capacity()` descriptors, judging the good frames in chunks. See
    /// `IxgbeVf::rx_burst_judged`.
    #[inline]
    pub(crate) fn burst_judged<J: RxJudge + ?Sized>(
        &mut self,
        batch: &mut PacketBatch,
        judge: &mut J,
    ) -> RxJudged {
        let mut res = RxJudged::default();
        let budget = batch.capacity().min(self.mask as usize);
        let want = budget.min(batch.free_slots());
        if want == 0 {
            return res;
        }
        if self.cache_len < want {
            self.refill_cache();
            if self.cache_len == 0 {
                if self.status(self.next) & RXD_STAT_DD != 0 {
                    self.stats.no_buffers += 1;
                }
                return res;
            }
        }
        let mut next = self.next;
        let mut left = budget;
        if self.discarding {
            let st = self.status(next);
            if st & RXD_STAT_DD != 0 {
                let c = self.reject_from(next, st, left);
                next = (next + c as u32) & self.mask;
                left -= c;
            }
        }
        // SAFETY: the pool core outlives the queue (we hold a Mempool handle).
        let headroom = unsafe { self.core.as_ref() }.headroom;
        let mut chunk = RxChunk::empty(headroom);
        let ring = self.ring.as_ptr();
        let (mask, data_room, stride, va0) = (self.mask, self.data_room, self.stride, self.va0);
        let bufs = self.bufs.as_ptr();
        let mut g = self.gather.start();
        // Bursts of fewer than four never take the vector path: no set-up or sum for them.
        let vector = Gather::VECTOR && budget >= 4;
        let mut ended = false;
        while left > 0 && !ended {
            let room = RX_CHUNK
                .min(left)
                .min(batch.free_slots())
                .min(self.cache_len);
            if room == 0 {
                break;
            }
            // Gather up to `room` good frames, in runs of slots that do not wrap; bad
            // descriptors go to the cold path as in `burst` (counted, re-armed with their own
            // buffer) and end the run.
            let mut k = 0;
            while k < room && left > 0 {
                let run = (room - k).min(left).min((mask - next) as usize + 1);
                let s0 = next as usize;
                let mut j = 0;
                let mut bad = None;
                'run: while j < run {
                    // Whole groups of four good descriptors at a time.
                    if vector {
                        // SAFETY: s0 + run <= size; k + run <= room <= RX_CHUNK.
                        let t = unsafe { g.take(ring, bufs, s0 + j, run - j, &mut chunk, k + j) };
                        #[cfg(test)]
                        {
                            self.vector_groups += t as u64 / 4;
                        }
                        j += t;
                    }
                    // One by one: the group that was not all good (up to its first bad
                    // descriptor), or the last descriptors of the run.
                    let stop = (j + 4).min(run);
                    while j < stop {
                        let s = s0 + j;
                        // SAFETY: s0 + run <= size: descriptor s of our ring (facts §6.1
                        // write-back: status/errors in dword 2, length in bits 15:0 of dword 3),
                        // volatile because the device writes it.
                        let d = unsafe { ring.add(2 * s) };
                        // SAFETY: as above.
                        let st = unsafe { (d.add(1) as *const u32).read_volatile() };
                        let good = st & (RXD_STAT_DD | RXD_STAT_EOP | RXD_ERR_MASK)
                            == RXD_STAT_DD | RXD_STAT_EOP;
                        // Read the rest of the descriptor only after seeing DD.
                        fence(Ordering::Acquire);
                        // SAFETY: as above.
                        let len = unsafe { (d.add(1) as *const u16).add(2).read_volatile() } as u32;
                        if !good || len.wrapping_sub(1) >= data_room {
                            bad = Some(st);
                            break 'run;
                        }
                        // SAFETY: s < size = bufs.len(); k + j < room <= RX_CHUNK.
                        unsafe {
                            let buf = *bufs.add(s);
                            let e = k + j;
                            chunk
                                .data
                                .get_unchecked_mut(e)
                                .write(va0.wrapping_add(buf as usize * stride));
                            chunk.len.get_unchecked_mut(e).write(len);
                            chunk.slot.get_unchecked_mut(e).write(s as u32);
                        }
                        res.bytes += u64::from(len);
                        j += 1;
                    }
                }
                k += j;
                left -= j;
                next = (next + j as u32) & mask;
                if let Some(st) = bad {
                    if st & RXD_STAT_DD == 0 {
                        ended = true;
                        break;
                    }
                    let c = self.reject_from(next, st, left);
                    next = (next + c as u32) & mask;
                    left -= c;
                }
            }
            if k == 0 {
                continue;
            }
            chunk.n = k;
            // Never trust the judge either: bits past the chunk are ignored.
            let drop = judge.judge(&chunk) & low_bits(k);
            let kept = self.settle(&chunk, drop, batch);
            res.received += k;
            res.kept += kept;
            res.dropped += k - kept;
            // Written back after every chunk, so a judge that panics leaves the queue
            // consistent (the settled descriptors are behind `next`; the next burst writes the
            // tail for them).
            self.next = next;
        }
        if vector {
            res.bytes += g.bytes();
        }
        let seen = budget - left;
        if seen > 0 {
            self.hand_back(next, seen);
            self.stats.packets += res.received as u64;
            self.stats.bytes += res.bytes;
            self.stats.judge_dropped += res.dropped as u64;
        }
        res
    }

    /// Re-arms the descriptors of a judged chunk: a dropped frame's with its own buffer, a kept
    /// frame's with a fresh buffer from the cache, the kept frame becoming a packet at the end
    /// of `batch`. The caller made sure the chunk is not empty and the batch and the cache can
    /// take every frame of it. Returns how many were kept.
    #[inline(always)]
    fn settle(&mut self, chunk: &RxChunk<'_>, drop: u32, batch: &mut PacketBatch) -> usize {
        let k = chunk.n;
        let bufs = self.bufs.as_mut_ptr();
        let (iova0, stride, core) = (self.iova0, self.stride, self.core);
        let ring = self.ring.as_ptr();
        let all = low_bits(k);
        let drop = drop & all;
        // A dropped frame's descriptor gets its own buffer back, header address 0, which clears
        // DD (facts §6.1). The flood case (everything dropped) walks the chunk straight.
        // The buffer's device address comes from the frame's data pointer: the pool maps its
        // whole region at one offset (`iova = host address + iova_delta` for every byte), and
        // iova0 and va0 are buffer 0's data in the two spaces, so the delta is theirs.
        let delta = iova0.wrapping_sub(self.va0 as u64);
        let rearm = |i: usize| {
            // SAFETY: i < k: entries written by the gather loop; the slot is one of our ring's
            // (< size), so the descriptor is in bounds. The data pointer is that of the buffer
            // armed in the slot (`va0 + bufs[s] * stride`).
            unsafe {
                let s = chunk.slot.get_unchecked(i).assume_init() as usize;
                let data = chunk.data.get_unchecked(i).assume_init();
                let d = ring.add(2 * s);
                d.write_volatile((data as u64).wrapping_add(delta));
                d.add(1).write_volatile(0);
            }
        };
        // SAFETY: 0 and k - 1 < k: entries written by the gather loop (k >= 1).
        let (first, last) = unsafe {
            (
                chunk.slot.get_unchecked(0).assume_init(),
                chunk.slot.get_unchecked(k - 1).assume_init(),
            )
        };
        // Slots increase along the chunk except across the ring's end, so when the last is
        // k - 1 after the first the chunk is slots first..=last: `straight` (with the vector
        // paths on). Then, when most frames are dropped (a flood), every descriptor of the
        // chunk is re-armed with its own buffer in one straight pass, and the kept frames'
        // descriptors are armed again below with their fresh buffers (the device owns none of
        // them before the tail moves).
        let dropped = drop.count_ones() as usize;
        let straight = k >= 4 && self.gather.on() && last.wrapping_sub(first) as usize == k - 1;
        if straight && 2 * dropped > k {
            // SAFETY: slots first..first + k are in the ring (first + k - 1 = last < size),
            // completed and not handed back; data[..k] written by the gather loop.
            unsafe {
                rearm_run(
                    ring.add(2 * first as usize),
                    chunk.data.as_ptr() as *const *const u8,
                    k,
                    delta,
                )
            };
        } else if drop == all {
            (0..k).for_each(rearm);
        } else {
            let mut m = drop;
            while m != 0 {
                rearm(m.trailing_zeros() as usize);
                m &= m - 1;
            }
        }
        if drop == all {
            return 0;
        }
        let keep = !drop & all;
        let kept = k - dropped;
        // The caller checked k <= cache_len and k <= free slots: a cache entry and a batch slot
        // for every kept frame.
        let out = batch.spare_ptr();
        let mut cache_len = self.cache_len;
        let cache = self.cache.as_mut_ptr();
        // Nothing or little dropped and the slots follow each other (see above): the frames
        // four at a time as if all were kept, then the few dropped ones taken back out.
        let mut vector = 0;
        let mut o = 0;
        if straight && 8 * dropped <= k {
            // SAFETY: first < size, so these stay inside the ring, `bufs` and the cache
            // (cache_len <= cache.len()).
            let (desc, first_buf, cache_top) = unsafe {
                (
                    ring.add(2 * first as usize),
                    bufs.add(first as usize),
                    cache.add(cache_len),
                )
            };
            let to = Delivery {
                desc,
                bufs: first_buf,
                cache_top,
                out,
            };
            // SAFETY: the chunk's k frames are slots first..first + k (consecutive), with
            // k <= cache_len entries below the top and k free batch slots at `out`.
            vector = unsafe { self.gather.deliver_run(chunk, k, &to) };
            cache_len -= vector;
            // Packets 0..vector are frames 0..vector. Each dropped one among them gets its
            // own buffer back in its slot (the fresh one returns to the cache) and its packet
            // is squeezed out: the packets after it move down (bit copies in the batch's
            // spare room; the packet is not dropped, its buffer is in the ring again).
            let mut m = drop & low_bits(vector);
            let mut from = 0;
            while m != 0 {
                let i = m.trailing_zeros() as usize;
                // SAFETY: o <= from <= i < vector: packets written by deliver_run, moved
                // inside the spare room (ptr::copy allows overlap). Slot first + i < size is
                // frame i's. The cache entry at cache_len was taken by deliver_run
                // (cache_len < the old cache_len <= cache.len()).
                unsafe {
                    if o != from {
                        std::ptr::copy(out.add(from), out.add(o), i - from);
                    }
                    o += i - from;
                    let s = first as usize + i;
                    *cache.add(cache_len) = *bufs.add(s);
                    cache_len += 1;
                    *bufs.add(s) = (*out.add(i)).buffer_index();
                }
                rearm(i);
                from = i + 1;
                m &= m - 1;
            }
            if o != from {
                // SAFETY: as above.
                unsafe { std::ptr::copy(out.add(from), out.add(o), vector - from) };
            }
            o += vector - from;
        }
        // Frame i becomes the batch's spare packet o.
        let mut deliver = |i: usize, o: usize| {
            cache_len -= 1;
            // SAFETY: i < k: entries written by the gather loop, slot s < size. cache_len <
            // cache.len() (it was at most that before the decrement); `out + o` is a free slot
            // of the batch (o < kept <= free slots). `buf` was armed in slot s and completed by
            // the device, so it is ours to hand out; len <= data_room was checked by the gather
            // loop. Descriptor s gets the fresh buffer, header address 0 (clears DD; facts
            // §6.1).
            unsafe {
                let s = chunk.slot.get_unchecked(i).assume_init() as usize;
                let len = chunk.len.get_unchecked(i).assume_init();
                let data = chunk.data.get_unchecked(i).assume_init();
                let buf = *bufs.add(s);
                let nb = *cache.add(cache_len);
                *bufs.add(s) = nb;
                out.add(o)
                    .write(Packet::from_parts(core, data as *mut u8, buf, len));
                let d = ring.add(2 * s);
                d.write_volatile(iova0.wrapping_add(nb as u64 * stride as u64));
                d.add(1).write_volatile(0);
            }
        };
        // The other kept frames (all of them, or those after the vector part) one by one.
        let mut m = (u64::from(keep) >> vector) as u32;
        while m != 0 {
            deliver(vector + m.trailing_zeros() as usize, o);
            m &= m - 1;
            o += 1;
        }
        debug_assert_eq!(o, kept);
        self.cache_len = cache_len;
        // SAFETY: the first `kept` spare slots were written above.
        unsafe { batch.add_len(kept) };
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rx::tests::{fixture, Fixture, GOOD};

    /// Records every chunk it sees (lengths and first bytes) and drops by a rule.
    struct Rec<F: FnMut(usize, &[u8]) -> bool> {
        chunks: Vec<usize>,
        firsts: Vec<u8>,
        drop: F,
        extra: u32,
    }

    impl<F: FnMut(usize, &[u8]) -> bool> RxJudge for Rec<F> {
        fn judge(&mut self, c: &RxChunk<'_>) -> u32 {
            self.chunks.push(c.len());
            let mut m = self.extra;
            for i in 0..c.len() {
                let f = c.frame(i);
                let h = c.headroom(i);
                assert_eq!(h.len(), crate::DEFAULT_HEADROOM);
                // SAFETY: only comparing addresses.
                assert_eq!(unsafe { h.as_ptr().add(h.len()) }, f.as_ptr());
                self.firsts.push(f.first().copied().unwrap_or(0));
                if (self.drop)(self.firsts.len() - 1, f) {
                    m |= 1 << i;
                }
            }
            assert!(c.frame(c.len()).is_empty() && c.headroom(40).is_empty());
            m
        }
    }

    fn rec<F: FnMut(usize, &[u8]) -> bool>(drop: F) -> Rec<F> {
        Rec {
            chunks: Vec::new(),
            firsts: Vec::new(),
            drop,
            extra: 0,
        }
    }

    /// Every buffer is in exactly one place: the pool, the queue (ring and cache), a batch.
    fn conserved(f: &Fixture, batches: &[&PacketBatch], total: u32) {
        let held: usize = batches.iter().map(|b| b.len()).sum();
        assert_eq!(
            u64::from(f.pool.available()) + f.q.buffers_held() + held as u64,
            u64::from(total)
        );
        let mut armed: Vec<u64> = (0..f.q.size).map(|s| f.armed(s)).collect();
        let delivered: Vec<u64> = batches
            .iter()
            .flat_map(|b| b.iter())
            .map(|p| p.iova())
            .collect();
        for a in &armed {
            assert!(!delivered.contains(a), "a delivered buffer is armed");
        }
        armed.sort_unstable();
        armed.dedup();
        assert_eq!(armed.len(), f.q.size as usize, "two slots share a buffer");
    }

    fn status(f: &Fixture, slot: u32) -> u64 {
        // SAFETY: inside the ring.
        unsafe { f.qw(slot, 1).read_volatile() }
    }

    #[test]
    fn all_dropped_frames_keep_their_buffers_in_their_descriptors() {
        let mut f = fixture(64, 256);
        let before: Vec<u64> = (0..64).map(|s| f.armed(s)).collect();
        for s in 0..20 {
            f.complete(s, GOOD, 60 + s as u16, s as u8);
        }
        f.q.refill_cache();
        let (pool_before, cache_before) = (f.pool.available(), f.q.cache_len);
        let mut b = PacketBatch::new(32);
        let mut j = rec(|_, _| true);
        let r = f.q.burst_judged(&mut b, &mut j);
        assert_eq!(
            r,
            RxJudged {
                received: 20,
                kept: 0,
                dropped: 20,
                bytes: (60..80).sum()
            }
        );
        assert!(b.is_empty());
        assert_eq!(j.chunks, vec![20]);
        assert_eq!(
            j.firsts,
            (0..20).collect::<Vec<u8>>(),
            "ring order, in place"
        );
        for s in 0..64u32 {
            assert_eq!(f.armed(s), before[s as usize], "slot {s}: same buffer");
            assert_eq!(status(&f, s), 0, "slot {s}: DD cleared");
        }
        assert_eq!(
            (f.pool.available(), f.q.cache_len),
            (pool_before, cache_before),
            "no pool or cache traffic"
        );
        assert_eq!(f.tails(), vec![19]);
        let s = f.q.stats;
        assert_eq!((s.descriptors, s.packets, s.judge_dropped), (20, 20, 20));
        assert_eq!(s.bytes, (60..80).sum::<u64>());
        assert_eq!(s.descriptors, s.packets + s.dropped());
        // Nothing more: no tail write for an empty burst.
        assert_eq!(f.q.burst_judged(&mut b, &mut j), RxJudged::default());
        assert_eq!(f.tails().len(), 1);
        conserved(&f, &[&b], 256);
    }

    #[test]
    fn none_dropped_delivers_as_rx_burst_does() {
        let mut f = fixture(64, 256);
        let before: Vec<u64> = (0..40).map(|s| f.armed(s)).collect();
        for s in 0..40 {
            f.complete(s, GOOD, 100 + s as u16, s as u8);
        }
        let mut b = PacketBatch::new(64);
        let mut j = rec(|_, _| false);
        let r = f.q.burst_judged(&mut b, &mut j);
        assert_eq!((r.received, r.kept, r.dropped), (40, 40, 0));
        assert_eq!(j.chunks, vec![32, 8]);
        let lens: Vec<usize> = b.iter().map(|p| p.len()).collect();
        assert_eq!(lens, (100..140).collect::<Vec<usize>>());
        for (i, p) in b.iter().enumerate() {
            assert_eq!(p.iova(), before[i], "the received buffer is the packet's");
            assert!(p.data().iter().all(|&x| x == i as u8));
            assert_ne!(f.armed(i as u32), before[i], "a fresh buffer in its place");
        }
        assert_eq!(f.tails(), vec![39]);
        assert_eq!((f.q.stats.packets, f.q.stats.judge_dropped), (40, 0));
        conserved(&f, &[&b], 256);
    }

    #[test]
    fn bad_descriptors_mid_chunk_and_a_wrap_inside_a_chunk() {
        let mut f = fixture(64, 512);
        let mut b = PacketBatch::new(64);
        for s in 0..56 {
            f.complete(s, GOOD, 64, 0);
        }
        f.q.burst(&mut b);
        b.clear();
        // Slots 56..64 then 0..8, bad ones between good ones on both sides of the wrap.
        let plan: [(u32, u32, u16); 16] = [
            (56, GOOD, 70),
            (57, GOOD | RXD_ERR_RXE, 71),
            (58, GOOD, 72),
            (59, GOOD, 0),
            (60, GOOD, 74),
            (61, RXD_STAT_DD, 2048),
            (62, GOOD, 10), // end of the multi-buffer frame
            (63, GOOD, 77),
            (0, GOOD, 78),
            (1, GOOD, 3000),
            (2, GOOD, 80),
            (3, GOOD | RXD_ERR_IPE, 81),
            (4, GOOD, 82),
            (5, GOOD, 83),
            (6, GOOD, 84),
            (7, GOOD, 85),
        ];
        let before: Vec<u64> = (0..64).map(|s| f.armed(s)).collect();
        for &(slot, st, len) in &plan {
            f.complete(slot, st, len, len as u8);
        }
        // Drop every other good frame.
        let mut j = rec(|i, _| i % 2 == 0);
        let r = f.q.burst_judged(&mut b, &mut j);
        let good = [70u8, 72, 74, 77, 78, 80, 82, 83, 84, 85];
        assert_eq!(
            j.chunks,
            vec![10],
            "one chunk across the bad ones and the wrap"
        );
        assert_eq!(j.firsts, good);
        assert_eq!((r.received, r.kept, r.dropped), (10, 5, 5));
        let lens: Vec<u8> = b.iter().map(|p| p.len() as u8).collect();
        assert_eq!(lens, vec![72, 77, 80, 83, 85]);
        for &(slot, st, len) in &plan {
            let i = good
                .iter()
                .position(|&g| g == len as u8 && st == GOOD && len < 2048);
            let same = f.armed(slot) == before[slot as usize];
            match i {
                Some(i) if i % 2 == 1 => assert!(!same, "slot {slot}: kept, new buffer"),
                _ => assert!(same, "slot {slot}: dropped or bad, own buffer"),
            }
            assert_eq!(status(&f, slot), 0);
        }
        let s = f.q.stats;
        assert_eq!(s.descriptors, 56 + 16);
        assert_eq!(
            (s.err_mac, s.err_length, s.err_multiseg, s.err_ip_csum),
            (1, 2, 2, 1)
        );
        assert_eq!(s.descriptors, s.packets + s.dropped());
        assert_eq!(s.judge_dropped, 5);
        assert_eq!(*f.tails().last().unwrap(), 7);
        assert_eq!(f.tails().len(), 2, "one tail write per burst");
        conserved(&f, &[&b], 512);
    }

    #[test]
    fn chunks_follow_the_free_slots_and_the_burst_size() {
        let mut f = fixture(128, 1024);
        for s in 0..100 {
            f.complete(s, GOOD, 60, s as u8);
        }
        // A batch of 8 with 6 held: chunks no larger than the free slots.
        let mut b = PacketBatch::new(8);
        assert_eq!(f.pool.alloc_into(&mut b), 8);
        drop(b.pop());
        drop(b.pop());
        let mut j = rec(|i, _| i != 0 && i != 5);
        let r = f.q.burst_judged(&mut b, &mut j);
        assert_eq!(
            j.chunks,
            vec![2, 1, 1, 1, 1],
            "room shrinks as frames are kept"
        );
        assert_eq!((r.received, r.kept, b.len()), (6, 2, 8));
        assert_eq!(
            f.q.burst_judged(&mut b, &mut j),
            RxJudged::default(),
            "full"
        );
        assert_eq!(f.tails(), vec![5]);
        // A batch of 64 takes 64 descriptors in two chunks, everything dropped.
        let mut big = PacketBatch::new(64);
        let mut j = rec(|_, _| true);
        let r = f.q.burst_judged(&mut big, &mut j);
        assert_eq!((j.chunks, r.received), (vec![32, 32], 64));
        let r = f.q.burst_judged(&mut big, &mut rec(|_, _| true));
        assert_eq!(r.received, 30, "the rest");
        // Chunks of every size from 1 to 32, half of each kept.
        let mut slot = 100u32;
        let mut held = PacketBatch::new(1024);
        for n in 1..=32u32 {
            for i in 0..n {
                f.complete(slot, GOOD, 64, i as u8);
                slot = (slot + 1) % 128;
            }
            let mut j = rec(|_, f| f[0] % 2 == 0);
            let r = f.q.burst_judged(&mut big, &mut j);
            assert_eq!(j.chunks, vec![n as usize]);
            assert_eq!((r.received, r.kept), (n as usize, n as usize / 2));
            assert!(big.iter().all(|p| p.data()[0] % 2 == 1));
            for p in big.drain() {
                held.push(p).ok().unwrap();
            }
        }
        let s = f.q.stats;
        assert_eq!(s.descriptors, s.packets + s.dropped());
        assert_eq!(s.descriptors, 100 + (1..=32).sum::<u64>());
        conserved(&f, &[&b, &held], 1024);
    }

    #[test]
    fn bits_past_the_chunk_are_ignored() {
        let mut f = fixture(64, 256);
        for s in 0..3 {
            f.complete(s, GOOD, 60, s as u8);
        }
        let mut b = PacketBatch::new(32);
        let mut j = rec(|i, _| i > 0);
        j.extra = 0xFFFF_FFF0;
        let r = f.q.burst_judged(&mut b, &mut j);
        assert_eq!((r.received, r.kept, r.dropped), (3, 1, 2));
        assert_eq!(b.as_slice()[0].data()[0], 0);
        conserved(&f, &[&b], 256);
    }

    #[test]
    fn no_buffers_leaves_the_descriptors_for_later() {
        let mut f = fixture(64, 64);
        f.complete(0, GOOD, 60, 0);
        let mut b = PacketBatch::new(8);
        let mut j = rec(|_, _| true);
        assert_eq!(f.q.burst_judged(&mut b, &mut j), RxJudged::default());
        assert!(j.chunks.is_empty());
        assert_eq!((f.q.stats.no_buffers, f.q.stats.descriptors), (1, 0));
        assert!(f.tails().is_empty());
    }

    #[test]
    fn a_multi_buffer_frame_split_across_bursts_is_dropped_whole() {
        let mut f = fixture(64, 256);
        f.complete(0, RXD_STAT_DD, 2048, 0);
        let mut b = PacketBatch::new(8);
        let mut j = rec(|_, _| false);
        assert_eq!(f.q.burst_judged(&mut b, &mut j).received, 0);
        assert!(f.q.discarding);
        f.complete(1, GOOD, 10, 1); // EOP of the same frame
        f.complete(2, GOOD, 60, 2); // a new frame
        let r = f.q.burst_judged(&mut b, &mut j);
        assert_eq!((r.received, r.kept), (1, 1));
        assert_eq!(j.firsts, vec![2]);
        assert_eq!(f.q.stats.err_multiseg, 2);
        assert_eq!(f.tails(), vec![0, 2]);
        conserved(&f, &[&b], 256);
    }

    #[test]
    fn random_bursts_count_every_frame_once_and_lose_no_buffer() {
        let mut f = fixture(128, 1024);
        let mut held = PacketBatch::new(1024);
        let mut b = PacketBatch::new(48);
        let mut x = 0x2545_F491u32;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let mut slot = 0u32;
        let mut pending = 0u32;
        let (mut kept, mut dropped) = (0u64, 0u64);
        for _ in 0..300 {
            // Complete a few descriptors (some bad), at most what the ring holds.
            let k = rnd() % 40;
            for _ in 0..k {
                if pending >= 120 {
                    break;
                }
                let r = rnd();
                let (st, len) = match r % 16 {
                    0 => (GOOD | RXD_ERR_RXE, 64),
                    1 => (GOOD, 0),
                    2 => (RXD_STAT_DD, 2048),
                    _ => (GOOD, 60 + (r >> 8) as u16 % 1400),
                };
                f.complete(slot, st, len, r as u8);
                slot = (slot + 1) % 128;
                pending += 1;
            }
            let drop_bits = rnd();
            let mut j = |c: &RxChunk<'_>| {
                assert!(!c.is_empty() && c.len() <= RX_CHUNK);
                drop_bits | rnd() & 1
            };
            let tails = f.tails().len();
            let before = f.q.stats.descriptors;
            let r = f.q.burst_judged(&mut b, &mut j);
            let seen = f.q.stats.descriptors - before;
            pending -= seen as u32;
            assert_eq!(f.tails().len(), tails + usize::from(seen > 0));
            assert_eq!(r.received, r.kept + r.dropped);
            assert_eq!(b.len(), r.kept);
            kept += r.kept as u64;
            dropped += r.dropped as u64;
            // Keep some packets around, give the rest back.
            if rnd() % 2 == 0 && held.free_slots() >= b.len() {
                for p in b.drain() {
                    held.push(p).ok().unwrap();
                }
            } else {
                b.clear();
            }
            if held.len() > 600 {
                held.clear();
            }
            conserved(&f, &[&b, &held], 1024);
        }
        let s = f.q.stats;
        assert_eq!(s.descriptors, s.packets + s.dropped());
        assert_eq!((s.packets, s.judge_dropped), (kept + dropped, dropped));
        assert!(
            kept > 100 && dropped > 100,
            "{kept} kept, {dropped} dropped"
        );
    }
}
