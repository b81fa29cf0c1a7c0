//! Steering: n-tuple rules on the PF that pull the attacked flows into the VF's queue.
//!
//! The rules go through the kernel's ethtool API on a real box ([`EthtoolBackend`]: the
//! `SIOCETHTOOL` ioctl with `ETHTOOL_SRXCLSRLINS` and friends) or through the NIC model's PF agent
//! ([`sim::SimBackend`]). The same [`Steering`] code drives both:
//!
//! 1. [`validate_rules`] checks in userspace what ixgbe would refuse (one mask per port, IPv4
//!    only, protocols, VLAN and pool masks; facts §4.3), so that the error names the rule;
//! 2. rules left over by a crashed run, recorded in the state file, are deleted;
//! 3. free locations are found by listing the rules already on the port (rules floodgate did not
//!    install are never touched);
//! 4. the locations are written to the state file, then the rules are inserted;
//! 5. [`Steering::remove_all`] deletes them on exit and removes the state file.
//!
//! ```
//! use floodgate::steering::{Action, Flow, SimBackend, Steering, SteeringRule};
//! let rule = SteeringRule::new(Flow::Udp4, Action::ToVf { vf: 0, queue: 0 }).dst_port(53);
//! let mut steering = Steering::new(SimBackend::standalone("sim0", 2046), None);
//! let report = steering.install(&[rule]).unwrap();
//! assert_eq!(report.installed.len(), 1);
//! steering.remove_all().unwrap();
//! assert!(steering.installed().is_empty());
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

pub mod ethtool;
pub mod sim;
pub mod state;
pub mod uapi;
pub mod xdp;

pub use ethtool::EthtoolBackend;
pub use sim::SimBackend;
pub use state::{default_state_path, StateFile};
pub use xdp::{xdp_state_path, XdpSetup, XdpSteering, XdpSteeringError};

/// What kind of packets a rule matches (IPv4 only: upstream ixgbe refuses IPv6 rules, facts §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flow {
    /// `udp4` (`UDP_V4_FLOW`).
    Udp4,
    /// `tcp4` (`TCP_V4_FLOW`).
    Tcp4,
    /// `sctp4` (`SCTP_V4_FLOW`).
    Sctp4,
    /// `ip4` (`IPV4_USER_FLOW`): `proto` `Some(6 | 17 | 132)` behaves like the matching flow type
    /// (ports allowed); `None` matches any IPv4 packet by address only.
    Ip4 {
        /// IP protocol, or any.
        proto: Option<u8>,
    },
}

impl Flow {
    /// Parses an ethtool `flow-type` name (`udp4`, `tcp4`, `sctp4`, `ip4`). IPv6 and other
    /// names are refused in plain words.
    pub fn from_name(name: &str) -> Result<Flow, SteeringError> {
        match name {
            "udp4" => Ok(Flow::Udp4),
            "tcp4" => Ok(Flow::Tcp4),
            "sctp4" => Ok(Flow::Sctp4),
            "ip4" => Ok(Flow::Ip4 { proto: None }),
            "udp6" | "tcp6" | "sctp6" | "ip6" | "ah6" | "esp6" => {
                Err(SteeringError::Rule(format!(
                "flow-type {name}: ixgbe steers IPv4 flows only; the kernel driver refuses IPv6 \
                 n-tuple rules (facts §4.3)"
            )))
            }
            other => Err(SteeringError::Rule(format!(
                "flow-type {other:?}: ixgbe steers udp4, tcp4, sctp4 and ip4 only"
            ))),
        }
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Flow::Udp4 => f.write_str("udp4"),
            Flow::Tcp4 => f.write_str("tcp4"),
            Flow::Sctp4 => f.write_str("sctp4"),
            Flow::Ip4 { proto: None } => f.write_str("ip4"),
            Flow::Ip4 { proto: Some(p) } => write!(f, "ip4 l4proto {p}"),
        }
    }
}

/// Where matching packets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// VF `vf` (0-based), VF-relative queue `queue`; `ring_cookie` = `(vf + 1) << 32 | queue`.
    ToVf {
        /// VF index (0-based).
        vf: u32,
        /// Queue inside the VF.
        queue: u32,
    },
    /// The PF's own queue.
    ToPf {
        /// PF ring.
        queue: u32,
    },
    /// Drop in hardware (`RX_CLS_FLOW_DISC`).
    Drop,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::ToVf { vf, queue } => write!(f, "vf {vf} queue {queue}"),
            Action::ToPf { queue } => write!(f, "queue {queue}"),
            Action::Drop => f.write_str("drop"),
        }
    }
}

/// `FLOW_EXT` VLAN match (`vlan` / `vlan-mask`, with the ioctl's mask convention).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VlanMatch {
    /// VLAN TCI.
    pub tci: u16,
    /// Mask, 1 = compare (ixgbe: 0x0FFF, 0xE000 or 0xEFFF, the CFI bit ignored).
    pub mask: u16,
}

/// `FLOW_EXT` user-def match (ixgbe: bits 7:0 select the VM pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserDef {
    /// Value.
    pub value: u64,
    /// Mask, 1 = compare.
    pub mask: u64,
}

/// One n-tuple steering rule. Masks use the ioctl's convention: **1 = compare this bit** (the
/// ethtool CLI's `m` options are the complement). Addresses are in normal notation; the encoder
/// writes them in network byte order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SteeringRule {
    /// Name used in messages (the config's rule name), if any.
    pub name: Option<String>,
    /// Flow type.
    pub flow: Flow,
    /// Source address.
    pub src_ip: Ipv4Addr,
    /// Source address mask.
    pub src_mask: Ipv4Addr,
    /// Destination address.
    pub dst_ip: Ipv4Addr,
    /// Destination address mask.
    pub dst_mask: Ipv4Addr,
    /// Source port.
    pub src_port: u16,
    /// Source port mask.
    pub src_port_mask: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Destination port mask.
    pub dst_port_mask: u16,
    /// VLAN match (sets `FLOW_EXT`).
    pub vlan: Option<VlanMatch>,
    /// User-def match (sets `FLOW_EXT`).
    pub user_def: Option<UserDef>,
    /// Action.
    pub action: Action,
    /// Location in the PF's rule table; `None` lets [`Steering`] pick a free one.
    pub location: Option<u32>,
}

impl SteeringRule {
    /// A rule matching every packet of `flow` (all masks 0) with `action`, location chosen
    /// automatically.
    pub fn new(flow: Flow, action: Action) -> SteeringRule {
        SteeringRule {
            name: None,
            flow,
            src_ip: Ipv4Addr::UNSPECIFIED,
            src_mask: Ipv4Addr::UNSPECIFIED,
            dst_ip: Ipv4Addr::UNSPECIFIED,
            dst_mask: Ipv4Addr::UNSPECIFIED,
            src_port: 0,
            src_port_mask: 0,
            dst_port: 0,
            dst_port_mask: 0,
            vlan: None,
            user_def: None,
            action,
            location: None,
        }
    }

    /// Sets the name used in messages.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Source prefix `ip/len` (len 0..=32; larger is clamped to 32).
    pub fn src_net(mut self, ip: Ipv4Addr, len: u8) -> Self {
        self.src_mask = prefix_mask(len);
        self.src_ip = Ipv4Addr::from(u32::from(ip) & u32::from(self.src_mask));
        self
    }

    /// Destination prefix `ip/len`.
    pub fn dst_net(mut self, ip: Ipv4Addr, len: u8) -> Self {
        self.dst_mask = prefix_mask(len);
        self.dst_ip = Ipv4Addr::from(u32::from(ip) & u32::from(self.dst_mask));
        self
    }

    /// Exact source port.
    pub fn src_port(mut self, port: u16) -> Self {
        self.src_port = port;
        self.src_port_mask = 0xffff;
        self
    }

    /// Exact destination port.
    pub fn dst_port(mut self, port: u16) -> Self {
        self.dst_port = port;
        self.dst_port_mask = 0xffff;
        self
    }

    /// Fixed location.
    pub fn at(mut self, location: u32) -> Self {
        self.location = Some(location);
        self
    }

    /// The mask part of the rule, which ixgbe keeps once per port (facts §4.3).
    fn mask_key(&self) -> MaskKey {
        MaskKey {
            src: self.src_mask,
            dst: self.dst_mask,
            sport: self.src_port_mask,
            dport: self.dst_port_mask,
            any_l4: matches!(self.flow, Flow::Ip4 { proto: None }),
            vlan: self.vlan.map_or(0, |v| v.mask & 0xefff),
            pool: self.user_def.map_or(0, |u| (u.mask as u8) & 0x7f),
        }
    }

    /// The match part with masks applied, to detect duplicates.
    fn match_key(&self) -> (u32, u32, u16, u16, String, u16) {
        (
            u32::from(self.src_ip) & u32::from(self.src_mask),
            u32::from(self.dst_ip) & u32::from(self.dst_mask),
            self.src_port & self.src_port_mask,
            self.dst_port & self.dst_port_mask,
            self.flow.to_string(),
            self.vlan.map_or(0, |v| v.tci & v.mask),
        )
    }
}

impl fmt::Display for SteeringRule {
    /// In `ethtool -N` words (masks printed only when partial).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "flow-type {}", self.flow)?;
        let ip = |f: &mut fmt::Formatter<'_>, k: &str, a: Ipv4Addr, m: Ipv4Addr| {
            if m == Ipv4Addr::UNSPECIFIED {
                Ok(())
            } else if m == Ipv4Addr::BROADCAST {
                write!(f, " {k} {a}")
            } else {
                write!(f, " {k} {a} m {}", Ipv4Addr::from(!u32::from(m)))
            }
        };
        ip(f, "src-ip", self.src_ip, self.src_mask)?;
        ip(f, "dst-ip", self.dst_ip, self.dst_mask)?;
        let port = |f: &mut fmt::Formatter<'_>, k: &str, p: u16, m: u16| match m {
            0 => Ok(()),
            0xffff => write!(f, " {k} {p}"),
            m => write!(f, " {k} {p} m {:#06x}", !m),
        };
        port(f, "src-port", self.src_port, self.src_port_mask)?;
        port(f, "dst-port", self.dst_port, self.dst_port_mask)?;
        if let Some(v) = self.vlan {
            write!(f, " vlan {:#06x} m {:#06x}", v.tci, !v.mask)?;
        }
        if let Some(u) = self.user_def {
            write!(f, " user-def {:#x} m {:#x}", u.value, !u.mask)?;
        }
        match self.action {
            Action::ToVf { vf, queue } => write!(f, " vf {vf} queue {queue}")?,
            Action::ToPf { queue } => write!(f, " queue {queue}")?,
            Action::Drop => write!(f, " action -1")?,
        }
        if let Some(l) = self.location {
            write!(f, " loc {l}")?;
        }
        Ok(())
    }
}

fn prefix_mask(len: u8) -> Ipv4Addr {
    let len = u32::from(len.min(32));
    Ipv4Addr::from(if len == 0 { 0 } else { u32::MAX << (32 - len) })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MaskKey {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    any_l4: bool,
    vlan: u16,
    pool: u8,
}

impl MaskKey {
    fn differences(&self, o: &MaskKey) -> Vec<String> {
        let mut d = Vec::new();
        if self.src != o.src {
            d.push(format!("source address mask {} vs {}", self.src, o.src));
        }
        if self.dst != o.dst {
            d.push(format!(
                "destination address mask {} vs {}",
                self.dst, o.dst
            ));
        }
        if self.sport != o.sport {
            d.push(format!(
                "source port mask {:#06x} vs {:#06x}",
                self.sport, o.sport
            ));
        }
        if self.dport != o.dport {
            d.push(format!(
                "destination port mask {:#06x} vs {:#06x}",
                self.dport, o.dport
            ));
        }
        if self.any_l4 != o.any_l4 {
            d.push("a protocol-less ip4 rule next to a tcp4/udp4/sctp4 rule".into());
        }
        if self.vlan != o.vlan {
            d.push(format!("VLAN mask {:#06x} vs {:#06x}", self.vlan, o.vlan));
        }
        if self.pool != o.pool {
            d.push(format!(
                "pool (user-def) mask {:#04x} vs {:#04x}",
                self.pool, o.pool
            ));
        }
        d
    }
}

/// "rule 2 (\"dns\")": rules are numbered from 1 in the order given.
fn rule_label(i: usize, r: &SteeringRule) -> String {
    match &r.name {
        Some(n) => format!("rule {} ({n:?})", i + 1),
        None => format!("rule {}", i + 1),
    }
}

/// Checks in userspace everything ixgbe would refuse with a bare `EINVAL`, so that the message can
/// name the rule (facts §4.3): one mask per port, protocols, port matches on protocol-less rules,
/// VLAN and pool masks, VF selector range, duplicate matches and duplicate locations.
pub fn validate_rules(rules: &[SteeringRule]) -> Result<(), SteeringError> {
    let mut locs: Vec<(u32, usize)> = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let label = rule_label(i, r);
        let bad = |msg: String| Err(SteeringError::Rule(format!("{label}: {msg}")));
        if let Flow::Ip4 { proto } = r.flow {
            match proto {
                None if r.src_port_mask != 0 || r.dst_port_mask != 0 => {
                    return bad("ixgbe matches ports only with a protocol: use flow udp4/tcp4/sctp4 (or ip4 with l4proto 6, 17 or 132)".into());
                }
                Some(p) if ![6, 17, 132].contains(&p) => {
                    return bad(format!("ixgbe steers IP protocols 6 (TCP), 17 (UDP) and 132 (SCTP) only, or any protocol with no port match; this rule asks for protocol {p}"));
                }
                _ => {}
            }
        }
        if let Action::ToVf { vf, .. } = r.action {
            if vf > 254 {
                return bad(format!(
                    "VF {vf} cannot be encoded: the ring_cookie VF selector is 8 bits (VF index + 1 ≤ 255)"
                ));
            }
        }
        if let Some(v) = r.vlan {
            if ![0, 0x0fff, 0xe000, 0xefff].contains(&(v.mask & 0xefff)) {
                return bad(format!("ixgbe matches the VLAN ID (mask 0x0fff), the priority (0xe000), both (0xefff) or nothing; mask {:#06x} is none of those", v.mask));
            }
        }
        if let Some(u) = r.user_def {
            if ![0, 0x7f].contains(&((u.mask as u8) & 0x7f)) {
                return bad(format!("ixgbe reads the user-def low byte as the VM pool and accepts its mask as all or nothing (0x7f or 0); mask {:#x} is neither", u.mask & 0xff));
            }
        }
        if let Some(first) = rules.first() {
            let diffs = r.mask_key().differences(&first.mask_key());
            if i > 0 && !diffs.is_empty() {
                return Err(SteeringError::Rule(format!(
                    "ixgbe accepts one mask per port: {label} uses a different mask than {} ({}); give every steering rule the same fields and prefix lengths",
                    rule_label(0, first),
                    diffs.join(", ")
                )));
            }
        }
        for (j, o) in rules[..i].iter().enumerate() {
            if o.match_key() == r.match_key() {
                return bad(format!(
                    "matches exactly the same packets as {}",
                    rule_label(j, o)
                ));
            }
        }
        if let Some(l) = r.location {
            if let Some((_, j)) = locs.iter().find(|(x, _)| *x == l) {
                return bad(format!(
                    "location {l} is also given to {}",
                    rule_label(*j, &rules[*j])
                ));
            }
            locs.push((l, i));
        }
    }
    Ok(())
}

/// An errno from the kernel (or the model), with the model's own words when it has them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("errno {errno}{}", .detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
pub struct BackendError {
    /// Positive errno value.
    pub errno: i32,
    /// The backend's explanation, if it has one (the kernel has none; the model does).
    pub detail: Option<String>,
}

impl BackendError {
    /// An errno without detail.
    pub fn errno(errno: i32) -> BackendError {
        BackendError {
            errno,
            detail: None,
        }
    }
}

/// The PF's n-tuple rule table as listed by `ETHTOOL_GRXCLSRLCNT` + `ETHTOOL_GRXCLSRLALL`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleTable {
    /// Number of locations (ixgbe: `(1024 << pballoc) - 2`, 2046 by default).
    pub size: u32,
    /// Occupied locations.
    pub locations: Vec<u32>,
}

/// What steering needs from the PF: the ethtool n-tuple and RSS operations.
pub trait SteeringBackend {
    /// The PF's name (netdev), for messages and the state file.
    fn pf(&self) -> &str;
    /// `ETHTOOL_GRXRINGS`: the PF's RX ring count.
    fn rx_rings(&mut self) -> Result<u32, BackendError>;
    /// `ETHTOOL_GRXCLSRLCNT` + `ETHTOOL_GRXCLSRLALL`.
    fn rule_table(&mut self) -> Result<RuleTable, BackendError>;
    /// `ETHTOOL_GRXCLSRULE`: the rule at `location` (`ENOENT` if none).
    fn get_rule(&mut self, location: u32) -> Result<uapi::RxFlowSpec, BackendError>;
    /// `ETHTOOL_SRXCLSRLINS` of `rule` at `location`; returns the location used.
    fn insert(&mut self, rule: &SteeringRule, location: u32) -> Result<u32, BackendError>;
    /// `ETHTOOL_SRXCLSRLDEL`.
    fn delete(&mut self, location: u32) -> Result<(), BackendError>;
    /// `ETHTOOL_GRXFHINDIR`: the RSS indirection table.
    fn rss_indir(&mut self) -> Result<Vec<u32>, BackendError>;
    /// `ETHTOOL_SRXFHINDIR`: sets the RSS indirection table (its length must be the size
    /// [`rss_indir`](Self::rss_indir) returns).
    fn set_rss_indir(&mut self, table: &[u32]) -> Result<(), BackendError>;
}

/// Errors of steering, in plain words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SteeringError {
    /// A rule that the kernel would refuse, caught before asking it.
    #[error("{0}")]
    Rule(String),
    /// The kernel (or the model) refused a request.
    #[error("{pf}: {op}: {msg}")]
    Kernel {
        /// PF name.
        pf: String,
        /// Operation, e.g. `inserting rule 2 at location 2045`.
        op: String,
        /// errno.
        errno: i32,
        /// Explanation.
        msg: String,
    },
    /// No free location.
    #[error("{pf}: no free n-tuple rule location for {rule}: all {size} locations are taken (by {foreign} rules floodgate didn't install and {ours} of its own)")]
    Full {
        /// PF name.
        pf: String,
        /// Rule label.
        rule: String,
        /// Table size.
        size: u32,
        /// Rules not ours.
        foreign: usize,
        /// Rules of this run.
        ours: usize,
    },
    /// The state file could not be read, parsed or written.
    #[error("steering state file {}: {msg}", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },
    /// The interface name is unusable.
    #[error("interface name {0:?}: {1}")]
    BadName(String, String),
}

/// Plain words for an errno returned by an ethtool request on `pf`.
pub fn explain_errno(pf: &str, errno: i32, what: &str) -> String {
    match errno {
        libc::EPERM | libc::EACCES => format!(
            "permission denied: changing {what} on {pf} needs CAP_NET_ADMIN (run floodgate as root; it drops privileges after setup)"
        ),
        libc::ENODEV | libc::ENXIO => {
            format!("no such network interface {pf:?} (`ip link` lists them; check the `pf` setting)")
        }
        libc::EOPNOTSUPP => format!(
            "n-tuple filters are off on {pf}, or its driver has no {what}: run `ethtool -K {pf} ntuple on`"
        ),
        libc::ENOSPC => format!("the flow director table of {pf} is full"),
        libc::E2BIG => format!("{pf}: the request is too large for the driver's table"),
        libc::EBUSY => format!("{pf} is busy (being reset or reconfigured); try again"),
        libc::ENOENT => format!("{pf} has no rule there"),
        libc::ENETDOWN => format!("{pf} is down: `ip link set {pf} up`"),
        e => format!("{} (errno {e})", std::io::Error::from_raw_os_error(e)),
    }
}

/// Whether an error on reading or deleting one location means "no rule there": ixgbe answers
/// `EINVAL` for an empty location (`ixgbe_update_ethtool_fdir_entry`), other drivers `ENOENT`.
fn gone(e: &BackendError) -> bool {
    e.errno == libc::ENOENT || e.errno == libc::EINVAL
}

fn kernel_err(pf: &str, op: String, e: &BackendError, what: &str) -> SteeringError {
    let mut msg = explain_errno(pf, e.errno, what);
    if let Some(d) = &e.detail {
        msg.push_str(&format!(" [driver: {d}]"));
    }
    SteeringError::Kernel {
        pf: pf.to_string(),
        op,
        errno: e.errno,
        msg,
    }
}

/// A rule this run installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// Index of the rule in the list given to [`Steering::install`].
    pub index: usize,
    /// Location used.
    pub location: u32,
    /// The rule, with `location` filled in.
    pub rule: SteeringRule,
}

/// What [`Steering::install`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstallReport {
    /// Locations of rules left over by a previous run that were deleted.
    pub leftovers_removed: Vec<u32>,
    /// Leftover locations that now hold a rule floodgate did not install, left alone.
    pub leftovers_kept: Vec<u32>,
    /// Rules installed now.
    pub installed: Vec<Installed>,
}

/// The steering manager: installs the configured rules on one PF, remembers their locations in a
/// state file, removes them on exit, and cleans up after a crashed run.
pub struct Steering<B: SteeringBackend> {
    backend: B,
    state: Option<StateFile>,
    installed: Vec<Installed>,
}

impl<B: SteeringBackend> Steering<B> {
    /// A manager over `backend`; `state_path` `None` keeps no state file (the in-process model
    /// cannot leave rules behind a crash).
    pub fn new(backend: B, state_path: Option<PathBuf>) -> Steering<B> {
        Steering {
            backend,
            state: state_path.map(StateFile::new),
            installed: Vec::new(),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Gives the backend back **without** removing the rules (as a crash would leave them; the
    /// state file stays, so the next [`install`](Self::install) cleans up).
    pub fn into_backend(self) -> B {
        self.backend
    }

    /// The backend, mutably (e.g. for RSS).
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// The state file path, if any.
    pub fn state_path(&self) -> Option<&Path> {
        self.state.as_ref().map(|s| s.path())
    }

    /// Rules currently installed by this manager.
    pub fn installed(&self) -> &[Installed] {
        &self.installed
    }

    /// Validates `rules`, deletes leftovers of a crashed run, picks free locations, records them
    /// in the state file, and inserts the rules. On any failure the rules inserted so far are
    /// deleted again and the error names the rule. Rules installed by an earlier call are removed
    /// first.
    pub fn install(&mut self, rules: &[SteeringRule]) -> Result<InstallReport, SteeringError> {
        validate_rules(rules)?;
        if !self.installed.is_empty() {
            self.remove_all()?;
        }
        let pf = self.backend.pf().to_string();
        let mut report = InstallReport::default();
        self.remove_leftovers(&mut report)?;

        let table = self
            .backend
            .rule_table()
            .map_err(|e| kernel_err(&pf, "listing n-tuple rules".into(), &e, "n-tuple rules"))?;
        let needs_rings = rules
            .iter()
            .any(|r| matches!(r.action, Action::ToPf { .. }));
        let rings =
            if needs_rings {
                Some(self.backend.rx_rings().map_err(|e| {
                    kernel_err(&pf, "reading the RX ring count".into(), &e, "RX rings")
                })?)
            } else {
                None
            };
        let foreign: BTreeSet<u32> = table.locations.iter().copied().collect();
        let plan = plan_locations(&pf, rules, &table, &foreign, rings)?;

        if let Some(st) = &mut self.state {
            st.write_rules(&pf, rules, &plan)?;
        }
        for (i, (r, &loc)) in rules.iter().zip(plan.iter()).enumerate() {
            if let Err(e) = self.backend.insert(r, loc) {
                let err = insert_error(&pf, i, r, loc, &e, &foreign);
                log::error!("{err}");
                if let Err(e2) = self.remove_all() {
                    log::error!("rolling back steering rules: {e2}");
                }
                return Err(err);
            }
            let mut rule = r.clone();
            rule.location = Some(loc);
            log::info!(
                "{pf}: installed {} at location {loc}: {rule}",
                rule_label(i, r)
            );
            self.installed.push(Installed {
                index: i,
                location: loc,
                rule,
            });
        }
        report.installed = self.installed.clone();
        Ok(report)
    }

    fn remove_leftovers(&mut self, report: &mut InstallReport) -> Result<(), SteeringError> {
        let Some(st) = &mut self.state else {
            return Ok(());
        };
        let Some(old) = st.read()? else { return Ok(()) };
        let pf = self.backend.pf().to_string();
        if old.pf != pf {
            log::warn!(
                "state file {} lists rules of another interface ({}) at locations {:?}; they are left alone: remove them with `ethtool -N {} delete <loc>`",
                st.path().display(),
                old.pf,
                old.locations,
                old.pf
            );
            return Ok(());
        }
        for (i, &loc) in old.locations.iter().enumerate() {
            if let Some(expected) = old.rules.get(i) {
                match self.backend.get_rule(loc) {
                    Ok(fs) => {
                        if !state::same_match(&fs, expected) {
                            log::warn!("{pf}: location {loc} was floodgate's in a previous run but now holds another rule; leaving it");
                            report.leftovers_kept.push(loc);
                            continue;
                        }
                    }
                    Err(e) if gone(&e) => {
                        log::info!("{pf}: leftover location {loc} is already empty");
                        continue;
                    }
                    Err(e) if e.errno == libc::EOPNOTSUPP => {}
                    Err(e) => {
                        return Err(kernel_err(
                            &pf,
                            format!("reading leftover rule at location {loc}"),
                            &e,
                            "n-tuple rules",
                        ))
                    }
                }
            }
            match self.backend.delete(loc) {
                Ok(()) => {
                    log::warn!(
                        "{pf}: deleted rule left at location {loc} by a previous run (pid {})",
                        old.pid
                    );
                    report.leftovers_removed.push(loc);
                }
                Err(e) if gone(&e) => {}
                Err(e) => {
                    return Err(kernel_err(
                        &pf,
                        format!("deleting leftover rule at location {loc}"),
                        &e,
                        "n-tuple rules",
                    ))
                }
            }
        }
        st.remove()?;
        Ok(())
    }

    /// Deletes every rule this manager installed and the state file. Rules already gone are not
    /// an error; the first other failure is returned after trying all of them (the state file is
    /// then kept, so the next start cleans up).
    pub fn remove_all(&mut self) -> Result<usize, SteeringError> {
        let pf = self.backend.pf().to_string();
        let mut first_err = None;
        let mut kept = Vec::new();
        let mut removed = 0;
        for ins in std::mem::take(&mut self.installed) {
            match self.backend.delete(ins.location) {
                Ok(()) => removed += 1,
                Err(e) if gone(&e) => {}
                Err(e) => {
                    let err = kernel_err(
                        &pf,
                        format!("deleting rule at location {}", ins.location),
                        &e,
                        "n-tuple rules",
                    );
                    log::error!("{err}");
                    first_err.get_or_insert(err);
                    kept.push(ins);
                }
            }
        }
        if let Some(e) = first_err {
            self.installed = kept;
            return Err(e);
        }
        if let Some(st) = &mut self.state {
            st.remove()?;
        }
        log::info!("{pf}: removed {removed} steering rules");
        Ok(removed)
    }

    /// Sets RSS weights like `ethtool -X <pf> weight w0 w1 ...` (contiguous blocks, facts §4.6).
    pub fn set_rss_weights(&mut self, weights: &[u32]) -> Result<Vec<u32>, SteeringError> {
        let pf = self.backend.pf().to_string();
        let size = self
            .backend
            .rss_indir()
            .map_err(|e| kernel_err(&pf, "reading the RSS table".into(), &e, "an RSS table"))?
            .len();
        let table = weight_table(weights, size).map_err(SteeringError::Rule)?;
        self.backend
            .set_rss_indir(&table)
            .map_err(|e| kernel_err(&pf, "writing the RSS table".into(), &e, "an RSS table"))?;
        Ok(table)
    }
}

/// An indirection table of `size` entries where queue j gets ≈ size·wj/Σw consecutive entries,
/// as `ethtool -X weight` builds it (facts §4.6).
pub fn weight_table(weights: &[u32], size: usize) -> Result<Vec<u32>, String> {
    let sum: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    if sum == 0 {
        return Err("RSS weights: at least one weight must be non-zero".into());
    }
    if size == 0 {
        return Err("RSS weights: the device reports an empty indirection table".into());
    }
    let mut out = Vec::with_capacity(size);
    let mut j = 0usize;
    let mut partial = u64::from(weights[0]);
    for i in 0..size as u64 {
        // Entry i belongs to the first queue whose cumulative share exceeds i.
        while i * sum >= partial * size as u64 && j + 1 < weights.len() {
            j += 1;
            partial += u64::from(weights[j]);
        }
        out.push(j as u32);
    }
    Ok(out)
}

fn plan_locations(
    pf: &str,
    rules: &[SteeringRule],
    table: &RuleTable,
    foreign: &BTreeSet<u32>,
    rings: Option<u32>,
) -> Result<Vec<u32>, SteeringError> {
    let mut taken: BTreeSet<u32> = foreign.clone();
    for (i, r) in rules.iter().enumerate() {
        if let (Action::ToPf { queue }, Some(n)) = (r.action, rings) {
            if queue >= n {
                return Err(SteeringError::Rule(format!(
                    "{}: {pf} has {n} RX rings, so queue {queue} does not exist",
                    rule_label(i, r)
                )));
            }
        }
        if let Some(l) = r.location {
            if l >= table.size {
                return Err(SteeringError::Rule(format!(
                    "{}: location {l} is out of range: {pf}'s rule table has locations 0..={}",
                    rule_label(i, r),
                    table.size.saturating_sub(1)
                )));
            }
            if foreign.contains(&l) {
                return Err(SteeringError::Rule(format!(
                    "{}: location {l} on {pf} holds a rule floodgate didn't install; pick another location or delete it with `ethtool -N {pf} delete {l}`",
                    rule_label(i, r)
                )));
            }
            taken.insert(l);
        }
    }
    // Automatic locations from the top of the table down, like `ethtool -N ... loc` left out,
    // away from the low locations operators usually type by hand.
    let mut next = table.size;
    let mut plan = Vec::with_capacity(rules.len());
    for (i, r) in rules.iter().enumerate() {
        let loc = match r.location {
            Some(l) => l,
            None => {
                let found = (0..next).rev().find(|l| !taken.contains(l));
                match found {
                    Some(l) => {
                        taken.insert(l);
                        next = l;
                        l
                    }
                    None => {
                        return Err(SteeringError::Full {
                            pf: pf.to_string(),
                            rule: rule_label(i, r),
                            size: table.size,
                            foreign: foreign.len(),
                            ours: i,
                        })
                    }
                }
            }
        };
        plan.push(loc);
    }
    Ok(plan)
}

fn insert_error(
    pf: &str,
    i: usize,
    r: &SteeringRule,
    loc: u32,
    e: &BackendError,
    foreign: &BTreeSet<u32>,
) -> SteeringError {
    let label = rule_label(i, r);
    let op = format!("inserting {label} ({r}) at location {loc}");
    if e.errno != libc::EINVAL {
        return kernel_err(pf, op, e, "n-tuple rules");
    }
    let mut causes = Vec::new();
    if !foreign.is_empty() {
        causes.push(format!(
            "ixgbe accepts one mask per port: {label} probably uses a different mask than the rules already on {pf} that floodgate didn't install (locations {:?}); delete them or match their mask",
            foreign.iter().take(8).collect::<Vec<_>>()
        ));
    }
    if let Action::ToVf { vf, queue } = r.action {
        causes.push(format!("VF {vf} does not exist on {pf} (check sriov_numvfs) or queue {queue} is beyond the VF's queues per pool (facts §4.3)"));
    }
    causes.push("the location is beyond the flow director table (pballoc)".into());
    let mut msg = format!(
        "the driver refused the rule (EINVAL). Likely: {}",
        causes.join("; or ")
    );
    if let Some(d) = &e.detail {
        msg = format!("{d} (EINVAL)");
    } else {
        msg.push_str(". `dmesg | tail` shows the driver's exact reason");
    }
    SteeringError::Kernel {
        pf: pf.to_string(),
        op,
        errno: e.errno,
        msg,
    }
}
