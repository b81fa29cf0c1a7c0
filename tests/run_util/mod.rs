//! Shared harness of the `floodgate run` over vfio-user tests: the NIC model in the test
//! process, served on a socket, with UDP/53 steered into VF 0, and the daemon as a child process.

#![allow(dead_code)]

use floodgate_sim::engine::{Engine, EngineConfig, FrameSource};
use floodgate_sim::ethtool::{FlowType, RxFlowSpec};
use floodgate_sim::generator::{Generator, GeneratorConfig, Rate, TrafficClass};
use floodgate_sim::vfio_user::UserServer;
use floodgate_sim::{Nic, NicConfig};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The generator, stopping after `left` frames and counting legitimate queries.
pub struct Limited {
    pub gen: Generator,
    pub left: u64,
    pub legit: Arc<AtomicU64>,
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

/// A running `floodgate run` on the model's VF 0 over vfio-user.
pub struct RunHarness {
    pub nic: Nic,
    pub log: String,
    pub t0: Instant,
    dir: PathBuf,
    server: Option<JoinHandle<()>>,
    child: Child,
    err: BufReader<ChildStderr>,
}

/// What the daemon printed once stopped.
pub struct Stopped {
    pub status: ExitStatus,
    pub out: String,
    pub log: String,
}

impl RunHarness {
    /// Writes a config (vfio-user device, the demo's `[filter]`, then `tail`), serves the model,
    /// starts the daemon and reads its log until a line contains `ready`; `on_line` sees every
    /// line before that.
    pub fn start(name: &str, tail: &str, ready: &str, mut on_line: impl FnMut(&str)) -> RunHarness {
        let dir = std::env::temp_dir().join(format!("fg-run-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("vf0.sock");
        let cfg_path = dir.join("run.toml");
        let demo = std::fs::read_to_string("examples/demo.toml").unwrap();
        // The demo's rules, on a vfio-user device, with no steering (the model is steered here).
        let filter = &demo[demo.find("[filter]").unwrap()..demo.find("[tap]").unwrap()];
        std::fs::write(
            &cfg_path,
            format!(
                "[device]\npci = \"vfio-user:{}\"\nrx_ring = 4096\npool_size = 16384\n\n{filter}{tail}",
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
        loop {
            let mut line = String::new();
            if err.read_line(&mut line).unwrap_or(0) == 0 {
                panic!("floodgate run exited early:\n{log}");
            }
            log.push_str(&line);
            on_line(&line);
            if line.contains(ready) {
                break;
            }
            // A liveness bound for bring-up, not a performance assertion.
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "no bring-up:\n{log}"
            );
        }
        RunHarness {
            nic,
            log,
            t0,
            dir,
            server: Some(server),
            child,
            err,
        }
    }

    /// Starts the model's engine sending `frames` generated frames (seed `seed`) at 20 kpps;
    /// returns it and the count of legitimate queries among them.
    pub fn send(&self, seed: u64, frames: u64) -> (Engine, Arc<AtomicU64>) {
        let legit = Arc::new(AtomicU64::new(0));
        let engine = self.nic.start_engine(EngineConfig {
            source: Some(Box::new(Limited {
                gen: Generator::new(GeneratorConfig {
                    seed,
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
        (engine, legit)
    }

    /// Whether the model has routed `frames` wire frames (to the VF, the PF, or dropped them
    /// for a full ring).
    pub fn routed(&self, frames: u64) -> bool {
        let s = self.nic.stats();
        s.rx_delivered + s.pf_delivered + s.rx_no_desc >= frames
    }

    /// SIGTERM, then collects the exit status, stdout and the whole log, and cleans up.
    pub fn stop(mut self) -> Stopped {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let mut rest = String::new();
        self.err.read_to_string(&mut rest).ok();
        self.log.push_str(&rest);
        if let Some(s) = self.server.take() {
            let _ = s.join();
        }
        std::fs::remove_dir_all(&self.dir).ok();
        Stopped {
            status,
            out,
            log: std::mem::take(&mut self.log),
        }
    }
}

impl Stopped {
    /// The daemon's final counters line (`floodgate: rx ...`), after checking it exited 0.
    pub fn final_line(&self) -> String {
        assert!(
            self.status.success(),
            "floodgate run failed: {}\n{}\n{}",
            self.status,
            self.out,
            self.log
        );
        self.out
            .lines()
            .find(|l| l.starts_with("floodgate: rx "))
            .unwrap_or_else(|| panic!("no final line:\n{}\n{}", self.out, self.log))
            .to_string()
    }
}

/// The number after `key` in `line`.
pub fn num(line: &str, key: &str) -> u64 {
    let i = line.find(key).unwrap_or_else(|| panic!("{key} in {line}")) + key.len();
    line[i..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}
