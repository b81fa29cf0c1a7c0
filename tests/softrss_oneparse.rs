//! One parse per packet: a worker judges with the parse the soft-RSS dispatcher left in the
//! headroom (`RuleSet::classify_dispatched`) and reaches the same verdicts and counters as the
//! inline path, which parses the frame itself, on mixed traffic (VLAN, IPv6, tunnels,
//! truncated and garbage frames). A headroom record written for another frame is not trusted.

#[allow(dead_code)]
pub mod softrss_util;

use floodgate::filter::*;
use floodgate::softrss::{Dispatcher, FramePacket, RssConfig, RssMeta, SoftRss};
use softrss_util::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A packet: owned bytes plus a 128-byte headroom, as the pool gives.
#[derive(Debug)]
struct Pkt {
    data: Vec<u8>,
    headroom: [u8; 128],
}

impl FramePacket for Pkt {
    fn data(&self) -> &[u8] {
        &self.data
    }
    fn headroom(&self) -> &[u8] {
        &self.headroom
    }
    fn headroom_mut(&mut self) -> &mut [u8] {
        &mut self.headroom
    }
}

fn cidr(addr: IpAddr, len: u8) -> CidrSet {
    CidrSet::new(&[Cidr { addr, len }])
}

/// Rules that read every header the parse provides: addresses, protocol, ports, family,
/// length, plus a per-source rate limit (whose state depends on the parsed source).
fn rules() -> RuleSet {
    let udp = Matcher::Proto(ProtoSet::new(&[Proto::Udp]));
    let tcp = Matcher::Proto(ProtoSet::new(&[Proto::Tcp]));
    let rules = vec![
        Rule::new("runts", vec![Matcher::Len(vec![(0, 59)])], Action::Drop),
        Rule::new(
            "dns-from-10",
            vec![
                udp.clone(),
                Matcher::Src(cidr(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 8)),
                Matcher::DstPort(PortSet::new(&[(53, 53)])),
            ],
            Action::Drop,
        ),
        Rule::new(
            "https-v6",
            vec![
                tcp,
                Matcher::Ipv4(false),
                Matcher::DstPort(PortSet::new(&[(443, 443)])),
            ],
            Action::Pass,
        ),
        Rule::new(
            "sip-to-172.16",
            vec![
                Matcher::Dst(cidr(IpAddr::V4(Ipv4Addr::new(172, 16, 0, 0)), 12)),
                Matcher::DstPort(PortSet::new(&[(5060, 5060)])),
            ],
            Action::Drop,
        ),
        Rule::new(
            "v6-net",
            vec![Matcher::Src(cidr(
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0)),
                16,
            ))],
            Action::Pass,
        ),
        Rule::new(
            "udp-limited",
            vec![udp, Matcher::SrcPort(PortSet::new(&[(1024, 65535)]))],
            Action::RateLimit(RateLimit {
                rate_pps: 1,
                burst: 3,
                key: RateKey::Source {
                    v4_prefix: 16,
                    v6_prefix: 48,
                },
                table_size: 64,
            }),
        ),
    ];
    RuleSet::new(rules, Decision::Drop)
}

/// Every encapsulation and L4, both directions, v4 and v6 inner; each also truncated at a few
/// points (inside the Ethernet header, the VLAN tags, the IP header, the ports); plus garbage.
fn mixed_traffic() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0u32;
    for encap in ALL_ENCAPS {
        for l4 in ALL_L4 {
            for v6_inner in [false, true] {
                for rev in [false, true] {
                    i += 1;
                    let f = build(&flow(i, v6_inner, l4), encap, rev, b"payload bytes");
                    for cut in [10, 16, 20, 30, 36, 40, 56, 60, 70] {
                        if cut < f.len() && (i + cut as u32).is_multiple_of(3) {
                            out.push(f[..cut].to_vec());
                        }
                    }
                    out.push(f);
                }
            }
        }
    }
    let mut x = 0x9e37_79b9_u32;
    for n in 0..200usize {
        let len = n % 120;
        let mut g = Vec::with_capacity(len);
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            g.push(x as u8);
        }
        // Some garbage claims to be IPv4, IPv6 or VLAN-tagged to get further into the parsers.
        if len > 14 {
            let et: [u8; 2] = [[0x08, 0x00], [0x86, 0xdd], [0x81, 0x00], [0x88, 0xa8]][n % 4];
            g[12..14].copy_from_slice(&et);
        }
        out.push(g);
    }
    out
}

#[test]
fn worker_verdicts_equal_inline_verdicts() {
    let frames = mixed_traffic();
    assert!(frames.len() > 700, "{} frames", frames.len());
    // One worker: its ring is FIFO, so the rate limiter sees the frames in the inline order.
    let rss = SoftRss::new(RssConfig {
        workers: 1,
        ..RssConfig::default()
    })
    .unwrap();
    let (mut d, mut queues) = Dispatcher::<Pkt>::new(rss, frames.len()).unwrap();
    for f in &frames {
        // A recycled buffer: the headroom holds an earlier frame's record (or junk).
        let mut headroom = [0xA5u8; 128];
        if f.len() > 20 {
            let old = SoftRss::new(RssConfig::default()).unwrap();
            old.classify(&frames[0])
                .meta()
                .for_frame(&frames[0])
                .write_to(&mut headroom)
                .unwrap();
        }
        let p = Pkt {
            data: f.clone(),
            headroom,
        };
        assert!(d.dispatch(p).is_ok());
    }
    let mut inline = rules();
    let mut worker = rules();
    let q = &mut queues[0];
    let mut n = 0;
    let mut decided = [0usize; 2];
    while let Some(p) = q.pop() {
        let f = &frames[n];
        assert_eq!(&p.data, f);
        let want = inline.classify(f, 1_000_000);
        let (got, used) = worker.classify_dispatched(&p.data, &p.headroom, 1_000_000);
        assert!(used, "the dispatcher's record for frame {n} was not used");
        assert_eq!(got, want, "frame {n}: {f:02x?}");
        decided[usize::from(want.action == Decision::Drop)] += 1;
        n += 1;
    }
    assert_eq!(n, frames.len());
    assert_eq!(worker.counters(), inline.counters());
    // The rules did decide both ways and several rules fired, so the comparison means something.
    assert!(decided[0] > 50 && decided[1] > 50, "{decided:?}");
    let fired = inline
        .counters()
        .rules
        .iter()
        .filter(|c| c.hits > 0)
        .count();
    assert_eq!(
        fired,
        inline.counters().rules.len(),
        "{:?}",
        inline.counters()
    );
    assert!(inline.counters().rules[5].rate_limited > 0);
}

/// IPv4 UDP from 10.1.2.3 to port 53 (the "dns-from-10" rule drops it).
fn dns(pad: usize) -> Vec<u8> {
    let f = Flow {
        src: v4(10, 1, 2, 3),
        dst: v4(192, 0, 2, 53),
        sport: 40000,
        dport: 53,
        l4: L4::Udp,
    };
    build(&f, Encap::Plain, false, &vec![0u8; pad])
}

/// IPv6 TCP to port 443 (the "https-v6" rule passes it).
fn https6(pad: usize) -> Vec<u8> {
    let f = Flow {
        src: v6(7, 0x30),
        dst: v6(8, 0x40),
        sport: 50000,
        dport: 443,
        l4: L4::Tcp,
    };
    build(&f, Encap::Plain, false, &vec![0u8; pad])
}

fn record(frame: &[u8]) -> [u8; 128] {
    let mut room = [0u8; 128];
    let rss = SoftRss::new(RssConfig::default()).unwrap();
    rss.classify(frame)
        .meta()
        .for_frame(frame)
        .write_to(&mut room)
        .unwrap();
    room
}

#[test]
fn a_record_written_for_another_frame_is_not_trusted() {
    let dns = dns(30);
    let https = https6(40);
    assert_ne!(dns.len(), https.len());
    let mut rs = rules();
    let mut reference = rules();
    let want_dns = reference.classify(&dns, 0);
    let want_https = reference.classify(&https, 0);
    assert_eq!(want_dns.action, Decision::Drop);
    assert_eq!(want_https.action, Decision::Pass);

    // The record of the https frame left in the buffer now holding the dns frame.
    let stale = record(&https);
    let meta = RssMeta::read_from(&stale).unwrap();
    assert!(meta.describes(&https) && !meta.describes(&dns));
    // Trusting it would pass the dns frame: the check matters.
    let trusted =
        rules().classify_parsed(&dns, dns.len() as u32, &Parsed::from_meta(&meta, &dns), 0);
    assert_eq!(trusted.action, Decision::Pass);
    let (v, used) = rs.classify_dispatched(&dns, &stale, 0);
    assert!(!used);
    assert_eq!(v, want_dns);

    // A record without a length (a frame over 64 KiB, or a writer that did not say) is not
    // trusted either, nor is a headroom without a record, or one too small for it.
    let mut no_len = record(&dns);
    let mut m = RssMeta::read_from(&no_len).unwrap();
    m.frame_len = 0;
    m.write_to(&mut no_len).unwrap();
    assert_eq!(rs.classify_dispatched(&dns, &no_len, 0), (want_dns, false));
    assert_eq!(
        rs.classify_dispatched(&dns, &[0u8; 128], 0),
        (want_dns, false)
    );
    assert_eq!(
        rs.classify_dispatched(&dns, &record(&dns)[..40], 0),
        (want_dns, false)
    );
    // Its own record is used.
    assert_eq!(
        rs.classify_dispatched(&dns, &record(&dns), 0),
        (want_dns, true)
    );
    assert_eq!(
        rs.classify_dispatched(&https, &stale, 0),
        (want_https, true)
    );
}

#[test]
fn the_dispatcher_ties_each_record_to_its_frame() {
    let rss = SoftRss::new(RssConfig {
        workers: 1,
        ..RssConfig::default()
    })
    .unwrap();
    let (mut d, mut queues) = Dispatcher::<Pkt>::new(rss, 4).unwrap();
    let https = https6(40);
    // The headroom still holds the record of another frame; dispatch replaces it.
    let p = Pkt {
        data: dns(10),
        headroom: record(&https),
    };
    d.dispatch(p).unwrap();
    let p = queues[0].pop().unwrap();
    let m = RssMeta::read_from(&p.headroom).unwrap();
    assert_eq!(usize::from(m.frame_len), p.data.len());
    assert!(m.describes(&p.data));
    assert_eq!((m.src_port, m.dst_port), (40000, 53));
}
