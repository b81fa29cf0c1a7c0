//! Every configuration error path: each case gives a config, the line the error must point at,
//! and words the message must contain.

use floodgate::config::{Config, ConfigError};

const DEV: &str = "[device]\npci = \"sim\"\n";

fn err(text: &str) -> ConfigError {
    match Config::from_str_named(text, "t.toml") {
        Ok(_) => panic!("config unexpectedly accepted:\n{text}"),
        Err(e) => e,
    }
}

/// Checks that the error names the file and `line`, and contains every word of `needles`.
fn check(text: &str, line: usize, needles: &[&str]) {
    let e = err(text);
    let msg = e.to_string();
    let prefix = format!("t.toml:{line}:");
    assert!(
        msg.starts_with(&prefix),
        "expected {prefix}… for\n{text}\ngot: {msg}"
    );
    for n in needles {
        assert!(msg.contains(n), "expected {n:?} in: {msg}");
    }
}

fn with_dev(rest: &str) -> String {
    format!("{DEV}{rest}")
}

fn rule(body: &str) -> String {
    with_dev(&format!("[[filter.rule]]\nname = \"r\"\n{body}"))
}

#[test]
fn io_error_names_the_file() {
    let e = Config::load("/nonexistent/floodgate.toml").unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }));
    assert!(e.to_string().contains("/nonexistent/floodgate.toml"), "{e}");
}

#[test]
fn syntax_errors() {
    check("[device\npci = \"sim\"\n", 1, &[]);
    check("[device]\npci = \"sim\"\nbogus = 1\n", 3, &["bogus"]);
    check("[device]\npci = \"sim\"\n[extra]\n", 3, &["extra"]);
    check("[device]\npci = 7\n", 2, &["string"]);
    check("[device]\n", 1, &["pci"]);
    check(
        &rule("action = \"drop\"\nsrcport = 5\n"),
        6,
        &["srcport", "src_port"],
    );
    check(&with_dev("[[filter.rule]]\nname = \"r\"\n"), 3, &["action"]);
    check(&with_dev("[[steering]]\ndst_port = 53\n"), 3, &["flow"]);
}

#[test]
fn missing_device_section() {
    check("[tap]\nname = \"x\"\n", 1, &["[device]", "missing"]);
}

#[test]
fn device_errors() {
    check(
        "[device]\npci = \"03:10\"\n",
        2,
        &["[device]", "PCI address"],
    );
    check(
        "[device]\npci = \"0000:03:20.0\"\n",
        2,
        &["function below 8"],
    );
    check(
        "[device]\npci = \"0000:03:10.8\"\n",
        2,
        &["function below 8"],
    );
    check(
        "[device]\npci = \"sim\"\npf = \"a/b\"\n",
        3,
        &["pf", "interface name"],
    );
    check(
        "[device]\npci = \"sim\"\npf = \"averyveryverylongname\"\n",
        3,
        &["interface name"],
    );
    check(
        "[device]\npci = \"sim\"\nqueues = 0\n",
        3,
        &["queues = 0", "from 1 to 8"],
    );
    check(
        "[device]\npci = \"sim\"\nrx_ring = 100\n",
        3,
        &["rx_ring = 100", "power of two"],
    );
    check(
        "[device]\npci = \"sim\"\ntx_ring = 8192\n",
        3,
        &["tx_ring = 8192", "64 to 4096"],
    );
    check("[device]\npci = \"sim\"\nrx_ring = 32\n", 3, &["rx_ring"]);
    check(
        "[device]\npci = \"sim\"\nheadroom = 300\n",
        3,
        &["headroom = 300", "0 to 256"],
    );
    check("[device]\npci = \"sim\"\nheadroom = -1\n", 3, &["headroom"]);
    check("[device]\npci = \"sim\"\nburst = 0\n", 3, &["burst"]);
    check(
        "[device]\npci = \"sim\"\nqueues = 2\nrx_ring = 1024\ntx_ring = 1024\npool_size = 4000\n",
        6,
        &["pool_size = 4000", "4096 buffers"],
    );
}

#[test]
fn steering_errors() {
    let st = |body: &str| with_dev(&format!("[[steering]]\nname = \"s\"\n{body}"));
    check(
        &st("flow = \"udp6\"\n"),
        5,
        &["steering rule 0 (\"s\")", "udp6", "IPv4"],
    );
    check(
        &st("flow = \"udp4\"\ndst = \"2001:db8::1\"\n"),
        6,
        &["IPv4 flows only"],
    );
    check(
        &st("flow = \"udp4\"\ndst = \"10.0.0.0/33\"\n"),
        6,
        &["prefix length"],
    );
    check(
        &st("flow = \"udp4\"\ndst = \"10.0.0.300\"\n"),
        6,
        &["not an IPv4 or IPv6 address"],
    );
    check(
        &st("flow = \"ip4\"\ndst_port = 53\n"),
        6,
        &["addresses only"],
    );
    check(
        &st("flow = \"udp4\"\ndst_port = 70000\n"),
        6,
        &["dst_port = 70000"],
    );
    check(
        &st("flow = \"udp4\"\ndst_port_mask = 255\n"),
        6,
        &["without dst_port"],
    );
    check(
        &st("flow = \"udp4\"\ndst_port = 53\ndst_port_mask = 0\n"),
        7,
        &["dst_port_mask = 0"],
    );
    check(&st("flow = \"udp4\"\nvf = 63\n"), 6, &["vf = 63"]);
    check(
        &st("flow = \"udp4\"\nqueue = 1\n"),
        6,
        &["queue = 1 is not polled", "queues = 1"],
    );
    check(
        &st("flow = \"udp4\"\nlocation = 5000\n"),
        6,
        &["location = 5000"],
    );
    check(
        &st("flow = \"udp4\"\nlocation = 3\n[[steering]]\nflow = \"udp4\"\nlocation = 3\n"),
        7,
        &[
            "steering rule 1",
            "location 3 is also used by steering rule 0",
        ],
    );
    check(
        &st("flow = \"udp4\"\ndst = \"192.0.2.1/32\"\ndst_port = 53\n[[steering]]\nname = \"t\"\nflow = \"udp4\"\ndst = \"192.0.2.0/24\"\ndst_port = 53\n"),
        8,
        &["one mask per port", "dst mask differs", "steering rule 0 (\"s\")"],
    );
    // A real device with steering rules needs the PF name.
    check(
        "[device]\npci = \"0000:03:10.0\"\n[[steering]]\nflow = \"udp4\"\ndst_port = 53\n",
        3,
        &["pf ="],
    );
}

#[test]
fn filter_section_errors() {
    check(
        &with_dev("[filter]\ndefault = \"reject\"\n"),
        4,
        &["[filter]", "reject"],
    );
    check(&with_dev("[filter]\nrules = []\n"), 4, &["rules"]);
}

#[test]
fn rule_matcher_errors() {
    check(
        &rule("action = \"drop\"\nproto = \"gre\"\n"),
        6,
        &["filter rule 0 (\"r\")", "unknown protocol \"gre\""],
    );
    check(&rule("action = \"drop\"\nproto = 300\n"), 6, &["proto"]);
    check(&rule("action = \"drop\"\nproto = []\n"), 6, &["empty list"]);
    check(
        &rule("action = \"drop\"\nproto = 1.5\n"),
        6,
        &["expected a name or number"],
    );
    check(
        &rule("action = \"drop\"\nfamily = \"ipx\"\n"),
        6,
        &["family"],
    );
    check(
        &rule("action = \"drop\"\nsrc = \"10.0.0.0/40\"\n"),
        6,
        &["src", "prefix length"],
    );
    check(
        &rule("action = \"drop\"\ndst = [\"10.0.0.1\", \"nope\"]\n"),
        6,
        &["dst", "\"nope\""],
    );
    check(
        &rule("action = \"drop\"\nsrc = 5\n"),
        6,
        &["expected a string"],
    );
    check(&rule("action = \"drop\"\nsrc = []\n"), 6, &["empty list"]);
    check(
        &rule("action = \"drop\"\ndst_port = 65536\n"),
        6,
        &["65536 is out of range"],
    );
    check(
        &rule("action = \"drop\"\ndst_port = \"2000-1000\"\n"),
        6,
        &["range \"2000-1000\" is empty"],
    );
    check(
        &rule("action = \"drop\"\nsrc_port = \"x\"\n"),
        6,
        &["not a number or a range"],
    );
    check(
        &rule("action = \"drop\"\nsrc_port = true\n"),
        6,
        &["expected a number"],
    );
    check(
        &rule("action = \"drop\"\nsrc_port = []\n"),
        6,
        &["empty list"],
    );
    check(
        &rule("action = \"drop\"\nlen = \"100-50\"\n"),
        6,
        &["len", "empty"],
    );
    check(&rule("action = \"drop\"\nlen = -3\n"), 6, &["len"]);
}

#[test]
fn rule_bytes_errors() {
    check(
        &rule("action = \"drop\"\nbytes = 5\n"),
        6,
        &["bytes", "expected a table"],
    );
    check(
        &rule("action = \"drop\"\nbytes = { value = \"08\" }\n"),
        6,
        &["offset is missing"],
    );
    check(
        &rule("action = \"drop\"\nbytes = { offset = 1 }\n"),
        6,
        &["value is missing"],
    );
    check(
        &rule("action = \"drop\"\nbytes = { offset = 70000, value = \"08\" }\n"),
        6,
        &["offset"],
    );
    check(
        &rule("action = \"drop\"\nbytes = { offset = 1, value = \"0x8\" }\n"),
        6,
        &["hex digits"],
    );
    check(
        &rule("action = \"drop\"\nbytes = { offset = 1, value = \"zz\" }\n"),
        6,
        &["hex digits"],
    );
    check(
        &rule("action = \"drop\"\nbytes = { offset = 1, value = 8 }\n"),
        6,
        &["hex string"],
    );
    check(
        &rule("action = \"drop\"\nbytes = { offset = 1, value = \"0800\", mask = \"ff\" }\n"),
        6,
        &["mask has 1 bytes but value has 2"],
    );
    check(
        &rule("action = \"drop\"\nbytes = { offset = 1, value = \"08\", mask = 1 }\n"),
        6,
        &["mask must be"],
    );
    check(
        &rule("action = \"drop\"\nbytes = { offset = 1, value = \"08\", mask = \"g0\" }\n"),
        6,
        &["mask"],
    );
    check(
        &rule("action = \"drop\"\nbytes = { offset = 1, value = \"08\", layer = \"l7\" }\n"),
        6,
        &["layer \"l7\""],
    );
    check(
        &rule("action = \"drop\"\nbytes = { offset = 1, value = \"08\", layer = 3 }\n"),
        6,
        &["layer must be"],
    );
    check(
        &rule("action = \"drop\"\nbytes = { offset = 1, value = \"08\", where = 3 }\n"),
        6,
        &["unknown key \"where\""],
    );
    check(&rule("action = \"drop\"\nbytes = [5]\n"), 6, &["bytes[0]"]);
    check(
        &rule("action = \"drop\"\nbytes = { offset = 1, value = \"00112233445566778899aabbccddeeff00\" }\n"),
        6,
        &["17 bytes"],
    );
}

#[test]
fn rule_bpf_errors() {
    check(
        &rule("action = \"drop\"\nbpf = \"2,6 0 0\"\n"),
        6,
        &["bpf", "four decimal numbers"],
    );
    check(
        &rule("action = \"drop\"\nbpf = \"x\"\n"),
        6,
        &["instruction count"],
    );
    check(
        &rule("action = \"drop\"\nbpf = \"3,6 0 0 0\"\n"),
        6,
        &["the count says 3"],
    );
    check(
        &rule("action = \"drop\"\nbpf = \"1,40 0 0 12\"\n"),
        6,
        &["does not end with a return"],
    );
    check(
        &rule("action = \"drop\"\nbpf = \"2,21 5 0 1,6 0 0 0\"\n"),
        6,
        &["jump target"],
    );
    check(
        &rule("action = \"drop\"\nbpf = \"2,52 0 0 0,6 0 0 0\"\n"),
        6,
        &["division"],
    );
    check(
        &rule("action = \"drop\"\nbpf = \"2,96 0 0 3,6 0 0 0\"\n"),
        6,
        &["slot 3"],
    );
}

#[test]
fn rule_tcpdump_errors() {
    if !floodgate::libpcap::LibPcap::available() {
        // Without libpcap the error must say what to install.
        check(
            &rule("action = \"drop\"\ntcpdump = \"udp\"\n"),
            6,
            &["apt-get install libpcap0.8"],
        );
        println!("skipped: libpcap not installed (apt-get install libpcap0.8)");
        return;
    }
    check(
        &rule("action = \"drop\"\ntcpdump = \"udp and port banana\"\n"),
        6,
        &[
            "filter rule 0 (\"r\")",
            "tcpdump",
            "udp and port banana",
            "banana",
        ],
    );
    check(
        &rule("action = \"drop\"\ntcpdump = \"a\\u0000b\"\n"),
        6,
        &["NUL"],
    );
}

#[test]
fn rule_action_errors() {
    check(&rule("action = \"reject\"\n"), 5, &["action = \"reject\""]);
    check(
        &rule("action = \"drop\"\nrate = 5\n"),
        3,
        &["`rate` only applies to action = \"rate-limit\""],
    );
    check(
        &rule("action = \"pass\"\nevery = 5\n"),
        3,
        &["`every` only applies to action = \"sample\""],
    );
    check(&rule("action = \"rate-limit\"\n"), 3, &["needs `rate`"]);
    check(
        &rule("action = \"rate-limit\"\nrate = 0\n"),
        6,
        &["rate = 0"],
    );
    check(
        &rule("action = \"rate-limit\"\nrate = 10\nburst = 0\n"),
        7,
        &["burst = 0"],
    );
    check(
        &rule("action = \"rate-limit\"\nrate = 10\nper = \"dst\"\n"),
        7,
        &["per = \"dst\""],
    );
    check(
        &rule("action = \"rate-limit\"\nrate = 10\nper = \"flow\"\nprefix = 24\n"),
        8,
        &["not \"flow\""],
    );
    check(
        &rule("action = \"rate-limit\"\nrate = 10\nprefix = 33\n"),
        7,
        &["prefix = 33"],
    );
    check(
        &rule("action = \"rate-limit\"\nrate = 10\nprefix6 = 129\n"),
        7,
        &["prefix6 = 129"],
    );
    check(
        &rule("action = \"rate-limit\"\nrate = 10\ntable_size = 99999999\n"),
        7,
        &["table_size"],
    );
    check(
        &rule("action = \"rate-limit\"\nrate = 10\npath = \"x\"\n"),
        3,
        &["`path` only applies to action = \"sample\""],
    );
    check(
        &rule("action = \"sample\"\nevery = 10\n"),
        3,
        &["needs `every`", "`path`"],
    );
    check(
        &rule("action = \"sample\"\nevery = 0\npath = \"x\"\n"),
        6,
        &["every = 0"],
    );
    check(
        &rule("action = \"sample\"\nevery = 1\npath = \"\"\n"),
        7,
        &["path is empty"],
    );
    check(
        &rule("action = \"sample\"\nevery = 1\npath = \"x\"\nmax_bytes = 10\n"),
        8,
        &["max_bytes = 10"],
    );
    check(
        &rule("action = \"sample\"\nevery = 1\npath = \"x\"\nmax_files = 0\n"),
        8,
        &["max_files = 0"],
    );
    check(
        &rule("action = \"sample\"\nevery = 1\npath = \"x\"\nsnaplen = 10\n"),
        8,
        &["snaplen = 10"],
    );
    check(
        &rule("action = \"sample\"\nevery = 1\npath = \"x\"\nrate = 3\n"),
        3,
        &["`rate` only applies"],
    );
}

#[test]
fn rule_name_errors() {
    check(
        &with_dev("[[filter.rule]]\nname = \"\"\naction = \"drop\"\n"),
        4,
        &["filter rule 0", "name is empty"],
    );
    check(
        &with_dev("[[filter.rule]]\nname = \"a\"\naction = \"drop\"\n[[filter.rule]]\nname = \"a\"\naction = \"pass\"\n"),
        7,
        &["filter rule 1 (\"a\")", "already used by filter rule 0"],
    );
}

#[test]
fn tap_stats_daemon_errors() {
    check(
        &with_dev("[tap]\nname = \"\"\n"),
        4,
        &["[tap]", "interface name"],
    );
    check(
        &with_dev("[tap]\nname = \"has space\"\n"),
        4,
        &["interface name"],
    );
    check(
        &with_dev("[stats]\ninterval_ms = 5\n"),
        4,
        &["[stats]", "interval_ms = 5"],
    );
    check(
        &with_dev("[stats]\nprometheus = \"localhost\"\n"),
        4,
        &["address:port"],
    );
    check(
        &with_dev("[stats]\nprometheus = 9100\n"),
        4,
        &["prometheus must be"],
    );
    check(
        &with_dev("[daemon]\nuser = \"root;rm\"\n"),
        4,
        &["[daemon]", "user"],
    );
    check(&with_dev("[daemon]\ngroup = \"\"\n"), 4, &["group"]);
    check(&with_dev("[daemon]\nworkers = 0\n"), 4, &["workers = 0"]);
    check(&with_dev("[daemon]\nworkers = 65\n"), 4, &["workers = 65"]);
    check(
        &with_dev("[daemon]\nidle_sleep_us = 500\n"),
        4,
        &["idle_sleep_us = 500"],
    );
    check(
        &with_dev("[daemon]\nidle_sleep_us = -1\n"),
        4,
        &["idle_sleep_us"],
    );
    check(
        &with_dev("[daemon]\nstate_file = \"\"\n"),
        4,
        &["state_file is empty"],
    );
}

#[test]
fn minimal_config_gets_defaults() {
    let cfg = Config::from_str_named(DEV, "t.toml").unwrap();
    assert_eq!(cfg.device.queues, 1);
    assert_eq!(cfg.device.rx_ring, 512);
    assert_eq!(cfg.device.headroom, 128);
    assert_eq!(cfg.filter.default, floodgate::filter::Decision::Pass);
    assert!(cfg.filter.rules.is_empty());
    assert_eq!(cfg.tap.name, "floodgate0");
    assert_eq!(cfg.stats.prometheus.unwrap().to_string(), "127.0.0.1:9110");
    assert_eq!(cfg.daemon.workers, 1);
    assert_eq!(cfg.daemon.idle_sleep_us, 50);
    let busy =
        Config::from_str_named(&with_dev("[daemon]\nidle_sleep_us = 0\n"), "t.toml").unwrap();
    assert_eq!(busy.daemon.idle_sleep_us, 0);
    assert_eq!(
        floodgate::daemon::runloop::IdlePolicy::nap_us(busy.daemon.idle_sleep_us),
        floodgate::daemon::runloop::IdlePolicy::BUSY
    );
    let off = Config::from_str_named(&with_dev("[stats]\nprometheus = false\n"), "t.toml").unwrap();
    assert!(off.stats.prometheus.is_none());
}

#[test]
fn reinject_errors() {
    let ri = |body: &str| with_dev(&format!("[reinject]\n{body}"));
    check(
        &ri("to = \"wire\"\n"),
        4,
        &["[reinject]", "to = \"wire\"", "\"tap\"", "\"vf\""],
    );
    check(&ri("bogus = 1\n"), 4, &["bogus"]);
    // VF-only keys while survivors go to the TAP.
    for key in [
        "tx_queue = 0",
        "src_mac = \"vf\"",
        "dst_mac = \"02:00:00:00:01:01\"",
    ] {
        let name = key.split(' ').next().unwrap();
        check(
            &ri(&format!("{key}\n")),
            4,
            &[name, "applies only to to = \"vf\""],
        );
        check(
            &ri(&format!("to = \"tap\"\n{key}\n")),
            5,
            &[name, "applies only to to = \"vf\""],
        );
    }
    check(
        &ri("to = \"vf\"\ntx_queue = 1\n"),
        5,
        &["tx_queue = 1", "queues = 1", "0 to 0"],
    );
    check(
        &ri("to = \"vf\"\ntx_queue = 9\n"),
        5,
        &["tx_queue = 9", "0 to 7"],
    );
    check(&ri("to = \"vf\"\ntx_queue = -1\n"), 5, &["tx_queue = -1"]);
    check(
        &ri("to = \"vf\"\nsrc_mac = \"pf\"\n"),
        5,
        &["src_mac = \"pf\"", "\"vf\"", "\"keep\"", "anti-spoofing"],
    );
    // A literal source MAC: the PF's anti-spoofing would drop it, and the message says so.
    check(
        &ri("to = \"vf\"\nsrc_mac = \"02:00:00:00:00:09\"\n"),
        5,
        &["anti-spoofing", "facts §4.1", "spoofchk off"],
    );
    check(
        &ri("to = \"vf\"\ndst_mac = \"02:00:00:00:01\"\n"),
        5,
        &["dst_mac", "not a MAC address", "\"pf\""],
    );
    check(
        &ri("to = \"vf\"\ndst_mac = \"02:00:00:00:01:0g\"\n"),
        5,
        &["not a MAC address"],
    );
    check(
        &ri("to = \"vf\"\ndst_mac = \"00:00:00:00:00:00\"\n"),
        5,
        &["not a usable address"],
    );
    check(
        &ri("to = \"vf\"\ndst_mac = \"ff:ff:ff:ff:ff:ff\"\n"),
        5,
        &["multicast/broadcast", "next hop"],
    );
    check(
        &ri("to = \"vf\"\ndst_mac = \"01:00:5e:00:00:01\"\n"),
        5,
        &["multicast/broadcast"],
    );
    // "pf" on a real device needs the PF's netdev to read its MAC.
    check(
        "[device]\npci = \"0000:03:10.0\"\n[reinject]\nto = \"vf\"\ndst_mac = \"pf\"\n",
        5,
        &["dst_mac = \"pf\"", "pf = "],
    );
    check(&ri("to = 1\n"), 4, &["string"]);
}

#[test]
fn reinject_accepts_and_describes_vf_mode() {
    use floodgate::config::{DstMac, ReinjectTo, SrcMac, VfReinject};
    let c = Config::from_str_named(&with_dev(""), "t.toml").unwrap();
    assert_eq!(c.reinject, ReinjectTo::Tap, "TAP by default");
    assert!(c.to_string().contains("\nreinject tap floodgate0\n"), "{c}");
    let c = Config::from_str_named(
        "[device]\npci = \"sim\"\nqueues = 2\npool_size = 4096\n[reinject]\nto = \"vf\"\ntx_queue = 1\ndst_mac = \"02:AA:bb:00:01:01\"\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(
        c.reinject,
        ReinjectTo::Vf(VfReinject {
            tx_queue: 1,
            src_mac: SrcMac::Vf,
            dst_mac: Some(DstMac::Mac([0x02, 0xaa, 0xbb, 0, 1, 1])),
        })
    );
    let text = floodgate::daemon::describe_config(&c);
    assert!(
        text.contains(
            "reinject vf: tx queue 1, source MAC the VF's own, destination MAC 02:aa:bb:00:01:01"
        ),
        "{text}"
    );
    let c = Config::from_str_named(
        &with_dev("[reinject]\nto = \"vf\"\nsrc_mac = \"keep\"\ndst_mac = \"pf\"\n"),
        "t.toml",
    )
    .unwrap();
    assert_eq!(
        c.reinject,
        ReinjectTo::Vf(VfReinject {
            tx_queue: 0,
            src_mac: SrcMac::Keep,
            dst_mac: Some(DstMac::Pf),
        })
    );
    assert!(c.to_string().contains("kept (needs spoofchk off"), "{c}");
    // A PCI device with the PF named may use "pf".
    Config::from_str_named(
        "[device]\npci = \"0000:03:10.0\"\npf = \"eth0\"\n[reinject]\nto = \"vf\"\ndst_mac = \"pf\"\n",
        "t.toml",
    )
    .unwrap();
}
