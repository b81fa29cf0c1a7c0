//! Decoding and validation of classic BPF programs.

use super::interp::{fuse, Op};
use super::{RawInsn, MAX_INSNS, MEM_WORDS};

/// Why a classic BPF program was rejected. `pc` is the index of the offending instruction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BpfError {
    /// The program has no instructions.
    #[error("the BPF program is empty")]
    Empty,
    /// More than [`MAX_INSNS`] instructions.
    #[error("the BPF program has {len} instructions; at most 4096 are allowed")]
    TooLong {
        /// Number of instructions given.
        len: usize,
    },
    /// An opcode that classic BPF does not define (or a mode that is invalid for its class).
    #[error("instruction {pc}: invalid opcode {code:#06x} ({why})")]
    BadOpcode {
        /// Instruction index.
        pc: usize,
        /// The opcode.
        code: u16,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A jump whose target is past the last instruction.
    #[error("instruction {pc}: jump target {target} is outside the program of {len} instructions")]
    JumpOutOfBounds {
        /// Instruction index.
        pc: usize,
        /// The resolved target (`pc + 1 + offset`).
        target: u64,
        /// Program length.
        len: usize,
    },
    /// The last instruction is not a `ret`, so execution could run off the end.
    #[error(
        "instruction {pc}: the program does not end with a return, so a path runs off its end"
    )]
    NoFinalReturn {
        /// Index of the last instruction.
        pc: usize,
    },
    /// Division or modulo by the constant 0.
    #[error("instruction {pc}: division or modulo by the constant 0")]
    DivByZero {
        /// Instruction index.
        pc: usize,
    },
    /// A shift by a constant of 32 or more.
    #[error("instruction {pc}: shift by {k}, which is not below 32")]
    ShiftTooLarge {
        /// Instruction index.
        pc: usize,
        /// The shift amount.
        k: u32,
    },
    /// A scratch memory slot index of 16 or more.
    #[error("instruction {pc}: scratch memory slot {slot} does not exist (there are 16)")]
    BadMemSlot {
        /// Instruction index.
        pc: usize,
        /// The slot index.
        slot: u32,
    },
    /// A load from a scratch memory slot that some path reaches without writing it first.
    #[error("instruction {pc}: reads scratch memory slot {slot}, which is not written on every path before it")]
    UninitMem {
        /// Instruction index.
        pc: usize,
        /// The slot index.
        slot: u32,
    },
    /// Unparseable textual bytecode (see [`super::parse_bytecode`]).
    #[error("bad BPF bytecode text: {what}")]
    Syntax {
        /// What is wrong.
        what: String,
    },
}

// Opcode field masks and values, as in <linux/filter.h> / <pcap/bpf.h>.
const CLASS: u16 = 0x07;
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ST: u16 = 0x02;
const STX: u16 = 0x03;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const MISC: u16 = 0x07;

/// Where a decoded instruction goes next, for the control-flow checks.
enum Flow {
    Next,
    Jump(u16),
    Branch(u16, u16),
    Stop,
}

fn decode_one(pc: usize, insn: RawInsn, len: usize) -> Result<(Op, Flow), BpfError> {
    let code = insn.code;
    let k = insn.k;
    let bad = |why| BpfError::BadOpcode { pc, code, why };
    if code > 0xff {
        return Err(bad("opcodes are 8 bits wide"));
    }
    let slot = |k: u32| -> Result<u8, BpfError> {
        if (k as usize) < MEM_WORDS {
            Ok(k as u8)
        } else {
            Err(BpfError::BadMemSlot { pc, slot: k })
        }
    };
    let target = |off: u64| -> Result<u16, BpfError> {
        let t = pc as u64 + 1 + off;
        if t < len as u64 {
            Ok(t as u16)
        } else {
            Err(BpfError::JumpOutOfBounds { pc, target: t, len })
        }
    };
    let op = match code & CLASS {
        LD => match code {
            0x20 => Op::LdAbsW(k),
            0x28 => Op::LdAbsH(k),
            0x30 => Op::LdAbsB(k),
            0x40 => Op::LdIndW(k),
            0x48 => Op::LdIndH(k),
            0x50 => Op::LdIndB(k),
            0x00 => Op::LdImm(k),
            0x80 => Op::LdLen,
            0x60 => Op::LdMem(slot(k)?),
            _ => return Err(bad("not a valid ld size/mode combination")),
        },
        LDX => match code {
            0x01 => Op::LdxImm(k),
            0x81 => Op::LdxLen,
            0x61 => Op::LdxMem(slot(k)?),
            0xb1 => Op::LdxMsh(k),
            _ => return Err(bad("ldx supports only imm, mem, len and msh (byte) modes")),
        },
        ST if code == 0x02 => Op::St(slot(k)?),
        STX if code == 0x03 => Op::Stx(slot(k)?),
        ST | STX => return Err(bad("st/stx take no size or mode bits")),
        ALU => {
            let x = code & 0x08 != 0;
            let op = code & 0xf0;
            if op == 0x80 {
                if code != 0x84 {
                    return Err(bad("neg takes no source operand"));
                }
                Op::Neg
            } else {
                if !x && (op == 0x30 || op == 0x90) && k == 0 {
                    return Err(BpfError::DivByZero { pc });
                }
                if !x && (op == 0x60 || op == 0x70) && k >= 32 {
                    return Err(BpfError::ShiftTooLarge { pc, k });
                }
                match (op, x) {
                    (0x00, false) => Op::AddK(k),
                    (0x00, true) => Op::AddX,
                    (0x10, false) => Op::SubK(k),
                    (0x10, true) => Op::SubX,
                    (0x20, false) => Op::MulK(k),
                    (0x20, true) => Op::MulX,
                    (0x30, false) => Op::DivK(k),
                    (0x30, true) => Op::DivX,
                    (0x40, false) => Op::OrK(k),
                    (0x40, true) => Op::OrX,
                    (0x50, false) => Op::AndK(k),
                    (0x50, true) => Op::AndX,
                    (0x60, false) => Op::LshK(k),
                    (0x60, true) => Op::LshX,
                    (0x70, false) => Op::RshK(k),
                    (0x70, true) => Op::RshX,
                    (0x90, false) => Op::ModK(k),
                    (0x90, true) => Op::ModX,
                    (0xa0, false) => Op::XorK(k),
                    (0xa0, true) => Op::XorX,
                    _ => return Err(bad("unknown alu operation")),
                }
            }
        }
        JMP => {
            if code == 0x05 {
                let t = target(u64::from(k))?;
                return Ok((Op::Ja(t), Flow::Jump(t)));
            }
            let t = target(u64::from(insn.jt))?;
            let f = target(u64::from(insn.jf))?;
            let op = match code {
                0x15 => Op::JeqK { k, t, f },
                0x1d => Op::JeqX { t, f },
                0x25 => Op::JgtK { k, t, f },
                0x2d => Op::JgtX { t, f },
                0x35 => Op::JgeK { k, t, f },
                0x3d => Op::JgeX { t, f },
                0x45 => Op::JsetK { k, t, f },
                0x4d => Op::JsetX { t, f },
                _ => return Err(bad("unknown jump")),
            };
            return Ok((op, Flow::Branch(t, f)));
        }
        RET => {
            let op = match code {
                0x06 => Op::RetK(k),
                0x16 => Op::RetA,
                _ => return Err(bad("ret returns only a constant or A")),
            };
            return Ok((op, Flow::Stop));
        }
        MISC => match code {
            0x07 => Op::Tax,
            0x87 => Op::Txa,
            _ => return Err(bad("unknown misc operation")),
        },
        _ => return Err(bad("unknown instruction class")),
    };
    Ok((op, Flow::Next))
}

/// Validates `insns` and returns the decoded (and fused) operations.
pub(crate) fn validate(insns: &[RawInsn]) -> Result<Vec<Op>, BpfError> {
    let len = insns.len();
    if len == 0 {
        return Err(BpfError::Empty);
    }
    if len > MAX_INSNS {
        return Err(BpfError::TooLong { len });
    }
    let mut ops = Vec::with_capacity(len);
    let mut flows = Vec::with_capacity(len);
    for (pc, &insn) in insns.iter().enumerate() {
        let (op, flow) = decode_one(pc, insn, len)?;
        ops.push(op);
        flows.push(flow);
    }
    if !matches!(flows[len - 1], Flow::Stop) {
        return Err(BpfError::NoFinalReturn { pc: len - 1 });
    }

    // Scratch memory: since jumps only go forward, one pass in program order computes, for each
    // reachable instruction, the set of slots written on every path reaching it (the
    // intersection over its predecessors). `None` marks a not (yet) reached instruction.
    let mut written: Vec<Option<u16>> = vec![None; len];
    written[0] = Some(0);
    for pc in 0..len {
        let Some(mut set) = written[pc] else { continue };
        match ops[pc] {
            Op::LdMem(s) | Op::LdxMem(s) if set & (1 << s) == 0 => {
                return Err(BpfError::UninitMem {
                    pc,
                    slot: u32::from(s),
                });
            }
            Op::St(s) | Op::Stx(s) => set |= 1 << s,
            _ => {}
        }
        let mut reach = |t: usize| {
            written[t] = Some(match written[t] {
                Some(prev) => prev & set,
                None => set,
            });
        };
        match flows[pc] {
            Flow::Next => reach(pc + 1),
            Flow::Jump(t) => reach(t.into()),
            Flow::Branch(t, f) => {
                reach(t.into());
                reach(f.into());
            }
            Flow::Stop => {}
        }
    }

    fuse(&mut ops);
    Ok(ops)
}
