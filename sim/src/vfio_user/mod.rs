//! Serving one VF of the model over vfio-user, so that another process (our PMD through
//! `floodgate_vfio::user`, or QEMU's `vfio-user-pci` with Linux's `ixgbevf` in the guest) drives
//! it as a PCI function.
//!
//! The protocol is handled by the `vfio_user` crate's [`vfio_user::Server`]; this module is its
//! backend:
//! * region 0 (BAR0) goes to the VF register file ([`crate::SimBar`]), access by access;
//! * region 3 (BAR3, MSI-X table and PBA) is plain memory (QEMU emulates MSI-X itself);
//! * region 7 is the configuration space ([`ConfigSpace`]); a write of DevCtl "initiate FLR"
//!   resets the function;
//! * DMA_MAP fds are mapped into the VF's IOMMU table ([`crate::Iommu`]), DMA_UNMAP removes them;
//!   while the command register's Bus Master Enable is clear they are kept out of it (DMA is a
//!   recorded fault) and no MSI-X message is sent, as on silicon;
//! * SET_IRQS eventfds (MSI-X index) are signalled whenever the model raises a vector, which
//!   already honours VTEIMS/VTEIAC/VTEIAM and the VTIVAR mapping.
//!
//! The data path (TX descriptor fetch, RX delivery) runs on the model's engine thread
//! ([`crate::Nic::start_engine`]) or in [`crate::Nic::step`]; the server thread only handles
//! messages.
//!
//! ```no_run
//! use floodgate_sim::{Nic, NicConfig};
//! use floodgate_sim::vfio_user::UserServer;
//! let nic = Nic::new(NicConfig::default());
//! let mut server = UserServer::bind("/tmp/vf0.sock".as_ref(), nic.vf(0)).unwrap();
//! let _engine = nic.start_engine(Default::default());
//! server.serve_one().unwrap(); // until the client hangs up
//! ```

pub mod config;
mod dma;
pub mod responder;
pub mod udpgen;
pub mod wire_side;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use floodgate_vfio::{Bar, Device};
use vfio_bindings::bindings::vfio::*;
use vfio_user::{DmaMapFlags, DmaUnmapFlags, IrqInfo, Server, ServerBackend, ServerRegion};

pub use config::{ConfigEvent, ConfigSpace};

use crate::regs;
use crate::{SimBar, SimVf};

/// VFIO region indexes of a PCI device (linux/vfio.h).
const REGION_BAR0: u32 = VFIO_PCI_BAR0_REGION_INDEX;
const REGION_BAR3: u32 = VFIO_PCI_BAR3_REGION_INDEX;
const REGION_CONFIG: u32 = VFIO_PCI_CONFIG_REGION_INDEX;
const NUM_REGIONS: u32 = VFIO_PCI_NUM_REGIONS;
/// VFIO IRQ indexes.
const IRQ_MSIX: u32 = VFIO_PCI_MSIX_IRQ_INDEX;
const IRQ_ERR: u32 = VFIO_PCI_ERR_IRQ_INDEX;
const IRQ_REQ: u32 = VFIO_PCI_REQ_IRQ_INDEX;

/// Errors of the vfio-user server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The socket could not be created.
    #[error("cannot listen on the vfio-user socket {}", path.display())]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// What the crate reported.
        #[source]
        source: vfio_user::Error,
    },
    /// The socket path exists and something is listening on it.
    #[error("vfio-user socket {} is in use by another server; pick another path", path.display())]
    InUse {
        /// The socket path.
        path: PathBuf,
    },
    /// The client sent something the `vfio_user` crate could not handle (it panicked on it);
    /// the connection was dropped.
    #[error("vfio-user connection on {}: malformed message from the client ({what})", path.display())]
    Malformed {
        /// The socket path.
        path: PathBuf,
        /// The crate's panic message.
        what: String,
    },
    /// Serving a connection failed (the client went away mid-message, or the socket broke).
    #[error("vfio-user connection on {} failed", path.display())]
    Serve {
        /// The socket path.
        path: PathBuf,
        /// What the crate reported.
        #[source]
        source: vfio_user::Error,
    },
}

/// Message counters of a server, shared with whoever wants to print them.
#[derive(Debug, Default)]
pub struct ServeStats {
    /// REGION_READ messages (all regions).
    pub region_reads: AtomicU64,
    /// REGION_WRITE messages (all regions).
    pub region_writes: AtomicU64,
    /// DMA_MAP messages.
    pub dma_maps: AtomicU64,
    /// DMA_UNMAP messages.
    pub dma_unmaps: AtomicU64,
    /// Interrupts signalled on a client eventfd.
    pub irqs_signalled: AtomicU64,
    /// Interrupts the model raised for a vector with no eventfd.
    pub irqs_dropped: AtomicU64,
    /// Function-level resets (FLR config writes and DEVICE_RESET).
    pub resets: AtomicU64,
    /// Connections served to the end.
    pub connections: AtomicU64,
}

impl ServeStats {
    /// One line for logs.
    pub fn summary(&self) -> String {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "region reads {} writes {}, dma maps {} unmaps {}, irqs signalled {} dropped {}, \
             resets {}, connections {}",
            l(&self.region_reads),
            l(&self.region_writes),
            l(&self.dma_maps),
            l(&self.dma_unmaps),
            l(&self.irqs_signalled),
            l(&self.irqs_dropped),
            l(&self.resets),
            l(&self.connections)
        )
    }
}

/// The eventfds the client gave us, by IRQ index.
#[derive(Debug, Default)]
struct IrqFds {
    /// Bus Master Enable: an MSI-X message is a memory write, so none without it.
    bus_master: AtomicBool,
    msix: RwLock<[Option<File>; config::MSIX_VECTORS as usize]>,
    err: Mutex<Option<File>>,
    req: Mutex<Option<File>>,
}

impl IrqFds {
    fn signal(&self, vector: u32, stats: &ServeStats) {
        if !self.bus_master.load(Ordering::Acquire) {
            stats.irqs_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let fds = self.msix.read().unwrap_or_else(|e| e.into_inner());
        match fds.get(vector as usize).and_then(|f| f.as_ref()) {
            Some(mut f) => {
                match f.write(&1u64.to_ne_bytes()) {
                    Ok(8) => {}
                    Ok(n) => log::warn!("MSI-X vector {vector}: short eventfd write ({n} bytes)"),
                    Err(e) => log::warn!("MSI-X vector {vector}: eventfd write failed: {e}"),
                }
                stats.irqs_signalled.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                stats.irqs_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn clear(&self) {
        *self.msix.write().unwrap_or_else(|e| e.into_inner()) = Default::default();
        *self.err.lock().unwrap_or_else(|e| e.into_inner()) = None;
        *self.req.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// The `ServerBackend`: the VF as a PCI function.
struct Backend {
    vf: SimVf,
    bar: SimBar,
    config: ConfigSpace,
    bar3: Vec<u8>,
    dma: dma::DmaTable,
    irqs: Arc<IrqFds>,
    stats: Arc<ServeStats>,
}

fn einval(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg)
}

impl Backend {
    fn new(vf: SimVf, stats: Arc<ServeStats>) -> Backend {
        let irqs = Arc::new(IrqFds::default());
        let (i2, s2) = (irqs.clone(), stats.clone());
        vf.set_irq_handler(Some(Arc::new(move |v| i2.signal(v, &s2))));
        Backend {
            bar: vf.bar0(),
            config: ConfigSpace::new(vf.info().device_id),
            bar3: vec![0; config::BAR_SIZE as usize],
            dma: dma::DmaTable::default(),
            irqs,
            stats,
            vf,
        }
    }

    /// Function-level reset: the VF's own reset (VFCTRL.RST, facts §3.8), queues disabled,
    /// interrupts masked, MSI-X and bus mastering off in config space.
    fn function_reset(&mut self) {
        self.stats.resets.fetch_add(1, Ordering::Relaxed);
        self.reset_state();
    }

    /// The reset itself, uncounted (also used between clients).
    fn reset_state(&mut self) {
        for q in 0..regs::MAX_QUEUES {
            self.bar.write32(regs::rxq(q, regs::RXDCTL), 0);
            self.bar.write32(regs::txq(q, regs::TXDCTL), 0);
        }
        self.bar.write32(regs::VTEIMC, 0xFFFF_FFFF);
        self.bar.write32(regs::VFCTRL, regs::VFCTRL_RST);
        self.config.flr();
        self.bar3.fill(0);
        self.sync_bus_master();
    }

    /// Follows the command register's Bus Master Enable: without it the function can neither
    /// reach memory (its DMA ranges leave the IOMMU, so attempts are recorded faults) nor send
    /// MSI-X messages.
    fn sync_bus_master(&mut self) {
        let on = self.config.bus_master();
        if on != self.dma.active() {
            log::info!(
                "{}: bus mastering {}",
                self.vf_name(),
                if on {
                    "enabled"
                } else {
                    "disabled: no DMA, no MSI-X"
                }
            );
        }
        self.dma.set_active(self.vf.iommu(), on);
        self.irqs.bus_master.store(on, Ordering::Release);
    }

    /// BAR0 read of any size: whole dwords through the register file.
    fn bar0_read(&self, offset: u64, data: &mut [u8]) {
        let first = offset & !3;
        let end = offset + data.len() as u64;
        let mut dw = first;
        while dw < end {
            let v = if dw < config::BAR_SIZE {
                self.bar.read32(dw as u32).to_le_bytes()
            } else {
                [0; 4]
            };
            for (k, b) in v.iter().enumerate() {
                let at = dw + k as u64;
                if at >= offset && at < end {
                    data[(at - offset) as usize] = *b;
                }
            }
            dw += 4;
        }
    }

    /// BAR0 write of any size; partial dwords are read-modify-write.
    fn bar0_write(&self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        let mut dw = offset & !3;
        while dw < end && dw < config::BAR_SIZE {
            let whole = dw >= offset && dw + 4 <= end;
            let mut v = if whole {
                [0; 4]
            } else {
                log::debug!("BAR0 partial write at {offset:#x} ({} bytes)", data.len());
                self.bar.read32(dw as u32).to_le_bytes()
            };
            for (k, b) in v.iter_mut().enumerate() {
                let at = dw + k as u64;
                if at >= offset && at < end {
                    *b = data[(at - offset) as usize];
                }
            }
            self.bar.write32(dw as u32, u32::from_le_bytes(v));
            dw += 4;
        }
    }
}

impl ServerBackend for Backend {
    fn region_read(&mut self, region: u32, offset: u64, data: &mut [u8]) -> std::io::Result<()> {
        self.stats.region_reads.fetch_add(1, Ordering::Relaxed);
        match region {
            REGION_BAR0 => self.bar0_read(offset, data),
            REGION_BAR3 => {
                for (i, d) in data.iter_mut().enumerate() {
                    *d = self.bar3.get(offset as usize + i).copied().unwrap_or(0);
                }
            }
            REGION_CONFIG => self.config.read(offset, data),
            _ => data.fill(0),
        }
        Ok(())
    }

    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.stats.region_writes.fetch_add(1, Ordering::Relaxed);
        match region {
            REGION_BAR0 => self.bar0_write(offset, data),
            REGION_BAR3 => {
                for (i, d) in data.iter().enumerate() {
                    if let Some(b) = self.bar3.get_mut(offset as usize + i) {
                        *b = *d;
                    }
                }
            }
            REGION_CONFIG => {
                if self.config.write(offset, data) == ConfigEvent::Flr {
                    log::info!("{}: function-level reset (config write)", self.vf_name());
                    self.function_reset();
                }
                self.sync_bus_master();
            }
            _ => log::debug!("write to region {region} ignored"),
        }
        Ok(())
    }

    fn dma_map(
        &mut self,
        flags: DmaMapFlags,
        offset: u64,
        address: u64,
        size: u64,
        fd: Option<File>,
    ) -> std::io::Result<()> {
        self.stats.dma_maps.fetch_add(1, Ordering::Relaxed);
        log::trace!("DMA_MAP {address:#x}+{size:#x} offset {offset:#x} {flags:?}");
        self.dma
            .map(self.vf.iommu(), address, size, offset, fd)
            .inspect_err(|e| log::warn!("{}: {e}", self.vf_name()))
    }

    fn dma_unmap(&mut self, flags: DmaUnmapFlags, address: u64, size: u64) -> std::io::Result<()> {
        self.stats.dma_unmaps.fetch_add(1, Ordering::Relaxed);
        let all = flags.contains(DmaUnmapFlags::UNMAP_ALL);
        let n = self.dma.unmap(self.vf.iommu(), address, size, all);
        log::trace!("DMA_UNMAP {address:#x}+{size:#x} all={all}: {n:#x} bytes were mapped");
        Ok(())
    }

    fn reset(&mut self) -> std::io::Result<()> {
        log::info!("{}: DEVICE_RESET", self.vf_name());
        self.function_reset();
        Ok(())
    }

    fn set_irqs(
        &mut self,
        index: u32,
        flags: u32,
        start: u32,
        count: u32,
        fds: Vec<File>,
    ) -> std::io::Result<()> {
        let action = flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
        let data = flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
        log::debug!(
            "SET_IRQS index {index} flags {flags:#x} start {start} count {count} fds {}",
            fds.len()
        );
        match index {
            IRQ_MSIX => {
                let n = config::MSIX_VECTORS as u32;
                if action != VFIO_IRQ_SET_ACTION_TRIGGER {
                    // Masking is QEMU's job (it emulates the MSI-X table); accept and ignore.
                    return Ok(());
                }
                if data == VFIO_IRQ_SET_DATA_NONE && count == 0 {
                    *self.irqs.msix.write().unwrap_or_else(|e| e.into_inner()) = Default::default();
                    return Ok(());
                }
                if !matches!(start.checked_add(count), Some(e) if e <= n) {
                    return Err(einval(format!(
                        "SET_IRQS MSI-X start {start} count {count}: the VF has {n} vectors"
                    )));
                }
                if data == VFIO_IRQ_SET_DATA_NONE {
                    // Loopback trigger: fire the vectors now.
                    for v in start..start + count {
                        self.irqs.signal(v, &self.stats);
                    }
                    return Ok(());
                }
                if data != VFIO_IRQ_SET_DATA_EVENTFD {
                    return Err(einval(format!(
                        "SET_IRQS data type {data:#x} not supported"
                    )));
                }
                let mut fds = fds.into_iter();
                let mut table = self.irqs.msix.write().unwrap_or_else(|e| e.into_inner());
                for v in start..start + count {
                    // "Eventfd flag with no fd" unsets the vector.
                    table[v as usize] = fds.next();
                }
                Ok(())
            }
            IRQ_ERR | IRQ_REQ => {
                let slot = if index == IRQ_ERR {
                    &self.irqs.err
                } else {
                    &self.irqs.req
                };
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = fds.into_iter().next();
                Ok(())
            }
            _ => Err(einval(format!(
                "SET_IRQS on IRQ index {index}, which has no vectors"
            ))),
        }
    }
}

impl Backend {
    fn vf_name(&self) -> String {
        self.vf.info().location
    }
}

fn region(index: u32, size: u64, flags: u32) -> ServerRegion {
    ServerRegion {
        region_info: vfio_region_info {
            argsz: std::mem::size_of::<vfio_region_info>() as u32,
            flags,
            index,
            cap_offset: 0,
            size,
            offset: 0,
        },
        sparse_areas: Vec::new(),
        mmap_fd: None,
    }
}

fn regions() -> Vec<ServerRegion> {
    let rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
    (0..NUM_REGIONS)
        .map(|i| match i {
            REGION_BAR0 | REGION_BAR3 => region(i, config::BAR_SIZE, rw),
            REGION_CONFIG => region(i, config::CONFIG_SIZE as u64, rw),
            _ => region(i, 0, 0),
        })
        .collect()
}

fn irqs() -> Vec<IrqInfo> {
    (0..VFIO_PCI_NUM_IRQS)
        .map(|index| {
            let (flags, count) = match index {
                IRQ_MSIX => (
                    VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE,
                    config::MSIX_VECTORS as u32,
                ),
                IRQ_ERR | IRQ_REQ => (VFIO_IRQ_INFO_EVENTFD, 1),
                _ => (0, 0),
            };
            IrqInfo {
                index,
                flags,
                count,
            }
        })
        .collect()
}

/// A vfio-user server for one VF of the model.
pub struct UserServer {
    server: Server,
    path: PathBuf,
    backend: Backend,
    stats: Arc<ServeStats>,
}

impl std::fmt::Debug for UserServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserServer")
            .field("path", &self.path)
            .field("vf", &self.backend.vf)
            .finish_non_exhaustive()
    }
}

impl UserServer {
    /// Creates the socket at `path` and prepares to serve `vf`. A stale socket (a file nobody
    /// listens on) is removed first; a live one is [`ServeError::InUse`].
    ///
    /// From now until the server is dropped, the VF's interrupts go to the client's eventfds.
    pub fn bind(path: &Path, vf: SimVf) -> Result<UserServer, ServeError> {
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ServeError::InUse {
                    path: path.to_path_buf(),
                });
            }
            log::info!("removing stale socket {}", path.display());
            let _ = std::fs::remove_file(path);
        }
        let server =
            Server::new(path, true, irqs(), regions()).map_err(|source| ServeError::Bind {
                path: path.to_path_buf(),
                source,
            })?;
        let stats = Arc::new(ServeStats::default());
        Ok(UserServer {
            server,
            path: path.to_path_buf(),
            backend: Backend::new(vf, stats.clone()),
            stats,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Message counters (shared; they keep counting while the server runs).
    pub fn stats(&self) -> Arc<ServeStats> {
        self.stats.clone()
    }

    /// The served configuration space (a copy).
    pub fn config(&self) -> ConfigSpace {
        self.backend.config.clone()
    }

    /// Accepts one client and serves it on this thread until it hangs up. Afterwards every
    /// DMA mapping and eventfd of that client is dropped, so the next client starts clean.
    pub fn serve_one(&mut self) -> Result<(), ServeError> {
        // The crate unwraps a few things a client sends (the VERSION JSON's terminator, for
        // one); a malformed message must cost the connection, not the process.
        let server = &self.server;
        let backend = &mut self.backend;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| server.run(backend)));
        let b = &mut self.backend;
        log::info!(
            "{}: dropping the client's {} DMA ranges ({} bytes backed by fds)",
            b.vf_name(),
            b.dma.len(),
            b.dma.backed_bytes()
        );
        b.dma.unmap(b.vf.iommu(), 0, 0, true);
        b.irqs.clear();
        // The next client starts from a reset function: bus mastering off.
        b.reset_state();
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        log::info!(
            "{}: client gone; {}; DMA faults so far {}",
            b.vf_name(),
            self.stats.summary(),
            b.vf.dma_faults()
        );
        match r {
            Ok(r) => r.map_err(|source| ServeError::Serve {
                path: self.path.clone(),
                source,
            }),
            Err(p) => Err(ServeError::Malformed {
                path: self.path.clone(),
                what: p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into()),
            }),
        }
    }
}

impl Drop for UserServer {
    fn drop(&mut self) {
        self.backend.vf.set_irq_handler(None);
    }
}
