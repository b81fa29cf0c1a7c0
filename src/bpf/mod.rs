//! Classic BPF (the `struct sock_filter` / `struct bpf_insn` instruction set): a validator that
//! pre-decodes a program into a compact, jump-resolved form, and a bounds-checked interpreter that
//! runs it over a frame held in a plain `&[u8]`.
//!
//! Every program goes through [`Program::new`] before it can run. The validator rejects anything
//! the interpreter could not execute safely and to completion:
//!
//! - an empty program, or one longer than [`MAX_INSNS`] instructions;
//! - an opcode that is not part of classic BPF (including invalid `ldx` addressing modes);
//! - a jump whose target lies past the end (classic BPF has no backward jumps; a `ja` whose
//!   32-bit offset would wrap around is out of bounds as well);
//! - a program whose last instruction is not a `ret` (so that some path would run off the end);
//! - division or modulo by a constant 0, and shifts by a constant of 32 or more;
//! - scratch memory slot indices of 16 or more;
//! - loads from a scratch memory slot that is not written on every path leading to the load.
//!
//! [`CompiledBpf`] turns a validated program into native code (x86-64) that gives the same
//! result as the interpreter for every frame, bounds checks included; on other architectures,
//! or where the system refuses executable memory, it runs the interpreter and counts that in
//! [`interpreted_programs`].
//!
//! At run time, every packet load is bounds-checked: a load that does not fit in the frame ends
//! the program with the result 0 ("no match"), exactly as the Linux kernel and libpcap do. A
//! division or modulo by an `X` register that holds 0 also returns 0. The interpreter never
//! panics and never loops: jumps only go forward.
//!
//! ```
//! use floodgate::bpf::{Program, RawInsn};
//! // ldh [12]; jeq #0x800, L1, L2; L1: ret #65535; L2: ret #0   ("ip")
//! let prog = Program::new(&[
//!     RawInsn::new(0x28, 0, 0, 12),
//!     RawInsn::new(0x15, 0, 1, 0x0800),
//!     RawInsn::new(0x06, 0, 0, 65535),
//!     RawInsn::new(0x06, 0, 0, 0),
//! ]).unwrap();
//! let mut frame = [0u8; 60];
//! frame[12] = 0x08;
//! assert_eq!(prog.run(&frame), 65535);
//! assert_eq!(prog.run(&frame[..13]), 0); // truncated: the load is out of bounds
//! ```

mod compiled;
mod interp;
mod validate;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use compiled::{interpreted_programs, CompiledBpf};
pub use validate::BpfError;

/// Largest number of instructions a program may have (`BPF_MAXINSNS` in Linux and libpcap).
pub const MAX_INSNS: usize = 4096;

/// Number of 32-bit scratch memory slots (`BPF_MEMWORDS`).
pub const MEM_WORDS: usize = 16;

/// One classic BPF instruction, laid out like C's `struct bpf_insn` / `struct sock_filter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct RawInsn {
    /// Opcode: class, size, mode, operation and source bits.
    pub code: u16,
    /// Jump offset when the condition holds (conditional jumps only).
    pub jt: u8,
    /// Jump offset when the condition does not hold (conditional jumps only).
    pub jf: u8,
    /// Generic operand: constant, offset, memory slot or `ja` offset.
    pub k: u32,
}

impl RawInsn {
    /// Builds an instruction from its four fields.
    pub const fn new(code: u16, jt: u8, jf: u8, k: u32) -> Self {
        RawInsn { code, jt, jf, k }
    }
}

/// Parses the textual bytecode format printed by `tcpdump -ddd` and accepted by iptables'
/// `xt_bpf` (`--bytecode`): a count followed by `code jt jf k` quadruples, all decimal,
/// separated by commas or newlines.
///
/// ```
/// let insns = floodgate::bpf::parse_bytecode("2,40 0 0 12,6 0 0 0").unwrap();
/// assert_eq!(insns.len(), 2);
/// assert_eq!(insns[0].k, 12);
/// ```
pub fn parse_bytecode(text: &str) -> Result<Vec<RawInsn>, BpfError> {
    let mut parts = text
        .split([',', '\n', ';'])
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let count_text = parts.next().ok_or(BpfError::Empty)?;
    let count: usize = count_text.parse().map_err(|_| BpfError::Syntax {
        what: format!("instruction count {count_text:?} is not a decimal number"),
    })?;
    if count > MAX_INSNS {
        return Err(BpfError::TooLong { len: count });
    }
    let mut insns = Vec::with_capacity(count);
    for (i, part) in parts.enumerate() {
        let fields: Vec<&str> = part.split_whitespace().collect();
        let bad = || BpfError::Syntax {
            what: format!("instruction {i} ({part:?}) is not four decimal numbers `code jt jf k`"),
        };
        if fields.len() != 4 {
            return Err(bad());
        }
        let code: u16 = fields[0].parse().map_err(|_| bad())?;
        let jt: u8 = fields[1].parse().map_err(|_| bad())?;
        let jf: u8 = fields[2].parse().map_err(|_| bad())?;
        let k: u32 = fields[3]
            .parse::<u32>()
            .or_else(|_| fields[3].parse::<i32>().map(|v| v as u32))
            .map_err(|_| bad())?;
        insns.push(RawInsn::new(code, jt, jf, k));
    }
    if insns.len() != count {
        return Err(BpfError::Syntax {
            what: format!(
                "the count says {count} instructions but {} follow",
                insns.len()
            ),
        });
    }
    Ok(insns)
}

/// A validated classic BPF program, pre-decoded for the interpreter.
///
/// Cloning is cheap enough for per-worker copies (the decoded form is a boxed slice of small
/// fixed-size operations); programs are immutable and `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Program {
    ops: Box<[interp::Op]>,
    raw: Box<[RawInsn]>,
    uses_mem: bool,
}

impl Program {
    /// Validates `insns` and pre-decodes them. See the [module documentation](self) for what is
    /// rejected.
    pub fn new(insns: &[RawInsn]) -> Result<Self, BpfError> {
        let ops = validate::validate(insns)?;
        Ok(Program {
            uses_mem: interp::uses_mem(&ops),
            ops: ops.into_boxed_slice(),
            raw: insns.into(),
        })
    }

    /// Runs the program over `frame`; the wire length (`BPF_LEN`) is the slice's length.
    /// Returns the program's result: 0 means "no match" (or a load past the end of the frame).
    #[inline]
    pub fn run(&self, frame: &[u8]) -> u32 {
        self.run_with_len(frame, u32::try_from(frame.len()).unwrap_or(u32::MAX))
    }

    /// Runs the program over a possibly truncated capture: loads are checked against
    /// `frame.len()`, while `len` instructions see `wire_len`.
    #[inline]
    pub fn run_with_len(&self, frame: &[u8], wire_len: u32) -> u32 {
        if self.uses_mem {
            interp::run::<true>(&self.ops, frame, wire_len)
        } else {
            interp::run::<false>(&self.ops, frame, wire_len)
        }
    }

    /// `true` when the program returns a non-zero value for `frame`.
    #[inline]
    pub fn matches(&self, frame: &[u8]) -> bool {
        self.run(frame) != 0
    }

    /// The instructions as given to [`Program::new`].
    pub fn insns(&self) -> &[RawInsn] {
        &self.raw
    }

    /// Number of instructions.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Always `false`: an empty program does not validate.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
}
