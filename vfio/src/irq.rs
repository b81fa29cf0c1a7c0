//! Sleeping on interrupt eventfds instead of spinning.
//!
//! [`Device::enable_msix`](crate::Device::enable_msix) returns one eventfd per MSI-X vector.
//! An idle driver arms its interrupts and calls [`wait_for`] on them; when a vector fires the
//! kernel increments the eventfd's counter and the wait returns.

use crate::Error;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// The most fds one [`wait_for`] call takes (one bit each in the returned mask).
pub const MAX_WAIT_FDS: usize = 64;

/// Waits until at least one of the eventfds `fds` is readable, or `timeout` passes
/// (`None`: no timeout).
///
/// Returns a bit mask: bit `i` is set when `fds[i]` fired. The counters of the fds that fired
/// are read, which resets them, so the next call sleeps until the next interrupt. Returns 0 on
/// timeout and when a signal interrupted the wait; callers loop.
///
/// Timeouts are rounded up to whole milliseconds so that a short timeout sleeps rather than
/// spins. The fds should be non-blocking (those from `enable_msix` are).
///
/// ```
/// use floodgate_vfio::irq::wait_for;
/// use std::os::fd::{AsFd, FromRawFd, OwnedFd};
/// use std::time::Duration;
/// // SAFETY: eventfd returns a new fd that we own.
/// let efd = unsafe { OwnedFd::from_raw_fd(libc::eventfd(1, libc::EFD_NONBLOCK)) };
/// assert_eq!(wait_for(&[efd.as_fd()], Some(Duration::ZERO)).unwrap(), 0b1);
/// // The counter was consumed: nothing is pending any more.
/// assert_eq!(wait_for(&[efd.as_fd()], Some(Duration::ZERO)).unwrap(), 0);
/// ```
pub fn wait_for(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> Result<u64, Error> {
    if fds.is_empty() || fds.len() > MAX_WAIT_FDS {
        return Err(Error::InvalidArgument(format!(
            "wait_for takes 1 to {MAX_WAIT_FDS} fds, not {}",
            fds.len()
        )));
    }
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; MAX_WAIT_FDS];
    for (p, fd) in pfds.iter_mut().zip(fds) {
        p.fd = fd.as_raw_fd();
        p.events = libc::POLLIN;
    }
    let ms: libc::c_int = match timeout {
        None => -1,
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
        }
    };
    // SAFETY: pfds holds at least fds.len() initialised pollfd entries, and the fds are
    // borrowed, so open, for the duration of the call.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINTR) {
            return Ok(0);
        }
        return Err(Error::io("poll on interrupt eventfds", e));
    }
    let mut mask = 0u64;
    for (i, p) in pfds[..fds.len()].iter().enumerate() {
        if p.revents & libc::POLLNVAL != 0 {
            return Err(Error::InvalidArgument(format!(
                "wait_for: fd {} is not open",
                p.fd
            )));
        }
        if p.revents & (libc::POLLIN | libc::POLLERR) != 0 {
            mask |= 1 << i;
            let mut counter = 0u64;
            // SAFETY: reads 8 bytes into a u64 on the stack from an fd we were lent. An
            // eventfd read resets its counter; EAGAIN (already drained) is harmless.
            unsafe {
                libc::read(p.fd, (&mut counter as *mut u64).cast(), 8);
            }
        }
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};

    fn eventfd() -> OwnedFd {
        // SAFETY: eventfd has no pointer arguments; the fd is checked and then owned.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: fd is new and ours.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    fn signal(fd: &OwnedFd) {
        let one = 1u64;
        // SAFETY: writes 8 bytes from a u64 to an eventfd we own.
        let n = unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        assert_eq!(n, 8);
    }

    #[test]
    fn reports_which_fd_fired_and_drains_it() {
        let fds: Vec<OwnedFd> = (0..3).map(|_| eventfd()).collect();
        let b: Vec<BorrowedFd> = fds.iter().map(|f| f.as_fd()).collect();
        assert_eq!(wait_for(&b, Some(Duration::ZERO)).unwrap(), 0);
        signal(&fds[2]);
        signal(&fds[2]);
        signal(&fds[0]);
        assert_eq!(wait_for(&b, Some(Duration::ZERO)).unwrap(), 0b101);
        assert_eq!(wait_for(&b, Some(Duration::ZERO)).unwrap(), 0);
    }

    #[test]
    fn wakes_when_another_thread_signals() {
        let fd = eventfd();
        let dup = fd.try_clone().unwrap();
        let t = std::thread::spawn(move || signal(&dup));
        // No timeout: returns only because the other thread wrote.
        let mut mask = 0;
        while mask == 0 {
            mask = wait_for(&[fd.as_fd()], None).unwrap();
        }
        t.join().unwrap();
        assert_eq!(mask, 1);
    }

    #[test]
    fn rejects_empty_and_too_many() {
        assert!(matches!(
            wait_for(&[], Some(Duration::ZERO)),
            Err(Error::InvalidArgument(_))
        ));
        let fd = eventfd();
        let many = vec![fd.as_fd(); MAX_WAIT_FDS + 1];
        let e = wait_for(&many, Some(Duration::ZERO)).unwrap_err();
        assert!(e.to_string().contains("1 to 64 fds, not 65"), "{e}");
    }
}
