//! Fuzz target for the configuration parser: any text (bytes read as UTF-8, lossily) either
//! parses or gives an error that names the file and a line inside it, with a message after the
//! location, and stays short when every line of the input is.
//!
//! `cargo +nightly fuzz run config` (from the repository root). The checks are those of
//! tests/fuzz_config.rs (shared file tests/fuzz_checks/mod.rs); seed the corpus with
//! `mkdir -p fuzz/corpus/config && cp examples/*.toml fuzz/corpus/config/`.

#![no_main]

#[path = "../../tests/fuzz_checks/mod.rs"]
pub mod fuzz_checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    fuzz_checks::check_short(&text);
});
