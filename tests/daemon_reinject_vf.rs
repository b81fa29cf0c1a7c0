//! `[reinject] to = "vf"` end to end on the NIC model, stepped (no threads, no clocks): the
//! flow director steers UDP/53 into VF 0, the filter loop drops the flood and transmits every
//! legitimate query back out of the VF, zero copy, with the MAC rewrites; the model's switch
//! puts them on the wire (next hop) or loops them back (PF), where they are compared with what
//! was sent.

use floodgate::config::Config;
use floodgate::daemon::filterloop::{FilterLoop, LoopError, LoopOptions, TxBack};
use floodgate::sink::CountingSink;
use floodgate::softrss::RssConfig;
use floodgate_pmd::{IxgbeVf, Timeouts};
use floodgate_sim::ethtool::{FlowType, RxFlowSpec};
use floodgate_sim::generator::build_udp4;
use floodgate_sim::{Nic, NicConfig, SimVf};

const RULES: &str = r#"
[device]
pci = "sim"
[filter]
default = "pass"
[[filter.rule]]
name = "known"
action = "pass"
proto = "udp"
dst_port = 53
src = ["192.0.2.10/32", "192.0.2.11/32"]
[[filter.rule]]
name = "flood"
action = "drop"
proto = "udp"
dst_port = 53
"#;

/// The next hop survivors are sent to (a router on the wire, unknown to the NIC).
const NEXT_HOP: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x01, 0x01];
/// The upstream router the traffic arrives from.
const UPSTREAM: [u8; 6] = [0x02, 0x99, 0x00, 0x00, 0x00, 0x01];

/// A model with UDP/53 steered into VF 0 queue 0, and VF 0 up with a `tx_ring`-entry TX ring.
fn setup(tx_ring: usize) -> (Nic, IxgbeVf<SimVf>) {
    let nic = Nic::new(NicConfig::default());
    nic.pf()
        .add_ntuple(&RxFlowSpec::new(FlowType::UdpV4).dst_port(53).to_vf(0, 0))
        .unwrap();
    let vf = IxgbeVf::open(
        nic.vf(0),
        floodgate_pmd::Config {
            timeouts: Timeouts::fast(),
            rx_ring_size: 1024,
            tx_ring_size: tx_ring,
            pool_buffers: Some(4096),
            max_queues: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    (nic, vf)
}

/// Inline, survivors back out of the VF as `tx` says.
fn vf_tx(tx: TxBack) -> LoopOptions<CountingSink> {
    LoopOptions {
        tx: Some(tx),
        ..LoopOptions::inline(32, CountingSink::default())
    }
}

fn rules() -> floodgate::filter::RuleSet {
    Config::from_str_named(RULES, "t.toml")
        .unwrap()
        .filter
        .ruleset()
}

/// A UDP frame from the wire, addressed to the PF's MAC; `seq` makes every payload unique.
fn frame(nic: &Nic, src: [u8; 4], dport: u16, seq: u32) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let mut payload = [0u8; 40];
    payload[..4].copy_from_slice(&seq.to_be_bytes());
    payload[4..].fill(0x5a);
    let n = build_udp4(
        &mut buf,
        nic.config().pf_mac,
        UPSTREAM,
        src,
        [10, 0, 0, 53],
        1024 + (seq % 5000) as u16,
        dport,
        &payload,
    )
    .unwrap();
    buf[..n].to_vec()
}

/// Injects `legit` queries from the known clients among `flood` others and `background`
/// non-DNS frames; returns the legitimate frames in order.
fn inject_mix(nic: &Nic, flood: u32, legit: u32, background: u32) -> Vec<Vec<u8>> {
    let mut sent = Vec::new();
    let total = flood + legit + background;
    let (mut f, mut l, mut b) = (0, 0, 0);
    for i in 0..total {
        // Interleave the three kinds.
        let kind = i % 3;
        if kind == 0 && l < legit {
            let fr = frame(nic, [192, 0, 2, 10 + (l % 2) as u8], 53, i);
            nic.inject(&fr);
            sent.push(fr);
            l += 1;
        } else if kind == 1 && b < background {
            nic.inject(&frame(nic, [192, 0, 2, 10], 80, i));
            b += 1;
        } else if f < flood {
            nic.inject(&frame(nic, [198, 18, (i >> 8) as u8, i as u8], 53, i));
            f += 1;
        } else if l < legit {
            let fr = frame(nic, [192, 0, 2, 10 + (l % 2) as u8], 53, i);
            nic.inject(&fr);
            sent.push(fr);
            l += 1;
        } else {
            nic.inject(&frame(nic, [192, 0, 2, 10], 80, i));
            b += 1;
        }
    }
    assert_eq!((f, l, b), (flood, legit, background));
    sent
}

/// Steps the model and polls the loop until neither moves a frame (bounded, not timed).
fn settle(nic: &Nic, fl: &mut FilterLoop<IxgbeVf<SimVf>, CountingSink>) {
    for _ in 0..10_000 {
        let a = nic.step();
        let b = fl.poll(0);
        if a == 0 && b == 0 {
            return;
        }
    }
    panic!(
        "the model and the loop never went quiet: {:?}",
        fl.counters()
    );
}

/// Every survivor left as sent, except the two rewritten MACs.
fn assert_byte_exact(sent: &[Vec<u8>], got: &[Vec<u8>], dst: [u8; 6], src: [u8; 6]) {
    assert_eq!(got.len(), sent.len(), "one frame out per legitimate query");
    for (i, (s, g)) in sent.iter().zip(got).enumerate() {
        assert_eq!(g.len(), s.len(), "frame {i}: length");
        assert_eq!(g[..6], dst, "frame {i}: destination MAC rewritten");
        assert_eq!(g[6..12], src, "frame {i}: source MAC rewritten");
        assert_eq!(
            g[12..],
            s[12..],
            "frame {i}: everything after the MACs untouched"
        );
    }
}

#[test]
fn every_legit_query_leaves_the_vf_for_the_next_hop_byte_exact_except_the_macs() {
    let (nic, vf) = setup(512);
    let vf_mac = vf.mac();
    let tx = TxBack::new(vf_mac, 0, true, Some(NEXT_HOP));
    let mut fl = FilterLoop::new(vf, rules(), vf_tx(tx)).unwrap();
    let sent = inject_mix(&nic, 300, 60, 30);
    settle(&nic, &mut fl);

    let c = fl.counters();
    assert!(c.invariant_holds(), "{c:?}");
    assert_eq!((c.rx_packets, c.dropped, c.passed), (360, 300, 60), "{c:?}");
    assert_eq!((c.vf_tx, c.vf_tx_dropped, c.looped), (60, 0, 0), "{c:?}");
    assert_eq!((c.tap, c.tap_dropped), (0, 0), "nothing went to the sink");
    assert_eq!(fl.sinks()[0].packets, 0);
    let egress = nic.take_egress();
    assert_byte_exact(&sent, &egress, NEXT_HOP, vf_mac);
    let s = nic.stats();
    assert_eq!(
        s.tx_spoofed, 0,
        "the VF's own source MAC passes anti-spoofing"
    );
    assert_eq!(s.pf_delivered, 30, "only the background reached the PF");
    assert_eq!(s.loopback, 0);
}

#[test]
fn a_full_tx_ring_pushes_back_and_every_refusal_is_counted() {
    let (nic, vf) = setup(64);
    let vf_mac = vf.mac();
    let tx = TxBack::new(vf_mac, 0, true, Some(NEXT_HOP));
    let mut fl = FilterLoop::new(vf, rules(), vf_tx(tx)).unwrap();
    // The NIC stops fetching TX descriptors: the 64-entry ring fills and pushes back.
    nic.stall_tx(0, 0, true).unwrap();
    let sent = inject_mix(&nic, 0, 200, 0);
    settle(&nic, &mut fl);
    let c = fl.counters();
    assert!(c.invariant_holds(), "{c:?}");
    assert_eq!(c.passed, 200, "{c:?}");
    assert_eq!(c.vf_tx + c.vf_tx_dropped, 200, "{c:?}");
    assert!(c.vf_tx_dropped >= 200 - 64, "ring full: {c:?}");
    assert!(c.vf_tx > 0 && c.vf_tx <= 64, "{c:?}");
    assert!(
        nic.take_egress().is_empty(),
        "nothing fetched while stalled"
    );
    // The driver saw the same push-back.
    let st = fl.backend_mut().stats();
    assert_eq!(st.tx.ring_full, c.vf_tx_dropped, "{st:?}");
    // Resumed, the NIC sends exactly what the ring took: the first vf_tx queries, in order.
    nic.stall_tx(0, 0, false).unwrap();
    settle(&nic, &mut fl);
    let egress = nic.take_egress();
    assert_byte_exact(&sent[..c.vf_tx as usize], &egress, NEXT_HOP, vf_mac);
    assert_eq!(fl.counters(), c, "no packet counted twice");
    // The refused buffers went back: the pool still feeds the RX ring.
    let more = inject_mix(&nic, 0, 10, 0);
    settle(&nic, &mut fl);
    assert_byte_exact(&more, &nic.take_egress(), NEXT_HOP, vf_mac);
}

#[test]
fn survivors_sent_to_the_pf_loop_back_into_the_vf_and_the_guard_catches_them() {
    // The model applies the flow director to frames its switch loops back from a VF (whether
    // the 82599 does is not verified, facts §9): a survivor addressed to the PF comes back into
    // VF 0 through the UDP/53 rule. Without the guard it would circulate forever.
    let (nic, vf) = setup(512);
    let vf_mac = vf.mac();
    let pf_mac = nic.config().pf_mac;
    let tx = TxBack::new(vf_mac, 0, true, Some(pf_mac));
    let mut fl = FilterLoop::new(vf, rules(), vf_tx(tx)).unwrap();
    inject_mix(&nic, 30, 20, 0);
    settle(&nic, &mut fl);
    let c = fl.counters();
    assert!(c.invariant_holds(), "{c:?}");
    assert_eq!(c.vf_tx, 20, "{c:?}");
    assert_eq!(
        c.looped, 20,
        "each survivor came back once and was caught: {c:?}"
    );
    assert_eq!(c.rx_packets, 30 + 20 + 20, "{c:?}");
    assert_eq!(c.dropped, 30 + 20, "{c:?}");
    assert_eq!(c.passed, 20, "{c:?}");
    let s = nic.stats();
    assert_eq!(s.loopback, 20, "{s:?}");
    assert_eq!(
        s.pf_delivered, 0,
        "the flow director won over the PF's MAC: {s:?}"
    );
    assert_eq!(s.egress, 0);
    // The rules never saw the looped copies.
    let rc = fl.rule_counters();
    assert_eq!((rc.rules[0].hits, rc.rules[1].hits), (20, 30));
    // maintain() reports the loop (logged once) without failing.
    fl.maintain().unwrap();
}

#[test]
fn a_kept_source_mac_is_dropped_by_the_pfs_anti_spoofing_unless_spoofchk_is_off() {
    let (nic, vf) = setup(512);
    let tx = TxBack::new(vf.mac(), 0, false, Some(NEXT_HOP));
    assert_eq!(tx.loop_guard, None, "no rewrite, no guard");
    let mut fl = FilterLoop::new(vf, rules(), vf_tx(tx)).unwrap();
    inject_mix(&nic, 10, 15, 0);
    settle(&nic, &mut fl);
    let c = fl.counters();
    assert_eq!(c.vf_tx, 15, "{c:?}");
    assert_eq!(
        nic.stats().tx_spoofed,
        15,
        "facts §4.1: spoofchk is on by default"
    );
    assert!(nic.take_egress().is_empty());
    // `ip link set <pf> vf 0 spoofchk off`: the frames leave with their original source MAC.
    nic.pf().set_vf_spoofchk(0, false).unwrap();
    let sent = inject_mix(&nic, 10, 15, 0);
    settle(&nic, &mut fl);
    assert_byte_exact(&sent, &nic.take_egress(), NEXT_HOP, UPSTREAM);
    assert!(fl.counters().invariant_holds());
}

#[test]
fn workers_hand_survivors_back_and_the_polling_thread_transmits_them() {
    let (nic, vf) = setup(512);
    let vf_mac = vf.mac();
    let tx = TxBack::new(vf_mac, 0, true, Some(NEXT_HOP));
    let sinks = vec![CountingSink::default(), CountingSink::default()];
    let opts = LoopOptions {
        tx: Some(tx),
        rss: Some(RssConfig::default()),
        ring_capacity: 1024,
        ..LoopOptions::new(32, sinks)
    };
    let mut fl = FilterLoop::new(vf, rules(), opts).unwrap();
    let sent = inject_mix(&nic, 400, 100, 20);
    // Poll until every packet was judged and every survivor transmitted (bounded, not timed).
    let mut done = false;
    for _ in 0..2_000_000 {
        nic.step();
        fl.poll(0);
        let c = fl.counters();
        if c.rx_packets == 500 && c.in_flight == 0 && c.vf_tx + c.vf_tx_dropped == 100 {
            done = true;
            break;
        }
        std::thread::yield_now();
    }
    assert!(done, "workers never finished: {:?}", fl.counters());
    fl.finish();
    settle(&nic, &mut fl);
    let c = fl.counters();
    assert!(c.invariant_holds(), "{c:?}");
    assert_eq!((c.dropped, c.passed, c.vf_tx), (400, 100, 100), "{c:?}");
    let reports = fl.worker_reports();
    assert_eq!(reports.len(), 2);
    let handed: u64 = reports.iter().map(|r| r.handed_back).sum();
    let passed: u64 = reports.iter().map(|r| r.counters.passed).sum();
    assert_eq!((handed, passed), (100, 100));
    // The workers judged with the dispatcher's headroom record, never parsing a frame again.
    let rx: u64 = reports.iter().map(|r| r.rx_packets).sum();
    let reparsed: u64 = reports.iter().map(|r| r.reparsed).sum();
    assert_eq!((rx, reparsed), (500, 0));
    // Flows may interleave differently across workers; each frame arrives exactly once.
    let mut egress = nic.take_egress();
    assert_eq!(egress.len(), 100);
    for g in &egress {
        assert_eq!((g[..6] == NEXT_HOP, g[6..12] == vf_mac), (true, true));
    }
    let strip = |v: &mut Vec<Vec<u8>>| {
        for f in v.iter_mut() {
            f.drain(..12);
        }
        v.sort();
    };
    let mut want = sent.clone();
    strip(&mut egress);
    strip(&mut want);
    assert_eq!(egress, want);
}

#[test]
fn the_tx_queue_must_exist_on_the_vf() {
    let (_nic, vf) = setup(512);
    let mac = vf.mac();
    let e = FilterLoop::new(vf, rules(), vf_tx(TxBack::new(mac, 3, true, None)))
        .err()
        .expect("queue 3 refused");
    assert!(matches!(e, LoopError::NoTxQueue { queue: 3, count: 1 }));
    assert!(e.to_string().contains("TX queue 3"), "{e}");
}

#[test]
fn a_stop_waits_for_the_nic_to_send_what_was_queued_and_reports_what_it_never_sent() {
    use floodgate::daemon::runloop::{run_loop, LoopControl};
    use std::time::{Duration, Instant};
    // The NIC fetches TX descriptors only when the pump steps it, and only after the stop: the
    // drain must keep pumping until every queued survivor has been reported sent.
    let (nic, vf) = setup(512);
    let vf_mac = vf.mac();
    let tx = TxBack::new(vf_mac, 0, true, Some(NEXT_HOP));
    let mut fl = FilterLoop::new(vf, rules(), vf_tx(tx)).unwrap();
    nic.stall_tx(0, 0, true).unwrap();
    let sent = inject_mix(&nic, 50, 40, 0);
    nic.step();
    let mut ctl = LoopControl::new();
    ctl.deadline = Some(Instant::now() + Duration::from_millis(20));
    let n2 = nic.clone();
    ctl.before_drain = Some(Box::new(move || n2.stall_tx(0, 0, false).unwrap()));
    let n3 = nic.clone();
    ctl.pump = Some(Box::new(move || n3.step()));
    let r = run_loop(&mut fl, &mut ctl).unwrap();
    assert_eq!((r.counters.vf_tx, r.vf_tx_unsent), (40, 0), "{r:?}");
    assert_byte_exact(&sent, &nic.take_egress(), NEXT_HOP, vf_mac);
    assert_eq!(fl.tx_outstanding(), 0);

    // A NIC that never sends: the stop gives up after a bounded wait and says how many.
    nic.stall_tx(0, 0, true).unwrap();
    inject_mix(&nic, 0, 7, 0);
    nic.step();
    let mut ctl = LoopControl::new();
    ctl.deadline = Some(Instant::now() + Duration::from_millis(20));
    let r = run_loop(&mut fl, &mut ctl).unwrap();
    assert_eq!(r.counters.vf_tx, 47, "{r:?}");
    assert_eq!(r.vf_tx_unsent, 7, "{r:?}");
    assert_eq!(fl.tx_outstanding(), 7);
}
