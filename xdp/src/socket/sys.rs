//! The system-call side of an AF_XDP socket: mappings, socket options, and [`XskCore`] (the
//! socket, its four mapped rings and the bind), shared by the socket that owns its UMEM and the
//! one that registers memory it is given.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use super::ring::Ring;
use super::{BindMode, SocketConfig, SocketError, XskMode};

/// How long `bind` retries while the queue is still claimed by a socket being released.
const BIND_BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn is_busy(e: &SocketError) -> bool {
    matches!(e, SocketError::Sys { source, .. } if source.raw_os_error() == Some(libc::EBUSY))
}

pub(crate) fn sys(what: &'static str) -> SocketError {
    SocketError::Sys {
        what,
        source: std::io::Error::last_os_error(),
    }
}

pub(crate) fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u32
    } else {
        4096
    }
}

/// One anonymous or socket mapping, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mmap {
    pub(crate) ptr: NonNull<u8>,
    pub(crate) len: usize,
}

impl Mmap {
    pub(crate) fn new(
        len: usize,
        flags: libc::c_int,
        fd: libc::c_int,
        off: libc::off_t,
        what: &'static str,
    ) -> Result<Mmap, SocketError> {
        // SAFETY: a fresh mapping at an address chosen by the kernel; no existing memory is
        // affected. The result is checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags | libc::MAP_POPULATE,
                fd,
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(sys(what));
        }
        Ok(Mmap {
            ptr: NonNull::new(p as *mut u8).ok_or_else(|| sys(what))?,
            len,
        })
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: ptr/len describe a mapping this value created and nobody uses after drop.
        unsafe { libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.len) };
    }
}

fn setsockopt<T>(
    fd: &OwnedFd,
    opt: libc::c_int,
    v: &T,
    what: &'static str,
) -> Result<(), SocketError> {
    // SAFETY: v points to a live T of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            opt,
            v as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(sys(what));
    }
    Ok(())
}

/// C structs of plain integers, for which all-zero bytes are a valid value.
///
/// # Safety
/// Implement only for such structs.
pub(crate) unsafe trait Plain {}
// SAFETY: all three are structs of u32/u64 fields (include/uapi/linux/if_xdp.h).
unsafe impl Plain for libc::xdp_mmap_offsets {}
// SAFETY: as above.
unsafe impl Plain for libc::xdp_options {}
// SAFETY: as above.
unsafe impl Plain for libc::xdp_statistics {}

pub(crate) fn getsockopt<T: Plain>(
    fd: &OwnedFd,
    opt: libc::c_int,
    what: &'static str,
) -> Result<(T, usize), SocketError> {
    // SAFETY: `T: Plain`, all-zero is a valid value.
    let mut v: T = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: v is a live T and len its size; the kernel writes at most len bytes.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            opt,
            &mut v as *mut T as *mut libc::c_void,
            &mut len,
        )
    };
    if r != 0 {
        return Err(sys(what));
    }
    Ok((v, len as usize))
}

/// The socket, its four rings and the mode obtained at bind. Field order is drop order: the
/// socket closes before the rings are unmapped.
pub(crate) struct XskCore {
    pub(crate) fd: OwnedFd,
    pub(crate) fill: Ring<u64>,
    pub(crate) comp: Ring<u64>,
    pub(crate) rx: Ring<libc::xdp_desc>,
    pub(crate) tx: Ring<libc::xdp_desc>,
    pub(crate) mode: XskMode,
    pub(crate) ifindex: u32,
    pub(crate) queue: u32,
}

impl XskCore {
    /// Creates the socket, registers `umem..umem + cfg.frame_count * cfg.chunk_size` as its
    /// UMEM (`flags`: `XDP_UMEM_UNALIGNED_CHUNK_FLAG` or 0) and maps the four rings. Not bound
    /// yet: the caller fills the fill ring first, then calls [`XskCore::bind`].
    ///
    /// # Safety
    /// `umem` is page-aligned and the start of a mapping of at least that many bytes that stays
    /// mapped while the socket lives; the kernel writes received frames into the chunks the
    /// caller puts in the fill ring.
    pub(crate) unsafe fn open(
        ifindex: u32,
        queue: u32,
        umem: NonNull<u8>,
        cfg: &SocketConfig,
        flags: u32,
    ) -> Result<XskCore, SocketError> {
        cfg.validate()?;
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(sys("socket(AF_XDP)"));
        }
        // SAFETY: a new fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let reg = libc::xdp_umem_reg {
            addr: umem.as_ptr() as u64,
            len: cfg.frame_count as u64 * cfg.chunk_size as u64,
            chunk_size: cfg.chunk_size,
            headroom: cfg.headroom,
            flags,
            tx_metadata_len: 0,
        };
        setsockopt(&fd, libc::XDP_UMEM_REG, &reg, "XDP_UMEM_REG")?;
        setsockopt(
            &fd,
            libc::XDP_UMEM_FILL_RING,
            &cfg.fill_size,
            "XDP_UMEM_FILL_RING",
        )?;
        setsockopt(
            &fd,
            libc::XDP_UMEM_COMPLETION_RING,
            &cfg.comp_size,
            "XDP_UMEM_COMPLETION_RING",
        )?;
        setsockopt(&fd, libc::XDP_RX_RING, &cfg.rx_size, "XDP_RX_RING")?;
        setsockopt(&fd, libc::XDP_TX_RING, &cfg.tx_size, "XDP_TX_RING")?;
        let (off, len): (libc::xdp_mmap_offsets, usize) =
            getsockopt(&fd, libc::XDP_MMAP_OFFSETS, "XDP_MMAP_OFFSETS")?;
        if len != std::mem::size_of::<libc::xdp_mmap_offsets>() {
            return Err(SocketError::Config(format!(
                "kernel returned {len}-byte ring offsets (no ring flags: kernel older than 5.4)"
            )));
        }
        let ring = |o: &libc::xdp_ring_offset, n: u32, entry: usize, pgoff: u64, what| {
            let len = o.desc as usize + n as usize * entry;
            Mmap::new(
                len,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                pgoff as libc::off_t,
                what,
            )
        };
        let fr = ring(
            &off.fr,
            cfg.fill_size,
            8,
            libc::XDP_UMEM_PGOFF_FILL_RING,
            "mmap fill ring",
        )?;
        let cr = ring(
            &off.cr,
            cfg.comp_size,
            8,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
            "mmap completion ring",
        )?;
        let rxm = ring(
            &off.rx,
            cfg.rx_size,
            16,
            libc::XDP_PGOFF_RX_RING as u64,
            "mmap RX ring",
        )?;
        let txm = ring(
            &off.tx,
            cfg.tx_size,
            16,
            libc::XDP_PGOFF_TX_RING as u64,
            "mmap TX ring",
        )?;
        // SAFETY: each mapping covers `desc + size * entry` bytes at the kernel-given offsets
        // and moves into its ring, which keeps it mapped.
        let (fill, comp, rx, tx) = unsafe {
            (
                Ring::from_raw(fr.ptr.as_ptr(), &off.fr, cfg.fill_size, Some(fr)),
                Ring::from_raw(cr.ptr.as_ptr(), &off.cr, cfg.comp_size, Some(cr)),
                Ring::from_raw(rxm.ptr.as_ptr(), &off.rx, cfg.rx_size, Some(rxm)),
                Ring::from_raw(txm.ptr.as_ptr(), &off.tx, cfg.tx_size, Some(txm)),
            )
        };
        Ok(XskCore {
            fd,
            fill,
            comp,
            rx,
            tx,
            mode: XskMode::Copy,
            ifindex,
            queue,
        })
    }

    /// Binds to the interface and queue in the requested mode and reads the mode obtained.
    pub(crate) fn bind(&mut self, cfg: &SocketConfig) -> Result<(), SocketError> {
        let wake = if cfg.need_wakeup {
            libc::XDP_USE_NEED_WAKEUP
        } else {
            0
        };
        let try_bind = |flags: u16| -> Result<(), SocketError> {
            let sa = libc::sockaddr_xdp {
                sxdp_family: libc::AF_XDP as u16,
                sxdp_flags: flags | wake,
                sxdp_ifindex: self.ifindex,
                sxdp_queue_id: self.queue,
                sxdp_shared_umem_fd: 0,
            };
            // SAFETY: sa is a valid sockaddr_xdp of the size passed.
            let r = unsafe {
                libc::bind(
                    self.fd.as_raw_fd(),
                    &sa as *const libc::sockaddr_xdp as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
                )
            };
            if r != 0 {
                return Err(sys("bind"));
            }
            Ok(())
        };
        let once = || -> Result<(), SocketError> {
            match cfg.bind {
                BindMode::ZeroCopy => try_bind(libc::XDP_ZEROCOPY),
                BindMode::Copy => try_bind(libc::XDP_COPY),
                BindMode::Auto => match try_bind(libc::XDP_ZEROCOPY) {
                    Err(e) if !is_busy(&e) => {
                        log::info!(
                            "AF_XDP ifindex {} queue {}: no zero copy ({e}), using copy mode",
                            self.ifindex,
                            self.queue
                        );
                        try_bind(libc::XDP_COPY)
                    }
                    r => r,
                },
            }
        };
        // The kernel releases a closed socket's claim on the queue asynchronously (a deferred
        // work item frees the buffer pool), so a bind right after a previous owner closed or
        // died can see EBUSY for a moment: retry for up to BIND_BUSY_WAIT.
        let deadline = std::time::Instant::now() + BIND_BUSY_WAIT;
        loop {
            match once() {
                Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                    log::debug!("AF_XDP bind: queue {} busy, retrying", self.queue);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                r => break r?,
            }
        }
        // A kernel without XDP_OPTIONS (before 5.3) has no zero copy to report.
        let flags = getsockopt::<libc::xdp_options>(&self.fd, libc::XDP_OPTIONS, "XDP_OPTIONS")
            .map_or(0, |(o, _)| o.flags);
        self.mode = if flags & libc::XDP_OPTIONS_ZEROCOPY != 0 {
            XskMode::ZeroCopy
        } else {
            XskMode::Copy
        };
        log::info!(
            "AF_XDP socket bound to ifindex {} queue {} in {} mode",
            self.ifindex,
            self.queue,
            self.mode
        );
        Ok(())
    }

    /// Wakes the kernel's receive side (a zero-length `recvfrom`).
    pub(crate) fn wake_rx(&self) {
        // SAFETY: a zero-length recvfrom on our socket: no buffer is touched.
        unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }

    /// Kicks the kernel's transmit side (a zero-length `sendto`).
    pub(crate) fn kick_tx(&self) {
        // SAFETY: a zero-length sendto on our socket kicks TX processing; no buffer is read.
        unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
    }

    /// Index moves beyond a ring's size seen so far, all four rings.
    pub(crate) fn overruns(&self) -> u64 {
        self.fill.overruns + self.comp.overruns + self.rx.overruns + self.tx.overruns
    }

    /// The kernel's counters (`XDP_STATISTICS`), `None` if it refuses.
    pub(crate) fn kernel_stats(&self) -> Option<libc::xdp_statistics> {
        getsockopt::<libc::xdp_statistics>(&self.fd, libc::XDP_STATISTICS, "XDP_STATISTICS")
            .ok()
            .map(|(k, _)| k)
    }

    /// Puts this socket into `xskmap` at its queue index.
    pub(crate) fn register(&self, xskmap: &crate::bpf::Map) -> Result<(), SocketError> {
        xskmap.update(
            &self.queue.to_ne_bytes(),
            &self.fd.as_raw_fd().to_ne_bytes(),
        )?;
        Ok(())
    }
}
