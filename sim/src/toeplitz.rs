//! Toeplitz hash, as used by 82599/X540 RSS (facts §4.6, §8).
//!
//! For every set bit of the input (most significant bit of byte 0 first) the 32-bit window of the
//! key that starts at that bit position is XORed into the result. The input is source address,
//! destination address, then source port and destination port, all in network order (facts §8).
//!
//! [`toeplitz_hash`] is the plain bit-serial definition; [`Toeplitz`] precomputes one 256-entry
//! table per input byte so that a hash costs one lookup per input byte (used on the hot path).
//!
//! ```
//! use floodgate_sim::toeplitz::{Toeplitz, MICROSOFT_RSS_KEY};
//! let t = Toeplitz::new(&MICROSOFT_RSS_KEY);
//! // facts §8, first vector, IPv4 only.
//! assert_eq!(t.hash_ipv4([66, 9, 149, 187], [161, 142, 100, 80]), 0x323E_8FC2);
//! ```

/// Length of the RSS key in bytes (RSSRK0..9, facts §4.6).
pub const RSS_KEY_LEN: usize = 40;

/// Longest hash input: two IPv6 addresses and two ports.
pub const MAX_INPUT_LEN: usize = 36;

/// The Microsoft/Intel default key (facts §8). DPDK uses it; Linux ixgbe uses a random key.
pub const MICROSOFT_RSS_KEY: [u8; RSS_KEY_LEN] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// The symmetric key: `6d 5a` repeated 20 times (facts §8). Both directions of a flow hash
/// alike, and the upper and lower 16 bits of every hash are equal.
pub const SYMMETRIC_RSS_KEY: [u8; RSS_KEY_LEN] = {
    let mut k = [0u8; RSS_KEY_LEN];
    let mut i = 0;
    while i < RSS_KEY_LEN {
        k[i] = if i % 2 == 0 { 0x6d } else { 0x5a };
        i += 1;
    }
    k
};

/// Bit-serial Toeplitz hash of `input` under `key`. Input bytes beyond
/// [`MAX_INPUT_LEN`] are ignored (the key only covers 36 input bytes).
pub fn toeplitz_hash(key: &[u8; RSS_KEY_LEN], input: &[u8]) -> u32 {
    let mut result = 0u32;
    // `window` holds key bits [pos, pos+64) with bit 63 = key bit `pos`.
    let mut window = u64::from_be_bytes([
        key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7],
    ]);
    for (next_key_byte, &byte) in (8..).zip(input.iter().take(MAX_INPUT_LEN)) {
        for bit in (0..8).rev() {
            if byte >> bit & 1 == 1 {
                result ^= (window >> 32) as u32;
            }
            window <<= 1;
        }
        // Refill the 8 bits just shifted out (the window stays >= 32 bits ahead).
        let kb = key.get(next_key_byte).copied().unwrap_or(0);
        window |= u64::from(kb);
    }
    result
}

/// A key with per-byte lookup tables: `hash = XOR over i of table[i][input[i]]`.
#[derive(Clone)]
pub struct Toeplitz {
    key: [u8; RSS_KEY_LEN],
    table: Box<[[u32; 256]; MAX_INPUT_LEN]>,
}

impl std::fmt::Debug for Toeplitz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toeplitz").field("key", &self.key).finish()
    }
}

impl Toeplitz {
    /// Precomputes the tables for `key` (36 × 256 entries, control path only).
    pub fn new(key: &[u8; RSS_KEY_LEN]) -> Toeplitz {
        let mut table = Box::new([[0u32; 256]; MAX_INPUT_LEN]);
        for (pos, row) in table.iter_mut().enumerate() {
            // The 32-bit key windows for the 8 bit positions of input byte `pos`.
            let mut win = [0u32; 8];
            for (b, w) in win.iter_mut().enumerate() {
                let start = pos * 8 + b;
                let mut v = 0u32;
                for k in 0..32 {
                    let kb = start + k;
                    let bit = key.get(kb / 8).map_or(0, |byte| (byte >> (7 - kb % 8)) & 1);
                    v = (v << 1) | u32::from(bit);
                }
                *w = v;
            }
            for (val, slot) in row.iter_mut().enumerate() {
                let mut h = 0u32;
                for (b, w) in win.iter().enumerate() {
                    if val >> (7 - b) & 1 == 1 {
                        h ^= w;
                    }
                }
                *slot = h;
            }
        }
        Toeplitz { key: *key, table }
    }

    /// The key this table was built from.
    pub fn key(&self) -> &[u8; RSS_KEY_LEN] {
        &self.key
    }

    /// Hash of an arbitrary input (at most [`MAX_INPUT_LEN`] bytes are used).
    #[inline]
    pub fn hash(&self, input: &[u8]) -> u32 {
        input
            .iter()
            .zip(self.table.iter())
            .fold(0, |h, (&b, row)| h ^ row[usize::from(b)])
    }

    /// IPv4 addresses only (RSS type IPv4).
    pub fn hash_ipv4(&self, src: [u8; 4], dst: [u8; 4]) -> u32 {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&src);
        b[4..].copy_from_slice(&dst);
        self.hash(&b)
    }

    /// IPv4 addresses and ports (RSS types IPv4/TCP, IPv4/UDP).
    pub fn hash_ipv4_ports(&self, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> u32 {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&src);
        b[4..8].copy_from_slice(&dst);
        b[8..10].copy_from_slice(&sport.to_be_bytes());
        b[10..].copy_from_slice(&dport.to_be_bytes());
        self.hash(&b)
    }

    /// IPv6 addresses only.
    pub fn hash_ipv6(&self, src: &[u8; 16], dst: &[u8; 16]) -> u32 {
        let mut b = [0u8; 32];
        b[..16].copy_from_slice(src);
        b[16..].copy_from_slice(dst);
        self.hash(&b)
    }

    /// IPv6 addresses and ports.
    pub fn hash_ipv6_ports(&self, src: &[u8; 16], dst: &[u8; 16], sport: u16, dport: u16) -> u32 {
        let mut b = [0u8; 36];
        b[..16].copy_from_slice(src);
        b[16..32].copy_from_slice(dst);
        b[32..34].copy_from_slice(&sport.to_be_bytes());
        b[34..].copy_from_slice(&dport.to_be_bytes());
        self.hash(&b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_bit_serial() {
        let t = Toeplitz::new(&MICROSOFT_RSS_KEY);
        let mut x = 0x1234_5678_9abc_def0u64;
        for len in 0..=MAX_INPUT_LEN {
            let mut inp = [0u8; MAX_INPUT_LEN];
            for b in inp.iter_mut().take(len) {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                *b = (x >> 56) as u8;
            }
            assert_eq!(
                t.hash(&inp[..len]),
                toeplitz_hash(&MICROSOFT_RSS_KEY, &inp[..len])
            );
        }
    }

    #[test]
    fn symmetric_key_words() {
        // facts §8: RSSRK words all 0x5A6D5A6D.
        for c in SYMMETRIC_RSS_KEY.chunks(4) {
            assert_eq!(u32::from_le_bytes([c[0], c[1], c[2], c[3]]), 0x5A6D_5A6D);
        }
    }
}
