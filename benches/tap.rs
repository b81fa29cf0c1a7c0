//! TAP reinjection: batched io_uring (one submission per burst) against one `write()` per packet,
//! same frames, same run, in packets per second.
//!
//! The two writers are measured **paired**: each timed block of bursts of one method is followed
//! by an untimed block of the other, so both see the same background load and cache state (the
//! machines this runs on are shared). Two measurements: the writing thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`; all kernel work of both methods runs in that thread, since
//! `RWF_NOWAIT` keeps io_uring from handing writes to worker threads), which is what "packets per
//! second per core" means and is insensitive to being descheduled; and wall time.
//!
//! The floor: `tap_floor_cpu` times one null syscall (`getppid`) per packet and one io_uring NOP
//! per packet (a burst of NOPs in one submission), paired the same way. At the end the bench
//! prints, per frame kind and burst size, a breakdown measured in interleaved rounds outside
//! criterion: `write()` = syscall + kernel work, the io_uring variants that were tried (as
//! shipped in `UringWriter`, `SINGLE_ISSUER | DEFER_TASKRUN`, `CQE_SKIP_SUCCESS` with and without
//! a hard-linked chain, `SQPOLL` measured by wall time and by the CPU time of every thread of the
//! process), and the **ceiling**: `write()` / (`write()` − syscall), the best ratio any batched
//! submission could reach if its own per-packet cost were zero.
//!
//! Needs root and /dev/net/tun: the bench moves itself into a fresh network namespace and creates
//! its TAPs there (one per writer, as a TAP without multi-queue takes one fd). Otherwise it prints
//! a `skipped:` line.
//!
//! `cargo bench --bench tap`

use std::hint::black_box;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BenchmarkId, Criterion, Throughput};
use floodgate::tap::{PlainWriter, Reinject, Tap, UringWriter};
use io_uring::{opcode, squeue, types, IoUring};

/// A 64-byte Ethernet/IPv4/UDP frame to 10.99.0.1:53 (not an address of the namespace, so the
/// kernel parses it and drops it in routing, like a reinjected packet for a host that is not
/// this one).
fn frame(seq: u16) -> [u8; 64] {
    let mut f = [0u8; 64];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&50u16.to_be_bytes());
    ip[4..6].copy_from_slice(&seq.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[192, 0, 2, 1]);
    ip[16..20].copy_from_slice(&[10, 99, 0, 1]);
    let mut sum: u32 = 0;
    for c in ip.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&(1024 + seq).to_be_bytes());
    udp[2..4].copy_from_slice(&53u16.to_be_bytes());
    udp[4..6].copy_from_slice(&30u16.to_be_bytes());
    f
}

fn clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec pointer.
    unsafe { libc::clock_gettime(id, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time of every thread of the process, io_uring's SQPOLL thread included (it is a thread of
/// the process that created the ring).
fn process_cpu() -> Duration {
    clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// One null syscall per packet: the syscall entry/exit cost that batching can save.
fn getppid_burst(n: usize) {
    for _ in 0..n {
        // SAFETY: plain syscall without arguments.
        black_box(unsafe { libc::getppid() });
    }
}

/// A bare ring for the io_uring variants `UringWriter` does not use, and for the NOP floor.
struct Variant {
    ring: IoUring,
    /// `IOSQE_CQE_SKIP_SUCCESS` on the writes, and one NOP (with a CQE) at the end of the burst.
    skip: bool,
    /// `IOSQE_IO_HARDLINK` on the writes: the NOP then completes only after every write has,
    /// which is what would make skipping success CQEs safe for borrowed buffers.
    link: bool,
    /// The TAP written to (none for the NOP ring); closed after the ring.
    _fd: Option<OwnedFd>,
}

impl Variant {
    fn new(
        b: &mut io_uring::Builder,
        fd: Option<OwnedFd>,
        skip: bool,
        link: bool,
    ) -> Option<Variant> {
        let ring = b.build(256).ok()?;
        if let Some(fd) = &fd {
            ring.submitter().register_files(&[fd.as_raw_fd()]).ok()?;
        }
        Some(Variant {
            ring,
            skip,
            link,
            _fd: fd,
        })
    }

    /// `n` NOPs in one submission, all reaped.
    fn nops(&mut self, n: usize) {
        {
            let mut sq = self.ring.submission();
            for i in 0..n {
                let e = opcode::Nop::new().build().user_data(i as u64);
                // SAFETY: a NOP references no memory.
                unsafe { sq.push(&e) }.expect("NOP burst fits the ring");
            }
        }
        let mut done = 0;
        while done < n {
            self.ring.submit_and_wait(n - done).expect("io_uring_enter");
            done += self.ring.completion().count();
        }
    }

    /// Writes the burst (`RWF_NOWAIT`, registered fd, like `UringWriter`) and waits for it;
    /// returns the frames written whole.
    fn burst(&mut self, pkts: &[&[u8]]) -> u32 {
        let mut fl = squeue::Flags::empty();
        if self.skip {
            fl |= squeue::Flags::SKIP_SUCCESS;
        }
        if self.link {
            fl |= squeue::Flags::IO_HARDLINK;
        }
        {
            let mut sq = self.ring.submission();
            for (i, p) in pkts.iter().enumerate() {
                let e = opcode::Write::new(types::Fixed(0), p.as_ptr(), p.len() as u32)
                    .offset(u64::MAX)
                    .rw_flags(libc::RWF_NOWAIT)
                    .build()
                    .flags(fl)
                    .user_data(i as u64);
                // SAFETY: the frames outlive every ring of the bench (they are created first
                // in `main`), and this function reaps the burst before returning.
                unsafe { sq.push(&e) }.expect("burst fits the ring");
            }
            if self.skip {
                let nop = opcode::Nop::new().build().user_data(u64::MAX);
                // SAFETY: a NOP references no memory.
                unsafe { sq.push(&nop) }.expect("burst fits the ring");
            }
        }
        let mut failed = 0u32;
        let mut ok = 0u32;
        let mut done = 0usize;
        let mut nop = false;
        while if self.skip { !nop } else { done < pkts.len() } {
            let want = if self.skip { 1 } else { pkts.len() - done };
            self.ring.submit_and_wait(want).expect("io_uring_enter");
            for c in self.ring.completion() {
                if c.user_data() == u64::MAX {
                    nop = true;
                } else {
                    done += 1;
                    if c.result() == pkts[0].len() as i32 {
                        ok += 1;
                    } else {
                        failed += 1;
                    }
                }
            }
        }
        if self.skip {
            pkts.len() as u32 - failed
        } else {
            ok
        }
    }
}

/// Criterion measurement: the benchmark thread's CPU time.
struct ThreadCpu;

static WALL: WallTime = WallTime;

impl Measurement for ThreadCpu {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu()
    }
    fn end(&self, i: Duration) -> Duration {
        thread_cpu().saturating_sub(i)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        WALL.formatter()
    }
}

/// Bursts per timed block.
const BLOCK: u64 = 8;

/// Runs `iters` bursts of `timed`, timing blocks of [`BLOCK`] with `clock`, each block followed
/// by the same number of untimed bursts of `other`.
fn paired(
    iters: u64,
    clock: fn() -> Duration,
    timed: &mut dyn FnMut(),
    other: &mut dyn FnMut(),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(BLOCK);
        let t = clock();
        for _ in 0..n {
            timed();
        }
        total += clock().saturating_sub(t);
        for _ in 0..n {
            other();
        }
        left -= n;
    }
    total
}

fn wall() -> Duration {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

fn main() {
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: the tap bench needs root to create TAP devices");
        return;
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        println!("skipped: /dev/net/tun is missing");
        return;
    }
    // SAFETY: single-threaded at this point; only this thread changes namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        println!(
            "skipped: unshare(CLONE_NEWNET) failed: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    let open = |name: &str| {
        let t = Tap::open(name).unwrap_or_else(|e| panic!("{e}"));
        t.set_up().unwrap_or_else(|e| panic!("{e}"));
        t.into_fd()
    };
    let ipv4: Vec<[u8; 64]> = (0..64).map(frame).collect();
    // The same frames with an EtherType no protocol handles: the kernel drops them right after
    // the TAP driver, so this measures the reinjection itself.
    let l2: Vec<[u8; 64]> = ipv4
        .iter()
        .map(|f| {
            let mut f = *f;
            f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
            f
        })
        .collect();
    let mut cpu = Criterion::default()
        .with_measurement(ThreadCpu)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    let mut wallc = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    let mut n = 0;
    let mut ceilings = Vec::new();
    for (kind, frames) in [("l2drop", &l2), ("ipv4", &ipv4)] {
        for burst in [32usize, 64] {
            n += 1;
            let refs: Vec<&[u8]> = frames[..burst].iter().map(|f| &f[..]).collect();
            let mut uring = match UringWriter::new(open(&format!("fu{n}")), burst) {
                Ok(w) => w,
                Err((e, _)) => {
                    println!("skipped: io_uring unavailable: {e}");
                    return;
                }
            };
            let mut plain = PlainWriter::new(open(&format!("fp{n}")));
            let mut u = || {
                black_box(uring.write_burst(&refs));
            };
            let mut p = || {
                black_box(plain.write_burst(&refs));
            };
            {
                let mut g = cpu.benchmark_group(format!("tap_cpu_{kind}"));
                g.throughput(Throughput::Elements(burst as u64));
                g.bench_function(BenchmarkId::new("io_uring_batched", burst), |b| {
                    b.iter_custom(|iters| paired(iters, thread_cpu, &mut u, &mut p))
                });
                g.bench_function(BenchmarkId::new("write_per_packet", burst), |b| {
                    b.iter_custom(|iters| paired(iters, thread_cpu, &mut p, &mut u))
                });
                g.finish();
            }
            {
                let mut g = wallc.benchmark_group(format!("tap_wall_{kind}"));
                g.throughput(Throughput::Elements(burst as u64));
                g.bench_function(BenchmarkId::new("io_uring_batched", burst), |b| {
                    b.iter_custom(|iters| paired(iters, wall, &mut u, &mut p))
                });
                g.bench_function(BenchmarkId::new("write_per_packet", burst), |b| {
                    b.iter_custom(|iters| paired(iters, wall, &mut p, &mut u))
                });
                g.finish();
            }
            if kind == "l2drop" {
                let mut nop = Variant::new(&mut IoUring::builder(), None, false, false)
                    .expect("io_uring NOP ring");
                let mut g = cpu.benchmark_group("tap_floor_cpu");
                g.throughput(Throughput::Elements(burst as u64));
                g.bench_function(BenchmarkId::new("getppid_per_packet", burst), |b| {
                    b.iter_custom(|iters| {
                        paired(iters, thread_cpu, &mut || getppid_burst(burst), &mut p)
                    })
                });
                g.bench_function(BenchmarkId::new("uring_nop_per_packet", burst), |b| {
                    b.iter_custom(|iters| {
                        paired(iters, thread_cpu, &mut || nop.nops(burst), &mut p)
                    })
                });
                g.finish();
            }
            let vname = |v: &str| format!("v{n}{v}");
            ceilings.push(ceiling(kind, &refs, &mut plain, &mut uring, &|v| {
                open(&vname(v))
            }));
            let (us, ps) = (uring.stats(), plain.stats());
            println!(
                "{kind} burst {burst}: io_uring written {} pushed back {} errors {}; write() written {} pushed back {} errors {}",
                us.written, us.pushed_back, us.errors, ps.written, ps.pushed_back, ps.errors
            );
        }
    }
    cpu.final_summary();
    wallc.final_summary();
    println!();
    for c in ceilings {
        println!("{c}");
    }
}

/// `TUNSETIFF`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// `TUNSETSNDBUF`.
const TUNSETSNDBUF: libc::c_ulong = 0x4004_54d4;
/// `IFF_TAP | IFF_NO_PI`, as `Tap::open` uses.
const IFF_TAP_NO_PI: libc::c_short = 0x0002 | 0x1000;
/// `IFF_NAPI`.
const IFF_NAPI: libc::c_short = 0x0010;
/// `IFF_MULTI_QUEUE`.
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
/// `IFF_VNET_HDR`.
const IFF_VNET_HDR: libc::c_short = 0x4000;

/// Attaches a descriptor to TAP `name` with `IFF_TAP | IFF_NO_PI | extra` (creating it), for the
/// TUN features `Tap::open` does not use; `None` if the kernel refuses.
fn raw_tap(name: &str, extra: libc::c_short) -> Option<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: open(2) on a NUL-terminated path; checked.
    let fd = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: a fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, c) in ifr.ifr_name.iter_mut().zip(name.bytes().take(15)) {
        *d = c as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = IFF_TAP_NO_PI | extra;
    // SAFETY: TUNSETIFF reads and writes one ifreq.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut ifr) } < 0 {
        return None;
    }
    Some(fd)
}

/// Sets `IFF_UP` on `name`.
fn raw_up(name: &str) -> Option<()> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket(2); checked.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return None;
    }
    // SAFETY: a fresh descriptor.
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    // SAFETY: ifreq is plain data.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, c) in ifr.ifr_name.iter_mut().zip(name.bytes().take(15)) {
        *d = c as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS / SIOCSIFFLAGS read and write one ifreq; the flags were filled in by
    // the first.
    unsafe {
        if libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut ifr) < 0 {
            return None;
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS as _, &mut ifr) < 0 {
            return None;
        }
    }
    Some(())
}

/// Interleaved rounds for the breakdown.
const ROUNDS: usize = 15;
/// Frames per method per round (about 20 ms of work each).
const FRAMES_PER_ROUND: usize = 64 * 1024;

/// Measures the breakdown for one frame kind and burst size and returns it as text.
fn ceiling(
    kind: &str,
    refs: &[&[u8]],
    plain: &mut PlainWriter,
    uring: &mut UringWriter,
    open: &dyn Fn(&str) -> OwnedFd,
) -> String {
    let burst = refs.len();
    let mut b = IoUring::builder();
    let mut nop = Variant::new(&mut b, None, false, false);
    let mut bare = Variant::new(
        IoUring::builder().setup_coop_taskrun(),
        Some(open("co")),
        false,
        false,
    );
    let mut si = Variant::new(
        IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun(),
        Some(open("si")),
        false,
        false,
    );
    let mut skip_link = Variant::new(
        IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun(),
        Some(open("sl")),
        true,
        true,
    );
    let mut skip = Variant::new(
        IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun(),
        Some(open("sk")),
        true,
        false,
    );
    // The SQPOLL thread spins for 1 ms after the last submission, then sleeps.
    let mut sqpoll = Variant::new(
        IoUring::builder().setup_sqpoll(1),
        Some(open("sq")),
        false,
        false,
    );
    // Kernel-side TUN features, each with write() per frame (`None` where the kernel refuses).
    let mut keep = Vec::new();
    let mut napi = raw_tap(&format!("{kind:.2}{burst}na"), IFF_NAPI).map(PlainWriter::new);
    let mut vnet = raw_tap(&format!("{kind:.2}{burst}vh"), IFF_VNET_HDR).map(PlainWriter::new);
    let mq_name = format!("{kind:.2}{burst}mq");
    let mut mq = raw_tap(&mq_name, IFF_MULTI_QUEUE).and_then(|a| {
        keep.push(raw_tap(&mq_name, IFF_MULTI_QUEUE)?);
        Some(PlainWriter::new(a))
    });
    let mut sndbuf = Some(open("sb")).and_then(|fd| {
        let size: libc::c_int = 1 << 30;
        // SAFETY: TUNSETSNDBUF reads one int.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETSNDBUF as _, &size) };
        (rc == 0).then(|| PlainWriter::new(fd))
    });
    for n in ["na", "vh", "mq"] {
        raw_up(&format!("{kind:.2}{burst}{n}"));
    }
    // A zeroed virtio_net_hdr (10 bytes: no checksum offload, no GSO) before each frame.
    let vnet_frames: Vec<Vec<u8>> = refs.iter().map(|f| [&[0u8; 10][..], f].concat()).collect();
    let vnet_refs: Vec<&[u8]> = vnet_frames.iter().map(|f| &f[..]).collect();
    let bursts = FRAMES_PER_ROUND.div_ceil(burst);
    let frames = (bursts * burst) as f64;
    #[allow(clippy::type_complexity)]
    let mut methods: Vec<(&str, Box<dyn FnMut() -> u32 + '_>)> = vec![
        (
            "write() per frame",
            Box::new(|| plain.write_burst(refs).written),
        ),
        (
            "null syscall (getppid) per frame",
            Box::new(|| {
                getppid_burst(burst);
                burst as u32
            }),
        ),
        (
            "UringWriter (as shipped)",
            Box::new(|| uring.write_burst(refs).written),
        ),
    ];
    if let Some(v) = nop.as_mut() {
        methods.push((
            "io_uring NOP per SQE",
            Box::new(move || {
                v.nops(burst);
                burst as u32
            }),
        ));
    }
    for (name, w, r) in [
        ("write(), TAP with IFF_NAPI", napi.as_mut(), refs),
        (
            "write(), TAP with IFF_VNET_HDR",
            vnet.as_mut(),
            &vnet_refs[..],
        ),
        ("write(), IFF_MULTI_QUEUE, 2 queues", mq.as_mut(), refs),
        ("write(), TUNSETSNDBUF 1 GiB", sndbuf.as_mut(), refs),
    ] {
        match w {
            Some(w) => methods.push((name, Box::new(move || w.write_burst(r).written))),
            None => println!("{kind} burst {burst}: {name}: not available on this kernel"),
        }
    }
    for (name, v) in [
        ("bare ring, same flags as UringWriter", bare.as_mut()),
        ("SINGLE_ISSUER|DEFER_TASKRUN", si.as_mut()),
        ("+ CQE_SKIP_SUCCESS, hardlinked", skip_link.as_mut()),
        ("+ CQE_SKIP_SUCCESS, unlinked (unsafe)", skip.as_mut()),
        ("SQPOLL", sqpoll.as_mut()),
    ] {
        match v {
            Some(v) => methods.push((name, Box::new(move || v.burst(refs)))),
            None => println!("{kind} burst {burst}: {name}: not available on this kernel"),
        }
    }
    // [method][round] = (thread CPU, process CPU, wall) per frame in ns.
    let mut t: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new(); methods.len()];
    // Each round starts one method further on, and each timed block follows an untimed warm-up
    // of the same method, so no method always comes after the same one (or after SQPOLL's sleep).
    let nm = methods.len();
    for round in 0..ROUNDS {
        for k in 0..nm {
            let m = (round + k) % nm;
            let (name, f) = &mut methods[m];
            for _ in 0..bursts / 8 {
                f();
            }
            let (t0, p0, w0) = (thread_cpu(), process_cpu(), Instant::now());
            let mut ok = 0u64;
            for _ in 0..bursts {
                ok += u64::from(f());
            }
            let (dt, dp, dw) = (thread_cpu() - t0, process_cpu() - p0, w0.elapsed());
            if (ok as f64) < frames {
                println!("{kind} burst {burst}: {name}: only {ok} of {frames} frames written");
            }
            let ns = |d: Duration| d.as_nanos() as f64 / frames;
            t[m].push((ns(dt), ns(dp), ns(dw)));
            if *name == "SQPOLL" {
                // Let the SQPOLL thread go idle before the next method is timed.
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    let med = |v: &[(f64, f64, f64)], k: usize| {
        let mut x: Vec<f64> = v.iter().map(|r| [r.0, r.1, r.2][k]).collect();
        x.sort_by(f64::total_cmp);
        x[x.len() / 2]
    };
    let mut out = format!(
        "breakdown, {kind} frames, burst {burst} (ns per frame, medians of {ROUNDS} interleaved rounds of {bursts} bursts, each after a warm-up):\n  {:<40} {:>10} {:>12} {:>8} {:>9}\n",
        "method", "thread CPU", "process CPU", "wall", "vs write"
    );
    // Ratios compare all the CPU a method costs (for SQPOLL that is two threads).
    let write_all = med(&t[0], 1);
    for (m, (name, _)) in methods.iter().enumerate() {
        let (tc, pc, w) = (med(&t[m], 0), med(&t[m], 1), med(&t[m], 2));
        out += &format!(
            "  {name:<40} {tc:>10.1} {pc:>12.1} {w:>8.1} {:>8.2}x\n",
            write_all / pc
        );
    }
    let write = med(&t[0], 0);
    let sys = med(&t[1], 0);
    let kernel = write - sys;
    let shipped = med(&t[2], 1);
    out += &format!(
        "  write() = syscall {sys:.1} + kernel work {kernel:.1} (TAP driver, skb, receive path, VFS write path)\n  \
         ceiling for any batched submission = write / kernel work = {:.2}x; UringWriter reached {:.2}x (aim 1.5x)\n",
        write / kernel,
        write_all / shipped
    );
    out
}
