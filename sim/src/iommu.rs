//! Per-VF IOMMU table: the only way the model's DMA engines reach memory.
//!
//! `dma_map` maps the region's memfd into the model's own address space (MAP_SHARED, so the
//! model sees the driver's bytes, as a device sees RAM through an IOMMU) and records the
//! `iova -> host` range. The table is a `vm-memory` [`GuestMemoryMmap`] whose guest addresses
//! are IOVAs: each mapping is a [`GuestRegionMmap`] over the memfd (vm-memory makes and unmaps
//! the mmap), kept sorted and free of overlaps by the collection. Every DMA access goes through
//! the crate-internal `DmaPort`, which translates, checks bounds and uses volatile accesses. An
//! access outside every mapping is a recorded fault (counted, logged once per VF), never
//! undefined behaviour.
//!
//! The same table serves the vfio-user server: [`Iommu::map_file`] takes an IOVA, a length and
//! a file with an offset, which is exactly what a vfio-user `DMA_MAP` request carries.

use std::fs::File;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use vm_memory::{
    FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
    GuestRegionMmap, MmapRegion,
};

use crate::error::SimError;

/// A recorded DMA fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaFault {
    /// First IOVA of the access.
    pub iova: u64,
    /// Length of the access.
    pub len: u64,
}

/// The table as of one moment. Map and unmap build a new one and swap it in, so a DMA engine
/// that holds a table keeps every mapping in it alive (a late access after an unmap reads the
/// old pages, as on hardware racing an IOTLB flush, never freed memory).
type Table = Arc<GuestMemoryMmap>;

/// One mapping found by a lookup: its IOVA range and the host address of its first byte. Valid
/// while the [`Table`] it came from is held.
#[derive(Debug, Clone, Copy)]
struct Hit {
    iova: u64,
    len: u64,
    host: *mut u8,
}

impl Hit {
    #[inline(always)]
    fn contains(&self, iova: u64, len: u64) -> bool {
        iova >= self.iova
            && iova
                .checked_add(len)
                .is_some_and(|end| end <= self.iova + self.len)
    }

    /// Host address of `iova`, which must lie inside the mapping.
    #[inline(always)]
    fn host_at(&self, iova: u64) -> *mut u8 {
        debug_assert!(self.contains(iova, 0));
        self.host.wrapping_add((iova - self.iova) as usize)
    }
}

/// The IOVA → host translation table of one VF.
#[derive(Debug)]
pub struct Iommu {
    name: String,
    table: RwLock<Table>,
    /// Bumped (under the table's write lock) on every unmap, so cached translations are dropped.
    generation: AtomicU64,
    faults: AtomicU64,
    last_fault_iova: AtomicU64,
    logged: AtomicBool,
}

impl Iommu {
    pub(crate) fn new(name: String) -> Self {
        Iommu {
            name,
            table: RwLock::new(Arc::new(GuestMemoryMmap::new())),
            generation: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            last_fault_iova: AtomicU64::new(0),
            logged: AtomicBool::new(false),
        }
    }

    /// Maps `len` bytes of `fd` starting at `offset` at `iova` (the mapping keeps a duplicate
    /// of `fd` open; [`Iommu::map_file`] shares one file between mappings).
    ///
    /// Fails if the range is empty, overflows, or overlaps an existing mapping, or if the mmap
    /// fails.
    pub fn map_fd(
        &self,
        iova: u64,
        len: u64,
        fd: BorrowedFd<'_>,
        offset: u64,
    ) -> Result<(), SimError> {
        let file = fd.try_clone_to_owned().map_err(|err| SimError::Os {
            what: format!(
                "{}: dup of the DMA region's fd for iova {iova:#x}",
                self.name
            ),
            err,
        })?;
        self.map_file(iova, len, &Arc::new(File::from(file)), offset)
    }

    /// Maps `len` bytes of `file` starting at `offset` at `iova`; the mapping holds a reference
    /// to `file`.
    ///
    /// Fails if the range is empty, overflows, or overlaps an existing mapping, or if the mmap
    /// fails.
    pub fn map_file(
        &self,
        iova: u64,
        len: u64,
        file: &Arc<File>,
        offset: u64,
    ) -> Result<(), SimError> {
        let bad = |why| SimError::BadMapping { iova, len, why };
        if len == 0 || iova.checked_add(len).is_none() {
            return Err(bad("empty or wrapping range"));
        }
        let size = usize::try_from(len).map_err(|_| bad("longer than the address space"))?;
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        if table
            .iter()
            .any(|r| iova < r.start_addr().0 + r.len() && r.start_addr().0 < iova + len)
        {
            return Err(bad("overlaps an existing mapping"));
        }
        let mmap = MmapRegion::from_file(FileOffset::from_arc(file.clone(), offset), size)
            .map_err(|e| SimError::Os {
                what: format!(
                    "{}: mmap of DMA region iova {iova:#x} len {len:#x}",
                    self.name
                ),
                err: match e {
                    vm_memory::mmap::MmapRegionError::Mmap(err) => err,
                    other => std::io::Error::new(std::io::ErrorKind::InvalidInput, other),
                },
            })?;
        let region = GuestRegionMmap::new(mmap, GuestAddress(iova)).ok_or(bad("wrapping range"))?;
        let grown = table
            .insert_region(Arc::new(region))
            .map_err(|_| bad("overlaps an existing mapping"))?;
        *table = Arc::new(grown);
        log::debug!("{}: mapped iova {iova:#x}..{:#x}", self.name, iova + len);
        Ok(())
    }

    /// Removes the mapping that starts at `iova` with length `len`.
    pub fn unmap(&self, iova: u64, len: u64) -> Result<(), SimError> {
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        let Ok((shrunk, _)) = table.remove_region(GuestAddress(iova), len) else {
            return Err(SimError::BadMapping {
                iova,
                len,
                why: "no such mapping",
            });
        };
        // Bumped before the swap and under the lock: a port that reads the table and the
        // generation under the read lock always sees a matching pair.
        self.generation.fetch_add(1, Ordering::Release);
        *table = Arc::new(shrunk);
        Ok(())
    }

    /// Number of DMA faults recorded so far.
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::Relaxed)
    }

    /// IOVA of the most recent fault (0 if none).
    pub fn last_fault_iova(&self) -> u64 {
        self.last_fault_iova.load(Ordering::Relaxed)
    }

    /// Number of mapped ranges.
    pub fn mappings(&self) -> usize {
        self.table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .num_regions()
    }

    /// The current table and its generation, read together.
    fn snapshot(&self) -> (Table, u64) {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner());
        (table.clone(), self.generation.load(Ordering::Acquire))
    }

    /// The mapping of `table` that holds `[iova, iova+len)`, if one holds all of it.
    fn lookup(table: &GuestMemoryMmap, iova: u64, len: u64) -> Option<Hit> {
        let r = table.find_region(GuestAddress(iova))?;
        let hit = Hit {
            iova: r.start_addr().0,
            len: r.len(),
            host: r.as_ptr(),
        };
        hit.contains(iova, len).then_some(hit)
    }

    fn record_fault(&self, iova: u64, len: u64, what: &str) {
        self.faults.fetch_add(1, Ordering::Relaxed);
        self.last_fault_iova.store(iova, Ordering::Relaxed);
        if !self.logged.swap(true, Ordering::Relaxed) {
            log::warn!(
                "{}: DMA fault: {what} of {len} bytes at unmapped iova {iova:#x} \
                 (further faults are only counted)",
                self.name
            );
        }
    }
}

/// A cached view of one VF's IOMMU used by a DMA engine. Not shared between threads: each engine
/// (step, feeder, threaded engine) owns its port, so its small translation cache needs no
/// locking. The cache keeps the [`CACHE_WAYS`] most recently used mappings: a driver's
/// descriptor ring and its packet buffers usually live in different regions, and one entry
/// would thrash between them.
///
/// An access may span several mappings, as on a real IOMMU that translates page by page (QEMU's
/// emulated IOMMU sends one DMA_MAP per 4 KiB page, and those pages need not be adjacent in the
/// backing memfd): it is fine as long as every byte is covered. The fast path (the whole access
/// inside the cached mapping) stays a compare and an add.
#[derive(Debug)]
pub(crate) struct DmaPort {
    iommu: Arc<Iommu>,
    /// The table the cached translations came from: holding it keeps their pages mapped.
    table: Table,
    cache: [Option<Hit>; CACHE_WAYS],
    cache_gen: u64,
}

// SAFETY: the raw host pointers in the cache point into mappings of `table`, which the port
// holds (an `Arc` of `Send + Sync` regions); they are only dereferenced with volatile,
// bounds-checked accesses, from whichever thread owns the port.
unsafe impl Send for DmaPort {}

/// Mappings a [`DmaPort`] remembers.
pub(crate) const CACHE_WAYS: usize = 4;

impl DmaPort {
    pub(crate) fn new(iommu: Arc<Iommu>) -> Self {
        let (table, cache_gen) = iommu.snapshot();
        DmaPort {
            iommu,
            table,
            cache: [None; CACHE_WAYS],
            cache_gen,
        }
    }

    /// Host pointer for `[iova, iova+len)` if one mapping holds all of it; no fault recorded.
    #[inline(always)]
    pub(crate) fn contiguous(&mut self, iova: u64, len: u64) -> Option<*mut u8> {
        let gen = self.iommu.generation.load(Ordering::Acquire);
        if gen == self.cache_gen {
            for i in 0..CACHE_WAYS {
                let Some(m) = &self.cache[i] else { break };
                if m.contains(iova, len) {
                    let p = m.host_at(iova);
                    if i != 0 {
                        // Most recently used first.
                        self.cache[..=i].rotate_right(1);
                    }
                    return Some(p);
                }
            }
        }
        self.contiguous_slow(iova, len)
    }

    /// Takes the current table (and drops the cached translations if an unmap came since).
    /// Every cached translation is then from a table of the same generation: only maps came
    /// since, which keep the older regions, so the held table covers all of them.
    fn refresh(&mut self) {
        let (table, gen) = self.iommu.snapshot();
        if gen != self.cache_gen {
            self.cache = [None; CACHE_WAYS];
            self.cache_gen = gen;
        }
        self.table = table;
    }

    #[cold]
    fn contiguous_slow(&mut self, iova: u64, len: u64) -> Option<*mut u8> {
        self.refresh();
        let m = Iommu::lookup(&self.table, iova, len)?;
        self.cache.rotate_right(1);
        self.cache[0] = Some(m);
        Some(m.host_at(iova))
    }

    /// Calls `f(host, offset, n)` for each piece of `[iova, iova+len)` in address order, after
    /// checking that every byte is mapped. Records one fault (at the first unmapped byte) and
    /// returns false otherwise, without calling `f`.
    #[cold]
    fn walk(
        &mut self,
        iova: u64,
        len: u64,
        what: &str,
        mut f: impl FnMut(*mut u8, usize, usize),
    ) -> bool {
        let Some(end) = iova.checked_add(len) else {
            self.iommu.record_fault(iova, len, what);
            return false;
        };
        // One table for both passes: what pass 1 found is what pass 2 copies.
        self.refresh();
        let table = &self.table;
        // Pass 1: coverage.
        let mut cur = iova;
        while cur < end {
            match Iommu::lookup(table, cur, 1) {
                Some(m) => cur = (m.iova + m.len).min(end),
                None => {
                    self.iommu.record_fault(cur, end - cur, what);
                    return false;
                }
            }
        }
        // Pass 2: the pieces.
        let mut cur = iova;
        while let Some(m) = (cur < end).then(|| Iommu::lookup(table, cur, 1)).flatten() {
            let stop = (m.iova + m.len).min(end);
            f(m.host_at(cur), (cur - iova) as usize, (stop - cur) as usize);
            cur = stop;
        }
        true
    }

    /// Checks that `[iova, iova+len)` is mapped (possibly across mappings); records a fault if not.
    #[inline(always)]
    pub(crate) fn check(&mut self, iova: u64, len: u64, what: &str) -> bool {
        self.contiguous(iova, len).is_some() || self.walk(iova, len, what, |_, _, _| {})
    }

    /// Reads a little-endian u64 (descriptor qword).
    #[inline(always)]
    pub(crate) fn read_u64(&mut self, iova: u64, what: &str) -> Option<u64> {
        if let Some(p) = self.contiguous(iova, 8) {
            // SAFETY: p is valid for 8 bytes. Volatile because the driver shares this memory;
            // unaligned addresses fall back to an unaligned read.
            let v = unsafe {
                if (p as usize) & 7 == 0 {
                    std::ptr::read_volatile(p as *const u64)
                } else {
                    std::ptr::read_unaligned(p as *const u64)
                }
            };
            return Some(u64::from_le(v));
        }
        let mut b = [0u8; 8];
        self.read_bytes(iova, &mut b, what)
            .then(|| u64::from_le_bytes(b))
    }

    /// Reads a little-endian u32.
    #[inline(always)]
    pub(crate) fn read_u32(&mut self, iova: u64, what: &str) -> Option<u32> {
        if let Some(p) = self.contiguous(iova, 4) {
            // SAFETY: p is valid for 4 bytes.
            let v = unsafe {
                if (p as usize) & 3 == 0 {
                    std::ptr::read_volatile(p as *const u32)
                } else {
                    std::ptr::read_unaligned(p as *const u32)
                }
            };
            return Some(u32::from_le(v));
        }
        let mut b = [0u8; 4];
        self.read_bytes(iova, &mut b, what)
            .then(|| u32::from_le_bytes(b))
    }

    /// Writes a little-endian u32.
    #[inline(always)]
    pub(crate) fn write_u32(&mut self, iova: u64, v: u32, what: &str) -> bool {
        if let Some(p) = self.contiguous(iova, 4) {
            // SAFETY: p is valid for 4 bytes.
            unsafe {
                if (p as usize) & 3 == 0 {
                    std::ptr::write_volatile(p as *mut u32, v.to_le())
                } else {
                    std::ptr::write_unaligned(p as *mut u32, v.to_le())
                }
            }
            return true;
        }
        self.write_bytes(iova, &v.to_le_bytes(), what)
    }

    /// Copies `src` to device memory at `iova`.
    #[inline(always)]
    pub(crate) fn write_bytes(&mut self, iova: u64, src: &[u8], what: &str) -> bool {
        if let Some(p) = self.contiguous(iova, src.len() as u64) {
            // SAFETY: p is valid for src.len() bytes and does not overlap src (src is
            // model-owned memory, p is inside a DMA mapping).
            unsafe { volatile_copy(src.as_ptr(), p, src.len()) };
            return true;
        }
        self.walk(iova, src.len() as u64, what, |host, off, n| {
            // SAFETY: walk() hands out host ranges of n valid bytes; off + n <= src.len().
            unsafe { volatile_copy(src.as_ptr().add(off), host, n) }
        })
    }

    /// Copies device memory at `iova` into `dst`.
    #[inline(always)]
    pub(crate) fn read_bytes(&mut self, iova: u64, dst: &mut [u8], what: &str) -> bool {
        if let Some(p) = self.contiguous(iova, dst.len() as u64) {
            // SAFETY: p is valid for dst.len() bytes; dst is model-owned and does not overlap.
            unsafe { volatile_copy(p, dst.as_mut_ptr(), dst.len()) };
            return true;
        }
        let d = dst.as_mut_ptr();
        self.walk(iova, dst.len() as u64, what, |host, off, n| {
            // SAFETY: walk() hands out host ranges of n valid bytes; off + n <= dst.len().
            unsafe { volatile_copy(host, d.add(off), n) }
        })
    }
}

/// Copies `n` bytes with volatile accesses, 8 bytes at a time where the destination or source
/// (whichever is shared) allows.
///
/// # Safety
/// `src` must be valid for `n` reads, `dst` for `n` writes, and they must not overlap.
#[inline(always)]
unsafe fn volatile_copy(src: *const u8, dst: *mut u8, n: usize) {
    let mut i = 0;
    if (dst as usize) & 7 == 0 && (src as usize) & 7 == 0 {
        while i + 8 <= n {
            // SAFETY: i + 8 <= n and both pointers are 8-aligned at i (i is a multiple of 8).
            unsafe {
                let v = std::ptr::read_volatile(src.add(i) as *const u64);
                std::ptr::write_volatile(dst.add(i) as *mut u64, v);
            }
            i += 8;
        }
    } else if (dst as usize) & 7 == 0 {
        while i + 8 <= n {
            // SAFETY: in bounds; dst aligned, src read unaligned (model-side buffer).
            unsafe {
                let v = std::ptr::read_unaligned(src.add(i) as *const u64);
                std::ptr::write_volatile(dst.add(i) as *mut u64, v);
            }
            i += 8;
        }
    }
    while i < n {
        // SAFETY: i < n.
        unsafe { std::ptr::write_volatile(dst.add(i), std::ptr::read_volatile(src.add(i))) };
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

    /// A memfd of `pages` 4 KiB pages, page i filled with byte i+1.
    fn memfd(pages: usize) -> OwnedFd {
        // SAFETY: a fresh memfd with a static name.
        let raw = unsafe { libc::memfd_create(c"iommu-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(raw >= 0);
        // SAFETY: raw is ours.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        for i in 0..pages {
            let page = vec![i as u8 + 1; 4096];
            // SAFETY: writing our buffer to our fd at an explicit offset.
            let n = unsafe {
                libc::pwrite(
                    fd.as_raw_fd(),
                    page.as_ptr().cast(),
                    4096,
                    (i * 4096) as libc::off_t,
                )
            };
            assert_eq!(n, 4096);
        }
        fd
    }

    #[test]
    fn access_spanning_two_mappings_of_non_adjacent_pages() {
        let fd = memfd(2);
        let iommu = Arc::new(Iommu::new("test".into()));
        let x = 0x10_0000u64;
        // IOVA x → memfd page 1, x+4096 → memfd page 0: contiguous in IOVA, not in the memfd.
        iommu.map_fd(x, 4096, fd.as_fd(), 4096).unwrap();
        iommu.map_fd(x + 4096, 4096, fd.as_fd(), 0).unwrap();
        let mut port = DmaPort::new(iommu.clone());
        let mut buf = [0u8; 200];
        assert!(port.read_bytes(x + 4000, &mut buf, "test read"));
        assert!(buf[..96].iter().all(|&b| b == 2));
        assert!(buf[96..].iter().all(|&b| b == 1));
        // Writes and scalar accesses straddle too.
        assert!(port.write_bytes(x + 4090, &[0xAA; 12], "test write"));
        assert_eq!(port.read_u64(x + 4092, "q"), Some(0xAAAA_AAAA_AAAA_AAAA));
        assert!(port.write_u32(x + 4094, 0x1122_3344, "w"));
        assert_eq!(port.read_u32(x + 4094, "r"), Some(0x1122_3344));
        assert!(port.check(x, 8192, "all"));
        assert_eq!(iommu.faults(), 0);
        // Take the second page away: one fault, at its first byte, and nothing copied.
        iommu.unmap(x + 4096, 4096).unwrap();
        let mut buf = [0u8; 200];
        assert!(!port.read_bytes(x + 4000, &mut buf, "test read"));
        assert_eq!(iommu.faults(), 1);
        assert_eq!(iommu.last_fault_iova(), x + 4096);
        assert!(buf.iter().all(|&b| b == 0));
        assert!(!port.write_bytes(x + 4090, &[0xBB; 12], "test write"));
        assert_eq!(iommu.faults(), 2);
        let mut one = [0u8; 6];
        assert!(port.read_bytes(x + 4090, &mut one, "still mapped"));
        assert_eq!(
            one,
            [0xAA, 0xAA, 0xAA, 0xAA, 0x44, 0x33],
            "the failed write left it alone"
        );
    }

    #[test]
    fn overlapping_and_empty_maps_are_refused() {
        let fd = memfd(2);
        let iommu = Iommu::new("test".into());
        iommu.map_fd(0x2000, 8192, fd.as_fd(), 0).unwrap();
        assert!(iommu.map_fd(0x3000, 4096, fd.as_fd(), 0).is_err());
        assert!(iommu.map_fd(0x8000, 0, fd.as_fd(), 0).is_err());
        assert!(iommu.map_fd(u64::MAX - 10, 4096, fd.as_fd(), 0).is_err());
        assert!(iommu.unmap(0x2000, 4096).is_err());
        assert_eq!(iommu.mappings(), 1);
    }
}
