//! Validation: turns the raw (serde) form into the domain types, one function per section and
//! per key that needs more than a range check. Every error names the file, line and column of
//! the offending value, the section or rule, and what is wrong.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;

use toml::Value;

use super::display::clip_quoted;
use super::raw::{RawConfig, RawDaemon, RawDevice, RawFilter, RawReinject, RawStats, RawTap, S};
use super::types::{
    DaemonConfig, DeviceAddr, DeviceConfig, DstMac, FilterConfig, ReinjectTo, SrcMac, StatsConfig,
    TapConfig, VfReinject,
};
use super::{defaults, limits, ConfigError};
use crate::filter::{Action, Decision};

/// The file being validated: its name and text, for error positions.
pub(super) struct Ctx<'a> {
    pub(super) file: &'a str,
    pub(super) text: &'a str,
}

impl Ctx<'_> {
    /// 1-based line and column of byte `offset`.
    pub(super) fn line_col(&self, offset: usize) -> (usize, usize) {
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

    /// An [`ConfigError::Invalid`] at the start of `span`.
    pub(super) fn err(
        &self,
        span: Range<usize>,
        context: &str,
        message: impl Into<String>,
    ) -> ConfigError {
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
    pub(super) fn int<T: TryFrom<i64>>(
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

    /// [`Ctx::int`], or `default` when the key is absent.
    pub(super) fn int_or<T: TryFrom<i64>>(
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

// ---- [device] -------------------------------------------------------------------------------

/// A ring size: a power of two from 64 to `max` (4096 for the VF's descriptor rings; 16384 for
/// AF_XDP rings, where a deeper ring rides out the polling thread being descheduled).
fn ring_size(
    ctx: &Ctx,
    v: &Option<S<i64>>,
    default: u16,
    key: &str,
    max: u16,
) -> Result<u16, ConfigError> {
    let n: u16 = ctx.int_or(v, default, 64, i64::from(max), "[device]", key)?;
    if !n.is_power_of_two() {
        let v = v.as_ref().map(|v| v.span()).unwrap_or(0..0);
        return Err(ctx.err(
            v,
            "[device]",
            format!("{key} = {n} must be a power of two from 64 to {max}"),
        ));
    }
    Ok(n)
}

/// `[device]`; `whole` is where to point when the section is missing.
pub(super) fn device(
    ctx: &Ctx,
    raw: &Option<S<RawDevice>>,
    whole: usize,
) -> Result<DeviceConfig, ConfigError> {
    let Some(ds) = raw else {
        return Err(ctx.err(
            whole..whole,
            "[device]",
            "the [device] section is missing; it needs at least `pci = \"0000:03:10.0\"` (a VF), `pci = \"sim\"`, or `backend = \"af_xdp\"` with `ifname = \"eth0\"`",
        ));
    };
    let d = ds.get_ref();
    let c = "[device]";
    let af_xdp = super::afxdp::is_af_xdp(ctx, d)?;
    let device = if af_xdp {
        super::afxdp::device_addr(ctx, ds)?
    } else {
        super::afxdp::no_af_xdp_keys(ctx, d)?;
        let Some(pci) = &d.pci else {
            return Err(ctx.err(
                ds.span(),
                c,
                "pci is missing: give the VF (`pci = \"0000:03:10.0\"`, `\"vfio-user:/path\"` or `\"sim\"`), or use `backend = \"af_xdp\"` with `ifname = \"eth0\"`",
            ));
        };
        device_addr(ctx, pci)?
    };
    let pf = match &d.pf {
        None => None,
        Some(p) => Some(ifname(ctx, p, c, "pf")?),
    };
    let max_queues = if af_xdp { 64 } else { 8 };
    let queues = ctx.int_or(&d.queues, defaults::QUEUES, 1, max_queues, c, "queues")?;
    let max_ring = if af_xdp { 16384 } else { 4096 };
    let rx_ring = ring_size(ctx, &d.rx_ring, defaults::RX_RING, "rx_ring", max_ring)?;
    let tx_ring = ring_size(ctx, &d.tx_ring, defaults::TX_RING, "tx_ring", max_ring)?;
    let headroom = ctx.int_or(&d.headroom, defaults::HEADROOM, 0, 256, c, "headroom")?;
    let burst = ctx.int_or(&d.burst, defaults::BURST, 1, 512, c, "burst")?;
    // 9710 = ixgbe's largest frame (9728) minus the 18 bytes of header and CRC.
    let mtu: u32 = ctx.int_or(&d.mtu, defaults::MTU, 68, 9710, c, "mtu")?;
    if af_xdp {
        super::afxdp::mtu_fits(ctx, d, mtu, headroom)?;
    }
    let xcast = d.xcast.as_ref().map(|v| xcast_mode(ctx, v)).transpose()?;
    let pool_size = pool_size(ctx, ds, queues, rx_ring, tx_ring)?;
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

/// `pci`: `"sim"`, `"vfio-user:/path"` or a PCI address.
fn device_addr(ctx: &Ctx, pci: &S<String>) -> Result<DeviceAddr, ConfigError> {
    let c = "[device]";
    if pci.get_ref() == "sim" {
        Ok(DeviceAddr::Sim)
    } else if let Some(path) = pci.get_ref().strip_prefix("vfio-user:") {
        if path.is_empty() {
            return Err(ctx.err(
                pci.span(),
                c,
                "pci: \"vfio-user:\" needs the server's socket path, e.g. \"vfio-user:/run/vf0.sock\"",
            ));
        }
        Ok(DeviceAddr::VfioUser(path.into()))
    } else {
        Ok(DeviceAddr::Pci(pci.get_ref().parse().map_err(
            |m: String| {
                ctx.err(
                    pci.span(),
                    c,
                    format!("pci: {m}, or \"sim\", or \"vfio-user:/path/to/socket\""),
                )
            },
        )?))
    }
}

/// `xcast`: the multicast/promiscuous mode to ask the PF for.
fn xcast_mode(ctx: &Ctx, v: &S<String>) -> Result<floodgate_pmd::XcastMode, ConfigError> {
    Ok(match v.get_ref().as_str() {
        "none" => floodgate_pmd::XcastMode::None,
        "multi" => floodgate_pmd::XcastMode::Multi,
        "allmulti" => floodgate_pmd::XcastMode::AllMulti,
        "promisc" => floodgate_pmd::XcastMode::Promisc,
        other => {
            return Err(ctx.err(
                v.span(),
                "[device]",
                format!(
                    "xcast = {other:?} is not a mode: use \"none\", \"multi\", \"allmulti\" or \"promisc\""
                ),
            ))
        }
    })
}

/// `pool_size`, which must fill every ring.
fn pool_size(
    ctx: &Ctx,
    ds: &S<RawDevice>,
    queues: u16,
    rx_ring: u16,
    tx_ring: u16,
) -> Result<u32, ConfigError> {
    let c = "[device]";
    let d = ds.get_ref();
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
            .map_or(ds.span(), |v| v.span());
        return Err(ctx.err(
            span,
            c,
            format!(
                "pool_size = {pool_size} cannot fill the rings: {queues} queue(s) × ({rx_ring} rx + {tx_ring} tx) = {need} buffers are needed"
            ),
        ));
    }
    Ok(pool_size)
}

pub(super) fn ifname(
    ctx: &Ctx,
    v: &S<String>,
    context: &str,
    key: &str,
) -> Result<String, ConfigError> {
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

// ---- [reinject] -----------------------------------------------------------------------------

/// `[reinject]`: where survivors go, and for `to = "vf"` the queue and MAC rewrites.
pub(super) fn reinject(
    ctx: &Ctx,
    raw: &Option<RawReinject>,
    dev: &DeviceConfig,
) -> Result<ReinjectTo, ConfigError> {
    let Some(r) = raw else {
        return Ok(ReinjectTo::Tap);
    };
    super::afxdp::no_reinject_vf(ctx, r, dev)?;
    if !reinject_to_vf(ctx, r)? {
        no_vf_keys(ctx, r)?;
        return Ok(ReinjectTo::Tap);
    }
    let tx_queue = reinject_tx_queue(ctx, r, dev)?;
    let src_mac = src_mac(ctx, r.src_mac.as_ref())?;
    let dst_mac = dst_mac(ctx, r.dst_mac.as_ref(), dev)?;
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

/// `to`: true for `"vf"`, false for `"tap"` (the default).
fn reinject_to_vf(ctx: &Ctx, r: &RawReinject) -> Result<bool, ConfigError> {
    match r.to.as_ref().map(|t| (t.span(), t.get_ref().as_str())) {
        None | Some((_, "tap")) => Ok(false),
        Some((_, "vf")) => Ok(true),
        Some((span, other)) => Err(ctx.err(
            span,
            "[reinject]",
            format!("to = {other:?} is not \"tap\" (into the kernel through [tap]) or \"vf\" (back out of the VF)"),
        )),
    }
}

/// Refuses the keys that only apply to `to = "vf"`.
fn no_vf_keys(ctx: &Ctx, r: &RawReinject) -> Result<(), ConfigError> {
    let stray = [
        ("tx_queue", r.tx_queue.as_ref().map(|v| v.span())),
        ("src_mac", r.src_mac.as_ref().map(|v| v.span())),
        ("dst_mac", r.dst_mac.as_ref().map(|v| v.span())),
    ];
    if let Some((key, Some(span))) = stray.into_iter().find(|(_, s)| s.is_some()) {
        return Err(ctx.err(
            span,
            "[reinject]",
            format!("{key} applies only to to = \"vf\"; survivors go to the TAP here (add to = \"vf\" or remove {key})"),
        ));
    }
    Ok(())
}

/// `tx_queue`: one of the VF's queues.
fn reinject_tx_queue(ctx: &Ctx, r: &RawReinject, dev: &DeviceConfig) -> Result<u16, ConfigError> {
    let c = "[reinject]";
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
    Ok(tx_queue)
}

/// `src_mac`: `"vf"` (the default) or `"keep"`; any other MAC would be dropped by the PF.
fn src_mac(ctx: &Ctx, v: Option<&S<String>>) -> Result<SrcMac, ConfigError> {
    let c = "[reinject]";
    let Some(v) = v else {
        return Ok(SrcMac::Vf);
    };
    match v.get_ref().as_str() {
        "vf" => Ok(SrcMac::Vf),
        "keep" => Ok(SrcMac::Keep),
        other if parse_mac(other).is_some() => Err(ctx.err(
            v.span(),
            c,
            format!(
                "src_mac = {other:?}: a VF can only send from its own MAC: the PF's MAC \
                 anti-spoofing (on by default in Linux, facts §4.1) drops anything else; \
                 use \"vf\" (rewrite to the VF's MAC) or \"keep\" (with `ip link set <pf> \
                 vf N spoofchk off`)"
            ),
        )),
        other => Err(ctx.err(
            v.span(),
            c,
            format!(
                "src_mac = {other:?} is not \"vf\" (rewrite to the VF's own MAC, which the \
                 PF's anti-spoofing requires) or \"keep\" (needs spoofchk off)"
            ),
        )),
    }
}

/// `dst_mac`: `"pf"` or a unicast MAC (the next hop); absent keeps the frame's.
fn dst_mac(
    ctx: &Ctx,
    v: Option<&S<String>>,
    dev: &DeviceConfig,
) -> Result<Option<DstMac>, ConfigError> {
    let c = "[reinject]";
    let Some(v) = v else {
        return Ok(None);
    };
    if v.get_ref() == "pf" {
        if dev.device != DeviceAddr::Sim && dev.pf.is_none() {
            return Err(ctx.err(
                v.span(),
                c,
                "dst_mac = \"pf\" needs the PF's netdev to read its MAC: add `pf = \"eth0\"` (your PF's name) to [device], or give the MAC",
            ));
        }
        return Ok(Some(DstMac::Pf));
    }
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
    Ok(Some(DstMac::Mac(mac)))
}

// ---- [filter] -------------------------------------------------------------------------------

/// `[filter]`: the default decision and the rules (each validated by [`super::rules::rule`]).
pub(super) fn filter(ctx: &Ctx, raw: &Option<RawFilter>) -> Result<FilterConfig, ConfigError> {
    let Some(fr) = raw else {
        return Ok(FilterConfig {
            default: Decision::Pass,
            rules: Vec::new(),
        });
    };
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
        .map(|(i, r)| super::rules::rule(ctx, i, r, &mut names))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(FilterConfig { default, rules })
}

// ---- [tap] ----------------------------------------------------------------------------------

/// `[tap]`.
pub(super) fn tap(ctx: &Ctx, raw: &Option<RawTap>) -> Result<TapConfig, ConfigError> {
    Ok(TapConfig {
        name: match raw.as_ref().and_then(|t| t.name.as_ref()) {
            None => defaults::TAP_NAME.to_string(),
            Some(n) => ifname(ctx, n, "[tap]", "name")?,
        },
    })
}

// ---- [stats] --------------------------------------------------------------------------------

/// `[stats]`.
pub(super) fn stats(ctx: &Ctx, raw: &Option<RawStats>) -> Result<StatsConfig, ConfigError> {
    let Some(s) = raw else {
        return Ok(StatsConfig {
            interval_ms: defaults::INTERVAL_MS,
            prometheus: Some(default_prometheus()),
        });
    };
    let interval_ms = ctx.int_or(
        &s.interval_ms,
        defaults::INTERVAL_MS,
        100,
        3_600_000,
        "[stats]",
        "interval_ms",
    )?;
    let prometheus = match &s.prometheus {
        None => Some(default_prometheus()),
        Some(v) => prometheus(ctx, v)?,
    };
    Ok(StatsConfig {
        interval_ms,
        prometheus,
    })
}

fn default_prometheus() -> SocketAddr {
    defaults::PROMETHEUS.parse().expect("constant address")
}

/// `prometheus`: an address, `true` (the default address) or `false` (off).
fn prometheus(ctx: &Ctx, v: &S<Value>) -> Result<Option<SocketAddr>, ConfigError> {
    match v.get_ref() {
        Value::Boolean(false) => Ok(None),
        Value::Boolean(true) => Ok(Some(default_prometheus())),
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
                    "{}: metrics will listen on {addr}, which is not loopback",
                    ctx.file
                );
            }
            Ok(Some(addr))
        }
        other => Err(ctx.err(
            v.span(),
            "[stats]",
            format!(
                "prometheus must be an \"address:port\" string or false, found {}",
                other.type_str()
            ),
        )),
    }
}

// ---- [daemon] -------------------------------------------------------------------------------

/// `[daemon]`: process settings.
pub(super) fn daemon(ctx: &Ctx, raw: &Option<RawDaemon>) -> Result<DaemonConfig, ConfigError> {
    let c = "[daemon]";
    let Some(d) = raw else {
        return Ok(DaemonConfig {
            user: None,
            group: None,
            workers: defaults::WORKERS,
            state_file: PathBuf::from(defaults::STATE_FILE),
            idle_sleep_us: defaults::IDLE_SLEEP_US,
            drain_timeout_ms: defaults::DRAIN_TIMEOUT_MS,
        });
    };
    Ok(DaemonConfig {
        user: d
            .user
            .as_ref()
            .map(|u| account_name(ctx, u, "user"))
            .transpose()?,
        group: d
            .group
            .as_ref()
            .map(|g| account_name(ctx, g, "group"))
            .transpose()?,
        workers: ctx.int_or(&d.workers, defaults::WORKERS, 1, 64, c, "workers")?,
        state_file: match &d.state_file {
            None => PathBuf::from(defaults::STATE_FILE),
            Some(p) if p.get_ref().is_empty() => {
                return Err(ctx.err(p.span(), c, "state_file is empty"))
            }
            Some(p) => PathBuf::from(p.get_ref()),
        },
        idle_sleep_us: ctx.int_or(
            &d.idle_sleep_us,
            defaults::IDLE_SLEEP_US,
            0,
            200,
            c,
            "idle_sleep_us",
        )?,
        drain_timeout_ms: ctx.int_or(
            &d.drain_timeout_ms,
            defaults::DRAIN_TIMEOUT_MS,
            0,
            60_000,
            c,
            "drain_timeout_ms",
        )?,
    })
}

/// `user` / `group`: a plausible account name (whether it exists is
/// [`super::Config::check_accounts`]'s question).
fn account_name(ctx: &Ctx, v: &S<String>, key: &str) -> Result<String, ConfigError> {
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
}

// ---- Limits across sections -----------------------------------------------------------------

/// Counts `[[filter.rule]]` and `[[steering]]` headers before the TOML is parsed, so that a file
/// with too many rules is refused without building them all in memory first (rules written as
/// inline arrays are counted after parsing, in `steering` and the filter section).
pub(super) fn too_many_tables(ctx: &Ctx) -> Result<(), ConfigError> {
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
pub(super) fn rate_table_memory(
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
                    crate::ratelimit::table_capacity(r.table_size).unwrap_or(usize::MAX),
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
