//! How fast the model's line-rate feeder writes 64-byte frames into one RX ring.
//!
//! Each iteration the "driver" re-arms every descriptor and hands the whole ring to the model
//! (not timed); the timed part is `Feeder::fill`, which writes the template, the DD/EOP/length
//! write-back of every descriptor and RDH. Reported as packets per second (Throughput::Elements).
//! A second group measures the TX engine (`Nic::complete_tx`) the same way, and a third the whole
//! switch path into an RX ring: VF 0 transmits, the switch loops each frame back (VEB) into VF 1,
//! whose RX DMA writes it with the full write-back (packet type, RSS, checksum status).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use floodgate_sim::generator::build_udp4;
use floodgate_sim::regs::{
    rxq, txq, DCTL_ENABLE, MBX_REQ, MBX_VFU, MSG_RESET, RDBAH, RDBAL, RDH, RDLEN, RDT, RXDCTL,
    SRRCTL, SRRCTL_DROP_EN, TDBAH, TDBAL, TDH, TDLEN, TDT, TXDCTL, TXD_CMD_DEXT, TXD_CMD_EOP,
    TXD_CMD_IFCS, TXD_CMD_RS, TXD_DTYP_DATA, VFCTRL, VFCTRL_RST, VFMAILBOX, VFMBMEM,
};
use floodgate_sim::{Nic, NicConfig};
use floodgate_vfio::{Bar, Device, DmaOptions, DmaRegion};

const RING: u32 = 4096;
const BUF: usize = 2048;

/// A 64-byte UDP/IPv4 frame with correct lengths and checksums.
fn frame64() -> Vec<u8> {
    let mut f = vec![0u8; 64];
    let n = build_udp4(
        &mut f,
        [0x02, 0xf1, 0, 0, 0, 1],
        [0x02, 0x99, 0, 0, 0, 1],
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        1234,
        53,
        &[0; 22],
    )
    .expect("frame");
    assert_eq!(n, 64);
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

/// The TX engine: 64-byte frames from a 4096-descriptor ring (ring and buffers in separate DMA
/// regions, like a driver's), anti-spoofing, the switch (→ wire), egress counted, capture off.
fn bench_complete_tx(c: &mut Criterion) {
    let nic = Nic::new(NicConfig::default());
    nic.set_egress_capture(false);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    // Minimal bring-up: VF reset and the RESET message (enables the pool's transmit).
    bar.write32(VFCTRL, VFCTRL_RST);
    bar.write32(VFMAILBOX, MBX_VFU);
    bar.write32(VFMBMEM, MSG_RESET);
    bar.write32(VFMAILBOX, MBX_REQ);
    let ring = DmaRegion::allocate(RING as usize * 16, &DmaOptions::default()).expect("ring");
    let bufs = DmaRegion::allocate(RING as usize * BUF, &DmaOptions::default()).expect("bufs");
    vf.dma_map(&ring).expect("dma_map");
    vf.dma_map(&bufs).expect("dma_map");
    let mut f = frame64();
    f[0..6].copy_from_slice(&[0x02, 0x77, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[0x02, 0xf1, 0, 0, 0, 1]);
    let desc = ring.as_ptr() as *mut u64;
    for i in 0..RING as usize {
        let rs = if i % 32 == 31 { TXD_CMD_RS } else { 0 };
        let cmd = TXD_DTYP_DATA | TXD_CMD_DEXT | TXD_CMD_IFCS | TXD_CMD_EOP | rs | 64;
        // SAFETY: descriptor i and buffer i lie inside their regions.
        unsafe {
            std::ptr::copy_nonoverlapping(f.as_ptr(), bufs.as_ptr().add(i * BUF), 64);
            desc.add(2 * i)
                .write_volatile(bufs.iova() + (i * BUF) as u64);
            desc.add(2 * i + 1)
                .write_volatile(u64::from(cmd) | (64u64 << 14) << 32);
        }
    }
    bar.write32(txq(0, TDBAL), ring.iova() as u32);
    bar.write32(txq(0, TDBAH), (ring.iova() >> 32) as u32);
    bar.write32(txq(0, TDLEN), RING * 16);
    bar.write32(txq(0, TDH), 0);
    bar.write32(txq(0, TDT), 0);
    bar.write32(txq(0, TXDCTL), DCTL_ENABLE);

    let mut g = c.benchmark_group("model_tx");
    g.throughput(Throughput::Elements((RING - 1) as u64));
    g.bench_function("complete_tx_64B_one_ring", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let head = bar.read32(txq(0, TDH));
                bar.write32(txq(0, TDT), (head + RING - 1) % RING);
                let t = Instant::now();
                let n = nic.complete_tx(0, 0);
                total += t.elapsed();
                assert_eq!(n, (RING - 1) as usize);
            }
            total
        })
    });
    g.finish();
    assert_eq!(nic.stats().tx_spoofed, 0);
}

/// The switch path into an RX ring: 60-byte UDP/IPv4 frames (correct checksums) from VF 0's TX
/// ring through anti-spoofing and the switch (VEB) into VF 1's 4096-descriptor RX ring, with the
/// whole RX write-back. Timed: `complete_tx`; not timed: re-arming VF 1's ring.
fn bench_veb_rx(c: &mut Criterion) {
    let nic = Nic::new(NicConfig::default());
    nic.set_egress_capture(false);
    for v in 0..2 {
        let bar = nic.vf(v).bar0();
        bar.write32(VFCTRL, VFCTRL_RST);
        bar.write32(VFMAILBOX, MBX_VFU);
        bar.write32(VFMBMEM, MSG_RESET);
        bar.write32(VFMAILBOX, MBX_REQ);
    }
    let (vf0, vf1) = (nic.vf(0), nic.vf(1));
    let (tx_bar, rx_bar) = (vf0.bar0(), vf1.bar0());
    let ring = DmaRegion::allocate(RING as usize * 16, &DmaOptions::default()).expect("ring");
    let bufs = DmaRegion::allocate(RING as usize * BUF, &DmaOptions::default()).expect("bufs");
    let rx_ring = DmaRegion::allocate(RING as usize * 16, &DmaOptions::default()).expect("ring");
    let rx_bufs = DmaRegion::allocate(RING as usize * BUF, &DmaOptions::default()).expect("bufs");
    vf0.dma_map(&ring).expect("dma_map");
    vf0.dma_map(&bufs).expect("dma_map");
    vf1.dma_map(&rx_ring).expect("dma_map");
    vf1.dma_map(&rx_bufs).expect("dma_map");
    let mut f = vec![0u8; 128];
    let len = build_udp4(
        &mut f,
        [0x02, 0xf1, 0, 0, 0, 2],
        [0x02, 0xf1, 0, 0, 0, 1],
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        1234,
        53,
        &[0x5a; 18],
    )
    .expect("frame");
    f.truncate(len);
    let desc = ring.as_ptr() as *mut u64;
    for i in 0..RING as usize {
        let rs = if i % 32 == 31 { TXD_CMD_RS } else { 0 };
        let cmd = TXD_DTYP_DATA | TXD_CMD_DEXT | TXD_CMD_IFCS | TXD_CMD_EOP | rs | len as u32;
        // SAFETY: descriptor i and buffer i lie inside their regions.
        unsafe {
            std::ptr::copy_nonoverlapping(f.as_ptr(), bufs.as_ptr().add(i * BUF), len);
            desc.add(2 * i)
                .write_volatile(bufs.iova() + (i * BUF) as u64);
            desc.add(2 * i + 1)
                .write_volatile(u64::from(cmd) | ((len as u64) << 14) << 32);
        }
    }
    tx_bar.write32(txq(0, TDBAL), ring.iova() as u32);
    tx_bar.write32(txq(0, TDBAH), (ring.iova() >> 32) as u32);
    tx_bar.write32(txq(0, TDLEN), RING * 16);
    tx_bar.write32(txq(0, TDH), 0);
    tx_bar.write32(txq(0, TDT), 0);
    tx_bar.write32(txq(0, TXDCTL), DCTL_ENABLE);
    let rdesc = rx_ring.as_ptr() as *mut u64;
    let rearm = || {
        for i in 0..RING as usize {
            // SAFETY: descriptor i lies inside the RX ring region.
            unsafe {
                rdesc
                    .add(2 * i)
                    .write_volatile(rx_bufs.iova() + (i * BUF) as u64);
                rdesc.add(2 * i + 1).write_volatile(0);
            }
        }
    };
    rearm();
    rx_bar.write32(rxq(0, RDBAL), rx_ring.iova() as u32);
    rx_bar.write32(rxq(0, RDBAH), (rx_ring.iova() >> 32) as u32);
    rx_bar.write32(rxq(0, RDLEN), RING * 16);
    rx_bar.write32(rxq(0, SRRCTL), SRRCTL_DROP_EN | 2);
    rx_bar.write32(rxq(0, RDH), 0);
    rx_bar.write32(rxq(0, RDT), 0);
    rx_bar.write32(rxq(0, RXDCTL), DCTL_ENABLE);

    let mut g = c.benchmark_group("model_veb_rx");
    g.throughput(Throughput::Elements((RING - 1) as u64));
    g.bench_function("tx_switch_rx_60B_udp", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                rearm();
                let rh = rx_bar.read32(rxq(0, RDH));
                rx_bar.write32(rxq(0, RDT), (rh + RING - 1) % RING);
                let head = tx_bar.read32(txq(0, TDH));
                tx_bar.write32(txq(0, TDT), (head + RING - 1) % RING);
                let t = Instant::now();
                let n = nic.complete_tx(0, 0);
                total += t.elapsed();
                assert_eq!(n, (RING - 1) as usize);
                assert_eq!(rx_bar.read32(rxq(0, RDH)), (rh + RING - 1) % RING);
            }
            total
        })
    });
    g.finish();
    let s = nic.stats();
    assert_eq!((s.tx_spoofed, s.rx_no_desc), (0, 0));
}

criterion_group!(benches, bench_feeder, bench_complete_tx, bench_veb_rx);
criterion_main!(benches);
