//! TAP reinjection: bursts written through io_uring and through write() arrive on a real TAP (in
//! a network namespace of its own), and a TAP-like fd that pushes back has every refused packet
//! counted.
//!
//! The TAP tests need root and /dev/net/tun; without them they print one `skipped:` line.
//! `FLOODGATE_TEST_TIMEOUT_MS` (default 2000) bounds how long a test waits for frames to show up.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use floodgate::tap::{Method, PlainWriter, Reinject, Tap, TapError, TapWriter, UringWriter};

const ETHERTYPE: u16 = 0x88b5; // IEEE local experimental: the stack ignores it
const MARK: &[u8; 9] = b"FLOODGATE";

fn timeout() -> Duration {
    let ms = std::env::var("FLOODGATE_TEST_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    Duration::from_millis(ms)
}

fn frame(seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(60)];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
    f[14..23].copy_from_slice(MARK);
    f[23..27].copy_from_slice(&seq.to_be_bytes());
    f
}

fn skip_reason() -> Option<String> {
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        return Some("TAP tests need root (CAP_NET_ADMIN)".into());
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing".into());
    }
    None
}

/// Runs `f` on a thread that has its own network namespace (namespaces are per thread).
fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    std::thread::spawn(move || {
        // SAFETY: unshare only affects this thread, which owns nothing namespace-bound yet.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(format!(
                "unshare(CLONE_NEWNET): {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(f())
    })
    .join()
    .map_err(|_| "test thread panicked".to_string())?
}

/// An AF_PACKET socket on `ifindex` that sees every frame the interface receives.
fn packet_socket(ifindex: u32) -> OwnedFd {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2), checked.
    let s = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            i32::from(proto),
        )
    };
    assert!(
        s >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: fresh fd.
    let s = unsafe { OwnedFd::from_raw_fd(s) };
    // SAFETY: sockaddr_ll is plain data.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: valid sockaddr_ll of the given size.
    let rc = unsafe {
        libc::bind(
            s.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
    let big: libc::c_int = 8 << 20;
    // SAFETY: valid option pointer and size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&big as *const libc::c_int).cast(),
            4,
        )
    };
    s
}

/// Reads frames until `want` marked frames arrived or the timeout passed; returns their sequence
/// numbers.
fn collect(sock: &OwnedFd, want: usize) -> Vec<u32> {
    let mut seqs = Vec::new();
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + timeout();
    while seqs.len() < want && Instant::now() < deadline {
        // SAFETY: sockaddr_ll is plain data.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut flen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        // SAFETY: valid buffer and address pointers with their sizes.
        let n = unsafe {
            libc::recvfrom(
                sock.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut from as *mut libc::sockaddr_ll).cast(),
                &mut flen,
            )
        };
        if n < 0 {
            let mut pfd = libc::pollfd {
                fd: sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, 20) };
            continue;
        }
        let f = &buf[..n as usize];
        if from.sll_pkttype != libc::PACKET_OUTGOING
            && f.len() >= 27
            && f[12..14] == ETHERTYPE.to_be_bytes()
            && &f[14..23] == MARK
        {
            seqs.push(u32::from_be_bytes([f[23], f[24], f[25], f[26]]));
        }
    }
    seqs
}

fn ifindex(name: &str) -> u32 {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C string.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

/// An up TAP called `name`, an AF_PACKET socket capturing on it, and a writer of `method` (an
/// io_uring ring for `ring` packets).
fn tap_and_writer(name: &str, method: Method, ring: usize) -> Result<(OwnedFd, TapWriter), String> {
    let tap = Tap::open(name).map_err(|e| e.to_string())?;
    tap.set_up().map_err(|e| e.to_string())?;
    let sock = packet_socket(ifindex(tap.name()));
    let w = match method {
        Method::Uring => {
            TapWriter::Uring(UringWriter::new(tap.into_fd(), ring).map_err(|(e, _)| e.to_string())?)
        }
        Method::Plain => TapWriter::plain(tap.into_fd()),
    };
    Ok((sock, w))
}

/// Runs `f` in a fresh network namespace, or prints why it is skipped.
fn netns_test(f: impl FnOnce() -> Result<(), String> + Send + 'static) {
    if let Some(r) = skip_reason() {
        println!("skipped: {r}");
        return;
    }
    in_netns(f).and_then(|r| r).unwrap();
}

fn roundtrip(method: Method) -> Result<(), String> {
    let (sock, mut w) = tap_and_writer("fgtap0", method, 32)?;
    assert_eq!(w.method(), method);
    // 5 bursts of 32, plus a burst larger than the ring (split internally), various sizes.
    let frames: Vec<Vec<u8>> = (0..200u32)
        .map(|i| frame(i, 60 + (i as usize * 7) % 1400))
        .collect();
    let refs: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
    let mut total = 0u32;
    for chunk in refs[..160].chunks(32) {
        let out = w.write_burst(chunk);
        assert_eq!(
            out.written + out.pushed_back + out.errors,
            chunk.len() as u32
        );
        total += out.written;
    }
    let out = w.write_burst(&refs[160..]);
    total += out.written;
    if let TapWriter::Uring(u) = &w {
        println!("io_uring writes with RWF_NOWAIT: {}", u.uses_nowait());
    }
    let st = w.stats();
    assert_eq!(st.written + st.pushed_back + st.errors, 200);
    assert_eq!(st.errors, 0, "{st:?}");
    assert_eq!(st.written, u64::from(total));
    let expected_bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
    if st.pushed_back == 0 {
        assert_eq!(st.bytes, expected_bytes);
    }
    let mut seqs = collect(&sock, total as usize);
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(
        seqs.len(),
        total as usize,
        "{method:?}: the TAP delivered {} of {} written frames",
        seqs.len(),
        total
    );
    Ok(())
}

#[test]
fn tap_bursts_arrive_uring() {
    netns_test(|| roundtrip(Method::Uring));
}

#[test]
fn tap_bursts_arrive_plain() {
    netns_test(|| roundtrip(Method::Plain));
}

#[test]
fn tap_open_errors_in_plain_words() {
    match Tap::open("has space") {
        Err(TapError::BadName(n)) => assert_eq!(n, "has space"),
        other => panic!("expected BadName, got {other:?}"),
    }
    assert!(matches!(
        Tap::open("a-name-longer-than-15"),
        Err(TapError::BadName(_))
    ));
    if let Some(r) = skip_reason() {
        println!("skipped (root part): {r}");
        return;
    }
    let msg = in_netns(|| Tap::open("lo").map(|_| ()).unwrap_err().to_string()).unwrap();
    assert!(msg.contains("exists and is not a TAP"), "{msg}");
}

/// A non-blocking pipe with one page of room stands in for a TAP that pushes back.
fn tiny_pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: valid array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh fds.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on our own fds.
    unsafe {
        libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, 4096);
        libc::fcntl(w.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK);
        libc::fcntl(r.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK);
    }
    (r, w)
}

fn drain(r: &OwnedFd) -> usize {
    let mut total = 0;
    let mut buf = [0u8; 65536];
    loop {
        // SAFETY: valid buffer.
        let n = unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return total;
        }
        total += n as usize;
    }
}

fn pushback(mut w: impl Reinject, r: &OwnedFd) {
    let pkt = [0x5au8; 100];
    let burst: Vec<&[u8]> = (0..100).map(|_| &pkt[..]).collect();
    let out = w.write_burst(&burst);
    assert_eq!(out.written + out.pushed_back + out.errors, 100, "{out:?}");
    assert_eq!(out.errors, 0, "{out:?}");
    assert!(
        out.pushed_back > 0,
        "a 4 KiB pipe cannot take 10 KB: {out:?}"
    );
    assert!(out.written > 0, "{out:?}");
    // What was counted as written is exactly what the reader gets: nothing lost silently.
    assert_eq!(drain(r), out.written as usize * 100);
    // Room again: the next burst goes through whole.
    let out2 = w.write_burst(&burst[..10]);
    assert_eq!(out2.written, 10, "{out2:?}");
    assert_eq!(drain(r), 1000);
    let st = w.stats();
    assert_eq!(st.written, u64::from(out.written) + 10);
    assert_eq!(st.pushed_back, u64::from(out.pushed_back));
}

#[test]
fn pushback_is_counted_uring() {
    let (r, w) = tiny_pipe();
    match UringWriter::new(w, 128) {
        Ok(u) => pushback(u, &r),
        Err((e, _)) => println!("skipped: io_uring unavailable here ({e})"),
    }
}

#[test]
fn pushback_is_counted_plain() {
    let (r, w) = tiny_pipe();
    pushback(PlainWriter::new(w), &r);
}

#[test]
fn errors_are_counted_not_lost() {
    // A read-only fd: every write fails with EBADF, and each packet lands in `errors`.
    let ro = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
    let mut w = TapWriter::new(ro, 8);
    let pkt = [1u8; 64];
    let out = w.write_burst(&[&pkt[..]; 20]);
    assert_eq!(out.errors, 20, "{out:?}");
    assert_eq!(w.stats().errors, 20);
    assert_eq!(w.stats().written, 0);
}

/// A burst in which some frames are refused by the TAP itself (shorter than an Ethernet header:
/// `EINVAL`) and the others are fine: each refused frame is counted once in `errors`, each other
/// one in `written` (or `pushed_back`), across the chunks a burst larger than the ring is cut
/// into, and exactly the frames counted as written arrive.
fn mixed_burst(method: Method) -> Result<(), String> {
    // A ring of 16 entries: the burst of 40 below goes in three submissions.
    let (sock, mut w) = tap_and_writer("fgmix0", method, 16)?;
    let frames: Vec<Vec<u8>> = (0..40u32)
        .map(|i| {
            if i % 4 == 3 {
                vec![0xee; 10]
            } else {
                frame(i, 64)
            }
        })
        .collect();
    let refs: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
    let out = w.write_burst(&refs);
    assert_eq!(out.errors, 10, "{method:?}: {out:?}");
    assert_eq!(out.written + out.pushed_back, 30, "{method:?}: {out:?}");
    let st = w.stats();
    assert_eq!(st.errors, 10);
    assert_eq!(st.written, u64::from(out.written));
    assert_eq!(st.pushed_back, u64::from(out.pushed_back));
    assert_eq!(st.bytes, u64::from(out.written) * 64);
    // The same writer keeps working after the failures.
    let more: Vec<Vec<u8>> = (100..103u32).map(|i| frame(i, 64)).collect();
    let more: Vec<&[u8]> = more.iter().map(|f| &f[..]).collect();
    let out2 = w.write_burst(&more);
    assert_eq!(out2.errors, 0, "{method:?}: {out2:?}");
    let total = out.written + out2.written;
    let mut seqs = collect(&sock, total as usize);
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(
        seqs.len(),
        total as usize,
        "{method:?}: {} frames arrived, {total} counted as written",
        seqs.len()
    );
    assert!(
        seqs.iter().all(|s| s % 4 != 3 || *s >= 100),
        "a refused frame arrived: {seqs:?}"
    );
    Ok(())
}

#[test]
fn mixed_burst_accounts_exactly_uring() {
    netns_test(|| mixed_burst(Method::Uring));
}

#[test]
fn mixed_burst_accounts_exactly_plain() {
    netns_test(|| mixed_burst(Method::Plain));
}

/// Opens a pseudo-terminal in raw mode; returns (master, slave), both non-blocking, or why not.
fn raw_pty() -> Result<(OwnedFd, OwnedFd), String> {
    let err = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
    // SAFETY: plain libc calls on descriptors this function owns; results are checked.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if m < 0 {
            return Err(err("posix_openpt"));
        }
        let master = OwnedFd::from_raw_fd(m);
        if libc::grantpt(m) != 0 || libc::unlockpt(m) != 0 {
            return Err(err("grantpt/unlockpt"));
        }
        let mut name = [0 as libc::c_char; 64];
        if libc::ptsname_r(m, name.as_mut_ptr(), name.len()) != 0 {
            return Err(err("ptsname_r"));
        }
        let s = libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        );
        if s < 0 {
            return Err(err("open pty slave"));
        }
        let slave = OwnedFd::from_raw_fd(s);
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(s, &mut t) != 0 {
            return Err(err("tcgetattr"));
        }
        libc::cfmakeraw(&mut t);
        if libc::tcsetattr(s, libc::TCSANOW, &t) != 0 {
            return Err(err("tcsetattr"));
        }
        libc::fcntl(m, libc::F_SETFL, libc::O_NONBLOCK);
        Ok((master, slave))
    }
}

/// Reads from `fd` until `want` bytes arrived or the timeout passed.
fn read_until(fd: &OwnedFd, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + timeout();
    while got.len() < want && Instant::now() < deadline {
        // SAFETY: valid buffer.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            got.extend_from_slice(&buf[..n as usize]);
        } else {
            let mut pfd = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, 20) };
        }
    }
    got
}

/// A file that refuses `RWF_NOWAIT` (a pty does, with `EOPNOTSUPP`): the io_uring writer retries
/// the refused writes without the flag, turns it off for good, and every packet is written and
/// counted once.
#[test]
fn nowait_refused_falls_back_and_counts_once() {
    let (master, slave) = match raw_pty() {
        Ok(p) => p,
        Err(e) => {
            println!("skipped: no pseudo-terminal here ({e})");
            return;
        }
    };
    let mut w = match UringWriter::new(slave, 8) {
        Ok(w) => w,
        Err((e, _)) => {
            println!("skipped: io_uring unavailable here ({e})");
            return;
        }
    };
    assert!(w.uses_nowait());
    let pkts: Vec<[u8; 50]> = (0..6u8).map(|i| [i; 50]).collect();
    let refs: Vec<&[u8]> = pkts.iter().map(|p| &p[..]).collect();
    let out = w.write_burst(&refs);
    if w.uses_nowait() {
        // A kernel whose ttys take RWF_NOWAIT: nothing to fall back from.
        println!("skipped: this kernel's pty accepts RWF_NOWAIT");
        return;
    }
    assert_eq!(out.written, 6, "{out:?}");
    assert_eq!(out.pushed_back + out.errors, 0, "{out:?}");
    // Without RWF_NOWAIT io_uring would wait for room instead of reporting a full TAP: the
    // writer uses one non-blocking write() per packet from now on.
    assert_eq!(w.method(), floodgate::tap::Method::Plain);
    let out2 = w.write_burst(&refs[..2]);
    assert_eq!(out2.written, 2, "{out2:?}");
    let st = w.stats();
    assert_eq!((st.written, st.pushed_back, st.errors), (8, 0, 0));
    assert_eq!(st.bytes, 400);
    let mut want: Vec<u8> = pkts.iter().flatten().copied().collect();
    want.extend_from_slice(&[0; 50]);
    want.extend_from_slice(&[1; 50]);
    assert_eq!(read_until(&master, 400), want);
}
