//! Daemon counters, the per-second line and the final summary.
//!
//! Every packet the filter loop takes from the VF lands in exactly one bucket:
//! `rx = dropped + passed + errors + in_flight`. `passed` splits further into what reached the
//! TAP (`tap`) and what the TAP pushed back (`tap_dropped`), so nothing is lost silently.

use std::time::Duration;

/// Counters of one filter loop (or the sum over several workers).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Packets taken from the VF's RX rings.
    pub rx_packets: u64,
    /// Bytes taken from the VF's RX rings.
    pub rx_bytes: u64,
    /// Packets dropped: by a rule or the default action (including rate-limit excess), or
    /// because their worker's ring was full (`dispatch_full`, a part of this count).
    pub dropped: u64,
    /// Of `dropped`: packets whose worker ring was full (fan-out mode only).
    pub dispatch_full: u64,
    /// Packets a rule (or the default action) passed.
    pub passed: u64,
    /// Passed packets written to the TAP (or the kernel-side sink in the demo).
    pub tap: u64,
    /// Passed packets the TAP refused (queue full); counted, not lost silently.
    pub tap_dropped: u64,
    /// Bad descriptors and malformed frames, counted and dropped by the driver.
    pub errors: u64,
    /// Packets received but not yet given a verdict (only non-zero mid-burst).
    pub in_flight: u64,
}

impl Counters {
    /// `rx = dropped + passed + errors + in_flight`.
    pub fn invariant_holds(&self) -> bool {
        self.rx_packets == self.dropped + self.passed + self.errors + self.in_flight
            && self.passed == self.tap + self.tap_dropped
    }

    /// Field-wise difference `self - earlier`, for rates.
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            rx_packets: self.rx_packets - earlier.rx_packets,
            rx_bytes: self.rx_bytes - earlier.rx_bytes,
            dropped: self.dropped - earlier.dropped,
            dispatch_full: self.dispatch_full - earlier.dispatch_full,
            passed: self.passed - earlier.passed,
            tap: self.tap - earlier.tap,
            tap_dropped: self.tap_dropped - earlier.tap_dropped,
            errors: self.errors - earlier.errors,
            in_flight: self.in_flight,
        }
    }

    /// Adds another loop's counters (workers).
    pub fn add(&mut self, o: &Counters) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.dropped += o.dropped;
        self.dispatch_full += o.dispatch_full;
        self.passed += o.passed;
        self.tap += o.tap;
        self.tap_dropped += o.tap_dropped;
        self.errors += o.errors;
        self.in_flight += o.in_flight;
    }
}

/// Formats a rate in packets per second with a unit: `5.84 Mpps`, `41.2 kpps`, `12 pps`.
pub fn fmt_rate(count: u64, over: Duration) -> String {
    let secs = over.as_secs_f64().max(1e-9);
    let pps = count as f64 / secs;
    if pps >= 1e6 {
        format!("{:.2} Mpps", pps / 1e6)
    } else if pps >= 1e3 {
        format!("{:.1} kpps", pps / 1e3)
    } else {
        format!("{pps:.0} pps")
    }
}

/// The one-line-per-second progress line.
pub fn progress_line(delta: &Counters, over: Duration) -> String {
    format!(
        "[+] rx {} | drop {} | pass {} | tap {} | err {}",
        fmt_rate(delta.rx_packets, over),
        fmt_rate(delta.dropped, over),
        fmt_rate(delta.passed, over),
        fmt_rate(delta.tap, over),
        delta.errors
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_pick_a_unit() {
        assert_eq!(fmt_rate(5_840_000, Duration::from_secs(1)), "5.84 Mpps");
        assert_eq!(fmt_rate(41_200, Duration::from_secs(1)), "41.2 kpps");
        assert_eq!(fmt_rate(12, Duration::from_secs(1)), "12 pps");
        assert_eq!(fmt_rate(1_000_000, Duration::from_millis(500)), "2.00 Mpps");
    }

    #[test]
    fn invariant_catches_a_lost_packet() {
        let mut c = Counters {
            rx_packets: 10,
            dropped: 6,
            passed: 3,
            tap: 3,
            errors: 1,
            ..Default::default()
        };
        assert!(c.invariant_holds());
        c.rx_packets += 1;
        assert!(!c.invariant_holds());
        c.in_flight = 1;
        assert!(c.invariant_holds());
        c.tap = 2;
        assert!(
            !c.invariant_holds(),
            "a passed packet neither tapped nor counted as refused"
        );
    }

    #[test]
    fn progress_line_shape() {
        let d = Counters {
            rx_packets: 5_840_000,
            dropped: 5_800_000,
            passed: 41_200,
            tap: 41_200,
            ..Default::default()
        };
        assert_eq!(
            progress_line(&d, Duration::from_secs(1)),
            "[+] rx 5.84 Mpps | drop 5.80 Mpps | pass 41.2 kpps | tap 41.2 kpps | err 0"
        );
    }
}
