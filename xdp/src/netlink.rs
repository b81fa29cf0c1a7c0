//! The interface's XDP state through rtnetlink: which program is attached in which mode
//! (`RTM_GETLINK`, attribute `IFLA_XDP`), and the legacy attach/detach (`RTM_SETLINK` with
//! `IFLA_XDP_FD`), which the daemon uses only to remove a program a previous run left attached
//! without a BPF link.
//!
//! Message layouts and numbers are those of the Linux UAPI headers `include/uapi/linux/netlink.h`
//! (`struct nlmsghdr`, `struct nlmsgerr`, `struct nlattr`), `include/uapi/linux/rtnetlink.h`
//! (`struct ifinfomsg`, `RTM_*`) and `include/uapi/linux/if_link.h` (`IFLA_XDP*`,
//! `XDP_ATTACHED_*`, `XDP_FLAGS_*`). The socket is opened in the calling thread's network
//! namespace.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_ROUTE: i32 = 0;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLA_F_NESTED: u16 = 1 << 15;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | (1 << 14));

const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
const IFLA_XDP_EXPECTED_FD: u16 = 8;

const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_FLAGS_HW_MODE: u32 = 1 << 3;
const XDP_FLAGS_REPLACE: u32 = 1 << 4;

/// Bytes of `struct nlmsghdr` and `struct ifinfomsg`.
const NLMSG_HDR: usize = 16;
const IFINFOMSG: usize = 16;

/// Errors of the netlink calls.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The socket could not be opened, or sending/receiving failed.
    #[error("rtnetlink {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel answered the request with an error.
    #[error("rtnetlink {what} of interface {ifindex} refused: {source}")]
    Refused {
        /// The request.
        what: &'static str,
        /// The interface.
        ifindex: u32,
        /// The errno.
        #[source]
        source: std::io::Error,
    },
    /// The answer did not parse.
    #[error("rtnetlink {what}: malformed answer ({why})")]
    Malformed {
        /// The request.
        what: &'static str,
        /// What was wrong.
        why: &'static str,
    },
}

/// How an XDP program is attached (`XDP_ATTACHED_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachedMode {
    /// Native (driver) mode: `ip link` shows `xdp`.
    Native,
    /// Generic (skb) mode: `ip link` shows `xdpgeneric`.
    Generic,
    /// Offloaded to the NIC: `xdpoffload`.
    Offload,
    /// Several programs in different modes.
    Multi,
}

impl AttachedMode {
    /// The `XDP_FLAGS_*` mode bit that selects this mode in `RTM_SETLINK` (none for `Multi`).
    fn flag(self) -> u32 {
        match self {
            AttachedMode::Native => XDP_FLAGS_DRV_MODE,
            AttachedMode::Generic => XDP_FLAGS_SKB_MODE,
            AttachedMode::Offload => XDP_FLAGS_HW_MODE,
            AttachedMode::Multi => 0,
        }
    }
}

impl std::fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttachedMode::Native => "native",
            AttachedMode::Generic => "generic",
            AttachedMode::Offload => "offload",
            AttachedMode::Multi => "multi",
        })
    }
}

/// The XDP program attached to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XdpAttached {
    /// The mode.
    pub mode: AttachedMode,
    /// The program's id (0 when the kernel gives none, as for `Multi`).
    pub prog_id: u32,
}

struct Socket(OwnedFd);

impl Socket {
    fn open() -> Result<Socket, NetlinkError> {
        // SAFETY: plain socket(2) call; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(NetlinkError::Io {
                what: "socket",
                source: std::io::Error::last_os_error(),
            });
        }
        // SAFETY: a new descriptor that nobody else owns.
        Ok(Socket(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn send(&self, msg: &[u8]) -> Result<(), NetlinkError> {
        // SAFETY: sockaddr_nl is plain data; all-zero is the kernel's address.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: `msg` and `addr` are valid for the lengths given during the call.
        let r = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if r < 0 {
            return Err(NetlinkError::Io {
                what: "sendto",
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    fn recv(&self, buf: &mut [u8]) -> Result<usize, NetlinkError> {
        // SAFETY: `buf` is valid for writes of its length during the call.
        let r = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if r < 0 {
            return Err(NetlinkError::Io {
                what: "recv",
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(r as usize)
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A request: `nlmsghdr` + `ifinfomsg` for `ifindex` + `attrs`.
fn request(kind: u16, flags: u16, ifindex: u32, attrs: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDR + IFINFOMSG + attrs.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
    m.extend_from_slice(&[0u8; 4]); // ifi_family AF_UNSPEC, pad, ifi_type
    m.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    m.extend_from_slice(&[0u8; 8]); // ifi_flags, ifi_change
    m.extend_from_slice(attrs);
    m
}

/// One attribute, padded to 4 bytes.
fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let len = 4 + payload.len();
    let mut a = Vec::with_capacity(len.next_multiple_of(4));
    a.extend_from_slice(&(len as u16).to_ne_bytes());
    a.extend_from_slice(&kind.to_ne_bytes());
    a.extend_from_slice(payload);
    a.resize(len.next_multiple_of(4), 0);
    a
}

/// The attributes in `b`: `(type without flags, payload)`.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16_at(b, 0) as usize;
        if len < 4 || len > b.len() {
            return None;
        }
        let item = (u16_at(b, 2) & NLA_TYPE_MASK, &b[4..len]);
        b = &b[len.next_multiple_of(4).min(b.len())..];
        Some(item)
    })
}

/// The XDP program attached to interface `ifindex`, if any (`RTM_GETLINK`).
pub fn xdp_attached(ifindex: u32) -> Result<Option<XdpAttached>, NetlinkError> {
    const WHAT: &str = "RTM_GETLINK";
    let sock = Socket::open()?;
    sock.send(&request(RTM_GETLINK, NLM_F_REQUEST, ifindex, &[]))?;
    let mut buf = vec![0u8; 64 << 10];
    let n = sock.recv(&mut buf)?;
    let msg = &buf[..n];
    if msg.len() < NLMSG_HDR {
        return Err(NetlinkError::Malformed {
            what: WHAT,
            why: "short message",
        });
    }
    let len = (u32_at(msg, 0) as usize).min(msg.len());
    match u16_at(msg, 4) {
        RTM_NEWLINK => {}
        NLMSG_ERROR if len >= NLMSG_HDR + 4 => {
            let errno = -(u32_at(msg, NLMSG_HDR) as i32);
            return Err(NetlinkError::Refused {
                what: WHAT,
                ifindex,
                source: std::io::Error::from_raw_os_error(errno),
            });
        }
        _ => {
            return Err(NetlinkError::Malformed {
                what: WHAT,
                why: "not an RTM_NEWLINK answer",
            })
        }
    }
    if len < NLMSG_HDR + IFINFOMSG {
        return Err(NetlinkError::Malformed {
            what: WHAT,
            why: "short RTM_NEWLINK",
        });
    }
    let Some((_, xdp)) = attrs(&msg[NLMSG_HDR + IFINFOMSG..len]).find(|(t, _)| *t == IFLA_XDP)
    else {
        return Ok(None);
    };
    let (mut mode, mut prog_id) = (0u8, 0u32);
    for (t, p) in attrs(xdp) {
        match t {
            IFLA_XDP_ATTACHED if !p.is_empty() => mode = p[0],
            IFLA_XDP_PROG_ID if p.len() >= 4 => prog_id = u32_at(p, 0),
            _ => {}
        }
    }
    let mode = match mode {
        0 => return Ok(None),
        1 => AttachedMode::Native,
        2 => AttachedMode::Generic,
        3 => AttachedMode::Offload,
        _ => AttachedMode::Multi,
    };
    Ok(Some(XdpAttached { mode, prog_id }))
}

/// Sends `RTM_SETLINK` with `IFLA_XDP` and waits for the acknowledgement.
fn set_xdp(ifindex: u32, what: &'static str, nested: &[u8]) -> Result<(), NetlinkError> {
    let sock = Socket::open()?;
    let xdp = attr(IFLA_XDP | NLA_F_NESTED, nested);
    sock.send(&request(
        RTM_SETLINK,
        NLM_F_REQUEST | NLM_F_ACK,
        ifindex,
        &xdp,
    ))?;
    let mut buf = vec![0u8; 8192];
    loop {
        let n = sock.recv(&mut buf)?;
        let msg = &buf[..n];
        if msg.len() < NLMSG_HDR + 4 {
            return Err(NetlinkError::Malformed {
                what,
                why: "short acknowledgement",
            });
        }
        match u16_at(msg, 4) {
            NLMSG_ERROR => {
                let errno = -(u32_at(msg, NLMSG_HDR) as i32);
                if errno == 0 {
                    return Ok(());
                }
                return Err(NetlinkError::Refused {
                    what,
                    ifindex,
                    source: std::io::Error::from_raw_os_error(errno),
                });
            }
            NLMSG_DONE => return Ok(()),
            _ => continue,
        }
    }
}

/// Attaches program `prog_fd` to `ifindex` the legacy way (no BPF link: the attachment stays
/// after the process exits), in native mode, or generic with `generic`; refused if a program
/// is attached already. The daemon never attaches this way; tests use it to stand for a
/// program left behind by an older or foreign loader.
pub fn attach_legacy(ifindex: u32, prog_fd: i32, generic: bool) -> Result<(), NetlinkError> {
    let flags = 1 | if generic {
        XDP_FLAGS_SKB_MODE
    } else {
        XDP_FLAGS_DRV_MODE
    };
    let mut nested = attr(IFLA_XDP_FD, &prog_fd.to_ne_bytes());
    nested.extend(attr(IFLA_XDP_FLAGS, &flags.to_ne_bytes()));
    set_xdp(ifindex, "RTM_SETLINK (attach XDP)", &nested)
}

/// Detaches the program attached to `ifindex` in `mode` the legacy way, only if it is still
/// `expected_prog_fd` (`XDP_FLAGS_REPLACE` with `IFLA_XDP_EXPECTED_FD`): another program
/// attached in the meantime is left alone (`EEXIST`). A program attached through a BPF link
/// cannot be detached this way (`EBUSY`): detach its link.
pub fn detach_legacy(
    ifindex: u32,
    mode: AttachedMode,
    expected_prog_fd: i32,
) -> Result<(), NetlinkError> {
    let flags = mode.flag() | XDP_FLAGS_REPLACE;
    let mut nested = attr(IFLA_XDP_FD, &(-1i32).to_ne_bytes());
    nested.extend(attr(IFLA_XDP_FLAGS, &flags.to_ne_bytes()));
    nested.extend(attr(IFLA_XDP_EXPECTED_FD, &expected_prog_fd.to_ne_bytes()));
    set_xdp(ifindex, "RTM_SETLINK (detach XDP)", &nested)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_parsed_back() {
        let mut b = attr(IFLA_XDP_ATTACHED, &[2]);
        assert_eq!(b.len(), 8);
        b.extend(attr(IFLA_XDP_PROG_ID, &77u32.to_ne_bytes()));
        let got: Vec<(u16, Vec<u8>)> = attrs(&b).map(|(t, p)| (t, p.to_vec())).collect();
        assert_eq!(
            got,
            vec![
                (IFLA_XDP_ATTACHED, vec![2]),
                (IFLA_XDP_PROG_ID, 77u32.to_ne_bytes().to_vec())
            ]
        );
        // A length past the end stops the walk instead of reading out of bounds.
        let mut bad = attr(IFLA_XDP_ATTACHED, &[1]);
        bad[0] = 200;
        assert_eq!(attrs(&bad).count(), 0);
        let nested = attr(IFLA_XDP | NLA_F_NESTED, &b);
        assert_eq!(attrs(&nested).next().map(|(t, _)| t), Some(IFLA_XDP));
    }

    #[test]
    fn request_header_carries_length_and_index() {
        let m = request(RTM_GETLINK, NLM_F_REQUEST, 7, &[]);
        assert_eq!(m.len(), 32);
        assert_eq!(u32_at(&m, 0), 32);
        assert_eq!(u16_at(&m, 4), RTM_GETLINK);
        assert_eq!(u32_at(&m, 20), 7);
    }
}
