//! Bring-up, PF reset, mailbox faults, link and surprise removal against the NIC model.

pub mod common;
use common::*;
use floodgate_pmd::{Error, IxgbeVf, MailboxApi, NicModel as PmdModel, PacketBatch, XcastMode};
use floodgate_sim::{MailboxFault, NicModel};

#[test]
fn brings_up_82599_and_x540_and_passes_traffic() {
    for (model, want) in [
        (NicModel::X82599, PmdModel::X82599),
        (NicModel::X540, PmdModel::X540),
    ] {
        let nic = nic(model);
        let mut vf = open(&nic, 0);
        let info = vf.info().clone();
        assert_eq!(info.model, want);
        assert_eq!(info.api, MailboxApi::V1_3);
        assert!(info.mac_from_pf);
        assert!(info.lpe_accepted);
        assert!(
            info.queues_granted >= 2,
            "the model grants {}",
            info.queues_granted
        );
        assert_eq!(info.queues, 1, "max_queues");
        assert_eq!(vf.num_queues(), info.queues);
        assert!(vf.link().up);
        // The PF agent saw a complete handshake.
        assert!(nic.pf().vf_clear_to_send(0));
        assert_eq!(nic.pf().vf_api(0), Some(4));

        for i in 0..5 {
            nic.inject(&frame(vf.mac(), 60 + i, i as u8));
        }
        nic.step();
        let mut b = PacketBatch::new(32);
        assert_eq!(vf.rx_burst(0, &mut b), 5);
        for (i, p) in b.iter().enumerate() {
            assert_eq!(p.len(), 60 + i);
            assert_eq!(p.data()[42], i as u8);
        }
        // Send them back out (zero copy), with our MAC as source: the PF's anti-spoofing
        // drops anything else (facts §4.1).
        for p in b.iter_mut() {
            let d = p.data_mut();
            d.copy_within(6..12, 0);
            d[6..12].copy_from_slice(&info.mac);
        }
        assert_eq!(vf.tx_burst(0, &mut b), 5);
        nic.step();
        let out = nic.take_egress();
        assert_eq!(out.len(), 5, "{:?}", nic.stats());
        let mut want = frame(vf.mac(), 63, 3);
        want.copy_within(6..12, 0);
        want[6..12].copy_from_slice(&info.mac);
        assert_eq!(out[3], want);
        // A spoofed source is dropped by the PF, not by the driver.
        let mut p = vf.mempool().alloc().unwrap();
        p.copy_from_slice(&frame([0xff; 6], 60, 0)).unwrap();
        b.push(p).unwrap();
        assert_eq!(vf.tx_burst(0, &mut b), 1);
        nic.step();
        assert!(nic.take_egress().is_empty());
        assert_eq!(nic.stats().tx_spoofed, 1);
    }
}

#[test]
fn refuses_other_devices_with_the_supported_ids() {
    struct Other(floodgate_sim::SimVf);
    impl floodgate_vfio::Device for Other {
        type Bar = <floodgate_sim::SimVf as floodgate_vfio::Device>::Bar;
        fn info(&self) -> floodgate_vfio::DeviceInfo {
            floodgate_vfio::DeviceInfo {
                device_id: 0x1565, // X550 VF
                ..self.0.info()
            }
        }
        fn bar0(&self) -> Self::Bar {
            self.0.bar0()
        }
        fn dma_map(&self, r: &floodgate_vfio::DmaRegion) -> Result<(), floodgate_vfio::Error> {
            self.0.dma_map(r)
        }
        fn dma_unmap(&self, r: &floodgate_vfio::DmaRegion) -> Result<(), floodgate_vfio::Error> {
            self.0.dma_unmap(r)
        }
    }
    let nic = nic(NicModel::X82599);
    let e = IxgbeVf::open(Other(nic.vf(0)), cfg()).err().unwrap();
    let msg = e.to_string();
    assert!(matches!(e, Error::UnsupportedDevice { device: 0x1565, .. }));
    assert!(
        msg.contains("8086:10ed") && msg.contains("8086:1515"),
        "{msg}"
    );
}

#[test]
fn bad_ring_sizes_are_refused() {
    let nic = nic(NicModel::X82599);
    for (rx, tx) in [(32, 64), (100, 64), (64, 8192)] {
        let e = IxgbeVf::open(
            nic.vf(0),
            floodgate_pmd::Config {
                rx_ring_size: rx,
                tx_ring_size: tx,
                ..cfg()
            },
        )
        .err()
        .unwrap();
        assert!(matches!(e, Error::Config(_)), "{e}");
    }
}

#[test]
fn picks_a_local_mac_when_the_pf_assigns_none() {
    init_log();
    let nic = floodgate_sim::Nic::new(floodgate_sim::NicConfig {
        assign_vf_macs: false,
        ..Default::default()
    });
    let vf = open(&nic, 0);
    let mac = vf.mac();
    assert!(!vf.info().mac_from_pf);
    assert_eq!(mac[0] & 0x03, 0x02, "locally administered unicast");
    assert_eq!(nic.pf().vf_state(0).unwrap().mac, Some(mac));
    // A configured MAC is used instead of a random one.
    drop(vf);
    let nic = floodgate_sim::Nic::new(floodgate_sim::NicConfig {
        assign_vf_macs: false,
        ..Default::default()
    });
    let want = [0x02, 0x12, 0x34, 0x56, 0x78, 0x9a];
    let vf = IxgbeVf::open(
        nic.vf(1),
        floodgate_pmd::Config {
            mac: Some(want),
            ..cfg()
        },
    )
    .unwrap();
    assert_eq!(vf.mac(), want);
}

#[test]
fn mailbox_timeout_is_an_error_not_a_hang() {
    let nic = nic(NicModel::X82599);
    nic.fault_mailbox(0, Some(MailboxFault::NoReply)).unwrap();
    let e = IxgbeVf::open(nic.vf(0), cfg()).err().unwrap();
    assert!(matches!(e, Error::MailboxTimeout { .. }), "{e}");
    assert!(
        e.to_string().contains("sim:vf0") || e.to_string().contains("vf0"),
        "{e}"
    );
    // A slow PF within the timeout is fine.
    nic.fault_mailbox(0, Some(MailboxFault::Delay(3))).unwrap();
    let vf = open(&nic, 0);
    assert_eq!(vf.info().api, MailboxApi::V1_3);
}

#[test]
fn nacking_pf_is_reported() {
    let nic = nic(NicModel::X82599);
    nic.fault_mailbox(0, Some(MailboxFault::Nack)).unwrap();
    let e = IxgbeVf::open(nic.vf(0), cfg()).err().unwrap();
    assert!(matches!(e, Error::PfRefused { .. }), "{e}");
}

#[test]
fn promisc_refused_for_untrusted_vf_with_a_clear_message() {
    let nic = nic(NicModel::X540);
    let e = IxgbeVf::open(
        nic.vf(0),
        floodgate_pmd::Config {
            xcast: Some(XcastMode::Promisc),
            ..cfg()
        },
    )
    .err()
    .unwrap();
    let msg = e.to_string();
    assert!(matches!(e, Error::PfRefused { .. }), "{msg}");
    assert!(msg.contains("trust on"), "{msg}");
    // Trusted, PF promiscuous, X540: accepted.
    nic.pf().set_vf_trust(0, true).unwrap();
    nic.pf().set_promisc(true);
    let mut vf = IxgbeVf::open(
        nic.vf(0),
        floodgate_pmd::Config {
            xcast: Some(XcastMode::Promisc),
            ..cfg()
        },
    )
    .unwrap();
    assert_eq!(vf.info().xcast, Some(XcastMode::Promisc));
    assert_eq!(
        vf.set_xcast_mode(XcastMode::AllMulti).unwrap(),
        XcastMode::AllMulti
    );
}

#[test]
fn pf_reset_reinitialises_without_losing_buffers() {
    let nic = nic(NicModel::X82599);
    let mut vf = open(&nic, 0);
    let pool = vf.mempool().clone();
    let mut b = PacketBatch::new(64);
    // Some traffic in flight both ways: received-but-unread descriptors and unsent TX.
    for i in 0..10 {
        nic.inject(&frame(vf.mac(), 64, i));
    }
    nic.step();
    let mut tx = PacketBatch::new(8);
    pool.alloc_into(&mut tx);
    for p in tx.iter_mut() {
        p.copy_from_slice(&frame([0xff; 6], 60, 9)).unwrap();
    }
    assert_eq!(vf.tx_burst(0, &mut tx), 8);
    let free_before = pool.available();

    nic.pf_reset();
    let m = vf.maintain().unwrap();
    assert!(m.reinitialised);
    let s = vf.stats();
    assert_eq!(s.pf_resets, 1);
    assert_eq!(
        s.rx.dropped_reset, 10,
        "completed but unread descriptors counted"
    );
    assert_eq!(s.tx.dropped_reset, 8, "unsent TX buffers returned");
    assert_eq!(pool.available(), free_before + 8);
    assert!(nic.pf().vf_clear_to_send(0));

    // Traffic flows again on the same rings.
    for i in 0..3 {
        nic.inject(&frame(vf.mac(), 64, i));
    }
    nic.step();
    assert_eq!(vf.rx_burst(0, &mut b), 3);
    let s = vf.stats();
    assert_eq!(s.rx.descriptors, s.rx.packets + s.rx.dropped());
    // No further reset reported.
    assert!(!vf.maintain().unwrap().reinitialised);
    b.clear();
    drop(vf);
    assert_eq!(
        pool.available(),
        pool.capacity(),
        "every buffer back after close"
    );
}

#[test]
fn pf_reset_in_progress_waits_then_recovers() {
    let nic = nic(NicModel::X540);
    let mut vf = open(&nic, 0);
    nic.pf_reset_begin();
    let e = vf.maintain().unwrap_err();
    assert!(
        matches!(
            e,
            Error::PfResetInProgress { .. } | Error::ResetTimeout { .. }
        ),
        "{e}"
    );
    nic.pf_reset_end();
    let m = vf.maintain().unwrap();
    assert!(m.reinitialised);
    assert_eq!(vf.stats().pf_resets, 1);
    nic.inject(&frame(vf.mac(), 64, 1));
    nic.step();
    let mut b = PacketBatch::new(8);
    assert_eq!(vf.rx_burst(0, &mut b), 1);
}

#[test]
fn link_down_and_up_are_reported() {
    let nic = nic(NicModel::X82599);
    let mut vf = open(&nic, 0);
    assert!(vf.link().up);
    assert_eq!(vf.link().speed_mbps, 10_000);
    nic.set_link(false);
    let m = vf.maintain().unwrap();
    assert_eq!(m.link_changed.map(|l| l.up), Some(false));
    assert!(!vf.link().up);
    assert!(!m.reinitialised, "a link ping is not a reset");
    nic.set_link(true);
    let m = vf.maintain().unwrap();
    assert_eq!(m.link_changed.map(|l| l.up), Some(true));
    assert_eq!(vf.stats().link_changes, 2);
}

#[test]
fn surprise_removal_is_device_gone() {
    let nic = nic(NicModel::X82599);
    let mut vf = open(&nic, 0);
    nic.inject(&frame(vf.mac(), 64, 1));
    nic.step();
    nic.surprise_remove(0).unwrap();
    let e = vf.maintain().unwrap_err();
    assert!(matches!(e, Error::DeviceGone { .. }), "{e}");
    // The data path neither hangs nor panics.
    let mut b = PacketBatch::new(8);
    assert_eq!(
        vf.rx_burst(0, &mut b),
        1,
        "already DMA'd packet is still delivered"
    );
    assert_eq!(vf.tx_burst(0, &mut b), 1);
    assert!(matches!(vf.maintain(), Err(Error::DeviceGone { .. })));
    drop(vf);
    // Opening a removed device fails the same way.
    let e = IxgbeVf::open(nic.vf(0), cfg()).err().unwrap();
    assert!(matches!(e, Error::DeviceGone { .. }), "{e}");
}

#[test]
fn all_granted_queues_work() {
    let nic = nic(NicModel::X540);
    let mut vf = IxgbeVf::open(
        nic.vf(1),
        floodgate_pmd::Config {
            max_queues: None,
            ..cfg()
        },
    )
    .unwrap();
    let n = vf.num_queues();
    assert!(n >= 2, "the model grants {n}");
    assert_eq!(n, vf.info().queues_granted);
    // RX: frames of many flows spread over the queues by RSS; none is lost.
    let mac = vf.mac();
    for i in 0..32u8 {
        let mut f = frame(mac, 64, i);
        f[26..30].copy_from_slice(&[10, 1, i, 7]); // source IPv4: a different flow each
        assert!(floodgate_sim::rxcsum::fix_checksums(&mut f));
        nic.inject(&f);
    }
    nic.step();
    let mut rb = PacketBatch::new(64);
    let mut per_queue = Vec::new();
    for q in 0..n {
        per_queue.push(vf.rx_burst(q, &mut rb));
        rb.clear();
    }
    assert_eq!(per_queue.iter().sum::<usize>(), 32, "{per_queue:?}");
    assert!(
        per_queue.iter().filter(|&&c| c > 0).count() >= 2,
        "{per_queue:?}"
    );
    let mut b = PacketBatch::new(8);
    for q in 0..n {
        let mut p = vf.mempool().alloc().unwrap();
        p.copy_from_slice(&frame([0xff; 6], 60, q as u8)).unwrap();
        let mac = vf.mac();
        p.data_mut()[6..12].copy_from_slice(&mac);
        b.push(p).unwrap();
        assert_eq!(vf.tx_burst(q, &mut b), 1, "queue {q}");
    }
    nic.step();
    let mut tags: Vec<u8> = nic.take_egress().iter().map(|f| f[42]).collect();
    tags.sort_unstable();
    assert_eq!(tags, (0..n as u8).collect::<Vec<_>>());
    assert_eq!(vf.rx_burst(n, &mut b), 0, "no such queue");
}

#[test]
fn pf_control_ping_with_cts_is_not_a_reset() {
    let nic = nic(NicModel::X82599);
    let mut vf = open(&nic, 0);
    nic.pf().ping_vf(0).unwrap();
    let m = vf.maintain().unwrap();
    assert!(!m.reinitialised);
    assert_eq!(vf.stats().pf_resets, 0);
    // The mailbox still works afterwards.
    assert_eq!(
        vf.set_xcast_mode(XcastMode::Multi).unwrap(),
        XcastMode::Multi
    );
}

#[test]
fn wait_rx_sleeps_on_msix_and_wakes_on_a_packet() {
    let nic = nic(NicModel::X540);
    let sim_vf = nic.vf(0);
    let mut vf = IxgbeVf::open(
        nic.vf(0),
        floodgate_pmd::Config {
            interrupts: true,
            ..cfg()
        },
    )
    .unwrap();
    assert!(!vf.wait_rx(0, std::time::Duration::from_millis(1)).unwrap());
    let mac = vf.mac();
    let waiter = std::thread::spawn(move || {
        let ready = vf.wait_rx(0, std::time::Duration::from_secs(5)).unwrap();
        let mut b = PacketBatch::new(4);
        (ready, vf.rx_burst(0, &mut b))
    });
    std::thread::sleep(std::time::Duration::from_millis(20));
    nic.inject(&frame(mac, 64, 1));
    nic.step();
    let (ready, got) = waiter.join().unwrap();
    assert!(ready);
    assert_eq!(got, 1);
    assert!(
        sim_vf.irq_count(0) >= 1,
        "woken by the queue's MSI-X vector"
    );
    assert!(matches!(
        IxgbeVf::open(nic.vf(1), cfg())
            .unwrap()
            .wait_rx(9, std::time::Duration::ZERO),
        Err(Error::NoSuchQueue { queue: 9, .. })
    ));
}
