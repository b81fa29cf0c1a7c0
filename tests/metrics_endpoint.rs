//! The metrics endpoint cannot be tied up by clients that connect and send nothing.
//!
//! The server is started with a long per-connection timeout (60 s), so that a server answering
//! one connection at a time would keep the scrape waiting behind the idle connections for
//! minutes. The tests do not time anything: the scrape's own 30 s read timeout only keeps a
//! broken server from hanging the test, and the proof of concurrency is that the idle
//! connections are all still open (unanswered) when the scrape's answer has arrived.

use floodgate::daemon::metrics::{Metrics, MetricsLimits, MetricsServer, Snapshot};
use floodgate::stats::Counters;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

fn server(max_connections: usize) -> (MetricsServer, Arc<Metrics>) {
    let m = Arc::new(Metrics::default());
    m.publish(Snapshot {
        counters: Counters {
            rx_packets: 42,
            ..Default::default()
        },
        ..Default::default()
    });
    let srv = MetricsServer::start_with(
        "127.0.0.1:0".parse().unwrap(),
        m.clone(),
        MetricsLimits {
            max_connections,
            io_timeout: Duration::from_secs(60),
        },
    )
    .unwrap();
    (srv, m)
}

fn scrape(srv: &MetricsServer) -> String {
    let mut s = TcpStream::connect(srv.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut body = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // A refused connection may be reset after its answer was sent.
            Err(e) if e.kind() == ErrorKind::ConnectionReset && !body.is_empty() => break,
            Err(e) => panic!(
                "scrape not answered within the 30 s safety timeout ({e}): the endpoint is tied up"
            ),
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// Whether the server has neither answered nor closed `s` yet.
fn still_waiting(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 64];
    let r = s.read(&mut b);
    s.set_nonblocking(false).unwrap();
    matches!(r, Err(e) if e.kind() == ErrorKind::WouldBlock)
}

#[test]
fn ten_idle_connections_do_not_delay_a_scrape() {
    let (srv, _m) = server(16);
    let mut idle: Vec<TcpStream> = (0..10)
        .map(|_| TcpStream::connect(srv.addr()).unwrap())
        .collect();
    // One idle connection that sent half a request line.
    idle[0].write_all(b"GET /met").unwrap();
    let body = scrape(&srv);
    assert!(body.starts_with("HTTP/1.0 200 OK"), "{body}");
    assert!(body.contains("floodgate_rx_packets_total 42\n"), "{body}");
    for (i, s) in idle.iter_mut().enumerate() {
        assert!(
            still_waiting(s),
            "idle connection {i} was answered or closed before the scrape: connections are served one at a time"
        );
    }
}

#[test]
fn connections_over_the_limit_get_503_and_the_slots_come_back() {
    let (srv, _m) = server(4);
    let idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(srv.addr()).unwrap())
        .collect();
    // Wait until the server has taken all four (it accepts in order; a 503 on a probe means
    // they are all in).
    let mut tries = 0;
    let body = loop {
        let b = scrape(&srv);
        if b.starts_with("HTTP/1.0 503") || tries > 200 {
            break b;
        }
        tries += 1;
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(body.starts_with("HTTP/1.0 503"), "{body}");
    assert!(body.contains("too many open connections"), "{body}");
    // Closing the idle connections frees their slots: a scrape is served again.
    drop(idle);
    let mut tries = 0;
    let body = loop {
        let b = scrape(&srv);
        if b.starts_with("HTTP/1.0 200") || tries > 200 {
            break b;
        }
        tries += 1;
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(body.starts_with("HTTP/1.0 200 OK"), "{body}");
}
