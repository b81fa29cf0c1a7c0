//! `floodgate run` on the AF_XDP backend with real kernel traffic: a veth pair between two
//! network namespaces, the daemon on one end (`[device] backend = "af_xdp"`), UDP datagrams sent
//! by a kernel socket from the other. Checks that the steered flow is filtered (drop and pass
//! counted), that survivors reach a UDP socket through the TAP (their partial checksums
//! completed: veth delivers them so), that SIGHUP swaps the rules while traffic flows, that
//! SIGTERM stops with no XDP program left on the interface, and that a run killed with SIGKILL
//! is followed by a clean restart.
//!
//! Needs root (bpf, AF_XDP, namespaces, TAP) and iproute2; otherwise each test prints one
//! `skipped:` line.

// The xdp crate's test helpers; not all of them are used here.
#[allow(dead_code)]
#[path = "../xdp/tests/common/mod.rs"]
mod common;

use common::{ip, netns_skip_reason, Veth, IP_RX, IP_TX};
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

macro_rules! need_netns {
    () => {
        if let Some(why) = netns_skip_reason() {
            println!("skipped: {why}");
            return;
        }
        if !Path::new("/dev/net/tun").exists() {
            println!("skipped: /dev/net/tun is missing (modprobe tun)");
            return;
        }
    };
}

const PASS_PORT: u16 = 40001;
const DROP_PORT: u16 = 40002;

/// The daemon's config: port 53 to the receiving end steered, `pass_port` passed, the rest
/// dropped.
fn config(v: &Veth, dir: &Path, tap: &str, pass_port: u16) -> String {
    config_workers(v, dir, tap, pass_port, 1)
}

/// As [`config`], judged by `workers` threads (soft RSS: packets dropped and passed on the
/// workers return their buffers to the socket's pool from there).
fn config_workers(v: &Veth, dir: &Path, tap: &str, pass_port: u16, workers: u32) -> String {
    format!(
        r#"
[device]
backend = "af_xdp"
ifname = "{ifname}"
queues = 1
pool_size = 4096

[[steering]]
name = "dns"
flow = "udp4"
dst = "{rx}/32"
dst_port = 53

[filter]
default = "drop"

[[filter.rule]]
name = "known"
action = "pass"
proto = "udp"
src_port = {pass_port}

[tap]
name = "{tap}"

[daemon]
state_file = "{state}"
workers = {workers}

[stats]
interval_ms = 100
prometheus = "127.0.0.1:9110"
"#,
        ifname = v.if_rx,
        rx = IP_RX,
        state = dir.join("state.json").display(),
    )
}

struct Daemon {
    child: Child,
    log: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Daemon {
    fn start(v: &Veth, cfg: &Path) -> Daemon {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &v.ns_rx, env!("CARGO_BIN_EXE_floodgate")])
            .arg("run")
            .arg("--config")
            .arg(cfg)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start floodgate run");
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut d = Daemon {
            child,
            log: rx,
            seen: Vec::new(),
        };
        d.wait_for("reinjecting into TAP");
        d
    }

    /// Waits up to 10 s for a log line containing `what`.
    fn wait_for(&mut self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match self.log.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(what) {
                        return l;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!(
            "no log line with {what:?}; log so far:\n{}",
            self.seen.join("\n")
        );
    }

    fn signal(&self, sig: libc::c_int) {
        // `ip netns exec` execs the daemon: the child's pid is the daemon's.
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// SIGTERM, wait, and return the final counters line.
    fn stop(mut self) -> String {
        self.signal(libc::SIGTERM);
        let status = self.child.wait().expect("wait");
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        while let Ok(l) = self.log.try_recv() {
            self.seen.push(l);
        }
        assert!(
            status.success(),
            "floodgate run failed: {status}\n{out}\n{}",
            self.seen.join("\n")
        );
        out.lines()
            .find(|l| l.starts_with("floodgate: rx"))
            .unwrap_or_else(|| panic!("no final line in {out:?}"))
            .to_string()
    }
}

/// The number after `key ` in the daemon's final line (`rx 5 | dropped 3 | passed 2 (tap 2`).
fn field(line: &str, key: &str) -> u64 {
    let i = line
        .find(&format!("{key} "))
        .unwrap_or_else(|| panic!("{key} in {line}"));
    line[i + key.len() + 1..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Binds a sender's port, retrying for up to 2 s while the kernel still holds it from the
/// previous sender (the filter rules match on the source port, so it must be this one).
fn bind_retry(addr: SocketAddrV4) -> UdpSocket {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match UdpSocket::bind(addr) {
            Ok(s) => return s,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("bind {addr}: {e}"),
        }
    }
}

/// Sends `n` datagrams from `sport` to the receiving end's port 53, from the sending namespace.
fn send(v: &Veth, sport: u16, n: usize, tag: u8) {
    send_to(v, sport, 53, n, tag)
}

fn send_to(v: &Veth, sport: u16, dport: u16, n: usize, tag: u8) {
    v.in_tx(move || {
        let s = bind_retry(SocketAddrV4::new(IP_TX, sport));
        for i in 0..n {
            let msg = [tag, (i >> 8) as u8, i as u8, 0x55, 0xaa, 0x42, 0x17];
            s.send_to(&msg, SocketAddrV4::new(IP_RX, dport))
                .expect("send");
            if i % 16 == 15 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
}

/// A UDP socket on the receiving end's port 53 (in its namespace), where the survivors
/// arrive through the TAP. Returns a channel of the datagrams' first bytes (tags).
fn receiver(v: &Veth) -> mpsc::Receiver<(u8, u16)> {
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    let ns = v.ns_rx.clone();
    std::thread::spawn(move || {
        common::enter_ns(&ns);
        let s = UdpSocket::bind(SocketAddrV4::new(IP_RX, 53)).expect("bind port 53");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 2048];
        loop {
            match s.recv_from(&mut buf) {
                Ok((n, from)) if n >= 3 => {
                    if tx.send((buf[0], from.port())).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    // Stop once the test dropped its end.
                    if tx.send((0, 0)).is_err() {
                        return;
                    }
                }
                Err(e) => panic!("receiving: {e}"),
            }
        }
    });
    ready_rx.recv().unwrap();
    rx
}

/// Collects datagrams with `tag` until `want` arrived or 5 s passed; returns how many, and
/// from which source ports.
fn collect(rx: &mpsc::Receiver<(u8, u16)>, tag: u8, want: usize) -> (usize, Vec<u16>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut n = 0;
    let mut ports = Vec::new();
    while n < want && Instant::now() < deadline {
        if let Ok((t, port)) = rx.recv_timeout(Duration::from_millis(100)) {
            if t == tag {
                n += 1;
                if !ports.contains(&port) {
                    ports.push(port);
                }
            }
        }
    }
    // Anything late (that should not come) shows up here.
    std::thread::sleep(Duration::from_millis(200));
    while let Ok((t, port)) = rx.try_recv() {
        if t == tag {
            n += 1;
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
    }
    (n, ports)
}

/// `GET /metrics` from the daemon inside the receiving namespace, once it has published.
fn metrics_body(v: &Veth) -> String {
    let ns = v.ns_rx.clone();
    std::thread::spawn(move || {
        use std::io::Write;
        common::enter_ns(&ns);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut body = String::new();
            if let Ok(mut s) = std::net::TcpStream::connect("127.0.0.1:9110") {
                s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
                s.read_to_string(&mut body).ok();
            }
            if body.contains("floodgate_backend_info") || Instant::now() > deadline {
                return body;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .join()
    .unwrap()
}

/// The id of the XDP program `ip link` shows on the receiving end.
fn xdp_prog_id(v: &Veth) -> Option<u32> {
    let l = v.rx_link();
    let i = l.find("prog/xdp id ")?;
    l[i + 12..].split_whitespace().next()?.parse().ok()
}

fn no_xdp(v: &Veth) -> bool {
    !v.rx_link().contains("prog/xdp")
}

fn workdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fg-afxdp-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn filters_real_traffic_reloads_on_sighup_and_stops_with_no_xdp_left() {
    need_netns!();
    let v = Veth::new("d").expect("veth");
    // Survivors come in through the TAP while their source is routed via the veth.
    ip(&[
        "netns",
        "exec",
        &v.ns_rx,
        "sysctl",
        "-qw",
        "net.ipv4.conf.all.rp_filter=0",
    ])
    .unwrap();
    let dir = workdir("a");
    let cfg = dir.join("floodgate.toml");
    let tap = format!("fgt{}a", std::process::id() % 100_000);
    std::fs::write(&cfg, config(&v, &dir, &tap, PASS_PORT)).unwrap();
    let rx = receiver(&v);

    let mut d = Daemon::start(&v, &cfg);
    assert!(v.rx_link().contains("prog/xdp"), "{}", v.rx_link());
    let mode = d
        .seen
        .iter()
        .find(|l| l.contains("AF_XDP backend:"))
        .cloned()
        .unwrap_or_default();
    assert!(
        mode.contains("copy mode") || mode.contains("zero-copy mode"),
        "{mode}"
    );

    // The mode is exported (veth gives copy mode). The daemon's loopback is the namespace's.
    let metrics = metrics_body(&v);
    assert!(
        metrics.contains("floodgate_backend_info{kind=\"af_xdp\",mode=\"copy\"} 1\n"),
        "{metrics}"
    );

    // 1. 40 pass, 60 dropped.
    send(&v, PASS_PORT, 40, 1);
    send(&v, DROP_PORT, 60, 1);
    let (got, ports) = collect(&rx, 1, 40);
    assert_eq!(
        got, 40,
        "every passed datagram reaches the socket through the TAP"
    );
    assert_eq!(ports, [PASS_PORT], "only the passed source port");

    // Port 5353 is not steered yet: the kernel gets it, the daemon does not see it.
    send_to(&v, PASS_PORT, 5353, 10, 9);

    // 2. Reload while traffic flows: the drop port becomes the pass port, and port 5353 is
    // steered too (the XDP program is replaced on the same link).
    let prog_before = xdp_prog_id(&v);
    let reloaded = config(&v, &dir, &tap, DROP_PORT).replace(
        "[filter]",
        &format!(
            "[[steering]]\nname = \"mdns\"\nflow = \"udp4\"\ndst = \"{IP_RX}/32\"\n\
             dst_port = 5353\n\n[filter]"
        ),
    );
    std::fs::write(&cfg, reloaded).unwrap();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let ns_tx = v.ns_tx.clone();
    let streamer = std::thread::spawn(move || {
        common::enter_ns(&ns_tx);
        let s = UdpSocket::bind(SocketAddrV4::new(IP_TX, 40003)).unwrap();
        let mut sent = 0u64;
        while stop_rx.try_recv().is_err() {
            s.send_to(&[2, 0, 0, 1], SocketAddrV4::new(IP_RX, 53))
                .unwrap();
            sent += 1;
            std::thread::sleep(Duration::from_micros(200));
        }
        sent
    });
    std::thread::sleep(Duration::from_millis(200));
    d.signal(libc::SIGHUP);
    d.wait_for("reloaded rules");
    std::thread::sleep(Duration::from_millis(200));
    stop_tx.send(()).unwrap();
    let streamed = streamer.join().unwrap();

    let prog_after = xdp_prog_id(&v);
    assert_ne!(prog_before, prog_after, "the steering program was replaced");
    assert!(prog_after.is_some(), "{}", v.rx_link());
    // Now steered: 10 to port 5353 from the new pass port are received and passed.
    send_to(&v, DROP_PORT, 5353, 10, 9);

    // 3. After the reload: 30 from the old pass port are dropped, 30 from the new one pass.
    send(&v, PASS_PORT, 30, 3);
    send(&v, DROP_PORT, 30, 3);
    let (got, ports) = collect(&rx, 3, 30);
    assert_eq!(got, 30);
    assert_eq!(ports, [DROP_PORT], "the reloaded rules pass the other port");

    let line = d.stop();
    let (rxn, dropped, passed, tapn) = (
        field(&line, "rx"),
        field(&line, "dropped"),
        field(&line, "passed"),
        field(&line, "tap"),
    );
    let sent = 40 + 60 + streamed + 10 + 30 + 30;
    assert_eq!(rxn, sent, "every steered datagram was received: {line}");
    assert_eq!(rxn, dropped + passed, "{line}");
    assert_eq!(passed, 40 + 10 + 30, "{line}");
    assert_eq!(tapn, passed, "{line}");
    assert!(line.contains("invariant holds"), "{line}");
    assert!(
        no_xdp(&v),
        "XDP program left after SIGTERM:\n{}",
        v.rx_link()
    );
    assert!(
        !dir.join("xdp-".to_string() + &v.if_rx + ".json").exists(),
        "state file removed at stop"
    );
}

#[test]
fn a_run_killed_with_sigkill_is_followed_by_a_clean_restart_with_workers() {
    need_netns!();
    let v = Veth::new("k").expect("veth");
    ip(&[
        "netns",
        "exec",
        &v.ns_rx,
        "sysctl",
        "-qw",
        "net.ipv4.conf.all.rp_filter=0",
    ])
    .unwrap();
    let dir = workdir("k");
    let cfg = dir.join("floodgate.toml");
    let tap = format!("fgt{}k", std::process::id() % 100_000);
    std::fs::write(&cfg, config(&v, &dir, &tap, PASS_PORT)).unwrap();
    let state = dir.join(format!("xdp-{}.json", v.if_rx));

    let mut d = Daemon::start(&v, &cfg);
    assert!(state.exists(), "the attachment is recorded");
    d.signal(libc::SIGKILL);
    let _ = d.child.wait();
    assert!(state.exists(), "SIGKILL leaves the state file behind");
    // The BPF link died with the process.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !no_xdp(&v) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        no_xdp(&v),
        "XDP program left after SIGKILL:\n{}",
        v.rx_link()
    );

    let rx = receiver(&v);
    std::fs::write(&cfg, config_workers(&v, &dir, &tap, PASS_PORT, 2)).unwrap();
    let d = Daemon::start(&v, &cfg);
    send(&v, PASS_PORT, 20, 7);
    send(&v, DROP_PORT, 20, 7);
    let (got, ports) = collect(&rx, 7, 20);
    assert_eq!((got, ports), (20, vec![PASS_PORT]));
    let line = d.stop();
    assert_eq!(
        (field(&line, "dropped"), field(&line, "passed")),
        (20, 20),
        "{line}"
    );
    assert!(no_xdp(&v), "{}", v.rx_link());
    assert!(!state.exists(), "state file removed at stop");
}
