//! [`EthtoolBackend`]: n-tuple rules and RSS through the kernel's `SIOCETHTOOL` ioctl on the PF's
//! netdev (an `AF_INET` datagram socket and a `struct ifreq` whose `ifr_data` points at the
//! ethtool command structure). No shell-out.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::uapi::{self, Rxnfc, RXNFC_RULE_LOCS_OFFSET, SIOCETHTOOL};
use super::{BackendError, RuleTable, SteeringBackend, SteeringError, SteeringRule};

/// Upper bound on rules listed with `ETHTOOL_GRXCLSRLALL` (ixgbe has at most 8190 locations).
const MAX_LIST: u32 = 1 << 16;
/// Upper bound on an RSS indirection table size accepted from the kernel.
const MAX_INDIR: u32 = 1 << 16;

/// The real kernel: ethtool ioctls on a netdev.
#[derive(Debug)]
pub struct EthtoolBackend {
    pf: String,
    sock: OwnedFd,
}

impl EthtoolBackend {
    /// Opens a control socket for `pf` and checks that the interface exists.
    pub fn open(pf: &str) -> Result<EthtoolBackend, SteeringError> {
        if pf.is_empty()
            || pf.len() >= libc::IFNAMSIZ
            || pf.contains(['/', '\0'])
            || pf.contains(char::is_whitespace)
        {
            return Err(SteeringError::BadName(
                pf.to_string(),
                format!(
                    "an interface name has 1 to {} characters, without '/', NUL or spaces",
                    libc::IFNAMSIZ - 1
                ),
            ));
        }
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return Err(SteeringError::Kernel {
                pf: pf.to_string(),
                op: "opening a control socket".into(),
                errno: e.raw_os_error().unwrap_or(0),
                msg: e.to_string(),
            });
        }
        // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        let b = EthtoolBackend {
            pf: pf.to_string(),
            sock,
        };
        let name = std::ffi::CString::new(pf)
            .map_err(|_| SteeringError::BadName(pf.to_string(), "contains NUL".into()))?;
        // SAFETY: `name` is a valid NUL-terminated string.
        if unsafe { libc::if_nametoindex(name.as_ptr()) } == 0 {
            return Err(SteeringError::Kernel {
                pf: pf.to_string(),
                op: "looking up the interface".into(),
                errno: libc::ENODEV,
                msg: super::explain_errno(pf, libc::ENODEV, "n-tuple rules"),
            });
        }
        Ok(b)
    }

    /// Issues `SIOCETHTOOL` with `ifr_data = data`.
    ///
    /// # Safety
    /// `data` must point to a writable ethtool command structure large enough for what the kernel
    /// reads and writes for its `cmd` (e.g. `rule_cnt` trailing `u32`s for `GRXCLSRLALL`).
    unsafe fn ioctl(&self, data: *mut libc::c_void) -> Result<(), BackendError> {
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in ifr.ifr_name.iter_mut().zip(self.pf.bytes()) {
            *d = s as libc::c_char;
        }
        ifr.ifr_ifru.ifru_data = data.cast();
        // SAFETY: `ifr` is a valid ifreq with a NUL-terminated name (the name is shorter than
        // IFNAMSIZ, checked in `open`); the caller guarantees `data`.
        let rc = unsafe { libc::ioctl(self.sock.as_raw_fd(), SIOCETHTOOL as _, &mut ifr) };
        if rc < 0 {
            let errno = std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO);
            return Err(BackendError::errno(errno));
        }
        Ok(())
    }

    fn rxnfc(&self, req: &mut Rxnfc) -> Result<(), BackendError> {
        // SAFETY: a full 192-byte `ethtool_rxnfc` is what the kernel copies for every rxnfc
        // command except GRXCLSRLALL (handled separately).
        unsafe { self.ioctl((req as *mut Rxnfc).cast()) }
    }

    fn list_locations(&self, count: u32) -> Result<(u32, Vec<u32>), BackendError> {
        let count = count.min(MAX_LIST);
        let bytes = RXNFC_RULE_LOCS_OFFSET + 4 * count as usize;
        // u64 words: the buffer is 8-aligned like `struct ethtool_rxnfc`.
        let mut buf = vec![0u64; bytes.div_ceil(8).max(std::mem::size_of::<Rxnfc>() / 8)];
        let mut hdr = Rxnfc::command(uapi::ETHTOOL_GRXCLSRLALL);
        hdr.rule_cnt = count;
        // SAFETY: `buf` has at least 192 bytes, is 8-aligned, and Rxnfc is plain data.
        unsafe { std::ptr::write(buf.as_mut_ptr().cast::<Rxnfc>(), hdr) };
        // SAFETY: the buffer holds the header plus `count` u32 slots at offset 188, exactly what
        // the kernel writes back for GRXCLSRLALL with this `rule_cnt`.
        unsafe { self.ioctl(buf.as_mut_ptr().cast())? };
        // SAFETY: the kernel filled in the header; the buffer is still 8-aligned and large enough.
        let out: Rxnfc = unsafe { std::ptr::read(buf.as_ptr().cast::<Rxnfc>()) };
        let n = out.rule_cnt.min(count) as usize;
        let raw: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let locs = (0..n)
            .map(|i| {
                let o = RXNFC_RULE_LOCS_OFFSET + 4 * i;
                u32::from_ne_bytes([raw[o], raw[o + 1], raw[o + 2], raw[o + 3]])
            })
            .collect();
        Ok((out.data as u32, locs))
    }

    fn indir_size(&self) -> Result<u32, BackendError> {
        let mut hdr = [uapi::ETHTOOL_GRXFHINDIR, 0u32];
        // SAFETY: with size 0 the kernel only reads and writes the 8-byte header.
        unsafe { self.ioctl(hdr.as_mut_ptr().cast())? };
        Ok(hdr[1])
    }
}

impl SteeringBackend for EthtoolBackend {
    fn pf(&self) -> &str {
        &self.pf
    }

    fn rx_rings(&mut self) -> Result<u32, BackendError> {
        let mut r = Rxnfc::command(uapi::ETHTOOL_GRXRINGS);
        self.rxnfc(&mut r)?;
        Ok(r.data as u32)
    }

    fn rule_table(&mut self) -> Result<RuleTable, BackendError> {
        let mut r = Rxnfc::command(uapi::ETHTOOL_GRXCLSRLCNT);
        self.rxnfc(&mut r)?;
        // Some drivers give the table size here; ixgbe gives it only with GRXCLSRLALL.
        let size_cnt = (r.data as u32) & !uapi::RX_CLS_LOC_SPECIAL;
        // The count can grow between the two calls (another tool inserting): the driver then
        // answers EMSGSIZE (ixgbe) or E2BIG; retry with room to spare.
        let mut count = r.rule_cnt;
        for _ in 0..4 {
            match self.list_locations(count) {
                Ok((size_all, locations)) => {
                    let size = size_cnt.max(size_all & !uapi::RX_CLS_LOC_SPECIAL);
                    return Ok(RuleTable { size, locations });
                }
                Err(e) if e.errno == libc::E2BIG || e.errno == libc::EMSGSIZE => {
                    count = count.saturating_mul(2).max(16)
                }
                Err(e) => return Err(e),
            }
        }
        Err(BackendError {
            errno: libc::E2BIG,
            detail: Some("the rule count kept changing while listing".into()),
        })
    }

    fn get_rule(&mut self, location: u32) -> Result<uapi::RxFlowSpec, BackendError> {
        let mut r = Rxnfc::command(uapi::ETHTOOL_GRXCLSRULE);
        r.fs.location = location;
        self.rxnfc(&mut r)?;
        Ok(r.fs)
    }

    fn insert(&mut self, rule: &SteeringRule, location: u32) -> Result<u32, BackendError> {
        let mut r = uapi::encode_insert(rule, location);
        self.rxnfc(&mut r)?;
        Ok(r.fs.location)
    }

    fn delete(&mut self, location: u32) -> Result<(), BackendError> {
        let mut r = uapi::encode_delete(location);
        self.rxnfc(&mut r)
    }

    fn rss_indir(&mut self) -> Result<Vec<u32>, BackendError> {
        let size = self.indir_size()?.min(MAX_INDIR);
        let mut buf = vec![0u32; 2 + size as usize];
        buf[0] = uapi::ETHTOOL_GRXFHINDIR;
        buf[1] = size;
        // SAFETY: header plus `size` u32 entries, which is what the kernel writes for this size.
        unsafe { self.ioctl(buf.as_mut_ptr().cast())? };
        Ok(buf[2..].to_vec())
    }

    fn set_rss_indir(&mut self, table: &[u32]) -> Result<(), BackendError> {
        let Ok(n) = u32::try_from(table.len()) else {
            return Err(BackendError::errno(libc::E2BIG));
        };
        let mut buf = Vec::with_capacity(2 + table.len());
        buf.push(uapi::ETHTOOL_SRXFHINDIR);
        buf.push(n);
        buf.extend_from_slice(table);
        // SAFETY: header plus `n` entries; the kernel reads exactly that for SRXFHINDIR.
        unsafe { self.ioctl(buf.as_mut_ptr().cast()) }
    }
}
