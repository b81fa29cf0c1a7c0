//! RX/TX DMA engine tests (facts §6), IOMMU and VEB, driven through registers and descriptors.

pub mod vfdrv;

use floodgate_sim::regs::*;
use floodgate_sim::{EngineConfig, NicModel, VfCounter};
use floodgate_vfio::{Bar, Device};
use vfdrv::*;

/// Packet type IPv4 + UDP in dword 0: bits 4 and 9 (Linux `IXGBE_RXDADV_PKTTYPE_IPV4`/`_UDP`).
const PT_UDP4: u32 = 0x10 | 0x200;

#[test]
fn rx_single_frame_write_back() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    MbxVf::new(&vf).bring_up();
    let rings = Rings::new(&vf, 64);
    rings.setup_rx(&bar, 0, SRRCTL_DROP_EN | 2, 63);
    let f = udp_frame(vf_mac(0), [0x02, 9, 9, 9, 9, 9], 100);
    nic.inject(&f);
    assert_eq!(nic.step(), 1);
    assert_eq!(rings.read(rings.rx_buf(0), 100), f);
    let (dw0, hash, st, len) = rings.rx_wb(0, 0);
    // Linux's default MRQC hashes UDP/IPv4 on the addresses only: RSS type 2 (IPv4), the
    // Toeplitz hash of 10.0.0.1 → 10.0.0.2 under the switch's (Microsoft) key (facts §8).
    assert_eq!(dw0, PT_UDP4 | 2);
    let mut input = [0u8; 8];
    input[..4].copy_from_slice(&[10, 0, 0, 1]);
    input[4..].copy_from_slice(&[10, 0, 0, 2]);
    let want =
        floodgate_sim::toeplitz::toeplitz_hash(&floodgate_sim::toeplitz::MICROSOFT_RSS_KEY, &input);
    assert_eq!(hash, want);
    assert_eq!(st, RXD_STAT_DD | RXD_STAT_EOP | UDP4_CSUM_OK);
    assert_eq!(len, 100);
    assert_eq!(bar.read32(rxq(0, RDH)), 1);
    assert_eq!(bar.read32(VFGPRC), 1);
    assert_eq!(bar.read32(VFGORC_LSB), 100);
    assert_eq!(nic.stats().rx_delivered, 1);
}

#[test]
fn rx_frame_spans_descriptors() {
    let nic = nic(NicModel::X540, 2);
    // PF MTU 9710: MAXFRS = 9728 with CRC (facts §6.4).
    nic.pf().set_mtu(9710).unwrap();
    let vf = nic.vf(0);
    let bar = vf.bar0();
    MbxVf::new(&vf).bring_up();
    let rings = Rings::new(&vf, 64);
    // BSIZEPACKET = 1 KiB: a 2500-byte frame takes 3 descriptors.
    rings.setup_rx(&bar, 0, SRRCTL_DROP_EN | 1, 63);
    let f = udp_frame(vf_mac(0), [0x02, 9, 9, 9, 9, 9], 2500);
    nic.inject(&f);
    nic.step();
    let mut got = Vec::new();
    for (i, want_len) in [(0u32, 1024u32), (1, 1024), (2, 452)] {
        let (_, _, st, len) = rings.rx_wb(0, i);
        assert_eq!(len, want_len);
        // Status and errors of the frame go on its EOP descriptor.
        let eop = if i == 2 {
            RXD_STAT_EOP | UDP4_CSUM_OK
        } else {
            0
        };
        assert_eq!(st, RXD_STAT_DD | eop, "descriptor {i}");
        got.extend(rings.read(rings.rx_buf(i), len as usize));
    }
    assert_eq!(got, f);
    assert_eq!(bar.read32(rxq(0, RDH)), 3);
    // The largest frame (9724 bytes + CRC = 9728) takes 10 one-KiB descriptors; one byte more
    // is dropped by the MAC.
    let jumbo = udp_frame(vf_mac(0), [0x02, 9, 9, 9, 9, 9], 9724);
    nic.inject(&jumbo);
    nic.inject(&udp_frame(vf_mac(0), [0x02, 9, 9, 9, 9, 9], 9725));
    nic.step();
    assert_eq!(bar.read32(rxq(0, RDH)), 13);
    assert_eq!(rings.rx_wb(0, 12).3, 508);
    assert_eq!(
        rings.rx_wb(0, 12).2,
        RXD_STAT_DD | RXD_STAT_EOP | UDP4_CSUM_OK
    );
    assert_eq!(nic.stats().rx_oversize, 1);
}

#[test]
fn max_frame_follows_pf_mtu_and_set_lpe() {
    let nic = nic(NicModel::X540, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    let mut m = MbxVf::new(&vf);
    m.bring_up();
    let rings = Rings::new(&vf, 64);
    rings.setup_rx(&bar, 0, SRRCTL_DROP_EN | 16, 63);
    let mac = vf_mac(0);
    // PF MTU 1500: 1514 bytes (+CRC = 1518) pass, 1515 do not; a VLAN tag may add 4.
    nic.inject(&udp_frame(mac, [0x02, 9, 9, 9, 9, 9], 1514));
    nic.inject(&udp_frame(mac, [0x02, 9, 9, 9, 9, 9], 1515));
    let mut tagged = udp_frame(mac, [0x02, 9, 9, 9, 9, 9], 1514);
    tagged.splice(12..12, [0x81, 0x00, 0x00, 0x00]);
    nic.inject(&tagged);
    nic.step();
    let s = nic.stats();
    assert_eq!((s.rx_delivered, s.rx_oversize), (2, 1));
    // X540: a VF may ask for jumbo frames; the PF raises MAXFRS.
    assert_eq!(m.request(&[MSG_SET_LPE, 9018]).unwrap()[0], 0xA000_0005);
    nic.inject(&udp_frame(mac, [0x02, 9, 9, 9, 9, 9], 9014));
    nic.inject(&udp_frame(mac, [0x02, 9, 9, 9, 9, 9], 9015));
    nic.step();
    let s = nic.stats();
    assert_eq!((s.rx_delivered, s.rx_oversize), (3, 2));
    // X540 RXDCTL.RLPML = 1518 (what ixgbevf writes for MTU 1500): the queue refuses longer
    // frames even though MAXFRS allows them.
    bar.write32(rxq(0, RXDCTL), DCTL_ENABLE | RXDCTL_RLPML_EN | 1518);
    nic.inject(&udp_frame(mac, [0x02, 9, 9, 9, 9, 9], 1514));
    nic.inject(&udp_frame(mac, [0x02, 9, 9, 9, 9, 9], 2000));
    nic.step();
    let s = nic.stats();
    assert_eq!((s.rx_delivered, s.rx_oversize), (4, 3));
}

#[test]
fn rlpml_is_ignored_on_82599() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    MbxVf::new(&vf).bring_up();
    let rings = Rings::new(&vf, 64);
    rings.setup_rx(&bar, 0, SRRCTL_DROP_EN | 2, 63);
    bar.write32(rxq(0, RXDCTL), DCTL_ENABLE | RXDCTL_RLPML_EN | 100);
    nic.inject(&udp_frame(vf_mac(0), [0x02, 9, 9, 9, 9, 9], 1000));
    nic.step();
    assert_eq!(nic.stats().rx_delivered, 1);
}

#[test]
fn vf_to_pf_unicast_is_looped_back_to_the_kernel_side() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    MbxVf::new(&vf).bring_up();
    let rings = Rings::new(&vf, 64);
    rings.setup_tx(&bar, 0);
    let pf_mac = nic.pf().pools().pf.mac;
    let f = udp_frame(pf_mac, vf_mac(0), 64);
    rings.write(rings.tx_buf(0), &f);
    rings.tx_data(0, 0, rings.tx_buf(0), 64, true, true);
    bar.write32(txq(0, TDT), 1);
    nic.step();
    let s = nic.stats();
    assert_eq!((s.pf_delivered, s.loopback, s.egress), (1, 1, 0));
    assert!(nic.take_egress().is_empty());
}

#[test]
fn rx_no_descriptor_drop_en_and_backlog() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    MbxVf::new(&vf).bring_up();
    let rings = Rings::new(&vf, 64);
    // Two free descriptors (tail 2), DROP_EN set: third and fourth frames dropped.
    rings.setup_rx(&bar, 0, SRRCTL_DROP_EN | 2, 2);
    let f = udp_frame(vf_mac(0), [0x02, 9, 9, 9, 9, 9], 64);
    for _ in 0..4 {
        nic.inject(&f);
    }
    nic.step();
    let s = nic.stats();
    assert_eq!((s.rx_delivered, s.rx_no_desc), (2, 2));
    assert_eq!(vf.rx_no_desc_drops(0), 2);
    assert_eq!(bar.read32(VFGPRC), 2);
    // DROP_EN clear: frames wait in the backlog and land once RDT moves.
    bar.write32(rxq(0, SRRCTL), 2);
    for _ in 0..3 {
        nic.inject(&f);
    }
    nic.step();
    assert_eq!(nic.rx_backlog_len(), 3);
    bar.write32(rxq(0, RDT), 4);
    nic.step();
    assert_eq!(nic.rx_backlog_len(), 1);
    assert_eq!(nic.stats().rx_delivered, 4);
    bar.write32(rxq(0, RDT), 10);
    nic.step();
    assert_eq!(nic.rx_backlog_len(), 0);
    let s = nic.stats();
    assert_eq!(s.rx_delivered, 5);
    assert_eq!(s.wire_in, 7);
    assert_eq!(
        s.rx_delivered + s.rx_no_desc,
        s.wire_in,
        "every frame accounted for"
    );
}

#[test]
fn rx_queue_disabled_and_vf_rx_off() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    let f = udp_frame(vf_mac(0), [0x02, 9, 9, 9, 9, 9], 64);
    // Before RESET the pool's receive is off (VFRE).
    nic.inject(&f);
    nic.step();
    assert_eq!(nic.stats().rx_vf_disabled, 1);
    MbxVf::new(&vf).bring_up();
    let rings = Rings::new(&vf, 64);
    rings.setup_rx(&bar, 0, SRRCTL_DROP_EN | 2, 63);
    bar.write32(rxq(0, RXDCTL), 0);
    nic.inject(&f);
    nic.step();
    assert_eq!(nic.stats().rx_queue_disabled, 1);
    assert_eq!(rings.rx_wb(0, 0).2, 0, "nothing written");
}

#[test]
fn rx_vlan_strip() {
    let nic = nic(NicModel::X540, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    let mut m = MbxVf::new(&vf);
    m.bring_up();
    // Join VLAN 100 (SET_VLAN add), else the switch's VLAN filter drops the tagged frame.
    assert_eq!(
        m.request(&[MSG_SET_VLAN | 1 << 16, 100]).unwrap()[0],
        0xA001_0004
    );
    let rings = Rings::new(&vf, 64);
    rings.setup_rx(&bar, 0, SRRCTL_DROP_EN | 2, 63);
    bar.write32(rxq(0, RXDCTL), DCTL_ENABLE | RXDCTL_VME);
    let plain = udp_frame(vf_mac(0), [0x02, 9, 9, 9, 9, 9], 80);
    let mut tagged = plain.clone();
    tagged.splice(12..12, [0x81, 0x00, 0x20, 0x64]);
    nic.inject(&tagged);
    nic.step();
    let (dw0, _, st, len) = rings.rx_wb(0, 0);
    assert_eq!(st, RXD_STAT_DD | RXD_STAT_EOP | RXD_STAT_VP | UDP4_CSUM_OK);
    assert_eq!(len, 80 | 0x2064 << 16);
    assert_eq!(dw0, PT_UDP4 | 2);
    assert_eq!(rings.read(rings.rx_buf(0), 80), plain);
}

#[test]
fn tx_single_and_multi_descriptor_frames() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    MbxVf::new(&vf).bring_up();
    let rings = Rings::new(&vf, 64);
    rings.setup_tx(&bar, 0);
    let f1 = udp_frame([0x02, 7, 7, 7, 7, 7], vf_mac(0), 60);
    let f2 = udp_frame([0x02, 7, 7, 7, 7, 7], vf_mac(0), 3000);
    rings.write(rings.tx_buf(0), &f1);
    rings.tx_data(0, 0, rings.tx_buf(0), 60, true, true);
    // f2 over three descriptors, RS on the last only.
    for (i, (a, b)) in [(0usize, 1000usize), (1000, 2000), (2000, 3000)]
        .iter()
        .enumerate()
    {
        let slot = 1 + i as u32;
        rings.write(rings.tx_buf(slot), &f2[*a..*b]);
        rings.tx_data(0, slot, rings.tx_buf(slot), (b - a) as u32, i == 2, i == 2);
    }
    // Only the first descriptor of f2 visible yet: f1 goes, f2 waits for its EOP.
    bar.write32(txq(0, TDT), 2);
    nic.step();
    assert_eq!(nic.take_egress(), vec![f1.clone()]);
    assert_eq!(bar.read32(txq(0, TDH)), 1);
    assert_eq!(rings.tx_status(0, 0) & TXD_STAT_DD, TXD_STAT_DD);
    bar.write32(txq(0, TDT), 4);
    assert_eq!(nic.complete_tx(0, 0), 1);
    assert_eq!(nic.take_egress(), vec![f2]);
    assert_eq!(bar.read32(txq(0, TDH)), 4);
    assert_eq!(rings.tx_status(0, 1) & TXD_STAT_DD, 0, "no RS, no DD");
    assert_eq!(rings.tx_status(0, 3) & TXD_STAT_DD, TXD_STAT_DD);
    assert_eq!(bar.read32(VFGPTC), 2);
    assert_eq!(bar.read32(VFGOTC_LSB), 3060);
}

#[test]
fn tx_context_vlan_insert_and_head_write_back() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    MbxVf::new(&vf).bring_up();
    let rings = Rings::new(&vf, 64);
    rings.setup_tx(&bar, 0);
    let wb = rings.iova(WB_OFF);
    bar.write32(txq(0, TDWBAL), wb as u32 | TDWBAL_EN);
    bar.write32(txq(0, TDWBAH), (wb >> 32) as u32);
    rings.w32(WB_OFF, 0xdead);
    // Context descriptor: VLAN 0x0123 in dword 0 bits 31:16, IDX 0, MACLEN 14.
    let d = TX_RING_OFF;
    rings.w32(d, 0x0123 << 16 | 14 << 9);
    rings.w32(d + 4, 0);
    rings.w32(d + 8, TXD_DTYP_CTXT | TXD_CMD_DEXT);
    rings.w32(d + 12, 0);
    let f = udp_frame([0x02, 7, 7, 7, 7, 7], vf_mac(0), 64);
    rings.write(rings.tx_buf(1), &f);
    rings.tx_data(0, 1, rings.tx_buf(1), 64, true, true);
    let cmd = rings.r32(d + 16 + 8) | TXD_CMD_VLE;
    rings.w32(d + 16 + 8, cmd);
    rings.w32(d + 16 + 12, 64 << 14 | TXD_CC);
    bar.write32(txq(0, TDT), 2);
    nic.step();
    let out = nic.take_egress();
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0][12..16], &[0x81, 0x00, 0x01, 0x23]);
    assert_eq!(&out[0][16..], &f[12..]);
    assert_eq!(rings.r32(WB_OFF), 2, "head written back");
}

#[test]
fn tx_anti_spoofing() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    MbxVf::new(&vf).bring_up();
    let rings = Rings::new(&vf, 64);
    rings.setup_tx(&bar, 0);
    let spoofed = udp_frame([0x02, 7, 7, 7, 7, 7], [0x02, 6, 6, 6, 6, 6], 64);
    rings.write(rings.tx_buf(0), &spoofed);
    rings.tx_data(0, 0, rings.tx_buf(0), 64, true, true);
    bar.write32(txq(0, TDT), 1);
    nic.step();
    assert!(nic.take_egress().is_empty());
    assert_eq!(vf.tx_spoofed(), 1);
    assert_eq!(
        rings.tx_status(0, 0) & TXD_STAT_DD,
        TXD_STAT_DD,
        "still completed"
    );
    assert_eq!(bar.read32(VFGPTC), 0);
    nic.pf().set_vf_spoofchk(0, false).unwrap();
    rings.tx_data(0, 1, rings.tx_buf(0), 64, true, true);
    bar.write32(txq(0, TDT), 2);
    nic.step();
    assert_eq!(nic.take_egress(), vec![spoofed]);
}

#[test]
fn veb_loopback_vf_to_vf() {
    let nic = nic(NicModel::X82599, 2);
    let (vf0, vf1) = (nic.vf(0), nic.vf(1));
    let (bar0, bar1) = (vf0.bar0(), vf1.bar0());
    MbxVf::new(&vf0).bring_up();
    MbxVf::new(&vf1).bring_up();
    let r0 = Rings::new(&vf0, 64);
    let r1 = Rings::new(&vf1, 64);
    r0.setup_tx(&bar0, 0);
    r1.setup_rx(&bar1, 0, SRRCTL_DROP_EN | 2, 63);
    let f = udp_frame(vf_mac(1), vf_mac(0), 128);
    r0.write(r0.tx_buf(0), &f);
    r0.tx_data(0, 0, r0.tx_buf(0), 128, true, true);
    bar0.write32(txq(0, TDT), 1);
    nic.step();
    assert!(nic.take_egress().is_empty());
    assert_eq!(r1.read(r1.rx_buf(0), 128), f);
    assert_eq!(
        r1.rx_wb(0, 0).2,
        RXD_STAT_DD | RXD_STAT_EOP | RXD_STAT_LB | UDP4_CSUM_OK
    );
    assert_eq!(nic.stats().loopback, 1);
}

#[test]
fn iommu_faults_are_recorded_not_ub() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    MbxVf::new(&vf).bring_up();
    let rings = Rings::new(&vf, 64);
    rings.setup_rx(&bar, 0, SRRCTL_DROP_EN | 2, 63);
    // Descriptor 0 points outside every mapping.
    rings.w64(RING_OFF, 0x1000);
    let f = udp_frame(vf_mac(0), [0x02, 9, 9, 9, 9, 9], 64);
    nic.inject(&f);
    nic.step();
    assert_eq!(nic.stats().rx_dma_fault, 1);
    assert_eq!(vf.dma_faults(), 1);
    assert_eq!(vf.iommu().last_fault_iova(), 0x1000);
    assert_eq!(bar.read32(rxq(0, RDH)), 0, "head not advanced");
    // A buffer that straddles the end of the region faults too.
    let end = rings.iova(rings.region.len()) - 10;
    rings.w64(RING_OFF, end);
    nic.inject(&f);
    nic.step();
    assert_eq!(nic.faults_seen(), 2);
    // Overlapping and double mappings are refused; unmapping cuts access.
    assert!(vf.dma_map(&rings.region).is_err());
    vf.dma_unmap(&rings.region).unwrap();
    assert!(vf.dma_unmap(&rings.region).is_err());
    nic.inject(&f);
    nic.step();
    assert_eq!(nic.faults_seen(), 3);
    assert_eq!(nic.stats().rx_delivered, 0);
}

#[test]
fn feeder_fills_free_descriptors() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    MbxVf::new(&vf).bring_up();
    let rings = Rings::new(&vf, 64);
    rings.setup_rx(&bar, 0, SRRCTL_DROP_EN | 2, 63);
    let t = udp_frame(vf_mac(0), [0x02, 9, 9, 9, 9, 9], 64);
    let mut feeder = nic.feeder(0, 0, &t);
    assert_eq!(feeder.fill(), 63);
    assert_eq!(feeder.fill(), 0);
    assert_eq!(bar.read32(rxq(0, RDH)), 63);
    for i in [0, 31, 62] {
        assert_eq!(rings.read(rings.rx_buf(i), 64), t);
        let (dw0, _, st, len) = rings.rx_wb(0, i);
        assert_eq!(
            (dw0, st, len),
            (PT_UDP4, RXD_STAT_DD | RXD_STAT_EOP | UDP4_CSUM_OK, 64)
        );
    }
    assert_eq!(rings.rx_wb(0, 63).2, 0);
    // Driver re-arms 10 descriptors (wrapping): the feeder fills exactly those.
    for i in (0..9).chain(63..64) {
        rings.w64(RING_OFF + i as usize * 16, rings.iova(rings.rx_buf(i)));
        rings.w64(RING_OFF + i as usize * 16 + 8, 0);
    }
    bar.write32(rxq(0, RDT), 9);
    assert_eq!(feeder.fill(), 10);
    assert_eq!(bar.read32(rxq(0, RDH)), 9);
    assert_eq!(bar.read32(VFGPRC), 73);
    assert_eq!(nic.stats().fed, 73);
    // A descriptor the driver did not re-arm holds the write-back, not an address: the feeder
    // stops there with a recorded fault.
    bar.write32(rxq(0, RDT), 20);
    assert_eq!(feeder.fill(), 0);
    assert_eq!(vf.dma_faults(), 1);
}

#[test]
fn threaded_engine_completes_tx_and_feeds() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    MbxVf::new(&vf).bring_up();
    let rings = Rings::new(&vf, 64);
    rings.setup_tx(&bar, 0);
    rings.setup_rx(&bar, 0, SRRCTL_DROP_EN | 2, 63);
    nic.set_egress_capture(false);
    let t = udp_frame(vf_mac(0), [0x02, 9, 9, 9, 9, 9], 64);
    let engine = nic.start_engine(EngineConfig {
        feeder: Some(floodgate_sim::engine::FeederConfig {
            vf: 0,
            queue: 0,
            template: t.clone(),
        }),
        ..Default::default()
    });
    let f = udp_frame([0x02, 7, 7, 7, 7, 7], vf_mac(0), 64);
    rings.write(rings.tx_buf(0), &f);
    rings.tx_data(0, 0, rings.tx_buf(0), 64, true, true);
    bar.write32(txq(0, TDT), 1);
    // Wait (bounded) for the engine thread to see the doorbell.
    let mut done = false;
    for _ in 0..20_000 {
        if rings.tx_status(0, 0) & TXD_STAT_DD != 0 && bar.read32(rxq(0, RDH)) == 63 {
            done = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_micros(100));
    }
    let st = engine.stop();
    assert!(done, "engine did not process the rings");
    assert_eq!(st.tx_frames, 1);
    assert_eq!(st.fed, 63);
    assert_eq!(vf.counter(VfCounter::Gptc), 1);
    assert_eq!(nic.stats().egress, 1);
}

#[test]
fn engine_pulls_a_frame_source_through_the_switch() {
    let nic = nic(NicModel::X540, 2);
    let vf = nic.vf(1);
    let bar = vf.bar0();
    MbxVf::new(&vf).bring_up();
    let rings = Rings::new(&vf, 64);
    rings.setup_rx(&bar, 0, SRRCTL_DROP_EN | 2, 63);
    let frames: std::collections::VecDeque<Vec<u8>> = (0..10)
        .map(|i| udp_frame(vf_mac(1), [0x02, 9, 9, 9, 9, i], 64 + i as usize))
        .collect();
    let engine = nic.start_engine(EngineConfig {
        source: Some(Box::new(frames)),
        ..Default::default()
    });
    let mut n = 0;
    for _ in 0..20_000 {
        n = bar.read32(rxq(0, RDH));
        if n == 10 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_micros(100));
    }
    let st = engine.stop();
    assert_eq!(n, 10);
    assert_eq!(st.generated, 10);
    assert!(st.source_exhausted);
    for i in 0..10u32 {
        assert_eq!(rings.rx_wb(0, i).3, 64 + i);
    }
    assert_eq!(nic.stats().wire_in, 10);
}

/// An endless source of one frame.
struct Endless(Vec<u8>);
impl floodgate_sim::FrameSource for Endless {
    fn next_frame(&mut self, buf: &mut [u8]) -> Option<usize> {
        buf[..self.0.len()].copy_from_slice(&self.0);
        Some(self.0.len())
    }
}

#[test]
fn inline_engine_generates_at_most_one_batch_per_pump() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    MbxVf::new(&vf).bring_up();
    let rings = Rings::new(&vf, 64);
    rings.setup_rx(&bar, 0, SRRCTL_DROP_EN | 2, 63);
    let f = udp_frame(vf_mac(0), [0x02, 9, 9, 9, 9, 9], 80);
    let mut eng = nic.inline_engine(EngineConfig {
        source: Some(Box::new(Endless(f))),
        batch: 16,
        ..Default::default()
    });
    // Unpaced: exactly one batch per pump, routed into VF 0's ring.
    assert_eq!(eng.pump(), 16);
    assert_eq!(bar.read32(rxq(0, RDH)), 16);
    assert_eq!(eng.pump(), 16);
    assert_eq!(bar.read32(rxq(0, RDH)), 32);
    assert_eq!(eng.stats().generated, 32);
    // After the source stops, pumps still run the datapath but generate nothing.
    eng.stop_source();
    assert_eq!(eng.pump(), 0);
    assert_eq!(eng.stats().generated, 32);
    assert_eq!(nic.stats().wire_in, 32);
}

#[test]
fn paced_inline_engine_writes_off_time_it_was_not_pumped() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    MbxVf::new(&vf).bring_up();
    let rings = Rings::new(&vf, 64);
    rings.setup_rx(&bar, 0, SRRCTL_DROP_EN | 2, 63);
    let f = udp_frame(vf_mac(0), [0x02, 9, 9, 9, 9, 9], 80);
    let rate = 1_000_000u64;
    let mut eng = nic.inline_engine(EngineConfig {
        source: Some(Box::new(Endless(f))),
        source_rate_pps: Some(rate),
        batch: 16,
        max_catch_up: std::time::Duration::from_millis(1),
        ..Default::default()
    });
    let t0 = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_millis(20));
    // At least 20 000 frames are due; 1 ms (1000 frames) may be caught up, the rest is
    // written off, and one pump sends one batch.
    assert_eq!(eng.pump(), 16);
    let st = eng.stats().clone();
    let due = (t0.elapsed().as_secs_f64() * rate as f64) as u64 + 1;
    assert_eq!(st.generated, 16);
    assert!(st.behind_schedule >= 19_000, "{st:?}");
    assert!(st.generated + st.behind_schedule <= due, "{st:?} due {due}");
    // The allowance left (≈1000 frames) is sent one batch per pump: the next pumps still
    // generate full batches without any further wait.
    assert_eq!(eng.pump(), 16);
    assert_eq!(eng.pump(), 16);
}

#[test]
fn dma_spanning_page_mappings_like_a_guest_iommu() {
    let nic = nic(NicModel::X540, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    MbxVf::new(&vf).bring_up();
    let rings = Rings::new(&vf, 64);
    rings.setup_rx(&bar, 0, SRRCTL_DROP_EN | 2, 63);
    rings.setup_tx(&bar, 0);
    // Two 4 KiB pages mapped one DMA_MAP each, swapped: IOVA X → memfd page 1, X+4096 → page 0
    // (what QEMU's emulated IOMMU sends over vfio-user, see qemu-guest.md).
    let extra = region(8192);
    let x = 0x7000_0000_0000u64;
    vf.iommu().map_fd(x, 4096, extra.fd(), 4096).unwrap();
    vf.iommu().map_fd(x + 4096, 4096, extra.fd(), 0).unwrap();
    // RX: descriptor 0's buffer starts 100 bytes before the page boundary.
    rings.w64(RING_OFF, x + 3996);
    let f = udp_frame(vf_mac(0), [0x02, 9, 9, 9, 9, 9], 300);
    nic.inject(&f);
    nic.step();
    assert_eq!(rings.rx_wb(0, 0).3, 300);
    // SAFETY: both ranges are inside `extra` (8 KiB).
    let (hi, lo) = unsafe {
        (
            std::slice::from_raw_parts(extra.as_ptr().add(4096 + 3996), 100).to_vec(),
            std::slice::from_raw_parts(extra.as_ptr(), 200).to_vec(),
        )
    };
    assert_eq!(hi, &f[..100]);
    assert_eq!(lo, &f[100..]);
    // TX gathers the same straddling buffer back.
    let out = udp_frame([0x02, 7, 7, 7, 7, 7], vf_mac(0), 300);
    // SAFETY: as above.
    unsafe {
        std::ptr::copy_nonoverlapping(out.as_ptr(), extra.as_ptr().add(4096 + 3996), 100);
        std::ptr::copy_nonoverlapping(out.as_ptr().add(100), extra.as_ptr(), 200);
    }
    let d = TX_RING_OFF;
    rings.tx_data(0, 0, 0, 300, true, true);
    rings.w64(d, x + 3996);
    bar.write32(txq(0, TDT), 1);
    nic.step();
    assert_eq!(nic.take_egress(), vec![out]);
    assert_eq!(vf.dma_faults(), 0);
}

/// RX checksum offload through descriptors (facts §6.1: UDPCS 4, L4CS 5, IPCS 6, TCPE 30,
/// IPE 31). The frames come from the generator's builders (checksums from the generator's code, not
/// the RX check's) and are then damaged by hand. UDP with checksum 0 differs per model: the 82599
/// flags TCPE (Specification Update erratum 44), the X540 does not.
#[test]
fn rx_checksum_status_and_errors_per_model() {
    use floodgate_sim::generator::{build_tcp4_vlan, build_udp4, TCP_ACK};
    const IP_OK: u32 = RXD_STAT_IPCS;
    const TCP_OK: u32 = RXD_STAT_IPCS | RXD_STAT_L4CS;
    for model in [NicModel::X82599, NicModel::X540] {
        let nic = nic(model, 2);
        let vf = nic.vf(0);
        let bar = vf.bar0();
        let mut m = MbxVf::new(&vf);
        m.bring_up();
        assert_eq!(
            m.request(&[MSG_SET_VLAN | 1 << 16, 100]).unwrap()[0],
            0xA001_0004
        );
        let rings = Rings::new(&vf, 64);
        rings.setup_rx(&bar, 0, SRRCTL_DROP_EN | 2, 63);
        let src = [0x02, 9, 9, 9, 9, 9];
        let mut b = [0u8; 256];
        let n = build_udp4(
            &mut b,
            vf_mac(0),
            src,
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            5353,
            53,
            b"query",
        )
        .unwrap();
        let udp = b[..n].to_vec();
        let n = build_tcp4_vlan(
            &mut b,
            vf_mac(0),
            src,
            Some(100),
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            40000,
            80,
            7,
            TCP_ACK,
            b"GET / HTTP/1.0\r\n\r\n",
        )
        .unwrap();
        let tcp_vlan = b[..n].to_vec();
        let mut bad_ip = udp.clone();
        bad_ip[22] -= 1; // TTL, header checksum left as it was
        let mut bad_udp = udp.clone();
        bad_udp[42] ^= 0x20; // payload
        let mut udp_zero = udp.clone();
        udp_zero[40..42].copy_from_slice(&[0, 0]);
        let mut bad_tcp = tcp_vlan.clone();
        bad_tcp[n - 1] ^= 1;
        let mut fragment = udp.clone();
        fragment[20] = 0x20; // MF: no L4 check
        fragment[24..26].copy_from_slice(&[0, 0]);
        let c = !fold16(&fragment[14..34]);
        fragment[24..26].copy_from_slice(&c.to_be_bytes());
        let mut arp = vec![0xFF; 6];
        arp.extend_from_slice(&src);
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.resize(60, 0);
        let zero_err = if model == NicModel::X82599 {
            RXD_ERR_TCPE
        } else {
            0
        };
        let cases: [(&str, &[u8], u32); 8] = [
            ("good UDP", &udp, UDP4_CSUM_OK),
            ("bad IPv4 header", &bad_ip, UDP4_CSUM_OK | RXD_ERR_IPE),
            ("bad UDP", &bad_udp, UDP4_CSUM_OK | RXD_ERR_TCPE),
            ("UDP checksum 0", &udp_zero, UDP4_CSUM_OK | zero_err),
            ("good TCP behind VLAN", &tcp_vlan, TCP_OK),
            ("bad TCP behind VLAN", &bad_tcp, TCP_OK | RXD_ERR_TCPE),
            ("IPv4 fragment", &fragment, IP_OK),
            ("broadcast ARP", &arp, 0),
        ];
        for (i, (what, f, bits)) in cases.iter().enumerate() {
            nic.inject(f);
            nic.step();
            let st = rings.rx_wb(0, i as u32).2;
            assert_eq!(st, RXD_STAT_DD | RXD_STAT_EOP | bits, "{model:?}: {what}");
        }
        assert_eq!(nic.stats().rx_delivered, cases.len() as u64);
    }
}

/// One's-complement sum of 16-bit words, folded (test-side reference).
fn fold16(b: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for w in b.chunks(2) {
        s += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
    }
    while s >> 16 != 0 {
        s = (s & 0xFFFF) + (s >> 16);
    }
    s as u16
}
