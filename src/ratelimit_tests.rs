//! Tests of the token-bucket table (`src/ratelimit.rs`).
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

/// A batch located with `locate` and judged with `allow_each` decides as `allow` does key
/// by key in lane order, with the same evictions; `key(i, round)` is the key `locate`
/// gives lane `i` in that round.
fn batch_is_allow(
    locate: impl Fn(&mut TokenBucketTable, u32, u64),
    key: impl Fn(usize, u64) -> u64,
) {
    let mut a = TokenBucketTable::new(1, 2, 16);
    let mut b = a.clone();
    for round in 0..300u64 {
        let mask = (round as u32).wrapping_mul(0x9e37_79b9) | 1;
        locate(&mut b, mask, round);
        let limited = b.allow_each(mask, round);
        let mut want = 0u32;
        for i in 0..BATCH {
            if mask >> i & 1 != 0 && !a.allow(key(i, round), round) {
                want |= 1 << i;
            }
        }
        assert_eq!(limited, want, "round {round}");
    }
    assert_eq!((a.evictions(), a.inserts()), (b.evictions(), b.inserts()));
    assert!(a.evictions() > 0);
}

/// 23 keys, so that a batch repeats some.
fn lane_key(i: usize, round: u64) -> u64 {
    (i as u64 + round) % 23
}

#[test]
fn locate_each_then_allow_each_is_allow() {
    batch_is_allow(
        |t, mask, round| t.locate_each(mask, |i| lane_key(i, round)),
        lane_key,
    );
}

#[test]
fn locate_all_locates_as_locate_each() {
    // Random columns, masks and high bits; tables of several sizes (shifts).
    let mut next = crate::testrand::xorshift64(0x9e37_79b9_7f4a_7c15u64);
    for capacity in [8, 64, 1 << 12, 1 << 16] {
        let mut a = TokenBucketTable::new(1, 1, capacity);
        let mut b = a.clone();
        for _ in 0..200 {
            let col: [u32; BATCH] = std::array::from_fn(|_| next() as u32);
            let mask = next() as u32 | 1;
            let high = next() << 32;
            a.locate_all(&col, mask, high);
            b.locate_each(u32::MAX, |i| high | u64::from(col[i] & mask));
            assert_eq!(a.batch.tag, b.batch.tag, "capacity {capacity}");
            assert_eq!(a.batch.off, b.batch.off, "capacity {capacity}");
        }
    }
}

#[test]
fn locate_all_then_allow_each_is_allow() {
    // Bits above the mask in the column are not part of the key; `high` is.
    batch_is_allow(
        |t, _, round| {
            let col = std::array::from_fn(|i| 0xabc0_0000 | lane_key(i, round) as u32);
            t.locate_all(&col, 0xff, 7 << 32);
        },
        |i, round| 7 << 32 | lane_key(i, round),
    );
}

/// The nanotokens in `key`'s bucket, if it is in the table.
fn tokens_of(t: &TokenBucketTable, key: u64) -> Option<u64> {
    let p = t.probe(key);
    t.sets[p.set]
        .iter()
        .find(|s| s.tag == p.tag)
        .map(|s| s.tokens)
}

/// `n` different keys whose hashes fall in `set` (by inverting the odd multiplier).
fn keys_in_set(t: &TokenBucketTable, set: u64, n: u64) -> Vec<u64> {
    let mut inv = t.mult; // Newton's iteration for the inverse modulo 2⁶⁴
    for _ in 0..6 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(t.mult.wrapping_mul(inv)));
    }
    assert_eq!(t.mult.wrapping_mul(inv), 1);
    (0..n)
        .map(|r| {
            let hash = (set << t.shift) | (r * 0x1234_5677 + 11);
            let key = hash.wrapping_mul(inv) ^ t.seed;
            assert_eq!(t.probe(key).set, set as usize);
            key
        })
        .collect()
}

#[test]
fn refill_is_exact_over_long_gaps() {
    // 3 pps, bursts of 10: an empty bucket is full after ⌈10/3 s⌉ = 3 333 333 334 ns.
    for (gap, want) in [(3_333_333_333u64, 9), (3_333_333_334, 10), (1 << 40, 10)] {
        let mut t = TokenBucketTable::new(3, 10, 16);
        assert_eq!((0..20).filter(|_| t.allow(1, 5)).count(), 10);
        assert_eq!(tokens_of(&t, 1), Some(0));
        let got = (0..20).filter(|_| t.allow(1, 5 + gap)).count();
        assert_eq!(got, want, "after {gap} ns");
    }
    // A bucket of 10⁹ tokens at 3 pps, drained, then 10⁶ s later: exactly 3·10⁶ tokens
    // (less the one taken), not capped early and not rounded.
    let mut t = TokenBucketTable::new(3, 1_000_000_000, 16);
    assert!(t.allow(9, 0));
    let Probe { tag, set } = t.probe(9);
    for s in t.sets[set].iter_mut().filter(|s| s.tag == tag) {
        s.tokens = 0;
    }
    assert!(t.allow(9, 1_000_000 * NANO));
    assert_eq!(tokens_of(&t, 9), Some(3_000_000 * NANO - NANO));
    // And 10⁹ s later still (under the ~10.6 years that fill it): 3·10⁹ tokens would be
    // over the burst, so it is full.
    assert!(t.allow(9, 1_000_000_000 * NANO));
    assert_eq!(tokens_of(&t, 9), Some(1_000_000_000 * NANO - NANO));
}

#[test]
fn huge_elapsed_time_saturates_at_the_burst() {
    // The largest configurable rate: 2⁶⁴ ns × 10⁹ would overflow without the cap.
    let mut t = TokenBucketTable::new(1_000_000_000, 2, 16);
    assert_eq!((0..5).filter(|_| t.allow(3, 0)).count(), 2);
    assert_eq!((0..5).filter(|_| t.allow(3, u64::MAX)).count(), 2);
    // The largest values the API takes: the burst is taken as MAX_BURST, nothing overflows.
    let mut t = TokenBucketTable::new(u64::MAX, u64::MAX, 16);
    assert!(t.allow(3, 0));
    assert_eq!(tokens_of(&t, 3), Some(MAX_BURST * NANO - NANO));
    for _ in 0..1000 {
        assert!(t.allow(3, 0));
    }
    assert!(t.allow(3, u64::MAX));
    assert_eq!(tokens_of(&t, 3), Some(MAX_BURST * NANO - NANO));
    // A rate of 0 never refills.
    let mut t = TokenBucketTable::new(0, 2, 16);
    assert_eq!((0..5).filter(|_| t.allow(3, 0)).count(), 2);
    assert!(!t.allow(3, u64::MAX));
}

#[test]
fn refill_take_is_the_token_bucket_formula() {
    // The reference: credit min(elapsed, fill) · rate, up to the burst, no refill when the
    // clock went back; one token taken if there is one.
    fn reference(s: &mut Slot, now: u64, rate: u64, cap: u64, fill: u64) -> bool {
        let seen = s.last.max(now);
        let credit = (seen - s.last).min(fill) as u128 * rate as u128;
        let tokens = (s.tokens as u128 + credit).min(cap as u128) as u64;
        s.last = seen;
        let allowed = tokens >= NANO;
        s.tokens = tokens - if allowed { NANO } else { 0 };
        allowed
    }
    let mut next = crate::testrand::xorshift64(0x2545_f491_4f6c_dd1du64);
    for (rate_pps, burst) in [
        (0, 2),
        (1, 1),
        (3, 10),
        (50, 100),
        (1_000_000, 7),
        (u64::MAX, MAX_BURST),
    ] {
        let t = TokenBucketTable::new(rate_pps, burst, 8);
        let (rate, cap, fill) = (t.rate, t.cap, t.fill);
        for _ in 0..20_000 {
            // Some keys last seen at 0, so that `now - last` reaches u64::MAX.
            let last = (next() >> (next() % 64)) * u64::from(!next().is_multiple_of(8));
            let now = match next() % 6 {
                0 => last.wrapping_sub(next() % 1000), // backwards (or wrapped)
                1 => last.saturating_add(fill.saturating_sub(1)),
                2 => last.saturating_add(fill),
                3 => u64::MAX,
                _ => last.saturating_add(next() % fill.max(2).saturating_mul(2)),
            };
            let tokens = next() % (cap + 1);
            let mut a = Slot {
                tag: 1,
                tokens,
                last,
            };
            let mut b = a;
            assert_eq!(
                refill_take(&mut a, now, rate, cap, fill),
                reference(&mut b, now, rate, cap, fill),
                "rate {rate_pps} burst {burst} last {last} now {now} tokens {tokens}"
            );
            assert_eq!((a.tokens, a.last), (b.tokens, b.last));
        }
    }
}

#[test]
fn backwards_clock_keeps_the_last_time() {
    let mut t = TokenBucketTable::new(1, 1, 16);
    assert!(t.allow(5, 10 * NANO));
    // Earlier: nothing refilled, and the key still counts as seen at 10 s.
    assert!(!t.allow(5, 5 * NANO));
    assert!(!t.allow(5, 10 * NANO + NANO / 2));
    assert!(t.allow(5, 11 * NANO));
}

#[test]
fn evicts_the_least_recently_seen_key_of_a_set() {
    let mut t = TokenBucketTable::new(1, 1, 64);
    let k = keys_in_set(&t, 5, 6);
    for (i, &key) in k[..4].iter().enumerate() {
        assert!(t.allow(key, i as u64 + 1));
    }
    // k0 seen again (refused, but seen): k1 is now the least recently seen.
    assert!(!t.allow(k[0], 5));
    assert!(t.allow(k[4], 6));
    assert_eq!((t.inserts(), t.evictions()), (5, 1));
    assert_eq!(tokens_of(&t, k[1]), None);
    for &key in [k[0], k[2], k[3], k[4]].iter() {
        assert!(!t.allow(key, 7), "{key:#x} still there, empty");
    }
    // All four last seen at 7: the next key in takes the first way, k0's.
    assert!(t.allow(k[5], 8));
    assert_eq!((t.inserts(), t.evictions()), (6, 2));
    assert_eq!(tokens_of(&t, k[0]), None);
    assert!(tokens_of(&t, k[4]).is_some());
    // Other sets were not touched.
    let in_other_sets: usize = t
        .sets
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != 5)
        .map(|(_, set)| set.iter().filter(|s| s.tag != 0).count())
        .sum();
    assert_eq!(in_other_sets, 0);
}

#[test]
fn lru_tie_evicts_the_first_way() {
    let mut t = TokenBucketTable::new(1, 1, 64);
    let k = keys_in_set(&t, 0, 5);
    for &key in &k[..4] {
        assert!(t.allow(key, 0));
    }
    assert!(t.allow(k[4], 0));
    assert_eq!(t.evictions(), 1);
    // k0 was in the first way and went; k1..k3 are still there.
    for &key in &k[1..4] {
        assert!(!t.allow(key, 0));
    }
    assert!(t.allow(k[0], 0));
    assert_eq!(t.evictions(), 2);
}

#[test]
fn a_key_hashing_to_zero_is_not_a_free_slot() {
    // (key ^ seed) * mult is 0 for key == seed; its tag must still differ from a free slot.
    let mut t = TokenBucketTable::new(1, 1, 16);
    let key = t.seed;
    // Its hash is 0: the tag is the set bits alone.
    assert_eq!(t.probe(key).tag, t.set_bits);
    assert!(t.allow(key, 0));
    assert!(!t.allow(key, 0));
    assert_eq!(t.inserts(), 1);
}

#[test]
fn a_table_hashed_like_another_evicts_alike() {
    let a0 = TokenBucketTable::new(5, 3, 8);
    let mut b = TokenBucketTable::new(5, 3, 8);
    b.hash_like(&a0);
    let mut a = a0.clone();
    for t in 0..3_000u64 {
        // Five hot keys that run dry, and cold keys that evict them now and then: which
        // ones, and when, depends on the sets the keys hash to.
        let key = if t % 4 == 0 {
            100 + t * 7_919 % 40
        } else {
            t % 5
        };
        assert_eq!(
            a.allow(key, t * 1_000),
            b.allow(key, t * 1_000),
            "key {key} at {t}"
        );
    }
    assert_eq!(a.evictions(), b.evictions());
    assert!(a.evictions() > 100, "{} evictions", a.evictions());
}

#[test]
fn hash_is_seeded_per_table_and_sets_cover_the_table() {
    let a = TokenBucketTable::new(1, 1, 1 << 12);
    let b = TokenBucketTable::new(1, 1, 1 << 12);
    assert_ne!((a.seed, a.mult), (b.seed, b.mult));
    assert_eq!(a.mult & 1, 1);
    // Consecutive sources spread over the sets: 4096 keys in 1024 sets, none with more
    // than a handful.
    let mut per_set = vec![0u32; a.sets.len()];
    for src in 0..4096u64 {
        per_set[a.probe((1 << 40) | (0x0a00_0000 + src)).set] += 1;
    }
    assert!(
        per_set.iter().all(|&n| n <= 16),
        "{:?}",
        per_set.iter().max()
    );
    assert!(per_set.iter().filter(|&&n| n > 0).count() > 512);
}

#[test]
fn new_tables_spread_runs_of_neighbouring_keys() {
    // About 3 in 100 random multipliers crowd a run of neighbouring keys into a few sets;
    // a new table draws again until its multiplier does not.
    for _ in 0..40 {
        let t = TokenBucketTable::new(1, 1, 1 << 12);
        assert!(t.crowding() <= CROWDED, "crowding {}", t.crowding());
    }
    // The measure itself: a multiplier of 2⁶⁴/3 (rounded to odd) sends consecutive keys
    // to three places only.
    let bad = TokenBucketTable::with_keys(1, 1, 1 << 12, 0, 0x5555_5555_5555_5555);
    assert!(bad.crowding() > 100, "crowding {}", bad.crowding());
}

#[test]
fn smallest_table_has_two_sets() {
    assert_eq!(table_capacity(4), Some(8));
    assert_eq!(table_capacity(9), Some(16));
    assert_eq!(table_capacity(usize::MAX), None);
    assert_eq!(table_bytes(4), 8 * SLOT_BYTES);
    let mut t = TokenBucketTable::new(1, 1, 4);
    assert_eq!(t.capacity(), 8);
    // A probe from a larger table lands in some set of this one, never outside it.
    let big = TokenBucketTable::new(1, 1, 1 << 16);
    for key in 0..1000 {
        t.allow_at(big.probe(key), 0);
    }
    assert_eq!(t.inserts(), 1000);
}
