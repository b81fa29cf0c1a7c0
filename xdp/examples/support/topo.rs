//! The network namespaces and veth pairs of the backend benchmark, one set per traffic
//! source, deleted on drop (also when set-up fails half way).
//!
//! - direct: sender namespace —veth— receiver namespace;
//! - routed: sender namespace —veth— router namespace —veth— receiver namespace. The router
//!   runs an `XDP_PASS` program in native mode on its ingress veth, so veth copies every
//!   frame there once into a page-pool page with 256 bytes of headroom; the router then
//!   forwards that skb, which keeps its page-backed head and its headroom, so the receiving
//!   veth can hand it to its own XDP program without copying it again.

use std::net::Ipv4Addr;

use floodgate_xdp::bpf::{Link, Program, XdpAttachMode};
use floodgate_xdp::prog::{Insn, XdpAction};

use crate::support::{enter_netns, ip, napi_threads, pin_pid_to_cpu, set_gro, set_tso, Netns};

/// The receiver's address (both layouts) and MAC address.
pub const IP_RX: Ipv4Addr = Ipv4Addr::new(10, 198, 0, 1);
const MAC_RX: [u8; 6] = [2, 0, 0, 0, 0x53, 1];
/// The sender's address and MAC address on the direct pair (same subnet as the receiver).
const IP_TX: Ipv4Addr = Ipv4Addr::new(10, 198, 0, 2);
const MAC_TX: [u8; 6] = [2, 0, 0, 0, 0x53, 2];
/// The sender's address on the routed layout (its own subnet) and the router's two sides.
const IP_TX_ROUTED: Ipv4Addr = Ipv4Addr::new(10, 198, 1, 2);
const IP_ROUTER_IN: Ipv4Addr = Ipv4Addr::new(10, 198, 1, 1);
const IP_ROUTER_OUT: Ipv4Addr = Ipv4Addr::new(10, 198, 0, 254);
const MAC_ROUTER_IN: [u8; 6] = [2, 0, 0, 0, 0x53, 3];
const MAC_ROUTER_OUT: [u8; 6] = [2, 0, 0, 0, 0x53, 4];

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Runs `f` in a new thread that first enters namespace `ns` (the calling thread stays where
/// it is).
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter_netns(&ns).map_err(|e| format!("setns {ns}: {e}"))?;
        f()
    })
    .join()
    .map_err(|_| "namespace helper thread panicked".to_string())?
}

/// The router of the routed layout.
pub struct Router {
    /// The `XDP_PASS` program on the ingress veth and its link (detached on drop).
    _pass: (Program, Link),
    pub ns: Netns,
    /// Ingress (from the sender) and egress (to the receiver) veths.
    pub if_in: String,
    pub if_out: String,
}

/// Counters of the router's interfaces and IP layer, read from its namespace.
#[derive(Debug, Default, Clone, Copy)]
pub struct RouterCounters {
    /// Frames the ingress veth received.
    pub rx: u64,
    /// `Ip: ForwDatagrams`.
    pub forwarded: u64,
    /// Frames the egress veth sent.
    pub tx: u64,
    /// Frames the egress veth dropped (the receiving veth's 256-entry ring was full).
    pub tx_dropped: u64,
}

impl std::ops::Sub for RouterCounters {
    type Output = RouterCounters;
    fn sub(self, o: RouterCounters) -> RouterCounters {
        RouterCounters {
            rx: self.rx.wrapping_sub(o.rx),
            forwarded: self.forwarded.wrapping_sub(o.forwarded),
            tx: self.tx.wrapping_sub(o.tx),
            tx_dropped: self.tx_dropped.wrapping_sub(o.tx_dropped),
        }
    }
}

impl Router {
    /// Pins the threaded-NAPI kernel threads of the ingress veth to `cpu`; returns their ids.
    pub fn pin_napi(&self, cpu: usize) -> Vec<i32> {
        let pids = napi_threads(&self.if_in);
        for &p in &pids {
            pin_pid_to_cpu(p, cpu);
        }
        pids
    }

    pub fn counters(&self) -> RouterCounters {
        let read = |path: String| -> u64 {
            self.ns
                .exec(&["cat", &path])
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0)
        };
        let stat = |ifn: &str, what: &str| read(format!("/sys/class/net/{ifn}/statistics/{what}"));
        let snmp = self.ns.exec(&["cat", "/proc/net/snmp"]).unwrap_or_default();
        RouterCounters {
            rx: stat(&self.if_in, "rx_packets"),
            forwarded: snmp_value(&snmp, "Ip:", "ForwDatagrams"),
            tx: stat(&self.if_out, "tx_packets"),
            tx_dropped: stat(&self.if_out, "tx_dropped"),
        }
    }
}

/// One value of a `/proc/net/snmp` table (a header line and a value line with `prefix`).
pub fn snmp_value(snmp: &str, prefix: &str, key: &str) -> u64 {
    let mut lines = snmp.lines().filter(|l| l.starts_with(prefix));
    let (Some(h), Some(v)) = (lines.next(), lines.next()) else {
        return 0;
    };
    h.split_whitespace()
        .zip(v.split_whitespace())
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// One layout. Field order is drop order: the router (its XDP link, then its namespace)
/// goes first, then the receiver's and the sender's namespaces, with their veths.
pub struct Topology {
    pub router: Option<Router>,
    pub rx: Netns,
    pub tx: Netns,
    /// The measured veth (in `rx`).
    pub if_rx: String,
    /// The sender's veth (in `tx`).
    pub if_tx: String,
    /// What the sender writes into its frames: its MAC, the next hop's MAC, its address.
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: Ipv4Addr,
}

/// A veth pair `a` (in `na`, MAC `ma`) — `b` (in `nb`, MAC `mb`).
fn veth(a: &str, ma: [u8; 6], na: &Netns, b: &str, mb: [u8; 6], nb: &Netns) -> Result<(), String> {
    let (ma, mb) = (mac_str(ma), mac_str(mb));
    ip(&[
        "link", "add", a, "address", &ma, "netns", &na.name, "type", "veth", "peer", "name", b,
        "address", &mb, "netns", &nb.name,
    ])?;
    Ok(())
}

fn addr_up(ns: &Netns, ifn: &str, addr: Ipv4Addr) -> Result<(), String> {
    ns.exec(&["ip", "addr", "add", &format!("{addr}/24"), "dev", ifn])?;
    ns.exec(&["ip", "link", "set", ifn, "up"])?;
    Ok(())
}

fn no_rp_filter(ns: &Netns) -> Result<(), String> {
    ns.exec(&[
        "sysctl",
        "-qw",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
    ])?;
    Ok(())
}

/// Threaded NAPI on `ifn` in `ns`, with GRO on first: veth has NAPI instances (and the kernel
/// accepts threaded NAPI) only with GRO or an XDP program.
fn threaded_napi(ns: &Netns, ifn: &str) -> Result<(), String> {
    let i = ifn.to_string();
    in_netns(&ns.name, move || set_gro(&i, true))?;
    ns.exec(&[
        "sh",
        "-c",
        &format!("echo 1 > /sys/class/net/{ifn}/threaded"),
    ])?;
    Ok(())
}

fn tso_off(ns: &Netns, ifn: &str) -> Result<(), String> {
    let i = ifn.to_string();
    in_netns(&ns.name, move || set_tso(&i, false))
}

impl Topology {
    /// Sender and receiver on one veth pair. `tag` keeps the names of this layout apart from
    /// another one's whose namespaces the kernel may still be tearing down.
    pub fn direct(tag: &str, threaded: bool) -> Result<Topology, String> {
        let pid = std::process::id() % 100_000;
        let rx = Netns::create(&format!("fgb-{pid}-{tag}-rx"))?;
        let tx = Netns::create(&format!("fgb-{pid}-{tag}-tx"))?;
        let (if_rx, if_tx) = (format!("fgb{tag}r{pid}"), format!("fgb{tag}t{pid}"));
        veth(&if_rx, MAC_RX, &rx, &if_tx, MAC_TX, &tx)?;
        addr_up(&rx, &if_rx, IP_RX)?;
        addr_up(&tx, &if_tx, IP_TX)?;
        no_rp_filter(&rx)?;
        no_rp_filter(&tx)?;
        if threaded {
            // The receiving veth's NAPI (the XDP program and the copy into the UMEM, or the
            // IP/UDP stack and the packet-socket copy) in a kernel thread that the benchmark
            // pins to the receiver's CPU; TSO off on the sender, else veth hands plain
            // datagrams to the backlog instead of the peer's NAPI.
            threaded_napi(&rx, &if_rx)?;
            tso_off(&tx, &if_tx)?;
        }
        Ok(Topology {
            router: None,
            rx,
            tx,
            if_rx,
            if_tx,
            src_mac: MAC_TX,
            dst_mac: MAC_RX,
            src_ip: IP_TX,
        })
    }

    /// Sender, router and receiver; the router's ingress NAPI thread is pinned to `tx_cpu`
    /// (with the sender) by [`Router::pin_napi`], which the caller runs before each phase.
    pub fn routed(tag: &str, threaded: bool) -> Result<Topology, String> {
        let pid = std::process::id() % 100_000;
        let rx = Netns::create(&format!("fgb-{pid}-{tag}-rx"))?;
        let tx = Netns::create(&format!("fgb-{pid}-{tag}-tx"))?;
        let rt = Netns::create(&format!("fgb-{pid}-{tag}-rt"))?;
        let (if_rx, if_tx) = (format!("fgb{tag}r{pid}"), format!("fgb{tag}t{pid}"));
        let (if_in, if_out) = (format!("fgb{tag}i{pid}"), format!("fgb{tag}o{pid}"));
        veth(&if_tx, MAC_TX, &tx, &if_in, MAC_ROUTER_IN, &rt)?;
        veth(&if_out, MAC_ROUTER_OUT, &rt, &if_rx, MAC_RX, &rx)?;
        addr_up(&tx, &if_tx, IP_TX_ROUTED)?;
        addr_up(&rt, &if_in, IP_ROUTER_IN)?;
        addr_up(&rt, &if_out, IP_ROUTER_OUT)?;
        addr_up(&rx, &if_rx, IP_RX)?;
        for ns in [&rx, &tx, &rt] {
            no_rp_filter(ns)?;
        }
        rt.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        // Static neighbours: no ARP in the measurement (the sender's frames already carry the
        // router's MAC address; the receiver's ICMP errors go back through the router).
        let permanent = |ns: &Netns, addr: Ipv4Addr, mac: [u8; 6], dev: &str| {
            ns.exec(&[
                "ip",
                "neigh",
                "replace",
                &addr.to_string(),
                "lladdr",
                &mac_str(mac),
                "dev",
                dev,
                "nud",
                "permanent",
            ])
        };
        permanent(&rt, IP_RX, MAC_RX, &if_out)?;
        permanent(&rt, IP_TX_ROUTED, MAC_TX, &if_in)?;
        permanent(&rx, IP_ROUTER_OUT, MAC_ROUTER_OUT, &if_rx)?;
        permanent(&tx, IP_ROUTER_IN, MAC_ROUTER_IN, &if_tx)?;
        rx.exec(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &IP_ROUTER_OUT.to_string(),
        ])?;
        tx.exec(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &IP_ROUTER_IN.to_string(),
        ])?;
        if threaded {
            threaded_napi(&rx, &if_rx)?;
            threaded_napi(&rt, &if_in)?;
        }
        // TSO off on both veths that feed a NAPI ring (see `direct`).
        tso_off(&tx, &if_tx)?;
        tso_off(&rt, &if_out)?;
        // The router's XDP_PASS program, native: veth converts every skb it receives into an
        // XDP buffer in a page-pool page (the one copy of the routed path) and builds the
        // forwarded skb on that page.
        let i = if_in.clone();
        let pass = in_netns(&rt.name, move || {
            let ifindex = floodgate_xdp::ifindex(&i).ok_or_else(|| format!("no interface {i}"))?;
            let prog = Program::load_xdp(
                "fgb_pass",
                &[Insn::mov64_imm(0, XdpAction::Pass as i32), Insn::exit()],
            )
            .map_err(|e| format!("load XDP_PASS program: {e}"))?;
            let link = prog
                .attach_xdp(ifindex, XdpAttachMode::Native)
                .map_err(|e| format!("native XDP attach on {i}: {e}"))?;
            Ok((prog, link))
        })?;
        Ok(Topology {
            router: Some(Router {
                _pass: pass,
                ns: rt,
                if_in,
                if_out,
            }),
            rx,
            tx,
            if_rx,
            if_tx,
            src_mac: MAC_TX,
            dst_mac: MAC_ROUTER_IN,
            src_ip: IP_TX_ROUTED,
        })
    }
}
