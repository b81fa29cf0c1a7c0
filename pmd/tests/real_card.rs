//! Tests on a real 82599/X540 VF bound to vfio-pci. They run only when `FLOODGATE_PCI_VF`
//! names the VF (e.g. `FLOODGATE_PCI_VF=0000:03:10.0 cargo test -p floodgate-pmd --test
//! real_card`); the PF must be up (`ip link set <pf> up`). Without it they print why they
//! were skipped and pass.

use floodgate_pmd::{Config, IxgbeVf, PacketBatch};
use floodgate_vfio::kernel::VfioDevice;
use std::time::{Duration, Instant};

fn device_under_test() -> Option<String> {
    match std::env::var("FLOODGATE_PCI_VF") {
        Ok(a) if !a.is_empty() => Some(a),
        _ => {
            println!(
                "skipped: FLOODGATE_PCI_VF not set (no 82599/X540 VF bound to vfio-pci on this \
                 machine; see scripts/setup-vf.sh)"
            );
            None
        }
    }
}

#[test]
fn real_vf_brings_up_and_survives_maintenance() {
    let Some(addr) = device_under_test() else {
        return;
    };
    let _ = env_logger::builder().is_test(true).try_init();
    let dev = VfioDevice::open(&addr).expect("open the VF through vfio-pci");
    let mut vf = IxgbeVf::open(dev, Config::default()).expect("bring-up");
    let info = vf.info().clone();
    println!(
        "{addr}: {:?}, MAC {}, API {:?}, {} queue(s), link {:?}",
        info.model,
        floodgate_pmd::fmt_mac(info.mac),
        info.api,
        info.queues,
        vf.link()
    );
    assert!(info.queues >= 1);
    // Receive for a moment (whatever the PF steers here), then check counters add up.
    let mut b = PacketBatch::new(32);
    let end = Instant::now() + Duration::from_millis(500);
    while Instant::now() < end {
        vf.rx_burst(0, &mut b);
        b.clear();
    }
    vf.maintain().expect("maintenance");
    let s = vf.stats();
    assert_eq!(s.rx.descriptors, s.rx.packets + s.rx.dropped());
    println!("{addr}: {s:?}");
}

#[test]
fn real_vf_transmits_a_broadcast() {
    let Some(addr) = device_under_test() else {
        return;
    };
    let dev = VfioDevice::open(&addr).expect("open the VF through vfio-pci");
    let mut vf = IxgbeVf::open(dev, Config::default()).expect("bring-up");
    let mut p = vf.mempool().alloc().expect("a buffer");
    let mut f = [0u8; 60];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&vf.mac());
    f[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental EtherType
    p.copy_from_slice(&f).unwrap();
    let mut b = PacketBatch::new(1);
    b.push(p).unwrap();
    assert_eq!(vf.tx_burst(0, &mut b), 1);
    let end = Instant::now() + Duration::from_secs(1);
    while vf.tx_reclaim(0) == 0 {
        assert!(
            Instant::now() < end,
            "TX descriptor not completed within 1 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}
