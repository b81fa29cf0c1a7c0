//! vfio-user client: a PCI function served by another process over a Unix socket (the
//! vfio-user protocol, as spoken by QEMU and libvfio-user), usable wherever a [`Device`] is.
//!
//! * BAR accesses are REGION_READ/REGION_WRITE messages: one round trip per register access,
//!   fine for bring-up and tests, far too slow for a data path that writes doorbells per burst.
//! * [`Device::dma_map`] sends DMA_MAP with the region's memfd (SCM_RIGHTS), so the server maps
//!   the same pages: this is the memfd-based DMA of a real IOMMU mapping.
//! * [`Device::enable_msix`] sends SET_IRQS with one eventfd per vector.
//!
//! The `vfio_user` crate (0.1.7) has a `Client`, but it does not look at the error flag of
//! replies (an error reply desynchronises the stream and the next read blocks forever), cannot
//! time out and panics on malformed replies. This client is small and strict instead: every
//! reply is checked for its message ID, command, size and error flag, reads time out after
//! [`UserOptions::timeout`], and a broken connection turns the device into one that reads
//! all-ones, like a surprise-removed PCIe function.
//!
//! Signals and slow servers: every socket call is retried when a signal interrupts it (EINTR:
//! with a receive timeout set, Linux does not restart `recvmsg` even for `SA_RESTART`
//! handlers). A reply that does not come within the timeout is an error of that one request,
//! counted in [`VfioUserDevice::timeouts`], not a removal: the late reply is recognised by its
//! message ID and skipped when it arrives, and a timed-out register read is retried. Only a peer
//! that is really gone (end of file, `ECONNRESET`, `EPIPE`) or a stream out of step (a timeout
//! in the middle of a message, a reply nobody asked for) marks the connection broken.
//!
//! ```no_run
//! use floodgate_vfio::user::VfioUserDevice;
//! use floodgate_vfio::{Bar, Device};
//! let dev = VfioUserDevice::connect("/tmp/vf0.sock").unwrap();
//! assert_eq!(dev.info().vendor_id, 0x8086);
//! let links = dev.bar0().read32(0x0010);
//! ```

mod proto;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vfio_bindings::bindings::vfio::*;
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

use crate::{Bar, Device, DeviceInfo, DmaRegion, Error};
use proto::{Command, Header, HEADER_SIZE};

pub use proto::MAX_MESSAGE;

/// Connection options.
#[derive(Debug, Clone)]
pub struct UserOptions {
    /// How long to wait for each reply before declaring the server gone.
    pub timeout: Duration,
    /// Set Bus Master Enable in the command register at connect, as the kernel backend does
    /// at open (default `true`). Without it a faithful device does no DMA and sends no MSI-X.
    pub bus_master: bool,
}

impl Default for UserOptions {
    fn default() -> Self {
        UserOptions {
            timeout: Duration::from_secs(5),
            bus_master: true,
        }
    }
}

/// One region as the server describes it (DEVICE_GET_REGION_INFO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionInfo {
    /// VFIO region index (BAR0 = 0 … BAR5 = 5, ROM = 6, config = 7).
    pub index: u32,
    /// `VFIO_REGION_INFO_FLAG_*`.
    pub flags: u32,
    /// Size in bytes (0: absent).
    pub size: u64,
}

/// One interrupt index as the server describes it (DEVICE_GET_IRQ_INFO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrqInfo {
    /// VFIO IRQ index (INTx 0, MSI 1, MSI-X 2, ERR 3, REQ 4).
    pub index: u32,
    /// `VFIO_IRQ_INFO_*`.
    pub flags: u32,
    /// Number of vectors.
    pub count: u32,
}

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
struct Conn {
    stream: Mutex<Stream>,
    broken: AtomicBool,
    /// Requests that got no reply within the timeout (the connection survived them).
    timeouts: AtomicU64,
    location: String,
}

fn proto_err(location: &str, what: impl std::fmt::Display) -> Error {
    Error::Device(format!("vfio-user {location}: {what}"))
}

impl Conn {
    fn err(&self, what: impl std::fmt::Display) -> Error {
        proto_err(&self.location, what)
    }

    /// Sends one command (header + `parts`, `fds` attached), waits for its reply and copies
    /// the reply body into `into` (a longer body is cut to it); returns the body length kept.
    ///
    /// A refused request (error reply) or a request whose reply did not come in time is an
    /// error and leaves the connection usable; any other failure marks the connection broken.
    fn call(
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
    fn region_read_small(&self, region: u32, offset: u64, out: &mut [u8]) -> Result<(), Error> {
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

    fn region_write(&self, region: u32, offset: u64, data: &[u8]) -> Result<(), Error> {
        let req = proto::region_access(region, offset, data.len() as u32);
        let mut reply = [0u8; 16];
        let n = self.call(Command::RegionWrite, &[&req, data], &[], &mut reply)?;
        self.check_echo(Command::RegionWrite, &reply, n, region, offset, data.len())
    }
}

/// BAR access over the socket. Cloning shares the connection.
#[derive(Clone)]
pub struct UserBar {
    conn: Arc<Conn>,
    region: u32,
}

impl std::fmt::Debug for UserBar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserBar")
            .field("location", &self.conn.location)
            .field("region", &self.region)
            .finish()
    }
}

impl Bar for UserBar {
    /// One REGION_READ round trip. A failed connection reads `0xFFFF_FFFF`.
    fn read32(&self, offset: u32) -> u32 {
        let mut b = [0u8; 4];
        match self
            .conn
            .region_read_small(self.region, u64::from(offset), &mut b)
        {
            Ok(()) => u32::from_le_bytes(b),
            Err(e) => {
                log::debug!("BAR{} read at {offset:#x}: {e}", self.region);
                0xFFFF_FFFF
            }
        }
    }

    /// One REGION_WRITE round trip (the server has applied the write when it returns). A failed
    /// connection loses the write, like a removed device.
    fn write32(&self, offset: u32, value: u32) {
        if let Err(e) = self
            .conn
            .region_write(self.region, u64::from(offset), &value.to_le_bytes())
        {
            log::debug!("BAR{} write at {offset:#x}: {e}", self.region);
        }
    }
}

/// A PCI function served over vfio-user.
pub struct VfioUserDevice {
    conn: Arc<Conn>,
    path: PathBuf,
    info: DeviceInfo,
    regions: Vec<RegionInfo>,
    irqs: Vec<IrqInfo>,
    server_version: (u16, u16),
    max_msg_fds: u32,
}

impl std::fmt::Debug for VfioUserDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VfioUserDevice")
            .field("path", &self.path)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl VfioUserDevice {
    /// Connects with default options.
    pub fn connect(path: impl AsRef<Path>) -> Result<VfioUserDevice, Error> {
        Self::connect_with(path, &UserOptions::default())
    }

    /// Connects to the server at `path`, negotiates the protocol version, and reads the device,
    /// region and IRQ info and the PCI IDs from config space.
    pub fn connect_with(
        path: impl AsRef<Path>,
        opts: &UserOptions,
    ) -> Result<VfioUserDevice, Error> {
        let path = path.as_ref();
        let location = format!("vfio-user:{}", path.display());
        let sock = UnixStream::connect(path).map_err(|e| {
            proto_err(
                &location,
                format_args!(
                    "cannot connect: {e}. Start the server first, e.g. \
                     `floodgate-sim serve --socket {}`",
                    path.display()
                ),
            )
        })?;
        sock.set_read_timeout(Some(opts.timeout))
            .and_then(|_| sock.set_write_timeout(Some(opts.timeout)))
            .map_err(|e| proto_err(&location, format_args!("socket timeouts: {e}")))?;
        let conn = Arc::new(Conn {
            stream: Mutex::new(Stream {
                sock,
                next_id: 0,
                abandoned: Vec::new(),
            }),
            broken: AtomicBool::new(false),
            timeouts: AtomicU64::new(0),
            location: location.clone(),
        });

        // VERSION: 0.1 with our capabilities as JSON (NUL-terminated).
        let caps = format!(
            "{{\"capabilities\":{{\"max_msg_fds\":{},\"max_data_xfer_size\":{}}}}}\0",
            proto::OUR_MAX_FDS,
            proto::MAX_DATA
        );
        let mut ver = [0u8; 4];
        ver[0..2].copy_from_slice(&proto::VERSION_MAJOR.to_le_bytes());
        ver[2..4].copy_from_slice(&proto::VERSION_MINOR.to_le_bytes());
        let mut reply = vec![0u8; 4096];
        let n = conn.call(Command::Version, &[&ver, caps.as_bytes()], &[], &mut reply)?;
        if n < 4 {
            return Err(conn.err("VERSION reply too short"));
        }
        let major = u16::from_le_bytes([reply[0], reply[1]]);
        let minor = u16::from_le_bytes([reply[2], reply[3]]);
        if major != proto::VERSION_MAJOR {
            return Err(conn.err(format_args!(
                "server speaks protocol {major}.{minor}, this client {}.x",
                proto::VERSION_MAJOR
            )));
        }
        let json = String::from_utf8_lossy(&reply[4..n]);
        let max_msg_fds = proto::json_u32(&json, "max_msg_fds").unwrap_or(1).max(1);

        // DEVICE_GET_INFO.
        let mut req = [0u8; 16];
        req[0..4].copy_from_slice(&16u32.to_le_bytes());
        let mut rep = [0u8; 16];
        let n = conn.call(Command::DeviceGetInfo, &[&req], &[], &mut rep)?;
        if n < 16 {
            return Err(conn.err("DEVICE_GET_INFO reply too short"));
        }
        let flags = proto::u32_at(&rep, 4);
        let num_regions = proto::u32_at(&rep, 8);
        let num_irqs = proto::u32_at(&rep, 12);
        if flags & VFIO_DEVICE_FLAGS_PCI == 0 {
            return Err(conn.err("the served device is not a PCI device"));
        }
        if num_regions <= VFIO_PCI_CONFIG_REGION_INDEX || num_regions > 64 || num_irqs > 64 {
            return Err(conn.err(format_args!(
                "implausible device: {num_regions} regions, {num_irqs} IRQ indexes"
            )));
        }

        let mut regions = Vec::with_capacity(num_regions as usize);
        for index in 0..num_regions {
            let mut req = [0u8; 32];
            req[0..4].copy_from_slice(&32u32.to_le_bytes());
            req[8..12].copy_from_slice(&index.to_le_bytes());
            let mut rep = [0u8; 32];
            let n = conn.call(Command::DeviceGetRegionInfo, &[&req], &[], &mut rep)?;
            if n < 32 {
                return Err(conn.err(format_args!("region {index} info too short")));
            }
            regions.push(RegionInfo {
                index,
                flags: proto::u32_at(&rep, 4),
                size: proto::u64_at(&rep, 16),
            });
        }
        let mut irqs = Vec::with_capacity(num_irqs as usize);
        for index in 0..num_irqs {
            let mut req = [0u8; 16];
            req[0..4].copy_from_slice(&16u32.to_le_bytes());
            req[8..12].copy_from_slice(&index.to_le_bytes());
            let mut rep = [0u8; 16];
            let n = conn.call(Command::DeviceGetIrqInfo, &[&req], &[], &mut rep)?;
            if n < 16 {
                return Err(conn.err(format_args!("IRQ index {index} info too short")));
            }
            irqs.push(IrqInfo {
                index,
                flags: proto::u32_at(&rep, 4),
                count: proto::u32_at(&rep, 12),
            });
        }

        let mut id = [0u8; 4];
        conn.region_read_small(VFIO_PCI_CONFIG_REGION_INDEX, 0, &mut id)?;
        let info = DeviceInfo {
            vendor_id: u16::from_le_bytes([id[0], id[1]]),
            device_id: u16::from_le_bytes([id[2], id[3]]),
            location,
        };
        log::info!(
            "{}: {:04x}:{:04x}, protocol {major}.{minor}, {num_regions} regions, {num_irqs} IRQ \
             indexes, BAR0 {} bytes",
            info.location,
            info.vendor_id,
            info.device_id,
            regions[0].size
        );
        let dev = VfioUserDevice {
            conn,
            path: path.to_path_buf(),
            info,
            regions,
            irqs,
            server_version: (major, minor),
            max_msg_fds,
        };
        if opts.bus_master {
            dev.enable_bus_master()?;
        }
        Ok(dev)
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Protocol version the server answered with.
    pub fn server_version(&self) -> (u16, u16) {
        self.server_version
    }

    /// Region `index` as the server described it.
    pub fn region_info(&self, index: u32) -> Option<RegionInfo> {
        self.regions.get(index as usize).copied()
    }

    /// IRQ index `index` as the server described it.
    pub fn irq_info(&self, index: u32) -> Option<IrqInfo> {
        self.irqs.get(index as usize).copied()
    }

    /// Whether the connection failed (the device then reads all-ones).
    pub fn is_broken(&self) -> bool {
        self.conn.broken.load(Ordering::Acquire)
    }

    /// Requests that got no reply within [`UserOptions::timeout`] (each an error of that
    /// request; the connection survived it).
    pub fn timeouts(&self) -> u64 {
        self.conn.timeouts.load(Ordering::Relaxed)
    }

    /// A BAR other than BAR0 (for example BAR3, the MSI-X table).
    pub fn bar(&self, index: u32) -> Result<UserBar, Error> {
        match self.region_info(index) {
            Some(r) if index < VFIO_PCI_ROM_REGION_INDEX && r.size > 0 => Ok(UserBar {
                conn: self.conn.clone(),
                region: index,
            }),
            _ => Err(Error::InvalidArgument(format!(
                "{}: BAR{index} does not exist",
                self.info.location
            ))),
        }
    }

    /// Reads `data.len()` bytes of configuration space at `offset` (in pieces of up to 4
    /// bytes, naturally aligned, as a CPU would).
    pub fn config_read(&self, offset: u64, data: &mut [u8]) -> Result<(), Error> {
        let mut done = 0;
        while done < data.len() {
            let at = offset + done as u64;
            let n = chunk(at, data.len() - done);
            self.conn.region_read_small(
                VFIO_PCI_CONFIG_REGION_INDEX,
                at,
                &mut data[done..done + n],
            )?;
            done += n;
        }
        Ok(())
    }

    /// Writes configuration space (same access pattern as [`Self::config_read`]).
    pub fn config_write(&self, offset: u64, data: &[u8]) -> Result<(), Error> {
        let mut done = 0;
        while done < data.len() {
            let at = offset + done as u64;
            let n = chunk(at, data.len() - done);
            self.conn
                .region_write(VFIO_PCI_CONFIG_REGION_INDEX, at, &data[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    /// Sets the command register's bus-master bit (and memory space), which a device needs
    /// before it may do DMA or send MSI-X messages. [`VfioUserDevice::connect`] does this unless
    /// [`UserOptions::bus_master`] is false.
    pub fn enable_bus_master(&self) -> Result<(), Error> {
        self.set_bus_master(true)
    }

    /// Sets or clears Bus Master Enable (command register bit 2; memory space stays on).
    pub fn set_bus_master(&self, on: bool) -> Result<(), Error> {
        let mut cmd = [0u8; 2];
        self.config_read(4, &mut cmd)?;
        let v = u16::from_le_bytes(cmd) | 0x0002;
        let v = if on { v | 0x0004 } else { v & !0x0004 };
        self.config_write(4, &v.to_le_bytes())
    }

    /// DEVICE_RESET.
    pub fn reset(&self) -> Result<(), Error> {
        let mut rep = [0u8; 0];
        self.conn.call(Command::DeviceReset, &[], &[], &mut rep)?;
        Ok(())
    }

    /// Sets (`Some`) or clears (`None`) the eventfd of vectors `start..` of IRQ index `index`.
    /// `fds` empty with `start = 0` disables every vector of the index.
    pub fn set_irqs(&self, index: u32, start: u32, fds: &[Option<RawFd>]) -> Result<(), Error> {
        if fds.is_empty() {
            let req = proto::set_irqs(
                index,
                VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
                0,
                0,
            );
            let mut rep = [0u8; 0];
            self.conn.call(Command::SetIrqs, &[&req], &[], &mut rep)?;
            return Ok(());
        }
        // One vector per message: every server accepts max_msg_fds = 1.
        for (i, fd) in fds.iter().enumerate() {
            let req = proto::set_irqs(
                index,
                VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
                start + i as u32,
                1,
            );
            let mut rep = [0u8; 0];
            let attach: &[RawFd] = match fd {
                Some(f) => std::slice::from_ref(f),
                None => &[],
            };
            self.conn
                .call(Command::SetIrqs, &[&req], attach, &mut rep)?;
        }
        Ok(())
    }

    /// Asks the server to fire vector `vector` of IRQ index `index` (DATA_NONE trigger): a
    /// loopback check of interrupt delivery.
    pub fn trigger_irq(&self, index: u32, vector: u32) -> Result<(), Error> {
        let req = proto::set_irqs(
            index,
            VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
            vector,
            1,
        );
        let mut rep = [0u8; 0];
        self.conn.call(Command::SetIrqs, &[&req], &[], &mut rep)?;
        Ok(())
    }

    /// The largest number of fds the server takes in one message.
    pub fn max_msg_fds(&self) -> u32 {
        self.max_msg_fds
    }
}

impl Drop for VfioUserDevice {
    /// Hangs up. BAR handles that outlive the device then read all-ones, like the BAR of a
    /// removed device; the server sees the client leave and drops its mappings.
    fn drop(&mut self) {
        self.conn.broken.store(true, Ordering::Release);
        let s = self.conn.stream.lock().unwrap_or_else(|e| e.into_inner());
        let _ = s.sock.shutdown(std::net::Shutdown::Both);
    }
}

/// Size of the next naturally aligned config access (1, 2 or 4 bytes).
fn chunk(at: u64, left: usize) -> usize {
    if at & 3 == 0 && left >= 4 {
        4
    } else if at & 1 == 0 && left >= 2 {
        2
    } else {
        1
    }
}

fn eventfd() -> Result<OwnedFd, Error> {
    // SAFETY: eventfd has no pointer arguments; the result is checked.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if raw < 0 {
        return Err(Error::last_os("eventfd for an MSI-X vector"));
    }
    // SAFETY: raw is a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

impl Device for VfioUserDevice {
    type Bar = UserBar;

    fn info(&self) -> DeviceInfo {
        self.info.clone()
    }

    fn bar0(&self) -> UserBar {
        UserBar {
            conn: self.conn.clone(),
            region: VFIO_PCI_BAR0_REGION_INDEX,
        }
    }

    fn dma_map(&self, region: &DmaRegion) -> Result<(), Error> {
        let req = proto::dma_map(0, region.iova(), region.len() as u64);
        let mut rep = [0u8; 0];
        self.conn.call(
            Command::DmaMap,
            &[&req],
            &[region.fd().as_raw_fd()],
            &mut rep,
        )?;
        Ok(())
    }

    fn dma_unmap(&self, region: &DmaRegion) -> Result<(), Error> {
        let req = proto::dma_unmap(region.iova(), region.len() as u64);
        let mut rep = [0u8; 24];
        self.conn.call(Command::DmaUnmap, &[&req], &[], &mut rep)?;
        Ok(())
    }

    fn enable_msix(&self, count: u32) -> Result<Vec<OwnedFd>, Error> {
        let have = self
            .irq_info(VFIO_PCI_MSIX_IRQ_INDEX)
            .map_or(0, |i| i.count);
        if count == 0 || count > have {
            return Err(Error::InvalidArgument(format!(
                "{}: {count} MSI-X vectors requested, the device has {have}",
                self.info.location
            )));
        }
        let fds = (0..count)
            .map(|_| eventfd())
            .collect::<Result<Vec<_>, _>>()?;
        let raw: Vec<Option<RawFd>> = fds.iter().map(|f| Some(f.as_raw_fd())).collect();
        self.set_irqs(VFIO_PCI_MSIX_IRQ_INDEX, 0, &raw)?;
        Ok(fds)
    }

    fn transport_timeouts(&self) -> u64 {
        self.timeouts()
    }
}

#[cfg(test)]
mod tests {
    //! The socket paths of [`Conn`] against a scripted peer on a socket pair: a late reply is a
    //! counted timeout (not a removal) and is skipped when it comes; a signal during a wait is
    //! retried; a peer that hangs up breaks the connection.

    use super::*;
    use std::time::Instant;

    fn conn(sock: UnixStream, timeout: Duration) -> Conn {
        sock.set_read_timeout(Some(timeout)).unwrap();
        sock.set_write_timeout(Some(timeout)).unwrap();
        Conn {
            stream: Mutex::new(Stream {
                sock,
                next_id: 0,
                abandoned: Vec::new(),
            }),
            broken: AtomicBool::new(false),
            timeouts: AtomicU64::new(0),
            location: "test".into(),
        }
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

    impl Conn {
        fn timeouts(&self) -> u64 {
            self.timeouts.load(Ordering::Relaxed)
        }
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
