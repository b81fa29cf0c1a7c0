//! After dropping privileges the daemon must still be able to delete its steering rules: with
//! `keep_net_admin` the kernel lets the ethtool set-ioctls through (CAP_NET_ADMIN is checked
//! before the driver), without it they fail with EPERM, explained in plain words.
//!
//! Runs as root only (each case in a forked child that drops to `nobody`); otherwise prints a
//! `skipped:` line.

use floodgate::privdrop::resolve;
use floodgate::steering::{
    explain_errno, Action, EthtoolBackend, Flow, SteeringBackend, SteeringRule,
};

/// In a child: drop to nobody (keeping CAP_NET_ADMIN or not), then ask the kernel to insert and
/// delete a rule on `lo`. Returns the errno of the insert, or a code >= 1000 for a setup failure.
fn insert_errno_after_drop(keep_net_admin: bool) -> i32 {
    let creds = resolve("nobody", None).expect("user nobody exists");
    let rule = SteeringRule::new(Flow::Udp4, Action::ToVf { vf: 0, queue: 0 }).dst_port(53);
    // SAFETY: the child makes syscalls and small allocations (glibc's malloc is fork-safe), and
    // leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = (|| {
            if creds.apply(keep_net_admin).is_err() {
                return 1000;
            }
            let Ok(mut b) = EthtoolBackend::open("lo") else {
                return 1001;
            };
            let ins = match b.insert(&rule, 0) {
                Ok(_) => 0,
                Err(e) => e.errno,
            };
            let del = match b.delete(0) {
                Ok(()) => 0,
                Err(e) => e.errno,
            };
            if ins != del {
                return 1002;
            }
            ins
        })();
        // SAFETY: leave the child without running the parent's handlers.
        unsafe { libc::_exit(code.min(255)) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status), "child died: {status:#x}");
    libc::WEXITSTATUS(status)
}

#[test]
fn cap_net_admin_survives_the_drop_for_rule_removal() {
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: dropping privileges needs root");
        return;
    }
    // Kept: the kernel passes the request to loopback, which has no flow director.
    assert_eq!(insert_errno_after_drop(true), libc::EOPNOTSUPP);
    // Not kept: refused before the driver is asked.
    assert_eq!(insert_errno_after_drop(false), libc::EPERM);
    assert!(explain_errno("lo", libc::EPERM, "n-tuple rules").contains("CAP_NET_ADMIN"));
}

/// After the drop, a root-owned 0600 config is no longer readable directly, but the reader
/// process forked before the drop still reads it, including changes made afterwards.
#[test]
fn config_stays_readable_through_the_reader_after_the_drop() {
    use floodgate::config::{limits, Config};
    use floodgate::privdrop::FileReader;
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: dropping privileges needs root");
        return;
    }
    let dir = std::env::temp_dir().join(format!("floodgate-reader-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.join("f.toml");
    std::fs::write(&path, "[device]\npci = \"sim\"\n[daemon]\nworkers = 2\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let creds = resolve("nobody", None).expect("user nobody exists");
    let mut reader = FileReader::spawn(&path, limits::MAX_CONFIG_BYTES).unwrap();
    // The edit lands after the drop (while the child runs): the reader sees the new file.
    std::fs::write(&path, "[device]\npci = \"sim\"\n[daemon]\nworkers = 3\n").unwrap();
    // SAFETY: the child drops privileges, makes syscalls and small allocations (glibc's malloc
    // is fork-safe), and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = (|| {
            if creds.apply(false).is_err() {
                return 100;
            }
            if std::fs::read(&path).map(|_| ()).unwrap_err().kind()
                != std::io::ErrorKind::PermissionDenied
            {
                return 101;
            }
            match Config::load_via(&mut reader) {
                Ok(c) if c.daemon.workers == 3 => {}
                Ok(_) => return 102,
                Err(e) => {
                    eprintln!("{e}");
                    return 103;
                }
            }
            0
        })();
        // SAFETY: leave the child without running the parent's handlers.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status), "child died: {status:#x}");
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "reading through the reader as nobody"
    );
    // A missing file is an error that says so; a file over the limit is refused by size.
    std::fs::remove_file(&path).unwrap();
    let e = Config::load_via(&mut reader).unwrap_err();
    let e = format!("{:#}", anyhow::Error::new(e));
    assert!(e.contains("cannot read: No such file"), "{e}");
    drop(reader);
    std::fs::write(&path, vec![b'#'; 5000]).unwrap();
    let mut small = FileReader::spawn(&path, 4096).unwrap();
    let e = small.read().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
    drop(small);
    std::fs::remove_dir_all(&dir).unwrap();
}
