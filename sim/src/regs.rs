//! The model's own reading of the VF register map and descriptor layouts.
//!
//! Every constant here was taken from `docs/datasheet.md` (the section is cited next to it). The
//! model deliberately does not import the driver's constants: two independent readings of the
//! datasheet catch each other's mistakes.

/// Size of the VF BAR0 register window (facts §9: 16 KiB, unverified but consistent).
pub const BAR0_SIZE: u32 = 0x4000;

// ---- facts §2.1 global / interrupt / mailbox ----
/// VF control; bit 26 RST resets the function (facts §2.1).
pub const VFCTRL: u32 = 0x0000;
/// VFCTRL.RST, bit 26 (facts §2.1).
pub const VFCTRL_RST: u32 = 1 << 26;
/// VF status, read-only; drivers read it to flush writes (facts §2.1).
pub const VFSTATUS: u32 = 0x0008;
/// VF link status, read-only: UP and speed (facts §2.1).
pub const VFLINKS: u32 = 0x0010;
/// VFLINKS bit 30: link up (facts §2.1).
pub const LINKS_UP: u32 = 1 << 30;
/// VFLINKS bits 29:28 = 11: 10 Gb/s (facts §2.1).
pub const LINKS_SPEED_10G: u32 = 0x3000_0000;
/// Free-running timer (facts §2.1).
pub const VFFRTIMER: u32 = 0x0048;
/// Interrupt cause; a read clears the pending causes (facts §2.1, §2.5).
pub const VTEICR: u32 = 0x0100;
/// Interrupt cause set (facts §2.1).
pub const VTEICS: u32 = 0x0104;
/// Interrupt mask set, write 1 to enable (facts §2.1).
pub const VTEIMS: u32 = 0x0108;
/// Interrupt mask clear, write 1 to disable (facts §2.1).
pub const VTEIMC: u32 = 0x010C;
/// Interrupt auto-clear (facts §2.1).
pub const VTEIAC: u32 = 0x0110;
/// Interrupt auto-mask (facts §2.1).
pub const VTEIAM: u32 = 0x0114;
/// VTIVAR(x) = 0x120 + 4x, x = 0..3 (facts §2.1): bytes RX 2x, TX 2x, RX 2x+1, TX 2x+1.
pub const VTIVAR0: u32 = 0x0120;
/// Vector of the "other"/mailbox cause, bits 7:0 with the valid bit (facts §2.1).
pub const VTIVAR_MISC: u32 = 0x0140;
/// Valid bit of an IVAR byte (facts §2.1).
pub const IVAR_VALID: u32 = 0x80;
/// Number of interrupt cause bits / MSI-X vectors the model tracks (3 on real VFs, facts §9).
pub const NUM_VECTORS: u32 = 3;
/// Mailbox memory, 16 words at 0x200..0x23C (facts §2.1, §3.2).
pub const VFMBMEM: u32 = 0x0200;
/// Words in a mailbox message (facts §3.2).
pub const MBX_WORDS: usize = 16;
/// VF mailbox control and status, bits in facts §3.1.
pub const VFMAILBOX: u32 = 0x02FC;
/// Packet-split header types; bits 31:29 RQPL, log2 of the RSS queues the pool uses (facts §2.1).
pub const VFPSRTYPE: u32 = 0x0300;
/// Interrupt throttle of vector 0; vector x at +4x (facts §2.1).
pub const VTEITR0: u32 = 0x0820;

// ---- facts §3.1 VFMAILBOX bits ----
/// REQ: the VF tells the PF a message is in VFMBMEM (facts §3.1).
pub const MBX_REQ: u32 = 0x01;
/// ACK: the VF acknowledges a PF message it has read (facts §3.1).
pub const MBX_ACK: u32 = 0x02;
/// VFU: the VF owns the buffer (facts §3.1).
pub const MBX_VFU: u32 = 0x04;
/// PFU: the PF owns the buffer, read-only to the VF (facts §3.1).
pub const MBX_PFU: u32 = 0x08;
/// PFSTS: the PF wrote a message, read-to-clear (facts §3.1).
pub const MBX_PFSTS: u32 = 0x10;
/// PFACK: the PF acknowledged the VF's message, read-to-clear (facts §3.1).
pub const MBX_PFACK: u32 = 0x20;
/// RSTI: PF reset in progress (facts §3.1).
pub const MBX_RSTI: u32 = 0x40;
/// RSTD: PF reset done, read-to-clear (facts §3.1).
pub const MBX_RSTD: u32 = 0x80;
/// Read-to-clear bits (facts §2.5): PFSTS, PFACK, RSTD.
pub const MBX_R2C: u32 = MBX_PFSTS | MBX_PFACK | MBX_RSTD;

// ---- facts §2.2 RX queue registers (base 0x1000 + 0x40 x) ----
/// RX and TX queues per VF, IXGBE_VF_MAX_{TX,RX}_QUEUES (facts §2).
pub const MAX_QUEUES: usize = 8;
/// Base of the RX queue register blocks (facts §2.2).
pub const RX_BASE: u32 = 0x1000;
/// Base of the TX queue register blocks (facts §2.3).
pub const TX_BASE: u32 = 0x2000;
/// Distance between two queues' register blocks (facts §2).
pub const Q_STRIDE: u32 = 0x40;
/// RX ring base address low, offset inside the queue block (facts §2.2).
pub const RDBAL: u32 = 0x00;
/// RX ring base address high (facts §2.2).
pub const RDBAH: u32 = 0x04;
/// RX ring length in bytes, a multiple of 128 (facts §2.2, §6.4).
pub const RDLEN: u32 = 0x08;
/// RX DCA control (facts §2.2).
pub const DCA_RXCTRL: u32 = 0x0C;
/// RX descriptor head, advanced by the hardware (facts §2.2).
pub const RDH: u32 = 0x10;
/// Split and replication receive control, bits in facts §2.4.
pub const SRRCTL: u32 = 0x14;
/// RX descriptor tail, written by software (facts §2.2).
pub const RDT: u32 = 0x18;
/// RX descriptor control: ENABLE, SWFLSH, VME, RLPML (facts §2.2).
pub const RXDCTL: u32 = 0x28;
/// RSC control (facts §2.2).
pub const RSCCTL: u32 = 0x2C;
/// Good packets received, 32-bit: a single register inside queue 0's block, like the other
/// statistics (facts §2.2, §2.3).
pub const VFGPRC: u32 = 0x101C;
/// Good octets received, bits 31:0 of the 36-bit counter (facts §2.2).
pub const VFGORC_LSB: u32 = 0x1020;
/// Good octets received, bits 35:32 (facts §2.2).
pub const VFGORC_MSB: u32 = 0x1024;
/// Multicast packets received, 32-bit (facts §2.2).
pub const VFMPRC: u32 = 0x1034;
/// Good packets transmitted, 32-bit (facts §2.3).
pub const VFGPTC: u32 = 0x201C;
/// Good octets transmitted, bits 31:0 of the 36-bit counter (facts §2.3).
pub const VFGOTC_LSB: u32 = 0x2020;
/// Good octets transmitted, bits 35:32 (facts §2.3).
pub const VFGOTC_MSB: u32 = 0x2024;

// ---- facts §2.3 TX queue registers (base 0x2000 + 0x40 x) ----
/// TX ring base address low, offset inside the queue block (facts §2.3).
pub const TDBAL: u32 = 0x00;
/// TX ring base address high (facts §2.3).
pub const TDBAH: u32 = 0x04;
/// TX ring length in bytes, a multiple of 128 (facts §2.3, §6.4).
pub const TDLEN: u32 = 0x08;
/// TX DCA control (facts §2.3).
pub const DCA_TXCTRL: u32 = 0x0C;
/// TX descriptor head, advanced by the hardware (facts §2.3).
pub const TDH: u32 = 0x10;
/// TX descriptor tail, written by software (facts §2.3).
pub const TDT: u32 = 0x18;
/// TX descriptor control: thresholds, ENABLE, SWFLSH (facts §2.3).
pub const TXDCTL: u32 = 0x28;
/// TX head write-back address low; bit 0 enables it (facts §2.3).
pub const TDWBAL: u32 = 0x38;
/// TX head write-back address high; not cleared by FLR (facts §2.3).
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
/// SRRCTL bits 6:0: BSIZEPACKET, the packet buffer size in 1 KiB units (facts §2.4).
pub const SRRCTL_BSIZEPKT_MASK: u32 = 0x7F;
/// BSIZEPACKET counts 1 KiB units: bytes = value << 10 (facts §2.4).
pub const SRRCTL_BSIZEPKT_SHIFT: u32 = 10;
/// SRRCTL bit 28: drop when no descriptor is free (facts §2.4).
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
/// RX write-back status bit 0: descriptor done (facts §6.1).
pub const RXD_STAT_DD: u32 = 1 << 0;
/// RX write-back status bit 1: end of packet (facts §6.1).
pub const RXD_STAT_EOP: u32 = 1 << 1;
/// RX write-back status bit 2: flow director match (facts §6.1).
pub const RXD_STAT_FLM: u32 = 1 << 2;
/// RX write-back status bit 3: VLAN packet (facts §6.1).
pub const RXD_STAT_VP: u32 = 1 << 3;
/// UDPCS: the L4 checksum checked was a UDP checksum (facts §6.1 bit 4).
pub const RXD_STAT_UDPCS: u32 = 1 << 4;
/// L4CS: the TCP/UDP checksum was checked (facts §6.1 bit 5).
pub const RXD_STAT_L4CS: u32 = 1 << 5;
/// IPCS: the IPv4 header checksum was checked (facts §6.1 bit 6).
pub const RXD_STAT_IPCS: u32 = 1 << 6;
/// RX write-back status bit 18: loopback, VM to VM (facts §6.1).
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
/// Packet type IPv4, in dword-0 position (facts §6.1).
pub const PTYPE_IPV4: u32 = 0x10;
/// Packet type IPv6 (facts §6.1).
pub const PTYPE_IPV6: u32 = 0x40;
/// Packet type TCP (facts §6.1).
pub const PTYPE_TCP: u32 = 0x100;
/// Packet type UDP (facts §6.1).
pub const PTYPE_UDP: u32 = 0x200;
/// Packet type SCTP (facts §6.1).
pub const PTYPE_SCTP: u32 = 0x400;
/// RSS type 0xF = Flow Director match (facts §6.1).
pub const RSS_TYPE_FDIR: u8 = 0xF;

// ---- facts §6.2 advanced TX descriptors ----
/// TX data descriptor dword 2 bits 15:0: buffer length (facts §6.2).
pub const TXD_DTALEN_MASK: u32 = 0xFFFF;
/// TX descriptor type, dword 2 bits 23:20 (facts §6.2).
pub const TXD_DTYP_MASK: u32 = 0xF << 20;
/// Descriptor type 0x3: data (facts §6.2).
pub const TXD_DTYP_DATA: u32 = 0x3 << 20;
/// Descriptor type 0x2: context (facts §6.2, §6.3).
pub const TXD_DTYP_CTXT: u32 = 0x2 << 20;
/// DCMD bit 24: end of packet (facts §6.2).
pub const TXD_CMD_EOP: u32 = 1 << 24;
/// DCMD bit 25: insert the CRC (facts §6.2).
pub const TXD_CMD_IFCS: u32 = 1 << 25;
/// DCMD bit 27: report status, write DD back (facts §6.2).
pub const TXD_CMD_RS: u32 = 1 << 27;
/// DCMD bit 29: advanced descriptor (facts §6.2).
pub const TXD_CMD_DEXT: u32 = 1 << 29;
/// DCMD bit 30: insert the VLAN tag (facts §6.2).
pub const TXD_CMD_VLE: u32 = 1 << 30;
/// DCMD bit 31: TCP segmentation (facts §6.2).
pub const TXD_CMD_TSE: u32 = 1 << 31;
/// TX write-back status bit 0: descriptor done (facts §6.2).
pub const TXD_STAT_DD: u32 = 1;
/// olinfo_status bit 7: check context (facts §6.2).
pub const TXD_CC: u32 = 1 << 7;
/// olinfo_status bits 6:4: context index (facts §6.2).
pub const TXD_IDX_SHIFT: u32 = 4;

/// Descriptor size in bytes (facts §6.4).
pub const DESC_SIZE: u64 = 16;
/// Largest frame the model accepts (ixgbe jumbo cap, facts §6.4).
pub const MAX_FRAME: usize = 9728;

// ---- facts §3.2/§3.3 mailbox messages ----
/// Message word 0 bit 31: SUCCESS (ACK) (facts §3.2).
pub const MSG_SUCCESS: u32 = 0x8000_0000;
/// Message word 0 bit 30: FAILURE (NACK) (facts §3.2).
pub const MSG_FAILURE: u32 = 0x4000_0000;
/// Message word 0 bit 29: the VF is clear to send (facts §3.2).
pub const MSG_CTS: u32 = 0x2000_0000;
/// Message word 0 bits 15:0: the message type (facts §3.2).
pub const MSG_TYPE_MASK: u32 = 0xFFFF;
/// Message word 0 bits 23:16: MSGINFO (facts §3.2).
pub const MSG_INFO_SHIFT: u32 = 16;
/// Mask of MSGINFO in word 0 (facts §3.2).
pub const MSG_INFO_MASK: u32 = 0xFF << 16;
/// RESET (facts §3.3).
pub const MSG_RESET: u32 = 0x01;
/// SET_MAC_ADDR (facts §3.3).
pub const MSG_SET_MAC_ADDR: u32 = 0x02;
/// SET_MULTICAST (facts §3.3).
pub const MSG_SET_MULTICAST: u32 = 0x03;
/// SET_VLAN (facts §3.3).
pub const MSG_SET_VLAN: u32 = 0x04;
/// SET_LPE: max frame size (facts §3.3).
pub const MSG_SET_LPE: u32 = 0x05;
/// SET_MACVLAN: extra unicast MACs (facts §3.3).
pub const MSG_SET_MACVLAN: u32 = 0x06;
/// API_NEGOTIATE (facts §3.3, §3.4).
pub const MSG_API_NEGOTIATE: u32 = 0x08;
/// GET_QUEUES (facts §3.3).
pub const MSG_GET_QUEUES: u32 = 0x09;
/// GET_RETA (facts §3.3).
pub const MSG_GET_RETA: u32 = 0x0A;
/// GET_RSS_KEY (facts §3.3).
pub const MSG_GET_RSS_KEY: u32 = 0x0B;
/// UPDATE_XCAST_MODE (facts §3.3).
pub const MSG_UPDATE_XCAST_MODE: u32 = 0x0C;
/// GET_LINK_STATE (facts §3.3).
pub const MSG_GET_LINK_STATE: u32 = 0x10;
/// Unsolicited PF control message (facts §3.2).
pub const MSG_PF_CONTROL: u32 = 0x0100;

// ---- facts §3.4 API enum values ----
/// Mailbox API 1.0 (facts §3.4 enum value).
pub const API_10: u32 = 0;
/// Mailbox API 2.0, Solaris only; the Linux PF refuses it (facts §3.4).
pub const API_20: u32 = 1;
/// Mailbox API 1.1 (facts §3.4).
pub const API_11: u32 = 2;
/// Mailbox API 1.2 (facts §3.4).
pub const API_12: u32 = 3;
/// Mailbox API 1.3 (facts §3.4).
pub const API_13: u32 = 4;
/// Mailbox API 1.4 (facts §3.4).
pub const API_14: u32 = 5;
/// Mailbox API 1.5, which the Linux PF never accepts (facts §3.4).
pub const API_15: u32 = 6;

/// Ethernet header and CRC overhead: max frame = MTU + 14 + 4 (facts §3.3 SET_LPE).
pub const ETH_OVERHEAD: u32 = 18;
