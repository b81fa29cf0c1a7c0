//! Malformed and truncated frames of every kind never panic, and every reported offset stays
//! inside the frame (proptest; the `cargo fuzz` target in fuzz/ runs the same checks).

mod softrss_util;

use floodgate::softrss::{
    dissect, DissectConfig, Dissection, HashAlgorithm, RssConfig, RssMeta, SoftRss, ABSENT,
};
use proptest::prelude::*;
use softrss_util::*;

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

    #[test]
    fn mutated_valid_frames_never_panic(
        seed in 0usize..72,
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
    }

    #[test]
    fn every_truncation_of_every_encapsulation_is_safe(seed in 0usize..72) {
        let all = seeds();
        let f = &all[seed % all.len()];
        for n in 0..=f.len() {
            let d = dissect(&DissectConfig::default(), &f[..n]);
            check(&d, n);
        }
    }
}
