//! TX offloads through descriptors, as Linux's ixgbevf uses them (docs/model-fidelity.md,
//! finding 2): a context descriptor with MACLEN/IPLEN/L4T/L4LEN/MSS (facts §6.3) and data
//! descriptors with POPTS.IXSM/TXSM and DCMD.TSE (facts §6.2).

pub mod vfdrv;

use floodgate_sim::regs::*;
use floodgate_sim::NicModel;
use floodgate_vfio::{Bar, Device};
use vfdrv::*;

const POPTS_IXSM: u32 = 1 << 8;
const POPTS_TXSM: u32 = 1 << 9;
const TUCMD_IPV4: u32 = 1 << 10;
const L4T_TCP: u32 = 1 << 11;

/// One's-complement 16-bit sum, folded (an implementation independent of the model's).
fn csum(parts: &[&[u8]]) -> u16 {
    let mut all = Vec::new();
    for p in parts {
        all.extend_from_slice(p);
    }
    if all.len() % 2 == 1 {
        all.push(0);
    }
    let mut s: u64 = all
        .chunks(2)
        .map(|c| u64::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while s > 0xFFFF {
        s = (s & 0xFFFF) + (s >> 16);
    }
    s as u16
}

fn pseudo(f: &[u8], proto: u8, len: usize) -> Vec<u8> {
    let mut p = f[26..34].to_vec();
    p.extend_from_slice(&[0, proto]);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    p
}

/// Are the IPv4 header checksum and the L4 checksum of this frame right?
fn checksums_ok(f: &[u8]) -> (bool, bool) {
    let ihl = (f[14] & 15) as usize * 4;
    let total = u16::from_be_bytes([f[16], f[17]]) as usize;
    let l4 = &f[14 + ihl..14 + total];
    let ip = csum(&[&f[14..14 + ihl]]) == 0xFFFF;
    (ip, csum(&[&pseudo(f, f[23], l4.len()), l4]) == 0xFFFF)
}

fn context(rings: &Rings, slot: u32, macip: u32, tucmd: u32, mss_l4len: u32) {
    let d = TX_RING_OFF + slot as usize * 16;
    rings.w32(d, macip);
    rings.w32(d + 4, 0);
    rings.w32(d + 8, TXD_DTYP_CTXT | TXD_CMD_DEXT | tucmd);
    rings.w32(d + 12, mss_l4len);
}

/// Adds `extra_cmd` to the cmd dword and replaces the olinfo of data descriptor `slot`.
fn patch_data(rings: &Rings, slot: u32, extra_cmd: u32, olinfo: u32) {
    let d = TX_RING_OFF + slot as usize * 16;
    let cmd = rings.r32(d + 8) | extra_cmd;
    rings.w32(d + 8, cmd);
    rings.w32(d + 12, olinfo);
}

#[test]
fn udp_checksum_is_inserted_from_the_driver_seed() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    MbxVf::new(&vf).bring_up();
    let rings = Rings::new(&vf, 64);
    rings.setup_tx(&bar, 0);
    let mut f = udp_frame([0x02, 7, 7, 7, 7, 7], vf_mac(0), 100);
    let udp_len = 100 - 34;
    f[38..40].copy_from_slice(&(udp_len as u16).to_be_bytes());
    // What Linux leaves for CHECKSUM_PARTIAL: the folded pseudo-header sum, not complemented.
    let seed = csum(&[&pseudo(&f, 17, udp_len)]);
    f[40..42].copy_from_slice(&seed.to_be_bytes());
    let ipc = ip_header_csum(&f);
    f[24..26].copy_from_slice(&ipc.to_be_bytes());
    assert_eq!(
        checksums_ok(&f),
        (true, false),
        "the seed alone is not a checksum"
    );
    context(&rings, 0, 20 | 14 << 9, TUCMD_IPV4, 0);
    rings.write(rings.tx_buf(1), &f);
    rings.tx_data(0, 1, rings.tx_buf(1), 100, true, true);
    patch_data(&rings, 1, 0, 100 << 14 | POPTS_TXSM | TXD_CC);
    // A second frame without POPTS goes out untouched.
    rings.write(rings.tx_buf(2), &f);
    rings.tx_data(0, 2, rings.tx_buf(2), 100, true, true);
    bar.write32(txq(0, TDT), 3);
    nic.step();
    let out = nic.take_egress();
    assert_eq!(out.len(), 2);
    assert_eq!(checksums_ok(&out[0]), (true, true));
    assert_eq!(&out[0][..40], &f[..40]);
    assert_eq!(&out[0][42..], &f[42..]);
    assert_eq!(out[1], f, "no POPTS, no change");
}

fn ip_header_csum(f: &[u8]) -> u16 {
    let mut h = f[14..34].to_vec();
    h[10] = 0;
    h[11] = 0;
    !csum(&[&h])
}

#[test]
fn tso_cuts_the_payload_into_segments_with_vlan_and_checksums() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    MbxVf::new(&vf).bring_up();
    let rings = Rings::new(&vf, 64);
    rings.setup_tx(&bar, 0);
    // Ethernet + IPv4 + TCP (20) + 2600 bytes of payload, MSS 1000 -> 3 segments.
    let payload = 2600;
    let mut f = udp_frame([0x02, 7, 7, 7, 7, 7], vf_mac(0), 54 + payload);
    f[23] = 6;
    f[16..18].copy_from_slice(&[0, 0]); // ixgbevf_tso zeroes tot_len and the IP checksum
    f[24..26].copy_from_slice(&[0, 0]);
    f[18..20].copy_from_slice(&0x4000u16.to_be_bytes()); // IP ID
    f[38..42].copy_from_slice(&1_000_000u32.to_be_bytes()); // seq
    f[46] = 5 << 4;
    f[47] = 0x10 | 0x08 | 0x01; // ACK PSH FIN
    let seed = csum(&[&pseudo(&f, 6, 0)]);
    f[50..52].copy_from_slice(&seed.to_be_bytes());
    // Context: VLAN 7, MACLEN 14, IPLEN 20, IPv4 TCP, L4LEN 20, MSS 1000.
    context(
        &rings,
        0,
        7 << 16 | 14 << 9 | 20,
        TUCMD_IPV4 | L4T_TCP,
        1000 << 16 | 20 << 8,
    );
    // The frame over two buffers (2048 bytes each).
    let (a, b) = f.split_at(2000);
    rings.write(rings.tx_buf(1), a);
    rings.write(rings.tx_buf(2), b);
    rings.tx_data(0, 1, rings.tx_buf(1), a.len() as u32, false, false);
    rings.tx_data(0, 2, rings.tx_buf(2), b.len() as u32, true, true);
    let olinfo = (payload as u32) << 14 | POPTS_IXSM | POPTS_TXSM | TXD_CC;
    patch_data(&rings, 1, TXD_CMD_TSE | TXD_CMD_VLE, olinfo);
    patch_data(&rings, 2, TXD_CMD_TSE | TXD_CMD_VLE, olinfo);
    bar.write32(txq(0, TDT), 3);
    nic.step();
    let out = nic.take_egress();
    assert_eq!(out.len(), 3, "one frame per MSS");
    let mut data = Vec::new();
    for (i, s) in out.iter().enumerate() {
        assert_eq!(&s[12..16], &[0x81, 0x00, 0x00, 0x07], "VLAN in segment {i}");
        // Take the tag out to check the IPv4/TCP frame.
        let mut u = s[..12].to_vec();
        u.extend_from_slice(&s[16..]);
        let len = if i < 2 { 1000 } else { 600 };
        assert_eq!(u.len(), 54 + len);
        assert_eq!(u16::from_be_bytes([u[16], u[17]]) as usize, 40 + len);
        assert_eq!(u16::from_be_bytes([u[18], u[19]]), 0x4000 + i as u16);
        assert_eq!(checksums_ok(&u), (true, true), "segment {i}");
        let seq = u32::from_be_bytes(u[38..42].try_into().unwrap());
        assert_eq!(seq, 1_000_000 + 1000 * i as u32);
        assert_eq!(u[47] & 0x09 != 0, i == 2, "FIN/PSH only on the last");
        data.extend_from_slice(&u[54..]);
    }
    assert_eq!(data, f[54..]);
    assert_eq!(bar.read32(VFGPTC), 3, "segments are counted as frames");
    assert_eq!(rings.tx_status(0, 2) & TXD_STAT_DD, TXD_STAT_DD);
}

#[test]
fn tso_with_a_non_tcp_context_is_dropped() {
    let nic = nic(NicModel::X82599, 2);
    let vf = nic.vf(0);
    let bar = vf.bar0();
    MbxVf::new(&vf).bring_up();
    let rings = Rings::new(&vf, 64);
    rings.setup_tx(&bar, 0);
    let f = udp_frame([0x02, 7, 7, 7, 7, 7], vf_mac(0), 1500);
    context(&rings, 0, 14 << 9 | 20, TUCMD_IPV4, 500 << 16 | 8 << 8);
    rings.write(rings.tx_buf(1), &f);
    rings.tx_data(0, 1, rings.tx_buf(1), 1500, true, true);
    patch_data(&rings, 1, TXD_CMD_TSE, 1458 << 14 | POPTS_TXSM | TXD_CC);
    bar.write32(txq(0, TDT), 2);
    nic.step();
    assert!(nic.take_egress().is_empty());
    assert_eq!(bar.read32(VFGPTC), 0);
    assert_eq!(bar.read32(txq(0, TDH)), 2, "consumed");
}
