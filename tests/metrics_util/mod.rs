//! Shared by the tests that run a daemon or demo with a metrics endpoint and read it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A free loopback port (bound and released; the daemon binds it a moment later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One scrape of `http://127.0.0.1:<port>/metrics`: the whole answer (status line, headers and
/// body) when it is a `200`, `None` while nobody answers or on any other status.
pub fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.starts_with("HTTP/1.0 200").then_some(body)
}
