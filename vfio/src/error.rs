use std::io;
use std::path::PathBuf;

/// Errors from device access and DMA memory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed; `what` says which step (the OS error is the source, so a
    /// chain-printing caller shows it once).
    #[error("{what}")]
    Io {
        /// The step that failed, e.g. "memfd_create for DMA memory".
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Huge pages were required but none are available.
    #[error(
        "no free 2 MiB huge pages for {bytes} bytes of DMA memory: reserve some with \
         `echo 512 > /proc/sys/vm/nr_hugepages` (or run scripts/setup-vf.sh), or allow the \
         4 KiB fallback"
    )]
    NoHugePages {
        /// How many bytes were requested.
        bytes: usize,
    },
    /// An argument was out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The backend cannot do this.
    #[error("{0} not supported by this device backend")]
    Unsupported(&'static str),
    /// The device or its setup is not usable; the message says what to do.
    #[error("{0}")]
    Device(String),
    /// A PCI address given by the user does not parse.
    #[error(
        "malformed PCI address {address:?}: expected DDDD:BB:DD.F, for example 0000:03:10.0 \
         (`lspci -D` lists them)"
    )]
    BadPciAddress {
        /// What the user wrote.
        address: String,
    },
    /// No PCI function with this address exists.
    #[error(
        "no PCI device {address}: {} does not exist. Check the address with `lspci -D`; a VF \
         exists only after SR-IOV created it, with `scripts/setup-vf.sh <pf> <vf-index>` or \
         `echo 1 > /sys/class/net/<pf>/device/sriov_numvfs`",
        path.display()
    )]
    NoSuchDevice {
        /// The normalised PCI address.
        address: String,
        /// The sysfs directory that was looked for.
        path: PathBuf,
    },
    /// The function has no IOMMU group, so the kernel's IOMMU is off (or absent).
    #[error(
        "{address} has no IOMMU group ({} is missing): the IOMMU is off. Enable VT-d/AMD-Vi in \
         the firmware and boot with `intel_iommu=on iommu=pt` (AMD: `amd_iommu=on iommu=pt`) \
         on the kernel command line; `dmesg | grep -i -e DMAR -e IOMMU` shows whether it is on",
        path.display()
    )]
    NoIommuGroup {
        /// The PCI address.
        address: String,
        /// The `iommu_group` link that was looked for.
        path: PathBuf,
    },
    /// The function is bound to another driver (or none) instead of vfio-pci.
    #[error(
        "{address} is {}, not to vfio-pci. {rebind}",
        match driver { Some(d) => format!("bound to {d}"), None => "bound to no driver".to_string() }
    )]
    NotBoundToVfio {
        /// The PCI address.
        address: String,
        /// The driver that holds it now, if any.
        driver: Option<String>,
        /// How to rebind it: the setup script and the equivalent shell lines.
        rebind: String,
    },
    /// Other devices in the function's IOMMU group are bound to host drivers, so VFIO refuses
    /// the group.
    #[error(
        "IOMMU group {group} of {address} also holds devices that are not bound to vfio-pci: \
         {}. VFIO gives out a group only when every device in it is bound to vfio-pci (or to no \
         driver): rebind those too, or move the card to a slot with its own group (ACS)",
        others.join(", ")
    )]
    GroupNotViable {
        /// The group number.
        group: u32,
        /// The PCI address that was opened.
        address: String,
        /// The offending devices, each as `address (driver)`.
        others: Vec<String>,
    },
    /// A VFIO character device does not exist.
    #[error(
        "{} does not exist: load the VFIO driver with `modprobe vfio-pci` and bind the device to \
         it (inside a container, also pass the device node, e.g. `--device {}`)",
        path.display(), path.display()
    )]
    VfioMissing {
        /// The missing node, `/dev/vfio/vfio` or `/dev/vfio/<group>`.
        path: PathBuf,
    },
    /// The VFIO group device exists but this user may not open it.
    #[error(
        "permission denied on {}: run as root, or hand the group to your user with \
         `chown $USER {}` (a non-root user also needs a locked-memory limit, `ulimit -l`, as \
         large as the DMA memory)",
        path.display(), path.display()
    )]
    PermissionDenied {
        /// The node that could not be opened.
        path: PathBuf,
    },
    /// Another process already holds the VFIO group.
    #[error(
        "{} is busy: another process (another floodgate, QEMU or DPDK) has the IOMMU group \
         open, and VFIO allows one user per group",
        path.display()
    )]
    GroupBusy {
        /// The group node.
        path: PathBuf,
    },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
    pub(crate) fn last_os(what: impl Into<String>) -> Self {
        Error::io(what, io::Error::last_os_error())
    }
}

/// Shows an error with its chain of sources, `what failed: why: root cause`, for log lines and
/// messages built outside `anyhow` (which does the same with `{:#}`). The errors of the
/// workspace's libraries say in their own text what failed and leave the why to their source,
/// so printing an error alone with `{}` would drop the reason.
///
/// ```
/// use floodgate_vfio::ErrorChain;
/// let e = std::io::Error::new(std::io::ErrorKind::Other, "no space");
/// assert_eq!(ErrorChain(&e).to_string(), "no space");
/// ```
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            write!(f, ": {e}")?;
            next = e.source();
        }
        Ok(())
    }
}

impl std::fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_error_shows_what_failed_and_then_why_once() {
        let e = Error::io(
            "memfd_create for DMA memory",
            io::Error::from_raw_os_error(libc::ENOMEM),
        );
        assert_eq!(e.to_string(), "memfd_create for DMA memory");
        let shown = ErrorChain(&e).to_string();
        assert!(
            shown.starts_with("memfd_create for DMA memory: ") && shown.contains("memory"),
            "{shown}"
        );
        assert_eq!(shown.matches("memfd_create").count(), 1, "{shown}");
        assert_eq!(
            shown.len(),
            "memfd_create for DMA memory: ".len()
                + io::Error::from_raw_os_error(libc::ENOMEM).to_string().len(),
            "{shown}"
        );
    }
}
