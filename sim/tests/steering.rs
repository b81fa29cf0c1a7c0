//! End-to-end steering through the model: PF agent state → switch → RX DMA, driven through the
//! mailbox and the rings (facts §4.3, §4.6, §6.1).

pub mod vfdrv;

use floodgate_sim::ethtool::{FlowType, IndirSpec, RxFlowSpec, RxfhRequest};
use floodgate_sim::regs::*;
use floodgate_sim::toeplitz::toeplitz_hash;
use floodgate_sim::NicModel;
use floodgate_vfio::{Bar, Device};
use vfdrv::*;

fn udp_from(dst: [u8; 6], src_ip: [u8; 4], dport: u16) -> Vec<u8> {
    let mut f = udp_frame(dst, [0x02, 9, 9, 9, 9, 9], 64);
    f[26..30].copy_from_slice(&src_ip);
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    assert!(floodgate_sim::rxcsum::fix_checksums(&mut f));
    f
}

#[test]
fn fdir_rule_steers_into_vf_queue_with_filter_id() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(1);
    let bar = vf.bar0();
    MbxVf::new(&vf).bring_up();
    let rings = Rings::new(&vf, 64);
    rings.setup_rx(&bar, 1, SRRCTL_DROP_EN | 2, 63);
    // ethtool -N pf flow-type udp4 dst-port 53 vf 1 queue 1 loc 5 (VF index 1 → selector 2).
    let loc = nic
        .pf()
        .add_ntuple(
            &RxFlowSpec::new(FlowType::UdpV4)
                .dst_port(53)
                .to_vf(1, 1)
                .at(5),
        )
        .unwrap();
    assert_eq!(loc, 5);
    // Addressed to the PF's MAC: the flow director wins over the L2 switch.
    let pf_mac = nic.pf().pools().pf.mac;
    nic.inject(&udp_from(pf_mac, [192, 0, 2, 1], 53));
    nic.inject(&udp_from(pf_mac, [192, 0, 2, 1], 54));
    nic.step();
    let (dw0, dw1, st, len) = rings.rx_wb(1, 0);
    assert_eq!(dw0 & 0xF, RSS_TYPE_FDIR as u32);
    assert_eq!(dw1 & 0xFFFF, 5, "filter id in dword 1 low half");
    assert_eq!(st, RXD_STAT_DD | RXD_STAT_EOP | RXD_STAT_FLM | UDP4_CSUM_OK);
    assert_eq!(len, 64);
    assert_eq!(bar.read32(rxq(1, RDH)), 1);
    // Port 54 did not match: it went to the PF's kernel side.
    let s = nic.stats();
    assert_eq!((s.rx_delivered, s.pf_delivered), (1, 1));
    // A drop rule: counted by the switch, nothing delivered.
    nic.pf()
        .add_ntuple(&RxFlowSpec::new(FlowType::UdpV4).dst_port(123).drop().at(6))
        .unwrap();
    nic.inject(&udp_from(pf_mac, [192, 0, 2, 1], 123));
    nic.step();
    assert_eq!(nic.stats().switch_dropped, 1);
    // The kernel's refusal for a queue beyond the pool (facts §4.3).
    let e = nic
        .pf()
        .add_ntuple(
            &RxFlowSpec::new(FlowType::UdpV4)
                .dst_port(1)
                .to_vf(1, 4)
                .at(7),
        )
        .unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
}

#[test]
fn rss_spreads_over_the_queues_psrtype_allows() {
    let nic = nic(NicModel::X540, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    MbxVf::new(&vf).bring_up();
    let rings = Rings::new(&vf, 256);
    for q in 0..4 {
        rings.setup_rx(&bar, q, SRRCTL_DROP_EN | 2, 255);
    }
    let (reta, key) = nic.pf().rxfh();
    let flows: Vec<[u8; 4]> = (0..32u8).map(|i| [198, 51, 100, i]).collect();
    let expect = |src: [u8; 4], rqpl: u32| -> (usize, u32) {
        let mut input = [0u8; 8];
        input[..4].copy_from_slice(&src);
        input[4..].copy_from_slice(&[10, 0, 0, 2]);
        let h = toeplitz_hash(&key, &input);
        (
            (reta[(h & 0x7F) as usize] as u32 & ((1 << rqpl) - 1)) as usize,
            h,
        )
    };
    // Without VFPSRTYPE.RQPL the pool uses one queue; with RQPL = 2 it uses four (facts §2.1).
    for rqpl in [0u32, 2] {
        bar.write32(VFPSRTYPE, rqpl << 29);
        let before: Vec<u32> = (0..4).map(|q| bar.read32(rxq(q, RDH))).collect();
        let mut want = [0u32; 4];
        for src in &flows {
            nic.inject(&udp_from(vf_mac(0), *src, 53));
            want[expect(*src, rqpl).0] += 1;
        }
        nic.step();
        for q in 0..4 {
            assert_eq!(
                bar.read32(rxq(q, RDH)) - before[q],
                want[q],
                "rqpl {rqpl} queue {q}"
            );
        }
        if rqpl == 2 {
            assert!(want.iter().filter(|&&n| n > 0).count() > 1, "flows spread");
        }
    }
    // The hash and RSS type (2 = IPv4) are written back.
    let (q, h) = expect(flows[0], 0);
    assert_eq!(q, 0);
    assert_eq!(rings.rx_wb(0, 0).1, h);
    assert_eq!(rings.rx_wb(0, 0).0 & 0xF, 2);
    // ethtool -X weight 1 0 0 0: every entry on queue 0.
    nic.pf()
        .set_rxfh(&RxfhRequest {
            indir: IndirSpec::Weight(vec![1, 0, 0, 0]),
            key: None,
            hfunc: Default::default(),
        })
        .unwrap();
    let before = bar.read32(rxq(0, RDH));
    for src in &flows {
        nic.inject(&udp_from(vf_mac(0), *src, 53));
    }
    nic.step();
    assert_eq!(bar.read32(rxq(0, RDH)) - before, 32);
    // ethtool -X equal 1: likewise (what tests that poll only queue 0 use).
    nic.pf()
        .set_rxfh(&RxfhRequest {
            indir: IndirSpec::Equal(1),
            key: None,
            hfunc: Default::default(),
        })
        .unwrap();
    assert!(nic.pf().rxfh().0.iter().all(|&e| e == 0));
}

#[test]
fn get_reta_and_key_need_query_rss() {
    let nic = nic(NicModel::X82599, 2);
    let mut m = MbxVf::new(&nic.vf(0));
    m.bring_up();
    assert_eq!(m.request(&[MSG_GET_RETA]).unwrap()[0], 0x6000_000A);
    nic.pf().set_vf_rss_query(0, true).unwrap();
    let r = m.request(&[MSG_GET_RETA]).unwrap();
    assert_eq!(r[0], 0xA000_000A);
    let (reta, key) = nic.pf().rxfh();
    for (i, e) in reta.iter().enumerate() {
        assert_eq!(
            (r[1 + i / 16] >> (2 * (i % 16))) & 3,
            u32::from(e & 3),
            "entry {i}"
        );
    }
    let r = m.request(&[MSG_GET_RSS_KEY]).unwrap();
    assert_eq!(r[0], 0xA000_000B);
    for i in 0..10 {
        assert_eq!(r[1 + i].to_le_bytes(), key[4 * i..4 * i + 4]);
    }
}

#[test]
fn vf_broadcast_reaches_other_pools_and_the_wire() {
    let nic = nic(NicModel::X82599, 2);
    let (vf0, vf1) = (nic.vf(0), nic.vf(1));
    let (bar0, bar1) = (vf0.bar0(), vf1.bar0());
    MbxVf::new(&vf0).bring_up();
    MbxVf::new(&vf1).bring_up();
    let r0 = Rings::new(&vf0, 64);
    let r1 = Rings::new(&vf1, 64);
    r0.setup_tx(&bar0, 0);
    r0.setup_rx(&bar0, 0, SRRCTL_DROP_EN | 2, 63);
    r1.setup_rx(&bar1, 0, SRRCTL_DROP_EN | 2, 63);
    let f = udp_frame([0xFF; 6], vf_mac(0), 64);
    r0.write(r0.tx_buf(0), &f);
    r0.tx_data(0, 0, r0.tx_buf(0), 64, true, true);
    bar0.write32(txq(0, TDT), 1);
    nic.step();
    // VF 1 and the PF get a copy (LB set), the sender does not, and it leaves on the wire.
    assert_eq!(
        r1.rx_wb(0, 0).2 & (RXD_STAT_DD | RXD_STAT_LB),
        RXD_STAT_DD | RXD_STAT_LB
    );
    assert_eq!(bar0.read32(rxq(0, RDH)), 0);
    assert_eq!(nic.take_egress(), vec![f]);
    let s = nic.stats();
    assert_eq!((s.rx_delivered, s.pf_delivered, s.egress), (1, 1, 1));
}

#[test]
fn generator_driven_engine_conserves_every_frame() {
    use floodgate_sim::generator::{Generator, GeneratorConfig, Rate};
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    MbxVf::new(&vf).bring_up();
    let rings = Rings::new(&vf, 256);
    rings.setup_rx(&bar, 0, SRRCTL_DROP_EN | 2, 255);
    // The attack on UDP/53 goes to VF 0 queue 0; everything else stays with the PF.
    nic.pf()
        .add_ntuple(
            &RxFlowSpec::new(FlowType::UdpV4)
                .dst_port(53)
                .to_vf(0, 0)
                .at(0),
        )
        .unwrap();
    let gen = Generator::new(GeneratorConfig {
        rate: Rate::MaxSpeed,
        dst_mac: nic.pf().pools().pf.mac,
        ..Default::default()
    })
    .unwrap();
    let engine = nic.start_engine(floodgate_sim::EngineConfig {
        source: Some(Box::new(gen)),
        source_rate_pps: None,
        ..Default::default()
    });
    // Run until the ring is full and some frames were dropped for lack of descriptors.
    for _ in 0..50_000 {
        if bar.read32(rxq(0, RDH)) == 255 && vf.rx_no_desc_drops(0) > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_micros(100));
    }
    let st = engine.stop();
    let s = nic.stats();
    assert_eq!(bar.read32(rxq(0, RDH)), 255);
    assert!(s.rx_no_desc > 0);
    assert_eq!(s.wire_in, st.generated);
    assert_eq!(
        s.wire_in,
        s.rx_delivered + s.pf_delivered + s.rx_no_desc + s.switch_dropped,
        "{s:?}"
    );
    // Every frame in the VF ring is UDP to port 53 and was steered by rule 0.
    for i in 0..255 {
        let (dw0, dw1, st, len) = rings.rx_wb(0, i);
        assert_eq!(
            st & (RXD_STAT_DD | RXD_STAT_FLM),
            RXD_STAT_DD | RXD_STAT_FLM
        );
        assert_eq!((dw0 & 0xF, dw1 & 0xFFFF), (0xF, 0));
        let f = rings.read(rings.rx_buf(i), (len & 0xFFFF) as usize);
        assert_eq!((f[23], &f[36..38]), (17, &53u16.to_be_bytes()[..]));
    }
}
