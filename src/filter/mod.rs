//! The rules engine: ordered rules over raw Ethernet frames, with per-rule hit counters.
//!
//! A [`RuleSet`] is owned by one thread (a worker) and classifies frames with
//! [`RuleSet::classify`]; counters are plain integers. To run several workers, give each its own
//! copy with [`RuleSet::fork`] (fresh counters and rate-limit tables, shared compiled programs
//! and sample files) and add their [`Counters`] together with [`Counters::merge`].
//!
//! Rules are tried in order. A rule matches when all of its [`Matcher`]s match (a rule without
//! matchers matches everything). The first matching rule whose action is terminal decides:
//!
//! - [`Action::Drop`] and [`Action::Pass`] decide directly;
//! - [`Action::RateLimit`] passes the packet while its key's token bucket has tokens and drops it
//!   otherwise (counted as `rate_limited` under the rule);
//! - [`Action::Sample`] is not terminal: it writes one in `every` matching frames to a rotating
//!   pcap file and evaluation continues with the next rule.
//!
//! When no terminal rule matches, the default decision applies.
//!
//! ```
//! use floodgate::filter::{Action, Decision, Matcher, Proto, ProtoSet, PortSet, Rule, RuleSet};
//! let rules = vec![Rule::new(
//!     "drop-dns",
//!     vec![
//!         Matcher::Proto(ProtoSet::new(&[Proto::Udp])),
//!         Matcher::DstPort(PortSet::new(&[(53, 53)])),
//!     ],
//!     Action::Drop,
//! )];
//! let mut rs = RuleSet::new(rules, Decision::Pass);
//! let mut frame = [0u8; 60];
//! frame[12..14].copy_from_slice(&[0x08, 0x00]); // IPv4
//! frame[14] = 0x45;
//! frame[23] = 17; // UDP
//! frame[36..38].copy_from_slice(&53u16.to_be_bytes());
//! let v = rs.classify(&frame, 0);
//! assert_eq!(v.action, Decision::Drop);
//! assert_eq!(v.rule_index, Some(0));
//! assert_eq!(rs.counters().rules[0].hits, 1);
//! ```

mod colcmp;
mod lanes;
mod matcher;
pub mod parse;
mod pcaptest;
mod program;
pub mod reference;

use std::sync::{Arc, Mutex};

pub use lanes::BurstFrames;
use lanes::{Lanes, Memo, LANES};
pub use matcher::{
    parse_port_range, ByteMatch, Cidr, CidrSet, Layer, Matcher, PortSet, Proto, ProtoSet,
};
pub use parse::{Parsed, L3};
pub use pcaptest::{run_pcap, test_pcap, PacketVerdict, PcapTestError, PcapTestReport};

use crate::pcapfile::{RotatingPcapWriter, RotationPolicy};
use crate::ratelimit::TokenBucketTable;
use program::Program;

/// Time stamps handed to the engine: nanoseconds since the Unix epoch (the rate limiter only
/// uses differences and tolerates a clock that steps back; sampled frames are written with this
/// time).
pub type Timestamp = u64;

/// What happens to a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Let it through (reinject).
    Pass,
    /// Drop it.
    Drop,
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decision::Pass => "pass",
            Decision::Drop => "drop",
        })
    }
}

/// The result of classifying one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Pass or drop.
    pub action: Decision,
    /// Index of the deciding rule, `None` for the default action.
    pub rule_index: Option<u32>,
    /// `true` when a rate-limit rule dropped the frame because its bucket was empty.
    pub rate_limited: bool,
}

/// What a rate limit is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateKey {
    /// The source address cut to a prefix: `v4_prefix` bits for IPv4 (32 = per host, 24 = per
    /// /24) and `v6_prefix` bits for IPv6.
    Source {
        /// IPv4 prefix length, 0..=32.
        v4_prefix: u8,
        /// IPv6 prefix length, 0..=128.
        v6_prefix: u8,
    },
    /// The flow: protocol, addresses and ports (non-first fragments share the flow of their
    /// addresses and protocol).
    Flow,
}

/// The bit every IPv4 source key has set, above the address.
const V4_KEY: u64 = 1 << 40;

impl RateKey {
    /// The key of an IPv4 source under a `v4_prefix`-bit prefix.
    #[inline(always)]
    fn v4_source(src: u32, v4_prefix: u8) -> u64 {
        Self::v4_masked(src, Self::prefix_mask(v4_prefix))
    }

    /// The key of an IPv4 source under a prefix mask.
    #[inline(always)]
    fn v4_masked(src: u32, mask: u32) -> u64 {
        V4_KEY | u64::from(src & mask)
    }

    #[inline(always)]
    fn prefix_mask(v4_prefix: u8) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(v4_prefix.min(32)))
            .unwrap_or(0)
    }

    /// For keys by source, the IPv4 prefix mask (worked out once per burst).
    #[inline(always)]
    fn v4_mask(&self) -> Option<u32> {
        match *self {
            RateKey::Source { v4_prefix, .. } => Some(Self::prefix_mask(v4_prefix)),
            RateKey::Flow => None,
        }
    }

    #[inline]
    fn key(&self, p: &Parsed) -> u64 {
        match (*self, p.l3) {
            (_, L3::None) => 0,
            (RateKey::Source { v4_prefix, .. }, L3::V4 { src, .. }) => {
                Self::v4_source(src, v4_prefix)
            }
            (RateKey::Source { v6_prefix, .. }, L3::V6 { src, .. }) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(v6_prefix.min(128)))
                    .unwrap_or(0);
                fold128(src & mask) ^ (2 << 60)
            }
            (RateKey::Flow, l3) => {
                let (a, b) = match l3 {
                    L3::V4 { src, dst } => (u128::from(src), u128::from(dst)),
                    L3::V6 { src, dst } => (src, dst),
                    L3::None => (0, 0),
                };
                let (sp, dp) = p.ports.unwrap_or((0, 0));
                let ports = (u64::from(sp) << 16) | u64::from(dp) | (u64::from(p.proto) << 32);
                fold128(a).rotate_left(21) ^ fold128(b).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ports
            }
        }
    }
}

#[inline]
fn fold128(v: u128) -> u64 {
    ((v >> 64) as u64).wrapping_mul(0xff51_afd7_ed55_8ccd) ^ (v as u64)
}

/// Parameters of a rate-limit action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// Packets per second allowed per key.
    pub rate_pps: u64,
    /// Bucket depth in packets.
    pub burst: u64,
    /// What the buckets are keyed by.
    pub key: RateKey,
    /// Number of keys the bounded table holds (rounded up to a power of two).
    pub table_size: usize,
}

/// Parameters of a sample action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Write one in `every` matching frames (the first one included).
    pub every: u64,
    /// Where and how big the pcap files get.
    pub policy: RotationPolicy,
}

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Drop the frame.
    Drop,
    /// Pass the frame.
    Pass,
    /// Pass within the rate, drop above it.
    RateLimit(RateLimit),
    /// Record a sample and go on with the next rule.
    Sample(Sample),
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Drop => f.write_str("drop"),
            Action::Pass => f.write_str("pass"),
            Action::RateLimit(r) => {
                let key = match r.key {
                    RateKey::Flow => "flow".to_string(),
                    RateKey::Source {
                        v4_prefix,
                        v6_prefix,
                    } => format!("source /{v4_prefix} (IPv6 /{v6_prefix})"),
                };
                write!(
                    f,
                    "rate-limit {} pps, burst {}, per {key}, table {}",
                    r.rate_pps, r.burst, r.table_size
                )
            }
            Action::Sample(s) => write!(
                f,
                "sample 1 in {} to {} ({}, rotate at {} bytes, keep {} files)",
                s.every,
                s.policy.path.display(),
                s.policy.format.name(),
                s.policy.max_bytes,
                s.policy.max_files
            ),
        }
    }
}

/// One rule: a name, the matchers that must all match, and an action.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Name used in counters, logs and metrics.
    pub name: String,
    /// Conditions, all of which must hold.
    pub matchers: Vec<Matcher>,
    /// What to do on a match.
    pub action: Action,
    /// Human-readable summary of the matchers (for `check-config`); may be empty.
    pub summary: String,
}

impl Rule {
    /// Builds a rule.
    pub fn new(name: impl Into<String>, matchers: Vec<Matcher>, action: Action) -> Self {
        Rule {
            name: name.into(),
            matchers,
            action,
            summary: String::new(),
        }
    }
}

/// Counters of one rule (or of the default action).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleCounters {
    /// Frames that matched the rule.
    pub hits: u64,
    /// Wire bytes of those frames.
    pub bytes: u64,
    /// Frames this rule passed.
    pub passed: u64,
    /// Frames this rule dropped (rate-limited ones included).
    pub dropped: u64,
    /// Frames dropped because a rate limit was exceeded.
    pub rate_limited: u64,
    /// Frames written to the sample file.
    pub sampled: u64,
    /// Samples that could not be written (I/O errors).
    pub sample_errors: u64,
}

impl RuleCounters {
    fn add(&mut self, o: &RuleCounters) {
        self.hits += o.hits;
        self.bytes += o.bytes;
        self.passed += o.passed;
        self.dropped += o.dropped;
        self.rate_limited += o.rate_limited;
        self.sampled += o.sampled;
        self.sample_errors += o.sample_errors;
    }
}

/// All counters of a rule set. Every classified frame is counted once in `packets` and once as
/// passed or dropped, by exactly one rule or the default:
/// `packets = Σ passed + Σ dropped` (rules and default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames classified.
    pub packets: u64,
    /// Per rule, in rule order.
    pub rules: Vec<RuleCounters>,
    /// Frames decided by the default action.
    pub default: RuleCounters,
}

impl Counters {
    /// Adds `other` (from another worker's copy of the same rule set) into `self`. Rules are
    /// matched by index; `self` grows if `other` has more rules.
    pub fn merge(&mut self, other: &Counters) {
        self.packets += other.packets;
        if self.rules.len() < other.rules.len() {
            self.rules
                .resize(other.rules.len(), RuleCounters::default());
        }
        for (a, b) in self.rules.iter_mut().zip(&other.rules) {
            a.add(b);
        }
        self.default.add(&other.default);
    }

    /// Frames passed in total.
    pub fn passed(&self) -> u64 {
        self.default.passed + self.rules.iter().map(|r| r.passed).sum::<u64>()
    }

    /// Frames dropped in total.
    pub fn dropped(&self) -> u64 {
        self.default.dropped + self.rules.iter().map(|r| r.dropped).sum::<u64>()
    }
}

type Sink = Arc<Mutex<RotatingPcapWriter>>;

#[derive(Debug)]
enum Kind {
    Drop,
    Pass,
    RateLimit {
        /// Boxed: the table carries its batch of located keys.
        table: Box<TokenBucketTable>,
        key: RateKey,
    },
    Sample {
        every: u64,
        /// Matching frames until the next sample (0: sample this one).
        until: u64,
        sink: Sink,
    },
}

/// An ordered set of rules with their counters, owned by one worker. See the
/// [module documentation](self).
#[derive(Debug)]
pub struct RuleSet {
    program: Arc<Program>,
    kinds: Vec<Kind>,
    rules: Arc<[Rule]>,
    default: Decision,
    needs_parse: bool,
    counters: Counters,
    /// The columns of the chunk being classified (see the `lanes` module).
    lanes: Box<Lanes>,
    /// Rate-limit buckets of one rule's frames in a chunk, located before they are used.
    /// Condition masks shared by several rules, worked out once per chunk.
    memo: Box<Memo>,
}

fn kind(rule: &Rule, sinks: Option<&[Option<Sink>]>, i: usize) -> Kind {
    match &rule.action {
        Action::Drop => Kind::Drop,
        Action::Pass => Kind::Pass,
        Action::RateLimit(r) => Kind::RateLimit {
            table: Box::new(TokenBucketTable::new(r.rate_pps, r.burst, r.table_size)),
            key: r.key,
        },
        Action::Sample(s) => Kind::Sample {
            every: s.every.max(1),
            until: 0,
            sink: sinks
                .and_then(|s| s.get(i).cloned().flatten())
                .unwrap_or_else(|| Arc::new(Mutex::new(RotatingPcapWriter::new(s.policy.clone())))),
        },
    }
}

/// What one rule does with a frame that matched it (the rule's counters are updated by the
/// caller, except sampling's own).
enum Outcome {
    /// Terminal: this decision.
    Decided(Decision),
    /// A rate limit: look up this key.
    Limit(u64),
    /// Not terminal (sample): go on with the next rule.
    Next,
}

impl Kind {
    #[inline]
    fn apply(
        &mut self,
        i: usize,
        c: &mut RuleCounters,
        frame: &[u8],
        parsed: &Parsed,
        now: Timestamp,
    ) -> Outcome {
        match self {
            Kind::Drop => Outcome::Decided(Decision::Drop),
            Kind::Pass => Outcome::Decided(Decision::Pass),
            Kind::RateLimit { key, .. } => Outcome::Limit(key.key(parsed)),
            Kind::Sample { every, until, sink } => {
                // One in `every`, the first included, counted down (no division per frame).
                if *until == 0 {
                    sample(i, c, sink, frame, now);
                    *until = *every;
                }
                *until -= 1;
                Outcome::Next
            }
        }
    }
}

/// Locates the rate-limit keys of the IPv4 lanes `v4` (keys by source, under the prefix
/// `mask`) in `table`, straight from the source column. Out of line, with a straight loop over
/// every lane when most are IPv4 (a flood), walking the mask otherwise.
#[inline(never)]
fn locate_v4(table: &mut TokenBucketTable, v4: u32, lanes: &Lanes, mask: u32) {
    if v4.count_ones() as usize >= LANES / 2 {
        table.locate_all(lanes.src4_col(), mask, V4_KEY);
    } else {
        table.locate_each(v4, |i| RateKey::v4_masked(lanes.src4(i), mask));
    }
}

#[cold]
fn sample(i: usize, c: &mut RuleCounters, sink: &Sink, frame: &[u8], now: Timestamp) {
    let mut w = sink.lock().unwrap_or_else(|p| p.into_inner());
    match w.write_frame(now, frame) {
        Ok(()) => c.sampled += 1,
        Err(e) => {
            if c.sample_errors == 0 {
                log::warn!(
                    "rule {i}: cannot write sample to {}: {e}",
                    w.policy().path.display()
                );
            }
            c.sample_errors += 1;
        }
    }
}

impl RuleSet {
    /// Builds a rule set. Sample files are created lazily, on the first sample.
    pub fn new(rules: Vec<Rule>, default: Decision) -> RuleSet {
        Self::build(rules.into(), default, None)
    }

    fn build(rules: Arc<[Rule]>, default: Decision, sinks: Option<&[Option<Sink>]>) -> RuleSet {
        let program = Arc::new(Program::compile(&rules));
        Self::assemble(program, rules, default, sinks)
    }

    fn assemble(
        program: Arc<Program>,
        rules: Arc<[Rule]>,
        default: Decision,
        sinks: Option<&[Option<Sink>]>,
    ) -> RuleSet {
        let kinds: Vec<Kind> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| kind(r, sinks, i))
            .collect();
        let needs_parse = rules.iter().any(|r| {
            r.matchers.iter().any(Matcher::needs_parse) || matches!(r.action, Action::RateLimit(_))
        });
        let n = rules.len();
        RuleSet {
            program,
            kinds,
            rules,
            default,
            needs_parse,
            counters: Counters {
                packets: 0,
                rules: vec![RuleCounters::default(); n],
                default: RuleCounters::default(),
            },
            lanes: Lanes::boxed(),
            memo: Memo::boxed(),
        }
    }

    /// A copy for another worker: same rules, compiled program and sample files; zeroed
    /// counters and empty rate-limit tables (each worker limits the keys it sees, so steer or
    /// hash traffic so that one key lands on one worker). The empty tables hash keys as this
    /// set's do (same secret seed), so a fork fed the same frames evicts the same keys.
    pub fn fork(&self) -> RuleSet {
        let sinks: Vec<Option<Sink>> = self
            .kinds
            .iter()
            .map(|k| match k {
                Kind::Sample { sink, .. } => Some(sink.clone()),
                _ => None,
            })
            .collect();
        let mut forked = Self::assemble(
            self.program.clone(),
            self.rules.clone(),
            self.default,
            Some(&sinks),
        );
        for (k, mine) in forked.kinds.iter_mut().zip(self.kinds.iter()) {
            if let (Kind::RateLimit { table, .. }, Kind::RateLimit { table: ours, .. }) = (k, mine)
            {
                table.hash_like(ours);
            }
        }
        forked
    }

    /// Size of the compiled decision program: dispatch tables and candidate entries (see
    /// `docs/rules.md`).
    pub fn program_size(&self) -> (usize, usize) {
        self.program.size()
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The default decision.
    pub fn default_action(&self) -> Decision {
        self.default
    }

    /// The counters of this copy.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Returns the counters and resets them to zero (for periodic publication by a worker).
    pub fn take_counters(&mut self) -> Counters {
        let n = self.counters.rules.len();
        std::mem::replace(
            &mut self.counters,
            Counters {
                packets: 0,
                rules: vec![RuleCounters::default(); n],
                default: RuleCounters::default(),
            },
        )
    }

    /// Copies the counters of `old`'s rules into rules of the same name here (for a hot reload
    /// that should keep the per-rule totals); returns how many rules were carried over. The
    /// default action's counters and the packet total are carried over as well.
    pub fn adopt_counters(&mut self, old: &RuleSet) -> usize {
        let mut n = 0;
        for (i, r) in self.rules.iter().enumerate() {
            if let Some(j) = old.rules.iter().position(|o| o.name == r.name) {
                self.counters.rules[i].add(&old.counters.rules[j]);
                n += 1;
            }
        }
        self.counters.default.add(&old.counters.default);
        self.counters.packets += old.counters.packets;
        n
    }

    /// Takes over the rate-limit state of `old` (a hot reload): a rate-limit rule here whose
    /// name and parameters (rate, burst, key, table size) are the same as a rule of `old` gets
    /// that rule's token buckets, so the keys it was limiting stay limited across the reload; a
    /// rule that changed starts with fresh buckets. The tables are exchanged, not copied (no
    /// allocation), and `old` keeps this set's fresh tables. Returns how many were carried over.
    pub fn adopt_state(&mut self, old: &mut RuleSet) -> usize {
        let mut n = 0;
        for (i, r) in self.rules.iter().enumerate() {
            let Action::RateLimit(params) = &r.action else {
                continue;
            };
            let Some(j) = old.rules.iter().position(|o| {
                o.name == r.name && matches!(&o.action, Action::RateLimit(p) if p == params)
            }) else {
                continue;
            };
            if let (Some(Kind::RateLimit { table: new, .. }), Some(Kind::RateLimit { table, .. })) =
                (self.kinds.get_mut(i), old.kinds.get_mut(j))
            {
                std::mem::swap(new, table);
                n += 1;
            }
        }
        n
    }

    /// Flushes buffered sample records to their files.
    pub fn flush_samples(&self) -> std::io::Result<()> {
        for k in &self.kinds {
            if let Kind::Sample { sink, .. } = k {
                sink.lock().unwrap_or_else(|p| p.into_inner()).flush()?;
            }
        }
        Ok(())
    }

    /// Classifies a complete frame; see [`RuleSet::classify_wire`].
    #[inline(always)]
    pub fn classify(&mut self, frame: &[u8], now: Timestamp) -> Verdict {
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        self.classify_wire(frame, len, now)
    }

    #[inline]
    fn parse(&self, frame: &[u8]) -> Parsed {
        if self.needs_parse {
            Parsed::parse(frame)
        } else {
            Parsed::NOT_IP
        }
    }

    /// Classifies `frame` (possibly truncated from `wire_len` bytes on the wire) at time `now`,
    /// updating the counters. Never allocates, except to create a sample file on first use.
    #[inline(always)]
    pub fn classify_wire(&mut self, frame: &[u8], wire_len: u32, now: Timestamp) -> Verdict {
        let parsed = self.parse(frame);
        self.classify_parsed(frame, wire_len, &parsed, now)
    }

    /// Classifies a complete `frame` the soft-RSS dispatcher handed over, reusing the parse it
    /// left in the start of `headroom` ([`RssMeta`](crate::softrss::RssMeta)) instead of
    /// reading the headers again. The record is trusted only when it is valid and was written
    /// for a frame of this length ([`RssMeta::describes`](crate::softrss::RssMeta::describes));
    /// otherwise the frame is parsed as by [`RuleSet::classify`]. Same verdicts and counters as
    /// [`RuleSet::classify`] either way. The flag says whether the record was used (true also
    /// when the rules read no headers, so there was nothing to parse).
    #[inline(always)]
    pub fn classify_dispatched(
        &mut self,
        frame: &[u8],
        headroom: &[u8],
        now: Timestamp,
    ) -> (Verdict, bool) {
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        if !self.needs_parse {
            return (self.classify_parsed(frame, len, &Parsed::NOT_IP, now), true);
        }
        match crate::softrss::RssMeta::read_for(headroom, frame) {
            Some(m) => {
                let parsed = Parsed::from_meta(&m, frame);
                (self.classify_parsed(frame, len, &parsed, now), true)
            }
            None => (self.classify_wire(frame, len, now), false),
        }
    }

    /// Classifies `frame` whose headers were already parsed into `parsed` (by the soft-RSS
    /// dispatcher, see [`Parsed::from_meta`]); otherwise as [`RuleSet::classify_wire`].
    #[inline(always)]
    pub fn classify_parsed(
        &mut self,
        frame: &[u8],
        wire_len: u32,
        parsed: &Parsed,
        now: Timestamp,
    ) -> Verdict {
        self.counters.packets += 1;
        let prog = &*self.program;
        for e in prog.candidates(parsed) {
            if !prog.matches(e, frame, wire_len, parsed) {
                continue;
            }
            let i = e.rule as usize;
            let (Some(c), Some(k)) = (self.counters.rules.get_mut(i), self.kinds.get_mut(i)) else {
                continue;
            };
            c.hits += 1;
            c.bytes += u64::from(wire_len);
            let rule_index = Some(i as u32);
            let (action, rate_limited) = match k.apply(i, c, frame, parsed, now) {
                Outcome::Next => continue,
                Outcome::Decided(d) => (d, false),
                Outcome::Limit(key) => {
                    let Kind::RateLimit { table, .. } = k else {
                        continue;
                    };
                    if table.allow(key, now) {
                        (Decision::Pass, false)
                    } else {
                        c.rate_limited += 1;
                        (Decision::Drop, true)
                    }
                }
            };
            match action {
                Decision::Pass => c.passed += 1,
                Decision::Drop => c.dropped += 1,
            }
            return Verdict {
                action,
                rule_index,
                rate_limited,
            };
        }
        let c = &mut self.counters.default;
        c.hits += 1;
        c.bytes += u64::from(wire_len);
        match self.default {
            Decision::Pass => c.passed += 1,
            Decision::Drop => c.dropped += 1,
        }
        Verdict {
            action: self.default,
            rule_index: None,
            rate_limited: false,
        }
    }

    /// Classifies a burst of complete frames at time `now`, writing one verdict per frame into
    /// `out`; returns how many were classified (`min(frames.len(), out.len())`). The same
    /// decisions and counters as [`RuleSet::classify`] frame by frame (rate limits see the
    /// frames in the same order), with less work: the burst is parsed into columns and each
    /// rule is tested over 32 frames at once (see the `lanes` module), counters are added per
    /// rule and chunk, and the rate-limit lookups of a rule's frames are prefetched together.
    pub fn classify_burst<F: AsRef<[u8]>>(
        &mut self,
        frames: &[F],
        now: Timestamp,
        out: &mut [Verdict],
    ) -> usize {
        let n = frames.len().min(out.len());
        let frames = &frames[..n];
        let mut at = 0;
        while at < n {
            self.classify_chunk::<_, true>(frames, at, 0, now, &mut out[at..]);
            at += LANES;
        }
        n
    }

    /// Classifies frames `at..at + 32` of `frames` (fewer at the end), except those whose bit
    /// is set in `skip` (bit `i` for frame `at + i`; they are neither classified nor counted).
    /// Returns the mask of the frames dropped; with `VERDICTS`, also writes each classified
    /// frame's verdict into `verdicts[i]`.
    #[inline]
    pub(crate) fn classify_chunk<B: BurstFrames + ?Sized, const VERDICTS: bool>(
        &mut self,
        frames: &B,
        at: usize,
        skip: u32,
        now: Timestamp,
        verdicts: &mut [Verdict],
    ) -> u32 {
        let n = frames.count().saturating_sub(at).min(LANES);
        if n == 0 {
            return 0;
        }
        let RuleSet {
            program,
            kinds,
            default,
            needs_parse,
            counters,
            lanes,
            memo,
            ..
        } = self;
        let all = if n == LANES {
            u32::MAX
        } else {
            (1u32 << n) - 1
        };
        let valid = all & !skip;
        let mut live_bytes = lanes.load(frames, at, valid, *needs_parse);
        memo.clear();
        counters.packets += u64::from(valid.count_ones());
        let prog = &program.lanes;
        let mut live = valid;
        let mut drop = 0u32;
        for r in 0..prog.len() {
            if live == 0 {
                break;
            }
            let m = prog.matches(r, lanes, memo, live, frames, at);
            if m == 0 {
                continue;
            }
            let (Some(c), Some(k)) = (counters.rules.get_mut(r), kinds.get_mut(r)) else {
                continue;
            };
            let hits = u64::from(m.count_ones());
            let bytes = lanes.bytes(m, live, live_bytes);
            c.hits += hits;
            c.bytes += bytes;
            let mut limited = 0u32;
            match k {
                Kind::Drop => {
                    c.dropped += hits;
                    drop |= m;
                }
                Kind::Pass => c.passed += hits,
                Kind::Sample { every, until, sink } => {
                    // Not terminal: the frames stay live for the next rules. One in `every`,
                    // counted down: a chunk without a sample due costs one subtraction.
                    if *until > hits {
                        *until -= hits;
                        continue;
                    }
                    lanes::each(m, |i| {
                        if *until == 0 {
                            sample(r, c, sink, frames.frame(at + i), now);
                            *until = *every;
                        }
                        *until -= 1;
                    });
                    continue;
                }
                Kind::RateLimit { table, key } => {
                    // Locate and prefetch every bucket first, then take tokens in frame order.
                    // Keyed by source, the IPv4 frames' keys come straight from their column.
                    let v4 = match key.v4_mask() {
                        Some(mask) => {
                            let v4 = m & lanes.v4();
                            locate_v4(table, v4, lanes, mask);
                            v4
                        }
                        None => 0,
                    };
                    if m & !v4 != 0 {
                        table.locate_each(m & !v4, |i| lanes.rate_key(key, i));
                    }
                    limited = table.allow_each(m, now);
                    let nl = u64::from(limited.count_ones());
                    c.rate_limited += nl;
                    c.dropped += nl;
                    c.passed += hits - nl;
                    drop |= limited;
                }
            }
            live &= !m;
            live_bytes -= bytes;
            if VERDICTS {
                lanes::each(m, |i| {
                    if let Some(v) = verdicts.get_mut(i) {
                        let rate_limited = limited >> i & 1 != 0;
                        *v = Verdict {
                            action: if drop >> i & 1 != 0 {
                                Decision::Drop
                            } else {
                                Decision::Pass
                            },
                            rule_index: Some(r as u32),
                            rate_limited,
                        };
                    }
                });
            }
        }
        if live != 0 {
            let c = &mut counters.default;
            let hits = u64::from(live.count_ones());
            c.hits += hits;
            c.bytes += live_bytes;
            match *default {
                Decision::Pass => c.passed += hits,
                Decision::Drop => {
                    c.dropped += hits;
                    drop |= live;
                }
            }
            if VERDICTS {
                lanes::each(live, |i| {
                    if let Some(v) = verdicts.get_mut(i) {
                        *v = Verdict {
                            action: *default,
                            rule_index: None,
                            rate_limited: false,
                        };
                    }
                });
            }
        }
        drop
    }
}
