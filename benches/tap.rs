//! TAP reinjection: batched io_uring (one submission per burst) against one `write()` per packet,
//! same frames, same run, in packets per second.
//!
//! Needs root and /dev/net/tun: the bench moves itself into a fresh network namespace and creates
//! two TAPs there (one per writer, as a TAP without multi-queue takes one fd). Otherwise it prints
//! a `skipped:` line.
//!
//! `cargo bench --bench tap`

use std::hint::black_box;

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
    let mut criterion = Criterion::default().configure_from_args();
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
    for (kind, frames) in [("l2drop", &l2), ("ipv4", &ipv4)] {
        let mut g = criterion.benchmark_group(format!("tap_reinject_{kind}"));
        for burst in [32usize, 64] {
            let refs: Vec<&[u8]> = frames[..burst].iter().map(|f| &f[..]).collect();
            let mut uring = match UringWriter::new(open(&format!("fu{kind}{burst}")), burst) {
                Ok(w) => w,
                Err((e, _)) => {
                    println!("skipped: io_uring unavailable: {e}");
                    return;
                }
            };
            let mut plain = PlainWriter::new(open(&format!("fp{kind}{burst}")));
            g.throughput(Throughput::Elements(burst as u64));
            g.bench_with_input(
                BenchmarkId::new("io_uring_batched", burst),
                &refs,
                |b, r| b.iter(|| black_box(uring.write_burst(r))),
            );
            g.bench_with_input(
                BenchmarkId::new("write_per_packet", burst),
                &refs,
                |b, r| b.iter(|| black_box(plain.write_burst(r))),
            );
            let (u, p) = (uring.stats(), plain.stats());
            println!(
                "{kind} burst {burst}: io_uring written {} pushed back {} errors {}; write() written {} pushed back {} errors {}",
                u.written, u.pushed_back, u.errors, p.written, p.pushed_back, p.errors
            );
        }
        g.finish();
    }
    criterion.final_summary();
}
