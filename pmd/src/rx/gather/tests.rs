//! The judged receive's vector path against its scalar path and against a plain model of what
//! each descriptor must come to: bad descriptors of every kind at every position of a group,
//! groups at the ring's end, chunks of every size, random rings.
use crate::batch::PacketBatch;
use crate::mempool::{Mempool, PoolLayout};
use crate::regs::*;
use crate::rx::tests::{fixture, fixture_on, Fixture, GOOD};
use crate::rx::{RxChunk, RxStats};
use crate::DEFAULT_DATA_ROOM;
use floodgate_vfio::HugePages;

const ROOM: u16 = DEFAULT_DATA_ROOM as u16;
/// Status bits a good frame may carry besides DD and EOP: VP, L4CS, IPCS (facts §6.1).
const OTHER_STATUS: u32 = 1 << 3 | 1 << 5 | 1 << 6;

/// A write-back as the device writes it (facts §6.1); `st == 0`: not done (not written).
#[derive(Clone, Copy, Debug)]
struct Wb {
    st: u32,
    len: u16,
    vlan: u16,
}

const fn wb(st: u32, len: u16) -> Wb {
    Wb { st, len, vlan: 0 }
}

/// Every kind of descriptor that must not be taken as a good frame.
const BAD: [(&str, Wb); 9] = [
    ("not done", wb(0, 60)),
    ("RXE", wb(GOOD | RXD_ERR_RXE, 60)),
    ("IPE", wb(GOOD | RXD_ERR_IPE, 60)),
    ("TCPE", wb(GOOD | RXD_ERR_L4E, 60)),
    ("length 0", wb(GOOD, 0)),
    ("length past the data room", wb(GOOD, ROOM + 1)),
    ("length 0xFFFF", wb(GOOD, 0xFFFF)),
    ("no EOP", wb(RXD_STAT_DD, 60)),
    ("DD clear, EOP set", wb(RXD_STAT_EOP, 60)),
];

/// Writes `w` into `slot` (buffer bytes `fill`), unless it is "not done".
fn write(f: &Fixture, slot: u32, w: Wb, fill: u8) {
    if w.st == 0 {
        return;
    }
    // The buffer the queue armed in the slot (not read from the descriptor: an earlier
    // "not done" write-back may have overwritten its address).
    let b = f.q.bufs[slot as usize] as usize;
    let at = b * f.pool.stride() + f.pool.data_offset();
    let qw1 = (u64::from(w.len) | u64::from(w.vlan) << 16) << 32 | u64::from(w.st);
    // SAFETY: up to the data room of buffer `b` of the pool; descriptor `slot` of the ring.
    unsafe {
        let data = f.pool.region().as_ptr().add(at);
        std::ptr::write_bytes(data, fill, usize::from(w.len).min(f.pool.data_room()));
        f.qw(slot, 0).write_volatile(0x1234_5678);
        f.qw(slot, 1).write_volatile(qw1);
    }
}

/// What the model says a run of descriptors comes to: the indices of the good frames and the
/// drop counters, stopping at the first descriptor not done.
fn model(descs: &[Wb], room: u32, discarding: &mut bool, s: &mut RxStats) -> Vec<usize> {
    let mut good = Vec::new();
    for (i, w) in descs.iter().enumerate() {
        if w.st & RXD_STAT_DD == 0 {
            break;
        }
        s.descriptors += 1;
        if *discarding || w.st & RXD_STAT_EOP == 0 {
            s.err_multiseg += 1;
            *discarding = w.st & RXD_STAT_EOP == 0;
        } else if w.st & RXD_ERR_RXE != 0 {
            s.err_mac += 1;
        } else if w.st & RXD_ERR_IPE != 0 {
            s.err_ip_csum += 1;
        } else if w.st & RXD_ERR_L4E != 0 {
            s.err_l4_csum += 1;
        } else if w.len == 0 || u32::from(w.len) > room {
            s.err_length += 1;
        } else {
            s.packets += 1;
            s.bytes += u64::from(w.len);
            good.push(i);
        }
    }
    good
}

/// What a burst did, in terms that do not depend on where the pool sits in memory.
#[derive(Debug)]
struct Outcome {
    /// Per chunk: (buffer index, length, first byte) of each frame.
    chunks: Vec<Vec<(u32, u32, u8)>>,
    /// Kept packets: (buffer index, length, first byte).
    kept: Vec<(u32, usize, u8)>,
    stats: RxStats,
    tails: Vec<u32>,
    /// Buffer indices armed in the slots, sorted.
    armed: Vec<u32>,
    /// Slots whose buffer changed in this burst (kept frames' slots).
    refreshed: Vec<bool>,
    received: usize,
}

/// What two queues fed alike must agree on: everything but buffer indices (the vector
/// delivery may hand out the cache's entries in another order than one by one, so the
/// buffers differ from then on), with the slots that got a fresh buffer.
type Comparable = (
    Vec<Vec<(u32, u8)>>,
    Vec<(usize, u8)>,
    RxStats,
    Vec<u32>,
    Vec<bool>,
    usize,
);

impl Outcome {
    fn comparable(&self) -> Comparable {
        (
            self.chunks
                .iter()
                .map(|c| c.iter().map(|e| (e.1, e.2)).collect())
                .collect(),
            self.kept.iter().map(|k| (k.1, k.2)).collect(),
            self.stats,
            self.tails.clone(),
            self.refreshed.clone(),
            self.received,
        )
    }
}

fn buffer_index(f: &Fixture, p: *const u8) -> u32 {
    ((p as usize - f.pool.region().as_ptr() as usize) / f.pool.stride()) as u32
}

/// Judge rules, by a frame's first byte: true drops.
type Rule = fn(u8) -> bool;
const TWO_IN_THREE: Rule = |b| b % 3 != 0;
const KEEP_ALL: Rule = |_| false;
const DROP_ALL: Rule = |_| true;
const ONE_IN_TEN: Rule = |b| b % 10 == 0;

/// One judged burst into a batch of `cap` with `held` packets already in it; the judge drops
/// by `rule` (two frames in three when not said).
fn burst(f: &mut Fixture, cap: usize, held: usize, rule: Rule) -> Outcome {
    let mut b = PacketBatch::new(cap);
    for _ in 0..held {
        b.push(f.pool.alloc().unwrap()).ok().unwrap();
    }
    let before = f.q.bufs.to_vec();
    let mut chunks = Vec::new();
    let mut judge = |c: &RxChunk<'_>| {
        let mut v = Vec::new();
        let mut m = 0u32;
        for i in 0..c.len() {
            let fr = c.frame(i);
            let first = fr.first().copied().unwrap_or(0);
            v.push((0, fr.len() as u32, first));
            if rule(first) {
                m |= 1 << i;
            }
        }
        chunks.push((
            v,
            (0..c.len())
                .map(|i| c.frame(i).as_ptr())
                .collect::<Vec<_>>(),
        ));
        m
    };
    let r = f.q.burst_judged(&mut b, &mut judge);
    let chunks = chunks
        .into_iter()
        .map(|(mut v, ptrs)| {
            for (e, p) in v.iter_mut().zip(ptrs) {
                e.0 = buffer_index(f, p);
            }
            v
        })
        .collect();
    let region = f.pool.region().iova();
    let stride = f.pool.stride() as u64;
    let kept = b.as_slice()[held..]
        .iter()
        .map(|p| {
            (
                p.buffer_index(),
                p.len(),
                p.data().first().copied().unwrap_or(0),
            )
        })
        .collect();
    let mut out = Outcome {
        chunks,
        kept,
        stats: f.q.stats,
        tails: f.tails(),
        armed: (0..f.q.size)
            .map(|s| {
                let b = f.q.bufs[s as usize];
                // SAFETY: descriptor `s` of the fixture's ring.
                if unsafe { f.qw(s, 1).read_volatile() } == 0 {
                    // Armed and not written back since: the descriptor holds the buffer.
                    assert_eq!((f.armed(s) - region) / stride, u64::from(b), "slot {s}");
                }
                b
            })
            .collect::<Vec<u32>>(),
        refreshed: before
            .iter()
            .zip(f.q.bufs.iter())
            .map(|(a, b)| a != b)
            .collect(),
        received: r.received,
    };
    // Every frame shown was in a buffer armed before the burst; every kept packet is one of
    // them, and no buffer is both armed and kept, or armed twice.
    let shown: Vec<u32> = out.chunks.concat().iter().map(|e| e.0).collect();
    for b in &shown {
        assert!(before.contains(b), "frame in buffer {b}, not armed before");
    }
    for k in &out.kept {
        assert!(shown.contains(&k.0), "kept buffer {} not a frame's", k.0);
        assert!(!out.armed.contains(&k.0), "kept buffer {} still armed", k.0);
    }
    out.armed.sort_unstable();
    let n = out.armed.len();
    out.armed.dedup();
    assert_eq!(out.armed.len(), n, "a buffer armed twice");
    out
}

/// Two queues alike, the second one taking every descriptor one by one.
fn pair(size: u32, bufs: u32) -> (Fixture, Fixture) {
    let v = fixture(size, bufs);
    let mut s = fixture(size, bufs);
    s.q.set_scalar_only();
    (v, s)
}

/// Writes `descs` from `slot` on into both queues (fill byte i + base for descriptor i).
fn write_both(p: &(Fixture, Fixture), slot: u32, descs: &[Wb], base: u8) {
    for (i, w) in descs.iter().enumerate() {
        let s = (slot + i as u32) % p.0.q.size;
        write(&p.0, s, *w, base.wrapping_add(i as u8));
        write(&p.1, s, *w, base.wrapping_add(i as u8));
    }
}

/// Runs the same burst on both queues, checks they agree, and returns the outcome.
fn burst_both(p: &mut (Fixture, Fixture), cap: usize, held: usize) -> Outcome {
    burst_rule(p, cap, held, TWO_IN_THREE)
}

/// As `burst_both`, with the judge's rule.
fn burst_rule(p: &mut (Fixture, Fixture), cap: usize, held: usize, rule: Rule) -> Outcome {
    let v = burst(&mut p.0, cap, held, rule);
    let s = burst(&mut p.1, cap, held, rule);
    assert_eq!(
        v.comparable(),
        s.comparable(),
        "vector and scalar paths disagree"
    );
    assert_eq!(p.1.q.vector_groups, 0);
    v
}

#[test]
fn a_bad_descriptor_at_each_position_of_a_group() {
    for (what, bad) in BAD {
        for pos in 0..4 {
            // Slots 0..16: four groups, the bad descriptor in the second.
            let mut p = pair(64, 256);
            let mut descs = [wb(GOOD, 100); 16];
            for (i, d) in descs.iter_mut().enumerate() {
                d.len = 100 + i as u16;
            }
            descs[4 + pos] = bad;
            write_both(&p, 0, &descs, 3);
            let o = burst_both(&mut p, 32, 0);
            let mut want = RxStats::default();
            let mut disc = false;
            let good = model(&descs, ROOM.into(), &mut disc, &mut want);
            let got: Vec<u8> = o.chunks.concat().iter().map(|e| e.2).collect();
            let good_fill: Vec<u8> = good.iter().map(|&i| 3 + i as u8).collect();
            assert_eq!(got, good_fill, "{what} at {pos}");
            let lens: Vec<u32> = o.chunks.concat().iter().map(|e| e.1).collect();
            let good_len: Vec<u32> = good.iter().map(|&i| 100 + i as u32).collect();
            assert_eq!(lens, good_len, "{what} at {pos}");
            want.judge_dropped = o.stats.judge_dropped;
            assert_eq!(o.stats, want, "{what} at {pos}");
            // The first group, and after a bad descriptor with DD at least one more.
            let groups = p.0.q.vector_groups;
            if bad.st & RXD_STAT_DD == 0 {
                assert_eq!(groups, 1, "{what} at {pos}");
            } else {
                assert!(groups >= 2, "{what} at {pos}: {groups} groups");
            }
            if bad.st & RXD_STAT_DD == 0 {
                // The rest once the device is done with it.
                let w = wb(GOOD, 104 + pos as u16);
                write(&p.0, 4 + pos as u32, w, 7 + pos as u8);
                write(&p.1, 4 + pos as u32, w, 7 + pos as u8);
                let o = burst_both(&mut p, 32, 0);
                assert_eq!(o.chunks.concat().len(), 16 - 4 - pos, "{what} at {pos}");
                assert_eq!(o.stats.descriptors, 16);
            }
        }
    }
}

#[test]
fn groups_at_the_ring_end_are_taken_one_by_one_and_the_wrap_is_seamless() {
    for start in 57..64u32 {
        let mut p = pair(64, 256);
        // Move both rings to `start` (everything dropped, buffers stay).
        write_both(&p, 0, &vec![wb(GOOD, 60); start as usize], 0);
        let mut b = PacketBatch::new(64);
        for f in [&mut p.0, &mut p.1] {
            assert_eq!(
                f.q.burst_judged(&mut b, &mut |_: &RxChunk<'_>| u32::MAX)
                    .received,
                start as usize
            );
        }
        // 16 good frames across the wrap, a bad one just before the end in every other round.
        let mut descs = vec![wb(GOOD, 64); 16];
        for (i, d) in descs.iter_mut().enumerate() {
            d.len = 64 + i as u16;
            d.vlan = 0x0FFF;
            d.st |= OTHER_STATUS;
        }
        if start % 2 == 1 {
            descs[(63 - start) as usize] = wb(GOOD | RXD_ERR_RXE, 64);
        }
        write_both(&p, start, &descs, 30);
        let o = burst_both(&mut p, 32, 0);
        let mut want = RxStats::default();
        let good = model(&descs, ROOM.into(), &mut false, &mut want);
        let got: Vec<(u32, u8)> = o.chunks.concat().iter().map(|e| (e.1, e.2)).collect();
        let expect: Vec<(u32, u8)> = good
            .iter()
            .map(|&i| (64 + i as u32, 30 + i as u8))
            .collect();
        assert_eq!(got, expect, "start {start}: VLAN tag not in the length");
        assert_eq!(o.chunks.len(), 1, "one chunk across the wrap");
        assert_eq!(o.stats.err_mac, u64::from(start % 2));
        assert_eq!(*o.tails.last().unwrap(), (start + 15) % 64);
    }
}

#[test]
fn chunks_of_every_size_and_every_alignment() {
    // Batch room from 1 to 33 (chunks not a multiple of 4, and a chunk ending mid-group), at
    // ring positions of every alignment.
    let mut p = pair(128, 2048);
    let mut slot = 0u32;
    let mut fill = 0u8;
    for room in 1..=33usize {
        for _ in 0..3 {
            let n = room + 5;
            let descs: Vec<Wb> = (0..n).map(|i| wb(GOOD, 60 + i as u16)).collect();
            write_both(&p, slot, &descs, fill);
            fill = fill.wrapping_add(n as u8);
            // A batch of 64 with 64 - room held: `room` free slots.
            let rule = [TWO_IN_THREE, KEEP_ALL, DROP_ALL, ONE_IN_TEN][room % 4];
            let o = burst_rule(&mut p, 64, 64 - room, rule);
            let sizes: Vec<usize> = o.chunks.iter().map(|c| c.len()).collect();
            assert_eq!(sizes.iter().sum::<usize>(), o.received);
            assert!(sizes.iter().all(|&c| c <= room.min(32)), "room {room}");
            // Whatever was not taken is taken by the next bursts.
            let mut seen = o.received;
            while seen < n {
                let o = burst_both(&mut p, 64, 0);
                assert!(o.received > 0);
                seen += o.received;
            }
            assert_eq!(seen, n);
            slot = (slot + n as u32) % 128;
            let s = p.0.q.stats;
            assert_eq!(s.descriptors, s.packets + s.dropped());
        }
    }
    assert!(p.0.q.vector_groups > 100);
}

/// xorshift32.
struct Rnd(u32);
impl Rnd {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
}

/// Completes up to 47 descriptors of both rings from `slot` on, as the device would: mostly
/// good (other status bits and VLAN tags too, the length from `len` of the random word), one in
/// `bad_every` a bad one of any kind, a "not done" one only as the last of a round (the device
/// completes in order; a later round writes the real write-back into that slot). The completed
/// write-backs are appended to `pending`; at most 240 are ever pending.
fn complete_round(
    p: &(Fixture, Fixture),
    r: &mut Rnd,
    slot: &mut u32,
    pending: &mut Vec<Wb>,
    bad_every: u32,
    len: impl Fn(u32) -> u16,
) {
    for _ in 0..r.next() % 48 {
        if pending.len() >= 240 {
            break;
        }
        let x = r.next();
        let w = if x.is_multiple_of(bad_every) {
            BAD[(x >> 8) as usize % BAD.len()].1
        } else {
            Wb {
                st: GOOD | (x >> 20) & OTHER_STATUS,
                len: len(x),
                vlan: (x >> 16) as u16 & 0x0FFF,
            }
        };
        write_both(p, *slot, &[w], x as u8);
        if w.st & RXD_STAT_DD == 0 {
            break;
        }
        pending.push(w);
        *slot = (*slot + 1) % 256;
    }
}

#[test]
fn random_rings_agree_with_the_scalar_path_and_the_model() {
    for seed in [0x2545_F491u32, 0x9E37_79B9, 0x0BAD_F00D] {
        let mut r = Rnd(seed);
        let mut p = pair(256, 2048);
        let mut slot = 0u32;
        let mut pending: Vec<Wb> = Vec::new();
        let mut want = RxStats::default();
        let mut disc = false;
        let mut taken = 0usize;
        for round in 0..400 {
            let len = |x: u32| match (x >> 4) % 8 {
                0 => 1,
                1 => ROOM,
                _ => 60 + (x >> 12) as u16 % 1400,
            };
            complete_round(&p, &mut r, &mut slot, &mut pending, 11, len);
            let cap = 1 + r.next() as usize % 64;
            let held = r.next() as usize % cap;
            let rule = [TWO_IN_THREE, KEEP_ALL, DROP_ALL, ONE_IN_TEN][r.next() as usize % 4];
            let o = burst_rule(&mut p, cap, held, rule);
            taken += o.received;
            // The model: descriptors consumed = the queue's count.
            let consumed = (o.stats.descriptors - want.descriptors) as usize;
            let before = want;
            let good = model(&pending[..consumed], ROOM.into(), &mut disc, &mut want);
            assert_eq!(want.descriptors - before.descriptors, consumed as u64);
            assert_eq!(good.len(), o.received, "seed {seed:#x} round {round}");
            pending.drain(..consumed);
            want.judge_dropped = o.stats.judge_dropped;
            assert_eq!(o.stats, want, "seed {seed:#x} round {round}");
            // Buffers conserved: every armed buffer distinct, none of them a kept packet's.
            let mut armed = o.armed.clone();
            armed.sort_unstable();
            armed.dedup();
            assert_eq!(armed.len(), 256);
            for k in &o.kept {
                assert!(!o.armed.contains(&k.0), "a kept buffer is still armed");
            }
        }
        assert!(taken > 2000, "seed {seed:#x}: {taken} frames");
        assert!(p.0.q.vector_groups > 200, "seed {seed:#x}");
        let s = p.0.q.stats;
        assert_eq!(s.descriptors, s.packets + s.dropped());
        assert_eq!(
            u64::from(p.0.pool.available()) + p.0.q.buffers_held(),
            2048,
            "every buffer back (the batches were dropped)"
        );
    }
}

/// A pair of queues over pools whose buffers hold `data_room` bytes.
fn pair_with_room(size: u32, data_room: usize) -> (Fixture, Fixture) {
    let one = |scalar_only| {
        let pool = Mempool::with_layout(&PoolLayout {
            buffers: 4 * size,
            stride: 128 + data_room,
            data_off: 128,
            headroom: 0,
            huge_pages: HugePages::Never,
        })
        .unwrap();
        let mut f = fixture_on(size, pool);
        if scalar_only {
            f.q.set_scalar_only();
        }
        f
    };
    (one(false), one(true))
}

#[test]
fn the_smallest_and_largest_data_rooms() {
    // 64 bytes: 64 fits, 65 does not. 66,560 bytes (more than a length can say): every length
    // from 1 to 0xFFFF fits, 0 does not.
    for (room, fits, not) in [(64u32, 64u16, 65u16), (66_560, 0xFFFF, 0)] {
        for pos in 0..4 {
            let mut p = pair_with_room(16, room as usize);
            let mut descs = [wb(GOOD, fits); 8];
            descs[1] = wb(GOOD, 1);
            descs[4 + pos] = wb(GOOD, not);
            write_both(&p, 0, &descs, 9);
            let o = burst_both(&mut p, 8, 0);
            let mut want = RxStats::default();
            let good = model(&descs, room, &mut false, &mut want);
            assert_eq!(good.len(), 7, "room {room}");
            let lens: Vec<u32> = o.chunks.concat().iter().map(|e| e.1).collect();
            let good_len: Vec<u32> = good.iter().map(|&i| descs[i].len.into()).collect();
            assert_eq!(lens, good_len, "room {room}, bad length at {pos}");
            assert_eq!((o.stats.err_length, o.received), (1, 7));
            assert_eq!(p.0.q.vector_groups, 1, "room {room}");
        }
    }
}

/// What an `rx_burst` did: the packets (length, first byte), counters, tail writes, and the
/// slots that got a fresh buffer.
fn plain_burst(f: &mut Fixture, cap: usize, held: usize) -> Comparable {
    let mut b = PacketBatch::new(cap);
    for _ in 0..held {
        b.push(f.pool.alloc().unwrap()).ok().unwrap();
    }
    let before = f.q.bufs.to_vec();
    let n = f.q.burst(&mut b);
    assert_eq!(b.len(), held + n);
    let pkts: Vec<(usize, u8)> = b.as_slice()[held..]
        .iter()
        .map(|p| (p.len(), p.data().first().copied().unwrap_or(0)))
        .collect();
    for p in &b.as_slice()[held..] {
        assert!(
            before.contains(&p.buffer_index()),
            "a packet in a buffer not armed before"
        );
        assert!(
            !f.q.bufs.contains(&p.buffer_index()),
            "a delivered buffer still armed"
        );
    }
    let mut armed = f.q.bufs.to_vec();
    armed.sort_unstable();
    armed.dedup();
    assert_eq!(armed.len(), f.q.size as usize, "a buffer armed twice");
    for s in 0..f.q.size {
        // SAFETY: descriptor `s` of the fixture's ring.
        if unsafe { f.qw(s, 1).read_volatile() } == 0 {
            let at = (f.armed(s) - f.pool.region().iova()) / f.pool.stride() as u64;
            assert_eq!(at, u64::from(f.q.bufs[s as usize]), "slot {s}");
        }
    }
    let refreshed = before
        .iter()
        .zip(f.q.bufs.iter())
        .map(|(a, b)| a != b)
        .collect();
    (Vec::new(), pkts, f.q.stats, f.tails(), refreshed, n)
}

#[test]
fn rx_burst_four_at_a_time_agrees_with_one_by_one() {
    for seed in [0x1234_5679u32, 0xDEAD_BEEF] {
        let mut r = Rnd(seed);
        let mut p = pair(256, 2048);
        let mut slot = 0u32;
        let mut pending: Vec<Wb> = Vec::new();
        let mut want = RxStats::default();
        let mut disc = false;
        let mut got = 0;
        for round in 0..300 {
            let len = |x: u32| [1, ROOM, 60 + (x >> 12) as u16 % 1400][(x >> 4) as usize % 3];
            complete_round(&p, &mut r, &mut slot, &mut pending, 13, len);
            let cap = 1 + r.next() as usize % 64;
            let held = r.next() as usize % cap;
            let v = plain_burst(&mut p.0, cap, held);
            let s = plain_burst(&mut p.1, cap, held);
            assert_eq!(
                v, s,
                "seed {seed:#x} round {round}: vector and scalar disagree"
            );
            let consumed = (v.2.descriptors - want.descriptors) as usize;
            let good = model(&pending[..consumed], ROOM.into(), &mut disc, &mut want);
            let lens: Vec<usize> = good.iter().map(|&i| pending[i].len.into()).collect();
            let got_lens: Vec<usize> = v.1.iter().map(|p| p.0).collect();
            assert_eq!(got_lens, lens, "seed {seed:#x} round {round}");
            pending.drain(..consumed);
            assert_eq!(v.2, want, "seed {seed:#x} round {round}");
            got += v.5;
        }
        assert!(got > 2000, "seed {seed:#x}: {got} packets");
        let s = p.0.q.stats;
        assert_eq!(s.descriptors, s.packets + s.dropped());
    }
}
