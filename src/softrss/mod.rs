//! Symmetric software RSS that sees through tunnels.
//!
//! Stages:
//! 1. [`dissect()`]: Ethernet / 802.1Q / QinQ / PPPoE, IPv4 (options, fragments), IPv6
//!    (extension headers, fragments), GRE, GTP-U, VXLAN, IP-in-IP, UDP, TCP, SCTP, ICMP; the
//!    result gives outer and inner layer offsets, the tunnel kind and the innermost flow tuple.
//! 2. [`SoftRss::classify`]: a symmetric hash of the innermost tuple (Toeplitz with the symmetric
//!    key, or a faster order-then-mix hash) and a worker index from a 128-entry indirection
//!    table, as a NIC's RETA.
//! 3. [`RssMeta`]: the result, written at the start of the packet's headroom.
//! 4. [`Dispatcher`]: moves packet handles into one bounded lock-free ring per worker.
//!
//! Fragment rule: every piece of a fragmented datagram (first included) hashes on addresses
//! (and protocol) only, so all pieces of one datagram reach the same worker; unfragmented
//! packets hash on the 5-tuple. See `docs/soft-rss.md`.
//!
//! ```
//! use floodgate::softrss::{RssConfig, SoftRss, RssMeta};
//! let rss = SoftRss::new(RssConfig { workers: 4, ..RssConfig::default() }).unwrap();
//! // Ethernet + IPv4 + UDP 10.0.0.1:1000 -> 10.0.0.2:53
//! let mut f = vec![0u8; 42];
//! f[12..14].copy_from_slice(&[0x08, 0x00]);
//! f[14] = 0x45; f[17] = 28; f[23] = 17;
//! f[26..30].copy_from_slice(&[10, 0, 0, 1]);
//! f[30..34].copy_from_slice(&[10, 0, 0, 2]);
//! f[34..36].copy_from_slice(&1000u16.to_be_bytes());
//! f[36..38].copy_from_slice(&53u16.to_be_bytes());
//! let c = rss.classify(&f);
//! assert_eq!(c.dissection.inner.l4, 34);
//! let mut headroom = [0u8; 128];
//! c.meta().write_to(&mut headroom).unwrap();
//! assert_eq!(RssMeta::read_from(&headroom).unwrap().worker as usize, c.worker);
//! ```

mod dispatch;
mod dissect;
mod hash;
mod meta;
mod pmd;
pub use crate::wire;

pub use dispatch::{
    DispatchError, DispatchStats, Dispatcher, FramePacket, Rejected, WorkerQueue, WorkerStats,
};
pub use dissect::{
    dissect, dissect_into, flags, AddrKind, DissectConfig, Dissection, FlowTuple, Layers,
    TunnelKind, ABSENT,
};
pub use hash::{
    fast_symmetric, toeplitz_bitwise, FlowHasher, HashAlgorithm, HashError, Toeplitz, KEY_LEN,
    MAX_INPUT, MICROSOFT_KEY, SYMMETRIC_KEY,
};
pub use meta::{MetaError, RssMeta, APP_AREA_OFFSET, META_MAGIC, META_SIZE, META_VERSION};

use thiserror::Error;

/// Entries in the indirection table (as the 82599's RETA, facts §4.6).
pub const RETA_SIZE: usize = 128;

/// Soft-RSS settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RssConfig {
    /// Number of workers (1..=1024).
    pub workers: usize,
    /// Hash function.
    pub algorithm: HashAlgorithm,
    /// Hash L4 ports when present (5-tuple). False: always addresses + protocol only, which
    /// also keeps fragmented and unfragmented packets of one flow together.
    pub hash_ports: bool,
    /// Dissector settings.
    pub dissect: DissectConfig,
}

impl Default for RssConfig {
    fn default() -> Self {
        RssConfig {
            workers: 1,
            algorithm: HashAlgorithm::default(),
            hash_ports: true,
            dissect: DissectConfig::default(),
        }
    }
}

/// Configuration errors.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RssError {
    /// Worker count out of range.
    #[error("soft RSS: workers = {0} is out of range (1..=1024)")]
    Workers(usize),
    /// Ring capacity out of range.
    #[error("soft RSS: worker ring capacity {0} is out of range (1..=1048576)")]
    RingCapacity(usize),
}

/// The classification of one frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct Classified {
    /// Dissector output, with FORWARD / HASHED_PORTS / HAS_PORTS flags filled in.
    pub dissection: Dissection,
    /// Symmetric flow hash.
    pub hash: u32,
    /// Worker index.
    pub worker: usize,
}

impl Classified {
    /// The headroom record for this classification.
    #[inline]
    pub fn meta(&self) -> RssMeta {
        RssMeta::new(&self.dissection, self.hash, self.worker as u16)
    }
}

/// Dissector + symmetric hash + indirection table.
#[derive(Debug)]
pub struct SoftRss {
    cfg: RssConfig,
    hasher: FlowHasher,
    reta: [u16; RETA_SIZE],
}

impl SoftRss {
    /// Builds the stage (precomputes Toeplitz tables if chosen). The indirection table is
    /// filled round-robin: entry i -> worker i mod workers.
    pub fn new(cfg: RssConfig) -> Result<SoftRss, RssError> {
        if cfg.workers == 0 || cfg.workers > 1024 {
            return Err(RssError::Workers(cfg.workers));
        }
        let reta = std::array::from_fn(|i| (i % cfg.workers) as u16);
        Ok(SoftRss {
            cfg,
            hasher: FlowHasher::new(cfg.algorithm),
            reta,
        })
    }

    /// The settings.
    pub fn config(&self) -> &RssConfig {
        &self.cfg
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.cfg.workers
    }

    /// Worker for a hash: `reta[hash % 128]`.
    #[inline]
    pub fn worker_for(&self, hash: u32) -> usize {
        usize::from(self.reta[hash as usize % RETA_SIZE])
    }

    /// Hashes a dissection's tuple with the fragment rule applied, and fills in the FORWARD,
    /// HASHED_PORTS and HAS_PORTS flags.
    #[inline]
    pub fn hash(&self, d: &mut Dissection) -> u32 {
        let t = &d.tuple;
        let ports = self.cfg.hash_ports && t.has_ports && d.flags & flags::FRAGMENT == 0;
        let mut f = d.flags & !(flags::FORWARD | flags::HASHED_PORTS | flags::HAS_PORTS);
        if t.is_forward() {
            f |= flags::FORWARD;
        }
        if ports {
            f |= flags::HASHED_PORTS;
        }
        if t.has_ports {
            f |= flags::HAS_PORTS;
        }
        d.flags = f;
        self.hasher.hash(&d.tuple, ports)
    }

    /// Dissects, hashes and picks a worker.
    #[inline]
    pub fn classify(&self, frame: &[u8]) -> Classified {
        let mut c = Classified {
            dissection: Dissection::default(),
            hash: 0,
            worker: 0,
        };
        self.classify_into(frame, &mut c);
        c
    }

    /// As [`SoftRss::classify`], into `out` (no copy of the result; for hot loops).
    #[inline]
    pub fn classify_into(&self, frame: &[u8], out: &mut Classified) {
        dissect_into(&self.cfg.dissect, frame, &mut out.dissection);
        out.hash = self.hash(&mut out.dissection);
        out.worker = self.worker_for(out.hash);
    }
}
