//! `floodgate-sim`: the NIC model as a program.
//!
//! ```text
//! floodgate-sim serve --socket PATH [--vf N] [--vfs N] [--model 82599|x540]
//!                     [--generator udp[:PPS[:LEN]]|flood[:PPS] | --pcap-in FILE [--pcap-pps N]]
//!                     [--respond IP] [--pcap-out FILE] [--tap NAME] [--af-packet IFACE]
//!                     [--idle-sleep-us N] [--once]
//! ```
//!
//! `serve` exposes one VF of a fresh model as a vfio-user PCI function on a Unix socket, for
//! `floodgate_vfio::user::VfioUserDevice` or QEMU's `vfio-user-pci`. See docs/vfio-user.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use floodgate_sim::generator::{Generator, GeneratorConfig, Rate};
use floodgate_sim::pcap::{PcapReader, PcapReplay, PcapWriter};
use floodgate_sim::vfio_user::responder::Responder;
use floodgate_sim::vfio_user::udpgen::{UdpGen, PEER_MAC, VF_IP};
use floodgate_sim::vfio_user::wire_side::{
    PcapLoop, ReadFn, SharedPacket, SharedTap, Tee, WireReader,
};
use floodgate_sim::vfio_user::UserServer;
use floodgate_sim::wire::{PacketSocket, TapDevice};
use floodgate_sim::{EngineConfig, FrameSink, FrameSource, Nic, NicConfig, NicModel};
use std::sync::Arc;

const USAGE: &str = "\
usage: floodgate-sim serve --socket PATH [options]

Serves one VF of the 82599/X540 model as a vfio-user PCI function on PATH.

options:
  --socket PATH          Unix socket to listen on (a stale one is replaced)
  --vf N                 which VF to serve (default 0)
  --vfs N                VFs in the model (default: max(2, N+1))
  --model 82599|x540     silicon (VF 8086:10ED or 8086:1515; default 82599)
  --generator flood[:PPS]
                         wire traffic: the DNS-flood mix of floodgate_sim::generator (90% flood
                         to UDP 53, 2% legitimate queries, 8% background) to the VF's MAC and
                         10.0.0.2, PPS per second (default 1000; 0 = as fast as possible)
  --generator udp[:PPS[:LEN]]
                         wire traffic: IPv4/UDP frames to the VF's MAC, PPS per second
                         (default 1000; 0 = as fast as possible), LEN bytes (default 64)
  --pcap-in FILE         wire traffic: replay a pcap file once (instead of --generator)
  --pcap-pps N           replay rate (default: as fast as the engine goes)
  --pcap-loop            replay the file over and over
  --respond IP           answer ARP and ICMP echo for IP on the wire side (e.g. 10.0.0.1)
  --pcap-out FILE        write every frame that leaves on the wire to a pcap file
  --tap NAME             connect the wire to host TAP NAME (created if missing; needs
                         CAP_NET_ADMIN): egress is written to it, frames the host sends come in
  --af-packet IFACE      connect the wire to an existing interface through AF_PACKET
  --idle-sleep-us N      engine sleep when idle, microseconds (default 50; 0 = spin)
  --once                 exit after the first client hangs up (default: wait for the next)
  -h, --help             this text

Logging: RUST_LOG=info (default) or debug/trace. Stats are printed when a client leaves.";

struct Args {
    socket: PathBuf,
    vf: usize,
    vfs: Option<usize>,
    model: NicModel,
    generator: Option<GenSpec>,
    respond: Option<[u8; 4]>,
    pcap_in: Option<PathBuf>,
    pcap_pps: Option<u64>,
    pcap_loop: bool,
    pcap_out: Option<PathBuf>,
    tap: Option<String>,
    af_packet: Option<String>,
    idle_sleep_us: u64,
    once: bool,
}

fn parse_ip(s: &str) -> Result<[u8; 4], String> {
    let ip: std::net::Ipv4Addr = s
        .parse()
        .map_err(|_| format!("--respond {s:?}: not an IPv4 address"))?;
    Ok(ip.octets())
}

/// `--generator`: which built-in source, at what rate.
#[derive(Debug, Clone, Copy)]
struct GenSpec {
    /// The generator's DNS-flood mix instead of plain UDP.
    flood: bool,
    pps: u64,
    len: usize,
}

fn parse_generator(s: &str) -> Result<GenSpec, String> {
    let mut it = s.split(':');
    let flood = match it.next() {
        Some("udp") => false,
        Some("flood") => true,
        _ => {
            return Err(format!(
                "--generator {s:?}: use `udp[:PPS[:LEN]]` or `flood[:PPS]` (e.g. udp:1000:64)"
            ))
        }
    };
    let pps = match it.next() {
        Some(p) => p
            .parse()
            .map_err(|_| format!("--generator {s:?}: PPS {p:?} is not a number"))?,
        None => 1000,
    };
    let len = match it.next() {
        Some(_) if flood => {
            return Err(format!(
                "--generator {s:?}: the flood mix has its own lengths"
            ))
        }
        Some(l) => l
            .parse()
            .map_err(|_| format!("--generator {s:?}: LEN {l:?} is not a number"))?,
        None => 64,
    };
    Ok(GenSpec { flood, pps, len })
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    match argv.next().as_deref() {
        Some("serve") => {}
        Some("-h") | Some("--help") | None => return Ok(None),
        Some(other) => return Err(format!("unknown command {other:?}")),
    }
    let mut a = Args {
        socket: PathBuf::new(),
        vf: 0,
        vfs: None,
        model: NicModel::X82599,
        generator: None,
        respond: None,
        pcap_in: None,
        pcap_pps: None,
        pcap_loop: false,
        pcap_out: None,
        tap: None,
        af_packet: None,
        idle_sleep_us: 50,
        once: false,
    };
    let mut have_socket = false;
    while let Some(k) = argv.next() {
        let mut val = |name: &str| argv.next().ok_or(format!("{name} needs a value"));
        match k.as_str() {
            "--socket" => {
                a.socket = PathBuf::from(val("--socket")?);
                have_socket = true;
            }
            "--vf" => {
                let v = val("--vf")?;
                a.vf = v.parse().map_err(|_| format!("--vf {v:?}: not a number"))?;
            }
            "--vfs" => {
                let v = val("--vfs")?;
                a.vfs = Some(
                    v.parse()
                        .map_err(|_| format!("--vfs {v:?}: not a number"))?,
                );
            }
            "--model" => {
                a.model = match val("--model")?.to_ascii_lowercase().as_str() {
                    "82599" => NicModel::X82599,
                    "x540" | "540" => NicModel::X540,
                    m => return Err(format!("--model {m:?}: use 82599 or x540")),
                }
            }
            "--generator" => a.generator = Some(parse_generator(&val("--generator")?)?),
            "--respond" => a.respond = Some(parse_ip(&val("--respond")?)?),
            "--pcap-in" => a.pcap_in = Some(PathBuf::from(val("--pcap-in")?)),
            "--pcap-pps" => {
                let v = val("--pcap-pps")?;
                a.pcap_pps = Some(
                    v.parse()
                        .map_err(|_| format!("--pcap-pps {v:?}: not a number"))?,
                );
            }
            "--pcap-loop" => a.pcap_loop = true,
            "--pcap-out" => a.pcap_out = Some(PathBuf::from(val("--pcap-out")?)),
            "--tap" => a.tap = Some(val("--tap")?),
            "--af-packet" => a.af_packet = Some(val("--af-packet")?),
            "--idle-sleep-us" => {
                let v = val("--idle-sleep-us")?;
                a.idle_sleep_us = v
                    .parse()
                    .map_err(|_| format!("--idle-sleep-us {v:?}: not a number"))?;
            }
            "--once" => a.once = true,
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if !have_socket {
        return Err("serve needs --socket PATH".into());
    }
    if a.generator.is_some() && a.pcap_in.is_some() {
        return Err("--generator and --pcap-in are both traffic sources; pick one".into());
    }
    Ok(Some(a))
}

/// The socket path for the signal handler (set once, before the handler is installed).
static SOCKET_C: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();

extern "C" fn on_signal(_: libc::c_int) {
    if let Some(p) = SOCKET_C.get() {
        // SAFETY: unlink and _exit are async-signal-safe; p is a valid C string for the
        // program's lifetime.
        unsafe { libc::unlink(p.as_ptr()) };
    }
    // SAFETY: _exit is async-signal-safe and ends the process.
    unsafe { libc::_exit(0) };
}

fn install_signal_handlers(socket: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    if let Ok(c) = std::ffi::CString::new(socket.as_os_str().as_bytes()) {
        let _ = SOCKET_C.set(c);
    }
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installing a handler that only calls async-signal-safe functions.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

fn serve(a: Args) -> Result<(), String> {
    let num_vfs = a.vfs.unwrap_or((a.vf + 1).max(2));
    if a.vf >= num_vfs {
        return Err(format!("--vf {} but the model has {num_vfs} VFs", a.vf));
    }
    let nic = Nic::new(NicConfig {
        model: a.model,
        num_vfs,
        capture_egress: false,
        ..Default::default()
    });
    let vf = nic
        .try_vf(a.vf)
        .map_err(|e| floodgate_vfio::ErrorChain(&e).to_string())?;
    let mut server =
        UserServer::bind(&a.socket, vf).map_err(|e| floodgate_vfio::ErrorChain(&e).to_string())?;
    install_signal_handlers(&a.socket);

    let idle = Duration::from_micros(a.idle_sleep_us.max(10));
    let mut sinks: Vec<Box<dyn FrameSink>> = Vec::new();
    let mut readers = Vec::new();
    let mut responder_stats = None;
    if let Some(ip) = a.respond {
        let r = Responder::new(&nic, ip, PEER_MAC);
        responder_stats = Some(r.stats());
        sinks.push(Box::new(r));
    }
    if let Some(p) = &a.pcap_out {
        let f = std::fs::File::create(p).map_err(|e| {
            format!(
                "--pcap-out {}: {e}",
                p.display(),
                e = floodgate_vfio::ErrorChain(&e)
            )
        })?;
        let w = PcapWriter::new(std::io::BufWriter::new(f), 65535).map_err(|e| {
            format!(
                "--pcap-out {}: {e}",
                p.display(),
                e = floodgate_vfio::ErrorChain(&e)
            )
        })?;
        sinks.push(Box::new(w));
    }
    if let Some(name) = &a.tap {
        let tap = Arc::new(
            TapDevice::open(name)
                .map_err(|e| format!("--tap {name}: {e}", e = floodgate_vfio::ErrorChain(&e)))?,
        );
        tap.set_up()
            .map_err(|e| format!("--tap {name}: {e}", e = floodgate_vfio::ErrorChain(&e)))?;
        sinks.push(Box::new(SharedTap(tap.clone())));
        let read: ReadFn = Box::new(move |buf: &mut [u8]| tap.read_frame(buf));
        readers.push(WireReader::start(nic.clone(), read, idle));
    }
    if let Some(ifc) = &a.af_packet {
        let sock =
            Arc::new(PacketSocket::open(ifc).map_err(|e| {
                format!("--af-packet {ifc}: {e}", e = floodgate_vfio::ErrorChain(&e))
            })?);
        sinks.push(Box::new(SharedPacket(sock.clone())));
        let read: ReadFn = Box::new(move |buf: &mut [u8]| sock.recv_frame(buf));
        readers.push(WireReader::start(nic.clone(), read, idle));
    }
    if !sinks.is_empty() {
        nic.set_egress_sink(Some(Box::new(Tee(sinks))));
    }
    let (source, rate): (Option<Box<dyn FrameSource>>, Option<u64>) =
        match (&a.generator, &a.pcap_in) {
            (Some(g), _) if g.flood => {
                // Generator mix (90% flood to UDP 53, 2% legitimate DNS, 8% background) to the
                // VF's MAC at start and to 10.0.0.2, the address the guest scenarios use.
                let mac = nic
                    .pf()
                    .vf_state(a.vf)
                    .ok()
                    .and_then(|st| st.mac)
                    .unwrap_or([0xff; 6]);
                let cfg = GeneratorConfig {
                    dst_mac: mac,
                    src_mac: PEER_MAC,
                    server_ip: VF_IP,
                    rate: Rate::MaxSpeed,
                    ..Default::default()
                };
                let gen = Generator::new(cfg).map_err(|e| {
                    format!("--generator flood: {e}", e = floodgate_vfio::ErrorChain(&e))
                })?;
                (Some(Box::new(gen)), (g.pps > 0).then_some(g.pps))
            }
            (Some(g), _) => (
                Some(Box::new(UdpGen::new(nic.pf(), a.vf, g.len, None))),
                (g.pps > 0).then_some(g.pps),
            ),
            (None, Some(p)) if a.pcap_loop => (
                Some(Box::new(
                    PcapLoop::open(p).map_err(|e| format!("--pcap-in {e}"))?,
                )),
                a.pcap_pps,
            ),
            (None, Some(p)) => {
                let f = std::fs::File::open(p).map_err(|e| {
                    format!(
                        "--pcap-in {}: {e}",
                        p.display(),
                        e = floodgate_vfio::ErrorChain(&e)
                    )
                })?;
                let r = PcapReader::new(std::io::BufReader::new(f)).map_err(|e| {
                    format!(
                        "--pcap-in {}: {e}",
                        p.display(),
                        e = floodgate_vfio::ErrorChain(&e)
                    )
                })?;
                (Some(Box::new(PcapReplay::new(r))), a.pcap_pps)
            }
            (None, None) => (None, None),
        };
    let engine = nic.start_engine(EngineConfig {
        source,
        source_rate_pps: rate,
        idle_sleep: (a.idle_sleep_us > 0).then(|| Duration::from_micros(a.idle_sleep_us)),
        ..Default::default()
    });
    eprintln!(
        "floodgate-sim: serving VF {} ({:?}) of {num_vfs} on {}",
        a.vf,
        a.model,
        a.socket.display()
    );
    loop {
        let r = server.serve_one();
        let s = nic.stats();
        eprintln!(
            "floodgate-sim: client left: {}; model: wire in {} rx delivered {} no-desc {} \
             tx {} egress {} dma faults {}{}",
            server.stats().summary(),
            s.wire_in,
            s.rx_delivered,
            s.rx_no_desc,
            s.tx_frames,
            s.egress,
            nic.vf(a.vf).dma_faults(),
            responder_stats.as_ref().map_or(String::new(), |r| format!(
                "; responder arp {} echo {}",
                r.arp_replies.load(Ordering::Relaxed),
                r.echo_replies.load(Ordering::Relaxed)
            )),
        );
        if let Err(e) = r {
            eprintln!("floodgate-sim: {e}", e = floodgate_vfio::ErrorChain(&e));
        }
        if a.once {
            break;
        }
    }
    engine.stop();
    drop(readers);
    // Flush the pcap writer (it is inside the egress sink).
    nic.set_egress_sink(None);
    Ok(())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match parse(std::env::args().skip(1)) {
        Ok(None) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Some(a)) => match serve(a) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("floodgate-sim: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("floodgate-sim: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
