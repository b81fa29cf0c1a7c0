//! L2 switch: pool selection by MAC/VLAN, broadcast/multicast replication per VMOLR bits,
//! promiscuous pools, unknown unicast to the PF, VEB loopback, receive-disabled pools, and the
//! kernel side (facts §4.1, §3.3, §6.1).

use floodgate_sim::fdir::PoolLayout;
use floodgate_sim::generator::build_udp4_vlan;
use floodgate_sim::l2::{mta_hash, PoolConfig, XcastMode};
use floodgate_sim::switch::{
    DropReason, Ingress, KernelSide, Switch, Target, STATUS_LB, STATUS_VP,
};

const VF0: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
const VF1: [u8; 6] = [2, 0, 0, 0, 0, 0x11];
const VF2: [u8; 6] = [2, 0, 0, 0, 0, 0x12];
const OUTSIDE: [u8; 6] = [2, 0xEE, 0, 0, 0, 1];
const BCAST: [u8; 6] = [0xFF; 6];

fn switch() -> Switch {
    let mut sw = Switch::new(PoolLayout::new(3, 4).unwrap());
    for (i, mac) in [VF0, VF1, VF2].into_iter().enumerate() {
        sw.set_pool(i as u16, PoolConfig::vf_default(mac)).unwrap();
    }
    sw
}

fn frame(dst: [u8; 6], src: [u8; 6], vlan: Option<u16>) -> Vec<u8> {
    let mut b = vec![0u8; 128];
    let n = build_udp4_vlan(
        &mut b,
        dst,
        src,
        vlan,
        [192, 0, 2, 1],
        [10, 0, 0, 1],
        1111,
        2222,
        b"hi",
    )
    .unwrap();
    b.truncate(n);
    b
}

fn targets(sw: &Switch, f: &[u8], ing: Ingress) -> Vec<Target> {
    sw.classify(f, ing)
        .destinations()
        .iter()
        .map(|d| d.target)
        .collect()
}

#[test]
fn unicast_picks_the_pool_by_mac() {
    let sw = switch();
    assert_eq!(
        targets(&sw, &frame(VF1, OUTSIDE, None), Ingress::Wire),
        vec![Target::Vf(1)]
    );
    assert_eq!(
        targets(&sw, &frame(sw.pf_mac(), OUTSIDE, None), Ingress::Wire),
        vec![Target::Pf]
    );
    // Unknown unicast from the wire goes to the PF's default pool.
    assert_eq!(
        targets(
            &sw,
            &frame([2, 0x77, 0, 0, 0, 0], OUTSIDE, None),
            Ingress::Wire
        ),
        vec![Target::Pf]
    );
    // Absolute queues: VF 1 in 32-pool mode starts at queue 4; the PF pool (3) at 12.
    let d = sw
        .classify(&frame(VF1, OUTSIDE, None), Ingress::Wire)
        .destinations()[0];
    assert_eq!(d.abs_queue, 4 + d.queue);
    let d = sw
        .classify(&frame(sw.pf_mac(), OUTSIDE, None), Ingress::Wire)
        .destinations()[0];
    assert_eq!((d.pool, d.abs_queue), (3, 12 + d.queue));
}

#[test]
fn vlan_membership_filters_pools() {
    let mut sw = switch();
    let mut p = PoolConfig::vf_default(VF0);
    p.vlans.push(42);
    sw.set_pool(0, p).unwrap();
    let c = sw.classify(&frame(VF0, OUTSIDE, Some(42)), Ingress::Wire);
    assert_eq!(c.destinations()[0].target, Target::Vf(0));
    assert_ne!(c.destinations()[0].desc_status_bits() & STATUS_VP, 0);
    // Not a member of VLAN 43: nobody takes it (the PF has no VLAN 43 either).
    let c = sw.classify(&frame(VF0, OUTSIDE, Some(43)), Ingress::Wire);
    assert_eq!(c.drop, Some(DropReason::NoPool));
    // Untagged still accepted (AUPE).
    assert_eq!(
        targets(&sw, &frame(VF0, OUTSIDE, None), Ingress::Wire),
        vec![Target::Vf(0)]
    );
}

#[test]
fn broadcast_replicates_to_bam_pools() {
    let mut sw = switch();
    assert_eq!(
        targets(&sw, &frame(BCAST, OUTSIDE, None), Ingress::Wire),
        vec![Target::Vf(0), Target::Vf(1), Target::Vf(2), Target::Pf]
    );
    // XCAST NONE clears BAM for VF 1.
    let mut p = sw.pool(1).unwrap().clone();
    p.apply_xcast(XcastMode::None);
    sw.set_pool(1, p).unwrap();
    assert_eq!(
        targets(&sw, &frame(BCAST, OUTSIDE, None), Ingress::Wire),
        vec![Target::Vf(0), Target::Vf(2), Target::Pf]
    );
    let st = sw.stats();
    assert_eq!((st.frames, st.delivered, st.copies), (2, 2, 7));
}

#[test]
fn multicast_follows_mta_rompe_and_mpe() {
    let mut sw = switch();
    let group = [0x01, 0x00, 0x5E, 0x01, 0x02, 0x03];
    let other = [0x01, 0x00, 0x5E, 0x7F, 0x00, 0x01];
    // Nobody registered: only the PF (MPE in the model's PF default).
    assert_eq!(
        targets(&sw, &frame(group, OUTSIDE, None), Ingress::Wire),
        vec![Target::Pf]
    );
    // VF 0 registers the group (SET_MULTICAST); ROMPE pools accept MTA hits.
    let mut p0 = sw.pool(0).unwrap().clone();
    p0.mc_hashes.push(mta_hash(&group, sw.mc_filter_type()));
    sw.set_pool(0, p0).unwrap();
    // The MTA is shared by the port: every ROMPE pool sees an MTA hit (imperfect filtering).
    assert_eq!(
        targets(&sw, &frame(group, OUTSIDE, None), Ingress::Wire),
        vec![Target::Vf(0), Target::Vf(1), Target::Vf(2), Target::Pf]
    );
    // A pool without ROMPE does not.
    let mut p2 = sw.pool(2).unwrap().clone();
    p2.rompe = false;
    sw.set_pool(2, p2).unwrap();
    assert_eq!(
        targets(&sw, &frame(group, OUTSIDE, None), Ingress::Wire),
        vec![Target::Vf(0), Target::Vf(1), Target::Pf]
    );
    // Unregistered group: only MPE pools. ALLMULTI turns MPE on for VF 2.
    let mut p2 = sw.pool(2).unwrap().clone();
    p2.apply_xcast(XcastMode::AllMulti);
    sw.set_pool(2, p2).unwrap();
    assert_eq!(
        targets(&sw, &frame(other, OUTSIDE, None), Ingress::Wire),
        vec![Target::Vf(2), Target::Pf]
    );
}

#[test]
fn promiscuous_pool_sees_other_unicast() {
    let mut sw = switch();
    let mut p = sw.pool(2).unwrap().clone();
    p.apply_xcast(XcastMode::Promisc);
    sw.set_pool(2, p).unwrap();
    assert_eq!(
        targets(&sw, &frame(VF0, OUTSIDE, None), Ingress::Wire),
        vec![Target::Vf(0), Target::Vf(2)]
    );
    assert_eq!(
        targets(
            &sw,
            &frame([2, 0x77, 0, 0, 0, 0], OUTSIDE, Some(9)),
            Ingress::Wire
        ),
        vec![Target::Vf(2)]
    );
}

#[test]
fn veb_loopback() {
    let sw = switch();
    // VF 0 -> VF 1: local only, LB set.
    let c = sw.classify(&frame(VF1, VF0, None), Ingress::Pool(0));
    assert!(!c.to_wire);
    let d = c.destinations()[0];
    assert_eq!(d.target, Target::Vf(1));
    assert!(d.loopback);
    assert_ne!(d.desc_status_bits() & STATUS_LB, 0);
    // VF 0 -> PF.
    let c = sw.classify(&frame(sw.pf_mac(), VF0, None), Ingress::Pool(0));
    assert_eq!((c.destinations()[0].target, c.to_wire), (Target::Pf, false));
    // VF 0 -> outside: wire only, no local copy, not a drop.
    let c = sw.classify(&frame(OUTSIDE, VF0, None), Ingress::Pool(0));
    assert!(c.to_wire && c.destinations().is_empty() && c.drop.is_none());
    // Broadcast from VF 0: every other pool and the wire, never back to VF 0.
    let c = sw.classify(&frame(BCAST, VF0, None), Ingress::Pool(0));
    assert!(c.to_wire);
    let t: Vec<Target> = c.destinations().iter().map(|d| d.target).collect();
    assert_eq!(t, vec![Target::Vf(1), Target::Vf(2), Target::Pf]);
    // To its own MAC: no hairpin.
    let c = sw.classify(&frame(VF0, VF0, None), Ingress::Pool(0));
    assert!(c.destinations().is_empty() && !c.to_wire);
    assert_eq!(c.drop, Some(DropReason::NoPool));
    let st = sw.stats();
    assert_eq!(st.wire_only, 1);
}

#[test]
fn receive_disabled_pools_drop() {
    let mut sw = switch();
    let mut p = sw.pool(1).unwrap().clone();
    p.rx_enabled = false;
    sw.set_pool(1, p).unwrap();
    let c = sw.classify(&frame(VF1, OUTSIDE, None), Ingress::Wire);
    assert_eq!(c.drop, Some(DropReason::RxDisabled));
    // Broadcast skips the disabled pool only.
    assert_eq!(
        targets(&sw, &frame(BCAST, OUTSIDE, None), Ingress::Wire),
        vec![Target::Vf(0), Target::Vf(2), Target::Pf]
    );
    assert_eq!(sw.stats().dropped_rx_disabled, 1);
}

#[test]
fn malformed_and_counters_add_up() {
    let sw = switch();
    assert_eq!(
        sw.classify(&[0u8; 10], Ingress::Wire).drop,
        Some(DropReason::Malformed)
    );
    sw.classify(&frame(VF0, OUTSIDE, None), Ingress::Wire);
    sw.classify(&frame(OUTSIDE, VF0, None), Ingress::Pool(0));
    sw.classify(&frame(VF0, OUTSIDE, Some(5)), Ingress::Wire);
    let s = sw.stats();
    assert_eq!(s.frames, 4);
    assert_eq!(
        s.frames,
        s.delivered
            + s.wire_only
            + s.dropped_malformed
            + s.dropped_fdir
            + s.dropped_rx_disabled
            + s.dropped_no_pool
            + s.dropped_queue_not_in_use
    );
}

#[test]
fn pools_outside_the_layout_are_refused() {
    let mut sw = switch();
    let e = sw.set_pool(4, PoolConfig::default()).unwrap_err();
    assert!(e.to_string().contains("pool 4 does not exist"));
}

#[test]
fn counting_kernel_side() {
    let mut k = KernelSide::default();
    k.deliver(&[0u8; 60]);
    k.deliver(&[0u8; 100]);
    assert_eq!(k.frames(), 2);
    assert!(matches!(k, KernelSide::Counting { bytes: 160, .. }));
}

#[test]
fn random_frames_never_panic_and_are_all_accounted_for() {
    let mut sw = switch();
    sw.ethtool_add_ntuple(
        &floodgate_sim::ethtool::RxFlowSpec::new(floodgate_sim::ethtool::FlowType::UdpV4)
            .dst_port(53)
            .to_vf(0, 1),
    )
    .unwrap();
    let mut x = 0xC0FF_EE00_1234_5678u64;
    let base = frame(VF1, OUTSIDE, Some(3));
    let mut n = 0u64;
    for round in 0..4000u32 {
        let mut f = base.clone();
        let len = (x as usize) % (f.len() + 1);
        f.truncate(len);
        for b in f.iter_mut().skip((round % 40) as usize) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if (x >> 7) & 3 == 0 {
                *b = x as u8;
            }
        }
        let ing = if round % 5 == 0 {
            Ingress::Pool((round / 5 % 4) as u16)
        } else {
            Ingress::Wire
        };
        let c = sw.classify(&f, ing);
        assert!(c.destinations().len() <= 4);
        n += 1;
    }
    let s = sw.stats();
    assert_eq!(s.frames, n);
}
