//! Statistics: the VF's hardware counters with wrap handling (facts §2.5) and the driver's own.

use crate::regs::*;
use crate::rx::RxStats;
use crate::tx::TxStats;
use floodgate_vfio::Bar;

/// Counters kept by the VF hardware (VFGPRC, VFGORC, VFMPRC, VFGPTC, VFGOTC), accumulated into
/// 64 bits. The registers are 32-bit (packets) and 36-bit (octets) and cannot be cleared by the
/// VF, so the driver keeps the last value it saw and adds the wrapped difference.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HwStats {
    /// Good packets received (VFGPRC).
    pub rx_packets: u64,
    /// Good octets received (VFGORC).
    pub rx_bytes: u64,
    /// Multicast packets received (VFMPRC).
    pub rx_multicast: u64,
    /// Good packets transmitted (VFGPTC).
    pub tx_packets: u64,
    /// Good octets transmitted (VFGOTC).
    pub tx_bytes: u64,
}

const MASK36: u64 = (1 << 36) - 1;

/// Adds the difference of a 32-bit counter that may have wrapped.
#[inline]
pub(crate) fn delta32(last: u64, now: u32) -> u64 {
    (now as u64).wrapping_sub(last) & 0xFFFF_FFFF
}

/// Adds the difference of a 36-bit counter that may have wrapped.
#[inline]
pub(crate) fn delta36(last: u64, now: u64) -> u64 {
    now.wrapping_sub(last) & MASK36
}

/// Raw register snapshot.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HwRaw {
    gprc: u32,
    gorc: u64,
    mprc: u32,
    gptc: u32,
    gotc: u64,
}

/// Reads a 36-bit counter split in LSB/MSB registers without tearing: re-reads if the high part
/// moved while the low part was read.
fn read36<B: Bar>(bar: &B, lsb: u32, msb: u32) -> u64 {
    let mut hi = bar.read32(msb);
    loop {
        let lo = bar.read32(lsb);
        let hi2 = bar.read32(msb);
        if hi2 == hi {
            return (((hi & 0xF) as u64) << 32) | lo as u64;
        }
        hi = hi2;
    }
}

impl HwRaw {
    /// Reads all counters; `None` if the device reads all-ones (gone).
    pub(crate) fn read<B: Bar>(bar: &B) -> Option<HwRaw> {
        let gprc = bar.read32(VFGPRC);
        let lsb = bar.read32(VFGORC_LSB);
        if gprc == ALL_ONES && lsb == ALL_ONES && bar.read32(VFSTATUS) == ALL_ONES {
            return None;
        }
        Some(HwRaw {
            gprc,
            gorc: read36(bar, VFGORC_LSB, VFGORC_MSB),
            mprc: bar.read32(VFMPRC),
            gptc: bar.read32(VFGPTC),
            gotc: read36(bar, VFGOTC_LSB, VFGOTC_MSB),
        })
    }
}

/// Accumulates hardware counters across wraps (and across VF resets: call `rebase` after one).
#[derive(Debug, Default)]
pub(crate) struct HwAccum {
    last: HwRaw,
    pub(crate) total: HwStats,
}

impl HwAccum {
    pub(crate) fn rebase(&mut self, now: HwRaw) {
        self.last = now;
    }

    pub(crate) fn update(&mut self, now: HwRaw) {
        let l = &self.last;
        self.total.rx_packets += delta32(l.gprc as u64, now.gprc);
        self.total.rx_bytes += delta36(l.gorc, now.gorc);
        self.total.rx_multicast += delta32(l.mprc as u64, now.mprc);
        self.total.tx_packets += delta32(l.gptc as u64, now.gptc);
        self.total.tx_bytes += delta36(l.gotc, now.gotc);
        self.last = now;
    }
}

/// All counters of one VF.
///
/// Frames the NIC drops because the ring had no free descriptor (SRRCTL.DROP_EN) never reach
/// the VF and no VF register counts them (the PF sees them in QPRDC). The driver-side cause is
/// counted in [`RxStats::no_buffers`]; the ring itself is re-armed on every burst.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Receive counters summed over queues.
    pub rx: RxStats,
    /// Transmit counters summed over queues.
    pub tx: TxStats,
    /// Hardware counters (updated by `IxgbeVf::maintain` and `IxgbeVf::stats`).
    pub hw: HwStats,
    /// PF resets (or CTS losses) after which the VF was re-initialised.
    pub pf_resets: u64,
    /// Link state changes seen.
    pub link_changes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps() {
        assert_eq!(delta32(0xFFFF_FFF0, 0x10), 0x20);
        assert_eq!(delta32(5, 7), 2);
        assert_eq!(delta36(MASK36 - 1, 3), 5);
        assert_eq!(delta36(1 << 33, (1 << 33) + 10), 10);
        let mut a = HwAccum::default();
        a.rebase(HwRaw {
            gprc: 0xFFFF_FFFE,
            gorc: MASK36 - 100,
            ..Default::default()
        });
        a.update(HwRaw {
            gprc: 3,
            gorc: 50,
            ..Default::default()
        });
        assert_eq!(a.total.rx_packets, 5);
        assert_eq!(a.total.rx_bytes, 151);
    }
}
