//! A small, allocation-free header parser for the built-in matchers: Ethernet with up to two VLAN
//! tags, IPv4, IPv6 (skipping the common extension headers) and the TCP/UDP/SCTP ports.

/// Ethertypes.
const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88a8;

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

#[inline(always)]
fn be16(p: &[u8], at: usize) -> Option<u16> {
    let b = p.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

impl Parsed {
    /// Parses `frame`. Never fails: what cannot be parsed is reported as absent.
    #[inline]
    pub fn parse(frame: &[u8]) -> Parsed {
        let mut out = Parsed {
            l3_off: 14,
            l4_off: None,
            l3: L3::None,
            proto: 0,
            ports: None,
        };
        let Some(mut ethertype) = be16(frame, 12) else {
            return out;
        };
        let mut off = 14usize;
        for _ in 0..2 {
            if ethertype == ETH_VLAN || ethertype == ETH_QINQ {
                let Some(t) = be16(frame, off + 2) else {
                    return out;
                };
                ethertype = t;
                off += 4;
            }
        }
        out.l3_off = off as u16;
        let (proto, l4) = match ethertype {
            ETH_IPV4 => {
                let Some(h) = frame.get(off..off + 20) else {
                    return out;
                };
                if h[0] >> 4 != 4 {
                    return out;
                }
                let ihl = usize::from(h[0] & 0x0f) * 4;
                out.l3 = L3::V4 {
                    src: u32::from_be_bytes([h[12], h[13], h[14], h[15]]),
                    dst: u32::from_be_bytes([h[16], h[17], h[18], h[19]]),
                };
                out.proto = h[9];
                let frag_off = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
                if ihl < 20 || frag_off != 0 {
                    return out;
                }
                (h[9], off + ihl)
            }
            ETH_IPV6 => {
                let Some(h) = frame.get(off..off + 40) else {
                    return out;
                };
                if h[0] >> 4 != 6 {
                    return out;
                }
                let mut a = [0u8; 16];
                a.copy_from_slice(&h[8..24]);
                let src = u128::from_be_bytes(a);
                a.copy_from_slice(&h[24..40]);
                let dst = u128::from_be_bytes(a);
                out.l3 = L3::V6 { src, dst };
                let mut next = h[6];
                let mut at = off + 40;
                // Hop-by-hop, routing, fragment and destination options; at most 4 of them.
                for _ in 0..4 {
                    match next {
                        0 | 43 | 60 => {
                            let Some(e) = frame.get(at..at + 2) else {
                                out.proto = next;
                                return out;
                            };
                            next = e[0];
                            at += (usize::from(e[1]) + 1) * 8;
                        }
                        44 => {
                            let Some(e) = frame.get(at..at + 8) else {
                                out.proto = next;
                                return out;
                            };
                            next = e[0];
                            let frag_off = u16::from_be_bytes([e[2], e[3]]) >> 3;
                            if frag_off != 0 {
                                out.proto = next;
                                return out;
                            }
                            at += 8;
                        }
                        _ => break,
                    }
                }
                out.proto = next;
                if matches!(next, 0 | 43 | 44 | 60) {
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
            if let (Some(s), Some(d)) = (be16(frame, l4), be16(frame, l4 + 2)) {
                out.ports = Some((s, d));
            }
        }
        out
    }
}
