//! Glue between the PF agent and datapath on one side and the switch (`switch.rs`, `l2.rs`) on
//! the other.
//!
//! The PF agent keeps the per-pool state in [`crate::pool::PoolTable`]; after every change it
//! pushes the pool's [`PoolConfig`] (RAR/MTA/VLVF/VMOLR/VFRE/PSRTYPE as the Linux PF programs
//! them, facts §4.1) into the switch here, and reads the RSS key and RETA back for the mailbox.

use crate::l2::PoolConfig;
use crate::pool::PoolState;
use crate::regs::VFPSRTYPE;
use crate::rss::{self, RETA_SIZE};
use crate::state::NicInner;
use crate::toeplitz::RSS_KEY_LEN;

/// The switch's view of VF pool state `p`; `psrtype` is the VF's VFPSRTYPE register.
pub(crate) fn pool_config(p: &PoolState, psrtype: u32) -> PoolConfig {
    let mut c = match p.mac {
        // After RESET the Linux PF programs AUPE | BAM | ROMPE and enables receive.
        Some(mac) => PoolConfig::vf_default(mac),
        None => PoolConfig {
            aupe: true,
            bam: true,
            rompe: true,
            ..PoolConfig::default()
        },
    };
    c.macs.extend(p.extra_macs.iter().copied());
    c.mc_hashes = p.mc_hashes.clone();
    c.vlans = p.vlans.clone();
    if p.xcast_set {
        c.apply_xcast(p.xcast);
    }
    c.rx_enabled = p.rx_enabled;
    // VFPSRTYPE bits 31:29 = RQPL (facts §2.1): 0 → 1 queue, 1 → 2, 2 → 4.
    c.rqpl = ((psrtype >> 29) & 0x7).min(2) as u8;
    c
}

/// Pushes VF `vf`'s pool state into the switch.
pub(crate) fn sync_vf(nic: &NicInner, vf: usize) {
    let Some(v) = nic.vfs.get(vf) else { return };
    let cfg = {
        let pools = nic.pools.read().unwrap_or_else(|e| e.into_inner());
        pool_config(&pools.vfs[vf], v.reg(VFPSRTYPE))
    };
    let mut sw = nic.switch.write().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = sw.set_pool(vf as u16, cfg) {
        log::error!(
            "sim:vf{vf}: switch refused the pool state: {e}",
            e = floodgate_vfio::ErrorChain(&e)
        );
    }
}

/// Pushes every VF pool and the PF pool into the switch.
pub(crate) fn sync_all(nic: &NicInner) {
    for vf in 0..nic.vfs.len() {
        sync_vf(nic, vf);
    }
    let (mac, promisc) = {
        let pools = nic.pools.read().unwrap_or_else(|e| e.into_inner());
        (pools.pf.mac, pools.pf.promisc)
    };
    let mut sw = nic.switch.write().unwrap_or_else(|e| e.into_inner());
    let layout = *sw.layout();
    let mut c = PoolConfig::pf_default(mac, rss::rqpl_for_queues(layout.num_rx_queues_per_pool()));
    if promisc {
        c.upe = true;
        c.mpe = true;
        c.vpe = true;
    }
    if let Err(e) = sw.set_pool(layout.pf_pool(), c) {
        log::error!("PF pool: switch refused the pool state: {e}");
    }
}

/// The RETA compressed to 2 bits per entry, 16 entries per word, as GET_RETA answers it for
/// 82599/X540 VFs (facts §3.3: 128 entries × 2 bits).
pub(crate) fn reta_words(nic: &NicInner) -> [u32; RETA_SIZE / 16] {
    let (reta, _) = nic
        .switch
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .ethtool_get_rxfh();
    let mut w = [0u32; RETA_SIZE / 16];
    for (i, e) in reta.iter().enumerate() {
        w[i / 16] |= u32::from(e & 3) << (2 * (i % 16));
    }
    w
}

/// The RSS key as 10 little-endian words (GET_RSS_KEY, facts §3.3).
pub(crate) fn key_words(nic: &NicInner) -> [u32; RSS_KEY_LEN / 4] {
    let (_, key) = nic
        .switch
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .ethtool_get_rxfh();
    let mut w = [0u32; RSS_KEY_LEN / 4];
    for (i, c) in key.chunks_exact(4).enumerate() {
        w[i] = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    w
}
