//! `fg-pmd-test`: the PMD on a real kernel's VFIO stack, run inside the QEMU test guest
//! (scripts/qemu, test "pmd via vfio-pci"; see docs/qemu.md).
//!
//! ```text
//! fg-pmd-test <BDF> <IOMMU group> [PACKETS]
//! ```
//!
//! The VF (the model's, served over vfio-user by `floodgate-sim serve --generator udp`) must be
//! bound to the guest's vfio-pci. The program
//! 1. opens it with [`VfioDevice`] (container, group, device, BAR0 mmap, bus mastering),
//! 2. brings it up with [`IxgbeVf::open`] (reset, mailbox, rings mapped through the guest's
//!    emulated intel-iommu) with MSI-X,
//! 3. sleeps in [`IxgbeVf::wait_rx`] until the generator's next frame raises the RX vector
//!    (MSI-X through vfio-pci, interrupt remapping and an eventfd; counted in /proc/interrupts),
//! 4. receives PACKETS generated frames (default 300), checks each is the generator's
//!    IPv4/UDP frame to our MAC, swaps the MAC addresses and transmits it back to the wire,
//! 5. compares the driver's counters with the VF's hardware counters,
//! 6. posts one TX descriptor, on a spare queue, whose buffer IOVA was mapped and then
//!    unmapped again: the device must complete it without sending anything. The fault itself
//!    is only visible in the model's fault record (the server does DMA straight into guest
//!    memory, so the guest's IOMMU never sees it); the line `FG-FAULT-IOVA <iova>` tells the
//!    host which IOVA to look for in the server's log.
//!
//! Every check prints `FG-RESULT <name> PASS|FAIL <detail>`; the exit status is 0 when all
//! passed. It builds for any target, but is meant to be linked statically:
//!
//! ```text
//! RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -p floodgate-pmd \
//!     --example guest_pmd --target x86_64-unknown-linux-gnu
//! ```

use floodgate_pmd::{fmt_mac, Config, IxgbeVf, PacketBatch};
use floodgate_vfio::kernel::VfioDevice;
use floodgate_vfio::{Bar, Device, DmaOptions, DmaRegion, HugePages};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Default number of frames to receive and forward.
const DEFAULT_PACKETS: u64 = 300;
/// Give up on receiving after this long.
const RX_DEADLINE: Duration = Duration::from_secs(20);
/// Spare TX queue used for the fault check (the PMD runs on queue 0 only).
const FAULT_QUEUE: u32 = 1;
/// TX descriptors in the fault check's ring (the smallest legal ring, 128-byte multiple).
const FAULT_RING: u32 = 64;
/// Bytes per TX descriptor (facts §6.2).
const DESC: usize = 16;

// The few registers and descriptor bits the fault check writes itself, the example's own reading
// of the facts (the driver keeps its register map private).

/// TX descriptor base low of queue `q` (facts §2.3; queue stride 0x40).
const fn vftdbal(q: u32) -> u32 {
    0x02000 + 0x40 * q
}
/// TX descriptor base high of queue `q` (facts §2.3).
const fn vftdbah(q: u32) -> u32 {
    0x02004 + 0x40 * q
}
/// TX ring length in bytes of queue `q` (facts §2.3).
const fn vftdlen(q: u32) -> u32 {
    0x02008 + 0x40 * q
}
/// TX head of queue `q` (facts §2.3).
const fn vftdh(q: u32) -> u32 {
    0x02010 + 0x40 * q
}
/// TX tail of queue `q` (facts §2.3).
const fn vftdt(q: u32) -> u32 {
    0x02018 + 0x40 * q
}
/// TX descriptor control of queue `q` (facts §2.3).
const fn vftxdctl(q: u32) -> u32 {
    0x02028 + 0x40 * q
}
/// TXDCTL.ENABLE, bit 25 (facts §2.3).
const XDCTL_ENABLE: u32 = 1 << 25;
/// TX data descriptor `cmd_type_len`: DTYP = data, 0x3 in bits 23:20 (facts §6.2).
const TXD_DTYP_DATA: u32 = 0x0030_0000;
/// `cmd_type_len`: end of packet (facts §6.2).
const TXD_CMD_EOP: u32 = 1 << 24;
/// `cmd_type_len`: insert FCS (facts §6.2).
const TXD_CMD_IFCS: u32 = 1 << 25;
/// `cmd_type_len`: report status (facts §6.2).
const TXD_CMD_RS: u32 = 1 << 27;
/// `cmd_type_len`: descriptor extension, advanced format (facts §6.2).
const TXD_CMD_DEXT: u32 = 1 << 29;
/// `olinfo_status`: descriptor done, written back (facts §6.2).
const TXD_STAT_DD: u32 = 1 << 0;
/// `olinfo_status`: PAYLEN in bits 31:14 (facts §6.2).
const TXD_PAYLEN_SHIFT: u32 = 14;

struct Report {
    failures: u32,
}

impl Report {
    fn result(&mut self, name: &str, ok: bool, detail: impl std::fmt::Display) {
        println!(
            "FG-RESULT {name} {} {detail}",
            if ok { "PASS" } else { "FAIL" }
        );
        if !ok {
            self.failures += 1;
        }
    }
}

/// Is this the generator's frame: IPv4/UDP to our MAC.
fn is_generated(d: &[u8], mac: [u8; 6]) -> bool {
    d.len() >= 42 && d[..6] == mac && d[12..14] == [0x08, 0x00] && d[14] >> 4 == 4 && d[23] == 17
}

/// Interrupts the guest kernel counted for `bdf`'s vfio-pci MSI-X vectors (the
/// `vfio-msix[N](BDF)` lines of /proc/interrupts), summed over CPUs.
fn vfio_irqs(bdf: &str) -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/interrupts") else {
        return 0;
    };
    text.lines()
        .filter(|l| l.contains("vfio-msix") && l.contains(bdf))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .map_while(|w| w.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(bdf) = args.first() else {
        eprintln!("usage: fg-pmd-test <BDF> <IOMMU group> [PACKETS]");
        return ExitCode::from(2);
    };
    let want = match args.get(2).map(|s| s.parse::<u64>()) {
        None => DEFAULT_PACKETS,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("fg-pmd-test: PACKETS must be a positive number");
            return ExitCode::from(2);
        }
    };
    let mut r = Report { failures: 0 };
    run(bdf, want, &mut r);
    if r.failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run(bdf: &str, want: u64, r: &mut Report) {
    // 1. The kernel VFIO backend.
    let t = Instant::now();
    let dev = match VfioDevice::open(bdf) {
        Ok(d) => d,
        Err(e) => return r.result("pmd-vfio-open", false, e),
    };
    let info = dev.info();
    r.result(
        "pmd-vfio-open",
        dev.bar0().is_mapped(),
        format_args!(
            "{} {:04x}:{:04x} group {} BAR0 {} bytes {} in {} ms",
            info.location,
            info.vendor_id,
            info.device_id,
            dev.iommu_group(),
            dev.bar0().len(),
            if dev.bar0().is_mapped() {
                "mmapped"
            } else {
                "NOT mmapped (pread fallback)"
            },
            t.elapsed().as_millis()
        ),
    );

    // 2. Bring-up through the guest kernel: every ring and buffer goes through
    //    VFIO_IOMMU_MAP_DMA and the emulated IOMMU to the server's DMA table.
    let t = Instant::now();
    let cfg = Config {
        rx_ring_size: 256,
        tx_ring_size: 256,
        max_queues: Some(1),
        pool_buffers: Some(1024),
        huge_pages: HugePages::Never,
        interrupts: true,
        ..Default::default()
    };
    let mut vf = match IxgbeVf::open(dev, cfg) {
        Ok(vf) => vf,
        Err(e) => return r.result("pmd-bringup", false, e),
    };
    let vi = vf.info().clone();
    let mac = vf.mac();
    r.result(
        "pmd-bringup",
        vi.queues == 1,
        format_args!(
            "{:?} VF, API {:?}, MAC {} ({}), {} of {} queues, in {} ms",
            vi.model,
            vi.api,
            fmt_mac(mac),
            if vi.mac_from_pf { "from the PF" } else { "own" },
            vi.queues,
            vi.queues_granted,
            t.elapsed().as_millis()
        ),
    );
    let link = vf.link();
    r.result(
        "pmd-link",
        link.up && link.speed_mbps > 0,
        format_args!("up={} speed {} Mb/s", link.up, link.speed_mbps),
    );

    // 3. MSI-X: empty the ring, then sleep until the generator's next frame raises the RX
    //    vector. The guest kernel counts the vfio-msix interrupts in /proc/interrupts; a wake-up
    //    that was no interrupt (a frame that landed before the vector was armed) is retried.
    let mut batch = PacketBatch::new(32);
    let mut msix = None;
    for _attempt in 0..10 {
        while vf.rx_burst(0, &mut batch) > 0 {
            batch.clear();
        }
        let before = vfio_irqs(bdf);
        let t = Instant::now();
        match vf.wait_rx(0, Duration::from_secs(3)) {
            Ok(true) => {}
            Ok(false) => {
                msix = Some(Err("no frame and no interrupt within 3 s".to_string()));
                break;
            }
            Err(e) => {
                msix = Some(Err(e.to_string()));
                break;
            }
        }
        let ms = t.elapsed().as_millis();
        let after = vfio_irqs(bdf);
        if after > before {
            msix = Some(Ok(format!(
                "wait_rx woken by the RX vector after {ms} ms ({} vfio-msix interrupt(s) in /proc/interrupts)",
                after - before
            )));
            break;
        }
    }
    match msix {
        Some(Ok(d)) => r.result("pmd-msix", true, d),
        Some(Err(d)) => r.result("pmd-msix", false, d),
        None => r.result(
            "pmd-msix",
            false,
            "10 wake-ups, none by an interrupt (no vfio-msix count in /proc/interrupts)",
        ),
    }

    // 4. Receive and forward the generated traffic.
    let t = Instant::now();
    let (mut rx, mut fwd, mut foreign) = (0u64, 0u64, 0u64);
    let mut last_maint = Instant::now();
    while rx < want && t.elapsed() < RX_DEADLINE {
        let n = vf.rx_burst(0, &mut batch);
        if n == 0 {
            if last_maint.elapsed() > Duration::from_millis(500) {
                if let Err(e) = vf.maintain() {
                    eprintln!(
                        "fg-pmd-test: maintenance: {e}",
                        e = floodgate_vfio::ErrorChain(&e)
                    );
                }
                last_maint = Instant::now();
            }
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        rx += n as u64;
        for p in batch.iter_mut() {
            let d = p.data_mut();
            if !is_generated(d, mac) {
                foreign += 1;
            }
            if d.len() >= 12 {
                d.copy_within(6..12, 0);
                d[6..12].copy_from_slice(&mac);
            }
        }
        // Retry until the ring takes everything (it only fills if the model stops sending).
        let retry_until = Instant::now() + Duration::from_secs(2);
        while !batch.is_empty() && Instant::now() < retry_until {
            fwd += vf.tx_burst(0, &mut batch) as u64;
        }
        batch.clear();
    }
    let rx_secs = t.elapsed().as_secs_f64();
    // Let the model complete what we sent.
    let t2 = Instant::now();
    while vf.stats().tx.completed < fwd && t2.elapsed() < Duration::from_secs(3) {
        vf.tx_reclaim(0);
        std::thread::sleep(Duration::from_millis(1));
    }
    let s = vf.stats();
    r.result(
        "pmd-rx",
        rx >= want && foreign == 0 && s.rx.dropped() == 0,
        format_args!(
            "received {rx} generated frames ({} bytes) in {rx_secs:.2} s, {foreign} not from the \
             generator, {} bad, hw rx {}",
            s.rx.bytes,
            s.rx.dropped(),
            s.hw.rx_packets
        ),
    );
    r.result(
        "pmd-forward",
        fwd == rx && s.tx.completed == fwd && s.tx.rejected == 0,
        format_args!(
            "forwarded {fwd} (MACs swapped), completed {}, rejected {}, ring full {}",
            s.tx.completed, s.tx.rejected, s.tx.ring_full
        ),
    );
    r.result(
        "pmd-hw-counters",
        s.hw.rx_packets >= rx && s.hw.tx_packets == s.tx.completed,
        format_args!(
            "VFGPRC {} >= driver rx {rx}, VFGPTC {} == driver tx completed {}",
            s.hw.rx_packets, s.hw.tx_packets, s.tx.completed
        ),
    );
    println!(
        "FG-INFO pmd counters: rx {} tx {} completed {} hw rx {} hw tx {} pf resets {} link changes {}",
        s.rx.packets,
        s.tx.packets,
        s.tx.completed,
        s.hw.rx_packets,
        s.hw.tx_packets,
        s.pf_resets,
        s.link_changes
    );

    // 5. A DMA to an unmapped IOVA.
    fault_check(&mut vf, r);
}

fn fault_check(vf: &mut IxgbeVf<VfioDevice>, r: &mut Report) {
    if vf.info().queues_granted <= FAULT_QUEUE as usize {
        return r.result(
            "pmd-dma-fault",
            false,
            format_args!(
                "the PF granted {} queues; need a spare one",
                vf.info().queues_granted
            ),
        );
    }
    let opts = DmaOptions {
        huge_pages: HugePages::Never,
        name: Some("fg-fault".into()),
    };
    let (ring, gone) = match (
        DmaRegion::allocate(4096, &opts),
        DmaRegion::allocate(4096, &opts),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return r.result("pmd-dma-fault", false, e),
    };
    let dev = vf.device();
    // Map the buffer and take it away again: its IOVA is now a use-after-unmap.
    if let Err(e) = dev
        .dma_map(&ring)
        .and_then(|_| dev.dma_map(&gone))
        .and_then(|_| dev.dma_unmap(&gone))
    {
        return r.result("pmd-dma-fault", false, e);
    }
    let bad_iova = gone.iova();
    println!("FG-FAULT-IOVA {bad_iova:#x}");
    let tx_before = vf.stats().hw.tx_packets;
    let dev = vf.device();
    let bar = dev.bar0();
    let q = FAULT_QUEUE;
    // One data descriptor: 60 bytes at the unmapped IOVA, EOP|IFCS|RS (facts §6.2).
    let desc = ring.as_ptr();
    let len = 60u32;
    let cmd = TXD_DTYP_DATA | TXD_CMD_DEXT | TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS | len;
    // SAFETY: the ring region is 4096 bytes, owned here, and the device only sees it through
    // the IOVA; writes are volatile stores to the first 16-byte descriptor.
    unsafe {
        std::ptr::write_volatile(desc.cast::<u64>(), bad_iova);
        std::ptr::write_volatile(desc.add(8).cast::<u32>(), cmd);
        std::ptr::write_volatile(desc.add(12).cast::<u32>(), len << TXD_PAYLEN_SHIFT);
    }
    // Queue set-up as in facts §3.8 step 12 (base, length, head/tail, then enable).
    bar.write32(vftxdctl(q), 0);
    bar.write32(vftdbal(q), ring.iova() as u32);
    bar.write32(vftdbah(q), (ring.iova() >> 32) as u32);
    bar.write32(vftdlen(q), FAULT_RING * DESC as u32);
    bar.write32(vftdh(q), 0);
    bar.write32(vftdt(q), 0);
    bar.write32(vftxdctl(q), XDCTL_ENABLE);
    let t = Instant::now();
    while bar.read32(vftxdctl(q)) & XDCTL_ENABLE == 0 && t.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    bar.write32(vftdt(q), 1);
    let t = Instant::now();
    let dd = loop {
        // SAFETY: as above; the device writes DD into dword 3 of the same descriptor.
        let st = unsafe { std::ptr::read_volatile(desc.add(12).cast::<u32>()) };
        if st & TXD_STAT_DD != 0 {
            break true;
        }
        if t.elapsed() > Duration::from_secs(3) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let head = bar.read32(vftdh(q));
    // Let the hardware counters settle, then compare.
    let tx_after = vf.stats().hw.tx_packets;
    bar.write32(vftxdctl(q), 0);
    let dev = vf.device();
    let unmapped = dev.dma_unmap(&ring);
    r.result(
        "pmd-dma-fault",
        dd && head == 1 && tx_after == tx_before && unmapped.is_ok(),
        format_args!(
            "TX descriptor with buffer at unmapped IOVA {bad_iova:#x}: DD={dd}, TDH={head}, \
             frames sent {} (must be 0): the device refused the read; the host checks the \
             model's fault record",
            tx_after - tx_before
        ),
    );
    drop(gone);
}
