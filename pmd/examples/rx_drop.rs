//! Receives packets and drops them, printing the rate and counters once a second.
//!
//! Runs against the NIC model's threaded engine (a line-rate feeder writes a 64-byte UDP frame
//! into every free RX descriptor), so it needs no hardware and no root:
//!
//! ```text
//! cargo run --release -p floodgate-pmd --example rx_drop -- --seconds 3 [--batch 32] [--x540]
//! ```

use floodgate_pmd::{Config, IxgbeVf, PacketBatch};
use floodgate_sim::engine::FeederConfig;
use floodgate_sim::{EngineConfig, Nic, NicConfig, NicModel};
use std::time::{Duration, Instant};

struct Args {
    seconds: u64,
    batch: usize,
    model: NicModel,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        seconds: 3,
        batch: 32,
        model: NicModel::X82599,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = |name: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--seconds" => a.seconds = num("--seconds")?,
            "--batch" => a.batch = num("--batch")? as usize,
            "--x540" => a.model = NicModel::X540,
            "-h" | "--help" => {
                return Err("usage: rx_drop [--seconds N] [--batch B] [--x540]".into());
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(a)
}

/// A 64-byte UDP/IPv4 frame to `dst`.
/// A 60-byte UDP frame to `dst` with correct checksums (the model checks them, like the NIC,
/// and the driver drops what it flags as bad).
fn template(dst: [u8; 6]) -> Vec<u8> {
    floodgate_sim::generator::min_udp4_frame(dst, [0x02, 0xaa, 0, 0, 0, 1])
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let nic = Nic::new(NicConfig {
        model: a.model,
        num_vfs: 1,
        ..Default::default()
    });
    let mut vf = match IxgbeVf::open(
        nic.vf(0),
        Config {
            rx_ring_size: 1024,
            ..Default::default()
        },
    ) {
        Ok(vf) => vf,
        Err(e) => {
            eprintln!("bring-up failed: {e}", e = floodgate_vfio::ErrorChain(&e));
            std::process::exit(1);
        }
    };
    let engine = nic.start_engine(EngineConfig {
        feeder: Some(FeederConfig {
            vf: 0,
            queue: 0,
            template: template(vf.mac()),
        }),
        process_tx: false,
        process_ingress: false,
        ..Default::default()
    });
    println!(
        "rx_drop: {:?} VF {} on the model, batch {}, {} s",
        vf.info().model,
        floodgate_pmd::fmt_mac(vf.mac()),
        a.batch,
        a.seconds
    );
    let mut batch = PacketBatch::new(a.batch);
    let start = Instant::now();
    let end = start + Duration::from_secs(a.seconds);
    let mut last = start;
    let mut last_pkts = 0u64;
    let mut total = 0u64;
    loop {
        for _ in 0..1024 {
            total += vf.rx_burst(0, &mut batch) as u64;
            // Drop: buffers go straight back into the RX queue's cache.
            vf.recycle(0, &mut batch);
        }
        let now = Instant::now();
        if now.duration_since(last) >= Duration::from_secs(1) || now >= end {
            if let Err(e) = vf.maintain() {
                eprintln!("maintenance: {e}", e = floodgate_vfio::ErrorChain(&e));
            }
            let s = vf.stats();
            let dt = now.duration_since(last).as_secs_f64();
            println!(
                "{:6.2} Mpps | rx {} pkts {} bytes | dropped bad {} | no buffers {} | hw rx {} | resets {}",
                (total - last_pkts) as f64 / dt / 1e6,
                s.rx.packets,
                s.rx.bytes,
                s.rx.dropped(),
                s.rx.no_buffers,
                s.hw.rx_packets,
                s.pf_resets
            );
            last = now;
            last_pkts = total;
            if now >= end {
                break;
            }
        }
    }
    let es = engine.stop();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "total: {total} packets in {secs:.2} s = {:.2} Mpps (model fed {})",
        total as f64 / secs / 1e6,
        es.fed
    );
}
