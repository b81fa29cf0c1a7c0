//! Judging one burst: the loop guard, the rules, and where the survivors go. Used by the
//! filter loop when it judges inline and by every worker.

use crate::daemon::filterloop::TxBack;
use crate::filter::{Decision, RuleSet};
use crate::sink::PassSink;
use crate::softrss::FramePacket;
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

impl<S: PassSink> Survivors for ToSink<'_, S> {
    #[inline]
    fn take(&mut self, pass: &mut PacketBatch, c: &mut Counters) {
        let accepted = self.0.submit(pass.as_slice()).min(pass.len());
        c.tap += accepted as u64;
        c.tap_dropped += (pass.len() - accepted) as u64;
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
        }
    }

    /// The sample of the sources dropped so far (see [`crate::topsrc`]).
    pub(super) fn top_sources(&self) -> &TopSources {
        &self.top
    }

    /// Judges one burst at time `now` (ns since the epoch) and hands the survivors to `out`.
    /// With `guard`, frames carrying that source MAC are dropped as `looped` before the rules.
    /// The counters say what happened.
    #[inline]
    pub(super) fn burst<O: Survivors>(
        &mut self,
        pkts: impl Iterator<Item = Packet>,
        out: &mut O,
        c: &mut Counters,
        now: u64,
        guard: Option<[u8; 6]>,
    ) {
        self.judge::<O, false>(pkts, out, c, now, guard);
    }

    /// As [`Judge::burst`] for packets the soft-RSS dispatcher handed over: the rules read the
    /// parse the dispatcher left in each headroom instead of parsing again (counting in
    /// `reparsed` the packets whose record could not be used).
    #[inline]
    pub(super) fn burst_dispatched<O: Survivors>(
        &mut self,
        pkts: impl Iterator<Item = Packet>,
        out: &mut O,
        c: &mut Counters,
        now: u64,
    ) {
        self.judge::<O, true>(pkts, out, c, now, None);
    }

    #[inline(always)]
    fn judge<O: Survivors, const DISPATCHED: bool>(
        &mut self,
        pkts: impl Iterator<Item = Packet>,
        out: &mut O,
        c: &mut Counters,
        now: u64,
        guard: Option<[u8; 6]>,
    ) {
        for p in pkts {
            if caught_looping(&p, guard, c) {
                if let Err(p) = self.drops.push(p) {
                    drop(p);
                }
                continue;
            }
            let action = if DISPATCHED {
                let (v, used) =
                    self.rules
                        .classify_dispatched(p.data(), FramePacket::headroom(&p), now);
                self.reparsed += u64::from(!used);
                v.action
            } else {
                self.rules.classify(p.data(), now).action
            };
            match action {
                // Dropped buffers go back to the pool together at the end of the burst (one
                // free-list operation per burst, not per packet), without their bytes being
                // touched.
                Decision::Drop => {
                    c.dropped += 1;
                    if let Err(p) = self.drops.push(p) {
                        drop(p);
                    }
                }
                Decision::Pass => {
                    c.passed += 1;
                    if let Err(p) = self.pass.push(p) {
                        // The pass batch is as large as a burst, so this cannot happen; never
                        // lose a packet silently all the same.
                        c.tap_dropped += 1;
                        drop(p);
                    }
                }
            }
        }
        // The dropped-source sample (about one dropped frame in 256; see crate::topsrc).
        let dropped = self.drops.as_slice();
        self.top
            .on_drops(dropped.len(), |i| dropped.get(i).map_or(&[], |p| p.data()));
        self.drops.clear();
        if !self.pass.is_empty() {
            out.take(&mut self.pass, c);
        }
    }
}
