//! The demo end to end on the model, `check-config` on the shipped configs, and `rules test`
//! on a capture made here with the model's traffic generator.

use floodgate::daemon::demo::{self, DemoOptions, DemoReinject};
use floodgate::daemon::{describe_config, rules_test};
use floodgate::pcapfile::PcapWriter;
use floodgate_sim::generator::{Generator, GeneratorConfig, Rate, TrafficClass, MAX_GEN_FRAME};

/// The demo tests each run the model's engine and the filter loop (and workers) at full spin:
/// run them one at a time so they do not starve each other on a 2-core machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn demo_drops_the_flood_passes_every_legit_query_and_accounts_for_every_packet() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // A low rate leaves the filter loop ample slack even on a loaded 2-core CI machine, so no
    // frame is lost to a full ring before the rules see it.
    let s = demo::run(&DemoOptions {
        seconds: 1.0,
        rate: Some(20_000),
        json: true,
        seed: 7,
        progress: false,
        tap: None,
        workers: None,
        nic_thread: false,
        reinject: DemoReinject::Tap,
        metrics: None,
    })
    .expect("demo runs on the model");
    let c = s.counters;
    assert!(s.invariant_holds(), "{s:?}");
    assert_eq!(c.in_flight, 0, "drained");
    assert!(s.generated_legit > 0 && s.generated_flood > 0, "{s:?}");
    assert_eq!(
        s.nic_rx_missed, 0,
        "ring never overflowed at 20 kpps: {s:?}"
    );
    // Only UDP/53 is steered into the VF: flood + legit, never background.
    assert_eq!(c.rx_packets, s.generated_flood + s.generated_legit, "{s:?}");
    assert_eq!(s.nic_to_kernel, s.generated_background, "{s:?}");
    assert!(s.all_legit_passed(), "{s:?}");
    assert_eq!(
        c.passed, s.generated_legit,
        "only legit queries pass: {s:?}"
    );
    assert_eq!(
        c.dropped, s.generated_flood,
        "the whole flood is dropped: {s:?}"
    );
    assert_eq!(c.tap, c.passed);
    let hits: Vec<_> = s.rule_hits.iter().map(|(n, h)| (n.as_str(), *h)).collect();
    assert_eq!(
        hits,
        vec![
            ("known-clients", s.generated_legit),
            ("dns-flood", s.generated_flood),
            ("default", 0)
        ]
    );
    let j = s.to_json();
    assert!(j.contains("\"invariant_holds\":true"), "{j}");
    assert!(j.contains("\"all_legit_passed\":true"), "{j}");
}

#[test]
fn demo_with_two_workers_splits_by_flow_and_still_accounts_for_everything() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = demo::run(&DemoOptions {
        seconds: 1.0,
        rate: Some(20_000),
        json: true,
        seed: 9,
        progress: false,
        tap: None,
        workers: Some(2),
        nic_thread: false,
        reinject: DemoReinject::Tap,
        metrics: None,
    })
    .expect("demo with workers");
    let c = s.counters;
    assert!(s.invariant_holds(), "{s:?}");
    assert_eq!(c.in_flight, 0);
    assert_eq!(
        c.dispatch_full, 0,
        "rings of 4096 never fill at 20 kpps: {s:?}"
    );
    assert!(s.all_legit_passed(), "{s:?}");
    assert_eq!(s.workers.len(), 2);
    let rx: u64 = s.workers.iter().map(|w| w.0).sum();
    let dropped: u64 = s.workers.iter().map(|w| w.1).sum();
    let passed: u64 = s.workers.iter().map(|w| w.2).sum();
    assert_eq!(rx, c.rx_packets, "every received packet reached one worker");
    assert_eq!((dropped, passed), (c.dropped, c.passed));
    // Random flood sources spread over both workers.
    assert!(
        s.workers.iter().all(|w| w.0 > c.rx_packets / 10),
        "{:?}",
        s.workers
    );
    let j: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
    let w = j["workers"].as_array().unwrap();
    assert_eq!(w.len(), 2, "{j}");
    for (i, (rx, d, p)) in s.workers.iter().enumerate() {
        assert_eq!(
            (
                &w[i]["worker"],
                &w[i]["rx"],
                &w[i]["dropped"],
                &w[i]["passed"]
            ),
            (&i.into(), &(*rx).into(), &(*d).into(), &(*p).into()),
            "{j}"
        );
    }
}

#[test]
fn lockstep_model_loses_nothing_even_at_full_speed() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // In lockstep the model generates at most one burst per poll, so however busy the machine
    // is, the VF ring cannot overflow: every legitimate query reaches the rules and passes.
    let s = demo::run(&DemoOptions {
        seconds: 0.5,
        rate: None,
        json: true,
        seed: 3,
        progress: false,
        tap: None,
        workers: None,
        nic_thread: false,
        reinject: DemoReinject::Tap,
        metrics: None,
    })
    .expect("demo at full speed");
    assert_eq!(s.nic_mode, "lockstep");
    assert_eq!(s.nic_rx_missed, 0, "{s:?}");
    assert_eq!(s.generator_behind_schedule, 0, "unpaced: {s:?}");
    assert!(s.invariant_holds(), "{s:?}");
    assert!(s.generated_legit > 0, "{s:?}");
    assert!(s.all_legit_passed(), "{s:?}");
    assert_eq!(s.counters.rx_packets, s.generated_flood + s.generated_legit);
    assert_eq!(s.counters.dropped, s.generated_flood);
    let j: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
    assert_eq!(j["nic_mode"], "lockstep", "{j}");
    // The loop's own cost and the model's, measured apart on the polling thread.
    let filter = j["filter_ns_per_packet"]
        .as_f64()
        .expect("filter_ns_per_packet");
    let model = j["model_ns_per_packet"]
        .as_f64()
        .expect("model_ns_per_packet");
    assert!(filter > 0.0 && model > 0.0, "{j}");
    // Both are parts of the run's wall time, spread over the packets received.
    let wall_ns = s.seconds * 1e9 / s.counters.rx_packets as f64;
    assert!(
        filter + model < wall_ns * 1.2,
        "{filter} + {model} vs {wall_ns}: {j}"
    );
}

#[test]
fn threaded_model_accounts_for_every_frame() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = demo::run(&DemoOptions {
        seconds: 0.5,
        rate: Some(20_000),
        json: true,
        seed: 5,
        progress: false,
        tap: None,
        workers: None,
        nic_thread: true,
        reinject: DemoReinject::Tap,
        metrics: None,
    })
    .expect("demo with the model on its own thread");
    assert_eq!(s.nic_mode, "thread");
    assert!(s.invariant_holds(), "{s:?}");
    // With the model beside the loop, a frame the VF received is judged, and a frame it did not
    // is counted by the model as missed (a busy machine may starve the filter thread).
    assert_eq!(
        s.counters.rx_packets + s.nic_rx_missed,
        s.generated_flood + s.generated_legit,
        "{s:?}"
    );
    assert!(
        s.legit_passed == s.generated_legit || s.nic_rx_missed > 0,
        "{s:?}"
    );
    let j: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
    assert_eq!(j["nic_mode"], "thread", "{j}");
    assert!(j["filter_ns_per_packet"].as_f64().unwrap() > 0.0, "{j}");
    // The model ran on another thread: its time is not the polling thread's to report.
    assert!(j["model_ns_per_packet"].is_null(), "{j}");
}

#[test]
fn demo_reinject_vf_sends_every_legit_query_out_of_the_vf_to_the_wire() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = demo::run(&DemoOptions {
        seconds: 1.0,
        rate: Some(20_000),
        json: true,
        seed: 13,
        progress: false,
        tap: None,
        workers: None,
        nic_thread: false,
        reinject: DemoReinject::Vf,
        metrics: None,
    })
    .expect("demo --reinject vf");
    let c = s.counters;
    assert!(s.invariant_holds(), "{s:?}");
    assert_eq!(c.in_flight, 0);
    assert!(s.generated_legit > 0, "{s:?}");
    assert_eq!(c.dropped, s.generated_flood, "the flood is dropped: {s:?}");
    assert_eq!(c.passed, s.generated_legit, "{s:?}");
    assert_eq!(
        (c.vf_tx, c.vf_tx_dropped, c.looped),
        (c.passed, 0, 0),
        "{s:?}"
    );
    assert_eq!((c.tap, c.tap_dropped), (0, 0));
    // Counted where they arrive: the model's wire port, not the PF.
    assert_eq!(s.legit_at_wire, s.generated_legit, "{s:?}");
    assert_eq!(s.legit_at_pf, 0);
    assert!(s.all_legit_passed(), "{s:?}");
    assert_eq!(
        s.nic_egress, s.generated_legit,
        "only survivors left on the wire"
    );
    assert_eq!(s.nic_tx_spoofed, 0, "source MAC rewritten to the VF's");
    assert_eq!(s.nic_to_kernel, s.generated_background);
    let j = s.to_json();
    for k in [
        "\"reinject\":\"vf\"",
        "\"all_legit_passed\":true",
        "\"invariant_holds\":true",
        "\"vf_tx_dropped\":0",
        "\"looped\":0",
    ] {
        assert!(j.contains(k), "{k} in {j}");
    }
}

#[test]
fn demo_reinject_vf_with_workers_hands_survivors_back_for_transmission() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = demo::run(&DemoOptions {
        seconds: 1.0,
        rate: Some(20_000),
        json: true,
        seed: 17,
        progress: false,
        tap: None,
        workers: Some(2),
        nic_thread: false,
        reinject: DemoReinject::Vf,
        metrics: None,
    })
    .expect("demo --reinject vf --workers 2");
    let c = s.counters;
    assert!(s.invariant_holds(), "{s:?}");
    assert_eq!(c.in_flight, 0);
    assert_eq!(c.dispatch_full, 0, "{s:?}");
    assert_eq!(c.vf_tx, s.generated_legit, "{s:?}");
    assert_eq!(s.legit_at_wire, s.generated_legit, "{s:?}");
    assert!(s.all_legit_passed(), "{s:?}");
    let passed: u64 = s.workers.iter().map(|w| w.2).sum();
    assert_eq!(passed, c.passed);
}

#[test]
fn demo_reinject_vf_pf_shows_the_model_looping_and_the_guard_catching_it() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = demo::run(&DemoOptions {
        seconds: 0.5,
        rate: Some(20_000),
        json: true,
        seed: 19,
        progress: false,
        tap: None,
        workers: None,
        nic_thread: false,
        reinject: DemoReinject::VfToPf,
        metrics: None,
    })
    .expect("demo --reinject vf-pf");
    let c = s.counters;
    assert!(s.invariant_holds(), "{s:?}");
    assert!(s.generated_legit > 0);
    // Every survivor went out once, came back once through the flow director, and was caught.
    assert_eq!(c.passed, s.generated_legit, "{s:?}");
    assert_eq!(c.vf_tx, c.passed, "{s:?}");
    assert_eq!(c.looped, c.vf_tx, "{s:?}");
    assert_eq!(
        c.rx_packets,
        s.generated_flood + s.generated_legit + c.looped
    );
    assert_eq!(s.nic_loopback, c.vf_tx, "{s:?}");
    assert_eq!(s.legit_passed, 0, "nothing reached the PF: {s:?}");
    assert!(!s.all_legit_passed());
    assert!(s.to_json().contains("\"reinject\":\"vf-pf\""));
}

#[test]
fn demo_refuses_tap_with_vf_reinjection() {
    let e = demo::run(&DemoOptions {
        seconds: 1.0,
        rate: None,
        json: false,
        seed: 1,
        progress: false,
        tap: Some("fgx0".into()),
        workers: None,
        nic_thread: false,
        reinject: DemoReinject::Vf,
        metrics: None,
    })
    .unwrap_err();
    assert!(e.to_string().contains("--tap and --reinject vf"), "{e}");
    assert_eq!("vf-pf".parse::<DemoReinject>(), Ok(DemoReinject::VfToPf));
    assert!("wire"
        .parse::<DemoReinject>()
        .unwrap_err()
        .contains("\"tap\""));
}

#[test]
fn demo_rejects_nonsense_duration() {
    let e = demo::run(&DemoOptions {
        seconds: 0.0,
        rate: None,
        json: false,
        seed: 1,
        progress: false,
        tap: None,
        workers: None,
        nic_thread: false,
        reinject: DemoReinject::Tap,
        metrics: None,
    })
    .unwrap_err();
    assert!(e.to_string().contains("--seconds"), "{e}");
}

#[test]
fn shipped_configs_check() {
    for f in ["examples/demo.toml", "examples/floodgate.toml"] {
        let cfg = floodgate::config::Config::load(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        let text = describe_config(&cfg);
        assert!(text.ends_with("config OK\n"), "{text}");
        assert!(text.contains("steering 0"), "{text}");
    }
}

#[test]
fn rules_test_over_a_generated_capture() {
    let dir = std::env::temp_dir().join(format!("fg-rules-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("mix.pcap");
    let mut gen = Generator::new(GeneratorConfig {
        seed: 11,
        rate: Rate::Pps(1000),
        ..GeneratorConfig::default()
    })
    .unwrap();
    let mut w = PcapWriter::new(std::fs::File::create(&pcap).unwrap(), 65535).unwrap();
    let mut buf = vec![0u8; MAX_GEN_FRAME];
    let (mut flood, mut legit, mut bg) = (0u64, 0u64, 0u64);
    for _ in 0..2000 {
        let g = gen.next_into(&mut buf).unwrap();
        match g.class {
            TrafficClass::Flood => flood += 1,
            TrafficClass::Legit => legit += 1,
            TrafficClass::Background => bg += 1,
        }
        w.write_frame(g.time_ns, &buf[..g.len]).unwrap();
    }
    w.flush().unwrap();
    drop(w);
    let t = rules_test(
        &pcap,
        std::path::Path::new("examples/demo.toml"),
        false,
        None,
    )
    .unwrap();
    assert_eq!(t.frames, 2000);
    // demo.toml: pass the known clients, drop the rest of UDP/53, pass everything else.
    assert_eq!(t.dropped, flood);
    assert_eq!(t.passed, legit + bg);
    assert_eq!(
        t.hits,
        vec![
            ("known-clients".to_string(), legit),
            ("dns-flood".to_string(), flood),
            ("default".to_string(), bg)
        ]
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn device_can_be_a_vfio_user_socket() {
    let c = floodgate::config::Config::from_str_named(
        "[device]\npci = \"vfio-user:/run/vf0.sock\"\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(
        c.device.device,
        floodgate::config::DeviceAddr::VfioUser("/run/vf0.sock".into())
    );
    let e = floodgate::config::Config::from_str_named("[device]\npci = \"vfio-user:\"\n", "t.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("t.toml:2") && e.contains("socket path"), "{e}");
    let e = floodgate::config::Config::from_str_named("[device]\npci = \"nonsense\"\n", "t.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("vfio-user:/path/to/socket"), "{e}");
}

#[test]
fn mtu_and_xcast_reach_the_driver_and_bad_values_are_refused() {
    use floodgate::config::Config;
    let c = Config::from_str_named(
        "[device]\npci = \"sim\"\nmtu = 1400\nxcast = \"allmulti\"\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(c.device.mtu, 1400);
    assert_eq!(c.device.xcast, Some(floodgate_pmd::XcastMode::AllMulti));
    let p = floodgate::daemon::run::pmd_config(&c);
    assert_eq!(
        (p.mtu, p.xcast),
        (1400, Some(floodgate_pmd::XcastMode::AllMulti))
    );
    // Defaults: MTU 1500, the PF's xcast default left alone.
    let d = Config::from_str_named("[device]\npci = \"sim\"\n", "t.toml").unwrap();
    assert_eq!((d.device.mtu, d.device.xcast), (1500, None));
    let e = Config::from_str_named("[device]\npci = \"sim\"\nmtu = 20000\n", "t.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("t.toml:3") && e.contains("mtu"), "{e}");
    let e = Config::from_str_named("[device]\npci = \"sim\"\nxcast = \"all\"\n", "t.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("allmulti") && e.contains("t.toml:3"), "{e}");
}
