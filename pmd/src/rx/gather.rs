//! The receive paths' vector code (x86-64, SSE2; SSE4.1 where the build has it):
//!
//! * [`Gather::take`] checks and notes descriptors four at a time: the common case, a ring
//!   full of good single-buffer frames, with vector compares and a few wide stores instead of
//!   descriptor by descriptor. Anything unusual in a group (a descriptor not done, an error
//!   bit, no EOP, a length of 0 or past the data room) makes it take nothing of that group, and
//!   the caller's descriptor-by-descriptor path, which knows how to classify and drop, deals
//!   with it.
//! * [`rearm_run`] re-arms a run of consecutive descriptors with their own buffers, and
//!   [`Gather::deliver_run`] turns a run of kept frames into packets with fresh buffers, four
//!   at a time.
//! * [`Gather::burst4`] is `rx_burst`'s four at a time: the same check, then four packets and
//!   four descriptors re-armed with fresh buffers.
//!
//! Reading the write-back (facts §6.1): DD and the status/error bits are dword 2, the length
//! bits 15:0 of dword 3, both in the descriptor's second qword. Each descriptor's qword is read
//! with one aligned 8-byte load, which x86-64 performs atomically, so the length is never read
//! before the DD it goes with: it comes from the same load. The device writes the length no
//! later than DD: the hardware writes the whole descriptor back in one go, and the model
//! (`floodgate-sim`) stores the qword in one aligned 8-byte store after the rest of the
//! descriptor (its fast feeder) or the length dword, a release fence, then the status dword
//! (its general receive path), so a load that sees its DD sees its length. The four
//! descriptors are loaded last first: the device completes them in ring order, so when the
//! last one is done the earlier ones are too, and a group that races with the device is
//! usually either all done or the first descriptors are (taken one by one). A group is taken
//! only when all four are good.
//!
//! On targets other than x86-64 there is no vector path: [`Gather::take`],
//! [`Gather::deliver_run`] and [`Gather::burst4`] take nothing, [`rearm_run`] works one
//! descriptor at a time, and the callers' scalar paths do the rest.

use super::judged::RxChunk;
use crate::mempool::{Packet, PoolCore};
use std::ptr::NonNull;

/// How the vector path checks and notes four descriptors: the constants, built once per queue
/// (see [`Gather::start`] for a burst's copy).
#[derive(Clone, Copy)]
pub(super) struct Gather {
    /// Whether the vector paths are on: on x86-64, unless the data room is 0.
    on: bool,
    #[cfg(target_arch = "x86_64")]
    v: x86::Consts,
    /// Sum of the lengths taken, per lane (u32 each: at most a burst's worth of frames).
    #[cfg(target_arch = "x86_64")]
    bytes: std::arch::x86_64::__m128i,
}

impl Gather {
    /// Whether [`Gather::take`] can take anything on this target.
    pub(super) const VECTOR: bool = cfg!(target_arch = "x86_64");

    /// For buffers of the pool `core` whose data starts at `va0 + index * stride` (device
    /// address `iova0 + index * stride`), holding at most `data_room` bytes. With a data room
    /// of 0 (or a stride of 4 GiB or more, which the vector multiply does not cover) the
    /// vector paths are off: everything goes the scalar way.
    pub(super) fn new(
        core: NonNull<PoolCore>,
        va0: *mut u8,
        iova0: u64,
        stride: usize,
        data_room: u32,
    ) -> Gather {
        let on = Self::VECTOR && data_room > 0 && u32::try_from(stride).is_ok();
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (core, va0, iova0, stride, data_room);
        Gather {
            on,
            #[cfg(target_arch = "x86_64")]
            v: x86::Consts::new(core, va0, iova0, stride, data_room, on),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: SSE2 is part of x86-64.
            bytes: unsafe { std::arch::x86_64::_mm_setzero_si128() },
        }
    }

    /// A copy for one burst, with no bytes counted yet.
    #[inline(always)]
    pub(super) fn start(&self) -> Gather {
        Gather {
            on: self.on,
            #[cfg(target_arch = "x86_64")]
            v: self.v,
            #[cfg(target_arch = "x86_64")]
            // SAFETY: SSE2 is part of x86-64.
            bytes: unsafe { std::arch::x86_64::_mm_setzero_si128() },
        }
    }

    /// Whether the vector paths are on (for [`rearm_run`] and [`Gather::deliver_run`]: their
    /// callers choose the scalar way when not, so that tests can compare the two).
    #[inline(always)]
    pub(super) fn on(&self) -> bool {
        self.on
    }

    /// Bytes of the frames taken so far.
    #[inline(always)]
    pub(super) fn bytes(&self) -> u64 {
        #[cfg(target_arch = "x86_64")]
        {
            x86::sum(self.bytes)
        }
        #[cfg(not(target_arch = "x86_64"))]
        0
    }

    /// Takes the frames of ring slots `s..s + n` (at `ring`) four at a time while all four of a
    /// group are good, noting them as chunk entries from `e` on (data pointer, length, slot).
    /// Returns how many were taken: a multiple of 4, at most `n`. The group after them (if
    /// `n` leaves room for one) has a descriptor that is not done or not good, and nothing of
    /// it was written.
    ///
    /// # Safety
    /// `ring` is the ring (16-byte aligned, device memory that stays mapped), `s + n` is at
    /// most its size, `bufs` holds the buffer index armed in each of those slots, and
    /// `e + n <= RX_CHUNK`.
    #[inline(always)]
    pub(super) unsafe fn take(
        &mut self,
        ring: *const u64,
        bufs: *const u32,
        s: usize,
        n: usize,
        chunk: &mut RxChunk<'_>,
        e: usize,
    ) -> usize {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: the caller's contract.
            unsafe { x86::take(&self.v, &mut self.bytes, ring, bufs, s, n, chunk, e) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (ring, bufs, s, n, chunk, e);
            0
        }
    }
}

impl Gather {
    /// `rx_burst`'s common case, four descriptors at a time: if the four descriptors from `d`
    /// on all hold good frames (as [`Gather::take`] checks them), the frames become packets
    /// `out[0..4]` (their buffers, as armed in `slot[0..4]`), and each slot gets the fresh
    /// buffer `fresh[0..4]` (in `slot` and in the descriptor: buffer address, header address
    /// 0, which clears DD; facts §6.1); returns true. Otherwise does nothing and returns false
    /// (always on targets other than x86-64).
    ///
    /// # Safety
    /// `d` is a descriptor of the ring with three more after it, `slot` the buffer indices
    /// armed in them, `fresh` four free buffers of the pool, `out` room for four packets.
    #[inline(always)]
    pub(super) unsafe fn burst4(
        &mut self,
        d: *mut u64,
        slot: *mut u32,
        fresh: *const u32,
        out: *mut Packet,
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: the caller's contract.
            unsafe { x86::burst4(&self.v, &mut self.bytes, d, slot, fresh, out) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (d, slot, fresh, out);
            false
        }
    }

    /// Delivers the first frames of a judged chunk whose frames sit in consecutive slots, four
    /// at a time, as if all were kept: frame i becomes packet `out + i` (its buffer, data
    /// pointer and length), its slot gets the fresh buffer `cache_top[-1 - i]` (in `bufs` and
    /// in the descriptor: buffer address, header address 0, which clears DD; facts §6.1).
    /// Returns how many frames it delivered: a multiple of 4, at most `n`; the caller delivers
    /// the rest one by one (and takes back out the dropped ones). Nothing on targets other
    /// than x86-64.
    ///
    /// # Safety
    /// `chunk` holds at least `n` frames, from the slots at `desc`/`bufs` on (inside the ring,
    /// completed, not handed back); `cache_top` has `n` entries below it, `out` room for `n`
    /// packets.
    #[inline(always)]
    pub(super) unsafe fn deliver_run(&self, chunk: &RxChunk<'_>, n: usize, to: &Delivery) -> usize {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: the caller's contract.
            unsafe { x86::deliver_run(&self.v, chunk, n, to) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (chunk, n, to);
            0
        }
    }
}

/// Re-arms the `n` consecutive descriptors from `d` on with the buffers whose data pointers are
/// `data[..n]`: packet buffer address `data + delta` (the pool's host-to-device offset), header
/// address 0, which clears DD (facts §6.1). On x86-64 four descriptors at a time, each with one
/// 16-byte store.
///
/// # Safety
/// `d` is a descriptor of the ring (16-byte aligned: rings are 128-byte aligned, facts §6.4)
/// with `n` descriptors from it inside the ring, not owned by the device; `data` points at `n`
/// initialised entries.
#[inline(always)]
pub(super) unsafe fn rearm_run(d: *mut u64, data: *const *const u8, n: usize, delta: u64) {
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller's contract: descriptors and data entries 4q..4q + 4 <= n. SSE2 is part
    // of x86-64.
    let done = unsafe {
        use std::arch::x86_64::*;
        let dv = _mm_set1_epi64x(delta as i64);
        let z = _mm_setzero_si128();
        let src = data as *const __m128i;
        let dst = d as *mut __m128i;
        for q in 0..n / 4 {
            let a = _mm_add_epi64(_mm_loadu_si128(src.add(2 * q)), dv);
            let b = _mm_add_epi64(_mm_loadu_si128(src.add(2 * q + 1)), dv);
            let p = dst.add(4 * q);
            p.write_volatile(_mm_unpacklo_epi64(a, z));
            p.add(1).write_volatile(_mm_unpackhi_epi64(a, z));
            p.add(2).write_volatile(_mm_unpacklo_epi64(b, z));
            p.add(3).write_volatile(_mm_unpackhi_epi64(b, z));
        }
        n & !3
    };
    for i in done..n {
        // SAFETY: the caller's contract: descriptor i < n and data entry i.
        unsafe {
            let p = d.add(2 * i);
            p.write_volatile((*data.add(i) as u64).wrapping_add(delta));
            p.add(1).write_volatile(0);
        }
    }
}

/// Where [`Gather::deliver_run`] puts the frames it delivers.
pub(super) struct Delivery {
    /// Descriptor of the first frame's slot; the others follow it.
    pub(super) desc: *mut u64,
    /// Buffer index armed in the first frame's slot; the others follow it.
    pub(super) bufs: *mut u32,
    /// One past the buffer cache's top entry: fresh buffers are taken from the top down.
    pub(super) cache_top: *const u32,
    /// The batch's first free packet slot.
    pub(super) out: *mut Packet,
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Delivery, NonNull, Packet, PoolCore, RxChunk};
    use crate::regs::*;
    use std::arch::x86_64::*;
    use std::sync::atomic::{fence, Ordering};

    /// The vector constants of a queue.
    #[derive(Clone, Copy)]
    pub(super) struct Consts {
        /// Status bits looked at (DD, EOP, errors) and the value they must have (DD, EOP).
        st_mask: __m128i,
        st_good: __m128i,
        /// Low word of each lane 1, high word 0: lane - one is the length minus 1 (bits
        /// 15:0), the VLAN tag untouched (bits 31:16).
        one: __m128i,
        /// Low word the largest good length minus 1 (at most 0xFFFE: a length of 0, minus 1,
        /// is 0xFFFF), high word 0xFFFF (any VLAN tag passes).
        len_max: __m128i,
        /// Length bits 15:0 of each lane.
        len_bits: __m128i,
        /// Buffer stride (low dword of each qword), data address of buffer 0 (host and
        /// device) and the pool's core (for packets).
        stride: __m128i,
        va0: __m128i,
        iova0: __m128i,
        core: __m128i,
    }

    impl Consts {
        /// See [`super::Gather::new`]; `on` false: [`take`] takes nothing.
        pub(super) fn new(
            core: NonNull<PoolCore>,
            va0: *mut u8,
            iova0: u64,
            stride: usize,
            data_room: u32,
            on: bool,
        ) -> Consts {
            // Off: no status can match (bit 2, FLM, is not looked at).
            let good = if !on {
                -1
            } else {
                (RXD_STAT_DD | RXD_STAT_EOP) as i32
            };
            let max = (data_room.saturating_sub(1)).min(0xFFFE);
            // SAFETY: SSE2 is part of x86-64.
            unsafe {
                Consts {
                    st_mask: _mm_set1_epi32((RXD_STAT_DD | RXD_STAT_EOP | RXD_ERR_MASK) as i32),
                    st_good: _mm_set1_epi32(good),
                    one: _mm_set1_epi32(1),
                    len_max: _mm_set1_epi32((0xFFFF_0000 | max) as i32),
                    len_bits: _mm_set1_epi32(0xFFFF),
                    // Below 4 GiB (else off): bits 31:0 multiplied by PMULUDQ are all of it.
                    stride: _mm_set1_epi64x(stride as i64),
                    va0: _mm_set1_epi64x(va0 as i64),
                    iova0: _mm_set1_epi64x(iova0 as i64),
                    core: _mm_set1_epi64x(core.as_ptr() as i64),
                }
            }
        }
    }

    /// Sum of the four u32 lanes.
    #[inline(always)]
    pub(super) fn sum(v: __m128i) -> u64 {
        // SAFETY: SSE2 is part of x86-64.
        unsafe {
            let lo = _mm_unpacklo_epi32(v, _mm_setzero_si128());
            let hi = _mm_unpackhi_epi32(v, _mm_setzero_si128());
            let s = _mm_add_epi64(lo, hi);
            (_mm_cvtsi128_si64(s) as u64)
                .wrapping_add(_mm_cvtsi128_si64(_mm_unpackhi_epi64(s, s)) as u64)
        }
    }

    /// See [`super::Gather::take`].
    ///
    /// # Safety
    /// As there.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) unsafe fn take(
        c: &Consts,
        bytes: &mut __m128i,
        ring: *const u64,
        bufs: *const u32,
        s: usize,
        n: usize,
        chunk: &mut RxChunk<'_>,
        e: usize,
    ) -> usize {
        let groups = n / 4;
        // SAFETY: SSE2 is part of x86-64 (SSE4.1 where compiled in). Pointers: group g covers
        // slots s + 4g..s + 4g + 4 <= s + n <= ring size (descriptors at `d`, indices at `b`)
        // and chunk entries e + 4g.. + 4 <= e + n <= RX_CHUNK (at `data`, `len`, `slot`).
        unsafe {
            let mut d = ring.add(2 * s + 1);
            let b = bufs.add(s);
            let data = chunk.data.as_mut_ptr().add(e) as *mut __m128i;
            let len = chunk.len.as_mut_ptr().add(e) as *mut __m128i;
            let slot = chunk.slot.as_mut_ptr().add(e) as *mut __m128i;
            let mut slots = _mm_add_epi32(_mm_set1_epi32(s as i32), _mm_set_epi32(3, 2, 1, 0));
            let mut g = 0;
            while g < groups {
                let Some(l) = check4(c, d) else {
                    break;
                };
                *bytes = _mm_add_epi32(*bytes, l);
                let (p01, p23) = data4(c, b.add(4 * g));
                _mm_storeu_si128(data.add(2 * g), p01);
                _mm_storeu_si128(data.add(2 * g + 1), p23);
                _mm_storeu_si128(len.add(g), l);
                _mm_storeu_si128(slot.add(g), slots);
                slots = _mm_add_epi32(slots, _mm_set1_epi32(4));
                d = d.add(8);
                g += 1;
            }
            4 * g
        }
    }

    /// See [`super::Gather::deliver_run`].
    ///
    /// # Safety
    /// As there.
    #[inline(always)]
    pub(super) unsafe fn deliver_run(
        c: &Consts,
        chunk: &RxChunk<'_>,
        n: usize,
        to: &Delivery,
    ) -> usize {
        let groups = n / 4;
        // SAFETY: SSE2 is part of x86-64. Group g covers frames, slots, cache entries (below
        // the top) and packets 4g..4g + 4 <= n: inside what the caller vouches for.
        unsafe {
            let data = chunk.data.as_ptr() as *const __m128i;
            let len = chunk.len.as_ptr() as *const __m128i;
            let bufs = to.bufs as *mut __m128i;
            let cache = to.cache_top as *const __m128i;
            for g in 0..groups {
                // Fresh buffers: the four entries below the top, top one first.
                let nb = _mm_shuffle_epi32::<0b00_01_10_11>(_mm_loadu_si128(cache.sub(g + 1)));
                let old = _mm_loadu_si128(bufs.add(g));
                _mm_storeu_si128(bufs.add(g), nb);
                arm4(c, to.desc.add(8 * g), nb);
                packets4(
                    c,
                    to.out.add(4 * g),
                    _mm_loadu_si128(data.add(2 * g)),
                    _mm_loadu_si128(data.add(2 * g + 1)),
                    old,
                    _mm_loadu_si128(len.add(g)),
                );
            }
        }
        4 * groups
    }

    /// See [`super::Gather::burst4`].
    ///
    /// # Safety
    /// As there.
    #[inline(always)]
    pub(super) unsafe fn burst4(
        c: &Consts,
        bytes: &mut __m128i,
        d: *mut u64,
        slot: *mut u32,
        fresh: *const u32,
        out: *mut Packet,
    ) -> bool {
        // SAFETY: SSE2 is part of x86-64; the pointers as the caller vouches.
        unsafe {
            let Some(l) = check4(c, d.add(1)) else {
                return false;
            };
            *bytes = _mm_add_epi32(*bytes, l);
            let (p01, p23) = data4(c, slot);
            let old = _mm_loadu_si128(slot as *const __m128i);
            let nb = _mm_loadu_si128(fresh as *const __m128i);
            _mm_storeu_si128(slot as *mut __m128i, nb);
            arm4(c, d, nb);
            packets4(c, out, p01, p23, old, l);
            true
        }
    }

    /// The lengths of the four descriptors whose second qwords are at `q`, `q + 2`, `q + 4`,
    /// `q + 6`, if all four hold good frames: DD and EOP set, no error bit, 1 <= length <=
    /// data room.
    ///
    /// # Safety
    /// `q` is qword 1 of a descriptor of the ring, with three more descriptors after it.
    #[inline(always)]
    unsafe fn check4(c: &Consts, q: *const u64) -> Option<__m128i> {
        // SAFETY: the caller's contract; SSE2 is part of x86-64 (SSE4.1 where compiled in).
        unsafe {
            // Qword 1 of each descriptor, last descriptor first (see the module comment): one
            // 8-byte load each, volatile because the device writes them.
            let q3 = _mm_cvtsi64_si128(q.add(6).read_volatile() as i64);
            let q2 = _mm_cvtsi64_si128(q.add(4).read_volatile() as i64);
            let q1 = _mm_cvtsi64_si128(q.add(2).read_volatile() as i64);
            let q0 = _mm_cvtsi64_si128(q.read_volatile() as i64);
            // Nothing of the frames is read before their DD was seen (Linux: dma_rmb()).
            fence(Ordering::Acquire);
            // [st0 lv0 st1 lv1] and [st2 lv2 st3 lv3] (lv: length | VLAN << 16), then the
            // four status dwords and the four length dwords.
            let q01 = _mm_castsi128_ps(_mm_unpacklo_epi64(q0, q1));
            let q23 = _mm_castsi128_ps(_mm_unpacklo_epi64(q2, q3));
            let st = _mm_castps_si128(_mm_shuffle_ps::<0b10_00_10_00>(q01, q23));
            let lv = _mm_castps_si128(_mm_shuffle_ps::<0b11_01_11_01>(q01, q23));
            // DD and EOP set, no error bit: all ones per good lane.
            let st_ok = _mm_cmpeq_epi32(_mm_and_si128(st, c.st_mask), c.st_good);
            // 1 <= length <= data room, as length - 1 (wrapping in 16 bits) <= data room - 1,
            // unsigned: the saturating difference is 0. The high words (VLAN - 0, saturated
            // by 0xFFFF) are always 0.
            let over = _mm_subs_epu16(_mm_sub_epi16(lv, c.one), c.len_max);
            let ok = _mm_and_si128(st_ok, _mm_cmpeq_epi16(over, _mm_setzero_si128()));
            #[cfg(target_feature = "sse4.1")]
            let all = _mm_test_all_ones(ok) != 0;
            #[cfg(not(target_feature = "sse4.1"))]
            let all = _mm_movemask_epi8(ok) == 0xFFFF;
            all.then(|| _mm_and_si128(lv, c.len_bits))
        }
    }

    /// Data pointers of the four buffers whose indices are at `b`: `va0 + index * stride`.
    ///
    /// # Safety
    /// `b` points at four readable u32.
    #[inline(always)]
    unsafe fn data4(c: &Consts, b: *const u32) -> (__m128i, __m128i) {
        // SAFETY: the caller's contract; SSE2 is part of x86-64.
        unsafe {
            let (b01, b23) = widen(b);
            (
                _mm_add_epi64(c.va0, _mm_mul_epu32(b01, c.stride)),
                _mm_add_epi64(c.va0, _mm_mul_epu32(b23, c.stride)),
            )
        }
    }

    /// Arms the four descriptors from `d` on with the buffers `nb`: buffer address `iova0 +
    /// index * stride`, header address 0 (clears DD; facts §6.1), one 16-byte store each.
    ///
    /// # Safety
    /// `d` is a descriptor of the ring (16-byte aligned) with three more after it, none owned
    /// by the device.
    #[inline(always)]
    unsafe fn arm4(c: &Consts, d: *mut u64, nb: __m128i) {
        // SAFETY: the caller's contract; SSE2 is part of x86-64.
        unsafe {
            let z = _mm_setzero_si128();
            let a01 = _mm_add_epi64(c.iova0, _mm_mul_epu32(_mm_unpacklo_epi32(nb, z), c.stride));
            let a23 = _mm_add_epi64(c.iova0, _mm_mul_epu32(_mm_unpackhi_epi32(nb, z), c.stride));
            let d = d as *mut __m128i;
            d.write_volatile(_mm_unpacklo_epi64(a01, z));
            d.add(1).write_volatile(_mm_unpackhi_epi64(a01, z));
            d.add(2).write_volatile(_mm_unpacklo_epi64(a23, z));
            d.add(3).write_volatile(_mm_unpackhi_epi64(a23, z));
        }
    }

    /// Writes packets `out[0..4]`: data pointers `p01`, `p23`, buffer indices `old`, lengths
    /// `l`, the pool's core. Packet is repr(C): data, core, index, len at offsets 0, 8, 16, 20
    /// of 24 bytes (asserted in `mempool`).
    ///
    /// # Safety
    /// `out` has room for four packets (written without dropping anything there).
    #[inline(always)]
    unsafe fn packets4(
        c: &Consts,
        out: *mut Packet,
        p01: __m128i,
        p23: __m128i,
        old: __m128i,
        l: __m128i,
    ) {
        // SAFETY: the caller's contract; SSE2 is part of x86-64.
        unsafe {
            let il01 = _mm_unpacklo_epi32(old, l);
            let il23 = _mm_unpackhi_epi32(old, l);
            let out = out as *mut u8;
            _mm_storeu_si128(out as *mut __m128i, _mm_unpacklo_epi64(p01, c.core));
            _mm_storel_epi64(out.add(16) as *mut __m128i, il01);
            _mm_storeu_si128(out.add(24) as *mut __m128i, _mm_unpackhi_epi64(p01, c.core));
            _mm_storeh_pd(out.add(40) as *mut f64, _mm_castsi128_pd(il01));
            _mm_storeu_si128(out.add(48) as *mut __m128i, _mm_unpacklo_epi64(p23, c.core));
            _mm_storel_epi64(out.add(64) as *mut __m128i, il23);
            _mm_storeu_si128(out.add(72) as *mut __m128i, _mm_unpackhi_epi64(p23, c.core));
            _mm_storeh_pd(out.add(88) as *mut f64, _mm_castsi128_pd(il23));
        }
    }

    /// The four u32 at `p` as two pairs of u64.
    ///
    /// # Safety
    /// `p` points at four readable u32.
    #[inline(always)]
    unsafe fn widen(p: *const u32) -> (__m128i, __m128i) {
        #[cfg(target_feature = "sse4.1")]
        // SAFETY: the caller's contract; two 8-byte loads, zero-extended (PMOVZXDQ). SSE4.1
        // is compiled in.
        unsafe {
            (
                _mm_cvtepu32_epi64(_mm_loadl_epi64(p as *const __m128i)),
                _mm_cvtepu32_epi64(_mm_loadl_epi64(p.add(2) as *const __m128i)),
            )
        }
        #[cfg(not(target_feature = "sse4.1"))]
        // SAFETY: the caller's contract; SSE2 is part of x86-64.
        unsafe {
            let b = _mm_loadu_si128(p as *const __m128i);
            let z = _mm_setzero_si128();
            (_mm_unpacklo_epi32(b, z), _mm_unpackhi_epi32(b, z))
        }
    }
}

#[cfg(test)]
mod tests;
