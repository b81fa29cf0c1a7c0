//! `floodgate run` under a systemd-like supervisor: the notify socket belongs to the test, and
//! the daemon (over vfio-user, with the model's flood running) must say READY=1 once it is up,
//! feed the watchdog from its polling thread while it filters, bracket a SIGHUP reload with
//! RELOADING=1 and READY=1, and say STOPPING=1 on SIGTERM.
//!
//! Needs root (the TAP); otherwise prints one "skipped: ..." line.

pub mod run_util;

use run_util::RunHarness;
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn messages(log: &Mutex<Vec<String>>) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// Waits (hang guard 30 s) until `f` holds for the messages received so far.
fn wait_for(log: &Mutex<Vec<String>>, what: &str, f: impl Fn(&[String]) -> bool) {
    let t = Instant::now();
    while !f(&messages(log)) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{what}: {:?}",
            messages(log)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn count(m: &[String], s: &str) -> usize {
    m.iter().filter(|x| x.lines().any(|l| l == s)).count()
}

#[test]
fn run_notifies_ready_feeds_the_watchdog_and_brackets_reload_and_stop() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !std::path::Path::new("/dev/net/tun").exists() {
        println!("skipped: sd_notify under flood: needs root and /dev/net/tun for the TAP");
        return;
    }
    let dir = std::env::temp_dir().join(format!("fg-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&sock_path);
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let (l2, done) = (
        log.clone(),
        Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    let d2 = done.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while !d2.load(std::sync::atomic::Ordering::Acquire) {
            if let Ok(n) = sock.recv(&mut buf) {
                l2.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
    });
    let tap = format!("fgn{}", std::process::id() % 100000);
    let tail = format!("[tap]\nname = \"{tap}\"\n\n[stats]\ninterval_ms = 200\n");
    let notify = sock_path.to_str().unwrap().to_string();
    let h = RunHarness::start_env(
        "sdnotify",
        &tail,
        "reinjecting into TAP",
        |_| {},
        |_| {},
        &[
            ("NOTIFY_SOCKET", notify.as_str()),
            // A 400 ms watchdog: the loop must feed it at least every 200 ms.
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let (engine, _) = h.send(21, 20_000 * 60);
    wait_for(&log, "READY=1 after bring-up", |m| count(m, "READY=1") >= 1);
    // The watchdog is fed while the flood is being filtered.
    let t = Instant::now();
    while h.nic.stats().rx_delivered < 2000 {
        assert!(t.elapsed() < Duration::from_secs(30), "no traffic arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    let fed = count(&messages(&log), "WATCHDOG=1");
    wait_for(&log, "three more watchdog feeds under traffic", |m| {
        count(m, "WATCHDOG=1") >= fed + 3
    });
    // A reload: RELOADING=1, then READY=1 once the new rules are in force.
    let ready_before = count(&messages(&log), "READY=1");
    h.signal(libc::SIGHUP);
    wait_for(&log, "RELOADING=1 then READY=1 for the SIGHUP", |m| {
        let r = m
            .iter()
            .rposition(|x| x.lines().any(|l| l == "RELOADING=1"));
        r.is_some_and(|r| m[r..].iter().any(|x| x.lines().any(|l| l == "READY=1")))
            && count(m, "READY=1") > ready_before
    });
    assert!(h.wait_log(Duration::from_secs(30), |l| l.contains("reloaded rules")));
    let stopped = h.stop_with(&[libc::SIGTERM], Duration::from_secs(30));
    let _ = engine.stop();
    assert_eq!(stopped.status.code(), Some(0), "{}", stopped.log);
    wait_for(&log, "STOPPING=1 at the stop", |m| {
        count(m, "STOPPING=1") == 1
    });
    done.store(true, std::sync::atomic::Ordering::Release);
    reader.join().unwrap();
    let m = messages(&log);
    // READY=1 came before any watchdog feed or reload message.
    let first = m.iter().position(|x| x.lines().any(|l| l == "READY=1"));
    assert_eq!(first, Some(0), "{m:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
