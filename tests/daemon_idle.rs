//! The run loop's idle policy (nap on empty rings) and its pump hook (the demo's lockstep model).

use floodgate::config::Config;
use floodgate::daemon::filterloop::{CountingSink, FilterLoop, LoopOptions};
use floodgate::daemon::runloop::{run_loop, IdlePolicy, LoopControl};
use floodgate_pmd::{IxgbeVf, Timeouts};
use floodgate_sim::generator::{Generator, GeneratorConfig, Rate};
use floodgate_sim::{Nic, NicConfig};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

fn setup() -> (
    Nic,
    FilterLoop<floodgate_pmd::IxgbeVf<floodgate_sim::SimVf>, CountingSink>,
    Generator,
) {
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
    let gen = Generator::new(GeneratorConfig {
        rate: Rate::MaxSpeed,
        dst_mac: vf.mac(),
        ..GeneratorConfig::default()
    })
    .unwrap();
    let cfg = Config::from_str_named("[device]\npci = \"sim\"\n", "t.toml").unwrap();
    let opts = LoopOptions::inline(32, CountingSink::default());
    let fl = FilterLoop::new(vf, cfg.filter.ruleset(), opts).unwrap();
    (nic, fl, gen)
}

fn inject(nic: &Nic, gen: &mut Generator, n: usize) {
    let mut buf = vec![0u8; floodgate_sim::generator::MAX_GEN_FRAME];
    for _ in 0..n {
        let g = gen.next_into(&mut buf).unwrap();
        nic.inject(&buf[..g.len]);
    }
}

#[test]
fn an_idle_loop_naps_and_a_busy_policy_never_does() {
    let (_nic, mut fl, _gen) = setup();
    let mut ctl = LoopControl::new();
    assert_eq!(
        ctl.idle,
        IdlePolicy::nap_us(50),
        "adaptive polling by default"
    );
    ctl.deadline = Some(Instant::now() + Duration::from_millis(30));
    let r = run_loop(&mut fl, &mut ctl).unwrap();
    assert!(r.idle_naps > 0, "an empty ring for 30 ms: {r:?}");
    assert_eq!(r.counters.rx_packets, 0);

    ctl.idle = IdlePolicy::BUSY;
    ctl.deadline = Some(Instant::now() + Duration::from_millis(10));
    let r = run_loop(&mut fl, &mut ctl).unwrap();
    assert_eq!(r.idle_naps, 0, "busy-poll never sleeps");
}

#[test]
fn the_pump_runs_before_polls_and_while_draining() {
    let (nic, mut fl, gen) = setup();
    let gen = Rc::new(RefCell::new(gen));
    let draining = Rc::new(Cell::new(false));
    let fed = Rc::new(Cell::new(0u64));
    let mut ctl = LoopControl::new();
    ctl.deadline = Some(Instant::now() + Duration::from_millis(20));
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
