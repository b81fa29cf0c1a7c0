//! Packet buffers: a lock-free pool of fixed-size buffers in one DMA region, and [`Packet`], the
//! owned handle to one buffer.
//!
//! Buffer layout (every buffer, `stride` bytes apart):
//!
//! ```text
//! | pad (to 64 B) | headroom (0..=256 B, application metadata) | data room (packet bytes) |
//!                                                              ^ 64-byte aligned
//! ```
//!
//! The packet data always starts on a cache line; the headroom is exactly the configured size
//! and sits immediately in front of it. The free list is a lock-free MPMC ring of buffer indices
//! ([`crate::ring`]), so a packet can be dropped on any thread and its buffer goes straight back.
//! Nothing is reference-counted per packet: the pool's memory is kept alive while any buffer is
//! out (if the last [`Mempool`] handle is dropped while packets are still alive, the memory is
//! leaked with a warning instead of freed, which keeps every outstanding packet valid).

use crate::ring::IndexRing;
use crate::Error;
use floodgate_vfio::{DmaOptions, DmaRegion, HugePages};
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

/// Largest headroom in bytes.
pub const MAX_HEADROOM: usize = 256;
/// Default headroom in bytes.
pub const DEFAULT_HEADROOM: usize = 128;
/// Default data room: 2 KiB, one RX buffer per standard frame (facts §6.4).
pub const DEFAULT_DATA_ROOM: usize = 2048;

/// Mempool settings.
#[derive(Debug, Clone)]
pub struct MempoolConfig {
    /// Number of buffers (at least 1, at most 2^24).
    pub buffers: u32,
    /// Headroom in front of the packet data, 0..=256 bytes (default 128).
    pub headroom: usize,
    /// Bytes of packet data per buffer: a multiple of 1024 from 1024 to 16384 (the RX buffer
    /// size granularity of SRRCTL, facts §2.4). Default 2048.
    pub data_room: usize,
    /// Huge page policy of the DMA region.
    pub huge_pages: HugePages,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            buffers: 4096,
            headroom: DEFAULT_HEADROOM,
            data_room: DEFAULT_DATA_ROOM,
            huge_pages: HugePages::Auto,
        }
    }
}

/// The buffer layout of [`Mempool::with_layout`], for pools whose memory another party (an
/// AF_XDP UMEM) cuts into fixed chunks.
#[derive(Debug, Clone)]
pub struct PoolLayout {
    /// Number of buffers (at least 1, at most 2^24).
    pub buffers: u32,
    /// Bytes from one buffer's start to the next (a multiple of 64).
    pub stride: usize,
    /// Offset of the packet data from the buffer's start (a multiple of 64).
    pub data_off: usize,
    /// Headroom right in front of the data, 0..=256 bytes and at most `data_off`.
    pub headroom: usize,
    /// Huge page policy of the region.
    pub huge_pages: HugePages,
}

/// The shared state of a pool. Lives at a stable heap address that packets point to.
pub(crate) struct PoolCore {
    /// Host address of buffer 0's start.
    pub(crate) base: *mut u8,
    /// `iova = host address + iova_delta` (wrapping) for any byte of the region.
    pub(crate) iova_delta: u64,
    pub(crate) stride: usize,
    /// Offset of the packet data from the buffer start.
    pub(crate) data_off: usize,
    pub(crate) headroom: usize,
    pub(crate) data_room: usize,
    pub(crate) count: u32,
    pub(crate) ring: IndexRing,
    region: DmaRegion,
}

// SAFETY: the raw base pointer refers to the DMA region owned by the core; buffers are handed to
// exactly one owner at a time through the lock-free ring, so sharing the core is sound.
unsafe impl Send for PoolCore {}
// SAFETY: see above; all shared mutation goes through atomics in `ring`.
unsafe impl Sync for PoolCore {}

impl PoolCore {
    /// Host address of the packet data of buffer `index`.
    #[inline(always)]
    pub(crate) fn data_ptr(&self, index: u32) -> *mut u8 {
        // wrapping_add keeps this safe to compute; callers only use indices < count.
        self.base
            .wrapping_add(index as usize * self.stride + self.data_off)
    }

    /// Device address of the packet data of buffer `index`.
    #[inline(always)]
    pub(crate) fn data_iova(&self, index: u32) -> u64 {
        (self.data_ptr(index) as u64).wrapping_add(self.iova_delta)
    }

    /// Returns buffers to the free list.
    #[inline]
    pub(crate) fn free_bulk(&self, indices: &[u32]) {
        if !self.ring.enqueue_bulk(indices) {
            // Only possible if a buffer was freed twice, which the ownership rules prevent.
            log::error!(
                "mempool: free list overflow returning {} buffers; they are leaked",
                indices.len()
            );
        }
    }

    #[inline]
    pub(crate) fn alloc_bulk(&self, out: &mut [u32]) -> usize {
        self.ring.dequeue_burst(out)
    }
}

/// Owns the core; frees it (or leaks it, if buffers are still out) when the last handle goes.
struct PoolOwner {
    core: NonNull<PoolCore>,
}

// SAFETY: PoolCore is Send + Sync; the owner only holds a pointer to it.
unsafe impl Send for PoolOwner {}
// SAFETY: as above.
unsafe impl Sync for PoolOwner {}

impl Drop for PoolOwner {
    fn drop(&mut self) {
        // SAFETY: the core is alive until we free it below.
        let core = unsafe { self.core.as_ref() };
        // All buffers back means no packet, queue or cache refers to the core any more: the last
        // access of any free is its release store of the ring tail, which `len` acquires.
        let free = core.ring.len();
        if free == core.count {
            // SAFETY: created by Box::into_raw in Mempool::new; nothing refers to it any more.
            drop(unsafe { Box::from_raw(self.core.as_ptr()) });
        } else {
            log::warn!(
                "mempool dropped while {} of {} buffers are still in use; leaking its {} bytes \
                 of DMA memory so those packets stay valid",
                core.count - free,
                core.count,
                core.region.len()
            );
        }
    }
}

/// A pool of packet buffers in one DMA region. Cloning is cheap (a shared handle).
///
/// ```
/// use floodgate_pmd::{Mempool, MempoolConfig};
/// use floodgate_vfio::HugePages;
/// let pool = Mempool::new(&MempoolConfig {
///     buffers: 64,
///     headroom: 64,
///     huge_pages: HugePages::Never,
///     ..Default::default()
/// })
/// .unwrap();
/// let mut p = pool.alloc().unwrap();
/// p.set_len(60).unwrap();
/// p.data_mut()[0] = 0xff;
/// p.headroom_mut()[..4].copy_from_slice(&7u32.to_ne_bytes());
/// assert_eq!(pool.available(), 63);
/// drop(p); // the buffer goes back, from any thread
/// assert_eq!(pool.available(), 64);
/// ```
#[derive(Clone)]
pub struct Mempool {
    owner: Arc<PoolOwner>,
}

impl fmt::Debug for Mempool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.core();
        f.debug_struct("Mempool")
            .field("buffers", &c.count)
            .field("available", &c.ring.len())
            .field("headroom", &c.headroom)
            .field("data_room", &c.data_room)
            .field("iova", &format_args!("{:#x}", c.region.iova()))
            .finish()
    }
}

impl Mempool {
    /// Allocates the DMA region and fills the free list.
    pub fn new(cfg: &MempoolConfig) -> Result<Mempool, Error> {
        if cfg.buffers == 0 || cfg.buffers > 1 << 24 {
            return Err(Error::Config(format!(
                "mempool buffers = {}: must be 1..=16777216",
                cfg.buffers
            )));
        }
        if cfg.headroom > MAX_HEADROOM {
            return Err(Error::Config(format!(
                "mempool headroom = {} bytes: must be 0..={MAX_HEADROOM}",
                cfg.headroom
            )));
        }
        if cfg.data_room < 1024 || cfg.data_room > 16384 || cfg.data_room & 1023 != 0 {
            return Err(Error::Config(format!(
                "mempool data_room = {} bytes: must be a multiple of 1024 from 1024 to 16384 \
                 (SRRCTL.BSIZEPACKET granularity)",
                cfg.data_room
            )));
        }
        let data_off = cfg.headroom.next_multiple_of(64);
        Self::build(
            cfg.buffers,
            data_off + cfg.data_room,
            data_off,
            cfg.headroom,
            cfg.data_room,
            cfg.huge_pages,
        )
    }

    /// A pool whose buffer layout is chosen by another user of its memory: an AF_XDP UMEM,
    /// where the kernel receives frames into fixed-size chunks at a fixed offset.
    ///
    /// Buffer `i` starts at `region().as_ptr() + i * stride`; its packet data starts
    /// `data_off` bytes into it and may be up to `stride - data_off` bytes long
    /// ([`Mempool::data_room`]); the headroom is the `headroom` bytes right in front of the
    /// data, as in [`Mempool::new`]. Checks: `buffers` 1..=2^24, `stride` a multiple of 64,
    /// `data_off` a multiple of 64 (packet data on a cache line) with
    /// `headroom <= data_off`, at least 64 bytes of data room, `headroom <= 256`.
    pub fn with_layout(layout: &PoolLayout) -> Result<Mempool, Error> {
        let l = layout;
        if l.buffers == 0 || l.buffers > 1 << 24 {
            return Err(Error::Config(format!(
                "mempool buffers = {}: must be 1..=16777216",
                l.buffers
            )));
        }
        if l.headroom > MAX_HEADROOM || l.headroom > l.data_off {
            return Err(Error::Config(format!(
                "mempool headroom = {} bytes: must be at most {MAX_HEADROOM} and at most the \
                 data offset {}",
                l.headroom, l.data_off
            )));
        }
        if l.stride & 63 != 0 || l.data_off & 63 != 0 || l.data_off + 64 > l.stride {
            return Err(Error::Config(format!(
                "mempool layout: stride {} and data offset {} must be multiples of 64 with at \
                 least 64 bytes of data room",
                l.stride, l.data_off
            )));
        }
        Self::build(
            l.buffers,
            l.stride,
            l.data_off,
            l.headroom,
            l.stride - l.data_off,
            l.huge_pages,
        )
    }

    fn build(
        buffers: u32,
        stride: usize,
        data_off: usize,
        headroom: usize,
        data_room: usize,
        huge_pages: HugePages,
    ) -> Result<Mempool, Error> {
        let bytes = stride * buffers as usize;
        let region = DmaRegion::allocate(
            bytes,
            &DmaOptions {
                huge_pages,
                name: Some("floodgate-mempool".into()),
            },
        )?;
        let base = region.as_ptr();
        let ring = IndexRing::new(buffers);
        let all: Vec<u32> = (0..buffers).collect();
        let filled = ring.enqueue_bulk(&all);
        debug_assert!(filled);
        let core = Box::new(PoolCore {
            base,
            iova_delta: region.iova().wrapping_sub(base as u64),
            stride,
            data_off,
            headroom,
            data_room,
            count: buffers,
            ring,
            region,
        });
        Ok(Mempool {
            owner: Arc::new(PoolOwner {
                core: NonNull::from(Box::leak(core)),
            }),
        })
    }

    #[inline(always)]
    pub(crate) fn core(&self) -> &PoolCore {
        // SAFETY: the core lives at least as long as the owner we hold.
        unsafe { self.owner.core.as_ref() }
    }

    #[inline(always)]
    pub(crate) fn core_ptr(&self) -> NonNull<PoolCore> {
        self.owner.core
    }

    /// Takes one buffer as an empty packet (length 0), or `None` when all are in use.
    pub fn alloc(&self) -> Option<Packet> {
        let mut idx = [0u32; 1];
        if self.core().alloc_bulk(&mut idx) == 1 {
            // SAFETY: idx[0] came off the free list, so we own that buffer.
            Some(unsafe { Packet::from_raw(self.owner.core, idx[0], 0) })
        } else {
            None
        }
    }

    /// Fills the free slots of `batch` with empty packets (one CAS for the whole burst); returns
    /// how many were added.
    pub fn alloc_into(&self, batch: &mut crate::PacketBatch) -> usize {
        let mut idx = [0u32; 64];
        let mut added = 0;
        while batch.free_slots() > 0 {
            let want = batch.free_slots().min(idx.len());
            let n = self.core().alloc_bulk(&mut idx[..want]);
            for &i in &idx[..n] {
                // SAFETY: i came off the free list, so we own that buffer.
                let p = unsafe { Packet::from_raw(self.owner.core, i, 0) };
                let pushed = batch.push(p);
                debug_assert!(pushed.is_ok());
            }
            added += n;
            if n < want {
                break;
            }
        }
        added
    }

    /// Buffers currently free (a snapshot).
    pub fn available(&self) -> u32 {
        self.core().ring.len()
    }

    /// Total number of buffers.
    pub fn capacity(&self) -> u32 {
        self.core().count
    }

    /// Headroom in front of each packet, bytes.
    pub fn headroom(&self) -> usize {
        self.core().headroom
    }

    /// Packet bytes per buffer.
    pub fn data_room(&self) -> usize {
        self.core().data_room
    }

    /// The DMA region holding the buffers (to map it into a device).
    pub fn region(&self) -> &DmaRegion {
        &self.core().region
    }

    /// Whether two handles refer to the same pool.
    pub fn same_pool(&self, other: &Mempool) -> bool {
        self.owner.core == other.owner.core
    }

    /// Whether `packet`'s buffer belongs to this pool.
    #[inline(always)]
    pub fn owns(&self, packet: &Packet) -> bool {
        packet.core == self.owner.core
    }

    /// Bytes from one buffer's start to the next.
    pub fn stride(&self) -> usize {
        self.core().stride
    }

    /// Offset of the packet data from the buffer's start (the headroom ends there).
    pub fn data_offset(&self) -> usize {
        self.core().data_off
    }

    /// Takes up to `out.len()` buffers off the free list as bare indices (one ring operation);
    /// returns how many. The caller owns those buffers until it gives each back, either with
    /// [`Mempool::free_raw`] or as a [`Packet`] made by [`Mempool::packet_from_raw`]. An index
    /// that is never given back is leaked (the pool then leaks its memory when dropped, which
    /// is safe).
    #[inline]
    pub fn alloc_raw(&self, out: &mut [u32]) -> usize {
        self.core().alloc_bulk(out)
    }

    /// Returns buffers taken with [`Mempool::alloc_raw`] (or by [`Packet::into_raw_index`]) to the
    /// free list.
    ///
    /// # Safety
    /// The caller owns every buffer in `indices` (each index came from `alloc_raw` or
    /// `Packet::into_raw_index` of this pool and has not been given back since), no index appears
    /// twice, and nothing reads or writes those buffers afterwards: once on the free list a
    /// buffer can be handed to any thread at once.
    #[inline]
    pub unsafe fn free_raw(&self, indices: &[u32]) {
        self.core().free_bulk(indices);
    }

    /// Makes an owned [`Packet`] of `len` bytes from a buffer the caller owns as a bare index
    /// (received into by a device that wrote the data at [`Mempool::data_offset`]). Dropping the
    /// packet returns the buffer to this pool, from any thread.
    ///
    /// # Safety
    /// `index < capacity()`, `len <= data_room()`, the caller owns the buffer (from
    /// [`Mempool::alloc_raw`] or [`Packet::into_raw_index`] of this pool, not given back since) and
    /// gives up that ownership to the packet; nobody else (a device, the kernel) writes the
    /// buffer while the packet lives.
    #[inline(always)]
    pub unsafe fn packet_from_raw(&self, index: u32, len: usize) -> Packet {
        debug_assert!(index < self.core().count && len <= self.core().data_room);
        // SAFETY: the caller's contract is from_raw's (owned buffer, index and len in range).
        unsafe { Packet::from_raw(self.owner.core, index, len as u32) }
    }
}

/// One packet: an owned handle to one buffer of a [`Mempool`].
///
/// A `Packet` borrows nothing: it is `Send` and can be moved to another thread. Dropping it
/// returns its buffer to its pool (lock-free, from any thread). The bytes live in DMA memory and
/// are never copied by the driver: transmitting a packet hands its buffer to the NIC.
///
/// In front of the packet data sits the *headroom*: `Mempool::headroom()` bytes that belong to
/// the application (metadata such as parsed offsets or a flow hash). The driver never writes it,
/// so it survives receive, transmit, and moves between threads.
// repr(C): the receive paths write packets four at a time with vector stores (data and core
// as one 16-byte store, index and length as one 8-byte store; see `rx::gather`).
#[repr(C)]
pub struct Packet {
    data: NonNull<u8>,
    core: NonNull<PoolCore>,
    index: u32,
    len: u32,
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(
    std::mem::offset_of!(Packet, data) == 0
        && std::mem::offset_of!(Packet, core) == 8
        && std::mem::offset_of!(Packet, index) == 16
        && std::mem::offset_of!(Packet, len) == 20
        && std::mem::size_of::<Packet>() == 24
);

// SAFETY: a Packet is the unique owner of its buffer; the pool core is Sync.
unsafe impl Send for Packet {}
// SAFETY: `&Packet` only allows reading the buffer.
unsafe impl Sync for Packet {}

impl Packet {
    /// Builds a handle for buffer `index` of `core`.
    ///
    /// # Safety
    /// The caller must own the buffer (taken off the free list or out of a ring slot) and
    /// `index < core.count`, `len <= core.data_room`.
    #[inline(always)]
    pub(crate) unsafe fn from_raw(core: NonNull<PoolCore>, index: u32, len: u32) -> Packet {
        // SAFETY: the core outlives every buffer handle (see PoolOwner::drop).
        let c = unsafe { core.as_ref() };
        Packet {
            // SAFETY: data_ptr of a valid index is inside the region, hence non-null.
            data: unsafe { NonNull::new_unchecked(c.data_ptr(index)) },
            core,
            index,
            len,
        }
    }

    /// Builds a handle when the caller already knows the data address.
    ///
    /// # Safety
    /// As for `from_raw`, and `data == core.data_ptr(index)`.
    #[inline(always)]
    pub(crate) unsafe fn from_parts(
        core: NonNull<PoolCore>,
        data: *mut u8,
        index: u32,
        len: u32,
    ) -> Packet {
        Packet {
            // SAFETY: the caller passes a pointer inside the pool's region, hence non-null.
            data: unsafe { NonNull::new_unchecked(data) },
            core,
            index,
            len,
        }
    }

    /// Gives up the handle without returning the buffer: `(buffer index, length)`. The caller
    /// now owns the buffer as a bare index of the packet's pool (check which one with
    /// [`Mempool::owns`] first) and must give it back with [`Mempool::free_raw`] or
    /// [`Mempool::packet_from_raw`], or it is leaked.
    #[inline(always)]
    pub fn into_raw_index(self) -> (u32, usize) {
        let (_, index, len) = self.into_raw();
        (index, len as usize)
    }

    /// Gives up the handle without returning the buffer: `(pool core, index, len)`.
    #[inline(always)]
    pub(crate) fn into_raw(self) -> (NonNull<PoolCore>, u32, u32) {
        let me = std::mem::ManuallyDrop::new(self);
        (me.core, me.index, me.len)
    }

    #[inline(always)]
    pub(crate) fn core_ptr(&self) -> NonNull<PoolCore> {
        self.core
    }

    #[inline(always)]
    fn core(&self) -> &PoolCore {
        // SAFETY: the core outlives every buffer handle.
        unsafe { self.core.as_ref() }
    }

    /// Host address of the packet data as an integer.
    #[inline(always)]
    pub(crate) fn data_addr(&self) -> u64 {
        self.data.as_ptr() as u64
    }

    /// Device address of the packet data.
    #[inline(always)]
    pub(crate) fn iova(&self) -> u64 {
        (self.data.as_ptr() as u64).wrapping_add(self.core().iova_delta)
    }

    /// Packet length in bytes.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the packet has no bytes.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The packet bytes.
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        // SAFETY: the buffer is ours; len <= data_room, so the slice stays inside it.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr(), self.len as usize) }
    }

    /// The packet bytes, writable.
    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `data`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.data.as_ptr(), self.len as usize) }
    }

    /// Sets the length (for building or trimming a packet); fails past the data room.
    pub fn set_len(&mut self, len: usize) -> Result<(), Error> {
        let room = self.core().data_room;
        if len > room {
            return Err(Error::TooLong { len, room });
        }
        self.len = len as u32;
        Ok(())
    }

    /// Bytes available for packet data in this buffer.
    pub fn capacity(&self) -> usize {
        self.core().data_room
    }

    /// The application metadata area in front of the data (the pool's headroom).
    #[inline(always)]
    pub fn headroom(&self) -> &[u8] {
        let h = self.core().headroom;
        // SAFETY: the headroom bytes precede the data inside the same buffer (data_off >= h).
        unsafe { std::slice::from_raw_parts(self.data.as_ptr().sub(h), h) }
    }

    /// The application metadata area, writable.
    #[inline(always)]
    pub fn headroom_mut(&mut self) -> &mut [u8] {
        let h = self.core().headroom;
        // SAFETY: as in `headroom`, exclusive through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.data.as_ptr().sub(h), h) }
    }

    /// The buffer's index in its pool (stable for the buffer's lifetime; useful for tracing).
    #[inline(always)]
    pub fn buffer_index(&self) -> u32 {
        self.index
    }

    /// Copies `bytes` into the packet and sets its length.
    pub fn copy_from_slice(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.set_len(bytes.len())?;
        self.data_mut().copy_from_slice(bytes);
        Ok(())
    }
}

impl Drop for Packet {
    #[inline]
    fn drop(&mut self) {
        self.core().free_bulk(&[self.index]);
    }
}

impl fmt::Debug for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packet")
            .field("buffer", &self.index)
            .field("len", &self.len)
            .finish()
    }
}

/// A per-queue LIFO cache of free buffer indices of one pool (no atomics: owned by one queue).
/// Buffers recycled here are reused first, while still hot in the CPU cache.
pub(crate) struct CacheSink<'a> {
    pub(crate) buf: &'a mut [u32],
    pub(crate) len: &'a mut usize,
}

/// Returns raw buffers to their pools in bulk: consecutive buffers of one pool go back with one
/// ring operation.
pub(crate) struct BulkFree {
    core: Option<NonNull<PoolCore>>,
    /// `idx[..n]` is initialised. Left uninitialised otherwise so that creating one costs
    /// nothing on the hot path.
    idx: [std::mem::MaybeUninit<u32>; 64],
    n: usize,
}

impl BulkFree {
    #[inline(always)]
    pub(crate) fn new() -> Self {
        BulkFree {
            core: None,
            idx: [const { std::mem::MaybeUninit::uninit() }; 64],
            n: 0,
        }
    }

    /// Queues buffer `index` of `core` for freeing.
    ///
    /// The caller gives up ownership of the buffer.
    #[inline(always)]
    pub(crate) fn push(&mut self, core: NonNull<PoolCore>, index: u32) {
        if self.core != Some(core) || self.n == self.idx.len() {
            self.flush();
            self.core = Some(core);
        }
        self.idx[self.n].write(index);
        self.n += 1;
    }

    #[inline]
    pub(crate) fn flush(&mut self) {
        if let Some(core) = self.core {
            if self.n > 0 {
                // SAFETY: idx[..n] was written by `push`; MaybeUninit<u32> has u32's layout.
                let idx =
                    unsafe { std::slice::from_raw_parts(self.idx.as_ptr() as *const u32, self.n) };
                // SAFETY: the core outlives its outstanding buffers, which these are.
                unsafe { core.as_ref() }.free_bulk(idx);
            }
        }
        self.n = 0;
    }
}

impl Drop for BulkFree {
    #[inline]
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: u32, headroom: usize) -> Mempool {
        Mempool::new(&MempoolConfig {
            buffers: n,
            headroom,
            huge_pages: HugePages::Never,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn config_is_checked() {
        for cfg in [
            MempoolConfig {
                buffers: 0,
                ..Default::default()
            },
            MempoolConfig {
                headroom: 257,
                ..Default::default()
            },
            MempoolConfig {
                data_room: 1500,
                ..Default::default()
            },
        ] {
            let e = Mempool::new(&cfg).unwrap_err();
            assert!(matches!(e, Error::Config(_)), "{e}");
        }
    }

    #[test]
    fn layout_aligns_data_and_keeps_headroom_in_front() {
        for h in [0usize, 1, 64, 100, 128, 256] {
            let p = pool(8, h);
            let a = p.alloc().unwrap();
            let b = p.alloc().unwrap();
            assert_eq!(a.data.as_ptr() as usize % 64, 0, "headroom {h}");
            assert_eq!(a.headroom().len(), h);
            let (lo, hi) = if a.index < b.index {
                (&a, &b)
            } else {
                (&b, &a)
            };
            // The next buffer's headroom starts after this buffer's data room.
            assert!(
                lo.data.as_ptr() as usize + p.data_room()
                    <= hi.data.as_ptr() as usize - hi.headroom().len()
            );
            assert_eq!(
                a.iova(),
                p.region().iova() + (a.data.as_ptr() as u64 - p.region().as_ptr() as u64)
            );
        }
    }

    #[test]
    fn exhaustion_and_return() {
        let p = pool(4, 128);
        let v: Vec<_> = (0..4).map(|_| p.alloc().unwrap()).collect();
        assert!(p.alloc().is_none());
        assert_eq!(p.available(), 0);
        drop(v);
        assert_eq!(p.available(), 4);
    }

    #[test]
    fn set_len_bounds() {
        let p = pool(1, 0);
        let mut a = p.alloc().unwrap();
        assert!(a.set_len(2048).is_ok());
        assert!(matches!(a.set_len(2049), Err(Error::TooLong { .. })));
    }

    #[test]
    fn pool_dropped_with_packets_out_keeps_them_valid() {
        let p = pool(4, 16);
        let mut a = p.alloc().unwrap();
        a.copy_from_slice(&[1, 2, 3]).unwrap();
        drop(p); // leaks the region (warning) because `a` is still out
        assert_eq!(a.data(), &[1, 2, 3]);
        drop(a); // returns to the leaked core's ring; still sound
    }

    #[test]
    fn packets_dropped_on_other_threads_return() {
        let p = pool(256, 128);
        let mut batch = crate::PacketBatch::new(256);
        assert_eq!(p.alloc_into(&mut batch), 256);
        let pkts: Vec<Packet> = batch.drain().collect();
        let mut chunks: Vec<Vec<Packet>> = vec![Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        for (i, pk) in pkts.into_iter().enumerate() {
            chunks[i % 4].push(pk);
        }
        let hs: Vec<_> = chunks
            .into_iter()
            .map(|c| std::thread::spawn(move || drop(c)))
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(p.available(), 256);
    }

    #[test]
    fn external_layout_and_raw_ownership() {
        let p = Mempool::with_layout(&PoolLayout {
            buffers: 8,
            stride: 2048,
            data_off: 256,
            headroom: 128,
            huge_pages: HugePages::Never,
        })
        .unwrap();
        assert_eq!(
            (p.stride(), p.data_offset(), p.data_room()),
            (2048, 256, 1792)
        );
        let mut idx = [0u32; 16];
        assert_eq!(p.alloc_raw(&mut idx), 8, "all 8, no more");
        assert_eq!(p.available(), 0);
        // SAFETY: idx[3] came from alloc_raw above and is given up to the packet.
        let mut pk = unsafe { p.packet_from_raw(idx[3], 60) };
        let base = p.region().as_ptr() as usize;
        assert_eq!(
            pk.data().as_ptr() as usize,
            base + idx[3] as usize * 2048 + 256
        );
        assert_eq!(pk.headroom_mut().len(), 128);
        assert!(p.owns(&pk));
        let (i, len) = pk.into_raw_index();
        assert_eq!((i, len), (idx[3], 60));
        assert_eq!(p.available(), 0, "into_raw_index keeps the buffer out");
        // SAFETY: we own all 8 buffers (7 from alloc_raw, one back from into_raw_index).
        unsafe { p.free_raw(&idx[..8]) };
        assert_eq!(p.available(), 8);
        let other = pool(1, 0);
        assert!(!p.owns(&other.alloc().unwrap()));
    }

    #[test]
    fn external_layout_is_checked() {
        let ok = PoolLayout {
            buffers: 4,
            stride: 2048,
            data_off: 256,
            headroom: 128,
            huge_pages: HugePages::Never,
        };
        for bad in [
            PoolLayout {
                buffers: 0,
                ..ok.clone()
            },
            PoolLayout {
                headroom: 300,
                data_off: 320,
                ..ok.clone()
            },
            PoolLayout {
                headroom: 128,
                data_off: 64,
                ..ok.clone()
            },
            PoolLayout {
                stride: 2000,
                ..ok.clone()
            },
            PoolLayout {
                data_off: 2048,
                headroom: 0,
                ..ok.clone()
            },
        ] {
            assert!(
                matches!(Mempool::with_layout(&bad), Err(Error::Config(_))),
                "{bad:?}"
            );
        }
        assert!(Mempool::with_layout(&ok).is_ok());
    }
}
