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

/// A small process that keeps the privileges of the process that started it and reads one file
/// on request: how the daemon re-reads its configuration on SIGHUP after dropping to an
/// unprivileged user, when the file is root's and mode 0600.
///
/// [`FileReader::spawn`] forks before the privilege drop. The child closes every descriptor but
/// its end of a socket pair, ignores the job-control signals, dies with its parent
/// (`PR_SET_PDEATHSIG`), and does nothing but answer "read the file" with the file's bytes (at
/// most `max_bytes`) or an error. It cannot be asked to read another path. Dropping the
/// `FileReader` closes the socket; the child sees end-of-file, exits, and is reaped.
#[derive(Debug)]
pub struct FileReader {
    sock: std::os::unix::net::UnixStream,
    pid: libc::pid_t,
    path: std::path::PathBuf,
    max_bytes: u64,
}

const READER_OK: u8 = 0;
const READER_ERR: u8 = 1;
const READER_TOO_LARGE: u8 = 2;

/// Writes all of `buf` to `fd`, retrying on EINTR; false on any other error.
fn write_all_fd(fd: libc::c_int, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: `buf` is a live slice; `fd` an open descriptor.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        buf = &buf[n as usize..];
    }
    true
}

fn reply(fd: libc::c_int, status: u8, payload: &[u8], len: u64) -> bool {
    let mut head = [0u8; 9];
    head[0] = status;
    head[1..].copy_from_slice(&len.to_le_bytes());
    write_all_fd(fd, &head) && write_all_fd(fd, payload)
}

/// The child's loop: one request byte in, one answer out, until end-of-file.
fn reader_child(fd: libc::c_int, path: &CStr, max_bytes: u64) -> ! {
    loop {
        let mut req = 0u8;
        // SAFETY: one byte into a live local.
        let n = unsafe { libc::read(fd, (&mut req as *mut u8).cast(), 1) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if n != 1 {
            // SAFETY: leaving the child without running the parent's handlers.
            unsafe { libc::_exit(0) };
        }
        // SAFETY: `path` is NUL-terminated.
        let file = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY,
            )
        };
        let ok = if file < 0 {
            let e = std::io::Error::last_os_error().to_string();
            reply(fd, READER_ERR, e.as_bytes(), e.len() as u64)
        } else {
            let mut data = Vec::new();
            let mut buf = [0u8; 65536];
            let mut err = None;
            loop {
                // SAFETY: reading into a live local buffer.
                let n = unsafe { libc::read(file, buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    err = Some(e.to_string());
                    break;
                }
                if n == 0 || data.len() as u64 > max_bytes {
                    break;
                }
                data.extend_from_slice(&buf[..n as usize]);
            }
            // SAFETY: closing the descriptor opened above.
            unsafe { libc::close(file) };
            match err {
                Some(e) => reply(fd, READER_ERR, e.as_bytes(), e.len() as u64),
                None if data.len() as u64 > max_bytes => {
                    reply(fd, READER_TOO_LARGE, &[], data.len() as u64)
                }
                None => reply(fd, READER_OK, &data, data.len() as u64),
            }
        };
        if !ok {
            // SAFETY: as above.
            unsafe { libc::_exit(0) };
        }
    }
}

impl FileReader {
    /// Forks the reader for `path` (see the [type documentation](Self)); call it before
    /// dropping privileges, while `path` is readable.
    pub fn spawn(path: &std::path::Path, max_bytes: u64) -> std::io::Result<FileReader> {
        use std::os::fd::AsRawFd;
        use std::os::unix::ffi::OsStrExt;
        let cpath = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains a NUL byte")
        })?;
        let (parent_end, child_end) = std::os::unix::net::UnixStream::pair()?;
        // SAFETY: plain syscall.
        let parent_pid = unsafe { libc::getpid() };
        // SAFETY: the child only makes system calls and small allocations (glibc's malloc is
        // fork-safe) and leaves with _exit; it never returns into the parent's code.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if pid == 0 {
            let fd = child_end.as_raw_fd();
            // SAFETY: plain prctl/signal/close calls on the child's own state.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                if libc::getppid() != parent_pid {
                    libc::_exit(0);
                }
                for sig in [
                    libc::SIGHUP,
                    libc::SIGINT,
                    libc::SIGTERM,
                    libc::SIGPIPE,
                    libc::SIGQUIT,
                ] {
                    libc::signal(sig, libc::SIG_IGN);
                }
                let mut lim: libc::rlimit = std::mem::zeroed();
                let top = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                    lim.rlim_cur.min(1 << 16) as libc::c_int
                } else {
                    1024
                };
                for other in 3..top {
                    if other != fd {
                        libc::close(other);
                    }
                }
            }
            reader_child(fd, &cpath, max_bytes);
        }
        drop(child_end);
        parent_end.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        parent_end.set_write_timeout(Some(std::time::Duration::from_secs(10)))?;
        Ok(FileReader {
            sock: parent_end,
            pid,
            path: path.to_path_buf(),
            max_bytes,
        })
    }

    /// The file it reads.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Reads the file through the reader process. A file over `max_bytes` is an
    /// [`InvalidData`](std::io::ErrorKind::InvalidData) error with the size; the reader's own
    /// errors (`No such file or directory`, …) come back as `Other` with its message.
    pub fn read(&mut self) -> std::io::Result<Vec<u8>> {
        use std::io::{Read, Write};
        self.sock.write_all(&[1])?;
        let mut head = [0u8; 9];
        self.sock.read_exact(&mut head)?;
        let len = u64::from_le_bytes(head[1..].try_into().expect("8 bytes"));
        match head[0] {
            READER_TOO_LARGE => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "more than {} bytes (read {len} before stopping)",
                    self.max_bytes
                ),
            )),
            READER_OK | READER_ERR if len <= self.max_bytes.max(4096) => {
                let mut data = vec![0u8; len as usize];
                self.sock.read_exact(&mut data)?;
                if head[0] == READER_OK {
                    Ok(data)
                } else {
                    Err(std::io::Error::other(
                        String::from_utf8_lossy(&data).into_owned(),
                    ))
                }
            }
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "malformed answer from the config reader process",
            )),
        }
    }
}

impl Drop for FileReader {
    fn drop(&mut self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        let mut status = 0;
        // SAFETY: reaping our own child, which exits on end-of-file.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_user_and_group_are_named() {
        assert_eq!(
            resolve("floodgate-no-such-user", None),
            Err(PrivDropError::NoUser("floodgate-no-such-user".into()))
        );
        assert_eq!(
            resolve("root", Some("floodgate-no-such-group")),
            Err(PrivDropError::NoGroup("floodgate-no-such-group".into()))
        );
        assert!(matches!(
            resolve("a\0b", None),
            Err(PrivDropError::BadName(_))
        ));
        let root = resolve("root", None).unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(user_name(0).as_deref(), Some("root"));
    }

    fn effective_caps() -> u32 {
        let hdr = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let mut data = [CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        // SAFETY: capget(2) with a v3 header and room for two data structs.
        unsafe { libc::syscall(libc::SYS_capget, &hdr, data.as_mut_ptr()) };
        data[0].effective
    }

    /// Forks a child that drops to `nobody` and reports through its exit code: 0 = uid, gid and
    /// groups are nobody's and root cannot be regained.
    fn drop_in_child(keep_net_admin: bool) -> i32 {
        let creds = resolve("nobody", None).expect("nobody exists");
        // SAFETY: the child only makes raw syscalls (apply allocates only on failure, and then
        // the child exits right away) and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let code = match creds.apply(keep_net_admin) {
                Err(_) => 10,
                Ok(()) => {
                    // SAFETY: plain syscalls.
                    let (uid, euid, gid) =
                        unsafe { (libc::getuid(), libc::geteuid(), libc::getgid()) };
                    let mut groups = [0 as libc::gid_t; 4];
                    // SAFETY: valid buffer of 4 gids.
                    let n = unsafe { libc::getgroups(4, groups.as_mut_ptr()) };
                    if uid != creds.uid || euid != creds.uid {
                        11
                    } else if gid != creds.gid || n != 1 || groups[0] != creds.gid {
                        12
                    // SAFETY: plain syscall, expected to fail.
                    } else if unsafe { libc::setuid(0) } == 0 {
                        13
                    } else if effective_caps()
                        != if keep_net_admin {
                            1 << CAP_NET_ADMIN
                        } else {
                            0
                        }
                    {
                        14
                    } else {
                        0
                    }
                }
            };
            // SAFETY: leave the child without running the parent's atexit handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "child died: {status:#x}");
        libc::WEXITSTATUS(status)
    }

    #[test]
    fn drops_to_nobody_in_a_child() {
        // SAFETY: plain syscall.
        if unsafe { libc::geteuid() } != 0 {
            println!("skipped: dropping privileges needs root");
            return;
        }
        assert_eq!(drop_in_child(false), 0);
        assert_eq!(drop_in_child(true), 0);
    }

    #[test]
    fn not_root_cannot_switch() {
        // SAFETY: plain syscall.
        if unsafe { libc::geteuid() } == 0 {
            println!("skipped: runs only as a normal user (root can switch)");
            return;
        }
        let c = Credentials {
            user: "root".into(),
            uid: 0,
            gid: 0,
        };
        assert!(matches!(c.apply(false), Err(PrivDropError::Call { .. })));
    }
}
