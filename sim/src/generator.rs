//! In-memory traffic generator: a seeded, deterministic mix of a UDP/53 flood, legitimate DNS
//! queries and background TCP/UDP traffic.
//!
//! Frames are written into a caller-provided buffer (no allocation per frame) and each carries
//! its [`TrafficClass`], so a test can check that every legitimate query was passed. IPv4 header
//! checksums, UDP/TCP lengths and checksums are correct; legitimate DNS queries are real DNS
//! wire format (RFC 1035 header + QNAME labels + QTYPE/QCLASS).
//!
//! ```
//! use floodgate_sim::generator::{Generator, GeneratorConfig, TrafficClass};
//! let mut g = Generator::new(GeneratorConfig::default()).unwrap();
//! let mut buf = [0u8; 2048];
//! let mut legit = 0;
//! for _ in 0..1000 {
//!     let f = g.next_into(&mut buf).unwrap();
//!     assert!(f.len >= 60);
//!     legit += (f.class == TrafficClass::Legit) as u32;
//! }
//! assert!(legit > 0);
//! // Same seed, same frames.
//! let mut a = Generator::new(GeneratorConfig::default()).unwrap();
//! let mut b = Generator::new(GeneratorConfig::default()).unwrap();
//! let (mut x, mut y) = ([0u8; 2048], [0u8; 2048]);
//! let (fa, fb) = (a.next_into(&mut x).unwrap(), b.next_into(&mut y).unwrap());
//! assert_eq!(x[..fa.len], y[..fb.len]);
//! ```

use crate::frame::{ETHERTYPE_IPV4, ETHERTYPE_VLAN, IPPROTO_TCP, IPPROTO_UDP};

/// Generator errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenError {
    /// The caller's buffer cannot hold the frame.
    #[error("generator: frame needs {need} bytes but the buffer has {have}")]
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Buffer size.
        have: usize,
    },
    /// Bad configuration.
    #[error("generator config: {0}")]
    Config(String),
}

/// SplitMix64: small, fast, seedable PRNG (no external dependency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// Seeds the generator.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// Next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform value in `0..n` (n > 0; 0 returns 0).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Which part of the mix a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrafficClass {
    /// Attack traffic (UDP to the DNS port from random sources).
    Flood,
    /// Legitimate DNS queries from the known clients.
    Legit,
    /// Other TCP/UDP traffic (never to the DNS port).
    Background,
}

/// Sending rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// As fast as the consumer pulls; timestamps are 0.
    MaxSpeed,
    /// Fixed packets per second: frame i has timestamp i·10⁹/pps ns (virtual time).
    Pps(u64),
}

/// Flood payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FloodPayload {
    /// Random bytes, length uniform in `min..=max`.
    Random {
        /// Shortest payload.
        min: u16,
        /// Longest payload.
        max: u16,
    },
    /// DNS queries for random names under `domain` (a "random subdomain" attack).
    RandomSubdomains {
        /// Attacked zone.
        domain: String,
    },
}

/// Flood part of the mix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloodConfig {
    /// Relative weight in the mix.
    pub weight: u32,
    /// Payload kind.
    pub payload: FloodPayload,
    /// A few heavy sources among the random ones (a botnet's busiest members): this share of
    /// the flood, in percent, comes from these addresses, the first ones more often than the
    /// later ones. 0 (or no addresses): every flood source is random.
    pub heavy_sources: Vec<[u8; 4]>,
    /// Percent of the flood sent from `heavy_sources` (0..=100).
    pub heavy_percent: u8,
}

/// Legitimate DNS part of the mix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegitConfig {
    /// Relative weight in the mix.
    pub weight: u32,
    /// Source addresses of legitimate resolvers/clients.
    pub clients: Vec<[u8; 4]>,
    /// Names they ask for.
    pub qnames: Vec<String>,
}

/// Background part of the mix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackgroundConfig {
    /// Relative weight in the mix.
    pub weight: u32,
    /// Percentage of background frames that are TCP (the rest UDP).
    pub tcp_percent: u8,
    /// TCP destination ports to use.
    pub tcp_ports: Vec<u16>,
    /// UDP destination ports to use (must not contain the DNS port).
    pub udp_ports: Vec<u16>,
}

/// Full generator configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratorConfig {
    /// PRNG seed: equal seeds give equal output.
    pub seed: u64,
    /// Rate.
    pub rate: Rate,
    /// Destination MAC of every frame (the NIC port/VF/PF).
    pub dst_mac: [u8; 6],
    /// Source MAC (the upstream router).
    pub src_mac: [u8; 6],
    /// The attacked server's address.
    pub server_ip: [u8; 4],
    /// DNS port on the server.
    pub dns_port: u16,
    /// Optional 802.1Q VLAN ID on every frame.
    pub vlan: Option<u16>,
    /// Flood.
    pub flood: FloodConfig,
    /// Legitimate queries.
    pub legit: LegitConfig,
    /// Background.
    pub background: BackgroundConfig,
}

impl Default for GeneratorConfig {
    /// 90% flood, 2% legitimate DNS from 4 clients, 8% background; 1 Mpps; server 10.0.0.1.
    fn default() -> Self {
        GeneratorConfig {
            seed: 0x5EED,
            rate: Rate::Pps(1_000_000),
            dst_mac: crate::switch::DEFAULT_PF_MAC,
            src_mac: [0x02, 0x00, 0x00, 0x00, 0x0A, 0x01],
            server_ip: [10, 0, 0, 1],
            dns_port: 53,
            vlan: None,
            flood: FloodConfig {
                weight: 90,
                payload: FloodPayload::Random { min: 16, max: 64 },
                heavy_sources: Vec::new(),
                heavy_percent: 0,
            },
            legit: LegitConfig {
                weight: 2,
                clients: vec![
                    [192, 0, 2, 10],
                    [192, 0, 2, 11],
                    [198, 51, 100, 7],
                    [203, 0, 113, 53],
                ],
                qnames: vec![
                    "www.example.com".into(),
                    "mail.example.com".into(),
                    "example.org".into(),
                ],
            },
            background: BackgroundConfig {
                weight: 8,
                tcp_percent: 70,
                tcp_ports: vec![80, 443, 22],
                udp_ports: vec![123, 443, 5004],
            },
        }
    }
}

/// Metadata of one generated frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generated {
    /// Frame length written into the buffer.
    pub len: usize,
    /// Traffic class.
    pub class: TrafficClass,
    /// Sequence number (0-based).
    pub seq: u64,
    /// Scheduled send time in ns of virtual time (0 at max speed).
    pub time_ns: u64,
}

/// The generator.
#[derive(Debug, Clone)]
pub struct Generator {
    cfg: GeneratorConfig,
    rng: SplitMix64,
    /// The Ethernet header (with the tag, if any) every frame starts with, built once.
    l2: [u8; 18],
    /// Its length: 14, or 18 with a VLAN tag.
    l2_len: usize,
    seq: u64,
    total_weight: u64,
}

/// Longest frame the generator writes (1514 bytes + a VLAN tag).
pub const MAX_GEN_FRAME: usize = 1518;

impl Generator {
    /// Validates `cfg` and seeds the PRNG.
    pub fn new(cfg: GeneratorConfig) -> Result<Generator, GenError> {
        let total = u64::from(cfg.flood.weight)
            + u64::from(cfg.legit.weight)
            + u64::from(cfg.background.weight);
        if total == 0 {
            return Err(GenError::Config("all class weights are 0".into()));
        }
        if cfg.legit.weight > 0 && (cfg.legit.clients.is_empty() || cfg.legit.qnames.is_empty()) {
            return Err(GenError::Config(
                "legit traffic needs at least one client and one qname".into(),
            ));
        }
        for q in &cfg.legit.qnames {
            check_qname(q)?;
        }
        if let FloodPayload::RandomSubdomains { domain } = &cfg.flood.payload {
            check_qname(&format!("x.{domain}"))?;
        }
        if let FloodPayload::Random { min, max } = cfg.flood.payload {
            if min > max || max > 1400 {
                return Err(GenError::Config(format!(
                    "flood payload range {min}..={max} is invalid (min <= max <= 1400)"
                )));
            }
        }
        if cfg.background.weight > 0 {
            if cfg.background.tcp_percent > 100 {
                return Err(GenError::Config("background tcp_percent above 100".into()));
            }
            if cfg.background.tcp_ports.is_empty() || cfg.background.udp_ports.is_empty() {
                return Err(GenError::Config(
                    "background needs TCP and UDP ports".into(),
                ));
            }
            if cfg.background.udp_ports.contains(&cfg.dns_port) {
                return Err(GenError::Config(format!(
                    "background UDP ports include the DNS port {}; background must stay distinguishable",
                    cfg.dns_port
                )));
            }
        }
        if let Some(v) = cfg.vlan {
            if v == 0 || v > 4094 {
                return Err(GenError::Config(format!(
                    "VLAN ID {v} out of range 1..=4094"
                )));
            }
        }
        if let Rate::Pps(0) = cfg.rate {
            return Err(GenError::Config("rate of 0 pps".into()));
        }
        let mut l2 = [0u8; 18];
        let l2_len = eth_header(&mut l2, cfg.dst_mac, cfg.src_mac, cfg.vlan);
        Ok(Generator {
            rng: SplitMix64::new(cfg.seed),
            l2,
            l2_len,
            cfg,
            seq: 0,
            total_weight: total,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &GeneratorConfig {
        &self.cfg
    }

    /// Frames generated so far.
    pub fn generated(&self) -> u64 {
        self.seq
    }

    /// How many more frames are due after `elapsed_ns` of real time at the configured rate
    /// (unbounded at max speed: returns `u64::MAX`).
    pub fn frames_due(&self, elapsed_ns: u64) -> u64 {
        match self.cfg.rate {
            Rate::MaxSpeed => u64::MAX,
            Rate::Pps(pps) => {
                let total = (u128::from(elapsed_ns) * u128::from(pps) / 1_000_000_000) as u64;
                total.saturating_sub(self.seq)
            }
        }
    }

    /// A flood frame's source: one of the heavy sources (their share of the time, skewed to the
    /// first ones: the smaller of two uniform picks), else a random one. Without heavy sources
    /// no extra random number is drawn, so a seed gives the same traffic as before they existed.
    fn flood_source(&mut self) -> [u8; 4] {
        let n = self.cfg.flood.heavy_sources.len() as u64;
        if n > 0
            && self.cfg.flood.heavy_percent > 0
            && self.rng.below(100) < u64::from(self.cfg.flood.heavy_percent)
        {
            let i = self.rng.below(n).min(self.rng.below(n)) as usize;
            return self.cfg.flood.heavy_sources[i];
        }
        self.random_source()
    }

    fn random_source(&mut self) -> [u8; 4] {
        loop {
            // Unicast space 1.0.0.0 .. 223.255.255.255, never a legitimate client.
            let v = self.rng.next_u64() as u32;
            let ip = (v % (223 << 24)) + (1 << 24);
            let b = ip.to_be_bytes();
            if !self.cfg.legit.clients.contains(&b) && b != self.cfg.server_ip {
                return b;
            }
        }
    }

    fn fill_random(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let r = self.rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }

    /// Writes the next frame into `buf` (at most [`MAX_GEN_FRAME`] bytes).
    pub fn next_into(&mut self, buf: &mut [u8]) -> Result<Generated, GenError> {
        if buf.len() < MAX_GEN_FRAME {
            // Decide nothing before checking, so a failed call does not consume randomness.
            return Err(GenError::BufferTooSmall {
                need: MAX_GEN_FRAME,
                have: buf.len(),
            });
        }
        let pick = self.rng.below(self.total_weight);
        let fw = u64::from(self.cfg.flood.weight);
        let lw = u64::from(self.cfg.legit.weight);
        let class = if pick < fw {
            TrafficClass::Flood
        } else if pick < fw + lw {
            TrafficClass::Legit
        } else {
            TrafficClass::Background
        };
        let c = &self.cfg;
        let (dst_mac, src_mac, server, dns_port, vlan) =
            (c.dst_mac, c.src_mac, c.server_ip, c.dns_port, c.vlan);
        // UDP payloads are written in place, after the headers that `finish_udp4` writes
        // around them: no zeroed scratch buffer and no copy per frame.
        let l2 = self.l2;
        let l2 = &l2[..self.l2_len];
        let off = l2.len() + 28;
        let len = match class {
            TrafficClass::Flood => {
                let src = self.flood_source();
                let sport = 1024 + self.rng.below(64512) as u16;
                let plen = match &self.cfg.flood.payload {
                    FloodPayload::Random { min, max } => {
                        let n =
                            usize::from(*min) + self.rng.below(u64::from(max - min) + 1) as usize;
                        self.fill_random(&mut buf[off..off + n]);
                        n
                    }
                    FloodPayload::RandomSubdomains { domain } => {
                        let mut label = [0u8; 12];
                        for l in label.iter_mut() {
                            *l = b'a' + self.rng.below(26) as u8;
                        }
                        let id = self.rng.next_u64() as u16;
                        write_dns_query_parts(&mut buf[off..], id, &[&label, domain.as_bytes()], 1)?
                    }
                };
                finish_udp4(buf, l2, src, server, sport, dns_port, plen)?
            }
            TrafficClass::Legit => {
                let ci = self.rng.below(self.cfg.legit.clients.len() as u64) as usize;
                let qi = self.rng.below(self.cfg.legit.qnames.len() as u64) as usize;
                let src = self.cfg.legit.clients[ci];
                let sport = 1024 + self.rng.below(64512) as u16;
                let id = self.rng.next_u64() as u16;
                let qtype = if self.rng.below(4) == 0 { 28 } else { 1 };
                let plen = write_dns_query(&mut buf[off..], id, &self.cfg.legit.qnames[qi], qtype)?;
                finish_udp4(buf, l2, src, server, sport, dns_port, plen)?
            }
            TrafficClass::Background => {
                let src = self.random_source();
                let sport = 1024 + self.rng.below(64512) as u16;
                let n = self.rng.below(201) as usize;
                let mut payload = [0u8; 200];
                self.fill_random(&mut payload[..n]);
                let tcp = self.rng.below(100) < u64::from(self.cfg.background.tcp_percent);
                if tcp {
                    let ports = &self.cfg.background.tcp_ports;
                    let dport = ports[self.rng.below(ports.len() as u64) as usize];
                    let seqno = self.rng.next_u64() as u32;
                    build_tcp4_vlan(
                        buf,
                        dst_mac,
                        src_mac,
                        vlan,
                        src,
                        server,
                        sport,
                        dport,
                        seqno,
                        TCP_ACK | TCP_PSH,
                        &payload[..n],
                    )?
                } else {
                    let ports = &self.cfg.background.udp_ports;
                    let dport = ports[self.rng.below(ports.len() as u64) as usize];
                    buf[off..off + n].copy_from_slice(&payload[..n]);
                    finish_udp4(buf, l2, src, server, sport, dport, n)?
                }
            }
        };
        let seq = self.seq;
        self.seq += 1;
        let time_ns = match self.cfg.rate {
            Rate::MaxSpeed => 0,
            Rate::Pps(pps) => (u128::from(seq) * 1_000_000_000 / u128::from(pps)) as u64,
        };
        Ok(Generated {
            len,
            class,
            seq,
            time_ns,
        })
    }
}

/// The engine pulls frames from the generator; it never runs dry.
impl crate::sink::FrameSource for Generator {
    fn next_frame(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.next_into(buf).ok().map(|g| g.len)
    }
}

fn check_qname(q: &str) -> Result<(), GenError> {
    let bad = |why: &str| Err(GenError::Config(format!("qname {q:?}: {why}")));
    if q.is_empty() || q.len() > 253 {
        return bad("length must be 1..=253");
    }
    for l in q.split('.') {
        if l.is_empty() || l.len() > 63 {
            return bad("every label must be 1..=63 bytes");
        }
    }
    Ok(())
}

/// TCP flag FIN.
pub const TCP_FIN: u8 = 0x01;
/// TCP flag SYN.
pub const TCP_SYN: u8 = 0x02;
/// TCP flag PSH.
pub const TCP_PSH: u8 = 0x08;
/// TCP flag ACK.
pub const TCP_ACK: u8 = 0x10;

/// Internet checksum (RFC 1071) of `data`, folded, starting from `sum`.
pub fn inet_checksum(data: &[u8], sum: u32) -> u16 {
    !crate::csum::fold(crate::csum::sum(data, u64::from(sum)))
}

fn pseudo_sum(src: [u8; 4], dst: [u8; 4], proto: u8, len: usize) -> u32 {
    u32::from(u16::from_be_bytes([src[0], src[1]]))
        + u32::from(u16::from_be_bytes([src[2], src[3]]))
        + u32::from(u16::from_be_bytes([dst[0], dst[1]]))
        + u32::from(u16::from_be_bytes([dst[2], dst[3]]))
        + u32::from(proto)
        + len as u32
}

fn eth_header(buf: &mut [u8], dst: [u8; 6], src: [u8; 6], vlan: Option<u16>) -> usize {
    buf[..6].copy_from_slice(&dst);
    buf[6..12].copy_from_slice(&src);
    match vlan {
        Some(v) => {
            buf[12..14].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
            buf[14..16].copy_from_slice(&v.to_be_bytes()); // full TCI (PCP/DEI/VID)
            buf[16..18].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            18
        }
        None => {
            buf[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            14
        }
    }
}

fn ipv4_header(buf: &mut [u8], src: [u8; 4], dst: [u8; 4], proto: u8, l4_len: usize, id: u16) {
    let total = (20 + l4_len) as u16;
    buf[0] = 0x45;
    buf[1] = 0;
    buf[2..4].copy_from_slice(&total.to_be_bytes());
    buf[4..6].copy_from_slice(&id.to_be_bytes());
    buf[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
    buf[8] = 64;
    buf[9] = proto;
    buf[10..12].copy_from_slice(&[0, 0]);
    buf[12..16].copy_from_slice(&src);
    buf[16..20].copy_from_slice(&dst);
    let c = inet_checksum(&buf[..20], 0);
    buf[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Pads a frame to the 60-byte Ethernet minimum (without FCS).
fn pad(buf: &mut [u8], len: usize) -> usize {
    if len < 60 {
        buf[len..60].fill(0);
        60
    } else {
        len
    }
}

/// A minimum-size (60-byte) Ethernet/IPv4/UDP frame from `src_mac` to `dst_mac`,
/// 198.51.100.7:40000 → 192.0.2.1:53, with correct lengths and checksums: the template of
/// feeders, benchmarks and examples (the model checks checksums as the NIC does, and a driver
/// drops what it flags as bad).
///
/// ```
/// let f = floodgate_sim::generator::min_udp4_frame([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
/// assert_eq!(f.len(), 60);
/// assert_eq!(&f[12..14], &[0x08, 0x00]);
/// ```
pub fn min_udp4_frame(dst_mac: [u8; 6], src_mac: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    // 14 + 20 + 8 + 18 = 60 bytes: always fits.
    let n = build_udp4(
        &mut f,
        dst_mac,
        src_mac,
        [198, 51, 100, 7],
        [192, 0, 2, 1],
        40000,
        53,
        &[0u8; 18],
    )
    .unwrap_or(0);
    f.truncate(n);
    f
}

/// Writes an untagged Ethernet/IPv4/UDP frame; returns its length.
#[allow(clippy::too_many_arguments)]
pub fn build_udp4(
    buf: &mut [u8],
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src_ip: [u8; 4],
    dst_ip: [u8; 4],
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Result<usize, GenError> {
    build_udp4_vlan(
        buf, dst_mac, src_mac, None, src_ip, dst_ip, sport, dport, payload,
    )
}

/// Writes an Ethernet(/802.1Q)/IPv4/UDP frame with correct lengths and checksums. `vlan` is
/// the whole tag control information (priority, DEI, VLAN ID).
#[allow(clippy::too_many_arguments)]
pub fn build_udp4_vlan(
    buf: &mut [u8],
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    vlan: Option<u16>,
    src_ip: [u8; 4],
    dst_ip: [u8; 4],
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Result<usize, GenError> {
    let l2 = if vlan.is_some() { 18 } else { 14 };
    let udp_len = 8 + payload.len();
    let need = (l2 + 20 + udp_len).max(60);
    if buf.len() < need || udp_len > 0xFFFF - 20 {
        return Err(GenError::BufferTooSmall {
            need,
            have: buf.len(),
        });
    }
    let mut hdr = [0u8; 18];
    let l2 = eth_header(&mut hdr, dst_mac, src_mac, vlan);
    buf[l2 + 28..l2 + 28 + payload.len()].copy_from_slice(payload);
    finish_udp4(buf, &hdr[..l2], src_ip, dst_ip, sport, dport, payload.len())
}

/// Completes an Ethernet(/802.1Q)/IPv4/UDP frame whose `plen`-byte payload is already in place
/// after the headers: writes `l2` (the Ethernet header, with its tag if any), the IPv4 and UDP
/// headers with their checksums, and the padding.
fn finish_udp4(
    buf: &mut [u8],
    l2: &[u8],
    src_ip: [u8; 4],
    dst_ip: [u8; 4],
    sport: u16,
    dport: u16,
    plen: usize,
) -> Result<usize, GenError> {
    let udp_len = 8 + plen;
    let need = (l2.len() + 20 + udp_len).max(60);
    if buf.len() < need || udp_len > 0xFFFF - 20 {
        return Err(GenError::BufferTooSmall {
            need,
            have: buf.len(),
        });
    }
    buf[..l2.len()].copy_from_slice(l2);
    let l2 = l2.len();
    let id = sport ^ dport.rotate_left(8);
    ipv4_header(&mut buf[l2..], src_ip, dst_ip, IPPROTO_UDP, udp_len, id);
    let u = l2 + 20;
    buf[u..u + 2].copy_from_slice(&sport.to_be_bytes());
    buf[u + 2..u + 4].copy_from_slice(&dport.to_be_bytes());
    buf[u + 4..u + 6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    buf[u + 6..u + 8].copy_from_slice(&[0, 0]);
    let mut c = inet_checksum(
        &buf[u..u + udp_len],
        pseudo_sum(src_ip, dst_ip, IPPROTO_UDP, udp_len),
    );
    if c == 0 {
        c = 0xFFFF;
    }
    buf[u + 6..u + 8].copy_from_slice(&c.to_be_bytes());
    Ok(pad(buf, u + udp_len))
}

/// Writes an Ethernet(/802.1Q)/IPv4/TCP frame (20-byte TCP header) with correct checksums.
#[allow(clippy::too_many_arguments)]
pub fn build_tcp4_vlan(
    buf: &mut [u8],
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    vlan: Option<u16>,
    src_ip: [u8; 4],
    dst_ip: [u8; 4],
    sport: u16,
    dport: u16,
    seq: u32,
    flags: u8,
    payload: &[u8],
) -> Result<usize, GenError> {
    let l2 = if vlan.is_some() { 18 } else { 14 };
    let tcp_len = 20 + payload.len();
    let need = (l2 + 20 + tcp_len).max(60);
    if buf.len() < need || tcp_len > 0xFFFF - 20 {
        return Err(GenError::BufferTooSmall {
            need,
            have: buf.len(),
        });
    }
    let l2 = eth_header(buf, dst_mac, src_mac, vlan);
    ipv4_header(
        &mut buf[l2..],
        src_ip,
        dst_ip,
        IPPROTO_TCP,
        tcp_len,
        seq as u16,
    );
    let t = l2 + 20;
    buf[t..t + 2].copy_from_slice(&sport.to_be_bytes());
    buf[t + 2..t + 4].copy_from_slice(&dport.to_be_bytes());
    buf[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
    buf[t + 8..t + 12].copy_from_slice(&seq.rotate_left(7).to_be_bytes());
    buf[t + 12] = 5 << 4;
    buf[t + 13] = flags;
    buf[t + 14..t + 16].copy_from_slice(&64240u16.to_be_bytes());
    buf[t + 16..t + 20].fill(0);
    buf[t + 20..t + tcp_len].copy_from_slice(payload);
    let c = inet_checksum(
        &buf[t..t + tcp_len],
        pseudo_sum(src_ip, dst_ip, IPPROTO_TCP, tcp_len),
    );
    buf[t + 16..t + 18].copy_from_slice(&c.to_be_bytes());
    Ok(pad(buf, t + tcp_len))
}

/// Writes a DNS query message (RD set, one question, class IN) for `qname` and `qtype` into
/// `buf`; returns its length.
pub fn write_dns_query(
    buf: &mut [u8],
    id: u16,
    qname: &str,
    qtype: u16,
) -> Result<usize, GenError> {
    check_qname(qname)?;
    write_dns_query_parts(buf, id, &[qname.as_bytes()], qtype)
}

/// DNS query whose name is the concatenation of dotted parts (`parts[0]` . `parts[1]` ...).
fn write_dns_query_parts(
    buf: &mut [u8],
    id: u16,
    parts: &[&[u8]],
    qtype: u16,
) -> Result<usize, GenError> {
    let name_len: usize = parts.iter().map(|p| p.len() + 1).sum::<usize>() + 1;
    let need = 12 + name_len + 4;
    if buf.len() < need {
        return Err(GenError::BufferTooSmall {
            need,
            have: buf.len(),
        });
    }
    buf[0..2].copy_from_slice(&id.to_be_bytes());
    buf[2..4].copy_from_slice(&0x0100u16.to_be_bytes()); // standard query, RD
    buf[4..6].copy_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    buf[6..12].fill(0); // AN/NS/AR counts
    let mut at = 12;
    for part in parts {
        for label in part.split(|&b| b == b'.') {
            buf[at] = label.len() as u8;
            buf[at + 1..at + 1 + label.len()].copy_from_slice(label);
            at += 1 + label.len();
        }
    }
    buf[at] = 0;
    at += 1;
    buf[at..at + 2].copy_from_slice(&qtype.to_be_bytes());
    buf[at + 2..at + 4].copy_from_slice(&1u16.to_be_bytes()); // IN
    Ok(at + 4)
}

/// Reads back the question of a DNS query (`(id, qname, qtype)`), or None if `msg` is not a
/// well-formed single-question query. For tests and the demo.
pub fn parse_dns_query(msg: &[u8]) -> Option<(u16, String, u16)> {
    let id = u16::from_be_bytes([*msg.first()?, *msg.get(1)?]);
    let flags = u16::from_be_bytes([*msg.get(2)?, *msg.get(3)?]);
    let qd = u16::from_be_bytes([*msg.get(4)?, *msg.get(5)?]);
    if flags & 0x8000 != 0 || qd != 1 {
        return None;
    }
    let mut at = 12;
    let mut name = String::new();
    loop {
        let l = usize::from(*msg.get(at)?);
        at += 1;
        if l == 0 {
            break;
        }
        if l > 63 {
            return None;
        }
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(std::str::from_utf8(msg.get(at..at + l)?).ok()?);
        at += l;
    }
    let qtype = u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]);
    let qclass = u16::from_be_bytes([*msg.get(at + 2)?, *msg.get(at + 3)?]);
    (qclass == 1).then_some((id, name, qtype))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_known_value() {
        // RFC 1071-style example header (checksum field zero) -> 0xb861.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(inet_checksum(&h, 0), 0xb861);
    }

    #[test]
    fn dns_round_trip() {
        let mut b = [0u8; 512];
        let n = write_dns_query(&mut b, 0xBEEF, "www.example.com", 28).unwrap();
        assert_eq!(n, 12 + 17 + 4);
        assert_eq!(
            parse_dns_query(&b[..n]),
            Some((0xBEEF, "www.example.com".to_string(), 28))
        );
        assert!(write_dns_query(&mut b, 1, "a..b", 1).is_err());
    }

    #[test]
    fn rejects_bad_config() {
        let mut c = GeneratorConfig::default();
        c.background.udp_ports.push(53);
        assert!(matches!(Generator::new(c), Err(GenError::Config(_))));
        let mut c = GeneratorConfig::default();
        c.flood.weight = 0;
        c.legit.weight = 0;
        c.background.weight = 0;
        assert!(Generator::new(c).is_err());
    }
}
