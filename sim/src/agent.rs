//! The PF agent's own state, apart from the per-pool data the switch reads: per VF the mailbox
//! handshake (CTS, negotiated API), administrative settings that are not pool data, an injected
//! mailbox fault and a delayed reply; and whether the PF is up (facts §3).
//!
//! The agent's behaviour lives in [`crate::pf`].

use crate::fault::MailboxFault;
use crate::regs::MBX_WORDS;

/// Administrative link state of a VF (`ip link set … vf N state auto|enable|disable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VfLinkState {
    /// Follow the PF link (default).
    #[default]
    Auto,
    /// Always enabled.
    Enable,
    /// Administratively disabled: GET_LINK_STATE answers 0 and the VF's RX/TX are off.
    Disable,
}

/// A mailbox reply: `len` words of `words` (facts §3.2).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reply {
    pub(crate) words: [u32; MBX_WORDS],
    pub(crate) len: usize,
}

/// What the PF agent remembers about one VF.
#[derive(Debug, Default)]
pub(crate) struct VfAgent {
    /// The VF completed RESET and may send other requests.
    pub(crate) cts: bool,
    /// Negotiated API (facts §3.4 enum value).
    pub(crate) api: u32,
    /// The administrator set the MAC.
    pub(crate) pf_set_mac: bool,
    /// Administrative link state.
    pub(crate) link: VfLinkState,
    /// Administrator allowed GET_RETA/GET_RSS_KEY (`ip link set … vf N query_rss on`).
    pub(crate) rss_query: bool,
    /// Injected mailbox fault.
    pub(crate) fault: Option<MailboxFault>,
    /// A reply held back by [`MailboxFault::Delay`].
    pub(crate) delayed: Option<Reply>,
}

/// PF-side state that is not per-pool data for the switch.
#[derive(Debug)]
pub(crate) struct PfAgent {
    pub(crate) vfs: Vec<VfAgent>,
    /// False while a PF reset is in progress: nobody answers the mailbox.
    pub(crate) up: bool,
}

impl PfAgent {
    pub(crate) fn new(num_vfs: usize) -> Self {
        PfAgent {
            vfs: (0..num_vfs).map(|_| VfAgent::default()).collect(),
            up: true,
        }
    }
}
