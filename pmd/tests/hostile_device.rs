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

pub mod common;
pub mod hostile;
use common::frame;
use floodgate_pmd::PacketBatch;
use floodgate_sim::NicModel;
use hostile::*;
use proptest::prelude::*;

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

/// The fuzz target's decoding: a few fixed inputs reach the checks through it.
#[test]
fn byte_inputs_run_the_same_checks() {
    assert!(rounds_from_bytes(&[1, 2, 3]).is_empty());
    let mut data = Vec::new();
    for i in 0..30u8 {
        data.extend_from_slice(&[
            i.wrapping_mul(37) | 1,
            0,
            0,
            i,
            100,
            0,
            0x10,
            0x02,
            0,
            0,
            i % 8,
            i,
        ]);
    }
    let rounds = rounds_from_bytes(&data);
    assert!(rounds.len() > 1 && rounds.iter().map(Vec::len).sum::<usize>() == 30);
    rx_case(NicModel::X82599, 7, &rounds, &[5, 64]);
}
