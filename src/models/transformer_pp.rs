//! Transformer++ (FLA `model_type = "transformer"`), Llama-style: pre-norm RMSNorm blocks,
//! causal softmax attention with rotary positions and grouped-query heads, SwiGLU MLP.
//! specs/models.md §2. Read top to bottom: config, layers, block, model.

use super::config::{Cfg, Common};
use super::parallel::{self, LayerParallel, Pairs, Step};
use super::{load_mlp, pre_norm_block, take_linear, take_norm, Mlp};
use crate::backend::{Backend, TensorMeta};
use crate::error::{Error, Result};
use crate::io::Checkpoint;
use crate::nn::{linear::Linear, merge_heads, rope, split_heads};

/// Attention settings (specs/models.md §2.1).
#[derive(Clone, Debug, PartialEq)]
pub struct AttnConfig {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rope_theta: f64,
    pub qk_norm: bool,
    pub qkv_bias: bool,
    /// Sliding window (token t sees t−window+1..t); `None` = full causal.
    pub window: Option<usize>,
}

impl AttnConfig {
    pub fn parse(c: &Cfg, hidden: usize) -> Result<Self> {
        let heads = c.positive("num_heads", c.usize_or("num_heads", 32)?)?;
        let kv_heads = c.positive("num_kv_heads", c.usize_or("num_kv_heads", heads)?)?;
        if hidden % heads != 0 || heads % kv_heads != 0 {
            return Err(Error::Invalid(format!(
                "config.json: hidden_size {hidden} must divide into num_heads {heads}, and num_heads into num_kv_heads {kv_heads}"
            )));
        }
        let window = c.opt_usize("window_size")?;
        if window == Some(0) {
            return Err(Error::Invalid("config.json: \"window_size\" must be positive or null".into()));
        }
        Ok(Self {
            heads,
            kv_heads,
            head_dim: hidden / heads,
            rope_theta: c.f64_or("rope_theta", 10_000.0)?,
            qk_norm: c.bool_or("qk_norm", false)?,
            qkv_bias: c.bool_or("qkv_bias", false)?,
            window,
        })
    }
}

/// Per-head q/k RMSNorm eps of FLA's attention module.
const QK_NORM_EPS: f32 = 1e-5;

pub struct Attention<B: Backend> {
    q: Linear<B>,
    k: Linear<B>,
    v: Linear<B>,
    o: Linear<B>,
    /// `[hd]` each, when `qk_norm`.
    qk_norm: Option<(B::Tensor, B::Tensor)>,
}

pub struct Block<B: Backend> {
    attn_norm: B::Tensor,
    attn: Attention<B>,
    mlp_norm: B::Tensor,
    mlp: Mlp<B>,
}

pub struct Transformer<B: Backend> {
    pub common: Common,
    pub attn: AttnConfig,
    pub blocks: Vec<Block<B>>,
    /// A layer-parallel stretch (methods.md §1), when the folder asks for one.
    pub parallel: Option<Pairs<B, WideBlock<B>>>,
}

/// A layer-parallel pair as one layer of twice the width (methods.md §1.4): both layers' pre-norm gains folded into
/// their projections' input columns, so both read the gain-free `u = x / rms(x)`; q/k/v rows stacked (2·nh query
/// heads, 2·kvh KV heads: heads `[0, nh)` and KV heads `[0, kvh)` are layer k's, so GQA groups stay within a layer);
/// `[Wo_k | Wo_{k+1}]` sums the two mixers; the MLP is [`parallel::wide_mlp`].
pub struct WideBlock<B: Backend> {
    /// `[H]` ones.
    unit: B::Tensor,
    attn: Attention<B>,
    cfg: AttnConfig,
    mlp: Mlp<B>,
}

impl<B: Backend> Transformer<B> {
    pub fn load(be: &B, ck: &mut Checkpoint, common: &Common) -> Result<Self> {
        let cfg = Cfg(&ck.config);
        let a = AttnConfig::parse(&cfg, common.hidden)?;
        let (h, hd) = (common.hidden, a.head_dim);
        let kvd = a.kv_heads * hd;
        let mut blocks = Vec::with_capacity(common.layers);
        for l in 0..common.layers {
            let p = format!("model.layers.{l}.");
            // Any stored form (take_linear); a bias where qkv_bias says so (or where a compression wrote one).
            let mut lin = |name: &str, n: usize, k: usize, bias: bool| -> Result<Linear<B>> {
                let prefix = format!("{p}attn.{name}");
                if bias && !ck.tensors.contains_key(&format!("{prefix}.bias")) {
                    return Err(Error::Invalid(format!("checkpoint is missing tensor {prefix}.bias (config.json has qkv_bias)")));
                }
                take_linear(be, ck, &prefix, n, k)
            };
            let attn = Attention {
                q: lin("q_proj", h, h, a.qkv_bias)?,
                k: lin("k_proj", kvd, h, a.qkv_bias)?,
                v: lin("v_proj", kvd, h, a.qkv_bias)?,
                o: lin("o_proj", h, h, false)?,
                qk_norm: if a.qk_norm {
                    let qn = ck.take(&format!("{p}attn.q_norm.weight"), &[hd])?;
                    let kn = ck.take(&format!("{p}attn.k_norm.weight"), &[hd])?;
                    Some((be.upload(&qn)?, be.upload(&kn)?))
                } else {
                    None
                },
            };
            // Block norms: `attn_norm`/`mlp_norm`, or the 2024-11..2025-02 `attn.norm`/`mlp.norm`.
            let attn_norm = take_norm(be, ck, &[format!("{p}attn_norm.weight"), format!("{p}attn.norm.weight")], h)?;
            let mlp_norm = take_norm(be, ck, &[format!("{p}mlp_norm.weight"), format!("{p}mlp.norm.weight")], h)?;
            let mlp = load_mlp(be, ck, &format!("{p}mlp."), h, common.intermediate, false)?;
            blocks.push(Block { attn_norm, attn, mlp_norm, mlp });
        }
        Ok(Self { common: common.clone(), attn: a, blocks, parallel: None })
    }

    /// Run `[lp.start, lp.end)` as layer-parallel pairs; fused when `lp.fused` and the weights allow it.
    pub fn set_layer_parallel(&mut self, be: &B, lp: LayerParallel) -> Result<()> {
        let (blocks, a, h) = (&self.blocks, &self.attn, self.common.hidden);
        let pairs = Pairs::build(be, lp, blocks.len(), |l| blocks[l].mlp_norm.clone(), |k, m| WideBlock::build(be, [&blocks[k], &blocks[k + 1]], m, a, h))?;
        self.parallel = Some(pairs);
        Ok(())
    }

    /// x `[B·T, H]` (embeddings of `b` right-padded sequences) -> `[B·T, H]` before the final
    /// norm; `taps` collects each block's output.
    pub fn forward(&self, be: &B, mut x: B::Tensor, b: usize, mut taps: Option<&mut Vec<B::Tensor>>) -> Result<B::Tensor> {
        let t = x.shape()[0] / b;
        let a = &self.attn;
        let (cos, sin) = rope::tables(t, a.head_dim, a.rope_theta, 0)?;
        let (cos, sin) = (be.upload(&cos)?, be.upload(&sin)?);
        let eps = self.common.norm_eps;
        let pairs = self.parallel.as_ref();
        for step in parallel::steps(self.blocks.len(), pairs.map(|p| &p.lp)) {
            x = match (step, pairs) {
                (Step::Pair { pair, .. }, Some(p)) if p.fused() => p.wide[pair].forward(be, &x, b, eps, &cos, &sin)?,
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
                        |h| b0.attn.forward(be, h, b, a, &cos, &sin),
                        |h| b1.attn.forward(be, h, b, a, &cos, &sin),
                    )?
                }
                (Step::Block(l), _) | (Step::Pair { k: l, .. }, None) => {
                    let blk = &self.blocks[l];
                    pre_norm_block(be, &x, &blk.attn_norm, &blk.mlp_norm, &blk.mlp, eps, |h| blk.attn.forward(be, h, b, a, &cos, &sin))?
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
    /// The wide form of blocks (k, k + 1), with pre-MLP gains `mlp_gain` (own or mean); `Ok(Err(why))` when the
    /// weights cannot be folded and stacked (not dense f32, or per-head q/k norms, which the wide form does not carry).
    fn build(be: &B, blk: [&Block<B>; 2], mlp_gain: [&B::Tensor; 2], a: &AttnConfig, h: usize) -> Result<std::result::Result<Self, String>> {
        if a.qk_norm {
            return Ok(Err("qk_norm: the per-head q/k norms of two layers do not fold into one wide projection".into()));
        }
        let g = [&blk[0].attn_norm, &blk[1].attn_norm];
        let stack = |f: fn(&Attention<B>) -> &Linear<B>| parallel::stack_rows(be, [(f(&blk[0].attn), Some(g[0])), (f(&blk[1].attn), Some(g[1]))]);
        let (q, k, v) = (stack(|x| &x.q)?, stack(|x| &x.k)?, stack(|x| &x.v)?);
        let o = parallel::concat_cols(be, [(&blk[0].attn.o, None), (&blk[1].attn.o, None)])?; // [H, 2·nh·hd]
        let mlp = parallel::wide_mlp(be, [&blk[0].mlp, &blk[1].mlp], mlp_gain)?;
        let (Some(q), Some(k), Some(v), Some(o), Some(mlp)) = (q, k, v, o, mlp) else { return Ok(Err(parallel::NOT_DENSE.into())) };
        let cfg = AttnConfig { heads: 2 * a.heads, kv_heads: 2 * a.kv_heads, ..a.clone() };
        Ok(Ok(Self { unit: parallel::ones(be, h)?, attn: Attention { q, k, v, o, qk_norm: None }, cfg, mlp }))
    }

    /// x `[B·T, H]` -> `[B·T, H]`: (1)–(2) of methods.md §1.2 as one block of twice the width.
    fn forward(&self, be: &B, x: &B::Tensor, b: usize, eps: f32, cos: &B::Tensor, sin: &B::Tensor) -> Result<B::Tensor> {
        pre_norm_block(be, x, &self.unit, &self.unit, &self.mlp, eps, |u| self.attn.forward(be, u, b, &self.cfg, cos, sin))
    }
}

impl<B: Backend> Attention<B> {
    /// h `[B·T, H]` -> `[B·T, H]`.
    fn forward(&self, be: &B, h: &B::Tensor, b: usize, a: &AttnConfig, cos: &B::Tensor, sin: &B::Tensor) -> Result<B::Tensor> {
        let mut q = split_heads(be, &self.q.forward(be, h)?, b, a.heads)?; // [B·nh, T, hd]
        let mut k = split_heads(be, &self.k.forward(be, h)?, b, a.kv_heads)?; // [B·kvh, T, hd]
        let v = split_heads(be, &self.v.forward(be, h)?, b, a.kv_heads)?; // [B·kvh, T, hd]
        if let Some((qn, kn)) = &self.qk_norm {
            q = be.rms_norm(&q, qn, QK_NORM_EPS)?;
            k = be.rms_norm(&k, kn, QK_NORM_EPS)?;
        }
        let q = be.rope(&q, cos, sin)?;
        let k = be.rope(&k, cos, sin)?;
        let o = be.attention(&q, &k, &v, 1.0 / (a.head_dim as f32).sqrt(), a.window)?; // [B·nh, T, hd]
        self.o.forward(be, &merge_heads(be, &o, b)?)
    }
}

