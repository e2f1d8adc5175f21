//! Soft prompts for a compressed classifier, and the per-input choice among them: Inference-time
//! Dynamic Prompting (IDP, arXiv 2310.00867; methods.md §3).
//!
//! - [`FrozenTwin`]: the compressed checkpoint as constants of the differentiable twin
//!   ([`crate::autodiff::twin`]), so gradients reach the prompts only.
//! - [`Pool`]: m prompts of n vectors each, `[BOS | P_i | x]` (§3.3 step 1), initialised from the
//!   embeddings of seeded random vocabulary tokens (§3.2).
//! - [`scores`] / [`select`]: the per-input choice (§3.3): Transformer++ reads the layer-0 attention
//!   mass of the input on each prompt (every prompt at position ids `1..n`, so its keys are what
//!   they would be alone); GLA the normalised |linear-attention weight| of the input on each
//!   prompt's tokens, each prompt placed alone before the input; HGRN-bit the cosine between the
//!   mean input embedding and the mean prompt vector. [`Selector::Confidence`] runs every prompt and
//!   keeps the most confident (m× the cost, any architecture). Ties → lowest index.
//! - [`train_pool`]: cross-entropy through the task's head at the last real token, selection in the
//!   loop without gradient (round-robin for the first 10% of steps), Adam, seeded (§3.4).
//!
//! Everything here runs on candle's CPU tensors, natively and in wasm; inference with a chosen
//! prompt runs on the model's backend ([`crate::models::Model::classify_batch_with_prefix`]).

use crate::autodiff::twin::{cross_entropy, rms_norm, softmax, Dropout, Twin};
use crate::autodiff::vars::{AdamW, Params};
use crate::backend::{ternary, Data, HostTensor};
use crate::data::Task;
use crate::error::{Error, Result};
use crate::io::Checkpoint;
use crate::models::config::{Arch, Cfg, Common};
use crate::models::init::Dims;
use crate::rng::SplitMix64;
use candle_core::{Device, Tensor, D};
use std::collections::BTreeMap;

/// The layer whose attention picks the prompt (methods.md §3.3: the first attention layer).
pub const SELECTION_LAYER: usize = 0;
/// Share of the training steps whose examples go to the prompts in turn (§3.4).
pub const ROUND_ROBIN_FRACTION: f64 = 0.1;
/// Token ids below this are special (`<unk> <s> </s> <pad>`): never drawn to initialise a prompt.
const FIRST_ORDINARY_TOKEN: u32 = 4;

/// How a prompt is chosen for an input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selector {
    /// The §3.3 rule of the architecture (attention mass / linear-attention weight / embedding cosine).
    #[default]
    Attention,
    /// Run every prompt, keep the one whose class distribution has the highest max-probability.
    Confidence,
}

/// One tokenized, labelled example (ids start with BOS, as the bundled tokenizer writes them).
#[derive(Clone, Debug)]
pub struct Seq {
    pub ids: Vec<u32>,
    pub label: u32,
}

/// A compressed checkpoint as the twin's frozen constants, with the head of one task.
pub struct FrozenTwin {
    pub dims: Dims,
    pub params: Params,
    pub eps: f64,
    /// `score…weight` `[C, H]` of the task.
    pub head: Tensor,
    pub classes: usize,
}

/// A packed BitLinear weight (`β`, ternary codes) as a latent f32 matrix the twin re-ternarises to
/// exactly `β·T`: `W = T·β/ρ` with ρ the share of non-zero codes gives `mean|W| = β` and
/// `round(W/β) = round(T/ρ)`, clamped back to T.
fn latent_of_packed(words: &[u32], beta: f32, n: usize, k: usize) -> Result<Vec<f32>> {
    let t = ternary::unpack(words, n, k)?;
    let nz = t.iter().filter(|&&v| v != 0).count();
    let scale = if nz == 0 { beta } else { beta * (t.len() as f32 / nz as f32) };
    Ok(t.iter().map(|&v| v as f32 * scale).collect())
}

impl FrozenTwin {
    /// The twin of `ck` with `task`'s head (`score.<task>.weight`, or `score.weight` when the folder's
    /// default task is `task`, as [`crate::models::Model::head`]). Refused: a configuration the twin
    /// does not implement (grouped-query heads, q/k norms, biases, windows, GLA feature maps).
    pub fn from_checkpoint(ck: &Checkpoint, task: Task) -> Result<Self> {
        let common = Common::parse(&ck.config)?;
        let c = Cfg(&ck.config);
        let unsupported = |what: &str| Err(Error::Invalid(format!("soft prompts: the differentiable twin does not implement {what}")));
        if crate::models::parallel::LayerParallel::from_config(&ck.config, common.layers)?.is_some() {
            return unsupported("layer parallelism (its pairs run side by side; the twin runs every layer in sequence)");
        }
        let heads = match common.arch {
            Arch::Transformer => {
                let a = crate::models::transformer_pp::AttnConfig::parse(&c, common.hidden)?;
                if a.kv_heads != a.heads || a.qk_norm || a.qkv_bias || a.window.is_some() || a.rope_theta != 10_000.0 {
                    return unsupported("this Transformer++ configuration (GQA, q/k norm, biases, a window or a RoPE base other than 10000)");
                }
                a.heads
            }
            Arch::Gla => {
                let g = crate::models::gla::GlaConfig::parse(&c, common.hidden)?;
                if g.kv_heads != g.heads || !g.output_gate || g.relu_feature_map || g.clamp_min.is_some() {
                    return unsupported("this GLA configuration (GQA, no output gate, a feature map or a gate clamp)");
                }
                g.heads
            }
            Arch::HgrnBit => {
                if c.usize_or("expand_ratio", 1)? != 1 || !c.bool_or("use_lower_bound", true)? {
                    return unsupported("HGRN-bit without lower bounds or with expand_ratio ≠ 1");
                }
                1
            }
        };
        let mut host: BTreeMap<String, HostTensor> = BTreeMap::new();
        for (name, t) in &ck.tensors {
            match &t.data {
                Data::F32(_) => {
                    let name = if name == "model.embed_tokens.weight" { "model.embeddings.weight".to_string() } else { name.clone() };
                    host.insert(name, t.clone());
                }
                Data::U32(words) => {
                    let Some(stem) = name.strip_suffix(".weight_ternary") else {
                        return Err(Error::Invalid(format!("soft prompts: tensor {name} is u32 but not packed ternary weights")));
                    };
                    let scale = ck.tensors.get(&format!("{stem}.weight_scale")).ok_or_else(|| Error::Invalid(format!("{name} has no weight_scale")))?;
                    let beta = scale.as_f32("weight_scale")?.first().copied().ok_or_else(|| Error::Invalid(format!("{stem}.weight_scale is empty")))?;
                    let (n, k) = match *t.shape.as_slice() {
                        [n, _] => {
                            // The packed shape holds words; the input size is the norm's length.
                            let norm = ck.tensors.get(&format!("{stem}.norm.weight")).ok_or_else(|| Error::Invalid(format!("{stem} has no norm.weight")))?;
                            (n, norm.numel())
                        }
                        ref s => return Err(Error::Invalid(format!("{name}: packed weights must be [N, words], got {s:?}"))),
                    };
                    host.insert(format!("{stem}.weight"), HostTensor::f32(&[n, k], latent_of_packed(words, beta, n, k)?)?);
                }
            }
        }
        host.retain(|n, _| !n.ends_with(".weight_scale"));
        let head_name = {
            let own = format!("score.{}.weight", task.model_task().name());
            let default_ok = match &common.default_task {
                Some(d) => d == task.model_task().name(),
                None => !host.keys().any(|n| n.starts_with("score.") && n != "score.weight"),
            };
            if host.contains_key(&own) {
                own
            } else if default_ok && host.contains_key("score.weight") {
                "score.weight".to_string()
            } else {
                return Err(Error::Invalid(format!("this model folder has no head for task {task}")));
            }
        };
        let head_t = &host[&head_name];
        let classes = head_t.shape[0];
        if classes != task.num_labels() as usize {
            return Err(Error::Invalid(format!("the model's head for {task} has {classes} classes, but {task} has {}", task.num_labels())));
        }
        let head = Tensor::from_slice(head_t.as_f32("head")?, head_t.shape.as_slice(), &Device::Cpu)?;
        let dims = Dims {
            arch: common.arch,
            vocab: common.vocab,
            hidden: common.hidden,
            layers: common.layers,
            heads,
            kv_heads: heads,
            intermediate: common.intermediate,
            num_labels: Some(classes),
        };
        Ok(Self { dims, params: Params::frozen(&host)?, eps: common.norm_eps as f64, head, classes })
    }

    pub fn twin(&self) -> Twin<'_> {
        Twin { dims: &self.dims, params: &self.params, eps: self.eps }
    }

    fn embeddings(&self) -> candle_core::Result<&Tensor> {
        self.params.get("model.embeddings.weight")
    }
}

/// m soft prompts of n vectors of width H (host copies; trained as candle variables).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pool {
    pub prompts: usize,
    pub tokens: usize,
    pub hidden: usize,
    /// `[m][n·H]`, row-major per prompt.
    pub values: Vec<Vec<f32>>,
}

impl Pool {
    /// `m` prompts of `n` vectors, each the embedding of a token drawn uniformly (seeded) from the
    /// ordinary vocabulary (methods.md §3.2).
    pub fn init(twin: &FrozenTwin, m: usize, n: usize, seed: u64) -> Result<Self> {
        if m == 0 || n == 0 {
            return Err(Error::Invalid(format!("soft prompts: need at least one prompt of one vector, got {m} × {n}")));
        }
        let (v, h) = (twin.dims.vocab, twin.dims.hidden);
        if v as u32 <= FIRST_ORDINARY_TOKEN {
            return Err(Error::Invalid("soft prompts: the vocabulary has no ordinary token".into()));
        }
        let emb = twin.embeddings()?;
        let mut rng = SplitMix64::new(seed);
        let mut values = Vec::with_capacity(m);
        for _ in 0..m {
            let ids: Vec<u32> = (0..n).map(|_| FIRST_ORDINARY_TOKEN + rng.below((v as u32 - FIRST_ORDINARY_TOKEN) as u64) as u32).collect();
            let rows = emb.index_select(&Tensor::from_vec(ids, n, &Device::Cpu)?, 0)?;
            values.push(rows.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(Self { prompts: m, tokens: n, hidden: h, values })
    }

    /// Prompt `i` as an `[n, H]` host tensor (for [`crate::models::Model::classify_batch_with_prefix`]).
    pub fn prompt(&self, i: usize) -> Result<HostTensor> {
        let v = self.values.get(i).ok_or_else(|| Error::Invalid(format!("no prompt {i} in a pool of {}", self.prompts)))?;
        HostTensor::f32(&[self.tokens, self.hidden], v.clone())
    }

    /// Extra parameters: m·n·H.
    pub fn parameters(&self) -> usize {
        self.prompts * self.tokens * self.hidden
    }

    fn tensors(&self) -> Result<Vec<Tensor>> {
        self.values.iter().map(|v| Ok(Tensor::from_slice(v, (self.tokens, self.hidden), &Device::Cpu)?)).collect()
    }
}

/// Where the prompt goes in `ids` (after BOS when there is one), and the ids after it.
fn split_bos(ids: &[u32]) -> (Option<u32>, &[u32]) {
    match ids.first() {
        Some(&b) if b == crate::text::BOS_ID => (Some(b), &ids[1..]),
        _ => (None, ids),
    }
}

/// Embedded batch `[B, T, H]` of `[BOS | P_{pick[b]} | rest]`, right-padded with `<pad>`, and the real
/// lengths. `prompts` are `[n, H]` tensors (variables while training); only the picked ones enter
/// the graph.
fn embed_with_prompts(emb: &Tensor, prompts: &[Tensor], seqs: &[&[u32]], pick: &[usize]) -> candle_core::Result<(Tensor, Vec<usize>)> {
    let vocab = emb.dim(0)?;
    let n = prompts[0].dim(0)?;
    let mut used: Vec<usize> = pick.to_vec();
    used.sort_unstable();
    used.dedup();
    let mut parts: Vec<&Tensor> = vec![emb];
    parts.extend(used.iter().map(|&i| &prompts[i]));
    let table = Tensor::cat(&parts, 0)?; // [V + u·n, H]
    let lens: Vec<usize> = seqs.iter().map(|s| s.len() + n).collect();
    let t = *lens.iter().max().unwrap_or(&1);
    let mut ids = vec![crate::text::PAD_ID; seqs.len() * t];
    for (b, s) in seqs.iter().enumerate() {
        let (bos, rest) = split_bos(s);
        let slot = used.iter().position(|&u| u == pick[b]).expect("picked prompt is used");
        let mut row: Vec<u32> = bos.into_iter().collect();
        row.extend((0..n).map(|j| (vocab + slot * n + j) as u32));
        row.extend_from_slice(rest);
        ids[b * t..b * t + row.len()].copy_from_slice(&row);
    }
    let x = table.index_select(&Tensor::from_vec(ids, seqs.len() * t, emb.device())?, 0)?;
    Ok((x.reshape((seqs.len(), t, emb.dim(1)?))?, lens))
}

/// Class logits `[B, C]` of `seqs`, each with prompt `pick[b]`.
fn logits_with(twin: &FrozenTwin, prompts: &[Tensor], seqs: &[&[u32]], pick: &[usize]) -> candle_core::Result<Tensor> {
    let (x, lens) = embed_with_prompts(twin.embeddings()?, prompts, seqs, pick)?;
    let mut rng = SplitMix64::new(0);
    let h = twin.twin().hidden_from_embeddings(&x, &mut Dropout { p: 0.0, rng: &mut rng })?;
    Twin::last_token(&h, &lens)?.matmul(&twin.head.t()?)
}

/// Class logits of every sequence with one fixed prompt `i` of `pool` (the twin's side of the
/// prefix-inference test), batched by [`EVAL_BATCH`].
pub fn logits_with_prompt(twin: &FrozenTwin, pool: &Pool, i: usize, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
    if i >= pool.prompts {
        return Err(Error::Invalid(format!("no prompt {i} in a pool of {}", pool.prompts)));
    }
    let prompts = pool.tensors()?;
    let mut out = Vec::with_capacity(seqs.len());
    for chunk in seqs.chunks(EVAL_BATCH) {
        out.extend(logits_with(twin, &prompts, chunk, &vec![i; chunk.len()])?.to_vec2::<f32>()?);
    }
    Ok(out)
}

/// Sequences per batch of the no-gradient passes (selection, evaluation on the twin).
pub const EVAL_BATCH: usize = 32;

/// Index of the largest score, ties → lowest index (methods.md §3.3 step 4); NaN never wins.
pub fn argmax_lowest(scores: &[f64]) -> usize {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] || (scores[best].is_nan() && !s.is_nan()) {
            best = i;
        }
    }
    best
}

/// Per-example selection scores `[B][m]` of `seqs` against the prompts (§3.3, the architecture's
/// rule for [`Selector::Attention`]; max-probability for [`Selector::Confidence`]).
fn scores_with(twin: &FrozenTwin, prompts: &[Tensor], seqs: &[&[u32]], selector: Selector) -> Result<Vec<Vec<f64>>> {
    let m = prompts.len();
    if selector == Selector::Confidence {
        let mut out = vec![vec![0f64; m]; seqs.len()];
        for i in 0..m {
            let p = softmax(&logits_with(twin, prompts, seqs, &vec![i; seqs.len()])?)?.to_vec2::<f32>()?;
            for (o, row) in out.iter_mut().zip(p) {
                o[i] = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            }
        }
        return Ok(out);
    }
    match twin.dims.arch {
        Arch::Transformer => attention_scores(twin, prompts, seqs),
        Arch::Gla => gla_scores(twin, prompts, seqs),
        Arch::HgrnBit => cosine_scores(twin, prompts, seqs),
    }
}

/// Transformer++: `[BOS | P_1 … P_m | x]`, prompt tokens at positions `1..n` each, input tokens
/// from `n+1`; the score of prompt i is the layer-0 softmax mass the input's queries put on its
/// keys, averaged over heads and input positions. With ℓ_sel = 0 the block-diagonal mask among the
/// prompts does not change the layer-0 keys, so only the input's rows are computed.
fn attention_scores(twin: &FrozenTwin, prompts: &[Tensor], seqs: &[&[u32]]) -> Result<Vec<Vec<f64>>> {
    let (m, n) = (prompts.len(), prompts[0].dim(0)?);
    let emb = twin.embeddings()?;
    let b = seqs.len();
    let lead = usize::from(split_bos(seqs[0]).0.is_some());
    let rest_max = seqs.iter().map(|s| split_bos(s).1.len()).max().unwrap_or(0);
    if rest_max == 0 {
        return Ok(vec![vec![0.0; m]; b]);
    }
    // Layout: [lead | m·n prompt tokens | rest_max input tokens (padded)].
    let t = lead + m * n + rest_max;
    let mut ids = vec![crate::text::PAD_ID; b * (lead + rest_max)];
    for (i, s) in seqs.iter().enumerate() {
        let (bos, rest) = split_bos(s);
        if bos.is_some() != (lead == 1) {
            return Err(Error::Invalid("soft prompts: every sequence of a batch must start with BOS, or none".into()));
        }
        let row = &mut ids[i * (lead + rest_max)..(i + 1) * (lead + rest_max)];
        if lead == 1 {
            row[0] = crate::text::BOS_ID;
        }
        row[lead..lead + rest.len()].copy_from_slice(rest);
    }
    let h = twin.dims.hidden;
    let tok = emb.index_select(&Tensor::from_vec(ids, b * (lead + rest_max), &Device::Cpu)?, 0)?.reshape((b, lead + rest_max, h))?;
    let pool = Tensor::cat(prompts, 0)?.unsqueeze(0)?.broadcast_as((b, m * n, h))?.contiguous()?;
    let mut parts = Vec::new();
    if lead == 1 {
        parts.push(tok.narrow(1, 0, 1)?);
    }
    parts.push(pool);
    parts.push(tok.narrow(1, lead, rest_max)?);
    let x = Tensor::cat(&parts, 1)?; // [B, T, H]
    let positions: Vec<usize> = (0..lead).chain((0..m).flat_map(|_| lead..lead + n)).chain((0..rest_max).map(|j| lead + n + j)).collect();
    let pre = format!("model.layers.{SELECTION_LAYER}.");
    let xh = rms_norm(&x, twin.params.get(&format!("{pre}attn_norm.weight"))?, twin.eps)?;
    let (q, k) = twin.twin().attention_qk(SELECTION_LAYER, &xh, &positions)?; // [B, nh, T, hd]
    let hd = q.dim(3)?;
    let start = lead + m * n;
    let qi = q.narrow(2, start, rest_max)?; // input queries [B, nh, R, hd]
    let s = (qi.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?; // [B, nh, R, T]
    // Input query r sees BOS, every prompt token and input tokens ≤ r.
    let mask: Vec<f32> = (0..rest_max * t).map(|i| if i % t <= start + i / t { 0.0 } else { crate::models::gla::MASK_NEG }).collect();
    let p = softmax(&s.broadcast_add(&Tensor::from_vec(mask, (rest_max, t), &Device::Cpu)?)?)?;
    let mass = p.narrow(3, lead, m * n)?.reshape((b, q.dim(1)?, rest_max, m, n))?.sum(D::Minus1)?; // [B, nh, R, m]
    let mass = mass.mean(1)?.to_vec3::<f32>()?; // [B, R, m]
    Ok(seqs
        .iter()
        .zip(mass)
        .map(|(s, rows)| {
            let r = split_bos(s).1.len();
            (0..m).map(|i| rows[..r].iter().map(|row| row[i] as f64).sum::<f64>() / r.max(1) as f64).collect()
        })
        .collect())
}

/// GLA: for each prompt alone, `[BOS | P_i | x]`, the layer-0 weight of input token t on prompt
/// token j, `a = Σ_d q_{t,d} k_{j,d} exp(G_{t,d} − G_{j,d})` (q scaled), as |a| normalised over all
/// m·n prompt tokens per (head, t), summed per prompt, averaged over heads and t (methods.md §3.3).
fn gla_scores(twin: &FrozenTwin, prompts: &[Tensor], seqs: &[&[u32]]) -> Result<Vec<Vec<f64>>> {
    let (m, n) = (prompts.len(), prompts[0].dim(0)?);
    let b = seqs.len();
    let lead = usize::from(split_bos(seqs[0]).0.is_some());
    let rest_max = seqs.iter().map(|s| split_bos(s).1.len()).max().unwrap_or(0);
    if rest_max == 0 {
        return Ok(vec![vec![0.0; m]; b]);
    }
    let pre = format!("model.layers.{SELECTION_LAYER}.");
    let norm = twin.params.get(&format!("{pre}attn_norm.weight"))?;
    // mass[i][b][head][r] = Σ_j |a| over prompt i's tokens.
    let mut mass: Vec<Vec<Vec<Vec<f32>>>> = Vec::with_capacity(m);
    for i in 0..m {
        let (x, _) = embed_with_prompts(twin.embeddings()?, prompts, seqs, &vec![i; b])?; // [B, lead+n+R, H]
        let xh = rms_norm(&x, norm, twin.eps)?;
        let (q, k, lg) = twin.twin().gla_qkg(SELECTION_LAYER, &xh)?; // [B, nh, T, dk]
        let g = lg.cumsum(2)?;
        let r_at = lead + n - 1; // the last prompt token: exp factors on both sides stay ≤ 1
        let g_ref = g.narrow(2, r_at, 1)?;
        let qi = (q.narrow(2, lead + n, rest_max)? * g.narrow(2, lead + n, rest_max)?.broadcast_sub(&g_ref)?.exp()?)?;
        let kp = (k.narrow(2, lead, n)? * g_ref.broadcast_sub(&g.narrow(2, lead, n)?)?.exp()?)?;
        let a = qi.matmul(&kp.t()?)?.abs()?.sum(D::Minus1)?; // [B, nh, R]
        mass.push(a.to_vec3::<f32>()?);
    }
    let heads = mass[0][0].len();
    Ok(seqs
        .iter()
        .enumerate()
        .map(|(bi, s)| {
            let r = split_bos(s).1.len();
            let mut sc = vec![0f64; m];
            for hh in 0..heads {
                for t in 0..r {
                    let tot: f64 = (0..m).map(|i| mass[i][bi][hh][t] as f64).sum();
                    for (i, v) in sc.iter_mut().enumerate() {
                        *v += if tot > 0.0 { mass[i][bi][hh][t] as f64 / tot } else { 0.0 };
                    }
                }
            }
            sc.iter().map(|v| v / (heads * r.max(1)) as f64).collect()
        })
        .collect())
}

/// HGRN-bit: cosine between the mean embedding of the input's tokens (BOS excluded) and the mean
/// vector of each prompt (methods.md §3.3; no pairwise weights exist in the MLGRU).
fn cosine_scores(twin: &FrozenTwin, prompts: &[Tensor], seqs: &[&[u32]]) -> Result<Vec<Vec<f64>>> {
    let emb = twin.embeddings()?;
    let means: Vec<Vec<f32>> = prompts.iter().map(|p| p.mean(0)?.to_vec1::<f32>()).collect::<candle_core::Result<_>>()?;
    let cos = |a: &[f32], b: &[f32]| {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na * nb) }
    };
    seqs.iter()
        .map(|s| {
            let (_, rest) = split_bos(s);
            if rest.is_empty() {
                return Ok(vec![0.0; prompts.len()]);
            }
            let x = emb.index_select(&Tensor::from_slice(rest, rest.len(), &Device::Cpu)?, 0)?.mean(0)?.to_vec1::<f32>()?;
            Ok(means.iter().map(|p| cos(&x, p)).collect())
        })
        .collect()
}

/// Selection scores `[B][m]` of `seqs` (no gradient), batched by [`EVAL_BATCH`].
pub fn scores(twin: &FrozenTwin, pool: &Pool, seqs: &[&[u32]], selector: Selector) -> Result<Vec<Vec<f64>>> {
    let prompts = pool.tensors()?;
    let mut out = Vec::with_capacity(seqs.len());
    for chunk in seqs.chunks(EVAL_BATCH) {
        out.extend(scores_with(twin, &prompts, chunk, selector)?);
    }
    Ok(out)
}

/// The prompt each of `seqs` activates (§3.3 step 4: argmax, ties → lowest index).
pub fn select(twin: &FrozenTwin, pool: &Pool, seqs: &[&[u32]], selector: Selector) -> Result<Vec<usize>> {
    Ok(scores(twin, pool, seqs, selector)?.iter().map(|s| argmax_lowest(s)).collect())
}

/// What a training run decides: the recipe of methods.md §3.4.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub prompts: usize,
    pub tokens: usize,
    pub epochs: usize,
    pub lr: f64,
    pub batch: usize,
    pub seed: u64,
    pub selector: Selector,
}

/// A trained pool and how training went.
#[derive(Clone, Debug)]
pub struct Trained {
    pub pool: Pool,
    pub steps: usize,
    /// Mean calibration cross-entropy (each example with its selected prompt) before and after.
    pub loss_before: f64,
    pub loss_after: f64,
    /// Mean training loss of each epoch.
    pub epoch_losses: Vec<f64>,
}

/// Mean cross-entropy of `seqs` with their selected prompts (no gradient).
pub fn calibration_loss(twin: &FrozenTwin, pool: &Pool, seqs: &[Seq], selector: Selector) -> Result<f64> {
    let prompts = pool.tensors()?;
    let (mut sum, mut n) = (0f64, 0usize);
    for chunk in seqs.chunks(EVAL_BATCH) {
        let ids: Vec<&[u32]> = chunk.iter().map(|s| s.ids.as_slice()).collect();
        let pick: Vec<usize> = scores_with(twin, &prompts, &ids, selector)?.iter().map(|s| argmax_lowest(s)).collect();
        let labels: Vec<u32> = chunk.iter().map(|s| s.label).collect();
        let loss = cross_entropy(&logits_with(twin, &prompts, &ids, &pick)?, &labels)?.to_scalar::<f32>()? as f64;
        sum += loss * chunk.len() as f64;
        n += chunk.len();
    }
    Ok(sum / n.max(1) as f64)
}

/// Trains a pool on `seqs` (methods.md §3.4): every epoch a seeded shuffle cut into batches; each
/// example runs with the prompt it selects under the current pool (no gradient through the choice),
/// or, in the first [`ROUND_ROBIN_FRACTION`] of the steps, with prompt `k mod m` for its running
/// count k; cross-entropy of the task's head at the last real token; Adam (no weight decay, no
/// clipping) on the picked prompts only. `after_step(step, steps)` may stop training early by
/// returning `false` (the pool so far is returned).
pub fn train_pool(twin: &FrozenTwin, seqs: &[Seq], cfg: &TrainConfig, after_step: &mut dyn FnMut(usize, usize) -> bool) -> Result<Trained> {
    if seqs.is_empty() {
        return Err(Error::Invalid("soft prompts: no calibration example to train on".into()));
    }
    if let Some(s) = seqs.iter().find(|s| s.ids.is_empty()) {
        return Err(Error::Invalid(format!("soft prompts: an empty example (label {})", s.label)));
    }
    if cfg.batch == 0 || cfg.epochs == 0 || !(cfg.lr > 0.0 && cfg.lr.is_finite()) {
        return Err(Error::Invalid(format!("soft prompts: batch {}, epochs {} and lr {} must be positive", cfg.batch, cfg.epochs, cfg.lr)));
    }
    if let Some(s) = seqs.iter().find(|s| s.label as usize >= twin.classes) {
        return Err(Error::Invalid(format!("soft prompts: label {} out of range for {} classes", s.label, twin.classes)));
    }
    let init = Pool::init(twin, cfg.prompts, cfg.tokens, crate::rng::derive_seed(cfg.seed, "idp/init"))?;
    let loss_before = calibration_loss(twin, &init, seqs, cfg.selector)?;
    let mut host = BTreeMap::new();
    for (i, v) in init.values.iter().enumerate() {
        host.insert(format!("prompt.{i:03}"), HostTensor::f32(&[cfg.tokens, init.hidden], v.clone())?);
    }
    let params = Params::from_host(&host)?;
    let names: Vec<String> = host.keys().cloned().collect();
    let mut opt = AdamW::new(0.0, 0.0);
    opt.beta2 = 0.999;
    let per_epoch = seqs.len().div_ceil(cfg.batch);
    let steps = per_epoch * cfg.epochs;
    let round_robin = ((steps as f64) * ROUND_ROBIN_FRACTION).ceil() as usize;
    let mut rng = SplitMix64::new(crate::rng::derive_seed(cfg.seed, "idp/order"));
    let (mut step, mut seen) = (0usize, 0usize);
    let mut epoch_losses = Vec::new();
    'epochs: for _ in 0..cfg.epochs {
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let (mut sum, mut cnt) = (0f64, 0usize);
        for chunk in order.chunks(cfg.batch) {
            let prompts: Vec<Tensor> = names.iter().map(|n| params.get(n).cloned()).collect::<candle_core::Result<_>>()?;
            let ids: Vec<&[u32]> = chunk.iter().map(|&i| seqs[i].ids.as_slice()).collect();
            let pick: Vec<usize> = if step < round_robin {
                (0..chunk.len()).map(|j| (seen + j) % cfg.prompts).collect()
            } else {
                let frozen: Vec<Tensor> = prompts.iter().map(|p| p.detach()).collect();
                scores_with(twin, &frozen, &ids, cfg.selector)?.iter().map(|s| argmax_lowest(s)).collect()
            };
            let labels: Vec<u32> = chunk.iter().map(|&i| seqs[i].label).collect();
            let loss = cross_entropy(&logits_with(twin, &prompts, &ids, &pick)?, &labels)?;
            let grads = loss.backward()?;
            opt.step(&params, &grads, cfg.lr)?;
            sum += loss.to_scalar::<f32>()? as f64 * chunk.len() as f64;
            cnt += chunk.len();
            seen += chunk.len();
            step += 1;
            if !after_step(step, steps) {
                epoch_losses.push(sum / cnt.max(1) as f64);
                break 'epochs;
            }
        }
        epoch_losses.push(sum / cnt.max(1) as f64);
    }
    let trained = params.to_host()?;
    let values = names.iter().map(|n| Ok(trained[n].as_f32("prompt")?.to_vec())).collect::<Result<Vec<_>>>()?;
    let pool = Pool { values, ..init };
    let loss_after = calibration_loss(twin, &pool, seqs, cfg.selector)?;
    Ok(Trained { pool, steps: step, loss_before, loss_after, epoch_losses })
}

/// Accuracy of each pool prompt used alone on `seqs` (the "single best fixed prompt" baseline picks
/// the best, ties → lowest index).
pub fn prompt_accuracies(twin: &FrozenTwin, pool: &Pool, seqs: &[Seq]) -> Result<Vec<f64>> {
    let ids: Vec<&[u32]> = seqs.iter().map(|s| s.ids.as_slice()).collect();
    (0..pool.prompts)
        .map(|i| {
            let rows = logits_with_prompt(twin, pool, i, &ids)?;
            let right = rows.iter().zip(seqs).filter(|(r, s)| crate::eval::argmax(r) == s.label).count();
            Ok(right as f64 / seqs.len().max(1) as f64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::models::init::random_checkpoint;
    use crate::models::Model;

    const ARCHS: [Arch; 3] = [Arch::Transformer, Arch::Gla, Arch::HgrnBit];

    fn small(arch: Arch) -> Checkpoint {
        let d = Dims { vocab: 64, hidden: 32, ..Dims::default_for(arch) };
        let mut ck = random_checkpoint(&d, 11).unwrap();
        // Larger weights than the init's 0.02, so the prompts matter to the logits.
        for (name, t) in ck.tensors.iter_mut() {
            if name.ends_with("embeddings.weight") || name.starts_with("score") {
                let v: Vec<f32> = t.as_f32("t").unwrap().iter().map(|x| x * 40.0).collect();
                *t = HostTensor::f32(&t.shape.clone(), v).unwrap();
            }
        }
        ck
    }

    fn seqs(seed: u64, lens: &[usize]) -> Vec<Vec<u32>> {
        let mut rng = SplitMix64::new(seed);
        lens.iter().map(|&n| std::iter::once(crate::text::BOS_ID).chain((1..n).map(|_| 4 + rng.below(60) as u32)).collect()).collect()
    }

    fn close(a: &[Vec<f32>], b: &[Vec<f32>], tol: f32, what: &str) {
        for (x, y) in a.iter().zip(b) {
            for (p, q) in x.iter().zip(y) {
                assert!((p - q).abs() <= tol * (1.0 + q.abs()), "{what}: {x:?} vs {y:?}");
            }
        }
    }

    fn model_rows(be: &CpuBackend, m: &Model<CpuBackend>, prefix: &HostTensor, s: &[&[u32]]) -> Vec<Vec<f32>> {
        let t = be.read_sync(&m.classify_batch_with_prefix(be, prefix, s, None).unwrap()).unwrap();
        t.as_f32("l").unwrap().chunks(2).map(<[f32]>::to_vec).collect()
    }

    /// BitLinear weights in the packed form of exported folders.
    fn packed(ck: &Checkpoint) -> Checkpoint {
        let mut out = ck.clone();
        let names: Vec<String> = ck.tensors.keys().filter(|n| n.ends_with("_proj.weight") || *n == "lm_head.weight").cloned().collect();
        for name in names {
            let w = out.tensors.remove(&name).unwrap();
            let t = crate::nn::linear::TernaryWeights::from_latent(&w).unwrap();
            let stem = name.trim_end_matches(".weight");
            out.tensors.insert(format!("{stem}.weight_ternary"), HostTensor::u32(&[t.n, ternary::words_per_row(t.k)], t.packed).unwrap());
            out.tensors.insert(format!("{stem}.weight_scale"), HostTensor::f32(&[1], vec![t.beta]).unwrap());
        }
        out
    }

    #[test]
    fn prefix_inference_equals_the_twin_and_the_token_form() {
        let be = CpuBackend::new();
        // Lengths around GLA's chunk of 16 once the 3 prompt vectors are in, and BOS alone.
        let s = seqs(3, &[1, 5, 13, 14, 20]);
        let refs: Vec<&[u32]> = s.iter().map(|v| v.as_slice()).collect();
        for arch in ARCHS {
            let ck = small(arch);
            let ck = if arch == Arch::HgrnBit { packed(&ck) } else { ck };
            let model = Model::load(&be, ck.clone()).unwrap();
            let twin = FrozenTwin::from_checkpoint(&ck, Task::Sst2).unwrap();
            let pool = Pool::init(&twin, 2, 3, 9).unwrap();
            // BitLinear: the twin multiplies dequantised floats, the model sums packed integers.
            let tol = if arch == Arch::HgrnBit { 2e-3 } else { 1e-4 };
            for i in 0..2 {
                let want = logits_with_prompt(&twin, &pool, i, &refs).unwrap();
                close(&model_rows(&be, &model, &pool.prompt(i).unwrap(), &refs), &want, tol, &format!("{arch:?} prompt {i}"));
            }
            // A prefix made of token embeddings is the same as those tokens after BOS.
            let emb = &ck.tensors["model.embeddings.weight"];
            let toks = [7u32, 20, 33];
            let rows: Vec<f32> = toks.iter().flat_map(|&t| emb.as_f32("e").unwrap()[t as usize * 32..(t as usize + 1) * 32].to_vec()).collect();
            let prefix = HostTensor::f32(&[3, 32], rows).unwrap();
            let spliced: Vec<Vec<u32>> = s.iter().map(|v| [&v[..1], &toks[..], &v[1..]].concat()).collect();
            let sp: Vec<&[u32]> = spliced.iter().map(|v| v.as_slice()).collect();
            let plain = be.read_sync(&model.classify_batch(&be, &sp, None).unwrap()).unwrap();
            let plain: Vec<Vec<f32>> = plain.as_f32("l").unwrap().chunks(2).map(<[f32]>::to_vec).collect();
            close(&model_rows(&be, &model, &prefix, &refs), &plain, 1e-5, &format!("{arch:?} token prefix"));
        }
        // Bad prefixes are refused, not a panic.
        let model = Model::load(&be, small(Arch::Gla)).unwrap();
        assert!(model.classify_batch_with_prefix(&be, &HostTensor::f32(&[2, 31], vec![0.0; 62]).unwrap(), &refs, None).is_err());
        assert!(model.classify_batch_with_prefix(&be, &HostTensor::f32(&[1, 32], vec![f32::NAN; 32]).unwrap(), &refs, None).is_err());
        assert!(model.classify_batch_with_prefix(&be, &HostTensor::f32(&[1, 32], vec![0.0; 32]).unwrap(), &[&[1, 5], &[5, 1]], None).is_err());
    }

    #[test]
    fn argmax_ties_go_to_the_lowest_index() {
        assert_eq!(argmax_lowest(&[0.2, 0.5, 0.5]), 1);
        assert_eq!(argmax_lowest(&[0.3, 0.3, 0.3]), 0);
        assert_eq!(argmax_lowest(&[f64::NAN, 0.1, 0.1]), 1);
        assert_eq!(argmax_lowest(&[0.1, f64::NAN, 0.4]), 2);
        assert_eq!(argmax_lowest(&[-1.0]), 0);
    }

    #[test]
    fn selection_hand_cases() {
        let s = seqs(4, &[6, 9, 2, 12]);
        let refs: Vec<&[u32]> = s.iter().map(|v| v.as_slice()).collect();
        for arch in ARCHS {
            let ck = small(arch);
            let twin = FrozenTwin::from_checkpoint(&ck, Task::Sst2).unwrap();
            let mut pool = Pool::init(&twin, 3, 4, 5).unwrap();
            // Prompt 2 a copy of prompt 0: with per-prompt position ids (and each prompt alone before
            // the input for GLA) the two score the same, and the tie goes to 0 — never to 2.
            pool.values[2] = pool.values[0].clone();
            for sel in [Selector::Attention, Selector::Confidence] {
                let sc = scores(&twin, &pool, &refs, sel).unwrap();
                for row in &sc {
                    assert!((row[0] - row[2]).abs() <= 1e-6 * (1.0 + row[0].abs()), "{arch:?} {sel:?}: {row:?}");
                    assert!(row.iter().all(|v| v.is_finite()));
                }
                let picks = select(&twin, &pool, &refs, sel).unwrap();
                assert!(picks.iter().all(|&p| p != 2), "{arch:?} {sel:?}: {picks:?}");
            }
            // Attention masses are shares of one softmax (Transformer++) or normalised weights (GLA).
            if arch != Arch::HgrnBit {
                for row in scores(&twin, &pool, &refs, Selector::Attention).unwrap() {
                    let sum: f64 = row.iter().sum();
                    assert!(sum > 0.0 && sum <= 1.0 + 1e-6, "{arch:?}: {row:?}");
                }
            }
        }
        // HGRN-bit: a prompt made of the input's own token embeddings has cosine 1 and wins.
        let ck = small(Arch::HgrnBit);
        let twin = FrozenTwin::from_checkpoint(&ck, Task::Sst2).unwrap();
        let mut pool = Pool::init(&twin, 3, 2, 5).unwrap();
        let input: &[u32] = &[crate::text::BOS_ID, 9, 17];
        let e = ck.tensors["model.embeddings.weight"].as_f32("e").unwrap();
        pool.values[1] = [&e[9 * 32..10 * 32], &e[17 * 32..18 * 32]].concat();
        let sc = scores(&twin, &pool, &[input], Selector::Attention).unwrap();
        assert!((sc[0][1] - 1.0).abs() < 1e-5, "{sc:?}");
        assert_eq!(select(&twin, &pool, &[input], Selector::Attention).unwrap(), [1]);
    }

    fn task_data(n: usize, seed: u64) -> Vec<Seq> {
        // Label 1 when token 7 occurs: learnable from the input, unknown to a random model.
        let mut rng = SplitMix64::new(seed);
        (0..n)
            .map(|_| {
                let len = 3 + rng.below(10) as usize;
                let ids: Vec<u32> = std::iter::once(crate::text::BOS_ID).chain((1..len).map(|_| 4 + rng.below(8) as u32)).collect();
                let label = ids.contains(&7) as u32;
                Seq { ids, label }
            })
            .collect()
    }

    fn cfg(arch_seed: u64) -> TrainConfig {
        TrainConfig { prompts: 3, tokens: 2, epochs: 3, lr: 1e-2, batch: 8, seed: arch_seed, selector: Selector::Attention }
    }

    #[test]
    fn training_lowers_the_calibration_loss_and_is_deterministic() {
        let data = task_data(48, 1);
        for arch in ARCHS {
            let twin = FrozenTwin::from_checkpoint(&small(arch), Task::Sst2).unwrap();
            let mut calls = 0;
            let a = train_pool(&twin, &data, &cfg(3), &mut |_, _| {
                calls += 1;
                true
            })
            .unwrap();
            assert_eq!((a.steps, calls), (18, 18));
            assert!(a.loss_after < a.loss_before, "{arch:?}: {} -> {}", a.loss_before, a.loss_after);
            let b = train_pool(&twin, &data, &cfg(3), &mut |_, _| true).unwrap();
            assert_eq!(a.pool, b.pool, "{arch:?}: same seed, same pool");
            assert_eq!(a.loss_after.to_bits(), b.loss_after.to_bits());
            let c = train_pool(&twin, &data, &cfg(4), &mut |_, _| true).unwrap();
            assert_ne!(a.pool, c.pool, "{arch:?}: another seed, another pool");
            // Stopping early keeps the pool so far.
            let d = train_pool(&twin, &data, &cfg(3), &mut |s, _| s < 2).unwrap();
            assert_eq!(d.steps, 2);
        }
    }

    #[test]
    fn bad_inputs_are_refused() {
        let twin = FrozenTwin::from_checkpoint(&small(Arch::Gla), Task::Sst2).unwrap();
        let data = task_data(8, 2);
        let ok = |c: TrainConfig| train_pool(&twin, &data, &c, &mut |_, _| true).is_ok();
        assert!(!ok(TrainConfig { prompts: 0, ..cfg(1) }));
        assert!(!ok(TrainConfig { tokens: 0, ..cfg(1) }));
        assert!(!ok(TrainConfig { lr: f64::NAN, ..cfg(1) }));
        assert!(!ok(TrainConfig { batch: 0, ..cfg(1) }));
        assert!(train_pool(&twin, &[], &cfg(1), &mut |_, _| true).is_err());
        assert!(train_pool(&twin, &[Seq { ids: vec![1, 5], label: 9 }], &cfg(1), &mut |_, _| true).is_err());
        // QNLI's head is absent from a plain folder with only score.weight? It is there (no default task), but
        // MNLI has 3 classes: refused.
        assert!(FrozenTwin::from_checkpoint(&small(Arch::Gla), Task::Mnli).is_err());
        let pool = Pool::init(&twin, 2, 2, 1).unwrap();
        assert!(pool.prompt(2).is_err());
        assert_eq!(pool.parameters(), 2 * 2 * 32);
    }
}
