//! floodgate, the filter daemon: steer a flood into an ixgbe VF, filter it at line rate,
//! reinject the survivors into the kernel through a TAP.
//!
//! - [`backend`]: the packet I/O interface the filter loop uses (the VF, AF_XDP);
//! - [`bpf`]: classic BPF validator and bounds-checked interpreter;
//! - [`libpcap`]: tcpdump expressions compiled by a run-time loaded libpcap;
//! - [`filter`]: the rules engine (matchers, actions, counters) and `rules test` over a pcap;
//! - [`ratelimit`]: bounded token-bucket tables;
//! - [`pcapfile`]: pcap reader, writer and rotating writer;
//! - [`safefile`]: files created `O_EXCL|O_NOFOLLOW` relative to a directory opened once;
//! - [`config`]: the TOML configuration and its validation;
//! - [`steering`]: n-tuple rules on the PF through the ethtool ioctl (or the model's PF agent);
//! - [`sink`]: where survivors go (the [`sink::PassSink`] trait the TAP's sink implements);
//! - [`tap`]: batched TAP reinjection (io_uring, with a `write()` fallback) and its sink;
//! - [`privdrop`]: switching to an unprivileged user once the device and TAP are open, and a
//!   reader process that keeps read access to the config for reloads;
//! - [`sdnotify`]: the systemd notification protocol (`Type=notify`, watchdog);
//! - [`daemon`]: the filter loop, the run loop, metrics and the commands;
//! - [`stats`]: the daemon's counters and the per-second line;
//! - [`topsrc`]: a bounded sample of the sources of dropped frames (the top dropped sources);
//! - [`top`]: `floodgate top`, the live terminal view of a running daemon's metrics;
//! - [`softrss`]: tunnel-aware symmetric software RSS, headroom metadata and worker fan-out.

#![deny(missing_docs)]

pub mod backend;
pub mod bpf;
pub mod config;
pub mod daemon;
pub mod filter;
pub mod libpcap;
pub mod pcapfile;
pub mod privdrop;
pub mod ratelimit;
pub mod safefile;
pub mod sdnotify;
pub mod sink;
pub mod softrss;
pub mod stats;
pub mod steering;
pub mod tap;
#[cfg(test)]
mod testrand;
pub mod top;
pub mod topsrc;
pub mod wire;
