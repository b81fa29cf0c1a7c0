//! Wire-side plumbing for `floodgate-sim serve`: several egress sinks at once, and a thread
//! that feeds frames read from a host interface (TAP or AF_PACKET) into the model's wire port.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use std::fs::File;
use std::io::BufReader;

use crate::pcap::{PcapReader, PcapReplay};
use crate::sink::{FrameSink, FrameSource};
use crate::wire::{PacketSocket, TapDevice, WireError};
use crate::Nic;

/// Hands every egress frame to each of its sinks in turn.
#[derive(Default)]
pub struct Tee(pub Vec<Box<dyn FrameSink>>);

impl FrameSink for Tee {
    fn frame(&mut self, f: &[u8]) {
        for s in &mut self.0 {
            s.frame(f);
        }
    }
}

/// A TAP device shared by the egress sink and the reader thread.
pub struct SharedTap(pub Arc<TapDevice>);

impl FrameSink for SharedTap {
    fn frame(&mut self, f: &[u8]) {
        if let Err(e) = self.0.write_frame(f) {
            log::debug!("tap: {e}", e = floodgate_vfio::ErrorChain(&e));
        }
    }
}

/// An AF_PACKET socket shared by the egress sink and the reader thread.
pub struct SharedPacket(pub Arc<PacketSocket>);

impl FrameSink for SharedPacket {
    fn frame(&mut self, f: &[u8]) {
        if let Err(e) = self.0.send_frame(f) {
            log::debug!("af_packet: {e}", e = floodgate_vfio::ErrorChain(&e));
        }
    }
}

/// A non-blocking frame reader (TAP or AF_PACKET).
pub type ReadFn = Box<dyn FnMut(&mut [u8]) -> Result<Option<usize>, WireError> + Send>;

/// A thread that polls a host interface and injects what it reads as wire ingress.
pub struct WireReader {
    stop: Arc<AtomicBool>,
    frames: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for WireReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireReader")
            .field("frames", &self.frames.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl WireReader {
    /// Starts polling `read` every `idle` when nothing is waiting.
    pub fn start(nic: Nic, mut read: ReadFn, idle: Duration) -> WireReader {
        let stop = Arc::new(AtomicBool::new(false));
        let frames = Arc::new(AtomicU64::new(0));
        let (s2, f2) = (stop.clone(), frames.clone());
        let handle = std::thread::Builder::new()
            .name("floodgate-sim-wire".into())
            .spawn(move || {
                let mut buf = vec![0u8; 9728];
                while !s2.load(Ordering::Acquire) {
                    match read(&mut buf) {
                        Ok(Some(n)) if n >= 14 => {
                            nic.inject(&buf[..n]);
                            f2.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => std::thread::sleep(idle),
                        Err(e) => {
                            log::warn!(
                                "wire reader stops: {e}",
                                e = floodgate_vfio::ErrorChain(&e)
                            );
                            break;
                        }
                    }
                }
            })
            .ok();
        WireReader {
            stop,
            frames,
            handle,
        }
    }

    /// Frames injected so far.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }
}

impl Drop for WireReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Replays a pcap file over and over (`--pcap-in FILE --pcap-loop`).
pub struct PcapLoop {
    path: std::path::PathBuf,
    replay: PcapReplay<BufReader<File>>,
    this_pass: u64,
}

impl std::fmt::Debug for PcapLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapLoop")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn open_replay(path: &std::path::Path) -> Result<PcapReplay<BufReader<File>>, String> {
    let f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let r = PcapReader::new(BufReader::new(f)).map_err(|e| {
        format!(
            "{}: {e}",
            path.display(),
            e = floodgate_vfio::ErrorChain(&e)
        )
    })?;
    Ok(PcapReplay::new(r))
}

impl PcapLoop {
    /// Opens `path` (a pcap file).
    pub fn open(path: &std::path::Path) -> Result<PcapLoop, String> {
        Ok(PcapLoop {
            path: path.to_path_buf(),
            replay: open_replay(path)?,
            this_pass: 0,
        })
    }
}

impl FrameSource for PcapLoop {
    fn next_frame(&mut self, buf: &mut [u8]) -> Option<usize> {
        if let Some(n) = self.replay.next_frame(buf) {
            self.this_pass += 1;
            return Some(n);
        }
        // End of the file: start over, unless the pass was empty or broken (that would spin).
        if self.this_pass == 0 || self.replay.error.is_some() {
            return None;
        }
        self.this_pass = 0;
        match open_replay(&self.path) {
            Ok(r) => self.replay = r,
            Err(e) => {
                log::warn!("pcap loop stops: {e}");
                return None;
            }
        }
        let n = self.replay.next_frame(buf)?;
        self.this_pass = 1;
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NicConfig;
    use std::sync::Mutex;

    struct Count(Arc<Mutex<Vec<usize>>>);
    impl FrameSink for Count {
        fn frame(&mut self, f: &[u8]) {
            self.0.lock().unwrap().push(f.len());
        }
    }

    #[test]
    fn tee_reaches_every_sink() {
        let a = Arc::new(Mutex::new(Vec::new()));
        let b = Arc::new(Mutex::new(Vec::new()));
        let mut t = Tee(vec![Box::new(Count(a.clone())), Box::new(Count(b.clone()))]);
        t.frame(&[0; 60]);
        assert_eq!(*a.lock().unwrap(), vec![60]);
        assert_eq!(*b.lock().unwrap(), vec![60]);
    }

    #[test]
    fn reader_injects_frames_and_skips_runts() {
        let nic = Nic::new(NicConfig::default());
        let mut left = vec![60usize, 3, 64];
        let read: ReadFn =
            Box::new(move |buf: &mut [u8]| Ok(left.pop().inspect(|&n| buf[..n].fill(0xAB))));
        let r = WireReader::start(nic.clone(), read, Duration::from_millis(1));
        let end = std::time::Instant::now() + Duration::from_secs(20);
        while r.frames() < 2 {
            assert!(std::time::Instant::now() < end, "reader made no progress");
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(r);
        assert_eq!(nic.stats().wire_in, 2, "the 3-byte runt is not a frame");
    }

    #[test]
    fn pcap_loop_starts_over_and_stops_on_an_empty_file() {
        let dir = std::env::temp_dir().join(format!("fg-pcaploop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let two = dir.join("two.pcap");
        let mut w = crate::pcap::PcapWriter::new(File::create(&two).unwrap(), 65535).unwrap();
        w.write_packet(0, &[1; 60]).unwrap();
        w.write_packet(1, &[2; 61]).unwrap();
        w.into_inner().unwrap();
        let mut l = PcapLoop::open(&two).unwrap();
        let mut buf = vec![0u8; 2048];
        let lens: Vec<usize> = (0..5).map(|_| l.next_frame(&mut buf).unwrap()).collect();
        assert_eq!(lens, vec![60, 61, 60, 61, 60]);
        let empty = dir.join("empty.pcap");
        crate::pcap::PcapWriter::new(File::create(&empty).unwrap(), 65535)
            .unwrap()
            .into_inner()
            .unwrap();
        assert!(PcapLoop::open(&empty)
            .unwrap()
            .next_frame(&mut buf)
            .is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
