//! Fuzz target for the vfio-user client against a hostile server: the input is decoded into
//! up to four (exchange, fault) records (`plan_from_bytes`: wrong ID or command, not a reply,
//! sizes below the header or past the limit, cut replies, garbage bytes, silence, hang-up,
//! refusal, short or long bodies, region accesses answered for another offset, unasked-for
//! descriptors), and the connect plus ten operations run against a fake server that applies
//! them. Every outcome is checked against the fault: a clean error (connection broken only
//! when the stream may be out of step), correct values otherwise, no descriptor leaked, no
//! panic; a hang shows as a libFuzzer timeout.
//!
//! `cargo +nightly fuzz run vfio_user_reply -- -timeout=10` (from the repository root). The
//! harness is vfio/tests/hostile/mod.rs, shared with vfio/tests/hostile_server.rs. Each input
//! opens a Unix socket and two threads, and a stalled reply costs the client's 250 ms timeout:
//! expect hundreds, not millions, of inputs per second.

#![no_main]

#[path = "../../vfio/tests/hostile/mod.rs"]
pub mod hostile;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hostile::scenario(hostile::plan_from_bytes(data));
});
