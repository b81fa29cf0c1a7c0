//! Capture files for the daemon: `rules test` input and the `sample` action's output.
//!
//! The file format is [`floodgate_sim::pcap`], the workspace's one pcap implementation: classic
//! pcap in both byte orders and time-stamp resolutions, and pcapng. This module adds what the
//! daemon needs around it: errors that name the file ([`PcapFileError`]), a writer with
//! nanosecond time stamps, and [`RotatingPcapWriter`], which bounds the disk space: when the
//! current file would exceed a byte limit it is renamed to `NAME.1` (older ones shift to
//! `NAME.2`, …) and a fresh file is started; at most `max_files` files exist at any time.
//!
//! The rotating writer works in the file's directory, opened once ([`crate::safefile::Dir`]):
//! files are created with `O_CREAT | O_EXCL | O_NOFOLLOW`, mode 0600 (captures hold traffic),
//! and rotation renames directory entries. A symbolic link (or anything but a regular file) at
//! the capture path is refused with an error naming it; nothing is ever written through a link.
//! A capture left by an earlier run is rotated to `NAME.1` like a full one, not truncated.
//!
//! The rotating writer writes classic pcap or, per sample rule ([`CaptureFormat`]), pcapng: an
//! interface description naming the capture point and the rule, and a comment on every packet
//! naming the rule that sampled it.

use crate::safefile::{self, Dir, EntryKind};
use floodgate_sim::pcap::{self as format, PcapError};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// `LINKTYPE_ETHERNET`.
pub const LINKTYPE_ETHERNET: u32 = format::LINKTYPE_ETHERNET;
/// Largest record the reader accepts when the file's snaplen is not larger.
pub const MAX_RECORD: u32 = format::MAX_RECORD;

/// Errors reading or writing capture files.
#[derive(Debug, thiserror::Error)]
pub enum PcapFileError {
    /// An I/O error on `path` (the source says which).
    #[error("{path}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: io::Error,
    },
    /// The file starts with neither a pcap nor a pcapng magic number.
    #[error("{path}: neither a pcap nor a pcapng file (magic {magic:#010x})")]
    BadMagic {
        /// The file.
        path: String,
        /// The first four bytes, read little-endian.
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
    #[error("{path}: record {index} claims {len} captured bytes (at most {limit} accepted)")]
    RecordTooLarge {
        /// The file.
        path: String,
        /// Record index (0-based).
        index: u64,
        /// Claimed length.
        len: u32,
        /// The limit (256 KiB, or the file's snaplen up to 1 MiB).
        limit: u32,
    },
    /// Anything else the format reader refuses (a pcapng block, an impossible time stamp):
    /// the source says what.
    #[error("{path}")]
    Format {
        /// The file.
        path: String,
        /// What the reader found.
        source: PcapError,
    },
}

impl PcapFileError {
    /// The format reader's error, with the file named and the daemon's wording.
    fn from_format(path: &str, e: PcapError) -> PcapFileError {
        let path = path.to_string();
        match e {
            PcapError::Io(source) => PcapFileError::Io { path, source },
            PcapError::TruncatedHeader { .. } => PcapFileError::Truncated {
                path,
                what: "global header".into(),
            },
            PcapError::BadMagic(magic) => PcapFileError::BadMagic { path, magic },
            PcapError::TruncatedRecord {
                index, need, got, ..
            } => PcapFileError::Truncated {
                path,
                what: if need as u64 <= format::RECORD_HEADER_LEN {
                    format!("record {index} header")
                } else {
                    let head = format::RECORD_HEADER_LEN as usize;
                    format!(
                        "record {index} data ({} of {} bytes)",
                        got.saturating_sub(head),
                        need - head
                    )
                },
            },
            PcapError::BadRecordLength {
                index,
                caplen,
                limit,
                ..
            } if caplen > limit => PcapFileError::RecordTooLarge {
                path,
                index,
                len: caplen,
                limit,
            },
            source => PcapFileError::Format { path, source },
        }
    }
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

/// A streaming reader of pcap and pcapng files whose errors name the file.
pub struct PcapReader<R: Read> {
    inner: format::PcapReader<R>,
    name: String,
}

impl PcapReader<io::BufReader<File>> {
    /// Opens a pcap or pcapng file.
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

impl<R: Read> PcapReader<R> {
    /// Reads the file header from `inner`; `name` is used in error messages.
    pub fn new(inner: R, name: impl Into<String>) -> Result<Self, PcapFileError> {
        let name = name.into();
        let inner =
            format::PcapReader::new(inner).map_err(|e| PcapFileError::from_format(&name, e))?;
        Ok(PcapReader { inner, name })
    }

    /// The file's link type (1 = Ethernet; pcapng: the first interface's).
    pub fn linktype(&self) -> u32 {
        self.inner.header().linktype
    }

    /// The file's snapshot length.
    pub fn snaplen(&self) -> u32 {
        self.inner.header().snaplen
    }

    /// `true` for nanosecond-resolution files.
    pub fn is_nanosecond(&self) -> bool {
        self.inner.header().nanos
    }

    /// `true` for pcapng files.
    pub fn is_pcapng(&self) -> bool {
        self.inner.header().pcapng
    }

    /// Reads the next record into `buf` (replacing its contents). Returns `None` at a clean end
    /// of file.
    pub fn next_record(
        &mut self,
        buf: &mut Vec<u8>,
    ) -> Result<Option<RecordHeader>, PcapFileError> {
        match self.inner.next_packet(buf) {
            Ok(Some(r)) => Ok(Some(RecordHeader {
                ts_nanos: r.ts_ns,
                caplen: r.caplen,
                orig_len: r.orig_len,
            })),
            Ok(None) => Ok(None),
            Err(e) => Err(PcapFileError::from_format(&self.name, e)),
        }
    }
}

/// Writes a classic pcap file with nanosecond time stamps.
pub struct PcapWriter<W: Write> {
    inner: format::PcapWriter<W>,
}

/// The I/O error inside a writer's error (writing fails only on I/O).
fn write_err(e: PcapError) -> io::Error {
    match e {
        PcapError::Io(e) => e,
        other => io::Error::other(other),
    }
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header for Ethernet frames cut at `snaplen` bytes.
    pub fn new(inner: W, snaplen: u32) -> io::Result<Self> {
        Ok(PcapWriter {
            inner: format::PcapWriter::new_nanos(inner, snaplen).map_err(write_err)?,
        })
    }

    /// Appends one frame captured at `ts_nanos` (nanoseconds since the Unix epoch), cut to the
    /// snaplen.
    pub fn write_frame(&mut self, ts_nanos: u64, frame: &[u8]) -> io::Result<()> {
        self.inner.write_packet(ts_nanos, frame).map_err(write_err)
    }

    /// Bytes written so far, headers included.
    pub fn bytes_written(&self) -> u64 {
        self.inner.bytes_written()
    }

    /// Size a record for `frame_len` bytes would take.
    pub fn record_size(&self, frame_len: usize) -> u64 {
        self.inner.record_size(frame_len)
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().map_err(write_err)
    }

    /// Returns the underlying writer.
    pub fn into_inner(self) -> W {
        self.inner.into_inner_unflushed()
    }
}

/// The file format a [`RotatingPcapWriter`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CaptureFormat {
    /// Classic pcap, nanosecond time stamps (the default).
    #[default]
    Pcap,
    /// pcapng (Wireshark's default): an interface description block (name `floodgate`, link
    /// type Ethernet, the sampling rule in its description) and an enhanced packet block per
    /// frame whose comment names the sampling rule.
    Pcapng,
}

impl CaptureFormat {
    /// `"pcap"` or `"pcapng"` (as in the config).
    pub fn name(self) -> &'static str {
        match self {
            CaptureFormat::Pcap => "pcap",
            CaptureFormat::Pcapng => "pcapng",
        }
    }
}

/// The interface name pcapng sample files give their one interface: the daemon's view of the
/// VF, before any rule decided on the frame.
pub const PCAPNG_INTERFACE_NAME: &str = "floodgate";

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
    /// pcap or pcapng.
    pub format: CaptureFormat,
    /// The rule that samples into the file (pcapng: named in the interface description and in
    /// every packet's comment; empty: no comments).
    pub rule: String,
}

/// The open file of a [`RotatingPcapWriter`], in its format.
enum Current {
    Pcap(PcapWriter<BufWriter<File>>),
    Pcapng {
        w: format::PcapngWriter<BufWriter<File>>,
        comment: Option<String>,
    },
}

impl Current {
    fn bytes_written(&self) -> u64 {
        match self {
            Current::Pcap(w) => w.bytes_written(),
            Current::Pcapng { w, .. } => w.bytes_written(),
        }
    }

    fn record_size(&self, frame_len: usize) -> u64 {
        match self {
            Current::Pcap(w) => w.record_size(frame_len),
            Current::Pcapng { w, comment } => {
                w.record_size(frame_len, comment.as_ref().map(String::len))
            }
        }
    }

    fn write_frame(&mut self, ts_nanos: u64, frame: &[u8]) -> io::Result<()> {
        match self {
            Current::Pcap(w) => w.write_frame(ts_nanos, frame),
            Current::Pcapng { w, comment } => w
                .write_packet(ts_nanos, frame, comment.as_deref())
                .map_err(write_err),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Current::Pcap(w) => w.flush(),
            Current::Pcapng { w, .. } => w.flush().map_err(write_err),
        }
    }
}

/// A pcap writer bounded in size: see the [module documentation](self).
pub struct RotatingPcapWriter {
    policy: RotationPolicy,
    dir: Option<Dir>,
    current: Option<Current>,
    /// Bytes of the current file's header: a file no larger holds no record yet.
    header_len: u64,
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
            header_len: 0,
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
        let (w, snaplen) = (BufWriter::new(f), self.policy.snaplen);
        let current = match self.policy.format {
            CaptureFormat::Pcap => Current::Pcap(PcapWriter::new(w, snaplen)?),
            CaptureFormat::Pcapng => {
                let rule = &self.policy.rule;
                let (description, comment) = if rule.is_empty() {
                    ("frames sampled before the verdict".to_string(), None)
                } else {
                    (
                        format!("frames sampled by rule {rule:?} before the verdict"),
                        Some(format!("sampled by rule {rule:?}")),
                    )
                };
                let w = format::PcapngWriter::new(
                    w,
                    snaplen,
                    PCAPNG_INTERFACE_NAME,
                    Some(&description),
                )
                .map_err(write_err)?;
                Current::Pcapng { w, comment }
            }
        };
        self.header_len = current.bytes_written();
        self.current = Some(current);
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
                if after > self.policy.max_bytes && w.bytes_written() > self.header_len {
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
