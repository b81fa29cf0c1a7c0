//! Runs N packets through the driver for instruction counting with callgrind.
//!
//! The model's feeder fills the RX ring (and completes TX) in separate functions, so the
//! driver's share is the inclusive cost of `driver_rx_drop` (drop with `IxgbeVf::recycle`),
//! `driver_rx_clear` (drop with `PacketBatch::clear`), `driver_rx_judged_drop` (a judged receive
//! whose judge reads each frame's first byte and drops everything, in place) or
//! `driver_forward`:
//!
//! ```text
//! cargo build --release -p floodgate-pmd --example instr_count
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     target/release/examples/instr_count rx_drop 1000000 32
//! callgrind_annotate --inclusive=yes /tmp/cg.out | grep driver_
//! ```
//!
//! Divide the inclusive Ir of `driver_*` by the packet count the program prints.

use floodgate_pmd::{Config, IxgbeVf, PacketBatch, RxChunk};
use floodgate_sim::{Feeder, Nic, NicConfig, SimVf};

const RING: usize = 4096;

/// Receives `n` packets and drops them back into the RX queue's cache (`recycle`).
#[inline(never)]
fn driver_rx_drop(vf: &mut IxgbeVf<SimVf>, batch: &mut PacketBatch, n: usize) -> usize {
    let mut got = 0;
    while got < n {
        let k = vf.rx_burst(0, batch);
        if k == 0 {
            break;
        }
        got += k;
        vf.recycle(0, batch);
    }
    got
}

/// Receives `n` packets and drops them through the pool (`PacketBatch::clear`, any thread).
#[inline(never)]
fn driver_rx_clear(vf: &mut IxgbeVf<SimVf>, batch: &mut PacketBatch, n: usize) -> usize {
    let mut got = 0;
    while got < n {
        let k = vf.rx_burst(0, batch);
        if k == 0 {
            break;
        }
        got += k;
        batch.clear();
    }
    got
}

/// Receives `n` frames with a judge that reads each frame's first byte and drops them all in
/// the ring (`rx_burst_judged`: no packets, buffers stay in their descriptors).
#[inline(never)]
fn driver_rx_judged_drop(vf: &mut IxgbeVf<SimVf>, batch: &mut PacketBatch, n: usize) -> usize {
    let mut got = 0;
    let mut sum = 0u8;
    let mut judge = |c: &RxChunk<'_>| {
        for i in 0..c.len() {
            sum = sum.wrapping_add(c.frame(i).first().copied().unwrap_or(0));
        }
        u32::MAX
    };
    while got < n {
        let k = vf.rx_burst_judged(0, batch, &mut judge).received;
        if k == 0 {
            break;
        }
        got += k;
    }
    std::hint::black_box(sum);
    got
}

/// Receives `n` packets and transmits them back.
#[inline(never)]
fn driver_forward(vf: &mut IxgbeVf<SimVf>, batch: &mut PacketBatch, n: usize) -> usize {
    let mut got = 0;
    while got < n {
        let k = vf.rx_burst(0, batch);
        if k == 0 {
            break;
        }
        got += k;
        vf.tx_burst(0, batch);
        batch.clear();
    }
    got
}

/// Model side, not counted.
#[inline(never)]
fn model_fill(feeder: &mut Feeder, n: usize) -> usize {
    feeder.fill_max(n)
}

#[inline(never)]
fn model_complete_tx(nic: &Nic) {
    nic.complete_tx(0, 0);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "rx_drop".into());
    let total: usize = args
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let b: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(32);
    if !["rx_drop", "rx_clear", "rx_judged_drop", "forward"].contains(&mode.as_str()) {
        eprintln!("usage: instr_count rx_drop|rx_clear|rx_judged_drop|forward [packets] [batch]");
        std::process::exit(2);
    }
    let nic = Nic::new(NicConfig {
        num_vfs: 1,
        capture_egress: false,
        ..Default::default()
    });
    let mut vf = IxgbeVf::open(
        nic.vf(0),
        Config {
            rx_ring_size: RING,
            tx_ring_size: RING,
            max_queues: Some(1),
            huge_pages: floodgate_vfio::HugePages::Never,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| {
        eprintln!("bring-up failed: {e}", e = floodgate_vfio::ErrorChain(&e));
        std::process::exit(1)
    });
    let mac = vf.mac();
    let (dst, src) = if mode == "forward" {
        ([0x02, 0xbb, 0, 0, 0, 2], mac)
    } else {
        (mac, [0x02, 0xbb, 0, 0, 0, 2])
    };
    // A UDP frame with correct checksums: the model checks them, as the NIC does.
    let frame = floodgate_sim::generator::min_udp4_frame(dst, src);
    let mut feeder = nic.feeder(0, 0, &frame);
    let mut batch = PacketBatch::new(b);
    let mut done = 0;
    while done < total {
        let want = (total - done).min(RING / 2);
        let filled = model_fill(&mut feeder, want);
        let got = if mode == "rx_drop" {
            driver_rx_drop(&mut vf, &mut batch, filled)
        } else if mode == "rx_clear" {
            driver_rx_clear(&mut vf, &mut batch, filled)
        } else if mode == "rx_judged_drop" {
            driver_rx_judged_drop(&mut vf, &mut batch, filled)
        } else {
            let g = driver_forward(&mut vf, &mut batch, filled);
            model_complete_tx(&nic);
            g
        };
        if got == 0 {
            eprintln!("no progress after {done} packets");
            break;
        }
        done += got;
    }
    let s = vf.stats();
    println!(
        "{mode}: {done} packets at batch {b} (rx {} tx {} ring-full {})",
        s.rx.packets, s.tx.packets, s.tx.ring_full
    );
}
