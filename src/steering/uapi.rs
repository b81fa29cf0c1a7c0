//! Byte-exact mirrors of the kernel's ethtool n-tuple structures (`include/uapi/linux/ethtool.h`)
//! and the encoding of a [`SteeringRule`] into them.
//!
//! Every structure is `repr(C)` with explicit padding fields, so that it has no uninitialised
//! bytes and can be viewed as a byte slice; compile-time assertions pin the size and the offsets
//! to the ones the kernel uses on 64-bit Linux (`sizeof(struct ethtool_rxnfc) == 192`,
//! `sizeof(struct ethtool_rx_flow_spec) == 168`, ...).
//!
//! Byte order: the kernel's `__be32`/`__be16` fields (addresses, ports, VLAN TCI, user-def data)
//! are stored as big-endian byte arrays ([`Be16`], [`Be32`]); the plain `__u32`/`__u64` fields
//! (`cmd`, `flow_type`, `ring_cookie`, `location`) are in host order.

use std::net::Ipv4Addr;

use super::{Action, Flow, SteeringRule};

/// `SIOCETHTOOL`.
pub const SIOCETHTOOL: libc::c_ulong = 0x8946;

/// `ETHTOOL_GRXRINGS`: number of RX rings (result in `data`).
pub const ETHTOOL_GRXRINGS: u32 = 0x2d;
/// `ETHTOOL_GRXCLSRLCNT`: number of rules (`rule_cnt`) and table size (`data`).
pub const ETHTOOL_GRXCLSRLCNT: u32 = 0x2e;
/// `ETHTOOL_GRXCLSRULE`: read the rule at `fs.location`.
pub const ETHTOOL_GRXCLSRULE: u32 = 0x2f;
/// `ETHTOOL_GRXCLSRLALL`: list the locations of all rules.
pub const ETHTOOL_GRXCLSRLALL: u32 = 0x30;
/// `ETHTOOL_SRXCLSRLDEL`: delete the rule at `fs.location`.
pub const ETHTOOL_SRXCLSRLDEL: u32 = 0x31;
/// `ETHTOOL_SRXCLSRLINS`: insert a rule at `fs.location`.
pub const ETHTOOL_SRXCLSRLINS: u32 = 0x32;
/// `ETHTOOL_GRXFHINDIR`: read the RSS indirection table.
pub const ETHTOOL_GRXFHINDIR: u32 = 0x38;
/// `ETHTOOL_SRXFHINDIR`: write the RSS indirection table.
pub const ETHTOOL_SRXFHINDIR: u32 = 0x39;

/// `TCP_V4_FLOW`.
pub const TCP_V4_FLOW: u32 = 0x01;
/// `UDP_V4_FLOW`.
pub const UDP_V4_FLOW: u32 = 0x02;
/// `SCTP_V4_FLOW`.
pub const SCTP_V4_FLOW: u32 = 0x03;
/// `IPV4_USER_FLOW` (a.k.a. `IP_USER_FLOW`).
pub const IPV4_USER_FLOW: u32 = 0x0d;
/// `FLOW_EXT`: the `h_ext`/`m_ext` fields are valid.
pub const FLOW_EXT: u32 = 0x8000_0000;
/// `ETH_RX_NFC_IP4`: `usr_ip4_spec.ip_ver` value for IPv4.
pub const ETH_RX_NFC_IP4: u8 = 1;

/// `RX_CLS_FLOW_DISC`: `ring_cookie` meaning "drop" (facts §4.2).
pub const RX_CLS_FLOW_DISC: u64 = u64::MAX;
/// `ETHTOOL_RX_FLOW_SPEC_RING`: queue bits of `ring_cookie`.
pub const ETHTOOL_RX_FLOW_SPEC_RING: u64 = 0x0000_0000_FFFF_FFFF;
/// `ETHTOOL_RX_FLOW_SPEC_RING_VF`: VF selector bits of `ring_cookie` (0 = PF, k + 1 = VF k).
pub const ETHTOOL_RX_FLOW_SPEC_RING_VF: u64 = 0x0000_00FF_0000_0000;
/// `ETHTOOL_RX_FLOW_SPEC_RING_VF_OFF`.
pub const ETHTOOL_RX_FLOW_SPEC_RING_VF_OFF: u32 = 32;
/// `RX_CLS_LOC_SPECIAL`: flag in `GRXCLSRLCNT`'s `data` when the driver accepts special locations.
pub const RX_CLS_LOC_SPECIAL: u32 = 0x8000_0000;

/// A big-endian `__be16`.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Be16(pub [u8; 2]);

impl Be16 {
    /// From a host-order number.
    pub fn new(v: u16) -> Be16 {
        Be16(v.to_be_bytes())
    }
    /// To a host-order number.
    pub fn get(self) -> u16 {
        u16::from_be_bytes(self.0)
    }
}

/// A big-endian `__be32`.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Be32(pub [u8; 4]);

impl Be32 {
    /// From a host-order number.
    pub fn new(v: u32) -> Be32 {
        Be32(v.to_be_bytes())
    }
    /// An IPv4 address in network order (first octet first).
    pub fn ip(a: Ipv4Addr) -> Be32 {
        Be32(a.octets())
    }
    /// To a host-order number.
    pub fn get(self) -> u32 {
        u32::from_be_bytes(self.0)
    }
}

/// `struct ethtool_tcpip4_spec` (TCP/UDP/SCTP over IPv4), 16 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpIp4Spec {
    /// `ip4src`.
    pub ip4src: Be32,
    /// `ip4dst`.
    pub ip4dst: Be32,
    /// `psrc`.
    pub psrc: Be16,
    /// `pdst`.
    pub pdst: Be16,
    /// `tos`.
    pub tos: u8,
    /// Trailing padding to the 4-byte alignment of the union.
    pub _pad: [u8; 3],
}

/// `struct ethtool_usrip4_spec` (any IPv4), 16 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UsrIp4Spec {
    /// `ip4src`.
    pub ip4src: Be32,
    /// `ip4dst`.
    pub ip4dst: Be32,
    /// `l4_4_bytes`: the first 4 bytes of the L4 header (ixgbe reads them as the two ports).
    pub l4_4_bytes: Be32,
    /// `tos`.
    pub tos: u8,
    /// `ip_ver` ([`ETH_RX_NFC_IP4`] in a rule, 0 in a mask).
    pub ip_ver: u8,
    /// `proto`.
    pub proto: u8,
    /// Trailing padding.
    pub _pad: u8,
}

/// `union ethtool_flow_union`: 52 bytes, aligned to 4. Kept as raw bytes; the typed views are
/// written in with [`FlowUnion::tcp_ip4`] and [`FlowUnion::usr_ip4`].
#[repr(C, align(4))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowUnion {
    /// `hdata`.
    pub hdata: [u8; 52],
}

impl Default for FlowUnion {
    fn default() -> Self {
        FlowUnion { hdata: [0; 52] }
    }
}

impl FlowUnion {
    /// The union holding `tcp_ip4_spec` / `udp_ip4_spec` / `sctp_ip4_spec`.
    pub fn tcp_ip4(s: &TcpIp4Spec) -> FlowUnion {
        let mut u = FlowUnion::default();
        u.hdata[0..4].copy_from_slice(&s.ip4src.0);
        u.hdata[4..8].copy_from_slice(&s.ip4dst.0);
        u.hdata[8..10].copy_from_slice(&s.psrc.0);
        u.hdata[10..12].copy_from_slice(&s.pdst.0);
        u.hdata[12] = s.tos;
        u
    }

    /// The union holding `usr_ip4_spec`.
    pub fn usr_ip4(s: &UsrIp4Spec) -> FlowUnion {
        let mut u = FlowUnion::default();
        u.hdata[0..4].copy_from_slice(&s.ip4src.0);
        u.hdata[4..8].copy_from_slice(&s.ip4dst.0);
        u.hdata[8..12].copy_from_slice(&s.l4_4_bytes.0);
        u.hdata[12] = s.tos;
        u.hdata[13] = s.ip_ver;
        u.hdata[14] = s.proto;
        u
    }

    /// Reads the `tcp_ip4_spec` view.
    pub fn as_tcp_ip4(&self) -> TcpIp4Spec {
        let h = &self.hdata;
        TcpIp4Spec {
            ip4src: Be32([h[0], h[1], h[2], h[3]]),
            ip4dst: Be32([h[4], h[5], h[6], h[7]]),
            psrc: Be16([h[8], h[9]]),
            pdst: Be16([h[10], h[11]]),
            tos: h[12],
            _pad: [0; 3],
        }
    }

    /// Reads the `usr_ip4_spec` view.
    pub fn as_usr_ip4(&self) -> UsrIp4Spec {
        let h = &self.hdata;
        UsrIp4Spec {
            ip4src: Be32([h[0], h[1], h[2], h[3]]),
            ip4dst: Be32([h[4], h[5], h[6], h[7]]),
            l4_4_bytes: Be32([h[8], h[9], h[10], h[11]]),
            tos: h[12],
            ip_ver: h[13],
            proto: h[14],
            _pad: 0,
        }
    }
}

/// `struct ethtool_flow_ext`, 20 bytes, aligned to 4.
#[repr(C, align(4))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowExt {
    /// `padding[2]`.
    pub padding: [u8; 2],
    /// `h_dest[ETH_ALEN]`.
    pub h_dest: [u8; 6],
    /// `vlan_etype` (ixgbe: the two flex bytes).
    pub vlan_etype: Be16,
    /// `vlan_tci`.
    pub vlan_tci: Be16,
    /// `data[2]`: the 64-bit user-def value, high word first (ixgbe: low byte of `data[1]` is the
    /// VM pool).
    pub data: [Be32; 2],
}

/// `struct ethtool_rx_flow_spec`, 168 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RxFlowSpec {
    /// `flow_type` (may carry [`FLOW_EXT`]).
    pub flow_type: u32,
    /// `h_u`: the values.
    pub h_u: FlowUnion,
    /// `h_ext`.
    pub h_ext: FlowExt,
    /// `m_u`: the masks (1 = compare this bit).
    pub m_u: FlowUnion,
    /// `m_ext`.
    pub m_ext: FlowExt,
    /// Padding before the 8-aligned `ring_cookie`.
    pub _pad0: [u8; 4],
    /// `ring_cookie`: queue, VF selector, or [`RX_CLS_FLOW_DISC`].
    pub ring_cookie: u64,
    /// `location`.
    pub location: u32,
    /// Trailing padding.
    pub _pad1: u32,
}

/// `struct ethtool_rxnfc` without its flexible `rule_locs[]` tail, 192 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rxnfc {
    /// `cmd`.
    pub cmd: u32,
    /// `flow_type`.
    pub flow_type: u32,
    /// `data`.
    pub data: u64,
    /// `fs`.
    pub fs: RxFlowSpec,
    /// `rule_cnt` (union with `rss_context`).
    pub rule_cnt: u32,
    /// Where `rule_locs[]` starts; trailing padding of the fixed part.
    pub _tail: u32,
}

/// Offset of `rule_locs[]` in `struct ethtool_rxnfc`.
pub const RXNFC_RULE_LOCS_OFFSET: usize = 188;

// The kernel's sizes and offsets (x86_64/aarch64 uapi; checked against
// /usr/include/linux/ethtool.h with offsetof()).
const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<TcpIp4Spec>() == 16);
    assert!(size_of::<UsrIp4Spec>() == 16);
    assert!(offset_of!(UsrIp4Spec, l4_4_bytes) == 8);
    assert!(offset_of!(UsrIp4Spec, tos) == 12);
    assert!(offset_of!(UsrIp4Spec, ip_ver) == 13);
    assert!(offset_of!(UsrIp4Spec, proto) == 14);
    assert!(offset_of!(TcpIp4Spec, psrc) == 8);
    assert!(offset_of!(TcpIp4Spec, pdst) == 10);
    assert!(offset_of!(TcpIp4Spec, tos) == 12);
    assert!(size_of::<FlowUnion>() == 52 && align_of::<FlowUnion>() == 4);
    assert!(size_of::<FlowExt>() == 20 && align_of::<FlowExt>() == 4);
    assert!(offset_of!(FlowExt, h_dest) == 2);
    assert!(offset_of!(FlowExt, vlan_etype) == 8);
    assert!(offset_of!(FlowExt, vlan_tci) == 10);
    assert!(offset_of!(FlowExt, data) == 12);
    assert!(size_of::<RxFlowSpec>() == 168);
    assert!(offset_of!(RxFlowSpec, h_u) == 4);
    assert!(offset_of!(RxFlowSpec, h_ext) == 56);
    assert!(offset_of!(RxFlowSpec, m_u) == 76);
    assert!(offset_of!(RxFlowSpec, m_ext) == 128);
    assert!(offset_of!(RxFlowSpec, ring_cookie) == 152);
    assert!(offset_of!(RxFlowSpec, location) == 160);
    assert!(size_of::<Rxnfc>() == 192);
    assert!(offset_of!(Rxnfc, data) == 8);
    assert!(offset_of!(Rxnfc, fs) == 16);
    assert!(offset_of!(Rxnfc, rule_cnt) == 184);
    assert!(offset_of!(Rxnfc, _tail) == RXNFC_RULE_LOCS_OFFSET);
};

impl Rxnfc {
    /// A request with only `cmd` set.
    pub fn command(cmd: u32) -> Rxnfc {
        Rxnfc {
            cmd,
            ..Rxnfc::default()
        }
    }

    /// The 192 bytes passed to the kernel.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: `Rxnfc` is repr(C), made only of integers and byte arrays, with every padding
        // byte an explicit field (the asserts above pin size and offsets), so all 192 bytes are
        // initialised; the slice borrows `self`.
        unsafe {
            std::slice::from_raw_parts(
                (self as *const Rxnfc).cast::<u8>(),
                std::mem::size_of::<Rxnfc>(),
            )
        }
    }
}

impl RxFlowSpec {
    /// The 168 bytes of the flow spec.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: as for `Rxnfc::as_bytes`: repr(C), no implicit padding, borrowed from `self`.
        unsafe {
            std::slice::from_raw_parts(
                (self as *const RxFlowSpec).cast::<u8>(),
                std::mem::size_of::<RxFlowSpec>(),
            )
        }
    }
}

/// The `ring_cookie` of an action (facts §4.2): VF `vf` (0-based) queue `q` is
/// `((vf + 1) << 32) | q`, the PF's queue `q` is `q`, drop is [`RX_CLS_FLOW_DISC`].
pub fn ring_cookie(action: Action) -> u64 {
    match action {
        Action::ToVf { vf, queue } => {
            ((u64::from(vf) + 1) << ETHTOOL_RX_FLOW_SPEC_RING_VF_OFF) | u64::from(queue)
        }
        Action::ToPf { queue } => u64::from(queue),
        Action::Drop => RX_CLS_FLOW_DISC,
    }
}

/// The inverse of [`ring_cookie`]; `None` for a VF selector of 0 with queue bits above 31 (never
/// produced) is impossible, so this is total.
pub fn action_of_cookie(cookie: u64) -> Action {
    if cookie == RX_CLS_FLOW_DISC {
        return Action::Drop;
    }
    let sel = ((cookie & ETHTOOL_RX_FLOW_SPEC_RING_VF) >> ETHTOOL_RX_FLOW_SPEC_RING_VF_OFF) as u32;
    let queue = (cookie & ETHTOOL_RX_FLOW_SPEC_RING) as u32;
    if sel == 0 {
        Action::ToPf { queue }
    } else {
        Action::ToVf { vf: sel - 1, queue }
    }
}

/// Encodes `rule` as the `ethtool_rx_flow_spec` inserted at `location`.
///
/// Ports of an [`Flow::Ip4`] rule with a protocol go into `l4_4_bytes` (source port in the first
/// two bytes), which is where ixgbe reads them. Validation is separate
/// ([`super::validate_rules`]); this function encodes whatever it is given.
pub fn encode_flow_spec(rule: &SteeringRule, location: u32) -> RxFlowSpec {
    let (flow_type, h_u, m_u) = match rule.flow {
        Flow::Tcp4 | Flow::Udp4 | Flow::Sctp4 => {
            let ft = match rule.flow {
                Flow::Tcp4 => TCP_V4_FLOW,
                Flow::Udp4 => UDP_V4_FLOW,
                _ => SCTP_V4_FLOW,
            };
            let h = TcpIp4Spec {
                ip4src: Be32::ip(rule.src_ip),
                ip4dst: Be32::ip(rule.dst_ip),
                psrc: Be16::new(rule.src_port),
                pdst: Be16::new(rule.dst_port),
                ..TcpIp4Spec::default()
            };
            let m = TcpIp4Spec {
                ip4src: Be32::ip(rule.src_mask),
                ip4dst: Be32::ip(rule.dst_mask),
                psrc: Be16::new(rule.src_port_mask),
                pdst: Be16::new(rule.dst_port_mask),
                ..TcpIp4Spec::default()
            };
            (ft, FlowUnion::tcp_ip4(&h), FlowUnion::tcp_ip4(&m))
        }
        Flow::Ip4 { proto } => {
            let l4 = (u32::from(rule.src_port) << 16) | u32::from(rule.dst_port);
            let l4m = (u32::from(rule.src_port_mask) << 16) | u32::from(rule.dst_port_mask);
            let h = UsrIp4Spec {
                ip4src: Be32::ip(rule.src_ip),
                ip4dst: Be32::ip(rule.dst_ip),
                l4_4_bytes: Be32::new(l4),
                ip_ver: ETH_RX_NFC_IP4,
                proto: proto.unwrap_or(0),
                ..UsrIp4Spec::default()
            };
            let m = UsrIp4Spec {
                ip4src: Be32::ip(rule.src_mask),
                ip4dst: Be32::ip(rule.dst_mask),
                l4_4_bytes: Be32::new(l4m),
                proto: if proto.is_some() { 0xff } else { 0 },
                ..UsrIp4Spec::default()
            };
            (
                IPV4_USER_FLOW,
                FlowUnion::usr_ip4(&h),
                FlowUnion::usr_ip4(&m),
            )
        }
    };
    let mut fs = RxFlowSpec {
        flow_type,
        h_u,
        m_u,
        ring_cookie: ring_cookie(rule.action),
        location,
        ..RxFlowSpec::default()
    };
    if rule.vlan.is_some() || rule.user_def.is_some() {
        fs.flow_type |= FLOW_EXT;
        if let Some(v) = rule.vlan {
            fs.h_ext.vlan_tci = Be16::new(v.tci);
            fs.m_ext.vlan_tci = Be16::new(v.mask);
        }
        if let Some(u) = rule.user_def {
            fs.h_ext.data = [Be32::new((u.value >> 32) as u32), Be32::new(u.value as u32)];
            fs.m_ext.data = [Be32::new((u.mask >> 32) as u32), Be32::new(u.mask as u32)];
        }
    }
    fs
}

/// The `ETHTOOL_SRXCLSRLINS` request for `rule` at `location`.
pub fn encode_insert(rule: &SteeringRule, location: u32) -> Rxnfc {
    let fs = encode_flow_spec(rule, location);
    Rxnfc {
        cmd: ETHTOOL_SRXCLSRLINS,
        flow_type: fs.flow_type,
        fs,
        ..Rxnfc::default()
    }
}

/// The `ETHTOOL_SRXCLSRLDEL` request for `location`.
pub fn encode_delete(location: u32) -> Rxnfc {
    let mut r = Rxnfc::command(ETHTOOL_SRXCLSRLDEL);
    r.fs.location = location;
    r
}

/// Decodes a flow spec read back with `ETHTOOL_GRXCLSRULE` (IPv4 types only).
pub fn decode_flow_spec(fs: &RxFlowSpec) -> Option<SteeringRule> {
    let ft = fs.flow_type & !FLOW_EXT;
    let mut r = match ft {
        TCP_V4_FLOW | UDP_V4_FLOW | SCTP_V4_FLOW => {
            let h = fs.h_u.as_tcp_ip4();
            let m = fs.m_u.as_tcp_ip4();
            let flow = match ft {
                TCP_V4_FLOW => Flow::Tcp4,
                UDP_V4_FLOW => Flow::Udp4,
                _ => Flow::Sctp4,
            };
            SteeringRule {
                src_ip: Ipv4Addr::from(h.ip4src.0),
                src_mask: Ipv4Addr::from(m.ip4src.0),
                dst_ip: Ipv4Addr::from(h.ip4dst.0),
                dst_mask: Ipv4Addr::from(m.ip4dst.0),
                src_port: h.psrc.get(),
                src_port_mask: m.psrc.get(),
                dst_port: h.pdst.get(),
                dst_port_mask: m.pdst.get(),
                ..SteeringRule::new(flow, action_of_cookie(fs.ring_cookie))
            }
        }
        IPV4_USER_FLOW => {
            let h = fs.h_u.as_usr_ip4();
            let m = fs.m_u.as_usr_ip4();
            let proto = if m.proto != 0 { Some(h.proto) } else { None };
            let l4 = h.l4_4_bytes.get();
            let l4m = m.l4_4_bytes.get();
            SteeringRule {
                src_ip: Ipv4Addr::from(h.ip4src.0),
                src_mask: Ipv4Addr::from(m.ip4src.0),
                dst_ip: Ipv4Addr::from(h.ip4dst.0),
                dst_mask: Ipv4Addr::from(m.ip4dst.0),
                src_port: (l4 >> 16) as u16,
                src_port_mask: (l4m >> 16) as u16,
                dst_port: l4 as u16,
                dst_port_mask: l4m as u16,
                ..SteeringRule::new(Flow::Ip4 { proto }, action_of_cookie(fs.ring_cookie))
            }
        }
        _ => return None,
    };
    if fs.flow_type & FLOW_EXT != 0 {
        if fs.m_ext.vlan_tci.get() != 0 {
            r.vlan = Some(super::VlanMatch {
                tci: fs.h_ext.vlan_tci.get(),
                mask: fs.m_ext.vlan_tci.get(),
            });
        }
        let join = |d: [Be32; 2]| (u64::from(d[0].get()) << 32) | u64::from(d[1].get());
        if join(fs.m_ext.data) != 0 {
            r.user_def = Some(super::UserDef {
                value: join(fs.h_ext.data),
                mask: join(fs.m_ext.data),
            });
        }
    }
    r.location = Some(fs.location);
    Some(r)
}
