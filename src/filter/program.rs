//! The decision program the rules are compiled into (when a rule set is built: `check-config`,
//! start and reload).
//!
//! The ordered rule list is turned into a two-level dispatch followed by short per-rule test
//! lists, without changing which rule decides a frame (first match wins):
//!
//! 1. **Class**: the frame's family and IP protocol (not IP; IPv4 + protocol; IPv6 + protocol,
//!    513 classes) pick a dispatch table. Each table was built from the rules that can match
//!    that class at all: `proto` and `ipv4`/`ipv6` conditions are decided here, once, and a
//!    rule whose source or destination prefixes are all of the other family is left out.
//! 2. **Destination port**: the table splits the port space into regions where every
//!    candidate's `dst_port` answer is constant (one binary search over the region starts),
//!    each with its own candidate list, in rule order. Frames without ports (not TCP, UDP or
//!    SCTP, later fragments) have their own list, without the rules that need ports.
//! 3. **Remaining tests** of each candidate, cheapest first: source port (bitmap), length
//!    ranges, byte matches (one masked 64- or 128-bit compare), prefixes (binary search over
//!    merged ranges), BPF last.
//!
//! Classes with the same candidates share one table. A class whose port sets would split the
//! port space into more than [`MAX_REGIONS`] regions keeps one region and tests `dst_port` per
//! rule instead.

use std::collections::HashMap;
use std::sync::Arc;

use super::lanes::LaneProgram;
use super::matcher::{ByteMatch, CidrSet, Layer, Matcher, PortSet};
use super::parse::{Parsed, L3};
use super::Rule;
use crate::bpf::CompiledBpf;

/// Most port regions one dispatch table gets; beyond it the table tests ports per rule.
pub const MAX_REGIONS: usize = 1024;

/// Number of classes: not IP, 256 IPv4 protocols, 256 IPv6 protocols.
const CLASSES: usize = 1 + 256 + 256;

/// A byte match as one masked compare of a little-endian load.
#[derive(Debug, Clone)]
pub(crate) struct Masked {
    layer: Layer,
    offset: u16,
    len: u8,
    mask: u128,
    value: u128,
}

impl Masked {
    pub(crate) fn new(b: &ByteMatch) -> Masked {
        let (layer, offset, value, mask) = b.parts();
        let mut v = [0u8; 16];
        let mut m = [0u8; 16];
        v[..value.len()].copy_from_slice(value);
        m[..mask.len()].copy_from_slice(mask);
        Masked {
            layer,
            offset,
            len: value.len() as u8,
            mask: u128::from_le_bytes(m),
            value: u128::from_le_bytes(v),
        }
    }

    #[inline]
    fn matches(&self, frame: &[u8], p: &Parsed) -> bool {
        self.matches_at(frame, p.l3_off, p.l4_off)
    }

    /// As a match on a frame whose network header is at `l3_off` and transport header (if
    /// found) at `l4_off`.
    #[inline]
    pub(crate) fn matches_at(&self, frame: &[u8], l3_off: u16, l4_off: Option<u16>) -> bool {
        let base = match self.layer {
            Layer::L2 => 0,
            Layer::L3 => usize::from(l3_off),
            Layer::L4 => match l4_off {
                Some(o) => usize::from(o),
                None => return false,
            },
        };
        let start = base + usize::from(self.offset);
        let n = usize::from(self.len);
        if start + n > frame.len() {
            return false;
        }
        if n <= 8 {
            let word = match frame.get(start..start + 8) {
                Some(w) => u64::from_le_bytes(w.try_into().unwrap_or([0; 8])),
                None => tail_word(&frame[start..start + n]) as u64,
            };
            word & self.mask as u64 == self.value as u64
        } else {
            let word = match frame.get(start..start + 16) {
                Some(w) => u128::from_le_bytes(w.try_into().unwrap_or([0; 16])),
                None => tail_word(&frame[start..start + n]),
            };
            word & self.mask == self.value
        }
    }
}

/// The bytes of a match near the end of the frame, zero padded (cold: the frame is shorter
/// than a full word past the offset).
#[cold]
fn tail_word(b: &[u8]) -> u128 {
    let mut w = [0u8; 16];
    let n = b.len().min(16);
    w[..n].copy_from_slice(&b[..n]);
    u128::from_le_bytes(w)
}

/// One test left after the dispatch.
#[derive(Debug, Clone)]
enum Op {
    DstPort(PortSet),
    SrcPort(PortSet),
    Len(Box<[(u32, u32)]>),
    Bytes(Masked),
    Src(CidrSet),
    Dst(CidrSet),
    Bpf(Arc<CompiledBpf>),
}

/// A compiled test: one closure per remaining condition, specialised on its kind when the
/// rules are compiled (a `match` over every kind of test inside the walk made the compiler
/// prepare all of them for every frame).
type Test = Arc<dyn Fn(&[u8], u32, &Parsed) -> bool + Send + Sync>;

impl Op {
    fn into_test(self) -> Test {
        match self {
            Op::DstPort(s) => Arc::new(move |_, _, p| p.ports.is_some_and(|(_, d)| s.contains(d))),
            Op::SrcPort(s) => {
                Arc::new(move |_, _, p| p.ports.is_some_and(|(sp, _)| s.contains(sp)))
            }
            Op::Len(r) => {
                Arc::new(move |_, len, _| r.iter().any(|&(lo, hi)| lo <= len && len <= hi))
            }
            Op::Bytes(b) => Arc::new(move |f, _, p| b.matches(f, p)),
            Op::Src(s) => Arc::new(move |_, _, p| match p.l3 {
                L3::V4 { src, .. } => s.contains_v4(src),
                L3::V6 { src, .. } => s.contains_v6(src),
                L3::None => false,
            }),
            Op::Dst(s) => Arc::new(move |_, _, p| match p.l3 {
                L3::V4 { dst, .. } => s.contains_v4(dst),
                L3::V6 { dst, .. } => s.contains_v6(dst),
                L3::None => false,
            }),
            Op::Bpf(prog) => Arc::new(move |f, len, _| prog.run_with_len(f, len) != 0),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Op::DstPort(_) => 0,
            Op::SrcPort(_) => 1,
            Op::Len(_) => 2,
            Op::Bytes(_) => 3,
            Op::Src(_) | Op::Dst(_) => 4,
            Op::Bpf(_) => 5,
        }
    }
}

/// The tests of one rule that the dispatch does not decide; `ops[..dport]` are its
/// destination-port tests, skipped when the port region already decided them.
struct Plan {
    ops: Box<[Test]>,
    dport: usize,
}

/// One dispatch table: candidate lists by destination-port region, and for frames without
/// ports.
#[derive(Debug, Clone)]
struct Dispatch {
    /// First port of each region, ascending, `starts[0] == 0`.
    starts: Box<[u16]>,
    /// Per region, a range of the candidate entries.
    regions: Box<[(u32, u32)]>,
    /// Candidates for frames without ports.
    no_ports: (u32, u32),
}

/// A compiled rule list. See the [module documentation](self).
pub(crate) struct Program {
    /// The same rules in the burst classifier's form.
    pub(crate) lanes: LaneProgram,
    /// Per class, its dispatch table (classes with the same candidates share one).
    classes: Box<[Arc<Table>]>,
    /// Distinct dispatch tables.
    n_tables: usize,
    /// Candidate entries over all tables.
    n_entries: usize,
}

/// A dispatch table as the walk uses it: region starts and, per region, its candidates.
struct Table {
    starts: Box<[u16]>,
    regions: Box<[Box<[Entry]>]>,
    no_ports: Box<[Entry]>,
}

/// One candidate: the rule and the tests still to run for it (without its destination-port
/// tests when the port region decided them).
#[derive(Clone)]
pub(crate) struct Entry {
    /// Rule index.
    pub(crate) rule: u32,
    tests: Box<[Test]>,
}

/// What a class is: not IP, or a family and protocol.
#[derive(Clone, Copy)]
enum ClassKey {
    NotIp,
    Ip { v6: bool, proto: u8 },
}

fn class_key(c: usize) -> ClassKey {
    match c {
        0 => ClassKey::NotIp,
        1..=256 => ClassKey::Ip {
            v6: false,
            proto: (c - 1) as u8,
        },
        _ => ClassKey::Ip {
            v6: true,
            proto: (c - 257) as u8,
        },
    }
}

/// Can `rule` match a frame of class `k` (as far as the class decides)?
fn admits(rule: &Rule, k: ClassKey) -> bool {
    rule.matchers.iter().all(|m| match (m, k) {
        (
            Matcher::Proto(_)
            | Matcher::Ipv4(_)
            | Matcher::Src(_)
            | Matcher::Dst(_)
            | Matcher::SrcPort(_)
            | Matcher::DstPort(_),
            ClassKey::NotIp,
        ) => false,
        (Matcher::Proto(s), ClassKey::Ip { v6, proto }) => s.contains(v6, proto),
        (Matcher::Ipv4(want_v4), ClassKey::Ip { v6, .. }) => *want_v4 != v6,
        (Matcher::Src(s) | Matcher::Dst(s), ClassKey::Ip { v6, .. }) => s.has_family(v6),
        _ => true,
    })
}

/// Ports where `set` changes membership (the first port of each run), 0 excluded.
fn transitions(set: &PortSet, out: &mut Vec<u16>) {
    let mut prev = set.contains(0);
    for p in 1..=u16::MAX {
        let now = set.contains(p);
        if now != prev {
            out.push(p);
            prev = now;
        }
    }
}

fn dport_sets(rule: &Rule) -> impl Iterator<Item = &PortSet> {
    rule.matchers.iter().filter_map(|m| match m {
        Matcher::DstPort(s) => Some(s),
        _ => None,
    })
}

fn needs_ports(rule: &Rule) -> bool {
    rule.matchers
        .iter()
        .any(|m| matches!(m, Matcher::SrcPort(_) | Matcher::DstPort(_)))
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("tables", &self.n_tables)
            .field("entries", &self.n_entries)
            .finish()
    }
}

impl Program {
    /// Compiles `rules` (in order).
    pub(crate) fn compile(rules: &[Rule]) -> Program {
        let plans: Box<[Plan]> = rules.iter().map(plan).collect();
        let port_starts: Vec<Vec<u16>> = rules
            .iter()
            .map(|r| {
                let mut v = Vec::new();
                for s in dport_sets(r) {
                    transitions(s, &mut v);
                }
                v
            })
            .collect();
        let mut entries: Vec<u32> = Vec::new();
        let mut tables: Vec<Dispatch> = Vec::new();
        let mut by_candidates: HashMap<Vec<u32>, u16> = HashMap::new();
        let mut class_of = Vec::with_capacity(CLASSES);
        for c in 0..CLASSES {
            let k = class_key(c);
            let cands: Vec<u32> = (0..rules.len() as u32)
                .filter(|&i| admits(&rules[i as usize], k))
                .collect();
            if let Some(&t) = by_candidates.get(&cands) {
                class_of.push(t);
                continue;
            }
            let t = tables.len() as u16;
            tables.push(dispatch(rules, &cands, &port_starts, &mut entries));
            by_candidates.insert(cands, t);
            class_of.push(t);
        }
        let entries: Vec<Entry> = entries
            .into_iter()
            .map(|e| {
                let rule = e >> 1;
                let p = &plans[rule as usize];
                let from = if e & 1 == 1 { 0 } else { p.dport };
                Entry {
                    rule,
                    tests: p.ops.get(from..).unwrap_or(&[]).to_vec().into_boxed_slice(),
                }
            })
            .collect();
        let list = |(s, e): (u32, u32)| -> Box<[Entry]> {
            entries
                .get(s as usize..e as usize)
                .unwrap_or(&[])
                .to_vec()
                .into_boxed_slice()
        };
        let shared: Vec<Arc<Table>> = tables
            .iter()
            .map(|d| {
                Arc::new(Table {
                    starts: d.starts.clone(),
                    regions: d.regions.iter().map(|&r| list(r)).collect(),
                    no_ports: list(d.no_ports),
                })
            })
            .collect();
        Program {
            lanes: LaneProgram::compile(rules),
            classes: class_of
                .iter()
                .map(|&t| shared[usize::from(t)].clone())
                .collect(),
            n_tables: tables.len(),
            n_entries: entries.len(),
        }
    }

    /// The candidate entries for a parsed frame, in rule order.
    #[inline]
    pub(crate) fn candidates(&self, p: &Parsed) -> &[Entry] {
        let class = match p.l3 {
            L3::None => 0,
            L3::V4 { .. } => 1 + usize::from(p.proto),
            L3::V6 { .. } => 257 + usize::from(p.proto),
        };
        let Some(t) = self.classes.get(class) else {
            return &[];
        };
        match p.ports {
            None => &t.no_ports,
            Some((_, dp)) => {
                // starts[0] == 0: at least one start is <= any port.
                let r = if t.starts.len() <= 8 {
                    t.starts.iter().filter(|&&s| s <= dp).count()
                } else {
                    t.starts.partition_point(|&s| s <= dp)
                };
                t.regions.get(r.saturating_sub(1)).map_or(&[], |l| &l[..])
            }
        }
    }

    /// Runs the remaining tests of a candidate entry.
    #[inline]
    pub(crate) fn matches(&self, e: &Entry, frame: &[u8], wire_len: u32, p: &Parsed) -> bool {
        e.tests.iter().all(|t| t(frame, wire_len, p))
    }

    /// Number of dispatch tables and candidate entries (for `check-config`'s summary and the
    /// tests).
    pub(crate) fn size(&self) -> (usize, usize) {
        (self.n_tables, self.n_entries)
    }
}

fn plan(rule: &Rule) -> Plan {
    let mut ops: Vec<Op> = rule
        .matchers
        .iter()
        .filter_map(|m| {
            Some(match m {
                // Decided by the class.
                Matcher::Proto(_) | Matcher::Ipv4(_) => return None,
                Matcher::DstPort(s) => Op::DstPort(s.clone()),
                Matcher::SrcPort(s) => Op::SrcPort(s.clone()),
                Matcher::Len(r) => Op::Len(r.clone().into_boxed_slice()),
                Matcher::Bytes(b) => Op::Bytes(Masked::new(b)),
                Matcher::Src(s) => Op::Src(s.clone()),
                Matcher::Dst(s) => Op::Dst(s.clone()),
                Matcher::Bpf(p) => Op::Bpf(p.clone()),
            })
        })
        .collect();
    ops.sort_by_key(Op::rank);
    let dport = ops.iter().filter(|o| matches!(o, Op::DstPort(_))).count();
    Plan {
        ops: ops.into_iter().map(Op::into_test).collect(),
        dport,
    }
}

fn dispatch(
    rules: &[Rule],
    cands: &[u32],
    port_starts: &[Vec<u16>],
    entries: &mut Vec<u32>,
) -> Dispatch {
    let push = |list: &mut dyn Iterator<Item = u32>, entries: &mut Vec<u32>| {
        let s = entries.len() as u32;
        entries.extend(list);
        (s, entries.len() as u32)
    };
    let no_ports = push(
        &mut cands
            .iter()
            .filter(|&&i| !needs_ports(&rules[i as usize]))
            .map(|&i| i << 1),
        entries,
    );
    let mut starts: Vec<u16> = vec![0];
    for &i in cands {
        starts.extend_from_slice(&port_starts[i as usize]);
    }
    starts.sort_unstable();
    starts.dedup();
    if starts.len() > MAX_REGIONS {
        let all = push(&mut cands.iter().map(|&i| i << 1 | 1), entries);
        return Dispatch {
            starts: vec![0].into_boxed_slice(),
            regions: vec![all].into_boxed_slice(),
            no_ports,
        };
    }
    let regions: Vec<(u32, u32)> = starts
        .iter()
        .map(|&port| {
            push(
                &mut cands
                    .iter()
                    .filter(|&&i| dport_sets(&rules[i as usize]).all(|s| s.contains(port)))
                    .map(|&i| i << 1),
                entries,
            )
        })
        .collect();
    Dispatch {
        starts: starts.into_boxed_slice(),
        regions: regions.into_boxed_slice(),
        no_ports,
    }
}
