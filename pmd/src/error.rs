/// Errors of the poll-mode driver.
///
/// Every message says where (which device, which step) and why, and where it helps, what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The PCI function is not a supported virtual function.
    #[error(
        "{location}: device {vendor:04x}:{device:04x} is not supported; floodgate-pmd drives \
         8086:10ed (82599 VF) and 8086:1515 (X540 VF)"
    )]
    UnsupportedDevice {
        /// Where the device is.
        location: String,
        /// Its PCI vendor ID.
        vendor: u16,
        /// Its PCI device ID.
        device: u16,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Registers read all-ones: the device was removed or fell off the bus.
    #[error("{location}: device gone (registers read 0xffffffff) during {during}")]
    DeviceGone {
        /// Where the device was.
        location: String,
        /// What the driver was doing.
        during: &'static str,
    },
    /// The PF did not complete the VF reset.
    #[error(
        "{location}: VF reset not completed by the PF within {timeout_us} µs (no RSTD/RSTI); \
         is the PF interface up (`ip link set <pf> up`)?"
    )]
    ResetTimeout {
        /// Where the device is.
        location: String,
        /// How long the driver waited.
        timeout_us: u64,
    },
    /// A mailbox operation timed out.
    #[error("{location}: mailbox timeout after {timeout_us} µs while {during}; is the PF driver (ixgbe) loaded and the PF up?")]
    MailboxTimeout {
        /// Where the device is.
        location: String,
        /// Which step.
        during: &'static str,
        /// How long the driver waited.
        timeout_us: u64,
    },
    /// The PF refused a request or sent a reply the driver does not understand.
    #[error("{location}: PF refused {request}: {detail}")]
    PfRefused {
        /// Where the device is.
        location: String,
        /// Which request.
        request: &'static str,
        /// The PF's answer and what it means.
        detail: String,
    },
    /// The PF is resetting; the VF will re-initialise once it is done.
    #[error("{location}: PF reset in progress; the VF is re-initialised once the PF is back")]
    PfResetInProgress {
        /// Where the device is.
        location: String,
    },
    /// A queue number is out of range.
    #[error("queue {queue} does not exist (this VF has {count} queue pairs)")]
    NoSuchQueue {
        /// Requested queue.
        queue: usize,
        /// Existing queues.
        count: usize,
    },
    /// The mempool is out of buffers.
    #[error("mempool exhausted: all {0} buffers are in use")]
    PoolExhausted(u32),
    /// A packet length does not fit its buffer.
    #[error("length {len} exceeds the buffer's data room of {room} bytes")]
    TooLong {
        /// Requested length.
        len: usize,
        /// Available bytes.
        room: usize,
    },
    /// Device access or DMA memory failed.
    #[error(transparent)]
    Vfio(#[from] floodgate_vfio::Error),
}
