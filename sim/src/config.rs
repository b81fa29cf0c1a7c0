//! What the model is built as: the silicon ([`NicModel`]) and the NIC's configuration
//! ([`NicConfig`]).

use crate::regs::MAX_QUEUES;
use crate::switch::DEFAULT_PF_MAC;

/// Which silicon the model is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NicModel {
    /// Intel 82599 (VF 8086:10ED).
    #[default]
    X82599,
    /// Intel X540 (VF 8086:1515).
    X540,
}

impl NicModel {
    /// PCI device ID of the VF (facts §1).
    pub fn vf_device_id(self) -> u16 {
        match self {
            NicModel::X82599 => 0x10ED,
            NicModel::X540 => 0x1515,
        }
    }
}

/// Model configuration.
#[derive(Clone)]
pub struct NicConfig {
    /// 82599 or X540.
    pub model: NicModel,
    /// Number of VFs (1..=63).
    pub num_vfs: usize,
    /// Queues per pool; `None` derives it from the pool count (facts §4.1: 4 when VFs+PF ≤ 32,
    /// else 2).
    pub queues_per_pool: Option<usize>,
    /// MAC of the PF netdev.
    pub pf_mac: [u8; 6],
    /// Initial PF MTU.
    pub pf_mtu: u32,
    /// Give each VF a (non-administrative) MAC 02:f1:00:00:00:NN at creation, like older Linux
    /// PFs; when false, RESET answers 0x40000001 until a MAC is set.
    pub assign_vf_macs: bool,
    /// Link up at start.
    pub link_up: bool,
    /// Capture egress frames for [`crate::Nic::take_egress`] (bounded by `egress_limit`).
    pub capture_egress: bool,
    /// Max frames kept for `take_egress` (older ones are counted and dropped).
    pub egress_limit: usize,
    /// Max frames waiting in `inject`'s queue.
    pub ingress_limit: usize,
    /// Frames held per RX queue when SRRCTL.DROP_EN is clear and no descriptor is free.
    pub rx_backlog: usize,
    /// The PF's RSS width (1..=16; `ethtool -L combined`), which sets the flow director's
    /// `num_rx_queues_per_pool` (facts §4.1, §4.3).
    pub pf_rss_queues: u16,
}

impl Default for NicConfig {
    fn default() -> Self {
        NicConfig {
            model: NicModel::X82599,
            num_vfs: 2,
            queues_per_pool: None,
            pf_mac: DEFAULT_PF_MAC,
            pf_mtu: 1500,
            assign_vf_macs: true,
            link_up: true,
            capture_egress: true,
            egress_limit: 1 << 16,
            ingress_limit: 1 << 16,
            rx_backlog: 256,
            pf_rss_queues: 4,
        }
    }
}

impl std::fmt::Debug for NicConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NicConfig")
            .field("model", &self.model)
            .field("num_vfs", &self.num_vfs)
            .field("queues_per_pool", &self.queues_per_pool())
            .field("pf_mtu", &self.pf_mtu)
            .finish_non_exhaustive()
    }
}

impl NicConfig {
    /// Queues per pool in effect.
    pub fn queues_per_pool(&self) -> usize {
        self.queues_per_pool
            .unwrap_or(if self.num_vfs + 1 > 32 { 2 } else { 4 })
            .clamp(1, MAX_QUEUES)
    }
}
