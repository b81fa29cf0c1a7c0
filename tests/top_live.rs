//! `floodgate top` against a live `floodgate demo --metrics`: the one-shot text frame shows
//! live rates, the rules, the heavy flood sources and the workers; without a terminal the live
//! view refuses with a clear error, and an endpoint nobody serves is named in the error.

pub mod metrics_util;

use metrics_util::{free_port, scrape};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_floodgate"))
}

/// The rate in packets per second at the start of `line` after `label` (`12.3 kpps` → 12300).
fn rate_after(text: &str, label: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.trim_start_matches('│').starts_with(label))
        .unwrap_or_else(|| panic!("no {label} line in\n{text}"));
    let rest = line.trim_start_matches('│')[label.len()..].trim_start();
    let mut it = rest.split_whitespace();
    let v: f64 = it.next().unwrap().parse().unwrap();
    match it.next().unwrap() {
        "Mpps" => v * 1e6,
        "kpps" => v * 1e3,
        "pps" => v,
        u => panic!("unit {u} in {line}"),
    }
}

#[test]
fn top_once_shows_a_running_demo() {
    let port = free_port();
    let mut demo = bin()
        .args([
            "demo",
            "--seconds",
            "30",
            "--rate",
            "60000",
            "--workers",
            "2",
        ])
        .args(["--metrics", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Until the published counters show the flood and its heaviest source (bounded, not timed).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = scrape(port).is_some_and(|b| {
            b.contains("floodgate_top_dropped_source_packets{src=\"198.18.7.11\"}")
                && b.contains("floodgate_worker_packets_total{worker=\"1\"")
        });
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the demo's endpoint never showed traffic"
        );
        assert!(demo.try_wait().unwrap().is_none(), "the demo ended early");
        std::thread::sleep(Duration::from_millis(200));
    }
    let url = format!("http://127.0.0.1:{port}/metrics");
    // The demo publishes once a second; on a loaded machine a publication can be late, and
    // two scrapes then see the same counters (rates of 0). A few tries, not a timing.
    let mut text = String::new();
    for _ in 0..5 {
        let out = bin()
            .args(["top", "--once", "--interval", "1.5", "--metrics", &url])
            .output()
            .unwrap();
        text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if rate_after(&text, "rx") > 0.0 {
            break;
        }
    }
    let _ = demo.kill();
    let _ = demo.wait();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 24, "{text}");
    assert!(lines.iter().all(|l| l.chars().count() <= 80), "{text}");
    assert!(text.contains(&url), "{text}");
    let (rx, drop, pass) = (
        rate_after(&text, "rx"),
        rate_after(&text, "drop"),
        rate_after(&text, "pass"),
    );
    // (Each rate is its own counter's: with workers, rx is counted at dispatch and the verdicts
    // when the workers publish, so one interval's drop rate may exceed its rx rate.)
    assert!(rx > 0.0 && drop > 0.0 && pass > 0.0, "{text}");
    for want in ["dns-flood", "known-clients", "198.18.7.11", "w0 ", "w1 "] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }
    // A heavy flood source (the demo's busy botnet members, 198.18.7.0/24) tops the sources
    // table: the random one-off sources rank below them.
    let header = lines
        .iter()
        .position(|l| l.contains("│dropped source"))
        .unwrap();
    let first = lines[header + 1].split("││").nth(1).unwrap_or("");
    assert!(first.starts_with("198.18.7."), "{first:?}\n{text}");
}

#[test]
fn without_a_terminal_or_an_endpoint_top_says_why() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/metrics");
    // Standard output is a pipe here.
    let out = bin().args(["top", "--metrics", &url]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("standard output is not a terminal") && err.contains("--once"),
        "{err}"
    );
    let out = bin()
        .args(["top", "--once", "--interval", "0.1", "--metrics", &url])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&url) && err.contains("refused"), "{err}");
    let out = bin()
        .args(["top", "--once", "--metrics", "https://127.0.0.1:1/"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("plain http"));
}
