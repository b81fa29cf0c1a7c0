//! `floodgate top` on a terminal (a pseudo-terminal the test owns, 80×24): it draws the view,
//! quits on q, on Ctrl-C and on SIGTERM, and gives the terminal back (alternate screen left,
//! cursor shown, line discipline restored) each time.

use floodgate::daemon::metrics::{Metrics, MetricsServer, RuleSnapshot, Snapshot};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A metrics endpoint with a little traffic on it.
fn endpoint() -> (MetricsServer, Arc<Metrics>) {
    let m = Arc::new(Metrics::default());
    let mut s = Snapshot {
        rules: vec![RuleSnapshot {
            name: "dns-flood".into(),
            hits: 1000,
            dropped: 1000,
            ..Default::default()
        }],
        ..Default::default()
    };
    s.counters.rx_packets = 1000;
    s.counters.dropped = 1000;
    m.publish(s);
    let srv = MetricsServer::start("127.0.0.1:0".parse().unwrap(), m.clone()).unwrap();
    (srv, m)
}

/// Opens a pseudo-terminal of 80×24: (master, slave).
fn pty() -> (File, File) {
    let (mut master, mut slave) = (0, 0);
    let ws = libc::winsize {
        ws_row: 24,
        ws_col: 80,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: the out-pointers are valid for the call; no name buffer or termios is passed.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &ws,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty returned two open descriptors that nothing else owns.
    unsafe { (File::from_raw_fd(master), File::from_raw_fd(slave)) }
}

/// The terminal's local modes (ICANON, ECHO, ISIG...).
fn lflag(f: &File) -> libc::tcflag_t {
    // SAFETY: termios is plain data; tcgetattr fills it for a valid descriptor.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `f` is an open terminal descriptor and `t` a valid termios.
    assert_eq!(unsafe { libc::tcgetattr(f.as_raw_fd(), &mut t) }, 0);
    t.c_lflag
}

/// How the test ends the view.
#[derive(Debug, Clone, Copy)]
enum Quit {
    Key(&'static [u8]),
    Signal(libc::c_int),
}

/// Runs `top` on a fresh terminal, waits for a drawn frame, quits it with `how` and returns
/// what the terminal received.
fn quit_with(how: Quit) -> String {
    let (_srv, _m) = endpoint();
    let url = format!("http://{}/metrics", _srv.addr());
    let (mut master, slave) = pty();
    let modes = lflag(&slave);
    let mut child = Command::new(env!("CARGO_BIN_EXE_floodgate"))
        .args(["top", "--interval", "0.2", "--metrics", &url])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::piped())
        .env("TERM", "xterm")
        .spawn()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (s2, mut reader) = (seen.clone(), master.try_clone().unwrap());
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            s2.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let text = || String::from_utf8_lossy(&seen.lock().unwrap()).to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !text().contains("dns-flood") {
        assert!(Instant::now() < deadline, "no frame drawn:\n{}", text());
        assert!(child.try_wait().unwrap().is_none(), "top ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Raw mode while the view runs.
    assert_eq!(lflag(&slave) & libc::ICANON, 0, "raw mode");
    match how {
        Quit::Key(k) => master.write_all(k).unwrap(),
        // SAFETY: kill(2) on the child's pid, which has not been waited for yet.
        Quit::Signal(sig) => assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0),
    }
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "top did not quit on {how:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{status}: {err}");
    assert_eq!(lflag(&slave), modes, "terminal modes restored");
    std::thread::sleep(Duration::from_millis(100));
    text()
}

#[test]
fn q_quits_and_restores_the_terminal() {
    let out = quit_with(Quit::Key(b"q"));
    assert!(out.contains("\x1b[?1049h"), "entered the alternate screen");
    assert!(
        out.contains("\x1b[?1049l"),
        "left the alternate screen: {out:?}"
    );
    assert!(out.contains("\x1b[?25h"), "cursor shown again");
    assert!(out.contains("floodgate top"));
}

#[test]
fn ctrl_c_quits_and_restores_the_terminal() {
    let out = quit_with(Quit::Key(&[0x03]));
    assert!(
        out.contains("\x1b[?1049l"),
        "left the alternate screen: {out:?}"
    );
}

#[test]
fn sigterm_quits_and_restores_the_terminal() {
    let out = quit_with(Quit::Signal(libc::SIGTERM));
    assert!(
        out.contains("\x1b[?1049l"),
        "left the alternate screen: {out:?}"
    );
}
