//! The seam between the datapath and the switch: a frame goes in, a list of
//! deliveries comes out.
//!
//! Order of matching on the silicon (facts §4): flow-director perfect filters win, otherwise the L2
//! switch picks pool(s) by destination MAC/VLAN, then RSS picks a queue inside the pool.

use crate::pool::PoolTable;

/// Where a frame comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The wire port.
    Wire,
    /// Transmitted by VF `n` (VEB: may loop back to another pool).
    Vf(u16),
    /// Transmitted by the PF's kernel side.
    Pf,
}

/// Why the switch dropped a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A flow-director drop rule matched.
    FdirDrop,
    /// No pool accepted the frame (unknown unicast, filtered multicast, VLAN not member).
    NoPool,
    /// Other filtering.
    Filtered,
}

/// Destination of one replica of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// VF `vf`, VF-relative RX queue `queue`.
    Vf {
        /// VF index.
        vf: u16,
        /// VF-relative queue.
        queue: u16,
    },
    /// The PF's kernel side.
    Pf {
        /// PF queue.
        queue: u16,
    },
    /// Out of the wire port.
    Wire,
    /// Dropped.
    Drop(DropReason),
}

/// A flow-director match reported in the RX descriptor (facts §6.1: filter ID low 16 bits,
/// bucket hash high 16 bits of dword 1; FLM status bit; RSS type 0xF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdirHit {
    /// Software filter index.
    pub id: u16,
    /// Bucket hash.
    pub hash: u16,
}

/// One replica of a classified frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Where it goes.
    pub dest: Dest,
    /// Toeplitz hash (0 when no RSS).
    pub rss_hash: u32,
    /// RSS type (facts §6.1: 0 none, 1 IPv4/TCP, 2 IPv4, 7 IPv4/UDP, …).
    pub rss_type: u8,
    /// Flow-director match, if any.
    pub fdir: Option<FdirHit>,
    /// VM-to-VM loopback (LB status bit).
    pub loopback: bool,
}

impl Delivery {
    /// A plain delivery without RSS or FDIR information.
    pub fn to(dest: Dest) -> Self {
        Delivery {
            dest,
            rss_hash: 0,
            rss_type: 0,
            fdir: None,
            loopback: false,
        }
    }
}

/// Decides where a frame goes. Implemented by the switch and by [`StubClassifier`].
pub trait Classifier: Send + Sync {
    /// Appends one [`Delivery`] per replica of `frame` to `out` (which the caller has cleared).
    fn classify(&self, frame: &[u8], origin: Origin, pools: &PoolTable, out: &mut Vec<Delivery>);
}

/// A minimal classifier: a frame whose destination MAC is a VF's MAC goes to that VF's queue 0;
/// any other frame from the wire goes to VF 0 queue 0; any other frame from a VF leaves on the
/// wire. Broadcast from a VF goes to the wire only.
#[derive(Debug, Default, Clone, Copy)]
pub struct StubClassifier;

impl Classifier for StubClassifier {
    fn classify(&self, frame: &[u8], origin: Origin, pools: &PoolTable, out: &mut Vec<Delivery>) {
        let Some(dst) = frame.get(0..6) else {
            out.push(Delivery::to(Dest::Drop(DropReason::Filtered)));
            return;
        };
        let mut dmac = [0u8; 6];
        dmac.copy_from_slice(dst);
        let owner = pools.vfs.iter().position(|p| p.owns_mac(&dmac));
        match (owner, origin) {
            (Some(vf), Origin::Vf(src)) if vf as u16 != src => out.push(Delivery {
                loopback: true,
                ..Delivery::to(Dest::Vf {
                    vf: vf as u16,
                    queue: 0,
                })
            }),
            (Some(vf), Origin::Wire | Origin::Pf) => out.push(Delivery::to(Dest::Vf {
                vf: vf as u16,
                queue: 0,
            })),
            (_, Origin::Wire) => out.push(Delivery::to(Dest::Vf { vf: 0, queue: 0 })),
            _ if dmac == pools.pf.mac => out.push(Delivery {
                loopback: true,
                ..Delivery::to(Dest::Pf { queue: 0 })
            }),
            _ => out.push(Delivery::to(Dest::Wire)),
        }
    }
}
