//! [`SimBackend`]: steering into the NIC model instead of the kernel.
//!
//! The standalone table ([`SimBackend::standalone`]) keeps the PF's n-tuple table the way ixgbe
//! does (facts §4.3): a table of `(1024 << pballoc) - 2` locations, inserting at an occupied
//! location replaces that rule, one global mask per port (a rule with another mask is refused with
//! `EINVAL` until every rule is deleted), `EOPNOTSUPP` while n-tuple is off, `EINVAL` for an
//! empty location, VF selector checked against `num_vfs`. It is what `floodgate demo` steers when
//! no model switch is wired in, and what the steering tests run against.

use std::collections::BTreeMap;

use super::uapi::{self, RxFlowSpec};
use super::{Action, BackendError, RuleTable, SteeringBackend, SteeringRule};

/// The PF agent's rule table, standalone.
#[derive(Debug, Clone)]
pub struct ModelTable {
    size: u32,
    rules: BTreeMap<u32, RxFlowSpec>,
    mask: Option<Vec<u8>>,
    ntuple: bool,
    rx_rings: u32,
    num_vfs: u32,
    queues_per_pool: u32,
    indir: Vec<u32>,
}

impl ModelTable {
    /// A table of `size` locations, n-tuple on, 4 PF rings, 8 VFs of 2 queues, a 128-entry RSS
    /// table spread over the PF rings.
    pub fn new(size: u32) -> ModelTable {
        ModelTable {
            size,
            rules: BTreeMap::new(),
            mask: None,
            ntuple: true,
            rx_rings: 4,
            num_vfs: 8,
            queues_per_pool: 2,
            indir: (0..128).map(|i| i % 4).collect(),
        }
    }

    fn inval(msg: &str) -> BackendError {
        BackendError {
            errno: libc::EINVAL,
            detail: Some(msg.to_string()),
        }
    }

    /// The mask part ixgbe keeps once per port: the masks of addresses and ports, the L4 type
    /// mask (none for a protocol-less IPv4 rule), and the extension masks.
    fn mask_of(fs: &RxFlowSpec) -> Vec<u8> {
        let mut m = fs.m_u.hdata[..12].to_vec();
        let any_l4 =
            fs.flow_type & !uapi::FLOW_EXT == uapi::IPV4_USER_FLOW && fs.m_u.hdata[14] == 0;
        m.push(u8::from(any_l4));
        if fs.flow_type & uapi::FLOW_EXT != 0 {
            m.extend_from_slice(&fs.m_ext.vlan_tci.0);
            m.extend_from_slice(&fs.m_ext.data[1].0);
        } else {
            m.extend_from_slice(&[0; 6]);
        }
        m
    }

    fn insert(&mut self, fs: RxFlowSpec) -> Result<u32, BackendError> {
        if !self.ntuple {
            return Err(BackendError::errno(libc::EOPNOTSUPP));
        }
        if fs.location >= self.size {
            return Err(Self::inval("Location out of range"));
        }
        match fs.ring_cookie {
            uapi::RX_CLS_FLOW_DISC => {}
            c => match uapi::action_of_cookie(c) {
                Action::ToPf { queue } if queue >= self.rx_rings => {
                    return Err(Self::inval("PF ring out of range"))
                }
                Action::ToVf { vf, queue }
                    if vf >= self.num_vfs || queue >= self.queues_per_pool =>
                {
                    return Err(Self::inval("VF or VF ring out of range"))
                }
                _ => {}
            },
        }
        let ft = fs.flow_type & !uapi::FLOW_EXT;
        let ok_type = match ft {
            uapi::TCP_V4_FLOW | uapi::UDP_V4_FLOW | uapi::SCTP_V4_FLOW => true,
            uapi::IPV4_USER_FLOW => match fs.h_u.hdata[14] {
                6 | 17 | 132 => true,
                0 => fs.m_u.hdata[14] == 0,
                _ => false,
            },
            _ => false,
        };
        if !ok_type {
            return Err(Self::inval("Unrecognized flow type"));
        }
        let mask = Self::mask_of(&fs);
        // The rule being replaced does not count against the mask when it is the only one.
        let others = self.rules.keys().filter(|&&l| l != fs.location).count();
        if others > 0 {
            if let Some(m) = &self.mask {
                if *m != mask {
                    return Err(Self::inval(
                        "Hardware only supports one mask per port. To change the mask you must first delete all the rules.",
                    ));
                }
            }
        }
        self.mask = Some(mask);
        self.rules.insert(fs.location, fs);
        Ok(fs.location)
    }

    fn delete(&mut self, location: u32) -> Result<(), BackendError> {
        if !self.ntuple {
            return Err(BackendError::errno(libc::EOPNOTSUPP));
        }
        if self.rules.remove(&location).is_none() {
            return Err(BackendError::errno(libc::EINVAL));
        }
        if self.rules.is_empty() {
            self.mask = None;
        }
        Ok(())
    }
}

/// Steering into the NIC model.
#[derive(Debug, Clone)]
pub struct SimBackend {
    pf: String,
    table: ModelTable,
}

impl SimBackend {
    /// A model PF named `pf` with a standalone rule table of `size` locations (ixgbe: 2046).
    pub fn standalone(pf: &str, size: u32) -> SimBackend {
        SimBackend {
            pf: pf.to_string(),
            table: ModelTable::new(size),
        }
    }

    /// `ethtool -K <pf> ntuple on|off`; turning it off deletes every rule, as the port reset does.
    pub fn set_ntuple(&mut self, on: bool) {
        self.table.ntuple = on;
        if !on {
            self.table.rules.clear();
            self.table.mask = None;
        }
    }

    /// Inserts a rule as another tool would (`ethtool -N`), outside any [`super::Steering`].
    pub fn insert_foreign(
        &mut self,
        rule: &SteeringRule,
        location: u32,
    ) -> Result<u32, BackendError> {
        self.table.insert(uapi::encode_flow_spec(rule, location))
    }

    /// The rules in the table, by location.
    pub fn rules(&self) -> Vec<(u32, SteeringRule)> {
        self.table
            .rules
            .iter()
            .filter_map(|(&l, fs)| uapi::decode_flow_spec(fs).map(|r| (l, r)))
            .collect()
    }

    /// Sets the PF ring count and the VF layout (`num_vfs`, queues per pool).
    pub fn set_layout(&mut self, rx_rings: u32, num_vfs: u32, queues_per_pool: u32) {
        self.table.rx_rings = rx_rings;
        self.table.num_vfs = num_vfs;
        self.table.queues_per_pool = queues_per_pool;
    }
}

impl SteeringBackend for SimBackend {
    fn pf(&self) -> &str {
        &self.pf
    }

    fn rx_rings(&mut self) -> Result<u32, BackendError> {
        Ok(self.table.rx_rings)
    }

    fn rule_table(&mut self) -> Result<RuleTable, BackendError> {
        Ok(RuleTable {
            size: self.table.size,
            locations: self.table.rules.keys().copied().collect(),
        })
    }

    fn get_rule(&mut self, location: u32) -> Result<RxFlowSpec, BackendError> {
        self.table
            .rules
            .get(&location)
            .copied()
            .ok_or(BackendError::errno(libc::EINVAL))
    }

    fn insert(&mut self, rule: &SteeringRule, location: u32) -> Result<u32, BackendError> {
        self.table.insert(uapi::encode_flow_spec(rule, location))
    }

    fn delete(&mut self, location: u32) -> Result<(), BackendError> {
        self.table.delete(location)
    }

    fn rss_indir(&mut self) -> Result<Vec<u32>, BackendError> {
        Ok(self.table.indir.clone())
    }

    fn set_rss_indir(&mut self, table: &[u32]) -> Result<(), BackendError> {
        if table.len() != self.table.indir.len() {
            return Err(BackendError::errno(libc::EINVAL));
        }
        if table.iter().any(|&q| q >= self.table.rx_rings) {
            return Err(ModelTable::inval("indirection entry beyond the PF's rings"));
        }
        self.table.indir.copy_from_slice(table);
        Ok(())
    }
}
