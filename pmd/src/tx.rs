//! Transmit queue: advanced data descriptors with the VF context rule (facts §6.2, §6.3), RS on
//! the last descriptor of each group and batched reclaim that only looks at those descriptors.

use crate::batch::PacketBatch;
use crate::mempool::{BulkFree, CacheSink, Mempool, Packet, PoolCore};
use crate::regs::*;
use floodgate_vfio::Bar;
use std::ptr::NonNull;
use std::sync::atomic::{fence, Ordering};

/// At most this many descriptors between two RS bits inside one burst.
const RS_GROUP: usize = 32;

/// Transmit counters of one queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxStats {
    /// Packets handed to the NIC.
    pub packets: u64,
    /// Bytes handed to the NIC.
    pub bytes: u64,
    /// Packets whose descriptors the NIC reported done and whose buffers went back.
    pub completed: u64,
    /// Packets left in the caller's batch because the ring was full.
    pub ring_full: u64,
    /// Packets refused because their buffer is not in a pool mapped for this device, or their
    /// length is 0 or over 16383 bytes (dropped, buffer returned).
    pub rejected: u64,
    /// Packets posted but not completed when a PF reset re-initialised the queue (buffers
    /// returned to their pools).
    pub dropped_reset: u64,
}

impl TxStats {
    pub(crate) fn add(&mut self, o: &TxStats) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.completed += o.completed;
        self.ring_full += o.ring_full;
        self.rejected += o.rejected;
        self.dropped_reset += o.dropped_reset;
    }
}

/// `slots` value of a slot without a buffer (the context descriptor).
const NO_BUF: u32 = u32::MAX;
/// `slots` flag: the buffer belongs to another pool, recorded in `foreign` (pool indices are
/// below 2^24, so the flag never collides with an index).
const FOREIGN: u32 = 1 << 31;

pub(crate) struct TxQueue<B: Bar> {
    bar: B,
    pub(crate) q: u32,
    ring: NonNull<u64>,
    pub(crate) ring_iova: u64,
    pub(crate) size: u32,
    mask: u32,
    /// Buffer index in flight in each slot (of the VF's own pool), `NO_BUF`, or
    /// `index | FOREIGN` with the pool in `foreign`.
    slots: Box<[u32]>,
    foreign: Box<[Option<NonNull<PoolCore>>]>,
    /// Next slot to fill.
    tail: u32,
    /// Oldest slot not yet reclaimed.
    clean: u32,
    /// Positions of descriptors carrying RS, oldest first (free-running indices, masked).
    rs: Box<[u32]>,
    rs_head: u32,
    rs_tail: u32,
    /// Pools whose buffers this device may read (mapped by the owner); the first is the VF's.
    pools: Vec<Mempool>,
    /// The VF's own pool and its host-to-device address delta (fast path).
    own: NonNull<PoolCore>,
    own_delta: u64,
    pub(crate) stats: TxStats,
}

// SAFETY: the ring pointer refers to DMA memory owned by the same IxgbeVf as this queue; slots
// refer to pool cores kept alive by outstanding buffers. Used by one thread at a time (&mut).
unsafe impl<B: Bar> Send for TxQueue<B> {}

impl<B: Bar> TxQueue<B> {
    pub(crate) fn new(
        bar: B,
        q: u32,
        ring: NonNull<u64>,
        ring_iova: u64,
        size: u32,
        pools: Vec<Mempool>,
    ) -> Self {
        let mut t = TxQueue {
            bar,
            q,
            ring,
            ring_iova,
            size,
            mask: size - 1,
            slots: vec![NO_BUF; size as usize].into_boxed_slice(),
            foreign: vec![None; size as usize].into_boxed_slice(),
            tail: 0,
            clean: 0,
            rs: vec![0u32; size as usize].into_boxed_slice(),
            rs_head: 0,
            rs_tail: 0,
            own: pools[0].core_ptr(),
            own_delta: pools[0].core().iova_delta,
            pools,
            stats: TxStats::default(),
        };
        t.start();
        t
    }

    pub(crate) fn add_pool(&mut self, pool: Mempool) {
        if !self.pools.iter().any(|p| p.same_pool(&pool)) {
            self.pools.push(pool);
        }
    }

    #[inline(always)]
    fn desc(&self, i: u32) -> *mut u64 {
        // SAFETY: i <= mask < size, inside the ring.
        unsafe { self.ring.as_ptr().add(2 * i as usize) }
    }

    /// Empties the ring state and writes the default context descriptor in slot 0, so that the
    /// next data descriptor starts at slot 1 (facts §6.2: VF TX needs CC and a valid context).
    /// Returns the tail value to program.
    pub(crate) fn start(&mut self) -> u32 {
        let d = self.desc(0);
        // facts §6.3: vlan_macip_lens = MACLEN 14; type_tucmd_mlhl = L4T reserved | DTYP
        // context | DEXT; mss_l4len_idx = IDX 0.
        let lens = 14u64 << TXCTX_MACLEN_SHIFT;
        let tucmd = (TXCTX_L4T_RSV | TXD_DTYP_CTXT | TXD_CMD_DEXT) as u64;
        // SAFETY: slot 0 of our ring.
        unsafe {
            d.write_volatile(lens);
            d.add(1).write_volatile(tucmd);
        }
        self.slots[0] = NO_BUF;
        self.tail = 1;
        self.clean = 0;
        self.rs_head = 0;
        self.rs_tail = 0;
        self.tail
    }

    /// Free descriptors (one slot always stays empty; facts §6.4).
    #[inline(always)]
    fn free(&self) -> u32 {
        self.mask - (self.tail.wrapping_sub(self.clean) & self.mask)
    }

    /// DD bit of slot `i` (write-back dword 3, facts §6.2).
    #[inline(always)]
    fn done(&self, i: u32) -> bool {
        // SAFETY: inside the ring; volatile because the device writes it.
        let st = unsafe { (self.desc(i).add(1) as *const u32).add(1).read_volatile() };
        st & TXD_STAT_DD != 0
    }

    /// Returns the buffers of completed groups to their pools. Only RS descriptors are
    /// checked. Returns how many packets were reclaimed.
    #[inline]
    pub(crate) fn reclaim(&mut self, sink: &mut CacheSink<'_>) -> usize {
        if self.rs_head == self.rs_tail || !self.done(self.rs[(self.rs_head & self.mask) as usize])
        {
            return 0;
        }
        self.reclaim_slow(sink)
    }

    #[inline(never)]
    fn reclaim_slow(&mut self, sink: &mut CacheSink<'_>) -> usize {
        // Buffers of the VF's own pool go into the RX queue's cache while it has room, the
        // rest back to the pool straight from `slots` (no copy); other pools go through the
        // generic bulk free.
        let own = self.own;
        // SAFETY: the own pool's core outlives the queue (pools[0] keeps it alive).
        let own_core = unsafe { own.as_ref() };
        let mut other = BulkFree::new();
        let mut n = 0usize;
        let mask = self.mask;
        let slots = self.slots.as_ptr();
        let mut clean = self.clean;
        let (sbuf, scap, mut slen) = (sink.buf.as_mut_ptr(), sink.buf.len(), *sink.len);
        // How far completion reaches: the last of the consecutive done RS descriptors, oldest
        // first. The span up to it is then taken back in one go (small groups, as at batch
        // size 1, would otherwise pay the per-run costs once per packet).
        let mut last = None;
        while self.rs_head != self.rs_tail {
            let pos = self.rs[(self.rs_head & mask) as usize];
            if !self.done(pos) {
                break;
            }
            last = Some(pos);
            self.rs_head = self.rs_head.wrapping_add(1);
        }
        if let Some(pos) = last {
            fence(Ordering::Acquire);
            // Slots clean..=pos are done, walked in runs that do not wrap. Only the range
            // [clean, tail) is ever read, so the slots are not cleared here.
            let mut cnt = (pos.wrapping_sub(clean) & mask) as usize + 1;
            while cnt > 0 {
                let run = cnt.min((mask - clean) as usize + 1);
                // SAFETY: clean + run <= size = slots.len().
                let s = unsafe { slots.add(clean as usize) };
                let mut i = 0;
                while i < run {
                    // Own-pool buffers i..j: scanned four at a time (one test: none of them
                    // FOREIGN or NO_BUF, which has the bit), then one by one.
                    let mut j = i;
                    // SAFETY: every index read is < run, inside this run of `slots`.
                    unsafe {
                        while j + 4 <= run
                            && (*s.add(j) | *s.add(j + 1) | *s.add(j + 2) | *s.add(j + 3)) & FOREIGN
                                == 0
                        {
                            j += 4;
                        }
                        while j < run && *s.add(j) & FOREIGN == 0 {
                            j += 1;
                        }
                    }
                    let m = j - i;
                    if m > 0 {
                        // As many as fit straight into the RX queue's cache, the rest back to
                        // the pool directly from `slots`.
                        let to_sink = m.min(scap - slen);
                        // SAFETY: slots i..i + to_sink are inside the run; sink slots
                        // slen..slen + to_sink are inside the sink (to_sink <= scap - slen);
                        // the two arrays are distinct allocations.
                        unsafe {
                            std::ptr::copy_nonoverlapping(s.add(i), sbuf.add(slen), to_sink);
                        }
                        slen += to_sink;
                        if to_sink < m {
                            // SAFETY: i + to_sink..j is inside the run of `slots`.
                            own_core.free_bulk(unsafe {
                                std::slice::from_raw_parts(s.add(i + to_sink), m - to_sink)
                            });
                        }
                        n += m;
                    }
                    if j < run {
                        // A context slot (NO_BUF) or a buffer of another pool.
                        let slot = clean as usize + j;
                        // SAFETY: j < run, inside this run.
                        let v = unsafe { *s.add(j) };
                        if v != NO_BUF {
                            if let Some(c) = self.foreign[slot] {
                                other.push(c, v & !FOREIGN);
                                n += 1;
                            }
                        }
                        j += 1;
                    }
                    i = j;
                }
                clean = (clean + run as u32) & mask;
                cnt -= run;
            }
        }
        *sink.len = slen;
        self.clean = clean;
        self.stats.completed += n as u64;
        n
    }

    #[inline(always)]
    fn mapped(&self, core: NonNull<PoolCore>) -> bool {
        self.pools.iter().any(|p| p.core_ptr() == core)
    }

    /// Writes a data descriptor for one packet at slot `t` and records its buffer (facts
    /// §6.2): DTYP data, DEXT, IFCS, EOP, length; PAYLEN = whole frame, CC set, context IDX 0.
    /// Returns the descriptor's second qword (to add RS later).
    #[inline(always)]
    fn write_data(
        &mut self,
        t: u32,
        iova: u64,
        len: u32,
        core: NonNull<PoolCore>,
        index: u32,
    ) -> u64 {
        let cmd = TXD_DTYP_DATA | TXD_CMD_DEXT | TXD_CMD_IFCS | TXD_CMD_EOP | len;
        let olinfo = (len << TXD_PAYLEN_SHIFT) | TXD_CC;
        let hi = ((olinfo as u64) << 32) | cmd as u64;
        // SAFETY: t <= mask: slot t of our ring and of `slots`.
        unsafe {
            let d = self.ring.as_ptr().add(2 * t as usize);
            d.write_volatile(iova);
            d.add(1).write_volatile(hi);
            if core == self.own {
                *self.slots.as_mut_ptr().add(t as usize) = index;
            } else {
                *self.slots.as_mut_ptr().add(t as usize) = index | FOREIGN;
                *self.foreign.as_mut_ptr().add(t as usize) = Some(core);
            }
        }
        hi
    }

    /// Posts a packet that is not a plain packet of the queue's own pool: from another mapped
    /// pool (posted), or with a bad length or an unmapped pool (dropped and counted).
    #[cold]
    #[inline(never)]
    fn post_other(&mut self, t: u32, p: Packet, rejected: &mut BulkFree) -> Option<u64> {
        let len = p.len() as u32;
        let core = p.core_ptr();
        if len == 0 || len > 0x3FFF || !self.mapped(core) {
            log::debug!(
                "tx queue {}: dropping packet of {len} bytes (bad length or buffer not in a \
                 mapped pool)",
                self.q
            );
            let (c, i, _) = p.into_raw();
            rejected.push(c, i);
            return None;
        }
        let iova = p.iova();
        let (_, index, _) = p.into_raw();
        Some(self.write_data(t, iova, len, core, index))
    }

    /// Transmits from the front of `batch`. See `IxgbeVf::tx_burst`.
    #[inline]
    pub(crate) fn burst(&mut self, batch: &mut PacketBatch, sink: &mut CacheSink<'_>) -> usize {
        self.reclaim(sink);
        let total = batch.len();
        let n = total.min(self.free() as usize);
        if n < total {
            self.stats.ring_full += (total - n) as u64;
        }
        if n == 0 {
            return 0;
        }
        let (own, own_delta) = (self.own, self.own_delta);
        let mask = self.mask;
        let mut t = self.tail;
        let mut rs_tail = self.rs_tail;
        let mut posted = 0usize;
        // At most MAX_BATCH (1024) packets of at most 0x3FFF bytes: fits in 32 bits.
        let mut bytes = 0u32;
        let mut rejected = BulkFree::new();
        let src = batch.raw_ptr();
        let ring = self.ring.as_ptr();
        let slots = self.slots.as_mut_ptr();
        // SAFETY: length 0 first: the batch's packets are now owned through `src`; the first
        // n are consumed below (each exactly once), the rest moved back afterwards.
        unsafe { batch.set_len_raw(0) };
        let mut i = 0usize;
        // Groups of at most RS_GROUP packets that do not wrap the ring; RS goes on the last
        // descriptor of each group, so the inner loop only advances pointers.
        while i < n {
            let group_end = i + (n - i).min(RS_GROUP).min((mask - t) as usize + 1);
            // SAFETY: t <= mask: slot t of the ring and of `slots`; the group posts at most
            // size - t descriptors, so d and sl stay inside (or one past) both.
            let (slot0, mut d, mut sl) = unsafe {
                let slot0 = slots.add(t as usize);
                (slot0, ring.add(2 * t as usize), slot0)
            };
            while i < group_end {
                // SAFETY: i < n <= total: an initialised packet we now own (not moved yet).
                let p = unsafe { &*src.add(i) };
                i += 1;
                let len = p.len() as u32;
                if p.core_ptr() == own && len.wrapping_sub(1) < 0x3FFF {
                    let iova = p.data_addr().wrapping_add(own_delta);
                    // facts §6.2: DTYP data, DEXT, IFCS, EOP, length; PAYLEN = frame, CC, IDX 0.
                    let cmd = TXD_DTYP_DATA | TXD_CMD_DEXT | TXD_CMD_IFCS | TXD_CMD_EOP | len;
                    let olinfo = (len << TXD_PAYLEN_SHIFT) | TXD_CC;
                    let hi = ((olinfo as u64) << 32) | cmd as u64;
                    // SAFETY: d and sl are the next slot of this group (see above). The
                    // packet's buffer now belongs to the slot (the handle is forgotten: never
                    // dropped).
                    unsafe {
                        d.write_volatile(iova);
                        d.add(1).write_volatile(hi);
                        *sl = p.buffer_index();
                        d = d.add(2);
                        sl = sl.add(1);
                    }
                    bytes += len;
                } else {
                    // SAFETY: sl and slot0 are in the same group.
                    let ts = t + unsafe { sl.offset_from(slot0) } as u32;
                    // SAFETY: we own the packet at src + i - 1 and hand it over by value.
                    let p = unsafe { src.add(i - 1).read() };
                    if self.post_other(ts, p, &mut rejected).is_some() {
                        // SAFETY: post_other filled slot ts; move on as above.
                        unsafe {
                            d = d.add(2);
                            sl = sl.add(1);
                        }
                        bytes += len;
                    }
                }
            }
            // SAFETY: sl and slot0 are in the same group.
            let k = unsafe { sl.offset_from(slot0) } as u32;
            if k > 0 {
                let lt = t + k - 1;
                // SAFETY: slot lt of our ring (not yet handed to the device: the tail moves
                // below); rs has one entry per ring slot.
                unsafe {
                    let hi = ring.add(2 * lt as usize + 1);
                    hi.write_volatile(hi.read_volatile() | TXD_CMD_RS as u64);
                    *self.rs.as_mut_ptr().add((rs_tail & mask) as usize) = lt;
                }
                rs_tail = rs_tail.wrapping_add(1);
                t = (t + k) & mask;
                posted += k as usize;
            }
        }
        // SAFETY: packets n..total are still initialised; move them to the front.
        unsafe {
            if total > n {
                std::ptr::copy(src.add(n), src, total - n);
            }
            batch.set_len_raw(total - n);
        }
        drop(rejected);
        self.stats.rejected += (n - posted) as u64;
        if posted > 0 {
            self.rs_tail = rs_tail;
            self.tail = t;
            fence(Ordering::Release);
            self.bar.write32(vftdt(self.q), t);
            self.stats.packets += posted as u64;
            self.stats.bytes += bytes as u64;
        }
        n
    }

    /// Buffers of the VF's own pool posted on this ring and not reclaimed yet.
    pub(crate) fn own_buffers_posted(&self) -> u64 {
        let mut n = 0;
        let mut c = self.clean;
        while c != self.tail {
            if self.slots[c as usize] & FOREIGN == 0 {
                n += 1;
            }
            c = (c + 1) & self.mask;
        }
        n
    }

    /// Takes back every posted buffer, completed or not (queue stopped), and empties the ring.
    /// Returns how many packets were not completed.
    pub(crate) fn drain_all(&mut self) -> u64 {
        self.drain_upto(None)
    }

    /// Takes back every posted buffer after the queue was stopped for a re-initialisation
    /// (PF reset). What the device consumed counts as completed: the groups whose RS
    /// descriptor has DD, and also the descriptors before the head the device reports (facts
    /// §2.3 VFTDH, §2.6: the device moves the head), since RS only sits on the last descriptor
    /// of a group and the device may have sent part of a group before it stopped. Returns how
    /// many packets were not sent (posted, never consumed by the device).
    pub(crate) fn drain_stopped(&mut self) -> u64 {
        let head = self.device_head();
        self.drain_upto(head)
    }

    /// The TX head the device reports, when it can be trusted: the queue registers still
    /// describe this ring (a device reset clears them, and the head then means nothing) and the
    /// head lies between the oldest unreclaimed slot and the tail.
    fn device_head(&self) -> Option<u32> {
        let q = self.q;
        // facts §2.3: TDBAL/TDBAH ring base, TDLEN length in bytes (16-byte descriptors).
        if self.bar.read32(vftdbal(q)) != self.ring_iova as u32
            || self.bar.read32(vftdbah(q)) != (self.ring_iova >> 32) as u32
            || self.bar.read32(vftdlen(q)) != self.size * 16
        {
            return None;
        }
        // facts §2.6: bits 15:0 hold the head.
        let head = self.bar.read32(vftdh(q)) & 0xFFFF;
        if head >= self.size {
            return None;
        }
        let consumed = head.wrapping_sub(self.clean) & self.mask;
        let posted = self.tail.wrapping_sub(self.clean) & self.mask;
        (consumed <= posted).then_some(head)
    }

    /// Empties the ring: DD groups are reclaimed as completed, then slots before `head` (when
    /// given) count as completed too, and the rest is returned as not completed (the count
    /// returned).
    fn drain_upto(&mut self, head: Option<u32>) -> u64 {
        let (mut buf, mut len) = ([0u32; 0], 0usize);
        self.reclaim_slow(&mut CacheSink {
            buf: &mut buf,
            len: &mut len,
        });
        let mut free = BulkFree::new();
        // Slots [clean, head) were consumed by the device (a head behind `clean` after the DD
        // reclaim means nothing more).
        let mut sent_left = head.map_or(0, |h| {
            let consumed = h.wrapping_sub(self.clean) & self.mask;
            let posted = self.tail.wrapping_sub(self.clean) & self.mask;
            if consumed <= posted {
                consumed
            } else {
                0
            }
        });
        let (mut sent, mut n) = (0u64, 0u64);
        while self.clean != self.tail {
            let c = self.clean as usize;
            let v = self.slots[c];
            let mut buffer = false;
            if v & FOREIGN == 0 {
                free.push(self.own, v);
                buffer = true;
            } else if v != NO_BUF {
                if let Some(core) = self.foreign[c] {
                    free.push(core, v & !FOREIGN);
                    buffer = true;
                }
            }
            if buffer {
                if sent_left > 0 {
                    sent += 1;
                } else {
                    n += 1;
                }
            }
            sent_left = sent_left.saturating_sub(1);
            self.clean = (self.clean + 1) & self.mask;
        }
        self.rs_head = self.rs_tail;
        self.stats.completed += sent;
        n
    }
}

impl<B: Bar> Drop for TxQueue<B> {
    fn drop(&mut self) {
        // The owner stops the queue in hardware before dropping it.
        self.drain_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rx::tests::{pool, region, RecBar};

    /// A full (zero-capacity) RX cache: reclaimed buffers go back to the pool.
    macro_rules! no_sink {
        () => {
            CacheSink {
                buf: &mut [],
                len: &mut 0,
            }
        };
    }

    fn qw(r: &floodgate_vfio::DmaRegion, slot: u32, w: usize) -> *mut u64 {
        // SAFETY: test ring.
        unsafe { (r.as_ptr() as *mut u64).add(2 * slot as usize + w) }
    }

    fn make(bar: &RecBar, ring: &floodgate_vfio::DmaRegion, p: &Mempool) -> TxQueue<RecBar> {
        TxQueue::new(
            bar.clone(),
            1,
            NonNull::new(ring.as_ptr().cast()).unwrap(),
            ring.iova(),
            64,
            vec![p.clone()],
        )
    }

    fn packets(p: &Mempool, n: usize, len: usize) -> PacketBatch {
        let mut b = PacketBatch::new(n);
        p.alloc_into(&mut b);
        for pk in b.iter_mut() {
            pk.set_len(len).unwrap();
        }
        b
    }

    #[test]
    fn context_descriptor_then_cc_data_descriptors_with_rs_on_last() {
        let bar = RecBar::default();
        let ring = region(64 * 16);
        let p = pool(128);
        let mut q = make(&bar, &ring, &p);
        // SAFETY: reading our test ring.
        let (c0, c1) = unsafe { (qw(&ring, 0, 0).read(), qw(&ring, 0, 1).read()) };
        assert_eq!(c0, 14 << 9, "MACLEN 14");
        assert_eq!(c1 as u32, 0x1800 | 0x0020_0000 | (1 << 29));
        let mut b = packets(&p, 3, 60);
        let addrs: Vec<u64> = b.iter().map(|x| x.iova()).collect();
        assert_eq!(q.burst(&mut b, &mut no_sink!()), 3);
        assert!(b.is_empty());
        for i in 0..3u32 {
            // SAFETY: reading our test ring.
            let (a, hi) = unsafe { (qw(&ring, 1 + i, 0).read(), qw(&ring, 1 + i, 1).read()) };
            assert_eq!(a, addrs[i as usize]);
            let cmd = hi as u32;
            let olinfo = (hi >> 32) as u32;
            assert_eq!(cmd & 0xFFFF, 60);
            assert_eq!(cmd & 0x00F0_0000, 0x0030_0000, "DTYP data");
            assert_ne!(cmd & TXD_CMD_DEXT, 0);
            assert_ne!(cmd & TXD_CMD_EOP, 0);
            assert_ne!(cmd & TXD_CMD_IFCS, 0);
            assert_eq!(cmd & TXD_CMD_RS != 0, i == 2, "RS only on the last");
            assert_eq!(olinfo, (60 << 14) | 0x80, "PAYLEN, CC, IDX 0");
        }
        let tdt: Vec<u32> = bar
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|w| w.0 == vftdt(1))
            .map(|w| w.1)
            .collect();
        assert_eq!(tdt, vec![4]);
        assert_eq!(p.available(), 125);
        // Not done yet: nothing reclaimed.
        assert_eq!(q.reclaim(&mut no_sink!()), 0);
        // Device writes back DD on the RS descriptor only.
        // SAFETY: test ring.
        unsafe { qw(&ring, 3, 1).write_volatile(1u64 << 32) };
        assert_eq!(q.reclaim(&mut no_sink!()), 3);
        assert_eq!(p.available(), 128);
        assert_eq!(q.stats.completed, 3);
    }

    /// Registers the device reports (reads), writes ignored.
    #[derive(Clone, Default)]
    struct RegBar(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<u32, u32>>>);
    impl Bar for RegBar {
        fn read32(&self, off: u32) -> u32 {
            self.0.lock().unwrap().get(&off).copied().unwrap_or(0)
        }
        fn write32(&self, _: u32, _: u32) {}
    }

    #[test]
    fn a_stopped_queue_counts_what_the_device_consumed_before_its_head_as_completed() {
        for ring_still_programmed in [true, false] {
            let bar = RegBar::default();
            let ring = region(64 * 16);
            let p = pool(128);
            let mut q = TxQueue::new(
                bar.clone(),
                1,
                NonNull::new(ring.as_ptr().cast()).unwrap(),
                ring.iova(),
                64,
                vec![p.clone()],
            );
            // One group of 20 (RS on slot 20 only); the device sent 12 of them (slots 1..=12)
            // and stopped: no DD anywhere, the head at 13.
            let mut b = packets(&p, 20, 60);
            assert_eq!(q.burst(&mut b, &mut no_sink!()), 20);
            {
                let mut r = bar.0.lock().unwrap();
                if ring_still_programmed {
                    r.insert(vftdbal(1), ring.iova() as u32);
                    r.insert(vftdbah(1), (ring.iova() >> 32) as u32);
                    r.insert(vftdlen(1), 64 * 16);
                }
                r.insert(vftdh(1), 13);
            }
            let unsent = q.drain_stopped();
            assert_eq!(p.available(), 128, "every buffer back");
            if ring_still_programmed {
                assert_eq!((unsent, q.stats.completed), (8, 12));
            } else {
                // A reset device: its head says nothing about this ring.
                assert_eq!((unsent, q.stats.completed), (20, 0));
            }
        }
    }

    #[test]
    fn full_ring_leaves_packets_in_the_batch_and_rs_every_32() {
        let bar = RecBar::default();
        let ring = region(64 * 16);
        let p = pool(256);
        let mut q = make(&bar, &ring, &p);
        let mut b = packets(&p, 100, 64);
        let first_left = b.as_slice()[62].buffer_index();
        // 64 slots, one is the context descriptor, one always stays empty: 62 fit.
        assert_eq!(q.burst(&mut b, &mut no_sink!()), 62);
        assert_eq!(b.len(), 38);
        assert_eq!(b.as_slice()[0].buffer_index(), first_left, "order kept");
        assert_eq!(q.stats.ring_full, 38);
        let rs: Vec<u32> = (1..63)
            .filter(|&s| {
                // SAFETY: test ring.
                unsafe { qw(&ring, s, 1).read() as u32 & TXD_CMD_RS != 0 }
            })
            .collect();
        assert_eq!(rs, vec![32, 62]);
        // Complete the first group only.
        // SAFETY: test ring.
        unsafe { qw(&ring, 32, 1).write_volatile(1u64 << 32) };
        // 32 packets plus the context slot come free.
        assert_eq!(q.burst(&mut b, &mut no_sink!()), 33);
        assert_eq!(q.stats.completed, 32);
        // Stopping gives everything back: 30 + 33 packets still in flight.
        let n = q.drain_all();
        assert_eq!(n, 63);
        drop(b);
        drop(q);
        assert_eq!(p.available(), 256);
    }

    #[test]
    fn reclaim_splits_between_cache_pool_and_foreign_pools_across_the_wrap() {
        let bar = RecBar::default();
        let ring = region(64 * 16);
        let p = pool(256);
        let other = pool(16);
        let mut q = make(&bar, &ring, &p);
        q.add_pool(other.clone());
        let mut cache = [0u32; 20];
        // Three bursts of 40: slots 1..=40, 41..=16 (wraps), 17..=56.
        for round in 0..3u64 {
            let mut b = packets(&p, 40, 64);
            for pos in [9, 30] {
                let mut x = other.alloc().unwrap();
                x.set_len(64).unwrap();
                drop(std::mem::replace(&mut b.as_mut_slice()[pos], x));
            }
            let own: Vec<u32> = b
                .iter()
                .filter(|x| x.core_ptr() == p.core_ptr())
                .map(|x| x.buffer_index())
                .collect();
            let mut clen = 0;
            let mut sink = CacheSink {
                buf: &mut cache,
                len: &mut clen,
            };
            assert_eq!(q.burst(&mut b, &mut sink), 40);
            assert_eq!(other.available(), 14);
            // The device completes every RS descriptor.
            for s in 0..64 {
                // SAFETY: test ring.
                unsafe {
                    if qw(&ring, s, 1).read() as u32 & TXD_CMD_RS != 0 {
                        qw(&ring, s, 1).write_volatile(1u64 << 32);
                    }
                }
            }
            assert_eq!(q.reclaim(&mut sink), 40);
            assert_eq!(q.stats.completed, 40 * (round + 1));
            // The first 20 own buffers (in ring order) filled the cache; the other 18 and
            // the foreign two went back to their pools.
            assert_eq!(clen, 20);
            assert_eq!(&cache[..], &own[..20]);
            assert_eq!(other.available(), 16);
            assert_eq!(p.available(), 256 - 20);
            p.core().free_bulk(&cache);
        }
        drop(q);
        assert_eq!(p.available(), 256);
    }

    #[test]
    fn rejected_packet_and_ring_end_split_groups_with_rs_on_each_last() {
        let bar = RecBar::default();
        let ring = region(64 * 16);
        let p = pool(256);
        let mut q = make(&bar, &ring, &p);
        // Move the tail to slot 61.
        let mut b = packets(&p, 60, 64);
        assert_eq!(q.burst(&mut b, &mut no_sink!()), 60);
        // SAFETY: test ring: complete the RS descriptors (slots 32 and 60).
        unsafe {
            qw(&ring, 32, 1).write_volatile(1u64 << 32);
            qw(&ring, 60, 1).write_volatile(1u64 << 32);
        }
        assert_eq!(q.reclaim(&mut no_sink!()), 60);
        // 10 packets, the third with length 0 (rejected): slots 61, 62 | 63 | 0..=5.
        let mut b = packets(&p, 10, 100);
        b.as_mut_slice()[2].set_len(0).unwrap();
        let addrs: Vec<u64> = b
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 2)
            .map(|(_, x)| x.iova())
            .collect();
        assert_eq!(q.burst(&mut b, &mut no_sink!()), 10);
        assert_eq!((q.stats.packets, q.stats.rejected), (69, 1));
        assert_eq!(q.stats.bytes, 60 * 64 + 9 * 100);
        let slots: Vec<u32> = vec![61, 62, 63, 0, 1, 2, 3, 4, 5];
        for (k, &s) in slots.iter().enumerate() {
            // SAFETY: test ring.
            let (a, hi) = unsafe { (qw(&ring, s, 0).read(), qw(&ring, s, 1).read()) };
            assert_eq!(a, addrs[k], "slot {s}");
            assert_eq!(hi as u32 & 0xFFFF, 100);
            assert_eq!(
                hi as u32 & TXD_CMD_RS != 0,
                [62, 63, 5].contains(&s),
                "RS at {s}"
            );
        }
        assert_eq!(q.tail, 6);
        drop(q);
        assert_eq!(p.available(), 256);
    }

    #[test]
    fn foreign_pool_and_bad_lengths_are_rejected() {
        let bar = RecBar::default();
        let ring = region(64 * 16);
        let p = pool(16);
        let other = pool(16);
        let mut q = make(&bar, &ring, &p);
        let mut b = PacketBatch::new(4);
        b.push(other.alloc().unwrap()).unwrap();
        b.push(p.alloc().unwrap()).unwrap(); // length 0
        let mut ok = p.alloc().unwrap();
        ok.set_len(100).unwrap();
        b.push(ok).unwrap();
        assert_eq!(q.burst(&mut b, &mut no_sink!()), 3);
        assert_eq!(q.stats.rejected, 2);
        assert_eq!(q.stats.packets, 1);
        assert_eq!(other.available(), 16);
        assert_eq!(p.available(), 15);
        q.add_pool(other.clone());
        let mut x = other.alloc().unwrap();
        x.set_len(60).unwrap();
        b.push(x).unwrap();
        assert_eq!(q.burst(&mut b, &mut no_sink!()), 1);
        assert_eq!(q.stats.packets, 2);
    }
}
