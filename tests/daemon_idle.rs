//! The run loop's idle policy (nap on empty rings) and its pump hook (the demo's lockstep model).

mod loop_util;

use floodgate::daemon::runloop::{run_loop, IdlePolicy, LoopControl};
use loop_util::{control_for, deadline_in, inject, model_loop, DEFAULT_RING, NO_RULES};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

#[test]
fn an_idle_loop_naps_and_a_busy_policy_never_does() {
    let (_nic, mut fl) = model_loop(NO_RULES, DEFAULT_RING, 1);
    let mut ctl = LoopControl::new();
    assert_eq!(
        ctl.idle,
        IdlePolicy::nap_us(50),
        "adaptive polling by default"
    );
    ctl.deadline = Some(deadline_in(30));
    let r = run_loop(&mut fl, &mut ctl).unwrap();
    assert!(r.idle_naps > 0, "an empty ring for 30 ms: {r:?}");
    assert_eq!(r.counters.rx_packets, 0);

    ctl.idle = IdlePolicy::BUSY;
    ctl.deadline = Some(deadline_in(10));
    let r = run_loop(&mut fl, &mut ctl).unwrap();
    assert_eq!(r.idle_naps, 0, "busy-poll never sleeps");
}

#[test]
fn the_pump_runs_before_polls_and_while_draining() {
    let (nic, mut fl) = model_loop(NO_RULES, DEFAULT_RING, 1);
    let gen = Rc::new(RefCell::new(loop_util::generator(fl.backend().mac())));
    let draining = Rc::new(Cell::new(false));
    let fed = Rc::new(Cell::new(0u64));
    let mut ctl = control_for(20);
    let (n2, g2, d2, f2) = (nic.clone(), gen.clone(), draining.clone(), fed.clone());
    // 40 frames per pump for the first 50 pumps, then 500 frames once the drain has begun: the
    // drain must keep pumping (and polling) until those are judged too.
    let calls = Cell::new(0u32);
    ctl.pump = Some(Box::new(move || {
        calls.set(calls.get() + 1);
        let n = if d2.get() {
            if f2.get() < 2000 + 500 {
                500
            } else {
                0
            }
        } else if calls.get() <= 50 {
            40
        } else {
            0
        };
        inject(&n2, &mut g2.borrow_mut(), n);
        f2.set(f2.get() + n as u64);
        n2.step()
    }));
    let d3 = draining.clone();
    ctl.before_drain = Some(Box::new(move || d3.set(true)));
    let r = run_loop(&mut fl, &mut ctl).unwrap();
    assert_eq!(fed.get(), 2500);
    assert_eq!(r.counters.rx_packets, 2500, "{r:?}");
    assert_eq!(nic.stats().rx_no_desc, 0);
    assert!(r.counters.invariant_holds());
    assert_eq!(r.counters.in_flight, 0);
}

#[test]
fn the_pumps_time_is_counted_apart_from_the_polls() {
    let (nic, mut fl) = model_loop(NO_RULES, DEFAULT_RING, 1);
    let mut gen = loop_util::generator(fl.backend().mac());
    let calls = Rc::new(Cell::new(0u32));
    let c2 = calls.clone();
    let n2 = nic.clone();
    let mut ctl = control_for(30);
    ctl.idle = IdlePolicy::BUSY;
    // A slow model: every pump sleeps 200 µs, and the first 20 bring a burst each.
    ctl.pump = Some(Box::new(move || {
        c2.set(c2.get() + 1);
        std::thread::sleep(std::time::Duration::from_micros(200));
        if c2.get() <= 20 {
            inject(&n2, &mut gen, 32);
        }
        n2.step()
    }));
    let r = run_loop(&mut fl, &mut ctl).unwrap();
    assert_eq!(r.counters.rx_packets, 20 * 32, "{r:?}");
    let slept = std::time::Duration::from_micros(200) * calls.get();
    assert!(r.pump_time >= slept, "{:?} < {slept:?}", r.pump_time);
    // The polls themselves are cheap next to the sleeping pump, and they were timed.
    assert!(r.filter_time > std::time::Duration::ZERO, "{r:?}");
    assert!(r.filter_time < r.pump_time, "{r:?}");
    assert!(r.filter_ns_per_packet() > 0.0 && r.pump_ns_per_packet() > r.filter_ns_per_packet());
}
