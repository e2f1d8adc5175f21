//! The CPU backend on candle-core: the reference implementation of every op.
//!
//! Composite ops (softmax, RMSNorm, sigmoid) are written from candle's basic tensor ops on
//! purpose: they are the readable definition the GPU kernels are checked against, and (unlike
//! candle-nn's fused versions) they also record gradients for training.

use super::{check, Backend, BackendInfo, Binary, Data, HostTensor, Reduce, TensorMeta, Unary};
use crate::error::{DType, Error, Result};
use candle_core::{Device, Tensor};

/// A candle tensor plus its shape (kept as plain `usize`s for the shared checks).
#[derive(Clone, Debug)]
pub struct CpuTensor {
    pub t: Tensor,
    shape: Vec<usize>,
    dtype: DType,
}

impl CpuTensor {
    fn new(t: Tensor) -> Result<Self> {
        let dtype = match t.dtype() {
            candle_core::DType::F32 => DType::F32,
            candle_core::DType::U32 => DType::U32,
            other => return Err(Error::Cpu(format!("unsupported candle dtype {other:?}"))),
        };
        Ok(Self { shape: t.dims().to_vec(), t, dtype })
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

#[derive(Clone, Debug, Default)]
pub struct CpuBackend;

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend
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
        check::matmul(a, b, trans_b)?;
        let bt = if trans_b { b.t.t()? } else { b.t.clone() };
        let out = if a.shape.len() == 3 && b.shape.len() == 2 { a.t.broadcast_matmul(&bt)? } else { a.t.matmul(&bt)? };
        CpuTensor::new(out)
    }

    fn unary(&self, op: Unary, x: &CpuTensor) -> Result<CpuTensor> {
        check::f32_nonempty("unary", x)?;
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
        };
        CpuTensor::new(y)
    }

    fn binary(&self, op: Binary, a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
        check::binary(a, b)?;
        let (a, b) = (&a.t, &b.t);
        let b = if b.dims() != a.dims() && b.elem_count() == 1 { b.flatten_all()? } else { b.clone() };
        let b = &b;
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
        let m = x.t.max_keepdim(last)?;
        let e = x.t.broadcast_sub(&m)?.exp()?;
        let s = e.sum_keepdim(last)?;
        CpuTensor::new(e.broadcast_div(&s)?)
    }

    fn rms_norm(&self, x: &CpuTensor, w: &CpuTensor, eps: f32) -> Result<CpuTensor> {
        check::rms_norm(x, w, eps)?;
        let last = x.shape.len() - 1;
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
}
