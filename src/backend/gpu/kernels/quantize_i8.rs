//! Host side of `shaders/quantize_i8.wgsl`: RMSNorm + absmax 8-bit activations, packed four per
//! word (the first half of a BitLinear on the GPU).

use super::{u32_of, Kernel};
use crate::backend::gpu::{GpuBackend, GpuTensor};
use crate::error::{DType, Result};

pub const KERNEL: Kernel =
    Kernel { label: "quantize_i8", source: include_str!("../../../../shaders/quantize_i8.wgsl"), constants: &[] };

/// `QuantizeParams` of the shader.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub rows: u32,
    pub k: u32,
    pub words: u32,
    pub eps: f32,
}

/// x `[M, K]`, norm `[K]` -> (q u32 `[M, ceil(K/4)]` signed bytes, scales `[M]`).
pub fn run(be: &GpuBackend, x: &GpuTensor, norm: &GpuTensor, eps: f32, m: usize, k: usize) -> Result<(GpuTensor, GpuTensor)> {
    let words = k.div_ceil(4);
    let params = Params { rows: u32_of("quantize rows", m)?, k: u32_of("quantize K", k)?, words: u32_of("quantize words", words)?, eps };
    let q = be.alloc(&[m, words], DType::U32)?;
    let s = be.alloc(&[m], DType::F32)?;
    let groups = be.grid(m as u64)?;
    be.dispatch(&KERNEL, &[x.buffer(), norm.buffer(), q.buffer(), s.buffer()], bytemuck::bytes_of(&params), groups);
    Ok((q, s))
}
