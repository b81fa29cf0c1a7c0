//! A device wrapper around the NIC model that lets a test write the descriptor write-backs
//! itself, an independent model of the RX counting rules, and the RX/TX checks. Shared by the
//! property test (hostile_device.rs) and the cargo-fuzz target
//! (fuzz/fuzz_targets/rx_writeback.rs). The including crate declares `mod common`.

use crate::common::*;
use floodgate_pmd::{IxgbeVf, PacketBatch, RxStats};
use floodgate_sim::{NicModel, SimVf};
use floodgate_vfio::{Bar, Device, DeviceInfo, DmaRegion, Error};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// What the wrapper saw, and the head value it reports.
#[derive(Default)]
pub struct Seen {
    /// (IOVA, host address, length) of every mapped region.
    maps: Mutex<Vec<(u64, usize, usize)>>,
    /// Ring base registers of queue 0: RDBAL, RDBAH, TDBAL, TDBAH.
    bases: Mutex<[u32; 4]>,
    /// Value returned for every RDH/TDH read.
    head: AtomicU32,
}

impl Seen {
    /// Host address of `len` bytes at `iova`, inside one mapping.
    pub fn host(&self, iova: u64, len: usize) -> *mut u8 {
        let maps = self.maps.lock().unwrap();
        let (base, host, _) = maps
            .iter()
            .find(|(b, _, l)| iova >= *b && iova + len as u64 <= b + *l as u64)
            .expect("ring inside a mapped region");
        (host + (iova - base) as usize) as *mut u8
    }

    pub fn ring(&self, rx: bool) -> u64 {
        let b = self.bases.lock().unwrap();
        let (lo, hi) = if rx { (b[0], b[1]) } else { (b[2], b[3]) };
        u64::from(lo) | u64::from(hi) << 32
    }
}

#[derive(Clone)]
pub struct HostileBar {
    inner: <SimVf as Device>::Bar,
    seen: Arc<Seen>,
}

pub fn is_head(off: u32) -> bool {
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

pub struct HostileDev {
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

// The registers and descriptor bits the harness plays the device with: its own reading of the
// facts (the driver's register map is private to the driver).

/// RX descriptor base low of queue `q` (facts §2.2; queue stride 0x40).
pub const fn vfrdbal(q: u32) -> u32 {
    0x01000 + 0x40 * q
}
/// RX descriptor base high of queue `q` (facts §2.2).
pub const fn vfrdbah(q: u32) -> u32 {
    0x01004 + 0x40 * q
}
/// RX head of queue `q` (facts §2.2).
pub const fn vfrdh(q: u32) -> u32 {
    0x01010 + 0x40 * q
}
/// TX descriptor base low of queue `q` (facts §2.3).
pub const fn vftdbal(q: u32) -> u32 {
    0x02000 + 0x40 * q
}
/// TX descriptor base high of queue `q` (facts §2.3).
pub const fn vftdbah(q: u32) -> u32 {
    0x02004 + 0x40 * q
}
/// TX head of queue `q` (facts §2.3).
pub const fn vftdh(q: u32) -> u32 {
    0x02010 + 0x40 * q
}

/// RX write-back status: descriptor done (facts §6.1).
pub const RXD_STAT_DD: u32 = 1 << 0;
/// RX write-back status: end of packet (facts §6.1).
pub const RXD_STAT_EOP: u32 = 1 << 1;
/// RX write-back error: any MAC error, bit 29 (facts §6.1).
pub const RXE: u32 = 1 << 29;
/// RX write-back error: L4 checksum error, bit 30 (facts §6.1).
pub const L4E: u32 = 1 << 30;
/// RX write-back error: IPv4 checksum error, bit 31 (facts §6.1).
pub const IPE: u32 = 1 << 31;
/// The error bits that make a driver drop a frame (facts §6.1).
pub const RXD_ERR_MASK: u32 = RXE | L4E | IPE;
/// Packet type in RX write-back dword 0: IPv4 header present (facts §6.1).
pub const RXD_PTYPE_IPV4: u32 = 0x10;
/// Packet type in RX write-back dword 0: UDP header present (facts §6.1).
pub const RXD_PTYPE_UDP: u32 = 0x200;
/// TX write-back `olinfo_status`: descriptor done (facts §6.2).
pub const TXD_STAT_DD: u32 = 1 << 0;

/// One generated RX write-back.
#[derive(Debug, Clone)]
pub struct WriteBack {
    /// Status/error dword (DD is added by the test).
    pub status: u32,
    /// Length field.
    pub len: u16,
    /// Dword 0 (packet type, RSS type).
    pub dw0: u32,
    /// DD only becomes visible after the driver has looked once.
    pub late: bool,
    /// Length of the frame the model actually wrote.
    pub frame_len: usize,
    /// The frame is IPv4/UDP with checksum 0 ("none"), which an 82599 flags with TCPE.
    pub udp_csum_zero: bool,
}

/// The documented rules, written out independently: which bucket each completed descriptor
/// lands in, and which are delivered (indices into `wbs`).
pub fn expected(wbs: &[WriteBack], data_room: u32) -> (RxStats, Vec<usize>) {
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

pub fn open_hostile(
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
pub fn rx_case(model: NicModel, head: u32, rounds: &[Vec<WriteBack>], bursts: &[usize]) {
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
pub fn tx_case(head: u32, steps: &[(usize, Vec<(usize, u32)>)]) {
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

/// Write-backs decoded from raw bytes (the fuzz target's input): 12 bytes each, split into
/// rounds of at most 40 by the `late` flag's neighbour bit.
pub fn rounds_from_bytes(data: &[u8]) -> Vec<Vec<WriteBack>> {
    let mut rounds = vec![Vec::new()];
    for rec in data.chunks_exact(12).take(120) {
        let u32_at = |o: usize| u32::from_le_bytes([rec[o], rec[o + 1], rec[o + 2], rec[o + 3]]);
        let flags = rec[10];
        let w = WriteBack {
            status: u32_at(0),
            len: u16::from_le_bytes([rec[4], rec[5]]),
            dw0: u32_at(6),
            late: flags & 1 != 0,
            udp_csum_zero: flags & 2 != 0,
            frame_len: 60 + usize::from(rec[11]) * 5,
        };
        let cur = rounds.last_mut().unwrap();
        if cur.len() >= 40 || (flags & 4 != 0 && !cur.is_empty()) {
            rounds.push(vec![w]);
        } else {
            cur.push(w);
        }
    }
    rounds.retain(|r| !r.is_empty());
    rounds
}
