//! The run loop's stop under traffic that never ends, on the in-process model (no root): the
//! drain ends at its deadline and counts what it leaves in the rings; a second stop signal
//! (`abort`) skips the drain; reloads prepared off the polling thread are taken between bursts,
//! rejections counted, while frames keep arriving.

mod loop_util;

use floodgate::config::Config;
use floodgate::daemon::runloop::{run_loop, LoopControl, PreparedRules};
use loop_util::{flood, model_loop, ModelLoop, DEFAULT_RING, NO_RULES};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn setup(workers: usize) -> (floodgate_sim::Nic, ModelLoop) {
    model_loop(NO_RULES, DEFAULT_RING, workers)
}

#[test]
fn a_stop_under_endless_traffic_ends_at_the_drain_deadline_and_counts_the_rest() {
    for workers in [1, 2] {
        let (nic, mut fl) = setup(workers);
        let fed = Rc::new(Cell::new(0u64));
        let mut ctl = LoopControl::new();
        ctl.pump = Some(flood(&nic, fl.backend().mac(), 48, fed.clone()));
        ctl.drain_timeout = Duration::from_millis(150);
        let stop = ctl.stop.clone();
        let t0 = Instant::now();
        ctl.deadline = Some(t0 + Duration::from_millis(100));
        // `deadline` plays the stop signal here; set the flag as well, as the signal thread does.
        stop.store(true, Ordering::Release);
        let r = run_loop(&mut fl, &mut ctl).unwrap();
        let c = r.counters;
        assert!(r.drain_cut, "the rings never went quiet: {r:?}");
        assert!(!r.aborted);
        assert!(c.invariant_holds(), "{c:?}");
        assert_eq!(c.in_flight, 0);
        assert!(c.rx_packets > 0);
        assert_eq!(
            c.rx_packets,
            c.dropped + c.passed + c.errors + c.left,
            "{c:?}"
        );
        // Every frame the model delivered to the VF was taken: judged or counted as left.
        assert_eq!(c.rx_packets, nic.stats().rx_delivered, "workers {workers}");
        // A hang guard, not a timing assertion: without a deadline this would never end.
        assert!(t0.elapsed() < Duration::from_secs(30));
    }
}

#[test]
fn abort_skips_the_drain() {
    let (nic, mut fl) = setup(1);
    let fed = Rc::new(Cell::new(0u64));
    let mut ctl = LoopControl::new();
    ctl.pump = Some(flood(&nic, fl.backend().mac(), 48, fed.clone()));
    // A drain that would outlast the guard below: only `abort` ends it.
    ctl.drain_timeout = Duration::from_secs(600);
    ctl.stop.store(true, Ordering::Release);
    ctl.abort.store(true, Ordering::Release);
    let t0 = Instant::now();
    let r = run_loop(&mut fl, &mut ctl).unwrap();
    assert!(r.aborted && r.drain_cut, "{r:?}");
    assert!(r.counters.invariant_holds(), "{:?}", r.counters);
    assert_eq!(r.counters.rx_packets, nic.stats().rx_delivered);
    assert!(t0.elapsed() < Duration::from_secs(60));
}

#[test]
fn reloads_prepared_elsewhere_are_taken_between_bursts_and_counted() {
    for workers in [1, 3] {
        let (nic, mut fl) = setup(workers);
        let fed = Rc::new(Cell::new(0u64));
        let mut ctl = LoopControl::new();
        ctl.pump = Some(flood(&nic, fl.backend().mac(), 16, fed.clone()));
        let (tx, rx) = std::sync::mpsc::channel();
        let (ret_tx, ret_rx) = std::sync::mpsc::channel();
        ctl.new_rules = Some(rx);
        ctl.retired = Some(ret_tx);
        let drop_all = Config::from_str_named(
            "[device]\npci = \"sim\"\n[filter]\ndefault = \"drop\"\n",
            "drop.toml",
        )
        .unwrap();
        let n = fl.workers();
        assert_eq!(n, if workers == 1 { 0 } else { workers });
        // Three outcomes queued before the loop runs: good, bad, good.
        tx.send(Ok(PreparedRules::new(drop_all.filter.ruleset(), n)))
            .unwrap();
        tx.send(Err("t.toml:1:1: broken".into())).unwrap();
        tx.send(Ok(PreparedRules::new(drop_all.filter.ruleset(), n)))
            .unwrap();
        let drained = Rc::new(RefCell::new(false));
        let d2 = drained.clone();
        ctl.before_drain = Some(Box::new(move || *d2.borrow_mut() = true));
        ctl.drain_timeout = Duration::from_millis(100);
        ctl.deadline = Some(Instant::now() + Duration::from_millis(100));
        let r = run_loop(&mut fl, &mut ctl).unwrap();
        assert_eq!((r.reloads, r.reload_errors), (2, 1), "workers {workers}");
        assert!(*drained.borrow());
        // The replaced sets went back for freeing off the polling thread.
        assert_eq!(ret_rx.try_iter().count(), 2);
        let c = r.counters;
        assert!(c.invariant_holds(), "{c:?}");
        // The new rules drop everything: after the reload nothing passes.
        assert!(c.dropped > 0, "{c:?}");
    }
}
