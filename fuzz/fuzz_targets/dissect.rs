//! Fuzz target for the soft-RSS dissector, hash and metadata.
//!
//! `cargo +nightly fuzz run dissect` (from the repository root). The first input byte picks
//! the configuration, the rest is the frame. Any panic, or an offset outside the frame, is a
//! finding.

#![no_main]

use floodgate::softrss::{
    HashAlgorithm, RssConfig, RssMeta, SoftRss, ABSENT, META_SIZE,
};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn stages() -> &'static [SoftRss] {
    static STAGES: OnceLock<Vec<SoftRss>> = OnceLock::new();
    STAGES.get_or_init(|| {
        let mut v = Vec::new();
        for alg in [
            HashAlgorithm::ToeplitzSymmetric,
            HashAlgorithm::Fast { seed: 0x5eed },
        ] {
            for (depth, decap, ports) in [(3, true, true), (1, true, false), (0, false, true)] {
                let mut cfg = RssConfig {
                    workers: 5,
                    algorithm: alg,
                    hash_ports: ports,
                    ..RssConfig::default()
                };
                cfg.dissect.max_tunnel_depth = depth;
                cfg.dissect.decap = decap;
                if let Ok(r) = SoftRss::new(cfg) {
                    v.push(r);
                }
            }
        }
        v
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, frame)) = data.split_first() else {
        return;
    };
    let stages = stages();
    let rss = &stages[usize::from(sel) % stages.len()];
    let c = rss.classify(frame);
    let d = &c.dissection;
    for off in [d.outer.l2, d.outer.l3, d.outer.l4, d.inner.l2, d.inner.l3, d.inner.l4] {
        assert!(off == ABSENT || usize::from(off) < frame.len());
    }
    assert!(c.worker < rss.workers());
    assert!(d.tunnel_depth <= rss.config().dissect.max_tunnel_depth);
    let mut room = [0u8; META_SIZE];
    c.meta().write_to(&mut room).expect("room is META_SIZE");
    assert_eq!(RssMeta::read_from(&room).expect("just written"), c.meta());
    // Both directions of whatever tuple was found hash alike.
    let mut rev = *d;
    rev.tuple = d.tuple.reversed();
    let mut fwd = *d;
    assert_eq!(rss.hash(&mut fwd), rss.hash(&mut rev));
});
