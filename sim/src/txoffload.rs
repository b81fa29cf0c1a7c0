//! TX offloads the driver asks for in the advanced TX descriptors (facts §6.2, §6.3): IPv4 header
//! checksum (POPTS.IXSM), TCP/UDP checksum (POPTS.TXSM) and TCP segmentation (DCMD.TSE), driven
//! by the fields of the context descriptor the data descriptor refers to.
//!
//! Linux's ixgbevf uses all three (it advertises checksum offload and TSO). Before this module the
//! model put its frames on the wire with the driver's pseudo-header seed in the L4 checksum
//! field, which the guest tests caught (docs/model-fidelity.md, finding 2).
//!
//! How the silicon computes, and what the driver prepares:
//! * L4 checksum: the one's-complement sum from the L4 header (MACLEN + IPLEN) to the end of the
//!   packet, *including* the checksum field, which the driver seeded with the pseudo-header sum;
//!   the complement is written back (UDP: a result of 0 is sent as 0xFFFF).
//! * TSO: the driver seeds the TCP checksum with the pseudo-header sum *without* the length
//!   (and zeroes the IPv4 total length and checksum); the silicon cuts the payload into MSS-sized
//!   segments, copies the headers, and per segment sets the IPv4 total length, increments the IPv4
//!   ID, the IPv6 payload length, the TCP sequence number, clears FIN/PSH on all but the last and
//!   CWR on all but the first, then adds the segment's L4 length to the seed and checksums.
//!
//! Nothing here allocates per frame: segments are built in a caller-owned scratch buffer.

use crate::csum::{fold, sum};

/// Context-descriptor dword 2 (type_tucmd_mlhl): TUCMD.IPV4 (facts §6.3).
const TUCMD_IPV4: u32 = 1 << 10;
/// TUCMD.L4T, bits 12:11.
const TUCMD_L4T_SHIFT: u32 = 11;

/// The L4 type of a context descriptor (TUCMD.L4T).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum L4Type {
    /// 00: UDP.
    #[default]
    Udp,
    /// 01: TCP.
    Tcp,
    /// 10: SCTP (CRC32c; not modelled, the frame is left as it is).
    Sctp,
    /// 11: reserved (what drivers write when they want no L4 offload).
    Reserved,
}

/// The fields of one advanced TX context descriptor that the offloads use (facts §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TxOffloadCtx {
    /// MAC header length (dword 0 bits 15:9), VLAN tag included when it is in the buffer.
    pub maclen: u16,
    /// IP header length (dword 0 bits 8:0), options / extension headers included.
    pub iplen: u16,
    /// TUCMD.IPV4: the IP header is IPv4 (else IPv6).
    pub ipv4: bool,
    /// TUCMD.L4T.
    pub l4t: L4Type,
    /// L4 header length (dword 3 bits 15:8), used by TSO.
    pub l4len: u8,
    /// Maximum segment size (dword 3 bits 31:16), used by TSO.
    pub mss: u16,
}

impl TxOffloadCtx {
    /// Decodes the context descriptor dwords 0, 2 and 3.
    pub fn from_desc(vlan_macip_lens: u32, type_tucmd_mlhl: u32, mss_l4len_idx: u32) -> Self {
        TxOffloadCtx {
            maclen: ((vlan_macip_lens >> 9) & 0x7F) as u16,
            iplen: (vlan_macip_lens & 0x1FF) as u16,
            ipv4: type_tucmd_mlhl & TUCMD_IPV4 != 0,
            l4t: match (type_tucmd_mlhl >> TUCMD_L4T_SHIFT) & 3 {
                0 => L4Type::Udp,
                1 => L4Type::Tcp,
                2 => L4Type::Sctp,
                _ => L4Type::Reserved,
            },
            l4len: ((mss_l4len_idx >> 8) & 0xFF) as u8,
            mss: (mss_l4len_idx >> 16) as u16,
        }
    }

    fn l3(&self) -> usize {
        self.maclen as usize
    }

    fn l4(&self) -> usize {
        self.maclen as usize + self.iplen as usize
    }
}

/// Why a TSO request could not be carried out (the frame is then dropped, as a malformed
/// descriptor would make the silicon do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TsoError {
    /// The context's header lengths do not fit the frame, or are implausible.
    #[error("TSO: header lengths MACLEN {maclen} + IPLEN {iplen} + L4LEN {l4len} do not fit a {len}-byte frame")]
    BadHeaders {
        /// MACLEN.
        maclen: u16,
        /// IPLEN.
        iplen: u16,
        /// L4LEN.
        l4len: u8,
        /// Frame length.
        len: usize,
    },
    /// TSO was asked for a non-TCP context or an MSS of 0.
    #[error("TSO: needs a TCP context with a non-zero MSS (L4T {l4t:?}, MSS {mss})")]
    NotTcp {
        /// L4T of the context.
        l4t: L4Type,
        /// MSS of the context.
        mss: u16,
    },
}

fn put16(frame: &mut [u8], at: usize, v: u16) {
    frame[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn get16(frame: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([frame[at], frame[at + 1]])
}

/// Recomputes the IPv4 header checksum at `l3` (header length `iplen`).
fn ipv4_checksum(frame: &mut [u8], l3: usize, iplen: usize) {
    put16(frame, l3 + 10, 0);
    let c = !fold(sum(&frame[l3..l3 + iplen], 0));
    put16(frame, l3 + 10, c);
}

/// Offset of the L4 checksum field inside the L4 header.
fn l4_csum_offset(l4t: L4Type) -> Option<usize> {
    match l4t {
        L4Type::Udp => Some(6),
        L4Type::Tcp => Some(16),
        L4Type::Sctp | L4Type::Reserved => None,
    }
}

/// Inserts the checksums a data descriptor asked for into a complete frame (non-TSO):
/// `ixsm` the IPv4 header checksum, `txsm` the TCP/UDP checksum, the latter over everything from
/// the L4 header to the end of the frame, seeded with what the driver left in the field.
///
/// Returns false (and leaves the frame as it is) when the context's lengths do not fit the
/// frame, or the L4 type has no checksum the model computes (SCTP, reserved): the frame is then
/// sent unchanged, which is what a misprogrammed context gets on silicon too.
pub fn insert_checksums(frame: &mut [u8], ctx: &TxOffloadCtx, ixsm: bool, txsm: bool) -> bool {
    let (l3, l4) = (ctx.l3(), ctx.l4());
    if ctx.iplen == 0 || l4 > frame.len() {
        return false;
    }
    let mut ok = true;
    if ixsm {
        if ctx.ipv4 && ctx.iplen >= 20 {
            ipv4_checksum(frame, l3, ctx.iplen as usize);
        } else {
            ok = false;
        }
    }
    if txsm {
        match l4_csum_offset(ctx.l4t) {
            Some(off) if l4 + off + 2 <= frame.len() => {
                let mut c = !fold(sum(&frame[l4..], 0));
                if ctx.l4t == L4Type::Udp && c == 0 {
                    c = 0xFFFF;
                }
                put16(frame, l4 + off, c);
            }
            _ => ok = false,
        }
    }
    ok
}

/// TCP segmentation (DCMD.TSE): cuts `frame` (headers of `maclen + iplen + l4len` bytes, then
/// the payload) into segments of at most `ctx.mss` payload bytes, each built in `scratch` and
/// handed to `emit`. Per segment: IPv4 total length, ID (+1 per segment) and header checksum
/// (`ixsm`), or IPv6 payload length; TCP sequence number; FIN/PSH only on the last segment, CWR
/// only on the first; and, with `txsm`, the TCP checksum (the driver's length-less pseudo-header
/// seed plus the segment's TCP length). Returns the number of segments.
pub fn segment(
    frame: &[u8],
    ctx: &TxOffloadCtx,
    ixsm: bool,
    txsm: bool,
    scratch: &mut Vec<u8>,
    mut emit: impl FnMut(&[u8]),
) -> Result<usize, TsoError> {
    if ctx.l4t != L4Type::Tcp || ctx.mss == 0 {
        return Err(TsoError::NotTcp {
            l4t: ctx.l4t,
            mss: ctx.mss,
        });
    }
    let (l3, l4) = (ctx.l3(), ctx.l4());
    let hdr = l4 + ctx.l4len as usize;
    let min_ip = if ctx.ipv4 { 20 } else { 40 };
    if (ctx.iplen as usize) < min_ip || (ctx.l4len as usize) < 20 || hdr > frame.len() {
        return Err(TsoError::BadHeaders {
            maclen: ctx.maclen,
            iplen: ctx.iplen,
            l4len: ctx.l4len,
            len: frame.len(),
        });
    }
    let payload = &frame[hdr..];
    let mss = ctx.mss as usize;
    let nseg = payload.len().div_ceil(mss).max(1);
    let seq0 = u32::from_be_bytes([frame[l4 + 4], frame[l4 + 5], frame[l4 + 6], frame[l4 + 7]]);
    let id0 = if ctx.ipv4 { get16(frame, l3 + 4) } else { 0 };
    let flags0 = frame[l4 + 13];
    let seed = get16(frame, l4 + 16);
    const FIN: u8 = 0x01;
    const PSH: u8 = 0x08;
    const CWR: u8 = 0x80;
    for i in 0..nseg {
        let chunk = &payload[(i * mss).min(payload.len())..((i + 1) * mss).min(payload.len())];
        scratch.clear();
        scratch.extend_from_slice(&frame[..hdr]);
        scratch.extend_from_slice(chunk);
        let s = &mut scratch[..];
        let l4_total = ctx.l4len as usize + chunk.len();
        if ctx.ipv4 {
            put16(s, l3 + 2, (ctx.iplen as usize + l4_total) as u16);
            put16(s, l3 + 4, id0.wrapping_add(i as u16));
            if ixsm {
                ipv4_checksum(s, l3, ctx.iplen as usize);
            }
        } else {
            put16(s, l3 + 4, (ctx.iplen as usize - 40 + l4_total) as u16);
        }
        let seq = seq0.wrapping_add((i * mss) as u32);
        s[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
        let mut flags = flags0;
        if i + 1 < nseg {
            flags &= !(FIN | PSH);
        }
        if i > 0 {
            flags &= !CWR;
        }
        s[l4 + 13] = flags;
        if txsm {
            // The seed has no length in it: add this segment's TCP length.
            put16(s, l4 + 16, 0);
            let acc = sum(&s[l4..], u64::from(seed) + l4_total as u64);
            put16(s, l4 + 16, !fold(acc));
        }
        emit(s);
    }
    Ok(nseg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Independent checker: is the L4 checksum of this IPv4 frame right?
    fn l4_ok(f: &[u8], l3: usize) -> bool {
        let ihl = (f[l3] & 15) as usize * 4;
        let total = get16(f, l3 + 2) as usize;
        let l4 = &f[l3 + ihl..l3 + total];
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&f[l3 + 12..l3 + 20]);
        pseudo.extend_from_slice(&[0, f[l3 + 9]]);
        pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        fold(sum(l4, sum(&pseudo, 0))) == 0xFFFF
    }

    fn ip_ok(f: &[u8], l3: usize) -> bool {
        let ihl = (f[l3] & 15) as usize * 4;
        fold(sum(&f[l3..l3 + ihl], 0)) == 0xFFFF
    }

    /// Pseudo-header sum as Linux seeds it (`~csum_tcpudp_magic(..)`): folded, not complemented.
    fn seed(f: &[u8], l3: usize, proto: u8, len: usize) -> u16 {
        let mut p = Vec::new();
        p.extend_from_slice(&f[l3 + 12..l3 + 20]);
        p.extend_from_slice(&[0, proto]);
        p.extend_from_slice(&(len as u16).to_be_bytes());
        fold(sum(&p, 0))
    }

    fn ipv4_frame(proto: u8, l4hdr: usize, payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + l4hdr + payload];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        let total = 20 + l4hdr + payload;
        put16(&mut f, 16, total as u16);
        put16(&mut f, 18, 0x1234);
        f[22] = 64;
        f[23] = proto;
        f[26..30].copy_from_slice(&[10, 0, 0, 2]);
        f[30..34].copy_from_slice(&[10, 0, 0, 1]);
        for (i, b) in f[34 + l4hdr..].iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        f
    }

    fn ctx(l4t: L4Type, l4len: u8, mss: u16) -> TxOffloadCtx {
        TxOffloadCtx {
            maclen: 14,
            iplen: 20,
            ipv4: true,
            l4t,
            l4len,
            mss,
        }
    }

    #[test]
    fn decodes_context_descriptor() {
        // ixgbevf: vlan_macip_lens = iplen | maclen << 9; type_tucmd = DTYP ctx | DEXT | IPV4 |
        // L4T TCP; mss_l4len_idx = l4len << 8 | mss << 16.
        let c = TxOffloadCtx::from_desc(
            20 | 14 << 9 | 5 << 16,
            0x2 << 20 | 1 << 29 | TUCMD_IPV4 | 1 << 11,
            20 << 8 | 1448 << 16,
        );
        assert_eq!(c, ctx(L4Type::Tcp, 20, 1448));
        let c = TxOffloadCtx::from_desc(40 | 18 << 9, 3 << 11, 0);
        assert_eq!(
            (c.maclen, c.iplen, c.ipv4, c.l4t),
            (18, 40, false, L4Type::Reserved)
        );
    }

    #[test]
    fn udp_and_tcp_checksums_from_the_driver_seed() {
        let mut u = ipv4_frame(17, 8, 19);
        put16(&mut u, 38, 27);
        let s = seed(&u, 14, 17, 27);
        put16(&mut u, 40, s);
        assert!(!l4_ok(&u, 14));
        assert!(insert_checksums(
            &mut u,
            &ctx(L4Type::Udp, 8, 0),
            false,
            true
        ));
        assert!(l4_ok(&u, 14));

        let mut t = ipv4_frame(6, 20, 33);
        let s = seed(&t, 14, 6, 53);
        put16(&mut t, 34 + 16, s);
        put16(&mut t, 24, 0xBEEF); // a wrong IPv4 checksum, fixed by IXSM
        assert!(insert_checksums(
            &mut t,
            &ctx(L4Type::Tcp, 20, 0),
            true,
            true
        ));
        assert!(l4_ok(&t, 14) && ip_ok(&t, 14));
    }

    #[test]
    fn refuses_contexts_that_do_not_fit() {
        let mut f = ipv4_frame(17, 8, 0);
        let before = f.clone();
        let mut c = ctx(L4Type::Udp, 8, 0);
        c.iplen = 200;
        assert!(!insert_checksums(&mut f, &c, true, true));
        assert!(!insert_checksums(
            &mut f,
            &ctx(L4Type::Sctp, 8, 0),
            false,
            true
        ));
        assert_eq!(f, before);
    }

    #[test]
    fn tso_cuts_segments_with_right_headers_and_checksums() {
        let payload = 1000;
        let mut f = ipv4_frame(6, 20, payload);
        // What ixgbevf_tso prepares: IPv4 total length and checksum 0, TCP check = length-less seed.
        put16(&mut f, 16, 0);
        put16(&mut f, 24, 0);
        f[34 + 4..34 + 8].copy_from_slice(&0xFFFF_FF00u32.to_be_bytes()); // seq wraps
        f[34 + 12] = 5 << 4;
        f[34 + 13] = 0x80 | 0x10 | 0x08 | 0x01; // CWR ACK PSH FIN
        let s = seed(&f, 14, 6, 0);
        put16(&mut f, 34 + 16, s);
        let mut scratch = Vec::new();
        let mut segs: Vec<Vec<u8>> = Vec::new();
        let n = segment(
            &f,
            &ctx(L4Type::Tcp, 20, 300),
            true,
            true,
            &mut scratch,
            |s| segs.push(s.to_vec()),
        )
        .unwrap();
        assert_eq!(n, 4);
        let mut data = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let len = if i < 3 { 300 } else { 100 };
            assert_eq!(s.len(), 54 + len);
            assert_eq!(get16(s, 16) as usize, 40 + len);
            assert_eq!(get16(s, 18), 0x1234 + i as u16);
            assert!(ip_ok(s, 14), "segment {i} IPv4 checksum");
            assert!(l4_ok(s, 14), "segment {i} TCP checksum");
            let seq = u32::from_be_bytes(s[38..42].try_into().unwrap());
            assert_eq!(seq, 0xFFFF_FF00u32.wrapping_add(300 * i as u32));
            let fl = s[34 + 13];
            assert_eq!(fl & 0x80 != 0, i == 0, "CWR only on the first");
            assert_eq!(fl & 0x09 != 0, i == 3, "FIN/PSH only on the last");
            assert!(fl & 0x10 != 0);
            data.extend_from_slice(&s[54..]);
        }
        assert_eq!(data, f[54..]);
    }

    #[test]
    fn tso_refuses_bad_contexts() {
        let f = ipv4_frame(6, 20, 100);
        let mut scratch = Vec::new();
        let mut emitted = 0;
        assert!(matches!(
            segment(
                &f,
                &ctx(L4Type::Udp, 20, 100),
                true,
                true,
                &mut scratch,
                |_| emitted += 1
            ),
            Err(TsoError::NotTcp { .. })
        ));
        assert!(matches!(
            segment(
                &f,
                &ctx(L4Type::Tcp, 20, 0),
                true,
                true,
                &mut scratch,
                |_| emitted += 1
            ),
            Err(TsoError::NotTcp { .. })
        ));
        assert!(matches!(
            segment(
                &f[..40],
                &ctx(L4Type::Tcp, 20, 100),
                true,
                true,
                &mut scratch,
                |_| emitted += 1
            ),
            Err(TsoError::BadHeaders { .. })
        ));
        assert_eq!(emitted, 0);
    }

    #[test]
    fn tso_ipv6_payload_length() {
        // 14 MAC + 40 IPv6 + 20 TCP + 250 payload, MSS 100.
        let mut f = vec![0u8; 14 + 40 + 20 + 250];
        f[12..14].copy_from_slice(&[0x86, 0xDD]);
        f[14] = 0x60;
        f[14 + 6] = 6;
        f[54 + 12] = 5 << 4;
        let c = TxOffloadCtx {
            maclen: 14,
            iplen: 40,
            ipv4: false,
            l4t: L4Type::Tcp,
            l4len: 20,
            mss: 100,
        };
        let mut scratch = Vec::new();
        let mut lens = Vec::new();
        let n = segment(&f, &c, false, true, &mut scratch, |s| {
            lens.push(get16(s, 18))
        })
        .unwrap();
        assert_eq!(n, 3);
        assert_eq!(lens, vec![120, 120, 70]);
    }
}
