//! Hot reload: a bad config is rejected and the old rules keep running; a good one takes over
//! between two bursts; no packet is lost or counted twice across reloads.

use floodgate::config::Config;
use floodgate::daemon::filterloop::{CountingSink, FilterLoop, LoopOptions};
use floodgate::daemon::runloop::{run_loop, LoopControl};
use floodgate_pmd::{IxgbeVf, Timeouts};
use floodgate_sim::generator::{Generator, GeneratorConfig, Rate};
use floodgate_sim::{Nic, NicConfig};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const BASE: &str = r#"
[device]
pci = "sim"
rx_ring = 4096
pool_size = 16384
[filter]
default = "pass"
[[filter.rule]]
name = "drop-dns"
action = "drop"
proto = "udp"
dst_port = 53
"#;

const PASS_ALL: &str = r#"
[device]
pci = "sim"
[filter]
default = "pass"
[[filter.rule]]
name = "drop-dns"
action = "pass"
proto = "udp"
dst_port = 53
"#;

/// Feeds `n` generated frames through the model into VF 0 (no steering: the stub-free switch
/// sends frames for the VF's MAC to it).
fn feed(nic: &Nic, gen: &mut Generator, n: usize) {
    let mut buf = vec![0u8; floodgate_sim::generator::MAX_GEN_FRAME];
    for _ in 0..n {
        let g = gen.next_into(&mut buf).unwrap();
        nic.inject(&buf[..g.len]);
    }
    nic.step();
}

#[test]
fn bad_reload_keeps_old_rules_good_reload_swaps_and_nothing_is_lost() {
    let nic = Nic::new(NicConfig {
        capture_egress: false,
        ..NicConfig::default()
    });
    let vf = IxgbeVf::open(
        nic.vf(0),
        floodgate_pmd::Config {
            timeouts: Timeouts::fast(),
            rx_ring_size: 4096,
            ..Default::default()
        },
    )
    .unwrap();
    let mut gen = Generator::new(GeneratorConfig {
        rate: Rate::MaxSpeed,
        dst_mac: vf.mac(),
        ..GeneratorConfig::default()
    })
    .unwrap();
    let cfg = Config::from_str_named(BASE, "base.toml").unwrap();
    let opts = LoopOptions::inline(32, CountingSink::default());
    let mut fl = FilterLoop::new(vf, cfg.filter.ruleset(), opts).unwrap();

    // Reloads come from a script of configs: first a broken one, then one that passes DNS.
    let script = Rc::new(Cell::new(0));
    let s2 = script.clone();
    let mut ctl = LoopControl::new();
    ctl.interval = Duration::from_millis(1);
    ctl.reloader = Some(Box::new(move || {
        let text = match s2.get() {
            0 => "[filter]\ndefault = \"maybe\"\n",
            _ => PASS_ALL,
        };
        s2.set(s2.get() + 1);
        Config::from_str_named(text, "reload.toml")
            .map(|c| c.filter.ruleset())
            .map_err(|e| e.to_string())
    }));
    let (stop, reload) = (ctl.stop.clone(), ctl.reload.clone());

    // Phase 1: old rules. Then a bad reload, phase 2, a good reload, phase 3.
    feed(&nic, &mut gen, 2000);
    ctl.deadline = Some(Instant::now() + Duration::from_millis(50));
    let r1 = run_loop(&mut fl, &mut ctl).unwrap();
    let c1 = r1.counters;
    assert!(c1.dropped > 0, "flood dropped by the old rules: {c1:?}");

    // A reload is taken between bursts: request it, let the loop pick it up, then send traffic.
    reload.store(true, Ordering::Release);
    ctl.deadline = Some(Instant::now() + Duration::from_millis(20));
    let r = run_loop(&mut fl, &mut ctl).unwrap();
    assert_eq!(r.reload_errors, 1, "the broken config was rejected");
    assert_eq!(r.reloads, 0);
    assert!(!reload.load(Ordering::Acquire), "request consumed");
    feed(&nic, &mut gen, 2000);
    ctl.deadline = Some(Instant::now() + Duration::from_millis(50));
    let r2 = run_loop(&mut fl, &mut ctl).unwrap();
    let c2 = r2.counters;
    assert!(
        c2.dropped > c1.dropped,
        "old rules still drop after the bad reload"
    );

    reload.store(true, Ordering::Release);
    ctl.deadline = Some(Instant::now() + Duration::from_millis(20));
    let r = run_loop(&mut fl, &mut ctl).unwrap();
    assert_eq!(r.reloads, 1, "the good config was taken");
    feed(&nic, &mut gen, 2000);
    ctl.deadline = Some(Instant::now() + Duration::from_millis(50));
    let r3 = run_loop(&mut fl, &mut ctl).unwrap();
    let c3 = r3.counters;
    assert_eq!(
        c3.dropped, c2.dropped,
        "after the good reload nothing is dropped"
    );
    assert!(!stop.load(Ordering::Relaxed));

    // Every frame the model delivered to VF 0 was judged exactly once.
    let delivered = nic.stats().rx_delivered;
    assert_eq!(c3.rx_packets, delivered, "{c3:?}");
    assert!(c3.invariant_holds(), "{c3:?}");
    assert_eq!(c3.in_flight, 0);
    // Hit counters of the rule kept across the swap (same name).
    let rc = fl.rule_counters();
    assert_eq!(rc.rules[0].hits, c3.rx_packets - rc.default.hits);
}

#[test]
fn a_pf_reset_in_progress_is_retried_and_recovered_not_fatal() {
    let nic = Nic::new(NicConfig {
        capture_egress: false,
        ..NicConfig::default()
    });
    let vf = IxgbeVf::open(
        nic.vf(0),
        floodgate_pmd::Config {
            timeouts: Timeouts::fast(),
            ..Default::default()
        },
    )
    .unwrap();
    let mac = vf.mac();
    let cfg = Config::from_str_named(BASE, "base.toml").unwrap();
    let opts = LoopOptions::inline(32, CountingSink::default());
    let mut fl = FilterLoop::new(vf, cfg.filter.ruleset(), opts).unwrap();
    let mut ctl = LoopControl::new();
    ctl.interval = Duration::from_millis(2);
    // The PF starts resetting (the VF sees RSTI) and finishes 50 ms later.
    nic.pf_reset_begin();
    let n2 = nic.clone();
    let ender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        n2.pf_reset_end();
    });
    ctl.deadline = Some(Instant::now() + Duration::from_millis(200));
    let rep = run_loop(&mut fl, &mut ctl).expect("a PF reset must not end the loop");
    ender.join().unwrap();
    assert!(rep.maintenance_retries >= 1, "{rep:?}");
    assert_eq!(rep.pf_resets, 1, "{rep:?}");
    // And traffic flows again after the recovery.
    let mut gen = Generator::new(GeneratorConfig {
        rate: Rate::MaxSpeed,
        dst_mac: mac,
        ..GeneratorConfig::default()
    })
    .unwrap();
    feed(&nic, &mut gen, 500);
    ctl.deadline = Some(Instant::now() + Duration::from_millis(50));
    let rep = run_loop(&mut fl, &mut ctl).unwrap();
    assert!(rep.counters.rx_packets > 0, "{rep:?}");
    assert!(rep.counters.invariant_holds());
}
