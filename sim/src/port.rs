//! The NIC's wire port on a real Linux interface (TAP or veth end): [`WirePort`].

use crate::nic::Nic;
use crate::wire::{PacketSocket, WireError};

/// The model's wire port attached to a real interface: frames the interface receives are
/// injected into the NIC, and frames the NIC transmits on the wire are sent out of it.
///
/// Egress is immediate (an AF_PACKET socket installed as the NIC's egress sink); ingress is
/// pulled by [`WirePort::poll`], which the caller runs in its loop next to `nic.step()` (or
/// beside the engine).
#[derive(Debug)]
pub struct WirePort {
    rx: PacketSocket,
    buf: Vec<u8>,
    /// Frames injected so far.
    pub injected: u64,
}

impl WirePort {
    /// Attaches `nic`'s wire port to the existing interface `ifname` (TAP or veth end).
    /// Replaces any egress sink the NIC had.
    pub fn attach(nic: &Nic, ifname: &str) -> Result<WirePort, WireError> {
        let rx = PacketSocket::open(ifname)?;
        let tx = PacketSocket::open(ifname)?;
        nic.set_egress_sink(Some(Box::new(tx)));
        Ok(WirePort {
            rx,
            buf: vec![0u8; 9728 + 64],
            injected: 0,
        })
    }

    /// The interface.
    pub fn ifname(&self) -> &str {
        self.rx.ifname()
    }

    /// Injects up to `max` waiting frames into `nic`; returns how many. Never blocks.
    pub fn poll(&mut self, nic: &Nic, max: usize) -> Result<usize, WireError> {
        let mut n = 0;
        while n < max {
            match self.rx.recv_frame(&mut self.buf)? {
                Some(len) => {
                    nic.inject(&self.buf[..len]);
                    n += 1;
                }
                None => break,
            }
        }
        self.injected += n as u64;
        Ok(n)
    }
}
