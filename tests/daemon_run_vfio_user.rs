//! `floodgate run` end to end against the NIC model in this process, served over vfio-user: the
//! daemon connects, brings the VF up through the socket, receives the model's generated traffic
//! by DMA into its memfd-backed pool, filters it, reinjects survivors into a TAP, and on SIGTERM
//! drains and prints its final counters.
//!
//! Needs root (the TAP); otherwise prints one "skipped: ..." line.

pub mod run_util;

use run_util::{num, RunHarness};
use std::sync::atomic::Ordering;
use std::time::Duration;

#[test]
fn run_over_vfio_user_filters_and_stops_cleanly_on_sigterm() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !std::path::Path::new("/dev/net/tun").exists() {
        println!("skipped: floodgate run over vfio-user: needs root and /dev/net/tun for the TAP");
        return;
    }
    let tap = format!("fgrun{}", std::process::id() % 100000);
    let h = RunHarness::start(
        "vu",
        &format!("[tap]\nname = \"{tap}\"\n\n[stats]\ninterval_ms = 200\n"),
        "reinjecting into TAP",
        |_| {},
    );
    let frames = 5000u64;
    let (engine, legit) = h.send(3, frames);
    while !h.routed(frames) && h.t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    engine.stop();
    let nic = h.nic.clone();
    let stopped = h.stop();
    let line = stopped.final_line();
    let log = stopped.log;
    let num = |key: &str| num(&line, key);
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
