//! The shared state of one NIC: what the public handles ([`crate::Nic`], [`crate::SimVf`],
//! [`crate::Pf`]) and the engine thread hold through one `Arc`.
//!
//! This module only defines the state and builds it; the datapath ([`crate::datapath`]), the PF
//! agent ([`crate::pf`]) and the register file ([`crate::vf`]) act on it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crate::agent::PfAgent;
use crate::config::NicConfig;
use crate::fdir::PoolLayout;
use crate::iommu::DmaPort;
use crate::pool::{PfPool, PoolState, PoolTable};
use crate::regs;
use crate::sink::FrameSink;
use crate::switch::{Classification, Destination, Switch};
use crate::tx::TxContext;
use crate::vfstate::VfShared;

/// Datapath counters (see [`crate::NicStats`] for their meaning).
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) wire_in: AtomicU64,
    pub(crate) wire_overflow: AtomicU64,
    pub(crate) rx_delivered: AtomicU64,
    pub(crate) pf_delivered: AtomicU64,
    pub(crate) rx_no_desc: AtomicU64,
    pub(crate) rx_missed: AtomicU64,
    pub(crate) rx_queue_disabled: AtomicU64,
    pub(crate) rx_vf_disabled: AtomicU64,
    pub(crate) rx_dma_fault: AtomicU64,
    pub(crate) rx_oversize: AtomicU64,
    pub(crate) rx_link_down: AtomicU64,
    pub(crate) switch_dropped: AtomicU64,
    pub(crate) tx_frames: AtomicU64,
    pub(crate) tx_spoofed: AtomicU64,
    pub(crate) tx_disabled: AtomicU64,
    pub(crate) tx_bad: AtomicU64,
    pub(crate) egress: AtomicU64,
    pub(crate) loopback: AtomicU64,
    pub(crate) fed: AtomicU64,
}

/// Adds one to a counter.
#[inline(always)]
pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Frames held for one RX queue while DROP_EN is clear and the ring is full, each with the
/// switch's destination record (RSS/FDIR fields for the descriptor).
pub(crate) type Backlog = VecDeque<(Vec<u8>, Destination)>;

/// Mutable datapath state (one user at a time: `step`, `complete_tx` or the engine).
pub(crate) struct DataPath {
    pub(crate) ports: Vec<DmaPort>,
    pub(crate) tx_ctx: Vec<[TxContext; regs::MAX_QUEUES]>,
    pub(crate) frame: Vec<u8>,
    /// TSO: the segment being built, and the same with a VLAN tag inserted.
    pub(crate) tso_seg: Vec<u8>,
    pub(crate) tso_tagged: Vec<u8>,
    pub(crate) rx_scratch: Vec<u8>,
    /// Checksum status of the frame being routed (computed at its first VF delivery, shared by
    /// its replicas; reset for every frame).
    pub(crate) rx_csum: Option<u32>,
    pub(crate) tx_macs: Vec<[u8; 6]>,
    pub(crate) cls: Box<Classification>,
    pub(crate) backlog: Vec<Vec<Backlog>>,
    pub(crate) pf_sink: Option<Box<dyn FrameSink>>,
    pub(crate) egress_sink: Option<Box<dyn FrameSink>>,
}

/// Shared model state.
pub(crate) struct NicInner {
    pub(crate) cfg: NicConfig,
    pub(crate) vfs: Vec<Arc<VfShared>>,
    pub(crate) agent: Mutex<PfAgent>,
    pub(crate) pools: RwLock<PoolTable>,
    pub(crate) link_up: AtomicBool,
    /// MAXFRS.MFS: the largest frame (with CRC) the port accepts from the wire: the PF's
    /// MTU + 18, raised by accepted SET_LPE requests (facts §6.4, §3.3).
    pub(crate) max_frame: AtomicU32,
    pub(crate) started: Instant,
    pub(crate) switch: RwLock<Switch>,
    pub(crate) ingress: Mutex<VecDeque<Vec<u8>>>,
    pub(crate) egress: Mutex<VecDeque<Vec<u8>>>,
    pub(crate) capture: AtomicBool,
    pub(crate) dp: Mutex<DataPath>,
    pub(crate) counters: Counters,
}

impl NicInner {
    /// Builds the state of a NIC with `cfg.num_vfs` VFs (clamped to 1..=63, facts §4.1). The
    /// caller pushes the pool state into the switch afterwards.
    pub(crate) fn new(mut cfg: NicConfig) -> NicInner {
        cfg.num_vfs = cfg.num_vfs.clamp(1, 63);
        let n = cfg.num_vfs;
        let vfs: Vec<Arc<VfShared>> = (0..n).map(|i| Arc::new(VfShared::new(i))).collect();
        let pools = PoolTable {
            vfs: (0..n)
                .map(|i| PoolState {
                    mac: cfg
                        .assign_vf_macs
                        .then_some([0x02, 0xf1, 0, 0, 0, i as u8 + 1]),
                    ..PoolState::default()
                })
                .collect(),
            pf: PfPool {
                mac: cfg.pf_mac,
                mtu: cfg.pf_mtu,
                promisc: false,
                pool: n as u16,
            },
            queues_per_pool: cfg.queues_per_pool() as u16,
            num_vfs: n as u16,
        };
        let dp = DataPath {
            ports: vfs.iter().map(|v| DmaPort::new(v.iommu.clone())).collect(),
            tx_ctx: vec![[TxContext::default(); regs::MAX_QUEUES]; n],
            frame: Vec::with_capacity(regs::MAX_FRAME + 4),
            tso_seg: Vec::with_capacity(regs::MAX_FRAME + 4),
            tso_tagged: Vec::with_capacity(regs::MAX_FRAME + 4),
            rx_scratch: Vec::with_capacity(regs::MAX_FRAME + 4),
            rx_csum: None,
            tx_macs: Vec::with_capacity(16),
            cls: Box::default(),
            backlog: (0..n)
                .map(|_| (0..regs::MAX_QUEUES).map(|_| VecDeque::new()).collect())
                .collect(),
            pf_sink: None,
            egress_sink: None,
        };
        let layout =
            PoolLayout::new(n as u16, cfg.pf_rss_queues.clamp(1, 16)).unwrap_or_else(|e| {
                log::warn!(
                    "{e}; using 4 PF RSS queues",
                    e = floodgate_vfio::ErrorChain(&e)
                );
                PoolLayout::new(n as u16, 4).expect("1..=63 VFs and 4 queues is a valid layout")
            });
        if cfg.queues_per_pool.is_none() {
            cfg.queues_per_pool = Some(usize::from(layout.pool_stride()));
        }
        let switch = Switch::new(layout);
        let link = cfg.link_up;
        let capture = cfg.capture_egress;
        let inner = NicInner {
            agent: Mutex::new(PfAgent::new(n)),
            pools: RwLock::new(pools),
            link_up: AtomicBool::new(link),
            max_frame: AtomicU32::new(cfg.pf_mtu + regs::ETH_OVERHEAD),
            started: Instant::now(),
            switch: RwLock::new(switch),
            ingress: Mutex::new(VecDeque::new()),
            egress: Mutex::new(VecDeque::new()),
            capture: AtomicBool::new(capture),
            dp: Mutex::new(dp),
            counters: Counters::default(),
            vfs,
            cfg,
        };
        for v in &inner.vfs {
            v.set_reg(
                regs::VFLINKS,
                if link {
                    regs::LINKS_UP | regs::LINKS_SPEED_10G
                } else {
                    0
                },
            );
        }
        inner
    }
}
