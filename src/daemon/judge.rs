//! Judging one burst: the loop guard, the rules, and where the survivors go. Used by the
//! filter loop when it judges inline and by every worker.

use std::cell::Cell;

use crate::daemon::filterloop::TxBack;
use crate::filter::{BurstFrames, Parsed, RuleSet};
use crate::sink::PassSink;
use crate::softrss::{FramePacket, RssMeta};
use crate::stats::Counters;
use crate::topsrc::TopSources;
use crossbeam::queue::ArrayQueue;
use floodgate_pmd::{Packet, PacketBatch};

/// Where a burst's survivors go.
pub(super) trait Survivors {
    /// Takes every packet of `pass` (leaving it empty) and counts where each went.
    fn take(&mut self, pass: &mut PacketBatch, c: &mut Counters);
}

/// Into a [`PassSink`] (TAP): `tap` / `tap_dropped`.
pub(super) struct ToSink<'a, S>(pub(super) &'a mut S);

impl<S: PassSink> ToSink<'_, S> {
    /// Submits `pass` to the sink and counts what it accepted; the packets stay in `pass` for
    /// the caller to let go of (the sink read them and keeps none).
    #[inline]
    pub(super) fn submit(&mut self, pass: &PacketBatch, c: &mut Counters) {
        let accepted = self.0.submit(pass.as_slice()).min(pass.len());
        c.tap += accepted as u64;
        c.tap_dropped += (pass.len() - accepted) as u64;
    }
}

impl<S: PassSink> Survivors for ToSink<'_, S> {
    #[inline]
    fn take(&mut self, pass: &mut PacketBatch, c: &mut Counters) {
        self.submit(pass, c);
        pass.clear();
    }
}

/// From a worker back to the polling thread, which owns the backend. A full ring counts the
/// packet in `vf_tx_dropped` at the worker.
pub(super) struct HandBack<'a> {
    pub(super) ring: &'a ArrayQueue<Packet>,
    pub(super) tx: &'a TxBack,
    /// Survivors pushed onto the ring so far.
    pub(super) handed: &'a mut u64,
}

impl Survivors for HandBack<'_> {
    #[inline]
    fn take(&mut self, pass: &mut PacketBatch, c: &mut Counters) {
        // Rewriting here spreads the (small) work over the workers.
        self.tx.rewrite(pass);
        for p in pass.drain() {
            match self.ring.push(p) {
                Ok(()) => *self.handed += 1,
                Err(p) => {
                    c.vf_tx_dropped += 1;
                    drop(p);
                }
            }
        }
    }
}

/// True when `p` carries `guard` as its source MAC (the daemon's own frame, looped back); it is
/// then counted as dropped and `looped`, and the caller lets go of it.
#[inline]
pub(super) fn caught_looping(p: &Packet, guard: Option<[u8; 6]>, c: &mut Counters) -> bool {
    let looped = match guard {
        Some(m) => p.data().get(6..12) == Some(&m[..]),
        None => false,
    };
    if looped {
        c.dropped += 1;
        c.looped += 1;
    }
    looped
}

/// Packets a burst's drop marks are kept for at a time (a batch holds at most this many).
const MARKED: usize = floodgate_pmd::MAX_BATCH;

/// A rule set and the scratch batches one burst is sorted into.
pub(super) struct Judge {
    /// The rules every packet is classified with.
    pub(super) rules: RuleSet,
    pass: PacketBatch,
    drops: PacketBatch,
    /// Dispatched packets whose headroom record could not be used (missing, or written for
    /// another frame), so the rules parsed the frame themselves.
    pub(super) reparsed: u64,
    /// The sample of the sources this judge drops (boxed: 1.5 KB).
    top: Box<TopSources>,
    /// The burst's drop marks: bit `i % 32` of word `i / 32` for packet `i`.
    marks: Box<[u32; MARKED / 32]>,
}

/// A burst of received packets as the rules read them.
struct Frames<'a>(&'a [Packet]);

impl BurstFrames for Frames<'_> {
    #[inline(always)]
    fn count(&self) -> usize {
        self.0.len()
    }
    #[inline(always)]
    fn frame(&self, i: usize) -> &[u8] {
        self.0.get(i).map_or(&[], |p| p.data())
    }
}

/// A burst the soft-RSS dispatcher handed over: the parse it left in each headroom is used
/// instead of parsing again, when it was written for that frame.
struct Dispatched<'a> {
    pkts: &'a [Packet],
    reparsed: Cell<u64>,
}

impl BurstFrames for Dispatched<'_> {
    #[inline(always)]
    fn count(&self) -> usize {
        self.pkts.len()
    }
    #[inline(always)]
    fn frame(&self, i: usize) -> &[u8] {
        self.pkts.get(i).map_or(&[], |p| p.data())
    }
    const PARSED: bool = true;
    #[inline]
    fn parsed(&self, i: usize) -> Option<Parsed> {
        let p = self.pkts.get(i)?;
        match RssMeta::read_for(FramePacket::headroom(p), p.data()) {
            Some(m) => Some(Parsed::from_meta(&m, p.data())),
            None => {
                self.reparsed.set(self.reparsed.get() + 1);
                None
            }
        }
    }
}

impl Judge {
    /// Judges bursts of up to `burst` packets with `rules`.
    pub(super) fn new(rules: RuleSet, burst: usize) -> Judge {
        Judge {
            rules,
            pass: PacketBatch::new(burst),
            drops: PacketBatch::new(burst),
            reparsed: 0,
            top: Box::default(),
            marks: Box::new([0; MARKED / 32]),
        }
    }

    /// The sample of the sources dropped so far (see [`crate::topsrc`]).
    pub(super) fn top_sources(&self) -> &TopSources {
        &self.top
    }

    /// The rules and the dropped-source sample, for judging frames in the receive ring
    /// (`daemon/inplace.rs`).
    pub(super) fn rules_and_top(&mut self) -> (&mut RuleSet, &mut TopSources) {
        (&mut self.rules, &mut self.top)
    }

    /// Classifies `frames` (at most [`MARKED`]) into the drop marks and counts them; returns
    /// how many are dropped. With `guard`, frames carrying that source MAC are marked as
    /// dropped and `looped` without going through the rules.
    #[inline(always)]
    fn mark<B: BurstFrames>(
        &mut self,
        frames: &B,
        c: &mut Counters,
        now: u64,
        guard: Option<[u8; 6]>,
    ) -> usize {
        let n = frames.count().min(MARKED);
        let mut dropped = 0;
        let mut at = 0;
        while at < n {
            let m = judge_chunk(&mut self.rules, frames, at, c, now, guard);
            dropped += m.count_ones() as usize;
            if let Some(w) = self.marks.get_mut(at / 32) {
                *w = m;
            }
            at += 32;
        }
        dropped
    }

    /// Judges the received burst `rx` at time `now` (ns since the epoch), leaving it empty: the
    /// dropped buffers go back to the pool together (one free-list operation per burst, their
    /// bytes untouched), the survivors go to `out`. With `guard`, frames carrying that source
    /// MAC are dropped as `looped` before the rules. The counters say what happened.
    #[inline]
    pub(super) fn burst<O: Survivors>(
        &mut self,
        rx: &mut PacketBatch,
        out: &mut O,
        c: &mut Counters,
        now: u64,
        guard: Option<[u8; 6]>,
    ) {
        let n = rx.len().min(MARKED);
        // The marks hold exactly the burst's drops (no bit past its end).
        let drops = self.mark(&Frames(rx.as_slice()), c, now, guard);
        let words = n.div_ceil(32);
        let marks = &mut self.marks[..words];
        if drops == 0 {
            // All survive: the burst itself goes on, nothing is moved.
            if !rx.is_empty() {
                out.take(rx, c);
            }
            return;
        }
        if drops * 2 <= n {
            // Mostly survivors: take the drops out of the burst (in bulk, after sampling their
            // sources) and hand the rest on in order.
            let d = rx.as_slice();
            self.top.on_drops(drops, |i| {
                nth_marked(marks, i)
                    .and_then(|j| d.get(j))
                    .map_or(&[], |p| p.data())
            });
            let mut r = 0;
            rx.retain(|_| {
                let drop = marks.get(r / 32).is_some_and(|w| w >> (r % 32) & 1 != 0);
                r += 1;
                !drop
            });
            out.take(rx, c);
            return;
        }
        // Mostly drops: move the survivors (the complement of the drops within the burst) out,
        // free the rest.
        for (k, w) in marks.iter_mut().enumerate() {
            *w = !*w & lane_mask(n - k * 32);
        }
        // The pass batch is as large as a burst, so nothing stays behind; never lose a packet
        // silently all the same.
        let stayed = rx.move_marked(marks, &mut self.pass);
        c.passed -= stayed as u64;
        c.tap_dropped += stayed as u64;
        c.dropped += stayed as u64;
        dropped(&mut self.top, rx);
        if !self.pass.is_empty() {
            out.take(&mut self.pass, c);
        }
    }

    /// As [`Judge::burst`] for packets the soft-RSS dispatcher handed over (taken out of
    /// `pkts`): the rules read the parse the dispatcher left in each headroom instead of
    /// parsing again (counting in `reparsed` the packets whose record could not be used).
    pub(super) fn burst_dispatched<O: Survivors>(
        &mut self,
        pkts: &mut Vec<Packet>,
        out: &mut O,
        c: &mut Counters,
        now: u64,
    ) {
        while !pkts.is_empty() {
            let n = pkts.len().min(MARKED);
            let frames = Dispatched {
                pkts: &pkts[..n],
                reparsed: Cell::new(0),
            };
            let _ = self.mark(&frames, c, now, None);
            self.reparsed += frames.reparsed.get();
            for (i, p) in pkts.drain(..n).enumerate() {
                let dropped = self
                    .marks
                    .get(i / 32)
                    .is_some_and(|w| w >> (i % 32) & 1 != 0);
                let batch = if dropped {
                    &mut self.drops
                } else {
                    &mut self.pass
                };
                if let Err(p) = batch.push(p) {
                    // Both batches are as large as a burst; count it all the same.
                    if !dropped {
                        c.passed -= 1;
                        c.dropped += 1;
                        c.tap_dropped += 1;
                    }
                    drop(p);
                }
            }
            dropped(&mut self.top, &mut self.drops);
            if !self.pass.is_empty() {
                out.take(&mut self.pass, c);
            }
        }
    }
}

/// Judges frames `at..at + 32` of `frames` (fewer at the end): those carrying `guard` as their
/// source MAC (the daemon's own, looped back) are dropped as `looped` without the rules, the
/// rest go through `rules` at time `now`. Counts `dropped`, `passed` and `looped` in `c` and
/// returns the mask of the dropped frames (bit `i` for frame `at + i`). Used by the burst
/// judge here and by the judge in the receive ring (`daemon/inplace.rs`).
#[inline(always)]
pub(super) fn judge_chunk<B: BurstFrames + ?Sized>(
    rules: &mut RuleSet,
    frames: &B,
    at: usize,
    c: &mut Counters,
    now: u64,
    guard: Option<[u8; 6]>,
) -> u32 {
    let n = frames.count().saturating_sub(at).min(32);
    let skip = match guard {
        Some(g) => (0..n).fold(0u32, |m, i| {
            let own = frames.frame(at + i).get(6..12) == Some(&g[..]);
            m | u32::from(own) << i
        }),
        None => 0,
    };
    let drop = rules.classify_chunk::<B, false>(frames, at, skip, now, &mut []);
    let m = (drop | skip) & lane_mask(n);
    let dropped = u64::from(m.count_ones());
    c.looped += u64::from(skip.count_ones());
    c.dropped += dropped;
    c.passed += n as u64 - dropped;
    m
}

/// The mask of the first `n` lanes of a 32-lane chunk (all of them for `n >= 32`).
#[inline(always)]
fn lane_mask(n: usize) -> u32 {
    if n >= 32 {
        u32::MAX
    } else {
        (1u32 << n) - 1
    }
}

/// Index of the `i`-th set bit of `m` (32 when there is none).
#[inline]
pub(super) fn nth_set(mut m: u32, i: usize) -> usize {
    for _ in 0..i {
        m &= m.wrapping_sub(1);
    }
    m.trailing_zeros() as usize
}

/// The index of the `i`-th set mark (bit `j % 32` of `marks[j / 32]` for index `j`).
fn nth_marked(marks: &[u32], mut i: usize) -> Option<usize> {
    for (k, &w) in marks.iter().enumerate() {
        let c = w.count_ones() as usize;
        if i < c {
            return Some(k * 32 + nth_set(w, i));
        }
        i -= c;
    }
    None
}

/// Samples the dropped sources (about one dropped frame in 256; see crate::topsrc) and frees
/// the dropped buffers in bulk.
#[inline]
fn dropped(top: &mut TopSources, drops: &mut PacketBatch) {
    let d = drops.as_slice();
    top.on_drops(d.len(), |i| d.get(i).map_or(&[], |p| p.data()));
    drops.clear();
}

#[cfg(test)]
mod tests {
    use super::{nth_marked, nth_set};

    #[test]
    fn nth_set_walks_the_set_bits_in_order() {
        let m = 0b1010_0110u32;
        let got: Vec<usize> = (0..5).map(|i| nth_set(m, i)).collect();
        assert_eq!(got, vec![1, 2, 5, 7, 32]);
        assert_eq!(nth_set(u32::MAX, 31), 31);
    }

    #[test]
    fn nth_marked_walks_the_set_bits_in_order() {
        let marks = [0b1010_0000_0000_0000_0000_0000_0000_0001u32, 0, 0b110];
        let want = [0, 29, 31, 65, 66];
        for (i, &j) in want.iter().enumerate() {
            assert_eq!(nth_marked(&marks, i), Some(j));
        }
        assert_eq!(nth_marked(&marks, want.len()), None);
        assert_eq!(nth_marked(&[], 0), None);
    }
}
