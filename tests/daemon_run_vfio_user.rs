//! `floodgate run` end to end against the NIC model in this process, served over vfio-user: the
//! daemon connects, brings the VF up through the socket, receives the model's generated traffic
//! by DMA into its memfd-backed pool, filters it, reinjects survivors into a TAP, and on SIGTERM
//! drains and prints its final counters.
//!
//! Needs root (the TAP); otherwise prints one "skipped: ..." line.

use floodgate_sim::engine::{EngineConfig, FrameSource};
use floodgate_sim::ethtool::{FlowType, RxFlowSpec};
use floodgate_sim::generator::{Generator, GeneratorConfig, Rate, TrafficClass};
use floodgate_sim::vfio_user::UserServer;
use floodgate_sim::{Nic, NicConfig};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

#[test]
fn run_over_vfio_user_filters_and_stops_cleanly_on_sigterm() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !std::path::Path::new("/dev/net/tun").exists() {
        println!("skipped: floodgate run over vfio-user: needs root and /dev/net/tun for the TAP");
        return;
    }
    let dir = std::env::temp_dir().join(format!("fg-run-vu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("vf0.sock");
    let tap = format!("fgrun{}", std::process::id() % 100000);
    let cfg_path = dir.join("run.toml");
    let demo = std::fs::read_to_string("examples/demo.toml").unwrap();
    // The demo's rules, on a vfio-user device, with no steering (the model is steered here).
    let filter = &demo[demo.find("[filter]").unwrap()..demo.find("[tap]").unwrap()];
    std::fs::write(
        &cfg_path,
        format!(
            "[device]\npci = \"vfio-user:{}\"\nrx_ring = 4096\npool_size = 16384\n\n{filter}\
             [tap]\nname = \"{tap}\"\n\n[stats]\ninterval_ms = 200\n",
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
    // Wait for the VF to come up (the daemon logs it), then send traffic.
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    let t0 = Instant::now();
    loop {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("floodgate run exited early:\n{log}");
        }
        log.push_str(&line);
        if line.contains("reinjecting into TAP") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no bring-up:\n{log}"
        );
    }
    let legit = Arc::new(AtomicU64::new(0));
    let frames = 5000u64;
    let engine = nic.start_engine(EngineConfig {
        source: Some(Box::new(Limited {
            gen: Generator::new(GeneratorConfig {
                seed: 3,
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
    while nic.stats().rx_delivered + nic.stats().pf_delivered + nic.stats().rx_no_desc < frames
        && t0.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
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
    let (rx, dropped, passed, tapped) = (num("rx "), num("dropped "), num("passed "), num("(tap "));
    let s = nic.stats();
    println!("{line}");
    assert!(line.contains("invariant holds"), "{line}");
    assert_eq!(
        rx, s.rx_delivered,
        "every frame the model delivered was received: {line}"
    );
    assert_eq!(s.rx_no_desc, 0, "no ring overflow at 20 kpps");
    assert_eq!(rx, dropped + passed, "{line}");
    assert_eq!(
        passed,
        legit.load(Ordering::Relaxed),
        "exactly the legitimate queries pass"
    );
    assert_eq!(tapped, passed, "all of them written to the TAP: {line}");
    assert!(
        log.contains("removed") || !log.contains("steering"),
        "{log}"
    );
}
