//! The PF↔VF mailbox, legacy handshake (facts §3.1, §3.2, §3.5, §3.7).
//!
//! Read-to-clear bits of VFMAILBOX (PFSTS, PFACK, RSTD) are cached in a software copy so that a
//! read for one purpose does not lose a bit another check needs (facts §2.5).

use crate::regs::*;
use crate::Error;
use floodgate_vfio::Bar;
use std::time::{Duration, Instant};

/// A bounded wait for a register: over only when the time has passed *and* the register was
/// polled as often as that time allows at the poll interval. The reference drivers count polls
/// (facts §3.7: 200 polls 5 µs apart, 2000 polls 500 µs apart), so a thread descheduled for
/// longer than the whole timeout (a loaded machine) still reads the register that many times
/// before it gives up, instead of failing a device it looked at once or twice. The wall-clock
/// part keeps the wait at least as long as configured when each poll is quicker than planned.
/// A hard limit (ten times the timeout, at least 1 s) still ends a wait whose register reads
/// are slow but never fail (a sluggish transport).
pub(crate) struct PollDeadline {
    start: Instant,
    timeout: Duration,
    polls_left: u64,
}

impl PollDeadline {
    /// Starts a wait of `timeout`, polling every `poll`.
    pub(crate) fn new(timeout: Duration, poll: Duration) -> Self {
        let polls = if poll.is_zero() {
            1
        } else {
            (timeout.as_nanos() / poll.as_nanos()).clamp(1, u64::MAX.into()) as u64
        };
        PollDeadline {
            start: Instant::now(),
            timeout,
            polls_left: polls,
        }
    }

    /// Call after each poll that did not find what it waited for: true when the wait is over.
    pub(crate) fn expired(&mut self) -> bool {
        self.polls_left = self.polls_left.saturating_sub(1);
        let waited = self.start.elapsed();
        (self.polls_left == 0 && waited >= self.timeout)
            || waited >= (self.timeout * 10).max(Duration::from_secs(1))
    }
}

/// One mailbox message: up to 16 words (facts §3.2).
pub(crate) type Msg = [u32; MBX_SIZE];

/// Mailbox state of one VF.
pub(crate) struct Mailbox {
    /// Software copy of the read-to-clear bits.
    soft: u32,
    pub(crate) timeout: Duration,
    pub(crate) poll: Duration,
    location: String,
}

impl Mailbox {
    pub(crate) fn new(location: String, timeout: Duration, poll: Duration) -> Self {
        Mailbox {
            soft: 0,
            timeout,
            poll,
            location,
        }
    }

    fn gone(&self, during: &'static str) -> Error {
        Error::DeviceGone {
            location: self.location.clone(),
            during,
        }
    }

    fn timed_out(&self, during: &'static str) -> Error {
        Error::MailboxTimeout {
            location: self.location.clone(),
            during,
            timeout_us: self.timeout.as_micros() as u64,
        }
    }

    /// Reads VFMAILBOX, folding read-to-clear bits into the soft copy; returns the live value
    /// with the soft bits OR-ed in.
    pub(crate) fn read_ctl<B: Bar>(&mut self, bar: &B, during: &'static str) -> Result<u32, Error> {
        let v = bar.read32(VFMAILBOX);
        if v == ALL_ONES {
            return Err(self.gone(during));
        }
        self.soft |= v & MBX_R2C_BITS;
        Ok(v | self.soft)
    }

    /// Tests and consumes a read-to-clear bit (PFSTS or PFACK).
    fn take<B: Bar>(&mut self, bar: &B, bit: u32, during: &'static str) -> Result<bool, Error> {
        let v = self.read_ctl(bar, during)?;
        if v & bit != 0 {
            self.soft &= !bit;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Reset indication: RSTI (live) or RSTD (cached, consumed). Facts §3.5 "check for reset".
    pub(crate) fn check_reset<B: Bar>(
        &mut self,
        bar: &B,
        during: &'static str,
    ) -> Result<bool, Error> {
        let v = self.read_ctl(bar, during)?;
        if v & (MBX_RSTI | MBX_RSTD) != 0 {
            self.soft &= !MBX_RSTD;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Whether the PF has a message waiting (does not consume it).
    pub(crate) fn has_msg<B: Bar>(&mut self, bar: &B, during: &'static str) -> Result<bool, Error> {
        Ok(self.read_ctl(bar, during)? & MBX_PFSTS != 0)
    }

    /// Forgets cached bits (after a VF reset).
    pub(crate) fn clear_soft(&mut self) {
        self.soft = 0;
    }

    /// Polls `f` until it returns true or the mailbox timeout expires.
    fn poll_until<B: Bar>(
        &mut self,
        bar: &B,
        during: &'static str,
        mut f: impl FnMut(&mut Self, &B) -> Result<bool, Error>,
    ) -> Result<(), Error> {
        let mut deadline = PollDeadline::new(self.timeout, self.poll);
        loop {
            if f(self, bar)? {
                return Ok(());
            }
            if deadline.expired() {
                return Err(self.timed_out(during));
            }
            std::thread::sleep(self.poll);
        }
    }

    /// Takes the buffer lock: write VFU, read back (facts §3.5 "Lock").
    fn lock<B: Bar>(&mut self, bar: &B, during: &'static str) -> Result<(), Error> {
        self.poll_until(bar, during, |m, bar| {
            bar.write32(VFMAILBOX, MBX_VFU);
            Ok(m.read_ctl(bar, during)? & MBX_VFU != 0)
        })
    }

    /// Sends `msg` and waits for the PF's acknowledgement (facts §3.5 "Send").
    pub(crate) fn write_posted<B: Bar>(
        &mut self,
        bar: &B,
        msg: &[u32],
        during: &'static str,
    ) -> Result<(), Error> {
        debug_assert!(!msg.is_empty() && msg.len() <= MBX_SIZE);
        self.lock(bar, during)?;
        // Discard stale message/ack indications: we are overwriting the buffer.
        self.read_ctl(bar, during)?;
        self.soft &= !(MBX_PFSTS | MBX_PFACK);
        for (i, &w) in msg.iter().enumerate() {
            bar.write32(VFMBMEM + 4 * i as u32, w);
        }
        // REQ also drops VFU.
        bar.write32(VFMAILBOX, MBX_REQ);
        self.poll_until(bar, during, |m, bar| m.take(bar, MBX_PFACK, during))
    }

    /// Reads the PF's message into `out` once it has arrived (facts §3.5 "Receive").
    pub(crate) fn read_posted<B: Bar>(
        &mut self,
        bar: &B,
        out: &mut Msg,
        during: &'static str,
    ) -> Result<(), Error> {
        self.poll_until(bar, during, |m, bar| m.take(bar, MBX_PFSTS, during))?;
        self.read_now(bar, out, during)
    }

    /// Locks, copies the buffer and acknowledges it.
    fn read_now<B: Bar>(
        &mut self,
        bar: &B,
        out: &mut Msg,
        during: &'static str,
    ) -> Result<(), Error> {
        self.lock(bar, during)?;
        for (i, w) in out.iter_mut().enumerate() {
            *w = bar.read32(VFMBMEM + 4 * i as u32);
        }
        // ACK also drops VFU.
        bar.write32(VFMAILBOX, MBX_ACK);
        Ok(())
    }

    /// Reads a pending PF message without waiting; `None` if there is none.
    pub(crate) fn try_read<B: Bar>(
        &mut self,
        bar: &B,
        during: &'static str,
    ) -> Result<Option<Msg>, Error> {
        if !self.take(bar, MBX_PFSTS, during)? {
            return Ok(None);
        }
        let mut m = [0u32; MBX_SIZE];
        self.read_now(bar, &mut m, during)?;
        Ok(Some(m))
    }

    /// Sends a request and returns the PF's reply. Unsolicited PF control messages that arrive
    /// in between are skipped (they are re-detected through the link/reset checks).
    pub(crate) fn request<B: Bar>(
        &mut self,
        bar: &B,
        msg: &[u32],
        during: &'static str,
    ) -> Result<Msg, Error> {
        self.write_posted(bar, msg, during)?;
        let mut reply = [0u32; MBX_SIZE];
        for _ in 0..4 {
            self.read_posted(bar, &mut reply, during)?;
            if reply[0] & MSG_TYPE_MASK == msg[0] & MSG_TYPE_MASK {
                return Ok(reply);
            }
            if reply[0] & MSG_TYPE_MASK == MSG_PF_CONTROL {
                log::debug!(
                    "{}: PF control message {:#x} while {during}",
                    self.location,
                    reply[0]
                );
                continue;
            }
            return Err(Error::PfRefused {
                location: self.location.clone(),
                request: during,
                detail: format!(
                    "reply of type {:#x} to a request of type {:#x}",
                    reply[0] & MSG_TYPE_MASK,
                    msg[0] & MSG_TYPE_MASK
                ),
            });
        }
        Err(self.timed_out(during))
    }
}

/// Packs a MAC address into message words 1 and 2 (raw bytes, little-endian words; facts §3.2).
pub(crate) fn pack_mac(mac: [u8; 6]) -> [u32; 2] {
    [
        u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]),
        u32::from_le_bytes([mac[4], mac[5], 0, 0]),
    ]
}

/// Unpacks a MAC address from message words 1 and 2 (facts §3.2).
pub(crate) fn unpack_mac(w1: u32, w2: u32) -> [u8; 6] {
    let a = w1.to_le_bytes();
    let b = w2.to_le_bytes();
    [a[0], a[1], a[2], a[3], b[0], b[1]]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A tiny scripted PF for unit tests: answers every request with `reply(request)`.
    pub(crate) struct ScriptPf {
        pub(crate) regs: Mutex<std::collections::HashMap<u32, u32>>,
        pub(crate) reply: fn(&[u32; 16]) -> Option<Vec<u32>>,
        pub(crate) log: Mutex<Vec<[u32; 16]>>,
    }

    impl ScriptPf {
        /// Puts an unsolicited PF message in the mailbox (PFSTS set).
        pub(crate) fn pf_message(&self, words: &[u32]) {
            let mut r = self.regs.lock().unwrap();
            for (i, w) in words.iter().enumerate() {
                r.insert(VFMBMEM + 4 * i as u32, *w);
            }
            *r.entry(VFMAILBOX).or_insert(0) |= MBX_PFSTS;
        }

        pub(crate) fn new(reply: fn(&[u32; 16]) -> Option<Vec<u32>>) -> Self {
            ScriptPf {
                regs: Mutex::new(Default::default()),
                reply,
                log: Mutex::new(Vec::new()),
            }
        }
    }

    impl Bar for ScriptPf {
        fn read32(&self, off: u32) -> u32 {
            let mut r = self.regs.lock().unwrap();
            let v = *r.get(&off).unwrap_or(&0);
            if off == VFMAILBOX {
                r.insert(off, v & !MBX_R2C_BITS);
            }
            v
        }
        fn write32(&self, off: u32, val: u32) {
            let mut r = self.regs.lock().unwrap();
            if off == VFCTRL && val & VFCTRL_RST != 0 {
                // The PF completes the VF reset at once.
                *r.entry(VFMAILBOX).or_insert(0) |= MBX_RSTD;
                return;
            }
            if off != VFMAILBOX {
                r.insert(off, val);
                return;
            }
            let cur = *r.get(&off).unwrap_or(&0);
            let mut new = (cur & (MBX_R2C_BITS | MBX_RSTI)) | (val & MBX_VFU);
            if val & MBX_REQ != 0 {
                let mut m = [0u32; 16];
                for (i, w) in m.iter_mut().enumerate() {
                    *w = *r.get(&(VFMBMEM + 4 * i as u32)).unwrap_or(&0);
                }
                self.log.lock().unwrap().push(m);
                if let Some(rep) = (self.reply)(&m) {
                    for (i, w) in rep.iter().enumerate() {
                        r.insert(VFMBMEM + 4 * i as u32, *w);
                    }
                    new |= MBX_PFACK | MBX_PFSTS;
                }
            }
            r.insert(off, new);
        }
    }

    #[test]
    fn mac_packing_is_raw_bytes() {
        let mac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
        let w = pack_mac(mac);
        assert_eq!(w, [0x3322_1102, 0x5544]);
        assert_eq!(unpack_mac(w[0], w[1]), mac);
    }

    #[test]
    fn request_reply_roundtrip_and_encoding() {
        let pf =
            ScriptPf::new(|m| Some(vec![m[0] | MSG_ACK | MSG_CTS, m[1].wrapping_add(1), m[2]]));
        let mut mbx = Mailbox::new(
            "test".into(),
            Duration::from_millis(5),
            Duration::from_micros(10),
        );
        let r = mbx
            .request(&pf, &[MSG_API_NEGOTIATE, API_13, 0], "negotiating")
            .unwrap();
        assert_eq!(r[0], MSG_API_NEGOTIATE | MSG_ACK | MSG_CTS);
        assert_eq!(r[1], API_13 + 1);
        let sent = pf.log.lock().unwrap()[0];
        assert_eq!(&sent[..3], &[0x08, 4, 0]);
        // The VF acknowledged the reply and released the buffer.
        assert_eq!(pf.regs.lock().unwrap()[&VFMAILBOX] & MBX_VFU, 0);
    }

    #[test]
    fn silent_pf_times_out() {
        let pf = ScriptPf::new(|_| None);
        let mut mbx = Mailbox::new(
            "sim:vf9".into(),
            Duration::from_millis(2),
            Duration::from_micros(50),
        );
        let e = mbx.request(&pf, &[MSG_RESET], "resetting").unwrap_err();
        assert!(matches!(e, Error::MailboxTimeout { .. }), "{e}");
        assert!(e.to_string().contains("sim:vf9"));
    }

    #[test]
    fn a_wait_descheduled_past_its_timeout_still_polls_its_count() {
        // 1 ms at 100 µs: ten polls, however late they come.
        let mut d = PollDeadline::new(Duration::from_millis(1), Duration::from_micros(100));
        std::thread::sleep(Duration::from_millis(3));
        for i in 1..10 {
            assert!(!d.expired(), "expired after {i} polls");
        }
        assert!(d.expired(), "ten polls and the time are over");
        // Quick polls do not end it before the time is up.
        let mut d = PollDeadline::new(Duration::from_secs(60), Duration::from_secs(1));
        for _ in 0..100 {
            assert!(!d.expired());
        }
    }

    #[test]
    fn all_ones_is_device_gone() {
        struct Gone;
        impl Bar for Gone {
            fn read32(&self, _: u32) -> u32 {
                ALL_ONES
            }
            fn write32(&self, _: u32, _: u32) {}
        }
        let mut mbx = Mailbox::new("x".into(), Duration::from_secs(10), Duration::from_secs(1));
        let e = mbx.request(&Gone, &[MSG_RESET], "resetting").unwrap_err();
        assert!(matches!(e, Error::DeviceGone { .. }), "{e}");
    }
}
