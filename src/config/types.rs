//! The validated configuration's domain types: what the daemon reads after [`super::Config`]
//! accepted a file.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::filter::{Decision, Rule, RuleSet};

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
    /// Any Linux interface, through AF_XDP sockets (`backend = "af_xdp"`, `ifname = ...`): an
    /// XDP program generated from the `[[steering]]` rules redirects the steered flows into
    /// the sockets and passes every other frame to the kernel untouched.
    AfXdp(AfXdpDevice),
}

/// `[device] backend = "af_xdp"`: the interface and how the XDP program and sockets attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfXdpDevice {
    /// The interface (`ifname`): the XDP program is attached here and one AF_XDP socket is
    /// bound to each of its RX queues `0..[device] queues`.
    pub ifname: String,
    /// How the XDP program is attached (`xdp_mode`).
    pub xdp_mode: XdpMode,
    /// Whether the sockets use zero copy (`zero_copy`).
    pub zero_copy: ZeroCopy,
}

/// `[device] xdp_mode`: how the XDP program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpMode {
    /// Native (driver) mode if the driver has it, else generic; the mode obtained is logged.
    #[default]
    Auto,
    /// Native (driver) mode only: the start fails if the driver has no XDP support.
    Native,
    /// Generic (skb) mode: works on every interface, slower (after the kernel built an skb).
    Generic,
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpMode::Auto => "auto",
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        })
    }
}

/// `[device] zero_copy`: whether the AF_XDP sockets bind in zero-copy mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZeroCopy {
    /// Zero copy if the driver supports it, else copy mode; the mode obtained is logged and
    /// exported as a metric.
    #[default]
    Auto,
    /// Zero copy or fail to start.
    Require,
    /// Copy mode always.
    Off,
}

impl fmt::Display for ZeroCopy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ZeroCopy::Auto => "auto",
            ZeroCopy::Require => "require",
            ZeroCopy::Off => "off",
        })
    }
}

impl fmt::Display for DeviceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceAddr::Sim => f.write_str("sim"),
            DeviceAddr::Pci(p) => p.fmt(f),
            DeviceAddr::VfioUser(p) => write!(f, "vfio-user:{}", p.display()),
            DeviceAddr::AfXdp(x) => write!(f, "af_xdp:{}", x.ifname),
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

/// `[device]`: the VF (or the AF_XDP interface), its queues and buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    /// The VF's PCI address, the model, or the AF_XDP interface.
    pub device: DeviceAddr,
    /// The PF's netdev (for steering); required for a PCI device with steering rules.
    pub pf: Option<String>,
    /// RX/TX queue pairs to poll (AF_XDP: one socket on each RX queue `0..queues`).
    pub queues: u16,
    /// RX ring size (descriptors; AF_XDP: the RX and fill rings of each socket).
    pub rx_ring: u16,
    /// TX ring size (descriptors; AF_XDP: the TX and completion rings of each socket).
    pub tx_ring: u16,
    /// Packet buffers in the pool (AF_XDP: UMEM chunks of all sockets together, split evenly).
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

impl DeviceConfig {
    /// The AF_XDP interface, if this is the AF_XDP backend.
    pub fn af_xdp(&self) -> Option<&AfXdpDevice> {
        match &self.device {
            DeviceAddr::AfXdp(x) => Some(x),
            _ => None,
        }
    }

    /// AF_XDP: the UMEM chunk size that holds the largest frame (`mtu` + 14 bytes of Ethernet
    /// header + 4 of one VLAN tag) behind `headroom` and the kernel's 256-byte
    /// `XDP_PACKET_HEADROOM`: 2048, or 4096 for larger MTUs (validation refuses an MTU that
    /// does not fit in 4096).
    pub fn xdp_chunk_size(&self) -> u32 {
        if xdp_frame_room(2048, self.headroom) >= self.mtu + 18 {
            2048
        } else {
            4096
        }
    }

    /// AF_XDP: UMEM chunks of each socket (`pool_size` split evenly over the queues).
    pub fn xdp_frames_per_queue(&self) -> u32 {
        self.pool_size / u32::from(self.queues.max(1))
    }
}

/// Bytes of a UMEM chunk of `chunk` bytes left for the frame behind `headroom` and the
/// kernel's 256-byte `XDP_PACKET_HEADROOM`.
pub fn xdp_frame_room(chunk: u32, headroom: u16) -> u32 {
    chunk.saturating_sub(256 + u32::from(headroom))
}

/// One `[[steering]]` rule is the steering layer's own [`SteeringRule`]: validation builds it
/// directly (`Action::ToVf`, the config's name, masks with 1 = compare, an absent field as mask
/// 0), so what `check-config` validated is exactly what is installed.
pub use crate::steering::{Flow, SteeringRule};

/// One `[[steering]]` rule of the AF_XDP backend is the XDP program generator's own rule
/// ([`floodgate_xdp::XdpRule`], named as in the config): IPv4 and IPv6 flows, each rule with
/// its own masks, matched in file order.
pub use floodgate_xdp::prog::{AddrMatch, Flow as XdpFlow, XdpRule};

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
