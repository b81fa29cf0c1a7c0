//! # floodgate-vfio
//!
//! Device access for the floodgate poll-mode driver:
//!
//! * [`Bar`]: 32-bit register access to a PCI BAR. Implemented for a VFIO-mapped BAR (volatile
//!   MMIO), by the NIC model in `floodgate-sim`, and by the vfio-user client.
//! * [`DmaRegion`]: DMA memory backed by a memfd (so it can be handed to another process, the way
//!   an IOMMU mapping is), on 2 MiB huge pages when available with a fallback to 4 KiB pages.
//! * [`Device`]: what a driver needs from a PCI function: its IDs, BAR0, IOMMU mapping of DMA
//!   regions and (optionally) MSI-X eventfds.
//!
//! * [`kernel::VfioDevice`]: a PCI function bound to the kernel's `vfio-pci`, opened by PCI
//!   address with errors that say how to fix the setup; [`kernel::MmapBar`] is its BAR0.
//! * [`irq::wait_for`]: sleep on MSI-X eventfds instead of spinning.
//!
//! The driver (`floodgate-pmd`) is generic over [`Device`] and therefore over [`Bar`], so the
//! hot path pays nothing for the abstraction: register writes are monomorphised down to a
//! volatile store (real hardware) or an atomic store (the model).

#![deny(missing_docs)]

pub mod dma;
mod error;
pub mod irq;
pub mod kernel;
pub mod user;

pub use dma::{DmaOptions, DmaRegion, HugePages, PageKind};
pub use error::{Error, ErrorChain};

/// 32-bit register access to one PCI BAR.
///
/// Offsets are byte offsets from the start of the BAR and must be 4-byte aligned. Reads of a
/// device that has gone away (surprise removal) return `0xFFFF_FFFF`, exactly as PCIe does; the
/// driver, not the `Bar`, decides what that means.
///
/// Implementations must be cheap to call from the hot path: `write32` on a doorbell is one
/// store.
pub trait Bar: Send + Sync {
    /// Reads the 32-bit register at `offset`.
    fn read32(&self, offset: u32) -> u32;
    /// Writes the 32-bit register at `offset`.
    fn write32(&self, offset: u32, value: u32);
    /// Orders all earlier writes before any later access. Drivers that need a posted write to
    /// reach the device additionally read a status register (the "write flush" of facts §2.1).
    fn flush(&self) {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }
}

impl<B: Bar + ?Sized> Bar for std::sync::Arc<B> {
    #[inline(always)]
    fn read32(&self, offset: u32) -> u32 {
        (**self).read32(offset)
    }
    #[inline(always)]
    fn write32(&self, offset: u32, value: u32) {
        (**self).write32(offset, value)
    }
    #[inline(always)]
    fn flush(&self) {
        (**self).flush()
    }
}

/// PCI identity of a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// PCI vendor ID (0x8086 for Intel).
    pub vendor_id: u16,
    /// PCI device ID (for example 0x10ED for the 82599 VF).
    pub device_id: u16,
    /// Human-readable location: a PCI address such as `0000:03:10.0`, `sim:vf0` or
    /// `vfio-user:/path/to/socket`.
    pub location: String,
}

/// A PCI function a driver can drive: register access, IOMMU mappings and interrupts.
///
/// Implemented by the kernel VFIO backend, the vfio-user client and the in-process NIC model.
pub trait Device: Send + Sync {
    /// Register access handle. Cloning it is cheap (a pointer copy or an `Arc` clone); queues
    /// keep their own clone so the hot path does not go through the device.
    type Bar: Bar + Clone + 'static;

    /// Vendor/device ID and location.
    fn info(&self) -> DeviceInfo;

    /// BAR0, the VF register file (facts §2).
    fn bar0(&self) -> Self::Bar;

    /// Makes `region` visible to the device at `region.iova()`.
    ///
    /// After this call every device access inside `[iova, iova + len)` reaches the region's
    /// memory; accesses outside all mapped regions fault (an IOMMU fault on real hardware, a
    /// recorded fault in the model).
    fn dma_map(&self, region: &DmaRegion) -> Result<(), Error>;

    /// Removes the mapping made by [`Device::dma_map`].
    fn dma_unmap(&self, region: &DmaRegion) -> Result<(), Error>;

    /// Enables `count` MSI-X vectors and returns one eventfd per vector, which becomes readable
    /// when the vector fires. Backends without interrupts return [`Error::Unsupported`].
    fn enable_msix(&self, count: u32) -> Result<Vec<std::os::fd::OwnedFd>, Error> {
        let _ = count;
        Err(Error::Unsupported("MSI-X interrupts"))
    }

    /// Register accesses or requests that failed without the device being gone (a vfio-user
    /// reply that did not come in time). Always 0 for backends that cannot time out.
    fn transport_timeouts(&self) -> u64 {
        0
    }
}
