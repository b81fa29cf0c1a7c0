//! Helpers shared by the integration tests.

use floodgate_pmd::{Config, IxgbeVf, Timeouts};
use floodgate_sim::{Nic, NicConfig, NicModel, SimVf};

pub fn init_log() {
    let _ = env_logger::builder().is_test(true).try_init();
}

pub fn nic(model: NicModel) -> Nic {
    init_log();
    Nic::new(NicConfig {
        model,
        num_vfs: 2,
        ..Default::default()
    })
}

pub fn cfg() -> Config {
    Config {
        rx_ring_size: 64,
        tx_ring_size: 64,
        pool_buffers: Some(2048),
        // One queue pair: with more, the model spreads frames over the queues by RSS
        // (VFPSRTYPE.RQPL), as the NIC does. Multi-queue tests override this.
        max_queues: Some(1),
        huge_pages: floodgate_vfio::HugePages::Never,
        timeouts: Timeouts::fast(),
        ..Default::default()
    }
}

pub fn open(nic: &Nic, vf: usize) -> IxgbeVf<SimVf> {
    IxgbeVf::open(nic.vf(vf), cfg()).expect("bring-up against the model")
}

/// A UDP/IPv4 frame of `len` bytes to `dst`, with `tag` in the payload and correct checksums.
pub fn frame(dst: [u8; 6], len: usize, tag: u8) -> Vec<u8> {
    let mut f = vec![0u8; len.max(60)];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&[0x02, 0xaa, 0, 0, 0, 1]);
    f[12] = 0x08; // IPv4
    f[14] = 0x45;
    let ip_len = (f.len() - 14) as u16;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[22] = 64;
    f[23] = 17; // UDP
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    f[34..36].copy_from_slice(&1234u16.to_be_bytes());
    f[36..38].copy_from_slice(&53u16.to_be_bytes());
    let udp_len = (f.len() - 34) as u16;
    f[38..40].copy_from_slice(&udp_len.to_be_bytes());
    f[42] = tag;
    // Correct IPv4 header and UDP checksums: the model checks them on receive (facts §6.1).
    assert!(floodgate_sim::rxcsum::fix_checksums(&mut f));
    f
}
