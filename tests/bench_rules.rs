//! The filter-loop benchmark's rule sets are real configs (`check-config` accepts them), they
//! are the rules they claim to be, and its traffic mixes get the verdicts the rules promise.

#[path = "../benches/kit/filter_loop.rs"]
pub mod kit;

use floodgate::config::Config;

fn names(path: &str) -> Vec<String> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let cfg = Config::load(&p).unwrap_or_else(|e| panic!("{e}"));
    cfg.filter.rules.iter().map(|r| r.name.clone()).collect()
}

fn libpcap() -> bool {
    let ok = floodgate::libpcap::LibPcap::available();
    if !ok {
        eprintln!("skipped: the tcpdump rule set needs libpcap (apt-get install libpcap0.8)");
    }
    ok
}

#[test]
fn rule_sets_load_and_match_the_examples_they_copy() {
    assert_eq!(
        names("benches/rules/demo.toml"),
        names("examples/demo.toml")
    );
    assert_eq!(
        names("benches/rules/operator.toml"),
        names("examples/floodgate.toml")
    );
    if libpcap() {
        let n = names("benches/rules/tcpdump.toml");
        assert_eq!(n.len(), 4, "{n:?}");
    }
}

/// The known clients' source addresses, from the frames themselves (IPv4 source at 26..30).
fn is_client(frame: &[u8]) -> bool {
    let clients = floodgate_sim::generator::GeneratorConfig::default()
        .legit
        .clients;
    clients.iter().any(|c| frame[26..30] == c[..])
}

#[test]
fn demo_rules_drop_the_whole_flood_and_pass_every_client_in_both_mixes() {
    for mix in kit::MIXES {
        let mut b = kit::Bench::new("benches/rules/demo.toml", mix);
        let frames = kit::mix(mix, b.fl.backend().mac());
        let legit = frames.iter().filter(|f| is_client(f)).count() as u64;
        assert!(legit > 0 && legit < frames.len() as u64, "{mix}: {legit}");
        // One full round of the mix, in ring-sized fills.
        let mut done = 0;
        while done < frames.len() {
            let n = b.fill(frames.len() - done);
            assert!(n > 0, "{mix}: the model wrote nothing");
            done += b.filter(n, 0);
        }
        let c = b.fl.counters();
        assert!(c.invariant_holds(), "{mix}: {c:?}");
        assert_eq!(c.rx_packets, frames.len() as u64, "{mix}: {c:?}");
        assert_eq!(c.passed, legit, "{mix}: {c:?}");
        assert_eq!(c.dropped, frames.len() as u64 - legit, "{mix}: {c:?}");
        assert_eq!(b.fl.sinks()[0].packets, legit, "{mix}");
    }
}

#[test]
fn tcpdump_rules_drop_reflection_and_pass_clients() {
    if !libpcap() {
        return;
    }
    let mut b = kit::Bench::new("benches/rules/tcpdump.toml", "reflection-mix");
    let frames = kit::mix("reflection-mix", b.fl.backend().mac());
    let legit = frames.iter().filter(|f| is_client(f)).count() as u64;
    let mut done = 0;
    while done < frames.len() {
        let n = b.fill(frames.len() - done);
        done += b.filter(n, 0);
    }
    let c = b.fl.counters();
    assert!(c.invariant_holds(), "{c:?}");
    // Responses (QR set, from port 53) are all dropped; the clients' queries all pass.
    assert_eq!(c.passed, legit, "{c:?}");
    assert_eq!(c.dropped, frames.len() as u64 - legit, "{c:?}");
}
