//! [`MmapBar`]: register access to a BAR through an `mmap` of its VFIO region, with a
//! `pread`/`pwrite` fallback for regions the kernel will not map.

use crate::{Bar, Error};
use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

static WARNED_BAD_OFFSET: AtomicBool = AtomicBool::new(false);
static WARNED_WRITE_FAILED: AtomicBool = AtomicBool::new(false);

/// What keeps the registers reachable: a mapping (unmapped when the last clone goes) or a file
/// read at an offset.
#[derive(Debug)]
enum Backing {
    Mapped { ptr: NonNull<u8>, len: usize },
    File { file: File, offset: u64 },
}

/// The backing plus whatever must be released only after it (fields drop in order: the mapping
/// or file goes first, then `after`).
struct Shared {
    backing: Backing,
    /// For a VFIO BAR: the device handle. The kernel keeps a VFIO device open while any mapping
    /// of (or duplicate of) its fd exists, and detaching the group from its container fails with
    /// EBUSY until then; holding the handle here closes the device only after the last clone of
    /// the BAR is gone.
    after: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("backing", &self.backing)
            .field("releases_after", &self.after.is_some())
            .finish()
    }
}

// SAFETY: the mapping is only touched through volatile loads and stores (or munmap once, by
// the last owner), and File is Send + Sync; nothing in Backing is tied to one thread.
unsafe impl Send for Backing {}
// SAFETY: as above; `&Backing` gives no access beyond those loads, stores and positioned I/O.
unsafe impl Sync for Backing {}

impl Drop for Backing {
    fn drop(&mut self) {
        if let Backing::Mapped { ptr, len } = *self {
            // SAFETY: ptr/len is the mapping made in MmapBar::map; this is its only owner and
            // every MmapBar using it holds an Arc to it, so none is left.
            unsafe { libc::munmap(ptr.as_ptr().cast(), len) };
        }
    }
}

/// 32-bit register access to one BAR, by volatile loads and stores on an `mmap` of it.
///
/// Cloning is an `Arc` clone: all clones share the mapping, which is unmapped when the last one
/// is dropped (so a clone held by a queue stays valid even after the device is closed).
///
/// Registers are little-endian (PCI); on a little-endian host a read is one `mov`. Offsets
/// past the BAR or not 4-byte aligned read `0xFFFF_FFFF`, as an absent device does, and writes
/// to them are dropped: both are driver bugs, logged once.
///
/// When the kernel does not allow mapping the BAR, [`MmapBar::from_file`] gives the same type
/// over `pread`/`pwrite` on the region's file offset (one system call per access: slow, but
/// correct).
///
/// ```
/// use floodgate_vfio::{Bar, DmaOptions, DmaRegion, HugePages};
/// use floodgate_vfio::kernel::MmapBar;
/// // Any shared mapping works as a "BAR", for example a DMA region's memfd.
/// let mem = DmaRegion::allocate(4096, &DmaOptions { huge_pages: HugePages::Never, name: None })
///     .unwrap();
/// let bar = MmapBar::map(mem.fd(), 0, 4096).unwrap();
/// bar.write32(0x10, 0xdead_beef);
/// assert_eq!(bar.read32(0x10), 0xdead_beef);
/// assert_eq!(bar.read32(4096), 0xffff_ffff); // past the end
/// ```
#[derive(Debug, Clone)]
pub struct MmapBar {
    /// Start of the mapping, or null when access goes through `backing`'s file.
    base: *mut u8,
    len: usize,
    backing: Arc<Shared>,
}

// SAFETY: the mapping is device memory (or shared memory) accessed only by volatile 32-bit
// loads and stores, which are as thread-safe as the hardware registers they reach; the file
// variant uses positioned I/O, which needs no shared cursor. The pointer stays valid as long as
// any clone holds the Arc.
unsafe impl Send for MmapBar {}
// SAFETY: as above; `&MmapBar` only allows those accesses.
unsafe impl Sync for MmapBar {}

impl MmapBar {
    /// Maps `len` bytes of `fd` at `offset` (shared, read-write) and gives register access to
    /// them. For a VFIO BAR, `fd` is the device fd and `offset` the region offset from
    /// `VFIO_DEVICE_GET_REGION_INFO`; `offset` must be page-aligned.
    pub fn map(fd: BorrowedFd<'_>, offset: u64, len: usize) -> Result<Self, Error> {
        if len < 4 {
            return Err(Error::InvalidArgument(format!(
                "BAR mapping of {len} bytes holds no 32-bit register"
            )));
        }
        let off = libc::off_t::try_from(offset).map_err(|_| {
            Error::InvalidArgument(format!("BAR offset {offset:#x} does not fit in off_t"))
        })?;
        // SAFETY: a fresh shared mapping chosen by the kernel; it aliases no Rust object, and
        // it is only accessed through volatile loads and stores below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                off,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Error::last_os(format!(
                "mmap of {len} bytes at offset {offset:#x} of fd {}",
                fd.as_raw_fd()
            )));
        }
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| Error::Device("mmap returned a null BAR mapping".into()))?;
        Ok(MmapBar {
            base: ptr.as_ptr(),
            len,
            backing: Arc::new(Shared {
                backing: Backing::Mapped { ptr, len },
                after: None,
            }),
        })
    }

    /// Register access through `pread`/`pwrite` of `file` at `offset + register`, for BARs the
    /// kernel does not let us map.
    pub fn from_file(file: File, offset: u64, len: usize) -> Self {
        MmapBar {
            base: std::ptr::null_mut(),
            len,
            backing: Arc::new(Shared {
                backing: Backing::File { file, offset },
                after: None,
            }),
        }
    }

    /// Makes `keep` live until the last clone of this BAR is gone, and be dropped after the
    /// mapping (or file) is released. Fails, handing `keep` back, if this BAR was already cloned.
    #[allow(clippy::result_large_err)]
    pub(crate) fn release_after<T: Send + Sync + 'static>(&mut self, keep: T) -> Result<(), T> {
        match Arc::get_mut(&mut self.backing) {
            Some(shared) => {
                shared.after = Some(Box::new(keep));
                Ok(())
            }
            None => Err(keep),
        }
    }

    /// Length of the BAR in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the BAR has no registers (never true for a BAR from [`MmapBar::map`]).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether accesses are loads and stores on a mapping (`true`) or system calls (`false`).
    pub fn is_mapped(&self) -> bool {
        !self.base.is_null()
    }

    #[inline(always)]
    fn in_range(&self, offset: u32) -> bool {
        let off = offset as usize;
        off & 3 == 0 && off < self.len && self.len - off >= 4
    }

    #[cold]
    fn bad_offset(&self, offset: u32, what: &str) {
        if !WARNED_BAD_OFFSET.swap(true, Ordering::Relaxed) {
            log::error!(
                "{what} of BAR offset {offset:#x} is outside the {}-byte BAR or unaligned; \
                 reads return all-ones and writes are dropped (further cases not logged)",
                self.len
            );
        }
    }

    #[cold]
    fn file_read(&self, offset: u32) -> u32 {
        let Backing::File { file, offset: base } = &self.backing.backing else {
            return u32::MAX;
        };
        let mut b = [0u8; 4];
        match file.read_exact_at(&mut b, base + u64::from(offset)) {
            Ok(()) => u32::from_le_bytes(b),
            // A failed read looks like a device that is gone, which the driver handles.
            Err(_) => u32::MAX,
        }
    }

    #[cold]
    fn file_write(&self, offset: u32, value: u32) {
        let Backing::File { file, offset: base } = &self.backing.backing else {
            return;
        };
        if let Err(e) = file.write_all_at(&value.to_le_bytes(), base + u64::from(offset)) {
            if !WARNED_WRITE_FAILED.swap(true, Ordering::Relaxed) {
                log::error!("BAR write at {offset:#x} failed: {e} (further failures not logged)");
            }
        }
    }
}

impl Bar for MmapBar {
    #[inline(always)]
    fn read32(&self, offset: u32) -> u32 {
        if !self.in_range(offset) {
            self.bad_offset(offset, "read");
            return u32::MAX;
        }
        if self.base.is_null() {
            return self.file_read(offset);
        }
        // SAFETY: offset is 4-aligned and offset+4 <= len, so the load is inside the mapping,
        // which the Arc keeps alive; the mapping is page-aligned so the u32 is aligned.
        // Volatile: the value is a device register and must be read every time.
        u32::from_le(unsafe {
            std::ptr::read_volatile(self.base.add(offset as usize).cast::<u32>())
        })
    }

    #[inline(always)]
    fn write32(&self, offset: u32, value: u32) {
        if !self.in_range(offset) {
            self.bad_offset(offset, "write");
            return;
        }
        if self.base.is_null() {
            return self.file_write(offset, value);
        }
        // SAFETY: as in read32; volatile because the store is a device side effect.
        unsafe {
            std::ptr::write_volatile(self.base.add(offset as usize).cast::<u32>(), value.to_le())
        }
    }

    #[inline(always)]
    fn flush(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DmaOptions, DmaRegion, HugePages};
    use std::os::fd::AsFd;

    fn memfd(len: usize) -> DmaRegion {
        DmaRegion::allocate(
            len,
            &DmaOptions {
                huge_pages: HugePages::Never,
                name: Some("fake-bar".into()),
            },
        )
        .unwrap()
    }

    /// Reads a u32 through the region's own mapping (the "device side").
    fn peek(r: &DmaRegion, off: usize) -> u32 {
        // SAFETY: off+4 <= len in all callers; volatile, as the bar writes through another
        // mapping of the same pages.
        unsafe { std::ptr::read_volatile(r.as_ptr().add(off).cast::<u32>()) }
    }

    fn poke(r: &DmaRegion, off: usize, v: u32) {
        // SAFETY: as in peek.
        unsafe { std::ptr::write_volatile(r.as_ptr().add(off).cast::<u32>(), v) }
    }

    #[test]
    fn writes_reach_the_other_mapping_and_back() {
        let r = memfd(8192);
        let bar = MmapBar::map(r.fd(), 0, 8192).unwrap();
        assert!(bar.is_mapped());
        assert_eq!(bar.len(), 8192);
        bar.write32(0x0, 1);
        bar.write32(0x1ffc, 0x1234_5678);
        assert_eq!(peek(&r, 0), 1);
        assert_eq!(peek(&r, 0x1ffc), 0x1234_5678);
        // A "device" change between two reads is seen by the second: no cached value.
        assert_eq!(bar.read32(0x100), 0);
        poke(&r, 0x100, 7);
        assert_eq!(bar.read32(0x100), 7);
        poke(&r, 0x100, 8);
        assert_eq!(bar.read32(0x100), 8);
    }

    #[test]
    fn offset_mapping_sees_the_right_page() {
        let r = memfd(3 * 4096);
        poke(&r, 4096 + 8, 0xabcd);
        let bar = MmapBar::map(r.fd(), 4096, 4096).unwrap();
        assert_eq!(bar.read32(8), 0xabcd);
    }

    #[test]
    fn polling_loop_sees_a_write_from_another_thread() {
        // A loop that re-reads a register until it changes: only correct with volatile loads
        // (a plain load may be hoisted out of the loop and spin forever).
        let r = Arc::new(memfd(4096));
        let bar = MmapBar::map(r.fd(), 0, 4096).unwrap();
        let r2 = Arc::clone(&r);
        let t = std::thread::spawn(move || poke(&r2, 0x40, 0x8000_0000));
        while bar.read32(0x40) & 0x8000_0000 == 0 {
            std::hint::spin_loop();
        }
        t.join().unwrap();
        assert_eq!(bar.read32(0x40), 0x8000_0000);
    }

    #[test]
    fn out_of_range_and_unaligned_read_all_ones_and_drop_writes() {
        let r = memfd(4096);
        let bar = MmapBar::map(r.fd(), 0, 4096).unwrap();
        assert_eq!(bar.read32(4096), u32::MAX);
        assert_eq!(bar.read32(4094), u32::MAX);
        assert_eq!(bar.read32(u32::MAX), u32::MAX);
        bar.write32(2, 0x55);
        bar.write32(4096, 0x55);
        bar.write32(4092, 0x66);
        assert_eq!(peek(&r, 0), 0);
        assert_eq!(peek(&r, 4092), 0x66);
        assert_eq!(bar.read32(2), u32::MAX);
    }

    #[test]
    fn clones_share_the_mapping_and_outlive_the_original() {
        let r = memfd(4096);
        let bar = MmapBar::map(r.fd(), 0, 4096).unwrap();
        let c = bar.clone();
        drop(bar);
        c.write32(0x20, 42);
        assert_eq!(peek(&r, 0x20), 42);
        assert_eq!(Arc::strong_count(&c.backing), 1);
    }

    /// Records, when dropped, whether `addr` was still mapped from the file with inode `ino` in
    /// this process (the inode, because other tests running in parallel may map something else
    /// at the same address as soon as it is free).
    struct Witness {
        addr: usize,
        ino: u64,
        seen_mapped: Arc<std::sync::Mutex<Option<bool>>>,
    }

    impl Drop for Witness {
        fn drop(&mut self) {
            let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
            let mapped = maps.lines().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                let mut it = cols
                    .first()
                    .unwrap_or(&"")
                    .split('-')
                    .map(|h| usize::from_str_radix(h, 16).ok());
                let covers = matches!((it.next(), it.next()), (Some(Some(a)), Some(Some(b))) if a <= self.addr && self.addr < b);
                covers && cols.get(4).and_then(|i| i.parse::<u64>().ok()) == Some(self.ino)
            });
            *self.seen_mapped.lock().unwrap() = Some(mapped);
        }
    }

    fn inode(fd: BorrowedFd<'_>) -> u64 {
        // SAFETY: fstat on a live fd into a zeroed stat buffer.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }, 0);
        st.st_ino
    }

    #[test]
    fn release_after_runs_once_the_last_clone_has_unmapped() {
        let r = memfd(4096);
        let mut bar = MmapBar::map(r.fd(), 0, 4096).unwrap();
        let seen = Arc::new(std::sync::Mutex::new(None));
        let w = Witness {
            addr: bar.base as usize,
            ino: inode(r.fd()),
            seen_mapped: seen.clone(),
        };
        // The witness sees the mapping while it exists.
        let probe_seen = Arc::new(std::sync::Mutex::new(None));
        drop(Witness {
            addr: w.addr,
            ino: w.ino,
            seen_mapped: probe_seen.clone(),
        });
        assert_eq!(*probe_seen.lock().unwrap(), Some(true));
        assert!(bar.release_after(w).is_ok());
        let c = bar.clone();
        drop(bar);
        assert_eq!(*seen.lock().unwrap(), None, "a clone still holds it");
        c.write32(0, 1);
        drop(c);
        assert_eq!(
            *seen.lock().unwrap(),
            Some(false),
            "released after the mapping was gone"
        );
        // Once shared, nothing can be attached any more.
        let mut bar = MmapBar::map(r.fd(), 0, 4096).unwrap();
        let _c = bar.clone();
        assert_eq!(bar.release_after(7u32), Err(7));
    }

    #[test]
    fn file_fallback_reads_and_writes_at_the_offset() {
        let r = memfd(8192);
        let fd = r.fd().try_clone_to_owned().unwrap();
        let bar = MmapBar::from_file(File::from(fd), 4096, 4096);
        assert!(!bar.is_mapped());
        bar.write32(0x10, 0xfeed_f00d);
        assert_eq!(peek(&r, 4096 + 0x10), 0xfeed_f00d);
        poke(&r, 4096 + 0x14, 99);
        assert_eq!(bar.read32(0x14), 99);
        assert_eq!(bar.read32(4096), u32::MAX);
        bar.flush();
    }

    #[test]
    fn file_fallback_past_end_of_file_reads_all_ones() {
        let r = memfd(4096);
        let fd = r.fd().try_clone_to_owned().unwrap();
        // Claims 8 KiB but the file has 4 KiB: the short read is a "gone" device.
        let bar = MmapBar::from_file(File::from(fd), 0, 8192);
        assert_eq!(bar.read32(6000), u32::MAX);
    }

    #[test]
    fn mapping_errors_are_reported() {
        let r = memfd(4096);
        assert!(matches!(
            MmapBar::map(r.fd(), 0, 2),
            Err(Error::InvalidArgument(_))
        ));
        // Unaligned offset: mmap refuses with EINVAL.
        let e = MmapBar::map(r.fd(), 10, 4096).unwrap_err();
        assert!(
            e.to_string().contains("mmap of 4096 bytes at offset 0xa"),
            "{e}"
        );
        let _ = r.fd().as_fd();
    }
}
