//! Hot reload: a bad config is rejected and the old rules keep running; a good one takes over
//! between two bursts; no packet is lost or counted twice across reloads.

mod loop_util;

use floodgate::config::Config;
use floodgate::daemon::runloop::{run_loop, LoopControl};
use floodgate_sim::generator::Generator;
use floodgate_sim::Nic;
use loop_util::{deadline_in, generator, inject, model_loop, DEFAULT_RING};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

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
    inject(nic, gen, n);
    nic.step();
}

#[test]
fn bad_reload_keeps_old_rules_good_reload_swaps_and_nothing_is_lost() {
    let (nic, mut fl) = model_loop(BASE, 4096, 1);
    let mut gen = generator(fl.backend().mac());

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
    ctl.deadline = Some(deadline_in(50));
    let r1 = run_loop(&mut fl, &mut ctl).unwrap();
    let c1 = r1.counters;
    assert!(c1.dropped > 0, "flood dropped by the old rules: {c1:?}");

    // A reload is taken between bursts: request it, let the loop pick it up, then send traffic.
    reload.store(true, Ordering::Release);
    ctl.deadline = Some(deadline_in(20));
    let r = run_loop(&mut fl, &mut ctl).unwrap();
    assert_eq!(r.reload_errors, 1, "the broken config was rejected");
    assert_eq!(r.reloads, 0);
    assert!(!reload.load(Ordering::Acquire), "request consumed");
    feed(&nic, &mut gen, 2000);
    ctl.deadline = Some(deadline_in(50));
    let r2 = run_loop(&mut fl, &mut ctl).unwrap();
    let c2 = r2.counters;
    assert!(
        c2.dropped > c1.dropped,
        "old rules still drop after the bad reload"
    );

    reload.store(true, Ordering::Release);
    ctl.deadline = Some(deadline_in(20));
    let r = run_loop(&mut fl, &mut ctl).unwrap();
    assert_eq!(r.reloads, 1, "the good config was taken");
    feed(&nic, &mut gen, 2000);
    ctl.deadline = Some(deadline_in(50));
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
    let (nic, mut fl) = model_loop(BASE, DEFAULT_RING, 1);
    let mut ctl = LoopControl::new();
    ctl.interval = Duration::from_millis(2);
    // The PF starts resetting (the VF sees RSTI) and finishes 50 ms later.
    nic.pf_reset_begin();
    let n2 = nic.clone();
    let ender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        n2.pf_reset_end();
    });
    ctl.deadline = Some(deadline_in(200));
    let rep = run_loop(&mut fl, &mut ctl).expect("a PF reset must not end the loop");
    ender.join().unwrap();
    assert!(rep.maintenance_retries >= 1, "{rep:?}");
    assert_eq!(rep.pf_resets, 1, "{rep:?}");
    // And traffic flows again after the recovery.
    let mut gen = generator(fl.backend().mac());
    feed(&nic, &mut gen, 500);
    ctl.deadline = Some(deadline_in(50));
    let rep = run_loop(&mut fl, &mut ctl).unwrap();
    assert!(rep.counters.rx_packets > 0, "{rep:?}");
    assert!(rep.counters.invariant_holds());
}
