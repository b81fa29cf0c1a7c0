//! Bookkeeping of the IOMMU mappings of one container, and the IOMMU's usable IOVA ranges.

use crate::Error;
use std::collections::BTreeMap;
use std::os::fd::RawFd;
use vfio_bindings::bindings::vfio::{
    vfio_info_cap_header, vfio_iommu_type1_info, vfio_iova_range, VFIO_BASE, VFIO_IOMMU_INFO_CAPS,
    VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, VFIO_TYPE,
};

/// `VFIO_IOMMU_GET_INFO` = `_IO(VFIO_TYPE, VFIO_BASE + 12)`: no direction or size bits, the
/// struct's own `argsz` says how large the buffer is. vfio-ioctls keeps its ioctl numbers
/// private, so this one is spelled out here.
const VFIO_IOMMU_GET_INFO: libc::c_ulong =
    ((VFIO_TYPE as libc::c_ulong) << 8) | (VFIO_BASE as libc::c_ulong + 12);

/// The IOVA ranges (inclusive ends) the container's IOMMU accepts, from
/// `VFIO_IOMMU_GET_INFO`'s IOVA-range capability. Empty when the kernel does not say (before
/// Linux 5.4), in which case every range is tried and the kernel judges.
pub(crate) fn query_iova_ranges(container: RawFd) -> Vec<(u64, u64)> {
    // u64 storage keeps the buffer 8-byte aligned, as the kernel structs need.
    let head = std::mem::size_of::<vfio_iommu_type1_info>();
    let mut buf = vec![0u64; head / 8];
    for _ in 0..2 {
        let bytes = buf.len() * 8;
        let info = vfio_iommu_type1_info {
            argsz: bytes as u32,
            ..Default::default()
        };
        // SAFETY: buf has room for at least one vfio_iommu_type1_info (24 bytes, u64 aligned).
        unsafe { std::ptr::write(buf.as_mut_ptr().cast::<vfio_iommu_type1_info>(), info) };
        // SAFETY: the kernel writes at most argsz bytes into buf, which has exactly that many.
        let rc = unsafe { libc::ioctl(container, VFIO_IOMMU_GET_INFO as _, buf.as_mut_ptr()) };
        if rc != 0 {
            log::debug!(
                "VFIO_IOMMU_GET_INFO failed: {}",
                std::io::Error::last_os_error()
            );
            return Vec::new();
        }
        // SAFETY: buf starts with the struct the kernel just filled in.
        let got = unsafe { std::ptr::read(buf.as_ptr().cast::<vfio_iommu_type1_info>()) };
        let need = got.argsz as usize;
        if need <= bytes {
            break;
        }
        // The capabilities did not fit: ask again with the size the kernel asked for.
        buf = vec![0u64; need.div_ceil(8)];
    }
    // SAFETY: reinterpreting the initialised u64 buffer as bytes, same length in bytes.
    let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), buf.len() * 8) };
    parse_iova_ranges(bytes)
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(off..off + 2)?.try_into().ok()?))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// Walks the capability chain of a `vfio_iommu_type1_info` buffer and returns the IOVA ranges
/// of the IOVA-range capability, checking every offset against the buffer.
pub(crate) fn parse_iova_ranges(b: &[u8]) -> Vec<(u64, u64)> {
    let flags_off = std::mem::offset_of!(vfio_iommu_type1_info, flags);
    let cap_off_off = std::mem::offset_of!(vfio_iommu_type1_info, cap_offset);
    let hdr = std::mem::size_of::<vfio_info_cap_header>();
    let range_size = std::mem::size_of::<vfio_iova_range>();
    let Some(flags) = u32_at(b, flags_off) else {
        return Vec::new();
    };
    if flags & VFIO_IOMMU_INFO_CAPS == 0 {
        return Vec::new();
    }
    let mut off = u32_at(b, cap_off_off).unwrap_or(0) as usize;
    let mut hops = 0;
    while off != 0 && hops < 64 {
        hops += 1;
        let (Some(id), Some(next)) = (u16_at(b, off), u32_at(b, off + 4)) else {
            break;
        };
        if u32::from(id) == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE {
            // header, then u32 nr_iovas, u32 reserved, then the ranges.
            let n = u32_at(b, off + hdr).unwrap_or(0) as usize;
            let first = off + hdr + 8;
            let mut out = Vec::new();
            for i in 0..n.min(1024) {
                let at = first + i * range_size;
                match (u64_at(b, at), u64_at(b, at + 8)) {
                    (Some(s), Some(e)) if s <= e => out.push((s, e)),
                    (Some(_), Some(_)) => {}
                    _ => break,
                }
            }
            return out;
        }
        let next = next as usize;
        if next <= off {
            break;
        }
        off = next;
    }
    Vec::new()
}

/// The IOMMU mappings made in one container: non-overlapping `[iova, iova + len)` ranges,
/// each inside one of the IOMMU's usable ranges when those are known.
#[derive(Debug, Default)]
pub(crate) struct IovaMap {
    maps: BTreeMap<u64, u64>,
    usable: Vec<(u64, u64)>,
}

impl IovaMap {
    /// An empty map over the given usable ranges (inclusive ends; empty = not known).
    pub(crate) fn new(usable: Vec<(u64, u64)>) -> Self {
        IovaMap {
            maps: BTreeMap::new(),
            usable,
        }
    }

    /// Checks that `[iova, iova + len)` may be added: non-empty, no wrap, inside a usable
    /// range, overlapping no existing mapping.
    pub(crate) fn check_insert(&self, iova: u64, len: u64) -> Result<(), Error> {
        if len == 0 {
            return Err(Error::InvalidArgument(format!(
                "DMA mapping of 0 bytes at IOVA {iova:#x}"
            )));
        }
        let last = iova.checked_add(len - 1).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "DMA mapping of {len} bytes at IOVA {iova:#x} wraps around"
            ))
        })?;
        if !self.usable.is_empty() && !self.usable.iter().any(|&(s, e)| s <= iova && last <= e) {
            let ranges: Vec<String> = self
                .usable
                .iter()
                .map(|(s, e)| format!("{s:#x}-{e:#x}"))
                .collect();
            return Err(Error::Device(format!(
                "IOVA range {iova:#x}-{last:#x} is outside what the IOMMU can translate \
                 ({}); with QEMU's intel-iommu, raise its address width (aw-bits=48)",
                ranges.join(", ")
            )));
        }
        if let Some((&s, &l)) = self.maps.range(..=last).next_back() {
            if s + l > iova {
                return Err(Error::InvalidArgument(format!(
                    "DMA mapping {iova:#x}+{len:#x} overlaps the mapping {s:#x}+{l:#x}"
                )));
            }
        }
        Ok(())
    }

    /// Records a mapping (after [`IovaMap::check_insert`] and the kernel agreed).
    pub(crate) fn insert(&mut self, iova: u64, len: u64) {
        self.maps.insert(iova, len);
    }

    /// Forgets the mapping that starts at `iova` with length `len`; it must exist exactly.
    pub(crate) fn check_remove(&self, iova: u64, len: u64) -> Result<(), Error> {
        match self.maps.get(&iova) {
            Some(&l) if l == len => Ok(()),
            Some(&l) => Err(Error::InvalidArgument(format!(
                "DMA unmap of {len:#x} bytes at IOVA {iova:#x}, but {l:#x} bytes were mapped there"
            ))),
            None => Err(Error::InvalidArgument(format!(
                "DMA unmap of IOVA {iova:#x}, which is not mapped"
            ))),
        }
    }

    /// Removes a mapping checked with [`IovaMap::check_remove`].
    pub(crate) fn remove(&mut self, iova: u64) {
        self.maps.remove(&iova);
    }

    /// Removes and returns every mapping, lowest IOVA first.
    pub(crate) fn take_all(&mut self) -> Vec<(u64, u64)> {
        std::mem::take(&mut self.maps).into_iter().collect()
    }

    /// Number of mappings.
    pub(crate) fn len(&self) -> usize {
        self.maps.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_number_matches_the_kernel_header() {
        // linux/vfio.h: VFIO_IOMMU_GET_INFO is _IO(';', 100 + 12).
        assert_eq!(VFIO_IOMMU_GET_INFO, 0x3b70);
    }

    #[test]
    fn overlaps_and_bad_ranges_are_refused() {
        let mut m = IovaMap::new(Vec::new());
        m.check_insert(0x1_0000_0000, 0x20_0000).unwrap();
        m.insert(0x1_0000_0000, 0x20_0000);
        // Exactly adjacent on either side is fine.
        m.check_insert(0x1_0020_0000, 0x1000).unwrap();
        m.check_insert(0xffff_f000, 0x1000).unwrap();
        // Any overlap is not.
        for (iova, len) in [
            (0x1_0000_0000, 0x1000),
            (0x1_001f_f000, 0x2000),
            (0xffff_f000, 0x2000),
            (0xf000_0000, 0x2000_0000),
        ] {
            let e = m.check_insert(iova, len).unwrap_err();
            assert!(
                e.to_string().contains("overlaps"),
                "{iova:#x}+{len:#x}: {e}"
            );
        }
        assert!(m.check_insert(5, 0).is_err());
        assert!(m
            .check_insert(u64::MAX - 10, 0x1000)
            .unwrap_err()
            .to_string()
            .contains("wraps"));
    }

    #[test]
    fn removal_must_match_a_mapping_exactly() {
        let mut m = IovaMap::new(Vec::new());
        m.insert(0x2000_0000, 0x4000);
        m.insert(0x3000_0000, 0x1000);
        assert!(m
            .check_remove(0x2000_1000, 0x1000)
            .unwrap_err()
            .to_string()
            .contains("not mapped"));
        assert!(m
            .check_remove(0x2000_0000, 0x1000)
            .unwrap_err()
            .to_string()
            .contains("0x4000"));
        m.check_remove(0x2000_0000, 0x4000).unwrap();
        m.remove(0x2000_0000);
        assert_eq!(m.len(), 1);
        assert!(m.check_remove(0x2000_0000, 0x4000).is_err());
        assert_eq!(m.take_all(), vec![(0x3000_0000, 0x1000)]);
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn usable_ranges_are_enforced_with_advice() {
        // A 39-bit IOMMU with the x86 MSI window carved out.
        let m = IovaMap::new(vec![(0, 0xfedf_ffff), (0xfef0_0000, (1 << 39) - 1)]);
        m.check_insert(1 << 32, 1 << 21).unwrap();
        let e = m.check_insert((1 << 39) - 0x1000, 0x2000).unwrap_err();
        assert!(e.to_string().contains("aw-bits=48"), "{e}");
        assert!(m.check_insert(0xfee0_0000, 0x1000).is_err());
    }

    /// Builds the bytes the kernel returns: info header, then one unrelated capability, then
    /// the IOVA-range capability with `ranges`.
    fn info_buffer(ranges: &[(u64, u64)]) -> Vec<u8> {
        let mut b = vec![0u8; 24];
        let first_cap = 24u32;
        let second_cap = 24 + 16;
        b[0..4].copy_from_slice(&(0u32).to_ne_bytes()); // argsz, filled below
        b[4..8].copy_from_slice(&(VFIO_IOMMU_INFO_CAPS | 1).to_ne_bytes());
        b[8..16].copy_from_slice(&(0x1000u64 | 0x20_0000).to_ne_bytes());
        b[16..20].copy_from_slice(&first_cap.to_ne_bytes());
        // Cap id 2 (migration): header + 8 bytes we skip.
        b.extend_from_slice(&2u16.to_ne_bytes());
        b.extend_from_slice(&1u16.to_ne_bytes());
        b.extend_from_slice(&(second_cap as u32).to_ne_bytes());
        b.extend_from_slice(&[0u8; 8]);
        assert_eq!(b.len(), second_cap);
        b.extend_from_slice(&(VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE as u16).to_ne_bytes());
        b.extend_from_slice(&1u16.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&(ranges.len() as u32).to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        for (s, e) in ranges {
            b.extend_from_slice(&s.to_ne_bytes());
            b.extend_from_slice(&e.to_ne_bytes());
        }
        let len = b.len() as u32;
        b[0..4].copy_from_slice(&len.to_ne_bytes());
        b
    }

    #[test]
    fn iova_range_capability_is_parsed_through_the_chain() {
        let want = [(0, 0xfedf_ffff), (0xfef0_0000, 0x7f_ffff_ffff)];
        assert_eq!(parse_iova_ranges(&info_buffer(&want)), want.to_vec());
    }

    #[test]
    fn truncated_or_looping_capability_chains_give_nothing() {
        let b = info_buffer(&[(0, 0xffff)]);
        // Cut off in the middle of the range list.
        assert_eq!(parse_iova_ranges(&b[..b.len() - 4]), Vec::new());
        // No CAPS flag.
        let mut c = b.clone();
        c[4..8].copy_from_slice(&1u32.to_ne_bytes());
        assert_eq!(parse_iova_ranges(&c), Vec::new());
        // A chain that points back at itself.
        let mut d = b.clone();
        d[24 + 4..24 + 8].copy_from_slice(&24u32.to_ne_bytes());
        assert_eq!(parse_iova_ranges(&d), Vec::new());
        assert_eq!(parse_iova_ranges(&[]), Vec::new());
    }
}
