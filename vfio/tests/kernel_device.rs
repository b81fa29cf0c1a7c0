//! Tests against a real VFIO device (a VF bound to vfio-pci, or any device in a QEMU guest with
//! an emulated IOMMU). They run only when `FLOODGATE_PCI_VF` names the device, e.g.
//! `FLOODGATE_PCI_VF=0000:03:10.0 cargo test -p floodgate-vfio --test kernel_device`.

use floodgate_vfio::kernel::{wait_for, VfioDevice};
use floodgate_vfio::{Bar, Device, DmaOptions, DmaRegion, Error};
use std::os::fd::AsFd;
use std::time::Duration;

fn device_under_test() -> Option<String> {
    match std::env::var("FLOODGATE_PCI_VF") {
        Ok(a) if !a.is_empty() => Some(a),
        _ => {
            println!("skipped: FLOODGATE_PCI_VF not set (no VFIO device on this machine)");
            None
        }
    }
}

#[test]
fn open_map_and_interrupts_on_a_real_device() {
    let Some(addr) = device_under_test() else {
        return;
    };
    let dev = VfioDevice::open(&addr).unwrap_or_else(|e| panic!("opening {addr}: {e}"));
    let info = dev.info();
    println!("{dev:?}");
    assert_ne!(info.vendor_id, 0xffff);

    // BAR0 answers: a present device never reads all-ones at offset 0 (ixgbevf: VFCTRL).
    let bar = dev.bar0();
    assert_ne!(
        bar.read32(0),
        u32::MAX,
        "BAR0 reads all-ones: device absent?"
    );

    // QEMU's edu device: register 0x04 reads back the inverse of what was written, which
    // only a real device (not plain memory) does.
    if (info.vendor_id, info.device_id) == (0x1234, 0x11e8) {
        bar.write32(4, 0x1234_5678);
        assert_eq!(bar.read32(4), !0x1234_5678);
        assert_eq!(
            bar.read32(0) & 0xffff,
            0x00ed,
            "edu identification register"
        );
    }

    // Bus mastering is on after open.
    let mut cmd = [0u8; 2];
    dev.config_read(4, &mut cmd).unwrap();
    assert_ne!(u16::from_le_bytes(cmd) & 4, 0);

    // IOMMU mapping bookkeeping against the real kernel.
    let region = DmaRegion::allocate(2 << 20, &DmaOptions::default()).unwrap();
    dev.dma_map(&region).unwrap();
    assert_eq!(dev.dma_mappings(), 1);
    assert!(matches!(
        dev.dma_map(&region),
        Err(Error::InvalidArgument(_))
    ));
    dev.dma_unmap(&region).unwrap();
    assert_eq!(dev.dma_mappings(), 0);
    assert!(dev.dma_unmap(&region).is_err());
    dev.dma_map(&region).unwrap();

    // MSI-X: enable what the device has (at most 2), then a zero-timeout wait.
    let n = dev.msix_vectors().min(2);
    if n > 0 {
        let fds = dev.enable_msix(n).unwrap();
        assert_eq!(fds.len(), n as usize);
        let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        wait_for(&borrowed, Some(Duration::ZERO)).unwrap();
        // The kernel's loopback trigger reaches our eventfd for the last vector only.
        dev.trigger_msix(n - 1).unwrap();
        let fired = wait_for(&borrowed, Some(Duration::from_secs(10))).unwrap();
        assert_eq!(fired, 1 << (n - 1));
        assert!(dev.trigger_msix(n).is_err());
        assert!(dev.enable_msix(dev.msix_vectors() + 1).is_err());
        dev.disable_msix().unwrap();
    }
    // Dropping the device with the region still mapped unmaps it.
    drop(dev);
}

#[test]
fn opening_twice_reports_the_busy_group() {
    let Some(addr) = device_under_test() else {
        return;
    };
    let _first = VfioDevice::open(&addr).unwrap();
    let e = VfioDevice::open(&addr).unwrap_err();
    assert!(matches!(e, Error::GroupBusy { .. }), "{e}");
}
