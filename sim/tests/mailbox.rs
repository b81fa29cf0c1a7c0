//! PF agent and mailbox tests (facts §3), driven register by register without the PMD.

pub mod vfdrv;

use floodgate_sim::regs::*;
use floodgate_sim::{MailboxFault, NicModel, VfLinkState, XcastMode};
use floodgate_vfio::{Bar, Device};
use vfdrv::*;

/// facts §3.8, replayed register by register, checking every reply word.
#[test]
fn bring_up_replay_facts_3_8() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    assert_eq!(vf.info().vendor_id, 0x8086);
    assert_eq!(vf.info().device_id, 0x10ED);
    assert_eq!(vf.info().location, "sim:vf0");
    let bar = vf.bar0();
    // Step 1: stop. VTEIMC = 7; read VTEICR; disable queues.
    bar.write32(VTEIMC, 7);
    assert_eq!(bar.read32(VTEIMS), 0);
    assert_eq!(bar.read32(VTEICR), 0);
    for q in 0..8 {
        bar.write32(txq(q, TXDCTL), DCTL_SWFLSH);
        bar.write32(rxq(q, RXDCTL), 0);
        assert_eq!(bar.read32(rxq(q, RXDCTL)) & DCTL_ENABLE, 0);
    }
    // Step 3: VFCTRL.RST, flush by reading VFSTATUS.
    bar.write32(VFCTRL, VFCTRL_RST);
    let _ = bar.read32(VFSTATUS);
    // Step 4: RSTD visible, and read-to-clear.
    let m = bar.read32(VFMAILBOX);
    assert_eq!(m & (MBX_RSTD | MBX_RSTI), MBX_RSTD);
    assert_eq!(bar.read32(VFMAILBOX) & MBX_RSTD, 0);
    // Step 5 (DPDK): default queue values are plain registers.
    for q in 0..8 {
        bar.write32(rxq(q, SRRCTL), SRRCTL_DEFAULT);
        bar.write32(rxq(q, DCA_RXCTRL), 0xA200);
        bar.write32(txq(q, DCA_TXCTRL), 0x2A00);
        assert_eq!(bar.read32(rxq(q, SRRCTL)), SRRCTL_DEFAULT);
    }
    // Step 6: RESET, by hand: lock, write, REQ.
    bar.write32(VFMAILBOX, MBX_VFU);
    assert_eq!(
        bar.read32(VFMAILBOX),
        MBX_VFU,
        "VFU reads back, nothing else"
    );
    bar.write32(VFMBMEM, MSG_RESET);
    bar.write32(VFMAILBOX, MBX_REQ);
    // Step 7: PFACK and PFSTS set, REQ reads back 0, VFU dropped by REQ; R2C.
    let m = bar.read32(VFMAILBOX);
    assert_eq!(m, MBX_PFACK | MBX_PFSTS);
    assert_eq!(bar.read32(VFMAILBOX), 0);
    bar.write32(VFMAILBOX, MBX_VFU);
    let reply: Vec<u32> = (0..4).map(|i| bar.read32(VFMBMEM + 4 * i)).collect();
    bar.write32(VFMAILBOX, MBX_ACK);
    assert_eq!(bar.read32(VFMAILBOX) & (MBX_ACK | MBX_VFU), 0);
    assert_eq!(reply[0], 0x8000_0001);
    assert_eq!(reply[1], u32::from_le_bytes([0x02, 0xf1, 0, 0]));
    assert_eq!(reply[2], u32::from_le_bytes([0, 1, 0, 0]));
    assert_eq!(reply[3], 0, "mc_filter_type");
    // Step 8: API negotiation, highest first: 1.5 refused, 1.4 accepted.
    let mut m = MbxVf::new(&vf);
    let r = m.request(&[MSG_API_NEGOTIATE, API_15, 0]).unwrap();
    assert_eq!(r[0], 0x6000_0008);
    let r = m.request(&[MSG_API_NEGOTIATE, API_14, 0]).unwrap();
    assert_eq!(r[0], 0xA000_0008);
    assert_eq!(r[0] & !MSG_CTS, 0x8000_0008);
    assert_eq!(nic.pf().vf_api(0), Some(API_14));
    // Step 9: GET_QUEUES: 2 VFs + PF = 3 pools ≤ 32 → 32-pool mode, 4 queues.
    let r = m.request(&[MSG_GET_QUEUES, 0, 0, 0, 0]).unwrap();
    assert_eq!(&r[..5], &[0xA000_0009, 4, 4, 0, 0]);
    // Step 11: SET_LPE 1518 accepted, receive enabled.
    let r = m.request(&[MSG_SET_LPE, 1518]).unwrap();
    assert_eq!(&r[..2], &[0xA000_0005, 1518]);
    assert!(nic.pf().vf_state(0).unwrap().rx_enabled);
    // Link check: GET_LINK_STATE word 1 = 1, VFLINKS up at 10G.
    let r = m.request(&[MSG_GET_LINK_STATE, 0]).unwrap();
    assert_eq!(&r[..2], &[0xA000_0010, 1]);
    assert_eq!(bar.read32(VFLINKS), LINKS_UP | LINKS_SPEED_10G);
    // Xcast: untrusted VF asking ALLMULTI is downgraded to MULTI.
    let r = m.request(&[MSG_UPDATE_XCAST_MODE, 2]).unwrap();
    assert_eq!(&r[..2], &[0xA000_000C, 1]);
}

#[test]
fn r2c_bits_and_req_ack_read_back_zero() {
    let nic = nic(NicModel::X540, 2);
    let vf = nic.vf(1);
    assert_eq!(vf.info().device_id, 0x1515);
    let bar = vf.bar0();
    // Writing status bits does nothing; REQ/ACK never read back.
    bar.write32(
        VFMAILBOX,
        MBX_PFSTS | MBX_PFACK | MBX_RSTD | MBX_RSTI | MBX_PFU,
    );
    assert_eq!(bar.read32(VFMAILBOX), 0);
    bar.write32(VFMAILBOX, MBX_ACK);
    assert_eq!(bar.read32(VFMAILBOX), 0);
    bar.write32(VFMAILBOX, MBX_VFU);
    assert_eq!(bar.read32(VFMAILBOX), MBX_VFU);
    assert_eq!(bar.read32(VFMAILBOX), MBX_VFU, "VFU is not read-to-clear");
    bar.write32(VFMAILBOX, 0);
    assert_eq!(bar.read32(VFMAILBOX), 0);
    // A PF ping sets PFSTS (R2C) with a CTS-less control message before RESET.
    nic.pf().ping_vf(1).unwrap();
    assert_eq!(bar.read32(VFMAILBOX), MBX_PFSTS);
    assert_eq!(bar.read32(VFMAILBOX), 0);
    assert_eq!(bar.read32(VFMBMEM), MSG_PF_CONTROL);
}

#[test]
fn requests_before_reset_fail_without_cts() {
    let nic = nic(NicModel::X82599, 2);
    let mut m = MbxVf::new(&nic.vf(0));
    let r = m.request(&[MSG_API_NEGOTIATE, API_13, 0]).unwrap();
    assert_eq!(r[0], 0x4000_0008);
    assert_eq!(r[1], API_13, "only word 0 was rewritten");
    // A request that already carries SUCCESS is acknowledged but not answered.
    m.send(&[MSG_GET_QUEUES | MSG_SUCCESS]).unwrap();
    assert_eq!(m.recv(), Err(MbxErr::NoMsg));
}

#[test]
fn api_versions() {
    let nic = nic(NicModel::X82599, 2);
    let mut m = MbxVf::new(&nic.vf(0));
    m.function_reset();
    m.request(&[MSG_RESET]).unwrap();
    for (api, ok) in [
        (API_10, true),
        (API_11, true),
        (API_12, true),
        (API_13, true),
        (API_14, true),
        (API_15, false),
        (API_20, false),
        (7, false),
        (8, false),
    ] {
        let r = m.request(&[MSG_API_NEGOTIATE, api, 0]).unwrap();
        let want = if ok { 0xA000_0008 } else { 0x6000_0008 };
        assert_eq!(r[0], want, "api enum {api}");
    }
    // Negotiated 1.4 stays after a refused 1.5.
    assert_eq!(nic.pf().vf_api(0), Some(API_14));
    // API 1.0: GET_QUEUES, XCAST and GET_LINK_STATE unsupported.
    m.request(&[MSG_API_NEGOTIATE, API_10, 0]).unwrap();
    assert_eq!(m.request(&[MSG_GET_QUEUES]).unwrap()[0], 0x6000_0009);
    assert_eq!(
        m.request(&[MSG_UPDATE_XCAST_MODE, 1]).unwrap()[0],
        0x6000_000C
    );
    assert_eq!(m.request(&[MSG_GET_LINK_STATE]).unwrap()[0], 0x6000_0010);
    // Unknown message: FAILURE with CTS.
    assert_eq!(m.request(&[0x77]).unwrap()[0], 0x6000_0077);
}

#[test]
fn sixty_four_pool_mode_grants_two_queues() {
    let nic = nic(NicModel::X82599, 40);
    let mut m = MbxVf::new(&nic.vf(39));
    m.bring_up();
    let r = m.request(&[MSG_GET_QUEUES, 0, 0, 0, 0]).unwrap();
    assert_eq!(&r[..5], &[0xA000_0009, 2, 2, 0, 0]);
}

#[test]
fn reset_without_mac_is_nacked() {
    let nic = floodgate_sim::Nic::new(floodgate_sim::NicConfig {
        assign_vf_macs: false,
        ..Default::default()
    });
    let mut m = MbxVf::new(&nic.vf(0));
    m.function_reset();
    let r = m.request(&[MSG_RESET]).unwrap();
    assert_eq!(&r[..4], &[0x4000_0001, 0, 0, 0]);
    // The VF picks its own MAC with SET_MAC_ADDR (step 10).
    let mac = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];
    let w1 = u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]);
    let w2 = u32::from_le_bytes([mac[4], mac[5], 0, 0]);
    assert_eq!(
        m.request(&[MSG_SET_MAC_ADDR, w1, w2]).unwrap()[0],
        0xA000_0002
    );
    assert_eq!(nic.pf().vf_state(0).unwrap().mac, Some(mac));
    // Multicast MAC refused.
    assert_eq!(
        m.request(&[MSG_SET_MAC_ADDR, w1 | 1, w2]).unwrap()[0],
        0x6000_0002
    );
    // Next RESET reports the MAC.
    let r = m.request(&[MSG_RESET]).unwrap();
    assert_eq!(&r[..3], &[0x8000_0001, w1, w2]);
}

#[test]
fn admin_mac_and_trust_rules() {
    let nic = nic(NicModel::X82599, 2);
    let pf = nic.pf();
    let admin = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
    pf.set_vf_mac(0, Some(admin)).unwrap();
    assert!(pf.set_vf_mac(0, Some([0x01, 0, 0, 0, 0, 1])).is_err());
    assert!(pf.set_vf_mac(5, Some(admin)).is_err());
    let mut m = MbxVf::new(&nic.vf(0));
    let r = m.bring_up();
    assert_eq!(r[0], 0x8000_0001);
    assert_eq!(r[1], u32::from_le_bytes([0x02, 0x11, 0x22, 0x33]));
    let other = [0x02u8, 9, 9, 9, 9, 9];
    let w1 = u32::from_le_bytes([other[0], other[1], other[2], other[3]]);
    let w2 = u32::from_le_bytes([other[4], other[5], 0, 0]);
    // Untrusted VF cannot override the admin MAC, nor add MACVLANs.
    assert_eq!(
        m.request(&[MSG_SET_MAC_ADDR, w1, w2]).unwrap()[0],
        0x6000_0002
    );
    assert_eq!(
        m.request(&[MSG_SET_MACVLAN | 1 << 16, w1, w2]).unwrap()[0],
        0x6001_0006
    );
    assert_eq!(pf.vf_state(0).unwrap().mac, Some(admin));
    // Trust: CTS lost (ping), VF resets, then may change it.
    pf.set_vf_trust(0, true).unwrap();
    assert!(!pf.vf_clear_to_send(0));
    let ping = m.recv().unwrap();
    assert_eq!(ping[0], MSG_PF_CONTROL, "no CTS in the ping");
    assert_eq!(m.request(&[MSG_GET_QUEUES]).unwrap()[0], 0x4000_0009);
    m.bring_up();
    assert_eq!(
        m.request(&[MSG_SET_MAC_ADDR, w1, w2]).unwrap()[0],
        0xA000_0002
    );
    assert_eq!(pf.vf_state(0).unwrap().mac, Some(other));
    assert_eq!(
        m.request(&[MSG_SET_MACVLAN | 1 << 16, w1 ^ 0x100, w2])
            .unwrap()[0],
        0xA001_0006
    );
    assert_eq!(pf.vf_state(0).unwrap().extra_macs.len(), 1);
    assert_eq!(m.request(&[MSG_SET_MACVLAN]).unwrap()[0], 0xA000_0006);
    assert!(pf.vf_state(0).unwrap().extra_macs.is_empty());
    // Trusted on 82599: ALLMULTI kept, PROMISC refused.
    assert_eq!(
        m.request(&[MSG_UPDATE_XCAST_MODE, 2]).unwrap()[..2],
        [0xA000_000C, 2]
    );
    assert_eq!(pf.vf_state(0).unwrap().xcast, XcastMode::AllMulti);
    assert_eq!(
        m.request(&[MSG_UPDATE_XCAST_MODE, 3]).unwrap()[0],
        0x6000_000C
    );
}

#[test]
fn xcast_promisc_on_x540() {
    let nic = nic(NicModel::X540, 2);
    let pf = nic.pf();
    let mut m = MbxVf::new(&nic.vf(1));
    m.bring_up();
    // Untrusted: PROMISC downgraded to MULTI.
    assert_eq!(
        m.request(&[MSG_UPDATE_XCAST_MODE, 3]).unwrap()[..2],
        [0xA000_000C, 1]
    );
    pf.set_vf_trust(1, true).unwrap();
    let _ = m.recv();
    m.bring_up();
    // Trusted but PF not promiscuous: refused.
    assert_eq!(
        m.request(&[MSG_UPDATE_XCAST_MODE, 3]).unwrap()[0],
        0x6000_000C
    );
    pf.set_promisc(true);
    assert_eq!(
        m.request(&[MSG_UPDATE_XCAST_MODE, 3]).unwrap()[..2],
        [0xA000_000C, 3]
    );
    assert_eq!(pf.vf_state(1).unwrap().xcast, XcastMode::Promisc);
    // API 1.2 cannot ask for PROMISC.
    m.request(&[MSG_API_NEGOTIATE, API_12, 0]).unwrap();
    assert_eq!(
        m.request(&[MSG_UPDATE_XCAST_MODE, 3]).unwrap()[0],
        0x6000_000C
    );
}

#[test]
fn set_lpe_82599_jumbo_rule() {
    let nic = nic(NicModel::X82599, 2);
    let pf = nic.pf();
    let mut m = MbxVf::new(&nic.vf(0));
    m.function_reset();
    m.request(&[MSG_RESET]).unwrap();
    // PF MTU 1500: > 1518 refused, receive off.
    m.request(&[MSG_API_NEGOTIATE, API_13, 0]).unwrap();
    assert_eq!(m.request(&[MSG_SET_LPE, 9018]).unwrap()[0], 0x6000_0005);
    assert!(!pf.vf_state(0).unwrap().rx_enabled);
    assert_eq!(m.request(&[MSG_SET_LPE, 1518]).unwrap()[0], 0xA000_0005);
    assert!(pf.vf_state(0).unwrap().rx_enabled);
    assert!(pf.set_mtu(20).is_err());
    assert!(pf.set_mtu(9711).is_err());
    // PF MTU 9000: the PF resets, RX off after RESET until SET_LPE from an API ≥ 1.1 VF.
    pf.set_mtu(9000).unwrap();
    assert!(!pf.vf_clear_to_send(0));
    assert!(m.function_reset());
    m.request(&[MSG_RESET]).unwrap();
    assert!(!pf.vf_state(0).unwrap().rx_enabled);
    // API 1.0 VF: never re-enabled.
    assert_eq!(m.request(&[MSG_SET_LPE, 1518]).unwrap()[0], 0x6000_0005);
    assert!(!pf.vf_state(0).unwrap().rx_enabled);
    m.request(&[MSG_API_NEGOTIATE, API_11, 0]).unwrap();
    assert_eq!(m.request(&[MSG_SET_LPE, 9018]).unwrap()[0], 0xA000_0005);
    assert!(pf.vf_state(0).unwrap().rx_enabled);
    assert_eq!(m.request(&[MSG_SET_LPE, 20]).unwrap()[0], 0x6000_0005);
}

#[test]
fn set_lpe_x540_unrestricted() {
    let nic = nic(NicModel::X540, 2);
    let pf = nic.pf();
    pf.set_mtu(9000).unwrap();
    let mut m = MbxVf::new(&nic.vf(0));
    m.function_reset();
    m.request(&[MSG_RESET]).unwrap();
    assert!(pf.vf_state(0).unwrap().rx_enabled);
    assert_eq!(m.request(&[MSG_SET_LPE, 9018]).unwrap()[0], 0xA000_0005);
    assert_eq!(pf.vf_state(0).unwrap().max_frame, 9018);
}

#[test]
fn multicast_vlan_and_link_state() {
    let nic = nic(NicModel::X82599, 2);
    let pf = nic.pf();
    let mut m = MbxVf::new(&nic.vf(1));
    m.bring_up();
    let r = m
        .request(&[MSG_SET_MULTICAST | 3 << 16, 0x0222_0111, 0x0333])
        .unwrap();
    assert_eq!(r[0], 0xA003_0003);
    assert_eq!(pf.vf_state(1).unwrap().mc_hashes, vec![0x111, 0x222, 0x333]);
    assert_eq!(
        m.request(&[MSG_SET_VLAN | 1 << 16, 100]).unwrap()[0],
        0xA001_0004
    );
    assert_eq!(
        m.request(&[MSG_SET_VLAN | 1 << 16, 200]).unwrap()[0],
        0xA001_0004
    );
    assert_eq!(m.request(&[MSG_SET_VLAN, 100]).unwrap()[0], 0xA000_0004);
    assert_eq!(pf.vf_state(1).unwrap().vlans, vec![200]);
    // Admin link disable: CTS lost, ping, GET_LINK_STATE answers 0 after re-init.
    pf.set_vf_link_state(1, VfLinkState::Disable).unwrap();
    assert_eq!(m.recv().unwrap()[0], MSG_PF_CONTROL);
    m.bring_up();
    assert_eq!(
        m.request(&[MSG_GET_LINK_STATE]).unwrap()[..2],
        [0xA000_0010, 0]
    );
    assert!(!pf.vf_state(1).unwrap().rx_enabled);
    pf.set_vf_link_state(1, VfLinkState::Auto).unwrap();
    let _ = m.recv();
    m.bring_up();
    assert_eq!(
        m.request(&[MSG_GET_LINK_STATE]).unwrap()[..2],
        [0xA000_0010, 1]
    );
}

#[test]
fn pf_reset_rsti_rstd_and_cts_loss() {
    let nic = nic(NicModel::X82599, 2);
    let pf = nic.pf();
    let vf = nic.vf(0);
    let bar = vf.bar0();
    let mut m = MbxVf::new(&vf);
    m.bring_up();
    assert!(pf.vf_clear_to_send(0));
    nic.pf_reset_begin();
    let v = bar.read32(VFMAILBOX);
    assert_eq!(v & (MBX_RSTI | MBX_PFSTS), MBX_RSTI | MBX_PFSTS);
    assert_eq!(
        bar.read32(VFMBMEM),
        MSG_PF_CONTROL,
        "control message without CTS"
    );
    assert_eq!(
        bar.read32(VFMAILBOX) & MBX_RSTI,
        MBX_RSTI,
        "RSTI is not R2C"
    );
    // During the reset nobody answers, and VFCTRL.RST does not complete.
    m.cache = 0;
    assert_eq!(m.send(&[MSG_GET_QUEUES]), Err(MbxErr::NoAck));
    bar.write32(VFCTRL, VFCTRL_RST);
    assert_eq!(bar.read32(VFMAILBOX) & MBX_RSTD, 0);
    nic.pf_reset_end();
    let v = bar.read32(VFMAILBOX);
    assert_eq!(v & (MBX_RSTI | MBX_RSTD), MBX_RSTD);
    assert!(!pf.vf_clear_to_send(0));
    // Until RESET: FAILURE without CTS.
    m.cache = 0;
    assert_eq!(m.request(&[MSG_GET_LINK_STATE]).unwrap()[0], 0x4000_0010);
    m.bring_up();
    assert!(pf.vf_clear_to_send(0));
}

#[test]
fn link_change_pings_with_cts() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    let mut m = MbxVf::new(&vf);
    m.bring_up();
    nic.set_link(false);
    assert_eq!(bar.read32(VFLINKS) & LINKS_UP, 0);
    assert_eq!(m.recv().unwrap()[0], MSG_PF_CONTROL | MSG_CTS);
    nic.set_link(true);
    assert_eq!(bar.read32(VFLINKS), LINKS_UP | LINKS_SPEED_10G);
    assert_eq!(m.recv().unwrap()[0], MSG_PF_CONTROL | MSG_CTS);
}

#[test]
fn mailbox_faults() {
    let nic = nic(NicModel::X82599, 2);
    let mut m = MbxVf::new(&nic.vf(0));
    m.bring_up();
    nic.fault_mailbox(0, Some(MailboxFault::NoReply)).unwrap();
    assert_eq!(m.send(&[MSG_GET_QUEUES]), Err(MbxErr::NoAck));
    nic.fault_mailbox(0, Some(MailboxFault::Nack)).unwrap();
    assert_eq!(m.request(&[MSG_GET_QUEUES]).unwrap()[0], 0x6000_0009);
    // Delay longer than the VF's poll budget: timeout; the reply lands later.
    nic.fault_mailbox(0, Some(MailboxFault::Delay(POLLS + 10)))
        .unwrap();
    assert_eq!(m.send(&[MSG_GET_QUEUES]), Err(MbxErr::NoAck));
    let mut late = false;
    for _ in 0..20 {
        if m.read_mbx() & MBX_PFSTS != 0 {
            late = true;
            break;
        }
    }
    assert!(late, "the delayed reply arrives");
    // Short delay: within budget, works.
    nic.fault_mailbox(0, Some(MailboxFault::Delay(3))).unwrap();
    m.cache = 0;
    assert_eq!(m.request(&[MSG_GET_QUEUES]).unwrap()[..2], [0xA000_0009, 4]);
    nic.fault_mailbox(0, None).unwrap();
    assert_eq!(m.request(&[MSG_GET_QUEUES]).unwrap()[0], 0xA000_0009);
    assert!(nic.fault_mailbox(9, None).is_err());
}
