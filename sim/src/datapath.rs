//! The datapath: TX rings to the switch, the switch to RX rings, the PF's kernel side and the
//! wire, with the RX backlog of queues whose SRRCTL.DROP_EN is clear.
//!
//! [`NicInner::run_tx`] fetches frames from a VF's TX ring (facts §6.2), applies the pool's
//! transmit enable and MAC anti-spoofing, and routes each frame; [`NicInner::route`] checks the
//! port's max frame size for wire ingress and classifies the frame in the switch; every copy lands
//! in one bucket of [`crate::NicStats`].

use std::sync::atomic::{AtomicU64, Ordering};

use crate::regs;
use crate::rx::{self, RxResult};
use crate::state::{inc, DataPath, NicInner};
use crate::switch::{Destination, DropReason, Ingress, Switch, Target};
use crate::tx::{self, TxOne};
use crate::txoffload;
use crate::vfstate::{VfCounter, VfShared};

impl NicInner {
    /// Fetches up to `max` frames from TX queue (vf, q) and routes them.
    pub(crate) fn run_tx(&self, dp: &mut DataPath, vf: usize, q: usize, max: usize) -> usize {
        let v = &self.vfs[vf];
        if v.removed.load(Ordering::Relaxed) || !tx::tx_pending(v, q) {
            return 0;
        }
        // One look at the pool state per batch: transmit enable and the anti-spoofing MACs.
        let (tx_on, spoofchk) = {
            let pools = self.pools.read().unwrap_or_else(|e| e.into_inner());
            let p = &pools.vfs[vf];
            dp.tx_macs.clear();
            dp.tx_macs.extend(p.mac);
            dp.tx_macs.extend(p.extra_macs.iter().copied());
            (p.tx_enabled, p.spoofchk)
        };
        let c = &self.counters;
        // The switch is read-locked once per batch (the PF agent's pushes wait for its end).
        let sw = self.switch.read().unwrap_or_else(|e| e.into_inner());
        let (mut n, mut bad, mut disabled, mut spoofed, mut good, mut bytes) = (0, 0, 0, 0, 0, 0);
        while n < max {
            let DataPath {
                ports,
                tx_ctx,
                frame,
                tx_macs,
                ..
            } = &mut *dp;
            match tx::tx_one(v, &mut ports[vf], q, &mut tx_ctx[vf][q], frame) {
                TxOne::Idle => break,
                TxOne::Dropped => bad += 1,
                TxOne::Frame => {
                    if !tx_on {
                        disabled += 1;
                    } else if spoofchk && !tx_macs.iter().any(|m| frame[6..12] == m[..]) {
                        spoofed += 1;
                    } else {
                        good += 1;
                        bytes += frame.len() as u64;
                        let f = std::mem::take(&mut dp.frame);
                        self.route_switch(dp, &f, Ingress::Pool(vf as u16), &sw);
                        dp.frame = f;
                    }
                }
                TxOne::Tso {
                    ctx: octx,
                    ixsm,
                    txsm,
                    vlan,
                } => {
                    // TSO (facts §6.2 TSE): every segment is a frame on the wire, counted in
                    // VFGPTC/VFGOTC like any other.
                    let f = std::mem::take(&mut dp.frame);
                    let mut seg = std::mem::take(&mut dp.tso_seg);
                    let mut tagged = std::mem::take(&mut dp.tso_tagged);
                    let r = txoffload::segment(&f, &octx, ixsm, txsm, &mut seg, |s| {
                        let out: &[u8] = match vlan {
                            Some(tag) => {
                                tagged.clear();
                                tagged.extend_from_slice(&s[..12]);
                                tagged.extend_from_slice(&[0x81, 0x00]);
                                tagged.extend_from_slice(&tag.to_be_bytes());
                                tagged.extend_from_slice(&s[12..]);
                                &tagged
                            }
                            None => s,
                        };
                        if !tx_on {
                            disabled += 1;
                        } else if spoofchk && !dp.tx_macs.iter().any(|m| out[6..12] == m[..]) {
                            spoofed += 1;
                        } else {
                            good += 1;
                            bytes += out.len() as u64;
                            self.route_switch(dp, out, Ingress::Pool(vf as u16), &sw);
                        }
                    });
                    if let Err(e) = r {
                        log::debug!(
                            "sim:vf{vf}: TX queue {q}: {e}",
                            e = floodgate_vfio::ErrorChain(&e)
                        );
                        bad += 1;
                    }
                    dp.frame = f;
                    dp.tso_seg = seg;
                    dp.tso_tagged = tagged;
                }
            }
            n += 1;
        }
        let add = |a: &AtomicU64, x: u64| {
            if x != 0 {
                a.fetch_add(x, Ordering::Relaxed);
            }
        };
        add(&c.tx_frames, n as u64);
        add(&c.tx_bad, bad);
        add(&c.tx_disabled, disabled);
        add(&c.tx_spoofed, spoofed);
        add(&v.tx_spoofed, spoofed);
        if good != 0 {
            v.count(VfCounter::Gptc, good);
            v.count(VfCounter::Gotc, bytes);
        }
        n
    }

    /// Classifies a frame and hands every replica to its destination.
    pub(crate) fn route(&self, dp: &mut DataPath, frame: &[u8], ingress: Ingress) {
        if ingress == Ingress::Wire {
            // Link down (a link-flap fault): nothing arrives from the wire.
            if !self.link_up.load(Ordering::Relaxed) {
                inc(&self.counters.rx_link_down);
                return;
            }
            // The MAC drops frames longer than MAXFRS (CRC included; a VLAN tag may add 4).
            let tagged = frame.get(12..14) == Some(&[0x81, 0x00][..]);
            let limit = self.max_frame.load(Ordering::Relaxed) + if tagged { 4 } else { 0 };
            if frame.len() as u32 + 4 > limit {
                inc(&self.counters.rx_oversize);
                return;
            }
        }
        let sw = self.switch.read().unwrap_or_else(|e| e.into_inner());
        self.route_switch(dp, frame, ingress, &sw);
    }

    /// Classifies a frame in the switch (flow director → L2 pools → RSS, facts §4) and hands
    /// every copy to its pool; the frame may also leave on the wire (VEB).
    fn route_switch(&self, dp: &mut DataPath, frame: &[u8], ingress: Ingress, sw: &Switch) {
        // A new frame: its checksum status is computed at its first VF delivery.
        dp.rx_csum = None;
        sw.classify_into(frame, ingress, &mut dp.cls);
        for i in 0..dp.cls.destinations().len() {
            let d = dp.cls.destinations()[i];
            self.deliver_one(dp, frame, &d);
        }
        if dp.cls.to_wire {
            self.egress(dp, frame);
        }
        match dp.cls.drop {
            Some(DropReason::RxDisabled) => inc(&self.counters.rx_vf_disabled),
            Some(_) => inc(&self.counters.switch_dropped),
            None => {}
        }
    }

    /// Hands one copy to its pool: a VF queue or the PF's kernel side.
    fn deliver_one(&self, dp: &mut DataPath, frame: &[u8], d: &Destination) {
        let c = &self.counters;
        if d.loopback {
            inc(&c.loopback);
        }
        match d.target {
            Target::Vf(vf) => {
                self.rx_one(dp, vf as usize, usize::from(d.queue), frame, d, true);
            }
            Target::Pf => {
                inc(&c.pf_delivered);
                if let Some(s) = dp.pf_sink.as_mut() {
                    s.frame(frame);
                }
            }
        }
    }

    /// Sends a frame out of the wire port (egress sink and capture).
    fn egress(&self, dp: &mut DataPath, frame: &[u8]) {
        inc(&self.counters.egress);
        if let Some(s) = dp.egress_sink.as_mut() {
            s.frame(frame);
        }
        if self.capture.load(Ordering::Relaxed) {
            let mut e = self.egress.lock().unwrap_or_else(|e| e.into_inner());
            if e.len() >= self.cfg.egress_limit {
                e.pop_front();
            }
            e.push_back(frame.to_vec());
        }
    }

    /// Delivers one replica to a VF queue, honouring VFRE, RXDCTL and DROP_EN.
    fn rx_one(
        &self,
        dp: &mut DataPath,
        vf: usize,
        q: usize,
        frame: &[u8],
        d: &Destination,
        may_backlog: bool,
    ) -> bool {
        let c = &self.counters;
        let Some(v) = self.vfs.get(vf) else {
            inc(&c.switch_dropped);
            return true;
        };
        if v.removed.load(Ordering::Relaxed) || q >= self.cfg.queues_per_pool() {
            inc(&c.rx_queue_disabled);
            return true;
        }
        let rx_on = self.pools.read().unwrap_or_else(|e| e.into_inner()).vfs[vf].rx_enabled;
        if !rx_on {
            inc(&c.rx_vf_disabled);
            return true;
        }
        // Keep order: if frames already wait for this queue, queue behind them.
        if may_backlog && !dp.backlog[vf][q].is_empty() {
            return self.backlog_push(dp, v, vf, q, frame, d);
        }
        let DataPath {
            ports,
            rx_scratch,
            rx_csum,
            ..
        } = &mut *dp;
        match rx::deliver(
            v,
            &mut ports[vf],
            q,
            frame,
            d,
            rx_scratch,
            self.cfg.model,
            rx_csum,
        ) {
            RxResult::Delivered => {
                inc(&c.rx_delivered);
                true
            }
            RxResult::QueueDisabled => {
                inc(&c.rx_queue_disabled);
                true
            }
            RxResult::DmaFault => {
                inc(&c.rx_dma_fault);
                true
            }
            RxResult::Oversize => {
                inc(&c.rx_oversize);
                true
            }
            RxResult::NoDesc => {
                let drop_en = !matches!(rx::RxRing::load(v, q), Some(r) if !r.drop_en());
                if drop_en {
                    inc(&c.rx_no_desc);
                    v.rx_no_desc[q].fetch_add(1, Ordering::Relaxed);
                    true
                } else if may_backlog {
                    self.backlog_push(dp, v, vf, q, frame, d)
                } else {
                    false
                }
            }
        }
    }

    fn backlog_push(
        &self,
        dp: &mut DataPath,
        v: &VfShared,
        vf: usize,
        q: usize,
        frame: &[u8],
        d: &Destination,
    ) -> bool {
        let b = &mut dp.backlog[vf][q];
        if b.len() >= self.cfg.rx_backlog {
            inc(&self.counters.rx_missed);
            v.rx_missed[q].fetch_add(1, Ordering::Relaxed);
        } else {
            b.push_back((frame.to_vec(), *d));
        }
        true
    }

    /// Retries frames held back by DROP_EN = 0.
    pub(crate) fn drain_backlogs(&self, dp: &mut DataPath) {
        for vf in 0..dp.backlog.len() {
            for q in 0..regs::MAX_QUEUES {
                while let Some((f, d)) = dp.backlog[vf][q].pop_front() {
                    dp.rx_csum = None;
                    if !self.rx_one(dp, vf, q, &f, &d, false) {
                        dp.backlog[vf][q].push_front((f, d));
                        break;
                    }
                }
            }
        }
    }

    /// Counts frames the line-rate feeder wrote.
    pub(crate) fn count_fed(&self, n: u64) {
        self.counters.fed.fetch_add(n, Ordering::Relaxed);
    }
}
