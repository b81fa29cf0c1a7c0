//! `[[steering]]` entries come out of validation as the steering layer's own rules: what
//! `check-config` accepted is what `Steering::install` gets, with no conversion in between.

use floodgate::config::Config;
use floodgate::steering::{Action, Flow, SteeringRule};
use std::net::Ipv4Addr;

const TEXT: &str = r#"
[device]
pci = "sim"
queues = 2

[[steering]]
name = "dns"
flow = "udp4"
dst = "10.1.2.3/24"
dst_port = 53
queue = 1
location = 7

[[steering]]
flow = "tcp4"
dst = "10.9.9.9/24"
dst_port = 80
vf = 3
"#;

#[test]
fn steering_entries_are_the_steering_layers_rules() {
    let cfg = Config::from_str_named(TEXT, "steer.toml").unwrap_or_else(|e| panic!("{e}"));
    let dns = SteeringRule::new(Flow::Udp4, Action::ToVf { vf: 0, queue: 1 })
        .named("dns")
        .dst_net(Ipv4Addr::new(10, 1, 2, 0), 24)
        .dst_port(53)
        .at(7);
    let web = SteeringRule::new(Flow::Tcp4, Action::ToVf { vf: 3, queue: 0 })
        .named("steering-1")
        .dst_net(Ipv4Addr::new(10, 9, 9, 0), 24)
        .dst_port(80);
    assert_eq!(cfg.steering, vec![dns, web]);
    let summary = cfg.to_string();
    assert!(
        summary.contains(
            "steering 0 \"dns\": Udp4 src any dst 10.1.2.0/255.255.255.0 sport any \
             dport 53/0xffff -> vf 0 queue 1 (location 7)"
        ),
        "{summary}"
    );
    assert!(
        summary.contains(
            "steering 1 \"steering-1\": Tcp4 src any dst 10.9.9.0/255.255.255.0 sport any \
             dport 80/0xffff -> vf 3 queue 0\n"
        ),
        "{summary}"
    );
}

#[test]
fn ip4_steering_matches_addresses_only() {
    let text = "[device]\npci = \"sim\"\n\n[[steering]]\nflow = \"ip4\"\nsrc = \"192.0.2.0/24\"\n";
    let cfg = Config::from_str_named(text, "ip4.toml").unwrap_or_else(|e| panic!("{e}"));
    let want = SteeringRule::new(Flow::Ip4 { proto: None }, Action::ToVf { vf: 0, queue: 0 })
        .named("steering-0")
        .src_net(Ipv4Addr::new(192, 0, 2, 0), 24);
    assert_eq!(cfg.steering, vec![want]);
    let err = Config::from_str_named(&format!("{text}dst_port = 53\n"), "ip4.toml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "ip4.toml:7:12: steering rule 0 (\"steering-0\"): flow = \"ip4\" matches addresses only; \
         use udp4, tcp4 or sctp4 to match ports"
    );
}
