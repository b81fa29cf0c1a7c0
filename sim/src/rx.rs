//! RX DMA engine: writes a frame into a VF's RX ring with advanced descriptors (facts §6.1).

use std::sync::atomic::{fence, Ordering};

use crate::config::NicModel;
use crate::fault::RxCorruption;
use crate::iommu::DmaPort;
use crate::regs::*;
use crate::rxcsum;
use crate::switch::Destination;
use crate::vfstate::{VfCounter, VfShared};

/// Outcome of one RX delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RxResult {
    Delivered,
    /// Not enough free descriptors.
    NoDesc,
    /// RXDCTL.ENABLE clear, or the ring is not programmed sensibly.
    QueueDisabled,
    /// A descriptor or buffer address was outside the IOMMU table.
    DmaFault,
    /// Longer than the largest frame the port accepts (9728 bytes, facts §6.4).
    Oversize,
}

/// Largest number of descriptors one frame may span (9728-byte frame in 1 KiB buffers).
const MAX_SPAN: usize = 16;

/// Packet type bits of dword 0 (facts §6.1), parsed from the frame (after an optional VLAN tag),
/// in their dword-0 positions (bits 16:4: IPv4 = 0x10, UDP = 0x200).
#[inline]
pub(crate) fn packet_type(frame: &[u8]) -> u32 {
    let mut off = 12;
    let mut et = match frame.get(12..14) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => return 0,
    };
    if et == 0x8100 {
        off = 16;
        et = match frame.get(16..18) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]),
            None => return 0,
        };
    }
    let l3 = off + 2;
    let (mut pt, proto) = match et {
        0x0800 => match frame.get(l3 + 9) {
            Some(&p) => (PTYPE_IPV4, p),
            None => return 0,
        },
        0x86DD => match frame.get(l3 + 6) {
            Some(&p) => (PTYPE_IPV6, p),
            None => return 0,
        },
        _ => return 0,
    };
    pt |= match proto {
        6 => PTYPE_TCP,
        17 => PTYPE_UDP,
        132 => PTYPE_SCTP,
        _ => 0,
    };
    pt
}

/// Ring parameters read from the registers, validated.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RxRing {
    pub base: u64,
    pub count: u32,
    pub head: u32,
    pub tail: u32,
    pub bsize: usize,
    pub ctl: u32,
    pub srrctl: u32,
}

impl RxRing {
    #[inline(always)]
    pub(crate) fn load(vf: &VfShared, q: usize) -> Option<RxRing> {
        let ctl = vf.reg(rxq(q, RXDCTL));
        if ctl & DCTL_ENABLE == 0 {
            return None;
        }
        let base = vf.reg(rxq(q, RDBAL)) as u64 | (vf.reg(rxq(q, RDBAH)) as u64) << 32;
        let count = vf.reg(rxq(q, RDLEN)) / DESC_SIZE as u32;
        let head = vf.reg(rxq(q, RDH));
        let tail = vf.reg(rxq(q, RDT));
        // A ring that wraps the 64-bit IOVA space cannot be mapped: treat it as not set up.
        if count == 0
            || head >= count
            || tail >= count
            || base.checked_add(u64::from(count) * DESC_SIZE).is_none()
        {
            return None;
        }
        let srrctl = vf.reg(rxq(q, SRRCTL));
        let kb = (srrctl & SRRCTL_BSIZEPKT_MASK) as usize;
        // BSIZEPACKET 0: fall back to the 2 KiB reset value (facts §2.4).
        let bsize = if kb == 0 {
            2048
        } else {
            kb << SRRCTL_BSIZEPKT_SHIFT
        };
        Some(RxRing {
            base,
            count,
            head,
            tail,
            bsize,
            ctl,
            srrctl,
        })
    }

    /// Descriptors the hardware may fill: from head up to (not including) tail.
    #[inline(always)]
    pub(crate) fn free(&self) -> u32 {
        (self.tail + self.count - self.head) % self.count
    }

    #[inline(always)]
    pub(crate) fn desc(&self, i: u32) -> u64 {
        self.base + ((self.head + i) % self.count) as u64 * DESC_SIZE
    }

    pub(crate) fn drop_en(&self) -> bool {
        self.srrctl & SRRCTL_DROP_EN != 0
    }
}

/// Writes `frame` into RX queue `q` of `vf`. `scratch` is a reusable buffer (VLAN stripping).
/// `csum` memoises the frame's checksum status bits across its replicas: computed here on the
/// first delivery that reaches the write-back, if the caller left it `None`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn deliver(
    vf: &VfShared,
    port: &mut DmaPort,
    q: usize,
    frame: &[u8],
    meta: &Destination,
    scratch: &mut Vec<u8>,
    model: NicModel,
    csum: &mut Option<u32>,
) -> RxResult {
    let rlpml = model == NicModel::X540;
    let Some(ring) = RxRing::load(vf, q) else {
        return RxResult::QueueDisabled;
    };
    // RXDCTL.RLPML (bits 13:0, enable bit 15) limits the frame length, CRC included; it works on
    // X540 VFs, not on 82599 (facts §2.2, §7).
    if rlpml
        && ring.ctl & RXDCTL_RLPML_EN != 0
        && frame.len() as u32 + 4 > ring.ctl & RXDCTL_RLPML_MASK
    {
        return RxResult::Oversize;
    }
    // VLAN strip (RXDCTL.VME, facts §2.2) and VP status.
    let mut vlan: Option<u16> = None;
    let data: &[u8] = if ring.ctl & RXDCTL_VME != 0
        && frame.len() >= 18
        && frame[12] == 0x81
        && frame[13] == 0x00
    {
        vlan = Some(u16::from_be_bytes([frame[14], frame[15]]));
        scratch.clear();
        scratch.extend_from_slice(&frame[..12]);
        scratch.extend_from_slice(&frame[16..]);
        scratch
    } else {
        frame
    };
    if data.len() > MAX_FRAME {
        return RxResult::Oversize;
    }
    let need = data.len().div_ceil(ring.bsize).max(1);
    if need > MAX_SPAN || need as u32 > ring.free() {
        return RxResult::NoDesc;
    }
    // Translate everything first so a fault never leaves a half-written frame.
    let mut bufs = [0u64; MAX_SPAN];
    for (i, b) in bufs.iter_mut().enumerate().take(need) {
        let d = ring.desc(i as u32);
        let Some(addr) = port.read_u64(d, "RX descriptor read") else {
            return RxResult::DmaFault;
        };
        let chunk = (data.len() - i * ring.bsize).min(ring.bsize) as u64;
        if !port.check(addr, chunk.max(1), "RX buffer write")
            || !port.check(d + 8, 8, "RX write-back")
        {
            return RxResult::DmaFault;
        }
        *b = addr;
    }
    let corruption = take_corruption(vf, q);
    let ptype = packet_type(frame);
    let (dw0, dw1) = match meta.fdir {
        Some(f) => (
            RSS_TYPE_FDIR as u32 | ptype,
            f.id as u32 | (f.bucket as u32) << 16,
        ),
        None => ((meta.rss_type as u32 & 0xF) | ptype, meta.rss_hash),
    };
    let mut status = RXD_STAT_DD;
    if vlan.is_some() {
        status |= RXD_STAT_VP;
    }
    if meta.fdir.is_some() {
        status |= RXD_STAT_FLM;
    }
    if meta.loopback {
        status |= RXD_STAT_LB;
    }
    // IPCS/L4CS/UDPCS and IPE/TCPE (facts §6.1), on the EOP descriptor with the other errors.
    // Computed on the frame as received: a stripped VLAN tag changes no checksum.
    let csum_bits = *csum.get_or_insert_with(|| rxcsum::status_bits(frame, model));
    for (i, &addr) in bufs.iter().enumerate().take(need) {
        let d = ring.desc(i as u32);
        let start = i * ring.bsize;
        let end = (start + ring.bsize).min(data.len());
        let last = i + 1 == need;
        port.write_bytes(addr, &data[start..end], "RX buffer write");
        let mut len = (end - start) as u32;
        let mut st = status;
        if last {
            st |= RXD_STAT_EOP | csum_bits;
            match corruption {
                Some(RxCorruption::ErrorBits(b)) => st |= b & 0xFFF0_0000,
                Some(RxCorruption::BadLength(l)) => len = l as u32,
                Some(RxCorruption::NoEop) => st &= !RXD_STAT_EOP,
                None => {}
            }
        }
        port.write_u32(d, dw0, "RX write-back");
        port.write_u32(d + 4, dw1, "RX write-back");
        port.write_u32(
            d + 12,
            len | (vlan.unwrap_or(0) as u32) << 16,
            "RX write-back",
        );
        // DD last: the driver must see the rest of the write-back once it sees DD.
        fence(Ordering::Release);
        port.write_u32(d + 8, st, "RX write-back");
    }
    vf.set_reg(rxq(q, RDH), (ring.head + need as u32) % ring.count);
    vf.count(VfCounter::Gprc, 1);
    vf.count(VfCounter::Gorc, data.len() as u64);
    if data.first().is_some_and(|b| b & 1 != 0) && data.get(..6) != Some(&[0xFF; 6][..]) {
        vf.count(VfCounter::Mprc, 1);
    }
    vf.raise_queue(q, false);
    RxResult::Delivered
}

#[inline(always)]
fn take_corruption(vf: &VfShared, q: usize) -> Option<RxCorruption> {
    let bit = 1u8 << q;
    if vf.rx_corrupt_pending.load(Ordering::Relaxed) & bit == 0 {
        return None;
    }
    vf.rx_corrupt_pending.fetch_and(!bit, Ordering::AcqRel);
    vf.rx_corrupt.lock().unwrap_or_else(|e| e.into_inner())[q].take()
}
