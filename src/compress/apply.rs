//! A compression recipe applied to a whole checkpoint, in one of two [`Form`]s:
//!
//! - **packed** ([`apply`], the default): quantized and low-rank weights are stored as what they are, and models run
//!   on them as they are ([`crate::nn::linear::Linear`]'s packed variants, picked by [`crate::models`]' loader from
//!   the tensor names). `<prefix>.weight` becomes
//!
//!   | method | tensors |
//!   |---|---|
//!   | int8 | `weight_int8` u32 `[N, ⌈K/4⌉]` ([`crate::backend::int8`]) + `weight_scale` `[N]` |
//!   | int4 | `weight_int4` u32 `[N, K/8]` ([`quant::int4`]) + `weight_scale` `[N, K/g]` |
//!   | ternary | `weight_ternary` u32 `[N, ⌈K/16⌉]` ([`crate::backend::ternary`]) + `weight_scale` `[1]` (weight-only: f32 activations) |
//!   | svd, sfsd | `weight_lr_a` `[r, K]` + `weight_lr_b` `[N, r]` (sfsd: and `bias` `[N]`, see below) |
//!
//!   and the record's `bytes_compressed` is exactly the bytes of those tensors. Pruning has no sparse format here:
//!   pruned weights stay dense f32 in both forms.
//! - **reference** ([`apply_reference`]): every compressed weight is written back as the f32 matrix it stands for
//!   (dequantized codes, pruned zeros, the product of the low-rank factors), so any backend runs it on its plain
//!   product: the slow twin of the packed model (tests compare their logits). Its record is the packed form's.
//!
//! The record also says how far the weights moved.
//!
//! Targets: the 2-D f32 weights under `model.layers.` (attention and MLP projections, GLA's low-rank gate) — not
//! the embeddings, the norms, the LM head or the classifier heads [default: the seed papers compress the blocks'
//! linear layers, methods.md §2.9, §4.3]. HGRN-bit's BitLinear weights are already packed ternary (`U32`): they are
//! left as they are and listed under `skipped`. `drop_layers` removes whole blocks and renumbers the rest.
//! `layer_parallel` leaves every weight as it is and writes the stretch into `config.json`
//! (`trilemma.layer_parallel`), which the loader reads (methods.md §1, [`crate::models::parallel`]).
//!
//! Calibration-based recipes (`wanda`, `gradient_aware`, `sfsd`) first run a seeded subset of the bundled calibration
//! set through the checkpoint's differentiable twin ([`super::calibrate`]); [`apply_with`] takes which subset
//! ([`Calibration`]: task or mixed, seed, size) and the record names it (source, task, size, seed, sha256). SFSD is
//! written as the factors `V_rᵀ W` and `V_r` (reference form: their product `V_r V_rᵀ W`) and, with
//! `mean_correction`, a bias `<prefix>.bias` `[N]`; it leaves GLA's two-factor gate
//! projection `gk_proj` alone (low-rank already, methods.md §2.9) and, like `svd`, compresses every block.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::calibrate::{self, Captured, Needs};
use super::{lowrank, prune, quant, Footprint};
use crate::backend::{Data, HostTensor};
use crate::data::calibration::{self as cal_data, CalibrationRecord};
use crate::data::Task;
use crate::error::{Error, Result};
use crate::io::Checkpoint;
use crate::models::parallel::{self, LayerParallel, MlpNorm};

const LAYER_PREFIX: &str = "model.layers.";
/// A tensor with one row per layer outside the blocks (HGRN's `lower_bounds`, models.md).
const PER_LAYER_ROWS: &str = "model.lower_bounds";

fn default_n() -> usize {
    prune::DEFAULT_N_M.0
}
fn default_m() -> usize {
    prune::DEFAULT_N_M.1
}
fn default_group() -> usize {
    128
}
fn default_alpha() -> f64 {
    1.0
}
fn default_true() -> bool {
    true
}

/// Which weights a score-based pruning removes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// The `sparsity` share of the lowest scores of every output row (Wanda's comparison group).
    #[default]
    Unstructured,
    /// N:M semi-structured: the N highest scores of every M consecutive inputs of a row kept (2:4 by default).
    NM,
    /// Whole output channels: the `sparsity` share of rows with the lowest summed score.
    Structured,
}

/// The calibration data of the calibration-based recipes (`wanda`, `gradient_aware`, `sfsd`): a seeded subset of
/// the bundled set ([`crate::data::calibration`]), of one task (labelled for its head) or mixed over the seven tasks.
/// The default is the mixed set, seed 42, 128 examples.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    #[serde(default)]
    pub task: Option<Task>,
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default = "default_size")]
    pub size: usize,
}

fn default_seed() -> u64 {
    42
}
fn default_size() -> usize {
    cal_data::DEFAULT_SIZE
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration { task: None, seed: default_seed(), size: default_size() }
    }
}

/// One compression, by the name a spec and `trilemma compress` use.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum Recipe {
    /// Unstructured magnitude pruning per tensor: the `sparsity` share of smallest |w| set to zero.
    Magnitude { sparsity: f64 },
    /// N:M semi-structured pruning (2:4 by default): in every M consecutive input weights of a row the N largest kept.
    NM {
        #[serde(default = "default_n")]
        n: usize,
        #[serde(default = "default_m")]
        m: usize,
    },
    /// Structured pruning: the `sparsity` share of output channels (rows) with the smallest L2 norm set to zero.
    StructuredRows { sparsity: f64 },
    /// int8 symmetric per output channel; `activations: int8` also quantises each linear's input per token.
    Int8 {
        #[serde(default, skip_serializing_if = "ActQuant::is_f32")]
        activations: ActQuant,
    },
    /// int4 symmetric per input group of 32, 64 or 128.
    Int4 {
        #[serde(default = "default_group")]
        group: usize,
        #[serde(default, skip_serializing_if = "ActQuant::is_f32")]
        activations: ActQuant,
    },
    /// Ternary absmean (BitNet b1.58) per tensor.
    Ternary {
        #[serde(default, skip_serializing_if = "ActQuant::is_f32")]
        activations: ActQuant,
    },
    /// Truncated SVD with rank `⌊κ·ρ⌋`, `κ = ⌊in·out/(in+out)⌋` (the break-even rank, methods.md §2.3), ρ = `rank_fraction`.
    Svd { rank_fraction: f64 },
    /// Remove these blocks (0-based) and renumber the rest.
    DropLayers { layers: Vec<usize> },
    /// SFSD's surgical rank search on the run's task ([`super::surgical`]): needs the task's validation split, so
    /// the engine and `trilemma compress --task` run it, not [`apply`]. `start_block` defaults to `⌈L/8⌉`; `space`
    /// `feature` (default: bases from the calibration data's output covariance, with SFSD's `mean_correction` bias)
    /// or `weight` (the weight-SVD baseline).
    Surgical {
        #[serde(default)]
        delta: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_block: Option<usize>,
        #[serde(default)]
        space: super::surgical::Space,
        #[serde(default = "default_true")]
        mean_correction: bool,
    },
    /// Layer Parallelism (arXiv 2502.02790, methods.md §1): blocks `[start, end)` (an even number) run as consecutive
    /// pairs reading the same input, their updates summed; `fused` (default true) runs each pair as one wider layer
    /// (§1.4), `false` as the reference pair form. Weights unchanged; the sequential depth drops by `(end − start)/2`.
    LayerParallel {
        start: usize,
        end: usize,
        #[serde(default)]
        mlp_norm: MlpNorm,
        #[serde(default = "default_fused")]
        fused: bool,
    },
    /// Wanda (Sun et al. 2023): scores `|W_ij|·‖X_j‖₂` with the input norms on calibration data; `pattern`
    /// unstructured (per output row, the paper's default; needs `sparsity`), `n_m` (`n`:`m`, 2:4 by default) or
    /// structured (whole rows).
    Wanda {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sparsity: Option<f64>,
        #[serde(default)]
        pattern: Pattern,
        #[serde(default = "default_n")]
        n: usize,
        #[serde(default = "default_m")]
        m: usize,
    },
    /// Gradient-aware pruning (methods.md §4.5.1): `S = |W|·‖X_j‖₂ + α|W·G|`, both terms at unit mean per layer, G the
    /// cross-entropy gradient summed over the labelled calibration examples; patterns as `wanda`.
    GradientAware {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sparsity: Option<f64>,
        #[serde(default = "default_alpha")]
        alpha: f64,
        #[serde(default)]
        pattern: Pattern,
        #[serde(default = "default_n")]
        n: usize,
        #[serde(default = "default_m")]
        m: usize,
    },
    /// Whole attention heads: the `sparsity` share of heads per block with the smallest weight norm (their q/k/v(/g)
    /// rows and o_proj columns together) set to zero in all those projections.
    StructuredHeads { sparsity: f64 },
    /// SFSD feature-space decomposition (methods.md §2.3) at rank `⌊κ·ρ⌋` from the layer's output covariance on
    /// calibration data; `mean_correction` adds the bias `(I − V_r V_rᵀ)μ` as `<prefix>.bias`.
    Sfsd {
        rank_fraction: f64,
        #[serde(default = "default_true")]
        mean_correction: bool,
    },
}

fn default_fused() -> bool {
    true
}

/// What the quantised linears' inputs are (methods.md §4.5): f32 (weight-only quantisation), or int8 with one scale per
/// token computed from the row itself at run time, `s_t = max_i |x_ti| / 127` (dynamic per-token activation scaling;
/// with int8 weights, W8A8). Recorded in the compressed folder's `config.json`, which the loader reads
/// ([`act_int8`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActQuant {
    #[default]
    F32,
    Int8,
}

impl ActQuant {
    pub fn is_f32(&self) -> bool {
        *self == ActQuant::F32
    }

    fn suffix(&self) -> &'static str {
        match self {
            ActQuant::F32 => "",
            ActQuant::Int8 => " a8",
        }
    }
}

/// Whether a compression recorded in `config` (`trilemma.compressions[].recipe.activations`) quantises the
/// compressed linears' inputs to int8 per token.
pub fn act_int8(config: &serde_json::Value) -> bool {
    config.pointer("/trilemma/compressions").and_then(|v| v.as_array()).is_some_and(|l| {
        l.iter().any(|c| c.pointer("/recipe/activations").and_then(|a| a.as_str()) == Some("int8"))
    })
}

impl Recipe {
    /// int8 per output channel, weight-only.
    pub fn int8() -> Self {
        Recipe::Int8 { activations: ActQuant::F32 }
    }

    /// int4 per group of `group` inputs, weight-only.
    pub fn int4(group: usize) -> Self {
        Recipe::Int4 { group, activations: ActQuant::F32 }
    }

    /// Ternary absmean, weight-only.
    pub fn ternary() -> Self {
        Recipe::Ternary { activations: ActQuant::F32 }
    }
}

impl Recipe {
    /// A short label for tables ("magnitude 0.5", "int4 g128").
    pub fn label(&self) -> String {
        match self {
            Recipe::Magnitude { sparsity } => format!("magnitude {sparsity}"),
            Recipe::NM { n, m } => format!("{n}:{m}"),
            Recipe::StructuredRows { sparsity } => format!("structured rows {sparsity}"),
            Recipe::Int8 { activations } => format!("int8{}", activations.suffix()),
            Recipe::Int4 { group, activations } => format!("int4 g{group}{}", activations.suffix()),
            Recipe::Ternary { activations } => format!("ternary{}", activations.suffix()),
            Recipe::Svd { rank_fraction } => format!("svd ρ={rank_fraction}"),
            Recipe::DropLayers { layers } => format!("drop layers {layers:?}"),
            Recipe::Surgical { delta, start_block, space, mean_correction } => {
                let from = start_block.map_or(String::new(), |b| format!(" from block {b}"));
                let how = match (space, mean_correction) {
                    (super::surgical::Space::Weight, _) => ", weight space",
                    (_, false) => ", no bias",
                    _ => "",
                };
                format!("surgical δ={delta}{from}{how}")
            }
            Recipe::LayerParallel { start, end, mlp_norm, fused } => {
                let norm = if *mlp_norm == MlpNorm::Mean { ", mean norm" } else { "" };
                format!("layer-parallel [{start}, {end}){norm}{}", if *fused { "" } else { ", unfused" })
            }
            Recipe::Wanda { sparsity, pattern, n, m } => format!("wanda {}", pattern_label(*sparsity, *pattern, *n, *m)),
            Recipe::GradientAware { sparsity, alpha, pattern, n, m } => format!("gradient-aware {} α={alpha}", pattern_label(*sparsity, *pattern, *n, *m)),
            Recipe::StructuredHeads { sparsity } => format!("structured heads {sparsity}"),
            Recipe::Sfsd { rank_fraction, mean_correction: true } => format!("sfsd ρ={rank_fraction}"),
            Recipe::Sfsd { rank_fraction, mean_correction: false } => format!("sfsd ρ={rank_fraction} no bias"),
        }
    }

    /// The calibration statistics the recipe needs (`None`: it works from the weights alone).
    pub fn needs(&self) -> Option<Needs> {
        match self {
            Recipe::Wanda { .. } => Some(Needs { inputs: true, ..Needs::default() }),
            Recipe::GradientAware { .. } => Some(Needs { inputs: true, grads: true, ..Needs::default() }),
            Recipe::Sfsd { .. } => Some(Needs { outputs: true, ..Needs::default() }),
            _ => None,
        }
    }

    /// Refuses options out of range (before any weight is touched).
    pub fn check(&self) -> Result<()> {
        let frac = |name: &str, v: f64| super::check_fraction("compression", name, v);
        match self {
            Recipe::Magnitude { sparsity } | Recipe::StructuredRows { sparsity } => frac("sparsity", *sparsity),
            Recipe::NM { n, m } if *m == 0 || n > m => Err(Error::Invalid(format!("compression: N:M needs 0 ≤ N ≤ M and M ≥ 1, got {n}:{m}"))),
            Recipe::Int4 { group, .. } if !quant::GROUP_SIZES.contains(group) => {
                Err(Error::Invalid(format!("compression: int4 group must be one of {:?}, got {group}", quant::GROUP_SIZES)))
            }
            Recipe::Svd { rank_fraction } | Recipe::Sfsd { rank_fraction, .. } => frac("rank_fraction", *rank_fraction),
            Recipe::StructuredHeads { sparsity } => frac("sparsity", *sparsity),
            Recipe::GradientAware { alpha, .. } if !(alpha.is_finite() && *alpha >= 0.0) => {
                Err(Error::Invalid(format!("compression: alpha must be a finite number ≥ 0, got {alpha}")))
            }
            Recipe::Wanda { sparsity, pattern, n, m } | Recipe::GradientAware { sparsity, pattern, n, m, .. } => match (pattern, sparsity) {
                (Pattern::NM, _) if *m == 0 || n > m => Err(Error::Invalid(format!("compression: N:M needs 0 ≤ N ≤ M and M ≥ 1, got {n}:{m}"))),
                (Pattern::NM, Some(_)) => Err(Error::Invalid("compression: pattern n_m fixes the sparsity at 1 − N/M; leave `sparsity` out".into())),
                (Pattern::NM, None) => Ok(()),
                (_, None) => Err(Error::Invalid("compression: `sparsity` is required for the unstructured and structured patterns".into())),
                (_, Some(s)) => frac("sparsity", *s),
            },
            Recipe::Surgical { delta, .. } => frac("delta", *delta),
            // The layer count is checked in `apply`, against the model.
            &Recipe::LayerParallel { start, end, mlp_norm, fused } => LayerParallel { start, end, mlp_norm, fused }.check(usize::MAX).map_err(compression),
            _ => Ok(()),
        }
    }
}

fn pattern_label(sparsity: Option<f64>, pattern: Pattern, n: usize, m: usize) -> String {
    let s = sparsity.map_or(String::new(), |s| s.to_string());
    match pattern {
        Pattern::Unstructured => s,
        Pattern::NM => format!("{n}:{m}"),
        Pattern::Structured => format!("rows {s}"),
    }
}

/// What a compression did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompressionRecord {
    pub recipe: Recipe,
    /// Linear weights compressed.
    pub tensors: usize,
    /// Weights in them.
    pub weights: usize,
    /// Tensors under `model.layers.` left alone, and why.
    pub skipped: Vec<String>,
    /// Bytes of the targeted weights as f32, and in the compressed form (codes and scales, both low-rank factors; a
    /// pruned weight is counted dense — no sparse storage format — except 2:4, counted as its kept half plus 2-bit
    /// indices as in NVIDIA's sparse tensor cores).
    pub bytes_f32: usize,
    pub bytes_compressed: usize,
    pub bits_per_weight: f64,
    /// Share of zero weights in the targeted tensors after.
    pub sparsity: f64,
    /// ‖W − Ŵ‖_F / ‖W‖_F over all targeted weights together.
    pub relative_error: f64,
    /// Blocks before and after (drop_layers).
    pub layers_before: usize,
    pub layers_after: usize,
    /// The surgical scan's search, for [`Recipe::Surgical`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<super::surgical::ScanRecord>,
    /// Sequential steps after: `layers_after`, or L − Δ/2 under layer parallelism (methods.md §1.10).
    #[serde(default)]
    pub effective_depth: usize,
    /// The calibration data a calibration-based recipe used (source, task, size, seed, sha256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<CalibrationRecord>,
}

fn compression(e: Error) -> Error {
    match e {
        Error::Invalid(m) => Error::Invalid(format!("compression: {m}")),
        other => other,
    }
}

/// Bytes of a 2:4 (N:M) pruned matrix as stored by sparse tensor cores: the N kept of every M values plus
/// ⌈log2 M⌉-bit indices [NVIDIA Ampere whitepaper: 2:4 stores half the values and 2-bit metadata].
fn n_m_bytes(out: usize, inp: usize, n: usize, m: usize) -> usize {
    let groups = out * inp / m;
    let index_bits = (usize::BITS - (m.max(2) - 1).leading_zeros()) as usize;
    groups * n * 4 + (groups * n * index_bits).div_ceil(8)
}

fn layer_index(name: &str) -> Option<(usize, &str)> {
    let rest = name.strip_prefix(LAYER_PREFIX)?;
    let (i, tail) = rest.split_once('.')?;
    Some((i.parse().ok()?, tail))
}

/// How [`apply_with_form`] writes a compressed weight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    /// Codes and scales, low-rank factors: what models run on.
    #[default]
    Packed,
    /// The f32 matrix the compressed weight stands for: the slow twin.
    Reference,
}

/// Applies `recipe` to a copy of `ck`, packed ([`Form::Packed`]), calibrating (when the recipe needs data) on the
/// default [`Calibration`].
pub fn apply(ck: &Checkpoint, recipe: &Recipe) -> Result<(Checkpoint, CompressionRecord)> {
    apply_with_form(ck, recipe, &Calibration::default(), Form::Packed)
}

/// Applies `recipe` to a copy of `ck` in the reference form ([`Form::Reference`]), on the default [`Calibration`].
pub fn apply_reference(ck: &Checkpoint, recipe: &Recipe) -> Result<(Checkpoint, CompressionRecord)> {
    apply_with_form(ck, recipe, &Calibration::default(), Form::Reference)
}

/// Applies `recipe` to a copy of `ck` in `form`, on the default [`Calibration`].
pub fn apply_form(ck: &Checkpoint, recipe: &Recipe, form: Form) -> Result<(Checkpoint, CompressionRecord)> {
    apply_with_form(ck, recipe, &Calibration::default(), form)
}

/// Applies `recipe` to a copy of `ck`, packed; `cal` says which calibration data a calibration-based recipe draws.
pub fn apply_with(ck: &Checkpoint, recipe: &Recipe, cal: &Calibration) -> Result<(Checkpoint, CompressionRecord)> {
    apply_with_form(ck, recipe, cal, Form::Packed)
}

/// Whether SFSD leaves this weight alone: GLA's two-factor gate projection is low-rank already (methods.md §2.9).
fn sfsd_excluded(name: &str) -> bool {
    name.contains(".gk_proj.")
}

/// Applies `recipe` to a copy of `ck` in `form`; `cal` says which calibration data a calibration-based recipe draws.
/// Errors: a bad option, a layer index out of range, a matrix a method cannot take (e.g. int4 with an input size not
/// divisible by the group; in the packed form, a low-rank rank of 0), calibration data the checkpoint cannot run (no
/// tokenizer, no head for the task). HGRN-bit checkpoints always get the reference form: their block linears are
/// BitLinears, whose loader reads a latent f32 `weight` or its own packed ternary, nothing else.
pub fn apply_with_form(ck: &Checkpoint, recipe: &Recipe, cal: &Calibration, form: Form) -> Result<(Checkpoint, CompressionRecord)> {
    recipe.check()?;
    if let Recipe::Surgical { .. } = recipe {
        return Err(Error::Invalid("compression: the surgical scan evaluates the model on a task: run it from an experiment spec or `trilemma compress --task`".into()));
    }
    let mut out = ck.clone();
    let layers_before = ck.config_usize("num_hidden_layers")?;
    let mut rec = CompressionRecord {
        recipe: recipe.clone(),
        tensors: 0,
        weights: 0,
        skipped: Vec::new(),
        bytes_f32: 0,
        bytes_compressed: 0,
        bits_per_weight: 32.0,
        sparsity: 0.0,
        relative_error: 0.0,
        layers_before,
        layers_after: layers_before,
        scan: None,
        effective_depth: layers_before,
        calibration: None,
    };
    let lp_before = LayerParallel::from_config(&ck.config, layers_before)?;
    if let &Recipe::LayerParallel { start, end, mlp_norm, fused } = recipe {
        let lp = LayerParallel { start, end, mlp_norm, fused };
        lp.check(layers_before).map_err(compression)?;
        if let Some(old) = lp_before {
            return Err(Error::Invalid(format!("compression: this model already runs layers [{}, {}) in parallel; one stretch per model", old.start, old.end)));
        }
        let cfg = out.config.as_object_mut().ok_or_else(|| Error::Invalid("config.json: expected a JSON object".into()))?;
        let t = cfg.entry("trilemma").or_insert_with(|| serde_json::json!({}));
        if !t.is_object() {
            *t = serde_json::json!({});
        }
        t[parallel::CONFIG_KEY] = serde_json::to_value(lp).map_err(|e| Error::Invalid(e.to_string()))?;
        rec.effective_depth = lp.effective_depth(layers_before);
        write_record(&mut out, &rec)?;
        return Ok((out, rec));
    }
    if let Some(lp) = lp_before {
        rec.effective_depth = lp.effective_depth(layers_before);
    }
    if let Recipe::StructuredHeads { sparsity } = recipe {
        structured_heads(&mut out, &mut rec, *sparsity)?;
        write_record(&mut out, &rec)?;
        return Ok((out, rec));
    }
    if let Recipe::DropLayers { layers } = recipe {
        if let Some(lp) = lp_before {
            // Renumbering would move the stretch under other layers.
            return Err(Error::Invalid(format!("compression: drop_layers on a model that runs layers [{}, {}) in parallel is not supported", lp.start, lp.end)));
        }
        if let Some(&bad) = layers.iter().find(|&&l| l >= layers_before) {
            return Err(Error::Invalid(format!("compression: layer {bad} does not exist (the model has {layers_before} layers, 0 to {})", layers_before - 1)));
        }
        let keep: Vec<usize> = (0..layers_before).filter(|l| !layers.contains(l)).collect();
        if keep.is_empty() {
            return Err(Error::Invalid("compression: dropping every layer leaves no model".into()));
        }
        let mut tensors = BTreeMap::new();
        for (name, t) in std::mem::take(&mut out.tensors) {
            match layer_index(&name) {
                Some((i, tail)) => {
                    if let Some(new) = keep.iter().position(|&k| k == i) {
                        tensors.insert(format!("{LAYER_PREFIX}{new}.{tail}"), t);
                    }
                }
                // HGRN's per-layer forget-gate lower bounds live outside the blocks, one row per layer.
                None if name == PER_LAYER_ROWS && t.shape.first() == Some(&layers_before) => {
                    let Data::F32(v) = &t.data else { return Err(Error::Invalid(format!("{name}: expected f32"))) };
                    let width = t.shape[1..].iter().product::<usize>();
                    let rows: Vec<f32> = keep.iter().flat_map(|&k| v[k * width..(k + 1) * width].iter().copied()).collect();
                    let mut shape = t.shape.clone();
                    shape[0] = keep.len();
                    tensors.insert(name, HostTensor::f32(&shape, rows)?);
                }
                None => {
                    tensors.insert(name, t);
                }
            }
        }
        out.tensors = tensors;
        out.config["num_hidden_layers"] = serde_json::json!(keep.len());
        rec.layers_after = keep.len();
        rec.effective_depth = keep.len();
        write_record(&mut out, &rec)?;
        return Ok((out, rec));
    }
    let (mut zeros, mut err2, mut norm2) = (0usize, 0f64, 0f64);
    let hgrn = crate::models::config::Common::parse(&ck.config).is_ok_and(|c| c.arch == crate::models::config::Arch::HgrnBit);
    let form = if hgrn { Form::Reference } else { form };
    let names: Vec<String> = out.tensors.keys().filter(|n| n.starts_with(LAYER_PREFIX)).cloned().collect();
    let mut captured: Option<Captured> = None;
    if let Some(needs) = recipe.needs() {
        if let Some(lp) = lp_before {
            // The differentiable twin that gathers the statistics runs the blocks one after another.
            return Err(Error::Invalid(format!(
                "compression: {} calibrates on the sequential model; this one runs layers [{}, {}) in parallel — calibrate before layer_parallel",
                recipe.label(),
                lp.start,
                lp.end
            )));
        }
        let targets: Vec<String> = names
            .iter()
            .filter(|n| out.tensors[*n].shape.len() == 2 && matches!(out.tensors[*n].data, Data::F32(_)))
            .filter(|n| !(matches!(recipe, Recipe::Sfsd { .. }) && sfsd_excluded(n)))
            .cloned()
            .collect();
        if !targets.is_empty() {
            let set = cal_data::subset(cal.task, cal.size, cal.seed)?;
            let c = calibrate::capture(ck, &set, &targets, needs)?;
            rec.calibration = Some(c.record.clone());
            captured = Some(c);
        }
    }
    let mut biases: Vec<(String, Vec<f32>)> = Vec::new();
    for name in names {
        let t = &out.tensors[&name];
        if t.shape.len() != 2 {
            continue;
        }
        let Data::F32(w) = &t.data else {
            let what = if name.ends_with(".weight_ternary") { "packed ternary" } else { "packed" };
            rec.skipped.push(format!("{name}: {what} already"));
            continue;
        };
        // Scales and low-rank factors of an earlier compression are part of its form, not weights of their own.
        let Some(prefix) = name.strip_suffix(".weight") else {
            rec.skipped.push(format!("{name}: part of a compressed weight; left as it is"));
            continue;
        };
        let prefix = prefix.to_string();
        let (o, i) = (t.shape[0], t.shape[1]);
        // A matrix whose input size the format's block does not divide stays in f32, listed.
        if matches!(recipe, Recipe::Sfsd { .. }) && sfsd_excluded(&name) {
            rec.skipped.push(format!("{name}: low-rank already (GLA's gate projection); left as it is"));
            continue;
        }
        let block = match recipe {
            Recipe::Int4 { group, .. } => Some(*group),
            Recipe::NM { m, .. } | Recipe::Wanda { pattern: Pattern::NM, m, .. } | Recipe::GradientAware { pattern: Pattern::NM, m, .. } => Some(*m),
            _ => None,
        };
        if let Some(b) = block.filter(|b| i % b != 0) {
            rec.skipped.push(format!("{name}: input size {i} is not a multiple of {b}; left in f32"));
            continue;
        }
        let ctx = |e: Error| match e {
            Error::Invalid(m) => Error::Invalid(format!("{name}: {m}")),
            other => other,
        };
        // The f32 matrix the compressed weight stands for, and its packed tensors (suffix, tensor) — none for pruning,
        // whose bytes are notional (see the record): dense, 2:4's kept half plus indices, the kept rows.
        let (mut pruned_bytes, mut extra_bytes) = (w.len() * 4, 0);
        let (new, packed): (Vec<f32>, Vec<(&str, HostTensor)>) = match recipe {
            Recipe::Magnitude { sparsity } => (prune::magnitude(w, o, i, *sparsity).map_err(ctx)?.apply(w).map_err(ctx)?, vec![]),
            Recipe::NM { n, m } => {
                pruned_bytes = n_m_bytes(o, i, *n, *m);
                (prune::n_m(w, o, i, *n, *m, None).map_err(ctx)?.apply(w).map_err(ctx)?, vec![])
            }
            Recipe::StructuredRows { sparsity } => {
                let rp = prune::structured_rows(w, o, i, *sparsity).map_err(ctx)?;
                let mut v = w.clone();
                for &r in &rp.removed {
                    v[r * i..(r + 1) * i].fill(0.0);
                }
                // Removed rows need not be stored (their outputs are zero).
                pruned_bytes = (o - rp.removed.len()) * i * 4;
                (v, vec![])
            }
            Recipe::Int8 { .. } => {
                let q = quant::quantize_int8(w, o, i).map_err(ctx)?;
                let words = crate::backend::int8::pack(&q.codes, o, i).map_err(ctx)?;
                let packed = vec![
                    ("weight_int8", HostTensor::u32(&[o, crate::backend::int8::words_per_row(i)], words)?),
                    ("weight_scale", HostTensor::f32(&[o], q.scales.clone())?),
                ];
                (q.dequantize().map_err(ctx)?, packed)
            }
            Recipe::Int4 { group, .. } => {
                let q = quant::quantize_int4(w, o, i, *group).map_err(ctx)?;
                let packed = vec![
                    ("weight_int4", HostTensor::u32(&[o, quant::int4::words_per_row(i)], q.packed.clone())?),
                    ("weight_scale", HostTensor::f32(&[o, i / group], q.scales.clone())?),
                ];
                (q.dequantize().map_err(ctx)?, packed)
            }
            Recipe::Ternary { .. } => {
                let q = quant::quantize_ternary(w, o, i).map_err(ctx)?;
                let t = quant::pack_ternary(&q).map_err(ctx)?;
                let packed = vec![
                    ("weight_ternary", HostTensor::u32(&[o, crate::backend::ternary::words_per_row(i)], t.packed)?),
                    ("weight_scale", HostTensor::f32(&[1], vec![t.beta])?),
                ];
                (q.dequantize(), packed)
            }
            Recipe::Svd { rank_fraction } => {
                let r = lowrank::budget_rank(o, i, *rank_fraction).map_err(ctx)?;
                if r == 0 && form == Form::Packed {
                    return Err(ctx(Error::Invalid(format!("svd: rank_fraction {rank_fraction} gives rank 0, which has no packed form (two empty factors)"))));
                }
                let lr = lowrank::truncated_svd(w, o, i, r).map_err(ctx)?;
                let packed = if r == 0 {
                    pruned_bytes = 0; // rank 0 stores nothing
                    vec![]
                } else {
                    vec![("weight_lr_a", HostTensor::f32(&[r, i], lr.w1.clone())?), ("weight_lr_b", HostTensor::f32(&[o, r], lr.w2.clone())?)]
                };
                (lr.reconstruct().map_err(ctx)?, packed)
            }
            Recipe::Wanda { sparsity, pattern, n, m } | Recipe::GradientAware { sparsity, pattern, n, m, .. } => {
                let st = captured.as_ref().ok_or_else(|| Error::Invalid("compression: no calibration statistics".into()))?.get(&name)?;
                let scores = match recipe {
                    Recipe::GradientAware { alpha, .. } => {
                        let g = st.grad.as_ref().ok_or_else(|| Error::Invalid(format!("{name}: no gradient was collected")))?;
                        prune::gradient_aware_scores(w, o, i, &st.col_norms(), g, *alpha).map_err(ctx)?
                    }
                    _ => prune::wanda_scores(w, o, i, &st.col_norms()).map_err(ctx)?,
                };
                let s = sparsity.unwrap_or(0.0);
                let new = match pattern {
                    Pattern::Unstructured => prune::prune_lowest_per_row(&scores, o, i, s).map_err(ctx)?.apply(w).map_err(ctx)?,
                    Pattern::NM => {
                        pruned_bytes = n_m_bytes(o, i, *n, *m);
                        prune::n_m_by_scores(&scores, o, i, *n, *m).map_err(ctx)?.apply(w).map_err(ctx)?
                    }
                    Pattern::Structured => {
                        // A row's score is the sum of its weights' scores (methods.md §4.5.1, "sum scores per channel").
                        let rows: Vec<f64> = scores.chunks_exact(i).map(|r| r.iter().sum()).collect();
                        let keep = prune::prune_lowest_in_tensor(&rows, o, 1, s).map_err(ctx)?.keep;
                        pruned_bytes = keep.iter().filter(|&&k| k).count() * i * 4;
                        w.iter().enumerate().map(|(k, &x)| if keep[k / i] { x } else { 0.0 }).collect()
                    }
                };
                (new, vec![])
            }
            Recipe::Sfsd { rank_fraction, mean_correction } => {
                let st = captured.as_ref().ok_or_else(|| Error::Invalid("compression: no calibration statistics".into()))?.get(&name)?;
                let stats = st.outputs.as_ref().ok_or_else(|| Error::Invalid(format!("{name}: no output statistics were collected")))?;
                let r = lowrank::budget_rank(o, i, *rank_fraction).map_err(ctx)?;
                if r == 0 && form == Form::Packed {
                    return Err(ctx(Error::Invalid(format!("sfsd: rank_fraction {rank_fraction} gives rank 0, which has no packed form (two empty factors)"))));
                }
                let bias_name = format!("{prefix}.bias");
                let b0 = match out.tensors.get(&bias_name) {
                    Some(b) => Some(b.as_f32("bias")?),
                    None => None,
                };
                let lr = lowrank::feature_basis(stats).map_err(ctx)?.factors(w, i, r, b0, *mean_correction).map_err(ctx)?;
                // The bias (the layer's own and the mean correction) is stored beside the factors, and counted.
                if let Some(b) = &lr.bias {
                    extra_bytes = 4 * b.len();
                    biases.push((bias_name, b.clone()));
                }
                pruned_bytes = lr.bytes();
                let packed = if r == 0 {
                    vec![]
                } else {
                    vec![("weight_lr_a", HostTensor::f32(&[r, i], lr.w1.clone())?), ("weight_lr_b", HostTensor::f32(&[o, r], lr.w2.clone())?)]
                };
                (lr.reconstruct().map_err(ctx)?, packed)
            }
            Recipe::DropLayers { .. } | Recipe::StructuredHeads { .. } | Recipe::Surgical { .. } | Recipe::LayerParallel { .. } => unreachable!("handled above"),
        };
        // Bytes of the compressed form: exactly its packed tensors (u32 words and f32 values, 4 bytes each).
        let bytes = if packed.is_empty() { pruned_bytes } else { packed.iter().map(|(_, t)| t.numel() * 4).sum::<usize>() + extra_bytes };
        for (a, b) in w.iter().zip(&new) {
            err2 += ((a - b) as f64).powi(2);
            norm2 += (*a as f64).powi(2);
        }
        zeros += prune::zeros(&new);
        rec.tensors += 1;
        rec.weights += w.len();
        rec.bytes_f32 += w.len() * 4;
        rec.bytes_compressed += bytes;
        let shape = t.shape.clone();
        if form == Form::Packed && !packed.is_empty() {
            out.tensors.remove(&name);
            for (suffix, p) in packed {
                out.tensors.insert(format!("{prefix}.{suffix}"), p);
            }
        } else {
            out.tensors.insert(name, HostTensor::f32(&shape, new)?);
        }
    }
    for (name, b) in biases {
        let n = b.len();
        out.tensors.insert(name, HostTensor::f32(&[n], b)?);
    }
    rec.sparsity = zeros as f64 / rec.weights.max(1) as f64;
    rec.relative_error = if norm2 > 0.0 { (err2 / norm2).sqrt() } else { 0.0 };
    rec.bits_per_weight = 8.0 * rec.bytes_compressed as f64 / rec.weights.max(1) as f64;
    write_record(&mut out, &rec)?;
    Ok((out, rec))
}

/// How one projection of a block groups its weights by attention head: by output rows (q, k, v, GLA's g) or by input
/// columns (o).
#[derive(Clone, Copy, PartialEq)]
enum HeadAxis {
    Rows,
    Cols,
}

/// `structured_heads`: in every block, the `round(s·heads)` heads with the smallest summed squared weights over their
/// rows of q/k/v (GLA: and g) and their columns of o_proj are zeroed in all of them, so the head contributes nothing
/// (a zero value row makes its output zero whatever the scores; zeroing q and k too makes the removal visible in
/// every projection). GLA's gate projection `gk_proj` and the MLP are not touched; HGRN-bit has no attention heads.
fn structured_heads(out: &mut Checkpoint, rec: &mut CompressionRecord, s: f64) -> Result<()> {
    let arch = crate::models::config::Common::parse(&out.config)?.arch;
    let cfg = crate::models::config::Cfg(&out.config);
    let heads = cfg.usize_or("num_heads", 1)?;
    let kv_heads = cfg.usize_or("num_kv_heads", heads)?;
    let projs: &[(&str, HeadAxis)] = match arch {
        crate::models::config::Arch::Transformer => &[("q_proj", HeadAxis::Rows), ("k_proj", HeadAxis::Rows), ("v_proj", HeadAxis::Rows), ("o_proj", HeadAxis::Cols)],
        crate::models::config::Arch::Gla => {
            &[("q_proj", HeadAxis::Rows), ("k_proj", HeadAxis::Rows), ("v_proj", HeadAxis::Rows), ("g_proj", HeadAxis::Rows), ("o_proj", HeadAxis::Cols)]
        }
        crate::models::config::Arch::HgrnBit => {
            rec.skipped.push("HGRN-bit's MLGRU has no attention heads; nothing to prune".into());
            return Ok(());
        }
    };
    if kv_heads != heads {
        return Err(Error::Invalid(format!("structured_heads: grouped key-value heads ({kv_heads} for {heads} query heads) are not supported")));
    }
    let (mut zeros, mut err2, mut norm2) = (0usize, 0f64, 0f64);
    for l in 0..rec.layers_before {
        let mut score = vec![0f64; heads];
        let mut found = Vec::new();
        for &(p, axis) in projs {
            let name = format!("{LAYER_PREFIX}{l}.attn.{p}.weight");
            let Some(t) = out.tensors.get(&name) else { continue };
            let Data::F32(w) = &t.data else {
                rec.skipped.push(format!("{name}: packed ternary already"));
                continue;
            };
            let (o, i) = (t.shape[0], t.shape[1]);
            let dim = if axis == HeadAxis::Rows { o } else { i };
            if !dim.is_multiple_of(heads) {
                return Err(Error::Invalid(format!("structured_heads: {name} {:?} does not split into {heads} heads", t.shape)));
            }
            let per = dim / heads;
            for (k, &x) in w.iter().enumerate() {
                let h = if axis == HeadAxis::Rows { k / i / per } else { (k % i) / per };
                score[h] += x as f64 * x as f64;
            }
            found.push((name, axis, per));
        }
        if found.is_empty() {
            continue;
        }
        let removed = prune::prune_lowest_in_tensor(&score, heads, 1, s)?.keep;
        for (name, axis, per) in found {
            let t = &out.tensors[&name];
            let (o, i) = (t.shape[0], t.shape[1]);
            let w = t.as_f32("structured_heads")?;
            let head = |k: usize| if axis == HeadAxis::Rows { k / i / per } else { (k % i) / per };
            let new: Vec<f32> = w.iter().enumerate().map(|(k, &x)| if removed[head(k)] { x } else { 0.0 }).collect();
            for (a, b) in w.iter().zip(&new) {
                err2 += ((a - b) as f64).powi(2);
                norm2 += (*a as f64).powi(2);
            }
            let kept_heads = removed.iter().filter(|&&k| k).count();
            zeros += prune::zeros(&new);
            rec.tensors += 1;
            rec.weights += w.len();
            rec.bytes_f32 += w.len() * 4;
            // Removed heads' rows (or columns) need not be stored.
            rec.bytes_compressed += if axis == HeadAxis::Rows { kept_heads * per * i * 4 } else { o * kept_heads * per * 4 };
            let shape = t.shape.clone();
            out.tensors.insert(name, HostTensor::f32(&shape, new)?);
        }
    }
    rec.sparsity = zeros as f64 / rec.weights.max(1) as f64;
    rec.relative_error = if norm2 > 0.0 { (err2 / norm2).sqrt() } else { 0.0 };
    rec.bits_per_weight = 8.0 * rec.bytes_compressed as f64 / rec.weights.max(1) as f64;
    Ok(())
}

/// Notes the compression in `config.json` under `trilemma.compressions` (a list: compressions compose).
pub(crate) fn write_record(ck: &mut Checkpoint, rec: &CompressionRecord) -> Result<()> {
    let v = serde_json::to_value(rec).map_err(|e| Error::Invalid(e.to_string()))?;
    let cfg = ck.config.as_object_mut().ok_or_else(|| Error::Invalid("config.json: expected a JSON object".into()))?;
    let t = cfg.entry("trilemma").or_insert_with(|| serde_json::json!({}));
    if !t.is_object() {
        *t = serde_json::json!({});
    }
    let list = t.as_object_mut().expect("made an object").entry("compressions").or_insert_with(|| serde_json::json!([]));
    if !list.is_array() {
        *list = serde_json::json!([]);
    }
    list.as_array_mut().expect("made an array").push(v);
    Ok(())
}

/// The files of a compressed model folder: `config.json` (with the record), `model.safetensors`, and
/// `tokenizer.json` when the checkpoint has one. It loads like any other folder.
pub fn folder_files(ck: &Checkpoint) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    files.insert("config.json".to_string(), serde_json::to_vec_pretty(&ck.config).map_err(|e| Error::Invalid(e.to_string()))?);
    files.insert("model.safetensors".to_string(), crate::io::write_safetensors(&ck.tensors, None)?);
    if let Some(t) = &ck.tokenizer_json {
        files.insert("tokenizer.json".to_string(), t.clone());
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::tiny_checkpoint;
    use super::*;
    use crate::models::config::Arch;

    fn f32s(ck: &Checkpoint, name: &str) -> Vec<f32> {
        ck.tensors[name].as_f32("test").unwrap().to_vec()
    }

    fn dense_linears(ck: &Checkpoint) -> Vec<(String, usize, usize)> {
        ck.tensors
            .iter()
            .filter(|(n, t)| n.starts_with(LAYER_PREFIX) && t.shape.len() == 2 && matches!(t.data, Data::F32(_)))
            .map(|(n, t)| (n.clone(), t.shape[0], t.shape[1]))
            .collect()
    }

    fn invalid(r: Result<impl std::fmt::Debug>, needle: &str) {
        match r {
            Err(Error::Invalid(m)) => assert!(m.contains(needle), "message {m:?} lacks {needle:?}"),
            other => panic!("expected Error::Invalid containing {needle:?}, got {other:?}"),
        }
    }

    fn cal(n: usize) -> Calibration {
        Calibration { task: Some(Task::Sst2), seed: 3, size: n }
    }

    #[test]
    fn calibrated_pruning_has_exact_counts_and_the_2_4_pattern() {
        let ck = tiny_checkpoint(Arch::Transformer, 5);
        let wanda = Recipe::Wanda { sparsity: Some(0.5), pattern: Pattern::Unstructured, n: 2, m: 4 };
        let ga = Recipe::GradientAware { sparsity: Some(0.25), alpha: 1.0, pattern: Pattern::Unstructured, n: 2, m: 4 };
        for (r, s) in [(&wanda, 0.5), (&ga, 0.25)] {
            let (c, rec) = apply_with(&ck, r, &cal(12)).unwrap();
            assert_eq!(rec.tensors, 14, "{r:?}");
            let calr = rec.calibration.clone().unwrap();
            assert_eq!(calr, cal_data::subset(Some(Task::Sst2), 12, 3).unwrap().record);
            for (name, o, i) in dense_linears(&c) {
                let w = f32s(&c, &name);
                for row in w.chunks(i) {
                    assert_eq!(prune::zeros(row), prune::prune_count(i, s), "{name}: every row loses exactly round(s·in)");
                }
                assert_eq!(w.len(), o * i);
            }
        }
        for r in [Recipe::Wanda { sparsity: None, pattern: Pattern::NM, n: 2, m: 4 }, Recipe::GradientAware { sparsity: None, alpha: 1.0, pattern: Pattern::NM, n: 2, m: 4 }] {
            let (c, rec) = apply_with(&ck, &r, &cal(12)).unwrap();
            assert!((rec.bits_per_weight - 17.0).abs() < 1e-9);
            for (name, _, _) in dense_linears(&c) {
                for g in f32s(&c, &name).chunks(4) {
                    assert_eq!(g.iter().filter(|v| **v != 0.0).count(), 2, "{name}");
                }
            }
        }
        // Structured: whole rows.
        let st = Recipe::GradientAware { sparsity: Some(0.5), alpha: 1.0, pattern: Pattern::Structured, n: 2, m: 4 };
        let (c, rec) = apply_with(&ck, &st, &cal(12)).unwrap();
        for (name, o, i) in dense_linears(&c) {
            let w = f32s(&c, &name);
            let zero_rows = w.chunks(i).filter(|r| r.iter().all(|v| *v == 0.0)).count();
            assert_eq!(zero_rows, prune::prune_count(o, 0.5), "{name}");
        }
        assert!(rec.bits_per_weight < 17.0);
    }

    #[test]
    fn compression_at_zero_is_the_original() {
        for arch in [Arch::Transformer, Arch::Gla] {
            let ck = tiny_checkpoint(arch, 9);
            for r in [
                Recipe::Wanda { sparsity: Some(0.0), pattern: Pattern::Unstructured, n: 2, m: 4 },
                Recipe::GradientAware { sparsity: Some(0.0), alpha: 1.0, pattern: Pattern::Unstructured, n: 2, m: 4 },
                Recipe::GradientAware { sparsity: Some(0.0), alpha: 1.0, pattern: Pattern::Structured, n: 2, m: 4 },
                Recipe::StructuredHeads { sparsity: 0.0 },
            ] {
                let (c, rec) = apply_with(&ck, &r, &cal(6)).unwrap();
                assert_eq!(rec.relative_error, 0.0, "{arch:?} {r:?}");
                for (name, _, _) in dense_linears(&ck) {
                    assert_eq!(f32s(&c, &name), f32s(&ck, &name), "{arch:?} {r:?} {name}");
                }
            }
        }
    }

    #[test]
    fn gradient_aware_with_alpha_zero_is_wanda() {
        let ck = tiny_checkpoint(Arch::Gla, 2);
        let (a, _) = apply_with(&ck, &Recipe::Wanda { sparsity: Some(0.5), pattern: Pattern::Unstructured, n: 2, m: 4 }, &cal(8)).unwrap();
        let (b, _) = apply_with(&ck, &Recipe::GradientAware { sparsity: Some(0.5), alpha: 0.0, pattern: Pattern::Unstructured, n: 2, m: 4 }, &cal(8)).unwrap();
        for (name, _, _) in dense_linears(&ck) {
            assert_eq!(f32s(&a, &name), f32s(&b, &name), "{name}");
        }
    }

    #[test]
    fn structured_heads_zero_whole_heads_consistently() {
        let ck = tiny_checkpoint(Arch::Transformer, 4);
        let (c, rec) = apply(&ck, &Recipe::StructuredHeads { sparsity: 0.5 }).unwrap();
        assert_eq!(rec.tensors, 8, "q, k, v, o of two blocks");
        assert!(rec.calibration.is_none());
        let hd = 8; // H 16, 2 heads
        for l in 0..2 {
            let q = f32s(&c, &format!("model.layers.{l}.attn.q_proj.weight"));
            let o = f32s(&c, &format!("model.layers.{l}.attn.o_proj.weight"));
            let dead: Vec<usize> = (0..2).filter(|h| q[h * hd * 16..(h + 1) * hd * 16].iter().all(|v| *v == 0.0)).collect();
            assert_eq!(dead.len(), 1, "one of two heads removed in block {l}");
            let h = dead[0];
            for p in ["k_proj", "v_proj"] {
                let w = f32s(&c, &format!("model.layers.{l}.attn.{p}.weight"));
                assert!(w[h * hd * 16..(h + 1) * hd * 16].iter().all(|v| *v == 0.0), "{p}");
                assert!(w[(1 - h) * hd * 16..(2 - h) * hd * 16].iter().all(|v| *v != 0.0), "{p}");
            }
            for row in o.chunks(16) {
                assert!(row[h * hd..(h + 1) * hd].iter().all(|v| *v == 0.0) && row[(1 - h) * hd..(2 - h) * hd].iter().all(|v| *v != 0.0));
            }
        }
        // HGRN-bit has no heads: nothing changes, and the record says why.
        let hg = tiny_checkpoint(Arch::HgrnBit, 4);
        let (_, r) = apply(&hg, &Recipe::StructuredHeads { sparsity: 0.5 }).unwrap();
        assert_eq!(r.tensors, 0);
        assert!(r.skipped.iter().any(|s| s.contains("no attention heads")));
    }

    /// Σ over calibration rows of ‖y − ŷ‖² for the layer `name` of `orig`, ŷ through `comp`'s weight (and bias).
    fn output_error(orig: &Checkpoint, comp: &Checkpoint, name: &str, x: &[f32], rows: usize) -> f64 {
        let (w, wh) = (f32s(orig, name), f32s(comp, name));
        let inp = orig.tensors[name].shape[1];
        let bias = comp.tensors.get(&name.replace(".weight", ".bias")).map(|b| b.as_f32("b").unwrap().to_vec());
        let mut e = 0f64;
        for xr in x.chunks(inp).take(rows) {
            for (o, (wr, hr)) in w.chunks(inp).zip(wh.chunks(inp)).enumerate() {
                let y: f64 = xr.iter().zip(wr).map(|(a, b)| *a as f64 * *b as f64).sum();
                let yh: f64 = xr.iter().zip(hr).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() + bias.as_ref().map_or(0.0, |b| b[o] as f64);
                e += (y - yh).powi(2);
            }
        }
        e
    }

    #[test]
    fn sfsd_beats_weight_svd_on_the_calibration_outputs_and_is_exact_at_full_rank() {
        use crate::autodiff::twin;
        let ck = tiny_checkpoint(Arch::Transformer, 21);
        let c = cal(10);
        // The calibration inputs of every linear, recorded directly.
        let set = cal_data::subset(c.task, c.size, c.seed).unwrap();
        let name = "model.layers.1.mlp.gate_proj.weight";
        let (o, i) = (32, 16);
        let cap = calibrate::capture(&ck, &set, &[name.to_string()], Needs { inputs: true, outputs: true, grads: false }).unwrap();
        let xs: std::rc::Rc<std::cell::RefCell<Vec<f32>>> = Default::default();
        let tk = crate::text::TextTokenizer::from_json_bytes(ck.tokenizer_json.as_ref().unwrap()).unwrap();
        let (dims, eps) = calibrate::twin_dims(&ck).unwrap();
        let params = crate::autodiff::vars::Params::from_host(&ck.tensors).unwrap();
        let tw = twin::Twin { dims: &dims, params: &params, eps };
        for (_, e) in &set.examples {
            let ids = tk.encode_example(&e.text_a, e.text_b.as_deref()).unwrap();
            let x2 = xs.clone();
            let tap: twin::Tap = Box::new(move |n, x, _| {
                if n == "model.layers.1.mlp.gate_proj.weight" {
                    x2.borrow_mut().extend(x.flatten_all()?.to_vec1::<f32>()?);
                }
                Ok(())
            });
            let t = candle_core::Tensor::from_vec(ids.clone(), (1, ids.len()), &candle_core::Device::Cpu).unwrap();
            let mut rng = crate::rng::SplitMix64::new(0);
            twin::with_tap(tap, || tw.hidden(&t, &mut twin::Dropout { p: 0.0, rng: &mut rng })).0.unwrap();
        }
        let x = xs.borrow().clone();
        let rows = x.len() / i;
        assert_eq!(rows as u64, cap.tokens);
        for rho in [0.25, 0.5, 1.0] {
            // The reference form: the products of the factors, compared as dense matrices.
            let (sf, rec) = apply_with_form(&ck, &Recipe::Sfsd { rank_fraction: rho, mean_correction: true }, &c, Form::Reference).unwrap();
            let (sv, _) = apply_with_form(&ck, &Recipe::Svd { rank_fraction: rho }, &c, Form::Reference).unwrap();
            assert!(rec.calibration.is_some() && sf.tensors.contains_key("model.layers.1.mlp.gate_proj.bias"));
            let (e_sf, e_sv) = (output_error(&ck, &sf, name, &x, rows), output_error(&ck, &sv, name, &x, rows));
            assert!(e_sf <= e_sv * (1.0 + 1e-4) + 1e-6, "ρ={rho}: SFSD {e_sf} vs SVD {e_sv}");
            // Mean-corrected SFSD's error is the discarded covariance mass: (N − 1) Σ_{k ≥ r} λ_k.
            let basis = lowrank::feature_basis(cap.get(name).unwrap().outputs.as_ref().unwrap()).unwrap();
            let r = lowrank::budget_rank(o, i, rho).unwrap();
            let tail: f64 = basis.eigenvalues[r..].iter().sum::<f64>() * (rows as f64 - 1.0);
            assert!((e_sf - tail).abs() <= 1e-3 * tail.max(1e-3), "ρ={rho}: {e_sf} vs {tail}");
        }
        // At full rank (r = out) the feature-space factors reproduce the layer's outputs.
        let st = cap.get(name).unwrap();
        let basis = lowrank::feature_basis(st.outputs.as_ref().unwrap()).unwrap();
        let w = f32s(&ck, name);
        let lr = basis.factors(&w, i, o, None, true).unwrap();
        let full = lr.reconstruct().unwrap();
        for (a, b) in full.iter().zip(&w) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        assert!(lr.bias.unwrap().iter().all(|b| b.abs() < 1e-4), "(I − VVᵀ)μ = 0 at full rank");
    }

    #[test]
    fn sfsd_bias_is_the_projected_out_mean() {
        // Two output features, all calibration outputs on a line through μ = (1, 3) along (1, 0): the top direction
        // is e1, so at rank 1 the projection drops the second coordinate and the bias restores μ's part there.
        let mut st = lowrank::OutputStats::new(2).unwrap();
        st.add_outputs(&[0.0, 3.0, 2.0, 3.0, 1.0, 3.0], 3).unwrap();
        let basis = lowrank::feature_basis(&st).unwrap();
        let w = [1.0f32, 0.0, 0.0, 1.0];
        let lr = basis.factors(&w, 2, 1, None, true).unwrap();
        let b = lr.bias.clone().unwrap();
        assert!(b[0].abs() < 1e-6 && (b[1] - 3.0).abs() < 1e-6, "{b:?}");
        assert!(basis.factors(&w, 2, 1, None, false).unwrap().bias.is_none(), "reference mode: no bias");
    }

    #[test]
    fn bad_options_are_refused() {
        let bad = [
            (Recipe::Wanda { sparsity: None, pattern: Pattern::Unstructured, n: 2, m: 4 }, "sparsity"),
            (Recipe::Wanda { sparsity: Some(1.5), pattern: Pattern::Unstructured, n: 2, m: 4 }, "sparsity"),
            (Recipe::Wanda { sparsity: Some(0.5), pattern: Pattern::NM, n: 2, m: 4 }, "n_m"),
            (Recipe::Wanda { sparsity: None, pattern: Pattern::NM, n: 5, m: 4 }, "N:M"),
            (Recipe::GradientAware { sparsity: Some(0.5), alpha: -1.0, pattern: Pattern::Unstructured, n: 2, m: 4 }, "alpha"),
            (Recipe::GradientAware { sparsity: Some(0.5), alpha: f64::NAN, pattern: Pattern::Unstructured, n: 2, m: 4 }, "alpha"),
            (Recipe::StructuredHeads { sparsity: -0.1 }, "sparsity"),
            (Recipe::Sfsd { rank_fraction: 2.0, mean_correction: true }, "rank_fraction"),
        ];
        for (r, needle) in bad {
            invalid(r.check(), needle);
        }
        let ck = tiny_checkpoint(Arch::Transformer, 1);
        let ok = Recipe::Wanda { sparsity: Some(0.5), pattern: Pattern::Unstructured, n: 2, m: 4 };
        invalid(apply_with(&ck, &ok, &Calibration { size: 0, ..cal(1) }), "at least 1");
        invalid(apply_with(&ck, &ok, &Calibration { size: 10_000, ..cal(1) }), "bundled set has");
        let ga = Recipe::GradientAware { sparsity: Some(0.5), alpha: 1.0, pattern: Pattern::Unstructured, n: 2, m: 4 };
        invalid(apply_with(&ck, &ga, &Calibration { task: Some(Task::Mnli), ..cal(4) }), "classes");
        let mut no_tok = ck.clone();
        no_tok.tokenizer_json = None;
        invalid(apply_with(&no_tok, &ok, &cal(4)), "tokenizer");
        // JSON: defaults and unknown fields.
        let r: Recipe = serde_json::from_str(r#"{"method": "gradient_aware", "sparsity": 0.5}"#).unwrap();
        assert_eq!(r, Recipe::GradientAware { sparsity: Some(0.5), alpha: 1.0, pattern: Pattern::Unstructured, n: 2, m: 4 });
        let r: Recipe = serde_json::from_str(r#"{"method": "wanda", "pattern": "n_m"}"#).unwrap();
        assert_eq!(r.label(), "wanda 2:4");
        let r: Recipe = serde_json::from_str(r#"{"method": "sfsd", "rank_fraction": 0.5}"#).unwrap();
        assert_eq!(r, Recipe::Sfsd { rank_fraction: 0.5, mean_correction: true });
        assert!(serde_json::from_str::<Recipe>(r#"{"method": "sfsd", "rank_fraction": 0.5, "bias": true}"#).is_err());
    }

    #[test]
    fn hgrn_bit_packed_linears_are_skipped_without_calibrating() {
        let mut ck = tiny_checkpoint(Arch::HgrnBit, 3);
        // Pack every BitLinear as the bundled folder stores it.
        let names: Vec<String> = ck.tensors.keys().filter(|n| n.starts_with(LAYER_PREFIX) && n.ends_with("_proj.weight")).cloned().collect();
        for n in names {
            let t = ck.tensors.remove(&n).unwrap();
            let tw = crate::nn::linear::TernaryWeights::from_latent(&t).unwrap();
            let p = n.strip_suffix(".weight").unwrap();
            let words = tw.packed.len() / tw.n;
            ck.tensors.insert(format!("{p}.weight_ternary"), HostTensor::new(&[tw.n, words], Data::U32(tw.packed.clone())).unwrap());
            ck.tensors.insert(format!("{p}.weight_scale"), HostTensor::f32(&[1], vec![tw.beta]).unwrap());
        }
        ck.tokenizer_json = None; // proves no calibration ran
        let (_, rec) = apply(&ck, &Recipe::Sfsd { rank_fraction: 0.5, mean_correction: true }).unwrap();
        assert_eq!(rec.tensors, 0);
        assert!(rec.calibration.is_none() && rec.skipped.iter().all(|s| s.contains("packed ternary")));
    }
}
