//! Cost of one register access over vfio-user: `VfioUserDevice`'s BAR0 talking to
//! `UserServer` on another thread over a Unix socket, next to the same access on the in-process
//! model. One iteration is one 32-bit access; criterion reports time per access.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use floodgate_sim::regs::{rxq, RDT, VFLINKS};
use floodgate_sim::vfio_user::UserServer;
use floodgate_sim::{Nic, NicConfig};
use floodgate_vfio::user::VfioUserDevice;
use floodgate_vfio::{Bar, Device};

fn bench_bar_access(c: &mut Criterion) {
    let nic = Nic::new(NicConfig::default());
    let dir = std::env::temp_dir().join(format!("fg-bench-vfio-user-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("vf0.sock");
    let mut server = UserServer::bind(&path, nic.vf(0)).expect("bind");
    let t = std::thread::spawn(move || server.serve_one());
    let dev = VfioUserDevice::connect(&path).expect("connect");
    let user = dev.bar0();
    let local = nic.vf(0).bar0();

    let mut g = c.benchmark_group("bar0_access");
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("vfio-user read32 (VFLINKS)", |b| {
        b.iter(|| std::hint::black_box(user.read32(VFLINKS)))
    });
    g.bench_function("vfio-user write32 (RDT doorbell)", |b| {
        b.iter(|| user.write32(rxq(0, RDT), 0))
    });
    g.bench_function("in-process read32 (VFLINKS)", |b| {
        b.iter(|| std::hint::black_box(local.read32(VFLINKS)))
    });
    g.finish();

    drop(user);
    drop(dev);
    let _ = t.join();
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, bench_bar_access);
criterion_main!(benches);
