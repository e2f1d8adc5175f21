//! Low-rank factorisations of a linear layer `W` `[out, in]` into `W2 · W1` with `W2` `[out, r]`
//! and `W1` `[r, in]`, so that `y ≈ W2 (W1 x) (+ b)` (SFSD, specs/methods.md §2).
//!
//! - Weight space (§2.2, the baseline): the truncated SVD `W ≈ U_r Σ_r V_rᵀ`, split as the
//!   reference's `DecomposeLinearSVD` does: `W2 = U_r`, `W1 = Σ_r V_rᵀ`. No data, no bias.
//! - Feature space (§2.3, the method): the top-r eigenvectors `V_r` of the covariance of the
//!   layer's *outputs* on calibration data, `W2 = V_r`, `W1 = V_rᵀ W`, and the mean-correction bias
//!   `b = (I − V_r V_rᵀ) μ`, so `ŷ = V_r V_rᵀ (y − μ) + μ` on the calibration distribution.
//!
//! In both the left factor has orthonormal columns. Linear algebra runs in f64 through `faer`
//! (thin SVD, symmetric eigendecomposition); the factors are returned in f32. Signs are fixed so
//! results are deterministic: each left singular vector / eigenvector has its largest-magnitude
//! entry positive (the first such entry on a tie), as §2.9 asks for stored bases.

use super::{check_fraction, check_matrix, Footprint};
use crate::error::{Error, Result};
use faer::{Mat, Side};

/// The break-even rank `κ = ⌊in·out / (in + out)⌋` (§2.3 step 7): below it the two factors
/// (`r·(in + out)` parameters) are smaller than `W`.
pub fn break_even_rank(out: usize, inp: usize) -> usize {
    let (o, i) = (out as u128, inp as u128);
    (o * i).checked_div(o + i).unwrap_or(0) as usize
}

/// The rank of a budget fraction `ρ ∈ [0, 1]`: `r = ⌊κ·ρ⌋`, with the same f64 product as the
/// reference's `int(κ·ρ)`.
pub fn budget_rank(out: usize, inp: usize, rho: f64) -> Result<usize> {
    check_fraction("budget_rank", "rank budget ρ", rho)?;
    Ok((break_even_rank(out, inp) as f64 * rho).floor() as usize)
}

/// Parameters of a rank-r factorisation of an `[out, in]` layer: `r·(in + out)` (bias not included).
pub fn factor_params(out: usize, inp: usize, r: usize) -> usize {
    r * (inp + out)
}

/// A rank-r replacement of one linear layer: `ŷ = W2 (W1 x) + b`.
#[derive(Clone, Debug, PartialEq)]
pub struct LowRank {
    /// `[out, r]`.
    pub w2: Vec<f32>,
    /// `[r, in]`.
    pub w1: Vec<f32>,
    /// `[out]`, the feature-space mean correction (and the layer's own bias, if it had one).
    pub bias: Option<Vec<f32>>,
    pub out: usize,
    pub inp: usize,
    pub r: usize,
}

impl LowRank {
    /// Check the field lengths agree with the shape (the fields are public).
    pub fn validate(&self) -> Result<()> {
        let bias_ok = self.bias.as_ref().is_none_or(|b| b.len() == self.out);
        if Some(self.w2.len()) != self.out.checked_mul(self.r) || Some(self.w1.len()) != self.r.checked_mul(self.inp) || !bias_ok {
            return Err(Error::Invalid(format!(
                "low rank: factors of {} and {} values (bias {:?}) do not fit [{}, {}] at rank {}",
                self.w2.len(),
                self.w1.len(),
                self.bias.as_ref().map(Vec::len),
                self.out,
                self.inp,
                self.r
            )));
        }
        Ok(())
    }

    /// `W2 · W1` `[out, in]`, accumulated in f64 (the bias is not part of it).
    pub fn reconstruct(&self) -> Result<Vec<f32>> {
        self.validate()?;
        let mut w = vec![0.0f32; self.out * self.inp];
        for o in 0..self.out {
            for i in 0..self.inp {
                w[o * self.inp + i] = (0..self.r).map(|k| self.w2[o * self.r + k] as f64 * self.w1[k * self.inp + i] as f64).sum::<f64>() as f32;
            }
        }
        Ok(w)
    }
}

impl Footprint for LowRank {
    fn bytes(&self) -> usize {
        4 * (self.w2.len() + self.w1.len() + self.bias.as_ref().map_or(0, Vec::len))
    }
    fn weights(&self) -> usize {
        self.out * self.inp
    }
}

/// Flip column `j` of the `[rows, cols]` row-major `u` (and whatever `flip` also negates) so that
/// its largest-magnitude entry is positive.
fn fix_sign(u: &mut [f64], rows: usize, cols: usize, j: usize, flip: impl FnOnce()) {
    let mut best = 0;
    for i in 1..rows {
        if u[i * cols + j].abs() > u[best * cols + j].abs() {
            best = i;
        }
    }
    if u[best * cols + j] < 0.0 {
        for i in 0..rows {
            u[i * cols + j] = -u[i * cols + j];
        }
        flip();
    }
}

/// The thin SVD `W = U Σ Vᵀ` of an `[out, in]` matrix, in f64, with `k = min(out, in)` triplets,
/// singular values descending.
#[derive(Clone, Debug, PartialEq)]
pub struct Svd {
    /// `[out, k]` row-major, orthonormal columns.
    pub u: Vec<f64>,
    /// `[k]`, descending, non-negative.
    pub s: Vec<f64>,
    /// `[k, in]` row-major, orthonormal rows.
    pub vt: Vec<f64>,
    pub out: usize,
    pub inp: usize,
}

/// Thin SVD of `w` `[out, in]` in f64.
pub fn svd(w: &[f32], out: usize, inp: usize) -> Result<Svd> {
    check_matrix("svd", w, out, inp)?;
    let m = Mat::<f64>::from_fn(out, inp, |i, j| w[i * inp + j] as f64);
    let d = m.thin_svd().map_err(|e| Error::Invalid(format!("svd of a [{out}, {inp}] matrix failed: {e:?}")))?;
    let k = out.min(inp);
    let (u_m, v_m, s_c) = (d.U(), d.V(), d.S().column_vector());
    let mut u: Vec<f64> = (0..out * k).map(|x| u_m[(x / k, x % k)]).collect();
    let mut vt: Vec<f64> = (0..k * inp).map(|x| v_m[(x % inp, x / inp)]).collect();
    let s: Vec<f64> = (0..k).map(|j| s_c[j]).collect();
    for j in 0..k {
        let row = &mut vt[j * inp..(j + 1) * inp];
        fix_sign(&mut u, out, k, j, || row.iter_mut().for_each(|x| *x = -*x));
    }
    Ok(Svd { u, s, vt, out, inp })
}

impl Svd {
    /// The rank-r truncation as §2.2's factors: `W2 = U_r` `[out, r]`, `W1 = Σ_r V_rᵀ` `[r, in]`.
    pub fn factors(&self, r: usize) -> Result<LowRank> {
        let k = self.out.min(self.inp);
        if self.s.len() != k || Some(self.u.len()) != self.out.checked_mul(k) || Some(self.vt.len()) != k.checked_mul(self.inp) {
            let (u, s, vt) = (self.u.len(), self.s.len(), self.vt.len());
            return Err(Error::Invalid(format!("svd: u, s, vt of {u}, {s}, {vt} values do not fit [{}, {}]", self.out, self.inp)));
        }
        if r > k {
            return Err(Error::Invalid(format!("low rank: rank {r} exceeds min(out, in) = {k} of a [{}, {}] matrix", self.out, self.inp)));
        }
        let w2 = (0..self.out * r).map(|x| self.u[(x / r) * k + x % r] as f32).collect();
        let w1 = (0..r * self.inp).map(|x| (self.s[x / self.inp] * self.vt[x]) as f32).collect();
        Ok(LowRank { w2, w1, bias: None, out: self.out, inp: self.inp, r })
    }

    /// `Σ_{i ≥ r} σ_i²`: the squared Frobenius error of the rank-r truncation (Eckart–Young).
    pub fn discarded_energy(&self, r: usize) -> f64 {
        self.s.iter().skip(r).map(|s| s * s).sum()
    }

    /// §2.2's automatic rank "auto:p": the smallest r whose cumulative sum of singular values (not
    /// squared) reaches `p ×` their total (0 for p = 0 or a zero matrix).
    pub fn auto_rank(&self, p: f64) -> Result<usize> {
        check_fraction("auto_rank", "p", p)?;
        let total: f64 = self.s.iter().sum();
        let mut acc = 0.0;
        for (r, s) in self.s.iter().enumerate() {
            if acc >= p * total {
                return Ok(r);
            }
            acc += s;
        }
        Ok(self.s.len())
    }
}

/// Weight-space decomposition (§2.2): the rank-r truncated SVD of `w` `[out, in]`.
pub fn truncated_svd(w: &[f32], out: usize, inp: usize, r: usize) -> Result<LowRank> {
    if r > out.min(inp) {
        return Err(Error::Invalid(format!("low rank: rank {r} exceeds min(out, in) = {} of a [{out}, {inp}] matrix", out.min(inp))));
    }
    svd(w, out, inp)?.factors(r)
}

/// Streaming statistics of a layer's outputs on calibration data (§2.9): the row count N, `Σ y`
/// and `Σ y yᵀ` in f64, so Y `[N, out]` never has to be stored.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputStats {
    out: usize,
    n: u64,
    /// `[out]`.
    sum: Vec<f64>,
    /// `[out, out]` row-major; only the lower triangle (`i >= j`) is accumulated.
    sum_outer: Vec<f64>,
}

impl OutputStats {
    pub fn new(out: usize) -> Result<Self> {
        if out == 0 {
            return Err(Error::Invalid("output statistics: a layer with zero outputs".into()));
        }
        let len = out.checked_mul(out).ok_or_else(|| Error::Invalid(format!("output statistics: {out} outputs is too many")))?;
        Ok(Self { out, n: 0, sum: vec![0.0; out], sum_outer: vec![0.0; len] })
    }

    fn add_row(&mut self, y: &[f64]) {
        let d = self.out;
        for i in 0..d {
            self.sum[i] += y[i];
            let row = &mut self.sum_outer[i * d..i * d + i + 1];
            for (acc, &yj) in row.iter_mut().zip(&y[..=i]) {
                *acc += y[i] * yj;
            }
        }
        self.n += 1;
    }

    /// Add `rows` output rows y `[rows, out]` (the layer's outputs without its bias).
    pub fn add_outputs(&mut self, y: &[f32], rows: usize) -> Result<()> {
        check_matrix("output statistics", y, rows, self.out)?;
        let mut buf = vec![0.0f64; self.out];
        for row in y.chunks_exact(self.out) {
            buf.iter_mut().zip(row).for_each(|(b, &v)| *b = v as f64);
            self.add_row(&buf);
        }
        Ok(())
    }

    /// Add the outputs `y = x Wᵀ` (no bias, §2.3 step 1) of calibration inputs x `[rows, in]` through
    /// `w` `[out, in]`; the products are formed in f64.
    pub fn add_inputs(&mut self, x: &[f32], rows: usize, w: &[f32], inp: usize) -> Result<()> {
        check_matrix("output statistics (weight)", w, self.out, inp)?;
        check_matrix("output statistics (inputs)", x, rows, inp)?;
        let mut buf = vec![0.0f64; self.out];
        for xr in x.chunks_exact(inp) {
            for (b, wr) in buf.iter_mut().zip(w.chunks_exact(inp)) {
                *b = xr.iter().zip(wr).map(|(&a, &c)| a as f64 * c as f64).sum();
            }
            self.add_row(&buf);
        }
        Ok(())
    }

    /// Output features of the layer.
    pub fn out(&self) -> usize {
        self.out
    }

    /// Rows N added so far.
    pub fn rows(&self) -> u64 {
        self.n
    }

    /// μ `[out]`, the mean output row.
    pub fn mean(&self) -> Vec<f64> {
        self.sum.iter().map(|s| s / self.n.max(1) as f64).collect()
    }

    /// `C = (Σ y yᵀ − N μ μᵀ) / (N − 1)` `[out, out]` (§2.3 step 2, the unbiased covariance).
    pub fn covariance(&self) -> Result<Vec<f64>> {
        if self.n < 2 {
            return Err(Error::Invalid(format!("output covariance needs at least 2 rows, got {}", self.n)));
        }
        let (d, n) = (self.out, self.n as f64);
        let mu = self.mean();
        let mut c = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..=i {
                let v = (self.sum_outer[i * d + j] - n * mu[i] * mu[j]) / (n - 1.0);
                c[i * d + j] = v;
                c[j * d + i] = v;
            }
        }
        Ok(c)
    }
}

/// The principal directions of a layer's outputs: the full eigenbasis of their covariance, computed
/// once; any rank is a slice of its columns (§2.3 step 8).
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureBasis {
    pub out: usize,
    /// `[out]`, descending.
    pub eigenvalues: Vec<f64>,
    /// `[out, out]` row-major; column j is the eigenvector of `eigenvalues[j]`.
    pub vectors: Vec<f64>,
    /// μ `[out]`.
    pub mean: Vec<f64>,
}

/// Eigendecomposition of the output covariance (symmetric, f64), eigenvalues sorted descending.
pub fn feature_basis(stats: &OutputStats) -> Result<FeatureBasis> {
    let d = stats.out;
    let c = stats.covariance()?;
    let m = Mat::<f64>::from_fn(d, d, |i, j| c[i * d + j]);
    let e = m.self_adjoint_eigen(Side::Lower).map_err(|e| Error::Invalid(format!("eigendecomposition of the [{d}, {d}] output covariance failed: {e:?}")))?;
    let (u, s) = (e.U(), e.S().column_vector());
    // faer sorts ascending: reverse to descending.
    let eigenvalues: Vec<f64> = (0..d).map(|j| s[d - 1 - j]).collect();
    let mut vectors: Vec<f64> = (0..d * d).map(|x| u[(x / d, d - 1 - x % d)]).collect();
    for j in 0..d {
        fix_sign(&mut vectors, d, d, j, || ());
    }
    Ok(FeatureBasis { out: d, eigenvalues, vectors, mean: stats.mean() })
}

impl FeatureBasis {
    /// The rank-r feature-space factors of `w` `[out, in]` (§2.3 step 4): `W2 = V_r`, `W1 = V_rᵀ W`.
    /// With `mean_correction` (the config's default `true`) the bias is `(I − V_r V_rᵀ) μ`; `false`
    /// reproduces the reference code, whose bias is zero. A layer's own bias `b0` `[out]` is added to
    /// the bias unchanged (step 6: μ was computed without it).
    pub fn factors(&self, w: &[f32], inp: usize, r: usize, b0: Option<&[f32]>, mean_correction: bool) -> Result<LowRank> {
        let d = self.out;
        if self.eigenvalues.len() != d || self.mean.len() != d || Some(self.vectors.len()) != d.checked_mul(d) {
            let (e, v, m) = (self.eigenvalues.len(), self.vectors.len(), self.mean.len());
            return Err(Error::Invalid(format!("feature basis: {e} eigenvalues, {v} vector entries, {m} means do not fit {d} outputs")));
        }
        check_matrix("feature-space factors", w, d, inp)?;
        if r > d {
            return Err(Error::Invalid(format!("feature space: rank {r} exceeds the {d} outputs of the layer")));
        }
        if let Some(b) = b0 {
            if b.len() != d || b.iter().any(|x| !x.is_finite()) {
                return Err(Error::Invalid(format!("feature space: the layer bias must be {d} finite values, got {}", b.len())));
            }
        }
        let v = |i: usize, k: usize| self.vectors[i * d + k];
        let w2: Vec<f32> = (0..d * r).map(|x| v(x / r, x % r) as f32).collect();
        let mut w1 = vec![0.0f64; r * inp];
        for k in 0..r {
            let row = &mut w1[k * inp..(k + 1) * inp];
            for (o, wr) in w.chunks_exact(inp).enumerate() {
                let vo = v(o, k);
                row.iter_mut().zip(wr).for_each(|(acc, &x)| *acc += vo * x as f64);
            }
        }
        let bias = if mean_correction || b0.is_some() {
            let mut b = vec![0.0f64; d];
            if mean_correction {
                // (I − V_r V_rᵀ) μ = μ − V_r (V_rᵀ μ)
                let proj: Vec<f64> = (0..r).map(|k| (0..d).map(|o| v(o, k) * self.mean[o]).sum()).collect();
                for (o, bo) in b.iter_mut().enumerate() {
                    *bo = self.mean[o] - (0..r).map(|k| v(o, k) * proj[k]).sum::<f64>();
                }
            }
            if let Some(b0) = b0 {
                b.iter_mut().zip(b0).for_each(|(a, &x)| *a += x as f64);
            }
            Some(b.into_iter().map(|x| x as f32).collect())
        } else {
            None
        };
        Ok(LowRank { w2, w1: w1.into_iter().map(|x| x as f32).collect(), bias, out: d, inp, r })
    }
}

/// Feature-space decomposition (§2.3) of `w` `[out, in]` from calibration inputs x `[rows, in]`
/// in one call (no layer bias): statistics, eigenbasis, rank-r factors.
pub fn feature_space(x: &[f32], rows: usize, w: &[f32], out: usize, inp: usize, r: usize, mean_correction: bool) -> Result<LowRank> {
    let mut stats = OutputStats::new(out)?;
    stats.add_inputs(x, rows, w, inp)?;
    feature_basis(&stats)?.factors(w, inp, r, None, mean_correction)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::matrix;
    use super::*;

    fn invalid(r: Result<impl std::fmt::Debug>, needle: &str) {
        match r {
            Err(Error::Invalid(m)) => assert!(m.contains(needle), "message {m:?} lacks {needle:?}"),
            other => panic!("expected Error::Invalid containing {needle:?}, got {other:?}"),
        }
    }

    fn frob2(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum()
    }

    /// `a` `[m, k]` · `b` `[k, n]` in f64.
    fn matmul(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|t| a[i * k + t] * b[t * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn rank_rule() {
        assert_eq!(break_even_rank(4096, 4096), 2048);
        assert_eq!(break_even_rank(11008, 4096), 2985); // 45088768 / 15104 = 2985.2
        assert_eq!(break_even_rank(3, 5), 1); // 15 / 8
        assert_eq!(break_even_rank(1, 1), 0);
        assert_eq!(budget_rank(4096, 4096, 0.5).unwrap(), 1024);
        assert_eq!(budget_rank(11008, 4096, 0.1).unwrap(), 298); // 298.5 truncates
        assert_eq!(budget_rank(11008, 4096, 1.0).unwrap(), 2985);
        assert_eq!(budget_rank(200, 200, 0.29).unwrap(), 28); // κ = 100; 100 · 0.29 = 28.999999999999996 in f64, as Python's int()
        assert_eq!(factor_params(5, 3, 1), 8);
        invalid(budget_rank(4, 4, 1.5), "ρ");
        invalid(budget_rank(4, 4, -0.1), "ρ");
    }

    #[test]
    fn svd_by_hand() {
        // [[3, 1], [1, 3]]: σ = 4, 2; u1 = v1 = [1, 1]/√2, u2 = ±[1, −1]/√2.
        let w = [3.0, 1.0, 1.0, 3.0];
        let d = svd(&w, 2, 2).unwrap();
        assert!((d.s[0] - 4.0).abs() < 1e-12 && (d.s[1] - 2.0).abs() < 1e-12);
        let h = std::f64::consts::FRAC_1_SQRT_2;
        assert!((d.u[0] - h).abs() < 1e-12 && (d.u[2] - h).abs() < 1e-12);
        let f = d.factors(1).unwrap();
        let (h, hh) = (h as f32, (4.0 * h) as f32);
        assert!(f.w2.iter().zip([h, h]).all(|(a, b)| (a - b).abs() < 1e-6), "{:?}", f.w2);
        assert!(f.w1.iter().zip([hh, hh]).all(|(a, b)| (a - b).abs() < 1e-6), "{:?}", f.w1);
        assert!(f.reconstruct().unwrap().iter().all(|x| (x - 2.0).abs() < 1e-6)); // 4 · [1,1][1,1]ᵀ / 2
        assert!((frob2(&w, &f.reconstruct().unwrap()) - 4.0).abs() < 1e-5);
        // A rank-1 matrix [2, 1]ᵀ[1, 1]: σ = √10, 0.
        let d = svd(&[2.0, 2.0, 1.0, 1.0], 2, 2).unwrap();
        assert!((d.s[0] - 10f64.sqrt()).abs() < 1e-12 && d.s[1].abs() < 1e-12);
        assert_eq!(d.auto_rank(0.99).unwrap(), 1);
    }

    #[test]
    fn svd_error_is_the_discarded_energy() {
        for (out, inp) in [(7, 13), (13, 7), (16, 16), (1, 5)] {
            let w = matrix((out * 31 + inp) as u64, out, inp);
            let d = svd(&w, out, inp).unwrap();
            let k = out.min(inp);
            assert!(d.s.windows(2).all(|p| p[0] >= p[1]) && d.s.iter().all(|&s| s >= 0.0));
            // Orthonormal columns of U and rows of Vᵀ.
            let utu = matmul(&transpose(&d.u, out, k), &d.u, k, out, k);
            let vvt = matmul(&d.vt, &transpose(&d.vt, k, inp), k, inp, k);
            for i in 0..k * k {
                let id = if i / k == i % k { 1.0 } else { 0.0 };
                assert!((utu[i] - id).abs() < 1e-12 && (vvt[i] - id).abs() < 1e-12);
            }
            let wf: Vec<f64> = w.iter().map(|&x| x as f64).collect();
            for r in 0..=k {
                // f64 reconstruction from the SVD itself: relative 1e-6.
                let us: Vec<f64> = (0..out * r).map(|x| d.u[(x / r) * k + x % r] * d.s[x % r]).collect();
                let rec = matmul(&us, &d.vt[..r * inp], out, r, inp);
                let err: f64 = wf.iter().zip(&rec).map(|(a, b)| (a - b).powi(2)).sum();
                let disc = d.discarded_energy(r);
                assert!((err - disc).abs() <= 1e-6 * disc + 1e-12, "[{out}, {inp}] r {r}: {err} vs {disc}");
                // f32 factors: relative 1e-4.
                let f = truncated_svd(&w, out, inp, r).unwrap();
                assert_eq!((f.w2.len(), f.w1.len()), (out * r, r * inp));
                let err32 = frob2(&w, &f.reconstruct().unwrap());
                assert!((err32 - disc).abs() <= 1e-4 * disc + 1e-9, "[{out}, {inp}] r {r}: {err32} vs {disc}");
            }
            // Full rank reproduces W; rank 0 gives zeros.
            let full = truncated_svd(&w, out, inp, k).unwrap().reconstruct().unwrap();
            assert!(w.iter().zip(&full).all(|(a, b)| (a - b).abs() < 1e-5));
            let zero = truncated_svd(&w, out, inp, 0).unwrap();
            assert!(zero.reconstruct().unwrap().iter().all(|&x| x == 0.0) && zero.w1.is_empty() && zero.w2.is_empty());
        }
    }

    fn transpose(a: &[f64], m: usize, n: usize) -> Vec<f64> {
        (0..m * n).map(|x| a[(x % m) * n + x / m]).collect()
    }

    #[test]
    fn auto_rank_and_signs() {
        let w = matrix(21, 6, 9);
        let d = svd(&w, 6, 9).unwrap();
        assert_eq!(d.auto_rank(0.0).unwrap(), 0);
        assert_eq!(d.auto_rank(1.0).unwrap(), 6);
        let total: f64 = d.s.iter().sum();
        let r = d.auto_rank(0.5).unwrap();
        assert!(d.s[..r].iter().sum::<f64>() >= 0.5 * total && d.s[..r - 1].iter().sum::<f64>() < 0.5 * total);
        invalid(d.auto_rank(1.1), "p");
        // Deterministic signs: the largest-magnitude entry of every left vector is positive, and a
        // negated matrix gives the same U (its V flips instead).
        for j in 0..6 {
            let col: Vec<f64> = (0..6).map(|i| d.u[i * 6 + j]).collect();
            let big = col.iter().cloned().fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
            assert!(big > 0.0);
        }
        let neg: Vec<f32> = w.iter().map(|x| -x).collect();
        let dn = svd(&neg, 6, 9).unwrap();
        assert!(d.u.iter().zip(&dn.u).all(|(a, b)| (a - b).abs() < 1e-10));
        assert!(d.vt.iter().zip(&dn.vt).all(|(a, b)| (a + b).abs() < 1e-10));
    }

    /// Calibration inputs `[n, inp]` of rank `rank` plus an optional constant offset row.
    fn low_rank_inputs(seed: u64, n: usize, inp: usize, rank: usize) -> Vec<f32> {
        let a: Vec<f64> = matrix(seed, n, rank).iter().map(|&x| x as f64).collect();
        let b: Vec<f64> = matrix(seed + 1, rank, inp).iter().map(|&x| x as f64).collect();
        matmul(&a, &b, n, rank, inp).iter().map(|&x| x as f32).collect()
    }

    /// Largest |ŷ − y| over the calibration rows, relative to the largest |y|.
    fn output_error(f: &LowRank, w: &[f32], x: &[f32], n: usize) -> f64 {
        let (out, inp) = (f.out, f.inp);
        let what = f.reconstruct().unwrap();
        let (mut worst, mut scale) = (0.0f64, 0.0f64);
        for xr in x.chunks_exact(inp).take(n) {
            for o in 0..out {
                let y: f64 = (0..inp).map(|i| w[o * inp + i] as f64 * xr[i] as f64).sum();
                let b = f.bias.as_ref().map_or(0.0, |b| b[o] as f64);
                let yh: f64 = (0..inp).map(|i| what[o * inp + i] as f64 * xr[i] as f64).sum::<f64>() + b;
                worst = worst.max((y - yh).abs());
                scale = scale.max(y.abs());
            }
        }
        worst / scale
    }

    #[test]
    fn feature_space_is_exact_when_outputs_have_rank_r() {
        let (out, inp, n) = (12, 10, 40);
        let w = matrix(31, out, inp);
        for rank in [1, 3, 5] {
            let x = low_rank_inputs(40 + rank as u64, n, inp, rank);
            for mean_correction in [true, false] {
                let f = feature_space(&x, n, &w, out, inp, rank, mean_correction).unwrap();
                assert_eq!(f.bias.is_some(), mean_correction);
                let e = output_error(&f, &w, &x, n);
                assert!(e < 1e-5, "rank {rank}, mean correction {mean_correction}: relative error {e}");
                // Rank below the data's rank is not exact.
                if rank > 1 {
                    assert!(output_error(&feature_space(&x, n, &w, out, inp, rank - 1, mean_correction).unwrap(), &w, &x, n) > 1e-3);
                }
            }
        }
        // Outputs with a constant offset: centred rank r, uncentred rank r + 1. Only the mean-corrected
        // projection (the intended bias, §2.3 step 5) is exact at rank r.
        let rank = 3;
        let mut x = low_rank_inputs(50, n, inp, rank);
        let offset = matrix(999, 1, inp); // not a seed low_rank_inputs used: a direction outside its span
        x.chunks_exact_mut(inp).for_each(|r| r.iter_mut().zip(&offset).for_each(|(a, b)| *a += 2.0 * b));
        assert!(output_error(&feature_space(&x, n, &w, out, inp, rank, true).unwrap(), &w, &x, n) < 1e-5);
        let e = output_error(&feature_space(&x, n, &w, out, inp, rank, false).unwrap(), &w, &x, n);
        assert!(e > 1e-3, "{e}");
    }

    #[test]
    fn feature_basis_diagonalises_the_covariance() {
        let (out, inp, n) = (9, 7, 30);
        let w = matrix(61, out, inp);
        let x = matrix(62, n, inp);
        let mut stats = OutputStats::new(out).unwrap();
        // Two batches stream to the same statistics as one.
        stats.add_inputs(&x[..10 * inp], 10, &w, inp).unwrap();
        stats.add_inputs(&x[10 * inp..], n - 10, &w, inp).unwrap();
        let mut one = OutputStats::new(out).unwrap();
        one.add_inputs(&x, n, &w, inp).unwrap();
        assert_eq!(stats, one);
        // Y computed directly, its covariance with the (N − 1) denominator.
        let y: Vec<f64> = (0..n * out).map(|t| (0..inp).map(|i| x[(t / out) * inp + i] as f64 * w[(t % out) * inp + i] as f64).sum()).collect();
        let mu: Vec<f64> = (0..out).map(|o| (0..n).map(|t| y[t * out + o]).sum::<f64>() / n as f64).collect();
        let c = stats.covariance().unwrap();
        for i in 0..out {
            assert!((stats.mean()[i] - mu[i]).abs() < 1e-12);
            for j in 0..out {
                let cij: f64 = (0..n).map(|t| (y[t * out + i] - mu[i]) * (y[t * out + j] - mu[j])).sum::<f64>() / (n as f64 - 1.0);
                assert!((c[i * out + j] - cij).abs() < 1e-10);
            }
        }
        let b = feature_basis(&stats).unwrap();
        assert!(b.eigenvalues.windows(2).all(|p| p[0] >= p[1]));
        // C V = V Λ, VᵀV = I; rank(Y) <= inp = 7 < out = 9, so the last two eigenvalues are ~0.
        let cv = matmul(&c, &b.vectors, out, out, out);
        for i in 0..out {
            for j in 0..out {
                assert!((cv[i * out + j] - b.vectors[i * out + j] * b.eigenvalues[j]).abs() < 1e-10);
            }
        }
        let vtv = matmul(&transpose(&b.vectors, out, out), &b.vectors, out, out, out);
        assert!((0..out * out).all(|i| (vtv[i] - if i / out == i % out { 1.0 } else { 0.0 }).abs() < 1e-12));
        assert!(b.eigenvalues[7].abs() < 1e-10 * b.eigenvalues[0] && b.eigenvalues[6] > 1e-6);
        // Mean-corrected bias: ŷ on the mean input is exactly μ at any rank; a layer bias adds on top.
        let f = b.factors(&w, inp, 2, Some(&[0.5; 9]), true).unwrap();
        let xm: Vec<f64> = (0..inp).map(|i| (0..n).map(|t| x[t * inp + i] as f64).sum::<f64>() / n as f64).collect();
        let what = f.reconstruct().unwrap();
        for o in 0..out {
            let yh: f64 = (0..inp).map(|i| what[o * inp + i] as f64 * xm[i]).sum::<f64>() + f.bias.as_ref().unwrap()[o] as f64;
            assert!((yh - mu[o] - 0.5).abs() < 1e-5);
        }
        assert_eq!(f.bytes(), 4 * (9 * 2 + 2 * 7 + 9));
    }

    #[test]
    fn feature_space_beats_weight_svd_on_its_calibration_data() {
        // Centred PCA of Y is the best rank-r affine approximation of the outputs (Eckart–Young), so
        // it can only do better than the weight SVD on the data it was fitted to.
        let (out, inp, n) = (10, 16, 64);
        let w = matrix(71, out, inp);
        let x: Vec<f32> = matrix(72, n, inp).iter().enumerate().map(|(i, v)| v * (1.0 + (i % inp) as f32)).collect();
        let sq = |f: &LowRank| -> f64 {
            let what = f.reconstruct().unwrap();
            x.chunks_exact(inp)
                .map(|xr| {
                    (0..out)
                        .map(|o| {
                            let b = f.bias.as_ref().map_or(0.0, |b| b[o] as f64);
                            let d: f64 = (0..inp).map(|i| (w[o * inp + i] as f64 - what[o * inp + i] as f64) * xr[i] as f64).sum::<f64>() - b;
                            d * d
                        })
                        .sum::<f64>()
                })
                .sum()
        };
        for r in 1..out {
            let fs = sq(&feature_space(&x, n, &w, out, inp, r, true).unwrap());
            let ws = sq(&truncated_svd(&w, out, inp, r).unwrap());
            assert!(fs <= ws * (1.0 + 1e-6), "r {r}: feature space {fs} > weight space {ws}");
        }
    }

    #[test]
    fn bad_inputs_are_refused() {
        let w = matrix(0, 3, 4);
        invalid(svd(&w, 3, 5), "values");
        invalid(svd(&[], 0, 5), "zero dimension");
        invalid(svd(&[f32::NAN; 4], 2, 2), "non-finite");
        invalid(truncated_svd(&w, 3, 4, 4), "exceeds");
        invalid(svd(&w, 3, 4).unwrap().factors(4), "exceeds");
        invalid(OutputStats::new(0), "zero outputs");
        let mut s = OutputStats::new(3).unwrap();
        invalid(s.add_outputs(&[1.0; 5], 2), "values");
        invalid(s.add_inputs(&[1.0; 8], 2, &w, 5), "values");
        invalid(s.covariance(), "at least 2");
        s.add_outputs(&[1.0, 2.0, 3.0], 1).unwrap();
        invalid(feature_basis(&s), "at least 2");
        s.add_outputs(&[2.0, 2.0, 1.0], 1).unwrap();
        let b = feature_basis(&s).unwrap();
        invalid(b.factors(&w, 4, 4, None, true), "exceeds");
        invalid(b.factors(&w, 5, 1, None, true), "values");
        invalid(b.factors(&w, 4, 1, Some(&[0.0; 2]), true), "bias");
        invalid(feature_space(&[1.0; 4], 1, &w, 3, 4, 1, true), "at least 2");
        // Tampered structures are refused, not indexed out of bounds.
        let mut bad = b.clone();
        bad.mean.pop();
        invalid(bad.factors(&w, 4, 1, None, true), "do not fit");
        let mut d = svd(&w, 3, 4).unwrap();
        d.s.pop();
        invalid(d.factors(1), "do not fit");
        let mut f = truncated_svd(&w, 3, 4, 2).unwrap();
        f.w1.pop();
        invalid(f.reconstruct(), "do not fit");
    }
}
