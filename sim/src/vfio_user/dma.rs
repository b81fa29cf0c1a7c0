//! The DMA_MAP/DMA_UNMAP table of a vfio-user connection, on top of the VF's [`Iommu`].
//!
//! QEMU sends one DMA_MAP per guest IOMMU page (a 2 MiB map arrives as 512 4 KiB maps, each
//! with a fresh fd for the same memfd), maps without an fd for ROM ranges, and large
//! power-of-two DMA_UNMAPs that cover no mapping or only part of one. So this table:
//! * keeps one open file per backing inode (`st_dev`, `st_ino`), not one per message;
//! * accepts a map without an fd and treats the range as unreachable (DMA there faults);
//! * unmaps every mapping that overlaps the range, re-mapping the parts outside it.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use crate::iommu::Iommu;

/// One mapped range.
#[derive(Debug, Clone)]
struct Entry {
    len: u64,
    /// Offset in the backing file.
    offset: u64,
    /// Backing file key; `None` for a map without an fd.
    key: Option<(u64, u64)>,
}

/// IOVA table of one connection.
///
/// While the table is inactive (the function's Bus Master Enable bit is clear) its ranges are
/// kept but not in the IOMMU, so any DMA the model attempts is a recorded fault, as a device
/// that may not master the bus cannot reach memory.
#[derive(Debug, Default)]
pub(crate) struct DmaTable {
    maps: BTreeMap<u64, Entry>,
    files: HashMap<(u64, u64), Arc<File>>,
    active: bool,
}

fn inode_key(f: &File) -> std::io::Result<(u64, u64)> {
    // SAFETY: fstat fills a zeroed stat buffer for an fd we hold open.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: see above; `st` is a valid out-pointer.
    if unsafe { libc::fstat(f.as_raw_fd(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.st_dev, st.st_ino))
}

fn io_err(kind: std::io::ErrorKind, msg: String) -> std::io::Error {
    std::io::Error::new(kind, msg)
}

impl DmaTable {
    /// Number of ranges (with and without fd).
    pub(crate) fn len(&self) -> usize {
        self.maps.len()
    }

    /// Bytes mapped with an fd.
    pub(crate) fn backed_bytes(&self) -> u64 {
        self.maps
            .values()
            .filter(|e| e.key.is_some())
            .map(|e| e.len)
            .sum()
    }

    fn overlaps(&self, iova: u64, end: u64) -> Vec<u64> {
        self.maps
            .range(..end)
            .filter(|(&a, e)| a + e.len > iova)
            .map(|(&a, _)| a)
            .collect()
    }

    /// Whether the ranges are in the IOMMU.
    pub(crate) fn active(&self) -> bool {
        self.active
    }

    /// Puts every backed range into the IOMMU (`true`) or takes them all out (`false`).
    pub(crate) fn set_active(&mut self, iommu: &Iommu, on: bool) {
        if on == self.active {
            return;
        }
        self.active = on;
        for (&iova, e) in &self.maps {
            let Some(key) = e.key else { continue };
            if on {
                let Some(f) = self.files.get(&key) else {
                    continue;
                };
                if let Err(err) = iommu.map_file(iova, e.len, f, e.offset) {
                    log::warn!(
                        "bus master on: mapping {iova:#x}+{:#x} failed: {err}",
                        e.len,
                        err = floodgate_vfio::ErrorChain(&err)
                    );
                }
            } else if let Err(err) = iommu.unmap(iova, e.len) {
                log::warn!(
                    "bus master off: unmapping {iova:#x}+{:#x}: {err}",
                    e.len,
                    err = floodgate_vfio::ErrorChain(&err)
                );
            }
        }
    }

    /// DMA_MAP: `len` bytes of `fd` at `offset`, seen by the device at `iova`.
    pub(crate) fn map(
        &mut self,
        iommu: &Iommu,
        iova: u64,
        len: u64,
        offset: u64,
        fd: Option<File>,
    ) -> std::io::Result<()> {
        let end = iova.checked_add(len).filter(|_| len > 0).ok_or_else(|| {
            io_err(
                std::io::ErrorKind::InvalidInput,
                format!("DMA_MAP iova {iova:#x} len {len:#x}: empty or wrapping range"),
            )
        })?;
        if !self.overlaps(iova, end).is_empty() {
            return Err(io_err(
                std::io::ErrorKind::AlreadyExists,
                format!("DMA_MAP iova {iova:#x} len {len:#x} overlaps an existing mapping"),
            ));
        }
        let key = match fd {
            None => {
                log::debug!("DMA_MAP {iova:#x}+{len:#x} without fd: unreachable for the model");
                None
            }
            Some(f) => {
                let key = inode_key(&f)?;
                let file = self.files.entry(key).or_insert_with(|| Arc::new(f)).clone();
                if self.active {
                    iommu.map_file(iova, len, &file, offset).map_err(|e| {
                        io_err(
                            std::io::ErrorKind::InvalidInput,
                            floodgate_vfio::ErrorChain(&e).to_string(),
                        )
                    })?;
                }
                Some(key)
            }
        };
        self.maps.insert(iova, Entry { len, offset, key });
        Ok(())
    }

    /// DMA_UNMAP of `[iova, iova + len)`; `all` removes everything. Returns the number of bytes
    /// that were mapped in the range.
    pub(crate) fn unmap(&mut self, iommu: &Iommu, iova: u64, len: u64, all: bool) -> u64 {
        let end = if all {
            u64::MAX
        } else {
            iova.saturating_add(len)
        };
        let start = if all { 0 } else { iova };
        let mut removed = 0;
        for a in self.overlaps(start, end) {
            let Some(e) = self.maps.remove(&a) else {
                continue;
            };
            if e.key.is_some() && self.active {
                if let Err(err) = iommu.unmap(a, e.len) {
                    log::warn!(
                        "DMA_UNMAP {a:#x}+{:#x}: {err}",
                        e.len,
                        err = floodgate_vfio::ErrorChain(&err)
                    );
                }
            }
            let e_end = a + e.len;
            let cut_lo = a.max(start);
            let cut_hi = e_end.min(end);
            removed += cut_hi - cut_lo;
            // Keep the parts outside the unmapped range.
            let file = e.key.and_then(|k| self.files.get(&k).cloned());
            for (lo, hi) in [(a, cut_lo), (cut_hi, e_end)] {
                if hi <= lo {
                    continue;
                }
                let piece = Entry {
                    len: hi - lo,
                    offset: e.offset + (lo - a),
                    key: e.key,
                };
                if let (Some(f), true) = (&file, self.active) {
                    if let Err(err) = iommu.map_file(lo, piece.len, f, piece.offset) {
                        log::warn!(
                            "DMA_UNMAP: keeping {lo:#x}..{hi:#x} failed: {err}",
                            err = floodgate_vfio::ErrorChain(&err)
                        );
                        continue;
                    }
                }
                self.maps.insert(lo, piece);
            }
        }
        // Close files no mapping uses any more.
        let used: std::collections::HashSet<(u64, u64)> =
            self.maps.values().filter_map(|e| e.key).collect();
        self.files.retain(|k, _| used.contains(k));
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;

    fn memfd(len: u64) -> File {
        // SAFETY: constant NUL-terminated name, no other inputs.
        let fd = unsafe { libc::memfd_create(c"dma-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: fresh fd we own.
        let f = unsafe { File::from_raw_fd(fd) };
        f.set_len(len).unwrap();
        f
    }

    fn iommu() -> Iommu {
        Iommu::new("test".into())
    }

    fn active() -> DmaTable {
        DmaTable {
            active: true,
            ..Default::default()
        }
    }

    #[test]
    fn inactive_table_keeps_ranges_out_of_the_iommu() {
        let m = iommu();
        let mut t = DmaTable::default();
        t.map(&m, 0x1000, 0x2000, 0, Some(memfd(0x4000))).unwrap();
        assert_eq!(m.mappings(), 0, "bus mastering off: not reachable");
        t.set_active(&m, true);
        assert_eq!(m.mappings(), 1);
        t.set_active(&m, false);
        assert_eq!(m.mappings(), 0);
        assert_eq!(t.len(), 1, "the range is remembered");
        assert_eq!(t.unmap(&m, 0, 0, true), 0x2000);
        t.set_active(&m, true);
        assert_eq!(m.mappings(), 0);
    }

    #[test]
    fn pages_of_one_memfd_share_one_file() {
        let m = iommu();
        let mut t = active();
        let f = memfd(1 << 20);
        for i in 0..8u64 {
            t.map(
                &m,
                0x10_0000 + i * 4096,
                4096,
                i * 4096,
                Some(f.try_clone().unwrap()),
            )
            .unwrap();
        }
        assert_eq!(t.len(), 8);
        assert_eq!(t.files.len(), 1);
        assert_eq!(m.mappings(), 8);
        assert_eq!(t.backed_bytes(), 8 * 4096);
    }

    #[test]
    fn overlap_refused_and_fdless_map_accepted() {
        let m = iommu();
        let mut t = active();
        t.map(&m, 0x1000, 0x2000, 0, Some(memfd(0x4000))).unwrap();
        let e = t
            .map(&m, 0x2000, 0x1000, 0, Some(memfd(0x1000)))
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        t.map(&m, 0xC0000, 0x20000, 0, None).unwrap();
        assert_eq!(m.mappings(), 1, "fd-less map is not in the IOMMU");
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn unmap_covering_nothing_part_and_all() {
        let m = iommu();
        let mut t = active();
        let f = memfd(0x10000);
        t.map(&m, 0x10000, 0x4000, 0x1000, Some(f)).unwrap();
        assert_eq!(t.unmap(&m, 0x100000, 0x100000, false), 0);
        // Cut the middle page out: two pieces stay, at the right offsets.
        assert_eq!(t.unmap(&m, 0x11000, 0x1000, false), 0x1000);
        assert_eq!(t.len(), 2);
        assert_eq!(m.mappings(), 2);
        assert_eq!(t.maps[&0x12000].offset, 0x3000);
        assert_eq!(t.unmap(&m, 0, 0, true), 0x3000);
        assert_eq!(t.len(), 0);
        assert_eq!(m.mappings(), 0);
        assert!(
            t.files.is_empty(),
            "the file is closed with its last mapping"
        );
    }
}
