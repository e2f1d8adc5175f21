//! Host side of `shaders/binary.wgsl`: element-wise functions of two tensors, `b` broadcast.

use super::{u32_of, Kernel, WG};
use crate::backend::gpu::{GpuBackend, GpuTensor};
use crate::backend::{Binary, TensorMeta};
use crate::error::{DType, Result};

pub const KERNEL: Kernel = Kernel {
    label: "binary",
    source: include_str!("../../../../shaders/binary.wgsl"),
    constants: &[("WG", WG as f64)],
};

/// `BinaryParams` of the shader.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n: u32,
    /// Elements of b; b is read at `i % b_len` (same shape, suffix, or a single element).
    pub b_len: u32,
    /// `Binary::code()`.
    pub op: u32,
    pub _pad: u32,
}

/// a `[..]`, b (a's shape, a suffix of it, or one element) -> y with a's shape.
pub fn run(be: &GpuBackend, op: Binary, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
    let n = u32_of("binary elements", a.numel())?;
    let b_len = u32_of("binary b elements", b.numel())?;
    let y = be.alloc(a.shape(), DType::F32)?;
    let params = Params { n, b_len, op: op.code(), _pad: 0 };
    let groups = be.grid(u64::from(n.div_ceil(WG)))?;
    be.dispatch(&KERNEL, &[a.buffer(), b.buffer(), y.buffer()], bytemuck::bytes_of(&params), groups);
    Ok(y)
}
