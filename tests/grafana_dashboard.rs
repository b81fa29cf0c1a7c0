//! dist/grafana/floodgate.json: importable as is (Prometheus datasource variable, every panel
//! and query on it), and every metric its queries name is one a running `floodgate run`
//! exports: the daemon (a child process, on the NIC model served over vfio-user, no root) is
//! scraped while traffic flows.

pub mod metrics_util;
pub mod run_util;

use metrics_util::{free_port, scrape};
use run_util::RunHarness;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Metrics the daemon exports only where the device lets it read them (the NIC's missed-frame
/// count: absent over vfio-user, which the scraped daemon runs on). The test checks that the
/// renderer exports them when the counter is known, instead of finding them in the scrape.
const CONDITIONAL: &[&str] = &["floodgate_nic_rx_missed_packets_total"];

fn dashboard() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/dist/grafana/floodgate.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `floodgate_*` names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("floodgate_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// Every PromQL expression of the dashboard: panel targets and query variables.
fn expressions(d: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    for v in d["templating"]["list"].as_array().unwrap() {
        if v["type"] == "query" {
            out.push(v["query"]["query"].as_str().unwrap().to_string());
        }
    }
    out
}

#[test]
fn the_dashboard_imports_as_is() {
    let d = dashboard();
    assert_eq!(d["uid"], "floodgate");
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36);
    let vars = d["templating"]["list"].as_array().unwrap();
    let ds = vars.iter().find(|v| v["name"] == "datasource").unwrap();
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    // Nothing points at a datasource of the machine it was exported from.
    assert_eq!(d["__inputs"].as_array().map(Vec::len), Some(0));
    let on_var = |v: &Value, what: &str| {
        assert_eq!(v["type"], "prometheus", "{what}");
        assert_eq!(v["uid"], "${datasource}", "{what}");
    };
    for v in vars.iter().filter(|v| v["type"] == "query") {
        on_var(&v["datasource"], v["name"].as_str().unwrap());
    }
    let mut ids = BTreeSet::new();
    let mut targets = 0;
    for p in d["panels"].as_array().unwrap() {
        let title = p["title"].as_str().unwrap();
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "duplicate id at {title}"
        );
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
        assert!(x + w <= 24 && g["h"].as_u64().unwrap() > 0, "{title}: {g}");
        if p["type"] == "row" {
            continue;
        }
        on_var(&p["datasource"], title);
        let ts = p["targets"].as_array().unwrap();
        assert!(!ts.is_empty(), "{title} has no query");
        let mut refs = BTreeSet::new();
        for t in ts {
            on_var(&t["datasource"], title);
            assert!(refs.insert(t["refId"].as_str().unwrap()), "{title}");
            let expr = t["expr"].as_str().unwrap();
            assert!(!metric_names(expr).is_empty(), "{title}: {expr}");
            assert!(expr.contains("instance=~\"$instance\""), "{title}: {expr}");
            targets += 1;
        }
    }
    assert!(targets >= 20, "{targets} queries");
}

/// Exported series: metric name -> label names seen, and values of `name` without labels.
fn exported(body: &str) -> (BTreeMap<String, BTreeSet<String>>, BTreeMap<String, f64>) {
    let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut plain = BTreeMap::new();
    for line in body.split("\r\n\r\n").nth(1).unwrap_or("").lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        let set = names.entry(name.to_string()).or_default();
        for kv in labels.split(',').filter(|s| !s.is_empty()) {
            set.insert(kv.split_once('=').unwrap().0.to_string());
        }
        if labels.is_empty() {
            plain.insert(name.to_string(), value.parse().unwrap());
        }
    }
    (names, plain)
}

#[test]
fn every_queried_metric_is_exported_by_a_running_daemon() {
    let port = free_port();
    let h = RunHarness::start(
        "grafana",
        &format!(
            "[reinject]\nto = \"vf\"\ndst_mac = \"02:00:00:00:01:01\"\n\n\
             [daemon]\nworkers = 2\n\n\
             [stats]\ninterval_ms = 200\nprometheus = \"127.0.0.1:{port}\"\n"
        ),
        "reinjecting survivors out of the ",
        |_| {},
    );
    let frames = 3000u64;
    let (engine, _legit) = h.send(7, frames);
    // Scrape until the published counters show the traffic (bounded, not timed).
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        if let Some(b) = scrape(port) {
            let (_, plain) = exported(&b);
            if plain
                .get("floodgate_rx_packets_total")
                .copied()
                .unwrap_or(0.0)
                > 0.0
                && b.contains("floodgate_rule_hits_total{rule=\"dns-flood\"}")
                && b.contains("floodgate_top_dropped_source_packets{src=")
                && b.contains("floodgate_worker_packets_total{worker=\"1\"")
            {
                break b;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no scrape with traffic on port {port}:\n{}",
            h.log
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    engine.stop();
    let line = h.stop().final_line();
    assert!(line.contains("invariant holds"), "{line}");

    let (names, _) = exported(&body);
    let d = dashboard();
    let mut queried = BTreeSet::new();
    for expr in expressions(&d) {
        for name in metric_names(&expr) {
            queried.insert(name.clone());
            if CONDITIONAL.contains(&name.as_str()) && !names.contains_key(&name) {
                continue;
            }
            let labels = names.get(&name).unwrap_or_else(|| {
                panic!("the dashboard queries {name}, which the daemon does not export ({expr})")
            });
            for label in ["rule", "worker", "verdict", "src", "le"] {
                if expr.contains(&format!("by ({label})")) || expr.contains(&format!(", {label})"))
                {
                    assert!(
                        labels.contains(label),
                        "{name} has no {label} label: {expr}"
                    );
                }
            }
        }
    }
    // The conditional ones: exported by the renderer as soon as the counter is known.
    let known = floodgate::daemon::metrics::render(&floodgate::daemon::metrics::Snapshot {
        nic_missed: Some(3),
        ..Default::default()
    });
    for p in CONDITIONAL {
        assert!(
            queried.contains(*p) && known.contains(&format!("\n{p} 3\n")),
            "{p}: not queried, or not exported when the NIC's counter is known:\n{known}"
        );
    }
    // The dashboard covers what matters: traffic, rules, reloads and PF resets.
    for must in [
        "floodgate_rx_packets_total",
        "floodgate_dropped_packets_total",
        "floodgate_passed_packets_total",
        "floodgate_tap_packets_total",
        "floodgate_rule_hits_total",
        "floodgate_config_reloads_total",
        "floodgate_pf_resets_total",
        "floodgate_worker_packets_total",
        "floodgate_top_dropped_source_packets",
        "floodgate_config_reload_duration_seconds_bucket",
        "floodgate_config_reload_last_seconds",
    ] {
        assert!(queried.contains(must), "no panel queries {must}");
    }
}
