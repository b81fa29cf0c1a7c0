//! Completing partial UDP/TCP checksums before a frame is written to the TAP.
//!
//! A datagram a local socket sends over veth (and other virtual devices with checksum offload)
//! leaves the sender with `CHECKSUM_PARTIAL`: the L4 checksum field holds only the folded sum of
//! the pseudo-header, and the receiving stack is told the checksum is fine. AF_XDP hands out the
//! bytes without that mark, so a frame written to a TAP as it is would be dropped by the kernel
//! as corrupt. Real NICs deliver complete checksums.
//!
//! [`needs_completion`] recognises such a frame exactly: its checksum field equals the folded
//! pseudo-header sum *and* the complete checksum does not verify (a complete checksum that
//! happens to equal the pseudo-header sum is left alone). The cost for frames with a complete
//! checksum is one header parse and the pseudo-header sum (a few dozen instructions); the full
//! sum is computed only for frames whose field matches. [`complete`] fills in the real checksum.
//! Frames that are neither partial nor valid are left as they are (the kernel counts and drops
//! them, as it would have).

/// Where the L4 checksum of a frame is and what it covers.
struct L4 {
    /// Offset of the L4 header in the frame.
    start: usize,
    /// L4 header + payload length (from the IP header, without Ethernet padding).
    len: usize,
    /// Offset of the checksum field in the frame.
    field: usize,
    /// The pseudo-header sum, unfolded.
    pseudo: u32,
    /// UDP: a computed 0 is sent as 0xffff (0 means "no checksum" over IPv4).
    udp: bool,
    /// IPv4 (where a UDP checksum of 0 means none).
    v4: bool,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// One's-complement sum of `b` as big-endian 16-bit words (odd tail padded with 0), unfolded.
fn sum(b: &[u8]) -> u32 {
    let mut s: u64 = 0;
    let mut chunks = b.chunks_exact(2);
    for c in &mut chunks {
        s += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        s += u64::from(*last) << 8;
    }
    while s > 0xffff_ffff {
        s = (s & 0xffff_ffff) + (s >> 32);
    }
    s as u32
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn add(a: u32, b: u32) -> u32 {
    let (s, carry) = a.overflowing_add(b);
    s + u32::from(carry)
}

/// Finds the UDP or TCP checksum of an unfragmented IPv4 or IPv6 (no extension headers) frame,
/// behind at most one 802.1Q/802.1ad tag.
fn locate(f: &[u8]) -> Option<L4> {
    let mut off = 12;
    let mut ethertype = be16(f.get(..14)?, 12);
    if ethertype == 0x8100 || ethertype == 0x88a8 {
        ethertype = be16(f.get(..18)?, 16);
        off += 4;
    }
    let l3 = off + 2;
    let (start, len, proto, pseudo, v4) = match ethertype {
        0x0800 => {
            let ip = f.get(l3..l3 + 20)?;
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(be16(ip, 2));
            // Fragments (MF set or an offset) carry no complete L4 segment here.
            if ip[0] >> 4 != 4 || ihl < 20 || be16(ip, 6) & 0x3fff != 0 || total < ihl {
                return None;
            }
            let proto = ip[9];
            let len = total - ihl;
            let pseudo = add(sum(&ip[12..20]), u32::from(proto) + len as u32);
            (l3 + ihl, len, proto, pseudo, true)
        }
        0x86dd => {
            let ip = f.get(l3..l3 + 40)?;
            let len = usize::from(be16(ip, 4));
            let proto = ip[6];
            let pseudo = add(sum(&ip[8..40]), u32::from(proto) + len as u32);
            (l3 + 40, len, proto, pseudo, false)
        }
        _ => return None,
    };
    let (field, udp) = match proto {
        17 => (6, true),
        6 => (16, false),
        _ => return None,
    };
    if f.len() < start + len || len < field + 2 {
        return None;
    }
    Some(L4 {
        start,
        len,
        field: start + field,
        pseudo,
        udp,
        v4,
    })
}

/// Whether `frame`'s UDP or TCP checksum is a partial one (see the module docs).
pub fn needs_completion(frame: &[u8]) -> bool {
    let Some(l4) = locate(frame) else {
        return false;
    };
    let field = be16(frame, l4.field);
    if l4.udp && l4.v4 && field == 0 {
        return false; // IPv4 UDP without checksum
    }
    if field != fold(l4.pseudo) {
        return false;
    }
    let full = add(l4.pseudo, sum(&frame[l4.start..l4.start + l4.len]));
    fold(full) != 0xffff
}

/// Computes and writes the complete UDP or TCP checksum of `frame`; returns whether there was
/// one to compute (an unfragmented IPv4/IPv6 UDP or TCP frame).
pub fn complete(frame: &mut [u8]) -> bool {
    let Some(l4) = locate(frame) else {
        return false;
    };
    frame[l4.field..l4.field + 2].copy_from_slice(&[0, 0]);
    let mut c = !fold(add(l4.pseudo, sum(&frame[l4.start..l4.start + l4.len])));
    if c == 0 && l4.udp {
        c = 0xffff;
    }
    frame[l4.field..l4.field + 2].copy_from_slice(&c.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 or IPv6 UDP/TCP frame with a complete checksum, optionally behind a VLAN tag.
    fn frame(v6: bool, tcp: bool, vlan: bool, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        if vlan {
            f.extend_from_slice(&[0x81, 0, 0, 7]);
        }
        let mut l4 = vec![0x30, 0x39, 0, 53];
        if tcp {
            l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        } else {
            l4.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
        }
        l4.extend_from_slice(payload);
        let proto = if tcp { 6 } else { 17 };
        if v6 {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            f.extend_from_slice(&[proto, 64]);
            f.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
            f.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        } else {
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            f.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0, 10, 53, 0, 2, 10, 53, 0, 1]);
        }
        f.extend_from_slice(&l4);
        assert!(complete(&mut f));
        f
    }

    /// Verifies the L4 checksum the way a receiver does.
    fn verifies(f: &[u8]) -> bool {
        let l4 = locate(f).unwrap();
        fold(add(l4.pseudo, sum(&f[l4.start..l4.start + l4.len]))) == 0xffff
    }

    /// What a sender with checksum offload puts in the field: the folded pseudo-header sum.
    fn make_partial(f: &mut [u8]) {
        let l4 = locate(f).unwrap();
        let p = fold(l4.pseudo);
        f[l4.field..l4.field + 2].copy_from_slice(&p.to_be_bytes());
    }

    #[test]
    fn partial_checksums_are_recognised_and_completed() {
        for (v6, tcp, vlan) in [
            (false, false, false),
            (false, true, false),
            (true, false, false),
            (true, true, false),
            (false, false, true),
            (true, false, true),
        ] {
            for payload in [&b"q1.test.example"[..], b"odd", b""] {
                let good = frame(v6, tcp, vlan, payload);
                assert!(verifies(&good));
                assert!(
                    !needs_completion(&good),
                    "complete checksums are left alone"
                );
                let mut f = good.clone();
                make_partial(&mut f);
                assert!(needs_completion(&f), "v6 {v6} tcp {tcp} vlan {vlan}");
                assert!(!verifies(&f));
                assert!(complete(&mut f));
                assert_eq!(f, good, "completion gives the sender's complete checksum");
            }
        }
    }

    #[test]
    fn corrupt_fragmented_and_other_frames_are_left_alone() {
        let mut bad = frame(false, false, false, b"payload");
        let n = bad.len();
        bad[n - 1] ^= 0x55; // corrupt payload: neither complete nor partial
        assert!(!needs_completion(&bad));
        let mut nocsum = frame(false, false, false, b"payload");
        nocsum[40..42].copy_from_slice(&[0, 0]); // IPv4 UDP without checksum
        assert!(!needs_completion(&nocsum));
        let mut frag = frame(false, false, false, b"payload");
        make_partial(&mut frag);
        frag[20] |= 0x20; // MF
        assert!(!needs_completion(&frag));
        let mut icmp = frame(false, false, false, b"payload");
        icmp[23] = 1;
        assert!(!needs_completion(&icmp));
        // Truncated frames at every length: no panic, nothing to complete.
        let mut p = frame(true, true, true, b"abcdef");
        make_partial(&mut p);
        for len in 0..p.len() {
            assert!(!needs_completion(&p[..len]), "truncated to {len}");
            assert!(!complete(&mut p.clone()[..len]));
        }
    }

    #[test]
    fn a_complete_checksum_equal_to_the_pseudo_sum_is_kept() {
        // Search payloads until the complete checksum happens to equal the pseudo-header sum.
        for x in 0..=u16::MAX {
            let f = frame(false, false, false, &x.to_be_bytes());
            let l4 = locate(&f).unwrap();
            if be16(&f, l4.field) == fold(l4.pseudo) {
                assert!(!needs_completion(&f), "valid checksum, not partial");
                return;
            }
        }
        panic!("no payload gave a checksum equal to the pseudo-header sum");
    }
}
