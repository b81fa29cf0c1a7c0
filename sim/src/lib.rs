//! # floodgate-sim
//!
//! A register-level model of the Intel 82599/X540 NIC as seen from its SR-IOV virtual
//! functions: the hardware for every floodgate test, demo and benchmark.
//!
//! * [`SimVf`] implements [`floodgate_vfio::Device`]; its BAR0 ([`SimBar`]) is the VF register
//!   file of facts §2 (atomics, so the driver and the engine thread share it).
//! * The PF agent ([`Pf`]) answers the VF mailbox like the Linux `ixgbe` PF (facts §3) and holds
//!   the administrator's per-VF settings.
//! * RX/TX DMA engines use advanced descriptors (facts §6) and reach memory only through a
//!   per-VF IOMMU table; anything else is a recorded fault.
//! * [`Nic::step`] runs the datapath deterministically; [`Nic::start_engine`] runs it on its own
//!   thread; [`Nic::feeder`] fills an RX ring at line rate for benchmarks.
//!
//! ```
//! use floodgate_sim::{Nic, NicConfig, NicModel};
//! use floodgate_vfio::{Bar, Device};
//! let nic = Nic::new(NicConfig { model: NicModel::X82599, num_vfs: 2, ..Default::default() });
//! let vf = nic.vf(0);
//! assert_eq!(vf.info().device_id, 0x10ED);
//! let bar = vf.bar0();
//! bar.write32(0x0000, 0x0400_0000); // VFCTRL.RST
//! assert_eq!(bar.read32(0x02FC) & 0x80, 0x80); // VFMAILBOX.RSTD
//! assert_eq!(bar.read32(0x02FC) & 0x80, 0); // read-to-clear
//! ```

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

pub mod classify;
mod csum;
pub mod engine;
pub mod fault;
pub mod iommu;
pub mod pf;
pub mod pool;
pub mod regs;
mod rx;
pub mod rxcsum;
mod switchport;
mod tx;
pub mod vf;
pub mod vfio_user;
// The receive switch (flow director, L2 pools, RSS) and the wire ports.
pub mod ethtool;
pub mod fdir;
pub mod frame;
pub mod generator;
pub mod l2;
pub mod pcap;
pub mod rss;
pub mod switch;
pub mod toeplitz;
pub mod txoffload;
pub mod wire;

pub use classify::{Classifier, Delivery, Dest, DropReason, FdirHit, Origin, StubClassifier};
pub use engine::{
    Engine, EngineConfig, EngineStats, Feeder, FeederConfig, FrameSink, FrameSource, InlineEngine,
};
pub use fault::{MailboxFault, RxCorruption};
pub use iommu::Iommu;
pub use pf::{Pf, VfLinkState};
pub use pool::{PfPool, PoolState, PoolTable, XcastMode};
pub use vf::{IrqHandler, SimBar, SimVf, VfCounter};

use iommu::DmaPort;
use rx::RxResult;
use tx::{TxContext, TxOne};

/// Errors of the model's control API.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A VF index out of range.
    #[error("no VF {vf}: the model has {num_vfs} VFs")]
    NoSuchVf {
        /// Requested VF.
        vf: usize,
        /// VFs present.
        num_vfs: usize,
    },
    /// A queue index out of range.
    #[error("no queue {queue} on VF {vf}: the PF granted {granted} queues")]
    NoSuchQueue {
        /// VF.
        vf: usize,
        /// Requested queue.
        queue: usize,
        /// Queues per pool.
        granted: usize,
    },
    /// An IOMMU mapping request was refused.
    #[error("IOMMU mapping iova {iova:#x} len {len:#x} refused: {why}")]
    BadMapping {
        /// IOVA.
        iova: u64,
        /// Length.
        len: u64,
        /// Reason.
        why: &'static str,
    },
    /// A control request was refused, with the kernel's reason.
    #[error("{0}")]
    InvalidArgument(String),
    /// A system call failed.
    #[error("{what}: {err}")]
    Os {
        /// What was attempted.
        what: String,
        /// The OS error.
        #[source]
        err: std::io::Error,
    },
}

/// Which silicon the model is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NicModel {
    /// Intel 82599 (VF 8086:10ED).
    #[default]
    X82599,
    /// Intel X540 (VF 8086:1515).
    X540,
}

impl NicModel {
    /// PCI device ID of the VF (facts §1).
    pub fn vf_device_id(self) -> u16 {
        match self {
            NicModel::X82599 => 0x10ED,
            NicModel::X540 => 0x1515,
        }
    }
}

/// Model configuration.
#[derive(Clone)]
pub struct NicConfig {
    /// 82599 or X540.
    pub model: NicModel,
    /// Number of VFs (1..=63).
    pub num_vfs: usize,
    /// Queues per pool; `None` derives it from the pool count (facts §4.1: 4 when VFs+PF ≤ 32,
    /// else 2).
    pub queues_per_pool: Option<usize>,
    /// MAC of the PF netdev.
    pub pf_mac: [u8; 6],
    /// Initial PF MTU.
    pub pf_mtu: u32,
    /// Give each VF a (non-administrative) MAC 02:f1:00:00:00:NN at creation, like older Linux
    /// PFs; when false, RESET answers 0x40000001 until a MAC is set.
    pub assign_vf_macs: bool,
    /// Link up at start.
    pub link_up: bool,
    /// Capture egress frames for [`Nic::take_egress`] (bounded by `egress_limit`).
    pub capture_egress: bool,
    /// Max frames kept for `take_egress` (older ones are counted and dropped).
    pub egress_limit: usize,
    /// Max frames waiting in `inject`'s queue.
    pub ingress_limit: usize,
    /// Frames held per RX queue when SRRCTL.DROP_EN is clear and no descriptor is free.
    pub rx_backlog: usize,
    /// The PF's RSS width (1..=16; `ethtool -L combined`), which sets the flow director's
    /// `num_rx_queues_per_pool` (facts §4.1, §4.3).
    pub pf_rss_queues: u16,
    /// A custom classifier replacing the built-in switch (flow director → L2 → RSS); `None`
    /// uses [`switch::Switch`].
    pub classifier: Option<Arc<dyn Classifier>>,
}

impl Default for NicConfig {
    fn default() -> Self {
        NicConfig {
            model: NicModel::X82599,
            num_vfs: 2,
            queues_per_pool: None,
            pf_mac: switch::DEFAULT_PF_MAC,
            pf_mtu: 1500,
            assign_vf_macs: true,
            link_up: true,
            capture_egress: true,
            egress_limit: 1 << 16,
            ingress_limit: 1 << 16,
            rx_backlog: 256,
            pf_rss_queues: 4,
            classifier: None,
        }
    }
}

impl std::fmt::Debug for NicConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NicConfig")
            .field("model", &self.model)
            .field("num_vfs", &self.num_vfs)
            .field("queues_per_pool", &self.queues_per_pool())
            .field("pf_mtu", &self.pf_mtu)
            .finish_non_exhaustive()
    }
}

impl NicConfig {
    /// Queues per pool in effect.
    pub fn queues_per_pool(&self) -> usize {
        self.queues_per_pool
            .unwrap_or(if self.num_vfs + 1 > 32 { 2 } else { 4 })
            .clamp(1, regs::MAX_QUEUES)
    }
}

/// Datapath counters. Every frame (or replica made by the switch) lands in exactly one of the
/// `rx_*`/`pf_*`/`switch_*` buckets or waits in a backlog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NicStats {
    /// Frames injected from the wire port.
    pub wire_in: u64,
    /// Frames refused because the ingress queue was full.
    pub wire_overflow: u64,
    /// Frames written into a VF RX ring.
    pub rx_delivered: u64,
    /// Frames for the PF's kernel side.
    pub pf_delivered: u64,
    /// Dropped: no free RX descriptor with SRRCTL.DROP_EN set.
    pub rx_no_desc: u64,
    /// Dropped: backlog overflow with DROP_EN clear (missed).
    pub rx_missed: u64,
    /// Dropped: RXDCTL.ENABLE clear, queue not granted, ring invalid or VF removed.
    pub rx_queue_disabled: u64,
    /// Dropped: the VF pool's receive is disabled (VFRE, e.g. the 82599 jumbo rule).
    pub rx_vf_disabled: u64,
    /// Dropped: DMA fault while writing.
    pub rx_dma_fault: u64,
    /// Dropped: longer than the port's max frame (MAXFRS: PF MTU + 18, or a larger accepted
    /// SET_LPE), or than 9728 bytes.
    pub rx_oversize: u64,
    /// Dropped: arrived from the wire while the link was down ([`Nic::set_link`]); a real port
    /// receives nothing then.
    pub rx_link_down: u64,
    /// Dropped by the switch / flow director.
    pub switch_dropped: u64,
    /// Frames fetched from VF TX rings.
    pub tx_frames: u64,
    /// TX frames dropped by MAC anti-spoofing.
    pub tx_spoofed: u64,
    /// TX frames dropped because the pool's transmit is disabled.
    pub tx_disabled: u64,
    /// TX frames dropped for bad descriptors / DMA faults / size.
    pub tx_bad: u64,
    /// Frames that left on the wire.
    pub egress: u64,
    /// Frames looped back VF→VF / VF→PF (VEB).
    pub loopback: u64,
    /// Feeder frames written (fast path).
    pub fed: u64,
}

#[derive(Default)]
struct Counters {
    wire_in: AtomicU64,
    wire_overflow: AtomicU64,
    rx_delivered: AtomicU64,
    pf_delivered: AtomicU64,
    rx_no_desc: AtomicU64,
    rx_missed: AtomicU64,
    rx_queue_disabled: AtomicU64,
    rx_vf_disabled: AtomicU64,
    rx_dma_fault: AtomicU64,
    rx_oversize: AtomicU64,
    rx_link_down: AtomicU64,
    switch_dropped: AtomicU64,
    tx_frames: AtomicU64,
    tx_spoofed: AtomicU64,
    tx_disabled: AtomicU64,
    tx_bad: AtomicU64,
    egress: AtomicU64,
    loopback: AtomicU64,
    fed: AtomicU64,
}

#[inline(always)]
fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Frames held for one RX queue while DROP_EN is clear and the ring is full.
type Backlog = VecDeque<(Vec<u8>, Delivery)>;

/// Mutable datapath state (one user at a time: `step`, `complete_tx` or the engine).
pub(crate) struct DataPath {
    ports: Vec<DmaPort>,
    tx_ctx: Vec<[TxContext; regs::MAX_QUEUES]>,
    frame: Vec<u8>,
    /// TSO: the segment being built, and the same with a VLAN tag inserted.
    tso_seg: Vec<u8>,
    tso_tagged: Vec<u8>,
    rx_scratch: Vec<u8>,
    /// Checksum status of the frame being routed (computed at its first VF delivery, shared by
    /// its replicas; reset for every frame).
    rx_csum: Option<u32>,
    deliveries: Vec<Delivery>,
    tx_macs: Vec<[u8; 6]>,
    cls: Box<switch::Classification>,
    backlog: Vec<Vec<Backlog>>,
    pub(crate) pf_sink: Option<Box<dyn FrameSink>>,
    pub(crate) egress_sink: Option<Box<dyn FrameSink>>,
}

/// Shared model state.
pub(crate) struct NicInner {
    pub(crate) cfg: NicConfig,
    pub(crate) vfs: Vec<Arc<vf::VfShared>>,
    pub(crate) agent: Mutex<pf::PfAgent>,
    pub(crate) pools: RwLock<PoolTable>,
    pub(crate) link_up: AtomicBool,
    /// MAXFRS.MFS: the largest frame (with CRC) the port accepts from the wire: the PF's
    /// MTU + 18, raised by accepted SET_LPE requests (facts §6.4, §3.3).
    pub(crate) max_frame: std::sync::atomic::AtomicU32,
    pub(crate) started: Instant,
    classifier: RwLock<Option<Arc<dyn Classifier>>>,
    has_classifier: AtomicBool,
    pub(crate) switch: RwLock<switch::Switch>,
    ingress: Mutex<VecDeque<Vec<u8>>>,
    egress: Mutex<VecDeque<Vec<u8>>>,
    capture: AtomicBool,
    pub(crate) dp: Mutex<DataPath>,
    counters: Counters,
}

/// The NIC model. Cloning gives another handle to the same NIC.
#[derive(Clone)]
pub struct Nic {
    pub(crate) inner: Arc<NicInner>,
}

impl std::fmt::Debug for Nic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nic").field("cfg", &self.inner.cfg).finish()
    }
}

impl Nic {
    /// Builds a NIC with `cfg.num_vfs` VFs (clamped to 1..=63, facts §4.1).
    pub fn new(mut cfg: NicConfig) -> Nic {
        cfg.num_vfs = cfg.num_vfs.clamp(1, 63);
        let n = cfg.num_vfs;
        let vfs: Vec<Arc<vf::VfShared>> = (0..n).map(|i| Arc::new(vf::VfShared::new(i))).collect();
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
            deliveries: Vec::with_capacity(64),
            tx_macs: Vec::with_capacity(16),
            cls: Box::default(),
            backlog: (0..n)
                .map(|_| (0..regs::MAX_QUEUES).map(|_| VecDeque::new()).collect())
                .collect(),
            pf_sink: None,
            egress_sink: None,
        };
        let classifier = cfg.classifier.clone();
        let layout = fdir::PoolLayout::new(n as u16, cfg.pf_rss_queues.clamp(1, 16))
            .unwrap_or_else(|e| {
                log::warn!("{e}; using 4 PF RSS queues");
                fdir::PoolLayout::new(n as u16, 4)
                    .expect("1..=63 VFs and 4 queues is a valid layout")
            });
        if cfg.queues_per_pool.is_none() {
            cfg.queues_per_pool = Some(usize::from(layout.pool_stride()));
        }
        let switch = switch::Switch::new(layout);
        let link = cfg.link_up;
        let capture = cfg.capture_egress;
        let inner = Arc::new(NicInner {
            agent: Mutex::new(pf::PfAgent::new(n)),
            pools: RwLock::new(pools),
            link_up: AtomicBool::new(link),
            max_frame: std::sync::atomic::AtomicU32::new(cfg.pf_mtu + regs::ETH_OVERHEAD),
            started: Instant::now(),
            has_classifier: AtomicBool::new(classifier.is_some()),
            classifier: RwLock::new(classifier),
            switch: RwLock::new(switch),
            ingress: Mutex::new(VecDeque::new()),
            egress: Mutex::new(VecDeque::new()),
            capture: AtomicBool::new(capture),
            dp: Mutex::new(dp),
            counters: Counters::default(),
            vfs,
            cfg,
        });
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
        switchport::sync_all(&inner);
        Nic { inner }
    }

    /// The configuration.
    pub fn config(&self) -> &NicConfig {
        &self.inner.cfg
    }

    /// Number of VFs.
    pub fn num_vfs(&self) -> usize {
        self.inner.vfs.len()
    }

    /// VF `i`. Panics if `i >= num_vfs()` (a programming error in the caller's setup); use
    /// [`Nic::try_vf`] for a checked version.
    pub fn vf(&self, i: usize) -> SimVf {
        self.try_vf(i).expect("VF index out of range")
    }

    /// VF `i`, checked.
    pub fn try_vf(&self, i: usize) -> Result<SimVf, SimError> {
        let vf = self.inner.vfs.get(i).ok_or(SimError::NoSuchVf {
            vf: i,
            num_vfs: self.inner.vfs.len(),
        })?;
        Ok(SimVf {
            nic: self.inner.clone(),
            vf: vf.clone(),
        })
    }

    /// The PF control handle.
    pub fn pf(&self) -> Pf {
        Pf {
            nic: self.inner.clone(),
        }
    }

    /// Replaces the built-in switch by a custom classifier (`None` restores the switch).
    pub fn set_classifier(&self, c: Option<Arc<dyn Classifier>>) {
        self.inner
            .has_classifier
            .store(c.is_some(), Ordering::Release);
        *self
            .inner
            .classifier
            .write()
            .unwrap_or_else(|e| e.into_inner()) = c;
    }

    /// Link up/down: VFLINKS follows and the PF pings every VF.
    pub fn set_link(&self, up: bool) {
        pf::set_link(&self.inner, up);
    }

    /// Whether the link is up.
    pub fn link_up(&self) -> bool {
        self.inner.link_up.load(Ordering::Acquire)
    }

    /// PF reset: VFs see RSTI, then RSTD; CTS is lost until each VF sends RESET.
    pub fn pf_reset(&self) {
        pf::pf_reset_begin(&self.inner);
        pf::pf_reset_end(&self.inner);
    }

    /// First half of a PF reset: RSTI set, the mailbox goes unanswered.
    pub fn pf_reset_begin(&self) {
        pf::pf_reset_begin(&self.inner);
    }

    /// Second half of a PF reset: RSTI cleared, RSTD set.
    pub fn pf_reset_end(&self) {
        pf::pf_reset_end(&self.inner);
    }

    /// Mailbox fault injection for VF `vf` (`None` removes it).
    pub fn fault_mailbox(&self, vf: usize, fault: Option<MailboxFault>) -> Result<(), SimError> {
        self.pf().fault_mailbox(vf, fault)
    }

    /// Surprise removal: every BAR read returns 0xFFFFFFFF, writes are lost, DMA stops.
    pub fn surprise_remove(&self, vf: usize) -> Result<(), SimError> {
        let v = self.try_vf(vf)?;
        v.vf.removed.store(true, Ordering::Release);
        Ok(())
    }

    /// Corrupts the write-back of the next frame received on (vf, queue).
    pub fn corrupt_next_rx(
        &self,
        vf: usize,
        queue: usize,
        c: RxCorruption,
    ) -> Result<(), SimError> {
        let v = self.check_queue(vf, queue)?;
        v.rx_corrupt.lock().unwrap_or_else(|e| e.into_inner())[queue] = Some(c);
        v.rx_corrupt_pending.fetch_or(1 << queue, Ordering::AcqRel);
        Ok(())
    }

    /// Stalls (or resumes) TX queue (vf, queue): descriptors are not fetched.
    pub fn stall_tx(&self, vf: usize, queue: usize, stalled: bool) -> Result<(), SimError> {
        let v = self.check_queue(vf, queue)?;
        if stalled {
            v.tx_stalled.fetch_or(1 << queue, Ordering::AcqRel);
        } else {
            v.tx_stalled.fetch_and(!(1 << queue), Ordering::AcqRel);
        }
        Ok(())
    }

    fn check_queue(&self, vf: usize, queue: usize) -> Result<&Arc<vf::VfShared>, SimError> {
        let v = self.inner.vfs.get(vf).ok_or(SimError::NoSuchVf {
            vf,
            num_vfs: self.inner.vfs.len(),
        })?;
        let granted = self.inner.cfg.queues_per_pool();
        if queue >= granted {
            return Err(SimError::NoSuchQueue { vf, queue, granted });
        }
        Ok(v)
    }

    /// Total DMA faults recorded across VFs.
    pub fn faults_seen(&self) -> u64 {
        self.inner.vfs.iter().map(|v| v.iommu.faults()).sum()
    }

    /// Queues a frame arriving from the wire; processed by [`Nic::step`] or the engine.
    pub fn inject(&self, frame: &[u8]) {
        let c = &self.inner.counters;
        let mut q = self.inner.ingress.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= self.inner.cfg.ingress_limit {
            inc(&c.wire_overflow);
            return;
        }
        inc(&c.wire_in);
        q.push_back(frame.to_vec());
    }

    /// Frames that left on the wire since the last call, in order.
    pub fn take_egress(&self) -> Vec<Vec<u8>> {
        let mut q = self.inner.egress.lock().unwrap_or_else(|e| e.into_inner());
        q.drain(..).collect()
    }

    /// Turns egress capture for [`Nic::take_egress`] on or off.
    pub fn set_egress_capture(&self, on: bool) {
        self.inner.capture.store(on, Ordering::Release);
    }

    /// Installs a sink for frames that reach the PF's kernel side (a TAP writer, a pcap file).
    pub fn set_pf_sink(&self, sink: Option<Box<dyn FrameSink>>) {
        self.inner
            .dp
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pf_sink = sink;
    }

    /// Installs a sink for egress frames (called in addition to capture).
    pub fn set_egress_sink(&self, sink: Option<Box<dyn FrameSink>>) {
        self.inner
            .dp
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .egress_sink = sink;
    }

    /// Counter snapshot.
    pub fn stats(&self) -> NicStats {
        let c = &self.inner.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NicStats {
            wire_in: l(&c.wire_in),
            wire_overflow: l(&c.wire_overflow),
            rx_delivered: l(&c.rx_delivered),
            pf_delivered: l(&c.pf_delivered),
            rx_no_desc: l(&c.rx_no_desc),
            rx_missed: l(&c.rx_missed),
            rx_queue_disabled: l(&c.rx_queue_disabled),
            rx_vf_disabled: l(&c.rx_vf_disabled),
            rx_dma_fault: l(&c.rx_dma_fault),
            rx_oversize: l(&c.rx_oversize),
            rx_link_down: l(&c.rx_link_down),
            switch_dropped: l(&c.switch_dropped),
            tx_frames: l(&c.tx_frames),
            tx_spoofed: l(&c.tx_spoofed),
            tx_disabled: l(&c.tx_disabled),
            tx_bad: l(&c.tx_bad),
            egress: l(&c.egress),
            loopback: l(&c.loopback),
            fed: l(&c.fed),
        }
    }

    /// Frames waiting in RX backlogs (DROP_EN clear, ring full).
    pub fn rx_backlog_len(&self) -> usize {
        let dp = self.inner.dp.lock().unwrap_or_else(|e| e.into_inner());
        dp.backlog.iter().flatten().map(|q| q.len()).sum()
    }

    /// Deterministic step: transmit pending TX descriptors of every VF queue (with VEB loopback),
    /// retry RX backlogs, then deliver queued ingress frames (switch → RX DMA). Returns the number
    /// of frames processed.
    pub fn step(&self) -> usize {
        let mut dp = self.inner.dp.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        for vf in 0..self.inner.vfs.len() {
            for q in 0..self.inner.cfg.queues_per_pool() {
                n += self.inner.run_tx(&mut dp, vf, q, usize::MAX);
            }
        }
        self.inner.drain_backlogs(&mut dp);
        loop {
            let f = self
                .inner
                .ingress
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            let Some(f) = f else { break };
            self.inner.route(&mut dp, &f, Origin::Wire);
            n += 1;
        }
        n
    }

    /// Processes the TX descriptors of one queue (DD write-back, frames counted and routed).
    /// Returns the number of frames fetched.
    pub fn complete_tx(&self, vf: usize, queue: usize) -> usize {
        if vf >= self.inner.vfs.len() || queue >= self.inner.cfg.queues_per_pool() {
            return 0;
        }
        let mut dp = self.inner.dp.lock().unwrap_or_else(|e| e.into_inner());
        self.inner.run_tx(&mut dp, vf, queue, usize::MAX)
    }

    /// A line-rate feeder writing `template` into RX queue (vf, queue), bypassing the switch.
    pub fn feeder(&self, vf: usize, queue: usize, template: &[u8]) -> Feeder {
        Feeder::new(self.clone(), vf, queue, &[template])
    }

    /// Like [`Nic::feeder`], with a mix of templates written in turn (the first frame gets
    /// `templates[0]`, the next `templates[1]`, and round again): varied traffic at feeder speed.
    pub fn feeder_mix<T: AsRef<[u8]>>(&self, vf: usize, queue: usize, templates: &[T]) -> Feeder {
        Feeder::new(self.clone(), vf, queue, templates)
    }

    /// Starts the threaded engine.
    pub fn start_engine(&self, cfg: EngineConfig) -> Engine {
        Engine::start(self.clone(), cfg)
    }

    /// The engine's work without a thread: the caller pumps it (see [`InlineEngine`]).
    pub fn inline_engine(&self, cfg: EngineConfig) -> InlineEngine {
        InlineEngine::new(self.clone(), cfg)
    }

    pub(crate) fn count_fed(&self, n: u64) {
        self.inner.counters.fed.fetch_add(n, Ordering::Relaxed);
    }
}

impl NicInner {
    /// Fetches up to `max` frames from TX queue (vf, q) and routes them.
    pub(crate) fn run_tx(&self, dp: &mut DataPath, vf: usize, q: usize, max: usize) -> usize {
        let v = &self.vfs[vf];
        if v.removed.load(Ordering::Relaxed) || !tx::tx_pending(v, q) {
            return 0;
        }
        // One look at the pool state per batch: transmit enable and the anti-spoofing MACs.
        let (tx_on, spoofchk) = {
            let pools = self.pools.read().unwrap_or_else(|e| e.into_inner());
            let p = &pools.vfs[vf];
            dp.tx_macs.clear();
            dp.tx_macs.extend(p.mac);
            dp.tx_macs.extend(p.extra_macs.iter().copied());
            (p.tx_enabled, p.spoofchk)
        };
        let c = &self.counters;
        // The switch is read-locked once per batch (the PF agent's pushes wait for its end).
        let sw = (!self.has_classifier.load(Ordering::Acquire))
            .then(|| self.switch.read().unwrap_or_else(|e| e.into_inner()));
        let (mut n, mut bad, mut disabled, mut spoofed, mut good, mut bytes) = (0, 0, 0, 0, 0, 0);
        while n < max {
            let DataPath {
                ports,
                tx_ctx,
                frame,
                tx_macs,
                ..
            } = &mut *dp;
            match tx::tx_one(v, &mut ports[vf], q, &mut tx_ctx[vf][q], frame) {
                TxOne::Idle => break,
                TxOne::Dropped => bad += 1,
                TxOne::Frame => {
                    if !tx_on {
                        disabled += 1;
                    } else if spoofchk && !tx_macs.iter().any(|m| frame[6..12] == m[..]) {
                        spoofed += 1;
                    } else {
                        good += 1;
                        bytes += frame.len() as u64;
                        let f = std::mem::take(&mut dp.frame);
                        match sw.as_deref() {
                            Some(sw) => self.route_switch(dp, &f, Origin::Vf(vf as u16), sw),
                            None => self.route(dp, &f, Origin::Vf(vf as u16)),
                        }
                        dp.frame = f;
                    }
                }
                TxOne::Tso {
                    ctx: octx,
                    ixsm,
                    txsm,
                    vlan,
                } => {
                    // TSO (facts §6.2 TSE): every segment is a frame on the wire, counted in
                    // VFGPTC/VFGOTC like any other.
                    let f = std::mem::take(&mut dp.frame);
                    let mut seg = std::mem::take(&mut dp.tso_seg);
                    let mut tagged = std::mem::take(&mut dp.tso_tagged);
                    let r = txoffload::segment(&f, &octx, ixsm, txsm, &mut seg, |s| {
                        let out: &[u8] = match vlan {
                            Some(tag) => {
                                tagged.clear();
                                tagged.extend_from_slice(&s[..12]);
                                tagged.extend_from_slice(&[0x81, 0x00]);
                                tagged.extend_from_slice(&tag.to_be_bytes());
                                tagged.extend_from_slice(&s[12..]);
                                &tagged
                            }
                            None => s,
                        };
                        if !tx_on {
                            disabled += 1;
                        } else if spoofchk && !dp.tx_macs.iter().any(|m| out[6..12] == m[..]) {
                            spoofed += 1;
                        } else {
                            good += 1;
                            bytes += out.len() as u64;
                            match sw.as_deref() {
                                Some(sw) => self.route_switch(dp, out, Origin::Vf(vf as u16), sw),
                                None => self.route(dp, out, Origin::Vf(vf as u16)),
                            }
                        }
                    });
                    if let Err(e) = r {
                        log::debug!("sim:vf{vf}: TX queue {q}: {e}");
                        bad += 1;
                    }
                    dp.frame = f;
                    dp.tso_seg = seg;
                    dp.tso_tagged = tagged;
                }
            }
            n += 1;
        }
        let add = |a: &AtomicU64, x: u64| {
            if x != 0 {
                a.fetch_add(x, Ordering::Relaxed);
            }
        };
        add(&c.tx_frames, n as u64);
        add(&c.tx_bad, bad);
        add(&c.tx_disabled, disabled);
        add(&c.tx_spoofed, spoofed);
        add(&v.tx_spoofed, spoofed);
        if good != 0 {
            v.count(VfCounter::Gptc, good);
            v.count(VfCounter::Gotc, bytes);
        }
        n
    }

    /// Classifies a frame and hands every replica to its destination.
    pub(crate) fn route(&self, dp: &mut DataPath, frame: &[u8], origin: Origin) {
        if origin == Origin::Wire {
            // Link down (a link-flap fault): nothing arrives from the wire.
            if !self.link_up.load(Ordering::Relaxed) {
                inc(&self.counters.rx_link_down);
                return;
            }
            // The MAC drops frames longer than MAXFRS (CRC included; a VLAN tag may add 4).
            let tagged = frame.get(12..14) == Some(&[0x81, 0x00][..]);
            let limit = self.max_frame.load(Ordering::Relaxed) + if tagged { 4 } else { 0 };
            if frame.len() as u32 + 4 > limit {
                inc(&self.counters.rx_oversize);
                return;
            }
        }
        if self.has_classifier.load(Ordering::Acquire) {
            let cl = self
                .classifier
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some(cl) = cl {
                // A new frame: its checksum status is computed again (route_switch does the same).
                dp.rx_csum = None;
                dp.deliveries.clear();
                {
                    let pools = self.pools.read().unwrap_or_else(|e| e.into_inner());
                    cl.classify(frame, origin, &pools, &mut dp.deliveries);
                }
                for i in 0..dp.deliveries.len() {
                    let d = dp.deliveries[i];
                    self.deliver_one(dp, frame, d);
                }
                return;
            }
        }
        let sw = self.switch.read().unwrap_or_else(|e| e.into_inner());
        self.route_switch(dp, frame, origin, &sw);
    }

    /// The built-in path: flow director → L2 pools → RSS ([`switch::Switch`]).
    fn route_switch(&self, dp: &mut DataPath, frame: &[u8], origin: Origin, sw: &switch::Switch) {
        let ingress = match origin {
            Origin::Wire => switch::Ingress::Wire,
            Origin::Vf(v) => switch::Ingress::Pool(v),
            Origin::Pf => switch::Ingress::Pool(self.vfs.len() as u16),
        };
        // A new frame: its checksum status is computed at its first VF delivery.
        dp.rx_csum = None;
        sw.classify_into(frame, ingress, &mut dp.cls);
        for i in 0..dp.cls.destinations().len() {
            let d = dp.cls.destinations()[i];
            let dest = match d.target {
                switch::Target::Vf(vf) => Dest::Vf {
                    vf,
                    queue: u16::from(d.queue),
                },
                switch::Target::Pf => Dest::Pf {
                    queue: u16::from(d.queue),
                },
            };
            let del = Delivery {
                dest,
                rss_hash: d.rss_hash,
                rss_type: d.rss_type,
                fdir: d.fdir.map(|h| FdirHit {
                    id: h.id,
                    hash: h.bucket,
                }),
                loopback: d.loopback,
            };
            self.deliver_one(dp, frame, del);
        }
        if dp.cls.to_wire {
            self.deliver_one(dp, frame, Delivery::to(Dest::Wire));
        }
        match dp.cls.drop {
            Some(switch::DropReason::RxDisabled) => inc(&self.counters.rx_vf_disabled),
            Some(_) => inc(&self.counters.switch_dropped),
            None => {}
        }
    }

    /// Hands one replica to its destination.
    fn deliver_one(&self, dp: &mut DataPath, frame: &[u8], d: Delivery) {
        let c = &self.counters;
        match d.dest {
            Dest::Vf { vf, queue } => {
                if d.loopback {
                    inc(&c.loopback);
                }
                self.rx_one(dp, vf as usize, queue as usize, frame, &d, true);
            }
            Dest::Pf { .. } => {
                if d.loopback {
                    inc(&c.loopback);
                }
                inc(&c.pf_delivered);
                if let Some(s) = dp.pf_sink.as_mut() {
                    s.frame(frame);
                }
            }
            Dest::Wire => {
                inc(&c.egress);
                if let Some(s) = dp.egress_sink.as_mut() {
                    s.frame(frame);
                }
                if self.capture.load(Ordering::Relaxed) {
                    let mut e = self.egress.lock().unwrap_or_else(|e| e.into_inner());
                    if e.len() >= self.cfg.egress_limit {
                        e.pop_front();
                    }
                    e.push_back(frame.to_vec());
                }
            }
            Dest::Drop(_) => inc(&c.switch_dropped),
        }
    }

    /// Delivers one replica to a VF queue, honouring VFRE, RXDCTL and DROP_EN.
    fn rx_one(
        &self,
        dp: &mut DataPath,
        vf: usize,
        q: usize,
        frame: &[u8],
        d: &Delivery,
        may_backlog: bool,
    ) -> bool {
        let c = &self.counters;
        let Some(v) = self.vfs.get(vf) else {
            inc(&c.switch_dropped);
            return true;
        };
        if v.removed.load(Ordering::Relaxed) || q >= self.cfg.queues_per_pool() {
            inc(&c.rx_queue_disabled);
            return true;
        }
        let rx_on = self.pools.read().unwrap_or_else(|e| e.into_inner()).vfs[vf].rx_enabled;
        if !rx_on {
            inc(&c.rx_vf_disabled);
            return true;
        }
        // Keep order: if frames already wait for this queue, queue behind them.
        if may_backlog && !dp.backlog[vf][q].is_empty() {
            return self.backlog_push(dp, v, vf, q, frame, d);
        }
        let DataPath {
            ports,
            rx_scratch,
            rx_csum,
            ..
        } = &mut *dp;
        match rx::deliver(
            v,
            &mut ports[vf],
            q,
            frame,
            d,
            rx_scratch,
            self.cfg.model,
            rx_csum,
        ) {
            RxResult::Delivered => {
                inc(&c.rx_delivered);
                true
            }
            RxResult::QueueDisabled => {
                inc(&c.rx_queue_disabled);
                true
            }
            RxResult::DmaFault => {
                inc(&c.rx_dma_fault);
                true
            }
            RxResult::Oversize => {
                inc(&c.rx_oversize);
                true
            }
            RxResult::NoDesc => {
                let drop_en = !matches!(rx::RxRing::load(v, q), Some(r) if !r.drop_en());
                if drop_en {
                    inc(&c.rx_no_desc);
                    v.rx_no_desc[q].fetch_add(1, Ordering::Relaxed);
                    true
                } else if may_backlog {
                    self.backlog_push(dp, v, vf, q, frame, d)
                } else {
                    false
                }
            }
        }
    }

    fn backlog_push(
        &self,
        dp: &mut DataPath,
        v: &vf::VfShared,
        vf: usize,
        q: usize,
        frame: &[u8],
        d: &Delivery,
    ) -> bool {
        let b = &mut dp.backlog[vf][q];
        if b.len() >= self.cfg.rx_backlog {
            inc(&self.counters.rx_missed);
            v.rx_missed[q].fetch_add(1, Ordering::Relaxed);
        } else {
            b.push_back((frame.to_vec(), *d));
        }
        true
    }

    /// Retries frames held back by DROP_EN = 0.
    fn drain_backlogs(&self, dp: &mut DataPath) {
        for vf in 0..dp.backlog.len() {
            for q in 0..regs::MAX_QUEUES {
                while let Some((f, d)) = dp.backlog[vf][q].pop_front() {
                    dp.rx_csum = None;
                    if !self.rx_one(dp, vf, q, &f, &d, false) {
                        dp.backlog[vf][q].push_front((f, d));
                        break;
                    }
                }
            }
        }
    }
}
