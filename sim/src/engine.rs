//! Running the model: the line-rate [`Feeder`] and the threaded [`Engine`] that polls doorbells
//! from its own thread, like silicon.

use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use crate::sink::{FrameSink, FrameSource};

use crate::iommu::DmaPort;
use crate::regs::*;
use crate::rx::{packet_type, RxRing};
use crate::state::NicInner;
use crate::switch::Ingress;
use crate::vfstate::{VfCounter, VfShared};

/// Writes template frames into every free descriptor of one RX ring: the benchmark path, with
/// no switch, no locks and no per-frame allocation. One template, or a mix of templates used in
/// turn ([`Nic::feeder_mix`](crate::Nic::feeder_mix)).
pub struct Feeder {
    nic: Arc<NicInner>,
    vf: Arc<VfShared>,
    queue: usize,
    templates: Vec<FeedFrame>,
    next: usize,
    port: DmaPort,
    warned: bool,
}

/// One template with its write-back, computed once.
struct FeedFrame {
    bytes: Vec<u8>,
    qword0: u64,
    qword1: u64,
}

impl FeedFrame {
    fn new(template: &[u8], model: crate::NicModel) -> FeedFrame {
        let ptype = packet_type(template);
        let len = template.len().min(0xFFFF) as u64;
        // The checksum status is a property of the template: computed once here, not per frame
        // (facts §6.1).
        let csum = crate::rxcsum::status_bits(template, model);
        let status = (RXD_STAT_DD | RXD_STAT_EOP | csum) as u64;
        FeedFrame {
            bytes: template.to_vec(),
            qword0: ptype as u64,
            qword1: status | len << 32,
        }
    }
}

/// Writes `t` into the buffer of descriptor `idx` of the ring at `ring_ptr` and writes back its
/// DD/EOP/length; `false` when the buffer's address is not mapped (the IOMMU records it).
#[inline(always)]
fn write_desc(port: &mut DmaPort, ring_ptr: *mut u8, idx: u32, t: &FeedFrame) -> bool {
    // SAFETY: the caller keeps idx < ring count, and ring_ptr covers count*16 bytes, 16-byte
    // aligned.
    let d = unsafe { ring_ptr.add(idx as usize * 16) };
    // SAFETY: d is valid and 8-aligned for the descriptor's first qword.
    let addr = u64::from_le(unsafe { std::ptr::read_volatile(d as *const u64) });
    if !port.write_bytes(addr, &t.bytes, "RX buffer (feeder)") {
        return false;
    }
    // SAFETY: d..d+16 is the descriptor; aligned u64 stores.
    unsafe {
        std::ptr::write_volatile(d as *mut u64, t.qword0.to_le());
        fence(Ordering::Release);
        std::ptr::write_volatile(d.add(8) as *mut u64, t.qword1.to_le());
    }
    true
}

impl std::fmt::Debug for Feeder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feeder")
            .field("vf", &self.vf.idx)
            .field("queue", &self.queue)
            .field("templates", &self.templates.len())
            .finish()
    }
}

impl Feeder {
    pub(crate) fn new<T: AsRef<[u8]>>(
        nic: Arc<NicInner>,
        vf: usize,
        queue: usize,
        templates: &[T],
    ) -> Feeder {
        let vfs = nic.vfs.get(vf).cloned();
        let vfs = vfs.unwrap_or_else(|| nic.vfs[0].clone());
        let model = nic.cfg.model;
        Feeder {
            port: DmaPort::new(vfs.iommu.clone()),
            queue: if vf < nic.vfs.len() && queue < MAX_QUEUES {
                queue
            } else {
                usize::MAX
            },
            vf: vfs,
            templates: templates
                .iter()
                .map(|t| FeedFrame::new(t.as_ref(), model))
                .collect(),
            next: 0,
            warned: false,
            nic,
        }
    }

    /// Fills every free descriptor (head up to tail) with the templates in turn, writes back
    /// DD/EOP/len and advances RDH. Returns the number of frames written.
    pub fn fill(&mut self) -> usize {
        self.fill_max(usize::MAX)
    }

    /// Like [`Feeder::fill`] but writes at most `max` frames.
    pub fn fill_max(&mut self, max: usize) -> usize {
        let vf = &*self.vf;
        if self.queue == usize::MAX
            || self.templates.is_empty()
            || vf.removed.load(Ordering::Relaxed)
        {
            return 0;
        }
        let Some(ring) = RxRing::load(vf, self.queue) else {
            return 0;
        };
        if let Some(t) = self
            .templates
            .iter()
            .find(|t| t.bytes.len() > ring.bsize || t.bytes.len() < 14)
        {
            if !self.warned {
                self.warned = true;
                log::warn!(
                    "{}: feeder template of {} bytes does not fit a {}-byte buffer",
                    vf.name,
                    t.bytes.len(),
                    ring.bsize
                );
            }
            return 0;
        }
        let free = (ring.free() as usize).min(max);
        if free == 0 {
            return 0;
        }
        let ring_bytes = ring.count as u64 * DESC_SIZE;
        let ring_ptr = match self.port.contiguous(ring.base, ring_bytes) {
            Some(p) if p as usize & 15 == 0 => p,
            // A ring split over several mappings (or unaligned): the checked, slower path.
            _ => return self.fill_split(&ring, free),
        };
        let mut idx = ring.head;
        let mut n = 0;
        let bytes;
        let advance = |idx: &mut u32| {
            *idx += 1;
            if *idx == ring.count {
                *idx = 0;
            }
        };
        if let [t] = &self.templates[..] {
            // One template (the benchmark path): nothing to choose per frame.
            while n < free && write_desc(&mut self.port, ring_ptr, idx, t) {
                advance(&mut idx);
                n += 1;
            }
            bytes = n * t.bytes.len();
        } else {
            let mut next = self.next;
            let mut sum = 0;
            while n < free {
                let t = &self.templates[next];
                if !write_desc(&mut self.port, ring_ptr, idx, t) {
                    break;
                }
                sum += t.bytes.len();
                next += 1;
                if next == self.templates.len() {
                    next = 0;
                }
                advance(&mut idx);
                n += 1;
            }
            self.next = next;
            bytes = sum;
        }
        if n > 0 {
            vf.set_reg(rxq(self.queue, RDH), idx);
            vf.count(VfCounter::Gprc, n as u64);
            vf.count(VfCounter::Gorc, bytes as u64);
            vf.raise_queue(self.queue, false);
            self.nic.count_fed(n as u64);
        }
        n
    }

    /// The feeder for a ring that is not one contiguous, aligned host range: every access goes
    /// through the IOMMU port's checked accessors.
    #[cold]
    fn fill_split(&mut self, ring: &RxRing, free: usize) -> usize {
        let vf = &*self.vf;
        let mut n = 0;
        let mut bytes = 0;
        while n < free {
            let t = &self.templates[self.next];
            let d = ring.desc(n as u32);
            let Some(addr) = self.port.read_u64(d, "RX descriptor read (feeder)") else {
                break;
            };
            if !self.port.check(d + 8, 8, "RX write-back (feeder)")
                || !self.port.write_bytes(addr, &t.bytes, "RX buffer (feeder)")
            {
                break;
            }
            self.port
                .write_u32(d, t.qword0 as u32, "RX write-back (feeder)");
            self.port
                .write_u32(d + 4, (t.qword0 >> 32) as u32, "RX write-back (feeder)");
            self.port
                .write_u32(d + 12, (t.qword1 >> 32) as u32, "RX write-back (feeder)");
            fence(Ordering::Release);
            self.port
                .write_u32(d + 8, t.qword1 as u32, "RX write-back (feeder)");
            bytes += t.bytes.len();
            self.next = (self.next + 1) % self.templates.len();
            n += 1;
        }
        if n > 0 {
            vf.set_reg(rxq(self.queue, RDH), (ring.head + n as u32) % ring.count);
            vf.count(VfCounter::Gprc, n as u64);
            vf.count(VfCounter::Gorc, bytes as u64);
            vf.raise_queue(self.queue, false);
            self.nic.count_fed(n as u64);
        }
        n
    }
}

/// Feeder settings for the engine.
#[derive(Debug, Clone)]
pub struct FeederConfig {
    /// VF.
    pub vf: usize,
    /// VF-relative RX queue.
    pub queue: usize,
    /// Frame written into every free descriptor.
    pub template: Vec<u8>,
}

/// Threaded engine settings.
pub struct EngineConfig {
    /// Run a line-rate feeder into one ring.
    pub feeder: Option<FeederConfig>,
    /// Pull frames from this source and send them through the switch as wire ingress.
    pub source: Option<Box<dyn FrameSource>>,
    /// Frames per second from `source`; `None` = as fast as possible.
    pub source_rate_pps: Option<u64>,
    /// Fetch TX descriptors of every VF queue (doorbell polling).
    pub process_tx: bool,
    /// Deliver frames queued with [`crate::Nic::inject`].
    pub process_ingress: bool,
    /// Frames per queue per iteration.
    pub batch: usize,
    /// How far a paced source may fall behind its schedule (the thread was descheduled) and
    /// still catch up by sending back to back; anything beyond (at least four batches) is
    /// written off and counted in [`EngineStats::behind_schedule`]. Default 1 ms: a wire does
    /// not replay the time the simulator's thread lost as one long burst.
    pub max_catch_up: Duration,
    /// Sleep this long after an idle iteration. `None`: spin like silicon polls (yielding every
    /// 64 idle polls), and after about 100 000 idle polls in a row back off to 20 µs naps so an
    /// idle model does not burn a core; the first frame or doorbell ends the back-off.
    pub idle_sleep: Option<Duration>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            feeder: None,
            source: None,
            source_rate_pps: None,
            process_tx: true,
            process_ingress: true,
            batch: 64,
            max_catch_up: Duration::from_millis(1),
            idle_sleep: None,
        }
    }
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("feeder", &self.feeder)
            .field("source", &self.source.is_some())
            .field("source_rate_pps", &self.source_rate_pps)
            .field("process_tx", &self.process_tx)
            .finish_non_exhaustive()
    }
}

/// What the engine did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Loop iterations.
    pub iterations: u64,
    /// Frames written by the feeder.
    pub fed: u64,
    /// Frames taken from the source.
    pub generated: u64,
    /// Frames a paced source (`source_rate_pps`) did not send because the engine thread was
    /// descheduled for longer than its catch-up allowance (four batches or 1 ms of traffic).
    pub behind_schedule: u64,
    /// TX frames fetched.
    pub tx_frames: u64,
    /// Injected frames delivered.
    pub ingress: u64,
    /// The source ran dry.
    pub source_exhausted: bool,
}

/// A running engine thread. [`Engine::stop`] (or drop) stops and joins it.
#[derive(Debug)]
pub struct Engine {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<EngineStats>>,
    /// Longest pause of the source (ns) since the last [`Engine::take_source_gap`].
    gap_ns: Arc<AtomicU64>,
}

impl Engine {
    pub(crate) fn start(nic: Arc<NicInner>, cfg: EngineConfig) -> Engine {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let gap_ns = Arc::new(AtomicU64::new(0));
        let g2 = gap_ns.clone();
        let handle = std::thread::Builder::new()
            .name("floodgate-sim-engine".into())
            .spawn(move || run(nic, cfg, &s2, g2))
            .ok();
        if handle.is_none() {
            log::error!("floodgate-sim: could not spawn the engine thread");
        }
        Engine {
            stop,
            handle,
            gap_ns,
        }
    }

    /// The longest time the source went without sending (between two chunks of frames) since
    /// the last call, and starts a new measurement. A paced source sends a chunk about every
    /// 50 µs; a long gap means the engine thread was descheduled (a loaded machine), so the
    /// wire went quiet for that long, which no real flood does.
    pub fn take_source_gap(&self) -> Duration {
        Duration::from_nanos(self.gap_ns.swap(0, Ordering::AcqRel))
    }

    /// Stops the thread, joins it and returns its counters.
    pub fn stop(mut self) -> EngineStats {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> EngineStats {
        self.stop.store(true, Ordering::Release);
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(s)) => s,
            Some(Err(_)) => {
                log::error!("floodgate-sim: engine thread panicked");
                EngineStats::default()
            }
            None => EngineStats::default(),
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.handle.is_some() {
            self.stop_inner();
        }
    }
}

/// Idle polls in a row before the engine starts napping (see [`EngineConfig::idle_sleep`]).
const IDLE_BACKOFF: u32 = 100_000;

/// One pass of the engine's work, shared by the thread ([`Engine`]) and the lockstep driver
/// ([`InlineEngine`]).
struct Core {
    nic: Arc<NicInner>,
    feeder: Option<Feeder>,
    source: Option<Box<dyn FrameSource>>,
    rate: Option<u64>,
    max_catch_up: Duration,
    process_tx: bool,
    process_ingress: bool,
    buf: Vec<u8>,
    batch: usize,
    start: Instant,
    qpp: usize,
    st: EngineStats,
    /// When the source last sent, and where the longest gap since is published (threaded
    /// engine only).
    last_sent: Option<Instant>,
    gap_ns: Option<Arc<AtomicU64>>,
}

/// What one pass did.
struct Pass {
    /// Frames moved (fed, fetched from TX, delivered, generated).
    work: usize,
    /// A paced source has nothing due for this long.
    pace_wait: Option<Duration>,
}

impl Core {
    fn new(nic: Arc<NicInner>, mut cfg: EngineConfig) -> Core {
        let feeder = cfg.feeder.take().map(|f| {
            Feeder::new(
                nic.clone(),
                f.vf,
                f.queue,
                std::slice::from_ref(&f.template),
            )
        });
        let qpp = nic.cfg.queues_per_pool();
        Core {
            feeder,
            source: cfg.source.take(),
            rate: cfg.source_rate_pps,
            max_catch_up: cfg.max_catch_up,
            process_tx: cfg.process_tx,
            process_ingress: cfg.process_ingress,
            buf: vec![0u8; MAX_FRAME],
            batch: cfg.batch.max(1),
            start: Instant::now(),
            qpp,
            nic,
            st: EngineStats::default(),
            last_sent: None,
            gap_ns: None,
        }
    }

    /// How many source frames may go out now, or how long until a chunk is due.
    fn source_allowance(&mut self) -> (usize, Option<Duration>) {
        let batch = self.batch as u64;
        let Some(r) = self.rate else {
            return (self.batch, None);
        };
        if r == 0 {
            return (0, None);
        }
        let due = (self.start.elapsed().as_secs_f64() * r as f64) as u64;
        let mut owed = due.saturating_sub(self.st.generated + self.st.behind_schedule);
        // A wire does not replay the time this thread spent descheduled as one back-to-back
        // burst: debt beyond four batches or `max_catch_up` of traffic is written off (and
        // counted), so the offered load stays smooth.
        let cap = (batch * 4).max((self.max_catch_up.as_secs_f64() * r as f64) as u64);
        if owed > cap {
            self.st.behind_schedule += owed - cap;
            owed = cap;
        }
        // Frames go out in chunks of about 50 µs of traffic, so a paced source naps between
        // chunks instead of spinning for every frame.
        let chunk = (r / 20_000).clamp(1, batch);
        if owed >= chunk {
            (owed.min(batch) as usize, None)
        } else {
            let wait = (chunk - owed) as f64 / r as f64;
            (0, Some(Duration::from_secs_f64(wait.min(100e-6))))
        }
    }

    fn pass(&mut self) -> Pass {
        self.st.iterations += 1;
        let mut work = 0usize;
        let mut pace_wait = None;
        if let Some(f) = self.feeder.as_mut() {
            let n = f.fill();
            self.st.fed += n as u64;
            work += n;
        }
        if !(self.process_tx || self.process_ingress || self.source.is_some()) {
            return Pass { work, pace_wait };
        }
        let (allowed, wait) = if self.source.is_some() {
            self.source_allowance()
        } else {
            (0, None)
        };
        pace_wait = wait;
        let inner = &self.nic;
        let mut dp = inner.dp.lock().unwrap_or_else(|e| e.into_inner());
        if self.process_tx {
            for vf in 0..inner.vfs.len() {
                for q in 0..self.qpp {
                    let n = inner.run_tx(&mut dp, vf, q, self.batch);
                    self.st.tx_frames += n as u64;
                    work += n;
                }
            }
        }
        inner.drain_backlogs(&mut dp);
        if self.process_ingress {
            for _ in 0..self.batch {
                let f = inner
                    .ingress
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pop_front();
                let Some(f) = f else { break };
                inner.route(&mut dp, &f, Ingress::Wire);
                self.st.ingress += 1;
                work += 1;
            }
        }
        if allowed > 0 {
            if let Some(g) = &self.gap_ns {
                let now = Instant::now();
                if let Some(last) = self.last_sent {
                    let gap = now.duration_since(last).as_nanos() as u64;
                    g.fetch_max(gap, Ordering::AcqRel);
                }
                self.last_sent = Some(now);
            }
        }
        if let Some(src) = self.source.as_mut() {
            for _ in 0..allowed {
                let Some(len) = src.next_frame(&mut self.buf) else {
                    self.st.source_exhausted = true;
                    break;
                };
                inner.counters.wire_in.fetch_add(1, Ordering::Relaxed);
                inner.route(&mut dp, &self.buf[..len.min(MAX_FRAME)], Ingress::Wire);
                self.st.generated += 1;
                work += 1;
            }
            if self.st.source_exhausted {
                self.source = None;
            }
        }
        Pass { work, pace_wait }
    }
}

fn set_fine_timer_slack() {
    // Pacing naps are tens of microseconds; the default 50 µs timer slack would stretch them.
    // SAFETY: PR_SET_TIMERSLACK takes an integer argument and affects only the calling thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong, 0, 0, 0) };
}

fn run(
    nic: Arc<NicInner>,
    cfg: EngineConfig,
    stop: &AtomicBool,
    gap: Arc<AtomicU64>,
) -> EngineStats {
    let idle_sleep = cfg.idle_sleep;
    let mut core = Core::new(nic, cfg);
    core.gap_ns = Some(gap);
    if core.rate.is_some() {
        set_fine_timer_slack();
    }
    let mut idle: u32 = 0;
    while !stop.load(Ordering::Acquire) {
        let pass = core.pass();
        if pass.work == 0 {
            idle = idle.saturating_add(1);
            if let Some(w) = pass.pace_wait.filter(|w| *w >= Duration::from_micros(5)) {
                std::thread::sleep(w);
                continue;
            }
            match idle_sleep {
                Some(d) => std::thread::sleep(d),
                None if idle > IDLE_BACKOFF => std::thread::sleep(Duration::from_micros(20)),
                None if idle & 63 == 0 => std::thread::yield_now(),
                None => std::hint::spin_loop(),
            }
        } else {
            idle = 0;
        }
    }
    core.st
}

/// The engine's work driven from the caller's thread, one [`InlineEngine::pump`] at a time:
/// the model in lockstep with its driver.
///
/// On real hardware the NIC runs beside the CPU. The threaded [`Engine`] does the same, which
/// is faithful on an idle machine but not on a busy one: when the scheduler runs the engine
/// thread and not the driver's thread for longer than the RX ring's slack, the ring overflows
/// for reasons no real NIC would have. Pumping the model from the polling thread right before
/// each poll keeps the two in step: frames are only generated when the driver is running, a
/// paced source writes off (and counts, [`EngineStats::behind_schedule`]) the time the thread
/// was descheduled, and each pump generates at most `batch` frames, so a driver that polls at
/// least `batch` descriptors per pump can never fall behind.
///
/// ```
/// use floodgate_sim::{Nic, NicConfig, EngineConfig};
/// let nic = Nic::new(NicConfig::default());
/// let mut eng = nic.inline_engine(EngineConfig::default());
/// assert_eq!(eng.pump(), 0); // nothing to do: no source, no TX, no ingress
/// assert_eq!(eng.stats().iterations, 1);
/// ```
pub struct InlineEngine {
    core: Core,
}

impl std::fmt::Debug for InlineEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineEngine")
            .field("stats", &self.core.st)
            .finish_non_exhaustive()
    }
}

impl InlineEngine {
    pub(crate) fn new(nic: Arc<NicInner>, cfg: EngineConfig) -> InlineEngine {
        InlineEngine {
            core: Core::new(nic, cfg),
        }
    }

    /// One pass of the datapath: TX fetch, backlogs, injected frames, and up to `batch` frames
    /// of the source if they are due. Returns the frames moved.
    pub fn pump(&mut self) -> usize {
        self.core.pass().work
    }

    /// Stops the source (TX and ingress keep being processed by later pumps), as when the
    /// traffic on the wire ends.
    pub fn stop_source(&mut self) {
        self.core.source = None;
    }

    /// Counters so far.
    pub fn stats(&self) -> &EngineStats {
        &self.core.st
    }
}
