//! [`PacketBatch`]: a reusable, fixed-capacity array of packets for the burst API.

use crate::mempool::{BulkFree, Packet};
use std::fmt;

/// Largest batch capacity.
pub const MAX_BATCH: usize = 1024;

/// A reusable array of [`Packet`]s with a fixed capacity, allocated once.
///
/// `rx_burst` appends received packets to the free slots; `tx_burst` takes packets from the
/// front and leaves the ones it could not send. Clearing (or dropping) the batch returns all its
/// buffers to their pools in bulk, one ring operation per pool run instead of one per packet.
/// A batch never allocates after [`PacketBatch::new`].
///
/// ```
/// use floodgate_pmd::{Mempool, MempoolConfig, PacketBatch};
/// # use floodgate_vfio::HugePages;
/// let pool = Mempool::new(&MempoolConfig { buffers: 32, huge_pages: HugePages::Never, ..Default::default() }).unwrap();
/// let mut batch = PacketBatch::new(16);
/// assert_eq!(pool.alloc_into(&mut batch), 16);
/// batch.retain(|p| p.buffer_index() % 2 == 0); // drop odd buffers (returned in bulk)
/// assert_eq!(batch.len() + pool.available() as usize, 32);
/// batch.clear();
/// assert_eq!(pool.available(), 32);
/// ```
pub struct PacketBatch {
    pkts: Vec<Packet>,
    cap: usize,
}

impl fmt::Debug for PacketBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacketBatch")
            .field("len", &self.pkts.len())
            .field("capacity", &self.cap)
            .finish()
    }
}

impl PacketBatch {
    /// A batch for up to `capacity` packets (clamped to 1..=1024).
    pub fn new(capacity: usize) -> Self {
        let cap = capacity.clamp(1, MAX_BATCH);
        PacketBatch {
            pkts: Vec::with_capacity(cap),
            cap,
        }
    }

    /// Number of packets in the batch.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.pkts.len()
    }

    /// Whether the batch holds no packets.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.pkts.is_empty()
    }

    /// Maximum number of packets.
    #[inline(always)]
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Free slots left.
    #[inline(always)]
    pub fn free_slots(&self) -> usize {
        self.cap - self.pkts.len()
    }

    /// Appends a packet; gives it back when the batch is full.
    #[inline]
    pub fn push(&mut self, p: Packet) -> Result<(), Packet> {
        if self.pkts.len() < self.cap {
            self.pkts.push(p);
            Ok(())
        } else {
            Err(p)
        }
    }

    /// Removes and returns the last packet.
    pub fn pop(&mut self) -> Option<Packet> {
        self.pkts.pop()
    }

    /// Removes packet `i`, replacing it with the last one (O(1)).
    pub fn swap_remove(&mut self, i: usize) -> Option<Packet> {
        (i < self.pkts.len()).then(|| self.pkts.swap_remove(i))
    }

    /// The packets.
    #[inline(always)]
    pub fn as_slice(&self) -> &[Packet] {
        &self.pkts
    }

    /// The packets, mutable (edit bytes or headroom in place).
    #[inline(always)]
    pub fn as_mut_slice(&mut self) -> &mut [Packet] {
        &mut self.pkts
    }

    /// Iterates over the packets.
    pub fn iter(&self) -> std::slice::Iter<'_, Packet> {
        self.pkts.iter()
    }

    /// Iterates mutably over the packets.
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, Packet> {
        self.pkts.iter_mut()
    }

    /// Takes all packets out (for example to hand them to other threads one by one).
    pub fn drain(&mut self) -> std::vec::Drain<'_, Packet> {
        self.pkts.drain(..)
    }

    /// Keeps the packets for which `keep` returns true, in order; the others are dropped and
    /// their buffers returned in bulk.
    pub fn retain(&mut self, mut keep: impl FnMut(&mut Packet) -> bool) {
        let mut free = BulkFree::new();
        let mut w = 0;
        let n = self.pkts.len();
        // SAFETY: we move packets within the initialised prefix [0, n): each packet is either
        // moved to slot w (< its own slot) or given to `free` by `into_raw`. Length is set to 0
        // first so a panic in `keep` leaks instead of double-dropping.
        unsafe {
            let base = self.pkts.as_mut_ptr();
            self.pkts.set_len(0);
            for r in 0..n {
                let p = base.add(r);
                if keep(&mut *p) {
                    if r != w {
                        std::ptr::copy_nonoverlapping(p, base.add(w), 1);
                    }
                    w += 1;
                } else {
                    let (core, idx, _) = std::ptr::read(p).into_raw();
                    free.push(core, idx);
                }
            }
            self.pkts.set_len(w);
        }
    }

    /// Moves the packets whose mark is set to the end of `into`, in order; the others stay, in
    /// no particular order (the last ones fill the holes, so the cost follows the number of
    /// marked packets, not the batch size). Packet `i`'s mark is bit `i % 32` of
    /// `marks[i / 32]` (missing words count as unmarked). When `into` has too little room, the
    /// first marked packets that fit are moved and the rest stay; returns how many stayed.
    ///
    /// ```
    /// # use floodgate_pmd::{Mempool, MempoolConfig, PacketBatch};
    /// # use floodgate_vfio::HugePages;
    /// # let pool = Mempool::new(&MempoolConfig { buffers: 8, huge_pages: HugePages::Never, ..Default::default() }).unwrap();
    /// let mut batch = PacketBatch::new(8);
    /// pool.alloc_into(&mut batch);
    /// let mut pass = PacketBatch::new(8);
    /// assert_eq!(batch.move_marked(&[0b1010_0001], &mut pass), 0);
    /// assert_eq!((pass.len(), batch.len()), (3, 5));
    /// ```
    pub fn move_marked(&mut self, marks: &[u32], into: &mut PacketBatch) -> usize {
        let n = self.pkts.len();
        let words = n.div_ceil(32).min(marks.len());
        let tail = |k: usize, w: u32| {
            if (k + 1) * 32 <= n {
                w
            } else {
                w & ((1u32 << (n - k * 32)) - 1)
            }
        };
        let marked: usize = (0..words)
            .map(|k| tail(k, marks[k]).count_ones() as usize)
            .sum();
        if marked == 0 {
            return 0;
        }
        if marked > into.free_slots() {
            return self.move_marked_ordered(marks, into);
        }
        let src = self.pkts.as_mut_ptr();
        let dst = into.spare_ptr();
        let mut len = n;
        let mut t = marked;
        // SAFETY: marked packets are visited from the highest index down. Each is copied to
        // spare slot t - 1 of `into` (t counts down from `marked` <= its free slots, so the
        // slots are in ascending packet order), and its hole is filled with the batch's
        // current last packet, which is unmarked: every position above the one being moved
        // holds an unmarked packet by then. Each packet thus ends up in exactly one place;
        // the lengths are set to match at the end, and nothing here can panic.
        unsafe {
            for k in (0..words).rev() {
                let mut w = tail(k, marks[k]);
                while w != 0 {
                    let b = 31 - w.leading_zeros() as usize;
                    w &= !(1u32 << b);
                    let i = k * 32 + b;
                    t -= 1;
                    std::ptr::copy_nonoverlapping(src.add(i), dst.add(t), 1);
                    len -= 1;
                    if i != len {
                        std::ptr::copy_nonoverlapping(src.add(len), src.add(i), 1);
                    }
                }
            }
            self.pkts.set_len(len);
            into.add_len(marked);
        }
        0
    }

    /// [`PacketBatch::move_marked`] when `into` cannot take every marked packet: moves the
    /// first ones that fit, keeps everything else in order.
    #[cold]
    fn move_marked_ordered(&mut self, marks: &[u32], into: &mut PacketBatch) -> usize {
        let n = self.pkts.len();
        let mut room = into.free_slots();
        let mut kept_marked = 0;
        let mut w = 0;
        let src = self.pkts.as_mut_ptr();
        let dst = into.spare_ptr();
        let mut moved = 0;
        // SAFETY: length 0 first (nothing below can panic, but a panic would leak, not double
        // drop). Each of the n initialised packets is read once and written once: to a slot
        // w <= r of self (compaction in place) or to free spare slot `moved` < room of `into`.
        unsafe {
            self.pkts.set_len(0);
            for r in 0..n {
                let marked = marks.get(r / 32).is_some_and(|m| m >> (r % 32) & 1 != 0);
                let p = src.add(r);
                if marked && room > 0 {
                    std::ptr::copy_nonoverlapping(p, dst.add(moved), 1);
                    moved += 1;
                    room -= 1;
                } else {
                    kept_marked += usize::from(marked);
                    if r != w {
                        std::ptr::copy_nonoverlapping(p, src.add(w), 1);
                    }
                    w += 1;
                }
            }
            self.pkts.set_len(w);
            into.add_len(moved);
        }
        kept_marked
    }

    /// Drops every packet, returning the buffers in bulk.
    #[inline]
    pub fn clear(&mut self) {
        let n = self.pkts.len();
        if n == 0 {
            return;
        }
        let mut idx = [const { std::mem::MaybeUninit::<u32>::uninit() }; 64];
        let base = self.pkts.as_ptr();
        // SAFETY: length 0 first: from here on we own the n packets through `base` and give
        // each buffer back exactly once below (Packet has no other resources to drop).
        unsafe { self.pkts.set_len(0) };
        let mut i = 0;
        while i < n {
            // SAFETY: i < n, inside the former initialised prefix.
            let core = unsafe { (*base.add(i)).core_ptr() };
            let mut k = 0;
            // A run of packets of the same pool, at most idx.len(): four at a time, then one
            // by one. SAFETY: every packet read is below n, inside the former initialised
            // prefix; every idx slot written is below idx.len().
            unsafe {
                while i + 4 <= n && k + 4 <= idx.len() {
                    let p = base.add(i);
                    if (*p).core_ptr() != core
                        || (*p.add(1)).core_ptr() != core
                        || (*p.add(2)).core_ptr() != core
                        || (*p.add(3)).core_ptr() != core
                    {
                        break;
                    }
                    idx[k].write((*p).buffer_index());
                    idx[k + 1].write((*p.add(1)).buffer_index());
                    idx[k + 2].write((*p.add(2)).buffer_index());
                    idx[k + 3].write((*p.add(3)).buffer_index());
                    k += 4;
                    i += 4;
                }
                while i < n && k < idx.len() && (*base.add(i)).core_ptr() == core {
                    idx[k].write((*base.add(i)).buffer_index());
                    k += 1;
                    i += 1;
                }
            }
            // SAFETY: idx[..k] written above; MaybeUninit<u32> has u32's layout. The core
            // outlives its outstanding buffers.
            unsafe {
                core.as_ref()
                    .free_bulk(std::slice::from_raw_parts(idx.as_ptr() as *const u32, k));
            }
        }
    }

    /// Pointer to the first free slot, for the receive path.
    #[inline(always)]
    pub(crate) fn spare_ptr(&mut self) -> *mut Packet {
        self.pkts.spare_capacity_mut().as_mut_ptr() as *mut Packet
    }

    /// Marks `n` more slots (written through `spare_ptr`) as initialised.
    ///
    /// # Safety
    /// The `n` slots after the current length must hold packets the batch now owns, and
    /// `len + n <= capacity`.
    #[inline(always)]
    pub(crate) unsafe fn add_len(&mut self, n: usize) {
        debug_assert!(self.pkts.len() + n <= self.cap);
        // SAFETY: guaranteed by the caller.
        unsafe { self.pkts.set_len(self.pkts.len() + n) };
    }

    /// Pointer to the first packet (for the transmit path).
    #[inline(always)]
    pub(crate) fn raw_ptr(&mut self) -> *mut Packet {
        self.pkts.as_mut_ptr()
    }

    /// Sets the number of initialised packets.
    ///
    /// # Safety
    /// As `Vec::set_len`: the first `n` slots must hold packets the batch owns, `n <= cap`.
    #[inline(always)]
    pub(crate) unsafe fn set_len_raw(&mut self, n: usize) {
        // SAFETY: guaranteed by the caller.
        unsafe { self.pkts.set_len(n) };
    }
}

impl Drop for PacketBatch {
    fn drop(&mut self) {
        self.clear();
    }
}

impl<'a> IntoIterator for &'a PacketBatch {
    type Item = &'a Packet;
    type IntoIter = std::slice::Iter<'a, Packet>;
    fn into_iter(self) -> Self::IntoIter {
        self.pkts.iter()
    }
}

impl<'a> IntoIterator for &'a mut PacketBatch {
    type Item = &'a mut Packet;
    type IntoIter = std::slice::IterMut<'a, Packet>;
    fn into_iter(self) -> Self::IntoIter {
        self.pkts.iter_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rx::tests::pool;

    #[test]
    fn move_marked_keeps_order_and_never_loses_a_packet() {
        let p = pool(128);
        let mut batch = PacketBatch::new(64);
        assert_eq!(p.alloc_into(&mut batch), 64);
        let ids: Vec<u32> = batch.iter().map(|x| x.buffer_index()).collect();
        // Marks in both words and a word past the batch; room for only 5 of the 6 marked.
        let marks = [
            0b1000_0000_0000_0000_0000_0000_0001_0011u32,
            0b101,
            0xffff_ffff,
        ];
        let mut into = PacketBatch::new(5);
        let stayed = batch.move_marked(&marks, &mut into);
        assert_eq!(stayed, 1);
        let moved: Vec<u32> = into.iter().map(|x| x.buffer_index()).collect();
        assert_eq!(moved, [ids[0], ids[1], ids[4], ids[31], ids[32]]);
        let kept: Vec<u32> = batch.iter().map(|x| x.buffer_index()).collect();
        let want: Vec<u32> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| ![0, 1, 4, 31, 32].contains(i))
            .map(|(_, &x)| x)
            .collect();
        assert_eq!(
            kept, want,
            "the marked packet that did not fit stays, in order"
        );
        assert_eq!(into.len() + batch.len(), 64);
        drop(into);
        drop(batch);
        assert_eq!(p.available(), 128);
    }

    #[test]
    fn clear_returns_mixed_pool_runs_longer_than_the_gather_buffer() {
        let a = pool(512);
        let b = pool(16);
        let mut batch = PacketBatch::new(300);
        // 70 of a, 3 of b, 130 of a, 1 of b, 5 of a: runs cross the 64-entry gather buffer
        // and groups of four.
        for (p, n) in [(&a, 70), (&b, 3), (&a, 130), (&b, 1), (&a, 5)] {
            for _ in 0..n {
                batch.push(p.alloc().unwrap()).ok().unwrap();
            }
        }
        assert_eq!((a.available(), b.available()), (512 - 205, 12));
        batch.clear();
        assert!(batch.is_empty());
        assert_eq!((a.available(), b.available()), (512, 16));
        // Every buffer came back exactly once: allocating them all again gives distinct ones.
        let mut again = PacketBatch::new(512);
        assert_eq!(a.alloc_into(&mut again), 512);
        let mut idx: Vec<u32> = again.iter().map(|p| p.buffer_index()).collect();
        idx.sort_unstable();
        idx.dedup();
        assert_eq!(idx.len(), 512);
    }
}
