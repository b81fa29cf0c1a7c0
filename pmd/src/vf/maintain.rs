//! Run-time upkeep of a VF that is up: PF events, PF-reset recovery (facts §3.8 step 13), the
//! link and the hardware counters.

use super::bringup::{gone_err, reset_and_negotiate};
use super::{IxgbeVf, LinkStatus, Maintenance, NicModel, VfInfo};
use crate::regs::*;
use crate::stats::HwRaw;
use crate::Error;
use floodgate_vfio::{Bar, Device};

impl<D: Device> IxgbeVf<D> {
    /// Reads VFLINKS, debouncing an 82599 link that just came up (facts §3.8 step 13, §7).
    pub(super) fn read_link(&self) -> Result<LinkStatus, Error> {
        let v = self.bar.read32(VFLINKS);
        if v == ALL_ONES {
            return Err(gone_err(&self.location, "reading the link state"));
        }
        let mut l = LinkStatus::from_reg(v);
        if l.up && !self.link.up && self.info.model == NicModel::X82599 {
            for _ in 0..5 {
                std::thread::sleep(self.cfg.timeouts.link_debounce);
                if self.bar.read32(VFLINKS) & VFLINKS_UP == 0 {
                    l = LinkStatus::default();
                    break;
                }
            }
        }
        Ok(l)
    }

    /// Re-initialises after a PF reset or CTS loss: stop, reset, handshake, re-arm the rings
    /// with the buffers they already hold, return unfinished TX buffers to their pools.
    fn reinit(&mut self) -> Result<(), Error> {
        self.stop_queues();
        if let Some(raw) = HwRaw::read(&self.bar) {
            self.hw.update(raw);
        }
        for txq in &mut self.tx {
            let n = txq.drain_stopped();
            txq.stats.dropped_reset += n;
        }
        // The VF keeps the MAC it runs with when the PF's RESET reply carries none (an
        // administrative MAC removed meanwhile, or a PF that NACKs RESET): the application's
        // filters, steering and rewrites use it. A MAC the PF does assign still wins.
        let keep_mac = Some(self.info.mac);
        let info = reset_and_negotiate(
            &self.bar,
            &mut self.mbx,
            &self.location,
            &self.cfg,
            self.info.model,
            keep_mac,
        )?;
        if info.queues < self.rx.len() {
            log::warn!(
                "{}: after the PF reset the PF grants {} queue pair(s), the driver keeps using {}",
                self.location,
                info.queues,
                self.rx.len()
            );
        }
        let queues = self.rx.len();
        self.info = VfInfo { queues, ..info };
        for rxq in &mut self.rx {
            let n = rxq.arm_all() as u64;
            rxq.stats.descriptors += n;
            rxq.stats.dropped_reset += n;
        }
        for txq in &mut self.tx {
            txq.start();
        }
        self.start_queues()?;
        if let Some(raw) = HwRaw::read(&self.bar) {
            self.hw.rebase(raw);
        }
        self.pf_resets += 1;
        self.reset_pending = false;
        log::info!(
            "{}: re-initialised after a PF reset ({} so far)",
            self.location,
            self.pf_resets
        );
        Ok(())
    }

    /// Housekeeping; call it every few milliseconds to once a second from the polling loop
    /// (it reads registers, which costs microseconds on real hardware, so not every burst).
    ///
    /// Detects a PF reset (RSTI/RSTD), a PF control message revoking clear-to-send, and a gone
    /// device; re-initialises the VF and its queues after a reset without losing buffers;
    /// tracks the link; updates the hardware counters.
    ///
    /// Errors: [`Error::DeviceGone`] when registers read all-ones (do not call again; drop the
    /// device), [`Error::PfResetInProgress`] or a mailbox/reset timeout while the PF is still
    /// resetting (call again later; the queues stay stopped until it succeeds).
    pub fn maintain(&mut self) -> Result<Maintenance, Error> {
        let mut m = Maintenance::default();
        if self.gone || self.bar.read32(VFSTATUS) == ALL_ONES {
            self.gone = true;
            return Err(gone_err(&self.location, "maintenance"));
        }
        let mut reset = self.reset_pending;
        let r = self.check_pf_events();
        match r {
            Ok(true) => reset = true,
            Ok(false) => {}
            Err(e @ Error::DeviceGone { .. }) => {
                self.gone = true;
                return Err(e);
            }
            Err(e) => {
                log::warn!(
                    "{}: mailbox check failed ({}); resetting",
                    self.location,
                    floodgate_vfio::ErrorChain(&e)
                );
                reset = true;
            }
        }
        if reset {
            self.reset_pending = true;
            let ctl = self.mbx.read_ctl(&self.bar, "maintenance");
            if let Ok(v) = ctl {
                if v & MBX_RSTI != 0 && v & MBX_RSTD == 0 {
                    // PF still resetting: wait for RSTD before touching anything.
                    return Err(Error::PfResetInProgress {
                        location: self.location.clone(),
                    });
                }
            }
            match self.reinit() {
                Ok(()) => m.reinitialised = true,
                Err(e) => {
                    if let Error::DeviceGone { .. } = e {
                        self.gone = true;
                    }
                    return Err(e);
                }
            }
        }
        let l = self.read_link()?;
        if l != self.link {
            self.link = l;
            self.link_changes += 1;
            m.link_changed = Some(l);
            log::info!(
                "{}: link {} {}",
                self.location,
                if l.up { "up" } else { "down" },
                if l.up {
                    format!("{} Mb/s", l.speed_mbps)
                } else {
                    String::new()
                }
            );
        }
        if let Some(raw) = HwRaw::read(&self.bar) {
            self.hw.update(raw);
        }
        Ok(m)
    }

    /// Mailbox events: returns true when the VF must re-initialise.
    fn check_pf_events(&mut self) -> Result<bool, Error> {
        let during = "checking for PF events";
        if self.mbx.check_reset(&self.bar, during)? {
            log::warn!("{}: PF reset detected (RSTI/RSTD)", self.location);
            return Ok(true);
        }
        let mut need = false;
        // Drain pending PF messages (control pings, link notifications).
        for _ in 0..4 {
            if !self.mbx.has_msg(&self.bar, during)? {
                break;
            }
            let Some(msg) = self.mbx.try_read(&self.bar, during)? else {
                break;
            };
            let w0 = msg[0];
            if w0 & MSG_CTS == 0 && (w0 & MSG_TYPE_MASK == MSG_PF_CONTROL || w0 & MSG_NACK != 0) {
                log::warn!(
                    "{}: PF revoked clear-to-send (message {w0:#010x})",
                    self.location
                );
                need = true;
            } else {
                log::debug!("{}: PF message {w0:#010x}", self.location);
            }
        }
        Ok(need)
    }
}
