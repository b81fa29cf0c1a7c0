//! Test-side helpers: a tiny VF "driver" that speaks the mailbox (facts §3.5 legacy handshake)
//! and programs rings directly through the BAR, without floodgate-pmd.

use floodgate_sim::regs::*;
use floodgate_sim::{Nic, NicConfig, NicModel, SimBar, SimVf};
use floodgate_vfio::{Bar, Device, DmaOptions, DmaRegion, HugePages};

/// Poll budget for mailbox waits (reads, not time: the model answers synchronously).
pub const POLLS: u32 = 64;

pub fn nic(model: NicModel, num_vfs: usize) -> Nic {
    Nic::new(NicConfig {
        model,
        num_vfs,
        ..Default::default()
    })
}

pub fn region(len: usize) -> DmaRegion {
    DmaRegion::allocate(
        len,
        &DmaOptions {
            huge_pages: HugePages::Never,
            name: Some("sim-test".into()),
        },
    )
    .expect("DMA region")
}

/// The VF side of the mailbox, with the R2C cache drivers keep (facts §2.5).
pub struct MbxVf {
    pub bar: SimBar,
    pub cache: u32,
}

#[derive(Debug, PartialEq, Eq)]
pub enum MbxErr {
    Lock,
    NoAck,
    NoMsg,
}

impl MbxVf {
    pub fn new(vf: &SimVf) -> Self {
        MbxVf {
            bar: vf.bar0(),
            cache: 0,
        }
    }

    pub fn read_mbx(&mut self) -> u32 {
        let v = self.bar.read32(VFMAILBOX);
        self.cache |= v & MBX_R2C;
        v | self.cache
    }

    fn check(&mut self, bit: u32) -> bool {
        let v = self.read_mbx();
        if v & bit != 0 {
            self.cache &= !bit;
            true
        } else {
            false
        }
    }

    fn poll(&mut self, bit: u32) -> bool {
        (0..POLLS).any(|_| self.check(bit))
    }

    pub fn lock(&mut self) -> Result<(), MbxErr> {
        self.bar.write32(VFMAILBOX, MBX_VFU);
        if self.bar.read32(VFMAILBOX) & MBX_VFU != 0 {
            Ok(())
        } else {
            Err(MbxErr::Lock)
        }
    }

    /// Legacy send: lock, write words, REQ, wait PFACK.
    pub fn send(&mut self, words: &[u32]) -> Result<(), MbxErr> {
        self.lock()?;
        self.cache &= !(MBX_PFSTS | MBX_PFACK);
        for (i, w) in words.iter().enumerate() {
            self.bar.write32(VFMBMEM + 4 * i as u32, *w);
        }
        self.bar.write32(VFMAILBOX, MBX_REQ);
        if self.poll(MBX_PFACK) {
            Ok(())
        } else {
            Err(MbxErr::NoAck)
        }
    }

    /// Legacy receive: wait PFSTS, lock, read 16 words, ACK.
    pub fn recv(&mut self) -> Result<[u32; 16], MbxErr> {
        if !self.poll(MBX_PFSTS) {
            return Err(MbxErr::NoMsg);
        }
        self.lock()?;
        let mut w = [0u32; 16];
        for (i, x) in w.iter_mut().enumerate() {
            *x = self.bar.read32(VFMBMEM + 4 * i as u32);
        }
        self.bar.write32(VFMAILBOX, MBX_ACK);
        Ok(w)
    }

    pub fn request(&mut self, words: &[u32]) -> Result<[u32; 16], MbxErr> {
        self.send(words)?;
        self.recv()
    }

    /// VFCTRL.RST and wait for RSTD (facts §3.8 steps 3-4).
    pub fn function_reset(&mut self) -> bool {
        self.bar.write32(VFCTRL, VFCTRL_RST);
        let _ = self.bar.read32(VFSTATUS);
        (0..200).any(|_| self.read_mbx() & (MBX_RSTI | MBX_RSTD) != 0) && {
            self.cache &= !MBX_RSTD;
            true
        }
    }

    /// Full bring-up to a working mailbox: reset, RESET, API 1.3 (enum 4), SET_LPE 1518.
    pub fn bring_up(&mut self) -> [u32; 16] {
        assert!(self.function_reset());
        let r = self.request(&[MSG_RESET]).expect("RESET");
        let n = self.request(&[MSG_API_NEGOTIATE, API_13, 0]).expect("API");
        assert_eq!(n[0], 0xA000_0008);
        let l = self.request(&[MSG_SET_LPE, 1518]).expect("LPE");
        assert_eq!(l[0], 0xA000_0005);
        r
    }
}

/// A descriptor ring plus buffers in one DMA region, programmed through the BAR.
pub struct Rings {
    pub region: DmaRegion,
    pub count: u32,
}

pub const RING_OFF: usize = 0;
pub const TX_RING_OFF: usize = 0x4000;
pub const WB_OFF: usize = 0x8000;
pub const BUF_OFF: usize = 0x10000;
pub const BUF_SIZE: usize = 2048;

impl Rings {
    /// Maps a region into `vf` with an RX ring and a TX ring of `count` descriptors each.
    pub fn new(vf: &SimVf, count: u32) -> Self {
        let region = region(BUF_OFF + 2 * count as usize * BUF_SIZE);
        vf.dma_map(&region).expect("dma_map");
        Rings { region, count }
    }
    pub fn iova(&self, off: usize) -> u64 {
        self.region.iova() + off as u64
    }
    pub fn rx_buf(&self, i: u32) -> usize {
        BUF_OFF + i as usize * BUF_SIZE
    }
    pub fn tx_buf(&self, i: u32) -> usize {
        BUF_OFF + (self.count + i) as usize * BUF_SIZE
    }
    pub fn write(&self, off: usize, data: &[u8]) {
        assert!(off + data.len() <= self.region.len());
        // SAFETY: bounds checked above; test-only access to our own region.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.region.as_ptr().add(off), data.len())
        }
    }
    pub fn read(&self, off: usize, len: usize) -> Vec<u8> {
        assert!(off + len <= self.region.len());
        let mut v = vec![0u8; len];
        // SAFETY: bounds checked above.
        unsafe { std::ptr::copy_nonoverlapping(self.region.as_ptr().add(off), v.as_mut_ptr(), len) }
        v
    }
    pub fn w32(&self, off: usize, v: u32) {
        self.write(off, &v.to_le_bytes())
    }
    pub fn w64(&self, off: usize, v: u64) {
        self.write(off, &v.to_le_bytes())
    }
    pub fn r32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.read(off, 4).try_into().unwrap())
    }

    /// Programs RX queue `q`: descriptors point at rx buffers; SRRCTL = `srrctl`; enable; RDT.
    pub fn setup_rx(&self, bar: &SimBar, q: usize, srrctl: u32, tail: u32) {
        let ring = RING_OFF + q * 0x1000;
        assert!(self.count as usize * 16 <= 0x1000);
        for i in 0..self.count {
            self.w64(ring + i as usize * 16, self.iova(self.rx_buf(i)));
            self.w64(ring + i as usize * 16 + 8, 0);
        }
        let base = self.iova(ring);
        bar.write32(rxq(q, RDBAL), base as u32);
        bar.write32(rxq(q, RDBAH), (base >> 32) as u32);
        bar.write32(rxq(q, RDLEN), self.count * 16);
        bar.write32(rxq(q, SRRCTL), srrctl);
        bar.write32(rxq(q, RDH), 0);
        bar.write32(rxq(q, RDT), 0);
        bar.write32(rxq(q, RXDCTL), DCTL_ENABLE);
        assert_ne!(bar.read32(rxq(q, RXDCTL)) & DCTL_ENABLE, 0);
        bar.write32(rxq(q, RDT), tail);
    }

    /// RX write-back of descriptor `i` of queue `q`: (dword0, dword1, status/error, len|vlan).
    pub fn rx_wb(&self, q: usize, i: u32) -> (u32, u32, u32, u32) {
        let d = RING_OFF + q * 0x1000 + i as usize * 16;
        (
            self.r32(d),
            self.r32(d + 4),
            self.r32(d + 8),
            self.r32(d + 12),
        )
    }

    /// Programs TX queue 0.
    pub fn setup_tx(&self, bar: &SimBar, q: usize) {
        let base = self.iova(TX_RING_OFF + q * 0x1000);
        bar.write32(txq(q, TDBAL), base as u32);
        bar.write32(txq(q, TDBAH), (base >> 32) as u32);
        bar.write32(txq(q, TDLEN), self.count * 16);
        bar.write32(txq(q, TDH), 0);
        bar.write32(txq(q, TDT), 0);
        bar.write32(txq(q, TXDCTL), DCTL_ENABLE);
    }

    /// Writes a data descriptor at slot `i` of TX queue `q`.
    pub fn tx_data(&self, q: usize, i: u32, buf_off: usize, len: u32, eop: bool, rs: bool) {
        let d = TX_RING_OFF + q * 0x1000 + i as usize * 16;
        let mut cmd = TXD_DTYP_DATA | TXD_CMD_DEXT | TXD_CMD_IFCS | len;
        if eop {
            cmd |= TXD_CMD_EOP;
        }
        if rs {
            cmd |= TXD_CMD_RS;
        }
        self.w64(d, self.iova(buf_off));
        self.w32(d + 8, cmd);
        self.w32(d + 12, len << 14);
    }

    pub fn tx_status(&self, q: usize, i: u32) -> u32 {
        self.r32(TX_RING_OFF + q * 0x1000 + i as usize * 16 + 12)
    }
}

/// A UDP/IPv4 frame of `len` bytes from `src` to `dst`, with correct lengths and checksums (the
/// model checks them on receive, facts §6.1).
pub fn udp_frame(dst: [u8; 6], src: [u8; 6], len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(42)];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12] = 0x08;
    f[13] = 0x00;
    f[14] = 0x45;
    let ip_len = (f.len() - 14) as u16;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    f[34..36].copy_from_slice(&1234u16.to_be_bytes());
    f[36..38].copy_from_slice(&53u16.to_be_bytes());
    f[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    for (i, b) in f.iter_mut().enumerate().skip(42) {
        *b = i as u8;
    }
    assert!(floodgate_sim::rxcsum::fix_checksums(&mut f));
    f
}

/// Checksum status of a good UDP/IPv4 frame in the RX write-back: IPCS, L4CS, UDPCS (facts §6.1).
pub const UDP4_CSUM_OK: u32 = RXD_STAT_IPCS | RXD_STAT_L4CS | RXD_STAT_UDPCS;

pub fn vf_mac(i: u8) -> [u8; 6] {
    [0x02, 0xf1, 0, 0, 0, i + 1]
}
