//! Host side of `shaders/softmax.wgsl`: softmax over the last dimension, one workgroup per row.

use super::{u32_of, Kernel};
use crate::backend::gpu::{GpuBackend, GpuTensor};
use crate::backend::TensorMeta;
use crate::error::{DType, Result};

pub const KERNEL: Kernel =
    Kernel { label: "softmax", source: include_str!("../../../../shaders/softmax.wgsl"), constants: &[] };

/// `SoftmaxParams` of the shader.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub rows: u32,
    pub d: u32,
    pub _pad: [u32; 2],
}

/// x `[.., D]` seen as `[rows, D]` -> y, same shape.
pub fn run(be: &GpuBackend, x: &GpuTensor, rows: usize, d: usize) -> Result<GpuTensor> {
    let params = Params { rows: u32_of("softmax rows", rows)?, d: u32_of("softmax row length", d)?, _pad: [0; 2] };
    let y = be.alloc(x.shape(), DType::F32)?;
    let groups = be.grid(rows as u64)?;
    be.dispatch(&KERNEL, &[x.buffer(), y.buffer()], bytemuck::bytes_of(&params), groups);
    Ok(y)
}
