//! The dispatcher with the PMD's real zero-copy packets: metadata lands in the pool's headroom,
//! handles move to worker threads and their buffers return to the pool from there.

pub mod softrss_util;

use floodgate::softrss::{Dispatcher, HashAlgorithm, RssConfig, RssMeta, SoftRss};
use floodgate_pmd::{Mempool, MempoolConfig, Packet};
use floodgate_vfio::HugePages;
use softrss_util::*;
use std::thread;

#[test]
fn pmd_packets_through_the_dispatcher_return_to_the_pool() {
    let pool = Mempool::new(&MempoolConfig {
        buffers: 256,
        headroom: 128,
        data_room: 2048,
        huge_pages: HugePages::Never,
    })
    .expect("mempool");
    let rss = SoftRss::new(RssConfig {
        workers: 2,
        algorithm: HashAlgorithm::ToeplitzSymmetric,
        ..RssConfig::default()
    })
    .unwrap();
    let (mut d, queues) = Dispatcher::<Packet>::new(rss, 64).unwrap();
    let workers: Vec<_> = queues
        .into_iter()
        .map(|mut q| {
            thread::spawn(move || {
                let mut n = 0u64;
                loop {
                    match q.pop() {
                        Some(p) => {
                            let m = RssMeta::read_from(p.headroom()).expect("metadata");
                            assert_eq!(usize::from(m.worker), q.index());
                            // Offsets point into this very buffer's frame.
                            let l4 = usize::from(m.inner_l4);
                            let dport = u16::from_be_bytes([p.data()[l4 + 2], p.data()[l4 + 3]]);
                            assert_eq!(dport, m.dst_port);
                            n += 1;
                            drop(p); // buffer back to the pool from this thread
                        }
                        None if q.is_finished() => return n,
                        None => thread::yield_now(),
                    }
                }
            })
        })
        .collect();
    let mut rejected = 0u64;
    let total = 2000u32;
    for i in 0..total {
        let f = flow(i % 50, i.is_multiple_of(2), L4::Tcp);
        let frame = build(
            &f,
            ALL_ENCAPS[i as usize % ALL_ENCAPS.len()],
            false,
            &[0; 16],
        );
        // Wait for a free buffer (the workers are returning them).
        let mut p = loop {
            if let Some(p) = pool.alloc() {
                break p;
            }
            thread::yield_now();
        };
        p.copy_from_slice(&frame).unwrap();
        if d.dispatch(p).is_err() {
            rejected += 1; // dropped here: back to the pool too
        }
    }
    let stats = d.stats();
    drop(d);
    let seen: u64 = workers.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(seen + rejected, u64::from(total));
    assert_eq!(stats.offered, u64::from(total));
    assert_eq!(stats.full(), rejected);
    assert_eq!(pool.available(), pool.capacity(), "every buffer came back");
}
