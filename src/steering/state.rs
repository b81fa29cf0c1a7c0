//! The steering state file: which PF and which rule locations this run installed, so that the
//! next start can delete rules a crashed run left behind.
//!
//! Format (JSON, one object):
//! `{"version":1,"pf":"eth0","pid":4242,"locations":[2045,2044],"rules":[{"key":"...","mask":"..."}]}`.
//! `rules[i]` fingerprints the rule at `locations[i]`: the first 12 bytes of the flow union
//! (addresses and ports, network order) and their mask, in hex. At start, a leftover location is
//! deleted only if the rule found there still matches its fingerprint.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::safefile::{self, Dir, EntryKind};

use serde::{Deserialize, Serialize};

use super::uapi::{self, RxFlowSpec};
use super::{SteeringError, SteeringRule};

const VERSION: u32 = 1;

/// The default state file: `/run/floodgate/steering.json` as root, else
/// `$XDG_RUNTIME_DIR/floodgate/steering.json`, else `/tmp/floodgate-<uid>/steering.json`.
pub fn default_state_path() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        return PathBuf::from("/run/floodgate/steering.json");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("floodgate/steering.json"),
        _ => PathBuf::from(format!("/tmp/floodgate-{euid}/steering.json")),
    }
}

/// A rule's match fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Hex of `h_u[0..12] & m_u[0..12]`.
    pub key: String,
    /// Hex of `m_u[0..12]`.
    pub mask: String,
}

/// Contents of the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Format version.
    pub version: u32,
    /// PF netdev.
    pub pf: String,
    /// Process that wrote it.
    pub pid: u32,
    /// Locations installed.
    pub locations: Vec<u32>,
    /// Fingerprints, parallel to `locations`.
    #[serde(default)]
    pub rules: Vec<Fingerprint>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn fingerprint_of(fs: &RxFlowSpec) -> Fingerprint {
    let m = &fs.m_u.hdata[..12];
    let k: Vec<u8> = fs.h_u.hdata[..12]
        .iter()
        .zip(m)
        .map(|(a, b)| a & b)
        .collect();
    Fingerprint {
        key: hex(&k),
        mask: hex(m),
    }
}

/// Whether the rule read back at a location still matches the recorded fingerprint (same
/// addresses and ports under the recorded mask).
pub fn same_match(fs: &RxFlowSpec, fp: &Fingerprint) -> bool {
    let Some(mask) = unhex(&fp.mask) else {
        return false;
    };
    if mask.len() != 12 {
        return false;
    }
    let k: Vec<u8> = fs.h_u.hdata[..12]
        .iter()
        .zip(&mask)
        .map(|(a, b)| a & b)
        .collect();
    hex(&k) == fp.key
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() & 1 == 1 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Largest state file read (a real one is a few kilobytes).
const MAX_STATE_BYTES: u64 = 1 << 20;

/// Mode of the state file.
pub const STATE_MODE: u32 = 0o600;

/// Mode of a state directory floodgate creates.
pub const STATE_DIR_MODE: u32 = 0o700;

/// The state file at a path.
///
/// Its directory is opened once ([`crate::safefile::Dir`]) and must belong to the user running
/// floodgate (root for the daemon) and be writable by nobody else; it is never handed to another
/// user. The file is written while still privileged, as `NAME.tmp` created with
/// `O_CREAT | O_EXCL | O_NOFOLLOW` and mode 0600, then renamed over `NAME`; a symbolic link at
/// either name is refused. The descriptor of the file written last is kept: after the daemon
/// has dropped privileges it can no longer delete entries of the root-owned directory, so
/// [`remove`](Self::remove) then truncates the file through that descriptor instead. An empty
/// file means "no rules installed" and is deleted by the next privileged start.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    dir: Option<Dir>,
    written: Option<fs::File>,
}

impl StateFile {
    /// The file at `path` (not touched yet).
    pub fn new(path: PathBuf) -> StateFile {
        StateFile {
            path,
            dir: None,
            written: None,
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, msg: impl Into<String>) -> SteeringError {
        SteeringError::State {
            path: self.path.clone(),
            msg: msg.into(),
        }
    }

    fn name(&self) -> Result<&OsStr, SteeringError> {
        self.path
            .file_name()
            .ok_or_else(|| self.err("the path does not name a file"))
    }

    fn tmp_name(&self) -> Result<OsString, SteeringError> {
        let mut n = self.name()?.to_owned();
        n.push(".tmp");
        Ok(n)
    }

    /// Opens (and with `create`, creates with mode 0700) the directory, once, and checks that it
    /// belongs to us and that nobody else can write it. `None` if it does not exist and
    /// `create` is false.
    fn dir(&mut self, create: bool) -> Result<Option<&Dir>, SteeringError> {
        if self.dir.is_none() {
            let (dpath, _) = safefile::split(&self.path).map_err(|e| self.err(e.to_string()))?;
            if create && !dpath.exists() {
                if let Some(up) = dpath.parent() {
                    if !up.as_os_str().is_empty() {
                        fs::create_dir_all(up).map_err(|e| {
                            self.err(format!("cannot create {}: {e}", up.display()))
                        })?;
                    }
                }
                match fs::DirBuilder::new().mode(STATE_DIR_MODE).create(&dpath) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => {
                        return Err(self.err(format!("cannot create {}: {e}", dpath.display())))
                    }
                }
            }
            let d = match Dir::open(&dpath, true) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => return Ok(None),
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                    return Err(self.err(format!(
                        "its directory {} is a symbolic link; refusing to use it",
                        dpath.display()
                    )))
                }
                Err(e) => return Err(self.err(format!("cannot open {}: {e}", dpath.display()))),
            };
            let st = d
                .stat()
                .map_err(|e| self.err(format!("cannot stat {}: {e}", dpath.display())))?;
            // SAFETY: geteuid has no preconditions and cannot fail.
            let euid = unsafe { libc::geteuid() };
            if st.uid != euid || st.mode & 0o022 != 0 {
                return Err(self.err(format!(
                    "its directory {} belongs to uid {} with mode {:04o}; it must belong to uid {euid} and be writable by nobody else (`chown {euid} {0} && chmod 0700 {0}`, or delete it)",
                    dpath.display(),
                    st.uid,
                    st.mode
                )));
            }
            self.dir = Some(d);
        }
        Ok(self.dir.as_ref())
    }

    /// The file's text; `None` if it (or its directory) does not exist or it is empty. The
    /// directory and the file are checked as described on [`StateFile`]; at most 1 MiB.
    pub fn read_text(&mut self) -> Result<Option<String>, SteeringError> {
        let name = self.name()?.to_owned();
        let path = self.path.clone();
        let Some(dir) = self.dir(false)? else {
            return Ok(None);
        };
        let err = |msg: String| SteeringError::State {
            path: path.clone(),
            msg,
        };
        let f = match dir.open_read(&name) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(err(
                    "it is a symbolic link; refusing to follow it (delete it)".into(),
                ))
            }
            Err(e) => return Err(err(format!("cannot read it: {e}"))),
        };
        let mut text = String::new();
        f.take(MAX_STATE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| err(format!("cannot read it: {e}")))?;
        if text.len() as u64 > MAX_STATE_BYTES {
            return Err(err(format!(
                "larger than {MAX_STATE_BYTES} bytes: not a floodgate steering state"
            )));
        }
        if text.trim().is_empty() {
            return Ok(None);
        }
        Ok(Some(text))
    }

    /// Reads the file; `None` if it (or its directory) does not exist or is empty (cleared by
    /// an unprivileged exit).
    pub fn read(&mut self) -> Result<Option<State>, SteeringError> {
        let path = self.path.clone();
        let err = |msg: String| SteeringError::State {
            path: path.clone(),
            msg,
        };
        let Some(text) = self.read_text()? else {
            return Ok(None);
        };
        let st: State = serde_json::from_str(&text).map_err(|e| {
            err(format!(
                "not a floodgate steering state ({e}); if no floodgate is running, check the PF's rules with `ethtool -n <pf>` and delete the file"
            ))
        })?;
        if st.version != VERSION {
            return Err(err(format!(
                "version {} is not the supported {VERSION}",
                st.version
            )));
        }
        if !st.rules.is_empty() && st.rules.len() != st.locations.len() {
            return Err(err("rules and locations have different lengths".into()));
        }
        Ok(Some(st))
    }

    /// Records `rules` at `locations` on `pf`: written to `NAME.tmp` (created new, 0600), synced,
    /// then renamed over `NAME`. A symbolic link at either name is refused.
    pub fn write_rules(
        &mut self,
        pf: &str,
        rules: &[SteeringRule],
        locations: &[u32],
    ) -> Result<(), SteeringError> {
        let st = State {
            version: VERSION,
            pf: pf.to_string(),
            pid: std::process::id(),
            locations: locations.to_vec(),
            rules: rules
                .iter()
                .zip(locations)
                .map(|(r, &l)| fingerprint_of(&uapi::encode_flow_spec(r, l)))
                .collect(),
        };
        let text = serde_json::to_string(&st).map_err(|e| self.err(e.to_string()))?;
        self.write_text(&text)
    }

    /// Writes `text` as the file's contents: to `NAME.tmp` (created new, 0600), synced, then
    /// renamed over `NAME`; the directory is created (0700) if missing. A symbolic link at
    /// either name is refused.
    pub fn write_text(&mut self, text: &str) -> Result<(), SteeringError> {
        let name = self.name()?.to_owned();
        let tmp = self.tmp_name()?;
        let path = self.path.clone();
        let err = |msg: String| SteeringError::State {
            path: path.clone(),
            msg,
        };
        let Some(dir) = self.dir(true)? else {
            return Err(err("its directory could not be opened".into()));
        };
        let show = |n: &OsStr| dir.path().join(n).display().to_string();
        for n in [&tmp, &name] {
            match dir.kind(n) {
                Ok(Some(EntryKind::Symlink)) => {
                    return Err(err(format!(
                        "{} is a symbolic link; refusing to write through or over it (delete it)",
                        show(n)
                    )))
                }
                Ok(Some(EntryKind::Other)) => {
                    return Err(err(format!("{} is not a regular file", show(n))))
                }
                Ok(_) => {}
                Err(e) => return Err(err(format!("cannot look at {}: {e}", show(n)))),
            }
        }
        // A temporary file left by a crash between create and rename.
        dir.unlink(&tmp)
            .map_err(|e| err(format!("cannot delete {}: {e}", show(&tmp))))?;
        let mut f = dir.create_new(&tmp, STATE_MODE).map_err(|e| {
            err(format!(
                "cannot create {} (O_EXCL|O_NOFOLLOW): {e}",
                show(&tmp)
            ))
        })?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| err(format!("cannot write {}: {e}", show(&tmp))))?;
        dir.rename(&tmp, &name)
            .map_err(|e| err(format!("cannot rename {} into place: {e}", show(&tmp))))?;
        let _ = dir.sync();
        self.written = Some(f);
        Ok(())
    }

    /// Deletes the file (missing is fine). Without the right to delete entries of its directory
    /// (after a privilege drop), empties the file written last through its kept descriptor
    /// instead, which the next start reads as "nothing installed".
    pub fn remove(&mut self) -> Result<(), SteeringError> {
        let name = self.name()?.to_owned();
        let path = self.path.clone();
        let Some(dir) = self.dir(false)? else {
            return Ok(());
        };
        match dir.unlink(&name) {
            Ok(()) => {
                self.written = None;
                Ok(())
            }
            Err(e)
                if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM))
                    && self.written.is_some() =>
            {
                let f = self.written.take().expect("checked above");
                f.set_len(0)
                    .and_then(|_| f.sync_all())
                    .map_err(|e2| SteeringError::State {
                        path: path.clone(),
                        msg: format!("cannot delete it ({e}) nor empty it: {e2}"),
                    })?;
                log::debug!(
                    "{}: emptied (no right to delete it after the privilege drop)",
                    path.display()
                );
                Ok(())
            }
            Err(e) => Err(SteeringError::State {
                path,
                msg: format!("cannot delete it: {e}"),
            }),
        }
    }
}
