//! The systemd notification protocol against sockets the tests own: exact datagrams, abstract
//! addresses, the environment read by a child process, and errors that name the socket.

use floodgate::sdnotify::{self, Notifier, NotifyError};
use std::ffi::OsStr;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a datagram within the timeout");
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

fn bound(dir: &tempfile::TempDir) -> (UnixDatagram, std::path::PathBuf) {
    let path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (sock, path)
}

fn monotonic_usec(msg: &str) -> u64 {
    let mut lines = msg.lines();
    assert_eq!(lines.next(), Some("RELOADING=1"), "{msg:?}");
    let t = lines.next().and_then(|l| l.strip_prefix("MONOTONIC_USEC="));
    assert_eq!(lines.next(), None, "{msg:?}");
    t.unwrap_or_else(|| panic!("no MONOTONIC_USEC in {msg:?}"))
        .parse()
        .unwrap()
}

#[test]
fn every_message_is_one_exact_datagram() {
    let dir = tempfile::tempdir().unwrap();
    let (sock, path) = bound(&dir);
    let n = Notifier::connect(path.as_os_str()).unwrap();
    n.ready().unwrap();
    assert_eq!(recv(&sock), "READY=1");
    n.watchdog().unwrap();
    assert_eq!(recv(&sock), "WATCHDOG=1");
    n.status("rx 10 kpps\ndrop 9 kpps").unwrap();
    assert_eq!(recv(&sock), "STATUS=rx 10 kpps drop 9 kpps");
    n.reloading().unwrap();
    let t1 = monotonic_usec(&recv(&sock));
    n.reloading().unwrap();
    let t2 = monotonic_usec(&recv(&sock));
    assert!(t1 > 0 && t2 >= t1, "{t1} {t2}");
    n.stopping().unwrap();
    assert_eq!(recv(&sock), "STOPPING=1");
}

#[test]
fn abstract_namespace_address() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("floodgate-test-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let n = Notifier::connect(OsStr::new(&format!("@{name}"))).unwrap();
    n.ready().unwrap();
    assert_eq!(recv(&sock), "READY=1");
}

#[test]
fn a_missing_socket_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gone");
    let n = Notifier::connect(path.as_os_str()).unwrap();
    let e = n.ready().unwrap_err();
    assert!(matches!(e, NotifyError::Send { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("READY=1") && text.contains("gone"), "{text}");
    let e = Notifier::connect(OsStr::new("notify")).unwrap_err();
    assert!(e.to_string().contains("absolute path"), "{e}");
}

/// Run in a child process by the tests below (does nothing in an ordinary test run): uses the
/// process-wide functions, which read the environment the parent set.
#[test]
fn child_process_side() {
    let Ok(mode) = std::env::var("FLOODGATE_SDNOTIFY_CHILD") else {
        return;
    };
    println!("enabled={}", sdnotify::enabled());
    println!("watchdog={:?}", sdnotify::watchdog_interval());
    if mode == "send" {
        sdnotify::status("starting");
        sdnotify::ready();
        sdnotify::watchdog();
        sdnotify::reloading();
        sdnotify::ready();
        sdnotify::stopping();
    } else {
        // Without NOTIFY_SOCKET every call is a no-op.
        sdnotify::ready();
        sdnotify::watchdog();
        sdnotify::stopping();
    }
}

fn child(mode: &str, envs: &[(&str, &OsStr)]) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "child_process_side",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("FLOODGATE_SDNOTIFY_CHILD", mode)
    .env_remove("NOTIFY_SOCKET")
    .env_remove("WATCHDOG_USEC")
    .env_remove("WATCHDOG_PID");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn a_child_reads_notify_socket_and_watchdog_from_its_environment() {
    let dir = tempfile::tempdir().unwrap();
    let (sock, path) = bound(&dir);
    let out = child(
        "send",
        &[
            ("NOTIFY_SOCKET", path.as_os_str()),
            ("WATCHDOG_USEC", OsStr::new("3000000")),
        ],
    );
    assert!(out.contains("enabled=true"), "{out}");
    assert!(out.contains("watchdog=Some(3s)"), "{out}");
    assert_eq!(recv(&sock), "STATUS=starting");
    assert_eq!(recv(&sock), "READY=1");
    assert_eq!(recv(&sock), "WATCHDOG=1");
    monotonic_usec(&recv(&sock));
    assert_eq!(recv(&sock), "READY=1");
    assert_eq!(recv(&sock), "STOPPING=1");
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    assert!(sock.recv(&mut buf).is_err(), "no further datagram");

    // A watchdog meant for another process (WATCHDOG_PID of the parent) is not ours.
    let pid = std::process::id().to_string();
    let out = child(
        "send",
        &[
            ("NOTIFY_SOCKET", path.as_os_str()),
            ("WATCHDOG_USEC", OsStr::new("3000000")),
            ("WATCHDOG_PID", OsStr::new(&pid)),
        ],
    );
    assert!(out.contains("watchdog=None"), "{out}");
}

#[test]
fn without_notify_socket_nothing_is_enabled() {
    let out = child("quiet", &[]);
    assert!(out.contains("enabled=false"), "{out}");
    assert!(out.contains("watchdog=None"), "{out}");
}

#[test]
fn the_watchdog_feeder_sends_to_the_socket_only_when_due() {
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let (sock, path) = bound(&dir);
    let n = Notifier::connect(path.as_os_str()).unwrap();
    let mut f = sdnotify::WatchdogFeeder::new(Duration::from_secs(2));
    let t0 = Instant::now();
    for ms in [0u64, 10, 500, 999, 1000, 1500, 2000] {
        f.feed_to(t0 + Duration::from_millis(ms), &n).unwrap();
    }
    // Due at 0, 1000 and 2000 ms.
    for _ in 0..3 {
        assert_eq!(recv(&sock), "WATCHDOG=1");
    }
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    assert!(sock.recv(&mut buf).is_err(), "one datagram too many");
}
