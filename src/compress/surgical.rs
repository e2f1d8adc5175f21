//! The "surgical" rank search of SFSD (specs/methods.md §2.5, §2.9 for classifiers): decompose one
//! linear layer at a time, from the last block's last linear down to the first block past `start`,
//! keep the smallest rank whose task accuracy stays within `δ` of the **original** model's, and
//! restore the dense layer when no rank saves parameters or the accepted set fails the 20% check.
//!
//! Splits (the reference's protocol): the task's evaluation examples are shuffled with seed 42;
//! the search split is the first 20%, used as three chunks of `⌊0.0666·N⌋` examples and as one
//! block of `⌊0.2·N⌋`; the test split is `[⌊0.2·N⌋, N − 1)` (the reference drops the last example).
//! Per linear i, candidate ranks are `[1, ⌊0.1κ⌋, …, ⌊1.0κ⌋]` (κ the break-even rank): for each
//! chunk the smallest rank with `acc_c ≥ b_c − δ` (κ when none), stopping early once a chunk needs κ;
//! `r_i` is the largest of the chunk ranks; layer i stays at `r_i` unless `r_i = κ` or
//! `acc_20 < B20 − δ`. The search is greedy and cumulative.
//!
//! The shuffle is ours (Fisher–Yates on [`crate::rng::SplitMix64`] seeded 42), not Python's: the
//! protocol is the reference's, the example order is not. The bases are computed once at full rank
//! and sliced ([`Basis`]), so no candidate recomputes statistics. The evaluation is the caller's: it
//! gets a candidate checkpoint (reference form: each decomposed weight written back as `W2·W1`, the
//! feature-space bias as `<prefix>.bias`) and a range of positions in the shuffled order.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::calibrate::{self, Needs};
use super::apply::Form;
use super::lowrank::{self, FeatureBasis, LowRank, Svd};
use crate::data::calibration::{CalibrationRecord, CalibrationSet};
use crate::backend::{Data, HostTensor};
use crate::error::{Error, Result};
use crate::io::Checkpoint;
use crate::models::config::Arch;

/// The reference's shuffle seed.
pub const SHUFFLE_SEED: u64 = 42;

/// Each block's decomposable linears in module order (methods.md §2.9): GLA's two-factor `gk_proj`
/// is low-rank already and excluded; HGRN-bit's BitLinears are packed ternary and not decomposed.
pub fn block_linears(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::Transformer => &["attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"],
        Arch::Gla => &["attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.g_proj", "attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"],
        Arch::HgrnBit => &[],
    }
}

/// The first block the search may touch by default: `⌈L/8⌉` (the reference leaves 4 of 32 blocks dense).
pub fn default_start_block(layers: usize) -> usize {
    layers.div_ceil(8)
}

/// Candidate ranks `[1, ⌊0.1κ⌋, …, ⌊1.0κ⌋]`, ascending, without repeats or zeros.
pub fn rank_grid(kappa: usize) -> Vec<usize> {
    let mut g: Vec<usize> = std::iter::once(1).chain((1..=10).map(|t| (kappa as f64 * (t as f64 / 10.0)) as usize)).filter(|&r| r >= 1 && r <= kappa).collect();
    g.sort_unstable();
    g.dedup();
    g
}

/// The reference's splits of N shuffled examples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Splits {
    pub chunks: [Range<usize>; 3],
    pub block: Range<usize>,
    pub test: Range<usize>,
}

pub fn splits(n: usize) -> Result<Splits> {
    let c = (0.0666 * n as f64) as usize;
    let b = (0.2 * n as f64) as usize;
    if c == 0 || n < b + 2 {
        return Err(Error::Invalid(format!("surgical scan: {n} evaluation examples are too few (a search chunk is 6.66% of them and must hold one)")));
    }
    Ok(Splits { chunks: [0..c, c..2 * c, 2 * c..3 * c], block: 0..b, test: b..n - 1 })
}

/// The order in which the N examples are used (Fisher–Yates, seeded).
pub fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = crate::rng::SplitMix64::new(seed);
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        v.swap(i, rng.below(i as u64 + 1) as usize);
    }
    v
}

/// Which decomposition the scan slices: SFSD's feature space (the paper's, and our default) or the
/// weight-space SVD baseline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Space {
    #[default]
    Feature,
    Weight,
}

/// A layer's decomposition at full rank, sliced to any rank.
pub enum Basis {
    /// Weight space (§2.2): the SVD of W.
    Weight(Svd),
    /// Feature space (§2.3): the eigenbasis of the layer's output covariance on calibration data.
    Feature { basis: FeatureBasis, mean_correction: bool },
}

impl Basis {
    pub fn factors(&self, w: &[f32], inp: usize, r: usize) -> Result<LowRank> {
        match self {
            Basis::Weight(s) => s.factors(r),
            Basis::Feature { basis, mean_correction } => basis.factors(w, inp, r, None, *mean_correction),
        }
    }

    /// Parameters beside the two factors: the mean-correction bias `[out]` in feature space.
    pub fn bias_params(&self) -> usize {
        match self {
            Basis::Feature { basis, mean_correction: true } => basis.out,
            _ => 0,
        }
    }
}

/// One linear the search may decompose, in search order.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// `model.layers.{l}.{linear}` (the tensors are `.weight`, and `.bias` once decomposed in feature space).
    pub prefix: String,
    pub block: usize,
    pub out: usize,
    pub inp: usize,
}

/// The search order: blocks from the last down to `start_block`, each block's linears from the last.
pub fn targets(ck: &Checkpoint, start_block: usize) -> Result<Vec<Target>> {
    let arch = crate::models::config::Common::parse(&ck.config)?.arch;
    let layers = ck.config_usize("num_hidden_layers")?;
    if start_block >= layers {
        return Err(Error::Invalid(format!("surgical scan: start block {start_block} leaves nothing to search in a {layers}-block model")));
    }
    let mut out = Vec::new();
    for l in (start_block..layers).rev() {
        for lin in block_linears(arch).iter().rev() {
            let prefix = format!("model.layers.{l}.{lin}");
            let t = ck.tensors.get(&format!("{prefix}.weight")).ok_or_else(|| Error::Invalid(format!("surgical scan: the checkpoint has no {prefix}.weight")))?;
            match (t.shape.as_slice(), &t.data) {
                ([o, i], Data::F32(_)) => out.push(Target { prefix, block: l, out: *o, inp: *i }),
                _ => return Err(Error::Invalid(format!("surgical scan: {prefix}.weight must be an f32 matrix"))),
            }
        }
    }
    Ok(out)
}

/// Weight-space bases of every target.
pub fn weight_bases(ck: &Checkpoint, targets: &[Target]) -> Result<BTreeMap<String, Basis>> {
    targets.iter().map(|t| Ok((t.prefix.clone(), Basis::Weight(lowrank::svd(weight(ck, t)?, t.out, t.inp)?)))).collect()
}

/// Feature-space bases of every target (§2.3), from one pass of the calibration set through the
/// original model's differentiable twin (the statistics are never recomputed, §2.3 step 8).
pub fn feature_bases(ck: &Checkpoint, targets: &[Target], set: &CalibrationSet, mean_correction: bool) -> Result<(BTreeMap<String, Basis>, CalibrationRecord)> {
    let names: Vec<String> = targets.iter().map(|t| format!("{}.weight", t.prefix)).collect();
    let c = calibrate::capture(ck, set, &names, Needs { outputs: true, ..Needs::default() })?;
    let mut bases = BTreeMap::new();
    for (t, name) in targets.iter().zip(&names) {
        let stats = c.get(name)?.outputs.as_ref().ok_or_else(|| Error::Invalid(format!("{name}: no output statistics were collected")))?;
        bases.insert(t.prefix.clone(), Basis::Feature { basis: lowrank::feature_basis(stats)?, mean_correction });
    }
    Ok((bases, c.record))
}

fn weight<'a>(ck: &'a Checkpoint, t: &Target) -> Result<&'a [f32]> {
    ck.tensors.get(&format!("{}.weight", t.prefix)).ok_or_else(|| Error::Invalid(format!("no {}.weight", t.prefix)))?.as_f32("surgical scan")
}

/// What the search did to one linear.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScanStep {
    pub linear: String,
    pub kappa: usize,
    /// The rank each chunk asked for (fewer than 3 when one already needed κ).
    pub chunk_ranks: Vec<usize>,
    /// The rank tried, and the 20% block's accuracy with it (absent when it was κ).
    pub rank: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_accuracy: Option<f64>,
    /// Whether the layer stays decomposed.
    pub kept: bool,
}

/// The search's record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScanRecord {
    pub delta: f64,
    pub start_block: usize,
    /// Examples of the task's split, and how they were split.
    pub examples: usize,
    pub splits: Splits,
    pub chunk_baselines: Vec<f64>,
    pub block_baseline: f64,
    pub steps: Vec<ScanStep>,
    /// Accepted ranks by linear.
    pub ranks: BTreeMap<String, usize>,
    /// Parameters of the searched linears, dense and after.
    pub params_before: usize,
    pub params_after: usize,
    /// Accuracy on the disjoint test split, original and compressed.
    pub test_accuracy_before: f64,
    pub test_accuracy_after: f64,
    /// Evaluations run.
    pub evaluations: usize,
}

/// Writes the accepted decompositions into a copy of `base` (reference form).
pub fn compose(base: &Checkpoint, targets: &[Target], bases: &BTreeMap<String, Basis>, ranks: &BTreeMap<String, usize>) -> Result<Checkpoint> {
    compose_form(base, targets, bases, ranks, Form::Reference)
}

/// Writes the accepted decompositions into a copy of `base` in `form`: packed, each as its two factors
/// `<prefix>.weight_lr_a` `[r, in]` and `<prefix>.weight_lr_b` `[out, r]` ([`crate::compress::apply`]), which models
/// run as they are; reference, as their product `<prefix>.weight`. The feature-space bias goes to `<prefix>.bias` in
/// both.
pub fn compose_form(base: &Checkpoint, targets: &[Target], bases: &BTreeMap<String, Basis>, ranks: &BTreeMap<String, usize>, form: Form) -> Result<Checkpoint> {
    let mut ck = base.clone();
    for t in targets {
        let Some(&r) = ranks.get(&t.prefix) else { continue };
        let basis = bases.get(&t.prefix).ok_or_else(|| Error::Invalid(format!("surgical scan: no basis for {}", t.prefix)))?;
        let f = basis.factors(weight(base, t)?, t.inp, r)?;
        if form == Form::Packed && r > 0 {
            ck.tensors.remove(&format!("{}.weight", t.prefix));
            ck.tensors.insert(format!("{}.weight_lr_a", t.prefix), HostTensor::f32(&[r, t.inp], f.w1.clone())?);
            ck.tensors.insert(format!("{}.weight_lr_b", t.prefix), HostTensor::f32(&[t.out, r], f.w2.clone())?);
        } else {
            ck.tensors.insert(format!("{}.weight", t.prefix), HostTensor::f32(&[t.out, t.inp], f.reconstruct()?)?);
        }
        if let Some(b) = f.bias {
            ck.tensors.insert(format!("{}.bias", t.prefix), HostTensor::f32(&[t.out], b)?);
        }
    }
    Ok(ck)
}

/// Runs the search. `eval(checkpoint, positions)` returns the accuracy on the examples at those
/// positions of the shuffled order (see [`shuffled`]); `n` is the number of examples.
pub async fn scan(
    base: &Checkpoint,
    targets: &[Target],
    bases: &BTreeMap<String, Basis>,
    n: usize,
    delta: f64,
    start_block: usize,
    mut eval: impl AsyncFnMut(&Checkpoint, Range<usize>) -> Result<f64>,
) -> Result<(Checkpoint, ScanRecord)> {
    if !(0.0..=1.0).contains(&delta) {
        return Err(Error::Invalid(format!("surgical scan: δ must be in [0, 1], got {delta}")));
    }
    let sp = splits(n)?;
    let mut evaluations = 0;
    let mut chunk_baselines = Vec::new();
    for c in &sp.chunks {
        chunk_baselines.push(eval(base, c.clone()).await?);
    }
    let block_baseline = eval(base, sp.block.clone()).await?;
    let test_accuracy_before = eval(base, sp.test.clone()).await?;
    evaluations += 5;
    let mut ranks: BTreeMap<String, usize> = BTreeMap::new();
    let mut steps = Vec::new();
    for t in targets {
        let kappa = lowrank::break_even_rank(t.out, t.inp);
        let grid = rank_grid(kappa);
        let mut chunk_ranks = Vec::new();
        for (c, range) in sp.chunks.iter().enumerate() {
            let mut chosen = kappa;
            for &r in &grid {
                let mut trial = ranks.clone();
                trial.insert(t.prefix.clone(), r);
                evaluations += 1;
                if eval(&compose(base, targets, bases, &trial)?, range.clone()).await? >= chunk_baselines[c] - delta {
                    chosen = r;
                    break;
                }
            }
            chunk_ranks.push(chosen);
            if chosen >= kappa {
                break;
            }
        }
        let rank = chunk_ranks.iter().copied().max().unwrap_or(kappa);
        let mut step = ScanStep { linear: t.prefix.clone(), kappa, chunk_ranks, rank, block_accuracy: None, kept: false };
        if rank < kappa {
            let mut trial = ranks.clone();
            trial.insert(t.prefix.clone(), rank);
            evaluations += 1;
            let acc = eval(&compose(base, targets, bases, &trial)?, sp.block.clone()).await?;
            step.block_accuracy = Some(acc);
            if acc >= block_baseline - delta {
                step.kept = true;
                ranks = trial;
            }
        }
        steps.push(step);
    }
    let out = compose(base, targets, bases, &ranks)?;
    let test_accuracy_after = eval(&out, sp.test.clone()).await?;
    evaluations += 1;
    let params_before = targets.iter().map(|t| t.out * t.inp).sum();
    let params_after = targets
        .iter()
        .map(|t| ranks.get(&t.prefix).map_or(t.out * t.inp, |&r| lowrank::factor_params(t.out, t.inp, r) + bases[&t.prefix].bias_params()))
        .sum();
    let rec = ScanRecord {
        delta,
        start_block,
        examples: n,
        splits: sp,
        chunk_baselines,
        block_baseline,
        steps,
        ranks,
        params_before,
        params_after,
        test_accuracy_before,
        test_accuracy_after,
        evaluations,
    };
    Ok((out, rec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_splits_and_shuffle() {
        assert_eq!(rank_grid(64), [1, 6, 12, 19, 25, 32, 38, 44, 51, 57, 64]);
        assert_eq!(rank_grid(5), [1, 2, 3, 4, 5]);
        assert_eq!(rank_grid(0), Vec::<usize>::new());
        // N = 872 (SST-2 validation): chunks of ⌊58.07⌋ = 58, block ⌊174.4⌋ = 174, test [174, 871).
        let s = splits(872).unwrap();
        assert_eq!(s.chunks, [0..58, 58..116, 116..174]);
        assert_eq!((s.block, s.test), (0..174, 174..871));
        assert!(splits(10).is_err());
        let a = shuffled(100, SHUFFLE_SEED);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(a, sorted);
        assert_eq!(a, shuffled(100, SHUFFLE_SEED));
        assert_eq!(default_start_block(2), 1);
        assert_eq!(default_start_block(32), 4);
    }
}
