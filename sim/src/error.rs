//! The errors of the model's control API.

/// Errors of the model's control API.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A VF index out of range.
    #[error("no VF {vf}: the model has {num_vfs} VFs")]
    NoSuchVf {
        /// Requested VF.
        vf: usize,
        /// VFs present.
        num_vfs: usize,
    },
    /// A queue index out of range.
    #[error("no queue {queue} on VF {vf}: the PF granted {granted} queues")]
    NoSuchQueue {
        /// VF.
        vf: usize,
        /// Requested queue.
        queue: usize,
        /// Queues per pool.
        granted: usize,
    },
    /// An IOMMU mapping request was refused.
    #[error("IOMMU mapping iova {iova:#x} len {len:#x} refused: {why}")]
    BadMapping {
        /// IOVA.
        iova: u64,
        /// Length.
        len: u64,
        /// Reason.
        why: &'static str,
    },
    /// A control request was refused, with the kernel's reason.
    #[error("{0}")]
    InvalidArgument(String),
    /// A system call failed.
    #[error("{what}")]
    Os {
        /// What was attempted.
        what: String,
        /// The OS error.
        #[source]
        err: std::io::Error,
    },
}
