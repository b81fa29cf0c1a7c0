//! [`SimBackend`]: steering into the NIC model instead of the kernel.
//!
//! [`SimBackend::model`] drives the model's PF agent (`floodgate_sim::Pf`: its flow director and
//! RSS, with the same quirks and errors as ixgbe), which is what `floodgate demo` steers.
//!
//! The standalone table ([`SimBackend::standalone`]) keeps the PF's n-tuple table the way ixgbe
//! does (facts §4.3): a table of `(1024 << pballoc) - 2` locations, inserting at an occupied
//! location replaces that rule, one global mask per port (a rule with another mask is refused with
//! `EINVAL` until every rule is deleted), `EOPNOTSUPP` while n-tuple is off, `EINVAL` for an
//! empty location, VF selector checked against `num_vfs`. It is what `floodgate demo` steers when
//! no model switch is wired in, and what the steering tests run against.

use std::collections::BTreeMap;

use floodgate_sim::ethtool as simeth;

use super::uapi::{self, RxFlowSpec};
use super::{
    Action, BackendError, Flow, RuleTable, SteeringBackend, SteeringRule, UserDef, VlanMatch,
};

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

enum Inner {
    Table(ModelTable),
    Model(floodgate_sim::Pf),
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Inner::Table(t) => f.debug_tuple("Table").field(t).finish(),
            Inner::Model(_) => f.write_str("Model(Pf)"),
        }
    }
}

/// Steering into the NIC model.
#[derive(Debug)]
pub struct SimBackend {
    pf: String,
    inner: Inner,
}

fn sim_err(e: simeth::EthtoolError) -> BackendError {
    BackendError {
        errno: e.errno(),
        detail: Some(e.message().to_string()),
    }
}

/// A rule in the model's ethtool form (the same fields `struct ethtool_rx_flow_spec` carries).
pub fn to_sim_spec(rule: &SteeringRule, location: u32) -> simeth::RxFlowSpec {
    let flow_type = match rule.flow {
        Flow::Udp4 => simeth::FlowType::UdpV4,
        Flow::Tcp4 => simeth::FlowType::TcpV4,
        Flow::Sctp4 => simeth::FlowType::SctpV4,
        Flow::Ip4 { .. } => simeth::FlowType::IpUserV4,
    };
    let mut s = simeth::RxFlowSpec::new(flow_type);
    s.src_ip = rule.src_ip;
    s.src_ip_mask = rule.src_mask;
    s.dst_ip = rule.dst_ip;
    s.dst_ip_mask = rule.dst_mask;
    s.src_port = rule.src_port;
    s.src_port_mask = rule.src_port_mask;
    s.dst_port = rule.dst_port;
    s.dst_port_mask = rule.dst_port_mask;
    if let Flow::Ip4 { proto } = rule.flow {
        s.l4_proto = proto.unwrap_or(0);
        s.l4_proto_mask = if proto.is_some() { 0xff } else { 0 };
    }
    if rule.vlan.is_some() || rule.user_def.is_some() {
        let mut ext = simeth::FlowExt::default();
        if let Some(v) = rule.vlan {
            ext.vlan_tci = v.tci;
            ext.vlan_tci_mask = v.mask;
        }
        if let Some(u) = rule.user_def {
            ext.user_def = u.value;
            ext.user_def_mask = u.mask;
        }
        s.ext = Some(ext);
    }
    s.ring_cookie = uapi::ring_cookie(rule.action);
    s.location = location;
    s
}

/// The model's rule back in floodgate's form (`None` for flow types floodgate does not steer).
pub fn from_sim_spec(s: &simeth::RxFlowSpec) -> Option<SteeringRule> {
    let flow = match s.flow_type {
        simeth::FlowType::UdpV4 => Flow::Udp4,
        simeth::FlowType::TcpV4 => Flow::Tcp4,
        simeth::FlowType::SctpV4 => Flow::Sctp4,
        simeth::FlowType::IpUserV4 => Flow::Ip4 {
            proto: (s.l4_proto_mask != 0).then_some(s.l4_proto),
        },
        _ => return None,
    };
    let mut r = SteeringRule::new(flow, uapi::action_of_cookie(s.ring_cookie));
    r.src_ip = s.src_ip;
    r.src_mask = s.src_ip_mask;
    r.dst_ip = s.dst_ip;
    r.dst_mask = s.dst_ip_mask;
    r.src_port = s.src_port;
    r.src_port_mask = s.src_port_mask;
    r.dst_port = s.dst_port;
    r.dst_port_mask = s.dst_port_mask;
    if let Some(e) = s.ext {
        if e.vlan_tci_mask != 0 {
            r.vlan = Some(VlanMatch {
                tci: e.vlan_tci,
                mask: e.vlan_tci_mask,
            });
        }
        if e.user_def_mask != 0 {
            r.user_def = Some(UserDef {
                value: e.user_def,
                mask: e.user_def_mask,
            });
        }
    }
    r.location = Some(s.location);
    Some(r)
}

impl SimBackend {
    /// The model's PF agent, under the netdev name `pf` (used in messages only).
    pub fn model(pf: &str, agent: floodgate_sim::Pf) -> SimBackend {
        SimBackend {
            pf: pf.to_string(),
            inner: Inner::Model(agent),
        }
    }

    /// A model PF named `pf` with a standalone rule table of `size` locations (ixgbe: 2046), 4
    /// PF rings and 8 VFs of 2 queues.
    pub fn standalone(pf: &str, size: u32) -> SimBackend {
        SimBackend {
            pf: pf.to_string(),
            inner: Inner::Table(ModelTable::new(size)),
        }
    }

    /// `ethtool -K <pf> ntuple on|off`; turning it off deletes every rule, as the port reset does.
    pub fn set_ntuple(&mut self, on: bool) {
        match &mut self.inner {
            Inner::Table(t) => {
                t.ntuple = on;
                if !on {
                    t.rules.clear();
                    t.mask = None;
                }
            }
            Inner::Model(p) => p.switch_mut(|s| s.ethtool_set_ntuple(on)),
        }
    }

    /// Inserts a rule as another tool would (`ethtool -N`), outside any [`super::Steering`].
    pub fn insert_foreign(
        &mut self,
        rule: &SteeringRule,
        location: u32,
    ) -> Result<u32, BackendError> {
        self.insert(rule, location)
    }

    /// The rules in the table, by location.
    pub fn rules(&self) -> Vec<(u32, SteeringRule)> {
        match &self.inner {
            Inner::Table(t) => t
                .rules
                .iter()
                .filter_map(|(&l, fs)| uapi::decode_flow_spec(fs).map(|r| (l, r)))
                .collect(),
            Inner::Model(p) => p.switch(|s| {
                let (_, locs) = s.ethtool_ntuple_all();
                locs.iter()
                    .filter_map(|&l| {
                        let spec = s.ethtool_get_ntuple(l).ok()?;
                        from_sim_spec(&spec).map(|r| (l, r))
                    })
                    .collect()
            }),
        }
    }

    /// Standalone table only: sets the PF ring count and the VF layout (`num_vfs`, queues per
    /// pool). The model's layout comes from its `NicConfig`.
    pub fn set_layout(&mut self, rx_rings: u32, num_vfs: u32, queues_per_pool: u32) {
        if let Inner::Table(t) = &mut self.inner {
            t.rx_rings = rx_rings;
            t.num_vfs = num_vfs;
            t.queues_per_pool = queues_per_pool;
        }
    }
}

impl SteeringBackend for SimBackend {
    fn pf(&self) -> &str {
        &self.pf
    }

    fn rx_rings(&mut self) -> Result<u32, BackendError> {
        match &self.inner {
            Inner::Table(t) => Ok(t.rx_rings),
            Inner::Model(p) => Ok(p.switch(|s| s.layout().pf_num_rx_queues())),
        }
    }

    fn rule_table(&mut self) -> Result<RuleTable, BackendError> {
        match &self.inner {
            Inner::Table(t) => {
                // Like ixgbe, listing works with n-tuple off; inserting does not.
                Ok(RuleTable {
                    size: t.size,
                    locations: t.rules.keys().copied().collect(),
                })
            }
            Inner::Model(p) => {
                let (size, locations) = p.switch(|s| s.ethtool_ntuple_all());
                Ok(RuleTable { size, locations })
            }
        }
    }

    fn get_rule(&mut self, location: u32) -> Result<RxFlowSpec, BackendError> {
        match &self.inner {
            Inner::Table(t) => t
                .rules
                .get(&location)
                .copied()
                .ok_or(BackendError::errno(libc::EINVAL)),
            Inner::Model(p) => {
                let spec = p
                    .switch(|s| s.ethtool_get_ntuple(location))
                    .map_err(sim_err)?;
                let rule = from_sim_spec(&spec).ok_or(BackendError::errno(libc::EINVAL))?;
                Ok(uapi::encode_flow_spec(&rule, location))
            }
        }
    }

    fn insert(&mut self, rule: &SteeringRule, location: u32) -> Result<u32, BackendError> {
        match &mut self.inner {
            Inner::Table(t) => t.insert(uapi::encode_flow_spec(rule, location)),
            Inner::Model(p) => p.add_ntuple(&to_sim_spec(rule, location)).map_err(sim_err),
        }
    }

    fn delete(&mut self, location: u32) -> Result<(), BackendError> {
        match &mut self.inner {
            Inner::Table(t) => t.delete(location),
            Inner::Model(p) => p.del_ntuple(location).map_err(sim_err),
        }
    }

    fn rss_indir(&mut self) -> Result<Vec<u32>, BackendError> {
        match &self.inner {
            Inner::Table(t) => Ok(t.indir.clone()),
            Inner::Model(p) => Ok(p.rxfh().0.iter().map(|&q| u32::from(q)).collect()),
        }
    }

    fn set_rss_indir(&mut self, table: &[u32]) -> Result<(), BackendError> {
        match &mut self.inner {
            Inner::Table(t) => {
                if table.len() != t.indir.len() {
                    return Err(BackendError::errno(libc::EINVAL));
                }
                if table.iter().any(|&q| q >= t.rx_rings) {
                    return Err(ModelTable::inval("indirection entry beyond the PF's rings"));
                }
                t.indir.copy_from_slice(table);
                Ok(())
            }
            Inner::Model(p) => p
                .set_rxfh(&simeth::RxfhRequest {
                    indir: simeth::IndirSpec::Table(table.to_vec()),
                    ..Default::default()
                })
                .map_err(sim_err),
        }
    }
}
