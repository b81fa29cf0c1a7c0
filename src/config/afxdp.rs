//! `[device] backend = "af_xdp"`: the interface, the XDP attach and zero-copy modes, and what
//! the AF_XDP backend makes of the keys written for the VF. Its `[[steering]]` rules are
//! validated straight into the XDP program generator's [`XdpRule`]s (IPv4 and IPv6).
//!
//! The VF keys, one by one (also in docs/config.md):
//!
//! | key | AF_XDP |
//! |---|---|
//! | `pci` | error: `pci` names a VF, `ifname` the AF_XDP interface |
//! | `pf` | error: there is no PF; the program is attached to `ifname` itself |
//! | `xcast` | error: the interface receives what its netdev receives (`ip link ... promisc on`) |
//! | `queues` | accepted, 1 to 64: one socket on each RX queue `0..queues` |
//! | `rx_ring`, `tx_ring` | accepted: RX + fill ring, TX + completion ring of each socket |
//! | `pool_size` | accepted: UMEM chunks of all sockets, split evenly |
//! | `headroom`, `burst` | accepted, same meaning |
//! | `mtu` | accepted: picks the UMEM chunk size (2048 or 4096); must fit in 4096 |
//! | `[[steering]] vf`, `queue`, `location` | error: no VF, no queue choice, no rule table |
//! | `[reinject] to = "vf"` | error: survivors go to the TAP |

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::raw::{RawDevice, RawReinject, RawSteering, S};
use super::types::{
    xdp_frame_room, AddrMatch, AfXdpDevice, DeviceAddr, DeviceConfig, XdpFlow, XdpMode, XdpRule,
    ZeroCopy,
};
use super::validate::Ctx;
use super::{limits, ConfigError};
use crate::filter::Cidr;

const C: &str = "[device]";

/// `backend`: `"vf"` (the default) or `"af_xdp"`.
pub(super) fn is_af_xdp(ctx: &Ctx, d: &RawDevice) -> Result<bool, ConfigError> {
    match d.backend.as_ref().map(|b| (b.span(), b.get_ref().as_str())) {
        None | Some((_, "vf")) => Ok(false),
        Some((_, "af_xdp")) => Ok(true),
        Some((span, other)) => Err(ctx.err(
            span,
            C,
            format!(
                "backend = {other:?} is not \"vf\" (an 82599/X540 VF bound to vfio-pci, the default) or \"af_xdp\" (any Linux interface through AF_XDP sockets)"
            ),
        )),
    }
}

/// The AF_XDP keys on a VF device are refused: they would be silently meaningless.
pub(super) fn no_af_xdp_keys(ctx: &Ctx, d: &RawDevice) -> Result<(), ConfigError> {
    let stray = [
        ("ifname", d.ifname.as_ref().map(|v| v.span())),
        ("xdp_mode", d.xdp_mode.as_ref().map(|v| v.span())),
        ("zero_copy", d.zero_copy.as_ref().map(|v| v.span())),
    ];
    if let Some((key, Some(span))) = stray.into_iter().find(|(_, s)| s.is_some()) {
        return Err(ctx.err(
            span,
            C,
            format!(
                "{key} applies only to backend = \"af_xdp\"; this device is a VF (add backend = \"af_xdp\" and remove pci, or remove {key})"
            ),
        ));
    }
    Ok(())
}

/// `ifname`, `xdp_mode`, `zero_copy`, and the VF keys that have no meaning here.
pub(super) fn device_addr(ctx: &Ctx, ds: &S<RawDevice>) -> Result<DeviceAddr, ConfigError> {
    let d = ds.get_ref();
    if let Some(p) = &d.pci {
        return Err(ctx.err(
            p.span(),
            C,
            "pci names a VF, but backend = \"af_xdp\" drives an interface by name: remove pci (the interface is `ifname`) or remove backend = \"af_xdp\"",
        ));
    }
    if let Some(p) = &d.pf {
        return Err(ctx.err(
            p.span(),
            C,
            "pf names the PF whose n-tuple rules steer into a VF; with backend = \"af_xdp\" the XDP program on `ifname` does the steering: remove pf",
        ));
    }
    if let Some(x) = &d.xcast {
        return Err(ctx.err(
            x.span(),
            C,
            "xcast asks a VF's PF for a multicast/promiscuous mode; an AF_XDP interface receives what its netdev receives (`ip link set <ifname> promisc on` if needed): remove xcast",
        ));
    }
    let Some(name) = &d.ifname else {
        return Err(ctx.err(
            ds.span(),
            C,
            "backend = \"af_xdp\" needs the interface: add `ifname = \"eth0\"` (your interface's name)",
        ));
    };
    let ifname = super::validate::ifname(ctx, name, C, "ifname")?;
    let xdp_mode = match d.xdp_mode.as_ref().map(|v| (v.span(), v.get_ref().as_str())) {
        None | Some((_, "auto")) => XdpMode::Auto,
        Some((_, "native")) => XdpMode::Native,
        Some((_, "generic")) => XdpMode::Generic,
        Some((span, other)) => {
            return Err(ctx.err(
                span,
                C,
                format!(
                    "xdp_mode = {other:?} is not \"auto\" (native, else generic), \"native\" (driver mode) or \"generic\" (skb mode, any interface)"
                ),
            ))
        }
    };
    let zero_copy = match d.zero_copy.as_ref().map(|v| (v.span(), v.get_ref().as_str())) {
        None | Some((_, "auto")) => ZeroCopy::Auto,
        Some((_, "require")) => ZeroCopy::Require,
        Some((_, "off")) => ZeroCopy::Off,
        Some((span, other)) => {
            return Err(ctx.err(
                span,
                C,
                format!(
                    "zero_copy = {other:?} is not \"auto\" (zero copy where the driver has it, else copy), \"require\" or \"off\""
                ),
            ))
        }
    };
    if xdp_mode == XdpMode::Generic && zero_copy == ZeroCopy::Require {
        let span = d.zero_copy.as_ref().map_or(ds.span(), |v| v.span());
        return Err(ctx.err(
            span,
            C,
            "zero_copy = \"require\" cannot work with xdp_mode = \"generic\": zero copy needs the driver's native XDP",
        ));
    }
    Ok(DeviceAddr::AfXdp(AfXdpDevice {
        ifname,
        xdp_mode,
        zero_copy,
    }))
}

/// The largest frame (`mtu` + 18 bytes of Ethernet header and one VLAN tag) must fit in a
/// 4096-byte UMEM chunk behind the headroom and the kernel's 256 bytes.
pub(super) fn mtu_fits(
    ctx: &Ctx,
    d: &RawDevice,
    mtu: u32,
    headroom: u16,
) -> Result<(), ConfigError> {
    let room = xdp_frame_room(4096, headroom);
    if mtu + 18 > room {
        let span = d
            .mtu
            .as_ref()
            .or(d.headroom.as_ref())
            .map_or(0..0, |v| v.span());
        return Err(ctx.err(
            span,
            C,
            format!(
                "mtu = {mtu} does not fit an AF_XDP chunk: a 4096-byte chunk holds {room} bytes of frame behind headroom = {headroom} and the kernel's 256, so the MTU can be at most {} (frame = MTU + 18)",
                room - 18
            ),
        ));
    }
    Ok(())
}

/// `[reinject] to = "vf"` transmits out of a VF; the AF_XDP backend reinjects through the TAP.
pub(super) fn no_reinject_vf(
    ctx: &Ctx,
    r: &RawReinject,
    dev: &DeviceConfig,
) -> Result<(), ConfigError> {
    if dev.af_xdp().is_none() {
        return Ok(());
    }
    if let Some(to) = r.to.as_ref().filter(|t| t.get_ref() == "vf") {
        return Err(ctx.err(
            to.span(),
            "[reinject]",
            "to = \"vf\" transmits survivors out of the VF; with backend = \"af_xdp\" they go back to the kernel through the TAP: use to = \"tap\" or remove to",
        ));
    }
    Ok(())
}

/// `[[steering]]` for the AF_XDP backend: each rule becomes an [`XdpRule`] (named as in the
/// file), matched in file order, each with its own masks; IPv6 flows allowed.
pub(super) fn steering(
    ctx: &Ctx,
    raw: &[S<RawSteering>],
    dev: &DeviceConfig,
) -> Result<Vec<XdpRule>, ConfigError> {
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
    let rules = raw
        .iter()
        .enumerate()
        .map(|(i, r)| steering_rule(ctx, i, r))
        .collect::<Result<Vec<_>, _>>()?;
    if rules.is_empty() {
        if let Some(x) = dev.af_xdp() {
            log::warn!(
                "{}: no [[steering]] rules: the XDP program on {} will pass every frame to the kernel and floodgate will see nothing",
                ctx.file,
                x.ifname
            );
        }
    }
    Ok(rules)
}

fn steering_rule(ctx: &Ctx, i: usize, r: &S<RawSteering>) -> Result<XdpRule, ConfigError> {
    let s = r.get_ref();
    let name = s.name.clone().unwrap_or_else(|| format!("steering-{i}"));
    let c = format!("steering rule {i} ({name:?})");
    let refused = [
        (
            "vf",
            s.vf.as_ref().map(|v| v.span()),
            "there is no VF with backend = \"af_xdp\"",
        ),
        (
            "queue",
            s.queue.as_ref().map(|v| v.span()),
            "an XDP program can only hand a frame to the socket of the RX queue it arrived on (use `ethtool -N`/`-X` on the interface to choose queues)",
        ),
        (
            "location",
            s.location.as_ref().map(|v| v.span()),
            "it is a slot in the PF's n-tuple table; the XDP program matches the rules in file order",
        ),
    ];
    if let Some((key, Some(span), why)) = refused.into_iter().find(|(_, s, _)| s.is_some()) {
        return Err(ctx.err(
            span,
            &c,
            format!("{key} does not apply to backend = \"af_xdp\": {why}; remove {key}"),
        ));
    }
    let flow = flow_type(ctx, &s.flow, &c)?;
    let v6 = matches!(flow, XdpFlow::Udp6 | XdpFlow::Tcp6 | XdpFlow::Ip6 { .. });
    let addr = |v: &Option<S<String>>, key: &str| {
        v.as_ref()
            .map(|v| addr_match(ctx, v, &c, key, &s.flow, v6))
            .transpose()
    };
    let mut rule = XdpRule::new(flow);
    rule.name = Some(name);
    rule.src = addr(&s.src, "src")?;
    rule.dst = addr(&s.dst, "dst")?;
    rule.src_port =
        super::steering::port_masked(ctx, &s.src_port, &s.src_port_mask, &c, "src_port")?
            .map(|p| (p.port, p.mask));
    rule.dst_port =
        super::steering::port_masked(ctx, &s.dst_port, &s.dst_port_mask, &c, "dst_port")?
            .map(|p| (p.port, p.mask));
    if matches!(
        flow,
        XdpFlow::Ip4 { proto: None } | XdpFlow::Ip6 { proto: None }
    ) {
        if let Some(p) = s.src_port.as_ref().or(s.dst_port.as_ref()) {
            return Err(ctx.err(
                p.span(),
                &c,
                format!(
                    "flow = {:?} matches addresses only; use udp4/tcp4/sctp4 or udp6/tcp6 to match ports",
                    s.flow.get_ref()
                ),
            ));
        }
    }
    // What the generator itself checks; refused above in better words, so this is a guard.
    rule.validate(i).map_err(|e| ctx.err(r.span(), &c, e.why))?;
    Ok(rule)
}

/// `flow`: the flows the XDP program generator matches.
fn flow_type(ctx: &Ctx, v: &S<String>, c: &str) -> Result<XdpFlow, ConfigError> {
    Ok(match v.get_ref().as_str() {
        "udp4" => XdpFlow::Udp4,
        "tcp4" => XdpFlow::Tcp4,
        "sctp4" => XdpFlow::Sctp4,
        "ip4" => XdpFlow::Ip4 { proto: None },
        "udp6" => XdpFlow::Udp6,
        "tcp6" => XdpFlow::Tcp6,
        "ip6" => XdpFlow::Ip6 { proto: None },
        other => {
            return Err(ctx.err(
                v.span(),
                c,
                format!(
                    "flow = {other:?} is not one of udp4, tcp4, sctp4, ip4, udp6, tcp6, ip6 (the flows the AF_XDP steering program matches)"
                ),
            ))
        }
    })
}

/// `src` / `dst`: an address or prefix of the flow's family, host bits cleared.
fn addr_match(
    ctx: &Ctx,
    v: &S<String>,
    c: &str,
    key: &str,
    flow: &S<String>,
    v6: bool,
) -> Result<AddrMatch, ConfigError> {
    let cidr: Cidr = v
        .get_ref()
        .parse()
        .map_err(|m: String| ctx.err(v.span(), c, format!("{key}: {m}")))?;
    match (cidr.addr, v6) {
        (IpAddr::V4(a), false) => {
            let m = if cidr.len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(cidr.len))
            };
            Ok(AddrMatch::V4(
                Ipv4Addr::from(u32::from(a) & m),
                Ipv4Addr::from(m),
            ))
        }
        (IpAddr::V6(a), true) => {
            let m = if cidr.len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(cidr.len))
            };
            Ok(AddrMatch::V6(
                Ipv6Addr::from(u128::from(a) & m),
                Ipv6Addr::from(m),
            ))
        }
        (a, _) => Err(ctx.err(
            v.span(),
            c,
            format!(
                "{key} = {:?} is an IPv{} address but flow = {:?} is IPv{}",
                v.get_ref(),
                if a.is_ipv4() { 4 } else { 6 },
                flow.get_ref(),
                if v6 { 6 } else { 4 }
            ),
        )),
    }
}
