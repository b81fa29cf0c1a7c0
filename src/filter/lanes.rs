//! The burst classifier: rules evaluated a column at a time over up to [`LANES`] frames.
//!
//! A burst is parsed once into columns (family, protocol, ports, IPv4 addresses, lengths,
//! header offsets; IPv6 addresses beside them), and then each rule, in order, is evaluated over
//! all frames still undecided at once: every condition turns the columns into a bit mask (bit
//! `i` for frame `i`), the rule's mask is the AND of its conditions', and the frames in it are
//! decided by that rule and leave the live mask. First match wins exactly as frame by frame:
//! a frame is offered to rule `r` only if no earlier terminal rule took it.
//!
//! The cheap conditions (protocol, port ranges, length ranges, small IPv4 prefix sets) are
//! straight loops over fixed-size columns that the compiler turns into vector compares; the
//! others (large prefix sets, IPv6 prefixes, byte matches, BPF) run per frame, only for the
//! frames still in the rule's mask. Counters are added per rule and burst (a population count),
//! not per frame.

use std::sync::Arc;

use super::colcmp::{eq_u8, in_ranges, in_ranges16, Ranges};
use super::matcher::{CidrSet, Matcher, PortSet, ProtoSet};
use super::parse::{Parsed, PlainV4, L3, PROTO_SCTP, PROTO_TCP, PROTO_UDP};
use super::program::Masked;
use super::{RateKey, Rule};
use crate::bpf::CompiledBpf;

/// Frames per column chunk (one bit each in a `u32` mask).
pub(crate) const LANES: usize = 32;

/// Transport-offset column value of a frame without a transport header.
const NO_L4: u32 = u32::MAX;
/// Family column values: IPv4, IPv4 parsed on the straight path (headers at 14 and 34, the
/// offset columns not written), IPv6.
const FAM_V4: u8 = 4;
const FAM_V4_PLAIN: u8 = 5;
const FAM_V6: u8 = 6;

/// Most ranges a port, length or IPv4 prefix condition is evaluated with vector compares;
/// beyond it, per frame.
const MAX_VECTOR_RANGES: usize = 8;

/// One chunk of parsed frames, column by column. Lanes past the chunk's length hold stale
/// values; the masks the caller passes keep them out.
#[derive(Clone)]
pub(crate) struct Lanes {
    fam: [u8; LANES],
    proto: [u8; LANES],
    sport: [u16; LANES],
    dport: [u16; LANES],
    src4: [u32; LANES],
    dst4: [u32; LANES],
    len: [u32; LANES],
    l3_off: [u16; LANES],
    l4_off: [u32; LANES],
    src6: [u128; LANES],
    dst6: [u128; LANES],
    /// Lanes holding IPv4 and IPv6 frames, those on the straight path, and those with ports
    /// (set by [`Lanes::seal`]).
    v4: u32,
    v6: u32,
    plain: u32,
    ported: u32,
    /// Lanes written by [`Lanes::set`] that have ports (since [`Lanes::begin`]).
    set_ported: u32,
}

impl Lanes {
    /// Empty columns, boxed (about 1.5 KB).
    pub(crate) fn boxed() -> Box<Lanes> {
        Box::new(Lanes {
            fam: [0; LANES],
            proto: [0; LANES],
            sport: [0; LANES],
            dport: [0; LANES],
            src4: [0; LANES],
            dst4: [0; LANES],
            len: [0; LANES],
            l3_off: [0; LANES],
            l4_off: [NO_L4; LANES],
            src6: [0; LANES],
            dst6: [0; LANES],
            v4: 0,
            v6: 0,
            plain: 0,
            ported: 0,
            set_ported: 0,
        })
    }

    /// Starts a chunk (what [`Lanes::load`] does first).
    #[cfg(test)]
    fn begin(&mut self) {
        self.set_ported = 0;
    }

    /// Writes frame `i`'s parse and wire length into the columns.
    #[inline(always)]
    pub(crate) fn set(&mut self, i: usize, p: &Parsed, wire_len: u32) {
        let i = i & (LANES - 1);
        let (fam, s4, d4) = match p.l3 {
            L3::None => (0, 0, 0),
            L3::V4 { src, dst } => (FAM_V4, src, dst),
            L3::V6 { src, dst } => {
                self.src6[i] = src;
                self.dst6[i] = dst;
                (FAM_V6, 0, 0)
            }
        };
        self.fam[i] = fam;
        self.src4[i] = s4;
        self.dst4[i] = d4;
        self.proto[i] = p.proto;
        let (sp, dp) = p.ports.unwrap_or((0, 0));
        self.set_ported |= u32::from(p.ports.is_some()) << i;
        self.sport[i] = sp;
        self.dport[i] = dp;
        self.l3_off[i] = p.l3_off;
        self.l4_off[i] = p.l4_off.map_or(NO_L4, u32::from);
        self.len[i] = wire_len;
    }

    /// Parses `frame` into lane `i`: the same answer as [`Parsed::parse`] and
    /// [`Lanes::set`], with the common case written straight into the columns.
    #[inline(always)]
    pub(crate) fn fill(&mut self, i: usize, frame: &[u8], wire_len: u32) {
        let Some(v) = PlainV4::read(frame) else {
            self.fill_walked(i, frame, wire_len);
            return;
        };
        // The straight path: the family value says so, which ports count and the header
        // offsets (14 and 34) follow in `seal` and `parsed`, not per frame.
        let i = i & (LANES - 1);
        self.fam[i] = FAM_V4_PLAIN;
        self.src4[i] = v.src;
        self.dst4[i] = v.dst;
        self.proto[i] = v.proto;
        self.sport[i] = v.sport;
        self.dport[i] = v.dport;
        self.len[i] = wire_len;
    }

    /// [`Lanes::fill`] for the four frames at `at..at + 4` into lanes `j..j + 4` at once, when
    /// all four are on the straight path (otherwise nothing is written and the caller fills
    /// them one by one). Adds their lengths to `bytes`.
    ///
    /// Each frame's bytes 12..28 and 22..38 are loaded as two 16-byte words; the four frames'
    /// words are transposed so that one vector holds one header field of all four (EtherType
    /// and version, fragment field and protocol, source, destination, ports), checked as
    /// [`PlainV4::read`] checks one frame, byte-swapped and stored lane by lane in four.
    #[cfg(all(target_arch = "x86_64", target_feature = "ssse3"))]
    #[inline(always)]
    fn fill4<B: BurstFrames + ?Sized>(
        &mut self,
        j: usize,
        frames: &B,
        at: usize,
        bytes: &mut u64,
    ) -> bool {
        use std::arch::x86_64::*;
        let f = frames.frames4(at);
        if f.iter().any(|f| f.len() < 38) || j + 4 > LANES {
            return false;
        }
        // SAFETY: SSE2 and SSSE3 are enabled (cfg above). Every frame has at least 38 bytes,
        // so the loads of bytes 12..28 and 22..38 stay inside it; the stores go to lanes
        // j..j + 4 of the columns (j + 4 <= LANES, checked above).
        unsafe {
            let lo = |k: usize| _mm_loadu_si128(f[k].as_ptr().add(12).cast());
            let hi = |k: usize| _mm_loadu_si128(f[k].as_ptr().add(22).cast());
            let (a0, a1, a2, a3) = (lo(0), lo(1), lo(2), lo(3));
            // Dword 0 of the low word: bytes 12..16 (EtherType, version/IHL, DSCP); dword 2:
            // bytes 20..24 (flags/fragment offset, TTL, protocol).
            let (t0, t1) = (_mm_unpacklo_epi32(a0, a1), _mm_unpacklo_epi32(a2, a3));
            let tag = _mm_unpacklo_epi64(t0, t1);
            let (u0, u1) = (_mm_unpackhi_epi32(a0, a1), _mm_unpackhi_epi32(a2, a3));
            let frag_proto = _mm_unpacklo_epi64(u0, u1);
            let ok = _mm_and_si128(
                _mm_cmpeq_epi32(
                    _mm_and_si128(tag, _mm_set1_epi32(0x00ff_ffff)),
                    _mm_set1_epi32(0x0045_0008),
                ),
                _mm_cmpeq_epi32(
                    _mm_and_si128(frag_proto, _mm_set1_epi32(0xff1f)),
                    _mm_setzero_si128(),
                ),
            );
            if _mm_movemask_ps(_mm_castsi128_ps(ok)) != 0xf {
                return false;
            }
            let (b0, b1, b2, b3) = (hi(0), hi(1), hi(2), hi(3));
            // Dwords 1, 2, 3 of the high word: source (26..30), destination (30..34), ports
            // (34..38), all big-endian.
            let (v0, v1) = (_mm_unpacklo_epi32(b0, b1), _mm_unpacklo_epi32(b2, b3));
            let src = _mm_unpackhi_epi64(v0, v1);
            let (w0, w1) = (_mm_unpackhi_epi32(b0, b1), _mm_unpackhi_epi32(b2, b3));
            let dst = _mm_unpacklo_epi64(w0, w1);
            let ports = _mm_unpackhi_epi64(w0, w1);
            let swap32 = _mm_setr_epi8(3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12);
            _mm_storeu_si128(
                self.src4[j..j + 4].as_mut_ptr().cast(),
                _mm_shuffle_epi8(src, swap32),
            );
            _mm_storeu_si128(
                self.dst4[j..j + 4].as_mut_ptr().cast(),
                _mm_shuffle_epi8(dst, swap32),
            );
            // Source ports to the low half, destination ports to the high half, each swapped.
            let split = _mm_setr_epi8(1, 0, 5, 4, 9, 8, 13, 12, 3, 2, 7, 6, 11, 10, 15, 14);
            let p = _mm_shuffle_epi8(ports, split);
            _mm_storel_epi64(self.sport[j..j + 4].as_mut_ptr().cast(), p);
            _mm_storel_epi64(
                self.dport[j..j + 4].as_mut_ptr().cast(),
                _mm_unpackhi_epi64(p, p),
            );
            // The protocol is byte 3 of each fragment/protocol dword.
            let pick = _mm_setr_epi8(3, 7, 11, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
            let protos = _mm_cvtsi128_si32(_mm_shuffle_epi8(frag_proto, pick)) as u32;
            self.proto[j..j + 4].copy_from_slice(&protos.to_le_bytes());
        }
        self.fam[j..j + 4].copy_from_slice(&[FAM_V4_PLAIN; 4]);
        for (k, f) in f.iter().enumerate() {
            let len = f.len() as u32;
            *bytes += u64::from(len);
            self.len[j + k] = len;
        }
        true
    }

    /// Without SSSE3 the caller fills lanes one by one.
    #[cfg(not(all(target_arch = "x86_64", target_feature = "ssse3")))]
    #[inline(always)]
    fn fill4<B: BurstFrames + ?Sized>(&mut self, _: usize, _: &B, _: usize, _: &mut u64) -> bool {
        false
    }

    /// [`Lanes::fill`] off the straight path (kept out of line, so that the straight path's
    /// loop stays small).
    #[inline(never)]
    fn fill_walked(&mut self, i: usize, frame: &[u8], wire_len: u32) {
        self.set(i, &Parsed::walk(frame), wire_len);
    }

    /// Parses the frames of `frames` at `at + i` for every lane `i` of `lanes_in` into the
    /// columns (or takes their parse from [`BurstFrames::parsed`]); with `parse` false, only
    /// their lengths (the rules read no headers). Returns the sum of their lengths.
    #[inline(always)]
    pub(crate) fn load<B: BurstFrames + ?Sized>(
        &mut self,
        frames: &B,
        at: usize,
        lanes_in: u32,
        parse: bool,
    ) -> u64 {
        self.set_ported = 0;
        let mut bytes = 0u64;
        if !parse {
            // No rule reads a header: only the lengths count, every frame is "not IP".
            each(lanes_in, |j| {
                let len = frames.frame(at + j).len() as u32;
                bytes += u64::from(len);
                self.len[j & (LANES - 1)] = len;
                self.fam[j & (LANES - 1)] = 0;
                self.l3_off[j & (LANES - 1)] = Parsed::NOT_IP.l3_off;
                self.l4_off[j & (LANES - 1)] = NO_L4;
            });
        } else {
            let one = |l: &mut Lanes, bytes: &mut u64, j: usize| {
                let f = frames.frame(at + j);
                let len = f.len() as u32;
                *bytes += u64::from(len);
                match frames.parsed(at + j) {
                    Some(p) => l.set(j, &p, len),
                    None => l.fill(j, f, len),
                }
            };
            if lanes_in == u32::MAX && frames.count() >= at + LANES {
                // A full chunk with nothing skipped (the common case under a flood): a plain
                // count instead of walking the bits, four frames at once where all four are
                // on the straight path.
                for g in 0..LANES / 4 {
                    let j = 4 * g;
                    if B::PARSED || !self.fill4(j, frames, at + j, &mut bytes) {
                        for k in j..j + 4 {
                            one(self, &mut bytes, k);
                        }
                    }
                }
            } else {
                each(lanes_in, |j| one(self, &mut bytes, j));
            }
        }
        self.seal();
        bytes
    }

    /// Finishes a chunk after its lanes were [set](Lanes::set).
    #[inline(always)]
    pub(crate) fn seal(&mut self) {
        self.plain = eq_u8(&self.fam, FAM_V4_PLAIN);
        self.v4 = eq_u8(&self.fam, FAM_V4) | self.plain;
        self.v6 = eq_u8(&self.fam, FAM_V6);
        let ported = eq_u8(&self.proto, PROTO_TCP)
            | eq_u8(&self.proto, PROTO_UDP)
            | eq_u8(&self.proto, PROTO_SCTP);
        self.ported = (self.plain & ported) | (self.set_ported & !self.plain);
    }

    /// Network and transport header offsets of lane `i`.
    #[inline(always)]
    fn offsets(&self, i: usize) -> (u16, Option<u16>) {
        let i = i & (LANES - 1);
        if self.plain >> i & 1 != 0 {
            (14, Some(34))
        } else {
            (self.l3_off[i], u16::try_from(self.l4_off[i]).ok())
        }
    }

    /// The lanes of the chosen families.
    #[inline(always)]
    fn families(&self, v4: bool, v6: bool) -> u32 {
        (self.v4 & 0u32.wrapping_sub(u32::from(v4))) | (self.v6 & 0u32.wrapping_sub(u32::from(v6)))
    }

    /// The parse of lane `i`, as [`Parsed::parse`] gave it.
    #[inline]
    pub(crate) fn parsed(&self, i: usize) -> Parsed {
        let i = i & (LANES - 1);
        let (l3_off, l4_off) = self.offsets(i);
        Parsed {
            l3_off,
            l4_off,
            l3: match self.fam[i] {
                FAM_V4 | FAM_V4_PLAIN => L3::V4 {
                    src: self.src4[i],
                    dst: self.dst4[i],
                },
                FAM_V6 => L3::V6 {
                    src: self.src6[i],
                    dst: self.dst6[i],
                },
                _ => L3::None,
            },
            proto: self.proto[i],
            ports: (self.ported >> i & 1 != 0).then_some((self.sport[i], self.dport[i])),
        }
    }

    /// The rate-limit key of lane `i`, from its parse.
    #[inline(always)]
    pub(crate) fn rate_key(&self, key: &RateKey, i: usize) -> u64 {
        key.key(&self.parsed(i & (LANES - 1)))
    }

    /// The lanes holding IPv4 frames.
    #[inline(always)]
    pub(crate) fn v4(&self) -> u32 {
        self.v4
    }

    /// The IPv4 source of lane `i` (meaningful in the [`Lanes::v4`] lanes).
    #[inline(always)]
    pub(crate) fn src4(&self, i: usize) -> u32 {
        self.src4[i & (LANES - 1)]
    }

    /// The IPv4 source column (meaningful in the [`Lanes::v4`] lanes).
    #[inline(always)]
    pub(crate) fn src4_col(&self) -> &[u32; LANES] {
        &self.src4
    }

    /// Wire length of lane `i`.
    #[inline(always)]
    pub(crate) fn wire_len(&self, i: usize) -> u32 {
        self.len[i & (LANES - 1)]
    }

    /// Sum of the wire lengths of the lanes in `m`, a subset of `live` whose lengths sum to
    /// `live_bytes`: counted over `m` or over the rest of `live`, whichever has fewer lanes.
    #[inline(always)]
    pub(crate) fn bytes(&self, m: u32, live: u32, live_bytes: u64) -> u64 {
        let sum = |m: u32| {
            let mut s = 0u64;
            each(m, |i| s += u64::from(self.wire_len(i)));
            s
        };
        let rest = live & !m;
        if rest.count_ones() < m.count_ones() {
            live_bytes - sum(rest)
        } else {
            sum(m)
        }
    }
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes").finish_non_exhaustive()
    }
}

/// Calls `f` for every lane in `m`, lowest first (frame order).
#[inline(always)]
pub(crate) fn each(mut m: u32, mut f: impl FnMut(usize)) {
    while m != 0 {
        f(m.trailing_zeros() as usize);
        m &= m - 1;
    }
}

/// The lanes in `m` where `f` holds, tested one by one.
#[inline(always)]
fn filter(m: u32, mut f: impl FnMut(usize) -> bool) -> u32 {
    let mut out = 0;
    each(m, |i| out |= u32::from(f(i)) << i);
    out
}

/// [`Cond::Proto`] over the whole chunk.
#[inline(never)]
fn full_proto(l: &Lanes, v4: bool, v6: bool, proto: u8) -> u32 {
    eq_u8(&l.proto, proto) & l.families(v4, v6)
}

/// [`Cond::Protos`] over the whole chunk.
#[inline(never)]
fn full_protos(l: &Lanes, v4: bool, v6: bool, protos: &[u8]) -> u32 {
    protos.iter().fold(0, |a, &p| a | eq_u8(&l.proto, p)) & l.families(v4, v6)
}

/// [`Cond::PortRanges`] over the whole chunk.
#[inline(never)]
fn full_ports(l: &Lanes, src: bool, ranges: &Ranges<u16>) -> u32 {
    let col = if src { &l.sport } else { &l.dport };
    l.ported & in_ranges16(col, ranges)
}

/// [`Cond::Len`] over the whole chunk.
#[inline(never)]
fn full_len(l: &Lanes, ranges: &Ranges<u32>) -> u32 {
    in_ranges(&l.len, ranges)
}

/// [`Cond::Addr`] over the whole chunk.
#[inline(never)]
fn full_addr(l: &Lanes, src: bool, set: &CidrSet, v4: &Ranges<u32>) -> u32 {
    let (c4, c6) = if src {
        (&l.src4, &l.src6)
    } else {
        (&l.dst4, &l.dst6)
    };
    let hit4 = l.v4 & in_ranges(c4, v4);
    hit4 | filter(l.v6, |i| set.contains_v6(c6[i & (LANES - 1)]))
}

/// One condition of a rule, in the form the columns are tested with.
#[derive(Clone)]
enum Cond {
    /// IP of the given families with protocol `proto`.
    Proto { v4: bool, v6: bool, proto: u8 },
    /// IP of the given families with one of a few protocols.
    Protos {
        v4: bool,
        v6: bool,
        protos: Box<[u8]>,
    },
    /// IP with a protocol in the set (per family).
    ProtoSet(ProtoSet),
    /// IPv4 (`v4`) or IPv6 (`v6`) at all.
    Family { v4: bool, v6: bool },
    /// Source (`src`) or destination port in one of the ranges.
    PortRanges { src: bool, ranges: Ranges<u16> },
    /// Source or destination port in a set too fragmented for ranges.
    PortSet { src: bool, set: PortSet },
    /// Wire length in one of the ranges.
    Len { ranges: Ranges<u32>, vector: bool },
    /// Source or destination address in the set; its IPv4 ranges tested with vector compares
    /// when there are few.
    Addr {
        src: bool,
        vector: bool,
        set: CidrSet,
        /// The set's IPv4 ranges, for the vector compares.
        v4: Ranges<u32>,
    },
    /// Bytes at an offset under a mask.
    Bytes(Masked),
    /// A classic BPF program.
    Bpf(Arc<CompiledBpf>),
}

impl std::fmt::Debug for Cond {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cond::Proto { .. } => "Proto",
            Cond::Protos { .. } => "Protos",
            Cond::ProtoSet(_) => "ProtoSet",
            Cond::Family { .. } => "Family",
            Cond::PortRanges { .. } => "PortRanges",
            Cond::PortSet { .. } => "PortSet",
            Cond::Len { .. } => "Len",
            Cond::Addr { .. } => "Addr",
            Cond::Bytes(_) => "Bytes",
            Cond::Bpf(_) => "Bpf",
        })
    }
}

/// The frames of a burst as the classifier reads them.
pub trait BurstFrames {
    /// Number of frames.
    fn count(&self) -> usize;
    /// Frame `i` (`i < count()`); an index out of range gives an empty frame.
    fn frame(&self, i: usize) -> &[u8];
    /// Its headers, if they were parsed already (for example by the soft-RSS dispatcher);
    /// `None` to have the classifier parse the frame. Must equal [`Parsed::parse`]'s answer.
    #[inline(always)]
    fn parsed(&self, _i: usize) -> Option<Parsed> {
        None
    }
    /// Frames `i..i + 4` (what [`BurstFrames::frame`] gives for each).
    #[inline(always)]
    fn frames4(&self, i: usize) -> [&[u8]; 4] {
        [
            self.frame(i),
            self.frame(i + 1),
            self.frame(i + 2),
            self.frame(i + 3),
        ]
    }
    /// Whether [`BurstFrames::parsed`] may give a parse (then the classifier asks it for every
    /// frame instead of parsing the frames itself).
    const PARSED: bool = false;
}

impl<F: AsRef<[u8]>> BurstFrames for [F] {
    #[inline(always)]
    fn count(&self) -> usize {
        self.len()
    }
    #[inline(always)]
    fn frame(&self, i: usize) -> &[u8] {
        self.get(i).map_or(&[], |f| f.as_ref())
    }
}

impl Cond {
    fn rank(&self) -> u8 {
        match self {
            Cond::Proto { .. } | Cond::Family { .. } | Cond::Protos { .. } => 0,
            Cond::PortRanges { .. } => 1,
            Cond::Len { vector: true, .. } => 2,
            Cond::Addr { vector: true, .. } => 3,
            Cond::ProtoSet(_) | Cond::PortSet { .. } | Cond::Len { .. } => 4,
            Cond::Addr { .. } => 5,
            Cond::Bytes(_) => 6,
            Cond::Bpf(_) => 7,
        }
    }

    fn new(m: &Matcher) -> Cond {
        match m {
            Matcher::Proto(s) => match (s.single(), s.few(4)) {
                (Some(proto), _) => Cond::Proto {
                    v4: true,
                    v6: true,
                    proto,
                },
                (None, Some(protos)) => Cond::Protos {
                    v4: true,
                    v6: true,
                    protos: protos.into(),
                },
                (None, None) => Cond::ProtoSet(s.clone()),
            },
            Matcher::Ipv4(v4) => Cond::Family { v4: *v4, v6: !*v4 },
            Matcher::SrcPort(s) | Matcher::DstPort(s) => {
                let src = matches!(m, Matcher::SrcPort(_));
                match s.as_ranges(MAX_VECTOR_RANGES) {
                    Some(r) => Cond::PortRanges {
                        src,
                        ranges: Ranges::<u16>::new(&r),
                    },
                    None => Cond::PortSet {
                        src,
                        set: s.clone(),
                    },
                }
            }
            Matcher::Len(r) => Cond::Len {
                ranges: Ranges::<u32>::new(r),
                vector: r.len() <= MAX_VECTOR_RANGES,
            },
            Matcher::Src(s) | Matcher::Dst(s) => Cond::Addr {
                src: matches!(m, Matcher::Src(_)),
                vector: s.v4_ranges().len() <= MAX_VECTOR_RANGES,
                set: s.clone(),
                v4: Ranges::<u32>::new(s.v4_ranges()),
            },
            Matcher::Bytes(b) => Cond::Bytes(Masked::new(b)),
            Matcher::Bpf(p) => Cond::Bpf(p.clone()),
        }
    }

    /// For the conditions tested over whole columns: the mask over every lane of the chunk
    /// (the same for every rule that has this condition, so it is worked out once per chunk).
    /// The dispatch is inline; each test is its own small function, so a call saves only the
    /// registers that test uses.
    #[inline(always)]
    fn full(&self, l: &Lanes) -> Option<u32> {
        Some(match self {
            Cond::Proto { v4, v6, proto } => full_proto(l, *v4, *v6, *proto),
            Cond::Family { v4, v6 } => l.families(*v4, *v6),
            Cond::Protos { v4, v6, protos } => full_protos(l, *v4, *v6, protos),
            Cond::PortRanges { src, ranges } => full_ports(l, *src, ranges),
            Cond::Len {
                ranges,
                vector: true,
            } => full_len(l, ranges),
            Cond::Addr {
                src,
                vector: true,
                set,
                v4,
            } => full_addr(l, *src, set, v4),
            _ => return None,
        })
    }

    /// Whether two conditions tested over whole columns are the same test.
    fn same(&self, o: &Cond) -> bool {
        match (self, o) {
            (
                Cond::Proto { v4, v6, proto },
                Cond::Proto {
                    v4: a,
                    v6: b,
                    proto: c,
                },
            ) => (v4, v6, proto) == (a, b, c),
            (Cond::Family { v4, v6 }, Cond::Family { v4: a, v6: b }) => (v4, v6) == (a, b),
            (
                Cond::Protos { v4, v6, protos },
                Cond::Protos {
                    v4: a,
                    v6: b,
                    protos: c,
                },
            ) => (v4, v6, protos) == (a, b, c),
            (Cond::PortRanges { src, ranges }, Cond::PortRanges { src: a, ranges: b }) => {
                (src, ranges) == (a, b)
            }
            (
                Cond::Len {
                    ranges,
                    vector: true,
                },
                Cond::Len {
                    ranges: b,
                    vector: true,
                },
            ) => ranges == b,
            (
                Cond::Addr {
                    src,
                    vector: true,
                    set,
                    ..
                },
                Cond::Addr {
                    src: a,
                    vector: true,
                    set: b,
                    ..
                },
            ) => (src, set) == (a, b),
            _ => false,
        }
    }

    /// The lanes of `m` that meet the condition: the whole-column mask ANDed in, or the
    /// frames of `m` tested one by one.
    #[inline]
    fn eval<B: BurstFrames + ?Sized>(&self, l: &Lanes, m: u32, frames: &B, at: usize) -> u32 {
        if let Some(full) = self.full(l) {
            return m & full;
        }
        match self {
            Cond::ProtoSet(s) => filter(m, |i| {
                let p = l.proto[i & (LANES - 1)];
                if l.v4 >> i & 1 != 0 {
                    s.contains(false, p)
                } else {
                    l.v6 >> i & 1 != 0 && s.contains(true, p)
                }
            }),
            Cond::PortSet { src, set } => {
                let col = if *src { &l.sport } else { &l.dport };
                filter(m & l.ported, |i| set.contains(col[i & (LANES - 1)]))
            }
            Cond::Len { ranges, .. } => filter(m, |i| ranges.contains(l.wire_len(i))),
            Cond::Addr { src, set, .. } => {
                let (c4, c6) = if *src {
                    (&l.src4, &l.src6)
                } else {
                    (&l.dst4, &l.dst6)
                };
                let hit4 = filter(m & l.v4, |i| set.contains_v4(c4[i & (LANES - 1)]));
                let hit6 = filter(m & l.v6, |i| set.contains_v6(c6[i & (LANES - 1)]));
                hit4 | hit6
            }
            Cond::Bytes(b) => filter(m, |i| {
                let (l3, l4) = l.offsets(i);
                b.matches_at(frames.frame(at + i), l3, l4)
            }),
            Cond::Bpf(p) => filter(m, |i| {
                p.run_with_len(frames.frame(at + i), l.wire_len(i)) != 0
            }),
            // Whole-column conditions were answered above.
            Cond::Proto { .. }
            | Cond::Protos { .. }
            | Cond::Family { .. }
            | Cond::PortRanges { .. } => m & self.full(l).unwrap_or(0),
        }
    }
}

/// The rules in the classifier's form: the distinct conditions, and per rule the indexes of
/// its own, cheapest first.
#[derive(Debug, Clone)]
pub(crate) struct LaneProgram {
    conds: Box<[Cond]>,
    rules: Box<[Box<[u16]>]>,
}

/// Conditions remembered within one chunk: `masks[k]` is condition `k`'s whole-column mask
/// when bit `k` of `known` is set (the first 64 conditions; the rest are worked out each time).
#[derive(Debug, Clone)]
pub(crate) struct Memo {
    known: u64,
    masks: [u32; 64],
}

impl Memo {
    /// An empty memo.
    pub(crate) fn boxed() -> Box<Memo> {
        Box::new(Memo {
            known: 0,
            masks: [0; 64],
        })
    }

    /// Forgets everything (a new chunk).
    #[inline(always)]
    pub(crate) fn clear(&mut self) {
        self.known = 0;
    }
}

impl LaneProgram {
    /// Compiles `rules` (in order). Conditions tested over whole columns that several rules
    /// share (`proto = "udp"`, `dst_port = 53`, ...) are kept once.
    pub(crate) fn compile(rules: &[Rule]) -> LaneProgram {
        let mut conds: Vec<Cond> = Vec::new();
        let rules = rules
            .iter()
            .map(|r| {
                let mut own: Vec<Cond> = r.matchers.iter().map(Cond::new).collect();
                own.sort_by_key(Cond::rank);
                own.into_iter()
                    .map(|c| {
                        let at = conds.iter().position(|k| k.same(&c)).unwrap_or_else(|| {
                            conds.push(c);
                            conds.len() - 1
                        });
                        at as u16
                    })
                    .collect()
            })
            .collect();
        LaneProgram {
            conds: conds.into_boxed_slice(),
            rules,
        }
    }

    /// Number of rules.
    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        self.rules.len()
    }

    /// The lanes of `live` that rule `r` matches (frames `at..` of `frames`).
    #[inline]
    pub(crate) fn matches<B: BurstFrames + ?Sized>(
        &self,
        r: usize,
        l: &Lanes,
        memo: &mut Memo,
        live: u32,
        frames: &B,
        at: usize,
    ) -> u32 {
        let Some(own) = self.rules.get(r) else {
            return 0;
        };
        let mut m = live;
        for &k in own.iter() {
            if m == 0 {
                break;
            }
            let k = usize::from(k);
            // Remembered conditions first: no need to look at the condition itself.
            if memo.known >> (k & 63) & 1 != 0 && k < 64 {
                m &= memo.masks[k & 63];
                continue;
            }
            let Some(c) = self.conds.get(k) else {
                return 0;
            };
            match c.full(l) {
                Some(full) => {
                    if k < 64 {
                        memo.masks[k] = full;
                        memo.known |= 1 << k;
                    }
                    m &= full;
                }
                None => m = c.eval(l, m, frames, at),
            }
        }
        m
    }
}

#[cfg(test)]
#[path = "lanes_tests.rs"]
mod tests;
