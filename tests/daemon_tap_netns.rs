//! End to end with a real kernel: `floodgate demo --tap` inside a network namespace reinjects the
//! survivors into a TAP, and a capture on that TAP holds exactly the legitimate DNS queries.
//!
//! Needs root, /dev/net/tun, iproute2 and python3 (for the AF_PACKET capture). Without them the
//! test prints one "skipped: ..." line.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CAPTURE: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
s.settimeout(0.2)
out = open(sys.argv[2], "w", buffering=1)
print("READY", flush=True)
deadline = time.time() + float(sys.argv[3])
while time.time() < deadline:
    try:
        data, addr = s.recvfrom(65535)
    except socket.timeout:
        continue
    if addr[2] == socket.PACKET_OUTGOING:
        continue
    out.write(data.hex() + "\n")
"#;

fn skip(why: &str) {
    println!("skipped: demo TAP end-to-end test: {why}");
}

fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

struct Netns(String);
impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.0]);
    }
}

#[test]
fn demo_reinjects_exactly_the_legitimate_queries_into_a_tap() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return skip("not root (needs network namespaces and a TAP)");
    }
    if !Path::new("/dev/net/tun").exists() {
        return skip("/dev/net/tun is missing (modprobe tun)");
    }
    if sh(&["ip", "-V"]).is_err() {
        return skip("iproute2 (`ip`) is not installed");
    }
    if sh(&["python3", "-c", "import socket"]).is_err() {
        return skip("python3 is not installed (used for the AF_PACKET capture)");
    }
    let ns = Netns(format!("fgtap{}", std::process::id()));
    if let Err(e) = sh(&["ip", "netns", "add", &ns.0]) {
        return skip(&format!("cannot create a network namespace: {e}"));
    }
    let inns = |args: &[&str]| {
        let mut v = vec!["ip", "netns", "exec", ns.0.as_str()];
        v.extend_from_slice(args);
        sh(&v)
    };
    inns(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]).ok();
    inns(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]).ok();
    inns(&["ip", "tuntap", "add", "dev", "fg0", "mode", "tap"]).expect("create TAP fg0");
    inns(&["ip", "link", "set", "fg0", "up"]).expect("fg0 up");

    let dir = std::env::temp_dir().join(format!("fgtap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cap_file = dir.join("capture.hex");
    let mut cap = Command::new("ip")
        .args(["netns", "exec", &ns.0, "python3", "-c", CAPTURE, "fg0"])
        .arg(&cap_file)
        .arg("60")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the capture");
    let mut line = String::new();
    BufReader::new(cap.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "READY", "capture did not start");

    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0, env!("CARGO_BIN_EXE_floodgate")])
        .args([
            "demo",
            "--tap",
            "fg0",
            "--seconds",
            "1",
            "--rate",
            "20000",
            "--json",
        ])
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_str(stdout.trim()).expect("demo JSON");
    let tap = j["tap"].as_u64().unwrap();
    let legit = j["generated"]["legit"].as_u64().unwrap();
    assert!(legit > 0, "{j}");
    assert_eq!(j["legit_passed"].as_u64().unwrap(), legit, "{j}");
    assert_eq!(tap, legit, "only legitimate queries pass: {j}");
    assert_eq!(j["tap_dropped"].as_u64().unwrap(), 0, "{j}");

    // Wait until the capture has seen them all (it runs until killed), then compare.
    let t0 = Instant::now();
    let read = || -> Vec<Vec<u8>> {
        std::fs::read_to_string(&cap_file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                (0..l.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(l.get(i..i + 2)?, 16).ok())
                    .collect::<Option<Vec<u8>>>()
            })
            .collect()
    };
    let mut frames = read();
    while (frames.len() as u64) < tap && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
        frames = read();
    }
    std::thread::sleep(Duration::from_millis(300));
    frames = read();
    let _ = cap.kill();
    let _ = cap.wait();
    std::fs::remove_dir_all(&dir).ok();

    assert_eq!(
        frames.len() as u64,
        tap,
        "capture holds exactly what was reinjected"
    );
    let clients: [[u8; 4]; 4] = [
        [192, 0, 2, 10],
        [192, 0, 2, 11],
        [198, 51, 100, 7],
        [203, 0, 113, 53],
    ];
    for f in &frames {
        assert!(f.len() >= 42, "short frame {f:02x?}");
        assert_eq!(&f[12..14], &[0x08, 0x00], "IPv4");
        assert_eq!(f[23], 17, "UDP");
        assert_eq!(&f[36..38], &[0, 53], "to port 53");
        let src = [f[26], f[27], f[28], f[29]];
        assert!(
            clients.contains(&src),
            "source {src:?} is not a known client"
        );
    }
}

#[test]
fn tap_takes_the_pf_mac_so_reinjected_frames_are_addressed_to_it() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !Path::new("/dev/net/tun").exists() {
        return skip("TAP MAC test needs root and /dev/net/tun");
    }
    let name = format!("fgmac{}", std::process::id() % 100000);
    let tap = floodgate::tap::Tap::open(&name).expect("create TAP");
    let mac = [0x02, 0xf0, 0x00, 0x00, 0x00, 0x01];
    tap.set_mac(mac).expect("set MAC while down");
    let got = std::fs::read_to_string(format!("/sys/class/net/{name}/address")).unwrap();
    assert_eq!(got.trim(), "02:f0:00:00:00:01");
    tap.set_up().unwrap();
    // Once up, the kernel refuses a MAC change on a TAP, and the error says why.
    if let Err(e) = tap.set_mac([0x02, 0, 0, 0, 0, 9]) {
        assert!(e.to_string().contains("MAC"), "{e}");
    }
}

const UDP_SINK: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
# A large buffer (forced: we are root), so a slow interpreter on a loaded machine loses nothing.
s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE
s.bind(("0.0.0.0", 53))
s.settimeout(0.2)
print("READY", flush=True)
n = 0
start = time.time()
last = None
while True:
    try:
        s.recvfrom(65535)
        n += 1
        last = time.time()
    except socket.timeout:
        now = time.time()
        if (last is None and now - start > float(sys.argv[2])) or (last is not None and now - last > 1.5):
            break
open(sys.argv[1], "w").write(str(n))
"#;

#[test]
fn reinjected_queries_reach_a_udp_socket_of_the_kernel() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return skip("not root (needs network namespaces and a TAP)");
    }
    if !Path::new("/dev/net/tun").exists() {
        return skip("/dev/net/tun is missing (modprobe tun)");
    }
    if sh(&["ip", "-V"]).is_err() || sh(&["python3", "-c", "import socket"]).is_err() {
        return skip("iproute2 or python3 is not installed");
    }
    let ns = Netns(format!("fgudp{}", std::process::id()));
    if let Err(e) = sh(&["ip", "netns", "add", &ns.0]) {
        return skip(&format!("cannot create a network namespace: {e}"));
    }
    let inns = |args: &[&str]| {
        let mut v = vec!["ip", "netns", "exec", ns.0.as_str()];
        v.extend_from_slice(args);
        sh(&v)
    };
    // The host side of the demo: the TAP carries the PF's MAC and the attacked server's address
    // (what `floodgate run` sets up from the PF), and a default route so loose reverse-path
    // filtering accepts the clients' addresses.
    inns(&["ip", "tuntap", "add", "dev", "fg0", "mode", "tap"]).expect("create TAP");
    let pf_mac = floodgate_pmd::fmt_mac(floodgate_sim::NicConfig::default().pf_mac);
    inns(&["ip", "link", "set", "fg0", "address", &pf_mac]).expect("TAP MAC");
    inns(&["ip", "addr", "add", "10.0.0.1/24", "dev", "fg0"]).expect("address");
    inns(&["ip", "link", "set", "fg0", "up"]).expect("up");
    inns(&["ip", "route", "add", "default", "dev", "fg0"]).expect("route");
    inns(&["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=2"]).ok();
    inns(&["sysctl", "-qw", "net.ipv4.conf.fg0.rp_filter=2"]).ok();

    let dir = std::env::temp_dir().join(format!("fgudp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let count_file = dir.join("count");
    let mut sink = Command::new("ip")
        .args(["netns", "exec", &ns.0, "python3", "-c", UDP_SINK])
        .arg(&count_file)
        .arg("30")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the UDP sink");
    let mut line = String::new();
    BufReader::new(sink.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "READY");

    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0, env!("CARGO_BIN_EXE_floodgate")])
        .args([
            "demo",
            "--tap",
            "fg0",
            "--seconds",
            "1",
            "--rate",
            "20000",
            "--json",
        ])
        .output()
        .expect("run the demo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("demo JSON");
    let tap = j["tap"].as_u64().unwrap();
    assert!(tap > 0, "{j}");
    // The sink stops 1.5 s after the last datagram and writes its count.
    let t0 = Instant::now();
    while sink.try_wait().unwrap().is_none() && t0.elapsed() < Duration::from_secs(40) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = sink.kill();
    let _ = sink.wait();
    let got = std::fs::read_to_string(&count_file)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(
        got, tap,
        "every reinjected DNS query reached the kernel's UDP socket on port 53"
    );
}
