//! Frame builders and privilege checks shared by the integration tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Returns `Some(reason)` if this process cannot use bpf(2) (not root, or bpf(2) refused, for
/// example by a container's seccomp policy).
pub fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (CAP_BPF, CAP_NET_ADMIN) for bpf(2)".into());
    }
    use floodgate_xdp::bpf::{Map, MapType};
    if let Err(e) = Map::create(MapType::Array, "fgx_probe", 4, 4, 1) {
        return Some(format!("bpf(2) is not usable here: {e}"));
    }
    None
}

/// A frame: Ethernet (optional 802.1Q tag) + IPv4/IPv6 + L4 header (UDP 8 bytes, TCP 20
/// bytes, other protocols: 8 zero bytes) + payload.
pub fn frame(
    vlan: Option<u16>,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    if let Some(id) = vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
    }
    let mut l4 = Vec::new();
    l4.extend_from_slice(&sport.to_be_bytes());
    l4.extend_from_slice(&dport.to_be_bytes());
    match proto {
        17 => {
            l4.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
        }
        6 => {
            l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        }
        _ => l4.extend_from_slice(&[0, 0, 0, 0]),
    }
    l4.extend_from_slice(payload);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let total = (20 + l4.len()) as u16;
            let mut ip = vec![0x45, 0];
            ip.extend_from_slice(&total.to_be_bytes());
            ip.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let c = checksum(&ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            f.extend_from_slice(&[proto, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed address families"),
    }
    f.extend_from_slice(&l4);
    f
}

/// RFC 1071 checksum.
pub fn checksum(b: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in b.chunks(2) {
        s += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

pub fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

pub fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
}

/// Two network namespaces joined by a veth pair: `if_rx` (10.199.0.1, MAC 02:00:00:00:01:01)
/// in `ns_rx`, `if_tx` (10.199.0.2, MAC 02:00:00:00:01:02) in `ns_tx`, static neighbours both
/// ways. Both namespaces (and so the pair) are deleted on drop, also when a test fails.
pub struct Veth {
    pub ns_rx: String,
    pub ns_tx: String,
    pub if_rx: String,
    pub if_tx: String,
}

pub const IP_RX: Ipv4Addr = Ipv4Addr::new(10, 199, 0, 1);
pub const IP_TX: Ipv4Addr = Ipv4Addr::new(10, 199, 0, 2);
pub const MAC_RX: [u8; 6] = [2, 0, 0, 0, 1, 1];
pub const MAC_TX: [u8; 6] = [2, 0, 0, 0, 1, 2];

pub fn ip(args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Veth {
    /// Creates the pair; `tag` (1-3 chars) keeps names unique between tests of one process.
    pub fn new(tag: &str) -> Result<Veth, String> {
        let pid = std::process::id() % 100_000;
        let v = Veth {
            ns_rx: format!("fgx-{pid}-{tag}-r"),
            ns_tx: format!("fgx-{pid}-{tag}-t"),
            if_rx: format!("fxr{pid}{tag}"),
            if_tx: format!("fxt{pid}{tag}"),
        };
        ip(&["netns", "add", &v.ns_rx])?;
        // From here on, Drop cleans up whatever exists.
        ip(&["netns", "add", &v.ns_tx])?;
        ip(&[
            "link",
            "add",
            &v.if_rx,
            "address",
            "02:00:00:00:01:01",
            "netns",
            &v.ns_rx,
            "type",
            "veth",
            "peer",
            "name",
            &v.if_tx,
            "address",
            "02:00:00:00:01:02",
            "netns",
            &v.ns_tx,
        ])?;
        for (ns, ifn, me, peer, peer_mac) in [
            (&v.ns_rx, &v.if_rx, IP_RX, IP_TX, "02:00:00:00:01:02"),
            (&v.ns_tx, &v.if_tx, IP_TX, IP_RX, "02:00:00:00:01:01"),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{me}/24"), "dev", ifn])?;
            ip(&["-n", ns, "link", "set", ifn, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                ns,
                "neigh",
                "replace",
                &peer.to_string(),
                "lladdr",
                peer_mac,
                "dev",
                ifn,
                "nud",
                "permanent",
            ])?;
        }
        Ok(v)
    }

    /// Sets the MTU of both ends.
    pub fn set_mtu(&self, mtu: u32) -> Result<(), String> {
        let m = mtu.to_string();
        ip(&["-n", &self.ns_rx, "link", "set", &self.if_rx, "mtu", &m])?;
        ip(&["-n", &self.ns_tx, "link", "set", &self.if_tx, "mtu", &m])?;
        Ok(())
    }

    /// Moves the calling thread into the receiving namespace.
    pub fn enter_rx(&self) {
        enter_ns(&self.ns_rx);
    }

    /// Runs `f` on a thread inside the sending namespace.
    pub fn in_tx<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let ns = self.ns_tx.clone();
        std::thread::spawn(move || {
            enter_ns(&ns);
            f()
        })
        .join()
        .expect("sender thread")
    }

    /// `ip -d link show` of the receiving end.
    pub fn rx_link(&self) -> String {
        ip(&["-n", &self.ns_rx, "-d", "link", "show", "dev", &self.if_rx]).unwrap_or_default()
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.ns_rx]);
        let _ = ip(&["netns", "del", &self.ns_tx]);
    }
}

/// Moves the calling thread into network namespace `name` (`/run/netns/<name>`).
pub fn enter_ns(name: &str) {
    let f = std::fs::File::open(format!("/run/netns/{name}")).expect("open netns");
    use std::os::fd::AsRawFd;
    // SAFETY: setns on a valid namespace fd affects only the calling thread's network
    // namespace.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns {name}: {}", std::io::Error::last_os_error());
}

/// Returns `Some(reason)` if veth pairs in namespaces cannot be made here.
pub fn netns_skip_reason() -> Option<String> {
    if let Some(r) = skip_reason() {
        return Some(r);
    }
    if std::process::Command::new("ip").arg("-V").output().is_err() {
        return Some("the ip command (iproute2) is missing".into());
    }
    None
}
