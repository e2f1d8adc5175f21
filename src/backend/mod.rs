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

pub mod composite;
pub mod conformance;
pub mod count;
pub mod cpu;
pub mod gpu;
pub mod simd;
pub mod simd_ternary;
pub mod vmath;

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
    /// The int8 / int4 products against their slow twin (dequantise, then [`Backend::matmul`]):
    /// relative to Σ_k |x_k ŵ_k| like [`MATMUL_REL`], twice as loose because the scale is applied to
    /// the sum (packed) instead of to each weight (dequantised), one more rounding per term.
    pub const PACKED_MATMUL_REL: f32 = 2e-5;
    /// End-to-end demo pipeline (gather -> RMSNorm -> matmul -> SiLU -> softmax): max |diff|.
    pub const PIPELINE_ABS: f32 = 1e-4;
    /// Prefix sums (cumsum) and the linear recurrence (scan): |gpu - cpu| <= SCAN_REL * s_t, where
    /// s_t bounds the magnitudes summed into element t (the prefix sum of |x| for cumsum, the same
    /// recurrence on |a|, |b| for scan). Covers a different summation order (candle's cumsum is a
    /// triangular matmul, the GPU's a workgroup scan) and, for the recurrence, rounding errors
    /// that decay by |a| per step.
    pub const SCAN_REL: f32 = 1e-4;
    /// Whole-model class logits (the bundled models on the page): max |diff|. Looser than
    /// [`PIPELINE_ABS`] because a deep pipeline compounds every op's rounding, and HGRN-bit
    /// re-quantises activations to 8 bits in each BitLinear: a value within an ulp of a rounding
    /// boundary can move one quantisation step on one backend.
    pub const MODEL_LOGITS_ABS: f32 = 1e-3;
    /// The same for models with BitLinear layers (HGRN-bit): measured on the bundled model over
    /// all 872 SST-2 validation examples on lavapipe, the largest |GPU − CPU| was 5.3e-3 (where
    /// an activation landed on an 8-bit rounding boundary), every label equal. Tests require equal
    /// labels as well.
    pub const TERNARY_MODEL_LOGITS_ABS: f32 = 1e-2;

    /// f16's machine epsilon, 2^-10: the spacing of halves in [1, 2), twice the unit roundoff.
    pub const F16_EPSILON: f32 = 9.765625e-4;
    /// The spacing of f16 subnormals, 2^-24: the largest absolute error of one rounding below
    /// f16's normal range (2^-14), where the relative bound no longer holds.
    pub const F16_SUBNORMAL_ULP: f32 = 5.9604645e-8;

    /// The bound on `|x · wᵀ − exact|` for one output of the f16-arithmetic matmul
    /// (`matmul_f16_arith.wgsl`, [`crate::backend::cpu::matmul_f16_arith_host`]) over a row of
    /// length `k`, where `sum_abs_xw` = Σ_k |x_k · w_k| and `sum_abs_w` = Σ_k |w_k| (w already
    /// halves, so "exact" is the f32-or-better product of the same halves).
    ///
    /// Each term is rounded twice in f16: x_k to a half, then the product. Either rounding is off
    /// by at most one f16 ulp relative (ε₁₆ = 2^-10, allowing a conversion that rounds either way
    /// rather than to nearest) or, in the subnormal range, by one subnormal ulp η = 2^-24 absolute:
    /// |term error| ≤ (2ε₁₆ + ε₁₆²)|x_k w_k| + η(|w_k|(1 + ε₁₆) + 1). The f32 sum of k terms adds
    /// γ_k = k·u₃₂/(1 − k·u₃₂) of Σ|terms| (u₃₂ = 2^-24), the standard dot-product bound. For
    /// k < 10⁵ the products of small factors are absorbed into the rounded-up constants:
    /// bound = (2.01·ε₁₆ + 1.02·k·u₃₂)·Σ|x w| + 1.02·η·(Σ|w| + k).
    /// At k = 512 with O(1) terms that is ≈ 2e-3 of Σ|x w| — some hundred times the f32 matmul's
    /// [`MATMUL_REL`]: the price of f16 products. A device that flushes f16 subnormals to zero
    /// can exceed the absolute part for products below 2^-14.
    pub fn f16_arith_matmul(k: usize, sum_abs_xw: f32, sum_abs_w: f32) -> f32 {
        let u32_ = f32::EPSILON / 2.0;
        (2.01 * F16_EPSILON + 1.02 * k as f32 * u32_) * sum_abs_xw + 1.02 * F16_SUBNORMAL_ULP * (sum_abs_w + k as f32)
    }

    /// The whole-model logit tolerance for an architecture.
    pub fn model_logits_abs(arch: crate::models::config::Arch) -> f32 {
        match arch {
            crate::models::config::Arch::HgrnBit => TERNARY_MODEL_LOGITS_ABS,
            _ => MODEL_LOGITS_ABS,
        }
    }
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
    /// Round half away from zero (BitNet / MatMul-free activation quantisation rounds this way).
    Round,
    /// `min(max(x, lo), hi)`.
    Clamp { lo: f32, hi: f32 },
}

impl Unary {
    /// All variants, with an example affine, for exhaustive tests.
    pub const ALL: [Unary; 15] = [
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
        Unary::Round,
        Unary::Clamp { lo: -1.5, hi: 2.0 },
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
            Unary::Round => x.round(),
            Unary::Clamp { lo, hi } => x.max(lo as f64).min(hi as f64),
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
            Unary::Round => 13,
            Unary::Clamp { .. } => 14,
        }
    }
}

/// Element-wise functions of two tensors with NumPy broadcasting: shapes are aligned from the
/// right and a dim of size 1 (or a missing leading dim) stretches to the other's size, e.g. a bias
/// `[N]` over `[M, N]`, or a per-channel decay `[H, K, 1]` over a state `[H, K, V]`.
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

/// Which backend an experiment asks for (a field of the experiment spec, recorded in results
/// beside the backend that actually ran).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// WebGPU on a hardware GPU; the CPU path when the only adapter is a software rasterizer
    /// (SwiftShader, lavapipe: measured far slower than the CPU path, README "Benchmarks") or when
    /// there is none.
    #[default]
    Auto,
    /// WebGPU on whatever adapter there is, software included.
    Webgpu,
    /// The CPU path (candle-core; wasm in the browser).
    Cpu,
}

impl BackendChoice {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "webgpu" => Ok(Self::Webgpu),
            "cpu" => Ok(Self::Cpu),
            other => Err(Error::Invalid(format!("backend \"{other}\" is not one of auto, webgpu, cpu"))),
        }
    }

    /// Whether to try the GPU, given the adapter's kind (`Some(is_software)`) or its absence.
    /// `Err` carries why the CPU path runs instead, for the results.
    pub fn use_gpu(self, adapter_is_software: std::result::Result<bool, String>) -> std::result::Result<(), String> {
        match (self, adapter_is_software) {
            (Self::Cpu, _) => Err("the CPU backend was chosen".into()),
            (_, Err(why)) => Err(format!("no GPU: {why}")),
            (Self::Auto, Ok(true)) => Err("auto: the only adapter is a software rasterizer, slower than the CPU path".into()),
            (_, Ok(_)) => Ok(()),
        }
    }
}

/// The op set every model is written against.
///
/// Ops are synchronous and may be lazy (the GPU records them); [`Backend::read`] is the only
/// async step and the only place data comes back to the host.
#[allow(async_fn_in_trait)]
pub trait Backend: Sized {
    type Tensor: TensorMeta + Clone;

    fn info(&self) -> BackendInfo;

    /// The largest tensor, in bytes, this backend can hold in one buffer binding; models split
    /// larger weight matrices into row blocks ([`crate::nn::linear::RowBlocks`]).
    fn max_tensor_bytes(&self) -> u64 {
        u64::MAX
    }

    /// Whether models loaded on this backend store their dense projection weights in f16
    /// ([`Backend::matmul_f16`]: half the memory and bandwidth; embeddings and heads stay f32).
    fn half_weights(&self) -> bool {
        false
    }

    /// Whether [`Backend::matmul_f16`] multiplies in f16 (x rounded to a half, each product
    /// rounded to a half, sums in f32) rather than in f32: the GPU on a device with `shader-f16`
    /// (unless switched off), and the CPU twin [`cpu::CpuBackend::with_f16_arithmetic`]. Results
    /// then differ from the f32 products within [`tolerance::f16_arith_matmul`].
    fn f16_arithmetic(&self) -> bool {
        false
    }

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

    // ---- data movement (any dtype) ----

    /// The same elements in row-major order under a new shape with the same element count.
    fn reshape(&self, x: &Self::Tensor, shape: &[usize]) -> Result<Self::Tensor>;

    /// Reorder dims: `out.shape[i] = x.shape[perm[i]]` (e.g. `[T, H, K] -> [H, T, K]` with `[1, 0, 2]`).
    fn permute(&self, x: &Self::Tensor, perm: &[usize]) -> Result<Self::Tensor>;

    /// The slice `start..start + len` along `dim`.
    fn narrow(&self, x: &Self::Tensor, dim: usize, start: usize, len: usize) -> Result<Self::Tensor>;

    /// Join tensors along `dim`; every other dim must agree.
    fn concat(&self, xs: &[&Self::Tensor], dim: usize) -> Result<Self::Tensor>;

    // ---- scans and the ternary product ----

    /// Inclusive prefix sum over the last dimension (GLA's cumulative log decay).
    fn cumsum(&self, x: &Self::Tensor) -> Result<Self::Tensor>;

    /// The element-wise linear recurrence `h_t = a_t ⊙ h_{t-1} + b_t` over dim 0, with `h_{-1} = 0`:
    /// a, b `[T, D]` -> h `[T, D]` (HGRN's token mixer).
    fn scan(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;

    /// `x · Tᵀ` for ternary `T ∈ {-1,0,+1}^{N×K}` kept packed ([`ternary`]: u32 `[N, ceil(K/16)]`),
    /// using only additions and subtractions: x `[M, K]` f32 -> `[M, N]`. With integer-valued x
    /// (8-bit quantised activations) the result is exact.
    fn ternary_matmul(&self, x: &Self::Tensor, packed: &Self::Tensor) -> Result<Self::Tensor>;

    /// `x · Wᵀ` with W `[N, K]` stored in half precision ([`half_pairs`]: u32 `[N, ceil(K/2)]`),
    /// products and sums in f32 (products in f16 where [`Backend::f16_arithmetic`]): x `[M, K]` ->
    /// `[M, N]`.
    fn matmul_f16(&self, x: &Self::Tensor, w: &Self::Tensor) -> Result<Self::Tensor>;

    /// `x · Wᵀ` with W `[N, K]` in int8 per output channel: codes packed 4 per u32 ([`int8`]:
    /// u32 `[N, ⌈K/4⌉]`), scales `[N]`; `y_mn = s_n · Σ_k x_mk c_nk`, sums in f32. x `[M, K]` ->
    /// `[M, N]`.
    fn matmul_i8(&self, x: &Self::Tensor, codes: &Self::Tensor, scales: &Self::Tensor) -> Result<Self::Tensor>;

    /// `x · Wᵀ` with W `[N, K]` in int4 per (output channel, group of g inputs): codes packed 8
    /// per u32 ([`crate::compress::quant::int4`]: u32 `[N, K/8]`), scales `[N, K/g]` (g inferred,
    /// a multiple of 8); `y_mn = Σ_g s_ng · Σ_{k∈g} x_mk c_nk`, sums in f32. x `[M, K]` -> `[M, N]`.
    fn matmul_i4(&self, x: &Self::Tensor, codes: &Self::Tensor, scales: &Self::Tensor) -> Result<Self::Tensor>;

    // ---- fused model ops ----
    //
    // Each has a default written in the primitive ops above ([`composite`]): that is the CPU
    // path and the slow twin every fused GPU kernel is tested against.

    /// Rotary embedding, rotate-half style: x `[N, T, hd]`, tables cos/sin `[T, hd]`
    /// ([`crate::nn::rope::tables`]) -> `x·cos + rotate_half(x)·sin` `[N, T, hd]`.
    fn rope(&self, x: &Self::Tensor, cos: &Self::Tensor, sin: &Self::Tensor) -> Result<Self::Tensor> {
        composite::rope(self, x, cos, sin)
    }

    /// Causal softmax attention with grouped-query heads: q `[nh, T, hd]`, k `[kvh, T, hd]`,
    /// v `[kvh, T, dv]` (query head h reads kv head `h / (nh / kvh)`), scores scaled by `scale`,
    /// query t sees keys `t − window + 1 ..= t` (all `..= t` without a window) -> `[nh, T, dv]`.
    fn attention(&self, q: &Self::Tensor, k: &Self::Tensor, v: &Self::Tensor, scale: f32, window: Option<usize>) -> Result<Self::Tensor> {
        composite::attention(self, q, k, v, scale, window)
    }

    /// Gated linear attention, chunkwise (specs/models.md §3.4): q (already scaled), k
    /// `[N, T, dk]`, v `[N, T, dv]`, log forget gates `lg ≤ 0` `[N, T, dk]`, chunk length `chunk`
    /// -> o `[N, T, dv]` with `S_t = diag(exp lg_t) S_{t−1} + k_tᵀ v_t`, `o_t = q_t S_t`.
    fn gla(&self, q: &Self::Tensor, k: &Self::Tensor, v: &Self::Tensor, lg: &Self::Tensor, chunk: usize) -> Result<Self::Tensor> {
        composite::gla_chunked(self, q, k, v, lg, chunk)
    }

    /// Last-token pooling: x `[B, T, H]` -> `[B, H]`, row `lengths[b] − 1` of sequence b (right
    /// padding: the last real token).
    fn last_token(&self, x: &Self::Tensor, lengths: &[usize]) -> Result<Self::Tensor> {
        composite::last_token(self, x, lengths)
    }

    /// BitLinear (specs/models.md §4.3): x `[M, K]` -> `[M, N]`,
    /// `(β / s) · Σ_i q_i T_{j,i}` with `ŷ = RMSNorm(x; norm, eps)`, `s = 127 / max(max|ŷ|, 1e-5)`
    /// per row and `q = clamp(round(ŷ·s), −128, 127)` (8-bit activations); T packed `[N, ⌈K/16⌉]`.
    fn bit_linear(&self, x: &Self::Tensor, norm: &Self::Tensor, packed: &Self::Tensor, beta: f32, eps: f32) -> Result<Self::Tensor> {
        composite::bit_linear(self, x, norm, packed, beta, eps)
    }
}

/// Packed ternary weights: 2 bits per weight, 16 weights per u32, little end first
/// (weight `j` of a row in word `j / 16`, bits `2·(j % 16)..`); codes 0 → 0, 1 → +1, 2 → −1
/// (3 is invalid). Rows are padded with zeros to a multiple of 16 weights.
///
/// Who checks validity: a GPU kernel cannot return an error, so packed weights are validated once
/// on the host ([`validate`], when a model is loaded) and `ternary_matmul.wgsl` then decodes code 3
/// as 0 and never reads the padding. The CPU reference refuses invalid words as it goes; on valid
/// data both backends compute the same sums in the same order.
pub mod ternary {
    use crate::error::{Error, Result};

    pub const PER_WORD: usize = 16;

    /// Words per packed row of `k` weights.
    pub fn words_per_row(k: usize) -> usize {
        k.div_ceil(PER_WORD)
    }

    /// Pack a row-major `[n, k]` matrix of values in {-1, 0, 1}.
    pub fn pack(values: &[i8], n: usize, k: usize) -> Result<Vec<u32>> {
        if Some(values.len()) != n.checked_mul(k) {
            return Err(Error::Invalid(format!("ternary pack: {} values for [{n}, {k}]", values.len())));
        }
        let wpr = words_per_row(k);
        let mut out = vec![0u32; n * wpr];
        for r in 0..n {
            for j in 0..k {
                let code = match values[r * k + j] {
                    0 => 0u32,
                    1 => 1,
                    -1 => 2,
                    v => return Err(Error::Invalid(format!("ternary pack: value {v} at [{r}, {j}] is not in {{-1, 0, 1}}"))),
                };
                out[r * wpr + j / PER_WORD] |= code << (2 * (j % PER_WORD));
            }
        }
        Ok(out)
    }

    /// Check packed `[n, ceil(k/16)]` words: the right count, no code 3, zero padding.
    pub fn validate(words: &[u32], n: usize, k: usize) -> Result<()> {
        let wpr = words_per_row(k);
        if Some(words.len()) != n.checked_mul(wpr) {
            return Err(Error::Invalid(format!("ternary: {} words for [{n}, {k}] (need {n} x {wpr})", words.len())));
        }
        // Bits of the last word of a row that hold weights (the rest is padding and must be 0).
        let tail = k % PER_WORD;
        let last_mask = if tail == 0 { u32::MAX } else { (1u32 << (2 * tail)) - 1 };
        for (i, &w) in words.iter().enumerate() {
            let (r, c) = (i / wpr, i % wpr);
            // Code 3 sets both bits of a pair: look for a high bit whose low neighbour is set.
            let threes = w & (w >> 1) & 0x5555_5555;
            if threes != 0 {
                let j = c * PER_WORD + threes.trailing_zeros() as usize / 2;
                return Err(Error::Invalid(format!("ternary: invalid code 3 at [{r}, {j}]")));
            }
            if c + 1 == wpr && w & !last_mask != 0 {
                return Err(Error::Invalid(format!("ternary: non-zero padding after weight {k} in row {r}")));
            }
        }
        Ok(())
    }

    /// Unpack to `[n, k]` values in {-1, 0, 1} (refusing code 3 and non-zero padding).
    pub fn unpack(words: &[u32], n: usize, k: usize) -> Result<Vec<i8>> {
        let wpr = words_per_row(k);
        validate(words, n, k)?;
        let mut out = Vec::with_capacity(n * k);
        for r in 0..n {
            for j in 0..k {
                out.push(match (words[r * wpr + j / PER_WORD] >> (2 * (j % PER_WORD))) & 3 {
                    0 => 0,
                    1 => 1,
                    2 => -1,
                    _ => return Err(Error::Invalid(format!("ternary unpack: invalid code 3 at [{r}, {j}]"))),
                });
            }
        }
        Ok(out)
    }
}

/// Int8 codes packed 4 per u32, little end first: code `j` of a row is byte `j % 4` (bits
/// `8·(j % 4)..`) of word `j / 4`, as two's complement (WGSL's signed `extractBits` decodes it).
/// Rows are padded with zero bytes to a multiple of 4. The formats are symmetric, so byte `0x80`
/// (−128) is refused, like int4's `0x8`.
///
/// Who checks validity: as for [`ternary`], a kernel cannot refuse bad words, so packed weights are
/// validated once on the host ([`int8::validate`]) when a model is loaded; the CPU op refuses them
/// as it goes.
pub mod int8 {
    use crate::error::{Error, Result};

    pub const PER_WORD: usize = 4;

    pub fn words_per_row(k: usize) -> usize {
        k.div_ceil(PER_WORD)
    }

    /// Pack a row-major `[n, k]` matrix of codes in [−127, 127].
    pub fn pack(values: &[i8], n: usize, k: usize) -> Result<Vec<u32>> {
        if Some(values.len()) != n.checked_mul(k) {
            return Err(Error::Invalid(format!("int8 pack: {} values for [{n}, {k}]", values.len())));
        }
        let wpr = words_per_row(k);
        let mut out = vec![0u32; n * wpr];
        for (i, &v) in values.iter().enumerate() {
            let (r, j) = (i / k, i % k);
            if v == i8::MIN {
                return Err(Error::Invalid(format!("int8 pack: value -128 at [{r}, {j}] is outside the symmetric range")));
            }
            out[r * wpr + j / PER_WORD] |= (v as u8 as u32) << (8 * (j % PER_WORD));
        }
        Ok(out)
    }

    /// Check packed `[n, ⌈k/4⌉]` words: the right count, no byte `0x80`, zero padding.
    pub fn validate(words: &[u32], n: usize, k: usize) -> Result<()> {
        let wpr = words_per_row(k);
        if Some(words.len()) != n.checked_mul(wpr) {
            return Err(Error::Invalid(format!("int8: {} words for [{n}, {k}] (need {n} x {wpr})", words.len())));
        }
        let tail = k % PER_WORD;
        let last_mask = if tail == 0 { u32::MAX } else { (1u32 << (8 * tail)) - 1 };
        for (i, &w) in words.iter().enumerate() {
            let (r, c) = (i / wpr, i % wpr);
            if let Some(b) = (0..PER_WORD).find(|b| (w >> (8 * b)) & 0xFF == 0x80) {
                return Err(Error::Invalid(format!("int8: code -128 at [{r}, {}] is outside the symmetric range", c * PER_WORD + b)));
            }
            if c + 1 == wpr && w & !last_mask != 0 {
                return Err(Error::Invalid(format!("int8: non-zero padding after weight {k} in row {r}")));
            }
        }
        Ok(())
    }

    /// Unpack to `[n, k]` codes (refusing `0x80` and non-zero padding).
    pub fn unpack(words: &[u32], n: usize, k: usize) -> Result<Vec<i8>> {
        validate(words, n, k)?;
        let wpr = words_per_row(k);
        let mut out = Vec::with_capacity(n * k);
        for row in words.chunks_exact(wpr.max(1)).take(n) {
            out.extend((0..k).map(|j| (row[j / PER_WORD] >> (8 * (j % PER_WORD))) as u8 as i8));
        }
        Ok(out)
    }
}

/// Half-precision weights, two per u32: element `(n, k)` of `[N, K]` is half `k % 2` (low
/// first) of word `n · ⌈K/2⌉ + k / 2`, IEEE binary16 rounded to nearest even; an odd K pads each
/// row with a zero half.
pub mod half_pairs {
    use crate::error::{Error, Result};

    pub fn words_per_row(k: usize) -> usize {
        k.div_ceil(2)
    }

    /// Pack a row-major `[n, k]` f32 matrix (values beyond f16's range become ±inf, as a cast does).
    pub fn pack(values: &[f32], n: usize, k: usize) -> Result<Vec<u32>> {
        if Some(values.len()) != n.checked_mul(k) {
            return Err(Error::Invalid(format!("f16 pack: {} values for [{n}, {k}]", values.len())));
        }
        let wpr = words_per_row(k);
        let mut out = vec![0u32; n * wpr];
        for r in 0..n {
            for j in 0..k {
                let h = half::f16::from_f32(values[r * k + j]).to_bits() as u32;
                out[r * wpr + j / 2] |= h << (16 * (j % 2));
            }
        }
        Ok(out)
    }

    /// The `[n, k]` f32 values of packed halves.
    pub fn unpack(words: &[u32], n: usize, k: usize) -> Result<Vec<f32>> {
        let wpr = words_per_row(k);
        if Some(words.len()) != n.checked_mul(wpr) {
            return Err(Error::Invalid(format!("f16 unpack: {} words for [{n}, {k}] (need {n} x {wpr})", words.len())));
        }
        let mut out = Vec::with_capacity(n * k);
        for r in 0..n {
            for j in 0..k {
                out.push(half::f16::from_bits((words[r * wpr + j / 2] >> (16 * (j % 2))) as u16).to_f32());
            }
        }
        Ok(out)
    }
}

/// Shape and dtype rules shared by all backends, so the same bad input gives the same error.
pub mod check {
    use super::*;

    /// Highest rank of a broadcast `binary` or a `permute`: the GPU kernels pass shapes and strides
    /// in two `vec4<u32>` per operand. (narrow/concat/reshape have no limit: they collapse to rank
    /// 3 or less.) Refused here, so the CPU refuses the same inputs.
    pub const MAX_RANK: usize = 8;

    fn rank_limit(op: &'static str, shape: &[usize]) -> Result<()> {
        if shape.len() > MAX_RANK {
            return Err(Error::Shape { op, detail: format!("rank {} of {shape:?} exceeds the limit of {MAX_RANK}", shape.len()) });
        }
        Ok(())
    }

    pub fn f32_nonempty(op: &'static str, t: &impl TensorMeta) -> Result<()> {
        if t.dtype() != DType::F32 {
            return Err(Error::DType { op, expected: DType::F32, got: t.dtype() });
        }
        nonempty(op, t)
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

    /// NumPy broadcasting; returns the output shape.
    pub fn binary(a: &impl TensorMeta, b: &impl TensorMeta) -> Result<Vec<usize>> {
        const OP: &str = "binary";
        f32_nonempty(OP, a)?;
        f32_nonempty(OP, b)?;
        let out = broadcast_shape(OP, a.shape(), b.shape())?;
        rank_limit(OP, &out)?;
        Ok(out)
    }

    pub fn broadcast_shape(op: &'static str, sa: &[usize], sb: &[usize]) -> Result<Vec<usize>> {
        let rank = sa.len().max(sb.len());
        let mut out = vec![0; rank];
        for i in 0..rank {
            let da = if i < rank - sa.len() { 1 } else { sa[i - (rank - sa.len())] };
            let db = if i < rank - sb.len() { 1 } else { sb[i - (rank - sb.len())] };
            out[i] = match (da, db) {
                (x, y) if x == y => x,
                (1, y) => y,
                (x, 1) => x,
                _ => return Err(Error::Shape { op, detail: format!("shapes {sa:?} and {sb:?} do not broadcast (dim {i}: {da} vs {db})") }),
            };
        }
        Ok(out)
    }

    pub fn nonempty(op: &'static str, t: &impl TensorMeta) -> Result<()> {
        if t.numel() == 0 || t.shape().is_empty() {
            return Err(Error::Empty { op, shape: t.shape().to_vec() });
        }
        Ok(())
    }

    pub fn reshape(x: &impl TensorMeta, shape: &[usize]) -> Result<()> {
        let n: usize = shape.iter().product();
        if n != x.numel() || shape.is_empty() {
            return Err(Error::Shape { op: "reshape", detail: format!("cannot view {:?} ({} elements) as {shape:?}", x.shape(), x.numel()) });
        }
        Ok(())
    }

    /// Returns the output shape.
    pub fn permute(x: &impl TensorMeta, perm: &[usize]) -> Result<Vec<usize>> {
        let s = x.shape();
        rank_limit("permute", s)?;
        let mut seen = vec![false; s.len()];
        if perm.len() != s.len() || perm.iter().any(|&p| p >= s.len() || std::mem::replace(&mut seen[p], true)) {
            return Err(Error::Shape { op: "permute", detail: format!("{perm:?} is not a permutation of the {} dims of {s:?}", s.len()) });
        }
        Ok(perm.iter().map(|&p| s[p]).collect())
    }

    /// Returns the output shape.
    pub fn narrow(x: &impl TensorMeta, dim: usize, start: usize, len: usize) -> Result<Vec<usize>> {
        let s = x.shape();
        if dim >= s.len() || len == 0 || start.checked_add(len).is_none_or(|e| e > s[dim]) {
            return Err(Error::Shape { op: "narrow", detail: format!("slice {start}..{} of dim {dim} is outside {s:?} (or empty)", start.saturating_add(len)) });
        }
        let mut out = s.to_vec();
        out[dim] = len;
        Ok(out)
    }

    /// Returns the output shape.
    pub fn concat(xs: &[&impl TensorMeta], dim: usize) -> Result<Vec<usize>> {
        let first = xs.first().ok_or(Error::Empty { op: "concat", shape: vec![0] })?;
        let s0 = first.shape();
        if dim >= s0.len() {
            return Err(Error::Shape { op: "concat", detail: format!("dim {dim} out of range for {s0:?}") });
        }
        let mut out = s0.to_vec();
        out[dim] = 0;
        for x in xs {
            let s = x.shape();
            if x.dtype() != first.dtype() {
                return Err(Error::DType { op: "concat", expected: first.dtype(), got: x.dtype() });
            }
            if s.len() != s0.len() || s.iter().zip(s0).enumerate().any(|(i, (a, b))| i != dim && a != b) {
                return Err(Error::Shape { op: "concat", detail: format!("{s:?} does not match {s0:?} outside dim {dim}") });
            }
            out[dim] += s[dim];
        }
        Ok(out)
    }

    /// Returns `(t, d)`.
    pub fn scan(a: &impl TensorMeta, b: &impl TensorMeta) -> Result<(usize, usize)> {
        const OP: &str = "scan";
        f32_nonempty(OP, a)?;
        f32_nonempty(OP, b)?;
        match (a.shape(), b.shape()) {
            (&[t, d], sb) if sb == [t, d] => Ok((t, d)),
            (sa, sb) => Err(Error::Shape { op: OP, detail: format!("a and b must both be [T, D], got {sa:?} and {sb:?}") }),
        }
    }

    /// Returns `(m, k, n)`.
    pub fn ternary_matmul(x: &impl TensorMeta, packed: &impl TensorMeta) -> Result<(usize, usize, usize)> {
        const OP: &str = "ternary_matmul";
        f32_nonempty(OP, x)?;
        if packed.dtype() != DType::U32 {
            return Err(Error::DType { op: OP, expected: DType::U32, got: packed.dtype() });
        }
        nonempty(OP, packed)?;
        let (m, k) = match *x.shape() {
            [m, k] => (m, k),
            ref s => return Err(Error::Shape { op: OP, detail: format!("x must be [M, K], got {s:?}") }),
        };
        match *packed.shape() {
            [n, w] if w == ternary::words_per_row(k) => Ok((m, k, n)),
            ref s => Err(Error::Shape { op: OP, detail: format!("packed weights must be [N, {}] for K = {k}, got {s:?}", ternary::words_per_row(k)) }),
        }
    }

    fn rank3(op: &'static str, what: &str, x: &impl TensorMeta) -> Result<(usize, usize, usize)> {
        f32_nonempty(op, x)?;
        match *x.shape() {
            [a, b, c] => Ok((a, b, c)),
            ref s => Err(Error::Shape { op, detail: format!("{what} must be rank 3, got {s:?}") }),
        }
    }

    /// Returns `(n, t, hd)`.
    pub fn rope(x: &impl TensorMeta, cos: &impl TensorMeta, sin: &impl TensorMeta) -> Result<(usize, usize, usize)> {
        const OP: &str = "rope";
        let (n, t, hd) = rank3(OP, "x [N, T, hd]", x)?;
        f32_nonempty(OP, cos)?;
        f32_nonempty(OP, sin)?;
        if hd % 2 != 0 || cos.shape() != [t, hd] || sin.shape() != [t, hd] {
            return Err(Error::Shape {
                op: OP,
                detail: format!("x {:?} needs an even head dim and cos/sin tables [{t}, {hd}], got {:?} and {:?}", x.shape(), cos.shape(), sin.shape()),
            });
        }
        Ok((n, t, hd))
    }

    /// Returns `(nh, kvh, t, hd, dv)`.
    pub fn attention(q: &impl TensorMeta, k: &impl TensorMeta, v: &impl TensorMeta, window: Option<usize>) -> Result<(usize, usize, usize, usize, usize)> {
        const OP: &str = "attention";
        let (nh, t, hd) = rank3(OP, "q [nh, T, hd]", q)?;
        let (kvh, tk, hdk) = rank3(OP, "k [kvh, T, hd]", k)?;
        let (kvv, tv, dv) = rank3(OP, "v [kvh, T, dv]", v)?;
        if tk != t || tv != t || hdk != hd || kvv != kvh || nh % kvh != 0 {
            return Err(Error::Shape {
                op: OP,
                detail: format!("q {:?}, k {:?}, v {:?}: need k [kvh, {t}, {hd}], v [kvh, {t}, dv] with kvh dividing {nh}", q.shape(), k.shape(), v.shape()),
            });
        }
        if window == Some(0) {
            return Err(Error::Invalid("attention: a window must be at least 1 token".into()));
        }
        Ok((nh, kvh, t, hd, dv))
    }

    /// Returns `(n, t, dk, dv)`.
    pub fn gla(q: &impl TensorMeta, k: &impl TensorMeta, v: &impl TensorMeta, lg: &impl TensorMeta, chunk: usize) -> Result<(usize, usize, usize, usize)> {
        const OP: &str = "gla";
        let (n, t, dk) = rank3(OP, "q [N, T, dk]", q)?;
        rank3(OP, "k [N, T, dk]", k)?;
        rank3(OP, "lg [N, T, dk]", lg)?;
        let (nv, tv, dv) = rank3(OP, "v [N, T, dv]", v)?;
        if k.shape() != q.shape() || lg.shape() != q.shape() || nv != n || tv != t {
            return Err(Error::Shape {
                op: OP,
                detail: format!("q {:?}, k {:?}, lg {:?} must match and v {:?} must be [{n}, {t}, dv]", q.shape(), k.shape(), lg.shape(), v.shape()),
            });
        }
        if chunk == 0 {
            return Err(Error::Invalid("gla: the chunk length must be positive".into()));
        }
        Ok((n, t, dk, dv))
    }

    /// Returns `(b, t, h)`.
    pub fn last_token(x: &impl TensorMeta, lengths: &[usize]) -> Result<(usize, usize, usize)> {
        const OP: &str = "last_token";
        let (b, t, h) = rank3(OP, "x [B, T, H]", x)?;
        if lengths.len() != b {
            return Err(Error::Shape { op: OP, detail: format!("{} lengths for a batch of {b}", lengths.len()) });
        }
        if let Some((i, &l)) = lengths.iter().enumerate().find(|(_, &l)| l == 0 || l > t) {
            return Err(Error::Shape { op: OP, detail: format!("sequence {i} has length {l}, outside 1..={t}") });
        }
        Ok((b, t, h))
    }

    /// Returns `(m, k, n)`.
    pub fn bit_linear(x: &impl TensorMeta, norm: &impl TensorMeta, packed: &impl TensorMeta, eps: f32) -> Result<(usize, usize, usize)> {
        let (m, k, n) = ternary_matmul(x, packed)?;
        f32_nonempty("bit_linear", norm)?;
        if norm.shape() != [k] {
            return Err(Error::Shape { op: "bit_linear", detail: format!("norm weight must be [{k}], got {:?}", norm.shape()) });
        }
        if !(eps.is_finite() && eps > 0.0) {
            return Err(Error::Invalid(format!("bit_linear: eps must be a positive finite number, got {eps}")));
        }
        Ok((m, k, n))
    }

    /// Returns `(m, k, n)`.
    pub fn matmul_f16(x: &impl TensorMeta, w: &impl TensorMeta) -> Result<(usize, usize, usize)> {
        const OP: &str = "matmul_f16";
        f32_nonempty(OP, x)?;
        if w.dtype() != DType::U32 {
            return Err(Error::DType { op: OP, expected: DType::U32, got: w.dtype() });
        }
        nonempty(OP, w)?;
        let (m, k) = match *x.shape() {
            [m, k] => (m, k),
            ref s => return Err(Error::Shape { op: OP, detail: format!("x must be [M, K], got {s:?}") }),
        };
        match *w.shape() {
            [n, kw] if kw == half_pairs::words_per_row(k) => Ok((m, k, n)),
            ref s => Err(Error::Shape { op: OP, detail: format!("f16 weights must be [N, {}] for K = {k}, got {s:?}", half_pairs::words_per_row(k)) }),
        }
    }

    /// x `[M, K]` f32 and u32 codes `[N, words]` for a packed product; returns `(m, k, n)`.
    fn packed_operands(op: &'static str, x: &impl TensorMeta, codes: &impl TensorMeta, scales: &impl TensorMeta) -> Result<(usize, usize, usize)> {
        f32_nonempty(op, x)?;
        if codes.dtype() != DType::U32 {
            return Err(Error::DType { op, expected: DType::U32, got: codes.dtype() });
        }
        nonempty(op, codes)?;
        f32_nonempty(op, scales)?;
        let (m, k) = match *x.shape() {
            [m, k] => (m, k),
            ref s => return Err(Error::Shape { op, detail: format!("x must be [M, K], got {s:?}") }),
        };
        match *codes.shape() {
            [n, _] => Ok((m, k, n)),
            ref s => Err(Error::Shape { op, detail: format!("codes must be [N, words], got {s:?}") }),
        }
    }

    /// Returns `(m, k, n)`.
    pub fn matmul_i8(x: &impl TensorMeta, codes: &impl TensorMeta, scales: &impl TensorMeta) -> Result<(usize, usize, usize)> {
        const OP: &str = "matmul_i8";
        let (m, k, n) = packed_operands(OP, x, codes, scales)?;
        let wpr = int8::words_per_row(k);
        if codes.shape()[1] != wpr {
            return Err(Error::Shape { op: OP, detail: format!("int8 codes must be [N, {wpr}] for K = {k}, got {:?}", codes.shape()) });
        }
        if scales.shape() != [n] {
            return Err(Error::Shape { op: OP, detail: format!("int8 scales must be [{n}] (one per output channel), got {:?}", scales.shape()) });
        }
        Ok((m, k, n))
    }

    /// Returns `(m, k, n, g)` with g the group size along K.
    pub fn matmul_i4(x: &impl TensorMeta, codes: &impl TensorMeta, scales: &impl TensorMeta) -> Result<(usize, usize, usize, usize)> {
        const OP: &str = "matmul_i4";
        let (m, k, n) = packed_operands(OP, x, codes, scales)?;
        if !k.is_multiple_of(8) || codes.shape()[1] != k / 8 {
            return Err(Error::Shape { op: OP, detail: format!("int4 codes must be [N, K/8] with K a multiple of 8, got {:?} for K = {k}", codes.shape()) });
        }
        let groups = match *scales.shape() {
            [sn, gs] if sn == n => gs,
            ref s => return Err(Error::Shape { op: OP, detail: format!("int4 scales must be [{n}, K/g], got {s:?}") }),
        };
        if !k.is_multiple_of(groups) || !(k / groups).is_multiple_of(8) {
            return Err(Error::Shape { op: OP, detail: format!("{groups} scale groups per row do not split K = {k} into groups of a multiple of 8") });
        }
        Ok((m, k, n, k / groups))
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

#[cfg(test)]
mod choice_tests {
    use super::BackendChoice;

    #[test]
    fn backend_choice_parses_serialises_and_decides() {
        for (s, c) in [("auto", BackendChoice::Auto), ("webgpu", BackendChoice::Webgpu), ("cpu", BackendChoice::Cpu)] {
            assert_eq!(BackendChoice::parse(s).unwrap(), c);
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{s}\""));
        }
        assert!(BackendChoice::parse("gpu").unwrap_err().to_string().contains("auto, webgpu, cpu"));
        assert_eq!(BackendChoice::default(), BackendChoice::Auto);
        assert!(BackendChoice::Auto.use_gpu(Ok(false)).is_ok());
        assert!(BackendChoice::Auto.use_gpu(Ok(true)).unwrap_err().contains("software"));
        assert!(BackendChoice::Webgpu.use_gpu(Ok(true)).is_ok());
        assert!(BackendChoice::Webgpu.use_gpu(Err("none".into())).unwrap_err().contains("none"));
        assert!(BackendChoice::Cpu.use_gpu(Ok(false)).is_err());
    }
}
