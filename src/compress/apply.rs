//! A compression recipe applied to a whole checkpoint, in its **reference form**: every compressed linear weight is
//! written back as the f32 matrix it stands for (dequantized codes, pruned zeros, the product of the low-rank
//! factors), so any backend runs it unchanged and it is the slow twin of the packed kernels to come. The record says
//! what the compressed form would store (bytes, bits per weight) and how far the weights moved.
//!
//! Targets: the 2-D f32 weights under `model.layers.` (attention and MLP projections, GLA's low-rank gate) — not
//! the embeddings, the norms, the LM head or the classifier heads [default: the seed papers compress the blocks'
//! linear layers, methods.md §2.9, §4.3]. HGRN-bit's BitLinear weights are already packed ternary (`U32`): they are
//! left as they are and listed under `skipped`. `drop_layers` removes whole blocks and renumbers the rest.
//! `layer_parallel` leaves every weight as it is and writes the stretch into `config.json`
//! (`trilemma.layer_parallel`), which the loader reads (methods.md §1, [`crate::models::parallel`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{lowrank, prune, quant, Footprint};
use crate::backend::{Data, HostTensor};
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
    /// int8 symmetric per output channel.
    Int8 {},
    /// int4 symmetric per input group of 32, 64 or 128.
    Int4 {
        #[serde(default = "default_group")]
        group: usize,
    },
    /// Ternary absmean (BitNet b1.58) per tensor.
    Ternary {},
    /// Truncated SVD with rank `⌊κ·ρ⌋`, `κ = ⌊in·out/(in+out)⌋` (the break-even rank, methods.md §2.3), ρ = `rank_fraction`.
    Svd { rank_fraction: f64 },
    /// Remove these blocks (0-based) and renumber the rest.
    DropLayers { layers: Vec<usize> },
    /// SFSD's surgical rank search on the run's task ([`super::surgical`]): needs the task's validation split, so
    /// the engine and `trilemma compress --task` run it, not [`apply`]. `start_block` defaults to `⌈L/8⌉`.
    Surgical {
        #[serde(default)]
        delta: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_block: Option<usize>,
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
}

fn default_fused() -> bool {
    true
}

impl Recipe {
    /// A short label for tables ("magnitude 0.5", "int4 g128").
    pub fn label(&self) -> String {
        match self {
            Recipe::Magnitude { sparsity } => format!("magnitude {sparsity}"),
            Recipe::NM { n, m } => format!("{n}:{m}"),
            Recipe::StructuredRows { sparsity } => format!("structured rows {sparsity}"),
            Recipe::Int8 {} => "int8".into(),
            Recipe::Int4 { group } => format!("int4 g{group}"),
            Recipe::Ternary {} => "ternary".into(),
            Recipe::Svd { rank_fraction } => format!("svd ρ={rank_fraction}"),
            Recipe::DropLayers { layers } => format!("drop layers {layers:?}"),
            Recipe::Surgical { delta, start_block } => match start_block {
                Some(b) => format!("surgical δ={delta} from block {b}"),
                None => format!("surgical δ={delta}"),
            },
            Recipe::LayerParallel { start, end, mlp_norm, fused } => {
                let norm = if *mlp_norm == MlpNorm::Mean { ", mean norm" } else { "" };
                format!("layer-parallel [{start}, {end}){norm}{}", if *fused { "" } else { ", unfused" })
            }
        }
    }

    /// Refuses options out of range (before any weight is touched).
    pub fn check(&self) -> Result<()> {
        let frac = |name: &str, v: f64| super::check_fraction("compression", name, v);
        match self {
            Recipe::Magnitude { sparsity } | Recipe::StructuredRows { sparsity } => frac("sparsity", *sparsity),
            Recipe::NM { n, m } if *m == 0 || n > m => Err(Error::Invalid(format!("compression: N:M needs 0 ≤ N ≤ M and M ≥ 1, got {n}:{m}"))),
            Recipe::Int4 { group } if !quant::GROUP_SIZES.contains(group) => {
                Err(Error::Invalid(format!("compression: int4 group must be one of {:?}, got {group}", quant::GROUP_SIZES)))
            }
            Recipe::Svd { rank_fraction } => frac("rank_fraction", *rank_fraction),
            Recipe::Surgical { delta, .. } => frac("delta", *delta),
            // The layer count is checked in `apply`, against the model.
            &Recipe::LayerParallel { start, end, mlp_norm, fused } => LayerParallel { start, end, mlp_norm, fused }.check(usize::MAX).map_err(compression),
            _ => Ok(()),
        }
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

/// Applies `recipe` to a copy of `ck`. Errors: a bad option, a layer index out of range, a matrix a method cannot
/// take (e.g. int4 with an input size not divisible by the group).
pub fn apply(ck: &Checkpoint, recipe: &Recipe) -> Result<(Checkpoint, CompressionRecord)> {
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
    let names: Vec<String> = out.tensors.keys().filter(|n| n.starts_with(LAYER_PREFIX)).cloned().collect();
    for name in names {
        let t = &out.tensors[&name];
        if t.shape.len() != 2 {
            continue;
        }
        let Data::F32(w) = &t.data else {
            rec.skipped.push(format!("{name}: packed ternary already"));
            continue;
        };
        let (o, i) = (t.shape[0], t.shape[1]);
        // A matrix whose input size the format's block does not divide stays in f32, listed.
        let block = match recipe {
            Recipe::Int4 { group } => Some(*group),
            Recipe::NM { m, .. } => Some(*m),
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
        let (new, bytes): (Vec<f32>, usize) = match recipe {
            Recipe::Magnitude { sparsity } => (prune::magnitude(w, o, i, *sparsity).map_err(ctx)?.apply(w).map_err(ctx)?, w.len() * 4),
            Recipe::NM { n, m } => (prune::n_m(w, o, i, *n, *m, None).map_err(ctx)?.apply(w).map_err(ctx)?, n_m_bytes(o, i, *n, *m)),
            Recipe::StructuredRows { sparsity } => {
                let rp = prune::structured_rows(w, o, i, *sparsity).map_err(ctx)?;
                let mut v = w.clone();
                for &r in &rp.removed {
                    v[r * i..(r + 1) * i].fill(0.0);
                }
                // Removed rows need not be stored (their outputs are zero).
                (v, (o - rp.removed.len()) * i * 4)
            }
            Recipe::Int8 {} => {
                let q = quant::quantize_int8(w, o, i).map_err(ctx)?;
                (q.dequantize().map_err(ctx)?, q.bytes())
            }
            Recipe::Int4 { group } => {
                let q = quant::quantize_int4(w, o, i, *group).map_err(ctx)?;
                (q.dequantize().map_err(ctx)?, q.bytes())
            }
            Recipe::Ternary {} => {
                let q = quant::quantize_ternary(w, o, i).map_err(ctx)?;
                (q.dequantize(), q.bytes())
            }
            Recipe::Svd { rank_fraction } => {
                let r = lowrank::budget_rank(o, i, *rank_fraction).map_err(ctx)?;
                let lr = lowrank::truncated_svd(w, o, i, r).map_err(ctx)?;
                (lr.reconstruct().map_err(ctx)?, lr.bytes())
            }
            Recipe::DropLayers { .. } | Recipe::Surgical { .. } | Recipe::LayerParallel { .. } => unreachable!("handled above"),
        };
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
        out.tensors.insert(name, HostTensor::f32(&shape, new)?);
    }
    rec.sparsity = zeros as f64 / rec.weights.max(1) as f64;
    rec.relative_error = if norm2 > 0.0 { (err2 / norm2).sqrt() } else { 0.0 };
    rec.bits_per_weight = 8.0 * rec.bytes_compressed as f64 / rec.weights.max(1) as f64;
    write_record(&mut out, &rec)?;
    Ok((out, rec))
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
