//! The daemon's configuration: TOML, parsed with serde and validated beyond syntax.
//!
//! Every error names the file and the line and column of the offending value (or of the table
//! it belongs to), the section or rule (by index and name), and what is wrong. Unknown keys are
//! errors. See `docs/config.md` for every key and `examples/floodgate.toml` for a commented
//! example.
//!
//! ```
//! let cfg = floodgate::config::Config::from_str_named(
//!     r#"
//!     [device]
//!     pci = "sim"
//!
//!     [filter]
//!     default = "pass"
//!
//!     [[filter.rule]]
//!     name = "dns-flood"
//!     action = "drop"
//!     proto = "udp"
//!     dst_port = 53
//!     len = "512-65535"
//!     "#,
//!     "inline.toml",
//! )
//! .unwrap();
//! assert_eq!(cfg.filter.rules.len(), 1);
//! let err = floodgate::config::Config::from_str_named(
//!     "[device]\npci = \"sim\"\nheadroom = 300\n",
//!     "bad.toml",
//! )
//! .unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "bad.toml:3:12: [device]: headroom = 300 is out of range: it must be from 0 to 256"
//! );
//! ```

use std::collections::HashMap;
use std::fmt;
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::{Spanned, Value};

use crate::bpf::{self, Program};
use crate::filter::{
    Action, ByteMatch, Cidr, CidrSet, Decision, Layer, Matcher, PortSet, Proto, ProtoSet, RateKey,
    RateLimit, Rule, RuleSet, Sample,
};
use crate::pcapfile::RotationPolicy;

/// A configuration error. The `Display` form is `FILE:LINE:COLUMN: [CONTEXT: ]MESSAGE`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// The file.
        file: String,
        /// The error.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key, a missing key or a value of the wrong type.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The file is larger than [`limits::MAX_CONFIG_BYTES`].
    #[error("{file}: {size} bytes is over the limit of {limit} bytes for a configuration file (see docs/config.md, Limits)")]
    TooLarge {
        /// The file.
        file: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A value that parses but is not acceptable.
    #[error("{file}:{line}:{column}: {context}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// Where: a section such as `[device]`, or `filter rule 2 ("dns")`.
        context: String,
        /// What is wrong.
        message: String,
    },
}

/// Which device to drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceAddr {
    /// The built-in NIC model (no hardware, no root).
    Sim,
    /// A VF bound to vfio-pci, by PCI address.
    Pci(PciAddr),
    /// A VF served over vfio-user (`pci = "vfio-user:/path/to/socket"`), for example the NIC
    /// model in another process (`floodgate-sim serve`).
    VfioUser(std::path::PathBuf),
}

impl fmt::Display for DeviceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceAddr::Sim => f.write_str("sim"),
            DeviceAddr::Pci(p) => p.fmt(f),
            DeviceAddr::VfioUser(p) => write!(f, "vfio-user:{}", p.display()),
        }
    }
}

/// A PCI address `DOMAIN:BUS:DEVICE.FUNCTION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PciAddr {
    /// Domain (segment).
    pub domain: u16,
    /// Bus.
    pub bus: u8,
    /// Device, 0..32.
    pub device: u8,
    /// Function, 0..8.
    pub function: u8,
}

impl fmt::Display for PciAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

impl std::str::FromStr for PciAddr {
    type Err = String;
    /// Parses `0000:03:10.0` or `03:10.0` (hexadecimal, as in sysfs).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a PCI address like 0000:03:10.0");
        let parts: Vec<&str> = s.split(':').collect();
        let (dom, bus, rest) = match parts.as_slice() {
            [d, b, r] => (*d, *b, *r),
            [b, r] => ("0", *b, *r),
            _ => return Err(bad()),
        };
        let (dev, func) = rest.split_once('.').ok_or_else(bad)?;
        let domain = u16::from_str_radix(dom, 16).map_err(|_| bad())?;
        let bus = u8::from_str_radix(bus, 16).map_err(|_| bad())?;
        let device = u8::from_str_radix(dev, 16).map_err(|_| bad())?;
        let function = u8::from_str_radix(func, 16).map_err(|_| bad())?;
        if device >= 32 || function >= 8 {
            return Err(format!(
                "{s:?}: PCI device must be below 0x20 and function below 8"
            ));
        }
        Ok(PciAddr {
            domain,
            bus,
            device,
            function,
        })
    }
}

/// `[device]`: the VF, its queues and buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    /// The VF's PCI address, or the model.
    pub device: DeviceAddr,
    /// The PF's netdev (for steering); required for a PCI device with steering rules.
    pub pf: Option<String>,
    /// RX/TX queue pairs to poll.
    pub queues: u16,
    /// RX ring size (descriptors).
    pub rx_ring: u16,
    /// TX ring size (descriptors).
    pub tx_ring: u16,
    /// Packet buffers in the pool.
    pub pool_size: u32,
    /// Bytes of application headroom in front of each packet.
    pub headroom: u16,
    /// The VF's MTU (SET_LPE asks the PF for MTU + 18 bytes; facts §3.8 step 11).
    pub mtu: u32,
    /// Multicast/promiscuous mode to ask the PF for (UPDATE_XCAST_MODE); `None` leaves the
    /// PF's default. An untrusted VF is downgraded by the PF (facts §3.3).
    pub xcast: Option<floodgate_pmd::XcastMode>,
    /// Packets per receive burst.
    pub burst: u16,
}

/// Flow types the PF's flow director can steer (ixgbe: IPv4 only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowType {
    /// TCP over IPv4 (`TCP_V4_FLOW`).
    Tcp4,
    /// UDP over IPv4 (`UDP_V4_FLOW`).
    Udp4,
    /// SCTP over IPv4 (`SCTP_V4_FLOW`).
    Sctp4,
    /// Any IPv4 (`IP_USER_FLOW`), addresses only.
    Ip4,
}

/// An IPv4 address with a mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Masked {
    /// Address (host bits cleared).
    pub addr: Ipv4Addr,
    /// Mask.
    pub mask: Ipv4Addr,
}

/// A port with a mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMasked {
    /// Port.
    pub port: u16,
    /// Mask (0xffff = exact).
    pub mask: u16,
}

/// One `[[steering]]` rule: a flow the PF steers into the VF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SteeringRule {
    /// Name.
    pub name: String,
    /// Flow type.
    pub flow: FlowType,
    /// Source address match.
    pub src: Option<Ipv4Masked>,
    /// Destination address match.
    pub dst: Option<Ipv4Masked>,
    /// Source port match (not for `ip4`).
    pub src_port: Option<PortMasked>,
    /// Destination port match (not for `ip4`).
    pub dst_port: Option<PortMasked>,
    /// VF index (0-based; the ring cookie carries index + 1, facts §4.2).
    pub vf: u16,
    /// Queue within the VF.
    pub queue: u16,
    /// Explicit rule location in the PF's table, if given.
    pub location: Option<u32>,
}

/// `[filter]`: rules and default action.
#[derive(Debug, Clone)]
pub struct FilterConfig {
    /// What happens to frames no terminal rule matches.
    pub default: Decision,
    /// The rules, in order, with tcpdump expressions already compiled and validated.
    pub rules: Vec<Rule>,
}

impl FilterConfig {
    /// Builds a rule set for one worker (use [`RuleSet::fork`] for more).
    pub fn ruleset(&self) -> RuleSet {
        RuleSet::new(self.rules.clone(), self.default)
    }
}

/// `[tap]`: where survivors go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapConfig {
    /// TAP interface name.
    pub name: String,
}

/// `[reinject]`: where the survivors go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReinjectTo {
    /// Into the kernel through the TAP of `[tap]` (the default).
    #[default]
    Tap,
    /// Back out of the VF's own TX queue, zero copy (`to = "vf"`).
    Vf(VfReinject),
}

/// `[reinject] to = "vf"`: how survivors are transmitted out of the VF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VfReinject {
    /// The VF TX queue survivors are sent on (one of `[device] queues`).
    pub tx_queue: u16,
    /// What the source MAC becomes.
    pub src_mac: SrcMac,
    /// What the destination MAC becomes; `None` keeps it (frames addressed to the host keep
    /// the PF's MAC and are looped back to the PF by the NIC's switch).
    pub dst_mac: Option<DstMac>,
}

/// `[reinject] src_mac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SrcMac {
    /// Rewrite it to the VF's own MAC (default). The PF's MAC anti-spoofing, on by default in
    /// Linux (facts §4.1), drops a VF transmission with any other source MAC. It also lets the
    /// daemon recognise its own frames if the NIC loops them back into the VF.
    #[default]
    Vf,
    /// Leave it as received (needs `ip link set <pf> vf N spoofchk off`).
    Keep,
}

/// `[reinject] dst_mac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DstMac {
    /// The PF's MAC (read from `[device] pf` at start; the model's PF in the demo).
    Pf,
    /// This address: the next hop.
    Mac([u8; 6]),
}

/// `[stats]`: periodic line and Prometheus metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsConfig {
    /// Period of the stats line and counter publication, in milliseconds.
    pub interval_ms: u64,
    /// Address of the Prometheus text endpoint; `None` disables it.
    pub prometheus: Option<SocketAddr>,
}

/// `[daemon]`: process settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    /// User to switch to once the device and TAP are open.
    pub user: Option<String>,
    /// Group to switch to (default: the user's primary group).
    pub group: Option<String>,
    /// Worker threads.
    pub workers: u16,
    /// Where steering rule locations are recorded, to clean up after a crash.
    pub state_file: PathBuf,
    /// Nap this many microseconds when the rings have been empty for a while (adaptive polling);
    /// 0 = busy-poll always. See [`crate::daemon::runloop::IdlePolicy`].
    pub idle_sleep_us: u32,
    /// How long a stop keeps judging what is in the rings before it counts the rest as left
    /// and exits. See [`crate::daemon::runloop::LoopControl::drain_timeout`].
    pub drain_timeout_ms: u32,
}

/// 1-based line and column in the config file.
type LineCol = (usize, usize);

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (or the name given to [`Config::from_str_named`]).
    pub source: String,
    /// Line and column of `[daemon] user` and `group`, for [`Config::check_accounts`].
    accounts_at: [Option<LineCol>; 2],
    /// `[device]`.
    pub device: DeviceConfig,
    /// `[[steering]]`.
    pub steering: Vec<SteeringRule>,
    /// `[filter]`.
    pub filter: FilterConfig,
    /// `[tap]`.
    pub tap: TapConfig,
    /// `[reinject]`.
    pub reinject: ReinjectTo,
    /// `[stats]`.
    pub stats: StatsConfig,
    /// `[daemon]`.
    pub daemon: DaemonConfig,
}

// ---------------------------------------------------------------------------------------------
// Raw (serde) form.

type S<T> = Spanned<T>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    device: Option<RawDevice>,
    #[serde(default)]
    steering: Vec<S<RawSteering>>,
    filter: Option<RawFilter>,
    tap: Option<RawTap>,
    reinject: Option<RawReinject>,
    stats: Option<RawStats>,
    daemon: Option<RawDaemon>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    pci: S<String>,
    pf: Option<S<String>>,
    queues: Option<S<i64>>,
    rx_ring: Option<S<i64>>,
    tx_ring: Option<S<i64>>,
    pool_size: Option<S<i64>>,
    headroom: Option<S<i64>>,
    burst: Option<S<i64>>,
    mtu: Option<S<i64>>,
    xcast: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSteering {
    name: Option<String>,
    flow: S<String>,
    src: Option<S<String>>,
    dst: Option<S<String>>,
    src_port: Option<S<i64>>,
    src_port_mask: Option<S<i64>>,
    dst_port: Option<S<i64>>,
    dst_port_mask: Option<S<i64>>,
    vf: Option<S<i64>>,
    queue: Option<S<i64>>,
    location: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    default: Option<S<String>>,
    #[serde(default)]
    rule: Vec<S<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<S<String>>,
    action: S<String>,
    proto: Option<S<Value>>,
    family: Option<S<String>>,
    src: Option<S<Value>>,
    dst: Option<S<Value>>,
    src_port: Option<S<Value>>,
    dst_port: Option<S<Value>>,
    len: Option<S<Value>>,
    bytes: Option<S<Value>>,
    tcpdump: Option<S<String>>,
    bpf: Option<S<String>>,
    // rate-limit
    rate: Option<S<i64>>,
    burst: Option<S<i64>>,
    per: Option<S<String>>,
    prefix: Option<S<i64>>,
    prefix6: Option<S<i64>>,
    table_size: Option<S<i64>>,
    // sample
    every: Option<S<i64>>,
    path: Option<S<String>>,
    max_bytes: Option<S<i64>>,
    max_files: Option<S<i64>>,
    snaplen: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTap {
    name: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReinject {
    to: Option<S<String>>,
    tx_queue: Option<S<i64>>,
    src_mac: Option<S<String>>,
    dst_mac: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStats {
    interval_ms: Option<S<i64>>,
    prometheus: Option<S<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    user: Option<S<String>>,
    group: Option<S<String>>,
    workers: Option<S<i64>>,
    state_file: Option<S<String>>,
    idle_sleep_us: Option<S<i64>>,
    drain_timeout_ms: Option<S<i64>>,
}

// ---------------------------------------------------------------------------------------------
// Validation.

/// Defaults, also documented in docs/config.md.
pub mod defaults {
    /// `device.queues`.
    pub const QUEUES: u16 = 1;
    /// `device.rx_ring`.
    pub const RX_RING: u16 = 512;
    /// `device.tx_ring`.
    pub const TX_RING: u16 = 512;
    /// `device.pool_size`.
    pub const POOL_SIZE: u32 = 4096;
    /// `device.headroom`.
    pub const HEADROOM: u16 = 128;
    /// `device.burst`.
    pub const BURST: u16 = 32;
    /// `device.mtu`.
    pub const MTU: u32 = 1500;
    /// `filter.default`.
    pub const DEFAULT_ACTION: &str = "pass";
    /// `rule.table_size` for rate limits.
    pub const TABLE_SIZE: usize = 65536;
    /// `rule.max_bytes` for samples.
    pub const SAMPLE_MAX_BYTES: u64 = 64 << 20;
    /// `rule.max_files` for samples.
    pub const SAMPLE_MAX_FILES: u32 = 4;
    /// `rule.snaplen` for samples.
    pub const SAMPLE_SNAPLEN: u32 = 65535;
    /// `tap.name`.
    pub const TAP_NAME: &str = "floodgate0";
    /// `stats.interval_ms`.
    pub const INTERVAL_MS: u64 = 1000;
    /// `stats.prometheus` (9100 is node_exporter's port, so the next free one in that range).
    pub const PROMETHEUS: &str = "127.0.0.1:9110";
    /// `daemon.workers`.
    pub const WORKERS: u16 = 1;
    /// `daemon.state_file`.
    pub const STATE_FILE: &str = "/run/floodgate/steering.json";
    /// `daemon.idle_sleep_us`: short enough that a 4096-descriptor ring cannot fill during one
    /// nap even at 10 GbE line rate (4096 / 14.88 Mpps = 275 µs, with room for timer slack).
    pub const IDLE_SLEEP_US: u32 = 50;
    /// `daemon.drain_timeout_ms`: a stop under a flood that never lets the rings go quiet ends
    /// after this long.
    pub const DRAIN_TIMEOUT_MS: u32 = 1000;
}

/// Largest rate-limit table (keys); 4 Mi slots of 24 bytes is 96 MiB.
pub const MAX_TABLE_SIZE: usize = limits::MAX_TABLE_SIZE;

/// Limits on what a configuration may ask for, all in one place and documented in
/// docs/config.md ("Limits"). Each is checked with an error that names the file and line and
/// gives the figure; they exist so that a mistaken or hostile config is refused quickly instead
/// of taking minutes of CPU or gigabytes of memory. To go beyond one, change the constant here
/// and rebuild.
pub mod limits {
    /// Largest configuration file, in bytes (checked before parsing).
    pub const MAX_CONFIG_BYTES: u64 = 4 << 20;
    /// Most `[[filter.rule]]` entries, and most `[[steering]]` entries.
    pub const MAX_RULES: usize = 10_000;
    /// Longest `tcpdump` expression, in bytes.
    pub const MAX_TCPDUMP_BYTES: usize = 64 << 10;
    /// Most terms in one `tcpdump` expression (`and`/`or` connectives plus one). libpcap's
    /// optimizer takes time that grows about with the cube of this: 300 `host` terms take a few
    /// seconds, 600 about half a minute, 3000 many minutes.
    pub const MAX_TCPDUMP_TERMS: usize = 1000;
    /// Longest time libpcap may take to compile one `tcpdump` expression; see
    /// [`crate::libpcap::compile_within`].
    pub const TCPDUMP_COMPILE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
    /// Largest rate-limit table (keys per rule and worker).
    pub const MAX_TABLE_SIZE: usize = 1 << 22;
    /// Most memory all rate-limit tables of one worker may take, in bytes.
    pub const MAX_RATE_TABLE_BYTES_PER_WORKER: u64 = 256 << 20;
    /// Most memory all rate-limit tables of all workers may take, in bytes.
    pub const MAX_RATE_TABLE_BYTES: u64 = 1 << 30;
    /// Values quoted in error messages are cut to this many characters.
    pub const MAX_QUOTED_CHARS: usize = 40;
}

/// `s` quoted for an error message, cut to [`limits::MAX_QUOTED_CHARS`] characters with
/// `…(N bytes)` when longer.
pub fn quote_clipped(s: &str) -> String {
    match s.char_indices().nth(limits::MAX_QUOTED_CHARS) {
        None => format!("{s:?}"),
        Some((cut, _)) => format!("{:?}…({} bytes)", &s[..cut], s.len()),
    }
}

/// Cuts every double-quoted string (Rust/serde `Debug` quoting) in `msg` that is longer than
/// [`limits::MAX_QUOTED_CHARS`] characters, so that an error never echoes a huge value back.
fn clip_quoted(msg: &str) -> String {
    if msg.len() <= 2 * limits::MAX_QUOTED_CHARS {
        return msg.to_string();
    }
    let mut out = String::with_capacity(msg.len().min(1024));
    let mut rest = msg;
    while let Some(start) = rest.find('"') {
        out.push_str(&rest[..start]);
        let body = &rest[start + 1..];
        // The closing quote: the first one not escaped by a backslash.
        let mut end = None;
        let mut escaped = false;
        for (i, ch) in body.char_indices() {
            match ch {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let Some(end) = end else {
            // An unterminated quote: cut what follows.
            out.push('"');
            out.push_str(&clip_plain(body));
            return out;
        };
        let inner = &body[..end];
        match inner.char_indices().nth(limits::MAX_QUOTED_CHARS) {
            None => {
                out.push('"');
                out.push_str(inner);
                out.push('"');
            }
            Some((cut, _)) => {
                out.push('"');
                out.push_str(&inner[..cut]);
                out.push_str(&format!("\"…({} bytes)", inner.len()));
            }
        }
        rest = &body[end + 1..];
    }
    out.push_str(&clip_plain(rest));
    out
}

/// Cuts unquoted text longer than a few hundred characters.
fn clip_plain(s: &str) -> String {
    let max = 8 * limits::MAX_QUOTED_CHARS;
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((cut, _)) => format!("{}…({} bytes)", &s[..cut], s.len()),
    }
}

/// Terms of a tcpdump expression, as counted for [`limits::MAX_TCPDUMP_TERMS`]: `and`/`or`
/// connectives (also `&&`, `||`) plus one.
pub fn tcpdump_terms(expr: &str) -> usize {
    1 + expr
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|w| matches!(*w, "and" | "or" | "&&" | "||"))
        .count()
}

struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text.as_bytes()[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }

    fn err(&self, span: Range<usize>, context: &str, message: impl Into<String>) -> ConfigError {
        let (line, column) = self.line_col(span.start);
        ConfigError::Invalid {
            file: self.file.to_string(),
            line,
            column,
            context: clip_quoted(context),
            message: clip_quoted(&message.into()),
        }
    }

    /// An integer in `lo..=hi`.
    fn int<T: TryFrom<i64>>(
        &self,
        v: &S<i64>,
        lo: i64,
        hi: i64,
        context: &str,
        key: &str,
    ) -> Result<T, ConfigError> {
        let n = *v.get_ref();
        if n < lo || n > hi {
            return Err(self.err(
                v.span(),
                context,
                format!("{key} = {n} is out of range: it must be from {lo} to {hi}"),
            ));
        }
        T::try_from(n)
            .map_err(|_| self.err(v.span(), context, format!("{key} = {n} is out of range")))
    }

    fn int_or<T: TryFrom<i64>>(
        &self,
        v: &Option<S<i64>>,
        default: T,
        lo: i64,
        hi: i64,
        context: &str,
        key: &str,
    ) -> Result<T, ConfigError> {
        match v {
            None => Ok(default),
            Some(v) => self.int(v, lo, hi, context, key),
        }
    }
}

fn ring_size(ctx: &Ctx, v: &Option<S<i64>>, default: u16, key: &str) -> Result<u16, ConfigError> {
    let n: u16 = ctx.int_or(v, default, 64, 4096, "[device]", key)?;
    if !n.is_power_of_two() {
        let v = v.as_ref().map(|v| v.span()).unwrap_or(0..0);
        return Err(ctx.err(
            v,
            "[device]",
            format!("{key} = {n} must be a power of two from 64 to 4096"),
        ));
    }
    Ok(n)
}

fn device(ctx: &Ctx, raw: &Option<RawDevice>, whole: usize) -> Result<DeviceConfig, ConfigError> {
    let Some(raw) = raw else {
        return Err(ctx.err(
            whole..whole,
            "[device]",
            "the [device] section is missing; it needs at least `pci = \"0000:03:10.0\"` or `pci = \"sim\"`",
        ));
    };
    let d = raw;
    let c = "[device]";
    let device = if d.pci.get_ref() == "sim" {
        DeviceAddr::Sim
    } else if let Some(path) = d.pci.get_ref().strip_prefix("vfio-user:") {
        if path.is_empty() {
            return Err(ctx.err(
                d.pci.span(),
                c,
                "pci: \"vfio-user:\" needs the server's socket path, e.g. \"vfio-user:/run/vf0.sock\"",
            ));
        }
        DeviceAddr::VfioUser(path.into())
    } else {
        DeviceAddr::Pci(d.pci.get_ref().parse().map_err(|m: String| {
            ctx.err(
                d.pci.span(),
                c,
                format!("pci: {m}, or \"sim\", or \"vfio-user:/path/to/socket\""),
            )
        })?)
    };
    let pf = match &d.pf {
        None => None,
        Some(p) => Some(ifname(ctx, p, c, "pf")?),
    };
    let queues = ctx.int_or(&d.queues, defaults::QUEUES, 1, 8, c, "queues")?;
    let rx_ring = ring_size(ctx, &d.rx_ring, defaults::RX_RING, "rx_ring")?;
    let tx_ring = ring_size(ctx, &d.tx_ring, defaults::TX_RING, "tx_ring")?;
    let headroom = ctx.int_or(&d.headroom, defaults::HEADROOM, 0, 256, c, "headroom")?;
    let burst = ctx.int_or(&d.burst, defaults::BURST, 1, 512, c, "burst")?;
    // 9710 = ixgbe's largest frame (9728) minus the 18 bytes of header and CRC.
    let mtu: u32 = ctx.int_or(&d.mtu, defaults::MTU, 68, 9710, c, "mtu")?;
    let xcast = match &d.xcast {
        None => None,
        Some(v) => Some(match v.get_ref().as_str() {
            "none" => floodgate_pmd::XcastMode::None,
            "multi" => floodgate_pmd::XcastMode::Multi,
            "allmulti" => floodgate_pmd::XcastMode::AllMulti,
            "promisc" => floodgate_pmd::XcastMode::Promisc,
            other => {
                return Err(ctx.err(
                    v.span(),
                    c,
                    format!(
                        "xcast = {other:?} is not a mode: use \"none\", \"multi\", \"allmulti\" or \"promisc\""
                    ),
                ))
            }
        }),
    };
    let pool_size: u32 = ctx.int_or(
        &d.pool_size,
        defaults::POOL_SIZE,
        64,
        1 << 22,
        c,
        "pool_size",
    )?;
    let need = u32::from(queues) * (u32::from(rx_ring) + u32::from(tx_ring));
    if pool_size < need {
        let span = d
            .pool_size
            .as_ref()
            .or(d.rx_ring.as_ref())
            .or(d.tx_ring.as_ref())
            .or(d.queues.as_ref())
            .map_or(d.pci.span(), |v| v.span());
        return Err(ctx.err(
            span,
            c,
            format!(
                "pool_size = {pool_size} cannot fill the rings: {queues} queue(s) × ({rx_ring} rx + {tx_ring} tx) = {need} buffers are needed"
            ),
        ));
    }
    Ok(DeviceConfig {
        device,
        pf,
        queues,
        rx_ring,
        tx_ring,
        pool_size,
        headroom,
        burst,
        mtu,
        xcast,
    })
}

fn ifname(ctx: &Ctx, v: &S<String>, context: &str, key: &str) -> Result<String, ConfigError> {
    let s = v.get_ref();
    if s.is_empty()
        || s.len() > 15
        || s.contains(['/', ':'])
        || s.chars().any(char::is_whitespace)
        || s == "."
        || s == ".."
    {
        return Err(ctx.err(
            v.span(),
            context,
            format!("{key} = {s:?} is not a valid interface name (1 to 15 characters, no '/', ':' or spaces)"),
        ));
    }
    Ok(s.clone())
}

/// Parses `aa:bb:cc:dd:ee:ff` (hexadecimal, case-insensitive).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn reinject(
    ctx: &Ctx,
    raw: &Option<RawReinject>,
    dev: &DeviceConfig,
) -> Result<ReinjectTo, ConfigError> {
    let c = "[reinject]";
    let Some(r) = raw else {
        return Ok(ReinjectTo::Tap);
    };
    let vf = match r.to.as_ref().map(|t| (t.span(), t.get_ref().as_str())) {
        None | Some((_, "tap")) => false,
        Some((_, "vf")) => true,
        Some((span, other)) => {
            return Err(ctx.err(
                span,
                c,
                format!("to = {other:?} is not \"tap\" (into the kernel through [tap]) or \"vf\" (back out of the VF)"),
            ))
        }
    };
    if !vf {
        let stray = [
            ("tx_queue", r.tx_queue.as_ref().map(|v| v.span())),
            ("src_mac", r.src_mac.as_ref().map(|v| v.span())),
            ("dst_mac", r.dst_mac.as_ref().map(|v| v.span())),
        ];
        if let Some((key, Some(span))) = stray.into_iter().find(|(_, s)| s.is_some()) {
            return Err(ctx.err(
                span,
                c,
                format!("{key} applies only to to = \"vf\"; survivors go to the TAP here (add to = \"vf\" or remove {key})"),
            ));
        }
        return Ok(ReinjectTo::Tap);
    }
    let tx_queue: u16 = ctx.int_or(&r.tx_queue, 0, 0, 7, c, "tx_queue")?;
    if tx_queue >= dev.queues {
        let span = r.tx_queue.as_ref().map_or(0..0, |v| v.span());
        return Err(ctx.err(
            span,
            c,
            format!(
                "tx_queue = {tx_queue} is not one of the VF's queues: [device] queues = {} (0 to {})",
                dev.queues,
                dev.queues - 1
            ),
        ));
    }
    let src_mac = match r.src_mac.as_ref() {
        None => SrcMac::Vf,
        Some(v) => match v.get_ref().as_str() {
            "vf" => SrcMac::Vf,
            "keep" => SrcMac::Keep,
            other if parse_mac(other).is_some() => {
                return Err(ctx.err(
                    v.span(),
                    c,
                    format!(
                        "src_mac = {other:?}: a VF can only send from its own MAC: the PF's MAC \
                         anti-spoofing (on by default in Linux, facts §4.1) drops anything else; \
                         use \"vf\" (rewrite to the VF's MAC) or \"keep\" (with `ip link set <pf> \
                         vf N spoofchk off`)"
                    ),
                ))
            }
            other => {
                return Err(ctx.err(
                    v.span(),
                    c,
                    format!(
                        "src_mac = {other:?} is not \"vf\" (rewrite to the VF's own MAC, which the \
                         PF's anti-spoofing requires) or \"keep\" (needs spoofchk off)"
                    ),
                ))
            }
        },
    };
    let dst_mac = match r.dst_mac.as_ref() {
        None => None,
        Some(v) if v.get_ref() == "pf" => {
            if dev.device != DeviceAddr::Sim && dev.pf.is_none() {
                return Err(ctx.err(
                    v.span(),
                    c,
                    "dst_mac = \"pf\" needs the PF's netdev to read its MAC: add `pf = \"eth0\"` (your PF's name) to [device], or give the MAC",
                ));
            }
            Some(DstMac::Pf)
        }
        Some(v) => {
            let Some(mac) = parse_mac(v.get_ref()) else {
                return Err(ctx.err(
                    v.span(),
                    c,
                    format!(
                        "dst_mac = {:?} is not a MAC address like \"02:00:00:00:01:01\" (the next hop), or \"pf\"",
                        v.get_ref()
                    ),
                ));
            };
            if mac == [0; 6] {
                return Err(ctx.err(
                    v.span(),
                    c,
                    "dst_mac = 00:00:00:00:00:00 is not a usable address",
                ));
            }
            if mac[0] & 1 == 1 {
                return Err(ctx.err(
                    v.span(),
                    c,
                    format!(
                        "dst_mac = {:?} is a multicast/broadcast address: the NIC would replicate every survivor to each pool and the wire; give the next hop's unicast MAC",
                        v.get_ref()
                    ),
                ));
            }
            Some(DstMac::Mac(mac))
        }
    };
    if src_mac == SrcMac::Keep {
        log::warn!(
            "{}: [reinject] src_mac = \"keep\": the PF's anti-spoofing drops these frames unless \
             `ip link set <pf> vf N spoofchk off`, and the loop guard (which recognises the VF's \
             own source MAC) is off",
            ctx.file
        );
    }
    Ok(ReinjectTo::Vf(VfReinject {
        tx_queue,
        src_mac,
        dst_mac,
    }))
}

fn ipv4_masked(
    ctx: &Ctx,
    v: &S<String>,
    context: &str,
    key: &str,
) -> Result<Ipv4Masked, ConfigError> {
    let c: Cidr = v
        .get_ref()
        .parse()
        .map_err(|m: String| ctx.err(v.span(), context, format!("{key}: {m}")))?;
    let IpAddr::V4(a) = c.addr else {
        return Err(ctx.err(
            v.span(),
            context,
            format!(
                "{key} = {:?}: ixgbe steers IPv4 flows only (facts §4.3)",
                v.get_ref()
            ),
        ));
    };
    let mask = if c.len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(c.len))
    };
    Ok(Ipv4Masked {
        addr: Ipv4Addr::from(u32::from(a) & mask),
        mask: Ipv4Addr::from(mask),
    })
}

fn port_masked(
    ctx: &Ctx,
    port: &Option<S<i64>>,
    mask: &Option<S<i64>>,
    context: &str,
    key: &str,
) -> Result<Option<PortMasked>, ConfigError> {
    match (port, mask) {
        (None, None) => Ok(None),
        (None, Some(m)) => Err(ctx.err(
            m.span(),
            context,
            format!("{key}_mask is given without {key}"),
        )),
        (Some(p), m) => {
            let port: u16 = ctx.int(p, 0, 65535, context, key)?;
            let mask: u16 = ctx.int_or(m, 0xffff, 1, 65535, context, &format!("{key}_mask"))?;
            Ok(Some(PortMasked {
                port: port & mask,
                mask,
            }))
        }
    }
}

fn steering(
    ctx: &Ctx,
    raw: &[S<RawSteering>],
    dev: &DeviceConfig,
) -> Result<Vec<SteeringRule>, ConfigError> {
    if let Some(over) = raw.get(limits::MAX_RULES) {
        return Err(ctx.err(
            over.span(),
            &format!("steering rule {}", limits::MAX_RULES),
            format!(
                "{} steering rules is over the limit of {} (see docs/config.md, Limits)",
                raw.len(),
                limits::MAX_RULES
            ),
        ));
    }
    let mut out: Vec<SteeringRule> = Vec::new();
    let mut first_masks: Option<(usize, String, [u32; 4])> = None;
    let mut locations: HashMap<u32, usize> = HashMap::new();
    for (i, r) in raw.iter().enumerate() {
        let s = r.get_ref();
        let name = s.name.clone().unwrap_or_else(|| format!("steering-{i}"));
        let c = format!("steering rule {i} ({name:?})");
        let flow = match s.flow.get_ref().as_str() {
            "tcp4" => FlowType::Tcp4,
            "udp4" => FlowType::Udp4,
            "sctp4" => FlowType::Sctp4,
            "ip4" => FlowType::Ip4,
            other => {
                return Err(ctx.err(
                    s.flow.span(),
                    &c,
                    format!("flow = {other:?} is not one of udp4, tcp4, sctp4, ip4 (ixgbe steers IPv4 only)"),
                ))
            }
        };
        let src = s
            .src
            .as_ref()
            .map(|v| ipv4_masked(ctx, v, &c, "src"))
            .transpose()?;
        let dst = s
            .dst
            .as_ref()
            .map(|v| ipv4_masked(ctx, v, &c, "dst"))
            .transpose()?;
        let src_port = port_masked(ctx, &s.src_port, &s.src_port_mask, &c, "src_port")?;
        let dst_port = port_masked(ctx, &s.dst_port, &s.dst_port_mask, &c, "dst_port")?;
        if flow == FlowType::Ip4 {
            if let Some(p) = s.src_port.as_ref().or(s.dst_port.as_ref()) {
                return Err(ctx.err(
                    p.span(),
                    &c,
                    "flow = \"ip4\" matches addresses only; use udp4, tcp4 or sctp4 to match ports",
                ));
            }
        }
        let vf: u16 = ctx.int_or(&s.vf, 0, 0, 62, &c, "vf")?;
        let queue: u16 = ctx.int_or(&s.queue, 0, 0, 7, &c, "queue")?;
        if queue >= dev.queues {
            let span = s.queue.as_ref().map_or(r.span(), |q| q.span());
            return Err(ctx.err(
                span,
                &c,
                format!(
                    "queue = {queue} is not polled: [device] queues = {} (queues 0 to {})",
                    dev.queues,
                    dev.queues - 1
                ),
            ));
        }
        let location = s
            .location
            .as_ref()
            .map(|l| ctx.int::<u32>(l, 0, 2045, &c, "location"))
            .transpose()?;
        let masks = [
            src.map_or(0, |m| u32::from(m.mask)),
            dst.map_or(0, |m| u32::from(m.mask)),
            src_port.map_or(0, |m| u32::from(m.mask)),
            dst_port.map_or(0, |m| u32::from(m.mask)),
        ];
        match &first_masks {
            None => first_masks = Some((i, name.clone(), masks)),
            Some((j, jname, m)) if *m != masks => {
                let fields = ["src", "dst", "src_port", "dst_port"];
                let diff: Vec<&str> = (0..4)
                    .filter(|&k| m[k] != masks[k])
                    .map(|k| fields[k])
                    .collect();
                return Err(ctx.err(
                    r.span(),
                    &c,
                    format!(
                        "ixgbe accepts one mask per port: this rule's {} mask differs from steering rule {j} ({jname:?}); give every steering rule the same fields and prefix lengths (facts §4.3)",
                        diff.join(", ")
                    ),
                ));
            }
            Some(_) => {}
        }
        if let Some(loc) = location {
            if let Some(prev) = locations.insert(loc, i) {
                return Err(ctx.err(
                    r.span(),
                    &c,
                    format!("location {loc} is also used by steering rule {prev}"),
                ));
            }
        }
        out.push(SteeringRule {
            name,
            flow,
            src,
            dst,
            src_port,
            dst_port,
            vf,
            queue,
            location,
        });
    }
    Ok(out)
}

/// A value or an array of values, each with its span.
fn items(v: &S<Value>) -> Vec<(Range<usize>, &Value)> {
    match v.get_ref() {
        Value::Array(a) => a.iter().map(|x| (v.span(), x)).collect(),
        other => vec![(v.span(), other)],
    }
}

fn ranges(
    ctx: &Ctx,
    v: &S<Value>,
    c: &str,
    key: &str,
    max: i64,
) -> Result<Vec<(i64, i64)>, ConfigError> {
    let mut out = Vec::new();
    let list = items(v);
    if list.is_empty() {
        return Err(ctx.err(
            v.span(),
            c,
            format!("{key} is an empty list, which would never match"),
        ));
    }
    for (span, item) in list {
        let r = match item {
            Value::Integer(n) if (0..=max).contains(n) => (*n, *n),
            Value::Integer(n) => {
                return Err(ctx.err(span, c, format!("{key}: {n} is out of range 0 to {max}")))
            }
            Value::String(s) => {
                let (a, b) = match s.split_once('-') {
                    Some((a, b)) => (a.trim(), b.trim()),
                    None => (s.trim(), s.trim()),
                };
                let parse = |t: &str| t.parse::<i64>().ok().filter(|n| (0..=max).contains(n));
                match (parse(a), parse(b)) {
                    (Some(lo), Some(hi)) if lo <= hi => (lo, hi),
                    (Some(_), Some(_)) => {
                        return Err(ctx.err(span, c, format!("{key}: range {s:?} is empty (start above end)")))
                    }
                    _ => {
                        return Err(ctx.err(
                            span,
                            c,
                            format!("{key}: {s:?} is not a number or a range \"LOW-HIGH\" within 0 to {max}"),
                        ))
                    }
                }
            }
            other => {
                return Err(ctx.err(
                    span,
                    c,
                    format!(
                    "{key}: expected a number, a \"LOW-HIGH\" string or a list of them, found {}",
                    other.type_str()
                ),
                ))
            }
        };
        out.push(r);
    }
    Ok(out)
}

fn strings<'v>(
    ctx: &Ctx,
    v: &'v S<Value>,
    c: &str,
    key: &str,
) -> Result<Vec<(Range<usize>, &'v str)>, ConfigError> {
    let list = items(v);
    if list.is_empty() {
        return Err(ctx.err(
            v.span(),
            c,
            format!("{key} is an empty list, which would never match"),
        ));
    }
    list.into_iter()
        .map(|(span, x)| match x {
            Value::String(s) => Ok((span, s.as_str())),
            other => Err(ctx.err(
                span,
                c,
                format!(
                    "{key}: expected a string or a list of strings, found {}",
                    other.type_str()
                ),
            )),
        })
        .collect()
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    let t: String = s
        .trim()
        .trim_start_matches("0x")
        .chars()
        .filter(|c| !matches!(c, ' ' | ':' | '_'))
        .collect();
    if t.is_empty() || t.len() & 1 == 1 {
        return None;
    }
    (0..t.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(t.get(i..i + 2)?, 16).ok())
        .collect()
}

fn byte_matchers(ctx: &Ctx, v: &S<Value>, c: &str) -> Result<Vec<Matcher>, ConfigError> {
    let tables: Vec<&Value> = match v.get_ref() {
        Value::Array(a) => a.iter().collect(),
        t @ Value::Table(_) => vec![t],
        other => {
            return Err(ctx.err(
                v.span(),
                c,
                format!("bytes: expected a table {{ offset, value, mask, layer }} or a list of them, found {}", other.type_str()),
            ))
        }
    };
    let mut out = Vec::new();
    for (k, t) in tables.into_iter().enumerate() {
        let e = |m: String| ctx.err(v.span(), c, format!("bytes[{k}]: {m}"));
        let Value::Table(t) = t else {
            return Err(e("expected a table { offset, value, mask, layer }".into()));
        };
        for key in t.keys() {
            if !["offset", "value", "mask", "layer"].contains(&key.as_str()) {
                return Err(e(format!(
                    "unknown key {key:?} (expected offset, value, mask, layer)"
                )));
            }
        }
        let offset = match t.get("offset") {
            Some(Value::Integer(n)) if (0..=65535).contains(n) => *n as u16,
            Some(_) => return Err(e("offset must be a number from 0 to 65535".into())),
            None => return Err(e("offset is missing".into())),
        };
        let value = match t.get("value") {
            Some(Value::String(s)) => hex_bytes(s)
                .ok_or_else(|| e(format!("value {s:?} is not an even number of hex digits")))?,
            Some(_) => return Err(e("value must be a hex string such as \"0x0800\"".into())),
            None => return Err(e("value is missing".into())),
        };
        let mask = match t.get("mask") {
            Some(Value::String(s)) => Some(
                hex_bytes(s)
                    .ok_or_else(|| e(format!("mask {s:?} is not an even number of hex digits")))?,
            ),
            Some(_) => return Err(e("mask must be a hex string such as \"0xfff0\"".into())),
            None => None,
        };
        let layer = match t.get("layer") {
            None => Layer::L2,
            Some(Value::String(s)) => match s.as_str() {
                "l2" => Layer::L2,
                "l3" => Layer::L3,
                "l4" => Layer::L4,
                _ => return Err(e(format!("layer {s:?} is not one of l2, l3, l4"))),
            },
            Some(_) => return Err(e("layer must be \"l2\", \"l3\" or \"l4\"".into())),
        };
        out.push(Matcher::Bytes(
            ByteMatch::new(layer, offset, &value, mask.as_deref()).map_err(e)?,
        ));
    }
    Ok(out)
}

fn rule(
    ctx: &Ctx,
    i: usize,
    raw: &S<RawRule>,
    names: &mut HashMap<String, usize>,
) -> Result<Rule, ConfigError> {
    let r = raw.get_ref();
    let name = match &r.name {
        Some(n) if n.get_ref().trim().is_empty() => {
            return Err(ctx.err(n.span(), &format!("filter rule {i}"), "name is empty"))
        }
        Some(n) => n.get_ref().clone(),
        None => format!("rule-{i}"),
    };
    let c = format!("filter rule {i} ({name:?})");
    if let (Some(n), Some(j)) = (&r.name, names.get(&name)) {
        return Err(ctx.err(
            n.span(),
            &c,
            format!("the name is already used by filter rule {j}"),
        ));
    }
    names.entry(name.clone()).or_insert(i);
    let mut matchers = Vec::new();
    let mut summary: Vec<String> = Vec::new();

    if let Some(p) = &r.proto {
        let mut protos = Vec::new();
        let mut any = false;
        for (span, s) in strings_or_ints(ctx, p, &c, "proto")? {
            if s == "any" {
                any = true;
                continue;
            }
            protos.push(
                s.parse::<Proto>()
                    .map_err(|m| ctx.err(span, &c, format!("proto: {m}")))?,
            );
        }
        if !any {
            summary.push(format!("proto {}", display_value(p.get_ref())));
            matchers.push(Matcher::Proto(ProtoSet::new(&protos)));
        }
    }
    if let Some(f) = &r.family {
        let v4 = match f.get_ref().as_str() {
            "ipv4" | "ip4" | "inet" => true,
            "ipv6" | "ip6" | "inet6" => false,
            other => {
                return Err(ctx.err(
                    f.span(),
                    &c,
                    format!("family = {other:?} is not \"ipv4\" or \"ipv6\""),
                ))
            }
        };
        summary.push(format!("family {}", if v4 { "ipv4" } else { "ipv6" }));
        matchers.push(Matcher::Ipv4(v4));
    }
    for (key, v) in [("src", &r.src), ("dst", &r.dst)] {
        if let Some(v) = v {
            let mut set = Vec::new();
            for (span, s) in strings(ctx, v, &c, key)? {
                set.push(
                    s.parse::<Cidr>()
                        .map_err(|m| ctx.err(span, &c, format!("{key}: {m}")))?,
                );
            }
            summary.push(format!("{key} {}", display_value(v.get_ref())));
            let set = CidrSet::new(&set);
            matchers.push(if key == "src" {
                Matcher::Src(set)
            } else {
                Matcher::Dst(set)
            });
        }
    }
    for (key, v) in [("src_port", &r.src_port), ("dst_port", &r.dst_port)] {
        if let Some(v) = v {
            let rs: Vec<(u16, u16)> = ranges(ctx, v, &c, key, 65535)?
                .into_iter()
                .map(|(a, b)| (a as u16, b as u16))
                .collect();
            summary.push(format!("{key} {}", display_value(v.get_ref())));
            let set = PortSet::new(&rs);
            matchers.push(if key == "src_port" {
                Matcher::SrcPort(set)
            } else {
                Matcher::DstPort(set)
            });
        }
    }
    if let Some(v) = &r.len {
        let rs = ranges(ctx, v, &c, "len", 65535)?
            .into_iter()
            .map(|(a, b)| (a as u32, b as u32))
            .collect();
        summary.push(format!("len {}", display_value(v.get_ref())));
        matchers.push(Matcher::Len(rs));
    }
    if let Some(v) = &r.bytes {
        let m = byte_matchers(ctx, v, &c)?;
        summary.push(format!("bytes {}", display_value(v.get_ref())));
        matchers.extend(m);
    }
    if let Some(t) = &r.tcpdump {
        let expr = t.get_ref();
        if expr.trim().is_empty() {
            return Err(ctx.err(
                t.span(),
                &c,
                "tcpdump is empty, which libpcap would compile to match every frame; write the expression, or remove the key to match all frames",
            ));
        }
        if expr.len() > limits::MAX_TCPDUMP_BYTES {
            return Err(ctx.err(
                t.span(),
                &c,
                format!(
                    "tcpdump expression of {} bytes is over the limit of {} bytes (see docs/config.md, Limits)",
                    expr.len(),
                    limits::MAX_TCPDUMP_BYTES
                ),
            ));
        }
        let terms = tcpdump_terms(expr);
        if terms > limits::MAX_TCPDUMP_TERMS {
            return Err(ctx.err(
                t.span(),
                &c,
                format!(
                    "tcpdump expression of {terms} terms is over the limit of {} (libpcap's optimizer would take minutes); split it into several rules, or use `src`/`dst` lists, which take any number of networks",
                    limits::MAX_TCPDUMP_TERMS
                ),
            ));
        }
        let insns = crate::libpcap::compile_within(expr, limits::TCPDUMP_COMPILE_TIMEOUT)
            .map_err(|e| ctx.err(t.span(), &c, format!("tcpdump: {e}")))?;
        let prog = Program::new(&insns).map_err(|e| {
            ctx.err(
                t.span(),
                &c,
                format!(
                    "tcpdump: libpcap's program for {:?} fails validation: {e}",
                    t.get_ref()
                ),
            )
        })?;
        summary.push(format!("tcpdump {:?} ({} insns)", t.get_ref(), prog.len()));
        matchers.push(Matcher::Bpf(Arc::new(prog)));
    }
    if let Some(b) = &r.bpf {
        if b.get_ref().trim().is_empty() {
            return Err(ctx.err(
                b.span(),
                &c,
                "bpf is empty: give the program as `tcpdump -ddd` prints it, or remove the key",
            ));
        }
        let insns = bpf::parse_bytecode(b.get_ref())
            .map_err(|e| ctx.err(b.span(), &c, format!("bpf: {e}")))?;
        let prog = Program::new(&insns).map_err(|e| ctx.err(b.span(), &c, format!("bpf: {e}")))?;
        summary.push(format!("bpf ({} insns)", prog.len()));
        matchers.push(Matcher::Bpf(Arc::new(prog)));
    }

    let action_name = r.action.get_ref().as_str();
    let rate_keys: [(&str, bool); 6] = [
        ("rate", r.rate.is_some()),
        ("burst", r.burst.is_some()),
        ("per", r.per.is_some()),
        ("prefix", r.prefix.is_some()),
        ("prefix6", r.prefix6.is_some()),
        ("table_size", r.table_size.is_some()),
    ];
    let sample_keys: [(&str, bool); 5] = [
        ("every", r.every.is_some()),
        ("path", r.path.is_some()),
        ("max_bytes", r.max_bytes.is_some()),
        ("max_files", r.max_files.is_some()),
        ("snaplen", r.snaplen.is_some()),
    ];
    let stray = |keys: &[(&str, bool)], needs: &str| -> Result<(), ConfigError> {
        if let Some((k, _)) = keys.iter().find(|(_, set)| *set) {
            return Err(ctx.err(
                raw.span(),
                &c,
                format!("`{k}` only applies to action = \"{needs}\", but this rule's action is {action_name:?}"),
            ));
        }
        Ok(())
    };
    let action = match action_name {
        "drop" | "pass" => {
            stray(&rate_keys, "rate-limit")?;
            stray(&sample_keys, "sample")?;
            if action_name == "drop" {
                Action::Drop
            } else {
                Action::Pass
            }
        }
        "rate-limit" => {
            stray(&sample_keys, "sample")?;
            let Some(rate) = &r.rate else {
                return Err(ctx.err(
                    raw.span(),
                    &c,
                    "action = \"rate-limit\" needs `rate` (packets per second)",
                ));
            };
            let rate_pps: u64 = ctx.int(rate, 1, 1_000_000_000, &c, "rate")?;
            let burst: u64 = ctx.int_or(&r.burst, rate_pps, 1, 1_000_000_000, &c, "burst")?;
            let (mut v4, mut v6, flow) =
                match r.per.as_ref().map(|p| (p.span(), p.get_ref().as_str())) {
                    None | Some((_, "src")) => (32u8, 128u8, false),
                    Some((_, "src24")) => (24, 48, false),
                    Some((_, "flow")) => (0, 0, true),
                    Some((span, other)) => {
                        return Err(ctx.err(
                            span,
                            &c,
                            format!("per = {other:?} is not one of \"src\", \"src24\", \"flow\""),
                        ))
                    }
                };
            if flow {
                if let Some(p) = r.prefix.as_ref().or(r.prefix6.as_ref()) {
                    return Err(ctx.err(
                        p.span(),
                        &c,
                        "prefix/prefix6 apply to per = \"src\" or \"src24\", not \"flow\"",
                    ));
                }
            }
            v4 = ctx.int_or(&r.prefix, v4, 0, 32, &c, "prefix")?;
            v6 = ctx.int_or(&r.prefix6, v6, 0, 128, &c, "prefix6")?;
            let table_size: usize = ctx.int_or(
                &r.table_size,
                defaults::TABLE_SIZE,
                4,
                MAX_TABLE_SIZE as i64,
                &c,
                "table_size",
            )?;
            Action::RateLimit(RateLimit {
                rate_pps,
                burst,
                key: if flow {
                    RateKey::Flow
                } else {
                    RateKey::Source {
                        v4_prefix: v4,
                        v6_prefix: v6,
                    }
                },
                table_size,
            })
        }
        "sample" => {
            stray(&rate_keys, "rate-limit")?;
            let (Some(every), Some(path)) = (&r.every, &r.path) else {
                return Err(ctx.err(
                    raw.span(),
                    &c,
                    "action = \"sample\" needs `every` (1 in N) and `path` (pcap file)",
                ));
            };
            let every: u64 = ctx.int(every, 1, i64::MAX, &c, "every")?;
            if path.get_ref().is_empty() {
                return Err(ctx.err(path.span(), &c, "path is empty"));
            }
            let max_bytes: u64 = ctx.int_or(
                &r.max_bytes,
                defaults::SAMPLE_MAX_BYTES,
                1024,
                i64::MAX,
                &c,
                "max_bytes",
            )?;
            let max_files: u32 = ctx.int_or(
                &r.max_files,
                defaults::SAMPLE_MAX_FILES,
                1,
                1000,
                &c,
                "max_files",
            )?;
            let snaplen: u32 = ctx.int_or(
                &r.snaplen,
                defaults::SAMPLE_SNAPLEN,
                64,
                262_144,
                &c,
                "snaplen",
            )?;
            Action::Sample(Sample {
                every,
                policy: RotationPolicy {
                    path: PathBuf::from(path.get_ref()),
                    max_bytes,
                    max_files,
                    snaplen,
                },
            })
        }
        other => {
            return Err(ctx.err(
                r.action.span(),
                &c,
                format!(
                "action = {other:?} is not one of \"drop\", \"pass\", \"rate-limit\", \"sample\""
            ),
            ))
        }
    };
    let mut rule = Rule::new(name, matchers, action);
    rule.summary = if summary.is_empty() {
        "all frames".to_string()
    } else {
        summary.join(" and ")
    };
    Ok(rule)
}

fn strings_or_ints(
    ctx: &Ctx,
    v: &S<Value>,
    c: &str,
    key: &str,
) -> Result<Vec<(Range<usize>, String)>, ConfigError> {
    let list = items(v);
    if list.is_empty() {
        return Err(ctx.err(
            v.span(),
            c,
            format!("{key} is an empty list, which would never match"),
        ));
    }
    list.into_iter()
        .map(|(span, x)| match x {
            Value::String(s) => Ok((span, s.to_ascii_lowercase())),
            Value::Integer(n) => Ok((span, n.to_string())),
            other => Err(ctx.err(
                span,
                c,
                format!(
                    "{key}: expected a name or number, found {}",
                    other.type_str()
                ),
            )),
        })
        .collect()
}

fn display_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(display_value).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

impl Config {
    /// Reads and validates the configuration file at `path`. tcpdump expressions are compiled
    /// (which needs libpcap at run time) and every BPF program is validated.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let io = |source| ConfigError::Io {
            file: file.clone(),
            source,
        };
        let f = std::fs::File::open(path).map_err(io)?;
        let size = f.metadata().map_err(io)?.len();
        let too_large = |size| ConfigError::TooLarge {
            file: file.clone(),
            size,
            limit: limits::MAX_CONFIG_BYTES,
        };
        if size > limits::MAX_CONFIG_BYTES {
            return Err(too_large(size));
        }
        // Read at most one byte past the limit, whatever the size said (a growing file, a pipe).
        let mut bytes = Vec::with_capacity(size as usize);
        f.take(limits::MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > limits::MAX_CONFIG_BYTES {
            return Err(too_large(bytes.len() as u64));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
            ))
        })?;
        Self::from_str_named(&text, &file)
    }

    /// Reads and validates the configuration through `reader`, a process that kept the right to
    /// read the file when the daemon dropped privileges (see [`crate::privdrop::FileReader`]):
    /// how a reload re-reads a root-owned 0600 config. Errors are those of [`Config::load`].
    pub fn load_via(reader: &mut crate::privdrop::FileReader) -> Result<Config, ConfigError> {
        let file = reader.path().display().to_string();
        let bytes = reader.read().map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                ConfigError::TooLarge {
                    file: file.clone(),
                    size: limits::MAX_CONFIG_BYTES + 1,
                    limit: limits::MAX_CONFIG_BYTES,
                }
            } else {
                ConfigError::Io {
                    file: file.clone(),
                    source: e,
                }
            }
        })?;
        let text = String::from_utf8(bytes).map_err(|e| ConfigError::Io {
            file: file.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
            ),
        })?;
        Self::from_str_named(&text, &file)
    }

    /// Parses and validates configuration text; `file` names it in errors.
    pub fn from_str_named(text: &str, file: &str) -> Result<Config, ConfigError> {
        if text.len() as u64 > limits::MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                file: file.to_string(),
                size: text.len() as u64,
                limit: limits::MAX_CONFIG_BYTES,
            });
        }
        let ctx = Ctx { file, text };
        too_many_tables(&ctx)?;
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or(0, |s| s.start);
            let (line, column) = ctx.line_col(at);
            let mut message = e.message().trim().to_string();
            if message.is_empty() {
                // The TOML parser gives no text for some errors (a NUL or other control
                // character where a key should start): say what it stopped at.
                message = match text.get(at..).and_then(|r| r.chars().next()) {
                    Some(c) => format!("TOML syntax error: unexpected character {c:?}"),
                    None => "TOML syntax error: unexpected end of file".to_string(),
                };
            }
            ConfigError::Syntax {
                file: file.to_string(),
                line,
                column,
                message: clip_quoted(&message),
            }
        })?;
        let device = device(&ctx, &raw.device, 0)?;
        let steering = steering(&ctx, &raw.steering, &device)?;
        if let (DeviceAddr::Pci(_), None, Some(first)) =
            (&device.device, &device.pf, raw.steering.first())
        {
            return Err(ctx.err(
                first.span(),
                "steering rule 0",
                "steering a real device needs the PF's netdev: add `pf = \"eth0\"` (your PF's name) to [device]",
            ));
        }

        let filter = match &raw.filter {
            None => FilterConfig {
                default: Decision::Pass,
                rules: Vec::new(),
            },
            Some(f) => {
                let fr = f;
                let default = match fr
                    .default
                    .as_ref()
                    .map(|d| (d.span(), d.get_ref().as_str()))
                {
                    None => Decision::Pass,
                    Some((_, "pass")) => Decision::Pass,
                    Some((_, "drop")) => Decision::Drop,
                    Some((span, other)) => {
                        return Err(ctx.err(
                            span,
                            "[filter]",
                            format!("default = {other:?} is not \"pass\" or \"drop\""),
                        ))
                    }
                };
                if let Some(over) = fr.rule.get(limits::MAX_RULES) {
                    return Err(ctx.err(
                        over.span(),
                        &format!("filter rule {}", limits::MAX_RULES),
                        format!(
                            "{} filter rules is over the limit of {} (see docs/config.md, Limits)",
                            fr.rule.len(),
                            limits::MAX_RULES
                        ),
                    ));
                }
                let mut names = HashMap::with_capacity(fr.rule.len());
                let rules = fr
                    .rule
                    .iter()
                    .enumerate()
                    .map(|(i, r)| rule(&ctx, i, r, &mut names))
                    .collect::<Result<Vec<_>, _>>()?;
                FilterConfig { default, rules }
            }
        };

        let tap = TapConfig {
            name: match raw.tap.as_ref().and_then(|t| t.name.as_ref()) {
                None => defaults::TAP_NAME.to_string(),
                Some(n) => ifname(&ctx, n, "[tap]", "name")?,
            },
        };

        let reinject = reinject(&ctx, &raw.reinject, &device)?;

        let stats = match &raw.stats {
            None => StatsConfig {
                interval_ms: defaults::INTERVAL_MS,
                prometheus: Some(defaults::PROMETHEUS.parse().expect("constant address")),
            },
            Some(s) => {
                let interval_ms = ctx.int_or(
                    &s.interval_ms,
                    defaults::INTERVAL_MS,
                    100,
                    3_600_000,
                    "[stats]",
                    "interval_ms",
                )?;
                let prometheus = match &s.prometheus {
                    None => Some(defaults::PROMETHEUS.parse().expect("constant address")),
                    Some(v) => match v.get_ref() {
                        Value::Boolean(false) => None,
                        Value::Boolean(true) => {
                            Some(defaults::PROMETHEUS.parse().expect("constant address"))
                        }
                        Value::String(a) => {
                            let addr: SocketAddr = a.parse().map_err(|_| {
                                ctx.err(
                                    v.span(),
                                    "[stats]",
                                    format!("prometheus = {a:?} is not an address:port such as \"127.0.0.1:9110\" (or false to disable)"),
                                )
                            })?;
                            if !addr.ip().is_loopback() {
                                log::warn!(
                                    "{file}: metrics will listen on {addr}, which is not loopback"
                                );
                            }
                            Some(addr)
                        }
                        other => {
                            return Err(ctx.err(
                                v.span(),
                                "[stats]",
                                format!(
                                "prometheus must be an \"address:port\" string or false, found {}",
                                other.type_str()
                            ),
                            ))
                        }
                    },
                };
                StatsConfig {
                    interval_ms,
                    prometheus,
                }
            }
        };

        let daemon = match &raw.daemon {
            None => DaemonConfig {
                user: None,
                group: None,
                workers: defaults::WORKERS,
                state_file: PathBuf::from(defaults::STATE_FILE),
                idle_sleep_us: defaults::IDLE_SLEEP_US,
                drain_timeout_ms: defaults::DRAIN_TIMEOUT_MS,
            },
            Some(d) => {
                let name_ok = |v: &S<String>, key: &str| -> Result<String, ConfigError> {
                    let s = v.get_ref();
                    let valid = !s.is_empty()
                        && s.len() <= 32
                        && s.chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
                    if valid {
                        Ok(s.clone())
                    } else {
                        Err(ctx.err(
                            v.span(),
                            "[daemon]",
                            format!("{key} = {s:?} is not a valid user/group name"),
                        ))
                    }
                };
                DaemonConfig {
                    user: d.user.as_ref().map(|u| name_ok(u, "user")).transpose()?,
                    group: d.group.as_ref().map(|g| name_ok(g, "group")).transpose()?,
                    workers: ctx.int_or(
                        &d.workers,
                        defaults::WORKERS,
                        1,
                        64,
                        "[daemon]",
                        "workers",
                    )?,
                    state_file: match &d.state_file {
                        None => PathBuf::from(defaults::STATE_FILE),
                        Some(p) if p.get_ref().is_empty() => {
                            return Err(ctx.err(p.span(), "[daemon]", "state_file is empty"))
                        }
                        Some(p) => PathBuf::from(p.get_ref()),
                    },
                    idle_sleep_us: ctx.int_or(
                        &d.idle_sleep_us,
                        defaults::IDLE_SLEEP_US,
                        0,
                        200,
                        "[daemon]",
                        "idle_sleep_us",
                    )?,
                    drain_timeout_ms: ctx.int_or(
                        &d.drain_timeout_ms,
                        defaults::DRAIN_TIMEOUT_MS,
                        0,
                        60_000,
                        "[daemon]",
                        "drain_timeout_ms",
                    )?,
                }
            }
        };

        rate_table_memory(&ctx, &raw, &filter, &daemon)?;
        let account_at = |v: Option<&S<String>>| v.map(|v| ctx.line_col(v.span().start));
        let accounts_at = [
            account_at(raw.daemon.as_ref().and_then(|d| d.user.as_ref())),
            account_at(raw.daemon.as_ref().and_then(|d| d.group.as_ref())),
        ];

        Ok(Config {
            accounts_at,
            source: file.to_string(),
            device,
            steering,
            filter,
            tap,
            reinject,
            stats,
            daemon,
        })
    }
}

/// Counts `[[filter.rule]]` and `[[steering]]` headers before the TOML is parsed, so that a file
/// with too many rules is refused without building them all in memory first (rules written as
/// inline arrays are counted after parsing, in `steering` and the filter section).
fn too_many_tables(ctx: &Ctx) -> Result<(), ConfigError> {
    let (mut filter, mut steer) = (0usize, 0usize);
    let mut offset = 0;
    for line in ctx.text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let t = line.trim_start();
        if !t.starts_with("[[") {
            continue;
        }
        let head: String = t
            .chars()
            .take_while(|&c| c != '#')
            .filter(|c| !c.is_whitespace())
            .collect();
        let (n, what) = match head.as_str() {
            "[[filter.rule]]" => (&mut filter, "filter"),
            "[[steering]]" => (&mut steer, "steering"),
            _ => continue,
        };
        if *n == limits::MAX_RULES {
            return Err(ctx.err(
                start..start,
                &format!("{what} rule {}", limits::MAX_RULES),
                format!(
                    "more than {0} {what} rules, over the limit of {0} (see docs/config.md, Limits)",
                    limits::MAX_RULES
                ),
            ));
        }
        *n += 1;
    }
    Ok(())
}

/// Refuses rate-limit tables whose memory goes over [`limits::MAX_RATE_TABLE_BYTES_PER_WORKER`]
/// (one worker's tables) or [`limits::MAX_RATE_TABLE_BYTES`] (all workers), naming the rule or
/// the `workers` key that crosses the limit and the figures.
fn rate_table_memory(
    ctx: &Ctx,
    raw: &RawConfig,
    filter: &FilterConfig,
    daemon: &DaemonConfig,
) -> Result<(), ConfigError> {
    const MIB: u64 = 1 << 20;
    let raw_rules = raw
        .filter
        .as_ref()
        .map(|f| f.rule.as_slice())
        .unwrap_or(&[]);
    let mut per_worker: u64 = 0;
    let mut last = None;
    for (i, rule) in filter.rules.iter().enumerate() {
        let Action::RateLimit(r) = &rule.action else {
            continue;
        };
        let bytes = crate::ratelimit::table_bytes(r.table_size) as u64;
        per_worker += bytes;
        let span = raw_rules
            .get(i)
            .map(|raw| {
                raw.get_ref()
                    .table_size
                    .as_ref()
                    .map_or(raw.span(), |t| t.span())
            })
            .unwrap_or(0..0);
        if per_worker > limits::MAX_RATE_TABLE_BYTES_PER_WORKER {
            return Err(ctx.err(
                span,
                &format!("filter rule {i} ({:?})", rule.name),
                format!(
                    "its rate-limit table ({} keys, {} MiB) brings the tables of one worker to {} MiB, over the limit of {} MiB; lower table_size here or in the rate-limit rules before it",
                    r.table_size.max(crate::ratelimit::WAYS).next_power_of_two(),
                    bytes.div_ceil(MIB),
                    per_worker.div_ceil(MIB),
                    limits::MAX_RATE_TABLE_BYTES_PER_WORKER / MIB
                ),
            ));
        }
        last = Some((span, i, rule.name.clone()));
    }
    let total = per_worker * u64::from(daemon.workers);
    if total > limits::MAX_RATE_TABLE_BYTES {
        let msg = format!(
            "rate-limit tables of {} MiB per worker times {} workers is {} MiB, over the limit of {} MiB; lower table_size or workers",
            per_worker.div_ceil(MIB),
            daemon.workers,
            total.div_ceil(MIB),
            limits::MAX_RATE_TABLE_BYTES / MIB
        );
        let workers = raw.daemon.as_ref().and_then(|d| d.workers.as_ref());
        return Err(match (workers, last) {
            (Some(w), _) => ctx.err(w.span(), "[daemon]", msg),
            (None, Some((span, i, name))) => {
                ctx.err(span, &format!("filter rule {i} ({name:?})"), msg)
            }
            (None, None) => ctx.err(0..0, "[filter]", msg),
        });
    }
    Ok(())
}

impl Config {
    /// Checks that `[daemon] user` and `group` exist on this machine (`check-config` does; `run`
    /// finds out only when it drops privileges, after the device is open).
    pub fn check_accounts(&self) -> Result<(), ConfigError> {
        let Some(user) = &self.daemon.user else {
            return Ok(());
        };
        let at = |pos: Option<(usize, usize)>, message: String| {
            let (line, column) = pos.unwrap_or((0, 0));
            ConfigError::Invalid {
                file: self.source.clone(),
                line,
                column,
                context: "[daemon]".into(),
                message,
            }
        };
        match crate::privdrop::resolve(user, self.daemon.group.as_deref()) {
            Ok(_) => Ok(()),
            Err(e @ crate::privdrop::PrivDropError::NoGroup(_)) => {
                Err(at(self.accounts_at[1], format!("group: {e}")))
            }
            Err(e) => Err(at(self.accounts_at[0], format!("user: {e}"))),
        }
    }
}

impl fmt::Display for Config {
    /// A human-readable summary of what would be installed (for `check-config`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.device;
        writeln!(f, "config {}", self.source)?;
        writeln!(
            f,
            "device {} (pf {}), {} queue(s), rx ring {}, tx ring {}, pool {}, headroom {}, burst {}",
            d.device,
            d.pf.as_deref().unwrap_or("-"),
            d.queues,
            d.rx_ring,
            d.tx_ring,
            d.pool_size,
            d.headroom,
            d.burst
        )?;
        for (i, s) in self.steering.iter().enumerate() {
            let ip = |m: &Option<Ipv4Masked>| {
                m.map_or("any".to_string(), |m| format!("{}/{}", m.addr, m.mask))
            };
            let port = |p: &Option<PortMasked>| {
                p.map_or("any".to_string(), |p| format!("{}/{:#06x}", p.port, p.mask))
            };
            writeln!(
                f,
                "steering {i} {:?}: {:?} src {} dst {} sport {} dport {} -> vf {} queue {}{}",
                s.name,
                s.flow,
                ip(&s.src),
                ip(&s.dst),
                port(&s.src_port),
                port(&s.dst_port),
                s.vf,
                s.queue,
                s.location
                    .map_or(String::new(), |l| format!(" (location {l})"))
            )?;
        }
        for (i, r) in self.filter.rules.iter().enumerate() {
            writeln!(f, "rule {i} {:?}: {} -> {}", r.name, r.summary, r.action)?;
        }
        writeln!(f, "default -> {}", self.filter.default)?;
        match &self.reinject {
            ReinjectTo::Tap => writeln!(f, "reinject tap {}", self.tap.name)?,
            ReinjectTo::Vf(v) => writeln!(
                f,
                "reinject vf: tx queue {}, source MAC {}, destination MAC {}",
                v.tx_queue,
                match v.src_mac {
                    SrcMac::Vf => "the VF's own".to_string(),
                    SrcMac::Keep => "kept (needs spoofchk off; loop guard off)".to_string(),
                },
                match v.dst_mac {
                    None => "kept".to_string(),
                    Some(DstMac::Pf) => "the PF's".to_string(),
                    Some(DstMac::Mac(m)) => floodgate_pmd::fmt_mac(m),
                }
            )?,
        }
        writeln!(
            f,
            "stats every {} ms, prometheus {}",
            self.stats.interval_ms,
            self.stats
                .prometheus
                .map_or("off".to_string(), |a| a.to_string())
        )?;
        write!(
            f,
            "workers {}, user {}, state file {}, idle {}",
            self.daemon.workers,
            self.daemon.user.as_deref().unwrap_or("(unchanged)"),
            self.daemon.state_file.display(),
            if self.daemon.idle_sleep_us == 0 {
                "busy-poll".to_string()
            } else {
                format!("nap {} us", self.daemon.idle_sleep_us)
            }
        )
    }
}
