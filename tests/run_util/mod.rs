//! Shared harness of the `floodgate run` over vfio-user tests: the NIC model in the test
//! process, served on a socket, with UDP/53 steered into VF 0, and the daemon as a child process.

use floodgate_sim::engine::{Engine, EngineConfig, FrameSource};
use floodgate_sim::ethtool::{FlowType, RxFlowSpec};
use floodgate_sim::generator::{Generator, GeneratorConfig, Rate, TrafficClass};
use floodgate_sim::vfio_user::UserServer;
use floodgate_sim::{Nic, NicConfig};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    /// The daemon's config file (rewrite it and send SIGHUP to reload).
    pub cfg_path: PathBuf,
    dir: PathBuf,
    server: Option<JoinHandle<()>>,
    child: Child,
    /// The rest of the daemon's log, read by a thread so the daemon never blocks on a full
    /// stderr pipe.
    rest: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

/// What the daemon printed once stopped.
pub struct Stopped {
    pub status: ExitStatus,
    pub out: String,
    pub log: String,
    /// From the first stop signal to the exit.
    pub took: Duration,
}

impl RunHarness {
    /// Writes a config (vfio-user device, the demo's `[filter]`, then `tail`), serves the model,
    /// starts the daemon and reads its log until a line contains `ready`; `on_line` sees every
    /// line before that.
    pub fn start(name: &str, tail: &str, ready: &str, on_line: impl FnMut(&str)) -> RunHarness {
        Self::start_with(name, tail, ready, on_line, |_| {})
    }

    /// Like [`start`](Self::start), with `prepare` called on the config file before the daemon
    /// starts (to change its mode, say).
    pub fn start_with(
        name: &str,
        tail: &str,
        ready: &str,
        on_line: impl FnMut(&str),
        prepare: impl FnOnce(&std::path::Path),
    ) -> RunHarness {
        Self::start_env(name, tail, ready, on_line, prepare, &[])
    }

    /// Like [`start_with`](Self::start_with), with extra environment variables for the daemon.
    pub fn start_env(
        name: &str,
        tail: &str,
        ready: &str,
        mut on_line: impl FnMut(&str),
        prepare: impl FnOnce(&std::path::Path),
        envs: &[(&str, &str)],
    ) -> RunHarness {
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
        prepare(&cfg_path);

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
            .envs(envs.iter().copied())
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
        let rest = Arc::new(Mutex::new(String::new()));
        let r2 = rest.clone();
        let reader = std::thread::spawn(move || loop {
            let mut line = String::new();
            if err.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            r2.lock().unwrap().push_str(&line);
        });
        RunHarness {
            nic,
            log,
            t0,
            cfg_path,
            dir,
            server: Some(server),
            child,
            rest,
            reader: Some(reader),
        }
    }

    /// The daemon's process ID.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `sig` to the daemon.
    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Whether the daemon is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The log since bring-up, so far.
    pub fn log_now(&self) -> String {
        self.rest.lock().unwrap().clone()
    }

    /// Waits until `f` holds for the log since bring-up, for at most `limit` (a hang guard).
    /// Returns whether it did.
    pub fn wait_log(&self, limit: Duration, f: impl Fn(&str) -> bool) -> bool {
        let t = Instant::now();
        while t.elapsed() < limit {
            if f(&self.log_now()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Writes the config file atomically (a new file renamed over it, as editors do).
    pub fn replace_config(&self, text: &str) {
        let tmp = self.cfg_path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.cfg_path).unwrap();
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
    pub fn stop(self) -> Stopped {
        self.stop_with(&[libc::SIGTERM], Duration::from_secs(60))
    }

    /// Sends `signals` (100 ms apart), then waits for the daemon to exit: for at most `limit`,
    /// a hang guard after which it is killed and the test fails. Collects the exit status,
    /// stdout and the whole log, and cleans up.
    pub fn stop_with(mut self, signals: &[i32], limit: Duration) -> Stopped {
        let t = Instant::now();
        for (i, &sig) in signals.iter().enumerate() {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(100));
            }
            self.signal(sig);
        }
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if t.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "floodgate run did not exit within {limit:?} of the stop signal:\n{}{}",
                    self.log,
                    self.log_now()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let took = t.elapsed();
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let rest = self.log_now();
        self.log.push_str(&rest);
        if let Some(s) = self.server.take() {
            let _ = s.join();
        }
        std::fs::remove_dir_all(&self.dir).ok();
        Stopped {
            status,
            out,
            log: std::mem::take(&mut self.log),
            took,
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
