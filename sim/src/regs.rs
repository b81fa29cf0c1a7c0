//! The model's own reading of the VF register map and descriptor layouts.
//!
//! Every constant here was taken from `docs/datasheet.md` (the section is cited next to it). The
//! model deliberately does not import the driver's constants: two independent readings of the
//! datasheet catch each other's mistakes.

#![allow(missing_docs)]

/// Size of the VF BAR0 register window (facts §9: 16 KiB, unverified but consistent).
pub const BAR0_SIZE: u32 = 0x4000;

// ---- facts §2.1 global / interrupt / mailbox ----
pub const VFCTRL: u32 = 0x0000;
/// VFCTRL.RST, bit 26 (facts §2.1).
pub const VFCTRL_RST: u32 = 1 << 26;
pub const VFSTATUS: u32 = 0x0008;
pub const VFLINKS: u32 = 0x0010;
/// VFLINKS bit 30: link up (facts §2.1).
pub const LINKS_UP: u32 = 1 << 30;
/// VFLINKS bits 29:28 = 11: 10 Gb/s (facts §2.1).
pub const LINKS_SPEED_10G: u32 = 0x3000_0000;
pub const VFFRTIMER: u32 = 0x0048;
pub const VTEICR: u32 = 0x0100;
pub const VTEICS: u32 = 0x0104;
pub const VTEIMS: u32 = 0x0108;
pub const VTEIMC: u32 = 0x010C;
pub const VTEIAC: u32 = 0x0110;
pub const VTEIAM: u32 = 0x0114;
/// VTIVAR(x) = 0x120 + 4x, x = 0..3 (facts §2.1): bytes RX 2x, TX 2x, RX 2x+1, TX 2x+1.
pub const VTIVAR0: u32 = 0x0120;
pub const VTIVAR_MISC: u32 = 0x0140;
/// Valid bit of an IVAR byte (facts §2.1).
pub const IVAR_VALID: u32 = 0x80;
/// Number of interrupt cause bits / MSI-X vectors the model tracks (3 on real VFs, facts §9).
pub const NUM_VECTORS: u32 = 3;
pub const VFMBMEM: u32 = 0x0200;
pub const MBX_WORDS: usize = 16;
pub const VFMAILBOX: u32 = 0x02FC;
pub const VFPSRTYPE: u32 = 0x0300;
pub const VTEITR0: u32 = 0x0820;

// ---- facts §3.1 VFMAILBOX bits ----
pub const MBX_REQ: u32 = 0x01;
pub const MBX_ACK: u32 = 0x02;
pub const MBX_VFU: u32 = 0x04;
pub const MBX_PFU: u32 = 0x08;
pub const MBX_PFSTS: u32 = 0x10;
pub const MBX_PFACK: u32 = 0x20;
pub const MBX_RSTI: u32 = 0x40;
pub const MBX_RSTD: u32 = 0x80;
/// Read-to-clear bits (facts §2.5): PFSTS, PFACK, RSTD.
pub const MBX_R2C: u32 = MBX_PFSTS | MBX_PFACK | MBX_RSTD;

// ---- facts §2.2 RX queue registers (base 0x1000 + 0x40 x) ----
pub const MAX_QUEUES: usize = 8;
pub const RX_BASE: u32 = 0x1000;
pub const TX_BASE: u32 = 0x2000;
pub const Q_STRIDE: u32 = 0x40;
pub const RDBAL: u32 = 0x00;
pub const RDBAH: u32 = 0x04;
pub const RDLEN: u32 = 0x08;
pub const DCA_RXCTRL: u32 = 0x0C;
pub const RDH: u32 = 0x10;
pub const SRRCTL: u32 = 0x14;
pub const RDT: u32 = 0x18;
pub const RXDCTL: u32 = 0x28;
pub const RSCCTL: u32 = 0x2C;
/// Statistics (single registers inside queue 0's block, facts §2.2/§2.3).
pub const VFGPRC: u32 = 0x101C;
pub const VFGORC_LSB: u32 = 0x1020;
pub const VFGORC_MSB: u32 = 0x1024;
pub const VFMPRC: u32 = 0x1034;
pub const VFGPTC: u32 = 0x201C;
pub const VFGOTC_LSB: u32 = 0x2020;
pub const VFGOTC_MSB: u32 = 0x2024;

// ---- facts §2.3 TX queue registers (base 0x2000 + 0x40 x) ----
pub const TDBAL: u32 = 0x00;
pub const TDBAH: u32 = 0x04;
pub const TDLEN: u32 = 0x08;
pub const DCA_TXCTRL: u32 = 0x0C;
pub const TDH: u32 = 0x10;
pub const TDT: u32 = 0x18;
pub const TXDCTL: u32 = 0x28;
pub const TDWBAL: u32 = 0x38;
pub const TDWBAH: u32 = 0x3C;
/// TDWBAL bit 0: head write-back enable (facts §2.3).
pub const TDWBAL_EN: u32 = 1;

/// RXDCTL/TXDCTL bit 25 ENABLE (facts §2.2, §2.3).
pub const DCTL_ENABLE: u32 = 1 << 25;
/// RXDCTL/TXDCTL bit 26 SWFLSH.
pub const DCTL_SWFLSH: u32 = 1 << 26;
/// RXDCTL bit 30 VME: strip VLAN tags (facts §2.2).
pub const RXDCTL_VME: u32 = 1 << 30;
/// RXDCTL bit 15: RLPML enable (X540 and later VFs, facts §2.2).
pub const RXDCTL_RLPML_EN: u32 = 1 << 15;
/// RXDCTL bits 13:0: RLPML, max packet length.
pub const RXDCTL_RLPML_MASK: u32 = 0x3FFF;

// ---- facts §2.4 SRRCTL ----
pub const SRRCTL_BSIZEPKT_MASK: u32 = 0x7F;
pub const SRRCTL_BSIZEPKT_SHIFT: u32 = 10;
pub const SRRCTL_DROP_EN: u32 = 1 << 28;
/// Reset value DPDK writes (2 KiB packet buffer, 256 B header), facts §2.4.
pub const SRRCTL_DEFAULT: u32 = 0x0000_0402;

/// Address of queue register `reg` of RX queue `q`.
#[inline(always)]
pub const fn rxq(q: usize, reg: u32) -> u32 {
    RX_BASE + Q_STRIDE * q as u32 + reg
}
/// Address of queue register `reg` of TX queue `q`.
#[inline(always)]
pub const fn txq(q: usize, reg: u32) -> u32 {
    TX_BASE + Q_STRIDE * q as u32 + reg
}

// ---- facts §6.1 advanced RX descriptor write-back ----
pub const RXD_STAT_DD: u32 = 1 << 0;
pub const RXD_STAT_EOP: u32 = 1 << 1;
pub const RXD_STAT_FLM: u32 = 1 << 2;
pub const RXD_STAT_VP: u32 = 1 << 3;
/// UDPCS: the L4 checksum checked was a UDP checksum (facts §6.1 bit 4).
pub const RXD_STAT_UDPCS: u32 = 1 << 4;
/// L4CS: the TCP/UDP checksum was checked (facts §6.1 bit 5).
pub const RXD_STAT_L4CS: u32 = 1 << 5;
/// IPCS: the IPv4 header checksum was checked (facts §6.1 bit 6).
pub const RXD_STAT_IPCS: u32 = 1 << 6;
pub const RXD_STAT_LB: u32 = 1 << 18;
/// RXE: MAC error (facts §6.1 bit 29).
pub const RXD_ERR_RXE: u32 = 1 << 29;
/// TCPE: TCP/UDP checksum error, valid with L4CS (facts §6.1 bit 30).
pub const RXD_ERR_TCPE: u32 = 1 << 30;
/// IPE: IPv4 header checksum error, valid with IPCS (facts §6.1 bit 31).
pub const RXD_ERR_IPE: u32 = 1 << 31;
/// The packet type field starts at bit 4 of dword 0. The `PTYPE_*` values below are already in
/// dword-0 positions (IPv4 = bit 4, UDP = bit 9), as Linux's `IXGBE_RXDADV_PKTTYPE_*` masks and
/// DPDK's `(pkt_info >> 4) & 0x7F` ptype index read them (facts §6.1): do not shift them again.
pub const RXD_PTYPE_SHIFT: u32 = 4;
pub const PTYPE_IPV4: u32 = 0x10;
pub const PTYPE_IPV6: u32 = 0x40;
pub const PTYPE_TCP: u32 = 0x100;
pub const PTYPE_UDP: u32 = 0x200;
pub const PTYPE_SCTP: u32 = 0x400;
/// RSS type 0xF = Flow Director match (facts §6.1).
pub const RSS_TYPE_FDIR: u8 = 0xF;

// ---- facts §6.2 advanced TX descriptors ----
pub const TXD_DTALEN_MASK: u32 = 0xFFFF;
pub const TXD_DTYP_MASK: u32 = 0xF << 20;
pub const TXD_DTYP_DATA: u32 = 0x3 << 20;
pub const TXD_DTYP_CTXT: u32 = 0x2 << 20;
pub const TXD_CMD_EOP: u32 = 1 << 24;
pub const TXD_CMD_IFCS: u32 = 1 << 25;
pub const TXD_CMD_RS: u32 = 1 << 27;
pub const TXD_CMD_DEXT: u32 = 1 << 29;
pub const TXD_CMD_VLE: u32 = 1 << 30;
pub const TXD_CMD_TSE: u32 = 1 << 31;
pub const TXD_STAT_DD: u32 = 1;
pub const TXD_CC: u32 = 1 << 7;
pub const TXD_IDX_SHIFT: u32 = 4;

/// Descriptor size in bytes (facts §6.4).
pub const DESC_SIZE: u64 = 16;
/// Largest frame the model accepts (ixgbe jumbo cap, facts §6.4).
pub const MAX_FRAME: usize = 9728;

// ---- facts §3.2/§3.3 mailbox messages ----
pub const MSG_SUCCESS: u32 = 0x8000_0000;
pub const MSG_FAILURE: u32 = 0x4000_0000;
pub const MSG_CTS: u32 = 0x2000_0000;
pub const MSG_TYPE_MASK: u32 = 0xFFFF;
pub const MSG_INFO_SHIFT: u32 = 16;
pub const MSG_INFO_MASK: u32 = 0xFF << 16;
pub const MSG_RESET: u32 = 0x01;
pub const MSG_SET_MAC_ADDR: u32 = 0x02;
pub const MSG_SET_MULTICAST: u32 = 0x03;
pub const MSG_SET_VLAN: u32 = 0x04;
pub const MSG_SET_LPE: u32 = 0x05;
pub const MSG_SET_MACVLAN: u32 = 0x06;
pub const MSG_API_NEGOTIATE: u32 = 0x08;
pub const MSG_GET_QUEUES: u32 = 0x09;
pub const MSG_GET_RETA: u32 = 0x0A;
pub const MSG_GET_RSS_KEY: u32 = 0x0B;
pub const MSG_UPDATE_XCAST_MODE: u32 = 0x0C;
pub const MSG_GET_LINK_STATE: u32 = 0x10;
pub const MSG_PF_CONTROL: u32 = 0x0100;

// ---- facts §3.4 API enum values ----
pub const API_10: u32 = 0;
pub const API_20: u32 = 1;
pub const API_11: u32 = 2;
pub const API_12: u32 = 3;
pub const API_13: u32 = 4;
pub const API_14: u32 = 5;
pub const API_15: u32 = 6;

/// Ethernet header and CRC overhead: max frame = MTU + 14 + 4 (facts §3.3 SET_LPE).
pub const ETH_OVERHEAD: u32 = 18;
