//! libpcap's compile time is bounded: an expression that takes too long gives a timeout error,
//! and while that compilation still runs in the background, further compilations are refused
//! at once instead of queueing. Its own test binary: the "busy" state is process-wide.

use floodgate::libpcap::{compile_within, LibPcap, PcapError};
use std::time::{Duration, Instant};

fn hosts(n: usize) -> String {
    (0..n)
        .map(|i| format!("host 10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255))
        .collect::<Vec<_>>()
        .join(" or ")
}

#[test]
fn a_slow_compilation_times_out_and_blocks_no_one() {
    if !LibPcap::available() {
        println!("skipped: libpcap is not installed");
        return;
    }
    // Takes libpcap's optimizer a second or more; given 1 ms it times out.
    let e = compile_within(&hosts(200), Duration::from_millis(1)).unwrap_err();
    assert!(matches!(e, PcapError::Timeout { .. }), "{e}");
    assert!(e.to_string().contains("split it"), "{e}");
    // While it runs on, another compilation is refused at once, not queued behind it.
    let e = compile_within("udp", Duration::from_secs(60)).unwrap_err();
    assert!(matches!(e, PcapError::Busy), "{e}");
    // Once it has finished, compiling works again (safety timeout: 120 s).
    let start = Instant::now();
    loop {
        match compile_within("udp dst port 53", Duration::from_secs(60)) {
            Ok(insns) => {
                assert!(!insns.is_empty());
                break;
            }
            Err(PcapError::Busy) if start.elapsed() < Duration::from_secs(120) => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => panic!("{e}"),
        }
    }
}
