//! Flow director: n-tuple rule -> hardware queue in both pool modes, the kernel's refusals
//! (errno + message), masks, drop rules, replacement, stats and restore (facts §4.1-§4.5).

use std::net::Ipv4Addr;

use floodgate_sim::ethtool::{
    errno, ring_cookie_vf, EthtoolError, FlowExt, FlowType, RxFlowSpec, RX_CLS_FLOW_DISC,
};
use floodgate_sim::fdir::{FdirAction, PoolLayout, PoolMode};
use floodgate_sim::generator::{build_tcp4_vlan, build_udp4, build_udp4_vlan, TCP_ACK};
use floodgate_sim::l2::PoolConfig;
use floodgate_sim::rss::RssType;
use floodgate_sim::switch::{DropReason, Ingress, Switch, Target, STATUS_FLM};

const SERVER: [u8; 4] = [10, 0, 0, 1];

fn switch(num_vfs: u16) -> Switch {
    let mut sw = Switch::new(PoolLayout::new(num_vfs, 4).unwrap());
    for vf in 0..num_vfs {
        sw.set_pool(
            vf,
            PoolConfig::vf_default([2, 0, 0, 0, (vf >> 8) as u8, vf as u8]),
        )
        .unwrap();
    }
    sw
}

fn udp(sw: &Switch, src: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut b = vec![0u8; 128];
    let n = build_udp4(
        &mut b,
        sw.pf_mac(),
        [2, 9, 9, 9, 9, 9],
        src,
        SERVER,
        sport,
        dport,
        b"q",
    )
    .unwrap();
    b.truncate(n);
    b
}

fn dns_rule(vf: u32, ring: u32, loc: u32) -> RxFlowSpec {
    RxFlowSpec::new(FlowType::UdpV4)
        .dst_port(53)
        .to_vf(vf, ring)
        .at(loc)
}

fn assert_einval(r: Result<u32, EthtoolError>, needle: &str) {
    match r {
        Err(e) => {
            assert_eq!(e.errno(), errno::EINVAL, "{e}");
            assert!(
                e.message().contains(needle),
                "message {:?} lacks {needle:?}",
                e.message()
            );
        }
        Ok(l) => panic!("accepted (loc {l}), expected EINVAL containing {needle:?}"),
    }
}

#[test]
fn vf_rule_to_hw_queue_32_pool_mode() {
    // 2 VFs + PF = 3 pools <= 32: 32 pools x 4 queues, num_rx_queues_per_pool 4 (facts §4.1).
    let mut sw = switch(2);
    assert_eq!(sw.layout().mode(), PoolMode::Pools32);
    for (vf, ring, want) in [(0u32, 0u32, 0u8), (0, 3, 3), (1, 0, 4), (1, 2, 6)] {
        let loc = sw.ethtool_add_ntuple(&dns_rule(vf, ring, 10)).unwrap();
        assert_eq!(sw.fdir().rule_action(loc), Some(FdirAction::Queue(want)));
        let c = sw.classify(&udp(&sw, [1, 2, 3, 4], 4000, 53), Ingress::Wire);
        let d = c.destinations();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].target, Target::Vf(vf as u16));
        assert_eq!((d[0].queue, d[0].abs_queue), (ring as u8, want));
    }
}

#[test]
fn vf_rule_to_hw_queue_64_pool_mode() {
    // 40 VFs + PF = 41 pools > 32: 64 pools x 2 queues.
    let mut sw = switch(40);
    assert_eq!(sw.layout().mode(), PoolMode::Pools64);
    assert_eq!(sw.layout().num_rx_queues_per_pool(), 2);
    for (vf, ring, want) in [(0u32, 1u32, 1u8), (5, 0, 10), (39, 1, 79)] {
        sw.ethtool_add_ntuple(&dns_rule(vf, ring, 3)).unwrap();
        let c = sw.classify(&udp(&sw, [1, 2, 3, 4], 4000, 53), Ingress::Wire);
        let d = c.destinations()[0];
        assert_eq!(d.target, Target::Vf(vf as u16));
        assert_eq!((d.queue, d.abs_queue), (ring as u8, want));
    }
    // ring 2 does not exist in 64-pool mode.
    assert_einval(
        sw.ethtool_add_ntuple(&dns_rule(0, 2, 3)),
        "num_rx_queues_per_pool is 2",
    );
}

#[test]
fn pf_rule_uses_the_pf_rings_reg_idx() {
    let mut sw = switch(2);
    // PF pool = 2, stride 4: PF ring 1 = hw queue 9.
    let spec = RxFlowSpec::new(FlowType::TcpV4).dst_port(80).to_pf(1).at(0);
    sw.ethtool_add_ntuple(&spec).unwrap();
    let mut b = [0u8; 128];
    let n = build_tcp4_vlan(
        &mut b,
        [2, 0, 0, 0, 0, 0],
        [2, 9, 9, 9, 9, 9],
        None,
        [1, 1, 1, 1],
        SERVER,
        5555,
        80,
        1,
        TCP_ACK,
        b"",
    )
    .unwrap();
    // Addressed to VF 0's MAC, but the rule wins and sends it to the kernel side.
    let d = sw.classify(&b[..n], Ingress::Wire).destinations()[0];
    assert_eq!((d.target, d.queue, d.abs_queue), (Target::Pf, 1, 9));
    assert_einval(
        sw.ethtool_add_ntuple(&RxFlowSpec::new(FlowType::TcpV4).dst_port(80).to_pf(4).at(0)),
        "PF has 4 RX queues",
    );
}

#[test]
fn descriptor_fields_report_the_filter() {
    let mut sw = switch(2);
    sw.ethtool_add_ntuple(&dns_rule(1, 1, 42)).unwrap();
    let c = sw.classify(&udp(&sw, [1, 2, 3, 4], 4000, 53), Ingress::Wire);
    let d = c.destinations()[0];
    let hit = d.fdir.unwrap();
    assert_eq!(hit.id, 42);
    assert_eq!(Some(hit.bucket), sw.fdir().rule_bucket(42));
    assert_eq!(d.rss_type, RssType::FdirMatch as u8);
    assert_eq!(d.desc_dword0() & 0xF, 0xF);
    assert_eq!(d.desc_dword1(), 42 | u32::from(hit.bucket) << 16);
    assert_ne!(d.desc_status_bits() & STATUS_FLM, 0);
}

#[test]
fn refusals_match_the_kernel() {
    let mut sw = switch(2);
    // IPv6 flow types are not supported upstream.
    for ft in [
        FlowType::TcpV6,
        FlowType::UdpV6,
        FlowType::SctpV6,
        FlowType::IpUserV6,
    ] {
        assert_einval(
            sw.ethtool_add_ntuple(&RxFlowSpec::new(ft).to_vf(0, 0)),
            "IPv4 only",
        );
    }
    assert_einval(
        sw.ethtool_add_ntuple(&RxFlowSpec::new(FlowType::Ether)),
        "unrecognized flow type",
    );
    // ip4 with an unsupported protocol (ICMP).
    let mut icmp = RxFlowSpec::new(FlowType::IpUserV4);
    icmp.l4_proto = 1;
    icmp.l4_proto_mask = 0xFF;
    assert_einval(sw.ethtool_add_ntuple(&icmp), "l4_proto 1");
    // VF selector beyond num_vfs: selector 3 = VF 2, only 2 VFs.
    assert_einval(
        sw.ethtool_add_ntuple(&dns_rule(2, 0, 0)),
        "only 2 VFs exist",
    );
    // Ring beyond num_rx_queues_per_pool.
    assert_einval(
        sw.ethtool_add_ntuple(&dns_rule(0, 4, 0)),
        "num_rx_queues_per_pool is 4",
    );
    // Location limit: (1024 << 1) - 2 = 2046.
    assert_einval(
        sw.ethtool_add_ntuple(&dns_rule(0, 0, 2046)),
        "must be < 2046",
    );
    assert_eq!(sw.ethtool_add_ntuple(&dns_rule(0, 0, 2045)), Ok(2045));
    // Plain ip4 rule with a port mask.
    sw.ethtool_del_ntuple(2045).unwrap();
    let mut ip4 = RxFlowSpec::new(FlowType::IpUserV4).src_ip(Ipv4Addr::new(1, 2, 3, 4));
    ip4.dst_port_mask = 0xFFFF;
    assert_einval(sw.ethtool_add_ntuple(&ip4), "port masks must be 0");
    // Unsupported VLAN and flex masks.
    let mut v = dns_rule(0, 0, 0);
    v.ext = Some(FlowExt {
        vlan_tci: 5,
        vlan_tci_mask: 0x00FF,
        ..Default::default()
    });
    assert_einval(sw.ethtool_add_ntuple(&v), "VLAN TCI mask");
    v.ext = Some(FlowExt {
        vlan_etype: 5,
        vlan_etype_mask: 0x00FF,
        ..Default::default()
    });
    assert_einval(sw.ethtool_add_ntuple(&v), "flex-byte");
    v.ext = Some(FlowExt {
        user_def: 1,
        user_def_mask: 0x0F,
        ..Default::default()
    });
    assert_einval(sw.ethtool_add_ntuple(&v), "pool mask");
    // Deleting / reading an empty slot.
    assert_eq!(sw.ethtool_del_ntuple(7).unwrap_err().errno(), errno::EINVAL);
    assert_eq!(sw.ethtool_get_ntuple(7).unwrap_err().errno(), errno::EINVAL);
    // Nothing above was installed.
    assert_eq!(sw.ethtool_ntuple_all(), (2046, vec![]));
    // ntuple off -> EOPNOTSUPP.
    sw.ethtool_set_ntuple(false);
    let e = sw.ethtool_add_ntuple(&dns_rule(0, 0, 0)).unwrap_err();
    assert_eq!(e.errno(), errno::EOPNOTSUPP);
    assert!(e.message().contains("ntuple"));
}

#[test]
fn one_mask_per_port() {
    let mut sw = switch(2);
    sw.ethtool_add_ntuple(&dns_rule(0, 0, 1)).unwrap();
    // Same mask, other value: fine.
    sw.ethtool_add_ntuple(
        &RxFlowSpec::new(FlowType::UdpV4)
            .dst_port(123)
            .to_vf(1, 0)
            .at(2),
    )
    .unwrap();
    // Different mask (adds a source address): refused, even for a TCP rule.
    let other = dns_rule(0, 0, 3).src_ip(Ipv4Addr::new(192, 0, 2, 1));
    assert_einval(
        sw.ethtool_add_ntuple(&other),
        "Hardware only supports one mask per port",
    );
    // Even when it would replace the rule at the same location while other rules exist.
    assert_einval(
        sw.ethtool_add_ntuple(&dns_rule(0, 0, 1).src_ip(Ipv4Addr::new(192, 0, 2, 1))),
        "one mask per port",
    );
    // After deleting every rule the mask is free again.
    sw.ethtool_del_ntuple(1).unwrap();
    sw.ethtool_del_ntuple(2).unwrap();
    assert!(sw.fdir().mask().is_none());
    sw.ethtool_add_ntuple(&other).unwrap();
}

#[test]
fn same_location_replaces() {
    let mut sw = switch(2);
    sw.ethtool_add_ntuple(&dns_rule(0, 0, 5)).unwrap();
    sw.ethtool_add_ntuple(&dns_rule(1, 3, 5)).unwrap();
    assert_eq!(sw.ethtool_ntuple_all().1, vec![5]);
    assert_eq!(
        sw.ethtool_get_ntuple(5).unwrap().ring_cookie,
        ring_cookie_vf(1, 3)
    );
    let d = sw
        .classify(&udp(&sw, [1, 2, 3, 4], 1, 53), Ingress::Wire)
        .destinations()[0];
    assert_eq!(d.abs_queue, 7);
}

#[test]
fn masks_drop_rules_and_counters() {
    let mut sw = switch(2);
    // 198.51.100.0/24 -> drop; everything else from anywhere to port 53 -> VF 0.
    let mut bad = RxFlowSpec::new(FlowType::UdpV4).dst_port(53).drop().at(0);
    bad.src_ip = Ipv4Addr::new(198, 51, 100, 0);
    bad.src_ip_mask = Ipv4Addr::new(255, 255, 255, 0);
    sw.ethtool_add_ntuple(&bad).unwrap();
    assert_eq!(
        sw.ethtool_get_ntuple(0).unwrap().ring_cookie,
        RX_CLS_FLOW_DISC
    );
    let c = sw.classify(&udp(&sw, [198, 51, 100, 77], 9, 53), Ingress::Wire);
    assert_eq!(c.drop, Some(DropReason::FdirDrop));
    assert!(c.destinations().is_empty());
    // Same /24, other port: the mask covers the port, no match; goes to the PF by MAC.
    let c = sw.classify(&udp(&sw, [198, 51, 100, 77], 9, 54), Ingress::Wire);
    assert_eq!(c.destinations()[0].target, Target::Pf);
    assert!(c.destinations()[0].fdir.is_none());
    // Other /24: miss.
    let c = sw.classify(&udp(&sw, [198, 51, 101, 77], 9, 53), Ingress::Wire);
    assert!(c.destinations()[0].fdir.is_none());
    let st = sw.stats();
    assert_eq!(
        (st.fdir.matches, st.fdir.misses, st.dropped_fdir),
        (1, 2, 1)
    );
    assert_eq!(sw.fdir().rule_hits(0), Some(1));
    // FDIRMATCH keeps counting hits of deleted rules.
    sw.ethtool_del_ntuple(0).unwrap();
    assert_eq!(sw.stats().fdir.matches, 1);
    assert_eq!(sw.fdir().rule_hits(0), None);
}

#[test]
fn vlan_and_ip4_rules_match() {
    let mut sw = switch(2);
    let mut pool = PoolConfig::vf_default([2, 0, 0, 0, 0, 0]);
    pool.vlans.push(100);
    sw.set_pool(0, pool).unwrap();
    let mut r = RxFlowSpec::new(FlowType::IpUserV4)
        .dst_ip(Ipv4Addr::from(SERVER))
        .to_vf(0, 2)
        .at(9);
    r.ext = Some(FlowExt {
        vlan_tci: 100,
        vlan_tci_mask: 0x0FFF,
        ..Default::default()
    });
    sw.ethtool_add_ntuple(&r).unwrap();
    let mut b = [0u8; 128];
    // Tagged VLAN 100 (priority bits ignored by the 0x0fff mask), any protocol -> match.
    let n = build_udp4_vlan(
        &mut b,
        sw.pf_mac(),
        [2, 9, 9, 9, 9, 9],
        Some(100 | 0x6000),
        [1, 1, 1, 1],
        SERVER,
        1,
        2,
        b"",
    )
    .unwrap();
    let d = sw.classify(&b[..n], Ingress::Wire).destinations()[0];
    assert_eq!((d.target, d.queue), (Target::Vf(0), 2));
    assert_eq!(d.vlan_tci, Some(100 | 0x6000));
    // VLAN 101: no match.
    let n = build_udp4_vlan(
        &mut b,
        sw.pf_mac(),
        [2, 9, 9, 9, 9, 9],
        Some(101),
        [1, 1, 1, 1],
        SERVER,
        1,
        2,
        b"",
    )
    .unwrap();
    let c = sw.classify(&b[..n], Ingress::Wire);
    assert!(c.destinations().iter().all(|d| d.fdir.is_none()));
}

#[test]
fn restore_after_layout_change_uses_the_new_pool_size() {
    let mut sw = switch(2);
    sw.ethtool_add_ntuple(&dns_rule(1, 1, 0)).unwrap();
    assert_eq!(sw.fdir().rule_action(0), Some(FdirAction::Queue(5)));
    // 40 VFs: 64-pool mode, (2-1)*2+1 = 3.
    sw.set_layout(PoolLayout::new(40, 4).unwrap());
    assert_eq!(sw.fdir().rule_action(0), Some(FdirAction::Queue(3)));
    // Back to one VF: selector 2 no longer exists, the rule stays listed but inactive.
    sw.set_layout(PoolLayout::new(1, 4).unwrap());
    assert_eq!(sw.fdir().rule_action(0), None);
    assert_eq!(sw.fdir().stats().inactive, 1);
    assert_eq!(sw.ethtool_ntuple_all().1, vec![0]);
}

#[test]
fn pf_rss_reduction_shows_the_formula_mismatch() {
    // facts §4.3 caution: 32-pool mode with PF RSS 2 -> num_rx_queues_per_pool 2 while the pool
    // stride is 4: VF 1 ring 1 lands on hw queue 3, which belongs to VF 0.
    let mut sw = Switch::new(PoolLayout::new(2, 2).unwrap());
    for vf in 0..2 {
        sw.set_pool(vf, PoolConfig::vf_default([2, 0, 0, 0, 0, vf as u8]))
            .unwrap();
    }
    sw.ethtool_add_ntuple(&dns_rule(1, 1, 0)).unwrap();
    let d = sw
        .classify(&udp(&sw, [1, 2, 3, 4], 1, 53), Ingress::Wire)
        .destinations()[0];
    assert_eq!((d.abs_queue, d.target, d.queue), (3, Target::Vf(0), 3));
}

#[test]
fn pballoc_sets_the_table_size() {
    let mut sw = switch(1);
    assert_eq!(sw.fdir().table_size(), 2046);
    assert_eq!(sw.fdir().first_free_location(), Some(2045));
    let layout = *sw.layout();
    let mut fd = floodgate_sim::fdir::FlowDirector::new();
    fd.set_pballoc(3).unwrap();
    assert_eq!(fd.table_size(), 8190);
    assert_eq!(fd.add_rule(&dns_rule(0, 0, 8189), &layout), Ok(8189));
    assert!(fd.set_pballoc(4).is_err());
    let _ = &mut sw;
}
