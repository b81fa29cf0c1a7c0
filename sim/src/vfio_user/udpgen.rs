//! A small built-in traffic source for `floodgate-sim serve --generator udp`: IPv4/UDP frames
//! from the wire to the served VF's current MAC address, with a varying source port.
//!
//! It exists so that the server has traffic without the flood generator; it builds each frame
//! in the engine's buffer (no allocation per frame).

use crate::generator::inet_checksum;
use crate::pf::Pf;
use crate::sink::FrameSource;

/// Source MAC of generated frames (a locally administered "wire peer").
pub const PEER_MAC: [u8; 6] = [0x02, 0xf0, 0x00, 0x00, 0x00, 0xfe];
/// Source IPv4 address of generated frames.
pub const PEER_IP: [u8; 4] = [10, 0, 0, 1];
/// Destination IPv4 address of generated frames.
pub const VF_IP: [u8; 4] = [10, 0, 0, 2];
/// Destination UDP port.
pub const DST_PORT: u16 = 9;

/// IPv4/UDP frames to one VF.
pub struct UdpGen {
    pf: Pf,
    vf: usize,
    mac: [u8; 6],
    len: usize,
    sent: u64,
    limit: Option<u64>,
}

impl std::fmt::Debug for UdpGen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpGen")
            .field("vf", &self.vf)
            .field("len", &self.len)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl UdpGen {
    /// Frames of `len` bytes (clamped to 60..=1514, without FCS) to VF `vf`; `limit` frames in
    /// all (`None`: endless).
    pub fn new(pf: Pf, vf: usize, len: usize, limit: Option<u64>) -> UdpGen {
        UdpGen {
            pf,
            vf,
            mac: [0xff; 6],
            len: len.clamp(60, 1514),
            sent: 0,
            limit,
        }
    }

    fn refresh_mac(&mut self) {
        if let Ok(st) = self.pf.vf_state(self.vf) {
            if let Some(m) = st.mac {
                self.mac = m;
            }
        }
    }

    /// Writes one frame with source port `sport` into `buf`; returns its length.
    pub fn build(&self, buf: &mut [u8], sport: u16) -> usize {
        let n = self.len.min(buf.len());
        let f = &mut buf[..n];
        f.fill(0);
        f[0..6].copy_from_slice(&self.mac);
        f[6..12].copy_from_slice(&PEER_MAC);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip_len = (n - 14) as u16;
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&PEER_IP);
        ip[16..20].copy_from_slice(&VF_IP);
        let c = inet_checksum(ip, 0);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let udp = &mut f[34..42];
        udp[0..2].copy_from_slice(&sport.to_be_bytes());
        udp[2..4].copy_from_slice(&DST_PORT.to_be_bytes());
        udp[4..6].copy_from_slice(&(ip_len - 20).to_be_bytes());
        // A real UDP checksum, as Linux senders write: checksum 0 ("none") is legal over IPv4,
        // but an 82599 flags it as an L4 error on receive (erratum 44, see `rxcsum`).
        crate::rxcsum::fix_checksums(f);
        n
    }
}

impl FrameSource for UdpGen {
    fn next_frame(&mut self, buf: &mut [u8]) -> Option<usize> {
        if self.limit.is_some_and(|l| self.sent >= l) {
            return None;
        }
        if self.sent & 255 == 0 {
            self.refresh_mac();
        }
        let sport = 1024 + (self.sent % 60000) as u16;
        self.sent += 1;
        Some(self.build(buf, sport))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Nic, NicConfig};

    #[test]
    fn frames_go_to_the_vf_mac_with_valid_checksums() {
        let nic = Nic::new(NicConfig::default());
        let mut g = UdpGen::new(nic.pf(), 1, 64, Some(2));
        let mut buf = vec![0u8; 2048];
        let n = g.next_frame(&mut buf).unwrap();
        assert_eq!(n, 64);
        assert_eq!(&buf[0..6], &[0x02, 0xf1, 0, 0, 0, 2]);
        assert_eq!(
            inet_checksum(&buf[14..34], 0),
            0,
            "IPv4 header checksum verifies"
        );
        // UDP: pseudo-header (addresses, protocol, length) and the datagram sum to 0xFFFF.
        let mut pseudo = buf[26..34].to_vec();
        pseudo.extend_from_slice(&[0, 17, 0, 30]);
        pseudo.extend_from_slice(&buf[34..64]);
        assert_ne!(&buf[40..42], &[0, 0], "a checksum is present");
        assert_eq!(inet_checksum(&pseudo, 0), 0, "UDP checksum verifies");
        assert_eq!(u16::from_be_bytes([buf[16], buf[17]]), 50);
        assert_eq!(u16::from_be_bytes([buf[34], buf[35]]), 1024);
        g.next_frame(&mut buf).unwrap();
        assert_eq!(u16::from_be_bytes([buf[34], buf[35]]), 1025);
        assert!(g.next_frame(&mut buf).is_none(), "limit reached");
    }
}
