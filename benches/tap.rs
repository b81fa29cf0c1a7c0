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
//! Needs root and /dev/net/tun: the bench moves itself into a fresh network namespace and creates
//! two TAPs there (one per writer, as a TAP without multi-queue takes one fd). Otherwise it prints
//! a `skipped:` line.
//!
//! `cargo bench --bench tap`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BenchmarkId, Criterion, Throughput};
use floodgate::tap::{PlainWriter, Reinject, Tap, UringWriter};

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

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
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
            let (us, ps) = (uring.stats(), plain.stats());
            println!(
                "{kind} burst {burst}: io_uring written {} pushed back {} errors {}; write() written {} pushed back {} errors {}",
                us.written, us.pushed_back, us.errors, ps.written, ps.pushed_back, ps.errors
            );
        }
    }
    cpu.final_summary();
    wallc.final_summary();
}
