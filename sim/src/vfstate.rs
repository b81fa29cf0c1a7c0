//! The state one VF function owns, shared by its BAR handles, the datapath and the engine: the
//! BAR0 register words (facts §2), the mailbox as the VF sees it, statistics, interrupt state
//! and delivery (facts §2.1, §2.5), the IOMMU table and the fault-injection switches.
//!
//! The driver-facing side (the BAR's read and write semantics, the [`floodgate_vfio::Device`])
//! is [`crate::vf`].

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::fault::RxCorruption;
use crate::iommu::Iommu;
use crate::regs::*;

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
    /// Times each vector fired.
    pub(crate) counts: [AtomicU64; 32],
    /// Callback installed with [`crate::SimVf::set_irq_handler`].
    pub(crate) handler: RwLock<Option<IrqHandler>>,
    /// Eventfds from [`floodgate_vfio::Device::enable_msix`], one per vector.
    pub(crate) eventfds: Mutex<Vec<OwnedFd>>,
    /// A handler or an eventfd is installed.
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
    pub(crate) fn reg_atomic(&self, off: u32) -> &AtomicU32 {
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
    pub(crate) fn try_fire(&self, bits: u32) {
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

    /// Recomputes whether an interrupt sink is installed (after the handler or eventfds change).
    pub(crate) fn update_sink_flag(&self) {
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

/// True for the statistics registers, which the model computes on read.
#[inline(always)]
pub(crate) fn is_stat(off: u32) -> bool {
    matches!(
        off,
        VFGPRC | VFGORC_LSB | VFGORC_MSB | VFMPRC | VFGPTC | VFGOTC_LSB | VFGOTC_MSB
    )
}
