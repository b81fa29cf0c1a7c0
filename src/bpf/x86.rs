//! x86-64 machine code for validated classic BPF programs.
//!
//! [`emit`] turns the instructions of a [`super::Program`] (already validated, so every opcode is
//! known, every jump lands inside the program, constant divisors are non-zero and constant shifts
//! are below 32) into the bytes of one function with the System V calling convention:
//!
//! ```text
//! extern "sysv64" fn(packet: *const u8 /* rdi */, len: usize /* rsi */, wire_len: u32 /* edx */) -> u32
//! ```
//!
//! The generated code keeps `A` in `eax`, `X` in `ecx` (so that shifts by `X` use `cl`),
//! `wire_len` in `r8d` (division needs `edx`), and the 16 scratch words on the stack when the
//! program uses them. Every write to `ecx` is a 32-bit operation, so `rcx` always holds `X`
//! zero-extended and indexed loads can address `[rdi + rcx + k]` directly.
//!
//! Bounds checks: the code computes the end of every load (`offset + size`) as a 64-bit value
//! and compares it with `len`; a load that does not fit jumps to a shared exit that returns 0,
//! as the interpreter does. Absolute loads are checked once per basic block, against the largest
//! end that the block reads: inside a straight-line block nothing is observable until its final
//! jump or return, and every failure (a short packet or a division by `X` = 0) returns 0, so an
//! early exit gives the same result as the failing load would. Indexed loads are checked one by
//! one, since `X` can change inside a block. This module only produces bytes; mapping them
//! executable is [`super::compiled`]'s job.

use super::RawInsn;

/// Target of the shared "return 0" exit (short packet, division by `X` = 0).
const FAIL: usize = usize::MAX;

/// Condition codes (the low nibble of `Jcc rel32`, `0F 8x`). The negation of `c` is `c ^ 1`.
const CC_B: u8 = 0x2;
const CC_AE: u8 = 0x3;
const CC_E: u8 = 0x4;
const CC_NE: u8 = 0x5;
const CC_A: u8 = 0x7;

/// Size of the scratch memory area on the stack (16 words).
const MEM_BYTES: u8 = 64;

/// Registers used as load destinations (their 3-bit numbers).
const EAX: u8 = 0;
const ECX: u8 = 1;

struct Asm {
    buf: Vec<u8>,
    /// (position of a rel32 field, target instruction index or [`FAIL`]).
    fixups: Vec<(usize, usize)>,
    uses_mem: bool,
}

impl Asm {
    fn b(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    fn d(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn rel(&mut self, target: usize) {
        self.fixups.push((self.buf.len(), target));
        self.d(0);
    }

    fn jmp(&mut self, target: usize) {
        self.b(&[0xe9]);
        self.rel(target);
    }

    fn jcc(&mut self, cc: u8, target: usize) {
        self.b(&[0x0f, 0x80 | cc]);
        self.rel(target);
    }

    fn epilogue(&mut self) {
        if self.uses_mem {
            self.b(&[0x48, 0x83, 0xc4, MEM_BYTES]); // add rsp, 64
        }
        self.b(&[0xc3]); // ret
    }

    /// `cmp rsi, end; jb FAIL`, for an `end` that fits a sign-extended imm32.
    fn check_len(&mut self, end: u32) {
        self.b(&[0x48, 0x81, 0xfe]);
        self.d(end);
        self.jcc(CC_B, FAIL);
    }

    /// Byte-swaps the freshly loaded big-endian value in `reg` (`size` 2 or 4).
    fn swap(&mut self, reg: u8, size: u32) {
        match size {
            2 => self.b(&[0x66, 0xc1, 0xc0 | reg, 8]), // rol r16, 8
            4 => self.b(&[0x0f, 0xc8 | reg]),          // bswap r32
            _ => {}
        }
    }

    /// Loads `size` bytes at the absolute offset `k` into `reg`. With `needs_check` false the
    /// block header has already checked `k + size <= len`, and `k + size` fits an imm32.
    fn ld_abs(&mut self, reg: u8, size: u32, k: u32, needs_check: bool) {
        if !needs_check {
            // [rdi + disp32]
            let modrm = 0x80 | (reg << 3) | 0x07;
            match size {
                1 => self.b(&[0x0f, 0xb6, modrm]),
                2 => self.b(&[0x0f, 0xb7, modrm]),
                _ => self.b(&[0x8b, modrm]),
            }
            self.d(k);
        } else {
            self.b(&[0x41, 0xba]); // mov r10d, k
            self.d(k);
            self.ld_r10(reg, size);
        }
        self.swap(reg, size);
    }

    /// Checks `r10 + size <= len`, then loads `size` bytes at `rdi + r10` into `reg` (not
    /// byte-swapped).
    fn ld_r10(&mut self, reg: u8, size: u32) {
        self.b(&[0x4d, 0x8d, 0x5a, size as u8]); // lea r11, [r10 + size]
        self.b(&[0x4c, 0x39, 0xde]); // cmp rsi, r11
        self.jcc(CC_B, FAIL);
        let modrm = (reg << 3) | 0x04; // [SIB]
        match size {
            1 => self.b(&[0x42, 0x0f, 0xb6, modrm, 0x17]), // [rdi + r10]
            2 => self.b(&[0x42, 0x0f, 0xb7, modrm, 0x17]),
            _ => self.b(&[0x42, 0x8b, modrm, 0x17]),
        }
    }

    /// Loads `size` bytes at `X + k` into `eax`, checked.
    fn ld_ind(&mut self, size: u32, k: u32) {
        if k <= i32::MAX as u32 - 4 {
            self.b(&[0x4c, 0x8d, 0x99]); // lea r11, [rcx + k + size]
            self.d(k + size);
            self.b(&[0x4c, 0x39, 0xde]); // cmp rsi, r11
            self.jcc(CC_B, FAIL);
            match size {
                1 => self.b(&[0x0f, 0xb6, 0x84, 0x0f]), // [rdi + rcx + disp32]
                2 => self.b(&[0x0f, 0xb7, 0x84, 0x0f]),
                _ => self.b(&[0x8b, 0x84, 0x0f]),
            }
            self.d(k);
        } else {
            self.b(&[0x41, 0xba]); // mov r10d, k
            self.d(k);
            self.b(&[0x49, 0x01, 0xca]); // add r10, rcx
            self.ld_r10(EAX, size);
        }
        self.swap(EAX, size);
    }

    /// `A op= k` for the two-operand ALU forms with an `eax, imm32` short encoding.
    fn alu_k(&mut self, opcode: u8, k: u32) {
        self.b(&[opcode]);
        self.d(k);
    }

    /// Unsigned division of `A` by `X` (`rem` for the remainder); `X` = 0 returns 0.
    fn div_x(&mut self, rem: bool) {
        self.b(&[0x85, 0xc9]); // test ecx, ecx
        self.jcc(CC_E, FAIL);
        self.b(&[0x31, 0xd2, 0xf7, 0xf1]); // xor edx, edx; div ecx
        if rem {
            self.b(&[0x89, 0xd0]); // mov eax, edx
        }
    }

    /// Unsigned division of `A` by the non-zero constant `k`.
    fn div_k(&mut self, k: u32, rem: bool) {
        self.b(&[0x31, 0xd2, 0x41, 0xb9]); // xor edx, edx; mov r9d, k
        self.d(k);
        self.b(&[0x41, 0xf7, 0xf1]); // div r9d
        if rem {
            self.b(&[0x89, 0xd0]); // mov eax, edx
        }
    }

    /// A conditional jump on the flags just set: to `t` when `cc` holds, else to `f`;
    /// `next` is the instruction that follows.
    fn branch(&mut self, cc: u8, t: usize, f: usize, next: usize) {
        if t == f {
            if t != next {
                self.jmp(t);
            }
        } else if f == next {
            self.jcc(cc, t);
        } else if t == next {
            self.jcc(cc ^ 1, f);
        } else {
            self.jcc(cc, t);
            self.jmp(f);
        }
    }
}

/// `(size, absolute offset)` when `insn` is an absolute packet load (including `ldxb msh`).
fn abs_load(insn: &RawInsn) -> Option<(u32, u32)> {
    match insn.code {
        0x20 => Some((4, insn.k)),
        0x28 => Some((2, insn.k)),
        0x30 | 0xb1 => Some((1, insn.k)),
        _ => None,
    }
}

/// The end (`k + size`) of an absolute load when the block header can check it with an imm32.
fn hoistable_end(insn: &RawInsn) -> Option<u32> {
    let (size, k) = abs_load(insn)?;
    let end = u64::from(k) + u64::from(size);
    (end <= i32::MAX as u64).then_some(end as u32)
}

/// Indices of the instructions that start a basic block: the first one, every jump target, and
/// every instruction that follows a jump or a return.
fn leaders(insns: &[RawInsn]) -> Vec<bool> {
    let len = insns.len();
    let mut lead = vec![false; len + 1];
    lead[0] = true;
    for (pc, insn) in insns.iter().enumerate() {
        let class = insn.code & 0x07;
        if class == 0x05 {
            if insn.code == 0x05 {
                lead[(pc as u64 + 1 + u64::from(insn.k)).min(len as u64) as usize] = true;
            } else {
                lead[(pc + 1 + usize::from(insn.jt)).min(len)] = true;
                lead[(pc + 1 + usize::from(insn.jf)).min(len)] = true;
            }
        }
        if class == 0x05 || class == 0x06 {
            lead[pc + 1] = true;
        }
    }
    lead.truncate(len);
    lead
}

/// Generates the machine code for a program that [`super::Program::new`] accepted. Returns
/// `None` for an instruction it does not translate (none today; the caller then interprets).
pub(super) fn emit(insns: &[RawInsn]) -> Option<Vec<u8>> {
    let len = insns.len();
    let uses_mem = insns
        .iter()
        .any(|i| matches!(i.code, 0x60 | 0x61 | 0x02 | 0x03));
    let mut a = Asm {
        buf: Vec::with_capacity(len * 16 + 32),
        fixups: Vec::new(),
        uses_mem,
    };
    // Prologue: wire_len to r8d, A = X = 0, room for scratch memory.
    a.b(&[0x41, 0x89, 0xd0, 0x31, 0xc0, 0x31, 0xc9]);
    if uses_mem {
        a.b(&[0x48, 0x83, 0xec, MEM_BYTES]); // sub rsp, 64
    }
    let lead = leaders(insns);
    let mut starts = vec![0usize; len];
    for pc in 0..len {
        starts[pc] = a.buf.len();
        if lead[pc] {
            let end = insns[pc..]
                .iter()
                .enumerate()
                .take_while(|&(i, _)| i == 0 || !lead[pc + i])
                .filter_map(|(_, insn)| hoistable_end(insn))
                .max();
            if let Some(end) = end {
                a.check_len(end);
            }
        }
        let insn = insns[pc];
        let k = insn.k;
        let next = pc + 1;
        let unchecked = hoistable_end(&insn).is_none();
        match insn.code {
            0x20 => a.ld_abs(EAX, 4, k, unchecked),
            0x28 => a.ld_abs(EAX, 2, k, unchecked),
            0x30 => a.ld_abs(EAX, 1, k, unchecked),
            0x40 => a.ld_ind(4, k),
            0x48 => a.ld_ind(2, k),
            0x50 => a.ld_ind(1, k),
            0x00 => {
                a.b(&[0xb8]); // mov eax, k
                a.d(k);
            }
            0x80 => a.b(&[0x44, 0x89, 0xc0]), // mov eax, r8d
            0x60 => a.b(&[0x8b, 0x44, 0x24, (k * 4) as u8]), // mov eax, [rsp + 4k]
            0x01 => {
                a.b(&[0xb9]); // mov ecx, k
                a.d(k);
            }
            0x81 => a.b(&[0x44, 0x89, 0xc1]), // mov ecx, r8d
            0x61 => a.b(&[0x8b, 0x4c, 0x24, (k * 4) as u8]), // mov ecx, [rsp + 4k]
            0xb1 => {
                a.ld_abs(ECX, 1, k, unchecked);
                a.b(&[0x83, 0xe1, 0x0f, 0xc1, 0xe1, 0x02]); // and ecx, 0xf; shl ecx, 2
            }
            0x02 => a.b(&[0x89, 0x44, 0x24, (k * 4) as u8]), // mov [rsp + 4k], eax
            0x03 => a.b(&[0x89, 0x4c, 0x24, (k * 4) as u8]), // mov [rsp + 4k], ecx
            0x04 => a.alu_k(0x05, k),                        // add eax, k
            0x0c => a.b(&[0x01, 0xc8]),                      // add eax, ecx
            0x14 => a.alu_k(0x2d, k),                        // sub eax, k
            0x1c => a.b(&[0x29, 0xc8]),                      // sub eax, ecx
            0x24 => {
                a.b(&[0x69, 0xc0]); // imul eax, eax, k
                a.d(k);
            }
            0x2c => a.b(&[0x0f, 0xaf, 0xc1]), // imul eax, ecx
            0x34 => a.div_k(k, false),
            0x3c => a.div_x(false),
            0x94 => a.div_k(k, true),
            0x9c => a.div_x(true),
            0x44 => a.alu_k(0x0d, k),   // or eax, k
            0x4c => a.b(&[0x09, 0xc8]), // or eax, ecx
            0x54 => a.alu_k(0x25, k),   // and eax, k
            0x5c => a.b(&[0x21, 0xc8]), // and eax, ecx
            0xa4 => a.alu_k(0x35, k),   // xor eax, k
            0xac => a.b(&[0x31, 0xc8]), // xor eax, ecx
            // Shift counts: the validator keeps constants below 32; x86 masks a count in cl to
            // its low 5 bits, as the interpreter's wrapping shifts do.
            0x64 => a.b(&[0xc1, 0xe0, k as u8]), // shl eax, k
            0x6c => a.b(&[0xd3, 0xe0]),          // shl eax, cl
            0x74 => a.b(&[0xc1, 0xe8, k as u8]), // shr eax, k
            0x7c => a.b(&[0xd3, 0xe8]),          // shr eax, cl
            0x84 => a.b(&[0xf7, 0xd8]),          // neg eax
            0x05 => {
                let t = usize::try_from(u64::from(k) + pc as u64 + 1).ok()?;
                if t != next {
                    a.jmp(t);
                }
            }
            0x15 | 0x1d | 0x25 | 0x2d | 0x35 | 0x3d | 0x45 | 0x4d => {
                let x = insn.code & 0x08 != 0;
                let op = insn.code & 0xf0;
                match (op, x) {
                    (0x40, false) => a.alu_k(0xa9, k),  // test eax, k
                    (0x40, true) => a.b(&[0x85, 0xc8]), // test eax, ecx
                    (_, false) => a.alu_k(0x3d, k),     // cmp eax, k
                    (_, true) => a.b(&[0x39, 0xc8]),    // cmp eax, ecx
                }
                let cc = match op {
                    0x10 => CC_E,
                    0x20 => CC_A,
                    0x30 => CC_AE,
                    _ => CC_NE, // jset: some bit in common
                };
                let t = next + usize::from(insn.jt);
                let f = next + usize::from(insn.jf);
                a.branch(cc, t, f, next);
            }
            0x06 => {
                a.b(&[0xb8]); // mov eax, k
                a.d(k);
                a.epilogue();
            }
            0x16 => a.epilogue(),
            0x07 => a.b(&[0x89, 0xc1]), // mov ecx, eax
            0x87 => a.b(&[0x89, 0xc8]), // mov eax, ecx
            _ => return None,
        }
    }
    let fail = a.buf.len();
    a.b(&[0x31, 0xc0]); // xor eax, eax
    a.epilogue();
    for &(pos, target) in &a.fixups {
        let dest = if target == FAIL {
            fail
        } else {
            *starts.get(target)?
        };
        let rel = i32::try_from(dest as i64 - (pos as i64 + 4)).ok()?;
        a.buf[pos..pos + 4].copy_from_slice(&rel.to_le_bytes());
    }
    Some(a.buf)
}
