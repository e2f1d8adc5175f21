//! The CPU backend on candle-core: the reference implementation of every op.
//!
//! Composite ops (softmax, RMSNorm, sigmoid) are written from candle's basic tensor ops on
//! purpose: they are the readable definition the GPU kernels are checked against, and (unlike
//! candle-nn's fused versions) they also record gradients for training.
//!
//! Matmul: natively candle's (multi-threaded); on wasm32 the SIMD128 kernels of [`super::simd`]
//! (candle's wasm matmul runs far below the SIMD128 peak). A tensor used as the right operand of
//! `x · Wᵀ` (a `Linear` weight) keeps its packed panels in a cache shared by its clones, so each
//! weight is packed once, on its first product.

use super::{check, Backend, BackendInfo, Binary, Data, HostTensor, Reduce, TensorMeta, Unary};
use crate::error::{DType, Error, Result};
use super::simd::{self, PackedB};
use super::vmath;
use candle_core::{Device, Tensor};
use std::sync::{Arc, OnceLock};

/// A candle tensor plus its shape (kept as plain `usize`s for the shared checks).
///
/// `packed`: this tensor's `[N, K]` elements packed for `x · thisᵀ` by the matmul kernel, filled
/// on the first such product and shared by clones (which hold the same elements). Every op returns
/// a new `CpuTensor` with an empty cache, and candle tensors are immutable here (nothing in the
/// crate writes into a candle storage), so a pack never outlives the elements it was made from.
#[derive(Clone, Debug)]
pub struct CpuTensor {
    pub t: Tensor,
    shape: Vec<usize>,
    dtype: DType,
    packed: Arc<OnceLock<PackedB>>,
}

impl CpuTensor {
    fn new(t: Tensor) -> Result<Self> {
        let dtype = match t.dtype() {
            candle_core::DType::F32 => DType::F32,
            candle_core::DType::U32 => DType::U32,
            other => return Err(Error::Cpu(format!("unsupported candle dtype {other:?}"))),
        };
        // A view with no elements can keep an offset past its (empty) storage, e.g. narrow of a
        // [0, 3] tensor, and candle panics reading it: give empty results storage of their own.
        let t = if t.elem_count() == 0 { Tensor::zeros(t.dims(), t.dtype(), &Device::Cpu)? } else { t };
        Ok(Self { shape: t.dims().to_vec(), t, dtype, packed: Arc::default() })
    }

    /// The packed panels cached for `x · thisᵀ`, if a product has made them (tests check that
    /// a pack is made once and reused).
    pub fn packed_b(&self) -> Option<&PackedB> {
        self.packed.get()
    }
}

impl TensorMeta for CpuTensor {
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn dtype(&self) -> DType {
        self.dtype
    }
}

#[derive(Clone, Debug)]
pub struct CpuBackend {
    half_weights: bool,
    f16_arithmetic: bool,
    /// Matmul through [`simd`], and exp, sigmoid, SiLU, log-sigmoid, softmax and RMSNorm through
    /// [`vmath`] (SIMD128 on wasm32, their scalar twins elsewhere), instead of candle.
    kernel: bool,
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuBackend {
    /// candle natively, the SIMD128 kernels (matmul, element-wise, row ops) on wasm32.
    pub fn new() -> Self {
        CpuBackend { half_weights: false, f16_arithmetic: false, kernel: simd::SIMD128 }
    }

    /// A CPU backend whose models keep dense weights in f16 ([`Backend::half_weights`]): the
    /// reference for a GPU model loaded the same way.
    pub fn with_half_weights() -> Self {
        CpuBackend { half_weights: true, ..Self::new() }
    }

    /// Half weights as [`CpuBackend::with_half_weights`], multiplied in f16 the way
    /// `matmul_f16_arith.wgsl` does ([`matmul_f16_arith_host`]): the twin of a GPU with `shader-f16`.
    pub fn with_f16_arithmetic() -> Self {
        CpuBackend { half_weights: true, f16_arithmetic: true, ..Self::new() }
    }

    /// The same backend with matmul and the element-wise and row ops on the kernels of [`simd`] and
    /// [`vmath`] (`true`; natively their scalar twins, for tests) or on candle (`false`).
    pub fn with_matmul_kernel(self, kernel: bool) -> Self {
        CpuBackend { kernel, ..self }
    }

    /// The kernel path of [`Backend::matmul`]; shapes already checked.
    fn matmul_kernel(&self, a: &CpuTensor, b: &CpuTensor, trans_b: bool, (batch, m, k, n): (usize, usize, usize, usize), out: &[usize]) -> Result<CpuTensor> {
        let c = simd::with_f32(&a.t, |av| -> Result<Vec<f32>> {
            if trans_b && b.shape.len() == 2 {
                // A weight: pack it on its first product, reuse the panels afterwards.
                let packed = match b.packed.get() {
                    Some(p) => p,
                    None => {
                        let p = simd::with_f32(&b.t, |bv| PackedB::pack(bv, k, n, true))?;
                        b.packed.get_or_init(|| p)
                    }
                };
                Ok(simd::matmul_packed(av, packed))
            } else {
                let d = simd::Dims { batch, m, k, n };
                Ok(simd::with_f32(&b.t, |bv| simd::matmul(av, bv, d, trans_b, b.shape.len() == 3))?)
            }
        })??;
        CpuTensor::new(Tensor::from_vec(c, out, &Device::Cpu)?)
    }

    /// x `[m, k]` · Wᵀ for a packed W `[n, k]`: `decode(row, buf)` writes a row of W as f32 (scales applied), a band
    /// of at most `block` weights at a time (at least 8 rows), and each band runs as one dense product (the SIMD128
    /// kernel on wasm32, candle's gemm natively) — several times faster than dot products over decoded rows, and
    /// never more than a band in f32. The slow twins are [`matmul_i8_host`] and [`matmul_i4_host`].
    fn packed_dense(&self, x: &CpuTensor, k: usize, n: usize, block: usize, mut decode: impl FnMut(usize, &mut [f32]) -> Result<()>) -> Result<CpuTensor> {
        let rows = (block / k.max(1)).max(8).min(n.max(1));
        let mut parts = Vec::with_capacity(n.div_ceil(rows));
        for r0 in (0..n).step_by(rows) {
            let r1 = (r0 + rows).min(n);
            let mut band = vec![0f32; (r1 - r0) * k];
            for (r, buf) in (r0..r1).zip(band.chunks_exact_mut(k.max(1))) {
                decode(r, buf)?;
            }
            let w = CpuTensor::new(Tensor::from_vec(band, (r1 - r0, k), &Device::Cpu)?)?;
            parts.push(self.matmul(x, &w, true)?);
        }
        match parts.len() {
            1 => Ok(parts.pop().expect("one band")),
            _ => CpuTensor::new(Tensor::cat(&parts.iter().map(|p| &p.t).collect::<Vec<_>>(), 1)?), // [m, n]
        }
    }

    /// Synchronous read for native callers (the CPU path never waits on anything).
    pub fn read_sync(&self, t: &CpuTensor) -> Result<HostTensor> {
        let flat = t.t.flatten_all()?;
        let data = match t.dtype {
            DType::F32 => Data::F32(flat.to_vec1::<f32>()?),
            DType::U32 => Data::U32(flat.to_vec1::<u32>()?),
        };
        HostTensor::new(&t.shape, data)
    }
}

fn sigmoid(x: &Tensor) -> candle_core::Result<Tensor> {
    // 1 / (1 + exp(-x)); exp overflow to +inf gives exactly 0, the right limit.
    (x.neg()?.exp()? + 1.0)?.recip()
}

impl Backend for CpuBackend {
    type Tensor = CpuTensor;

    fn info(&self) -> BackendInfo {
        BackendInfo { kind: "cpu".into(), device: format!("candle-core CPU ({})", std::env::consts::ARCH) }
    }

    fn half_weights(&self) -> bool {
        self.half_weights
    }

    fn f16_arithmetic(&self) -> bool {
        self.f16_arithmetic
    }

    fn upload(&self, h: &HostTensor) -> Result<CpuTensor> {
        let t = match &h.data {
            Data::F32(v) => Tensor::from_slice(v, h.shape.as_slice(), &Device::Cpu)?,
            Data::U32(v) => Tensor::from_slice(v, h.shape.as_slice(), &Device::Cpu)?,
        };
        CpuTensor::new(t)
    }

    async fn read(&self, t: &CpuTensor) -> Result<HostTensor> {
        self.read_sync(t)
    }

    fn matmul(&self, a: &CpuTensor, b: &CpuTensor, trans_b: bool) -> Result<CpuTensor> {
        let (dims, out) = check::matmul(a, b, trans_b)?;
        // The kernels pad N to 8-column panels: below 4 columns (a classifier head's [2, H]) most
        // of every tile is padding and candle's matmul was measured faster (README).
        if self.kernel && dims.3 >= 4 {
            return self.matmul_kernel(a, b, trans_b, dims, &out);
        }
        let bt = if trans_b { b.t.t()? } else { b.t.clone() };
        let out = if a.shape.len() == 3 && b.shape.len() == 2 { a.t.broadcast_matmul(&bt)? } else { a.t.matmul(&bt)? };
        CpuTensor::new(out)
    }

    fn unary(&self, op: Unary, x: &CpuTensor) -> Result<CpuTensor> {
        check::f32_nonempty("unary", x)?;
        if self.kernel {
            let k = match op {
                Unary::Exp => Some(vmath::Op::Exp),
                Unary::Sigmoid => Some(vmath::Op::Sigmoid),
                Unary::Silu => Some(vmath::Op::Silu),
                Unary::LogSigmoid => Some(vmath::Op::LogSigmoid),
                _ => None,
            };
            if let Some(k) = k {
                let y = simd::with_f32(&x.t, |v| vmath::unary(k, v, simd::SIMD128))?;
                return CpuTensor::new(Tensor::from_vec(y, x.shape.as_slice(), &Device::Cpu)?);
            }
        }
        let x = &x.t;
        let y = match op {
            Unary::Neg => x.neg()?,
            Unary::Exp => x.exp()?,
            Unary::Log => x.log()?,
            Unary::Sqrt => x.sqrt()?,
            Unary::Abs => x.abs()?,
            Unary::Recip => x.recip()?,
            Unary::Square => x.sqr()?,
            Unary::Tanh => x.tanh()?,
            Unary::Relu => x.relu()?,
            Unary::Sigmoid => sigmoid(x)?,
            Unary::Silu => (x * sigmoid(x)?)?,
            Unary::LogSigmoid => {
                // min(x, 0) - log(1 + exp(-|x|)): never overflows.
                let neg_part = x.minimum(0f32)?;
                (neg_part - (x.abs()?.neg()?.exp()? + 1.0)?.log()?)?
            }
            Unary::Affine { mul, add } => x.affine(mul as f64, add as f64)?,
            // f32::round in candle: half away from zero.
            Unary::Round => x.round()?,
            Unary::Clamp { lo, hi } => x.clamp(lo, hi)?,
        };
        CpuTensor::new(y)
    }

    fn binary(&self, op: Binary, a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
        check::binary(a, b)?;
        let (a, b) = (&a.t, &b.t);
        let y = match op {
            Binary::Add => a.broadcast_add(b)?,
            Binary::Sub => a.broadcast_sub(b)?,
            Binary::Mul => a.broadcast_mul(b)?,
            Binary::Div => a.broadcast_div(b)?,
            Binary::Max => a.broadcast_maximum(b)?,
            Binary::Min => a.broadcast_minimum(b)?,
        };
        CpuTensor::new(y)
    }

    fn softmax(&self, x: &CpuTensor) -> Result<CpuTensor> {
        check::rows("softmax", x)?;
        let last = x.shape.len() - 1;
        if self.kernel {
            let y = simd::with_f32(&x.t, |v| vmath::softmax_rows(v, x.shape[last], simd::SIMD128))?;
            return CpuTensor::new(Tensor::from_vec(y, x.shape.as_slice(), &Device::Cpu)?);
        }
        let m = x.t.max_keepdim(last)?;
        let e = x.t.broadcast_sub(&m)?.exp()?;
        let s = e.sum_keepdim(last)?;
        CpuTensor::new(e.broadcast_div(&s)?)
    }

    fn rms_norm(&self, x: &CpuTensor, w: &CpuTensor, eps: f32) -> Result<CpuTensor> {
        check::rms_norm(x, w, eps)?;
        let last = x.shape.len() - 1;
        if self.kernel {
            let y = simd::with_f32(&x.t, |v| simd::with_f32(&w.t, |wv| vmath::rms_norm_rows(v, wv, eps, simd::SIMD128)))??;
            return CpuTensor::new(Tensor::from_vec(y, x.shape.as_slice(), &Device::Cpu)?);
        }
        let ms = x.t.sqr()?.mean_keepdim(last)?;
        let inv = (ms + eps as f64)?.sqrt()?.recip()?;
        CpuTensor::new(x.t.broadcast_mul(&inv)?.broadcast_mul(&w.t)?)
    }

    fn reduce(&self, op: Reduce, x: &CpuTensor) -> Result<CpuTensor> {
        check::rows("reduce", x)?;
        let last = x.shape.len() - 1;
        let y = match op {
            Reduce::Sum => x.t.sum_keepdim(last)?,
            Reduce::Mean => x.t.mean_keepdim(last)?,
            Reduce::Max => x.t.max_keepdim(last)?,
            Reduce::Min => x.t.min_keepdim(last)?,
            Reduce::ArgMax => x.t.argmax_keepdim(last)?,
        };
        CpuTensor::new(y)
    }

    fn gather(&self, table: &CpuTensor, ids: &[u32]) -> Result<CpuTensor> {
        check::gather(table, ids)?;
        let idx = Tensor::from_slice(ids, ids.len(), &Device::Cpu)?;
        CpuTensor::new(table.t.index_select(&idx, 0)?)
    }

    fn reshape(&self, x: &CpuTensor, shape: &[usize]) -> Result<CpuTensor> {
        check::reshape(x, shape)?;
        CpuTensor::new(x.t.reshape(shape)?)
    }

    fn permute(&self, x: &CpuTensor, perm: &[usize]) -> Result<CpuTensor> {
        check::permute(x, perm)?;
        CpuTensor::new(x.t.permute(perm)?.contiguous()?)
    }

    fn narrow(&self, x: &CpuTensor, dim: usize, start: usize, len: usize) -> Result<CpuTensor> {
        check::narrow(x, dim, start, len)?;
        CpuTensor::new(x.t.narrow(dim, start, len)?.contiguous()?)
    }

    fn concat(&self, xs: &[&CpuTensor], dim: usize) -> Result<CpuTensor> {
        check::concat(xs, dim)?;
        let ts: Vec<&Tensor> = xs.iter().map(|x| &x.t).collect();
        CpuTensor::new(Tensor::cat(&ts, dim)?)
    }

    fn cumsum(&self, x: &CpuTensor) -> Result<CpuTensor> {
        check::rows("cumsum", x)?;
        CpuTensor::new(x.t.cumsum(x.shape.len() - 1)?)
    }

    fn scan(&self, a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
        let (t, d) = check::scan(a, b)?;
        // A plain loop over host rows: one pass instead of ~3 tensor ops per step (which made
        // HGRN-bit the slowest model on the CPU). `a * h + b` rounds exactly as the former
        // candle ops (a multiply, then an add; Rust does not fuse them).
        let av = a.t.flatten_all()?.to_vec1::<f32>()?;
        let mut h = b.t.flatten_all()?.to_vec1::<f32>()?;
        for i in 1..t {
            let (prev, cur) = h.split_at_mut(i * d);
            let prev = &prev[(i - 1) * d..];
            for ((hc, &hp), &ac) in cur[..d].iter_mut().zip(prev).zip(&av[i * d..(i + 1) * d]) {
                *hc += ac * hp;
            }
        }
        CpuTensor::new(Tensor::from_vec(h, (t, d), &Device::Cpu)?)
    }

    fn matmul_f16(&self, x: &CpuTensor, w: &CpuTensor) -> Result<CpuTensor> {
        let (m, k, n) = check::matmul_f16(x, w)?;
        // The slow twin: decode the halves to f32, then the ordinary product.
        let words = w.t.flatten_all()?.to_vec1::<u32>()?;
        if self.f16_arithmetic {
            let xs = x.t.flatten_all()?.to_vec1::<f32>()?;
            let out = matmul_f16_arith_host(&xs, &words, m, k, n)?;
            return CpuTensor::new(Tensor::from_vec(out, (m, n), &Device::Cpu)?);
        }
        let wf = super::half_pairs::unpack(&words, n, k)?;
        let wt = CpuTensor::new(Tensor::from_vec(wf, (n, k), &Device::Cpu)?)?;
        self.matmul(x, &wt, true)
    }

    fn matmul_i8(&self, x: &CpuTensor, codes: &CpuTensor, scales: &CpuTensor) -> Result<CpuTensor> {
        let (_, k, n) = check::matmul_i8(x, codes, scales)?;
        let ss = scales.t.flatten_all()?.to_vec1::<f32>()?;
        with_u32(&codes.t, |ws| {
            let wpr = check_i8(ws, &ss, k, n)?;
            self.packed_dense(x, k, n, DECODE_BLOCK, |r, buf| decode_i8(ws, wpr, r, ss[r], buf))
        })?
    }

    fn matmul_i4(&self, x: &CpuTensor, codes: &CpuTensor, scales: &CpuTensor) -> Result<CpuTensor> {
        let (_, k, n, g) = check::matmul_i4(x, codes, scales)?;
        let ss = scales.t.flatten_all()?.to_vec1::<f32>()?;
        with_u32(&codes.t, |ws| {
            let (wpr, groups) = check_i4(ws, &ss, k, n, g)?;
            self.packed_dense(x, k, n, DECODE_BLOCK, |r, buf| decode_i4(ws, wpr, r, g, Some(&ss[r * groups..(r + 1) * groups]), buf))
        })?
    }

    fn ternary_matmul(&self, x: &CpuTensor, packed: &CpuTensor) -> Result<CpuTensor> {
        let (m, k, n) = check::ternary_matmul(x, packed)?;
        let xs = x.t.flatten_all()?.to_vec1::<f32>()?;
        let ws = packed.t.flatten_all()?.to_vec1::<u32>()?;
        // The same bits as `ternary_matmul_host`, G activation rows at a time.
        let out = super::simd_ternary::ternary_matmul(&xs, &ws, m, k, n, simd::SIMD128)?;
        CpuTensor::new(Tensor::from_vec(out, (m, n), &Device::Cpu)?)
    }
}

/// The twin of `matmul_f16_arith.wgsl`: x `[m, k]` f32, w packed halves `[n, ceil(k/2)]` ->
/// `[m, n]`, each x element rounded to f16 (to nearest, ties to even), each product of halves
/// rounded to f16 (the exact product of two halves fits f32's 24 bits, so one rounding), products
/// summed in f32 in k order. The GPU sums in the same order, one f32 add per product.
pub fn matmul_f16_arith_host(x: &[f32], w: &[u32], m: usize, k: usize, n: usize) -> Result<Vec<f32>> {
    use half::f16;
    if Some(x.len()) != m.checked_mul(k) {
        return Err(Error::Invalid(format!("matmul_f16_arith_host: {} values of x for [{m}, {k}]", x.len())));
    }
    let wf = super::half_pairs::unpack(w, n, k)?;
    let xh: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
    let wh: Vec<f16> = wf.iter().map(|&v| f16::from_f32(v)).collect();
    let mut out = Vec::with_capacity(m * n);
    for r in 0..m {
        let xr = &xh[r * k..(r + 1) * k];
        for c in 0..n {
            let wr = &wh[c * k..(c + 1) * k];
            let sum: f32 = xr.iter().zip(wr).fold(0.0, |acc, (&a, &b)| acc + f16::from_f32(a.to_f32() * b.to_f32()).to_f32());
            out.push(sum);
        }
    }
    Ok(out)
}

/// `x [m, k] · Tᵀ` with `T [n, k]` packed (see [`super::ternary`]): additions and subtractions only,
/// straight from the packed words (no unpacked copy of the weights).
/// Sums run over `j = 0..k` in order, skipping zero weights: `ternary_matmul.wgsl` adds in the same
/// order, so on valid weights both give the same bits. Invalid words (code 3, non-zero padding)
/// are refused here; the GPU kernel instead relies on [`super::ternary::validate`] at load time.
pub fn ternary_matmul_host(x: &[f32], packed: &[u32], m: usize, k: usize, n: usize) -> Result<Vec<f32>> {
    let wpr = ternary_check(x, packed, m, k, n)?;
    // Each output is a run of additions and subtractions over one activation row (negating =
    // flipping the sign bit, no multiply), in the same order as the GPU kernel, so the two give the
    // same bits.
    let mut out = vec![0f32; m * n];
    let mut entries = TernaryRows::default();
    for r0 in (0..n).step_by(TernaryRows::ROWS) {
        let r1 = (r0 + TernaryRows::ROWS).min(n);
        entries.decode(packed, wpr, r0, r1);
        for (xi, yi) in x.chunks_exact(k).zip(out.chunks_exact_mut(n)) {
            for (r, y) in yi[r0..r1].iter_mut().enumerate() {
                let mut acc = 0f32;
                for &e in entries.row(r) {
                    acc += f32::from_bits(xi[(e & !TernaryRows::NEG) as usize].to_bits() ^ (e & TernaryRows::NEG));
                }
                *y = acc;
            }
        }
    }
    Ok(out)
}

/// The shape and validity checks of the CPU ternary products (once, outside the hot loops: no code
/// 3 anywhere, no non-zero padding); returns the packed words per row.
pub(crate) fn ternary_check(x: &[f32], packed: &[u32], m: usize, k: usize, n: usize) -> Result<usize> {
    let wpr = super::ternary::words_per_row(k);
    if Some(x.len()) != m.checked_mul(k) || Some(packed.len()) != n.checked_mul(wpr) {
        return Err(Error::Invalid(format!(
            "ternary_matmul: {} x values and {} packed words do not fit m = {m}, k = {k}, n = {n}",
            x.len(),
            packed.len()
        )));
    }
    super::ternary::validate(packed, n, k)?;
    Ok(wpr)
}

/// Up to [`TernaryRows::ROWS`] weight rows decoded into their non-zero entries in increasing j:
/// the index, with the sign in the top bit ([`TernaryRows::NEG`]). Decoded a band at a time, so
/// the entries stay small (and in cache) whatever the matrix size.
#[derive(Default)]
pub(crate) struct TernaryRows {
    entries: Vec<u32>,
    starts: Vec<usize>,
}

impl TernaryRows {
    pub(crate) const NEG: u32 = 1 << 31;
    pub(crate) const ROWS: usize = 64;

    /// Decode rows `r0..r1` of validated words ([`ternary_check`]).
    pub(crate) fn decode(&mut self, packed: &[u32], wpr: usize, r0: usize, r1: usize) {
        self.entries.clear();
        self.starts.clear();
        for r in r0..r1 {
            self.starts.push(self.entries.len());
            for (w, &word) in packed[r * wpr..(r + 1) * wpr].iter().enumerate() {
                let base = (w * super::ternary::PER_WORD) as u32;
                let mut bits = word;
                while bits != 0 {
                    let shift = bits.trailing_zeros() & !1;
                    let sign = if (bits >> shift) & 3 == 1 { 0 } else { Self::NEG };
                    self.entries.push((base + shift / 2) | sign);
                    bits &= !(3u32 << shift);
                }
            }
        }
        self.starts.push(self.entries.len());
    }

    /// The entries of the `r`-th decoded row (`r` counted from `r0`).
    pub(crate) fn row(&self, r: usize) -> &[u32] {
        &self.entries[self.starts[r]..self.starts[r + 1]]
    }
}

/// Run `f` on the elements of a u32 CPU tensor (packed weights) without copying them.
fn with_u32<R>(t: &Tensor, f: impl FnOnce(&[u32]) -> R) -> Result<R> {
    let t = if t.is_contiguous() { t.clone() } else { t.contiguous()? };
    let (storage, layout) = t.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (candle_core::Storage::Cpu(candle_core::CpuStorage::U32(v)), Some((start, end))) => Ok(f(&v[start..end])),
        _ => Err(Error::Cpu("packed weights: expected a contiguous u32 CPU tensor".into())),
    }
}

/// Rows of W decoded at a time by the packed products' slow twins: their f32 codes (`ROWS · K` floats) stay in
/// cache while every row of x runs over them.
const PACKED_ROWS: usize = 8;

/// Weights decoded to f32 per band by the int8/int4 products (4 MiB): the whole matrix for the bundled models, a
/// band of rows of a large one.
const DECODE_BLOCK: usize = 1 << 20;

/// `Σ a_i b_i` in f32 with 8 independent partial sums (vectorised by the compiler: SIMD128 on
/// wasm32), then the partials and the tail in order.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ta.iter().zip(tb) {
        s += x * y;
    }
    s
}

/// The packed product driver: decode `PACKED_ROWS` weight rows at a time into f32 codes with
/// `decode(row, buffer)`, then `combine(x_row, codes_row, row)` gives each output.
fn packed_product(
    x: &[f32],
    m: usize,
    k: usize,
    n: usize,
    mut decode: impl FnMut(usize, &mut [f32]) -> Result<()>,
    combine: impl Fn(&[f32], &[f32], usize) -> f32,
) -> Result<Vec<f32>> {
    if Some(x.len()) != m.checked_mul(k) {
        return Err(Error::Invalid(format!("packed matmul: {} x values for [{m}, {k}]", x.len())));
    }
    let mut out = vec![0f32; m * n];
    let mut rows = vec![0f32; PACKED_ROWS * k];
    for r0 in (0..n).step_by(PACKED_ROWS) {
        let r1 = (r0 + PACKED_ROWS).min(n);
        for r in r0..r1 {
            decode(r, &mut rows[(r - r0) * k..(r - r0 + 1) * k])?;
        }
        for (xi, yi) in x.chunks_exact(k).zip(out.chunks_exact_mut(n)) {
            for (r, y) in (r0..r1).zip(&mut yi[r0..r1]) {
                *y = combine(xi, &rows[(r - r0) * k..(r - r0 + 1) * k], r);
            }
        }
    }
    Ok(out)
}

/// Checks the int8 product's operands: words per row.
fn check_i8(words: &[u32], scales: &[f32], k: usize, n: usize) -> Result<usize> {
    let wpr = super::int8::words_per_row(k);
    if Some(words.len()) != n.checked_mul(wpr) || scales.len() != n {
        return Err(Error::Invalid(format!("matmul_i8: {} words and {} scales do not fit k = {k}, n = {n}", words.len(), scales.len())));
    }
    Ok(wpr)
}

/// Row `r` of int8 codes (`wpr` words per row) into `buf` (`k` floats) as `code · scale`. Refuses byte `0x80` and
/// non-zero padding.
fn decode_i8(words: &[u32], wpr: usize, r: usize, scale: f32, buf: &mut [f32]) -> Result<()> {
    for (c, &w) in words[r * wpr..(r + 1) * wpr].iter().enumerate() {
        for b in 0..super::int8::PER_WORD {
            let code = (w >> (8 * b)) as u8 as i8;
            match buf.get_mut(c * super::int8::PER_WORD + b) {
                Some(_) if code == i8::MIN => return Err(Error::Invalid(format!("matmul_i8: code -128 in row {r}"))),
                Some(v) => *v = code as f32 * scale,
                None if code != 0 => return Err(Error::Invalid(format!("matmul_i8: non-zero padding in row {r}"))),
                None => {}
            }
        }
    }
    Ok(())
}

/// Checks the int4 product's operands: (words per row, groups per row).
fn check_i4(words: &[u32], scales: &[f32], k: usize, n: usize, g: usize) -> Result<(usize, usize)> {
    if g == 0 || !g.is_multiple_of(I4_PER_WORD) || !k.is_multiple_of(g) || Some(words.len()) != n.checked_mul(k / I4_PER_WORD) || Some(scales.len()) != n.checked_mul(k / g) {
        return Err(Error::Invalid(format!("matmul_i4: {} words and {} scales do not fit k = {k}, n = {n}, group {g}", words.len(), scales.len())));
    }
    Ok((k / I4_PER_WORD, k / g))
}

const I4_PER_WORD: usize = 8;

/// Row `r` of int4 codes into `buf` as `code · s_group` (`scales`: the row's group scales, `None`: the bare codes).
/// Refuses nibble `0x8`.
fn decode_i4(words: &[u32], wpr: usize, r: usize, g: usize, scales: Option<&[f32]>, buf: &mut [f32]) -> Result<()> {
    for (c, &w) in words[r * wpr..(r + 1) * wpr].iter().enumerate() {
        let s = scales.map_or(1.0, |s| s[c * I4_PER_WORD / g]);
        for nib in 0..I4_PER_WORD {
            let bits = (w >> (4 * nib)) & 0xF;
            if bits == 0x8 {
                return Err(Error::Invalid(format!("matmul_i4: code -8 in row {r}")));
            }
            // Sign-extend the nibble.
            buf[c * I4_PER_WORD + nib] = ((((bits as u8) << 4) as i8) >> 4) as f32 * s;
        }
    }
    Ok(())
}

/// x `[m, k]` · Wᵀ with W int8 per output channel: codes `[n, ⌈k/4⌉]` packed by
/// [`super::int8`], scales `[n]`; `y = s_n · Σ_k x_k c_k` in f32 (the codes are decoded a few rows
/// at a time, never the whole matrix). Refuses byte `0x80` and non-zero padding as it decodes. The slow twin
/// of the backend's op (which decodes bands of rows with the scales applied and runs the dense product).
pub fn matmul_i8_host(x: &[f32], words: &[u32], scales: &[f32], m: usize, k: usize, n: usize) -> Result<Vec<f32>> {
    let wpr = check_i8(words, scales, k, n)?;
    packed_product(x, m, k, n, |r, buf| decode_i8(words, wpr, r, 1.0, buf), |xi, ci, r| scales[r] * dot(xi, ci))
}

/// x `[m, k]` · Wᵀ with W int4 per (output channel, group of `g` inputs): codes `[n, k/8]` packed
/// by [`crate::compress::quant::int4`], scales `[n, k/g]`; `y = Σ_g s_g · Σ_{k∈g} x_k c_k` in f32.
/// Refuses nibble `0x8` as it decodes. The slow twin of the backend's op, as [`matmul_i8_host`].
pub fn matmul_i4_host(x: &[f32], words: &[u32], scales: &[f32], m: usize, k: usize, n: usize, g: usize) -> Result<Vec<f32>> {
    let (wpr, groups) = check_i4(words, scales, k, n, g)?;
    packed_product(x, m, k, n, |r, buf| decode_i4(words, wpr, r, g, None, buf), |xi, ci, r| {
        let s = &scales[r * groups..(r + 1) * groups];
        xi.chunks_exact(g).zip(ci.chunks_exact(g)).zip(s).map(|((xg, cg), &sg)| sg * dot(xg, cg)).fold(0.0, |a, v| a + v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// The banded int8/int4 products against their slow twins at awkward sizes, one band and several (a
    /// small block forces bands of 8 rows plus a remainder), on candle and on the kernels' scalar twin.
    #[test]
    fn packed_products_match_their_slow_twins() {
        use crate::compress::quant;
        let mut rng = SplitMix64::new(7);
        for kernel in [false, true] {
            let be = CpuBackend::new().with_matmul_kernel(kernel);
            for (m, k, n, g) in [(1, 5, 3, 0), (3, 33, 17, 0), (17, 130, 70, 0), (2, 32, 9, 32), (5, 96, 21, 32), (4, 256, 19, 128)] {
                let w = rng.vec_f32(n * k, -1.0, 1.0);
                let xv = rng.vec_f32(m * k, -1.0, 1.0);
                let x = CpuTensor::new(Tensor::from_vec(xv.clone(), (m, k), &Device::Cpu).unwrap()).unwrap();
                let (slow, fast): (Vec<f32>, Vec<Vec<f32>>) = if g == 0 {
                    let q = quant::quantize_int8(&w, n, k).unwrap();
                    let words = super::super::int8::pack(&q.codes, n, k).unwrap();
                    let wpr = super::super::int8::words_per_row(k);
                    let slow = matmul_i8_host(&xv, &words, &q.scales, m, k, n).unwrap();
                    let fast = [1 << 20, 8 * k].map(|block| be.packed_dense(&x, k, n, block, |r, buf| decode_i8(&words, wpr, r, q.scales[r], buf)).unwrap());
                    (slow, fast.iter().map(|t| t.t.flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect())
                } else {
                    let q = quant::quantize_int4(&w, n, k, g).unwrap();
                    let (wpr, groups) = check_i4(&q.packed, &q.scales, k, n, g).unwrap();
                    let slow = matmul_i4_host(&xv, &q.packed, &q.scales, m, k, n, g).unwrap();
                    let fast = [1 << 20, 8 * k].map(|block| {
                        be.packed_dense(&x, k, n, block, |r, buf| decode_i4(&q.packed, wpr, r, g, Some(&q.scales[r * groups..(r + 1) * groups]), buf)).unwrap()
                    });
                    (slow, fast.iter().map(|t| t.t.flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect())
                };
                for f in fast {
                    assert_eq!(f.len(), m * n);
                    for (i, (a, b)) in f.iter().zip(&slow).enumerate() {
                        let scale: f32 = (0..k).map(|j| (xv[(i / n) * k + j] * w[(i % n) * k + j]).abs()).sum::<f32>() + 1.0;
                        assert!((a - b).abs() <= 1e-5 * scale, "{m}x{k}x{n} g{g} kernel {kernel} [{i}]: {a} vs {b}");
                    }
                }
            }
        }
    }

    /// A bad code is refused by the banded product as by its twin.
    #[test]
    fn the_banded_products_refuse_bad_codes() {
        let be = CpuBackend::new();
        let x = CpuTensor::new(Tensor::from_vec(vec![1f32; 8], (1, 8), &Device::Cpu).unwrap()).unwrap();
        let codes = CpuTensor::new(Tensor::from_vec(vec![0x8000_0000u32, 0], (1, 2), &Device::Cpu).unwrap()).unwrap();
        let scales = CpuTensor::new(Tensor::from_vec(vec![1f32], (1,), &Device::Cpu).unwrap()).unwrap();
        assert!(be.matmul_i8(&x, &codes, &scales).unwrap_err().to_string().contains("code -128"));
        let codes4 = CpuTensor::new(Tensor::from_vec(vec![0x0000_0008u32], (1, 1), &Device::Cpu).unwrap()).unwrap();
        let scales4 = CpuTensor::new(Tensor::from_vec(vec![1f32], (1, 1), &Device::Cpu).unwrap()).unwrap();
        assert!(be.matmul_i4(&x, &codes4, &scales4).unwrap_err().to_string().contains("code -8"));
    }
}
