//! Files created without following symbolic links, relative to a directory opened once.
//!
//! Sample captures and the steering state file are written by a process that may run as root,
//! in directories that someone else might be able to write. Everything here goes through a
//! [`Dir`] (a directory file descriptor opened once) and the `*at` system calls:
//!
//! - new files are created with `O_CREAT | O_EXCL | O_NOFOLLOW` and an explicit mode (0600 for
//!   what floodgate writes), so an existing file or a planted symbolic link is never opened,
//!   truncated or written through;
//! - renames and deletions work on directory entries (`renameat`, `unlinkat`), never on what a
//!   link points to;
//! - the directory itself cannot be swapped for another one after it was opened.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What a directory entry is, looked at without following links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// Anything else (directory, FIFO, socket, device).
    Other,
}

/// Owner and permission bits of an open directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirStat {
    /// Owning uid.
    pub uid: u32,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

/// An open directory: see the [module documentation](self).
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

fn cname(name: &OsStr) -> io::Result<CString> {
    if name.is_empty() || name.as_bytes().contains(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a plain file name"),
        ));
    }
    CString::new(name.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} contains a NUL byte"),
        )
    })
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} contains a NUL byte", p.display()),
        )
    })
}

fn retry<T: PartialEq + Copy>(bad: T, mut f: impl FnMut() -> T) -> io::Result<T> {
    loop {
        let r = f();
        if r != bad {
            return Ok(r);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

impl Dir {
    /// Opens the directory at `path` (`O_DIRECTORY`; with `nofollow`, the last component must not
    /// be a symbolic link).
    pub fn open(path: &Path, nofollow: bool) -> io::Result<Dir> {
        let c = cpath(path)?;
        let mut flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
        if nofollow {
            flags |= libc::O_NOFOLLOW;
        }
        // SAFETY: `c` is a valid NUL-terminated path; open has no other preconditions.
        let fd = retry(-1, || unsafe { libc::open(c.as_ptr(), flags) })?;
        Ok(Dir {
            // SAFETY: `fd` was just returned by open and is owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: path.to_path_buf(),
        })
    }

    /// The path it was opened at (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Owner and mode of the directory.
    pub fn stat(&self) -> io::Result<DirStat> {
        // SAFETY: stat is plain data; all-zero is valid.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: the fd is open and `st` is a valid out-pointer.
        retry(-1, || unsafe { libc::fstat(self.fd.as_raw_fd(), &mut st) })?;
        Ok(DirStat {
            uid: st.st_uid,
            mode: st.st_mode & 0o7777,
        })
    }

    /// What `name` is, without following a link; `None` if it does not exist.
    pub fn kind(&self, name: &OsStr) -> io::Result<Option<EntryKind>> {
        let c = cname(name)?;
        // SAFETY: stat is plain data; all-zero is valid.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd, NUL-terminated name and out-pointer.
        let r = retry(-1, || unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        });
        match r {
            Ok(_) => Ok(Some(match st.st_mode & libc::S_IFMT {
                libc::S_IFREG => EntryKind::File,
                libc::S_IFLNK => EntryKind::Symlink,
                _ => EntryKind::Other,
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates `name`, which must not exist (not even as a dangling link), with `mode`, open for
    /// reading and writing.
    pub fn create_new(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let c = cname(name)?;
        let flags =
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: valid fd and NUL-terminated name; the mode is passed as the variadic argument.
        let fd = retry(-1, || unsafe {
            libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags, mode as libc::c_uint)
        })?;
        // SAFETY: `fd` was just returned by openat and is owned by nobody else.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Opens the existing regular file `name` for reading, refusing a symbolic link (`ELOOP`).
    pub fn open_read(&self, name: &OsStr) -> io::Result<File> {
        let c = cname(name)?;
        let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
        // SAFETY: valid fd and NUL-terminated name.
        let fd = retry(-1, || unsafe {
            libc::openat(self.fd.as_raw_fd(), c.as_ptr(), flags)
        })?;
        // SAFETY: `fd` was just returned by openat and is owned by nobody else.
        let f = unsafe { File::from_raw_fd(fd) };
        if !f.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(f)
    }

    /// Renames `from` to `to`, both in this directory (replacing `to`'s entry if it exists).
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        let (a, b) = (cname(from)?, cname(to)?);
        let fd = self.fd.as_raw_fd();
        // SAFETY: valid fd and NUL-terminated names.
        retry(-1, || unsafe {
            libc::renameat(fd, a.as_ptr(), fd, b.as_ptr())
        })?;
        Ok(())
    }

    /// Deletes the entry `name` (a link is deleted, not its target); missing is fine.
    pub fn unlink(&self, name: &OsStr) -> io::Result<()> {
        let c = cname(name)?;
        // SAFETY: valid fd and NUL-terminated name.
        match retry(-1, || unsafe {
            libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0)
        }) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Flushes the directory's entries (after a rename) to disk.
    pub fn sync(&self) -> io::Result<()> {
        // SAFETY: valid fd.
        retry(-1, || unsafe { libc::fsync(self.fd.as_raw_fd()) })?;
        Ok(())
    }
}

/// Splits `path` into its directory (`.` if none) and file name.
pub fn split(path: &Path) -> io::Result<(PathBuf, &OsStr)> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} does not name a file", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}
