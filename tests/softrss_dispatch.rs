//! Dispatcher: order within a flow under load, accounting, full rings, buffers dropped on the
//! worker threads, metadata readable by workers.

pub mod softrss_util;

use floodgate::softrss::{
    Dispatcher, FramePacket, HashAlgorithm, RssConfig, RssMeta, SoftRss, WorkerQueue,
};
use softrss_util::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

/// A test packet: owns its bytes, records where it was dropped.
struct TestPkt {
    data: Vec<u8>,
    headroom: Vec<u8>,
    drops: Arc<Drops>,
    main: thread::ThreadId,
}

#[derive(Default)]
struct Drops {
    on_main: AtomicU64,
    elsewhere: AtomicU64,
}

impl Drop for TestPkt {
    fn drop(&mut self) {
        if thread::current().id() == self.main {
            self.drops.on_main.fetch_add(1, Ordering::Relaxed);
        } else {
            self.drops.elsewhere.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl FramePacket for TestPkt {
    fn data(&self) -> &[u8] {
        &self.data
    }
    fn headroom(&self) -> &[u8] {
        &self.headroom
    }
    fn headroom_mut(&mut self) -> &mut [u8] {
        &mut self.headroom
    }
}

fn rss(workers: usize) -> SoftRss {
    SoftRss::new(RssConfig {
        workers,
        algorithm: HashAlgorithm::Fast { seed: 7 },
        ..RssConfig::default()
    })
    .unwrap()
}

/// Frame for packet `seq` of flow `f`, alternating directions and encapsulations; the
/// sequence number and flow id ride in the payload.
fn frame(fid: u32, seq: u32) -> Vec<u8> {
    let f = flow(fid, fid.is_multiple_of(3), L4::Udp);
    let encap = ALL_ENCAPS[fid as usize % ALL_ENCAPS.len()];
    let mut payload = fid.to_be_bytes().to_vec();
    payload.extend_from_slice(&seq.to_be_bytes());
    if seq.is_multiple_of(2) {
        build(&f, encap, false, &payload)
    } else {
        build(&f.reversed(), encap, true, &payload)
    }
}

fn tail_ids(data: &[u8]) -> (u32, u32) {
    let n = data.len();
    let fid = u32::from_be_bytes(data[n - 8..n - 4].try_into().unwrap());
    let seq = u32::from_be_bytes(data[n - 4..].try_into().unwrap());
    (fid, seq)
}

struct WorkerResult {
    index: usize,
    seen: u64,
    /// flow id -> sequence numbers in arrival order
    flows: HashMap<u32, Vec<u32>>,
}

fn worker(mut q: WorkerQueue<TestPkt>) -> WorkerResult {
    let mut r = WorkerResult {
        index: q.index(),
        seen: 0,
        flows: HashMap::new(),
    };
    let mut burst = Vec::with_capacity(32);
    loop {
        if q.pop_burst(&mut burst, 32) == 0 {
            if q.is_finished() {
                return r;
            }
            thread::yield_now();
            continue;
        }
        for p in burst.drain(..) {
            let m = RssMeta::read_from(p.headroom()).expect("metadata written by dispatcher");
            assert_eq!(
                usize::from(m.worker),
                q.index(),
                "metadata names this worker"
            );
            let (fid, seq) = tail_ids(p.data());
            r.flows.entry(fid).or_default().push(seq);
            r.seen += 1;
            drop(p); // buffer released on the worker thread
        }
    }
}

#[test]
fn order_within_flows_and_accounting_under_load() {
    const WORKERS: usize = 3;
    const FLOWS: u32 = 97;
    const PER_FLOW: u32 = 120;
    let drops = Arc::new(Drops::default());
    let main = thread::current().id();
    // Small rings so that some packets find them full.
    let (mut d, queues) = Dispatcher::<TestPkt>::new(rss(WORKERS), 16).unwrap();
    let handles: Vec<_> = queues
        .into_iter()
        .map(|q| thread::spawn(move || worker(q)))
        .collect();
    let mut rejected = 0u64;
    for seq in 0..PER_FLOW {
        for fid in 0..FLOWS {
            let p = TestPkt {
                data: frame(fid, seq),
                headroom: vec![0; 128],
                drops: Arc::clone(&drops),
                main,
            };
            if let Err(rej) = d.dispatch(p) {
                assert!(rej.worker < WORKERS);
                rejected += 1;
                drop(rej.packet);
            }
        }
    }
    let before_close = d.stats();
    drop(d); // closes the rings
    let results: Vec<WorkerResult> = handles.into_iter().map(|h| h.join().unwrap()).collect();

    let offered = u64::from(FLOWS * PER_FLOW);
    assert_eq!(before_close.offered, offered);
    assert_eq!(before_close.full(), rejected);
    assert_eq!(before_close.enqueued() + before_close.full(), offered);
    assert_eq!(before_close.no_meta, 0);

    let mut flow_worker: HashMap<u32, usize> = HashMap::new();
    let mut total_seen = 0;
    for r in &results {
        total_seen += r.seen;
        for (fid, seqs) in &r.flows {
            // One flow (both directions) -> one worker.
            assert_eq!(
                *flow_worker.entry(*fid).or_insert(r.index),
                r.index,
                "flow {fid}"
            );
            // Order preserved (gaps only where a ring was full).
            assert!(seqs.windows(2).all(|w| w[0] < w[1]), "flow {fid}: {seqs:?}");
        }
    }
    assert_eq!(total_seen + rejected, offered, "every packet accounted for");
    // Per-worker counters add up.
    let q = queues_stats_after(&results, &before_close);
    assert_eq!(q, total_seen);
    // Every buffer was released: the dequeued ones on worker threads, rejected ones here.
    assert_eq!(drops.elsewhere.load(Ordering::Relaxed), total_seen);
    assert_eq!(drops.on_main.load(Ordering::Relaxed), rejected);
    // Flows really were spread.
    let used: std::collections::HashSet<_> = flow_worker.values().collect();
    assert_eq!(used.len(), WORKERS);
}

fn queues_stats_after(results: &[WorkerResult], s: &floodgate::softrss::DispatchStats) -> u64 {
    // `s` was taken before the workers finished; enqueued is final (the producer was done).
    let seen: u64 = results.iter().map(|r| r.seen).sum();
    for r in results {
        assert_eq!(s.workers[r.index].enqueued, r.seen, "worker {}", r.index);
    }
    seen
}

#[test]
fn full_ring_is_counted_and_packet_returned() {
    let drops = Arc::new(Drops::default());
    let main = thread::current().id();
    let (mut d, mut queues) = Dispatcher::<TestPkt>::new(rss(2), 2).unwrap();
    let mk = |seq| TestPkt {
        data: frame(5, seq),
        headroom: vec![0; 128],
        drops: Arc::clone(&drops),
        main,
    };
    let mut ok = Vec::new();
    let mut rejected = 0;
    for seq in 0..5 {
        match d.dispatch(mk(seq)) {
            Ok(w) => ok.push(w),
            Err(r) => {
                rejected += 1;
                assert_eq!(r.worker, ok[0]);
            }
        }
    }
    assert_eq!(ok.len(), 2);
    assert_eq!(rejected, 3);
    assert!(d.under_pressure(), "a full ring is under pressure");
    let s = d.stats();
    assert_eq!(s.offered, 5);
    assert_eq!(s.workers[ok[0]].full, 3);
    assert_eq!(s.workers[ok[0]].enqueued, 2);
    assert_eq!(s.workers[ok[0]].queued, 2);
    assert_eq!(drops.on_main.load(Ordering::Relaxed), 3);
    // dispatch_burst drops the overflow itself and counts it.
    let w = ok[0];
    assert_eq!(d.dispatch_burst((5..9).map(mk)), 0);
    assert_eq!(d.stats().workers[w].full, 7);
    assert_eq!(drops.on_main.load(Ordering::Relaxed), 7);
    let q = &mut queues[w];
    assert_eq!(tail_ids(q.pop().unwrap().data()), (5, 0));
    assert!(
        !d.under_pressure(),
        "one of two slots used: not three quarters"
    );
    assert_eq!(tail_ids(q.pop().unwrap().data()), (5, 1));
    assert!(q.pop().is_none());
    assert!(!q.is_finished());
    d.close();
    assert!(q.is_finished());
    let s = q.stats();
    assert_eq!(s.offered, s.enqueued() + s.full());
    assert_eq!(s.enqueued(), s.dequeued() + s.queued());
}

#[test]
fn small_headroom_is_counted_not_fatal() {
    let drops = Arc::new(Drops::default());
    let (mut d, mut queues) = Dispatcher::<TestPkt>::new(rss(1), 8).unwrap();
    let p = TestPkt {
        data: frame(1, 0),
        headroom: vec![0; 16],
        drops: Arc::clone(&drops),
        main: thread::current().id(),
    };
    assert!(matches!(d.dispatch(p), Ok(0)));
    assert_eq!(d.stats().no_meta, 1);
    let p = queues[0].pop().unwrap();
    assert!(RssMeta::read_from(p.headroom()).is_err());
}

#[test]
fn bad_configs_are_errors() {
    assert!(SoftRss::new(RssConfig {
        workers: 0,
        ..RssConfig::default()
    })
    .is_err());
    assert!(Dispatcher::<TestPkt>::new(rss(2), 0).is_err());
}
