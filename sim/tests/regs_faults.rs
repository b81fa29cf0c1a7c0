//! Register semantics (interrupts, statistics) and fault injection.

pub mod vfdrv;

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use floodgate_sim::regs::*;
use floodgate_sim::{NicModel, RxCorruption, VfCounter};
use floodgate_vfio::{Bar, Device};
use vfdrv::*;

#[test]
fn statistics_wrap_and_cannot_be_cleared() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    vf.set_counter(VfCounter::Gprc, (1 << 32) - 1);
    vf.set_counter(VfCounter::Gorc, (1 << 36) - 60);
    let mut m = MbxVf::new(&vf);
    m.bring_up();
    // Register 01:00:5e:00:00:01 in the MTA (SET_MULTICAST, mc_filter_type 0).
    let h = floodgate_sim::l2::mta_hash(&[0x01, 0, 0x5e, 0, 0, 1], 0) as u32;
    assert_eq!(
        m.request(&[MSG_SET_MULTICAST | 1 << 16, h]).unwrap()[0],
        0xA001_0003
    );
    let rings = Rings::new(&vf, 64);
    rings.setup_rx(&bar, 0, SRRCTL_DROP_EN | 2, 63);
    assert_eq!(bar.read32(VFGPRC), u32::MAX);
    assert_eq!(bar.read32(VFGORC_LSB), u32::MAX - 59);
    assert_eq!(bar.read32(VFGORC_MSB), 0xF);
    nic.inject(&udp_frame(vf_mac(0), [0x02, 9, 9, 9, 9, 9], 100));
    nic.step();
    // 32-bit wraps to 0; 36-bit wraps through LSB/MSB.
    assert_eq!(bar.read32(VFGPRC), 0);
    assert_eq!(bar.read32(VFGORC_LSB), 40);
    assert_eq!(bar.read32(VFGORC_MSB), 0);
    // Not clear-on-read, and writes do not clear.
    assert_eq!(bar.read32(VFGPRC), 0);
    for r in [
        VFGPRC, VFGORC_LSB, VFGORC_MSB, VFMPRC, VFGPTC, VFGOTC_LSB, VFGOTC_MSB,
    ] {
        bar.write32(r, 0x1234);
    }
    assert_eq!(bar.read32(VFGORC_LSB), 40);
    assert_eq!(bar.read32(VFGPTC), 0);
    // Multicast counted in VFMPRC, broadcast not.
    let mut mc = udp_frame([0x01, 0, 0x5e, 0, 0, 1], [0x02, 9, 9, 9, 9, 9], 64);
    nic.inject(&mc);
    mc[0..6].copy_from_slice(&[0xff; 6]);
    nic.inject(&mc);
    nic.step();
    assert_eq!(bar.read32(VFMPRC), 1);
    assert_eq!(bar.read32(VFGPRC), 2);
}

#[test]
fn interrupt_registers_and_vectors() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    let fired = Arc::new(AtomicU32::new(0));
    let f2 = fired.clone();
    vf.set_irq_handler(Some(Arc::new(move |v| {
        f2.fetch_or(1 << v, Ordering::SeqCst);
    })));
    // VTEICS with everything masked: cause pending, nothing fires; EICR read clears.
    bar.write32(VTEICS, 0b10);
    assert_eq!(vf.irq_count(1), 0);
    assert_eq!(bar.read32(VTEICR), 0b10);
    assert_eq!(bar.read32(VTEICR), 0);
    // Unmask vector 1: a VTEICS fires it.
    bar.write32(VTEIMS, 0b10);
    assert_eq!(bar.read32(VTEIMS), 0b10);
    bar.write32(VTEICS, 0b10);
    assert_eq!(vf.irq_count(1), 1);
    assert_eq!(fired.load(Ordering::SeqCst), 0b10);
    // Pending cause fires when unmasked.
    bar.write32(VTEIMC, 0b1);
    bar.write32(VTEICS, 0b1);
    assert_eq!(vf.irq_count(0), 0);
    bar.write32(VTEIMS, 0b1);
    assert_eq!(vf.irq_count(0), 1);
    // Auto-clear and auto-mask.
    let _ = bar.read32(VTEICR);
    bar.write32(VTEIAC, 0b1);
    bar.write32(VTEIAM, 0b1);
    bar.write32(VTEICS, 0b1);
    assert_eq!(vf.irq_count(0), 2);
    assert_eq!(bar.read32(VTEICR) & 1, 0, "auto-cleared");
    assert_eq!(bar.read32(VTEIMS) & 1, 0, "auto-masked");
    // Mailbox replies raise the VTIVAR_MISC vector; RX the queue's VTIVAR vector.
    bar.write32(VTEIMS, 0b111);
    bar.write32(VTEIAC, 0);
    bar.write32(VTEIAM, 0);
    let mut m = MbxVf::new(&vf);
    m.bring_up();
    // (VFCTRL.RST cleared the interrupt registers; program them after reset like a driver.)
    bar.write32(VTIVAR_MISC, IVAR_VALID | 2);
    bar.write32(VTIVAR0, IVAR_VALID); // RX queue 0 → vector 0
    bar.write32(VTEIMS, 0b111);
    let before = vf.irq_count(2);
    m.request(&[MSG_GET_LINK_STATE]).unwrap();
    assert_eq!(vf.irq_count(2), before + 1);
    let rings = Rings::new(&vf, 64);
    rings.setup_rx(&bar, 0, SRRCTL_DROP_EN | 2, 63);
    let before = vf.irq_count(0);
    nic.inject(&udp_frame(vf_mac(0), [0x02, 9, 9, 9, 9, 9], 64));
    nic.step();
    assert_eq!(vf.irq_count(0), before + 1);
}

#[test]
fn msix_eventfds_signal() {
    let nic = nic(NicModel::X540, 2);
    let vf = nic.vf(1);
    let bar = vf.bar0();
    assert!(vf.enable_msix(4).is_err());
    let fds = vf.enable_msix(3).unwrap();
    bar.write32(VTEIMS, 0b100);
    bar.write32(VTEICS, 0b100);
    let mut v = 0u64;
    // SAFETY: reading 8 bytes from a nonblocking eventfd into a local.
    let n = unsafe { libc::read(fds[2].as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    assert_eq!((n, v), (8, 1));
    // SAFETY: as above; vector 0 never fired, so the read fails with EAGAIN.
    let n = unsafe { libc::read(fds[0].as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    assert_eq!(n, -1);
}

#[test]
fn vfctrl_reset_clears_queues_keeps_tdwba() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    bar.write32(rxq(1, RXDCTL), DCTL_ENABLE);
    bar.write32(txq(1, TXDCTL), DCTL_ENABLE);
    bar.write32(txq(1, TDWBAL), 0x1001);
    bar.write32(VTEIMS, 7);
    bar.write32(VFCTRL, VFCTRL_RST);
    assert_eq!(bar.read32(rxq(1, RXDCTL)), 0);
    assert_eq!(bar.read32(txq(1, TXDCTL)), 0);
    assert_eq!(bar.read32(VTEIMS), 0);
    assert_eq!(
        bar.read32(txq(1, TDWBAL)),
        0x1001,
        "TDWBAL survives FLR (facts §2.3)"
    );
    // The PF zeroes it when handling RESET.
    let mut m = MbxVf::new(&vf);
    m.cache = 0;
    m.request(&[MSG_RESET]).unwrap();
    assert_eq!(bar.read32(txq(1, TDWBAL)), 0);
}

#[test]
fn surprise_removal_reads_all_ones() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    MbxVf::new(&vf).bring_up();
    nic.surprise_remove(0).unwrap();
    for off in [
        VFCTRL,
        VFSTATUS,
        VFLINKS,
        VFMAILBOX,
        VTEICR,
        VFGPRC,
        rxq(0, RDH),
    ] {
        assert_eq!(bar.read32(off), 0xFFFF_FFFF);
    }
    bar.write32(VFMAILBOX, MBX_VFU);
    assert_eq!(bar.read32(VFMAILBOX), 0xFFFF_FFFF);
    // Frames for it are counted, not delivered; the other VF is fine.
    nic.inject(&udp_frame(vf_mac(0), [0x02, 9, 9, 9, 9, 9], 64));
    nic.step();
    assert_eq!(nic.stats().rx_queue_disabled, 1);
    assert_ne!(nic.vf(1).bar0().read32(VFLINKS), 0xFFFF_FFFF);
    assert!(nic.surprise_remove(7).is_err());
}

#[test]
fn rx_corruption_injection() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    MbxVf::new(&vf).bring_up();
    let rings = Rings::new(&vf, 64);
    rings.setup_rx(&bar, 0, SRRCTL_DROP_EN | 2, 63);
    let f = udp_frame(vf_mac(0), [0x02, 9, 9, 9, 9, 9], 64);
    nic.corrupt_next_rx(0, 0, RxCorruption::ErrorBits(RXD_ERR_RXE | RXD_ERR_IPE))
        .unwrap();
    nic.inject(&f);
    nic.step();
    assert_eq!(
        rings.rx_wb(0, 0).2,
        RXD_STAT_DD | RXD_STAT_EOP | UDP4_CSUM_OK | RXD_ERR_RXE | RXD_ERR_IPE
    );
    nic.corrupt_next_rx(0, 0, RxCorruption::BadLength(5000))
        .unwrap();
    nic.inject(&f);
    nic.step();
    assert_eq!(rings.rx_wb(0, 1).3, 5000);
    nic.corrupt_next_rx(0, 0, RxCorruption::NoEop).unwrap();
    nic.inject(&f);
    nic.step();
    assert_eq!(rings.rx_wb(0, 2).2, RXD_STAT_DD | UDP4_CSUM_OK);
    // One-shot: the next frame is clean.
    nic.inject(&f);
    nic.step();
    let (_, _, st, len) = rings.rx_wb(0, 3);
    assert_eq!((st, len), (RXD_STAT_DD | RXD_STAT_EOP | UDP4_CSUM_OK, 64));
    assert!(nic.corrupt_next_rx(0, 4, RxCorruption::NoEop).is_err());
}

#[test]
fn stalled_tx_ring() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    MbxVf::new(&vf).bring_up();
    let rings = Rings::new(&vf, 64);
    rings.setup_tx(&bar, 0);
    let f = udp_frame([0x02, 7, 7, 7, 7, 7], vf_mac(0), 64);
    rings.write(rings.tx_buf(0), &f);
    rings.tx_data(0, 0, rings.tx_buf(0), 64, true, true);
    nic.stall_tx(0, 0, true).unwrap();
    bar.write32(txq(0, TDT), 1);
    nic.step();
    assert_eq!(bar.read32(txq(0, TDH)), 0);
    assert_eq!(rings.tx_status(0, 0) & TXD_STAT_DD, 0);
    nic.stall_tx(0, 0, false).unwrap();
    nic.step();
    assert_eq!(bar.read32(txq(0, TDH)), 1);
    assert_eq!(nic.take_egress().len(), 1);
}

#[test]
fn link_down_up_and_tx_to_unmapped_buffer() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    MbxVf::new(&vf).bring_up();
    nic.set_link(false);
    assert!(!nic.link_up());
    assert_eq!(bar.read32(VFLINKS), 0);
    nic.set_link(true);
    assert_eq!(bar.read32(VFLINKS) & LINKS_UP, LINKS_UP);
    // TX buffer outside the IOMMU: the frame is consumed, dropped and the fault recorded.
    let rings = Rings::new(&vf, 64);
    rings.setup_tx(&bar, 0);
    rings.tx_data(0, 0, 0, 64, true, true);
    rings.w64(TX_RING_OFF, 0xdead_0000);
    bar.write32(txq(0, TDT), 1);
    nic.step();
    assert_eq!(nic.stats().tx_bad, 1);
    assert_eq!(vf.dma_faults(), 1);
    assert!(nic.take_egress().is_empty());
    assert_eq!(bar.read32(txq(0, TDH)), 1);
}

#[test]
fn hostile_ring_programming_is_harmless() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    MbxVf::new(&vf).bring_up();
    // Rings at the very top of the IOVA space, huge lengths, heads past the end.
    for q in 0..4 {
        bar.write32(rxq(q, RDBAL), 0xFFFF_FFF0);
        bar.write32(rxq(q, RDBAH), 0xFFFF_FFFF);
        bar.write32(rxq(q, RDLEN), 0xFFFF_FF80);
        bar.write32(rxq(q, RDT), 5);
        bar.write32(rxq(q, RXDCTL), DCTL_ENABLE);
        bar.write32(txq(q, TDBAL), 0xFFFF_FFF0);
        bar.write32(txq(q, TDBAH), 0xFFFF_FFFF);
        bar.write32(txq(q, TDLEN), 0x80);
        bar.write32(txq(q, TDH), 100);
        bar.write32(txq(q, TDT), 3);
        bar.write32(txq(q, TXDCTL), DCTL_ENABLE);
    }
    bar.write32(txq(0, TDH), 0);
    // Unaligned and out-of-range BAR accesses are ignored / read 0.
    bar.write32(0x4000, 1);
    bar.write32(0x1001, 1);
    assert_eq!(bar.read32(0x4000), 0);
    assert_eq!(bar.read32(0x1003), 0);
    for len in [0usize, 1, 13, 14, 64] {
        nic.inject(&vec![0xAB; len]);
    }
    nic.inject(&udp_frame(vf_mac(0), [0x02, 9, 9, 9, 9, 9], 64));
    nic.step();
    let mut feeder = nic.feeder(0, 0, &udp_frame(vf_mac(0), [2; 6], 64));
    assert_eq!(feeder.fill(), 0);
    assert_eq!(nic.stats().rx_delivered, 0);
    assert!(nic.take_egress().is_empty());
}
