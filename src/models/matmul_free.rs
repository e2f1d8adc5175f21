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
        Ok(Self { common: common.clone(), width: d, blocks })
    }

    /// x `[B·T, H]` (`b` right-padded sequences) -> `[B·T, H]` before the final norm; `taps`
    /// collects each block's output.
    pub fn forward(&self, be: &B, mut x: B::Tensor, b: usize, mut taps: Option<&mut Vec<B::Tensor>>) -> Result<B::Tensor> {
        let eps = self.common.norm_eps;
        for blk in &self.blocks {
            x = pre_norm_block(be, &x, &blk.attn_norm, &blk.mlp_norm, &blk.mlp, eps, |h| blk.mixer.forward(be, h, b, eps))?;
            if let Some(t) = taps.as_deref_mut() {
                t.push(x.clone());
            }
        }
        Ok(x)
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
