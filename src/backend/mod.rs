//! The backend core: a small op set behind one trait, with two implementations.
//!
//! - [`cpu::CpuBackend`] runs on candle-core. It is the *reference*: every GPU kernel is tested
//!   against it (its "slow twin") with the tolerances in [`tolerance`].
//! - `gpu::GpuBackend` runs WGSL kernels from `shaders/` through wgpu (WebGPU in the browser,
//!   Vulkan natively). Ops are recorded into one command encoder and submitted when a result is
//!   read back, so a whole forward pass is one submission.
//!
//! Shapes use one alphabet throughout the crate: batch `B`, tokens `T`, model width `D`,
//! rows `M`, inner `K`, columns `N`.
//!
//! Every op validates shapes and dtypes *before* any work with the shared checks in [`check`], so
//! both backends return the same typed [`Error`] for the same bad input.

pub mod conformance;
pub mod cpu;
pub mod gpu;

use crate::error::{DType, Error, Result};
use std::future::Future;

/// Named tolerances for GPU-vs-CPU parity. f32 kernels differ from candle only by summation order
/// and by the transcendental functions of the shader compiler, so the bounds are small multiples of
/// f32 epsilon scaled by the reduction length where one exists.
pub mod tolerance {
    /// Element-wise ops (exp, log, sigmoid, ...): absolute + relative bound.
    pub const ELEMENTWISE_ABS: f32 = 1e-5;
    pub const ELEMENTWISE_REL: f32 = 1e-4;
    /// Reductions, softmax and RMSNorm over a row: relative to the row's magnitude.
    pub const ROW_REL: f32 = 1e-4;
    /// Matmul: |gpu - cpu| <= MATMUL_REL * sum_k |a_ik * b_kj| (+ a tiny absolute floor); the bound
    /// follows the standard floating-point error analysis of a dot product of length K.
    pub const MATMUL_REL: f32 = 1e-5;
    pub const MATMUL_ABS: f32 = 1e-6;
    /// End-to-end demo pipeline (gather -> RMSNorm -> matmul -> SiLU -> softmax): max |diff|.
    pub const PIPELINE_ABS: f32 = 1e-4;
}

/// Host-side data of a tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    U32(Vec<u32>),
}

/// A tensor in host memory: the currency between backends, the wasm boundary and tests.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Data,
}

impl HostTensor {
    pub fn f32(shape: &[usize], data: Vec<f32>) -> Result<Self> {
        Self::new(shape, Data::F32(data))
    }
    pub fn u32(shape: &[usize], data: Vec<u32>) -> Result<Self> {
        Self::new(shape, Data::U32(data))
    }
    pub fn new(shape: &[usize], data: Data) -> Result<Self> {
        let expected: usize = shape.iter().product();
        let len = match &data {
            Data::F32(v) => v.len(),
            Data::U32(v) => v.len(),
        };
        if len != expected {
            return Err(Error::DataLen { len, shape: shape.to_vec(), expected });
        }
        Ok(Self { shape: shape.to_vec(), data })
    }
    pub fn dtype(&self) -> DType {
        match self.data {
            Data::F32(_) => DType::F32,
            Data::U32(_) => DType::U32,
        }
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// The f32 values, or a dtype error naming `op`.
    pub fn as_f32(&self, op: &'static str) -> Result<&[f32]> {
        match &self.data {
            Data::F32(v) => Ok(v),
            Data::U32(_) => Err(Error::DType { op, expected: DType::F32, got: DType::U32 }),
        }
    }
    pub fn as_u32(&self, op: &'static str) -> Result<&[u32]> {
        match &self.data {
            Data::U32(v) => Ok(v),
            Data::F32(_) => Err(Error::DType { op, expected: DType::U32, got: DType::F32 }),
        }
    }
}

/// Element-wise functions of one tensor.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Unary {
    Neg,
    Exp,
    /// Natural log; inputs <= 0 give -inf/NaN exactly as IEEE does.
    Log,
    Sqrt,
    Abs,
    Recip,
    Square,
    Tanh,
    Relu,
    /// Logistic sigmoid `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `x * sigmoid(x)` (a.k.a. swish).
    Silu,
    /// Stable `log(sigmoid(x)) = min(x, 0) - log(1 + exp(-|x|))` (GLA's forget gate).
    LogSigmoid,
    /// `x * mul + add`.
    Affine { mul: f32, add: f32 },
}

impl Unary {
    /// All variants, with an example affine, for exhaustive tests.
    pub const ALL: [Unary; 13] = [
        Unary::Neg,
        Unary::Exp,
        Unary::Log,
        Unary::Sqrt,
        Unary::Abs,
        Unary::Recip,
        Unary::Square,
        Unary::Tanh,
        Unary::Relu,
        Unary::Sigmoid,
        Unary::Silu,
        Unary::LogSigmoid,
        Unary::Affine { mul: 0.5, add: -1.25 },
    ];
    /// The value computed in plain f64 Rust: the golden model used by tests.
    pub fn eval_f64(self, x: f64) -> f64 {
        match self {
            Unary::Neg => -x,
            Unary::Exp => x.exp(),
            Unary::Log => x.ln(),
            Unary::Sqrt => x.sqrt(),
            Unary::Abs => x.abs(),
            Unary::Recip => 1.0 / x,
            Unary::Square => x * x,
            Unary::Tanh => x.tanh(),
            Unary::Relu => x.max(0.0),
            Unary::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Unary::Silu => x / (1.0 + (-x).exp()),
            Unary::LogSigmoid => x.min(0.0) - (-x.abs()).exp().ln_1p(),
            Unary::Affine { mul, add } => x * mul as f64 + add as f64,
        }
    }
    /// Code used by the `unary.wgsl` kernel's uniform.
    pub fn code(self) -> u32 {
        match self {
            Unary::Neg => 0,
            Unary::Exp => 1,
            Unary::Log => 2,
            Unary::Sqrt => 3,
            Unary::Abs => 4,
            Unary::Recip => 5,
            Unary::Square => 6,
            Unary::Tanh => 7,
            Unary::Relu => 8,
            Unary::Sigmoid => 9,
            Unary::Silu => 10,
            Unary::LogSigmoid => 11,
            Unary::Affine { .. } => 12,
        }
    }
}

/// Element-wise functions of two tensors. `b` either has `a`'s shape, or a suffix of it
/// (broadcast over the leading dims, e.g. a bias `[N]` over `[M, N]`), or a single element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
}

impl Binary {
    pub const ALL: [Binary; 6] = [Binary::Add, Binary::Sub, Binary::Mul, Binary::Div, Binary::Max, Binary::Min];
    pub fn eval_f64(self, a: f64, b: f64) -> f64 {
        match self {
            Binary::Add => a + b,
            Binary::Sub => a - b,
            Binary::Mul => a * b,
            Binary::Div => a / b,
            Binary::Max => a.max(b),
            Binary::Min => a.min(b),
        }
    }
    pub fn code(self) -> u32 {
        self as u32
    }
}

/// Reductions over the last dimension; the output keeps that dimension with size 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Reduce {
    Sum,
    Mean,
    Max,
    Min,
    /// Index of the first maximum, as u32.
    ArgMax,
}

impl Reduce {
    pub const ALL: [Reduce; 5] = [Reduce::Sum, Reduce::Mean, Reduce::Max, Reduce::Min, Reduce::ArgMax];
    pub fn code(self) -> u32 {
        self as u32
    }
}

/// Shape and dtype of a device tensor, whatever the backend.
pub trait TensorMeta {
    fn shape(&self) -> &[usize];
    fn dtype(&self) -> DType;
    fn numel(&self) -> usize {
        self.shape().iter().product()
    }
}

/// What a backend is, for the page, the CLI and results provenance.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BackendInfo {
    /// `"cpu"` or `"webgpu"` (wgpu, whatever the native API underneath).
    pub kind: String,
    /// Human-readable device: the adapter's name/driver, or the CPU path's description.
    pub device: String,
}

/// The op set every model is written against.
///
/// Ops are synchronous and may be lazy (the GPU records them); [`Backend::read`] is the only
/// async step and the only place data comes back to the host.
#[allow(async_fn_in_trait)]
pub trait Backend {
    type Tensor: TensorMeta + Clone;

    fn info(&self) -> BackendInfo;

    /// Copy a host tensor to the device. Empty tensors are allowed here (ops refuse them).
    fn upload(&self, t: &HostTensor) -> Result<Self::Tensor>;

    /// Copy a device tensor back to the host (on the GPU: submit pending work, then map).
    fn read(&self, t: &Self::Tensor) -> impl Future<Output = Result<HostTensor>>;

    /// `a · b` (or `a · bᵀ` with `trans_b`): a `[M, K]` or `[B, M, K]`; b `[K, N]` (`[N, K]` when
    /// transposed, the PyTorch `Linear` layout) or `[B, K, N]`. Output `[M, N]` / `[B, M, N]`.
    fn matmul(&self, a: &Self::Tensor, b: &Self::Tensor, trans_b: bool) -> Result<Self::Tensor>;

    fn unary(&self, op: Unary, x: &Self::Tensor) -> Result<Self::Tensor>;

    fn binary(&self, op: Binary, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;

    /// Softmax over the last dimension (max-subtracted, f32).
    fn softmax(&self, x: &Self::Tensor) -> Result<Self::Tensor>;

    /// `x / sqrt(mean(x², last dim) + eps) ⊙ w`; x `[.., D]`, w `[D]`.
    fn rms_norm(&self, x: &Self::Tensor, w: &Self::Tensor, eps: f32) -> Result<Self::Tensor>;

    /// Reduction over the last dimension: `[.., D] -> [.., 1]`.
    fn reduce(&self, op: Reduce, x: &Self::Tensor) -> Result<Self::Tensor>;

    /// Rows of `table` `[N, D]` picked by `ids` `[T]` (host ids, bounds-checked): `[T, D]`.
    fn gather(&self, table: &Self::Tensor, ids: &[u32]) -> Result<Self::Tensor>;
}

/// Shape and dtype rules shared by all backends, so the same bad input gives the same error.
pub mod check {
    use super::*;

    pub fn f32_nonempty(op: &'static str, t: &impl TensorMeta) -> Result<()> {
        if t.dtype() != DType::F32 {
            return Err(Error::DType { op, expected: DType::F32, got: t.dtype() });
        }
        if t.numel() == 0 || t.shape().is_empty() {
            return Err(Error::Empty { op, shape: t.shape().to_vec() });
        }
        Ok(())
    }

    /// Returns `(batch, m, k, n)` and the output shape.
    pub fn matmul(a: &impl TensorMeta, b: &impl TensorMeta, trans_b: bool) -> Result<((usize, usize, usize, usize), Vec<usize>)> {
        const OP: &str = "matmul";
        f32_nonempty(OP, a)?;
        f32_nonempty(OP, b)?;
        let (sa, sb) = (a.shape(), b.shape());
        let (batch, m, k) = match *sa {
            [m, k] => (1, m, k),
            [bt, m, k] => (bt, m, k),
            _ => return Err(Error::Shape { op: OP, detail: format!("a must be [M,K] or [B,M,K], got {sa:?}") }),
        };
        let (bb, kb, n) = match (sb, trans_b) {
            (&[r, c], false) => (None, r, c),
            (&[r, c], true) => (None, c, r),
            (&[bt, r, c], false) => (Some(bt), r, c),
            (&[bt, r, c], true) => (Some(bt), c, r),
            _ => return Err(Error::Shape { op: OP, detail: format!("b must be rank 2 or 3, got {sb:?}") }),
        };
        if kb != k {
            return Err(Error::Shape {
                op: OP,
                detail: format!("inner dims differ: a {sa:?} has K={k}, b {sb:?} (trans_b={trans_b}) has K={kb}"),
            });
        }
        if let Some(bt) = bb {
            if sa.len() != 3 || bt != batch {
                return Err(Error::Shape { op: OP, detail: format!("batched b {sb:?} needs a of shape [{bt},M,K], got {sa:?}") });
            }
        }
        let out = if sa.len() == 3 { vec![batch, m, n] } else { vec![m, n] };
        Ok(((batch, m, k, n), out))
    }

    pub fn binary(a: &impl TensorMeta, b: &impl TensorMeta) -> Result<()> {
        const OP: &str = "binary";
        f32_nonempty(OP, a)?;
        f32_nonempty(OP, b)?;
        let (sa, sb) = (a.shape(), b.shape());
        let ok = sa == sb || b.numel() == 1 || (sb.len() <= sa.len() && sa[sa.len() - sb.len()..] == *sb);
        if !ok {
            return Err(Error::Shape {
                op: OP,
                detail: format!("b {sb:?} must equal a {sa:?}, be a suffix of it, or have one element"),
            });
        }
        Ok(())
    }

    /// Returns `(rows, d)` for ops over the last dim.
    pub fn rows(op: &'static str, x: &impl TensorMeta) -> Result<(usize, usize)> {
        f32_nonempty(op, x)?;
        let d = *x.shape().last().expect("non-empty shape checked above");
        Ok((x.numel() / d, d))
    }

    pub fn rms_norm(x: &impl TensorMeta, w: &impl TensorMeta, eps: f32) -> Result<(usize, usize)> {
        const OP: &str = "rms_norm";
        let (rows, d) = rows(OP, x)?;
        f32_nonempty(OP, w)?;
        if w.shape() != [d] {
            return Err(Error::Shape { op: OP, detail: format!("weight must be [{d}] for x {:?}, got {:?}", x.shape(), w.shape()) });
        }
        if !(eps.is_finite() && eps > 0.0) {
            return Err(Error::Invalid(format!("rms_norm: eps must be a positive finite number, got {eps}")));
        }
        Ok((rows, d))
    }

    pub fn reduce_shape(x: &impl TensorMeta) -> Vec<usize> {
        let mut s = x.shape().to_vec();
        if let Some(last) = s.last_mut() {
            *last = 1;
        }
        s
    }

    /// Returns `(n, d)` of the table.
    pub fn gather(table: &impl TensorMeta, ids: &[u32]) -> Result<(usize, usize)> {
        const OP: &str = "gather";
        f32_nonempty(OP, table)?;
        let (n, d) = match *table.shape() {
            [n, d] => (n, d),
            ref s => return Err(Error::Shape { op: OP, detail: format!("table must be [N,D], got {s:?}") }),
        };
        if ids.is_empty() {
            return Err(Error::Empty { op: OP, shape: vec![0] });
        }
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= n) {
            return Err(Error::Index { op: OP, index: bad as usize, size: n });
        }
        Ok((n, d))
    }
}
