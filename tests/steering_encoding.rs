//! Byte-exact `struct ethtool_rxnfc` / `ethtool_rx_flow_spec` encodings, compared with byte
//! arrays laid out by hand from `include/uapi/linux/ethtool.h` (x86_64/aarch64, little-endian):
//!
//! ```text
//! rxnfc:   0 cmd u32 | 4 flow_type u32 | 8 data u64 | 16 fs (168) | 184 rule_cnt u32 | 188 rule_locs[]
//! fs:      +0 flow_type | +4 h_u (52) | +56 h_ext (20) | +76 m_u (52) | +128 m_ext (20)
//!          | +148 pad | +152 ring_cookie u64 | +160 location u32 | +164 pad
//! tcpip4:  +0 ip4src be32 | +4 ip4dst be32 | +8 psrc be16 | +10 pdst be16 | +12 tos
//! usrip4:  +0 ip4src | +4 ip4dst | +8 l4_4_bytes be32 | +12 tos | +13 ip_ver | +14 proto
//! ext:     +0 padding[2] | +2 h_dest[6] | +8 vlan_etype be16 | +10 vlan_tci be16 | +12 data be32[2]
//! ```
#![cfg(target_endian = "little")]

use std::net::Ipv4Addr;

use floodgate::steering::uapi::{self, decode_flow_spec, encode_delete, encode_insert};
use floodgate::steering::{Action, Flow, SteeringRule, UserDef, VlanMatch};

const FS: usize = 16;
const H_U: usize = FS + 4;
const H_EXT: usize = FS + 56;
const M_U: usize = FS + 76;
const M_EXT: usize = FS + 128;
const COOKIE: usize = FS + 152;
const LOC: usize = FS + 160;

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

/// An SRXCLSRLINS request with `flow_type` in both places, everything else zero.
fn base(flow_type: [u8; 4]) -> [u8; 192] {
    let mut b = [0u8; 192];
    put(&mut b, 0, &[0x32, 0, 0, 0]); // ETHTOOL_SRXCLSRLINS
    put(&mut b, 4, &flow_type);
    put(&mut b, FS, &flow_type);
    b
}

#[test]
fn udp4_dst_port_53_to_vf0_queue0() {
    // ethtool -N eth0 flow-type udp4 dst-port 53 action 0x100000000 loc 2045
    let rule = SteeringRule::new(Flow::Udp4, Action::ToVf { vf: 0, queue: 0 }).dst_port(53);
    let mut want = base([2, 0, 0, 0]);
    put(&mut want, H_U + 10, &[0x00, 0x35]); // pdst 53, network order
    put(&mut want, M_U + 10, &[0xff, 0xff]);
    put(&mut want, COOKIE, &[0, 0, 0, 0, 1, 0, 0, 0]); // VF selector 1 = VF 0
    put(&mut want, LOC, &[0xfd, 0x07, 0, 0]); // 2045
    let got = encode_insert(&rule, 2045);
    assert_eq!(got.as_bytes(), &want[..]);
}

#[test]
fn tcp4_prefix_and_port_mask_to_pf_queue() {
    // src 192.0.2.0/24, dst 198.51.100.7, src ports 1024-2047 (mask 0xfc00), dst port 80,
    // to the PF's ring 3, location 7.
    let mut rule = SteeringRule::new(Flow::Tcp4, Action::ToPf { queue: 3 })
        .src_net(Ipv4Addr::new(192, 0, 2, 77), 24)
        .dst_net(Ipv4Addr::new(198, 51, 100, 7), 32)
        .dst_port(80)
        .at(7);
    rule.src_port = 1024;
    rule.src_port_mask = 0xfc00;
    let mut want = base([1, 0, 0, 0]);
    put(&mut want, H_U, &[192, 0, 2, 0]); // host bits cleared
    put(&mut want, H_U + 4, &[198, 51, 100, 7]);
    put(&mut want, H_U + 8, &[0x04, 0x00]); // 1024
    put(&mut want, H_U + 10, &[0x00, 0x50]); // 80
    put(&mut want, M_U, &[255, 255, 255, 0]);
    put(&mut want, M_U + 4, &[255, 255, 255, 255]);
    put(&mut want, M_U + 8, &[0xfc, 0x00]);
    put(&mut want, M_U + 10, &[0xff, 0xff]);
    put(&mut want, COOKIE, &[3, 0, 0, 0, 0, 0, 0, 0]); // selector 0 = PF
    put(&mut want, LOC, &[7, 0, 0, 0]);
    assert_eq!(encode_insert(&rule, 7).as_bytes(), &want[..]);
}

#[test]
fn ip4_udp_with_vlan_and_user_def_drop() {
    // flow-type ip4 l4proto 17 dst-port 53 (in l4_4_bytes), vlan 100 (VID mask), user-def pool 5,
    // action -1, loc 0.
    let mut rule = SteeringRule::new(Flow::Ip4 { proto: Some(17) }, Action::Drop).dst_port(53);
    rule.vlan = Some(VlanMatch {
        tci: 100,
        mask: 0x0fff,
    });
    rule.user_def = Some(UserDef {
        value: 5,
        mask: 0xff,
    });
    // IPV4_USER_FLOW | FLOW_EXT = 0x8000000d
    let mut want = base([0x0d, 0, 0, 0x80]);
    put(&mut want, H_U + 8, &[0, 0, 0x00, 0x35]); // l4_4_bytes: sport 0, dport 53
    put(&mut want, H_U + 13, &[1, 17]); // ip_ver ETH_RX_NFC_IP4, proto UDP
    put(&mut want, M_U + 8, &[0, 0, 0xff, 0xff]);
    put(&mut want, M_U + 14, &[0xff]); // proto mask
    put(&mut want, H_EXT + 10, &[0x00, 0x64]); // vlan_tci 100
    put(&mut want, H_EXT + 12, &[0, 0, 0, 0, 0, 0, 0, 5]); // data[0], data[1]
    put(&mut want, M_EXT + 10, &[0x0f, 0xff]);
    put(&mut want, M_EXT + 12, &[0, 0, 0, 0, 0, 0, 0, 0xff]);
    put(&mut want, COOKIE, &[0xff; 8]); // RX_CLS_FLOW_DISC
    assert_eq!(encode_insert(&rule, 0).as_bytes(), &want[..]);
}

#[test]
fn sctp4_to_vf62_queue1_and_ip4_any_to_vf3() {
    let rule = SteeringRule::new(Flow::Sctp4, Action::ToVf { vf: 62, queue: 1 })
        .dst_net(Ipv4Addr::new(10, 1, 2, 3), 32);
    let mut want = base([3, 0, 0, 0]);
    put(&mut want, H_U + 4, &[10, 1, 2, 3]);
    put(&mut want, M_U + 4, &[255; 4]);
    put(&mut want, COOKIE, &[1, 0, 0, 0, 63, 0, 0, 0]); // (62 + 1) << 32 | 1
    put(&mut want, LOC, &[0x00, 0x04, 0, 0]); // 1024
    assert_eq!(encode_insert(&rule, 1024).as_bytes(), &want[..]);

    let rule = SteeringRule::new(Flow::Ip4 { proto: None }, Action::ToVf { vf: 3, queue: 1 })
        .src_net(Ipv4Addr::new(203, 0, 113, 9), 32);
    let mut want = base([0x0d, 0, 0, 0]);
    put(&mut want, H_U, &[203, 0, 113, 9]);
    put(&mut want, H_U + 13, &[1, 0]); // ip_ver, proto any
    put(&mut want, M_U, &[255; 4]);
    put(&mut want, COOKIE, &[1, 0, 0, 0, 4, 0, 0, 0]);
    put(&mut want, LOC, &[9, 0, 0, 0]);
    assert_eq!(encode_insert(&rule, 9).as_bytes(), &want[..]);
}

#[test]
fn delete_request() {
    let mut want = [0u8; 192];
    put(&mut want, 0, &[0x31, 0, 0, 0]); // ETHTOOL_SRXCLSRLDEL
    put(&mut want, LOC, &[0xfe, 0x07, 0, 0]); // 0x7fe = 2046
    assert_eq!(encode_delete(0x7fe).as_bytes(), &want[..]);
}

#[test]
fn cookie_encoding_matches_facts_4_2() {
    assert_eq!(
        uapi::ring_cookie(Action::ToVf { vf: 0, queue: 3 }),
        0x1_0000_0003
    );
    assert_eq!(
        uapi::ring_cookie(Action::ToVf { vf: 254, queue: 0 }),
        0xff_0000_0000
    );
    assert_eq!(uapi::ring_cookie(Action::ToPf { queue: 5 }), 5);
    assert_eq!(uapi::ring_cookie(Action::Drop), u64::MAX);
    for a in [
        Action::ToVf { vf: 7, queue: 1 },
        Action::ToPf { queue: 2 },
        Action::Drop,
    ] {
        assert_eq!(uapi::action_of_cookie(uapi::ring_cookie(a)), a);
    }
}

#[test]
fn decode_round_trips() {
    let mut rules = [
        SteeringRule::new(Flow::Udp4, Action::ToVf { vf: 1, queue: 0 })
            .dst_port(53)
            .src_net(Ipv4Addr::new(100, 64, 0, 0), 10),
        SteeringRule::new(Flow::Ip4 { proto: Some(6) }, Action::Drop).src_port(7),
        SteeringRule::new(Flow::Ip4 { proto: None }, Action::ToPf { queue: 1 })
            .dst_net(Ipv4Addr::new(1, 2, 3, 4), 32),
    ];
    rules[1].vlan = Some(VlanMatch {
        tci: 0xe005,
        mask: 0xefff,
    });
    for (i, r) in rules.iter().enumerate() {
        let fs = encode_insert(r, i as u32).fs;
        let mut back = decode_flow_spec(&fs).expect("IPv4 rule decodes");
        assert_eq!(back.location, Some(i as u32));
        back.location = None;
        assert_eq!(&back, r);
    }
}
