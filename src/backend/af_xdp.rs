//! The AF_XDP backend: one AF_XDP socket per receive queue of a Linux interface, whose UMEM *is*
//! the packet pool's memory, so a received frame becomes a [`Packet`] without a copy.
//!
//! Layout (aligned-chunk mode, see `docs/af_xdp.md`): each queue has its own
//! [`Mempool::with_layout`] pool of `chunk_size`-byte buffers (2048 by default), registered as
//! the socket's UMEM with a UMEM headroom of 0. The kernel writes a frame at
//! `chunk + XDP_PACKET_HEADROOM (256)`, which is exactly the pool's data offset; the pool's
//! metadata headroom (128 bytes by default) is the end of those 256 bytes, right in front of the
//! data as `docs/soft-rss.md` wants. The kernel writes nothing there on its own (only an XDP
//! program calling `bpf_xdp_adjust_head/meta` would, and ours does not), and never while a
//! buffer is in our hands.
//!
//! Ownership of each buffer: in the pool's free list, handed out as a [`Packet`] (dropped on any
//! thread, it goes back to the pool), with the kernel (fill ring, being received), or queued for
//! transmission (TX ring until its completion). A per-buffer state byte records the last two,
//! so a descriptor or completion the kernel should not have sent is refused and counted, never
//! turned into a second handle to the same buffer. `rx_burst` tops the fill ring up from the
//! pool, completions go back to the pool.
//!
//! Counters: a descriptor we refuse (outside the UMEM, not at the data offset, empty or longer
//! than the data room, for a buffer the kernel did not hold) is an `rx_error`, as is the
//! kernel's `rx_invalid_descs`. Frames the kernel could not deliver (`rx_dropped`: no buffer in
//! the fill ring, or a frame longer than a chunk; `rx_ring_full`: we did not keep up) are the
//! NIC's "missed" frames of the VF backend: published through [`XskBackend::missed_counter`].
//!
//! [`Packet`]: floodgate_pmd::Packet

use super::{BackendError, PacketBackend, TxOutcome};
use floodgate_pmd::{Maintenance, Mempool, PacketBatch, PoolLayout};
use floodgate_vfio::HugePages;
use floodgate_xdp::socket::XDP_PACKET_HEADROOM;
use floodgate_xdp::{BindMode, Map, RxDesc, SocketConfig, SocketError, UmemSocket, XskMode};
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Buffer states kept per pool buffer (free or handed out is "ours").
const OURS: u8 = 0;
/// In the fill ring or being received into.
const KERNEL: u8 = 1;
/// In the TX ring until its completion.
const TX: u8 = 2;

/// Descriptors handled per ring operation.
const CHUNK: usize = 64;

/// Settings of the AF_XDP backend.
#[derive(Debug, Clone)]
pub struct XskConfig {
    /// Interface name.
    pub ifname: String,
    /// Sockets on queues `0..queues`.
    pub queues: u32,
    /// Zero copy, copy, or zero copy with a fallback to copy.
    pub bind: BindMode,
    /// Buffers per queue (pool size): the fill ring's share plus what the loop, the workers'
    /// rings and the TX ring may hold.
    pub buffers: u32,
    /// Chunk (buffer) size: 2048, or 4096 for frames up to 3840 bytes.
    pub chunk_size: u32,
    /// Metadata headroom in front of the data (at most 256).
    pub headroom: usize,
    /// Entries of the RX and fill rings (power of two).
    pub rx_ring: u32,
    /// Entries of the TX and completion rings (power of two).
    pub tx_ring: u32,
    /// Huge pages for the pools.
    pub huge_pages: HugePages,
}

impl XskConfig {
    /// Defaults for `queues` queues of `ifname`: 8192 buffers of 2048 bytes per queue, 128 bytes
    /// of headroom, rings of 2048 entries, zero copy where the driver has it.
    pub fn new(ifname: &str, queues: u32) -> XskConfig {
        XskConfig {
            ifname: ifname.into(),
            queues,
            bind: BindMode::Auto,
            buffers: 8192,
            chunk_size: 2048,
            headroom: floodgate_pmd::DEFAULT_HEADROOM,
            rx_ring: 2048,
            tx_ring: 2048,
            huge_pages: HugePages::Auto,
        }
    }
}

/// Why the backend could not start.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    /// No such interface.
    #[error("AF_XDP: no interface named {0:?}")]
    NoInterface(String),
    /// The settings do not fit together.
    #[error("AF_XDP: {0}")]
    Config(String),
    /// The packet pool of a queue.
    #[error("AF_XDP queue {queue}: packet pool")]
    Pool {
        /// The queue.
        queue: u32,
        /// The pool's error.
        #[source]
        source: floodgate_pmd::Error,
    },
    /// The socket of a queue.
    #[error("AF_XDP {ifname} queue {queue}")]
    Socket {
        /// The interface.
        ifname: String,
        /// The queue.
        queue: u32,
        /// The socket's error.
        #[source]
        source: SocketError,
    },
}

/// Counters of one queue kept by the backend (the kernel's are read in `maintain`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XskQueueStats {
    /// Frames handed to the loop.
    pub rx_packets: u64,
    /// RX descriptors refused (see the module docs).
    pub bad_rx_desc: u64,
    /// Completion addresses refused.
    pub bad_completion: u64,
    /// Frames put on the TX ring.
    pub tx_packets: u64,
    /// Sent frames whose buffers came back.
    pub tx_completed: u64,
    /// Kernel: frames dropped for want of a buffer or too long for a chunk.
    pub kernel_rx_dropped: u64,
    /// Kernel: frames dropped because the RX ring was full.
    pub kernel_rx_ring_full: u64,
    /// Kernel: invalid RX descriptors.
    pub kernel_rx_invalid: u64,
    /// Kernel: invalid TX descriptors.
    pub kernel_tx_invalid: u64,
}

/// Why [`check_rx`] refused a descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadDesc {
    /// The address is outside the UMEM: no buffer to give back.
    Outside,
    /// Buffer `index`: the frame is not at the data offset, empty, or longer than the data room.
    Frame(u32),
}

/// Checks one RX descriptor against the pool layout; returns the buffer index. A frame must
/// start exactly at the data offset of its buffer (the program never moves the data start) and
/// be 1..=`data_room` bytes long, which also keeps it inside its chunk.
#[inline(always)]
pub fn check_rx(
    d: RxDesc,
    stride: u64,
    data_off: u64,
    data_room: u32,
    count: u32,
) -> Result<u32, BadDesc> {
    let index = d.addr / stride;
    if index >= u64::from(count) {
        return Err(BadDesc::Outside);
    }
    let index = index as u32;
    if d.addr % stride != data_off || d.len == 0 || d.len > data_room {
        return Err(BadDesc::Frame(index));
    }
    Ok(index)
}

/// One queue: its socket over its pool.
struct Queue {
    /// Closed first in `Drop` (before any buffer the kernel held goes back to the pool).
    sock: ManuallyDrop<UmemSocket>,
    pool: Mempool,
    state: Vec<u8>,
    stride: u64,
    data_off: u64,
    data_room: u32,
    count: u32,
    in_kernel: u32,
    in_tx: u64,
    queue: u32,
    /// `tx_burst` scratch: TX ring room left, descriptors gathered in `descs`.
    tx_room: usize,
    tx_pending: usize,
    idx: [u32; CHUNK],
    addrs: [u64; CHUNK],
    descs: [RxDesc; CHUNK],
    stats: XskQueueStats,
}

impl Queue {
    fn open(ifindex: u32, queue: u32, cfg: &XskConfig) -> Result<Queue, XskError> {
        let pool = Mempool::with_layout(&PoolLayout {
            buffers: cfg.buffers,
            stride: cfg.chunk_size as usize,
            data_off: XDP_PACKET_HEADROOM as usize,
            headroom: cfg.headroom,
            huge_pages: cfg.huge_pages,
        })
        .map_err(|source| XskError::Pool { queue, source })?;
        let sock_cfg = SocketConfig {
            frame_count: cfg.buffers,
            chunk_size: cfg.chunk_size,
            headroom: 0,
            fill_size: cfg.rx_ring,
            comp_size: cfg.tx_ring,
            rx_size: cfg.rx_ring,
            tx_size: cfg.tx_ring,
            bind: cfg.bind,
            need_wakeup: true,
        };
        let sock_err = |source| XskError::Socket {
            ifname: cfg.ifname.clone(),
            queue,
            source,
        };
        let base = NonNull::new(pool.region().as_ptr()).expect("a mapped region is not null");
        // SAFETY: the region is page-aligned (an mmap) and holds buffers * chunk_size bytes;
        // the queue keeps the pool (hence the region) alive and closes the socket before it
        // lets the pool go (Drop below). The kernel only writes chunks we put in the fill ring.
        let sock = unsafe { UmemSocket::new(ifindex, queue, base, sock_cfg) }.map_err(sock_err)?;
        let mut q = Queue {
            sock: ManuallyDrop::new(sock),
            state: vec![OURS; cfg.buffers as usize],
            stride: pool.stride() as u64,
            data_off: pool.data_offset() as u64,
            data_room: pool.data_room() as u32,
            count: pool.capacity(),
            pool,
            in_kernel: 0,
            in_tx: 0,
            queue,
            tx_room: 0,
            tx_pending: 0,
            idx: [0; CHUNK],
            addrs: [0; CHUNK],
            descs: [RxDesc::default(); CHUNK],
            stats: XskQueueStats::default(),
        };
        q.refill();
        match q.sock.bind() {
            Err(SocketError::Sys { what, source })
                if source.raw_os_error() == Some(libc::EINVAL) =>
            {
                return Err(XskError::Config(format!(
                    "{} queue {queue}: {what} refused ({source}): does {} have {} RX queue(s)? \
                     (`ethtool -l {}`; a veth has as many as its peer was created with)",
                    cfg.ifname, cfg.ifname, cfg.queues, cfg.ifname
                )))
            }
            r => r.map_err(sock_err)?,
        }
        Ok(q)
    }

    /// Moves free pool buffers into the fill ring, as many as it has room for.
    fn refill(&mut self) {
        let mut room = self.sock.fill_room() as usize;
        while room > 0 {
            let n = self.pool.alloc_raw(&mut self.idx[..room.min(CHUNK)]);
            if n == 0 {
                break;
            }
            for (a, &i) in self.addrs.iter_mut().zip(&self.idx[..n]) {
                *a = u64::from(i) * self.stride;
                self.state[i as usize] = KERNEL;
            }
            // SAFETY: the buffers came off the free list, so they are ours; each is inside the
            // UMEM (index < count) and marked KERNEL until it comes back in an RX descriptor.
            let put = unsafe { self.sock.fill(&self.addrs[..n]) };
            if put < n {
                // Cannot happen (n <= room), but never lose a buffer.
                for &i in &self.idx[put..n] {
                    self.state[i as usize] = OURS;
                }
                // SAFETY: these buffers were not given to the kernel; they are still ours.
                unsafe { self.pool.free_raw(&self.idx[put..n]) };
            }
            self.in_kernel += put as u32;
            room -= n;
            if put < n {
                break;
            }
        }
    }

    fn rx_burst(&mut self, batch: &mut PacketBatch) -> usize {
        self.refill();
        let mut got = 0;
        loop {
            let want = batch.free_slots().min(CHUNK);
            if want == 0 {
                break;
            }
            let n = self.sock.receive(&mut self.descs[..want]);
            let mut back = 0;
            for k in 0..n {
                let d = self.descs[k];
                match check_rx(d, self.stride, self.data_off, self.data_room, self.count) {
                    Ok(i) if self.state[i as usize] == KERNEL => {
                        self.state[i as usize] = OURS;
                        self.in_kernel -= 1;
                        // SAFETY: the kernel held buffer i (state KERNEL) and gave it back in
                        // this descriptor; check_rx bounded index and length. Ownership passes
                        // to the packet.
                        let p = unsafe { self.pool.packet_from_raw(i, d.len as usize) };
                        if let Err(p) = batch.push(p) {
                            drop(p); // cannot happen: want <= free_slots
                        }
                        got += 1;
                    }
                    Err(BadDesc::Frame(i)) if self.state[i as usize] == KERNEL => {
                        self.stats.bad_rx_desc += 1;
                        self.state[i as usize] = OURS;
                        self.in_kernel -= 1;
                        self.idx[back] = i;
                        back += 1;
                    }
                    _ => self.stats.bad_rx_desc += 1,
                }
            }
            if back > 0 {
                // SAFETY: each was a KERNEL buffer the kernel returned; now ours, given back.
                unsafe { self.pool.free_raw(&self.idx[..back]) };
            }
            if n < want {
                break;
            }
        }
        self.stats.rx_packets += got as u64;
        if got == 0 {
            self.sock.wake_if_needed();
        }
        got
    }

    /// Takes sent buffers off the completion ring back to the pool.
    fn reclaim(&mut self) {
        loop {
            let n = self.sock.completions(&mut self.addrs);
            let mut back = 0;
            for k in 0..n {
                let i = self.addrs[k] / self.stride;
                if i < u64::from(self.count) && self.state[i as usize] == TX {
                    self.state[i as usize] = OURS;
                    self.idx[back] = i as u32;
                    back += 1;
                } else {
                    self.stats.bad_completion += 1;
                }
            }
            if back > 0 {
                // SAFETY: each was a TX buffer the kernel has finished with; ours again.
                unsafe { self.pool.free_raw(&self.idx[..back]) };
            }
            self.in_tx -= back as u64;
            self.stats.tx_completed += back as u64;
            if n < CHUNK {
                break;
            }
        }
    }

    /// Puts the buffers of `descs[..n]` (state TX already) on the TX ring.
    fn send(&mut self, n: usize) -> usize {
        // SAFETY: each descriptor is a whole packet of this pool (index < count, len <=
        // data_room, at the data offset) whose handle was given up by `into_raw_index`; marked
        // TX until its completion.
        let put = unsafe { self.sock.transmit(&self.descs[..n]) };
        for d in &self.descs[put..n] {
            // Cannot happen (n <= tx_room), but never lose a buffer.
            let i = (d.addr / self.stride) as u32;
            self.state[i as usize] = OURS;
            // SAFETY: not given to the kernel; still ours.
            unsafe { self.pool.free_raw(&[i]) };
        }
        self.in_tx += put as u64;
        self.stats.tx_packets += put as u64;
        put
    }

    fn read_kernel_stats(&mut self) {
        let k = self.sock.stats();
        self.stats.kernel_rx_dropped = k.rx_dropped;
        self.stats.kernel_rx_ring_full = k.rx_ring_full;
        self.stats.kernel_rx_invalid = k.rx_invalid_descs;
        self.stats.kernel_tx_invalid = k.tx_invalid_descs;
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        let mode = self.sock.mode();
        // SAFETY: dropped exactly once, here; `sock` is not used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.sock) };
        // Closing the socket unbinds it, and the kernel waits for receptions in flight
        // (synchronize_net) before close returns: in copy mode nothing writes the UMEM any more,
        // so the buffers the kernel held are ours again. In zero-copy mode the driver releases
        // its queue in deferred work, so those buffers stay out (the pool then keeps its memory).
        if mode == XskMode::Copy {
            let held: Vec<u32> = (0..self.count)
                .filter(|&i| self.state[i as usize] != OURS)
                .collect();
            // SAFETY: the socket is closed, so the kernel holds none of them any more.
            unsafe { self.pool.free_raw(&held) };
        } else {
            log::debug!(
                "AF_XDP queue {}: {} buffers stay with the zero-copy driver",
                self.queue,
                self.in_kernel as u64 + self.in_tx
            );
        }
    }
}

/// AF_XDP sockets on queues `0..N` of one interface, each with its own pool (see the module
/// docs). Implements [`PacketBackend`].
pub struct XskBackend {
    ifname: String,
    ifindex: u32,
    queues: Vec<Queue>,
    mode: XskMode,
    missed: Arc<AtomicU64>,
}

impl std::fmt::Debug for XskBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskBackend")
            .field("ifname", &self.ifname)
            .field("ifindex", &self.ifindex)
            .field("queues", &self.queues.len())
            .field("mode", &self.mode)
            .finish()
    }
}

impl XskBackend {
    /// Opens one socket per queue, fills their fill rings and binds them. Frames arrive once
    /// the sockets are in the XSKMAP of an attached program ([`XskBackend::register`]).
    pub fn open(cfg: &XskConfig) -> Result<XskBackend, XskError> {
        if cfg.queues == 0 || cfg.queues > 256 {
            return Err(XskError::Config(format!(
                "queues = {}: must be 1..=256",
                cfg.queues
            )));
        }
        if cfg.chunk_size != 2048 && cfg.chunk_size != 4096 {
            return Err(XskError::Config(format!(
                "chunk size {}: must be 2048 or 4096",
                cfg.chunk_size
            )));
        }
        if cfg.headroom > XDP_PACKET_HEADROOM as usize {
            return Err(XskError::Config(format!(
                "headroom {} bytes: at most {XDP_PACKET_HEADROOM}",
                cfg.headroom
            )));
        }
        let ifindex = floodgate_xdp::ifindex(&cfg.ifname)
            .ok_or_else(|| XskError::NoInterface(cfg.ifname.clone()))?;
        let queues = (0..cfg.queues)
            .map(|q| Queue::open(ifindex, q, cfg))
            .collect::<Result<Vec<_>, _>>()?;
        let mode = if queues.iter().all(|q| q.sock.mode() == XskMode::ZeroCopy) {
            XskMode::ZeroCopy
        } else {
            XskMode::Copy
        };
        log::info!(
            "AF_XDP backend on {} (ifindex {ifindex}): {} queue(s) in {mode} mode, {} buffers of \
             {} bytes per queue",
            cfg.ifname,
            queues.len(),
            cfg.buffers,
            cfg.chunk_size
        );
        Ok(XskBackend {
            ifname: cfg.ifname.clone(),
            ifindex,
            queues,
            mode,
            missed: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Puts every socket into `xskmap` at its queue index (the steering program's map).
    pub fn register(&self, xskmap: &Map) -> Result<(), XskError> {
        for q in &self.queues {
            q.sock.register(xskmap).map_err(|source| XskError::Socket {
                ifname: self.ifname.clone(),
                queue: q.sock.queue(),
                source,
            })?;
        }
        Ok(())
    }

    /// The interface.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The mode in use (zero copy only if every socket got it).
    pub fn xsk_mode(&self) -> XskMode {
        self.mode
    }

    /// Frames the kernel could not deliver to the sockets (no buffer, RX ring full, longer
    /// than a chunk), summed over the queues and refreshed by `maintain`: the daemon's
    /// "NIC missed" figure for this backend.
    pub fn missed_counter(&self) -> Arc<AtomicU64> {
        self.missed.clone()
    }

    /// Our and the kernel's counters of queue `q` (kernel ones as of the last `maintain`).
    pub fn queue_stats(&self, q: usize) -> Option<XskQueueStats> {
        self.queues.get(q).map(|q| q.stats)
    }

    /// Waits up to `timeout_ms` for frames on queue `q` (`poll(2)`).
    pub fn poll_rx(&self, q: usize, timeout_ms: i32) -> bool {
        self.queues
            .get(q)
            .is_some_and(|q| q.sock.poll_rx(timeout_ms))
    }
}

impl PacketBackend for XskBackend {
    fn kind(&self) -> &'static str {
        "af_xdp"
    }

    fn mode(&self) -> &'static str {
        match self.mode {
            XskMode::ZeroCopy => "zero-copy",
            XskMode::Copy => "copy",
        }
    }

    fn rx_queues(&self) -> usize {
        self.queues.len()
    }

    fn tx_queues(&self) -> usize {
        self.queues.len()
    }

    #[inline]
    fn rx_burst(&mut self, queue: usize, batch: &mut PacketBatch) -> usize {
        match self.queues.get_mut(queue) {
            Some(q) => q.rx_burst(batch),
            None => 0,
        }
    }

    /// A packet goes out on the socket whose pool holds it (a socket can only send from its
    /// own UMEM), normally `queue`'s; a packet of no queue's pool is refused.
    fn tx_burst(&mut self, queue: usize, batch: &mut PacketBatch) -> TxOutcome {
        let mut out = TxOutcome::default();
        if self.queues.is_empty() {
            out.refused = batch.len();
            batch.clear();
            return out;
        }
        let home = queue.min(self.queues.len() - 1);
        for q in &mut self.queues {
            q.reclaim();
            q.tx_room = q.sock.tx_room() as usize;
            q.tx_pending = 0;
        }
        for p in batch.drain() {
            let qi = if self.queues[home].pool.owns(&p) {
                Some(home)
            } else {
                self.queues.iter().position(|q| q.pool.owns(&p))
            };
            let Some(q) = qi.map(|qi| &mut self.queues[qi]) else {
                out.refused += 1;
                continue; // dropped: its buffer goes back to its own pool
            };
            if q.tx_room == 0 {
                out.ring_full += 1;
                continue; // dropped: the buffer goes back to the pool
            }
            let (i, len) = p.into_raw_index();
            q.state[i as usize] = TX;
            q.descs[q.tx_pending] = RxDesc {
                addr: u64::from(i) * q.stride + q.data_off,
                len: len as u32,
            };
            q.tx_pending += 1;
            q.tx_room -= 1;
            if q.tx_pending == CHUNK {
                out.sent += q.send(CHUNK);
                q.tx_pending = 0;
            }
        }
        for q in &mut self.queues {
            if q.tx_pending > 0 {
                out.sent += q.send(q.tx_pending);
                q.tx_pending = 0;
            }
        }
        out
    }

    fn tx_outstanding(&mut self, queue: usize) -> u64 {
        match self.queues.get_mut(queue) {
            Some(q) => {
                q.reclaim();
                q.in_tx
            }
            None => 0,
        }
    }

    fn rx_errors(&self) -> u64 {
        self.queues
            .iter()
            .map(|q| q.stats.bad_rx_desc + q.stats.kernel_rx_invalid)
            .sum()
    }

    fn maintain(&mut self) -> Result<Maintenance, BackendError> {
        if floodgate_xdp::ifindex(&self.ifname) != Some(self.ifindex) {
            return Err(BackendError::Other {
                what: format!("AF_XDP: interface {} is gone", self.ifname),
                transient: false,
                source: None,
            });
        }
        let mut missed = 0;
        for q in &mut self.queues {
            q.reclaim();
            q.read_kernel_stats();
            missed += q.stats.kernel_rx_dropped + q.stats.kernel_rx_ring_full;
        }
        self.missed.store(missed, Ordering::Relaxed);
        Ok(Maintenance::default())
    }

    fn pool_free(&self) -> u64 {
        self.queues
            .iter()
            .map(|q| u64::from(q.pool.available()))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRIDE: u64 = 2048;
    const OFF: u64 = 256;
    const ROOM: u32 = 1792;

    fn check(addr: u64, len: u32) -> Result<u32, BadDesc> {
        check_rx(RxDesc { addr, len }, STRIDE, OFF, ROOM, 16)
    }

    #[test]
    fn descriptors_at_the_data_offset_are_accepted() {
        assert_eq!(check(OFF, 60), Ok(0));
        assert_eq!(check(15 * STRIDE + OFF, ROOM), Ok(15), "a full data room");
    }

    #[test]
    fn frames_larger_than_a_chunk_are_refused_and_their_buffer_named() {
        assert_eq!(check(3 * STRIDE + OFF, ROOM + 1), Err(BadDesc::Frame(3)));
        assert_eq!(check(3 * STRIDE + OFF, 9000), Err(BadDesc::Frame(3)));
        assert_eq!(check(3 * STRIDE + OFF, u32::MAX), Err(BadDesc::Frame(3)));
    }

    #[test]
    fn misplaced_empty_and_outside_descriptors_are_refused() {
        assert_eq!(check(2 * STRIDE + OFF + 2, 60), Err(BadDesc::Frame(2)));
        assert_eq!(check(2 * STRIDE, 60), Err(BadDesc::Frame(2)));
        assert_eq!(check(2 * STRIDE + OFF, 0), Err(BadDesc::Frame(2)));
        assert_eq!(check(16 * STRIDE + OFF, 60), Err(BadDesc::Outside));
        assert_eq!(check(u64::MAX, 60), Err(BadDesc::Outside));
    }
}
