//! Data path against the NIC model: bad descriptors, packet conservation, packets crossing
//! threads, headroom metadata.

pub mod common;
use common::*;
use floodgate_pmd::{IxgbeVf, Packet, PacketBatch};
use floodgate_sim::{NicModel, RxCorruption};

const RXE: u32 = 1 << 29;
const L4E: u32 = 1 << 30;
const IPE: u32 = 1 << 31;

#[test]
fn every_bad_descriptor_case_is_counted_and_recycled() {
    let nic = nic(NicModel::X82599);
    let mut vf = open(&nic, 0);
    let pool = vf.mempool().clone();
    let mac = vf.mac();
    let cases = [
        RxCorruption::ErrorBits(RXE),
        RxCorruption::ErrorBits(IPE),
        RxCorruption::ErrorBits(L4E),
        RxCorruption::ErrorBits(RXE | IPE | L4E),
        RxCorruption::BadLength(0),
        RxCorruption::BadLength(2049),
        RxCorruption::BadLength(0xFFFF),
        RxCorruption::NoEop,
    ];
    let mut b = PacketBatch::new(64);
    for c in cases {
        nic.corrupt_next_rx(0, 0, c).unwrap();
        nic.inject(&frame(mac, 100, 0xEE));
        nic.step();
        // A good frame after each bad one: the driver must stay in sync.
        nic.inject(&frame(mac, 100, 1));
        nic.step();
    }
    let got = vf.rx_burst(0, &mut b);
    let s = vf.stats().rx;
    assert_eq!(s.err_mac, 2);
    assert_eq!(s.err_ip_csum, 1);
    assert_eq!(s.err_l4_csum, 1);
    assert_eq!(s.err_length, 3);
    // DD without EOP: the driver treats the next descriptor as the frame's continuation and
    // drops both (counted per descriptor).
    assert_eq!(s.err_multiseg, 2);
    assert_eq!(got, cases.len() - 1);
    assert!(
        b.iter().all(|p| p.data()[42] == 1),
        "no bad frame delivered"
    );
    assert_eq!(s.descriptors, s.packets + s.dropped());
    assert_eq!(s.descriptors, nic.stats().rx_delivered);
    // Every buffer is either in the ring, in the batch or free.
    b.clear();
    drop(vf);
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn packet_conservation_over_many_bursts() {
    let nic = nic(NicModel::X540);
    let mut vf = open(&nic, 0);
    let mac = vf.mac();
    let mut b = PacketBatch::new(16);
    let mut delivered = 0u64;
    for round in 0..40u32 {
        for i in 0..20u32 {
            if (round + i) % 7 == 0 {
                nic.corrupt_next_rx(0, 0, RxCorruption::ErrorBits(RXE))
                    .unwrap();
            }
            nic.inject(&frame(mac, 60 + (i as usize % 40), i as u8));
            // Deliver frame by frame so each corruption hits its own frame.
            nic.step();
        }
        while vf.rx_burst(0, &mut b) > 0 {
            delivered += b.len() as u64;
            b.clear();
        }
    }
    let s = vf.stats();
    let ns = nic.stats();
    assert_eq!(s.rx.packets, delivered);
    assert_eq!(s.rx.descriptors, s.rx.packets + s.rx.dropped());
    // Model side: everything it wrote into the ring, or dropped for lack of descriptors.
    assert_eq!(ns.rx_delivered, s.rx.descriptors);
    assert_eq!(
        ns.wire_in,
        ns.rx_delivered + ns.rx_no_desc + ns.switch_dropped + ns.pf_delivered
    );
    assert!(s.rx.err_mac > 0);
    // Hardware counters agree with the model's good-frame count.
    assert_eq!(s.hw.rx_packets, ns.rx_delivered);
}

#[test]
fn packets_dropped_on_other_threads_return_their_buffers() {
    let nic = nic(NicModel::X82599);
    let mut vf = open(&nic, 0);
    let pool = vf.mempool().clone();
    let free0 = pool.available();
    let mac = vf.mac();
    for i in 0..60 {
        nic.inject(&frame(mac, 64, i));
    }
    nic.step();
    let mut b = PacketBatch::new(64);
    assert_eq!(vf.rx_burst(0, &mut b), 60);
    let pkts: Vec<Packet> = b.drain().collect();
    // The driver re-armed the ring from the pool: 60 buffers are now out with the packets.
    assert!(pool.available() <= free0 - 60 + 512);
    let mut chunks: Vec<Vec<Packet>> = (0..3).map(|_| Vec::new()).collect();
    for (i, p) in pkts.into_iter().enumerate() {
        chunks[i % 3].push(p);
    }
    let before = pool.available();
    let hs: Vec<_> = chunks
        .into_iter()
        .map(|c| {
            std::thread::spawn(move || {
                let sum: u64 = c.iter().map(|p| p.data()[42] as u64).sum();
                drop(c);
                sum
            })
        })
        .collect();
    let sum: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(sum, (0..60).sum::<u64>());
    assert_eq!(pool.available(), before + 60);
    drop(vf);
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn headroom_metadata_survives_a_trip_through_a_worker_thread_and_tx() {
    let nic = nic(NicModel::X82599);
    let mut vf = open(&nic, 0);
    let mac = vf.mac();
    for i in 0..8 {
        nic.inject(&frame(mac, 80, i));
    }
    nic.step();
    let mut b = PacketBatch::new(8);
    assert_eq!(vf.rx_burst(0, &mut b), 8);
    assert_eq!(b.as_slice()[0].headroom().len(), 128);
    // Dispatcher: write metadata (a "flow hash" and the payload offset) into the headroom.
    for p in b.iter_mut() {
        let tag = p.data()[42];
        let h = p.headroom_mut();
        h[..4].copy_from_slice(&(0xC0DE_0000u32 | tag as u32).to_le_bytes());
        h[124..128].copy_from_slice(&42u32.to_le_bytes());
    }
    let (to_worker, worker_rx) = std::sync::mpsc::channel::<Packet>();
    let (to_main, main_rx) = std::sync::mpsc::channel::<Packet>();
    let worker = std::thread::spawn(move || {
        for mut p in worker_rx {
            let h = p.headroom();
            let hash = u32::from_le_bytes(h[..4].try_into().unwrap());
            let off = u32::from_le_bytes(h[124..128].try_into().unwrap()) as usize;
            assert_eq!(
                hash & 0xFF,
                p.data()[off] as u32,
                "metadata matches the packet"
            );
            // Worker turns the frame around: back to its sender, from our MAC (the PF's
            // anti-spoofing drops other sources, and the switch drops frames to ourselves).
            p.data_mut().copy_within(6..12, 0);
            p.data_mut()[6..12].copy_from_slice(&mac);
            p.data_mut()[43] = 0x77;
            to_main.send(p).unwrap();
        }
    });
    for p in b.drain() {
        to_worker.send(p).unwrap();
    }
    drop(to_worker);
    for p in main_rx.iter() {
        assert_eq!(&p.headroom()[..2], &[(p.data()[42]), 0x00]);
        b.push(p).unwrap();
    }
    worker.join().unwrap();
    assert_eq!(b.len(), 8);
    assert_eq!(vf.tx_burst(0, &mut b), 8);
    nic.step();
    let out = nic.take_egress();
    assert_eq!(out.len(), 8);
    assert!(out.iter().all(|f| f[43] == 0x77 && f[6..12] == mac));
    // The model wrote DD back: all eight buffers are reclaimed in one go (into the RX queue's
    // buffer cache), and every buffer is back in the pool once the VF is closed.
    assert_eq!(vf.tx_reclaim(0), 8);
    assert_eq!(vf.stats().tx.completed, 8);
    let pool = vf.mempool().clone();
    drop(vf);
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn forward_between_two_vfs_through_the_model_switch() {
    let nic = nic(NicModel::X540);
    let mut a = open(&nic, 0);
    let mut bvf = IxgbeVf::open(nic.vf(1), cfg()).unwrap();
    // B may transmit buffers of A's pool once it is mapped.
    bvf.add_tx_pool(a.mempool()).unwrap();
    let amac = a.mac();
    for i in 0..10 {
        nic.inject(&frame(amac, 64, i));
    }
    nic.step();
    let mut batch = PacketBatch::new(16);
    assert_eq!(a.rx_burst(0, &mut batch), 10);
    for p in batch.iter_mut() {
        p.data_mut()[6..12].copy_from_slice(&bvf.mac());
    }
    assert_eq!(bvf.tx_burst(0, &mut batch), 10);
    assert_eq!(bvf.stats().tx.rejected, 0);
    nic.step();
    assert_eq!(nic.take_egress().len() + nic.stats().loopback as usize, 10);
    assert_eq!(nic.faults_seen(), 0);
}

#[test]
fn hardware_counters_wrap_at_32_and_36_bits() {
    use floodgate_sim::VfCounter;
    let nic = nic(NicModel::X82599);
    let sim = nic.vf(0);
    // Counters just below their wrap points before bring-up takes its baseline.
    sim.set_counter(VfCounter::Gprc, 0xFFFF_FFF0);
    sim.set_counter(VfCounter::Gorc, (1 << 36) - 100);
    sim.set_counter(VfCounter::Gptc, 0xFFFF_FFFF);
    sim.set_counter(VfCounter::Gotc, (1 << 36) - 1);
    let mut vf = open(&nic, 0);
    let mac = vf.mac();
    for i in 0..32 {
        nic.inject(&frame(mac, 100, i));
    }
    nic.step();
    let mut b = PacketBatch::new(32);
    assert_eq!(vf.rx_burst(0, &mut b), 32);
    for p in b.iter_mut() {
        let d = p.data_mut();
        d.copy_within(6..12, 0);
        d[6..12].copy_from_slice(&mac);
    }
    assert_eq!(vf.tx_burst(0, &mut b), 32);
    nic.step();
    vf.maintain().unwrap();
    let hw = vf.stats().hw;
    assert_eq!(hw.rx_packets, 32, "32-bit VFGPRC wrapped");
    assert_eq!(hw.rx_bytes, 32 * 100, "36-bit VFGORC wrapped");
    assert_eq!(hw.tx_packets, 32);
    assert_eq!(hw.tx_bytes, 32 * 100);
}

#[test]
fn recycle_returns_buffers_to_the_rx_queue_without_the_pool() {
    let nic = nic(NicModel::X82599);
    let mut vf = open(&nic, 0);
    let pool = vf.mempool().clone();
    let other = floodgate_pmd::Mempool::new(&floodgate_pmd::MempoolConfig {
        buffers: 4,
        huge_pages: floodgate_vfio::HugePages::Never,
        ..Default::default()
    })
    .unwrap();
    let mac = vf.mac();
    let mut b = PacketBatch::new(32);
    let mut rounds_free = Vec::new();
    for round in 0..20 {
        for i in 0..30 {
            nic.inject(&frame(mac, 64, i));
        }
        nic.step();
        assert_eq!(vf.rx_burst(0, &mut b), 30, "round {round}");
        if round == 0 {
            // A foreign packet in the batch goes back to its own pool.
            b.pop();
            b.push(other.alloc().unwrap()).unwrap();
        }
        vf.recycle(0, &mut b);
        assert!(b.is_empty());
        rounds_free.push(pool.available());
    }
    assert_eq!(other.available(), 4);
    // After the first refill, the queue lives off its own cache: the pool is not touched.
    assert!(
        rounds_free.windows(2).skip(1).all(|w| w[0] == w[1]),
        "{rounds_free:?}"
    );
    let s = vf.stats().rx;
    assert_eq!(s.packets, 600);
    drop(vf);
    // One buffer was swapped for the foreign packet (dropped by `pop`, back in the pool).
    assert_eq!(pool.available(), pool.capacity());
}

/// RX checksum errors reported by the model itself (no fault injection; facts §6.1): frames with
/// a bad IPv4 header checksum are counted in `err_ip_csum`, bad UDP checksums in `err_l4_csum`, a
/// frame with both in `err_ip_csum` only, and good frames pass. UDP over IPv4 with checksum 0
/// ("none") passes on both models; on the 82599 the device flags it with TCPE (erratum 44) and the
/// driver counts it in `udp_csum_zero`.
#[test]
fn checksum_errors_from_the_model_are_counted_once_and_good_frames_pass() {
    for model in [NicModel::X82599, NicModel::X540] {
        let nic = nic(model);
        let mut vf = open(&nic, 0);
        let mac = vf.mac();
        let good = |tag| frame(mac, 100, tag);
        let mut bad_ip = good(2);
        bad_ip[22] -= 1; // TTL: the header checksum no longer verifies
        let mut bad_udp = good(3);
        bad_udp[50] ^= 0x5A; // payload byte: the UDP checksum no longer verifies
        let mut udp_zero = good(4);
        udp_zero[40..42].copy_from_slice(&[0, 0]);
        let mut both = bad_udp.clone();
        both[42] = 5;
        both[22] -= 1;
        // 4 good, 3 bad IPv4 header, 2 bad UDP, 2 UDP checksum 0, 1 with both errors.
        let sent: Vec<Vec<u8>> = [
            good(1),
            bad_ip.clone(),
            bad_udp.clone(),
            good(1),
            udp_zero.clone(),
            bad_ip.clone(),
            both,
            good(1),
            bad_udp,
            udp_zero,
            bad_ip,
            good(1),
        ]
        .into();
        for f in &sent {
            nic.inject(f);
        }
        nic.step();
        assert_eq!(nic.stats().rx_delivered, sent.len() as u64, "{model:?}");
        let mut b = PacketBatch::new(64);
        let got = vf.rx_burst(0, &mut b);
        let tags: Vec<u8> = b.iter().map(|p| p.data()[42]).collect();
        assert_eq!(
            tags,
            [1, 1, 4, 1, 4, 1],
            "{model:?}: good and checksum-0 frames, in order"
        );
        let s = vf.stats().rx;
        assert_eq!(got, 6);
        assert_eq!(s.packets, 6);
        assert_eq!(
            s.err_ip_csum, 4,
            "{model:?}: 3 bad headers + 1 with both errors"
        );
        assert_eq!(s.err_l4_csum, 2, "{model:?}");
        assert_eq!((s.err_mac, s.err_length, s.err_multiseg), (0, 0, 0));
        let flagged = if model == NicModel::X82599 { 2 } else { 0 };
        assert_eq!(s.udp_csum_zero, flagged, "{model:?}");
        assert_eq!(s.descriptors, s.packets + s.dropped());
        assert_eq!(s.descriptors, sent.len() as u64);
    }
}
