//! The steering state file: which PF and which rule locations this run installed, so that the
//! next start can delete rules a crashed run left behind.
//!
//! Format (JSON, one object):
//! `{"version":1,"pf":"eth0","pid":4242,"locations":[2045,2044],"rules":[{"key":"...","mask":"..."}]}`.
//! `rules[i]` fingerprints the rule at `locations[i]`: the first 12 bytes of the flow union
//! (addresses and ports, network order) and their mask, in hex. At start, a leftover location is
//! deleted only if the rule found there still matches its fingerprint.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

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

/// The state file at a path.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The file at `path` (not touched yet).
    pub fn new(path: PathBuf) -> StateFile {
        StateFile { path }
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

    /// Reads the file; `None` if it does not exist.
    pub fn read(&self) -> Result<Option<State>, SteeringError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.err(format!("cannot read it: {e}"))),
        };
        let st: State = serde_json::from_str(&text).map_err(|e| {
            self.err(format!(
                "not a floodgate steering state ({e}); if no floodgate is running, check the PF's rules with `ethtool -n <pf>` and delete the file"
            ))
        })?;
        if st.version != VERSION {
            return Err(self.err(format!(
                "version {} is not the supported {VERSION}",
                st.version
            )));
        }
        if !st.rules.is_empty() && st.rules.len() != st.locations.len() {
            return Err(self.err("rules and locations have different lengths"));
        }
        Ok(Some(st))
    }

    /// Records `rules` at `locations` on `pf` (written to a temporary file, then renamed).
    pub fn write_rules(
        &self,
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
        if let Some(dir) = self.path.parent() {
            if !dir.as_os_str().is_empty() {
                fs::create_dir_all(dir)
                    .map_err(|e| self.err(format!("cannot create {}: {e}", dir.display())))?;
            }
        }
        let tmp = self.path.with_extension("tmp");
        let text = serde_json::to_string(&st).map_err(|e| self.err(e.to_string()))?;
        let mut f = fs::File::create(&tmp)
            .map_err(|e| self.err(format!("cannot create {}: {e}", tmp.display())))?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| self.err(format!("cannot write {}: {e}", tmp.display())))?;
        fs::rename(&tmp, &self.path).map_err(|e| self.err(format!("cannot rename into place: {e}")))
    }

    /// Deletes the file (missing is fine).
    pub fn remove(&self) -> Result<(), SteeringError> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err(format!("cannot delete it: {e}"))),
        }
    }

    /// Hands the file (and its directory, if named `floodgate`) to `uid:gid`, so the daemon can
    /// still delete it after dropping privileges.
    pub fn chown(&self, uid: u32, gid: u32) -> Result<(), SteeringError> {
        let mut paths = vec![self.path.clone()];
        if let Some(dir) = self.path.parent() {
            if dir.file_name().is_some_and(|n| n == "floodgate") {
                paths.push(dir.to_path_buf());
            }
        }
        for p in paths {
            if p.exists() {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid))
                    .map_err(|e| self.err(format!("cannot chown {}: {e}", p.display())))?;
            }
        }
        Ok(())
    }
}
