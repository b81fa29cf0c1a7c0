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
//! The connection (framing, reply matching, timeouts, retries) is `conn`; the message layouts
//! are `proto`; this module holds the device: negotiation, regions, config space, DMA and IRQs.
//!
//! ```no_run
//! use floodgate_vfio::user::VfioUserDevice;
//! use floodgate_vfio::{Bar, Device};
//! let dev = VfioUserDevice::connect("/tmp/vf0.sock").unwrap();
//! assert_eq!(dev.info().vendor_id, 0x8086);
//! let links = dev.bar0().read32(0x0010);
//! ```

mod conn;
mod proto;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use vfio_bindings::bindings::vfio::*;

use crate::{Bar, Device, DeviceInfo, DmaRegion, Error};
use conn::{proto_err, Conn};
use proto::Command;

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

/// BAR access over the socket. Cloning shares the connection.
#[derive(Clone)]
pub struct UserBar {
    conn: Arc<Conn>,
    region: u32,
}

impl std::fmt::Debug for UserBar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserBar")
            .field("location", &self.conn.location())
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
        let conn = Arc::new(Conn::new(sock, location.clone()));

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
        self.conn.is_broken()
    }

    /// Requests that got no reply within [`UserOptions::timeout`] (each an error of that
    /// request; the connection survived it).
    pub fn timeouts(&self) -> u64 {
        self.conn.timeouts()
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
        self.conn.hang_up();
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
