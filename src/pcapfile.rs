//! Reading and writing classic pcap files (not pcapng), without libpcap.
//!
//! The reader accepts both byte orders and both timestamp resolutions (microsecond magic
//! `0xa1b2c3d4`, nanosecond magic `0xa1b23c4d`). The writer produces native-endian files with
//! nanosecond timestamps, which tcpdump, Wireshark and this reader all accept.
//! [`RotatingPcapWriter`] bounds the disk space: when the current file would exceed a byte limit
//! it is renamed to `NAME.1` (older ones shift to `NAME.2`, …) and a fresh file is started; at
//! most `max_files` files exist at any time.
//!
//! The rotating writer works in the file's directory, opened once ([`crate::safefile::Dir`]):
//! files are created with `O_CREAT | O_EXCL | O_NOFOLLOW`, mode 0600 (captures hold traffic),
//! and rotation renames directory entries. A symbolic link (or anything but a regular file) at
//! the capture path is refused with an error naming it; nothing is ever written through a link.
//! A capture left by an earlier run is rotated to `NAME.1` like a full one, not truncated.

use crate::safefile::{self, Dir, EntryKind};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// `LINKTYPE_ETHERNET`.
pub const LINKTYPE_ETHERNET: u32 = 1;
const MAGIC_US: u32 = 0xa1b2_c3d4;
const MAGIC_NS: u32 = 0xa1b2_3c4d;
/// Largest record the reader accepts, whatever the file's snaplen says.
pub const MAX_RECORD: u32 = 262_144;
const GLOBAL_HEADER_LEN: u64 = 24;
const RECORD_HEADER_LEN: u64 = 16;

/// Errors reading or writing pcap files.
#[derive(Debug, thiserror::Error)]
pub enum PcapFileError {
    /// An I/O error on `path`.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: io::Error,
    },
    /// The file does not start with a pcap magic number.
    #[error("{path}: not a classic pcap file (magic {magic:#010x}; pcapng is not supported, convert with `editcap -F pcap`)")]
    BadMagic {
        /// The file.
        path: String,
        /// The first four bytes.
        magic: u32,
    },
    /// The file ends in the middle of the global header or of a record.
    #[error("{path}: truncated {what}")]
    Truncated {
        /// The file.
        path: String,
        /// What was cut short, e.g. "record 7 header".
        what: String,
    },
    /// A record claims an unreasonable captured length.
    #[error("{path}: record {index} claims {len} captured bytes (at most {MAX_RECORD} accepted)")]
    RecordTooLarge {
        /// The file.
        path: String,
        /// Record index (0-based).
        index: u64,
        /// Claimed length.
        len: u32,
    },
}

/// The header of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Capture time in nanoseconds since the Unix epoch.
    pub ts_nanos: u64,
    /// Bytes present in the file.
    pub caplen: u32,
    /// Length of the frame on the wire.
    pub orig_len: u32,
}

/// A streaming reader of classic pcap files.
pub struct PcapReader<R> {
    inner: R,
    name: String,
    swapped: bool,
    nanos: bool,
    linktype: u32,
    snaplen: u32,
    index: u64,
}

impl PcapReader<io::BufReader<File>> {
    /// Opens a pcap file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, PcapFileError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let f = File::open(path).map_err(|source| PcapFileError::Io {
            path: name.clone(),
            source,
        })?;
        Self::new(io::BufReader::new(f), name)
    }
}

/// Reads as many bytes as possible; returns how many were read (short only at end of file).
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl<R: Read> PcapReader<R> {
    /// Reads the global header from `inner`; `name` is used in error messages.
    pub fn new(mut inner: R, name: impl Into<String>) -> Result<Self, PcapFileError> {
        let name = name.into();
        let mut h = [0u8; GLOBAL_HEADER_LEN as usize];
        let n = read_full(&mut inner, &mut h).map_err(|source| PcapFileError::Io {
            path: name.clone(),
            source,
        })?;
        if n < h.len() {
            return Err(PcapFileError::Truncated {
                path: name,
                what: "global header".into(),
            });
        }
        let magic_le = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let magic_be = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        // `swapped` means "the file is big-endian" here; fields are decoded accordingly.
        let (swapped, nanos) = match (magic_le, magic_be) {
            (MAGIC_US, _) => (false, false),
            (MAGIC_NS, _) => (false, true),
            (_, MAGIC_US) => (true, false),
            (_, MAGIC_NS) => (true, true),
            _ => {
                return Err(PcapFileError::BadMagic {
                    path: name,
                    magic: magic_be,
                })
            }
        };
        let mut r = PcapReader {
            inner,
            name,
            swapped,
            nanos,
            linktype: 0,
            snaplen: 0,
            index: 0,
        };
        r.snaplen = r.u32_at(&h, 16);
        r.linktype = r.u32_at(&h, 20);
        Ok(r)
    }

    fn u32_at(&self, b: &[u8], at: usize) -> u32 {
        let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if self.swapped {
            u32::from_be_bytes(v)
        } else {
            u32::from_le_bytes(v)
        }
    }

    /// The file's link type (1 = Ethernet).
    pub fn linktype(&self) -> u32 {
        self.linktype
    }

    /// The file's snapshot length.
    pub fn snaplen(&self) -> u32 {
        self.snaplen
    }

    /// `true` for nanosecond-resolution files.
    pub fn is_nanosecond(&self) -> bool {
        self.nanos
    }

    /// Reads the next record into `buf` (replacing its contents). Returns `None` at a clean end
    /// of file.
    pub fn next_record(
        &mut self,
        buf: &mut Vec<u8>,
    ) -> Result<Option<RecordHeader>, PcapFileError> {
        let mut h = [0u8; RECORD_HEADER_LEN as usize];
        let io_err = |name: &str, source| PcapFileError::Io {
            path: name.to_string(),
            source,
        };
        let n = read_full(&mut self.inner, &mut h).map_err(|e| io_err(&self.name, e))?;
        if n == 0 {
            return Ok(None);
        }
        if n < h.len() {
            return Err(PcapFileError::Truncated {
                path: self.name.clone(),
                what: format!("record {} header", self.index),
            });
        }
        let sec = u64::from(self.u32_at(&h, 0));
        let frac = u64::from(self.u32_at(&h, 4));
        let caplen = self.u32_at(&h, 8);
        let orig_len = self.u32_at(&h, 12);
        if caplen > MAX_RECORD {
            return Err(PcapFileError::RecordTooLarge {
                path: self.name.clone(),
                index: self.index,
                len: caplen,
            });
        }
        buf.clear();
        buf.resize(caplen as usize, 0);
        let n = read_full(&mut self.inner, buf).map_err(|e| io_err(&self.name, e))?;
        if n < buf.len() {
            return Err(PcapFileError::Truncated {
                path: self.name.clone(),
                what: format!("record {} data ({n} of {caplen} bytes)", self.index),
            });
        }
        self.index += 1;
        let ts_nanos = sec * 1_000_000_000 + if self.nanos { frac } else { frac * 1000 };
        Ok(Some(RecordHeader {
            ts_nanos,
            caplen,
            orig_len,
        }))
    }
}

/// Writes a classic pcap file (native byte order, nanosecond timestamps).
pub struct PcapWriter<W: Write> {
    inner: W,
    snaplen: u32,
    written: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header for Ethernet frames cut at `snaplen` bytes. A `snaplen` above
    /// [`MAX_RECORD`] is lowered to it, so that every record written is one the reader accepts.
    pub fn new(mut inner: W, snaplen: u32) -> io::Result<Self> {
        let snaplen = snaplen.min(MAX_RECORD);
        let mut h = [0u8; GLOBAL_HEADER_LEN as usize];
        h[0..4].copy_from_slice(&MAGIC_NS.to_ne_bytes());
        h[4..6].copy_from_slice(&2u16.to_ne_bytes());
        h[6..8].copy_from_slice(&4u16.to_ne_bytes());
        // thiszone and sigfigs stay 0.
        h[16..20].copy_from_slice(&snaplen.to_ne_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_ne_bytes());
        inner.write_all(&h)?;
        Ok(PcapWriter {
            inner,
            snaplen,
            written: GLOBAL_HEADER_LEN,
        })
    }

    /// Appends one frame captured at `ts_nanos` (nanoseconds since the Unix epoch), cut to the
    /// snaplen.
    pub fn write_frame(&mut self, ts_nanos: u64, frame: &[u8]) -> io::Result<()> {
        let orig = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let cap = orig.min(self.snaplen);
        let mut h = [0u8; RECORD_HEADER_LEN as usize];
        let sec = u32::try_from(ts_nanos / 1_000_000_000).unwrap_or(u32::MAX);
        let ns = (ts_nanos % 1_000_000_000) as u32;
        h[0..4].copy_from_slice(&sec.to_ne_bytes());
        h[4..8].copy_from_slice(&ns.to_ne_bytes());
        h[8..12].copy_from_slice(&cap.to_ne_bytes());
        h[12..16].copy_from_slice(&orig.to_ne_bytes());
        self.inner.write_all(&h)?;
        self.inner.write_all(&frame[..cap as usize])?;
        self.written += RECORD_HEADER_LEN + u64::from(cap);
        Ok(())
    }

    /// Bytes written so far, headers included.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Size a record for `frame_len` bytes would take.
    pub fn record_size(&self, frame_len: usize) -> u64 {
        RECORD_HEADER_LEN + (frame_len as u64).min(u64::from(self.snaplen))
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    /// Returns the underlying writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

/// Settings of a [`RotatingPcapWriter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationPolicy {
    /// Path of the current file; rotated files get `.1`, `.2`, … appended.
    pub path: PathBuf,
    /// Rotate when the current file would grow past this many bytes (at least one record is
    /// always written to a fresh file).
    pub max_bytes: u64,
    /// Total number of files kept, the current one included (at least 1).
    pub max_files: u32,
    /// Frames are cut to this many bytes.
    pub snaplen: u32,
}

/// A pcap writer bounded in size: see the [module documentation](self).
pub struct RotatingPcapWriter {
    policy: RotationPolicy,
    dir: Option<Dir>,
    current: Option<PcapWriter<BufWriter<File>>>,
    rotations: u64,
}

impl std::fmt::Debug for RotatingPcapWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatingPcapWriter")
            .field("policy", &self.policy)
            .field("rotations", &self.rotations)
            .finish()
    }
}

fn rotated_name(base: &OsStr, n: u32) -> OsString {
    let mut s = base.to_owned();
    s.push(format!(".{n}"));
    s
}

/// Mode of capture files: they hold traffic, so only their owner reads them.
pub const CAPTURE_MODE: u32 = 0o600;

impl RotatingPcapWriter {
    /// Creates the writer; the first file is created lazily, on the first frame.
    pub fn new(policy: RotationPolicy) -> Self {
        RotatingPcapWriter {
            policy,
            dir: None,
            current: None,
            rotations: 0,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &RotationPolicy {
        &self.policy
    }

    /// How many times the file was rotated.
    pub fn rotations(&self) -> u64 {
        self.rotations
    }

    fn refuse(&self, what: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "refusing to write samples to {}: {what}; remove it or pick another path",
                self.policy.path.display()
            ),
        )
    }

    /// Shifts `NAME.1` … to `NAME.2` …, dropping the oldest, and renames the current entry (if
    /// any) to `NAME.1`; with `max_files` 1, deletes it. Works on directory entries only.
    fn shift(&self, dir: &Dir, name: &OsStr) -> io::Result<()> {
        let keep = self.policy.max_files.max(1);
        if keep == 1 {
            return dir.unlink(name);
        }
        dir.unlink(&rotated_name(name, keep - 1))?;
        for n in (1..keep - 1).rev() {
            let from = rotated_name(name, n);
            if dir.kind(&from)?.is_some() {
                dir.rename(&from, &rotated_name(name, n + 1))?;
            }
        }
        if dir.kind(name)?.is_some() {
            dir.rename(name, &rotated_name(name, 1))?;
        }
        Ok(())
    }

    /// Creates a fresh capture file; an existing regular file at the path (an earlier run's
    /// capture) is rotated away first, anything else is refused.
    fn open_fresh(&mut self) -> io::Result<()> {
        let (dir_path, name) = safefile::split(&self.policy.path)?;
        let name = name.to_owned();
        if self.dir.is_none() {
            let d = Dir::open(&dir_path, false).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("opening the sample directory {}: {e}", dir_path.display()),
                )
            })?;
            self.dir = Some(d);
        }
        let Some(dir) = self.dir.as_ref() else {
            return Err(io::Error::other("sample directory not open"));
        };
        match dir.kind(&name)? {
            None => {}
            Some(EntryKind::File) => self.shift(dir, &name)?,
            Some(EntryKind::Symlink) => return Err(self.refuse("it is a symbolic link")),
            Some(EntryKind::Other) => return Err(self.refuse("it is not a regular file")),
        }
        let f = dir
            .create_new(&name, CAPTURE_MODE)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EEXIST) | Some(libc::ELOOP) => {
                    self.refuse("something was created there meanwhile")
                }
                _ => io::Error::new(
                    e.kind(),
                    format!("creating {}: {e}", self.policy.path.display()),
                ),
            })?;
        self.current = Some(PcapWriter::new(BufWriter::new(f), self.policy.snaplen)?);
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if let Some(mut w) = self.current.take() {
            w.flush()?;
        }
        self.rotations += 1;
        // open_fresh finds the full file at the path and shifts it to NAME.1.
        self.open_fresh()
    }

    /// Writes one frame, rotating first when it would not fit under `max_bytes`.
    pub fn write_frame(&mut self, ts_nanos: u64, frame: &[u8]) -> io::Result<()> {
        match &self.current {
            None => self.open_fresh()?,
            Some(w) => {
                let after = w.bytes_written() + w.record_size(frame.len());
                if after > self.policy.max_bytes && w.bytes_written() > GLOBAL_HEADER_LEN {
                    self.rotate()?;
                }
            }
        }
        match &mut self.current {
            Some(w) => w.write_frame(ts_nanos, frame),
            None => Err(io::Error::other("pcap file not open")),
        }
    }

    /// Flushes buffered records to the current file.
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.current {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}
