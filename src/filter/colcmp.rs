//! Compares over whole columns of a chunk: each turns a column of [`LANES`] values into a lane
//! mask (bit `i` for lane `i`), with SSE vector compares on x86-64 and plain loops elsewhere.
//!
//! Range sets are prepared once, when the rules are compiled ([`Ranges`]): one-value ranges
//! apart, as equality compares, and the others as a start and a width, so that testing a chunk
//! walks no list it has to sort out first.

use super::lanes::LANES;

/// The mask of the lanes where `f` holds (all [`LANES`]; the caller ANDs with its own mask).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
fn mask(f: impl Fn(usize) -> bool) -> u32 {
    let mut m = 0u32;
    for i in 0..LANES {
        m |= u32::from(f(i)) << i;
    }
    m
}

/// Inclusive ranges of `u16` or `u32` values in the form the column compares use: the
/// one-value ranges as values (one equality compare each) and the others as their start and
/// width (`x - lo <= w`, unsigned and wrapping: one subtraction and one compare). Empty ranges
/// (`lo > hi`) are left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ranges<T> {
    eq: Box<[T]>,
    within: Box<[(T, T)]>,
}

macro_rules! ranges_of {
    ($t:ty) => {
        impl Ranges<$t> {
            /// The ranges `r` (inclusive `(lo, hi)` pairs).
            pub(crate) fn new(r: &[($t, $t)]) -> Ranges<$t> {
                let real = r.iter().filter(|(lo, hi)| lo <= hi);
                Ranges {
                    eq: real
                        .clone()
                        .filter(|(lo, hi)| lo == hi)
                        .map(|&(lo, _)| lo)
                        .collect(),
                    within: real
                        .filter(|(lo, hi)| lo != hi)
                        .map(|&(lo, hi)| (lo, hi - lo))
                        .collect(),
                }
            }

            /// Whether `x` is in one of the ranges (the per-frame test; on x86-64 the `u16`
            /// form is used by the tests only).
            #[cfg_attr(target_arch = "x86_64", allow(dead_code))]
            #[inline]
            pub(crate) fn contains(&self, x: $t) -> bool {
                self.eq.contains(&x) || self.within.iter().any(|&(lo, w)| x.wrapping_sub(lo) <= w)
            }
        }
    };
}
ranges_of!(u16);
ranges_of!(u32);

/// Lanes whose byte equals `v`.
#[inline(always)]
pub(crate) fn eq_u8(col: &[u8; LANES], v: u8) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        };
        // SAFETY: SSE2 is part of the x86_64 baseline, so these intrinsics are always
        // available; both 16-byte unaligned loads lie inside the 32-byte array.
        unsafe {
            let want = _mm_set1_epi8(v as i8);
            let a = _mm_loadu_si128(col.as_ptr().cast());
            let b = _mm_loadu_si128(col.as_ptr().add(16).cast());
            let lo = _mm_movemask_epi8(_mm_cmpeq_epi8(a, want)) as u32 & 0xffff;
            let hi = _mm_movemask_epi8(_mm_cmpeq_epi8(b, want)) as u32 & 0xffff;
            lo | hi << 16
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        mask(|i| col[i] == v)
    }
}

/// Lanes whose `col` value lies in one of `r`: range by range over the whole column, with one
/// accumulator per group of four lanes. A single range is a straight pass.
#[inline(always)]
pub(crate) fn in_ranges(col: &[u32; LANES], r: &Ranges<u32>) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi32, _mm_loadu_si128, _mm_or_si128, _mm_set1_epi32,
            _mm_setzero_si128,
        };
        if let ([], [(lo, w)]) = (&*r.eq, &*r.within) {
            return in_range(col, *lo, *w);
        }
        // SAFETY: SSE2 is part of the x86_64 baseline, so these intrinsics are always
        // available; the unaligned load of lanes 4k..4k+4 (k < 8) lies inside the array.
        unsafe {
            let x: [__m128i; LANES / 4] =
                std::array::from_fn(|k| _mm_loadu_si128(col.as_ptr().add(4 * k).cast()));
            let mut hit: [__m128i; LANES / 4] = [_mm_setzero_si128(); LANES / 4];
            for &v in r.eq.iter() {
                let v = _mm_set1_epi32(v as i32);
                for (h, x) in hit.iter_mut().zip(&x) {
                    *h = _mm_or_si128(*h, _mm_cmpeq_epi32(*x, v));
                }
            }
            for &(lo, w) in r.within.iter() {
                let base = _mm_set1_epi32(lo as i32);
                for (h, x) in hit.iter_mut().zip(&x) {
                    *h = _mm_or_si128(*h, within32(*x, base, w));
                }
            }
            lane_bits(&hit)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        mask(|i| r.contains(col[i]))
    }
}

/// The 32-lane mask of eight vectors of four 32-bit all-ones-or-zero lanes (lane `4k + i` is
/// lane `i` of `v[k]`): packed to bytes with saturation (which keeps 0 and -1), then one byte
/// mask per sixteen lanes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn lane_bits(v: &[std::arch::x86_64::__m128i; LANES / 4]) -> u32 {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is part of the x86_64 baseline; no memory is touched.
    unsafe {
        let a = _mm_packs_epi16(_mm_packs_epi32(v[0], v[1]), _mm_packs_epi32(v[2], v[3]));
        let b = _mm_packs_epi16(_mm_packs_epi32(v[4], v[5]), _mm_packs_epi32(v[6], v[7]));
        (_mm_movemask_epi8(a) as u32 & 0xffff) | (_mm_movemask_epi8(b) as u32) << 16
    }
}

/// All ones in the 32-bit lanes of `x` with `x - base <= w` (unsigned, wrapping): with
/// SSE4.1 the unsigned minimum (`min(d, w) == d`), else the signed compare with the sign bits
/// flipped.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn within32(
    x: std::arch::x86_64::__m128i,
    base: std::arch::x86_64::__m128i,
    w: u32,
) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is part of the x86_64 baseline; SSE4.1 is used only when the build enables
    // it (the cfg below). No memory is touched.
    unsafe {
        let d = _mm_sub_epi32(x, base);
        #[cfg(target_feature = "sse4.1")]
        {
            _mm_cmpeq_epi32(_mm_min_epu32(d, _mm_set1_epi32(w as i32)), d)
        }
        #[cfg(not(target_feature = "sse4.1"))]
        {
            let sign = _mm_set1_epi32(i32::MIN);
            let limit = _mm_set1_epi32((w ^ 0x8000_0000) as i32);
            _mm_andnot_si128(
                _mm_cmpgt_epi32(_mm_xor_si128(d, sign), limit),
                _mm_set1_epi32(-1),
            )
        }
    }
}

/// Lanes whose 16-bit `col` value lies in one of `r`: range by range over the whole column
/// (one broadcast per range). A single value, the common `port = 53`, is four compares.
#[inline(always)]
pub(crate) fn in_ranges16(col: &[u16; LANES], r: &Ranges<u16>) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of the x86_64 baseline, so these intrinsics are always
        // available (SSE4.1 ones only under its cfg); the unaligned loads of lanes 8k..8k+8
        // (k < 4) lie inside the array.
        unsafe {
            let x: [__m128i; 4] =
                std::array::from_fn(|k| _mm_loadu_si128(col.as_ptr().add(8 * k).cast()));
            let mut hit = [_mm_setzero_si128(); 4];
            for &v in r.eq.iter() {
                let v = _mm_set1_epi16(v as i16);
                for k in 0..4 {
                    hit[k] = _mm_or_si128(hit[k], _mm_cmpeq_epi16(x[k], v));
                }
            }
            for &(lo, w) in r.within.iter() {
                let base = _mm_set1_epi16(lo as i16);
                #[cfg(target_feature = "sse4.1")]
                {
                    let w = _mm_set1_epi16(w as i16);
                    for k in 0..4 {
                        let d = _mm_sub_epi16(x[k], base);
                        let inr = _mm_cmpeq_epi16(_mm_min_epu16(d, w), d);
                        hit[k] = _mm_or_si128(hit[k], inr);
                    }
                }
                #[cfg(not(target_feature = "sse4.1"))]
                {
                    let sign = _mm_set1_epi16(i16::MIN);
                    let limit = _mm_set1_epi16((w ^ 0x8000) as i16);
                    let ones = _mm_set1_epi16(-1);
                    for k in 0..4 {
                        let d = _mm_xor_si128(_mm_sub_epi16(x[k], base), sign);
                        let inr = _mm_andnot_si128(_mm_cmpgt_epi16(d, limit), ones);
                        hit[k] = _mm_or_si128(hit[k], inr);
                    }
                }
            }
            // Two vectors of eight 16-bit masks pack into sixteen bytes, one bit each.
            let lo = _mm_movemask_epi8(_mm_packs_epi16(hit[0], hit[1])) as u32 & 0xffff;
            let hi = _mm_movemask_epi8(_mm_packs_epi16(hit[2], hit[3])) as u32 & 0xffff;
            lo | hi << 16
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        mask(|i| r.contains(col[i]))
    }
}

/// Lanes with `col[i] - lo <= w` (unsigned, wrapping).
#[inline(always)]
fn in_range(col: &[u32; LANES], lo: u32, w: u32) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_loadu_si128, _mm_set1_epi32};
        // SAFETY: SSE2 is part of the x86_64 baseline, so these intrinsics are always
        // available; the unaligned load of lanes 4k..4k+4 lies inside the array.
        unsafe {
            let base = _mm_set1_epi32(lo as i32);
            let hit: [_; LANES / 4] = std::array::from_fn(|k| {
                within32(_mm_loadu_si128(col.as_ptr().add(4 * k).cast()), base, w)
            });
            lane_bits(&hit)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        mask(|i| col[i].wrapping_sub(lo) <= w)
    }
}
