//! The built-in matchers: protocol, address prefixes, ports, frame length, bytes at an offset,
//! and classic BPF.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use super::parse::{Parsed, L3, PROTO_ICMP, PROTO_ICMPV6};
use crate::bpf::CompiledBpf;

/// An address prefix, IPv4 or IPv6, e.g. `192.0.2.0/24` or `2001:db8::/32`. A bare address is a
/// host prefix (/32 or /128). Host bits below the prefix are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length.
    pub len: u8,
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{a:?} is not an IPv4 or IPv6 address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            None => max,
            Some(l) => match l.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => {
                    return Err(format!(
                        "prefix length {l:?} is not a number from 0 to {max}"
                    ))
                }
            },
        };
        Ok(Cidr { addr, len })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// A set of IPv4 and IPv6 prefixes, stored as sorted, merged address ranges so that a lookup
/// is one binary search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

fn merge<T: Ord + Copy>(mut r: Vec<(T, T)>, succ: impl Fn(T) -> Option<T>) -> Vec<(T, T)> {
    r.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(r.len());
    for (lo, hi) in r {
        if let Some(last) = out.last_mut() {
            // Overlapping or adjacent: extend.
            let touches = match succ(last.1) {
                None => true,
                Some(n) => lo <= n,
            };
            if touches {
                if hi > last.1 {
                    last.1 = hi;
                }
                continue;
            }
        }
        out.push((lo, hi));
    }
    out
}

impl CidrSet {
    /// Builds a set from prefixes.
    pub fn new(prefixes: &[Cidr]) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for c in prefixes {
            match c.addr {
                IpAddr::V4(a) => {
                    let mask = if c.len == 0 {
                        0
                    } else {
                        u32::MAX << (32 - u32::from(c.len))
                    };
                    let lo = u32::from(a) & mask;
                    v4.push((lo, lo | !mask));
                }
                IpAddr::V6(a) => {
                    let mask = if c.len == 0 {
                        0
                    } else {
                        u128::MAX << (128 - u32::from(c.len))
                    };
                    let lo = u128::from(a) & mask;
                    v6.push((lo, lo | !mask));
                }
            }
        }
        CidrSet {
            v4: merge(v4, |x: u32| x.checked_add(1)),
            v6: merge(v6, |x: u128| x.checked_add(1)),
        }
    }

    /// `true` when the IPv4 address (host order) is in the set.
    #[inline]
    pub fn contains_v4(&self, a: u32) -> bool {
        let i = self.v4.partition_point(|r| r.1 < a);
        self.v4.get(i).is_some_and(|r| r.0 <= a)
    }

    /// `true` when the IPv6 address (host order) is in the set.
    #[inline]
    pub fn contains_v6(&self, a: u128) -> bool {
        let i = self.v6.partition_point(|r| r.1 < a);
        self.v6.get(i).is_some_and(|r| r.0 <= a)
    }

    /// `true` when `addr` is in the set.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.contains_v4(a.into()),
            IpAddr::V6(a) => self.contains_v6(a.into()),
        }
    }

    /// `true` when the set holds any IPv6 prefix (`v6`) or any IPv4 prefix (`!v6`).
    pub(crate) fn has_family(&self, v6: bool) -> bool {
        if v6 {
            !self.v6.is_empty()
        } else {
            !self.v4.is_empty()
        }
    }

    /// The merged IPv4 ranges, ascending.
    pub(crate) fn v4_ranges(&self) -> &[(u32, u32)] {
        &self.v4
    }

    /// Number of merged ranges (IPv4 + IPv6).
    pub fn ranges(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

/// A set of 16-bit ports, as a 65536-bit bitmap (8 KiB).
#[derive(Clone, PartialEq, Eq)]
pub struct PortSet {
    bits: Box<[u64; 1024]>,
}

impl fmt::Debug for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n: u32 = self.bits.iter().map(|w| w.count_ones()).sum();
        write!(f, "PortSet({n} ports)")
    }
}

impl PortSet {
    /// Builds a set from inclusive ranges.
    pub fn new(ranges: &[(u16, u16)]) -> Self {
        let mut bits = Box::new([0u64; 1024]);
        for &(lo, hi) in ranges {
            for p in lo..=hi {
                bits[usize::from(p >> 6)] |= 1 << (p & 63);
            }
        }
        PortSet { bits }
    }

    /// `true` when `port` is in the set.
    #[inline]
    pub fn contains(&self, port: u16) -> bool {
        self.bits[usize::from(port >> 6)] & (1 << (port & 63)) != 0
    }

    /// The set as inclusive ranges, ascending, or `None` when it needs more than `max`.
    pub(crate) fn as_ranges(&self, max: usize) -> Option<Vec<(u16, u16)>> {
        let mut out: Vec<(u16, u16)> = Vec::new();
        let mut start: Option<u16> = None;
        for p in 0..=u16::MAX {
            match (self.contains(p), start) {
                (true, None) => start = Some(p),
                (false, Some(s)) => {
                    out.push((s, p - 1));
                    start = None;
                }
                _ => {}
            }
            if out.len() > max {
                return None;
            }
        }
        if let Some(s) = start {
            out.push((s, u16::MAX));
        }
        (out.len() <= max).then_some(out)
    }
}

/// Parses a port or port range: `53`, `"1024-65535"`.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let num = |t: &str| {
        t.trim()
            .parse::<u16>()
            .map_err(|_| format!("{t:?} is not a port number (0 to 65535)"))
    };
    match s.split_once('-') {
        None => {
            let p = num(s)?;
            Ok((p, p))
        }
        Some((a, b)) => {
            let (lo, hi) = (num(a)?, num(b)?);
            if lo > hi {
                return Err(format!("port range {s:?} is empty (start above end)"));
            }
            Ok((lo, hi))
        }
    }
}

/// Which IP protocols a rule matches; ICMP means ICMP for IPv4 and ICMPv6 for IPv6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoSet {
    v4: [u64; 4],
    v6: [u64; 4],
}

/// A protocol name as written in rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// ICMP (IPv4) and ICMPv6 (IPv6).
    Icmp,
    /// SCTP.
    Sctp,
    /// Any IP protocol number.
    Number(u8),
}

impl FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "udp" => Proto::Udp,
            "tcp" => Proto::Tcp,
            "icmp" | "icmp6" | "icmpv6" => Proto::Icmp,
            "sctp" => Proto::Sctp,
            other => Proto::Number(other.parse().map_err(|_| {
                format!(
                    "unknown protocol {s:?} (expected udp, tcp, icmp, sctp, any or a number 0-255)"
                )
            })?),
        })
    }
}

impl ProtoSet {
    /// Builds a set from protocol names.
    pub fn new(protos: &[Proto]) -> Self {
        let mut s = ProtoSet {
            v4: [0; 4],
            v6: [0; 4],
        };
        let mut add = |v4: u8, v6: u8| {
            s.v4[usize::from(v4 >> 6)] |= 1 << (v4 & 63);
            s.v6[usize::from(v6 >> 6)] |= 1 << (v6 & 63);
        };
        for p in protos {
            match p {
                Proto::Udp => add(17, 17),
                Proto::Tcp => add(6, 6),
                Proto::Sctp => add(132, 132),
                Proto::Icmp => add(PROTO_ICMP, PROTO_ICMPV6),
                Proto::Number(n) => add(*n, *n),
            }
        }
        s
    }

    /// The one protocol number the set holds for both families, if it is that simple.
    pub(crate) fn single(&self) -> Option<u8> {
        let ones = |w: &[u64; 4]| w.iter().map(|x| x.count_ones()).sum::<u32>();
        if self.v4 != self.v6 || ones(&self.v4) != 1 {
            return None;
        }
        (0..=u8::MAX).find(|&p| self.contains(false, p))
    }

    /// The protocol numbers of the set when both families hold the same ones and there are at
    /// most `max` of them.
    pub(crate) fn few(&self, max: usize) -> Option<Vec<u8>> {
        if self.v4 != self.v6 {
            return None;
        }
        let all: Vec<u8> = (0..=u8::MAX).filter(|&p| self.contains(false, p)).collect();
        (all.len() <= max).then_some(all)
    }

    /// `true` when protocol `proto` of the IPv6 (`v6`) or IPv4 family is in the set.
    #[inline]
    pub(crate) fn contains(&self, v6: bool, proto: u8) -> bool {
        let set = if v6 { &self.v6 } else { &self.v4 };
        set[usize::from(proto >> 6)] & (1 << (proto & 63)) != 0
    }

    #[inline]
    fn matches(&self, p: &Parsed) -> bool {
        let set = match p.l3 {
            L3::V4 { .. } => &self.v4,
            L3::V6 { .. } => &self.v6,
            L3::None => return false,
        };
        set[usize::from(p.proto >> 6)] & (1 << (p.proto & 63)) != 0
    }
}

/// Where a [`ByteMatch`] offset counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// The start of the Ethernet frame.
    L2,
    /// The network header (after VLAN tags).
    L3,
    /// The transport header (requires an IP packet whose transport header was found).
    L4,
}

/// Compares up to 16 bytes at an offset under a mask: `(frame[off + i] & mask[i]) == value[i]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByteMatch {
    layer: Layer,
    offset: u16,
    len: u8,
    value: [u8; 16],
    mask: [u8; 16],
}

impl ByteMatch {
    /// Longest value a byte matcher accepts.
    pub const MAX_LEN: usize = 16;

    /// Builds a byte matcher; `mask` defaults to all ones and must have `value`'s length.
    pub fn new(
        layer: Layer,
        offset: u16,
        value: &[u8],
        mask: Option<&[u8]>,
    ) -> Result<Self, String> {
        if value.is_empty() || value.len() > Self::MAX_LEN {
            return Err(format!(
                "value has {} bytes; 1 to {} are allowed",
                value.len(),
                Self::MAX_LEN
            ));
        }
        let mut v = [0u8; 16];
        let mut m = [0u8; 16];
        match mask {
            Some(mask) if mask.len() != value.len() => {
                return Err(format!(
                    "mask has {} bytes but value has {}",
                    mask.len(),
                    value.len()
                ))
            }
            Some(mask) => m[..mask.len()].copy_from_slice(mask),
            None => m[..value.len()].fill(0xff),
        }
        for i in 0..value.len() {
            v[i] = value[i] & m[i];
        }
        Ok(ByteMatch {
            layer,
            offset,
            len: value.len() as u8,
            value: v,
            mask: m,
        })
    }

    /// Layer, offset, value and mask (each `len` bytes; the value already masked).
    pub(crate) fn parts(&self) -> (Layer, u16, &[u8], &[u8]) {
        let n = usize::from(self.len);
        (self.layer, self.offset, &self.value[..n], &self.mask[..n])
    }

    #[inline]
    fn matches(&self, frame: &[u8], p: &Parsed) -> bool {
        let base = match self.layer {
            Layer::L2 => 0,
            Layer::L3 => usize::from(p.l3_off),
            Layer::L4 => match p.l4_off {
                Some(o) => usize::from(o),
                None => return false,
            },
        };
        let start = base + usize::from(self.offset);
        let n = usize::from(self.len);
        let Some(bytes) = frame.get(start..start + n) else {
            return false;
        };
        bytes
            .iter()
            .zip(&self.mask[..n])
            .zip(&self.value[..n])
            .all(|((b, m), v)| b & m == *v)
    }
}

/// One condition of a rule. A rule matches when all of its matchers do.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// IP protocol.
    Proto(ProtoSet),
    /// IPv4 only (`true`) or IPv6 only (`false`).
    Ipv4(bool),
    /// Source address in the set.
    Src(CidrSet),
    /// Destination address in the set.
    Dst(CidrSet),
    /// Source port in the set (TCP, UDP, SCTP; never matches fragments after the first).
    SrcPort(PortSet),
    /// Destination port in the set.
    DstPort(PortSet),
    /// Frame length (wire length, in bytes, without FCS) in one of the inclusive ranges.
    Len(Vec<(u32, u32)>),
    /// Bytes at an offset under a mask.
    Bytes(ByteMatch),
    /// A validated classic BPF program (compiled to native code where possible); matches when
    /// it returns non-zero.
    Bpf(Arc<CompiledBpf>),
}

impl Matcher {
    /// `true` when the matcher needs the parsed headers.
    pub(crate) fn needs_parse(&self) -> bool {
        !matches!(self, Matcher::Len(_) | Matcher::Bpf(_))
    }

    /// Evaluates the matcher on `frame` (with its wire length and parsed headers).
    #[inline]
    pub fn matches(&self, frame: &[u8], wire_len: u32, p: &Parsed) -> bool {
        match self {
            Matcher::Proto(s) => s.matches(p),
            Matcher::Ipv4(v4) => match p.l3 {
                L3::V4 { .. } => *v4,
                L3::V6 { .. } => !*v4,
                L3::None => false,
            },
            Matcher::Src(s) => match p.l3 {
                L3::V4 { src, .. } => s.contains_v4(src),
                L3::V6 { src, .. } => s.contains_v6(src),
                L3::None => false,
            },
            Matcher::Dst(s) => match p.l3 {
                L3::V4 { dst, .. } => s.contains_v4(dst),
                L3::V6 { dst, .. } => s.contains_v6(dst),
                L3::None => false,
            },
            Matcher::SrcPort(s) => p.ports.is_some_and(|(sp, _)| s.contains(sp)),
            Matcher::DstPort(s) => p.ports.is_some_and(|(_, dp)| s.contains(dp)),
            Matcher::Len(r) => r.iter().any(|&(lo, hi)| lo <= wire_len && wire_len <= hi),
            Matcher::Bytes(b) => b.matches(frame, p),
            Matcher::Bpf(prog) => prog.run_with_len(frame, wire_len) != 0,
        }
    }
}
