//! The systemd notification protocol (`sd_notify`), for `Type=notify` units.
//!
//! systemd passes the path of a UNIX datagram socket in `$NOTIFY_SOCKET` (a filesystem path, or
//! an abstract-namespace name written with a leading `@`). A service sends newline-separated
//! `KEY=VALUE` assignments to it, one datagram per message:
//!
//! - `READY=1`: start-up is finished (systemd then runs the units ordered after this one);
//! - `RELOADING=1` with `MONOTONIC_USEC=<CLOCK_MONOTONIC in µs>`: a reload began, ended by the
//!   next `READY=1`;
//! - `STOPPING=1`: the service is shutting down;
//! - `STATUS=<one line>`: free text shown by `systemctl status`;
//! - `WATCHDOG=1`: the service is alive; without one within `WatchdogSec=`, systemd kills and
//!   (with `Restart=`) restarts it. The interval is passed in `$WATCHDOG_USEC`, and
//!   `$WATCHDOG_PID`, when set, names the process it applies to.
//!
//! Everything is a no-op when `$NOTIFY_SOCKET` is not set (started by hand, or by a unit of
//! another type). The free functions ([`ready`], [`watchdog`], ...) use one process-wide
//! [`Notifier`] opened from the environment on first use; they log a failed send once and never
//! stop the daemon for it. Tests and embedders use [`Notifier::connect`] with an address of
//! their own.
//!
//! ```no_run
//! use floodgate::sdnotify;
//! sdnotify::ready();
//! // In the filter loop: paced to half the watchdog interval, a no-op without a watchdog.
//! let mut dog = sdnotify::WatchdogFeeder::from_env();
//! loop {
//!     // ... one pass of the loop ...
//!     if let Some(d) = dog.as_mut() {
//!         d.feed(std::time::Instant::now());
//!     }
//!     # break;
//! }
//! sdnotify::stopping();
//! ```

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Errors of the notification protocol.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `$NOTIFY_SOCKET` holds something that is not a socket address.
    #[error(
        "NOTIFY_SOCKET={0:?} is neither an absolute path nor an abstract name starting with '@'"
    )]
    BadAddress(OsString),
    /// The address does not fit a `sockaddr_un`.
    #[error("NOTIFY_SOCKET={addr:?} is not a usable UNIX socket address")]
    Address {
        /// The address as given.
        addr: OsString,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Creating the sending socket failed.
    #[error("creating a UNIX datagram socket for the notification socket failed")]
    Socket(#[source] std::io::Error),
    /// Sending a message failed (systemd gone, socket removed, ...).
    #[error("sending {message:?} to the notification socket {addr:?} failed")]
    Send {
        /// The address.
        addr: OsString,
        /// The first line of the message.
        message: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The kernel took only part of a datagram.
    #[error("the notification socket {addr:?} took {sent} of {len} bytes")]
    Short {
        /// The address.
        addr: OsString,
        /// Bytes sent.
        sent: usize,
        /// Bytes of the message.
        len: usize,
    },
    /// `$WATCHDOG_USEC` or `$WATCHDOG_PID` is not a positive number.
    #[error("{var}={value:?} is not a positive integer")]
    BadWatchdog {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: OsString,
    },
}

/// A connection to a notification socket.
#[derive(Debug)]
pub struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
    name: OsString,
}

/// Parses a `$NOTIFY_SOCKET` value: `/path` or `@abstract`.
fn parse_addr(raw: &OsStr) -> Result<SocketAddr, NotifyError> {
    let bytes = raw.as_bytes();
    let bad = |source| NotifyError::Address {
        addr: raw.to_os_string(),
        source,
    };
    match bytes.first() {
        Some(b'/') => SocketAddr::from_pathname(raw).map_err(bad),
        Some(b'@') if bytes.len() > 1 => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(&bytes[1..]).map_err(bad)
        }
        _ => Err(NotifyError::BadAddress(raw.to_os_string())),
    }
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd compares `MONOTONIC_USEC` with.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

impl Notifier {
    /// Connects to the socket named by `$NOTIFY_SOCKET`; `Ok(None)` when it is unset or empty.
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(v) if !v.is_empty() => Notifier::connect(&v).map(Some),
            _ => Ok(None),
        }
    }

    /// Prepares to send to `addr`, written as in `$NOTIFY_SOCKET` (`/path` or `@abstract`).
    /// Nothing is sent yet; a socket that does not exist shows on the first send.
    pub fn connect(addr: &OsStr) -> Result<Notifier, NotifyError> {
        let parsed = parse_addr(addr)?;
        let sock = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
        Ok(Notifier {
            sock,
            addr: parsed,
            name: addr.to_os_string(),
        })
    }

    /// Sends `message` (newline-separated assignments) as one datagram.
    pub fn notify(&self, message: &str) -> Result<(), NotifyError> {
        let sent = self
            .sock
            .send_to_addr(message.as_bytes(), &self.addr)
            .map_err(|source| NotifyError::Send {
                addr: self.name.clone(),
                message: message.lines().next().unwrap_or("").to_string(),
                source,
            })?;
        if sent != message.len() {
            return Err(NotifyError::Short {
                addr: self.name.clone(),
                sent,
                len: message.len(),
            });
        }
        Ok(())
    }

    /// `READY=1`: start-up (or a reload) is finished.
    pub fn ready(&self) -> Result<(), NotifyError> {
        self.notify("READY=1")
    }

    /// `RELOADING=1` with the monotonic time: a reload began; [`ready`](Self::ready) ends it.
    pub fn reloading(&self) -> Result<(), NotifyError> {
        self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()))
    }

    /// `STOPPING=1`: the service is shutting down.
    pub fn stopping(&self) -> Result<(), NotifyError> {
        self.notify("STOPPING=1")
    }

    /// `STATUS=<text>`; line breaks become spaces (one assignment per line in the protocol).
    pub fn status(&self, text: &str) -> Result<(), NotifyError> {
        self.notify(&format!("STATUS={}", status_line(text)))
    }

    /// `WATCHDOG=1`: the service is alive.
    pub fn watchdog(&self) -> Result<(), NotifyError> {
        self.notify("WATCHDOG=1")
    }
}

fn status_line(text: &str) -> String {
    text.chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect()
}

/// The watchdog interval from `WATCHDOG_USEC` and `WATCHDOG_PID` values, for the process `pid`:
/// `None` when no watchdog is asked for, or when it is asked for another process.
pub fn parse_watchdog(
    usec: Option<&OsStr>,
    wpid: Option<&OsStr>,
    pid: u32,
) -> Result<Option<Duration>, NotifyError> {
    let number = |var: &'static str, v: &OsStr| -> Result<u64, NotifyError> {
        v.to_str()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| NotifyError::BadWatchdog {
                var,
                value: v.to_os_string(),
            })
    };
    let Some(usec) = usec.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let usec = number("WATCHDOG_USEC", usec)?;
    if let Some(w) = wpid.filter(|v| !v.is_empty()) {
        if number("WATCHDOG_PID", w)? != u64::from(pid) {
            return Ok(None);
        }
    }
    Ok(Some(Duration::from_micros(usec)))
}

/// The watchdog interval systemd asks this process for (`WatchdogSec=`), if any. Feed the
/// watchdog at least twice per interval. A malformed value is logged and read as no watchdog.
pub fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var_os("WATCHDOG_USEC");
    let wpid = std::env::var_os("WATCHDOG_PID");
    match parse_watchdog(usec.as_deref(), wpid.as_deref(), std::process::id()) {
        Ok(d) => d,
        Err(e) => {
            log::warn!("systemd watchdog ignored: {e}");
            None
        }
    }
}

/// Paces `WATCHDOG=1` for a loop that calls it on every pass (or every stats tick): it sends
/// at most once per half watchdog interval, so systemd always sees one within the interval while
/// the loop runs, and none once the loop stops calling.
#[derive(Debug, Clone)]
pub struct WatchdogFeeder {
    every: Duration,
    last: Option<std::time::Instant>,
}

impl WatchdogFeeder {
    /// A feeder for the watchdog systemd asks for ([`watchdog_interval`]); `None` without one.
    pub fn from_env() -> Option<WatchdogFeeder> {
        watchdog_interval().map(WatchdogFeeder::new)
    }

    /// A feeder for a watchdog of `interval`: it feeds every `interval / 2`.
    pub fn new(interval: Duration) -> WatchdogFeeder {
        WatchdogFeeder {
            every: interval / 2,
            last: None,
        }
    }

    /// How often it feeds.
    pub fn period(&self) -> Duration {
        self.every
    }

    /// Whether a `WATCHDOG=1` is due at `now` (the first call always is); records it as sent.
    pub fn due(&mut self, now: std::time::Instant) -> bool {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.every => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }

    /// Sends `WATCHDOG=1` through the process-wide notifier if one is due at `now`.
    pub fn feed(&mut self, now: std::time::Instant) {
        if self.due(now) {
            watchdog();
        }
    }

    /// [`feed`](Self::feed) through a given notifier.
    pub fn feed_to(&mut self, now: std::time::Instant, n: &Notifier) -> Result<(), NotifyError> {
        if self.due(now) {
            n.watchdog()?;
        }
        Ok(())
    }
}

static GLOBAL: OnceLock<Option<Notifier>> = OnceLock::new();
static SEND_FAILED: AtomicBool = AtomicBool::new(false);

fn global() -> Option<&'static Notifier> {
    GLOBAL
        .get_or_init(|| match Notifier::from_env() {
            Ok(n) => n,
            Err(e) => {
                log::warn!("systemd notifications disabled: {e}");
                None
            }
        })
        .as_ref()
}

/// Sends through the process-wide notifier; a no-op without `$NOTIFY_SOCKET`. A failed send is
/// logged (the first one as a warning, later ones at debug level) and otherwise ignored.
pub fn send(message: &str) {
    if let Some(n) = global() {
        if let Err(e) = n.notify(message) {
            if SEND_FAILED.swap(true, Ordering::Relaxed) {
                log::debug!("systemd notification: {e}");
            } else {
                log::warn!("systemd notification: {e} (further failures logged at debug level)");
            }
        }
    }
}

/// `READY=1` through the process-wide notifier.
pub fn ready() {
    send("READY=1")
}

/// `RELOADING=1` + `MONOTONIC_USEC` through the process-wide notifier.
pub fn reloading() {
    send(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()))
}

/// `STOPPING=1` through the process-wide notifier.
pub fn stopping() {
    send("STOPPING=1")
}

/// `STATUS=<text>` through the process-wide notifier.
pub fn status(text: &str) {
    send(&format!("STATUS={}", status_line(text)))
}

/// `WATCHDOG=1` through the process-wide notifier.
pub fn watchdog() {
    send("WATCHDOG=1")
}

/// Whether `$NOTIFY_SOCKET` named a usable socket address (notifications are being sent).
pub fn enabled() -> bool {
    global().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_paths_or_abstract_names() {
        assert!(parse_addr(OsStr::new("/run/systemd/notify")).is_ok());
        let a = parse_addr(OsStr::new("@fg/notify")).unwrap();
        use std::os::linux::net::SocketAddrExt;
        assert_eq!(a.as_abstract_name(), Some(&b"fg/notify"[..]));
        for bad in ["", "@", "relative/path"] {
            let e = parse_addr(OsStr::new(bad)).unwrap_err();
            assert!(matches!(e, NotifyError::BadAddress(_)), "{bad:?}: {e}");
        }
        let long = format!("/{}", "x".repeat(200));
        let e = parse_addr(OsStr::new(&long)).unwrap_err();
        assert!(matches!(e, NotifyError::Address { .. }), "{e}");
    }

    #[test]
    fn watchdog_values() {
        let s = |v: &str| Some(OsStr::new(v).to_os_string());
        let p = |u: Option<OsString>, w: Option<OsString>, pid| {
            parse_watchdog(u.as_deref(), w.as_deref(), pid)
        };
        assert_eq!(p(None, None, 7).unwrap(), None);
        assert_eq!(p(s(""), None, 7).unwrap(), None);
        assert_eq!(
            p(s("20000000"), None, 7).unwrap(),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            p(s("500000"), s("7"), 7).unwrap(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(p(s("500000"), s("8"), 7).unwrap(), None);
        let e = p(s("soon"), None, 7).unwrap_err();
        assert!(e.to_string().contains("WATCHDOG_USEC=\"soon\""), "{e}");
        assert!(p(s("0"), None, 7).is_err());
        let e = p(s("1"), s("-1"), 7).unwrap_err();
        assert!(e.to_string().contains("WATCHDOG_PID"), "{e}");
    }

    #[test]
    fn the_feeder_sends_twice_per_interval() {
        let t0 = std::time::Instant::now();
        let mut f = WatchdogFeeder::new(Duration::from_secs(10));
        assert_eq!(f.period(), Duration::from_secs(5));
        let at = |ms| t0 + Duration::from_millis(ms);
        let sent: Vec<u64> = [0, 1000, 4999, 5000, 5001, 9999, 10_000, 30_000]
            .into_iter()
            .filter(|&ms| f.due(at(ms)))
            .collect();
        assert_eq!(sent, [0, 5000, 10_000, 30_000]);
    }

    #[test]
    fn status_is_one_line() {
        assert_eq!(status_line("a\nb\r\nc"), "a b  c");
    }
}
