//! VF BAR0 register map, mailbox message layout and descriptor bits of the 82599/X540 virtual
//! function, read from `docs/datasheet.md` (cited per item). These are the driver's own reading of
//! the facts; the NIC model keeps its own, independent copy on purpose.

// ---------------------------------------------------------------------------------------------
// PCI identity (facts §1)
// ---------------------------------------------------------------------------------------------

/// Intel's PCI vendor ID.
pub const INTEL_VENDOR_ID: u16 = 0x8086;
/// 82599 virtual function (facts §1, "VF IDs").
pub const DEV_ID_82599_VF: u16 = 0x10ED;
/// X540 virtual function (facts §1, "VF IDs").
pub const DEV_ID_X540_VF: u16 = 0x1515;

// ---------------------------------------------------------------------------------------------
// Global, interrupt and mailbox registers (facts §2.1)
// ---------------------------------------------------------------------------------------------

/// VF control; bit 26 is the VF reset (facts §2.1).
pub const VFCTRL: u32 = 0x00000;
/// VFCTRL.RST: VF software reset (facts §2.1, §3.8 step 3).
pub const VFCTRL_RST: u32 = 1 << 26;
/// Read-only status; read as the "write flush" register (facts §2.1).
pub const VFSTATUS: u32 = 0x00008;
/// Link status (facts §2.1): bit 30 up, bits 29:28 speed.
pub const VFLINKS: u32 = 0x00010;
/// VFLINKS.UP (facts §2.1).
pub const VFLINKS_UP: u32 = 1 << 30;
/// VFLINKS speed field mask (bits 29:28, facts §2.1).
pub const VFLINKS_SPEED_MASK: u32 = 0x3 << 28;
/// VFLINKS speed 10 Gb/s (facts §2.1).
pub const VFLINKS_SPEED_10G: u32 = 0x3 << 28;
/// VFLINKS speed 1 Gb/s (facts §2.1).
pub const VFLINKS_SPEED_1G: u32 = 0x2 << 28;
/// VFLINKS speed 100 Mb/s (facts §2.1).
pub const VFLINKS_SPEED_100M: u32 = 0x1 << 28;

/// Interrupt cause, read to clear (facts §2.1).
pub const VTEICR: u32 = 0x00100;
/// Interrupt mask set (facts §2.1).
pub const VTEIMS: u32 = 0x00108;
/// Interrupt mask clear (facts §2.1).
pub const VTEIMC: u32 = 0x0010C;
/// "Disable all" value for VTEIMC: cause bits 0–2 (facts §2.1).
pub const VTEIMC_ALL: u32 = 0x7;

/// Interrupt vector allocation for queues 2x and 2x+1 (facts §2.1).
#[inline(always)]
pub const fn vtivar(x: u32) -> u32 {
    0x00120 + 4 * x
}
/// Valid bit in a VTIVAR byte (facts §2.1).
pub const VTIVAR_VALID: u32 = 0x80;

/// Mailbox memory, 16 32-bit words (facts §2.1).
pub const VFMBMEM: u32 = 0x00200;
/// Packet-split types and RQPL (facts §2.1).
pub const VFPSRTYPE: u32 = 0x00300;
/// Mailbox control (facts §2.1, §3.1).
pub const VFMAILBOX: u32 = 0x002FC;

// VFMAILBOX bits (facts §3.1).
/// VF requests the PF to read a message.
pub const MBX_REQ: u32 = 0x01;
/// VF acknowledges a PF message.
pub const MBX_ACK: u32 = 0x02;
/// VF owns the buffer.
pub const MBX_VFU: u32 = 0x04;
/// PF wrote a message (read-to-clear).
pub const MBX_PFSTS: u32 = 0x10;
/// PF acknowledged our message (read-to-clear).
pub const MBX_PFACK: u32 = 0x20;
/// PF reset in progress.
pub const MBX_RSTI: u32 = 0x40;
/// PF reset done (read-to-clear).
pub const MBX_RSTD: u32 = 0x80;
/// The read-to-clear bits that must be cached in software (facts §2.5).
pub const MBX_R2C_BITS: u32 = MBX_PFSTS | MBX_PFACK | MBX_RSTD;

/// Mailbox size in 32-bit words (facts §3.7).
pub const MBX_SIZE: usize = 16;

// Message word 0 layout (facts §3.2).
/// Message type mask (bits 15:0).
pub const MSG_TYPE_MASK: u32 = 0xFFFF;
/// "Clear to send" (bit 29).
pub const MSG_CTS: u32 = 1 << 29;
/// FAILURE / NACK (bit 30).
pub const MSG_NACK: u32 = 1 << 30;
/// SUCCESS / ACK (bit 31).
pub const MSG_ACK: u32 = 1 << 31;

// Message IDs (facts §3.3).
/// Reset request; reply carries the permanent MAC.
pub const MSG_RESET: u32 = 0x01;
/// Set the VF's MAC address.
pub const MSG_SET_MAC_ADDR: u32 = 0x02;
/// Set the maximum frame size (API 1.0).
pub const MSG_SET_LPE: u32 = 0x05;
/// Negotiate the mailbox API (API 1.0).
pub const MSG_API_NEGOTIATE: u32 = 0x08;
/// Number of queues (API 1.1).
pub const MSG_GET_QUEUES: u32 = 0x09;
/// Multicast/promiscuous mode (API 1.2, promisc from 1.3).
pub const MSG_UPDATE_XCAST_MODE: u32 = 0x0C;
/// Unsolicited PF → VF control message (facts §3.2).
pub const MSG_PF_CONTROL: u32 = 0x0100;

// API enum values sent in API_NEGOTIATE word 1 (facts §3.4).
/// API 1.0.
pub const API_10: u32 = 0;
/// API 1.1.
pub const API_11: u32 = 2;
/// API 1.2.
pub const API_12: u32 = 3;
/// API 1.3.
pub const API_13: u32 = 4;

/// GET_QUEUES reply word indices (facts §3.3).
pub const GET_QUEUES_TX: usize = 1;
/// RX queue count word.
pub const GET_QUEUES_RX: usize = 2;
/// Traffic classes / port VLAN word.
pub const GET_QUEUES_TRANS_VLAN: usize = 3;
/// Default queue word.
pub const GET_QUEUES_DEFAULT: usize = 4;
/// Hardware limit of queues per VF (facts §2).
pub const MAX_QUEUES: u32 = 8;

// ---------------------------------------------------------------------------------------------
// Per-queue registers (facts §2.2, §2.3); stride 0x40
// ---------------------------------------------------------------------------------------------

/// RX descriptor base low (facts §2.2).
#[inline(always)]
pub const fn vfrdbal(q: u32) -> u32 {
    0x01000 + 0x40 * q
}
/// RX descriptor base high (facts §2.2).
#[inline(always)]
pub const fn vfrdbah(q: u32) -> u32 {
    0x01004 + 0x40 * q
}
/// RX ring length in bytes (facts §2.2).
#[inline(always)]
pub const fn vfrdlen(q: u32) -> u32 {
    0x01008 + 0x40 * q
}
/// RX DCA control (facts §2.2).
#[inline(always)]
pub const fn vfdca_rxctrl(q: u32) -> u32 {
    0x0100C + 0x40 * q
}
/// RX head (facts §2.2).
#[inline(always)]
pub const fn vfrdh(q: u32) -> u32 {
    0x01010 + 0x40 * q
}
/// RX split/buffer control (facts §2.2, §2.4).
#[inline(always)]
pub const fn vfsrrctl(q: u32) -> u32 {
    0x01014 + 0x40 * q
}
/// RX tail (facts §2.2).
#[inline(always)]
pub const fn vfrdt(q: u32) -> u32 {
    0x01018 + 0x40 * q
}
/// RX descriptor control (facts §2.2).
#[inline(always)]
pub const fn vfrxdctl(q: u32) -> u32 {
    0x01028 + 0x40 * q
}

/// TX descriptor base low (facts §2.3).
#[inline(always)]
pub const fn vftdbal(q: u32) -> u32 {
    0x02000 + 0x40 * q
}
/// TX descriptor base high (facts §2.3).
#[inline(always)]
pub const fn vftdbah(q: u32) -> u32 {
    0x02004 + 0x40 * q
}
/// TX ring length in bytes (facts §2.3).
#[inline(always)]
pub const fn vftdlen(q: u32) -> u32 {
    0x02008 + 0x40 * q
}
/// TX DCA control (facts §2.3).
#[inline(always)]
pub const fn vfdca_txctrl(q: u32) -> u32 {
    0x0200C + 0x40 * q
}
/// TX head (facts §2.3).
#[inline(always)]
pub const fn vftdh(q: u32) -> u32 {
    0x02010 + 0x40 * q
}
/// TX tail (facts §2.3).
#[inline(always)]
pub const fn vftdt(q: u32) -> u32 {
    0x02018 + 0x40 * q
}
/// TX descriptor control (facts §2.3).
#[inline(always)]
pub const fn vftxdctl(q: u32) -> u32 {
    0x02028 + 0x40 * q
}
/// TX head write-back address low (facts §2.3).
#[inline(always)]
pub const fn vftdwbal(q: u32) -> u32 {
    0x02038 + 0x40 * q
}
/// TX head write-back address high (facts §2.3).
#[inline(always)]
pub const fn vftdwbah(q: u32) -> u32 {
    0x0203C + 0x40 * q
}

/// RXDCTL/TXDCTL.ENABLE (facts §2.2, §2.3).
pub const XDCTL_ENABLE: u32 = 1 << 25;
/// RXDCTL/TXDCTL.SWFLSH (facts §2.2, §2.3).
pub const XDCTL_SWFLSH: u32 = 1 << 26;
/// TXDCTL PTHRESH shift (bits 6:0, facts §2.3).
pub const TXDCTL_PTHRESH_SHIFT: u32 = 0;
/// TXDCTL HTHRESH shift (bits 14:8, facts §2.3).
pub const TXDCTL_HTHRESH_SHIFT: u32 = 8;
/// TXDCTL WTHRESH shift (bits 22:16, facts §2.3).
pub const TXDCTL_WTHRESH_SHIFT: u32 = 16;

/// DCA_RXCTRL value: descriptor read RO, data write RO, header write RO (bits 9, 13, 15), bit 12
/// clear (facts §2.2).
pub const DCA_RXCTRL_DEFAULT: u32 = (1 << 9) | (1 << 13) | (1 << 15);
/// DCA_TXCTRL value: descriptor read RO and data read RO only, write-back RO off (facts §2.3).
pub const DCA_TXCTRL_DEFAULT: u32 = (1 << 9) | (1 << 13);
/// SRRCTL reset value used when clearing queue state: 2 KB buffer, 256 B header (facts §2.4).
pub const SRRCTL_RESET: u32 = 0x0000_0402;

// SRRCTL fields (facts §2.4).
/// BSIZEPACKET in 1 KB units (bits 6:0).
pub const SRRCTL_BSIZEPKT_SHIFT: u32 = 10;
/// BSIZEPACKET field mask.
pub const SRRCTL_BSIZEPKT_MASK: u32 = 0x7F;
/// BSIZEHEADER (bits 13:8): drivers write `bytes << 2`.
pub const SRRCTL_BSIZEHDR_256: u32 = 256 << 2;
/// DESCTYPE advanced one-buffer (bits 27:25 = 001).
pub const SRRCTL_DESCTYPE_ADV_ONEBUF: u32 = 0x0200_0000;
/// DROP_EN: drop when no descriptors are available (bit 28).
pub const SRRCTL_DROP_EN: u32 = 1 << 28;

// VFPSRTYPE (facts §2.1, §3.8 step 12): RQPL in bits 31:29.
/// RQPL shift.
pub const PSRTYPE_RQPL_SHIFT: u32 = 29;

// Statistics (facts §2.2, §2.3, §2.5): not clear-on-read.
/// Good packets received, 32 bit.
pub const VFGPRC: u32 = 0x0101C;
/// Good octets received, low 32 bits of 36.
pub const VFGORC_LSB: u32 = 0x01020;
/// Good octets received, high 4 bits of 36.
pub const VFGORC_MSB: u32 = 0x01024;
/// Multicast packets received, 32 bit.
pub const VFMPRC: u32 = 0x01034;
/// Good packets transmitted, 32 bit.
pub const VFGPTC: u32 = 0x0201C;
/// Good octets transmitted, low 32 bits of 36.
pub const VFGOTC_LSB: u32 = 0x02020;
/// Good octets transmitted, high 4 bits of 36.
pub const VFGOTC_MSB: u32 = 0x02024;

// ---------------------------------------------------------------------------------------------
// Descriptors (facts §6)
// ---------------------------------------------------------------------------------------------

/// Descriptor size in bytes (facts §6.4).
pub const DESC_SIZE: usize = 16;

// RX write-back, dword 2 = status (19:0) + errors (31:20) (facts §6.1).
/// Descriptor done.
pub const RXD_STAT_DD: u32 = 1 << 0;
/// End of packet.
pub const RXD_STAT_EOP: u32 = 1 << 1;
/// Any MAC error (82599 RXE, bit 29).
pub const RXD_ERR_RXE: u32 = 1 << 29;
/// L4 checksum error (bit 30).
pub const RXD_ERR_L4E: u32 = 1 << 30;
/// IPv4 checksum error (bit 31).
pub const RXD_ERR_IPE: u32 = 1 << 31;
/// The error bits that make the driver drop a frame.
pub const RXD_ERR_MASK: u32 = RXD_ERR_RXE | RXD_ERR_L4E | RXD_ERR_IPE;
/// Packet type field of dword 0 (bits 16:4): IPv4 header present. The facts §6.1 values are
/// already dword-0 positions (Linux `IXGBE_RXDADV_PKTTYPE_IPV4` = 0x10, tested on the low half
/// of dword 0; DPDK indexes its ptype table with `(dword0 >> 4) & 0x7F`).
pub const RXD_PTYPE_IPV4: u32 = 0x10;
/// Packet type field of dword 0: UDP header present (`IXGBE_RXDADV_PKTTYPE_UDP` = 0x200).
pub const RXD_PTYPE_UDP: u32 = 0x200;

// TX data descriptor, dword 2 `cmd_type_len` (facts §6.2).
/// DTYP = data (0x3 in bits 23:20).
pub const TXD_DTYP_DATA: u32 = 0x0030_0000;
/// DTYP = context (0x2 in bits 23:20).
pub const TXD_DTYP_CTXT: u32 = 0x0020_0000;
/// End of packet.
pub const TXD_CMD_EOP: u32 = 1 << 24;
/// Insert FCS.
pub const TXD_CMD_IFCS: u32 = 1 << 25;
/// Report status (DD write-back).
pub const TXD_CMD_RS: u32 = 1 << 27;
/// Descriptor extension (advanced format).
pub const TXD_CMD_DEXT: u32 = 1 << 29;
// TX data descriptor, dword 3 `olinfo_status` (facts §6.2).
/// Descriptor done (written back).
pub const TXD_STAT_DD: u32 = 1 << 0;
/// Check context (bit 7): required on VF data descriptors (facts §6.2).
pub const TXD_CC: u32 = 1 << 7;
/// PAYLEN shift (bits 31:14).
pub const TXD_PAYLEN_SHIFT: u32 = 14;

// TX context descriptor (facts §6.3).
/// MACLEN shift in `vlan_macip_lens`.
pub const TXCTX_MACLEN_SHIFT: u32 = 9;
/// L4T = reserved (0x1800) in `type_tucmd_mlhl`: the "no L4 offload" default context (§6.2).
pub const TXCTX_L4T_RSV: u32 = 0x1800;

/// Reads that return this on every register mean the device is gone (surprise removal).
pub const ALL_ONES: u32 = 0xFFFF_FFFF;
