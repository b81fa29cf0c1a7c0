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
