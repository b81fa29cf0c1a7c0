//! Frame builders shared by the soft-RSS tests (test-only code).

pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xaa];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0xbb];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ip {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl Ip {
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Ip::V4(a) => a.to_vec(),
            Ip::V6(a) => a.to_vec(),
        }
    }
}

pub fn v4(a: u8, b: u8, c: u8, d: u8) -> Ip {
    Ip::V4([a, b, c, d])
}

pub fn v6(last: u16, net: u16) -> Ip {
    let mut a = [0u8; 16];
    a[0] = 0x20;
    a[1] = 0x01;
    a[2..4].copy_from_slice(&net.to_be_bytes());
    a[14..16].copy_from_slice(&last.to_be_bytes());
    Ip::V6(a)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    Udp,
    Tcp,
    Sctp,
    Icmp,
}

pub const ALL_L4: [L4; 4] = [L4::Udp, L4::Tcp, L4::Sctp, L4::Icmp];

/// An innermost flow in one direction.
#[derive(Debug, Clone, Copy)]
pub struct Flow {
    pub src: Ip,
    pub dst: Ip,
    pub sport: u16,
    pub dport: u16,
    pub l4: L4,
}

impl Flow {
    pub fn reversed(&self) -> Flow {
        Flow {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            l4: self.l4,
        }
    }
    pub fn proto(&self) -> u8 {
        match (self.l4, self.src) {
            (L4::Udp, _) => 17,
            (L4::Tcp, _) => 6,
            (L4::Sctp, _) => 132,
            (L4::Icmp, Ip::V4(_)) => 1,
            (L4::Icmp, Ip::V6(_)) => 58,
        }
    }
}

pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(payload);
    v
}

pub fn l4(flow: &Flow, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    match flow.l4 {
        L4::Udp => return udp(flow.sport, flow.dport, payload),
        L4::Tcp => {
            v.extend_from_slice(&flow.sport.to_be_bytes());
            v.extend_from_slice(&flow.dport.to_be_bytes());
            v.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x60, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
            v.extend_from_slice(&[2, 4, 5, 0xb4]); // MSS option: data offset 6
        }
        L4::Sctp => {
            v.extend_from_slice(&flow.sport.to_be_bytes());
            v.extend_from_slice(&flow.dport.to_be_bytes());
            v.extend_from_slice(&[0, 0, 0, 7, 0, 0, 0, 0]);
        }
        L4::Icmp => {
            let ty = if matches!(flow.src, Ip::V4(_)) {
                8
            } else {
                128
            };
            v.extend_from_slice(&[ty, 0, 0, 0, 0, 1, 0, 1]);
        }
    }
    v.extend_from_slice(payload);
    v
}

/// IPv4 header with optional options; `frag` = (MF, offset in 8-byte units).
pub fn ipv4_full(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    options: &[u8],
    frag: (bool, u16),
    payload: &[u8],
) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let hl = 20 + options.len();
    let mut v = vec![0u8; hl];
    v[0] = 0x40 | (hl / 4) as u8;
    v[2..4].copy_from_slice(&((hl + payload.len()) as u16).to_be_bytes());
    v[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    let ff = (if frag.0 { 0x2000 } else { 0 }) | (frag.1 & 0x1fff);
    v[6..8].copy_from_slice(&ff.to_be_bytes());
    v[8] = 64;
    v[9] = proto;
    v[12..16].copy_from_slice(&src);
    v[16..20].copy_from_slice(&dst);
    v[20..].copy_from_slice(options);
    v.extend_from_slice(payload);
    v
}

/// IPv6 header; `ext` = list of (header type, body) inserted in order; fragment headers are
/// given as type 44 with a 6-byte body (offset/flags and identification).
pub fn ipv6_full(
    src: [u8; 16],
    dst: [u8; 16],
    proto: u8,
    ext: &[(u8, Vec<u8>)],
    payload: &[u8],
) -> Vec<u8> {
    let mut chain = Vec::new();
    for (i, (_, body)) in ext.iter().enumerate() {
        let next = ext.get(i + 1).map_or(proto, |e| e.0);
        let kind = ext[i].0;
        let mut h = vec![next];
        if kind == 44 {
            h.push(0);
            h.extend_from_slice(body);
            assert_eq!(h.len(), 8);
        } else {
            // body padded so that the header is a multiple of 8
            let total = (2 + body.len()).div_ceil(8) * 8;
            h.push((total / 8 - 1) as u8);
            h.extend_from_slice(body);
            h.resize(total, 0);
        }
        chain.extend_from_slice(&h);
    }
    let first = ext.first().map_or(proto, |e| e.0);
    let mut v = vec![0u8; 40];
    v[0] = 0x60;
    v[4..6].copy_from_slice(&((chain.len() + payload.len()) as u16).to_be_bytes());
    v[6] = first;
    v[7] = 64;
    v[8..24].copy_from_slice(&src);
    v[24..40].copy_from_slice(&dst);
    v.extend_from_slice(&chain);
    v.extend_from_slice(payload);
    v
}

pub fn ip(src: Ip, dst: Ip, proto: u8, payload: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (Ip::V4(s), Ip::V4(d)) => ipv4_full(s, d, proto, &[], (false, 0), payload),
        (Ip::V6(s), Ip::V6(d)) => ipv6_full(s, d, proto, &[], payload),
        _ => panic!("mixed address families"),
    }
}

pub fn ethertype_of(ip: &Ip) -> u16 {
    match ip {
        Ip::V4(_) => 0x0800,
        Ip::V6(_) => 0x86dd,
    }
}

pub fn eth(
    src: [u8; 6],
    dst: [u8; 6],
    tags: &[(u16, u16)],
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&dst);
    v.extend_from_slice(&src);
    for (tpid, vid) in tags {
        v.extend_from_slice(&tpid.to_be_bytes());
        v.extend_from_slice(&vid.to_be_bytes());
    }
    v.extend_from_slice(&ethertype.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

pub fn pppoe(ppp_proto: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x11, 0x00, 0x12, 0x34];
    v.extend_from_slice(&((2 + payload.len()) as u16).to_be_bytes());
    v.extend_from_slice(&ppp_proto.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// GRE with optional checksum, key, sequence.
pub fn gre(csum: bool, key: Option<u32>, seq: Option<u32>, proto: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = 0u16;
    if csum {
        f |= 0x8000;
    }
    if key.is_some() {
        f |= 0x2000;
    }
    if seq.is_some() {
        f |= 0x1000;
    }
    let mut v = Vec::new();
    v.extend_from_slice(&f.to_be_bytes());
    v.extend_from_slice(&proto.to_be_bytes());
    if csum {
        v.extend_from_slice(&[0xab, 0xcd, 0, 0]);
    }
    if let Some(k) = key {
        v.extend_from_slice(&k.to_be_bytes());
    }
    if let Some(s) = seq {
        v.extend_from_slice(&s.to_be_bytes());
    }
    v.extend_from_slice(payload);
    v
}

/// GTP-U T-PDU; `ext` adds the sequence field and one PDU-session-container extension header.
pub fn gtpu(teid: u32, ext: bool, payload: &[u8]) -> Vec<u8> {
    let mut opt = Vec::new();
    let mut flags = 0x30u8;
    if ext {
        flags |= 0x04 | 0x02;
        opt.extend_from_slice(&[0x00, 0x2a, 0x00, 0x85]); // seq 42, N-PDU 0, next ext 0x85
        opt.extend_from_slice(&[0x01, 0x10, 0x09, 0x00]); // 4-byte ext, next = none
    }
    let mut v = vec![flags, 0xff];
    v.extend_from_slice(&((opt.len() + payload.len()) as u16).to_be_bytes());
    v.extend_from_slice(&teid.to_be_bytes());
    v.extend_from_slice(&opt);
    v.extend_from_slice(payload);
    v
}

pub fn vxlan(vni: u32, inner_eth: &[u8]) -> Vec<u8> {
    let mut v = vec![0x08, 0, 0, 0];
    v.extend_from_slice(&(vni << 8).to_be_bytes());
    v.extend_from_slice(inner_eth);
    v
}

/// Every encapsulation under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encap {
    Plain,
    Vlan,
    QinQ,
    Pppoe,
    Ipv4Options,
    Ipv6Ext,
    Gre,
    GreKeySeqCsum,
    GreEth,
    GtpU,
    GtpUExt,
    GtpUOverV6,
    Vxlan,
    VxlanVlan,
    IpIp4,
    IpIp6,
    /// GTP-U inside GRE inside QinQ+PPPoE (depth 2).
    GreGtpU,
    /// VXLAN carrying GRE (depth 2).
    VxlanGre,
}

pub const ALL_ENCAPS: [Encap; 18] = [
    Encap::Plain,
    Encap::Vlan,
    Encap::QinQ,
    Encap::Pppoe,
    Encap::Ipv4Options,
    Encap::Ipv6Ext,
    Encap::Gre,
    Encap::GreKeySeqCsum,
    Encap::GreEth,
    Encap::GtpU,
    Encap::GtpUExt,
    Encap::GtpUOverV6,
    Encap::Vxlan,
    Encap::VxlanVlan,
    Encap::IpIp4,
    Encap::IpIp6,
    Encap::GreGtpU,
    Encap::VxlanGre,
];

/// Inner IP packet (with L4) of a flow.
pub fn inner_ip(flow: &Flow, payload: &[u8]) -> Vec<u8> {
    ip(flow.src, flow.dst, flow.proto(), &l4(flow, payload))
}

/// Outer endpoints; `rev` swaps them (the tunnel's reverse direction).
fn outer4(rev: bool) -> (Ip, Ip) {
    let (a, b) = (v4(192, 0, 2, 1), v4(198, 51, 100, 7));
    if rev {
        (b, a)
    } else {
        (a, b)
    }
}

fn outer6(rev: bool) -> (Ip, Ip) {
    let (a, b) = (v6(1, 0xaaaa), v6(2, 0xbbbb));
    if rev {
        (b, a)
    } else {
        (a, b)
    }
}

fn macs(rev: bool) -> ([u8; 6], [u8; 6]) {
    if rev {
        (MAC_B, MAC_A)
    } else {
        (MAC_A, MAC_B)
    }
}

/// Builds `flow` in `encap`. `rev` marks the reverse direction: outer tunnel endpoints are
/// swapped and tunnel-specific fields (VXLAN source port, TEID, GRE key) differ, as on a real
/// network.
pub fn build(flow: &Flow, encap: Encap, rev: bool, payload: &[u8]) -> Vec<u8> {
    let (sm, dm) = macs(rev);
    let inner = inner_ip(flow, payload);
    let et = ethertype_of(&flow.src);
    let (o4s, o4d) = outer4(rev);
    let vx_sport = if rev { 51000 } else { 49152 };
    let teid = if rev { 0x200 } else { 0x100 };
    match encap {
        Encap::Plain => eth(sm, dm, &[], et, &inner),
        Encap::Vlan => eth(sm, dm, &[(0x8100, 10)], et, &inner),
        Encap::QinQ => eth(sm, dm, &[(0x88a8, 100), (0x8100, 10)], et, &inner),
        Encap::Pppoe => {
            let ppp = if et == 0x0800 { 0x0021 } else { 0x0057 };
            eth(sm, dm, &[(0x8100, 5)], 0x8864, &pppoe(ppp, &inner))
        }
        Encap::Ipv4Options => match (flow.src, flow.dst) {
            (Ip::V4(s), Ip::V4(d)) => {
                let p = ipv4_full(
                    s,
                    d,
                    flow.proto(),
                    &[1, 1, 1, 0, 0x94, 4, 0, 0],
                    (false, 0),
                    &l4(flow, payload),
                );
                eth(sm, dm, &[], et, &p)
            }
            _ => {
                let (s, d) = match (flow.src, flow.dst) {
                    (Ip::V6(s), Ip::V6(d)) => (s, d),
                    _ => unreachable!(),
                };
                let p = ipv6_full(
                    s,
                    d,
                    flow.proto(),
                    &[(0, vec![1, 0, 0, 0])],
                    &l4(flow, payload),
                );
                eth(sm, dm, &[], et, &p)
            }
        },
        Encap::Ipv6Ext => match (flow.src, flow.dst) {
            (Ip::V6(s), Ip::V6(d)) => {
                let ext = vec![
                    (0u8, vec![1, 4, 0, 0, 0, 0]),
                    (43u8, vec![0, 0, 0, 0, 0, 0]),
                    (60u8, vec![1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
                    (44u8, vec![0, 0, 0, 0, 0, 9]), // atomic fragment
                ];
                let p = ipv6_full(s, d, flow.proto(), &ext, &l4(flow, payload));
                eth(sm, dm, &[], et, &p)
            }
            _ => {
                // IPv4 flows: the same frame inside an IPv6 tunnel with extension headers.
                let (s, d) = match outer6(rev) {
                    (Ip::V6(s), Ip::V6(d)) => (s, d),
                    _ => unreachable!(),
                };
                let p = ipv6_full(s, d, 4, &[(60, vec![1, 4, 0, 0, 0, 0])], &inner);
                eth(sm, dm, &[], 0x86dd, &p)
            }
        },
        Encap::Gre => eth(
            sm,
            dm,
            &[],
            0x0800,
            &ip(o4s, o4d, 47, &gre(false, None, None, et, &inner)),
        ),
        Encap::GreKeySeqCsum => {
            let key = if rev { 77 } else { 76 };
            eth(
                sm,
                dm,
                &[],
                0x0800,
                &ip(o4s, o4d, 47, &gre(true, Some(key), Some(5), et, &inner)),
            )
        }
        Encap::GreEth => {
            let ie = eth(macs(rev).0, macs(rev).1, &[], et, &inner);
            eth(
                sm,
                dm,
                &[],
                0x0800,
                &ip(o4s, o4d, 47, &gre(false, Some(3), None, 0x6558, &ie)),
            )
        }
        Encap::GtpU => eth(
            sm,
            dm,
            &[],
            0x0800,
            &ip(o4s, o4d, 17, &udp(2152, 2152, &gtpu(teid, false, &inner))),
        ),
        Encap::GtpUExt => eth(
            sm,
            dm,
            &[],
            0x0800,
            &ip(o4s, o4d, 17, &udp(2152, 2152, &gtpu(teid, true, &inner))),
        ),
        Encap::GtpUOverV6 => {
            let (s, d) = outer6(rev);
            eth(
                sm,
                dm,
                &[],
                0x86dd,
                &ip(s, d, 17, &udp(2152, 2152, &gtpu(teid, true, &inner))),
            )
        }
        Encap::Vxlan => {
            let ie = eth(macs(rev).0, macs(rev).1, &[], et, &inner);
            eth(
                sm,
                dm,
                &[],
                0x0800,
                &ip(o4s, o4d, 17, &udp(vx_sport, 4789, &vxlan(5000, &ie))),
            )
        }
        Encap::VxlanVlan => {
            let ie = eth(macs(rev).0, macs(rev).1, &[(0x8100, 7)], et, &inner);
            eth(
                sm,
                dm,
                &[(0x8100, 3)],
                0x0800,
                &ip(o4s, o4d, 17, &udp(vx_sport, 4789, &vxlan(5000, &ie))),
            )
        }
        Encap::IpIp4 => {
            let proto = if et == 0x0800 { 4 } else { 41 };
            eth(sm, dm, &[], 0x0800, &ip(o4s, o4d, proto, &inner))
        }
        Encap::IpIp6 => {
            let proto = if et == 0x0800 { 4 } else { 41 };
            let (s, d) = outer6(rev);
            eth(sm, dm, &[], 0x86dd, &ip(s, d, proto, &inner))
        }
        Encap::GreGtpU => {
            let (m1, m2) = outer6(rev);
            let g = ip(m1, m2, 17, &udp(2152, 2152, &gtpu(teid, true, &inner)));
            let p = ip(o4s, o4d, 47, &gre(false, Some(9), None, 0x86dd, &g));
            eth(
                sm,
                dm,
                &[(0x88a8, 100), (0x8100, 10)],
                0x8864,
                &pppoe(0x0021, &p),
            )
        }
        Encap::VxlanGre => {
            let (m1, m2) = outer6(rev);
            let g = ip(m1, m2, 47, &gre(false, None, None, et, &inner));
            let ie = eth(macs(rev).0, macs(rev).1, &[], 0x86dd, &g);
            eth(
                sm,
                dm,
                &[],
                0x0800,
                &ip(o4s, o4d, 17, &udp(vx_sport, 4789, &vxlan(1, &ie))),
            )
        }
    }
}

/// Flows with varied addresses and ports, IPv4 or IPv6.
pub fn flow(i: u32, v6_inner: bool, l4: L4) -> Flow {
    let x = i.wrapping_mul(2_654_435_761);
    let (src, dst) = if v6_inner {
        (v6(x as u16, 0x10), v6((x >> 16) as u16 ^ 0x5555, 0x20))
    } else {
        (
            v4(10, (x >> 8) as u8, x as u8, 1 + (i % 200) as u8),
            v4(172, 16, (x >> 24) as u8, (x >> 16) as u8),
        )
    };
    Flow {
        src,
        dst,
        sport: 1024 + (x % 50000) as u16,
        dport: [53, 80, 443, 2152, 4789, 5060][i as usize % 6],
        l4,
    }
}
