//! Host side of `shaders/cumsum.wgsl`: inclusive prefix sum over the last dimension, one
//! workgroup per row.

use super::{u32_of, Kernel};
use crate::backend::gpu::{GpuBackend, GpuTensor};
use crate::backend::TensorMeta;
use crate::error::{DType, Result};

pub const KERNEL: Kernel =
    Kernel { label: "cumsum", source: include_str!("../../../../shaders/cumsum.wgsl"), constants: &[] };

/// `CumsumParams` of the shader.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub rows: u32,
    pub d: u32,
    pub _pad: [u32; 2],
}

/// x `[.., D]` seen as `[rows, D]` -> y, same shape.
pub fn run(be: &GpuBackend, x: &GpuTensor, rows: usize, d: usize) -> Result<GpuTensor> {
    let params = Params { rows: u32_of("cumsum rows", rows)?, d: u32_of("cumsum row length", d)?, _pad: [0; 2] };
    let y = be.alloc(x.shape(), DType::F32)?;
    let groups = be.grid(rows as u64)?;
    be.dispatch(&KERNEL, &[x.buffer(), y.buffer()], bytemuck::bytes_of(&params), groups);
    Ok(y)
}
