//! Judging frames in the backend's receive ring: the loop guard, the rules and the counters
//! applied to each chunk the backend shows (see `PacketBackend::rx_burst_judged`), so that a
//! dropped frame never becomes a packet (the VF re-arms its buffer where it is).

use crate::daemon::judge::{judge_chunk, nth_set, Judge};
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
    #[inline(always)]
    fn frames4(&self, i: usize) -> [&[u8]; 4] {
        self.0
            .frames4(i)
            .unwrap_or_else(|| std::array::from_fn(|k| self.0.frame(i + k)))
    }
}

impl RxJudge for InPlace<'_> {
    /// Drops the looped-back frames and those the rules drop; counts `dropped`, `passed` and
    /// `looped` as `Judge::burst` does, and samples the dropped sources. Out of line: one call
    /// per chunk, and the classifier is compiled as one function, not into the driver's loop.
    #[inline(never)]
    fn judge(&mut self, chunk: &RxChunk<'_>) -> u32 {
        let frames = ChunkFrames(chunk);
        let m = judge_chunk(self.rules, &frames, 0, self.c, self.now, self.guard);
        let dropped = m.count_ones() as usize;
        if dropped > 0 {
            self.top.on_drops(dropped, |i| chunk.frame(nth_set(m, i)));
        }
        m
    }
}
