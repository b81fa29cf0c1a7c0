//! Per-VF IOMMU table: the only way the model's DMA engines reach memory.
//!
//! `dma_map` maps the region's memfd into the model's own address space (MAP_SHARED, so the
//! model sees the driver's bytes, as a device sees RAM through an IOMMU) and records the
//! `iova -> host` range. Every DMA access goes through [`DmaPort`], which translates, checks
//! bounds and uses volatile accesses. An access outside every mapping is a recorded fault
//! (counted, logged once per VF), never undefined behaviour.
//!
//! The same table serves a future vfio-user server: [`Iommu::map_fd`] takes an IOVA, a length
//! and an fd with an offset, which is exactly what a vfio-user `DMA_MAP` request carries.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::SimError;

/// One IOVA range mapped into the model.
#[derive(Debug)]
pub(crate) struct Mapping {
    iova: u64,
    len: u64,
    ptr: NonNull<u8>,
}

// SAFETY: the mapping is shared memory owned by this struct until drop; all accesses through it
// are volatile and bounds-checked by `DmaPort`.
unsafe impl Send for Mapping {}
// SAFETY: see above.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len is the mmap made in `Iommu::map_fd`, unmapped only here.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len as usize) };
    }
}

impl Mapping {
    #[inline(always)]
    fn contains(&self, iova: u64, len: u64) -> bool {
        iova >= self.iova
            && iova
                .checked_add(len)
                .is_some_and(|end| end <= self.iova + self.len)
    }
}

/// A recorded DMA fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaFault {
    /// First IOVA of the access.
    pub iova: u64,
    /// Length of the access.
    pub len: u64,
}

/// The IOVA → host translation table of one VF.
#[derive(Debug)]
pub struct Iommu {
    name: String,
    maps: RwLock<Vec<Arc<Mapping>>>,
    /// Bumped on every unmap so cached translations are dropped.
    generation: AtomicU64,
    faults: AtomicU64,
    last_fault_iova: AtomicU64,
    logged: AtomicBool,
}

impl Iommu {
    pub(crate) fn new(name: String) -> Self {
        Iommu {
            name,
            maps: RwLock::new(Vec::new()),
            generation: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            last_fault_iova: AtomicU64::new(0),
            logged: AtomicBool::new(false),
        }
    }

    /// Maps `len` bytes of `fd` starting at `offset` at `iova`.
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
        if len == 0 || iova.checked_add(len).is_none() {
            return Err(SimError::BadMapping {
                iova,
                len,
                why: "empty or wrapping range",
            });
        }
        let mut maps = self.maps.write().unwrap_or_else(|e| e.into_inner());
        if maps
            .iter()
            .any(|m| iova < m.iova + m.len && m.iova < iova + len)
        {
            return Err(SimError::BadMapping {
                iova,
                len,
                why: "overlaps an existing mapping",
            });
        }
        // SAFETY: mapping a caller-provided fd shared read/write; the kernel validates fd,
        // offset and length, and we own the resulting mapping until `Mapping::drop`.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(SimError::Os {
                what: format!(
                    "{}: mmap of DMA region iova {iova:#x} len {len:#x}",
                    self.name
                ),
                err: std::io::Error::last_os_error(),
            });
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(SimError::BadMapping {
            iova,
            len,
            why: "mmap returned NULL",
        })?;
        maps.push(Arc::new(Mapping { iova, len, ptr }));
        log::debug!("{}: mapped iova {iova:#x}..{:#x}", self.name, iova + len);
        Ok(())
    }

    /// Removes the mapping that starts at `iova` with length `len`.
    pub fn unmap(&self, iova: u64, len: u64) -> Result<(), SimError> {
        let mut maps = self.maps.write().unwrap_or_else(|e| e.into_inner());
        let before = maps.len();
        maps.retain(|m| !(m.iova == iova && m.len == len));
        if maps.len() == before {
            return Err(SimError::BadMapping {
                iova,
                len,
                why: "no such mapping",
            });
        }
        self.generation.fetch_add(1, Ordering::Release);
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
        self.maps.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn lookup(&self, iova: u64, len: u64) -> Option<Arc<Mapping>> {
        let maps = self.maps.read().unwrap_or_else(|e| e.into_inner());
        maps.iter().find(|m| m.contains(iova, len)).cloned()
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
/// (step, feeder, threaded engine) owns its port, so the last-hit cache needs no locking.
#[derive(Debug)]
pub(crate) struct DmaPort {
    iommu: Arc<Iommu>,
    cache: Option<Arc<Mapping>>,
    cache_gen: u64,
}

impl DmaPort {
    pub(crate) fn new(iommu: Arc<Iommu>) -> Self {
        DmaPort {
            iommu,
            cache: None,
            cache_gen: 0,
        }
    }

    /// Translates `[iova, iova+len)` to a host pointer, or records a fault.
    #[inline(always)]
    pub(crate) fn translate(&mut self, iova: u64, len: u64, what: &str) -> Option<*mut u8> {
        let gen = self.iommu.generation.load(Ordering::Acquire);
        if let Some(m) = &self.cache {
            if gen == self.cache_gen && m.contains(iova, len) {
                // SAFETY: contains() proved iova - m.iova + len <= m.len, so the offset is
                // inside the mapping.
                return Some(unsafe { m.ptr.as_ptr().add((iova - m.iova) as usize) });
            }
        }
        self.translate_slow(iova, len, what, gen)
    }

    #[cold]
    fn translate_slow(&mut self, iova: u64, len: u64, what: &str, gen: u64) -> Option<*mut u8> {
        match self.iommu.lookup(iova, len) {
            Some(m) => {
                // SAFETY: lookup() checked containment.
                let p = unsafe { m.ptr.as_ptr().add((iova - m.iova) as usize) };
                self.cache = Some(m);
                self.cache_gen = gen;
                Some(p)
            }
            None => {
                self.cache = None;
                self.iommu.record_fault(iova, len, what);
                None
            }
        }
    }

    /// Reads a little-endian u64 (descriptor qword).
    #[inline(always)]
    pub(crate) fn read_u64(&mut self, iova: u64, what: &str) -> Option<u64> {
        let p = self.translate(iova, 8, what)?;
        // SAFETY: p is valid for 8 bytes (translate checked). Volatile because the driver
        // shares this memory; unaligned addresses fall back to an unaligned read.
        let v = unsafe {
            if (p as usize) & 7 == 0 {
                std::ptr::read_volatile(p as *const u64)
            } else {
                std::ptr::read_unaligned(p as *const u64)
            }
        };
        Some(u64::from_le(v))
    }

    /// Reads a little-endian u32.
    #[inline(always)]
    pub(crate) fn read_u32(&mut self, iova: u64, what: &str) -> Option<u32> {
        let p = self.translate(iova, 4, what)?;
        // SAFETY: p is valid for 4 bytes.
        let v = unsafe {
            if (p as usize) & 3 == 0 {
                std::ptr::read_volatile(p as *const u32)
            } else {
                std::ptr::read_unaligned(p as *const u32)
            }
        };
        Some(u32::from_le(v))
    }

    /// Writes a little-endian u32.
    #[inline(always)]
    pub(crate) fn write_u32(&mut self, iova: u64, v: u32, what: &str) -> bool {
        let Some(p) = self.translate(iova, 4, what) else {
            return false;
        };
        // SAFETY: p is valid for 4 bytes.
        unsafe {
            if (p as usize) & 3 == 0 {
                std::ptr::write_volatile(p as *mut u32, v.to_le())
            } else {
                std::ptr::write_unaligned(p as *mut u32, v.to_le())
            }
        }
        true
    }

    /// Copies `src` to device memory at `iova`.
    #[inline(always)]
    pub(crate) fn write_bytes(&mut self, iova: u64, src: &[u8], what: &str) -> bool {
        let Some(p) = self.translate(iova, src.len() as u64, what) else {
            return false;
        };
        // SAFETY: p is valid for src.len() bytes (translate checked) and does not overlap src
        // (src is model-owned memory, p is inside a DMA mapping).
        unsafe { volatile_copy(src.as_ptr(), p, src.len()) };
        true
    }

    /// Copies device memory at `iova` into `dst`.
    #[inline(always)]
    pub(crate) fn read_bytes(&mut self, iova: u64, dst: &mut [u8], what: &str) -> bool {
        let Some(p) = self.translate(iova, dst.len() as u64, what) else {
            return false;
        };
        // SAFETY: p is valid for dst.len() bytes; dst is model-owned and does not overlap.
        unsafe { volatile_copy(p, dst.as_mut_ptr(), dst.len()) };
        true
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
