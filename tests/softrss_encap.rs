//! Both directions of a flow reach the same worker through every encapsulation, the hash sees
//! through tunnels, and the metadata offsets point at the right headers.

pub mod softrss_util;

use floodgate::softrss::{
    flags, AddrKind, HashAlgorithm, RssConfig, RssMeta, SoftRss, TunnelKind, ABSENT,
};
use softrss_util::*;

const ALGS: [HashAlgorithm; 2] = [
    HashAlgorithm::ToeplitzSymmetric,
    HashAlgorithm::Fast { seed: 0x1234_5678 },
];

fn rss(alg: HashAlgorithm, workers: usize) -> SoftRss {
    SoftRss::new(RssConfig {
        workers,
        algorithm: alg,
        ..RssConfig::default()
    })
    .unwrap()
}

fn expected_tunnels(e: Encap) -> (TunnelKind, TunnelKind, u8) {
    use TunnelKind as T;
    match e {
        Encap::Plain | Encap::Vlan | Encap::QinQ | Encap::Pppoe | Encap::Ipv4Options => {
            (T::None, T::None, 0)
        }
        Encap::Ipv6Ext => (T::None, T::None, 0), // for IPv6 flows; IPv4 flows: checked apart
        Encap::Gre | Encap::GreKeySeqCsum => (T::Gre, T::Gre, 1),
        Encap::GreEth => (T::GreEth, T::GreEth, 1),
        Encap::GtpU | Encap::GtpUExt | Encap::GtpUOverV6 => (T::GtpU, T::GtpU, 1),
        Encap::Vxlan | Encap::VxlanVlan => (T::Vxlan, T::Vxlan, 1),
        Encap::IpIp4 | Encap::IpIp6 => (T::IpInIp, T::IpInIp, 1),
        Encap::GreGtpU => (T::Gre, T::GtpU, 2),
        Encap::VxlanGre => (T::Vxlan, T::Gre, 2),
    }
}

#[test]
fn both_directions_same_worker_for_every_encapsulation() {
    for alg in ALGS {
        let r = rss(alg, 7);
        for encap in ALL_ENCAPS {
            for v6_inner in [false, true] {
                for l4 in ALL_L4 {
                    for i in 0..40 {
                        let f = flow(i, v6_inner, l4);
                        let fwd = r.classify(&build(&f, encap, false, &[0; 8]));
                        let rev = r.classify(&build(&f.reversed(), encap, true, &[0; 8]));
                        let plain = r.classify(&build(&f, Encap::Plain, false, &[0; 8]));
                        let ctx = format!("{alg:?} {encap:?} v6={v6_inner} {l4:?} flow {i}");
                        assert_eq!(fwd.hash, rev.hash, "{ctx}");
                        assert_eq!(fwd.worker, rev.worker, "{ctx}");
                        // The hash is the inner flow's, whatever the encapsulation.
                        assert_eq!(fwd.hash, plain.hash, "{ctx}");
                        let df = fwd.dissection.flags;
                        let dr = rev.dissection.flags;
                        assert_eq!(
                            df & flags::FORWARD != 0,
                            dr & flags::FORWARD == 0,
                            "{ctx}: exactly one direction is forward"
                        );
                        assert_eq!(df & (flags::MALFORMED | flags::TRUNCATED), 0, "{ctx}");
                        assert_eq!(
                            df & flags::HASHED_PORTS != 0,
                            l4 != L4::Icmp,
                            "{ctx}: 5-tuple for port protocols, 3-tuple otherwise"
                        );
                        assert_eq!(fwd.dissection.tuple.proto, f.proto(), "{ctx}");
                        assert_eq!(
                            fwd.dissection.tuple.kind,
                            if v6_inner {
                                AddrKind::Ipv6
                            } else {
                                AddrKind::Ipv4
                            },
                            "{ctx}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn tunnel_kinds_and_flags_are_reported() {
    let r = rss(HashAlgorithm::ToeplitzSymmetric, 4);
    for encap in ALL_ENCAPS {
        let f = flow(3, true, L4::Udp);
        let d = r.classify(&build(&f, encap, false, &[0; 8])).dissection;
        let (o, i, depth) = expected_tunnels(encap);
        assert_eq!(
            (d.tunnel_outer, d.tunnel_inner, d.tunnel_depth),
            (o, i, depth),
            "{encap:?}"
        );
        let want_vlan = matches!(
            encap,
            Encap::Vlan | Encap::QinQ | Encap::Pppoe | Encap::VxlanVlan | Encap::GreGtpU
        );
        assert_eq!(d.flags & flags::VLAN != 0, want_vlan, "{encap:?}");
        assert_eq!(
            d.flags & flags::QINQ != 0,
            matches!(encap, Encap::QinQ | Encap::GreGtpU),
            "{encap:?}"
        );
        assert_eq!(
            d.flags & flags::PPPOE != 0,
            matches!(encap, Encap::Pppoe | Encap::GreGtpU),
            "{encap:?}"
        );
    }
    // IPv4 inner flow in the IPv6-with-extension-headers tunnel.
    let d = r
        .classify(&build(
            &flow(3, false, L4::Udp),
            Encap::Ipv6Ext,
            false,
            &[0; 8],
        ))
        .dissection;
    assert_eq!(d.tunnel_inner, TunnelKind::IpInIp);
}

fn be16(b: &[u8], o: u16) -> u16 {
    u16::from_be_bytes([b[o as usize], b[o as usize + 1]])
}

#[test]
fn metadata_offsets_point_at_the_right_headers() {
    let r = rss(HashAlgorithm::Fast { seed: 1 }, 3);
    for encap in ALL_ENCAPS {
        for v6_inner in [false, true] {
            for l4 in ALL_L4 {
                let f = flow(11, v6_inner, l4);
                let frame = build(&f, encap, false, &[0xee; 8]);
                let c = r.classify(&frame);
                let mut headroom = [0u8; 128];
                c.meta().write_to(&mut headroom).unwrap();
                let m = RssMeta::read_from(&headroom).unwrap();
                let ctx = format!("{encap:?} v6={v6_inner} {l4:?}");
                assert_eq!(m.hash, c.hash, "{ctx}");
                assert_eq!(usize::from(m.worker), c.worker, "{ctx}");
                assert_eq!(m.tuple(), c.dissection.tuple, "{ctx}");

                // Outer L2 is the frame start; outer L3 has a valid IP version nibble.
                assert_eq!(m.outer_l2, 0, "{ctx}");
                let ol3 = m.outer_l3;
                assert_ne!(ol3, ABSENT, "{ctx}");
                assert!(matches!(frame[ol3 as usize] >> 4, 4 | 6), "{ctx}");
                // Outer L3 is preceded by its EtherType / PPP protocol.
                assert!(
                    matches!(be16(&frame, ol3 - 2), 0x0800 | 0x86dd | 0x0021 | 0x0057),
                    "{ctx}"
                );

                // Inner L3: right version and the flow's source address.
                let il3 = m.inner_l3 as usize;
                let src = f.src.bytes();
                match f.src {
                    Ip::V4(_) => {
                        assert_eq!(frame[il3] >> 4, 4, "{ctx}");
                        assert_eq!(&frame[il3 + 12..il3 + 16], &src[..], "{ctx}");
                        assert_eq!(&m.src[..4], &src[..], "{ctx}");
                    }
                    Ip::V6(_) => {
                        assert_eq!(frame[il3] >> 4, 6, "{ctx}");
                        assert_eq!(&frame[il3 + 8..il3 + 24], &src[..], "{ctx}");
                        assert_eq!(&m.src[..], &src[..], "{ctx}");
                    }
                }
                // Inner L4: the flow's ports (or the ICMP type).
                let il4 = m.inner_l4;
                assert_ne!(il4, ABSENT, "{ctx}");
                if l4 == L4::Icmp {
                    assert!(matches!(frame[il4 as usize], 8 | 128), "{ctx}");
                } else {
                    assert_eq!(be16(&frame, il4), f.sport, "{ctx}");
                    assert_eq!(be16(&frame, il4 + 2), f.dport, "{ctx}");
                    assert_eq!((m.src_port, m.dst_port), (f.sport, f.dport), "{ctx}");
                }
                assert_eq!(m.l4_proto, f.proto(), "{ctx}");

                let (_, _, depth) = expected_tunnels(encap);
                let tunnelled = depth > 0 || (encap == Encap::Ipv6Ext && !v6_inner);
                if !tunnelled {
                    assert_eq!(m.outer(), m.inner(), "{ctx}");
                    assert_eq!(m.tunnel_outer(), Some(TunnelKind::None), "{ctx}");
                } else {
                    assert!(m.inner_l3 > m.outer_l3, "{ctx}");
                    // Outer L4 of a tunnel: GRE flags word, UDP to 2152/4789, or the inner IP.
                    let ol4 = m.outer_l4;
                    match m.tunnel_outer().unwrap() {
                        TunnelKind::GtpU => assert_eq!(be16(&frame, ol4 + 2), 2152, "{ctx}"),
                        TunnelKind::Vxlan => assert_eq!(be16(&frame, ol4 + 2), 4789, "{ctx}"),
                        TunnelKind::Gre | TunnelKind::GreEth => {
                            assert_eq!(be16(&frame, ol4) & 0x0007, 0, "{ctx}")
                        }
                        TunnelKind::IpInIp => {
                            assert!(matches!(frame[ol4 as usize] >> 4, 4 | 6), "{ctx}")
                        }
                        TunnelKind::None => panic!("{ctx}: tunnel expected"),
                    }
                }
                // Inner L2 exactly for Ethernet-carrying tunnels, and it holds the inner MACs.
                let inner_eth = matches!(
                    m.tunnel_inner().unwrap(),
                    TunnelKind::Vxlan | TunnelKind::GreEth
                );
                if inner_eth {
                    let l2 = m.inner_l2 as usize;
                    assert_ne!(m.inner_l2, ABSENT, "{ctx}");
                    assert_eq!(&frame[l2..l2 + 6], &MAC_B, "{ctx}");
                } else if tunnelled {
                    assert_eq!(m.inner_l2, ABSENT, "{ctx}");
                }
            }
        }
    }
}

#[test]
fn flows_spread_over_workers() {
    for alg in ALGS {
        let r = rss(alg, 4);
        let mut count = [0u32; 4];
        for i in 0..4000 {
            let c = r.classify(&build(
                &flow(i, i.is_multiple_of(2), L4::Tcp),
                Encap::GtpU,
                false,
                &[],
            ));
            count[c.worker] += 1;
        }
        for (w, n) in count.iter().enumerate() {
            assert!(
                *n > 700,
                "{alg:?}: worker {w} got only {n} of 4000 flows: {count:?}"
            );
        }
    }
}

#[test]
fn non_ip_frames_hash_on_mac_addresses_symmetrically() {
    let r = rss(HashAlgorithm::ToeplitzSymmetric, 5);
    let arp = |s, d| eth(s, d, &[(0x8100, 1)], 0x0806, &[0u8; 28]);
    let a = r.classify(&arp(MAC_A, MAC_B));
    let b = r.classify(&arp(MAC_B, MAC_A));
    assert_eq!(a.dissection.tuple.kind, AddrKind::Mac);
    assert_eq!(a.hash, b.hash);
    assert_eq!(a.dissection.outer.l3, ABSENT);
    // Inside VXLAN: the inner MACs, not the VTEP addresses.
    let vx = |s, d, os: Ip, od: Ip| {
        let inner = vxlan(9, &arp(s, d));
        eth(
            MAC_A,
            MAC_B,
            &[],
            0x0800,
            &ip(os, od, 17, &udp(40000, 4789, &inner)),
        )
    };
    let (o1, o2) = (v4(192, 0, 2, 1), v4(192, 0, 2, 2));
    let a = r.classify(&vx([2, 0, 0, 0, 1, 1], [2, 0, 0, 0, 2, 2], o1, o2));
    let b = r.classify(&vx([2, 0, 0, 0, 2, 2], [2, 0, 0, 0, 1, 1], o2, o1));
    let c = r.classify(&vx([2, 0, 0, 0, 3, 3], [2, 0, 0, 0, 2, 2], o2, o1));
    assert_eq!(a.dissection.tuple.kind, AddrKind::Mac);
    assert_eq!(&a.dissection.tuple.src[..6], &[2, 0, 0, 0, 1, 1]);
    assert_eq!(a.dissection.tunnel_inner, TunnelKind::Vxlan);
    assert_eq!(a.hash, b.hash);
    assert_ne!(a.hash, c.hash);
}

#[test]
fn decap_can_be_disabled() {
    let mut cfg = RssConfig {
        workers: 4,
        ..RssConfig::default()
    };
    cfg.dissect.decap = false;
    let r = SoftRss::new(cfg).unwrap();
    let f = flow(1, false, L4::Udp);
    let d = r.classify(&build(&f, Encap::GtpU, false, &[])).dissection;
    assert_eq!(d.tunnel_depth, 0);
    assert_eq!(d.tuple.dst_port, 2152);
}

#[test]
fn tunnel_depth_is_bounded() {
    // IP-in-IP nested 6 times: only max_tunnel_depth (3) levels are decoded.
    let f = flow(2, false, L4::Udp);
    let mut p = inner_ip(&f, &[]);
    for k in 0..6u8 {
        p = ipv4_full([10, 9, 9, k], [10, 8, 8, k], 4, &[], (false, 0), &p);
    }
    let frame = eth(MAC_A, MAC_B, &[], 0x0800, &p);
    let r = rss(HashAlgorithm::ToeplitzSymmetric, 2);
    let d = r.classify(&frame).dissection;
    assert_eq!(d.tunnel_depth, 3);
    assert_ne!(d.flags & flags::DEPTH_LIMIT, 0);
    // The tuple is the deepest decoded header: addresses of level 3, no ports.
    assert_eq!(&d.tuple.src[..4], &[10, 9, 9, 2]);
    assert!(!d.tuple.has_ports);
}

#[test]
fn gtpu_non_tpdu_and_bad_tunnels_fall_back_to_outer_addresses() {
    let r = rss(HashAlgorithm::ToeplitzSymmetric, 4);
    // GTP-U echo request (type 1) between two peers, both directions.
    let mk = |s: Ip, d: Ip| {
        let mut g = gtpu(0, false, &[]);
        g[1] = 1;
        eth(
            MAC_A,
            MAC_B,
            &[],
            0x0800,
            &ip(s, d, 17, &udp(2152, 2152, &g)),
        )
    };
    let a = r.classify(&mk(v4(1, 1, 1, 1), v4(2, 2, 2, 2)));
    let b = r.classify(&mk(v4(2, 2, 2, 2), v4(1, 1, 1, 1)));
    assert_eq!(a.hash, b.hash);
    assert_eq!(a.dissection.tunnel_depth, 0);
    // GRE version 1 (PPTP): flagged malformed, hashed on the outer addresses (3-tuple).
    let mut g = gre(false, Some(1), None, 0x880b, &[0; 8]);
    g[1] |= 1;
    let frame = eth(
        MAC_A,
        MAC_B,
        &[],
        0x0800,
        &ip(v4(1, 1, 1, 1), v4(2, 2, 2, 2), 47, &g),
    );
    let d = r.classify(&frame).dissection;
    assert_ne!(d.flags & flags::MALFORMED, 0);
    assert_eq!(d.tuple.proto, 47);
    assert_eq!(d.outer.l4, 34);
    // VXLAN without the I flag is not decapsulated.
    let mut v = vxlan(1, &[0; 20]);
    v[0] = 0;
    let frame = eth(
        MAC_A,
        MAC_B,
        &[],
        0x0800,
        &ip(v4(1, 1, 1, 1), v4(2, 2, 2, 2), 17, &udp(9, 4789, &v)),
    );
    let d = r.classify(&frame).dissection;
    assert_eq!(d.tunnel_depth, 0);
    assert_eq!(d.tuple.src_port, 9);
    // A tunnel whose inner packet is cut short: tunnel counted, outer addresses used.
    let f = flow(4, false, L4::Tcp);
    let full = build(&f, Encap::Gre, false, &[]);
    let cut = &full[..full.len() - 30];
    let d = r.classify(cut).dissection;
    assert_eq!(d.tunnel_depth, 1);
    assert_ne!(d.flags & flags::INNER_UNDECODED, 0);
    assert_eq!(&d.tuple.src[..4], &[192, 0, 2, 1]);
    assert!(!d.tuple.has_ports);
}
