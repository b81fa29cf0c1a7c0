//! How fast the model's line-rate feeder writes 64-byte frames into one RX ring (issue 2 §6).
//!
//! Each iteration the "driver" re-arms every descriptor and hands the whole ring to the model
//! (not timed); the timed part is `Feeder::fill`, which writes the template, the DD/EOP/length
//! write-back of every descriptor and RDH. Reported as packets per second (Throughput::Elements).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use floodgate_sim::regs::{
    rxq, DCTL_ENABLE, RDBAH, RDBAL, RDH, RDLEN, RDT, RXDCTL, SRRCTL, SRRCTL_DROP_EN,
};
use floodgate_sim::{Nic, NicConfig};
use floodgate_vfio::{Bar, Device, DmaOptions, DmaRegion};

const RING: u32 = 4096;
const BUF: usize = 2048;

fn frame64() -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[0..6].copy_from_slice(&[0x02, 0xf1, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[0x02, 0x99, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[23] = 17;
    f
}

fn bench_feeder(c: &mut Criterion) {
    let nic = Nic::new(NicConfig::default());
    let vf = nic.vf(0);
    let bar = vf.bar0();
    let ring_bytes = RING as usize * 16;
    let region = DmaRegion::allocate(ring_bytes + RING as usize * BUF, &DmaOptions::default())
        .expect("DMA region");
    vf.dma_map(&region).expect("dma_map");
    let base = region.iova();
    let desc = region.as_ptr() as *mut u64;
    let rearm = || {
        for i in 0..RING as usize {
            // SAFETY: descriptor i lies inside the region (ring_bytes bytes at its start).
            unsafe {
                desc.add(2 * i)
                    .write_volatile(base + (ring_bytes + i * BUF) as u64);
                desc.add(2 * i + 1).write_volatile(0);
            }
        }
    };
    rearm();
    bar.write32(rxq(0, RDBAL), base as u32);
    bar.write32(rxq(0, RDBAH), (base >> 32) as u32);
    bar.write32(rxq(0, RDLEN), RING * 16);
    bar.write32(rxq(0, SRRCTL), SRRCTL_DROP_EN | 2);
    bar.write32(rxq(0, RDH), 0);
    bar.write32(rxq(0, RDT), 0);
    bar.write32(rxq(0, RXDCTL), DCTL_ENABLE);
    let mut feeder = nic.feeder(0, 0, &frame64());

    let mut g = c.benchmark_group("model_feeder");
    g.throughput(Throughput::Elements((RING - 1) as u64));
    g.bench_function("fill_64B_one_ring", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                rearm();
                let head = bar.read32(rxq(0, RDH));
                bar.write32(rxq(0, RDT), (head + RING - 1) % RING);
                let t = Instant::now();
                let n = feeder.fill();
                total += t.elapsed();
                assert_eq!(n, (RING - 1) as usize);
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, bench_feeder);
criterion_main!(benches);
