//! One VF function as the driver sees it: the read and write semantics of its BAR0 (facts §2)
//! and the [`floodgate_vfio::Device`]/[`floodgate_vfio::Bar`] implementations.
//!
//! Registers are atomics (in the VF's shared state), so the BAR is `Send + Sync`: the driver writes
//! doorbells from its thread while the engine polls them from another. What a write keeps and
//! which words are read-only or reserved comes from the register table in [`crate::regfile`]:
//! plain registers (ring bases, lengths, doorbells, SRRCTL, …) are one store of the value under
//! the register's write mask; registers with side effects (VFMAILBOX, VFCTRL, the interrupt
//! registers, statistics) go through small handlers.

use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use floodgate_vfio::{Bar, Device, DeviceInfo, DmaRegion};

pub use crate::vfstate::{IrqHandler, VfCounter};

use crate::iommu::Iommu;
use crate::pf;
use crate::regfile;
use crate::regs::*;
use crate::state::NicInner;
use crate::switchport;
use crate::vfstate::VfShared;

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
        // Fast path: ring registers (doorbells are plain stores of the register file's write
        // mask; the statistics and reserved words in the queue blocks have mask 0).
        if (RX_BASE..RX_BASE + 0x200).contains(&offset)
            || (TX_BASE..TX_BASE + 0x200).contains(&offset)
        {
            let mask = regfile::store_mask(offset);
            if mask != 0 {
                vf.reg_atomic(offset).store(value & mask, Ordering::Release);
            }
            return;
        }
        match offset {
            VFCTRL => {
                if value & VFCTRL_RST != 0 {
                    pf::vf_function_reset(&self.nic, vf);
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
                switchport::sync_vf(&self.nic, vf.idx);
            }
            // Plain read/write registers keep their writable bits; read-only and reserved
            // words ignore writes (regfile).
            _ => {
                let mask = regfile::store_mask(offset);
                if mask != 0 {
                    vf.reg_atomic(offset).store(value & mask, Ordering::Release);
                }
            }
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
            pf::deliver_delayed(&self.nic, vf);
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
            pf::mailbox_request(&self.nic, vf);
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
            .map_err(|e| {
                floodgate_vfio::Error::InvalidArgument(floodgate_vfio::ErrorChain(&e).to_string())
            })
    }

    fn dma_unmap(&self, region: &DmaRegion) -> Result<(), floodgate_vfio::Error> {
        self.vf
            .iommu
            .unmap(region.iova(), region.len() as u64)
            .map_err(|e| {
                floodgate_vfio::Error::InvalidArgument(floodgate_vfio::ErrorChain(&e).to_string())
            })
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
