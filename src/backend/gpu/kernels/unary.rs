//! Host side of `shaders/unary.wgsl`: element-wise functions of one tensor.

use super::{u32_of, Kernel, WG};
use crate::backend::gpu::{GpuBackend, GpuTensor};
use crate::backend::{TensorMeta, Unary};
use crate::error::{DType, Result};

pub const KERNEL: Kernel =
    Kernel { label: "unary", source: include_str!("../../../../shaders/unary.wgsl"), constants: &[("WG", WG as f64)] };

/// `UnaryParams` of the shader.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n: u32,
    /// `Unary::code()`.
    pub op: u32,
    /// Affine parameters (ignored by the other ops).
    pub mul: f32,
    pub add: f32,
    /// Clamp bounds (ignored by the other ops).
    pub lo: f32,
    pub hi: f32,
    pub _pad: [u32; 2],
}

/// x `[..]` -> y `[..]`.
pub fn run(be: &GpuBackend, op: Unary, x: &GpuTensor) -> Result<GpuTensor> {
    let n = u32_of("unary elements", x.numel())?;
    let (mul, add) = match op {
        Unary::Affine { mul, add } => (mul, add),
        _ => (1.0, 0.0),
    };
    let (lo, hi) = match op {
        Unary::Clamp { lo, hi } => (lo, hi),
        _ => (0.0, 0.0),
    };
    let y = be.alloc(x.shape(), DType::F32)?;
    let params = Params { n, op: op.code(), mul, add, lo, hi, _pad: [0; 2] };
    let groups = be.grid(u64::from(n.div_ceil(WG)))?;
    be.dispatch(&KERNEL, &[x.buffer(), y.buffer()], bytemuck::bytes_of(&params), groups);
    Ok(y)
}
