//! The rules' view of a frame: Ethernet with up to two VLAN tags, IPv4, IPv6 (skipping the
//! common extension headers) and the TCP/UDP/SCTP ports, read through the checked header views
//! of [`crate::wire`] (the ones the soft-RSS dissector uses). Allocation-free, never fails.
//!
//! With soft-RSS workers the dispatcher has dissected the frame already and left the result in
//! the headroom ([`crate::softrss::RssMeta`]); [`Parsed::from_meta`] turns that into the same
//! [`Parsed`] without reading the headers again.

use crate::softrss::{flags, AddrKind, RssMeta};
use crate::wire::{
    ethertype, ipproto, EthernetFrame, Ipv4Packet, Ipv6ExtHeader, Ipv6FragHeader, Ipv6Packet,
    PortPair, VlanTag,
};

/// IP protocol numbers.
pub const PROTO_ICMP: u8 = 1;
/// TCP.
pub const PROTO_TCP: u8 = 6;
/// UDP.
pub const PROTO_UDP: u8 = 17;
/// ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;
/// SCTP.
pub const PROTO_SCTP: u8 = 132;

/// Network-layer addresses of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L3 {
    /// Not IP (or a truncated IP header).
    None,
    /// IPv4 source and destination, as host-order integers.
    V4 {
        /// Source.
        src: u32,
        /// Destination.
        dst: u32,
    },
    /// IPv6 source and destination, as host-order integers.
    V6 {
        /// Source.
        src: u128,
        /// Destination.
        dst: u128,
    },
}

/// What the parser found in a frame. Offsets are from the start of the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    /// Offset of the network header (after Ethernet and VLAN tags).
    pub l3_off: u16,
    /// Offset of the transport header, or `None` when there is none we can find (not IP, a
    /// non-first fragment, or an unparsed IPv6 extension header).
    pub l4_off: Option<u16>,
    /// Addresses.
    pub l3: L3,
    /// IP protocol number (the upper-layer protocol for IPv6); 0 when not IP.
    pub proto: u8,
    /// Source and destination ports, for TCP, UDP and SCTP with a complete port field.
    pub ports: Option<(u16, u16)>,
}

/// The common case in a straight line: untagged IPv4 without options, not a later fragment,
/// with both ports in the frame when it is TCP, UDP or SCTP. Its network header is at 14 and
/// its transport header at 34. [`Parsed::parse`] and the burst classifier's columns take it
/// before the general walk, which gives the same answer (tested).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlainV4 {
    pub(crate) proto: u8,
    pub(crate) src: u32,
    pub(crate) dst: u32,
    /// The first four transport bytes as two ports, whatever the protocol (see
    /// [`PlainV4::ports`]).
    pub(crate) sport: u16,
    pub(crate) dport: u16,
}

impl PlainV4 {
    /// The frame's headers, if it is the common case.
    #[inline(always)]
    pub(crate) fn read(frame: &[u8]) -> Option<PlainV4> {
        let h: &[u8; 38] = frame.get(..38)?.try_into().ok()?;
        // Bytes 12..15: EtherType 0x0800 and version 4 with a 20-byte header (byte 15, the
        // DSCP, is free); bytes 20..22: no more-fragments flag and fragment offset 0.
        let tag = u32::from_le_bytes([h[12], h[13], h[14], h[15]]) & 0x00ff_ffff;
        let frag = u16::from_le_bytes([h[20], h[21]]) & 0xff1f;
        if tag != 0x0045_0008 || frag != 0 {
            return None;
        }
        Some(PlainV4 {
            proto: h[23],
            src: u32::from_be_bytes([h[26], h[27], h[28], h[29]]),
            dst: u32::from_be_bytes([h[30], h[31], h[32], h[33]]),
            sport: u16::from_be_bytes([h[34], h[35]]),
            dport: u16::from_be_bytes([h[36], h[37]]),
        })
    }

    /// Whether the protocol carries ports (TCP, UDP, SCTP).
    #[inline(always)]
    pub(crate) fn ported(proto: u8) -> bool {
        matches!(proto, PROTO_TCP | PROTO_UDP | PROTO_SCTP)
    }

    /// The source and destination ports, for TCP, UDP and SCTP.
    #[inline(always)]
    pub(crate) fn ports(&self) -> Option<(u16, u16)> {
        Self::ported(self.proto).then_some((self.sport, self.dport))
    }
}

impl Parsed {
    /// What a frame that is not IP (or not parsed) looks like.
    pub const NOT_IP: Parsed = Parsed {
        l3_off: 14,
        l4_off: None,
        l3: L3::None,
        proto: 0,
        ports: None,
    };

    /// Parses `frame`. Never fails: what cannot be parsed is reported as absent.
    #[inline]
    pub fn parse(frame: &[u8]) -> Parsed {
        match PlainV4::read(frame) {
            Some(v) => Parsed {
                l3_off: 14,
                l4_off: Some(34),
                l3: L3::V4 {
                    src: v.src,
                    dst: v.dst,
                },
                proto: v.proto,
                ports: v.ports(),
            },
            None => Self::walk(frame),
        }
    }

    /// The general walk, header by header through the checked views ([`Parsed::parse`] takes
    /// a straight path for plain IPv4 first).
    pub fn walk(frame: &[u8]) -> Parsed {
        let mut out = Parsed::NOT_IP;
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return out;
        };
        let mut ether = eth.ethertype();
        let mut off = EthernetFrame::<&[u8]>::HEADER_LEN;
        for _ in 0..2 {
            if ether == ethertype::VLAN || ether == ethertype::QINQ {
                let Ok(tag) = VlanTag::new_checked(frame.get(off..).unwrap_or(&[])) else {
                    return out;
                };
                ether = tag.ethertype();
                off += VlanTag::<&[u8]>::HEADER_LEN;
            }
        }
        out.l3_off = off as u16;
        let rest = frame.get(off..).unwrap_or(&[]);
        let (proto, l4) = match ether {
            ethertype::IPV4 => {
                // Addresses and protocol count even when IHL or the total length are off (as
                // for libpcap's filters); there is then no transport header.
                let Ok(ip) = Ipv4Packet::new_checked_fixed(rest) else {
                    return out;
                };
                out.l3 = L3::V4 {
                    src: u32::from_be_bytes(ip.src_addr()),
                    dst: u32::from_be_bytes(ip.dst_addr()),
                };
                out.proto = ip.protocol();
                if ip.header_len() < Ipv4Packet::<&[u8]>::MIN_HEADER_LEN || ip.frag_offset() != 0 {
                    return out;
                }
                (ip.protocol(), off + ip.header_len())
            }
            ethertype::IPV6 => {
                let Ok(ip) = Ipv6Packet::new_checked(rest) else {
                    return out;
                };
                out.l3 = L3::V6 {
                    src: u128::from_be_bytes(ip.src_addr()),
                    dst: u128::from_be_bytes(ip.dst_addr()),
                };
                let mut next = ip.next_header();
                let mut at = off + Ipv6Packet::<&[u8]>::HEADER_LEN;
                // Hop-by-hop, routing, fragment and destination options; at most 4 of them.
                for _ in 0..4 {
                    let ext = frame.get(at..).unwrap_or(&[]);
                    match next {
                        ipproto::HOPOPT | ipproto::ROUTING | ipproto::DSTOPTS => {
                            let Ok(e) = Ipv6ExtHeader::new_checked(ext, next) else {
                                out.proto = next;
                                return out;
                            };
                            next = e.next_header();
                            at += e.header_len();
                        }
                        ipproto::FRAGMENT => {
                            let Ok(e) = Ipv6FragHeader::new_checked(ext) else {
                                out.proto = next;
                                return out;
                            };
                            next = e.next_header();
                            if e.frag_offset() != 0 {
                                out.proto = next;
                                return out;
                            }
                            at += Ipv6FragHeader::<&[u8]>::HEADER_LEN;
                        }
                        _ => break,
                    }
                }
                out.proto = next;
                if matches!(
                    next,
                    ipproto::HOPOPT | ipproto::ROUTING | ipproto::FRAGMENT | ipproto::DSTOPTS
                ) {
                    return out;
                }
                (next, at)
            }
            _ => return out,
        };
        if l4 > frame.len() || l4 > usize::from(u16::MAX) {
            return out;
        }
        out.l4_off = Some(l4 as u16);
        if matches!(proto, PROTO_TCP | PROTO_UDP | PROTO_SCTP) {
            if let Ok(pp) = PortPair::new_checked(&frame[l4..]) {
                out.ports = Some((pp.src_port(), pp.dst_port()));
            }
        }
        out
    }

    /// The parse the soft-RSS dispatcher already did, read from the headroom record `meta` it
    /// wrote for this `frame`, without reading the headers again. Falls back to
    /// [`Parsed::parse`] for what the record does not carry in the rules' terms: tunnels, VLAN
    /// tags, PPPoE, fragments, truncated or malformed headers, IPv6 extension headers, frames
    /// without ports. Gives the same result as [`Parsed::parse`] (tested).
    #[inline]
    pub fn from_meta(meta: &RssMeta, frame: &[u8]) -> Parsed {
        const UNUSUAL: u16 = flags::FRAGMENT
            | flags::TRUNCATED
            | flags::MALFORMED
            | flags::DEPTH_LIMIT
            | flags::EXT_LIMIT
            | flags::VLAN
            | flags::PPPOE
            | flags::INNER_UNDECODED;
        let plain = meta.tunnel_depth == 0
            && meta.flags & (UNUSUAL | flags::HAS_PORTS) == flags::HAS_PORTS
            && meta.outer_l3 == 14
            && matches!(meta.l4_proto, PROTO_TCP | PROTO_UDP | PROTO_SCTP)
            && usize::from(meta.outer_l4) + 4 <= frame.len();
        let (s, d) = (&meta.src, &meta.dst);
        let l3 = match meta.addr_kind {
            k if plain && k == AddrKind::Ipv4 as u8 && (34..=74).contains(&meta.outer_l4) => {
                L3::V4 {
                    src: u32::from_be_bytes([s[0], s[1], s[2], s[3]]),
                    dst: u32::from_be_bytes([d[0], d[1], d[2], d[3]]),
                }
            }
            k if plain && k == AddrKind::Ipv6 as u8 && meta.outer_l4 == 54 => L3::V6 {
                src: u128::from_be_bytes(*s),
                dst: u128::from_be_bytes(*d),
            },
            _ => return Self::parse(frame),
        };
        Parsed {
            l3_off: 14,
            l4_off: Some(meta.outer_l4),
            l3,
            proto: meta.l4_proto,
            ports: Some((meta.src_port, meta.dst_port)),
        }
    }
}
