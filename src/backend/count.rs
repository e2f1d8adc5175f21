//! A backend that computes nothing and counts arithmetic: every op checks its shapes exactly as
//! the real backends do, returns a tensor that is only a shape, and adds the operations it would
//! have done to a tally. Running a model's forward pass on it gives the number of
//! multiplications and additions of that pass at any length in microseconds — the efficiency
//! columns of the results, where the MatMul-free claim becomes visible (HGRN-bit's BitLinear
//! layers do additions and subtractions only; its only multiplications inside matrix products
//! are the classification head's).
//!
//! Counting rules (one element-wise op on n outputs counts n):
//! - `mul`: multiplications and divisions; `add`: additions, subtractions and negations;
//!   `other`: everything else that computes (exp, log, sqrt, tanh, sigmoid, comparisons for
//!   max/min/abs/relu/clamp/round). Data movement (reshape, permute, narrow, concat, gather,
//!   last-token pooling) counts nothing.
//! - A dense product `[M, K]·[K, N]` is M·N·K multiply-accumulates: M·N·K `mul` and M·N·K `add`
//!   (accumulating from zero); those multiplications are also tallied in `matmul_mul`.
//! - The int8 / int4 products are dense products over the codes: M·N·K multiply-accumulates (in
//!   `matmul_mul` too), plus one scale multiplication per output (int8) or per output and group
//!   (int4, with the add that joins the groups).
//! - The ternary product adds or subtracts each non-zero weight: M·nnz `add`, no multiplication
//!   (the counter keeps packed `u32` weights to count their non-zero codes).
//! - Causal attention counts the visible (query, key) pairs only, as the fused kernel computes
//!   them; the other fused ops count their composition in primitive ops ([`super::composite`]),
//!   which is what the CPU path runs.

use super::{check, ternary, Backend, BackendInfo, Binary, Data, HostTensor, Reduce, TensorMeta, Unary};
use crate::error::{DType, Result};
use std::cell::Cell;
use std::sync::Arc;

/// Operations of one or more forward passes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OpCounts {
    pub mul: u64,
    pub add: u64,
    pub other: u64,
    /// The multiplications inside dense matrix products (a subset of `mul`).
    pub matmul_mul: u64,
}

impl std::ops::AddAssign for OpCounts {
    fn add_assign(&mut self, o: OpCounts) {
        self.mul += o.mul;
        self.add += o.add;
        self.other += o.other;
        self.matmul_mul += o.matmul_mul;
    }
}

/// A tensor of the counting backend: its shape and dtype, and the words of a `u32` tensor (the
/// packed ternary weights, to count non-zero codes).
#[derive(Clone, Debug)]
pub struct ShapeTensor {
    shape: Vec<usize>,
    dtype: DType,
    words: Option<Arc<Vec<u32>>>,
}

impl ShapeTensor {
    fn f32(shape: Vec<usize>) -> Self {
        Self { shape, dtype: DType::F32, words: None }
    }
}

impl TensorMeta for ShapeTensor {
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn dtype(&self) -> DType {
        self.dtype
    }
}

/// The counting backend. Single-threaded (`Cell` tallies), like a forward pass.
#[derive(Debug, Default)]
pub struct CountBackend {
    counts: Cell<OpCounts>,
}

impl CountBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// The tally so far.
    pub fn counts(&self) -> OpCounts {
        self.counts.get()
    }

    /// Returns the tally and starts a new one.
    pub fn take(&self) -> OpCounts {
        self.counts.replace(OpCounts::default())
    }

    fn tally(&self, mul: u64, add: u64, other: u64, matmul_mul: u64) {
        let mut c = self.counts.get();
        c += OpCounts { mul, add, other, matmul_mul };
        self.counts.set(c);
    }
}

fn n(x: usize) -> u64 {
    x as u64
}

impl Backend for CountBackend {
    type Tensor = ShapeTensor;

    fn info(&self) -> BackendInfo {
        BackendInfo { kind: "count".into(), device: "operation counter (no arithmetic)".into() }
    }

    fn upload(&self, t: &HostTensor) -> Result<ShapeTensor> {
        let words = match &t.data {
            Data::U32(w) => Some(Arc::new(w.clone())),
            Data::F32(_) => None,
        };
        Ok(ShapeTensor { shape: t.shape.clone(), dtype: t.dtype(), words })
    }

    async fn read(&self, t: &ShapeTensor) -> Result<HostTensor> {
        match t.dtype {
            DType::F32 => HostTensor::f32(&t.shape, vec![0.0; t.numel()]),
            DType::U32 => HostTensor::u32(&t.shape, vec![0; t.numel()]),
        }
    }

    fn matmul(&self, a: &ShapeTensor, b: &ShapeTensor, trans_b: bool) -> Result<ShapeTensor> {
        let ((batch, m, k, nn), out) = check::matmul(a, b, trans_b)?;
        let macs = n(batch) * n(m) * n(nn) * n(k);
        self.tally(macs, macs, 0, macs);
        Ok(ShapeTensor::f32(out))
    }

    fn unary(&self, op: Unary, x: &ShapeTensor) -> Result<ShapeTensor> {
        check::f32_nonempty("unary", x)?;
        let e = n(x.numel());
        match op {
            Unary::Neg => self.tally(0, e, 0, 0),
            Unary::Recip | Unary::Square => self.tally(e, 0, 0, 0),
            Unary::Silu => self.tally(e, 0, e, 0),
            Unary::Affine { mul, add } => self.tally(if mul == 1.0 { 0 } else { e }, if add == 0.0 { 0 } else { e }, 0, 0),
            Unary::Exp
            | Unary::Log
            | Unary::Sqrt
            | Unary::Abs
            | Unary::Tanh
            | Unary::Relu
            | Unary::Sigmoid
            | Unary::LogSigmoid
            | Unary::Round
            | Unary::Clamp { .. } => self.tally(0, 0, e, 0),
        }
        Ok(ShapeTensor::f32(x.shape.clone()))
    }

    fn binary(&self, op: Binary, a: &ShapeTensor, b: &ShapeTensor) -> Result<ShapeTensor> {
        let out = check::binary(a, b)?;
        let e = n(out.iter().product());
        match op {
            Binary::Add | Binary::Sub => self.tally(0, e, 0, 0),
            Binary::Mul | Binary::Div => self.tally(e, 0, 0, 0),
            Binary::Max | Binary::Min => self.tally(0, 0, e, 0),
        }
        Ok(ShapeTensor::f32(out))
    }

    fn softmax(&self, x: &ShapeTensor) -> Result<ShapeTensor> {
        let (rows, d) = check::rows("softmax", x)?;
        let (r, d) = (n(rows), n(d));
        // max (d − 1 comparisons), subtract it, exp, sum (d − 1 additions), divide.
        self.tally(r * d, r * d + r * (d - 1), r * (d - 1) + r * d, 0);
        Ok(ShapeTensor::f32(x.shape.clone()))
    }

    fn rms_norm(&self, x: &ShapeTensor, w: &ShapeTensor, eps: f32) -> Result<ShapeTensor> {
        let (rows, d) = check::rms_norm(x, w, eps)?;
        let (r, d) = (n(rows), n(d));
        // squares, their sum, mean and + eps, 1/sqrt, then x·inv·w.
        self.tally(r * d + r + 2 * r * d, r * (d - 1) + r, r, 0);
        Ok(ShapeTensor::f32(x.shape.clone()))
    }

    fn reduce(&self, op: Reduce, x: &ShapeTensor) -> Result<ShapeTensor> {
        let (rows, d) = check::rows("reduce", x)?;
        let (r, d) = (n(rows), n(d));
        let dtype = match op {
            Reduce::Sum => {
                self.tally(0, r * (d - 1), 0, 0);
                DType::F32
            }
            Reduce::Mean => {
                self.tally(r, r * (d - 1), 0, 0);
                DType::F32
            }
            Reduce::Max | Reduce::Min => {
                self.tally(0, 0, r * (d - 1), 0);
                DType::F32
            }
            Reduce::ArgMax => {
                self.tally(0, 0, r * (d - 1), 0);
                DType::U32
            }
        };
        Ok(ShapeTensor { shape: check::reduce_shape(x), dtype, words: None })
    }

    fn gather(&self, table: &ShapeTensor, ids: &[u32]) -> Result<ShapeTensor> {
        let (_n, d) = check::gather(table, ids)?;
        Ok(ShapeTensor::f32(vec![ids.len(), d]))
    }

    fn reshape(&self, x: &ShapeTensor, shape: &[usize]) -> Result<ShapeTensor> {
        check::reshape(x, shape)?;
        Ok(ShapeTensor { shape: shape.to_vec(), dtype: x.dtype, words: x.words.clone() })
    }

    fn permute(&self, x: &ShapeTensor, perm: &[usize]) -> Result<ShapeTensor> {
        Ok(ShapeTensor { shape: check::permute(x, perm)?, dtype: x.dtype, words: None })
    }

    fn narrow(&self, x: &ShapeTensor, dim: usize, start: usize, len: usize) -> Result<ShapeTensor> {
        Ok(ShapeTensor { shape: check::narrow(x, dim, start, len)?, dtype: x.dtype, words: None })
    }

    fn concat(&self, xs: &[&ShapeTensor], dim: usize) -> Result<ShapeTensor> {
        let shape = check::concat(xs, dim)?;
        Ok(ShapeTensor { shape, dtype: xs[0].dtype, words: None })
    }

    fn cumsum(&self, x: &ShapeTensor) -> Result<ShapeTensor> {
        let (rows, d) = check::rows("cumsum", x)?;
        self.tally(0, n(rows) * n(d - 1), 0, 0);
        Ok(ShapeTensor::f32(x.shape.clone()))
    }

    fn scan(&self, a: &ShapeTensor, b: &ShapeTensor) -> Result<ShapeTensor> {
        let (t, d) = check::scan(a, b)?;
        self.tally(n(t) * n(d), n(t) * n(d), 0, 0);
        Ok(ShapeTensor::f32(a.shape.clone()))
    }

    fn ternary_matmul(&self, x: &ShapeTensor, packed: &ShapeTensor) -> Result<ShapeTensor> {
        let (m, k, nn) = check::ternary_matmul(x, packed)?;
        // One addition or subtraction per non-zero weight and row of x.
        let nnz = match &packed.words {
            Some(w) => w.iter().map(|&word| (0..ternary::PER_WORD).filter(|j| (word >> (2 * j)) & 3 != 0).count() as u64).sum::<u64>(),
            None => n(nn) * n(k),
        };
        self.tally(0, n(m) * nnz, 0, 0);
        Ok(ShapeTensor::f32(vec![m, nn]))
    }

    fn matmul_f16(&self, x: &ShapeTensor, w: &ShapeTensor) -> Result<ShapeTensor> {
        let (m, k, nn) = check::matmul_f16(x, w)?;
        let macs = n(m) * n(nn) * n(k);
        self.tally(macs, macs, 0, macs);
        Ok(ShapeTensor::f32(vec![m, nn]))
    }

    fn matmul_i8(&self, x: &ShapeTensor, codes: &ShapeTensor, scales: &ShapeTensor) -> Result<ShapeTensor> {
        let (m, k, nn) = check::matmul_i8(x, codes, scales)?;
        // A multiply-accumulate per (row, output, input), then one scale per output.
        let macs = n(m) * n(nn) * n(k);
        self.tally(macs + n(m) * n(nn), macs, 0, macs);
        Ok(ShapeTensor::f32(vec![m, nn]))
    }

    fn matmul_i4(&self, x: &ShapeTensor, codes: &ShapeTensor, scales: &ShapeTensor) -> Result<ShapeTensor> {
        let (m, k, nn, g) = check::matmul_i4(x, codes, scales)?;
        // A multiply-accumulate per (row, output, input), then per group a scale and an add.
        let macs = n(m) * n(nn) * n(k);
        let groups = n(m) * n(nn) * n(k / g);
        self.tally(macs + groups, macs + groups, 0, macs);
        Ok(ShapeTensor::f32(vec![m, nn]))
    }

    fn attention(&self, q: &ShapeTensor, k: &ShapeTensor, v: &ShapeTensor, _scale: f32, window: Option<usize>) -> Result<ShapeTensor> {
        let (nh, _kvh, t, hd, dv) = check::attention(q, k, v, window)?;
        // Query i sees keys max(0, i − w + 1)..=i: pairs = Σ_i min(i + 1, w).
        let w = window.unwrap_or(t).max(1);
        let pairs: u64 = (0..t).map(|i| n((i + 1).min(w))).sum::<u64>() * n(nh);
        let rows = n(nh) * n(t);
        let (hd, dv) = (n(hd), n(dv));
        // scores q·k (hd MACs) and scale; online softmax: max, subtract, exp, sum, divide once per
        // output element; weighted sum of values (dv MACs per pair).
        let mul = pairs * hd + pairs + pairs * dv + rows * dv;
        let add = pairs * hd + pairs + pairs + pairs * dv;
        let other = pairs + pairs;
        self.tally(mul, add, other, pairs * (hd + dv));
        Ok(ShapeTensor::f32(vec![q.shape[0], q.shape[1], v.shape[2]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(shape: &[usize]) -> ShapeTensor {
        ShapeTensor::f32(shape.to_vec())
    }

    #[test]
    fn hand_counted_ops() {
        let be = CountBackend::new();
        // [2,3]·[3,4]: 24 MACs.
        be.matmul(&f(&[2, 3]), &f(&[3, 4]), false).unwrap();
        assert_eq!(be.take(), OpCounts { mul: 24, add: 24, other: 0, matmul_mul: 24 });
        // Batched [5,2,3]·[3,4]ᵀ-style: 5·2·4·3 = 120.
        be.matmul(&f(&[5, 2, 3]), &f(&[4, 3]), true).unwrap();
        assert_eq!(be.take().matmul_mul, 120);
        // Broadcast add of [2,3] + [3]: 6 additions.
        be.binary(Binary::Add, &f(&[2, 3]), &f(&[3])).unwrap();
        assert_eq!(be.take(), OpCounts { mul: 0, add: 6, other: 0, matmul_mul: 0 });
        // Softmax over [1, 4]: 4 divisions, 4 subtractions + 3 additions, 3 comparisons + 4 exps.
        be.softmax(&f(&[1, 4])).unwrap();
        assert_eq!(be.take(), OpCounts { mul: 4, add: 7, other: 7, matmul_mul: 0 });
        // Ternary [2, 16]·Tᵀ with T = [[1, 0, −1, 0…], [0…]]: 2 non-zeros → 2 rows × 2 = 4 add/sub.
        let packed = ternary::pack(&[&[1i8, 0, -1][..], &[0; 13][..], &[0; 16][..]].concat(), 2, 16).unwrap();
        let p = be.upload(&HostTensor::u32(&[2, 1], packed).unwrap()).unwrap();
        let y = be.ternary_matmul(&f(&[2, 16]), &p).unwrap();
        assert_eq!(y.shape(), &[2, 2]);
        assert_eq!(be.take(), OpCounts { mul: 0, add: 4, other: 0, matmul_mul: 0 });
        // Causal attention, 1 head, T = 3, hd = dv = 2: 6 visible pairs.
        be.attention(&f(&[1, 3, 2]), &f(&[1, 3, 2]), &f(&[1, 3, 2]), 1.0, None).unwrap();
        let c = be.take();
        assert_eq!(c.matmul_mul, 6 * 4);
        assert_eq!(c.mul, 6 * 2 + 6 + 6 * 2 + 3 * 2);
        // A window of 1: 3 pairs.
        be.attention(&f(&[1, 3, 2]), &f(&[1, 3, 2]), &f(&[1, 3, 2]), 1.0, Some(1)).unwrap();
        assert_eq!(be.take().matmul_mul, 3 * 4);
    }

    #[test]
    fn shape_errors_are_the_real_backends_errors() {
        let be = CountBackend::new();
        assert!(be.matmul(&f(&[2, 3]), &f(&[4, 5]), false).is_err());
        assert!(be.gather(&f(&[4, 2]), &[4]).is_err());
        assert_eq!(be.gather(&f(&[4, 2]), &[3, 0, 3]).unwrap().shape(), &[3, 2]);
        assert_eq!(be.counts(), OpCounts::default());
    }
}
