//! A stand-in for the daemon's AF_XDP backend, for the DNS-under-flood harness: steers
//! `udp4 dst port 53` on one interface into an AF_XDP socket (the generated XDP program; every
//! other frame goes to the kernel untouched), drops the steered frames whose IPv4 source is not
//! one of the allowed client addresses, and hands the survivors to the kernel through a TAP
//! device in the same namespace (destination MAC rewritten to the TAP's), where the local DNS
//! server receives them as usual.
//!
//! ```text
//! xdp_filter --ifname IF --allow A.B.C.D[,A.B.C.D...] --tap NAME [--queue Q] [--seconds S]
//! ```
//!
//! Prints `xdp_filter ready ...` once the program is attached and the socket bound, then runs
//! until SIGINT/SIGTERM (or `--seconds`) and prints one line of totals:
//! `xdp_filter steered=N dropped=N passed=N tap_errors=N kernel_passed=N socket_rx_dropped=N`.
//! Every steered frame is in exactly one of dropped, passed and tap_errors; `kernel_passed`
//! counts the frames the program gave to the kernel (not UDP/53), `socket_rx_dropped` the
//! steered frames the kernel could not put on the socket (fill ring empty). Needs root.

pub mod support;

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use floodgate_xdp::bpf::{Map, Program, XdpAttachMode};
use floodgate_xdp::prog::{counters_map, generate, read_counters, Flow, GenOptions, XdpRule};
use floodgate_xdp::socket::{Frame, SocketConfig, XskSocket};
use support::*;

/// The IPv4 source of an untagged or single-tagged Ethernet/IPv4 frame.
fn ipv4_src(f: &[u8]) -> Option<Ipv4Addr> {
    let mut off = 12;
    let mut et = u16::from_be_bytes([*f.get(off)?, *f.get(off + 1)?]);
    if et == 0x8100 {
        off += 4;
        et = u16::from_be_bytes([*f.get(off)?, *f.get(off + 1)?]);
    }
    if et != 0x0800 {
        return None;
    }
    let s = f.get(off + 2 + 12..off + 2 + 16)?;
    Some(Ipv4Addr::new(s[0], s[1], s[2], s[3]))
}

/// Rewrites the UDP checksum of an untagged IPv4/UDP frame over its actual bytes. A frame sent
/// over veth by a local socket carries only the pseudo-header sum there (checksum offload:
/// the receiving stack is told the checksum is already verified), and the copy that AF_XDP
/// hands out has lost that mark, so the kernel behind the TAP would drop it as corrupt.
fn fix_udp4_checksum(f: &mut [u8]) {
    if f.len() < 34 || f[12..14] != [0x08, 0x00] || f[23] != 17 {
        return;
    }
    let ihl = ((f[14] & 0x0f) as usize) * 4;
    let l4 = 14 + ihl;
    let Some(udp_len) = f
        .get(l4 + 4..l4 + 6)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
    else {
        return;
    };
    if udp_len < 8 || l4 + udp_len > f.len() {
        return;
    }
    f[l4 + 6] = 0;
    f[l4 + 7] = 0;
    let mut sum: u32 = 0;
    for c in f[26..34].chunks(2) {
        sum += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    sum += 17 + udp_len as u32;
    for c in f[l4..l4 + udp_len].chunks(2) {
        sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let c = match !(sum as u16) {
        0 => 0xffff,
        c => c,
    };
    f[l4 + 6..l4 + 8].copy_from_slice(&c.to_be_bytes());
}

fn main() {
    if let Err(e) = run() {
        eprintln!("xdp_filter: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(ifname), Some(allow), Some(tap_name)) = (
        arg(&args, "--ifname"),
        arg(&args, "--allow"),
        arg(&args, "--tap"),
    ) else {
        eprintln!("usage: xdp_filter --ifname IF --allow A.B.C.D[,...] --tap NAME [--queue Q] [--seconds S]");
        std::process::exit(2);
    };
    let queue: u32 = arg_parse(&args, "--queue", 0u32);
    let seconds: f64 = arg_parse(&args, "--seconds", 0.0);
    let allow: Vec<Ipv4Addr> = allow
        .split(',')
        .map(|a| {
            a.trim()
                .parse()
                .map_err(|_| format!("--allow: {a:?} is not an IPv4 address"))
        })
        .collect::<Result<_, _>>()?;
    if let Some(why) = root_skip_reason() {
        println!("skipped: {why}");
        return Ok(());
    }
    install_stop_signals();

    let tap = Tap::create(&tap_name)?;
    ip(&["link", "set", "dev", &tap_name, "up"])?;
    let tap_mac = if_mac(&tap_name)?;

    let ifindex =
        floodgate_xdp::ifindex(&ifname).ok_or_else(|| format!("no interface {ifname}"))?;
    let xsks = Map::xskmap("fgf_xsks", queue + 1).map_err(|e| e.to_string())?;
    let counters = counters_map("fgf_cnt").map_err(|e| e.to_string())?;
    let insns = generate(
        &[XdpRule::new(Flow::Udp4).dst_port(53)],
        xsks.as_fd(),
        GenOptions {
            counters: Some(counters.as_fd()),
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let prog = Program::load_xdp("fgf_dns", &insns).map_err(|e| e.to_string())?;
    let _link = prog
        .attach_xdp(ifindex, XdpAttachMode::Auto)
        .map_err(|e| format!("attach XDP to {ifname}: {e}"))?;
    // Deep rings: on a shared machine the filter thread can be off the CPU for milliseconds,
    // and at the flood's rate a 2048-entry fill ring runs dry in a few of them (the kernel
    // then drops legitimate and flood frames alike, counted in socket_rx_dropped).
    let cfg = SocketConfig {
        frame_count: 32768,
        fill_size: 16384,
        rx_size: 16384,
        ..Default::default()
    };
    let mut sock = XskSocket::new(ifindex, queue, cfg)
        .map_err(|e| format!("AF_XDP socket on {ifname} queue {queue}: {e}"))?;
    sock.register(&xsks).map_err(|e| e.to_string())?;
    let link_info = ip(&["-d", "link", "show", "dev", &ifname]).unwrap_or_default();
    let attach = if link_info.contains("xdpgeneric") {
        "generic"
    } else {
        "native"
    };
    println!(
        "xdp_filter ready ifname={ifname} queue={queue} xdp={attach} socket={} allow={} tap={tap_name}",
        sock.mode(),
        allow
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let _ = std::io::stdout().flush();

    let start = Instant::now();
    let mut frames = [Frame::default(); 64];
    let (mut dropped, mut passed, mut tap_errors) = (0u64, 0u64, 0u64);
    while !STOP.load(Ordering::Relaxed)
        && (seconds <= 0.0 || start.elapsed() < Duration::from_secs_f64(seconds))
    {
        let n = sock.rx_burst(&mut frames);
        if n == 0 {
            sock.poll_rx(50);
            continue;
        }
        for f in &frames[..n] {
            let legit = sock
                .data(f)
                .and_then(ipv4_src)
                .is_some_and(|s| allow.contains(&s));
            if !legit {
                dropped += 1;
                continue;
            }
            let Some(d) = sock.data_mut(f) else {
                tap_errors += 1;
                continue;
            };
            d[0..6].copy_from_slice(&tap_mac);
            fix_udp4_checksum(d);
            match tap.write(d) {
                Ok(()) => passed += 1,
                Err(e) => {
                    tap_errors += 1;
                    log::warn!("TAP write: {e}");
                }
            }
        }
        sock.release(&frames[..n]);
    }
    let [kernel_passed, steered] = read_counters(&counters).map_err(|e| e.to_string())?;
    let s = sock.stats();
    println!(
        "xdp_filter steered={} dropped={dropped} passed={passed} tap_errors={tap_errors} kernel_passed={kernel_passed} socket_rx_dropped={} program_steered={steered}",
        dropped + passed + tap_errors,
        s.rx_dropped
    );
    Ok(())
}
