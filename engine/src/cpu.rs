//! The CPU path: the `wasm` backend in browsers (and the same code natively). Each weight row is
//! decoded once into f32 (`(code - zero) * scale`, as every kernel dequantizes), then dotted with
//! every activation row. Built for wasm32 with `+simd128` (the workspace's `.cargo/config.toml`),
//! the dot product runs on 4-lane f32 vectors, rows (every width, and fp16) are decoded 16 weights a
//! step as vectors, and a GEMV dots each row as it is decoded; elsewhere it is portable scalar code
//! with the same four-way split, so both builds compute the same weights and sum in the same order.
//! The page's second bundle adds `+relaxed-simd` (`scripts/build-page`): its products are added
//! with `f32x4.relaxed_madd`, which engines with fused multiply-adds round once ([`Summation`]);
//! natively the scalar code computes either summation, so both have a bit-exact native twin.

use crate::quant::{sign_extend, QuantFormat, QuantizedMatrix, Scheme};

/// How each product is added into its lane's sum. The elements past the last whole vector and the
/// final sum of the four lanes are rounded after each operation in both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Summation {
    /// `acc + x * w`, rounded after the multiply and after the add (`f32x4.mul`, `f32x4.add`).
    Rounded,
    /// `fma(x, w, acc)`, rounded once: `f32x4.relaxed_madd` in an engine that fuses it.
    Fused,
}

impl Summation {
    /// The summation this code computes: in wasm, fixed by the build and the engine (see
    /// [`engine_fuses`]); natively, the scalar code's default ([`matmul_with`] takes either).
    pub fn of_this_build() -> Summation {
        if engine_fuses() {
            Summation::Fused
        } else {
            Summation::Rounded
        }
    }

    /// What a cell records as its dot product: the vector width, `-fma` where fused, and
    /// `-madd-unfused` for the relaxed-simd bundle in an engine that does not fuse (the bits of
    /// `simd128`, from the other bundle).
    pub fn dot_path(self) -> &'static str {
        let simd = cfg!(all(target_arch = "wasm32", target_feature = "simd128"));
        let relaxed = cfg!(all(target_arch = "wasm32", target_feature = "relaxed-simd"));
        match (simd, relaxed, self) {
            (true, _, Summation::Fused) => "simd128-fma",
            (true, true, Summation::Rounded) => "simd128-madd-unfused",
            (true, false, Summation::Rounded) => "simd128",
            (false, _, Summation::Rounded) => "scalar",
            (false, _, Summation::Fused) => "scalar-fma",
        }
    }

    /// Whether a recorded dot path summed with fused multiply-adds.
    pub fn of_dot_path(path: &str) -> Summation {
        if path.ends_with("-fma") {
            Summation::Fused
        } else {
            Summation::Rounded
        }
    }
}

/// Which dot product this build uses (recorded with each cell): see [`Summation::dot_path`].
pub fn dot_path() -> &'static str {
    Summation::of_this_build().dot_path()
}

/// Whether `f32x4.relaxed_madd` rounds once here: relaxed-simd lets an engine fuse it or not, and
/// an unfused one gives the bits of `f32x4.mul` then `f32x4.add`. (1 + 2^-23)(1 - 2^-24) - 1 is
/// 2^-24 - 2^-47 fused; the product alone rounds to 1, so 0 unfused.
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
fn engine_fuses() -> bool {
    use core::arch::wasm32::*;
    use std::hint::black_box;
    let x = f32x4_splat(black_box(1.0 + f32::EPSILON));
    let w = f32x4_splat(black_box(1.0 - f32::EPSILON / 2.0));
    f32x4_extract_lane::<0>(f32x4_relaxed_madd(x, w, f32x4_splat(black_box(-1.0)))) != 0.0
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
fn engine_fuses() -> bool {
    false
}

/// `x (m x k) * q^T`, row-major `m x n`, accumulated in f32 with this build's [`Summation`].
pub fn matmul(x: &[f32], m: usize, q: &QuantizedMatrix) -> Vec<f32> {
    matmul_rows(x, m, q, 0..q.n, Summation::of_this_build())
}

/// [`matmul`] with either summation: the native twin of a wasm bundle that fuses.
#[cfg(not(target_arch = "wasm32"))]
pub fn matmul_with(x: &[f32], m: usize, q: &QuantizedMatrix, s: Summation) -> Vec<f32> {
    matmul_rows(x, m, q, 0..q.n, s)
}

/// Output channels `rows` of [`matmul`]: row-major `m x rows.len()`. The wasm build computes its
/// own summation whatever `s` says: only [`matmul`] calls it there.
fn matmul_rows(x: &[f32], m: usize, q: &QuantizedMatrix, rows: std::ops::Range<usize>, s: Summation) -> Vec<f32> {
    assert_eq!(x.len(), m * q.k, "activations are m x k");
    if m == 1 {
        gemv_rows(x, q, rows, s)
    } else {
        gemm_rows(x, m, q, rows, s)
    }
}

// The GEMV and the GEMM are separate functions, not inlined into one, so that the GEMV's code does not
// change with the GEMM's (Firefox's fp16 decode measured 1.09x slower while they shared one, 1.03x
// apart: two rounds each, bench/2026-12-07-wasm-gemm-4x2-registers.txt).

/// One activation row: each weight row dotted as it is decoded, where the simd128 decode takes it
/// (8-bit rows two at a time, [`dot_decoded2`]).
#[inline(never)]
fn gemv_rows(x: &[f32], q: &QuantizedMatrix, rows: std::ops::Range<usize>, s: Summation) -> Vec<f32> {
    let (mut row, mut patterns) = (vec![0f32; q.k], vec![0u8; q.k]);
    let mut y = Vec::with_capacity(rows.len());
    let mut r = rows.start;
    while r < rows.end {
        if let Some(pair) = (r + 1 < rows.end).then(|| dot_decoded2(q, r, x)).flatten() {
            y.extend(pair);
            r += 2;
            continue;
        }
        y.push(dot_decoded(q, r, x).unwrap_or_else(|| {
            decode_row(q, r, &mut row, &mut patterns);
            dot(x, &row, s)
        }));
        r += 1;
    }
    y
}

/// Weight rows decoded at a time in the GEMM: the panel (16 rows of K = 4096 in f32 is 256 KiB)
/// waits in L2 while every block of activation rows passes over it.
const PANEL_ROWS: usize = 16;
/// Elements of K a step of the GEMM: one step's weights (the panel's rows, 32 KiB at 16 rows) and
/// one block's activations (8 KiB) stay in L1 while every block and row pair passes over them.
/// Measured in V8 (node) against panels of 4 to 64 rows and steps of 128 to 1024 elements, the best
/// two again in Firefox: bench/2026-12-07-wasm-gemm-panels.txt.
const STEP_K: usize = 512;

/// Several activation rows. The weight rows are decoded a panel at a time; then, a step of K at a
/// time, each block of four activation rows is dotted against two of the panel's rows at once
/// (eight sums in flight, [`accumulate4x2`]), the sums carried from step to step. Each lane still
/// sums its products in k order and ends as `dot` ends it ([`finish`]), so every output has the bits
/// of `dot` over the whole row. The panel's odd last row and the activation rows past the last
/// block of four are dotted over the whole row, one at a time.
#[inline(never)]
fn gemm_rows(x: &[f32], m: usize, q: &QuantizedMatrix, rows: std::ops::Range<usize>, s: Summation) -> Vec<f32> {
    let (n, k) = (rows.len(), q.k);
    let mut y = vec![0f32; m * n];
    let mut panel = vec![0f32; PANEL_ROWS * k];
    let mut patterns = vec![0u8; k];
    let blocks = m / 4;
    // The whole vectors of K; `finish` adds the tail.
    let body = k / 4 * 4;
    let mut sums: Vec<[Lanes; 8]> = Vec::new();
    let x_row = |i: usize| &x[i * k..(i + 1) * k];
    for j0 in (0..n).step_by(PANEL_ROWS) {
        let width = PANEL_ROWS.min(n - j0);
        for (d, row) in panel.chunks_exact_mut(k).take(width).enumerate() {
            decode_row(q, rows.start + j0 + d, row, &mut patterns);
        }
        let row = |r: usize| &panel[r * k..(r + 1) * k];
        let pairs = width / 2;
        // Where K takes more than one step, the sums wait here between steps; on the last step they
        // end in `finish` straight from the loop.
        sums.clear();
        sums.resize(if body > STEP_K { blocks * pairs } else { 0 }, [ZERO_LANES; 8]);
        for c0 in (0..body.max(1)).step_by(STEP_K) {
            let c = c0..(c0 + STEP_K).min(body);
            let (first, last) = (c0 == 0, c.end == body);
            for b in 0..blocks {
                let xs = [0, 1, 2, 3].map(|d| &x_row(4 * b + d)[c.clone()]);
                for p in 0..pairs {
                    let w = [&row(2 * p)[c.clone()], &row(2 * p + 1)[c.clone()]];
                    let start = if first { [ZERO_LANES; 8] } else { sums[b * pairs + p] };
                    let lanes = accumulate4x2(xs, w, start, s);
                    if !last {
                        sums[b * pairs + p] = lanes;
                        continue;
                    }
                    for (l, lanes) in lanes.into_iter().enumerate() {
                        let (i, r) = (4 * b + l % 4, 2 * p + l / 4);
                        y[i * n + j0 + r] = finish(lanes, x_row(i), row(r));
                    }
                }
            }
        }
        if width % 2 == 1 {
            for b in 0..blocks {
                let xs = [0, 1, 2, 3].map(|d| x_row(4 * b + d));
                for (d, v) in dot4(xs, row(width - 1), s).into_iter().enumerate() {
                    y[(4 * b + d) * n + j0 + width - 1] = v;
                }
            }
        }
        for i in 4 * blocks..m {
            for r in 0..width {
                y[i * n + j0 + r] = dot(x_row(i), row(r), s);
            }
        }
    }
    y
}

/// [`matmul_with`] with the output channels split over `threads` threads (natively; the same sums
/// in the same order, so the same bits).
#[cfg(not(target_arch = "wasm32"))]
pub fn matmul_threaded(x: &[f32], m: usize, q: &QuantizedMatrix, s: Summation, threads: usize) -> Vec<f32> {
    let threads = threads.clamp(1, q.n);
    if threads == 1 {
        return matmul_with(x, m, q, s);
    }
    let chunk = q.n.div_ceil(threads);
    let parts: Vec<(usize, Vec<f32>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..q.n)
            .step_by(chunk)
            .map(|start| {
                let rows = start..(start + chunk).min(q.n);
                scope.spawn(move || (rows.len(), matmul_rows(x, m, q, rows, s)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("matmul thread")).collect()
    });
    let mut y = vec![0f32; m * q.n];
    let mut col = 0;
    for (width, part) in parts {
        for i in 0..m {
            y[i * q.n + col..][..width].copy_from_slice(&part[i * width..(i + 1) * width]);
        }
        col += width;
    }
    y
}

/// Weight row `r` as this build's CPU path decodes it (the browser tests compare it with
/// `QuantizedMatrix::weight`, every fp16 bit pattern included).
pub fn decoded_row(q: &QuantizedMatrix, r: usize) -> Vec<f32> {
    let (mut row, mut patterns) = (vec![0f32; q.k], vec![0u8; q.k]);
    decode_row(q, r, &mut row, &mut patterns);
    row
}

/// Weight row `r` in f32, exactly as `QuantizedMatrix::weight` gives it, without per-element lookups.
fn decode_row(q: &QuantizedMatrix, r: usize, out: &mut [f32], patterns: &mut [u8]) {
    let stored = q.row(r);
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if simd_decode::decode_row(q, r, stored, out) {
        return;
    }
    let f = match q.format {
        QuantFormat::F16 => {
            for (o, b) in out.iter_mut().zip(stored.chunks_exact(2)) {
                *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
            return;
        }
        QuantFormat::Int(f) => f,
    };
    let glen = q.group_len();
    let bits = f.bits.bits();
    let patterns_per_group = 1usize << bits;
    // Each group's weights by pattern, computed once where a group has more weights than patterns:
    // the same `(code - zero) as f32 * scale` per weight, looked up.
    let mut table = [0f32; 256];
    f.layout().unpack_into(stored, patterns);
    for (g, (o, p)) in out.chunks_mut(glen).zip(patterns.chunks(glen)).enumerate() {
        if patterns_per_group <= glen {
            group_table(q, f.scheme, bits, r, g, &mut table[..patterns_per_group]);
            for (w, &pat) in o.iter_mut().zip(p) {
                *w = table[pat as usize];
            }
        } else {
            let (scale, zero) = (q.scale(r, g), q.zero(r, g));
            for (w, &pat) in o.iter_mut().zip(p) {
                *w = (code_of(f.scheme, pat, bits) - zero) as f32 * scale;
            }
        }
    }
}

/// Row `r` dotted with one activation row as it is decoded (the GEMV, bound by the decode), where
/// the simd128 decode takes the row; `None` elsewhere.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn dot_decoded(q: &QuantizedMatrix, r: usize, x: &[f32]) -> Option<f32> {
    simd_decode::dot_row(q, r, q.row(r), x)
}

/// Rows `r` and `r + 1` as [`dot_decoded`] gives each, two at a time, for 8-bit codes only: their
/// decode is the cheapest, so one row's chain of adds bounds its GEMV (in V8, 4096x4096: 3.8-4.0 ms
/// a row at a time, 5.6-5.7 ms with fused multiply-adds, 3.4-3.5 ms fused two rows at a time), while
/// fp16 and 2-bit rows decoded two at a time ran slower (16 -> 20-27 ms, 11-14 -> 17-28 ms) and 4-bit
/// ones no faster (bench/2026-12-07-wasm-fma-bundle.txt).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn dot_decoded2(q: &QuantizedMatrix, r: usize, x: &[f32]) -> Option<[f32; 2]> {
    simd_decode::dot_rows2(q, r, [q.row(r), q.row(r + 1)], x)
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn dot_decoded(_: &QuantizedMatrix, _: usize, _: &[f32]) -> Option<f32> {
    None
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn dot_decoded2(_: &QuantizedMatrix, _: usize, _: &[f32]) -> Option<[f32; 2]> {
    None
}

fn code_of(scheme: Scheme, pattern: u8, bits: u32) -> i32 {
    match scheme {
        Scheme::Symmetric => sign_extend(pattern, bits),
        Scheme::Asymmetric => pattern as i32,
    }
}

/// The weight of every pattern in group `g` of row `r`.
fn group_table(q: &QuantizedMatrix, scheme: Scheme, bits: u32, r: usize, g: usize, table: &mut [f32]) {
    let (scale, zero) = (q.scale(r, g), q.zero(r, g));
    for (pat, t) in table.iter_mut().enumerate() {
        *t = (code_of(scheme, pat as u8, bits) - zero) as f32 * scale;
    }
}

/// Integer and fp16 rows decoded 16 weights a step with simd128: the step's codes unpacked
/// in order, widened to i32 and turned into `(code - zero) as f32 * scale`, the same operations (so
/// the same bits) as the scalar decode, without its per-weight loads and lookups; fp16 converted by
/// bit moves and one exact multiply, to the bits `half` gives. The GEMV on the CPU path is bound by
/// this decode (one weight row, one activation row).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd_decode {
    use crate::quant::{Layout, QuantFormat, QuantizedMatrix, Scheme, PLANES3_BLOCK, PLANES3_BLOCK_BYTES};
    use core::arch::wasm32::*;

    /// Decodes row `r` into `out`, or returns false (writing nothing) where [`each_step`] cannot.
    pub(super) fn decode_row(q: &QuantizedMatrix, r: usize, stored: &[u8], out: &mut [f32]) -> bool {
        assert_eq!(out.len(), q.k, "row {r}: K weights");
        each_step(q, r, stored, |at, w| {
            for (j, v) in w.into_iter().enumerate() {
                // SAFETY: `at + 16 <= K == out.len()`; this writes 4 f32 at `at + 4 * j`.
                unsafe { v128_store(out.as_mut_ptr().add(at + 4 * j) as *mut v128, v) };
            }
        })
    }

    /// Row `r` dotted with `x` as it is decoded, the row never written out: each lane sums the
    /// products of its k in k order, as `dot` sums them over a decoded row, so the same bits.
    pub(super) fn dot_row(q: &QuantizedMatrix, r: usize, stored: &[u8], x: &[f32]) -> Option<f32> {
        assert_eq!(x.len(), q.k, "activations: K values");
        let mut acc = f32x4_splat(0.0);
        let whole = each_step(q, r, stored, |at, w| {
            for (j, v) in w.into_iter().enumerate() {
                // SAFETY: `at + 16 <= K == x.len()`; this reads 4 f32 at `at + 4 * j`.
                let vx = unsafe { v128_load(x.as_ptr().add(at + 4 * j) as *const v128) };
                acc = super::madd(acc, vx, v);
            }
        });
        whole.then(|| super::finish(acc, &[], &[]))
    }

    /// Rows `r` and `r + 1` of 8-bit codes dotted with `x` as [`dot_row`] dots each (the same
    /// bits), their steps interleaved: each row's sum is one chain of dependent adds (or
    /// multiply-adds, whose latency is longer), and two independent chains overlap where one would
    /// wait on itself. `None` for other formats, or where a row is not whole steps of 16.
    pub(super) fn dot_rows2(q: &QuantizedMatrix, r: usize, stored: [&[u8]; 2], x: &[f32]) -> Option<[f32; 2]> {
        assert_eq!(x.len(), q.k, "activations: K values");
        let glen = q.group_len();
        let QuantFormat::Int(f) = q.format else { return None };
        if f.layout() != Layout::Bytes || glen % 16 != 0 || q.k % glen != 0 {
            return None;
        }
        // Every load below lies inside the rows' codes (K bytes each); this bounds them all.
        assert!(stored.iter().all(|row| row.len() >= q.k), "rows {r} and {}: K codes each", r + 1);
        Some(if f.scheme == Scheme::Symmetric {
            byte_rows2::<true>(q, r, glen, stored, x)
        } else {
            byte_rows2::<false>(q, r, glen, stored, x)
        })
    }

    /// [`dot_rows2`] for one scheme.
    #[inline(always)]
    fn byte_rows2<const SIGNED: bool>(
        q: &QuantizedMatrix,
        r: usize,
        glen: usize,
        stored: [&[u8]; 2],
        x: &[f32],
    ) -> [f32; 2] {
        let (mut a0, mut a1) = (f32x4_splat(0.0), f32x4_splat(0.0));
        for g in 0..q.k / glen {
            let (scale0, scale1) = (f32x4_splat(q.scale(r, g)), f32x4_splat(q.scale(r + 1, g)));
            let (zero0, zero1) = (i32x4_splat(q.zero(r, g)), i32x4_splat(q.zero(r + 1, g)));
            for at in (g * glen..(g + 1) * glen).step_by(16) {
                // SAFETY: bytes `at..at + 16` lie inside both rows (asserted in `dot_rows2`).
                let (p0, p1) =
                    unsafe { (patterns16::<8>(stored[0].as_ptr(), at), patterns16::<8>(stored[1].as_ptr(), at)) };
                let w0 = weights::<8, SIGNED>(p0, zero0, scale0);
                let w1 = weights::<8, SIGNED>(p1, zero1, scale1);
                for j in 0..4 {
                    // SAFETY: `at + 16 <= K == x.len()`; this reads 4 f32 at `at + 4 * j`.
                    let vx = unsafe { v128_load(x.as_ptr().add(at + 4 * j) as *const v128) };
                    a0 = super::madd(a0, vx, w0[j]);
                    a1 = super::madd(a1, vx, w1[j]);
                }
            }
        }
        [a0, a1].map(|acc| super::finish(acc, &[], &[]))
    }

    /// Calls `each(k, weights)` for every 16 weights of row `r` in k order (four vectors of four),
    /// or returns false (calling nothing) where the row is not whole steps of 16 in every group.
    #[inline(always)]
    fn each_step(q: &QuantizedMatrix, r: usize, stored: &[u8], each: impl FnMut(usize, [v128; 4])) -> bool {
        let glen = q.group_len();
        if glen % 16 != 0 || q.k % glen != 0 {
            return false;
        }
        // Every load below lies inside the row's packed codes; this bounds them all.
        assert!(stored.len() >= q.format.layout().packed_bytes(q.k), "row {r} is shorter than its K codes");
        let f = match q.format {
            QuantFormat::F16 => {
                half_steps(q.k, stored, each);
                return true;
            }
            QuantFormat::Int(f) => f,
        };
        let signed = f.scheme == Scheme::Symmetric;
        // One loop for each width and scheme, so that nothing is decided per step.
        match (f.layout(), signed) {
            (Layout::Bytes, true) => steps::<8, true>(q, r, glen, stored, each),
            (Layout::Bytes, false) => steps::<8, false>(q, r, glen, stored, each),
            (Layout::Nibbles, true) => steps::<4, true>(q, r, glen, stored, each),
            (Layout::Nibbles, false) => steps::<4, false>(q, r, glen, stored, each),
            (Layout::Crumbs, true) => steps::<2, true>(q, r, glen, stored, each),
            (Layout::Crumbs, false) => steps::<2, false>(q, r, glen, stored, each),
            (Layout::Planes3, true) => steps::<3, true>(q, r, glen, stored, each),
            (Layout::Planes3, false) => steps::<3, false>(q, r, glen, stored, each),
            (Layout::Half, _) => return false,
        }
        true
    }

    /// [`each_step`] for an fp16 row (little-endian halves), K a multiple of 16, `stored` at least 2 K
    /// bytes (asserted there).
    #[inline(always)]
    fn half_steps(k: usize, stored: &[u8], mut each: impl FnMut(usize, [v128; 4])) {
        for at in (0..k).step_by(16) {
            // SAFETY: halves `at..at + 16` are bytes `2 * at..2 * at + 32`, inside the row.
            let (a, b) = unsafe {
                let p = stored.as_ptr().add(2 * at);
                (v128_load(p as *const v128), v128_load(p.add(16) as *const v128))
            };
            each(
                at,
                [
                    half_to_f32(u32x4_extend_low_u16x8(a)),
                    half_to_f32(u32x4_extend_high_u16x8(a)),
                    half_to_f32(u32x4_extend_low_u16x8(b)),
                    half_to_f32(u32x4_extend_high_u16x8(b)),
                ],
            );
        }
    }

    /// Four halves (one in the low 16 bits of each lane) as f32, bit for bit what `half` gives: a
    /// finite half's exponent and mantissa moved into f32's places and multiplied by 2^112 (the
    /// biases' difference; exact, subnormal halves included, as wasm keeps subnormal floats);
    /// infinities and NaNs get f32's all-ones exponent, NaNs their quiet bit.
    #[inline(always)]
    fn half_to_f32(h: v128) -> v128 {
        let sign = i32x4_shl(v128_and(h, u32x4_splat(0x8000)), 16);
        let magnitude = v128_and(h, u32x4_splat(0x7FFF));
        let moved = i32x4_shl(magnitude, 13);
        let finite = f32x4_mul(moved, f32x4_splat(f32::from_bits(0x7780_0000)));
        let nan = i32x4_gt(magnitude, i32x4_splat(0x7C00));
        let special = v128_or(v128_or(moved, u32x4_splat(0x7F80_0000)), v128_and(nan, u32x4_splat(0x0040_0000)));
        let is_special = i32x4_ge(magnitude, i32x4_splat(0x7C00));
        v128_or(sign, v128_bitselect(special, finite, is_special))
    }

    /// [`each_step`] for a row of `BITS`-wide codes in groups of `glen`, `stored` holding its packed
    /// codes (asserted there).
    #[inline(always)]
    fn steps<const BITS: usize, const SIGNED: bool>(
        q: &QuantizedMatrix,
        r: usize,
        glen: usize,
        stored: &[u8],
        mut each: impl FnMut(usize, [v128; 4]),
    ) {
        for g in 0..q.k / glen {
            let scale = f32x4_splat(q.scale(r, g));
            let zero = i32x4_splat(q.zero(r, g));
            for s in 0..glen / 16 {
                let at = g * glen + s * 16;
                // SAFETY: the step's bytes lie inside the row's packed codes (asserted in `each_step`).
                let patterns = unsafe { patterns16::<BITS>(stored.as_ptr(), at) };
                each(at, weights::<BITS, SIGNED>(patterns, zero, scale));
            }
        }
    }

    /// A step's sixteen patterns as weights, `(code - zero) as f32 * scale`.
    #[inline(always)]
    fn weights<const BITS: usize, const SIGNED: bool>(patterns: v128, zero: v128, scale: v128) -> [v128; 4] {
        widen::<BITS, SIGNED>(patterns).map(|c| f32x4_mul(f32x4_convert_i32x4(i32x4_sub(c, zero)), scale))
    }

    /// Sixteen patterns in weight order, one a byte lane: codes `at..at + 16` of the packed row at
    /// `row` (16 bytes of 8-bit codes, 8 of 4-bit, 4 of 2-bit, the low bits holding the first code;
    /// 3-bit: half a `planes3` block, its 4 bytes of low crumbs and 2 bytes of high bits).
    ///
    /// SAFETY: `at` must be a multiple of 16 and the step's bytes inside the row.
    #[inline(always)]
    unsafe fn patterns16<const BITS: usize>(row: *const u8, at: usize) -> v128 {
        match BITS {
            8 => v128_load(row.add(at) as *const v128),
            4 => {
                let b = v128_load64_zero(row.add(at / 2) as *const u64);
                let (low, high) = (v128_and(b, u8x16_splat(0x0F)), u8x16_shr(b, 4));
                i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(low, high)
            }
            2 => crumbs16(row.add(at / 4)),
            3 => {
                let block = row.add(at / PLANES3_BLOCK * PLANES3_BLOCK_BYTES);
                let half = at % PLANES3_BLOCK / 16;
                let low = crumbs16(block.add(4 * half));
                // Code j's high bit is bit j % 8 of byte j / 8: each byte spread over 8 lanes, each
                // lane keeping its own bit.
                let bytes = v128_load16_splat(block.add(8 + 2 * half) as *const u16);
                let spread = i8x16_shuffle::<0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1>(bytes, bytes);
                let bit = u8x16(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
                let high = v128_and(i8x16_ne(v128_and(spread, bit), u8x16_splat(0)), u8x16_splat(4));
                v128_or(low, high)
            }
            _ => unreachable!("2-, 3-, 4- and 8-bit codes only"),
        }
    }

    /// Sixteen 2-bit patterns from the 4 bytes at `p`, four a byte from the low bits up.
    ///
    /// SAFETY: `p..p + 4` must be inside one allocation.
    #[inline(always)]
    unsafe fn crumbs16(p: *const u8) -> v128 {
        let b = v128_load32_zero(p as *const u32);
        let three = u8x16_splat(3);
        let c =
            [v128_and(b, three), v128_and(u8x16_shr(b, 2), three), v128_and(u8x16_shr(b, 4), three), u8x16_shr(b, 6)];
        // Bytes 0-3 of each: (c0, c1) and (c2, c3) paired by byte, then the pairs interleaved.
        let first = i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 0, 0, 0, 0, 0, 0, 0, 0>(c[0], c[1]);
        let second = i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 0, 0, 0, 0, 0, 0, 0, 0>(c[2], c[3]);
        i8x16_shuffle::<0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23>(first, second)
    }

    /// The patterns as four vectors of i32 codes: sign-extended from `BITS` for symmetric formats,
    /// unsigned for asymmetric ones (as `code_of`).
    #[inline(always)]
    fn widen<const BITS: usize, const SIGNED: bool>(patterns: v128) -> [v128; 4] {
        let (low, high) = if SIGNED {
            let shift = 8 - BITS as u32;
            let signed = i8x16_shr(i8x16_shl(patterns, shift), shift);
            (i16x8_extend_low_i8x16(signed), i16x8_extend_high_i8x16(signed))
        } else {
            (u16x8_extend_low_u8x16(patterns), u16x8_extend_high_u8x16(patterns))
        };
        [
            i32x4_extend_low_i16x8(low),
            i32x4_extend_high_i16x8(low),
            i32x4_extend_low_i16x8(high),
            i32x4_extend_high_i16x8(high),
        ]
    }
}

/// The four lanes of a dot product in flight: lane `j % 4` sums the products of elements `j`.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
type Lanes = core::arch::wasm32::v128;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
const ZERO_LANES: Lanes = core::arch::wasm32::f32x4(0.0, 0.0, 0.0, 0.0);
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
type Lanes = [f32; 4];
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
const ZERO_LANES: Lanes = [0.0; 4];

/// `acc + x * w` per lane: `f32x4.relaxed_madd` in the relaxed-simd build (rounded once where the
/// engine fuses it, [`engine_fuses`]), `f32x4.mul` then `f32x4.add` otherwise.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn madd(
    acc: core::arch::wasm32::v128,
    x: core::arch::wasm32::v128,
    w: core::arch::wasm32::v128,
) -> core::arch::wasm32::v128 {
    use core::arch::wasm32::*;
    #[cfg(target_feature = "relaxed-simd")]
    return f32x4_relaxed_madd(x, w, acc);
    #[cfg(not(target_feature = "relaxed-simd"))]
    f32x4_add(acc, f32x4_mul(x, w))
}

// The simd128 dot products below take the summation only to share the scalar ones' signatures:
// their [`madd`] is the build's.

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn dot(a: &[f32], b: &[f32], _: Summation) -> f32 {
    use core::arch::wasm32::*;
    let mut acc = f32x4_splat(0.0);
    let chunks = a.len() / 4;
    for i in 0..chunks {
        // SAFETY: `i * 4 + 3 < a.len() == b.len()`; v128_load has no alignment requirement.
        let (va, vb) = unsafe {
            (v128_load(a.as_ptr().add(i * 4) as *const v128), v128_load(b.as_ptr().add(i * 4) as *const v128))
        };
        acc = madd(acc, va, vb);
    }
    finish(acc, a, b)
}

/// The end of a simd128 dot product: the elements past the last whole vector added to their lanes,
/// then the lanes summed pairwise (the order the scalar build sums in too).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn finish(acc: Lanes, a: &[f32], b: &[f32]) -> f32 {
    use core::arch::wasm32::*;
    let mut lanes = [
        f32x4_extract_lane::<0>(acc),
        f32x4_extract_lane::<1>(acc),
        f32x4_extract_lane::<2>(acc),
        f32x4_extract_lane::<3>(acc),
    ];
    for j in a.len() / 4 * 4..a.len() {
        lanes[j % 4] += a[j] * b[j];
    }
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
}

/// [`dot`] of four rows against one, each summed in the same order as `dot` sums it.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn dot4(xs: [&[f32]; 4], w: &[f32], _: Summation) -> [f32; 4] {
    use core::arch::wasm32::*;
    let mut acc = [f32x4_splat(0.0); 4];
    let chunks = w.len() / 4;
    assert!(xs.iter().all(|x| x.len() == w.len()));
    for i in 0..chunks {
        // SAFETY: `i * 4 + 3 < w.len()`, and every row is as long (asserted); no alignment needed.
        let vw = unsafe { v128_load(w.as_ptr().add(i * 4) as *const v128) };
        for (a, x) in acc.iter_mut().zip(xs) {
            let vx = unsafe { v128_load(x.as_ptr().add(i * 4) as *const v128) };
            *a = madd(*a, vx, vw);
        }
    }
    [0, 1, 2, 3].map(|d| finish(acc[d], xs[d], w))
}

/// The eight sums of a block of four activation rows against two weight rows, carried on over one
/// more step of K (`xs` and `w` cut to that step, whole vectors only): sums `[e * 4 + d]` for weight
/// row `e` and activation row `d`, each lane summing in k order as `dot` does. Within the step the
/// sums live in eight named locals, which LLVM keeps as wasm locals and the engines in registers (an
/// array of them stayed in linear memory, loaded and stored every step, and was no faster than
/// [`dot4`], bench/2026-12-06-wasm-gemm-4x2.txt).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn accumulate4x2(xs: [&[f32]; 4], w: [&[f32]; 2], sums: [Lanes; 8], _: Summation) -> [Lanes; 8] {
    use core::arch::wasm32::*;
    let len = w[0].len();
    assert!(xs.iter().all(|x| x.len() == len) && w[1].len() == len && len % 4 == 0);
    let [mut a00, mut a01, mut a02, mut a03, mut a10, mut a11, mut a12, mut a13] = sums;
    let (p0, p1) = (w[0].as_ptr(), w[1].as_ptr());
    let [q0, q1, q2, q3] = xs.map(<[f32]>::as_ptr);
    for i in (0..len / 4).map(|c| c * 4) {
        // SAFETY: `i + 3 < len`, the length of every row (asserted); v128_load needs no alignment.
        let load = |p: *const f32| unsafe { v128_load(p.add(i) as *const v128) };
        let (w0, w1) = (load(p0), load(p1));
        // One activation row's vector against both weight rows, into that row's two sums.
        let both = |x: v128, s0: &mut v128, s1: &mut v128| {
            *s0 = madd(*s0, x, w0);
            *s1 = madd(*s1, x, w1);
        };
        both(load(q0), &mut a00, &mut a10);
        both(load(q1), &mut a01, &mut a11);
        both(load(q2), &mut a02, &mut a12);
        both(load(q3), &mut a03, &mut a13);
    }
    [a00, a01, a02, a03, a10, a11, a12, a13]
}

/// [`accumulate4x2`] lane by lane, with the build's summation.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn accumulate4x2(xs: [&[f32]; 4], w: [&[f32]; 2], mut sums: [Lanes; 8], s: Summation) -> [Lanes; 8] {
    for (l, lanes) in sums.iter_mut().enumerate() {
        match s {
            Summation::Rounded => add_lanes(lanes, xs[l % 4], w[l / 4], |acc, x, w| acc + x * w),
            Summation::Fused => add_lanes(lanes, xs[l % 4], w[l / 4], |acc, x, w| x.mul_add(w, acc)),
        }
    }
    sums
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn dot4(xs: [&[f32]; 4], w: &[f32], s: Summation) -> [f32; 4] {
    xs.map(|x| dot(x, w, s))
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn dot(a: &[f32], b: &[f32], s: Summation) -> f32 {
    match s {
        Summation::Rounded => dot_lanes(a, b, |acc, x, w| acc + x * w),
        Summation::Fused => dot_lanes(a, b, |acc, x, w| x.mul_add(w, acc)),
    }
}

/// The four lanes of a simd128 dot product, each summed in k order with `madd`, then as `finish`
/// ends one.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32], madd: impl Fn(f32, f32, f32) -> f32) -> f32 {
    assert_eq!(a.len(), b.len());
    let mut lanes = ZERO_LANES;
    add_lanes(&mut lanes, a, b, madd);
    finish(lanes, a, b)
}

/// `a . b` over their whole vectors of four, added on to `lanes` (lane `j % 4` takes element `j`).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn add_lanes(lanes: &mut Lanes, a: &[f32], b: &[f32], madd: impl Fn(f32, f32, f32) -> f32) {
    for (ca, cb) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
        for ((acc, x), w) in lanes.iter_mut().zip(ca).zip(cb) {
            *acc = madd(*acc, *x, *w);
        }
    }
}

/// The end of a dot product: the elements past the last whole vector added to their lanes, then
/// the lanes summed pairwise, as the simd128 build's `finish` ends one.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn finish(mut lanes: Lanes, a: &[f32], b: &[f32]) -> f32 {
    for j in a.len() / 4 * 4..a.len() {
        lanes[j % 4] += a[j] * b[j];
    }
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{quantize, Quantizer};
    use crate::reference::{emulate, Arith};
    use crate::seeded;

    #[test]
    fn decoded_rows_equal_the_stored_weights() {
        for (format, k) in QuantFormat::catalogue().into_iter().flat_map(|f| [(f, 256), (f, 250)]) {
            if format.check_shape(3, k).is_err() {
                continue;
            }
            let n = 3;
            let w = seeded::weights(4, n, k);
            let q = quantize(&w, n, k, format, Quantizer::RoundToNearest).unwrap();
            let (mut row, mut pat) = (vec![0f32; k], vec![0u8; k]);
            for r in 0..n {
                decode_row(&q, r, &mut row, &mut pat);
                for (c, v) in row.iter().enumerate() {
                    assert_eq!(v.to_bits(), q.weight(r, c).to_bits(), "{format} ({r}, {c})");
                }
            }
        }
    }

    /// The GEMM's blocks, panels and steps of K change no bit: the second shape has two whole
    /// panels and an odd row, two whole steps of K and a short one, a tail past the last vector,
    /// and a row past the last block of four.
    #[test]
    fn four_rows_at_once_sum_as_one_row_at_a_time() {
        let summations = if cfg!(target_arch = "wasm32") {
            vec![Summation::of_this_build()]
        } else {
            vec![Summation::Rounded, Summation::Fused]
        };
        for ((m, n, k), s) in [(6, 5, 130), (9, 2 * PANEL_ROWS + 3, 2 * STEP_K + 6)]
            .into_iter()
            .flat_map(|shape| summations.iter().map(move |s| (shape, *s)))
        {
            let q = quantize(&seeded::weights(7, n, k), n, k, QuantFormat::F16, Quantizer::RoundToNearest).unwrap();
            let x = seeded::activations(7, m, k);
            let y = matmul_rows(&x, m, &q, 0..n, s);
            let (mut row, mut pat) = (vec![0f32; k], vec![0u8; k]);
            for r in 0..n {
                decode_row(&q, r, &mut row, &mut pat);
                for i in 0..m {
                    let alone = dot(&x[i * k..(i + 1) * k], &row, s);
                    assert_eq!(y[i * n + r].to_bits(), alone.to_bits(), "{m}x{n}x{k} {s:?} ({i}, {r})");
                }
            }
        }
    }

    #[test]
    fn matmul_is_within_summation_error_of_the_emulation() {
        let (m, n, k) = (3, 17, 263);
        let x = seeded::activations(2, m, k);
        let w = seeded::weights(2, n, 256);
        let q = quantize(&w, n, 256, "int4-g32-asym".parse().unwrap(), Quantizer::RoundToNearest).unwrap();
        let x = &x[..m * 256];
        let y = matmul(x, m, &q);
        let e = emulate(x, m, &q, Arith::F32);
        for ((a, b), s) in y.iter().zip(&e.y).zip(&e.abs_dot) {
            approx::assert_abs_diff_eq!(a, b, epsilon = 256.0 * f32::EPSILON * s);
        }
        // Odd K exercises the tail.
        let qf = quantize(&seeded::weights(3, n, k), n, k, QuantFormat::F16, Quantizer::RoundToNearest).unwrap();
        let xs = seeded::activations(3, m, k);
        let (y, e) = (matmul(&xs, m, &qf), emulate(&xs, m, &qf, Arith::F32));
        for ((a, b), s) in y.iter().zip(&e.y).zip(&e.abs_dot) {
            approx::assert_abs_diff_eq!(a, b, epsilon = k as f32 * f32::EPSILON * s);
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            assert_eq!(matmul_threaded(&xs, m, &qf, Summation::Rounded, 3), y, "threads change no bit");
            let fused = matmul_with(&xs, m, &qf, Summation::Fused);
            for ((a, b), s) in fused.iter().zip(&e.y).zip(&e.abs_dot) {
                approx::assert_abs_diff_eq!(a, b, epsilon = k as f32 * f32::EPSILON * s);
            }
            assert_eq!(matmul_threaded(&xs, m, &qf, Summation::Fused, 3), fused, "threads change no bit");
        }
    }

    /// A lane that holds -1 and then adds (1 + 2^-23)(1 - 2^-24): fused, the exact 2^-24 - 2^-47;
    /// rounded, the product is 1 and the sum 0. The tail and the lanes' sum are rounded in both.
    #[test]
    fn fused_sums_round_each_product_and_sum_once() {
        let tail = 2f32.powi(-30);
        let x = [-1.0, 0.0, 0.0, 0.0, 1.0 + f32::EPSILON, 0.0, 0.0, 0.0, 3.0];
        let w = [1.0, 0.0, 0.0, 0.0, 1.0 - f32::EPSILON / 2.0, 0.0, 0.0, 0.0, tail];
        let exact = 2f32.powi(-24) - 2f32.powi(-47);
        let build = Summation::of_this_build();
        let expect = |s| if s == Summation::Fused { exact + 3.0 * tail } else { 3.0 * tail };
        assert_eq!(dot(&x, &w, build), expect(build), "{}", build.dot_path());
        #[cfg(not(target_arch = "wasm32"))]
        {
            assert_eq!(dot(&x, &w, Summation::Fused), expect(Summation::Fused));
            assert_ne!(expect(Summation::Fused), expect(Summation::Rounded));
        }
        assert_eq!(Summation::of_dot_path(build.dot_path()), build);
    }
}
