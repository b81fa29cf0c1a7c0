//! The pcap reader/writer and the `rules test` core over a generated capture.

pub mod filter_util;

use std::io::Cursor;
use std::path::PathBuf;

use filter_util::*;
use floodgate::config::Config;
use floodgate::filter::{test_pcap, Decision, PcapTestError};
use floodgate::pcapfile::{PcapFileError, PcapReader, PcapWriter};

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("floodgate-{}-{name}", std::process::id()))
}

/// Builds a classic pcap by hand: `big` for big-endian, `nanos` for nanosecond magic.
fn handmade(big: bool, nanos: bool, records: &[(u32, u32, &[u8], u32)], linktype: u32) -> Vec<u8> {
    let w32 = |v: u32| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let w16 = |v: u16| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut out = Vec::new();
    out.extend_from_slice(&w32(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
    out.extend_from_slice(&w16(2));
    out.extend_from_slice(&w16(4));
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&w32(65535));
    out.extend_from_slice(&w32(linktype));
    for (sec, frac, data, orig) in records {
        out.extend_from_slice(&w32(*sec));
        out.extend_from_slice(&w32(*frac));
        out.extend_from_slice(&w32(data.len() as u32));
        out.extend_from_slice(&w32(*orig));
        out.extend_from_slice(data);
    }
    out
}

#[test]
fn reads_both_byte_orders_and_resolutions() {
    for big in [false, true] {
        for nanos in [false, true] {
            let bytes = handmade(
                big,
                nanos,
                &[(10, 5, b"abc", 3), (11, 999, b"defgh", 1500)],
                1,
            );
            let mut r = PcapReader::new(Cursor::new(bytes), "mem").unwrap();
            assert_eq!(r.linktype(), 1);
            assert_eq!(r.snaplen(), 65535);
            assert_eq!(r.is_nanosecond(), nanos);
            let mut buf = Vec::new();
            let h = r.next_record(&mut buf).unwrap().unwrap();
            assert_eq!(buf, b"abc");
            let unit = if nanos { 1 } else { 1000 };
            assert_eq!(
                h.ts_nanos,
                10_000_000_000 + 5 * unit,
                "big {big} nanos {nanos}"
            );
            let h = r.next_record(&mut buf).unwrap().unwrap();
            assert_eq!(
                (buf.as_slice(), h.caplen, h.orig_len),
                (&b"defgh"[..], 5, 1500)
            );
            assert!(r.next_record(&mut buf).unwrap().is_none());
        }
    }
}

#[test]
fn reader_errors() {
    let e = PcapReader::new(
        Cursor::new(vec![
            0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]),
        "ng.pcapng",
    )
    .err()
    .unwrap();
    // A pcapng section header without its byte-order magic: read as pcapng, refused.
    assert!(matches!(e, PcapFileError::Format { .. }), "{e}");
    // The file, then (as the error's source, printed once in the chain) what was wrong.
    let chain = format!("{:#}", anyhow::Error::new(e));
    assert!(chain.starts_with("ng.pcapng: "), "{chain}");
    assert!(chain["ng.pcapng: ".len()..].contains("pcapng"), "{chain}");
    assert!(matches!(
        PcapReader::new(Cursor::new(vec![0x47; 24]), "junk")
            .err()
            .unwrap(),
        PcapFileError::BadMagic {
            magic: 0x4747_4747,
            ..
        }
    ));
    assert!(matches!(
        PcapReader::new(Cursor::new(vec![0xd4, 0xc3]), "x")
            .err()
            .unwrap(),
        PcapFileError::Truncated { .. }
    ));
    // Record header cut short.
    let mut bytes = handmade(false, false, &[(1, 1, b"abcd", 4)], 1);
    bytes.extend_from_slice(&[1, 2, 3]);
    let mut r = PcapReader::new(Cursor::new(bytes), "x").unwrap();
    let mut buf = Vec::new();
    r.next_record(&mut buf).unwrap();
    let e = r.next_record(&mut buf).unwrap_err();
    assert!(e.to_string().contains("record 1 header"), "{e}");
    // Record data cut short.
    let mut bytes = handmade(false, false, &[(1, 1, b"abcd", 4)], 1);
    bytes.truncate(bytes.len() - 2);
    let e = PcapReader::new(Cursor::new(bytes), "x")
        .unwrap()
        .next_record(&mut buf)
        .unwrap_err();
    assert!(
        e.to_string().contains("record 0 data (2 of 4 bytes)"),
        "{e}"
    );
    // Absurd record length.
    let mut bytes = handmade(false, false, &[], 1);
    bytes.extend_from_slice(&[0; 8]);
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    bytes.extend_from_slice(&[0; 4]);
    let e = PcapReader::new(Cursor::new(bytes), "x")
        .unwrap()
        .next_record(&mut buf)
        .unwrap_err();
    assert!(
        matches!(e, PcapFileError::RecordTooLarge { index: 0, .. }),
        "{e}"
    );
}

#[test]
fn writer_roundtrip_and_snaplen() {
    let mut w = PcapWriter::new(Vec::new(), 10).unwrap();
    w.write_frame(1_500_000_000_123_456_789, &[7u8; 25])
        .unwrap();
    w.write_frame(5, &[1, 2]).unwrap();
    assert_eq!(w.bytes_written(), 24 + 16 + 10 + 16 + 2);
    let bytes = w.into_inner();
    let mut r = PcapReader::new(Cursor::new(bytes), "mem").unwrap();
    assert!(r.is_nanosecond());
    let mut buf = Vec::new();
    let h = r.next_record(&mut buf).unwrap().unwrap();
    assert_eq!(
        (h.ts_nanos, h.caplen, h.orig_len, buf.len()),
        (1_500_000_000_123_456_789, 10, 25, 10)
    );
    let h = r.next_record(&mut buf).unwrap().unwrap();
    assert_eq!((h.ts_nanos, buf.as_slice()), (5, &[1u8, 2][..]));
}

#[test]
fn rules_test_on_a_capture() {
    // A capture of a DNS reflection flood mixed with legitimate queries and other traffic.
    let path = tmp("attack.pcap");
    let mut frames = Vec::new();
    for i in 0..50u8 {
        frames.push(ipv4(
            UDP,
            [198, 51, 100, i],
            [192, 0, 2, 53],
            53,
            53,
            &dns_response(400),
        ));
        if i % 10 == 0 {
            frames.push(ipv4(
                UDP,
                [10, 0, 0, i],
                [192, 0, 2, 53],
                40000,
                53,
                &dns_query(40),
            ));
        }
    }
    frames.push(ipv4(TCP, [10, 0, 0, 1], [192, 0, 2, 53], 40000, 22, b""));
    {
        let f = std::fs::File::create(&path).unwrap();
        let mut w = PcapWriter::new(std::io::BufWriter::new(f), 65535).unwrap();
        for (n, f) in frames.iter().enumerate() {
            w.write_frame(1_000_000_000 * n as u64, f).unwrap();
        }
        w.flush().unwrap();
    }
    let cfg = Config::from_str_named(
        r#"
[device]
pci = "sim"
[filter]
default = "pass"
[[filter.rule]]
name = "reflection"
action = "drop"
proto = "udp"
src_port = 53
bytes = { layer = "l4", offset = 10, value = "80", mask = "80" }
[[filter.rule]]
name = "queries"
action = "rate-limit"
proto = "udp"
dst_port = 53
rate = 100
"#,
        "t.toml",
    )
    .unwrap();
    let mut rs = cfg.filter.ruleset();
    let report = test_pcap(&mut rs, &path).unwrap();
    assert_eq!(report.verdicts.len(), frames.len());
    assert_eq!(report.verdicts[0].number, 1);
    assert_eq!(report.verdicts[0].verdict.rule_index, Some(0));
    assert_eq!(report.verdicts[1].verdict.rule_index, Some(1));
    assert_eq!(report.verdicts[1].verdict.action, Decision::Pass);
    assert_eq!(report.verdicts[1].header.ts_nanos, 1_000_000_000);
    let last = report.verdicts.last().unwrap();
    assert_eq!(
        (last.verdict.rule_index, last.verdict.action),
        (None, Decision::Pass)
    );
    let c = &report.counters;
    assert_eq!(c.packets, 56);
    assert_eq!((c.rules[0].hits, c.rules[0].dropped), (50, 50));
    assert_eq!((c.rules[1].hits, c.rules[1].passed), (5, 5));
    assert_eq!(c.default.passed, 1);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn rules_test_errors() {
    let mut rs = floodgate::filter::RuleSet::new(vec![], Decision::Pass);
    let e = test_pcap(&mut rs, "/nonexistent/x.pcap").unwrap_err();
    assert!(e.to_string().contains("/nonexistent/x.pcap"), "{e}");
    let path = tmp("linux-sll.pcap");
    std::fs::write(&path, handmade(false, false, &[(1, 1, b"abcd", 4)], 113)).unwrap();
    let e = test_pcap(&mut rs, &path).unwrap_err();
    assert!(
        matches!(e, PcapTestError::LinkType { linktype: 113, .. }),
        "{e}"
    );
    std::fs::remove_file(&path).unwrap();
}
