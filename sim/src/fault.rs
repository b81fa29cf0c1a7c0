//! Fault injection: the mailbox and RX write-back faults. The other faults (link flap, PF reset,
//! surprise removal, TX stall, unmapped DMA) are methods of [`crate::Nic`] and
//! [`crate::SimVf`]; docs/model.md lists them all with the tests that inject each under traffic.

/// What the PF agent does wrong with a VF's mailbox requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxFault {
    /// The PF never reads the request: no PFACK, no reply.
    NoReply,
    /// The PF answers every request with FAILURE.
    Nack,
    /// The PF handles the request but its PFACK and reply only become visible after the VF has
    /// read VFMAILBOX this many times (a slow PF; large values look like a timeout without any
    /// sleeping in tests).
    Delay(u32),
}

/// Corruption applied to the next descriptor(s) the RX engine writes back on one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxCorruption {
    /// OR these bits into the error field (bits 31:20 of status/error dword, facts §6.1).
    ErrorBits(u32),
    /// Report this length instead of the real one.
    BadLength(u16),
    /// Write DD without EOP on the frame's last descriptor.
    NoEop,
}

#[cfg(test)]
mod tests {
    use crate::{Nic, NicConfig};

    /// A minimum-size frame from the wire to a MAC nobody has (it goes to the PF's kernel side).
    fn frame() -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x77]);
        f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 9]);
        f[12..14].copy_from_slice(&[0x88, 0xB5]); // local experimental EtherType
        f
    }

    #[test]
    fn nothing_arrives_from_the_wire_while_the_link_is_down() {
        let nic = Nic::new(NicConfig::default());
        let f = frame();
        nic.set_link(false);
        for _ in 0..3 {
            nic.inject(&f);
        }
        nic.step();
        let s = nic.stats();
        assert_eq!((s.wire_in, s.rx_link_down), (3, 3), "{s:?}");
        nic.set_link(true);
        nic.inject(&f);
        nic.step();
        let s = nic.stats();
        assert_eq!(
            (s.wire_in, s.rx_link_down, s.pf_delivered),
            (4, 3, 1),
            "{s:?}"
        );
    }
}
