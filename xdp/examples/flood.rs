//! A DNS flood from the current network namespace: AF_PACKET `sendmmsg` with the qdisc
//! bypassed, as fast as the kernel takes the frames or at a fixed rate.
//!
//! ```text
//! flood --ifname IF --dst-ip A.B.C.D --dst-mac MAC [--seconds S] [--rate PPS]
//!       [--kind spoofed|reflection|mixed] [--batch N] [--distinct N]
//! ```
//!
//! `spoofed`: DNS queries to port 53 from random sources in 198.18.0.0/15; `reflection`: DNS
//! responses (QR set) from port 53 of such sources to port 53; `mixed` (default): both,
//! alternating. Runs until `--seconds` (default 5) or SIGINT/SIGTERM, then prints one line:
//! `flood sent=N seconds=S pps=P cpu_seconds=C`. Needs root (CAP_NET_RAW).

pub mod support;

use std::time::Duration;

use support::*;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(ifname), Some(dst_ip), Some(dst_mac)) = (
        arg(&args, "--ifname"),
        arg(&args, "--dst-ip"),
        arg(&args, "--dst-mac"),
    ) else {
        eprintln!("usage: flood --ifname IF --dst-ip A.B.C.D --dst-mac MAC [--seconds S] [--rate PPS] [--kind spoofed|reflection|mixed] [--batch N]");
        std::process::exit(2);
    };
    let seconds: f64 = arg_parse(&args, "--seconds", 5.0);
    let rate: Option<u64> = arg(&args, "--rate").map(|r| {
        r.parse().unwrap_or_else(|_| {
            eprintln!("--rate: cannot parse {r:?}");
            std::process::exit(2)
        })
    });
    let batch: usize = arg_parse(&args, "--batch", 64usize).clamp(1, 1024);
    let distinct: usize = arg_parse(&args, "--distinct", 4096usize).max(1);
    let kind = match arg(&args, "--kind").as_deref().unwrap_or("mixed") {
        "spoofed" => FloodKind::Spoofed,
        "reflection" => FloodKind::Reflection,
        "mixed" => FloodKind::Mixed,
        k => {
            eprintln!("--kind: {k:?} is not spoofed, reflection or mixed");
            std::process::exit(2);
        }
    };
    let dst: std::net::Ipv4Addr = dst_ip.parse().unwrap_or_else(|_| {
        eprintln!("--dst-ip: {dst_ip:?} is not an IPv4 address");
        std::process::exit(2)
    });
    let dst_mac = parse_mac(&dst_mac).unwrap_or_else(|e| {
        eprintln!("--dst-mac: {e}");
        std::process::exit(2)
    });
    let src_mac = if_mac(&ifname).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let tx = PacketTx::new(&ifname).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    install_stop_signals();
    let frames = flood_frames(kind, src_mac, dst_mac, dst, distinct, 0x5eed_f100d);
    let r = flood(
        &tx,
        &frames,
        batch,
        rate,
        Duration::from_secs_f64(seconds),
        &STOP,
    );
    println!(
        "flood sent={} seconds={:.2} pps={:.0} cpu_seconds={:.2}",
        r.sent,
        r.seconds,
        r.pps(),
        r.cpu_seconds
    );
}
