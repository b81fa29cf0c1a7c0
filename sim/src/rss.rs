//! RSS: the PF-shared key and 128-entry RETA, MRQC hash-field selection, the RSS type code of the
//! RX descriptor, PSRTYPE.RQPL, and the `ethtool -X` semantics (facts §4.6, §6.1, §8).
//!
//! On 82599/X540 the PF and every VF share one key and one RETA (facts §4.6), so this is a single
//! object owned by the switch. The 7 LSBs of the Toeplitz hash index the RETA; the pool's
//! PSRTYPE.RQPL then says how many low bits of the entry select the queue inside the pool.
//!
//! ```
//! use floodgate_sim::rss::{weight_table, RETA_SIZE};
//! // `ethtool -X eth0 weight 1 0 0 0` puts every entry on queue 0.
//! let t = weight_table(&[1, 0, 0, 0]).unwrap();
//! assert!(t.iter().all(|&q| q == 0));
//! // `weight 1 1`: two contiguous halves.
//! let t = weight_table(&[1, 1]).unwrap();
//! assert_eq!((t[63], t[64]), (0, 1));
//! assert_eq!(t.len(), RETA_SIZE);
//! ```

pub use crate::ethtool::HashFunc;

use crate::ethtool::EthtoolError;
use crate::frame::{FrameInfo, L3, L4};
use crate::toeplitz::{Toeplitz, RSS_KEY_LEN};

/// RETA entries (RETA(0..31), 4 per register; facts §4.6).
pub const RETA_SIZE: usize = 128;

/// `ixgbe_rss_indir_tbl_max` for 82599/X540: table entries must stay below 16 (facts §4.6).
pub const RETA_MAX_QUEUE_82599: u32 = 16;

/// MRQC hash-field enable bits (facts §4.6).
pub mod mrqc {
    /// Hash IPv4/TCP on addresses and ports.
    pub const IPV4_TCP: u32 = 1 << 16;
    /// Hash IPv4 on addresses.
    pub const IPV4: u32 = 1 << 17;
    /// IPv6 with extension headers, TCP.
    pub const IPV6_EX_TCP: u32 = 1 << 18;
    /// IPv6 with extension headers.
    pub const IPV6_EX: u32 = 1 << 19;
    /// IPv6 on addresses.
    pub const IPV6: u32 = 1 << 20;
    /// IPv6/TCP on addresses and ports.
    pub const IPV6_TCP: u32 = 1 << 21;
    /// IPv4/UDP on addresses and ports.
    pub const IPV4_UDP: u32 = 1 << 22;
    /// IPv6/UDP.
    pub const IPV6_UDP: u32 = 1 << 23;
    /// IPv6 with extension headers, UDP.
    pub const IPV6_EX_UDP: u32 = 1 << 24;
    /// What Linux `ixgbe_setup_mrqc` enables by default (UDP only on request).
    pub const LINUX_DEFAULT: u32 = IPV4 | IPV4_TCP | IPV6 | IPV6_TCP;
    /// Every hash field.
    pub const ALL: u32 = 0x01FF_0000;
}

/// RSS type code written to RX descriptor dword 0 bits 3:0 (facts §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RssType {
    /// No hash computed.
    None = 0,
    /// IPv4/TCP.
    Ipv4Tcp = 1,
    /// IPv4.
    Ipv4 = 2,
    /// IPv6/TCP.
    Ipv6Tcp = 3,
    /// IPv6 with extension headers.
    Ipv6Ex = 4,
    /// IPv6.
    Ipv6 = 5,
    /// IPv6 with extension headers, TCP.
    Ipv6ExTcp = 6,
    /// IPv4/UDP.
    Ipv4Udp = 7,
    /// IPv6/UDP.
    Ipv6Udp = 8,
    /// IPv6 with extension headers, UDP.
    Ipv6ExUdp = 9,
    /// Flow Director filter match (replaces the RSS type when FDIR reports, facts §6.1).
    FdirMatch = 0xF,
}

/// Round-robin table: entry i = i mod n (`ethtool -X equal n` in userspace; the kernel core's
/// `ethtool_rxfh_indir_default`).
pub fn equal_table(n: u32) -> Result<[u32; RETA_SIZE], EthtoolError> {
    if n == 0 {
        return Err(EthtoolError::Invalid(
            "rxfh equal: the number of queues must be at least 1".into(),
        ));
    }
    let mut t = [0u32; RETA_SIZE];
    for (i, e) in t.iter_mut().enumerate() {
        *e = i as u32 % n;
    }
    Ok(t)
}

/// Contiguous-block table of `ethtool -X weight w0 w1 ...` (facts §4.6): queue j gets about
/// 128·wj/Σw consecutive entries. Entry i goes to the first queue j whose cumulative weight
/// satisfies `i < 128·cum(j)/Σw` (integer division). Σw must be > 0 and ≤ 128.
pub fn weight_table(weights: &[u32]) -> Result<[u32; RETA_SIZE], EthtoolError> {
    let sum: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    if sum == 0 {
        return Err(EthtoolError::Invalid(
            "rxfh weight: at least one weight must be non-zero".into(),
        ));
    }
    if sum > RETA_SIZE as u64 {
        return Err(EthtoolError::Invalid(format!(
            "rxfh weight: total weight {sum} exceeds the size of the indirection table ({RETA_SIZE})"
        )));
    }
    let size = RETA_SIZE as u64;
    let mut t = [0u32; RETA_SIZE];
    let mut j = 0usize;
    let mut cum = u64::from(weights[0]);
    for (i, e) in t.iter_mut().enumerate() {
        while (i as u64) >= size * cum / sum {
            j += 1;
            cum += u64::from(weights[j]);
        }
        *e = j as u32;
    }
    Ok(t)
}

/// The PF-shared RSS state.
#[derive(Debug, Clone)]
pub struct Rss {
    toeplitz: Toeplitz,
    reta: [u8; RETA_SIZE],
    fields: u32,
}

impl Rss {
    /// Key `key`, hash fields `fields` (MRQC bits), RETA round-robin over `queues`.
    pub fn new(key: &[u8; RSS_KEY_LEN], fields: u32, queues: u32) -> Rss {
        let mut r = Rss {
            toeplitz: Toeplitz::new(key),
            reta: [0; RETA_SIZE],
            fields: fields & mrqc::ALL,
        };
        r.fill_round_robin(queues);
        r
    }

    /// The driver's own table (`ixgbe_setup_reta`): round-robin over `rss_queues`, widened to at
    /// least 4 queues with SR-IOV "so that VFs can make full use of any rings" (facts §4.6).
    pub fn driver_default_reta(&mut self, rss_queues: u32, sriov: bool) {
        let n = if sriov { rss_queues.max(4) } else { rss_queues };
        self.fill_round_robin(n);
    }

    fn fill_round_robin(&mut self, n: u32) {
        let n = n.clamp(1, RETA_MAX_QUEUE_82599);
        for (i, e) in self.reta.iter_mut().enumerate() {
            *e = (i as u32 % n) as u8;
        }
    }

    /// The 40-byte key.
    pub fn key(&self) -> &[u8; RSS_KEY_LEN] {
        self.toeplitz.key()
    }

    /// The 128-entry RETA.
    pub fn reta(&self) -> &[u8; RETA_SIZE] {
        &self.reta
    }

    /// RETA as the 32 RETA registers (4 entries per register, entry 4i in bits 7:0).
    pub fn reta_registers(&self) -> [u32; RETA_SIZE / 4] {
        let mut r = [0u32; RETA_SIZE / 4];
        for (i, c) in self.reta.chunks(4).enumerate() {
            r[i] = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        r
    }

    /// Key as the 10 RSSRK registers (byte 4i in bits 7:0, facts §4.6).
    pub fn key_registers(&self) -> [u32; RSS_KEY_LEN / 4] {
        let mut r = [0u32; RSS_KEY_LEN / 4];
        for (i, c) in self.key().chunks(4).enumerate() {
            r[i] = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        r
    }

    /// MRQC hash-field bits in use.
    pub fn fields(&self) -> u32 {
        self.fields
    }

    /// Sets the MRQC hash-field bits (other bits ignored).
    pub fn set_fields(&mut self, fields: u32) {
        self.fields = fields & mrqc::ALL;
    }

    /// Replaces the key (control path; rebuilds the lookup tables).
    pub fn set_key(&mut self, key: &[u8; RSS_KEY_LEN]) {
        self.toeplitz = Toeplitz::new(key);
    }

    /// Writes the RETA without validation (the register path; only the low 4 bits are kept,
    /// as 82599/X540 implement a 4-bit queue index).
    pub fn set_reta_raw(&mut self, table: &[u8; RETA_SIZE]) {
        for (d, s) in self.reta.iter_mut().zip(table) {
            *d = s & 0x0F;
        }
    }

    /// `ixgbe_set_rxfh` (facts §4.6): validates and applies an indirection table and/or key.
    ///
    /// * `hfunc` other than no-change/Toeplitz → EOPNOTSUPP;
    /// * a table whose length is not 128 or a key that is not 40 bytes → EINVAL (ethtool core);
    /// * entries must be `< min(num_rx_queues, 16)`, the bound raised to 2 with SR-IOV → EINVAL.
    ///
    /// Nothing changes unless the whole request is valid.
    pub fn ethtool_set_rxfh(
        &mut self,
        indir: Option<&[u32]>,
        key: Option<&[u8]>,
        hfunc: HashFunc,
        num_rx_queues: u32,
        sriov: bool,
    ) -> Result<(), EthtoolError> {
        match hfunc {
            HashFunc::NoChange | HashFunc::Toeplitz => {}
            other => {
                return Err(EthtoolError::NotSupported(format!(
                    "rxfh: hash function {other:?} is not supported; 82599/X540 only implement Toeplitz"
                )))
            }
        }
        let mut new_reta = self.reta;
        if let Some(t) = indir {
            if t.len() != RETA_SIZE {
                return Err(EthtoolError::Invalid(format!(
                    "rxfh: indirection table has {} entries, the device has {RETA_SIZE}",
                    t.len()
                )));
            }
            let mut max_queues = num_rx_queues.min(RETA_MAX_QUEUE_82599);
            if sriov && max_queues < 2 {
                max_queues = 2;
            }
            if let Some((i, &q)) = t.iter().enumerate().find(|(_, &q)| q >= max_queues) {
                return Err(EthtoolError::Invalid(format!(
                    "rxfh: indirection entry {i} points at queue {q}, but entries must be below {max_queues} \
                     (min(num_rx_queues={num_rx_queues}, 16){})",
                    if sriov { ", at least 2 with SR-IOV" } else { "" }
                )));
            }
            for (d, &s) in new_reta.iter_mut().zip(t) {
                *d = s as u8;
            }
        }
        let new_key = match key {
            None => None,
            Some(k) => Some(<[u8; RSS_KEY_LEN]>::try_from(k).map_err(|_| {
                EthtoolError::Invalid(format!(
                    "rxfh: hash key is {} bytes, the device key is {RSS_KEY_LEN} bytes",
                    k.len()
                ))
            })?),
        };
        self.reta = new_reta;
        if let Some(k) = new_key {
            self.set_key(&k);
        }
        Ok(())
    }

    /// Computes the RSS hash and type of a parsed frame per the enabled MRQC fields
    /// (facts §4.6, §6.1). Non-IP frames, or frames whose fields are not enabled, give
    /// `(0, RssType::None)`.
    pub fn compute(&self, f: &FrameInfo) -> (u32, RssType) {
        let on = |bit: u32| self.fields & bit != 0;
        let t = &self.toeplitz;
        match (f.l3, f.l4) {
            (L3::Ipv4 { src, dst, .. }, L4::Tcp { src: sp, dst: dp }) if on(mrqc::IPV4_TCP) => {
                (t.hash_ipv4_ports(src, dst, sp, dp), RssType::Ipv4Tcp)
            }
            (L3::Ipv4 { src, dst, .. }, L4::Udp { src: sp, dst: dp }) if on(mrqc::IPV4_UDP) => {
                (t.hash_ipv4_ports(src, dst, sp, dp), RssType::Ipv4Udp)
            }
            (L3::Ipv4 { src, dst, .. }, _) if on(mrqc::IPV4) => {
                (t.hash_ipv4(src, dst), RssType::Ipv4)
            }
            (L3::Ipv6 { src, dst, ext, .. }, l4) => {
                let ports = l4.ports();
                let tcp = matches!(l4, L4::Tcp { .. });
                let udp = matches!(l4, L4::Udp { .. });
                // With extension headers the "ex" fields are preferred when enabled.
                let choice = if ext && tcp && on(mrqc::IPV6_EX_TCP) {
                    Some((true, RssType::Ipv6ExTcp))
                } else if ext && udp && on(mrqc::IPV6_EX_UDP) {
                    Some((true, RssType::Ipv6ExUdp))
                } else if tcp && on(mrqc::IPV6_TCP) {
                    Some((true, RssType::Ipv6Tcp))
                } else if udp && on(mrqc::IPV6_UDP) {
                    Some((true, RssType::Ipv6Udp))
                } else if ext && on(mrqc::IPV6_EX) {
                    Some((false, RssType::Ipv6Ex))
                } else if on(mrqc::IPV6) {
                    Some((false, RssType::Ipv6))
                } else {
                    None
                };
                match (choice, ports) {
                    (Some((true, ty)), Some((sp, dp))) => {
                        (t.hash_ipv6_ports(&src, &dst, sp, dp), ty)
                    }
                    (Some((false, ty)), _) => (t.hash_ipv6(&src, &dst), ty),
                    _ => (0, RssType::None),
                }
            }
            _ => (0, RssType::None),
        }
    }

    /// RETA entry for `hash` (its 7 LSBs index the table, facts §4.6).
    #[inline]
    pub fn reta_entry(&self, hash: u32) -> u8 {
        self.reta[(hash & 0x7F) as usize]
    }

    /// Queue inside a pool: the RETA entry's low RQPL bits (PSRTYPE.RQPL: 0 → 1 queue,
    /// 1 → 2, 2 → 4, 3 → 8), never more than the pool has (`pool_queues`).
    #[inline]
    pub fn queue_in_pool(&self, hash: u32, rqpl: u8, pool_queues: u8) -> u8 {
        let used = (1u16 << rqpl.min(3)).min(u16::from(pool_queues.max(1)));
        // `used` is a power of two here (pool_queues is 1, 2, 4 or 8 on this hardware).
        let used = if used.is_power_of_two() {
            used
        } else {
            used.next_power_of_two() >> 1
        };
        self.reta_entry(hash) & (used as u8 - 1)
    }
}

/// RQPL value for a pool that uses `queues` RSS queues (1 → 0, 2 → 1, 3..4 → 2, more → 3).
pub fn rqpl_for_queues(queues: u32) -> u8 {
    match queues {
        0 | 1 => 0,
        2 => 1,
        3 | 4 => 2,
        _ => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toeplitz::MICROSOFT_RSS_KEY;

    #[test]
    fn weight_blocks_are_contiguous_and_proportional() {
        let t = weight_table(&[1, 2, 1]).unwrap();
        let counts = (0..3)
            .map(|q| t.iter().filter(|&&e| e == q).count())
            .collect::<Vec<_>>();
        assert_eq!(counts, vec![32, 64, 32]);
        assert!(t.windows(2).all(|w| w[0] <= w[1]));
        // Zero weights in the middle are skipped.
        let t = weight_table(&[1, 0, 1]).unwrap();
        assert!(!t.contains(&1));
        assert_eq!((t[63], t[64]), (0, 2));
    }

    #[test]
    fn weight_errors() {
        assert!(matches!(
            weight_table(&[0, 0]),
            Err(EthtoolError::Invalid(_))
        ));
        assert!(matches!(
            weight_table(&[100, 29]),
            Err(EthtoolError::Invalid(_))
        ));
        assert!(weight_table(&[64, 64]).is_ok());
    }

    #[test]
    fn queue_in_pool_masks_by_rqpl() {
        let mut r = Rss::new(&MICROSOFT_RSS_KEY, mrqc::LINUX_DEFAULT, 4);
        let mut t = [0u8; RETA_SIZE];
        t[5] = 3;
        r.set_reta_raw(&t);
        assert_eq!(r.queue_in_pool(5, 2, 4), 3);
        assert_eq!(r.queue_in_pool(5, 1, 4), 1);
        assert_eq!(r.queue_in_pool(5, 2, 2), 1); // 64-pool mode: 2 queues at most
        assert_eq!(r.queue_in_pool(5, 0, 4), 0);
        assert_eq!(r.queue_in_pool(0x80 | 5, 2, 4), 3); // only 7 LSBs index the RETA
    }
}
