//! ethtool-like control types for the PF agent: n-tuple rules (`ETHTOOL_SRXCLSRLINS`,
//! `ETHTOOL_SRXCLSRLDEL`, `ETHTOOL_GRXCLSRLALL`, `ETHTOOL_GRXCLSRULE`), `ring_cookie` encoding
//! and the errors the kernel returns (facts §4.2, §4.3).
//!
//! The rule type mirrors `struct ethtool_rx_flow_spec` for the IPv4 flow types: masks use the
//! ioctl's convention (**1 = compare this bit**; the ethtool CLI's `m` masks are the complement).
//! The operations themselves live on [`crate::switch::Switch`] (`ethtool_add_ntuple` and friends)
//! and in [`crate::fdir::FlowDirector`].
//!
//! ```
//! use floodgate_sim::ethtool::{FlowType, RxFlowSpec, ring_cookie_vf, ring_cookie_parts};
//! // ethtool -N eth0 flow-type udp4 dst-port 53 action $(( (1+1)<<32 | 0 )) loc 5
//! let rule = RxFlowSpec::new(FlowType::UdpV4).dst_port(53).to_vf(1, 0).at(5);
//! assert_eq!(rule.ring_cookie, ring_cookie_vf(1, 0));
//! assert_eq!(ring_cookie_parts(rule.ring_cookie), (2, 0)); // VF selector 2 = VF 1
//! ```

use std::net::Ipv4Addr;

/// `RX_CLS_FLOW_DISC`: the drop action (`action -1`).
pub const RX_CLS_FLOW_DISC: u64 = u64::MAX;
/// `ETHTOOL_RX_FLOW_SPEC_RING`: queue bits of `ring_cookie`.
pub const RING_COOKIE_RING_MASK: u64 = 0x0000_0000_FFFF_FFFF;
/// `ETHTOOL_RX_FLOW_SPEC_RING_VF`: VF-selector bits of `ring_cookie` (0 = PF, k+1 = VF k).
pub const RING_COOKIE_VF_MASK: u64 = 0x0000_00FF_0000_0000;
/// Shift of the VF selector.
pub const RING_COOKIE_VF_SHIFT: u32 = 32;

/// `errno` values used by the model.
pub mod errno {
    /// No such entry.
    pub const ENOENT: i32 = 2;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// Operation not supported.
    pub const EOPNOTSUPP: i32 = 95;
}

/// An ethtool request refused, with the errno the kernel returns and a plain-words reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EthtoolError {
    /// `-EINVAL`.
    #[error("EINVAL: {0}")]
    Invalid(String),
    /// `-EOPNOTSUPP`.
    #[error("EOPNOTSUPP: {0}")]
    NotSupported(String),
    /// `-ENOENT`.
    #[error("ENOENT: {0}")]
    NotFound(String),
}

impl EthtoolError {
    /// The positive errno value (the ioctl returns its negative).
    pub fn errno(&self) -> i32 {
        match self {
            EthtoolError::Invalid(_) => errno::EINVAL,
            EthtoolError::NotSupported(_) => errno::EOPNOTSUPP,
            EthtoolError::NotFound(_) => errno::ENOENT,
        }
    }

    /// The message without the errno prefix.
    pub fn message(&self) -> &str {
        match self {
            EthtoolError::Invalid(m)
            | EthtoolError::NotSupported(m)
            | EthtoolError::NotFound(m) => m,
        }
    }
}

/// `ring_cookie` for VF `vf` (0-based), VF-relative ring `ring`: selector `vf + 1` (facts §4.2).
pub fn ring_cookie_vf(vf: u32, ring: u32) -> u64 {
    ((u64::from(vf) + 1) << RING_COOKIE_VF_SHIFT) | u64::from(ring)
}

/// `ring_cookie` for the PF's own ring `ring` (VF selector 0).
pub fn ring_cookie_pf(ring: u32) -> u64 {
    u64::from(ring)
}

/// Splits a `ring_cookie` into (VF selector, ring) like `ethtool_get_flow_spec_ring_vf` and
/// `ethtool_get_flow_spec_ring`. Meaningless for [`RX_CLS_FLOW_DISC`].
pub fn ring_cookie_parts(cookie: u64) -> (u32, u32) {
    (
        ((cookie & RING_COOKIE_VF_MASK) >> RING_COOKIE_VF_SHIFT) as u32,
        (cookie & RING_COOKIE_RING_MASK) as u32,
    )
}

/// `flow_type` of a rule (without the `FLOW_EXT` flag, which is [`RxFlowSpec::ext`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowType {
    /// `TCP_V4_FLOW`.
    TcpV4,
    /// `UDP_V4_FLOW`.
    UdpV4,
    /// `SCTP_V4_FLOW`.
    SctpV4,
    /// `IP_USER_FLOW` (`IPV4_USER_FLOW`): protocol in [`RxFlowSpec::l4_proto`].
    IpUserV4,
    /// `TCP_V6_FLOW` (refused by upstream ixgbe).
    TcpV6,
    /// `UDP_V6_FLOW` (refused).
    UdpV6,
    /// `SCTP_V6_FLOW` (refused).
    SctpV6,
    /// `IPV6_USER_FLOW` (refused).
    IpUserV6,
    /// `ETHER_FLOW` (refused).
    Ether,
    /// Any other raw value (refused).
    Other(u32),
}

/// `FLOW_EXT` fields (`h_ext`/`m_ext`): VLAN TCI, `vlan-etype` (used as the 2 flex bytes) and
/// `user-def` (its lowest byte selects the VM pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowExt {
    /// VLAN TCI value.
    pub vlan_tci: u16,
    /// VLAN TCI mask (ixgbe accepts 0, 0x0FFF, 0xE000, 0xEFFF after ignoring the CFI bit).
    pub vlan_tci_mask: u16,
    /// Flex bytes value (`vlan-etype`).
    pub vlan_etype: u16,
    /// Flex bytes mask (0 or 0xFFFF).
    pub vlan_etype_mask: u16,
    /// `user-def` 64-bit value; bits 7:0 = VM pool.
    pub user_def: u64,
    /// `user-def` mask; ixgbe takes bits 7:0 as the pool mask, which must be 0 or 0x7F.
    pub user_def_mask: u64,
}

/// One n-tuple rule, IPv4 view of `struct ethtool_rx_flow_spec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxFlowSpec {
    /// Flow type.
    pub flow_type: FlowType,
    /// Source address.
    pub src_ip: Ipv4Addr,
    /// Source address mask (1 = compare).
    pub src_ip_mask: Ipv4Addr,
    /// Destination address.
    pub dst_ip: Ipv4Addr,
    /// Destination address mask.
    pub dst_ip_mask: Ipv4Addr,
    /// Source port (for `IpUserV4` these are the first two of `l4_4_bytes`).
    pub src_port: u16,
    /// Source port mask.
    pub src_port_mask: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Destination port mask.
    pub dst_port_mask: u16,
    /// `IpUserV4` only: IP protocol (`l4_proto`).
    pub l4_proto: u8,
    /// `IpUserV4` only: protocol mask.
    pub l4_proto_mask: u8,
    /// `FLOW_EXT` part, if the flag is set.
    pub ext: Option<FlowExt>,
    /// Action: `(vf_selector << 32) | ring`, or [`RX_CLS_FLOW_DISC`].
    pub ring_cookie: u64,
    /// Rule location (slot).
    pub location: u32,
}

impl RxFlowSpec {
    /// An all-zero rule of `flow_type` (matches everything of that type), to the PF's ring 0, at
    /// location 0.
    pub fn new(flow_type: FlowType) -> RxFlowSpec {
        RxFlowSpec {
            flow_type,
            src_ip: Ipv4Addr::UNSPECIFIED,
            src_ip_mask: Ipv4Addr::UNSPECIFIED,
            dst_ip: Ipv4Addr::UNSPECIFIED,
            dst_ip_mask: Ipv4Addr::UNSPECIFIED,
            src_port: 0,
            src_port_mask: 0,
            dst_port: 0,
            dst_port_mask: 0,
            l4_proto: 0,
            l4_proto_mask: 0,
            ext: None,
            ring_cookie: 0,
            location: 0,
        }
    }

    /// Exact source address.
    pub fn src_ip(mut self, ip: Ipv4Addr) -> Self {
        self.src_ip = ip;
        self.src_ip_mask = Ipv4Addr::BROADCAST;
        self
    }

    /// Exact destination address.
    pub fn dst_ip(mut self, ip: Ipv4Addr) -> Self {
        self.dst_ip = ip;
        self.dst_ip_mask = Ipv4Addr::BROADCAST;
        self
    }

    /// Exact source port.
    pub fn src_port(mut self, p: u16) -> Self {
        self.src_port = p;
        self.src_port_mask = 0xFFFF;
        self
    }

    /// Exact destination port.
    pub fn dst_port(mut self, p: u16) -> Self {
        self.dst_port = p;
        self.dst_port_mask = 0xFFFF;
        self
    }

    /// Steer to VF `vf` (0-based), VF-relative ring `ring`.
    pub fn to_vf(mut self, vf: u32, ring: u32) -> Self {
        self.ring_cookie = ring_cookie_vf(vf, ring);
        self
    }

    /// Steer to the PF's ring `ring`.
    pub fn to_pf(mut self, ring: u32) -> Self {
        self.ring_cookie = ring_cookie_pf(ring);
        self
    }

    /// Drop matching frames (`action -1`).
    pub fn drop(mut self) -> Self {
        self.ring_cookie = RX_CLS_FLOW_DISC;
        self
    }

    /// Location (`loc N`).
    pub fn at(mut self, location: u32) -> Self {
        self.location = location;
        self
    }
}

/// Indirection-table part of an `ethtool -X` request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum IndirSpec {
    /// Leave the table alone (e.g. only `hkey`).
    #[default]
    Unchanged,
    /// `default`: the kernel core's table, entry i = i mod num_rx_queues.
    Default,
    /// `equal N`: entry i = i mod N.
    Equal(u32),
    /// `weight w0 w1 ...`: contiguous blocks.
    Weight(Vec<u32>),
    /// An explicit table (must have 128 entries).
    Table(Vec<u32>),
}

/// Hash function selector of `ethtool -X ... hfunc` (ETH_RSS_HASH_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashFunc {
    /// Keep the current function (ETH_RSS_HASH_NO_CHANGE).
    #[default]
    NoChange,
    /// Toeplitz (the only one 82599/X540 implement).
    Toeplitz,
    /// XOR.
    Xor,
    /// CRC32.
    Crc32,
}

/// An `ethtool -X` (`ETHTOOL_SRSSH`) request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RxfhRequest {
    /// Indirection table.
    pub indir: IndirSpec,
    /// `hkey`: new key (must be 40 bytes).
    pub key: Option<Vec<u8>>,
    /// `hfunc`.
    pub hfunc: HashFunc,
}

/// Parses an ethtool-CLI style key `6d:5a:56:...` into bytes.
pub fn parse_hkey(s: &str) -> Result<Vec<u8>, EthtoolError> {
    s.split(':')
        .enumerate()
        .map(|(i, b)| {
            u8::from_str_radix(b, 16).map_err(|_| {
                EthtoolError::Invalid(format!("hkey: byte {i} ({b:?}) is not a hex byte"))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_encoding() {
        assert_eq!(ring_cookie_vf(0, 3), 0x1_0000_0003);
        assert_eq!(ring_cookie_parts(ring_cookie_vf(5, 1)), (6, 1));
        assert_eq!(ring_cookie_parts(ring_cookie_pf(2)), (0, 2));
    }

    #[test]
    fn hkey_parse() {
        assert_eq!(parse_hkey("6d:5a:00").unwrap(), vec![0x6d, 0x5a, 0]);
        let e = parse_hkey("6d:zz").unwrap_err();
        assert_eq!(e.errno(), errno::EINVAL);
        assert!(e.message().contains("byte 1"));
    }
}
