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
