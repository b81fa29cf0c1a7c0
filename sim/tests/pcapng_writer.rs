//! The pcapng writer (`floodgate_sim::pcap::PcapngWriter`): block layout, the interface
//! description's options, per-packet comments, and reading its files back.

use floodgate_sim::pcap::{PcapReader, PcapngWriter, PCAPNG_SECTION_HEADER};

/// The blocks of a little-endian pcapng file: (type, body without type and lengths).
fn blocks(f: &[u8]) -> Vec<(u32, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < f.len() {
        let t = u32::from_le_bytes(f[at..at + 4].try_into().unwrap());
        let len = u32::from_le_bytes(f[at + 4..at + 8].try_into().unwrap()) as usize;
        let trail = u32::from_le_bytes(f[at + len - 4..at + len].try_into().unwrap());
        assert_eq!(len as u32, trail, "block at {at}");
        assert_eq!(len % 4, 0);
        out.push((t, &f[at + 8..at + len - 4]));
        at += len;
    }
    out
}

/// (code, value) of the options in `o`.
fn options(mut o: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    while o.len() >= 4 {
        let code = u16::from_le_bytes([o[0], o[1]]);
        let len = usize::from(u16::from_le_bytes([o[2], o[3]]));
        if code == 0 {
            break;
        }
        out.push((code, o[4..4 + len].to_vec()));
        o = &o[4 + len.next_multiple_of(4)..];
    }
    out
}

#[test]
fn writes_interface_and_comments_and_reads_back() {
    let mut file = Vec::new();
    let mut w = PcapngWriter::new(&mut file, 64, "vf0", Some("sampled by rule x")).unwrap();
    let frame: Vec<u8> = (0..99u8).collect();
    let expect = w.record_size(frame.len(), Some(12));
    let before = w.bytes_written();
    w.write_packet(1_700_000_000_123_456_789, &frame, Some("rule \"flood\""))
        .unwrap();
    assert_eq!(w.bytes_written() - before, expect);
    let expect = w.record_size(7, None);
    let before = w.bytes_written();
    w.write_packet(5, &frame[..7], None).unwrap();
    assert_eq!(w.bytes_written() - before, expect);
    let total = w.bytes_written();
    drop(w);
    assert_eq!(total, file.len() as u64);

    let b = blocks(&file);
    assert_eq!(
        b.iter().map(|x| x.0).collect::<Vec<_>>(),
        [PCAPNG_SECTION_HEADER, 1, 6, 6]
    );
    let idb = b[1].1;
    assert_eq!(u16::from_le_bytes([idb[0], idb[1]]), 1, "Ethernet");
    assert_eq!(u32::from_le_bytes(idb[4..8].try_into().unwrap()), 64);
    let o = options(&idb[8..]);
    assert!(o.contains(&(2, b"vf0".to_vec())), "{o:?}");
    assert!(o.contains(&(3, b"sampled by rule x".to_vec())));
    assert!(o.contains(&(9, vec![9])));
    let epb = b[2].1;
    assert_eq!(
        u32::from_le_bytes(epb[12..16].try_into().unwrap()),
        64,
        "caplen"
    );
    assert_eq!(
        u32::from_le_bytes(epb[16..20].try_into().unwrap()),
        99,
        "orig"
    );
    assert_eq!(options(&epb[20 + 64..]), [(1, b"rule \"flood\"".to_vec())]);
    assert!(options(&b[3].1[20 + 8..]).is_empty());

    let mut r = PcapReader::new(&file[..]).unwrap();
    assert!(r.header().pcapng && r.header().nanos);
    let mut buf = Vec::new();
    let rec = r.next_packet(&mut buf).unwrap().unwrap();
    assert_eq!(
        (rec.ts_ns, rec.caplen, rec.orig_len),
        (1_700_000_000_123_456_789, 64, 99)
    );
    assert_eq!(buf, frame[..64]);
    let rec = r.next_packet(&mut buf).unwrap().unwrap();
    assert_eq!((rec.ts_ns, rec.orig_len, buf.len()), (5, 7, 7));
    assert!(r.next_packet(&mut buf).unwrap().is_none());
}

#[test]
fn long_comments_are_cut_to_what_an_option_holds() {
    let mut file = Vec::new();
    let mut w = PcapngWriter::new(&mut file, 1500, "x", None).unwrap();
    let long = "c".repeat(70_000);
    w.write_packet(1, &[0; 60], Some(&long)).unwrap();
    assert_eq!(w.bytes_written(), file.len() as u64);
    let mut r = PcapReader::new(&file[..]).unwrap();
    let mut buf = Vec::new();
    assert_eq!(r.next_packet(&mut buf).unwrap().unwrap().orig_len, 60);
}
