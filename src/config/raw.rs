//! The raw (serde) form of the configuration: the TOML as written, every value with its span.
//! Unknown keys are refused here; [`super::validate`] turns these into the domain types.

use serde::Deserialize;
use toml::{Spanned, Value};

/// A value with its byte range in the file, for error positions.
pub(super) type S<T> = Spanned<T>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) device: Option<S<RawDevice>>,
    #[serde(default)]
    pub(super) steering: Vec<S<RawSteering>>,
    pub(super) filter: Option<RawFilter>,
    pub(super) tap: Option<RawTap>,
    pub(super) reinject: Option<RawReinject>,
    pub(super) stats: Option<RawStats>,
    pub(super) daemon: Option<RawDaemon>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDevice {
    pub(super) backend: Option<S<String>>,
    pub(super) pci: Option<S<String>>,
    pub(super) ifname: Option<S<String>>,
    pub(super) xdp_mode: Option<S<String>>,
    pub(super) zero_copy: Option<S<String>>,
    pub(super) pf: Option<S<String>>,
    pub(super) queues: Option<S<i64>>,
    pub(super) rx_ring: Option<S<i64>>,
    pub(super) tx_ring: Option<S<i64>>,
    pub(super) pool_size: Option<S<i64>>,
    pub(super) headroom: Option<S<i64>>,
    pub(super) burst: Option<S<i64>>,
    pub(super) mtu: Option<S<i64>>,
    pub(super) xcast: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSteering {
    pub(super) name: Option<String>,
    pub(super) flow: S<String>,
    pub(super) src: Option<S<String>>,
    pub(super) dst: Option<S<String>>,
    pub(super) src_port: Option<S<i64>>,
    pub(super) src_port_mask: Option<S<i64>>,
    pub(super) dst_port: Option<S<i64>>,
    pub(super) dst_port_mask: Option<S<i64>>,
    pub(super) vf: Option<S<i64>>,
    pub(super) queue: Option<S<i64>>,
    pub(super) location: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFilter {
    pub(super) default: Option<S<String>>,
    #[serde(default)]
    pub(super) rule: Vec<S<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) name: Option<S<String>>,
    pub(super) action: S<String>,
    pub(super) proto: Option<S<Value>>,
    pub(super) family: Option<S<String>>,
    pub(super) src: Option<S<Value>>,
    pub(super) dst: Option<S<Value>>,
    pub(super) src_port: Option<S<Value>>,
    pub(super) dst_port: Option<S<Value>>,
    pub(super) len: Option<S<Value>>,
    pub(super) bytes: Option<S<Value>>,
    pub(super) tcpdump: Option<S<String>>,
    pub(super) bpf: Option<S<String>>,
    // rate-limit
    pub(super) rate: Option<S<i64>>,
    pub(super) burst: Option<S<i64>>,
    pub(super) per: Option<S<String>>,
    pub(super) prefix: Option<S<i64>>,
    pub(super) prefix6: Option<S<i64>>,
    pub(super) table_size: Option<S<i64>>,
    // sample
    pub(super) every: Option<S<i64>>,
    pub(super) path: Option<S<String>>,
    pub(super) max_bytes: Option<S<i64>>,
    pub(super) max_files: Option<S<i64>>,
    pub(super) snaplen: Option<S<i64>>,
    pub(super) format: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTap {
    pub(super) name: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReinject {
    pub(super) to: Option<S<String>>,
    pub(super) tx_queue: Option<S<i64>>,
    pub(super) src_mac: Option<S<String>>,
    pub(super) dst_mac: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStats {
    pub(super) interval_ms: Option<S<i64>>,
    pub(super) prometheus: Option<S<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    pub(super) user: Option<S<String>>,
    pub(super) group: Option<S<String>>,
    pub(super) workers: Option<S<i64>>,
    pub(super) state_file: Option<S<String>>,
    pub(super) idle_sleep_us: Option<S<i64>>,
    pub(super) drain_timeout_ms: Option<S<i64>>,
}
