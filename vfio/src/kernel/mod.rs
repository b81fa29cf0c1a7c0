//! The kernel VFIO backend: a PCI function bound to `vfio-pci`, driven from user space.
//!
//! # Giving a VF to floodgate
//!
//! The PF stays with the kernel's `ixgbe` driver; one of its VFs goes to `vfio-pci`:
//!
//! 1. Boot with the IOMMU on: `intel_iommu=on iommu=pt` (AMD: `amd_iommu=on iommu=pt`).
//! 2. Create the VFs: `echo 1 > /sys/class/net/<pf>/device/sriov_numvfs`.
//! 3. Load VFIO: `modprobe vfio-pci`.
//! 4. Hand the VF over (its address is the PF's `virtfnN` link, or `lspci -D`):
//!    ```text
//!    echo <vf> > /sys/bus/pci/devices/<vf>/driver/unbind        # if ixgbevf took it
//!    echo vfio-pci > /sys/bus/pci/devices/<vf>/driver_override
//!    echo <vf> > /sys/bus/pci/drivers_probe
//!    ```
//!    `/dev/vfio/<group>` appears, `<group>` being the VF's `iommu_group` link.
//! 5. Reserve huge pages for DMA memory: `echo 512 > /proc/sys/vm/nr_hugepages`.
//!
//! `scripts/setup-vf.sh <pf> <vf-index>` does all of this. Then
//! [`VfioDevice::open`]`("0000:03:10.0")` checks each step in sysfs and, when one is missing,
//! says which and how to fix it (see [`check_device`]).
//!
//! # What the driver gets
//!
//! [`VfioDevice`] implements [`Device`]: BAR0 as an [`MmapBar`], IOMMU mappings of
//! [`DmaRegion`]s at their own IOVAs (type-1 IOMMU, one container per device), and MSI-X
//! vectors as eventfds to sleep on with [`wait_for`]. Bus mastering is switched on at open,
//! so the device can DMA as soon as regions are mapped.

mod bar;
mod iova;
mod sysfs;

pub use crate::irq::{wait_for, MAX_WAIT_FDS};
pub use bar::MmapBar;
pub use sysfs::{check_device, CheckedDevice, PciAddress, SysfsRoot};

use crate::{Device, DeviceInfo, DmaRegion, Error};
use iova::IovaMap;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use vfio_bindings::bindings::vfio::{
    VFIO_IRQ_INFO_EVENTFD, VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX,
    VFIO_PCI_MSIX_IRQ_INDEX, VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ,
    VFIO_REGION_INFO_FLAG_WRITE,
};
use vfio_ioctls::{VfioContainer, VfioError, VfioOps, VfioRegionInfoCap};
use vmm_sys_util::eventfd::EventFd;

/// PCI command register offset in config space, and its Bus Master Enable bit.
const PCI_COMMAND: u64 = 0x04;
const PCI_COMMAND_MASTER: u16 = 1 << 2;

/// Where [`VfioDevice::open_with`] looks for things. The defaults are the real ones.
#[derive(Debug, Clone)]
pub struct VfioOptions {
    /// The sysfs tree (default `/sys`).
    pub sysfs: SysfsRoot,
    /// The VFIO device node directory (default `/dev/vfio`). Only the checks use it: the
    /// container and group are always opened under `/dev/vfio`, where the kernel puts them.
    pub dev_vfio: PathBuf,
    /// Set Bus Master Enable in the command register at open (default `true`).
    pub bus_master: bool,
}

impl Default for VfioOptions {
    fn default() -> Self {
        VfioOptions {
            sysfs: SysfsRoot::default(),
            dev_vfio: PathBuf::from("/dev/vfio"),
            bus_master: true,
        }
    }
}

/// A PCI function opened through the kernel's VFIO (`vfio-pci`, legacy container/group API).
///
/// Dropping it removes its IOMMU mappings, disables its interrupts and closes the device;
/// [`MmapBar`] clones handed out earlier stay memory-safe (the mapping lives on) but the
/// device no longer belongs to this process's IOMMU domain.
pub struct VfioDevice {
    info: DeviceInfo,
    group: u32,
    sysfs_path: PathBuf,
    /// Shared with BAR0's mapping, which releases it last (see [`DeviceHandle`]).
    device: Arc<DeviceHandle>,
    container: Arc<VfioContainer>,
    bar0: MmapBar,
    mappings: Mutex<IovaMap>,
    msix_enabled: Mutex<u32>,
}

impl std::fmt::Debug for VfioDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VfioDevice")
            .field("info", &self.info)
            .field("iommu_group", &self.group)
            .field("bar0_len", &self.bar0.len())
            .field("bar0_mapped", &self.bar0.is_mapped())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data stays consistent even if a holder panicked: recover it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl VfioDevice {
    /// Opens the PCI function at `address` (`0000:03:10.0`, or `03:10.0`) with the default
    /// options. The function must be bound to vfio-pci; every error says what to do.
    pub fn open(address: &str) -> Result<Self, Error> {
        Self::open_with(address, &VfioOptions::default())
    }

    /// Opens the PCI function at `address`, looking for sysfs and `/dev/vfio` where `opts`
    /// says.
    pub fn open_with(address: &str, opts: &VfioOptions) -> Result<Self, Error> {
        let checked = check_device(address, &opts.sysfs, &opts.dev_vfio)?;
        let location = checked.address.to_string();

        // vfio-ioctls' container API needs no guest-memory type for what we use: `new(None)`
        // (no KVM device), and `vfio_dma_map(iova, size, vaddr)` on raw addresses.
        // `VfioContainer::new` checks the API version and the type-1 v2 IOMMU extension; the
        // IOMMU type is set when the first group joins.
        let container = VfioContainer::new(None).map_err(|e| map_vfio_error(e, &checked))?;
        let container = Arc::new(container);
        let ops: Arc<dyn VfioOps> = container.clone();
        let device = vfio_ioctls::VfioDevice::new(&checked.sysfs_path, ops, false)
            .map_err(|e| map_vfio_error(e, &checked))?;

        let usable = iova::query_iova_ranges(container.as_raw_fd());
        log::debug!("{location}: IOMMU usable IOVA ranges {usable:x?}");

        let mut bar0 = Self::map_bar0(&device, &location)?;
        let device = Arc::new(DeviceHandle {
            device: Some(device),
            sysfs_path: checked.sysfs_path.clone(),
            location: location.clone(),
        });
        // The kernel keeps the device open while BAR0 is mapped (or its fd duplicated for
        // pread), so the device handle is released only after the last BAR0 clone.
        if bar0.release_after(device.clone()).is_err() {
            log::debug!("{location}: BAR0 was shared before the device handle could be tied to it");
        }
        let dev = VfioDevice {
            info: DeviceInfo {
                vendor_id: checked.vendor_id,
                device_id: checked.device_id,
                location,
            },
            group: checked.iommu_group,
            sysfs_path: checked.sysfs_path,
            device,
            container,
            bar0,
            mappings: Mutex::new(IovaMap::new(usable)),
            msix_enabled: Mutex::new(0),
        };
        if opts.bus_master {
            dev.set_bus_master(true)?;
        }
        log::info!(
            "opened {} ({:04x}:{:04x}) through VFIO group {}, BAR0 {} bytes{}",
            dev.info.location,
            dev.info.vendor_id,
            dev.info.device_id,
            dev.group,
            dev.bar0.len(),
            if dev.bar0.is_mapped() {
                ""
            } else {
                " (not mmappable: pread/pwrite access)"
            }
        );
        Ok(dev)
    }

    fn dev(&self) -> &vfio_ioctls::VfioDevice {
        // Always Some outside DeviceHandle's Drop.
        self.device
            .device
            .as_ref()
            .expect("VfioDevice used after its device was released")
    }

    /// A duplicate of the device fd as a `File`, for positioned I/O on its regions.
    fn device_file(device: &vfio_ioctls::VfioDevice, what: &str) -> Result<File, Error> {
        // SAFETY: F_DUPFD_CLOEXEC on an fd the VfioDevice keeps open; the result is new and
        // owned by us (checked below).
        let fd = unsafe { libc::fcntl(device.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if fd < 0 {
            return Err(Error::last_os(format!(
                "duplicating the VFIO device fd for {what}"
            )));
        }
        // SAFETY: fd is a fresh duplicate nothing else owns.
        Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn map_bar0(device: &vfio_ioctls::VfioDevice, location: &str) -> Result<MmapBar, Error> {
        let index = VFIO_PCI_BAR0_REGION_INDEX;
        let size = device.get_region_size(index);
        let flags = device.get_region_flags(index);
        let offset = device.get_region_offset(index);
        let rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
        if size < 4 || flags & rw != rw {
            return Err(Error::Device(format!(
                "BAR0 of {location} is not a usable register BAR (size {size}, VFIO flags \
                 {flags:#x}): is this the right device?"
            )));
        }
        let len = usize::try_from(size)
            .map_err(|_| Error::Device(format!("BAR0 of {location} is {size} bytes")))?;
        // A sparse-mmap capability lists the parts that may be mapped; the whole BAR can be
        // mapped only when one area covers it (for the VFs, whose MSI-X table is in BAR3, it
        // does).
        let whole = device.get_region_caps(index).iter().all(|cap| match cap {
            VfioRegionInfoCap::SparseMmap(s) => {
                s.areas.iter().any(|a| a.offset == 0 && a.size >= size)
            }
            _ => true,
        });
        if flags & VFIO_REGION_INFO_FLAG_MMAP != 0 && whole {
            match MmapBar::map(device_fd(device), offset, len) {
                Ok(bar) => return Ok(bar),
                Err(e) => log::warn!(
                    "{location}: mapping BAR0 failed ({}); using pread/pwrite",
                    crate::ErrorChain(&e)
                ),
            }
        } else {
            log::warn!(
                "{location}: the kernel does not allow mapping all of BAR0; register access \
                 goes through pread/pwrite, one system call each (slow)"
            );
        }
        Ok(MmapBar::from_file(
            Self::device_file(device, "BAR0 access")?,
            offset,
            len,
        ))
    }

    /// The IOMMU group number (`/dev/vfio/<group>`).
    pub fn iommu_group(&self) -> u32 {
        self.group
    }

    /// The device's sysfs directory.
    pub fn sysfs_path(&self) -> &std::path::Path {
        &self.sysfs_path
    }

    /// Reads `buf.len()` bytes of PCI config space at `offset` (through vfio-pci, which
    /// virtualises parts of it).
    pub fn config_read(&self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        let base = self.dev().get_region_offset(VFIO_PCI_CONFIG_REGION_INDEX);
        Self::device_file(self.dev(), "config space")?
            .read_exact_at(buf, base + offset)
            .map_err(|e| {
                Error::io(
                    format!(
                        "reading config space of {} at {offset:#x}",
                        self.info.location
                    ),
                    e,
                )
            })
    }

    /// Writes `buf` to PCI config space at `offset`.
    pub fn config_write(&self, offset: u64, buf: &[u8]) -> Result<(), Error> {
        let base = self.dev().get_region_offset(VFIO_PCI_CONFIG_REGION_INDEX);
        Self::device_file(self.dev(), "config space")?
            .write_all_at(buf, base + offset)
            .map_err(|e| {
                Error::io(
                    format!(
                        "writing config space of {} at {offset:#x}",
                        self.info.location
                    ),
                    e,
                )
            })
    }

    /// Sets or clears Bus Master Enable (PCI command register bit 2). Without it the device's
    /// DMA is blocked. [`VfioDevice::open`] sets it.
    pub fn set_bus_master(&self, on: bool) -> Result<(), Error> {
        let mut cmd = [0u8; 2];
        self.config_read(PCI_COMMAND, &mut cmd)?;
        let old = u16::from_le_bytes(cmd);
        let new = if on {
            old | PCI_COMMAND_MASTER
        } else {
            old & !PCI_COMMAND_MASTER
        };
        if new != old {
            self.config_write(PCI_COMMAND, &new.to_le_bytes())?;
        }
        Ok(())
    }

    /// Resets the function through VFIO (`VFIO_DEVICE_RESET`, a function-level reset) when
    /// the kernel offers one; does nothing otherwise. The ixgbevf bring-up does its own VF
    /// reset through VFCTRL, so this is not needed there.
    pub fn reset(&self) {
        self.dev().reset();
    }

    /// How many MSI-X vectors the device offers.
    pub fn msix_vectors(&self) -> u32 {
        self.dev()
            .get_irq_info(VFIO_PCI_MSIX_IRQ_INDEX)
            .map_or(0, |i| i.count)
    }

    /// Disables MSI-X (and drops the kernel's references to the eventfds). A no-op when it is
    /// not enabled.
    pub fn disable_msix(&self) -> Result<(), Error> {
        let mut enabled = lock(&self.msix_enabled);
        if *enabled == 0 {
            return Ok(());
        }
        self.dev().disable_msix().map_err(|e| {
            Error::Device(format!(
                "disabling MSI-X of {} (VFIO_DEVICE_SET_IRQS): {e}",
                self.info.location
            ))
        })?;
        *enabled = 0;
        Ok(())
    }

    /// Makes the kernel signal MSI-X vector `vector`'s eventfd as if the device had fired it
    /// (`VFIO_DEVICE_SET_IRQS` with `DATA_NONE | ACTION_TRIGGER`). For self-tests of the
    /// interrupt path: it needs [`Device::enable_msix`] first and involves no device register.
    pub fn trigger_msix(&self, vector: u32) -> Result<(), Error> {
        let enabled = *lock(&self.msix_enabled);
        if vector >= enabled {
            return Err(Error::InvalidArgument(format!(
                "MSI-X vector {vector} of {} is not enabled ({enabled} are)",
                self.info.location
            )));
        }
        self.dev()
            .trigger_irq(VFIO_PCI_MSIX_IRQ_INDEX, vector)
            .map_err(|e| {
                Error::Device(format!(
                    "triggering MSI-X vector {vector} of {}: {e}",
                    self.info.location
                ))
            })
    }

    /// Number of live IOMMU mappings made through [`Device::dma_map`].
    pub fn dma_mappings(&self) -> usize {
        lock(&self.mappings).len()
    }
}

/// The device fd, borrowed from the vfio-ioctls device that owns it.
fn device_fd(device: &vfio_ioctls::VfioDevice) -> std::os::fd::BorrowedFd<'_> {
    // SAFETY: the fd stays open as long as `device`, which the borrow is tied to.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(device.as_raw_fd()) }
}

/// Turns a vfio-ioctls error at open into one that says what to do.
fn map_vfio_error(e: VfioError, c: &CheckedDevice) -> Error {
    match e {
        VfioError::OpenContainer(io) => sysfs::node_error(&PathBuf::from("/dev/vfio/vfio"), io),
        VfioError::OpenGroup(io, id) => sysfs::node_error(&PathBuf::from("/dev/vfio").join(id), io),
        VfioError::GroupViable => Error::GroupNotViable {
            group: c.iommu_group,
            address: c.address.to_string(),
            others: vec![
                "(the kernel says so; see `ls -l /sys/kernel/iommu_groups/<group>/devices`)".into(),
            ],
        },
        VfioError::VfioExtension | VfioError::VfioApiVersion => Error::Device(format!(
            "the kernel's VFIO does not offer the type-1 v2 IOMMU ({e}): is the IOMMU on \
             (`intel_iommu=on`) and vfio_iommu_type1 loaded (`modprobe vfio_iommu_type1`)?"
        )),
        other => Error::Device(format!(
            "opening {} through VFIO group {}: {other}",
            c.address, c.iommu_group
        )),
    }
}

/// Explains a failed `VFIO_IOMMU_MAP_DMA`.
fn dma_map_error(e: VfioError, location: &str, iova: u64, len: usize) -> Error {
    let errno = match &e {
        VfioError::IommuDmaMap(s) => Some(s.errno()),
        _ => None,
    };
    let hint = match errno {
        Some(libc::ENOMEM) => {
            ": the locked-memory limit is too low for the pinned pages; run as root or raise \
             RLIMIT_MEMLOCK (`ulimit -l unlimited`, or LimitMEMLOCK= in a systemd unit)"
        }
        Some(libc::EEXIST) => ": the IOVA range is already mapped in this container",
        Some(libc::EINVAL) => {
            ": the IOVA or size is not aligned to the IOMMU page size, or lies outside its \
             address width"
        }
        Some(libc::ENOSPC) => {
            ": the IOMMU has run out of mapping entries (vfio_iommu_type1 dma_entry_limit)"
        }
        _ => "",
    };
    Error::Device(format!(
        "VFIO_IOMMU_MAP_DMA of {len} bytes at IOVA {iova:#x} for {location} failed: {e}{hint}"
    ))
}

impl Device for VfioDevice {
    type Bar = MmapBar;

    fn info(&self) -> DeviceInfo {
        self.info.clone()
    }

    fn bar0(&self) -> MmapBar {
        self.bar0.clone()
    }

    fn dma_map(&self, region: &DmaRegion) -> Result<(), Error> {
        let iova = region.iova();
        let len = region.len();
        let mut maps = lock(&self.mappings);
        maps.check_insert(iova, len as u64)?;
        // SAFETY: the range is the region's own mapping, which it keeps until drop. The region
        // is only ever accessed through raw pointers (DmaRegion hands out no references), which
        // is what vfio_dma_map requires while the device can DMA into it. The pages are pinned
        // by the kernel until unmapped, so a region dropped while still mapped cannot let the
        // device reach memory that is reused elsewhere in this process.
        unsafe { self.container.vfio_dma_map(iova, len, region.as_ptr()) }
            .map_err(|e| dma_map_error(e, &self.info.location, iova, len))?;
        maps.insert(iova, len as u64);
        log::debug!(
            "{}: mapped {len:#x} bytes at IOVA {iova:#x}",
            self.info.location
        );
        Ok(())
    }

    fn dma_unmap(&self, region: &DmaRegion) -> Result<(), Error> {
        let iova = region.iova();
        let len = region.len();
        let mut maps = lock(&self.mappings);
        maps.check_remove(iova, len as u64)?;
        self.container.vfio_dma_unmap(iova, len).map_err(|e| {
            Error::Device(format!(
                "VFIO_IOMMU_UNMAP_DMA of {len} bytes at IOVA {iova:#x} for {}: {e}",
                self.info.location
            ))
        })?;
        maps.remove(iova);
        Ok(())
    }

    fn enable_msix(&self, count: u32) -> Result<Vec<OwnedFd>, Error> {
        let info = self.dev().get_irq_info(VFIO_PCI_MSIX_IRQ_INDEX).copied();
        let available = info.map_or(0, |i| i.count);
        if count == 0 || count > available {
            return Err(Error::InvalidArgument(format!(
                "{} offers {available} MSI-X vectors; cannot enable {count}",
                self.info.location
            )));
        }
        if info.is_some_and(|i| i.flags & VFIO_IRQ_INFO_EVENTFD == 0) {
            return Err(Error::Unsupported("MSI-X eventfd signalling"));
        }
        // Changing the vector count of an enabled MSI-X index is refused by vfio-pci; start
        // from disabled.
        self.disable_msix()?;
        let mut enabled = lock(&self.msix_enabled);
        let efds = (0..count)
            .map(|_| EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::io("creating eventfds for MSI-X", e))?;
        // VFIO_DEVICE_SET_IRQS, DATA_EVENTFD | ACTION_TRIGGER on the MSI-X index, vectors
        // 0..count: the kernel takes its own reference to each eventfd.
        self.dev().enable_msix(efds.iter().collect()).map_err(|e| {
            Error::Device(format!(
                "enabling {count} MSI-X vectors on {} (VFIO_DEVICE_SET_IRQS): {e}",
                self.info.location
            ))
        })?;
        *enabled = count;
        Ok(efds
            .into_iter()
            // SAFETY: into_raw_fd gives up EventFd's ownership of the fd, which we take.
            .map(|e| unsafe { OwnedFd::from_raw_fd(e.into_raw_fd()) })
            .collect())
    }
}

impl Drop for VfioDevice {
    fn drop(&mut self) {
        let _ = self.disable_msix();
        for (iova, len) in lock(&self.mappings).take_all() {
            if let Err(e) = self.container.vfio_dma_unmap(iova, len as usize) {
                log::warn!(
                    "{}: unmapping IOVA {iova:#x} at close: {e}",
                    self.info.location
                );
            }
        }
        // The device itself is closed when the last holder of `self.device` goes: this struct
        // or the last clone of BAR0, after its mapping is gone.
    }
}

/// The vfio-ioctls device, closed when its last holder goes: the [`VfioDevice`] or, usually,
/// the last clone of its BAR0 mapping (a queue may hold one past the device). Closing it while
/// BAR0 is still mapped makes the kernel refuse to detach the group from the container
/// (`VFIO_GROUP_UNSET_CONTAINER`: EBUSY).
struct DeviceHandle {
    /// `Option` only so that Drop can decide how to let go of it; always `Some` otherwise.
    device: Option<vfio_ioctls::VfioDevice>,
    sysfs_path: PathBuf,
    location: String,
}

impl Drop for DeviceHandle {
    fn drop(&mut self) {
        if let Some(device) = self.device.take() {
            // vfio-ioctls' Drop finds the group again through the sysfs `iommu_group` link and
            // panics if it is gone (the device was hot-removed). Leak the fd rather than panic
            // in that case; the kernel cleans up when the process exits.
            if self.sysfs_path.join("iommu_group").exists() {
                drop(device);
            } else {
                log::warn!(
                    "{} disappeared from sysfs; leaving its VFIO fd open",
                    self.location
                );
                std::mem::forget(device);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<VfioDevice>();
        check::<MmapBar>();
    }

    #[test]
    fn dma_errors_explain_errno() {
        let e = VfioError::IommuDmaMap(vmm_sys_util::errno::Error::new(libc::ENOMEM));
        let msg = dma_map_error(e, "0000:03:10.0", 0x1_0000_0000, 4096).to_string();
        assert!(msg.contains("IOVA 0x100000000"), "{msg}");
        assert!(msg.contains("RLIMIT_MEMLOCK"), "{msg}");
        let e = VfioError::IommuDmaMap(vmm_sys_util::errno::Error::new(libc::EINVAL));
        let msg = dma_map_error(e, "x", 0, 1).to_string();
        assert!(msg.contains("address width"), "{msg}");
    }

    #[test]
    fn open_errors_from_vfio_ioctls_become_advice() {
        let c = CheckedDevice {
            address: "0000:03:10.0".parse().unwrap(),
            sysfs_path: PathBuf::from("/sys/bus/pci/devices/0000:03:10.0"),
            vendor_id: 0x8086,
            device_id: 0x10ed,
            iommu_group: 42,
            group_node: PathBuf::from("/dev/vfio/42"),
        };
        let e = map_vfio_error(
            VfioError::OpenGroup(std::io::Error::from_raw_os_error(libc::EBUSY), "42".into()),
            &c,
        );
        assert!(
            matches!(e, Error::GroupBusy { ref path } if path == &PathBuf::from("/dev/vfio/42"))
        );
        let e = map_vfio_error(
            VfioError::OpenContainer(std::io::Error::from_raw_os_error(libc::ENOENT)),
            &c,
        );
        assert!(e.to_string().contains("modprobe vfio-pci"), "{e}");
        let e = map_vfio_error(VfioError::GroupViable, &c);
        assert!(matches!(e, Error::GroupNotViable { group: 42, .. }));
        let e = map_vfio_error(VfioError::VfioExtension, &c);
        assert!(e.to_string().contains("type-1"), "{e}");
    }

    #[test]
    fn open_runs_the_sysfs_checks_first() {
        // A nonexistent sysfs root: the error is about the device, not about /dev/vfio.
        let opts = VfioOptions {
            sysfs: SysfsRoot::new("/nonexistent-floodgate-sysfs"),
            ..Default::default()
        };
        let e = VfioDevice::open_with("0000:03:10.0", &opts).unwrap_err();
        assert!(matches!(e, Error::NoSuchDevice { .. }), "{e}");
        let e = VfioDevice::open_with("bogus", &opts).unwrap_err();
        assert!(matches!(e, Error::BadPciAddress { .. }), "{e}");
    }
}
