//! An AF_XDP socket over memory it is given: the UMEM is a region another owner cuts into
//! buffers (the daemon's packet pool, `floodgate_pmd::Mempool::with_layout`), and buffer
//! ownership stays with that owner. The socket only moves addresses through the four rings;
//! which chunk may go where is the caller's business, which is why putting a chunk in the fill
//! or TX ring is `unsafe`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::ptr::NonNull;

use super::sys::XskCore;
use super::{SocketConfig, SocketError, SocketStats, XskMode};
use crate::bpf::Map;

/// A frame in the UMEM: offset of its first byte from the UMEM start, and length. Received
/// descriptors come straight from the kernel and are not checked here: check them against
/// the UMEM and your ownership records before touching the bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxDesc {
    /// Offset of the first byte from the UMEM start.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
}

/// An AF_XDP socket whose UMEM is memory the caller owns (aligned chunks of
/// `SocketConfig::chunk_size` bytes, `frame_count` of them, starting at the address given to
/// [`UmemSocket::new`]).
///
/// Use: `new`, put chunks in the fill ring ([`UmemSocket::fill`]), [`UmemSocket::bind`],
/// [`UmemSocket::register`] in the XSKMAP of the attached program; then per burst
/// [`UmemSocket::receive`], [`UmemSocket::fill`], [`UmemSocket::wake_if_needed`], and for
/// transmit [`UmemSocket::transmit`] and [`UmemSocket::completions`].
pub struct UmemSocket {
    core: XskCore,
    cfg: SocketConfig,
    descs: Box<[libc::xdp_desc; 64]>,
}

// SAFETY: the socket owns its ring mappings exclusively and touches them only through
// `&mut self` (or `&self` for index loads); the UMEM is the caller's, who keeps it valid. Moving
// the socket to another thread is sound; it is not `Sync`.
unsafe impl Send for UmemSocket {}

impl std::fmt::Debug for UmemSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UmemSocket")
            .field("fd", &self.core.fd)
            .field("ifindex", &self.core.ifindex)
            .field("queue", &self.core.queue)
            .field("mode", &self.core.mode)
            .finish_non_exhaustive()
    }
}

impl UmemSocket {
    /// Creates the socket, registers `frame_count * chunk_size` bytes at `umem` as its UMEM
    /// (aligned mode: chunk `i` is `umem + i * chunk_size`; the kernel writes a received frame
    /// at `chunk + cfg.headroom + XDP_PACKET_HEADROOM`) and maps the rings. Not bound yet.
    ///
    /// # Safety
    /// `umem` is page-aligned and the start of at least `frame_count * chunk_size` bytes of
    /// mapped memory that stays mapped for the life of the socket. The kernel pins those pages
    /// and writes into the chunks given to [`UmemSocket::fill`].
    pub unsafe fn new(
        ifindex: u32,
        queue: u32,
        umem: NonNull<u8>,
        cfg: SocketConfig,
    ) -> Result<UmemSocket, SocketError> {
        if umem.as_ptr() as usize & (super::sys::page_size() as usize - 1) != 0 {
            return Err(SocketError::Config(
                "the UMEM must start on a page boundary".into(),
            ));
        }
        // SAFETY: forwarded contract (page-aligned, mapped for the socket's life).
        let core = unsafe { XskCore::open(ifindex, queue, umem, &cfg, 0)? };
        Ok(UmemSocket {
            core,
            cfg,
            descs: Box::new(
                [libc::xdp_desc {
                    addr: 0,
                    len: 0,
                    options: 0,
                }; 64],
            ),
        })
    }

    /// Binds to the interface and queue in the configured mode (fill the fill ring first: a
    /// zero-copy driver takes buffers at bind).
    pub fn bind(&mut self) -> Result<(), SocketError> {
        self.core.bind(&self.cfg)
    }

    /// Puts this socket into `xskmap` at its queue index.
    pub fn register(&self, xskmap: &Map) -> Result<(), SocketError> {
        self.core.register(xskmap)
    }

    /// The mode obtained at bind.
    pub fn mode(&self) -> XskMode {
        self.core.mode
    }

    /// The queue.
    pub fn queue(&self) -> u32 {
        self.core.queue
    }

    /// The configuration in use.
    pub fn config(&self) -> &SocketConfig {
        &self.cfg
    }

    /// Free entries in the fill ring.
    pub fn fill_room(&self) -> u32 {
        self.core.fill.free()
    }

    /// Entries in the fill ring the kernel has not taken yet.
    pub fn fill_pending(&self) -> u32 {
        self.core.fill.pending()
    }

    /// Gives chunks to the kernel for reception, as many of `addrs` as the fill ring takes
    /// (one index store); returns how many were taken, from the front.
    ///
    /// # Safety
    /// Each address lies inside the UMEM, the caller owns that chunk and gives it to the
    /// kernel: nothing reads or writes it until it comes back in a [`UmemSocket::receive`]
    /// descriptor (or the socket is closed), and it is not in the fill or TX ring already.
    pub unsafe fn fill(&mut self, addrs: &[u64]) -> usize {
        self.core.fill.produce(addrs.iter().copied()) as usize
    }

    /// Wakes the kernel's receive side if it asked for it (`XDP_USE_NEED_WAKEUP`: the fill ring
    /// ran dry); returns whether a system call was made.
    pub fn wake_if_needed(&self) -> bool {
        if !self.cfg.need_wakeup || self.core.fill.needs_wakeup() {
            self.core.wake_rx();
            return true;
        }
        false
    }

    /// Takes up to `out.len()` received descriptors off the RX ring; returns how many. Not
    /// checked: see [`RxDesc`].
    pub fn receive(&mut self, out: &mut [RxDesc]) -> usize {
        let mut got = 0;
        while got < out.len() {
            let want = (out.len() - got).min(self.descs.len()) as u32;
            let descs = &mut self.descs;
            let mut k = 0;
            let n = self.core.rx.consume(want, |d| {
                descs[k] = d;
                k += 1;
            }) as usize;
            for (o, d) in out[got..got + n].iter_mut().zip(&descs[..n]) {
                *o = RxDesc {
                    addr: d.addr,
                    len: d.len,
                };
            }
            got += n;
            if n < want as usize {
                break;
            }
        }
        got
    }

    /// Free entries in the TX ring.
    pub fn tx_room(&self) -> u32 {
        self.core.tx.free()
    }

    /// Queues frames for transmission, as many from the front of `frames` as the TX ring
    /// takes (one index store), and kicks the kernel when it needs it; returns how many.
    /// Their chunks come back through [`UmemSocket::completions`].
    ///
    /// # Safety
    /// Each frame lies inside one chunk of the UMEM that the caller owns and gives to the
    /// kernel until its address comes back from `completions`: nothing writes it meanwhile,
    /// and it is not in the fill ring.
    pub unsafe fn transmit(&mut self, frames: &[RxDesc]) -> usize {
        let n = self.core.tx.produce(frames.iter().map(|f| libc::xdp_desc {
            addr: f.addr,
            len: f.len,
            options: 0,
        })) as usize;
        if n > 0 && (!self.cfg.need_wakeup || self.core.tx.needs_wakeup()) {
            self.core.kick_tx();
        }
        n
    }

    /// Takes up to `out.len()` addresses of sent frames off the completion ring; returns how
    /// many. Not checked: match them against what was transmitted.
    pub fn completions(&mut self, out: &mut [u64]) -> usize {
        let mut k = 0;
        self.core.comp.consume(out.len() as u32, |a| {
            out[k] = a;
            k += 1;
        });
        k
    }

    /// The kernel's counters (`XDP_STATISTICS`) and the ring overruns seen; the other fields of
    /// [`SocketStats`] are the caller's to keep and stay 0 here.
    pub fn stats(&self) -> SocketStats {
        let mut s = SocketStats {
            ring_overruns: self.core.overruns(),
            ..Default::default()
        };
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

    /// Waits up to `timeout_ms` for received frames (`poll(2)`); `true` if the RX ring is not
    /// empty.
    pub fn poll_rx(&self, timeout_ms: i32) -> bool {
        let mut p = libc::pollfd {
            fd: self.core.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        r > 0 && p.revents & libc::POLLIN != 0
    }
}

impl AsFd for UmemSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.core.fd.as_fd()
    }
}
