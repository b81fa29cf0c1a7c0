//! Flow Director in perfect-filter mode, and the SR-IOV pool layout it maps queues with
//! (facts §4.1–§4.5).
//!
//! Rules are added the way `ixgbe_add_ethtool_fdir_entry` adds them: same checks, same order,
//! same errno. Matching uses the single global mask and the 13-bit bucket hash of
//! `ixgbe_atr_compute_perfect_hash_82599` (facts §4.5): a frame's ATR input is masked, hashed to a
//! bucket, and compared with the (masked) rules stored in that bucket.
//!
//! ```
//! use floodgate_sim::fdir::{PoolLayout, PoolMode};
//! // 2 VFs + 1 PF pool <= 32 pools: 32 pools x 4 queues (facts §4.1).
//! let l = PoolLayout::new(2, 4).unwrap();
//! assert_eq!(l.mode(), PoolMode::Pools32);
//! assert_eq!(l.num_rx_queues_per_pool(), 4);
//! assert_eq!(l.pf_pool(), 2);
//! // 40 VFs: 64 pools x 2 queues.
//! assert_eq!(PoolLayout::new(40, 4).unwrap().pool_stride(), 2);
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ethtool::{ring_cookie_parts, EthtoolError, FlowType, RxFlowSpec, RX_CLS_FLOW_DISC};
use crate::frame::{FrameInfo, L3, L4};

/// Queue used for drop rules (FDIRCTRL.DROP_Q = 127, FDIRCMD.DROP; facts §4.3, §4.4).
pub const FDIR_DROP_QUEUE: u8 = 127;
/// Bucket hash key FDIRHKEY (facts §4.4).
pub const FDIR_HASH_KEY: u32 = 0x3DAD_14E2;
/// Bucket hash width: 13 bits, 8K buckets (facts §4.5).
pub const FDIR_BUCKETS: usize = 1 << 13;
/// Default FDIRCTRL.PBALLOC (1 = 64 KB; facts §4.3).
pub const DEFAULT_PBALLOC: u8 = 1;
/// Largest number of VFs the Linux PF allows (facts §4.1).
pub const MAX_VFS: u16 = 63;

/// ATR flow types (`IXGBE_ATR_FLOW_TYPE_*`): L4 type in bits 1:0, IPv6 in bit 2.
pub mod atr_flow {
    /// IPv4, any protocol.
    pub const IPV4: u8 = 0;
    /// UDP over IPv4.
    pub const UDPV4: u8 = 1;
    /// TCP over IPv4.
    pub const TCPV4: u8 = 2;
    /// SCTP over IPv4.
    pub const SCTPV4: u8 = 3;
    /// IPv6 flag.
    pub const IPV6: u8 = 4;
    /// L4 type mask.
    pub const L4TYPE_MASK: u8 = 0x3;
}

/// Pool mode chosen by the PF (facts §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoolMode {
    /// No VFs: SR-IOV off, the PF spreads over up to 16 RSS queues.
    NoVirtualization,
    /// ≤ 32 pools in total: 32 pools × 4 queues (MRQC 0xA).
    Pools32,
    /// > 32 pools: 64 pools × 2 queues (MRQC 0xB).
    Pools64,
}

/// A pool layout that cannot exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// More VFs than the PF driver allows.
    #[error("pool layout: {0} VFs requested, the ixgbe PF allows at most 63 (one pool stays with the PF)")]
    TooManyVfs(u16),
    /// PF RSS width out of range.
    #[error("pool layout: PF RSS width {0} is out of range 1..=16")]
    BadRss(u16),
}

/// The SR-IOV/VMDq layout: which pool owns which queues (facts §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolLayout {
    num_vfs: u16,
    pf_rss: u16,
}

impl PoolLayout {
    /// `num_vfs` VFs (pools 0..num_vfs−1) plus one PF pool; `pf_rss` = the PF's RSS queue count.
    pub fn new(num_vfs: u16, pf_rss: u16) -> Result<PoolLayout, LayoutError> {
        if num_vfs > MAX_VFS {
            return Err(LayoutError::TooManyVfs(num_vfs));
        }
        if !(1..=16).contains(&pf_rss) {
            return Err(LayoutError::BadRss(pf_rss));
        }
        Ok(PoolLayout { num_vfs, pf_rss })
    }

    /// Number of VFs.
    pub fn num_vfs(&self) -> u16 {
        self.num_vfs
    }

    /// The PF's RSS width.
    pub fn pf_rss(&self) -> u16 {
        self.pf_rss
    }

    /// Pool mode: total pools = num_vfs + 1 (facts §4.1).
    pub fn mode(&self) -> PoolMode {
        match self.num_vfs {
            0 => PoolMode::NoVirtualization,
            n if n + 1 > 32 => PoolMode::Pools64,
            _ => PoolMode::Pools32,
        }
    }

    /// True when SR-IOV is on.
    pub fn sriov(&self) -> bool {
        self.num_vfs > 0
    }

    /// Hardware queues per pool (QPP): 4 or 2; 128 without virtualization (one big pool).
    pub fn pool_stride(&self) -> u8 {
        match self.mode() {
            PoolMode::NoVirtualization => 128,
            PoolMode::Pools32 => 4,
            PoolMode::Pools64 => 2,
        }
    }

    /// Number of pools in use: the VFs plus the PF's pool.
    pub fn num_pools(&self) -> u16 {
        self.num_vfs + 1
    }

    /// The PF's pool index (VMDq offset = num_vfs).
    pub fn pf_pool(&self) -> u16 {
        self.num_vfs
    }

    /// `num_rx_queues_per_pool`: the PF's RSS width inside its pool (facts §4.1, last bullet).
    pub fn num_rx_queues_per_pool(&self) -> u32 {
        let rss = u32::from(self.pf_rss);
        match self.mode() {
            PoolMode::NoVirtualization => rss,
            PoolMode::Pools64 => rss.min(2),
            PoolMode::Pools32 => match rss {
                1 => 1,
                2 | 3 => 2,
                _ => 4,
            },
        }
    }

    /// The PF's `num_rx_queues` (one PF pool).
    pub fn pf_num_rx_queues(&self) -> u32 {
        self.num_rx_queues_per_pool()
    }

    /// `reg_idx` of the PF's ring `ring`: the PF pool's first queue + ring.
    pub fn pf_ring_reg_idx(&self, ring: u32) -> u32 {
        match self.mode() {
            PoolMode::NoVirtualization => ring,
            _ => u32::from(self.pf_pool()) * u32::from(self.pool_stride()) + ring,
        }
    }

    /// Absolute hardware queue of VF `vf` (0-based), VF queue `q`: vf × QPP + q (facts §4.1).
    pub fn vf_queue(&self, vf: u16, q: u8) -> u32 {
        u32::from(vf) * u32::from(self.pool_stride()) + u32::from(q)
    }

    /// Pool owning absolute queue `q`, and the queue's index inside that pool.
    pub fn pool_of_queue(&self, q: u32) -> (u16, u8) {
        let s = u32::from(self.pool_stride());
        ((q / s) as u16, (q % s) as u8)
    }

    /// Queues a pool may use: QPP for a VF pool, the PF's width for the PF pool.
    pub fn pool_queues(&self, pool: u16) -> u8 {
        if pool == self.pf_pool() {
            self.num_rx_queues_per_pool() as u8
        } else {
            self.pool_stride()
        }
    }
}

/// The flow director's ATR input (facts §4.5), one field per hardware field.
/// Also used as the global mask (same layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AtrInput {
    /// VM pool.
    pub vm_pool: u8,
    /// ATR flow type ([`atr_flow`]).
    pub flow_type: u8,
    /// VLAN TCI.
    pub vlan_id: u16,
    /// IPv4 destination, network order.
    pub dst_ip: [u8; 4],
    /// IPv4 source.
    pub src_ip: [u8; 4],
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Flex bytes.
    pub flex_bytes: u16,
}

impl AtrInput {
    /// The 11 big-endian dwords of the Linux `ixgbe_atr_input` stream, as host integers:
    /// 0 = pool|type|vlan, 1..4 = dst IP, 5..8 = src IP, 9 = ports, 10 = flex|bucket(0).
    pub fn dwords(&self) -> [u32; 11] {
        let mut d = [0u32; 11];
        d[0] = u32::from(self.vm_pool) << 24
            | u32::from(self.flow_type) << 16
            | u32::from(self.vlan_id);
        d[1] = u32::from_be_bytes(self.dst_ip);
        d[5] = u32::from_be_bytes(self.src_ip);
        d[9] = u32::from(self.src_port) << 16 | u32::from(self.dst_port);
        d[10] = u32::from(self.flex_bytes) << 16;
        d
    }

    /// Field-wise AND with `mask`.
    pub fn masked(&self, mask: &AtrInput) -> AtrInput {
        let and4 = |a: [u8; 4], b: [u8; 4]| [a[0] & b[0], a[1] & b[1], a[2] & b[2], a[3] & b[3]];
        AtrInput {
            vm_pool: self.vm_pool & mask.vm_pool,
            flow_type: self.flow_type & mask.flow_type,
            vlan_id: self.vlan_id & mask.vlan_id,
            dst_ip: and4(self.dst_ip, mask.dst_ip),
            src_ip: and4(self.src_ip, mask.src_ip),
            src_port: self.src_port & mask.src_port,
            dst_port: self.dst_port & mask.dst_port,
            flex_bytes: self.flex_bytes & mask.flex_bytes,
        }
    }

    /// The ATR input of an IPv4 frame in pool `pool` (None for non-IPv4 frames: no IPv4 rule
    /// can match them, the flow-type mask always keeps the IPv6 bit).
    pub fn from_frame(f: &FrameInfo, pool: u8) -> Option<AtrInput> {
        let L3::Ipv4 { src, dst, .. } = f.l3 else {
            return None;
        };
        let (flow_type, (sp, dp)) = match f.l4 {
            L4::Udp { src, dst } => (atr_flow::UDPV4, (src, dst)),
            L4::Tcp { src, dst } => (atr_flow::TCPV4, (src, dst)),
            L4::Sctp { src, dst } => (atr_flow::SCTPV4, (src, dst)),
            L4::None => (atr_flow::IPV4, (0, 0)),
        };
        Some(AtrInput {
            vm_pool: pool,
            flow_type,
            vlan_id: f.vlan_tci.unwrap_or(0),
            dst_ip: dst,
            src_ip: src,
            src_port: sp,
            dst_port: dp,
            flex_bytes: f.flex_bytes,
        })
    }
}

/// Perfect-filter bucket hash (facts §4.5): 13 bits.
pub fn perfect_bucket_hash(input: &AtrInput, mask: &AtrInput) -> u16 {
    let d = input.dwords();
    let m = mask.dwords();
    let mut masked = [0u32; 11];
    for i in 0..11 {
        masked[i] = d[i] & m[i];
    }
    bucket_hash_of_masked(&masked)
}

/// The bucket hash of an ATR dword stream that is already masked (facts §4.5).
pub fn bucket_hash_of_masked(d: &[u32; 11]) -> u16 {
    let flow_vm_vlan = d[0];
    let common = d[1..].iter().fold(0u32, |acc, &w| acc ^ w);
    let mut hi = common;
    let mut lo = common.rotate_left(16);
    hi ^= flow_vm_vlan ^ (flow_vm_vlan >> 16);
    let key = FDIR_HASH_KEY;
    let mut hash = 0u32;
    // Bit n of the key XORs in lo >> n, bit n+16 XORs in hi >> n. dword 0 joins `lo` only
    // after the n = 0 step.
    if key & 1 == 1 {
        hash ^= lo;
    }
    if key >> 16 & 1 == 1 {
        hash ^= hi;
    }
    lo ^= flow_vm_vlan ^ (flow_vm_vlan << 16);
    for n in 1..16 {
        if key >> n & 1 == 1 {
            hash ^= lo >> n;
        }
        if key >> (n + 16) & 1 == 1 {
            hash ^= hi >> n;
        }
    }
    (hash & 0x1FFF) as u16
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FdirAction {
    /// Drop (queue 127 with FDIRCMD.DROP).
    Drop,
    /// Deliver to this absolute hardware queue.
    Queue(u8),
}

/// A flow-director hit, as reported in the RX descriptor (FLM, filter id, bucket hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FdirHit {
    /// Software index = rule location (FDIRHASH bits 31:16).
    pub id: u16,
    /// Bucket hash (13 bits).
    pub bucket: u16,
    /// Action.
    pub action: FdirAction,
}

struct Entry {
    location: u32,
    key: [u32; 11],
    action: Option<FdirAction>,
    seq: u64,
    hits: AtomicU64,
}

#[derive(Debug, Clone)]
struct RuleInfo {
    spec: RxFlowSpec,
    bucket: u16,
}

/// Flow-director counters (FDIRMATCH/FDIRMISS-like; facts §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FdirStats {
    /// Frames that matched a rule.
    pub matches: u64,
    /// IP frames looked up without a match.
    pub misses: u64,
    /// Installed rules.
    pub rules: u32,
    /// Rules kept in the list but not programmed (restore refused them after a layout change).
    pub inactive: u32,
}

/// The perfect-filter table of one port.
pub struct FlowDirector {
    enabled: bool,
    pballoc: u8,
    mask: Option<AtrInput>,
    mask_dwords: [u32; 11],
    rules: BTreeMap<u32, RuleInfo>,
    buckets: Vec<Vec<Entry>>,
    seq: u64,
    /// Hits of rules that were deleted or replaced (FDIRMATCH = this + live rules' hits).
    retired_hits: u64,
    misses: AtomicU64,
}

impl std::fmt::Debug for FlowDirector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowDirector")
            .field("enabled", &self.enabled)
            .field("pballoc", &self.pballoc)
            .field("mask", &self.mask)
            .field("rules", &self.rules.len())
            .finish()
    }
}

impl Default for FlowDirector {
    fn default() -> Self {
        FlowDirector::new()
    }
}

fn inv(msg: impl Into<String>) -> EthtoolError {
    EthtoolError::Invalid(msg.into())
}

impl FlowDirector {
    /// An empty table with n-tuple filtering on and PBALLOC 64 KB.
    ///
    /// (Real ports start with `ntuple off`; the model starts on so tests and demos need no
    /// extra step. [`FlowDirector::set_enabled`] models `ethtool -K ntuple off`.)
    pub fn new() -> FlowDirector {
        FlowDirector {
            enabled: true,
            pballoc: DEFAULT_PBALLOC,
            mask: None,
            mask_dwords: [0; 11],
            rules: BTreeMap::new(),
            buckets: (0..FDIR_BUCKETS).map(|_| Vec::new()).collect(),
            seq: 0,
            retired_hits: 0,
            misses: AtomicU64::new(0),
        }
    }

    /// `ethtool -K ntuple on|off`. Turning it off resets the port's filter table (rules and
    /// mask are gone); with it off every rule request is refused with EOPNOTSUPP.
    pub fn set_enabled(&mut self, on: bool) {
        if !on {
            self.clear();
        }
        self.enabled = on;
    }

    /// Whether perfect filtering is on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Sets FDIRCTRL.PBALLOC (1..=3); clears the table like a port re-init.
    pub fn set_pballoc(&mut self, pballoc: u8) -> Result<(), EthtoolError> {
        if !(1..=3).contains(&pballoc) {
            return Err(inv(format!(
                "fdir: PBALLOC {pballoc} is invalid, use 1 (64K), 2 (128K) or 3 (256K)"
            )));
        }
        self.pballoc = pballoc;
        self.clear();
        Ok(())
    }

    /// Number of rule slots: (1024 << pballoc) − 2 (facts §4.3).
    pub fn table_size(&self) -> u32 {
        (1024u32 << self.pballoc) - 2
    }

    /// The global mask, once the first rule set it.
    pub fn mask(&self) -> Option<&AtrInput> {
        self.mask.as_ref()
    }

    fn clear(&mut self) {
        self.rules.clear();
        for b in &mut self.buckets {
            self.retired_hits += b
                .iter()
                .map(|e| e.hits.load(Ordering::Relaxed))
                .sum::<u64>();
            b.clear();
        }
        self.mask = None;
    }

    /// Resolves a ring cookie to an action for `layout` (facts §4.3).
    pub fn resolve_action(cookie: u64, layout: &PoolLayout) -> Result<FdirAction, EthtoolError> {
        if cookie == RX_CLS_FLOW_DISC {
            return Ok(FdirAction::Drop);
        }
        let (vf, ring) = ring_cookie_parts(cookie);
        if vf == 0 {
            let n = layout.pf_num_rx_queues();
            if ring >= n {
                return Err(inv(format!(
                    "ring_cookie: PF ring {ring} does not exist, the PF has {n} RX queues (ring must be < {n})"
                )));
            }
            Ok(FdirAction::Queue(layout.pf_ring_reg_idx(ring) as u8))
        } else {
            let nvf = u32::from(layout.num_vfs());
            let qpp = layout.num_rx_queues_per_pool();
            if vf > nvf {
                return Err(inv(format!(
                    "ring_cookie: VF selector {vf} means VF {}, but only {nvf} VFs exist (selector must be <= num_vfs; 0 = PF, k+1 = VF k)",
                    vf - 1
                )));
            }
            if ring >= qpp {
                return Err(inv(format!(
                    "ring_cookie: ring {ring} of VF {} is out of range, num_rx_queues_per_pool is {qpp}",
                    vf - 1
                )));
            }
            // facts §4.3: hw queue = (vf − 1) × num_rx_queues_per_pool + ring.
            Ok(FdirAction::Queue(((vf - 1) * qpp + ring) as u8))
        }
    }

    /// `ixgbe_flowspec_to_flow_type`.
    fn flow_type_of(spec: &RxFlowSpec) -> Option<u8> {
        match spec.flow_type {
            FlowType::TcpV4 => Some(atr_flow::TCPV4),
            FlowType::UdpV4 => Some(atr_flow::UDPV4),
            FlowType::SctpV4 => Some(atr_flow::SCTPV4),
            FlowType::IpUserV4 => match spec.l4_proto {
                6 => Some(atr_flow::TCPV4),
                17 => Some(atr_flow::UDPV4),
                132 => Some(atr_flow::SCTPV4),
                0 if spec.l4_proto_mask == 0 => Some(atr_flow::IPV4),
                _ => None,
            },
            _ => None,
        }
    }

    /// Checks a mask the way `ixgbe_fdir_set_input_mask_82599` does.
    fn check_mask(mask: &AtrInput) -> Result<(), EthtoolError> {
        match mask.vm_pool {
            0 | 0x7F => {}
            m => {
                return Err(inv(format!(
                    "mask: user-def pool mask 0x{m:02x} is not supported; the pool is either ignored (0) or matched exactly (0x7f)"
                )))
            }
        }
        match mask.flow_type & atr_flow::L4TYPE_MASK {
            0 => {
                if mask.src_port != 0 || mask.dst_port != 0 {
                    return Err(inv(
                        "mask: a rule without an L4 protocol (ip4 with proto 0) cannot match ports; src/dst port masks must be 0",
                    ));
                }
            }
            atr_flow::L4TYPE_MASK => {}
            m => {
                return Err(inv(format!(
                    "mask: flow type mask 0x{m:x} is not supported"
                )))
            }
        }
        match mask.vlan_id & 0xEFFF {
            0 | 0x0FFF | 0xE000 | 0xEFFF => {}
            m => {
                return Err(inv(format!(
                    "mask: VLAN TCI mask 0x{m:04x} is not supported; use 0 (ignore), 0x0fff (VLAN ID), 0xe000 (priority) or 0xefff (both)"
                )))
            }
        }
        match mask.flex_bytes {
            0 | 0xFFFF => {}
            m => {
                return Err(inv(format!(
                    "mask: flex-byte (vlan-etype) mask 0x{m:04x} is not supported; use 0 or 0xffff"
                )))
            }
        }
        Ok(())
    }

    /// `ETHTOOL_SRXCLSRLINS` (`ixgbe_add_ethtool_fdir_entry`, facts §4.3). Returns the location.
    /// A rule at an occupied location replaces it.
    pub fn add_rule(
        &mut self,
        spec: &RxFlowSpec,
        layout: &PoolLayout,
    ) -> Result<u32, EthtoolError> {
        if !self.enabled {
            return Err(EthtoolError::NotSupported(
                "ntuple filtering is off on this port (enable it with `ethtool -K <pf> ntuple on`)"
                    .into(),
            ));
        }
        let action = Self::resolve_action(spec.ring_cookie, layout)?;
        let limit = self.table_size();
        if spec.location >= limit {
            return Err(inv(format!(
                "location {} is out of range; locations must be < {limit} ((1024 << pballoc {}) - 2)",
                spec.location, self.pballoc
            )));
        }
        let flow_type = Self::flow_type_of(spec).ok_or_else(|| {
            inv(match spec.flow_type {
                FlowType::TcpV6 | FlowType::UdpV6 | FlowType::SctpV6 | FlowType::IpUserV6 => format!(
                    "unrecognized flow type {:?}: ixgbe n-tuple filters support IPv4 only (tcp4, udp4, sctp4, ip4)",
                    spec.flow_type
                ),
                FlowType::IpUserV4 => format!(
                    "unrecognized flow type: ip4 rule with l4_proto {} mask 0x{:02x}; only TCP (6), UDP (17), SCTP (132) or proto 0 with mask 0 are supported",
                    spec.l4_proto, spec.l4_proto_mask
                ),
                other => format!("unrecognized flow type {other:?}: only tcp4, udp4, sctp4 and ip4 are supported"),
            })
        })?;
        let mut input = AtrInput {
            vm_pool: 0,
            flow_type,
            vlan_id: 0,
            dst_ip: spec.dst_ip.octets(),
            src_ip: spec.src_ip.octets(),
            src_port: spec.src_port,
            dst_port: spec.dst_port,
            flex_bytes: 0,
        };
        let mut mask = AtrInput {
            vm_pool: 0,
            flow_type: if flow_type == atr_flow::IPV4 {
                atr_flow::IPV6
            } else {
                atr_flow::IPV6 | atr_flow::L4TYPE_MASK
            },
            vlan_id: 0,
            dst_ip: spec.dst_ip_mask.octets(),
            src_ip: spec.src_ip_mask.octets(),
            src_port: spec.src_port_mask,
            dst_port: spec.dst_port_mask,
            flex_bytes: 0,
        };
        if let Some(ext) = spec.ext {
            input.vm_pool = ext.user_def as u8;
            mask.vm_pool = ext.user_def_mask as u8;
            input.vlan_id = ext.vlan_tci;
            mask.vlan_id = ext.vlan_tci_mask;
            input.flex_bytes = ext.vlan_etype;
            mask.flex_bytes = ext.vlan_etype_mask;
        }
        if self.rules.is_empty() {
            Self::check_mask(&mask)?;
            self.mask = Some(mask);
            self.mask_dwords = mask.dwords();
        } else if self.mask != Some(mask) {
            return Err(inv(format!(
                "Hardware only supports one mask per port: this rule's mask {} differs from the mask of the installed rules {}; delete all rules to change it",
                describe_mask(&mask),
                self.mask.as_ref().map_or_else(String::new, describe_mask)
            )));
        }
        let masked = input.masked(&mask);
        let bucket = perfect_bucket_hash(&input, &mask);
        // Replace any rule at the same location (ixgbe_update_ethtool_fdir_entry).
        self.remove_location(spec.location);
        let mut stored = *spec;
        stored.src_ip = masked.src_ip.into();
        stored.dst_ip = masked.dst_ip.into();
        stored.src_port = masked.src_port;
        stored.dst_port = masked.dst_port;
        self.seq += 1;
        self.buckets[usize::from(bucket)].push(Entry {
            location: spec.location,
            key: masked.dwords(),
            action: Some(action),
            seq: self.seq,
            hits: AtomicU64::new(0),
        });
        self.rules.insert(
            spec.location,
            RuleInfo {
                spec: stored,
                bucket,
            },
        );
        log::debug!(
            "fdir: rule {} installed in bucket {bucket:#x}, action {action:?}",
            spec.location
        );
        Ok(spec.location)
    }

    fn remove_location(&mut self, loc: u32) -> bool {
        if let Some(info) = self.rules.remove(&loc) {
            let bucket = &mut self.buckets[usize::from(info.bucket)];
            self.retired_hits += bucket
                .iter()
                .filter(|e| e.location == loc)
                .map(|e| e.hits.load(Ordering::Relaxed))
                .sum::<u64>();
            bucket.retain(|e| e.location != loc);
            true
        } else {
            false
        }
    }

    /// `ETHTOOL_SRXCLSRLDEL`. Deleting the last rule frees the global mask.
    pub fn delete_rule(&mut self, location: u32) -> Result<(), EthtoolError> {
        if !self.enabled {
            return Err(EthtoolError::NotSupported(
                "ntuple filtering is off on this port".into(),
            ));
        }
        if !self.remove_location(location) {
            return Err(inv(format!("no n-tuple rule at location {location}")));
        }
        if self.rules.is_empty() {
            self.mask = None;
        }
        Ok(())
    }

    /// `ETHTOOL_GRXCLSRULE`: the stored rule (values as masked by the hardware).
    pub fn get_rule(&self, location: u32) -> Result<RxFlowSpec, EthtoolError> {
        self.rules
            .get(&location)
            .map(|r| r.spec)
            .ok_or_else(|| inv(format!("no n-tuple rule at location {location}")))
    }

    /// `ETHTOOL_GRXCLSRLALL`: (table size, locations in ascending order).
    pub fn locations(&self) -> (u32, Vec<u32>) {
        (self.table_size(), self.rules.keys().copied().collect())
    }

    /// Where ethtool userspace puts a rule given without `loc`: the highest free slot.
    pub fn first_free_location(&self) -> Option<u32> {
        (0..self.table_size())
            .rev()
            .find(|l| !self.rules.contains_key(l))
    }

    /// Re-derives every rule's queue after a layout change (`ixgbe_fdir_filter_restore`, with the
    /// 2019 fix: VF rules use (vf−1)·num_rx_queues_per_pool + ring). Rules that no longer
    /// resolve stay listed but are not programmed (the kernel logs "FDIR restore failed").
    pub fn restore(&mut self, layout: &PoolLayout) {
        for info in self.rules.values() {
            let action = Self::resolve_action(info.spec.ring_cookie, layout);
            if let Err(e) = &action {
                log::warn!(
                    "fdir: restore failed for rule {}: {e}",
                    info.spec.location,
                    e = floodgate_vfio::ErrorChain(e)
                );
            }
            for e in &mut self.buckets[usize::from(info.bucket)] {
                if e.location == info.spec.location {
                    e.action = action.clone().ok();
                }
            }
        }
    }

    /// Looks `input` up (hot path, no allocation). Counts a match or a miss.
    pub fn lookup(&self, input: &AtrInput) -> Option<FdirHit> {
        self.mask.as_ref()?;
        let mut key = input.dwords();
        for (k, m) in key.iter_mut().zip(&self.mask_dwords) {
            *k &= m;
        }
        let bucket = bucket_hash_of_masked(&key);
        let mut best: Option<&Entry> = None;
        for e in &self.buckets[usize::from(bucket)] {
            // The newest programming of identical fields wins (FILTER_UPDATE semantics).
            let newer = match best {
                Some(b) => e.seq > b.seq,
                None => true,
            };
            if e.action.is_some() && e.key == key && newer {
                best = Some(e);
            }
        }
        match best {
            Some(e) => {
                e.hits.fetch_add(1, Ordering::Relaxed);
                e.action.map(|action| FdirHit {
                    id: e.location as u16,
                    bucket,
                    action,
                })
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Counts a miss for an IP frame that cannot match any rule (IPv6), like FDIRMISS.
    pub fn count_miss(&self) {
        if self.enabled {
            self.misses.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Hits of the rule at `location`.
    pub fn rule_hits(&self, location: u32) -> Option<u64> {
        let info = self.rules.get(&location)?;
        self.buckets[usize::from(info.bucket)]
            .iter()
            .find(|e| e.location == location)
            .map(|e| e.hits.load(Ordering::Relaxed))
    }

    /// Bucket hash stored for the rule at `location`.
    pub fn rule_bucket(&self, location: u32) -> Option<u16> {
        self.rules.get(&location).map(|r| r.bucket)
    }

    /// Current action of the rule at `location` (None if not programmed).
    pub fn rule_action(&self, location: u32) -> Option<FdirAction> {
        let info = self.rules.get(&location)?;
        self.buckets[usize::from(info.bucket)]
            .iter()
            .find(|e| e.location == location)
            .and_then(|e| e.action)
    }

    /// Counters.
    pub fn stats(&self) -> FdirStats {
        let inactive = self
            .buckets
            .iter()
            .flatten()
            .filter(|e| e.action.is_none())
            .count() as u32;
        FdirStats {
            matches: self.retired_hits
                + self
                    .buckets
                    .iter()
                    .flatten()
                    .map(|e| e.hits.load(Ordering::Relaxed))
                    .sum::<u64>(),
            misses: self.misses.load(Ordering::Relaxed),
            rules: self.rules.len() as u32,
            inactive,
        }
    }
}

fn describe_mask(m: &AtrInput) -> String {
    format!(
        "{{src-ip {}/{}, dst-ip {}/{}, src-port 0x{:04x}, dst-port 0x{:04x}, l4 {}, vlan 0x{:04x}, flex 0x{:04x}, pool 0x{:02x}}}",
        std::net::Ipv4Addr::from(m.src_ip),
        u32::from_be_bytes(m.src_ip).count_ones(),
        std::net::Ipv4Addr::from(m.dst_ip),
        u32::from_be_bytes(m.dst_ip).count_ones(),
        m.src_port,
        m.dst_port,
        if m.flow_type & atr_flow::L4TYPE_MASK != 0 { "matched" } else { "any" },
        m.vlan_id,
        m.flex_bytes,
        m.vm_pool
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_hash_is_deterministic_and_13_bit() {
        let mut x = 0x243F_6A88_85A3_08D3u64;
        let mask = AtrInput {
            vm_pool: 0,
            flow_type: 7,
            vlan_id: 0,
            dst_ip: [255; 4],
            src_ip: [255; 4],
            src_port: 0xFFFF,
            dst_port: 0xFFFF,
            flex_bytes: 0,
        };
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = AtrInput {
                vm_pool: 0,
                flow_type: 1,
                vlan_id: 0,
                dst_ip: (x as u32).to_be_bytes(),
                src_ip: ((x >> 32) as u32).to_be_bytes(),
                src_port: (x >> 7) as u16,
                dst_port: 53,
                flex_bytes: 0,
            };
            let h = perfect_bucket_hash(&i, &mask);
            assert!(h < 0x2000);
            assert_eq!(h, perfect_bucket_hash(&i, &mask));
            // Bits outside the mask do not change the hash.
            let mut j = i;
            j.flex_bytes = 0xBEEF;
            j.vm_pool = 9;
            assert_eq!(h, perfect_bucket_hash(&j, &mask));
            seen.insert(h);
        }
        // Spread: 2000 random tuples should land in many distinct buckets.
        assert!(seen.len() > 1500, "only {} buckets", seen.len());
    }

    #[test]
    fn zero_input_hashes_to_zero() {
        let z = AtrInput::default();
        assert_eq!(perfect_bucket_hash(&z, &z), 0);
    }
}
