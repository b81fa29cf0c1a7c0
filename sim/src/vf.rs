//! One VF function: its BAR0 register file (facts §2), interrupts, statistics and the
//! [`floodgate_vfio::Device`]/[`floodgate_vfio::Bar`] implementations.
//!
//! Registers are atomics, so the BAR is `Send + Sync`: the driver writes doorbells from its
//! thread while the engine polls them from another. Plain registers (ring bases, lengths,
//! doorbells, SRRCTL, …) are one relaxed store/load; registers with side effects (VFMAILBOX,
//! VFCTRL, the interrupt registers, statistics) go through small handlers.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use floodgate_vfio::{Bar, Device, DeviceInfo, DmaRegion};

use crate::fault::RxCorruption;
use crate::iommu::Iommu;
use crate::regs::*;
use crate::NicInner;

/// Callback invoked when the VF raises MSI-X vector `n` (a vfio-user server installs one that
/// signals the guest's eventfd).
pub type IrqHandler = Arc<dyn Fn(u32) + Send + Sync>;

/// Index of a VF statistics counter (facts §2.2, §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VfCounter {
    /// VFGPRC, good packets received (32-bit).
    Gprc = 0,
    /// VFGPTC, good packets transmitted (32-bit).
    Gptc = 1,
    /// VFMPRC, multicast packets received (32-bit).
    Mprc = 2,
    /// VFGORC, good octets received (36-bit).
    Gorc = 3,
    /// VFGOTC, good octets transmitted (36-bit).
    Gotc = 4,
}

/// Interrupt state and delivery of one VF.
pub(crate) struct Irq {
    counts: [AtomicU64; 32],
    handler: RwLock<Option<IrqHandler>>,
    eventfds: Mutex<Vec<OwnedFd>>,
    has_sink: AtomicBool,
}

impl std::fmt::Debug for Irq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Irq").finish_non_exhaustive()
    }
}

/// Everything one VF owns. Shared (`Arc`) by the BAR handles, the datapath and the engine.
#[derive(Debug)]
pub(crate) struct VfShared {
    pub(crate) idx: usize,
    pub(crate) name: String,
    regs: Box<[AtomicU32]>,
    /// VFMAILBOX as the VF sees it (never contains REQ/ACK).
    pub(crate) mbx: AtomicU32,
    /// VFMAILBOX reads left before a delayed reply lands (fault injection).
    pub(crate) mbx_delay_reads: AtomicU32,
    stats: [AtomicU64; 5],
    pub(crate) iommu: Arc<Iommu>,
    pub(crate) removed: AtomicBool,
    pub(crate) irq: Irq,
    /// Bit q set: TX queue q stalled (fault injection).
    pub(crate) tx_stalled: AtomicU8,
    /// Bit q set: a corruption is pending for RX queue q.
    pub(crate) rx_corrupt_pending: AtomicU8,
    pub(crate) rx_corrupt: Mutex<[Option<RxCorruption>; MAX_QUEUES]>,
    /// Frames dropped for lack of RX descriptors (DROP_EN), per queue.
    pub(crate) rx_no_desc: [AtomicU64; MAX_QUEUES],
    /// Frames lost because the backlog (DROP_EN clear) overflowed, per queue.
    pub(crate) rx_missed: [AtomicU64; MAX_QUEUES],
    /// Frames dropped by MAC anti-spoofing.
    pub(crate) tx_spoofed: AtomicU64,
    /// Malformed TX descriptors seen.
    pub(crate) tx_bad_desc: AtomicU64,
}

impl VfShared {
    pub(crate) fn new(idx: usize) -> Self {
        let name = format!("sim:vf{idx}");
        let regs = (0..BAR0_SIZE / 4).map(|_| AtomicU32::new(0)).collect();
        VfShared {
            idx,
            iommu: Arc::new(Iommu::new(name.clone())),
            name,
            regs,
            mbx: AtomicU32::new(0),
            mbx_delay_reads: AtomicU32::new(0),
            stats: Default::default(),
            removed: AtomicBool::new(false),
            irq: Irq {
                counts: Default::default(),
                handler: RwLock::new(None),
                eventfds: Mutex::new(Vec::new()),
                has_sink: AtomicBool::new(false),
            },
            tx_stalled: AtomicU8::new(0),
            rx_corrupt_pending: AtomicU8::new(0),
            rx_corrupt: Mutex::new([None; MAX_QUEUES]),
            rx_no_desc: Default::default(),
            rx_missed: Default::default(),
            tx_spoofed: AtomicU64::new(0),
            tx_bad_desc: AtomicU64::new(0),
        }
    }

    /// Raw register load (model side; no read side effects).
    #[inline(always)]
    pub(crate) fn reg(&self, off: u32) -> u32 {
        match self.regs.get((off / 4) as usize) {
            Some(r) => r.load(Ordering::Acquire),
            None => 0,
        }
    }

    /// Raw register store (model side).
    #[inline(always)]
    pub(crate) fn set_reg(&self, off: u32, v: u32) {
        if let Some(r) = self.regs.get((off / 4) as usize) {
            r.store(v, Ordering::Release);
        }
    }

    #[inline(always)]
    fn reg_atomic(&self, off: u32) -> &AtomicU32 {
        &self.regs[(off / 4) as usize]
    }

    /// Adds to a statistics counter (wraps at 32 or 36 bits when read).
    #[inline(always)]
    pub(crate) fn count(&self, c: VfCounter, n: u64) {
        self.stats[c as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn counter(&self, c: VfCounter) -> u64 {
        self.stats[c as usize].load(Ordering::Relaxed)
    }

    pub(crate) fn set_counter(&self, c: VfCounter, v: u64) {
        self.stats[c as usize].store(v, Ordering::Relaxed);
    }

    /// Sets bits in VFMAILBOX.
    pub(crate) fn mbx_set(&self, bits: u32) {
        self.mbx.fetch_or(bits, Ordering::AcqRel);
    }

    /// Clears bits in VFMAILBOX.
    pub(crate) fn mbx_clear(&self, bits: u32) {
        self.mbx.fetch_and(!bits, Ordering::AcqRel);
    }

    /// Reads mailbox word `i` (model side).
    pub(crate) fn mbx_word(&self, i: usize) -> u32 {
        self.reg(VFMBMEM + 4 * i as u32)
    }

    /// Writes mailbox word `i` (model side).
    pub(crate) fn set_mbx_word(&self, i: usize, v: u32) {
        self.set_reg(VFMBMEM + 4 * i as u32, v)
    }

    /// Vector of the RX (`tx == false`) or TX cause of queue `q` per VTIVAR, if valid.
    #[inline(always)]
    pub(crate) fn queue_vector(&self, q: usize, tx: bool) -> Option<u32> {
        let ivar = self.reg(VTIVAR0 + 4 * (q as u32 / 2));
        let shift = (q as u32 % 2) * 16 + if tx { 8 } else { 0 };
        let byte = (ivar >> shift) & 0xFF;
        (byte & IVAR_VALID != 0).then_some(byte & 0x1F)
    }

    /// Vector of the mailbox/"other" cause per VTIVAR_MISC, if valid.
    pub(crate) fn misc_vector(&self) -> Option<u32> {
        let byte = self.reg(VTIVAR_MISC) & 0xFF;
        (byte & IVAR_VALID != 0).then_some(byte & 0x1F)
    }

    /// Sets cause bit `vector` in VTEICR and fires it if unmasked.
    #[inline]
    pub(crate) fn raise(&self, vector: u32) {
        let bit = 1u32 << (vector & 31);
        self.reg_atomic(VTEICR).fetch_or(bit, Ordering::AcqRel);
        self.try_fire(bit);
    }

    /// Raises the queue's RX or TX cause, if mapped.
    #[inline]
    pub(crate) fn raise_queue(&self, q: usize, tx: bool) {
        if let Some(v) = self.queue_vector(q, tx) {
            self.raise(v);
        }
    }

    /// Raises the mailbox cause, if mapped.
    pub(crate) fn raise_mailbox(&self) {
        if let Some(v) = self.misc_vector() {
            self.raise(v);
        }
    }

    /// Fires every vector in `bits` that is pending and unmasked (facts §2.1 VTEIMS/VTEIAC/VTEIAM).
    fn try_fire(&self, bits: u32) {
        let pending = self.reg(VTEICR) & self.reg(VTEIMS) & bits;
        if pending == 0 {
            return;
        }
        let eiac = self.reg(VTEIAC);
        let eiam = self.reg(VTEIAM);
        for v in 0..32 {
            let bit = 1u32 << v;
            if pending & bit == 0 {
                continue;
            }
            if eiac & bit != 0 {
                self.reg_atomic(VTEICR).fetch_and(!bit, Ordering::AcqRel);
            }
            if eiam & bit != 0 {
                self.reg_atomic(VTEIMS).fetch_and(!bit, Ordering::AcqRel);
            }
            self.fire(v);
        }
    }

    fn fire(&self, v: u32) {
        self.irq.counts[v as usize].fetch_add(1, Ordering::Relaxed);
        if !self.irq.has_sink.load(Ordering::Acquire) {
            return;
        }
        if let Some(h) = self
            .irq
            .handler
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            h(v);
        }
        let fds = self.irq.eventfds.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(fd) = fds.get(v as usize) {
            let one: u64 = 1;
            // SAFETY: writing 8 bytes from a local u64 to an eventfd we own.
            let rc = unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
            if rc != 8 {
                log::debug!("{}: eventfd write for vector {v} failed", self.name);
            }
        }
    }

    fn update_sink_flag(&self) {
        let has = self
            .irq
            .handler
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
            || !self
                .irq
                .eventfds
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty();
        self.irq.has_sink.store(has, Ordering::Release);
    }

    /// VF function reset (VFCTRL.RST): queues stop, interrupts masked, registers cleared except
    /// TDWBAL/H (facts §2.3: not cleared by FLR).
    pub(crate) fn function_reset(&self) {
        for q in 0..MAX_QUEUES {
            for reg in [
                RDBAL, RDBAH, RDLEN, DCA_RXCTRL, RDH, SRRCTL, RDT, RXDCTL, RSCCTL,
            ] {
                let off = rxq(q, reg);
                if !is_stat(off) {
                    self.set_reg(off, 0);
                }
            }
            for reg in [TDBAL, TDBAH, TDLEN, DCA_TXCTRL, TDH, TDT, TXDCTL] {
                let off = txq(q, reg);
                if !is_stat(off) {
                    self.set_reg(off, 0);
                }
            }
        }
        for off in [VTEICR, VTEIMS, VTEIAC, VTEIAM, VTIVAR_MISC, VFPSRTYPE] {
            self.set_reg(off, 0);
        }
        for i in 0..4 {
            self.set_reg(VTIVAR0 + 4 * i, 0);
        }
        self.mbx_delay_reads.store(0, Ordering::Release);
    }
}

#[inline(always)]
fn is_stat(off: u32) -> bool {
    matches!(
        off,
        VFGPRC | VFGORC_LSB | VFGORC_MSB | VFMPRC | VFGPTC | VFGOTC_LSB | VFGOTC_MSB
    )
}

/// Handle to a VF's BAR0. Cheap to clone (two `Arc`s); implements [`Bar`].
#[derive(Clone)]
pub struct SimBar {
    pub(crate) nic: Arc<NicInner>,
    pub(crate) vf: Arc<VfShared>,
}

impl std::fmt::Debug for SimBar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimBar").field("vf", &self.vf.name).finish()
    }
}

impl Bar for SimBar {
    #[inline]
    fn read32(&self, offset: u32) -> u32 {
        let vf = &*self.vf;
        if vf.removed.load(Ordering::Relaxed) {
            return 0xFFFF_FFFF;
        }
        if offset >= BAR0_SIZE || offset & 3 != 0 {
            return 0;
        }
        match offset {
            VFMAILBOX => self.read_mailbox(),
            // Read clears the pending causes (facts §2.5).
            VTEICR => vf.reg_atomic(VTEICR).swap(0, Ordering::AcqRel),
            VTEICS => vf.reg(VTEICR),
            VTEIMC => 0,
            // 32-bit counters wrap (facts §2.5).
            VFGPRC => vf.counter(VfCounter::Gprc) as u32,
            VFGPTC => vf.counter(VfCounter::Gptc) as u32,
            VFMPRC => vf.counter(VfCounter::Mprc) as u32,
            // 36-bit counters split LSB/MSB (facts §2.2).
            VFGORC_LSB => vf.counter(VfCounter::Gorc) as u32,
            VFGORC_MSB => ((vf.counter(VfCounter::Gorc) >> 32) & 0xF) as u32,
            VFGOTC_LSB => vf.counter(VfCounter::Gotc) as u32,
            VFGOTC_MSB => ((vf.counter(VfCounter::Gotc) >> 32) & 0xF) as u32,
            VFFRTIMER => self.nic.started.elapsed().as_micros() as u32,
            _ => vf.reg(offset),
        }
    }

    #[inline]
    fn write32(&self, offset: u32, value: u32) {
        let vf = &*self.vf;
        if offset >= BAR0_SIZE || offset & 3 != 0 || vf.removed.load(Ordering::Relaxed) {
            return;
        }
        // Fast path: ring registers (doorbells are plain stores).
        if (RX_BASE..RX_BASE + 0x200).contains(&offset)
            || (TX_BASE..TX_BASE + 0x200).contains(&offset)
        {
            if !is_stat(offset) {
                vf.reg_atomic(offset).store(value, Ordering::Release);
            }
            return;
        }
        match offset {
            VFCTRL => {
                if value & VFCTRL_RST != 0 {
                    crate::pf::vf_function_reset(&self.nic, vf);
                }
            }
            VFMAILBOX => self.write_mailbox(value),
            VFSTATUS | VFLINKS | VFFRTIMER | VTEICR => {}
            VTEICS => {
                vf.reg_atomic(VTEICR).fetch_or(value, Ordering::AcqRel);
                vf.try_fire(value);
            }
            VTEIMS => {
                vf.reg_atomic(VTEIMS).fetch_or(value, Ordering::AcqRel);
                // Unmasking a pending cause fires it.
                vf.try_fire(value);
            }
            VTEIMC => {
                vf.reg_atomic(VTEIMS).fetch_and(!value, Ordering::AcqRel);
            }
            VFPSRTYPE => {
                // RQPL tells the switch how many RSS queues the pool uses (facts §2.1).
                vf.reg_atomic(VFPSRTYPE).store(value, Ordering::Release);
                crate::switchport::sync_vf(&self.nic, vf.idx);
            }
            _ => vf.reg_atomic(offset).store(value, Ordering::Release),
        }
    }
}

impl SimBar {
    fn read_mailbox(&self) -> u32 {
        let vf = &*self.vf;
        // A delayed reply (fault injection) lands after N reads.
        if vf.mbx_delay_reads.load(Ordering::Acquire) != 0
            && vf.mbx_delay_reads.fetch_sub(1, Ordering::AcqRel) == 1
        {
            crate::pf::deliver_delayed(&self.nic, vf);
        }
        // PFSTS/PFACK/RSTD are read-to-clear; REQ/ACK are never stored (facts §2.5, §3.1).
        vf.mbx.fetch_and(!MBX_R2C, Ordering::AcqRel)
    }

    fn write_mailbox(&self, value: u32) {
        let vf = &*self.vf;
        // VFU reads back as written; the status bits are read-only to the VF.
        if value & MBX_VFU != 0 {
            vf.mbx_set(MBX_VFU);
        } else {
            vf.mbx_clear(MBX_VFU);
        }
        if value & MBX_REQ != 0 {
            // The REQ write also drops the VF's lock (facts §3.5).
            vf.mbx_clear(MBX_VFU);
            crate::pf::mailbox_request(&self.nic, vf);
        }
        if value & MBX_ACK != 0 {
            vf.mbx_clear(MBX_VFU);
        }
    }
}

/// One simulated VF: a [`Device`] for the driver.
#[derive(Clone)]
pub struct SimVf {
    pub(crate) nic: Arc<NicInner>,
    pub(crate) vf: Arc<VfShared>,
}

impl std::fmt::Debug for SimVf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimVf").field("vf", &self.vf.name).finish()
    }
}

impl SimVf {
    /// VF index.
    pub fn index(&self) -> usize {
        self.vf.idx
    }

    /// The VF's IOMMU table (fault counters, raw fd mapping for a vfio-user server).
    pub fn iommu(&self) -> &Iommu {
        &self.vf.iommu
    }

    /// Installs (or removes) a callback fired with the vector number whenever the VF raises an
    /// unmasked interrupt. A vfio-user server uses it to signal the guest's eventfds.
    pub fn set_irq_handler(&self, h: Option<IrqHandler>) {
        *self
            .vf
            .irq
            .handler
            .write()
            .unwrap_or_else(|e| e.into_inner()) = h;
        self.vf.update_sink_flag();
    }

    /// How many times vector `v` fired.
    pub fn irq_count(&self, v: u32) -> u64 {
        self.vf
            .irq
            .counts
            .get(v as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Sets a statistics counter (tests use it to check wrap-around).
    pub fn set_counter(&self, c: VfCounter, v: u64) {
        self.vf.set_counter(c, v)
    }

    /// Current model-side value of a statistics counter (not truncated).
    pub fn counter(&self, c: VfCounter) -> u64 {
        self.vf.counter(c)
    }

    /// Frames dropped for lack of RX descriptors on queue `q` (SRRCTL.DROP_EN set).
    pub fn rx_no_desc_drops(&self, q: usize) -> u64 {
        self.vf
            .rx_no_desc
            .get(q)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Frames lost on queue `q` because the on-chip backlog overflowed (DROP_EN clear).
    pub fn rx_missed(&self, q: usize) -> u64 {
        self.vf
            .rx_missed
            .get(q)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Frames dropped by MAC anti-spoofing.
    pub fn tx_spoofed(&self) -> u64 {
        self.vf.tx_spoofed.load(Ordering::Relaxed)
    }

    /// Malformed TX descriptors seen.
    pub fn tx_bad_descriptors(&self) -> u64 {
        self.vf.tx_bad_desc.load(Ordering::Relaxed)
    }

    /// DMA faults recorded for this VF.
    pub fn dma_faults(&self) -> u64 {
        self.vf.iommu.faults()
    }
}

impl Device for SimVf {
    type Bar = SimBar;

    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            vendor_id: 0x8086,
            device_id: self.nic.cfg.model.vf_device_id(),
            location: self.vf.name.clone(),
        }
    }

    fn bar0(&self) -> SimBar {
        SimBar {
            nic: self.nic.clone(),
            vf: self.vf.clone(),
        }
    }

    fn dma_map(&self, region: &DmaRegion) -> Result<(), floodgate_vfio::Error> {
        self.vf
            .iommu
            .map_fd(region.iova(), region.len() as u64, region.fd(), 0)
            .map_err(|e| floodgate_vfio::Error::InvalidArgument(e.to_string()))
    }

    fn dma_unmap(&self, region: &DmaRegion) -> Result<(), floodgate_vfio::Error> {
        self.vf
            .iommu
            .unmap(region.iova(), region.len() as u64)
            .map_err(|e| floodgate_vfio::Error::InvalidArgument(e.to_string()))
    }

    fn enable_msix(&self, count: u32) -> Result<Vec<OwnedFd>, floodgate_vfio::Error> {
        if count == 0 || count > NUM_VECTORS {
            return Err(floodgate_vfio::Error::InvalidArgument(format!(
                "{}: {count} MSI-X vectors requested, the VF has {NUM_VECTORS}",
                self.vf.name
            )));
        }
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for _ in 0..count {
            // SAFETY: eventfd has no pointer arguments.
            let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
            if raw < 0 {
                return Err(floodgate_vfio::Error::InvalidArgument(format!(
                    "{}: eventfd: {}",
                    self.vf.name,
                    std::io::Error::last_os_error()
                )));
            }
            // SAFETY: raw is a fresh fd we own.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            let dup = fd.try_clone().map_err(|e| {
                floodgate_vfio::Error::InvalidArgument(format!(
                    "{}: dup eventfd: {e}",
                    self.vf.name
                ))
            })?;
            ours.push(fd);
            theirs.push(dup);
        }
        *self
            .vf
            .irq
            .eventfds
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = ours;
        self.vf.update_sink_flag();
        Ok(theirs)
    }
}
