//! The soft-RSS metadata record in the packet headroom (see [`RssMeta`]).

use super::dissect::{AddrKind, Dissection, FlowTuple, Layers, TunnelKind};
use thiserror::Error;

/// Magic number at offset 0 ("FGRS").
pub const META_MAGIC: u32 = u32::from_be_bytes(*b"FGRS");
/// Layout version (2: offset 38 holds the frame length the record was written for).
pub const META_VERSION: u16 = 2;
/// Size of [`RssMeta`] in bytes.
pub const META_SIZE: usize = 80;
/// Where an application's own fields may start in the headroom.
pub const APP_AREA_OFFSET: usize = META_SIZE;

/// Metadata errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MetaError {
    /// The headroom cannot hold the record.
    #[error("headroom of {have} bytes is too small for the {need}-byte soft-RSS metadata")]
    HeadroomTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The headroom does not start with the magic number (no metadata written).
    #[error("headroom holds no soft-RSS metadata (magic {found:#010x})")]
    BadMagic {
        /// What was found.
        found: u32,
    },
    /// Metadata of another version or size.
    #[error("soft-RSS metadata version {version} size {size} not supported (expected version {META_VERSION} size {META_SIZE})")]
    Unsupported {
        /// Version found.
        version: u16,
        /// Size found.
        size: u16,
    },
}

/// The metadata record the dispatcher writes at the start of each packet's headroom.
///
/// Layout (version 2, 80 bytes, native byte order for integers, network order for addresses):
///
/// | offset | size | field | meaning |
/// |---|---|---|---|
/// | 0 | 4 | `magic` | [`META_MAGIC`] ("FGRS" read as a big-endian u32, stored native) |
/// | 4 | 2 | `version` | [`META_VERSION`] |
/// | 6 | 2 | `size` | [`META_SIZE`] (bytes of this record) |
/// | 8 | 4 | `hash` | symmetric flow hash |
/// | 12 | 2 | `worker` | worker index chosen |
/// | 14 | 2 | `flags` | [`super::flags`] bits |
/// | 16 | 1 | `tunnel_outer` | [`super::TunnelKind`] of the outermost tunnel |
/// | 17 | 1 | `tunnel_inner` | [`super::TunnelKind`] of the innermost tunnel |
/// | 18 | 1 | `tunnel_depth` | number of tunnels decoded |
/// | 19 | 1 | `l4_proto` | innermost IP protocol (0 if none) |
/// | 20 | 2 | `outer_l2` | offset of the outer Ethernet header, 0xFFFF = absent |
/// | 22 | 2 | `outer_l3` | outer IP header |
/// | 24 | 2 | `outer_l4` | outer L4 header |
/// | 26 | 2 | `inner_l2` | inner Ethernet header (VXLAN, GRE-TEB) |
/// | 28 | 2 | `inner_l3` | inner IP header |
/// | 30 | 2 | `inner_l4` | inner L4 header |
/// | 32 | 1 | `addr_kind` | [`super::AddrKind`]: 0 none, 2 MAC, 4 IPv4, 6 IPv6 |
/// | 33 | 1 | `vlan_count` | VLAN tags on the outer L2 |
/// | 34 | 2 | `src_port` | innermost source port (host order; 0 if none) |
/// | 36 | 2 | `dst_port` | innermost destination port |
/// | 38 | 2 | `frame_len` | length of the frame the record was written for, 0 if over 65535 (see [`RssMeta::describes`]) |
/// | 40 | 16 | `src` | innermost source address, zero padded |
/// | 56 | 16 | `dst` | innermost destination address, zero padded |
/// | 72 | 8 | `reserved2` | zero, for later versions |
///
/// An embedding application may put its own fields at [`APP_AREA_OFFSET`] (80) and up, within
/// the pool's headroom (128 bytes by default leaves 48).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RssMeta {
    /// [`META_MAGIC`].
    pub magic: u32,
    /// [`META_VERSION`].
    pub version: u16,
    /// [`META_SIZE`].
    pub size: u16,
    /// Symmetric flow hash.
    pub hash: u32,
    /// Worker index.
    pub worker: u16,
    /// [`super::flags`] bits.
    pub flags: u16,
    /// Outermost tunnel kind.
    pub tunnel_outer: u8,
    /// Innermost tunnel kind.
    pub tunnel_inner: u8,
    /// Tunnels decoded.
    pub tunnel_depth: u8,
    /// Innermost IP protocol.
    pub l4_proto: u8,
    /// Outer Ethernet offset.
    pub outer_l2: u16,
    /// Outer IP offset.
    pub outer_l3: u16,
    /// Outer L4 offset.
    pub outer_l4: u16,
    /// Inner Ethernet offset.
    pub inner_l2: u16,
    /// Inner IP offset.
    pub inner_l3: u16,
    /// Inner L4 offset.
    pub inner_l4: u16,
    /// [`AddrKind`] as u8.
    pub addr_kind: u8,
    /// VLAN tags on the outer L2.
    pub vlan_count: u8,
    /// Innermost source port.
    pub src_port: u16,
    /// Innermost destination port.
    pub dst_port: u16,
    /// Length of the frame the record was written for (0 when it does not fit 16 bits).
    pub frame_len: u16,
    /// Innermost source address.
    pub src: [u8; 16],
    /// Innermost destination address.
    pub dst: [u8; 16],
    /// Zero.
    pub reserved2: [u8; 8],
}

const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<RssMeta>() == META_SIZE);
    assert!(align_of::<RssMeta>() == 4);
    assert!(offset_of!(RssMeta, magic) == 0);
    assert!(offset_of!(RssMeta, version) == 4);
    assert!(offset_of!(RssMeta, size) == 6);
    assert!(offset_of!(RssMeta, hash) == 8);
    assert!(offset_of!(RssMeta, worker) == 12);
    assert!(offset_of!(RssMeta, flags) == 14);
    assert!(offset_of!(RssMeta, tunnel_outer) == 16);
    assert!(offset_of!(RssMeta, tunnel_inner) == 17);
    assert!(offset_of!(RssMeta, tunnel_depth) == 18);
    assert!(offset_of!(RssMeta, l4_proto) == 19);
    assert!(offset_of!(RssMeta, outer_l2) == 20);
    assert!(offset_of!(RssMeta, outer_l3) == 22);
    assert!(offset_of!(RssMeta, outer_l4) == 24);
    assert!(offset_of!(RssMeta, inner_l2) == 26);
    assert!(offset_of!(RssMeta, inner_l3) == 28);
    assert!(offset_of!(RssMeta, inner_l4) == 30);
    assert!(offset_of!(RssMeta, addr_kind) == 32);
    assert!(offset_of!(RssMeta, vlan_count) == 33);
    assert!(offset_of!(RssMeta, src_port) == 34);
    assert!(offset_of!(RssMeta, dst_port) == 36);
    assert!(offset_of!(RssMeta, frame_len) == 38);
    assert!(offset_of!(RssMeta, src) == 40);
    assert!(offset_of!(RssMeta, dst) == 56);
    assert!(offset_of!(RssMeta, reserved2) == 72);
};

impl RssMeta {
    /// Builds the record for a dissected packet; `frame_len` is set by
    /// [`RssMeta::for_frame`].
    #[inline]
    pub fn new(d: &Dissection, hash: u32, worker: u16) -> RssMeta {
        let t = &d.tuple;
        RssMeta {
            magic: META_MAGIC,
            version: META_VERSION,
            size: META_SIZE as u16,
            hash,
            worker,
            flags: d.flags,
            tunnel_outer: d.tunnel_outer as u8,
            tunnel_inner: d.tunnel_inner as u8,
            tunnel_depth: d.tunnel_depth,
            l4_proto: t.proto,
            outer_l2: d.outer.l2,
            outer_l3: d.outer.l3,
            outer_l4: d.outer.l4,
            inner_l2: d.inner.l2,
            inner_l3: d.inner.l3,
            inner_l4: d.inner.l4,
            addr_kind: t.kind as u8,
            vlan_count: d.vlan_count,
            src_port: t.src_port,
            dst_port: t.dst_port,
            frame_len: 0,
            src: t.src,
            dst: t.dst,
            reserved2: [0; 8],
        }
    }

    /// The record tied to `frame`, the frame it describes: stores its length, which
    /// [`RssMeta::describes`] checks.
    #[inline]
    pub fn for_frame(mut self, frame: &[u8]) -> RssMeta {
        self.frame_len = u16::try_from(frame.len()).unwrap_or(0);
        self
    }

    /// True when the record was written for a frame of `frame`'s length (a record for a frame
    /// over 65535 bytes, which stores 0, describes only an empty frame). A reader that got the record from a buffer's headroom checks this before
    /// trusting it: a recycled buffer may still hold the record of an earlier frame.
    #[inline]
    pub fn describes(&self, frame: &[u8]) -> bool {
        usize::from(self.frame_len) == frame.len()
    }

    /// Writes the record at the start of `headroom`.
    #[inline]
    pub fn write_to(&self, headroom: &mut [u8]) -> Result<(), MetaError> {
        if headroom.len() < META_SIZE {
            return Err(MetaError::HeadroomTooSmall {
                need: META_SIZE,
                have: headroom.len(),
            });
        }
        // SAFETY: the slice holds at least size_of::<RssMeta>() bytes (checked above), and
        // write_unaligned has no alignment requirement. RssMeta is plain integers without
        // padding (see the offset asserts), so every byte written is initialised.
        unsafe { core::ptr::write_unaligned(headroom.as_mut_ptr().cast::<RssMeta>(), *self) };
        Ok(())
    }

    /// The record at the start of `headroom` if it is valid (as [`RssMeta::read_from`]) and
    /// [describes](RssMeta::describes) `frame`; the cheap check a worker makes on every
    /// packet (one compare for magic, version and size, one for the length).
    #[inline(always)]
    pub fn read_for(headroom: &[u8], frame: &[u8]) -> Option<RssMeta> {
        const HEAD: u64 = {
            let m = META_MAGIC.to_ne_bytes();
            let v = META_VERSION.to_ne_bytes();
            let s = (META_SIZE as u16).to_ne_bytes();
            u64::from_ne_bytes([m[0], m[1], m[2], m[3], v[0], v[1], s[0], s[1]])
        };
        let room = headroom.get(..META_SIZE)?;
        // SAFETY: `room` holds META_SIZE (80) readable bytes, so offsets 0..8 and 38..40 are in
        // bounds; read_unaligned has no alignment requirement; any bits are a valid u64/u16.
        let (head, len) = unsafe {
            let p = room.as_ptr();
            (
                core::ptr::read_unaligned(p.cast::<u64>()),
                core::ptr::read_unaligned(p.add(38).cast::<u16>()),
            )
        };
        if head != HEAD || usize::from(len) != frame.len() {
            return None;
        }
        // SAFETY: as in read_from: 80 readable bytes, no alignment needed, any bits valid.
        Some(unsafe { core::ptr::read_unaligned(room.as_ptr().cast::<RssMeta>()) })
    }

    /// Reads and validates (magic, version, size) the record at the start of `headroom`.
    #[inline]
    pub fn read_from(headroom: &[u8]) -> Result<RssMeta, MetaError> {
        if headroom.len() < META_SIZE {
            return Err(MetaError::HeadroomTooSmall {
                need: META_SIZE,
                have: headroom.len(),
            });
        }
        // SAFETY: at least size_of::<RssMeta>() readable bytes (checked above); read_unaligned
        // has no alignment requirement; every bit pattern is a valid RssMeta (integers and
        // byte arrays only).
        let m = unsafe { core::ptr::read_unaligned(headroom.as_ptr().cast::<RssMeta>()) };
        if m.magic != META_MAGIC {
            return Err(MetaError::BadMagic { found: m.magic });
        }
        if m.version != META_VERSION || usize::from(m.size) != META_SIZE {
            return Err(MetaError::Unsupported {
                version: m.version,
                size: m.size,
            });
        }
        Ok(m)
    }

    /// Outer layer offsets.
    pub fn outer(&self) -> Layers {
        Layers {
            l2: self.outer_l2,
            l3: self.outer_l3,
            l4: self.outer_l4,
        }
    }

    /// Inner layer offsets.
    pub fn inner(&self) -> Layers {
        Layers {
            l2: self.inner_l2,
            l3: self.inner_l3,
            l4: self.inner_l4,
        }
    }

    /// Outermost tunnel kind (`None` for an unknown value).
    pub fn tunnel_outer(&self) -> Option<TunnelKind> {
        TunnelKind::from_u8(self.tunnel_outer)
    }

    /// Innermost tunnel kind.
    pub fn tunnel_inner(&self) -> Option<TunnelKind> {
        TunnelKind::from_u8(self.tunnel_inner)
    }

    /// The innermost flow tuple.
    pub fn tuple(&self) -> FlowTuple {
        let kind = match self.addr_kind {
            2 => AddrKind::Mac,
            4 => AddrKind::Ipv4,
            6 => AddrKind::Ipv6,
            _ => AddrKind::None,
        };
        FlowTuple {
            kind,
            proto: self.l4_proto,
            has_ports: self.flags & super::flags::HAS_PORTS != 0,
            src_port: self.src_port,
            dst_port: self.dst_port,
            src: self.src,
            dst: self.dst,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_errors() {
        let d = Dissection::default();
        let m = RssMeta::new(&d, 0xdead_beef, 3);
        let mut room = [0u8; 81];
        m.write_to(&mut room[1..]).unwrap(); // unaligned on purpose
        assert_eq!(RssMeta::read_from(&room[1..]).unwrap(), m);
        assert_eq!(&room[1..5], &META_MAGIC.to_ne_bytes());
        assert_eq!(
            m.write_to(&mut [0u8; 79]),
            Err(MetaError::HeadroomTooSmall { need: 80, have: 79 })
        );
        assert!(matches!(
            RssMeta::read_from(&[0u8; 80]),
            Err(MetaError::BadMagic { found: 0 })
        ));
        // Tied to a frame: read_for takes it only for a frame of that length.
        let frame = [0u8; 60];
        let tied = m.for_frame(&frame);
        tied.write_to(&mut room[1..]).unwrap();
        assert_eq!(RssMeta::read_for(&room[1..], &frame), Some(tied));
        assert_eq!(RssMeta::read_for(&room[1..], &frame[..59]), None);
        assert_eq!(RssMeta::read_for(&room[1..80], &frame), None);
        let big = vec![0u8; 70_000];
        assert_eq!(m.for_frame(&big).frame_len, 0);
        assert!(!m.for_frame(&big).describes(&big));
        room[5] ^= 0xFF; // version
        assert_eq!(RssMeta::read_for(&room[1..], &frame), None);
        assert!(matches!(
            RssMeta::read_from(&room[1..]),
            Err(MetaError::Unsupported { .. })
        ));
    }
}
