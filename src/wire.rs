//! Typed views over packet bytes, in the style of smoltcp's `wire` module: the one set of
//! header views the daemon parses with (the soft-RSS dissector and the rules' parser,
//! [`crate::filter::Parsed`]).
//!
//! Every view wraps a byte buffer (`T: AsRef<[u8]>`). `new_checked` verifies once that the
//! buffer holds the whole fixed header (and, for variable-length headers, the whole header
//! including options) and that the fields the dissector relies on are sane. After that, the
//! field accessors read at fixed offsets inside the checked length and never fail.
//!
//! Nothing here allocates or panics on any input.

use thiserror::Error;

/// Why a header could not be viewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum WireError {
    /// The buffer ends inside the header.
    #[error("{layer} header truncated: needs {need} bytes, only {have} present")]
    Truncated {
        /// Protocol layer (e.g. "IPv4").
        layer: &'static str,
        /// Bytes the header needs.
        need: usize,
        /// Bytes the buffer has.
        have: usize,
    },
    /// A field has a value the layer cannot be decoded with.
    #[error("{layer} header malformed: {reason}")]
    Malformed {
        /// Protocol layer (e.g. "GRE").
        layer: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

/// EtherType values the dissector understands.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// IPv6.
    pub const IPV6: u16 = 0x86DD;
    /// 802.1Q customer VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service VLAN tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88A8;
    /// PPPoE session stage.
    pub const PPPOE_SESSION: u16 = 0x8864;
    /// Transparent Ethernet bridging (GRE payload type for an inner Ethernet frame).
    pub const TEB: u16 = 0x6558;
}

/// IP protocol / IPv6 next-header numbers the dissector understands.
pub mod ipproto {
    /// IPv6 hop-by-hop options.
    pub const HOPOPT: u8 = 0;
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// IPv4 encapsulation (IP-in-IP).
    pub const IPIP: u8 = 4;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 encapsulation.
    pub const IPV6: u8 = 41;
    /// IPv6 routing header.
    pub const ROUTING: u8 = 43;
    /// IPv6 fragment header.
    pub const FRAGMENT: u8 = 44;
    /// GRE.
    pub const GRE: u8 = 47;
    /// IPsec authentication header.
    pub const AH: u8 = 51;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 no next header.
    pub const NONE: u8 = 59;
    /// IPv6 destination options.
    pub const DSTOPTS: u8 = 60;
    /// SCTP.
    pub const SCTP: u8 = 132;
}

/// PPP protocol numbers carried in PPPoE sessions.
pub mod pppproto {
    /// IPv4.
    pub const IPV4: u16 = 0x0021;
    /// IPv6.
    pub const IPV6: u16 = 0x0057;
}

#[inline(always)]
fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

#[inline(always)]
fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

#[inline(always)]
fn need(layer: &'static str, buf: &[u8], n: usize) -> Result<(), WireError> {
    if buf.len() < n {
        Err(WireError::Truncated {
            layer,
            need: n,
            have: buf.len(),
        })
    } else {
        Ok(())
    }
}

#[inline(always)]
fn bad(layer: &'static str, reason: &'static str) -> WireError {
    WireError::Malformed { layer, reason }
}

// ---------------------------------------------------------------------------------------------

/// An Ethernet II frame header (14 bytes).
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Header length.
    pub const HEADER_LEN: usize = 14;

    /// Wraps `buffer` after checking it holds the header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        need("Ethernet", buffer.as_ref(), Self::HEADER_LEN)?;
        Ok(EthernetFrame { buffer })
    }
    /// Destination MAC address.
    #[inline]
    pub fn dst_addr(&self) -> [u8; 6] {
        let b = self.buffer.as_ref();
        [b[0], b[1], b[2], b[3], b[4], b[5]]
    }
    /// Source MAC address.
    #[inline]
    pub fn src_addr(&self) -> [u8; 6] {
        let b = self.buffer.as_ref();
        [b[6], b[7], b[8], b[9], b[10], b[11]]
    }
    /// EtherType (or the TPID of a first VLAN tag).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), 12)
    }
}

/// One 802.1Q / 802.1ad tag as it follows a TPID: TCI and the next EtherType (4 bytes).
#[derive(Debug, Clone, Copy)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    /// Length of the TCI plus the following EtherType.
    pub const HEADER_LEN: usize = 4;

    /// Wraps `buffer` (starting at the TCI) after checking it holds the tag.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        need("802.1Q", buffer.as_ref(), Self::HEADER_LEN)?;
        Ok(VlanTag { buffer })
    }
    /// VLAN identifier (12 bits).
    #[inline]
    pub fn vid(&self) -> u16 {
        be16(self.buffer.as_ref(), 0) & 0x0FFF
    }
    /// Priority code point (3 bits).
    #[inline]
    pub fn pcp(&self) -> u8 {
        self.buffer.as_ref()[0] >> 5
    }
    /// EtherType of what follows the tag.
    #[inline]
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }
}

/// PPPoE session header plus the PPP protocol field (8 bytes), RFC 2516.
#[derive(Debug, Clone, Copy)]
pub struct PppoeSession<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> PppoeSession<T> {
    /// PPPoE header (6) plus PPP protocol (2).
    pub const HEADER_LEN: usize = 8;

    /// Wraps `buffer` after checking length, version/type 1/1, code 0 and the length field.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        need("PPPoE", b, Self::HEADER_LEN)?;
        if b[0] != 0x11 {
            return Err(bad("PPPoE", "version/type is not 1/1"));
        }
        if b[1] != 0 {
            return Err(bad("PPPoE", "session-stage code is not 0"));
        }
        if be16(b, 4) < 2 {
            return Err(bad("PPPoE", "length shorter than the PPP protocol field"));
        }
        Ok(PppoeSession { buffer })
    }
    /// Session identifier.
    #[inline]
    pub fn session_id(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }
    /// PPPoE payload length (PPP protocol field plus PPP payload).
    #[inline]
    pub fn length(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }
    /// PPP protocol number.
    #[inline]
    pub fn ppp_protocol(&self) -> u16 {
        be16(self.buffer.as_ref(), 6)
    }
}

/// An IPv4 header with options (RFC 791).
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Minimum header length.
    pub const MIN_HEADER_LEN: usize = 20;

    /// Wraps `buffer` after checking the version, IHL >= 5, the whole header with options, and
    /// total length >= header length. A total length beyond the buffer is allowed (truncated
    /// capture); see [`Ipv4Packet::is_truncated`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        need("IPv4", b, Self::MIN_HEADER_LEN)?;
        if b[0] >> 4 != 4 {
            return Err(bad("IPv4", "version is not 4"));
        }
        let hl = usize::from(b[0] & 0x0F) * 4;
        if hl < Self::MIN_HEADER_LEN {
            return Err(bad("IPv4", "IHL below 5"));
        }
        need("IPv4", b, hl)?;
        if usize::from(be16(b, 2)) < hl {
            return Err(bad("IPv4", "total length below header length"));
        }
        Ok(Ipv4Packet { buffer })
    }
    /// Wraps `buffer` after checking only the version and the fixed 20-byte header: what the
    /// filter rules read (addresses, protocol, fragment offset) is then in range, whatever IHL
    /// and total length say. The caller checks [`Ipv4Packet::header_len`] before using it.
    #[inline]
    pub fn new_checked_fixed(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        need("IPv4", b, Self::MIN_HEADER_LEN)?;
        if b[0] >> 4 != 4 {
            return Err(bad("IPv4", "version is not 4"));
        }
        Ok(Ipv4Packet { buffer })
    }
    /// Header length in bytes, options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[0] & 0x0F) * 4
    }
    /// Total length field.
    #[inline]
    pub fn total_len(&self) -> usize {
        usize::from(be16(self.buffer.as_ref(), 2))
    }
    /// Identification field.
    #[inline]
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }
    /// Don't-fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.buffer.as_ref()[6] & 0x40 != 0
    }
    /// More-fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.buffer.as_ref()[6] & 0x20 != 0
    }
    /// Fragment offset in 8-byte units.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        be16(self.buffer.as_ref(), 6) & 0x1FFF
    }
    /// Whether this is any piece of a fragmented datagram (MF set or offset non-zero).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        be16(self.buffer.as_ref(), 6) & 0x3FFF != 0
    }
    /// Protocol of the payload.
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[9]
    }
    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> [u8; 4] {
        let b = self.buffer.as_ref();
        [b[12], b[13], b[14], b[15]]
    }
    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> [u8; 4] {
        let b = self.buffer.as_ref();
        [b[16], b[17], b[18], b[19]]
    }
    /// Whether the total length claims more bytes than the buffer holds.
    #[inline]
    pub fn is_truncated(&self) -> bool {
        self.total_len() > self.buffer.as_ref().len()
    }
    /// End of the datagram inside the buffer: total length, capped at the buffer (drops
    /// Ethernet padding).
    #[inline]
    pub fn payload_end(&self) -> usize {
        self.total_len().min(self.buffer.as_ref().len())
    }
}

/// The fixed IPv6 header (RFC 8200).
#[derive(Debug, Clone, Copy)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Fixed header length.
    pub const HEADER_LEN: usize = 40;

    /// Wraps `buffer` after checking the version and the fixed header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        need("IPv6", b, Self::HEADER_LEN)?;
        if b[0] >> 4 != 6 {
            return Err(bad("IPv6", "version is not 6"));
        }
        Ok(Ipv6Packet { buffer })
    }
    /// Payload length field (0 for a jumbogram).
    #[inline]
    pub fn payload_len(&self) -> usize {
        usize::from(be16(self.buffer.as_ref(), 4))
    }
    /// First next-header value.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[6]
    }
    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[7]
    }
    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> [u8; 16] {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[8..24]);
        a
    }
    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> [u8; 16] {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[24..40]);
        a
    }
    /// Whether the payload length claims more bytes than the buffer holds.
    #[inline]
    pub fn is_truncated(&self) -> bool {
        Self::HEADER_LEN + self.payload_len() > self.buffer.as_ref().len()
    }
    /// End of the datagram inside the buffer (payload length 0 means "to the end").
    #[inline]
    pub fn payload_end(&self) -> usize {
        let len = self.buffer.as_ref().len();
        match self.payload_len() {
            0 => len,
            n => (Self::HEADER_LEN + n).min(len),
        }
    }
}

/// An IPv6 extension header with the common layout: hop-by-hop, routing, destination options
/// (length in 8-byte units beyond the first 8) or AH (length in 4-byte units beyond the first 8).
#[derive(Debug, Clone, Copy)]
pub struct Ipv6ExtHeader<T: AsRef<[u8]>> {
    buffer: T,
    len: usize,
}

impl<T: AsRef<[u8]>> Ipv6ExtHeader<T> {
    /// Wraps `buffer` holding an extension header of type `kind` (an [`ipproto`] value).
    #[inline]
    pub fn new_checked(buffer: T, kind: u8) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        need("IPv6 extension", b, 8)?;
        let len = if kind == ipproto::AH {
            (usize::from(b[1]) + 2) * 4
        } else {
            (usize::from(b[1]) + 1) * 8
        };
        need("IPv6 extension", b, len)?;
        Ok(Ipv6ExtHeader { buffer, len })
    }
    /// Next header after this one.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[0]
    }
    /// Length of this header in bytes.
    #[inline]
    pub fn header_len(&self) -> usize {
        self.len
    }
}

/// The IPv6 fragment header (8 bytes).
#[derive(Debug, Clone, Copy)]
pub struct Ipv6FragHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6FragHeader<T> {
    /// Header length.
    pub const HEADER_LEN: usize = 8;

    /// Wraps `buffer` after checking it holds the header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        need("IPv6 fragment", buffer.as_ref(), Self::HEADER_LEN)?;
        Ok(Ipv6FragHeader { buffer })
    }
    /// Next header of the fragmentable part.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[0]
    }
    /// Fragment offset in 8-byte units.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        be16(self.buffer.as_ref(), 2) >> 3
    }
    /// More-fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.buffer.as_ref()[3] & 1 != 0
    }
    /// Identification.
    #[inline]
    pub fn ident(&self) -> u32 {
        be32(self.buffer.as_ref(), 4)
    }
}

/// A GRE header (RFC 2784 with the RFC 2890 key and sequence extensions).
#[derive(Debug, Clone, Copy)]
pub struct GreHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GreHeader<T> {
    const C: u16 = 0x8000;
    const R: u16 = 0x4000;
    const K: u16 = 0x2000;
    const S: u16 = 0x1000;
    const SSR: u16 = 0x0800;

    /// Wraps `buffer` after checking version 0, no RFC 1701 routing bits, and that the optional
    /// checksum, key and sequence words are present.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        need("GRE", b, 4)?;
        let f = be16(b, 0);
        if f & 0x0007 != 0 {
            return Err(bad("GRE", "version is not 0"));
        }
        if f & (Self::R | Self::SSR) != 0 {
            return Err(bad("GRE", "RFC 1701 routing bits set"));
        }
        let g = GreHeader { buffer };
        need("GRE", g.buffer.as_ref(), g.header_len())?;
        Ok(g)
    }
    #[inline]
    fn flags(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }
    /// Checksum present (C bit).
    #[inline]
    pub fn has_checksum(&self) -> bool {
        self.flags() & Self::C != 0
    }
    /// Key present (K bit).
    #[inline]
    pub fn has_key(&self) -> bool {
        self.flags() & Self::K != 0
    }
    /// Sequence number present (S bit).
    #[inline]
    pub fn has_seq(&self) -> bool {
        self.flags() & Self::S != 0
    }
    /// Header length: 4, plus 4 for each of checksum, key, sequence.
    #[inline]
    pub fn header_len(&self) -> usize {
        4 + 4 * (self.has_checksum() as usize + self.has_key() as usize + self.has_seq() as usize)
    }
    /// Payload protocol type (an EtherType).
    #[inline]
    pub fn protocol(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }
    /// Key, if present.
    #[inline]
    pub fn key(&self) -> Option<u32> {
        self.has_key()
            .then(|| be32(self.buffer.as_ref(), 4 + 4 * self.has_checksum() as usize))
    }
    /// Sequence number, if present.
    #[inline]
    pub fn seq(&self) -> Option<u32> {
        self.has_seq().then(|| {
            be32(
                self.buffer.as_ref(),
                4 + 4 * (self.has_checksum() as usize + self.has_key() as usize),
            )
        })
    }
}

/// A GTP-U header (3GPP TS 29.281) with its optional fields and extension-header chain.
#[derive(Debug, Clone, Copy)]
pub struct GtpuHeader<T: AsRef<[u8]>> {
    buffer: T,
    len: usize,
}

impl<T: AsRef<[u8]>> GtpuHeader<T> {
    /// Mandatory part.
    pub const MIN_HEADER_LEN: usize = 8;
    /// Extension headers followed at most.
    pub const MAX_EXT_HEADERS: usize = 8;
    /// Message type of a T-PDU (user payload).
    pub const MSG_TPDU: u8 = 0xFF;

    /// Wraps `buffer` after checking version 1, protocol type GTP, the optional 4-byte block
    /// when any of E/S/PN is set, and the extension-header chain (bounded, each non-empty and
    /// inside the buffer and inside the length field).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        need("GTP-U", b, Self::MIN_HEADER_LEN)?;
        if b[0] >> 5 != 1 {
            return Err(bad("GTP-U", "version is not 1"));
        }
        if b[0] & 0x10 == 0 {
            return Err(bad("GTP-U", "protocol type is GTP'"));
        }
        let mut len = Self::MIN_HEADER_LEN;
        if b[0] & 0x07 != 0 {
            len += 4;
            need("GTP-U", b, len)?;
            if b[0] & 0x04 != 0 {
                let mut next = b[11];
                let mut n = 0;
                while next != 0 {
                    n += 1;
                    if n > Self::MAX_EXT_HEADERS {
                        return Err(bad("GTP-U", "too many extension headers"));
                    }
                    need("GTP-U", b, len + 1)?;
                    let ext = usize::from(b[len]) * 4;
                    if ext == 0 {
                        return Err(bad("GTP-U", "extension header of length 0"));
                    }
                    need("GTP-U", b, len + ext)?;
                    next = b[len + ext - 1];
                    len += ext;
                }
            }
        }
        if len > Self::MIN_HEADER_LEN + usize::from(be16(b, 2)) {
            return Err(bad("GTP-U", "length field shorter than the header"));
        }
        Ok(GtpuHeader { buffer, len })
    }
    /// Message type (0xFF = T-PDU).
    #[inline]
    pub fn message_type(&self) -> u8 {
        self.buffer.as_ref()[1]
    }
    /// Length field: bytes after the mandatory 8-byte part.
    #[inline]
    pub fn length(&self) -> usize {
        usize::from(be16(self.buffer.as_ref(), 2))
    }
    /// Tunnel endpoint identifier.
    #[inline]
    pub fn teid(&self) -> u32 {
        be32(self.buffer.as_ref(), 4)
    }
    /// Sequence number, if the S flag is set.
    #[inline]
    pub fn seq(&self) -> Option<u16> {
        let b = self.buffer.as_ref();
        (b[0] & 0x02 != 0).then(|| be16(b, 8))
    }
    /// Header length including optional fields and extension headers.
    #[inline]
    pub fn header_len(&self) -> usize {
        self.len
    }
    /// End of the GTP-U payload inside the buffer.
    #[inline]
    pub fn payload_end(&self) -> usize {
        (Self::MIN_HEADER_LEN + self.length()).min(self.buffer.as_ref().len())
    }
}

/// A VXLAN header (RFC 7348, 8 bytes).
#[derive(Debug, Clone, Copy)]
pub struct VxlanHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanHeader<T> {
    /// Header length.
    pub const HEADER_LEN: usize = 8;

    /// Wraps `buffer` after checking the length and the I (valid VNI) flag.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        need("VXLAN", b, Self::HEADER_LEN)?;
        if b[0] & 0x08 == 0 {
            return Err(bad("VXLAN", "I flag (valid VNI) not set"));
        }
        Ok(VxlanHeader { buffer })
    }
    /// VXLAN network identifier (24 bits).
    #[inline]
    pub fn vni(&self) -> u32 {
        be32(self.buffer.as_ref(), 4) >> 8
    }
}

/// The source and destination ports that open a TCP, UDP and SCTP header alike (4 bytes): what
/// the rules read when only the ports are needed.
#[derive(Debug, Clone, Copy)]
pub struct PortPair<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> PortPair<T> {
    /// Length of the two port fields.
    pub const LEN: usize = 4;

    /// Wraps `buffer` after checking it holds both ports.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        need("L4 ports", buffer.as_ref(), Self::LEN)?;
        Ok(PortPair { buffer })
    }
    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }
    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }
}

/// A UDP header (8 bytes).
#[derive(Debug, Clone, Copy)]
pub struct UdpHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpHeader<T> {
    /// Header length.
    pub const HEADER_LEN: usize = 8;

    /// Wraps `buffer` after checking it holds the header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        need("UDP", buffer.as_ref(), Self::HEADER_LEN)?;
        Ok(UdpHeader { buffer })
    }
    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }
    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }
    /// Length field (header plus payload).
    #[inline]
    pub fn length(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }
}

/// A TCP header with options (RFC 9293).
#[derive(Debug, Clone, Copy)]
pub struct TcpHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpHeader<T> {
    /// Minimum header length.
    pub const MIN_HEADER_LEN: usize = 20;

    /// Wraps `buffer` after checking the data offset (>= 5) and the whole header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        need("TCP", b, Self::MIN_HEADER_LEN)?;
        let hl = usize::from(b[12] >> 4) * 4;
        if hl < Self::MIN_HEADER_LEN {
            return Err(bad("TCP", "data offset below 5"));
        }
        need("TCP", b, hl)?;
        Ok(TcpHeader { buffer })
    }
    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }
    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }
    /// Header length in bytes.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[12] >> 4) * 4
    }
    /// Flag byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, ...).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[13]
    }
}

/// An SCTP common header (RFC 9260, 12 bytes).
#[derive(Debug, Clone, Copy)]
pub struct SctpHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SctpHeader<T> {
    /// Header length.
    pub const HEADER_LEN: usize = 12;

    /// Wraps `buffer` after checking it holds the header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        need("SCTP", buffer.as_ref(), Self::HEADER_LEN)?;
        Ok(SctpHeader { buffer })
    }
    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }
    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }
    /// Verification tag.
    #[inline]
    pub fn verification_tag(&self) -> u32 {
        be32(self.buffer.as_ref(), 4)
    }
}

/// The first 4 bytes of an ICMP or ICMPv6 message.
#[derive(Debug, Clone, Copy)]
pub struct IcmpHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpHeader<T> {
    /// Type, code and checksum.
    pub const HEADER_LEN: usize = 4;

    /// Wraps `buffer` after checking it holds type, code and checksum.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        need("ICMP", buffer.as_ref(), Self::HEADER_LEN)?;
        Ok(IcmpHeader { buffer })
    }
    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[0]
    }
    /// Message code.
    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gre_lengths_follow_flags() {
        let b = [0xB0, 0x00, 0x08, 0x00, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 9];
        let g = GreHeader::new_checked(&b[..]).unwrap();
        assert_eq!(g.header_len(), 16);
        assert_eq!(g.key(), Some(7));
        assert_eq!(g.seq(), Some(9));
        assert!(GreHeader::new_checked(&b[..12]).is_err());
        let v1 = [0x30, 0x01, 0x88, 0x0B, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            GreHeader::new_checked(&v1[..]),
            Err(WireError::Malformed { .. })
        ));
    }

    #[test]
    fn gtpu_extension_chain_is_walked_and_bounded() {
        // E set, next ext 0x85 (PDU session container) of 1 unit, then none.
        let b = [
            0x34, 0xFF, 0x00, 0x08, 0, 0, 0, 1, 0, 0, 0, 0x85, 0x01, 0x00, 0x09, 0x00,
        ];
        let g = GtpuHeader::new_checked(&b[..]).unwrap();
        assert_eq!(g.header_len(), 16);
        assert_eq!(g.teid(), 1);
        // Zero-length extension is rejected.
        let mut z = b;
        z[12] = 0;
        assert!(GtpuHeader::new_checked(&z[..]).is_err());
        // A chain longer than the buffer is rejected.
        let mut l = b;
        l[15] = 0x85;
        assert!(GtpuHeader::new_checked(&l[..]).is_err());
    }

    #[test]
    fn ipv4_rejects_bad_ihl_and_short_total_length() {
        let mut h = [0u8; 20];
        h[0] = 0x44;
        h[3] = 20;
        assert!(Ipv4Packet::new_checked(&h[..]).is_err());
        h[0] = 0x45;
        assert!(Ipv4Packet::new_checked(&h[..]).is_ok());
        h[3] = 19;
        assert!(Ipv4Packet::new_checked(&h[..]).is_err());
    }
}
