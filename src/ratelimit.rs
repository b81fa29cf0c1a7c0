//! Token buckets keyed by source address, source prefix or flow, in a table of fixed capacity.
//!
//! The table is set-associative: a key's hash picks one set of [`WAYS`] slots. A key that is not
//! present takes a free slot in its set or, when the set is full, evicts the slot that was least
//! recently seen (LRU within the set). The table never grows: its memory is allocated once, when
//! the limiter is built. The hash is seeded at random per table, so an attacker cannot aim keys at
//! one set. An evicted key that comes back starts again with a full bucket; with a table sized to
//! the number of active sources this is rare, and when a flood of spoofed sources churns the table,
//! each spoofed source is limited to one burst per eviction cycle.
//!
//! Arithmetic is in integers: one token is 10⁹ "nanotokens", so that a rate in packets per second
//! refills `rate` nanotokens per elapsed nanosecond.
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

use std::hash::{BuildHasher, Hasher};

/// Slots per set.
pub const WAYS: usize = 4;
const NANO: u64 = 1_000_000_000;

#[derive(Clone, Copy, Default)]
struct Slot {
    /// Hashed key; 0 marks a free slot.
    tag: u64,
    /// Nanotokens in the bucket.
    tokens: u64,
    /// Last time the key was seen (nanoseconds).
    last: u64,
}

/// Bytes of one key's slot.
pub const SLOT_BYTES: usize = std::mem::size_of::<Slot>();

/// Memory a [`TokenBucketTable`] for `capacity` keys takes (its slots, after rounding the
/// capacity up like [`TokenBucketTable::new`]); each worker has its own tables.
pub fn table_bytes(capacity: usize) -> usize {
    capacity
        .max(WAYS)
        .checked_next_power_of_two()
        .unwrap_or(usize::MAX)
        .saturating_mul(SLOT_BYTES)
}

/// A bounded table of token buckets. See the [module documentation](self).
#[derive(Clone)]
pub struct TokenBucketTable {
    slots: Box<[Slot]>,
    set_mask: usize,
    rate: u64,
    cap: u64,
    seed: u64,
    evictions: u64,
    inserts: u64,
}

impl std::fmt::Debug for TokenBucketTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenBucketTable")
            .field("capacity", &self.slots.len())
            .field("rate", &self.rate)
            .field("burst", &(self.cap / NANO))
            .field("evictions", &self.evictions)
            .finish()
    }
}

fn mix(mut z: u64) -> u64 {
    // splitmix64 finaliser: a cheap, well-distributed 64-bit mixer.
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl TokenBucketTable {
    /// A table for `capacity` keys (rounded up to a power of two, at least [`WAYS`]), each
    /// allowed `rate_pps` packets per second with bursts of `burst` packets (at least 1).
    pub fn new(rate_pps: u64, burst: u64, capacity: usize) -> Self {
        let capacity = capacity.max(WAYS).next_power_of_two();
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        TokenBucketTable {
            slots: vec![Slot::default(); capacity].into_boxed_slice(),
            set_mask: capacity / WAYS - 1,
            rate: rate_pps,
            cap: burst.max(1).saturating_mul(NANO),
            seed: seed | 1,
            evictions: 0,
            inserts: 0,
        }
    }

    /// Number of keys the table holds.
    pub fn capacity(&self) -> usize {
        self.slots.len()
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
        self.slots.fill(Slot::default());
    }

    /// Where `key` lives: its tag and its set, from one seeded hash. Pass the result to
    /// [`TokenBucketTable::prefetch`] early and to [`TokenBucketTable::allow_at`] later, so that
    /// the table lookups of a burst can be started before the first of them is needed.
    #[inline]
    pub fn probe(&self, key: u64) -> Probe {
        let tag = mix(key ^ self.seed).max(1);
        Probe {
            tag,
            base: ((tag as usize) & self.set_mask) * WAYS,
        }
    }

    /// Asks the CPU to start loading `probe`'s set (a hint; does nothing where there is no
    /// prefetch instruction).
    #[inline]
    pub fn prefetch(&self, probe: Probe) {
        if let Some(s) = self.slots.get(probe.base) {
            prefetch_line(std::ptr::from_ref(s).cast());
        }
    }

    /// Takes one token from `key`'s bucket at time `now` (nanoseconds, any monotonic or wall
    /// clock; a clock that goes backwards refills nothing). Returns `false` when the bucket is
    /// empty, i.e. the packet is over the limit.
    #[inline]
    pub fn allow(&mut self, key: u64, now: u64) -> bool {
        let p = self.probe(key);
        self.allow_at(p, now)
    }

    /// [`TokenBucketTable::allow`] for a key already located with [`TokenBucketTable::probe`].
    #[inline]
    pub fn allow_at(&mut self, probe: Probe, now: u64) -> bool {
        let Probe { tag, base } = probe;
        let Some(ways) = self.slots.get_mut(base..base + WAYS) else {
            return false;
        };
        let mut victim = 0;
        let mut oldest = u64::MAX;
        for (i, s) in ways.iter_mut().enumerate() {
            if s.tag == tag {
                let elapsed = now.saturating_sub(s.last);
                s.tokens = s
                    .tokens
                    .saturating_add(elapsed.saturating_mul(self.rate))
                    .min(self.cap);
                s.last = s.last.max(now);
                return if s.tokens >= NANO {
                    s.tokens -= NANO;
                    true
                } else {
                    false
                };
            }
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
        if ways[victim].tag != 0 {
            self.evictions += 1;
        }
        self.inserts += 1;
        ways[victim] = Slot {
            tag,
            tokens: self.cap - NANO,
            last: now,
        };
        true
    }
}

/// A key located in a [`TokenBucketTable`]: its tag and the first slot of its set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Probe {
    tag: u64,
    base: usize,
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
mod tests {
    use super::*;

    #[test]
    fn refills_at_rate_and_caps_at_burst() {
        let mut t = TokenBucketTable::new(10, 3, 16);
        assert!((0..3).all(|_| t.allow(1, 0)));
        assert!(!t.allow(1, 0));
        // 100 ms at 10 pps is one token.
        assert!(t.allow(1, 100_000_000));
        assert!(!t.allow(1, 100_000_000));
        // A long pause refills only up to the burst.
        let later = 3_600 * NANO;
        assert_eq!((0..10).filter(|_| t.allow(1, later)).count(), 3);
    }

    #[test]
    fn backwards_clock_does_not_refill() {
        let mut t = TokenBucketTable::new(1_000_000, 1, 16);
        assert!(t.allow(5, 10 * NANO));
        assert!(!t.allow(5, 0));
    }

    #[test]
    fn table_is_bounded_and_evicts_lru() {
        let mut t = TokenBucketTable::new(1, 1, 8);
        assert_eq!(t.capacity(), 8);
        for k in 0..10_000u64 {
            t.allow(k, k);
        }
        assert_eq!(t.capacity(), 8);
        assert_eq!(t.inserts(), 10_000);
        assert!(t.evictions() >= 10_000 - 8);
        // The most recent key is still there and its bucket is empty.
        assert!(!t.allow(9_999, 9_999));
    }

    #[test]
    fn probe_then_allow_is_allow() {
        let mut a = TokenBucketTable::new(1, 2, 8);
        let mut b = a.clone();
        for k in 0..2_000u64 {
            let key = k * 7 % 13;
            let p = b.probe(key);
            b.prefetch(p);
            assert_eq!(a.allow(key, k), b.allow_at(p, k), "key {key} at {k}");
        }
        assert_eq!(a.evictions(), b.evictions());
        assert!(a.evictions() > 0);
    }
}
