use std::io;

/// Errors from device access and DMA memory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed; `what` says which step.
    #[error("{what}: {source}")]
    Io {
        /// The step that failed, e.g. "memfd_create for DMA memory".
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Huge pages were required but none are available.
    #[error(
        "no free 2 MiB huge pages for {bytes} bytes of DMA memory: reserve some with \
         `echo 512 > /proc/sys/vm/nr_hugepages` (or run scripts/setup-vf.sh), or allow the \
         4 KiB fallback"
    )]
    NoHugePages {
        /// How many bytes were requested.
        bytes: usize,
    },
    /// An argument was out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The backend cannot do this.
    #[error("{0} not supported by this device backend")]
    Unsupported(&'static str),
    /// The device or its setup is not usable; the message says what to do.
    #[error("{0}")]
    Device(String),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
    pub(crate) fn last_os(what: impl Into<String>) -> Self {
        Error::io(what, io::Error::last_os_error())
    }
}
