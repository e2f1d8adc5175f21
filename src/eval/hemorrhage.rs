//! Model hemorrhage: how far a modified (compressed) model M′ has drifted from the original M on the
//! same examples (methods.md §4), plus the calibration tools of §4.5's "decoding calibration" family:
//! expected calibration error and temperature scaling (Guo et al. 2017, "On Calibration of Modern
//! Neural Networks").
//!
//! Where the definitions come from:
//! - methods.md §4.4 [default there — the paper names no formulas]: `Δacc = acc(M) − acc(M′)`,
//!   `retention = acc(M′)/acc(M)`, `PPL ratio = PPL(M′)/PPL(M)`, `KL̄ = mean over examples of
//!   KL(p_M ‖ p_M′)`, `agreement` = share of identical top-1 predictions, the flip table
//!   (correct→wrong, wrong→correct), and the simple threshold condition "retention ≥ 0.95" /
//!   "PPL ratio ≤ 1.05" behind `s*_5%` ([`RETENTION_5PCT`], [`PPL_RATIO_5PCT`]).
//! - Guo et al. 2017: ECE with equal-width confidence bins (15 by default) weighted by bin size, and
//!   temperature scaling `softmax(z/T)` with T fitted by minimising the NLL on a calibration split.
//! - Ours (this module's choices, documented where they are made): KL in nats with the compressed
//!   probabilities clamped at [`KL_EPS`]; the row checks (sum within [`SUM_TOL`] of 1, no negative or
//!   non-finite entries); ties in argmax to the lowest index (as [`super::argmax`]); the bin
//!   edges' closed side; `perplexity_change = ratio − 1`; the search for T (golden section on log T
//!   over [[`T_MIN`], [`T_MAX`]] to [`T_TOL`]).
//!
//! Inputs are per-example rows in one order: class probabilities (`&[Vec<f32>]`, as results store
//! them) or class logits, and gold labels (`u32` class ids). All arithmetic is in f64. Values are
//! fractions (accuracy 0.85, not 85). Every function returns [`Error::Invalid`] on bad input and
//! none panics.

use crate::{Error, Result};

/// Rows of probabilities must sum to 1 within this tolerance (f32 softmax rows of a few thousand
/// classes stay well inside it; a row of logits passed by mistake does not).
pub const SUM_TOL: f64 = 1e-3;

/// KL's compressed-side probabilities are clamped to at least this before the logarithm, so a class
/// the base model gives mass p > 0 and the compressed model gives exactly 0 (an f32 softmax
/// underflow) contributes the finite `p·ln(p/1e-12) ≤ 27.7·p` nats instead of +∞. Base-side zeros
/// contribute 0 (the convention `0·ln 0 = 0`). Rows are not renormalised after clamping. Ours.
pub const KL_EPS: f64 = 1e-12;

/// Default number of equal-width confidence bins of [`ece`] (Guo et al. 2017).
pub const ECE_BINS: usize = 15;

/// The range [`fit_temperature`] searches (T is clamped to it: an optimum outside gives the nearer end).
pub const T_MIN: f64 = 0.05;
pub const T_MAX: f64 = 20.0;
/// Width in log T at which the golden-section search stops.
pub const T_TOL: f64 = 1e-6;

/// methods.md §4.4: the simple threshold `s*_5%` is the largest strength with retention ≥ 0.95
/// (classifiers) or PPL ratio ≤ 1.05 (LMs).
pub const RETENTION_5PCT: f64 = 0.95;
pub const PPL_RATIO_5PCT: f64 = 1.05;

fn invalid<T>(msg: String) -> Result<T> {
    Err(Error::Invalid(msg))
}

/// Same number of rows (at least one), every row with the same number of classes (at least one)
/// and only finite entries. Returns the class count.
fn check_rows(op: &str, a: &[Vec<f32>], b: &[Vec<f32>]) -> Result<usize> {
    if a.len() != b.len() {
        return invalid(format!("{op}: {} base rows but {} compressed rows", a.len(), b.len()));
    }
    let classes = check_matrix(op, a)?;
    let c2 = check_matrix(op, b)?;
    if c2 != classes {
        return invalid(format!("{op}: base rows have {classes} classes but compressed rows have {c2}"));
    }
    Ok(classes)
}

/// At least one row, all of one length ≥ 1, all entries finite. Returns the class count.
fn check_matrix(op: &str, rows: &[Vec<f32>]) -> Result<usize> {
    let Some(first) = rows.first() else {
        return invalid(format!("{op}: no examples (empty rows)"));
    };
    let classes = first.len();
    if classes == 0 {
        return invalid(format!("{op}: rows with no classes"));
    }
    for (i, r) in rows.iter().enumerate() {
        if r.len() != classes {
            return invalid(format!("{op}: row {i} has {} classes but row 0 has {classes}", r.len()));
        }
        if let Some(j) = r.iter().position(|x| !x.is_finite()) {
            return invalid(format!("{op}: row {i} has a non-finite value ({}) at class {j}", r[j]));
        }
    }
    Ok(classes)
}

/// [`check_matrix`] plus: no negative entry, each row sums to 1 within [`SUM_TOL`].
fn check_probs(op: &str, rows: &[Vec<f32>]) -> Result<usize> {
    let classes = check_matrix(op, rows)?;
    for (i, r) in rows.iter().enumerate() {
        if let Some(j) = r.iter().position(|&x| x < 0.0) {
            return invalid(format!("{op}: row {i} has a negative probability ({}) at class {j}", r[j]));
        }
        let s: f64 = r.iter().map(|&x| x as f64).sum();
        if (s - 1.0).abs() > SUM_TOL {
            return invalid(format!("{op}: row {i} sums to {s}, not 1 (tolerance {SUM_TOL}); pass probabilities, not logits"));
        }
    }
    Ok(classes)
}

fn check_labels(op: &str, labels: &[u32], rows: usize, classes: usize) -> Result<()> {
    if labels.len() != rows {
        return invalid(format!("{op}: {rows} rows but {} labels", labels.len()));
    }
    if let Some(i) = labels.iter().position(|&l| l as usize >= classes) {
        return invalid(format!("{op}: label {} at position {i} is out of range ({classes} classes)", labels[i]));
    }
    Ok(())
}


/// KL(p ‖ q) in nats of one pair of rows, in f64, with q clamped at [`KL_EPS`] and `0·ln 0 = 0`.
fn kl_row(p: &[f32], q: &[f32]) -> f64 {
    p.iter()
        .zip(q)
        .filter(|(&a, _)| a > 0.0)
        .map(|(&a, &b)| {
            let (a, b) = (a as f64, (b as f64).max(KL_EPS));
            a * (a / b).ln()
        })
        .sum()
}

/// `KL̄` of methods.md §4.4: the mean over examples of KL(P_base ‖ P_compressed) in nats, computed in
/// f64 (clamping: [`KL_EPS`]). Refused: different row counts or class counts, no rows, rows that are
/// not probability distributions (negative, non-finite, or summing to 1 ± more than [`SUM_TOL`]).
pub fn kl_divergence(base: &[Vec<f32>], compressed: &[Vec<f32>]) -> Result<f64> {
    check_rows("kl_divergence", base, compressed)?;
    check_probs("kl_divergence (base)", base)?;
    check_probs("kl_divergence (compressed)", compressed)?;
    Ok(base.iter().zip(compressed).map(|(p, q)| kl_row(p, q)).sum::<f64>() / base.len() as f64)
}

/// `agreement` of methods.md §4.4: the share of examples whose top-1 class is the same for both
/// models (ties → lowest index). Works on probabilities or logits (only the argmax matters); rows
/// must be finite and of one class count, with as many compressed rows as base rows.
pub fn agreement_rate(base: &[Vec<f32>], compressed: &[Vec<f32>]) -> Result<f64> {
    check_rows("agreement_rate", base, compressed)?;
    let same = base.iter().zip(compressed).filter(|(a, b)| super::argmax(a) == super::argmax(b)).count();
    Ok(same as f64 / base.len() as f64)
}

/// A compressed model against its original on one labelled evaluation set (methods.md §4.4).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct HemorrhageSummary {
    pub n: usize,
    pub accuracy_base: f64,
    pub accuracy_compressed: f64,
    /// `Δacc = acc(M) − acc(M′)` as a fraction (×100 for the points of §4.4); positive = a loss.
    pub accuracy_drop: f64,
    /// `retention = acc(M′)/acc(M)`; `None` when the base accuracy is 0.
    pub retention: Option<f64>,
    /// Examples the base model gets right and the compressed model gets wrong.
    pub flipped_right_to_wrong: usize,
    /// Examples the base model gets wrong and the compressed model gets right.
    pub flipped_wrong_to_right: usize,
    /// `KL̄`: mean KL(p_M ‖ p_M′) in nats ([`kl_divergence`]).
    pub kl: f64,
    /// Share of identical top-1 predictions ([`agreement_rate`]).
    pub agreement: f64,
    /// Whether this point fails §4.4's simple-threshold condition `retention ≥ 0.95`, i.e. lies past
    /// `s*_5%` ([`RETENTION_5PCT`]); `None` when retention is undefined.
    pub crossed_5pct: Option<bool>,
}

/// The summary of methods.md §4.4 for classifiers: accuracies, their drop and ratio, the flip table,
/// `KL̄` and agreement. `base` and `compressed` are probability rows (checked as in
/// [`kl_divergence`]); `labels` one gold class per row, each below the class count. Predictions are
/// the argmax of each row (ties → lowest index).
pub fn hemorrhage(base: &[Vec<f32>], compressed: &[Vec<f32>], labels: &[u32]) -> Result<HemorrhageSummary> {
    let kl = kl_divergence(base, compressed)?;
    let classes = base[0].len();
    check_labels("hemorrhage", labels, base.len(), classes)?;
    let n = base.len();
    let (mut right_base, mut right_comp, mut r2w, mut w2r, mut same) = (0usize, 0usize, 0usize, 0usize, 0usize);
    for ((p, q), &l) in base.iter().zip(compressed).zip(labels) {
        let (a, b) = (super::argmax(p), super::argmax(q));
        let (ra, rb) = (a == l, b == l);
        right_base += ra as usize;
        right_comp += rb as usize;
        r2w += (ra && !rb) as usize;
        w2r += (!ra && rb) as usize;
        same += (a == b) as usize;
    }
    let accuracy_base = right_base as f64 / n as f64;
    let accuracy_compressed = right_comp as f64 / n as f64;
    let retention = (right_base > 0).then(|| right_comp as f64 / right_base as f64);
    Ok(HemorrhageSummary {
        n,
        accuracy_base,
        accuracy_compressed,
        accuracy_drop: accuracy_base - accuracy_compressed,
        retention,
        flipped_right_to_wrong: r2w,
        flipped_wrong_to_right: w2r,
        kl,
        agreement: same as f64 / n as f64,
        crossed_5pct: retention.map(|r| r < RETENTION_5PCT),
    })
}

/// Perplexity of an LM over `tokens` predicted tokens whose negative log-likelihoods (natural log)
/// sum to `total_nll_nats`: `exp(total_nll / tokens)`. Refused: 0 tokens, a negative or non-finite
/// NLL. (Comparable across models only at the same context length and tokenisation, §4.7.)
pub fn perplexity(total_nll_nats: f64, tokens: usize) -> Result<f64> {
    if tokens == 0 {
        return invalid("perplexity: 0 tokens".into());
    }
    if !total_nll_nats.is_finite() || total_nll_nats < 0.0 {
        return invalid(format!("perplexity: total NLL {total_nll_nats} is not a finite non-negative number of nats"));
    }
    Ok((total_nll_nats / tokens as f64).exp())
}

/// `PPL ratio = PPL(M′)/PPL(M)` (methods.md §4.4). Both perplexities must be finite and ≥ 1 (a
/// perplexity is never below 1). `> PPL_RATIO_5PCT` puts the point past §4.4's `s*_5%`.
pub fn perplexity_ratio(base_ppl: f64, comp_ppl: f64) -> Result<f64> {
    for (name, v) in [("base", base_ppl), ("compressed", comp_ppl)] {
        if !v.is_finite() || v < 1.0 {
            return invalid(format!("perplexity_ratio: {name} perplexity {v} is not a finite number ≥ 1"));
        }
    }
    Ok(comp_ppl / base_ppl)
}

/// Relative perplexity change `PPL(M′)/PPL(M) − 1` (ours: [`perplexity_ratio`] minus 1; 0.05 = 5%
/// worse, negative = better).
pub fn perplexity_change(base_ppl: f64, comp_ppl: f64) -> Result<f64> {
    Ok(perplexity_ratio(base_ppl, comp_ppl)? - 1.0)
}

/// Bin of a confidence `c` among `bins` equal-width bins: bin i covers (i/B, (i+1)/B], and c = 0
/// goes to bin 0.
fn bin_of(c: f64, bins: usize) -> usize {
    if c <= 0.0 {
        return 0;
    }
    ((c * bins as f64).ceil() as usize).saturating_sub(1).min(bins - 1)
}

/// Expected calibration error (Guo et al. 2017): confidence = the max probability of a row,
/// prediction = its argmax (ties → lowest index); examples go into `bins` equal-width confidence
/// bins (bin i covers (i/B, (i+1)/B], confidence 0 in bin 0) and
/// `ECE = Σ_b (n_b/n)·|acc_b − conf_b|` over non-empty bins. Use [`ECE_BINS`] (15) unless there is a
/// reason not to. Refused: `bins == 0`, rows that are not probability distributions, labels that
/// do not match the rows.
pub fn ece(probs: &[Vec<f32>], labels: &[u32], bins: usize) -> Result<f64> {
    if bins == 0 {
        return invalid("ece: 0 bins".into());
    }
    let classes = check_probs("ece", probs)?;
    check_labels("ece", labels, probs.len(), classes)?;
    let (mut count, mut correct, mut conf) = (vec![0usize; bins], vec![0usize; bins], vec![0f64; bins]);
    for (r, &l) in probs.iter().zip(labels) {
        let k = super::argmax(r) as usize;
        let c = r[k] as f64;
        let b = bin_of(c, bins);
        count[b] += 1;
        correct[b] += (k == l as usize) as usize;
        conf[b] += c;
    }
    let n = probs.len() as f64;
    Ok((0..bins).filter(|&b| count[b] > 0).map(|b| (correct[b] as f64 - conf[b]).abs() / n).sum())
}

/// Mean NLL of `softmax(z/T)` at the gold labels, with β = 1/T, in f64 (max-subtracted).
fn mean_nll(logits: &[Vec<f32>], labels: &[u32], beta: f64) -> f64 {
    let total: f64 = logits
        .iter()
        .zip(labels)
        .map(|(z, &l)| {
            let m = z.iter().map(|&x| beta * x as f64).fold(f64::NEG_INFINITY, f64::max);
            let lse = m + z.iter().map(|&x| (beta * x as f64 - m).exp()).sum::<f64>().ln();
            lse - beta * z[l as usize] as f64
        })
        .sum();
    total / logits.len() as f64
}

/// Temperature scaling (Guo et al. 2017): the T > 0 minimising the mean NLL of `softmax(logits/T)`
/// at `labels`, fitted on a calibration split (apply it to other splits with [`apply_temperature`]).
///
/// The NLL is convex in β = 1/T, hence unimodal in u = log T (a monotone reparametrisation), so a
/// golden-section search on u over [log [`T_MIN`], log [`T_MAX`]] down to a width of [`T_TOL`] finds
/// the minimum; an optimum outside the range (e.g. separable data, where the NLL falls as T → 0)
/// gives the nearer end. Deterministic (no randomness, fixed iteration rule). Ours: the range, the
/// tolerance and the search. Refused: no rows, non-finite logits, ragged rows, labels that do not
/// match the rows.
pub fn fit_temperature(logits: &[Vec<f32>], labels: &[u32]) -> Result<f64> {
    let classes = check_matrix("fit_temperature", logits)?;
    check_labels("fit_temperature", labels, logits.len(), classes)?;
    let f = |u: f64| mean_nll(logits, labels, (-u).exp());
    Ok(golden_min(&f, T_MIN.ln(), T_MAX.ln()).exp())
}

/// `softmax(z/T)` of every row (max-subtracted, in f64, returned as f32 probability rows). T = 1
/// gives the plain softmax. Refused: T not finite and > 0, no rows, non-finite logits, ragged rows.
pub fn apply_temperature(logits: &[Vec<f32>], t: f64) -> Result<Vec<Vec<f32>>> {
    if !t.is_finite() || t <= 0.0 {
        return invalid(format!("apply_temperature: temperature {t} is not a finite positive number"));
    }
    check_matrix("apply_temperature", logits)?;
    Ok(logits
        .iter()
        .map(|z| {
            let m = z.iter().map(|&x| x as f64 / t).fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = z.iter().map(|&x| (x as f64 / t - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|&x| (x / s) as f32).collect()
        })
        .collect())
}

/// The range of the decoding-calibration temperature (methods.md §4.5.3: log T in [log 0.25, log 4]).
pub const KL_T_MIN: f64 = 0.25;
pub const KL_T_MAX: f64 = 4.0;
/// Newton steps for the per-class bias β of [`fit_temperature_kl`] (§4.5.3: "a few"), per round.
pub const KL_BIAS_STEPS: usize = 8;
/// Rounds of (T given β, β given T) in [`fit_temperature_kl`], fewer when the KL stops falling.
pub const KL_ROUNDS: usize = 20;

/// Mean over rows of `KL(p ‖ softmax(z/T + β))` in nats (f64, max-subtracted; `0·ln 0 = 0`).
fn mean_kl_logits(base: &[Vec<f32>], logits: &[Vec<f32>], t: f64, bias: &[f64]) -> f64 {
    let total: f64 = base
        .iter()
        .zip(logits)
        .map(|(p, z)| {
            let u: Vec<f64> = z.iter().zip(bias).map(|(&x, b)| x as f64 / t + b).collect();
            let m = u.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + u.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
            p.iter().zip(&u).filter(|(&pi, _)| pi > 0.0).map(|(&pi, &ui)| pi as f64 * ((pi as f64).ln() - (ui - lse))).sum::<f64>()
        })
        .sum();
    total / base.len() as f64
}

/// Golden-section search for the minimum of a unimodal `f` on `[a, b]` (down to [`T_TOL`]); the best
/// of the final points and the ends (an optimum outside gives the nearer end).
fn golden_min(f: &dyn Fn(f64) -> f64, mut a: f64, mut b: f64) -> f64 {
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (lo, hi) = (a, b);
    let (mut x1, mut x2) = (b - g * (b - a), a + g * (b - a));
    let (mut f1, mut f2) = (f(x1), f(x2));
    while b - a > T_TOL {
        if f1 <= f2 {
            b = x2;
            x2 = x1;
            f2 = f1;
            x1 = b - g * (b - a);
            f1 = f(x1);
        } else {
            a = x1;
            x1 = x2;
            f1 = f2;
            x2 = a + g * (b - a);
            f2 = f(x2);
        }
    }
    let mut best = (f(lo), lo);
    for (v, u) in [(f1, x1), (f2, x2), (f(hi), hi)] {
        if v < best.0 {
            best = (v, u);
        }
    }
    best.1
}

/// Decoding calibration of a modified model (methods.md §4.5.3): the temperature T and per-class
/// bias β minimising the mean `KL(p_M ‖ softmax(z_M′/T + β))` on a calibration set, where `base`
/// are the original model's probability rows and `logits` the modified model's. T by golden-section
/// search over log T in [[`KL_T_MIN`], [`KL_T_MAX`]] at the current β, then β by [`KL_BIAS_STEPS`]
/// damped Newton steps at that T (the objective is a soft-target cross-entropy, convex in β; β is
/// kept centred, since a shift of all classes changes nothing), each accepted only if it lowers the
/// KL; up to [`KL_ROUNDS`] such rounds from T = 1, β = 0. The KL never rises. Ours: the alternation
/// and the step rule. Returns `(T, β)`.
pub fn fit_temperature_kl(base: &[Vec<f32>], logits: &[Vec<f32>]) -> Result<(f64, Vec<f64>)> {
    let classes = check_probs("fit_temperature_kl", base)?;
    let c2 = check_matrix("fit_temperature_kl", logits)?;
    if c2 != classes || logits.len() != base.len() {
        return invalid(format!("fit_temperature_kl: {} × {classes} probabilities vs {} × {c2} logits", base.len(), logits.len()));
    }
    let (mut t, mut bias) = (1f64, vec![0f64; classes]);
    let mut cur = mean_kl_logits(base, logits, t, &bias);
    for _ in 0..KL_ROUNDS {
        let before = cur;
        let b0 = bias.clone();
        t = golden_min(&|u: f64| mean_kl_logits(base, logits, u.exp(), &b0), KL_T_MIN.ln(), KL_T_MAX.ln()).exp();
        cur = mean_kl_logits(base, logits, t, &bias);
        bias_newton(base, logits, t, &mut bias, &mut cur);
        if before - cur <= 1e-12 * before.abs().max(1e-12) {
            break;
        }
    }
    Ok((t, bias))
}

/// [`KL_BIAS_STEPS`] damped Newton steps on β at a fixed T (each kept only if it lowers the KL).
fn bias_newton(base: &[Vec<f32>], logits: &[Vec<f32>], t: f64, bias: &mut [f64], cur: &mut f64) {
    let classes = bias.len();
    for _ in 0..KL_BIAS_STEPS {
        // Gradient mean(q − p) and Hessian mean(diag q − q qᵀ) of the mean soft cross-entropy.
        let (mut g, mut h) = (vec![0f64; classes], vec![vec![0f64; classes]; classes]);
        for (p, z) in base.iter().zip(logits) {
            let u: Vec<f64> = z.iter().zip(bias.iter()).map(|(&x, b)| x as f64 / t + b).collect();
            let m = u.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = u.iter().map(|x| (x - m).exp()).collect();
            let s: f64 = e.iter().sum();
            let q: Vec<f64> = e.iter().map(|x| x / s).collect();
            for i in 0..classes {
                g[i] += q[i] - p[i] as f64;
                for j in 0..classes {
                    h[i][j] += if i == j { q[i] } else { 0.0 } - q[i] * q[j];
                }
            }
        }
        let n = base.len() as f64;
        // The all-ones direction is the Hessian's null space: a small ridge makes it solvable.
        for i in 0..classes {
            g[i] /= n;
            for j in 0..classes {
                h[i][j] /= n;
            }
            h[i][i] += 1e-6;
        }
        let Some(step) = solve(h, g) else { break };
        let mut accepted = false;
        for damp in [1.0, 0.5, 0.25, 0.125] {
            let mut nb: Vec<f64> = bias.iter().zip(&step).map(|(b, s)| b - damp * s).collect();
            let mean = nb.iter().sum::<f64>() / classes as f64;
            nb.iter_mut().for_each(|b| *b -= mean);
            let v = mean_kl_logits(base, logits, t, &nb);
            if v.is_finite() && v < *cur {
                bias.copy_from_slice(&nb);
                (*cur, accepted) = (v, true);
                break;
            }
        }
        if !accepted {
            break;
        }
    }
}

/// Gaussian elimination with partial pivoting; `None` when singular.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for c in 0..n {
        let p = (c..n).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        if a[p][c].abs() < 1e-15 {
            return None;
        }
        a.swap(c, p);
        b.swap(c, p);
        for r in c + 1..n {
            let f = a[r][c] / a[c][c];
            for k in c..n {
                a[r][k] -= f * a[c][k];
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = vec![0f64; n];
    for r in (0..n).rev() {
        x[r] = (b[r] - (r + 1..n).map(|k| a[r][k] * x[k]).sum::<f64>()) / a[r][r];
    }
    Some(x)
}

/// `softmax(z/T + β)` of every row, as f32 probability rows (the calibrated distribution).
pub fn apply_temperature_bias(logits: &[Vec<f32>], t: f64, bias: &[f64]) -> Result<Vec<Vec<f32>>> {
    let classes = check_matrix("apply_temperature_bias", logits)?;
    if bias.len() != classes || bias.iter().any(|b| !b.is_finite()) {
        return invalid(format!("apply_temperature_bias: {} finite biases needed, got {:?}", classes, bias));
    }
    let shifted: Vec<Vec<f32>> = logits.iter().map(|z| z.iter().zip(bias).map(|(&x, b)| (x as f64 / t + b) as f32).collect()).collect();
    apply_temperature(&shifted, 1.0).and_then(|p| if t.is_finite() && t > 0.0 { Ok(p) } else { invalid(format!("apply_temperature_bias: temperature {t}")) })
}

/// Logits standing for probability rows (`ln p`, zeros clamped to `1e-30`): softmax gives the rows
/// back, so a temperature can be applied to results that store only probabilities.
pub fn logits_of_probs(probs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    probs.iter().map(|r| r.iter().map(|&p| (p.max(1e-30) as f64).ln() as f32).collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(v: &[&[f32]]) -> Vec<Vec<f32>> {
        v.iter().map(|r| r.to_vec()).collect()
    }

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b} (tolerance {tol})");
    }

    // ---- KL ----

    #[test]
    fn kl_identical_rows_is_zero() {
        let p = rows(&[&[0.2, 0.3, 0.5], &[1.0, 0.0, 0.0]]);
        assert_eq!(kl_divergence(&p, &p).unwrap(), 0.0);
    }

    #[test]
    fn kl_two_class_hand_case() {
        // 0.5·ln(0.5/0.9) + 0.5·ln(0.5/0.1) = 0.5·(−0.587787) + 0.5·(1.609438) = 0.5108256
        let kl = kl_divergence(&rows(&[&[0.5, 0.5]]), &rows(&[&[0.9, 0.1]])).unwrap();
        close(kl, 0.5108256237659907, 1e-6);
    }

    #[test]
    fn kl_three_class_hand_case_and_mean() {
        // 0.2·ln 2 + 0.3·ln 0.5 + 0.5·ln(5/3) = 0.138629 − 0.207944 + 0.255413 = 0.1860981
        let (p, q) = (rows(&[&[0.2, 0.3, 0.5]]), rows(&[&[0.1, 0.6, 0.3]]));
        close(kl_divergence(&p, &q).unwrap(), 0.18609809382700082, 1e-6);
        // Mean with an identical pair: (0.1860981 + 0)/2.
        let (p2, q2) = (rows(&[&[0.2, 0.3, 0.5], &[0.1, 0.1, 0.8]]), rows(&[&[0.1, 0.6, 0.3], &[0.1, 0.1, 0.8]]));
        close(kl_divergence(&p2, &q2).unwrap(), 0.18609809382700082 / 2.0, 1e-6);
    }

    #[test]
    fn kl_zero_probabilities() {
        // Base zero: 1·ln(1/0.5) + 0 (0·ln 0 = 0) = ln 2 = 0.6931472.
        close(kl_divergence(&rows(&[&[1.0, 0.0]]), &rows(&[&[0.5, 0.5]])).unwrap(), std::f64::consts::LN_2, 1e-9);
        // Compressed zero, clamped at 1e-12: 0.5·ln(0.5/1) + 0.5·ln(0.5/1e-12)
        //   = 0.5·(−0.693147) + 0.5·(−0.693147 + 27.631021) = 13.1223634 — finite.
        let kl = kl_divergence(&rows(&[&[0.5, 0.5]]), &rows(&[&[1.0, 0.0]])).unwrap();
        close(kl, 13.12236337740433, 1e-6);
    }

    #[test]
    fn kl_refusals() {
        let p = rows(&[&[0.5, 0.5]]);
        let bad = |b: &[Vec<f32>], c: &[Vec<f32>]| matches!(kl_divergence(b, c), Err(Error::Invalid(_)));
        assert!(bad(&p, &rows(&[&[0.5, 0.5], &[0.5, 0.5]])), "row count mismatch");
        assert!(bad(&p, &rows(&[&[0.2, 0.3, 0.5]])), "class count mismatch");
        assert!(bad(&rows(&[&[0.5, 0.5], &[0.2, 0.3, 0.5]]), &rows(&[&[0.5, 0.5], &[0.2, 0.3, 0.5]])), "ragged rows");
        assert!(bad(&[], &[]), "empty");
        assert!(bad(&rows(&[&[]]), &rows(&[&[]])), "no classes");
        assert!(bad(&p, &rows(&[&[0.5, 0.6]])), "sum 1.1");
        assert!(bad(&rows(&[&[2.0, -1.0]]), &p), "negative entry (sums to 1)");
        assert!(bad(&p, &rows(&[&[f32::NAN, 0.5]])), "NaN");
        assert!(bad(&rows(&[&[3.0, -1.5]]), &p), "logits, not probabilities");
        // Within tolerance: a sum of 1.0005 is accepted.
        assert!(kl_divergence(&p, &rows(&[&[0.5005, 0.5]])).is_ok());
    }

    // ---- agreement and summary ----

    /// 5 examples, 3 classes, labels [0, 1, 2, 0, 1]:
    /// ex  base (pred, right?)        compressed (pred, right?)
    /// 0   [.7,.2,.1]  0 right        [.6,.3,.1]  0 right     agree
    /// 1   [.1,.8,.1]  1 right        [.5,.4,.1]  0 wrong     right→wrong
    /// 2   [.6,.2,.2]  0 wrong        [.2,.2,.6]  2 right     wrong→right
    /// 3   [.5,.3,.2]  0 right        [.2,.7,.1]  1 wrong     right→wrong
    /// 4   [.3,.3,.4]  2 wrong        [.3,.3,.4]  2 wrong     agree
    fn five() -> (Vec<Vec<f32>>, Vec<Vec<f32>>, Vec<u32>) {
        let base = rows(&[&[0.7, 0.2, 0.1], &[0.1, 0.8, 0.1], &[0.6, 0.2, 0.2], &[0.5, 0.3, 0.2], &[0.3, 0.3, 0.4]]);
        let comp = rows(&[&[0.6, 0.3, 0.1], &[0.5, 0.4, 0.1], &[0.2, 0.2, 0.6], &[0.2, 0.7, 0.1], &[0.3, 0.3, 0.4]]);
        (base, comp, vec![0, 1, 2, 0, 1])
    }

    #[test]
    fn agreement_hand_case_and_ties() {
        let (base, comp, _) = five();
        close(agreement_rate(&base, &comp).unwrap(), 2.0 / 5.0, 1e-12);
        // Ties → lowest index on both sides: [0.5, 0.5] and [0.5, 0.5] both pick 0; [0.4, 0.4, 0.2] picks 0 ≠ 1.
        close(agreement_rate(&rows(&[&[0.5, 0.5]]), &rows(&[&[0.5, 0.5]])).unwrap(), 1.0, 0.0);
        close(agreement_rate(&rows(&[&[0.4, 0.4, 0.2]]), &rows(&[&[0.3, 0.5, 0.2]])).unwrap(), 0.0, 0.0);
        assert!(agreement_rate(&base, &comp[..4]).is_err());
        assert!(agreement_rate(&[], &[]).is_err());
    }

    #[test]
    fn summary_hand_case() {
        let (base, comp, labels) = five();
        let s = hemorrhage(&base, &comp, &labels).unwrap();
        assert_eq!(s.n, 5);
        close(s.accuracy_base, 0.6, 1e-12); // 3/5 (ex 0, 1, 3)
        close(s.accuracy_compressed, 0.4, 1e-12); // 2/5 (ex 0, 2)
        close(s.accuracy_drop, 0.2, 1e-12);
        close(s.retention.unwrap(), 2.0 / 3.0, 1e-12); // 0.4/0.6
        assert_eq!((s.flipped_right_to_wrong, s.flipped_wrong_to_right), (2, 1));
        close(s.agreement, 0.4, 1e-12);
        assert_eq!(s.crossed_5pct, Some(true)); // 0.667 < 0.95
        // KL per example: 0.7 ln(7/6) + 0.2 ln(2/3) + 0 = 0.0268125; 0.1 ln 0.2 + 0.8 ln 2 + 0 = 0.3935740;
        // 0.6 ln 3 + 0 + 0.2 ln(1/3) = 0.4394449; 0.5 ln 2.5 + 0.3 ln(3/7) + 0.2 ln 2 = 0.3425854; 0.
        // Mean = 1.2024167/5 = 0.2404834.
        close(s.kl, 0.2404833533724287, 1e-6);
        // Identical models: nothing lost, no flips.
        let same = hemorrhage(&base, &base, &labels).unwrap();
        assert_eq!((same.accuracy_drop, same.kl, same.agreement, same.crossed_5pct), (0.0, 0.0, 1.0, Some(false)));
        // Refusals: label count, label out of range; a base accuracy of 0 leaves retention undefined.
        assert!(hemorrhage(&base, &comp, &labels[..4]).is_err());
        assert!(hemorrhage(&base, &comp, &[0, 1, 3, 0, 1]).is_err());
        let z = hemorrhage(&rows(&[&[0.9, 0.1]]), &rows(&[&[0.1, 0.9]]), &[1]).unwrap();
        assert_eq!((z.retention, z.crossed_5pct, z.flipped_wrong_to_right), (None, None, 1));
    }

    // ---- perplexity ----

    #[test]
    fn perplexity_hand_cases() {
        // exp(20/10) = e² = 7.3890561; exp(0) = 1.
        close(perplexity(20.0, 10).unwrap(), 7.38905609893065, 1e-12);
        assert_eq!(perplexity(0.0, 5).unwrap(), 1.0);
        assert!(perplexity(1.0, 0).is_err());
        assert!(perplexity(-1.0, 3).is_err());
        assert!(perplexity(f64::NAN, 3).is_err());
        // 5.47 → 5.75 (GPTQ 8 → 4 bit, §4.3): ratio 1.0511883, change 0.0511883 (> 5%).
        close(perplexity_ratio(5.47, 5.75).unwrap(), 5.75 / 5.47, 1e-12);
        close(perplexity_change(5.47, 5.75).unwrap(), 0.05118829981718459, 1e-12);
        assert!(perplexity_ratio(5.47, 5.75).unwrap() > PPL_RATIO_5PCT);
        close(perplexity_change(10.0, 8.0).unwrap(), -0.2, 1e-12);
        assert!(perplexity_ratio(0.5, 2.0).is_err());
        assert!(perplexity_change(2.0, f64::INFINITY).is_err());
    }

    // ---- ECE ----

    #[test]
    fn ece_hand_case_two_bins() {
        // B = 2: bin 0 = (0, 0.5], bin 1 = (0.5, 1].
        // ex conf pred label right  bin
        // 0  0.40 0    0     yes    0
        // 1  0.45 0    1     no     0     bin 0: acc 1/2, conf 0.425 → |0.5 − 0.425| = 0.075
        // 2  0.90 0    0     yes    1
        // 3  0.70 0    1     no     1     bin 1: acc 1/2, conf 0.8 → |0.5 − 0.8| = 0.3
        // ECE = 2/4·0.075 + 2/4·0.3 = 0.1875
        let p = rows(&[&[0.4, 0.3, 0.3], &[0.45, 0.35, 0.2], &[0.9, 0.05, 0.05], &[0.7, 0.2, 0.1]]);
        close(ece(&p, &[0, 1, 0, 1], 2).unwrap(), 0.1875, 1e-6);
        // One bin: acc 1/2, conf (0.4+0.45+0.9+0.7)/4 = 0.6125 → 0.1125.
        close(ece(&p, &[0, 1, 0, 1], 1).unwrap(), 0.1125, 1e-6);
        // A confidence of exactly 0.5 goes to bin 0 of (0, 0.5]: alone there, right → |1 − 0.5| = 0.5.
        close(ece(&rows(&[&[0.5, 0.5]]), &[0], 2).unwrap(), 0.5, 1e-12);
        assert_eq!(bin_of(0.0, 15), 0);
        assert_eq!(bin_of(1.0, 15), 14);
        assert_eq!(bin_of(0.5, 2), 0);
        assert_eq!(bin_of(0.5000001, 2), 1);
    }

    #[test]
    fn ece_perfectly_calibrated_is_zero() {
        // 10 rows at confidence 0.8 with 8 right; 5 rows at 0.6 with 3 right: every bin's accuracy
        // equals its confidence → ECE = 0 (up to f32 rounding of 0.8 and 0.6).
        let mut p = vec![vec![0.8f32, 0.2]; 10];
        p.extend(vec![vec![0.6f32, 0.4]; 5]);
        let mut labels = vec![0u32; 8];
        labels.extend([1, 1, 0, 0, 0, 1, 1]);
        assert!(ece(&p, &labels, ECE_BINS).unwrap() < 1e-6);
    }

    #[test]
    fn ece_refusals() {
        let p = rows(&[&[0.5, 0.5]]);
        assert!(ece(&p, &[0], 0).is_err());
        assert!(ece(&p, &[0, 1], 15).is_err());
        assert!(ece(&p, &[2], 15).is_err());
        assert!(ece(&rows(&[&[2.0, 1.0]]), &[0], 15).is_err());
        assert!(ece(&[], &[], 15).is_err());
    }

    // ---- temperature ----

    /// `n0` rows of logits [a, 0] with label 0 and `n1` with label 1.
    fn binary_set(a: f32, n0: usize, n1: usize) -> (Vec<Vec<f32>>, Vec<u32>) {
        let logits = vec![vec![a, 0.0]; n0 + n1];
        let mut labels = vec![0u32; n0];
        labels.extend(vec![1u32; n1]);
        (logits, labels)
    }

    #[test]
    fn temperature_exact_optimum() {
        // Rows [2, 0], 3 of label 0 and 1 of label 1: the NLL −3 ln σ(2/T) − ln(1 − σ(2/T)) is least
        // where σ(2/T) = 3/4, i.e. 2/T = ln 3, T = 2/ln 3 = 1.8204785.
        let (z, y) = binary_set(2.0, 3, 1);
        close(fit_temperature(&z, &y).unwrap(), 2.0 / 3f64.ln(), 1e-4);
    }

    #[test]
    fn temperature_recovers_two() {
        // Labels in proportion softmax([2,0]/2) = σ(1) = 0.7310586: 7311 of label 0, 2689 of label 1
        // → T = 2/logit(0.7311) = 2/1.0000703 ≈ 1.99986 (within 0.02 of 2).
        let (z, y) = binary_set(2.0, 7311, 2689);
        close(fit_temperature(&z, &y).unwrap(), 2.0, 0.02);
    }

    #[test]
    fn temperature_edges_and_refusals() {
        // Separable data: the NLL keeps falling as T → 0, so the search ends at T_MIN.
        let (z, y) = binary_set(2.0, 4, 0);
        close(fit_temperature(&z, &y).unwrap(), T_MIN, 1e-5);
        // Labels against the logits everywhere: the NLL ln(1 + e^{2/T}) falls (towards ln 2) as T → ∞, so the search ends at T_MAX.
        let (z, y) = binary_set(2.0, 0, 4);
        close(fit_temperature(&z, &y).unwrap(), T_MAX, 1e-3);
        assert!(fit_temperature(&[], &[]).is_err());
        assert!(fit_temperature(&rows(&[&[1.0, f32::INFINITY]]), &[0]).is_err());
        assert!(fit_temperature(&rows(&[&[1.0, 0.0]]), &[2]).is_err());
        assert!(fit_temperature(&rows(&[&[1.0, 0.0]]), &[0, 1]).is_err());
    }

    #[test]
    fn apply_temperature_t1_is_softmax_and_t_scales() {
        let z = rows(&[&[1.0, 2.0, 3.0], &[-5.0, 0.0, 40.0]]);
        let p = apply_temperature(&z, 1.0).unwrap();
        for (r, zr) in p.iter().zip(&z) {
            for (a, b) in r.iter().zip(crate::eval::softmax(zr)) {
                assert!((a - b).abs() < 1e-6, "{a} vs {b}");
            }
        }
        // [2, 0] at T = 2 → σ(1) = 0.7310586.
        let q = apply_temperature(&rows(&[&[2.0, 0.0]]), 2.0).unwrap();
        close(q[0][0] as f64, 0.7310585786300049, 1e-6);
        assert!(apply_temperature(&z, 0.0).is_err());
        assert!(apply_temperature(&z, f64::NAN).is_err());
        assert!(apply_temperature(&z, -1.0).is_err());
    }

    #[test]
    fn fitting_lowers_ece_on_an_overconfident_set() {
        // Logits [a, 0] for a = 2, 4, 6, 8 with labels drawn (by count) from σ(a/4): the model is
        // over-confident by a factor 4 in its logits. Counts of label 0 per 100 rows: σ(0.5) = 0.62,
        // σ(1) = 0.73, σ(1.5) = 0.82, σ(2) = 0.88.
        let mut z = Vec::new();
        let mut y = Vec::new();
        for (a, n0) in [(2.0f32, 62usize), (4.0, 73), (6.0, 82), (8.0, 88)] {
            let (zz, yy) = binary_set(a, n0, 100 - n0);
            z.extend(zz);
            y.extend(yy);
        }
        let t = fit_temperature(&z, &y).unwrap();
        close(t, 4.0, 0.2);
        let before = ece(&apply_temperature(&z, 1.0).unwrap(), &y, ECE_BINS).unwrap();
        let after = ece(&apply_temperature(&z, t).unwrap(), &y, ECE_BINS).unwrap();
        // Before: confidences σ(2..8) = 0.88, 0.98, 0.998, 0.9997 against accuracies 0.62..0.88 → ECE ≈ 0.19.
        assert!(before > 0.15, "ECE before {before}");
        assert!(after < 0.02 && after <= before, "ECE after {after} vs before {before}");
        // And the fitted T is a minimum of the NLL: T ± 1% is no better.
        let nll = |t: f64| mean_nll(&z, &y, 1.0 / t);
        assert!(nll(t) <= nll(t * 1.01) && nll(t) <= nll(t * 0.99));
    }

    // ---- decoding calibration (§4.5.3) ----

    #[test]
    fn kl_temperature_undoes_a_temperature_change_and_never_raises_kl() {
        // The original's logits, and a "compressed" copy that is the original sharpened by 1/T = 2.5
        // and shifted towards class 0: the fit recovers T ≈ 2.5 and a bias that removes the shift.
        let mut rng = crate::rng::SplitMix64::new(3);
        let z: Vec<Vec<f32>> = (0..200).map(|_| rng.vec_f32(3, -2.0, 2.0)).collect();
        let base = apply_temperature(&z, 1.0).unwrap();
        let comp: Vec<Vec<f32>> = z.iter().map(|r| vec![r[0] * 2.5 + 1.0, r[1] * 2.5, r[2] * 2.5]).collect();
        let before = mean_kl_logits(&base, &comp, 1.0, &[0.0; 3]);
        let (t, b) = fit_temperature_kl(&base, &comp).unwrap();
        assert!((t - 2.5).abs() < 1e-3, "T {t}");
        let after = kl_divergence(&base, &apply_temperature_bias(&comp, t, &b).unwrap()).unwrap();
        assert!(after < 1e-6 && after < before, "{before} -> {after}, β {b:?}");
        assert!((b[0] - b[1] + 0.4).abs() < 1e-3 && (b[1] - b[2]).abs() < 1e-3, "β {b:?}");
        // Already calibrated: T = 1 and β = 0 stay (KL 0).
        let (t1, b1) = fit_temperature_kl(&base, &z).unwrap();
        assert!((t1 - 1.0).abs() < 1e-3 && b1.iter().all(|x| x.abs() < 1e-6), "{t1} {b1:?}");
        // Refusals.
        assert!(fit_temperature_kl(&base[..2], &comp).is_err());
        assert!(fit_temperature_kl(&comp, &comp).is_err(), "logits as probabilities");
        assert!(apply_temperature_bias(&comp, 1.0, &[0.0]).is_err());
        // Probabilities back from their logits.
        let back = apply_temperature(&logits_of_probs(&base), 1.0).unwrap();
        assert!(back.iter().zip(&base).all(|(x, y)| x.iter().zip(y).all(|(a, b)| (a - b).abs() < 1e-6)));
    }

    #[test]
    fn temperature_scaling_lowers_ece_on_its_calibration_split() {
        // Overconfident logits: labels drawn from softmax(z), the model reports softmax(3z).
        let mut rng = crate::rng::SplitMix64::new(8);
        let z: Vec<Vec<f32>> = (0..2000).map(|_| rng.vec_f32(2, -1.5, 1.5)).collect();
        let p = apply_temperature(&z, 1.0).unwrap();
        let labels: Vec<u32> = p.iter().map(|r| (rng.next_f32() >= r[0]) as u32).collect();
        let over: Vec<Vec<f32>> = z.iter().map(|r| r.iter().map(|x| x * 3.0).collect()).collect();
        let t = fit_temperature(&over, &labels).unwrap();
        let before = ece(&apply_temperature(&over, 1.0).unwrap(), &labels, ECE_BINS).unwrap();
        let after = ece(&apply_temperature(&over, t).unwrap(), &labels, ECE_BINS).unwrap();
        assert!((t - 3.0).abs() < 0.5, "T {t}");
        assert!(after <= before && after < 0.05, "{before} -> {after}");
    }

}
