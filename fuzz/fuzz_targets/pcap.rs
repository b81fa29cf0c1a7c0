//! Fuzz target for both classic-pcap readers (the daemon's `floodgate::pcapfile` and the
//! model's `floodgate_sim::pcap`): no panic, no record past the reader's limit, and no buffer
//! grown past it whatever a record header claims.
//!
//! `cargo +nightly fuzz run pcap` (from the repository root). The checks are those of
//! tests/fuzz_pcap.rs (shared file tests/fuzz_checks/mod.rs).

#![no_main]

#[path = "../../tests/fuzz_checks/mod.rs"]
pub mod fuzz_checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fuzz_checks::read_daemon(data);
    let _ = fuzz_checks::read_sim(data);
});
