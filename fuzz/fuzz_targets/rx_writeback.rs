//! Fuzz target for RX descriptor write-backs from a hostile device: the input's first byte picks
//! the NIC model, the burst size and the value RDH/TDH reads return; the rest is decoded into
//! write-backs (`rounds_from_bytes`: 12 bytes each, status/error dword, length, packet type,
//! late DD, checksum-0 UDP, frame length). The model delivers real frames, the harness overwrites
//! their write-backs, and the PMD drains the ring. Checked: every descriptor in the bucket the
//! documented rules give (an independent model of them), only lengths inside the buffer
//! delivered with the frame's bytes, every buffer back in the pool afterwards, no panic.
//!
//! `cargo +nightly fuzz run rx_writeback` (from the repository root). The harness is
//! pmd/tests/hostile/mod.rs (with pmd/tests/common/mod.rs), shared with
//! pmd/tests/hostile_device.rs.

#![no_main]

#[path = "../../pmd/tests/common/mod.rs"]
pub mod common;
#[path = "../../pmd/tests/hostile/mod.rs"]
pub mod hostile;

use floodgate_sim::NicModel;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let rounds = hostile::rounds_from_bytes(rest);
    if rounds.is_empty() {
        return;
    }
    let model = if sel & 1 == 0 {
        NicModel::X82599
    } else {
        NicModel::X540
    };
    let bursts = [usize::from(sel >> 1) % 64 + 1, 64];
    hostile::rx_case(model, u32::from(sel) * 0x0101_0101, &rounds, &bursts);
});
