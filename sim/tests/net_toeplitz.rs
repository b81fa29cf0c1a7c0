//! Toeplitz RSS hash: every test vector of facts §8, and the symmetric-key property.

use floodgate_sim::toeplitz::{toeplitz_hash, Toeplitz, MICROSOFT_RSS_KEY, SYMMETRIC_RSS_KEY};

/// (src ip, src port, dst ip, dst port, IPv4-only hash, IPv4+TCP hash) — facts §8.
type Vector = ([u8; 4], u16, [u8; 4], u16, u32, u32);
const VECTORS: [Vector; 5] = [
    (
        [66, 9, 149, 187],
        2794,
        [161, 142, 100, 80],
        1766,
        0x323E_8FC2,
        0x51CC_C178,
    ),
    (
        [199, 92, 111, 2],
        14230,
        [65, 69, 140, 83],
        4739,
        0xD718_262A,
        0xC626_B0EA,
    ),
    (
        [24, 19, 198, 95],
        12898,
        [12, 22, 207, 184],
        38024,
        0xD2D0_A5DE,
        0x5C2B_394A,
    ),
    (
        [38, 27, 205, 30],
        48228,
        [209, 142, 163, 6],
        2217,
        0x8298_9176,
        0xAFC7_327F,
    ),
    (
        [153, 39, 163, 191],
        44251,
        [202, 188, 127, 2],
        1303,
        0x5D18_09C5,
        0x10E8_28A2,
    ),
];

#[test]
fn microsoft_key_vectors_ipv4_only() {
    let t = Toeplitz::new(&MICROSOFT_RSS_KEY);
    for (s, _, d, _, want, _) in VECTORS {
        assert_eq!(t.hash_ipv4(s, d), want, "{s:?} -> {d:?}");
        // The bit-serial reference agrees.
        let mut inp = [0u8; 8];
        inp[..4].copy_from_slice(&s);
        inp[4..].copy_from_slice(&d);
        assert_eq!(toeplitz_hash(&MICROSOFT_RSS_KEY, &inp), want);
    }
}

#[test]
fn microsoft_key_vectors_ipv4_tcp() {
    let t = Toeplitz::new(&MICROSOFT_RSS_KEY);
    for (s, sp, d, dp, _, want) in VECTORS {
        assert_eq!(
            t.hash_ipv4_ports(s, d, sp, dp),
            want,
            "{s:?}:{sp} -> {d:?}:{dp}"
        );
    }
}

#[test]
fn microsoft_key_is_not_symmetric() {
    let t = Toeplitz::new(&MICROSOFT_RSS_KEY);
    let (s, sp, d, dp, _, fwd) = VECTORS[0];
    let rev = t.hash_ipv4_ports(d, s, dp, sp);
    assert_eq!(rev, 0xFDE7_99B2); // facts §8
    assert_ne!(rev, fwd);
}

#[test]
fn symmetric_key_hashes_both_directions_alike() {
    let t = Toeplitz::new(&SYMMETRIC_RSS_KEY);
    let (s, sp, d, dp, _, _) = VECTORS[0];
    // facts §8: both directions of the first vector give 0x9FCC9FCC.
    assert_eq!(t.hash_ipv4_ports(s, d, sp, dp), 0x9FCC_9FCC);
    assert_eq!(t.hash_ipv4_ports(d, s, dp, sp), 0x9FCC_9FCC);
    let mut x = 0xDEAD_BEEF_1234_5678u64;
    for _ in 0..2000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (a, b) = ((x as u32).to_be_bytes(), ((x >> 32) as u32).to_be_bytes());
        let (p, q) = ((x >> 11) as u16, (x >> 27) as u16);
        let h1 = t.hash_ipv4_ports(a, b, p, q);
        assert_eq!(h1, t.hash_ipv4_ports(b, a, q, p));
        assert_eq!(t.hash_ipv4(a, b), t.hash_ipv4(b, a));
        // Upper and lower halves are equal with this key.
        assert_eq!(h1 >> 16, h1 & 0xFFFF);
    }
}

#[test]
fn ipv6_hash_uses_the_whole_input() {
    let t = Toeplitz::new(&MICROSOFT_RSS_KEY);
    let a = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let mut b = a;
    b[15] = 2;
    let h = t.hash_ipv6_ports(&a, &b, 1000, 53);
    assert_eq!(h, {
        let mut inp = [0u8; 36];
        inp[..16].copy_from_slice(&a);
        inp[16..32].copy_from_slice(&b);
        inp[32..34].copy_from_slice(&1000u16.to_be_bytes());
        inp[34..].copy_from_slice(&53u16.to_be_bytes());
        toeplitz_hash(&MICROSOFT_RSS_KEY, &inp)
    });
    // Changing the last port bit changes the hash.
    assert_ne!(h, t.hash_ipv6_ports(&a, &b, 1000, 52));
}
