//! Running the model: the line-rate [`Feeder`] and the threaded [`Engine`] that polls doorbells
//! from its own thread, like silicon.

use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::iommu::DmaPort;
use crate::regs::*;
use crate::rx::{packet_type, RxRing};
use crate::vf::{VfCounter, VfShared};
use crate::{Nic, Origin};

/// A source of wire frames (SIM-NET's traffic generator and pcap reader implement it).
pub trait FrameSource: Send {
    /// Writes the next frame into the start of `buf` (9728 bytes, the largest frame) and returns
    /// its length, or `None` when the source is exhausted.
    fn next_frame(&mut self, buf: &mut [u8]) -> Option<usize>;
}

/// A queue of prepared frames is a source (replays them once, in order).
impl FrameSource for std::collections::VecDeque<Vec<u8>> {
    fn next_frame(&mut self, buf: &mut [u8]) -> Option<usize> {
        let f = self.pop_front()?;
        let n = f.len().min(buf.len());
        buf[..n].copy_from_slice(&f[..n]);
        Some(n)
    }
}

/// A consumer of frames (pcap capture, TAP, AF_PACKET).
pub trait FrameSink: Send {
    /// Called once per frame.
    fn frame(&mut self, frame: &[u8]);
}

/// Writes one template frame into every free descriptor of one RX ring: the benchmark path,
/// with no switch, no locks and no per-frame allocation.
pub struct Feeder {
    nic: Nic,
    vf: Arc<VfShared>,
    queue: usize,
    template: Vec<u8>,
    port: DmaPort,
    qword0: u64,
    qword1: u64,
    warned: bool,
}

impl std::fmt::Debug for Feeder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feeder")
            .field("vf", &self.vf.idx)
            .field("queue", &self.queue)
            .field("len", &self.template.len())
            .finish()
    }
}

impl Feeder {
    pub(crate) fn new(nic: Nic, vf: usize, queue: usize, template: &[u8]) -> Feeder {
        let vfs = nic.inner.vfs.get(vf).cloned();
        let vfs = vfs.unwrap_or_else(|| nic.inner.vfs[0].clone());
        let ptype = packet_type(template);
        let len = template.len().min(0xFFFF) as u64;
        let status = (RXD_STAT_DD | RXD_STAT_EOP) as u64;
        Feeder {
            port: DmaPort::new(vfs.iommu.clone()),
            queue: if vf < nic.inner.vfs.len() && queue < MAX_QUEUES {
                queue
            } else {
                usize::MAX
            },
            vf: vfs,
            template: template.to_vec(),
            qword0: (ptype << RXD_PTYPE_SHIFT) as u64,
            qword1: status | len << 32,
            warned: false,
            nic,
        }
    }

    /// Fills every free descriptor (head up to tail) with the template, writes back DD/EOP/len
    /// and advances RDH. Returns the number of frames written.
    pub fn fill(&mut self) -> usize {
        self.fill_max(usize::MAX)
    }

    /// Like [`Feeder::fill`] but writes at most `max` frames.
    pub fn fill_max(&mut self, max: usize) -> usize {
        let vf = &*self.vf;
        if self.queue == usize::MAX || vf.removed.load(Ordering::Relaxed) {
            return 0;
        }
        let Some(ring) = RxRing::load(vf, self.queue) else {
            return 0;
        };
        if self.template.len() > ring.bsize || self.template.len() < 14 {
            if !self.warned {
                self.warned = true;
                log::warn!(
                    "{}: feeder template of {} bytes does not fit a {}-byte buffer",
                    vf.name,
                    self.template.len(),
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
        let len = self.template.len();
        let mut idx = ring.head;
        let mut n = 0;
        while n < free {
            // SAFETY: idx < ring.count and ring_ptr covers count*16 bytes; 16-byte aligned.
            let d = unsafe { ring_ptr.add(idx as usize * 16) };
            // SAFETY: d is valid and 8-aligned for the descriptor's first qword.
            let addr = u64::from_le(unsafe { std::ptr::read_volatile(d as *const u64) });
            if !self
                .port
                .write_bytes(addr, &self.template, "RX buffer (feeder)")
            {
                break;
            }
            // SAFETY: d..d+16 is the descriptor; aligned u64 stores.
            unsafe {
                std::ptr::write_volatile(d as *mut u64, self.qword0.to_le());
                fence(Ordering::Release);
                std::ptr::write_volatile(d.add(8) as *mut u64, self.qword1.to_le());
            }
            idx += 1;
            if idx == ring.count {
                idx = 0;
            }
            n += 1;
        }
        if n > 0 {
            vf.set_reg(rxq(self.queue, RDH), idx);
            vf.count(VfCounter::Gprc, n as u64);
            vf.count(VfCounter::Gorc, (n * len) as u64);
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
        let len = self.template.len();
        let mut n = 0;
        while n < free {
            let d = ring.desc(n as u32);
            let Some(addr) = self.port.read_u64(d, "RX descriptor read (feeder)") else {
                break;
            };
            if !self.port.check(d + 8, 8, "RX write-back (feeder)")
                || !self
                    .port
                    .write_bytes(addr, &self.template, "RX buffer (feeder)")
            {
                break;
            }
            self.port
                .write_u32(d, self.qword0 as u32, "RX write-back (feeder)");
            self.port
                .write_u32(d + 4, (self.qword0 >> 32) as u32, "RX write-back (feeder)");
            self.port
                .write_u32(d + 12, (self.qword1 >> 32) as u32, "RX write-back (feeder)");
            fence(Ordering::Release);
            self.port
                .write_u32(d + 8, self.qword1 as u32, "RX write-back (feeder)");
            n += 1;
        }
        if n > 0 {
            vf.set_reg(rxq(self.queue, RDH), (ring.head + n as u32) % ring.count);
            vf.count(VfCounter::Gprc, n as u64);
            vf.count(VfCounter::Gorc, (n * len) as u64);
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
    /// Deliver frames queued with [`Nic::inject`].
    pub process_ingress: bool,
    /// Frames per queue per iteration.
    pub batch: usize,
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
}

impl Engine {
    pub(crate) fn start(nic: Nic, cfg: EngineConfig) -> Engine {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let handle = std::thread::Builder::new()
            .name("floodgate-sim-engine".into())
            .spawn(move || run(nic, cfg, &s2))
            .ok();
        if handle.is_none() {
            log::error!("floodgate-sim: could not spawn the engine thread");
        }
        Engine { stop, handle }
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

fn run(nic: Nic, mut cfg: EngineConfig, stop: &AtomicBool) -> EngineStats {
    let mut st = EngineStats::default();
    let mut feeder = cfg
        .feeder
        .take()
        .map(|f| nic.feeder(f.vf, f.queue, &f.template));
    let mut source = cfg.source.take();
    let mut buf = vec![0u8; MAX_FRAME];
    let batch = cfg.batch.max(1);
    let start = Instant::now();
    let qpp = nic.inner.cfg.queues_per_pool();
    let mut idle: u32 = 0;
    while !stop.load(Ordering::Acquire) {
        st.iterations += 1;
        let mut work = 0usize;
        if let Some(f) = feeder.as_mut() {
            let n = f.fill();
            st.fed += n as u64;
            work += n;
        }
        if cfg.process_tx || cfg.process_ingress || source.is_some() {
            let inner = &nic.inner;
            let mut dp = inner.dp.lock().unwrap_or_else(|e| e.into_inner());
            if cfg.process_tx {
                for vf in 0..inner.vfs.len() {
                    for q in 0..qpp {
                        let n = inner.run_tx(&mut dp, vf, q, batch);
                        st.tx_frames += n as u64;
                        work += n;
                    }
                }
            }
            inner.drain_backlogs(&mut dp);
            if cfg.process_ingress {
                for _ in 0..batch {
                    let f = inner
                        .ingress
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .pop_front();
                    let Some(f) = f else { break };
                    inner.route(&mut dp, &f, Origin::Wire);
                    st.ingress += 1;
                    work += 1;
                }
            }
            if let Some(src) = source.as_mut() {
                let allowed = match cfg.source_rate_pps {
                    Some(r) => {
                        let due = (start.elapsed().as_secs_f64() * r as f64) as u64;
                        due.saturating_sub(st.generated).min(batch as u64) as usize
                    }
                    None => batch,
                };
                for _ in 0..allowed {
                    let Some(len) = src.next_frame(&mut buf) else {
                        st.source_exhausted = true;
                        break;
                    };
                    inner.counters.wire_in.fetch_add(1, Ordering::Relaxed);
                    inner.route(&mut dp, &buf[..len.min(MAX_FRAME)], Origin::Wire);
                    st.generated += 1;
                    work += 1;
                }
                if st.source_exhausted {
                    source = None;
                }
            }
        }
        if work == 0 {
            idle = idle.saturating_add(1);
            match cfg.idle_sleep {
                Some(d) => std::thread::sleep(d),
                None if idle > IDLE_BACKOFF => std::thread::sleep(Duration::from_micros(20)),
                None if idle & 63 == 0 => std::thread::yield_now(),
                None => std::hint::spin_loop(),
            }
        } else {
            idle = 0;
        }
    }
    st
}
