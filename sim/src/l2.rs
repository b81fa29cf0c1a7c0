//! Per-pool L2 state the switch reads (owned by the PF agent), the MAC table and the multicast
//! table array (MTA) (facts §4.1, §3.3).
//!
//! [`PoolConfig`] is the small struct through which the PF agent hands over what the
//! Linux PF programs per pool: RAR entries (unicast MACs), VLAN membership (VLVF), VMOLR bits
//! (AUPE, BAM, ROMPE, MPE, UPE, VPE), VFRE (receive enable) and PSRTYPE.RQPL.
//!
//! ```
//! use floodgate_sim::l2::{mta_hash, PoolConfig, XcastMode};
//! let mut vf = PoolConfig::vf_default([2, 0, 0, 0, 0, 1]);
//! vf.apply_xcast(XcastMode::AllMulti);
//! assert!(vf.mpe && vf.bam && !vf.upe);
//! // 01:00:5e:00:00:fb with mc_filter_type 0 selects address bits 47:36.
//! assert_eq!(mta_hash(&[0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb], 0), 0xFB0);
//! ```

pub use crate::pool::XcastMode;

/// What the switch knows about one pool. Plain data; push a new copy with
/// [`crate::switch::Switch::set_pool`] whenever the PF agent changes something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Unicast MACs steered to this pool (RAR entries: the VF MAC plus SET_MACVLAN extras).
    pub macs: Vec<[u8; 6]>,
    /// 12-bit MTA hash values registered by the pool (SET_MULTICAST payload).
    pub mc_hashes: Vec<u16>,
    /// VLAN IDs the pool is a member of (SET_VLAN).
    pub vlans: Vec<u16>,
    /// VMOLR.AUPE: accept untagged frames.
    pub aupe: bool,
    /// VMOLR.BAM: accept broadcast.
    pub bam: bool,
    /// VMOLR.ROMPE: accept multicast that hits the (global) MTA.
    pub rompe: bool,
    /// VMOLR.MPE: accept all multicast.
    pub mpe: bool,
    /// VMOLR.UPE: unicast promiscuous (all unicast).
    pub upe: bool,
    /// VMOLR.VPE: VLAN promiscuous (any VLAN).
    pub vpe: bool,
    /// VFRE bit: receive enabled for the pool.
    pub rx_enabled: bool,
    /// PSRTYPE.RQPL: log2 of the RSS queues the pool uses (0 → 1 queue, 1 → 2, 2 → 4).
    pub rqpl: u8,
}

impl Default for PoolConfig {
    /// A pool with nothing configured and receive disabled.
    fn default() -> Self {
        PoolConfig {
            macs: Vec::new(),
            mc_hashes: Vec::new(),
            vlans: Vec::new(),
            aupe: true,
            bam: false,
            rompe: false,
            mpe: false,
            upe: false,
            vpe: false,
            rx_enabled: false,
            rqpl: 0,
        }
    }
}

impl PoolConfig {
    /// What the Linux PF programs for a VF after its RESET (facts §4.1): the VF MAC, untagged
    /// frames and broadcast accepted, registered multicast via the MTA, receive enabled, one
    /// RSS queue until the VF programs PSRTYPE.
    pub fn vf_default(mac: [u8; 6]) -> PoolConfig {
        PoolConfig {
            macs: vec![mac],
            aupe: true,
            bam: true,
            rompe: true,
            rx_enabled: true,
            ..PoolConfig::default()
        }
    }

    /// The PF's own pool ("kernel side"): its MAC, broadcast, all multicast (the model does not
    /// track the host stack's groups), untagged frames, receive on, `rqpl` for its RSS width.
    pub fn pf_default(mac: [u8; 6], rqpl: u8) -> PoolConfig {
        PoolConfig {
            macs: vec![mac],
            aupe: true,
            bam: true,
            rompe: true,
            mpe: true,
            rx_enabled: true,
            rqpl,
            ..PoolConfig::default()
        }
    }

    /// VMOLR bits for an accepted `UPDATE_XCAST_MODE` (`ixgbe_update_vf_xcast_mode`): NONE
    /// clears BAM/ROMPE/MPE/UPE/VPE; MULTI sets BAM|ROMPE; ALLMULTI adds MPE; PROMISC adds
    /// UPE|VPE. (Trust/82599 refusals and downgrades are the PF agent's job.)
    pub fn apply_xcast(&mut self, mode: XcastMode) {
        let (bam, rompe, mpe, upe, vpe) = match mode {
            XcastMode::None => (false, false, false, false, false),
            XcastMode::Multi => (true, true, false, false, false),
            XcastMode::AllMulti => (true, true, true, false, false),
            XcastMode::Promisc => (true, true, true, true, true),
        };
        self.bam = bam;
        self.rompe = rompe;
        self.mpe = mpe;
        self.upe = upe;
        self.vpe = vpe;
    }

    /// Whether the pool's VLAN filter accepts a frame with VLAN ID `vid` (None or 0 = untagged
    /// or priority-tagged).
    #[inline]
    pub fn vlan_ok(&self, vid: Option<u16>) -> bool {
        match vid {
            None | Some(0) => self.aupe,
            Some(v) => self.vpe || self.vlans.contains(&v),
        }
    }
}

/// 12-bit MTA hash of a multicast address for `mc_filter_type` 0..3 (the MO field; the value
/// the RESET reply carries in word 3, facts §3.3). Type 0 uses address bits 47:36, 1 bits
/// 46:35, 2 bits 45:34, 3 bits 43:32.
pub fn mta_hash(mac: &[u8; 6], mc_filter_type: u8) -> u16 {
    let (b4, b5) = (u16::from(mac[4]), u16::from(mac[5]));
    let v = match mc_filter_type & 3 {
        0 => (b4 >> 4) | (b5 << 4),
        1 => (b4 >> 3) | (b5 << 5),
        2 => (b4 >> 2) | (b5 << 6),
        _ => b4 | (b5 << 8),
    };
    v & 0x0FFF
}

/// 4096-bit multicast table array, shared by all pools (one MTA per port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mta {
    bits: [u64; 64],
}

impl Default for Mta {
    fn default() -> Self {
        Mta { bits: [0; 64] }
    }
}

impl Mta {
    /// Sets the bit of a 12-bit hash value.
    pub fn set(&mut self, hash: u16) {
        let h = usize::from(hash & 0x0FFF);
        self.bits[h / 64] |= 1 << (h % 64);
    }

    /// Tests a 12-bit hash value.
    #[inline]
    pub fn test(&self, hash: u16) -> bool {
        let h = usize::from(hash & 0x0FFF);
        self.bits[h / 64] >> (h % 64) & 1 == 1
    }

    /// Clears every bit.
    pub fn clear(&mut self) {
        self.bits = [0; 64];
    }
}

/// Unicast MAC → pool bitmap (RAR + MPSAR), sorted for binary search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MacTable {
    entries: Vec<([u8; 6], u64)>,
}

impl MacTable {
    /// Builds the table from per-pool MAC lists (`pools[i]` is pool i).
    pub fn build<'a>(pools: impl IntoIterator<Item = &'a PoolConfig>) -> MacTable {
        let mut entries: Vec<([u8; 6], u64)> = Vec::new();
        for (i, p) in pools.into_iter().enumerate().take(64) {
            for mac in &p.macs {
                match entries.iter_mut().find(|(m, _)| m == mac) {
                    Some((_, bits)) => *bits |= 1 << i,
                    None => entries.push((*mac, 1 << i)),
                }
            }
        }
        entries.sort_unstable_by_key(|(m, _)| *m);
        MacTable { entries }
    }

    /// Pool bitmap of `mac` (0 if unknown).
    #[inline]
    pub fn lookup(&self, mac: &[u8; 6]) -> u64 {
        self.entries
            .binary_search_by_key(mac, |(m, _)| *m)
            .map_or(0, |i| self.entries[i].1)
    }

    /// Number of distinct MACs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no MAC is programmed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mta_filter_types() {
        let m = [0x01, 0x00, 0x5e, 0x12, 0x34, 0x56];
        assert_eq!(mta_hash(&m, 0), 0x563);
        assert_eq!(mta_hash(&m, 1), (0x34 >> 3 | 0x56 << 5) & 0xFFF);
        assert_eq!(mta_hash(&m, 3), 0x634);
        let mut t = Mta::default();
        t.set(0x563);
        assert!(t.test(0x563) && !t.test(0x564));
    }

    #[test]
    fn mac_table_shares_entries() {
        let a = PoolConfig::vf_default([2, 0, 0, 0, 0, 1]);
        let b = PoolConfig::vf_default([2, 0, 0, 0, 0, 1]);
        let c = PoolConfig::vf_default([2, 0, 0, 0, 0, 3]);
        let t = MacTable::build([&a, &b, &c]);
        assert_eq!(t.len(), 2);
        assert_eq!(t.lookup(&[2, 0, 0, 0, 0, 1]), 0b011);
        assert_eq!(t.lookup(&[2, 0, 0, 0, 0, 3]), 0b100);
        assert_eq!(t.lookup(&[2, 0, 0, 0, 0, 2]), 0);
    }

    #[test]
    fn vlan_filter() {
        let mut p = PoolConfig::vf_default([2; 6]);
        p.vlans.push(10);
        assert!(p.vlan_ok(None) && p.vlan_ok(Some(0)) && p.vlan_ok(Some(10)));
        assert!(!p.vlan_ok(Some(11)));
        p.aupe = false;
        assert!(!p.vlan_ok(None));
        p.apply_xcast(XcastMode::Promisc);
        assert!(p.vlan_ok(Some(11)));
    }
}
