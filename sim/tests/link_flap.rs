//! Link-flap fault from the wire side: nothing is received while the link is down.

use floodgate_sim::{Nic, NicConfig};

/// A minimum-size frame from the wire to a MAC nobody has (it goes to the PF's kernel side).
fn frame() -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x77]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 9]);
    f[12..14].copy_from_slice(&[0x88, 0xB5]); // local experimental EtherType
    f
}

#[test]
fn nothing_arrives_from_the_wire_while_the_link_is_down() {
    let nic = Nic::new(NicConfig::default());
    let f = frame();
    nic.set_link(false);
    for _ in 0..3 {
        nic.inject(&f);
    }
    nic.step();
    let s = nic.stats();
    assert_eq!((s.wire_in, s.rx_link_down), (3, 3), "{s:?}");
    nic.set_link(true);
    nic.inject(&f);
    nic.step();
    let s = nic.stats();
    assert_eq!(
        (s.wire_in, s.rx_link_down, s.pf_delivered),
        (4, 3, 1),
        "{s:?}"
    );
}
