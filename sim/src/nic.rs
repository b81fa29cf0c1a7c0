//! The public handle of the model, [`Nic`]: building it, its VFs and PF, the wire port's
//! ingress queue and egress capture, the counters, the deterministic [`Nic::step`] and the engines.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::config::NicConfig;
use crate::engine::{Engine, EngineConfig, Feeder, InlineEngine};
use crate::error::SimError;
use crate::fault::{MailboxFault, RxCorruption};
use crate::pf::{self, Pf};
use crate::sink::FrameSink;
use crate::state::{inc, NicInner};
use crate::switch::Ingress;
use crate::switchport;
use crate::vf::SimVf;
use crate::vfstate::VfShared;

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
    pub fn new(cfg: NicConfig) -> Nic {
        let inner = Arc::new(NicInner::new(cfg));
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

    fn check_queue(&self, vf: usize, queue: usize) -> Result<&Arc<VfShared>, SimError> {
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
            self.inner.route(&mut dp, &f, Ingress::Wire);
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
        Feeder::new(self.inner.clone(), vf, queue, &[template])
    }

    /// Like [`Nic::feeder`], with a mix of templates written in turn (the first frame gets
    /// `templates[0]`, the next `templates[1]`, and round again): varied traffic at feeder speed.
    pub fn feeder_mix<T: AsRef<[u8]>>(&self, vf: usize, queue: usize, templates: &[T]) -> Feeder {
        Feeder::new(self.inner.clone(), vf, queue, templates)
    }

    /// Starts the threaded engine.
    pub fn start_engine(&self, cfg: EngineConfig) -> Engine {
        Engine::start(self.inner.clone(), cfg)
    }

    /// The engine's work without a thread: the caller pumps it (see [`InlineEngine`]).
    pub fn inline_engine(&self, cfg: EngineConfig) -> InlineEngine {
        InlineEngine::new(self.inner.clone(), cfg)
    }
}
