//! eBPF instruction encoder and the XDP steering-program generator.
//!
//! The instruction format, opcodes and register conventions are those of the kernel's eBPF
//! ISA (`include/uapi/linux/bpf.h`, `include/uapi/linux/bpf_common.h`, and
//! `Documentation/bpf/standardization/instruction-set.rst`): 8-byte instructions
//! `{ code: u8, dst_reg:4 | src_reg:4, off: i16, imm: i32 }`, `r0` return value, `r1`–`r5`
//! arguments (clobbered by calls), `r6`–`r9` callee-saved, `r10` frame pointer.
//!
//! [`generate`] turns a list of [`XdpRule`]s into a program that, for each frame:
//!
//! 1. reads the Ethernet type, skipping one 802.1Q tag (0x8100) if present;
//! 2. for IPv4 (0x0800) finds the L4 header from the IHL, for IPv6 (0x86DD) takes the fixed
//!    40-byte header (extension headers are not walked: a rule with ports or a protocol
//!    does not match a packet whose first next-header is an extension header);
//! 3. tries the rules of that family in order: protocol, source and destination address under
//!    their masks, source and destination port under their masks (ports only in an unfragmented
//!    packet or the first fragment);
//! 4. on the first match returns `bpf_redirect_map(&xsks, ctx->rx_queue_index, miss)`, i.e.
//!    hands the frame to the AF_XDP socket registered for the queue it came in on (and `miss`,
//!    normally `XDP_PASS`, if no socket is registered there); otherwise `XDP_PASS`.
//!
//! Every packet read is preceded by a comparison of the furthest byte it touches against
//! `data_end`, which is what the verifier demands. Multi-byte fields are compared in network
//! byte order by loading them as little-endian words and comparing with constants built the
//! same way, so no byte swaps are needed.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

/// One eBPF instruction, laid out as `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// `dst_reg` in the low nibble, `src_reg` in the high nibble.
    pub regs: u8,
    /// Signed offset (memory access or jump distance).
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

const _: () = assert!(std::mem::size_of::<Insn>() == 8);

/// Registers `r0`–`r10`.
pub type Reg = u8;

// Instruction classes and fields (include/uapi/linux/bpf_common.h and bpf.h).
const BPF_LD: u8 = 0x00;
const BPF_LDX: u8 = 0x01;
const BPF_ALU: u8 = 0x04;
const BPF_JMP: u8 = 0x05;
const BPF_JMP32: u8 = 0x06;
const BPF_ALU64: u8 = 0x07;
const BPF_W: u8 = 0x00;
const BPF_H: u8 = 0x08;
const BPF_B: u8 = 0x10;
const BPF_DW: u8 = 0x18;
const BPF_IMM: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_ADD: u8 = 0x00;
const BPF_AND: u8 = 0x50;
const BPF_LSH: u8 = 0x60;
const BPF_MOV: u8 = 0xb0;
const BPF_JA: u8 = 0x00;
const BPF_JEQ: u8 = 0x10;
const BPF_JGT: u8 = 0x20;
const BPF_JNE: u8 = 0x50;
const BPF_CALL: u8 = 0x80;
const BPF_EXIT: u8 = 0x90;
/// `src_reg` of a 64-bit immediate load that carries a map fd (`BPF_PSEUDO_MAP_FD`).
const BPF_PSEUDO_MAP_FD: u8 = 1;
/// Helper number of `bpf_redirect_map` (`enum bpf_func_id`, include/uapi/linux/bpf.h).
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
/// Helper number of `bpf_map_lookup_elem`.
const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
const BPF_ST: u8 = 0x02;
const BPF_STX: u8 = 0x03;

/// Memory access sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// 1 byte.
    B,
    /// 2 bytes.
    H,
    /// 4 bytes.
    W,
}

impl Size {
    fn bits(self) -> u8 {
        match self {
            Size::B => BPF_B,
            Size::H => BPF_H,
            Size::W => BPF_W,
        }
    }
}

/// Jump conditions used by the generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// `==`.
    Eq,
    /// `!=`.
    Ne,
    /// Unsigned `>`.
    Gt,
}

impl Cond {
    fn bits(self) -> u8 {
        match self {
            Cond::Eq => BPF_JEQ,
            Cond::Ne => BPF_JNE,
            Cond::Gt => BPF_JGT,
        }
    }
}

fn insn(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (dst & 0x0f) | (src << 4),
        off,
        imm,
    }
}

impl Insn {
    /// `dst = src` (64-bit).
    pub fn mov64_reg(dst: Reg, src: Reg) -> Insn {
        insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0)
    }
    /// `dst = imm` (64-bit, sign-extended).
    pub fn mov64_imm(dst: Reg, imm: i32) -> Insn {
        insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm)
    }
    /// `dst += imm` (64-bit).
    pub fn add64_imm(dst: Reg, imm: i32) -> Insn {
        insn(BPF_ALU64 | BPF_ADD | BPF_K, dst, 0, 0, imm)
    }
    /// `dst += src` (64-bit).
    pub fn add64_reg(dst: Reg, src: Reg) -> Insn {
        insn(BPF_ALU64 | BPF_ADD | BPF_X, dst, src, 0, 0)
    }
    /// `dst &= imm` (32-bit; the upper half is zeroed).
    pub fn and32_imm(dst: Reg, imm: i32) -> Insn {
        insn(BPF_ALU | BPF_AND | BPF_K, dst, 0, 0, imm)
    }
    /// `dst <<= imm` (64-bit).
    pub fn lsh64_imm(dst: Reg, imm: i32) -> Insn {
        insn(BPF_ALU64 | BPF_LSH | BPF_K, dst, 0, 0, imm)
    }
    /// `dst = *(size *)(src + off)`.
    pub fn ldx(size: Size, dst: Reg, src: Reg, off: i16) -> Insn {
        insn(BPF_LDX | BPF_MEM | size.bits(), dst, src, off, 0)
    }
    /// `dst = *(u64 *)(src + off)`.
    pub fn ldx_dw(dst: Reg, src: Reg, off: i16) -> Insn {
        insn(BPF_LDX | BPF_MEM | BPF_DW, dst, src, off, 0)
    }
    /// `*(u64 *)(dst + off) = src`.
    pub fn stx_dw(dst: Reg, off: i16, src: Reg) -> Insn {
        insn(BPF_STX | BPF_MEM | BPF_DW, dst, src, off, 0)
    }
    /// `*(u32 *)(dst + off) = imm`.
    pub fn st_w(dst: Reg, off: i16, imm: i32) -> Insn {
        insn(BPF_ST | BPF_MEM | BPF_W, dst, 0, off, imm)
    }
    /// `if dst <cond> imm goto +off` (64-bit compare, `imm` sign-extended).
    pub fn jmp_imm(cond: Cond, dst: Reg, imm: i32, off: i16) -> Insn {
        insn(BPF_JMP | cond.bits() | BPF_K, dst, 0, off, imm)
    }
    /// `if (u32)dst <cond> (u32)imm goto +off` (32-bit compare).
    pub fn jmp32_imm(cond: Cond, dst: Reg, imm: i32, off: i16) -> Insn {
        insn(BPF_JMP32 | cond.bits() | BPF_K, dst, 0, off, imm)
    }
    /// `if dst <cond> src goto +off` (64-bit compare).
    pub fn jmp_reg(cond: Cond, dst: Reg, src: Reg, off: i16) -> Insn {
        insn(BPF_JMP | cond.bits() | BPF_X, dst, src, off, 0)
    }
    /// `goto +off`.
    pub fn ja(off: i16) -> Insn {
        insn(BPF_JMP | BPF_JA, 0, 0, off, 0)
    }
    /// Call helper `func`.
    pub fn call(func: i32) -> Insn {
        insn(BPF_JMP | BPF_CALL, 0, 0, 0, func)
    }
    /// `exit` (return `r0`).
    pub fn exit() -> Insn {
        insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
    }
    /// `dst = map` (the two-slot 64-bit immediate load with `BPF_PSEUDO_MAP_FD`).
    pub fn ld_map_fd(dst: Reg, fd: i32) -> [Insn; 2] {
        [
            insn(BPF_LD | BPF_DW | BPF_IMM, dst, BPF_PSEUDO_MAP_FD, 0, fd),
            insn(0, 0, 0, 0, 0),
        ]
    }
}

/// XDP actions (`enum xdp_action`, include/uapi/linux/bpf.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum XdpAction {
    /// `XDP_ABORTED` (0).
    Aborted = 0,
    /// `XDP_DROP` (1).
    Drop = 1,
    /// `XDP_PASS` (2): to the kernel's stack.
    Pass = 2,
    /// `XDP_TX` (3).
    Tx = 3,
    /// `XDP_REDIRECT` (4).
    Redirect = 4,
}

impl XdpAction {
    /// The action for a raw return value, if it is one.
    pub fn from_raw(v: u32) -> Option<XdpAction> {
        Some(match v {
            0 => XdpAction::Aborted,
            1 => XdpAction::Drop,
            2 => XdpAction::Pass,
            3 => XdpAction::Tx,
            4 => XdpAction::Redirect,
            _ => return None,
        })
    }
}

/// Flow types of a steering rule (the daemon's `[[steering]]` flow names plus IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// `udp4`.
    Udp4,
    /// `tcp4`.
    Tcp4,
    /// `sctp4`.
    Sctp4,
    /// `ip4`: any IPv4 packet, or only protocol `proto` if given (ports allowed only for 6, 17
    /// and 132).
    Ip4 {
        /// IP protocol, or any.
        proto: Option<u8>,
    },
    /// `udp6`.
    Udp6,
    /// `tcp6`.
    Tcp6,
    /// `ip6`: any IPv6 packet, or only next header `proto` if given.
    Ip6 {
        /// Next header, or any.
        proto: Option<u8>,
    },
}

impl Flow {
    fn is_v6(self) -> bool {
        matches!(self, Flow::Udp6 | Flow::Tcp6 | Flow::Ip6 { .. })
    }
    fn proto(self) -> Option<u8> {
        match self {
            Flow::Udp4 | Flow::Udp6 => Some(17),
            Flow::Tcp4 | Flow::Tcp6 => Some(6),
            Flow::Sctp4 => Some(132),
            Flow::Ip4 { proto } | Flow::Ip6 { proto } => proto,
        }
    }
    fn ports_allowed(self) -> bool {
        matches!(self.proto(), Some(6 | 17 | 132))
    }
}

/// An address and its mask; a zero mask matches any address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrMatch {
    /// IPv4 address and mask.
    V4(Ipv4Addr, Ipv4Addr),
    /// IPv6 address and mask.
    V6(Ipv6Addr, Ipv6Addr),
}

impl AddrMatch {
    /// `addr/prefix` for IPv4 (prefix 0..=32).
    pub fn v4_prefix(addr: Ipv4Addr, prefix: u8) -> AddrMatch {
        let m = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix.min(32) as u32)
        };
        AddrMatch::V4(addr, Ipv4Addr::from(m))
    }
    /// `addr/prefix` for IPv6 (prefix 0..=128).
    pub fn v6_prefix(addr: Ipv6Addr, prefix: u8) -> AddrMatch {
        let m = if prefix == 0 {
            0
        } else {
            u128::MAX << (128 - prefix.min(128) as u32)
        };
        AddrMatch::V6(addr, Ipv6Addr::from(m))
    }
    fn bytes(&self) -> (Vec<u8>, Vec<u8>) {
        match self {
            AddrMatch::V4(a, m) => (a.octets().to_vec(), m.octets().to_vec()),
            AddrMatch::V6(a, m) => (a.octets().to_vec(), m.octets().to_vec()),
        }
    }
}

/// A steering rule: the frames it matches are redirected to the AF_XDP socket of their queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpRule {
    /// Name used in messages, if any.
    pub name: Option<String>,
    /// Flow type.
    pub flow: Flow,
    /// Source address under mask, if matched.
    pub src: Option<AddrMatch>,
    /// Destination address under mask, if matched.
    pub dst: Option<AddrMatch>,
    /// Source port and mask (host order), if matched.
    pub src_port: Option<(u16, u16)>,
    /// Destination port and mask (host order), if matched.
    pub dst_port: Option<(u16, u16)>,
}

impl XdpRule {
    /// A rule matching every packet of `flow`.
    pub fn new(flow: Flow) -> XdpRule {
        XdpRule {
            name: None,
            flow,
            src: None,
            dst: None,
            src_port: None,
            dst_port: None,
        }
    }

    /// Matches destination port `port` exactly.
    pub fn dst_port(mut self, port: u16) -> XdpRule {
        self.dst_port = Some((port, 0xffff));
        self
    }

    /// Matches source port `port` exactly.
    pub fn src_port(mut self, port: u16) -> XdpRule {
        self.src_port = Some((port, 0xffff));
        self
    }

    /// Matches the source address under a mask.
    pub fn src(mut self, m: AddrMatch) -> XdpRule {
        self.src = Some(m);
        self
    }

    /// Matches the destination address under a mask.
    pub fn dst(mut self, m: AddrMatch) -> XdpRule {
        self.dst = Some(m);
        self
    }

    fn label(&self, i: usize) -> String {
        match &self.name {
            Some(n) => format!("rule {i} ({n})"),
            None => format!("rule {i}"),
        }
    }

    /// Checks the rule is consistent: address families match the flow, ports only for flows
    /// with ports.
    pub fn validate(&self, index: usize) -> Result<(), RuleError> {
        for a in [self.src, self.dst].into_iter().flatten() {
            if matches!(a, AddrMatch::V6(..)) != self.flow.is_v6() {
                return Err(RuleError {
                    rule: self.label(index),
                    why: "address family does not match the flow type".into(),
                });
            }
        }
        if (self.src_port.is_some() || self.dst_port.is_some()) && !self.flow.ports_allowed() {
            return Err(RuleError {
                rule: self.label(index),
                why: "ports need a flow with ports (udp, tcp, sctp, or ip with proto 6/17/132)"
                    .into(),
            });
        }
        Ok(())
    }
}

/// A rule the generator refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("steering {rule}: {why}")]
pub struct RuleError {
    /// Which rule (index and name).
    pub rule: String,
    /// Why.
    pub why: String,
}

/// Options of [`generate`].
#[derive(Debug, Clone, Copy)]
pub struct GenOptions<'a> {
    /// Action when a rule matches but the queue has no socket in the XSKMAP (the `flags`
    /// argument of `bpf_redirect_map`). `XDP_PASS` in production: a frame steered to a queue
    /// nobody listens on goes to the kernel instead of vanishing.
    pub redirect_miss: XdpAction,
    /// Per-verdict counters: a `BPF_MAP_TYPE_PERCPU_ARRAY` with key `u32`, value `u64` and
    /// at least 2 entries (see [`counters_map`]); the program adds 1 to entry
    /// [`COUNTER_PASSED`] for every frame it passes to the kernel and to [`COUNTER_STEERED`]
    /// for every frame a rule matched. `None`: no counting.
    pub counters: Option<BorrowedFd<'a>>,
}

impl Default for GenOptions<'_> {
    fn default() -> Self {
        GenOptions {
            redirect_miss: XdpAction::Pass,
            counters: None,
        }
    }
}

/// Counter entry: frames no rule matched (passed to the kernel).
pub const COUNTER_PASSED: u32 = 0;
/// Counter entry: frames a rule matched (redirected to the queue's socket; a frame the socket
/// could not take is counted here and in the socket's `rx_dropped`).
pub const COUNTER_STEERED: u32 = 1;

/// Creates a counters map for [`GenOptions::counters`].
pub fn counters_map(name: &str) -> Result<crate::bpf::Map, crate::bpf::BpfError> {
    crate::bpf::Map::create(crate::bpf::MapType::PercpuArray, name, 4, 8, 2)
}

/// Reads a counters map: `[passed, steered]`, summed over CPUs.
pub fn read_counters(map: &crate::bpf::Map) -> Result<[u64; 2], crate::bpf::BpfError> {
    let mut out = [0u64; 2];
    for (k, slot) in out.iter_mut().enumerate() {
        if let Some(v) = map.lookup(&(k as u32).to_ne_bytes())? {
            *slot = v
                .chunks_exact(8)
                .map(|c| u64::from_ne_bytes(c.try_into().expect("8-byte chunk")))
                .sum();
        }
    }
    Ok(out)
}

/// Adds 1 to the per-CPU counter `key` of `map` (clobbers r0-r5).
fn emit_count(a: &mut Asm, map: BorrowedFd<'_>, key: u32) {
    let skip = a.label();
    // *(u32 *)(r10 - 4) = key; r2 = r10 - 4; r0 = bpf_map_lookup_elem(map, r2)
    a.emit(Insn::st_w(10, -4, key as i32));
    a.emit(Insn::mov64_reg(2, 10));
    a.emit(Insn::add64_imm(2, -4));
    for i in Insn::ld_map_fd(1, map.as_raw_fd()) {
        a.emit(i);
    }
    a.emit(Insn::call(BPF_FUNC_MAP_LOOKUP_ELEM));
    a.jump(Insn::jmp_imm(Cond::Eq, 0, 0, 0), skip);
    // Per-CPU value: a plain read-modify-write is race-free.
    a.emit(Insn::ldx_dw(1, 0, 0));
    a.emit(Insn::add64_imm(1, 1));
    a.emit(Insn::stx_dw(0, 0, 1));
    a.bind(skip);
}

/// Jump targets inside the program being assembled.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Label(usize);

/// A tiny assembler: instructions plus forward jumps to labels, resolved at the end.
struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    fn new() -> Asm {
        Asm {
            insns: Vec::new(),
            labels: Vec::new(),
            fixups: Vec::new(),
        }
    }
    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }
    fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.insns.len());
    }
    fn emit(&mut self, i: Insn) {
        self.insns.push(i);
    }
    /// Emits a jump instruction whose offset will point at `l`.
    fn jump(&mut self, i: Insn, l: Label) {
        self.fixups.push((self.insns.len(), l));
        self.insns.push(i);
    }
    fn finish(mut self) -> Result<Vec<Insn>, RuleError> {
        for (at, l) in self.fixups {
            let target = self.labels[l.0].expect("every label used is bound");
            let off = target as i64 - (at as i64 + 1);
            self.insns[at].off = i16::try_from(off).map_err(|_| RuleError {
                rule: "program".into(),
                why: format!("jump of {off} instructions does not fit the 16-bit offset"),
            })?;
        }
        Ok(self.insns)
    }
}

// Register roles in the generated program.
const R_CTX: Reg = 6; // struct xdp_md *
const R_END: Reg = 3; // data_end
const R_DATA: Reg = 2; // data
const R_L3: Reg = 7; // start of the IP header
const R_L4: Reg = 8; // start of the L4 header (bounds-checked per rule)
const R_PROTO: Reg = 9; // Ethernet type, then IP protocol / next header
const R_FRAG: Reg = 5; // non-zero: not the first fragment (no L4 header)
const R_TMP: Reg = 4;

/// A 16-bit field in network order as a little-endian load sees it.
fn be16(v: u16) -> i32 {
    u16::from_le_bytes(v.to_be_bytes()) as i32
}

/// Four bytes in network order as a little-endian 32-bit load sees them.
fn word(b: &[u8]) -> i32 {
    i32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Generates the steering program for `rules`, redirecting matches through `xskmap` (an
/// XSKMAP's fd, see [`crate::bpf::Map::xskmap`]). With no rules the program passes everything.
pub fn generate(
    rules: &[XdpRule],
    xskmap: BorrowedFd<'_>,
    opts: GenOptions<'_>,
) -> Result<Vec<Insn>, RuleError> {
    for (i, r) in rules.iter().enumerate() {
        r.validate(i)?;
    }
    let mut a = Asm::new();
    let pass = a.label();
    let redirect = a.label();
    let v4 = a.label();
    let v6 = a.label();
    let no_vlan = a.label();

    // Prologue: ctx, data, data_end, Ethernet type (struct xdp_md: data @0, data_end @4).
    a.emit(Insn::mov64_reg(R_CTX, 1));
    a.emit(Insn::ldx(Size::W, R_DATA, 1, 0));
    a.emit(Insn::ldx(Size::W, R_END, 1, 4));
    a.emit(Insn::mov64_reg(R_TMP, R_DATA));
    a.emit(Insn::add64_imm(R_TMP, 14));
    a.jump(Insn::jmp_reg(Cond::Gt, R_TMP, R_END, 0), pass);
    a.emit(Insn::ldx(Size::H, R_PROTO, R_DATA, 12));
    a.emit(Insn::mov64_reg(R_L3, R_DATA));
    a.emit(Insn::add64_imm(R_L3, 14));
    a.jump(Insn::jmp_imm(Cond::Ne, R_PROTO, be16(0x8100), 0), no_vlan);
    a.emit(Insn::mov64_reg(R_TMP, R_DATA));
    a.emit(Insn::add64_imm(R_TMP, 18));
    a.jump(Insn::jmp_reg(Cond::Gt, R_TMP, R_END, 0), pass);
    a.emit(Insn::ldx(Size::H, R_PROTO, R_DATA, 16));
    a.emit(Insn::mov64_reg(R_L3, R_DATA));
    a.emit(Insn::add64_imm(R_L3, 18));
    a.bind(no_vlan);
    let have_v4 = rules.iter().any(|r| !r.flow.is_v6());
    let have_v6 = rules.iter().any(|r| r.flow.is_v6());
    if have_v4 {
        a.jump(Insn::jmp_imm(Cond::Eq, R_PROTO, be16(0x0800), 0), v4);
    }
    if have_v6 {
        a.jump(Insn::jmp_imm(Cond::Eq, R_PROTO, be16(0x86dd), 0), v6);
    }
    a.jump(Insn::ja(0), pass);

    if have_v4 {
        a.bind(v4);
        // Fixed IPv4 header in the frame?
        a.emit(Insn::mov64_reg(R_TMP, R_L3));
        a.emit(Insn::add64_imm(R_TMP, 20));
        a.jump(Insn::jmp_reg(Cond::Gt, R_TMP, R_END, 0), pass);
        a.emit(Insn::ldx(Size::B, R_PROTO, R_L3, 9));
        // Fragment offset (13 bits after the flags, bytes 6-7): non-zero means no L4 header.
        a.emit(Insn::ldx(Size::H, R_FRAG, R_L3, 6));
        a.emit(Insn::and32_imm(R_FRAG, be16(0x1fff)));
        // L4 = L3 + IHL * 4; an IHL below 5 is malformed: such a frame goes to the kernel.
        a.emit(Insn::ldx(Size::B, R_TMP, R_L3, 0));
        a.emit(Insn::and32_imm(R_TMP, 0x0f));
        let ihl_ok = a.label();
        a.jump(Insn::jmp_imm(Cond::Gt, R_TMP, 4, 0), ihl_ok);
        a.jump(Insn::ja(0), pass);
        a.bind(ihl_ok);
        a.emit(Insn::lsh64_imm(R_TMP, 2));
        a.emit(Insn::mov64_reg(R_L4, R_L3));
        a.emit(Insn::add64_reg(R_L4, R_TMP));
        for (i, r) in rules.iter().enumerate().filter(|(_, r)| !r.flow.is_v6()) {
            emit_rule(&mut a, r, i, 12, 16, redirect);
        }
        a.jump(Insn::ja(0), pass);
    }
    if have_v6 {
        a.bind(v6);
        a.emit(Insn::mov64_reg(R_TMP, R_L3));
        a.emit(Insn::add64_imm(R_TMP, 40));
        a.jump(Insn::jmp_reg(Cond::Gt, R_TMP, R_END, 0), pass);
        a.emit(Insn::ldx(Size::B, R_PROTO, R_L3, 6));
        a.emit(Insn::mov64_imm(R_FRAG, 0));
        a.emit(Insn::mov64_reg(R_L4, R_L3));
        a.emit(Insn::add64_imm(R_L4, 40));
        for (i, r) in rules.iter().enumerate().filter(|(_, r)| r.flow.is_v6()) {
            emit_rule(&mut a, r, i, 8, 24, redirect);
        }
        a.jump(Insn::ja(0), pass);
    }

    // Match: bpf_redirect_map(&xsks, ctx->rx_queue_index, miss). struct xdp_md:
    // rx_queue_index @16.
    // (Without rules this block would be unreachable, which the verifier refuses.)
    if !rules.is_empty() {
        a.bind(redirect);
        if let Some(c) = opts.counters {
            emit_count(&mut a, c, COUNTER_STEERED);
        }
        a.emit(Insn::ldx(Size::W, 2, R_CTX, 16));
        for i in Insn::ld_map_fd(1, xskmap.as_raw_fd()) {
            a.emit(i);
        }
        a.emit(Insn::mov64_imm(3, opts.redirect_miss as i32));
        a.emit(Insn::call(BPF_FUNC_REDIRECT_MAP));
        a.emit(Insn::exit());
    }

    a.bind(pass);
    if let Some(c) = opts.counters {
        emit_count(&mut a, c, COUNTER_PASSED);
    }
    a.emit(Insn::mov64_imm(0, XdpAction::Pass as i32));
    a.emit(Insn::exit());
    a.finish()
}

/// One rule's tests; falls through to the next rule on mismatch, jumps to `matched` on match.
/// `src_off`/`dst_off`: offsets of the addresses in the IP header.
fn emit_rule(a: &mut Asm, r: &XdpRule, _index: usize, src_off: i16, dst_off: i16, matched: Label) {
    let next = a.label();
    if let Some(p) = r.flow.proto() {
        a.jump(Insn::jmp_imm(Cond::Ne, R_PROTO, p as i32, 0), next);
    }
    for (m, off) in [(r.src, src_off), (r.dst, dst_off)] {
        let Some(m) = m else { continue };
        let (addr, mask) = m.bytes();
        for w in 0..addr.len() / 4 {
            let mw = word(&mask[w * 4..]);
            if mw == 0 {
                continue;
            }
            let want: Vec<u8> = addr[w * 4..w * 4 + 4]
                .iter()
                .zip(&mask[w * 4..w * 4 + 4])
                .map(|(a, m)| a & m)
                .collect();
            a.emit(Insn::ldx(Size::W, R_TMP, R_L3, off + 4 * w as i16));
            if mw != -1 {
                a.emit(Insn::and32_imm(R_TMP, mw));
            }
            a.jump(Insn::jmp32_imm(Cond::Ne, R_TMP, word(&want), 0), next);
        }
    }
    let ports: Vec<(i16, u16, u16)> = [(0i16, r.src_port), (2, r.dst_port)]
        .into_iter()
        .filter_map(|(o, p)| p.filter(|&(_, m)| m != 0).map(|(v, m)| (o, v, m)))
        .collect();
    if !ports.is_empty() {
        a.jump(Insn::jmp_imm(Cond::Ne, R_FRAG, 0, 0), next);
        a.emit(Insn::mov64_reg(R_TMP, R_L4));
        a.emit(Insn::add64_imm(R_TMP, 4));
        a.jump(Insn::jmp_reg(Cond::Gt, R_TMP, R_END, 0), next);
        for (off, v, m) in ports {
            a.emit(Insn::ldx(Size::H, R_TMP, R_L4, off));
            if m != 0xffff {
                a.emit(Insn::and32_imm(R_TMP, be16(m)));
            }
            a.jump(Insn::jmp_imm(Cond::Ne, R_TMP, be16(v & m), 0), next);
        }
    }
    a.jump(Insn::ja(0), matched);
    a.bind(next);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_registers_and_opcodes() {
        let i = Insn::ldx(Size::H, 9, 2, 12);
        assert_eq!((i.code, i.regs, i.off), (0x69, 0x29, 12));
        assert_eq!(Insn::exit().code, 0x95);
        assert_eq!(Insn::call(51).code, 0x85);
        let [lo, hi] = Insn::ld_map_fd(1, 7);
        assert_eq!((lo.code, lo.regs, lo.imm), (0x18, 0x11, 7));
        assert_eq!(hi, insn(0, 0, 0, 0, 0));
        assert_eq!(Insn::jmp32_imm(Cond::Ne, 4, 5, 3).code, 0x56);
        assert_eq!(Insn::st_w(10, -4, 1).code, 0x62);
        assert_eq!(Insn::stx_dw(0, 0, 1).code, 0x7b);
        assert_eq!(Insn::ldx_dw(1, 0, 0).code, 0x79);
    }

    #[test]
    fn network_order_constants() {
        // 0x0800 on the wire is bytes 08 00; a little-endian load reads 0x0008.
        assert_eq!(be16(0x0800), 0x0008);
        assert_eq!(word(&[10, 0, 0, 1]), 0x0100_000a);
    }

    #[test]
    fn prefixes() {
        assert_eq!(
            AddrMatch::v4_prefix(Ipv4Addr::new(10, 1, 2, 3), 8),
            AddrMatch::V4(Ipv4Addr::new(10, 1, 2, 3), Ipv4Addr::new(255, 0, 0, 0))
        );
        assert_eq!(
            AddrMatch::v4_prefix(Ipv4Addr::new(10, 1, 2, 3), 0),
            AddrMatch::V4(Ipv4Addr::new(10, 1, 2, 3), Ipv4Addr::UNSPECIFIED)
        );
        let AddrMatch::V6(_, m) = AddrMatch::v6_prefix(Ipv6Addr::LOCALHOST, 64) else {
            panic!()
        };
        assert_eq!(m, "ffff:ffff:ffff:ffff::".parse::<Ipv6Addr>().unwrap());
    }

    #[test]
    fn refuses_inconsistent_rules() {
        let r = XdpRule::new(Flow::Ip4 { proto: None }).dst_port(53);
        assert!(r.validate(0).unwrap_err().to_string().contains("ports"));
        let r = XdpRule::new(Flow::Udp4).dst(AddrMatch::v6_prefix(Ipv6Addr::LOCALHOST, 128));
        assert!(r.validate(3).unwrap_err().to_string().contains("rule 3"));
        assert!(XdpRule::new(Flow::Ip4 { proto: Some(17) })
            .dst_port(53)
            .validate(0)
            .is_ok());
    }
}
