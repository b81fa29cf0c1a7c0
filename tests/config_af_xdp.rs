//! `[device] backend = "af_xdp"`: the device keys, the VF keys it accepts or refuses, its
//! `[[steering]]` rules (IPv6 included) as the XDP generator's rules, and the `check-config`
//! explanation.

use std::net::{Ipv4Addr, Ipv6Addr};

use floodgate::config::{
    AddrMatch, AfXdpDevice, Config, DeviceAddr, XdpFlow, XdpMode, XdpRule, ZeroCopy,
};

const DEV: &str = "[device]\nbackend = \"af_xdp\"\nifname = \"srv0\"\n";

fn ok(text: &str) -> Config {
    Config::from_str_named(text, "x.toml").unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn err(text: &str) -> String {
    match Config::from_str_named(text, "x.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn af_xdp_device_with_defaults() {
    let cfg = ok(DEV);
    assert_eq!(
        cfg.device.device,
        DeviceAddr::AfXdp(AfXdpDevice {
            ifname: "srv0".into(),
            xdp_mode: XdpMode::Auto,
            zero_copy: ZeroCopy::Auto,
        })
    );
    assert_eq!(cfg.device.queues, 1);
    assert_eq!(cfg.device.pf, None);
    assert!(cfg.steering.is_empty() && cfg.xdp_steering.is_empty());
    assert_eq!(cfg.device.xdp_chunk_size(), 2048);
    assert_eq!(cfg.device.device.to_string(), "af_xdp:srv0");
    let summary = cfg.to_string();
    assert!(
        summary.contains("every other frame passes to the kernel of srv0 untouched (XDP_PASS); with no steering rules that is every frame"),
        "{summary}"
    );
}

#[test]
fn modes_queues_and_vf_backend_default() {
    let cfg = ok(&format!(
        "{DEV}queues = 16\nxdp_mode = \"generic\"\nzero_copy = \"off\"\npool_size = 16384\n"
    ));
    let x = cfg.device.af_xdp().expect("af_xdp");
    assert_eq!((x.xdp_mode, x.zero_copy), (XdpMode::Generic, ZeroCopy::Off));
    assert_eq!(cfg.device.queues, 16);
    assert_eq!(cfg.device.xdp_frames_per_queue(), 1024);
    let cfg = ok(&format!(
        "{DEV}xdp_mode = \"native\"\nzero_copy = \"require\"\n"
    ));
    let x = cfg.device.af_xdp().expect("af_xdp");
    assert_eq!(
        (x.xdp_mode, x.zero_copy),
        (XdpMode::Native, ZeroCopy::Require)
    );
    // backend = "vf" is the default and means what pci always meant.
    let vf = ok("[device]\nbackend = \"vf\"\npci = \"0000:03:10.0\"\n");
    assert!(matches!(vf.device.device, DeviceAddr::Pci(_)));
    assert!(vf.device.af_xdp().is_none());
}

#[test]
fn device_errors_name_the_key_and_position() {
    let cases: &[(&str, &str)] = &[
        (
            "[device]\nbackend = \"af_xdp\"\nifname = \"srv0\"\npci = \"0000:03:10.0\"\n",
            "x.toml:4:7: [device]: pci names a VF, but backend = \"af_xdp\" drives an interface by name",
        ),
        (
            "[device]\nbackend = \"af_xdp\"\n",
            "x.toml:1:1: [device]: backend = \"af_xdp\" needs the interface: add `ifname = \"eth0\"`",
        ),
        (
            "[device]\nbackend = \"xdp\"\nifname = \"srv0\"\n",
            "x.toml:2:11: [device]: backend = \"xdp\" is not \"vf\"",
        ),
        (
            "[device]\npci = \"sim\"\nifname = \"srv0\"\n",
            "x.toml:3:10: [device]: ifname applies only to backend = \"af_xdp\"",
        ),
        (
            "[device]\nbackend = \"vf\"\nxdp_mode = \"native\"\npci = \"sim\"\n",
            "x.toml:3:12: [device]: xdp_mode applies only to backend = \"af_xdp\"",
        ),
        (
            "[device]\nqueues = 2\n",
            "x.toml:1:1: [device]: pci is missing",
        ),
        (
            &format!("{DEV}xdp_mode = \"driver\"\n"),
            "x.toml:4:12: [device]: xdp_mode = \"driver\" is not \"auto\"",
        ),
        (
            &format!("{DEV}zero_copy = true\n"),
            "x.toml:4:13: invalid type: boolean `true`, expected a string",
        ),
        (
            &format!("{DEV}zero_copy = \"yes\"\n"),
            "x.toml:4:13: [device]: zero_copy = \"yes\" is not \"auto\"",
        ),
        (
            &format!("{DEV}xdp_mode = \"generic\"\nzero_copy = \"require\"\n"),
            "x.toml:5:13: [device]: zero_copy = \"require\" cannot work with xdp_mode = \"generic\"",
        ),
        (
            &format!("{DEV}ifname = \"a/b\"\n"),
            "x.toml:4:1: duplicate key",
        ),
        (
            "[device]\nbackend = \"af_xdp\"\nifname = \"a b\"\n",
            "x.toml:3:10: [device]: ifname = \"a b\" is not a valid interface name",
        ),
        (
            &format!("{DEV}pf = \"eth0\"\n"),
            "x.toml:4:6: [device]: pf names the PF",
        ),
        (
            &format!("{DEV}xcast = \"promisc\"\n"),
            "x.toml:4:9: [device]: xcast asks a VF's PF",
        ),
        (
            &format!("{DEV}queues = 65\n"),
            "x.toml:4:10: [device]: queues = 65 is out of range: it must be from 1 to 64",
        ),
        (
            &format!("{DEV}mtu = 3695\n"),
            "x.toml:4:7: [device]: mtu = 3695 does not fit an AF_XDP chunk: a 4096-byte chunk holds 3712 bytes of frame behind headroom = 128 and the kernel's 256, so the MTU can be at most 3694",
        ),
        (
            &format!("{DEV}queues = 4\npool_size = 2048\n"),
            "x.toml:5:13: [device]: pool_size = 2048 cannot fill the rings",
        ),
    ];
    for (text, want) in cases {
        let got = err(text);
        assert!(got.starts_with(want), "got:  {got}\nwant: {want}…\n{text}");
    }
    // The VF keeps its limit of 8 queues.
    assert!(err("[device]\npci = \"sim\"\nqueues = 9\n").contains("from 1 to 8"));
}

#[test]
fn mtu_picks_the_chunk_size() {
    let small = ok(&format!("{DEV}mtu = 1500\n"));
    assert_eq!(small.device.xdp_chunk_size(), 2048);
    // 2048 - 256 - 128 = 1664 bytes of frame: MTU 1646 is the largest that fits.
    assert_eq!(
        ok(&format!("{DEV}mtu = 1646\n")).device.xdp_chunk_size(),
        2048
    );
    assert_eq!(
        ok(&format!("{DEV}mtu = 1647\n")).device.xdp_chunk_size(),
        4096
    );
    assert_eq!(
        ok(&format!("{DEV}mtu = 3694\n")).device.xdp_chunk_size(),
        4096
    );
    // Less headroom, more room for the frame.
    assert_eq!(
        ok(&format!("{DEV}mtu = 3822\nheadroom = 0\n"))
            .device
            .xdp_chunk_size(),
        4096
    );
}

const RULES: &str = r#"
[[steering]]
name = "dns4"
flow = "udp4"
dst = "10.53.0.1"
dst_port = 53

[[steering]]
name = "dns6"
flow = "udp6"
src = "2001:db8:1::77/48"
dst_port = 53
src_port = 1024
src_port_mask = 0xfc00

[[steering]]
flow = "tcp6"
dst = "2001:db8::1"
dst_port = 443

[[steering]]
flow = "ip6"
src = "fd00::/8"

[[steering]]
flow = "ip4"
src = "192.0.2.0/24"

[[steering]]
flow = "tcp4"
src = "198.51.100.7/32"
dst = "203.0.113.0/25"
"#;

#[test]
fn steering_rules_become_xdp_rules_ipv6_included() {
    let cfg = ok(&format!("{DEV}queues = 2\n{RULES}"));
    assert!(cfg.steering.is_empty(), "no ethtool rules for AF_XDP");
    let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    let mut dns4 = XdpRule::new(XdpFlow::Udp4)
        .dst(AddrMatch::v4_prefix(Ipv4Addr::new(10, 53, 0, 1), 32))
        .dst_port(53);
    dns4.name = Some("dns4".into());
    let mut dns6 = XdpRule::new(XdpFlow::Udp6)
        .src(AddrMatch::v6_prefix(v6("2001:db8:1::"), 48))
        .dst_port(53);
    dns6.src_port = Some((1024, 0xfc00));
    dns6.name = Some("dns6".into());
    let mut web6 = XdpRule::new(XdpFlow::Tcp6)
        .dst(AddrMatch::v6_prefix(v6("2001:db8::1"), 128))
        .dst_port(443);
    web6.name = Some("steering-2".into());
    let mut ula =
        XdpRule::new(XdpFlow::Ip6 { proto: None }).src(AddrMatch::v6_prefix(v6("fd00::"), 8));
    ula.name = Some("steering-3".into());
    let mut net4 = XdpRule::new(XdpFlow::Ip4 { proto: None })
        .src(AddrMatch::v4_prefix(Ipv4Addr::new(192, 0, 2, 0), 24));
    net4.name = Some("steering-4".into());
    // Different masks per rule: fine here (the 82599 would refuse them, one mask per port).
    let mut tcp4 = XdpRule::new(XdpFlow::Tcp4)
        .src(AddrMatch::v4_prefix(Ipv4Addr::new(198, 51, 100, 7), 32))
        .dst(AddrMatch::v4_prefix(Ipv4Addr::new(203, 0, 113, 0), 25));
    tcp4.name = Some("steering-5".into());
    assert_eq!(cfg.xdp_steering, vec![dns4, dns6, web6, ula, net4, tcp4]);

    let summary = cfg.to_string();
    for line in [
        "device af_xdp on srv0: 2 AF_XDP socket(s) on RX queue(s) 0..=1, rx/fill ring 512, tx/completion ring 512, 2048 UMEM chunks of 2048 bytes per socket, headroom 128, burst 32, mtu 1500\n",
        "xdp: a program generated from the 6 steering rule(s) below is verified by the kernel and attached to srv0 (native mode, else generic; the mode obtained is logged); sockets bind zero copy where the driver supports it, else copy",
        "steering 0 \"dns4\": udp4 src any dst 10.53.0.1/32 sport any dport 53/0xffff -> the AF_XDP socket of the RX queue it arrives on (the kernel if that queue has none)\n",
        "steering 1 \"dns6\": udp6 src 2001:db8:1::/48 dst any sport 1024/0xfc00 dport 53/0xffff -> the AF_XDP socket",
        "steering 3 \"steering-3\": ip6 src fd00::/8 dst any sport any dport any -> ",
        "xdp: IPv6 rules are steered by the XDP program (the 82599/X540 VF backend cannot steer IPv6)\n",
        "xdp: every other frame passes to the kernel of srv0 untouched (XDP_PASS)\n",
        "xdp: the attachment is recorded in /run/floodgate/xdp-srv0.json (a program a crashed run left is removed at the next start)\n",
    ] {
        assert!(summary.contains(line), "missing {line:?} in\n{summary}");
    }
}

#[test]
fn ipv4_only_config_does_not_mention_ipv6() {
    let cfg = ok(&format!(
        "{DEV}[[steering]]\nflow = \"udp4\"\ndst_port = 53\n"
    ));
    assert!(!cfg.to_string().contains("IPv6"), "{cfg}");
}

#[test]
fn steering_errors_for_af_xdp() {
    let st = |body: &str| format!("{DEV}[[steering]]\nname = \"s\"\n{body}");
    let cases: &[(String, &str)] = &[
        (
            st("flow = \"udp4\"\nqueue = 1\n"),
            "x.toml:7:9: steering rule 0 (\"s\"): queue does not apply to backend = \"af_xdp\": an XDP program can only hand a frame to the socket of the RX queue it arrived on",
        ),
        (
            st("flow = \"udp4\"\nvf = 1\n"),
            "x.toml:7:6: steering rule 0 (\"s\"): vf does not apply to backend = \"af_xdp\"",
        ),
        (
            st("flow = \"udp4\"\nlocation = 5\n"),
            "x.toml:7:12: steering rule 0 (\"s\"): location does not apply to backend = \"af_xdp\"",
        ),
        (
            st("flow = \"sctp6\"\n"),
            "x.toml:6:8: steering rule 0 (\"s\"): flow = \"sctp6\" is not one of udp4, tcp4, sctp4, ip4, udp6, tcp6, ip6",
        ),
        (
            st("flow = \"udp6\"\ndst = \"10.0.0.1\"\n"),
            "x.toml:7:7: steering rule 0 (\"s\"): dst = \"10.0.0.1\" is an IPv4 address but flow = \"udp6\" is IPv6",
        ),
        (
            st("flow = \"tcp4\"\nsrc = \"2001:db8::/32\"\n"),
            "x.toml:7:7: steering rule 0 (\"s\"): src = \"2001:db8::/32\" is an IPv6 address but flow = \"tcp4\" is IPv4",
        ),
        (
            st("flow = \"ip6\"\ndst_port = 53\n"),
            "x.toml:7:12: steering rule 0 (\"s\"): flow = \"ip6\" matches addresses only",
        ),
        (
            st("flow = \"udp6\"\nsrc = \"2001:db8::/129\"\n"),
            "x.toml:7:7: steering rule 0 (\"s\"): src: prefix length \"129\" is not a number from 0 to 128",
        ),
        (
            st("flow = \"udp6\"\ndst_port_mask = 255\n"),
            "x.toml:7:17: steering rule 0 (\"s\"): dst_port_mask is given without dst_port",
        ),
    ];
    for (text, want) in cases {
        let got = err(text);
        assert!(got.starts_with(want), "got:  {got}\nwant: {want}…\n{text}");
    }
}

#[test]
fn vf_backend_still_refuses_ipv6_and_points_at_af_xdp() {
    let got = err("[device]\npci = \"sim\"\n[[steering]]\nflow = \"udp6\"\n");
    assert!(
        got.contains("ixgbe steers IPv4 only") && got.contains("backend = \"af_xdp\" steers udp6"),
        "{got}"
    );
    let got =
        err("[device]\npci = \"sim\"\n[[steering]]\nflow = \"udp4\"\ndst = \"2001:db8::1\"\n");
    assert!(got.contains("ixgbe steers IPv4 flows only"), "{got}");
}

#[test]
fn reinject_to_vf_is_refused_tap_accepted() {
    let got = err(&format!("{DEV}[reinject]\nto = \"vf\"\n"));
    assert!(
        got.starts_with("x.toml:5:6: [reinject]: to = \"vf\" transmits survivors out of the VF; with backend = \"af_xdp\" they go back to the kernel through the TAP"),
        "{got}"
    );
    let got = err(&format!("{DEV}[reinject]\ndst_mac = \"pf\"\n"));
    assert!(got.contains("applies only to to = \"vf\""), "{got}");
    let cfg = ok(&format!(
        "{DEV}[reinject]\nto = \"tap\"\n[tap]\nname = \"fg0\"\n"
    ));
    assert_eq!(cfg.tap.name, "fg0");
}

#[test]
fn vf_ring_and_buffer_keys_are_accepted_with_their_af_xdp_meaning() {
    let cfg = ok(&format!(
        "{DEV}queues = 2\nrx_ring = 1024\ntx_ring = 256\npool_size = 8192\nheadroom = 64\nburst = 64\n"
    ));
    let d = &cfg.device;
    assert_eq!(
        (d.rx_ring, d.tx_ring, d.headroom, d.burst),
        (1024, 256, 64, 64)
    );
    assert_eq!(d.xdp_frames_per_queue(), 4096);
    assert!(cfg.to_string().contains(
        "2 AF_XDP socket(s) on RX queue(s) 0..=1, rx/fill ring 1024, tx/completion ring 256, 4096 UMEM chunks of 2048 bytes per socket, headroom 64, burst 64"
    ));
}
