//! pcapng input: files built block by block as the pcapng specification lays them out (both
//! byte orders, options, skipped blocks, several sections), and malformed ones refused with the
//! block's offset.

use floodgate_sim::pcap::{PcapError, PcapReader, PcapWriter};

/// Builds pcapng blocks in one byte order.
struct Ng {
    big: bool,
    out: Vec<u8>,
}

impl Ng {
    fn new(big: bool) -> Ng {
        Ng {
            big,
            out: Vec::new(),
        }
    }
    fn w16(&self, v: u16) -> [u8; 2] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn w32(&self, v: u32) -> [u8; 4] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    /// An option list: (code, value) pairs, each padded to 4 bytes, then opt_endofopt.
    fn options(&self, opts: &[(u16, &[u8])]) -> Vec<u8> {
        let mut o = Vec::new();
        for (code, v) in opts {
            o.extend_from_slice(&self.w16(*code));
            o.extend_from_slice(&self.w16(v.len() as u16));
            o.extend_from_slice(v);
            o.resize(o.len().next_multiple_of(4), 0);
        }
        if !opts.is_empty() {
            o.extend_from_slice(&[0; 4]);
        }
        o
    }
    fn block(&mut self, kind: u32, body: &[u8]) -> &mut Ng {
        let mut body = body.to_vec();
        body.resize(body.len().next_multiple_of(4), 0);
        let len = 12 + body.len() as u32;
        let (k, l) = (self.w32(kind), self.w32(len));
        self.out.extend_from_slice(&k);
        self.out.extend_from_slice(&l);
        self.out.extend_from_slice(&body);
        self.out.extend_from_slice(&l);
        self
    }
    fn section(&mut self, opts: &[(u16, &[u8])]) -> &mut Ng {
        let mut b = Vec::new();
        b.extend_from_slice(&self.w32(0x1A2B_3C4D));
        b.extend_from_slice(&self.w16(1));
        b.extend_from_slice(&self.w16(0));
        b.extend_from_slice(&u64::MAX.to_le_bytes()); // section length unknown
        b.extend_from_slice(&self.options(opts));
        self.block(0x0A0D_0D0A, &b)
    }
    fn interface(&mut self, linktype: u16, snaplen: u32, tsresol: Option<u8>) -> &mut Ng {
        let mut b = Vec::new();
        b.extend_from_slice(&self.w16(linktype));
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&self.w32(snaplen));
        let res = tsresol.map(|r| [r]);
        let opts: Vec<(u16, &[u8])> = match &res {
            Some(r) => vec![(2, b"eth0".as_slice()), (9, r.as_slice())],
            None => vec![],
        };
        b.extend_from_slice(&self.options(&opts));
        self.block(1, &b)
    }
    fn enhanced(&mut self, iface: u32, units: u64, frame: &[u8], orig: u32) -> &mut Ng {
        let mut b = Vec::new();
        b.extend_from_slice(&self.w32(iface));
        b.extend_from_slice(&self.w32((units >> 32) as u32));
        b.extend_from_slice(&self.w32(units as u32));
        b.extend_from_slice(&self.w32(frame.len() as u32));
        b.extend_from_slice(&self.w32(orig));
        b.extend_from_slice(frame);
        b.resize(b.len().next_multiple_of(4), 0);
        let opts = self.options(&[(1, b"a comment".as_slice())]);
        b.extend_from_slice(&opts);
        self.block(6, &b)
    }
    fn simple(&mut self, frame: &[u8]) -> &mut Ng {
        let mut b = self.w32(frame.len() as u32).to_vec();
        b.extend_from_slice(frame);
        self.block(3, &b)
    }
}

fn frame(n: usize, fill: u8) -> Vec<u8> {
    (0..n).map(|i| fill.wrapping_add(i as u8)).collect()
}

fn read_all(bytes: &[u8]) -> Result<Vec<(u64, u32, Vec<u8>)>, PcapError> {
    let mut r = PcapReader::new(bytes)?;
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while let Some(rec) = r.next_packet(&mut buf)? {
        assert_eq!(rec.caplen as usize, buf.len());
        out.push((rec.ts_ns, rec.orig_len, buf.clone()));
    }
    Ok(out)
}

#[test]
fn both_byte_orders_with_options_and_skipped_blocks() {
    for big in [false, true] {
        let mut ng = Ng::new(big);
        ng.section(&[(4, b"floodgate test".as_slice())])
            .interface(1, 0, Some(9)) // nanoseconds
            .enhanced(0, 1_500_000_000_123_456_789, &frame(61, 1), 61)
            .block(5, &[0; 20]) // interface statistics: skipped
            .simple(&frame(60, 2))
            .block(0x0000_0BAD, &[1, 2, 3, 4]) // custom block: skipped
            .enhanced(0, 7, &frame(40, 3), 1500); // cut at capture
        let r = PcapReader::new(&ng.out[..]).unwrap();
        let h = *r.header();
        assert!(h.pcapng);
        assert_eq!(
            (h.big_endian, h.nanos, h.linktype, h.snaplen),
            (big, true, 1, 0)
        );
        assert_eq!((h.version_major, h.version_minor), (1, 0));
        let recs = read_all(&ng.out).unwrap();
        assert_eq!(
            recs,
            vec![
                (1_500_000_000_123_456_789, 61, frame(61, 1)),
                (0, 60, frame(60, 2)),
                (7, 1500, frame(40, 3)),
            ]
        );
    }
}

#[test]
fn time_stamp_resolutions() {
    // Default microseconds, a decimal 10^-3, and a binary 2^-10 resolution.
    for (tsresol, units, want) in [
        (None, 2_000_001u64, 2_000_001_000u64),
        (Some(3), 1500, 1_500_000_000),
        (Some(0x80 | 10), 3 * 1024 + 512, 3_500_000_000),
    ] {
        let mut ng = Ng::new(false);
        ng.section(&[])
            .interface(1, 65535, tsresol)
            .enhanced(0, units, &frame(60, 0), 60);
        let r = PcapReader::new(&ng.out[..]).unwrap();
        assert!(!r.header().nanos);
        assert_eq!(r.header().snaplen, 65535);
        assert_eq!(read_all(&ng.out).unwrap()[0].0, want, "{tsresol:?}");
    }
}

#[test]
fn a_second_section_in_the_other_byte_order() {
    let mut first = Ng::new(false);
    first
        .section(&[])
        .interface(1, 0, None)
        .enhanced(0, 1, &frame(60, 1), 60);
    let mut second = Ng::new(true);
    second
        .section(&[])
        .interface(1, 0, Some(9))
        .interface(1, 0, Some(9))
        .enhanced(1, 5, &frame(64, 2), 64);
    let mut bytes = first.out.clone();
    bytes.extend_from_slice(&second.out);
    assert_eq!(
        read_all(&bytes).unwrap(),
        vec![(1000, 60, frame(60, 1)), (5, 64, frame(64, 2))]
    );
    // The second section's interfaces replace the first's: interface 1 of the first section
    // does not exist.
    let mut bad = first.out.clone();
    bad.extend_from_slice(&Ng::new(false).enhanced(1, 0, &frame(60, 0), 60).out);
    let e = read_all(&bad).unwrap_err();
    assert!(
        e.to_string()
            .contains("interface 1, which is not described"),
        "{e}"
    );
}

#[test]
fn malformed_files_are_refused_with_the_block_offset() {
    let mut good = Ng::new(false);
    good.section(&[]).interface(1, 0, None);
    let shb_idb = good.out.len() as u64;
    // A packet before any interface description.
    let mut ng = Ng::new(false);
    ng.section(&[]).enhanced(0, 0, &frame(60, 0), 60);
    let e = PcapReader::new(&ng.out[..]).unwrap_err();
    assert!(e.to_string().contains("before any interface"), "{e}");
    // A trailing length that differs from the leading one.
    let mut bytes = good.out.clone();
    bytes.extend_from_slice(&Ng::new(false).enhanced(0, 0, &frame(60, 0), 60).out);
    let n = bytes.len();
    bytes[n - 4] ^= 4;
    let e = read_all(&bytes).unwrap_err();
    assert!(
        matches!(&e, PcapError::Pcapng { offset, .. } if *offset == shb_idb),
        "{e}"
    );
    assert!(e.to_string().contains("trailing length"), "{e}");
    // A block cut short.
    let mut bytes = good.out.clone();
    bytes.extend_from_slice(&Ng::new(false).enhanced(0, 0, &frame(60, 0), 60).out);
    bytes.truncate(bytes.len() - 10);
    let e = read_all(&bytes).unwrap_err();
    assert!(e.to_string().contains("cut short"), "{e}");
    // A captured length past the block.
    let mut bytes = good.out.clone();
    let mut epb = Ng::new(false);
    epb.enhanced(0, 0, &frame(60, 0), 60);
    epb.out[20..24].copy_from_slice(&200u32.to_le_bytes());
    bytes.extend_from_slice(&epb.out);
    let e = read_all(&bytes).unwrap_err();
    assert!(e.to_string().contains("runs past the block"), "{e}");
    // An interface of another link type.
    let mut bytes = good.out.clone();
    bytes.extend_from_slice(
        &Ng::new(false)
            .interface(113, 0, None)
            .enhanced(1, 0, &frame(60, 0), 60)
            .out,
    );
    let e = read_all(&bytes).unwrap_err();
    assert!(e.to_string().contains("link type 113"), "{e}");
    // A section header too short to hold its fixed fields.
    let mut bytes = good.out.clone();
    bytes.extend_from_slice(&[0x0A, 0x0D, 0x0D, 0x0A, 20, 0, 0, 0, 0x4D, 0x3C, 0x2B, 0x1A]);
    bytes.extend_from_slice(&[0, 0, 0, 0, 20, 0, 0, 0]);
    let e = read_all(&bytes).unwrap_err();
    assert!(e.to_string().contains("shorter than 28"), "{e}");
    // A block length that is not a multiple of 4.
    let mut bytes = good.out.clone();
    bytes.extend_from_slice(&[6, 0, 0, 0, 13, 0, 0, 0, 0, 0, 0, 0, 0]);
    let e = read_all(&bytes).unwrap_err();
    assert!(e.to_string().contains("not a multiple of 4"), "{e}");
}

#[test]
fn garbage_blocks_never_panic() {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for round in 0..400 {
        let mut ng = Ng::new(round % 2 == 1);
        ng.section(&[]).interface(1, 0, Some(9));
        let keep = ng.out.len();
        ng.enhanced(0, 1, &frame(60, 0), 60);
        // Flip a few bytes after the headers, or append noise.
        for _ in 0..(round % 7 + 1) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = keep + (x as usize) % (ng.out.len() - keep);
            ng.out[at] = (x >> 32) as u8;
        }
        for _ in 0..(round % 13) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ng.out.push(x as u8);
        }
        // Ends in a clean end of file or an error, never a panic and never a loop.
        if let Ok(recs) = read_all(&ng.out) {
            assert!(recs.len() <= 2);
        }
    }
}

#[test]
fn the_writer_still_writes_classic_pcap() {
    let mut w = PcapWriter::new_nanos(Vec::new(), 65535).unwrap();
    w.write_packet(1_000_000_007, &frame(60, 9)).unwrap();
    assert_eq!(w.bytes_written(), 24 + 16 + 60);
    let bytes = w.into_inner().unwrap();
    let mut r = PcapReader::new(&bytes[..]).unwrap();
    assert!(!r.header().pcapng && r.header().nanos);
    let mut buf = Vec::new();
    assert_eq!(
        r.next_packet(&mut buf).unwrap().unwrap().ts_ns,
        1_000_000_007
    );
    assert_eq!(buf, frame(60, 9));
}
