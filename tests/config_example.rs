use floodgate::config::{Config, DeviceAddr, Flow};
use floodgate::filter::{Action, Decision};

#[test]
fn example_config_parses() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/floodgate.toml");
    let cfg = Config::load(path).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(cfg.device.device, DeviceAddr::Pci(p) if p.to_string() == "0000:03:10.0"));
    assert_eq!(cfg.device.pf.as_deref(), Some("enp3s0f0"));
    assert_eq!(cfg.steering.len(), 2);
    assert_eq!(cfg.steering[0].flow, Flow::Udp4);
    assert_eq!(cfg.steering[0].dst_port, 53);
    assert_eq!(cfg.steering[0].dst_port_mask, 0xffff);
    assert_eq!(cfg.filter.default, Decision::Pass);
    let names: Vec<&str> = cfg.filter.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "sample-dns",
            "blocklist",
            "reflected-responses",
            "huge-queries",
            "per-source-limit",
            "drop-other-ipv6"
        ]
    );
    assert!(
        matches!(cfg.filter.rules[4].action, Action::RateLimit(ref r) if r.rate_pps == 50 && r.burst == 100)
    );
    assert_eq!(cfg.daemon.user.as_deref(), Some("nobody"));
    // The summary printed by check-config mentions every rule.
    let text = cfg.to_string();
    for n in names {
        assert!(text.contains(n), "{text}");
    }
}
