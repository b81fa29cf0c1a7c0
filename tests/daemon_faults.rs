//! Faults under traffic: each of the NIC model's eight fault kinds is injected while the model's
//! traffic generator sends a steady stream into VF 0 and the daemon's filter loop (`run_loop`
//! over a `FilterLoop`, the same code `floodgate run` runs) polls it. The model runs in lockstep
//! with the loop (the `InlineEngine` the demo uses, pumped before every poll), and the fault is
//! injected and cleared at fixed pump counts, so every run is the same sequence of events; the
//! only clock is a safety deadline that stops a hung loop.
//!
//! After the drain every test checks, with the model's own counters as the independent witness:
//!
//! - every frame the generator offered is in exactly one model bucket: written into VF 0's ring
//!   (`rx_delivered`) or dropped by the model for a named reason, with nothing left in a backlog;
//! - every frame written into the ring is in the loop's `rx_packets`, and `rx = dropped + passed
//!   + errors` with nothing in flight;
//! - no buffer was lost: free buffers plus those the driver holds (rings, caches) add up to the
//!   pool's capacity, as at the start, and after the loop is dropped the pool is full again;
//! - no passed frame was corrupted (each is a well-formed frame from the generator);
//! - the loop kept running and passed traffic after the fault was over, or, for a surprise
//!   removal, ended with `DeviceGone` (no panic, counters still consistent).

use floodgate::backend::BackendError;
use floodgate::config::Config;
use floodgate::daemon::filterloop::{FilterLoop, LoopOptions, TxBack};
use floodgate::daemon::runloop::{run_loop, IdlePolicy, LoopControl, LoopFailure, LoopReport};
use floodgate::sink::PassSink;
use floodgate::softrss::RssConfig;
use floodgate::stats::Counters;
use floodgate_pmd::{IxgbeVf, Mempool, Packet, Timeouts};
use floodgate_sim::engine::{EngineConfig, InlineEngine};
use floodgate_sim::generator::{Generator, GeneratorConfig, Rate};
use floodgate_sim::{MailboxFault, Nic, NicConfig, NicStats, RxCorruption, SimVf};
use floodgate_vfio::Device;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The generator's DNS flood (and its legitimate queries) is dropped, its background passes.
const RULES: &str = r#"
[device]
pci = "sim"
[filter]
default = "pass"
[[filter.rule]]
name = "dns"
action = "drop"
proto = "udp"
dst_port = 53
"#;

/// Source MAC of every generated frame (the generator's default upstream router).
const UPSTREAM: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x0A, 0x01];
/// Where survivors go in `[reinject] to = "vf"` mode (a router on the wire).
const NEXT_HOP: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x01, 0x01];
/// Frames the model generates per pump (and the loop's burst): the loop always keeps up.
const BATCH: usize = 16;
/// A hung loop fails the test after this long instead of blocking the suite.
const SAFETY: Duration = Duration::from_secs(60);

/// The pass sink: counts survivors and checks each one is a frame the generator could have sent
/// (addresses, EtherType, a valid IPv4 header checksum), so a buffer handed out twice or filled
/// by a faulting DMA shows up as `garbled`.
#[derive(Clone)]
struct Tally {
    vf_mac: [u8; 6],
    passed: Arc<AtomicU64>,
    garbled: Arc<AtomicU64>,
}

fn ipv4_header_ok(f: &[u8]) -> bool {
    if f.len() < 34 || f[12..14] != [0x08, 0x00] || f[14] >> 4 != 4 {
        return false;
    }
    let ihl = usize::from(f[14] & 0xF) * 4;
    if ihl < 20 || f.len() < 14 + ihl {
        return false;
    }
    let mut sum = 0u32;
    for w in f[14..14 + ihl].chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum == 0xFFFF
}

impl PassSink for Tally {
    fn submit(&mut self, packets: &[Packet]) -> usize {
        for p in packets {
            let d = p.data();
            let ok =
                d.len() >= 60 && d[..6] == self.vf_mac && d[6..12] == UPSTREAM && ipv4_header_ok(d);
            if !ok {
                self.garbled.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.passed
            .fetch_add(packets.len() as u64, Ordering::Relaxed);
        packets.len()
    }
}

/// One fault action at a pump count.
type Action = Box<dyn FnOnce(&Nic)>;

/// A fault script: actions at pump counts, the pump from which the fault is over (the model is
/// healthy again), and the pump at which the test asks the loop to stop.
struct Script {
    actions: Vec<(u64, Action)>,
    healthy_from: u64,
    stop_at: u64,
}

/// What the script saw while it ran.
#[derive(Debug, Default, Clone, Copy)]
struct Marks {
    /// Survivors the sink had when the fault was over.
    passed_when_healthy: u64,
    /// Model counters when the fault was over.
    delivered_when_healthy: u64,
    egress_when_healthy: u64,
    /// Pumps done (the loop polls once per pump).
    pumps: u64,
    /// The script reached its stop request.
    stopped: bool,
}

struct Rig {
    nic: Nic,
    pool: Mempool,
    engine: Rc<RefCell<InlineEngine>>,
    tally: Tally,
    fl: FilterLoop<IxgbeVf<SimVf>, Tally>,
    /// Frames a script injected itself (besides the generator's).
    injected: Arc<AtomicU64>,
}

/// How the loop judges and where survivors go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Judged on the polling thread, survivors to the sink.
    Inline,
    /// Fanned out to two worker threads (soft RSS), survivors to their sinks.
    Workers,
    /// Judged on the polling thread, survivors sent back out of the VF to a next hop.
    VfTx,
    /// Two workers judge; the polling thread sends their survivors out of the VF.
    WorkersVfTx,
}

/// VF 0 up on a fresh model, a filter loop over it, and a lockstep engine whose generator
/// floods VF 0's MAC.
fn rig(mode: Mode) -> Rig {
    let _ = env_logger::builder().is_test(true).try_init();
    let nic = Nic::new(NicConfig {
        capture_egress: false,
        ..NicConfig::default()
    });
    let vf = IxgbeVf::open(
        nic.vf(0),
        floodgate_pmd::Config {
            timeouts: Timeouts::fast(),
            rx_ring_size: 512,
            tx_ring_size: 128,
            pool_buffers: Some(4096),
            max_queues: Some(1),
            huge_pages: floodgate_vfio::HugePages::Never,
            ..Default::default()
        },
    )
    .expect("VF 0 up on the model");
    let vf_mac = vf.mac();
    let pool = vf.mempool().clone();
    let tally = Tally {
        vf_mac,
        passed: Arc::default(),
        garbled: Arc::default(),
    };
    let rules = Config::from_str_named(RULES, "faults.toml")
        .unwrap()
        .filter
        .ruleset();
    let tx = TxBack::new(vf_mac, 0, true, Some(NEXT_HOP));
    let workers = LoopOptions {
        rss: Some(RssConfig::default()),
        ring_capacity: 1024,
        ..LoopOptions::new(BATCH, vec![tally.clone(), tally.clone()])
    };
    let opts = match mode {
        Mode::Inline => LoopOptions::inline(BATCH, tally.clone()),
        Mode::Workers => workers,
        Mode::VfTx => LoopOptions {
            tx: Some(tx),
            ..LoopOptions::inline(BATCH, tally.clone())
        },
        Mode::WorkersVfTx => LoopOptions {
            tx: Some(tx),
            ..workers
        },
    };
    let fl = FilterLoop::new(vf, rules, opts).unwrap();
    let gen = Generator::new(GeneratorConfig {
        rate: Rate::MaxSpeed,
        dst_mac: vf_mac,
        src_mac: UPSTREAM,
        ..GeneratorConfig::default()
    })
    .unwrap();
    let engine = Rc::new(RefCell::new(nic.inline_engine(EngineConfig {
        source: Some(Box::new(gen)),
        source_rate_pps: None,
        batch: BATCH,
        ..EngineConfig::default()
    })));
    Rig {
        nic,
        pool,
        engine,
        tally,
        fl,
        injected: Arc::default(),
    }
}

impl Rig {
    /// Free buffers plus those the driver holds: the pool's capacity when no packet is out.
    fn pool_level(&mut self) -> u64 {
        u64::from(self.pool.available()) + self.fl.backend().buffers_held()
    }

    /// Runs the loop under `script` until the script asks it to stop (then the loop drains),
    /// or until the loop fails.
    fn run(&mut self, script: Script) -> (Result<LoopReport, Box<LoopFailure>>, Rc<Cell<Marks>>) {
        assert_eq!(
            self.pool_level(),
            u64::from(self.pool.capacity()),
            "every buffer free or in the driver before the traffic starts"
        );
        let marks = Rc::new(Cell::new(Marks::default()));
        let mut ctl = LoopControl::new();
        // Maintenance (PF events, link, device gone) every 256 polls, without waiting for a
        // wall-clock interval; no naps, so the loop polls (and the model pumps) at full speed.
        ctl.interval = Duration::ZERO;
        ctl.idle = IdlePolicy::BUSY;
        ctl.deadline = Some(Instant::now() + SAFETY);
        let stop = ctl.stop.clone();
        let (nic, engine, tally, m) = (
            self.nic.clone(),
            self.engine.clone(),
            self.tally.clone(),
            marks.clone(),
        );
        let mut actions: VecDeque<(u64, Action)> = {
            let mut a = script.actions;
            a.sort_by_key(|(at, _)| *at);
            a.into()
        };
        let mut pumps = 0u64;
        ctl.pump = Some(Box::new(move || {
            pumps += 1;
            while actions.front().is_some_and(|(at, _)| *at <= pumps) {
                if let Some((_, act)) = actions.pop_front() {
                    act(&nic);
                }
            }
            let mut mk = m.get();
            mk.pumps = pumps;
            if pumps == script.healthy_from {
                let s = nic.stats();
                mk.passed_when_healthy = tally.passed.load(Ordering::Relaxed);
                mk.delivered_when_healthy = s.rx_delivered;
                mk.egress_when_healthy = s.egress;
            }
            if pumps == script.stop_at {
                mk.stopped = true;
                stop.store(true, Ordering::Release);
            }
            m.set(mk);
            engine.borrow_mut().pump()
        }));
        let e2 = self.engine.clone();
        ctl.before_drain = Some(Box::new(move || e2.borrow_mut().stop_source()));
        let r = run_loop(&mut self.fl, &mut ctl);
        (r, marks)
    }

    /// The checks every fault test ends with (after the drain). Returns the loop's counters
    /// and the model's.
    fn assert_accounted(&mut self, what: &str) -> (Counters, NicStats) {
        self.engine.borrow_mut().stop_source();
        let c = self.fl.counters();
        let s = self.nic.stats();
        let generated = self.engine.borrow().stats().generated;
        assert!(generated > 0, "{what}: no traffic");
        // The model: every offered frame in exactly one bucket.
        let offered = generated + self.injected.load(Ordering::Relaxed);
        assert_eq!(s.wire_in, offered, "{what}: {s:?}");
        assert_eq!(self.nic.rx_backlog_len(), 0, "{what}: backlog left");
        let model_dropped = s.rx_no_desc
            + s.rx_missed
            + s.rx_queue_disabled
            + s.rx_vf_disabled
            + s.rx_dma_fault
            + s.rx_oversize
            + s.rx_link_down
            + s.switch_dropped;
        assert_eq!(
            s.wire_in,
            s.rx_delivered + s.pf_delivered + model_dropped,
            "{what}: offered = into VF 0's ring + to the PF + dropped by the model: {s:?}"
        );
        assert_eq!(s.pf_delivered, 0, "{what}: every frame was for VF 0");
        // The loop: every frame the model wrote into the ring, in exactly one bucket.
        assert_eq!(
            c.rx_packets, s.rx_delivered,
            "{what}: loop rx = model's deliveries: {c:?} {s:?}"
        );
        assert_eq!(c.in_flight, 0, "{what}: {c:?}");
        assert_eq!(
            c.rx_packets,
            c.dropped + c.passed + c.errors,
            "{what}: {c:?}"
        );
        assert!(c.invariant_holds(), "{what}: {c:?}");
        // The driver's drops are the loop's errors.
        let drv = self.fl.backend_mut().stats().rx;
        assert_eq!(c.errors, drv.dropped(), "{what}: {drv:?}");
        assert_eq!(
            drv.descriptors,
            drv.packets + drv.dropped(),
            "{what}: {drv:?}"
        );
        // No corrupted survivor, and every survivor the loop counted reached the sink.
        assert_eq!(
            self.tally.garbled.load(Ordering::Relaxed),
            0,
            "{what}: garbled survivors"
        );
        assert_eq!(
            c.tap,
            self.tally.passed.load(Ordering::Relaxed),
            "{what}: {c:?}"
        );
        // No buffer lost.
        assert_eq!(
            self.pool_level(),
            u64::from(self.pool.capacity()),
            "{what}: pool level back to its start value"
        );
        (c, s)
    }

    /// Drops the loop (and the VF): every buffer must be back in the pool.
    fn close(self, what: &str) {
        let pool = self.pool.clone();
        drop(self.fl);
        assert_eq!(
            pool.available(),
            pool.capacity(),
            "{what}: every buffer back after close"
        );
    }
}

/// The loop kept going after the fault: it passed traffic once the model was healthy again.
fn assert_recovered(what: &str, rig: &Rig, marks: &Marks, c: &Counters, s: &NicStats) {
    assert!(
        marks.stopped,
        "{what}: the script never ran to its end: {marks:?}"
    );
    assert!(
        s.rx_delivered > marks.delivered_when_healthy,
        "{what}: nothing reached the ring after the fault: {marks:?} {s:?}"
    );
    let passed_after =
        rig.tally.passed.load(Ordering::Relaxed) + c.vf_tx - marks.passed_when_healthy;
    assert!(
        passed_after >= 100,
        "{what}: only {passed_after} survivors after the fault: {marks:?} {c:?}"
    );
}

fn act(f: impl FnOnce(&Nic) + 'static) -> Action {
    Box::new(f)
}

#[test]
fn link_flap_under_traffic_is_reported_and_the_loop_keeps_passing() {
    let mut rig = rig(Mode::Inline);
    let script = Script {
        actions: vec![
            (1500, act(|n| n.set_link(false))),
            (3000, act(|n| n.set_link(true))),
        ],
        healthy_from: 3000,
        stop_at: 6000,
    };
    let (r, marks) = rig.run(script);
    let rep = r.expect("a link flap must not end the loop");
    let (c, s) = rig.assert_accounted("link flap");
    assert_recovered("link flap", &rig, &marks.get(), &c, &s);
    let st = rig.fl.backend_mut().stats();
    assert_eq!(st.link_changes, 2, "down and up both seen: {st:?}");
    assert!(rig.fl.backend().link().up);
    // Nothing arrives from the wire while the link is down: exactly the frames the generator
    // offered in pumps 1500..3000.
    assert_eq!(s.rx_link_down, 1500 * BATCH as u64, "{s:?}");
    assert_eq!(rep.pf_resets, 0, "a link ping is not a reset: {rep:?}");
    assert_eq!(rep.maintenance_retries, 0, "{rep:?}");
    rig.close("link flap");
}

#[test]
fn pf_reset_under_traffic_is_retried_then_recovered_without_losing_a_frame_or_buffer() {
    pf_reset_case(Mode::Inline);
}

#[test]
fn pf_reset_under_traffic_with_workers_loses_no_frame_or_buffer() {
    pf_reset_case(Mode::Workers);
}

fn pf_reset_case(mode: Mode) {
    let mut rig = rig(mode);
    let script = Script {
        actions: vec![
            (1500, act(|n| n.pf_reset_begin())),
            (3000, act(|n| n.pf_reset_end())),
        ],
        healthy_from: 3000,
        stop_at: 6000,
    };
    let (r, marks) = rig.run(script);
    let rep = r.expect("a PF reset must not end the loop");
    let (c, s) = rig.assert_accounted("PF reset");
    assert_recovered("PF reset", &rig, &marks.get(), &c, &s);
    assert_eq!(rep.pf_resets, 1, "{rep:?}");
    assert!(
        rep.maintenance_retries >= 1,
        "the reset was seen in progress: {rep:?}"
    );
    assert!(
        s.rx_vf_disabled + s.rx_queue_disabled > 0,
        "the model dropped frames while the VF was down: {s:?}"
    );
    rig.close("PF reset");
}

#[test]
fn pf_reset_with_a_full_ring_counts_the_unread_frames_as_driver_errors() {
    let mut rig = rig(Mode::Inline);
    // Just before a maintenance pass (every 256th poll), a burst of 300 frames lands in the
    // ring and the PF resets at once: the loop reads one burst, then maintenance re-initialises
    // the VF with the rest still unread. The driver counts them (`dropped_reset`) and the loop
    // adds them to `errors`.
    let mac = rig.fl.backend().mac();
    let injected = rig.injected.clone();
    let burst = move |n: &Nic| {
        let mut gen = Generator::new(GeneratorConfig {
            rate: Rate::MaxSpeed,
            dst_mac: mac,
            src_mac: UPSTREAM,
            seed: 7,
            ..GeneratorConfig::default()
        })
        .unwrap();
        let mut buf = vec![0u8; floodgate_sim::generator::MAX_GEN_FRAME];
        for _ in 0..300 {
            let g = gen.next_into(&mut buf).unwrap();
            n.inject(&buf[..g.len]);
        }
        injected.fetch_add(300, Ordering::Relaxed);
        n.step();
        n.pf_reset();
    };
    let script = Script {
        actions: vec![(6 * 256, act(burst))],
        healthy_from: 7 * 256,
        stop_at: 6000,
    };
    let (r, marks) = rig.run(script);
    let rep = r.expect("a PF reset must not end the loop");
    let (c, s) = rig.assert_accounted("PF reset, full ring");
    assert_recovered("PF reset, full ring", &rig, &marks.get(), &c, &s);
    assert_eq!(rep.pf_resets, 1, "{rep:?}");
    let drv = rig.fl.backend_mut().stats().rx;
    assert!(
        drv.dropped_reset >= 300 - 2 * BATCH as u64,
        "the unread frames were counted at the reset: {drv:?}"
    );
    assert_eq!(c.errors, drv.dropped_reset, "{c:?} {drv:?}");
    rig.close("PF reset, full ring");
}

/// A PF that NACKs every request does not disturb a running VF: the data path needs no
/// mailbox request, and the PF's link notifications (sent with CTS) are taken without one.
/// (A NACK while the VF has to re-negotiate after a PF reset: the next test.)
#[test]
fn mailbox_nack_under_traffic_leaves_the_running_vf_untouched() {
    let mut rig = rig(Mode::Inline);
    let script = Script {
        actions: vec![
            (
                1000,
                act(|n| n.fault_mailbox(0, Some(MailboxFault::Nack)).unwrap()),
            ),
            (1500, act(|n| n.set_link(false))),
            (2500, act(|n| n.set_link(true))),
            (3000, act(|n| n.fault_mailbox(0, None).unwrap())),
        ],
        healthy_from: 3000,
        stop_at: 6000,
    };
    let (r, marks) = rig.run(script);
    let rep = r.expect("a NACKing PF must not end the loop of a running VF");
    let (c, s) = rig.assert_accounted("mailbox NACK");
    assert_recovered("mailbox NACK", &rig, &marks.get(), &c, &s);
    assert_eq!(rig.fl.backend_mut().stats().link_changes, 2);
    assert_eq!((rep.pf_resets, rep.maintenance_retries), (0, 0), "{rep:?}");
    assert_eq!(
        s.rx_delivered + s.rx_link_down,
        s.wire_in,
        "the VF received every frame that arrived: {s:?}"
    );
    rig.close("mailbox NACK");
}

/// A PF that NACKs the VF's requests while the VF re-negotiates after a PF reset: the driver
/// reports `PfRefused`, the loop keeps running and retries the re-initialisation at the next
/// maintenance pass until the PF accepts.
#[test]
fn mailbox_nack_during_pf_reset_recovery_is_retried_until_the_pf_accepts() {
    mailbox_fault_during_pf_reset_recovery(MailboxFault::Nack, "mailbox NACK during recovery");
}

#[test]
fn mailbox_timeout_during_pf_reset_recovery_is_retried_until_the_pf_answers() {
    mailbox_fault_during_pf_reset_recovery(MailboxFault::NoReply, "mailbox timeout");
}

/// A PF reset whose recovery meets `fault` on every mailbox request until pump 3500: the loop
/// must retry (at least once while RSTI was up, and at least once for the faulty
/// re-initialisation), recover once the PF behaves, and lose nothing.
fn mailbox_fault_during_pf_reset_recovery(fault: MailboxFault, what: &str) {
    let mut rig = rig(Mode::Inline);
    let script = Script {
        actions: vec![
            (
                1500,
                act(move |n| {
                    n.fault_mailbox(0, Some(fault)).unwrap();
                    n.pf_reset_begin();
                }),
            ),
            (2000, act(|n| n.pf_reset_end())),
            (3500, act(|n| n.fault_mailbox(0, None).unwrap())),
        ],
        healthy_from: 3500,
        stop_at: 6500,
    };
    let (r, marks) = rig.run(script);
    let rep = r.unwrap_or_else(|e| panic!("{what}: must not end the loop: {e}"));
    let (c, s) = rig.assert_accounted(what);
    assert_recovered(what, &rig, &marks.get(), &c, &s);
    assert_eq!(rep.pf_resets, 1, "{what}: {rep:?}");
    assert!(rep.maintenance_retries >= 2, "{what}: {rep:?}");
    rig.close(what);
}

#[test]
fn surprise_removal_under_traffic_ends_the_loop_with_device_gone_and_counts_stay_exact() {
    surprise_removal_case(Mode::Inline);
}

#[test]
fn surprise_removal_under_traffic_with_workers_ends_cleanly_and_counts_stay_exact() {
    surprise_removal_case(Mode::Workers);
}

fn surprise_removal_case(mode: Mode) {
    let mut rig = rig(mode);
    let script = Script {
        actions: vec![(2000, act(|n| n.surprise_remove(0).unwrap()))],
        healthy_from: u64::MAX,
        stop_at: u64::MAX,
    };
    let (r, marks) = rig.run(script);
    let f = r.expect_err("a removed device ends the loop");
    let e = &f.error;
    assert!(
        matches!(e, BackendError::Vf(floodgate_pmd::Error::DeviceGone { .. })),
        "the error says what happened: {e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("device gone") && msg.contains("vf0"),
        "the message names the device: {msg}"
    );
    // Noticed at the next maintenance pass (every 256 polls), not after the safety deadline.
    let m = marks.get();
    assert!(
        m.pumps <= 2000 + 2 * 256,
        "the removal was noticed late: {m:?}"
    );
    // The loop itself judged what the NIC wrote before it went away (still in host memory) and
    // stopped the workers before returning: nothing is left to take, and the report it returned
    // holds the final counts.
    rig.engine.borrow_mut().stop_source();
    assert_eq!(rig.fl.poll(0), 0, "the loop left frames in the ring");
    assert_eq!(f.report.counters, rig.fl.counters(), "the report is final");
    assert!(
        f.report.counters.invariant_holds(),
        "{:?}",
        f.report.counters
    );
    let (c, s) = rig.assert_accounted("surprise removal");
    assert!(
        s.rx_queue_disabled > 0,
        "frames after the removal were dropped by the model: {s:?}"
    );
    assert!(c.passed > 0, "{c:?}");
    assert!(matches!(
        rig.fl.maintain(),
        Err(BackendError::Vf(floodgate_pmd::Error::DeviceGone { .. }))
    ));
    rig.close("surprise removal");
}

#[test]
fn bad_descriptors_under_traffic_are_counted_as_errors_and_recycled() {
    let mut rig = rig(Mode::Inline);
    const RXE: u32 = 1 << 29;
    let kinds = [
        RxCorruption::ErrorBits(RXE),
        RxCorruption::BadLength(0),
        RxCorruption::BadLength(0xFFFF),
        RxCorruption::NoEop,
    ];
    let mut actions = Vec::new();
    for (i, at) in (500..3000).step_by(97).enumerate() {
        let k = kinds[i % kinds.len()];
        actions.push((at, act(move |n: &Nic| n.corrupt_next_rx(0, 0, k).unwrap())));
    }
    let injected = actions.len() as u64;
    let script = Script {
        actions,
        healthy_from: 3000,
        stop_at: 6000,
    };
    let (r, marks) = rig.run(script);
    r.expect("bad descriptors must not end the loop");
    let (c, s) = rig.assert_accounted("bad descriptors");
    assert_recovered("bad descriptors", &rig, &marks.get(), &c, &s);
    let drv = rig.fl.backend_mut().stats().rx;
    assert!(
        drv.err_mac > 0 && drv.err_length > 0 && drv.err_multiseg > 0,
        "{drv:?}"
    );
    // Each corruption spoils its frame; DD without EOP also takes the next frame with it.
    let no_eop = drv.err_multiseg / 2;
    assert_eq!(drv.err_multiseg % 2, 0, "{drv:?}");
    assert_eq!(drv.err_mac + drv.err_length + no_eop, injected, "{drv:?}");
    assert_eq!(c.errors, injected + no_eop, "{c:?}");
    rig.close("bad descriptors");
}

#[test]
fn tx_stall_under_traffic_pushes_back_counts_every_refusal_and_resumes() {
    let mut rig = rig(Mode::VfTx);
    let script = Script {
        actions: vec![
            (1500, act(|n| n.stall_tx(0, 0, true).unwrap())),
            (3000, act(|n| n.stall_tx(0, 0, false).unwrap())),
        ],
        healthy_from: 3000,
        stop_at: 6000,
    };
    let (r, marks) = rig.run(script);
    let rep = r.expect("a stalled TX ring must not end the loop");
    let (c, s) = rig.assert_accounted("TX stall");
    let m = marks.get();
    assert!(m.stopped, "{m:?}");
    assert_eq!(
        rig.tally.passed.load(Ordering::Relaxed),
        0,
        "survivors left through the VF"
    );
    assert!(c.vf_tx_dropped > 0, "the full ring pushed back: {c:?}");
    assert_eq!(
        c.passed,
        c.vf_tx + c.vf_tx_dropped,
        "every survivor sent or counted as refused: {c:?}"
    );
    let st = rig.fl.backend_mut().stats().tx;
    assert_eq!(st.ring_full, c.vf_tx_dropped, "{st:?}");
    // After the drain the NIC sent everything the ring took, and nothing else.
    assert_eq!(rep.vf_tx_unsent, 0, "{rep:?}");
    assert_eq!(s.tx_frames, c.vf_tx, "{s:?}");
    assert_eq!(s.egress, c.vf_tx, "{s:?}");
    assert_eq!(st.completed, c.vf_tx, "{st:?}");
    assert!(
        s.egress > m.egress_when_healthy + 100,
        "survivors went out again after the stall: {m:?} {s:?}"
    );
    rig.close("TX stall");
}

#[test]
fn unmapped_dma_under_traffic_drops_in_the_model_and_never_reaches_the_loop() {
    let mut rig = rig(Mode::Inline);
    // The IOMMU mapping of the VF's buffer pool disappears while the NIC is receiving (as when
    // the host tears a mapping down under a running device), then comes back.
    let (dev_a, region_a) = (rig.nic.vf(0), rig.pool.clone());
    let (dev_b, region_b) = (rig.nic.vf(0), rig.pool.clone());
    let script = Script {
        actions: vec![
            (
                1500,
                act(move |_| dev_a.dma_unmap(region_a.region()).unwrap()),
            ),
            (
                3000,
                act(move |_| dev_b.dma_map(region_b.region()).unwrap()),
            ),
        ],
        healthy_from: 3000,
        stop_at: 6000,
    };
    let (r, marks) = rig.run(script);
    r.expect("DMA faults must not end the loop");
    let (c, s) = rig.assert_accounted("unmapped DMA");
    assert_recovered("unmapped DMA", &rig, &marks.get(), &c, &s);
    assert_eq!(
        s.rx_dma_fault,
        1500 * BATCH as u64,
        "every frame offered while unmapped (pumps 1500..3000) was dropped for the fault: {s:?}"
    );
    assert_eq!(
        rig.nic.vf(0).dma_faults(),
        s.rx_dma_fault,
        "one recorded IOMMU fault per dropped frame"
    );
    assert_eq!(c.errors, 0, "the driver never saw a faulted frame: {c:?}");
    rig.close("unmapped DMA");
}

#[test]
fn pf_reset_while_the_tx_ring_is_stalled_returns_the_unsent_survivors_and_counts_them() {
    pf_reset_with_stalled_tx(Mode::VfTx);
}

#[test]
fn pf_reset_while_the_tx_ring_is_stalled_with_workers_handing_back() {
    pf_reset_with_stalled_tx(Mode::WorkersVfTx);
}

/// `[reinject] to = "vf"`: the TX ring stalls and fills with survivors, then the PF resets. The
/// driver takes back the buffers the NIC never fetched (`dropped_reset`); they stay counted as
/// `vf_tx` (handed to the VF) and are reported as not sent, never as sent.
fn pf_reset_with_stalled_tx(mode: Mode) {
    let mut rig = rig(mode);
    let script = Script {
        actions: vec![
            (1000, act(|n| n.stall_tx(0, 0, true).unwrap())),
            (2000, act(|n| n.pf_reset_begin())),
            (3000, act(|n| n.pf_reset_end())),
            // After the recovery (the maintenance pass at 3072), so the ring was still full.
            (3500, act(|n| n.stall_tx(0, 0, false).unwrap())),
        ],
        healthy_from: 3500,
        stop_at: 6500,
    };
    let (r, marks) = rig.run(script);
    let rep = r.expect("a PF reset must not end the loop");
    let (c, s) = rig.assert_accounted("PF reset, stalled TX");
    let m = marks.get();
    assert!(m.stopped, "{m:?}");
    assert_eq!(rep.pf_resets, 1, "{rep:?}");
    let st = rig.fl.backend_mut().stats().tx;
    assert!(
        st.dropped_reset > 0,
        "the stalled ring was full at the reset: {st:?}"
    );
    assert_eq!(
        c.passed,
        c.vf_tx + c.vf_tx_dropped,
        "every survivor sent or counted as refused: {c:?}"
    );
    assert_eq!(
        c.vf_tx,
        st.completed + st.dropped_reset,
        "every survivor on the ring either sent or returned at the reset: {c:?} {st:?}"
    );
    assert_eq!(s.egress, st.completed, "{s:?} {st:?}");
    assert_eq!(rep.vf_tx_unsent, 0, "{rep:?}");
    assert!(
        s.egress > m.egress_when_healthy + 100,
        "survivors go out again after the reset: {m:?} {s:?}"
    );
    rig.close("PF reset, stalled TX");
}
