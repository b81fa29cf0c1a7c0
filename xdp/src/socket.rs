//! AF_XDP sockets: the UMEM, the four rings, and a burst API.
//!
//! Layout and protocol follow the Linux UAPI header `include/uapi/linux/if_xdp.h` and
//! `Documentation/networking/af_xdp.rst` (the `libc` crate supplies the structs and constants):
//!
//! * The **UMEM** is one anonymous mapping cut into `frame_count` chunks of `chunk_size` bytes
//!   (aligned mode). It is registered with `XDP_UMEM_REG` with a `headroom`: the kernel writes a
//!   received frame at `chunk + headroom + XDP_PACKET_HEADROOM (256)`, so the first `headroom`
//!   bytes of every chunk are ours. That area is the frame's metadata headroom, the same
//!   contract as the PMD's packet buffers (`docs/soft-rss.md`, the headroom record at offset 0).
//! * Four single-producer/single-consumer **rings** are mapped from the socket: fill (we give
//!   chunks to the kernel for reception), RX (the kernel gives back received frames), TX (we
//!   give frames to send) and completion (the kernel gives back sent chunks). The producer
//!   publishes entries with a release store of its index, the consumer reads the other side's
//!   index with an acquire load.
//! * Nothing from the kernel is trusted: every RX descriptor and completion address is checked
//!   against the UMEM and against the chunk's ownership before a slice is made; bad ones are
//!   counted ([`SocketStats`]) and skipped.
//!
//! Chunk ownership is tracked per chunk (with the kernel, in user hands, queued for TX, free), so
//! a [`Frame`] — a plain copyable address and length — cannot be released or sent twice.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::bpf::{BpfError, Map};

/// Bytes the kernel keeps in front of every received frame beyond our headroom
/// (`XDP_PACKET_HEADROOM`, include/linux/bpf.h / include/uapi/linux/bpf.h usage in xsk).
pub const XDP_PACKET_HEADROOM: u32 = 256;

/// Errors of AF_XDP socket set-up.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// A system call failed.
    #[error("AF_XDP {what} failed: {source}")]
    Sys {
        /// Which step (`socket`, `XDP_UMEM_REG`, `mmap RX ring`, `bind`, ...).
        what: &'static str,
        /// The errno.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is not usable.
    #[error("AF_XDP configuration: {0}")]
    Config(String),
    /// Registering the socket in the XSKMAP failed.
    #[error("registering the AF_XDP socket in the XSKMAP: {0}")]
    Map(#[from] BpfError),
}

/// How long `bind` retries while the queue is still claimed by a socket being released.
const BIND_BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn is_busy(e: &SocketError) -> bool {
    matches!(e, SocketError::Sys { source, .. } if source.raw_os_error() == Some(libc::EBUSY))
}

fn sys(what: &'static str) -> SocketError {
    SocketError::Sys {
        what,
        source: std::io::Error::last_os_error(),
    }
}

/// Which bind mode to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindMode {
    /// Zero copy if the driver supports it, else copy mode.
    #[default]
    Auto,
    /// Zero copy only (`XDP_ZEROCOPY`); fails where the driver lacks it.
    ZeroCopy,
    /// Copy mode (`XDP_COPY`), which every interface supports.
    Copy,
}

/// The mode a socket obtained (from `XDP_OPTIONS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XskMode {
    /// The NIC DMAs straight into the UMEM.
    ZeroCopy,
    /// The kernel copies each frame into the UMEM.
    Copy,
}

impl std::fmt::Display for XskMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            XskMode::ZeroCopy => "zero-copy",
            XskMode::Copy => "copy",
        })
    }
}

/// Socket and UMEM parameters.
#[derive(Debug, Clone)]
pub struct SocketConfig {
    /// Number of UMEM chunks.
    pub frame_count: u32,
    /// Chunk size: a power of two from 2048 to the page size.
    pub chunk_size: u32,
    /// Metadata headroom at the start of each chunk (the PMD pools' default is 128 bytes).
    pub headroom: u32,
    /// Fill ring entries (power of two).
    pub fill_size: u32,
    /// Completion ring entries (power of two).
    pub comp_size: u32,
    /// RX ring entries (power of two).
    pub rx_size: u32,
    /// TX ring entries (power of two).
    pub tx_size: u32,
    /// Zero copy, copy, or whichever works.
    pub bind: BindMode,
    /// Ask for `XDP_USE_NEED_WAKEUP` (the kernel says when it needs a system call).
    pub need_wakeup: bool,
}

impl Default for SocketConfig {
    fn default() -> Self {
        SocketConfig {
            frame_count: 4096,
            chunk_size: 2048,
            headroom: 128,
            fill_size: 2048,
            comp_size: 2048,
            rx_size: 2048,
            tx_size: 2048,
            bind: BindMode::Auto,
            need_wakeup: true,
        }
    }
}

impl SocketConfig {
    fn validate(&self) -> Result<(), SocketError> {
        let page = page_size();
        if !self.chunk_size.is_power_of_two() || self.chunk_size < 2048 || self.chunk_size > page {
            return Err(SocketError::Config(format!(
                "chunk_size {} must be a power of two from 2048 to the page size {page}",
                self.chunk_size
            )));
        }
        if self.headroom + XDP_PACKET_HEADROOM + 64 > self.chunk_size {
            return Err(SocketError::Config(format!(
                "headroom {} leaves no room for a frame in a {}-byte chunk",
                self.headroom, self.chunk_size
            )));
        }
        for (n, v) in [
            ("fill_size", self.fill_size),
            ("comp_size", self.comp_size),
            ("rx_size", self.rx_size),
            ("tx_size", self.tx_size),
        ] {
            if !v.is_power_of_two() {
                return Err(SocketError::Config(format!(
                    "{n} {v} must be a power of two"
                )));
            }
        }
        if self.frame_count == 0 || self.frame_count as u64 * self.chunk_size as u64 > 1 << 34 {
            return Err(SocketError::Config(format!(
                "frame_count {} must be 1 or more and the UMEM at most 16 GiB",
                self.frame_count
            )));
        }
        Ok(())
    }

    /// Largest frame a chunk can receive: `chunk_size - headroom - XDP_PACKET_HEADROOM`.
    /// Longer frames are dropped by the kernel (counted in `rx_dropped`).
    pub fn max_frame(&self) -> u32 {
        self.chunk_size - self.headroom - XDP_PACKET_HEADROOM
    }
}

fn page_size() -> u32 {
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
struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mmap {
    fn new(
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

/// One ring: producer and consumer indices, flags, and `size` entries of `T`.
struct Ring<T> {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    descs: NonNull<T>,
    size: u32,
    /// Entries the other side claimed beyond `size` (a kernel that breaks the protocol).
    overruns: u64,
    _map: Option<Mmap>,
}

impl<T: Copy> Ring<T> {
    /// # Safety
    /// The pointers must be valid, suitably aligned, and stay valid while the ring lives
    /// (`map` keeps them mapped); `descs` must have `size` entries.
    unsafe fn from_raw(
        base: *mut u8,
        off: &libc::xdp_ring_offset,
        size: u32,
        map: Option<Mmap>,
    ) -> Ring<T> {
        let at = |o: u64| {
            // SAFETY: the kernel's ring offsets lie inside the mapping `base` starts (the
            // caller's contract).
            NonNull::new(unsafe { base.add(o as usize) }).expect("mapping is not null")
        };
        Ring {
            producer: at(off.producer).cast(),
            consumer: at(off.consumer).cast(),
            flags: at(off.flags).cast(),
            descs: at(off.desc).cast(),
            size,
            overruns: 0,
            _map: map,
        }
    }

    fn prod(&self) -> &AtomicU32 {
        // SAFETY: valid for the ring's life (from_raw's contract).
        unsafe { self.producer.as_ref() }
    }
    fn cons(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { self.consumer.as_ref() }
    }

    fn needs_wakeup(&self) -> bool {
        // SAFETY: as above.
        let f = unsafe { self.flags.as_ref() }.load(Ordering::Relaxed);
        f & libc::XDP_RING_NEED_WAKEUP != 0
    }

    /// Producer side: how many entries we may still add.
    fn free(&self) -> u32 {
        let prod = self.prod().load(Ordering::Relaxed);
        let cons = self.cons().load(Ordering::Acquire);
        self.size.saturating_sub(prod.wrapping_sub(cons))
    }

    /// Producer side: entries added and not yet taken by the other side.
    fn pending(&self) -> u32 {
        let prod = self.prod().load(Ordering::Relaxed);
        let cons = self.cons().load(Ordering::Acquire);
        prod.wrapping_sub(cons).min(self.size)
    }

    /// Producer side: adds as many of `items` as fit; returns how many.
    fn produce(&mut self, items: impl Iterator<Item = T>) -> u32 {
        let free = self.free();
        let prod = self.prod().load(Ordering::Relaxed);
        let mut n = 0;
        for item in items.take(free as usize) {
            let i = prod.wrapping_add(n) & (self.size - 1);
            // SAFETY: i < size; the entry is ours until the producer index passes it.
            unsafe { self.descs.as_ptr().add(i as usize).write_volatile(item) };
            n += 1;
        }
        if n > 0 {
            self.prod().store(prod.wrapping_add(n), Ordering::Release);
        }
        n
    }

    /// Consumer side: hands up to `max` entries to `f`; returns how many.
    fn consume(&mut self, max: u32, mut f: impl FnMut(T)) -> u32 {
        let cons = self.cons().load(Ordering::Relaxed);
        let prod = self.prod().load(Ordering::Acquire);
        let mut avail = prod.wrapping_sub(cons);
        if avail > self.size {
            self.overruns += 1;
            avail = self.size;
        }
        let n = avail.min(max);
        for k in 0..n {
            let i = cons.wrapping_add(k) & (self.size - 1);
            // SAFETY: i < size; the entry was published by the producer (acquire above).
            f(unsafe { self.descs.as_ptr().add(i as usize).read_volatile() });
        }
        if n > 0 {
            self.cons().store(cons.wrapping_add(n), Ordering::Release);
        }
        n
    }
}

/// A received (or to-be-sent) frame: an address and length inside the socket's UMEM.
/// Read it with [`XskSocket::data`]; give it back with [`XskSocket::release`] or send it with
/// [`XskSocket::tx_burst`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Frame {
    addr: u64,
    len: u32,
}

impl Frame {
    /// UMEM offset of the first byte.
    pub fn addr(&self) -> u64 {
        self.addr
    }
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }
    /// `true` for a zero-length frame.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// In the fill ring or being received.
    Kernel,
    /// Handed out as a [`Frame`].
    User,
    /// Queued for transmission (TX or completion ring).
    Tx,
    /// In our free list.
    Free,
}

/// Counters of one socket: ours and the kernel's (`XDP_STATISTICS`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketStats {
    /// Frames handed out by `rx_burst`.
    pub rx_frames: u64,
    /// Frames queued by `tx_burst`.
    pub tx_frames: u64,
    /// Sent chunks returned by `complete`.
    pub tx_completed: u64,
    /// RX descriptors refused (outside the UMEM, across a chunk, or for a chunk the kernel
    /// did not own).
    pub bad_rx_desc: u64,
    /// Completion addresses refused.
    pub bad_completion: u64,
    /// `release` or `tx_burst` of a frame that was not handed out (twice, or forged).
    pub bad_frame: u64,
    /// Times a ring index moved by more than the ring's size.
    pub ring_overruns: u64,
    /// Kernel: frames dropped for lack of a fill entry, too long for a chunk, and so on.
    pub rx_dropped: u64,
    /// Kernel: invalid descriptors on the fill ring.
    pub rx_invalid_descs: u64,
    /// Kernel: invalid descriptors on the TX ring.
    pub tx_invalid_descs: u64,
    /// Kernel: frames dropped because the RX ring was full.
    pub rx_ring_full: u64,
    /// Kernel: times the fill ring was found empty.
    pub rx_fill_ring_empty: u64,
    /// Kernel: times the TX ring was found empty.
    pub tx_ring_empty: u64,
}

/// An AF_XDP socket bound to one queue of one interface, with its own UMEM.
pub struct XskSocket {
    // Field order is drop order: the socket closes before the rings and UMEM are unmapped.
    fd: OwnedFd,
    fill: Ring<u64>,
    comp: Ring<u64>,
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    umem: Mmap,
    cfg: SocketConfig,
    owner: Vec<Owner>,
    free: Vec<u64>,
    mode: XskMode,
    ifindex: u32,
    queue: u32,
    stats: SocketStats,
}

// SAFETY: the socket owns its mappings exclusively; the raw pointers are only dereferenced
// through `&mut self` (or `&self` for reads of data we own), so moving it to another thread is
// sound. It is not `Sync`.
unsafe impl Send for XskSocket {}

impl std::fmt::Debug for XskSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskSocket")
            .field("fd", &self.fd)
            .field("ifindex", &self.ifindex)
            .field("queue", &self.queue)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
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
unsafe trait Plain {}
// SAFETY: all three are structs of u32/u64 fields (include/uapi/linux/if_xdp.h).
unsafe impl Plain for libc::xdp_mmap_offsets {}
// SAFETY: as above.
unsafe impl Plain for libc::xdp_options {}
// SAFETY: as above.
unsafe impl Plain for libc::xdp_statistics {}

fn getsockopt<T: Plain>(
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

impl XskSocket {
    /// Creates the socket and UMEM, maps the rings, fills the fill ring and binds to
    /// `ifindex`/`queue` in the requested mode (see [`XskSocket::mode`] for what was obtained).
    /// The socket receives nothing until it is registered in the XSKMAP of an attached XDP
    /// program ([`XskSocket::register`]).
    pub fn new(ifindex: u32, queue: u32, cfg: SocketConfig) -> Result<XskSocket, SocketError> {
        cfg.validate()?;
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(sys("socket(AF_XDP)"));
        }
        // SAFETY: a new fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let umem_len = cfg.frame_count as usize * cfg.chunk_size as usize;
        let umem = Mmap::new(
            umem_len,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
            "mmap UMEM",
        )?;
        let reg = libc::xdp_umem_reg {
            addr: umem.ptr.as_ptr() as u64,
            len: umem_len as u64,
            chunk_size: cfg.chunk_size,
            headroom: cfg.headroom,
            flags: 0,
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
        let mut s = XskSocket {
            fd,
            fill,
            comp,
            rx,
            tx,
            umem,
            owner: vec![Owner::Free; cfg.frame_count as usize],
            free: (0..cfg.frame_count as u64)
                .rev()
                .map(|i| i * cfg.chunk_size as u64)
                .collect(),
            cfg,
            mode: XskMode::Copy,
            ifindex,
            queue,
            stats: SocketStats::default(),
        };
        s.refill();
        s.bind()?;
        Ok(s)
    }

    fn bind(&mut self) -> Result<(), SocketError> {
        let wake = if self.cfg.need_wakeup {
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
            match self.cfg.bind {
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

    /// Puts this socket into `xskmap` at its queue index, so the XDP program's
    /// `bpf_redirect_map(&xsks, rx_queue_index, ..)` reaches it.
    pub fn register(&self, xskmap: &Map) -> Result<(), SocketError> {
        xskmap.update(
            &self.queue.to_ne_bytes(),
            &self.fd.as_raw_fd().to_ne_bytes(),
        )?;
        Ok(())
    }

    /// The mode obtained at bind.
    pub fn mode(&self) -> XskMode {
        self.mode
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The queue.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// The configuration in use.
    pub fn config(&self) -> &SocketConfig {
        &self.cfg
    }

    /// Chunks in our free list (neither with the kernel nor handed out).
    pub fn free_frames(&self) -> usize {
        self.free.len()
    }

    /// Entries in the fill ring the kernel has not taken yet.
    pub fn fill_pending(&self) -> u32 {
        self.fill.pending()
    }

    fn chunk_of(&self, addr: u64) -> Option<usize> {
        let i = addr / self.cfg.chunk_size as u64;
        (i < self.cfg.frame_count as u64).then_some(i as usize)
    }

    /// Moves free chunks into the fill ring, as many as fit.
    fn refill(&mut self) {
        let n = self.fill.free().min(self.free.len() as u32) as usize;
        if n == 0 {
            return;
        }
        let start = self.free.len() - n;
        let put = self.fill.produce(self.free[start..].iter().copied()) as usize;
        for &a in &self.free[start..start + put] {
            let i = (a / self.cfg.chunk_size as u64) as usize;
            self.owner[i] = Owner::Kernel;
        }
        // Entries not accepted (cannot happen: n <= free) stay at the end of the list.
        self.free.drain(start..start + put);
    }

    /// Receives up to `out.len()` frames into `out`, returns how many. The frames stay valid
    /// until given back with [`XskSocket::release`] or [`XskSocket::tx_burst`]. Refills the
    /// fill ring from free chunks, and wakes the kernel if it asked for it.
    pub fn rx_burst(&mut self, out: &mut [Frame]) -> usize {
        let chunk = self.cfg.chunk_size as u64;
        let umem_len = self.umem.len as u64;
        let mut got = 0usize;
        let mut descs = [libc::xdp_desc {
            addr: 0,
            len: 0,
            options: 0,
        }; 64];
        while got < out.len() {
            let want = (out.len() - got).min(descs.len()) as u32;
            let mut k = 0;
            let n = self.rx.consume(want, |d| {
                descs[k] = d;
                k += 1;
            });
            if n == 0 {
                break;
            }
            for d in &descs[..n as usize] {
                let end = d.addr.checked_add(d.len as u64);
                let idx = self.chunk_of(d.addr);
                let ok = match (idx, end) {
                    (Some(i), Some(end)) => {
                        end <= umem_len
                            && end <= (i as u64 + 1) * chunk
                            && d.len > 0
                            && self.owner[i] == Owner::Kernel
                    }
                    _ => false,
                };
                if ok {
                    let i = idx.expect("checked");
                    self.owner[i] = Owner::User;
                    out[got] = Frame {
                        addr: d.addr,
                        len: d.len,
                    };
                    got += 1;
                } else {
                    self.stats.bad_rx_desc += 1;
                    if let Some(i) = idx.filter(|&i| self.owner[i] == Owner::Kernel) {
                        self.owner[i] = Owner::Free;
                        self.free.push(i as u64 * chunk);
                    }
                }
            }
        }
        self.stats.rx_frames += got as u64;
        self.refill();
        if got == 0 && self.cfg.need_wakeup && self.fill.needs_wakeup() {
            self.wake_rx();
        }
        got
    }

    fn wake_rx(&self) {
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

    /// Waits up to `timeout_ms` for received frames (`poll(2)` on the socket). Returns `true`
    /// if the RX ring is not empty.
    pub fn poll_rx(&self, timeout_ms: i32) -> bool {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        r > 0 && p.revents & libc::POLLIN != 0
    }

    /// Validates a frame handed out by this socket; returns its chunk index.
    fn user_chunk(&self, f: &Frame) -> Option<usize> {
        let i = self.chunk_of(f.addr)?;
        let end = f.addr.checked_add(f.len as u64)?;
        let chunk_end = (i as u64 + 1) * self.cfg.chunk_size as u64;
        (self.owner[i] == Owner::User && end <= chunk_end).then_some(i)
    }

    /// The frame's bytes, or `None` if `f` is not a frame this socket handed out.
    pub fn data(&self, f: &Frame) -> Option<&[u8]> {
        self.user_chunk(f)?;
        // SAFETY: user_chunk checked addr..addr+len lies inside one chunk of the UMEM, which
        // the kernel does not write while the chunk is in user hands.
        Some(unsafe {
            std::slice::from_raw_parts(self.umem.ptr.as_ptr().add(f.addr as usize), f.len())
        })
    }

    /// The frame's bytes, writable.
    pub fn data_mut(&mut self, f: &Frame) -> Option<&mut [u8]> {
        self.user_chunk(f)?;
        // SAFETY: as in `data`; `&mut self` makes the borrow exclusive.
        Some(unsafe {
            std::slice::from_raw_parts_mut(self.umem.ptr.as_ptr().add(f.addr as usize), f.len())
        })
    }

    /// The metadata headroom of the frame's chunk: the first `headroom` bytes of the chunk
    /// (the kernel never writes there). The headroom record of `docs/soft-rss.md` goes at
    /// offset 0.
    pub fn headroom_mut(&mut self, f: &Frame) -> Option<&mut [u8]> {
        let i = self.user_chunk(f)?;
        let start = i * self.cfg.chunk_size as usize;
        // SAFETY: the chunk is inside the UMEM and in user hands; headroom < chunk_size
        // (validated), so the slice stays within the chunk and before the frame's data.
        Some(unsafe {
            std::slice::from_raw_parts_mut(
                self.umem.ptr.as_ptr().add(start),
                self.cfg.headroom as usize,
            )
        })
    }

    /// Gives frames back to the kernel for reception; returns how many were accepted (frames
    /// not handed out by this socket, or given twice, are counted in `bad_frame`).
    pub fn release(&mut self, frames: &[Frame]) -> usize {
        let mut n = 0;
        for f in frames {
            match self.user_chunk(f) {
                Some(i) => {
                    self.owner[i] = Owner::Free;
                    self.free.push(i as u64 * self.cfg.chunk_size as u64);
                    n += 1;
                }
                None => self.stats.bad_frame += 1,
            }
        }
        self.refill();
        n
    }

    /// A free chunk to build a frame of `len` bytes in for [`XskSocket::tx_burst`] (the data
    /// sits where a received frame's would). `None` if no chunk is free or `len` is too long.
    pub fn alloc_tx(&mut self, len: usize) -> Option<Frame> {
        if len > self.cfg.max_frame() as usize || len == 0 {
            return None;
        }
        let base = self.free.pop()?;
        let i = (base / self.cfg.chunk_size as u64) as usize;
        self.owner[i] = Owner::User;
        Some(Frame {
            addr: base + (self.cfg.headroom + XDP_PACKET_HEADROOM) as u64,
            len: len as u32,
        })
    }

    /// Queues frames for transmission, from the front of `frames`, as many as the TX ring
    /// takes; returns how many were taken (invalid frames are taken, counted in `bad_frame`
    /// and not sent). Kicks the kernel when it needs it. Sent chunks come back through
    /// [`XskSocket::complete`].
    pub fn tx_burst(&mut self, frames: &[Frame]) -> usize {
        let room = self.tx.free() as usize;
        let mut taken = 0;
        let mut queued = 0;
        let mut descs = Vec::with_capacity(room.min(frames.len()));
        for f in frames {
            if descs.len() == room {
                break;
            }
            taken += 1;
            match self.user_chunk(f) {
                Some(i) => {
                    self.owner[i] = Owner::Tx;
                    descs.push(libc::xdp_desc {
                        addr: f.addr,
                        len: f.len,
                        options: 0,
                    });
                }
                None => self.stats.bad_frame += 1,
            }
        }
        if !descs.is_empty() {
            queued = self.tx.produce(descs.into_iter()) as usize;
        }
        self.stats.tx_frames += queued as u64;
        if queued > 0 && (!self.cfg.need_wakeup || self.tx.needs_wakeup()) {
            // SAFETY: a zero-length sendto on our socket kicks TX processing.
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
        taken
    }

    /// Collects sent chunks from the completion ring into the free list; returns how many.
    pub fn complete(&mut self) -> usize {
        let chunk = self.cfg.chunk_size as u64;
        let mut addrs = Vec::new();
        self.comp.consume(self.cfg.comp_size, |a| addrs.push(a));
        let mut n = 0;
        for a in addrs {
            match self.chunk_of(a).filter(|&i| self.owner[i] == Owner::Tx) {
                Some(i) => {
                    self.owner[i] = Owner::Free;
                    self.free.push(i as u64 * chunk);
                    n += 1;
                }
                None => self.stats.bad_completion += 1,
            }
        }
        self.stats.tx_completed += n as u64;
        self.refill();
        n
    }

    /// Our counters and the kernel's (`XDP_STATISTICS`; zero if the kernel refuses).
    pub fn stats(&self) -> SocketStats {
        let mut s = self.stats;
        s.ring_overruns =
            self.fill.overruns + self.comp.overruns + self.rx.overruns + self.tx.overruns;
        if let Ok((k, _)) =
            getsockopt::<libc::xdp_statistics>(&self.fd, libc::XDP_STATISTICS, "XDP_STATISTICS")
        {
            s.rx_dropped = k.rx_dropped;
            s.rx_invalid_descs = k.rx_invalid_descs;
            s.tx_invalid_descs = k.tx_invalid_descs;
            s.rx_ring_full = k.rx_ring_full;
            s.rx_fill_ring_empty = k.rx_fill_ring_empty_descs;
            s.tx_ring_empty = k.tx_ring_empty_descs;
        }
        s
    }
}

impl AsFd for XskSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ring memory laid out like the kernel's, on the heap.
    #[repr(C)]
    struct FakeRing<T, const N: usize> {
        producer: AtomicU32,
        consumer: AtomicU32,
        flags: AtomicU32,
        descs: [T; N],
    }

    fn fake<T: Copy, const N: usize>(init: T) -> (Box<FakeRing<T, N>>, Ring<T>) {
        let mut b = Box::new(FakeRing {
            producer: AtomicU32::new(0),
            consumer: AtomicU32::new(0),
            flags: AtomicU32::new(0),
            descs: [init; N],
        });
        let off = libc::xdp_ring_offset {
            producer: std::mem::offset_of!(FakeRing<T, N>, producer) as u64,
            consumer: std::mem::offset_of!(FakeRing<T, N>, consumer) as u64,
            flags: std::mem::offset_of!(FakeRing<T, N>, flags) as u64,
            desc: std::mem::offset_of!(FakeRing<T, N>, descs) as u64,
        };
        // SAFETY: the box outlives the ring in each test (returned together, ring dropped
        // first by declaration order at the call sites), and holds N entries.
        let r = unsafe {
            Ring::from_raw(
                &mut *b as *mut FakeRing<T, N> as *mut u8,
                &off,
                N as u32,
                None,
            )
        };
        (b, r)
    }

    #[test]
    fn full_producer_ring_takes_nothing_more() {
        let (mem, mut r) = fake::<u64, 8>(0);
        assert_eq!(r.produce(0..5u64), 5);
        assert_eq!(r.produce(10..20u64), 3, "only 3 slots left");
        assert_eq!(r.free(), 0);
        assert_eq!(r.produce(20..21u64), 0, "full ring");
        assert_eq!(mem.producer.load(Ordering::Relaxed), 8);
        // The consumer takes 2; 2 slots free again, written at the wrapped positions.
        mem.consumer.store(2, Ordering::Release);
        assert_eq!(r.produce(30..40u64), 2);
        assert_eq!(mem.descs, [30, 31, 2, 3, 4, 10, 11, 12]);
        drop(r);
    }

    #[test]
    fn empty_consumer_ring_yields_nothing() {
        let (mut mem, mut r) = fake::<u64, 4>(0);
        let mut seen = Vec::new();
        assert_eq!(r.consume(16, |a| seen.push(a)), 0);
        mem.descs = [7, 8, 9, 10];
        mem.producer.store(3, Ordering::Release);
        assert_eq!(r.consume(2, |a| seen.push(a)), 2);
        assert_eq!(r.consume(16, |a| seen.push(a)), 1);
        assert_eq!(r.consume(16, |a| seen.push(a)), 0);
        assert_eq!(seen, [7, 8, 9]);
        assert_eq!(mem.consumer.load(Ordering::Relaxed), 3);
        drop(r);
    }

    #[test]
    fn lying_producer_index_is_clamped_and_counted() {
        let (mem, mut r) = fake::<u64, 4>(1);
        mem.producer.store(1000, Ordering::Release);
        let mut n = 0;
        assert_eq!(
            r.consume(u32::MAX, |_| n += 1),
            4,
            "never more than the ring holds"
        );
        assert_eq!(r.overruns, 1);
        drop(r);
    }

    #[test]
    fn config_is_checked() {
        let bad = SocketConfig {
            chunk_size: 3000,
            ..Default::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("power of two"));
        let bad = SocketConfig {
            headroom: 1900,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let bad = SocketConfig {
            rx_size: 100,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("rx_size"));
        assert_eq!(SocketConfig::default().max_frame(), 2048 - 128 - 256);
    }
}
