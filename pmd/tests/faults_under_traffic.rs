//! Faults injected into the NIC model while traffic flows through the driver, checked at the
//! driver's level: DMA to an IOVA the IOMMU no longer maps, a PF that NACKs or does not answer
//! while the VF re-negotiates after a PF reset, and a surprise removal with buffers on both
//! rings. Each test runs rounds of "frames arrive, the application receives them, turns them
//! around and transmits them", and checks that every frame the model counted is in exactly one
//! driver counter, that no delivered frame is stale or corrupt, and that every buffer returns.
//! (The same faults under the daemon's loop are in `tests/daemon_faults.rs`.)

pub mod common;
use common::*;
use floodgate_pmd::{Error, IxgbeVf, PacketBatch};
use floodgate_sim::{MailboxFault, Nic, NicModel, SimVf};
use floodgate_vfio::Device;

/// A frame for round `round`, number `i` of the round: both are in the payload (bytes 42 and
/// 43), the checksums are correct.
fn tagged(dst: [u8; 6], round: u8, i: u8) -> Vec<u8> {
    let mut f = frame(dst, 64 + usize::from(i % 8), i);
    f[43] = round;
    assert!(floodgate_sim::rxcsum::fix_checksums(&mut f));
    f
}

/// The traffic of one round: `n` frames arrive; the application receives what the driver
/// delivers, checks each frame against what was sent, and transmits it back to its sender
/// from the VF's MAC. Returns the (round, i) tags received.
struct Echo {
    mac: [u8; 6],
    rx: PacketBatch,
    received: Vec<(u8, u8)>,
    /// Frames the driver delivered that differ from what was sent for their tag.
    corrupt: u64,
}

impl Echo {
    fn new(vf: &IxgbeVf<SimVf>) -> Echo {
        Echo {
            mac: vf.mac(),
            rx: PacketBatch::new(64),
            received: Vec::new(),
            corrupt: 0,
        }
    }

    fn arrive(&self, nic: &Nic, round: u8, n: u8) {
        for i in 0..n {
            nic.inject(&tagged(self.mac, round, i));
        }
        nic.step();
    }

    fn receive(&mut self, vf: &mut IxgbeVf<SimVf>) -> usize {
        let mut got = 0;
        loop {
            let n = vf.rx_burst(0, &mut self.rx);
            if n == 0 {
                break;
            }
            got += n;
            for p in self.rx.iter_mut() {
                let d = p.data();
                let (i, round) = (d[42], d[43]);
                if d != tagged(self.mac, round, i).as_slice() {
                    self.corrupt += 1;
                }
                self.received.push((round, i));
                let d = p.data_mut();
                d.copy_within(6..12, 0);
                d[6..12].copy_from_slice(&self.mac);
            }
        }
        got
    }

    fn transmit(&mut self, vf: &mut IxgbeVf<SimVf>, nic: &Nic) {
        while !self.rx.is_empty() {
            assert!(vf.tx_burst(0, &mut self.rx) > 0, "the TX ring never drains");
            nic.step();
        }
        nic.step();
        vf.tx_reclaim(0);
    }
}

/// Free buffers plus those the driver holds: the pool's capacity when no packet is out.
fn level(vf: &IxgbeVf<SimVf>) -> u64 {
    u64::from(vf.mempool().available()) + vf.buffers_held()
}

#[test]
fn unmapped_dma_under_echo_traffic_is_dropped_by_the_nic_counted_and_never_delivered() {
    let nic = nic(NicModel::X82599);
    let sim = nic.vf(0);
    let mut vf = open(&nic, 0);
    let pool = vf.mempool().clone();
    let cap = u64::from(pool.capacity());
    assert_eq!(level(&vf), cap);
    let mut echo = Echo::new(&vf);
    let mut sent_back = Vec::new();
    for round in 0..60u8 {
        if round == 40 {
            // The mapping comes back.
            sim.dma_map(pool.region()).unwrap();
        }
        echo.arrive(&nic, round, 20);
        let got = echo.receive(&mut vf);
        if round == 20 {
            // The IOMMU mapping of the buffer pool disappears between receive and transmit:
            // this round's echoes are read from unmapped IOVAs, and until the mapping returns
            // the NIC cannot write a received frame anywhere.
            sim.dma_unmap(pool.region()).unwrap();
        }
        if (21..40).contains(&round) {
            assert_eq!(
                got, 0,
                "round {round}: nothing can be delivered while unmapped"
            );
        } else {
            assert_eq!(got, 20, "round {round}");
            if round != 20 {
                sent_back.extend((0..20).map(|i| {
                    let mut f = tagged(echo.mac, round, i);
                    f.copy_within(6..12, 0);
                    f[6..12].copy_from_slice(&echo.mac);
                    f
                }));
            }
        }
        echo.transmit(&mut vf, &nic);
    }
    let ns = nic.stats();
    let s = vf.stats();
    // RX: 19 rounds of 20 frames faulted in the model and never reached the ring; the driver
    // saw exactly the others, each once, in order, intact.
    assert_eq!(ns.rx_dma_fault, 19 * 20, "{ns:?}");
    assert_eq!(ns.rx_delivered, 41 * 20, "{ns:?}");
    assert_eq!(ns.wire_in, ns.rx_delivered + ns.rx_dma_fault, "{ns:?}");
    let want: Vec<(u8, u8)> = (0..60u8)
        .filter(|r| !(21..40).contains(r))
        .flat_map(|r| (0..20u8).map(move |i| (r, i)))
        .collect();
    assert_eq!(echo.received, want, "every delivered frame once, in order");
    assert_eq!(echo.corrupt, 0, "no stale or half-written buffer delivered");
    assert_eq!(s.rx.descriptors, ns.rx_delivered, "{s:?}");
    assert_eq!(s.rx.packets, ns.rx_delivered, "{s:?}");
    assert_eq!(s.rx.dropped(), 0, "{s:?}");
    // TX: round 20's echoes faulted on the buffer read. The NIC still completed their
    // descriptors (DD), so the driver got the buffers back; the hardware's good-packet counter
    // (VFGPTC) is where the loss shows: completed - sent = the NIC's TX drops.
    assert_eq!(ns.tx_bad, 20, "{ns:?}");
    assert_eq!(
        sim.dma_faults(),
        19 * 20 + 20,
        "one recorded fault per frame"
    );
    assert_eq!(s.tx.packets, 41 * 20, "{s:?}");
    assert_eq!(
        s.tx.completed, s.tx.packets,
        "every TX buffer reclaimed: {s:?}"
    );
    assert_eq!(s.hw.tx_packets, s.tx.completed - ns.tx_bad, "{s:?}");
    assert_eq!(s.hw.rx_packets, ns.rx_delivered, "{s:?}");
    let egress = nic.take_egress();
    assert_eq!(
        egress, sent_back,
        "the others left on the wire, byte for byte"
    );
    // No buffer lost, none handed out twice.
    assert_eq!(level(&vf), cap);
    drop(vf);
    assert_eq!(pool.available(), pool.capacity());
}

/// Rounds of traffic around a PF reset during which the PF's mailbox misbehaves (`fault`), with
/// `maintain` called every round as the daemon does. Returns the errors `maintain` gave, in
/// order, and the echo state.
fn reset_with_mailbox_fault(fault: MailboxFault) -> (Vec<Error>, Echo, Nic, IxgbeVf<SimVf>) {
    let nic = nic(NicModel::X540);
    let mut vf = open(&nic, 0);
    let mut echo = Echo::new(&vf);
    let mut errors = Vec::new();
    let mut reinitialised = 0;
    for round in 0..30u8 {
        match round {
            5 => {
                nic.fault_mailbox(0, Some(fault)).unwrap();
                nic.pf_reset_begin();
            }
            8 => nic.pf_reset_end(),
            15 => nic.fault_mailbox(0, None).unwrap(),
            _ => {}
        }
        echo.arrive(&nic, round, 10);
        match vf.maintain() {
            Ok(m) => reinitialised += u32::from(m.reinitialised),
            Err(e) => errors.push(e),
        }
        echo.receive(&mut vf);
        echo.transmit(&mut vf, &nic);
        if round >= 16 {
            assert_eq!(
                reinitialised, 1,
                "round {round}: recovered once the PF answered"
            );
        }
    }
    assert_eq!(vf.stats().pf_resets, 1);
    (errors, echo, nic, vf)
}

/// The checks shared by the mailbox fault tests: every frame the model wrote into the ring is
/// in one driver counter, frames of the rounds after the recovery all arrived, no buffer lost.
fn check_recovered(echo: &Echo, nic: &Nic, vf: IxgbeVf<SimVf>) {
    let ns = nic.stats();
    let mut vf = vf;
    let s = vf.stats();
    assert_eq!(s.rx.descriptors, ns.rx_delivered, "{s:?} {ns:?}");
    assert_eq!(s.rx.descriptors, s.rx.packets + s.rx.dropped(), "{s:?}");
    assert_eq!(
        ns.wire_in,
        ns.rx_delivered + ns.rx_vf_disabled + ns.rx_queue_disabled,
        "{ns:?}"
    );
    assert!(ns.rx_vf_disabled + ns.rx_queue_disabled > 0, "{ns:?}");
    assert_eq!(echo.corrupt, 0);
    let after: Vec<(u8, u8)> = echo
        .received
        .iter()
        .copied()
        .filter(|t| t.0 >= 16)
        .collect();
    let want: Vec<(u8, u8)> = (16..30u8)
        .flat_map(|r| (0..10u8).map(move |i| (r, i)))
        .collect();
    assert_eq!(after, want, "traffic flows again after the recovery");
    assert_eq!(
        s.tx.packets,
        s.tx.completed + s.tx.dropped_reset,
        "every TX buffer reclaimed or returned at the reset: {s:?}"
    );
    let pool = vf.mempool().clone();
    assert_eq!(level(&vf), u64::from(pool.capacity()));
    drop(vf);
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn a_nacked_reset_after_a_pf_reset_is_refused_then_retried_until_the_pf_accepts() {
    let (errors, echo, nic, vf) = reset_with_mailbox_fault(MailboxFault::Nack);
    // While RSTI is up: "in progress"; once the PF is back but NACKs the RESET: refused. The VF
    // keeps its reset pending and its buffers, and the next maintain after the NACKs stop
    // recovers.
    assert!(
        matches!(errors.first(), Some(Error::PfResetInProgress { .. })),
        "{errors:?}"
    );
    let refused = errors
        .iter()
        .filter(|e| matches!(e, Error::PfRefused { .. }))
        .count();
    assert!(refused >= 5, "{errors:?}");
    assert!(
        errors
            .iter()
            .all(|e| matches!(e, Error::PfResetInProgress { .. } | Error::PfRefused { .. })),
        "{errors:?}"
    );
    check_recovered(&echo, &nic, vf);
}

#[test]
fn an_unanswered_reset_after_a_pf_reset_times_out_then_is_retried_until_the_pf_answers() {
    let (errors, echo, nic, vf) = reset_with_mailbox_fault(MailboxFault::NoReply);
    let timeouts = errors
        .iter()
        .filter(|e| matches!(e, Error::MailboxTimeout { .. }))
        .count();
    assert!(timeouts >= 5, "{errors:?}");
    assert!(
        errors.iter().all(|e| matches!(
            e,
            Error::PfResetInProgress { .. } | Error::MailboxTimeout { .. }
        )),
        "{errors:?}"
    );
    check_recovered(&echo, &nic, vf);
}

#[test]
fn surprise_removal_with_buffers_on_both_rings_returns_every_buffer() {
    let nic = nic(NicModel::X82599);
    let mut vf = open(&nic, 0);
    let pool = vf.mempool().clone();
    let mut echo = Echo::new(&vf);
    for round in 0..5u8 {
        echo.arrive(&nic, round, 20);
        echo.receive(&mut vf);
        echo.transmit(&mut vf, &nic);
    }
    // Frames in the RX ring not read yet, and echoes posted on the TX ring not fetched yet.
    echo.arrive(&nic, 5, 20);
    assert_eq!(echo.receive(&mut vf), 20);
    echo.arrive(&nic, 6, 20);
    assert_eq!(vf.tx_burst(0, &mut echo.rx), 20);
    nic.surprise_remove(0).unwrap();
    let e = vf.maintain().unwrap_err();
    assert!(matches!(e, Error::DeviceGone { .. }), "{e}");
    // Traffic keeps coming: the model drops it (DMA stopped); the driver still hands out what
    // was written before the removal, and transmitting neither hangs nor panics.
    echo.arrive(&nic, 7, 20);
    assert_eq!(
        echo.receive(&mut vf),
        20,
        "round 6 was already in host memory"
    );
    while !echo.rx.is_empty() {
        if vf.tx_burst(0, &mut echo.rx) == 0 {
            break;
        }
    }
    echo.rx.clear();
    let ns = nic.stats();
    assert_eq!(ns.rx_queue_disabled, 20, "{ns:?}");
    assert_eq!(ns.rx_delivered, 7 * 20, "{ns:?}");
    let s = vf.stats();
    assert_eq!(s.rx.packets, ns.rx_delivered, "{s:?}");
    assert_eq!(echo.corrupt, 0);
    assert!(matches!(vf.maintain(), Err(Error::DeviceGone { .. })));
    // Dropping the removed VF takes back every buffer, posted or armed.
    drop(vf);
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn a_pf_reset_that_comes_back_without_the_vfs_mac_keeps_the_mac_the_vf_runs_with() {
    // The VF got its MAC from the PF at bring-up. The administrative MAC is then removed and
    // the PF resets: its RESET reply carries no MAC. The VF must keep receiving on the MAC it
    // runs with (the daemon's steering, reinjection rewrites and loop guard use it), not
    // invent another one.
    let nic = nic(NicModel::X82599);
    let mut vf = open(&nic, 0);
    assert!(vf.info().mac_from_pf);
    let mac = vf.mac();
    let mut echo = Echo::new(&vf);
    for round in 0..3u8 {
        echo.arrive(&nic, round, 10);
        assert_eq!(echo.receive(&mut vf), 10);
        echo.transmit(&mut vf, &nic);
    }
    nic.pf().set_vf_mac(0, None).unwrap();
    nic.pf_reset();
    let m = vf.maintain().expect("re-initialised");
    assert!(m.reinitialised);
    assert_eq!(vf.mac(), mac, "the VF keeps its MAC across the PF reset");
    for round in 3..6u8 {
        echo.arrive(&nic, round, 10);
        assert_eq!(echo.receive(&mut vf), 10, "round {round}: still reachable");
        echo.transmit(&mut vf, &nic);
    }
    assert_eq!(echo.corrupt, 0);
    assert_eq!(nic.stats().tx_spoofed, 0, "its echoes pass anti-spoofing");
    assert_eq!(nic.take_egress().len(), 60);
    let pool = vf.mempool().clone();
    drop(vf);
    assert_eq!(pool.available(), pool.capacity());
}
