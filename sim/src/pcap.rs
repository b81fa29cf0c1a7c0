//! Capture files without libpcap: the one pcap implementation of the workspace (the daemon's
//! `pcapfile` module builds its path-naming errors and rotating, safely created captures on
//! it).
//!
//! The reader takes classic pcap files in both byte orders with microsecond or nanosecond
//! magic, and pcapng files (section header, interface description, enhanced and simple packet
//! blocks; other blocks are skipped; `if_tsresol` honoured; every interface must have the first
//! one's link type). The writer produces classic pcap, little-endian, LINKTYPE_ETHERNET, with
//! microsecond ([`PcapWriter::new`]) or nanosecond ([`PcapWriter::new_nanos`]) time stamps;
//! [`PcapngWriter`] writes pcapng (one section, one Ethernet interface with a name and a
//! description, nanosecond time stamps, enhanced packet blocks with an optional comment).
//!
//! ```
//! use floodgate_sim::pcap::{PcapReader, PcapWriter};
//! let mut file = Vec::new();
//! let mut w = PcapWriter::new(&mut file, 65535).unwrap();
//! w.write_packet(1_500_000_123, &[0xAA; 60]).unwrap();
//! drop(w);
//! let mut r = PcapReader::new(&file[..]).unwrap();
//! let mut buf = Vec::new();
//! let rec = r.next_packet(&mut buf).unwrap().unwrap();
//! assert_eq!((rec.ts_ns, rec.orig_len, buf.len()), (1_500_000_000, 60, 60));
//! assert!(r.next_packet(&mut buf).unwrap().is_none());
//! ```

use std::io::{self, Read, Write};

/// Magic of microsecond files (as written in the file's own byte order).
pub const MAGIC_MICROS: u32 = 0xA1B2_C3D4;
/// Magic of nanosecond files.
pub const MAGIC_NANOS: u32 = 0xA1B2_3C4D;
/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Largest record the reader accepts (the 256 KiB libpcap uses as its maximum snapshot length).
pub const MAX_RECORD: u32 = 262_144;
/// Bytes of the classic global header.
pub const GLOBAL_HEADER_LEN: u64 = 24;
/// Bytes of a classic record header.
pub const RECORD_HEADER_LEN: u64 = 16;
/// Block type of a pcapng section header, the first word of every pcapng file (the same in
/// both byte orders).
pub const PCAPNG_SECTION_HEADER: u32 = 0x0A0D_0D0A;
/// pcapng byte-order magic, as written in the section's own byte order.
const PCAPNG_BYTE_ORDER: u32 = 0x1A2B_3C4D;
const PCAPNG_INTERFACE: u32 = 1;
const PCAPNG_SIMPLE_PACKET: u32 = 3;
const PCAPNG_ENHANCED_PACKET: u32 = 6;
/// Largest pcapng block the reader accepts: a largest record plus room for options.
const PCAPNG_MAX_BLOCK: u32 = 4 * MAX_RECORD + 65_536;

/// pcap errors: where in the file and why.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// Reading or writing failed.
    #[error("pcap I/O error")]
    Io(#[from] io::Error),
    /// The file ends inside the 24-byte global header.
    #[error("pcap: file is {got} bytes, shorter than the 24-byte global header")]
    TruncatedHeader {
        /// Bytes present.
        got: usize,
    },
    /// Neither a pcap nor a pcapng file.
    #[error("pcap: bad magic 0x{0:08x} (neither a classic pcap nor a pcapng file)")]
    BadMagic(u32),
    /// A pcapng block that cannot be read (cut short, impossible lengths, unknown interface).
    #[error("pcapng: block at byte offset {offset}: {what}")]
    Pcapng {
        /// Offset of the block in the file.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A record header or body is cut short.
    #[error("pcap: record {index} at byte offset {offset} is truncated: needed {need} bytes, found {got}")]
    TruncatedRecord {
        /// Record number (0-based).
        index: u64,
        /// Offset of the record header in the file.
        offset: u64,
        /// Bytes needed.
        need: usize,
        /// Bytes found.
        got: usize,
    },
    /// A record claims an impossible length.
    #[error("pcap: record {index} at byte offset {offset} has captured length {caplen} (original {orig_len}); the limit is {limit}")]
    BadRecordLength {
        /// Record number.
        index: u64,
        /// Offset of the record header.
        offset: u64,
        /// Captured length field.
        caplen: u32,
        /// Original length field.
        orig_len: u32,
        /// Accepted maximum.
        limit: u32,
    },
}

/// Global header facts of an opened file (for pcapng: of its first section and interface).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcapHeader {
    /// File is big-endian.
    pub big_endian: bool,
    /// Timestamps are in nanoseconds (pcapng: the first interface's resolution is 1 ns or
    /// finer).
    pub nanos: bool,
    /// Version major.
    pub version_major: u16,
    /// Version minor.
    pub version_minor: u16,
    /// Snapshot length (pcapng: of the first interface; 0 = none).
    pub snaplen: u32,
    /// Link type (pcapng: of the first interface; Ethernet for a file without one).
    pub linktype: u32,
    /// The file is pcapng.
    pub pcapng: bool,
}

/// One record's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcapRecord {
    /// Timestamp in ns since the epoch.
    pub ts_ns: u64,
    /// Length on the wire.
    pub orig_len: u32,
    /// Bytes captured (= the data returned).
    pub caplen: u32,
}

/// Reads exactly `buf.len()` bytes or reports how many were available.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// pcap and pcapng reader.
#[derive(Debug)]
pub struct PcapReader<R: Read> {
    inner: R,
    header: PcapHeader,
    index: u64,
    offset: u64,
    /// pcapng only: the current section's interfaces and the block being read.
    ng: Option<NgState>,
}

/// What a pcapng reader keeps between blocks.
#[derive(Debug, Default)]
struct NgState {
    /// The current section is big-endian.
    big_endian: bool,
    /// The current section's interfaces, by id.
    interfaces: Vec<NgInterface>,
    /// Body of the last block read (trailer removed).
    block: Vec<u8>,
}

/// One pcapng interface description.
#[derive(Debug, Clone, Copy)]
struct NgInterface {
    linktype: u32,
    snaplen: u32,
    /// `if_tsresol`: bit 7 clear = 10^-n seconds, set = 2^-n seconds; default 6 (µs).
    tsresol: u8,
}

/// A pcapng time stamp (units of `tsresol`) in nanoseconds.
fn ng_ts_ns(units: u64, tsresol: u8) -> u64 {
    let n = u32::from(tsresol & 0x7F);
    if tsresol & 0x80 != 0 {
        ((u128::from(units) * 1_000_000_000) >> n.min(127)) as u64
    } else if n <= 9 {
        units.saturating_mul(10u64.pow(9 - n))
    } else {
        10u64.checked_pow(n - 9).map_or(0, |d| units / d)
    }
}

impl<R: Read> PcapReader<R> {
    /// Reads and checks the global header.
    pub fn new(mut inner: R) -> Result<PcapReader<R>, PcapError> {
        let mut h = [0u8; 24];
        let got = read_full(&mut inner, &mut h)?;
        if got < 24 {
            return Err(PcapError::TruncatedHeader { got });
        }
        let le = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        if le == PCAPNG_SECTION_HEADER {
            return Self::new_pcapng(inner, h);
        }
        let (big_endian, nanos) = match le {
            MAGIC_MICROS => (false, false),
            MAGIC_NANOS => (false, true),
            m if m.swap_bytes() == MAGIC_MICROS => (true, false),
            m if m.swap_bytes() == MAGIC_NANOS => (true, true),
            m => return Err(PcapError::BadMagic(m)),
        };
        let u16_at = |o: usize| {
            let b = [h[o], h[o + 1]];
            if big_endian {
                u16::from_be_bytes(b)
            } else {
                u16::from_le_bytes(b)
            }
        };
        let u32_at = |o: usize| {
            let b = [h[o], h[o + 1], h[o + 2], h[o + 3]];
            if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let header = PcapHeader {
            big_endian,
            nanos,
            version_major: u16_at(4),
            version_minor: u16_at(6),
            snaplen: u32_at(16),
            linktype: u32_at(20) & 0x0FFF_FFFF,
            pcapng: false,
        };
        if header.linktype != LINKTYPE_ETHERNET {
            log::warn!(
                "pcap: link type {} is not Ethernet; frames are passed as-is",
                header.linktype
            );
        }
        Ok(PcapReader {
            inner,
            header,
            index: 0,
            offset: 24,
            ng: None,
        })
    }

    /// The global header.
    pub fn header(&self) -> &PcapHeader {
        &self.header
    }

    fn u32(&self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.header.big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }

    /// Reads the next record into `buf` (resized to the captured length, reusing its
    /// allocation). `Ok(None)` at a clean end of file.
    pub fn next_packet(&mut self, buf: &mut Vec<u8>) -> Result<Option<PcapRecord>, PcapError> {
        if self.ng.is_some() {
            return self.next_ng_packet(buf);
        }
        let mut rh = [0u8; 16];
        let got = read_full(&mut self.inner, &mut rh)?;
        if got == 0 {
            return Ok(None);
        }
        if got < 16 {
            return Err(PcapError::TruncatedRecord {
                index: self.index,
                offset: self.offset,
                need: 16,
                got,
            });
        }
        let sec = self.u32(&rh[0..4]);
        let frac = self.u32(&rh[4..8]);
        let caplen = self.u32(&rh[8..12]);
        let orig_len = self.u32(&rh[12..16]);
        let limit = MAX_RECORD.max(self.header.snaplen.min(MAX_RECORD * 4));
        let frac_limit = if self.header.nanos {
            1_000_000_000
        } else {
            1_000_000
        };
        if caplen > limit || frac >= frac_limit {
            return Err(PcapError::BadRecordLength {
                index: self.index,
                offset: self.offset,
                caplen,
                orig_len,
                limit,
            });
        }
        buf.resize(caplen as usize, 0);
        let got = read_full(&mut self.inner, buf)?;
        if got < caplen as usize {
            return Err(PcapError::TruncatedRecord {
                index: self.index,
                offset: self.offset,
                need: 16 + caplen as usize,
                got: 16 + got,
            });
        }
        let ts_ns = u64::from(sec) * 1_000_000_000
            + if self.header.nanos {
                u64::from(frac)
            } else {
                u64::from(frac) * 1000
            };
        self.index += 1;
        self.offset += 16 + u64::from(caplen);
        Ok(Some(PcapRecord {
            ts_ns,
            orig_len,
            caplen,
        }))
    }

    /// Reads every remaining record (control path; allocates).
    pub fn read_all(&mut self) -> Result<Vec<(PcapRecord, Vec<u8>)>, PcapError> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while let Some(r) = self.next_packet(&mut buf)? {
            out.push((r, buf.clone()));
        }
        Ok(out)
    }
}

// ---- pcapng ---------------------------------------------------------------------------------

impl<R: Read> PcapReader<R> {
    /// Opens a pcapng file whose first 24 bytes (of the section header block) are `h`, and
    /// reads up to its first interface description, which gives the link type.
    fn new_pcapng(inner: R, h: [u8; 24]) -> Result<PcapReader<R>, PcapError> {
        let big_endian = ng_byte_order(&h[8..12]).ok_or_else(|| PcapError::Pcapng {
            offset: 0,
            what: format!(
                "byte-order magic {:#010x} is not {PCAPNG_BYTE_ORDER:#010x} in either byte order",
                u32::from_be_bytes([h[8], h[9], h[10], h[11]])
            ),
        })?;
        let u16_at = |o: usize| {
            let b = [h[o], h[o + 1]];
            if big_endian {
                u16::from_be_bytes(b)
            } else {
                u16::from_le_bytes(b)
            }
        };
        let header = PcapHeader {
            big_endian,
            nanos: false,
            version_major: u16_at(12),
            version_minor: u16_at(14),
            snaplen: 0,
            linktype: LINKTYPE_ETHERNET,
            pcapng: true,
        };
        let mut r = PcapReader {
            inner: std::io::Cursor::new(h).chain(inner),
            header,
            index: 0,
            offset: 0,
            ng: Some(NgState::default()),
        };
        // Blocks before the first interface description carry no packets.
        while let Some(kind) = r.read_block()? {
            match kind {
                PCAPNG_INTERFACE => {
                    let first = r.ng_interfaces()[0];
                    r.header.linktype = first.linktype;
                    r.header.snaplen = first.snaplen;
                    r.header.nanos = ng_ts_ns(1, first.tsresol) <= 1;
                    break;
                }
                PCAPNG_SIMPLE_PACKET | PCAPNG_ENHANCED_PACKET => {
                    return Err(r.ng_err(0, "a packet block comes before any interface description"))
                }
                _ => {}
            }
        }
        let PcapReader {
            inner,
            header,
            index,
            offset,
            ng,
        } = r;
        // The section header's first 24 bytes came from the cursor, which is used up.
        let (_, inner) = inner.into_inner();
        Ok(PcapReader {
            inner,
            header,
            index,
            offset,
            ng,
        })
    }
}

/// The byte order a pcapng byte-order magic says (`Some(true)` = big-endian).
fn ng_byte_order(b: &[u8]) -> Option<bool> {
    let w = [b[0], b[1], b[2], b[3]];
    if u32::from_le_bytes(w) == PCAPNG_BYTE_ORDER {
        Some(false)
    } else if u32::from_be_bytes(w) == PCAPNG_BYTE_ORDER {
        Some(true)
    } else {
        None
    }
}

impl<R: Read> PcapReader<R> {
    fn ng(&mut self) -> &mut NgState {
        self.ng.as_mut().expect("pcapng reader")
    }

    fn ng_interfaces(&self) -> &[NgInterface] {
        self.ng.as_ref().map_or(&[], |n| n.interfaces.as_slice())
    }

    fn ng_err(&self, offset: u64, what: impl Into<String>) -> PcapError {
        PcapError::Pcapng {
            offset,
            what: what.into(),
        }
    }

    fn ng_u16(&self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        if self.ng.as_ref().is_some_and(|n| n.big_endian) {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        }
    }

    fn ng_u32(&self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.ng.as_ref().is_some_and(|n| n.big_endian) {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }

    /// Reads the next block into the block buffer and returns its type (`None` at a clean end
    /// of file). A section header switches the byte order and forgets the interfaces; an
    /// interface description is recorded.
    fn read_block(&mut self) -> Result<Option<u32>, PcapError> {
        let start = self.offset;
        let mut head = [0u8; 12];
        let got = read_full(&mut self.inner, &mut head)?;
        if got == 0 {
            return Ok(None);
        }
        if got < head.len() {
            return Err(self.ng_err(start, format!("cut short: {got} of at least 12 bytes")));
        }
        let section =
            u32::from_le_bytes([head[0], head[1], head[2], head[3]]) == PCAPNG_SECTION_HEADER;
        if section {
            let be = ng_byte_order(&head[8..12])
                .ok_or_else(|| self.ng_err(start, "section header without a byte-order magic"))?;
            let ng = self.ng();
            ng.big_endian = be;
            ng.interfaces.clear();
        }
        let kind = self.ng_u32(&head[0..4]);
        let len = self.ng_u32(&head[4..8]);
        if !len.is_multiple_of(4) || !(12..=PCAPNG_MAX_BLOCK).contains(&len) {
            return Err(self.ng_err(
                start,
                format!("block length {len} is not a multiple of 4 from 12 to {PCAPNG_MAX_BLOCK}"),
            ));
        }
        if section && len < 28 {
            return Err(self.ng_err(
                start,
                format!("section header of {len} bytes, shorter than 28"),
            ));
        }
        let len = len as usize;
        let mut block = std::mem::take(&mut self.ng().block);
        block.clear();
        block.extend_from_slice(&head[8..12]);
        block.resize(len - 8, 0);
        let got = read_full(&mut self.inner, &mut block[4..])?;
        if got < len - 12 {
            self.ng().block = block;
            return Err(self.ng_err(start, format!("cut short: {} of {len} bytes", 12 + got)));
        }
        let trailer = self.ng_u32(&block[len - 12..]);
        block.truncate(len - 12);
        self.ng().block = block;
        if trailer as usize != len {
            return Err(self.ng_err(
                start,
                format!("trailing length {trailer} differs from the leading {len}"),
            ));
        }
        self.offset += len as u64;
        if kind == PCAPNG_INTERFACE {
            let iface = self.parse_interface(start)?;
            self.ng().interfaces.push(iface);
        }
        Ok(Some(kind))
    }

    /// The interface description in the block buffer.
    fn parse_interface(&self, start: u64) -> Result<NgInterface, PcapError> {
        let b = self.ng.as_ref().map_or(&[][..], |n| n.block.as_slice());
        if b.len() < 8 {
            return Err(self.ng_err(start, "interface description shorter than 8 bytes"));
        }
        let mut iface = NgInterface {
            linktype: u32::from(self.ng_u16(&b[0..2])),
            snaplen: self.ng_u32(&b[4..8]),
            tsresol: 6,
        };
        let mut at = 8;
        while at + 4 <= b.len() {
            let code = self.ng_u16(&b[at..at + 2]);
            let olen = usize::from(self.ng_u16(&b[at + 2..at + 4]));
            if code == 0 {
                break;
            }
            let Some(value) = b.get(at + 4..at + 4 + olen) else {
                return Err(self.ng_err(start, format!("option {code} runs past the block")));
            };
            if code == 9 && olen >= 1 {
                iface.tsresol = value[0];
            }
            at += 4 + olen.next_multiple_of(4);
        }
        Ok(iface)
    }

    /// The interface `id` of the current section, which must have the file's link type.
    fn packet_interface(&self, start: u64, id: u32) -> Result<NgInterface, PcapError> {
        let Some(&iface) = self.ng_interfaces().get(id as usize) else {
            return Err(self.ng_err(
                start,
                format!("packet of interface {id}, which is not described"),
            ));
        };
        if iface.linktype != self.header.linktype {
            return Err(self.ng_err(
                start,
                format!(
                    "interface {id} has link type {}, the first interface {}; one link type                      per file is supported",
                    iface.linktype, self.header.linktype
                ),
            ));
        }
        Ok(iface)
    }

    /// The next enhanced or simple packet block, skipping every other block.
    fn next_ng_packet(&mut self, buf: &mut Vec<u8>) -> Result<Option<PcapRecord>, PcapError> {
        loop {
            let start = self.offset;
            let Some(kind) = self.read_block()? else {
                return Ok(None);
            };
            let b = self.ng.as_ref().map_or(&[][..], |n| n.block.as_slice());
            let (ts_ns, caplen, orig_len, data_at, iface) = match kind {
                PCAPNG_ENHANCED_PACKET => {
                    if b.len() < 20 {
                        return Err(
                            self.ng_err(start, "enhanced packet block shorter than 20 bytes")
                        );
                    }
                    let iface = self.packet_interface(start, self.ng_u32(&b[0..4]))?;
                    let units =
                        u64::from(self.ng_u32(&b[4..8])) << 32 | u64::from(self.ng_u32(&b[8..12]));
                    let caplen = self.ng_u32(&b[12..16]);
                    let orig_len = self.ng_u32(&b[16..20]);
                    (ng_ts_ns(units, iface.tsresol), caplen, orig_len, 20, iface)
                }
                PCAPNG_SIMPLE_PACKET => {
                    if b.len() < 4 {
                        return Err(self.ng_err(start, "simple packet block shorter than 4 bytes"));
                    }
                    let iface = self.packet_interface(start, 0)?;
                    let orig_len = self.ng_u32(&b[0..4]);
                    let mut caplen = orig_len.min((b.len() - 4) as u32);
                    if iface.snaplen != 0 {
                        caplen = caplen.min(iface.snaplen);
                    }
                    (0, caplen, orig_len, 4, iface)
                }
                _ => continue,
            };
            let limit = MAX_RECORD.max(iface.snaplen.min(MAX_RECORD * 4));
            if caplen > limit {
                return Err(PcapError::BadRecordLength {
                    index: self.index,
                    offset: start,
                    caplen,
                    orig_len,
                    limit,
                });
            }
            let Some(data) = b.get(data_at..data_at + caplen as usize) else {
                return Err(self.ng_err(
                    start,
                    format!("captured length {caplen} runs past the block"),
                ));
            };
            buf.clear();
            buf.extend_from_slice(data);
            self.index += 1;
            return Ok(Some(PcapRecord {
                ts_ns,
                orig_len,
                caplen,
            }));
        }
    }
}

/// Replay source for the engine: yields every record once; stops (logging why) at the end or
/// at the first error. Frames longer than the engine's buffer are cut to it.
pub struct PcapReplay<R: Read> {
    reader: PcapReader<R>,
    scratch: Vec<u8>,
    /// The error that ended the replay early, if any.
    pub error: Option<PcapError>,
}

impl<R: Read> PcapReplay<R> {
    /// Wraps a reader.
    pub fn new(reader: PcapReader<R>) -> PcapReplay<R> {
        PcapReplay {
            reader,
            scratch: Vec::with_capacity(2048),
            error: None,
        }
    }
}

impl<R: Read + Send> crate::sink::FrameSource for PcapReplay<R> {
    fn next_frame(&mut self, buf: &mut [u8]) -> Option<usize> {
        if self.error.is_some() {
            return None;
        }
        match self.reader.next_packet(&mut self.scratch) {
            Ok(Some(_)) => {
                let n = self.scratch.len().min(buf.len());
                buf[..n].copy_from_slice(&self.scratch[..n]);
                Some(n)
            }
            Ok(None) => None,
            Err(e) => {
                log::warn!(
                    "pcap replay stopped: {e}",
                    e = floodgate_vfio::ErrorChain(&e)
                );
                self.error = Some(e);
                None
            }
        }
    }
}

/// pcap writer: little-endian, Ethernet, microsecond or nanosecond time stamps.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    inner: W,
    snaplen: u32,
    nanos: bool,
    /// Records written.
    pub written: u64,
    /// Bytes written, headers included.
    bytes: u64,
    /// Virtual clock used by the [`crate::sink::FrameSink`] impl (1 µs per frame).
    clock_ns: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header (version 2.4, `snaplen`, LINKTYPE_ETHERNET, microsecond time
    /// stamps). `snaplen` is kept within 1 and the reader's largest record (4 × [`MAX_RECORD`]),
    /// so that every record written is one [`PcapReader`] accepts.
    pub fn new(inner: W, snaplen: u32) -> Result<PcapWriter<W>, PcapError> {
        Self::with_resolution(inner, snaplen, false)
    }

    /// Like [`PcapWriter::new`] with nanosecond time stamps (magic `0xa1b23c4d`).
    pub fn new_nanos(inner: W, snaplen: u32) -> Result<PcapWriter<W>, PcapError> {
        Self::with_resolution(inner, snaplen, true)
    }

    fn with_resolution(
        mut inner: W,
        snaplen: u32,
        nanos: bool,
    ) -> Result<PcapWriter<W>, PcapError> {
        let snaplen = snaplen.clamp(1, MAX_RECORD * 4);
        let magic = if nanos { MAGIC_NANOS } else { MAGIC_MICROS };
        let mut h = [0u8; GLOBAL_HEADER_LEN as usize];
        h[0..4].copy_from_slice(&magic.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone, sigfigs = 0
        h[16..20].copy_from_slice(&snaplen.to_le_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        inner.write_all(&h)?;
        Ok(PcapWriter {
            inner,
            snaplen: snaplen.max(1),
            nanos,
            written: 0,
            bytes: GLOBAL_HEADER_LEN,
            clock_ns: 0,
        })
    }

    /// Appends one frame with timestamp `ts_ns` (nanoseconds since the epoch; truncated to µs
    /// in a microsecond file; data cut to snaplen).
    pub fn write_packet(&mut self, ts_ns: u64, frame: &[u8]) -> Result<(), PcapError> {
        let orig = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let cap = orig.min(self.snaplen);
        let sec = u32::try_from(ts_ns / 1_000_000_000).unwrap_or(u32::MAX);
        let frac = if self.nanos {
            ts_ns % 1_000_000_000
        } else {
            ts_ns % 1_000_000_000 / 1000
        } as u32;
        let mut rh = [0u8; RECORD_HEADER_LEN as usize];
        rh[0..4].copy_from_slice(&sec.to_le_bytes());
        rh[4..8].copy_from_slice(&frac.to_le_bytes());
        rh[8..12].copy_from_slice(&cap.to_le_bytes());
        rh[12..16].copy_from_slice(&orig.to_le_bytes());
        self.inner.write_all(&rh)?;
        self.inner.write_all(&frame[..cap as usize])?;
        self.written += 1;
        self.bytes += RECORD_HEADER_LEN + u64::from(cap);
        Ok(())
    }

    /// Bytes written so far, headers included.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Bytes a record of a `frame_len`-byte frame takes.
    pub fn record_size(&self, frame_len: usize) -> u64 {
        RECORD_HEADER_LEN + (frame_len as u64).min(u64::from(self.snaplen))
    }

    /// Flushes the inner writer.
    pub fn flush(&mut self) -> Result<(), PcapError> {
        Ok(self.inner.flush()?)
    }

    /// Flushes and returns the inner writer.
    pub fn into_inner(mut self) -> Result<W, PcapError> {
        self.inner.flush()?;
        Ok(self.inner)
    }

    /// Returns the inner writer without flushing it.
    pub fn into_inner_unflushed(self) -> W {
        self.inner
    }
}

impl<W: Write + Send> crate::sink::FrameSink for PcapWriter<W> {
    fn frame(&mut self, frame: &[u8]) {
        let ts = self.clock_ns;
        self.clock_ns += 1000;
        if let Err(e) = self.write_packet(ts, frame) {
            log::warn!("pcap capture: {e}", e = floodgate_vfio::ErrorChain(&e));
        }
    }
}

// ---- pcapng writer --------------------------------------------------------------------------

/// pcapng option codes (pcapng §3.5, §4.2, §4.3).
const OPT_ENDOFOPT: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_DESCRIPTION: u16 = 3;
const IF_TSRESOL: u16 = 9;

/// Longest option value written (an option's length field is 16 bits); longer text is cut.
const MAX_OPTION: usize = 0xFFF0;

/// Bytes an option with a `len`-byte value takes (header, value, padding to 4).
fn option_size(len: usize) -> usize {
    4 + len.min(MAX_OPTION).next_multiple_of(4)
}

/// Appends one option (value cut to [`MAX_OPTION`] bytes, padded to 4).
fn push_option(b: &mut Vec<u8>, code: u16, value: &[u8]) {
    let v = &value[..value.len().min(MAX_OPTION)];
    b.extend_from_slice(&code.to_le_bytes());
    b.extend_from_slice(&(v.len() as u16).to_le_bytes());
    b.extend_from_slice(v);
    b.resize(b.len().next_multiple_of(4), 0);
}

/// Closes a block built in `b` (type and a length placeholder first): writes the options'
/// end marker when `options`, the trailing length, and the leading one.
fn finish_block(b: &mut Vec<u8>, options: bool) {
    if options {
        push_option(b, OPT_ENDOFOPT, &[]);
    }
    let len = (b.len() + 4) as u32;
    b.extend_from_slice(&len.to_le_bytes());
    b[4..8].copy_from_slice(&len.to_le_bytes());
}

/// pcapng writer: little-endian, one section, one interface (LINKTYPE_ETHERNET, a name, an
/// optional description, nanosecond time stamps), and an enhanced packet block per frame,
/// with an optional comment (`opt_comment`). Wireshark's default format; tcpdump and
/// [`PcapReader`] read it.
#[derive(Debug)]
pub struct PcapngWriter<W: Write> {
    inner: W,
    snaplen: u32,
    /// Records written.
    pub written: u64,
    bytes: u64,
    /// A block being built (kept to reuse its allocation).
    block: Vec<u8>,
}

impl<W: Write> PcapngWriter<W> {
    /// Writes the section header (`shb_userappl` "floodgate") and the interface description
    /// (`if_name` = `if_name`, `if_description` when given, `if_tsresol` = 9: nanoseconds).
    /// `snaplen` is kept within 1 and 4 × [`MAX_RECORD`], like [`PcapWriter`]'s.
    pub fn new(
        mut inner: W,
        snaplen: u32,
        if_name: &str,
        if_description: Option<&str>,
    ) -> Result<PcapngWriter<W>, PcapError> {
        let snaplen = snaplen.clamp(1, MAX_RECORD * 4);
        let mut b = Vec::with_capacity(256);
        b.extend_from_slice(&PCAPNG_SECTION_HEADER.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&PCAPNG_BYTE_ORDER.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        // Section length: not known in advance.
        b.extend_from_slice(&u64::MAX.to_le_bytes());
        push_option(&mut b, SHB_USERAPPL, b"floodgate");
        finish_block(&mut b, true);
        let shb = b.len();
        b.extend_from_slice(&PCAPNG_INTERFACE.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&(LINKTYPE_ETHERNET as u16).to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&snaplen.to_le_bytes());
        push_option(&mut b, IF_NAME, if_name.as_bytes());
        if let Some(d) = if_description {
            push_option(&mut b, IF_DESCRIPTION, d.as_bytes());
        }
        push_option(&mut b, IF_TSRESOL, &[9]);
        let mut idb = b.split_off(shb);
        finish_block(&mut idb, true);
        inner.write_all(&b)?;
        inner.write_all(&idb)?;
        let bytes = (b.len() + idb.len()) as u64;
        b.clear();
        Ok(PcapngWriter {
            inner,
            snaplen,
            written: 0,
            bytes,
            block: b,
        })
    }

    /// Appends one frame captured at `ts_ns` (nanoseconds since the epoch; data cut to the
    /// snaplen), with `comment` as its `opt_comment` when given.
    pub fn write_packet(
        &mut self,
        ts_ns: u64,
        frame: &[u8],
        comment: Option<&str>,
    ) -> Result<(), PcapError> {
        let orig = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let cap = orig.min(self.snaplen);
        let b = &mut self.block;
        b.clear();
        b.extend_from_slice(&PCAPNG_ENHANCED_PACKET.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&((ts_ns >> 32) as u32).to_le_bytes());
        b.extend_from_slice(&(ts_ns as u32).to_le_bytes());
        b.extend_from_slice(&cap.to_le_bytes());
        b.extend_from_slice(&orig.to_le_bytes());
        b.extend_from_slice(&frame[..cap as usize]);
        b.resize(b.len().next_multiple_of(4), 0);
        if let Some(c) = comment {
            push_option(b, OPT_COMMENT, c.as_bytes());
        }
        finish_block(b, comment.is_some());
        self.inner.write_all(b)?;
        self.written += 1;
        self.bytes += b.len() as u64;
        Ok(())
    }

    /// Bytes written so far, blocks of the header included.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Bytes the block of a `frame_len`-byte frame with a `comment_len`-byte comment (`None`:
    /// no comment) takes.
    pub fn record_size(&self, frame_len: usize, comment_len: Option<usize>) -> u64 {
        let cap = (frame_len as u64).min(u64::from(self.snaplen));
        let opts = comment_len.map_or(0, |c| option_size(c) + 4);
        32 + cap.next_multiple_of(4) + opts as u64
    }

    /// Flushes the inner writer.
    pub fn flush(&mut self) -> Result<(), PcapError> {
        Ok(self.inner.flush()?)
    }

    /// Returns the inner writer without flushing it.
    pub fn into_inner_unflushed(self) -> W {
        self.inner
    }
}
