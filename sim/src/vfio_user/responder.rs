//! A wire-side peer for `floodgate-sim serve --respond IP`: it answers ARP requests for `IP` and
//! ICMP echo requests to `IP` sent by a VF, so that a guest's `ping` gets replies through the
//! model (frames from a VF leave on the wire, replies come back in from the wire).
//!
//! It is an egress [`FrameSink`]; replies are queued with [`crate::Nic::inject`] and delivered
//! by the engine like any wire frame.

use crate::generator::inet_checksum;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use crate::nic::Nic;
use crate::sink::FrameSink;
use crate::state::NicInner;

/// What the responder did.
#[derive(Debug, Default)]
pub struct ResponderStats {
    /// ARP replies sent.
    pub arp_replies: AtomicU64,
    /// ICMP echo replies sent.
    pub echo_replies: AtomicU64,
    /// Egress frames not for us.
    pub ignored: AtomicU64,
}

/// Answers ARP and ICMP echo for one IPv4 address.
pub struct Responder {
    nic: Weak<NicInner>,
    ip: [u8; 4],
    mac: [u8; 6],
    buf: Vec<u8>,
    stats: Arc<ResponderStats>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("ip", &self.ip)
            .finish_non_exhaustive()
    }
}

impl Responder {
    /// A responder for `ip` with MAC `mac`, answering through `nic`.
    pub fn new(nic: &Nic, ip: [u8; 4], mac: [u8; 6]) -> Responder {
        Responder {
            nic: Arc::downgrade(&nic.inner),
            ip,
            mac,
            buf: Vec::with_capacity(2048),
            stats: Arc::default(),
        }
    }

    /// Counters (shared).
    pub fn stats(&self) -> Arc<ResponderStats> {
        self.stats.clone()
    }

    /// Builds the reply to `f` into `self.buf`; false if `f` is not for us.
    fn reply(&mut self, f: &[u8]) -> bool {
        if f.len() < 14 {
            return false;
        }
        let et = u16::from_be_bytes([f[12], f[13]]);
        let out = &mut self.buf;
        out.clear();
        if et == 0x0806 && f.len() >= 42 {
            let a = &f[14..42];
            // Ethernet/IPv4 ARP request for our address.
            if a[0..8] != [0, 1, 8, 0, 6, 4, 0, 1] || a[24..28] != self.ip {
                return false;
            }
            out.extend_from_slice(&f[6..12]);
            out.extend_from_slice(&self.mac);
            out.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2]);
            out.extend_from_slice(&self.mac);
            out.extend_from_slice(&self.ip);
            out.extend_from_slice(&a[8..18]); // sender MAC + IP become the target
            out.resize(60, 0);
            self.stats.arp_replies.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        if et != 0x0800 || f.len() < 34 {
            return false;
        }
        let ihl = usize::from(f[14] & 0x0F) * 4;
        let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
        if f[14] >> 4 != 4
            || ihl < 20
            || f[23] != 1
            || f[30..34] != self.ip
            || total < ihl + 8
            || f.len() < 14 + total
        {
            return false;
        }
        let icmp = 14 + ihl;
        if f[icmp] != 8 {
            return false;
        }
        out.extend_from_slice(&f[..14 + total]);
        out[0..6].copy_from_slice(&f[6..12]);
        out[6..12].copy_from_slice(&self.mac);
        // Swap addresses, fresh TTL and header checksum.
        out[26..30].copy_from_slice(&f[30..34]);
        out[30..34].copy_from_slice(&f[26..30]);
        out[22] = 64;
        out[24..26].fill(0);
        let c = inet_checksum(&out[14..14 + ihl], 0);
        out[24..26].copy_from_slice(&c.to_be_bytes());
        // Echo reply: type 0, checksum over the ICMP message.
        out[icmp] = 0;
        out[icmp + 2..icmp + 4].fill(0);
        let c = inet_checksum(&out[icmp..14 + total], 0);
        out[icmp + 2..icmp + 4].copy_from_slice(&c.to_be_bytes());
        if out.len() < 60 {
            out.resize(60, 0);
        }
        self.stats.echo_replies.fetch_add(1, Ordering::Relaxed);
        true
    }
}

impl FrameSink for Responder {
    fn frame(&mut self, f: &[u8]) {
        if !self.reply(f) {
            self.stats.ignored.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Some(inner) = self.nic.upgrade() {
            Nic { inner }.inject(&self.buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NicConfig;

    const VF_MAC: [u8; 6] = [0x02, 0xf1, 0, 0, 0, 1];
    const ME: [u8; 6] = [0x02, 0xf0, 0, 0, 0, 0xfe];

    #[test]
    fn answers_arp_and_ping_for_its_address_only() {
        let nic = Nic::new(NicConfig::default());
        let mut r = Responder::new(&nic, [10, 0, 0, 1], ME);
        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&VF_MAC);
        arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        arp.extend_from_slice(&VF_MAC);
        arp.extend_from_slice(&[10, 0, 0, 2]);
        arp.extend_from_slice(&[0; 6]);
        arp.extend_from_slice(&[10, 0, 0, 1]);
        assert!(r.reply(&arp));
        assert_eq!(&r.buf[0..6], &VF_MAC);
        assert_eq!(&r.buf[20..22], &[0, 2], "ARP reply");
        assert_eq!(&r.buf[22..28], &ME);
        assert_eq!(&r.buf[38..42], &[10, 0, 0, 2]);
        arp[41] = 9;
        assert!(!r.reply(&arp), "not our address");

        let mut ping = Vec::new();
        ping.extend_from_slice(&ME);
        ping.extend_from_slice(&VF_MAC);
        ping.extend_from_slice(&[0x08, 0x00]);
        ping.extend_from_slice(&[
            0x45, 0, 0, 28, 0, 1, 0, 0, 64, 1, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1,
        ]);
        ping.extend_from_slice(&[8, 0, 0, 0, 0x12, 0x34, 0, 1]);
        let c = inet_checksum(&ping[34..42], 0);
        ping[36..38].copy_from_slice(&c.to_be_bytes());
        r.frame(&ping);
        assert_eq!(r.stats.echo_replies.load(Ordering::Relaxed), 1);
        assert_eq!(
            nic.stats().wire_in,
            1,
            "the reply was injected from the wire"
        );
        assert_eq!(&r.buf[30..34], &[10, 0, 0, 2]);
        assert_eq!(r.buf[34], 0, "echo reply");
        assert_eq!(
            inet_checksum(&r.buf[34..42], 0),
            0,
            "ICMP checksum verifies"
        );
        assert_eq!(inet_checksum(&r.buf[14..34], 0), 0, "IP checksum verifies");
    }
}
