//! Pruning masks: which weights of an `[out, in]` matrix to zero.
//!
//! Every method scores the weights and zeros the lowest scores in its comparison set: the whole
//! tensor (magnitude), each output row (Wanda), each group of M inputs of a row (N:M), or whole
//! rows / heads (structured). Counts are exact: at sparsity `s` a set of `n` candidates loses
//! `round(s·n)` of them (half away from zero). Ties are broken by position: of equal scores the
//! lower flat index is pruned first, so every mask is deterministic. Scores are computed in f64
//! (the product of two f32 is exact there), so a Wanda score never ties by rounding.
//!
//! Generic entry points ([`prune_lowest_in_tensor`], [`prune_lowest_per_row`], [`n_m_by_scores`])
//! take any score matrix, e.g. the gradient-aware score of specs/methods.md §4.5.

use super::{check_fraction, check_matrix};
use crate::error::{Error, Result};

/// The default semi-structured pattern: 2 of every 4 consecutive inputs kept (Ampere's 2:4).
pub const DEFAULT_N_M: (usize, usize) = (2, 4);

/// Which weights of an `[out, in]` matrix stay (`true`) and which are zeroed (`false`).
#[derive(Clone, Debug, PartialEq)]
pub struct Mask {
    /// `[out, in]` row-major.
    pub keep: Vec<bool>,
    pub out: usize,
    pub inp: usize,
}

impl Mask {
    fn all(out: usize, inp: usize) -> Self {
        Mask { keep: vec![true; out * inp], out, inp }
    }

    /// Number of weights the mask zeros.
    pub fn pruned(&self) -> usize {
        self.keep.iter().filter(|&&k| !k).count()
    }

    /// Share of weights the mask zeros.
    pub fn sparsity(&self) -> f64 {
        self.pruned() as f64 / self.keep.len().max(1) as f64
    }

    /// `w` with the pruned weights set to zero.
    pub fn apply(&self, w: &[f32]) -> Result<Vec<f32>> {
        if w.len() != self.keep.len() {
            return Err(Error::Invalid(format!("mask of [{}, {}] applied to {} weights", self.out, self.inp, w.len())));
        }
        Ok(w.iter().zip(&self.keep).map(|(&x, &k)| if k { x } else { 0.0 }).collect())
    }
}

/// Candidates to prune out of `n` at sparsity `s`: `round(s·n)`, half away from zero.
pub fn prune_count(n: usize, s: f64) -> usize {
    ((s * n as f64).round() as usize).min(n)
}

/// Exact zeros in `w`.
pub fn zeros(w: &[f32]) -> usize {
    w.iter().filter(|&&x| x == 0.0).count()
}

/// Share of exact zeros in `w` (0 for an empty slice).
pub fn sparsity(w: &[f32]) -> f64 {
    zeros(w) as f64 / w.len().max(1) as f64
}

/// Positions (into `scores`) of the `k` lowest entries of `idx`, ordered by (score, position).
fn lowest(scores: &[f64], mut idx: Vec<usize>, k: usize) -> Vec<usize> {
    if k == 0 {
        return Vec::new();
    }
    if k < idx.len() {
        // A total order (score, then position) makes the selected set independent of the algorithm.
        idx.select_nth_unstable_by(k - 1, |&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
        idx.truncate(k);
    }
    idx
}

fn check_scores(op: &str, scores: &[f64], out: usize, inp: usize) -> Result<()> {
    if out == 0 || inp == 0 {
        return Err(Error::Invalid(format!("{op}: matrix [{out}, {inp}] has a zero dimension")));
    }
    if Some(scores.len()) != out.checked_mul(inp) {
        return Err(Error::Invalid(format!("{op}: {} scores for a [{out}, {inp}] matrix", scores.len())));
    }
    if let Some(i) = scores.iter().position(|x| !x.is_finite()) {
        return Err(Error::Invalid(format!("{op}: non-finite score {} at [{}, {}]", scores[i], i / inp, i % inp)));
    }
    Ok(())
}

/// Zero the `round(s·out·in)` lowest scores of the whole tensor.
pub fn prune_lowest_in_tensor(scores: &[f64], out: usize, inp: usize, s: f64) -> Result<Mask> {
    check_scores("prune", scores, out, inp)?;
    check_fraction("prune", "sparsity", s)?;
    let mut m = Mask::all(out, inp);
    for i in lowest(scores, (0..scores.len()).collect(), prune_count(scores.len(), s)) {
        m.keep[i] = false;
    }
    Ok(m)
}

/// Zero the `round(s·in)` lowest scores of every output row.
pub fn prune_lowest_per_row(scores: &[f64], out: usize, inp: usize, s: f64) -> Result<Mask> {
    check_scores("prune", scores, out, inp)?;
    check_fraction("prune", "sparsity", s)?;
    let k = prune_count(inp, s);
    let mut m = Mask::all(out, inp);
    for r in 0..out {
        for i in lowest(scores, (r * inp..(r + 1) * inp).collect(), k) {
            m.keep[i] = false;
        }
    }
    Ok(m)
}

/// Magnitude pruning, unstructured over the whole tensor: zero the `round(s·out·in)` smallest |w|.
pub fn magnitude(w: &[f32], out: usize, inp: usize, s: f64) -> Result<Mask> {
    check_matrix("magnitude pruning", w, out, inp)?;
    let scores: Vec<f64> = w.iter().map(|x| x.abs() as f64).collect();
    prune_lowest_in_tensor(&scores, out, inp, s)
}

/// ‖X_j‖₂ of every input feature j over the rows (tokens) of calibration activations x
/// `[tokens, in]`, accumulated in f64: the activation norms of Wanda.
pub fn column_norms(x: &[f32], tokens: usize, inp: usize) -> Result<Vec<f32>> {
    check_matrix("column_norms", x, tokens, inp)?;
    let mut ss = vec![0.0f64; inp];
    for row in x.chunks_exact(inp) {
        for (acc, &v) in ss.iter_mut().zip(row) {
            *acc += v as f64 * v as f64;
        }
    }
    Ok(ss.iter().map(|v| v.sqrt() as f32).collect())
}

fn check_norms(op: &str, norms: &[f32], inp: usize) -> Result<()> {
    if norms.len() != inp {
        return Err(Error::Invalid(format!("{op}: {} activation norms for {inp} input features", norms.len())));
    }
    if let Some(j) = norms.iter().position(|x| !(x.is_finite() && *x >= 0.0)) {
        return Err(Error::Invalid(format!("{op}: activation norm {} of input {j} is not a finite non-negative number", norms[j])));
    }
    Ok(())
}

/// Wanda scores `S_ij = |W_ij| · ‖X_j‖₂` (Sun et al. 2023, eq. 1), `[out, in]`, exact in f64.
pub fn wanda_scores(w: &[f32], out: usize, inp: usize, col_norms: &[f32]) -> Result<Vec<f64>> {
    check_matrix("wanda", w, out, inp)?;
    check_norms("wanda", col_norms, inp)?;
    Ok(w.chunks_exact(inp).flat_map(|row| row.iter().zip(col_norms).map(|(&x, &n)| x.abs() as f64 * n as f64)).collect())
}

/// Wanda: zero the `round(s·in)` lowest `|W_ij|·‖X_j‖₂` of every output row (the paper's default
/// comparison group, "per output").
pub fn wanda(w: &[f32], out: usize, inp: usize, col_norms: &[f32], s: f64) -> Result<Mask> {
    prune_lowest_per_row(&wanda_scores(w, out, inp, col_norms)?, out, inp, s)
}

/// Gradient-aware scores (specs/methods.md §4.5.1): `S_ij = a_ij / mean(a) + α · g_ij / mean(g)` with the Wanda term
/// `a_ij = |W_ij|·‖X_j‖₂` and the first-order Taylor term `g_ij = |W_ij·G_ij|` (G the loss gradient summed over the
/// calibration examples), each scaled to unit mean over the layer; a term that is zero everywhere stays zero.
pub fn gradient_aware_scores(w: &[f32], out: usize, inp: usize, col_norms: &[f32], grad: &[f64], alpha: f64) -> Result<Vec<f64>> {
    let a = wanda_scores(w, out, inp, col_norms)?;
    check_scores("gradient-aware pruning (gradient)", grad, out, inp)?;
    if !(alpha.is_finite() && alpha >= 0.0) {
        return Err(Error::Invalid(format!("gradient-aware pruning: alpha must be a finite non-negative number, got {alpha}")));
    }
    let g: Vec<f64> = w.iter().zip(grad).map(|(&x, &d)| (x as f64 * d).abs()).collect();
    let unit = |v: &[f64]| {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        if mean > 0.0 { 1.0 / mean } else { 0.0 }
    };
    let (sa, sg) = (unit(&a), alpha * unit(&g));
    Ok(a.iter().zip(&g).map(|(x, y)| x * sa + y * sg).collect())
}

/// N:M semi-structured by scores: in every group of `m` consecutive inputs of a row keep the `n`
/// highest scores.
pub fn n_m_by_scores(scores: &[f64], out: usize, inp: usize, n: usize, m: usize) -> Result<Mask> {
    check_scores("N:M pruning", scores, out, inp)?;
    if m == 0 || n > m {
        return Err(Error::Invalid(format!("N:M pruning: {n}:{m} is not a pattern (need 0 < M and N <= M)")));
    }
    if !inp.is_multiple_of(m) {
        return Err(Error::Invalid(format!("N:M pruning: input dimension {inp} is not a multiple of M = {m}")));
    }
    let mut mask = Mask::all(out, inp);
    for g0 in (0..scores.len()).step_by(m) {
        for i in lowest(scores, (g0..g0 + m).collect(), m - n) {
            mask.keep[i] = false;
        }
    }
    Ok(mask)
}

/// N:M semi-structured pruning (2:4 by [`DEFAULT_N_M`]): keep the `n` largest |w| of every `m`
/// consecutive inputs of a row, or the `n` largest Wanda scores when activation norms are given.
pub fn n_m(w: &[f32], out: usize, inp: usize, n: usize, m: usize, col_norms: Option<&[f32]>) -> Result<Mask> {
    let scores = match col_norms {
        Some(norms) => wanda_scores(w, out, inp, norms)?,
        None => {
            check_matrix("N:M pruning", w, out, inp)?;
            w.iter().map(|x| x.abs() as f64).collect()
        }
    };
    n_m_by_scores(&scores, out, inp, n, m)
}

/// Structured pruning: whole groups of consecutive output rows removed.
#[derive(Clone, Debug, PartialEq)]
pub struct RowPrune {
    /// Indices of the removed groups (rows when `rows_per_group == 1`, heads otherwise), ascending.
    pub removed: Vec<usize>,
    pub rows_per_group: usize,
    pub mask: Mask,
}

/// L2 norm of every output row (channel) of `w`, in f64.
pub fn row_norms(w: &[f32], out: usize, inp: usize) -> Result<Vec<f64>> {
    check_matrix("row_norms", w, out, inp)?;
    Ok(w.chunks_exact(inp).map(|r| r.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt()).collect())
}

/// Score of every attention head of a q/k/v-style projection whose output rows are grouped by head
/// (`out = heads · head_dim`, head h = rows `h·head_dim .. (h+1)·head_dim`): the Frobenius norm of
/// the head's rows. (An output projection groups heads by *input* columns: pass its transpose.)
pub fn head_scores(w: &[f32], out: usize, inp: usize, head_dim: usize) -> Result<Vec<f64>> {
    check_matrix("head_scores", w, out, inp)?;
    if head_dim == 0 || !out.is_multiple_of(head_dim) {
        return Err(Error::Invalid(format!("head_scores: {out} output rows do not split into heads of {head_dim} rows")));
    }
    let rows = row_norms(w, out, inp)?;
    Ok(rows.chunks_exact(head_dim).map(|h| h.iter().map(|r| r * r).sum::<f64>().sqrt()).collect())
}

/// Zero the `round(s·G)` groups of `rows_per_group` consecutive output rows with the lowest
/// Frobenius norm (G = out / rows_per_group groups).
pub fn prune_row_groups(w: &[f32], out: usize, inp: usize, rows_per_group: usize, s: f64) -> Result<RowPrune> {
    let scores = head_scores(w, out, inp, rows_per_group)?;
    check_fraction("structured pruning", "sparsity", s)?;
    let mut removed = lowest(&scores, (0..scores.len()).collect(), prune_count(scores.len(), s));
    removed.sort_unstable();
    let mut mask = Mask::all(out, inp);
    for &g in &removed {
        mask.keep[g * rows_per_group * inp..(g + 1) * rows_per_group * inp].fill(false);
    }
    Ok(RowPrune { removed, rows_per_group, mask })
}

/// Structured pruning of output channels: zero the `round(s·out)` rows with the lowest L2 norm.
pub fn structured_rows(w: &[f32], out: usize, inp: usize, s: f64) -> Result<RowPrune> {
    prune_row_groups(w, out, inp, 1, s)
}

/// Structured pruning of attention heads: zero the `round(s·heads)` heads (row groups of
/// `head_dim`) with the lowest [`head_scores`].
pub fn structured_heads(w: &[f32], out: usize, inp: usize, head_dim: usize, s: f64) -> Result<RowPrune> {
    prune_row_groups(w, out, inp, head_dim, s)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::matrix;
    use super::*;

    const LEVELS: [f64; 4] = [0.0, 0.5, 0.37, 1.0];

    fn invalid(r: Result<impl std::fmt::Debug>, needle: &str) {
        match r {
            Err(Error::Invalid(m)) => assert!(m.contains(needle), "message {m:?} lacks {needle:?}"),
            other => panic!("expected Error::Invalid containing {needle:?}, got {other:?}"),
        }
    }

    /// Every pruned score of `set` is <= every kept one.
    fn lowest_were_pruned(scores: &[f64], keep: &[bool], set: impl Iterator<Item = usize> + Clone) {
        let max_pruned = set.clone().filter(|&i| !keep[i]).map(|i| scores[i]).fold(f64::NEG_INFINITY, f64::max);
        let min_kept = set.filter(|&i| keep[i]).map(|i| scores[i]).fold(f64::INFINITY, f64::min);
        assert!(max_pruned <= min_kept, "pruned {max_pruned} > kept {min_kept}");
    }

    #[test]
    fn counts_round_half_away() {
        assert_eq!(prune_count(91, 0.5), 46); // 45.5 -> 46
        assert_eq!(prune_count(91, 0.37), 34); // 33.67
        assert_eq!(prune_count(13, 0.37), 5); // 4.81
        assert_eq!(prune_count(7, 1.0), 7);
        assert_eq!(prune_count(7, 0.0), 0);
    }

    #[test]
    fn magnitude_exact_counts() {
        let (out, inp) = (7, 13);
        let w = matrix(11, out, inp);
        let scores: Vec<f64> = w.iter().map(|x| x.abs() as f64).collect();
        for s in LEVELS {
            let m = magnitude(&w, out, inp, s).unwrap();
            assert_eq!(m.pruned(), prune_count(out * inp, s), "s = {s}");
            lowest_were_pruned(&scores, &m.keep, 0..out * inp);
            let p = m.apply(&w).unwrap();
            assert_eq!(zeros(&p), m.pruned()); // the random matrix has no zeros of its own
            assert!((sparsity(&p) - m.sparsity()).abs() < 1e-15);
        }
    }

    #[test]
    fn magnitude_by_hand_with_ties() {
        // |w| = [3, 1, 2, 1, 1, 5]: at s = 0.5 the three smallest are the three 1s (indices 1, 3, 4).
        let w = [3.0, -1.0, 2.0, 1.0, -1.0, 5.0];
        assert_eq!(magnitude(&w, 2, 3, 0.5).unwrap().keep, vec![true, false, true, false, false, true]);
        // s = 1/3 -> 2 of 6: of the tied 1s, the two lowest indices go first.
        assert_eq!(magnitude(&w, 2, 3, 1.0 / 3.0).unwrap().keep, vec![true, false, true, false, true, true]);
        // All equal: the first round(s·n) positions go.
        assert_eq!(magnitude(&[2.0; 4], 1, 4, 0.5).unwrap().keep, vec![false, false, true, true]);
    }

    #[test]
    fn wanda_exact_counts_per_row() {
        let (out, inp) = (5, 13);
        let w = matrix(12, out, inp);
        let x = matrix(13, 9, inp);
        let norms = column_norms(&x, 9, inp).unwrap();
        let scores = wanda_scores(&w, out, inp, &norms).unwrap();
        for s in LEVELS {
            let m = wanda(&w, out, inp, &norms, s).unwrap();
            for r in 0..out {
                let row = &m.keep[r * inp..(r + 1) * inp];
                assert_eq!(row.iter().filter(|&&k| !k).count(), prune_count(inp, s), "row {r}, s = {s}");
                lowest_were_pruned(&scores, &m.keep, r * inp..(r + 1) * inp);
            }
        }
    }

    #[test]
    fn wanda_by_hand_differs_from_magnitude() {
        // Row [0.1, 1.0, 0.5], input norms [20, 0.625, 1.25]: scores [2, 0.625, 0.625]. At s = 1/3 (one per
        // row) magnitude drops the 0.1; Wanda keeps it (its input is large) and drops index 1 (the tie
        // with index 2 is broken by position).
        let w = [0.1, 1.0, 0.5];
        let x = [12.0, 0.375, 0.75, 16.0, 0.5, 1.0];
        let norms = column_norms(&x, 2, 3).unwrap();
        assert_eq!(norms, vec![20.0, 0.625, 1.25]);
        assert_eq!(magnitude(&w, 1, 3, 1.0 / 3.0).unwrap().keep, vec![false, true, true]);
        assert_eq!(wanda(&w, 1, 3, &norms, 1.0 / 3.0).unwrap().keep, vec![true, false, true]);
    }

    #[test]
    fn gradient_aware_scores_by_hand() {
        // W = [1, -2, 0.5, 4], ‖X‖ = [1, 1, 2, 0.5]: Wanda term [1, 2, 1, 2] (mean 1.5); G = [0, 1, -4, 0.25]:
        // Taylor term |W·G| = [0, 2, 2, 1] (mean 1.25). S = a/1.5 + α·g/1.25.
        let w = [1.0, -2.0, 0.5, 4.0];
        let norms = [1.0, 1.0, 2.0, 0.5];
        let g = [0.0, 1.0, -4.0, 0.25];
        let s = gradient_aware_scores(&w, 1, 4, &norms, &g, 1.0).unwrap();
        let want = [1.0 / 1.5, 2.0 / 1.5 + 1.6, 1.0 / 1.5 + 1.6, 2.0 / 1.5 + 0.8];
        for (a, b) in s.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{s:?}");
        }
        // α = 0 is Wanda up to a constant factor; a zero gradient leaves the Wanda term alone.
        let a0 = gradient_aware_scores(&w, 1, 4, &norms, &g, 0.0).unwrap();
        let wa = wanda_scores(&w, 1, 4, &norms).unwrap();
        assert!(a0.iter().zip(&wa).all(|(x, y)| (x * 1.5 - y).abs() < 1e-12));
        assert_eq!(gradient_aware_scores(&w, 1, 4, &norms, &[0.0; 4], 1.0).unwrap(), a0);
        assert!(gradient_aware_scores(&w, 1, 4, &norms, &g, -1.0).is_err());
        assert!(gradient_aware_scores(&w, 1, 4, &norms, &[0.0; 3], 1.0).is_err());
        assert!(gradient_aware_scores(&w, 1, 4, &norms, &[f64::NAN, 0.0, 0.0, 0.0], 1.0).is_err());
    }

    #[test]
    fn two_four_pattern() {
        let (out, inp) = (6, 24);
        let w = matrix(14, out, inp);
        let norms: Vec<f32> = matrix(15, 1, inp).iter().map(|x| x.abs() * 4.0).collect();
        for norms in [None, Some(norms.as_slice())] {
            let (n, m) = DEFAULT_N_M;
            let mask = n_m(&w, out, inp, n, m, norms).unwrap();
            let scores = match norms {
                Some(x) => wanda_scores(&w, out, inp, x).unwrap(),
                None => w.iter().map(|x| x.abs() as f64).collect(),
            };
            let p = mask.apply(&w).unwrap();
            for g in (0..out * inp).step_by(4) {
                assert!(p[g..g + 4].iter().filter(|&&x| x != 0.0).count() <= 2);
                assert_eq!(mask.keep[g..g + 4].iter().filter(|&&k| k).count(), 2);
                lowest_were_pruned(&scores, &mask.keep, g..g + 4);
            }
            assert_eq!(mask.pruned(), out * inp / 2);
        }
        // By hand: [0.1, -0.4, 0.3, 0.2 | 1, 1, 1, 1] -> keep -0.4, 0.3 | the last two 1s (ties: low index pruned).
        let mask = n_m(&[0.1, -0.4, 0.3, 0.2, 1.0, 1.0, 1.0, 1.0], 1, 8, 2, 4, None).unwrap();
        assert_eq!(mask.keep, vec![false, true, true, false, false, false, true, true]);
        // 4:8 and the trivial patterns.
        assert_eq!(n_m(&w, out, inp, 4, 8, None).unwrap().pruned(), out * inp / 2);
        assert_eq!(n_m(&w, out, inp, 4, 4, None).unwrap().pruned(), 0);
        assert_eq!(n_m(&w, out, inp, 0, 4, None).unwrap().pruned(), out * inp);
    }

    #[test]
    fn structured_rows_and_heads() {
        let (out, inp) = (8, 5);
        let mut w = matrix(16, out, inp);
        for (r, f) in [(2usize, 0.01f32), (5, 0.02), (6, 0.03)] {
            w[r * inp..(r + 1) * inp].iter_mut().for_each(|x| *x *= f);
        }
        let norms = row_norms(&w, out, inp).unwrap();
        for s in LEVELS {
            let p = structured_rows(&w, out, inp, s).unwrap();
            assert_eq!(p.removed.len(), prune_count(out, s));
            assert_eq!(p.mask.pruned(), p.removed.len() * inp);
            let z = p.mask.apply(&w).unwrap();
            for r in 0..out {
                let zeroed = z[r * inp..(r + 1) * inp].iter().all(|&x| x == 0.0);
                assert_eq!(zeroed, p.removed.contains(&r), "row {r}");
            }
            let max_removed = p.removed.iter().map(|&r| norms[r]).fold(f64::NEG_INFINITY, f64::max);
            assert!((0..out).filter(|r| !p.removed.contains(r)).all(|r| norms[r] >= max_removed));
        }
        assert_eq!(structured_rows(&w, out, inp, 0.37).unwrap().removed, vec![2, 5, 6]); // 2.96 -> 3
        // Heads of 2 rows: head 1 = rows 2, 3; head 2 = rows 4, 5; head 3 = rows 6, 7.
        let h = head_scores(&w, out, inp, 2).unwrap();
        assert_eq!(h.len(), 4);
        assert!((h[1] - (norms[2] * norms[2] + norms[3] * norms[3]).sqrt()).abs() < 1e-12);
        let p = structured_heads(&w, out, inp, 2, 0.5).unwrap();
        assert_eq!(p.removed.len(), 2);
        assert_eq!(p.mask.pruned(), 2 * 2 * inp);
        let mut order: Vec<usize> = (0..4).collect();
        order.sort_by(|&a, &b| h[a].total_cmp(&h[b]));
        let mut lowest2 = order[..2].to_vec();
        lowest2.sort();
        assert_eq!(p.removed, lowest2);
    }

    #[test]
    fn bad_inputs_are_refused() {
        let w = matrix(0, 2, 8);
        for s in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
            invalid(magnitude(&w, 2, 8, s), "sparsity");
            invalid(wanda(&w, 2, 8, &[1.0; 8], s), "sparsity");
            invalid(structured_rows(&w, 2, 8, s), "sparsity");
        }
        invalid(magnitude(&w, 3, 8, 0.5), "values");
        invalid(magnitude(&[], 0, 8, 0.5), "zero dimension");
        invalid(magnitude(&[f32::NAN, 1.0], 1, 2, 0.5), "non-finite");
        invalid(wanda(&w, 2, 8, &[1.0; 7], 0.5), "norms");
        invalid(wanda(&w, 2, 8, &[-1.0; 8], 0.5), "non-negative");
        invalid(column_norms(&[1.0; 5], 2, 3), "values");
        invalid(n_m(&w, 2, 8, 2, 3, None), "multiple");
        invalid(n_m(&w, 2, 8, 2, 0, None), "pattern");
        invalid(n_m(&w, 2, 8, 5, 4, None), "pattern");
        invalid(n_m(&w, 2, 8, 2, 4, Some(&[1.0; 3])), "norms");
        invalid(head_scores(&w, 2, 8, 3), "heads");
        invalid(structured_heads(&w, 2, 8, 0, 0.5), "heads");
        invalid(prune_lowest_per_row(&[1.0, f64::NAN], 1, 2, 0.5), "non-finite");
        invalid(Mask::all(2, 2).apply(&[1.0; 3]), "mask");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        #[test]
        fn counts_are_exact(seed in 0u64..1000, out in 1usize..9, inp in 1usize..20, s in 0.0f64..=1.0) {
            let w = matrix(seed, out, inp);
            proptest::prop_assert_eq!(magnitude(&w, out, inp, s).unwrap().pruned(), prune_count(out * inp, s));
            proptest::prop_assert_eq!(wanda(&w, out, inp, &vec![1.0; inp], s).unwrap().pruned(), out * prune_count(inp, s));
            proptest::prop_assert_eq!(structured_rows(&w, out, inp, s).unwrap().removed.len(), prune_count(out, s));
        }
    }
}
