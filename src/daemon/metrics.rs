//! Prometheus text metrics on a loopback socket.
//!
//! The filter loop publishes a snapshot every stats interval ([`Metrics::publish`]); a small
//! thread answers `GET /metrics` with the last snapshot. Nothing on the hot path touches it.

use crate::stats::Counters;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Per-rule counters as published.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSnapshot {
    /// Rule name (`default` for the default action).
    pub name: String,
    /// Frames that matched.
    pub hits: u64,
    /// Frames the rule passed.
    pub passed: u64,
    /// Frames the rule dropped.
    pub dropped: u64,
    /// Frames dropped over a rate limit.
    pub rate_limited: u64,
}

/// What the endpoint serves.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Loop counters (summed over workers).
    pub counters: Counters,
    /// Per-rule counters, in rule order, then the default action.
    pub rules: Vec<RuleSnapshot>,
    /// VF PF-reset recoveries.
    pub pf_resets: u64,
    /// Successful config reloads.
    pub reloads: u64,
    /// Rejected config reloads (old rules kept).
    pub reload_errors: u64,
    /// Frames the NIC could not place in the VF's RX rings (`None`: no readable counter on
    /// this device; the metric is then left out).
    pub nic_missed: Option<u64>,
    /// Free buffers in the VF's packet pool (`None`: not known).
    pub pool_free: Option<u64>,
    /// Device requests that timed out without the device being gone (vfio-user).
    pub transport_timeouts: u64,
    /// Per worker, in worker order (empty when judging inline).
    pub workers: Vec<WorkerSnapshot>,
    /// The largest sampled dropped sources (at most [`crate::topsrc::TOP_N`]).
    pub top_sources: Vec<crate::topsrc::TopSource>,
    /// How long accepted reloads took, from the request to the new rules in force.
    pub reload_latency: ReloadLatency,
    /// The packet backend in use: kind (`ixgbevf`, `af_xdp`) and mode (`vfio`, `zero-copy`,
    /// `copy`), exported as `floodgate_backend_info{kind,mode} 1` (`None`: left out).
    pub backend: Option<(&'static str, &'static str)>,
}

/// One worker's verdict counters as published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerSnapshot {
    /// Packets taken from the worker's ring.
    pub rx: u64,
    /// Packets the worker's rules dropped.
    pub dropped: u64,
    /// Packets the worker's rules passed.
    pub passed: u64,
}

/// Upper bounds (seconds) of the reload latency histogram's buckets.
pub const RELOAD_BUCKETS: [f64; 8] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// Reload latencies: a Prometheus histogram plus the last and the largest one.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReloadLatency {
    /// Reloads observed in each bucket of [`RELOAD_BUCKETS`] (not cumulative), then above.
    pub buckets: [u64; RELOAD_BUCKETS.len() + 1],
    /// Sum of the latencies, in seconds.
    pub sum: f64,
    /// Reloads observed.
    pub count: u64,
    /// The last one, in seconds.
    pub last: f64,
    /// The largest one, in seconds.
    pub max: f64,
}

impl ReloadLatency {
    /// Records one reload that took `d`.
    pub fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        let i = RELOAD_BUCKETS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(RELOAD_BUCKETS.len());
        self.buckets[i] += 1;
        self.sum += s;
        self.count += 1;
        self.last = s;
        self.max = self.max.max(s);
    }
}

/// Shared metrics state.
#[derive(Debug, Default)]
pub struct Metrics {
    snap: Mutex<Snapshot>,
}

impl Metrics {
    /// Replaces the published snapshot.
    pub fn publish(&self, s: Snapshot) {
        *self.snap.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }

    /// Renders the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let s = self.snap.lock().unwrap_or_else(|e| e.into_inner()).clone();
        render(&s)
    }
}

fn esc(name: &str) -> String {
    name.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders a snapshot.
pub fn render(s: &Snapshot) -> String {
    let c = &s.counters;
    let mut o = String::with_capacity(2048);
    let mut counter = |name: &str, help: &str, v: u64| {
        let _ = writeln!(o, "# HELP floodgate_{name} {help}");
        let _ = writeln!(o, "# TYPE floodgate_{name} counter");
        let _ = writeln!(o, "floodgate_{name} {v}");
    };
    counter(
        "rx_packets_total",
        "Packets taken from the VF RX rings.",
        c.rx_packets,
    );
    counter(
        "rx_bytes_total",
        "Bytes taken from the VF RX rings.",
        c.rx_bytes,
    );
    counter(
        "dropped_packets_total",
        "Packets dropped by the rules.",
        c.dropped,
    );
    counter(
        "passed_packets_total",
        "Packets passed by the rules.",
        c.passed,
    );
    counter(
        "tap_packets_total",
        "Passed packets written to the TAP.",
        c.tap,
    );
    counter(
        "tap_refused_packets_total",
        "Passed packets the TAP pushed back (counted, not sent).",
        c.tap_dropped,
    );
    counter(
        "vf_tx_packets_total",
        "Passed packets transmitted back out of the VF ([reinject] to = \"vf\").",
        c.vf_tx,
    );
    counter(
        "vf_tx_refused_packets_total",
        "Passed packets the VF's TX ring (or a worker's hand-back ring) pushed back (counted, not sent).",
        c.vf_tx_dropped,
    );
    counter(
        "looped_packets_total",
        "Own VF transmissions that came back into the VF (loop guard; part of dropped).",
        c.looped,
    );
    counter(
        "dispatch_full_packets_total",
        "Packets dropped because their worker's ring was full (part of dropped).",
        c.dispatch_full,
    );
    counter(
        "error_packets_total",
        "Bad descriptors and frames dropped by the driver.",
        c.errors,
    );
    counter(
        "left_in_rings_packets_total",
        "Frames still in the RX rings when a stop's drain ran out of time, released without a verdict.",
        c.left,
    );
    if let Some(m) = s.nic_missed {
        counter(
            "nic_rx_missed_packets_total",
            "Frames the NIC could not place in the VF's RX rings (no free descriptor or a full packet buffer); not part of rx_packets_total.",
            m,
        );
    }
    counter(
        "transport_timeouts_total",
        "Device requests that got no reply in time without the device being gone (vfio-user).",
        s.transport_timeouts,
    );
    counter(
        "pf_resets_total",
        "PF resets the VF recovered from.",
        s.pf_resets,
    );
    counter(
        "config_reloads_total",
        "Accepted configuration reloads.",
        s.reloads,
    );
    counter(
        "config_reload_errors_total",
        "Rejected configuration reloads (old rules kept).",
        s.reload_errors,
    );
    if let Some((kind, mode)) = s.backend {
        let _ = writeln!(
            o,
            "# HELP floodgate_backend_info The packet backend in use (kind) and how frames reach \
             memory (mode: vfio, zero-copy or copy)."
        );
        let _ = writeln!(o, "# TYPE floodgate_backend_info gauge");
        let _ = writeln!(
            o,
            "floodgate_backend_info{{kind=\"{}\",mode=\"{}\"}} 1",
            esc(kind),
            esc(mode)
        );
    }
    if let Some(free) = s.pool_free {
        let _ = writeln!(
            o,
            "# HELP floodgate_pool_free_buffers Free buffers in the VF's packet pool."
        );
        let _ = writeln!(o, "# TYPE floodgate_pool_free_buffers gauge");
        let _ = writeln!(o, "floodgate_pool_free_buffers {free}");
    }
    // Process-wide, read at render time: BPF programs the native compiler could not take,
    // which run in the (slower) interpreter instead.
    let _ = writeln!(
        o,
        "# HELP floodgate_bpf_interpreted_programs BPF programs running in the interpreter because they could not be compiled to native code."
    );
    let _ = writeln!(o, "# TYPE floodgate_bpf_interpreted_programs gauge");
    let _ = writeln!(
        o,
        "floodgate_bpf_interpreted_programs {}",
        crate::bpf::interpreted_programs()
    );
    render_reload_latency(&mut o, &s.reload_latency);
    render_workers(&mut o, &s.workers);
    render_top_sources(&mut o, &s.top_sources);
    let _ = writeln!(
        o,
        "# HELP floodgate_rule_hits_total Frames matched per rule."
    );
    let _ = writeln!(o, "# TYPE floodgate_rule_hits_total counter");
    for r in &s.rules {
        let _ = writeln!(
            o,
            "floodgate_rule_hits_total{{rule=\"{}\"}} {}",
            esc(&r.name),
            r.hits
        );
    }
    for (metric, help, get) in [
        (
            "rule_passed_total",
            "Frames passed per rule.",
            (|r: &RuleSnapshot| r.passed) as fn(&RuleSnapshot) -> u64,
        ),
        (
            "rule_dropped_total",
            "Frames dropped per rule.",
            |r: &RuleSnapshot| r.dropped,
        ),
        (
            "rule_rate_limited_total",
            "Frames dropped over a rate limit per rule.",
            |r: &RuleSnapshot| r.rate_limited,
        ),
    ] {
        let _ = writeln!(o, "# HELP floodgate_{metric} {help}");
        let _ = writeln!(o, "# TYPE floodgate_{metric} counter");
        for r in &s.rules {
            let _ = writeln!(
                o,
                "floodgate_{metric}{{rule=\"{}\"}} {}",
                esc(&r.name),
                get(r)
            );
        }
    }
    o
}

fn render_reload_latency(o: &mut String, r: &ReloadLatency) {
    let name = "floodgate_config_reload_duration_seconds";
    let _ = writeln!(
        o,
        "# HELP {name} Time from a reload request (SIGHUP) to the new rules in force, accepted reloads only."
    );
    let _ = writeln!(o, "# TYPE {name} histogram");
    let mut cumulative = 0;
    for (le, n) in RELOAD_BUCKETS.iter().zip(r.buckets) {
        cumulative += n;
        let _ = writeln!(o, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(o, "{name}_bucket{{le=\"+Inf\"}} {}", r.count);
    let _ = writeln!(o, "{name}_sum {}", r.sum);
    let _ = writeln!(o, "{name}_count {}", r.count);
    for (what, v) in [("last", r.last), ("max", r.max)] {
        let _ = writeln!(
            o,
            "# HELP floodgate_config_reload_{what}_seconds The {what} accepted reload's time from request to new rules in force (0 before the first)."
        );
        let _ = writeln!(o, "# TYPE floodgate_config_reload_{what}_seconds gauge");
        let _ = writeln!(o, "floodgate_config_reload_{what}_seconds {v}");
    }
}

fn render_workers(o: &mut String, workers: &[WorkerSnapshot]) {
    if workers.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "# HELP floodgate_worker_packets_total Packets judged per worker (soft-RSS fan-out), by verdict."
    );
    let _ = writeln!(o, "# TYPE floodgate_worker_packets_total counter");
    for (i, w) in workers.iter().enumerate() {
        for (verdict, v) in [("dropped", w.dropped), ("passed", w.passed)] {
            let _ = writeln!(
                o,
                "floodgate_worker_packets_total{{worker=\"{i}\",verdict=\"{verdict}\"}} {v}"
            );
        }
    }
    let _ = writeln!(
        o,
        "# HELP floodgate_worker_rx_packets_total Packets taken from each worker's ring."
    );
    let _ = writeln!(o, "# TYPE floodgate_worker_rx_packets_total counter");
    for (i, w) in workers.iter().enumerate() {
        let _ = writeln!(
            o,
            "floodgate_worker_rx_packets_total{{worker=\"{i}\"}} {}",
            w.rx
        );
    }
}

fn render_top_sources(o: &mut String, top: &[crate::topsrc::TopSource]) {
    let _ = writeln!(
        o,
        "# HELP floodgate_top_dropped_source_packets Estimated dropped packets of the sources dropped most, from a sample of one dropped frame in {} (largest {}).",
        crate::topsrc::SAMPLE_EVERY,
        crate::topsrc::TOP_N
    );
    let _ = writeln!(o, "# TYPE floodgate_top_dropped_source_packets gauge");
    for t in top.iter().take(crate::topsrc::TOP_N) {
        let _ = writeln!(
            o,
            "floodgate_top_dropped_source_packets{{src=\"{}\"}} {}",
            t.addr, t.packets
        );
    }
}

/// How many connections the metrics endpoint serves at once; a connection beyond that is
/// answered `503 Service Unavailable` and closed at once.
pub const METRICS_MAX_CONNECTIONS: usize = 16;

/// How long the endpoint waits for a client to send its request (and to take the answer)
/// before closing the connection.
pub const METRICS_IO_TIMEOUT: Duration = Duration::from_secs(1);

/// Largest request head read (the request line and headers); the rest is ignored.
const MAX_REQUEST: usize = 4096;

/// Settings of a [`MetricsServer`]; [`MetricsServer::start`] uses the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsLimits {
    /// Connections served at once (at least 1).
    pub max_connections: usize,
    /// Read and write timeout of each connection.
    pub io_timeout: Duration,
}

impl Default for MetricsLimits {
    fn default() -> Self {
        MetricsLimits {
            max_connections: METRICS_MAX_CONNECTIONS,
            io_timeout: METRICS_IO_TIMEOUT,
        }
    }
}

/// A running metrics endpoint; stops when dropped.
///
/// One thread accepts connections and hands each to a short-lived thread of its own, at most
/// [`METRICS_MAX_CONNECTIONS`] at a time, each with a read timeout of [`METRICS_IO_TIMEOUT`]:
/// clients that connect and send nothing cannot delay a scrape, and cannot pile up threads.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Releases a connection slot when the connection's thread ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl MetricsServer {
    /// Listens on `addr` and serves `metrics`. Binding errors say which address and why.
    pub fn start(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<MetricsServer> {
        Self::start_with(addr, metrics, MetricsLimits::default())
    }

    /// [`start`](Self::start) with other limits (tests use a long timeout to tell a concurrent
    /// server from a sequential one without timing anything).
    pub fn start_with(
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        limits: MetricsLimits,
    ) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr).map_err(|e| {
            std::io::Error::new(e.kind(), format!("metrics endpoint on {addr}: {e}"))
        })?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            log::warn!("metrics endpoint listens on {addr}, which is not loopback");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let active = Arc::new(AtomicUsize::new(0));
        let max = limits.max_connections.max(1);
        let thread = std::thread::Builder::new()
            .name("floodgate-metrics".into())
            .spawn(move || {
                let mut refused: u64 = 0;
                while !s2.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, peer)) => {
                            if active.fetch_add(1, Ordering::AcqRel) >= max {
                                active.fetch_sub(1, Ordering::AcqRel);
                                if refused == 0 {
                                    log::warn!("metrics endpoint: {max} connections already open, answering {peer} 503 (logged once)");
                                }
                                refused += 1;
                                busy(stream);
                                continue;
                            }
                            let slot = Slot(active.clone());
                            let m = metrics.clone();
                            let spawned = std::thread::Builder::new()
                                .name("floodgate-metrics-conn".into())
                                .spawn(move || {
                                    let _slot = slot;
                                    serve(stream, &m, limits.io_timeout);
                                });
                            if let Err(e) = spawned {
                                // The closure (with its slot and stream) was dropped.
                                log::warn!("metrics endpoint: cannot start a thread for {peer}: {e}");
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20))
                        }
                        Err(e) => {
                            log::warn!("metrics endpoint: accept failed: {e}");
                            std::thread::sleep(Duration::from_millis(200))
                        }
                    }
                }
            })?;
        log::info!("metrics on http://{addr}/metrics");
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers a connection over the limit without reading its request.
fn busy(mut stream: TcpStream) {
    // Take what the client already sent, without waiting, so that closing with unread data
    // does not reset the connection before the client reads the answer.
    let _ = stream.set_nonblocking(true);
    let mut sink = [0u8; MAX_REQUEST];
    let _ = stream.read(&mut sink);
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let body = "too many open connections to the metrics endpoint\n";
    let _ = write!(
        stream,
        "HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Reads the request head (up to the blank line, [`MAX_REQUEST`] bytes or `timeout`).
fn read_head(stream: &mut TcpStream, timeout: Duration) -> Vec<u8> {
    let deadline = Instant::now() + timeout;
    let mut req = Vec::with_capacity(256);
    let mut buf = [0u8; 512];
    while req.len() < MAX_REQUEST && !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => req.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    req
}

fn serve(mut stream: TcpStream, metrics: &Metrics, timeout: Duration) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(timeout));
    let req = read_head(&mut stream, timeout);
    if req.is_empty() {
        return;
    }
    let line = String::from_utf8_lossy(&req[..req.len().min(64)]);
    let (status, body) = if line.starts_with("GET /metrics") || line.starts_with("GET / ") {
        ("200 OK", metrics.render())
    } else {
        ("404 Not Found", "try GET /metrics\n".to_string())
    };
    let _ = write!(
        stream,
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_counters_and_rules_over_http() {
        let m = Arc::new(Metrics::default());
        m.publish(Snapshot {
            counters: Counters {
                rx_packets: 10,
                dropped: 7,
                passed: 3,
                tap: 1,
                vf_tx: 1,
                vf_tx_dropped: 1,
                looped: 2,
                ..Default::default()
            },
            nic_missed: Some(5),
            pool_free: Some(4000),
            backend: Some(("af_xdp", "copy")),
            rules: vec![RuleSnapshot {
                name: "dns \"flood\"".into(),
                hits: 7,
                dropped: 7,
                ..Default::default()
            }],
            ..Default::default()
        });
        let interpreted_before = crate::bpf::interpreted_programs();
        let srv = MetricsServer::start("127.0.0.1:0".parse().unwrap(), m.clone()).unwrap();
        let mut s = TcpStream::connect(srv.addr()).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        assert!(body.starts_with("HTTP/1.0 200 OK"), "{body}");
        assert!(body.contains("floodgate_rx_packets_total 10\n"));
        assert!(body.contains("floodgate_dropped_packets_total 7\n"));
        assert!(body.contains("floodgate_vf_tx_packets_total 1\n"));
        assert!(body.contains("floodgate_vf_tx_refused_packets_total 1\n"));
        assert!(body.contains("floodgate_looped_packets_total 2\n"));
        assert!(
            body.contains("floodgate_nic_rx_missed_packets_total 5\n"),
            "{body}"
        );
        assert!(
            body.contains("floodgate_backend_info{kind=\"af_xdp\",mode=\"copy\"} 1\n"),
            "{body}"
        );
        assert!(
            body.contains("floodgate_pool_free_buffers 4000\n"),
            "{body}"
        );
        let line = body
            .lines()
            .find_map(|l| l.strip_prefix("floodgate_bpf_interpreted_programs "))
            .expect("the interpreted-programs gauge");
        assert!(line.parse::<u64>().unwrap() >= interpreted_before, "{body}");
        assert!(body.contains("# TYPE floodgate_bpf_interpreted_programs gauge\n"));
        assert!(
            body.contains("floodgate_left_in_rings_packets_total 0\n"),
            "{body}"
        );
        assert!(body.contains("floodgate_rule_hits_total{rule=\"dns \\\"flood\\\"\"} 7\n"));
        let mut s = TcpStream::connect(srv.addr()).unwrap();
        s.write_all(b"GET /nope HTTP/1.0\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        assert!(body.starts_with("HTTP/1.0 404"));
    }

    #[test]
    fn workers_top_sources_and_reload_latency_are_rendered() {
        let mut s = Snapshot {
            workers: vec![
                WorkerSnapshot {
                    rx: 9,
                    dropped: 6,
                    passed: 3,
                },
                WorkerSnapshot {
                    rx: 4,
                    dropped: 0,
                    passed: 4,
                },
            ],
            top_sources: (0..12u8)
                .map(|i| crate::topsrc::TopSource {
                    addr: std::net::IpAddr::from([192, 0, 2, i]),
                    packets: 64 * u64::from(20 - i),
                    error: 0,
                })
                .collect(),
            ..Default::default()
        };
        s.reload_latency.observe(Duration::from_millis(3));
        s.reload_latency.observe(Duration::from_millis(70));
        let o = render(&s);
        for want in [
            "floodgate_worker_packets_total{worker=\"0\",verdict=\"dropped\"} 6\n",
            "floodgate_worker_packets_total{worker=\"1\",verdict=\"passed\"} 4\n",
            "floodgate_worker_rx_packets_total{worker=\"1\"} 4\n",
            "floodgate_top_dropped_source_packets{src=\"192.0.2.0\"} 1280\n",
            "floodgate_config_reload_duration_seconds_bucket{le=\"0.001\"} 0\n",
            "floodgate_config_reload_duration_seconds_bucket{le=\"0.005\"} 1\n",
            "floodgate_config_reload_duration_seconds_bucket{le=\"0.1\"} 2\n",
            "floodgate_config_reload_duration_seconds_bucket{le=\"+Inf\"} 2\n",
            "floodgate_config_reload_duration_seconds_count 2\n",
            "floodgate_config_reload_last_seconds 0.07\n",
            "floodgate_config_reload_max_seconds 0.07\n",
        ] {
            assert!(o.contains(want), "{want} not in\n{o}");
        }
        // At most TOP_N sources.
        let n = o
            .lines()
            .filter(|l| l.starts_with("floodgate_top_dropped_source_packets{"))
            .count();
        assert_eq!(n, crate::topsrc::TOP_N);
        // Inline: no per-worker series.
        assert!(!render(&Snapshot::default()).contains("floodgate_worker_packets_total{"));
    }

    #[test]
    fn bind_error_names_the_address() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let e = MetricsServer::start(addr, Arc::new(Metrics::default())).unwrap_err();
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
    }
}
