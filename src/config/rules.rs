//! Filter rules: `[[filter.rule]]` entries turned into [`Rule`]s (matchers, action, the summary
//! `check-config` prints), and the value shapes they accept (lists, ranges, byte patterns).

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use toml::Value;

use super::raw::{RawRule, S};
use super::validate::Ctx;
use super::{defaults, limits, ConfigError, MAX_TABLE_SIZE};
use crate::bpf::{self, CompiledBpf, Program};
use crate::filter::{
    Action, ByteMatch, Cidr, CidrSet, Layer, Matcher, PortSet, Proto, ProtoSet, RateKey, RateLimit,
    Rule, Sample,
};
use crate::pcapfile::{CaptureFormat, RotationPolicy};

/// Terms of a tcpdump expression, as counted for [`limits::MAX_TCPDUMP_TERMS`]: `and`/`or`
/// connectives (also `&&`, `||`) plus one.
pub fn tcpdump_terms(expr: &str) -> usize {
    1 + expr
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|w| matches!(*w, "and" | "or" | "&&" | "||"))
        .count()
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
    list_of(
        ctx,
        v,
        c,
        key,
        "a string or a list of strings",
        |x| match x {
            Value::String(s) => Some(s.as_str()),
            _ => None,
        },
    )
}

/// The items of a value that is one item or a list of them, each converted by `f` (`None`: not
/// `what`); an empty list is an error, since the rule would never match.
fn list_of<'v, T>(
    ctx: &Ctx,
    v: &'v S<Value>,
    c: &str,
    key: &str,
    what: &str,
    f: impl Fn(&'v Value) -> Option<T>,
) -> Result<Vec<(Range<usize>, T)>, ConfigError> {
    let list = items(v);
    if list.is_empty() {
        return Err(ctx.err(
            v.span(),
            c,
            format!("{key} is an empty list, which would never match"),
        ));
    }
    list.into_iter()
        .map(|(span, x)| match f(x) {
            Some(t) => Ok((span, t)),
            None => Err(ctx.err(
                span,
                c,
                format!("{key}: expected {what}, found {}", x.type_str()),
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

/// Filter rule `i`: its name (unique among the rules, `names` remembers them), what it
/// matches and its action.
pub(super) fn rule(
    ctx: &Ctx,
    i: usize,
    raw: &S<RawRule>,
    names: &mut HashMap<String, usize>,
) -> Result<Rule, ConfigError> {
    let r = raw.get_ref();
    let name = rule_name(ctx, i, r, names)?;
    let c = format!("filter rule {i} ({name:?})");
    let mut m = Matchers::default();
    m.proto(ctx, &c, &r.proto)?;
    m.family(ctx, &c, &r.family)?;
    m.addresses(ctx, &c, r)?;
    m.ports(ctx, &c, r)?;
    m.len(ctx, &c, &r.len)?;
    m.bytes(ctx, &c, &r.bytes)?;
    m.tcpdump(ctx, &c, &r.tcpdump)?;
    m.bpf(ctx, &c, &r.bpf)?;
    let mut action = action(ctx, &c, raw)?;
    if let Action::Sample(s) = &mut action {
        // pcapng files name the rule in their comments.
        s.policy.rule = name.clone();
    }
    let mut rule = Rule::new(name, m.matchers, action);
    rule.summary = if m.summary.is_empty() {
        "all frames".to_string()
    } else {
        m.summary.join(" and ")
    };
    Ok(rule)
}

/// The rule's name (`rule-N` when unnamed); a given name must be unique.
fn rule_name(
    ctx: &Ctx,
    i: usize,
    r: &RawRule,
    names: &mut HashMap<String, usize>,
) -> Result<String, ConfigError> {
    let name = match &r.name {
        Some(n) if n.get_ref().trim().is_empty() => {
            return Err(ctx.err(n.span(), &format!("filter rule {i}"), "name is empty"))
        }
        Some(n) => n.get_ref().clone(),
        None => format!("rule-{i}"),
    };
    if let (Some(n), Some(j)) = (&r.name, names.get(&name)) {
        return Err(ctx.err(
            n.span(),
            &format!("filter rule {i} ({name:?})"),
            format!("the name is already used by filter rule {j}"),
        ));
    }
    names.entry(name.clone()).or_insert(i);
    Ok(name)
}

/// What a rule matches, built key by key (all must match), with the summary `check-config`
/// prints.
#[derive(Default)]
struct Matchers {
    matchers: Vec<Matcher>,
    summary: Vec<String>,
}

impl Matchers {
    /// `proto`: names or numbers; `"any"` among them matches every protocol.
    fn proto(&mut self, ctx: &Ctx, c: &str, v: &Option<S<Value>>) -> Result<(), ConfigError> {
        let Some(p) = v else {
            return Ok(());
        };
        let mut protos = Vec::new();
        let mut any = false;
        for (span, s) in strings_or_ints(ctx, p, c, "proto")? {
            if s == "any" {
                any = true;
                continue;
            }
            protos.push(
                s.parse::<Proto>()
                    .map_err(|m| ctx.err(span, c, format!("proto: {m}")))?,
            );
        }
        if !any {
            self.summary
                .push(format!("proto {}", display_value(p.get_ref())));
            self.matchers.push(Matcher::Proto(ProtoSet::new(&protos)));
        }
        Ok(())
    }

    /// `family`: IPv4 or IPv6.
    fn family(&mut self, ctx: &Ctx, c: &str, v: &Option<S<String>>) -> Result<(), ConfigError> {
        let Some(f) = v else {
            return Ok(());
        };
        let v4 = match f.get_ref().as_str() {
            "ipv4" | "ip4" | "inet" => true,
            "ipv6" | "ip6" | "inet6" => false,
            other => {
                return Err(ctx.err(
                    f.span(),
                    c,
                    format!("family = {other:?} is not \"ipv4\" or \"ipv6\""),
                ))
            }
        };
        self.summary
            .push(format!("family {}", if v4 { "ipv4" } else { "ipv6" }));
        self.matchers.push(Matcher::Ipv4(v4));
        Ok(())
    }

    /// `src`, `dst`: networks (one or a list).
    fn addresses(&mut self, ctx: &Ctx, c: &str, r: &RawRule) -> Result<(), ConfigError> {
        for (key, v) in [("src", &r.src), ("dst", &r.dst)] {
            if let Some(v) = v {
                let mut set = Vec::new();
                for (span, s) in strings(ctx, v, c, key)? {
                    set.push(
                        s.parse::<Cidr>()
                            .map_err(|m| ctx.err(span, c, format!("{key}: {m}")))?,
                    );
                }
                self.summary
                    .push(format!("{key} {}", display_value(v.get_ref())));
                let set = CidrSet::new(&set);
                self.matchers.push(if key == "src" {
                    Matcher::Src(set)
                } else {
                    Matcher::Dst(set)
                });
            }
        }
        Ok(())
    }

    /// `src_port`, `dst_port`: ports and ranges.
    fn ports(&mut self, ctx: &Ctx, c: &str, r: &RawRule) -> Result<(), ConfigError> {
        for (key, v) in [("src_port", &r.src_port), ("dst_port", &r.dst_port)] {
            if let Some(v) = v {
                let rs: Vec<(u16, u16)> = ranges(ctx, v, c, key, 65535)?
                    .into_iter()
                    .map(|(a, b)| (a as u16, b as u16))
                    .collect();
                self.summary
                    .push(format!("{key} {}", display_value(v.get_ref())));
                let set = PortSet::new(&rs);
                self.matchers.push(if key == "src_port" {
                    Matcher::SrcPort(set)
                } else {
                    Matcher::DstPort(set)
                });
            }
        }
        Ok(())
    }

    /// `len`: frame lengths and ranges.
    fn len(&mut self, ctx: &Ctx, c: &str, v: &Option<S<Value>>) -> Result<(), ConfigError> {
        if let Some(v) = v {
            let rs = ranges(ctx, v, c, "len", 65535)?
                .into_iter()
                .map(|(a, b)| (a as u32, b as u32))
                .collect();
            self.summary
                .push(format!("len {}", display_value(v.get_ref())));
            self.matchers.push(Matcher::Len(rs));
        }
        Ok(())
    }

    /// `bytes`: byte patterns at offsets.
    fn bytes(&mut self, ctx: &Ctx, c: &str, v: &Option<S<Value>>) -> Result<(), ConfigError> {
        if let Some(v) = v {
            let m = byte_matchers(ctx, v, c)?;
            self.summary
                .push(format!("bytes {}", display_value(v.get_ref())));
            self.matchers.extend(m);
        }
        Ok(())
    }

    /// `tcpdump`: an expression compiled by libpcap, within the limits on size, terms and
    /// compile time.
    fn tcpdump(&mut self, ctx: &Ctx, c: &str, v: &Option<S<String>>) -> Result<(), ConfigError> {
        let Some(t) = v else {
            return Ok(());
        };
        let expr = t.get_ref();
        if expr.trim().is_empty() {
            return Err(ctx.err(
                t.span(),
                c,
                "tcpdump is empty, which libpcap would compile to match every frame; write the expression, or remove the key to match all frames",
            ));
        }
        if expr.len() > limits::MAX_TCPDUMP_BYTES {
            return Err(ctx.err(
                t.span(),
                c,
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
                c,
                format!(
                    "tcpdump expression of {terms} terms is over the limit of {} (libpcap's optimizer would take minutes); split it into several rules, or use `src`/`dst` lists, which take any number of networks",
                    limits::MAX_TCPDUMP_TERMS
                ),
            ));
        }
        let insns = crate::libpcap::compile_within(expr, limits::TCPDUMP_COMPILE_TIMEOUT)
            .map_err(|e| ctx.err(t.span(), c, format!("tcpdump: {e}")))?;
        let prog = Program::new(&insns).map_err(|e| {
            ctx.err(
                t.span(),
                c,
                format!(
                    "tcpdump: libpcap's program for {:?} fails validation: {e}",
                    t.get_ref()
                ),
            )
        })?;
        self.summary
            .push(format!("tcpdump {:?} ({} insns)", t.get_ref(), prog.len()));
        self.matchers
            .push(Matcher::Bpf(Arc::new(CompiledBpf::new(&prog))));
        Ok(())
    }

    /// `bpf`: a classic BPF program as `tcpdump -ddd` prints it.
    fn bpf(&mut self, ctx: &Ctx, c: &str, v: &Option<S<String>>) -> Result<(), ConfigError> {
        let Some(b) = v else {
            return Ok(());
        };
        if b.get_ref().trim().is_empty() {
            return Err(ctx.err(
                b.span(),
                c,
                "bpf is empty: give the program as `tcpdump -ddd` prints it, or remove the key",
            ));
        }
        let insns = bpf::parse_bytecode(b.get_ref())
            .map_err(|e| ctx.err(b.span(), c, format!("bpf: {e}")))?;
        let prog = Program::new(&insns).map_err(|e| ctx.err(b.span(), c, format!("bpf: {e}")))?;
        self.summary.push(format!("bpf ({} insns)", prog.len()));
        self.matchers
            .push(Matcher::Bpf(Arc::new(CompiledBpf::new(&prog))));
        Ok(())
    }
}

/// `action` and the keys that belong to it; keys of another action are refused.
fn action(ctx: &Ctx, c: &str, raw: &S<RawRule>) -> Result<Action, ConfigError> {
    let r = raw.get_ref();
    let action_name = r.action.get_ref().as_str();
    let rate_keys: [(&str, bool); 6] = [
        ("rate", r.rate.is_some()),
        ("burst", r.burst.is_some()),
        ("per", r.per.is_some()),
        ("prefix", r.prefix.is_some()),
        ("prefix6", r.prefix6.is_some()),
        ("table_size", r.table_size.is_some()),
    ];
    let sample_keys: [(&str, bool); 6] = [
        ("every", r.every.is_some()),
        ("format", r.format.is_some()),
        ("path", r.path.is_some()),
        ("max_bytes", r.max_bytes.is_some()),
        ("max_files", r.max_files.is_some()),
        ("snaplen", r.snaplen.is_some()),
    ];
    let stray = |keys: &[(&str, bool)], needs: &str| -> Result<(), ConfigError> {
        if let Some((k, _)) = keys.iter().find(|(_, set)| *set) {
            return Err(ctx.err(
                raw.span(),
                c,
                format!("`{k}` only applies to action = \"{needs}\", but this rule's action is {action_name:?}"),
            ));
        }
        Ok(())
    };
    match action_name {
        "drop" | "pass" => {
            stray(&rate_keys, "rate-limit")?;
            stray(&sample_keys, "sample")?;
            Ok(if action_name == "drop" {
                Action::Drop
            } else {
                Action::Pass
            })
        }
        "rate-limit" => {
            stray(&sample_keys, "sample")?;
            rate_limit(ctx, c, raw)
        }
        "sample" => {
            stray(&rate_keys, "rate-limit")?;
            sample(ctx, c, raw)
        }
        other => Err(ctx.err(
            r.action.span(),
            c,
            format!(
                "action = {other:?} is not one of \"drop\", \"pass\", \"rate-limit\", \"sample\""
            ),
        )),
    }
}

/// `action = "rate-limit"`: rate, burst, what a key is (`per`, prefixes) and the table size.
fn rate_limit(ctx: &Ctx, c: &str, raw: &S<RawRule>) -> Result<Action, ConfigError> {
    let r = raw.get_ref();
    let Some(rate) = &r.rate else {
        return Err(ctx.err(
            raw.span(),
            c,
            "action = \"rate-limit\" needs `rate` (packets per second)",
        ));
    };
    let rate_pps: u64 = ctx.int(rate, 1, 1_000_000_000, c, "rate")?;
    let burst: u64 = ctx.int_or(&r.burst, rate_pps, 1, 1_000_000_000, c, "burst")?;
    let (mut v4, mut v6, flow) = match r.per.as_ref().map(|p| (p.span(), p.get_ref().as_str())) {
        None | Some((_, "src")) => (32u8, 128u8, false),
        Some((_, "src24")) => (24, 48, false),
        Some((_, "flow")) => (0, 0, true),
        Some((span, other)) => {
            return Err(ctx.err(
                span,
                c,
                format!("per = {other:?} is not one of \"src\", \"src24\", \"flow\""),
            ))
        }
    };
    if flow {
        if let Some(p) = r.prefix.as_ref().or(r.prefix6.as_ref()) {
            return Err(ctx.err(
                p.span(),
                c,
                "prefix/prefix6 apply to per = \"src\" or \"src24\", not \"flow\"",
            ));
        }
    }
    v4 = ctx.int_or(&r.prefix, v4, 0, 32, c, "prefix")?;
    v6 = ctx.int_or(&r.prefix6, v6, 0, 128, c, "prefix6")?;
    let table_size: usize = ctx.int_or(
        &r.table_size,
        defaults::TABLE_SIZE,
        4,
        MAX_TABLE_SIZE as i64,
        c,
        "table_size",
    )?;
    Ok(Action::RateLimit(RateLimit {
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
    }))
}

/// `action = "sample"`: one in `every` frames to a rotated pcap file.
fn sample(ctx: &Ctx, c: &str, raw: &S<RawRule>) -> Result<Action, ConfigError> {
    let r = raw.get_ref();
    let (Some(every), Some(path)) = (&r.every, &r.path) else {
        return Err(ctx.err(
            raw.span(),
            c,
            "action = \"sample\" needs `every` (1 in N) and `path` (pcap file)",
        ));
    };
    let every: u64 = ctx.int(every, 1, i64::MAX, c, "every")?;
    if path.get_ref().is_empty() {
        return Err(ctx.err(path.span(), c, "path is empty"));
    }
    let max_bytes: u64 = ctx.int_or(
        &r.max_bytes,
        defaults::SAMPLE_MAX_BYTES,
        1024,
        i64::MAX,
        c,
        "max_bytes",
    )?;
    let max_files: u32 = ctx.int_or(
        &r.max_files,
        defaults::SAMPLE_MAX_FILES,
        1,
        1000,
        c,
        "max_files",
    )?;
    let snaplen: u32 = ctx.int_or(
        &r.snaplen,
        defaults::SAMPLE_SNAPLEN,
        64,
        262_144,
        c,
        "snaplen",
    )?;
    let format = match r.format.as_ref().map(|f| (f.span(), f.get_ref().as_str())) {
        None | Some((_, "pcap")) => CaptureFormat::Pcap,
        Some((_, "pcapng")) => CaptureFormat::Pcapng,
        Some((span, other)) => {
            return Err(ctx.err(
                span,
                c,
                format!("format = {other:?} is not \"pcap\" or \"pcapng\""),
            ))
        }
    };
    Ok(Action::Sample(Sample {
        every,
        policy: RotationPolicy {
            path: PathBuf::from(path.get_ref()),
            max_bytes,
            max_files,
            snaplen,
            format,
            rule: String::new(),
        },
    }))
}

fn strings_or_ints(
    ctx: &Ctx,
    v: &S<Value>,
    c: &str,
    key: &str,
) -> Result<Vec<(Range<usize>, String)>, ConfigError> {
    list_of(ctx, v, c, key, "a name or number", |x| match x {
        Value::String(s) => Some(s.to_ascii_lowercase()),
        Value::Integer(n) => Some(n.to_string()),
        _ => None,
    })
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
