//! Shared by the vfio-user tests: a minimal VF "driver" over any `Bar` (reset, mailbox, one RX
//! and one TX ring), written from facts §2, §3.8 and §6 against the model's register names.

use std::time::{Duration, Instant};

use floodgate_sim::regs::*;
use floodgate_vfio::{Bar, DmaOptions, DmaRegion, HugePages};

/// Upper bound for waits on something another thread or process does. Override with
/// FLOODGATE_TEST_TIMEOUT_MS; tests never assert on how long a wait took.
pub fn timeout() -> Duration {
    std::env::var("FLOODGATE_TEST_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(20), Duration::from_millis)
}

/// Polls `f` until it returns `Some`, or gives up after [`timeout`].
pub fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

pub fn region(len: usize) -> DmaRegion {
    DmaRegion::allocate(
        len,
        &DmaOptions {
            huge_pages: HugePages::Never,
            name: Some("serve-test".into()),
        },
    )
    .expect("DMA region")
}

/// VFCTRL.RST, then wait for RSTD (facts §3.8 steps 3-4).
pub fn vf_reset(bar: &impl Bar) {
    bar.write32(VFCTRL, VFCTRL_RST);
    let mut seen = 0;
    for _ in 0..100 {
        seen |= bar.read32(VFMAILBOX);
        if seen & MBX_RSTD != 0 {
            return;
        }
    }
    panic!("RSTD never set (VFMAILBOX {seen:#x})");
}

/// One mailbox request/reply with the legacy handshake (facts §3.5); returns 16 reply words.
pub fn mbx_request(bar: &impl Bar, msg: &[u32]) -> [u32; 16] {
    bar.write32(VFMAILBOX, MBX_VFU);
    assert_ne!(bar.read32(VFMAILBOX) & MBX_VFU, 0, "VF lock");
    for (i, w) in msg.iter().enumerate() {
        bar.write32(VFMBMEM + 4 * i as u32, *w);
    }
    bar.write32(VFMAILBOX, MBX_REQ);
    let mut seen = 0;
    for _ in 0..100 {
        seen |= bar.read32(VFMAILBOX);
        if seen & MBX_PFACK != 0 && seen & MBX_PFSTS != 0 {
            break;
        }
    }
    assert_eq!(
        seen & (MBX_PFACK | MBX_PFSTS),
        MBX_PFACK | MBX_PFSTS,
        "PF answered"
    );
    bar.write32(VFMAILBOX, MBX_VFU);
    let mut r = [0u32; 16];
    for (i, w) in r.iter_mut().enumerate() {
        *w = bar.read32(VFMBMEM + 4 * i as u32);
    }
    bar.write32(VFMAILBOX, MBX_ACK);
    r
}

/// Reset + RESET + API 1.3: the VF is then allowed to receive. Returns the RESET reply.
pub fn bring_up(bar: &impl Bar) -> [u32; 16] {
    vf_reset(bar);
    let r = mbx_request(bar, &[MSG_RESET]);
    let a = mbx_request(bar, &[MSG_API_NEGOTIATE, API_13, 0]);
    assert_eq!(a[0] & 0xFFFF, MSG_API_NEGOTIATE);
    assert_ne!(a[0] & 0x8000_0000, 0, "API 1.3 accepted: {:#x}", a[0]);
    r
}

pub const RING: u32 = 8;
pub const BUF: u64 = 2048;
/// Layout inside a 64 KiB region: RX ring at 0, TX ring at 0x1000, RX buffers from 0x2000,
/// TX buffers from 0x8000.
pub const RX_RING_OFF: u64 = 0;
pub const TX_RING_OFF: u64 = 0x1000;
pub const RX_BUF_OFF: u64 = 0x2000;
pub const TX_BUF_OFF: u64 = 0x8000;

pub fn write_u64(r: &DmaRegion, off: u64, v: u64) {
    assert!(off + 8 <= r.len() as u64);
    // SAFETY: in bounds of the region (checked above); the device may touch it concurrently,
    // hence volatile.
    unsafe { std::ptr::write_volatile(r.as_ptr().add(off as usize) as *mut u64, v) }
}

pub fn read_u64(r: &DmaRegion, off: u64) -> u64 {
    assert!(off + 8 <= r.len() as u64);
    // SAFETY: in bounds; volatile because the device writes it.
    unsafe { std::ptr::read_volatile(r.as_ptr().add(off as usize) as *const u64) }
}

pub fn bytes(r: &DmaRegion, off: u64, len: usize) -> Vec<u8> {
    assert!(off as usize + len <= r.len());
    (0..len)
        // SAFETY: in bounds (checked above).
        .map(|i| unsafe { std::ptr::read_volatile(r.as_ptr().add(off as usize + i)) })
        .collect()
}

pub fn put_bytes(r: &DmaRegion, off: u64, data: &[u8]) {
    assert!(off as usize + data.len() <= r.len());
    for (i, b) in data.iter().enumerate() {
        // SAFETY: in bounds (checked above).
        unsafe { std::ptr::write_volatile(r.as_ptr().add(off as usize + i), *b) }
    }
}

/// Programs RX queue 0 with RING descriptors (facts §2.2, §6.1), all handed to the device.
pub fn setup_rx(bar: &impl Bar, r: &DmaRegion) {
    for i in 0..RING as u64 {
        write_u64(r, RX_RING_OFF + 16 * i, r.iova() + RX_BUF_OFF + BUF * i);
        write_u64(r, RX_RING_OFF + 16 * i + 8, 0);
    }
    let base = r.iova() + RX_RING_OFF;
    bar.write32(rxq(0, RDBAL), base as u32);
    bar.write32(rxq(0, RDBAH), (base >> 32) as u32);
    bar.write32(rxq(0, RDLEN), RING * 16);
    bar.write32(rxq(0, SRRCTL), SRRCTL_DEFAULT | SRRCTL_DROP_EN);
    bar.write32(rxq(0, RDH), 0);
    bar.write32(rxq(0, RDT), 0);
    bar.write32(rxq(0, RXDCTL), DCTL_ENABLE);
    bar.write32(rxq(0, RDT), RING - 1);
}

/// Write-back of RX descriptor `i`: (length, status/error dword), if DD is set.
pub fn rx_done(r: &DmaRegion, i: u64) -> Option<(usize, u32)> {
    let hi = read_u64(r, RX_RING_OFF + 16 * i + 8);
    let status = hi as u32;
    (status & RXD_STAT_DD != 0).then_some(((hi >> 32) as u16 as usize, status))
}

/// Programs TX queue 0 (facts §2.3).
pub fn setup_tx(bar: &impl Bar, r: &DmaRegion) {
    let base = r.iova() + TX_RING_OFF;
    bar.write32(txq(0, TDBAL), base as u32);
    bar.write32(txq(0, TDBAH), (base >> 32) as u32);
    bar.write32(txq(0, TDLEN), RING * 16);
    bar.write32(txq(0, TDH), 0);
    bar.write32(txq(0, TDT), 0);
    bar.write32(txq(0, TXDCTL), DCTL_ENABLE);
}

/// Puts `frame` in TX descriptor `i` (advanced data descriptor, EOP|IFCS|RS, facts §6.2) and
/// moves the tail past it.
pub fn transmit(bar: &impl Bar, r: &DmaRegion, i: u64, frame: &[u8]) {
    put_bytes(r, TX_BUF_OFF + BUF * i, frame);
    let cmd =
        frame.len() as u32 | TXD_DTYP_DATA | TXD_CMD_DEXT | TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS;
    let olinfo = (frame.len() as u32) << 14;
    write_u64(r, TX_RING_OFF + 16 * i, r.iova() + TX_BUF_OFF + BUF * i);
    write_u64(
        r,
        TX_RING_OFF + 16 * i + 8,
        u64::from(cmd) | u64::from(olinfo) << 32,
    );
    bar.write32(txq(0, TDT), ((i + 1) % RING as u64) as u32);
}

/// Whether TX descriptor `i` has DD written back.
pub fn tx_done(r: &DmaRegion, i: u64) -> bool {
    (read_u64(r, TX_RING_OFF + 16 * i + 8) >> 32) as u32 & TXD_STAT_DD != 0
}

/// A 64-byte frame from `src` to `dst` with a recognisable payload.
pub fn frame(dst: [u8; 6], src: [u8; 6], tag: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xB5]); // local experimental ethertype
    f.extend((0..50).map(|i| tag.wrapping_add(i)));
    f
}

/// A private temporary directory, removed on drop.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn tempdir() -> TempDir {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let p = std::env::temp_dir().join(format!(
        "fg-serve-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&p).expect("temp dir");
    TempDir(p)
}
