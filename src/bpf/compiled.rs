//! Validated programs compiled to native code, with the interpreter as the fallback.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::Program;

/// Number of programs that [`CompiledBpf::new`] could not compile and runs with the interpreter.
static INTERPRETED: AtomicU64 = AtomicU64::new(0);
/// Set once the first fallback has been logged.
static LOGGED: AtomicBool = AtomicBool::new(false);

/// How many programs, since the process started, run with the interpreter because
/// [`CompiledBpf::new`] could not compile them (an architecture without a code generator, or a
/// system that refuses executable memory). The first such program is logged as a warning.
pub fn interpreted_programs() -> u64 {
    INTERPRETED.load(Ordering::Relaxed)
}

/// A validated classic BPF program in its fastest available form: native code where floodgate
/// has a code generator (x86-64), the bounds-checked interpreter elsewhere. Both give the same
/// result for every frame, including 0 for a load past the end of the frame.
///
/// ```
/// use floodgate::bpf::{CompiledBpf, Program, RawInsn};
/// let prog = Program::new(&[
///     RawInsn::new(0x28, 0, 0, 12),         // ldh [12]
///     RawInsn::new(0x15, 0, 1, 0x0800),     // jeq #0x800
///     RawInsn::new(0x06, 0, 0, 65535),      // ret #65535
///     RawInsn::new(0x06, 0, 0, 0),          // ret #0
/// ]).unwrap();
/// let fast = CompiledBpf::new(&prog);
/// let mut frame = [0u8; 60];
/// frame[12] = 0x08;
/// assert_eq!(fast.run(&frame), 65535);
/// assert_eq!(fast.run(&frame[..13]), 0);
/// ```
pub struct CompiledBpf {
    prog: Program,
    native: Option<native::Code>,
}

impl CompiledBpf {
    /// Compiles `prog`. A program that cannot be compiled runs with the interpreter; that is
    /// counted in [`interpreted_programs`] and logged once per process.
    pub fn new(prog: &Program) -> Self {
        Self::with(prog, native::Code::new(prog))
    }

    fn with(prog: &Program, native: Result<native::Code, String>) -> Self {
        if let Err(why) = &native {
            INTERPRETED.fetch_add(1, Ordering::Relaxed);
            if !LOGGED.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "BPF program of {} instructions runs with the interpreter: {why} (logged once; \
                     see interpreted_programs for the count)",
                    prog.len()
                );
            }
        }
        CompiledBpf {
            prog: prog.clone(),
            native: native.ok(),
        }
    }

    /// Runs the program over `frame`; the wire length (`BPF_LEN`) is the slice's length.
    #[inline]
    pub fn run(&self, frame: &[u8]) -> u32 {
        self.run_with_len(frame, u32::try_from(frame.len()).unwrap_or(u32::MAX))
    }

    /// Runs the program over a possibly truncated capture: loads are checked against
    /// `frame.len()`, while `len` instructions see `wire_len`.
    #[inline]
    pub fn run_with_len(&self, frame: &[u8], wire_len: u32) -> u32 {
        match &self.native {
            Some(code) => code.run(frame, wire_len),
            None => self.prog.run_with_len(frame, wire_len),
        }
    }

    /// `true` when the program returns a non-zero value for `frame`.
    #[inline]
    pub fn matches(&self, frame: &[u8]) -> bool {
        self.run(frame) != 0
    }

    /// `true` when the program runs as native code, `false` when it is interpreted.
    pub fn is_native(&self) -> bool {
        self.native.is_some()
    }

    /// The validated program.
    pub fn program(&self) -> &Program {
        &self.prog
    }

    /// Number of instructions.
    pub fn len(&self) -> usize {
        self.prog.len()
    }

    /// Always `false`: an empty program does not validate.
    pub fn is_empty(&self) -> bool {
        self.prog.is_empty()
    }
}

impl std::fmt::Debug for CompiledBpf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledBpf")
            .field("insns", &self.prog.len())
            .field("native", &self.is_native())
            .finish()
    }
}

impl From<Program> for CompiledBpf {
    fn from(prog: Program) -> Self {
        CompiledBpf::new(&prog)
    }
}

#[cfg(target_arch = "x86_64")]
mod native {
    use super::Program;

    /// The generated function: packet, packet length, wire length -> result.
    type Entry = unsafe extern "sysv64" fn(*const u8, usize, u32) -> u32;

    /// A read-only, executable mapping holding one program's code.
    pub(super) struct Code {
        map: *mut libc::c_void,
        map_len: usize,
        entry: Entry,
    }

    // SAFETY: the mapping is written once, before `Code` exists, and is only read (executed)
    // afterwards; the generated function keeps no state between calls (its registers and stack
    // area are its own), so sharing it between threads is sound.
    unsafe impl Send for Code {}
    // SAFETY: as for `Send`: nothing is mutated through `&Code`.
    unsafe impl Sync for Code {}

    impl Code {
        pub(super) fn new(prog: &Program) -> Result<Self, String> {
            let bytes = super::super::x86::emit(prog.insns())
                .ok_or_else(|| "the code generator does not translate it".to_string())?;
            // SAFETY: sysconf has no preconditions.
            let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
                .ok()
                .filter(|&p| p > 0)
                .unwrap_or(4096);
            let map_len = bytes.len().div_ceil(page) * page;
            // SAFETY: an anonymous private mapping at an address the kernel chooses touches no
            // existing memory; the result is checked against MAP_FAILED.
            let map = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    map_len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if map == libc::MAP_FAILED {
                return Err(format!("mmap: {}", std::io::Error::last_os_error()));
            }
            // SAFETY: `map` is a fresh writable mapping of `map_len >= bytes.len()` bytes that
            // nothing else references.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), map.cast::<u8>(), bytes.len()) };
            // SAFETY: `map`/`map_len` are exactly the mapping made above.
            if unsafe { libc::mprotect(map, map_len, libc::PROT_READ | libc::PROT_EXEC) } != 0 {
                let err = std::io::Error::last_os_error();
                // SAFETY: as above; the mapping is not used after this.
                unsafe { libc::munmap(map, map_len) };
                return Err(format!("mprotect(PROT_EXEC): {err}"));
            }
            // SAFETY: the mapping now holds a complete function generated by `x86::emit` for a
            // validated program, with the System V ABI and the signature of `Entry`.
            let entry = unsafe { std::mem::transmute::<*mut libc::c_void, Entry>(map) };
            Ok(Code {
                map,
                map_len,
                entry,
            })
        }

        #[inline]
        pub(super) fn run(&self, frame: &[u8], wire_len: u32) -> u32 {
            // SAFETY: the generated code reads the packet only at `ptr + off` for
            // `off + size <= len` (every load is bounds-checked against `len`, see `x86`),
            // writes only its own stack area, touches no memory besides, and always returns
            // (jumps only go forward and every path ends in a return).
            unsafe { (self.entry)(frame.as_ptr(), frame.len(), wire_len) }
        }
    }

    impl Drop for Code {
        fn drop(&mut self) {
            // SAFETY: `map`/`map_len` are the mapping made in `new`; no `Entry` outlives `self`.
            unsafe { libc::munmap(self.map, self.map_len) };
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod native {
    use super::Program;

    /// No code generator for this architecture: every program is interpreted.
    pub(super) enum Code {}

    impl Code {
        pub(super) fn new(_prog: &Program) -> Result<Self, String> {
            Err(format!(
                "there is no code generator for {}",
                std::env::consts::ARCH
            ))
        }

        #[inline]
        pub(super) fn run(&self, _frame: &[u8], _wire_len: u32) -> u32 {
            match *self {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::RawInsn;

    #[test]
    fn a_program_that_does_not_compile_is_interpreted_and_counted() {
        // ldh [12]; ret a
        let prog =
            Program::new(&[RawInsn::new(0x28, 0, 0, 12), RawInsn::new(0x16, 0, 0, 0)]).unwrap();
        let before = interpreted_programs();
        let c = CompiledBpf::with(&prog, Err("refused for the test".into()));
        assert!(!c.is_native());
        assert!(interpreted_programs() > before);
        let mut f = [0u8; 14];
        f[12] = 0x86;
        f[13] = 0xdd;
        assert_eq!(c.run(&f), 0x86dd);
        assert_eq!(c.run(&f[..13]), 0);
        assert_eq!(c.run(&f), prog.run(&f));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn programs_compile_on_x86_64() {
        let prog =
            Program::new(&[RawInsn::new(0x28, 0, 0, 12), RawInsn::new(0x16, 0, 0, 0)]).unwrap();
        let c = CompiledBpf::new(&prog);
        assert!(c.is_native());
        assert_eq!(c.run(&[0; 14]), 0);
        assert_eq!(c.run(&[1; 14]), 0x0101);
        assert_eq!(c.run(&[1; 13]), 0);
    }
}
