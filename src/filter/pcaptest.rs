//! The core of `floodgate rules test`: run a rule set over a recorded capture.

use std::path::Path;

use super::{Counters, RuleSet, Verdict};
use crate::pcapfile::{PcapFileError, PcapReader, RecordHeader, LINKTYPE_ETHERNET};

/// Errors from [`run_pcap`] / [`test_pcap`].
#[derive(Debug, thiserror::Error)]
pub enum PcapTestError {
    /// The capture could not be read.
    #[error(transparent)]
    File(#[from] PcapFileError),
    /// The capture is not of Ethernet frames.
    #[error("{path}: link type {linktype} is not Ethernet (1); capture with `tcpdump -i IFACE` on an Ethernet interface")]
    LinkType {
        /// The file.
        path: String,
        /// Its link type.
        linktype: u32,
    },
}

/// The verdict on one frame of the capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketVerdict {
    /// Frame number, starting at 1 (as Wireshark numbers them).
    pub number: u64,
    /// The record header (time and lengths).
    pub header: RecordHeader,
    /// What the rules decided.
    pub verdict: Verdict,
}

/// What [`test_pcap`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PcapTestReport {
    /// One entry per frame, in file order.
    pub verdicts: Vec<PacketVerdict>,
    /// The rule set's counters after the run.
    pub counters: Counters,
}

/// Runs `rules` over every frame of the pcap file at `path`, calling `each` with each verdict.
/// Time stamps from the file drive the rate limiters, so rate limits behave as they would have
/// at capture time. Returns the number of frames.
pub fn run_pcap(
    rules: &mut RuleSet,
    path: impl AsRef<Path>,
    mut each: impl FnMut(&PacketVerdict),
) -> Result<u64, PcapTestError> {
    let path = path.as_ref();
    let mut reader = PcapReader::open(path)?;
    if reader.linktype() != LINKTYPE_ETHERNET {
        return Err(PcapTestError::LinkType {
            path: path.display().to_string(),
            linktype: reader.linktype(),
        });
    }
    let mut buf = Vec::with_capacity(2048);
    let mut number = 0;
    while let Some(header) = reader.next_record(&mut buf)? {
        number += 1;
        let verdict =
            rules.classify_wire(&buf, header.orig_len.max(header.caplen), header.ts_nanos);
        each(&PacketVerdict {
            number,
            header,
            verdict,
        });
    }
    Ok(number)
}

/// Runs `rules` over the pcap file at `path` and collects every verdict and the counters.
pub fn test_pcap(
    rules: &mut RuleSet,
    path: impl AsRef<Path>,
) -> Result<PcapTestReport, PcapTestError> {
    let mut verdicts = Vec::new();
    run_pcap(rules, path, |v| verdicts.push(*v))?;
    Ok(PcapTestReport {
        verdicts,
        counters: rules.counters().clone(),
    })
}
