//! Host side of `shaders/reduce.wgsl`: sum / mean / max / min / argmax over the last dimension.

use super::{u32_of, Kernel};
use crate::backend::gpu::{GpuBackend, GpuTensor};
use crate::backend::{check, Reduce};
use crate::error::{DType, Result};

pub const KERNEL: Kernel =
    Kernel { label: "reduce", source: include_str!("../../../../shaders/reduce.wgsl"), constants: &[] };

/// `ReduceParams` of the shader.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub rows: u32,
    pub d: u32,
    /// `Reduce::code()`.
    pub op: u32,
    pub _pad: u32,
}

/// x `[.., D]` seen as `[rows, D]` -> y `[.., 1]`: f32, or u32 indices for ArgMax. The shader
/// writes raw 32-bit words either way; the dtype here says how to read them.
pub fn run(be: &GpuBackend, op: Reduce, x: &GpuTensor, rows: usize, d: usize) -> Result<GpuTensor> {
    let params =
        Params { rows: u32_of("reduce rows", rows)?, d: u32_of("reduce row length", d)?, op: op.code(), _pad: 0 };
    let dtype = if op == Reduce::ArgMax { DType::U32 } else { DType::F32 };
    let y = be.alloc(&check::reduce_shape(x), dtype)?;
    let groups = be.grid(rows as u64)?;
    be.dispatch(&KERNEL, &[x.buffer(), y.buffer()], bytemuck::bytes_of(&params), groups);
    Ok(y)
}
