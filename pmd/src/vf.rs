//! The ixgbevf device: bring-up (facts §3.8), PF reset recovery, link, statistics, and the burst
//! entry points that dispatch to the queues.

use crate::batch::PacketBatch;
use crate::mailbox::Mailbox;
use crate::mempool::{Mempool, DEFAULT_HEADROOM};
use crate::regs::*;
use crate::rx::{RxJudge, RxJudged, RxQueue, RxStats};
use crate::stats::{HwAccum, HwRaw, Stats};
use crate::tx::{TxQueue, TxStats};
use crate::Error;

mod bringup;
mod maintain;
use floodgate_vfio::{Bar, Device, DmaRegion, HugePages};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Which silicon the VF belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicModel {
    /// Intel 82599 VF, 8086:10ED.
    X82599,
    /// Intel X540 VF, 8086:1515.
    X540,
}

/// Negotiated PF↔VF mailbox API (facts §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MailboxApi {
    /// 1.0: SET_LPE, SET_MACVLAN.
    V1_0,
    /// 1.1: GET_QUEUES.
    V1_1,
    /// 1.2: UPDATE_XCAST_MODE (no promiscuous).
    V1_2,
    /// 1.3: promiscuous XCAST mode.
    V1_3,
}

impl MailboxApi {
    fn wire(self) -> u32 {
        match self {
            MailboxApi::V1_0 => API_10,
            MailboxApi::V1_1 => API_11,
            MailboxApi::V1_2 => API_12,
            MailboxApi::V1_3 => API_13,
        }
    }
}

/// Multicast / promiscuous reception mode requested from the PF (facts §3.3 UPDATE_XCAST_MODE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum XcastMode {
    /// Only the VF's own unicast and broadcast.
    None,
    /// Plus the multicast addresses the VF registered.
    Multi,
    /// All multicast.
    AllMulti,
    /// Everything the PF's switch sees (trusted VF, X540 only, PF in promiscuous mode).
    Promisc,
}

impl XcastMode {
    fn from_wire(v: u32) -> Option<XcastMode> {
        Some(match v {
            0 => XcastMode::None,
            1 => XcastMode::Multi,
            2 => XcastMode::AllMulti,
            3 => XcastMode::Promisc,
            _ => return None,
        })
    }
}

/// Timeouts and delays of bring-up and the mailbox. Tests use short ones.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// How long to wait for RSTD/RSTI after VFCTRL.RST (facts §3.8 step 4; Linux waits
    /// 200 × 5 µs, DPDK sleeps 50 ms first). Default 100 ms.
    pub reset: Duration,
    /// Pause after sending RESET before reading the reply (facts §3.7: 10 ms). Default 10 ms.
    pub reset_reply_delay: Duration,
    /// How long to wait for each mailbox step (facts §3.7: 2000 × 500 µs). Default 1 s.
    pub mailbox: Duration,
    /// Sleep between polls. Default 100 µs.
    pub poll_interval: Duration,
    /// How long to wait for RXDCTL/TXDCTL.ENABLE to read back (facts §3.8 step 12). Default
    /// 20 ms.
    pub queue_enable: Duration,
    /// 82599 link debounce: VFLINKS is re-read 5 times this far apart (facts §7). Default
    /// 100 µs.
    pub link_debounce: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            reset: Duration::from_millis(100),
            reset_reply_delay: Duration::from_millis(10),
            mailbox: Duration::from_secs(1),
            poll_interval: Duration::from_micros(100),
            queue_enable: Duration::from_millis(20),
            link_debounce: Duration::from_micros(100),
        }
    }
}

impl Timeouts {
    /// Short timeouts for tests against the in-process model, which answers synchronously.
    pub fn fast() -> Self {
        Timeouts {
            reset: Duration::from_millis(5),
            reset_reply_delay: Duration::ZERO,
            mailbox: Duration::from_millis(5),
            poll_interval: Duration::from_micros(20),
            queue_enable: Duration::from_millis(5),
            link_debounce: Duration::from_micros(1),
        }
    }
}

/// Driver configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// RX descriptors per queue: a power of two from 64 to 4096. Default 512.
    pub rx_ring_size: usize,
    /// TX descriptors per queue: a power of two from 64 to 4096. Default 1024.
    pub tx_ring_size: usize,
    /// Use at most this many queue pairs; `None` = all the PF grants.
    pub max_queues: Option<usize>,
    /// Buffer pool to use (shared with other devices or the application). `None` = create one
    /// with `pool_buffers` buffers and `headroom`.
    pub mempool: Option<Mempool>,
    /// Buffers of the pool created when `mempool` is `None`; `None` = enough for all rings plus
    /// 4096 in flight in the application.
    pub pool_buffers: Option<u32>,
    /// Headroom of the created pool, 0..=256 bytes. Default 128.
    pub headroom: usize,
    /// Largest frame payload (MTU). The max frame (MTU + 18) must fit one buffer. Default 1500.
    pub mtu: u32,
    /// MAC to request with SET_MAC_ADDR when the PF assigned none; `None` = a random locally
    /// administered address.
    pub mac: Option<[u8; 6]>,
    /// Multicast/promiscuous mode to request at bring-up (and after every PF reset); `None` =
    /// leave the PF's default.
    pub xcast: Option<XcastMode>,
    /// Ask for MSI-X so that `IxgbeVf::wait_rx` can sleep; falls back to polling if the
    /// backend has no interrupts. Default false.
    pub interrupts: bool,
    /// Huge page policy for rings and the created pool.
    pub huge_pages: HugePages,
    /// Timeouts.
    pub timeouts: Timeouts,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rx_ring_size: 512,
            tx_ring_size: 1024,
            max_queues: None,
            mempool: None,
            pool_buffers: None,
            headroom: DEFAULT_HEADROOM,
            mtu: 1500,
            mac: None,
            xcast: None,
            interrupts: false,
            huge_pages: HugePages::Auto,
            timeouts: Timeouts::default(),
        }
    }
}

/// What bring-up learned from the PF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfInfo {
    /// Silicon.
    pub model: NicModel,
    /// The VF's MAC address.
    pub mac: [u8; 6],
    /// Whether the PF assigned the MAC (RESET reply with ACK) or the driver chose it.
    pub mac_from_pf: bool,
    /// Negotiated mailbox API.
    pub api: MailboxApi,
    /// Queue pairs granted by the PF (GET_QUEUES; 1 with API 1.0).
    pub queues_granted: usize,
    /// Queue pairs in use.
    pub queues: usize,
    /// Default queue reported by the PF.
    pub default_queue: u32,
    /// Traffic classes / port VLAN indication (GET_QUEUES word 3).
    pub traffic_classes: u32,
    /// Multicast filter type from the RESET reply.
    pub mc_filter_type: u32,
    /// Whether the PF accepted SET_LPE (on 82599 with a jumbo PF MTU, a refused SET_LPE leaves
    /// receive disabled; facts §3.8 step 11).
    pub lpe_accepted: bool,
    /// Multicast/promiscuous mode the PF applied, if one was requested.
    pub xcast: Option<XcastMode>,
}

/// Link state from VFLINKS (facts §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkStatus {
    /// Link up.
    pub up: bool,
    /// Speed in Mb/s (0 when down or unknown).
    pub speed_mbps: u32,
}

impl LinkStatus {
    fn from_reg(v: u32) -> LinkStatus {
        if v & VFLINKS_UP == 0 {
            return LinkStatus::default();
        }
        let speed_mbps = match v & VFLINKS_SPEED_MASK {
            VFLINKS_SPEED_10G => 10_000,
            VFLINKS_SPEED_1G => 1_000,
            VFLINKS_SPEED_100M => 100,
            _ => 0,
        };
        LinkStatus {
            up: true,
            speed_mbps,
        }
    }
}

/// What [`IxgbeVf::maintain`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Maintenance {
    /// The PF reset (or revoked clear-to-send) and the VF and its queues were re-initialised.
    pub reinitialised: bool,
    /// The link changed to this state.
    pub link_changed: Option<LinkStatus>,
}

/// An 82599/X540 virtual function driven from user space.
///
/// Generic over the device backend `D` (kernel VFIO, vfio-user, or the NIC model); everything is
/// monomorphised, so the burst functions compile down to plain loads and stores plus one
/// doorbell write.
///
/// ```
/// use floodgate_pmd::{Config, IxgbeVf, PacketBatch, Timeouts};
/// use floodgate_sim::{Nic, NicConfig};
///
/// let nic = Nic::new(NicConfig::default());
/// let mut vf = IxgbeVf::open(nic.vf(0), Config { timeouts: Timeouts::fast(), ..Default::default() })?;
/// let mut batch = PacketBatch::new(32);
/// let n = vf.rx_burst(0, &mut batch); // nothing arrived yet
/// assert_eq!(n, 0);
/// # Ok::<(), floodgate_pmd::Error>(())
/// ```
pub struct IxgbeVf<D: Device> {
    rx: Vec<RxQueue<D::Bar>>,
    tx: Vec<TxQueue<D::Bar>>,
    bar: D::Bar,
    dev: D,
    location: String,
    cfg: Config,
    info: VfInfo,
    mbx: Mailbox,
    pool: Mempool,
    extra_pools: Vec<Mempool>,
    rings: DmaRegion,
    link: LinkStatus,
    hw: HwAccum,
    pf_resets: u64,
    link_changes: u64,
    reset_pending: bool,
    gone: bool,
    msix: Vec<OwnedFd>,
    /// Driver counters of queues that no longer exist (kept so totals never go backwards).
    rx_retired: RxStats,
    tx_retired: TxStats,
}

impl<D: Device> IxgbeVf<D> {
    /// Brings up the VF (facts §3.8): reset, mailbox handshake, API negotiation, queues, MAC,
    /// max frame size, optional multicast/promiscuous mode, rings, link.
    pub fn open(dev: D, cfg: Config) -> Result<Self, Error> {
        let id = dev.info();
        let model = bringup::identify(&id)?;
        let (rx_size, tx_size) = bringup::check_config(&cfg)?;
        let location = id.location;
        let bar = dev.bar0();
        let mut mbx = Mailbox::new(
            location.clone(),
            cfg.timeouts.mailbox,
            cfg.timeouts.poll_interval,
        );
        // Steps 1–11: stop, reset, handshake.
        let info = bringup::reset_and_negotiate(&bar, &mut mbx, &location, &cfg, model, None)?;
        let queues = info.queues;
        // Buffers and descriptor rings (facts §6.4).
        let pool = bringup::buffer_pool(&cfg, queues, rx_size, tx_size)?;
        let layout = bringup::RingLayout::new(rx_size, tx_size);
        let rings = layout.map(&dev, &pool, &cfg, queues)?;
        let (rx, tx) = layout.queues(&bar, &rings, &pool, queues)?;
        let mut vf = IxgbeVf {
            rx,
            tx,
            bar,
            dev,
            location,
            cfg,
            info,
            mbx,
            pool,
            extra_pools: Vec::new(),
            rings,
            link: LinkStatus::default(),
            hw: HwAccum::default(),
            pf_resets: 0,
            link_changes: 0,
            reset_pending: false,
            gone: false,
            msix: Vec::new(),
            rx_retired: RxStats::default(),
            tx_retired: TxStats::default(),
        };
        vf.start_queues()?; // step 12
        vf.link = vf.read_link()?; // step 13
        vf.rebase_hw_counters();
        vf.enable_interrupts();
        log::info!(
            "{}: {:?} VF up, MAC {}, mailbox API {:?}, {} queue pair(s), link {}",
            vf.location,
            vf.info.model,
            fmt_mac(vf.info.mac),
            vf.info.api,
            vf.info.queues,
            if vf.link.up { "up" } else { "down" }
        );
        Ok(vf)
    }

    /// Takes the hardware counters' current values as the zero point (facts §2.5: the VF
    /// cannot clear them).
    fn rebase_hw_counters(&mut self) {
        if let Some(raw) = HwRaw::read(&self.bar) {
            self.hw.rebase(raw);
        }
    }

    /// MSI-X vectors for [`IxgbeVf::wait_rx`] when configured (facts §2.1); without them
    /// `wait_rx` polls.
    fn enable_interrupts(&mut self) {
        if self.cfg.interrupts {
            match self.dev.enable_msix(3) {
                Ok(fds) => self.msix = fds,
                Err(e) => log::info!(
                    "{}: no MSI-X ({}); wait_rx falls back to polling",
                    self.location,
                    floodgate_vfio::ErrorChain(&e)
                ),
            }
        }
    }

    /// Receives up to `batch.free_slots()` packets from queue `q`, appending them to `batch`.
    /// Returns how many were added (0 also for a queue that does not exist).
    ///
    /// The packets borrow nothing from the VF: keep them, move them to other threads, transmit
    /// them, or drop them (their buffers go back to the pool). Descriptors the device marks bad
    /// (error bits, impossible lengths, frames spanning buffers) are counted in
    /// [`RxStats`] and recycled, never delivered. The ring is re-armed with one tail write.
    #[inline]
    pub fn rx_burst(&mut self, q: usize, batch: &mut PacketBatch) -> usize {
        match self.rx.get_mut(q) {
            Some(rxq) => rxq.burst(batch),
            None => 0,
        }
    }

    /// Receives from queue `q` as [`IxgbeVf::rx_burst`] does, but shows the good frames to
    /// `judge` first, in place and in ring order, in chunks of up to [`RX_CHUNK`](crate::RX_CHUNK)
    /// (bad descriptors are counted and recycled as in `rx_burst` and never shown). A frame the
    /// judge drops is re-armed in its own descriptor with the buffer it arrived in: no
    /// [`Packet`](crate::Packet), no buffer cache or pool traffic. A frame it keeps is appended
    /// to `batch` with a fresh buffer armed in its place, exactly as `rx_burst` does.
    ///
    /// At most `batch.capacity()` descriptors are taken per call; a chunk is never larger than
    /// the batch's free slots or the buffers at hand, so a batch with no free slot (or a pool
    /// with no free buffer, counted in [`RxStats::no_buffers`]) receives nothing. The ring is
    /// re-armed with one tail write. [`RxStats::packets`] counts kept and dropped frames,
    /// [`RxStats::judge_dropped`] the dropped ones. A queue that does not exist receives
    /// nothing.
    #[inline]
    pub fn rx_burst_judged<J: RxJudge + ?Sized>(
        &mut self,
        q: usize,
        batch: &mut PacketBatch,
        judge: &mut J,
    ) -> RxJudged {
        match self.rx.get_mut(q) {
            Some(rxq) => rxq.burst_judged(batch, judge),
            None => RxJudged::default(),
        }
    }

    /// Transmits packets from the front of `batch` on queue `q`, without copying: each packet's
    /// buffer is handed to the NIC and returns to its pool when the NIC reports it sent.
    /// Packets that do not fit in the ring stay in `batch` (in order). Returns how many packets
    /// were taken from the batch (including any dropped as invalid, see
    /// [`TxStats::rejected`]).
    ///
    /// Packets may come from this VF's pool, from received batches, or from any pool added with
    /// [`IxgbeVf::add_tx_pool`].
    #[inline]
    pub fn tx_burst(&mut self, q: usize, batch: &mut PacketBatch) -> usize {
        match (self.tx.get_mut(q), self.rx.get_mut(q)) {
            // Completed buffers of the VF's pool go straight into RX queue q's cache.
            (Some(txq), Some(rxq)) => txq.burst(batch, &mut rxq.sink()),
            _ => 0,
        }
    }

    /// Drops every packet of `batch`, returning buffers of this VF's pool straight to RX queue
    /// `q`'s buffer cache (no atomic operations; the buffers are reused first, while still in
    /// the CPU cache). This is the fastest way to drop received packets on the thread that
    /// polls `q`; [`PacketBatch::clear`] does the same through the pool on any thread. Packets
    /// of other pools go back to their pools.
    #[inline]
    pub fn recycle(&mut self, q: usize, batch: &mut PacketBatch) {
        match self.rx.get_mut(q) {
            Some(rxq) => rxq.recycle(batch),
            None => batch.clear(),
        }
    }

    /// Reclaims completed transmit buffers of queue `q` now (`tx_burst` does this itself);
    /// returns how many packets completed.
    pub fn tx_reclaim(&mut self, q: usize) -> usize {
        match (self.tx.get_mut(q), self.rx.get_mut(q)) {
            (Some(txq), Some(rxq)) => txq.reclaim(&mut rxq.sink()),
            _ => 0,
        }
    }

    /// Lets this VF transmit buffers of another pool (maps its DMA region into the device).
    pub fn add_tx_pool(&mut self, pool: &Mempool) -> Result<(), Error> {
        if pool.same_pool(&self.pool) || self.extra_pools.iter().any(|p| p.same_pool(pool)) {
            return Ok(());
        }
        self.dev.dma_map(pool.region())?;
        self.extra_pools.push(pool.clone());
        for txq in &mut self.tx {
            txq.add_pool(pool.clone());
        }
        Ok(())
    }

    /// Waits until queue `q` has a packet or `timeout` passes; returns whether one is ready.
    ///
    /// With MSI-X (`Config::interrupts` and a backend that supports it) the thread sleeps on
    /// the queue's interrupt; otherwise it polls the next descriptor (memory only, no register
    /// reads) with short sleeps.
    pub fn wait_rx(&mut self, q: usize, timeout: Duration) -> Result<bool, Error> {
        let Some(rxq) = self.rx.get(q) else {
            return Err(Error::NoSuchQueue {
                queue: q,
                count: self.rx.len(),
            });
        };
        if rxq.ready() {
            return Ok(true);
        }
        if self.msix.len() >= 2 {
            // Queue q -> vector q % 2; the third vector is the mailbox (facts §2.1, §9).
            let vec = (q % 2) as u32;
            let reg = vtivar(q as u32 / 2);
            let shift = if q & 1 == 0 { 0 } else { 16 };
            let old = self.bar.read32(reg);
            self.bar.write32(
                reg,
                (old & !(0xFF << shift)) | ((vec | VTIVAR_VALID) << shift),
            );
            self.bar.write32(VTEIMS, 1 << vec);
            let fd = self.msix[vec as usize].as_raw_fd();
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: pfd is a valid pollfd for an eventfd we own, count 1.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc > 0 {
                let mut buf = [0u8; 8];
                // SAFETY: reading 8 bytes from an eventfd into an 8-byte buffer.
                let _ = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), 8) };
            }
            self.bar.write32(VTEIMC, 1 << vec);
            return Ok(self.rx[q].ready());
        }
        let start = Instant::now();
        loop {
            if self.rx[q].ready() {
                return Ok(true);
            }
            if start.elapsed() >= timeout {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_micros(50).min(timeout));
        }
    }

    /// Requests a multicast/promiscuous mode from the PF now. Fails with a message that says
    /// why when the PF refuses or downgrades it (untrusted VF, 82599 promiscuous, old API).
    pub fn set_xcast_mode(&mut self, mode: XcastMode) -> Result<XcastMode, Error> {
        let a = bringup::xcast(
            &self.bar,
            &mut self.mbx,
            &self.location,
            self.info.api,
            self.info.model,
            mode,
        )?;
        self.info.xcast = Some(a);
        self.cfg.xcast = Some(mode);
        Ok(a)
    }

    /// Number of queue pairs in use.
    pub fn num_queues(&self) -> usize {
        self.rx.len()
    }

    /// What bring-up learned (MAC, API, queues, ...).
    pub fn info(&self) -> &VfInfo {
        &self.info
    }

    /// The VF's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.info.mac
    }

    /// Link state as of the last [`IxgbeVf::maintain`] (or bring-up).
    pub fn link(&self) -> LinkStatus {
        self.link
    }

    /// The receive buffer pool (allocate transmit packets from it).
    pub fn mempool(&self) -> &Mempool {
        &self.pool
    }

    /// The device backend.
    pub fn device(&self) -> &D {
        &self.dev
    }

    /// Buffers of this VF's own pool that the driver holds: one armed in every RX descriptor,
    /// those in the RX queues' buffer caches, and those posted on TX rings and not reclaimed
    /// yet. The rest are free in the pool or held by the application's packets, so with no
    /// packet outstanding `mempool().available() + buffers_held()` is the pool's capacity; a
    /// smaller sum is a buffer lost.
    pub fn buffers_held(&self) -> u64 {
        let rx: u64 = self.rx.iter().map(|q| q.buffers_held()).sum();
        let tx: u64 = self.tx.iter().map(|q| q.own_buffers_posted()).sum();
        rx + tx
    }

    /// Driver counters of queue `q`.
    pub fn queue_stats(&self, q: usize) -> Option<(RxStats, TxStats)> {
        Some((self.rx.get(q)?.stats, self.tx.get(q)?.stats))
    }

    /// All counters. Reads the hardware counters (a few register reads) unless the device is
    /// gone.
    pub fn stats(&mut self) -> Stats {
        if !self.gone {
            if let Some(raw) = HwRaw::read(&self.bar) {
                self.hw.update(raw);
            }
        }
        let mut rx = self.rx_retired;
        let mut tx = self.tx_retired;
        for r in &self.rx {
            rx.add(&r.stats);
        }
        for t in &self.tx {
            tx.add(&t.stats);
        }
        Stats {
            rx,
            tx,
            hw: self.hw.total,
            pf_resets: self.pf_resets,
            link_changes: self.link_changes,
        }
    }
}

impl<D: Device> Drop for IxgbeVf<D> {
    fn drop(&mut self) {
        if !self.gone && self.bar.read32(VFSTATUS) != ALL_ONES {
            self.stop_queues();
            self.bar.write32(VTEIMC, VTEIMC_ALL);
        }
        // Queues give their buffers back when dropped (hardware is stopped now).
        self.rx.clear();
        self.tx.clear();
        for p in &self.extra_pools {
            let _ = self.dev.dma_unmap(p.region());
        }
        let _ = self.dev.dma_unmap(&self.rings);
        let _ = self.dev.dma_unmap(self.pool.region());
    }
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn fmt_mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::tests::ScriptPf;
    use floodgate_vfio::{DeviceInfo, DmaRegion};
    use std::sync::Arc;

    /// A minimal PF that accepts everything a bring-up sends.
    fn happy_pf(m: &[u32; 16]) -> Option<Vec<u32>> {
        Some(match m[0] & MSG_TYPE_MASK {
            MSG_RESET => vec![MSG_RESET | MSG_ACK, 0x0300_0002, 0x0504, 0],
            MSG_GET_QUEUES => vec![MSG_GET_QUEUES | MSG_ACK | MSG_CTS, 2, 2, 1, 0],
            t => vec![t | MSG_ACK | MSG_CTS],
        })
    }

    struct ScriptDev(Arc<ScriptPf>);
    impl Device for ScriptDev {
        type Bar = Arc<ScriptPf>;
        fn info(&self) -> DeviceInfo {
            DeviceInfo {
                vendor_id: 0x8086,
                device_id: 0x10ED,
                location: "script:vf0".into(),
            }
        }
        fn bar0(&self) -> Arc<ScriptPf> {
            self.0.clone()
        }
        fn dma_map(&self, _: &DmaRegion) -> Result<(), floodgate_vfio::Error> {
            Ok(())
        }
        fn dma_unmap(&self, _: &DmaRegion) -> Result<(), floodgate_vfio::Error> {
            Ok(())
        }
    }

    fn open() -> (Arc<ScriptPf>, IxgbeVf<ScriptDev>) {
        let pf = Arc::new(ScriptPf::new(happy_pf));
        let vf = IxgbeVf::open(
            ScriptDev(pf.clone()),
            Config {
                rx_ring_size: 64,
                tx_ring_size: 64,
                pool_buffers: Some(512),
                huge_pages: HugePages::Never,
                timeouts: Timeouts::fast(),
                ..Default::default()
            },
        )
        .unwrap();
        (pf, vf)
    }

    #[test]
    fn bring_up_sequence_and_mac_from_the_reset_reply() {
        let (pf, vf) = open();
        assert_eq!(vf.mac(), [0x02, 0x00, 0x00, 0x03, 0x04, 0x05]);
        assert_eq!(vf.num_queues(), 2);
        let types: Vec<u32> = pf.log.lock().unwrap().iter().map(|m| m[0]).collect();
        // facts §3.8: RESET, API 1.3 (accepted at once), GET_QUEUES, SET_LPE (MAC assigned).
        assert_eq!(
            types,
            vec![MSG_RESET, MSG_API_NEGOTIATE, MSG_GET_QUEUES, MSG_SET_LPE]
        );
        let log = pf.log.lock().unwrap();
        assert_eq!(log[1][1], API_13);
        assert_eq!(log[3][1], 1518, "SET_LPE with MTU + 18");
    }

    #[test]
    fn control_message_without_cts_reinitialises() {
        let (pf, mut vf) = open();
        // A ping that keeps CTS is harmless.
        pf.pf_message(&[MSG_PF_CONTROL | MSG_CTS]);
        assert!(!vf.maintain().unwrap().reinitialised);
        // The PF revoked clear-to-send: the VF must reset and renegotiate.
        pf.pf_message(&[MSG_PF_CONTROL]);
        let m = vf.maintain().unwrap();
        assert!(m.reinitialised);
        assert_eq!(vf.stats().pf_resets, 1);
        let resets = pf
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m[0] == MSG_RESET)
            .count();
        assert_eq!(resets, 2);
    }
}
