//! The wasm CPU path's element-wise and row kernels: exp, sigmoid, SiLU, log-sigmoid, softmax
//! and RMSNorm in SIMD128, each with a scalar twin that gives the same bits.
//!
//! Why hand-written: in wasm, candle's `exp` is compiler-builtins' libm `expf`, one element per
//! call, and each composite op is several candle ops, each a pass over memory into a new buffer
//! (softmax: max, subtract, exp, sum, divide). A V8 profile of the page's benchmark (README, "wasm
//! CPU element-wise kernels") put `expf` alone at about a third of Transformer++'s and GLA's time.
//! Here every op is one pass (two for a row op) and exp is four lanes of a polynomial.
//!
//! exp is Cephes' `expf` scheme: `n = round(x·log2 e)`, `r = x − n·ln 2` (ln 2 in two parts, the
//! first exact in n·C1), `e^r ≈ 1 + r + r²·P(r)` (degree-5 P), times `2^n` as two exact powers of
//! two. Within 1.5e-7 relative of float64 (measured 7.7e-8; tested); below [`EXP_LO`] the result is 0 (libm would
//! give subnormals down to −103.97), above [`EXP_HI`] +∞, NaN stays NaN.
//!
//! Every operation is a plain f32 add, multiply or divide in a fixed order (wasm SIMD128 has no
//! fused multiply-add, Rust does not contract), so the SIMD128 kernels and the scalar twins agree
//! bit for bit and results never depend on an array's length or alignment. Row sums run in four
//! lanes, element i into lane i mod 4, then `(l0 + l1) + (l2 + l3)` — the twin does the same.
//! Natively the CPU backend keeps candle (glibc's fast `expf`); native tests run the twins through
//! `CpuBackend::with_matmul_kernel(true)`.

/// Below this exp returns 0 (e^x would be subnormal).
pub const EXP_LO: f32 = -87.336_55;
/// Above this exp returns +∞ (e^x would overflow f32).
pub const EXP_HI: f32 = 88.722_83;
const LOG2E: f32 = std::f32::consts::LOG2_E;
const C1: f32 = 0.693_359_4;
const C2: f32 = -2.121_944_4e-4;
const P: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5];

/// e^x, the scalar twin of the SIMD128 lanes.
pub fn exp_scalar(x: f32) -> f32 {
    // pmin / pmax: NaN passes through both.
    let xc = if EXP_HI < x { EXP_HI } else { x };
    let xc = if xc < EXP_LO { EXP_LO } else { xc };
    let n = (xc * LOG2E).round_ties_even();
    let r = (xc - n * C1) - n * C2;
    let mut p = P[0];
    for &c in &P[1..] {
        p = p * r + c;
    }
    let y = (p * (r * r) + r) + 1.0;
    // Saturating, as i32x4.trunc_sat_f32x4 (NaN → 0).
    let ni = n as i32;
    let n1 = ni >> 1;
    let n2 = ni - n1;
    let y = y * f32::from_bits(((n1 + 127) as u32) << 23) * f32::from_bits(((n2 + 127) as u32) << 23);
    if x > EXP_HI {
        f32::INFINITY
    } else if x < EXP_LO {
        0.0
    } else {
        y
    }
}

/// The element-wise ops, each defined by its scalar form (the SIMD128 lanes compute the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// e^x
    Exp,
    /// 1 / (1 + e^−x)
    Sigmoid,
    /// x · (1 / (1 + e^−x))
    Silu,
    /// min(x, 0) − ln_1p(e^−|x|) (libm's `log1pf`, one element at a time: exact where e^−|x| is
    /// tiny, unlike ln(1 + ·))
    LogSigmoid,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Exp, Op::Sigmoid, Op::Silu, Op::LogSigmoid];

    /// The op on one element: the twin.
    pub fn scalar(self, x: f32) -> f32 {
        match self {
            Op::Exp => exp_scalar(x),
            Op::Sigmoid => 1.0 / (1.0 + exp_scalar(-x)),
            Op::Silu => x * (1.0 / (1.0 + exp_scalar(-x))),
            Op::LogSigmoid => log_sigmoid_tail(x, exp_scalar(-x.abs())),
        }
    }
}

/// min(x, 0) − ln_1p(e) with `e = e^−|x|` computed by the caller.
fn log_sigmoid_tail(x: f32, e: f32) -> f32 {
    let neg = if 0.0 < x { 0.0 } else { x };
    neg - e.ln_1p()
}

/// `op` on every element: SIMD128 on wasm32 when `simd`, the scalar twin otherwise.
pub fn unary(op: Op, x: &[f32], simd: bool) -> Vec<f32> {
    #[cfg(target_arch = "wasm32")]
    if simd {
        // SAFETY: simd128 is enabled for every wasm32 build that runs this (the kernels are only
        // compiled for wasm32, whose engines all validate SIMD128 modules; see simd.rs).
        return unsafe { wasm::unary(op, x) };
    }
    let _ = simd;
    x.iter().map(|&v| op.scalar(v)).collect()
}

/// Σ v_i in four lanes (element i into lane i mod 4), then `(l0 + l1) + (l2 + l3)`.
fn lane_sum(v: impl Iterator<Item = f32>) -> f32 {
    let mut l = [0f32; 4];
    for (i, x) in v.enumerate() {
        l[i % 4] += x;
    }
    (l[0] + l[1]) + (l[2] + l[3])
}

/// Softmax over each row of `d` values: `e_i = exp(x_i − max)`, `y_i = e_i / Σ e` (lane sum).
/// `x.len()` must be a multiple of `d` (`d > 0`).
pub fn softmax_rows(x: &[f32], d: usize, simd: bool) -> Vec<f32> {
    assert!(d > 0 && x.len() % d == 0, "softmax: {} values are not rows of {d}", x.len());
    #[cfg(target_arch = "wasm32")]
    if simd {
        // SAFETY: see `unary`.
        return unsafe { wasm::softmax_rows(x, d) };
    }
    let _ = simd;
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(d) {
        // Per lane `m = m < v ? v : m` from −∞, then the lanes likewise: the max (any ±0 tie
        // gives the same results below).
        let m = row.iter().fold(f32::NEG_INFINITY, |m, &v| if m < v { v } else { m });
        let start = out.len();
        out.extend(row.iter().map(|&v| exp_scalar(v - m)));
        let s = lane_sum(out[start..].iter().copied());
        for e in &mut out[start..] {
            *e /= s;
        }
    }
    out
}

/// RMSNorm over each row of `d` values: `y_i = (x_i · (1 / sqrt(Σ x² / d + eps))) · w_i`
/// (lane sum), `w.len() == d`.
pub fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32, simd: bool) -> Vec<f32> {
    let d = w.len();
    assert!(d > 0 && x.len() % d == 0, "rms_norm: {} values are not rows of {d}", x.len());
    #[cfg(target_arch = "wasm32")]
    if simd {
        // SAFETY: see `unary`.
        return unsafe { wasm::rms_norm_rows(x, w, eps) };
    }
    let _ = simd;
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(d) {
        let inv = 1.0 / (lane_sum(row.iter().map(|&v| v * v)) / d as f32 + eps).sqrt();
        out.extend(row.iter().zip(w).map(|(&v, &wi)| (v * inv) * wi));
    }
    out
}

#[cfg(target_arch = "wasm32")]
mod wasm {
    use super::{log_sigmoid_tail, Op, C1, C2, EXP_HI, EXP_LO, LOG2E, P};
    use core::arch::wasm32::*;

    /// e^x on four lanes, operation for operation [`super::exp_scalar`]. A macro, not a function:
    /// at opt-level z LLVM kept a function call per vector (a V8 profile showed it), and
    /// `#[inline(always)]` does not combine with `#[target_feature]`.
    macro_rules! exp4 {
        ($x:expr) => {{
            let x = $x;
            let (hi, lo) = (f32x4_splat(EXP_HI), f32x4_splat(EXP_LO));
            let xc = f32x4_pmax(f32x4_pmin(x, hi), lo);
            let n = f32x4_nearest(f32x4_mul(xc, f32x4_splat(LOG2E)));
            let r = f32x4_sub(f32x4_sub(xc, f32x4_mul(n, f32x4_splat(C1))), f32x4_mul(n, f32x4_splat(C2)));
            let mut p = f32x4_splat(P[0]);
            p = f32x4_add(f32x4_mul(p, r), f32x4_splat(P[1]));
            p = f32x4_add(f32x4_mul(p, r), f32x4_splat(P[2]));
            p = f32x4_add(f32x4_mul(p, r), f32x4_splat(P[3]));
            p = f32x4_add(f32x4_mul(p, r), f32x4_splat(P[4]));
            p = f32x4_add(f32x4_mul(p, r), f32x4_splat(P[5]));
            let y = f32x4_add(f32x4_add(f32x4_mul(p, f32x4_mul(r, r)), r), f32x4_splat(1.0));
            let ni = i32x4_trunc_sat_f32x4(n);
            let n1 = i32x4_shr(ni, 1);
            let n2 = i32x4_sub(ni, n1);
            let bias = i32x4_splat(127);
            let y = f32x4_mul(f32x4_mul(y, i32x4_shl(i32x4_add(n1, bias), 23)), i32x4_shl(i32x4_add(n2, bias), 23));
            let y = v128_bitselect(f32x4_splat(f32::INFINITY), y, f32x4_gt(x, hi));
            v128_bitselect(f32x4_splat(0.0), y, f32x4_lt(x, lo))
        }};
    }

    /// `out[i..i+4] = f(x[i..i+4])` over the whole vectors: one loop per op, no dispatch inside.
    macro_rules! map4 {
        ($x:ident, $out:ident, $whole:ident, |$v:ident| $body:expr) => {
            for i in (0..$whole).step_by(4) {
                let $v = v128_load($x.as_ptr().add(i) as *const v128);
                v128_store($out.as_mut_ptr().add(i) as *mut v128, $body);
            }
        };
    }

    #[target_feature(enable = "simd128")]
    pub(super) unsafe fn unary(op: Op, x: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; x.len()];
        let whole = x.len() / 4 * 4;
        let one = f32x4_splat(1.0);
        match op {
            Op::Exp => map4!(x, out, whole, |v| exp4!(v)),
            Op::Sigmoid => map4!(x, out, whole, |v| f32x4_div(one, f32x4_add(one, exp4!(f32x4_neg(v))))),
            Op::Silu => map4!(x, out, whole, |v| f32x4_mul(v, f32x4_div(one, f32x4_add(one, exp4!(f32x4_neg(v)))))),
            // e^−|x| here; min(x, 0) − ln_1p(·) per element below.
            Op::LogSigmoid => map4!(x, out, whole, |v| exp4!(f32x4_neg(f32x4_abs(v)))),
        }
        for i in whole..x.len() {
            out[i] = op.scalar(x[i]);
        }
        if op == Op::LogSigmoid {
            for (o, &v) in out[..whole].iter_mut().zip(x) {
                *o = log_sigmoid_tail(v, *o);
            }
        }
        out
    }

    /// Lanes of a row sum: the whole vectors, then the tail elements into lane i mod 4.
    #[target_feature(enable = "simd128")]
    fn finish_sum(acc: v128, tail: &[f32], whole: usize) -> f32 {
        let mut l = [f32x4_extract_lane::<0>(acc), f32x4_extract_lane::<1>(acc), f32x4_extract_lane::<2>(acc), f32x4_extract_lane::<3>(acc)];
        for (j, &v) in tail.iter().enumerate() {
            l[(whole + j) % 4] += v;
        }
        (l[0] + l[1]) + (l[2] + l[3])
    }

    #[target_feature(enable = "simd128")]
    pub(super) unsafe fn softmax_rows(x: &[f32], d: usize) -> Vec<f32> {
        let mut out = vec![0f32; x.len()];
        let whole = d / 4 * 4;
        for (row, o) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
            let (rp, op) = (row.as_ptr(), o.as_mut_ptr());
            let mut mv = f32x4_splat(f32::NEG_INFINITY);
            for i in (0..whole).step_by(4) {
                mv = f32x4_pmax(mv, v128_load(rp.add(i) as *const v128));
            }
            let mut m = f32::NEG_INFINITY;
            for v in [f32x4_extract_lane::<0>(mv), f32x4_extract_lane::<1>(mv), f32x4_extract_lane::<2>(mv), f32x4_extract_lane::<3>(mv)] {
                m = if m < v { v } else { m };
            }
            for &v in &row[whole..] {
                m = if m < v { v } else { m };
            }
            let ms = f32x4_splat(m);
            let mut acc = f32x4_splat(0.0);
            for i in (0..whole).step_by(4) {
                let e = exp4!(f32x4_sub(v128_load(rp.add(i) as *const v128), ms));
                v128_store(op.add(i) as *mut v128, e);
                acc = f32x4_add(acc, e);
            }
            for i in whole..d {
                o[i] = super::exp_scalar(row[i] - m);
            }
            let s = finish_sum(acc, &o[whole..], whole);
            let sv = f32x4_splat(s);
            for i in (0..whole).step_by(4) {
                v128_store(op.add(i) as *mut v128, f32x4_div(v128_load(op.add(i) as *const v128), sv));
            }
            for e in &mut o[whole..] {
                *e /= s;
            }
        }
        out
    }

    #[target_feature(enable = "simd128")]
    pub(super) unsafe fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
        let d = w.len();
        let mut out = vec![0f32; x.len()];
        let whole = d / 4 * 4;
        let wp = w.as_ptr();
        let mut sq = vec![0f32; d - whole];
        for (row, o) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
            let (rp, op) = (row.as_ptr(), o.as_mut_ptr());
            let mut acc = f32x4_splat(0.0);
            for i in (0..whole).step_by(4) {
                let v = v128_load(rp.add(i) as *const v128);
                acc = f32x4_add(acc, f32x4_mul(v, v));
            }
            for (s, &v) in sq.iter_mut().zip(&row[whole..]) {
                *s = v * v;
            }
            let inv = 1.0 / (finish_sum(acc, &sq, whole) / d as f32 + eps).sqrt();
            let iv = f32x4_splat(inv);
            for i in (0..whole).step_by(4) {
                let y = f32x4_mul(f32x4_mul(v128_load(rp.add(i) as *const v128), iv), v128_load(wp.add(i) as *const v128));
                v128_store(op.add(i) as *mut v128, y);
            }
            for i in whole..d {
                o[i] = (row[i] * inv) * w[i];
            }
        }
        out
    }
}

/// Checks shared by the native unit tests (the twins) and the wasm tests (SIMD128 under Node and
/// in Chromium): against float64 and, in wasm, the kernels against the twins bit for bit.
pub mod suite {
    use super::{exp_scalar, rms_norm_rows, softmax_rows, unary, Op, EXP_HI, EXP_LO};
    use crate::rng::SplitMix64;

    /// Lengths around the 4-lane width and past it.
    pub const LENGTHS: [usize; 9] = [1, 2, 3, 4, 5, 7, 13, 67, 129];
    /// exp's largest error relative to float64 over normal results (one f32 ulp is 6e-8 to
    /// 1.2e-7 of a value); measured 7.7e-8 on the sweep of [`accuracy`].
    pub const EXP_REL: f64 = 1.5e-7;

    fn special() -> Vec<f32> {
        vec![
            0.0, -0.0, 1.0, -1.0, 0.5, 1e-8, -1e-8, 10.0, -10.0, 20.0, -20.0, 80.0, -80.0, EXP_HI, EXP_LO, 88.8, -87.4, 100.0,
            -100.0, 1e30, -1e30, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, f32::MAX, f32::MIN, f32::MIN_POSITIVE,
        ]
    }

    fn same_bits(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
    }

    /// exp against float64 on a dense sweep of its range and the edges; the ops against their
    /// float64 definitions; the row ops against float64 at awkward lengths. Returns the worst exp
    /// error seen, in units of [`EXP_REL`].
    pub fn accuracy() -> Result<f64, String> {
        let mut worst = 0f64;
        let steps = 200_000;
        for i in 0..=steps {
            let t = i as f64 / steps as f64;
            let x = ((EXP_LO as f64 + (EXP_HI as f64 - EXP_LO as f64) * t) as f32).clamp(EXP_LO, EXP_HI);
            let (got, want) = (exp_scalar(x) as f64, (x as f64).exp());
            if want < f32::MIN_POSITIVE as f64 {
                continue;
            }
            let rel = ((got - want) / want).abs();
            if !(rel <= EXP_REL) {
                return Err(format!("exp({x}) = {got}, float64 {want}: relative error {rel:e}"));
            }
            worst = worst.max(rel / EXP_REL);
        }
        let edge = |x: f32, want: f32| {
            let got = exp_scalar(x);
            if got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()) {
                Ok(())
            } else {
                Err(format!("exp({x}) = {got}, want {want}"))
            }
        };
        edge(0.0, 1.0)?;
        edge(-0.0, 1.0)?;
        edge(f32::INFINITY, f32::INFINITY)?;
        edge(100.0, f32::INFINITY)?;
        edge(f32::NEG_INFINITY, 0.0)?;
        edge(-100.0, 0.0)?;
        edge(f32::NAN, f32::NAN)?;
        for x in special() {
            if x.is_nan() {
                continue;
            }
            let xd = x as f64;
            let sig = 1.0 / (1.0 + (-xd).exp());
            let checks = [(Op::Sigmoid, sig), (Op::Silu, xd * sig), (Op::LogSigmoid, xd.min(0.0) - (-xd.abs()).exp().ln_1p())];
            for (op, want) in checks {
                let got = op.scalar(x) as f64;
                let ok = match (want.is_nan(), want.is_finite()) {
                    (true, _) => got.is_nan(),
                    (_, true) => (got - want).abs() <= 1e-6 * want.abs() + 1e-37,
                    _ => got == want,
                };
                if !ok {
                    return Err(format!("{op:?}({x}) = {got}, float64 {want}"));
                }
            }
        }
        let mut rng = SplitMix64::new(3);
        for &d in &LENGTHS {
            let x = rng.vec_f32(3 * d, -30.0, 30.0);
            let w = rng.vec_f32(d, 0.5, 1.5);
            let sm = softmax_rows(&x, d, false);
            let rn = rms_norm_rows(&x, &w, 1e-6, false);
            for (r, row) in x.chunks_exact(d).enumerate() {
                let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
                let s: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
                let ms: f64 = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / d as f64;
                for (i, &v) in row.iter().enumerate() {
                    let (ws, wr) = ((v as f64 - m).exp() / s, v as f64 / (ms + 1e-6).sqrt() * w[i] as f64);
                    let (gs, gr) = (sm[r * d + i] as f64, rn[r * d + i] as f64);
                    if (gs - ws).abs() > 1e-6 * ws.max(1e-30) + 1e-12 || (gr - wr).abs() > 2e-6 * wr.abs().max(1.0) {
                        return Err(format!("row {r} of {d}, element {i}: softmax {gs} vs {ws}, rms_norm {gr} vs {wr}"));
                    }
                }
            }
        }
        Ok(worst)
    }

    /// The SIMD128 kernels give the twins' bits at every length, on random and special values
    /// (NaN, ±∞, ±0, overflow, underflow), rows included. Natively both sides are the twin.
    pub fn twins_agree(seed: u64) -> Result<usize, String> {
        let mut rng = SplitMix64::new(seed);
        let mut n = 0;
        for &len in LENGTHS.iter().chain(&[1000, 4099]) {
            let mut x = rng.vec_f32(len, -100.0, 100.0);
            for (slot, v) in x.iter_mut().zip(special()).step_by(3) {
                *slot = v;
            }
            for op in Op::ALL {
                if !same_bits(&unary(op, &x, true), &unary(op, &x, false)) {
                    return Err(format!("{op:?} at length {len}: the SIMD128 kernel and the twin differ"));
                }
                n += 1;
            }
            let w = rng.vec_f32(len, -2.0, 2.0);
            let x2 = [x.clone(), rng.vec_f32(len, -5.0, 5.0)].concat();
            if !same_bits(&softmax_rows(&x2, len, true), &softmax_rows(&x2, len, false)) {
                return Err(format!("softmax rows of {len}: the SIMD128 kernel and the twin differ"));
            }
            if !same_bits(&rms_norm_rows(&x2, &w, 1e-5, true), &rms_norm_rows(&x2, &w, 1e-5, false)) {
                return Err(format!("rms_norm rows of {len}: the SIMD128 kernel and the twin differ"));
            }
            n += 2;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twins_match_float64() {
        let worst = suite::accuracy().unwrap();
        assert!(worst > 0.0 && worst <= 1.0, "{worst}");
    }

    // `suite::twins_agree` (SIMD128 against the twins) runs in the wasm tests: natively both sides are the twin.

    #[test]
    fn golden_values() {
        // Hand-checked: e^1 and e^-1 to the nearest f32 (one ulp allowed), sigmoid(0) = 1/2 exactly,
        // silu(0) = 0, softmax of equal values is uniform, RMSNorm of (3, 4) is (3, 4)/sqrt(12.5).
        assert!((exp_scalar(1.0) - std::f32::consts::E).abs() <= f32::EPSILON * 3.0);
        assert!((exp_scalar(-1.0) - 0.367_879_44).abs() <= 3e-8);
        assert_eq!(Op::Sigmoid.scalar(0.0), 0.5);
        assert_eq!(Op::Silu.scalar(0.0), 0.0);
        assert_eq!(softmax_rows(&[2.0; 5], 5, false), vec![0.2; 5]);
        let y = rms_norm_rows(&[3.0, 4.0], &[1.0, 2.0], 0.0, false);
        let s = 12.5f32.sqrt();
        assert!((y[0] - 3.0 / s).abs() < 1e-6 && (y[1] - 8.0 / s).abs() < 1e-6, "{y:?}");
        // A causal mask row: −∞ entries get exactly 0.
        assert_eq!(softmax_rows(&[0.0, f32::NEG_INFINITY], 2, false), vec![1.0, 0.0]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn softmax_rows_sum_to_one(d in 1usize..70, rows in 1usize..4, seed: u64) {
            let x = crate::rng::SplitMix64::new(seed).vec_f32(d * rows, -50.0, 50.0);
            for row in softmax_rows(&x, d, false).chunks_exact(d) {
                let s: f32 = row.iter().sum();
                proptest::prop_assert!((s - 1.0).abs() < 1e-5 && row.iter().all(|&p| (0.0..=1.0).contains(&p)), "{row:?}");
            }
        }
    }
}
