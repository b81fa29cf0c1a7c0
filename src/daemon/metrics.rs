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
    fn bind_error_names_the_address() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let e = MetricsServer::start(addr, Arc::new(Metrics::default())).unwrap_err();
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
    }
}
