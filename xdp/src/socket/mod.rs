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

use std::os::fd::{AsFd, BorrowedFd};

use crate::bpf::{BpfError, Map};

mod external;
mod ring;
mod sys;

pub use external::{RxDesc, UmemSocket};
use sys::{Mmap, XskCore};

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
    pub(crate) fn validate(&self) -> Result<(), SocketError> {
        let page = sys::page_size();
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
    core: XskCore,
    umem: Mmap,
    cfg: SocketConfig,
    owner: Vec<Owner>,
    free: Vec<u64>,
    stats: SocketStats,
}

// SAFETY: the socket owns its mappings exclusively; the raw pointers are only dereferenced
// through `&mut self` (or `&self` for reads of data we own), so moving it to another thread is
// sound. It is not `Sync`.
unsafe impl Send for XskSocket {}

impl std::fmt::Debug for XskSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskSocket")
            .field("fd", &self.core.fd)
            .field("ifindex", &self.core.ifindex)
            .field("queue", &self.core.queue)
            .field("mode", &self.core.mode)
            .finish_non_exhaustive()
    }
}

impl XskSocket {
    /// Creates the socket and UMEM, maps the rings, fills the fill ring and binds to
    /// `ifindex`/`queue` in the requested mode (see [`XskSocket::mode`] for what was obtained).
    /// The socket receives nothing until it is registered in the XSKMAP of an attached XDP
    /// program ([`XskSocket::register`]).
    pub fn new(ifindex: u32, queue: u32, cfg: SocketConfig) -> Result<XskSocket, SocketError> {
        cfg.validate()?;
        let umem_len = cfg.frame_count as usize * cfg.chunk_size as usize;
        let umem = Mmap::new(
            umem_len,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
            "mmap UMEM",
        )?;
        // SAFETY: `umem` is a fresh page-aligned mapping of frame_count * chunk_size bytes; it
        // moves into the socket, whose field order closes the socket before unmapping it.
        let core = unsafe { XskCore::open(ifindex, queue, umem.ptr, &cfg, 0)? };
        let mut s = XskSocket {
            core,
            umem,
            owner: vec![Owner::Free; cfg.frame_count as usize],
            free: (0..cfg.frame_count as u64)
                .rev()
                .map(|i| i * cfg.chunk_size as u64)
                .collect(),
            cfg,
            stats: SocketStats::default(),
        };
        s.refill();
        s.core.bind(&s.cfg)?;
        Ok(s)
    }

    /// Puts this socket into `xskmap` at its queue index, so the XDP program's
    /// `bpf_redirect_map(&xsks, rx_queue_index, ..)` reaches it.
    pub fn register(&self, xskmap: &Map) -> Result<(), SocketError> {
        self.core.register(xskmap)
    }

    /// The mode obtained at bind.
    pub fn mode(&self) -> XskMode {
        self.core.mode
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.core.ifindex
    }

    /// The queue.
    pub fn queue(&self) -> u32 {
        self.core.queue
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
        self.core.fill.pending()
    }

    fn chunk_of(&self, addr: u64) -> Option<usize> {
        let i = addr / self.cfg.chunk_size as u64;
        (i < self.cfg.frame_count as u64).then_some(i as usize)
    }

    /// Moves free chunks into the fill ring, as many as fit.
    fn refill(&mut self) {
        let n = self.core.fill.free().min(self.free.len() as u32) as usize;
        if n == 0 {
            return;
        }
        let start = self.free.len() - n;
        let put = self.core.fill.produce(self.free[start..].iter().copied()) as usize;
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
            let n = self.core.rx.consume(want, |d| {
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
        if got == 0 && self.cfg.need_wakeup && self.core.fill.needs_wakeup() {
            self.core.wake_rx();
        }
        got
    }

    /// Waits up to `timeout_ms` for received frames (`poll(2)` on the socket). Returns `true`
    /// if the RX ring is not empty.
    pub fn poll_rx(&self, timeout_ms: i32) -> bool {
        let mut p = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&self.core.fd),
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
        let room = self.core.tx.free() as usize;
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
            queued = self.core.tx.produce(descs.into_iter()) as usize;
        }
        self.stats.tx_frames += queued as u64;
        if queued > 0 && (!self.cfg.need_wakeup || self.core.tx.needs_wakeup()) {
            self.core.kick_tx();
        }
        taken
    }

    /// Collects sent chunks from the completion ring into the free list; returns how many.
    pub fn complete(&mut self) -> usize {
        let chunk = self.cfg.chunk_size as u64;
        let mut addrs = Vec::new();
        self.core
            .comp
            .consume(self.cfg.comp_size, |a| addrs.push(a));
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
        s.ring_overruns = self.core.overruns();
        if let Some(k) = self.core.kernel_stats() {
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
        self.core.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
