//! Both classic-pcap readers (the daemon's `floodgate::pcapfile` and the model's
//! `floodgate_sim::pcap`) against random and mutated captures: they never panic, never grow a
//! buffer past their record limit whatever a header claims, and read back exactly what was
//! written (proptest, bounded case counts; `fuzz/fuzz_targets/pcap.rs` runs the same checks for
//! long runs).

pub mod fuzz_checks;
use floodgate::pcapfile::{self, PcapFileError, PcapWriter};
use floodgate_sim::pcap as simpcap;
use fuzz_checks::*;
use proptest::prelude::*;

/// An independent encoder: a classic pcap file in either byte order and either resolution,
/// records given as (seconds, fraction, original length, data).
fn encode(
    big_endian: bool,
    nanos: bool,
    snaplen: u32,
    recs: &[(u32, u32, u32, Vec<u8>)],
) -> Vec<u8> {
    let u32b = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let u16b = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut f = Vec::new();
    f.extend_from_slice(&u32b(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
    f.extend_from_slice(&u16b(2));
    f.extend_from_slice(&u16b(4));
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&u32b(snaplen));
    f.extend_from_slice(&u32b(1));
    for (sec, frac, orig, data) in recs {
        f.extend_from_slice(&u32b(*sec));
        f.extend_from_slice(&u32b(*frac));
        f.extend_from_slice(&u32b(data.len() as u32));
        f.extend_from_slice(&u32b(*orig));
        f.extend_from_slice(data);
    }
    f
}

/// A valid file to mutate: a few small records from the independent encoder.
fn sample_file() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(
            (
                any::<u32>(),
                0u32..1_000_000,
                0u32..2000,
                prop::collection::vec(any::<u8>(), 0..80),
            ),
            0..6,
        ),
    )
        .prop_map(|(be, ns, recs)| encode(be, ns, 65535, &recs))
}

/// One mutation of a file: overwrite a byte, a 32-bit field (with a value likely to matter),
/// truncate, or insert bytes.
#[derive(Debug, Clone)]
enum Mutation {
    Byte(usize, u8),
    Word(usize, u32),
    Truncate(usize),
    Insert(usize, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let word = prop_oneof![
        any::<u32>(),
        Just(u32::MAX),
        Just(0x8000_0000),
        Just(pcapfile::MAX_RECORD),
        Just(pcapfile::MAX_RECORD + 1),
        Just(simpcap::MAX_RECORD * 4 + 1),
        Just(0),
        Just(1_000_000_000),
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Mutation::Byte(a, b)),
        (any::<usize>(), word).prop_map(|(a, w)| Mutation::Word(a, w)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..24))
            .prop_map(|(a, v)| Mutation::Insert(a, v)),
    ]
}

fn apply(f: &mut Vec<u8>, m: &Mutation) {
    if f.is_empty() {
        return;
    }
    match m {
        Mutation::Byte(at, b) => {
            let at = at % f.len();
            f[at] = *b;
        }
        Mutation::Word(at, w) => {
            let at = at % f.len();
            let b = w.to_le_bytes();
            for (i, x) in b.iter().enumerate() {
                if let Some(slot) = f.get_mut(at + i) {
                    *slot = *x;
                }
            }
        }
        Mutation::Truncate(at) => f.truncate(at % (f.len() + 1)),
        Mutation::Insert(at, v) => {
            let at = at % (f.len() + 1);
            f.splice(at..at, v.iter().copied());
        }
    }
}

/// A 24-byte global header (little-endian, microseconds) followed by one record header that
/// claims `caplen` bytes, and `data` bytes of record body.
fn claims(caplen: u32, snaplen: u32, data: usize) -> Vec<u8> {
    let mut f = encode(false, false, snaplen, &[]);
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&caplen.to_le_bytes());
    f.extend_from_slice(&caplen.to_le_bytes());
    f.resize(f.len() + data, 0xAB);
    f
}

#[test]
fn a_record_claiming_4_gib_is_refused_without_allocating_it() {
    for snaplen in [0, 65535, u32::MAX] {
        let f = claims(u32::MAX, snaplen, 64);
        let (recs, err) = read_daemon(&f);
        assert!(recs.is_empty());
        assert!(
            matches!(
                err,
                Some(PcapFileError::RecordTooLarge {
                    len: u32::MAX,
                    index: 0,
                    ..
                })
            ),
            "{err:?}"
        );
        let msg = err.unwrap().to_string();
        assert!(msg.contains("t.pcap") && msg.contains("record 0"), "{msg}");
        let (recs, err) = read_sim(&f);
        assert!(recs.is_empty());
        assert!(
            matches!(
                err,
                Some(simpcap::PcapError::BadRecordLength {
                    caplen: u32::MAX,
                    index: 0,
                    ..
                })
            ),
            "{err:?}"
        );
    }
}

#[test]
fn record_limits_are_exact() {
    // At the limit: accepted (and read in full); one past it: refused.
    let f = claims(pcapfile::MAX_RECORD, 65535, pcapfile::MAX_RECORD as usize);
    let (recs, err) = read_daemon(&f);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(recs[0].1.len(), pcapfile::MAX_RECORD as usize);
    let f = claims(pcapfile::MAX_RECORD + 1, 65535, 16);
    assert!(matches!(
        read_daemon(&f).1,
        Some(PcapFileError::RecordTooLarge { .. })
    ));
    // The model's reader follows a large snaplen up to four times its base limit.
    let f = claims(SIM_LIMIT as u32, u32::MAX, SIM_LIMIT);
    let (recs, err) = read_sim(&f);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(recs[0].1.len(), SIM_LIMIT);
    let f = claims(SIM_LIMIT as u32 + 1, u32::MAX, 16);
    assert!(matches!(
        read_sim(&f).1,
        Some(simpcap::PcapError::BadRecordLength { .. })
    ));
}

#[test]
fn truncated_files_are_errors_that_say_where() {
    let recs = vec![(1, 2, 100, vec![7u8; 100]), (3, 4, 50, vec![9u8; 50])];
    let f = encode(false, false, 65535, &recs);
    for cut in 1..f.len() {
        let (got, err) = read_daemon(&f[..cut]);
        let (sgot, serr) = read_sim(&f[..cut]);
        // Cuts exactly at a record boundary are clean ends of file.
        let boundary = cut == 24 || cut == 24 + 16 + 100;
        assert_eq!(err.is_none(), boundary, "cut at {cut}: {err:?}");
        assert_eq!(serr.is_none(), boundary, "cut at {cut}: {serr:?}");
        assert_eq!(got.len(), sgot.len());
        if let Some(e) = err {
            assert!(e.to_string().starts_with("t.pcap: truncated"), "{e}");
        }
    }
}

/// Found by `daemon_writer_round_trips`: the writer took any snaplen, so a frame longer than
/// the reader's largest record, written with snaplen `u32::MAX`, gave a record its own reader
/// refused.
#[test]
fn regression_daemon_writer_snaplen_above_the_reader_limit() {
    let mut w = PcapWriter::new(Vec::new(), u32::MAX).unwrap();
    w.write_frame(0, &vec![0; SIM_LIMIT + 7]).unwrap();
    let (got, err) = read_daemon(&w.into_inner());
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got[0].0.caplen as usize, SIM_LIMIT);
    assert_eq!(got[0].0.orig_len as usize, SIM_LIMIT + 7);
}

/// Found by `model_writer_round_trips`: the same for the model's writer and a 1,048,579-byte
/// frame.
#[test]
fn regression_model_writer_snaplen_above_the_reader_limit() {
    let mut w = simpcap::PcapWriter::new(Vec::new(), u32::MAX).unwrap();
    w.write_packet(0, &vec![0; SIM_LIMIT + 3]).unwrap();
    let (got, err) = read_sim(&w.into_inner().unwrap());
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got[0].0.caplen as usize, SIM_LIMIT);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    /// Arbitrary bytes: no panic, bounded buffers (checked inside the helpers), and both
    /// readers agree on how many records precede the first error.
    #[test]
    fn random_bytes_never_panic(f in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = read_daemon(&f);
        let _ = read_sim(&f);
    }

    /// A valid file after a few mutations: no panic, bounded buffers; the records read before
    /// an error match what the unmutated file holds wherever the mutation came later.
    #[test]
    fn mutated_files_never_panic(f in sample_file(), ms in prop::collection::vec(mutation(), 1..4)) {
        let (orig, err) = read_daemon(&f);
        prop_assert!(err.is_none());
        let mut g = f.clone();
        for m in &ms {
            apply(&mut g, m);
        }
        let (got, _) = read_daemon(&g);
        let (sgot, _) = read_sim(&g);
        // Records lying entirely before the first changed byte read back unchanged.
        let first_diff = f.iter().zip(&g).position(|(a, b)| a != b).unwrap_or(f.len().min(g.len()));
        let mut end = 24;
        for (i, (h, data)) in orig.iter().enumerate() {
            end += 16 + data.len();
            if end > first_diff {
                break;
            }
            prop_assert_eq!(&got[i].0, h);
            prop_assert_eq!(&got[i].1, data);
            prop_assert_eq!(&sgot[i].1, data);
        }
    }

    /// What the independent encoder writes (either byte order, either resolution), both
    /// readers read back exactly: data, lengths and timestamps.
    #[test]
    fn independent_encoding_reads_back(
        be in any::<bool>(),
        ns in any::<bool>(),
        recs in prop::collection::vec(
            (any::<u32>(), any::<u32>(), any::<u32>(), prop::collection::vec(any::<u8>(), 0..300)),
            0..8,
        ),
    ) {
        let frac_limit = if ns { 1_000_000_000 } else { 1_000_000 };
        let recs: Vec<_> = recs.into_iter().map(|(s, f, o, d)| (s, f % frac_limit, o, d)).collect();
        let file = encode(be, ns, 65535, &recs);
        let (got, err) = read_daemon(&file);
        prop_assert!(err.is_none(), "{:?}", err);
        let (sgot, serr) = read_sim(&file);
        prop_assert!(serr.is_none(), "{:?}", serr);
        prop_assert_eq!(got.len(), recs.len());
        prop_assert_eq!(sgot.len(), recs.len());
        for (((sec, frac, orig, data), (h, d)), (sh, sd)) in recs.iter().zip(&got).zip(&sgot) {
            let ts = u64::from(*sec) * 1_000_000_000 + u64::from(*frac) * if ns { 1 } else { 1000 };
            prop_assert_eq!(h.ts_nanos, ts);
            prop_assert_eq!(sh.ts_ns, ts);
            prop_assert_eq!((h.caplen, h.orig_len), (data.len() as u32, *orig));
            prop_assert_eq!((sh.caplen, sh.orig_len), (data.len() as u32, *orig));
            prop_assert_eq!(d, data);
            prop_assert_eq!(sd, data);
        }
    }

    /// The daemon's writer and reader round-trip: nanosecond timestamps, frames cut to the
    /// snaplen, original lengths kept. Any snaplen the writer is given yields a file its reader
    /// reads back.
    #[test]
    fn daemon_writer_round_trips(
        snaplen in prop_oneof![1u32..2000, Just(pcapfile::MAX_RECORD), Just(pcapfile::MAX_RECORD + 1), Just(u32::MAX)],
        frames in prop::collection::vec(
            (0u64..(u64::from(u32::MAX) + 1) * 1_000_000_000, prop_oneof![0usize..1600, Just(pcapfile::MAX_RECORD as usize + 7)], any::<u8>()),
            0..6,
        ),
    ) {
        let mut w = PcapWriter::new(Vec::new(), snaplen).unwrap();
        for (ts, len, fill) in &frames {
            w.write_frame(*ts, &vec![*fill; *len]).unwrap();
        }
        let file = w.into_inner();
        let (got, err) = read_daemon(&file);
        prop_assert!(err.is_none(), "snaplen {}: {:?}", snaplen, err);
        let (sgot, serr) = read_sim(&file);
        prop_assert!(serr.is_none(), "snaplen {}: {:?}", snaplen, serr);
        prop_assert_eq!(got.len(), frames.len());
        for (((ts, len, fill), (h, d)), (sh, sd)) in frames.iter().zip(&got).zip(&sgot) {
            let cap = (*len).min(snaplen.clamp(1, SIM_LIMIT as u32) as usize);
            prop_assert_eq!(h.ts_nanos, *ts);
            prop_assert_eq!(sh.ts_ns, *ts);
            prop_assert_eq!((h.caplen as usize, h.orig_len as usize), (cap, *len));
            prop_assert_eq!(sh.orig_len as usize, *len);
            prop_assert!(d.len() == cap && d.iter().all(|b| b == fill));
            prop_assert_eq!(sd, d);
        }
    }

    /// The model's writer and reader round-trip (microsecond timestamps).
    #[test]
    fn model_writer_round_trips(
        snaplen in prop_oneof![1u32..2000, Just(simpcap::MAX_RECORD), Just(u32::MAX)],
        frames in prop::collection::vec(
            (0u64..(u64::from(u32::MAX) + 1) * 1_000_000_000, prop_oneof![0usize..1600, Just(SIM_LIMIT + 3)], any::<u8>()),
            0..6,
        ),
    ) {
        let mut w = simpcap::PcapWriter::new(Vec::new(), snaplen).unwrap();
        for (ts, len, fill) in &frames {
            w.write_packet(*ts, &vec![*fill; *len]).unwrap();
        }
        let file = w.into_inner().unwrap();
        let (got, err) = read_sim(&file);
        prop_assert!(err.is_none(), "snaplen {}: {:?}", snaplen, err);
        prop_assert_eq!(got.len(), frames.len());
        for ((ts, len, fill), (h, d)) in frames.iter().zip(&got) {
            let cap = (*len).min((snaplen as usize).clamp(1, SIM_LIMIT));
            prop_assert_eq!(h.ts_ns, ts / 1000 * 1000);
            prop_assert_eq!((h.caplen as usize, h.orig_len as usize), (cap, *len));
            prop_assert!(d.len() == cap && d.iter().all(|b| b == fill));
        }
    }
}
