//! Dropping root after the VF, the TAP and the steering rules are set up.
//!
//! Two steps, so that the second can run where allocation and NSS lookups are not safe (in a
//! forked child, or after threads exist):
//! 1. [`resolve`] looks the user (and optional group) up with `getpwnam_r` / `getgrnam_r`;
//! 2. [`Credentials::apply`] calls `setgroups`, `setgid`, `setuid`, and checks that root cannot be
//!    regained. With `keep_net_admin` it keeps CAP_NET_ADMIN (and nothing else) across the switch,
//!    which the daemon needs to delete its steering rules on exit.
//!
//! ```no_run
//! let creds = floodgate::privdrop::resolve("nobody", None)?;
//! creds.apply(true)?;
//! # Ok::<(), floodgate::privdrop::PrivDropError>(())
//! ```

use std::ffi::{CStr, CString};

/// Errors dropping privileges.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrivDropError {
    /// Unknown user.
    #[error("user {0:?} does not exist (getpwnam_r found no entry)")]
    NoUser(String),
    /// Unknown group.
    #[error("group {0:?} does not exist (getgrnam_r found no entry)")]
    NoGroup(String),
    /// Lookup failed.
    #[error("looking up {what} {name:?} failed: {msg}")]
    Lookup {
        /// "user" or "group".
        what: &'static str,
        /// Name.
        name: String,
        /// Reason.
        msg: String,
    },
    /// A name with a NUL byte.
    #[error("{0:?} is not a valid user or group name")]
    BadName(String),
    /// A system call failed.
    #[error("{call} failed: {msg}")]
    Call {
        /// The call, e.g. `setuid(65534)`.
        call: String,
        /// Plain words.
        msg: String,
    },
    /// Root could be regained after the switch.
    #[error("after switching to uid {0}, setuid(0) still succeeds: refusing to run with a way back to root")]
    StillRoot(u32),
}

/// A resolved target identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// uid.
    pub uid: u32,
    /// gid (the group's, or the user's primary group).
    pub gid: u32,
}

fn grow(buf: &mut Vec<libc::c_char>) -> bool {
    if buf.len() >= 1 << 20 {
        return false;
    }
    let n = buf.len() * 2;
    buf.resize(n, 0);
    true
}

/// Looks up `user` and, if given, `group` (else the user's primary group).
pub fn resolve(user: &str, group: Option<&str>) -> Result<Credentials, PrivDropError> {
    let cuser = CString::new(user).map_err(|_| PrivDropError::BadName(user.to_string()))?;
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    let (uid, mut gid) = loop {
        // SAFETY: passwd is plain data; all-zero is valid.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer refers to live memory of the stated size.
        let rc = unsafe {
            libc::getpwnam_r(
                cuser.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && grow(&mut buf) {
            continue;
        }
        if rc != 0 {
            return Err(PrivDropError::Lookup {
                what: "user",
                name: user.to_string(),
                msg: std::io::Error::from_raw_os_error(rc).to_string(),
            });
        }
        if result.is_null() {
            return Err(PrivDropError::NoUser(user.to_string()));
        }
        break (pwd.pw_uid, pwd.pw_gid);
    };
    if let Some(g) = group {
        let cgroup = CString::new(g).map_err(|_| PrivDropError::BadName(g.to_string()))?;
        gid = loop {
            // SAFETY: group is plain data; all-zero is valid.
            let mut grp: libc::group = unsafe { std::mem::zeroed() };
            let mut result: *mut libc::group = std::ptr::null_mut();
            // SAFETY: as above.
            let rc = unsafe {
                libc::getgrnam_r(
                    cgroup.as_ptr(),
                    &mut grp,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut result,
                )
            };
            if rc == libc::ERANGE && grow(&mut buf) {
                continue;
            }
            if rc != 0 {
                return Err(PrivDropError::Lookup {
                    what: "group",
                    name: g.to_string(),
                    msg: std::io::Error::from_raw_os_error(rc).to_string(),
                });
            }
            if result.is_null() {
                return Err(PrivDropError::NoGroup(g.to_string()));
            }
            break grp.gr_gid;
        };
    }
    Ok(Credentials {
        user: user.to_string(),
        uid,
        gid,
    })
}

const CAP_NET_ADMIN: u32 = 12;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn call_err(call: String) -> PrivDropError {
    let e = std::io::Error::last_os_error();
    let msg = match e.raw_os_error() {
        Some(libc::EPERM) => {
            "operation not permitted: only root (CAP_SETUID/CAP_SETGID) can switch users"
                .to_string()
        }
        _ => e.to_string(),
    };
    PrivDropError::Call { call, msg }
}

impl Credentials {
    /// Switches the whole process to these credentials: supplementary groups = `[gid]`, then gid,
    /// then uid (real, effective and saved). With `keep_net_admin`, CAP_NET_ADMIN stays permitted
    /// and effective (everything else is dropped). Checks afterwards that `setuid(0)` fails.
    ///
    /// Calls no allocator on the success path, so it is usable in a forked child.
    pub fn apply(&self, keep_net_admin: bool) -> Result<(), PrivDropError> {
        let groups = [self.gid as libc::gid_t];
        // SAFETY: one valid gid in a live array.
        if unsafe { libc::setgroups(1, groups.as_ptr()) } != 0 {
            return Err(call_err(format!("setgroups([{}])", self.gid)));
        }
        // SAFETY: plain syscall.
        if unsafe { libc::setresgid(self.gid, self.gid, self.gid) } != 0 {
            return Err(call_err(format!("setgid({})", self.gid)));
        }
        if keep_net_admin {
            // SAFETY: plain prctl.
            if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
                return Err(call_err("prctl(PR_SET_KEEPCAPS)".into()));
            }
        }
        // SAFETY: plain syscall.
        if unsafe { libc::setresuid(self.uid, self.uid, self.uid) } != 0 {
            return Err(call_err(format!("setuid({})", self.uid)));
        }
        if keep_net_admin {
            let hdr = CapHeader {
                version: LINUX_CAPABILITY_VERSION_3,
                pid: 0,
            };
            let bit = 1u32 << CAP_NET_ADMIN;
            let data = [
                CapData {
                    effective: bit,
                    permitted: bit,
                    inheritable: 0,
                },
                CapData {
                    effective: 0,
                    permitted: 0,
                    inheritable: 0,
                },
            ];
            // SAFETY: capset(2) with a v3 header and two data structs, as the ABI requires.
            let rc = unsafe { libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) };
            if rc != 0 {
                return Err(call_err("capset(CAP_NET_ADMIN)".into()));
            }
            // SAFETY: plain prctl.
            unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
        }
        if self.uid != 0 {
            // SAFETY: plain syscall; expected to fail.
            if unsafe { libc::setuid(0) } == 0 {
                return Err(PrivDropError::StillRoot(self.uid));
            }
        }
        Ok(())
    }
}

/// Resolves and applies in one go (see [`resolve`] and [`Credentials::apply`]).
pub fn drop_privileges(
    user: &str,
    group: Option<&str>,
    keep_net_admin: bool,
) -> Result<Credentials, PrivDropError> {
    let c = resolve(user, group)?;
    c.apply(keep_net_admin)?;
    log::info!(
        "dropped privileges to {} (uid {}, gid {}){}",
        c.user,
        c.uid,
        c.gid,
        if keep_net_admin {
            ", keeping CAP_NET_ADMIN"
        } else {
            ""
        }
    );
    Ok(c)
}

/// The user name of `uid`, for messages.
pub fn user_name(uid: u32) -> Option<String> {
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: plain data.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: valid pointers and sizes.
        let rc =
            unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
        if rc == libc::ERANGE && grow(&mut buf) {
            continue;
        }
        if rc != 0 || result.is_null() {
            return None;
        }
        // SAFETY: pw_name points into `buf`, NUL-terminated by getpwuid_r.
        return Some(
            unsafe { CStr::from_ptr(pwd.pw_name) }
                .to_string_lossy()
                .into_owned(),
        );
    }
}
