//! # floodgate-xdp
//!
//! The AF_XDP backend's foundation, written against the kernel's system-call interface only (no
//! libbpf, no libelf, no clang: nothing but `libc`):
//!
//! * [`bpf`]: a small typed wrapper of the `bpf(2)` system call: maps (XSKMAP, ARRAY), program
//!   load with the verifier log in the error, `BPF_PROG_TEST_RUN`, and attaching an XDP
//!   program to an interface through a BPF link (the attachment lives exactly as long as the
//!   link's file descriptor, so a crash removes it).
//! * [`netlink`]: which XDP program an interface runs and in which mode (rtnetlink), and the
//!   legacy detach used to clean up a program a previous run left attached without a link.
//! * [`prog`]: an eBPF instruction encoder and a generator that turns a list of steering rules
//!   ([`prog::XdpRule`]) into an XDP program: matching packets are redirected into the AF_XDP
//!   socket of their RX queue, everything else goes to the kernel (`XDP_PASS`).
//! * [`socket`]: an AF_XDP socket with its UMEM and four rings and a burst API
//!   ([`socket::XskSocket::rx_burst`], [`socket::XskSocket::release`],
//!   [`socket::XskSocket::tx_burst`], [`socket::XskSocket::complete`]); zero copy where the
//!   driver supports it, copy mode elsewhere.
//!
//! See `docs/af_xdp.md` in the repository for how the pieces fit and how the daemon uses them.

#![deny(missing_docs)]

pub mod bpf;
pub mod netlink;
pub mod prog;
pub mod socket;

pub use bpf::{BpfError, Link, Map, MapType, Program, XdpAttachMode};
pub use prog::{generate, Flow, Insn, XdpAction, XdpRule};
pub use socket::{
    BindMode, Frame, RxDesc, SocketConfig, SocketError, UmemSocket, XskMode, XskSocket,
};

/// Interface index of `name` (`if_nametoindex(3)`), or `None` if there is no such interface.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}
