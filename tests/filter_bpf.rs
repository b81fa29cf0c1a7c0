//! The classic BPF validator with hostile programs, and the interpreter's run-time safety.

use floodgate::bpf::{parse_bytecode, BpfError, CompiledBpf, Program, RawInsn, MAX_INSNS};
use proptest::prelude::*;

fn i(code: u16, jt: u8, jf: u8, k: u32) -> RawInsn {
    RawInsn::new(code, jt, jf, k)
}

const RET_K: u16 = 0x06;
const RET_A: u16 = 0x16;
const LD_ABS_W: u16 = 0x20;
const LD_ABS_H: u16 = 0x28;
const LD_ABS_B: u16 = 0x30;
const LD_IND_B: u16 = 0x50;
const LD_IND_W: u16 = 0x40;
const LD_IMM: u16 = 0x00;
const LD_LEN: u16 = 0x80;
const LD_MEM: u16 = 0x60;
const LDX_IMM: u16 = 0x01;
const LDX_MEM: u16 = 0x61;
const LDX_MSH: u16 = 0xb1;
const ST: u16 = 0x02;
const STX: u16 = 0x03;
const JA: u16 = 0x05;
const JEQ_K: u16 = 0x15;
const DIV_K: u16 = 0x34;
const DIV_X: u16 = 0x3c;
const MOD_K: u16 = 0x94;
const MOD_X: u16 = 0x9c;
const LSH_K: u16 = 0x64;
const ADD_K: u16 = 0x04;
const TAX: u16 = 0x07;

/// Runs `p` with the interpreter and compiled, asserts that both give the same result, and
/// returns it.
fn both(p: &Program, frame: &[u8]) -> u32 {
    both_len(p, frame, frame.len() as u32)
}

fn both_len(p: &Program, frame: &[u8], wire_len: u32) -> u32 {
    let c = CompiledBpf::new(p);
    assert_eq!(c.is_native(), cfg!(target_arch = "x86_64"));
    let r = p.run_with_len(frame, wire_len);
    assert_eq!(
        c.run_with_len(frame, wire_len),
        r,
        "compiled vs interpreter on {:?}",
        p.insns()
    );
    r
}

fn rejects(insns: &[RawInsn]) -> BpfError {
    Program::new(insns).expect_err("hostile program accepted")
}

#[test]
fn empty_and_too_long() {
    assert_eq!(rejects(&[]), BpfError::Empty);
    let long = vec![i(RET_K, 0, 0, 0); MAX_INSNS + 1];
    assert_eq!(rejects(&long), BpfError::TooLong { len: MAX_INSNS + 1 });
    // Exactly the limit is fine.
    assert!(Program::new(&vec![i(RET_K, 0, 0, 0); MAX_INSNS]).is_ok());
}

#[test]
fn jumps_out_of_bounds() {
    // Conditional jump past the end.
    let e = rejects(&[i(JEQ_K, 5, 0, 1), i(RET_K, 0, 0, 0)]);
    assert!(
        matches!(
            e,
            BpfError::JumpOutOfBounds {
                pc: 0,
                target: 6,
                len: 2
            }
        ),
        "{e:?}"
    );
    // False branch past the end.
    assert!(matches!(
        rejects(&[i(JEQ_K, 0, 1, 1), i(RET_K, 0, 0, 0)]),
        BpfError::JumpOutOfBounds { pc: 0, .. }
    ));
    // ja onto itself would need offset -1: 0xffffffff wraps in 32-bit arithmetic, a "backward"
    // jump; it is out of bounds here.
    assert!(matches!(
        rejects(&[i(JA, 0, 0, u32::MAX), i(RET_K, 0, 0, 0)]),
        BpfError::JumpOutOfBounds { pc: 0, .. }
    ));
    // ja just past the end.
    assert!(matches!(
        rejects(&[i(JA, 0, 0, 1), i(RET_K, 0, 0, 0)]),
        BpfError::JumpOutOfBounds { .. }
    ));
    // Jump to the very last instruction is fine.
    assert!(Program::new(&[i(JA, 0, 0, 1), i(RET_K, 0, 0, 1), i(RET_K, 0, 0, 2)]).is_ok());
}

#[test]
fn missing_final_return() {
    assert_eq!(
        rejects(&[i(LD_ABS_H, 0, 0, 12)]),
        BpfError::NoFinalReturn { pc: 0 }
    );
    // A ret exists, but the last instruction can fall off the end.
    assert_eq!(
        rejects(&[i(JEQ_K, 0, 1, 5), i(RET_K, 0, 0, 1), i(LD_IMM, 0, 0, 3)]),
        BpfError::NoFinalReturn { pc: 2 }
    );
}

#[test]
fn bad_opcodes() {
    for code in [
        0x21u16, // ldx abs: not a valid ldx mode
        0x41,    // ldx ind
        0x69,    // ldx mem with size H
        0xa1,    // ldx msh with size W
        0x18,    // ld with size DW (0x18)
        0xa0,    // ld msh: only ldx has msh
        0x0e,    // ret X
        0x26,    // ret with bogus bits
        0x0d,    // ja with X bit
        0x55,    // unknown jump op
        0xb4,    // unknown alu op
        0x8c,    // neg with X bit
        0x17,    // unknown misc
        0x12,    // st with size bits
        0x1234,  // wider than 8 bits
    ] {
        let e = rejects(&[i(code, 0, 0, 0), i(RET_K, 0, 0, 0)]);
        assert!(
            matches!(e, BpfError::BadOpcode { pc: 0, code: c, .. } if c == code),
            "{code:#x}: {e:?}"
        );
    }
}

#[test]
fn constant_division_and_shift() {
    assert_eq!(
        rejects(&[i(DIV_K, 0, 0, 0), i(RET_A, 0, 0, 0)]),
        BpfError::DivByZero { pc: 0 }
    );
    assert_eq!(
        rejects(&[i(MOD_K, 0, 0, 0), i(RET_A, 0, 0, 0)]),
        BpfError::DivByZero { pc: 0 }
    );
    assert_eq!(
        rejects(&[i(LSH_K, 0, 0, 32), i(RET_A, 0, 0, 0)]),
        BpfError::ShiftTooLarge { pc: 0, k: 32 }
    );
}

#[test]
fn memory_slots() {
    assert_eq!(
        rejects(&[i(ST, 0, 0, 16), i(RET_K, 0, 0, 0)]),
        BpfError::BadMemSlot { pc: 0, slot: 16 }
    );
    assert_eq!(
        rejects(&[i(STX, 0, 0, 99), i(RET_K, 0, 0, 0)]),
        BpfError::BadMemSlot { pc: 0, slot: 99 }
    );
    assert_eq!(
        rejects(&[i(LD_MEM, 0, 0, 16), i(RET_A, 0, 0, 0)]),
        BpfError::BadMemSlot { pc: 0, slot: 16 }
    );
    assert_eq!(
        rejects(&[i(LDX_MEM, 0, 0, u32::MAX), i(RET_K, 0, 0, 0)]),
        BpfError::BadMemSlot {
            pc: 0,
            slot: u32::MAX
        }
    );
}

#[test]
fn uninitialised_memory_reads() {
    // Read before any write.
    assert_eq!(
        rejects(&[i(LD_MEM, 0, 0, 3), i(RET_A, 0, 0, 0)]),
        BpfError::UninitMem { pc: 0, slot: 3 }
    );
    // Written on one branch only.
    let prog = [
        i(LD_ABS_B, 0, 0, 0),
        i(JEQ_K, 0, 1, 1),
        i(ST, 0, 0, 2),
        i(LDX_MEM, 0, 0, 2),
        i(RET_K, 0, 0, 1),
    ];
    assert_eq!(rejects(&prog), BpfError::UninitMem { pc: 3, slot: 2 });
    // Written on both branches: accepted.
    let prog = [
        i(LD_ABS_B, 0, 0, 0),
        i(JEQ_K, 0, 2, 1),
        i(ST, 0, 0, 2),
        i(JA, 0, 0, 1),
        i(ST, 0, 0, 2),
        i(LD_MEM, 0, 0, 2),
        i(RET_A, 0, 0, 0),
    ];
    let p = Program::new(&prog).unwrap();
    assert_eq!(both(&p, &[1]), 1);
    assert_eq!(both(&p, &[7]), 7);
    // A read in unreachable code is not a path, so it is not rejected.
    assert!(Program::new(&[i(RET_K, 0, 0, 0), i(LD_MEM, 0, 0, 5), i(RET_A, 0, 0, 0)]).is_ok());
}

#[test]
fn out_of_bounds_loads_return_zero() {
    let frame = [0xffu8; 64];
    for (code, k) in [
        (LD_ABS_W, 61),
        (LD_ABS_H, 63),
        (LD_ABS_B, 64),
        (LD_ABS_W, u32::MAX),
        (LD_ABS_W, u32::MAX - 2),
        (LD_ABS_H, 0xffff_f000), // the kernel's SKF_AD_OFF area is just out of bounds here
        (LDX_MSH, 64),
    ] {
        let p = Program::new(&[i(code, 0, 0, k), i(RET_K, 0, 0, 1)]).unwrap();
        assert_eq!(both(&p, &frame), 0, "code {code:#x} k {k}");
        assert_eq!(both(&p, &[]), 0);
    }
    // Indirect loads: X + k overflows 32 bits, or lands past the end.
    let p = Program::new(&[
        i(LDX_IMM, 0, 0, u32::MAX),
        i(LD_IND_W, 0, 0, u32::MAX),
        i(RET_K, 0, 0, 1),
    ])
    .unwrap();
    assert_eq!(both(&p, &frame), 0);
    let p = Program::new(&[
        i(LDX_IMM, 0, 0, 60),
        i(LD_IND_B, 0, 0, 4),
        i(RET_K, 0, 0, 1),
    ])
    .unwrap();
    assert_eq!(both(&p, &frame), 0);
    let p = Program::new(&[
        i(LDX_IMM, 0, 0, 60),
        i(LD_IND_B, 0, 0, 3),
        i(RET_A, 0, 0, 0),
    ])
    .unwrap();
    assert_eq!(both(&p, &frame), 0xff);
    // In-bounds loads read big-endian values.
    let p = Program::new(&[i(LD_ABS_W, 0, 0, 0), i(RET_A, 0, 0, 0)]).unwrap();
    assert_eq!(both(&p, &[1, 2, 3, 4, 5]), 0x0102_0304);
}

#[test]
fn division_by_zero_x_returns_zero() {
    for code in [DIV_X, MOD_X] {
        let p = Program::new(&[
            i(LD_IMM, 0, 0, 100),
            i(LDX_IMM, 0, 0, 0),
            i(code, 0, 0, 0),
            i(RET_K, 0, 0, 9),
        ])
        .unwrap();
        assert_eq!(both(&p, &[0; 20]), 0, "code {code:#x}");
        let p = Program::new(&[
            i(LD_IMM, 0, 0, 100),
            i(LDX_IMM, 0, 0, 7),
            i(code, 0, 0, 0),
            i(RET_A, 0, 0, 0),
        ])
        .unwrap();
        assert_eq!(both(&p, &[0; 20]), if code == DIV_X { 14 } else { 2 });
    }
}

#[test]
fn arithmetic_and_len() {
    // A = len; A += 5; X = A; A = 3; A <<= 2; jgt X? ; ret A / ret X
    let p = Program::new(&[
        i(LD_LEN, 0, 0, 0),
        i(ADD_K, 0, 0, 5),
        i(TAX, 0, 0, 0),
        i(LD_IMM, 0, 0, 3),
        i(LSH_K, 0, 0, 2),
        i(0x2d, 0, 1, 0), // jgt X
        i(RET_A, 0, 0, 0),
        i(0x87, 0, 0, 0), // txa
        i(RET_A, 0, 0, 0),
    ])
    .unwrap();
    assert_eq!(both(&p, &[0; 10]), 15);
    assert_eq!(both(&p, &[0; 2]), 12);
    assert_eq!(both_len(&p, &[0; 2], 100), 105);
    // Wrapping arithmetic never panics.
    let p = Program::new(&[
        i(LD_IMM, 0, 0, u32::MAX),
        i(ADD_K, 0, 0, 2),
        i(0x24, 0, 0, u32::MAX),
        i(0x84, 0, 0, 0),
        i(RET_A, 0, 0, 0),
    ])
    .unwrap();
    assert_eq!(both(&p, &[]), 1u32.wrapping_mul(u32::MAX).wrapping_neg());
}

#[test]
fn scratch_memory_roundtrip() {
    let p = Program::new(&[
        i(LD_ABS_B, 0, 0, 1),
        i(ST, 0, 0, 15),
        i(LD_IMM, 0, 0, 0),
        i(LDX_MEM, 0, 0, 15),
        i(0x87, 0, 0, 0),
        i(RET_A, 0, 0, 0),
    ])
    .unwrap();
    assert_eq!(both(&p, &[0, 42]), 42);
}

#[test]
fn fused_load_jump_keeps_jump_targets() {
    // Insn 2 (the jeq) is the target of insn 0's jump as well as the fall-through of the
    // ldh at insn 1, which the interpreter fuses with it.
    let p = Program::new(&[
        i(JEQ_K, 1, 0, 0), // A == 0 (always, initially) -> insn 2
        i(LD_ABS_H, 0, 0, 0),
        i(JEQ_K, 0, 1, 0), // fused with insn 1 when reached from there
        i(RET_K, 0, 0, 1),
        i(RET_K, 0, 0, 2),
    ])
    .unwrap();
    assert_eq!(both(&p, &[0, 5]), 1);
    let p2 = Program::new(&[
        i(JA, 0, 0, 1),
        i(LD_ABS_H, 0, 0, 0),
        i(JEQ_K, 0, 1, 7), // reached by ja with A = 0
        i(RET_K, 0, 0, 1),
        i(RET_K, 0, 0, 2),
    ])
    .unwrap();
    assert_eq!(both(&p2, &[0, 7]), 2);
}

#[test]
fn bytecode_text() {
    let insns = parse_bytecode("4,40 0 0 12,21 0 1 2048,6 0 0 65535,6 0 0 0").unwrap();
    assert_eq!(insns[1], i(JEQ_K, 0, 1, 2048));
    let p = Program::new(&insns).unwrap();
    let mut f = [0u8; 20];
    f[12] = 8;
    assert_eq!(both(&p, &f), 65535);
    // Newline-separated, as `tcpdump -ddd` prints it.
    assert_eq!(parse_bytecode("2\n6 0 0 1\n6 0 0 0\n").unwrap().len(), 2);
    assert!(matches!(parse_bytecode(""), Err(BpfError::Empty)));
    assert!(matches!(
        parse_bytecode("5000"),
        Err(BpfError::TooLong { .. })
    ));
    assert!(matches!(
        parse_bytecode("1,6 0 0"),
        Err(BpfError::Syntax { .. })
    ));
    assert!(matches!(
        parse_bytecode("1,6 0 300 0"),
        Err(BpfError::Syntax { .. })
    ));
}

fn any_insn() -> impl Strategy<Value = RawInsn> {
    // Mostly valid opcodes (so programs get past validation and exercise the interpreter),
    // sometimes arbitrary 16-bit ones.
    let valid: Vec<u16> = vec![
        0x00, 0x20, 0x28, 0x30, 0x40, 0x48, 0x50, 0x60, 0x80, 0x01, 0x61, 0x81, 0xb1, 0x02, 0x03,
        0x04, 0x0c, 0x14, 0x1c, 0x24, 0x2c, 0x34, 0x3c, 0x44, 0x4c, 0x54, 0x5c, 0x64, 0x6c, 0x74,
        0x7c, 0x84, 0x94, 0x9c, 0xa4, 0xac, 0x05, 0x15, 0x1d, 0x25, 0x2d, 0x35, 0x3d, 0x45, 0x4d,
        0x06, 0x16, 0x07, 0x87,
    ];
    let code = prop_oneof![
        8 => proptest::sample::select(valid),
        1 => any::<u16>(),
    ];
    let k = prop_oneof![
        4 => 0u32..64,
        1 => any::<u32>(),
    ];
    (code, 0u8..8, 0u8..8, k).prop_map(|(c, jt, jf, k)| RawInsn::new(c, jt, jf, k))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Random programs either fail validation or run to completion on random frames; nothing
    /// panics, and the compiled form returns what the interpreter returns.
    #[test]
    fn random_programs_never_panic(
        mut insns in proptest::collection::vec(any_insn(), 1..40),
        end_ret in any::<bool>(),
        frame in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        if end_ret {
            insns.push(RawInsn::new(0x16, 0, 0, 0));
        }
        if let Ok(p) = Program::new(&insns) {
            let c = CompiledBpf::new(&p);
            prop_assert_eq!(c.run(&frame), p.run(&frame));
            prop_assert_eq!(c.run_with_len(&frame, u32::MAX), p.run_with_len(&frame, u32::MAX));
            prop_assert_eq!(c.run(&[]), p.run(&[]));
        }
    }
}

/// Valid opcodes only, with operands near the edges that matter: offsets around the frame
/// lengths used below, scratch slots, shift counts, and now and then any 32-bit value.
fn valid_insn() -> impl Strategy<Value = RawInsn> {
    let codes: Vec<u16> = vec![
        0x00, 0x20, 0x28, 0x30, 0x40, 0x48, 0x50, 0x60, 0x80, 0x01, 0x61, 0x81, 0xb1, 0x02, 0x03,
        0x04, 0x0c, 0x14, 0x1c, 0x24, 0x2c, 0x34, 0x3c, 0x44, 0x4c, 0x54, 0x5c, 0x64, 0x6c, 0x74,
        0x7c, 0x84, 0x94, 0x9c, 0xa4, 0xac, 0x05, 0x15, 0x1d, 0x25, 0x2d, 0x35, 0x3d, 0x45, 0x4d,
        0x06, 0x16, 0x07, 0x87,
    ];
    let k = prop_oneof![
        6 => 0u32..16,
        6 => 0u32..80,
        1 => (i32::MAX as u32 - 8)..(i32::MAX as u32 + 8),
        1 => (u32::MAX - 8)..=u32::MAX,
        1 => any::<u32>(),
    ];
    (proptest::sample::select(codes), 0u8..6, 0u8..6, k)
        .prop_map(|(c, jt, jf, k)| RawInsn::new(c, jt, jf, k))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    /// Random valid programs (scratch memory written first so that its reads validate) give the
    /// same result compiled and interpreted, on random frames, truncated frames and wire
    /// lengths.
    #[test]
    fn compiled_programs_agree_with_the_interpreter(
        body in proptest::collection::vec(valid_insn(), 1..32),
        frame in proptest::collection::vec(any::<u8>(), 0..80),
        cut in 0usize..80,
        wire_len in prop_oneof![Just(None), any::<u32>().prop_map(Some)],
    ) {
        let mut insns: Vec<RawInsn> = (0..16).map(|s| RawInsn::new(0x02, 0, 0, s)).collect();
        insns.extend(body);
        insns.push(RawInsn::new(0x16, 0, 0, 0));
        insns.push(RawInsn::new(0x06, 0, 0, 7));
        insns.push(RawInsn::new(0x06, 0, 0, 9));
        let Ok(p) = Program::new(&insns) else { return Ok(()) };
        let c = CompiledBpf::new(&p);
        prop_assert!(c.is_native() || !cfg!(target_arch = "x86_64"));
        for f in [&frame[..], &frame[..cut.min(frame.len())]] {
            let len = wire_len.unwrap_or(f.len() as u32);
            prop_assert_eq!(c.run_with_len(f, len), p.run_with_len(f, len), "frame {:?}", f);
        }
    }
}
