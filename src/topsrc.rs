//! The top dropped sources: a bounded sample of the source addresses of dropped frames.
//!
//! Each filter loop (and each worker) keeps one [`TopSources`]: about one dropped frame in
//! [`SAMPLE_EVERY`] has its outer IPv4 or IPv6 source address (after up to two VLAN tags)
//! counted in a fixed table of [`SLOTS`] entries with the space-saving algorithm (Metwally,
//! Agrawal, El Abbadi): a known address adds one to its entry; an unknown one takes a free entry
//! or, when the table is full, replaces the entry with the smallest count and inherits that
//! count plus one (the inherited part is kept as the entry's possible over-count). Any address
//! that took more than `1/SLOTS` of the samples is guaranteed to be in the table, and no count
//! is ever lower than the true number of samples of its address.
//!
//! The data path never allocates: the table is an array, a sample is a countdown and, once
//! in [`SAMPLE_EVERY`] frames on average, a header read and a scan of [`SLOTS`] entries. The
//! gap between two samples is drawn at random (1 to `2 × SAMPLE_EVERY - 1`), so traffic that
//! repeats with a period of [`SAMPLE_EVERY`] frames is not seen through one phase only.
//!
//! Reading ([`merged_top`]) adds the tables of several workers together (one source's flows
//! may land on different workers), keeps each entry's guaranteed part (its count less what it
//! inherited) and scales it by [`SAMPLE_EVERY`]: the result is an estimate of the packets
//! dropped per source since it entered the table (since the start, for a source that keeps
//! coming), exported as
//! `floodgate_top_dropped_source_packets{src="..."}` for the [`TOP_N`] largest.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// On average one dropped frame in this many is sampled.
pub const SAMPLE_EVERY: u32 = 256;

/// Entries in one table.
pub const SLOTS: usize = 32;

/// Sources exported and shown (the largest estimates).
pub const TOP_N: usize = 10;

/// An address as a table key: IPv6 as is, IPv4 mapped (`::ffff:a.b.c.d`), so one 128-bit
/// compare finds either.
#[inline]
fn key(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn addr(k: u128) -> IpAddr {
    let v6 = Ipv6Addr::from(k);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// One loop's (or worker's) sample of dropped sources. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct TopSources {
    /// The addresses ([`key`]), their counts (an upper bound of their true samples) and the
    /// part of each count inherited from the entry it replaced; kept apart so that a lookup
    /// scans 512 bytes of keys and the search for the smallest count 256 bytes of counts.
    keys: [u128; SLOTS],
    counts: [u64; SLOTS],
    errors: [u64; SLOTS],
    used: usize,
    /// Dropped frames to let go by before the next sample.
    countdown: u32,
    /// xorshift32 state for the gaps.
    rng: u32,
    /// Frames sampled (an address read, or not: non-IP frames count here too).
    sampled: u64,
    /// Sampled frames without an IPv4/IPv6 source (too short, or another EtherType).
    not_ip: u64,
}

impl Default for TopSources {
    fn default() -> Self {
        TopSources::new()
    }
}

/// One source in a merged view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopSource {
    /// The source address.
    pub addr: IpAddr,
    /// Estimated dropped packets since the source entered the table: its guaranteed samples
    /// (counted for it, not inherited) × [`SAMPLE_EVERY`]. A lower bound of the sampled count,
    /// so one-off sources that took over an entry rank below the sources that keep coming.
    pub packets: u64,
    /// How many more it may have had (the count inherited with its entry, × [`SAMPLE_EVERY`]).
    pub error: u64,
}

/// The outer source address of an Ethernet frame: IPv4 or IPv6 after at most two VLAN tags.
#[inline]
pub fn source_address(frame: &[u8]) -> Option<IpAddr> {
    let mut off = 12;
    let mut ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    for _ in 0..2 {
        if matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) {
            off += 4;
            ethertype = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
        }
    }
    let l3 = off + 2;
    match ethertype {
        0x0800 => {
            let b: [u8; 4] = frame.get(l3 + 12..l3 + 16)?.try_into().ok()?;
            (frame[l3] >> 4 == 4).then_some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        0x86dd => {
            let b: [u8; 16] = frame.get(l3 + 8..l3 + 24)?.try_into().ok()?;
            (frame[l3] >> 4 == 6).then_some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

impl TopSources {
    /// An empty table; the first dropped frame is sampled.
    pub fn new() -> TopSources {
        TopSources {
            keys: [0; SLOTS],
            counts: [0; SLOTS],
            errors: [0; SLOTS],
            used: 0,
            countdown: 0,
            rng: 0x9E37_79B9,
            sampled: 0,
            not_ip: 0,
        }
    }

    /// Called for every dropped frame: samples about one in [`SAMPLE_EVERY`].
    #[inline]
    pub fn on_drop(&mut self, frame: &[u8]) {
        if self.countdown > 0 {
            self.countdown -= 1;
            return;
        }
        self.sample(frame);
    }

    /// Called once per burst with the `n` frames dropped in it (`frame(i)`, `i < n`): the same
    /// sample as [`on_drop`](Self::on_drop) on each of them, for one subtraction per burst
    /// when none is due.
    #[inline]
    pub fn on_drops<'a>(&mut self, n: usize, mut frame: impl FnMut(usize) -> &'a [u8]) {
        let skip = self.countdown as usize;
        if skip >= n {
            self.countdown -= n as u32;
            return;
        }
        let mut i = skip;
        while i < n {
            self.sample(frame(i));
            i += 1 + self.countdown as usize;
        }
        self.countdown = (i - n) as u32;
    }

    #[cold]
    fn sample(&mut self, frame: &[u8]) {
        // xorshift32: the next gap is 0..2*SAMPLE_EVERY-2 skipped frames, on average
        // SAMPLE_EVERY - 1, so one frame in SAMPLE_EVERY is sampled.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        self.countdown = x % (2 * SAMPLE_EVERY - 1);
        self.sampled += 1;
        match source_address(frame) {
            Some(a) => self.record(a, 1),
            None => self.not_ip += 1,
        }
    }

    /// Counts `n` samples of `addr` (space-saving).
    pub fn record(&mut self, addr: IpAddr, n: u64) {
        let k = key(addr);
        if let Some(i) = self.keys[..self.used].iter().position(|&x| x == k) {
            self.counts[i] += n;
            return;
        }
        let i = if self.used < SLOTS {
            self.used += 1;
            self.errors[self.used - 1] = 0;
            self.counts[self.used - 1] = 0;
            self.used - 1
        } else {
            let mut min = 0;
            for (i, &c) in self.counts.iter().enumerate() {
                if c < self.counts[min] {
                    min = i;
                }
            }
            self.errors[min] = self.counts[min];
            min
        };
        self.keys[i] = k;
        self.counts[i] += n;
    }

    /// Frames sampled so far.
    pub fn sampled(&self) -> u64 {
        self.sampled
    }

    /// Sampled frames that carried no IPv4/IPv6 source.
    pub fn not_ip(&self) -> u64 {
        self.not_ip
    }

    /// The entries in use: (address, samples, inherited samples).
    pub fn entries(&self) -> impl Iterator<Item = (IpAddr, u64, u64)> + '_ {
        (0..self.used).map(|i| (addr(self.keys[i]), self.counts[i], self.errors[i]))
    }
}

/// The `n` largest sources over `tables` (the workers' tables added together), largest first
/// (ties by address), counts scaled to estimated packets. Allocates: for the reader only.
pub fn merged_top<'a>(
    tables: impl IntoIterator<Item = &'a TopSources>,
    n: usize,
) -> Vec<TopSource> {
    let mut all: Vec<TopSource> = Vec::new();
    for t in tables {
        for (addr, count, error) in t.entries() {
            match all.iter_mut().find(|s| s.addr == addr) {
                Some(s) => {
                    s.packets += count;
                    s.error += error;
                }
                None => all.push(TopSource {
                    addr,
                    packets: count,
                    error,
                }),
            }
        }
    }
    for s in &mut all {
        s.packets = (s.packets - s.error) * u64::from(SAMPLE_EVERY);
        s.error *= u64::from(SAMPLE_EVERY);
    }
    all.sort_by(|a, b| b.packets.cmp(&a.packets).then(a.addr.cmp(&b.addr)));
    all.truncate(n);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_frame(src: [u8; 4], vlans: usize) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        for _ in 0..vlans {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        }
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[12..16].copy_from_slice(&src);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[0u8; 8]);
        f
    }

    fn v6_frame(src: Ipv6Addr) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x86, 0xdd]);
        let mut ip = [0u8; 40];
        ip[0] = 0x60;
        ip[8..24].copy_from_slice(&src.octets());
        f.extend_from_slice(&ip);
        f
    }

    #[test]
    fn reads_ipv4_ipv6_and_vlan_tagged_sources() {
        let a = [198, 51, 100, 9];
        assert_eq!(source_address(&v4_frame(a, 0)), Some(IpAddr::from(a)));
        assert_eq!(source_address(&v4_frame(a, 1)), Some(IpAddr::from(a)));
        assert_eq!(source_address(&v4_frame(a, 2)), Some(IpAddr::from(a)));
        let six: Ipv6Addr = "2001:db8::7".parse().unwrap();
        assert_eq!(source_address(&v6_frame(six)), Some(IpAddr::V6(six)));
        // Cut short, another EtherType, or a version that does not match: no address.
        let f = v4_frame(a, 0);
        assert_eq!(source_address(&f[..29]), None);
        assert_eq!(source_address(&f[..5]), None);
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(source_address(&arp), None);
        let mut bad = f;
        bad[14] = 0x65;
        assert_eq!(source_address(&bad), None);
    }

    #[test]
    fn samples_one_in_sample_every_on_average() {
        let mut t = TopSources::new();
        let f = v4_frame([203, 0, 113, 1], 0);
        let n = 640_000u64;
        for _ in 0..n {
            t.on_drop(&f);
        }
        let expect = n / u64::from(SAMPLE_EVERY);
        let got = t.sampled();
        assert!(
            got > expect * 9 / 10 && got < expect * 11 / 10,
            "{got} samples of {n} frames, expected about {expect}"
        );
        let top = merged_top([&t], TOP_N);
        assert_eq!(top.len(), 1);
        assert_eq!(top[0].packets, got * u64::from(SAMPLE_EVERY));
        assert_eq!(t.not_ip(), 0);
    }

    #[test]
    fn heavy_hitters_survive_a_stream_of_one_off_sources() {
        // Three heavy sources, 10 %, 6 % and 4 % of the samples (all above 1/SLOTS, so sure to
        // stay in the table), among addresses seen once.
        let mut t = TopSources::new();
        let heavy = [[10, 0, 0, 1], [10, 0, 0, 2], [10, 0, 0, 3]];
        let mut truth = [0u64; 3];
        for i in 0..100_000u32 {
            let which = match i % 100 {
                0..=9 => Some(0),
                10..=15 => Some(1),
                16..=19 => Some(2),
                _ => None,
            };
            match which {
                Some(h) => {
                    truth[h] += 1;
                    t.record(IpAddr::from(heavy[h]), 1);
                }
                None => t.record(IpAddr::from((0x2000_0000 + i).to_be_bytes()), 1),
            }
        }
        let top = merged_top([&t], 3);
        for (h, want) in heavy.iter().zip(truth) {
            let s = top
                .iter()
                .find(|s| s.addr == IpAddr::from(*h))
                .unwrap_or_else(|| panic!("{h:?} lost: {top:?}"));
            let samples = s.packets / u64::from(SAMPLE_EVERY);
            let err = s.error / u64::from(SAMPLE_EVERY);
            assert!(
                samples >= want && samples - err <= want,
                "{h:?}: {s:?}, truth {want}"
            );
        }
        assert_eq!(top[0].addr, IpAddr::from(heavy[0]));
    }

    #[test]
    fn merging_adds_workers_and_keeps_the_largest() {
        let mut a = TopSources::new();
        let mut b = TopSources::new();
        let x = IpAddr::from([192, 0, 2, 1]);
        let y = IpAddr::from([192, 0, 2, 2]);
        a.record(x, 5);
        b.record(x, 7);
        b.record(y, 10);
        for i in 0..20u8 {
            a.record(IpAddr::from([172, 16, 0, i]), 1);
        }
        let top = merged_top([&a, &b], 2);
        assert_eq!(top.len(), 2);
        assert_eq!(top[0].addr, x);
        assert_eq!(top[0].packets, 12 * u64::from(SAMPLE_EVERY));
        assert_eq!(top[1].addr, y);
        assert!(merged_top([&a, &b], TOP_N).len() == TOP_N);
        assert!(merged_top(std::iter::empty(), TOP_N).is_empty());
    }

    #[test]
    fn per_burst_sampling_picks_the_same_frames_as_per_frame() {
        let frames: Vec<Vec<u8>> = (0..5000u32)
            .map(|i| v4_frame((0x0A00_0000 + i % 97).to_be_bytes(), 0))
            .collect();
        let mut one = TopSources::new();
        for f in &frames {
            one.on_drop(f);
        }
        let mut burst = TopSources::new();
        for (k, chunk) in frames.chunks(32).enumerate() {
            // Bursts of every size, empty ones included.
            let n = chunk.len().min(k % 33);
            burst.on_drops(n, |i| &chunk[i]);
            for f in &chunk[n..] {
                burst.on_drop(f);
            }
        }
        assert_eq!(one.sampled(), burst.sampled());
        assert_eq!(merged_top([&one], SLOTS), merged_top([&burst], SLOTS));
        assert!(one.sampled() > 0);
    }

    #[test]
    fn non_ip_samples_are_counted_apart() {
        let mut t = TopSources::new();
        let mut arp = v4_frame([1, 2, 3, 4], 0);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        t.on_drop(&arp);
        assert_eq!((t.sampled(), t.not_ip()), (1, 1));
        assert_eq!(t.entries().count(), 0);
    }
}
