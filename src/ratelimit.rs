//! Token buckets keyed by source address, source prefix or flow, in a table of fixed capacity.
//!
//! The table is set-associative: a key's hash picks one set of [`WAYS`] slots. A key that is not
//! present takes a free slot in its set or, when the set is full, evicts the slot that was least
//! recently seen (LRU within the set). The table never grows: its memory is allocated once, when
//! the limiter is built. An evicted key that comes back starts again with a full bucket; with a
//! table sized to the number of active sources this is rare, and when a flood of spoofed sources
//! churns the table, each spoofed source is limited to one burst per eviction cycle.
//!
//! The hash is one multiplication: `(key ^ seed) * mult`, with `seed` and `mult` (odd) drawn at
//! random when the table is built, and the set taken from the product's top bits. This is the
//! multiply-shift scheme of Dietzfelbinger et al.: for any two different keys, the chance over
//! the random odd multiplier that they land in the same set is at most 2 / (number of sets), so
//! a sender who cannot see `mult` cannot aim sources at one set; a fixed mixer such as splitmix
//! costs two multiplications and, being public, gives no such bound. Multiplying by an odd number
//! is a bijection on `u64`, so the product identifies the key exactly: the slot's tag is the
//! product with the set bits (equal for every key of a set) replaced by ones, which is never 0,
//! the mark of a free slot.
//!
//! The pairwise bound says nothing about runs of neighbouring keys, such as the sources of a
//! spoofed prefix: about 3 random odd multipliers in 100 send such a run to a few sets (up to
//! 85 keys in one 4-way set in a run of 4096, where a good multiplier gives 6 to 8). A new table
//! therefore measures its multiplier on runs of consecutive keys and of /24 and /16 strides and
//! draws again, a few times at most, until the fullest set holds at most 10 of them (a few
//! thousand hashes, once per table; nothing per packet).
//!
//! Batches: [`TokenBucketTable::locate_each`] (or [`TokenBucketTable::locate_all`] for a whole
//! column of IPv4 sources) hashes up to [`BATCH`] keys, starts loading their sets and keeps
//! each one's tag and set offset in the table; [`TokenBucketTable::allow_each`] then takes their
//! tokens in lane order, so that a batch decides exactly as [`TokenBucketTable::allow`] key by
//! key, with the set loads of the whole batch under way before the first is needed.
//!
//! Arithmetic is in integers: one token is 10⁹ "nanotokens", so that a rate in packets per second
//! refills `rate` nanotokens per elapsed nanosecond. A key seen again after the time an empty
//! bucket takes to fill (or longer) has a full bucket; below that time the refill cannot
//! overflow, so it needs no saturating steps.
//!
//! ```
//! use floodgate::ratelimit::TokenBucketTable;
//! let mut t = TokenBucketTable::new(1000, 2, 64); // 1000 pps, bursts of 2, 64 keys
//! assert!(t.allow(7, 0));
//! assert!(t.allow(7, 0));
//! assert!(!t.allow(7, 0)); // bucket empty
//! assert!(t.allow(7, 1_000_000)); // 1 ms later: one token back
//! assert!(t.allow(8, 0)); // another key has its own bucket
//! ```

use std::hash::BuildHasher;

/// Slots per set.
pub const WAYS: usize = 4;
/// Fewest sets a table has (so that at least one bit of the hash picks the set; see
/// [`table_capacity`]).
const MIN_SETS: usize = 2;
const NANO: u64 = 1_000_000_000;
/// Largest burst in tokens; a larger one is taken as this. With the rate at most the bucket's
/// capacity (see [`TokenBucketTable::new`]), `tokens + elapsed * rate` then stays below
/// 3 · 2³² · 10⁹ < 2⁶⁴.
pub const MAX_BURST: u64 = 1 << 32;
/// Keys in one batch of [`TokenBucketTable::locate_each`] and [`TokenBucketTable::allow_each`]
/// (one bit each in a `u32` mask).
pub const BATCH: usize = 32;

#[derive(Clone, Copy, Default)]
struct Slot {
    /// The key's tag (see [`TokenBucketTable::probe`]); 0 marks a free slot.
    tag: u64,
    /// Nanotokens in the bucket.
    tokens: u64,
    /// Last time the key was seen (nanoseconds).
    last: u64,
}

/// Bytes of one key's slot.
pub const SLOT_BYTES: usize = std::mem::size_of::<Slot>();

/// Keys a [`TokenBucketTable`] built for `capacity` keys holds: `capacity` rounded up to a power
/// of two, at least 2 × [`WAYS`] (two sets). `None` when that does not fit in a `usize`.
pub fn table_capacity(capacity: usize) -> Option<usize> {
    capacity.max(MIN_SETS * WAYS).checked_next_power_of_two()
}

/// Memory a [`TokenBucketTable`] for `capacity` keys takes (its slots, after rounding the
/// capacity up like [`table_capacity`]); each worker has its own tables.
pub fn table_bytes(capacity: usize) -> usize {
    table_capacity(capacity)
        .unwrap_or(usize::MAX)
        .saturating_mul(SLOT_BYTES)
}

/// A bounded table of token buckets. See the [module documentation](self).
#[derive(Clone)]
pub struct TokenBucketTable {
    sets: Box<[[Slot; WAYS]]>,
    /// 64 − log2(number of sets), in 1..=63: `hash >> shift` is a set index, in range for every
    /// hash.
    shift: u32,
    /// The top `64 - shift` bits: the bits that pick the set, set to one in every tag.
    set_bits: u64,
    seed: u64,
    /// Odd.
    mult: u64,
    /// Nanotokens per nanosecond, at most `cap`.
    rate: u64,
    /// Nanotokens in a full bucket, `burst` × 10⁹.
    cap: u64,
    /// Nanoseconds an empty bucket takes to fill, ⌈cap / rate⌉ (`u64::MAX`, never, when `rate`
    /// is 0): from that much elapsed time on, a bucket is full.
    fill: u64,
    evictions: u64,
    inserts: u64,
    /// The keys of the batch being worked on (see [`TokenBucketTable::locate_each`]).
    batch: Located,
}

/// The keys of a batch located in their table: lane `i`'s tag, and the byte offset of its set
/// from the first set. Written only by the table's own `locate_*` methods, so every offset is
/// that of one of its sets (0 until a lane is located).
#[derive(Clone)]
struct Located {
    tag: [u64; BATCH],
    off: [usize; BATCH],
}

/// The crowding ([`TokenBucketTable::crowding`]) a new table accepts its multiplier with;
/// good multipliers give 6 to 8, the worst over 80.
const CROWDED: usize = 10;
/// Multipliers a new table draws beyond its first, at most.
const MULT_DRAWS: u64 = 16;

/// Bytes of one set.
const SET_BYTES: usize = std::mem::size_of::<[Slot; WAYS]>();

impl std::fmt::Debug for TokenBucketTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenBucketTable")
            .field("capacity", &self.capacity())
            .field("rate", &self.rate)
            .field("burst", &(self.cap / NANO))
            .field("evictions", &self.evictions)
            .finish()
    }
}

impl TokenBucketTable {
    /// A table for `capacity` keys (see [`table_capacity`]), each allowed `rate_pps` packets per
    /// second with bursts of `burst` packets (at least 1, at most [`MAX_BURST`]).
    pub fn new(rate_pps: u64, burst: u64, capacity: usize) -> Self {
        let random = std::collections::hash_map::RandomState::new();
        let mut t = Self::with_keys(
            rate_pps,
            burst,
            capacity,
            random.hash_one(0u64),
            random.hash_one(1u64),
        );
        // A few odd multipliers in a hundred crowd runs of neighbouring keys (a spoofed prefix
        // sweeps one) into a handful of sets: draw again, a few times at most, keeping the
        // best spread (a few thousand hashes, once per table).
        let mut best = (t.crowding(), t.mult);
        for draw in 2..MULT_DRAWS + 2 {
            if best.0 <= CROWDED {
                break;
            }
            t.mult = random.hash_one(draw) | 1;
            best = best.min((t.crowding(), t.mult));
        }
        t.mult = best.1;
        t
    }

    /// The most keys one set gets from runs of neighbouring keys (as many as the table holds,
    /// at most 16384): `0, s, 2s, ...` for the strides `s` of consecutive IPv4 addresses, /24
    /// and /16 networks, mixed with the table's seed like real keys.
    fn crowding(&self) -> usize {
        let keys = (self.sets.len() * WAYS).min(1 << 14) as u64;
        let mut per_set = vec![0u16; self.sets.len()];
        let mut worst = 0;
        for stride in [1u64, 1 << 8, 1 << 16] {
            per_set.fill(0);
            for j in 0..keys {
                let hash = (j.wrapping_mul(stride) ^ self.seed).wrapping_mul(self.mult);
                if let Some(n) = per_set.get_mut(self.set_of(hash)) {
                    *n = n.saturating_add(1);
                    worst = worst.max(usize::from(*n));
                }
            }
        }
        worst
    }

    /// Hashes keys as `other` does from now on (its seed and multiplier). Meant for an empty
    /// table: keys already stored would be looked for in the wrong sets.
    pub fn hash_like(&mut self, other: &TokenBucketTable) {
        self.seed = other.seed;
        self.mult = other.mult;
    }

    /// [`TokenBucketTable::new`] with the hash's seed and multiplier given (`mult` is made odd).
    fn with_keys(rate_pps: u64, burst: u64, capacity: usize, seed: u64, mult: u64) -> Self {
        // Past usize, the largest power of two: its allocation fails as any oversized one does.
        let sets = table_capacity(capacity).unwrap_or(1 << (usize::BITS - 1)) / WAYS;
        let cap = burst.clamp(1, MAX_BURST) * NANO;
        // A rate above the capacity fills the bucket in one nanosecond either way.
        let rate = rate_pps.min(cap);
        TokenBucketTable {
            sets: vec![[Slot::default(); WAYS]; sets].into_boxed_slice(),
            shift: 64 - sets.trailing_zeros(),
            set_bits: !(u64::MAX >> sets.trailing_zeros()),
            seed,
            mult: mult | 1,
            rate,
            cap,
            fill: if rate == 0 {
                u64::MAX
            } else {
                cap.div_ceil(rate)
            },
            evictions: 0,
            inserts: 0,
            batch: Located {
                tag: [0; BATCH],
                off: [0; BATCH],
            },
        }
    }

    /// Number of keys the table holds.
    pub fn capacity(&self) -> usize {
        self.sets.len() * WAYS
    }

    /// Keys evicted to make room for new ones so far.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Keys inserted so far (evictions included).
    pub fn inserts(&self) -> u64 {
        self.inserts
    }

    /// Forgets every key.
    pub fn clear(&mut self) {
        self.sets.fill([Slot::default(); WAYS]);
    }

    /// Where `key` lives: its seeded hash, which gives its set and its tag. Pass the result to
    /// [`TokenBucketTable::prefetch`] early and to [`TokenBucketTable::allow_at`] later, so that
    /// the table lookups of a burst can be started before the first of them is needed.
    #[inline(always)]
    pub fn probe(&self, key: u64) -> Probe {
        self.probe_of((key ^ self.seed).wrapping_mul(self.mult))
    }

    /// The probe of a key's seeded hash: its tag, and its set (from the top bits).
    #[inline(always)]
    fn probe_of(&self, hash: u64) -> Probe {
        Probe {
            tag: hash | self.set_bits,
            set: self.set_of(hash),
        }
    }

    /// The set of a hash, always below `self.sets.len()`.
    #[inline(always)]
    fn set_of(&self, hash: u64) -> usize {
        (hash >> self.shift) as usize
    }

    /// Asks the CPU to start loading `probe`'s set (a hint; does nothing where there is no
    /// prefetch instruction).
    #[inline(always)]
    pub fn prefetch(&self, probe: Probe) {
        prefetch_line(
            self.sets
                .as_ptr()
                .wrapping_add(probe.set & self.set_mask())
                .cast(),
        );
    }

    /// Takes one token from `key`'s bucket at time `now` (nanoseconds, any monotonic or wall
    /// clock; a clock that goes backwards refills nothing). Returns `false` when the bucket is
    /// empty, i.e. the packet is over the limit.
    #[inline]
    pub fn allow(&mut self, key: u64, now: u64) -> bool {
        let p = self.probe(key);
        self.allow_at(p, now)
    }

    /// The largest set index (the number of sets is a power of two).
    #[inline(always)]
    fn set_mask(&self) -> usize {
        self.sets.len() - 1
    }

    /// [`TokenBucketTable::allow`] for a key already located with [`TokenBucketTable::probe`].
    #[inline(always)]
    pub fn allow_at(&mut self, probe: Probe, now: u64) -> bool {
        let (rate, cap, fill) = (self.rate, self.cap, self.fill);
        let set = probe.set & self.set_mask();
        // SAFETY: the number of sets is a power of two (`with_keys`), so `set` is below
        // sets.len() for every probe, including one from another table.
        let ways = unsafe { self.sets.get_unchecked_mut(set) };
        match take(ways, probe.tag, now, rate, cap, fill) {
            Some(allowed) => allowed,
            None => self.insert_new(probe, now),
        }
    }

    /// Puts the key of `probe`, not in its set, into the table with a full bucket less the
    /// token its first packet takes (out of line: a key's first packet only). Always allows.
    #[cold]
    #[inline(never)]
    fn insert_new(&mut self, probe: Probe, now: u64) -> bool {
        let set = probe.set & self.set_mask();
        let tokens = self.cap - NANO;
        if let Some(ways) = self.sets.get_mut(set) {
            if insert(ways, probe.tag, tokens, now) {
                self.evictions += 1;
            }
            self.inserts += 1;
        }
        true
    }

    /// Locates the keys of a batch and starts loading their sets: for each bit `i` of `mask`,
    /// lane `i` of the batch becomes `key(i)` (see [`TokenBucketTable::probe`] and
    /// [`TokenBucketTable::prefetch`]). Then [`TokenBucketTable::allow_each`] takes their tokens.
    #[inline(always)]
    pub fn locate_each(&mut self, mut mask: u32, mut key: impl FnMut(usize) -> u64) {
        while mask != 0 {
            let i = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            self.locate_lane(i, key(i));
        }
    }

    /// [`TokenBucketTable::locate_each`] for every lane of a batch, the key of lane `i` being
    /// `high | (col[i] & mask)` (`high` with its low 32 bits clear): a straight loop with no
    /// mask to walk, for batches where most lanes are wanted (the other lanes are located and
    /// not used).
    #[inline(always)]
    pub fn locate_all(&mut self, col: &[u32; BATCH], mask: u32, high: u64) {
        // `high` and the masked value share no bit, so the key is also their XOR, and `high`
        // folds into the seed once for the batch.
        let hs = (high & !u64::from(u32::MAX)) ^ self.seed;
        // The vector form multiplies set indexes as 32-bit numbers.
        #[cfg(all(target_arch = "x86_64", target_feature = "sse4.1"))]
        if self.sets.len() <= 1 << 32 {
            self.locate_all_sse(col, mask, hs);
            return;
        }
        self.locate_all_scalar(col, mask, hs);
    }

    /// [`TokenBucketTable::locate_all`] lane by lane, with `hs` the high bits XOR the seed.
    #[inline(always)]
    fn locate_all_scalar(&mut self, col: &[u32; BATCH], mask: u32, hs: u64) {
        let lane = |t: &mut Self, i: usize| {
            let i = i & (BATCH - 1);
            t.locate_hash(i, (u64::from(col[i] & mask) ^ hs).wrapping_mul(t.mult));
        };
        // Two lanes per step: the loop's own count and branch are paid half as often.
        for i in (0..BATCH).step_by(2) {
            lane(self, i);
            lane(self, i + 1);
        }
    }

    /// [`TokenBucketTable::locate_all`] four lanes at a time in SSE registers, with `hs` the
    /// high bits XOR the seed. The 64-bit product `(lo + hi·2³²) · (m_lo + m_hi·2³²)` of a key
    /// whose high half `hi` is the same for every lane is `lo·m_lo + 2³²·(lo·m_hi + hi·m_lo)`
    /// modulo 2⁶⁴: two 32 × 32 → 64-bit multiplies for the first term (lanes 0 and 2, then 1
    /// and 3) and one 32-bit multiply for the second, whose `hi·m_lo` is one constant.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse4.1"))]
    #[inline(always)]
    fn locate_all_sse(&mut self, col: &[u32; BATCH], mask: u32, hs: u64) {
        use std::arch::x86_64::*;
        let (m_lo, m_hi) = (self.mult as u32, (self.mult >> 32) as u32);
        let (h_lo, h_hi) = (hs as u32, (hs >> 32) as u32);
        let base = self.sets.as_ptr().cast::<u8>();
        let (tag, off) = (self.batch.tag.as_mut_ptr(), self.batch.off.as_mut_ptr());
        // SAFETY: SSE2 to SSE4.1 are enabled for this build (the cfg above). The loads read
        // lanes 4g..4g + 4 of `col` and the stores write lanes 4g..4g + 4 of the batch's arrays
        // (g < BATCH / 4), all in bounds; `off` is a `usize` array, 64 bits wide on x86-64.
        // Each offset is `(hash >> shift) * SET_BYTES` with `hash >> shift` below sets.len(),
        // as `locate_hash` computes it, so the prefetches point into the table.
        unsafe {
            let vmask = _mm_set1_epi32(mask as i32);
            let vh_lo = _mm_set1_epi32(h_lo as i32);
            let vm_lo = _mm_set1_epi32(m_lo as i32);
            let vm_hi = _mm_set1_epi32(m_hi as i32);
            let cross0 = _mm_set1_epi32(h_hi.wrapping_mul(m_lo) as i32);
            let high_dwords = _mm_set1_epi64x(0xffff_ffff_0000_0000u64 as i64);
            let set_bits = _mm_set1_epi64x(self.set_bits as i64);
            let shift = _mm_cvtsi32_si128(self.shift as i32);
            let set_bytes = _mm_set1_epi64x(SET_BYTES as i64);
            for g in 0..BATCH / 4 {
                let c = _mm_loadu_si128(col.as_ptr().add(4 * g).cast());
                let lo = _mm_xor_si128(_mm_and_si128(c, vmask), vh_lo);
                let p02 = _mm_mul_epu32(lo, vm_lo);
                let p13 = _mm_mul_epu32(_mm_srli_epi64::<32>(lo), vm_lo);
                let cross = _mm_add_epi32(_mm_mullo_epi32(lo, vm_hi), cross0);
                let h02 = _mm_add_epi64(p02, _mm_slli_epi64::<32>(cross));
                let h13 = _mm_add_epi64(p13, _mm_and_si128(cross, high_dwords));
                let h01 = _mm_unpacklo_epi64(h02, h13);
                let h23 = _mm_unpackhi_epi64(h02, h13);
                _mm_storeu_si128(tag.add(4 * g).cast(), _mm_or_si128(h01, set_bits));
                _mm_storeu_si128(tag.add(4 * g + 2).cast(), _mm_or_si128(h23, set_bits));
                let s01 = _mm_srl_epi64(h01, shift);
                let s23 = _mm_srl_epi64(h23, shift);
                // Set indexes are below 2³² (checked by the caller): one 32 × 32-bit multiply.
                let o01 = _mm_mul_epu32(s01, set_bytes);
                let o23 = _mm_mul_epu32(s23, set_bytes);
                _mm_storeu_si128(off.add(4 * g).cast(), o01);
                _mm_storeu_si128(off.add(4 * g + 2).cast(), o23);
                prefetch_line(base.add(_mm_cvtsi128_si64(o01) as usize).cast());
                prefetch_line(base.add(_mm_extract_epi64::<1>(o01) as usize).cast());
                prefetch_line(base.add(_mm_cvtsi128_si64(o23) as usize).cast());
                prefetch_line(base.add(_mm_extract_epi64::<1>(o23) as usize).cast());
            }
        }
    }

    /// Lane `i` of the batch becomes `key`, and its set starts loading.
    #[inline(always)]
    fn locate_lane(&mut self, i: usize, key: u64) {
        self.locate_hash(i, (key ^ self.seed).wrapping_mul(self.mult));
    }

    /// Lane `i` of the batch becomes the key of seeded hash `hash`, and its set starts loading.
    #[inline(always)]
    fn locate_hash(&mut self, i: usize, hash: u64) {
        let off = self.set_of(hash) * SET_BYTES;
        prefetch_line(self.sets.as_ptr().cast::<u8>().wrapping_add(off).cast());
        let i = i & (BATCH - 1);
        self.batch.tag[i] = hash | self.set_bits;
        self.batch.off[i] = off;
    }

    /// [`TokenBucketTable::allow`] for the batch's lanes in `mask` (located by
    /// [`TokenBucketTable::locate_each`] or [`TokenBucketTable::locate_all`]), one by one in
    /// lane order. Returns the mask of the lanes over their limit. Out of line, so that the loop
    /// keeps the table's fields in registers whatever the caller holds.
    #[inline(never)]
    pub fn allow_each(&mut self, mut mask: u32, now: u64) -> u32 {
        let (rate, cap, fill) = (self.rate, self.cap, self.fill);
        let base = self.sets.as_mut_ptr().cast::<u8>();
        let mut limited = 0u32;
        while mask != 0 {
            let i = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            let (tag, off) = (
                self.batch.tag[i & (BATCH - 1)],
                self.batch.off[i & (BATCH - 1)],
            );
            // SAFETY: `off` was written by `locate_lane` (or is the initial 0): the offset of
            // set `hash >> shift`, below sets.len() (see `set_of`), from the first set; the
            // slots are only reached through this reference until it ends with `take`.
            let ways = unsafe { &mut *base.add(off).cast::<[Slot; WAYS]>() };
            let allowed = match take(ways, tag, now, rate, cap, fill) {
                Some(allowed) => allowed,
                None => self.insert_new(
                    Probe {
                        tag,
                        set: off / SET_BYTES,
                    },
                    now,
                ),
            };
            if !allowed {
                limited |= 1 << i;
            }
        }
        limited
    }
}

/// Takes a token from the bucket tagged `tag` in `ways` at `now`: whether one was there, or
/// `None` when no slot has that tag.
#[inline(always)]
fn take(
    ways: &mut [Slot; WAYS],
    tag: u64,
    now: u64,
    rate: u64,
    cap: u64,
    fill: u64,
) -> Option<bool> {
    let s = ways.iter_mut().find(|s| s.tag == tag)?;
    Some(refill_take(s, now, rate, cap, fill))
}

/// Refills the bucket `s` for the time since its key was last seen (nothing when the clock
/// went backwards; full after `fill` nanoseconds or more) and takes one token if it has one.
/// Returns whether it had. Below `fill`, `elapsed * rate < cap + rate <= 2 * cap` and
/// `tokens <= cap`, so the sum stays below 3 · MAX_BURST · 10⁹ < 2⁶⁴. The branches follow the
/// common case (time went forwards, less than a fill, a token left), which costs one compare
/// each.
#[inline(always)]
fn refill_take(s: &mut Slot, now: u64, rate: u64, cap: u64, fill: u64) -> bool {
    let tokens = match now.checked_sub(s.last) {
        Some(elapsed) => {
            s.last = now;
            if elapsed < fill {
                let mut t = s.tokens + elapsed * rate;
                if t > cap {
                    t = cap;
                }
                t
            } else if rate == 0 {
                // Never refilled (`fill` is `u64::MAX`; this is an elapsed time of exactly that).
                s.tokens
            } else {
                cap
            }
        }
        None => s.tokens,
    };
    match tokens.checked_sub(NANO) {
        Some(left) => {
            s.tokens = left;
            true
        }
        None => {
            s.tokens = tokens;
            false
        }
    }
}

/// Puts a new key in `ways` with `tokens`, in a free slot or in place of the least recently seen
/// key (the first of them on a tie). Returns whether a key was evicted.
fn insert(ways: &mut [Slot; WAYS], tag: u64, tokens: u64, now: u64) -> bool {
    let mut victim = 0;
    let mut oldest = u64::MAX;
    for (i, s) in ways.iter().enumerate() {
        // A free slot is older than any key; a key seen at `last` is `last + 1`.
        let age = if s.tag == 0 {
            0
        } else {
            s.last.saturating_add(1)
        };
        if age < oldest {
            oldest = age;
            victim = i;
        }
    }
    let slot = &mut ways[victim & (WAYS - 1)];
    let evicted = slot.tag != 0;
    *slot = Slot {
        tag,
        tokens,
        last: now,
    };
    evicted
}

/// A key located in a [`TokenBucketTable`]: its tag and its set, both from its seeded hash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Probe {
    tag: u64,
    set: usize,
}

#[inline(always)]
fn prefetch_line(p: *const i8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults and reads nothing into the program; `p`
    // points into the table's slots. SSE is part of the x86-64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
#[path = "ratelimit_tests.rs"]
mod tests;
