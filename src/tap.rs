//! TAP reinjection: the packets that survive the filter go back to the kernel through a TAP
//! device (`IFF_TAP | IFF_NO_PI`), where they are handled like any received frame.
//!
//! Writes are batched through io_uring: one `IORING_OP_WRITE` per packet against the registered
//! TAP fd, one `io_uring_enter` per burst ([`UringWriter`]). [`PlainWriter`] does one `write()` per
//! packet; it is the baseline of the benchmark and the fallback when io_uring is unavailable
//! (old kernel, seccomp, `kernel.io_uring_disabled`). [`TapWriter::new`] picks io_uring when a
//! probe succeeds and logs the fallback once. The two cost about the same CPU per frame (most of
//! it is the TAP driver and the receive path, which run once per frame either way); see
//! [`UringWriter`] and docs/performance.md.
//!
//! A packet the TAP refuses (`EAGAIN`, `ENOBUFS`, a short write) is counted in
//! [`TapStats::pushed_back`]; any other failure in [`TapStats::errors`]. Every packet handed to
//! [`Reinject::write_burst`] ends up in exactly one of `written`, `pushed_back` or `errors`.
//!
//! The API takes packets as byte slices borrowed from their buffers (no copy before the kernel's
//! own). Because io_uring reads the buffers asynchronously, `write_burst` returns only when every
//! write of the burst has completed, in the same `io_uring_enter` call that submitted them
//! (`submit_and_wait(n)`): the borrowed slices never outlive the call.
//!
//! ```no_run
//! use floodgate::tap::{Reinject, Tap, TapWriter};
//! let tap = Tap::open("fg0")?;
//! tap.set_up()?;
//! let mut w = TapWriter::new(tap.into_fd(), 32);
//! let frame = [0u8; 60];
//! let out = w.write_burst(&[&frame[..], &frame[..]]);
//! assert_eq!(out.written + out.pushed_back + out.errors, 2);
//! # Ok::<(), floodgate::tap::TapError>(())
//! ```

use std::ffi::CString;
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use floodgate_pmd::{Packet, MAX_BATCH};
use io_uring::{opcode, types, IoUring};

use crate::sink::PassSink;

/// `TUNSETIFF`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// `IFF_TAP`.
const IFF_TAP: libc::c_short = 0x0002;
/// `IFF_NO_PI`.
const IFF_NO_PI: libc::c_short = 0x1000;

/// Errors opening or configuring a TAP.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// Bad interface name.
    #[error(
        "TAP name {0:?}: an interface name has 1 to 15 characters, without '/', NUL or spaces"
    )]
    BadName(String),
    /// `/dev/net/tun` could not be opened.
    #[error("cannot open /dev/net/tun: {0}")]
    Open(String),
    /// `TUNSETIFF` failed.
    #[error("cannot create or attach TAP {name}: {msg}")]
    SetIff {
        /// Name.
        name: String,
        /// Plain words.
        msg: String,
    },
    /// Bringing the interface up failed.
    #[error("cannot bring TAP {name} up: {msg}")]
    Up {
        /// Name.
        name: String,
        /// Plain words.
        msg: String,
    },
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn ifname(name: &str) -> Option<[libc::c_char; libc::IFNAMSIZ]> {
    if name.is_empty()
        || name.len() >= libc::IFNAMSIZ
        || name.contains(['/', '\0'])
        || name.contains(char::is_whitespace)
    {
        return None;
    }
    let mut out = [0 as libc::c_char; libc::IFNAMSIZ];
    for (d, s) in out.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Some(out)
}

/// An open TAP device.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    name: String,
}

impl Tap {
    /// Creates the TAP `name`, or attaches to it if it exists (persistent, or created by
    /// `ip tuntap add mode tap`), as `IFF_TAP | IFF_NO_PI`, non-blocking. Needs CAP_NET_ADMIN
    /// unless the TAP is persistent and owned by the caller. The TAP lives in the network
    /// namespace of the calling thread.
    pub fn open(name: &str) -> Result<Tap, TapError> {
        let ifr_name = ifname(name).ok_or_else(|| TapError::BadName(name.to_string()))?;
        let path = CString::new("/dev/net/tun").map_err(|e| TapError::Open(e.to_string()))?;
        // SAFETY: open(2) on a valid NUL-terminated path; the result is checked.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = errno();
            let msg = match e {
                libc::ENOENT | libc::ENODEV | libc::ENXIO => {
                    "it does not exist: load the tun module (`modprobe tun`) or, in a container, pass the device in".to_string()
                }
                libc::EACCES | libc::EPERM => {
                    "permission denied: run as root or give the user access to /dev/net/tun".into()
                }
                e => std::io::Error::from_raw_os_error(e).to_string(),
            };
            return Err(TapError::Open(msg));
        }
        // SAFETY: `fd` is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: ifreq is plain old data; all-zero is valid.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        ifr.ifr_name = ifr_name;
        ifr.ifr_ifru.ifru_flags = IFF_TAP | IFF_NO_PI;
        // SAFETY: TUNSETIFF reads and writes one ifreq, which `ifr` is.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut ifr) };
        if rc < 0 {
            let e = errno();
            let msg = match e {
                libc::EPERM | libc::EACCES => "permission denied: creating a TAP needs CAP_NET_ADMIN (run as root; floodgate drops privileges after opening it)".to_string(),
                libc::EBUSY => format!("{name} is already attached by another process"),
                libc::EINVAL => format!("an interface {name} exists and is not a TAP (a TUN, or another kind of device)"),
                e => std::io::Error::from_raw_os_error(e).to_string(),
            };
            return Err(TapError::SetIff {
                name: name.to_string(),
                msg,
            });
        }
        let got: Vec<u8> = ifr
            .ifr_name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        Ok(Tap {
            fd,
            name: String::from_utf8_lossy(&got).into_owned(),
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The TAP's file descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Gives up the descriptor (to build a [`TapWriter`]); the TAP lives as long as the fd does
    /// (unless persistent).
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Sets the TAP's MAC address (`SIOCSIFHWADDR`). The daemon gives the TAP the PF's MAC, so
    /// that reinjected frames, which still carry the PF's MAC as destination, are addressed to
    /// the TAP (`PACKET_HOST`) and reach the kernel's IP layer instead of being discarded as
    /// `PACKET_OTHERHOST`. Must be called while the interface is down.
    pub fn set_mac(&self, mac: [u8; 6]) -> Result<(), TapError> {
        let fail = |msg: String| TapError::Up {
            name: self.name.clone(),
            msg: format!("setting MAC address: {msg}"),
        };
        let name = ifname(&self.name).ok_or_else(|| TapError::BadName(self.name.clone()))?;
        // SAFETY: plain socket(2); checked.
        let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if s < 0 {
            return Err(fail(std::io::Error::last_os_error().to_string()));
        }
        // SAFETY: fresh descriptor.
        let s = unsafe { OwnedFd::from_raw_fd(s) };
        // SAFETY: plain old data.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        ifr.ifr_name = name;
        // SAFETY: ifru_hwaddr is a sockaddr; we fill family and the first 6 data bytes.
        unsafe {
            ifr.ifr_ifru.ifru_hwaddr.sa_family = libc::ARPHRD_ETHER;
            for (d, b) in ifr.ifr_ifru.ifru_hwaddr.sa_data.iter_mut().zip(mac) {
                *d = b as libc::c_char;
            }
        }
        // SAFETY: SIOCSIFHWADDR reads one ifreq.
        if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFHWADDR as _, &mut ifr) } < 0 {
            let e = errno();
            return Err(fail(match e {
                libc::EPERM | libc::EACCES => "permission denied: needs CAP_NET_ADMIN".into(),
                libc::EBUSY => "the interface is up; set the MAC before bringing it up".into(),
                e => std::io::Error::from_raw_os_error(e).to_string(),
            }));
        }
        Ok(())
    }

    /// Sets `IFF_UP` on the interface (in the calling thread's network namespace).
    pub fn set_up(&self) -> Result<(), TapError> {
        let up = |msg: String| TapError::Up {
            name: self.name.clone(),
            msg,
        };
        let name = ifname(&self.name).ok_or_else(|| TapError::BadName(self.name.clone()))?;
        // SAFETY: plain socket(2); checked.
        let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if s < 0 {
            return Err(up(std::io::Error::last_os_error().to_string()));
        }
        // SAFETY: fresh descriptor.
        let s = unsafe { OwnedFd::from_raw_fd(s) };
        // SAFETY: plain old data.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        ifr.ifr_name = name;
        // SAFETY: SIOCGIFFLAGS reads/writes one ifreq.
        if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut ifr) } < 0 {
            return Err(up(std::io::Error::last_os_error().to_string()));
        }
        // SAFETY: the kernel filled ifru_flags.
        let flags = unsafe { ifr.ifr_ifru.ifru_flags };
        ifr.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
        // SAFETY: SIOCSIFFLAGS reads one ifreq.
        if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS as _, &mut ifr) } < 0 {
            let e = errno();
            return Err(up(match e {
                libc::EPERM | libc::EACCES => "permission denied: needs CAP_NET_ADMIN".into(),
                e => std::io::Error::from_raw_os_error(e).to_string(),
            }));
        }
        Ok(())
    }
}

/// Counters of a writer, cumulative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TapStats {
    /// Packets written whole.
    pub written: u64,
    /// Bytes of the packets written.
    pub bytes: u64,
    /// Packets the TAP refused for lack of room (`EAGAIN`, `ENOBUFS`, short write): dropped.
    pub pushed_back: u64,
    /// Packets lost to any other error (`EIO`, `EINVAL`, `EFAULT`, ...): dropped.
    pub errors: u64,
}

/// What happened to one burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BurstOutcome {
    /// Written whole.
    pub written: u32,
    /// Refused by the TAP (dropped, counted).
    pub pushed_back: u32,
    /// Failed otherwise (dropped, counted).
    pub errors: u32,
}

/// How a writer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// One io_uring submission per burst.
    Uring,
    /// One `write()` per packet.
    Plain,
}

/// Reinjection of bursts of packets.
pub trait Reinject {
    /// Writes every packet of `pkts` (each a whole Ethernet frame) and accounts for each in
    /// exactly one of the outcome's counters. Never blocks on a full TAP: refused packets are
    /// counted as pushed back.
    fn write_burst(&mut self, pkts: &[&[u8]]) -> BurstOutcome;
    /// Cumulative counters.
    fn stats(&self) -> TapStats;
    /// The method in use.
    fn method(&self) -> Method;
}

enum Class {
    Written,
    PushedBack,
    Error,
}

fn classify(res: i64, len: usize) -> (Class, Option<i32>) {
    if res < 0 {
        let e = (-res) as i32;
        if e == libc::EAGAIN || e == libc::EWOULDBLOCK || e == libc::ENOBUFS || e == libc::ENOMEM {
            (Class::PushedBack, None)
        } else {
            (Class::Error, Some(e))
        }
    } else if res as usize == len {
        (Class::Written, None)
    } else {
        (Class::PushedBack, None)
    }
}

fn account(stats: &mut TapStats, out: &mut BurstOutcome, last_err: &mut i32, res: i64, len: usize) {
    match classify(res, len) {
        (Class::Written, _) => {
            stats.written += 1;
            stats.bytes += len as u64;
            out.written += 1;
        }
        (Class::PushedBack, _) => {
            stats.pushed_back += 1;
            out.pushed_back += 1;
        }
        (Class::Error, e) => {
            stats.errors += 1;
            out.errors += 1;
            let e = e.unwrap_or(libc::EIO);
            if *last_err != e {
                *last_err = e;
                log::warn!(
                    "TAP write failed: {} (further failures with this error are only counted)",
                    std::io::Error::from_raw_os_error(e)
                );
            }
        }
    }
}

/// One `write()` per packet.
#[derive(Debug)]
pub struct PlainWriter {
    fd: OwnedFd,
    stats: TapStats,
    last_err: i32,
}

impl PlainWriter {
    /// A writer on `fd` (a TAP, or any non-blocking fd that takes one packet per write).
    pub fn new(fd: OwnedFd) -> PlainWriter {
        PlainWriter {
            fd,
            stats: TapStats::default(),
            last_err: 0,
        }
    }
}

fn plain_writes(
    fd: &OwnedFd,
    pkts: &[&[u8]],
    stats: &mut TapStats,
    out: &mut BurstOutcome,
    last_err: &mut i32,
) {
    for p in pkts {
        let res = loop {
            // SAFETY: `p` is a valid slice for its length during the call.
            let r = unsafe { libc::write(fd.as_raw_fd(), p.as_ptr().cast(), p.len()) };
            if r < 0 {
                let e = errno();
                if e == libc::EINTR {
                    continue;
                }
                break -(e as i64);
            }
            break r as i64;
        };
        account(stats, out, last_err, res, p.len());
    }
}

impl Reinject for PlainWriter {
    fn write_burst(&mut self, pkts: &[&[u8]]) -> BurstOutcome {
        let mut out = BurstOutcome::default();
        plain_writes(
            &self.fd,
            pkts,
            &mut self.stats,
            &mut out,
            &mut self.last_err,
        );
        out
    }

    fn stats(&self) -> TapStats {
        self.stats
    }

    fn method(&self) -> Method {
        Method::Plain
    }
}

/// Batched writes through io_uring: one SQE per packet against the registered fd, one
/// `io_uring_enter` per burst (bursts larger than the ring are split).
///
/// On the kernel measured (6.18, see docs/performance.md, "TAP reinjection") this costs about as
/// much CPU per frame as one `write()` per frame: a TAP takes one frame per write, so io_uring
/// saves only the syscall entry/exit (~80 ns of a ~290 ns `write()`), and its own per-request
/// work (`io_submit_sqes`, `io_prep_write`, `io_write`, completion posting) costs nearly as much.
/// `cargo bench --bench tap` prints the breakdown. Variants measured there and not used here
/// (64-byte frames, CPU time per frame):
///
/// - `IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN` instead of `COOP_TASKRUN`: 1–2 % less, within
///   the noise of the paired runs, and it would tie the ring to the thread that created it (the
///   daemon builds its writers before handing them to the workers).
/// - `IOSQE_CQE_SKIP_SUCCESS`: `IOSQE_IO_DRAIN` cannot be mixed with it (the kernel refuses the
///   drain with `EOPNOTSUPP` once a ring has seen a skip), so the only way to know that every
///   write of the burst is done, and the borrowed buffers are free, is a hard-linked chain ending
///   in a NOP. The kernel issues each linked request after the previous one completes, through
///   task work: ~20 % more per frame. Without the chain (unsafe for borrowed buffers) it saves
///   nothing measurable.
/// - `IORING_SETUP_NO_SQARRAY`, `IORING_OP_WRITE_FIXED` (registered buffers): within noise.
/// - `IORING_SETUP_SQPOLL`: the submitting thread's CPU drops to 20–35 ns per frame, but the
///   polling kernel thread does all the rest; the CPU of both threads together is 0.94–0.99× of
///   `write()`'s at best, and far worse when the second core is busy.
pub struct UringWriter {
    ring: ManuallyDrop<IoUring>,
    fd: OwnedFd,
    fixed: bool,
    entries: usize,
    lens: Vec<u32>,
    stats: TapStats,
    last_err: i32,
    broken: bool,
    nowait: bool,
    /// The TAP refused `RWF_NOWAIT`: every write goes through `write()` now (see
    /// [`UringWriter::uses_nowait`]).
    plain: bool,
    retry: Vec<usize>,
}

/// `io_uring_enter` failures in a row (other than EINTR/EAGAIN/EBUSY) before giving up the ring.
const MAX_ENTER_FAILURES: u32 = 1000;

impl std::fmt::Debug for UringWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringWriter")
            .field("fd", &self.fd)
            .field("fixed", &self.fixed)
            .field("entries", &self.entries)
            .field("stats", &self.stats)
            .finish()
    }
}

impl UringWriter {
    /// A writer on `fd` with a ring sized for `max_burst` packets; fails (handing `fd` back) if
    /// io_uring is not usable: the probe submits one NOP and waits for it, which catches seccomp
    /// filters that allow `io_uring_setup` but refuse `io_uring_enter`.
    pub fn new(fd: OwnedFd, max_burst: usize) -> Result<UringWriter, (std::io::Error, OwnedFd)> {
        let entries = max_burst.clamp(1, 4096).next_power_of_two();
        let ring = match Self::setup(entries) {
            Ok(r) => r,
            Err(e) => return Err((e, fd)),
        };
        let fixed = ring.submitter().register_files(&[fd.as_raw_fd()]).is_ok();
        Ok(UringWriter {
            ring: ManuallyDrop::new(ring),
            fd,
            fixed,
            entries,
            lens: vec![0; entries],
            stats: TapStats::default(),
            last_err: 0,
            broken: false,
            nowait: true,
            plain: false,
            retry: Vec::with_capacity(entries),
        })
    }

    fn setup(entries: usize) -> std::io::Result<IoUring> {
        // COOP_TASKRUN: no IPI to run task work; completions are reaped in the same enter.
        // SINGLE_ISSUER | DEFER_TASKRUN measured the same (see the type's documentation).
        let ring = IoUring::builder()
            .setup_coop_taskrun()
            .build(entries as u32)
            .or_else(|_| IoUring::new(entries as u32))?;
        let nop = opcode::Nop::new().build().user_data(u64::MAX);
        // SAFETY: a NOP references no memory.
        unsafe { ring.submission_shared().push(&nop) }
            .map_err(|_| std::io::Error::other("io_uring submission queue full at start"))?;
        ring.submit_and_wait(1)?;
        // SAFETY: nothing else uses the completion queue of this fresh ring.
        let probe = unsafe { ring.completion_shared() }.next();
        if probe.is_none() {
            return Err(std::io::Error::other("io_uring NOP probe did not complete"));
        }
        Ok(ring)
    }

    /// Whether writes carry `RWF_NOWAIT` (a full TAP completes with `EAGAIN` at once). Turned
    /// off, with a warning, on kernels whose TAP refuses it; the writer then uses one
    /// non-blocking `write()` per packet (and [`Reinject::method`] says `Plain`), which still
    /// counts a full TAP as pushed back instead of waiting for room.
    pub fn uses_nowait(&self) -> bool {
        self.nowait
    }

    /// Whether the ring was given up after repeated `io_uring_enter` failures (writes then go
    /// through `write()`).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    fn chunk(&mut self, pkts: &[&[u8]], out: &mut BurstOutcome) {
        debug_assert!(pkts.len() <= self.entries);
        let raw: RawFd = self.fd.as_raw_fd();
        // RWF_NOWAIT: a full TAP completes with -EAGAIN (counted) instead of io_uring arming a
        // poll and waiting for room.
        let flags = if self.nowait { libc::RWF_NOWAIT } else { 0 };
        let mut n = 0usize;
        {
            let mut sq = self.ring.submission();
            for (i, p) in pkts.iter().enumerate() {
                let len = u32::try_from(p.len()).unwrap_or(u32::MAX);
                self.lens[i] = len;
                let e = if self.fixed {
                    opcode::Write::new(types::Fixed(0), p.as_ptr(), len)
                } else {
                    opcode::Write::new(types::Fd(raw), p.as_ptr(), len)
                };
                // offset -1: use the file position like write(2) (a TAP ignores it; pipes
                // refuse explicit offsets).
                let sqe = e
                    .offset(u64::MAX)
                    .rw_flags(flags)
                    .build()
                    .user_data(i as u64);
                // SAFETY: the buffer `p` stays borrowed until this function has reaped the
                // completion of this SQE (below), so the kernel reads valid memory.
                if unsafe { sq.push(&sqe) }.is_ok() {
                    n += 1;
                } else {
                    // Not expected: bursts are cut to the ring size and the SQ is empty here.
                    account(
                        &mut self.stats,
                        out,
                        &mut self.last_err,
                        -i64::from(libc::EOVERFLOW),
                        p.len(),
                    );
                }
            }
            sq.sync();
        }
        self.retry.clear();
        let mut done = 0usize;
        let mut failures = 0u32;
        while done < n {
            match self.ring.submit_and_wait(n - done) {
                Ok(_) => failures = 0,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY)
                    ) => {}
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        log::error!(
                            "io_uring_enter failed while writing to the TAP: {e}; retrying"
                        );
                    }
                    if failures >= MAX_ENTER_FAILURES {
                        // Writes already submitted may still read the packet buffers, so the
                        // ring is never torn down (leaked on drop); later bursts use write().
                        log::error!(
                            "io_uring keeps failing; {} packets counted as errors, switching to write()",
                            n - done
                        );
                        let lost = (n - done) as u32;
                        self.stats.errors += u64::from(lost);
                        out.errors += lost;
                        self.broken = true;
                        return;
                    }
                }
            }
            let mut cq = self.ring.completion();
            cq.sync();
            for cqe in &mut cq {
                let i = cqe.user_data() as usize;
                let Some(&len) = self.lens.get(i) else {
                    continue;
                };
                done += 1;
                if self.nowait && cqe.result() == -libc::EOPNOTSUPP {
                    self.retry.push(i);
                    continue;
                }
                account(
                    &mut self.stats,
                    out,
                    &mut self.last_err,
                    i64::from(cqe.result()),
                    len as usize,
                );
            }
        }
        if !self.retry.is_empty() {
            // Older kernels (Debian 12's 6.1, for one): the TAP does not take RWF_NOWAIT.
            // Without it io_uring would wait for room in a full TAP instead of reporting it, and
            // it is no faster than write() anyway (docs/performance.md), so this writer switches
            // to one non-blocking write() per packet, which counts a full TAP as pushed back.
            // Once per writer; the ring has nothing in flight.
            log::warn!(
                "the TAP does not accept RWF_NOWAIT writes (older kernel); TAP writes fall back \
                 to one write() per packet, so a full TAP is still counted as pushed back"
            );
            self.nowait = false;
            self.plain = true;
            let again: Vec<&[u8]> = self
                .retry
                .iter()
                .filter_map(|&i| pkts.get(i).copied())
                .collect();
            plain_writes(&self.fd, &again, &mut self.stats, out, &mut self.last_err);
        }
    }
}

impl Drop for UringWriter {
    fn drop(&mut self) {
        if !self.broken {
            // SAFETY: dropped once, here; every SQE of every burst has completed (write_burst
            // returns only then), so the kernel holds no pointer into packet buffers.
            unsafe { ManuallyDrop::drop(&mut self.ring) };
        }
    }
}

impl Reinject for UringWriter {
    fn write_burst(&mut self, pkts: &[&[u8]]) -> BurstOutcome {
        let mut out = BurstOutcome::default();
        if self.broken || self.plain {
            plain_writes(
                &self.fd,
                pkts,
                &mut self.stats,
                &mut out,
                &mut self.last_err,
            );
            return out;
        }
        for c in pkts.chunks(self.entries) {
            self.chunk(c, &mut out);
        }
        out
    }

    fn stats(&self) -> TapStats {
        self.stats
    }

    fn method(&self) -> Method {
        if self.broken || self.plain {
            Method::Plain
        } else {
            Method::Uring
        }
    }
}

static FALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);

/// A TAP writer: io_uring when available, else one `write()` per packet.
// One writer per worker, built once: the size difference does not matter and an unboxed ring
// keeps the hot path free of an indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum TapWriter {
    /// Batched.
    Uring(UringWriter),
    /// Per packet.
    Plain(PlainWriter),
}

impl TapWriter {
    /// io_uring with a ring for `max_burst` packets, falling back to `write()` (logged once per
    /// process) when io_uring cannot be set up.
    pub fn new(fd: OwnedFd, max_burst: usize) -> TapWriter {
        match UringWriter::new(fd, max_burst) {
            Ok(w) => TapWriter::Uring(w),
            Err((e, fd)) => {
                if !FALLBACK_LOGGED.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "io_uring unavailable ({e}); TAP writes fall back to one write() per packet"
                    );
                }
                TapWriter::Plain(PlainWriter::new(fd))
            }
        }
    }

    /// One `write()` per packet.
    pub fn plain(fd: OwnedFd) -> TapWriter {
        TapWriter::Plain(PlainWriter::new(fd))
    }
}

impl Reinject for TapWriter {
    fn write_burst(&mut self, pkts: &[&[u8]]) -> BurstOutcome {
        match self {
            TapWriter::Uring(w) => w.write_burst(pkts),
            TapWriter::Plain(w) => w.write_burst(pkts),
        }
    }

    fn stats(&self) -> TapStats {
        match self {
            TapWriter::Uring(w) => w.stats(),
            TapWriter::Plain(w) => w.stats(),
        }
    }

    fn method(&self) -> Method {
        match self {
            TapWriter::Uring(w) => w.method(),
            TapWriter::Plain(w) => w.method(),
        }
    }
}

/// Passed packets go to the TAP, one io_uring submission per burst. The slices point into the
/// packets' DMA buffers: the kernel's copy in the TAP write is the only copy.
///
/// With [`TapSink::completing_checksums`] (the AF_XDP backend), a frame whose UDP/TCP checksum
/// is partial (see [`crate::backend::csum`]) is copied into a scratch slot and completed there
/// first, since the sink only sees the packets; other frames go out unchanged.
pub struct TapSink {
    writer: TapWriter,
    /// `CSUM_SLOTS` slots of `CSUM_SLOT` bytes, when checksums are completed.
    scratch: Option<Box<[u8]>>,
}

/// Frames per write burst when checksums are completed (one scratch slot each).
const CSUM_SLOTS: usize = 64;
/// Bytes per scratch slot: the largest AF_XDP frame (a 4096-byte chunk) fits.
const CSUM_SLOT: usize = 4096;

impl TapSink {
    /// Wraps a TAP writer.
    pub fn new(writer: TapWriter) -> TapSink {
        TapSink {
            writer,
            scratch: None,
        }
    }

    /// Wraps a TAP writer; frames with a partial UDP/TCP checksum are completed before the
    /// write (virtual devices such as veth deliver them so; the kernel would drop them).
    pub fn completing_checksums(writer: TapWriter) -> TapSink {
        TapSink {
            writer,
            scratch: Some(vec![0u8; CSUM_SLOTS * CSUM_SLOT].into_boxed_slice()),
        }
    }

    fn submit_completing(&mut self, packets: &[Packet]) -> usize {
        let Some(scratch) = self.scratch.as_mut() else {
            return 0;
        };
        let mut written = 0usize;
        let mut fixed = [false; CSUM_SLOTS];
        for chunk in packets.chunks(CSUM_SLOTS) {
            for ((p, slot), fix) in chunk
                .iter()
                .zip(scratch.chunks_exact_mut(CSUM_SLOT))
                .zip(fixed.iter_mut())
            {
                let d = p.data();
                *fix = d.len() <= CSUM_SLOT && crate::backend::csum::needs_completion(d);
                if *fix {
                    slot[..d.len()].copy_from_slice(d);
                    crate::backend::csum::complete(&mut slot[..d.len()]);
                }
            }
            let mut slices: [&[u8]; CSUM_SLOTS] = [&[]; CSUM_SLOTS];
            for (i, (s, p)) in slices.iter_mut().zip(chunk).enumerate() {
                *s = if fixed[i] {
                    &scratch[i * CSUM_SLOT..i * CSUM_SLOT + p.len()]
                } else {
                    p.data()
                };
            }
            let o = self.writer.write_burst(&slices[..chunk.len()]);
            written += o.written as usize;
        }
        written
    }
}

impl PassSink for TapSink {
    fn submit(&mut self, packets: &[Packet]) -> usize {
        if self.scratch.is_some() {
            return self.submit_completing(packets);
        }
        let mut slices: [&[u8]; MAX_BATCH] = [&[]; MAX_BATCH];
        let mut written = 0usize;
        for chunk in packets.chunks(MAX_BATCH) {
            for (s, p) in slices.iter_mut().zip(chunk) {
                *s = p.data();
            }
            let o = self.writer.write_burst(&slices[..chunk.len()]);
            written += o.written as usize;
        }
        written
    }
}
