//! The fused model ops written in primitive [`Backend`] ops: the default implementation of each
//! (what the CPU path runs) and the slow twin every fused GPU kernel is tested against
//! (`conformance::parity_fused`). Read these to learn what a kernel in `shaders/` computes.

use super::{check, Backend, Binary, HostTensor, Reduce, Unary};
use crate::error::Result;
use crate::nn::linear::ACT_SCALE_FLOOR;
use crate::nn::{repeat_heads, scalar};

/// A large finite negative number for masked exponents (WGSL may assume no infinities).
pub const MASK_NEG: f32 = -1e30;

/// x `[N, T, hd]`: `x·cos + rotate_half(x)·sin` with `rotate_half(x) = [−x₂, x₁]`.
pub fn rope<B: Backend>(be: &B, x: &B::Tensor, cos: &B::Tensor, sin: &B::Tensor) -> Result<B::Tensor> {
    let (_, _, hd) = check::rope(x, cos, sin)?;
    let half = hd / 2;
    let x1 = be.narrow(x, 2, 0, half)?;
    let x2 = be.narrow(x, 2, half, half)?;
    let rot = be.concat(&[&be.unary(Unary::Neg, &x2)?, &x1], 2)?;
    let a = be.binary(Binary::Mul, x, cos)?;
    let b = be.binary(Binary::Mul, &rot, sin)?;
    be.binary(Binary::Add, &a, &b)
}

/// `[T, T]`: 0 where query t may see key j (j ≤ t, and within the window), [`MASK_NEG`] elsewhere.
pub fn causal_mask(t: usize, window: Option<usize>) -> Result<HostTensor> {
    let mut m = vec![MASK_NEG; t * t];
    for q in 0..t {
        let lo = window.map_or(0, |w| (q + 1).saturating_sub(w));
        for j in lo..=q {
            m[q * t + j] = 0.0;
        }
    }
    HostTensor::f32(&[t, t], m)
}

/// `softmax(scale · q kᵀ + mask) v` per head, kv heads repeated for grouped queries.
pub fn attention<B: Backend>(be: &B, q: &B::Tensor, k: &B::Tensor, v: &B::Tensor, scale: f32, window: Option<usize>) -> Result<B::Tensor> {
    let (nh, kvh, t, _, _) = check::attention(q, k, v, window)?;
    let g = nh / kvh;
    let k = repeat_heads(be, k, g)?; // [nh, T, hd]
    let v = repeat_heads(be, v, g)?; // [nh, T, dv]
    let scores = be.matmul(q, &k, true)?; // [nh, T, T]
    let scores = be.unary(Unary::Affine { mul: scale, add: 0.0 }, &scores)?;
    let mask = be.upload(&causal_mask(t, window)?)?;
    let p = be.softmax(&be.binary(Binary::Add, &scores, &mask)?)?;
    be.matmul(&p, &v, false) // [nh, T, dv]
}

/// Chunkwise-parallel GLA (specs/models.md §3.4), every exponent ≤ 0: inside a chunk the pairwise
/// decays `exp(B_t − B_j)` (j ≤ t) weight `q_t · k_j`; across chunks the state carries the past.
pub fn gla_chunked<B: Backend>(be: &B, q: &B::Tensor, k: &B::Tensor, v: &B::Tensor, lg: &B::Tensor, chunk: usize) -> Result<B::Tensor> {
    let (nh, t, dk, dv) = check::gla(q, k, v, lg, chunk)?;
    let mut s = be.upload(&HostTensor::f32(&[nh, dk, dv], vec![0.0; nh * dk * dv])?)?;
    let mut outs = Vec::new();
    let mut start = 0;
    while start < t {
        let l = chunk.min(t - start);
        let cut = |x: &B::Tensor| be.narrow(x, 1, start, l); // [nh, L, X]
        let (qc, kc, vc) = (cut(q)?, cut(k)?, cut(v)?);
        // B_t = Σ_{j ≤ t} G_j inside the chunk: cumsum runs over the last dim.
        let bc = be.permute(&be.cumsum(&be.permute(&cut(lg)?, &[0, 2, 1])?)?, &[0, 2, 1])?; // [nh, L, dk]
        // Inter-chunk: (q ⊙ exp(B_t)) · S_in.
        let inter = be.matmul(&be.binary(Binary::Mul, &qc, &be.unary(Unary::Exp, &bc)?)?, &s, false)?; // [nh, L, dv]
        // Intra-chunk: A[t, j] = Σ_d q_t[d] k_j[d] exp(B_t[d] − B_j[d]) for j ≤ t.
        let bt = be.reshape(&bc, &[nh, l, 1, dk])?;
        let bj = be.reshape(&bc, &[nh, 1, l, dk])?;
        let mask = be.upload(&chunk_mask(l)?)?; // [L, L, 1]
        let e = be.unary(Unary::Exp, &be.binary(Binary::Add, &be.binary(Binary::Sub, &bt, &bj)?, &mask)?)?; // [nh, L, L, dk]
        let qk = be.binary(Binary::Mul, &be.reshape(&qc, &[nh, l, 1, dk])?, &be.reshape(&kc, &[nh, 1, l, dk])?)?;
        let a = be.reduce(Reduce::Sum, &be.binary(Binary::Mul, &qk, &e)?)?; // [nh, L, L, 1]
        let intra = be.matmul(&be.reshape(&a, &[nh, l, l])?, &vc, false)?; // [nh, L, dv]
        outs.push(be.binary(Binary::Add, &inter, &intra)?);
        // Outgoing state: diag(exp(B_last)) S_in + Σ_j (k_j ⊙ exp(B_last − B_j))ᵀ v_j.
        let blast = be.narrow(&bc, 1, l - 1, 1)?; // [nh, 1, dk]
        let kd = be.binary(Binary::Mul, &kc, &be.unary(Unary::Exp, &be.binary(Binary::Sub, &blast, &bc)?)?)?; // [nh, L, dk]
        let decay = be.permute(&be.unary(Unary::Exp, &blast)?, &[0, 2, 1])?; // [nh, dk, 1]
        let carried = be.matmul(&be.permute(&kd, &[0, 2, 1])?, &vc, false)?; // [nh, dk, dv]
        s = be.binary(Binary::Add, &be.binary(Binary::Mul, &decay, &s)?, &carried)?;
        start += l;
    }
    let refs: Vec<&B::Tensor> = outs.iter().collect();
    be.concat(&refs, 1)
}

/// `[L, L, 1]`: 0 where j ≤ t, [`MASK_NEG`] above the diagonal (those exponents would be positive).
fn chunk_mask(l: usize) -> Result<HostTensor> {
    let m = (0..l * l).map(|i| if i % l <= i / l { 0.0 } else { MASK_NEG }).collect();
    HostTensor::f32(&[l, l, 1], m)
}

/// x `[B, T, H]` -> `[B, H]`: row `lengths[b] − 1` of each sequence.
pub fn last_token<B: Backend>(be: &B, x: &B::Tensor, lengths: &[usize]) -> Result<B::Tensor> {
    let (_, _, h) = check::last_token(x, lengths)?;
    let rows = lengths
        .iter()
        .enumerate()
        .map(|(b, &l)| be.reshape(&be.narrow(&be.narrow(x, 0, b, 1)?, 1, l - 1, 1)?, &[1, h]))
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<&B::Tensor> = rows.iter().collect();
    be.concat(&refs, 0)
}

/// Per-token absmax 8-bit quantisation: y `[T, K]` -> (q `[T, K]` integers in [−128, 127] as f32,
/// s `[T, 1]`) with `s = 127 / max(max|y|, 1e-5)` and `q = clamp(round(y · s), −128, 127)`,
/// rounding half away from zero like the fused Triton kernel.
pub fn quantize_activations<B: Backend>(be: &B, y: &B::Tensor) -> Result<(B::Tensor, B::Tensor)> {
    let amax = be.reduce(Reduce::Max, &be.unary(Unary::Abs, y)?)?; // [T, 1]
    let amax = be.unary(Unary::Clamp { lo: ACT_SCALE_FLOOR, hi: f32::MAX }, &amax)?;
    let s = be.binary(Binary::Div, &scalar(be, 127.0)?, &amax)?; // [T, 1]
    let q = be.unary(Unary::Round, &be.binary(Binary::Mul, y, &s)?)?;
    let q = be.unary(Unary::Clamp { lo: -128.0, hi: 127.0 }, &q)?;
    Ok((q, s))
}

/// RMSNorm -> 8-bit activations -> exact ternary sums -> `β / s` (specs/models.md §4.3).
pub fn bit_linear<B: Backend>(be: &B, x: &B::Tensor, norm: &B::Tensor, packed: &B::Tensor, beta: f32, eps: f32) -> Result<B::Tensor> {
    check::bit_linear(x, norm, packed, eps)?;
    let y = be.rms_norm(x, norm, eps)?; // [M, K]
    let (q, s) = quantize_activations(be, &y)?;
    let acc = be.ternary_matmul(&q, packed)?; // exact integer sums, [M, N]
    let out = be.binary(Binary::Div, &acc, &s)?;
    be.unary(Unary::Affine { mul: beta, add: 0.0 }, &out)
}
