//! The PF agent: what the Linux `ixgbe` PF driver does for its VFs (facts §3, §4.1).
//!
//! * the mailbox responder (RESET, API_NEGOTIATE, GET_QUEUES, SET_MAC_ADDR, SET_MULTICAST,
//!   SET_VLAN, SET_LPE, SET_MACVLAN, UPDATE_XCAST_MODE, GET_LINK_STATE) with the CTS/NACK rules;
//! * PF reset (RSTI/RSTD, CTS loss), link changes and unsolicited control messages;
//! * the administrator's per-VF settings (MAC, trust, spoofchk, link state) and the PF MTU.
//!
//! Requests are answered synchronously in the thread that wrote VFMAILBOX.REQ.

use std::sync::atomic::Ordering;
use std::sync::Arc;

pub use crate::agent::VfLinkState;

use crate::agent::{PfAgent, Reply};
use crate::config::NicModel;
use crate::error::SimError;
use crate::ethtool::{EthtoolError, RxFlowSpec, RxfhRequest};
use crate::fault::MailboxFault;
use crate::pool::{PoolState, PoolTable, XcastMode};
use crate::regs::*;
use crate::rss::RETA_SIZE;
use crate::state::NicInner;
use crate::switch::Switch;
use crate::switchport;
use crate::toeplitz::RSS_KEY_LEN;
use crate::vfstate::VfShared;

/// Largest number of multicast hashes a VF may set (IXGBE_MAX_VF_MC_ENTRIES).
const MAX_VF_MC_ENTRIES: usize = 30;
/// Extra MAC filters the model grants each VF through SET_MACVLAN.
const MAX_VF_MACVLANS: usize = 15;
/// Largest max-frame a VF may ask for (IXGBE_MAX_JUMBO_FRAME_SIZE, facts §6.4).
const MAX_JUMBO_FRAME: u32 = 9728;
/// ETH_MIN_MTU, the smallest max-frame SET_LPE accepts.
const MIN_FRAME: u32 = 68;

/// Orders API enum values (facts §3.4): 1.0 → 10 … 1.4 → 14; None for versions the PF refuses.
fn api_rank(api: u32) -> Option<u32> {
    match api {
        API_10 => Some(10),
        API_11 => Some(11),
        API_12 => Some(12),
        API_13 => Some(13),
        API_14 => Some(14),
        _ => None,
    }
}

fn mac_from_words(w1: u32, w2: u32) -> [u8; 6] {
    // facts §3.2: raw bytes from word 1, little-endian registers.
    let a = w1.to_le_bytes();
    let b = w2.to_le_bytes();
    [a[0], a[1], a[2], a[3], b[0], b[1]]
}

fn mac_to_words(mac: &[u8; 6]) -> (u32, u32) {
    (
        u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]),
        u32::from_le_bytes([mac[4], mac[5], 0, 0]),
    )
}

fn valid_unicast(mac: &[u8; 6]) -> bool {
    mac[0] & 1 == 0 && mac.iter().any(|&b| b != 0)
}

fn write_pools(nic: &NicInner) -> std::sync::RwLockWriteGuard<'_, PoolTable> {
    nic.pools.write().unwrap_or_else(|e| e.into_inner())
}

/// Writes a reply into VFMBMEM and sets PFACK (and PFSTS when there is a message).
fn deliver(vf: &VfShared, reply: Option<&Reply>) {
    if let Some(r) = reply {
        for (i, w) in r.words.iter().take(r.len).enumerate() {
            vf.set_mbx_word(i, *w);
        }
        vf.mbx_set(MBX_PFACK | MBX_PFSTS);
    } else {
        vf.mbx_set(MBX_PFACK);
    }
    vf.raise_mailbox();
}

/// VFMAILBOX.REQ written: the PF reads and answers the request.
pub(crate) fn mailbox_request(nic: &Arc<NicInner>, vf: &VfShared) {
    let mut agent = nic.agent.lock().unwrap_or_else(|e| e.into_inner());
    if !agent.up {
        log::debug!(
            "{}: mailbox request while the PF is in reset: no answer",
            vf.name
        );
        return;
    }
    let fault = agent.vfs[vf.idx].fault;
    if fault == Some(MailboxFault::NoReply) {
        log::debug!("{}: mailbox request dropped (injected NoReply)", vf.name);
        return;
    }
    let mut msg = [0u32; MBX_WORDS];
    for (i, w) in msg.iter_mut().enumerate() {
        *w = vf.mbx_word(i);
    }
    let reply = if fault == Some(MailboxFault::Nack) {
        let cts = agent.vfs[vf.idx].cts && msg[0] & MSG_TYPE_MASK != MSG_RESET;
        let mut r = Reply { words: msg, len: 1 };
        r.words[0] = (msg[0] & (MSG_TYPE_MASK | MSG_INFO_MASK))
            | MSG_FAILURE
            | if cts { MSG_CTS } else { 0 };
        Some(r)
    } else {
        let r = handle(nic, &mut agent, vf, &msg);
        switchport::sync_vf(nic, vf.idx);
        r
    };
    if let Some(MailboxFault::Delay(n)) = fault {
        if n > 0 {
            agent.vfs[vf.idx].delayed = reply;
            // Even "no reply" requests get their PFACK late; mark with len 0.
            if agent.vfs[vf.idx].delayed.is_none() {
                agent.vfs[vf.idx].delayed = Some(Reply {
                    words: [0; MBX_WORDS],
                    len: 0,
                });
            }
            vf.mbx_delay_reads.store(n, Ordering::Release);
            return;
        }
    }
    deliver(vf, reply.as_ref());
}

/// A delayed reply becomes visible (called from the VFMAILBOX read path).
pub(crate) fn deliver_delayed(nic: &Arc<NicInner>, vf: &VfShared) {
    let mut agent = nic.agent.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = agent.vfs[vf.idx].delayed.take() {
        if r.len == 0 {
            deliver(vf, None);
        } else {
            deliver(vf, Some(&r));
        }
    }
}

/// Dispatches one request (facts §3.3). Returns None when the PF only acknowledges.
fn handle(
    nic: &NicInner,
    agent: &mut PfAgent,
    vf: &VfShared,
    msg: &[u32; MBX_WORDS],
) -> Option<Reply> {
    let idx = vf.idx;
    let w0 = msg[0];
    // A request that already carries SUCCESS/FAILURE is ignored (facts §3.2).
    if w0 & (MSG_SUCCESS | MSG_FAILURE) != 0 {
        return None;
    }
    let kind = w0 & MSG_TYPE_MASK;
    if kind == MSG_RESET {
        return Some(reset_msg(nic, agent, vf));
    }
    let mut r = Reply {
        words: *msg,
        len: MBX_WORDS,
    };
    // Before RESET every request gets FAILURE, one word, no CTS (facts §3.2).
    if !agent.vfs[idx].cts {
        r.words[0] = w0 | MSG_FAILURE;
        r.len = 1;
        return Some(r);
    }
    let ok = match kind {
        MSG_SET_MAC_ADDR => set_mac(nic, agent, idx, msg),
        MSG_SET_MULTICAST => {
            let count = ((w0 & MSG_INFO_MASK) >> MSG_INFO_SHIFT) as usize;
            let count = count.min(MAX_VF_MC_ENTRIES);
            let mut pools = write_pools(nic);
            let p = &mut pools.vfs[idx];
            p.mc_hashes.clear();
            for i in 0..count {
                let w = msg[1 + i / 2];
                let h = if i % 2 == 0 { w & 0xFFFF } else { w >> 16 };
                p.mc_hashes.push(h as u16);
            }
            true
        }
        MSG_SET_VLAN => {
            let add = (w0 & MSG_INFO_MASK) >> MSG_INFO_SHIFT != 0;
            let vid = (msg[1] & 0xFFF) as u16;
            let mut pools = write_pools(nic);
            let p = &mut pools.vfs[idx];
            if add {
                if !p.vlans.contains(&vid) {
                    p.vlans.push(vid);
                }
            } else {
                p.vlans.retain(|&v| v != vid);
            }
            true
        }
        MSG_SET_LPE => set_lpe(nic, agent, idx, msg[1]),
        MSG_SET_MACVLAN => set_macvlan(nic, agent, idx, msg),
        MSG_API_NEGOTIATE => {
            if api_rank(msg[1]).is_some() {
                agent.vfs[idx].api = msg[1];
                true
            } else {
                log::info!("{}: API enum {} refused", vf.name, msg[1]);
                false
            }
        }
        MSG_GET_QUEUES => {
            if api_rank(agent.vfs[idx].api).unwrap_or(0) >= 11 {
                let qpp = nic.cfg.queues_per_pool() as u32;
                r.words[1] = qpp; // TX queues
                r.words[2] = qpp; // RX queues
                r.words[3] = 0; // no DCB, no port VLAN
                r.words[4] = 0; // default queue
                r.len = 5;
                true
            } else {
                false
            }
        }
        MSG_UPDATE_XCAST_MODE => match update_xcast(nic, agent, idx, msg[1]) {
            Some(applied) => {
                r.words[1] = applied.to_wire();
                true
            }
            None => false,
        },
        MSG_GET_LINK_STATE => {
            if api_rank(agent.vfs[idx].api).unwrap_or(0) >= 12 {
                let pools = nic.pools.read().unwrap_or_else(|e| e.into_inner());
                r.words[1] = pools.vfs[idx].link_enabled as u32;
                true
            } else {
                false
            }
        }
        // GET_RETA / GET_RSS_KEY need API ≥ 1.2 and the administrator's query_rss, off by
        // default (facts §3.3, §4.1).
        MSG_GET_RETA | MSG_GET_RSS_KEY => {
            let a = &agent.vfs[idx];
            if a.rss_query && api_rank(a.api).unwrap_or(0) >= 12 {
                if kind == MSG_GET_RETA {
                    let w = switchport::reta_words(nic);
                    r.words[1..1 + w.len()].copy_from_slice(&w);
                    r.len = 1 + w.len();
                } else {
                    let w = switchport::key_words(nic);
                    r.words[1..1 + w.len()].copy_from_slice(&w);
                    r.len = 1 + w.len();
                }
                true
            } else {
                false
            }
        }
        _ => {
            log::info!("{}: unhandled mailbox message {kind:#x}", vf.name);
            false
        }
    };
    r.words[0] = w0 | if ok { MSG_SUCCESS } else { MSG_FAILURE } | MSG_CTS;
    if !ok {
        r.len = 1;
    }
    Some(r)
}

/// RESET (facts §3.3, §3.8 steps 6-7, §3.8 step 11 for the 82599 VFRE rule).
fn reset_msg(nic: &NicInner, agent: &mut PfAgent, vf: &VfShared) -> Reply {
    let idx = vf.idx;
    let a = &mut agent.vfs[idx];
    a.api = API_10;
    a.cts = true;
    let link_on = a.link != VfLinkState::Disable;
    let mut pools = write_pools(nic);
    let pf_mtu = pools.pf.mtu;
    let p = &mut pools.vfs[idx];
    p.extra_macs.clear();
    p.mc_hashes.clear();
    p.vlans.clear();
    p.xcast = XcastMode::None;
    p.xcast_set = false;
    p.tx_enabled = link_on;
    p.rx_enabled = link_on && !(nic.cfg.model == NicModel::X82599 && pf_mtu > 1500);
    // TDWBAL/H are not cleared by FLR; the PF zeroes them here (facts §2.3).
    for q in 0..MAX_QUEUES {
        vf.set_reg(txq(q, TDWBAL), 0);
        vf.set_reg(txq(q, TDWBAH), 0);
    }
    let mut words = [0u32; MBX_WORDS];
    match p.mac {
        Some(mac) if valid_unicast(&mac) => {
            let (w1, w2) = mac_to_words(&mac);
            words[0] = MSG_RESET | MSG_SUCCESS;
            words[1] = w1;
            words[2] = w2;
        }
        _ => words[0] = MSG_RESET | MSG_FAILURE,
    }
    words[3] = p.mc_filter_type as u32;
    Reply { words, len: 4 }
}

fn set_mac(nic: &NicInner, agent: &mut PfAgent, idx: usize, msg: &[u32; MBX_WORDS]) -> bool {
    let mac = mac_from_words(msg[1], msg[2]);
    if !valid_unicast(&mac) {
        log::info!("sim:vf{idx}: SET_MAC_ADDR with invalid MAC {mac:02x?}");
        return false;
    }
    let mut pools = write_pools(nic);
    let p = &mut pools.vfs[idx];
    if agent.vfs[idx].pf_set_mac && !p.trust && p.mac != Some(mac) {
        log::warn!(
            "sim:vf{idx}: VF attempted to override administratively set MAC address; \
             reload the VF driver to resume operations"
        );
        return false;
    }
    p.mac = Some(mac);
    true
}

fn set_macvlan(nic: &NicInner, agent: &mut PfAgent, idx: usize, msg: &[u32; MBX_WORDS]) -> bool {
    let index = (msg[0] & MSG_INFO_MASK) >> MSG_INFO_SHIFT;
    let mut pools = write_pools(nic);
    let p = &mut pools.vfs[idx];
    if agent.vfs[idx].pf_set_mac && !p.trust && index > 0 {
        log::warn!("sim:vf{idx}: VF requested a MACVLAN filter but is administratively denied");
        return false;
    }
    if index == 0 {
        p.extra_macs.clear();
        return true;
    }
    let mac = mac_from_words(msg[1], msg[2]);
    if !valid_unicast(&mac) || p.extra_macs.len() >= MAX_VF_MACVLANS {
        return false;
    }
    if !p.extra_macs.contains(&mac) {
        p.extra_macs.push(mac);
    }
    true
}

/// SET_LPE with the 82599 jumbo rule (facts §3.8 step 11, §7).
fn set_lpe(nic: &NicInner, agent: &mut PfAgent, idx: usize, max_frame: u32) -> bool {
    if !(MIN_FRAME..=MAX_JUMBO_FRAME).contains(&max_frame) {
        log::info!("sim:vf{idx}: SET_LPE max frame {max_frame} out of range");
        return false;
    }
    let api11 = api_rank(agent.vfs[idx].api).unwrap_or(0) >= 11;
    let link_on = agent.vfs[idx].link != VfLinkState::Disable;
    let mut pools = write_pools(nic);
    let pf_jumbo = pools.pf.mtu > 1500;
    let p = &mut pools.vfs[idx];
    if nic.cfg.model == NicModel::X82599 {
        let err = if api11 && pf_jumbo {
            false
        } else {
            pf_jumbo || max_frame > 1518
        };
        p.rx_enabled = !err && link_on;
        if err {
            log::error!(
                "sim:vf{idx}: VF max_frame {max_frame} out of range (82599 PF/VF jumbo mix)"
            );
            return false;
        }
    }
    p.max_frame = max_frame;
    // The PF raises MAXFRS to the largest accepted VF frame size.
    nic.max_frame.fetch_max(max_frame, Ordering::AcqRel);
    true
}

/// UPDATE_XCAST_MODE: untrusted VFs are downgraded to MULTI; PROMISC refused on 82599 and needs
/// the PF in promiscuous mode (facts §3.3, §7).
fn update_xcast(nic: &NicInner, agent: &mut PfAgent, idx: usize, mode: u32) -> Option<XcastMode> {
    let rank = api_rank(agent.vfs[idx].api).unwrap_or(0);
    if rank < 12 {
        return None;
    }
    let mut mode = XcastMode::from_wire(mode)?;
    if mode == XcastMode::Promisc && rank < 13 {
        return None;
    }
    let mut pools = write_pools(nic);
    let trusted = pools.vfs[idx].trust;
    if !trusted && matches!(mode, XcastMode::AllMulti | XcastMode::Promisc) {
        mode = XcastMode::Multi;
    }
    if mode == XcastMode::Promisc {
        if nic.cfg.model == NicModel::X82599 {
            return None;
        }
        if !pools.pf.promisc {
            log::warn!("sim:vf{idx}: VF promiscuous mode needs the PF in promiscuous mode");
            return None;
        }
    }
    pools.vfs[idx].xcast = mode;
    pools.vfs[idx].xcast_set = true;
    Some(mode)
}

/// Sends the unsolicited PF control message (facts §3.2) to one VF.
pub(crate) fn ping(agent: &PfAgent, vf: &VfShared) {
    if vf.mbx.load(Ordering::Acquire) & MBX_VFU != 0 {
        log::debug!("{}: ping skipped, the VF holds the mailbox", vf.name);
        return;
    }
    let cts = agent.vfs[vf.idx].cts;
    vf.set_mbx_word(0, MSG_PF_CONTROL | if cts { MSG_CTS } else { 0 });
    vf.mbx_set(MBX_PFSTS);
    vf.raise_mailbox();
}

/// VFCTRL.RST written (facts §3.8 steps 3-4).
pub(crate) fn vf_function_reset(nic: &Arc<NicInner>, vf: &VfShared) {
    vf.function_reset();
    let mut agent = nic.agent.lock().unwrap_or_else(|e| e.into_inner());
    let a = &mut agent.vfs[vf.idx];
    a.cts = false;
    a.delayed = None;
    vf.mbx_clear(MBX_PFSTS | MBX_PFACK | MBX_VFU);
    if agent.up {
        vf.mbx_clear(MBX_RSTI);
        vf.mbx_set(MBX_RSTD);
    }
    switchport::sync_vf(nic, vf.idx);
}

/// PF reset starts: VFs see RSTI and lose CTS; nobody answers the mailbox.
pub(crate) fn pf_reset_begin(nic: &NicInner) {
    let mut agent = nic.agent.lock().unwrap_or_else(|e| e.into_inner());
    agent.up = false;
    for a in agent.vfs.iter_mut() {
        a.cts = false;
        a.delayed = None;
    }
    {
        let mut pools = write_pools(nic);
        for p in pools.vfs.iter_mut() {
            p.rx_enabled = false;
            p.tx_enabled = false;
        }
    }
    switchport::sync_all(nic);
    for vf in &nic.vfs {
        ping(&agent, vf);
        vf.mbx_set(MBX_RSTI);
        vf.mbx_delay_reads.store(0, Ordering::Release);
    }
}

/// PF reset done: RSTI drops, RSTD is set (facts §3.1).
pub(crate) fn pf_reset_end(nic: &NicInner) {
    let mut agent = nic.agent.lock().unwrap_or_else(|e| e.into_inner());
    agent.up = true;
    for vf in &nic.vfs {
        vf.mbx_clear(MBX_RSTI);
        vf.mbx_set(MBX_RSTD);
        vf.raise_mailbox();
    }
}

/// Link change: VFLINKS follows and the PF pings every VF.
pub(crate) fn set_link(nic: &NicInner, up: bool) {
    nic.link_up.store(up, Ordering::Release);
    let agent = nic.agent.lock().unwrap_or_else(|e| e.into_inner());
    for vf in &nic.vfs {
        vf.set_reg(VFLINKS, if up { LINKS_UP | LINKS_SPEED_10G } else { 0 });
        ping(&agent, vf);
    }
}

/// The PF control handle: the administrator's view (`ip link set … vf N …`, MTU, link,
/// fault injection on the mailbox).
#[derive(Clone)]
pub struct Pf {
    pub(crate) nic: Arc<NicInner>,
}

impl std::fmt::Debug for Pf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pf").finish_non_exhaustive()
    }
}

impl Pf {
    fn check_vf(&self, vf: usize) -> Result<(), SimError> {
        if vf < self.nic.vfs.len() {
            Ok(())
        } else {
            Err(SimError::NoSuchVf {
                vf,
                num_vfs: self.nic.vfs.len(),
            })
        }
    }

    /// `ip link set pf vf N mac M`: the VF learns it at its next RESET. `None` (or all-zero)
    /// removes the administrative MAC.
    pub fn set_vf_mac(&self, vf: usize, mac: Option<[u8; 6]>) -> Result<(), SimError> {
        self.check_vf(vf)?;
        let mac = mac.filter(|m| m.iter().any(|&b| b != 0));
        if let Some(m) = mac {
            if !valid_unicast(&m) {
                return Err(SimError::InvalidArgument(format!(
                    "vf {vf} mac {m:02x?}: not a unicast address (EINVAL)"
                )));
            }
        }
        let mut agent = self.nic.agent.lock().unwrap_or_else(|e| e.into_inner());
        agent.vfs[vf].pf_set_mac = mac.is_some();
        write_pools(&self.nic).vfs[vf].mac = mac;
        switchport::sync_vf(&self.nic, vf);
        Ok(())
    }

    /// `ip link set pf vf N trust on|off`: the VF loses CTS and is pinged so it resets.
    pub fn set_vf_trust(&self, vf: usize, trust: bool) -> Result<(), SimError> {
        self.check_vf(vf)?;
        let mut agent = self.nic.agent.lock().unwrap_or_else(|e| e.into_inner());
        write_pools(&self.nic).vfs[vf].trust = trust;
        switchport::sync_vf(&self.nic, vf);
        agent.vfs[vf].cts = false;
        ping(&agent, &self.nic.vfs[vf]);
        Ok(())
    }

    /// `ip link set pf vf N spoofchk on|off`.
    pub fn set_vf_spoofchk(&self, vf: usize, on: bool) -> Result<(), SimError> {
        self.check_vf(vf)?;
        write_pools(&self.nic).vfs[vf].spoofchk = on;
        Ok(())
    }

    /// `ip link set pf vf N state auto|enable|disable`: the VF loses CTS and is pinged.
    pub fn set_vf_link_state(&self, vf: usize, state: VfLinkState) -> Result<(), SimError> {
        self.check_vf(vf)?;
        let mut agent = self.nic.agent.lock().unwrap_or_else(|e| e.into_inner());
        agent.vfs[vf].link = state;
        {
            let mut pools = write_pools(&self.nic);
            let p = &mut pools.vfs[vf];
            p.link_enabled = state != VfLinkState::Disable;
            if !p.link_enabled {
                p.rx_enabled = false;
                p.tx_enabled = false;
            }
        }
        switchport::sync_vf(&self.nic, vf);
        agent.vfs[vf].cts = false;
        ping(&agent, &self.nic.vfs[vf]);
        Ok(())
    }

    /// Sets the PF MTU (68..=9710). Like `ip link set pf mtu N`, this re-initialises the PF,
    /// which the VFs see as a PF reset.
    pub fn set_mtu(&self, mtu: u32) -> Result<(), SimError> {
        if !(68..=MAX_JUMBO_FRAME - ETH_OVERHEAD).contains(&mtu) {
            return Err(SimError::InvalidArgument(format!(
                "PF MTU {mtu} outside 68..={} (EINVAL)",
                MAX_JUMBO_FRAME - ETH_OVERHEAD
            )));
        }
        if self.nic.cfg.model == NicModel::X82599 && mtu > 1500 {
            log::warn!("82599 with SR-IOV: setting MTU > 1500 will disable legacy VFs");
        }
        write_pools(&self.nic).pf.mtu = mtu;
        self.nic
            .max_frame
            .store(mtu + ETH_OVERHEAD, Ordering::Release);
        pf_reset_begin(&self.nic);
        pf_reset_end(&self.nic);
        Ok(())
    }

    /// The PF MTU.
    pub fn mtu(&self) -> u32 {
        self.nic
            .pools
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .pf
            .mtu
    }

    /// Puts the PF in or out of promiscuous mode.
    pub fn set_promisc(&self, on: bool) {
        write_pools(&self.nic).pf.promisc = on;
        switchport::sync_all(&self.nic);
    }

    /// `ip link set pf vf N query_rss on|off`: allows GET_RETA / GET_RSS_KEY.
    pub fn set_vf_rss_query(&self, vf: usize, on: bool) -> Result<(), SimError> {
        self.check_vf(vf)?;
        let mut agent = self.nic.agent.lock().unwrap_or_else(|e| e.into_inner());
        agent.vfs[vf].rss_query = on;
        Ok(())
    }

    /// A snapshot of one VF's pool state.
    pub fn vf_state(&self, vf: usize) -> Result<PoolState, SimError> {
        self.check_vf(vf)?;
        Ok(self.nic.pools.read().unwrap_or_else(|e| e.into_inner()).vfs[vf].clone())
    }

    /// A snapshot of all pool state.
    pub fn pools(&self) -> PoolTable {
        self.nic
            .pools
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether VF `vf` is clear to send (completed RESET since its last reset/CTS loss).
    pub fn vf_clear_to_send(&self, vf: usize) -> bool {
        let agent = self.nic.agent.lock().unwrap_or_else(|e| e.into_inner());
        agent.vfs.get(vf).is_some_and(|a| a.cts)
    }

    /// The API version VF `vf` negotiated (facts §3.4 enum value).
    pub fn vf_api(&self, vf: usize) -> Option<u32> {
        let agent = self.nic.agent.lock().unwrap_or_else(|e| e.into_inner());
        agent.vfs.get(vf).map(|a| a.api)
    }

    /// Sends the unsolicited PF control message to VF `vf`.
    pub fn ping_vf(&self, vf: usize) -> Result<(), SimError> {
        self.check_vf(vf)?;
        let agent = self.nic.agent.lock().unwrap_or_else(|e| e.into_inner());
        ping(&agent, &self.nic.vfs[vf]);
        Ok(())
    }

    /// Injects (or with `None` removes) a mailbox fault for VF `vf`.
    pub fn fault_mailbox(&self, vf: usize, fault: Option<MailboxFault>) -> Result<(), SimError> {
        self.check_vf(vf)?;
        let mut agent = self.nic.agent.lock().unwrap_or_else(|e| e.into_inner());
        agent.vfs[vf].fault = fault;
        Ok(())
    }
}

impl Pf {
    /// Runs `f` with shared access to the switch (flow director, RSS, pool state, counters).
    pub fn switch<R>(&self, f: impl FnOnce(&Switch) -> R) -> R {
        f(&self.nic.switch.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Runs `f` with exclusive access to the switch. Pool state is re-pushed by the PF agent on
    /// its next change; use the ethtool methods below for rules and RSS.
    pub fn switch_mut<R>(&self, f: impl FnOnce(&mut Switch) -> R) -> R {
        f(&mut self.nic.switch.write().unwrap_or_else(|e| e.into_inner()))
    }

    /// `ethtool -N … flow-type … action/vf/queue … loc N` (ETHTOOL_SRXCLSRLINS): returns the
    /// rule's location, or the kernel's error (facts §4.2, §4.3).
    pub fn add_ntuple(&self, spec: &RxFlowSpec) -> Result<u32, EthtoolError> {
        self.switch_mut(|s| s.ethtool_add_ntuple(spec))
    }

    /// `ethtool -N … delete N`.
    pub fn del_ntuple(&self, location: u32) -> Result<(), EthtoolError> {
        self.switch_mut(|s| s.ethtool_del_ntuple(location))
    }

    /// `ethtool -X …` (ETHTOOL_SRXFH): RETA (`equal`, `weight`, `default`, table) and key.
    pub fn set_rxfh(&self, req: &RxfhRequest) -> Result<(), EthtoolError> {
        self.switch_mut(|s| s.ethtool_set_rxfh(req))
    }

    /// `ethtool -x`: the RETA and the key.
    pub fn rxfh(&self) -> ([u8; RETA_SIZE], [u8; RSS_KEY_LEN]) {
        self.switch(|s| s.ethtool_get_rxfh())
    }
}
