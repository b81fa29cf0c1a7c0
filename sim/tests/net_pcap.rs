//! pcap: round trip, both byte orders, nanosecond magic, and clear errors on bad files.

use floodgate_sim::engine::FrameSource;
use floodgate_sim::generator::{Generator, GeneratorConfig, MAX_GEN_FRAME};
use floodgate_sim::pcap::{PcapError, PcapReader, PcapReplay, PcapWriter};

fn be_file(nanos: bool) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&(if nanos { 0xA1B2_3C4Du32 } else { 0xA1B2_C3D4 }).to_be_bytes());
    f.extend_from_slice(&2u16.to_be_bytes());
    f.extend_from_slice(&4u16.to_be_bytes());
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&65535u32.to_be_bytes());
    f.extend_from_slice(&1u32.to_be_bytes());
    // One record: ts 10 s + 5 units, 4 bytes captured of 70.
    f.extend_from_slice(&10u32.to_be_bytes());
    f.extend_from_slice(&5u32.to_be_bytes());
    f.extend_from_slice(&4u32.to_be_bytes());
    f.extend_from_slice(&70u32.to_be_bytes());
    f.extend_from_slice(&[1, 2, 3, 4]);
    f
}

#[test]
fn round_trip_of_generated_traffic() {
    let mut g = Generator::new(GeneratorConfig::default()).unwrap();
    let mut buf = vec![0u8; MAX_GEN_FRAME];
    let mut frames = Vec::new();
    let mut w = PcapWriter::new(Vec::new(), 65535).unwrap();
    for _ in 0..200 {
        let f = g.next_into(&mut buf).unwrap();
        w.write_packet(f.time_ns, &buf[..f.len]).unwrap();
        frames.push((f.time_ns / 1000 * 1000, buf[..f.len].to_vec()));
    }
    let file = w.into_inner().unwrap();
    let mut r = PcapReader::new(&file[..]).unwrap();
    assert!(!r.header().big_endian && !r.header().nanos);
    let back = r.read_all().unwrap();
    assert_eq!(back.len(), 200);
    for ((rec, data), (ts, want)) in back.iter().zip(&frames) {
        assert_eq!(data, want);
        assert_eq!(rec.ts_ns, *ts);
        assert_eq!(rec.orig_len as usize, want.len());
    }
    // Replay through the engine's FrameSource interface.
    let mut replay = PcapReplay::new(PcapReader::new(&file[..]).unwrap());
    let mut eb = vec![0u8; 9728];
    let mut n = 0;
    while let Some(len) = replay.next_frame(&mut eb) {
        assert_eq!(&eb[..len], &frames[n].1[..]);
        n += 1;
    }
    assert_eq!(n, 200);
    assert!(replay.error.is_none());
}

#[test]
fn snaplen_truncates_but_keeps_orig_len() {
    let mut w = PcapWriter::new(Vec::new(), 64).unwrap();
    w.write_packet(0, &[7u8; 100]).unwrap();
    let file = w.into_inner().unwrap();
    let mut r = PcapReader::new(&file[..]).unwrap();
    let mut b = Vec::new();
    let rec = r.next_packet(&mut b).unwrap().unwrap();
    assert_eq!((rec.caplen, rec.orig_len, b.len()), (64, 100, 64));
}

#[test]
fn big_endian_micro_and_nano() {
    for nanos in [false, true] {
        let f = be_file(nanos);
        let mut r = PcapReader::new(&f[..]).unwrap();
        assert!(r.header().big_endian);
        assert_eq!(r.header().nanos, nanos);
        assert_eq!(r.header().snaplen, 65535);
        let mut b = Vec::new();
        let rec = r.next_packet(&mut b).unwrap().unwrap();
        let frac = if nanos { 5 } else { 5000 };
        assert_eq!(rec.ts_ns, 10_000_000_000 + frac);
        assert_eq!((rec.caplen, rec.orig_len), (4, 70));
        assert_eq!(b, vec![1, 2, 3, 4]);
        assert!(r.next_packet(&mut b).unwrap().is_none());
    }
}

#[test]
fn little_endian_nano_magic() {
    let mut f = be_file(true);
    // Rewrite the header and record fields little-endian.
    let fix = |f: &mut Vec<u8>, at: usize, len: usize| f[at..at + len].reverse();
    for (at, len) in [
        (0, 4),
        (4, 2),
        (6, 2),
        (16, 4),
        (20, 4),
        (24, 4),
        (28, 4),
        (32, 4),
        (36, 4),
    ] {
        fix(&mut f, at, len);
    }
    let mut r = PcapReader::new(&f[..]).unwrap();
    assert!(!r.header().big_endian && r.header().nanos);
    let mut b = Vec::new();
    assert_eq!(
        r.next_packet(&mut b).unwrap().unwrap().ts_ns,
        10_000_000_005
    );
}

#[test]
fn bad_files_give_clear_errors() {
    let e = PcapReader::new(&[0xD4, 0xC3, 0xB2][..]).unwrap_err();
    assert!(matches!(e, PcapError::TruncatedHeader { got: 3 }), "{e}");
    let e = PcapReader::new(
        &[
            0x0A, 0x0D, 0x0D, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ][..],
    )
    .unwrap_err();
    // A pcapng section header without its byte-order magic.
    assert!(matches!(e, PcapError::Pcapng { offset: 0, .. }), "{e}");
    assert!(e.to_string().contains("byte-order magic"), "{e}");
    // Record body cut short.
    let f = be_file(false);
    let cut = &f[..f.len() - 2];
    let mut r = PcapReader::new(cut).unwrap();
    let e = r.next_packet(&mut Vec::new()).unwrap_err();
    assert!(
        matches!(
            e,
            PcapError::TruncatedRecord {
                index: 0,
                offset: 24,
                need: 20,
                got: 18
            }
        ),
        "{e}"
    );
    // Record header cut short.
    let mut r = PcapReader::new(&f[..30]).unwrap();
    assert!(matches!(
        r.next_packet(&mut Vec::new()),
        Err(PcapError::TruncatedRecord {
            need: 16,
            got: 6,
            ..
        })
    ));
    // Absurd captured length.
    let mut g = f.clone();
    g[32..36].copy_from_slice(&0x7FFF_FFFFu32.to_be_bytes());
    let mut r = PcapReader::new(&g[..]).unwrap();
    let e = r.next_packet(&mut Vec::new()).unwrap_err();
    assert!(
        matches!(
            e,
            PcapError::BadRecordLength {
                caplen: 0x7FFF_FFFF,
                ..
            }
        ),
        "{e}"
    );
    // Replay stops at the error and records it.
    let mut replay = PcapReplay::new(PcapReader::new(cut).unwrap());
    assert!(replay.next_frame(&mut [0u8; 64]).is_none());
    assert!(replay.error.is_some());
}

#[test]
fn garbage_after_a_valid_header_never_panics() {
    let mut x = 0x1234_5678_9ABC_DEF1u64;
    for round in 0..300 {
        let mut f = be_file(round % 2 == 0);
        f.truncate(24);
        for _ in 0..(round % 97) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            f.push(x as u8);
        }
        let mut r = PcapReader::new(&f[..]).unwrap();
        let mut b = Vec::new();
        let mut records = 0;
        // Ends in a clean EOF or an error, never a panic and never a loop.
        while let Ok(Some(_)) = r.next_packet(&mut b) {
            records += 1;
            assert!(records <= 6);
        }
    }
}
