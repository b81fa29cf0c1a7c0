//! The AF_XDP backend's data path on a veth pair between two network namespaces: frames arrive
//! as pool `Packet`s without a copy (data at the pool's data offset, headroom in front), dropped
//! packets refill the fill ring, a full fill ring takes only what fits, an exhausted pool makes
//! the kernel drop (counted as missed) and recovers, frames longer than a chunk are dropped and
//! counted, and transmitted packets leave the interface and come back through the completion
//! ring. Needs root; otherwise each test prints one `skipped:` line.

// The xdp crate's test helpers; not all of them are used here.
#[allow(dead_code)]
#[path = "../xdp/tests/common/mod.rs"]
mod common;

use common::{netns_skip_reason, Veth, IP_RX, IP_TX};
use floodgate::backend::af_xdp::{XskBackend, XskConfig};
use floodgate::backend::PacketBackend;
use floodgate_pmd::PacketBatch;
use floodgate_vfio::HugePages;
use floodgate_xdp::bpf::{Link, Map, Program, XdpAttachMode};
use floodgate_xdp::prog::{generate, Flow, GenOptions, XdpRule};
use floodgate_xdp::BindMode;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

macro_rules! need_netns {
    () => {
        if let Some(why) = netns_skip_reason() {
            println!("skipped: {why}");
            return;
        }
    };
}

/// The backend on the receiving end with `udp4 dst port 53` steered into it.
fn open(v: &Veth, buffers: u32, ring: u32) -> (XskBackend, Map, Program, Link) {
    v.enter_rx();
    let mut cfg = XskConfig::new(&v.if_rx, 1);
    cfg.bind = BindMode::Auto;
    cfg.buffers = buffers;
    cfg.rx_ring = ring;
    cfg.tx_ring = ring;
    cfg.huge_pages = HugePages::Never;
    let b = XskBackend::open(&cfg).expect("open backend");
    let map = Map::xskmap("fgt_xsks", 1).unwrap();
    b.register(&map).unwrap();
    let insns = generate(
        &[XdpRule::new(Flow::Udp4).dst_port(53)],
        map.as_fd(),
        GenOptions::default(),
    )
    .unwrap();
    let prog = Program::load_xdp("fgt_steer", &insns).unwrap();
    let link = prog
        .attach_xdp(b.ifindex(), XdpAttachMode::Auto)
        .expect("attach");
    (b, map, prog, link)
}

fn send(v: &Veth, n: usize, len: usize) {
    v.in_tx(move || {
        let s = UdpSocket::bind(SocketAddrV4::new(IP_TX, 0)).unwrap();
        for i in 0..n {
            let mut p = vec![0u8; len];
            p[..4].copy_from_slice(&(i as u32).to_be_bytes());
            s.send_to(&p, SocketAddrV4::new(IP_RX, 53)).unwrap();
        }
    });
}

/// Receives into `batch` until it holds `want` packets or 3 s passed.
fn receive(b: &mut XskBackend, batch: &mut PacketBatch, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while batch.len() < want && Instant::now() < deadline {
        b.poll_rx(0, 20);
        b.rx_burst(0, batch);
    }
}

#[test]
fn frames_become_pool_packets_and_dropped_ones_refill_the_fill_ring() {
    need_netns!();
    let v = Veth::new("p").expect("veth");
    let (mut b, _m, _p, _l) = open(&v, 256, 64);
    // The fill ring holds 64 of the 256 buffers: it is full, the rest stay in the pool.
    assert_eq!(
        b.pool_free(),
        256 - 64,
        "a full fill ring takes only what fits"
    );
    let mut batch = PacketBatch::new(64);
    send(&v, 10, 100);
    receive(&mut b, &mut batch, 10);
    assert_eq!(batch.len(), 10);
    for (i, p) in batch.iter_mut().enumerate() {
        let d = p.data();
        assert_eq!(d.len(), 14 + 20 + 8 + 100);
        assert_eq!(&d[42..46], &(i as u32).to_be_bytes(), "in order, intact");
        assert_eq!(d.as_ptr() as usize % 64, 0, "data on a cache line");
        let h = p.headroom_mut();
        assert_eq!(h.len(), floodgate_pmd::DEFAULT_HEADROOM);
        h.fill(0xee); // ours to write: the kernel never touches it
    }
    // The next burst refilled the ring from the pool: 10 more buffers out of it.
    assert_eq!(b.pool_free(), 256 - 64 - 10);
    batch.clear();
    assert_eq!(
        b.pool_free(),
        256 - 64,
        "dropped packets are back in the pool"
    );
    b.maintain().unwrap();
    assert_eq!(b.rx_errors(), 0);
    assert_eq!(
        b.missed_counter()
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[test]
fn an_exhausted_pool_drops_in_the_kernel_counted_as_missed_then_recovers() {
    need_netns!();
    let v = Veth::new("x").expect("veth");
    // 32 buffers, a 32-entry fill ring: all of them with the kernel, none spare.
    let (mut b, _m, _p, _l) = open(&v, 32, 32);
    assert_eq!(b.pool_free(), 0);
    let mut held = PacketBatch::new(64);
    send(&v, 40, 50);
    receive(&mut b, &mut held, 32);
    std::thread::sleep(Duration::from_millis(100));
    b.rx_burst(0, &mut held);
    assert_eq!(held.len(), 32, "only as many frames as buffers");
    b.maintain().unwrap();
    let missed = b
        .missed_counter()
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(missed, 8, "the kernel dropped what found no buffer");
    held.clear(); // back to the pool, into the fill ring at the next burst
    let mut batch = PacketBatch::new(64);
    b.rx_burst(0, &mut batch);
    send(&v, 5, 50);
    receive(&mut b, &mut batch, 5);
    assert_eq!(batch.len(), 5, "recovers once buffers are back");
}

#[test]
fn frames_longer_than_a_chunk_are_dropped_and_counted() {
    need_netns!();
    let v = Veth::new("l").expect("veth");
    v.set_mtu(3000).unwrap();
    let (mut b, _m, _p, _l) = open(&v, 128, 64);
    // 2048-byte chunks hold 1792 bytes of frame.
    send(&v, 3, 2500);
    send(&v, 2, 1700);
    let mut batch = PacketBatch::new(64);
    receive(&mut b, &mut batch, 2);
    std::thread::sleep(Duration::from_millis(100));
    b.rx_burst(0, &mut batch);
    assert_eq!(batch.len(), 2, "only the frames that fit");
    assert!(batch.iter().all(|p| p.len() == 14 + 20 + 8 + 1700));
    b.maintain().unwrap();
    let missed = b
        .missed_counter()
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        missed, 3,
        "too long for a chunk: dropped by the kernel, counted"
    );
}

#[test]
fn transmitted_packets_leave_and_their_buffers_come_back() {
    need_netns!();
    let v = Veth::new("t").expect("veth");
    let (mut b, _m, _p, _l) = open(&v, 256, 64);
    let ns_tx = v.ns_tx.clone();
    // A socket on the sending side's port 40000 gets what we send back.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let back = std::thread::spawn(move || {
        common::enter_ns(&ns_tx);
        let s = UdpSocket::bind(SocketAddrV4::new(IP_TX, 40000)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        ready_tx.send(()).unwrap();
        let mut got = 0;
        let mut buf = [0u8; 2048];
        while got < 4 {
            match s.recv_from(&mut buf) {
                Ok((n, from)) if n == 64 && from.port() == 53 => got += 1,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        got
    });
    ready_rx.recv().unwrap();
    // Build 4 replies in received packets: swap MACs, addresses and ports, no UDP checksum.
    let mut batch = PacketBatch::new(64);
    v.in_tx(|| {
        let s = UdpSocket::bind(SocketAddrV4::new(IP_TX, 40001)).unwrap();
        for _ in 0..4 {
            s.send_to(&[7u8; 64], SocketAddrV4::new(IP_RX, 53)).unwrap();
        }
    });
    receive(&mut b, &mut batch, 4);
    assert_eq!(batch.len(), 4);
    for p in batch.iter_mut() {
        let f = p.data_mut();
        let (dst, src) = f.split_at_mut(6);
        dst.swap_with_slice(&mut src[..6]);
        let (a, c) = f[26..34].split_at_mut(4);
        a.swap_with_slice(c);
        f[34..36].copy_from_slice(&53u16.to_be_bytes());
        f[36..38].copy_from_slice(&40000u16.to_be_bytes());
        f[40..42].copy_from_slice(&[0, 0]);
    }
    let free_before = b.pool_free();
    let out = b.tx_burst(0, &mut batch);
    assert_eq!((out.sent, out.refused, out.ring_full), (4, 0, 0));
    assert!(batch.is_empty());
    assert_eq!(
        back.join().unwrap(),
        4,
        "all four arrived on the other side"
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while b.tx_outstanding(0) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        b.tx_outstanding(0),
        0,
        "completion ring returned every buffer"
    );
    assert_eq!(b.pool_free(), free_before + 4);
    // Nothing more to complete: an empty completion ring changes nothing.
    assert_eq!(b.tx_outstanding(0), 0);
    assert_eq!(b.pool_free(), free_before + 4);
    // A packet of another pool is refused, not sent.
    let other = floodgate_pmd::Mempool::new(&floodgate_pmd::MempoolConfig {
        buffers: 4,
        huge_pages: HugePages::Never,
        ..Default::default()
    })
    .unwrap();
    let mut p = other.alloc().unwrap();
    p.copy_from_slice(&[0u8; 60]).unwrap();
    batch.push(p).unwrap();
    let out = b.tx_burst(0, &mut batch);
    assert_eq!((out.sent, out.refused), (0, 1));
    assert_eq!(other.available(), 4);
}
