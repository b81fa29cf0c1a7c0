//! Wire ports on real Linux interfaces: an AF_PACKET raw socket bound to an
//! existing TAP/veth by ifindex, and a host TAP device (`IFF_TAP | IFF_NO_PI`) for the PF's
//! "kernel side". Both need CAP_NET_RAW/CAP_NET_ADMIN (root); errors say so.
//!
//! Both are non-blocking: `recv_frame`/`read_frame` return `Ok(None)` when nothing is waiting.
//! Both implement [`FrameSink`] so the engine can push egress into them (the
//! engine's `FrameSource` treats `None` as "exhausted", so a poller for ingress lives with the
//! caller: read, then `nic.inject`; [`crate::WirePort`] does that for a NIC).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::sink::FrameSink;

/// Wire-port errors: which interface, which step, and the OS error.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Interface name empty, too long or containing NUL.
    #[error("interface name {0:?} is invalid (1..=15 bytes, no NUL)")]
    BadName(String),
    /// No interface with that name.
    #[error("interface {0:?} does not exist")]
    NoSuchInterface(String),
    /// A system call failed.
    #[error("{what} on {ifname:?} failed{hint}")]
    Os {
        /// Which call.
        what: &'static str,
        /// Interface.
        ifname: String,
        /// OS error.
        source: io::Error,
        /// Extra hint (e.g. needs root).
        hint: &'static str,
    },
}

fn os_err(what: &'static str, ifname: &str, e: io::Error) -> WireError {
    let hint = match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => " (needs root or CAP_NET_RAW/CAP_NET_ADMIN)",
        _ => "",
    };
    WireError::Os {
        what,
        ifname: ifname.to_string(),
        source: e,
        hint,
    }
}

fn check_name(name: &str) -> Result<CString, WireError> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(WireError::BadName(name.to_string()));
    }
    CString::new(name).map_err(|_| WireError::BadName(name.to_string()))
}

/// ifindex of `name`.
pub fn ifindex(name: &str) -> Result<u32, WireError> {
    let c = check_name(name)?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(WireError::NoSuchInterface(name.to_string()));
    }
    Ok(idx)
}

/// A raw AF_PACKET socket bound to one interface, in promiscuous mode: every frame the
/// interface receives can be read, and frames written are transmitted on it.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifname: String,
    ifindex: u32,
}

impl PacketSocket {
    /// Opens and binds a socket to the existing interface `ifname` (a veth end, a TAP, ...).
    pub fn open(ifname: &str) -> Result<PacketSocket, WireError> {
        let idx = ifindex(ifname)?;
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        };
        if raw < 0 {
            return Err(os_err(
                "socket(AF_PACKET)",
                ifname,
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: `raw` is a freshly created, owned file descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = idx as i32;
        // SAFETY: `sll` is a valid sockaddr_ll and the length matches its size.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r < 0 {
            return Err(os_err(
                "bind(AF_PACKET)",
                ifname,
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: packet_mreq is plain old data; all-zero is a valid value.
        let mut mr: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mr.mr_ifindex = idx as i32;
        mr.mr_type = libc::PACKET_MR_PROMISC as u16;
        // SAFETY: `mr` is a valid packet_mreq and the length matches its size.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&mr as *const libc::packet_mreq).cast(),
                std::mem::size_of::<libc::packet_mreq>() as u32,
            )
        };
        if r < 0 {
            return Err(os_err(
                "PACKET_ADD_MEMBERSHIP(promisc)",
                ifname,
                io::Error::last_os_error(),
            ));
        }
        Ok(PacketSocket {
            fd,
            ifname: ifname.to_string(),
            ifindex: idx,
        })
    }

    /// Interface name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Reads one frame if one is waiting (non-blocking). Outgoing frames of the interface are
    /// not reported (only PACKET_OUTGOING would be, and they are skipped).
    pub fn recv_frame(&self, buf: &mut [u8]) -> Result<Option<usize>, WireError> {
        loop {
            // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: `buf` and `from` are valid for writes of the given sizes during the call.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                    _ => Err(os_err("recvfrom", &self.ifname, e)),
                };
            }
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue; // our own transmissions
            }
            return Ok(Some(n as usize));
        }
    }

    /// Transmits one frame on the interface.
    pub fn send_frame(&self, frame: &[u8]) -> Result<(), WireError> {
        // SAFETY: `frame` is a valid readable slice for the duration of the call.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(os_err("send", &self.ifname, io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// A host TAP device (`IFF_TAP | IFF_NO_PI`): frames written appear as received by the host's
/// network stack on that interface; frames the host sends on it can be read.
#[derive(Debug)]
pub struct TapDevice {
    fd: OwnedFd,
    name: String,
}

#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// `TUNSETIFF` = _IOW('T', 202, int).
const TUNSETIFF: libc::c_ulong = 0x4004_54CA;

impl TapDevice {
    /// Creates (or attaches to) TAP `name` via /dev/net/tun. The interface starts down; bring
    /// it up with `ip link set <name> up` or [`TapDevice::set_up`].
    pub fn open(name: &str) -> Result<TapDevice, WireError> {
        let cname = check_name(name)?;
        let path = c"/dev/net/tun";
        // SAFETY: `path` is a valid NUL-terminated string.
        let raw = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(os_err(
                "open(/dev/net/tun)",
                name,
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: `raw` is a freshly opened, owned file descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut req = IfReqFlags {
            name: [0; libc::IFNAMSIZ],
            flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short,
            _pad: [0; 22],
        };
        for (d, s) in req.name.iter_mut().zip(cname.as_bytes()) {
            *d = *s as libc::c_char;
        }
        // SAFETY: TUNSETIFF reads/writes a struct ifreq; `req` has the same layout (name, flags,
        // padding to 40 bytes) and lives across the call.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReqFlags) };
        if r < 0 {
            return Err(os_err("ioctl(TUNSETIFF)", name, io::Error::last_os_error()));
        }
        Ok(TapDevice {
            fd,
            name: name.to_string(),
        })
    }

    /// Interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the interface administratively up (SIOCSIFFLAGS with IFF_UP).
    pub fn set_up(&self) -> Result<(), WireError> {
        let cname = check_name(&self.name)?;
        // SAFETY: plain socket(2) call; result checked.
        let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if s < 0 {
            return Err(os_err(
                "socket(AF_INET)",
                &self.name,
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: `s` is a freshly created, owned descriptor.
        let s = unsafe { OwnedFd::from_raw_fd(s) };
        let mut req = IfReqFlags {
            name: [0; libc::IFNAMSIZ],
            flags: 0,
            _pad: [0; 22],
        };
        for (d, b) in req.name.iter_mut().zip(cname.as_bytes()) {
            *d = *b as libc::c_char;
        }
        // SAFETY: SIOCGIFFLAGS fills ifr_flags of a struct ifreq-compatible buffer.
        if unsafe {
            libc::ioctl(
                s.as_raw_fd(),
                libc::SIOCGIFFLAGS as _,
                &mut req as *mut IfReqFlags,
            )
        } < 0
        {
            return Err(os_err(
                "SIOCGIFFLAGS",
                &self.name,
                io::Error::last_os_error(),
            ));
        }
        req.flags |= libc::IFF_UP as libc::c_short;
        // SAFETY: as above, SIOCSIFFLAGS reads the same structure.
        if unsafe {
            libc::ioctl(
                s.as_raw_fd(),
                libc::SIOCSIFFLAGS as _,
                &mut req as *mut IfReqFlags,
            )
        } < 0
        {
            return Err(os_err(
                "SIOCSIFFLAGS",
                &self.name,
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// Writes one frame (the host receives it).
    pub fn write_frame(&self, frame: &[u8]) -> Result<(), WireError> {
        // SAFETY: `frame` is a valid readable slice for the duration of the call.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
        if n < 0 {
            return Err(os_err("write(tap)", &self.name, io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Reads one frame the host sent, if any (non-blocking).
    pub fn read_frame(&self, buf: &mut [u8]) -> Result<Option<usize>, WireError> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes during the call.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(os_err("read(tap)", &self.name, e)),
            };
        }
        Ok(Some(n as usize))
    }
}

impl FrameSink for PacketSocket {
    fn frame(&mut self, frame: &[u8]) {
        if let Err(e) = self.send_frame(frame) {
            log::debug!("wire: {e}", e = floodgate_vfio::ErrorChain(&e));
        }
    }
}

impl FrameSink for TapDevice {
    fn frame(&mut self, frame: &[u8]) {
        if let Err(e) = self.write_frame(frame) {
            log::debug!("wire: {e}", e = floodgate_vfio::ErrorChain(&e));
        }
    }
}
