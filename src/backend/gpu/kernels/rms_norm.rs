//! Host side of `shaders/rms_norm.wgsl`: RMSNorm over the last dimension, one workgroup per row.

use super::{u32_of, Kernel};
use crate::backend::gpu::{GpuBackend, GpuTensor};
use crate::backend::TensorMeta;
use crate::error::{DType, Result};

pub const KERNEL: Kernel =
    Kernel { label: "rms_norm", source: include_str!("../../../../shaders/rms_norm.wgsl"), constants: &[] };

/// `RmsNormParams` of the shader.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub rows: u32,
    pub d: u32,
    pub eps: f32,
    pub _pad: u32,
}

/// x `[.., D]` seen as `[rows, D]`, w `[D]` -> y with x's shape.
pub fn run(be: &GpuBackend, x: &GpuTensor, w: &GpuTensor, eps: f32, rows: usize, d: usize) -> Result<GpuTensor> {
    let params = Params { rows: u32_of("rms_norm rows", rows)?, d: u32_of("rms_norm row length", d)?, eps, _pad: 0 };
    let y = be.alloc(x.shape(), DType::F32)?;
    let groups = be.grid(rows as u64)?;
    be.dispatch(&KERNEL, &[x.buffer(), w.buffer(), y.buffer()], bytemuck::bytes_of(&params), groups);
    Ok(y)
}
