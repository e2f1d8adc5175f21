//! The MatMul-free LM (MMF `model_type = "hgrn_bit"`), specs/models.md §4: every projection is a
//! BitLinear (ternary weights, 8-bit activations, additions only), the token mixer is the MLGRU
//! element-wise recurrence and the channel mixer a GLU. No dense matrix product anywhere but the
//! (newly trained, float) classification head.
//!
//! ```text
//! f_t = σ(BL_f(x̂_t)),  f_t ← γ_l + (1 − γ_l) f_t (l > 0)
//! c_t = SiLU(BL_i(x̂_t)) ⊙ (1 − f_t),  h_t = f_t ⊙ h_{t−1} + c_t
//! o_t = BL_o( RMSNorm(BL_g(x̂_t)) ⊙ SiLU(h_t) )
//! ```

use super::config::{Cfg, Common};
use super::parallel::{self, LayerParallel, Pairs, Step};
use super::{load_mlp, pre_norm_block, take_bit, Mlp};
use crate::backend::{Backend, Binary, HostTensor, TensorMeta, Unary};
use crate::error::{Error, Result};
use crate::io::Checkpoint;
use crate::nn::{linear::Linear, scalar};

pub struct Mlgru<B: Backend> {
    i: Linear<B>,
    f: Linear<B>,
    g: Linear<B>,
    o: Linear<B>,
    /// `[D]` norm of the output-gate branch.
    g_norm: B::Tensor,
    /// `[D]` forget-gate floor γ_l and `1 − γ_l`, or `None` for layer 0 / no lower bounds.
    floor: Option<(B::Tensor, B::Tensor)>,
}

pub struct Block<B: Backend> {
    attn_norm: B::Tensor,
    mixer: Mlgru<B>,
    mlp_norm: B::Tensor,
    mlp: Mlp<B>,
}

pub struct HgrnBit<B: Backend> {
    pub common: Common,
    /// Token-mixer width D = H · expand_ratio.
    pub width: usize,
    pub blocks: Vec<Block<B>>,
    /// A layer-parallel stretch (methods.md §1), when the folder asks for one.
    pub parallel: Option<Pairs<B, WideMixer<B>>>,
}

/// What a layer-parallel pair of MLGRU mixers needs to run as one mixer over 2D channels (methods.md §1.4): every
/// BitLinear keeps its own layer's pre-norm, input norm and quantisation (gains cannot be folded without changing
/// the 8-bit activation scales, §1.11), but the element-wise gates, the forget-gate floors and the recurrence run
/// once over both layers' channels side by side, and the output-gate norm — over D channels of one layer — runs
/// once over `[2·B·T, D]` rows.
pub struct WideMixer<B: Backend> {
    /// `[2D]` γ_k ‖ γ_{k+1} and their `1 − γ` (zeros and ones for layer 0, which has no floor: `0 + 1·f = f` exactly).
    /// Each layer keeps the γ_l computed from the full original `lower_bounds` (§1.11).
    gamma: B::Tensor,
    one_minus: B::Tensor,
    /// `[2D]` g_norm_k ‖ g_norm_{k+1}, and `[D]` ones.
    g_norm: B::Tensor,
    unit: B::Tensor,
}

/// γ_l = Σ_{j=1..l} softmax(P, over layers)_j per channel (MMF `modeling_hgrn_bit.py`):
/// `lower_bounds` `[L, H]` -> `[L][H]`, with γ_0 = 0.
pub fn lower_bound_floors(p: &[f32], layers: usize, h: usize) -> Vec<Vec<f32>> {
    let mut out = vec![vec![0f32; h]; layers];
    for c in 0..h {
        let col: Vec<f64> = (0..layers).map(|l| p[l * h + c] as f64).collect();
        let m = col.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = col.iter().map(|x| (x - m).exp()).collect();
        let z: f64 = e.iter().sum();
        let mut acc = 0.0;
        for l in 1..layers {
            acc += e[l] / z;
            out[l][c] = acc as f32;
        }
    }
    out
}

impl<B: Backend> HgrnBit<B> {
    pub fn load(be: &B, ck: &mut Checkpoint, common: &Common) -> Result<Self> {
        let c = Cfg(&ck.config);
        c.refuse("use_short_conv", "short convolutions; the public checkpoints do not use them")?;
        let attn_mode = c.str_or("attn_mode", "fused_recurrent")?;
        if attn_mode != "fused_recurrent" {
            return Err(Error::Invalid(format!("config.json: attn_mode \"{attn_mode}\" is not supported (fused_recurrent)")));
        }
        let h = common.hidden;
        let d = h * c.positive("expand_ratio", c.usize_or("expand_ratio", 1)?)?;
        let use_lb = c.bool_or("use_lower_bound", true)?;
        let floors = if use_lb {
            let p = ck.take("model.lower_bounds", &[common.layers, h])?;
            if d != h {
                return Err(Error::Invalid("config.json: use_lower_bound needs expand_ratio 1 (lower_bounds are [L, H])".into()));
            }
            Some(lower_bound_floors(p.as_f32("lower_bounds")?, common.layers, h))
        } else {
            None
        };
        let mut blocks = Vec::with_capacity(common.layers);
        for l in 0..common.layers {
            let p = format!("model.layers.{l}.");
            let floor = match &floors {
                Some(f) if l > 0 => {
                    let g = HostTensor::f32(&[d], f[l].clone())?;
                    let one_minus = HostTensor::f32(&[d], f[l].iter().map(|x| 1.0 - x).collect())?;
                    Some((be.upload(&g)?, be.upload(&one_minus)?))
                }
                _ => None,
            };
            let mixer = Mlgru {
                i: take_bit(be, ck, &format!("{p}attn.i_proj"), d, h)?,
                f: take_bit(be, ck, &format!("{p}attn.f_proj"), d, h)?,
                g: take_bit(be, ck, &format!("{p}attn.g_proj"), d, h)?,
                o: take_bit(be, ck, &format!("{p}attn.o_proj"), h, d)?,
                g_norm: be.upload(&ck.take(&format!("{p}attn.g_norm.weight"), &[d])?)?,
                floor,
            };
            let attn_norm = be.upload(&ck.take(&format!("{p}attn_norm.weight"), &[h])?)?;
            let mlp_norm = be.upload(&ck.take(&format!("{p}mlp_norm.weight"), &[h])?)?;
            let mlp = load_mlp(be, ck, &format!("{p}mlp."), h, common.intermediate, true)?;
            blocks.push(Block { attn_norm, mixer, mlp_norm, mlp });
        }
        Ok(Self { common: common.clone(), width: d, blocks, parallel: None })
    }

    /// Run `[lp.start, lp.end)` as layer-parallel pairs; with `lp.fused` each pair's two mixers run as one over 2D
    /// channels.
    pub fn set_layer_parallel(&mut self, be: &B, lp: LayerParallel) -> Result<()> {
        let (blocks, d) = (&self.blocks, self.width);
        let pairs = Pairs::build(be, lp, blocks.len(), |l| blocks[l].mlp_norm.clone(), |k, _| WideMixer::build(be, [&blocks[k].mixer, &blocks[k + 1].mixer], d).map(Ok))?;
        self.parallel = Some(pairs);
        Ok(())
    }

    /// x `[B·T, H]` (`b` right-padded sequences) -> `[B·T, H]` before the final norm; `taps`
    /// collects each block's output.
    pub fn forward(&self, be: &B, mut x: B::Tensor, b: usize, mut taps: Option<&mut Vec<B::Tensor>>) -> Result<B::Tensor> {
        let eps = self.common.norm_eps;
        let pairs = self.parallel.as_ref();
        for step in parallel::steps(self.blocks.len(), pairs.map(|p| &p.lp)) {
            x = match (step, pairs) {
                (Step::Pair { k, pair }, Some(p)) => {
                    let (b0, b1) = (&self.blocks[k], &self.blocks[k + 1]);
                    let (m0, m1) = &p.mlp_norms[pair];
                    let an = [&b0.attn_norm, &b1.attn_norm];
                    let shared = p.lp.mlp_norm == parallel::MlpNorm::Mean;
                    let mlp = [&b0.mlp, &b1.mlp];
                    match p.wide.get(pair) {
                        Some(w) => {
                            // (1) with both mixers in one, then (2) as in the reference pair.
                            let r = be.binary(Binary::Add, &x, &w.forward(be, &x, [&b0.mixer, &b1.mixer], an, b, eps)?)?;
                            parallel::pair_mlp(be, &r, [m0, m1], mlp, eps, shared)?
                        }
                        None => parallel::pair_block(be, &x, an, [m0, m1], mlp, eps, shared, |h| b0.mixer.forward(be, h, b, eps), |h| b1.mixer.forward(be, h, b, eps))?,
                    }
                }
                (Step::Block(l), _) | (Step::Pair { k: l, .. }, None) => {
                    let blk = &self.blocks[l];
                    pre_norm_block(be, &x, &blk.attn_norm, &blk.mlp_norm, &blk.mlp, eps, |h| blk.mixer.forward(be, h, b, eps))?
                }
            };
            if let Some(t) = taps.as_deref_mut() {
                t.push(x.clone());
            }
        }
        Ok(x)
    }
}

impl<B: Backend> WideMixer<B> {
    fn build(be: &B, m: [&Mlgru<B>; 2], d: usize) -> Result<Self> {
        let floor = |m: &Mlgru<B>| -> Result<(B::Tensor, B::Tensor)> {
            match &m.floor {
                Some((g, o)) => Ok((g.clone(), o.clone())),
                None => Ok((be.upload(&HostTensor::f32(&[d], vec![0.0; d])?)?, parallel::ones(be, d)?)),
            }
        };
        let ((g0, o0), (g1, o1)) = (floor(m[0])?, floor(m[1])?);
        Ok(Self {
            gamma: be.concat(&[&g0, &g1], 0)?,
            one_minus: be.concat(&[&o0, &o1], 0)?,
            g_norm: be.concat(&[&m[0].g_norm, &m[1].g_norm], 0)?,
            unit: parallel::ones(be, d)?,
        })
    }

    /// x `[B·T, H]` (the pair input; each layer applies its own pre-mixer norm `attn_norm`) -> the sum of the two
    /// mixers' outputs `[B·T, H]`.
    fn forward(&self, be: &B, x: &B::Tensor, m: [&Mlgru<B>; 2], attn_norm: [&B::Tensor; 2], b: usize, eps: f32) -> Result<B::Tensor> {
        let xh = [be.rms_norm(x, attn_norm[0], eps)?, be.rms_norm(x, attn_norm[1], eps)?]; // [B·T, H] each
        // Each BitLinear on its own layer's x̂, the two halves side by side: [B·T, 2D].
        let side = |p: fn(&Mlgru<B>) -> &Linear<B>| -> Result<B::Tensor> { be.concat(&[&p(m[0]).forward(be, &xh[0])?, &p(m[1]).forward(be, &xh[1])?], 1) };
        let f = be.unary(Unary::Sigmoid, &side(|m| &m.f)?)?;
        let f = be.binary(Binary::Add, &self.gamma, &be.binary(Binary::Mul, &self.one_minus, &f)?)?;
        let one_minus_f = be.binary(Binary::Sub, &scalar(be, 1.0)?, &f)?;
        let c = be.binary(Binary::Mul, &be.unary(Unary::Silu, &side(|m| &m.i)?)?, &one_minus_f)?;
        let h = scan_sequences(be, &f, &c, b)?; // [B·T, 2D]
        // g_norm over each layer's D channels: rows of [2·B·T, D], then each half's gain.
        let g = side(|m| &m.g)?;
        let (bt, d2) = (g.shape()[0], g.shape()[1]);
        let g = be.reshape(&be.rms_norm(&be.reshape(&g, &[2 * bt, d2 / 2])?, &self.unit, eps)?, &[bt, d2])?;
        let g = be.binary(Binary::Mul, &g, &self.g_norm)?;
        let o = be.binary(Binary::Mul, &g, &be.unary(Unary::Silu, &h)?)?; // [B·T, 2D]
        let o0 = m[0].o.forward(be, &be.narrow(&o, 1, 0, d2 / 2)?)?;
        let o1 = m[1].o.forward(be, &be.narrow(&o, 1, d2 / 2, d2 / 2)?)?;
        be.binary(Binary::Add, &o0, &o1)
    }
}

impl<B: Backend> Mlgru<B> {
    /// x̂ `[B·T, H]` (`b` sequences) -> `[B·T, H]`; all four BitLinears read the same x̂.
    pub fn forward(&self, be: &B, xh: &B::Tensor, b: usize, eps: f32) -> Result<B::Tensor> {
        let mut f = be.unary(Unary::Sigmoid, &self.f.forward(be, xh)?)?; // [T, D]
        if let Some((gamma, one_minus)) = &self.floor {
            f = be.binary(Binary::Add, gamma, &be.binary(Binary::Mul, one_minus, &f)?)?;
        }
        let one_minus_f = be.binary(Binary::Sub, &scalar(be, 1.0)?, &f)?;
        let c = be.binary(Binary::Mul, &be.unary(Unary::Silu, &self.i.forward(be, xh)?)?, &one_minus_f)?;
        let h = scan_sequences(be, &f, &c, b)?; // [B·T, D]
        let g = be.rms_norm(&self.g.forward(be, xh)?, &self.g_norm, eps)?;
        let o = be.binary(Binary::Mul, &g, &be.unary(Unary::Silu, &h)?)?;
        self.o.forward(be, &o)
    }
}

/// The recurrence `h_t = f_t ⊙ h_{t−1} + c_t` of each of `b` sequences: f, c `[B·T, D]`. The
/// scan op runs over dim 0 of `[T, D]`, so the sequences go side by side as `[T, B·D]`.
fn scan_sequences<B: Backend>(be: &B, f: &B::Tensor, c: &B::Tensor, b: usize) -> Result<B::Tensor> {
    if b == 1 {
        return be.scan(f, c);
    }
    let (bt, d) = (f.shape()[0], f.shape()[1]);
    let t = bt / b;
    let side = |x: &B::Tensor| -> Result<B::Tensor> { be.reshape(&be.permute(&be.reshape(x, &[b, t, d])?, &[1, 0, 2])?, &[t, b * d]) };
    let h = be.scan(&side(f)?, &side(c)?)?; // [T, B·D]
    be.reshape(&be.permute(&be.reshape(&h, &[t, b, d])?, &[1, 0, 2])?, &[bt, d])
}
