//! The vfio-user pair in one process: `floodgate_sim::vfio_user::UserServer` on a thread,
//! `floodgate_vfio::user::VfioUserDevice` on the test thread, talking over a real Unix socket.
//! DMA goes through the region's memfd (SCM_RIGHTS), interrupts through eventfds.

pub mod serve_util;

use std::os::fd::AsFd;
use std::thread::JoinHandle;
use std::time::Duration;

use floodgate_sim::regs::*;
use floodgate_sim::vfio_user::{ServeStats, UserServer};
use floodgate_sim::{Nic, NicConfig, NicModel};
use floodgate_vfio::irq::wait_for;
use floodgate_vfio::user::{UserOptions, VfioUserDevice};
use floodgate_vfio::{Bar, Device};
use serve_util::*;

const VF0_MAC: [u8; 6] = [0x02, 0xf1, 0, 0, 0, 1];
const PEER: [u8; 6] = [0x02, 0xf0, 0, 0, 0, 0xfe];

struct Pair {
    nic: Nic,
    dev: VfioUserDevice,
    server: JoinHandle<std::sync::Arc<ServeStats>>,
    _dir: TempDir,
}

fn pair(model: NicModel) -> Pair {
    pair_with(model, true)
}

fn pair_with(model: NicModel, bus_master: bool) -> Pair {
    let nic = Nic::new(NicConfig {
        model,
        num_vfs: 2,
        ..Default::default()
    });
    let dir = tempdir();
    let path = dir.path().join("vf0.sock");
    let mut server = UserServer::bind(&path, nic.vf(0)).unwrap();
    let server = std::thread::spawn(move || {
        server.serve_one().unwrap();
        server.stats()
    });
    let dev = VfioUserDevice::connect_with(
        &path,
        &UserOptions {
            timeout: timeout(),
            bus_master,
        },
    )
    .unwrap();
    Pair {
        nic,
        dev,
        server,
        _dir: dir,
    }
}

impl Pair {
    /// Hangs up and returns the server's counters once it has cleaned up.
    fn finish(self) -> (Nic, std::sync::Arc<ServeStats>) {
        drop(self.dev);
        let stats = self.server.join().unwrap();
        (self.nic, stats)
    }
}

#[test]
fn config_space_regions_and_irqs_look_like_an_intel_vf() {
    let p = pair(NicModel::X540);
    let info = p.dev.info();
    assert_eq!((info.vendor_id, info.device_id), (0x8086, 0x1515));
    assert!(info.location.starts_with("vfio-user:"));
    let mut c = [0u8; 0x40];
    p.dev.config_read(0, &mut c).unwrap();
    assert_eq!(&c[0x09..0x0C], &[0x00, 0x00, 0x02], "class 0x020000");
    assert_eq!(c[0x34], 0x70, "capabilities start at 0x70");
    assert_eq!(c[0x10] & 0x0F, 0x0C, "BAR0 64-bit prefetchable memory");
    let mut msix = [0u8; 12];
    p.dev.config_read(0x70, &mut msix).unwrap();
    assert_eq!(msix[0], 0x11, "MSI-X capability");
    assert_eq!(msix[1], 0xA0, "next: PCIe");
    assert_eq!(
        u16::from_le_bytes([msix[2], msix[3]]) & 0x7FF,
        2,
        "3 vectors"
    );
    assert_eq!(
        u32::from_le_bytes(msix[4..8].try_into().unwrap()),
        3,
        "table BAR3+0"
    );
    assert_eq!(
        u32::from_le_bytes(msix[8..12].try_into().unwrap()),
        0x2003,
        "PBA BAR3+0x2000"
    );
    let mut pcie = [0u8; 4];
    p.dev.config_read(0xA0, &mut pcie).unwrap();
    assert_eq!(pcie[0], 0x10, "PCI Express capability");
    // BAR sizing through the config region.
    p.dev.config_write(0x10, &[0xFF; 4]).unwrap();
    let mut bar = [0u8; 4];
    p.dev.config_read(0x10, &mut bar).unwrap();
    assert_eq!(u32::from_le_bytes(bar), 0xFFFF_C00C, "16 KiB BAR");
    assert_eq!(p.dev.region_info(0).unwrap().size, 0x4000);
    assert_eq!(p.dev.region_info(3).unwrap().size, 0x4000);
    assert_eq!(p.dev.region_info(7).unwrap().size, 0x1000);
    assert_eq!(p.dev.region_info(1).unwrap().size, 0);
    assert_eq!(p.dev.irq_info(2).unwrap().count, 3, "MSI-X index");
    assert_eq!(p.dev.irq_info(3).unwrap().count, 1, "error index");
    assert_eq!(p.dev.irq_info(0).unwrap().count, 0, "no INTx");
    assert_eq!(p.dev.server_version().0, 0);
    p.finish();
}

#[test]
fn reset_and_mailbox_handshake_through_bar0() {
    let p = pair(NicModel::X82599);
    let bar = p.dev.bar0();
    assert_eq!(bar.read32(VFLINKS) & LINKS_UP, LINKS_UP);
    vf_reset(&bar);
    let r = mbx_request(&bar, &[MSG_RESET]);
    assert_eq!(
        r[0], 0x8000_0001,
        "RESET reply, compared exactly by ixgbevf"
    );
    assert_eq!(r[1], u32::from_le_bytes([0x02, 0xf1, 0, 0]));
    assert_eq!(r[2] & 0xFFFF, u32::from(u16::from_le_bytes([0, 1])));
    let a = mbx_request(&bar, &[MSG_API_NEGOTIATE, API_13, 0]);
    assert_eq!(a[0], 0xA000_0008, "API 1.3 accepted with CTS");
    assert!(p.nic.pf().vf_clear_to_send(0));
    // Plain registers read back through the socket.
    bar.write32(rxq(1, RDLEN), 0x1000);
    assert_eq!(bar.read32(rxq(1, RDLEN)), 0x1000);
    let (_, stats) = p.finish();
    assert!(
        stats
            .region_reads
            .load(std::sync::atomic::Ordering::Relaxed)
            > 10
    );
}

#[test]
fn rx_frame_lands_in_the_clients_memfd_and_unmapped_dma_faults() {
    let p = pair(NicModel::X82599);
    let bar = p.dev.bar0();
    bring_up(&bar);
    let r = region(64 * 1024);
    p.dev.dma_map(&r).unwrap();
    assert_eq!(p.nic.vf(0).iommu().mappings(), 1);
    setup_rx(&bar, &r);
    let f = frame(VF0_MAC, PEER, 0x40);
    p.nic.inject(&f);
    p.nic.step();
    let (len, status) = rx_done(&r, 0).expect("descriptor 0 written back");
    assert_eq!(len, f.len());
    assert_ne!(status & RXD_STAT_EOP, 0);
    assert_eq!(
        bytes(&r, RX_BUF_OFF, len),
        f,
        "the model wrote the frame into our memory"
    );
    assert_eq!(p.nic.vf(0).dma_faults(), 0);

    // After DMA_UNMAP the same ring is unreachable: a recorded fault, our memory untouched.
    p.dev.dma_unmap(&r).unwrap();
    assert_eq!(p.nic.vf(0).iommu().mappings(), 0);
    p.nic.inject(&frame(VF0_MAC, PEER, 0x41));
    p.nic.step();
    assert!(p.nic.vf(0).dma_faults() > 0);
    assert!(rx_done(&r, 1).is_none());
    p.finish();
}

#[test]
fn tx_descriptor_completes_and_frame_leaves_on_the_wire() {
    let p = pair(NicModel::X82599);
    let bar = p.dev.bar0();
    bring_up(&bar);
    let r = region(64 * 1024);
    p.dev.dma_map(&r).unwrap();
    setup_tx(&bar, &r);
    let f = frame([0x02, 0x99, 0, 0, 0, 1], VF0_MAC, 7);
    transmit(&bar, &r, 0, &f);
    p.nic.step();
    assert!(tx_done(&r, 0), "DD written back");
    assert_eq!(p.nic.take_egress(), vec![f]);
    p.finish();
}

#[test]
fn interrupts_reach_the_eventfds_and_respect_the_mask() {
    let p = pair(NicModel::X82599);
    let bar = p.dev.bar0();
    bring_up(&bar);
    let fds = p.dev.enable_msix(3).unwrap();
    let b: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    let now = Some(Duration::ZERO);
    // RX/TX of queue 0 on vector 0, mailbox on vector 1 (VTIVAR, VTIVAR_MISC).
    bar.write32(VTIVAR0, 0x8080);
    bar.write32(VTIVAR_MISC, 0x81);
    bar.write32(VTEIMS, 0b011);
    assert_eq!(wait_for(&b, now).unwrap(), 0, "nothing pending yet");
    // A software-triggered cause fires synchronously, before the write's reply.
    bar.write32(VTEICS, 0b001);
    assert_eq!(wait_for(&b, now).unwrap(), 0b001);
    // Masked: the cause is latched but nothing fires ...
    bar.write32(VTEIMC, 0b001);
    bar.write32(VTEICS, 0b001);
    assert_eq!(wait_for(&b, now).unwrap(), 0);
    // ... until it is unmasked.
    bar.write32(VTEIMS, 0b001);
    assert_eq!(wait_for(&b, now).unwrap(), 0b001);
    // A mailbox reply raises the mailbox vector.
    let _ = bar.read32(VTEICR);
    mbx_request(&bar, &[MSG_API_NEGOTIATE, API_13, 0]);
    assert_eq!(wait_for(&b, now).unwrap() & 0b010, 0b010);
    // A received frame raises the queue's vector.
    let r = region(64 * 1024);
    p.dev.dma_map(&r).unwrap();
    setup_rx(&bar, &r);
    let _ = bar.read32(VTEICR);
    bar.write32(VTEIMS, 0b011);
    let _ = wait_for(&b, now).unwrap();
    p.nic.inject(&frame(VF0_MAC, PEER, 1));
    p.nic.step();
    assert_eq!(wait_for(&b, now).unwrap() & 0b001, 0b001);
    // Server-side loopback trigger of vector 2.
    p.dev.trigger_irq(2, 2).unwrap();
    assert_eq!(wait_for(&b, now).unwrap(), 0b100);
    p.finish();
}

#[test]
fn refused_requests_are_errors_and_the_connection_survives() {
    let p = pair(NicModel::X82599);
    let r = region(8192);
    p.dev.dma_map(&r).unwrap();
    let e = p.dev.dma_map(&r).unwrap_err().to_string();
    assert!(e.contains("server refused"), "{e}");
    assert!(!p.dev.is_broken());
    assert_eq!(p.dev.bar0().read32(VFLINKS) & LINKS_UP, LINKS_UP);
    assert!(p.dev.enable_msix(4).is_err(), "the VF has 3 vectors");
    let (nic, _) = p.finish();
    assert_eq!(
        nic.vf(0).iommu().mappings(),
        0,
        "the server drops a client's mappings when it leaves"
    );
}

#[test]
fn flr_config_write_resets_the_function() {
    let p = pair(NicModel::X82599);
    let bar = p.dev.bar0();
    bring_up(&bar);
    let r = region(64 * 1024);
    p.dev.dma_map(&r).unwrap();
    setup_rx(&bar, &r);
    p.dev.enable_bus_master().unwrap();
    let mut cmd = [0u8; 2];
    p.dev.config_read(4, &mut cmd).unwrap();
    assert_eq!(cmd[0] & 0x04, 0x04, "bus master set");
    // PCIe DevCtl bit 15: initiate FLR.
    p.dev.config_write(0xA8, &0x8000u16.to_le_bytes()).unwrap();
    assert_eq!(
        bar.read32(rxq(0, RXDCTL)) & DCTL_ENABLE,
        0,
        "queue disabled"
    );
    assert_ne!(bar.read32(VFMAILBOX) & MBX_RSTD, 0, "reset done");
    p.dev.config_read(4, &mut cmd).unwrap();
    assert_eq!(cmd[0] & 0x04, 0, "FLR clears bus master");
    assert!(
        !p.nic.pf().vf_clear_to_send(0),
        "the VF must send RESET again"
    );
    p.finish();
}

#[test]
fn the_vfio_user_crates_own_client_can_talk_to_the_server() {
    let nic = Nic::new(NicConfig::default());
    let dir = tempdir();
    let path = dir.path().join("crate-client.sock");
    let mut server = UserServer::bind(&path, nic.vf(1)).unwrap();
    let t = std::thread::spawn(move || server.serve_one().unwrap());
    let mut c = vfio_user::Client::new(&path).unwrap();
    let mut id = [0u8; 4];
    c.region_read(7, 0, &mut id).unwrap();
    assert_eq!(id, [0x86, 0x80, 0xED, 0x10]);
    c.region_write(0, u64::from(rxq(0, RDLEN)), &0x800u32.to_le_bytes())
        .unwrap();
    let mut v = [0u8; 4];
    c.region_read(0, u64::from(rxq(0, RDLEN)), &mut v).unwrap();
    assert_eq!(u32::from_le_bytes(v), 0x800);
    c.shutdown().unwrap();
    drop(c);
    t.join().unwrap();
}

#[test]
fn connecting_to_nothing_says_how_to_start_the_server() {
    let dir = tempdir();
    let e = VfioUserDevice::connect(dir.path().join("none.sock"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("floodgate-sim serve --socket"), "{e}");
}

#[test]
fn a_live_socket_is_not_stolen_and_a_stale_one_is_replaced() {
    let nic = Nic::new(NicConfig::default());
    let dir = tempdir();
    let path = dir.path().join("s.sock");
    let first = UserServer::bind(&path, nic.vf(0)).unwrap();
    let e = UserServer::bind(&path, nic.vf(1)).unwrap_err().to_string();
    assert!(e.contains("in use"), "{e}");
    drop(first);
    // A socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    UserServer::bind(&path, nic.vf(0)).unwrap();
}

#[test]
fn without_bus_mastering_there_is_no_dma_and_no_msix() {
    let p = pair_with(NicModel::X82599, false);
    let bar = p.dev.bar0();
    bring_up(&bar);
    let fds = p.dev.enable_msix(1).unwrap();
    let b = [fds[0].as_fd()];
    let now = Some(Duration::ZERO);
    bar.write32(VTEIMS, 1);
    bar.write32(VTEICS, 1);
    assert_eq!(
        wait_for(&b, now).unwrap(),
        0,
        "an MSI-X message needs bus mastering"
    );
    let r = region(64 * 1024);
    p.dev.dma_map(&r).unwrap();
    setup_rx(&bar, &r);
    p.nic.inject(&frame(VF0_MAC, PEER, 1));
    p.nic.step();
    assert!(rx_done(&r, 0).is_none(), "no DMA into our memory");
    assert!(
        p.nic.vf(0).dma_faults() > 0,
        "the attempt is a recorded fault"
    );
    // Bus mastering on: the mapping made earlier becomes reachable, interrupts flow.
    p.dev.enable_bus_master().unwrap();
    bar.write32(VTEICS, 1);
    assert_eq!(wait_for(&b, now).unwrap(), 1);
    let f = frame(VF0_MAC, PEER, 2);
    p.nic.inject(&f);
    p.nic.step();
    let (len, _) = rx_done(&r, 0).expect("delivered once bus mastering is on");
    assert_eq!(bytes(&r, RX_BUF_OFF, len), f);
    // And off again.
    p.dev.set_bus_master(false).unwrap();
    assert_eq!(p.nic.vf(0).iommu().mappings(), 0);
    p.finish();
}

#[test]
fn a_malformed_version_message_costs_the_connection_not_the_server() {
    use std::io::Write;
    let nic = Nic::new(NicConfig::default());
    let dir = tempdir();
    let path = dir.path().join("bad.sock");
    let mut server = UserServer::bind(&path, nic.vf(0)).unwrap();
    let t = std::thread::spawn(move || {
        let first = server.serve_one();
        // The same server takes the next client.
        let second = server.serve_one();
        (first.map_err(|e| e.to_string()), second.is_ok())
    });
    // VERSION whose capabilities string lacks its NUL terminator.
    let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let body = b"{}";
    let mut m = Vec::new();
    m.extend_from_slice(&7u16.to_le_bytes()); // message id
    m.extend_from_slice(&1u16.to_le_bytes()); // VERSION
    m.extend_from_slice(&((16 + 4 + body.len()) as u32).to_le_bytes());
    m.extend_from_slice(&[0; 8]); // flags, error
    m.extend_from_slice(&[0, 0, 1, 0]); // 0.1
    m.extend_from_slice(body);
    s.write_all(&m).unwrap();
    let dev = VfioUserDevice::connect_with(
        &path,
        &UserOptions {
            timeout: timeout(),
            ..Default::default()
        },
    )
    .unwrap();
    drop(s);
    assert_eq!(dev.info().device_id, 0x10ED);
    drop(dev);
    let (first, second) = t.join().unwrap();
    let e = first.unwrap_err();
    assert!(e.contains("malformed message"), "{e}");
    assert!(second);
}
