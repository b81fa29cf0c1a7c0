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
//!
//! The module is split by concern: [`types`] (what the daemon reads), `raw` (the serde mirror
//! of the file, with spans), `validate` (raw to domain types, one function per section; the
//! `[daemon]` section is `validate::daemon`), `steering` and `rules` (the steering and filter
//! rules), `afxdp` (`backend = "af_xdp"`: its device keys and XDP steering rules), `display` (the `check-config` summary and the clipping of quoted values) and
//! [`limits`].

use std::io::Read as _;
use std::path::Path;

mod afxdp;
mod display;
pub mod limits;
mod raw;
mod rules;
mod steering;
pub mod types;
mod validate;

pub use display::quote_clipped;
pub use rules::tcpdump_terms;
pub use types::*;
pub use validate::parse_mac;

use display::clip_quoted;
use raw::RawConfig;
use validate::Ctx;

/// A configuration error. The `Display` form is `FILE:LINE:COLUMN: [CONTEXT: ]MESSAGE`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read")]
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
    /// `[[steering]]` for the VF backend (the PF's n-tuple rules); empty with
    /// `backend = "af_xdp"`.
    pub steering: Vec<SteeringRule>,
    /// `[[steering]]` for `backend = "af_xdp"`: the rules of the XDP program, in file order
    /// (IPv4 and IPv6); empty for the VF backend.
    pub xdp_steering: Vec<XdpRule>,
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

    /// Parses and validates configuration text; `file` names it in errors. The sections are
    /// validated in the order of the file's documentation: `[device]`, `[[steering]]`,
    /// `[filter]`, `[tap]`, `[reinject]`, `[stats]`, `[daemon]`, then the limits that span
    /// sections.
    pub fn from_str_named(text: &str, file: &str) -> Result<Config, ConfigError> {
        if text.len() as u64 > limits::MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                file: file.to_string(),
                size: text.len() as u64,
                limit: limits::MAX_CONFIG_BYTES,
            });
        }
        let ctx = Ctx { file, text };
        validate::too_many_tables(&ctx)?;
        let raw = parse_raw(&ctx)?;
        let device = validate::device(&ctx, &raw.device, 0)?;
        let (steering, xdp_steering) = if device.af_xdp().is_some() {
            (Vec::new(), afxdp::steering(&ctx, &raw.steering, &device)?)
        } else {
            let vf = steering::steering(&ctx, &raw.steering, &device)?;
            steering::steering_needs_pf(&ctx, &device, &raw.steering)?;
            (vf, Vec::new())
        };
        let filter = validate::filter(&ctx, &raw.filter)?;
        let tap = validate::tap(&ctx, &raw.tap)?;
        let reinject = validate::reinject(&ctx, &raw.reinject, &device)?;
        let stats = validate::stats(&ctx, &raw.stats)?;
        let daemon = validate::daemon(&ctx, &raw.daemon)?;
        validate::rate_table_memory(&ctx, &raw, &filter, &daemon)?;
        Ok(Config {
            accounts_at: accounts_at(&ctx, &raw),
            source: file.to_string(),
            device,
            steering,
            xdp_steering,
            filter,
            tap,
            reinject,
            stats,
            daemon,
        })
    }
}

/// The TOML parsed into the raw form; syntax errors, unknown keys and wrong types end here.
fn parse_raw(ctx: &Ctx) -> Result<RawConfig, ConfigError> {
    toml::from_str(ctx.text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        let (line, column) = ctx.line_col(at);
        let mut message = e.message().trim().to_string();
        if message.is_empty() {
            // The TOML parser gives no text for some errors (a NUL or other control character
            // where a key should start): say what it stopped at.
            message = match ctx.text.get(at..).and_then(|r| r.chars().next()) {
                Some(c) => format!("TOML syntax error: unexpected character {c:?}"),
                None => "TOML syntax error: unexpected end of file".to_string(),
            };
        }
        ConfigError::Syntax {
            file: ctx.file.to_string(),
            line,
            column,
            message: clip_quoted(&message),
        }
    })
}

/// Where `[daemon] user` and `group` are, for [`Config::check_accounts`].
fn accounts_at(ctx: &Ctx, raw: &RawConfig) -> [Option<LineCol>; 2] {
    let at = |v: Option<&raw::S<String>>| v.map(|v| ctx.line_col(v.span().start));
    [
        at(raw.daemon.as_ref().and_then(|d| d.user.as_ref())),
        at(raw.daemon.as_ref().and_then(|d| d.group.as_ref())),
    ]
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
