//! libpcap, loaded at run time with `dlopen`, used for two things only: compiling tcpdump
//! expressions into classic BPF (which floodgate then validates and runs with its own
//! interpreter, see [`crate::bpf`]), and, for the benchmark, running libpcap's own
//! `pcap_offline_filter` on the same program.
//!
//! Nothing links against libpcap, so the daemon builds and runs on a machine without it; only
//! rules written as tcpdump expressions need it. The library is searched as `libpcap.so.0.8`
//! (Debian/Ubuntu's runtime package `libpcap0.8`), `libpcap.so.1` and `libpcap.so`, or at the
//! path in the `FLOODGATE_LIBPCAP` environment variable when that is set.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use libloading::Library;

use crate::bpf::RawInsn;

/// `DLT_EN10MB`: Ethernet link type.
pub const DLT_EN10MB: i32 = 1;
/// `PCAP_NETMASK_UNKNOWN`.
const NETMASK_UNKNOWN: u32 = 0xffff_ffff;
/// Snapshot length used when compiling expressions (the largest frame we look at).
pub const SNAPLEN: i32 = 65535;

/// The hint printed when libpcap cannot be loaded.
pub const INSTALL_HINT: &str =
    "apt-get install libpcap0.8 (the runtime library; libpcap-dev is only needed to build against it)";

/// Errors from loading libpcap or compiling an expression with it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PcapError {
    /// No libpcap shared library could be loaded.
    #[error("libpcap is not installed (tried {tried}): {INSTALL_HINT}")]
    NotInstalled {
        /// The names or paths that were tried, with the loader's last error.
        tried: String,
    },
    /// The library loaded but lacks a function we need.
    #[error("libpcap at {lib} has no symbol {symbol}: {why}")]
    MissingSymbol {
        /// The library name.
        lib: String,
        /// The symbol.
        symbol: &'static str,
        /// The loader's message.
        why: String,
    },
    /// The expression contains a NUL byte.
    #[error(
        "tcpdump expression {} contains a NUL byte",
        crate::config::quote_clipped(expr)
    )]
    NulInExpression {
        /// The expression.
        expr: String,
    },
    /// `pcap_open_dead` failed.
    #[error("pcap_open_dead failed (out of memory?)")]
    OpenDead,
    /// `pcap_compile` rejected the expression; `message` is libpcap's own (`pcap_geterr`).
    #[error(
        "tcpdump expression {} does not compile: {message}",
        crate::config::quote_clipped(expr)
    )]
    Compile {
        /// The expression.
        expr: String,
        /// libpcap's message.
        message: String,
    },
    /// libpcap did not finish within the time given to [`compile_within`].
    #[error("libpcap did not finish compiling the expression within {} s (its optimizer can take minutes on long expressions); split it into several rules", timeout.as_secs_f64())]
    Timeout {
        /// The time allowed.
        timeout: Duration,
    },
    /// An earlier compilation that went over its time is still running.
    #[error("libpcap is still busy with an earlier expression that went over the time limit; try again when it has finished")]
    Busy,
}

#[repr(C)]
struct BpfProgram {
    bf_len: c_uint,
    bf_insns: *mut RawInsn,
}

#[repr(C)]
struct PcapPkthdr {
    ts_sec: libc::time_t,
    ts_usec: libc::suseconds_t,
    caplen: u32,
    len: u32,
}

type OpenDeadFn = unsafe extern "C" fn(c_int, c_int) -> *mut c_void;
type CompileFn =
    unsafe extern "C" fn(*mut c_void, *mut BpfProgram, *const c_char, c_int, u32) -> c_int;
type GeterrFn = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type FreecodeFn = unsafe extern "C" fn(*mut BpfProgram);
type CloseFn = unsafe extern "C" fn(*mut c_void);
type OfflineFilterFn =
    unsafe extern "C" fn(*const BpfProgram, *const PcapPkthdr, *const u8) -> c_int;

/// A loaded libpcap with the handful of functions floodgate uses.
pub struct LibPcap {
    name: String,
    open_dead: OpenDeadFn,
    compile: CompileFn,
    geterr: GeterrFn,
    freecode: FreecodeFn,
    close: CloseFn,
    offline_filter: OfflineFilterFn,
    // Serialises pcap_compile, which was not thread-safe before libpcap 1.8.
    lock: Mutex<()>,
    // Keeps the function pointers above valid; never unloaded.
    _lib: Library,
}

impl std::fmt::Debug for LibPcap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibPcap").field("name", &self.name).finish()
    }
}

static GLOBAL: OnceLock<Result<LibPcap, PcapError>> = OnceLock::new();

/// The library names tried, in order, when `FLOODGATE_LIBPCAP` is not set.
pub const LIB_NAMES: &[&str] = &["libpcap.so.0.8", "libpcap.so.1", "libpcap.so"];

impl LibPcap {
    /// The process-wide libpcap, loaded on first use. The result (including a failure) is
    /// cached.
    pub fn get() -> Result<&'static LibPcap, PcapError> {
        GLOBAL
            .get_or_init(|| {
                let names: Vec<String> = match std::env::var("FLOODGATE_LIBPCAP") {
                    Ok(p) if !p.is_empty() => vec![p],
                    _ => LIB_NAMES.iter().map(|s| s.to_string()).collect(),
                };
                LibPcap::load_from(&names)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// `true` when libpcap can be loaded.
    pub fn available() -> bool {
        Self::get().is_ok()
    }

    /// Loads the first of `names` that the dynamic loader finds.
    pub fn load_from(names: &[String]) -> Result<LibPcap, PcapError> {
        let mut last = String::from("no names given");
        for name in names {
            // SAFETY: loading libpcap runs its ELF constructors, which only initialise libpcap's
            // own state; we call nothing else from it until the symbols are resolved below.
            match unsafe { Library::new(name) } {
                Ok(lib) => return Self::from_library(name.clone(), lib),
                Err(e) => last = e.to_string(),
            }
        }
        Err(PcapError::NotInstalled {
            tried: format!("{}; last error: {last}", names.join(", ")),
        })
    }

    fn from_library(name: String, lib: Library) -> Result<LibPcap, PcapError> {
        macro_rules! sym {
            ($ty:ty, $s:literal) => {{
                let f: Result<libloading::Symbol<$ty>, _> =
                    // SAFETY: the symbol's C prototype in <pcap/pcap.h> matches `$ty`; the
                    // pointer is used only while `lib` is alive (it is stored next to it and
                    // never unloaded).
                    unsafe { lib.get(concat!($s, "\0").as_bytes()) };
                match f {
                    Ok(f) => *f,
                    Err(e) => {
                        return Err(PcapError::MissingSymbol {
                            lib: name,
                            symbol: $s,
                            why: e.to_string(),
                        })
                    }
                }
            }};
        }
        let open_dead = sym!(OpenDeadFn, "pcap_open_dead");
        let compile = sym!(CompileFn, "pcap_compile");
        let geterr = sym!(GeterrFn, "pcap_geterr");
        let freecode = sym!(FreecodeFn, "pcap_freecode");
        let close = sym!(CloseFn, "pcap_close");
        let offline_filter = sym!(OfflineFilterFn, "pcap_offline_filter");
        log::debug!("loaded {name}");
        Ok(LibPcap {
            name,
            open_dead,
            compile,
            geterr,
            freecode,
            close,
            offline_filter,
            lock: Mutex::new(()),
            _lib: lib,
        })
    }

    /// The name or path the library was loaded from.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Compiles a tcpdump expression for Ethernet frames (optimised, snaplen 65535) and returns
    /// libpcap's program. The caller validates it with [`crate::bpf::Program::new`].
    pub fn compile(&self, expr: &str) -> Result<Vec<RawInsn>, PcapError> {
        let prog = self.compile_program(expr)?;
        Ok(prog.insns().to_vec())
    }

    /// Compiles `expr` and keeps libpcap's program, for [`PcapProgram::offline_filter`].
    pub fn compile_program(&self, expr: &str) -> Result<PcapProgram<'_>, PcapError> {
        let c_expr = CString::new(expr).map_err(|_| PcapError::NulInExpression {
            expr: expr.to_string(),
        })?;
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: pcap_open_dead has no preconditions; a null return is handled.
        let handle = unsafe { (self.open_dead)(DLT_EN10MB, SNAPLEN) };
        if handle.is_null() {
            return Err(PcapError::OpenDead);
        }
        let mut prog = BpfProgram {
            bf_len: 0,
            bf_insns: std::ptr::null_mut(),
        };
        // SAFETY: `handle` is a live pcap_t, `prog` a valid out-parameter and `c_expr` a
        // NUL-terminated string that outlives the call.
        let rc = unsafe { (self.compile)(handle, &mut prog, c_expr.as_ptr(), 1, NETMASK_UNKNOWN) };
        let result = if rc != 0 {
            // SAFETY: pcap_geterr returns a NUL-terminated buffer owned by `handle`, which we
            // copy before closing the handle.
            let msg = unsafe {
                let p = (self.geterr)(handle);
                if p.is_null() {
                    String::from("unknown error")
                } else {
                    CStr::from_ptr(p).to_string_lossy().into_owned()
                }
            };
            Err(PcapError::Compile {
                expr: expr.to_string(),
                message: msg,
            })
        } else {
            Ok(PcapProgram { lib: self, prog })
        };
        // SAFETY: the program does not refer to the handle once compiled; the handle is not
        // used after this.
        unsafe { (self.close)(handle) };
        result
    }
}

/// A program compiled by libpcap, freed with `pcap_freecode` on drop.
pub struct PcapProgram<'a> {
    lib: &'a LibPcap,
    prog: BpfProgram,
}

impl PcapProgram<'_> {
    /// The instructions.
    pub fn insns(&self) -> &[RawInsn] {
        if self.prog.bf_insns.is_null() || self.prog.bf_len == 0 {
            return &[];
        }
        // SAFETY: libpcap allocated `bf_len` consecutive `struct bpf_insn`, whose layout
        // `RawInsn` mirrors (repr(C), u16/u8/u8/u32); they live until pcap_freecode in drop.
        unsafe { std::slice::from_raw_parts(self.prog.bf_insns, self.prog.bf_len as usize) }
    }

    /// Runs libpcap's own interpreter (`pcap_offline_filter`) over `frame`; `true` on a match.
    /// Used to compare against [`crate::bpf::Program`] in tests and benchmarks.
    #[inline]
    pub fn offline_filter(&self, frame: &[u8]) -> bool {
        // SAFETY: `self.prog` was produced by pcap_compile.
        unsafe { offline_filter_raw(self.lib, &self.prog, frame) != 0 }
    }
}

/// Calls `pcap_offline_filter`, returning the program's result.
///
/// # Safety
/// `prog` must be safe for libpcap's unchecked interpreter: compiled by libpcap, or accepted by
/// [`crate::bpf::Program::new`] (in-bounds jumps, memory slots below 16, a final return).
#[inline]
unsafe fn offline_filter_raw(lib: &LibPcap, prog: &BpfProgram, frame: &[u8]) -> u32 {
    let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
    let hdr = PcapPkthdr {
        ts_sec: 0,
        ts_usec: 0,
        caplen: len,
        len,
    };
    // SAFETY: the caller guarantees the program is safe to interpret; `hdr` describes exactly
    // `frame`'s bytes, and libpcap reads at most `caplen` bytes from it.
    unsafe { (lib.offline_filter)(prog, &hdr, frame.as_ptr()) as u32 }
}

impl LibPcap {
    /// Runs libpcap's interpreter on arbitrary instructions, after validating them with
    /// [`crate::bpf::Program::new`] (libpcap's interpreter does not check jumps or memory slots).
    /// Returns `None` when the program does not validate. For differential tests.
    pub fn run_insns(&self, insns: &[RawInsn], frame: &[u8]) -> Option<u32> {
        crate::bpf::Program::new(insns).ok()?;
        let prog = BpfProgram {
            bf_len: insns.len() as c_uint,
            bf_insns: insns.as_ptr().cast_mut(),
        };
        // SAFETY: the instructions passed validation; libpcap only reads them, and they outlive
        // the call.
        Some(unsafe { offline_filter_raw(self, &prog, frame) })
    }
}

impl Drop for PcapProgram<'_> {
    fn drop(&mut self) {
        // SAFETY: the program was filled by pcap_compile and is freed exactly once.
        unsafe { (self.lib.freecode)(&mut self.prog) };
    }
}

// SAFETY: the function pointers are plain C functions, valid for the life of `_lib`, and the only
// non-reentrant one (pcap_compile) is called under `lock`.
unsafe impl Sync for LibPcap {}
// SAFETY: as above; a Library handle may move between threads.
unsafe impl Send for LibPcap {}

/// Compiles a tcpdump expression with the process-wide libpcap.
///
/// ```
/// match floodgate::libpcap::compile("udp dst port 53") {
///     Ok(insns) => assert!(floodgate::bpf::Program::new(&insns).is_ok()),
///     Err(e) => assert!(e.to_string().contains("apt-get install libpcap0.8")),
/// }
/// ```
pub fn compile(expr: &str) -> Result<Vec<RawInsn>, PcapError> {
    LibPcap::get()?.compile(expr)
}

/// Compilations whose caller gave up (see [`compile_within`]) and that are still running.
static OVERDUE: AtomicUsize = AtomicUsize::new(0);

#[derive(PartialEq, Eq)]
enum Job {
    Running,
    Done,
    Abandoned,
}

/// Like [`compile`], but gives up after `timeout`.
///
/// libpcap's optimizer takes time that grows steeply with the number of terms (see
/// [`crate::config::limits::MAX_TCPDUMP_TERMS`]), and a C call cannot be interrupted, so the
/// compilation runs on a thread of its own; when it does not finish in time the caller gets
/// [`PcapError::Timeout`] and the thread is left to finish in the background. While such an
/// overdue compilation runs, further calls fail at once with [`PcapError::Busy`] instead of
/// queueing behind it, so at most one runaway compilation uses a CPU at any time.
pub fn compile_within(expr: &str, timeout: Duration) -> Result<Vec<RawInsn>, PcapError> {
    let lib = LibPcap::get()?;
    if OVERDUE.load(Ordering::Acquire) > 0 {
        return Err(PcapError::Busy);
    }
    let job = Arc::new(Mutex::new(Job::Running));
    let (tx, rx) = mpsc::sync_channel(1);
    let owned = expr.to_string();
    let j2 = job.clone();
    let spawned = std::thread::Builder::new()
        .name("floodgate-pcap-compile".into())
        .spawn(move || {
            let r = lib.compile(&owned);
            let mut st = j2.lock().unwrap_or_else(|p| p.into_inner());
            if *st == Job::Abandoned {
                OVERDUE.fetch_sub(1, Ordering::AcqRel);
            } else {
                *st = Job::Done;
                let _ = tx.send(r);
            }
        });
    if let Err(e) = spawned {
        log::warn!("cannot start a thread to compile a tcpdump expression ({e}); compiling here");
        return lib.compile(expr);
    }
    let ended = || PcapError::Compile {
        expr: expr.to_string(),
        message: "the compiling thread ended without a result".into(),
    };
    match rx.recv_timeout(timeout) {
        Ok(r) => r,
        Err(RecvTimeoutError::Disconnected) => Err(ended()),
        Err(RecvTimeoutError::Timeout) => {
            let mut st = job.lock().unwrap_or_else(|p| p.into_inner());
            if *st == Job::Done {
                // It finished between the timeout and the lock: take the result.
                drop(st);
                return rx.recv().unwrap_or_else(|_| Err(ended()));
            }
            *st = Job::Abandoned;
            OVERDUE.fetch_add(1, Ordering::AcqRel);
            Err(PcapError::Timeout { timeout })
        }
    }
}
