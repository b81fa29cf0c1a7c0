//! Wire ports on real interfaces: AF_PACKET on a veth pair and a TAP kernel side, inside a
//! private network namespace each test creates. Without root (or without namespaces) each test
//! prints exactly one line "skipped: <why>".
//!
//! Polling for frames is bounded by FLOODGATE_WIRE_TIMEOUT_MS (default 2000 ms); nothing is
//! timed, the bound only keeps a broken setup from hanging the suite.

pub mod vfdrv;

use std::process::Command;
use std::time::{Duration, Instant};

use floodgate_sim::ethtool::{FlowType, RxFlowSpec};
use floodgate_sim::fdir::PoolLayout;
use floodgate_sim::generator::build_udp4;
use floodgate_sim::generator::{Generator, GeneratorConfig, Rate, TrafficClass, MAX_GEN_FRAME};
use floodgate_sim::l2::PoolConfig;
use floodgate_sim::regs::*;
use floodgate_sim::switch::{Ingress, KernelSide, Switch, Target};
use floodgate_sim::wire::{PacketSocket, TapDevice, WireError};
use floodgate_sim::NicModel;
use floodgate_sim::WirePort;
use floodgate_vfio::{Bar, Device};

/// Local experimental EtherType: our test frames, never host chatter.
const TEST_ETHERTYPE: [u8; 2] = [0x88, 0xB5];

fn timeout() -> Duration {
    let ms = std::env::var("FLOODGATE_WIRE_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    Duration::from_millis(ms)
}

/// Runs `f` on a thread that lives in a fresh network namespace, or returns why it cannot.
fn in_netns<F: FnOnce() + Send + 'static>(f: F) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(
            "needs root (CAP_NET_ADMIN) to create a network namespace and interfaces".into(),
        );
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Err("the `ip` tool (iproute2) is not installed".into());
    }
    let h = std::thread::spawn(move || -> Result<(), String> {
        // SAFETY: unshare(CLONE_NEWNET) only changes this thread's network namespace; the
        // thread exits when the test body is done, freeing the namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(format!(
                "cannot create a network namespace: {}",
                std::io::Error::last_os_error()
            ));
        }
        f();
        Ok(())
    });
    match h.join() {
        Ok(r) => r,
        Err(p) => std::panic::resume_unwind(p),
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn veth(a: &str, b: &str) {
    ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
    ip(&["link", "set", a, "up"]);
    ip(&["link", "set", b, "up"]);
}

fn test_frame(marker: u8) -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0xB0, 0x0B]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0xA0, 0x0A]);
    f[12..14].copy_from_slice(&TEST_ETHERTYPE);
    f[14] = marker;
    f
}

/// Polls `recv` until a frame with the test EtherType arrives.
fn wait_for(
    mut recv: impl FnMut(&mut [u8]) -> Result<Option<usize>, WireError>,
) -> Option<Vec<u8>> {
    let deadline = Instant::now() + timeout();
    let mut buf = vec![0u8; 2048];
    while Instant::now() < deadline {
        match recv(&mut buf).expect("recv") {
            Some(n) if n >= 14 && buf[12..14] == TEST_ETHERTYPE => return Some(buf[..n].to_vec()),
            Some(_) => {}
            None => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    None
}

fn report(r: Result<(), String>) {
    if let Err(why) = r {
        println!("skipped: {why}");
    }
}

#[test]
fn veth_pair_carries_frames_both_ways() {
    report(in_netns(|| {
        veth("fgwa", "fgwb");
        let a = PacketSocket::open("fgwa").unwrap();
        let b = PacketSocket::open("fgwb").unwrap();
        assert_eq!(a.ifname(), "fgwa");
        assert!(a.ifindex() > 0);
        a.send_frame(&test_frame(1)).unwrap();
        assert_eq!(wait_for(|buf| b.recv_frame(buf)), Some(test_frame(1)));
        b.send_frame(&test_frame(2)).unwrap();
        assert_eq!(wait_for(|buf| a.recv_frame(buf)), Some(test_frame(2)));
        // A sender does not read back its own transmissions.
        assert_eq!(a.recv_frame(&mut [0u8; 2048]).unwrap(), None);
    }));
}

#[test]
fn missing_interface_is_a_clear_error() {
    report(in_netns(|| {
        let e = PacketSocket::open("fg-nope").unwrap_err();
        assert!(matches!(e, WireError::NoSuchInterface(_)), "{e}");
        let e = PacketSocket::open("this-name-is-too-long").unwrap_err();
        assert!(matches!(e, WireError::BadName(_)), "{e}");
    }));
}

#[test]
fn generator_through_veth_into_the_switch() {
    report(in_netns(|| {
        veth("fgga", "fggb");
        let tx = PacketSocket::open("fgga").unwrap();
        let rx = PacketSocket::open("fggb").unwrap();
        let mut sw = Switch::new(PoolLayout::new(2, 4).unwrap());
        sw.set_pool(0, PoolConfig::vf_default([2, 0, 0, 0, 0, 0x10]))
            .unwrap();
        sw.ethtool_add_ntuple(
            &RxFlowSpec::new(FlowType::UdpV4)
                .dst_port(53)
                .to_vf(0, 0)
                .at(0),
        )
        .unwrap();
        let mut g = Generator::new(GeneratorConfig {
            rate: Rate::MaxSpeed,
            ..Default::default()
        })
        .unwrap();
        let mut buf = vec![0u8; MAX_GEN_FRAME];
        let mut sent = Vec::new();
        for _ in 0..200 {
            let f = g.next_into(&mut buf).unwrap();
            tx.send_frame(&buf[..f.len]).unwrap();
            sent.push((f.class, buf[..f.len].to_vec()));
        }
        // Receive them (IPv4 frames only; veth may add IPv6 chatter) in order.
        let deadline = Instant::now() + timeout();
        let mut got = 0;
        let mut rbuf = vec![0u8; 2048];
        while got < sent.len() && Instant::now() < deadline {
            let Some(n) = rx.recv_frame(&mut rbuf).unwrap() else {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            };
            if rbuf[12..14] != [0x08, 0x00] {
                continue;
            }
            let (class, want) = &sent[got];
            assert_eq!(&rbuf[..n], &want[..], "frame {got}");
            let c = sw.classify(&rbuf[..n], Ingress::Wire);
            let d = c.destinations()[0];
            match class {
                TrafficClass::Flood | TrafficClass::Legit => assert_eq!(d.target, Target::Vf(0)),
                TrafficClass::Background => assert_eq!(d.target, Target::Pf),
            }
            got += 1;
        }
        assert_eq!(
            got,
            sent.len(),
            "only {got} of {} frames came through",
            sent.len()
        );
    }));
}

#[test]
fn tap_kernel_side_reaches_the_host_stack() {
    report(in_netns(|| {
        let tap = TapDevice::open("fgtap0").unwrap();
        assert_eq!(tap.name(), "fgtap0");
        tap.set_up().unwrap();
        let host = PacketSocket::open("fgtap0").unwrap();
        // Host -> TAP fd.
        host.send_frame(&test_frame(3)).unwrap();
        assert_eq!(wait_for(|b| tap.read_frame(b)), Some(test_frame(3)));
        // Kernel side -> host: the frame arrives on the interface.
        let mut k = KernelSide::tap(tap);
        k.deliver(&test_frame(4));
        assert_eq!(k.frames(), 1);
        assert_eq!(wait_for(|b| host.recv_frame(b)), Some(test_frame(4)));
    }));
}

#[test]
fn model_wire_port_on_a_veth_talks_to_real_sockets() {
    report(in_netns(|| {
        veth("fgma", "fgmb");
        let tool = PacketSocket::open("fgmb").unwrap();
        let nic = vfdrv::nic(NicModel::X82599, 2);
        let mut port = WirePort::attach(&nic, "fgma").unwrap();
        assert_eq!(port.ifname(), "fgma");
        let vf = nic.vf(0);
        let bar = vf.bar0();
        let reset = vfdrv::MbxVf::new(&vf).bring_up();
        let mut vf_mac = [0u8; 6];
        vf_mac[..4].copy_from_slice(&reset[1].to_le_bytes());
        vf_mac[4..].copy_from_slice(&reset[2].to_le_bytes()[..2]);
        let rings = vfdrv::Rings::new(&vf, 64);
        rings.setup_rx(&bar, 1, SRRCTL_DROP_EN | 2, 63);
        rings.setup_tx(&bar, 0);
        nic.pf()
            .add_ntuple(
                &RxFlowSpec::new(FlowType::UdpV4)
                    .dst_port(53)
                    .to_vf(0, 1)
                    .at(1),
            )
            .unwrap();
        // A "real tool" sends a DNS query to the PF's MAC through the veth.
        let pf_mac = nic.pf().pools().pf.mac;
        let mut q = [0u8; 128];
        let n = build_udp4(
            &mut q,
            pf_mac,
            [2, 0xEE, 0, 0, 0, 1],
            [192, 0, 2, 10],
            [10, 0, 0, 1],
            4444,
            53,
            b"query",
        )
        .unwrap();
        tool.send_frame(&q[..n]).unwrap();
        let deadline = Instant::now() + timeout();
        while port.injected == 0 && Instant::now() < deadline {
            if port.poll(&nic, 64).unwrap() == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        nic.step();
        // The query is in VF 0's queue 1 (flow director).
        let (_, dw1, st, len) = rings.rx_wb(1, 0);
        assert_eq!(st & RXD_STAT_DD, RXD_STAT_DD);
        assert_eq!(dw1 & 0xFFFF, 1);
        assert_eq!(
            rings.read(rings.rx_buf(0), (len & 0xFFFF) as usize),
            q[..n].to_vec()
        );
        // VF 0 answers; the frame leaves through the veth and the tool receives it.
        let mut reply = [0u8; 128];
        let m = build_udp4(
            &mut reply,
            [2, 0xEE, 0, 0, 0, 1],
            vf_mac,
            [10, 0, 0, 1],
            [192, 0, 2, 10],
            53,
            4444,
            b"answer",
        )
        .unwrap();
        rings.write(rings.tx_buf(0), &reply[..m]);
        rings.tx_data(0, 0, rings.tx_buf(0), m as u32, true, true);
        bar.write32(txq(0, TDT), 1);
        nic.step();
        let deadline = Instant::now() + timeout();
        let mut got = None;
        let mut b = vec![0u8; 2048];
        while got.is_none() && Instant::now() < deadline {
            match tool.recv_frame(&mut b).unwrap() {
                Some(k) if b[..k] == reply[..m] => got = Some(k),
                Some(_) => {}
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        assert_eq!(got, Some(m), "the VF's reply did not reach the veth peer");
        assert_eq!(nic.stats().egress, 1);
    }));
}
