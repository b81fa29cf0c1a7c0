//! The connection to a vfio-user server: message framing over the Unix socket, replies
//! matched to requests by message ID, timeouts that fail one request without breaking the
//! stream, EINTR retries, and the small register accesses the BAR handles make.

use std::io::{Read, Write};
use std::os::fd::RawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use vmm_sys_util::sock_ctrl_msg::ScmSocket;

use super::proto::{self, Command, Header, HEADER_SIZE, MAX_MESSAGE};
use crate::Error;

struct Stream {
    sock: UnixStream,
    next_id: u16,
    /// Requests whose reply timed out before its first byte: their replies may still come and
    /// are skipped (by message ID) before the reply of the next request.
    abandoned: Vec<u16>,
}

/// How many timed-out requests may still owe a reply before the connection is given up.
const MAX_ABANDONED: usize = 16;

/// How often a timed-out register read is sent again before it reads all-ones.
const READ_RETRIES: u32 = 3;

/// A failed exchange.
enum CallError {
    /// The server answered with an error reply; the connection is fine.
    Refused(Error),
    /// No reply (or nothing could be sent) within the timeout, and the stream is still in step:
    /// the request failed, the connection stays usable.
    TimedOut(Error),
    /// The connection is gone or out of step.
    Broken(Error),
}

/// Retries `f` while it fails with EINTR (a signal arrived during a blocking call).
fn retry_eintr<T>(mut f: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// The socket, shared by the device and its BAR handles.
pub(super) struct Conn {
    stream: Mutex<Stream>,
    broken: AtomicBool,
    /// Requests that got no reply within the timeout (the connection survived them).
    timeouts: AtomicU64,
    location: String,
}

pub(super) fn proto_err(location: &str, what: impl std::fmt::Display) -> Error {
    Error::Device(format!("vfio-user {location}: {what}"))
}

impl Conn {
    /// A connection over `sock` (its timeouts already set), named `location` in errors.
    pub(super) fn new(sock: UnixStream, location: String) -> Conn {
        Conn {
            stream: Mutex::new(Stream {
                sock,
                next_id: 0,
                abandoned: Vec::new(),
            }),
            broken: AtomicBool::new(false),
            timeouts: AtomicU64::new(0),
            location,
        }
    }

    /// Where the server is (`vfio-user:PATH`), for errors and debug output.
    pub(super) fn location(&self) -> &str {
        &self.location
    }

    /// Marks the connection broken and shuts the socket down: later accesses fail at once.
    pub(super) fn hang_up(&self) {
        self.broken.store(true, Ordering::Release);
        let s = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        let _ = s.sock.shutdown(std::net::Shutdown::Both);
    }

    /// Whether the connection is gone or out of step.
    pub(super) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// Requests that got no reply in time (the connection survived them).
    pub(super) fn timeouts(&self) -> u64 {
        self.timeouts.load(Ordering::Relaxed)
    }

    pub(super) fn err(&self, what: impl std::fmt::Display) -> Error {
        proto_err(&self.location, what)
    }

    /// Sends one command (header + `parts`, `fds` attached), waits for its reply and copies
    /// the reply body into `into` (a longer body is cut to it); returns the body length kept.
    ///
    /// A refused request (error reply) or a request whose reply did not come in time is an
    /// error and leaves the connection usable; any other failure marks the connection broken.
    pub(super) fn call(
        &self,
        cmd: Command,
        parts: &[&[u8]],
        fds: &[RawFd],
        into: &mut [u8],
    ) -> Result<usize, Error> {
        self.call_inner(cmd, parts, fds, into).map_err(|e| match e {
            CallError::Refused(e) | CallError::TimedOut(e) | CallError::Broken(e) => e,
        })
    }

    fn call_inner(
        &self,
        cmd: Command,
        parts: &[&[u8]],
        fds: &[RawFd],
        into: &mut [u8],
    ) -> Result<usize, CallError> {
        if self.broken.load(Ordering::Acquire) {
            return Err(CallError::Broken(self.err("connection already failed")));
        }
        let mut s = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        match self.call_locked(&mut s, cmd, parts, fds, into) {
            Ok(n) => Ok(n),
            Err(CallError::TimedOut(e)) => {
                let n = self.timeouts.fetch_add(1, Ordering::Relaxed) + 1;
                if s.abandoned.len() > MAX_ABANDONED {
                    // The server has stopped answering altogether.
                    self.broken.store(true, Ordering::Release);
                    log::warn!(
                        "{e}; {} requests without a reply: the device is now treated as removed",
                        s.abandoned.len()
                    );
                    return Err(CallError::Broken(e));
                }
                log::warn!(
                    "{e} (timeout {n} on this connection; the request failed, the device stays)"
                );
                Err(CallError::TimedOut(e))
            }
            Err(CallError::Broken(e)) => {
                // The stream may be out of step now: nothing after this can be trusted.
                self.broken.store(true, Ordering::Release);
                log::warn!("{e}; the device is now treated as removed");
                Err(CallError::Broken(e))
            }
            Err(refused) => Err(refused),
        }
    }

    /// Turns a socket error into a call error: a peer that hung up, or any error once part of
    /// a message went through, breaks the connection.
    fn io_err(&self, what: std::fmt::Arguments<'_>, e: std::io::Error) -> CallError {
        CallError::Broken(self.err(format_args!("{what}: {e}")))
    }

    /// The exchange itself.
    fn call_locked(
        &self,
        s: &mut Stream,
        cmd: Command,
        parts: &[&[u8]],
        fds: &[RawFd],
        into: &mut [u8],
    ) -> Result<usize, CallError> {
        let body: usize = parts.iter().map(|p| p.len()).sum();
        let id = s.next_id;
        s.next_id = s.next_id.wrapping_add(1);
        let hdr = Header {
            message_id: id,
            command: cmd as u16,
            message_size: (HEADER_SIZE + body) as u32,
            flags: 0,
            error: 0,
        }
        .to_bytes();
        let mut iov: [&[u8]; 4] = [&hdr, &[], &[], &[]];
        if parts.len() > 3 {
            // Nothing was sent: the connection is still in step.
            return Err(CallError::Refused(
                self.err("internal: too many message parts"),
            ));
        }
        for (slot, p) in iov[1..].iter_mut().zip(parts) {
            *slot = p;
        }
        let n = 1 + parts.len();
        let total = HEADER_SIZE + body;
        let sent = match retry_eintr(|| {
            s.sock
                .send_with_fds(&iov[..n], fds)
                .map_err(std::io::Error::from)
        }) {
            Ok(sent) => sent,
            // Nothing went out: the request failed, the stream is still in step.
            Err(e) if is_timeout(&e) => {
                return Err(CallError::TimedOut(self.err(format_args!(
                    "sending {cmd:?}: the server takes no data (timeout)"
                ))))
            }
            Err(e) => return Err(self.io_err(format_args!("sending {cmd:?}"), e)),
        };
        if sent < total {
            // A short sendmsg on a stream: the fds went with the first byte; send the rest
            // (`write_all` retries on EINTR).
            let mut skip = sent;
            for p in &iov[..n] {
                if skip >= p.len() {
                    skip -= p.len();
                    continue;
                }
                s.sock
                    .write_all(&p[skip..])
                    .map_err(|e| self.io_err(format_args!("sending {cmd:?}"), e))?;
                skip = 0;
            }
        }
        loop {
            // Reply header; the server may attach fds (a mappable region), which we close.
            let mut h = [0u8; HEADER_SIZE];
            let got = match retry_eintr(|| proto::recv_closing_fds(&s.sock, &mut h)) {
                Ok(r) => r,
                Err(e) if is_timeout(&e) => {
                    // Not a byte of the reply yet: it may still come; skip it then.
                    s.abandoned.push(id);
                    return Err(CallError::TimedOut(
                        self.err(format_args!("no {cmd:?} reply within the timeout")),
                    ));
                }
                Err(e) => return Err(self.io_err(format_args!("waiting for the {cmd:?} reply"), e)),
            };
            if got == 0 {
                return Err(CallError::Broken(
                    self.err(format_args!("server closed the connection during {cmd:?}")),
                ));
            }
            // `read_exact` retries on EINTR; a timeout here leaves the stream mid-message.
            s.sock
                .read_exact(&mut h[got..])
                .map_err(|e| self.io_err(format_args!("reading the {cmd:?} reply"), e))?;
            let reply = Header::from_bytes(&h);
            let size = reply.message_size as usize;
            if !(HEADER_SIZE..=MAX_MESSAGE).contains(&size) {
                return Err(CallError::Broken(
                    self.err(format_args!("{cmd:?} reply claims {size} bytes")),
                ));
            }
            let rest = size - HEADER_SIZE;
            if reply.message_id != id {
                if let Some(i) = s.abandoned.iter().position(|&a| a == reply.message_id) {
                    // The late reply of a request that timed out: skip it.
                    s.abandoned.remove(i);
                    let mut sink = (&mut s.sock).take(rest as u64);
                    std::io::copy(&mut sink, &mut std::io::sink()).map_err(|e| {
                        self.io_err(format_args!("skipping a late reply before {cmd:?}"), e)
                    })?;
                    log::debug!(
                        "{}: skipped the late reply to request {}",
                        self.location,
                        reply.message_id
                    );
                    continue;
                }
            }
            let body_len = if rest <= into.len() {
                s.sock
                    .read_exact(&mut into[..rest])
                    .map_err(|e| self.io_err(format_args!("reading the {cmd:?} reply"), e))?;
                rest
            } else {
                // Larger than the caller expects (e.g. capabilities): read what fits, skip the rest.
                let keep = into.len();
                s.sock
                    .read_exact(into)
                    .map_err(|e| self.io_err(format_args!("reading the {cmd:?} reply"), e))?;
                let mut sink = (&mut s.sock).take((rest - keep) as u64);
                std::io::copy(&mut sink, &mut std::io::sink())
                    .map_err(|e| self.io_err(format_args!("reading the {cmd:?} reply"), e))?;
                keep
            };
            if reply.message_id != id || reply.command != cmd as u16 {
                return Err(CallError::Broken(self.err(format_args!(
                    "reply out of step: sent {cmd:?} id {id}, got command {} id {}",
                    reply.command, reply.message_id
                ))));
            }
            if reply.flags & proto::FLAG_TYPE_MASK != proto::FLAG_REPLY {
                return Err(CallError::Broken(
                    self.err(format_args!("{cmd:?}: answer is not a reply")),
                ));
            }
            if reply.flags & proto::FLAG_ERROR != 0 {
                return Err(CallError::Refused(self.err(format_args!(
                    "server refused {cmd:?}: {}",
                    if reply.error == 0 {
                        "no errno given".to_string()
                    } else {
                        std::io::Error::from_raw_os_error(reply.error as i32).to_string()
                    }
                ))));
            }
            return Ok(body_len);
        }
    }

    /// Checks that a REGION_READ/REGION_WRITE reply body (`n` bytes kept in `reply`) starts
    /// with the region, offset and count of the request, as the protocol says it echoes them:
    /// a reply for another access must not pass for this one.
    fn check_echo(
        &self,
        cmd: Command,
        reply: &[u8],
        n: usize,
        region: u32,
        offset: u64,
        count: usize,
    ) -> Result<(), Error> {
        let got = (
            proto::u32_at(reply, 8),
            proto::u64_at(reply, 0),
            proto::u32_at(reply, 12),
        );
        if n < 16 || got != (region, offset, count as u32) {
            return Err(self.err(format_args!(
                "{cmd:?} of region {region} offset {offset:#x} count {count} answered for \
                 region {} offset {:#x} count {} ({n} bytes)",
                got.0, got.1, got.2
            )));
        }
        Ok(())
    }

    /// REGION_READ of up to 8 bytes into `out` (no allocation). A read whose reply timed out
    /// is sent again (reads have no side effect on the registers read this way), up to
    /// [`READ_RETRIES`] times.
    pub(super) fn region_read_small(
        &self,
        region: u32,
        offset: u64,
        out: &mut [u8],
    ) -> Result<(), Error> {
        let req = proto::region_access(region, offset, out.len() as u32);
        let mut reply = [0u8; 16 + 8];
        let mut tries = 0;
        let n = loop {
            match self.call_inner(Command::RegionRead, &[&req], &[], &mut reply) {
                Ok(n) => break n,
                Err(CallError::TimedOut(e)) => {
                    tries += 1;
                    if tries > READ_RETRIES {
                        return Err(e);
                    }
                }
                Err(CallError::Refused(e) | CallError::Broken(e)) => return Err(e),
            }
        };
        if n != 16 + out.len() {
            return Err(self.err(format_args!(
                "REGION_READ of {} bytes answered with {n} bytes",
                out.len()
            )));
        }
        self.check_echo(Command::RegionRead, &reply, n, region, offset, out.len())?;
        out.copy_from_slice(&reply[16..n]);
        Ok(())
    }

    pub(super) fn region_write(&self, region: u32, offset: u64, data: &[u8]) -> Result<(), Error> {
        let req = proto::region_access(region, offset, data.len() as u32);
        let mut reply = [0u8; 16];
        let n = self.call(Command::RegionWrite, &[&req, data], &[], &mut reply)?;
        self.check_echo(Command::RegionWrite, &reply, n, region, offset, data.len())
    }
}

#[cfg(test)]
mod tests {
    //! The socket paths of [`Conn`] against a scripted peer on a socket pair: a late reply is a
    //! counted timeout (not a removal) and is skipped when it comes; a signal during a wait is
    //! retried; a peer that hangs up breaks the connection.

    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn conn(sock: UnixStream, timeout: Duration) -> Conn {
        sock.set_read_timeout(Some(timeout)).unwrap();
        sock.set_write_timeout(Some(timeout)).unwrap();
        Conn::new(sock, "test".into())
    }

    /// Reads one request; returns its header.
    fn read_request(s: &mut UnixStream) -> Option<Req> {
        let mut h = [0u8; HEADER_SIZE];
        s.read_exact(&mut h).ok()?;
        let hdr = Header::from_bytes(&h);
        let mut body = vec![0u8; hdr.message_size as usize - HEADER_SIZE];
        s.read_exact(&mut body).ok()?;
        Some(Req { hdr, body })
    }

    /// A request as the fake server read it.
    struct Req {
        hdr: Header,
        body: Vec<u8>,
    }

    /// Answers `req` with a reply carrying `body`; a region access's reply starts with the
    /// request's region, offset and count, as the protocol echoes them (written over the first
    /// 16 bytes of `body`).
    fn reply(s: &mut UnixStream, req: &Req, body: &[u8]) {
        let mut body = body.to_vec();
        if body.len() >= 16 && req.body.len() >= 16 {
            body[..16].copy_from_slice(&req.body[..16]);
        }
        let h = Header {
            message_id: req.hdr.message_id,
            command: req.hdr.command,
            message_size: (HEADER_SIZE + body.len()) as u32,
            flags: proto::FLAG_REPLY,
            error: 0,
        }
        .to_bytes();
        s.write_all(&h).unwrap();
        s.write_all(&body).unwrap();
    }

    /// A REGION_READ reply of 4 bytes holding `v`.
    fn read_reply(v: u32) -> Vec<u8> {
        let mut b = vec![0u8; 16];
        b.extend_from_slice(&v.to_le_bytes());
        b
    }

    #[test]
    fn a_late_reply_is_a_counted_timeout_and_is_skipped_when_it_comes() {
        let (client, mut server) = UnixStream::pair().unwrap();
        let c = conn(client, Duration::from_millis(150));
        let peer = std::thread::spawn(move || {
            // Request 0 (a write): answered only after the client gave up on it.
            let w = read_request(&mut server).unwrap();
            std::thread::sleep(Duration::from_millis(250));
            reply(&mut server, &w, &[0u8; 16]);
            // Then every request (reads) at once, until the client hangs up.
            let mut answered = 0;
            while let Some(r) = read_request(&mut server) {
                reply(&mut server, &r, &read_reply(0x1234_5678));
                answered += 1;
            }
            answered
        });
        let e = c.region_write(0, 0x10, &7u32.to_le_bytes()).unwrap_err();
        assert!(e.to_string().contains("within the timeout"), "{e}");
        assert_eq!(c.timeouts(), 1);
        assert!(
            !c.broken.load(Ordering::Acquire),
            "a timeout is not a removal"
        );
        let mut b = [0u8; 4];
        // The first try may time out too (the peer may still be asleep): the read is then sent
        // again; the late replies are skipped by their message IDs.
        c.region_read_small(0, 0x20, &mut b).unwrap();
        assert_eq!(u32::from_le_bytes(b), 0x1234_5678);
        assert!(!c.broken.load(Ordering::Acquire));
        let retries = c.timeouts() - 1;
        assert!(retries <= u64::from(READ_RETRIES), "{retries}");
        assert!(c.stream.lock().unwrap().abandoned.is_empty());
        // Later requests are in step again.
        c.region_read_small(0, 0x24, &mut b).unwrap();
        assert_eq!(c.timeouts(), 1 + retries);
        drop(c);
        assert_eq!(peer.join().unwrap() as u64, retries + 2);
    }

    extern "C" fn noop(_: libc::c_int) {}

    #[test]
    fn a_signal_during_the_wait_for_a_reply_is_retried() {
        // A handler with SA_RESTART, as signal-hook installs them: with a receive timeout set,
        // Linux still fails `recvmsg` with EINTR.
        // SAFETY: installs a handler that does nothing for SIGUSR2, which nothing else in this
        // test binary uses; the sigaction struct is fully initialised.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = noop as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut()), 0);
        }
        let (client, mut server) = UnixStream::pair().unwrap();
        let c = Arc::new(conn(client, Duration::from_secs(5)));
        let (tid_tx, tid_rx) = mpsc_pair();
        let c2 = c.clone();
        let caller = std::thread::spawn(move || {
            // SAFETY: pthread_self has no preconditions.
            tid_tx.send(unsafe { libc::pthread_self() }).unwrap();
            let mut b = [0u8; 4];
            let r = c2.region_read_small(0, 0x20, &mut b);
            (r.map(|_| u32::from_le_bytes(b)), c2.timeouts())
        });
        let tid = tid_rx.recv().unwrap();
        let req = read_request(&mut server).unwrap();
        // The caller is now (or soon) blocked waiting for the reply: interrupt it a few times.
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(300) {
            // SAFETY: `tid` is the caller thread, alive until it gets its reply below.
            unsafe { libc::pthread_kill(tid, libc::SIGUSR2) };
            std::thread::sleep(Duration::from_millis(20));
        }
        reply(&mut server, &req, &read_reply(0xabcd));
        let (r, timeouts) = caller.join().unwrap();
        assert_eq!(r.unwrap(), 0xabcd);
        assert_eq!(timeouts, 0);
        assert!(!c.broken.load(Ordering::Acquire));
    }

    fn mpsc_pair() -> (
        std::sync::mpsc::Sender<libc::pthread_t>,
        std::sync::mpsc::Receiver<libc::pthread_t>,
    ) {
        std::sync::mpsc::channel()
    }

    #[test]
    fn a_peer_that_hangs_up_breaks_the_connection() {
        let (client, mut server) = UnixStream::pair().unwrap();
        let c = conn(client, Duration::from_secs(5));
        let peer = std::thread::spawn(move || {
            read_request(&mut server).unwrap();
            drop(server);
        });
        let e = c.region_write(0, 0, &[0; 4]).unwrap_err();
        peer.join().unwrap();
        assert!(c.broken.load(Ordering::Acquire), "{e}");
        assert_eq!(c.timeouts(), 0);
        let e = c.region_write(0, 0, &[0; 4]).unwrap_err();
        assert!(e.to_string().contains("already failed"), "{e}");
    }
}
