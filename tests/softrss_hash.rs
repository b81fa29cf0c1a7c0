//! Toeplitz (facts §8 vectors, table == bitwise, symmetric key) and the fragment rule.

pub mod softrss_util;

use floodgate::softrss::{
    fast_symmetric, flags, toeplitz_bitwise, AddrKind, FlowTuple, HashAlgorithm, RssConfig,
    SoftRss, Toeplitz, MICROSOFT_KEY, SYMMETRIC_KEY,
};
use softrss_util::*;

/// (src ip, src port, dst ip, dst port, IPv4-only hash, IPv4+TCP hash) from facts §8.
type Vector = ([u8; 4], u16, [u8; 4], u16, u32, u32);
const VECTORS: [Vector; 5] = [
    (
        [66, 9, 149, 187],
        2794,
        [161, 142, 100, 80],
        1766,
        0x323E8FC2,
        0x51CCC178,
    ),
    (
        [199, 92, 111, 2],
        14230,
        [65, 69, 140, 83],
        4739,
        0xD718262A,
        0xC626B0EA,
    ),
    (
        [24, 19, 198, 95],
        12898,
        [12, 22, 207, 184],
        38024,
        0xD2D0A5DE,
        0x5C2B394A,
    ),
    (
        [38, 27, 205, 30],
        48228,
        [209, 142, 163, 6],
        2217,
        0x82989176,
        0xAFC7327F,
    ),
    (
        [153, 39, 163, 191],
        44251,
        [202, 188, 127, 2],
        1303,
        0x5D1809C5,
        0x10E828A2,
    ),
];

fn tuple4(s: [u8; 4], sp: u16, d: [u8; 4], dp: u16) -> FlowTuple {
    let mut t = FlowTuple {
        kind: AddrKind::Ipv4,
        proto: 6,
        has_ports: true,
        src_port: sp,
        dst_port: dp,
        ..FlowTuple::default()
    };
    t.src[..4].copy_from_slice(&s);
    t.dst[..4].copy_from_slice(&d);
    t
}

#[test]
fn microsoft_key_reproduces_facts_vectors() {
    let table = Toeplitz::new(&MICROSOFT_KEY);
    for (s, sp, d, dp, ip_only, with_tcp) in VECTORS {
        let t = tuple4(s, sp, d, dp);
        assert_eq!(table.hash_tuple(&t, false), ip_only, "{s:?} -> {d:?}");
        assert_eq!(table.hash_tuple(&t, true), with_tcp, "{s:?} -> {d:?} TCP");
        let mut input = Vec::new();
        input.extend_from_slice(&s);
        input.extend_from_slice(&d);
        input.extend_from_slice(&sp.to_be_bytes());
        input.extend_from_slice(&dp.to_be_bytes());
        assert_eq!(toeplitz_bitwise(&MICROSOFT_KEY, &input).unwrap(), with_tcp);
        assert_eq!(table.hash(&input).unwrap(), with_tcp);
    }
    // The Microsoft key is not symmetric (facts §8).
    let (s, sp, d, dp, ..) = VECTORS[0];
    assert_eq!(table.hash_tuple(&tuple4(d, dp, s, sp), true), 0xFDE799B2);
}

#[test]
fn symmetric_key_facts_value_and_halves() {
    let table = Toeplitz::new(&SYMMETRIC_KEY);
    let (s, sp, d, dp, ..) = VECTORS[0];
    assert_eq!(table.hash_tuple(&tuple4(s, sp, d, dp), true), 0x9FCC9FCC);
    assert_eq!(table.hash_tuple(&tuple4(d, dp, s, sp), true), 0x9FCC9FCC);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..2000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_be_bytes();
        let t = tuple4(
            [b[0], b[1], b[2], b[3]],
            x as u16,
            [b[4], b[5], b[6], b[7]],
            (x >> 20) as u16,
        );
        let h = table.hash_tuple(&t, true);
        assert_eq!(h, table.hash_tuple(&t.reversed(), true));
        assert_eq!(h >> 16, h & 0xffff);
    }
}

#[test]
fn table_driven_equals_bitwise_on_random_inputs() {
    let keys = [SYMMETRIC_KEY, MICROSOFT_KEY, {
        let mut k = [0u8; 40];
        for (i, b) in k.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(151).wrapping_add(7);
        }
        k
    }];
    let mut x = 0x0123_4567_89ab_cdefu64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for key in keys {
        let table = Toeplitz::new(&key);
        for _ in 0..3000 {
            let len = (next() % 37) as usize;
            let input: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            assert_eq!(
                table.hash(&input).unwrap(),
                toeplitz_bitwise(&key, &input).unwrap(),
                "{input:02x?}"
            );
        }
        assert!(table.hash(&[0u8; 37]).is_err());
        assert!(toeplitz_bitwise(&key, &[0u8; 37]).is_err());
    }
}

#[test]
fn hashes_are_symmetric_for_ipv6_and_all_algorithms() {
    let table = Toeplitz::new(&SYMMETRIC_KEY);
    for i in 0..500u32 {
        for v6 in [false, true] {
            let f = flow(i, v6, L4::Udp);
            let r = SoftRss::new(RssConfig::default()).unwrap();
            let t = r
                .classify(&build(&f, Encap::Plain, false, &[]))
                .dissection
                .tuple;
            assert_eq!(
                table.hash_tuple(&t, true),
                table.hash_tuple(&t.reversed(), true)
            );
            assert_eq!(
                table.hash_tuple(&t, false),
                table.hash_tuple(&t.reversed(), false)
            );
            for seed in [0, 99] {
                assert_eq!(
                    fast_symmetric(&t, true, seed),
                    fast_symmetric(&t.reversed(), true, seed)
                );
            }
        }
    }
}

/// Splits `payload` (the L4 header and data of one datagram) into 3 IPv4 fragments.
fn frag4(f: &Flow, l4_and_data: &[u8]) -> Vec<Vec<u8>> {
    let (s, d) = match (f.src, f.dst) {
        (Ip::V4(s), Ip::V4(d)) => (s, d),
        _ => unreachable!(),
    };
    let pieces = [&l4_and_data[..24], &l4_and_data[24..48], &l4_and_data[48..]];
    pieces
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let ip = ipv4_full(s, d, f.proto(), &[], (k < 2, (k * 3) as u16), p);
            eth(MAC_A, MAC_B, &[], 0x0800, &ip)
        })
        .collect()
}

fn frag6(f: &Flow, l4_and_data: &[u8]) -> Vec<Vec<u8>> {
    let (s, d) = match (f.src, f.dst) {
        (Ip::V6(s), Ip::V6(d)) => (s, d),
        _ => unreachable!(),
    };
    let pieces = [&l4_and_data[..24], &l4_and_data[24..48], &l4_and_data[48..]];
    pieces
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let off_m = ((k * 3) as u16) << 3 | u16::from(k < 2);
            let mut body = off_m.to_be_bytes().to_vec();
            body.extend_from_slice(&0xabcdu32.to_be_bytes());
            let ip = ipv6_full(s, d, f.proto(), &[(0, vec![0; 6]), (44, body)], p);
            eth(MAC_A, MAC_B, &[], 0x86dd, &ip)
        })
        .collect()
}

#[test]
fn all_fragments_of_a_datagram_reach_one_worker() {
    for alg in [
        HashAlgorithm::ToeplitzSymmetric,
        HashAlgorithm::Fast { seed: 5 },
    ] {
        let r = SoftRss::new(RssConfig {
            workers: 7,
            algorithm: alg,
            ..RssConfig::default()
        })
        .unwrap();
        let addr_only = Toeplitz::new(&SYMMETRIC_KEY);
        for i in 0..200 {
            for v6 in [false, true] {
                for l4k in [L4::Udp, L4::Tcp, L4::Icmp] {
                    let f = flow(i, v6, l4k);
                    let body = l4(&f, &[0x5a; 64]);
                    for dir in [f, f.reversed()] {
                        let body = l4(&dir, &[0x5a; 64]);
                        let frames = if v6 {
                            frag6(&dir, &body)
                        } else {
                            frag4(&dir, &body)
                        };
                        let cs: Vec<_> = frames.iter().map(|fr| r.classify(fr)).collect();
                        let ctx = format!("{alg:?} flow {i} v6={v6} {l4k:?}");
                        // first fragment: flagged, ports read but not hashed
                        let d0 = &cs[0].dissection;
                        assert_ne!(d0.flags & flags::FIRST_FRAGMENT, 0, "{ctx}");
                        assert_eq!(d0.flags & flags::HASHED_PORTS, 0, "{ctx}");
                        if l4k != L4::Icmp {
                            assert!(d0.tuple.has_ports, "{ctx}");
                            assert_eq!(d0.tuple.src_port, dir.sport, "{ctx}");
                            assert_ne!(d0.flags & flags::HAS_PORTS, 0, "{ctx}");
                        }
                        assert_ne!(d0.inner.l4, floodgate::softrss::ABSENT, "{ctx}");
                        for c in &cs[1..] {
                            let d = &c.dissection;
                            assert_ne!(d.flags & flags::FRAGMENT, 0, "{ctx}");
                            assert_eq!(d.flags & flags::FIRST_FRAGMENT, 0, "{ctx}");
                            assert_eq!(d.inner.l4, floodgate::softrss::ABSENT, "{ctx}");
                            assert!(!d.tuple.has_ports, "{ctx}");
                        }
                        for c in &cs {
                            assert_eq!(c.hash, cs[0].hash, "{ctx}");
                            assert_eq!(c.worker, cs[0].worker, "{ctx}");
                            assert_eq!(c.dissection.tuple.proto, f.proto(), "{ctx}");
                            if alg == HashAlgorithm::ToeplitzSymmetric {
                                // addresses only: Toeplitz over src || dst
                                let mut inp = dir.src.bytes();
                                inp.extend(dir.dst.bytes());
                                assert_eq!(c.hash, addr_only.hash(&inp).unwrap(), "{ctx}");
                            }
                        }
                    }
                    // both directions' fragments together too
                    let a = r.classify(
                        &(if v6 {
                            frag6(&f, &body)
                        } else {
                            frag4(&f, &body)
                        })[2],
                    );
                    let rb = l4(&f.reversed(), &[0x5a; 64]);
                    let b = r.classify(
                        &(if v6 {
                            frag6(&f.reversed(), &rb)
                        } else {
                            frag4(&f.reversed(), &rb)
                        })[1],
                    );
                    assert_eq!(a.worker, b.worker);
                }
            }
        }
    }
}

#[test]
fn fragmented_tunnel_packets_hash_on_outer_addresses() {
    let r = SoftRss::new(RssConfig {
        workers: 5,
        ..RssConfig::default()
    })
    .unwrap();
    let f = flow(9, false, L4::Udp);
    let frame = build(&f, Encap::GtpU, false, &[0; 64]);
    // Turn the outer IPv4 (at 14) into a first fragment: MF set.
    let mut first = frame.clone();
    first[14 + 6] |= 0x20;
    let d = r.classify(&first).dissection;
    assert_eq!(d.tunnel_depth, 0, "fragments are never decapsulated");
    assert_ne!(d.flags & flags::FRAGMENT, 0);
    assert_eq!(&d.tuple.src[..4], &[192, 0, 2, 1]);
    // A later piece of the same outer datagram goes to the same worker.
    let mut later = frame.clone();
    later[14 + 7] = 8;
    assert_eq!(r.classify(&later).worker, r.classify(&first).worker);

    // Inner fragmentation inside GTP-U: inner addresses only.
    let body = l4(&f, &[1; 64]);
    let pieces = frag4(&f, &body);
    let mut workers = Vec::new();
    for p in &pieces {
        let inner = &p[14..];
        let frame = eth(
            MAC_A,
            MAC_B,
            &[],
            0x0800,
            &ip(
                v4(192, 0, 2, 1),
                v4(198, 51, 100, 7),
                17,
                &udp(2152, 2152, &gtpu(1, true, inner)),
            ),
        );
        let c = r.classify(&frame);
        assert_eq!(c.dissection.tunnel_depth, 1);
        assert_ne!(c.dissection.flags & flags::FRAGMENT, 0);
        workers.push(c.worker);
    }
    assert!(workers.iter().all(|w| *w == workers[0]));
}

#[test]
fn addresses_only_mode_keeps_fragmented_and_whole_packets_together() {
    let r = SoftRss::new(RssConfig {
        workers: 7,
        hash_ports: false,
        ..RssConfig::default()
    })
    .unwrap();
    for i in 0..100 {
        let f = flow(i, i.is_multiple_of(2), L4::Udp);
        let whole = r.classify(&build(&f, Encap::Plain, false, &[0; 64]));
        let body = l4(&f, &[0; 64]);
        let frags = if i.is_multiple_of(2) {
            frag6(&f, &body)
        } else {
            frag4(&f, &body)
        };
        for fr in &frags {
            assert_eq!(r.classify(fr).hash, whole.hash);
        }
        assert_eq!(whole.dissection.flags & flags::HASHED_PORTS, 0);
    }
}
