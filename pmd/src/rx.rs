//! Receive queue: advanced one-buffer descriptors (facts §6.1), refill with one tail write per
//! burst, and a per-queue cache of free buffer indices in front of the shared pool ring.

use crate::batch::PacketBatch;
use crate::mempool::{BulkFree, CacheSink, Mempool, Packet, PoolCore};
use crate::regs::*;
use floodgate_vfio::Bar;
use std::ptr::NonNull;
use std::sync::atomic::{fence, Ordering};

mod gather;
mod judged;
use gather::Gather;
pub use judged::{RxChunk, RxJudge, RxJudged, RX_CHUNK};

/// Buffer indices kept per queue in front of the pool's ring.
const CACHE_SIZE: usize = 512;

/// Receive counters of one queue. Every descriptor the device completes lands in exactly one of
/// `packets`, `err_length`, `err_multiseg`, `err_mac`, `err_ip_csum`, `err_l4_csum`,
/// `dropped_reset`, so `descriptors` equals their sum.
///
/// A frame with several error bits is counted once, in the first of: RXE (`err_mac`), IPE
/// (`err_ip_csum`), TCPE (`err_l4_csum`). The driver trusts the checksum error bits only where
/// the device checked (facts §6.1: IPE with IPCS, TCPE with L4CS); TCPE on IPv4/UDP with
/// checksum 0 is not an error (see `udp4_csum_zero`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxStats {
    /// Completed descriptors taken off the ring.
    pub descriptors: u64,
    /// Packets delivered to the application, including the frames a judged receive dropped in
    /// place (also counted in `judge_dropped`).
    pub packets: u64,
    /// Bytes delivered (frame bytes without CRC), judged drops included.
    pub bytes: u64,
    /// Of `packets`: frames the application's judge dropped in place during a judged receive
    /// (their buffers stayed in the ring). Not a driver drop, so not in [`RxStats::dropped`].
    pub judge_dropped: u64,
    /// Dropped: length 0 or larger than the buffer's data room.
    pub err_length: u64,
    /// Dropped: descriptors of frames spanning several buffers (DD without EOP, and the
    /// continuation descriptors up to and including EOP). Counted per descriptor.
    pub err_multiseg: u64,
    /// Dropped: RXE, any MAC error (CRC, length, symbol) (facts §6.1 bit 29).
    pub err_mac: u64,
    /// Dropped: IPv4 header checksum error (IPE, bit 31).
    pub err_ip_csum: u64,
    /// Dropped: L4 checksum error (TCPE/L4E, bit 30).
    pub err_l4_csum: u64,
    /// Delivered (also in `packets`) although TCPE was set: IPv4/UDP datagrams with checksum 0
    /// ("no checksum", RFC 768), which the 82599 flags as L4 errors (82599 Specification Update
    /// erratum 44, "Integrity Error Reported for IPv4/UDP Packets With Zero Checksum").
    pub udp_csum_zero: u64,
    /// Completed descriptors discarded while re-initialising after a PF reset.
    pub dropped_reset: u64,
    /// Bursts cut short because the mempool had no free buffers to re-arm the ring (the NIC then
    /// drops for lack of descriptors).
    pub no_buffers: u64,
}

impl RxStats {
    /// Sum of all drop buckets.
    pub fn dropped(&self) -> u64 {
        self.err_length
            + self.err_multiseg
            + self.err_mac
            + self.err_ip_csum
            + self.err_l4_csum
            + self.dropped_reset
    }

    pub(crate) fn add(&mut self, o: &RxStats) {
        self.descriptors += o.descriptors;
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.err_length += o.err_length;
        self.err_multiseg += o.err_multiseg;
        self.err_mac += o.err_mac;
        self.err_ip_csum += o.err_ip_csum;
        self.err_l4_csum += o.err_l4_csum;
        self.udp_csum_zero += o.udp_csum_zero;
        self.judge_dropped += o.judge_dropped;
        self.dropped_reset += o.dropped_reset;
        self.no_buffers += o.no_buffers;
    }
}

/// Whether a descriptor whose only error is TCPE holds an IPv4/UDP datagram with UDP checksum 0,
/// which carries no checksum (RFC 768) and so cannot have a checksum error. The 82599 sets TCPE
/// on such datagrams anyway: 82599 Specification Update erratum 44, "Integrity Error Reported for
/// IPv4/UDP Packets With Zero Checksum" (DPDK `doc/guides/nics/ixgbe.rst`; Linux `ixgbe` skips
/// TCPE on UDP for 82599 rings, `__IXGBE_RX_CSUM_UDP_ZERO_ERR`). Unlike those drivers, which then
/// trust no UDP TCPE at all on an 82599, this looks at the checksum field: a non-zero checksum
/// with TCPE is a real error on every model. `dw0` is the write-back dword 0 (packet type),
/// `data`/`len` the received frame (a VLAN tag may still be in it).
///
/// # Safety
/// `data` must point at `len` readable bytes.
#[cold]
#[inline(never)]
unsafe fn udp4_csum_zero(dw0: u32, data: *const u8, len: u32) -> bool {
    if dw0 & (RXD_PTYPE_IPV4 | RXD_PTYPE_UDP) != RXD_PTYPE_IPV4 | RXD_PTYPE_UDP {
        return false;
    }
    // SAFETY: guaranteed by the caller.
    let f = unsafe { std::slice::from_raw_parts(data, len as usize) };
    let be16 = |at: usize| f.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let l3 = match be16(12) {
        Some(0x8100) => 18,
        _ => 14,
    };
    if be16(l3 - 2) != Some(0x0800) {
        return false;
    }
    let Some(&vihl) = f.get(l3) else {
        return false;
    };
    let ihl = usize::from(vihl & 0x0F) * 4;
    if vihl >> 4 != 4 || ihl < 20 || f.get(l3 + 9) != Some(&17) {
        return false;
    }
    be16(l3 + ihl + 6) == Some(0)
}

pub(crate) struct RxQueue<B: Bar> {
    bar: B,
    pub(crate) q: u32,
    /// Descriptor ring: `size` × 16 bytes in DMA memory.
    ring: NonNull<u64>,
    pub(crate) ring_iova: u64,
    pub(crate) size: u32,
    mask: u32,
    /// Buffer index armed in each slot.
    bufs: Box<[u32]>,
    /// Next slot to look at.
    next: u32,
    /// Inside a multi-descriptor frame being discarded.
    discarding: bool,
    core: NonNull<PoolCore>,
    /// Data address of buffer 0 (host and device) and the buffer stride.
    va0: *mut u8,
    iova0: u64,
    stride: usize,
    data_room: u32,
    cache: Box<[u32]>,
    cache_len: usize,
    /// The receive paths' vector constants (see `gather`).
    gather: Gather,
    pub(crate) stats: RxStats,
    _pool: Mempool,
    /// Tests: groups of four the judged receive took with the vector path.
    #[cfg(test)]
    pub(crate) vector_groups: u64,
}

// SAFETY: the ring pointer refers to DMA memory owned by the same IxgbeVf as this queue, and the
// buffer pointers to the pool it keeps alive; the queue is used by one thread at a time (&mut).
unsafe impl<B: Bar> Send for RxQueue<B> {}

impl<B: Bar> RxQueue<B> {
    /// A queue over `size` descriptors at `ring` (host) / `ring_iova` (device), 128-byte
    /// aligned (facts §6.4; the receive paths re-arm descriptors with 16-byte stores). Takes
    /// `size` buffers from the pool; fails (returns None) if the pool has fewer.
    pub(crate) fn new(
        bar: B,
        q: u32,
        ring: NonNull<u64>,
        ring_iova: u64,
        size: u32,
        pool: &Mempool,
    ) -> Option<Self> {
        debug_assert_eq!(ring.as_ptr() as usize % 128, 0, "RX ring alignment");
        let core = pool.core();
        let mut bufs = vec![0u32; size as usize].into_boxed_slice();
        if core.alloc_bulk(&mut bufs) != size as usize {
            return None;
        }
        let mut rxq = RxQueue {
            bar,
            q,
            ring,
            ring_iova,
            size,
            mask: size - 1,
            bufs,
            next: 0,
            discarding: false,
            core: pool.core_ptr(),
            va0: core.data_ptr(0),
            iova0: core.data_iova(0),
            stride: core.stride,
            data_room: core.data_room as u32,
            cache: vec![0u32; CACHE_SIZE].into_boxed_slice(),
            cache_len: 0,
            gather: Gather::new(
                pool.core_ptr(),
                core.data_ptr(0),
                core.data_iova(0),
                core.stride,
                core.data_room as u32,
            ),
            stats: RxStats::default(),
            _pool: pool.clone(),
            #[cfg(test)]
            vector_groups: 0,
        };
        rxq.arm_all();
        Some(rxq)
    }

    /// Pointer to slot `i`'s first qword.
    #[inline(always)]
    fn desc(&self, i: u32) -> *mut u64 {
        // SAFETY: i <= mask < size, so the offset stays inside the ring.
        unsafe { self.ring.as_ptr().add(2 * i as usize) }
    }

    /// Writes the read format of slot `i`: packet buffer address, header address 0 (which also
    /// clears DD in the write-back qword; facts §6.1).
    #[inline(always)]
    fn arm(&self, i: u32, buf: u32) {
        let d = self.desc(i);
        let addr = self.iova0.wrapping_add(buf as u64 * self.stride as u64);
        // SAFETY: d points at a descriptor inside our ring (DMA memory that stays mapped).
        unsafe {
            d.write_volatile(addr);
            d.add(1).write_volatile(0);
        }
    }

    /// Re-arms every slot with the buffer it holds and starts again at slot 0 (initial bring-up
    /// and after a PF reset). Returns how many slots held completed, unread descriptors.
    pub(crate) fn arm_all(&mut self) -> u32 {
        let mut completed = 0;
        for i in 0..self.size {
            if self.status(i) & RXD_STAT_DD != 0 {
                completed += 1;
            }
            self.arm(i, self.bufs[i as usize]);
        }
        self.next = 0;
        self.discarding = false;
        completed
    }

    /// Status/error dword of slot `i` (dword 2, facts §6.1).
    #[inline(always)]
    fn status(&self, i: u32) -> u32 {
        // SAFETY: inside the ring; volatile because the device writes it.
        unsafe { (self.desc(i).add(1) as *const u32).read_volatile() }
    }

    /// Whether the next descriptor is complete (for idle waiting; no register access).
    pub(crate) fn ready(&self) -> bool {
        self.status(self.next) & RXD_STAT_DD != 0
    }

    /// Tail value after hardware enable: all slots but one belong to the device (facts §6.4).
    pub(crate) fn initial_tail(&self) -> u32 {
        self.mask
    }

    #[cold]
    fn refill_cache(&mut self) {
        // SAFETY: the pool core outlives the queue (we hold a Mempool handle).
        let core = unsafe { self.core.as_ref() };
        let n = core.alloc_bulk(&mut self.cache[self.cache_len..]);
        self.cache_len += n;
    }

    /// Classifies one descriptor that cannot be delivered (facts §6.1: never trust the device).
    #[inline(always)]
    fn classify_bad(&mut self, st: u32) {
        if self.discarding || st & RXD_STAT_EOP == 0 {
            self.stats.err_multiseg += 1;
            self.discarding = st & RXD_STAT_EOP == 0;
        } else if st & RXD_ERR_RXE != 0 {
            self.stats.err_mac += 1;
        } else if st & RXD_ERR_IPE != 0 {
            self.stats.err_ip_csum += 1;
        } else if st & RXD_ERR_L4E != 0 {
            self.stats.err_l4_csum += 1;
        } else {
            // Length 0 or past the buffer (the caller checked it; not re-read here, so a
            // device changing it between reads cannot make this inconsistent).
            self.stats.err_length += 1;
        }
    }

    /// Drops the bad descriptor at `next` (status `st` already read) and, if it belongs to a
    /// frame spanning several buffers, the following completed descriptors up to its EOP, at
    /// most `budget` in all. Every slot is re-armed with its own buffer. Returns how many
    /// descriptors were consumed: at least 1 when `st` has DD, except 0 when the descriptor
    /// turns out to be an 82599 checksum-0 UDP datagram, forgiven in place (see
    /// [`Self::forgive_udp_csum_zero`]) for the caller's next look to deliver.
    /// Whether the completed descriptor at `slot`, whose status is `st`, is an IPv4/UDP
    /// datagram with checksum 0 that an 82599 flagged with TCPE (erratum 44, see
    /// [`udp4_csum_zero`]) and nothing else. If so its TCPE bit is cleared in the write-back
    /// (the device is done with a DD descriptor until it is re-armed) and `udp_csum_zero` is
    /// counted, so the next look at the slot delivers it.
    fn forgive_udp_csum_zero(&mut self, slot: u32, st: u32) -> bool {
        if self.discarding
            || st & (RXD_STAT_DD | RXD_STAT_EOP | RXD_ERR_MASK)
                != RXD_STAT_DD | RXD_STAT_EOP | RXD_ERR_L4E
        {
            return false;
        }
        // SAFETY: slot < size: descriptor `slot` (two qwords) of our ring.
        let d = unsafe { self.ring.as_ptr().add(slot as usize * 2) } as *const u64;
        // SAFETY: `d` is descriptor `slot` of our ring: dword 0 (packet type) and the length in
        // bits 15:0 of dword 3, volatile because the device writes them.
        let (dw0, len) = unsafe {
            (
                (d as *const u32).read_volatile(),
                u32::from((d.add(1) as *const u16).add(2).read_volatile()),
            )
        };
        if len.wrapping_sub(1) >= self.data_room {
            return false;
        }
        let buf = self.bufs[slot as usize];
        let data = self.va0.wrapping_add(buf as usize * self.stride);
        // SAFETY: the device completed this buffer (DD) and len <= data_room bytes of it are
        // inside the pool's region.
        if !unsafe { udp4_csum_zero(dw0, data, len) } {
            return false;
        }
        // SAFETY: dword 2 of our descriptor (status and errors); the device does not write a
        // completed descriptor again before we re-arm it.
        unsafe { (d.add(1) as *mut u32).write_volatile(st & !RXD_ERR_L4E) };
        self.stats.udp_csum_zero += 1;
        true
    }

    #[cold]
    #[inline(never)]
    fn reject_from(&mut self, mut next: u32, mut st: u32, budget: usize) -> usize {
        fence(Ordering::Acquire);
        if self.forgive_udp_csum_zero(next, st) {
            return 0;
        }
        let mut n = 0;
        loop {
            fence(Ordering::Acquire);
            self.classify_bad(st);
            self.arm(next, self.bufs[next as usize]);
            n += 1;
            next = (next + 1) & self.mask;
            if !self.discarding || n >= budget {
                return n;
            }
            st = self.status(next);
            if st & RXD_STAT_DD == 0 {
                return n;
            }
        }
    }

    /// Receives up to `batch.free_slots()` packets. See `IxgbeVf::rx_burst`.
    #[inline]
    pub(crate) fn burst(&mut self, batch: &mut PacketBatch) -> usize {
        let mut want = batch.free_slots().min(self.mask as usize);
        if want == 0 {
            return 0;
        }
        if self.cache_len < want {
            self.refill_cache();
            if self.cache_len < want {
                if self.cache_len == 0 && self.status(self.next) & RXD_STAT_DD != 0 {
                    self.stats.no_buffers += 1;
                }
                want = self.cache_len;
            }
        }
        let mut next = self.next;
        let mut seen = 0usize;
        if self.discarding {
            let st = self.status(next);
            if st & RXD_STAT_DD != 0 {
                seen = self.reject_from(next, st, want);
                next = (next + seen as u32) & self.mask;
            }
        }
        let out0 = batch.spare_ptr();
        let mut out = out0;
        // The top `want` cache entries are reserved for this burst and handed out in ascending
        // order; those not used are moved down afterwards. SAFETY: want <= cache_len <=
        // cache.len().
        let reserved = unsafe { self.cache.as_mut_ptr().add(self.cache_len - want) };
        let bufs = self.bufs.as_mut_ptr();
        // Hot loop state in locals (the raw-pointer stores below would otherwise force the
        // compiler to reload them from `self`).
        let ring = self.ring.as_ptr();
        let (mask, data_room, stride) = (self.mask, self.data_room, self.stride);
        let (iova0, va0, core) = (self.iova0, self.va0, self.core);
        let mut left = want - seen;
        // At most MAX_BATCH (1024) packets of at most 16 KiB: fits in 32 bits.
        let mut bytes = 0u32;
        let mut g = self.gather.start();
        // Bursts of fewer than four never take the vector path: no set-up or sum for them.
        let vector = Gather::VECTOR && want >= 4;
        // The ring is walked in runs that do not wrap. Inside a run every descriptor the inner
        // loop finishes is delivered (a bad one ends the run), so descriptor, buffer slot and
        // cache entry are all addressed from one counter running from -run up to 0.
        'runs: while left > 0 {
            let run = left.min((mask - next) as usize + 1);
            // SAFETY: out and out0 point into the same spare area.
            let done = unsafe { out.offset_from(out0) } as usize;
            // SAFETY: next + run <= size, so the ends are inside or one past the ring and
            // `bufs` (both have `size` entries). `done` (delivered so far) is at most the
            // descriptors consumed so far, want - seen - left, so done + run <= want: inside
            // or one past the reserved block.
            let (dend, bend, cend) = unsafe {
                let e = next as usize + run;
                (ring.add(2 * e), bufs.add(e), reserved.add(done + run))
            };
            // j counts qwords (two per descriptor), so that the descriptor (j * 8 bytes), the
            // buffer slot and the cache entry (j * 2 bytes) share one index register.
            let mut j = -2 * run as isize;
            // Four good descriptors at a time while there are four left in the run; after a
            // group that was not all good, its four one by one first.
            let mut vector_from = j;
            while j != 0 {
                if vector && j >= vector_from && j <= -8 {
                    // SAFETY: -2 run <= j <= -8: four descriptors of this run, their buffer
                    // slots and four reserved cache entries (j * 2 bytes, as below); `out`
                    // has room for four more packets (the run's descriptors are at most the
                    // free slots left).
                    let taken = unsafe {
                        g.burst4(
                            dend.offset(j),
                            (bend as *mut u8).offset(j * 2) as *mut u32,
                            (cend as *const u8).offset(j * 2) as *const u32,
                            out,
                        )
                    };
                    if taken {
                        // SAFETY: four packets written.
                        out = unsafe { out.add(4) };
                        j += 8;
                        continue;
                    }
                    vector_from = j + 8;
                }
                // SAFETY: -2 run <= j < 0, even: a descriptor of this run.
                let d = unsafe { dend.offset(j) };
                // SAFETY: volatile because the device writes it.
                let st = unsafe { (d.add(1) as *const u32).read_volatile() };
                // One test for the common case: done, end of packet, no error bits.
                let good =
                    st & (RXD_STAT_DD | RXD_STAT_EOP | RXD_ERR_MASK) == RXD_STAT_DD | RXD_STAT_EOP;
                // Read the rest of the descriptor only after seeing DD (Linux: dma_rmb()).
                fence(Ordering::Acquire);
                // SAFETY: as above: the length, bits 15:0 of dword 3 (little-endian). Read
                // for bad descriptors too (harmless: our memory), used only when good.
                let len = unsafe { (d.add(1) as *const u16).add(2).read_volatile() } as u32;
                if !good || len.wrapping_sub(1) >= data_room {
                    // Close the run up to here, then let the cold path consume the bad
                    // descriptor (and any continuation) and start a new run after it. (Or, for
                    // an 82599 checksum-0 UDP datagram, clear its TCPE in place and consume
                    // nothing: the new run then delivers it.)
                    let x = ((j + 2 * run as isize) / 2) as usize;
                    next = (next + x as u32) & mask;
                    left -= x;
                    if st & RXD_STAT_DD == 0 {
                        break 'runs;
                    }
                    let c = self.reject_from(next, st, left);
                    next = (next + c as u32) & mask;
                    left -= c;
                    continue 'runs;
                }
                // SAFETY: -run <= j / 2 < 0: inside this run of `bufs` and of the reserved
                // cache block (see above).
                let (buf, nb) = unsafe {
                    let slot = (bend as *mut u8).offset(j * 2) as *mut u32;
                    let buf = *slot;
                    let nb = *((cend as *const u8).offset(j * 2) as *const u32);
                    *slot = nb;
                    (buf, nb)
                };
                // SAFETY: `buf` was armed in this slot and the device completed it, so the
                // buffer is ours to hand out; len <= data_room was checked above. `out` stays
                // inside the batch's spare capacity (at most want <= free_slots packets are
                // written). `d` is our descriptor: re-arm it with the new buffer, header
                // address 0 (clears DD; facts §6.1).
                unsafe {
                    out.write(Packet::from_parts(
                        core,
                        va0.wrapping_add(buf as usize * stride),
                        buf,
                        len,
                    ));
                    out = out.add(1);
                    d.write_volatile(iova0.wrapping_add(nb as u64 * stride as u64));
                    d.add(1).write_volatile(0);
                }
                bytes += len;
                j += 2;
            }
            next = (next + run as u32) & mask;
            left -= run;
        }
        self.stats.bytes += bytes as u64;
        if vector {
            self.stats.bytes += g.bytes();
        }
        // SAFETY: out and out0 point into the same spare area.
        let delivered = unsafe { out.offset_from(out0) } as usize;
        if delivered < want {
            // Unused reserved entries move down over the used ones. SAFETY: both ranges are
            // inside the reserved block of `want` entries (ptr::copy allows overlap).
            unsafe { std::ptr::copy(reserved.add(delivered), reserved, want - delivered) };
        }
        let seen = want - left;
        // SAFETY: the first `delivered` spare slots were written above.
        unsafe { batch.add_len(delivered) };
        self.cache_len -= delivered;
        if seen > 0 {
            self.hand_back(next, seen);
            self.stats.packets += delivered as u64;
        }
        delivered
    }

    /// Gives the `seen` descriptors consumed up to `next` back to the device: one tail write
    /// for the burst (facts §6.4: head equal to tail means empty, so the tail is one behind
    /// `next`).
    #[inline(always)]
    pub(crate) fn hand_back(&mut self, next: u32, seen: usize) {
        self.next = next;
        // Descriptor writes must reach memory before the device sees the new tail.
        fence(Ordering::Release);
        self.bar
            .write32(vfrdt(self.q), next.wrapping_sub(1) & self.mask);
        self.stats.descriptors += seen as u64;
    }

    /// Tests: both receive paths take every descriptor one by one (a data room of 0 turns the
    /// vector paths off), to compare with the vector paths.
    #[cfg(test)]
    pub(crate) fn set_scalar_only(&mut self) {
        self.gather = Gather::new(self.core, self.va0, self.iova0, self.stride, 0);
    }

    /// Buffers this queue holds: one armed in every descriptor, plus its buffer cache.
    pub(crate) fn buffers_held(&self) -> u64 {
        (self.bufs.len() + self.cache_len) as u64
    }

    /// The queue's buffer cache, for TX reclaim of buffers of the same pool.
    #[inline(always)]
    pub(crate) fn sink(&mut self) -> CacheSink<'_> {
        CacheSink {
            buf: &mut self.cache,
            len: &mut self.cache_len,
        }
    }

    /// Drops every packet of `batch`: buffers of this queue's pool go straight into its cache
    /// (no atomic operations, reused first while hot); others return to their pools in bulk.
    #[inline]
    pub(crate) fn recycle(&mut self, batch: &mut PacketBatch) {
        let n = batch.len();
        if n == 0 {
            return;
        }
        let src = batch.raw_ptr();
        // SAFETY: length 0 first: we now own the n packets through `src` and give each buffer
        // back exactly once below (Packet has no other resources).
        unsafe { batch.set_len_raw(0) };
        let own = self.core;
        let len = self.cache_len;
        let mut i = 0;
        if len + n <= self.cache.len() {
            // Fast path: room for all, and (usually) every packet from our own pool. Four at a
            // time: check their pools, then copy their indices; stop at the first group with a
            // foreign packet and leave it to the general loop below.
            // SAFETY: len + n <= cache.len(), so len + i + 4 <= cache.len() while i + 4 <= n.
            let dst = unsafe { self.cache.as_mut_ptr().add(len) };
            while i + 4 <= n {
                // SAFETY: i + 3 < n: initialised packets we own; `dst + i + 3` is inside the
                // cache (see above).
                unsafe {
                    let p = src.add(i);
                    if (*p).core_ptr() != own
                        || (*p.add(1)).core_ptr() != own
                        || (*p.add(2)).core_ptr() != own
                        || (*p.add(3)).core_ptr() != own
                    {
                        break;
                    }
                    *dst.add(i) = (*p).buffer_index();
                    *dst.add(i + 1) = (*p.add(1)).buffer_index();
                    *dst.add(i + 2) = (*p.add(2)).buffer_index();
                    *dst.add(i + 3) = (*p.add(3)).buffer_index();
                }
                i += 4;
            }
            // The last (up to three) packets, or the rest of a group that had a foreign one,
            // one by one while they are ours.
            // SAFETY: i < n as in the loop above; dst + i is inside the cache.
            unsafe {
                while i < n && (*src.add(i)).core_ptr() == own {
                    *dst.add(i) = (*src.add(i)).buffer_index();
                    i += 1;
                }
            }
            self.cache_len = len + i;
            if i == n {
                return;
            }
        }
        // SAFETY: packets i..n are initialised and still ours (the fast path took only 0..i).
        unsafe { self.recycle_slow(src.add(i), n - i) };
    }

    /// The general case of `recycle`: a full cache, or packets of other pools.
    ///
    /// # Safety
    /// `src[..n]` are initialised packets the caller gives up (they are not dropped again).
    #[inline(never)]
    unsafe fn recycle_slow(&mut self, src: *const Packet, n: usize) {
        let own = self.core;
        let cap = self.cache.len();
        let cache = self.cache.as_mut_ptr();
        let mut len = self.cache_len;
        let mut other = BulkFree::new();
        for i in 0..n {
            // SAFETY: i < n: an initialised packet we own (caller's contract).
            let p = unsafe { &*src.add(i) };
            let (core, index) = (p.core_ptr(), p.buffer_index());
            if core == own && len < cap {
                // SAFETY: len < cap = cache.len().
                unsafe { *cache.add(len) = index };
                len += 1;
            } else {
                other.push(core, index);
            }
        }
        self.cache_len = len;
    }

    /// Gives every buffer (ring and cache) back to the pool. Only when the queue is stopped.
    pub(crate) fn release_buffers(&mut self) {
        // SAFETY: the pool core outlives the queue.
        let core = unsafe { self.core.as_ref() };
        core.free_bulk(&self.bufs);
        core.free_bulk(&self.cache[..self.cache_len]);
        self.cache_len = 0;
        self.bufs = Box::new([]);
    }
}

impl<B: Bar> Drop for RxQueue<B> {
    fn drop(&mut self) {
        // The owner stops the queue in hardware before dropping it.
        self.release_buffers();
    }
}

#[cfg(test)]
pub(crate) mod tests;
