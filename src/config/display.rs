//! How a configuration is shown: the `check-config` summary ([`Config`]'s `Display`) and the
//! clipping of values quoted in error messages.

use std::fmt;

use super::limits;
use super::types::{
    AddrMatch, AfXdpDevice, DstMac, Flow, ReinjectTo, SrcMac, XdpFlow, XdpMode, ZeroCopy,
};
use super::Config;

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
pub(super) fn clip_quoted(msg: &str) -> String {
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

impl fmt::Display for Config {
    /// A human-readable summary of what would be installed (for `check-config`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "config {}", self.source)?;
        self.fmt_device(f)?;
        self.fmt_steering(f)?;
        for (i, r) in self.filter.rules.iter().enumerate() {
            writeln!(f, "rule {i} {:?}: {} -> {}", r.name, r.summary, r.action)?;
        }
        writeln!(f, "default -> {}", self.filter.default)?;
        self.fmt_reinject(f)?;
        writeln!(
            f,
            "stats every {} ms, prometheus {}",
            self.stats.interval_ms,
            self.stats
                .prometheus
                .map_or("off".to_string(), |a| a.to_string())
        )?;
        self.fmt_daemon(f)
    }
}

/// `addr/len` when the mask (`mask`, left-aligned in 128 bits) is a prefix, `addr/mask-bits`
/// otherwise.
fn prefix(addr: &dyn fmt::Display, mask: u128) -> String {
    if mask.leading_ones() == mask.count_ones() {
        format!("{addr}/{}", mask.count_ones())
    } else {
        format!("{addr}/{mask:#x}")
    }
}

impl Config {
    fn fmt_device(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.device;
        if let Some(x) = d.af_xdp() {
            return self.fmt_af_xdp(f, x);
        }
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
        )
    }

    /// The AF_XDP backend: what is loaded where, which flows it steers, what passes.
    fn fmt_af_xdp(&self, f: &mut fmt::Formatter<'_>, x: &AfXdpDevice) -> fmt::Result {
        let d = &self.device;
        let last = d.queues - 1;
        writeln!(
            f,
            "device af_xdp on {}: {} AF_XDP socket(s) on RX queue(s) 0..={last}, rx/fill ring {}, tx/completion ring {}, {} UMEM chunks of {} bytes per socket, headroom {}, burst {}, mtu {}",
            x.ifname,
            d.queues,
            d.rx_ring,
            d.tx_ring,
            d.xdp_frames_per_queue(),
            d.xdp_chunk_size(),
            d.headroom,
            d.burst,
            d.mtu
        )?;
        writeln!(
            f,
            "xdp: a program generated from the {} steering rule(s) below is verified by the kernel and attached to {} ({}); sockets bind {}",
            self.xdp_steering.len(),
            x.ifname,
            match x.xdp_mode {
                XdpMode::Auto => "native mode, else generic; the mode obtained is logged",
                XdpMode::Native => "native (driver) mode only",
                XdpMode::Generic => "generic (skb) mode",
            },
            match x.zero_copy {
                ZeroCopy::Auto => "zero copy where the driver supports it, else copy (logged and exported as a metric)",
                ZeroCopy::Require => "zero copy or the start fails",
                ZeroCopy::Off => "in copy mode",
            }
        )?;
        for (i, r) in self.xdp_steering.iter().enumerate() {
            let addr = |a: &Option<AddrMatch>| match a {
                None => "any".to_string(),
                Some(AddrMatch::V4(a, m)) => prefix(a, u128::from(u32::from(*m)) << 96),
                Some(AddrMatch::V6(a, m)) => prefix(a, u128::from(*m)),
            };
            let port = |p: Option<(u16, u16)>| match p {
                None => "any".to_string(),
                Some((p, m)) => format!("{p}/{m:#06x}"),
            };
            let flow = match r.flow {
                XdpFlow::Udp4 => "udp4",
                XdpFlow::Tcp4 => "tcp4",
                XdpFlow::Sctp4 => "sctp4",
                XdpFlow::Ip4 { .. } => "ip4",
                XdpFlow::Udp6 => "udp6",
                XdpFlow::Tcp6 => "tcp6",
                XdpFlow::Ip6 { .. } => "ip6",
            };
            writeln!(
                f,
                "steering {i} {:?}: {flow} src {} dst {} sport {} dport {} -> the AF_XDP socket of the RX queue it arrives on (the kernel if that queue has none)",
                r.name.as_deref().unwrap_or_default(),
                addr(&r.src),
                addr(&r.dst),
                port(r.src_port),
                port(r.dst_port),
            )?;
        }
        if self
            .xdp_steering
            .iter()
            .any(|r| matches!(r.flow, XdpFlow::Udp6 | XdpFlow::Tcp6 | XdpFlow::Ip6 { .. }))
        {
            writeln!(
                f,
                "xdp: IPv6 rules are steered by the XDP program (the 82599/X540 VF backend cannot steer IPv6)"
            )?;
        }
        writeln!(
            f,
            "xdp: every other frame passes to the kernel of {} untouched (XDP_PASS){}",
            x.ifname,
            if self.xdp_steering.is_empty() {
                "; with no steering rules that is every frame: floodgate sees nothing"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "xdp: the attachment is recorded in {} (a program a crashed run left is removed at the next start)",
            crate::steering::xdp_state_path(&self.daemon.state_file, &x.ifname).display()
        )
    }

    fn fmt_steering(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.steering.iter().enumerate() {
            // A zero mask is a field the rule does not match on.
            let ip = |addr: std::net::Ipv4Addr, mask: std::net::Ipv4Addr| {
                if mask.is_unspecified() {
                    "any".to_string()
                } else {
                    format!("{addr}/{mask}")
                }
            };
            let port = |port: u16, mask: u16| {
                if mask == 0 {
                    "any".to_string()
                } else {
                    format!("{port}/{mask:#06x}")
                }
            };
            let flow = match s.flow {
                Flow::Udp4 => "Udp4",
                Flow::Tcp4 => "Tcp4",
                Flow::Sctp4 => "Sctp4",
                Flow::Ip4 { .. } => "Ip4",
            };
            writeln!(
                f,
                "steering {i} {:?}: {flow} src {} dst {} sport {} dport {} -> {}{}",
                s.name.as_deref().unwrap_or_default(),
                ip(s.src_ip, s.src_mask),
                ip(s.dst_ip, s.dst_mask),
                port(s.src_port, s.src_port_mask),
                port(s.dst_port, s.dst_port_mask),
                s.action,
                s.location
                    .map_or(String::new(), |l| format!(" (location {l})"))
            )?;
        }
        Ok(())
    }

    fn fmt_reinject(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reinject {
            ReinjectTo::Tap => writeln!(f, "reinject tap {}", self.tap.name),
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
            ),
        }
    }

    /// The last line, without a newline.
    fn fmt_daemon(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "workers {}, user {}, state file {}, idle {}, drain at most {} ms",
            self.daemon.workers,
            self.daemon.user.as_deref().unwrap_or("(unchanged)"),
            self.daemon.state_file.display(),
            if self.daemon.idle_sleep_us == 0 {
                "busy-poll".to_string()
            } else {
                format!("nap {} us", self.daemon.idle_sleep_us)
            },
            self.daemon.drain_timeout_ms
        )
    }
}
