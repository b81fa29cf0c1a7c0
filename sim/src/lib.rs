//! # floodgate-sim
//!
//! A register-level model of the Intel 82599/X540 NIC as seen from its SR-IOV virtual
//! functions: the hardware for every floodgate test, demo and benchmark.
//!
//! * [`SimVf`] implements [`floodgate_vfio::Device`]; its BAR0 ([`SimBar`]) is the VF register
//!   file of facts §2 (atomics, so the driver and the engine thread share it).
//! * The PF agent ([`Pf`]) answers the VF mailbox like the Linux `ixgbe` PF (facts §3) and holds
//!   the administrator's per-VF settings.
//! * RX/TX DMA engines use advanced descriptors (facts §6) and reach memory only through a
//!   per-VF IOMMU table; anything else is a recorded fault.
//! * [`Nic::step`] runs the datapath deterministically; [`Nic::start_engine`] runs it on its own
//!   thread; [`Nic::feeder`] fills an RX ring at line rate for benchmarks.
//!
//! ```
//! use floodgate_sim::{Nic, NicConfig, NicModel};
//! use floodgate_vfio::{Bar, Device};
//! let nic = Nic::new(NicConfig { model: NicModel::X82599, num_vfs: 2, ..Default::default() });
//! let vf = nic.vf(0);
//! assert_eq!(vf.info().device_id, 0x10ED);
//! let bar = vf.bar0();
//! bar.write32(0x0000, 0x0400_0000); // VFCTRL.RST
//! assert_eq!(bar.read32(0x02FC) & 0x80, 0x80); // VFMAILBOX.RSTD
//! assert_eq!(bar.read32(0x02FC) & 0x80, 0); // read-to-clear
//! ```
//!
//! ## Module map
//!
//! The crate root only declares modules and re-exports; modules import each other without a
//! circle (`tests/module_graph.rs` checks it). From the bottom up:
//!
//! * vocabulary: [`regs`] (offsets and bits), [`regfile`] (per register its write and read-back
//!   masks and access kind), [`config`], [`error`], [`fault`], [`pool`], [`sink`] (frame
//!   source/sink traits);
//! * frames and the switch: [`frame`], [`toeplitz`], [`ethtool`], [`rss`], [`fdir`], [`l2`],
//!   [`switch`], checksums ([`rxcsum`], [`txoffload`]);
//! * per-VF state (`vfstate`), the PF agent's state (`agent`), the IOMMU table ([`iommu`]),
//!   the descriptor engines (`rx`, `tx`), the NIC's shared state (`state`);
//! * behaviour on that state: `datapath` (TX → switch → RX), [`pf`] (mailbox agent and the
//!   administrator's API), `switchport` (pool state → switch), [`vf`] (BAR0 semantics);
//! * running it: [`engine`], and the public handle [`Nic`] ([`nic`]), the wire port ([`port`],
//!   [`wire`]), traffic ([`generator`], [`pcap`]) and the vfio-user server ([`vfio_user`]).

#![deny(missing_docs)]

mod agent;
pub mod config;
mod csum;
mod datapath;
pub mod engine;
pub mod error;
pub mod ethtool;
pub mod fault;
pub mod fdir;
pub mod frame;
pub mod generator;
pub mod iommu;
pub mod l2;
pub mod nic;
pub mod pcap;
pub mod pf;
pub mod pool;
pub mod port;
pub mod regfile;
pub mod regs;
pub mod rss;
mod rx;
pub mod rxcsum;
pub mod sink;
mod state;
pub mod switch;
mod switchport;
pub mod toeplitz;
mod tx;
pub mod txoffload;
pub mod vf;
pub mod vfio_user;
mod vfstate;
pub mod wire;

pub use config::{NicConfig, NicModel};
pub use engine::{Engine, EngineConfig, EngineStats, Feeder, FeederConfig, InlineEngine};
pub use error::SimError;
pub use fault::{MailboxFault, RxCorruption};
pub use iommu::Iommu;
pub use nic::{Nic, NicStats};
pub use pf::{Pf, VfLinkState};
pub use pool::{PfPool, PoolState, PoolTable, XcastMode};
pub use port::WirePort;
pub use sink::{FrameSink, FrameSource};
pub use vf::{IrqHandler, SimBar, SimVf, VfCounter};
