//! A minimal typed wrapper of the `bpf(2)` system call.
//!
//! Only what the AF_XDP backend needs: creating maps (XSKMAP for the sockets, ARRAY and
//! PERCPU_ARRAY for counters), element update/lookup/delete, loading an XDP program (the
//! verifier log comes back in the error), `BPF_PROG_TEST_RUN`, and attaching a program to an
//! interface with `BPF_LINK_CREATE` (attach type `BPF_XDP`).
//!
//! Command numbers, attribute layouts and enum values are those of the Linux UAPI header
//! `include/uapi/linux/bpf.h` (`enum bpf_cmd`, `union bpf_attr`, `enum bpf_map_type`,
//! `enum bpf_prog_type`, `enum bpf_attach_type`); each attribute struct below is the prefix of
//! the union member for its command. The kernel accepts a shorter `bpf_attr` than its own and
//! zero-fills the rest, so passing just the prefix is the documented way to call it.
//!
//! Every kernel object is held as an [`OwnedFd`]: dropping a [`Map`], [`Program`] or [`Link`]
//! closes it, and the kernel frees the object when its last reference goes. In particular an
//! XDP program attached through a [`Link`] is detached when the link's descriptor closes,
//! including when the process dies.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::prog::Insn;

// `enum bpf_cmd` (include/uapi/linux/bpf.h).
const BPF_MAP_CREATE: u32 = 0;
const BPF_MAP_LOOKUP_ELEM: u32 = 1;
const BPF_MAP_UPDATE_ELEM: u32 = 2;
const BPF_MAP_DELETE_ELEM: u32 = 3;
const BPF_PROG_LOAD: u32 = 5;
const BPF_PROG_TEST_RUN: u32 = 10;
const BPF_PROG_GET_FD_BY_ID: u32 = 13;
const BPF_OBJ_GET_INFO_BY_FD: u32 = 15;
const BPF_LINK_CREATE: u32 = 28;
const BPF_LINK_UPDATE: u32 = 29;
const BPF_LINK_GET_FD_BY_ID: u32 = 30;
const BPF_LINK_DETACH: u32 = 34;

// `BPF_F_REPLACE` (include/uapi/linux/bpf.h): `BPF_LINK_UPDATE` only if the link still runs
// `old_prog_fd`.
const BPF_F_REPLACE: u32 = 1 << 2;
// `enum bpf_link_type`: `BPF_LINK_TYPE_XDP`.
const BPF_LINK_TYPE_XDP: u32 = 6;

// `enum bpf_prog_type`, `enum bpf_attach_type` (include/uapi/linux/bpf.h).
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;

// `XDP_FLAGS_*` (include/uapi/linux/if_link.h), used as `link_create.flags` for BPF_XDP.
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// Size of the verifier log buffer used when a load fails (the log is requested on a retry).
const VERIFIER_LOG_SIZE: usize = 4 << 20;
/// How many bytes of the verifier log's end an error keeps.
const LOG_EXCERPT: usize = 4000;

/// Errors of the `bpf(2)` wrapper: which call failed, and why.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// A `bpf(2)` command failed.
    #[error("bpf({cmd}) failed: {source}")]
    Syscall {
        /// The command (`BPF_MAP_CREATE`, ...).
        cmd: &'static str,
        /// The errno.
        #[source]
        source: std::io::Error,
    },
    /// `BPF_PROG_LOAD` failed; the verifier log's end says why.
    #[error("BPF_PROG_LOAD of {insns} instructions failed: {source}; verifier log (end): {log}")]
    Verifier {
        /// The errno.
        #[source]
        source: std::io::Error,
        /// Number of instructions in the rejected program.
        insns: usize,
        /// The last few thousand bytes of the verifier log (empty if the kernel wrote none).
        log: String,
    },
    /// A key or value did not have the map's size.
    #[error("{what} is {got} bytes, the map's {what} size is {want}")]
    Size {
        /// `key` or `value`.
        what: &'static str,
        /// Size given.
        got: usize,
        /// Size the map was created with.
        want: u32,
    },
    /// A name was longer than the kernel's 15 characters or contained a NUL.
    #[error("object name {0:?} must be at most 15 bytes without NUL")]
    Name(String),
    /// A program had no instructions or too many for one load.
    #[error("program has {0} instructions (must be 1..=1000000)")]
    ProgramSize(usize),
}

/// Map types (`enum bpf_map_type`, include/uapi/linux/bpf.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapType {
    /// `BPF_MAP_TYPE_ARRAY`.
    Array,
    /// `BPF_MAP_TYPE_PERCPU_ARRAY`: lookups return one value per possible CPU.
    PercpuArray,
    /// `BPF_MAP_TYPE_XSKMAP`: key `u32` (queue), value an AF_XDP socket fd.
    XskMap,
}

impl MapType {
    fn raw(self) -> u32 {
        match self {
            MapType::Array => 2,
            MapType::PercpuArray => 6,
            MapType::XskMap => 17,
        }
    }
}

/// How an XDP program is attached to an interface (`XDP_FLAGS_*`, include/uapi/linux/if_link.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpAttachMode {
    /// Let the kernel choose: native (driver) mode when the driver has it, else generic.
    #[default]
    Auto,
    /// Native (driver) mode only (`XDP_FLAGS_DRV_MODE`).
    Native,
    /// Generic (skb) mode (`XDP_FLAGS_SKB_MODE`), which every interface supports.
    Generic,
}

impl XdpAttachMode {
    fn flags(self) -> u32 {
        match self {
            XdpAttachMode::Auto => 0,
            XdpAttachMode::Native => XDP_FLAGS_DRV_MODE,
            XdpAttachMode::Generic => XDP_FLAGS_SKB_MODE,
        }
    }
}

/// `bpf_attr` prefix for `BPF_MAP_CREATE`.
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// `bpf_attr` prefix for the `BPF_MAP_*_ELEM` commands.
#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `bpf_attr` prefix for `BPF_PROG_LOAD` (up to `expected_attach_type`, offset 68).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `bpf_attr` prefix for `BPF_PROG_TEST_RUN` (the `test` member).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    /// Explicit, zeroed: the kernel refuses a test run whose bytes after `batch_size` are not
    /// zero, and implicit padding would be left uninitialised.
    _pad: u32,
}

/// `BPF_F_TEST_XDP_LIVE_FRAMES`: a test run that really performs the program's redirects.
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// `bpf_attr` prefix for `BPF_LINK_CREATE` (`link_create`: prog_fd, target_ifindex,
/// attach_type, flags).
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// `bpf_attr` prefix for `BPF_LINK_DETACH`.
#[repr(C)]
#[derive(Default)]
struct LinkDetachAttr {
    link_fd: u32,
}

/// `bpf_attr` prefix for `BPF_LINK_UPDATE`.
#[repr(C)]
#[derive(Default)]
struct LinkUpdateAttr {
    link_fd: u32,
    new_prog_fd: u32,
    flags: u32,
    old_prog_fd: u32,
}

/// `bpf_attr` prefix for the `BPF_*_GET_FD_BY_ID` commands.
#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

/// `bpf_attr` prefix for `BPF_OBJ_GET_INFO_BY_FD` (the `info` member).
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// Prefix of `struct bpf_prog_info` up to `name` (offsets from include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct ProgInfoRaw {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; 16],
}

/// Prefix of `struct bpf_link_info`: type, id, prog_id, and the union's `xdp.ifindex`
/// (the union is 8-byte aligned, at offset 16).
#[repr(C)]
#[derive(Default)]
struct LinkInfoRaw {
    link_type: u32,
    id: u32,
    prog_id: u32,
    _pad: u32,
    ifindex: u32,
    _pad2: u32,
}

const _: () = assert!(std::mem::size_of::<MapCreateAttr>() == 44);
const _: () = assert!(std::mem::offset_of!(ProgInfoRaw, name) == 64);
const _: () = assert!(std::mem::offset_of!(LinkInfoRaw, ifindex) == 16);
const _: () = assert!(std::mem::offset_of!(ProgLoadAttr, prog_name) == 48);
const _: () = assert!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type) == 68);
const _: () = assert!(std::mem::offset_of!(TestRunAttr, ctx_out) == 56);

/// Calls `bpf(cmd, attr, sizeof attr)`.
fn sys_bpf<T>(cmd: u32, attr: &mut T) -> std::io::Result<i64> {
    // SAFETY: `attr` is a valid, initialised `repr(C)` prefix of `union bpf_attr` for `cmd`,
    // and its size is passed, so the kernel reads (and for some commands writes) only within
    // it. Pointers inside it point to buffers that outlive the call (checked by the callers).
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_long,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as i64)
    }
}

fn fd_result(cmd: &'static str, r: std::io::Result<i64>) -> Result<OwnedFd, BpfError> {
    let fd = r.map_err(|source| BpfError::Syscall { cmd, source })?;
    // SAFETY: on success these commands return a new file descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn object_name(name: &str) -> Result<[u8; 16], BpfError> {
    let b = name.as_bytes();
    if b.len() > 15 || b.contains(&0) {
        return Err(BpfError::Name(name.to_string()));
    }
    let mut out = [0u8; 16];
    out[..b.len()].copy_from_slice(b);
    Ok(out)
}

/// A BPF map.
#[derive(Debug)]
pub struct Map {
    fd: OwnedFd,
    map_type: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
}

impl Map {
    /// Creates a map (`BPF_MAP_CREATE`). `name` is at most 15 bytes (it shows in `bpftool`).
    pub fn create(
        map_type: MapType,
        name: &str,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    ) -> Result<Map, BpfError> {
        let mut attr = MapCreateAttr {
            map_type: map_type.raw(),
            key_size,
            value_size,
            max_entries,
            map_name: object_name(name)?,
            ..Default::default()
        };
        let fd = fd_result("BPF_MAP_CREATE", sys_bpf(BPF_MAP_CREATE, &mut attr))?;
        Ok(Map {
            fd,
            map_type,
            key_size,
            value_size,
            max_entries,
        })
    }

    /// An XSKMAP with `entries` slots (one per RX queue), key `u32`, value a socket fd.
    pub fn xskmap(name: &str, entries: u32) -> Result<Map, BpfError> {
        Map::create(MapType::XskMap, name, 4, 4, entries)
    }

    /// The map's type.
    pub fn map_type(&self) -> MapType {
        self.map_type
    }

    /// Number of entries the map was created with.
    pub fn max_entries(&self) -> u32 {
        self.max_entries
    }

    /// Size in bytes of one value as stored (for per-CPU maps, of one CPU's value).
    pub fn value_size(&self) -> u32 {
        self.value_size
    }

    fn check(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), BpfError> {
        if key.len() != self.key_size as usize {
            return Err(BpfError::Size {
                what: "key",
                got: key.len(),
                want: self.key_size,
            });
        }
        if let Some(v) = value {
            if v.len() != self.value_size as usize {
                return Err(BpfError::Size {
                    what: "value",
                    got: v.len(),
                    want: self.value_size,
                });
            }
        }
        Ok(())
    }

    /// `BPF_MAP_UPDATE_ELEM` with `BPF_ANY` (create or replace).
    pub fn update(&self, key: &[u8], value: &[u8]) -> Result<(), BpfError> {
        self.check(key, Some(value))?;
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: key.as_ptr() as u64,
            value: value.as_ptr() as u64,
            ..Default::default()
        };
        sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map_err(|source| BpfError::Syscall {
            cmd: "BPF_MAP_UPDATE_ELEM",
            source,
        })?;
        Ok(())
    }

    /// `BPF_MAP_LOOKUP_ELEM`: the value of `key`, or `None` if it has none (`ENOENT`). For
    /// per-CPU maps the result holds one value per possible CPU, each rounded up to 8 bytes.
    pub fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BpfError> {
        self.check(key, None)?;
        let per = if self.map_type == MapType::PercpuArray {
            (self.value_size as usize).next_multiple_of(8) * possible_cpus()
        } else {
            self.value_size as usize
        };
        let mut value = vec![0u8; per];
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: key.as_ptr() as u64,
            value: value.as_mut_ptr() as u64,
            ..Default::default()
        };
        match sys_bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
            Ok(_) => Ok(Some(value)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(source) => Err(BpfError::Syscall {
                cmd: "BPF_MAP_LOOKUP_ELEM",
                source,
            }),
        }
    }

    /// `BPF_MAP_DELETE_ELEM`. Returns `false` if the key had no value.
    pub fn delete(&self, key: &[u8]) -> Result<bool, BpfError> {
        self.check(key, None)?;
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: key.as_ptr() as u64,
            ..Default::default()
        };
        match sys_bpf(BPF_MAP_DELETE_ELEM, &mut attr) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(source) => Err(BpfError::Syscall {
                cmd: "BPF_MAP_DELETE_ELEM",
                source,
            }),
        }
    }
}

impl AsFd for Map {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Number of possible CPUs (`/sys/devices/system/cpu/possible`, e.g. `0-3`), the number of
/// values a per-CPU map lookup returns. Falls back to the online count.
pub fn possible_cpus() -> usize {
    let parse = |s: &str| -> Option<usize> {
        let mut n = 0;
        for part in s.trim().split(',') {
            match part.split_once('-') {
                Some((a, b)) => n += b.parse::<usize>().ok()? - a.parse::<usize>().ok()? + 1,
                None => {
                    part.parse::<usize>().ok()?;
                    n += 1
                }
            }
        }
        Some(n)
    };
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|s| parse(&s))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// `BPF_OBJ_GET_INFO_BY_FD` into `info` (a prefix of the kernel's info struct for `fd`).
fn obj_info<T>(fd: BorrowedFd<'_>, info: &mut T) -> Result<(), BpfError> {
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<T>() as u32,
        info: info as *mut T as u64,
    };
    sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).map_err(|source| BpfError::Syscall {
        cmd: "BPF_OBJ_GET_INFO_BY_FD",
        source,
    })?;
    Ok(())
}

/// A new descriptor for the object with kernel id `id`, or `None` if there is none (`ENOENT`).
fn fd_by_id(cmd: u32, name: &'static str, id: u32) -> Result<Option<OwnedFd>, BpfError> {
    let mut attr = GetFdByIdAttr {
        id,
        ..Default::default()
    };
    match sys_bpf(cmd, &mut attr) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        r => fd_result(name, r).map(Some),
    }
}

/// What the kernel says about a loaded program (`struct bpf_prog_info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgInfo {
    /// The program's id (what `ip link` and `bpftool prog` show).
    pub id: u32,
    /// Its name (at most 15 bytes).
    pub name: String,
    /// Its instruction count after the kernel's rewrites.
    pub xlated_insns: u32,
}

/// What the kernel says about a BPF link (`struct bpf_link_info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// The link's id (what `bpftool link` shows).
    pub id: u32,
    /// The id of the program it runs.
    pub prog_id: u32,
    /// For an XDP link, the interface; `None` for other link types.
    pub xdp_ifindex: Option<u32>,
}

/// A loaded XDP program.
#[derive(Debug)]
pub struct Program {
    fd: OwnedFd,
    insns: usize,
}

/// Result of one [`Program::test_run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRun {
    /// The program's return value (the XDP action).
    pub retval: u32,
    /// The frame as the program left it.
    pub data_out: Vec<u8>,
}

impl Program {
    /// Loads an XDP program (`BPF_PROG_LOAD`, type `BPF_PROG_TYPE_XDP`, expected attach type
    /// `BPF_XDP`, license "Dual MIT/GPL"). If the verifier rejects it, the load is repeated
    /// with the verifier log enabled and the error carries the log's end.
    pub fn load_xdp(name: &str, insns: &[Insn]) -> Result<Program, BpfError> {
        if insns.is_empty() || insns.len() > 1_000_000 {
            return Err(BpfError::ProgramSize(insns.len()));
        }
        let license: &CStr = c"Dual MIT/GPL";
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: object_name(name)?,
            expected_attach_type: BPF_XDP,
            ..Default::default()
        };
        match sys_bpf(BPF_PROG_LOAD, &mut attr) {
            Ok(fd) => {
                // SAFETY: BPF_PROG_LOAD returned a new fd owned by nobody else.
                let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
                return Ok(Program {
                    fd,
                    insns: insns.len(),
                });
            }
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                return Err(BpfError::Verifier {
                    source: e,
                    insns: insns.len(),
                    log: String::from("(not privileged: needs CAP_BPF and CAP_NET_ADMIN)"),
                })
            }
            Err(_) => {}
        }
        let mut log = vec![0u8; VERIFIER_LOG_SIZE];
        attr.log_level = 1;
        attr.log_size = log.len() as u32;
        attr.log_buf = log.as_mut_ptr() as u64;
        match sys_bpf(BPF_PROG_LOAD, &mut attr) {
            Ok(fd) => {
                // SAFETY: as above.
                let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
                log::warn!("XDP program {name} loaded only on the second attempt");
                Ok(Program {
                    fd,
                    insns: insns.len(),
                })
            }
            Err(source) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(&log[..end]);
                let start = text.len().saturating_sub(LOG_EXCERPT);
                let start = (start..text.len())
                    .find(|&i| text.is_char_boundary(i))
                    .unwrap_or(text.len());
                Err(BpfError::Verifier {
                    source,
                    insns: insns.len(),
                    log: text[start..].trim_end().to_string(),
                })
            }
        }
    }

    /// The loaded program with kernel id `id` (`BPF_PROG_GET_FD_BY_ID`), or `None` if no
    /// program has that id (any more).
    pub fn from_id(id: u32) -> Result<Option<Program>, BpfError> {
        let Some(fd) = fd_by_id(BPF_PROG_GET_FD_BY_ID, "BPF_PROG_GET_FD_BY_ID", id)? else {
            return Ok(None);
        };
        let mut p = Program { fd, insns: 0 };
        p.insns = (p.info()?.xlated_insns as usize).max(1);
        Ok(Some(p))
    }

    /// The kernel's id and name of the program (`BPF_OBJ_GET_INFO_BY_FD`).
    pub fn info(&self) -> Result<ProgInfo, BpfError> {
        let mut raw = ProgInfoRaw::default();
        obj_info(self.fd.as_fd(), &mut raw)?;
        let end = raw.name.iter().position(|&b| b == 0).unwrap_or(16);
        Ok(ProgInfo {
            id: raw.id,
            name: String::from_utf8_lossy(&raw.name[..end]).into_owned(),
            xlated_insns: raw.xlated_prog_len / 8,
        })
    }

    /// Number of instructions loaded.
    pub fn len(&self) -> usize {
        self.insns
    }

    /// Always `false`: an empty program cannot be loaded.
    pub fn is_empty(&self) -> bool {
        self.insns == 0
    }

    /// Runs the program once on `frame` (`BPF_PROG_TEST_RUN`, no context: queue 0, the
    /// loopback device) and returns its verdict and the frame it left. The redirect itself is
    /// not performed: test runs only report the action.
    pub fn test_run(&self, frame: &[u8]) -> Result<TestRun, BpfError> {
        let mut out = vec![0u8; frame.len() + 512];
        let mut attr = TestRunAttr {
            prog_fd: self.fd.as_raw_fd() as u32,
            data_size_in: frame.len() as u32,
            data_size_out: out.len() as u32,
            data_in: frame.as_ptr() as u64,
            data_out: out.as_mut_ptr() as u64,
            repeat: 1,
            ..Default::default()
        };
        sys_bpf(BPF_PROG_TEST_RUN, &mut attr).map_err(|source| BpfError::Syscall {
            cmd: "BPF_PROG_TEST_RUN",
            source,
        })?;
        out.truncate((attr.data_size_out as usize).min(out.len()));
        Ok(TestRun {
            retval: attr.retval,
            data_out: out,
        })
    }

    /// Runs the program `repeat` times on `frame` with live frames
    /// (`BPF_F_TEST_XDP_LIVE_FRAMES`, batches of `batch_size`, at most 256): its redirects and
    /// transmits really happen, so this generates traffic. Nothing is returned but success.
    pub fn run_live(&self, frame: &[u8], repeat: u32, batch_size: u32) -> Result<(), BpfError> {
        let mut attr = TestRunAttr {
            prog_fd: self.fd.as_raw_fd() as u32,
            data_size_in: frame.len() as u32,
            data_in: frame.as_ptr() as u64,
            repeat,
            flags: BPF_F_TEST_XDP_LIVE_FRAMES,
            batch_size: batch_size.min(256),
            ..Default::default()
        };
        sys_bpf(BPF_PROG_TEST_RUN, &mut attr).map_err(|source| BpfError::Syscall {
            cmd: "BPF_PROG_TEST_RUN (live frames)",
            source,
        })?;
        Ok(())
    }

    /// Attaches the program to interface `ifindex` through a BPF link (`BPF_LINK_CREATE`,
    /// attach type `BPF_XDP`). The program stays attached while the returned [`Link`] (or a
    /// duplicate of its fd) is open; it fails with `EBUSY` if another program is attached.
    pub fn attach_xdp(&self, ifindex: u32, mode: XdpAttachMode) -> Result<Link, BpfError> {
        let mut attr = LinkCreateAttr {
            prog_fd: self.fd.as_raw_fd() as u32,
            target_ifindex: ifindex,
            attach_type: BPF_XDP,
            flags: mode.flags(),
        };
        let fd = fd_result("BPF_LINK_CREATE", sys_bpf(BPF_LINK_CREATE, &mut attr))?;
        Ok(Link { fd, ifindex, mode })
    }
}

impl AsFd for Program {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// An XDP program attached to an interface. Dropping it detaches the program (unless the fd
/// was duplicated); so does the death of the process.
#[derive(Debug)]
pub struct Link {
    fd: OwnedFd,
    ifindex: u32,
    mode: XdpAttachMode,
}

impl Link {
    /// The interface the program is attached to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The mode requested at attach time.
    pub fn mode(&self) -> XdpAttachMode {
        self.mode
    }

    /// The link with kernel id `id` (`BPF_LINK_GET_FD_BY_ID`), or `None` if no link has that
    /// id (any more). Its [`mode`](Self::mode) is unknown and reported as `Auto`; its
    /// [`ifindex`](Self::ifindex) is 0 unless it is an XDP link.
    pub fn from_id(id: u32) -> Result<Option<Link>, BpfError> {
        let Some(fd) = fd_by_id(BPF_LINK_GET_FD_BY_ID, "BPF_LINK_GET_FD_BY_ID", id)? else {
            return Ok(None);
        };
        let mut l = Link {
            fd,
            ifindex: 0,
            mode: XdpAttachMode::Auto,
        };
        l.ifindex = l.info()?.xdp_ifindex.unwrap_or(0);
        Ok(Some(l))
    }

    /// The kernel's id of the link, the program it runs and its interface
    /// (`BPF_OBJ_GET_INFO_BY_FD`).
    pub fn info(&self) -> Result<LinkInfo, BpfError> {
        let mut raw = LinkInfoRaw::default();
        obj_info(self.fd.as_fd(), &mut raw)?;
        Ok(LinkInfo {
            id: raw.id,
            prog_id: raw.prog_id,
            xdp_ifindex: (raw.link_type == BPF_LINK_TYPE_XDP).then_some(raw.ifindex),
        })
    }

    /// Replaces the program the link runs with `new`, atomically (`BPF_LINK_UPDATE`): every
    /// frame sees either the old program or the new one, and the interface is never without
    /// one. With `old`, the update is refused (`EPERM`) unless the link still runs `old`
    /// (`BPF_F_REPLACE`), so a concurrent replacement is not overwritten.
    pub fn update(&self, new: &Program, old: Option<&Program>) -> Result<(), BpfError> {
        let mut attr = LinkUpdateAttr {
            link_fd: self.fd.as_raw_fd() as u32,
            new_prog_fd: new.fd.as_raw_fd() as u32,
            flags: if old.is_some() { BPF_F_REPLACE } else { 0 },
            old_prog_fd: old.map_or(0, |p| p.fd.as_raw_fd() as u32),
        };
        sys_bpf(BPF_LINK_UPDATE, &mut attr).map_err(|source| BpfError::Syscall {
            cmd: "BPF_LINK_UPDATE",
            source,
        })?;
        Ok(())
    }

    /// Detaches the program now (`BPF_LINK_DETACH`), even if duplicates of the link's fd
    /// exist, then closes the link.
    pub fn detach(self) -> Result<(), BpfError> {
        let mut attr = LinkDetachAttr {
            link_fd: self.fd.as_raw_fd() as u32,
        };
        sys_bpf(BPF_LINK_DETACH, &mut attr).map_err(|source| BpfError::Syscall {
            cmd: "BPF_LINK_DETACH",
            source,
        })?;
        Ok(())
    }
}

impl AsFd for Link {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(object_name("floodgate_xsks").is_ok());
        assert!(matches!(
            object_name("a_name_that_is_too_long"),
            Err(BpfError::Name(_))
        ));
        assert!(matches!(object_name("a\0b"), Err(BpfError::Name(_))));
    }
}
