//! # floodgate-pmd
//!
//! A user-space poll-mode driver for the Intel 82599 (8086:10ED) and X540 (8086:1515) virtual
//! functions (ixgbevf), with a zero-copy burst API.
//!
//! ## API summary
//!
//! * [`IxgbeVf::open`]`(device, `[`Config`]`)` brings the VF up (facts §3.8) over any
//!   [`floodgate_vfio::Device`]: kernel VFIO, vfio-user or the NIC model.
//! * [`IxgbeVf::rx_burst`]`(queue, &mut batch) -> usize` appends received packets to a
//!   [`PacketBatch`]; [`IxgbeVf::tx_burst`]`(queue, &mut batch) -> usize` transmits packets from
//!   the front of a batch without copying, leaving what did not fit.
//! * [`IxgbeVf::rx_burst_judged`]`(queue, &mut batch, &mut judge)` shows the good frames to
//!   an [`RxJudge`] in place, in chunks of up to 32 ([`RxChunk`]), before any buffer is decided:
//!   a dropped frame's buffer is re-armed in its own descriptor (no [`Packet`], no pool
//!   traffic), a kept one is appended to the batch as `rx_burst` does.
//! * [`Packet`]: an owned, `Send` handle to one DMA buffer: [`Packet::data`],
//!   [`Packet::data_mut`], and [`Packet::headroom_mut`], the application's metadata area in
//!   front of the data. Dropping a packet (on any thread) returns the buffer to its
//!   [`Mempool`]; [`PacketBatch::clear`] does it in bulk, and [`IxgbeVf::recycle`] puts a
//!   whole batch straight back into an RX queue's buffer cache (the fastest drop, on the
//!   polling thread).
//! * [`IxgbeVf::maintain`] every few ms to 1 s: PF reset recovery, link, hardware counters,
//!   device-gone detection. [`IxgbeVf::stats`]: driver and hardware counters ([`Stats`]).
//! * [`IxgbeVf::wait_rx`]: idle wait (MSI-X if available, else light polling).
//!
//! ```
//! use floodgate_pmd::{Config, IxgbeVf, PacketBatch, Timeouts};
//! use floodgate_sim::{Nic, NicConfig};
//!
//! let nic = Nic::new(NicConfig::default());
//! let mut vf = IxgbeVf::open(nic.vf(0), Config { timeouts: Timeouts::fast(), ..Default::default() })?;
//! let mut batch = PacketBatch::new(32);
//! // Build a broadcast frame from our own MAC (the PF drops spoofed sources) in a pool buffer,
//! // send it, and let the model put it on the wire.
//! let mut frame = [0u8; 60];
//! frame[..6].copy_from_slice(&[0xff; 6]);
//! frame[6..12].copy_from_slice(&vf.mac());
//! let mut p = vf.mempool().alloc().unwrap();
//! p.copy_from_slice(&frame)?;
//! batch.push(p).unwrap();
//! assert_eq!(vf.tx_burst(0, &mut batch), 1);
//! nic.step();
//! assert_eq!(nic.take_egress().len(), 1);
//! // Receive whatever arrives and drop it (buffers go straight back).
//! vf.rx_burst(0, &mut batch);
//! batch.clear();
//! vf.maintain()?;
//! # Ok::<(), floodgate_pmd::Error>(())
//! ```
//!
//! ## Design
//!
//! One flat module per concern: `regs` (the private register map, cites `docs/datasheet.md`), `mailbox`
//! (PF↔VF protocol), `vf` (the device and its burst entry points; `vf::bringup` holds the
//! bring-up steps of facts §3.8 one function each, `vf::maintain` the PF-reset recovery, link and
//! counters), `rx`/`tx` (rings), `mempool`
//! and `ring` (buffers and their lock-free free list), `batch`.
//!
//! The device is never trusted (facts §6.1): lengths, status and error bits are checked before a
//! buffer is handed out; bad descriptors are counted in [`RxStats`] and recycled; registers that
//! read all-ones become [`Error::DeviceGone`].

#![deny(missing_docs)]

mod batch;
mod error;
mod mailbox;
mod mempool;
mod regs;
mod ring;
mod rx;
mod stats;
mod tx;
mod vf;

pub use batch::{PacketBatch, MAX_BATCH};
pub use error::Error;
pub use mempool::{
    Mempool, MempoolConfig, Packet, PoolLayout, DEFAULT_DATA_ROOM, DEFAULT_HEADROOM, MAX_HEADROOM,
};
pub use rx::{RxChunk, RxJudge, RxJudged, RxStats, RX_CHUNK};
pub use stats::{HwStats, Stats};
pub use tx::TxStats;
pub use vf::{
    fmt_mac, Config, IxgbeVf, LinkStatus, MailboxApi, Maintenance, NicModel, Timeouts, VfInfo,
    XcastMode,
};
