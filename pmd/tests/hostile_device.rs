//! The PMD against a device that writes arbitrary descriptor write-backs (proptest, bounded
//! case counts; `fuzz/fuzz_targets/rx_writeback.rs` runs the RX checks for long runs).
//!
//! The NIC model is the device, wrapped so that the test sees the rings: the wrapper records
//! the DMA mappings and the ring base registers, and answers reads of the head registers
//! (RDH/TDH) with arbitrary values. After the model has written a frame's RX descriptor, the
//! test overwrites the write-back with generated status/error bits, length, packet type and
//! timing (DD possibly set only later). The driver must take every completed descriptor off the
//! ring and count it in exactly one `RxStats` bucket (checked against an independent model of
//! the documented rules), deliver only lengths inside the buffer with the frame's bytes, and
//! give every buffer back. On TX the test plays a device that sets DD where it likes while the
//! model's TX engine is stalled: reclaim must never return a buffer twice or lose one.

mod common;
use common::*;
use floodgate_pmd::regs::*;
use floodgate_pmd::{IxgbeVf, PacketBatch, RxStats};
use floodgate_sim::{NicModel, SimVf};
use floodgate_vfio::{Bar, Device, DeviceInfo, DmaRegion, Error};
use proptest::prelude::*;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// What the wrapper saw, and the head value it reports.
#[derive(Default)]
struct Seen {
    /// (IOVA, host address, length) of every mapped region.
    maps: Mutex<Vec<(u64, usize, usize)>>,
    /// Ring base registers of queue 0: RDBAL, RDBAH, TDBAL, TDBAH.
    bases: Mutex<[u32; 4]>,
    /// Value returned for every RDH/TDH read.
    head: AtomicU32,
}

impl Seen {
    /// Host address of `len` bytes at `iova`, inside one mapping.
    fn host(&self, iova: u64, len: usize) -> *mut u8 {
        let maps = self.maps.lock().unwrap();
        let (base, host, _) = maps
            .iter()
            .find(|(b, _, l)| iova >= *b && iova + len as u64 <= b + *l as u64)
            .expect("ring inside a mapped region");
        (host + (iova - base) as usize) as *mut u8
    }

    fn ring(&self, rx: bool) -> u64 {
        let b = self.bases.lock().unwrap();
        let (lo, hi) = if rx { (b[0], b[1]) } else { (b[2], b[3]) };
        u64::from(lo) | u64::from(hi) << 32
    }
}

#[derive(Clone)]
struct HostileBar {
    inner: <SimVf as Device>::Bar,
    seen: Arc<Seen>,
}

fn is_head(off: u32) -> bool {
    (0..8).any(|q| off == vfrdh(q) || off == vftdh(q))
}

impl Bar for HostileBar {
    fn read32(&self, off: u32) -> u32 {
        if is_head(off) {
            return self.seen.head.load(Ordering::Relaxed);
        }
        self.inner.read32(off)
    }
    fn write32(&self, off: u32, v: u32) {
        let slot = [vfrdbal(0), vfrdbah(0), vftdbal(0), vftdbah(0)]
            .iter()
            .position(|r| *r == off);
        if let Some(i) = slot {
            self.seen.bases.lock().unwrap()[i] = v;
        }
        self.inner.write32(off, v)
    }
    fn flush(&self) {
        self.inner.flush()
    }
}

struct HostileDev {
    inner: SimVf,
    seen: Arc<Seen>,
}

impl Device for HostileDev {
    type Bar = HostileBar;
    fn info(&self) -> DeviceInfo {
        self.inner.info()
    }
    fn bar0(&self) -> HostileBar {
        HostileBar {
            inner: self.inner.bar0(),
            seen: self.seen.clone(),
        }
    }
    fn dma_map(&self, r: &DmaRegion) -> Result<(), Error> {
        self.seen
            .maps
            .lock()
            .unwrap()
            .push((r.iova(), r.as_ptr() as usize, r.len()));
        self.inner.dma_map(r)
    }
    fn dma_unmap(&self, r: &DmaRegion) -> Result<(), Error> {
        self.seen.maps.lock().unwrap().retain(|m| m.0 != r.iova());
        self.inner.dma_unmap(r)
    }
}

const RXE: u32 = RXD_ERR_RXE;
const IPE: u32 = RXD_ERR_IPE;
const L4E: u32 = RXD_ERR_L4E;

/// One generated RX write-back.
#[derive(Debug, Clone)]
struct WriteBack {
    /// Status/error dword (DD is added by the test).
    status: u32,
    /// Length field.
    len: u16,
    /// Dword 0 (packet type, RSS type).
    dw0: u32,
    /// DD only becomes visible after the driver has looked once.
    late: bool,
    /// Length of the frame the model actually wrote.
    frame_len: usize,
    /// The frame is IPv4/UDP with checksum 0 ("none"), which an 82599 flags with TCPE.
    udp_csum_zero: bool,
}

fn write_back() -> impl Strategy<Value = WriteBack> {
    let status = prop_oneof![
        3 => Just(RXD_STAT_DD | RXD_STAT_EOP),
        1 => Just(RXD_STAT_DD),
        1 => prop::sample::select(vec![RXE, IPE, L4E, RXE | IPE | L4E, IPE | L4E])
            .prop_map(|e| e | RXD_STAT_DD | RXD_STAT_EOP),
        2 => any::<u32>(),
    ];
    let len = prop_oneof![
        3 => Just(None),
        1 => Just(Some(0u16)),
        1 => (1u16..2100).prop_map(Some),
        1 => prop::sample::select(vec![2047u16, 2048, 2049, 4096, 0x7FFF, 0xFFFF]).prop_map(Some),
        1 => any::<u16>().prop_map(Some),
    ];
    let dw0 = prop_oneof![
        Just(RXD_PTYPE_IPV4 | RXD_PTYPE_UDP),
        any::<u32>(),
        Just(0u32)
    ];
    let status = prop_oneof![
        6 => status,
        1 => Just(RXD_STAT_DD | RXD_STAT_EOP | L4E),
    ];
    (
        status,
        len,
        dw0,
        prop::bool::weighted(0.15),
        60usize..1515,
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(status, len, dw0, late, frame_len, udp_csum_zero)| WriteBack {
                status,
                len: len.unwrap_or(frame_len as u16),
                dw0,
                late,
                frame_len,
                udp_csum_zero,
            },
        )
}

/// The documented rules, written out independently: which bucket each completed descriptor
/// lands in, and which are delivered (indices into `wbs`).
fn expected(wbs: &[WriteBack], data_room: u32) -> (RxStats, Vec<usize>) {
    let mut s = RxStats::default();
    let mut delivered = Vec::new();
    let mut discarding = false;
    for (i, w) in wbs.iter().enumerate() {
        let st = w.status | RXD_STAT_DD;
        let eop = st & RXD_STAT_EOP != 0;
        let len = u32::from(w.len);
        s.descriptors += 1;
        let in_buffer = len >= 1 && len <= data_room;
        // TCPE alone on an IPv4/UDP datagram whose checksum field (bytes 40-41 of these
        // frames) is 0 and inside the reported length: not an error (82599 erratum 44).
        let no_checksum = st & (RXD_STAT_EOP | RXD_ERR_MASK) == RXD_STAT_EOP | L4E
            && w.dw0 & (RXD_PTYPE_IPV4 | RXD_PTYPE_UDP) == RXD_PTYPE_IPV4 | RXD_PTYPE_UDP
            && w.udp_csum_zero
            && len >= 42;
        if !discarding && eop && (st & RXD_ERR_MASK == 0 || no_checksum) && in_buffer {
            s.packets += 1;
            s.bytes += u64::from(len);
            s.udp_csum_zero += u64::from(no_checksum);
            delivered.push(i);
        } else if discarding || !eop {
            s.err_multiseg += 1;
            discarding = !eop;
        } else if st & RXE != 0 {
            s.err_mac += 1;
        } else if st & IPE != 0 {
            s.err_ip_csum += 1;
        } else if st & L4E != 0 {
            s.err_l4_csum += 1;
        } else {
            s.err_length += 1;
        }
    }
    (s, delivered)
}

fn open_hostile(
    model: NicModel,
    head: u32,
) -> (floodgate_sim::Nic, IxgbeVf<HostileDev>, Arc<Seen>) {
    let nic = nic(model);
    let seen = Arc::new(Seen::default());
    seen.head.store(head, Ordering::Relaxed);
    let dev = HostileDev {
        inner: nic.vf(0),
        seen: seen.clone(),
    };
    let vf = IxgbeVf::open(dev, cfg()).expect("bring-up against the model");
    (nic, vf, seen)
}

/// Runs `rounds` of frames through the model, overwrites each write-back as generated, and
/// drains the queue with bursts of the given sizes; checks every bucket and every delivered
/// packet, then that every buffer is back.
fn rx_case(model: NicModel, head: u32, rounds: &[Vec<WriteBack>], bursts: &[usize]) {
    let (nic, mut vf, seen) = open_hostile(model, head);
    let pool = vf.mempool().clone();
    let data_room = pool.data_room() as u32;
    let mac = vf.mac();
    let ring = seen.host(seen.ring(true), cfg().rx_ring_size * 16) as *mut u64;
    let size = cfg().rx_ring_size;
    let all: Vec<WriteBack> = rounds.iter().flatten().cloned().collect();
    let (want, delivered_idx) = expected(&all, data_room);
    let mut frames = Vec::new();
    let mut slot = 0usize;
    let mut got = Vec::new(); // (length, first bytes) of delivered packets, in order
    let mut bi = 0usize;
    let mut done_desc = 0u64;
    for round in rounds {
        let first_slot = slot;
        for w in round {
            let tag = frames.len() as u8;
            let mut f = frame(mac, w.frame_len, tag);
            if w.udp_csum_zero {
                f[40..42].copy_from_slice(&[0, 0]);
            } else {
                // Otherwise the checksum-0 allowance must not apply.
                assert_ne!(&f[40..42], &[0, 0]);
            }
            nic.inject(&f);
            frames.push(f);
        }
        while nic.step() > 0 {}
        // The device's write-backs, as generated (DD withheld on the late ones for now).
        for (k, w) in round.iter().enumerate() {
            let d = (first_slot + k) % size;
            let st = w.status | RXD_STAT_DD;
            let first = if w.late { st & !RXD_STAT_DD } else { st };
            // SAFETY: slot d of the RX ring the driver gave the device (size × 16 bytes).
            unsafe {
                ring.add(2 * d)
                    .write_volatile(u64::from(w.dw0) | 0x1234 << 32);
                ring.add(2 * d + 1)
                    .write_volatile(u64::from(first) | u64::from(w.len) << 32);
            }
        }
        slot = (first_slot + round.len()) % size;
        let target = done_desc + round.len() as u64;
        let mut released = false;
        let mut idle = 0;
        let mut before = done_desc;
        while before < target {
            let mut b = PacketBatch::new(bursts[bi % bursts.len()]);
            bi += 1;
            let n = vf.rx_burst(0, &mut b);
            assert_eq!(n, b.len());
            for p in b.iter() {
                assert!(p.len() as u32 <= data_room && !p.is_empty());
                got.push((p.len(), p.data().to_vec()));
            }
            if bi & 1 == 0 {
                vf.recycle(0, &mut b);
            }
            drop(b);
            assert!(pool.available() <= pool.capacity());
            let now = vf.queue_stats(0).unwrap().0.descriptors;
            if now > before {
                idle = 0;
            } else {
                // No descriptor taken: the driver waits for DD on a late one.
                idle += 1;
                if idle > 3 && !released {
                    // The device now sets DD on the late descriptors.
                    for (k, w) in round.iter().enumerate().filter(|(_, w)| w.late) {
                        let d = (first_slot + k) % size;
                        // SAFETY: as above; only dword 2 (status) changes, of a descriptor
                        // the driver has not taken yet (it had no DD).
                        unsafe {
                            (ring.add(2 * d + 1) as *mut u32).write_volatile(w.status | RXD_STAT_DD)
                        };
                    }
                    released = true;
                }
                assert!(
                    idle < 10,
                    "descriptors left on the ring: {:?}",
                    vf.queue_stats(0)
                );
            }
            before = now;
        }
        done_desc = target;
    }
    let s = vf.queue_stats(0).unwrap().0;
    assert_eq!(
        (s.descriptors, s.packets, s.bytes),
        (want.descriptors, want.packets, want.bytes),
        "totals: got {s:?}, want {want:?}"
    );
    assert_eq!(
        (
            s.err_length,
            s.err_multiseg,
            s.err_mac,
            s.err_ip_csum,
            s.err_l4_csum
        ),
        (
            want.err_length,
            want.err_multiseg,
            want.err_mac,
            want.err_ip_csum,
            want.err_l4_csum
        ),
        "buckets: got {s:?}, want {want:?}"
    );
    assert_eq!(s.descriptors, s.packets + s.dropped(), "one bucket each");
    assert_eq!(s.udp_csum_zero, want.udp_csum_zero);
    // Delivered in order, with the length the device wrote and the frame's bytes.
    assert_eq!(got.len(), delivered_idx.len());
    for ((len, data), &i) in got.iter().zip(&delivered_idx) {
        let w = &all[i];
        assert_eq!(*len, usize::from(w.len));
        let n = (*len).min(w.frame_len);
        assert_eq!(&data[..n], &frames[i][..n], "bytes of frame {i}");
    }
    drop(vf);
    assert_eq!(pool.available(), pool.capacity(), "every buffer back");
}

/// Posts packets on a TX queue whose model engine is stalled, while the test sets the
/// write-back dword of arbitrary slots; reclaim must stay consistent and lose nothing.
fn tx_case(head: u32, steps: &[(usize, Vec<(usize, u32)>)]) {
    let (nic, mut vf, seen) = open_hostile(NicModel::X82599, head);
    nic.stall_tx(0, 0, true).unwrap();
    let pool = vf.mempool().clone();
    let size = cfg().tx_ring_size;
    let ring = seen.host(seen.ring(false), size * 16) as *mut u32;
    let mac = vf.mac();
    let mut posted = 0u64;
    for (k, writes) in steps {
        let mut b = PacketBatch::new(64);
        for i in 0..*k {
            let mut p = pool.alloc().expect("a free buffer");
            p.copy_from_slice(&frame(mac, 60 + i, i as u8)).unwrap();
            b.push(p).unwrap();
        }
        let sent = vf.tx_burst(0, &mut b);
        posted += sent as u64;
        drop(b);
        for (slot, v) in writes {
            // SAFETY: dword 3 of a descriptor of the TX ring (size × 16 bytes).
            unsafe { ring.add(4 * (slot % size) + 3).write_volatile(*v) };
        }
        vf.tx_reclaim(0);
        let t = vf.queue_stats(0).unwrap().1;
        assert_eq!(t.packets, posted);
        assert!(t.completed <= t.packets, "{t:?}");
        assert!(pool.available() <= pool.capacity());
    }
    drop(vf);
    assert_eq!(pool.available(), pool.capacity(), "every buffer back once");
}

#[test]
fn every_status_bit_alone() {
    for bit in 0..32 {
        let wbs: Vec<WriteBack> = (0..3)
            .map(|i| WriteBack {
                status: if i == 1 {
                    RXD_STAT_EOP | 1 << bit
                } else {
                    RXD_STAT_EOP
                },
                len: 100,
                dw0: RXD_PTYPE_IPV4 | RXD_PTYPE_UDP,
                late: false,
                frame_len: 100,
                udp_csum_zero: false,
            })
            .collect();
        rx_case(NicModel::X82599, 0, &[wbs], &[32]);
    }
}

#[test]
fn lengths_at_and_past_the_buffer() {
    let room = 2048u16;
    for len in [0, 1, 59, 60, 1514, room - 1, room, room + 1, 4096, 0xFFFF] {
        let w = WriteBack {
            status: RXD_STAT_EOP,
            len,
            dw0: 0,
            late: false,
            frame_len: 100,
            udp_csum_zero: false,
        };
        rx_case(
            NicModel::X540,
            u32::MAX,
            &[vec![w.clone(), w.clone(), w]],
            &[1, 64],
        );
    }
}

#[test]
fn udp_checksum_zero_allowance_looks_only_inside_the_length() {
    // With TCPE alone the driver reads the checksum field, bytes 40-41: only a length that
    // covers them and fits the buffer lets the datagram through.
    for (len, delivered) in [
        (0, false),
        (41, false),
        (42, true),
        (100, true),
        (2049, false),
    ] {
        let w = WriteBack {
            status: RXD_STAT_EOP | L4E,
            len,
            dw0: RXD_PTYPE_IPV4 | RXD_PTYPE_UDP,
            late: false,
            frame_len: 100,
            udp_csum_zero: true,
        };
        let (want, idx) = expected(std::slice::from_ref(&w), 2048);
        assert_eq!(idx.len(), usize::from(delivered), "len {len}");
        assert_eq!(want.udp_csum_zero, u64::from(delivered));
        rx_case(NicModel::X82599, 0, &[vec![w]], &[8]);
    }
}

#[test]
fn tx_dd_on_the_report_status_descriptor_reclaims_its_group_and_elsewhere_nothing() {
    // Ten packets take slots 1-10 (slot 0 holds the context descriptor); the last carries RS.
    let unposted: Vec<(usize, u32)> = (11..64).map(|s| (s, TXD_STAT_DD)).collect();
    let (nic, mut vf, seen) = open_hostile(NicModel::X82599, 0);
    nic.stall_tx(0, 0, true).unwrap();
    let pool = vf.mempool().clone();
    let ring = seen.host(seen.ring(false), 64 * 16) as *mut u32;
    let mut b = PacketBatch::new(16);
    for i in 0..10 {
        let mut p = pool.alloc().unwrap();
        p.copy_from_slice(&frame(vf.mac(), 60, i)).unwrap();
        b.push(p).unwrap();
    }
    assert_eq!(vf.tx_burst(0, &mut b), 10);
    for (slot, v) in &unposted {
        // SAFETY: dword 3 of a descriptor of the 64-slot TX ring.
        unsafe { ring.add(4 * slot + 3).write_volatile(*v) };
    }
    assert_eq!(vf.tx_reclaim(0), 0, "DD outside the posted range");
    for slot in 1..10 {
        // SAFETY: as above.
        unsafe { ring.add(4 * slot + 3).write_volatile(TXD_STAT_DD) };
    }
    assert_eq!(vf.tx_reclaim(0), 0, "DD on descriptors without RS");
    // SAFETY: as above.
    unsafe { ring.add(4 * 10 + 3).write_volatile(TXD_STAT_DD) };
    assert_eq!(vf.tx_reclaim(0), 10);
    assert_eq!(vf.tx_reclaim(0), 0, "a group is reclaimed once");
    assert_eq!(vf.queue_stats(0).unwrap().1.completed, 10);
    drop(vf);
    assert_eq!(pool.available(), pool.capacity());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// Arbitrary write-backs over one to three rounds (the ring wraps), drained with bursts of
    /// arbitrary sizes.
    #[test]
    fn arbitrary_rx_write_backs_are_counted_and_recycled(
        model in prop::sample::select(vec![NicModel::X82599, NicModel::X540]),
        head in any::<u32>(),
        rounds in prop::collection::vec(prop::collection::vec(write_back(), 1..40), 1..4),
        bursts in prop::collection::vec(1usize..70, 1..5),
    ) {
        rx_case(model, head, &rounds, &bursts);
    }

    /// Arbitrary DD (and other bits) written into arbitrary TX slots between bursts.
    #[test]
    fn arbitrary_tx_write_backs_never_lose_or_repeat_a_buffer(
        head in any::<u32>(),
        steps in prop::collection::vec(
            (0usize..40, prop::collection::vec((0usize..64, prop_oneof![Just(TXD_STAT_DD), any::<u32>()]), 0..12)),
            1..8,
        ),
    ) {
        tx_case(head, &steps);
    }
}
