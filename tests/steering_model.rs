//! The steering manager driving the NIC model's PF agent (`floodgate_sim::Pf`): the rules it
//! installs are the ones the model's flow director matches, with the model's own refusals.

use std::net::Ipv4Addr;

use floodgate::steering::sim::{from_sim_spec, to_sim_spec};
use floodgate::steering::{
    Action, Flow, SimBackend, Steering, SteeringBackend, SteeringError, SteeringRule, UserDef,
    VlanMatch,
};
use floodgate_sim::fdir::FdirAction;
use floodgate_sim::generator::build_udp4;
use floodgate_sim::switch::{Ingress, DEFAULT_PF_MAC};
use floodgate_sim::{Nic, NicConfig};

fn dns_to_vf0() -> SteeringRule {
    SteeringRule::new(Flow::Udp4, Action::ToVf { vf: 0, queue: 0 })
        .dst_net(Ipv4Addr::new(192, 0, 2, 53), 32)
        .dst_port(53)
        .named("dns")
}

fn udp_frame(dst_ip: [u8; 4], dport: u16) -> Vec<u8> {
    let mut buf = vec![0u8; 128];
    let n = build_udp4(
        &mut buf,
        DEFAULT_PF_MAC,
        [0x02, 0, 0, 0, 0, 0x42],
        [198, 51, 100, 7],
        dst_ip,
        40000,
        dport,
        b"query",
    )
    .unwrap();
    buf.truncate(n);
    buf
}

/// Runs `frame` through the model's switch and returns the hit count of the rule at `loc`
/// afterwards (the VF is not brought up here, so the frame itself is not delivered).
fn hits_after(nic: &Nic, frame: &[u8], loc: u32) -> Option<u64> {
    nic.pf().switch(|s| {
        s.classify(frame, Ingress::Wire);
        s.fdir().rule_hits(loc)
    })
}

#[test]
fn installed_rules_steer_in_the_model_and_are_removed() {
    let nic = Nic::new(NicConfig {
        capture_egress: false,
        ..NicConfig::default()
    });
    let dns = udp_frame([192, 0, 2, 53], 53);
    let other = udp_frame([192, 0, 2, 53], 123);

    let mut s = Steering::new(SimBackend::model("sim0", nic.pf()), None);
    let rep = s.install(&[dns_to_vf0()]).unwrap();
    let loc = rep.installed[0].location;
    // The model's table size follows ixgbe's default pballoc: locations 0..=2045.
    assert_eq!(loc, 2045);
    let action = nic.pf().switch(|s| s.fdir().rule_action(loc));
    // VF 0, queue 0 is absolute hardware queue 0 (facts §4.3: (vf) * queues_per_pool + ring).
    assert_eq!(action, Some(FdirAction::Queue(0)));
    assert_eq!(hits_after(&nic, &dns, loc), Some(1));
    assert_eq!(
        hits_after(&nic, &other, loc),
        Some(1),
        "port 123 does not match"
    );
    assert_eq!(hits_after(&nic, &dns, loc), Some(2));
    // Read back through the model's GRXCLSRULE: the same rule.
    let back = s.backend().rules();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].1.dst_ip, Ipv4Addr::new(192, 0, 2, 53));
    assert_eq!(back[0].1.action, Action::ToVf { vf: 0, queue: 0 });

    s.remove_all().unwrap();
    assert!(nic.pf().switch(|s| s.ethtool_ntuple_all()).1.is_empty());
    assert_eq!(hits_after(&nic, &dns, loc), None);
}

#[test]
fn model_refusals_come_through_in_plain_words() {
    let nic = Nic::new(NicConfig {
        capture_egress: false,
        ..NicConfig::default()
    });
    // Someone else's rule with an exact-port-only mask is on the port.
    let mut b = SimBackend::model("sim0", nic.pf());
    b.insert_foreign(
        &SteeringRule::new(Flow::Udp4, Action::ToPf { queue: 0 }).dst_port(5353),
        3,
    )
    .unwrap();
    let mut s = Steering::new(b, None);
    let err = s.install(&[dns_to_vf0()]).unwrap_err();
    match &err {
        SteeringError::Kernel { errno, msg, op, .. } => {
            assert_eq!(*errno, libc::EINVAL);
            assert!(op.contains("rule 1 (\"dns\")"), "{op}");
            assert!(msg.to_lowercase().contains("mask"), "{msg}");
        }
        other => panic!("expected the model's EINVAL, got {other:?}"),
    }
    // Only the foreign rule is left.
    assert_eq!(nic.pf().switch(|s| s.ethtool_ntuple_all()).1, vec![3]);

    // VF 40 does not exist in a 2-VF model.
    let mut s = Steering::new(SimBackend::model("sim0", nic.pf()), None);
    let bad = SteeringRule::new(Flow::Udp4, Action::ToVf { vf: 40, queue: 0 }).dst_port(53);
    let err = s.install(&[bad]).unwrap_err();
    assert_eq!(
        match err {
            SteeringError::Kernel { errno, .. } => errno,
            _ => 0,
        },
        libc::EINVAL
    );

    // n-tuple off.
    let mut b = SimBackend::model("sim0", nic.pf());
    b.set_ntuple(false);
    let mut s = Steering::new(b, None);
    let msg = s.install(&[dns_to_vf0()]).unwrap_err().to_string();
    assert!(msg.contains("ethtool -K sim0 ntuple on"), "{msg}");
}

#[test]
fn crash_leftovers_on_the_model_are_replaced() {
    let dir = std::env::temp_dir().join(format!("floodgate-steer-model-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("steering.json");
    let nic = Nic::new(NicConfig {
        capture_egress: false,
        ..NicConfig::default()
    });
    let mut s = Steering::new(SimBackend::model("sim0", nic.pf()), Some(path.clone()));
    s.install(&[dns_to_vf0()]).unwrap();
    drop(s.into_backend()); // crash

    let mut s = Steering::new(SimBackend::model("sim0", nic.pf()), Some(path.clone()));
    let rep = s.install(&[dns_to_vf0()]).unwrap();
    assert_eq!(rep.leftovers_removed, vec![2045]);
    assert_eq!(nic.pf().switch(|s| s.ethtool_ntuple_all()).1, vec![2045]);
    s.remove_all().unwrap();
    assert!(!path.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rss_weights_reach_the_model_reta() {
    let nic = Nic::new(NicConfig {
        capture_egress: false,
        ..NicConfig::default()
    });
    let mut s = Steering::new(SimBackend::model("sim0", nic.pf()), None);
    let rings = s.backend_mut().rx_rings().unwrap();
    assert!(rings >= 2, "model PF has {rings} rings");
    let t = s.set_rss_weights(&[1, 1]).unwrap();
    let (reta, _) = nic.pf().rxfh();
    assert_eq!(reta.iter().map(|&q| u32::from(q)).collect::<Vec<_>>(), t);
    assert!(reta[..64].iter().all(|&q| q == 0) && reta[64..].iter().all(|&q| q == 1));
}

#[test]
fn sim_spec_conversion_round_trips() {
    let mut r = SteeringRule::new(Flow::Ip4 { proto: Some(17) }, Action::Drop)
        .src_net(Ipv4Addr::new(10, 0, 0, 0), 8)
        .dst_port(53);
    r.vlan = Some(VlanMatch {
        tci: 7,
        mask: 0x0fff,
    });
    r.user_def = Some(UserDef {
        value: 1,
        mask: 0x7f,
    });
    let spec = to_sim_spec(&r, 12);
    assert_eq!(spec.location, 12);
    assert_eq!(spec.ring_cookie, u64::MAX);
    assert_eq!(spec.l4_proto, 17);
    let mut back = from_sim_spec(&spec).unwrap();
    assert_eq!(back.location, Some(12));
    back.location = None;
    assert_eq!(back, r);
}
