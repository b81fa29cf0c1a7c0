//! A fake vfio-user server that answers correctly except where a plan of faults says
//! otherwise, and the client scenario that checks every outcome against the plan. Shared by
//! the property test (hostile_server.rs) and the cargo-fuzz target
//! (fuzz/fuzz_targets/vfio_user_reply.rs).

use floodgate_vfio::user::{UserOptions, VfioUserDevice};
use floodgate_vfio::{Bar, Device, DmaOptions, DmaRegion, HugePages};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vfio_bindings::bindings::vfio::*;
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

/// The client's reply timeout. Stalled replies cost this much each, so it is short; but a
/// correct reply must always arrive within it, also on a loaded machine (at 100 ms one was
/// missed while the machine was busy building).
pub const TIMEOUT: Duration = Duration::from_millis(250);
/// Whole scenario, generous: only a hang trips it.
pub const WATCHDOG: Duration = Duration::from_secs(30);
pub const MAX_MESSAGE: u32 = floodgate_vfio::user::MAX_MESSAGE as u32;

pub const VERSION: u16 = 1;
pub const GET_INFO: u16 = 4;
pub const REGION_INFO: u16 = 5;
pub const IRQ_INFO: u16 = 7;
pub const REGION_READ: u16 = 9;
pub const REGION_WRITE: u16 = 10;

pub const NUM_REGIONS: u32 = VFIO_PCI_NUM_REGIONS;
pub const NUM_IRQS: u32 = 3;

/// What the server does with one reply.
#[derive(Debug, Clone)]
pub enum Fault {
    WrongId(u16),
    WrongCommand(u16),
    /// Flags whose type is not "reply" (0 command, 2–15 undefined).
    NotReply(u32),
    SizeBelowHeader(u32),
    SizeHuge(u32),
    /// Send only this many bytes of the reply, then hang up.
    CutThenClose(usize),
    /// Send only this many bytes, then stay silent past the client's timeout.
    CutThenStall(usize),
    /// These bytes instead of the reply (with a message ID that is not the request's).
    Garbage(Vec<u8>),
    /// No reply.
    Silence,
    /// Hang up instead of replying.
    Close,
    /// An error reply with this errno.
    Refuse(u32),
    /// The body cut by this many bytes (the header's size matching).
    BodyShort(usize),
    /// The body with these bytes appended.
    BodyLong(Vec<u8>),
    /// A region access answered with another offset (REGION_READ/REGION_WRITE only).
    WrongEcho(u64),
    /// The reply with this many descriptors attached to its header.
    Fds(usize),
    /// The reply with this many descriptors attached to its body (to its header if it has
    /// none).
    FdsOnBody(usize),
}

/// How an exchange must end for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Success, with the correct values.
    Ok,
    /// An error; the connection stays usable.
    Fail,
    /// An error; the connection is marked broken and nothing more is sent.
    Break,
}

/// The expected outcome of `fault` on the correct reply `body` to command `cmd`.
pub fn class(fault: Option<&Fault>, cmd: u16, body: &[u8], req_count: usize) -> Class {
    let Some(f) = fault else { return Class::Ok };
    // Body length the client needs for each command.
    let needs = |len: usize| match cmd {
        VERSION => len >= 4,
        GET_INFO | IRQ_INFO => len >= 16,
        REGION_INFO => len >= 32,
        REGION_READ => len == 16 + req_count,
        REGION_WRITE => len >= 16,
        _ => true,
    };
    match f {
        Fault::WrongId(_)
        | Fault::WrongCommand(_)
        | Fault::NotReply(_)
        | Fault::SizeBelowHeader(_)
        | Fault::SizeHuge(_)
        | Fault::CutThenClose(_)
        | Fault::CutThenStall(_)
        | Fault::Garbage(_)
        | Fault::Close => Class::Break,
        // No reply: that request times out and is counted; the connection stays usable (a
        // late reply would be skipped by its message ID). A register read is sent again.
        Fault::Silence => Class::Fail,
        Fault::Refuse(_) => Class::Fail,
        Fault::BodyShort(cut) => {
            if needs(body.len().saturating_sub(*cut)) {
                Class::Ok
            } else {
                Class::Fail
            }
        }
        // The client reads what it needs and skips the rest; a REGION_READ must be exact.
        Fault::BodyLong(_) => {
            if cmd == REGION_READ {
                Class::Fail
            } else {
                Class::Ok
            }
        }
        Fault::WrongEcho(_) => {
            if cmd == REGION_READ || cmd == REGION_WRITE {
                Class::Fail
            } else {
                Class::Ok
            }
        }
        // Descriptors with a reply are allowed (a mappable region) and closed, up to the
        // number the client announced; more are cut off, which leaves the stream in doubt.
        Fault::Fds(n) => {
            if *n <= 8 {
                Class::Ok
            } else {
                Class::Break
            }
        }
        // Descriptors attached to body bytes are dropped by the kernel when the client reads
        // the body without asking for them.
        Fault::FdsOnBody(n) => {
            if !body.is_empty() || *n <= 8 {
                Class::Ok
            } else {
                Class::Break
            }
        }
    }
}

/// What the server saw: per request, the command and the class of the reply it sent.
#[derive(Default)]
pub struct Log {
    pub exchanges: AtomicUsize,
    pub classes: std::sync::Mutex<Vec<(u16, Class)>>,
}

/// BAR0 contents of the fake device.
pub fn bar0_value(offset: u64) -> u32 {
    (offset as u32) ^ 0x5A5A_0000
}

pub struct FakeDevice {
    config: [u8; 256],
}

impl FakeDevice {
    fn new() -> Self {
        let mut config = [0u8; 256];
        config[0..4].copy_from_slice(&[0x86, 0x80, 0xed, 0x10]);
        FakeDevice { config }
    }

    /// The correct reply body to `cmd` with request body `req`.
    fn answer(&mut self, cmd: u16, req: &[u8]) -> Vec<u8> {
        let u32_at = |o: usize| u32::from_le_bytes(req[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(req[o..o + 8].try_into().unwrap());
        let mut b = Vec::new();
        match cmd {
            VERSION => {
                b.extend_from_slice(&0u16.to_le_bytes());
                b.extend_from_slice(&1u16.to_le_bytes());
                b.extend_from_slice(b"{\"capabilities\":{\"max_msg_fds\":8}}\0");
            }
            GET_INFO => {
                for v in [16, VFIO_DEVICE_FLAGS_PCI, NUM_REGIONS, NUM_IRQS] {
                    b.extend_from_slice(&v.to_le_bytes());
                }
            }
            REGION_INFO => {
                let index = u32_at(8);
                let size: u64 = match index {
                    0 => 0x4000,
                    VFIO_PCI_CONFIG_REGION_INDEX => 256,
                    _ => 0,
                };
                for v in [32u32, 3, index, 0] {
                    b.extend_from_slice(&v.to_le_bytes());
                }
                b.extend_from_slice(&size.to_le_bytes());
                b.extend_from_slice(&0u64.to_le_bytes());
            }
            IRQ_INFO => {
                let index = u32_at(8);
                for v in [16u32, 0, index, if index == 2 { 3 } else { 1 }] {
                    b.extend_from_slice(&v.to_le_bytes());
                }
            }
            REGION_READ | REGION_WRITE => {
                let (offset, region, count) = (u64_at(0), u32_at(8), u32_at(12) as usize);
                b.extend_from_slice(&req[..16]);
                if cmd == REGION_READ {
                    let mut data = vec![0u8; count];
                    if region == VFIO_PCI_CONFIG_REGION_INDEX {
                        let o = offset as usize;
                        data.copy_from_slice(&self.config[o..o + count]);
                    } else {
                        for (i, d) in data.iter_mut().enumerate() {
                            *d = bar0_value(offset & !3).to_le_bytes()[(offset as usize + i) & 3];
                        }
                    }
                    b.extend_from_slice(&data);
                } else if region == VFIO_PCI_CONFIG_REGION_INDEX {
                    let o = offset as usize;
                    self.config[o..o + count].copy_from_slice(&req[16..16 + count]);
                }
            }
            _ => {}
        }
        b
    }
}

pub fn header(id: u16, cmd: u16, size: u32, flags: u32, error: u32) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0..2].copy_from_slice(&id.to_le_bytes());
    h[2..4].copy_from_slice(&cmd.to_le_bytes());
    h[4..8].copy_from_slice(&size.to_le_bytes());
    h[8..12].copy_from_slice(&flags.to_le_bytes());
    h[12..16].copy_from_slice(&error.to_le_bytes());
    h
}

/// Serves one connection following `plan` (exchange index → fault). `leak_probe` is the write
/// end of a pipe: every descriptor the server sends is a copy of it.
pub fn serve(mut s: UnixStream, plan: BTreeMap<usize, Fault>, log: Arc<Log>, leak_probe: OwnedFd) {
    let mut dev = FakeDevice::new();
    let probe = leak_probe.as_raw_fd();
    loop {
        let mut h = [0u8; 16];
        let (got, _fd) = match s.recv_with_fd(&mut h) {
            Ok((0, _)) | Err(_) => return,
            Ok(x) => x,
        };
        if s.read_exact(&mut h[got..]).is_err() {
            return;
        }
        let id = u16::from_le_bytes([h[0], h[1]]);
        let cmd = u16::from_le_bytes([h[2], h[3]]);
        let size = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
        let mut req = vec![0u8; size - 16];
        if s.read_exact(&mut req).is_err() {
            return;
        }
        let n = log.exchanges.fetch_add(1, Ordering::SeqCst);
        let f = plan.get(&n);
        let mut body = dev.answer(cmd, &req);
        let req_count = if cmd == REGION_READ {
            u32::from_le_bytes(req[12..16].try_into().unwrap()) as usize
        } else {
            0
        };
        log.classes
            .lock()
            .unwrap()
            .push((cmd, class(f, cmd, &body, req_count)));
        let (mut rid, mut rcmd, mut flags, mut err) = (id, cmd, 1u32, 0u32);
        let mut size_override = None;
        let mut header_fds = 0;
        let mut body_fds = 0;
        match f {
            None => {}
            Some(Fault::WrongId(d)) => rid = id.wrapping_add(*d),
            Some(Fault::WrongCommand(c)) => rcmd = if *c == cmd { c.wrapping_add(100) } else { *c },
            Some(Fault::NotReply(fl)) => flags = *fl,
            Some(Fault::SizeBelowHeader(v)) | Some(Fault::SizeHuge(v)) => size_override = Some(*v),
            Some(Fault::Refuse(e)) => {
                flags |= 1 << 5;
                err = *e;
                body.clear();
            }
            Some(Fault::BodyShort(cut)) => body.truncate(body.len().saturating_sub(*cut)),
            Some(Fault::BodyLong(extra)) => body.extend_from_slice(extra),
            Some(Fault::WrongEcho(d)) if cmd == REGION_READ || cmd == REGION_WRITE => {
                let o = u64::from_le_bytes(body[0..8].try_into().unwrap()).wrapping_add(*d);
                body[0..8].copy_from_slice(&o.to_le_bytes());
            }
            Some(Fault::WrongEcho(_)) => {}
            Some(Fault::Fds(k)) => header_fds = *k,
            Some(Fault::FdsOnBody(k)) => {
                if body.is_empty() {
                    header_fds = *k
                } else {
                    body_fds = *k
                }
            }
            Some(Fault::Silence) => continue,
            Some(Fault::Close) => return,
            Some(Fault::Garbage(g)) => {
                let mut g = g.clone();
                if g.len() >= 2 {
                    g[0..2].copy_from_slice(&id.wrapping_add(1).to_le_bytes());
                }
                let _ = s.write_all(&g);
                continue;
            }
            Some(Fault::CutThenClose(_)) | Some(Fault::CutThenStall(_)) => {}
        }
        let size = size_override.unwrap_or(16 + body.len() as u32);
        let h = header(rid, rcmd, size, flags, err);
        let mut whole = h.to_vec();
        whole.extend_from_slice(&body);
        match f {
            Some(Fault::CutThenClose(k)) => {
                let _ = s.write_all(&whole[..(*k).min(whole.len() - 1)]);
                return;
            }
            Some(Fault::CutThenStall(k)) => {
                let _ = s.write_all(&whole[..(*k).min(whole.len() - 1)]);
                std::thread::sleep(3 * TIMEOUT);
                continue;
            }
            _ => {}
        }
        let fds: Vec<RawFd> = vec![probe; header_fds.max(body_fds)];
        let sent = if header_fds > 0 {
            s.send_with_fds(&[&h[..], &body[..]], &fds).map(|_| ())
        } else if body_fds > 0 {
            s.write_all(&h)
                .map_err(|e| vmm_sys_util::errno::Error::new(e.raw_os_error().unwrap_or(5)))
                .and_then(|_| s.send_with_fds(&[&body[..]], &fds).map(|_| ()))
        } else {
            s.write_all(&whole)
                .map_err(|e| vmm_sys_util::errno::Error::new(e.raw_os_error().unwrap_or(5)))
        };
        if sent.is_err() {
            return;
        }
    }
}

/// One client operation and the value it must produce when every exchange was correct.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    ReadBar(u32),
    WriteBar(u32, u32),
    ConfigRead,
    ConfigWrite,
    Reset,
    Trigger,
    SetIrqFd,
    DmaMap,
    DmaUnmap,
}

pub const OPS: [Op; 10] = [
    Op::ReadBar(0x10),
    Op::ConfigWrite,
    Op::ConfigRead,
    Op::WriteBar(0x20, 7),
    Op::Reset,
    Op::Trigger,
    Op::SetIrqFd,
    Op::DmaMap,
    Op::DmaUnmap,
    Op::ReadBar(0x18),
];

/// Runs `op`; `Some(true)` success with the right value, `Some(false)` an error, `None` when
/// the API does not report the outcome (BAR writes).
pub fn run(dev: &VfioUserDevice, op: Op, region: &DmaRegion, efd: &OwnedFd) -> Option<bool> {
    let ok = |r: Result<(), floodgate_vfio::Error>| match r {
        Ok(()) => true,
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("vfio-user"), "unclear error: {msg}");
            false
        }
    };
    Some(match op {
        Op::ReadBar(off) => {
            let v = dev.bar0().read32(off);
            // A failed read gives all-ones; a successful one the device's value.
            assert!(
                v == bar0_value(off.into()) || v == u32::MAX,
                "read {v:#x} at {off:#x}"
            );
            v != u32::MAX
        }
        Op::WriteBar(off, v) => {
            dev.bar0().write32(off, v);
            return None;
        }
        Op::ConfigRead => {
            let mut id = [0u8; 4];
            let r = dev.config_read(0, &mut id);
            if r.is_ok() {
                assert_eq!(id, [0x86, 0x80, 0xed, 0x10]);
            }
            ok(r)
        }
        Op::ConfigWrite => ok(dev.config_write(0x40, &[1, 2, 3, 4])),
        Op::Reset => ok(dev.reset()),
        Op::Trigger => ok(dev.trigger_irq(VFIO_PCI_MSIX_IRQ_INDEX, 0)),
        Op::SetIrqFd => ok(dev.set_irqs(VFIO_PCI_MSIX_IRQ_INDEX, 1, &[Some(efd.as_raw_fd())])),
        Op::DmaMap => ok(dev.dma_map(region)),
        Op::DmaUnmap => ok(dev.dma_unmap(region)),
    })
}

pub fn pipe() -> (File, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes; the result is checked.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
    assert_eq!(rc, 0);
    // SAFETY: both are new descriptors owned by nobody else.
    unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

pub fn eventfd() -> OwnedFd {
    // SAFETY: no pointer arguments; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: a new descriptor owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Runs the connect and every operation against a server following `plan`, and checks each
/// outcome against the classes the server recorded.
pub fn scenario(plan: BTreeMap<usize, Fault>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let log = Arc::new(Log::default());
    let (leak_read, leak_write) = pipe();
    let server = {
        let log = log.clone();
        std::thread::spawn(move || {
            if let Ok((s, _)) = listener.accept() {
                serve(s, plan, log, leak_write);
            }
        })
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let client = {
        let log = log.clone();
        std::thread::spawn(move || {
            let opts = UserOptions {
                timeout: TIMEOUT,
                bus_master: true,
            };
            let region = DmaRegion::allocate(
                4096,
                &DmaOptions {
                    huge_pages: HugePages::Never,
                    name: None,
                },
            )
            .unwrap();
            let efd = eventfd();
            // The classes of the exchanges in `from..to`: the first that is not Ok decides.
            // An operation's outcome: broken if any of its exchanges broke the stream; else
            // what its last exchange gave (an operation stops at its first failing exchange,
            // except a register read that timed out, which is sent again).
            let decide = |from: usize, to: usize| {
                let classes = log.classes.lock().unwrap();
                let ex = &classes[from..to];
                if ex.iter().any(|c| c.1 == Class::Break) {
                    Class::Break
                } else {
                    ex.last().map_or(Class::Ok, |c| c.1)
                }
            };
            let dev = VfioUserDevice::connect_with(&path, &opts);
            let after_connect = log.exchanges.load(Ordering::SeqCst);
            let expect = decide(0, after_connect);
            let dev = match dev {
                Ok(d) => {
                    assert_eq!(expect, Class::Ok, "connect succeeded over a bad exchange");
                    assert!(!d.is_broken());
                    d
                }
                Err(e) => {
                    assert_ne!(
                        expect,
                        Class::Ok,
                        "connect failed over correct exchanges: {e}"
                    );
                    assert!(e.to_string().contains("vfio-user"), "unclear error: {e}");
                    tx.send(()).unwrap();
                    return;
                }
            };
            let mut broken = false;
            for op in OPS {
                let before = log.exchanges.load(Ordering::SeqCst);
                let outcome = run(&dev, op, &region, &efd);
                let after = log.exchanges.load(Ordering::SeqCst);
                if broken {
                    assert_eq!(before, after, "{op:?} reached the server after the break");
                    assert_ne!(outcome, Some(true), "{op:?} succeeded after the break");
                    continue;
                }
                let expect = decide(before, after);
                match (expect, outcome) {
                    (_, None) => {}
                    (Class::Ok, Some(ok)) => assert!(ok, "{op:?} failed over a correct exchange"),
                    (_, Some(ok)) => {
                        assert!(!ok, "{op:?} succeeded over a bad exchange ({expect:?})")
                    }
                }
                assert_eq!(
                    dev.is_broken(),
                    expect == Class::Break,
                    "{op:?}: broken flag after a {expect:?} exchange"
                );
                broken = expect == Class::Break;
            }
            drop(dev);
            tx.send(()).unwrap();
        })
    };
    match rx.recv_timeout(WATCHDOG) {
        Ok(()) => {}
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("the client hung"),
        // The client thread panicked: join reports it below.
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {}
    }
    if let Err(p) = client.join() {
        std::panic::resume_unwind(p);
    }
    server.join().unwrap();
    // Every descriptor the server sent is closed: the pipe's write end has no copy left.
    let mut b = [0u8; 1];
    match (&leak_read).read(&mut b) {
        Ok(0) => {}
        other => panic!("a descriptor sent by the server is still open ({other:?})"),
    }
}

/// A plan decoded from raw bytes (the fuzz target's input): records of an exchange index and
/// a fault kind with its parameters, so a fuzzer can reach every fault at every exchange.
pub fn plan_from_bytes(data: &[u8]) -> BTreeMap<usize, Fault> {
    let mut plan = BTreeMap::new();
    let mut rest = data;
    while rest.len() >= 6 && plan.len() < 4 {
        let (rec, tail) = rest.split_at(6);
        rest = tail;
        let at = usize::from(rec[0] % 28);
        let p = u32::from_le_bytes([rec[2], rec[3], rec[4], rec[5]]);
        let small = (p % 64) as usize;
        let f = match rec[1] % 16 {
            0 => Fault::WrongId((p as u16).max(1)),
            1 => Fault::WrongCommand(if p as u16 == 0 {
                0
            } else {
                (p as u16) | 0x4000
            }),
            2 => Fault::NotReply(if p & 0xF == 1 { p & !0xF } else { p }),
            3 => Fault::SizeBelowHeader(p % 16),
            4 => Fault::SizeHuge(p.max(MAX_MESSAGE + 1)),
            5 => Fault::CutThenClose(small),
            6 => Fault::CutThenStall(small.max(1)),
            7 => {
                let n = small.min(rest.len());
                let (g, tail) = rest.split_at(n);
                rest = tail;
                Fault::Garbage(g.to_vec())
            }
            8 => Fault::Silence,
            9 => Fault::Close,
            10 => Fault::Refuse(p),
            11 => Fault::BodyShort(small.max(1)),
            12 => Fault::BodyLong(vec![rec[2]; small.max(1)]),
            13 => Fault::WrongEcho(u64::from(p.max(1))),
            14 => Fault::Fds(small % 12 + 1),
            _ => Fault::FdsOnBody(small % 12 + 1),
        };
        plan.insert(at, f);
    }
    plan
}
