//! Classic libpcap files (no libpcap dependency): a reader for replay that accepts both byte
//! orders and microsecond/nanosecond magic, and a writer for capture (little-endian,
//! microseconds, LINKTYPE_ETHERNET).
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

/// pcap errors: where in the file and why.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// Reading or writing failed.
    #[error("pcap I/O error: {0}")]
    Io(#[from] io::Error),
    /// The file ends inside the 24-byte global header.
    #[error("pcap: file is {got} bytes, shorter than the 24-byte global header")]
    TruncatedHeader {
        /// Bytes present.
        got: usize,
    },
    /// Not a pcap file.
    #[error("pcap: bad magic 0x{0:08x} (not a classic pcap file; pcapng is not supported)")]
    BadMagic(u32),
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

/// Global header facts of an opened file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcapHeader {
    /// File is big-endian.
    pub big_endian: bool,
    /// Timestamps are in nanoseconds.
    pub nanos: bool,
    /// Version major.
    pub version_major: u16,
    /// Version minor.
    pub version_minor: u16,
    /// Snapshot length.
    pub snaplen: u32,
    /// Link type.
    pub linktype: u32,
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

/// pcap reader.
#[derive(Debug)]
pub struct PcapReader<R: Read> {
    inner: R,
    header: PcapHeader,
    index: u64,
    offset: u64,
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
                log::warn!("pcap replay stopped: {e}");
                self.error = Some(e);
                None
            }
        }
    }
}

/// pcap writer: little-endian, microsecond timestamps, Ethernet.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    inner: W,
    snaplen: u32,
    /// Records written.
    pub written: u64,
    /// Virtual clock used by the [`crate::sink::FrameSink`] impl (1 µs per frame).
    clock_ns: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header (version 2.4, `snaplen`, LINKTYPE_ETHERNET). `snaplen` is
    /// kept within 1 and the reader's largest record (4 × [`MAX_RECORD`]), so that every
    /// record written is one [`PcapReader`] accepts.
    pub fn new(mut inner: W, snaplen: u32) -> Result<PcapWriter<W>, PcapError> {
        let snaplen = snaplen.clamp(1, MAX_RECORD * 4);
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&MAGIC_MICROS.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone, sigfigs = 0
        h[16..20].copy_from_slice(&snaplen.to_le_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        inner.write_all(&h)?;
        Ok(PcapWriter {
            inner,
            snaplen,
            written: 0,
            clock_ns: 0,
        })
    }

    /// Appends one frame with timestamp `ts_ns` (truncated to µs; data cut to snaplen).
    pub fn write_packet(&mut self, ts_ns: u64, frame: &[u8]) -> Result<(), PcapError> {
        let cap = frame.len().min(self.snaplen as usize);
        let mut rh = [0u8; 16];
        rh[0..4].copy_from_slice(&((ts_ns / 1_000_000_000) as u32).to_le_bytes());
        rh[4..8].copy_from_slice(&((ts_ns % 1_000_000_000 / 1000) as u32).to_le_bytes());
        rh[8..12].copy_from_slice(&(cap as u32).to_le_bytes());
        rh[12..16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        self.inner.write_all(&rh)?;
        self.inner.write_all(&frame[..cap])?;
        self.written += 1;
        Ok(())
    }

    /// Flushes and returns the inner writer.
    pub fn into_inner(mut self) -> Result<W, PcapError> {
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write + Send> crate::sink::FrameSink for PcapWriter<W> {
    fn frame(&mut self, frame: &[u8]) {
        let ts = self.clock_ns;
        self.clock_ns += 1000;
        if let Err(e) = self.write_packet(ts, frame) {
            log::warn!("pcap capture: {e}");
        }
    }
}
