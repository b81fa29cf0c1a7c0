//! The vfio-user client against a hostile server (proptest, bounded case count;
//! `fuzz/fuzz_targets/vfio_user_reply.rs` feeds raw reply bytes for long runs).
//!
//! A fake server on a Unix socket answers every request correctly except where the generated
//! plan says otherwise: a wrong message ID or command, a reply that is not a reply, a size below
//! the header or far beyond the limit, a reply cut short (then silence or a hang-up), garbage,
//! no reply at all, an error reply, a body too short or too long, a region access answered for
//! another access, and file descriptors the client did not ask for. The client must never
//! panic or hang, must turn each of these into a clean error (the connection marked broken when
//! the stream may be out of step, usable otherwise), deliver correct values whenever the
//! exchange was correct, and leak none of the descriptors the server sends.

pub mod hostile;
use hostile::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        (1u16..).prop_map(Fault::WrongId),
        prop_oneof![Just(0u16), Just(6), Just(11), Just(12), 14u16..].prop_map(Fault::WrongCommand),
        prop_oneof![
            Just(0u32),
            2u32..16,
            any::<u32>().prop_map(|f| (f & !0xF) | 2)
        ]
        .prop_map(Fault::NotReply),
        (0u32..16).prop_map(Fault::SizeBelowHeader),
        prop_oneof![Just(u32::MAX), Just(MAX_MESSAGE + 1), (MAX_MESSAGE + 1)..]
            .prop_map(Fault::SizeHuge),
        (0usize..40).prop_map(Fault::CutThenClose),
        (1usize..40).prop_map(Fault::CutThenStall),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Fault::Garbage),
        Just(Fault::Silence),
        Just(Fault::Close),
        prop_oneof![Just(0u32), 1u32..200, any::<u32>()].prop_map(Fault::Refuse),
        (1usize..40).prop_map(Fault::BodyShort),
        prop::collection::vec(any::<u8>(), 1..300).prop_map(Fault::BodyLong),
        (1u64..).prop_map(Fault::WrongEcho),
        (1usize..12).prop_map(Fault::Fds),
        (1usize..12).prop_map(Fault::FdsOnBody),
    ]
}

#[test]
fn a_correct_server_gives_correct_values() {
    scenario(BTreeMap::new());
}

/// Every fault kind at every kind of exchange. Regression cases found by the property below:
/// two to eleven descriptors with a reply (the client kept one of them open, or, past two,
/// failed without closing them), and a region access answered for another offset (the client
/// took the data).
#[test]
fn each_fault_alone_at_each_kind_of_exchange() {
    // Connecting is VERSION (exchange 0), DEVICE_GET_INFO (1), nine region infos (2-10), three
    // IRQ infos (11-13), the vendor/device read (14) and the bus-master read-modify-write
    // (15, 16); the operations follow from 17 (BAR0 read, config write, config read, BAR0
    // write, reset, IRQ trigger, IRQ eventfd, DMA map, DMA unmap, BAR0 read).
    let faults = [
        Fault::WrongId(1),
        Fault::WrongCommand(0),
        Fault::NotReply(0),
        Fault::SizeBelowHeader(15),
        Fault::SizeHuge(u32::MAX),
        Fault::CutThenClose(7),
        Fault::CutThenStall(17),
        Fault::Garbage(vec![0xFF; 20]),
        Fault::Silence,
        Fault::Close,
        Fault::Refuse(22),
        Fault::BodyShort(1),
        Fault::BodyLong(vec![0; 9]),
        Fault::WrongEcho(4),
        Fault::Fds(1),
        Fault::Fds(2),
        Fault::Fds(8),
        Fault::Fds(9),
        Fault::FdsOnBody(2),
        Fault::FdsOnBody(11),
    ];
    for at in [0, 1, 2, 11, 14, 16, 17, 18, 21, 23, 25] {
        for f in &faults {
            scenario(BTreeMap::from([(at, f.clone())]));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Up to three faults anywhere in the conversation (connect is 17 exchanges with this
    /// device, the operations 10 more).
    #[test]
    fn hostile_replies_give_clean_errors(plan in prop::collection::btree_map(0usize..28, fault(), 0..4)) {
        scenario(plan);
    }
}

/// The fuzz target's decoding: a few fixed inputs reach the scenario through it.
#[test]
fn byte_plans_run_the_same_scenario() {
    assert!(plan_from_bytes(&[]).is_empty());
    for data in [
        &[0u8, 0, 1, 0, 0, 0][..],
        &[17, 14, 1, 0, 0, 0, 20, 13, 4, 0, 0, 0],
        &[3, 7, 20, 0, 0, 0, 1, 2, 3],
        &[255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255],
    ] {
        scenario(plan_from_bytes(data));
    }
}
