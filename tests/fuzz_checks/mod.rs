//! Checks shared by the config and pcap property tests (fuzz_config.rs, fuzz_pcap.rs) and the
//! cargo-fuzz targets `config` and `pcap` (fuzz/fuzz_targets/), which include this file.

use floodgate::config::{Config, ConfigError};
use floodgate::pcapfile::{self, PcapFileError, PcapReader};
use floodgate_sim::pcap as simpcap;

pub const FILE: &str = "fuzz.toml";
pub const EXAMPLES: [&str; 2] = [
    include_str!("../../examples/floodgate.toml"),
    include_str!("../../examples/demo.toml"),
];

/// Longest message accepted when no line of the input is longer than [`SHORT_LINE`]: what the
/// message says comes from the input's own short pieces, the key names and fixed text.
pub const MAX_MESSAGE: usize = 600;
pub const SHORT_LINE: usize = 100;

/// Parses `text`; on error checks the message's form and returns it.
pub fn check(text: &str) -> Option<String> {
    let e = match Config::from_str_named(text, FILE) {
        Ok(_) => return None,
        Err(e) => e,
    };
    let (line, column) = match &e {
        ConfigError::Syntax { line, column, .. } | ConfigError::Invalid { line, column, .. } => {
            (*line, *column)
        }
        ConfigError::Io { .. } => panic!("I/O error from text: {e}"),
        ConfigError::TooLarge { size, limit, .. } => {
            // The one error without a line: the text is refused before it is parsed.
            assert!(
                *size > *limit && text.len() as u64 == *size,
                "{e} for a text of {} bytes",
                text.len()
            );
            return Some(e.to_string());
        }
    };
    let msg = e.to_string();
    let prefix = format!("{FILE}:{line}:{column}: ");
    assert!(
        msg.starts_with(&prefix),
        "{msg:?} does not start with {prefix:?}"
    );
    // The line exists (a file not ending in a newline still has its last line).
    let lines = text.split('\n').count();
    assert!(
        (1..=lines).contains(&line) && column >= 1,
        "line {line} column {column} outside a {lines}-line text: {msg}"
    );
    assert!(
        msg.len() > prefix.len(),
        "no message after the location: {msg:?}"
    );
    Some(msg)
}

/// `check`, plus the length bound when every line is short.
pub fn check_short(text: &str) {
    if let Some(msg) = check(text) {
        if text.lines().all(|l| l.len() <= SHORT_LINE) {
            assert!(
                msg.len() <= MAX_MESSAGE,
                "{} byte message for a text of short lines: {msg}",
                msg.len()
            );
        }
    }
}

/// The most the model's reader accepts for one record (its limit follows the file's snaplen,
/// up to four times [`simpcap::MAX_RECORD`]).
pub const SIM_LIMIT: usize = 4 * simpcap::MAX_RECORD as usize;

/// Reads `file` to its end or first error with the daemon's reader (which wraps the model's, so
/// its limit is [`SIM_LIMIT`] too); returns the records read.
/// Checks on the way that no record is larger than the reader's limit and that the buffer did
/// not grow past it.
pub fn read_daemon(
    file: &[u8],
) -> (
    Vec<(pcapfile::RecordHeader, Vec<u8>)>,
    Option<PcapFileError>,
) {
    let mut r = match PcapReader::new(file, "t.pcap") {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut out = Vec::new();
    let mut buf = Vec::new();
    // A record takes at least 16 bytes: more iterations than that means a loop.
    for _ in 0..=file.len() / 16 {
        match r.next_record(&mut buf) {
            Ok(Some(h)) => {
                assert_eq!(h.caplen as usize, buf.len());
                assert!(buf.len() <= SIM_LIMIT);
                out.push((h, buf.clone()));
            }
            Ok(None) => return (out, None),
            Err(e) => {
                assert!(
                    buf.capacity() <= 2 * SIM_LIMIT,
                    "buffer grew to {} bytes",
                    buf.capacity()
                );
                return (out, Some(e));
            }
        }
        assert!(buf.capacity() <= 2 * SIM_LIMIT);
    }
    panic!("reader returned more records than the file can hold");
}

/// The same with the model's reader.
pub fn read_sim(
    file: &[u8],
) -> (
    Vec<(simpcap::PcapRecord, Vec<u8>)>,
    Option<simpcap::PcapError>,
) {
    let mut r = match simpcap::PcapReader::new(file) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for _ in 0..=file.len() / 16 {
        let res = r.next_packet(&mut buf);
        assert!(
            buf.capacity() <= 2 * SIM_LIMIT,
            "buffer grew to {} bytes",
            buf.capacity()
        );
        match res {
            Ok(Some(h)) => {
                assert_eq!(h.caplen as usize, buf.len());
                assert!(buf.len() <= SIM_LIMIT);
                out.push((h, buf.clone()));
            }
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e)),
        }
    }
    panic!("reader returned more records than the file can hold");
}
