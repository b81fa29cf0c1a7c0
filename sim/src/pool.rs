//! Per-pool state that the PF agent maintains and the switch reads.
//!
//! On the silicon this state lives in PF registers (RAR/MTA/VFTA, VMOLR, VFRE/VFTE, PFVFSPOOF,
//! facts §4.1); the Linux PF driver programs it from the VF's mailbox requests and the
//! administrator's `ip link set … vf N …` settings. The model keeps it as plain data: the PF agent
//! writes it under a write lock, the datapath reads it once per batch.

/// The `UPDATE_XCAST_MODE` values a VF asks for, and the mode the PF applied (facts §3.3). The
/// switch turns a mode into VMOLR bits with [`crate::l2::PoolConfig::apply_xcast`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum XcastMode {
    /// 0: its own unicast MAC(s) only, no broadcast or multicast (before any UPDATE_XCAST_MODE
    /// the pool keeps the PF's post-reset filter instead, see [`PoolState::xcast_set`]).
    #[default]
    None,
    /// 1: broadcast plus the multicast addresses the VF registered with SET_MULTICAST (MTA).
    Multi,
    /// 2: broadcast plus all multicast.
    AllMulti,
    /// 3: everything, including unicast for others (trusted VFs, not on the 82599).
    Promisc,
}

impl XcastMode {
    /// The mailbox encoding (0..3).
    pub fn to_wire(self) -> u32 {
        match self {
            XcastMode::None => 0,
            XcastMode::Multi => 1,
            XcastMode::AllMulti => 2,
            XcastMode::Promisc => 3,
        }
    }
    /// Decodes the mailbox encoding.
    pub fn from_wire(v: u32) -> Option<Self> {
        Some(match v {
            0 => XcastMode::None,
            1 => XcastMode::Multi,
            2 => XcastMode::AllMulti,
            3 => XcastMode::Promisc,
            _ => return None,
        })
    }
}

/// State of one VF pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolState {
    /// The VF's unicast MAC (admin-set or accepted from SET_MAC_ADDR), if any.
    pub mac: Option<[u8; 6]>,
    /// Extra unicast MACs from SET_MACVLAN.
    pub extra_macs: Vec<[u8; 6]>,
    /// VLAN IDs from SET_VLAN.
    pub vlans: Vec<u16>,
    /// 12-bit MTA hash vectors from SET_MULTICAST.
    pub mc_hashes: Vec<u16>,
    /// MTA bit-selection mode reported in the RESET reply.
    pub mc_filter_type: u8,
    /// Applied xcast mode.
    pub xcast: XcastMode,
    /// The VF sent UPDATE_XCAST_MODE since its last RESET (before that the pool has the PF's
    /// post-reset filter: broadcast and registered multicast).
    pub xcast_set: bool,
    /// VFRE: receive enabled for this pool.
    pub rx_enabled: bool,
    /// VFTE: transmit enabled for this pool.
    pub tx_enabled: bool,
    /// Administrator trust setting.
    pub trust: bool,
    /// MAC anti-spoofing on transmit (Linux default on).
    pub spoofchk: bool,
    /// Administrative link state (GET_LINK_STATE word 1).
    pub link_enabled: bool,
    /// Max frame size the VF asked for with SET_LPE (incl. CRC).
    pub max_frame: u32,
}

impl Default for PoolState {
    fn default() -> Self {
        PoolState {
            mac: None,
            extra_macs: Vec::new(),
            vlans: Vec::new(),
            mc_hashes: Vec::new(),
            mc_filter_type: 0,
            xcast: XcastMode::None,
            xcast_set: false,
            rx_enabled: false,
            tx_enabled: false,
            trust: false,
            spoofchk: true,
            link_enabled: true,
            max_frame: 1518,
        }
    }
}

impl PoolState {
    /// True if `mac` is one of this pool's unicast addresses.
    pub fn owns_mac(&self, mac: &[u8; 6]) -> bool {
        self.mac.as_ref() == Some(mac) || self.extra_macs.iter().any(|m| m == mac)
    }
}

/// The PF's own pool ("kernel side").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfPool {
    /// The PF netdev's MAC.
    pub mac: [u8; 6],
    /// The PF netdev's MTU.
    pub mtu: u32,
    /// PF in promiscuous mode.
    pub promisc: bool,
    /// Pool index of the PF (= number of VFs, facts §4.1).
    pub pool: u16,
}

/// Everything the switch needs about pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolTable {
    /// VF pools, index = VF number = pool number.
    pub vfs: Vec<PoolState>,
    /// The PF pool.
    pub pf: PfPool,
    /// Queues per pool (2 in 64-pool mode, 4 in 32-pool mode, facts §4.1).
    pub queues_per_pool: u16,
    /// Number of VFs.
    pub num_vfs: u16,
}
