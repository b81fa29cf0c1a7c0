//! Shared pieces of the examples: network namespaces, frame and DNS message builders, an
//! AF_PACKET `sendmmsg` flooder, thread CPU time and CPU pinning. Linux only, and most of it
//! needs root.

use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Runs `ip <args>`; the error names the command and carries its stderr.
pub fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Why this process cannot run the kernel parts here, if it cannot.
pub fn root_skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces, bpf(2), AF_PACKET)".into());
    }
    if let Err(e) =
        floodgate_xdp::bpf::Map::create(floodgate_xdp::bpf::MapType::Array, "fgx_probe", 4, 4, 1)
    {
        return Some(format!("bpf(2) is not usable here: {e}"));
    }
    if let Err(e) = ip(&["netns", "list"]) {
        return Some(format!("no usable `ip netns`: {e}"));
    }
    None
}

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create(name: &str) -> Result<Netns, String> {
        let _ = ip(&["netns", "del", name]);
        ip(&["netns", "add", name])?;
        let ns = Netns {
            name: name.to_string(),
        };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs a command inside the namespace (`ip netns exec`).
    pub fn exec(&self, cmd: &[&str]) -> Result<String, String> {
        let mut args = vec!["netns", "exec", &self.name];
        args.extend_from_slice(cmd);
        ip(&args)
    }

    /// Moves the calling thread (only it) into the namespace.
    pub fn enter(&self) -> io::Result<()> {
        enter_netns(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Moves the calling thread into the named namespace (`setns(2)` on `/run/netns/<name>`).
pub fn enter_netns(name: &str) -> io::Result<()> {
    let f = std::fs::File::open(format!("/run/netns/{name}"))?;
    // SAFETY: the fd is open for the duration of the call; setns changes only this thread's
    // network namespace.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Pins the calling thread to one CPU (best effort: returns false if refused).
pub fn pin_to_cpu(cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity get a
    // pointer to it that lives for the call.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// User + system CPU time of the calling thread (`getrusage(RUSAGE_THREAD)`), in seconds.
pub fn thread_cpu_seconds() -> f64 {
    // SAFETY: rusage is plain data; getrusage writes it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.trim().split(':').collect();
    if parts.len() != 6 {
        return Err(format!("bad MAC address {s:?}"));
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        m[i] = u8::from_str_radix(p, 16).map_err(|_| format!("bad MAC address {s:?}"))?;
    }
    Ok(m)
}

/// The MAC address of an interface of the current namespace (from sysfs).
pub fn if_mac(name: &str) -> Result<[u8; 6], String> {
    let s = std::fs::read_to_string(format!("/sys/class/net/{name}/address"))
        .map_err(|e| format!("/sys/class/net/{name}/address: {e}"))?;
    parse_mac(&s)
}

/// RFC 1071 checksum.
pub fn checksum(b: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in b.chunks(2) {
        s += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Ethernet + IPv4 (no options, DF) + UDP (checksum 0, allowed for IPv4) + payload.
#[allow(clippy::too_many_arguments)]
pub fn udp4_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    ip_id: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(42 + payload.len());
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let total = (20 + 8 + payload.len()) as u16;
    let mut iph = vec![0x45, 0];
    iph.extend_from_slice(&total.to_be_bytes());
    iph.extend_from_slice(&ip_id.to_be_bytes());
    iph.extend_from_slice(&[0x40, 0, 64, 17, 0, 0]);
    iph.extend_from_slice(&src.octets());
    iph.extend_from_slice(&dst.octets());
    let c = checksum(&iph);
    iph[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&iph);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// A DNS message with one question (`qname`, type A, class IN). `response` sets QR and AA and
/// adds one A answer (a reflection-style response).
pub fn dns_message(id: u16, qname: &str, response: bool) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&id.to_be_bytes());
    let flags: u16 = if response { 0x8500 } else { 0x0100 };
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    m.extend_from_slice(&(response as u16).to_be_bytes()); // ANCOUNT
    m.extend_from_slice(&[0, 0, 0, 0]); // NSCOUNT, ARCOUNT
    for label in qname.trim_end_matches('.').split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&[0, 1, 0, 1]); // A, IN
    if response {
        // Name pointer to the question, A, IN, TTL 300, 4 bytes of address.
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 0x2c, 0, 4, 192, 0, 2, 1]);
    }
    m
}

/// A small xorshift generator (no external crates in the examples).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 16) as u32
    }
}

/// What the flooder sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloodKind {
    /// DNS queries to port 53 from random sources in 198.18.0.0/15 and random ports.
    Spoofed,
    /// DNS responses (QR set) from port 53 of random sources in 198.18.0.0/15 to port 53.
    Reflection,
    /// Both, alternating.
    Mixed,
}

/// `count` distinct flood frames to `dst`.
pub fn flood_frames(
    kind: FloodKind,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    dst: Ipv4Addr,
    count: usize,
    seed: u64,
) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|i| {
            let r = rng.next_u32();
            // 198.18.0.0/15: the benchmarking range (RFC 2544), never a real client.
            let src = Ipv4Addr::from(0xc612_0000 | (r & 0x1_ffff));
            let reflect = match kind {
                FloodKind::Spoofed => false,
                FloodKind::Reflection => true,
                FloodKind::Mixed => i % 2 == 1,
            };
            let id = rng.next_u32() as u16;
            let qname = format!("f{}.test.example", rng.next_u32() % 100_000);
            let payload = dns_message(id, &qname, reflect);
            let sport = if reflect {
                53
            } else {
                1024 + (rng.next_u32() % 64_000) as u16
            };
            udp4_frame(src_mac, dst_mac, src, dst, sport, 53, id, &payload)
        })
        .collect()
}

/// A raw AF_PACKET socket bound to one interface, sending with `sendmmsg` and bypassing the
/// qdisc.
pub struct PacketTx {
    fd: OwnedFd,
    ifindex: u32,
}

impl PacketTx {
    pub fn new(ifname: &str) -> Result<PacketTx, String> {
        let ifindex =
            floodgate_xdp::ifindex(ifname).ok_or_else(|| format!("no interface {ifname}"))?;
        // SAFETY: plain socket(2) call.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                (libc::ETH_P_ALL as u16).to_be() as i32,
            )
        };
        if raw < 0 {
            return Err(format!("AF_PACKET socket: {}", io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh socket we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        // SAFETY: the option value is a c_int that lives for the call.
        unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        // SAFETY: sockaddr_ll is plain data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
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
            return Err(format!(
                "bind AF_PACKET to {ifname}: {}",
                io::Error::last_os_error()
            ));
        }
        Ok(PacketTx { fd, ifindex })
    }

    /// Sends `frames` with one `sendmmsg`; returns how many the kernel took.
    pub fn send(&self, frames: &[&[u8]]) -> usize {
        let mut iov: Vec<libc::iovec> = frames
            .iter()
            .map(|f| libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            })
            .collect();
        // SAFETY: mmsghdr is plain data; zeroed means no name, no control.
        let mut msgs: Vec<libc::mmsghdr> = (0..frames.len())
            .map(|_| unsafe { std::mem::zeroed() })
            .collect();
        for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every msghdr points at one iovec describing a live frame; the kernel only
        // reads them (and writes msg_len).
        let n =
            unsafe { libc::sendmmsg(self.fd.as_raw_fd(), msgs.as_mut_ptr(), msgs.len() as u32, 0) };
        n.max(0) as usize
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }
}

/// What a flood run did.
#[derive(Debug, Clone, Copy, Default)]
pub struct FloodResult {
    pub sent: u64,
    pub seconds: f64,
    pub cpu_seconds: f64,
}

impl FloodResult {
    pub fn pps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.sent as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Sends `frames` round-robin in batches of `batch` until `stop` is set or `duration` passed,
/// at `rate` packets per second, or as fast as the kernel takes them when `rate` is `None`.
pub fn flood(
    tx: &PacketTx,
    frames: &[Vec<u8>],
    batch: usize,
    rate: Option<u64>,
    duration: Duration,
    stop: &AtomicBool,
) -> FloodResult {
    let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
    let cpu0 = thread_cpu_seconds();
    let start = Instant::now();
    let mut sent = 0u64;
    let mut pos = 0usize;
    while !stop.load(Ordering::Relaxed) && start.elapsed() < duration {
        if let Some(r) = rate {
            let due = (start.elapsed().as_secs_f64() * r as f64) as u64;
            if sent >= due {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
        }
        let end = (pos + batch).min(refs.len());
        let n = tx.send(&refs[pos..end]);
        sent += n as u64;
        pos = if end == refs.len() { 0 } else { end };
        if n == 0 {
            std::thread::yield_now();
        }
    }
    FloodResult {
        sent,
        seconds: start.elapsed().as_secs_f64(),
        cpu_seconds: thread_cpu_seconds() - cpu0,
    }
}

/// The flag set by SIGINT/SIGTERM once [`install_stop_signals`] ran.
pub static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// SIGINT and SIGTERM set [`STOP`] instead of killing the process (so it can print totals).
pub fn install_stop_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_stop_signal as *const () as libc::sighandler_t) };
    }
}

/// A TAP device (`/dev/net/tun`, `IFF_TAP | IFF_NO_PI`) that lives as long as this value.
pub struct Tap {
    fd: OwnedFd,
    pub name: String,
}

impl Tap {
    pub fn create(name: &str) -> Result<Tap, String> {
        let path = CString::new("/dev/net/tun").unwrap();
        // SAFETY: plain open(2) of a NUL-terminated path.
        let raw = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if raw < 0 {
            return Err(format!("/dev/net/tun: {}", io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if name.len() >= libc::IFNAMSIZ {
            return Err(format!("TAP name {name:?} is too long"));
        }
        // SAFETY: ifreq is plain data.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes the ifreq we pass.
        if unsafe { libc::ioctl(raw, libc::TUNSETIFF, &mut ifr) } < 0 {
            return Err(format!("TUNSETIFF {name}: {}", io::Error::last_os_error()));
        }
        Ok(Tap {
            fd,
            name: name.to_string(),
        })
    }

    /// Hands one frame to the kernel as if it arrived on the TAP.
    pub fn write(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: `frame` is a live slice of the given length.
        let n = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Simple `--key value` argument parsing: the value after `key`, if given.
pub fn arg(args: &[String], key: &str) -> Option<String> {
    args.iter()
        .position(|a| a == key)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Like [`arg`], parsed; exits with a message naming the option on a bad value.
pub fn arg_parse<T: std::str::FromStr>(args: &[String], key: &str, default: T) -> T {
    match arg(args, key) {
        None => default,
        Some(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("{key}: cannot parse {v:?}");
            std::process::exit(2)
        }),
    }
}

/// Turns generic receive offload on or off on an interface of the calling thread's namespace
/// (`SIOCETHTOOL` `ETHTOOL_SGRO`). On veth, GRO on makes the receiving side use NAPI (a
/// softirq poll, or a kernel thread with threaded NAPI) even without an XDP program.
pub fn set_gro(ifname: &str, on: bool) -> Result<(), String> {
    ethtool_set(ifname, 0x2c, on, "ETHTOOL_SGRO")
}

/// Turns TCP segmentation offload on or off (`ETHTOOL_STSO`). A veth whose sender has TSO
/// on hands plain datagrams to the backlog instead of the peer's NAPI.
pub fn set_tso(ifname: &str, on: bool) -> Result<(), String> {
    ethtool_set(ifname, 0x1f, on, "ETHTOOL_STSO")
}

fn ethtool_set(ifname: &str, cmd: u32, on: bool, what: &str) -> Result<(), String> {
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let mut ev = EthtoolValue {
        cmd,
        data: on as u32,
    };
    // SAFETY: plain socket(2) call.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(format!("socket: {}", io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a fresh socket we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain data.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr
        .ifr_name
        .iter_mut()
        .zip(ifname.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = &mut ev as *mut EthtoolValue as *mut libc::c_char;
    // SAFETY: SIOCETHTOOL reads the ifreq and the ethtool_value it points at, both live.
    if unsafe {
        libc::ioctl(fd.as_raw_fd(), 0x8946 /* SIOCETHTOOL */, &mut ifr)
    } < 0
    {
        return Err(format!("{what} {ifname}: {}", io::Error::last_os_error()));
    }
    Ok(())
}

/// Process ids of the threaded-NAPI kernel threads of an interface (`napi/<ifname>-<id>`,
/// the name cut to 15 characters).
pub fn napi_threads(ifname: &str) -> Vec<i32> {
    let prefix: String = format!("napi/{ifname}-").chars().take(15).collect();
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
                if comm.trim_end().starts_with(&prefix) {
                    out.push(pid);
                }
            }
        }
    }
    out
}

/// User + system CPU seconds of a process or thread, from `/proc/<pid>/stat`.
pub fn pid_cpu_seconds(pid: i32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which is in parentheses and may contain spaces).
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) as f64 / hz
}

/// Pins a process or thread to one CPU (best effort).
pub fn pin_pid_to_cpu(pid: i32, cpu: usize) -> bool {
    // SAFETY: as in `pin_to_cpu`, for another task.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}
