//! DMA memory: memfd-backed, page-locked, with an IOVA chosen by us.
//!
//! Every region is a memfd so that it can be handed to another process (the vfio-user server, or
//! the model's IOMMU table, which maps the same fd) exactly the way a kernel IOMMU mapping hands
//! the pages to the device. Regions use 2 MiB huge pages when the kernel has free ones and fall
//! back to 4 KiB pages (with one warning per process) otherwise, unless huge pages are required.

use crate::Error;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// 2 MiB, the huge page size used for DMA memory.
pub const HUGE_PAGE_SIZE: usize = 2 << 20;
/// 4 KiB, the fallback page size.
pub const SMALL_PAGE_SIZE: usize = 4096;

/// First IOVA handed out. Below 4 GiB is left alone so that a mapping never collides with the
/// low addresses some IOMMUs reserve (MSI windows, RMRRs).
const IOVA_BASE: u64 = 1 << 32;
/// Top of the IOVA space we use: 39-bit, the smallest address width of Intel IOMMUs (and the
/// default of QEMU's emulated intel-iommu).
const IOVA_LIMIT: u64 = 1 << 39;

static NEXT_IOVA: AtomicU64 = AtomicU64::new(IOVA_BASE);
static WARNED_SMALL_PAGES: AtomicBool = AtomicBool::new(false);

/// Whether to use huge pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HugePages {
    /// Use 2 MiB pages when available, else 4 KiB pages with one warning.
    #[default]
    Auto,
    /// Fail with [`Error::NoHugePages`] when no 2 MiB pages are free.
    Require,
    /// Always use 4 KiB pages (tests, containers).
    Never,
}

/// Which pages back a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKind {
    /// 2 MiB huge pages (hugetlbfs-backed memfd).
    Huge2M,
    /// 4 KiB pages, locked in memory.
    Small4K,
}

/// Options for [`DmaRegion::allocate`].
#[derive(Debug, Clone, Default)]
pub struct DmaOptions {
    /// Huge page policy.
    pub huge_pages: HugePages,
    /// Name shown in `/proc/<pid>/maps` (`memfd:<name>`).
    pub name: Option<String>,
}

/// A contiguous (in IOVA space) block of DMA memory.
///
/// The region owns its memfd and its mapping; both are released on drop. The device-visible
/// address of byte `off` is `iova() + off`. The IOVA is unique in this process.
///
/// ```
/// use floodgate_vfio::{DmaOptions, DmaRegion, HugePages};
/// let opts = DmaOptions { huge_pages: HugePages::Never, name: Some("doc".into()) };
/// let region = DmaRegion::allocate(64 * 1024, &opts).unwrap();
/// assert!(region.len() >= 64 * 1024);
/// assert_eq!(region.iova() % 4096, 0);
/// ```
#[derive(Debug)]
pub struct DmaRegion {
    ptr: NonNull<u8>,
    len: usize,
    iova: u64,
    fd: OwnedFd,
    kind: PageKind,
}

// SAFETY: the region is plain shared memory; the pointer is valid for the region's lifetime on
// any thread. Concurrent access to the bytes is the user's responsibility (the driver hands
// disjoint buffers to disjoint owners), exactly as with device DMA.
unsafe impl Send for DmaRegion {}
// SAFETY: see above; `&DmaRegion` only exposes the pointer, length, IOVA and fd.
unsafe impl Sync for DmaRegion {}

impl DmaRegion {
    /// Allocates at least `len` bytes of zeroed DMA memory and assigns it an IOVA.
    pub fn allocate(len: usize, opts: &DmaOptions) -> Result<Self, Error> {
        if len == 0 {
            return Err(Error::InvalidArgument("DMA region of 0 bytes".into()));
        }
        let name = opts.name.clone().unwrap_or_else(|| "floodgate-dma".into());
        let try_huge = opts.huge_pages != HugePages::Never;
        if try_huge {
            match Self::allocate_with(len, &name, PageKind::Huge2M) {
                Ok(r) => return Ok(r),
                Err(e) if opts.huge_pages == HugePages::Require => {
                    log::debug!("huge page allocation failed: {}", crate::ErrorChain(&e));
                    return Err(Error::NoHugePages { bytes: len });
                }
                Err(e) => {
                    if !WARNED_SMALL_PAGES.swap(true, Ordering::Relaxed) {
                        log::warn!(
                            "no free 2 MiB huge pages ({}); DMA memory falls back to 4 KiB \
                             pages, which costs IOTLB misses. Reserve huge pages with \
                             `echo 512 > /proc/sys/vm/nr_hugepages`.",
                            crate::ErrorChain(&e)
                        );
                    }
                }
            }
        }
        Self::allocate_with(len, &name, PageKind::Small4K)
    }

    fn allocate_with(len: usize, name: &str, kind: PageKind) -> Result<Self, Error> {
        let page = match kind {
            PageKind::Huge2M => HUGE_PAGE_SIZE,
            PageKind::Small4K => SMALL_PAGE_SIZE,
        };
        let len = len.div_ceil(page) * page;
        let cname = std::ffi::CString::new(name)
            .map_err(|_| Error::InvalidArgument(format!("DMA region name {name:?} has a NUL")))?;
        let mut flags = libc::MFD_CLOEXEC;
        if kind == PageKind::Huge2M {
            flags |= libc::MFD_HUGETLB | libc::MFD_HUGE_2MB;
        }
        // SAFETY: cname is a valid NUL-terminated string; memfd_create has no other inputs.
        let raw = unsafe { libc::memfd_create(cname.as_ptr(), flags) };
        if raw < 0 {
            return Err(Error::last_os("memfd_create for DMA memory"));
        }
        // SAFETY: raw is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: fd is a valid memfd; ftruncate only sets its size.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
            return Err(Error::last_os(format!("sizing {len}-byte DMA memfd")));
        }
        // SAFETY: mapping a fresh memfd we own with a length equal to its size; the kernel
        // picks the address. MAP_POPULATE faults every page in now, so a huge page shortage
        // shows here (as SIGBUS-free ENOMEM) and not later on the hot path.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Error::last_os(format!("mmap of {len}-byte DMA memfd")));
        }
        if kind == PageKind::Huge2M && !Self::populated(ptr, len) {
            // SAFETY: ptr/len is the mapping created above.
            unsafe { libc::munmap(ptr, len) };
            return Err(Error::NoHugePages { bytes: len });
        }
        if kind == PageKind::Small4K {
            // Pin the pages so they are never swapped out from under the device. Failure
            // (RLIMIT_MEMLOCK for non-root) is not fatal for the model, which reads through the
            // fd, but is worth a debug line.
            // SAFETY: ptr/len is our mapping.
            if unsafe { libc::mlock(ptr, len) } != 0 {
                log::debug!(
                    "mlock of DMA memory failed: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
        let iova = Self::reserve_iova(len as u64)?;
        Ok(DmaRegion {
            // SAFETY: mmap succeeded, so ptr is non-null.
            ptr: unsafe { NonNull::new_unchecked(ptr.cast()) },
            len,
            iova,
            fd,
            kind,
        })
    }

    /// Checks that MAP_POPULATE really backed every huge page (hugetlb may map without pages).
    fn populated(ptr: *mut libc::c_void, len: usize) -> bool {
        let pages = len / SMALL_PAGE_SIZE;
        let mut vec = vec![0u8; pages];
        // SAFETY: ptr/len is a valid mapping, vec has one byte per 4 KiB page.
        let rc = unsafe { libc::mincore(ptr, len, vec.as_mut_ptr()) };
        rc == 0 && vec.iter().all(|b| b & 1 == 1)
    }

    fn reserve_iova(len: u64) -> Result<u64, Error> {
        // Align every region to 2 MiB so huge pages map with one IOMMU entry each.
        let span = len.div_ceil(HUGE_PAGE_SIZE as u64) * HUGE_PAGE_SIZE as u64;
        let iova = NEXT_IOVA.fetch_add(span, Ordering::Relaxed);
        if iova + span > IOVA_LIMIT {
            return Err(Error::InvalidArgument(
                "IOVA space exhausted (512 GiB of DMA regions allocated in this process)".into(),
            ));
        }
        Ok(iova)
    }

    /// Host virtual address of the first byte.
    #[inline(always)]
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes (a multiple of the page size).
    #[inline(always)]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Device-visible address of the first byte.
    #[inline(always)]
    pub fn iova(&self) -> u64 {
        self.iova
    }

    /// The memfd backing the region. Map it (MAP_SHARED) to see the same bytes.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Which pages back the region.
    pub fn page_kind(&self) -> PageKind {
        self.kind
    }

    /// Translates a host pointer inside the region to its IOVA.
    #[inline(always)]
    pub fn iova_of(&self, p: *const u8) -> Option<u64> {
        let off = (p as usize).wrapping_sub(self.ptr.as_ptr() as usize);
        (off < self.len).then(|| self.iova + off as u64)
    }
}

impl Drop for DmaRegion {
    fn drop(&mut self) {
        // SAFETY: ptr/len is the mapping made in allocate_with and nothing else unmaps it.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_pages_zeroed_and_shared_through_fd() {
        let opts = DmaOptions {
            huge_pages: HugePages::Never,
            name: None,
        };
        let r = DmaRegion::allocate(10_000, &opts).unwrap();
        assert_eq!(r.len(), 12_288);
        assert_eq!(r.page_kind(), PageKind::Small4K);
        // SAFETY: in bounds of the region.
        unsafe {
            assert_eq!(*r.as_ptr().add(5000), 0);
            *r.as_ptr().add(5000) = 0xAB;
        }
        // A second mapping of the fd sees the byte: this is how the model reads DMA memory.
        // SAFETY: mapping the region's own fd read-only with its length.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                r.len(),
                libc::PROT_READ,
                libc::MAP_SHARED,
                r.fd().as_raw_fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        // SAFETY: p maps r.len() bytes.
        unsafe {
            assert_eq!(*(p as *const u8).add(5000), 0xAB);
            libc::munmap(p, r.len());
        }
    }

    #[test]
    fn iovas_do_not_overlap_and_translate() {
        let opts = DmaOptions {
            huge_pages: HugePages::Never,
            name: None,
        };
        let a = DmaRegion::allocate(4096, &opts).unwrap();
        let b = DmaRegion::allocate(3 << 20, &opts).unwrap();
        assert!(a.iova() + a.len() as u64 <= b.iova() || b.iova() + b.len() as u64 <= a.iova());
        // SAFETY: offset 100 is inside b.
        let p = unsafe { b.as_ptr().add(100) };
        assert_eq!(b.iova_of(p), Some(b.iova() + 100));
        assert_eq!(a.iova_of(p), None);
    }

    #[test]
    fn zero_length_is_an_error() {
        let e = DmaRegion::allocate(0, &DmaOptions::default()).unwrap_err();
        assert!(e.to_string().contains("0 bytes"));
    }

    #[test]
    fn auto_falls_back_or_uses_huge_pages() {
        let r = DmaRegion::allocate(4096, &DmaOptions::default()).unwrap();
        match r.page_kind() {
            PageKind::Huge2M => assert_eq!(r.len(), HUGE_PAGE_SIZE),
            PageKind::Small4K => assert_eq!(r.len(), 4096),
        }
    }
}
