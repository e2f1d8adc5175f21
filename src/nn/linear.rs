//! `y = x · Wᵀ (+ b)` in the forms a model can carry. Compression changes which variant a layer
//! holds, never the model code.
//!
//! - [`Linear::Dense`]: f32 weight `[N, K]` (PyTorch layout), optional bias `[N]`.
//! - [`Linear::Int8`], [`Linear::Int4`], [`Linear::Ternary`], [`Linear::LowRank`]: the compressed
//!   forms of [`crate::compress::apply`], run on their packed tensors (never expanded to f32):
//!   int8 codes per output channel ([`Backend::matmul_i8`]), int4 codes per input group
//!   ([`Backend::matmul_i4`]), weight-only absmean ternary `β·(x·Tᵀ)` with f32 activations
//!   ([`Backend::ternary_matmul`]: additions and subtractions), and two low-rank factors.
//!   Each may carry a bias `[N]`.
//! - [`Linear::Bit`]: the MatMul-free LM's BitLinear (specs/models.md §4.3): its own input
//!   RMSNorm (eps 1e-6), 8-bit absmax activations per token, absmean ternary weights kept packed
//!   (2 bits each) and multiplied with additions and subtractions only.

use crate::backend::{ternary, Backend, Binary, HostTensor, TensorMeta, Unary};
use crate::error::{Error, Result};

/// RMSNorm eps inside BitLinear: the fused function's default, 1e-6 (not the module's printed 1e-8).
pub const BITLINEAR_NORM_EPS: f32 = 1e-6;
/// Floors of the quantisers (MMF `fusedbitnet.py`).
pub const ACT_SCALE_FLOOR: f32 = 1e-5;
pub const WEIGHT_SCALE_FLOOR: f32 = 1e-5;

/// Ternary weights and their scale, on the host: `W ≈ β · T`.
#[derive(Clone, Debug, PartialEq)]
pub struct TernaryWeights {
    /// `[N, ceil(K/16)]` packed codes (see [`ternary`]).
    pub packed: Vec<u32>,
    pub beta: f32,
    pub n: usize,
    pub k: usize,
}

impl TernaryWeights {
    /// Absmean ternarisation of a latent `[N, K]` weight, per tensor:
    /// `β = max(mean|W|, 1e-5)`, `T = clamp(round(W · (1/β)), −1, 1)` with round-half-to-even
    /// (PyTorch's `round`).
    pub fn from_latent(w: &HostTensor) -> Result<Self> {
        let (n, k) = match *w.shape.as_slice() {
            [n, k] if n > 0 && k > 0 => (n, k),
            ref s => return Err(Error::Invalid(format!("BitLinear weight must be [N, K], got {s:?}"))),
        };
        let v = w.as_f32("ternarize")?;
        let mean = (v.iter().map(|x| x.abs() as f64).sum::<f64>() / v.len() as f64) as f32;
        let beta = mean.max(WEIGHT_SCALE_FLOOR);
        let inv = 1.0 / beta;
        let t: Vec<i8> = v.iter().map(|&x| (x * inv).round_ties_even().clamp(-1.0, 1.0) as i8).collect();
        Ok(Self { packed: ternary::pack(&t, n, k)?, beta, n, k })
    }

    /// Check stored packed weights (no invalid code, zero padding) before they reach a kernel.
    pub fn validate(&self) -> Result<()> {
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return Err(Error::Invalid(format!("ternary scale must be positive and finite, got {}", self.beta)));
        }
        let t = ternary::unpack(&self.packed, self.n, self.k)?;
        let repacked = ternary::pack(&t, self.n, self.k)?;
        if repacked != self.packed {
            return Err(Error::Invalid("ternary weights have non-zero padding bits".into()));
        }
        Ok(())
    }

    /// Bytes of the packed form (weights + one f32 scale).
    pub fn bytes(&self) -> usize {
        self.packed.len() * 4 + 4
    }
}

/// A row-major `[N, K]` f32 matrix on a backend, in row blocks that each fit the backend's
/// largest binding ([`Backend::max_tensor_bytes`]): one block on every device for the bundled
/// models, several for an embedding table past WebGPU's 128 MiB default binding size.
#[derive(Debug)]
pub struct RowBlocks<B: Backend> {
    /// `[n_i, K]` blocks in row order, Σ n_i = N.
    pub blocks: Vec<B::Tensor>,
    pub n: usize,
    pub k: usize,
}

impl<B: Backend> Clone for RowBlocks<B> {
    fn clone(&self) -> Self {
        Self { blocks: self.blocks.clone(), n: self.n, k: self.k }
    }
}

impl<B: Backend> RowBlocks<B> {
    /// Upload `w` `[N, K]`, split into as few row blocks as the binding limit allows.
    pub fn upload(be: &B, w: &HostTensor) -> Result<Self> {
        let (n, k) = match *w.shape.as_slice() {
            [n, k] => (n, k),
            ref s => return Err(Error::Invalid(format!("a weight matrix must be [N, K], got {s:?}"))),
        };
        let row_bytes = (k as u64).saturating_mul(4).max(1);
        let max = be.max_tensor_bytes();
        let rows_per_block = usize::try_from(max / row_bytes).unwrap_or(usize::MAX);
        if rows_per_block == 0 {
            return Err(Error::Gpu(format!("one row of a [{n}, {k}] weight takes {row_bytes} bytes, over the binding limit of {max} bytes")));
        }
        if rows_per_block >= n {
            return Ok(Self { blocks: vec![be.upload(w)?], n, k });
        }
        let v = w.as_f32("weight")?;
        let blocks = (0..n)
            .step_by(rows_per_block)
            .map(|r0| {
                let r1 = (r0 + rows_per_block).min(n);
                be.upload(&HostTensor::f32(&[r1 - r0, k], v[r0 * k..r1 * k].to_vec())?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { blocks, n, k })
    }

    /// One block (the matrix was not split).
    pub fn single(t: B::Tensor) -> Result<Self> {
        match *t.shape() {
            [n, k] => Ok(Self { blocks: vec![t], n, k }),
            ref s => Err(Error::Invalid(format!("a weight matrix must be [N, K], got {s:?}"))),
        }
    }

    /// x `[M, K]` -> `x · Wᵀ` `[M, N]`: one product per block, joined along the columns.
    pub fn matmul_t(&self, be: &B, x: &B::Tensor) -> Result<B::Tensor> {
        if let [w] = self.blocks.as_slice() {
            return be.matmul(x, w, true);
        }
        let parts = self.blocks.iter().map(|w| be.matmul(x, w, true)).collect::<Result<Vec<_>>>()?;
        let refs: Vec<&B::Tensor> = parts.iter().collect();
        be.concat(&refs, x.shape().len() - 1)
    }

    /// Rows `ids` -> `[T, K]` (an embedding lookup). Split tables gather from each block the ids
    /// it holds, then put the rows back in token order with one more gather.
    pub fn gather(&self, be: &B, ids: &[u32]) -> Result<B::Tensor> {
        if let [w] = self.blocks.as_slice() {
            return be.gather(w, ids);
        }
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= self.n) {
            return Err(Error::Index { op: "gather", index: bad as usize, size: self.n });
        }
        let mut parts = Vec::new();
        let mut order = vec![0u32; ids.len()];
        let (mut r0, mut done) = (0usize, 0u32);
        for w in &self.blocks {
            let rows = w.shape()[0];
            let local: Vec<(usize, u32)> =
                ids.iter().enumerate().filter(|(_, &i)| (r0..r0 + rows).contains(&(i as usize))).map(|(t, &i)| (t, i - r0 as u32)).collect();
            if !local.is_empty() {
                for (j, &(t, _)) in local.iter().enumerate() {
                    order[t] = done + j as u32;
                }
                done += local.len() as u32;
                parts.push(be.gather(w, &local.iter().map(|&(_, i)| i).collect::<Vec<_>>())?);
            }
            r0 += rows;
        }
        let refs: Vec<&B::Tensor> = parts.iter().collect();
        let stacked = be.concat(&refs, 0)?; // [T, K] in block order
        be.gather(&stacked, &order)
    }
}

/// A BitLinear layer on a backend.
#[derive(Clone, Debug)]
pub struct BitLinear<B: Backend> {
    /// `[K]` input RMSNorm weight.
    pub norm: B::Tensor,
    /// `[N, ceil(K/16)]` u32.
    pub packed: B::Tensor,
    pub beta: f32,
    pub n: usize,
    pub k: usize,
}

#[derive(Clone, Debug)]
pub enum Linear<B: Backend> {
    Dense { w: RowBlocks<B>, b: Option<B::Tensor> },
    /// Weights `[N, K]` stored as f16 pairs (u32 `[N, ⌈K/2⌉]`, [`crate::backend::half_pairs`]).
    Half { w: B::Tensor, n: usize, b: Option<B::Tensor> },
    Bit(BitLinear<B>),
    /// int8 per output channel: codes u32 `[N, ⌈K/4⌉]` ([`crate::backend::int8`]), scales `[N]`.
    Int8 { codes: B::Tensor, scales: B::Tensor, n: usize, b: Option<B::Tensor> },
    /// int4 per (output channel, group of g inputs): codes u32 `[N, K/8]`
    /// ([`crate::compress::quant::int4`]), scales `[N, K/g]`.
    Int4 { codes: B::Tensor, scales: B::Tensor, n: usize, b: Option<B::Tensor> },
    /// Weight-only absmean ternary `W ≈ β·T` on f32 activations (not a BitLinear: no norm, no
    /// activation quantisation): T packed u32 `[N, ⌈K/16⌉]` ([`ternary`]).
    Ternary { packed: B::Tensor, beta: f32, n: usize, b: Option<B::Tensor> },
    /// `W ≈ B·A`: `a` `[r, K]` then `b` `[N, r]` (which holds the bias), `y = (x·Aᵀ)·Bᵀ (+ bias)`.
    LowRank { a: Box<Linear<B>>, b: Box<Linear<B>> },
    /// Dynamic per-token int8 activations around `inner` (no bias of its own): `q = clamp(round(x·s_t))`, `s_t =
    /// 127 / max|x_t|` from each row at run time, `y = inner(q) / s_t (+ bias)`.
    ActInt8 { inner: Box<Linear<B>>, b: Option<B::Tensor> },
}

impl<B: Backend> Linear<B> {
    pub fn dense(be: &B, w: &HostTensor, b: Option<&HostTensor>) -> Result<Self> {
        let b = b.map(|b| be.upload(b)).transpose()?;
        if be.half_weights() {
            if let [n, k] = *w.shape.as_slice() {
                let words = crate::backend::half_pairs::pack(w.as_f32("weight")?, n, k)?;
                let packed = HostTensor::u32(&[n, crate::backend::half_pairs::words_per_row(k)], words)?;
                return Ok(Linear::Half { w: be.upload(&packed)?, n, b });
            }
        }
        Ok(Linear::Dense { w: RowBlocks::upload(be, w)?, b })
    }

    pub fn bit(be: &B, t: &TernaryWeights, norm: &HostTensor) -> Result<Self> {
        t.validate()?;
        if norm.shape != [t.k] {
            return Err(Error::Invalid(format!("BitLinear norm must be [{}], got {:?}", t.k, norm.shape)));
        }
        let packed = HostTensor::u32(&[t.n, ternary::words_per_row(t.k)], t.packed.clone())?;
        Ok(Linear::Bit(BitLinear { norm: be.upload(norm)?, packed: be.upload(&packed)?, beta: t.beta, n: t.n, k: t.k }))
    }

    /// int8 per output channel from its stored tensors: codes u32 `[N, ⌈K/4⌉]`, scales `[N]`
    /// (finite, ≥ 0), optional bias `[N]`. Codes are validated here (no −128, zero padding): the
    /// GPU kernel cannot refuse them later.
    pub fn int8(be: &B, codes: &HostTensor, scales: &HostTensor, k: usize, b: Option<&HostTensor>) -> Result<Self> {
        let n = packed_rows("int8", codes, crate::backend::int8::words_per_row(k), k)?;
        check_scales("int8", scales, &[n])?;
        crate::backend::int8::validate(codes.as_u32("int8 codes")?, n, k)?;
        let b = check_bias(be, b, n)?;
        Ok(Linear::Int8 { codes: be.upload(codes)?, scales: be.upload(scales)?, n, b })
    }

    /// int4 per input group from its stored tensors: codes u32 `[N, K/8]`, scales `[N, K/g]` with
    /// g ∈ {32, 64, 128} inferred from their shape, optional bias `[N]`. Codes are validated here
    /// (no nibble `0x8`).
    pub fn int4(be: &B, codes: &HostTensor, scales: &HostTensor, k: usize, b: Option<&HostTensor>) -> Result<Self> {
        use crate::compress::quant::{int4, GROUP_SIZES};
        if !k.is_multiple_of(int4::PER_WORD) {
            return Err(Error::Invalid(format!("int4: input size {k} is not a multiple of 8")));
        }
        let n = packed_rows("int4", codes, int4::words_per_row(k), k)?;
        let groups = match *scales.shape.as_slice() {
            [sn, g] if sn == n && g > 0 && k.is_multiple_of(g) && GROUP_SIZES.contains(&(k / g)) => g,
            ref s => return Err(Error::Invalid(format!("int4 scales must be [{n}, {k}/g] with g one of {GROUP_SIZES:?}, got {s:?}"))),
        };
        check_scales("int4", scales, &[n, groups])?;
        int4::unpack(codes.as_u32("int4 codes")?, n, k)?;
        let b = check_bias(be, b, n)?;
        Ok(Linear::Int4 { codes: be.upload(codes)?, scales: be.upload(scales)?, n, b })
    }

    /// Weight-only ternary `β·T` (validated), optional bias `[N]`.
    pub fn ternary(be: &B, t: &TernaryWeights, b: Option<&HostTensor>) -> Result<Self> {
        t.validate()?;
        let packed = HostTensor::u32(&[t.n, ternary::words_per_row(t.k)], t.packed.clone())?;
        let b = check_bias(be, b, t.n)?;
        Ok(Linear::Ternary { packed: be.upload(&packed)?, beta: t.beta, n: t.n, b })
    }

    /// Two factors `a` `[r, K]` and `b` `[N, r]` (finite), optional bias `[N]`.
    pub fn low_rank(be: &B, a: &HostTensor, b: &HostTensor, k: usize, bias: Option<&HostTensor>) -> Result<Self> {
        match (a.shape.as_slice(), b.shape.as_slice()) {
            (&[r, ka], &[n, rb]) if r > 0 && n > 0 && ka == k && rb == r => {}
            (sa, sb) => return Err(Error::Invalid(format!("low-rank factors must be [r, {k}] and [N, r] with r > 0, got {sa:?} and {sb:?}"))),
        }
        for (what, t) in [("a", a), ("b", b)] {
            if let Some(v) = t.as_f32("low-rank factor")?.iter().find(|v| !v.is_finite()) {
                return Err(Error::Invalid(format!("low-rank factor {what} has a non-finite value {v}")));
            }
        }
        Ok(Linear::LowRank { a: Box::new(Linear::dense(be, a, None)?), b: Box::new(Linear::dense(be, b, bias)?) })
    }

    /// Output features N.
    pub fn out_features(&self) -> usize {
        match self {
            Linear::Dense { w, .. } => w.n,
            Linear::Half { n, .. } => *n,
            Linear::Bit(b) => b.n,
            Linear::Int8 { n, .. } | Linear::Int4 { n, .. } | Linear::Ternary { n, .. } => *n,
            Linear::LowRank { b, .. } => b.out_features(),
            Linear::ActInt8 { inner, .. } => inner.out_features(),
        }
    }

    /// x `[T, K]` -> `[T, N]`.
    pub fn forward(&self, be: &B, x: &B::Tensor) -> Result<B::Tensor> {
        let (y, b) = match self {
            Linear::Dense { w, b } => (w.matmul_t(be, x)?, b),
            Linear::Half { w, b, .. } => (be.matmul_f16(x, w)?, b),
            Linear::Bit(bl) => return bl.forward(be, x),
            Linear::Int8 { codes, scales, b, .. } => (be.matmul_i8(x, codes, scales)?, b),
            Linear::Int4 { codes, scales, b, .. } => (be.matmul_i4(x, codes, scales)?, b),
            Linear::Ternary { packed, beta, b, .. } => (be.unary(Unary::Affine { mul: *beta, add: 0.0 }, &be.ternary_matmul(x, packed)?)?, b),
            Linear::LowRank { a, b } => return b.forward(be, &a.forward(be, x)?), // [T, r] then [T, N]
            Linear::ActInt8 { inner, b } => {
                let (q, s) = quantize_activations(be, x)?; // [T, K] integers, [T, 1]
                (be.binary(Binary::Div, &inner.forward(be, &q)?, &s)?, b)
            }
        };
        match b {
            Some(b) => be.binary(Binary::Add, &y, b),
            None => Ok(y),
        }
    }
}

/// Rows N of packed codes `[N, words]` (u32, `words` per row for K = `k`).
fn packed_rows(what: &str, codes: &HostTensor, words: usize, k: usize) -> Result<usize> {
    codes.as_u32("packed codes")?;
    match *codes.shape.as_slice() {
        [n, w] if n > 0 && w == words => Ok(n),
        ref s => Err(Error::Invalid(format!("{what} codes must be [N, {words}] for an input size of {k}, got {s:?}"))),
    }
}

/// Scales of the given shape, finite and ≥ 0 (absmax scales; an all-zero block has scale 0).
fn check_scales(what: &str, scales: &HostTensor, shape: &[usize]) -> Result<()> {
    if scales.shape != shape {
        return Err(Error::Invalid(format!("{what} scales must be {shape:?}, got {:?}", scales.shape)));
    }
    if let Some(v) = scales.as_f32("scales")?.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
        return Err(Error::Invalid(format!("{what} scales must be finite and non-negative, found {v}")));
    }
    Ok(())
}

/// An optional bias `[N]`, uploaded.
fn check_bias<B: Backend>(be: &B, b: Option<&HostTensor>, n: usize) -> Result<Option<B::Tensor>> {
    match b {
        Some(b) if b.shape != [n] => Err(Error::Invalid(format!("bias must be [{n}], got {:?}", b.shape))),
        Some(b) => Ok(Some(be.upload(b)?)),
        None => Ok(None),
    }
}

impl<B: Backend> BitLinear<B> {
    /// x `[T, K]` -> `[T, N]`: `(β / s_x) · Σ_i q_i T_{j,i}` with `q = clamp(round(ŷ · s_x), −128, 127)`,
    /// `s_x = 127 / max(max|ŷ|, 1e-5)`, `ŷ = RMSNorm(x)` (specs/models.md §4.3).
    pub fn forward(&self, be: &B, x: &B::Tensor) -> Result<B::Tensor> {
        be.bit_linear(x, &self.norm, &self.packed, self.beta, BITLINEAR_NORM_EPS)
    }
}

pub use crate::backend::composite::quantize_activations;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absmean_ternarisation_by_hand() {
        // mean|W| = (0.5+0.1+0.9+0.3+0+0.2)/6 = 1/3 -> β = 1/3; W/β = [1.5, -0.3, 2.7, -0.9, 0, 0.6]
        // round-half-even: [2, -0, 3, -1, 0, 1] -> clamp: [1, 0, 1, -1, 0, 1]
        let w = HostTensor::f32(&[2, 3], vec![0.5, -0.1, 0.9, -0.3, 0.0, 0.2]).unwrap();
        let t = TernaryWeights::from_latent(&w).unwrap();
        assert!((t.beta - 1.0 / 3.0).abs() < 1e-7);
        assert_eq!(ternary::unpack(&t.packed, 2, 3).unwrap(), vec![1, 0, 1, -1, 0, 1]);
        t.validate().unwrap();
    }

    #[test]
    fn ternary_scale_floor_and_bad_input() {
        let z = HostTensor::f32(&[1, 2], vec![0.0, 0.0]).unwrap();
        assert_eq!(TernaryWeights::from_latent(&z).unwrap().beta, WEIGHT_SCALE_FLOOR);
        assert!(TernaryWeights::from_latent(&HostTensor::f32(&[4], vec![0.0; 4]).unwrap()).is_err());
        let mut bad = TernaryWeights::from_latent(&HostTensor::f32(&[1, 3], vec![1.0, -1.0, 0.0]).unwrap()).unwrap();
        bad.packed[0] |= 3 << 30; // a code in the padding
        assert!(bad.validate().is_err());
    }

    #[test]
    fn packed_linears_refuse_bad_tensors_and_match_their_dense_twin() {
        use crate::backend::cpu::CpuBackend;
        use crate::backend::int8;
        let be = CpuBackend::new();
        let read = |t: &<CpuBackend as Backend>::Tensor| be.read_sync(t).unwrap().as_f32("y").unwrap().to_vec();
        // int8, K = 5: words [N, 2], the second padded; codes [[1, -1, 2, 0, 127], [-127, 0, 0, 0, 1]].
        let words = int8::pack(&[1, -1, 2, 0, 127, -127, 0, 0, 0, 1], 2, 5).unwrap();
        let codes = HostTensor::u32(&[2, 2], words.clone()).unwrap();
        let scales = HostTensor::f32(&[2], vec![0.5, 2.0]).unwrap();
        let bias = HostTensor::f32(&[2], vec![1.0, -1.0]).unwrap();
        let l = Linear::int8(&be, &codes, &scales, 5, Some(&bias)).unwrap();
        assert_eq!(l.out_features(), 2);
        let x = be.upload(&HostTensor::f32(&[1, 5], vec![1., 2., 3., 4., 5.]).unwrap()).unwrap();
        assert_eq!(read(&l.forward(&be, &x).unwrap()), vec![321.0, -245.0]);
        let mut padded = words.clone();
        padded[1] |= 0x100; // a byte past K = 5
        let e = Linear::int8(&be, &HostTensor::u32(&[2, 2], padded).unwrap(), &scales, 5, None).unwrap_err();
        assert!(e.to_string().contains("padding"), "{e}");
        assert!(Linear::int8(&be, &codes, &scales, 9, None).is_err(), "K = 9 needs 3 words per row");
        assert!(Linear::int8(&be, &codes, &scales, 5, Some(&scales.clone())).is_ok());
        assert!(Linear::int8(&be, &codes, &scales, 5, Some(&HostTensor::f32(&[3], vec![0.0; 3]).unwrap())).is_err(), "bias [3]");
        assert!(Linear::int8(&be, &codes, &HostTensor::f32(&[2], vec![0.5, -2.0]).unwrap(), 5, None).is_err(), "negative scale");
        // Ternary (weight-only): K = 3 padded to 16 codes; a code in the padding is refused.
        let t = TernaryWeights::from_latent(&HostTensor::f32(&[2, 3], vec![0.5, -0.1, 0.9, -0.3, 0.0, 0.2]).unwrap()).unwrap();
        let l = Linear::ternary(&be, &t, None).unwrap();
        let x3 = be.upload(&HostTensor::f32(&[1, 3], vec![1., 2., 3.]).unwrap()).unwrap();
        let y = read(&l.forward(&be, &x3).unwrap());
        let want = [t.beta * (1.0 + 3.0), t.beta * (-1.0 + 3.0)]; // T = [[1, 0, 1], [-1, 0, 1]]
        assert!(y.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{y:?}");
        let mut bad = t.clone();
        bad.packed[0] |= 1 << 20;
        assert!(Linear::ternary(&be, &bad, None).is_err());
        // Low rank: (x·Aᵀ)·Bᵀ + bias against the dense product of the factors.
        let a = HostTensor::f32(&[1, 3], vec![1., 0., -1.]).unwrap();
        let b = HostTensor::f32(&[2, 1], vec![2., 3.]).unwrap();
        let l = Linear::low_rank(&be, &a, &b, 3, Some(&bias)).unwrap();
        assert_eq!(read(&l.forward(&be, &x3).unwrap()), vec![2.0 * -2.0 + 1.0, 3.0 * -2.0 - 1.0]);
        assert!(Linear::low_rank(&be, &a, &b, 4, None).is_err(), "a must be [r, K]");
        assert!(Linear::low_rank(&be, &a, &HostTensor::f32(&[2, 2], vec![0.0; 4]).unwrap(), 3, None).is_err(), "b must be [N, r]");
        // int4: K = 8 is not one of the group sizes; K = 32 in one group of 32 is.
        let c4 = HostTensor::u32(&[1, 4], vec![0x1111_1111; 4]).unwrap();
        let l = Linear::int4(&be, &c4, &HostTensor::f32(&[1, 1], vec![0.5]).unwrap(), 32, None).unwrap();
        let x32 = be.upload(&HostTensor::f32(&[1, 32], vec![1.0; 32]).unwrap()).unwrap();
        assert_eq!(read(&l.forward(&be, &x32).unwrap()), vec![16.0]);
        assert!(Linear::int4(&be, &c4, &HostTensor::f32(&[1, 2], vec![0.5; 2]).unwrap(), 32, None).is_err(), "group 16");
        assert!(Linear::int4(&be, &HostTensor::u32(&[1, 4], vec![0x8; 4]).unwrap(), &HostTensor::f32(&[1, 1], vec![0.5]).unwrap(), 32, None).is_err(), "nibble 0x8");
    }

    /// Per-token int8 activations by hand: row [1, −0.5, 0.25] has max 1, so s = 127 and q = [127, −64, 32]
    /// (−63.5 rounds away from zero, 31.75 to 32); with W = [[1, 1, 1], [2, 0, −4]] and bias [1, −1]:
    /// y = [95/127 + 1, (254 − 128)/127 − 1]. A zero row stays zero (the scale floor), a second row has its own scale.
    #[test]
    fn int8_activations_by_hand() {
        use crate::backend::cpu::CpuBackend;
        let be = CpuBackend::new();
        let w = HostTensor::f32(&[2, 3], vec![1., 1., 1., 2., 0., -4.]).unwrap();
        let l = Linear::ActInt8 { inner: Box::new(Linear::dense(&be, &w, None).unwrap()), b: Some(be.upload(&HostTensor::f32(&[2], vec![1., -1.]).unwrap()).unwrap()) };
        assert_eq!(l.out_features(), 2);
        let x = be.upload(&HostTensor::f32(&[3, 3], vec![1., -0.5, 0.25, 0., 0., 0., 0.1, 0.2, 0.4]).unwrap()).unwrap();
        let y = be.read_sync(&l.forward(&be, &x).unwrap()).unwrap().as_f32("y").unwrap().to_vec();
        // Row 3: max 0.4, s = 317.5, q = round([31.75, 63.5, 127]) = [32, 64, 127].
        let s3 = 127.0 / 0.4f32;
        let want = [95.0 / 127.0 + 1.0, 126.0 / 127.0 - 1.0, 1.0, -1.0, 223.0 / s3 + 1.0, (64.0 - 508.0) / s3 - 1.0];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{y:?} vs {want:?}");
        }
    }
}
