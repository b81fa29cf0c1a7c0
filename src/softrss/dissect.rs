//! The dissector: walks a frame from Ethernet down to the innermost L4 header, through VLAN
//! tags, PPPoE and up to [`DissectConfig::max_tunnel_depth`] tunnels, without recursion and
//! without allocating.
//!
//! It never fails: whatever it could not decode is reported through [`flags`], and the flow
//! tuple is taken from the innermost layer that yielded addresses.

use super::wire::{
    ethertype, ipproto, pppproto, EthernetFrame, GreHeader, GtpuHeader, IcmpHeader, Ipv4Packet,
    Ipv6ExtHeader, Ipv6FragHeader, Ipv6Packet, PppoeSession, SctpHeader, TcpHeader, UdpHeader,
    VlanTag, VxlanHeader, WireError,
};

/// Offset value meaning "this layer is absent".
pub const ABSENT: u16 = 0xFFFF;

/// Flag bits of [`Dissection::flags`] (also stored in the headroom metadata).
pub mod flags {
    /// The flow tuple's IP layer is a piece of a fragmented datagram (MF set or offset != 0).
    pub const FRAGMENT: u16 = 1 << 0;
    /// ... and it is the first piece (offset 0, MF set): its L4 ports were read and recorded,
    /// but are not used for the hash.
    pub const FIRST_FRAGMENT: u16 = 1 << 1;
    /// Flow direction: the source endpoint (address, then port) sorts at or below the
    /// destination endpoint.
    pub const FORWARD: u16 = 1 << 2;
    /// The hash covered L4 ports (5-tuple); otherwise addresses (+ protocol) only.
    pub const HASHED_PORTS: u16 = 1 << 3;
    /// A header ended past the end of the frame, or an IP length field claims more bytes
    /// than the frame holds.
    pub const TRUNCATED: u16 = 1 << 4;
    /// A header had field values that cannot be decoded (bad version, bad length field,
    /// unsupported GRE variant, ...). Parsing stopped there.
    pub const MALFORMED: u16 = 1 << 5;
    /// Tunnel nesting reached [`super::DissectConfig::max_tunnel_depth`]; the deeper payload
    /// was not decoded.
    pub const DEPTH_LIMIT: u16 = 1 << 6;
    /// IPv6 extension headers exceeded [`super::DissectConfig::max_ipv6_ext_headers`].
    pub const EXT_LIMIT: u16 = 1 << 7;
    /// The outer L2 carried at least one VLAN tag.
    pub const VLAN: u16 = 1 << 8;
    /// The outer L2 carried two or more VLAN tags (QinQ).
    pub const QINQ: u16 = 1 << 9;
    /// The outer L2 carried a PPPoE session header.
    pub const PPPOE: u16 = 1 << 10;
    /// A tunnel header was decoded but its payload yielded no L3 (the tuple is the tunnel's
    /// outer addresses).
    pub const INNER_UNDECODED: u16 = 1 << 11;
    /// The tuple carries L4 ports (TCP, UDP, SCTP; also set for a first fragment).
    pub const HAS_PORTS: u16 = 1 << 12;
}

/// What encapsulates the inner layers.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TunnelKind {
    /// No tunnel.
    #[default]
    None = 0,
    /// GRE carrying IPv4 or IPv6.
    Gre = 1,
    /// GRE carrying Ethernet (transparent Ethernet bridging, 0x6558).
    GreEth = 2,
    /// GTP-U T-PDU.
    GtpU = 3,
    /// VXLAN.
    Vxlan = 4,
    /// IPv4 or IPv6 directly in IPv4 or IPv6 (protocol 4 or 41).
    IpInIp = 5,
}

impl TunnelKind {
    /// Decodes the `u8` stored in the metadata.
    pub fn from_u8(v: u8) -> Option<TunnelKind> {
        Some(match v {
            0 => TunnelKind::None,
            1 => TunnelKind::Gre,
            2 => TunnelKind::GreEth,
            3 => TunnelKind::GtpU,
            4 => TunnelKind::Vxlan,
            5 => TunnelKind::IpInIp,
            _ => return None,
        })
    }
}

/// Kind of addresses in a [`FlowTuple`].
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AddrKind {
    /// Nothing usable (frame shorter than an Ethernet header).
    #[default]
    None = 0,
    /// MAC addresses (no IP layer was found).
    Mac = 2,
    /// IPv4.
    Ipv4 = 4,
    /// IPv6.
    Ipv6 = 6,
}

impl AddrKind {
    /// Address length in bytes.
    #[inline]
    pub fn addr_len(self) -> usize {
        match self {
            AddrKind::None => 0,
            AddrKind::Mac => 6,
            AddrKind::Ipv4 => 4,
            AddrKind::Ipv6 => 16,
        }
    }
}

/// The innermost flow identity the dissector found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FlowTuple {
    /// Address kind; addresses occupy the first `kind.addr_len()` bytes of `src`/`dst`.
    pub kind: AddrKind,
    /// IP protocol of the innermost L4 (0 if not IP).
    pub proto: u8,
    /// Whether `src_port`/`dst_port` were read (TCP, UDP, SCTP, including a first fragment).
    pub has_ports: bool,
    /// Source port (host order).
    pub src_port: u16,
    /// Destination port (host order).
    pub dst_port: u16,
    /// Source address, network order, zero padded.
    pub src: [u8; 16],
    /// Destination address, network order, zero padded.
    pub dst: [u8; 16],
}

impl FlowTuple {
    /// Whether the source endpoint sorts at or below the destination endpoint (address bytes
    /// compared big-endian, then ports). This defines the "forward" direction.
    #[inline]
    pub fn is_forward(&self) -> bool {
        // Addresses are zero padded, so comparing all 16 bytes big-endian is the same as
        // comparing the first addr_len() bytes.
        let s = u128::from_be_bytes(self.src);
        let d = u128::from_be_bytes(self.dst);
        s < d || (s == d && self.src_port <= self.dst_port)
    }

    /// The same flow seen from the other side.
    pub fn reversed(&self) -> FlowTuple {
        FlowTuple {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            ..*self
        }
    }
}

/// Offsets of one level's L2, L3 and L4 headers from the start of the frame ([`ABSENT`] if
/// the level has no such header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layers {
    /// Ethernet header.
    pub l2: u16,
    /// IPv4/IPv6 header.
    pub l3: u16,
    /// L4 header (UDP, TCP, SCTP, ICMP, GRE, ... whatever the IP layer carries), after any
    /// IPv6 extension headers.
    pub l4: u16,
}

impl Layers {
    /// All absent.
    pub const NONE: Layers = Layers {
        l2: ABSENT,
        l3: ABSENT,
        l4: ABSENT,
    };
}

impl Default for Layers {
    fn default() -> Self {
        Layers::NONE
    }
}

/// The dissector's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dissection {
    /// The outermost layers (the frame as received).
    pub outer: Layers,
    /// The innermost layers (equal to `outer` when there is no tunnel).
    pub inner: Layers,
    /// The outermost tunnel.
    pub tunnel_outer: TunnelKind,
    /// The innermost tunnel (the one whose payload `inner` describes).
    pub tunnel_inner: TunnelKind,
    /// Number of tunnels decoded.
    pub tunnel_depth: u8,
    /// Number of VLAN tags on the outer L2.
    pub vlan_count: u8,
    /// [`flags`] bits (FORWARD, HASHED_PORTS and HAS_PORTS are filled in by the hashing stage,
    /// [`super::SoftRss::classify`]).
    pub flags: u16,
    /// The innermost flow tuple.
    pub tuple: FlowTuple,
}

/// Dissector settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DissectConfig {
    /// Decode tunnels at all (false: hash on the outer headers).
    pub decap: bool,
    /// Maximum number of nested tunnels decoded (default 3).
    pub max_tunnel_depth: u8,
    /// Maximum number of IPv6 extension headers followed per IPv6 header (default 8).
    pub max_ipv6_ext_headers: u8,
    /// Maximum number of VLAN tags followed (default 4).
    pub max_vlan_tags: u8,
    /// UDP destination port for VXLAN (default 4789).
    pub vxlan_port: u16,
    /// UDP destination port for GTP-U (default 2152).
    pub gtpu_port: u16,
    /// Try a straight-line path first for untagged, unfragmented IPv4 (no options) or IPv6
    /// (no extension headers) carrying TCP or UDP that is not a tunnel port. It gives the same
    /// result as the general walk (checked by the tests); false forces the general walk.
    pub fast_path: bool,
}

impl Default for DissectConfig {
    fn default() -> Self {
        DissectConfig {
            decap: true,
            max_tunnel_depth: 3,
            max_ipv6_ext_headers: 8,
            max_vlan_tags: 4,
            vxlan_port: 4789,
            gtpu_port: 2152,
            fast_path: true,
        }
    }
}

#[inline(always)]
fn off16(v: usize) -> u16 {
    // Frames are < 64 KiB in practice; anything beyond is reported as absent, never wrapped.
    if v < ABSENT as usize {
        v as u16
    } else {
        ABSENT
    }
}

/// Zero-pads an address to 16 bytes in a register, so it is stored in one go.
#[inline(always)]
fn pad16<const N: usize>(a: &[u8; N]) -> [u8; 16] {
    let mut v = [0u8; 16];
    let n = N.min(16);
    v[..n].copy_from_slice(&a[..n]);
    v
}

#[inline(always)]
fn err_flag(e: WireError) -> u16 {
    match e {
        WireError::Truncated { .. } => flags::TRUNCATED,
        WireError::Malformed { .. } => flags::MALFORMED,
    }
}

/// Next header to decode: (offset, end of the enclosing datagram).
enum Step {
    Eth(usize, usize),
    Ip4(usize, usize),
    Ip6(usize, usize),
    Done,
}

/// Dissects `frame` (starting at the Ethernet header).
#[inline]
pub fn dissect(cfg: &DissectConfig, frame: &[u8]) -> Dissection {
    let mut d = Dissection::default();
    dissect_into(cfg, frame, &mut d);
    d
}

/// Dissects `frame` into `d` (overwriting it), avoiding a copy of the result.
#[inline]
pub fn dissect_into(cfg: &DissectConfig, frame: &[u8], d: &mut Dissection) {
    if cfg.fast_path && fast_path(cfg, frame, d) {
        return;
    }
    d.outer = Layers::NONE;
    d.inner = Layers::NONE;
    d.tunnel_outer = TunnelKind::None;
    d.tunnel_inner = TunnelKind::None;
    d.tunnel_depth = 0;
    d.vlan_count = 0;
    d.flags = 0;
    d.tuple.kind = AddrKind::None;
    let mut step = Step::Eth(0, frame.len());
    // Each step moves strictly forward or ends, and tunnels are bounded by
    // `max_tunnel_depth`, so the loop terminates.
    loop {
        step = match step {
            Step::Eth(off, end) => eth(cfg, frame.get(..end).unwrap_or(frame), off, d),
            Step::Ip4(off, end) => ip4(cfg, frame.get(..end).unwrap_or(frame), off, d),
            Step::Ip6(off, end) => ip6(cfg, frame.get(..end).unwrap_or(frame), off, d),
            Step::Done => break,
        };
    }
    if d.tunnel_depth == 0 {
        d.inner = d.outer;
    }
    // MAC addresses are the tuple when the innermost Ethernet header has no IP behind it
    // (done here, not per Ethernet header, to keep the common path short).
    let mac_at = if d.tuple.kind == AddrKind::None {
        d.outer.l2
    } else if d.tunnel_depth > 0 && d.inner.l2 != ABSENT && d.inner.l3 == ABSENT {
        d.inner.l2
    } else {
        ABSENT
    };
    if mac_at != ABSENT {
        if let Ok(e) = EthernetFrame::new_checked(frame.get(usize::from(mac_at)..).unwrap_or(&[])) {
            let t = &mut d.tuple;
            t.kind = AddrKind::Mac;
            t.proto = 0;
            t.has_ports = false;
            t.src_port = 0;
            t.dst_port = 0;
            t.src = pad16(&e.src_addr());
            t.dst = pad16(&e.dst_addr());
        }
    }
    if d.tuple.kind == AddrKind::None {
        d.tuple = FlowTuple::default();
    }
}

/// The common case in straight-line code: Ethernet (no tag) + IPv4 without options or IPv6
/// without extension headers, not fragmented, not truncated, + complete TCP or UDP header, UDP
/// not to a tunnel port. Returns false (leaving `d` for the general walk) otherwise.
#[inline(always)]
fn fast_path(cfg: &DissectConfig, frame: &[u8], d: &mut Dissection) -> bool {
    let Some(hdr) = frame.get(..54) else {
        return false;
    };
    let (l4, proto, src, dst, l4_room) = match u16::from_be_bytes([hdr[12], hdr[13]]) {
        ethertype::IPV4 => {
            let ip = &hdr[14..34];
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            if ip[0] != 0x45
                || u16::from_be_bytes([ip[6], ip[7]]) & 0x3FFF != 0
                || total < 20
                || 14 + total > frame.len()
            {
                return false;
            }
            let s = [ip[12], ip[13], ip[14], ip[15]];
            let t = [ip[16], ip[17], ip[18], ip[19]];
            (34usize, ip[9], pad16(&s), pad16(&t), total - 20)
        }
        ethertype::IPV6 => {
            let Some(ip) = frame.get(14..54) else {
                return false;
            };
            let pl = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            if ip[0] >> 4 != 6 || pl == 0 || 54 + pl > frame.len() {
                return false;
            }
            let mut s = [0u8; 16];
            let mut t = [0u8; 16];
            s.copy_from_slice(&ip[8..24]);
            t.copy_from_slice(&ip[24..40]);
            (54usize, ip[6], s, t, pl)
        }
        _ => return false,
    };
    let Some(h) = frame.get(l4..l4 + 20) else {
        return false;
    };
    let sp = u16::from_be_bytes([h[0], h[1]]);
    let dp = u16::from_be_bytes([h[2], h[3]]);
    match proto {
        ipproto::UDP => {
            if l4_room < 8 || (cfg.decap && (dp == cfg.vxlan_port || dp == cfg.gtpu_port)) {
                return false;
            }
        }
        ipproto::TCP => {
            let hl = usize::from(h[12] >> 4) * 4;
            if hl < 20 || hl > l4_room {
                return false;
            }
        }
        _ => return false,
    }
    let layers = Layers {
        l2: 0,
        l3: 14,
        l4: l4 as u16,
    };
    d.outer = layers;
    d.inner = layers;
    d.tunnel_outer = TunnelKind::None;
    d.tunnel_inner = TunnelKind::None;
    d.tunnel_depth = 0;
    d.vlan_count = 0;
    d.flags = 0;
    let t = &mut d.tuple;
    t.kind = if l4 == 34 {
        AddrKind::Ipv4
    } else {
        AddrKind::Ipv6
    };
    t.proto = proto;
    t.has_ports = true;
    t.src_port = sp;
    t.dst_port = dp;
    t.src = src;
    t.dst = dst;
    true
}

/// Enters a tunnel of `kind`; returns false (and flags DEPTH_LIMIT) if nesting is exhausted.
#[inline(always)]
fn enter_tunnel(cfg: &DissectConfig, d: &mut Dissection, kind: TunnelKind) -> bool {
    if !cfg.decap {
        return false;
    }
    if d.tunnel_depth >= cfg.max_tunnel_depth {
        d.flags |= flags::DEPTH_LIMIT;
        return false;
    }
    if d.tunnel_depth == 0 {
        d.tunnel_outer = kind;
    }
    d.tunnel_inner = kind;
    d.tunnel_depth += 1;
    d.inner = Layers::NONE;
    // Until an inner L3 is found, the flow is the tunnel's endpoints (addresses only).
    d.tuple.has_ports = false;
    d.tuple.src_port = 0;
    d.tuple.dst_port = 0;
    d.flags |= flags::INNER_UNDECODED;
    true
}

#[inline(always)]
fn level(d: &mut Dissection) -> &mut Layers {
    if d.tunnel_depth == 0 {
        &mut d.outer
    } else {
        &mut d.inner
    }
}

#[inline(always)]
fn eth(cfg: &DissectConfig, frame: &[u8], off: usize, d: &mut Dissection) -> Step {
    let buf = frame.get(off..).unwrap_or(&[]);
    let e = match EthernetFrame::new_checked(buf) {
        Ok(e) => e,
        Err(err) => {
            d.flags |= err_flag(err);
            return Step::Done;
        }
    };
    level(d).l2 = off16(off);
    let mut et = e.ethertype();
    let mut pos = off + EthernetFrame::<&[u8]>::HEADER_LEN;
    let mut tags = 0u8;
    while et == ethertype::VLAN || et == ethertype::QINQ {
        if tags >= cfg.max_vlan_tags {
            d.flags |= flags::MALFORMED;
            return Step::Done;
        }
        let t = match VlanTag::new_checked(frame.get(pos..).unwrap_or(&[])) {
            Ok(t) => t,
            Err(err) => {
                d.flags |= err_flag(err);
                return Step::Done;
            }
        };
        tags += 1;
        et = t.ethertype();
        pos += VlanTag::<&[u8]>::HEADER_LEN;
    }
    if d.tunnel_depth == 0 && tags > 0 {
        d.vlan_count = tags;
        d.flags |= flags::VLAN;
        if tags > 1 {
            d.flags |= flags::QINQ;
        }
    }
    let end = frame.len();
    match et {
        ethertype::IPV4 => Step::Ip4(pos, end),
        ethertype::IPV6 => Step::Ip6(pos, end),
        ethertype::PPPOE_SESSION => {
            let p = match PppoeSession::new_checked(frame.get(pos..).unwrap_or(&[])) {
                Ok(p) => p,
                Err(err) => {
                    d.flags |= err_flag(err);
                    return Step::Done;
                }
            };
            if d.tunnel_depth == 0 {
                d.flags |= flags::PPPOE;
            }
            let next = pos + PppoeSession::<&[u8]>::HEADER_LEN;
            let end = end.min(pos + 6 + usize::from(p.length()));
            match p.ppp_protocol() {
                pppproto::IPV4 => Step::Ip4(next, end),
                pppproto::IPV6 => Step::Ip6(next, end),
                _ => Step::Done,
            }
        }
        _ => Step::Done,
    }
}

/// Records an IP layer's addresses as the current tuple.
#[inline(always)]
fn set_ip_tuple(d: &mut Dissection, kind: AddrKind, src: [u8; 16], dst: [u8; 16], proto: u8) {
    // Field by field, whole arrays at once: building a temporary and copying it would make
    // the CPU reload freshly written bytes with wider loads (store-forwarding stalls).
    let t = &mut d.tuple;
    t.kind = kind;
    t.proto = proto;
    t.has_ports = false;
    t.src_port = 0;
    t.dst_port = 0;
    t.src = src;
    t.dst = dst;
    d.flags &= !(flags::FRAGMENT | flags::FIRST_FRAGMENT | flags::INNER_UNDECODED);
}

#[inline(always)]
fn ip4(cfg: &DissectConfig, frame: &[u8], off: usize, d: &mut Dissection) -> Step {
    let buf = frame.get(off..).unwrap_or(&[]);
    let ip = match Ipv4Packet::new_checked(buf) {
        Ok(ip) => ip,
        Err(err) => {
            d.flags |= err_flag(err);
            return Step::Done;
        }
    };
    level(d).l3 = off16(off);
    let proto = ip.protocol();
    set_ip_tuple(
        d,
        AddrKind::Ipv4,
        pad16(&ip.src_addr()),
        pad16(&ip.dst_addr()),
        proto,
    );
    if ip.is_truncated() {
        d.flags |= flags::TRUNCATED;
    }
    let l4 = off + ip.header_len();
    let end = off + ip.payload_end();
    if ip.is_fragment() {
        d.flags |= flags::FRAGMENT;
        if ip.frag_offset() != 0 {
            // Non-first fragment: no L4 header here.
            return Step::Done;
        }
        d.flags |= flags::FIRST_FRAGMENT;
    }
    if l4 >= end {
        // Header-only datagram (or cut right after the header): no L4 bytes.
        return Step::Done;
    }
    level(d).l4 = off16(l4);
    l4_step(cfg, frame, l4, end, proto, d)
}

#[inline(always)]
fn ip6(cfg: &DissectConfig, frame: &[u8], off: usize, d: &mut Dissection) -> Step {
    let buf = frame.get(off..).unwrap_or(&[]);
    let ip = match Ipv6Packet::new_checked(buf) {
        Ok(ip) => ip,
        Err(err) => {
            d.flags |= err_flag(err);
            return Step::Done;
        }
    };
    level(d).l3 = off16(off);
    // Every exit records the addresses with the next header reached so far.
    let (src, dst) = (pad16(&ip.src_addr()), pad16(&ip.dst_addr()));
    let v6_tuple = |d: &mut Dissection, nh: u8| set_ip_tuple(d, AddrKind::Ipv6, src, dst, nh);
    if ip.is_truncated() {
        d.flags |= flags::TRUNCATED;
    }
    let end = off + ip.payload_end();
    let mut nh = ip.next_header();
    let mut pos = off + Ipv6Packet::<&[u8]>::HEADER_LEN;
    let mut fragment = 0u16;
    let mut first = false;
    let mut n = 0u8;
    let payload = frame.get(..end).unwrap_or(frame);
    loop {
        match nh {
            ipproto::HOPOPT | ipproto::ROUTING | ipproto::DSTOPTS | ipproto::AH => {}
            ipproto::FRAGMENT => {}
            _ => break,
        }
        if n >= cfg.max_ipv6_ext_headers {
            d.flags |= flags::EXT_LIMIT;
            v6_tuple(d, nh);
            d.flags |= fragment;
            return Step::Done;
        }
        n += 1;
        let rest = payload.get(pos..).unwrap_or(&[]);
        if nh == ipproto::FRAGMENT {
            let f = match Ipv6FragHeader::new_checked(rest) {
                Ok(f) => f,
                Err(err) => {
                    v6_tuple(d, nh);
                    d.flags |= err_flag(err);
                    return Step::Done;
                }
            };
            nh = f.next_header();
            pos += Ipv6FragHeader::<&[u8]>::HEADER_LEN;
            // An atomic fragment (offset 0, M clear; RFC 6946) is not a fragment.
            if f.frag_offset() != 0 || f.more_frags() {
                fragment = flags::FRAGMENT;
                if f.frag_offset() != 0 {
                    v6_tuple(d, nh);
                    d.flags |= fragment;
                    return Step::Done;
                }
                first = true;
            }
        } else {
            let x = match Ipv6ExtHeader::new_checked(rest, nh) {
                Ok(x) => x,
                Err(err) => {
                    v6_tuple(d, nh);
                    d.flags |= err_flag(err);
                    return Step::Done;
                }
            };
            nh = x.next_header();
            pos += x.header_len();
        }
    }
    v6_tuple(d, nh);
    d.flags |= fragment;
    if first {
        d.flags |= flags::FIRST_FRAGMENT;
    }
    if nh == ipproto::NONE {
        return Step::Done;
    }
    if pos >= end {
        return Step::Done;
    }
    level(d).l4 = off16(pos);
    l4_step(cfg, frame, pos, end, nh, d)
}

/// Decodes the L4 header at `off` (datagram ends at `end`), reading ports and deciding on
/// tunnels. Fragments are never decapsulated.
#[inline(always)]
fn l4_step(
    cfg: &DissectConfig,
    frame: &[u8],
    off: usize,
    end: usize,
    proto: u8,
    d: &mut Dissection,
) -> Step {
    let buf = frame.get(off..end).unwrap_or(&[]);
    let is_frag = d.flags & flags::FRAGMENT != 0;
    let fail = |d: &mut Dissection, err: WireError| {
        d.flags |= err_flag(err);
        Step::Done
    };
    match proto {
        ipproto::UDP => {
            let u = match UdpHeader::new_checked(buf) {
                Ok(u) => u,
                Err(e) => return fail(d, e),
            };
            let (sp, dp) = (u.src_port(), u.dst_port());
            d.tuple.has_ports = true;
            d.tuple.src_port = sp;
            d.tuple.dst_port = dp;
            if is_frag {
                return Step::Done;
            }
            let inner = off + UdpHeader::<&[u8]>::HEADER_LEN;
            if dp == cfg.vxlan_port {
                let rest = frame.get(inner..end).unwrap_or(&[]);
                if VxlanHeader::new_checked(rest).is_ok() && enter_tunnel(cfg, d, TunnelKind::Vxlan)
                {
                    return Step::Eth(inner + VxlanHeader::<&[u8]>::HEADER_LEN, end);
                }
            } else if dp == cfg.gtpu_port {
                let rest = frame.get(inner..end).unwrap_or(&[]);
                // A payload that is not GTP-U is a plain UDP flow to that port.
                if let Ok(g) = GtpuHeader::new_checked(rest) {
                    if g.message_type() == GtpuHeader::<&[u8]>::MSG_TPDU
                        && enter_tunnel(cfg, d, TunnelKind::GtpU)
                    {
                        let p = inner + g.header_len();
                        let end = inner + g.payload_end();
                        return match frame.get(p).map(|b| b >> 4) {
                            Some(4) => Step::Ip4(p, end),
                            Some(6) => Step::Ip6(p, end),
                            _ => Step::Done,
                        };
                    }
                }
            }
            Step::Done
        }
        ipproto::TCP => match TcpHeader::new_checked(buf) {
            Ok(t) => {
                d.tuple.has_ports = true;
                d.tuple.src_port = t.src_port();
                d.tuple.dst_port = t.dst_port();
                Step::Done
            }
            Err(e) => fail(d, e),
        },
        ipproto::SCTP => match SctpHeader::new_checked(buf) {
            Ok(s) => {
                d.tuple.has_ports = true;
                d.tuple.src_port = s.src_port();
                d.tuple.dst_port = s.dst_port();
                Step::Done
            }
            Err(e) => fail(d, e),
        },
        ipproto::ICMP | ipproto::ICMPV6 => match IcmpHeader::new_checked(buf) {
            Ok(_) => Step::Done,
            Err(e) => fail(d, e),
        },
        _ if is_frag => Step::Done,
        ipproto::GRE => {
            let g = match GreHeader::new_checked(buf) {
                Ok(g) => g,
                Err(e) => return fail(d, e),
            };
            let p = off + g.header_len();
            let (kind, next) = match g.protocol() {
                ethertype::IPV4 => (TunnelKind::Gre, Step::Ip4(p, end)),
                ethertype::IPV6 => (TunnelKind::Gre, Step::Ip6(p, end)),
                ethertype::TEB => (TunnelKind::GreEth, Step::Eth(p, end)),
                _ => return Step::Done,
            };
            if enter_tunnel(cfg, d, kind) {
                next
            } else {
                Step::Done
            }
        }
        ipproto::IPIP => {
            if enter_tunnel(cfg, d, TunnelKind::IpInIp) {
                Step::Ip4(off, end)
            } else {
                Step::Done
            }
        }
        ipproto::IPV6 => {
            if enter_tunnel(cfg, d, TunnelKind::IpInIp) {
                Step::Ip6(off, end)
            } else {
                Step::Done
            }
        }
        _ => Step::Done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp4_frame(payload: usize, dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 42 + payload];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((28 + payload) as u16).to_be_bytes());
        f[23] = 17;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[34..36].copy_from_slice(&999u16.to_be_bytes());
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f
    }

    #[test]
    fn fast_path_takes_plain_udp_and_matches_the_walk() {
        let cfg = DissectConfig::default();
        let slow = DissectConfig {
            fast_path: false,
            ..cfg
        };
        let f = udp4_frame(18, 53);
        let mut d = Dissection::default();
        assert!(fast_path(&cfg, &f, &mut d));
        assert_eq!(d, dissect(&slow, &f));
        assert_eq!(d.tuple.dst_port, 53);
        // Tunnel ports, short frames and fragments go the general way.
        assert!(!fast_path(&cfg, &udp4_frame(18, 4789), &mut d));
        assert!(!fast_path(&cfg, &udp4_frame(4, 53), &mut d));
        let mut frag = udp4_frame(18, 53);
        frag[20] = 0x20;
        assert!(!fast_path(&cfg, &frag, &mut d));
    }
}
