//! Shared set-up of the run-loop tests on the in-process model (no root): the model with VF 0
//! up, a filter loop over it with counting sinks, and generated traffic for its MAC.

#![allow(dead_code)]

use floodgate::config::Config;
use floodgate::daemon::filterloop::{FilterLoop, LoopOptions};
use floodgate::daemon::runloop::LoopControl;
use floodgate::sink::CountingSink;
use floodgate_pmd::{IxgbeVf, Timeouts};
use floodgate_sim::generator::{Generator, GeneratorConfig, Rate, MAX_GEN_FRAME};
use floodgate_sim::{Nic, NicConfig, SimVf};
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A filter loop on the model's VF 0.
pub type ModelLoop = FilterLoop<IxgbeVf<SimVf>, CountingSink>;

/// The smallest config: no rules, default pass.
pub const NO_RULES: &str = "[device]\npci = \"sim\"\n";

/// The model (no egress copies), VF 0 up with fast timeouts and an RX ring of `rx_ring`
/// descriptors, and a filter loop over it judging with the rules of the config `toml`: inline
/// with one sink, fanned out to `workers` workers otherwise.
pub fn model_loop(toml: &str, rx_ring: usize, workers: usize) -> (Nic, ModelLoop) {
    let nic = Nic::new(NicConfig {
        capture_egress: false,
        ..NicConfig::default()
    });
    let vf = IxgbeVf::open(
        nic.vf(0),
        floodgate_pmd::Config {
            timeouts: Timeouts::fast(),
            rx_ring_size: rx_ring,
            ..Default::default()
        },
    )
    .expect("VF 0 up on the model");
    let cfg = Config::from_str_named(toml, "t.toml").expect("the test's config");
    let sinks = (0..workers).map(|_| CountingSink::default()).collect();
    let fl = FilterLoop::new(vf, cfg.filter.ruleset(), LoopOptions::new(32, sinks))
        .expect("the filter loop");
    (nic, fl)
}

/// The RX ring size the pmd uses by default.
pub const DEFAULT_RING: usize = 512;

/// A generator of the demo's mix, addressed to `mac`, unpaced.
pub fn generator(mac: [u8; 6]) -> Generator {
    Generator::new(GeneratorConfig {
        rate: Rate::MaxSpeed,
        dst_mac: mac,
        ..GeneratorConfig::default()
    })
    .expect("generator")
}

/// Puts `n` generated frames on the model's wire (the switch sends frames for the VF's MAC to
/// it; call `nic.step()` to move them into its ring).
pub fn inject(nic: &Nic, gen: &mut Generator, n: usize) {
    let mut buf = vec![0u8; MAX_GEN_FRAME];
    for _ in 0..n {
        let g = gen.next_into(&mut buf).expect("a generated frame");
        nic.inject(&buf[..g.len]);
    }
}

/// A pump that puts `per_pump` generated frames for `mac` on the wire before every poll,
/// forever, counting them in `fed`.
pub fn flood(
    nic: &Nic,
    mac: [u8; 6],
    per_pump: usize,
    fed: Rc<Cell<u64>>,
) -> Box<dyn FnMut() -> usize> {
    let mut gen = generator(mac);
    let n = nic.clone();
    Box::new(move || {
        inject(&n, &mut gen, per_pump);
        fed.set(fed.get() + per_pump as u64);
        n.step()
    })
}

/// A loop control that stops `ms` milliseconds from now.
pub fn control_for(ms: u64) -> LoopControl {
    let mut ctl = LoopControl::new();
    ctl.deadline = Some(deadline_in(ms));
    ctl
}

/// `ms` milliseconds from now.
pub fn deadline_in(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}
