//! Frame builders shared by the filter tests.

use std::net::{Ipv4Addr, Ipv6Addr};

pub const UDP: u8 = 17;
pub const TCP: u8 = 6;
pub const ICMP: u8 = 1;

fn eth(ethertype: u16, vlan: Option<u16>) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    if let Some(tci) = vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

fn l4(proto: u8, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    match proto {
        UDP => {
            h.extend_from_slice(&sport.to_be_bytes());
            h.extend_from_slice(&dport.to_be_bytes());
            h.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            h.extend_from_slice(&[0, 0]);
        }
        TCP => {
            h.extend_from_slice(&sport.to_be_bytes());
            h.extend_from_slice(&dport.to_be_bytes());
            h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        }
        _ => h.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1]),
    }
    h.extend_from_slice(payload);
    h
}

/// An IPv4 frame (optionally VLAN-tagged) with a UDP/TCP/ICMP header and payload.
pub fn ipv4(
    proto: u8,
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    ipv4_full(proto, src, dst, sport, dport, payload, None, 0)
}

/// Like [`ipv4`] with a VLAN tag and a fragment offset field (in 8-byte units, flags clear).
#[allow(clippy::too_many_arguments)]
pub fn ipv4_full(
    proto: u8,
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    payload: &[u8],
    vlan: Option<u16>,
    frag: u16,
) -> Vec<u8> {
    let mut f = eth(0x0800, vlan);
    let body = l4(proto, sport, dport, payload);
    let total = (20 + body.len()) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 1]);
    f.extend_from_slice(&frag.to_be_bytes());
    f.extend_from_slice(&[64, proto, 0, 0]);
    f.extend_from_slice(&Ipv4Addr::from(src).octets());
    f.extend_from_slice(&Ipv4Addr::from(dst).octets());
    f.extend_from_slice(&body);
    while f.len() < 60 {
        f.push(0);
    }
    f
}

/// An IPv6 frame with a UDP/TCP header and payload.
pub fn ipv6(
    proto: u8,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = eth(0x86dd, None);
    let body = l4(proto, sport, dport, payload);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(body.len() as u16).to_be_bytes());
    f.extend_from_slice(&[proto, 64]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&body);
    f
}

/// An ARP-like non-IP frame.
pub fn arp() -> Vec<u8> {
    let mut f = eth(0x0806, None);
    f.resize(60, 0);
    f
}

/// A DNS query payload (12-byte header, QR=0) of `len` bytes.
pub fn dns_query(len: usize) -> Vec<u8> {
    let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    p.resize(len.max(12), 0);
    p
}

/// A DNS response payload (QR=1).
pub fn dns_response(len: usize) -> Vec<u8> {
    let mut p = dns_query(len);
    p[2] = 0x81;
    p[3] = 0x80;
    p
}
