//! vfio-user wire format: the 16-byte message header and the few command bodies the client
//! sends. All fields are little-endian (the protocol runs between processes of one host).

/// Header size in bytes.
pub(crate) const HEADER_SIZE: usize = 16;
/// Largest message we accept: 1 MiB of data plus headers.
pub const MAX_MESSAGE: usize = (1 << 20) + 4096;
/// Largest data transfer we announce.
pub(crate) const MAX_DATA: u32 = 1 << 20;
/// File descriptors we accept per message.
pub(crate) const OUR_MAX_FDS: u32 = 8;
/// Protocol version we speak.
pub(crate) const VERSION_MAJOR: u16 = 0;
pub(crate) const VERSION_MINOR: u16 = 1;

/// Flags: message type (bits 3:0), no-reply (bit 4), error (bit 5).
pub(crate) const FLAG_TYPE_MASK: u32 = 0xF;
pub(crate) const FLAG_REPLY: u32 = 1;
pub(crate) const FLAG_ERROR: u32 = 1 << 5;

/// Commands used by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub(crate) enum Command {
    Version = 1,
    DmaMap = 2,
    DmaUnmap = 3,
    DeviceGetInfo = 4,
    DeviceGetRegionInfo = 5,
    DeviceGetIrqInfo = 7,
    SetIrqs = 8,
    RegionRead = 9,
    RegionWrite = 10,
    DeviceReset = 13,
}

/// The message header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Header {
    pub message_id: u16,
    pub command: u16,
    pub message_size: u32,
    pub flags: u32,
    pub error: u32,
}

impl Header {
    pub(crate) fn to_bytes(self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..2].copy_from_slice(&self.message_id.to_le_bytes());
        b[2..4].copy_from_slice(&self.command.to_le_bytes());
        b[4..8].copy_from_slice(&self.message_size.to_le_bytes());
        b[8..12].copy_from_slice(&self.flags.to_le_bytes());
        b[12..16].copy_from_slice(&self.error.to_le_bytes());
        b
    }

    pub(crate) fn from_bytes(b: &[u8; HEADER_SIZE]) -> Header {
        Header {
            message_id: u16::from_le_bytes([b[0], b[1]]),
            command: u16::from_le_bytes([b[2], b[3]]),
            message_size: u32_at(b, 4),
            flags: u32_at(b, 8),
            error: u32_at(b, 12),
        }
    }
}

/// Little-endian u32 at `off` (0 if out of range).
pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Little-endian u64 at `off` (0 if out of range).
pub(crate) fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from(u32_at(b, off)) | u64::from(u32_at(b, off + 4)) << 32
}

/// REGION_READ/REGION_WRITE body: offset, region, count.
pub(crate) fn region_access(region: u32, offset: u64, count: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..8].copy_from_slice(&offset.to_le_bytes());
    b[8..12].copy_from_slice(&region.to_le_bytes());
    b[12..16].copy_from_slice(&count.to_le_bytes());
    b
}

/// DMA_MAP body: argsz, flags (read | write), offset in the fd, IOVA, size.
pub(crate) fn dma_map(offset: u64, iova: u64, size: u64) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[0..4].copy_from_slice(&32u32.to_le_bytes());
    b[4..8].copy_from_slice(&3u32.to_le_bytes());
    b[8..16].copy_from_slice(&offset.to_le_bytes());
    b[16..24].copy_from_slice(&iova.to_le_bytes());
    b[24..32].copy_from_slice(&size.to_le_bytes());
    b
}

/// DMA_UNMAP body: argsz, flags, IOVA, size.
pub(crate) fn dma_unmap(iova: u64, size: u64) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[0..4].copy_from_slice(&24u32.to_le_bytes());
    b[8..16].copy_from_slice(&iova.to_le_bytes());
    b[16..24].copy_from_slice(&size.to_le_bytes());
    b
}

/// SET_IRQS body: argsz, flags, index, start, count.
pub(crate) fn set_irqs(index: u32, flags: u32, start: u32, count: u32) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[0..4].copy_from_slice(&20u32.to_le_bytes());
    b[4..8].copy_from_slice(&flags.to_le_bytes());
    b[8..12].copy_from_slice(&index.to_le_bytes());
    b[12..16].copy_from_slice(&start.to_le_bytes());
    b[16..20].copy_from_slice(&count.to_le_bytes());
    b
}

/// The unsigned number after `"key":` in a flat JSON text, if any (enough for the VERSION
/// capabilities, without a JSON parser).
pub(crate) fn json_u32(json: &str, key: &str) -> Option<u32> {
    let pat = format!("\"{key}\"");
    let at = json.find(&pat)? + pat.len();
    let rest = json[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// One `recvmsg` into `buf` that closes every file descriptor arriving with the bytes (the
/// client uses none the server sends). Returns the number of bytes read.
///
/// Room is made for [`OUR_MAX_FDS`], the number announced in VERSION; a server sending more
/// gets an error (`MSG_CTRUNC`), the descriptors that did arrive being closed all the same. A
/// plain `recv_with_fd` (room for one) would keep the second of two descriptors open and, past
/// two, report the truncation without closing what arrived: a hostile server could fill the
/// descriptor table one reply at a time.
pub(crate) fn recv_closing_fds(
    sock: &std::os::unix::net::UnixStream,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    // Control buffer, u64-aligned as cmsghdr needs: 16-byte header + 8 fds = 48 bytes.
    let mut ctl = [0u64; 8];
    let fd_bytes = OUR_MAX_FDS * std::mem::size_of::<RawFd>() as u32;
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes) } as usize;
    debug_assert!(space <= std::mem::size_of_val(&ctl));
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is a valid empty one; the fields set below point at `iov`
    // and `ctl`, which outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: `msg` describes `buf` and `ctl`, both writable for the lengths given.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR/NXTHDR stay within msg_controllen.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !c.is_null() {
        // SAFETY: `c` is a control message header inside `ctl` (see above).
        let (level, kind, len) = unsafe { ((*c).cmsg_level, (*c).cmsg_type, (*c).cmsg_len) };
        if level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS {
            // SAFETY: CMSG_DATA of a header inside `ctl`; the kernel wrote `len` bytes in all.
            let data = unsafe { libc::CMSG_DATA(c) };
            // cmsg_len is usize with glibc, u32 with musl.
            #[allow(clippy::unnecessary_cast)]
            let count =
                (len as usize - (data as usize - c as usize)) / std::mem::size_of::<RawFd>();
            for i in 0..count {
                // SAFETY: the i-th fd of this message, inside `ctl`; it is new to this process
                // and owned by nothing else, so closing it (by dropping) is ours to do.
                drop(unsafe { OwnedFd::from_raw_fd(data.cast::<RawFd>().add(i).read_unaligned()) });
            }
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        c = unsafe { libc::CMSG_NXTHDR(&msg, c) };
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(std::io::Error::other(format!(
            "reply carries more than {OUR_MAX_FDS} file descriptors"
        )));
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = Header {
            message_id: 0x1234,
            command: Command::RegionRead as u16,
            message_size: 32,
            flags: FLAG_REPLY | FLAG_ERROR,
            error: 22,
        };
        let b = h.to_bytes();
        assert_eq!(&b[0..4], &[0x34, 0x12, 9, 0]);
        assert_eq!(Header::from_bytes(&b), h);
    }

    #[test]
    fn bodies_have_the_spec_layout() {
        let m = dma_map(0x1000, 0x1_0000_0000, 0x20_0000);
        assert_eq!(u32_at(&m, 0), 32);
        assert_eq!(u64_at(&m, 8), 0x1000);
        assert_eq!(u64_at(&m, 16), 0x1_0000_0000);
        assert_eq!(u64_at(&m, 24), 0x20_0000);
        let s = set_irqs(2, 0x24, 1, 1);
        assert_eq!((u32_at(&s, 8), u32_at(&s, 12), u32_at(&s, 16)), (2, 1, 1));
        let r = region_access(7, 0x70, 2);
        assert_eq!((u64_at(&r, 0), u32_at(&r, 8), u32_at(&r, 12)), (0x70, 7, 2));
    }

    #[test]
    fn json_numbers() {
        let j = r#"{"capabilities":{"max_msg_fds":1,"max_data_xfer_size":1048576,"migration":{"pgsize":4096}}}"#;
        assert_eq!(json_u32(j, "max_msg_fds"), Some(1));
        assert_eq!(json_u32(j, "max_data_xfer_size"), Some(1 << 20));
        assert_eq!(json_u32(j, "nothing"), None);
        assert_eq!(json_u32(r#"{"max_msg_fds": x}"#, "max_msg_fds"), None);
    }
}
