//! RSS: `ethtool -X` semantics and kernel checks, hash-type selection, RETA/RQPL queue choice
//! (facts §4.6, §6.1).

use floodgate_sim::ethtool::{errno, parse_hkey, IndirSpec, RxfhRequest};
use floodgate_sim::fdir::PoolLayout;
use floodgate_sim::frame::FrameInfo;
use floodgate_sim::generator::{build_tcp4_vlan, build_udp4, TCP_ACK};
use floodgate_sim::l2::PoolConfig;
use floodgate_sim::rss::{mrqc, HashFunc, Rss, RssType, RETA_SIZE};
use floodgate_sim::switch::{Ingress, Switch};
use floodgate_sim::toeplitz::{Toeplitz, MICROSOFT_RSS_KEY, SYMMETRIC_RSS_KEY};

fn req(indir: IndirSpec) -> RxfhRequest {
    RxfhRequest {
        indir,
        ..Default::default()
    }
}

#[test]
fn equal_and_default_are_round_robin() {
    let mut sw = Switch::new(PoolLayout::new(2, 4).unwrap());
    sw.ethtool_set_rxfh(&req(IndirSpec::Equal(2))).unwrap();
    let (reta, _) = sw.ethtool_get_rxfh();
    assert!(reta.iter().enumerate().all(|(i, &q)| q as usize == i % 2));
    sw.ethtool_set_rxfh(&req(IndirSpec::Default)).unwrap();
    let (reta, _) = sw.ethtool_get_rxfh();
    assert!(reta.iter().enumerate().all(|(i, &q)| q as usize == i % 4));
}

#[test]
fn weight_gives_contiguous_blocks() {
    let mut sw = Switch::new(PoolLayout::new(2, 4).unwrap());
    sw.ethtool_set_rxfh(&req(IndirSpec::Weight(vec![1, 0, 0, 0])))
        .unwrap();
    assert!(sw.ethtool_get_rxfh().0.iter().all(|&q| q == 0));
    sw.ethtool_set_rxfh(&req(IndirSpec::Weight(vec![3, 1])))
        .unwrap();
    let (reta, _) = sw.ethtool_get_rxfh();
    assert!(reta[..96].iter().all(|&q| q == 0));
    assert!(reta[96..].iter().all(|&q| q == 1));
    // 128*wj/Σw with a remainder: weights 1 1 1 -> 42, 43, 43 (boundaries at 128/3, 256/3).
    sw.ethtool_set_rxfh(&req(IndirSpec::Weight(vec![1, 1, 1])))
        .unwrap();
    let (reta, _) = sw.ethtool_get_rxfh();
    let counts: Vec<usize> = (0..3)
        .map(|q| reta.iter().filter(|&&e| e == q).count())
        .collect();
    assert_eq!(counts, vec![42, 43, 43]);
    assert!(reta.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn refusals() {
    let mut sw = Switch::new(PoolLayout::new(2, 4).unwrap());
    let before = sw.ethtool_get_rxfh();
    for bad in [
        IndirSpec::Weight(vec![0, 0]),
        IndirSpec::Weight(vec![100, 100]),
        IndirSpec::Equal(0),
        IndirSpec::Equal(5), // entries 4 >= min(num_rx_queues=4, 16)
        IndirSpec::Table(vec![0; 64]),
    ] {
        let e = sw.ethtool_set_rxfh(&req(bad.clone())).unwrap_err();
        assert_eq!(e.errno(), errno::EINVAL, "{bad:?}: {e}");
    }
    let e = sw.ethtool_set_rxfh(&req(IndirSpec::Equal(5))).unwrap_err();
    assert!(e.message().contains("entry 4 points at queue 4"), "{e}");
    let e = sw
        .ethtool_set_rxfh(&RxfhRequest {
            key: Some(vec![1; 39]),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(e.errno(), errno::EINVAL);
    assert!(e.message().contains("39 bytes"));
    let e = sw
        .ethtool_set_rxfh(&RxfhRequest {
            hfunc: HashFunc::Xor,
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(e.errno(), errno::EOPNOTSUPP);
    // Nothing changed.
    assert_eq!(sw.ethtool_get_rxfh(), before);
}

#[test]
fn sriov_raises_the_bound_to_two() {
    // 40 VFs, PF RSS 1: 64-pool mode, num_rx_queues = 1, bound raised to 2 with SR-IOV.
    let mut sw = Switch::new(PoolLayout::new(40, 1).unwrap());
    sw.ethtool_set_rxfh(&req(IndirSpec::Equal(2))).unwrap();
    assert!(sw.ethtool_set_rxfh(&req(IndirSpec::Equal(3))).is_err());
    // Without VFs the bound is min(num_rx_queues, 16) = 1.
    let mut rss = Rss::new(&MICROSOFT_RSS_KEY, mrqc::LINUX_DEFAULT, 1);
    let t = vec![1u32; RETA_SIZE];
    assert!(rss
        .ethtool_set_rxfh(Some(&t), None, HashFunc::Toeplitz, 1, false)
        .is_err());
    assert!(rss
        .ethtool_set_rxfh(Some(&t), None, HashFunc::Toeplitz, 1, true)
        .is_ok());
    // Never above 16 on 82599/X540.
    let t = vec![16u32; RETA_SIZE];
    assert!(rss
        .ethtool_set_rxfh(Some(&t), None, HashFunc::NoChange, 64, false)
        .is_err());
}

#[test]
fn hkey_changes_the_hash() {
    let mut sw = Switch::new(PoolLayout::new(1, 4).unwrap());
    sw.set_pool(0, PoolConfig::vf_default([2, 0, 0, 0, 0, 0]))
        .unwrap();
    let key = parse_hkey(
        &SYMMETRIC_RSS_KEY
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
    .unwrap();
    sw.ethtool_set_rxfh(&RxfhRequest {
        key: Some(key),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(sw.ethtool_get_rxfh().1, SYMMETRIC_RSS_KEY);
    assert_eq!(sw.rss().key_registers(), [0x5A6D_5A6D; 10]);
    let mut b = [0u8; 128];
    let fwd = {
        let n = build_tcp4_vlan(
            &mut b,
            [2, 0, 0, 0, 0, 0],
            [2; 6],
            None,
            [66, 9, 149, 187],
            [161, 142, 100, 80],
            2794,
            1766,
            0,
            TCP_ACK,
            b"",
        )
        .unwrap();
        sw.classify(&b[..n], Ingress::Wire).destinations()[0]
    };
    assert_eq!(fwd.rss_hash, 0x9FCC_9FCC);
    assert_eq!(fwd.rss_type, RssType::Ipv4Tcp as u8);
}

#[test]
fn hash_type_follows_mrqc_fields() {
    let t = Toeplitz::new(&MICROSOFT_RSS_KEY);
    let mut rss = Rss::new(&MICROSOFT_RSS_KEY, mrqc::LINUX_DEFAULT, 4);
    let mut b = [0u8; 128];
    let n = build_udp4(
        &mut b,
        [2; 6],
        [4; 6],
        [66, 9, 149, 187],
        [161, 142, 100, 80],
        2794,
        1766,
        b"",
    )
    .unwrap();
    let f = FrameInfo::parse(&b[..n]).unwrap();
    // Linux default: UDP hashes on addresses only.
    assert_eq!(rss.compute(&f), (0x323E_8FC2, RssType::Ipv4));
    rss.set_fields(mrqc::LINUX_DEFAULT | mrqc::IPV4_UDP);
    assert_eq!(
        rss.compute(&f),
        (
            t.hash_ipv4_ports([66, 9, 149, 187], [161, 142, 100, 80], 2794, 1766),
            RssType::Ipv4Udp
        )
    );
    rss.set_fields(0);
    assert_eq!(rss.compute(&f), (0, RssType::None));
    // Non-IP: no hash.
    let mut arp = [0u8; 60];
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    rss.set_fields(mrqc::ALL);
    assert_eq!(
        rss.compute(&FrameInfo::parse(&arp).unwrap()),
        (0, RssType::None)
    );
}

#[test]
fn pool_queue_follows_reta_and_rqpl() {
    let mut sw = Switch::new(PoolLayout::new(2, 4).unwrap());
    let mut p = PoolConfig::vf_default([2, 0, 0, 0, 0, 0]);
    p.rqpl = 1; // ixgbevf with 2 queues
    sw.set_pool(0, p.clone()).unwrap();
    let mut b = [0u8; 128];
    let mut seen = [0usize; 4];
    for i in 0..256u16 {
        let n = build_tcp4_vlan(
            &mut b,
            [2, 0, 0, 0, 0, 0],
            [2; 6],
            None,
            [10, 1, (i >> 8) as u8, i as u8],
            [10, 0, 0, 1],
            1000 + i,
            80,
            0,
            TCP_ACK,
            b"",
        )
        .unwrap();
        let c = sw.classify(&b[..n], Ingress::Wire);
        let d = c.destinations()[0];
        let entry = sw.rss().reta()[(d.rss_hash & 0x7F) as usize];
        assert_eq!(d.queue, entry & 1);
        assert_eq!(d.abs_queue, d.queue);
        seen[d.queue as usize] += 1;
    }
    assert!(
        seen[0] > 0 && seen[1] > 0 && seen[2] == 0 && seen[3] == 0,
        "{seen:?}"
    );
    // RQPL 2: all four queues are used.
    p.rqpl = 2;
    sw.set_pool(0, p).unwrap();
    let mut used = [false; 4];
    for i in 0..256u16 {
        let n = build_tcp4_vlan(
            &mut b,
            [2, 0, 0, 0, 0, 0],
            [2; 6],
            None,
            [10, 1, 0, i as u8],
            [10, 0, 0, 1],
            1000 + i,
            80,
            0,
            TCP_ACK,
            b"",
        )
        .unwrap();
        used[sw.classify(&b[..n], Ingress::Wire).destinations()[0].queue as usize] = true;
    }
    assert_eq!(used, [true; 4]);
}
