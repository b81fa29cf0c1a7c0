//! A small deterministic random source for unit tests (xorshift64): repeatable runs without a
//! dependency.

/// The numbers of xorshift64 from `seed` (not 0), one per call.
pub(crate) fn xorshift64(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}
