//! Layer Parallelism (González et al., "Leveraging the True Depth of LLMs", arXiv 2502.02790; methods.md §1): a
//! contiguous stretch `[start, end)` of an even number of blocks runs as consecutive pairs whose two blocks read the
//! same input and add their updates (§1.2):
//!
//! ```text
//! r = x + A_k(N^a_k(x)) + A_{k+1}(N^a_{k+1}(x))          (1)
//! y = r + F_k(N^m_k(r)) + F_{k+1}(N^m_{k+1}(r))          (2)
//! ```
//!
//! What the three architectures share lives here: the setting ([`LayerParallel`], read from `config.json` under
//! `trilemma.layer_parallel`), the plan of sequential steps ([`steps`]), the pair in its reference ("unfused") form
//! ([`pair_block`]) and the weight surgery of the "one wider layer" form (§1.4: gains folded into input columns,
//! rows stacked, output projections side by side). Each model file builds its own wide block from its loaded
//! layers and runs it; the unfused pair is its slow twin.
//!
//! The sequential depth drops from L to L − Δ/2; the weights and FLOPs do not change. `taps` (per-block hidden
//! states) get one entry per sequential step: a pair's output is one tap.

use serde::{Deserialize, Serialize};

use super::Mlp;
use crate::backend::{Backend, Binary, HostTensor, TensorMeta, Unary};
use crate::error::{Error, Result};
use crate::nn::linear::{Linear, RowBlocks};

/// The pre-MLP norm of a pair (methods.md §1.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MlpNorm {
    /// Each MLP applies its own layer's pre-MLP norm to r (normative, our default).
    #[default]
    Own,
    /// One shared pre-MLP RMSNorm whose gain is the mean of the two layers' gains (the reference's first commit).
    Mean,
}

fn yes() -> bool {
    true
}

/// A layer-parallel stretch, as written into `config.json` under `trilemma.layer_parallel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerParallel {
    /// First block of the stretch (0-based).
    pub start: usize,
    /// One past the last block; `end − start` is even and ≥ 2.
    pub end: usize,
    #[serde(default)]
    pub mlp_norm: MlpNorm,
    /// Run each pair as one wider layer (§1.4) when the weights allow it; `false` runs the reference pair form.
    #[serde(default = "yes")]
    pub fused: bool,
}

/// Where the setting lives in `config.json`.
pub const CONFIG_KEY: &str = "layer_parallel";

impl LayerParallel {
    /// Refuses a stretch the model cannot run as pairs. Including layer 0 or the last layer departs from methods.md
    /// §1.5's default selection (`1 ≤ s`, `e ≤ L − 1`: those layers are the most sensitive) but is allowed: the
    /// bundled models have 2 layers, so `[0, 2)` is their only stretch.
    pub fn check(&self, layers: usize) -> Result<()> {
        let (s, e) = (self.start, self.end);
        if e <= s {
            return Err(Error::Invalid(format!("layer_parallel: end ({e}) must be greater than start ({s})")));
        }
        if (e - s) % 2 != 0 {
            return Err(Error::Invalid(format!("layer_parallel: the stretch [{s}, {e}) has {} layers; it must be even (the layers run in pairs)", e - s)));
        }
        if e > layers {
            return Err(Error::Invalid(format!("layer_parallel: the stretch [{s}, {e}) goes past the model's {layers} layers")));
        }
        Ok(())
    }

    /// Δ, the number of layers in the stretch.
    pub fn delta(&self) -> usize {
        self.end - self.start
    }

    /// Sequential steps of an `layers`-block model: L − Δ/2.
    pub fn effective_depth(&self, layers: usize) -> usize {
        layers - self.delta() / 2
    }

    /// The setting in `config.json` (`trilemma.layer_parallel`), checked against `layers`; `None` when absent.
    pub fn from_config(config: &serde_json::Value, layers: usize) -> Result<Option<Self>> {
        let Some(v) = config.get("trilemma").and_then(|t| t.get(CONFIG_KEY)).filter(|v| !v.is_null()) else { return Ok(None) };
        let lp: Self = serde_json::from_value(v.clone()).map_err(|e| Error::Invalid(format!("config.json: \"trilemma.{CONFIG_KEY}\": {e}")))?;
        lp.check(layers)?;
        Ok(Some(lp))
    }
}

/// A model's layer-parallel stretch as loaded: the setting, each pair's pre-MLP norms as run, and — when the pairs
/// run fused — each pair's wide block `W`.
pub struct Pairs<B: Backend, W> {
    pub lp: LayerParallel,
    /// Per pair: the pre-MLP gains of layers k and k + 1 (the same mean gain twice for [`MlpNorm::Mean`]).
    pub mlp_norms: Vec<(B::Tensor, B::Tensor)>,
    /// Per pair, when fused; empty for the unfused form.
    pub wide: Vec<W>,
    /// Why a fused request runs unfused (e.g. [`NOT_DENSE`]), if it does.
    pub unfused_because: Option<String>,
}

impl<B: Backend, W> Pairs<B, W> {
    /// Pairs of `lp` over blocks whose pre-MLP gains `mlp_norm(l)` gives; `wide(k, norms)` builds pair (k, k + 1)'s
    /// wide block, or says why it cannot (then every pair runs unfused).
    pub(crate) fn build(
        be: &B,
        lp: LayerParallel,
        layers: usize,
        mlp_norm: impl Fn(usize) -> B::Tensor,
        mut wide: impl FnMut(usize, [&B::Tensor; 2]) -> Result<std::result::Result<W, String>>,
    ) -> Result<Self> {
        lp.check(layers)?;
        let mut out = Self { lp, mlp_norms: Vec::new(), wide: Vec::new(), unfused_because: None };
        for k in (lp.start..lp.end).step_by(2) {
            let (m0, m1) = mlp_norms(be, &lp, &mlp_norm(k), &mlp_norm(k + 1))?;
            if lp.fused && out.unfused_because.is_none() {
                match wide(k, [&m0, &m1])? {
                    Ok(w) => out.wide.push(w),
                    Err(why) => out.unfused_because = Some(why),
                }
            }
            out.mlp_norms.push((m0, m1));
        }
        if out.unfused_because.is_some() {
            out.wide.clear();
        }
        Ok(out)
    }

    /// Whether the pairs run as wide blocks.
    pub fn fused(&self) -> bool {
        !self.wide.is_empty()
    }
}

/// One sequential step of the forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Block `l` as usual.
    Block(usize),
    /// Blocks `k` and `k + 1` as a layer-parallel pair, the `pair`-th of the stretch.
    Pair { k: usize, pair: usize },
}

/// The steps of an `layers`-block model under `lp`: blocks before the stretch, its pairs, blocks after.
pub fn steps(layers: usize, lp: Option<&LayerParallel>) -> Vec<Step> {
    let mut out = Vec::with_capacity(layers);
    let mut l = 0;
    while l < layers {
        match lp {
            Some(p) if (p.start..p.end).contains(&l) => {
                out.push(Step::Pair { k: l, pair: (l - p.start) / 2 });
                l += 2;
            }
            _ => {
                out.push(Step::Block(l));
                l += 1;
            }
        }
    }
    out
}

/// The pair's pre-MLP norms as run: `Own` keeps each layer's gain, `Mean` replaces both by their mean `[H]`.
pub(crate) fn mlp_norms<B: Backend>(be: &B, lp: &LayerParallel, a: &B::Tensor, b: &B::Tensor) -> Result<(B::Tensor, B::Tensor)> {
    match lp.mlp_norm {
        MlpNorm::Own => Ok((a.clone(), b.clone())),
        MlpNorm::Mean => {
            let m = be.unary(Unary::Affine { mul: 0.5, add: 0.0 }, &be.binary(Binary::Add, a, b)?)?;
            Ok((m.clone(), m))
        }
    }
}

/// The reference pair (1)–(2) over two blocks' parts; `mlp_norm` are the norms [`mlp_norms`] chose. With the `Mean`
/// variant both MLPs read one normalised vector, computed once (the eps is the config's, the same for both layers).
#[allow(clippy::too_many_arguments)]
pub(crate) fn pair_block<B: Backend>(
    be: &B,
    x: &B::Tensor,
    attn_norm: [&B::Tensor; 2],
    mlp_norm: [&B::Tensor; 2],
    mlp: [&Mlp<B>; 2],
    eps: f32,
    shared_mlp_norm: bool,
    mixer_k: impl FnOnce(&B::Tensor) -> Result<B::Tensor>,
    mixer_k1: impl FnOnce(&B::Tensor) -> Result<B::Tensor>,
) -> Result<B::Tensor> {
    let a0 = mixer_k(&be.rms_norm(x, attn_norm[0], eps)?)?; // [B·T, H]
    let a1 = mixer_k1(&be.rms_norm(x, attn_norm[1], eps)?)?;
    let r = be.binary(Binary::Add, &be.binary(Binary::Add, x, &a0)?, &a1)?;
    pair_mlp(be, &r, mlp_norm, mlp, eps, shared_mlp_norm)
}

/// (2): `r + F_k(N^m_k(r)) + F_{k+1}(N^m_{k+1}(r))`, r `[B·T, H]`.
pub(crate) fn pair_mlp<B: Backend>(be: &B, r: &B::Tensor, mlp_norm: [&B::Tensor; 2], mlp: [&Mlp<B>; 2], eps: f32, shared_mlp_norm: bool) -> Result<B::Tensor> {
    let r = r.clone();
    let n0 = be.rms_norm(&r, mlp_norm[0], eps)?;
    let n1 = if shared_mlp_norm { n0.clone() } else { be.rms_norm(&r, mlp_norm[1], eps)? };
    let f = be.binary(Binary::Add, &mlp[0].forward(be, &n0)?, &mlp[1].forward(be, &n1)?)?;
    be.binary(Binary::Add, &r, &f)
}

/// Why a pair cannot be fused: the wide form needs plain f32 weights it can fold and stack on the device.
pub const NOT_DENSE: &str = "the wide layer needs dense f32 weights (f16-stored or packed weights run the pair unfused)";

/// The `[N, K]` weight and bias of a dense f32 linear held in one block, or `None` for any other form.
fn dense<B: Backend>(l: &Linear<B>) -> Option<(&B::Tensor, Option<&B::Tensor>)> {
    match l {
        Linear::Dense { w, b } if w.blocks.len() == 1 => Some((&w.blocks[0], b.as_ref())),
        _ => None,
    }
}

fn wrap<B: Backend>(w: B::Tensor, b: Option<B::Tensor>) -> Result<Linear<B>> {
    Ok(Linear::Dense { w: RowBlocks::single(w)?, b })
}

/// Rows stacked: `[W_0·diag(γ_0); W_1·diag(γ_1)]` `[N_0 + N_1, K]` with the biases concatenated (a missing bias is
/// zeros). Folding a gain into the **input columns** is exact: `RMSNorm_γ(x)·Wᵀ = (x/rms(x))·(W·diag(γ))ᵀ` (§1.4,
/// §1.11). `None` when either is not dense f32.
pub(crate) fn stack_rows<B: Backend>(be: &B, parts: [(&Linear<B>, Option<&B::Tensor>); 2]) -> Result<Option<Linear<B>>> {
    let (Some((w0, b0)), Some((w1, b1))) = (dense(parts[0].0), dense(parts[1].0)) else { return Ok(None) };
    let fold = |w: &B::Tensor, g: Option<&B::Tensor>| -> Result<B::Tensor> {
        match g {
            Some(g) => be.binary(Binary::Mul, w, g), // [N, K] ⊙ [K]: column j scaled by γ_j
            None => Ok(w.clone()),
        }
    };
    let w = be.concat(&[&fold(w0, parts[0].1)?, &fold(w1, parts[1].1)?], 0)?; // [N_0 + N_1, K]
    let b = match (b0, b1) {
        (None, None) => None,
        _ => {
            let bias = |b: Option<&B::Tensor>, w: &B::Tensor| -> Result<B::Tensor> {
                match b {
                    Some(b) => Ok(b.clone()),
                    None => be.upload(&HostTensor::f32(&[w.shape()[0]], vec![0.0; w.shape()[0]])?),
                }
            };
            Some(be.concat(&[&bias(b0, w0)?, &bias(b1, w1)?], 0)?)
        }
    };
    Ok(Some(wrap(w, b)?))
}

/// Side by side: `[W_0·diag(s_0) | W_1·diag(s_1)]` `[N, K_0 + K_1]`, so that `[a_0 | a_1]·Wᵀ = a_0·W_0ᵀ + a_1·W_1ᵀ`
/// — the sums of (1) and (2) become the matmul. `s_i` `[K_i]` optionally scales the input columns. Unbiased only.
pub(crate) fn concat_cols<B: Backend>(be: &B, parts: [(&Linear<B>, Option<&B::Tensor>); 2]) -> Result<Option<Linear<B>>> {
    let (Some((w0, None)), Some((w1, None))) = (dense(parts[0].0), dense(parts[1].0)) else { return Ok(None) };
    let fold = |w: &B::Tensor, s: Option<&B::Tensor>| -> Result<B::Tensor> { s.map_or_else(|| Ok(w.clone()), |s| be.binary(Binary::Mul, w, s)) };
    let w = be.concat(&[&fold(w0, parts[0].1)?, &fold(w1, parts[1].1)?], 1)?; // [N, K_0 + K_1]
    Ok(Some(wrap(w, None)?))
}

/// Block diagonal: `[[W_0, 0], [0, W_1]]` `[N_0 + N_1, K_0 + K_1]`, biases concatenated (GLA's second gate factor).
pub(crate) fn block_diag<B: Backend>(be: &B, l0: &Linear<B>, l1: &Linear<B>) -> Result<Option<Linear<B>>> {
    let (Some((w0, b0)), Some((w1, b1))) = (dense(l0), dense(l1)) else { return Ok(None) };
    let zeros = |n: usize, k: usize| be.upload(&HostTensor::f32(&[n, k], vec![0.0; n * k])?);
    let (n0, k0, n1, k1) = (w0.shape()[0], w0.shape()[1], w1.shape()[0], w1.shape()[1]);
    let top = be.concat(&[w0, &zeros(n0, k1)?], 1)?; // [N_0, K_0 + K_1]
    let bottom = be.concat(&[&zeros(n1, k0)?, w1], 1)?; // [N_1, K_0 + K_1]
    let w = be.concat(&[&top, &bottom], 0)?;
    let b = match (b0, b1) {
        (Some(b0), Some(b1)) => Some(be.concat(&[b0, b1], 0)?),
        (None, None) => None,
        _ => return Ok(None),
    };
    Ok(Some(wrap(w, b)?))
}

/// The pair's two dense MLPs as one of twice the width (§1.4): gate and up rows stacked with each layer's pre-MLP
/// gain folded in (`[2I, H]` each), down side by side (`[H, 2I]`). Reads the gain-free `r / rms(r)`.
pub(crate) fn wide_mlp<B: Backend>(be: &B, mlp: [&Mlp<B>; 2], gain: [&B::Tensor; 2]) -> Result<Option<Mlp<B>>> {
    let (Some(u0), Some(u1)) = (&mlp[0].up, &mlp[1].up) else { return Ok(None) };
    let gate = stack_rows(be, [(&mlp[0].gate, Some(gain[0])), (&mlp[1].gate, Some(gain[1]))])?;
    let up = stack_rows(be, [(u0, Some(gain[0])), (u1, Some(gain[1]))])?;
    let down = concat_cols(be, [(&mlp[0].down, None), (&mlp[1].down, None)])?;
    Ok(match (gate, up, down) {
        (Some(gate), Some(up), Some(down)) => Some(Mlp { gate, up: Some(up), down, intermediate: mlp[0].intermediate + mlp[1].intermediate }),
        _ => None,
    })
}

/// A `[n]` vector of ones: the gain of the shared, gain-free RMSNorm the wide layer reads.
pub(crate) fn ones<B: Backend>(be: &B, n: usize) -> Result<B::Tensor> {
    be.upload(&HostTensor::f32(&[n], vec![1.0; n])?)
}

/// `v` `[d]` repeated `times` times -> `[times·d]` (a per-head gain over all heads).
pub(crate) fn tile<B: Backend>(be: &B, v: &B::Tensor, times: usize) -> Result<B::Tensor> {
    let copies: Vec<&B::Tensor> = std::iter::repeat_n(v, times).collect();
    be.concat(&copies, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stretches_are_checked() {
        let lp = |start, end| LayerParallel { start, end, mlp_norm: MlpNorm::Own, fused: true };
        assert!(lp(0, 2).check(2).is_ok());
        assert!(lp(2, 6).check(8).is_ok());
        for (s, e, l, needle) in [(0, 3, 4, "even"), (1, 1, 4, "greater"), (3, 1, 4, "greater"), (2, 6, 4, "past"), (0, 4, 2, "past")] {
            let err = lp(s, e).check(l).unwrap_err().to_string();
            assert!(err.contains(needle), "[{s}, {e}) of {l}: {err}");
        }
        assert_eq!(lp(2, 6).effective_depth(8), 6);
    }

    #[test]
    fn steps_pair_the_stretch() {
        let lp = LayerParallel { start: 1, end: 5, mlp_norm: MlpNorm::Own, fused: false };
        assert_eq!(
            steps(6, Some(&lp)),
            vec![Step::Block(0), Step::Pair { k: 1, pair: 0 }, Step::Pair { k: 3, pair: 1 }, Step::Block(5)]
        );
        assert_eq!(steps(3, None), vec![Step::Block(0), Step::Block(1), Step::Block(2)]);
    }

    #[test]
    fn config_round_trip_and_defaults() {
        let cfg = serde_json::json!({"trilemma": {"layer_parallel": {"start": 0, "end": 2}}});
        let lp = LayerParallel::from_config(&cfg, 2).unwrap().unwrap();
        assert_eq!(lp, LayerParallel { start: 0, end: 2, mlp_norm: MlpNorm::Own, fused: true });
        assert!(LayerParallel::from_config(&serde_json::json!({}), 2).unwrap().is_none());
        let bad = serde_json::json!({"trilemma": {"layer_parallel": {"start": 0, "end": 2, "mlp_norm": "shard"}}});
        assert!(LayerParallel::from_config(&bad, 2).unwrap_err().to_string().contains("layer_parallel"));
        let odd = serde_json::json!({"trilemma": {"layer_parallel": {"start": 0, "end": 1}}});
        assert!(LayerParallel::from_config(&odd, 2).unwrap_err().to_string().contains("even"));
    }
}
