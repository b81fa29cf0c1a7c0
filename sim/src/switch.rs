//! The receive classifier: flow director, then the L2 pool switch (VEB), then RSS inside the
//! pool (facts §4.1–§4.6, §6.1).
//!
//! The datapath calls [`Switch::classify_into`] for every ingress frame: frames from the wire port
//! and frames a VF transmitted (VEB loopback). The result lists every pool/queue that receives a
//! copy, the RX descriptor fields for each, and whether the frame also leaves on the wire. The
//! hot path takes `&self`, touches no lock and allocates nothing; counters are atomics.
//!
//! Order:
//! 1. the L2 switch computes the candidate pools from the destination MAC and VLAN, replicating
//!    broadcast/multicast per each pool's VMOLR bits, unknown unicast to the PF's default pool;
//! 2. a flow-director perfect-filter hit wins over that and names one absolute queue (or drops);
//! 3. otherwise RSS picks the queue inside each pool (Toeplitz + shared RETA + PSRTYPE.RQPL).
//!
//! ```
//! use floodgate_sim::switch::{Ingress, Switch, Target};
//! use floodgate_sim::fdir::PoolLayout;
//! use floodgate_sim::l2::PoolConfig;
//! use floodgate_sim::ethtool::{FlowType, RxFlowSpec};
//! use floodgate_sim::generator::build_udp4;
//!
//! let mut sw = Switch::new(PoolLayout::new(2, 4).unwrap());
//! sw.set_pool(0, PoolConfig::vf_default([2, 0, 0, 0, 0, 0x10])).unwrap();
//! // Steer UDP/53 to VF 0, queue 1 (ring_cookie selector 1 = VF 0).
//! sw.ethtool_add_ntuple(&RxFlowSpec::new(FlowType::UdpV4).dst_port(53).to_vf(0, 1).at(7)).unwrap();
//! let mut buf = [0u8; 128];
//! // Addressed to the PF's MAC, but the FDIR rule wins.
//! let n = build_udp4(&mut buf, sw.pf_mac(), [2, 9, 9, 9, 9, 9], [1, 2, 3, 4], [10, 0, 0, 1], 999, 53, b"x").unwrap();
//! let c = sw.classify(&buf[..n], Ingress::Wire);
//! let d = c.destinations()[0];
//! assert_eq!((d.target, d.queue, d.abs_queue), (Target::Vf(0), 1, 1));
//! assert_eq!(d.fdir.map(|h| h.id), Some(7));
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

use crate::ethtool::{EthtoolError, IndirSpec, RxFlowSpec, RxfhRequest};
use crate::fdir::{AtrInput, FdirAction, FdirHit, FdirStats, FlowDirector, PoolLayout};
use crate::frame::{FrameInfo, L3};
use crate::l2::{mta_hash, MacTable, Mta, PoolConfig};
use crate::rss::{self, Rss, RssType, RETA_SIZE};
use crate::sink::FrameSink;
use crate::toeplitz::RSS_KEY_LEN;

/// Most destinations one frame can have (one per pool).
pub const MAX_DESTINATIONS: usize = 64;

/// Default MAC of the PF (locally administered).
pub const DEFAULT_PF_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0xFE];

/// RX status bit FLM (flow director match), write-back dword 2 (facts §6.1).
pub const STATUS_FLM: u32 = 1 << 2;
/// RX status bit VP (VLAN packet).
pub const STATUS_VP: u32 = 1 << 3;
/// RX status bit LB (loopback, VM-to-VM).
pub const STATUS_LB: u32 = 1 << 18;

/// Where a frame entered the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ingress {
    /// From the wire port.
    Wire,
    /// Transmitted by the pool with this index (a VF, or the PF pool): VEB loopback.
    Pool(u16),
}

/// Who owns a destination pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Target {
    /// The PF ("kernel side").
    #[default]
    Pf,
    /// VF k (0-based).
    Vf(u16),
}

/// One receiving copy of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Destination {
    /// Hardware pool index.
    pub pool: u16,
    /// Owner of the pool.
    pub target: Target,
    /// Queue inside the pool (VF-relative queue number).
    pub queue: u8,
    /// Absolute hardware queue (0..127).
    pub abs_queue: u8,
    /// Toeplitz hash (0 when none).
    pub rss_hash: u32,
    /// RSS type code; 0xF on a flow-director match.
    pub rss_type: u8,
    /// Packet-type bits (dword 0 bits 16:4).
    pub packet_type: u16,
    /// Flow-director hit (FLM), if any.
    pub fdir: Option<FdirHit>,
    /// VLAN TCI of the frame, if tagged.
    pub vlan_tci: Option<u16>,
    /// Frame came from a local pool (VEB loopback; LB status bit).
    pub loopback: bool,
}

impl Destination {
    /// RX write-back dword 0 low half: RSS type (3:0) | packet type (16:4) (facts §6.1).
    pub fn desc_dword0(&self) -> u32 {
        u32::from(self.rss_type & 0xF) | u32::from(self.packet_type) & 0x1FFF0
    }

    /// RX write-back dword 1: the RSS hash, or on a flow-director match the filter id (15:0)
    /// and bucket hash (31:16) (facts §6.1).
    pub fn desc_dword1(&self) -> u32 {
        match self.fdir {
            Some(h) => u32::from(h.id) | u32::from(h.bucket) << 16,
            None => self.rss_hash,
        }
    }

    /// Status bits this classification contributes (FLM, VP, LB); DD/EOP are the DMA's.
    pub fn desc_status_bits(&self) -> u32 {
        let mut s = 0;
        if self.fdir.is_some() {
            s |= STATUS_FLM;
        }
        if self.vlan_tci.is_some() {
            s |= STATUS_VP;
        }
        if self.loopback {
            s |= STATUS_LB;
        }
        s
    }
}

/// Why no pool received a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    Malformed,
    /// A flow-director drop rule matched.
    FdirDrop,
    /// Every candidate pool has receive disabled (VFRE clear).
    RxDisabled,
    /// No pool accepts it (VLAN filter, no BAM/multicast acceptance, ...).
    NoPool,
    /// A flow-director rule names a queue of a pool that does not exist.
    QueueNotInUse,
}

/// Result of classifying one frame. Fixed capacity, no heap.
#[derive(Debug, Clone, Copy)]
pub struct Classification {
    dests: [Destination; MAX_DESTINATIONS],
    len: usize,
    /// The frame (also) leaves on the wire port (VEB: from a pool, not for a local unicast MAC).
    pub to_wire: bool,
    /// Set when no pool receives the frame, except when it only goes to the wire.
    pub drop: Option<DropReason>,
}

impl Default for Classification {
    fn default() -> Self {
        Classification {
            dests: [Destination::default(); MAX_DESTINATIONS],
            len: 0,
            to_wire: false,
            drop: None,
        }
    }
}

impl Classification {
    /// Receiving copies, in ascending pool order (an FDIR hit gives exactly one).
    pub fn destinations(&self) -> &[Destination] {
        &self.dests[..self.len]
    }

    fn reset(&mut self) {
        self.len = 0;
        self.to_wire = false;
        self.drop = None;
    }

    fn push(&mut self, d: Destination) {
        if self.len < MAX_DESTINATIONS {
            self.dests[self.len] = d;
            self.len += 1;
        }
    }
}

/// Switch counters. Every classified frame lands in exactly one of `delivered`, `wire_only`,
/// `dropped_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SwitchStats {
    /// Frames classified.
    pub frames: u64,
    /// Frames with at least one local destination.
    pub delivered: u64,
    /// Local copies in total (replication makes this ≥ `delivered`).
    pub copies: u64,
    /// Frames from a pool that only went to the wire.
    pub wire_only: u64,
    /// Dropped: malformed.
    pub dropped_malformed: u64,
    /// Dropped: FDIR drop rule.
    pub dropped_fdir: u64,
    /// Dropped: receive disabled.
    pub dropped_rx_disabled: u64,
    /// Dropped: no pool accepts it.
    pub dropped_no_pool: u64,
    /// Dropped: FDIR queue in a pool that does not exist.
    pub dropped_queue_not_in_use: u64,
    /// Flow director counters.
    pub fdir: FdirStats,
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    extra_copies: AtomicU64,
    wire_only: AtomicU64,
    malformed: AtomicU64,
    fdir_drop: AtomicU64,
    rx_disabled: AtomicU64,
    no_pool: AtomicU64,
    queue_not_in_use: AtomicU64,
}

/// Switch configuration problems.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwitchError {
    /// Pool index outside the layout.
    #[error("switch: pool {pool} does not exist, the layout has {pools} pools (VFs 0..{vfs}, PF pool {vfs})")]
    NoSuchPool {
        /// Requested pool.
        pool: u16,
        /// Pools in use.
        pools: u16,
        /// VF count (= PF pool index).
        vfs: u16,
    },
}

/// The NIC's receive switch: pools, flow director and RSS of one port.
pub struct Switch {
    layout: PoolLayout,
    pools: Vec<PoolConfig>,
    macs: MacTable,
    /// Pools in unicast promiscuous mode (bit i: pool i's UPE), kept by `rebuild`.
    upe: u64,
    mta: Mta,
    mc_filter_type: u8,
    rss: Rss,
    fdir: FlowDirector,
    counters: Counters,
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch")
            .field("layout", &self.layout)
            .field("pools", &self.pools)
            .field("fdir", &self.fdir)
            .finish()
    }
}

impl Switch {
    /// A switch for `layout`: VF pools empty with receive disabled (until the PF agent pushes
    /// their state), the PF pool with [`DEFAULT_PF_MAC`], the Microsoft RSS key (the Linux
    /// driver's key is random; tests want a fixed one), Linux's default MRQC fields and RETA.
    pub fn new(layout: PoolLayout) -> Switch {
        let mut rss = Rss::new(
            &crate::toeplitz::MICROSOFT_RSS_KEY,
            rss::mrqc::LINUX_DEFAULT,
            1,
        );
        rss.driver_default_reta(u32::from(layout.pf_rss()), layout.sriov());
        let mut sw = Switch {
            layout,
            pools: Vec::new(),
            macs: MacTable::default(),
            upe: 0,
            mta: Mta::default(),
            mc_filter_type: 0,
            rss,
            fdir: FlowDirector::new(),
            counters: Counters::default(),
        };
        sw.resize_pools();
        sw
    }

    fn pf_default_config(&self) -> PoolConfig {
        PoolConfig::pf_default(
            DEFAULT_PF_MAC,
            rss::rqpl_for_queues(self.layout.num_rx_queues_per_pool()),
        )
    }

    fn resize_pools(&mut self) {
        let n = usize::from(self.layout.num_pools());
        let pf = usize::from(self.layout.pf_pool());
        // Keep the PF's settings when the PF pool index moves.
        let pf_cfg = self
            .pools
            .last()
            .cloned()
            .unwrap_or_else(|| self.pf_default_config());
        self.pools
            .truncate(pf.min(self.pools.len().saturating_sub(1)));
        self.pools.resize(pf, PoolConfig::default());
        self.pools.push(pf_cfg);
        debug_assert_eq!(self.pools.len(), n);
        self.rebuild();
    }

    fn rebuild(&mut self) {
        self.macs = MacTable::build(&self.pools);
        self.upe = self
            .pools
            .iter()
            .take(64)
            .enumerate()
            .filter(|(_, p)| p.upe)
            .fold(0, |m, (i, _)| m | 1 << i);
        self.mta.clear();
        for h in self.pools.iter().flat_map(|p| p.mc_hashes.iter()) {
            self.mta.set(*h);
        }
    }

    /// The pool layout.
    pub fn layout(&self) -> &PoolLayout {
        &self.layout
    }

    /// Changes the layout (num_vfs / PF RSS width): like the PF's re-init, VF pools beyond the
    /// new count are dropped, the RETA is rewritten to the driver default, and flow-director
    /// rules are restored with the new queue mapping (facts §4.3).
    pub fn set_layout(&mut self, layout: PoolLayout) {
        self.layout = layout;
        self.resize_pools();
        self.rss
            .driver_default_reta(u32::from(layout.pf_rss()), layout.sriov());
        self.fdir.restore(&layout);
    }

    /// Replaces the state of pool `pool` (VF k = pool k, PF = `layout().pf_pool()`).
    pub fn set_pool(&mut self, pool: u16, cfg: PoolConfig) -> Result<(), SwitchError> {
        let slot = self
            .pools
            .get_mut(usize::from(pool))
            .ok_or(SwitchError::NoSuchPool {
                pool,
                pools: self.layout.num_pools(),
                vfs: self.layout.num_vfs(),
            })?;
        *slot = cfg;
        self.rebuild();
        Ok(())
    }

    /// Current state of pool `pool`.
    pub fn pool(&self, pool: u16) -> Option<&PoolConfig> {
        self.pools.get(usize::from(pool))
    }

    /// The PF pool's first MAC (what frames for the "kernel side" are addressed to).
    pub fn pf_mac(&self) -> [u8; 6] {
        self.pools
            .last()
            .and_then(|p| p.macs.first().copied())
            .unwrap_or(DEFAULT_PF_MAC)
    }

    /// MTA bit-selection mode (`mc_filter_type`, RESET reply word 3).
    pub fn set_mc_filter_type(&mut self, t: u8) {
        self.mc_filter_type = t & 3;
    }

    /// The MTA mode in use.
    pub fn mc_filter_type(&self) -> u8 {
        self.mc_filter_type
    }

    /// Shared RSS state.
    pub fn rss(&self) -> &Rss {
        &self.rss
    }

    /// Shared RSS state, for register-level writes (RSSRK/RETA/MRQC).
    pub fn rss_mut(&mut self) -> &mut Rss {
        &mut self.rss
    }

    /// The flow director.
    pub fn fdir(&self) -> &FlowDirector {
        &self.fdir
    }

    /// `ETHTOOL_SRXCLSRLINS`.
    pub fn ethtool_add_ntuple(&mut self, spec: &RxFlowSpec) -> Result<u32, EthtoolError> {
        let layout = self.layout;
        self.fdir.add_rule(spec, &layout)
    }

    /// `ETHTOOL_SRXCLSRLDEL`.
    pub fn ethtool_del_ntuple(&mut self, location: u32) -> Result<(), EthtoolError> {
        self.fdir.delete_rule(location)
    }

    /// `ETHTOOL_GRXCLSRULE`.
    pub fn ethtool_get_ntuple(&self, location: u32) -> Result<RxFlowSpec, EthtoolError> {
        self.fdir.get_rule(location)
    }

    /// `ETHTOOL_GRXCLSRLALL`: (table size, rule locations).
    pub fn ethtool_ntuple_all(&self) -> (u32, Vec<u32>) {
        self.fdir.locations()
    }

    /// `ethtool -K ntuple on|off`.
    pub fn ethtool_set_ntuple(&mut self, on: bool) {
        self.fdir.set_enabled(on);
    }

    /// `ethtool -X`: `equal N`, `weight ...`, `default`, an explicit table, `hkey`, `hfunc`.
    /// `equal`/`weight` are expanded as ethtool userspace does; the kernel's checks follow
    /// (see [`Rss::ethtool_set_rxfh`]).
    pub fn ethtool_set_rxfh(&mut self, req: &RxfhRequest) -> Result<(), EthtoolError> {
        let nq = self.layout.pf_num_rx_queues();
        let table: Option<[u32; RETA_SIZE]> = match &req.indir {
            IndirSpec::Unchanged => None,
            IndirSpec::Default => Some(rss::equal_table(nq)?),
            IndirSpec::Equal(n) => Some(rss::equal_table(*n)?),
            IndirSpec::Weight(w) => Some(rss::weight_table(w)?),
            IndirSpec::Table(t) => {
                return self.rss.ethtool_set_rxfh(
                    Some(t),
                    req.key.as_deref(),
                    req.hfunc,
                    nq,
                    self.layout.sriov(),
                )
            }
        };
        self.rss.ethtool_set_rxfh(
            table.as_ref().map(|t| &t[..]),
            req.key.as_deref(),
            req.hfunc,
            nq,
            self.layout.sriov(),
        )
    }

    /// `ethtool -x`: (RETA, key).
    pub fn ethtool_get_rxfh(&self) -> ([u8; RETA_SIZE], [u8; RSS_KEY_LEN]) {
        (*self.rss.reta(), *self.rss.key())
    }

    /// Counters.
    pub fn stats(&self) -> SwitchStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SwitchStats {
            frames: l(&c.delivered)
                + l(&c.wire_only)
                + l(&c.malformed)
                + l(&c.fdir_drop)
                + l(&c.rx_disabled)
                + l(&c.no_pool)
                + l(&c.queue_not_in_use),
            delivered: l(&c.delivered),
            copies: l(&c.delivered) + l(&c.extra_copies),
            wire_only: l(&c.wire_only),
            dropped_malformed: l(&c.malformed),
            dropped_fdir: l(&c.fdir_drop),
            dropped_rx_disabled: l(&c.rx_disabled),
            dropped_no_pool: l(&c.no_pool),
            dropped_queue_not_in_use: l(&c.queue_not_in_use),
            fdir: self.fdir.stats(),
        }
    }

    /// Owner of pool `pool`.
    pub fn target_of(&self, pool: u16) -> Target {
        if pool >= self.layout.pf_pool() {
            Target::Pf
        } else {
            Target::Vf(pool)
        }
    }

    /// L2 candidate pools (bitmap) and whether the frame must also leave on the wire.
    fn l2_pools(&self, f: &FrameInfo, ingress: Ingress) -> (u64, bool) {
        let vid = f.vlan_id();
        let mut set = 0u64;
        let from_pool = matches!(ingress, Ingress::Pool(_));
        let mut to_wire = false;
        if f.is_multicast() {
            let bcast = f.is_broadcast();
            let hash = mta_hash(&f.dst_mac, self.mc_filter_type);
            let mta_hit = self.mta.test(hash);
            for (i, p) in self.pools.iter().enumerate() {
                let accept = if bcast {
                    p.bam
                } else {
                    p.mpe || (p.rompe && mta_hit)
                };
                if accept && p.vlan_ok(vid) {
                    set |= 1 << i;
                }
            }
            to_wire = from_pool;
        } else {
            let exact = self.macs.lookup(&f.dst_mac);
            // Only the pools that own the address or are promiscuous are candidates: visit
            // their bits instead of every pool.
            let mut cand = exact | self.upe;
            while cand != 0 {
                let i = cand.trailing_zeros() as usize;
                cand &= cand - 1;
                if self.pools.get(i).is_some_and(|p| p.vlan_ok(vid)) {
                    set |= 1 << i;
                }
            }
            if exact == 0 {
                if from_pool {
                    // VEB: an unknown destination is outside; only promiscuous pools see it.
                    to_wire = true;
                } else {
                    // Unknown unicast from the wire: the default pool (the PF, VT_CTL.DEF_PL).
                    let pf = usize::from(self.layout.pf_pool());
                    if self.pools[pf].vlan_ok(vid) {
                        set |= 1 << pf;
                    }
                }
            }
        }
        if let Ingress::Pool(src) = ingress {
            // The switch never hairpins a frame back to the pool that sent it.
            if src < 64 {
                set &= !(1u64 << src);
            }
        }
        (set, to_wire)
    }

    /// Classifies one frame (see the module docs); convenience wrapper around
    /// [`Switch::classify_into`].
    pub fn classify(&self, frame: &[u8], ingress: Ingress) -> Classification {
        let mut c = Classification::default();
        self.classify_into(frame, ingress, &mut c);
        c
    }

    /// Classifies one frame into `out` (hot path: no allocation, no lock).
    pub fn classify_into(&self, frame: &[u8], ingress: Ingress, out: &mut Classification) {
        out.reset();
        let c = &self.counters;
        let f = match FrameInfo::parse(frame) {
            Ok(f) => f,
            Err(_) => {
                out.drop = Some(DropReason::Malformed);
                c.malformed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let (set, to_wire) = self.l2_pools(&f, ingress);
        out.to_wire = to_wire;
        let loopback = matches!(ingress, Ingress::Pool(_));
        let packet_type = f.packet_type();

        // Flow director: only for frames that are received locally (a VEB frame that only goes
        // out on the wire is not received by this port).
        let looked_up =
            self.fdir.enabled() && self.fdir.mask().is_some() && (set != 0 || !loopback);
        if looked_up {
            let first_pool = if set != 0 {
                set.trailing_zeros() as u8
            } else {
                self.layout.pf_pool() as u8
            };
            match AtrInput::from_frame(&f, first_pool) {
                Some(input) => {
                    if let Some(hit) = self.fdir.lookup(&input) {
                        self.deliver_fdir(&f, hit, packet_type, loopback, out);
                        return;
                    }
                }
                None => {
                    if !matches!(f.l3, L3::None) {
                        self.fdir.count_miss();
                    }
                }
            }
        }

        let (hash, ty) = self.rss.compute(&f);
        let mut any_candidate = false;
        let mut bits = set;
        while bits != 0 {
            let pool = bits.trailing_zeros() as u16;
            bits &= bits - 1;
            let p = &self.pools[usize::from(pool)];
            any_candidate = true;
            if !p.rx_enabled {
                continue;
            }
            let queue = if ty == RssType::None {
                0
            } else {
                self.rss
                    .queue_in_pool(hash, p.rqpl, self.layout.pool_queues(pool))
            };
            let abs = if pool == self.layout.pf_pool() {
                self.layout.pf_ring_reg_idx(u32::from(queue))
            } else {
                self.layout.vf_queue(pool, queue)
            };
            out.push(Destination {
                pool,
                target: self.target_of(pool),
                queue,
                abs_queue: abs as u8,
                rss_hash: hash,
                rss_type: ty as u8,
                packet_type,
                fdir: None,
                vlan_tci: f.vlan_tci,
                loopback,
            });
        }
        if out.len > 0 {
            c.delivered.fetch_add(1, Ordering::Relaxed);
            if out.len > 1 {
                // Only replicated frames pay for a second counter.
                c.extra_copies
                    .fetch_add(out.len as u64 - 1, Ordering::Relaxed);
            }
        } else if any_candidate {
            out.drop = Some(DropReason::RxDisabled);
            c.rx_disabled.fetch_add(1, Ordering::Relaxed);
        } else if to_wire {
            c.wire_only.fetch_add(1, Ordering::Relaxed);
        } else {
            out.drop = Some(DropReason::NoPool);
            c.no_pool.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn deliver_fdir(
        &self,
        f: &FrameInfo,
        hit: FdirHit,
        packet_type: u16,
        loopback: bool,
        out: &mut Classification,
    ) {
        let c = &self.counters;
        let q = match hit.action {
            FdirAction::Drop => {
                out.drop = Some(DropReason::FdirDrop);
                c.fdir_drop.fetch_add(1, Ordering::Relaxed);
                return;
            }
            FdirAction::Queue(q) => q,
        };
        let (pool, queue) = self.layout.pool_of_queue(u32::from(q));
        let Some(p) = self.pools.get(usize::from(pool)) else {
            out.drop = Some(DropReason::QueueNotInUse);
            c.queue_not_in_use.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if !p.rx_enabled {
            out.drop = Some(DropReason::RxDisabled);
            c.rx_disabled.fetch_add(1, Ordering::Relaxed);
            return;
        }
        out.push(Destination {
            pool,
            target: self.target_of(pool),
            queue,
            abs_queue: q,
            rss_hash: 0,
            rss_type: RssType::FdirMatch as u8,
            packet_type,
            fdir: Some(hit),
            vlan_tci: f.vlan_tci,
            loopback,
        });
        c.delivered.fetch_add(1, Ordering::Relaxed);
    }
}

/// The PF's "kernel side": where frames for the PF pool go.
#[derive(Debug)]
pub enum KernelSide {
    /// Count and discard (default).
    Counting {
        /// Frames received.
        frames: u64,
        /// Bytes received.
        bytes: u64,
    },
    /// Write every frame to a host TAP device so real host software sees it.
    Tap {
        /// The TAP device.
        tap: crate::wire::TapDevice,
        /// Frames written.
        frames: u64,
        /// Frames the TAP refused (would block, device gone).
        errors: u64,
    },
}

impl Default for KernelSide {
    fn default() -> Self {
        KernelSide::Counting {
            frames: 0,
            bytes: 0,
        }
    }
}

impl KernelSide {
    /// A sink that writes to `tap`.
    pub fn tap(tap: crate::wire::TapDevice) -> KernelSide {
        KernelSide::Tap {
            tap,
            frames: 0,
            errors: 0,
        }
    }

    /// Hands one frame to the kernel side. Never fails: TAP errors are counted and logged.
    pub fn deliver(&mut self, frame: &[u8]) {
        match self {
            KernelSide::Counting { frames, bytes } => {
                *frames += 1;
                *bytes += frame.len() as u64;
            }
            KernelSide::Tap {
                tap,
                frames,
                errors,
            } => match tap.write_frame(frame) {
                Ok(()) => *frames += 1,
                Err(e) => {
                    *errors += 1;
                    log::debug!(
                        "kernel side: TAP write failed: {e}",
                        e = floodgate_vfio::ErrorChain(&e)
                    );
                }
            },
        }
    }

    /// Frames accepted so far.
    pub fn frames(&self) -> u64 {
        match self {
            KernelSide::Counting { frames, .. } | KernelSide::Tap { frames, .. } => *frames,
        }
    }
}

/// The PF's kernel side (counting sink or TAP) receives PF-pool frames (`Nic::set_pf_sink`).
impl FrameSink for KernelSide {
    fn frame(&mut self, frame: &[u8]) {
        self.deliver(frame);
    }
}
