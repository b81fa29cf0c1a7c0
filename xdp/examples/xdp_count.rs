//! Counts UDP datagrams to port 53 arriving on one queue of an interface, through AF_XDP.
//!
//! ```text
//! xdp_count <ifname> [queue] [seconds]
//! ```
//!
//! Loads an XDP program that steers `udp4 dst port 53` into an AF_XDP socket on `queue`
//! (default 0) and passes everything else to the kernel, prints the mode the socket obtained
//! (zero copy or copy) and then the packets per second, once a second, for `seconds` (default:
//! until killed). The XDP program is detached when the process exits, however it exits.
//! Needs root (CAP_NET_ADMIN, CAP_BPF).

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use floodgate_xdp::bpf::{Map, Program, XdpAttachMode};
use floodgate_xdp::prog::{generate, Flow, GenOptions, XdpRule};
use floodgate_xdp::socket::{Frame, SocketConfig, XskSocket};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::init();
    let args: Vec<String> = std::env::args().collect();
    let Some(ifname) = args.get(1) else {
        eprintln!("usage: xdp_count <ifname> [queue] [seconds]");
        std::process::exit(2);
    };
    let queue: u32 = args.get(2).map_or(Ok(0), |q| q.parse())?;
    let seconds: Option<u64> = args.get(3).map(|s| s.parse()).transpose()?;
    let ifindex =
        floodgate_xdp::ifindex(ifname).ok_or_else(|| format!("no interface named {ifname}"))?;

    let xsks = Map::xskmap("xdp_count_xsks", queue + 1)?;
    let rules = [XdpRule::new(Flow::Udp4).dst_port(53)];
    let insns = generate(&rules, xsks.as_fd(), GenOptions::default())?;
    let prog = Program::load_xdp("xdp_count", &insns)?;
    let _link = prog.attach_xdp(ifindex, XdpAttachMode::Auto)?;
    let mut sock = XskSocket::new(ifindex, queue, SocketConfig::default())?;
    sock.register(&xsks)?;
    println!(
        "{ifname} queue {queue}: {} instructions, AF_XDP socket in {} mode",
        insns.len(),
        sock.mode()
    );

    let start = Instant::now();
    let mut frames = [Frame::default(); 64];
    let (mut count, mut bytes) = (0u64, 0u64);
    let mut tick = Instant::now();
    loop {
        sock.poll_rx(100);
        let n = sock.rx_burst(&mut frames);
        count += n as u64;
        bytes += frames[..n].iter().map(|f| f.len() as u64).sum::<u64>();
        sock.release(&frames[..n]);
        let dt = tick.elapsed();
        if dt >= Duration::from_secs(1) {
            let s = sock.stats();
            println!(
                "{:.0} pps {:.1} Mbit/s (kernel drops {})",
                count as f64 / dt.as_secs_f64(),
                bytes as f64 * 8.0 / dt.as_secs_f64() / 1e6,
                s.rx_dropped
            );
            (count, bytes, tick) = (0, 0, Instant::now());
        }
        if seconds.is_some_and(|s| start.elapsed() >= Duration::from_secs(s)) {
            return Ok(());
        }
    }
}
