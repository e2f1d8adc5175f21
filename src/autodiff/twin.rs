//! The training twin of `src/models/*`: the same three forward passes written directly on
//! candle tensors, batched `[B, T, H]` and differentiable (candle-core autograd).
//!
//! Why a twin instead of the inference [`Model`](crate::models::Model): inference runs one
//! unpadded sequence `[T, H]` through the backend trait (so the GPU can run it), and holds
//! HGRN-bit's weights packed; training needs batches, gradients, latent f32 weights and
//! straight-through estimators. `tests/train.rs` exports a twin and checks that `Model::load`
//! computes the same logits, so the two cannot drift apart.
//!
//! Every composite op (RMSNorm, softmax, SiLU, log-sigmoid) is composed from basic candle ops,
//! exactly as `backend::cpu` writes them (candle-nn's fused `rms_norm`, `rope` and
//! `softmax_last_dim` record no gradient).
//!
//! Batches are right-padded: all three mixers are causal, so padding after the last real token
//! never reaches a real position; the classifier reads the last real token, the LM loss skips
//! padded targets.

use super::vars::Params;
use crate::models::config::Arch;
use crate::models::gla::{GATE_LOGIT_NORMALIZER, MASK_NEG};
use crate::models::init::Dims;
use crate::nn::linear::{ACT_SCALE_FLOOR, BITLINEAR_NORM_EPS, WEIGHT_SCALE_FLOOR};
use candle_core::{DType, Device, Result, Tensor, D};

/// GLA chunk length of the training forward (the inference default too).
pub const GLA_CHUNK: usize = 16;

/// Dropout masks drawn from the recipe's seed (candle's own random numbers are not seeded).
pub struct Dropout<'a> {
    pub p: f32,
    pub rng: &'a mut crate::rng::SplitMix64,
}

impl Dropout<'_> {
    /// `x ⊙ m / (1 − p)` with `m ~ Bernoulli(1 − p)`; identity when `p = 0`.
    fn apply(&mut self, x: &Tensor) -> Result<Tensor> {
        if self.p <= 0.0 {
            return Ok(x.clone());
        }
        let keep = 1.0 / (1.0 - self.p);
        let n = x.elem_count();
        let mask: Vec<f32> = (0..n).map(|_| if self.rng.next_f32() < self.p { 0.0 } else { keep }).collect();
        x * Tensor::from_vec(mask, x.dims(), x.device())?
    }
}

fn sigmoid(x: &Tensor) -> Result<Tensor> {
    (x.neg()?.exp()? + 1.0)?.recip()
}

fn silu(x: &Tensor) -> Result<Tensor> {
    x * sigmoid(x)?
}

/// `min(x, 0) − log(1 + exp(−|x|))`, as `backend::cpu`.
fn log_sigmoid(x: &Tensor) -> Result<Tensor> {
    x.minimum(0f32)? - (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// RMSNorm over the last dim, the formula of `backend::cpu::rms_norm`.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    let inv = (ms + eps)?.sqrt()?.recip()?;
    x.broadcast_mul(&inv)?.broadcast_mul(w)
}

/// Softmax over the last dim, the formula of `backend::cpu::softmax`.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    let m = x.max_keepdim(D::Minus1)?;
    let e = x.broadcast_sub(&m)?.exp()?;
    let s = e.sum_keepdim(D::Minus1)?;
    e.broadcast_div(&s)
}

/// `x [.., K] · wᵀ`, `w [N, K]`.
fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let k = dims[dims.len() - 1];
    let rows: usize = dims[..dims.len() - 1].iter().product();
    let y = x.reshape((rows, k))?.matmul(&w.t()?)?;
    let mut out = dims;
    *out.last_mut().expect("rank ≥ 1") = w.dim(0)?;
    y.reshape(out)
}

/// Straight-through estimator: the forward value of `q`, the gradient of `x`.
fn ste(x: &Tensor, q: &Tensor) -> Result<Tensor> {
    x + (q - x)?.detach()
}

/// What a [`with_tap`] observer sees of every projection: the weight's checkpoint name (`….q_proj.weight`), the
/// input `[.., K]` as the matmul takes it (for a BitLinear: normalised and 8-bit quantised) and the output `[.., N]`
/// before any bias.
pub type Tap = Box<dyn FnMut(&str, &Tensor, &Tensor) -> Result<()>>;

thread_local! {
    static TAP: std::cell::RefCell<Option<Tap>> = const { std::cell::RefCell::new(None) };
}

/// Run `f` (twin forwards) with `tap` observing every projection, then return the tap: how calibration statistics
/// (activation norms, output covariances) are read off the one place every linear runs, without a second forward
/// to maintain. Per thread; a nested call replaces the outer tap for its duration.
pub fn with_tap<R>(tap: Tap, f: impl FnOnce() -> R) -> (R, Tap) {
    let outer = TAP.with(|t| t.borrow_mut().replace(tap));
    let r = f();
    let tap = TAP.with(|t| std::mem::replace(&mut *t.borrow_mut(), outer)).expect("set above");
    (r, tap)
}

/// `linear(x, w)`, shown to the tap when one is set.
fn tapped(name: &str, x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let y = linear(x, w)?;
    TAP.with(|t| match t.borrow_mut().as_mut() {
        Some(tap) => tap(name, x, &y),
        None => Ok(()),
    })?;
    Ok(y)
}

/// BitLinear in training (MatMul-free paper §3.2, BitNet b1.58): input RMSNorm, per-token 8-bit
/// absmax activations and per-tensor absmean ternary weights, both through straight-through
/// estimators over the latent f32 weight. The forward value is the inference BitLinear's
/// (`nn::linear::BitLinear::forward`) with the integer product written as a float matmul.
fn bitlinear(name: &str, x: &Tensor, w: &Tensor, norm: &Tensor) -> Result<Tensor> {
    let y = rms_norm(x, norm, BITLINEAR_NORM_EPS as f64)?;
    let amax = y.abs()?.max_keepdim(D::Minus1)?.clamp(ACT_SCALE_FLOOR, f32::MAX)?;
    let s = (amax.ones_like()? * 127.0)?.div(&amax)?; // 127 / amax, rounded as the inference path
    let q = y.broadcast_mul(&s)?.round()?.clamp(-128f32, 127f32)?.broadcast_div(&s)?;
    let yq = ste(&y, &q)?;
    let beta = w.abs()?.mean_all()?.clamp(WEIGHT_SCALE_FLOOR, f32::MAX)?;
    let tq = w.broadcast_div(&beta)?.round()?.clamp(-1f32, 1f32)?.broadcast_mul(&beta)?;
    tapped(name, &yq, &ste(w, &tq)?)
}

/// A projection by name: dense `name.weight`, or for HGRN-bit a BitLinear with `name.norm.weight`; plus
/// `name.bias` when the parameters have one.
fn proj(p: &Params, name: &str, x: &Tensor, bit: bool) -> Result<Tensor> {
    let w = format!("{name}.weight");
    let y = if bit { bitlinear(&w, x, p.get(&w)?, p.get(&format!("{name}.norm.weight"))?)? } else { tapped(&w, x, p.get(&w)?)? };
    // An optional bias (GLA's gate, SFSD's mean correction), after the tap: statistics are of `W·x` alone.
    match p.get(&format!("{name}.bias")) {
        Ok(b) => y.broadcast_add(b),
        Err(_) => Ok(y),
    }
}

/// `[B, T, nh·X] -> [B, nh, T, X]`.
fn split_heads(x: &Tensor, nh: usize) -> Result<Tensor> {
    let (b, t, w) = x.dims3()?;
    x.reshape((b, t, nh, w / nh))?.transpose(1, 2)?.contiguous()
}

/// `[B, nh, T, X] -> [B, T, nh·X]`.
fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let (b, nh, t, w) = x.dims4()?;
    x.transpose(1, 2)?.contiguous()?.reshape((b, t, nh * w))
}

/// The batched, differentiable forward of one architecture.
pub struct Twin<'a> {
    pub dims: &'a Dims,
    pub params: &'a Params,
    pub eps: f64,
}

impl Twin<'_> {
    /// ids `[B, T]` (u32, right-padded) -> final-normed hidden states `[B, T, H]`.
    pub fn hidden(&self, ids: &Tensor, drop: &mut Dropout) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let emb = self.params.get("model.embeddings.weight")?;
        let x = emb.index_select(&ids.flatten_all()?, 0)?.reshape((b, t, self.dims.hidden))?;
        self.hidden_from_embeddings(&x, drop)
    }

    /// Input embeddings `[B, T, H]` (right-padded; e.g. with soft-prompt vectors among the tokens'
    /// embeddings, [`crate::repair::prompts`]) -> final-normed hidden states `[B, T, H]`.
    pub fn hidden_from_embeddings(&self, x: &Tensor, drop: &mut Dropout) -> Result<Tensor> {
        let p = self.params;
        let t = x.dim(1)?;
        let mut x = drop.apply(x)?;
        let floors = if self.dims.arch == Arch::HgrnBit { Some(self.lower_bound_floors()?) } else { None };
        let rope = if self.dims.arch == Arch::Transformer { Some(self.rope_tables(t, x.device())?) } else { None };
        for l in 0..self.dims.layers {
            let pre = format!("model.layers.{l}.");
            let h = rms_norm(&x, p.get(&format!("{pre}attn_norm.weight"))?, self.eps)?;
            let mixed = match self.dims.arch {
                Arch::Transformer => self.attention(&pre, &h, rope.as_ref().expect("tables"))?,
                Arch::Gla => self.gla(&pre, &h)?,
                Arch::HgrnBit => self.mlgru(&pre, &h, l, floors.as_ref().expect("floors"))?,
            };
            let r = (x + drop.apply(&mixed)?)?;
            let h = rms_norm(&r, p.get(&format!("{pre}mlp_norm.weight"))?, self.eps)?;
            x = (&r + drop.apply(&self.mlp(&pre, &h)?)?)?;
        }
        rms_norm(&x, p.get("model.norm.weight")?, self.eps)
    }

    /// `down(SiLU(gate(x)) ⊙ up(x))`; HGRN-bit's fused BitLinear gate `[2I, H]` (gate rows first).
    fn mlp(&self, pre: &str, h: &Tensor) -> Result<Tensor> {
        let i = self.dims.intermediate;
        let bit = self.dims.arch == Arch::HgrnBit;
        let (g, u) = if bit {
            let gu = proj(self.params, &format!("{pre}mlp.gate_proj"), h, true)?;
            (gu.narrow(D::Minus1, 0, i)?, gu.narrow(D::Minus1, i, i)?)
        } else {
            (proj(self.params, &format!("{pre}mlp.gate_proj"), h, false)?, proj(self.params, &format!("{pre}mlp.up_proj"), h, false)?)
        };
        proj(self.params, &format!("{pre}mlp.down_proj"), &(silu(&g)? * u)?, bit)
    }

    /// RoPE tables `[T, hd]` (the inference tables, `nn::rope::tables`).
    fn rope_tables(&self, t: usize, dev: &Device) -> Result<(Tensor, Tensor)> {
        let hd = self.dims.hidden / self.dims.heads;
        let (c, s) = crate::nn::rope::tables(t, hd, 10_000.0, 0).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let c = Tensor::from_slice(c.as_f32("rope").map_err(|e| candle_core::Error::Msg(e.to_string()))?, (t, hd), dev)?;
        let s = Tensor::from_slice(s.as_f32("rope").map_err(|e| candle_core::Error::Msg(e.to_string()))?, (t, hd), dev)?;
        Ok((c, s))
    }

    /// Transformer++ causal attention: h `[B, T, H]` -> `[B, T, H]`.
    fn attention(&self, pre: &str, h: &Tensor, (cos, sin): &(Tensor, Tensor)) -> Result<Tensor> {
        let (nh, hd) = (self.dims.heads, self.dims.hidden / self.dims.heads);
        let t = h.dim(1)?;
        let q = split_heads(&proj(self.params, &format!("{pre}attn.q_proj"), h, false)?, nh)?; // [B, nh, T, hd]
        let k = split_heads(&proj(self.params, &format!("{pre}attn.k_proj"), h, false)?, nh)?;
        let v = split_heads(&proj(self.params, &format!("{pre}attn.v_proj"), h, false)?, nh)?;
        let rope = |x: &Tensor| -> Result<Tensor> {
            let half = hd / 2;
            let rot = Tensor::cat(&[&x.narrow(3, half, half)?.neg()?, &x.narrow(3, 0, half)?], 3)?;
            x.broadcast_mul(cos)? + rot.broadcast_mul(sin)?
        };
        let (q, k) = (rope(&q)?, rope(&k)?);
        let scores = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?; // [B, nh, T, T]
        let mask: Vec<f32> = (0..t * t).map(|i| if i % t <= i / t { 0.0 } else { MASK_NEG }).collect();
        let mask = Tensor::from_vec(mask, (t, t), h.device())?;
        let p = softmax(&scores.broadcast_add(&mask)?)?;
        let o = merge_heads(&p.matmul(&v)?)?; // [B, T, H]
        proj(self.params, &format!("{pre}attn.o_proj"), &o, false)
    }

    /// Layer `layer`'s Transformer++ queries and keys after RoPE, for the mixer's input h
    /// `[B, T, H]` (already normed) at explicit position ids `positions` `[T]` (shared by the
    /// batch): `([B, nh, T, hd], [B, nh, T, hd])`. Soft-prompt selection reads the attention mass
    /// with per-prompt position ids (methods.md §3.3).
    pub fn attention_qk(&self, layer: usize, h: &Tensor, positions: &[usize]) -> Result<(Tensor, Tensor)> {
        let (nh, hd) = (self.dims.heads, self.dims.hidden / self.dims.heads);
        let pre = format!("model.layers.{layer}.");
        let q = split_heads(&proj(self.params, &format!("{pre}attn.q_proj"), h, false)?, nh)?;
        let k = split_heads(&proj(self.params, &format!("{pre}attn.k_proj"), h, false)?, nh)?;
        let span = positions.iter().max().map_or(1, |m| m + 1);
        let (cos, sin) = self.rope_tables(span, h.device())?;
        let idx = Tensor::from_vec(positions.iter().map(|&p| p as u32).collect::<Vec<u32>>(), positions.len(), h.device())?;
        let (cos, sin) = (cos.index_select(&idx, 0)?, sin.index_select(&idx, 0)?);
        let rope = |x: &Tensor| -> Result<Tensor> {
            let half = hd / 2;
            let rot = Tensor::cat(&[&x.narrow(3, half, half)?.neg()?, &x.narrow(3, 0, half)?], 3)?;
            x.broadcast_mul(&cos)? + rot.broadcast_mul(&sin)?
        };
        Ok((rope(&q)?, rope(&k)?))
    }

    /// Layer `layer`'s GLA queries (scaled by dk^−½), keys and log forget gates for the mixer's
    /// input h `[B, T, H]`: each `[B, nh, T, dk]` (models.md §3.3).
    pub fn gla_qkg(&self, layer: usize, h: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let p = self.params;
        let nh = self.dims.heads;
        let a = |n: &str| format!("model.layers.{layer}.attn.{n}");
        let q = split_heads(&proj(p, &a("q_proj"), h, false)?, nh)?;
        let k = split_heads(&proj(p, &a("k_proj"), h, false)?, nh)?;
        let z = linear(&proj(p, &a("gk_proj.0"), h, false)?, p.get(&a("gk_proj.1.weight"))?)?.broadcast_add(p.get(&a("gk_proj.1.bias"))?)?;
        let lg = split_heads(&(log_sigmoid(&z)? * (1.0 / GATE_LOGIT_NORMALIZER as f64))?, nh)?;
        let dk = q.dim(3)?;
        Ok(((q * (dk as f64).powf(-0.5))?, k, lg))
    }

    /// GLA token mixer, chunkwise form (`models::gla::chunked`) batched: h `[B, T, H]` -> `[B, T, H]`.
    fn gla(&self, pre: &str, h: &Tensor) -> Result<Tensor> {
        let p = self.params;
        let nh = self.dims.heads;
        let (b, t, _) = h.dims3()?;
        let a = |n: &str| format!("{pre}attn.{n}");
        let q = split_heads(&proj(p, &a("q_proj"), h, false)?, nh)?; // [B, nh, T, dk]
        let k = split_heads(&proj(p, &a("k_proj"), h, false)?, nh)?;
        let v = split_heads(&proj(p, &a("v_proj"), h, false)?, nh)?; // [B, nh, T, dv]
        let z = proj(p, &a("gk_proj.1"), &proj(p, &a("gk_proj.0"), h, false)?, false)?; // + gk_proj.1.bias
        let lg = split_heads(&(log_sigmoid(&z)? * (1.0 / GATE_LOGIT_NORMALIZER as f64))?, nh)?; // [B, nh, T, dk]
        let dk = q.dim(3)?;
        let dv = v.dim(3)?;
        let q = (q * (dk as f64).powf(-0.5))?;
        let mut s = Tensor::zeros((b, nh, dk, dv), DType::F32, h.device())?;
        let mut outs = Vec::new();
        let mut start = 0;
        while start < t {
            let l = GLA_CHUNK.min(t - start);
            let (qc, kc, vc) = (q.narrow(2, start, l)?, k.narrow(2, start, l)?, v.narrow(2, start, l)?);
            let bc = lg.narrow(2, start, l)?.cumsum(2)?; // [B, nh, L, dk]
            let inter = (&qc * bc.exp()?)?.matmul(&s)?; // [B, nh, L, dv]
            let mask: Vec<f32> = (0..l * l).map(|i| if i % l <= i / l { 0.0 } else { MASK_NEG }).collect();
            let mask = Tensor::from_vec(mask, (l, l, 1), h.device())?;
            let diff = bc.unsqueeze(3)?.broadcast_sub(&bc.unsqueeze(2)?)?; // [B, nh, L, L, dk]
            let e = diff.broadcast_add(&mask)?.exp()?;
            let qk = qc.unsqueeze(3)?.broadcast_mul(&kc.unsqueeze(2)?)?;
            let att = (qk * e)?.sum(D::Minus1)?; // [B, nh, L, L]
            outs.push((inter + att.matmul(&vc)?)?);
            let blast = bc.narrow(2, l - 1, 1)?; // [B, nh, 1, dk]
            let kd = (&kc * blast.broadcast_sub(&bc)?.exp()?)?;
            let decay = blast.exp()?.transpose(2, 3)?; // [B, nh, dk, 1]
            s = (s.broadcast_mul(&decay)? + kd.transpose(2, 3)?.matmul(&vc)?)?;
            start += l;
        }
        let o = Tensor::cat(&outs, 2)?; // [B, nh, T, dv]
        let o = merge_heads(&rms_norm(&o, p.get(&a("g_norm_swish_gate.weight"))?, self.eps)?)?;
        let o = (o * silu(&proj(p, &a("g_proj"), h, false)?)?)?;
        proj(p, &a("o_proj"), &o, false)
    }

    /// `γ_l = cumsum(softmax(P, layers))_l − softmax(P)_0` `[L, H]` (MMF), in the graph so `P` trains.
    fn lower_bound_floors(&self) -> Result<Tensor> {
        let p = self.params.get("model.lower_bounds")?; // [L, H]
        let e = p.broadcast_sub(&p.max_keepdim(0)?)?.exp()?;
        let sm = e.broadcast_div(&e.sum_keepdim(0)?)?;
        sm.cumsum(0)?.broadcast_sub(&sm.narrow(0, 0, 1)?)
    }

    /// HGRN-bit's MLGRU: x̂ `[B, T, H]` -> `[B, T, H]` (`models::matmul_free::Mlgru::forward`).
    fn mlgru(&self, pre: &str, xh: &Tensor, layer: usize, floors: &Tensor) -> Result<Tensor> {
        let p = self.params;
        let a = |n: &str| format!("{pre}attn.{n}");
        let mut f = sigmoid(&proj(p, &a("f_proj"), xh, true)?)?;
        if layer > 0 {
            let g = floors.narrow(0, layer, 1)?; // [1, H]
            f = g.broadcast_add(&(g.ones_like()? - &g)?.broadcast_mul(&f)?)?;
        }
        let c = (silu(&proj(p, &a("i_proj"), xh, true)?)? * (f.ones_like()? - &f)?)?;
        // h_t = f_t ⊙ h_{t−1} + c_t, step by step along T.
        let t = xh.dim(1)?;
        let mut hs = Vec::with_capacity(t);
        let mut hprev = c.narrow(1, 0, 1)?;
        hs.push(hprev.clone());
        for i in 1..t {
            hprev = ((f.narrow(1, i, 1)? * &hprev)? + c.narrow(1, i, 1)?)?;
            hs.push(hprev.clone());
        }
        let hseq = Tensor::cat(&hs, 1)?;
        let g = rms_norm(&proj(p, &a("g_proj"), xh, true)?, p.get(&a("g_norm.weight"))?, self.eps)?;
        proj(p, &a("o_proj"), &(g * silu(&hseq)?)?, true)
    }

    /// Hidden `[B, T, H]` at each row's last real position (`lens[b] − 1`) -> `[B, H]`.
    pub fn last_token(hidden: &Tensor, lens: &[usize]) -> Result<Tensor> {
        let (b, t, h) = hidden.dims3()?;
        let idx: Vec<u32> = lens.iter().enumerate().map(|(i, &n)| (i * t + n - 1) as u32).collect();
        hidden.reshape((b * t, h))?.index_select(&Tensor::from_vec(idx, b, hidden.device())?, 0)
    }

    /// Next-token logits `[N, V]` for hidden rows `[N, H]`: the tied embeddings (Transformer++,
    /// GLA) or HGRN-bit's BitLinear `lm_head`.
    pub fn lm_logits(&self, rows: &Tensor) -> Result<Tensor> {
        match self.dims.arch {
            Arch::HgrnBit => proj(self.params, "lm_head", rows, true),
            _ => linear(rows, self.params.get("model.embeddings.weight")?),
        }
    }
}

/// Mean cross-entropy of logits `[N, C]` against `targets` (one fused op: see [`RowCrossEntropy`]).
pub fn cross_entropy(logits: &Tensor, targets: &[u32]) -> Result<Tensor> {
    let n = targets.len();
    if logits.dims2()?.0 != n {
        candle_core::bail!("cross_entropy: {} logit rows for {n} targets", logits.dim(0)?);
    }
    let rows = logits.contiguous()?.apply_op1(RowCrossEntropy { targets: targets.to_vec() })?; // [N]
    (rows.sum_all()? * (1.0 / n as f64))?.reshape(())
}

/// Per-row `logsumexp(x) − x[target]`, computed and differentiated in one pass per row
/// (`∂/∂x = softmax(x) − onehot(target)`): with a vocabulary of 8192 the loss is the widest
/// tensor of LM training, and a dozen composed candle passes over it cost more than the LM
/// head's matmul. Checked against the composed formula in the tests below.
pub struct RowCrossEntropy {
    pub targets: Vec<u32>,
}

/// Rows of `[N, C]` split over the available cores; in one pass where threads cannot be spawned
/// (wasm32: `std::thread` panics there) or there is one core. Each row is computed alone, so the
/// result does not depend on the split.
fn par_rows(data: &[f32], c: usize, out_per_row: usize, f: impl Fn(&[f32], usize, &mut [f32]) + Sync) -> Vec<f32> {
    let n = data.len() / c.max(1);
    let mut out = vec![0f32; n * out_per_row];
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get()).min(n.max(1));
    if threads <= 1 || cfg!(target_arch = "wasm32") {
        for (r, o) in out.chunks_mut(out_per_row.max(1)).enumerate() {
            f(&data[r * c..(r + 1) * c], r, o);
        }
        return out;
    }
    let per = n.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        for (ci, chunk) in out.chunks_mut(per * out_per_row.max(1)).enumerate() {
            let f = &f;
            s.spawn(move || {
                for (j, o) in chunk.chunks_mut(out_per_row).enumerate() {
                    let r = ci * per + j;
                    f(&data[r * c..(r + 1) * c], r, o);
                }
            });
        }
    });
    out
}

fn logsumexp(row: &[f32]) -> f32 {
    let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    m + row.iter().map(|&x| (x - m).exp()).sum::<f32>().ln()
}

impl candle_core::CustomOp1 for RowCrossEntropy {
    fn name(&self) -> &'static str {
        "row-cross-entropy"
    }

    fn cpu_fwd(&self, storage: &candle_core::CpuStorage, layout: &candle_core::Layout) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let candle_core::CpuStorage::F32(all) = storage else { candle_core::bail!("row-cross-entropy needs f32") };
        let (n, c) = layout.shape().dims2()?;
        let Some((a, b)) = layout.contiguous_offsets() else { candle_core::bail!("row-cross-entropy needs contiguous logits") };
        if let Some(&t) = self.targets.iter().find(|&&t| t as usize >= c) {
            candle_core::bail!("target {t} out of range for {c} classes");
        }
        let out = par_rows(&all[a..b], c, 1, |row, r, o| o[0] = logsumexp(row) - row[self.targets[r] as usize]);
        Ok((candle_core::CpuStorage::F32(out), candle_core::Shape::from(n)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let (_, c) = arg.dims2()?;
        let x = arg.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let g = grad_res.flatten_all()?.to_vec1::<f32>()?;
        let out = par_rows(&x, c, c, |row, r, o| {
            let lse = logsumexp(row);
            for (oi, &xi) in o.iter_mut().zip(row) {
                *oi = (xi - lse).exp() * g[r];
            }
            o[self.targets[r] as usize] -= g[r];
        });
        Ok(Some(Tensor::from_vec(out, arg.dims(), arg.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_cross_entropy_matches_composed_formula_and_gradient() {
        let mut rng = crate::rng::SplitMix64::new(7);
        let (n, c) = (5, 13);
        let x = candle_core::Var::from_vec(rng.vec_f32(n * c, -4.0, 4.0), (n, c), &Device::Cpu).unwrap();
        let targets = [0u32, 12, 3, 3, 7];
        // Composed reference: −mean(log_softmax(x)[target]).
        let logp = softmax(x.as_tensor()).unwrap().log().unwrap();
        let idx = Tensor::from_slice(&targets, (n, 1), &Device::Cpu).unwrap();
        let reference = (logp.gather(&idx, 1).unwrap().sum_all().unwrap() * (-1.0 / n as f64)).unwrap();
        let fused = cross_entropy(x.as_tensor(), &targets).unwrap();
        let (r, f) = (reference.to_scalar::<f32>().unwrap(), fused.to_scalar::<f32>().unwrap());
        assert!((r - f).abs() < 1e-5, "{r} vs {f}");
        let gr = reference.backward().unwrap().get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let gf = fused.backward().unwrap().get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (a, b) in gr.iter().zip(&gf) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        assert!(cross_entropy(x.as_tensor(), &[0, 1, 2, 3, 13]).is_err(), "target out of range");
        assert!(cross_entropy(x.as_tensor(), &[0, 1]).is_err(), "row count");
    }
}
