//! The pre-decoded instruction form and the interpreter loop.
//!
//! Jump targets are absolute indices, resolved and checked by the validator, so the loop never
//! computes an offset. A load from the packet immediately followed by a conditional jump against a
//! constant (the shape of nearly every test tcpdump emits) is fused into one operation; the jump
//! stays in place as well, so that other jumps into it keep working.

/// One decoded operation. Targets (`t`, `f`, `Ja`) are absolute instruction indices that the
/// validator has checked to be inside the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    // Keep this at 16 bytes (see the size test below): fused variants with three operands use
    // 16-bit offsets.
    LdAbsW(u32),
    LdAbsH(u32),
    LdAbsB(u32),
    LdIndW(u32),
    LdIndH(u32),
    LdIndB(u32),
    LdImm(u32),
    LdLen,
    LdMem(u8),
    LdxImm(u32),
    LdxLen,
    LdxMem(u8),
    LdxMsh(u32),
    St(u8),
    Stx(u8),
    AddK(u32),
    AddX,
    SubK(u32),
    SubX,
    MulK(u32),
    MulX,
    DivK(u32),
    DivX,
    ModK(u32),
    ModX,
    AndK(u32),
    AndX,
    OrK(u32),
    OrX,
    XorK(u32),
    XorX,
    LshK(u32),
    LshX,
    RshK(u32),
    RshX,
    Neg,
    Ja(u16),
    JeqK {
        k: u32,
        t: u16,
        f: u16,
    },
    JeqX {
        t: u16,
        f: u16,
    },
    JgtK {
        k: u32,
        t: u16,
        f: u16,
    },
    JgtX {
        t: u16,
        f: u16,
    },
    JgeK {
        k: u32,
        t: u16,
        f: u16,
    },
    JgeX {
        t: u16,
        f: u16,
    },
    JsetK {
        k: u32,
        t: u16,
        f: u16,
    },
    JsetX {
        t: u16,
        f: u16,
    },
    RetK(u32),
    RetA,
    Tax,
    Txa,
    // Fused "load then compare with a constant" pairs.
    AbsHJeq {
        off: u32,
        k: u32,
        t: u16,
        f: u16,
    },
    AbsBJeq {
        off: u32,
        k: u32,
        t: u16,
        f: u16,
    },
    AbsWJeq {
        off: u32,
        k: u32,
        t: u16,
        f: u16,
    },
    AbsHJset {
        off: u32,
        k: u32,
        t: u16,
        f: u16,
    },
    AbsBJset {
        off: u32,
        k: u32,
        t: u16,
        f: u16,
    },
    AbsHJgt {
        off: u32,
        k: u32,
        t: u16,
        f: u16,
    },
    AbsHJge {
        off: u32,
        k: u32,
        t: u16,
        f: u16,
    },
    IndHJeq {
        off: u32,
        k: u32,
        t: u16,
        f: u16,
    },
    IndBJeq {
        off: u32,
        k: u32,
        t: u16,
        f: u16,
    },
    IndHJgt {
        off: u32,
        k: u32,
        t: u16,
        f: u16,
    },
    IndHJge {
        off: u32,
        k: u32,
        t: u16,
        f: u16,
    },
    IndBJset {
        off: u32,
        k: u32,
        t: u16,
        f: u16,
    },
    IndHJset {
        off: u32,
        k: u32,
        t: u16,
        f: u16,
    },
    AndJeq {
        m: u32,
        k: u32,
        t: u16,
        f: u16,
    },
    MshIndHJeq {
        msh: u16,
        off: u16,
        k: u32,
        t: u16,
        f: u16,
    },
    AbsWAndJeq {
        off: u16,
        m: u32,
        k: u32,
        t: u16,
        f: u16,
    },
    AbsHAndJeq {
        off: u16,
        m: u32,
        k: u32,
        t: u16,
        f: u16,
    },
    AbsBAndJeq {
        off: u16,
        m: u32,
        k: u32,
        t: u16,
        f: u16,
    },
}

/// Replaces each "load from the packet; conditional jump against a constant" pair with a fused
/// operation at the load's index. The jump itself is kept, so jumps that land on it still work.
pub(crate) fn fuse(ops: &mut [Op]) {
    // Ascending order: position i is rewritten only after positions i+1 and i+2 were read in
    // their original form.
    for i in 0..ops.len().saturating_sub(1) {
        if let (Some(&a), Some(&Op::AndK(m)), Some(&Op::JeqK { k, t, f })) =
            (ops.get(i), ops.get(i + 1), ops.get(i + 2))
        {
            // Offsets above 65535 stay unfused (they only keep `Op` at 16 bytes; such loads
            // are out of bounds for any frame we see anyway).
            let fused = match a {
                Op::LdAbsW(off) => {
                    u16::try_from(off)
                        .ok()
                        .map(|off| Op::AbsWAndJeq { off, m, k, t, f })
                }
                Op::LdAbsH(off) => {
                    u16::try_from(off)
                        .ok()
                        .map(|off| Op::AbsHAndJeq { off, m, k, t, f })
                }
                Op::LdAbsB(off) => {
                    u16::try_from(off)
                        .ok()
                        .map(|off| Op::AbsBAndJeq { off, m, k, t, f })
                }
                _ => None,
            };
            if let Some(op) = fused {
                ops[i] = op;
                continue;
            }
        }
        // "ldxb 4*([k]&0xf); ldh [x+off]; jeq #k": the transport port test after an IPv4 header.
        if let (Some(&Op::LdxMsh(msh)), Some(&Op::LdIndH(off)), Some(&Op::JeqK { k, t, f })) =
            (ops.get(i), ops.get(i + 1), ops.get(i + 2))
        {
            if let (Ok(msh), Ok(off)) = (u16::try_from(msh), u16::try_from(off)) {
                ops[i] = Op::MshIndHJeq { msh, off, k, t, f };
                continue;
            }
        }
        let fused = match (ops[i], ops[i + 1]) {
            (Op::AndK(m), Op::JeqK { k, t, f }) => Op::AndJeq { m, k, t, f },
            (Op::LdAbsH(off), Op::JeqK { k, t, f }) => Op::AbsHJeq { off, k, t, f },
            (Op::LdAbsB(off), Op::JeqK { k, t, f }) => Op::AbsBJeq { off, k, t, f },
            (Op::LdAbsW(off), Op::JeqK { k, t, f }) => Op::AbsWJeq { off, k, t, f },
            (Op::LdAbsH(off), Op::JsetK { k, t, f }) => Op::AbsHJset { off, k, t, f },
            (Op::LdAbsB(off), Op::JsetK { k, t, f }) => Op::AbsBJset { off, k, t, f },
            (Op::LdAbsH(off), Op::JgtK { k, t, f }) => Op::AbsHJgt { off, k, t, f },
            (Op::LdAbsH(off), Op::JgeK { k, t, f }) => Op::AbsHJge { off, k, t, f },
            (Op::LdIndH(off), Op::JeqK { k, t, f }) => Op::IndHJeq { off, k, t, f },
            (Op::LdIndB(off), Op::JeqK { k, t, f }) => Op::IndBJeq { off, k, t, f },
            (Op::LdIndH(off), Op::JgtK { k, t, f }) => Op::IndHJgt { off, k, t, f },
            (Op::LdIndB(off), Op::JsetK { k, t, f }) => Op::IndBJset { off, k, t, f },
            (Op::LdIndH(off), Op::JsetK { k, t, f }) => Op::IndHJset { off, k, t, f },
            (Op::LdIndH(off), Op::JgeK { k, t, f }) => Op::IndHJge { off, k, t, f },
            _ => continue,
        };
        ops[i] = fused;
    }
}

#[inline(always)]
fn ld_w(p: &[u8], off: usize) -> Option<u32> {
    let b = p.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[inline(always)]
fn ld_h(p: &[u8], off: usize) -> Option<u32> {
    let b = p.get(off..off.checked_add(2)?)?;
    Some(u32::from(u16::from_be_bytes([b[0], b[1]])))
}

#[inline(always)]
fn ld_b(p: &[u8], off: usize) -> Option<u32> {
    p.get(off).map(|&b| u32::from(b))
}

#[inline(always)]
fn ind(x: u32, k: u32) -> usize {
    // On 64-bit targets the sum cannot overflow; on 32-bit ones a saturated offset is simply out
    // of bounds.
    (x as usize).saturating_add(k as usize)
}

/// The result of a program that loads past the end of the frame (or divides by zero): the
/// rare path, kept out of the hot loop's layout.
#[cold]
#[inline(never)]
fn no_match() -> u32 {
    0
}

macro_rules! load {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return no_match(),
        }
    };
}

#[inline(always)]
fn br(c: bool, t: u16, f: u16) -> usize {
    if c {
        t as usize
    } else {
        f as usize
    }
}

/// `true` when the program uses scratch memory.
pub(crate) fn uses_mem(ops: &[Op]) -> bool {
    ops.iter()
        .any(|op| matches!(op, Op::St(_) | Op::Stx(_) | Op::LdMem(_) | Op::LdxMem(_)))
}

/// Runs validated `ops` over `p`. `wire_len` is what `BPF_LEN` loads. `MEM` must be `true`
/// when the program uses scratch memory (see [`uses_mem`]); without it, memory operations end
/// the program with 0 and the scratch array is optimised away.
#[inline]
pub(crate) fn run<const MEM: bool>(ops: &[Op], p: &[u8], wire_len: u32) -> u32 {
    let mut a: u32 = 0;
    let mut x: u32 = 0;
    let mut mem = [0u32; super::MEM_WORDS];
    let mut pc: usize = 0;
    loop {
        // The validator guarantees that pc stays inside the program (every jump target is in
        // bounds, and the last instruction is a return); `get` keeps that a checked fact.
        let Some(&op) = ops.get(pc) else { return 0 };
        pc += 1;
        match op {
            Op::AbsHJeq { off, k, t, f } => {
                a = load!(ld_h(p, off as usize));
                pc = br(a == k, t, f);
            }
            Op::AbsBJeq { off, k, t, f } => {
                a = load!(ld_b(p, off as usize));
                pc = br(a == k, t, f);
            }
            Op::AbsWJeq { off, k, t, f } => {
                a = load!(ld_w(p, off as usize));
                pc = br(a == k, t, f);
            }
            Op::AbsHJset { off, k, t, f } => {
                a = load!(ld_h(p, off as usize));
                pc = br(a & k != 0, t, f);
            }
            Op::AbsBJset { off, k, t, f } => {
                a = load!(ld_b(p, off as usize));
                pc = br(a & k != 0, t, f);
            }
            Op::AbsHJgt { off, k, t, f } => {
                a = load!(ld_h(p, off as usize));
                pc = br(a > k, t, f);
            }
            Op::AbsHJge { off, k, t, f } => {
                a = load!(ld_h(p, off as usize));
                pc = br(a >= k, t, f);
            }
            Op::IndHJeq { off, k, t, f } => {
                a = load!(ld_h(p, ind(x, off)));
                pc = br(a == k, t, f);
            }
            Op::IndBJeq { off, k, t, f } => {
                a = load!(ld_b(p, ind(x, off)));
                pc = br(a == k, t, f);
            }
            Op::IndBJset { off, k, t, f } => {
                a = load!(ld_b(p, ind(x, off)));
                pc = br(a & k != 0, t, f);
            }
            Op::IndHJset { off, k, t, f } => {
                a = load!(ld_h(p, ind(x, off)));
                pc = br(a & k != 0, t, f);
            }
            Op::IndHJgt { off, k, t, f } => {
                a = load!(ld_h(p, ind(x, off)));
                pc = br(a > k, t, f);
            }
            Op::IndHJge { off, k, t, f } => {
                a = load!(ld_h(p, ind(x, off)));
                pc = br(a >= k, t, f);
            }
            Op::LdAbsW(k) => a = load!(ld_w(p, k as usize)),
            Op::LdAbsH(k) => a = load!(ld_h(p, k as usize)),
            Op::LdAbsB(k) => a = load!(ld_b(p, k as usize)),
            Op::LdIndW(k) => a = load!(ld_w(p, ind(x, k))),
            Op::LdIndH(k) => a = load!(ld_h(p, ind(x, k))),
            Op::LdIndB(k) => a = load!(ld_b(p, ind(x, k))),
            Op::LdImm(k) => a = k,
            Op::LdLen => a = wire_len,
            Op::AndJeq { m, k, t, f } => {
                a &= m;
                pc = br(a == k, t, f);
            }
            Op::MshIndHJeq { msh, off, k, t, f } => {
                x = (load!(ld_b(p, usize::from(msh))) & 0x0f) << 2;
                a = load!(ld_h(p, ind(x, u32::from(off))));
                pc = br(a == k, t, f);
            }
            Op::AbsWAndJeq { off, m, k, t, f } => {
                a = load!(ld_w(p, usize::from(off))) & m;
                pc = br(a == k, t, f);
            }
            Op::AbsHAndJeq { off, m, k, t, f } => {
                a = load!(ld_h(p, usize::from(off))) & m;
                pc = br(a == k, t, f);
            }
            Op::AbsBAndJeq { off, m, k, t, f } => {
                a = load!(ld_b(p, usize::from(off))) & m;
                pc = br(a == k, t, f);
            }
            Op::LdMem(_) | Op::LdxMem(_) | Op::St(_) | Op::Stx(_) if !MEM => return 0,
            Op::LdMem(i) => a = mem[usize::from(i) & 15],
            Op::LdxImm(k) => x = k,
            Op::LdxLen => x = wire_len,
            Op::LdxMem(i) => x = mem[usize::from(i) & 15],
            Op::LdxMsh(k) => x = (load!(ld_b(p, k as usize)) & 0x0f) << 2,
            Op::St(i) => mem[usize::from(i) & 15] = a,
            Op::Stx(i) => mem[usize::from(i) & 15] = x,
            Op::AddK(k) => a = a.wrapping_add(k),
            Op::AddX => a = a.wrapping_add(x),
            Op::SubK(k) => a = a.wrapping_sub(k),
            Op::SubX => a = a.wrapping_sub(x),
            Op::MulK(k) => a = a.wrapping_mul(k),
            Op::MulX => a = a.wrapping_mul(x),
            Op::DivK(k) => a = load!(a.checked_div(k)),
            Op::DivX => a = load!(a.checked_div(x)),
            Op::ModK(k) => a = load!(a.checked_rem(k)),
            Op::ModX => a = load!(a.checked_rem(x)),
            Op::AndK(k) => a &= k,
            Op::AndX => a &= x,
            Op::OrK(k) => a |= k,
            Op::OrX => a |= x,
            Op::XorK(k) => a ^= k,
            Op::XorX => a ^= x,
            Op::LshK(k) => a = a.wrapping_shl(k),
            Op::LshX => a = a.wrapping_shl(x),
            Op::RshK(k) => a = a.wrapping_shr(k),
            Op::RshX => a = a.wrapping_shr(x),
            Op::Neg => a = a.wrapping_neg(),
            Op::Ja(t) => pc = t as usize,
            Op::JeqK { k, t, f } => pc = br(a == k, t, f),
            Op::JeqX { t, f } => pc = br(a == x, t, f),
            Op::JgtK { k, t, f } => pc = br(a > k, t, f),
            Op::JgtX { t, f } => pc = br(a > x, t, f),
            Op::JgeK { k, t, f } => pc = br(a >= k, t, f),
            Op::JgeX { t, f } => pc = br(a >= x, t, f),
            Op::JsetK { k, t, f } => pc = br(a & k != 0, t, f),
            Op::JsetX { t, f } => pc = br(a & x != 0, t, f),
            Op::RetK(k) => return k,
            Op::RetA => return a,
            Op::Tax => x = a,
            Op::Txa => a = x,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn op_is_16_bytes() {
        assert_eq!(std::mem::size_of::<super::Op>(), 16);
    }
}
