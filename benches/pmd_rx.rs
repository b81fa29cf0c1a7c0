//! floodgate-pmd data path cost: packets per second of the driver's
//! own work, with the NIC model filling the RX ring (and completing TX) outside the timed
//! section.
//!
//! Cases, at batch sizes 1, 8, 32 and 64:
//! * `floor`: touch-only loop over a ring the bench owns: read each descriptor's status and
//!   length, read the first cache line of its buffer, re-arm the descriptor. What any driver
//!   must do at least.
//! * `rx_drop`: `rx_burst` + `IxgbeVf::recycle` (buffers straight back to the RX queue's
//!   cache, ring refilled, one tail write per burst). The driver never reads packet bytes, so
//!   this can beat the floor.
//! * `rx_judged_drop`: `rx_burst_judged` with a judge that reads each frame's first byte and
//!   drops it: no packet is built, every buffer is re-armed in its own descriptor.
//! * `rx_clear`: `rx_burst` + `PacketBatch::clear` (buffers back through the lock-free pool,
//!   as when packets are dropped on another thread).
//! * `rx_touch_drop`: `rx_drop` plus reading the first 8 bytes of each packet: the same memory
//!   traffic as the floor.
//! * `forward`: `rx_burst` + `tx_burst` of the same buffers (+ batched TX reclaim).
//!
//! Each iteration is one packet (Throughput::Elements(1)); criterion's `iter_custom` sums the
//! time of the driver loops only.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use floodgate_pmd::{Config, IxgbeVf, PacketBatch, RxChunk};
use floodgate_sim::{Nic, NicConfig};
use floodgate_vfio::{DmaOptions, DmaRegion};
use std::hint::black_box;
use std::time::{Duration, Instant};

const RING: usize = 4096;
const BATCHES: [usize; 4] = [1, 8, 32, 64];

/// A 60-byte Ethernet/IPv4/UDP frame with correct checksums (the model checks them, as the NIC
/// does, and the driver drops frames it flags as bad).
fn template(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    floodgate_sim::generator::min_udp4_frame(dst, src)
}

fn open(nic: &Nic) -> IxgbeVf<floodgate_sim::SimVf> {
    IxgbeVf::open(
        nic.vf(0),
        Config {
            rx_ring_size: RING,
            tx_ring_size: RING,
            max_queues: Some(1),
            ..Default::default()
        },
    )
    .expect("bring-up against the model")
}

/// The touch-only floor: a ring of RING descriptors and buffers the bench owns.
struct Floor {
    _mem: DmaRegion,
    desc: *mut u64,
    bufs: *mut u8,
    iova: u64,
    next: usize,
}

const FLOOR_BUF: usize = 2048;

impl Floor {
    fn new() -> Floor {
        let mem = DmaRegion::allocate(RING * 16 + RING * FLOOR_BUF, &DmaOptions::default())
            .expect("DMA region");
        let desc = mem.as_ptr() as *mut u64;
        // SAFETY: the buffers follow the ring inside the region.
        let bufs = unsafe { mem.as_ptr().add(RING * 16) };
        let iova = mem.iova() + (RING * 16) as u64;
        Floor {
            _mem: mem,
            desc,
            bufs,
            iova,
            next: 0,
        }
    }

    /// Device side (untimed): completes every descriptor with a 60-byte frame.
    fn fill(&mut self) {
        for i in 0..RING {
            // SAFETY: inside the ring / buffer area of the region.
            unsafe {
                self.bufs.add(i * FLOOR_BUF).write_bytes(0x5a, 60);
                self.desc
                    .add(2 * i + 1)
                    .write_volatile((60u64 << 32) | 0b11);
            }
        }
    }

    /// Driver side (timed): touch `n` descriptors and buffers, re-arm them.
    #[inline(never)]
    fn touch(&mut self, n: usize) -> u64 {
        let mut acc = 0u64;
        for _ in 0..n {
            let i = self.next;
            // SAFETY: i < RING; reads/writes inside the region.
            unsafe {
                let d = self.desc.add(2 * i);
                let st = (d.add(1) as *const u32).read_volatile();
                if st & 1 == 0 {
                    break;
                }
                let len = (d.add(1) as *const u32).add(1).read_volatile() & 0xFFFF;
                let first = (self.bufs.add(i * FLOOR_BUF) as *const u64).read_volatile();
                acc = acc.wrapping_add(first ^ len as u64);
                d.write_volatile(self.iova + (i * FLOOR_BUF) as u64);
                d.add(1).write_volatile(0);
            }
            self.next = (i + 1) & (RING - 1);
        }
        acc
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("pmd_rx");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(500));
    g.sample_size(20);

    let mut floor = Floor::new();
    for &b in &BATCHES {
        g.bench_with_input(BenchmarkId::new("floor", b), &b, |bench, &b| {
            bench.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0u64;
                while done < iters {
                    floor.fill();
                    let chunk = ((iters - done) as usize).min(RING - 1);
                    let t = Instant::now();
                    let mut left = chunk;
                    while left > 0 {
                        let k = left.min(b);
                        black_box(floor.touch(k));
                        left -= k;
                    }
                    total += t.elapsed();
                    done += chunk as u64;
                }
                total
            })
        });
    }

    let nic = Nic::new(NicConfig {
        num_vfs: 1,
        capture_egress: false,
        ..Default::default()
    });
    let mut vf = open(&nic);
    let mac = vf.mac();
    let mut feeder = nic.feeder(0, 0, &template(mac, [0x02, 0xbb, 0, 0, 0, 2]));
    for &b in &BATCHES {
        let mut batch = PacketBatch::new(b);
        g.bench_with_input(BenchmarkId::new("rx_drop", b), &b, |bench, _| {
            bench.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0u64;
                while done < iters {
                    let filled = feeder.fill_max((iters - done) as usize);
                    let t = Instant::now();
                    let mut got = 0;
                    let mut empty = 0u32;
                    while got < filled {
                        let n = vf.rx_burst(0, &mut batch);
                        got += n;
                        vf.recycle(0, &mut batch);
                        empty = if n == 0 { empty + 1 } else { 0 };
                        assert!(empty < 1_000_000, "frames never arrived: {:?}", vf.stats());
                    }
                    total += t.elapsed();
                    done += filled.max(1) as u64;
                }
                total
            })
        });
    }
    // rx_judged_drop: judged in the ring, every frame dropped in place.
    for &b in &BATCHES {
        let mut batch = PacketBatch::new(b);
        g.bench_with_input(BenchmarkId::new("rx_judged_drop", b), &b, |bench, _| {
            bench.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0u64;
                let mut sum = 0u8;
                let mut judge = |c: &RxChunk<'_>| {
                    for i in 0..c.len() {
                        sum = sum.wrapping_add(c.frame(i).first().copied().unwrap_or(0));
                    }
                    u32::MAX
                };
                while done < iters {
                    let filled = feeder.fill_max((iters - done) as usize);
                    let t = Instant::now();
                    let mut got = 0;
                    let mut empty = 0u32;
                    while got < filled {
                        let n = vf.rx_burst_judged(0, &mut batch, &mut judge).received;
                        got += n;
                        empty = if n == 0 { empty + 1 } else { 0 };
                        assert!(empty < 1_000_000, "frames never arrived: {:?}", vf.stats());
                    }
                    total += t.elapsed();
                    done += filled.max(1) as u64;
                }
                black_box(sum);
                total
            })
        });
    }
    // rx_clear: drop through the pool (PacketBatch::clear, usable on any thread).
    for &b in &BATCHES {
        let mut batch = PacketBatch::new(b);
        g.bench_with_input(BenchmarkId::new("rx_clear", b), &b, |bench, _| {
            bench.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0u64;
                while done < iters {
                    let filled = feeder.fill_max((iters - done) as usize);
                    let t = Instant::now();
                    let mut got = 0;
                    let mut empty = 0u32;
                    while got < filled {
                        let n = vf.rx_burst(0, &mut batch);
                        got += n;
                        batch.clear();
                        empty = if n == 0 { empty + 1 } else { 0 };
                        assert!(empty < 1_000_000, "frames never arrived: {:?}", vf.stats());
                    }
                    total += t.elapsed();
                    done += filled.max(1) as u64;
                }
                total
            })
        });
    }
    // rx_touch: like rx_drop, but reads the first 8 bytes of every packet, which is what the
    // floor does (and what any filter must do); compare this one with the floor.
    for &b in &BATCHES {
        let mut batch = PacketBatch::new(b);
        g.bench_with_input(BenchmarkId::new("rx_touch_drop", b), &b, |bench, _| {
            bench.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0u64;
                let mut acc = 0u64;
                while done < iters {
                    let filled = feeder.fill_max((iters - done) as usize);
                    let t = Instant::now();
                    let mut got = 0;
                    while got < filled {
                        got += vf.rx_burst(0, &mut batch);
                        for p in batch.iter() {
                            let d = p.data();
                            acc = acc.wrapping_add(u64::from_ne_bytes([
                                d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7],
                            ]));
                        }
                        vf.recycle(0, &mut batch);
                    }
                    total += t.elapsed();
                    done += filled.max(1) as u64;
                }
                black_box(acc);
                total
            })
        });
    }
    drop(feeder);
    drop(vf);

    // Forward: received frames go back out of the same VF; the model completes TX (DD
    // write-back) between chunks, untimed.
    let nic = Nic::new(NicConfig {
        num_vfs: 1,
        capture_egress: false,
        ..Default::default()
    });
    let mut vf = open(&nic);
    let mac = vf.mac();
    // Source = our MAC so the model's anti-spoofing passes the frames unchanged.
    let mut feeder = nic.feeder(0, 0, &template([0x02, 0xbb, 0, 0, 0, 2], mac));
    for &b in &BATCHES {
        let mut batch = PacketBatch::new(b);
        g.bench_with_input(BenchmarkId::new("forward", b), &b, |bench, _| {
            bench.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0u64;
                while done < iters {
                    nic.complete_tx(0, 0);
                    let want = ((iters - done) as usize).min(RING / 2);
                    let filled = feeder.fill_max(want);
                    let t = Instant::now();
                    let mut got = 0;
                    while got < filled {
                        got += vf.rx_burst(0, &mut batch);
                        vf.tx_burst(0, &mut batch);
                        batch.clear();
                    }
                    total += t.elapsed();
                    done += filled.max(1) as u64;
                }
                total
            })
        });
    }
    let s = vf.stats();
    assert_eq!(
        s.tx.ring_full, 0,
        "TX ring overflowed during the forward bench"
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
