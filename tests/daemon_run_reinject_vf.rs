//! `floodgate run` with `[reinject] to = "vf"`, end to end and unprivileged: the NIC model in
//! this process is served over vfio-user, the daemon (a child process) brings the VF up through
//! the socket, drops the flood, and transmits every legitimate query back out of the VF to a
//! next hop; the model's wire port is where they are counted. No TAP, so no root needed.

pub mod run_util;

use floodgate_sim::engine::FrameSink;
use run_util::{num, RunHarness};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const NEXT_HOP: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x01, 0x01];

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
    let mut vf_mac = None;
    let h = RunHarness::start(
        "vf",
        "[reinject]\nto = \"vf\"\ndst_mac = \"02:00:00:00:01:01\"\n\n\
         [stats]\ninterval_ms = 200\nprometheus = false\n",
        "reinjecting survivors out of the ",
        |line| {
            if let Some(i) = line.find("source MAC ") {
                let m = &line[i + "source MAC ".len()..];
                vf_mac = floodgate::config::parse_mac(m.split(',').next().unwrap_or(""));
            }
        },
    );
    let log = h.log.clone();
    let vf_mac = vf_mac.unwrap_or_else(|| panic!("VF MAC not logged:\n{log}"));
    let nic = h.nic.clone();
    let (wire, to_next_hop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    nic.set_egress_sink(Some(Box::new(Wire {
        vf_mac,
        frames: wire.clone(),
        to_next_hop: to_next_hop.clone(),
    })));
    let frames = 5000u64;
    let (engine, legit) = h.send(5, frames);
    // Wait until the model has delivered everything and the survivors came back out of the
    // VF (the engine fetches the VF's TX ring); bounded, not timed.
    while (!h.routed(frames) || to_next_hop.load(Ordering::Relaxed) < legit.load(Ordering::Relaxed))
        && h.t0.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    engine.stop();
    let line = h.stop().final_line();
    println!("{line}");
    let num = |key: &str| num(&line, key);
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
