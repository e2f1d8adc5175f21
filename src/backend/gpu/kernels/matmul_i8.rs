//! Host side of `shaders/matmul_i8.wgsl`: `x · Wᵀ` with W int8 per output channel, read from its
//! packed codes (4 per u32, `backend::int8`) and scaled once per output.
//!
//! The kernel cannot refuse invalid words: byte `0x80` decodes as −128. Weights are validated once
//! on the host with `int8::validate` when a model is loaded.

use super::{u32_of, Kernel};
use crate::backend::gpu::{GpuBackend, GpuTensor};
use crate::backend::int8;
use crate::error::{DType, Result};

pub const KERNEL: Kernel = Kernel { label: "matmul_i8", source: include_str!("../../../../shaders/matmul_i8.wgsl"), constants: &[] };

/// Output tile of one workgroup (the shader's BM x BN).
pub const TILE_M: u32 = 16;
pub const TILE_N: u32 = 64;

/// `I8Params` of the shader.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub m: u32,
    pub k: u32,
    pub n: u32,
    /// Packed words per weight row: ceil(K / 4).
    pub wpr: u32,
    pub tiles_m: u32,
    pub tiles_n: u32,
    pub _pad: [u32; 2],
}

/// x `[M, K]` f32, codes `[N, ceil(K/4)]` u32, scales `[N]` -> y `[M, N]`. `(m, k, n)` from
/// `check::matmul_i8`.
pub fn run(be: &GpuBackend, x: &GpuTensor, codes: &GpuTensor, scales: &GpuTensor, (m, k, n): (usize, usize, usize)) -> Result<GpuTensor> {
    let params = Params {
        m: u32_of("matmul_i8 M", m)?,
        k: u32_of("matmul_i8 K", k)?,
        n: u32_of("matmul_i8 N", n)?,
        wpr: u32_of("matmul_i8 words per row", int8::words_per_row(k))?,
        tiles_m: u32_of("matmul_i8 M", m)?.div_ceil(TILE_M),
        tiles_n: u32_of("matmul_i8 N", n)?.div_ceil(TILE_N),
        _pad: [0; 2],
    };
    let y = be.alloc(&[m, n], DType::F32)?;
    let groups = be.grid(u64::from(params.tiles_m) * u64::from(params.tiles_n))?;
    be.dispatch(&KERNEL, &[x.buffer(), codes.buffer(), scales.buffer(), y.buffer()], bytemuck::bytes_of(&params), groups);
    Ok(y)
}
