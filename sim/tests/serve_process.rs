//! The vfio-user pair across a process boundary: the `floodgate-sim serve` binary in a child
//! process, `floodgate_vfio::user::VfioUserDevice` in the test. The child runs the model's
//! engine thread and its built-in UDP generator, so received frames, TX completions and
//! interrupts all happen on their own, as with hardware.

pub mod serve_util;

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use floodgate_sim::regs::*;
use floodgate_vfio::irq::wait_for;
use floodgate_vfio::user::{UserOptions, VfioUserDevice};
use floodgate_vfio::{Bar, Device};
use serve_util::*;

const BIN: &str = env!("CARGO_BIN_EXE_floodgate-sim");
const VF0_MAC: [u8; 6] = [0x02, 0xf1, 0, 0, 0, 1];
const PEER_MAC: [u8; 6] = [0x02, 0xf0, 0, 0, 0, 0xfe];

/// The server process; killed on drop if still running, its log printed if the test failed.
struct ServerProc {
    child: Child,
    dir: TempDir,
    socket: PathBuf,
}

impl ServerProc {
    fn start(extra: &[&str]) -> ServerProc {
        let dir = tempdir();
        let socket = dir.path().join("vf.sock");
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--socket")
            .arg(&socket)
            .arg("--once")
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn floodgate-sim");
        ServerProc { child, dir, socket }
    }

    fn connect(&self) -> VfioUserDevice {
        wait_until("the server's socket", || {
            if !self.socket.exists() {
                return None;
            }
            VfioUserDevice::connect_with(
                &self.socket,
                &UserOptions {
                    timeout: timeout(),
                    ..Default::default()
                },
            )
            .ok()
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Waits for the child to exit on its own (it serves `--once`).
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        wait_until("the server to exit", || self.child.try_wait().unwrap())
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- floodgate-sim log ---\n{}", self.log());
        }
    }
}

#[test]
fn generated_frames_tx_completion_and_interrupts_across_processes() {
    let t0 = Instant::now();
    let mut server = ServerProc::start(&["--generator", "udp:2000:64", "--idle-sleep-us", "100"]);
    let dev = server.connect();
    assert_eq!(dev.info().device_id, 0x10ED);
    let bar = dev.bar0();
    let reset = bring_up(&bar);
    assert_eq!(reset[0], 0x8000_0001);

    let fds = dev.enable_msix(3).unwrap();
    let irq0 = [fds[0].as_fd()];
    bar.write32(VTIVAR0, 0x8080); // queue 0 RX and TX causes on vector 0
    bar.write32(VTEIMS, 0b1);

    let r = region(64 * 1024);
    dev.dma_map(&r).unwrap();
    setup_rx(&bar, &r);

    // The generator's frames arrive in our memory, and the RX cause interrupts us.
    let mut irqs = 0u32;
    let (len, _) = wait_until("a generated frame in RX descriptor 0", || {
        if wait_for(&irq0, Some(Duration::from_millis(10))).unwrap() & 1 != 0 {
            irqs += 1;
            // VTEIAM is clear: the vector stays unmasked; VTEICR is cleared by reading it.
            let _ = bar.read32(VTEICR);
        }
        rx_done(&r, 0)
    });
    let f = bytes(&r, RX_BUF_OFF, len);
    assert_eq!(len, 64);
    assert_eq!(&f[0..6], &VF0_MAC, "to the VF's MAC");
    assert_eq!(&f[6..12], &PEER_MAC);
    assert_eq!(&f[12..14], &[0x08, 0x00], "IPv4");
    assert_eq!(f[23], 17, "UDP");
    wait_until("the RX interrupt", || {
        (irqs > 0 || wait_for(&irq0, Some(Duration::from_millis(10))).unwrap() & 1 != 0)
            .then_some(())
    });

    // TX: the engine thread fetches the descriptor and writes DD back, with no step() call.
    setup_tx(&bar, &r);
    transmit(&bar, &r, 0, &frame([0x02, 0x99, 0, 0, 0, 1], VF0_MAC, 3));
    wait_until("TX descriptor 0 done", || tx_done(&r, 0).then_some(()));
    let gptc = bar.read32(VFGPTC);
    assert_eq!(gptc, 1, "VFGPTC counts the frame");

    drop(bar);
    drop(dev);
    let status = server.wait_exit();
    assert!(status.success(), "server exit: {status}");
    let log = server.log();
    assert!(log.contains("client left"), "{log}");
    eprintln!(
        "two-process vfio-user test: {:.0} ms (spawn to server exit)",
        t0.elapsed().as_secs_f64() * 1000.0
    );
}

#[test]
fn a_dead_server_reads_as_a_removed_device() {
    let mut server = ServerProc::start(&[]);
    let dev = server.connect();
    let bar = dev.bar0();
    assert_eq!(bar.read32(VFLINKS) & LINKS_UP, LINKS_UP);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    assert_eq!(bar.read32(VFLINKS), 0xFFFF_FFFF);
    assert!(dev.is_broken());
    assert!(dev.dma_map(&region(4096)).is_err());
}

#[test]
fn cli_help_and_bad_arguments() {
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--socket PATH"));
    let out = Command::new(BIN).args(["serve"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("serve needs --socket PATH"));
    let out = Command::new(BIN)
        .args(["serve", "--socket", "/tmp/x", "--model", "i350"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("use 82599 or x540"));
}

#[test]
fn pcap_replay_in_and_capture_out() {
    use floodgate_sim::pcap::{PcapReader, PcapWriter};
    let dir = tempdir();
    let pin = dir.path().join("in.pcap");
    let pout = dir.path().join("out.pcap");
    let frames: Vec<Vec<u8>> = (0..3).map(|i| frame(VF0_MAC, PEER_MAC, 0x10 * i)).collect();
    {
        let mut w = PcapWriter::new(std::fs::File::create(&pin).unwrap(), 65535).unwrap();
        for (i, f) in frames.iter().enumerate() {
            w.write_packet(i as u64 * 1000, f).unwrap();
        }
        w.into_inner().unwrap();
    }
    let mut server = ServerProc::start(&[
        "--pcap-in",
        pin.to_str().unwrap(),
        "--pcap-pps",
        "1000",
        "--pcap-loop",
        "--pcap-out",
        pout.to_str().unwrap(),
    ]);
    let dev = server.connect();
    let bar = dev.bar0();
    bring_up(&bar);
    let r = region(64 * 1024);
    dev.dma_map(&r).unwrap();
    setup_rx(&bar, &r);
    // Frames replayed before the ring existed were dropped; the loop brings them again.
    wait_until("a replayed frame", || rx_done(&r, 0));
    let first = bytes(&r, RX_BUF_OFF, 64);
    assert!(frames.contains(&first), "a replayed frame arrived intact");
    setup_tx(&bar, &r);
    let out = frame([0x02, 0x77, 0, 0, 0, 1], VF0_MAC, 0x99);
    transmit(&bar, &r, 0, &out);
    wait_until("TX done", || tx_done(&r, 0).then_some(()));
    drop(bar);
    drop(dev);
    assert!(server.wait_exit().success());
    let mut rd = PcapReader::new(std::fs::File::open(&pout).unwrap()).unwrap();
    let got = rd.read_all().unwrap();
    assert_eq!(got.len(), 1, "one frame left on the wire");
    assert_eq!(got[0].1, out);
}

#[test]
fn the_flood_mix_reaches_the_vf() {
    let mut server = ServerProc::start(&["--generator", "flood:5000"]);
    let dev = server.connect();
    let bar = dev.bar0();
    bring_up(&bar);
    let r = region(64 * 1024);
    dev.dma_map(&r).unwrap();
    setup_rx(&bar, &r);
    let mut dns = 0;
    for i in 0..(RING as u64 - 1) {
        let (len, _) = wait_until("a generated frame", || rx_done(&r, i));
        let f = bytes(&r, RX_BUF_OFF + BUF * i, len);
        assert_eq!(&f[0..6], &VF0_MAC, "to the VF's MAC");
        assert_eq!(&f[12..14], &[0x08, 0x00], "IPv4");
        assert_eq!(&f[30..34], &[10, 0, 0, 2], "to the VF's address");
        if f[23] == 17 && f[36..38] == [0, 53] {
            dns += 1;
        }
    }
    assert!(dns > 0, "mostly UDP to port 53");
    drop(bar);
    drop(dev);
    assert!(server.wait_exit().success());
}
