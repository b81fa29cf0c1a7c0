//! Daemon counters, the per-second line and the final summary.
//!
//! Every packet the filter loop takes from the VF lands in exactly one bucket:
//! `rx = dropped + passed + errors + left + in_flight`, where `left` counts frames that were
//! still in the RX rings when a stop's drain ran out of time (taken from the ring and released
//! without a verdict). `passed` splits further by where survivors
//! went: into the TAP (`tap`) or pushed back by it (`tap_dropped`), or, with
//! `[reinject] to = "vf"`, handed to the VF's TX ring (`vf_tx`) or refused by it (`vf_tx_dropped`):
//! `passed = tap + tap_dropped + vf_tx + vf_tx_dropped`. Nothing is lost silently.
//!
//! What the invariant does not cover: frames the NIC never put in a ring because it had no free
//! descriptor (or its packet buffer overflowed). The daemon reads that missed-frame count from
//! the NIC separately ([`crate::daemon::runloop::NicMissed`]) and shows it next to the
//! invariant.

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
    /// Passed packets handed to the VF's TX ring (`[reinject] to = "vf"`).
    pub vf_tx: u64,
    /// Passed packets that did not fit the VF's TX ring (or the hand-back ring from a worker to
    /// the polling thread), or that the driver refused; counted, not lost silently.
    pub vf_tx_dropped: u64,
    /// Of `dropped`: frames the loop guard recognised as the daemon's own VF transmissions
    /// coming back in (source MAC = the VF's MAC): the NIC looped a survivor back into the VF.
    pub looped: u64,
    /// Bad descriptors and malformed frames, counted and dropped by the driver.
    pub errors: u64,
    /// Frames still in the RX rings when the stop's drain deadline passed (or a second stop
    /// signal cut the drain short): taken from the ring and released without a verdict.
    pub left: u64,
    /// Packets received but not yet given a verdict (only non-zero mid-burst).
    pub in_flight: u64,
}

impl Counters {
    /// `rx = dropped + passed + errors + left + in_flight` and
    /// `passed = tap + tap_dropped + vf_tx + vf_tx_dropped`.
    pub fn invariant_holds(&self) -> bool {
        self.rx_packets == self.dropped + self.passed + self.errors + self.left + self.in_flight
            && self.passed == self.tap + self.tap_dropped + self.vf_tx + self.vf_tx_dropped
            && self.dispatch_full + self.looped <= self.dropped
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
            vf_tx: self.vf_tx - earlier.vf_tx,
            vf_tx_dropped: self.vf_tx_dropped - earlier.vf_tx_dropped,
            looped: self.looped - earlier.looped,
            errors: self.errors - earlier.errors,
            left: self.left - earlier.left,
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
        self.vf_tx += o.vf_tx;
        self.vf_tx_dropped += o.vf_tx_dropped;
        self.looped += o.looped;
        self.errors += o.errors;
        self.left += o.left;
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

/// The text the daemon prints after `invariant holds`: what the invariant covers and what the
/// NIC missed outside it (`None`: the device has no readable missed-frame counter).
pub fn invariant_scope(nic_missed: Option<u64>) -> String {
    // Worded without the final line's `key N` pairs, so scripts that pick the number after a
    // key (`rx`, `dropped`, `errors`, ...) never land in this text.
    const COVERS: &str = "every frame taken from the rings got one verdict or was counted as left";
    match nic_missed {
        Some(m) => format!("({COVERS}; the NIC missed {m} more before they reached the rings)"),
        None => format!(
            "({COVERS}; frames the NIC missed before the rings cannot be read on this device)"
        ),
    }
}

/// The one-line-per-second progress line. Survivors show as `tap` (TAP reinjection) or as
/// `vf tx` when the interval sent any out of the VF (`[reinject] to = "vf"`); packets refused
/// by the TX ring and looped-back frames are added when there are any.
pub fn progress_line(delta: &Counters, over: Duration) -> String {
    let mut line = format!(
        "[+] rx {} | drop {} | pass {}",
        fmt_rate(delta.rx_packets, over),
        fmt_rate(delta.dropped, over),
        fmt_rate(delta.passed, over),
    );
    if delta.vf_tx + delta.vf_tx_dropped > 0 && delta.tap + delta.tap_dropped == 0 {
        line.push_str(&format!(" | vf tx {}", fmt_rate(delta.vf_tx, over)));
        if delta.vf_tx_dropped > 0 {
            line.push_str(&format!(" | tx full {}", delta.vf_tx_dropped));
        }
    } else {
        line.push_str(&format!(" | tap {}", fmt_rate(delta.tap, over)));
    }
    if delta.looped > 0 {
        line.push_str(&format!(" | looped {}", delta.looped));
    }
    line.push_str(&format!(" | err {}", delta.errors));
    line
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
        c.vf_tx_dropped = 1;
        assert!(c.invariant_holds(), "refused by the VF's TX ring");
        c.vf_tx = 1;
        assert!(!c.invariant_holds(), "one survivor counted twice");
        c.vf_tx = 0;
        c.rx_packets += 2;
        c.left = 2;
        assert!(c.invariant_holds(), "frames left in the rings at stop");
        c.left = 1;
        assert!(
            !c.invariant_holds(),
            "a frame left in the rings but not counted"
        );
        c.left = 2;
        c.looped = 7;
        assert!(
            !c.invariant_holds(),
            "more looped frames than dropped ones is impossible"
        );
    }

    #[test]
    fn progress_line_shows_vf_transmissions() {
        let d = Counters {
            rx_packets: 1000,
            dropped: 990,
            passed: 10,
            vf_tx: 8,
            vf_tx_dropped: 2,
            looped: 3,
            ..Default::default()
        };
        assert_eq!(
            progress_line(&d, Duration::from_secs(1)),
            "[+] rx 1.0 kpps | drop 990 pps | pass 10 pps | vf tx 8 pps | tx full 2 | looped 3 | err 0"
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
