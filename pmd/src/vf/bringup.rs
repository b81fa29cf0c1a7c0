//! The bring-up steps of facts §3.8, one function per step, in the order the datasheet lists
//! them. [`IxgbeVf::open`](super::IxgbeVf::open) and the PF-reset recovery call them as an
//! outline; nothing here is on the packet path.

use super::{fmt_mac, Config, IxgbeVf, MailboxApi, NicModel, Timeouts, VfInfo, XcastMode};
use crate::mailbox::{pack_mac, unpack_mac, Mailbox, PollDeadline};
use crate::mempool::{Mempool, MempoolConfig};
use crate::regs::*;
use crate::rx::RxQueue;
use crate::tx::TxQueue;
use crate::Error;
use floodgate_vfio::{Bar, Device, DeviceInfo, DmaOptions, DmaRegion};
use std::ptr::NonNull;
use std::time::Instant;

/// The error for registers that read all-ones: the device is gone (facts §2.1).
pub(super) fn gone_err(location: &str, during: &'static str) -> Error {
    Error::DeviceGone {
        location: location.to_string(),
        during,
    }
}

// ---- Before touching the device -------------------------------------------------------------

/// Which VF this is, from its PCI IDs (facts §1); anything else is refused.
pub(super) fn identify(id: &DeviceInfo) -> Result<NicModel, Error> {
    match (id.vendor_id, id.device_id) {
        (INTEL_VENDOR_ID, DEV_ID_82599_VF) => Ok(NicModel::X82599),
        (INTEL_VENDOR_ID, DEV_ID_X540_VF) => Ok(NicModel::X540),
        (vendor, device) => Err(Error::UnsupportedDevice {
            location: id.location.clone(),
            vendor,
            device,
        }),
    }
}

/// Checks the configuration that needs no device: ring sizes (facts §6.4) and the queue cap.
/// Returns the RX and TX ring sizes.
pub(super) fn check_config(cfg: &Config) -> Result<(u32, u32), Error> {
    let rx_size = check_ring_size("rx_ring_size", cfg.rx_ring_size)?;
    let tx_size = check_ring_size("tx_ring_size", cfg.tx_ring_size)?;
    if cfg.max_queues == Some(0) {
        return Err(Error::Config(
            "max_queues = 0: need at least one queue".into(),
        ));
    }
    Ok((rx_size, tx_size))
}

fn check_ring_size(what: &str, n: usize) -> Result<u32, Error> {
    if !(64..=4096).contains(&n) || !n.is_power_of_two() {
        return Err(Error::Config(format!(
            "{what} = {n}: must be a power of two from 64 to 4096"
        )));
    }
    Ok(n as u32)
}

// ---- Steps 1–11: stop, reset, handshake -----------------------------------------------------

/// Steps 1–11 of facts §3.8: stop, reset, handshake. `keep_mac`: after a PF reset, the MAC the
/// VF used before (re-requested if the PF assigned none).
pub(super) fn reset_and_negotiate<B: Bar>(
    bar: &B,
    mbx: &mut Mailbox,
    location: &str,
    cfg: &Config,
    model: NicModel,
    keep_mac: Option<[u8; 6]>,
) -> Result<VfInfo, Error> {
    if bar.read32(VFSTATUS) == ALL_ONES {
        return Err(gone_err(location, "bring-up"));
    }
    stop_everything(bar);
    reset_vf(bar, mbx, location, &cfg.timeouts)?;
    clear_queue_registers(bar);
    let reset = send_reset(bar, mbx, location, &cfg.timeouts)?;
    let api = negotiate_api(bar, mbx, location)?;
    let grant = get_queues(bar, mbx, location, api)?;
    let queues = cfg
        .max_queues
        .map_or(grant.granted, |m| m.min(grant.granted));
    let mac = match reset.mac {
        Some(mac) => mac,
        None => set_mac(
            bar,
            mbx,
            location,
            keep_mac.or(cfg.mac).unwrap_or_else(random_mac),
        )?,
    };
    let lpe_accepted = set_max_frame(bar, mbx, location, cfg.mtu)?;
    let mut info = VfInfo {
        model,
        mac,
        mac_from_pf: reset.mac.is_some(),
        api,
        queues_granted: grant.granted,
        queues,
        default_queue: grant.default_queue,
        traffic_classes: grant.traffic_classes,
        mc_filter_type: reset.mc_filter_type,
        lpe_accepted,
        xcast: None,
    };
    if let Some(mode) = cfg.xcast {
        info.xcast = Some(xcast(bar, mbx, location, api, model, mode)?);
    }
    Ok(info)
}

/// Step 1 (facts §3.8): interrupts off, every queue stopped, VFPSRTYPE cleared.
fn stop_everything<B: Bar>(bar: &B) {
    bar.write32(VTEIMC, VTEIMC_ALL);
    let _ = bar.read32(VTEICR);
    for q in 0..MAX_QUEUES {
        bar.write32(vftxdctl(q), XDCTL_SWFLSH);
        let v = bar.read32(vfrxdctl(q));
        bar.write32(vfrxdctl(q), v & !XDCTL_ENABLE);
    }
    bar.write32(VFPSRTYPE, 0);
}

/// Steps 3–4 (facts §3.8): VFCTRL.RST, then wait for the PF to signal RSTI or RSTD.
fn reset_vf<B: Bar>(bar: &B, mbx: &mut Mailbox, location: &str, t: &Timeouts) -> Result<(), Error> {
    bar.write32(VFCTRL, VFCTRL_RST);
    let _ = bar.read32(VFSTATUS); // flush
    mbx.clear_soft();
    let mut deadline = PollDeadline::new(t.reset, t.poll_interval);
    loop {
        let v = bar.read32(VFMAILBOX);
        if v == ALL_ONES {
            return Err(gone_err(location, "VF reset"));
        }
        if v & (MBX_RSTI | MBX_RSTD) != 0 {
            break;
        }
        if deadline.expired() {
            return Err(Error::ResetTimeout {
                location: location.to_string(),
                timeout_us: t.reset.as_micros() as u64,
            });
        }
        std::thread::sleep(t.poll_interval);
    }
    mbx.clear_soft();
    Ok(())
}

/// Step 5 (facts §3.8): every queue's registers to their reset values.
fn clear_queue_registers<B: Bar>(bar: &B) {
    for q in 0..MAX_QUEUES {
        bar.write32(vfrdh(q), 0);
        bar.write32(vfrdt(q), 0);
        bar.write32(vfrxdctl(q), 0);
        bar.write32(vfsrrctl(q), SRRCTL_RESET);
        bar.write32(vfdca_rxctrl(q), DCA_RXCTRL_DEFAULT);
        bar.write32(vftdh(q), 0);
        bar.write32(vftdt(q), 0);
        bar.write32(vftxdctl(q), 0);
        bar.write32(vftdwbal(q), 0);
        bar.write32(vftdwbah(q), 0);
        bar.write32(vfdca_txctrl(q), DCA_TXCTRL_DEFAULT);
    }
}

/// What the PF's RESET reply says (facts §3.8 step 7).
struct ResetReply {
    /// The MAC the PF assigned (`None`: NACK or an all-zero MAC).
    mac: Option<[u8; 6]>,
    mc_filter_type: u32,
}

/// Steps 6–7 (facts §3.8, §3.3): the RESET message and its reply.
fn send_reset<B: Bar>(
    bar: &B,
    mbx: &mut Mailbox,
    location: &str,
    t: &Timeouts,
) -> Result<ResetReply, Error> {
    mbx.write_posted(bar, &[MSG_RESET], "sending RESET")?;
    if !t.reset_reply_delay.is_zero() {
        std::thread::sleep(t.reset_reply_delay);
    }
    let mut reply = [0u32; MBX_SIZE];
    mbx.read_posted(bar, &mut reply, "reading the RESET reply")?;
    let w0 = reply[0] & !MSG_CTS;
    let mac = if w0 == MSG_RESET | MSG_ACK {
        Some(unpack_mac(reply[1], reply[2]))
    } else if w0 == MSG_RESET | MSG_NACK {
        None
    } else {
        return Err(Error::PfRefused {
            location: location.to_string(),
            request: "RESET",
            detail: format!("unexpected reply word 0 {:#010x}", reply[0]),
        });
    };
    Ok(ResetReply {
        mac: mac.filter(|m| *m != [0; 6]),
        mc_filter_type: reply[3],
    })
}

/// Step 8 (facts §3.8, §3.4): the newest mailbox API the PF accepts (1.0 if none).
fn negotiate_api<B: Bar>(bar: &B, mbx: &mut Mailbox, location: &str) -> Result<MailboxApi, Error> {
    for cand in [
        MailboxApi::V1_3,
        MailboxApi::V1_2,
        MailboxApi::V1_1,
        MailboxApi::V1_0,
    ] {
        let r = mbx.request(
            bar,
            &[MSG_API_NEGOTIATE, cand.wire(), 0],
            "negotiating the mailbox API",
        )?;
        if r[0] & !MSG_CTS == MSG_API_NEGOTIATE | MSG_ACK {
            return Ok(cand);
        }
    }
    log::warn!("{location}: PF accepted no mailbox API version; assuming 1.0");
    Ok(MailboxApi::V1_0)
}

/// What GET_QUEUES granted (facts §3.8 step 9).
struct QueueGrant {
    granted: usize,
    default_queue: u32,
    traffic_classes: u32,
}

/// Step 9 (facts §3.8, §3.3): GET_QUEUES (API ≥ 1.1), with the shared code's corrections.
fn get_queues<B: Bar>(
    bar: &B,
    mbx: &mut Mailbox,
    location: &str,
    api: MailboxApi,
) -> Result<QueueGrant, Error> {
    let mut grant = QueueGrant {
        granted: 1,
        default_queue: 0,
        traffic_classes: 1,
    };
    if api < MailboxApi::V1_1 {
        return Ok(grant);
    }
    let r = mbx.request(bar, &[MSG_GET_QUEUES, 0, 0, 0, 0], "asking for queues")?;
    if r[0] & !MSG_CTS != MSG_GET_QUEUES | MSG_ACK {
        log::warn!("{location}: PF refused GET_QUEUES; using one queue pair");
        return Ok(grant);
    }
    let fix = |v: u32| {
        if v == 0 || v > MAX_QUEUES {
            MAX_QUEUES
        } else {
            v
        }
    };
    let txq = fix(r[GET_QUEUES_TX]);
    let rxq = fix(r[GET_QUEUES_RX]);
    grant.granted = txq.min(rxq) as usize;
    grant.traffic_classes = r[GET_QUEUES_TRANS_VLAN];
    grant.default_queue = r[GET_QUEUES_DEFAULT];
    if grant.default_queue >= rxq {
        grant.default_queue = 0;
    }
    Ok(grant)
}

/// Step 10 (facts §3.8, §3.3): SET_MAC_ADDR when the PF assigned no MAC. Returns `mac`.
fn set_mac<B: Bar>(
    bar: &B,
    mbx: &mut Mailbox,
    location: &str,
    mac: [u8; 6],
) -> Result<[u8; 6], Error> {
    let w = pack_mac(mac);
    let r = mbx.request(bar, &[MSG_SET_MAC_ADDR, w[0], w[1]], "setting the MAC")?;
    if r[0] & !MSG_CTS != MSG_SET_MAC_ADDR | MSG_ACK {
        return Err(Error::PfRefused {
            location: location.to_string(),
            request: "SET_MAC_ADDR",
            detail: format!(
                "the PF assigned no MAC and rejected {}; set one on the PF with \
                 `ip link set <pf> vf <n> mac <addr>`",
                fmt_mac(mac)
            ),
        });
    }
    Ok(mac)
}

/// A random locally administered unicast MAC, from the standard library's per-process random
/// hasher keys (no extra dependency; not cryptographic, just unique enough).
fn random_mac() -> [u8; 6] {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    let b = h.finish().to_le_bytes();
    [(b[0] & 0xFE) | 0x02, b[1], b[2], b[3], b[4], b[5]]
}

/// Step 11 (facts §3.8): SET_LPE always (82599 re-enables VF receive only from here). Returns
/// whether the PF accepted; a refusal is a warning, not an error.
fn set_max_frame<B: Bar>(
    bar: &B,
    mbx: &mut Mailbox,
    location: &str,
    mtu: u32,
) -> Result<bool, Error> {
    let r = mbx.request(bar, &[MSG_SET_LPE, mtu + 18], "setting the max frame size")?;
    let accepted = r[0] & !MSG_CTS == MSG_SET_LPE | MSG_ACK;
    if !accepted {
        log::warn!(
            "{location}: PF refused SET_LPE {} (MTU {}); on 82599 the VF may receive \
             nothing until the PF and VF MTUs agree (both <= 1500 or PF jumbo)",
            mtu + 18,
            mtu
        );
    }
    Ok(accepted)
}

/// UPDATE_XCAST_MODE (facts §3.3): returns the mode applied, or an error that says why.
pub(super) fn xcast<B: Bar>(
    bar: &B,
    mbx: &mut Mailbox,
    location: &str,
    api: MailboxApi,
    model: NicModel,
    mode: XcastMode,
) -> Result<XcastMode, Error> {
    let need = if mode == XcastMode::Promisc {
        MailboxApi::V1_3
    } else {
        MailboxApi::V1_2
    };
    if api < need {
        return Err(Error::PfRefused {
            location: location.to_string(),
            request: "UPDATE_XCAST_MODE",
            detail: format!("{mode:?} needs mailbox API {need:?}, the PF speaks {api:?}"),
        });
    }
    let r = mbx.request(
        bar,
        &[MSG_UPDATE_XCAST_MODE, mode as u32],
        "setting multicast/promiscuous mode",
    )?;
    let applied = XcastMode::from_wire(r[1]);
    let untrusted_hint = "the VF is probably not trusted: run `ip link set <pf> vf <n> \
                          trust on` on the host";
    if r[0] & !MSG_CTS != MSG_UPDATE_XCAST_MODE | MSG_ACK {
        let mut detail = format!("{mode:?} refused (NACK); {untrusted_hint}");
        if mode == XcastMode::Promisc && model == NicModel::X82599 {
            detail.push_str("; note that 82599 PFs never allow a promiscuous VF");
        }
        return Err(Error::PfRefused {
            location: location.to_string(),
            request: "UPDATE_XCAST_MODE",
            detail,
        });
    }
    match applied {
        Some(a) if a >= mode => Ok(a),
        a => Err(Error::PfRefused {
            location: location.to_string(),
            request: "UPDATE_XCAST_MODE",
            detail: format!(
                "asked for {mode:?}, the PF applied {}; {untrusted_hint}",
                a.map_or_else(|| format!("unknown mode {}", r[1]), |a| format!("{a:?}"))
            ),
        }),
    }
}

// ---- Memory: buffers and descriptor rings ---------------------------------------------------

/// The receive buffer pool: the configured one, or a new one sized for every ring. Checks that
/// a frame of the MTU fits one buffer (one-buffer descriptors, facts §2.4, §6.4) and that the
/// pool can fill every RX ring.
pub(super) fn buffer_pool(
    cfg: &Config,
    queues: usize,
    rx_size: u32,
    tx_size: u32,
) -> Result<Mempool, Error> {
    let pool = match &cfg.mempool {
        Some(p) => p.clone(),
        None => {
            let need = queues as u32 * (rx_size + tx_size + 512) + 4096;
            Mempool::new(&MempoolConfig {
                buffers: cfg.pool_buffers.unwrap_or(need),
                headroom: cfg.headroom,
                data_room: crate::mempool::DEFAULT_DATA_ROOM,
                huge_pages: cfg.huge_pages,
            })?
        }
    };
    let max_frame = cfg.mtu as usize + 18;
    if max_frame > pool.data_room() {
        return Err(Error::Config(format!(
            "mtu {} needs {max_frame}-byte buffers but the mempool's data room is {} bytes \
             (multi-buffer frames are not supported)",
            cfg.mtu,
            pool.data_room()
        )));
    }
    if pool.available() < queues as u32 * rx_size + 1 {
        return Err(Error::Config(format!(
            "mempool has {} free buffers; {queues} RX rings of {rx_size} need at least {}",
            pool.available(),
            queues as u32 * rx_size + 1
        )));
    }
    Ok(pool)
}

/// The RX and TX software queues, index = queue number.
pub(super) type QueuePairs<B> = (Vec<RxQueue<B>>, Vec<TxQueue<B>>);

/// Where the descriptor rings live: one DMA region, per queue pair an RX ring then a TX ring,
/// each 4 KiB aligned (facts §6.4 asks for 128).
pub(super) struct RingLayout {
    rx_size: u32,
    tx_size: u32,
    rx_bytes: usize,
    tx_bytes: usize,
}

impl RingLayout {
    pub(super) fn new(rx_size: u32, tx_size: u32) -> RingLayout {
        RingLayout {
            rx_size,
            tx_size,
            rx_bytes: (rx_size as usize * DESC_SIZE).next_multiple_of(4096),
            tx_bytes: (tx_size as usize * DESC_SIZE).next_multiple_of(4096),
        }
    }

    /// Allocates the ring region for `queues` pairs and maps it and the pool into the device.
    pub(super) fn map<D: Device>(
        &self,
        dev: &D,
        pool: &Mempool,
        cfg: &Config,
        queues: usize,
    ) -> Result<DmaRegion, Error> {
        let rings = DmaRegion::allocate(
            queues * (self.rx_bytes + self.tx_bytes),
            &DmaOptions {
                huge_pages: cfg.huge_pages,
                name: Some("floodgate-rings".into()),
            },
        )?;
        dev.dma_map(pool.region())?;
        if let Err(e) = dev.dma_map(&rings) {
            let _ = dev.dma_unmap(pool.region());
            return Err(e.into());
        }
        Ok(rings)
    }

    /// The software queues over the rings, RX rings filled with buffers from `pool`.
    pub(super) fn queues<B: Bar + Clone>(
        &self,
        bar: &B,
        rings: &DmaRegion,
        pool: &Mempool,
        queues: usize,
    ) -> Result<QueuePairs<B>, Error> {
        let (rx_size, tx_size) = (self.rx_size, self.tx_size);
        let mut rx = Vec::with_capacity(queues);
        let mut tx = Vec::with_capacity(queues);
        for q in 0..queues {
            let off = q * (self.rx_bytes + self.tx_bytes);
            // SAFETY: off + rx_bytes + tx_bytes <= rings.len(); the pointers stay inside.
            let (rxp, txp) = unsafe {
                (
                    rings.as_ptr().add(off),
                    rings.as_ptr().add(off + self.rx_bytes),
                )
            };
            let rxq = RxQueue::new(
                bar.clone(),
                q as u32,
                NonNull::new(rxp.cast()).expect("ring pointer inside a mapping"),
                rings.iova() + off as u64,
                rx_size,
                pool,
            )
            .ok_or_else(|| {
                Error::Config(format!("mempool ran out filling RX ring {q} of {rx_size}"))
            })?;
            rx.push(rxq);
            tx.push(TxQueue::new(
                bar.clone(),
                q as u32,
                NonNull::new(txp.cast()).expect("ring pointer inside a mapping"),
                rings.iova() + (off + self.rx_bytes) as u64,
                tx_size,
                vec![pool.clone()],
            ));
        }
        Ok((rx, tx))
    }
}

// ---- Step 12: program and start the queues --------------------------------------------------

impl<D: Device> IxgbeVf<D> {
    /// Step 12 of facts §3.8: programs and enables every queue (§2.2–2.4, §5.3 step 8), then
    /// hands the rings to the device.
    pub(super) fn start_queues(&mut self) -> Result<(), Error> {
        self.program_psrtype();
        self.program_rx_rings();
        self.program_tx_rings();
        self.wait_queues_enabled()?;
        self.hand_over_rings();
        Ok(())
    }

    /// VFPSRTYPE: RQPL = log2 of the RX queues used (facts §2.1).
    fn program_psrtype(&self) {
        let nq = self.rx.len() as u32;
        let rqpl = if nq > 1 {
            nq.next_power_of_two().trailing_zeros()
        } else {
            0
        };
        self.bar.write32(VFPSRTYPE, rqpl << PSRTYPE_RQPL_SHIFT);
    }

    /// RX ring registers and SRRCTL (facts §2.2, §2.4), then RXDCTL.ENABLE.
    fn program_rx_rings(&self) {
        let bar = &self.bar;
        let data_room = self.pool.data_room() as u32;
        for rxq in &self.rx {
            let q = rxq.q;
            bar.write32(vfrxdctl(q), 0);
            bar.write32(vfrdbal(q), rxq.ring_iova as u32);
            bar.write32(vfrdbah(q), (rxq.ring_iova >> 32) as u32);
            bar.write32(vfrdlen(q), rxq.size * DESC_SIZE as u32);
            bar.write32(
                vfsrrctl(q),
                SRRCTL_DROP_EN
                    | SRRCTL_DESCTYPE_ADV_ONEBUF
                    | SRRCTL_BSIZEHDR_256
                    | ((data_room >> SRRCTL_BSIZEPKT_SHIFT) & SRRCTL_BSIZEPKT_MASK),
            );
            bar.write32(vfdca_rxctrl(q), DCA_RXCTRL_DEFAULT);
            bar.write32(vfrdh(q), 0);
            bar.write32(vfrdt(q), 0);
            bar.write32(vfrxdctl(q), XDCTL_ENABLE);
        }
    }

    /// TX ring registers (facts §2.3), then TXDCTL.ENABLE with ixgbevf's thresholds (§6.4).
    fn program_tx_rings(&self) {
        let bar = &self.bar;
        for txq in &self.tx {
            let q = txq.q;
            bar.write32(vftxdctl(q), 0);
            bar.write32(vftdbal(q), txq.ring_iova as u32);
            bar.write32(vftdbah(q), (txq.ring_iova >> 32) as u32);
            bar.write32(vftdlen(q), txq.size * DESC_SIZE as u32);
            bar.write32(vfdca_txctrl(q), DCA_TXCTRL_DEFAULT);
            bar.write32(vftdwbal(q), 0);
            bar.write32(vftdwbah(q), 0);
            bar.write32(vftdh(q), 0);
            bar.write32(vftdt(q), 0);
            // ixgbevf thresholds (facts §6.4): PTHRESH 32, HTHRESH 1, WTHRESH 1.
            bar.write32(
                vftxdctl(q),
                XDCTL_ENABLE
                    | (32 << TXDCTL_PTHRESH_SHIFT)
                    | (1 << TXDCTL_HTHRESH_SHIFT)
                    | (1 << TXDCTL_WTHRESH_SHIFT),
            );
        }
    }

    /// Waits for every queue's ENABLE to read back (facts §3.8 step 12).
    fn wait_queues_enabled(&self) -> Result<(), Error> {
        for q in 0..self.rx.len() as u32 {
            self.wait_enabled(vfrxdctl(q), "enabling an RX queue")?;
            self.wait_enabled(vftxdctl(q), "enabling a TX queue")?;
        }
        Ok(())
    }

    /// Hands the rings to the device with the tail writes (facts §3.8 step 12, §6.4).
    fn hand_over_rings(&self) {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        for rxq in &self.rx {
            self.bar.write32(vfrdt(rxq.q), rxq.initial_tail());
        }
        for txq in &self.tx {
            // Slot 0 holds the default context descriptor (TxQueue::start).
            self.bar.write32(vftdt(txq.q), 1);
        }
    }

    fn wait_enabled(&self, reg: u32, during: &'static str) -> Result<(), Error> {
        let t = &self.cfg.timeouts;
        let mut deadline = PollDeadline::new(t.queue_enable, t.poll_interval);
        loop {
            let v = self.bar.read32(reg);
            if v == ALL_ONES {
                return Err(gone_err(&self.location, during));
            }
            if v & XDCTL_ENABLE != 0 {
                return Ok(());
            }
            if deadline.expired() {
                log::warn!(
                    "{}: register {reg:#x} did not report ENABLE while {during}",
                    self.location
                );
                return Ok(());
            }
            std::thread::sleep(self.cfg.timeouts.poll_interval);
        }
    }

    /// Disables every queue in hardware and waits (bounded) for RX to report it.
    pub(super) fn stop_queues(&self) {
        for q in 0..self.rx.len() as u32 {
            self.bar.write32(vftxdctl(q), XDCTL_SWFLSH);
            self.bar.write32(vfrxdctl(q), 0);
        }
        let start = Instant::now();
        for q in 0..self.rx.len() as u32 {
            loop {
                let v = self.bar.read32(vfrxdctl(q));
                if v == ALL_ONES || v & XDCTL_ENABLE == 0 {
                    break;
                }
                if start.elapsed() >= self.cfg.timeouts.queue_enable {
                    log::warn!("{}: RX queue {q} did not stop", self.location);
                    break;
                }
                std::thread::sleep(self.cfg.timeouts.poll_interval);
            }
        }
    }
}
