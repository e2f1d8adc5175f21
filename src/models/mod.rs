//! The three architectures, one file each, in the seed paper's order:
//! [`transformer_pp`] (Transformer++), [`gla`] (Gated Linear Attention), [`matmul_free`]
//! (HGRN-bit). This file holds what they share: the SwiGLU/GLU MLP, the heads and [`Model`], which
//! loads any of them from a Hugging Face folder ([`Checkpoint`]).
//!
//! Heads (specs/models.md §6): the LM head `[T, N]`, and the sequence-classification head
//! `score.weight [C, H]` (no bias) applied to the final-normed hidden state of the *last* token, as
//! HF's GenericForSequenceClassification does. Sequences run unpadded, so "last non-pad token" is
//! simply the last one.

pub mod config;
pub mod gla;
pub mod init;
pub mod matmul_free;
pub mod parallel;
pub mod transformer_pp;

use crate::backend::{Backend, Binary, HostTensor, TensorMeta, Unary};
use crate::error::{Error, Result};
use crate::io::Checkpoint;
use crate::nn::linear::{Linear, RowBlocks, TernaryWeights};
pub use config::{Arch, Common};

/// Take the first tensor found under any of `names` (current name first, legacy names after).
pub(crate) fn take_any(ck: &mut Checkpoint, names: &[String], shape: &[usize]) -> Result<HostTensor> {
    for n in names {
        if ck.tensors.contains_key(n) {
            return ck.take(n, shape);
        }
    }
    Err(Error::Invalid(format!("checkpoint is missing tensor {} (also looked for {:?})", names[0], &names[1..])))
}

pub(crate) fn take_norm<B: Backend>(be: &B, ck: &mut Checkpoint, names: &[String], d: usize) -> Result<B::Tensor> {
    be.upload(&take_any(ck, names, &[d])?)
}

/// A BitLinear `prefix` (`…_proj`): packed ternary weights (`weight_ternary` u32 + `weight_scale`,
/// Trilemma's safetensors extension) when present, else the latent `weight` ternarised here, plus
/// its own `norm.weight`.
pub(crate) fn take_bit<B: Backend>(be: &B, ck: &mut Checkpoint, prefix: &str, n: usize, k: usize) -> Result<Linear<B>> {
    let norm = ck.take(&format!("{prefix}.norm.weight"), &[k])?;
    let packed_name = format!("{prefix}.weight_ternary");
    let t = if ck.tensors.contains_key(&packed_name) {
        let words = ck.take(&packed_name, &[n, crate::backend::ternary::words_per_row(k)])?;
        let scale = ck.take(&format!("{prefix}.weight_scale"), &[1])?;
        TernaryWeights { packed: words.as_u32("weight_ternary")?.to_vec(), beta: scale.as_f32("weight_scale")?[0], n, k }
    } else {
        TernaryWeights::from_latent(&ck.take(&format!("{prefix}.weight"), &[n, k])?)?
    };
    Linear::bit(be, &t, &norm)
}

/// A block linear `prefix` (`…_proj`) `[N, K]` in whichever form the checkpoint stores it, picked
/// by the tensors present ([`crate::compress::apply`] writes them):
///
/// | tensors | variant |
/// |---|---|
/// | `weight` `[N, K]` | [`Linear::Dense`] (f16 pairs where the backend keeps half weights) |
/// | `weight_int8` u32 `[N, ⌈K/4⌉]` + `weight_scale` `[N]` | [`Linear::Int8`] |
/// | `weight_int4` u32 `[N, K/8]` + `weight_scale` `[N, K/g]` | [`Linear::Int4`] |
/// | `weight_ternary` u32 `[N, ⌈K/16⌉]` + `weight_scale` `[1]` | [`Linear::Ternary`] (weight-only) |
/// | `weight_lr_a` `[r, K]` + `weight_lr_b` `[N, r]` | [`Linear::LowRank`] |
///
/// plus an optional `bias` `[N]` in every form. Shapes and codes are checked (a bad file is an
/// [`Error::Invalid`] naming the tensor); a second form of the same weight is left in the
/// checkpoint, so [`Model::load`] refuses it as unused.
pub(crate) fn take_linear<B: Backend>(be: &B, ck: &mut Checkpoint, prefix: &str, n: usize, k: usize) -> Result<Linear<B>> {
    let name = |s: &str| format!("{prefix}.{s}");
    let bias_name = name("bias");
    let bias = if ck.tensors.contains_key(&bias_name) { Some(ck.take(&bias_name, &[n])?) } else { None };
    // A compression that quantises activations: the linear runs on int8 inputs, the bias added after.
    if crate::compress::apply::act_int8(&ck.config) && !ck.tensors.contains_key(&name("weight_lr_a")) {
        let inner = take_linear_with(be, ck, prefix, n, k, None)?;
        return Ok(Linear::ActInt8 { inner: Box::new(inner), b: bias.map(|b| be.upload(&b)).transpose()? });
    }
    take_linear_with(be, ck, prefix, n, k, bias.as_ref())
}

/// [`take_linear`] with the bias given.
fn take_linear_with<B: Backend>(be: &B, ck: &mut Checkpoint, prefix: &str, n: usize, k: usize, bias: Option<&HostTensor>) -> Result<Linear<B>> {
    let name = |s: &str| format!("{prefix}.{s}");
    let has = |ck: &Checkpoint, s: &str| ck.tensors.contains_key(&name(s));
    let ctx = |e: Error| match e {
        Error::Invalid(m) => Error::Invalid(format!("{prefix}: {m}")),
        other => other,
    };
    let take_scale = |ck: &mut Checkpoint| ck.tensors.remove(&name("weight_scale")).ok_or_else(|| Error::Invalid(format!("checkpoint is missing tensor {}", name("weight_scale"))));
    if has(ck, "weight") {
        return Linear::dense(be, &ck.take(&name("weight"), &[n, k])?, bias);
    }
    if has(ck, "weight_int8") {
        let codes = ck.take(&name("weight_int8"), &[n, crate::backend::int8::words_per_row(k)])?;
        return Linear::int8(be, &codes, &take_scale(ck)?, k, bias).map_err(ctx);
    }
    if has(ck, "weight_int4") {
        let codes = ck.take(&name("weight_int4"), &[n, crate::compress::quant::int4::words_per_row(k)])?;
        return Linear::int4(be, &codes, &take_scale(ck)?, k, bias).map_err(ctx);
    }
    if has(ck, "weight_ternary") {
        let words = ck.take(&name("weight_ternary"), &[n, crate::backend::ternary::words_per_row(k)])?;
        let scale = ck.take(&name("weight_scale"), &[1])?;
        let t = TernaryWeights { packed: words.as_u32("weight_ternary")?.to_vec(), beta: scale.as_f32("weight_scale")?[0], n, k };
        return Linear::ternary(be, &t, bias).map_err(ctx);
    }
    if has(ck, "weight_lr_a") || has(ck, "weight_lr_b") {
        let a = ck.tensors.remove(&name("weight_lr_a")).ok_or_else(|| Error::Invalid(format!("checkpoint is missing tensor {}", name("weight_lr_a"))))?;
        let r = a.shape.first().copied().unwrap_or(0);
        let b = ck.take(&name("weight_lr_b"), &[n, r])?;
        return Linear::low_rank(be, &a, &b, k, bias).map_err(ctx);
    }
    Err(Error::Invalid(format!("checkpoint is missing tensor {} (nor does it hold a packed form: weight_int8, weight_int4, weight_ternary, weight_lr_a/b)", name("weight"))))
}

/// One pre-norm residual block (specs/models.md §0): `r = x + mixer(RMSNorm_a(x))`,
/// `x' = r + MLP(RMSNorm_b(r))`; the three architectures differ only in the mixer.
pub(crate) fn pre_norm_block<B: Backend>(
    be: &B,
    x: &B::Tensor,
    attn_norm: &B::Tensor,
    mlp_norm: &B::Tensor,
    mlp: &Mlp<B>,
    eps: f32,
    mixer: impl FnOnce(&B::Tensor) -> Result<B::Tensor>,
) -> Result<B::Tensor> {
    let r = be.binary(Binary::Add, x, &mixer(&be.rms_norm(x, attn_norm, eps)?)?)?;
    be.binary(Binary::Add, &r, &mlp.forward(be, &be.rms_norm(&r, mlp_norm, eps)?)?)
}

/// The gated MLP: `down(SiLU(gate(x)) ⊙ up(x))` (§1.1, and HGRN-bit's GLU §4.5).
pub struct Mlp<B: Backend> {
    /// Either separate gate and up projections, or one fused `[2I, H]` projection (rows `[0, I)`
    /// gate, `[I, 2I)` up) — kept fused for BitLinear, whose ternary scale spans the fused tensor,
    /// and for the legacy FLA layout, whose packed forms span it too.
    gate: Linear<B>,
    up: Option<Linear<B>>,
    down: Linear<B>,
    intermediate: usize,
}

pub(crate) fn load_mlp<B: Backend>(be: &B, ck: &mut Checkpoint, p: &str, h: usize, i: usize, bit: bool) -> Result<Mlp<B>> {
    if bit {
        return Ok(Mlp {
            gate: take_bit(be, ck, &format!("{p}gate_proj"), 2 * i, h)?,
            up: None,
            down: take_bit(be, ck, &format!("{p}down_proj"), h, i)?,
            intermediate: i,
        });
    }
    let down = take_linear(be, ck, &format!("{p}down_proj"), h, i)?;
    if ck.tensors.keys().any(|n| n.starts_with(&format!("{p}up_proj."))) {
        let gate = take_linear(be, ck, &format!("{p}gate_proj"), i, h)?;
        let up = take_linear(be, ck, &format!("{p}up_proj"), i, h)?;
        Ok(Mlp { gate, up: Some(up), down, intermediate: i })
    } else {
        // Legacy FLA layout (before 2025-02-09): one gate_proj [2I, H], run fused and split after.
        Ok(Mlp { gate: take_linear(be, ck, &format!("{p}gate_proj"), 2 * i, h)?, up: None, down, intermediate: i })
    }
}

impl<B: Backend> Mlp<B> {
    /// x `[T, H]` -> `[T, H]`.
    pub fn forward(&self, be: &B, x: &B::Tensor) -> Result<B::Tensor> {
        let (g, u) = match &self.up {
            Some(up) => (self.gate.forward(be, x)?, up.forward(be, x)?),
            None => {
                let gu = self.gate.forward(be, x)?; // [T, 2I]
                (be.narrow(&gu, 1, 0, self.intermediate)?, be.narrow(&gu, 1, self.intermediate, self.intermediate)?)
            }
        };
        let a = be.binary(Binary::Mul, &be.unary(Unary::Silu, &g)?, &u)?;
        self.down.forward(be, &a)
    }
}

/// One of the three bodies.
pub enum Body<B: Backend> {
    Transformer(transformer_pp::Transformer<B>),
    Gla(gla::Gla<B>),
    HgrnBit(matmul_free::HgrnBit<B>),
}

impl<B: Backend> Body<B> {
    /// Run `[lp.start, lp.end)` as layer-parallel pairs (methods.md §1), fused when asked and possible.
    pub fn set_layer_parallel(&mut self, be: &B, lp: parallel::LayerParallel) -> Result<()> {
        match self {
            Body::Transformer(m) => m.set_layer_parallel(be, lp),
            Body::Gla(m) => m.set_layer_parallel(be, lp),
            Body::HgrnBit(m) => m.set_layer_parallel(be, lp),
        }
    }

    /// The layer-parallel stretch as it runs: the setting and whether its pairs run fused.
    pub fn layer_parallel(&self) -> Option<(parallel::LayerParallel, bool)> {
        match self {
            Body::Transformer(m) => m.parallel.as_ref().map(|p| (p.lp, p.fused())),
            Body::Gla(m) => m.parallel.as_ref().map(|p| (p.lp, p.fused())),
            Body::HgrnBit(m) => m.parallel.as_ref().map(|p| (p.lp, p.fused())),
        }
    }
}

/// A loaded model: embeddings, body, final norm, and whichever heads the folder has.
pub struct Model<B: Backend> {
    pub common: Common,
    /// `[N, H]`, in row blocks when larger than the backend's binding limit.
    pub embeddings: RowBlocks<B>,
    pub body: Body<B>,
    pub norm: B::Tensor,
    /// `[N, H]` dense (or tied to the embeddings), or a BitLinear for HGRN-bit. `None` for a
    /// classifier-only folder.
    pub lm_head: Option<Linear<B>>,
    /// `[C, H]`.
    pub score: Option<B::Tensor>,
    /// Extra task heads `score.<task>.weight` `[C_task, H]`, declared in `config.json` under
    /// `trilemma.task_heads` (Trilemma's multi-task folders; README "Model folders").
    pub heads: std::collections::BTreeMap<String, B::Tensor>,
}

impl<B: Backend> Model<B> {
    /// Build from a checkpoint; every tensor's shape is checked against the config, and tensors
    /// the model does not use are reported as an error (a wrong architecture or a typo in a name).
    pub fn load(be: &B, mut ck: Checkpoint) -> Result<Self> {
        let common = Common::parse(&ck.config)?;
        let (h, n) = (common.hidden, common.vocab);
        let emb = take_any(&mut ck, &["model.embeddings.weight".into(), "model.embed_tokens.weight".into()], &[n, h])?;
        let embeddings = RowBlocks::upload(be, &emb)?;
        let mut body = match common.arch {
            Arch::Transformer => Body::Transformer(transformer_pp::Transformer::load(be, &mut ck, &common)?),
            Arch::Gla => Body::Gla(gla::Gla::load(be, &mut ck, &common)?),
            Arch::HgrnBit => Body::HgrnBit(matmul_free::HgrnBit::load(be, &mut ck, &common)?),
        };
        if let Some(lp) = parallel::LayerParallel::from_config(&ck.config, common.layers)? {
            body.set_layer_parallel(be, lp)?;
        }
        let norm = be.upload(&ck.take("model.norm.weight", &[h])?)?;
        let lm_head = if common.arch == Arch::HgrnBit {
            if ck.tensors.contains_key("lm_head.weight") || ck.tensors.contains_key("lm_head.weight_ternary") {
                Some(take_bit(be, &mut ck, "lm_head", n, h)?)
            } else {
                None
            }
        } else if ck.tensors.contains_key("lm_head.weight") {
            Some(Linear::dense(be, &ck.take("lm_head.weight", &[n, h])?, None)?)
        } else if common.tie_word_embeddings {
            Some(Linear::Dense { w: embeddings.clone(), b: None })
        } else {
            None
        };
        let score = match (common.num_labels, ck.tensors.contains_key("score.weight")) {
            (Some(c), true) => Some(be.upload(&ck.take("score.weight", &[c, h])?)?),
            (None, true) => {
                let c = ck.tensors["score.weight"].shape.first().copied().unwrap_or(0);
                Some(be.upload(&ck.take("score.weight", &[c, h])?)?)
            }
            (Some(_), false) => return Err(Error::Invalid("config.json has num_labels but the checkpoint has no score.weight".into())),
            (None, false) => None,
        };
        let mut heads = std::collections::BTreeMap::new();
        if let Some(decl) = ck.config.get("trilemma").and_then(|t| t.get("task_heads")).filter(|v| !v.is_null()) {
            let decl = decl
                .as_object()
                .ok_or_else(|| Error::Invalid("config.json: \"trilemma.task_heads\" must map task names to class counts".into()))?
                .clone();
            for (task, c) in decl {
                let c = c.as_u64().filter(|&c| c > 0).ok_or_else(|| {
                    Error::Invalid(format!("config.json: \"trilemma.task_heads.{task}\" must be a positive class count, got {c}"))
                })?;
                let w = ck.take(&format!("score.{task}.weight"), &[c as usize, h])?;
                heads.insert(task.clone(), be.upload(&w)?);
            }
        }
        if let Some(extra) = ck.tensors.keys().next() {
            return Err(Error::Invalid(format!(
                "checkpoint has {} tensor(s) the {} model does not use, e.g. {extra}",
                ck.tensors.len(),
                common.arch.display_name()
            )));
        }
        Ok(Self { common, embeddings, body, norm, lm_head, score, heads })
    }

    /// ids `[T]` -> final-normed hidden states `[T, H]`.
    pub fn hidden(&self, be: &B, ids: &[u32]) -> Result<B::Tensor> {
        self.run(be, ids, None)
    }

    /// ids `[T]` -> (each sequential step's output `[T, H]`, final-normed hidden states `[T, H]`): one per block, or
    /// L − Δ/2 under layer parallelism, where a pair's output is one tap.
    pub fn hidden_states(&self, be: &B, ids: &[u32]) -> Result<(Vec<B::Tensor>, B::Tensor)> {
        let mut taps = Vec::with_capacity(self.common.layers);
        let h = self.run(be, ids, Some(&mut taps))?;
        Ok((taps, h))
    }

    fn run(&self, be: &B, ids: &[u32], taps: Option<&mut Vec<B::Tensor>>) -> Result<B::Tensor> {
        self.run_batch(be, &[ids], taps).map(|(h, _)| h)
    }

    /// Right-pad `seqs` to the longest and run them as one batch: final-normed hidden states
    /// `[B·T, H]` and each sequence's length. Every architecture is causal, so the padding after a
    /// sequence's last token never reaches it: each row equals that sequence run alone (up to the
    /// summation order of the larger products).
    fn run_batch(&self, be: &B, seqs: &[&[u32]], taps: Option<&mut Vec<B::Tensor>>) -> Result<(B::Tensor, Vec<usize>)> {
        if seqs.is_empty() {
            return Err(Error::Invalid("no sequences to run".into()));
        }
        if let Some(i) = seqs.iter().position(|s| s.is_empty()) {
            return Err(Error::Invalid(format!("no tokens to run (sequence {i} of the batch is empty)")));
        }
        let lengths: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        let t = *lengths.iter().max().expect("non-empty batch");
        let b = seqs.len();
        let mut ids = Vec::with_capacity(b * t);
        for s in seqs {
            ids.extend_from_slice(s);
            // Padding: any valid id (0) — causality keeps it from the real tokens.
            ids.resize(ids.len() + t - s.len(), 0);
        }
        let x = self.embeddings.gather(be, &ids)?; // [B·T, H]
        let x = match &self.body {
            Body::Transformer(m) => m.forward(be, x, b, taps)?,
            Body::Gla(m) => m.forward(be, x, b, taps)?,
            Body::HgrnBit(m) => m.forward(be, x, b, taps)?,
        };
        Ok((be.rms_norm(&x, &self.norm, self.common.norm_eps)?, lengths))
    }

    /// Class logits `[B, C]` of `task`'s head (see [`Model::head`]) for a batch of token
    /// sequences, run together (on the GPU: one submission when the result is read).
    pub fn classify_batch(&self, be: &B, seqs: &[&[u32]], task: Option<&str>) -> Result<B::Tensor> {
        let score = self.head(task)?;
        be.matmul(&self.last_hidden(be, seqs)?, score, true)
    }

    /// Class logits `[B, C]` of `task`'s head with soft-prompt vectors `prefix` `[n, H]` inserted
    /// after each sequence's first token when that is BOS (every sequence then starts with BOS), else
    /// before the first token: `[BOS | prefix | rest]` (methods.md §3.3, IDP). RoPE positions run
    /// over the prefix too, and pooling reads each sequence's last real token, now `n` further
    /// (§3.8). The prefix is input-independent, so one upload serves the whole batch.
    pub fn classify_batch_with_prefix(&self, be: &B, prefix: &HostTensor, seqs: &[&[u32]], task: Option<&str>) -> Result<B::Tensor> {
        let score = self.head(task)?;
        let hd = self.common.hidden;
        let n = match *prefix.shape.as_slice() {
            [n, h] if h == hd && n > 0 => n,
            ref s => return Err(Error::Invalid(format!("a soft prompt must be [n, {hd}] with n ≥ 1, got {s:?}"))),
        };
        let pv = prefix.as_f32("soft prompt")?;
        if pv.iter().any(|x| !x.is_finite()) {
            return Err(Error::Invalid("the soft prompt has a non-finite value".into()));
        }
        if seqs.is_empty() {
            return Err(Error::Invalid("no sequences to run".into()));
        }
        if let Some(i) = seqs.iter().position(|s| s.is_empty()) {
            return Err(Error::Invalid(format!("no tokens to run (sequence {i} of the batch is empty)")));
        }
        let bos = prefix_after(seqs)?;
        let b = seqs.len();
        let t0 = seqs.iter().map(|s| s.len()).max().expect("non-empty batch");
        let mut ids = Vec::with_capacity(b * t0);
        for s in seqs {
            ids.extend_from_slice(s);
            ids.resize(ids.len() + t0 - s.len(), 0);
        }
        let x = be.reshape(&self.embeddings.gather(be, &ids)?, &[b, t0, hd])?; // [B, T0, H]
        let pre = be.upload(&HostTensor::f32(&[b, n, hd], pv.repeat(b))?)?; // [B, n, H]
        let x = if bos == 1 {
            let head = be.narrow(&x, 1, 0, 1)?;
            if t0 > 1 {
                be.concat(&[&head, &pre, &be.narrow(&x, 1, 1, t0 - 1)?], 1)?
            } else {
                be.concat(&[&head, &pre], 1)?
            }
        } else {
            be.concat(&[&pre, &x], 1)?
        };
        let t = t0 + n;
        let x = be.reshape(&x, &[b * t, hd])?;
        let x = match &self.body {
            Body::Transformer(m) => m.forward(be, x, b, None)?,
            Body::Gla(m) => m.forward(be, x, b, None)?,
            Body::HgrnBit(m) => m.forward(be, x, b, None)?,
        };
        let h = be.rms_norm(&x, &self.norm, self.common.norm_eps)?;
        let lengths: Vec<usize> = seqs.iter().map(|s| s.len() + n).collect();
        let last = be.last_token(&be.reshape(&h, &[b, t, hd])?, &lengths)?; // [B, H]
        be.matmul(&last, score, true)
    }

    /// ids `[T]` -> next-token logits `[T, N]`.
    pub fn lm_logits(&self, be: &B, ids: &[u32]) -> Result<B::Tensor> {
        let head = self.lm_head.as_ref().ok_or_else(|| Error::Invalid("this model folder has no LM head (lm_head.weight)".into()))?;
        head.forward(be, &self.hidden(be, ids)?)
    }

    /// Next-token logits `[B, N]` through the LM head at each sequence's last token, for a batch run together
    /// (the hard text prompts' classifier: [`crate::repair::text_prompts`]).
    pub fn next_token_batch(&self, be: &B, seqs: &[&[u32]]) -> Result<B::Tensor> {
        let head = self.lm_head.as_ref().ok_or_else(|| Error::Invalid("this model folder has no LM head (lm_head.weight)".into()))?;
        head.forward(be, &self.last_hidden(be, seqs)?)
    }

    /// Final-normed hidden state `[B, H]` at each sequence's last token, for a batch run together.
    fn last_hidden(&self, be: &B, seqs: &[&[u32]]) -> Result<B::Tensor> {
        let (h, lengths) = self.run_batch(be, seqs, None)?; // [B·T, H]
        let (bt, hd) = (h.shape()[0], h.shape()[1]);
        be.last_token(&be.reshape(&h, &[seqs.len(), bt / seqs.len(), hd])?, &lengths)
    }

    /// ids `[T]` -> class logits `[1, C]` at the last token, with the folder's `score.weight`.
    pub fn classify(&self, be: &B, ids: &[u32]) -> Result<B::Tensor> {
        self.classify_task(be, ids, None)
    }

    /// The head for `task`: `score.<task>.weight` when the folder has one, else `score.weight`
    /// when the folder's default task is `task` (or no task is named).
    pub fn head(&self, task: Option<&str>) -> Result<&B::Tensor> {
        if let Some(h) = task.and_then(|t| self.heads.get(t)) {
            return Ok(h);
        }
        let default_ok = match (task, &self.common.default_task) {
            (None, _) => true,
            (Some(t), Some(d)) => t == d,
            // A plain HF folder does not say which task its head is for: trust the caller.
            (Some(_), None) => self.heads.is_empty(),
        };
        match (&self.score, default_ok) {
            (Some(s), true) => Ok(s),
            (None, _) => Err(Error::Invalid("this model folder has no classification head (score.weight)".into())),
            (Some(_), false) => Err(Error::Invalid(format!(
                "this model folder has no head for task {:?} (it has: {})",
                task.unwrap_or_default(),
                self.common.default_task.iter().chain(self.heads.keys()).cloned().collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// ids `[T]` -> class logits `[1, C]` of `task`'s head (see [`Model::head`]).
    pub fn classify_task(&self, be: &B, ids: &[u32], task: Option<&str>) -> Result<B::Tensor> {
        self.classify_batch(be, &[ids], task)
    }
}

/// Where a soft prompt goes in every sequence of a batch: after position 0 (`1`) when all start
/// with BOS, at the start (`0`) when none does; a batch that mixes the two is refused.
pub fn prefix_after(seqs: &[&[u32]]) -> Result<usize> {
    let with_bos = seqs.iter().filter(|s| s.first() == Some(&crate::text::BOS_ID)).count();
    match with_bos {
        0 => Ok(0),
        k if k == seqs.len() => Ok(1),
        _ => Err(Error::Invalid("a soft prompt needs every sequence of a batch to start with BOS, or none".into())),
    }
}
