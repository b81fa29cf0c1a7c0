//! `floodgate run` with `[reinject] to = "vf"`, end to end and unprivileged: the NIC model in
//! this process is served over vfio-user, the daemon (a child process) brings the VF up through
//! the socket, drops the flood, and transmits every legitimate query back out of the VF to a
//! next hop; the model's wire port is where they are counted. No TAP, so no root needed.

use floodgate_sim::engine::{EngineConfig, FrameSink, FrameSource};
use floodgate_sim::ethtool::{FlowType, RxFlowSpec};
use floodgate_sim::generator::{Generator, GeneratorConfig, Rate, TrafficClass};
use floodgate_sim::vfio_user::UserServer;
use floodgate_sim::{Nic, NicConfig};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NEXT_HOP: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x01, 0x01];

/// The generator, stopping after `left` frames and counting legitimate queries.
struct Limited {
    gen: Generator,
    left: u64,
    legit: Arc<AtomicU64>,
}

impl FrameSource for Limited {
    fn next_frame(&mut self, buf: &mut [u8]) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let g = self.gen.next_into(buf).ok()?;
        if g.class == TrafficClass::Legit {
            self.legit.fetch_add(1, Ordering::Relaxed);
        }
        Some(g.len)
    }
}

/// Counts frames leaving on the model's wire, and those addressed to the next hop from the VF.
struct Wire {
    vf_mac: [u8; 6],
    frames: Arc<AtomicU64>,
    to_next_hop: Arc<AtomicU64>,
}

impl FrameSink for Wire {
    fn frame(&mut self, f: &[u8]) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        // UDP to port 53 (Ethernet + IPv4 without options), rewritten by the daemon.
        if f.len() >= 42
            && f[..6] == NEXT_HOP
            && f[6..12] == self.vf_mac
            && f[23] == 17
            && f[36..38] == [0, 53]
        {
            self.to_next_hop.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[test]
fn run_with_reinject_vf_sends_the_survivors_out_of_the_vf_to_the_next_hop() {
    let dir = std::env::temp_dir().join(format!("fg-run-vf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("vf0.sock");
    let cfg_path = dir.join("run.toml");
    let demo = std::fs::read_to_string("examples/demo.toml").unwrap();
    // The demo's rules, on a vfio-user device, with no steering (the model is steered here).
    let filter = &demo[demo.find("[filter]").unwrap()..demo.find("[tap]").unwrap()];
    std::fs::write(
        &cfg_path,
        format!(
            "[device]\npci = \"vfio-user:{}\"\nrx_ring = 4096\npool_size = 16384\n\n{filter}\
             [reinject]\nto = \"vf\"\ndst_mac = \"02:00:00:00:01:01\"\n\n\
             [stats]\ninterval_ms = 200\nprometheus = false\n",
            sock.display()
        ),
    )
    .unwrap();

    let nic = Nic::new(NicConfig {
        capture_egress: false,
        ..NicConfig::default()
    });
    nic.pf()
        .add_ntuple(&RxFlowSpec::new(FlowType::UdpV4).dst_port(53).to_vf(0, 0))
        .unwrap();
    let mut server = UserServer::bind(&sock, nic.vf(0)).unwrap();
    let server = std::thread::spawn(move || {
        let _ = server.serve_one();
    });

    let mut child = Command::new(env!("CARGO_BIN_EXE_floodgate"))
        .args(["run", "--config"])
        .arg(&cfg_path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start floodgate run");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    let t0 = Instant::now();
    let mut vf_mac = None;
    loop {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("floodgate run exited early:\n{log}");
        }
        log.push_str(&line);
        if let Some(i) = line.find("source MAC ") {
            let m = &line[i + "source MAC ".len()..];
            vf_mac = floodgate::config::parse_mac(m.split(',').next().unwrap_or(""));
        }
        if line.contains("reinjecting survivors out of the VF") {
            break;
        }
        // A liveness bound for bring-up, not a performance assertion.
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no bring-up:\n{log}"
        );
    }
    let vf_mac = vf_mac.unwrap_or_else(|| panic!("VF MAC not logged:\n{log}"));
    let (wire, to_next_hop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    nic.set_egress_sink(Some(Box::new(Wire {
        vf_mac,
        frames: wire.clone(),
        to_next_hop: to_next_hop.clone(),
    })));
    let legit = Arc::new(AtomicU64::new(0));
    let frames = 5000u64;
    let engine = nic.start_engine(EngineConfig {
        source: Some(Box::new(Limited {
            gen: Generator::new(GeneratorConfig {
                seed: 5,
                rate: Rate::Pps(20_000),
                ..GeneratorConfig::default()
            })
            .unwrap(),
            left: frames,
            legit: legit.clone(),
        })),
        source_rate_pps: Some(20_000),
        ..EngineConfig::default()
    });
    // Wait until the model has delivered everything and the survivors came back out of the
    // VF (the engine fetches the VF's TX ring); bounded, not timed.
    while (nic.stats().rx_delivered + nic.stats().pf_delivered + nic.stats().rx_no_desc < frames
        || to_next_hop.load(Ordering::Relaxed) < legit.load(Ordering::Relaxed))
        && t0.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    engine.stop();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut rest = String::new();
    err.read_to_string(&mut rest).ok();
    log.push_str(&rest);
    let _ = server.join();
    std::fs::remove_dir_all(&dir).ok();

    assert!(
        status.success(),
        "floodgate run failed: {status}\n{out}\n{log}"
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("floodgate: rx "))
        .unwrap_or_else(|| panic!("no final line:\n{out}\n{log}"));
    println!("{line}");
    let num = |key: &str| -> u64 {
        let i = line.find(key).unwrap_or_else(|| panic!("{key} in {line}")) + key.len();
        line[i..]
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (rx, dropped, passed) = (num("rx "), num("dropped "), num("passed "));
    let (vf_tx, refused, looped) = (num("(vf tx "), num("refused "), num("looped back "));
    let legit = legit.load(Ordering::Relaxed);
    let s = nic.stats();
    assert!(line.contains("invariant holds"), "{line}");
    assert_eq!(rx, s.rx_delivered, "{line}");
    assert_eq!(s.rx_no_desc, 0, "no ring overflow at 20 kpps");
    assert_eq!(rx, dropped + passed, "{line}");
    assert_eq!(passed, legit, "exactly the legitimate queries pass: {line}");
    assert_eq!((vf_tx, refused, looped), (passed, 0, 0), "{line}");
    assert_eq!(s.tx_spoofed, 0, "source MAC rewritten to the VF's");
    assert_eq!(
        to_next_hop.load(Ordering::Relaxed),
        legit,
        "every legitimate query left on the wire for the next hop"
    );
    assert_eq!(wire.load(Ordering::Relaxed), legit, "and nothing else did");
}
