//! TX DMA engine: fetches advanced data and context descriptors (facts §6.2, §6.3), gathers
//! multi-descriptor frames, writes back DD on RS and the head when TDWBAL enables it.

use std::sync::atomic::{fence, Ordering};

use crate::iommu::DmaPort;
use crate::regs::*;
use crate::txoffload::{self, TxOffloadCtx};
use crate::vfstate::VfShared;

/// POPTS.IXSM / POPTS.TXSM in a data descriptor's olinfo (facts §6.2).
const POPTS_IXSM: u32 = 1 << 8;
const POPTS_TXSM: u32 = 1 << 9;
/// Largest TSO payload a data descriptor chain may gather (PAYLEN is 18 bits, facts §6.2).
const TSO_MAX: usize = (1 << 18) - 1;

/// What one call of [`tx_one`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxOne {
    /// Nothing to do (queue off, stalled, empty, or the frame's EOP not written yet).
    Idle,
    /// A frame was consumed but is not sent (bad descriptor, DMA fault, oversize).
    Dropped,
    /// A complete frame is in the scratch buffer.
    Frame,
    /// A TSO request (DCMD.TSE): the headers and the whole payload are in the scratch buffer;
    /// the caller cuts it into segments with [`txoffload::segment`] and inserts `vlan` (VLE)
    /// into each.
    Tso {
        /// The context descriptor the data descriptors referred to.
        ctx: TxOffloadCtx,
        /// POPTS.IXSM.
        ixsm: bool,
        /// POPTS.TXSM.
        txsm: bool,
        /// VLAN tag to insert into every segment.
        vlan: Option<u16>,
    },
}

/// Per-queue context the engine remembers between descriptors (two context slots, facts §6.2
/// IDX): the VLAN tag to insert when a data descriptor has VLE, and the header lengths and L4
/// type for the checksum and segmentation offloads (facts §6.3).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TxContext {
    pub vlan: [u16; 2],
    pub off: [TxOffloadCtx; 2],
}

struct TxRing {
    base: u64,
    count: u32,
    head: u32,
    tail: u32,
}

impl TxRing {
    fn load(vf: &VfShared, q: usize) -> Option<TxRing> {
        if vf.tx_stalled.load(Ordering::Relaxed) & (1 << q) != 0 {
            return None;
        }
        if vf.reg(txq(q, TXDCTL)) & DCTL_ENABLE == 0 {
            return None;
        }
        let base = vf.reg(txq(q, TDBAL)) as u64 | (vf.reg(txq(q, TDBAH)) as u64) << 32;
        let count = vf.reg(txq(q, TDLEN)) / DESC_SIZE as u32;
        let head = vf.reg(txq(q, TDH));
        let tail = vf.reg(txq(q, TDT));
        if count == 0
            || head >= count
            || tail >= count
            || head == tail
            || base.checked_add(u64::from(count) * DESC_SIZE).is_none()
        {
            return None;
        }
        Some(TxRing {
            base,
            count,
            head,
            tail,
        })
    }
    fn desc(&self, idx: u32) -> u64 {
        self.base + (idx % self.count) as u64 * DESC_SIZE
    }
}

/// Cheap check (no DMA): is the queue enabled, not stalled, with descriptors between head and tail?
#[inline]
pub(crate) fn tx_pending(vf: &VfShared, q: usize) -> bool {
    vf.tx_stalled.load(Ordering::Relaxed) & (1 << q) == 0
        && vf.reg(txq(q, TXDCTL)) & DCTL_ENABLE != 0
        && vf.reg(txq(q, TDH)) != vf.reg(txq(q, TDT))
}

/// Processes the next complete frame on TX queue `q` into `frame`.
pub(crate) fn tx_one(
    vf: &VfShared,
    port: &mut DmaPort,
    q: usize,
    ctx: &mut TxContext,
    frame: &mut Vec<u8>,
) -> TxOne {
    let Some(ring) = TxRing::load(vf, q) else {
        return TxOne::Idle;
    };
    // Pass 1: find the EOP data descriptor before the tail; wait if there is none yet.
    let pending = (ring.tail + ring.count - ring.head) % ring.count;
    let mut eop_at = None;
    for i in 0..pending {
        let d = ring.desc(ring.head + i);
        let Some(cmd) = port.read_u32(d + 8, "TX descriptor read") else {
            // Fault on the ring itself: consume nothing, the queue is stuck like on silicon.
            return TxOne::Idle;
        };
        if cmd & TXD_DTYP_MASK == TXD_DTYP_DATA && cmd & TXD_CMD_EOP != 0 {
            eop_at = Some(i);
            break;
        }
    }
    let Some(eop) = eop_at else {
        return TxOne::Idle;
    };
    // Pass 2: consume head..=eop.
    frame.clear();
    let mut bad = false;
    let mut vle: Option<u16> = None;
    // Offloads requested by the first data descriptor of the frame: (slot, IXSM, TXSM, TSE).
    let mut first: Option<(usize, bool, bool, bool)> = None;
    for i in 0..=eop {
        let d = ring.desc(ring.head + i);
        let (Some(addr), Some(cmd), Some(olinfo)) = (
            port.read_u64(d, "TX descriptor read"),
            port.read_u32(d + 8, "TX descriptor read"),
            port.read_u32(d + 12, "TX descriptor read"),
        ) else {
            bad = true;
            continue;
        };
        let dtyp = cmd & TXD_DTYP_MASK;
        if cmd & TXD_CMD_DEXT == 0 {
            vf.tx_bad_desc.fetch_add(1, Ordering::Relaxed);
            bad = true;
        } else if dtyp == TXD_DTYP_CTXT {
            // Context descriptor: dword 0 bits 31:16 VLAN, dword 3 bits 6:4 IDX (facts §6.3).
            // Dwords 0, 2, 3 also carry MACLEN/IPLEN, TUCMD, L4LEN/MSS for the offloads.
            let slot = ((olinfo >> TXD_IDX_SHIFT) & 1) as usize;
            ctx.vlan[slot] = (addr >> 16) as u16;
            ctx.off[slot] = TxOffloadCtx::from_desc(addr as u32, cmd, olinfo);
        } else if dtyp == TXD_DTYP_DATA {
            let len = (cmd & TXD_DTALEN_MASK) as usize;
            let (_, _, _, tse) = *first.get_or_insert((
                ((olinfo >> TXD_IDX_SHIFT) & 1) as usize,
                olinfo & POPTS_IXSM != 0,
                olinfo & POPTS_TXSM != 0,
                cmd & TXD_CMD_TSE != 0,
            ));
            let limit = if tse { TSO_MAX } else { MAX_FRAME };
            if frame.len() + len > limit {
                bad = true;
            } else if len > 0 {
                let start = frame.len();
                frame.resize(start + len, 0);
                if !port.read_bytes(addr, &mut frame[start..], "TX buffer read") {
                    bad = true;
                }
            }
            if cmd & TXD_CMD_VLE != 0 {
                let slot = ((olinfo >> TXD_IDX_SHIFT) & 1) as usize;
                vle = Some(ctx.vlan[slot]);
            }
        } else {
            vf.tx_bad_desc.fetch_add(1, Ordering::Relaxed);
            bad = true;
        }
        if cmd & TXD_CMD_RS != 0 {
            fence(Ordering::Release);
            port.write_u32(d + 12, olinfo | TXD_STAT_DD, "TX write-back");
        }
    }
    let new_head = (ring.head + eop + 1) % ring.count;
    vf.set_reg(txq(q, TDH), new_head);
    let wbal = vf.reg(txq(q, TDWBAL));
    if wbal & TDWBAL_EN != 0 {
        let addr = (vf.reg(txq(q, TDWBAH)) as u64) << 32 | (wbal & !3) as u64;
        fence(Ordering::Release);
        port.write_u32(addr, new_head, "TX head write-back");
    }
    vf.raise_queue(q, true);
    if bad || frame.len() < 14 {
        return TxOne::Dropped;
    }
    if let Some((slot, ixsm, txsm, tse)) = first {
        if tse {
            return TxOne::Tso {
                ctx: ctx.off[slot],
                ixsm,
                txsm,
                vlan: vle,
            };
        }
        if ixsm || txsm {
            // A context that does not fit the frame leaves it unchanged (sent as it is).
            txoffload::insert_checksums(frame, &ctx.off[slot], ixsm, txsm);
        }
    }
    if let Some(tag) = vle {
        let t = tag.to_be_bytes();
        frame.splice(12..12, [0x81, 0x00, t[0], t[1]]);
    }
    TxOne::Frame
}
