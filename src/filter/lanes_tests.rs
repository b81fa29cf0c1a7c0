//! Tests of the burst classifier's columns and compares (`lanes.rs`).
use super::*;

/// Frames around the straight path's edges: plain IPv4 with each protocol, options,
/// fragments, VLAN, IPv6, truncations, and random bytes behind a forced IPv4 prefix.
fn frames() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut next = crate::testrand::xorshift64(0x9e37_79b9_7f4a_7c15u64);
    for k in 0..4000 {
        let len = (next() % 90) as usize;
        let mut f: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if k % 4 != 3 && f.len() >= 24 {
            f[12] = 0x08;
            f[13] = 0x00;
            f[14] = if k % 5 == 0 { 0x46 } else { 0x45 };
            f[20] = if k % 7 == 0 { 0x20 } else { 0x40 };
            f[21] = 0;
            f[23] = [6u8, 17, 132, 1, 47][k % 5];
        } else if k % 8 == 3 && f.len() >= 18 {
            f[12] = 0x81;
            f[13] = 0x00;
            f[16] = 0x08;
            f[17] = 0x00;
        }
        out.push(f);
    }
    out
}

#[test]
fn columns_hold_what_the_parser_says() {
    let mut l = Lanes::boxed();
    for (k, f) in frames().iter().enumerate() {
        let i = k % LANES;
        l.begin();
        l.fill(i, f, f.len() as u32);
        l.seal();
        assert_eq!(l.parsed(i), Parsed::parse(f), "frame {f:02x?}");
        assert_eq!(l.wire_len(i), f.len() as u32);
        l.begin();
        l.set(i, &Parsed::parse(f), 7);
        l.seal();
        assert_eq!(l.parsed(i), Parsed::parse(f));
    }
}

#[test]
fn vector_compares_agree_with_plain_ones() {
    let mut col = [0u32; LANES];
    for (i, c) in col.iter_mut().enumerate() {
        *c = [0, 1, 52, 53, 54, 0xffff, 0x1_0000, u32::MAX][i % 8].wrapping_add(i as u32 / 8);
    }
    let ranges: &[&[(u32, u32)]] = &[
        &[],
        &[(53, 53)],
        &[(0, 0)],
        &[(0, u32::MAX)],
        &[(1, 53), (0xffff, 0xffff)],
        &[(54, 60), (0, 1), (u32::MAX - 2, u32::MAX)],
        &[(60, 54), (53, 53)],
    ];
    for r in ranges {
        let want = (0..LANES).fold(0u32, |m, i| {
            let hit = r.iter().any(|&(lo, hi)| lo <= col[i] && col[i] <= hi);
            m | u32::from(hit) << i
        });
        let rs = Ranges::<u32>::new(r);
        assert_eq!(in_ranges(&col, &rs), want, "{r:?}");
        let one_by_one = (0..LANES).fold(0u32, |m, i| m | u32::from(rs.contains(col[i])) << i);
        assert_eq!(one_by_one, want, "{r:?}");
    }
    let col16: [u16; LANES] = std::array::from_fn(|i| {
        [0u16, 1, 52, 53, 54, 0x7fff, 0x8000, u16::MAX][i % 8].wrapping_add(i as u16 / 8)
    });
    let ranges16: &[&[(u16, u16)]] = &[
        &[],
        &[(53, 53)],
        &[(0, 0)],
        &[(0, u16::MAX)],
        &[(1, 53), (0x7fff, 0x8001)],
        &[(54, 60), (0, 1), (u16::MAX - 2, u16::MAX)],
        &[(60, 54), (53, 53)],
    ];
    for r in ranges16 {
        let want = (0..LANES).fold(0u32, |m, i| {
            let hit = r.iter().any(|&(lo, hi)| lo <= col16[i] && col16[i] <= hi);
            m | u32::from(hit) << i
        });
        let rs = Ranges::<u16>::new(r);
        assert_eq!(in_ranges16(&col16, &rs), want, "{r:?}");
        let one_by_one = (0..LANES).fold(0u32, |m, i| m | u32::from(rs.contains(col16[i])) << i);
        assert_eq!(one_by_one, want, "{r:?}");
    }
    let bytes: [u8; LANES] = std::array::from_fn(|i| (i % 7) as u8);
    for v in 0..8u8 {
        let want = (0..LANES).fold(0u32, |m, i| m | u32::from(bytes[i] == v) << i);
        assert_eq!(eq_u8(&bytes, v), want);
    }
}

/// Whole chunks through `Lanes::load`, where groups of four frames take the four-at-once
/// fill when all four are on the straight path: every lane must read back as the parser
/// says, and the byte sum must be the frames' lengths. Groups mix plain frames with a
/// fragment, options, a short frame (37 and 38 bytes are the edge) or another EtherType.
#[test]
fn full_chunks_filled_four_at_once_hold_what_the_parser_says() {
    let mut next = crate::testrand::xorshift64(0x2545_f491_4f6c_dd1du64);
    let mut l = Lanes::boxed();
    let mut plain_groups = 0;
    for round in 0..400 {
        let frames: Vec<Vec<u8>> = (0..LANES)
            .map(|_| {
                let len = match next() % 8 {
                    0 => 37,
                    1 => 38,
                    _ => 38 + (next() % 60) as usize,
                };
                let mut f: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                // Most frames plain IPv4 (so that whole groups of four are); some spoiled.
                f[12] = 0x08;
                f[13] = 0x00;
                f[14] = 0x45;
                f[20] &= 0x40;
                f[21] = 0;
                f[23] = [6u8, 17, 132, 1, 17][(next() % 5) as usize];
                match (next() % 24, round % 2) {
                    (0, _) => f[14] = 0x46,
                    (1, _) => f[20] = 0x20,
                    (5, _) => f[20] |= 0x10,
                    (2, _) => f[21] = 1,
                    (3, _) => f[13] = 0xdd,
                    (4, 1) => f[12] = 0x86,
                    _ => {}
                }
                f
            })
            .collect();
        plain_groups += frames
            .chunks(4)
            .filter(|g| g.iter().all(|f| PlainV4::read(f).is_some()))
            .count();
        let bytes = l.load(&frames[..], 0, u32::MAX, true);
        assert_eq!(bytes, frames.iter().map(|f| f.len() as u64).sum::<u64>());
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(
                l.parsed(i),
                Parsed::parse(f),
                "round {round} lane {i}: {f:02x?}"
            );
            assert_eq!(l.wire_len(i), f.len() as u32);
        }
        let v4 = frames.iter().enumerate().fold(0u32, |m, (i, f)| {
            m | u32::from(matches!(Parsed::parse(f).l3, L3::V4 { .. })) << i
        });
        assert_eq!(l.families(true, false), v4, "round {round}");
    }
    // The four-at-once path really ran (most groups are all plain).
    assert!(
        plain_groups > 400 * 8 / 4,
        "only {plain_groups} plain groups"
    );
}
