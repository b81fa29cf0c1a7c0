//! The Internet checksum (RFC 1071) arithmetic the model shares: RX checksum status
//! ([`crate::rxcsum`]), TX checksum offload and TSO ([`crate::txoffload`]) and the traffic
//! generator's frame builders.

/// Adds `b`, as big-endian 16-bit words (an odd last byte padded with 0), to `acc`. Not folded.
/// Eight bytes per step: the two 32-bit halves are added, which is the same sum modulo 0xFFFF.
#[inline]
pub(crate) fn sum(b: &[u8], mut acc: u64) -> u64 {
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let x = u64::from_be_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        acc += (x >> 32) + (x & 0xFFFF_FFFF);
    }
    let mut pairs = words.remainder().chunks_exact(2);
    for p in &mut pairs {
        acc += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a sum to 16 bits with end-around carry.
#[inline]
pub(crate) fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    acc as u16
}
