//! floodgate-pmd over vfio-user: the driver talks to the NIC model through a Unix socket
//! (`floodgate_vfio::user::VfioUserDevice`), its rings and buffers reach the model as memfds in
//! DMA_MAP, and the model's engine thread delivers generated UDP frames into them.
//!
//! Two shapes: server on a thread of this process, and server in a child process (this test
//! binary re-run with `--ignored --exact server_child`, so no other binary is needed).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use floodgate_pmd::{Config, IxgbeVf, PacketBatch, Timeouts};
use floodgate_sim::vfio_user::udpgen::{UdpGen, PEER_MAC};
use floodgate_sim::vfio_user::UserServer;
use floodgate_sim::{Engine, EngineConfig, FrameSource, Nic, NicConfig};
use floodgate_vfio::user::{UserOptions, VfioUserDevice};

const SOCKET_ENV: &str = "FG_USER_PMD_SOCKET";

/// Bound for waits on the other side; tests never assert on durations.
fn timeout() -> Duration {
    std::env::var("FLOODGATE_TEST_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(30), Duration::from_millis)
}

/// A private directory for the socket, removed when dropped (also when a test fails).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_socket(tag: &str) -> (PathBuf, TempDir) {
    let dir = std::env::temp_dir().join(format!("fg-user-pmd-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    (dir.join("vf0.sock"), TempDir(dir))
}

/// The model, its engine (generator at a modest rate) and a server for VF 0.
fn model_and_server(path: &Path) -> (Nic, Engine, UserServer) {
    let nic = Nic::new(NicConfig {
        num_vfs: 2,
        capture_egress: true,
        ..Default::default()
    });
    let server = UserServer::bind(path, nic.vf(0)).unwrap();
    let engine = nic.start_engine(EngineConfig {
        source: Some(Box::new(UdpGen::new(nic.pf(), 0, 64, None)) as Box<dyn FrameSource>),
        source_rate_pps: Some(20_000),
        idle_sleep: Some(Duration::from_micros(50)),
        ..Default::default()
    });
    (nic, engine, server)
}

fn cfg(interrupts: bool) -> Config {
    Config {
        rx_ring_size: 64,
        tx_ring_size: 64,
        pool_buffers: Some(1024),
        max_queues: Some(1),
        huge_pages: floodgate_vfio::HugePages::Never,
        interrupts,
        timeouts: Timeouts::default(),
        ..Default::default()
    }
}

fn connect(path: &Path) -> VfioUserDevice {
    let end = Instant::now() + timeout();
    loop {
        if path.exists() {
            if let Ok(d) = VfioUserDevice::connect_with(
                path,
                &UserOptions {
                    timeout: timeout(),
                    ..Default::default()
                },
            ) {
                return d;
            }
        }
        assert!(Instant::now() < end, "no server on {}", path.display());
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Receives at least `n` frames; checks each is the generator's UDP frame to our MAC.
fn receive(vf: &mut IxgbeVf<VfioUserDevice>, n: usize, sleep_on_irq: bool) -> usize {
    let mut batch = PacketBatch::new(32);
    let mut got = 0;
    let end = Instant::now() + timeout();
    let mac = vf.mac();
    while got < n {
        assert!(Instant::now() < end, "received only {got} of {n} frames");
        if sleep_on_irq {
            vf.wait_rx(0, Duration::from_millis(50)).unwrap();
        }
        let k = vf.rx_burst(0, &mut batch);
        for p in batch.iter() {
            let d = p.data();
            assert_eq!(d.len(), 64);
            assert_eq!(&d[0..6], &mac, "to our MAC");
            assert_eq!(&d[6..12], &PEER_MAC);
            assert_eq!(&d[12..14], &[0x08, 0x00]);
        }
        got += k;
        vf.recycle(0, &mut batch);
        if k == 0 && !sleep_on_irq {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    got
}

#[test]
fn pmd_over_vfio_user_in_one_process_with_interrupts_and_tx() {
    let (path, dir) = temp_socket("inproc");
    let (nic, engine, mut server) = model_and_server(&path);
    let t = std::thread::spawn(move || {
        server.serve_one().unwrap();
        server
    });
    let dev = connect(&path);
    let mut vf = IxgbeVf::open(dev, cfg(true)).expect("PMD bring-up over vfio-user");
    assert_eq!(vf.mac(), [0x02, 0xf1, 0, 0, 0, 1]);
    assert!(vf.link().up);
    assert!(receive(&mut vf, 64, true) >= 64);

    // One frame out: the engine fetches it from our ring and it leaves on the wire.
    let mut batch = PacketBatch::new(1);
    let mut p = vf.mempool().alloc().expect("a buffer");
    p.set_len(60).unwrap();
    let mac = vf.mac();
    let d = p.data_mut();
    d.fill(0);
    d[0..6].copy_from_slice(&[0x02, 0x99, 0, 0, 0, 9]);
    d[6..12].copy_from_slice(&mac);
    d[12..14].copy_from_slice(&[0x88, 0xB5]);
    batch.push(p).ok().unwrap();
    assert_eq!(vf.tx_burst(0, &mut batch), 1);
    let end = Instant::now() + timeout();
    while !nic
        .take_egress()
        .iter()
        .any(|f| f[0..6] == [0x02, 0x99, 0, 0, 0, 9])
    {
        assert!(Instant::now() < end, "the TX frame never left");
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(vf);
    t.join().unwrap();
    engine.stop();
    assert_eq!(nic.vf(0).dma_faults(), 0);
    assert_eq!(
        nic.vf(0).iommu().mappings(),
        0,
        "client gone, mappings gone"
    );
    drop(dir);
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn pmd_over_vfio_user_two_processes() {
    let t0 = Instant::now();
    let (path, dir) = temp_socket("proc");
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "server_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SOCKET_ENV, &path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Kill(child);
    let dev = connect(&path);
    let mut vf = IxgbeVf::open(dev, cfg(false)).expect("PMD bring-up over vfio-user");
    let got = receive(&mut vf, 256, false);
    assert!(got >= 256);
    // VFGPRC read over the socket (counted from the PMD's baseline, taken during bring-up).
    let s = vf.stats();
    assert!(
        s.hw.rx_packets > 0,
        "VFGPRC counted frames: {}",
        s.hw.rx_packets
    );
    drop(vf);
    let end = Instant::now() + timeout();
    let status = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < end, "server process did not exit");
        std::thread::sleep(Duration::from_millis(2));
    };
    assert!(status.success(), "server process: {status}");
    eprintln!(
        "PMD over vfio-user, two processes: {:.0} ms",
        t0.elapsed().as_secs_f64() * 1000.0
    );
    drop(dir);
}

/// The server half of `pmd_over_vfio_user_two_processes`, run in a child process by that test.
#[test]
#[ignore = "server half of pmd_over_vfio_user_two_processes, which runs it in a child process"]
fn server_child() {
    let path = PathBuf::from(std::env::var(SOCKET_ENV).expect("run by the parent test"));
    let (nic, engine, mut server) = model_and_server(&path);
    server.serve_one().unwrap();
    engine.stop();
    assert_eq!(
        nic.vf(0).dma_faults(),
        0,
        "no DMA faults in the served model"
    );
}
