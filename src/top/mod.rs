//! `floodgate top`: a live terminal view of a running daemon (or `floodgate demo --metrics`).
//!
//! It reads the daemon's Prometheus endpoint once a second (a plain HTTP/1.0 `GET` over TCP,
//! [`scrape`]), turns the text into a [`Sample`] ([`Sample::parse`]) and computes rates from
//! two successive samples ([`view::TopState`]). [`view::draw`] lays them out for any terminal
//! of 80×24 or more: rx/drop/pass/survivor rates with a short history (sparklines), per-rule hit
//! rates, the top dropped sources (from the daemon's bounded sample, see [`crate::topsrc`]),
//! NIC missed frames, reloads, PF resets and the per-worker split. [`live::run`] drives a real
//! terminal (alternate screen, raw mode, restored on every way out); [`view::render_text`]
//! draws one frame as plain text (`--once`, tests).

pub mod live;
pub mod view;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Errors reaching or reading the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    /// The address is not `http://HOST:PORT/PATH` (or `HOST:PORT`).
    #[error("{url}: not an http://HOST:PORT/PATH address of a metrics endpoint ({why})")]
    BadUrl {
        /// What was given.
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Connecting, sending or reading failed.
    #[error(
        "{url}: no answer from the metrics endpoint (is the daemon running with [stats] \
         prometheus, or the demo with --metrics?)"
    )]
    Io {
        /// The endpoint.
        url: String,
        /// The error.
        source: std::io::Error,
    },
    /// The endpoint answered something else than `200`.
    #[error("{url}: the endpoint answered {status:?}")]
    Status {
        /// The endpoint.
        url: String,
        /// The status line.
        status: String,
    },
    /// The answer holds no floodgate metrics.
    #[error("{url}: no floodgate_* metrics in the answer (is this a floodgate endpoint?)")]
    NotFloodgate {
        /// The endpoint.
        url: String,
    },
}

/// A metrics endpoint: where to connect and what to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// As given (for messages and the title).
    pub url: String,
    host: String,
    path: String,
}

impl Endpoint {
    /// Parses `http://HOST:PORT/PATH`, `http://HOST:PORT` (path `/metrics`) or `HOST:PORT`.
    pub fn parse(url: &str) -> Result<Endpoint, TopError> {
        let bad = |why| TopError::BadUrl {
            url: url.to_string(),
            why,
        };
        if url.starts_with("https://") {
            return Err(bad("https is not spoken; the endpoint serves plain http"));
        }
        let rest = url.strip_prefix("http://").unwrap_or(url);
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/metrics"),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port_ok = host
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !port_ok {
            return Err(bad("HOST:PORT needed"));
        }
        Ok(Endpoint {
            url: url.to_string(),
            host: host.to_string(),
            path: path.to_string(),
        })
    }

    /// The endpoint of a daemon listening on `addr`.
    pub fn of(addr: SocketAddr) -> Endpoint {
        Endpoint {
            url: format!("http://{addr}/metrics"),
            host: addr.to_string(),
            path: "/metrics".into(),
        }
    }
}

/// Largest answer read (a daemon's exposition is a few kilobytes).
const MAX_BODY: u64 = 4 << 20;

/// One `GET` of the endpoint, waiting at most `timeout` for each step. Returns the body.
pub fn scrape(ep: &Endpoint, timeout: Duration) -> Result<String, TopError> {
    let io = |source| TopError::Io {
        url: ep.url.clone(),
        source,
    };
    let addr = ep
        .host
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(|| io(std::io::Error::other("the host name has no address")))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    write!(
        s,
        "GET {} HTTP/1.0\r\nHost: {}\r\nAccept: text/plain\r\n\r\n",
        ep.path, ep.host
    )
    .map_err(io)?;
    let mut raw = Vec::new();
    s.take(MAX_BODY).read_to_end(&mut raw).map_err(io)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("").to_string();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(TopError::Status {
            url: ep.url.clone(),
            status,
        });
    }
    Ok(body.to_string())
}

/// One series of the exposition: labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Label pairs, unescaped.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// Parses the Prometheus text format: metric name → its series. Comment lines and lines that
/// do not parse are skipped.
pub fn parse_exposition(body: &str) -> BTreeMap<String, Vec<Series>> {
    let mut out: BTreeMap<String, Vec<Series>> = BTreeMap::new();
    for line in body.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((name, s)) = parse_line(line) {
            out.entry(name).or_default().push(s);
        }
    }
    out
}

fn parse_line(line: &str) -> Option<(String, Series)> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            rest = rest.trim_start_matches([',', ' ']);
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let (key, r) = rest.split_once('=')?;
            let mut chars = r.strip_prefix('"')?.char_indices();
            let mut value = String::new();
            let end = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.insert(key.trim().to_string(), value);
            rest = &r[1 + end + 1..];
        }
    }
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    (!name.is_empty()).then(|| (name.to_string(), Series { labels, value }))
}

/// What `top` reads from one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// `floodgate_rx_packets_total`.
    pub rx: u64,
    /// `floodgate_dropped_packets_total`.
    pub dropped: u64,
    /// `floodgate_passed_packets_total`.
    pub passed: u64,
    /// `floodgate_tap_packets_total`.
    pub tap: u64,
    /// `floodgate_vf_tx_packets_total`.
    pub vf_tx: u64,
    /// `floodgate_error_packets_total`.
    pub errors: u64,
    /// `floodgate_nic_rx_missed_packets_total` (absent on devices without the counter).
    pub nic_missed: Option<u64>,
    /// `floodgate_config_reloads_total`.
    pub reloads: u64,
    /// `floodgate_config_reload_errors_total`.
    pub reload_errors: u64,
    /// `floodgate_config_reload_last_seconds` (absent from older daemons).
    pub reload_last: Option<f64>,
    /// `floodgate_pf_resets_total`.
    pub pf_resets: u64,
    /// `floodgate_rule_hits_total` by rule, in the daemon's order.
    pub rules: Vec<(String, u64)>,
    /// `floodgate_top_dropped_source_packets` by source, largest first.
    pub top_sources: Vec<(String, u64)>,
    /// `floodgate_worker_packets_total` by worker: (worker, dropped, passed).
    pub workers: Vec<(String, u64, u64)>,
}

impl Sample {
    /// Reads a scrape's body. Fails when it holds no `floodgate_rx_packets_total`.
    pub fn parse(body: &str, ep: &Endpoint) -> Result<Sample, TopError> {
        let m = parse_exposition(body);
        let one = |name: &str| m.get(name).and_then(|v| v.first()).map(|s| s.value);
        let int = |name: &str| one(name).map_or(0, |v| v.max(0.0) as u64);
        if one("floodgate_rx_packets_total").is_none() {
            return Err(TopError::NotFloodgate {
                url: ep.url.clone(),
            });
        }
        let by = |name: &str, label: &str| -> Vec<(String, u64)> {
            m.get(name)
                .into_iter()
                .flatten()
                .filter_map(|s| Some((s.labels.get(label)?.clone(), s.value.max(0.0) as u64)))
                .collect()
        };
        let mut top_sources = by("floodgate_top_dropped_source_packets", "src");
        top_sources.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut workers: Vec<(String, u64, u64)> = Vec::new();
        for s in m
            .get("floodgate_worker_packets_total")
            .into_iter()
            .flatten()
        {
            let (Some(w), Some(v)) = (s.labels.get("worker"), s.labels.get("verdict")) else {
                continue;
            };
            let i = match workers.iter().position(|x| &x.0 == w) {
                Some(i) => i,
                None => {
                    workers.push((w.clone(), 0, 0));
                    workers.len() - 1
                }
            };
            let n = s.value.max(0.0) as u64;
            match v.as_str() {
                "dropped" => workers[i].1 = n,
                "passed" => workers[i].2 = n,
                _ => {}
            }
        }
        workers.sort_by_key(|w| w.0.parse::<u64>().unwrap_or(u64::MAX));
        Ok(Sample {
            rx: int("floodgate_rx_packets_total"),
            dropped: int("floodgate_dropped_packets_total"),
            passed: int("floodgate_passed_packets_total"),
            tap: int("floodgate_tap_packets_total"),
            vf_tx: int("floodgate_vf_tx_packets_total"),
            errors: int("floodgate_error_packets_total"),
            nic_missed: one("floodgate_nic_rx_missed_packets_total").map(|v| v.max(0.0) as u64),
            reloads: int("floodgate_config_reloads_total"),
            reload_errors: int("floodgate_config_reload_errors_total"),
            reload_last: one("floodgate_config_reload_last_seconds"),
            pf_resets: int("floodgate_pf_resets_total"),
            rules: by("floodgate_rule_hits_total", "rule"),
            top_sources,
            workers,
        })
    }

    /// Scrapes `ep` and reads the answer.
    pub fn fetch(ep: &Endpoint, timeout: Duration) -> Result<Sample, TopError> {
        Sample::parse(&scrape(ep, timeout)?, ep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_with_or_without_scheme_and_path() {
        let e = Endpoint::parse("http://127.0.0.1:9110/metrics").unwrap();
        assert_eq!(
            (e.host.as_str(), e.path.as_str()),
            ("127.0.0.1:9110", "/metrics")
        );
        let e = Endpoint::parse("localhost:9110").unwrap();
        assert_eq!(
            (e.host.as_str(), e.path.as_str()),
            ("localhost:9110", "/metrics")
        );
        let e = Endpoint::parse("http://[::1]:9/x").unwrap();
        assert_eq!((e.host.as_str(), e.path.as_str()), ("[::1]:9", "/x"));
        for bad in [
            "",
            "http://",
            "https://h:1/",
            "http://host/metrics",
            "h:99999",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_daemons_own_rendering_reads_back() {
        use crate::daemon::metrics::{render, RuleSnapshot, Snapshot, WorkerSnapshot};
        let mut s = Snapshot {
            nic_missed: Some(4),
            reloads: 2,
            pf_resets: 1,
            workers: vec![
                WorkerSnapshot {
                    rx: 10,
                    dropped: 7,
                    passed: 3,
                },
                WorkerSnapshot {
                    rx: 5,
                    dropped: 5,
                    passed: 0,
                },
            ],
            top_sources: vec![
                crate::topsrc::TopSource {
                    addr: "2001:db8::1".parse().unwrap(),
                    packets: 640,
                    error: 0,
                },
                crate::topsrc::TopSource {
                    addr: "198.51.100.7".parse().unwrap(),
                    packets: 64,
                    error: 0,
                },
            ],
            rules: vec![RuleSnapshot {
                name: "odd \"name\"\\".into(),
                hits: 9,
                ..Default::default()
            }],
            ..Default::default()
        };
        s.counters.rx_packets = 15;
        s.counters.dropped = 12;
        s.reload_latency.observe(Duration::from_millis(3));
        let ep = Endpoint::parse("127.0.0.1:1").unwrap();
        let got = Sample::parse(&render(&s), &ep).unwrap();
        assert_eq!((got.rx, got.dropped, got.nic_missed), (15, 12, Some(4)));
        assert_eq!((got.reloads, got.pf_resets), (2, 1));
        assert!((got.reload_last.unwrap() - 0.003).abs() < 1e-9);
        assert_eq!(got.rules, vec![("odd \"name\"\\".to_string(), 9)]);
        assert_eq!(
            got.top_sources,
            vec![("2001:db8::1".into(), 640), ("198.51.100.7".into(), 64)]
        );
        assert_eq!(got.workers, vec![("0".into(), 7, 3), ("1".into(), 5, 0)]);
        assert!(matches!(
            Sample::parse("# nothing\nother_metric 1\n", &ep),
            Err(TopError::NotFloodgate { .. })
        ));
    }
}
