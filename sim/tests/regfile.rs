//! The VF register file: the four classic patterns written to every ring register of queues 0
//! and 1 read back as the facts say, on the 82599 VF and the X540 VF; reserved words and
//! read-only registers ignore writes; a masked ring register still drives the datapath.

pub mod vfdrv;

use floodgate_sim::regfile::{lookup, Access};
use floodgate_sim::regs::*;
use floodgate_sim::{Nic, NicConfig, NicModel};
use floodgate_vfio::{Bar, Device};

const PATTERNS: [u32; 4] = [0x5A5A_5A5A, 0xA5A5_A5A5, 0, 0xFFFF_FFFF];

/// (name, offset inside the queue block, bits that read back), from the facts sheet.
const RX_RING: [(&str, u32, u32); 9] = [
    // Ring base, 128-byte aligned: bits 6:0 read as 0 (facts §2.2, §6.4).
    ("VFRDBAL", RDBAL, 0xFFFF_FF80),
    ("VFRDBAH", RDBAH, 0xFFFF_FFFF),
    // Ring length in bytes, multiple of 128: bits 19:7 (facts §2.2, §6.4).
    ("VFRDLEN", RDLEN, 0x000F_FF80),
    // Fields only partly described (facts §2.2): stored as written.
    ("VFDCA_RXCTRL", DCA_RXCTRL, 0xFFFF_FFFF),
    // Descriptor indices 15:0 (facts §2.2, §6.4).
    ("VFRDH", RDH, 0x0000_FFFF),
    // BSIZEPACKET 6:0, BSIZEHEADER 13:8, RDMTS 24:22, DESCTYPE 27:25, DROP_EN 28 (facts §2.4).
    ("VFSRRCTL", SRRCTL, 0x1FC0_3F7F),
    ("VFRDT", RDT, 0x0000_FFFF),
    // RLPML 13:0, RLPML_EN 15, ENABLE 25, SWFLSH 26, VME 30 (facts §2.2).
    ("VFRXDCTL", RXDCTL, 0x4600_BFFF),
    ("VFRSCCTL", RSCCTL, 0xFFFF_FFFF),
];

const TX_RING: [(&str, u32, u32); 9] = [
    ("VFTDBAL", TDBAL, 0xFFFF_FF80),
    ("VFTDBAH", TDBAH, 0xFFFF_FFFF),
    ("VFTDLEN", TDLEN, 0x000F_FF80),
    ("VFDCA_TXCTRL", DCA_TXCTRL, 0xFFFF_FFFF),
    ("VFTDH", TDH, 0x0000_FFFF),
    ("VFTDT", TDT, 0x0000_FFFF),
    // PTHRESH 6:0, HTHRESH 14:8, WTHRESH 22:16, ENABLE 25, SWFLSH 26 (facts §2.3).
    ("VFTXDCTL", TXDCTL, 0x067F_7F7F),
    // Head write-back: enable, sequence bit and the address (facts §2.3, §5.1).
    ("VFTDWBAL", TDWBAL, 0xFFFF_FFFF),
    ("VFTDWBAH", TDWBAH, 0xFFFF_FFFF),
];

fn ring_registers() -> Vec<(&'static str, usize, u32, u32)> {
    let mut out = Vec::new();
    for q in 0..2 {
        for (name, reg, mask) in RX_RING {
            out.push((name, q, rxq(q, reg), mask));
        }
        for (name, reg, mask) in TX_RING {
            out.push((name, q, txq(q, reg), mask));
        }
    }
    out
}

fn classic_patterns_read_back_as_the_facts_say(model: NicModel, device_id: u16) {
    let nic = Nic::new(NicConfig {
        model,
        num_vfs: 2,
        ..Default::default()
    });
    let vf = nic.vf(1);
    assert_eq!(vf.info().device_id, device_id);
    let bar = vf.bar0();
    let regs = ring_registers();
    for pattern in PATTERNS {
        for &(name, q, off, mask) in &regs {
            bar.write32(off, pattern);
            assert_eq!(
                bar.read32(off),
                pattern & mask,
                "{device_id:#06x} {name}({q}) at {off:#06x}: wrote {pattern:#010x}"
            );
        }
        // Every register still holds its own value after the others were written: no write
        // reached a neighbour.
        for &(name, q, off, mask) in &regs {
            assert_eq!(
                bar.read32(off),
                pattern & mask,
                "{name}({q}) after the sweep"
            );
        }
    }
    // Distinct values per register, to catch aliasing between queues and blocks.
    for (i, &(_, _, off, _)) in regs.iter().enumerate() {
        bar.write32(off, 0x0101_0101u32.wrapping_mul(i as u32 + 1) << 7);
    }
    for (i, &(name, q, off, mask)) in regs.iter().enumerate() {
        let v = 0x0101_0101u32.wrapping_mul(i as u32 + 1) << 7;
        assert_eq!(
            bar.read32(off),
            v & mask,
            "{name}({q}) aliases another register"
        );
    }
}

#[test]
fn ring_registers_82599_vf() {
    classic_patterns_read_back_as_the_facts_say(NicModel::X82599, 0x10ED);
}

#[test]
fn ring_registers_x540_vf() {
    classic_patterns_read_back_as_the_facts_say(NicModel::X540, 0x1515);
}

#[test]
fn the_table_agrees_with_the_facts_for_every_ring_register() {
    for (name, q, off, mask) in ring_registers() {
        let (reg, instance) = lookup(off).unwrap_or_else(|| panic!("{name}({q}) not in the table"));
        assert_eq!((reg.name, instance as usize), (name, q));
        assert_eq!(reg.access, Access::Rw, "{name}");
        assert_eq!((reg.write_mask, reg.read_mask), (mask, mask), "{name}");
    }
}

#[test]
fn reserved_words_and_read_only_registers_ignore_writes() {
    let nic = Nic::new(NicConfig::default());
    let bar = nic.vf(0).bar0();
    // Queue 1's words where queue 0 has its statistics, and gaps in the queue blocks.
    let reserved = [
        VFGPRC + Q_STRIDE,
        VFMPRC + Q_STRIDE,
        VFGPTC + Q_STRIDE,
        rxq(0, 0x30),
        rxq(1, 0x3C),
        txq(0, 0x14),
        txq(1, 0x2C),
        // The X550-only RSS registers (VFMRQC, VFRETA(0)), absent on 82599/X540 (facts §2.1).
        0x3000,
        0x3200,
    ];
    for off in reserved {
        assert!(lookup(off).is_none(), "{off:#06x} should be reserved");
        for p in PATTERNS {
            bar.write32(off, p);
            assert_eq!(bar.read32(off), 0, "reserved {off:#06x}");
        }
    }
    // Read-only: VFSTATUS and VFLINKS keep the model's value.
    let links = bar.read32(VFLINKS);
    assert_eq!(links & LINKS_UP, LINKS_UP);
    bar.write32(VFLINKS, 0);
    bar.write32(VFSTATUS, 0xFFFF_FFFF);
    assert_eq!(bar.read32(VFLINKS), links);
    assert_eq!(bar.read32(VFSTATUS), 0);
    // VTIVAR_MISC holds bits 7:0 (facts §2.1).
    bar.write32(VTIVAR_MISC, 0xFFFF_FFFF);
    assert_eq!(bar.read32(VTIVAR_MISC), 0xFF);
}

#[test]
fn the_datapath_uses_the_masked_ring_base_and_length() {
    // A driver that leaves junk in bits 6:0 of the ring base and length still gets its ring:
    // the hardware ignores those bits (facts §2.2, §6.4), so does the model's RX engine.
    let nic = vfdrv::nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    vfdrv::MbxVf::new(&vf).bring_up();
    let rings = vfdrv::Rings::new(&vf, 64);
    rings.setup_rx(&bar, 0, SRRCTL_DROP_EN | 2, 63);
    let base = bar.read32(rxq(0, RDBAL));
    assert_eq!(base & 0x7F, 0, "the test ring is 128-byte aligned");
    bar.write32(rxq(0, RDBAL), base | 0x7F);
    bar.write32(rxq(0, RDLEN), (64 * 16) | 0x7F);
    nic.inject(&vfdrv::udp_frame(
        vfdrv::vf_mac(0),
        [0x02, 9, 9, 9, 9, 9],
        100,
    ));
    nic.step();
    assert_eq!(nic.stats().rx_delivered, 1, "{:?}", nic.stats());
    let (_, _, status, len) = rings.rx_wb(0, 0);
    assert_eq!(status & RXD_STAT_DD, RXD_STAT_DD);
    assert_eq!(len & 0xFFFF, 100);
    assert_eq!(bar.read32(rxq(0, RDH)), 1);
}
