//! Finding a PCI function in sysfs and checking that VFIO can take it.
//!
//! Every check here reads only sysfs and `/dev/vfio`, under roots that can be moved, so each
//! failure can be reproduced against a fake tree in a temporary directory.

use crate::Error;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Drivers that may hold the other devices of an IOMMU group without making it unusable:
/// vfio-pci itself, pci-stub (binds without touching the device) and pcieport (bridges, which
/// never do DMA of their own and which the kernel lets share a group with a VFIO user).
const GROUP_FRIENDLY_DRIVERS: &[&str] = &["vfio-pci", "pci-stub", "pcieport"];

/// Root of the sysfs tree, `/sys` unless a test or a chroot says otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysfsRoot(PathBuf);

impl Default for SysfsRoot {
    fn default() -> Self {
        SysfsRoot(PathBuf::from("/sys"))
    }
}

impl SysfsRoot {
    /// A sysfs tree rooted at `path` (the directory that has `bus/pci/devices` in it).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SysfsRoot(path.into())
    }

    /// The root directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `<root>/bus/pci/devices/<address>`.
    pub fn device_dir(&self, address: &PciAddress) -> PathBuf {
        self.0.join("bus/pci/devices").join(address.to_string())
    }

    /// `<root>/kernel/iommu_groups/<group>/devices`.
    pub fn group_devices_dir(&self, group: u32) -> PathBuf {
        self.0
            .join("kernel/iommu_groups")
            .join(group.to_string())
            .join("devices")
    }
}

/// A PCI function address, `domain:bus:device.function`, as sysfs and `lspci -D` print it.
///
/// ```
/// use floodgate_vfio::kernel::PciAddress;
/// let a: PciAddress = "03:10.1".parse().unwrap();
/// assert_eq!(a.to_string(), "0000:03:10.1");
/// assert!("0000:03:20.0".parse::<PciAddress>().is_err()); // device numbers stop at 0x1f
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddress {
    /// PCI segment (domain).
    pub domain: u32,
    /// Bus number.
    pub bus: u8,
    /// Device number, 0 to 0x1f.
    pub device: u8,
    /// Function number, 0 to 7.
    pub function: u8,
}

impl FromStr for PciAddress {
    type Err = Error;

    /// Parses `DDDD:BB:DD.F` or the short `BB:DD.F` (domain 0). Hex digits in either case.
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::BadPciAddress {
            address: s.to_string(),
        };
        let hex = |t: &str, max_len: usize| -> Option<u32> {
            if t.is_empty() || t.len() > max_len || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u32::from_str_radix(t, 16).ok()
        };
        let (rest, function) = s.trim().rsplit_once('.').ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split(':').collect();
        let (domain, bus, device) = match parts.as_slice() {
            [d, b, v] => (hex(d, 8).ok_or_else(bad)?, *b, *v),
            [b, v] => (0, *b, *v),
            _ => return Err(bad()),
        };
        let bus = hex(bus, 2).ok_or_else(bad)?;
        let device = hex(device, 2).filter(|d| *d <= 0x1f).ok_or_else(bad)?;
        let function = function
            .parse::<u8>()
            .ok()
            .filter(|f| *f <= 7 && function.len() == 1)
            .ok_or_else(bad)?;
        Ok(PciAddress {
            domain,
            bus: bus as u8,
            device: device as u8,
            function,
        })
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

/// What [`check_device`] found out about a function that VFIO can open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedDevice {
    /// The normalised address.
    pub address: PciAddress,
    /// Its sysfs directory.
    pub sysfs_path: PathBuf,
    /// PCI vendor ID from sysfs.
    pub vendor_id: u16,
    /// PCI device ID from sysfs.
    pub device_id: u16,
    /// IOMMU group number (`/dev/vfio/<group>`).
    pub iommu_group: u32,
    /// The group's device node.
    pub group_node: PathBuf,
}

/// Runs every check that can be made before talking to VFIO, in the order that gives the most
/// useful first error: address, existence, IOMMU, driver, group peers, device nodes.
///
/// `dev_vfio` is normally `/dev/vfio`. Nothing is opened or changed.
pub fn check_device(
    address: &str,
    sysfs: &SysfsRoot,
    dev_vfio: &Path,
) -> Result<CheckedDevice, Error> {
    let address: PciAddress = address.parse()?;
    let dir = sysfs.device_dir(&address);
    if std::fs::symlink_metadata(&dir).is_err() {
        return Err(Error::NoSuchDevice {
            address: address.to_string(),
            path: dir,
        });
    }
    let vendor_id = read_hex_id(&dir.join("vendor"))?;
    let device_id = read_hex_id(&dir.join("device"))?;

    let group_link = dir.join("iommu_group");
    let iommu_group = match link_name(&group_link) {
        Ok(Some(name)) => name.parse::<u32>().map_err(|_| {
            Error::Device(format!(
                "{} points to {name:?}, which is not an IOMMU group number",
                group_link.display()
            ))
        })?,
        Ok(None) => {
            return Err(Error::NoIommuGroup {
                address: address.to_string(),
                path: group_link,
            })
        }
        Err(e) => return Err(Error::io(format!("reading {}", group_link.display()), e)),
    };

    let driver = driver_of(&dir)?;
    if driver.as_deref() != Some("vfio-pci") {
        return Err(Error::NotBoundToVfio {
            address: address.to_string(),
            rebind: rebind_hint(sysfs, &address, &dir, driver.is_some()),
            driver,
        });
    }

    let others = unfriendly_group_peers(sysfs, iommu_group, &address)?;
    if !others.is_empty() {
        return Err(Error::GroupNotViable {
            group: iommu_group,
            address: address.to_string(),
            others,
        });
    }

    let container = dev_vfio.join("vfio");
    if !container.exists() {
        return Err(Error::VfioMissing { path: container });
    }
    let group_node = dev_vfio.join(iommu_group.to_string());
    check_rw_access(&group_node)?;
    check_rw_access(&container)?;

    Ok(CheckedDevice {
        address,
        sysfs_path: dir,
        vendor_id,
        device_id,
        iommu_group,
        group_node,
    })
}

/// Reads a sysfs ID file such as `vendor` (`0x8086\n`).
fn read_hex_id(path: &Path) -> Result<u16, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let t = text.trim();
    let digits = t.strip_prefix("0x").unwrap_or(t);
    u16::from_str_radix(digits, 16).map_err(|_| {
        Error::Device(format!(
            "{} holds {t:?}, not a 16-bit hex ID",
            path.display()
        ))
    })
}

/// The last path component of a symlink's target, `None` when the link does not exist.
fn link_name(link: &Path) -> io::Result<Option<String>> {
    match std::fs::read_link(link) {
        Ok(target) => Ok(target.file_name().map(|n| n.to_string_lossy().into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The driver bound to the device in `dir`, from its `driver` link.
fn driver_of(dir: &Path) -> Result<Option<String>, Error> {
    let link = dir.join("driver");
    link_name(&link).map_err(|e| Error::io(format!("reading {}", link.display()), e))
}

/// Members of the group, other than `me`, bound to a driver VFIO does not tolerate.
fn unfriendly_group_peers(
    sysfs: &SysfsRoot,
    group: u32,
    me: &PciAddress,
) -> Result<Vec<String>, Error> {
    let devices = sysfs.group_devices_dir(group);
    let entries = match std::fs::read_dir(&devices) {
        Ok(e) => e,
        // Without the listing we cannot judge; VFIO will say "not viable" if it is not.
        Err(e) => {
            log::debug!("cannot list {}: {e}", devices.display());
            return Ok(Vec::new());
        }
    };
    let mine = me.to_string();
    let mut others = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == mine {
            continue;
        }
        // Group members are links to the device directories; use the bus view of the same
        // device so the driver link is found however the fake or real tree links it.
        let dev_dir = sysfs.path().join("bus/pci/devices").join(&name);
        let dir = if dev_dir.exists() {
            dev_dir
        } else {
            entry.path()
        };
        match driver_of(&dir)? {
            Some(d) if !GROUP_FRIENDLY_DRIVERS.contains(&d.as_str()) => {
                others.push(format!("{name} ({d})"))
            }
            _ => {}
        }
    }
    others.sort();
    Ok(others)
}

/// The rebind advice for a device not bound to vfio-pci: the setup script with the PF and VF
/// index filled in when sysfs tells them, and the equivalent shell lines.
fn rebind_hint(sysfs: &SysfsRoot, address: &PciAddress, dir: &Path, has_driver: bool) -> String {
    let script = match vf_identity(dir, address) {
        Some((pf, index)) => format!("scripts/setup-vf.sh {pf} {index}"),
        None => "scripts/setup-vf.sh <pf> <vf-index>".to_string(),
    };
    let root = sysfs.path().display();
    let mut s = format!("Rebind it with `{script}`, or by hand:\n  modprobe vfio-pci\n");
    if has_driver {
        s += &format!("  echo {address} > {root}/bus/pci/devices/{address}/driver/unbind\n");
    }
    s += &format!(
        "  echo vfio-pci > {root}/bus/pci/devices/{address}/driver_override\n  \
         echo {address} > {root}/bus/pci/drivers_probe"
    );
    s
}

/// For a VF: the PF's network interface name and the VF's index on it.
fn vf_identity(dir: &Path, address: &PciAddress) -> Option<(String, u32)> {
    let pf_dir = dir.join("physfn");
    std::fs::symlink_metadata(&pf_dir).ok()?;
    let me = address.to_string();
    let mut index = None;
    for entry in std::fs::read_dir(&pf_dir).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(n) = name.strip_prefix("virtfn") {
            if link_name(&entry.path()).ok().flatten().as_deref() == Some(me.as_str()) {
                index = n.parse::<u32>().ok();
            }
        }
    }
    let netdev = std::fs::read_dir(pf_dir.join("net"))
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .min()?;
    Some((netdev, index?))
}

/// Checks that `path` exists and that this process may open it read-write.
fn check_rw_access(path: &Path) -> Result<(), Error> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::InvalidArgument(format!("{} has a NUL", path.display())))?;
    // SAFETY: c is a valid NUL-terminated path; access() only reads it.
    if unsafe { libc::access(c.as_ptr(), libc::R_OK | libc::W_OK) } == 0 {
        return Ok(());
    }
    Err(node_error(path, io::Error::last_os_error()))
}

/// Turns an error opening a `/dev/vfio` node into the error that says what to do.
pub(crate) fn node_error(path: &Path, e: io::Error) -> Error {
    let path = path.to_path_buf();
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => Error::VfioMissing { path },
        Some(libc::EACCES) | Some(libc::EPERM) => Error::PermissionDenied { path },
        Some(libc::EBUSY) => Error::GroupBusy { path },
        _ => Error::io(format!("opening {}", path.display()), e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const VF: &str = "0000:03:10.0";
    const PF: &str = "0000:03:00.0";

    /// A fake sysfs + /dev/vfio: one PF (ixgbe, netdev enp3s0f0) with one VF in group 42.
    struct Fake {
        _tmp: tempfile::TempDir,
        sys: SysfsRoot,
        dev: PathBuf,
    }

    impl Fake {
        fn new() -> Fake {
            let tmp = tempfile::tempdir().unwrap();
            let sys = SysfsRoot::new(tmp.path().join("sys"));
            let dev = tmp.path().join("dev/vfio");
            std::fs::create_dir_all(&dev).unwrap();
            std::fs::write(dev.join("vfio"), b"").unwrap();
            std::fs::write(dev.join("42"), b"").unwrap();
            let f = Fake {
                _tmp: tmp,
                sys,
                dev,
            };
            f.add_device(PF, "0x8086", "0x10fb", Some("ixgbe"), Some(7));
            std::fs::create_dir_all(f.dir(PF).join("net/enp3s0f0")).unwrap();
            f.add_device(VF, "0x8086", "0x10ed", Some("vfio-pci"), Some(42));
            symlink(format!("../{PF}"), f.dir(VF).join("physfn")).unwrap();
            symlink(format!("../{VF}"), f.dir(PF).join("virtfn3")).unwrap();
            f
        }

        fn dir(&self, bdf: &str) -> PathBuf {
            self.sys.path().join("bus/pci/devices").join(bdf)
        }

        fn add_device(
            &self,
            bdf: &str,
            vendor: &str,
            device: &str,
            driver: Option<&str>,
            group: Option<u32>,
        ) {
            let d = self.dir(bdf);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("vendor"), format!("{vendor}\n")).unwrap();
            std::fs::write(d.join("device"), format!("{device}\n")).unwrap();
            std::fs::write(d.join("driver_override"), "(null)\n").unwrap();
            self.set_driver(bdf, driver);
            if let Some(g) = group {
                symlink(
                    format!("../../../../kernel/iommu_groups/{g}"),
                    d.join("iommu_group"),
                )
                .unwrap();
                let members = self.sys.group_devices_dir(g);
                std::fs::create_dir_all(&members).unwrap();
                symlink(
                    format!("../../../../bus/pci/devices/{bdf}"),
                    members.join(bdf),
                )
                .unwrap();
            }
        }

        fn set_driver(&self, bdf: &str, driver: Option<&str>) {
            let link = self.dir(bdf).join("driver");
            let _ = std::fs::remove_file(&link);
            if let Some(drv) = driver {
                symlink(format!("../../../../bus/pci/drivers/{drv}"), link).unwrap();
            }
        }

        fn check(&self, addr: &str) -> Result<CheckedDevice, Error> {
            check_device(addr, &self.sys, &self.dev)
        }
    }

    #[test]
    fn good_device_reports_ids_and_group() {
        let f = Fake::new();
        let c = f.check("03:10.0").unwrap();
        assert_eq!(c.address.to_string(), VF);
        assert_eq!((c.vendor_id, c.device_id), (0x8086, 0x10ed));
        assert_eq!(c.iommu_group, 42);
        assert_eq!(c.group_node, f.dev.join("42"));
        assert_eq!(c.sysfs_path, f.dir(VF));
    }

    #[test]
    fn addresses_parse_and_normalise() {
        let a: PciAddress = "0000:AF:1f.7".parse().unwrap();
        assert_eq!(
            a,
            PciAddress {
                domain: 0,
                bus: 0xaf,
                device: 0x1f,
                function: 7
            }
        );
        assert_eq!(a.to_string(), "0000:af:1f.7");
        let b: PciAddress = "10000:00:01.0".parse().unwrap();
        assert_eq!(b.to_string(), "10000:00:01.0");
        for bad in [
            "",
            "03:10",
            "0000:03:10.8",
            "0000:03:20.0",
            "0000:103:10.0",
            "zz:10.0",
            "0000:03:10.0.1",
            "1:2:3:4.0",
            "03:10.01",
        ] {
            let e = bad.parse::<PciAddress>().unwrap_err();
            assert!(
                matches!(e, Error::BadPciAddress { ref address } if address == bad),
                "{bad:?} gave {e}"
            );
        }
    }

    #[test]
    fn malformed_address_says_the_expected_form() {
        let f = Fake::new();
        let msg = f.check("eth0").unwrap_err().to_string();
        assert!(msg.contains("\"eth0\""), "{msg}");
        assert!(msg.contains("DDDD:BB:DD.F"), "{msg}");
        assert!(msg.contains("lspci -D"), "{msg}");
    }

    #[test]
    fn missing_device_points_to_lspci_and_sriov() {
        let f = Fake::new();
        let e = f.check("0000:03:10.2").unwrap_err();
        assert!(matches!(e, Error::NoSuchDevice { ref address, .. } if address == "0000:03:10.2"));
        let msg = e.to_string();
        assert!(msg.contains("lspci -D"), "{msg}");
        assert!(msg.contains("sriov_numvfs"), "{msg}");
        assert!(msg.contains("scripts/setup-vf.sh"), "{msg}");
    }

    #[test]
    fn no_iommu_group_says_how_to_boot() {
        let f = Fake::new();
        std::fs::remove_file(f.dir(VF).join("iommu_group")).unwrap();
        let e = f.check(VF).unwrap_err();
        assert!(matches!(e, Error::NoIommuGroup { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("intel_iommu=on iommu=pt"), "{msg}");
    }

    #[test]
    fn bound_to_ixgbevf_names_driver_and_rebind_steps() {
        let f = Fake::new();
        f.set_driver(VF, Some("ixgbevf"));
        let e = f.check(VF).unwrap_err();
        match &e {
            Error::NotBoundToVfio { driver, .. } => assert_eq!(driver.as_deref(), Some("ixgbevf")),
            other => panic!("wrong error: {other}"),
        }
        let msg = e.to_string();
        let root = f.sys.path().display();
        assert!(msg.contains("bound to ixgbevf, not to vfio-pci"), "{msg}");
        // The PF's netdev and the VF index come from physfn/virtfn3 and physfn/net.
        assert!(msg.contains("scripts/setup-vf.sh enp3s0f0 3"), "{msg}");
        assert!(msg.contains("modprobe vfio-pci"), "{msg}");
        assert!(
            msg.contains(&format!(
                "echo {VF} > {root}/bus/pci/devices/{VF}/driver/unbind"
            )),
            "{msg}"
        );
        assert!(
            msg.contains(&format!(
                "echo vfio-pci > {root}/bus/pci/devices/{VF}/driver_override"
            )),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("echo {VF} > {root}/bus/pci/drivers_probe")),
            "{msg}"
        );
    }

    #[test]
    fn unbound_device_has_no_unbind_line_and_generic_script_for_a_pf() {
        let f = Fake::new();
        f.add_device("0000:05:00.0", "0x8086", "0x1528", None, Some(9));
        let e = f.check("0000:05:00.0").unwrap_err();
        assert!(
            matches!(e, Error::NotBoundToVfio { driver: None, .. }),
            "{e}"
        );
        let msg = e.to_string();
        assert!(msg.contains("bound to no driver"), "{msg}");
        assert!(!msg.contains("unbind"), "{msg}");
        assert!(msg.contains("scripts/setup-vf.sh <pf> <vf-index>"), "{msg}");
    }

    #[test]
    fn group_peers_on_host_drivers_are_named() {
        let f = Fake::new();
        // Two more functions in group 42: one on ixgbe (bad), one bridge on pcieport (fine),
        // and one unbound (fine).
        f.add_device("0000:03:00.1", "0x8086", "0x10fb", Some("ixgbe"), Some(42));
        f.add_device(
            "0000:00:01.0",
            "0x8086",
            "0x0c01",
            Some("pcieport"),
            Some(42),
        );
        f.add_device("0000:03:10.2", "0x8086", "0x10ed", None, Some(42));
        let e = f.check(VF).unwrap_err();
        match &e {
            Error::GroupNotViable { group, others, .. } => {
                assert_eq!(*group, 42);
                assert_eq!(others, &vec!["0000:03:00.1 (ixgbe)".to_string()]);
            }
            other => panic!("wrong error: {other}"),
        }
        assert!(e.to_string().contains("0000:03:00.1 (ixgbe)"));
        // Rebinding the peer makes the group usable.
        f.set_driver("0000:03:00.1", Some("vfio-pci"));
        assert!(f.check(VF).is_ok());
    }

    #[test]
    fn missing_dev_vfio_says_modprobe() {
        let f = Fake::new();
        std::fs::remove_dir_all(&f.dev).unwrap();
        let e = f.check(VF).unwrap_err();
        assert!(matches!(e, Error::VfioMissing { ref path } if *path == f.dev.join("vfio")));
        assert!(e.to_string().contains("modprobe vfio-pci"), "{e}");
    }

    #[test]
    fn missing_group_node_is_reported_with_its_path() {
        let f = Fake::new();
        std::fs::remove_file(f.dev.join("42")).unwrap();
        let e = f.check(VF).unwrap_err();
        assert!(matches!(e, Error::VfioMissing { ref path } if *path == f.dev.join("42")));
        assert!(e.to_string().contains("/dev/vfio/42"), "{e}");
    }

    #[test]
    fn open_errors_map_to_advice() {
        let p = Path::new("/dev/vfio/42");
        let e = node_error(p, io::Error::from_raw_os_error(libc::EACCES));
        assert!(matches!(e, Error::PermissionDenied { .. }));
        let msg = e.to_string();
        assert!(msg.contains("run as root"), "{msg}");
        assert!(msg.contains("chown $USER /dev/vfio/42"), "{msg}");
        let e = node_error(p, io::Error::from_raw_os_error(libc::EBUSY));
        assert!(matches!(e, Error::GroupBusy { .. }));
        assert!(e.to_string().contains("one user per group"));
        let e = node_error(p, io::Error::from_raw_os_error(libc::ENOENT));
        assert!(matches!(e, Error::VfioMissing { .. }));
        let e = node_error(p, io::Error::from_raw_os_error(libc::EIO));
        assert!(matches!(e, Error::Io { .. }));
        assert!(e.to_string().contains("/dev/vfio/42"));
    }

    #[test]
    fn garbage_in_sysfs_is_an_error_not_a_panic() {
        let f = Fake::new();
        std::fs::write(f.dir(VF).join("vendor"), "intel\n").unwrap();
        let msg = f.check(VF).unwrap_err().to_string();
        assert!(
            msg.contains("vendor") && msg.contains("not a 16-bit hex ID"),
            "{msg}"
        );
        let f = Fake::new();
        std::fs::remove_file(f.dir(VF).join("iommu_group")).unwrap();
        symlink(
            "../../../../kernel/iommu_groups/abc",
            f.dir(VF).join("iommu_group"),
        )
        .unwrap();
        let msg = f.check(VF).unwrap_err().to_string();
        assert!(msg.contains("not an IOMMU group number"), "{msg}");
    }
}
