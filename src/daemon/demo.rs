//! `floodgate demo`: the daemon on the built-in NIC model, with no hardware and no root.
//!
//! The model's traffic generator plays the Internet: a UDP/53 flood from random sources, real DNS
//! queries from a few known clients, and background TCP/UDP. The model's PF agent gets the same
//! steering rule an operator would install with ethtool (UDP to port 53 → VF 0, queue 0), so
//! only DNS traffic reaches the VF; everything else goes to the PF's "kernel side". The filter
//! loop drives the VF through floodgate-pmd exactly as on a real card.
//!
//! Survivors go to the kernel side (a counting sink, or a real TAP with `--tap`), or with
//! `--reinject vf` back out of VF 0's TX queue to a next hop on the wire (counted where they
//! arrive: on the model's wire port). `--reinject vf-pf` addresses them to the PF instead: the
//! model's switch loops them back, its flow director steers them into the VF again, and the
//! loop guard catches them (`looped`); see `docs/reinject-vf.md`.

use crate::backend::PacketBackend;
use crate::config::{Config, DstMac, SrcMac, VfReinject};
use crate::daemon::filterloop::{FilterLoop, LoopOptions, TxBack};
use crate::daemon::runloop::{run_loop, LoopControl, LoopReport};
use crate::sink::PassSink;
use crate::stats::Counters;
use crate::steering::{SimBackend, Steering};
use crate::tap::{Tap, TapSink, TapWriter};
use anyhow::{bail, Context, Result};
use floodgate_pmd::{IxgbeVf, Packet};
use floodgate_sim::engine::{EngineConfig, EngineStats, FrameSink, FrameSource};
use floodgate_sim::generator::{Generator, GeneratorConfig, Rate, TrafficClass};
use floodgate_sim::{Nic, NicConfig};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `floodgate demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// How long the generator runs.
    pub seconds: f64,
    /// Generated packets per second (all classes); `None` = as fast as the model can.
    pub rate: Option<u64>,
    /// Print one JSON object at the end instead of the text summary.
    pub json: bool,
    /// Seed of the traffic generator.
    pub seed: u64,
    /// Print the per-second line.
    pub progress: bool,
    /// Reinject survivors into this TAP (created if missing; needs root or CAP_NET_ADMIN).
    pub tap: Option<String>,
    /// Worker threads behind the soft-RSS dispatcher; `None` = the config's `daemon.workers`
    /// (1 judges inline on the polling thread).
    pub workers: Option<usize>,
    /// Run the NIC model on its own thread, beside the filter loop, as hardware runs beside the
    /// CPU. Off by default: the model then runs in lockstep with the loop (pumped before each
    /// poll), so a busy machine cannot make the model overflow the VF ring while the filter
    /// thread waits for a CPU — something no real NIC-plus-core pair would do.
    pub nic_thread: bool,
    /// Where survivors go.
    pub reinject: DemoReinject,
    /// Serve Prometheus metrics here while the demo runs (`floodgate top` reads them).
    pub metrics: Option<std::net::SocketAddr>,
}

/// Where the demo's survivors go (`--reinject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DemoReinject {
    /// To the kernel side: a counting sink, or the TAP of `--tap` (`--reinject tap`, default).
    #[default]
    Tap,
    /// Back out of VF 0 to a next hop on the wire ([`DEMO_NEXT_HOP`]), source MAC rewritten to
    /// the VF's (`--reinject vf`).
    Vf,
    /// Back out of VF 0 addressed to the PF (`--reinject vf-pf`): on the model this loops (see
    /// the module docs) and shows the loop guard at work; no legitimate query arrives.
    VfToPf,
}

impl DemoReinject {
    /// The name used on the command line and in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            DemoReinject::Tap => "tap",
            DemoReinject::Vf => "vf",
            DemoReinject::VfToPf => "vf-pf",
        }
    }
}

impl std::str::FromStr for DemoReinject {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tap" => Ok(DemoReinject::Tap),
            "vf" => Ok(DemoReinject::Vf),
            "vf-pf" => Ok(DemoReinject::VfToPf),
            other => Err(format!(
                "{other:?} is not \"tap\" (kernel side), \"vf\" (out of the VF to a next hop on \
                 the wire) or \"vf-pf\" (out of the VF to the PF: shows the loop guard)"
            )),
        }
    }
}

/// The next hop `--reinject vf` sends survivors to: a router on the wire, unknown to the NIC's
/// switch, so the frames leave on the wire port.
pub const DEMO_NEXT_HOP: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x01, 0x01];

/// Per-class counts of what the generator produced.
#[derive(Debug, Default)]
struct ClassCounts {
    flood: AtomicU64,
    legit: AtomicU64,
    background: AtomicU64,
}

/// The generator, counting what it produces by class, for the engine thread.
struct CountingSource {
    gen: Generator,
    counts: Arc<ClassCounts>,
}

impl FrameSource for CountingSource {
    fn next_frame(&mut self, buf: &mut [u8]) -> Option<usize> {
        let g = self.gen.next_into(buf).ok()?;
        let c = match g.class {
            TrafficClass::Flood => &self.counts.flood,
            TrafficClass::Legit => &self.counts.legit,
            TrafficClass::Background => &self.counts.background,
        };
        c.fetch_add(1, Ordering::Relaxed);
        Some(g.len)
    }
}

/// The demo's kernel side: counts passed packets and recognises the legitimate queries among
/// them (UDP to port 53 from a known client), so the summary can prove none was lost.
struct DemoSink {
    clients: Vec<[u8; 4]>,
    packets: u64,
    legit: u64,
    /// With `--tap`: the real TAP the survivors are written to.
    tap: Option<TapSink>,
}

/// A legitimate query: UDP to port 53 from one of `clients`.
fn is_legit(d: &[u8], clients: &[[u8; 4]]) -> bool {
    // Ethernet (14) + IPv4 without options, UDP: source address at 26..30.
    if d.len() >= 42 && d[12..14] == [0x08, 0x00] && d[23] == 17 {
        let src = [d[26], d[27], d[28], d[29]];
        return clients.contains(&src) && d[36..38] == [0, 53];
    }
    false
}

impl PassSink for DemoSink {
    fn submit(&mut self, packets: &[Packet]) -> usize {
        let accepted = match self.tap.as_mut() {
            Some(t) => t.submit(packets),
            None => packets.len(),
        };
        for p in packets {
            self.packets += 1;
            if is_legit(p.data(), &self.clients) {
                self.legit += 1;
            }
        }
        accepted
    }
}

/// Counts the legitimate queries among the frames the model hands to its wire port or its PF
/// (where `--reinject vf` survivors arrive).
struct LegitCounter {
    clients: Vec<[u8; 4]>,
    legit: Arc<AtomicU64>,
}

impl FrameSink for LegitCounter {
    fn frame(&mut self, frame: &[u8]) {
        if is_legit(frame, &self.clients) {
            self.legit.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The configuration the demo runs with: an ordinary config file for the model.
pub const DEMO_CONFIG: &str = include_str!("../../examples/demo.toml");

/// Parses [`DEMO_CONFIG`].
pub fn demo_config() -> Result<crate::config::Config> {
    Ok(crate::config::Config::from_str_named(
        DEMO_CONFIG,
        "examples/demo.toml (built in)",
    )?)
}

/// Summary of a demo run.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    /// Filter-loop counters.
    pub counters: Counters,
    /// Seconds the generator ran.
    pub seconds: f64,
    /// Frames the generator produced, by class.
    pub generated_flood: u64,
    /// Legitimate DNS queries generated.
    pub generated_legit: u64,
    /// Background frames generated.
    pub generated_background: u64,
    /// Legitimate queries that arrived where survivors go: the kernel side (`tap`), or the
    /// wire or the PF (`vf`, `vf-pf`).
    pub legit_passed: u64,
    /// `"tap"`, `"vf"` or `"vf-pf"` (see [`DemoReinject`]).
    pub reinject: &'static str,
    /// Legitimate queries that left on the model's wire port.
    pub legit_at_wire: u64,
    /// Legitimate queries the model delivered to the PF (kernel side) from the VF's TX.
    pub legit_at_pf: u64,
    /// Frames the model sent out of its wire port.
    pub nic_egress: u64,
    /// Frames the model's switch looped back from a VF (VEB), to the PF or a VF.
    pub nic_loopback: u64,
    /// VF transmissions the model's anti-spoofing dropped.
    pub nic_tx_spoofed: u64,
    /// Frames the model delivered to the PF (kernel side): background traffic.
    pub nic_to_kernel: u64,
    /// Frames the model could not place in the VF's RX ring (no free descriptor, or its
    /// backlog overflowed): lost before the daemon could see them, so outside the invariant.
    pub nic_rx_missed: u64,
    /// Frames the paced generator did not send because its thread was descheduled for longer
    /// than its catch-up allowance (the offered rate was lower than asked, nothing was lost).
    pub generator_behind_schedule: u64,
    /// `"lockstep"` (model pumped by the filter loop) or `"thread"` (`--nic-thread`).
    pub nic_mode: &'static str,
    /// The filter loop's own time per received packet (ns), measured around its polls on the
    /// polling thread: receive, judge (or dispatch, with workers), drop and hand over. The
    /// model's pump is not in it.
    pub filter_ns_per_packet: f64,
    /// The model's time per received packet (ns) in lockstep mode (generator, switch, flow
    /// director, DMA into the ring: the pump before each poll); `None` with `--nic-thread`.
    pub model_ns_per_packet: Option<f64>,
    /// Per-rule hits: (name, hits), then ("default", hits).
    pub rule_hits: Vec<(String, u64)>,
    /// Per worker (fan-out mode): (packets taken from its ring, dropped, passed).
    pub workers: Vec<(u64, u64, u64)>,
}

impl DemoSummary {
    /// `rx = dropped + passed + errors + in flight` and `passed = tap + refused`.
    pub fn invariant_holds(&self) -> bool {
        self.counters.invariant_holds()
    }

    /// Every legitimate query the generator made reached the kernel side.
    pub fn all_legit_passed(&self) -> bool {
        self.legit_passed == self.generated_legit
    }

    /// One JSON object with every counter.
    pub fn to_json(&self) -> String {
        let c = &self.counters;
        let rules: Vec<_> = self
            .rule_hits
            .iter()
            .map(|(n, h)| serde_json::json!({ "rule": n, "hits": h }))
            .collect();
        let workers: Vec<_> = self
            .workers
            .iter()
            .enumerate()
            .map(|(i, (rx, d, p))| {
                serde_json::json!({ "worker": i, "rx": rx, "dropped": d, "passed": p })
            })
            .collect();
        serde_json::json!({
            // Milliseconds are enough, and keep the number short.
            "seconds": (self.seconds * 1000.0).round() / 1000.0,
            "rx_packets": c.rx_packets,
            "rx_bytes": c.rx_bytes,
            "dropped": c.dropped,
            "passed": c.passed,
            "tap": c.tap,
            "tap_dropped": c.tap_dropped,
            "vf_tx": c.vf_tx,
            "vf_tx_dropped": c.vf_tx_dropped,
            "looped": c.looped,
            "errors": c.errors,
            "left_in_rings": c.left,
            "in_flight": c.in_flight,
            "generated": {
                "flood": self.generated_flood,
                "legit": self.generated_legit,
                "background": self.generated_background,
            },
            "reinject": self.reinject,
            "legit_passed": self.legit_passed,
            "legit_at_wire": self.legit_at_wire,
            "legit_at_pf": self.legit_at_pf,
            "all_legit_passed": self.all_legit_passed(),
            "nic_to_kernel": self.nic_to_kernel,
            "nic_egress": self.nic_egress,
            "nic_loopback": self.nic_loopback,
            "nic_tx_spoofed": self.nic_tx_spoofed,
            "nic_rx_missed": self.nic_rx_missed,
            "generator_behind_schedule": self.generator_behind_schedule,
            "nic_mode": self.nic_mode,
            // Tenths of a nanosecond are enough.
            "filter_ns_per_packet": (self.filter_ns_per_packet * 10.0).round() / 10.0,
            "model_ns_per_packet": self.model_ns_per_packet.map(|n| (n * 10.0).round() / 10.0),
            "dispatch_full": c.dispatch_full,
            "invariant_holds": self.invariant_holds(),
            "rules": rules,
            "workers": workers,
        })
        .to_string()
    }
}

/// Runs the demo and returns its summary.
pub fn run(opts: &DemoOptions) -> Result<DemoSummary> {
    check_options(opts)?;
    let cfg = demo_config()?;
    let nic = Nic::new(NicConfig {
        // The demo runs for seconds at up to millions of frames: keep no egress copies.
        capture_egress: false,
        ..NicConfig::default()
    });
    let mut steering = install_steering(&nic, &cfg)?;
    let pmd_cfg = crate::daemon::run::pmd_config(&cfg);
    let vf = IxgbeVf::open(nic.vf(0), pmd_cfg).context("bringing up VF 0 of the model")?;
    let vf_mac = vf.mac();
    let tx = tx_back(opts.reinject, vf_mac, &nic)?;
    let (gen, clients) = traffic(opts, &nic)?;
    // Where `--reinject vf` survivors arrive: count the legitimate queries there.
    let arrivals = Arrivals::default();
    if tx.is_some() {
        arrivals.watch(&nic, &clients);
    }
    let workers = opts.workers.unwrap_or(cfg.daemon.workers as usize).max(1);
    let sinks = kernel_sinks(
        opts.tap.as_deref(),
        &clients,
        workers,
        cfg.device.burst as usize,
    )?;
    let lopts = LoopOptions {
        tx,
        ..LoopOptions::new(cfg.device.burst as usize, sinks)
    };
    let mut fl =
        FilterLoop::new(vf, cfg.filter.ruleset(), lopts).context("starting the filter loop")?;
    log::info!("demo: VF 0 up, MAC {}", floodgate_pmd::fmt_mac(vf_mac));

    let counts = Arc::new(ClassCounts::default());
    let source = CountingSource {
        gen,
        counts: counts.clone(),
    };
    let mut ctl = loop_control(opts, &cfg, &nic);
    let _metrics = serve_metrics(opts, &mut ctl)?;
    let engine_stats = drive_model(&mut ctl, opts, &nic, source, cfg.device.burst as usize);
    // The drain keeps pumping the model until the NIC has sent every survivor on VF 0's TX
    // ring (run_loop waits for them), so they are all counted where they arrive.
    let rep = run_loop(&mut fl, &mut ctl).context("filter loop")?;
    // Clean up like the daemon does at exit (the model would forget them anyway).
    steering
        .remove_all()
        .context("removing the steering rules")?;
    let behind = engine_stats.borrow().behind_schedule;
    Ok(summarise(opts, &fl, &rep, &nic, &counts, &arrivals, behind))
}

/// Options that cannot go together, or make no sense.
fn check_options(opts: &DemoOptions) -> Result<()> {
    if opts.seconds.is_nan() || opts.seconds <= 0.0 {
        bail!("--seconds must be positive (got {})", opts.seconds);
    }
    if opts.tap.is_some() && opts.reinject != DemoReinject::Tap {
        bail!(
            "--tap and --reinject {} exclude each other: survivors go either into the TAP or out of the VF",
            opts.reinject.name()
        );
    }
    Ok(())
}

/// Steering: the same code and rules as `floodgate run`, with the model's PF agent as the
/// backend instead of the kernel's ethtool ioctl (`ethtool -N <pf> flow-type udp4 dst-port 53
/// action $((1 << 32))` on a real box).
fn install_steering(nic: &Nic, cfg: &Config) -> Result<Steering<SimBackend>> {
    let mut steering = Steering::new(SimBackend::model("sim0", nic.pf()), None);
    steering
        .install(&cfg.steering)
        .context("model PF refused the steering rules")?;
    Ok(steering)
}

/// Where survivors leave with `--reinject vf` / `vf-pf`: the same settings an operator would
/// write in `[reinject]`. `None` for the kernel side.
fn tx_back(reinject: DemoReinject, vf_mac: [u8; 6], nic: &Nic) -> Result<Option<TxBack>> {
    let dst_mac = match reinject {
        DemoReinject::Tap => return Ok(None),
        DemoReinject::Vf => DstMac::Mac(DEMO_NEXT_HOP),
        DemoReinject::VfToPf => DstMac::Pf,
    };
    let r = VfReinject {
        tx_queue: 0,
        src_mac: SrcMac::Vf,
        dst_mac: Some(dst_mac),
    };
    let pf_mac = nic.config().pf_mac;
    Ok(Some(crate::daemon::run::vf_tx(&r, vf_mac, || Ok(pf_mac))?))
}

/// The traffic generator, and the legitimate clients it sends queries from.
fn traffic(opts: &DemoOptions, nic: &Nic) -> Result<(Generator, Vec<[u8; 4]>)> {
    let mut gcfg = GeneratorConfig {
        seed: opts.seed,
        rate: opts.rate.map(Rate::Pps).unwrap_or(Rate::MaxSpeed),
        // Frames are addressed to the port's MAC; the flow director picks them out before the
        // L2 switch, as on the real NIC. Background frames go to the PF's MAC.
        dst_mac: nic.config().pf_mac,
        ..GeneratorConfig::default()
    };
    // Some busy botnet members among the random flood sources (from the benchmarking range
    // 198.18.0.0/15), so the top dropped sources have something to show.
    gcfg.flood.heavy_sources = (1..=6).map(|i| [198, 18, 7, i * 11]).collect();
    gcfg.flood.heavy_percent = 25;
    let clients = gcfg.legit.clients.clone();
    let gen = Generator::new(gcfg).context("traffic generator config")?;
    Ok((gen, clients))
}

/// Legitimate queries that arrived on the model's wire port and at its PF (where
/// `--reinject vf` survivors end up).
#[derive(Default)]
struct Arrivals {
    wire: Arc<AtomicU64>,
    pf: Arc<AtomicU64>,
}

impl Arrivals {
    /// Counts the legitimate queries among the frames leaving the model's wire port and those
    /// it delivers to the PF.
    fn watch(&self, nic: &Nic, clients: &[[u8; 4]]) {
        nic.set_egress_sink(Some(Box::new(LegitCounter {
            clients: clients.to_vec(),
            legit: self.wire.clone(),
        })));
        nic.set_pf_sink(Some(Box::new(LegitCounter {
            clients: clients.to_vec(),
            legit: self.pf.clone(),
        })));
    }
}

/// One kernel-side sink per judging thread, each writing into the TAP `tap` when given.
fn kernel_sinks(
    tap: Option<&str>,
    clients: &[[u8; 4]],
    workers: usize,
    burst: usize,
) -> Result<Vec<DemoSink>> {
    let tap_fd = match tap {
        Some(name) => {
            let t = Tap::open(name)?;
            t.set_up()?;
            log::info!("demo: reinjecting survivors into TAP {name}");
            Some(t.into_fd())
        }
        None => None,
    };
    let mut sinks = Vec::with_capacity(workers);
    for _ in 0..workers {
        let tap = match &tap_fd {
            Some(fd) => {
                let fd = fd.try_clone().context("duplicating the TAP descriptor")?;
                Some(TapSink::new(TapWriter::new(fd, burst)))
            }
            None => None,
        };
        sinks.push(DemoSink {
            clients: clients.to_vec(),
            packets: 0,
            legit: 0,
            tap,
        });
    }
    Ok(sinks)
}

/// The run's limits and output, as the config and the options say.
fn loop_control(opts: &DemoOptions, cfg: &Config, nic: &Nic) -> LoopControl {
    let mut ctl = LoopControl::new();
    ctl.progress = opts.progress;
    ctl.idle = crate::daemon::runloop::IdlePolicy::nap_us(cfg.daemon.idle_sleep_us);
    ctl.deadline = Some(Instant::now() + Duration::from_secs_f64(opts.seconds));
    ctl.drain_timeout = Duration::from_millis(u64::from(cfg.daemon.drain_timeout_ms));
    // The model's own count of frames VF 0's rings could not take (no descriptor, or its
    // backlog overflowed), read like a NIC counter every interval.
    let missed_nic = nic.clone();
    ctl.nic_missed = Some(Box::new(move || {
        let s = missed_nic.stats();
        s.rx_no_desc + s.rx_missed
    }));
    ctl
}

/// With `--metrics`, serves the loop's metrics (for `floodgate top`) until dropped.
fn serve_metrics(
    opts: &DemoOptions,
    ctl: &mut LoopControl,
) -> Result<Option<crate::daemon::metrics::MetricsServer>> {
    let Some(addr) = opts.metrics else {
        return Ok(None);
    };
    let m = Arc::new(crate::daemon::metrics::Metrics::default());
    ctl.metrics = Some(m.clone());
    Ok(Some(crate::daemon::metrics::MetricsServer::start(addr, m)?))
}

/// Sets up the model's engine: on its own thread (`--nic-thread`), or pumped by the loop
/// before each poll. Its statistics are there once the run has stopped it.
fn drive_model(
    ctl: &mut LoopControl,
    opts: &DemoOptions,
    nic: &Nic,
    source: CountingSource,
    burst: usize,
) -> Rc<RefCell<EngineStats>> {
    let engine_stats: Rc<RefCell<EngineStats>> = Rc::default();
    let out = engine_stats.clone();
    if opts.nic_thread {
        let engine = nic.start_engine(EngineConfig {
            source: Some(Box::new(source)),
            source_rate_pps: opts.rate,
            ..EngineConfig::default()
        });
        let stopped = Rc::new(std::cell::Cell::new(false));
        let s2 = stopped.clone();
        ctl.before_drain = Some(Box::new(move || {
            *out.borrow_mut() = engine.stop();
            s2.set(true);
        }));
        // Once the engine thread is gone, the drain steps the model itself, so survivors the
        // loop still sends out of the VF are fetched from its TX ring.
        let n2 = nic.clone();
        ctl.pump = Some(Box::new(move || if stopped.get() { n2.step() } else { 0 }));
    } else {
        // Lockstep: at most one burst of frames per pump, so the loop (one burst per poll)
        // always keeps up.
        let engine = Rc::new(RefCell::new(nic.inline_engine(EngineConfig {
            source: Some(Box::new(source)),
            source_rate_pps: opts.rate,
            batch: burst,
            // Catching up cannot overflow the ring here (one burst per pump), so the source
            // may make up for up to a quarter second the loop spent descheduled.
            max_catch_up: Duration::from_millis(250),
            ..EngineConfig::default()
        })));
        let e = engine.clone();
        ctl.pump = Some(Box::new(move || e.borrow_mut().pump()));
        ctl.before_drain = Some(Box::new(move || {
            let mut e = engine.borrow_mut();
            e.stop_source();
            *out.borrow_mut() = e.stats().clone();
        }));
    }
    engine_stats
}

/// The summary of a finished run.
fn summarise<B: PacketBackend>(
    opts: &DemoOptions,
    fl: &FilterLoop<B, DemoSink>,
    rep: &LoopReport,
    nic: &Nic,
    counts: &ClassCounts,
    arrivals: &Arrivals,
    generator_behind_schedule: u64,
) -> DemoSummary {
    let nic_stats = nic.stats();
    let names = fl.rule_names();
    let rc = fl.rule_counters();
    let mut rule_hits: Vec<(String, u64)> = names
        .into_iter()
        .zip(rc.rules.iter())
        .map(|(n, c)| (n, c.hits))
        .collect();
    rule_hits.push(("default".into(), rc.default.hits));
    let (at_wire, at_pf) = (
        arrivals.wire.load(Ordering::Relaxed),
        arrivals.pf.load(Ordering::Relaxed),
    );
    let legit_passed = match fl.tx_back() {
        None => fl.sinks().iter().map(|s| s.legit).sum(),
        Some(_) => at_wire + at_pf,
    };
    let workers = fl
        .worker_reports()
        .iter()
        .map(|r| (r.rx_packets, r.counters.dropped, r.counters.passed))
        .collect();
    DemoSummary {
        counters: fl.counters(),
        seconds: rep.elapsed.as_secs_f64(),
        generated_flood: counts.flood.load(Ordering::Relaxed),
        generated_legit: counts.legit.load(Ordering::Relaxed),
        generated_background: counts.background.load(Ordering::Relaxed),
        legit_passed,
        reinject: opts.reinject.name(),
        legit_at_wire: at_wire,
        legit_at_pf: at_pf,
        nic_egress: nic_stats.egress,
        nic_loopback: nic_stats.loopback,
        nic_tx_spoofed: nic_stats.tx_spoofed,
        workers,
        nic_to_kernel: nic_stats.pf_delivered,
        nic_rx_missed: nic_stats.rx_no_desc + nic_stats.rx_missed,
        generator_behind_schedule,
        nic_mode: if opts.nic_thread {
            "thread"
        } else {
            "lockstep"
        },
        filter_ns_per_packet: rep.filter_ns_per_packet(),
        // On its own thread the model's time is not the polling thread's to measure.
        model_ns_per_packet: (!opts.nic_thread).then(|| rep.pump_ns_per_packet()),
        rule_hits,
    }
}

/// Prints the human summary.
pub fn print_summary(s: &DemoSummary) {
    let c = &s.counters;
    println!(
        "floodgate demo summary ({:.1} s on the built-in 82599 model)",
        s.seconds
    );
    println!(
        "  generated   flood {} | legit DNS {} | background {}",
        s.generated_flood, s.generated_legit, s.generated_background
    );
    println!(
        "  VF 0        rx {} ({}) | dropped {} | passed {} | errors {}",
        c.rx_packets,
        crate::stats::fmt_rate(c.rx_packets, Duration::from_secs_f64(s.seconds)),
        c.dropped,
        c.passed,
        c.errors
    );
    if s.reinject == "tap" {
        println!(
            "  kernel      tap {} | refused {} | legit passed {}/{} | background via PF {}",
            c.tap, c.tap_dropped, s.legit_passed, s.generated_legit, s.nic_to_kernel
        );
    } else {
        println!(
            "  VF 0 TX     sent {} | refused (ring full) {} | looped back and caught {}",
            c.vf_tx, c.vf_tx_dropped, c.looped
        );
        println!(
            "  arrived     legit {}/{} (wire {}, PF {}) | model: egress {}, loopback {}, \
             spoofed {} | PF frames {}",
            s.legit_passed,
            s.generated_legit,
            s.legit_at_wire,
            s.legit_at_pf,
            s.nic_egress,
            s.nic_loopback,
            s.nic_tx_spoofed,
            s.nic_to_kernel
        );
        if c.looped > 0 {
            println!(
                "  loop        the model's switch looped survivors back to the PF pool and its \
                 flow director steered them into VF 0 again; see docs/reinject-vf.md"
            );
        }
    }
    for (name, hits) in &s.rule_hits {
        println!("  rule {name:<14} {hits} hits");
    }
    for (i, (rx, d, p)) in s.workers.iter().enumerate() {
        println!("  worker {i}    rx {rx} | dropped {d} | passed {p}");
    }
    if !s.workers.is_empty() {
        println!("  dispatch    worker ring full {}", c.dispatch_full);
    }
    println!(
        "  model       {} | rx missed (ring full) {} | generator behind schedule {}",
        s.nic_mode, s.nic_rx_missed, s.generator_behind_schedule
    );
    println!(
        "  cost        filter loop {:.1} ns/packet (its polls){}",
        s.filter_ns_per_packet,
        match s.model_ns_per_packet {
            Some(m) => format!(" | model {m:.1} ns/packet (pumped on the same thread)"),
            None => " | model on its own thread".to_string(),
        }
    );
    println!(
        "  invariant   rx = dropped + passed + errors + left in rings ({}) + in flight, passed = tap + refused + vf tx + refused: {} (the model's rx missed is outside it)",
        c.left,
        if s.invariant_holds() {
            "holds"
        } else {
            "VIOLATED"
        }
    );
}
