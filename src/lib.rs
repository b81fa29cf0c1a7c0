//! floodgate, the filter daemon: the packet-independent parts.
//!
//! - [`bpf`]: classic BPF validator and bounds-checked interpreter;
//! - [`libpcap`]: tcpdump expressions compiled by a run-time loaded libpcap;
//! - [`filter`]: the rules engine (matchers, actions, counters) and `rules test` over a pcap;
//! - [`ratelimit`]: bounded token-bucket tables;
//! - [`pcapfile`]: pcap reader, writer and rotating writer;
//! - [`config`]: the TOML configuration and its validation.

pub mod bpf;
pub mod config;
pub mod daemon;
pub mod filter;
pub mod libpcap;
pub mod pcapfile;
pub mod ratelimit;
pub mod stats;
