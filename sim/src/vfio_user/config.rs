//! PCI configuration space of a served VF: what Linux's `ixgbevf` (and QEMU's `vfio-user-pci`)
//! expect to find, with per-byte write masks.
//!
//! Layout (facts §9, the pattern of Intel VFs of this family; see docs/vfio-user.md):
//!
//! | offset | what |
//! |--------|------|
//! | 0x00 | vendor 0x8086, device 0x10ED (82599) or 0x1515 (X540) |
//! | 0x06 | status: capability list |
//! | 0x09 | class 0x020000 (Ethernet controller) |
//! | 0x10 | BAR0: 64-bit prefetchable memory, 16 KiB (the register file, facts §2) |
//! | 0x1C | BAR3: 64-bit prefetchable memory, 16 KiB (MSI-X table at 0, PBA at 0x2000) |
//! | 0x34 | capability pointer 0x70 |
//! | 0x70 | MSI-X, 3 vectors |
//! | 0xA0 | PCI Express v2 endpoint, FLR capable |
//!
//! Extended configuration space (0x100..0x1000) reads as zero: no extended capabilities.

/// Size of the configuration region (PCIe: 4 KiB).
pub const CONFIG_SIZE: usize = 0x1000;
/// Size of BAR0 and BAR3.
pub const BAR_SIZE: u64 = 0x4000;
/// Offset of the MSI-X capability.
pub const MSIX_CAP: usize = 0x70;
/// Offset of the PCI Express capability.
pub const PCIE_CAP: usize = 0xA0;
/// Number of MSI-X vectors (facts §9: Count=3).
pub const MSIX_VECTORS: u16 = 3;
/// Offset of the MSI-X PBA in BAR3.
pub const MSIX_PBA_OFFSET: u32 = 0x2000;

/// Command register bit: bus master enable.
pub const CMD_BUS_MASTER: u16 = 1 << 2;
/// PCIe Device Control bit 15: initiate function-level reset.
const DEVCTL_FLR: u16 = 1 << 15;

/// What a configuration write asked the device to do beyond storing bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigEvent {
    /// Nothing else.
    None,
    /// Function-level reset (PCIe DevCtl bit 15 written as 1).
    Flr,
}

/// The configuration space of one VF.
#[derive(Clone)]
pub struct ConfigSpace {
    bytes: Box<[u8; CONFIG_SIZE]>,
    /// Bit set: the guest may change that bit.
    wmask: Box<[u8; CONFIG_SIZE]>,
}

impl std::fmt::Debug for ConfigSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigSpace")
            .field("vendor", &format_args!("{:#06x}", self.read16(0)))
            .field("device", &format_args!("{:#06x}", self.read16(2)))
            .finish_non_exhaustive()
    }
}

impl ConfigSpace {
    /// Config space of an Intel VF with device ID `device_id`.
    pub fn new(device_id: u16) -> ConfigSpace {
        let mut c = ConfigSpace {
            bytes: Box::new([0; CONFIG_SIZE]),
            wmask: Box::new([0; CONFIG_SIZE]),
        };
        c.put16(0x00, 0x8086);
        c.put16(0x02, device_id);
        // Command: memory space, bus master, INTx disable are writable (a VF has no I/O space).
        c.mask16(0x04, 0x0002 | CMD_BUS_MASTER | 0x0400 | 0x0040 | 0x0100);
        c.put16(0x06, 0x0010); // capability list
        c.bytes[0x08] = 0x01; // revision
        c.bytes[0x09] = 0x00; // prog-if
        c.bytes[0x0A] = 0x00; // subclass: Ethernet
        c.bytes[0x0B] = 0x02; // class: network
        c.bytes[0x0E] = 0x00; // header type 0
                              // BAR0 and BAR3: 64-bit (bits 2:1 = 10), prefetchable (bit 3); size by write mask.
        for bar in [0x10usize, 0x1C] {
            c.put32(bar, 0x0000_000C);
            c.mask32(bar, !(BAR_SIZE as u32 - 1));
            c.mask32(bar + 4, 0xFFFF_FFFF);
        }
        c.put16(0x2C, 0x8086); // subsystem vendor
        c.put16(0x2E, device_id);
        c.bytes[0x34] = MSIX_CAP as u8;
        c.bytes[0x3C] = 0xFF; // interrupt line: none
        c.wmask[0x3C] = 0xFF;
        c.bytes[0x3D] = 0x00; // no INTx pin: a VF has none

        // MSI-X: Message Control = table size - 1; enable (15) and function mask (14) writable.
        c.bytes[MSIX_CAP] = 0x11;
        c.bytes[MSIX_CAP + 1] = PCIE_CAP as u8;
        c.put16(MSIX_CAP + 2, MSIX_VECTORS - 1);
        c.mask16(MSIX_CAP + 2, 0xC000);
        c.put32(MSIX_CAP + 4, 3); // table: BAR3 offset 0
        c.put32(MSIX_CAP + 8, MSIX_PBA_OFFSET | 3); // PBA: BAR3 offset 0x2000

        // PCI Express capability v2, endpoint (device/port type 0).
        c.bytes[PCIE_CAP] = 0x10;
        c.bytes[PCIE_CAP + 1] = 0x00;
        c.put16(PCIE_CAP + 2, 0x0002);
        // Device Capabilities: max payload 512 (1), FLR capable (bit 28).
        c.put32(PCIE_CAP + 4, 0x1000_0001);
        // Device Control: max payload / read request, relaxed ordering, no snoop writable;
        // bit 15 is "initiate FLR" (always reads 0).
        c.put16(PCIE_CAP + 8, 0x2810);
        c.mask16(PCIE_CAP + 8, 0x7CFF);
        // Link Capabilities: 5 GT/s (2), x8 (8 << 4); Link Status: 5 GT/s, x8.
        c.put32(PCIE_CAP + 0x0C, 0x0000_0082);
        c.mask16(PCIE_CAP + 0x10, 0x0003);
        c.put16(PCIE_CAP + 0x12, 0x0082);
        // Device Capabilities 2 / Control 2: completion timeout ranges; control writable.
        c.put32(PCIE_CAP + 0x24, 0x0000_001F);
        c.mask16(PCIE_CAP + 0x28, 0x001F);
        c
    }

    fn put16(&mut self, off: usize, v: u16) {
        self.bytes[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn put32(&mut self, off: usize, v: u32) {
        self.bytes[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn mask16(&mut self, off: usize, m: u16) {
        self.wmask[off..off + 2].copy_from_slice(&m.to_le_bytes());
    }
    fn mask32(&mut self, off: usize, m: u32) {
        self.wmask[off..off + 4].copy_from_slice(&m.to_le_bytes());
    }

    /// Reads a little-endian u16 (for checks; out of range reads 0).
    pub fn read16(&self, off: usize) -> u16 {
        let mut b = [0u8; 2];
        self.read(off as u64, &mut b);
        u16::from_le_bytes(b)
    }

    /// Copies `data.len()` bytes from `off`; bytes past the end read as zero.
    pub fn read(&self, off: u64, data: &mut [u8]) {
        for (i, d) in data.iter_mut().enumerate() {
            *d = usize::try_from(off)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|o| self.bytes.get(o))
                .copied()
                .unwrap_or(0);
        }
    }

    /// Applies a write through the write masks; bytes past the end are ignored.
    pub fn write(&mut self, off: u64, data: &[u8]) -> ConfigEvent {
        let mut event = ConfigEvent::None;
        for (i, &d) in data.iter().enumerate() {
            let Some(o) = usize::try_from(off).ok().and_then(|o| o.checked_add(i)) else {
                break;
            };
            if o >= CONFIG_SIZE {
                break;
            }
            // DevCtl bit 15 lives in the high byte of PCIE_CAP + 8.
            if o == PCIE_CAP + 9 && u16::from(d) << 8 & DEVCTL_FLR != 0 {
                event = ConfigEvent::Flr;
            }
            let m = self.wmask[o];
            self.bytes[o] = (self.bytes[o] & !m) | (d & m);
        }
        event
    }

    /// Whether the command register's bus-master bit is set.
    pub fn bus_master(&self) -> bool {
        self.read16(0x04) & CMD_BUS_MASTER != 0
    }

    /// Whether MSI-X is enabled (Message Control bit 15).
    pub fn msix_enabled(&self) -> bool {
        self.read16(MSIX_CAP + 2) & 0x8000 != 0
    }

    /// Restores the state a function-level reset leaves: command register and MSI-X control
    /// cleared, BARs kept (PCIe: FLR does not clear BARs).
    pub fn flr(&mut self) {
        self.put16(0x04, 0);
        let n = MSIX_VECTORS - 1;
        self.put16(MSIX_CAP + 2, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_capabilities() {
        let c = ConfigSpace::new(0x10ED);
        assert_eq!(c.read16(0), 0x8086);
        assert_eq!(c.read16(2), 0x10ED);
        let mut class = [0u8; 3];
        c.read(0x09, &mut class);
        assert_eq!(class, [0x00, 0x00, 0x02]);
        assert_eq!(c.read16(0x34) & 0xFF, 0x70);
        assert_eq!(c.read16(0x70), 0xA011); // MSI-X, next = PCIe
        assert_eq!(c.read16(0x72) & 0x7FF, 2); // 3 vectors
        assert_eq!(c.read16(0xA0) & 0xFF, 0x10);
        let mut ext = [0xAAu8; 4];
        c.read(0x100, &mut ext);
        assert_eq!(ext, [0; 4], "no extended capabilities");
        let mut past = [0xAAu8; 4];
        c.read(CONFIG_SIZE as u64 - 2, &mut past);
        assert_eq!(past, [0; 4], "bytes past the end read as zero");
    }

    #[test]
    fn bar_sizing_reports_16k_64bit() {
        let mut c = ConfigSpace::new(0x1515);
        c.write(0x10, &[0xFF; 4]);
        c.write(0x14, &[0xFF; 4]);
        let mut lo = [0u8; 4];
        c.read(0x10, &mut lo);
        assert_eq!(u32::from_le_bytes(lo), 0xFFFF_C00C);
        c.write(0x10, &0xFEB0_0000u32.to_le_bytes());
        c.read(0x10, &mut lo);
        assert_eq!(u32::from_le_bytes(lo), 0xFEB0_000C);
    }

    #[test]
    fn read_only_fields_and_flr() {
        let mut c = ConfigSpace::new(0x10ED);
        c.write(0x00, &[0, 0, 0, 0]);
        assert_eq!(c.read16(0), 0x8086, "IDs are read-only");
        assert_eq!(c.write(0x04, &[0x06, 0x00]), ConfigEvent::None);
        assert!(c.bus_master());
        c.write(0x72, &0xC002u16.to_le_bytes());
        assert!(c.msix_enabled());
        c.write(0x72, &0xFFFFu16.to_le_bytes());
        assert_eq!(c.read16(0x72) & 0x7FF, 2, "table size is read-only");
        let ev = c.write(0xA8, &0x8000u16.to_le_bytes());
        assert_eq!(ev, ConfigEvent::Flr);
        assert_eq!(c.read16(0xA8) & 0x8000, 0, "initiate-FLR reads 0");
        c.flr();
        assert!(!c.bus_master());
        assert!(!c.msix_enabled());
    }
}
