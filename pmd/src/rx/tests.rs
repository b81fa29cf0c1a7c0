//! Tests of the receive queue (the judged path has its own, in `judged.rs`).
use super::*;
use crate::mempool::MempoolConfig;
use floodgate_vfio::{DmaOptions, DmaRegion, HugePages};
use std::sync::{Arc, Mutex};

/// Records register writes; reads return 0.
#[derive(Clone, Default)]
pub(crate) struct RecBar(pub(crate) Arc<Mutex<Vec<(u32, u32)>>>);
impl Bar for RecBar {
    fn read32(&self, _: u32) -> u32 {
        0
    }
    fn write32(&self, off: u32, v: u32) {
        self.0.lock().unwrap().push((off, v));
    }
}

pub(crate) fn region(bytes: usize) -> DmaRegion {
    DmaRegion::allocate(
        bytes,
        &DmaOptions {
            huge_pages: HugePages::Never,
            name: None,
        },
    )
    .unwrap()
}

pub(crate) fn pool(n: u32) -> Mempool {
    Mempool::new(&MempoolConfig {
        buffers: n,
        huge_pages: HugePages::Never,
        ..Default::default()
    })
    .unwrap()
}

pub(crate) struct Fixture {
    pub(crate) bar: RecBar,
    pub(crate) ring: DmaRegion,
    pub(crate) pool: Mempool,
    pub(crate) q: RxQueue<RecBar>,
}

pub(crate) fn fixture(size: u32, bufs: u32) -> Fixture {
    fixture_on(size, pool(bufs))
}

/// A queue of `size` descriptors over `pool`.
pub(crate) fn fixture_on(size: u32, pool: Mempool) -> Fixture {
    let bar = RecBar::default();
    let ring = region(size as usize * 16);
    let q = RxQueue::new(
        bar.clone(),
        3,
        NonNull::new(ring.as_ptr().cast()).unwrap(),
        ring.iova(),
        size,
        &pool,
    )
    .unwrap();
    Fixture { bar, ring, pool, q }
}

impl Fixture {
    pub(crate) fn qw(&self, slot: u32, w: usize) -> *mut u64 {
        // SAFETY: test ring of `size` descriptors.
        unsafe { (self.ring.as_ptr() as *mut u64).add(2 * slot as usize + w) }
    }
    /// Device side: reads the armed buffer address of a slot.
    pub(crate) fn armed(&self, slot: u32) -> u64 {
        // SAFETY: inside the ring.
        unsafe { self.qw(slot, 0).read_volatile() }
    }
    /// Device side: writes a write-back descriptor (and the frame bytes into its buffer).
    pub(crate) fn complete(&self, slot: u32, status: u32, len: u16, fill: u8) {
        let iova = self.armed(slot);
        let r = self.pool.region();
        let off = (iova - r.iova()) as usize;
        // SAFETY: writing `len` bytes into the buffer armed in this slot (clamped to 2 KiB).
        unsafe {
            std::ptr::write_bytes(r.as_ptr().add(off), fill, (len as usize).min(2048));
            self.qw(slot, 0).write_volatile(0x1234_5678); // RSS hash etc.
            self.qw(slot, 1)
                .write_volatile(((len as u64) << 32) | status as u64);
        }
    }
    pub(crate) fn tails(&self) -> Vec<u32> {
        self.bar
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(o, _)| *o == vfrdt(3))
            .map(|&(_, v)| v)
            .collect()
    }
}

pub(crate) const GOOD: u32 = RXD_STAT_DD | RXD_STAT_EOP;

#[test]
fn arms_every_slot_with_a_distinct_buffer() {
    let f = fixture(64, 128);
    let mut addrs: Vec<u64> = (0..64).map(|i| f.armed(i)).collect();
    assert!(addrs.iter().all(|a| *a >= f.pool.region().iova()));
    addrs.sort_unstable();
    addrs.dedup();
    assert_eq!(addrs.len(), 64);
    assert_eq!(f.pool.available(), 64);
}

#[test]
fn good_packets_are_delivered_and_refilled_with_one_tail_write() {
    let mut f = fixture(64, 256);
    for s in 0..5 {
        f.complete(s, GOOD, 60 + s as u16, s as u8 + 1);
    }
    let old0 = f.armed(0);
    let mut b = PacketBatch::new(32);
    assert_eq!(f.q.burst(&mut b), 5);
    for (i, p) in b.iter().enumerate() {
        assert_eq!(p.len(), 60 + i);
        assert!(p.data().iter().all(|&x| x == i as u8 + 1));
    }
    assert_eq!(
        f.tails(),
        vec![4],
        "one RDT write, pointing at the last refilled slot"
    );
    // Slot 0 was re-armed with a different buffer, DD cleared.
    assert_ne!(f.armed(0), old0);
    // SAFETY: inside the ring.
    assert_eq!(unsafe { f.qw(0, 1).read_volatile() }, 0);
    assert_eq!(f.q.stats.packets, 5);
    assert_eq!(f.q.stats.bytes, (60..65).sum::<u64>());
    // Nothing more.
    assert_eq!(f.q.burst(&mut b), 0);
    assert_eq!(f.tails().len(), 1);
    drop(b);
    drop(f.q);
    assert_eq!(f.pool.available(), 256);
}

#[test]
fn batch_capacity_bounds_the_burst() {
    let mut f = fixture(64, 256);
    for s in 0..10 {
        f.complete(s, GOOD, 64, 0);
    }
    let mut b = PacketBatch::new(4);
    assert_eq!(f.q.burst(&mut b), 4);
    assert_eq!(f.q.burst(&mut b), 0, "batch full");
    b.clear();
    assert_eq!(f.q.burst(&mut b), 4);
    b.clear();
    assert_eq!(f.q.burst(&mut b), 2);
}

#[test]
fn bad_descriptors_are_counted_dropped_and_recycled() {
    let mut f = fixture(64, 256);
    let cases = [
        (GOOD, 0u16),             // length 0
        (GOOD, 2049),             // past the buffer
        (GOOD, 0xFFFF),           // far past the buffer
        (GOOD | RXD_ERR_RXE, 64), // MAC error
        (GOOD | RXD_ERR_IPE, 64), // IPv4 checksum
        (GOOD | RXD_ERR_L4E, 64), // L4 checksum
        (RXD_STAT_DD, 2048),      // DD without EOP ...
        (RXD_STAT_DD, 2048),      // ... continuation ...
        (GOOD, 100),              // ... EOP ends the multi-buffer frame
        (GOOD, 2048),             // a good, full-size packet
        (0xFFFF_FFFF, 0xFFFF),    // every bit set
    ];
    let before: Vec<u64> = (0..cases.len() as u32).map(|s| f.armed(s)).collect();
    for (s, &(st, len)) in cases.iter().enumerate() {
        f.complete(s as u32, st, len, 0xAA);
    }
    let mut b = PacketBatch::new(64);
    assert_eq!(f.q.burst(&mut b), 1);
    assert_eq!(b.as_slice()[0].len(), 2048);
    let s = f.q.stats;
    assert_eq!(s.descriptors, cases.len() as u64);
    assert_eq!(s.err_length, 3);
    assert_eq!(s.err_mac, 2, "RXE, and the all-ones descriptor");
    assert_eq!(s.err_ip_csum, 1);
    assert_eq!(s.err_l4_csum, 1);
    assert_eq!(s.err_multiseg, 3);
    assert_eq!(s.packets, 1);
    assert_eq!(
        s.descriptors,
        s.packets + s.dropped(),
        "every descriptor in one bucket"
    );
    // Bad slots were re-armed with their own buffer; the good one got a new buffer.
    for (i, &a) in before.iter().enumerate() {
        if i == 9 {
            assert_ne!(f.armed(i as u32), a);
        } else {
            assert_eq!(f.armed(i as u32), a, "slot {i}");
        }
    }
}

#[test]
fn multiseg_frame_split_across_bursts_is_dropped_whole() {
    let mut f = fixture(64, 256);
    f.complete(0, RXD_STAT_DD, 2048, 0);
    let mut b = PacketBatch::new(8);
    assert_eq!(f.q.burst(&mut b), 0);
    f.complete(1, GOOD, 10, 0); // EOP of the same frame
    f.complete(2, GOOD, 10, 0); // a new frame
    assert_eq!(f.q.burst(&mut b), 1);
    assert_eq!(f.q.stats.err_multiseg, 2);
}

#[test]
fn empty_pool_stops_delivery_without_losing_descriptors() {
    // 64 buffers all in the ring, none spare.
    let mut f = fixture(64, 64);
    f.complete(0, GOOD, 60, 0);
    let mut b = PacketBatch::new(8);
    assert_eq!(f.q.burst(&mut b), 0);
    assert_eq!(f.q.stats.no_buffers, 1);
    assert_eq!(f.q.stats.descriptors, 0, "descriptor left for later");
}

#[test]
fn bad_descriptors_at_the_ring_end_and_after_the_wrap() {
    let mut f = fixture(64, 512);
    let mut b = PacketBatch::new(64);
    // Move to slot 60 first.
    for s in 0..60 {
        f.complete(s, GOOD, 64, 0);
    }
    assert_eq!(f.q.burst(&mut b), 60);
    b.clear();
    // Slots 60..64 then 0..6: bad ones at 62, 63 (last slot), 0 (first after the wrap)
    // and a multi-buffer frame 3..=4.
    let plan: [(u32, u32, u16); 10] = [
        (60, GOOD, 70),
        (61, GOOD, 71),
        (62, GOOD | RXD_ERR_RXE, 72),
        (63, GOOD, 0),
        (0, GOOD, 3000),
        (1, GOOD, 75),
        (2, GOOD, 76),
        (3, RXD_STAT_DD, 2048),
        (4, GOOD, 10),
        (5, GOOD, 79),
    ];
    for &(slot, st, len) in &plan {
        f.complete(slot, st, len, 0x55);
    }
    assert_eq!(f.q.burst(&mut b), 5);
    let lens: Vec<usize> = b.iter().map(|p| p.len()).collect();
    assert_eq!(lens, vec![70, 71, 75, 76, 79]);
    let s = f.q.stats;
    assert_eq!(s.descriptors, 70);
    assert_eq!((s.err_mac, s.err_length, s.err_multiseg), (1, 2, 2));
    assert_eq!(s.descriptors, s.packets + s.dropped());
    assert_eq!(s.bytes, 60 * 64 + (70 + 71 + 75 + 76 + 79));
    assert_eq!(*f.tails().last().unwrap(), 5);
    b.clear();
    drop(f.q);
    assert_eq!(f.pool.available(), 512);
}

#[test]
fn recycle_keeps_own_buffers_and_returns_foreign_ones() {
    let mut f = fixture(64, 1024);
    let other = pool(64);
    assert_eq!(f.pool.available(), 960);
    // 16 own packets, then slot 6 (inside the second group of four) replaced by a
    // foreign one.
    let mut b = PacketBatch::new(16);
    assert_eq!(f.pool.alloc_into(&mut b), 16);
    drop(std::mem::replace(
        &mut b.as_mut_slice()[6],
        other.alloc().unwrap(),
    ));
    assert_eq!((f.pool.available(), other.available()), (945, 63));
    f.q.recycle(&mut b);
    assert!(b.is_empty());
    assert_eq!(f.q.cache_len, 15, "own buffers go into the queue's cache");
    assert_eq!(
        other.available(),
        64,
        "the foreign buffer goes back to its pool"
    );
    assert_eq!(f.pool.available(), 945);
    // More than the cache can take: it fills up, the rest goes back to the pool.
    let mut big = PacketBatch::new(500);
    assert_eq!(f.pool.alloc_into(&mut big), 500);
    f.q.recycle(&mut big);
    assert_eq!(f.q.cache_len, CACHE_SIZE);
    assert_eq!(f.pool.available(), 945 - 500 + 3);
    // 6 own packets: one group of four and a tail of two.
    let mut small = PacketBatch::new(6);
    f.q.cache_len = 100;
    let cached: Vec<u32> = f.q.cache[100..CACHE_SIZE].to_vec();
    assert_eq!(f.pool.alloc_into(&mut small), 6);
    let idx: Vec<u32> = small.iter().map(|p| p.buffer_index()).collect();
    f.q.recycle(&mut small);
    assert_eq!(f.q.cache_len, 106);
    assert_eq!(&f.q.cache[100..106], &idx[..]);
    // Give back what the test took out of the cache by hand, then everything returns.
    f.pool.core().free_bulk(&cached[6..]);
    f.pool.core().free_bulk(&cached[..6]);
    drop(f.q);
    assert_eq!(f.pool.available(), 1024);
}

#[test]
fn short_bursts_never_hand_out_a_buffer_twice() {
    let mut f = fixture(64, 1024);
    // Fill the cache so that bursts take from it rather than the pool.
    let mut held = PacketBatch::new(1024);
    let mut b = PacketBatch::new(32);
    let mut slot = 0u32;
    for round in 0..40u32 {
        // 1..=7 completed descriptors, a bad one in the middle every other round: fewer
        // than the 32 the burst reserves.
        let k = round % 7 + 1;
        for i in 0..k {
            let st = if round % 2 == 1 && i == k / 2 {
                GOOD | RXD_ERR_L4E
            } else {
                GOOD
            };
            f.complete(slot, st, 64, 0);
            slot = (slot + 1) % 64;
        }
        let got = f.q.burst(&mut b);
        assert_eq!(got as u32, if round % 2 == 1 { k - 1 } else { k });
        for p in b.drain() {
            held.push(p).ok().unwrap();
        }
    }
    let mut idx: Vec<u32> = held.iter().map(|p| p.buffer_index()).collect();
    let iovas: Vec<u64> = held.iter().map(|p| p.iova()).collect();
    let n = idx.len();
    idx.sort_unstable();
    idx.dedup();
    assert_eq!(idx.len(), n, "a buffer was handed out twice");
    let mut armed: Vec<u64> = (0..64).map(|s| f.armed(s)).collect();
    for (s, a) in armed.iter().enumerate() {
        assert!(!iovas.contains(a), "slot {s} armed with a delivered buffer");
    }
    armed.sort_unstable();
    armed.dedup();
    assert_eq!(armed.len(), 64, "two slots armed with the same buffer");
    drop(held);
    drop(f.q);
    assert_eq!(f.pool.available(), 1024);
}

#[test]
fn wraps_around_the_ring() {
    let mut f = fixture(64, 512);
    let mut b = PacketBatch::new(64);
    let mut slot = 0u32;
    for round in 0..10 {
        for _ in 0..40 {
            f.complete(slot, GOOD, 64, round);
            slot = (slot + 1) % 64;
        }
        assert_eq!(f.q.burst(&mut b), 40);
        assert!(b.iter().all(|p| p.data()[0] == round));
        b.clear();
    }
    assert_eq!(*f.tails().last().unwrap(), (400 - 1) % 64);
}

#[test]
fn udp4_csum_zero_recognises_only_ipv4_udp_with_checksum_0() {
    let pt = RXD_PTYPE_IPV4 | RXD_PTYPE_UDP;
    let mut f = vec![0u8; 64];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[23] = 17;
    let check = |f: &[u8], dw0| {
        // SAFETY: f is a live slice of f.len() bytes.
        unsafe { udp4_csum_zero(dw0, f.as_ptr(), f.len() as u32) }
    };
    assert!(check(&f, pt));
    assert!(!check(&f, RXD_PTYPE_IPV4), "packet type must say UDP");
    let mut g = f.clone();
    g[41] = 1; // a checksum is present: TCPE is a real error
    assert!(!check(&g, pt));
    let mut g = f.clone();
    g[23] = 6; // TCP
    assert!(!check(&g, pt));
    // Behind a VLAN tag left in the frame (no stripping), with IPv4 options.
    let mut v = vec![0u8; 80];
    v[12..18].copy_from_slice(&[0x81, 0x00, 0x00, 0x64, 0x08, 0x00]);
    v[18] = 0x46;
    v[27] = 17;
    v[18 + 24 + 6] = 0x12;
    assert!(!check(&v, pt));
    v[18 + 24 + 6] = 0;
    assert!(check(&v, pt));
    // Cut short before the UDP checksum: not recognised.
    assert!(!check(&f[..40], pt));
}
