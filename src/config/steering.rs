//! `[[steering]]`: each entry validated straight into the steering layer's [`SteeringRule`],
//! then what the port asks of all of them together (one set of masks, facts §4.3; distinct
//! locations).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use super::raw::{RawSteering, S};
use super::types::{DeviceAddr, DeviceConfig};
use super::validate::Ctx;
use super::{limits, ConfigError};
use crate::filter::Cidr;
use crate::steering::{self, Flow, SteeringRule};

/// An IPv4 address (host bits cleared) with its mask.
#[derive(Clone, Copy)]
struct Ipv4Masked {
    addr: Ipv4Addr,
    mask: Ipv4Addr,
}

/// A port with its mask (0xffff = exact).
#[derive(Clone, Copy)]
pub(super) struct PortMasked {
    pub(super) port: u16,
    pub(super) mask: u16,
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

pub(super) fn port_masked(
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

/// `[[steering]]`: each rule on its own, then what the port asks of all of them together (one
/// set of masks, facts §4.3; distinct locations).
pub(super) fn steering(
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
        let rule = steering_rule(ctx, i, r, dev)?;
        let c = format!(
            "steering rule {i} ({:?})",
            rule.name.as_deref().unwrap_or_default()
        );
        same_masks(ctx, i, r, &c, &rule, &mut first_masks)?;
        if let Some(loc) = rule.location {
            if let Some(prev) = locations.insert(loc, i) {
                return Err(ctx.err(
                    r.span(),
                    &c,
                    format!("location {loc} is also used by steering rule {prev}"),
                ));
            }
        }
        out.push(rule);
    }
    Ok(out)
}

/// Steering rule `i` on its own.
fn steering_rule(
    ctx: &Ctx,
    i: usize,
    r: &S<RawSteering>,
    dev: &DeviceConfig,
) -> Result<SteeringRule, ConfigError> {
    let s = r.get_ref();
    let name = s.name.clone().unwrap_or_else(|| format!("steering-{i}"));
    let c = format!("steering rule {i} ({name:?})");
    let flow = flow_type(ctx, &s.flow, &c)?;
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
    if flow == (Flow::Ip4 { proto: None }) {
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
    let mut rule = SteeringRule::new(
        flow,
        steering::Action::ToVf {
            vf: u32::from(vf),
            queue: u32::from(queue),
        },
    )
    .named(name);
    if let Some(m) = src {
        rule.src_ip = m.addr;
        rule.src_mask = m.mask;
    }
    if let Some(m) = dst {
        rule.dst_ip = m.addr;
        rule.dst_mask = m.mask;
    }
    if let Some(p) = src_port {
        rule.src_port = p.port;
        rule.src_port_mask = p.mask;
    }
    if let Some(p) = dst_port {
        rule.dst_port = p.port;
        rule.dst_port_mask = p.mask;
    }
    rule.location = location;
    Ok(rule)
}

/// `flow`: the IPv4 flow types ixgbe steers (facts §4.3).
fn flow_type(ctx: &Ctx, v: &S<String>, c: &str) -> Result<Flow, ConfigError> {
    Ok(match v.get_ref().as_str() {
        "tcp4" => Flow::Tcp4,
        "udp4" => Flow::Udp4,
        "sctp4" => Flow::Sctp4,
        "ip4" => Flow::Ip4 { proto: None },
        other => {
            return Err(ctx.err(
                v.span(),
                c,
                format!(
                "flow = {other:?} is not one of udp4, tcp4, sctp4, ip4 (ixgbe steers IPv4 only; \
                 backend = \"af_xdp\" steers udp6, tcp6 and ip6 too)"
            ),
            ))
        }
    })
}

/// ixgbe has one set of flow-director masks per port (facts §4.3): every rule must use the
/// masks of the first. `first` remembers that rule's index, name and masks.
fn same_masks(
    ctx: &Ctx,
    i: usize,
    r: &S<RawSteering>,
    c: &str,
    rule: &SteeringRule,
    first: &mut Option<(usize, String, [u32; 4])>,
) -> Result<(), ConfigError> {
    let masks = [
        u32::from(rule.src_mask),
        u32::from(rule.dst_mask),
        u32::from(rule.src_port_mask),
        u32::from(rule.dst_port_mask),
    ];
    match first {
        None => *first = Some((i, rule.name.clone().unwrap_or_default(), masks)),
        Some((j, jname, m)) if *m != masks => {
            let fields = ["src", "dst", "src_port", "dst_port"];
            let diff: Vec<&str> = (0..4)
                .filter(|&k| m[k] != masks[k])
                .map(|k| fields[k])
                .collect();
            return Err(ctx.err(
                r.span(),
                c,
                format!(
                    "ixgbe accepts one mask per port: this rule's {} mask differs from steering rule {j} ({jname:?}); give every steering rule the same fields and prefix lengths (facts §4.3)",
                    diff.join(", ")
                ),
            ));
        }
        Some(_) => {}
    }
    Ok(())
}

/// Steering a real device goes through the PF's netdev, which `[device] pf` names.
pub(super) fn steering_needs_pf(
    ctx: &Ctx,
    device: &DeviceConfig,
    raw: &[S<RawSteering>],
) -> Result<(), ConfigError> {
    if let (DeviceAddr::Pci(_), None, Some(first)) = (&device.device, &device.pf, raw.first()) {
        return Err(ctx.err(
            first.span(),
            "steering rule 0",
            "steering a real device needs the PF's netdev: add `pf = \"eth0\"` (your PF's name) to [device]",
        ));
    }
    Ok(())
}
