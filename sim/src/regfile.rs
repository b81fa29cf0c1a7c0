//! The VF's BAR0 register file as one table: per register its offset, width, write mask,
//! read-back mask and access kind, with the facts section it comes from.
//!
//! [`REGISTERS`] is the only place that says which bits of a register software can write and
//! what it reads back. The BAR ([`crate::vf`]) applies it: a plain read/write register stores
//! `value & write_mask` (one table load and an AND, also on the doorbell path), read-only and
//! reserved words ignore writes, and the registers with side effects (VFCTRL, VFMAILBOX, the
//! interrupt cause and mask registers, the statistics) have handlers whose behaviour the access
//! kind names. A word of BAR0 that no row covers is reserved: writes are ignored and reads
//! return 0. That includes the X550-only VFMRQC/VFRSSRK/VFRETA (facts §2.1), which an 82599 or
//! X540 VF does not have.
//!
//! Masks whose fields the facts name are narrowed to those fields; a register whose fields the
//! facts only partly describe (DCA control, RSC control, interrupt throttling, the IVARs) keeps
//! every bit, rather than guessing which ones are reserved.
//!
//! ```
//! use floodgate_sim::regfile::{lookup, Access};
//! use floodgate_sim::regs::{rxq, RDLEN};
//! let (reg, queue) = lookup(rxq(1, RDLEN)).unwrap();
//! assert_eq!((reg.name, queue, reg.access), ("VFRDLEN", 1, Access::Rw));
//! // Ring length: a multiple of 128 bytes, bits 19:7 (facts §2.2, §6.4).
//! assert_eq!(reg.write_mask, 0x000F_FF80);
//! ```

use crate::regs::*;

/// How software may access a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read/write: a write stores `value & write_mask`, a read returns the stored value.
    Rw,
    /// Read-only: writes are ignored; the model (the "hardware") sets the value.
    Ro,
    /// Read-to-clear: a read returns the value and clears its read-to-clear bits.
    Rc,
    /// Write-1-to-clear: each bit written as 1 clears the corresponding bit (VTEIMC clears
    /// VTEIMS bits); reads return 0.
    W1c,
    /// Write-1-to-set: each bit written as 1 sets the corresponding bit (VTEIMS sets mask bits,
    /// VTEICS sets cause bits).
    W1s,
    /// Write-only: a write acts (VFCTRL.RST resets the function); reads return 0.
    Wo,
    /// Reserved: writes are ignored, reads return 0.
    Reserved,
}

/// One register (or an array of them) of the VF's BAR0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Register {
    /// Name as in the facts sheet.
    pub name: &'static str,
    /// Offset of instance 0 in BAR0.
    pub offset: u32,
    /// Number of instances (queues, vectors, mailbox words).
    pub count: u32,
    /// Distance between instances in bytes.
    pub stride: u32,
    /// Access width in bits. Every VF register is a 32-bit register; the 36-bit octet counters
    /// are split into an LSB and an MSB register (facts §2.2, §2.3).
    pub width: u8,
    /// Bits a write can change (for W1S/W1C registers: bits a written 1 acts on).
    pub write_mask: u32,
    /// Bits a read can return as 1.
    pub read_mask: u32,
    /// Access kind.
    pub access: Access,
    /// Where the facts sheet describes it.
    pub facts: &'static str,
}

const ALL: u32 = 0xFFFF_FFFF;

const fn reg(
    name: &'static str,
    offset: u32,
    access: Access,
    write_mask: u32,
    read_mask: u32,
    facts: &'static str,
) -> Register {
    Register {
        name,
        offset,
        count: 1,
        stride: 0,
        width: 32,
        write_mask,
        read_mask,
        access,
        facts,
    }
}

/// A read/write register with one mask for writes and read-back.
const fn rw(name: &'static str, offset: u32, mask: u32, facts: &'static str) -> Register {
    reg(name, offset, Access::Rw, mask, mask, facts)
}

/// A read-only register whose readable bits are `read_mask`.
const fn ro(name: &'static str, offset: u32, read_mask: u32, facts: &'static str) -> Register {
    reg(name, offset, Access::Ro, 0, read_mask, facts)
}

const fn array(r: Register, count: u32, stride: u32) -> Register {
    Register { count, stride, ..r }
}

/// A per-queue ring register of the RX (`base` = [`RX_BASE`]) or TX block.
const fn ring(name: &'static str, base: u32, reg: u32, mask: u32, facts: &'static str) -> Register {
    array(
        rw(name, base + reg, mask, facts),
        MAX_QUEUES as u32,
        Q_STRIDE,
    )
}

/// Ring base low: the ring is 128-byte aligned, bits 6:0 are ignored on writes and read as 0
/// (facts §2.2, §2.3, §6.4).
pub const RING_BASE_LOW_MASK: u32 = 0xFFFF_FF80;
/// Ring length in bytes: a multiple of 128 (bits 6:0 read as 0) up to bits 19:7; 8192
/// descriptors × 16 bytes = 0x20000 fits (facts §2.2, §2.3, §6.4).
pub const RING_LEN_MASK: u32 = 0x000F_FF80;
/// Head and tail: descriptor indices, bits 15:0 (facts §2.2, §2.3; 8192 descriptors at most,
/// §6.4).
pub const RING_INDEX_MASK: u32 = 0x0000_FFFF;
/// SRRCTL: BSIZEPACKET 6:0, BSIZEHEADER 13:8, RDMTS 24:22, DESCTYPE 27:25, DROP_EN 28
/// (facts §2.4).
pub const SRRCTL_MASK: u32 = 0x7F | 0x3F << 8 | 0x7 << 22 | 0x7 << 25 | SRRCTL_DROP_EN;
/// RXDCTL: RLPML 13:0, RLPML_EN 15, ENABLE 25, SWFLSH 26, VME 30 (facts §2.2).
pub const RXDCTL_MASK: u32 =
    RXDCTL_RLPML_MASK | RXDCTL_RLPML_EN | DCTL_ENABLE | DCTL_SWFLSH | RXDCTL_VME;
/// TXDCTL: PTHRESH 6:0, HTHRESH 14:8, WTHRESH 22:16, ENABLE 25, SWFLSH 26 (facts §2.3).
pub const TXDCTL_MASK: u32 = 0x7F | 0x7F << 8 | 0x7F << 16 | DCTL_ENABLE | DCTL_SWFLSH;

/// Every register of the VF's BAR0 the model implements, in offset order.
pub const REGISTERS: &[Register] = &[
    // ---- global, interrupt and mailbox registers (facts §2.1) ----
    reg("VFCTRL", VFCTRL, Access::Wo, VFCTRL_RST, 0, "§2.1, §9"),
    ro("VFSTATUS", VFSTATUS, ALL, "§2.1, §2.5"),
    ro("VFLINKS", VFLINKS, ALL, "§2.1, §2.5"),
    ro("VFFRTIMER", VFFRTIMER, ALL, "§2.1"),
    reg("VTEICR", VTEICR, Access::Rc, 0, ALL, "§2.1, §2.5"),
    reg("VTEICS", VTEICS, Access::W1s, ALL, ALL, "§2.1"),
    reg("VTEIMS", VTEIMS, Access::W1s, ALL, ALL, "§2.1, §2.5"),
    reg("VTEIMC", VTEIMC, Access::W1c, ALL, 0, "§2.1, §2.5"),
    rw("VTEIAC", VTEIAC, ALL, "§2.1"),
    rw("VTEIAM", VTEIAM, ALL, "§2.1"),
    array(rw("VTIVAR", VTIVAR0, ALL, "§2.1"), 4, 4),
    rw("VTIVAR_MISC", VTIVAR_MISC, 0xFF, "§2.1"),
    array(
        rw("VFMBMEM", VFMBMEM, ALL, "§2.1, §3.2"),
        MBX_WORDS as u32,
        4,
    ),
    // REQ/ACK are written and never read back; VFU reads back; PFSTS/PFACK/RSTD are
    // read-to-clear, PFU and RSTI are status (facts §3.1, §2.5).
    reg(
        "VFMAILBOX",
        VFMAILBOX,
        Access::Rc,
        MBX_REQ | MBX_ACK | MBX_VFU,
        MBX_VFU | MBX_PFU | MBX_PFSTS | MBX_PFACK | MBX_RSTI | MBX_RSTD,
        "§3.1, §2.5",
    ),
    rw("VFPSRTYPE", VFPSRTYPE, ALL, "§2.1"),
    array(rw("VTEITR", VTEITR0, ALL, "§2.1"), NUM_VECTORS, 4),
    // ---- RX queue x, base 0x1000 + 0x40·x (facts §2.2) ----
    ring("VFRDBAL", RX_BASE, RDBAL, RING_BASE_LOW_MASK, "§2.2, §6.4"),
    ring("VFRDBAH", RX_BASE, RDBAH, ALL, "§2.2"),
    ring("VFRDLEN", RX_BASE, RDLEN, RING_LEN_MASK, "§2.2, §6.4"),
    ring("VFDCA_RXCTRL", RX_BASE, DCA_RXCTRL, ALL, "§2.2"),
    ring("VFRDH", RX_BASE, RDH, RING_INDEX_MASK, "§2.2, §6.4"),
    ring("VFSRRCTL", RX_BASE, SRRCTL, SRRCTL_MASK, "§2.4"),
    ring("VFRDT", RX_BASE, RDT, RING_INDEX_MASK, "§2.2, §6.4"),
    ro("VFGPRC", VFGPRC, ALL, "§2.2, §2.5"),
    ro("VFGORC_LSB", VFGORC_LSB, ALL, "§2.2, §2.5"),
    ro("VFGORC_MSB", VFGORC_MSB, 0xF, "§2.2, §2.5"),
    ring("VFRXDCTL", RX_BASE, RXDCTL, RXDCTL_MASK, "§2.2"),
    ring("VFRSCCTL", RX_BASE, RSCCTL, ALL, "§2.2"),
    ro("VFMPRC", VFMPRC, ALL, "§2.2, §2.5"),
    // ---- TX queue x, base 0x2000 + 0x40·x (facts §2.3) ----
    ring("VFTDBAL", TX_BASE, TDBAL, RING_BASE_LOW_MASK, "§2.3, §6.4"),
    ring("VFTDBAH", TX_BASE, TDBAH, ALL, "§2.3"),
    ring("VFTDLEN", TX_BASE, TDLEN, RING_LEN_MASK, "§2.3, §6.4"),
    ring("VFDCA_TXCTRL", TX_BASE, DCA_TXCTRL, ALL, "§2.3"),
    ring("VFTDH", TX_BASE, TDH, RING_INDEX_MASK, "§2.3, §6.4"),
    ring("VFTDT", TX_BASE, TDT, RING_INDEX_MASK, "§2.3, §6.4"),
    ro("VFGPTC", VFGPTC, ALL, "§2.3, §2.5"),
    ro("VFGOTC_LSB", VFGOTC_LSB, ALL, "§2.3, §2.5"),
    ro("VFGOTC_MSB", VFGOTC_MSB, 0xF, "§2.3, §2.5"),
    ring("VFTXDCTL", TX_BASE, TXDCTL, TXDCTL_MASK, "§2.3"),
    // Head write-back: bit 0 enable, bit 1 sequence-number write-back, the rest the 4-byte
    // aligned address (facts §2.3, §5.1).
    ring("VFTDWBAL", TX_BASE, TDWBAL, ALL, "§2.3, §5.1"),
    ring("VFTDWBAH", TX_BASE, TDWBAH, ALL, "§2.3"),
];

/// Number of 32-bit words in BAR0.
const WORDS: usize = (BAR0_SIZE / 4) as usize;

/// Index into [`REGISTERS`] + 1 for every BAR0 word (0: no register, reserved).
static INDEX: [u8; WORDS] = build_index();

/// What a plain store keeps of a written value, per BAR0 word: the write mask of read/write
/// registers, 0 for every other kind (those ignore writes or have handlers) and for reserved
/// words.
static STORE_MASK: [u32; WORDS] = build_store_masks();

const fn build_index() -> [u8; WORDS] {
    let mut out = [0u8; WORDS];
    let mut i = 0;
    while i < REGISTERS.len() {
        let r = &REGISTERS[i];
        let mut k = 0;
        while k < r.count {
            let word = ((r.offset + k * r.stride) / 4) as usize;
            // Overlapping rows would be a table error: refuse to compile.
            assert!(out[word] == 0, "two register rows cover the same word");
            out[word] = (i + 1) as u8;
            k += 1;
        }
        i += 1;
    }
    out
}

const fn build_store_masks() -> [u32; WORDS] {
    let index = build_index();
    let mut out = [0u32; WORDS];
    let mut w = 0;
    while w < WORDS {
        if index[w] != 0 {
            let r = &REGISTERS[index[w] as usize - 1];
            if matches!(r.access, Access::Rw) {
                out[w] = r.write_mask;
            }
        }
        w += 1;
    }
    out
}

/// The register at byte `offset` of BAR0 and its instance number (queue, vector or word), or
/// `None` for a reserved or unaligned offset.
pub fn lookup(offset: u32) -> Option<(&'static Register, u32)> {
    if offset & 3 != 0 {
        return None;
    }
    let i = *INDEX.get((offset / 4) as usize)?;
    let r = REGISTERS.get(usize::from(i).checked_sub(1)?)?;
    let instance = (offset - r.offset).checked_div(r.stride).unwrap_or(0);
    Some((r, instance))
}

/// What a plain store to `offset` keeps of the written value (0: the write is ignored). The
/// caller has checked that `offset` is a 4-byte aligned offset inside BAR0.
#[inline(always)]
pub(crate) fn store_mask(offset: u32) -> u32 {
    STORE_MASK[(offset / 4) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_in_offset_order_and_inside_bar0() {
        for w in REGISTERS.windows(2) {
            assert!(
                w[0].offset < w[1].offset,
                "{} before {}",
                w[0].name,
                w[1].name
            );
        }
        for r in REGISTERS {
            let last = r.offset + (r.count - 1) * r.stride;
            assert!(last < BAR0_SIZE && r.offset % 4 == 0, "{}", r.name);
            assert_eq!(r.width, 32, "{}", r.name);
        }
    }

    #[test]
    fn masks_fit_the_access_kind() {
        for r in REGISTERS {
            match r.access {
                Access::Rw => assert_eq!(r.write_mask, r.read_mask, "{}", r.name),
                Access::Ro => assert_eq!(r.write_mask, 0, "{}", r.name),
                Access::Wo | Access::W1c => assert_eq!(r.read_mask, 0, "{}", r.name),
                Access::Rc | Access::W1s => assert_ne!(r.read_mask, 0, "{}", r.name),
                Access::Reserved => {
                    assert_eq!((r.write_mask, r.read_mask), (0, 0), "{}", r.name)
                }
            }
            assert!(
                r.facts.starts_with('§'),
                "{} cites no facts section",
                r.name
            );
        }
    }

    #[test]
    fn lookup_finds_instances_and_reserved_words() {
        let (r, q) = lookup(txq(7, TDT)).unwrap();
        assert_eq!((r.name, q), ("VFTDT", 7));
        assert_eq!(lookup(VFMBMEM + 4 * 15).unwrap(), (&REGISTERS[12], 15));
        // Queue 1's words where queue 0 has the statistics are reserved.
        assert_eq!(lookup(VFGPRC).unwrap().0.name, "VFGPRC");
        assert!(lookup(VFGPRC + Q_STRIDE).is_none());
        assert!(lookup(rxq(0, RDT) + 1).is_none());
        assert!(lookup(BAR0_SIZE).is_none());
        assert_eq!(store_mask(rxq(3, RDBAL)), RING_BASE_LOW_MASK);
        assert_eq!(store_mask(VFGPRC), 0);
        assert_eq!(store_mask(VFMAILBOX), 0);
    }
}
