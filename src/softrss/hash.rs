//! Symmetric flow hashes: Toeplitz (table-driven, with a bitwise reference) and a faster
//! order-then-mix hash.
//!
//! Hash input for Toeplitz follows the RSS convention (facts §8): source address, destination
//! address, then source port and destination port, all in network byte order. IPv4 gives 8
//! (addresses only) or 12 bytes, IPv6 32 or 36, MAC-only tuples 12.

use super::dissect::{AddrKind, FlowTuple};
use thiserror::Error;

/// Length of an RSS key.
pub const KEY_LEN: usize = 40;
/// Longest Toeplitz input: two IPv6 addresses and two ports.
pub const MAX_INPUT: usize = 36;

/// The symmetric key of facts §8: `6d 5a` repeated 20 times. Its 16-bit period makes the
/// Toeplitz hash invariant under swapping source and destination (addresses and ports are
/// multiples of 16 bits); the upper and lower 16 bits of every hash are equal.
pub const SYMMETRIC_KEY: [u8; KEY_LEN] = {
    let mut k = [0u8; KEY_LEN];
    let mut i = 0;
    while i < KEY_LEN {
        k[i] = if i.is_multiple_of(2) { 0x6d } else { 0x5a };
        i += 1;
    }
    k
};

/// The default Microsoft/Intel key of facts §8 (not symmetric; used for the test vectors).
pub const MICROSOFT_KEY: [u8; KEY_LEN] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// Hash errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HashError {
    /// Toeplitz input longer than the key allows.
    #[error("Toeplitz input of {len} bytes exceeds the {max}-byte maximum for a 40-byte key")]
    InputTooLong {
        /// Input length.
        len: usize,
        /// Maximum.
        max: usize,
    },
}

/// The 32-bit key window starting at bit `bit` (bit 0 = MSB of key byte 0).
#[inline]
fn key_window(key: &[u8; KEY_LEN], bit: usize) -> u32 {
    let byte = bit / 8;
    let shift = bit % 8;
    let mut v: u64 = 0;
    for i in 0..5 {
        v = (v << 8) | u64::from(*key.get(byte + i).unwrap_or(&0));
    }
    ((v << shift) >> 8) as u32
}

/// Bitwise reference Toeplitz hash: for every set input bit i (MSB first), XOR in the 32-bit
/// key window starting at bit i.
pub fn toeplitz_bitwise(key: &[u8; KEY_LEN], input: &[u8]) -> Result<u32, HashError> {
    if input.len() > MAX_INPUT {
        return Err(HashError::InputTooLong {
            len: input.len(),
            max: MAX_INPUT,
        });
    }
    let mut h = 0u32;
    for (i, &b) in input.iter().enumerate() {
        for j in 0..8 {
            if b & (0x80 >> j) != 0 {
                h ^= key_window(key, i * 8 + j);
            }
        }
    }
    Ok(h)
}

/// Table-driven Toeplitz: for each input byte position a 256-entry table holding the XOR of
/// the key windows of that byte's set bits. One lookup per input byte.
pub struct Toeplitz {
    tables: Box<[[u32; 256]; MAX_INPUT]>,
}

impl std::fmt::Debug for Toeplitz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toeplitz").finish_non_exhaustive()
    }
}

impl Toeplitz {
    /// Precomputes the tables for `key` (36 KiB).
    pub fn new(key: &[u8; KEY_LEN]) -> Toeplitz {
        let mut tables = Box::new([[0u32; 256]; MAX_INPUT]);
        for (pos, t) in tables.iter_mut().enumerate() {
            let w: [u32; 8] = std::array::from_fn(|j| key_window(key, pos * 8 + j));
            for (v, slot) in t.iter_mut().enumerate() {
                let mut h = 0;
                for (j, wj) in w.iter().enumerate() {
                    if v & (0x80 >> j) != 0 {
                        h ^= wj;
                    }
                }
                *slot = h;
            }
        }
        Toeplitz { tables }
    }

    /// Hashes `input` (at most [`MAX_INPUT`] bytes).
    #[inline]
    pub fn hash(&self, input: &[u8]) -> Result<u32, HashError> {
        if input.len() > MAX_INPUT {
            return Err(HashError::InputTooLong {
                len: input.len(),
                max: MAX_INPUT,
            });
        }
        Ok(self.hash_prefix(input))
    }

    #[inline(always)]
    fn hash_prefix(&self, input: &[u8]) -> u32 {
        input
            .iter()
            .zip(self.tables.iter())
            .fold(0, |h, (&b, t)| h ^ t[usize::from(b)])
    }

    /// Hashes a flow tuple: addresses, then ports if `ports`.
    #[inline]
    pub fn hash_tuple(&self, t: &FlowTuple, ports: bool) -> u32 {
        if t.kind == AddrKind::Ipv4 {
            // Fixed-layout fast path: 8 or 12 lookups straight from the tuple.
            let tb = &self.tables;
            let (s, d) = (&t.src, &t.dst);
            let mut h = tb[0][usize::from(s[0])]
                ^ tb[1][usize::from(s[1])]
                ^ tb[2][usize::from(s[2])]
                ^ tb[3][usize::from(s[3])]
                ^ tb[4][usize::from(d[0])]
                ^ tb[5][usize::from(d[1])]
                ^ tb[6][usize::from(d[2])]
                ^ tb[7][usize::from(d[3])];
            if ports {
                h ^= tb[8][usize::from(t.src_port >> 8)]
                    ^ tb[9][usize::from(t.src_port & 0xff)]
                    ^ tb[10][usize::from(t.dst_port >> 8)]
                    ^ tb[11][usize::from(t.dst_port & 0xff)];
            }
            return h;
        }
        let n = t.kind.addr_len();
        let mut buf = [0u8; MAX_INPUT];
        buf[..n].copy_from_slice(&t.src[..n]);
        buf[n..2 * n].copy_from_slice(&t.dst[..n]);
        let mut len = 2 * n;
        if ports {
            buf[len..len + 2].copy_from_slice(&t.src_port.to_be_bytes());
            buf[len + 2..len + 4].copy_from_slice(&t.dst_port.to_be_bytes());
            len += 4;
        }
        self.hash_prefix(&buf[..len])
    }
}

#[inline(always)]
fn mum(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// The fast symmetric hash: each endpoint (address, port) is folded into a 64-bit value, the
/// two values are ordered (min, max), then mixed with the protocol by two 64x64->128-bit
/// multiplies. Order-then-mix makes it symmetric; all 32 bits carry entropy.
#[inline]
pub fn fast_symmetric(t: &FlowTuple, ports: bool, seed: u64) -> u32 {
    const K0: u64 = 0xa076_1d64_78bd_642f;
    const K1: u64 = 0xe703_7ed1_a0b4_28db;
    const K2: u64 = 0x8ebc_6af0_9c88_c6e3;
    let (sp, dp) = if ports {
        (u64::from(t.src_port), u64::from(t.dst_port))
    } else {
        (0, 0)
    };
    let (a, b) = match t.kind {
        AddrKind::Ipv6 => {
            let s = u128::from_be_bytes(t.src);
            let d = u128::from_be_bytes(t.dst);
            let fold = |x: u128| mum((x >> 64) as u64 ^ K1, x as u64 ^ K2);
            (fold(s) ^ sp, fold(d) ^ dp)
        }
        _ => {
            // Up to 6 address bytes and a port fit in 64 bits exactly.
            let mut s = [0u8; 8];
            let mut d = [0u8; 8];
            s[..6].copy_from_slice(&t.src[..6]);
            d[..6].copy_from_slice(&t.dst[..6]);
            (u64::from_be_bytes(s) | sp, u64::from_be_bytes(d) | dp)
        }
    };
    let lo = a.min(b);
    let hi = a.max(b);
    let h = mum(
        lo ^ seed ^ K0,
        hi ^ K1 ^ (u64::from(t.proto) << 56 | t.kind as u64),
    );
    let h = mum(h ^ K2, seed ^ K0);
    (h ^ (h >> 32)) as u32
}

/// Which hash the software RSS uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashAlgorithm {
    /// Toeplitz with the symmetric key of facts §8 (16 bits of entropy, same as a NIC with
    /// that key would compute for the same tuple).
    #[default]
    ToeplitzSymmetric,
    /// Order-then-mix hash, faster and with 32 bits of entropy; `seed` perturbs it.
    Fast {
        /// Seed.
        seed: u64,
    },
}

/// A ready-to-use hasher for one [`HashAlgorithm`].
#[derive(Debug)]
pub enum FlowHasher {
    /// Table-driven Toeplitz.
    Toeplitz(Toeplitz),
    /// Fast symmetric hash with its seed.
    Fast(u64),
}

impl FlowHasher {
    /// Builds the hasher (Toeplitz precomputes its tables here, once).
    pub fn new(alg: HashAlgorithm) -> FlowHasher {
        match alg {
            HashAlgorithm::ToeplitzSymmetric => FlowHasher::Toeplitz(Toeplitz::new(&SYMMETRIC_KEY)),
            HashAlgorithm::Fast { seed } => FlowHasher::Fast(seed),
        }
    }

    /// Hashes `t`, with ports if `ports`.
    #[inline]
    pub fn hash(&self, t: &FlowTuple, ports: bool) -> u32 {
        match self {
            FlowHasher::Toeplitz(tp) => tp.hash_tuple(t, ports),
            FlowHasher::Fast(seed) => fast_symmetric(t, ports, *seed),
        }
    }
}
