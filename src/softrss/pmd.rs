//! [`FramePacket`] for the PMD's zero-copy packet handle.

use super::FramePacket;

impl FramePacket for floodgate_pmd::Packet {
    #[inline(always)]
    fn data(&self) -> &[u8] {
        floodgate_pmd::Packet::data(self)
    }
    #[inline(always)]
    fn headroom(&self) -> &[u8] {
        floodgate_pmd::Packet::headroom(self)
    }
    #[inline(always)]
    fn headroom_mut(&mut self) -> &mut [u8] {
        floodgate_pmd::Packet::headroom_mut(self)
    }
}
