//! `rules test` reads pcapng captures (as Wireshark and dumpcap write them) and gives the same
//! verdicts as for the same frames in a classic pcap file.

pub mod filter_util;

use std::path::PathBuf;

use filter_util::*;
use floodgate::config::Config;
use floodgate::filter::{test_pcap, Decision, PcapTestError};
use floodgate::pcapfile::{PcapReader, PcapWriter};

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("floodgate-{}-{name}", std::process::id()))
}

/// One little-endian pcapng block (body padded to 4 bytes).
fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
    let mut body = body.to_vec();
    body.resize(body.len().next_multiple_of(4), 0);
    let len = (12 + body.len()) as u32;
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&len.to_le_bytes());
}

/// A pcapng file: section header, one Ethernet interface with nanosecond time stamps (and a
/// name option), an enhanced packet block per frame (frame `n` at `n` seconds), and an
/// interface statistics block at the end, as dumpcap writes one.
fn pcapng(frames: &[Vec<u8>], linktype: u16) -> Vec<u8> {
    let mut out = Vec::new();
    let mut shb = 0x1A2B_3C4Du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&u64::MAX.to_le_bytes());
    block(&mut out, 0x0A0D_0D0A, &shb);
    let mut idb = linktype.to_le_bytes().to_vec();
    idb.extend_from_slice(&[0, 0]);
    idb.extend_from_slice(&262_144u32.to_le_bytes());
    idb.extend_from_slice(&[2, 0, 4, 0, b'e', b't', b'h', b'0']); // if_name
    idb.extend_from_slice(&[9, 0, 1, 0, 9, 0, 0, 0]); // if_tsresol = 10^-9
    idb.extend_from_slice(&[0, 0, 0, 0]);
    block(&mut out, 1, &idb);
    for (n, f) in frames.iter().enumerate() {
        let ts = 1_000_000_000 * n as u64;
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&(f.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(f.len() as u32).to_le_bytes());
        epb.extend_from_slice(f);
        block(&mut out, 6, &epb);
    }
    block(&mut out, 5, &[0; 12]);
    out
}

fn traffic() -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    for i in 0..30u8 {
        frames.push(ipv4(
            UDP,
            [198, 51, 100, i],
            [192, 0, 2, 53],
            53,
            53,
            &dns_response(300 + usize::from(i)),
        ));
        if i % 5 == 0 {
            frames.push(ipv4(
                UDP,
                [10, 0, 0, i],
                [192, 0, 2, 53],
                40000,
                53,
                &dns_query(33),
            ));
        }
    }
    frames.push(ipv4(TCP, [10, 0, 0, 1], [192, 0, 2, 53], 40000, 22, b""));
    frames.push(arp());
    frames
}

const RULES: &str = r#"
[device]
pci = "sim"
[[filter.rule]]
name = "reflection"
action = "drop"
proto = "udp"
src_port = 53
[[filter.rule]]
name = "queries"
action = "rate-limit"
proto = "udp"
dst_port = 53
rate = 2
"#;

#[test]
fn rules_test_gives_the_same_verdicts_for_pcapng_and_pcap() {
    let frames = traffic();
    let ng = tmp("attack.pcapng");
    std::fs::write(&ng, pcapng(&frames, 1)).unwrap();
    let classic = tmp("attack.pcap");
    {
        let mut w = PcapWriter::new(std::fs::File::create(&classic).unwrap(), 65535).unwrap();
        for (n, f) in frames.iter().enumerate() {
            w.write_frame(1_000_000_000 * n as u64, f).unwrap();
        }
        w.flush().unwrap();
    }
    let r = PcapReader::open(&ng).unwrap();
    assert!(r.is_pcapng() && r.is_nanosecond());
    assert_eq!(r.linktype(), 1);

    let cfg = Config::from_str_named(RULES, "t.toml").unwrap();
    let from_ng = test_pcap(&mut cfg.filter.ruleset(), &ng).unwrap();
    let from_pcap = test_pcap(&mut cfg.filter.ruleset(), &classic).unwrap();
    assert_eq!(from_ng, from_pcap);
    assert_eq!(from_ng.verdicts.len(), frames.len());
    assert_eq!(from_ng.verdicts[7].header.ts_nanos, 7_000_000_000);
    let c = &from_ng.counters;
    assert_eq!((c.rules[0].hits, c.rules[0].dropped), (30, 30));
    // One query per 5 s at 2 pps with a burst of 2: all pass.
    assert_eq!((c.rules[1].hits, c.rules[1].passed), (6, 6));
    assert_eq!(c.default.passed, 2);
    assert_eq!(
        from_ng.verdicts.last().unwrap().verdict.action,
        Decision::Pass
    );
    std::fs::remove_file(&ng).unwrap();
    std::fs::remove_file(&classic).unwrap();
}

#[test]
fn pcapng_of_another_link_type_or_cut_short_is_refused() {
    let mut rs = floodgate::filter::RuleSet::new(vec![], Decision::Pass);
    let path = tmp("sll.pcapng");
    std::fs::write(&path, pcapng(&traffic(), 113)).unwrap();
    let e = test_pcap(&mut rs, &path).unwrap_err();
    assert!(
        matches!(e, PcapTestError::LinkType { linktype: 113, .. }),
        "{e}"
    );
    let mut bytes = pcapng(&traffic(), 1);
    bytes.truncate(bytes.len() - 30);
    std::fs::write(&path, bytes).unwrap();
    // The file, then (the error's source, printed once in the chain) what was wrong.
    let e = format!(
        "{:#}",
        anyhow::Error::new(test_pcap(&mut rs, &path).unwrap_err())
    );
    assert!(e.starts_with(&path.display().to_string()), "{e}");
    assert!(e.contains("pcapng") && e.contains("cut short"), "{e}");
    std::fs::remove_file(&path).unwrap();
}
