//! Receive-and-drop benchmark of three Linux receive paths on the same veth traffic: AF_XDP
//! (floodgate-xdp socket fed by the generated XDP program steering UDP/53), AF_PACKET with a
//! TPACKET_V3 mmap'd RX ring, and `recvmmsg` on a UDP socket.
//!
//! ```text
//! backend_bench [--seconds S] [--batch N] [--rx-cpu C] [--tx-cpu C] [--busy-poll]
//!               [--source skb|xdp|routed|both|all] [--softirq]
//! ```
//!
//! Builds network namespaces joined by veth pairs; a sender thread in one floods UDP/53
//! datagrams, a receiver thread in another receives and drops with one backend at a time,
//! for `S` seconds each (default 5). The sender is pinned to `--tx-cpu` (default 0), the
//! receiver and the receiving veth's threaded-NAPI kernel thread to `--rx-cpu` (default 1).
//!
//! Traffic sources (`--source`, default `skb`; `both` = skb and xdp, `all` = all three):
//! - `skb` sends with AF_PACKET `sendmmsg` (qdisc bypassed) on a veth pair, so every frame
//!   reaches the receiving veth as an skb with a kmalloc'd head, which veth must copy into a
//!   page-pool page before its XDP program can see it;
//! - `xdp` runs an XDP program with live test-run frames (`BPF_F_TEST_XDP_LIVE_FRAMES`) that
//!   redirects each frame out of the sender's veth, so it reaches the receiver as an XDP frame
//!   (`ndo_xdp_xmit`), as a NIC driver with native XDP hands it over;
//! - `routed` sends as `skb` does, but to a router namespace in between: its ingress veth
//!   runs an `XDP_PASS` program (native), so veth copies each frame there once into a
//!   page-pool page with 256 bytes of headroom, and the router forwards that skb (IPv4
//!   forwarding, static neighbours) to the receiving veth, which then needs no copy to run
//!   its own XDP program. The router's NAPI runs in a kernel thread pinned to the sender's
//!   CPU, so its work (the copy, the forwarding) is not counted to the receiver. This is
//!   ordinary kernel skb traffic shaped like a native-XDP NIC's: a page-backed head with XDP
//!   headroom.
//!
//! "Per core" is measured two ways: the busy time of the receiving CPU from `/proc/stat`
//! (user + nice + system + irq + softirq: everything that ran there, other tenants
//! included, which the idle sample before the runs shows), and the CPU time of the receiver
//! thread (`getrusage(RUSAGE_THREAD)`) plus the NAPI kernel thread (`/proc/<pid>/stat`).
//! `--busy-poll` sets preferred busy polling on the AF_XDP and the UDP socket. Prints one
//! table and the XDP mode the veth gave. Needs root; otherwise prints one `skipped:` line.
//! The namespaces are deleted at the end, also on error and on SIGINT/SIGTERM.

#[path = "support/bench.rs"]
mod bench;
pub mod support;
#[path = "support/topo.rs"]
mod topo;

use std::io;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bench::*;
use floodgate_xdp::bpf::{Map, Program, XdpAttachMode};
use floodgate_xdp::prog::{generate, Flow, GenOptions, XdpRule};
use floodgate_xdp::socket::{Frame, SocketConfig, XskSocket};
use support::*;
use topo::{RouterCounters, Topology, IP_RX};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    AfXdp,
    Tpacket3,
    Recvmmsg,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::AfXdp => "AF_XDP (copy, XDP redirect)",
            Backend::Tpacket3 => "AF_PACKET TPACKET_V3",
            Backend::Recvmmsg => "recvmmsg (UDP socket)",
        }
    }
}

#[derive(Debug, Default, Clone)]
struct RxResult {
    packets: u64,
    seconds: f64,
    cpu: f64,
    /// Drops the receive path counted (AF_XDP rx_dropped + rx_ring_full, TPACKET drops, UDP
    /// receive-buffer errors).
    drops: u64,
    note: String,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: f64 = arg_parse(&args, "--seconds", 5.0);
    let batch: usize = arg_parse(&args, "--batch", 64usize).clamp(1, 1024);
    let rx_cpu: usize = arg_parse(&args, "--rx-cpu", 1usize);
    let tx_cpu: usize = arg_parse(&args, "--tx-cpu", 0usize);
    let softirq = args.iter().any(|a| a == "--softirq");
    let sources: &[Source] = match arg(&args, "--source").as_deref() {
        Some("both") => &[Source::Skb, Source::Xdp],
        Some("all") => &[Source::Skb, Source::Xdp, Source::Routed],
        None | Some("skb") => &[Source::Skb],
        Some("xdp") => &[Source::Xdp],
        Some("routed") => &[Source::Routed],
        Some(other) => {
            eprintln!("backend_bench: --source {other}: expected skb, xdp, routed, both or all");
            std::process::exit(2);
        }
    };
    if let Some(why) = root_skip_reason() {
        println!("skipped: {why}");
        return;
    }
    let busy_poll = args.iter().any(|a| a == "--busy-poll");
    let opts = Opts {
        seconds,
        batch,
        rx_cpu,
        tx_cpu,
        softirq,
        busy_poll,
    };
    // SIGINT/SIGTERM stop the run between or inside phases, so that the namespaces are
    // deleted on the way out.
    install_stop_signals();
    if let Err(e) = run(&opts, sources) {
        eprintln!("backend_bench: {e}");
        std::process::exit(1);
    }
}

/// The command line.
#[derive(Clone, Copy)]
struct Opts {
    seconds: f64,
    batch: usize,
    rx_cpu: usize,
    tx_cpu: usize,
    softirq: bool,
    busy_poll: bool,
}

fn interrupted() -> Result<(), String> {
    if STOP.load(Ordering::Relaxed) {
        return Err("interrupted; namespaces deleted".into());
    }
    Ok(())
}

fn run(opts: &Opts, sources: &[Source]) -> Result<(), String> {
    let Opts {
        seconds,
        batch,
        rx_cpu,
        tx_cpu,
        softirq,
        busy_poll,
    } = *opts;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{seconds} s per backend, sender on CPU {tx_cpu}, receiver on CPU {rx_cpu} ({cpus} CPUs), batch {batch}, busy polling {}", if busy_poll { "on (AF_XDP and recvmmsg)" } else { "off" }
    );
    if cpus < 2 {
        println!("note: one CPU: sender and receiver share it");
    }
    let idle = {
        let c0 = cpu_times(rx_cpu);
        std::thread::sleep(Duration::from_secs(1));
        cpu_times(rx_cpu) - c0
    };
    println!(
        "CPU {rx_cpu} busy without traffic (other tenants): {:.0} %, load average {}",
        idle.busy * 100.0,
        loadavg()
    );
    let mut rows = Vec::new();
    let mut xdp_mode = String::from("-");
    for (k, &source) in sources.iter().enumerate() {
        interrupted()?;
        // One set of namespaces per source, named apart (`k`) from the previous source's,
        // which the kernel may still be tearing down.
        let tag = k.to_string();
        let topo = match source {
            Source::Routed => Topology::routed(&tag, !softirq)?,
            Source::Skb | Source::Xdp => Topology::direct(&tag, !softirq)?,
        };
        interrupted()?;
        if let Some(r) = &topo.router {
            r.pin_napi(tx_cpu);
        }
        println!(
            "{}: veth {} -> {}{}",
            source.name(),
            topo.if_tx,
            topo.if_rx,
            topo.router.as_ref().map_or(String::new(), |r| format!(
                " through router veths {} -> {} (XDP_PASS native on {}, its NAPI thread on CPU {tx_cpu})",
                r.if_in, r.if_out, r.if_in
            ))
        );
        let frames: Vec<Vec<u8>> = {
            let mut rng = Rng::new(7);
            (0..4096)
                .map(|i| {
                    let q = dns_message(i as u16, "www.test.example", false);
                    let sport = 1024 + (rng.next_u32() % 60_000) as u16;
                    udp4_frame(
                        topo.src_mac,
                        topo.dst_mac,
                        topo.src_ip,
                        IP_RX,
                        sport,
                        53,
                        i as u16,
                        &q,
                    )
                })
                .collect()
        };
        // The `xdp` source's one frame: the generator rewrites its source port, so no UDP
        // checksum.
        let mut xdp_frame = frames[0].clone();
        xdp_frame[40] = 0;
        xdp_frame[41] = 0;
        let xdp_frame = Arc::new(xdp_frame);
        let frames = Arc::new(frames);
        for backend in [Backend::AfXdp, Backend::Tpacket3, Backend::Recvmmsg] {
            interrupted()?;
            let stop = Arc::new(AtomicBool::new(false));
            let ready = Arc::new(Barrier::new(3));
            let rx = {
                let (stop, ready, ns, ifn) = (
                    stop.clone(),
                    ready.clone(),
                    topo.rx.name.clone(),
                    topo.if_rx.clone(),
                );
                std::thread::spawn(move || -> Result<(RxResult, String), String> {
                    enter_netns(&ns).map_err(|e| format!("setns {ns}: {e}"))?;
                    pin_to_cpu(rx_cpu);
                    receive(backend, &ifn, batch, busy_poll, &ready, &stop)
                })
            };
            let tx = {
                let (stop, ready, ns, ifn, frames, xdp_frame) = (
                    stop.clone(),
                    ready.clone(),
                    topo.tx.name.clone(),
                    topo.if_tx.clone(),
                    frames.clone(),
                    xdp_frame.clone(),
                );
                std::thread::spawn(move || -> Result<FloodResult, String> {
                    enter_netns(&ns).map_err(|e| format!("setns {ns}: {e}"))?;
                    pin_to_cpu(tx_cpu);
                    match source {
                        Source::Skb | Source::Routed => {
                            let sock = PacketTx::new(&ifn);
                            ready.wait();
                            let sock = sock?;
                            Ok(flood(
                                &sock,
                                &frames,
                                batch,
                                None,
                                Duration::from_secs(3600),
                                &stop,
                            ))
                        }
                        Source::Xdp => {
                            let prog = floodgate_xdp::ifindex(&ifn)
                                .ok_or_else(|| format!("no interface {ifn}"))
                                .and_then(redirect_prog);
                            ready.wait();
                            Ok(flood_xdp(&prog?, &xdp_frame, batch, &stop))
                        }
                    }
                })
            };
            // The receiver sets up (program, socket, ring) before the barrier; a receiver that
            // fails to set up still waits on it so the others are not stuck.
            ready.wait();
            let napi = napi_threads(&topo.if_rx);
            for &pid in &napi {
                pin_pid_to_cpu(pid, rx_cpu);
            }
            // The router's NAPI thread works for the sender: on the sender's CPU.
            if let Some(r) = &topo.router {
                r.pin_napi(tx_cpu);
            }
            let router0 = topo.router.as_ref().map(|r| r.counters());
            let napi_cpu0: f64 = napi.iter().map(|&p| pid_cpu_seconds(p)).sum();
            let (load0, stat0, t0) = (loadavg(), cpu_times(rx_cpu), Instant::now());
            let end = t0 + Duration::from_secs_f64(seconds);
            while Instant::now() < end && !STOP.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50).min(end - Instant::now()));
            }
            let (stat, stat_secs) = (cpu_times(rx_cpu) - stat0, t0.elapsed().as_secs_f64());
            stop.store(true, Ordering::Relaxed);
            let napi_cpu = napi.iter().map(|&p| pid_cpu_seconds(p)).sum::<f64>() - napi_cpu0;
            let sent = tx.join().map_err(|_| "sender panicked".to_string())??;
            let (r, mode) = rx.join().map_err(|_| "receiver panicked".to_string())??;
            let router = topo
                .router
                .as_ref()
                .zip(router0)
                .map(|(rt, c0)| rt.counters() - c0);
            interrupted()?;
            if backend == Backend::AfXdp {
                xdp_mode = mode;
            }
            rows.push(Row {
                source,
                backend,
                r,
                sent,
                napi_cpu,
                stat,
                stat_secs,
                load: load0,
                router,
            });
        }
    }

    println!();
    println!(
        "| traffic | receive path | received pps | receiver thread CPU s | NAPI thread CPU s | CPU {rx_cpu} irq+softirq s | attributed CPU s | **pps per core (attributed)** | CPU {rx_cpu} busy s (/proc/stat) | of which unattributed (other tenants) | pps per busy second of CPU {rx_cpu} | drops counted | sender pps | sender CPU s | load avg |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for w in &rows {
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | **{:.0}** | {:.2} | {:.2} | {:.0} | {} | {:.0} | {:.2} | {} |",
            w.source.name(),
            w.backend.name(),
            w.pps(),
            w.r.cpu,
            w.napi_cpu,
            w.stat.softirq,
            w.attributed(),
            w.per_core_attributed(),
            w.stat.busy,
            (w.stat.busy - w.attributed()).max(0.0),
            w.per_core(),
            w.r.drops,
            w.sent.pps(),
            w.sent.cpu_seconds,
            w.load
        );
    }
    for w in &rows {
        if !w.r.note.is_empty() {
            println!("{} / {}: {}", w.source.name(), w.backend.name(), w.r.note);
        }
        if let Some(c) = w.router {
            println!(
                "{} / {}: router received {}, forwarded {} (Ip ForwDatagrams), sent {}, dropped {} on a full receiving ring (sender sent {})",
                w.source.name(),
                w.backend.name(),
                c.rx,
                c.forwarded,
                c.tx,
                c.tx_dropped,
                w.sent.sent
            );
        }
    }
    println!();
    println!("XDP mode on veth: {xdp_mode}");
    for &source in sources {
        let get = |b: Backend| rows.iter().find(|w| w.source == source && w.backend == b);
        let (Some(x), Some(m)) = (get(Backend::AfXdp), get(Backend::Recvmmsg)) else {
            continue;
        };
        println!(
            "{}: AF_XDP / recvmmsg = {:.2}x packets per attributed CPU second, {:.2}x packets per busy second of CPU {rx_cpu} (/proc/stat), {:.2}x packets per second, {:.2}x per receiver-thread CPU second",
            source.name(),
            x.per_core_attributed() / m.per_core_attributed().max(1e-9),
            x.per_core() / m.per_core().max(1e-9),
            x.pps() / m.pps().max(1e-9),
            (x.r.packets as f64 / x.r.cpu.max(1e-9)) / (m.r.packets as f64 / m.r.cpu.max(1e-9)),
        );
    }
    Ok(())
}

/// Where the benchmark's traffic enters the receiving veth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// AF_PACKET `sendmmsg` on the sender's veth: every frame reaches the receiver as an skb.
    Skb,
    /// An XDP program redirecting live test-run frames to the sender's veth: every frame
    /// reaches the receiver as an XDP frame (`ndo_xdp_xmit`), as on a NIC driver with native
    /// XDP; the kernel builds an skb only for frames that XDP passes.
    Xdp,
    /// AF_PACKET `sendmmsg` through a router namespace whose ingress veth runs `XDP_PASS`:
    /// every frame reaches the receiver as a forwarded skb on a page-pool page with XDP
    /// headroom, which the receiving veth does not copy.
    Routed,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Skb => "skb (AF_PACKET sendmmsg)",
            Source::Xdp => "xdp_frame (XDP redirect)",
            Source::Routed => "routed skb (sendmmsg via router)",
        }
    }
}

/// One measured backend.
struct Row {
    source: Source,
    backend: Backend,
    r: RxResult,
    sent: FloodResult,
    napi_cpu: f64,
    stat: CpuTimes,
    /// The wall-clock seconds `stat` covers.
    stat_secs: f64,
    load: String,
    /// The router's counters over the phase (routed source only).
    router: Option<RouterCounters>,
}

impl Row {
    fn pps(&self) -> f64 {
        self.r.packets as f64 / self.r.seconds.max(1e-9)
    }

    /// CPU seconds of the receive path: receiver thread, NAPI kernel thread, and the irq and
    /// softirq time of the receiving CPU.
    fn attributed(&self) -> f64 {
        self.r.cpu + self.napi_cpu + self.stat.softirq
    }

    /// Packets per attributed CPU second.
    fn per_core_attributed(&self) -> f64 {
        self.r.packets as f64 / self.attributed().max(1e-9)
    }

    /// Packets per busy second of the receiving CPU (`/proc/stat`).
    fn per_core(&self) -> f64 {
        self.pps() / (self.stat.busy / self.stat_secs.max(1e-9)).max(1e-9)
    }
}

/// Sets up `backend` on `ifname`, waits on `ready`, then receives and drops until `stop`.
/// Returns the result and, for AF_XDP, the attach mode read back from `ip -d link`.
fn receive(
    backend: Backend,
    ifname: &str,
    batch: usize,
    busy_poll: bool,
    ready: &Barrier,
    stop: &AtomicBool,
) -> Result<(RxResult, String), String> {
    match backend {
        Backend::AfXdp => {
            let setup = (|| -> Result<_, String> {
                let ifindex = floodgate_xdp::ifindex(ifname)
                    .ok_or_else(|| format!("no interface {ifname}"))?;
                let xsks = Map::xskmap("fgb_xsks", 1).map_err(|e| e.to_string())?;
                let insns = generate(
                    &[XdpRule::new(Flow::Udp4).dst_port(53)],
                    xsks.as_fd(),
                    GenOptions::default(),
                )
                .map_err(|e| e.to_string())?;
                let prog = Program::load_xdp("fgb_dns", &insns).map_err(|e| e.to_string())?;
                let link = prog
                    .attach_xdp(ifindex, XdpAttachMode::Native)
                    .map_err(|e| format!("native XDP attach: {e}"))?;
                let sock = XskSocket::new(
                    ifindex,
                    0,
                    SocketConfig {
                        frame_count: 16384,
                        fill_size: 8192,
                        rx_size: 8192,
                        ..Default::default()
                    },
                )
                .map_err(|e| e.to_string())?;
                sock.register(&xsks).map_err(|e| e.to_string())?;
                Ok((xsks, prog, link, sock))
            })();
            let (_xsks, _prog, _link, mut sock) = match setup {
                Ok(s) => s,
                Err(e) => {
                    ready.wait();
                    return Err(e);
                }
            };
            let link_info = ip(&["-d", "link", "show", "dev", ifname]).unwrap_or_default();
            let attach = if link_info.contains("xdpgeneric") {
                "generic (skb)"
            } else if link_info.contains(" xdp ") || link_info.contains("xdp/id") {
                "native (driver)"
            } else {
                "unknown"
            };
            let mode = format!("{attach}, AF_XDP socket in {} mode", sock.mode());
            let fd = sock.as_fd().as_raw_fd();
            if busy_poll {
                set_busy_poll(fd, batch);
            }
            let mut frames = vec![Frame::default(); batch];
            ready.wait();
            let (t0, c0) = (Instant::now(), thread_cpu_seconds());
            let mut packets = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let n = sock.rx_burst(&mut frames);
                if busy_poll && n < frames.len() {
                    // The ring is drained: run the veth's NAPI poll in this thread.
                    // SAFETY: a zero-length, non-blocking receive on our socket.
                    unsafe {
                        libc::recvfrom(
                            fd,
                            std::ptr::null_mut(),
                            0,
                            libc::MSG_DONTWAIT,
                            std::ptr::null_mut(),
                            std::ptr::null_mut(),
                        )
                    };
                }
                if n == 0 {
                    if !busy_poll {
                        sock.poll_rx(10);
                    }
                    continue;
                }
                // Touch every frame (as a filter would read its header) before dropping it.
                for f in &frames[..n] {
                    if let Some(d) = sock.data(f) {
                        std::hint::black_box(d[0]);
                    }
                }
                packets += n as u64;
                sock.release(&frames[..n]);
            }
            let (cpu, secs) = (thread_cpu_seconds() - c0, t0.elapsed().as_secs_f64());
            let s = sock.stats();
            Ok((
                RxResult {
                    packets,
                    seconds: secs,
                    cpu,
                    drops: s.rx_dropped + s.rx_ring_full,
                    note: format!(
                        "rx_dropped {} rx_ring_full {} rx_fill_ring_empty {}",
                        s.rx_dropped, s.rx_ring_full, s.rx_fill_ring_empty
                    ),
                },
                mode,
            ))
        }
        Backend::Tpacket3 => {
            let ring = match Tpacket3::new(ifname) {
                Ok(r) => r,
                Err(e) => {
                    ready.wait();
                    return Err(e);
                }
            };
            ready.wait();
            let _ = ring.stats(); // resets the counters: count from here
            let (t0, c0) = (Instant::now(), thread_cpu_seconds());
            let mut packets = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let n = ring.next_block();
                if n == 0 {
                    ring.poll(10);
                }
                packets += n;
            }
            let (cpu, secs) = (thread_cpu_seconds() - c0, t0.elapsed().as_secs_f64());
            let after = ring.stats();
            Ok((
                RxResult {
                    packets,
                    seconds: secs,
                    cpu,
                    drops: after.1 as u64,
                    note: String::new(),
                },
                String::new(),
            ))
        }
        Backend::Recvmmsg => {
            let sock = match UdpSocket::bind(SocketAddrV4::new(IP_RX, 53)) {
                Ok(s) => s,
                Err(e) => {
                    ready.wait();
                    return Err(format!("bind UDP {IP_RX}:53: {e}"));
                }
            };
            let fd = sock.as_raw_fd();
            let big: libc::c_int = 16 << 20;
            // SAFETY: the option value is a c_int that lives for the call.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    &big as *const _ as *const libc::c_void,
                    4,
                )
            };
            let _ = sock.set_read_timeout(Some(Duration::from_millis(10)));
            if busy_poll {
                set_busy_poll(fd, batch);
            }
            let mut bufs = vec![[0u8; 2048]; batch];
            let mut iov: Vec<libc::iovec> = bufs
                .iter_mut()
                .map(|b| libc::iovec {
                    iov_base: b.as_mut_ptr() as *mut libc::c_void,
                    iov_len: b.len(),
                })
                .collect();
            // SAFETY: mmsghdr is plain data.
            let mut msgs: Vec<libc::mmsghdr> =
                (0..batch).map(|_| unsafe { std::mem::zeroed() }).collect();
            for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
            }
            let errs0 = udp_rcvbuf_errors();
            ready.wait();
            let (t0, c0) = (Instant::now(), thread_cpu_seconds());
            let mut packets = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: every msghdr points at one iovec over a live 2048-byte buffer.
                let n = unsafe {
                    libc::recvmmsg(
                        fd,
                        msgs.as_mut_ptr(),
                        batch as u32,
                        libc::MSG_WAITFORONE,
                        std::ptr::null_mut(),
                    )
                };
                if n > 0 {
                    packets += n as u64;
                }
            }
            let (cpu, secs) = (thread_cpu_seconds() - c0, t0.elapsed().as_secs_f64());
            Ok((
                RxResult {
                    packets,
                    seconds: secs,
                    cpu,
                    drops: udp_rcvbuf_errors().saturating_sub(errs0),
                    note: String::new(),
                },
                String::new(),
            ))
        }
    }
}

/// `Udp: RcvbufErrors` of the calling thread's namespace.
fn udp_rcvbuf_errors() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap_or_default();
    topo::snmp_value(&s, "Udp:", "RcvbufErrors")
}

// TPACKET_V3 constants and layouts (linux/if_packet.h).
const TPACKET_V3: libc::c_int = 2;
const TP_STATUS_USER: u32 = 1;
const BLOCK_SIZE: u32 = 1 << 20;
const BLOCK_NR: u32 = 64;
const FRAME_SIZE: u32 = 2048;

#[repr(C)]
struct TpacketReq3 {
    tp_block_size: u32,
    tp_block_nr: u32,
    tp_frame_size: u32,
    tp_frame_nr: u32,
    tp_retire_blk_tov: u32,
    tp_sizeof_priv: u32,
    tp_feature_req_word: u32,
}

/// The start of `struct tpacket_block_desc` (version, offset_to_priv, then `tpacket_hdr_v1`).
#[repr(C)]
struct BlockDesc {
    version: u32,
    offset_to_priv: u32,
    block_status: u32,
    num_pkts: u32,
    offset_to_first_pkt: u32,
    blk_len: u32,
}

/// An AF_PACKET socket with a TPACKET_V3 RX ring, bound to one interface (IPv4 frames only,
/// outgoing frames ignored).
struct Tpacket3 {
    fd: OwnedFd,
    map: *mut u8,
    len: usize,
    next: std::cell::Cell<u32>,
}

impl Tpacket3 {
    fn new(ifname: &str) -> Result<Tpacket3, String> {
        let ifindex =
            floodgate_xdp::ifindex(ifname).ok_or_else(|| format!("no interface {ifname}"))?;
        let proto = (libc::ETH_P_IP as u16).to_be();
        // SAFETY: plain socket(2) call.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto as i32) };
        if raw < 0 {
            return Err(format!("AF_PACKET socket: {}", io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh socket we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let setopt = |opt: libc::c_int, val: *const libc::c_void, len: usize, what: &str| {
            // SAFETY: `val` points at `len` readable bytes for the call.
            let rc = unsafe {
                libc::setsockopt(raw, libc::SOL_PACKET, opt, val, len as libc::socklen_t)
            };
            if rc != 0 {
                return Err(format!("{what}: {}", io::Error::last_os_error()));
            }
            Ok(())
        };
        let v3 = TPACKET_V3;
        setopt(
            libc::PACKET_VERSION,
            &v3 as *const _ as _,
            4,
            "PACKET_VERSION",
        )?;
        let one: libc::c_int = 1;
        // PACKET_IGNORE_OUTGOING (23): our own ICMP errors are not received traffic.
        setopt(23, &one as *const _ as _, 4, "PACKET_IGNORE_OUTGOING")?;
        let req = TpacketReq3 {
            tp_block_size: BLOCK_SIZE,
            tp_block_nr: BLOCK_NR,
            tp_frame_size: FRAME_SIZE,
            tp_frame_nr: BLOCK_SIZE / FRAME_SIZE * BLOCK_NR,
            tp_retire_blk_tov: 10,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setopt(
            libc::PACKET_RX_RING,
            &req as *const _ as _,
            std::mem::size_of::<TpacketReq3>(),
            "PACKET_RX_RING",
        )?;
        let len = (BLOCK_SIZE * BLOCK_NR) as usize;
        // SAFETY: maps the ring the kernel just allocated for this socket.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_LOCKED,
                raw,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(format!(
                "mmap TPACKET_V3 ring: {}",
                io::Error::last_os_error()
            ));
        }
        let ring = Tpacket3 {
            fd,
            map: map as *mut u8,
            len,
            next: std::cell::Cell::new(0),
        };
        // SAFETY: sockaddr_ll is plain data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll of the given length.
        let rc = unsafe {
            libc::bind(
                raw,
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc != 0 {
            return Err(format!("bind AF_PACKET: {}", io::Error::last_os_error()));
        }
        Ok(ring)
    }

    /// If the next block is the user's, walks its packets, returns it to the kernel and
    /// returns how many it held; else 0.
    fn next_block(&self) -> u64 {
        let i = self.next.get();
        // SAFETY: block `i` lies inside the mapping (i < BLOCK_NR).
        let blk = unsafe { self.map.add((i * BLOCK_SIZE) as usize) };
        let status = blk.wrapping_add(8) as *const std::sync::atomic::AtomicU32;
        // SAFETY: block_status is a naturally aligned u32 the kernel updates concurrently.
        let st = unsafe { (*status).load(Ordering::Acquire) };
        if st & TP_STATUS_USER == 0 {
            return 0;
        }
        // SAFETY: the block is ours until we write TP_STATUS_KERNEL; the header is plain data.
        let desc = unsafe { std::ptr::read(blk as *const BlockDesc) };
        let mut off = desc.offset_to_first_pkt as usize;
        let mut n = 0u64;
        while n < desc.num_pkts as u64 && off + 32 <= BLOCK_SIZE as usize {
            // SAFETY: `off` is inside the block (checked above); tpacket3_hdr starts with
            // tp_next_offset (u32) and has tp_mac (u16) at byte 24.
            let (next_off, mac) = unsafe {
                let h = blk.add(off);
                (
                    std::ptr::read_unaligned(h as *const u32),
                    std::ptr::read_unaligned(h.add(24) as *const u16),
                )
            };
            if off + (mac as usize) < BLOCK_SIZE as usize {
                // SAFETY: inside the block. Touch the frame's first byte, as a filter would.
                std::hint::black_box(unsafe { *blk.add(off + mac as usize) });
            }
            n += 1;
            if next_off == 0 {
                break;
            }
            off += next_off as usize;
        }
        // SAFETY: as above; handing the block back to the kernel.
        unsafe { (*status).store(0, Ordering::Release) };
        self.next.set((i + 1) % BLOCK_NR);
        desc.num_pkts as u64
    }

    fn poll(&self, timeout_ms: i32) {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN | libc::POLLERR,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, timeout_ms) };
    }

    /// (packets, drops) since the last call (`PACKET_STATISTICS` resets on read).
    fn stats(&self) -> (u32, u32) {
        let mut st = [0u32; 3];
        let mut len: libc::socklen_t = 12;
        // SAFETY: tpacket_stats_v3 is three u32s; `st` has room for them.
        unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                st.as_mut_ptr() as *mut libc::c_void,
                &mut len,
            )
        };
        (st[0], st[1])
    }
}

impl Drop for Tpacket3 {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in `new`, not used after this.
        unsafe { libc::munmap(self.map as *mut libc::c_void, self.len) };
    }
}
