//! End to end through the whole model: the generator's DNS flood mix enters the wire port, the
//! flow director steers UDP/53 into VF 0 queue 1, everything else reaches the PF's kernel side.
//! Every legitimate query must arrive intact, in order, with the filter id in its descriptor.

pub mod vfdrv;

use floodgate_sim::ethtool::{FlowType, RxFlowSpec};
use floodgate_sim::generator::{Generator, GeneratorConfig, Rate, TrafficClass, MAX_GEN_FRAME};
use floodgate_sim::pcap::{PcapReader, PcapWriter};
use floodgate_sim::regs::*;
use floodgate_sim::NicModel;
use floodgate_vfio::{Bar, Device};
use vfdrv::*;

#[test]
fn dns_flood_mix_is_steered_and_every_legit_query_arrives() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    MbxVf::new(&vf).bring_up();
    let rings = Rings::new(&vf, 256);
    rings.setup_rx(&bar, 1, SRRCTL_DROP_EN | 2, 255);
    nic.pf()
        .add_ntuple(
            &RxFlowSpec::new(FlowType::UdpV4)
                .dst_port(53)
                .to_vf(0, 1)
                .at(11),
        )
        .unwrap();

    let pf_mac = nic.pf().pools().pf.mac;
    let mut g = Generator::new(GeneratorConfig {
        dst_mac: pf_mac,
        rate: Rate::MaxSpeed,
        ..Default::default()
    })
    .unwrap();
    // Capture the offered traffic to pcap on the way, then replay it from the capture.
    let mut cap = PcapWriter::new(Vec::new(), 65535).unwrap();
    let mut buf = vec![0u8; MAX_GEN_FRAME];
    let mut classes = Vec::new();
    for _ in 0..240 {
        let f = g.next_into(&mut buf).unwrap();
        cap.write_packet(f.time_ns, &buf[..f.len]).unwrap();
        classes.push(f.class);
    }
    let file = cap.into_inner().unwrap();
    let frames = PcapReader::new(&file[..]).unwrap().read_all().unwrap();
    for (_, f) in &frames {
        nic.inject(f);
    }
    nic.step();

    let steered: Vec<&Vec<u8>> = frames
        .iter()
        .zip(&classes)
        .filter(|(_, c)| **c != TrafficClass::Background)
        .map(|((_, f), _)| f)
        .collect();
    let legit = classes
        .iter()
        .filter(|c| **c == TrafficClass::Legit)
        .count();
    let background = classes.len() - steered.len();
    assert!(legit > 0 && background > 0 && steered.len() < 255);

    for (i, want) in steered.iter().enumerate() {
        let (dw0, dw1, st, len) = rings.rx_wb(1, i as u32);
        assert_eq!(
            st & (RXD_STAT_DD | RXD_STAT_EOP | RXD_STAT_FLM),
            RXD_STAT_DD | RXD_STAT_EOP | RXD_STAT_FLM,
            "desc {i}"
        );
        assert_eq!(dw0 & 0xF, 0xF, "RSS type = FDIR match");
        assert_eq!(dw1 & 0xFFFF, 11, "filter id");
        assert_eq!(len as usize & 0xFFFF, want.len());
        assert_eq!(
            &rings.read(rings.rx_buf(i as u32), want.len()),
            *want,
            "frame {i} bytes"
        );
    }
    assert_eq!(bar.read32(rxq(1, RDH)), steered.len() as u32);
    let s = nic.stats();
    assert_eq!(s.wire_in, 240);
    assert_eq!(s.rx_delivered, steered.len() as u64);
    assert_eq!(s.pf_delivered, background as u64);
    nic.pf().switch(|sw| {
        assert_eq!(sw.fdir().rule_hits(11), Some(steered.len() as u64));
        assert_eq!(sw.stats().fdir.misses, background as u64);
    });
}
