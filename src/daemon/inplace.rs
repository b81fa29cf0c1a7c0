//! Judging frames in the backend's receive ring: the loop guard, the rules and the counters
//! applied to each chunk the backend shows (see `PacketBackend::rx_burst_judged`), so that a
//! dropped frame never becomes a packet (the VF re-arms its buffer where it is).

use crate::daemon::judge::Judge;
use crate::filter::{BurstFrames, RuleSet};
use crate::stats::Counters;
use crate::topsrc::TopSources;
use floodgate_pmd::{RxChunk, RxJudge};

/// The rules, the dropped-source sample and the counters of one inline judge, for one receive
/// burst at time `now`.
pub(super) struct InPlace<'a> {
    rules: &'a mut RuleSet,
    top: &'a mut TopSources,
    c: &'a mut Counters,
    now: u64,
    guard: Option<[u8; 6]>,
}

impl<'a> InPlace<'a> {
    /// Judges with `judge`'s rules at `now`, counting into `c`. With `guard`, frames carrying
    /// that source MAC are dropped as `looped` without going through the rules.
    #[inline]
    pub(super) fn new(
        judge: &'a mut Judge,
        c: &'a mut Counters,
        now: u64,
        guard: Option<[u8; 6]>,
    ) -> InPlace<'a> {
        let (rules, top) = judge.rules_and_top();
        InPlace {
            rules,
            top,
            c,
            now,
            guard,
        }
    }
}

/// A received chunk as the rules read it.
struct ChunkFrames<'a, 'b>(&'a RxChunk<'b>);

impl BurstFrames for ChunkFrames<'_, '_> {
    #[inline(always)]
    fn count(&self) -> usize {
        self.0.len()
    }
    #[inline(always)]
    fn frame(&self, i: usize) -> &[u8] {
        self.0.frame(i)
    }
}

/// Index of the `i`-th set bit of `m` (32 when there is none).
#[inline]
fn nth_set(mut m: u32, i: usize) -> usize {
    for _ in 0..i {
        m &= m.wrapping_sub(1);
    }
    m.trailing_zeros() as usize
}

impl RxJudge for InPlace<'_> {
    /// Drops the looped-back frames and those the rules drop; counts `dropped`, `passed` and
    /// `looped` as `Judge::burst` does, and samples the dropped sources. Out of line: one call
    /// per chunk, and the classifier is compiled as one function, not into the driver's loop.
    #[inline(never)]
    fn judge(&mut self, chunk: &RxChunk<'_>) -> u32 {
        let n = chunk.len().min(32);
        if n == 0 {
            return 0;
        }
        let skip = match self.guard {
            Some(g) => (0..n).fold(0u32, |m, i| {
                let own = chunk.frame(i).get(6..12) == Some(&g[..]);
                m | u32::from(own) << i
            }),
            None => 0,
        };
        let frames = ChunkFrames(chunk);
        let drop = self
            .rules
            .classify_chunk::<_, false>(&frames, 0, skip, self.now, &mut []);
        let valid = u32::MAX >> (32 - n);
        let m = (drop | skip) & valid;
        let dropped = m.count_ones() as usize;
        self.c.looped += u64::from(skip.count_ones());
        self.c.dropped += dropped as u64;
        self.c.passed += (n - dropped) as u64;
        if dropped > 0 {
            self.top.on_drops(dropped, |i| chunk.frame(nth_set(m, i)));
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::nth_set;

    #[test]
    fn nth_set_walks_the_set_bits_in_order() {
        let m = 0b1010_0110u32;
        let got: Vec<usize> = (0..5).map(|i| nth_set(m, i)).collect();
        assert_eq!(got, vec![1, 2, 5, 7, 32]);
        assert_eq!(nth_set(u32::MAX, 31), 31);
    }
}
