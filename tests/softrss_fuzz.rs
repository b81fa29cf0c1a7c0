//! Malformed and truncated frames of every kind never panic, and every reported offset stays
//! inside the frame (proptest; the `cargo fuzz` target in fuzz/ runs the same checks).

pub mod softrss_util;

use floodgate::softrss::{
    dissect, DissectConfig, Dissection, HashAlgorithm, RssConfig, RssMeta, SoftRss, ABSENT,
};
use proptest::prelude::*;
use softrss_util::*;

/// The general walk only.
const SLOW: DissectConfig = DissectConfig {
    fast_path: false,
    decap: true,
    max_tunnel_depth: 3,
    max_ipv6_ext_headers: 8,
    max_vlan_tags: 4,
    vxlan_port: 4789,
    gtpu_port: 2152,
};

fn check(d: &Dissection, len: usize) {
    for off in [
        d.outer.l2, d.outer.l3, d.outer.l4, d.inner.l2, d.inner.l3, d.inner.l4,
    ] {
        assert!(
            off == ABSENT || usize::from(off) < len,
            "offset {off} past frame of {len}"
        );
    }
    assert!(d.tunnel_depth <= DissectConfig::default().max_tunnel_depth);
}

fn stages() -> &'static [SoftRss] {
    static STAGES: std::sync::OnceLock<Vec<SoftRss>> = std::sync::OnceLock::new();
    STAGES.get_or_init(|| {
        [
            HashAlgorithm::ToeplitzSymmetric,
            HashAlgorithm::Fast { seed: 3 },
        ]
        .into_iter()
        .map(|alg| {
            SoftRss::new(RssConfig {
                workers: 3,
                algorithm: alg,
                ..RssConfig::default()
            })
            .unwrap()
        })
        .collect()
    })
}

fn classify_all(frame: &[u8]) {
    for r in stages() {
        let c = r.classify(frame);
        check(&c.dissection, frame.len());
        assert!(c.worker < 3);
        let mut room = [0u8; 96];
        c.meta().write_to(&mut room).unwrap();
        assert_eq!(RssMeta::read_from(&room).unwrap(), c.meta());
    }
}

fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(build_seeds)
}

fn build_seeds() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for (i, e) in ALL_ENCAPS.iter().enumerate() {
        for l4 in ALL_L4 {
            v.push(build(
                &flow(i as u32, i.is_multiple_of(2), l4),
                *e,
                false,
                &[0x11; 6],
            ));
            v.push(build(
                &flow(i as u32, !i.is_multiple_of(2), l4),
                *e,
                true,
                &[0x22; 40],
            ));
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        classify_all(&bytes);
    }

    /// Random headers that mostly take the fast path: it must agree with the general walk.
    #[test]
    fn fast_path_equals_general_walk(
        v6 in any::<bool>(),
        tcp in any::<bool>(),
        ip in proptest::collection::vec(any::<u8>(), 40),
        l4 in proptest::collection::vec(any::<u8>(), 20),
        tail in 0usize..40,
        len_delta in -3i32..3,
        dport in prop::sample::select(vec![53u16, 2152, 4789, 80]),
    ) {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
        let mut iph = ip.clone();
        let hl = if v6 { 40 } else { 20 };
        iph.truncate(hl);
        let proto = if tcp { 6 } else { 17 };
        let body = 20 + tail;
        if v6 {
            iph[0] = 0x60 | (iph[0] & 0x0f);
            iph[6] = proto;
            iph[4..6].copy_from_slice(&((body as i32 + len_delta).max(0) as u16).to_be_bytes());
        } else {
            iph[0] = 0x45;
            iph[9] = proto;
            // mostly unfragmented: keep DF and sometimes MF, clear the offset
            iph[6] &= 0x60;
            iph[7] = 0;
            iph[2..4].copy_from_slice(&(((20 + body) as i32 + len_delta).max(0) as u16).to_be_bytes());
        }
        f.extend_from_slice(&iph);
        let mut l4h = l4.clone();
        l4h[2..4].copy_from_slice(&dport.to_be_bytes());
        l4h[12] = (l4h[12] & 0x7f).max(0x50);
        f.extend_from_slice(&l4h);
        f.extend(std::iter::repeat_n(0u8, tail));
        let cfg = DissectConfig::default();
        let fast = dissect(&cfg, &f);
        prop_assert_eq!(fast, dissect(&SLOW, &f));
        check(&fast, f.len());
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        seed in 0usize..144,
        cut in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
    ) {
        let all = seeds();
        let mut f = all[seed % all.len()].clone();
        for (at, val) in flips {
            let i = at.index(f.len());
            f[i] = val;
        }
        let n = cut.index(f.len() + 1);
        classify_all(&f[..n]);
        classify_all(&f);
        let cfg = DissectConfig::default();
        prop_assert_eq!(dissect(&cfg, &f), dissect(&SLOW, &f));
        prop_assert_eq!(dissect(&cfg, &f[..n]), dissect(&SLOW, &f[..n]));
    }

    #[test]
    fn every_truncation_of_every_encapsulation_is_safe(seed in 0usize..144) {
        let all = seeds();
        let f = &all[seed % all.len()];
        for n in 0..=f.len() {
            let d = dissect(&DissectConfig::default(), &f[..n]);
            check(&d, n);
            assert_eq!(d, dissect(&SLOW, &f[..n]), "fast path differs at length {n}");
        }
    }
}
