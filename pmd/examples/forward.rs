//! Receives packets and transmits them back out of the same VF (zero copy: the received buffer
//! goes onto the TX ring), printing the rate once a second.
//!
//! Runs against the NIC model's threaded engine (feeder on RX, doorbell polling on TX):
//!
//! ```text
//! cargo run --release -p floodgate-pmd --example forward -- --seconds 3 [--batch 32]
//! ```

use floodgate_pmd::{Config, IxgbeVf, PacketBatch};
use floodgate_sim::engine::FeederConfig;
use floodgate_sim::{EngineConfig, Nic, NicConfig};
use std::time::{Duration, Instant};

fn parse() -> Result<(u64, usize), String> {
    let (mut seconds, mut batch) = (3u64, 32usize);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let v = it.next().and_then(|v| v.parse::<u64>().ok());
        match (a.as_str(), v) {
            ("--seconds", Some(v)) => seconds = v,
            ("--batch", Some(v)) => batch = v as usize,
            _ => return Err("usage: forward [--seconds N] [--batch B]".into()),
        }
    }
    Ok((seconds, batch))
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let (seconds, batch_size) = parse().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let nic = Nic::new(NicConfig {
        num_vfs: 1,
        capture_egress: false,
        ..Default::default()
    });
    let mut vf = IxgbeVf::open(nic.vf(0), Config::default()).unwrap_or_else(|e| {
        eprintln!("bring-up failed: {e}", e = floodgate_vfio::ErrorChain(&e));
        std::process::exit(1)
    });
    let mac = vf.mac();
    // Frames to us from a peer; we send them back with the addresses swapped.
    // (A UDP frame with correct checksums: the model checks them, as the NIC does.)
    let template = floodgate_sim::generator::min_udp4_frame(mac, [0x02, 0xbb, 0, 0, 0, 2]);
    let engine = nic.start_engine(EngineConfig {
        feeder: Some(FeederConfig {
            vf: 0,
            queue: 0,
            template,
        }),
        process_tx: true,
        process_ingress: false,
        ..Default::default()
    });
    println!("forward: batch {batch_size}, {seconds} s");
    let mut batch = PacketBatch::new(batch_size);
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let (mut last, mut last_tx) = (start, 0u64);
    loop {
        for _ in 0..1024 {
            if vf.rx_burst(0, &mut batch) == 0 {
                continue;
            }
            for p in batch.iter_mut() {
                let d = p.data_mut();
                d.copy_within(6..12, 0);
                d[6..12].copy_from_slice(&mac);
            }
            vf.tx_burst(0, &mut batch);
            // Whatever did not fit in the TX ring is dropped (buffers back to the RX cache).
            vf.recycle(0, &mut batch);
        }
        let now = Instant::now();
        if now.duration_since(last) >= Duration::from_secs(1) || now >= end {
            if let Err(e) = vf.maintain() {
                eprintln!("maintenance: {e}", e = floodgate_vfio::ErrorChain(&e));
            }
            let s = vf.stats();
            println!(
                "{:6.2} Mpps forwarded | rx {} | tx {} completed {} ring-full {} | hw tx {}",
                (s.tx.packets - last_tx) as f64 / now.duration_since(last).as_secs_f64() / 1e6,
                s.rx.packets,
                s.tx.packets,
                s.tx.completed,
                s.tx.ring_full,
                s.hw.tx_packets
            );
            last = now;
            last_tx = s.tx.packets;
            if now >= end {
                break;
            }
        }
    }
    let es = engine.stop();
    let s = vf.stats();
    println!(
        "total: {} forwarded in {:.2} s = {:.2} Mpps (model fed {}, fetched {} from TX)",
        s.tx.packets,
        start.elapsed().as_secs_f64(),
        s.tx.packets as f64 / start.elapsed().as_secs_f64() / 1e6,
        es.fed,
        es.tx_frames
    );
}
