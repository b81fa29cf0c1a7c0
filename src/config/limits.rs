//! Limits on what a configuration may ask for, all in one place and documented in
//! docs/config.md ("Limits"). Each is checked with an error that names the file and line and
//! gives the figure; they exist so that a mistaken or hostile config is refused quickly instead
//! of taking minutes of CPU or gigabytes of memory. To go beyond one, change the constant here
//! and rebuild.

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
