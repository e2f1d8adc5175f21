//! Gated Linear Attention Transformer (FLA `model_type = "gla"`), specs/models.md §3.
//! Pre-norm blocks whose token mixer is a linear-attention recurrence with a data-dependent,
//! per-key-channel forget gate:
//!
//! ```text
//! S_t = diag(α_t) S_{t−1} + k_tᵀ v_t,   o_t = (dk^−½ q_t) S_t,   α_t = σ(z_t)^(1/16)
//! ```
//!
//! computed either step by step ([`GlaMode::Recurrent`], the definition) or chunk by chunk
//! ([`GlaMode::Chunked`], §3.4: a matmul inside each chunk plus the carried state); tests check
//! the two agree.

use super::config::{Cfg, Common};
use super::parallel::{self, LayerParallel, Pairs, Step};
use super::{load_mlp, pre_norm_block, take_linear, take_norm, Mlp};
use crate::backend::{check, Backend, Binary, HostTensor, Unary};
use crate::error::{Error, Result};
use crate::io::Checkpoint;
use crate::nn::{linear::Linear, merge_heads, repeat_heads, scalar, split_heads};

/// `gate_logit_normalizer`: hard-wired in FLA's GLA layer, never read from the config.
pub const GATE_LOGIT_NORMALIZER: f32 = 16.0;
/// `gate_low_rank_dim` default (also readable from `gk_proj.0.weight`'s rows).
pub const GATE_LOW_RANK_DIM: usize = 16;
pub use crate::backend::composite::MASK_NEG;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlaMode {
    /// One step per token: the definition.
    Recurrent,
    /// Chunkwise-parallel form with this chunk length.
    Chunked(usize),
}

#[derive(Clone, Debug, PartialEq)]
pub struct GlaConfig {
    pub heads: usize,
    pub kv_heads: usize,
    /// K = int(H · expand_k), V = int(H · expand_v).
    pub key_dim: usize,
    pub value_dim: usize,
    pub low_rank: usize,
    pub output_gate: bool,
    pub relu_feature_map: bool,
    pub clamp_min: Option<f32>,
}

impl GlaConfig {
    pub fn parse(c: &Cfg, hidden: usize) -> Result<Self> {
        c.refuse("attn", "hybrid softmax-attention layers")?;
        c.refuse("use_short_conv", "short convolutions; no public GLA checkpoint uses them")?;
        let heads = c.positive("num_heads", c.usize_or("num_heads", 4)?)?;
        let kv_heads = c.positive("num_kv_heads", c.usize_or("num_kv_heads", heads)?)?;
        let key_dim = (hidden as f64 * c.f64_or("expand_k", 0.5)?) as usize;
        let value_dim = (hidden as f64 * c.f64_or("expand_v", 1.0)?) as usize;
        if heads % kv_heads != 0 || key_dim % heads != 0 || value_dim % heads != 0 || key_dim == 0 || value_dim == 0 {
            return Err(Error::Invalid(format!(
                "config.json: num_heads {heads} must divide key dim {key_dim} and value dim {value_dim}, and num_kv_heads {kv_heads} must divide num_heads"
            )));
        }
        let relu_feature_map = match c.str_or("feature_map", "")? {
            "" => false,
            "relu" => true,
            other => return Err(Error::Invalid(format!("config.json: feature_map \"{other}\" is not supported (null or relu)"))),
        };
        let clamp_min = match c.0.get("clamp_min").filter(|v| !v.is_null()) {
            Some(_) => Some(c.f64_or("clamp_min", 0.0)? as f32),
            None => None,
        };
        Ok(Self {
            heads,
            kv_heads,
            key_dim,
            value_dim,
            low_rank: c.usize_or("gate_low_rank_dim", GATE_LOW_RANK_DIM)?,
            output_gate: c.bool_or("use_output_gate", true)?,
            relu_feature_map,
            clamp_min,
        })
    }
    pub fn dk(&self) -> usize {
        self.key_dim / self.heads
    }
    pub fn dv(&self) -> usize {
        self.value_dim / self.heads
    }
}

pub struct GlaAttention<B: Backend> {
    q: Linear<B>,
    k: Linear<B>,
    v: Linear<B>,
    /// Output gate `[V, H]`.
    g: Option<Linear<B>>,
    /// Low-rank gate: `[r, H]` then `[K/g, r]` + bias.
    gk0: Linear<B>,
    gk1: Linear<B>,
    o: Linear<B>,
    /// `[dv]` per-head output norm.
    g_norm: B::Tensor,
}

pub struct Block<B: Backend> {
    attn_norm: B::Tensor,
    attn: GlaAttention<B>,
    mlp_norm: B::Tensor,
    mlp: Mlp<B>,
}

pub struct Gla<B: Backend> {
    pub common: Common,
    pub cfg: GlaConfig,
    pub blocks: Vec<Block<B>>,
    pub mode: GlaMode,
    /// A layer-parallel stretch (methods.md §1), when the folder asks for one.
    pub parallel: Option<Pairs<B, WideBlock<B>>>,
}

/// A layer-parallel pair as one GLA block of twice the width (methods.md §1.4): pre-norm gains folded into the input
/// columns of q, k, v, g and the first gate factor, their rows stacked (2·nh heads, heads `[0, nh)` layer k's; GLA
/// heads are independent, so each keeps its own recurrent state); the second gate factor block-diagonal with its
/// biases concatenated; each layer's per-head output-norm gain folded into the input columns of its half of
/// `[Wo_k | Wo_{k+1}]` (a per-channel scale before the gate product and the projection), so the wide mixer's output
/// norm is gain-free.
pub struct WideBlock<B: Backend> {
    /// `[H]` ones.
    unit: B::Tensor,
    attn: GlaAttention<B>,
    cfg: GlaConfig,
    mlp: Mlp<B>,
}

impl<B: Backend> Gla<B> {
    pub fn load(be: &B, ck: &mut Checkpoint, common: &Common) -> Result<Self> {
        let cfg = GlaConfig::parse(&Cfg(&ck.config), common.hidden)?;
        let h = common.hidden;
        let g = cfg.heads / cfg.kv_heads;
        let (kd, vd) = (cfg.key_dim, cfg.value_dim);
        let mut blocks = Vec::with_capacity(common.layers);
        for l in 0..common.layers {
            let p = format!("model.layers.{l}.");
            let mut lin = |name: &str, shape: [usize; 2]| -> Result<Linear<B>> { take_linear(be, ck, &format!("{p}attn.{name}"), shape[0], shape[1]) };
            let q = lin("q_proj", [kd, h])?;
            let k = lin("k_proj", [kd / g, h])?;
            let v = lin("v_proj", [vd / g, h])?;
            let gp = if cfg.output_gate { Some(lin("g_proj", [vd, h])?) } else { None };
            let gk0 = lin("gk_proj.0", [cfg.low_rank, h])?;
            let o = lin("o_proj", [h, vd])?;
            if !ck.tensors.contains_key(&format!("{p}attn.gk_proj.1.bias")) {
                return Err(Error::Invalid(format!("checkpoint is missing tensor {p}attn.gk_proj.1.bias")));
            }
            let gk1 = take_linear(be, ck, &format!("{p}attn.gk_proj.1"), kd / g, cfg.low_rank)?;
            // `g_norm_swish_gate` when (swish, fuse_norm, output gate) — every public checkpoint — else `g_norm`.
            let g_norm = take_norm(be, ck, &[format!("{p}attn.g_norm_swish_gate.weight"), format!("{p}attn.g_norm.weight")], cfg.dv())?;
            let attn = GlaAttention { q, k, v, g: gp, gk0, gk1, o, g_norm };
            let attn_norm = be.upload(&ck.take(&format!("{p}attn_norm.weight"), &[h])?)?;
            let mlp_norm = be.upload(&ck.take(&format!("{p}mlp_norm.weight"), &[h])?)?;
            let mlp = load_mlp(be, ck, &format!("{p}mlp."), h, common.intermediate, false)?;
            blocks.push(Block { attn_norm, attn, mlp_norm, mlp });
        }
        Ok(Self { common: common.clone(), cfg, blocks, mode: GlaMode::Chunked(16), parallel: None })
    }

    /// Run `[lp.start, lp.end)` as layer-parallel pairs; fused when `lp.fused` and the weights allow it.
    pub fn set_layer_parallel(&mut self, be: &B, lp: LayerParallel) -> Result<()> {
        let (blocks, c, h) = (&self.blocks, &self.cfg, self.common.hidden);
        let pairs = Pairs::build(be, lp, blocks.len(), |l| blocks[l].mlp_norm.clone(), |k, m| WideBlock::build(be, [&blocks[k], &blocks[k + 1]], m, c, h))?;
        self.parallel = Some(pairs);
        Ok(())
    }

    /// x `[B·T, H]` (`b` right-padded sequences) -> `[B·T, H]` before the final norm; `taps`
    /// collects each block's output.
    pub fn forward(&self, be: &B, mut x: B::Tensor, b: usize, mut taps: Option<&mut Vec<B::Tensor>>) -> Result<B::Tensor> {
        let eps = self.common.norm_eps;
        let (c, mode) = (&self.cfg, self.mode);
        let pairs = self.parallel.as_ref();
        for step in parallel::steps(self.blocks.len(), pairs.map(|p| &p.lp)) {
            x = match (step, pairs) {
                (Step::Pair { pair, .. }, Some(p)) if p.fused() => {
                    let w = &p.wide[pair];
                    pre_norm_block(be, &x, &w.unit, &w.unit, &w.mlp, eps, |u| w.attn.forward(be, u, b, &w.cfg, eps, mode))?
                }
                (Step::Pair { k, pair }, Some(p)) => {
                    let (b0, b1) = (&self.blocks[k], &self.blocks[k + 1]);
                    let (m0, m1) = &p.mlp_norms[pair];
                    parallel::pair_block(
                        be,
                        &x,
                        [&b0.attn_norm, &b1.attn_norm],
                        [m0, m1],
                        [&b0.mlp, &b1.mlp],
                        eps,
                        p.lp.mlp_norm == parallel::MlpNorm::Mean,
                        |h| b0.attn.forward(be, h, b, c, eps, mode),
                        |h| b1.attn.forward(be, h, b, c, eps, mode),
                    )?
                }
                (Step::Block(l), _) | (Step::Pair { k: l, .. }, None) => {
                    let blk = &self.blocks[l];
                    pre_norm_block(be, &x, &blk.attn_norm, &blk.mlp_norm, &blk.mlp, eps, |h| blk.attn.forward(be, h, b, c, eps, mode))?
                }
            };
            if let Some(t) = taps.as_deref_mut() {
                t.push(x.clone());
            }
        }
        Ok(x)
    }
}

impl<B: Backend> WideBlock<B> {
    /// The wide form of blocks (k, k + 1) with pre-MLP gains `mlp_gain`; `Ok(Err(why))` when the weights are not dense f32.
    fn build(be: &B, blk: [&Block<B>; 2], mlp_gain: [&B::Tensor; 2], c: &GlaConfig, h: usize) -> Result<std::result::Result<Self, String>> {
        let g = [&blk[0].attn_norm, &blk[1].attn_norm];
        let (a0, a1) = (&blk[0].attn, &blk[1].attn);
        let stack = |l0: &Linear<B>, l1: &Linear<B>| parallel::stack_rows(be, [(l0, Some(g[0])), (l1, Some(g[1]))]);
        let gate = match (&a0.g, &a1.g) {
            (Some(g0), Some(g1)) => Some(stack(g0, g1)?),
            _ => None,
        };
        // Per-head output-norm gain `[dv]` over all nh heads `[V]`, folded into o_proj's input columns.
        let (s0, s1) = (parallel::tile(be, &a0.g_norm, c.heads)?, parallel::tile(be, &a1.g_norm, c.heads)?);
        let parts = (
            stack(&a0.q, &a1.q)?,
            stack(&a0.k, &a1.k)?,
            stack(&a0.v, &a1.v)?,
            stack(&a0.gk0, &a1.gk0)?,
            parallel::block_diag(be, &a0.gk1, &a1.gk1)?,
            parallel::concat_cols(be, [(&a0.o, Some(&s0)), (&a1.o, Some(&s1))])?, // [H, 2V]
            parallel::wide_mlp(be, [&blk[0].mlp, &blk[1].mlp], mlp_gain)?,
        );
        let (Some(q), Some(k), Some(v), Some(gk0), Some(gk1), Some(o), Some(mlp)) = parts else { return Ok(Err(parallel::NOT_DENSE.into())) };
        let g = match gate {
            Some(Some(g)) => Some(g),
            Some(None) => return Ok(Err(parallel::NOT_DENSE.into())),
            None => None,
        };
        let attn = GlaAttention { q, k, v, g, gk0, gk1, o, g_norm: parallel::ones(be, c.dv())? };
        let cfg = GlaConfig { heads: 2 * c.heads, kv_heads: 2 * c.kv_heads, key_dim: 2 * c.key_dim, value_dim: 2 * c.value_dim, low_rank: 2 * c.low_rank, ..c.clone() };
        Ok(Ok(Self { unit: parallel::ones(be, h)?, attn, cfg, mlp }))
    }
}

impl<B: Backend> GlaAttention<B> {
    /// h `[B·T, H]` (`b` sequences) -> `[B·T, H]`.
    pub fn forward(&self, be: &B, h: &B::Tensor, b: usize, c: &GlaConfig, eps: f32, mode: GlaMode) -> Result<B::Tensor> {
        let g = c.heads / c.kv_heads;
        let mut q = split_heads(be, &self.q.forward(be, h)?, b, c.heads)?; // [B·nh, T, dk]
        let mut k = repeat_heads(be, &split_heads(be, &self.k.forward(be, h)?, b, c.kv_heads)?, g)?; // [B·nh, T, dk]
        let v = repeat_heads(be, &split_heads(be, &self.v.forward(be, h)?, b, c.kv_heads)?, g)?; // [B·nh, T, dv]
        // Gate logits from x̂ through the low-rank pair, then the log forget gate G ≤ 0.
        let z = self.gk1.forward(be, &self.gk0.forward(be, h)?)?; // [T, K/g]
        let mut lg = be.unary(Unary::LogSigmoid, &z)?;
        lg = be.unary(Unary::Affine { mul: 1.0 / GATE_LOGIT_NORMALIZER, add: 0.0 }, &lg)?;
        if let Some(m) = c.clamp_min {
            lg = be.binary(Binary::Max, &lg, &scalar(be, m)?)?;
        }
        let lg = repeat_heads(be, &split_heads(be, &lg, b, c.kv_heads)?, g)?; // [B·nh, T, dk]
        if c.relu_feature_map {
            q = be.unary(Unary::Relu, &q)?;
            k = be.unary(Unary::Relu, &k)?;
        }
        let q = be.unary(Unary::Affine { mul: (c.dk() as f32).powf(-0.5), add: 0.0 }, &q)?;
        let o = match mode {
            GlaMode::Recurrent => recurrent(be, &q, &k, &v, &lg)?,
            GlaMode::Chunked(len) => be.gla(&q, &k, &v, &lg, len)?,
        }; // [nh, T, dv]
        let o = be.rms_norm(&o, &self.g_norm, eps)?;
        let mut o = merge_heads(be, &o, b)?; // [B·T, V]
        if let Some(gp) = &self.g {
            o = be.binary(Binary::Mul, &o, &be.unary(Unary::Silu, &gp.forward(be, h)?)?)?;
        }
        self.o.forward(be, &o)
    }
}

/// Per-step recurrence (§3.3.6): q (already scaled), k `[nh, T, dk]`, v `[nh, T, dv]`, log decay
/// `[nh, T, dk]` -> o `[nh, T, dv]`.
pub fn recurrent<B: Backend>(be: &B, q: &B::Tensor, k: &B::Tensor, v: &B::Tensor, lg: &B::Tensor) -> Result<B::Tensor> {
    let (nh, t, dk, dv) = check::gla(q, k, v, lg, 1)?; // the same shapes as chunks of one token
    let mut s = be.upload(&HostTensor::f32(&[nh, dk, dv], vec![0.0; nh * dk * dv])?)?;
    let mut outs = Vec::with_capacity(t);
    for i in 0..t {
        let step = |x: &B::Tensor| be.narrow(x, 1, i, 1); // [nh, 1, X]
        let a = be.permute(&be.unary(Unary::Exp, &step(lg)?)?, &[0, 2, 1])?; // [nh, dk, 1]
        let kv = be.matmul(&be.permute(&step(k)?, &[0, 2, 1])?, &step(v)?, false)?; // [nh, dk, dv]
        s = be.binary(Binary::Add, &be.binary(Binary::Mul, &a, &s)?, &kv)?;
        outs.push(be.matmul(&step(q)?, &s, false)?); // [nh, 1, dv]
    }
    let refs: Vec<&B::Tensor> = outs.iter().collect();
    be.concat(&refs, 1)
}

/// Chunkwise-parallel form (§3.4): the primitive-op composition, i.e. what the CPU runs and what
/// the fused `gla.wgsl` kernel is checked against.
pub use crate::backend::composite::gla_chunked as chunked;
