//! Where frames come from and go to outside the NIC: the wire side's sources (traffic
//! generator, pcap replay) and sinks (pcap capture, TAP, AF_PACKET, the PF's kernel side).

/// A source of wire frames (the traffic generator and the pcap reader implement it).
pub trait FrameSource: Send {
    /// Writes the next frame into the start of `buf` (9728 bytes, the largest frame) and returns
    /// its length, or `None` when the source is exhausted.
    fn next_frame(&mut self, buf: &mut [u8]) -> Option<usize>;
}

/// A queue of prepared frames is a source (replays them once, in order).
impl FrameSource for std::collections::VecDeque<Vec<u8>> {
    fn next_frame(&mut self, buf: &mut [u8]) -> Option<usize> {
        let f = self.pop_front()?;
        let n = f.len().min(buf.len());
        buf[..n].copy_from_slice(&f[..n]);
        Some(n)
    }
}

/// A consumer of frames (pcap capture, TAP, AF_PACKET).
pub trait FrameSink: Send {
    /// Called once per frame.
    fn frame(&mut self, frame: &[u8]);
}
