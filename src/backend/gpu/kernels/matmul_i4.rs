//! Host side of `shaders/matmul_i4.wgsl`: `x · Wᵀ` with W int4 per (output channel, group of g
//! inputs), read from its packed codes (8 per u32, `compress::quant::int4`), each group's sum
//! scaled once.
//!
//! The kernel cannot refuse invalid words: nibble `0x8` decodes as −8. Weights are validated once
//! on the host when a model is loaded.

use super::{u32_of, Kernel};
use crate::backend::gpu::{GpuBackend, GpuTensor};
use crate::error::{DType, Result};

pub const KERNEL: Kernel = Kernel { label: "matmul_i4", source: include_str!("../../../../shaders/matmul_i4.wgsl"), constants: &[] };

/// Output tile of one workgroup (the shader's BM x BN).
pub const TILE_M: u32 = 16;
pub const TILE_N: u32 = 64;

/// `I4Params` of the shader.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub m: u32,
    pub k: u32,
    pub n: u32,
    /// Packed words per weight row: K / 8.
    pub wpr: u32,
    pub tiles_m: u32,
    pub tiles_n: u32,
    /// Scale groups per row: K / g.
    pub groups: u32,
    /// Words per group: g / 8.
    pub gw: u32,
}

/// x `[M, K]` f32, codes `[N, K/8]` u32, scales `[N, K/g]` -> y `[M, N]`. `(m, k, n, g)` from
/// `check::matmul_i4`.
pub fn run(be: &GpuBackend, x: &GpuTensor, codes: &GpuTensor, scales: &GpuTensor, (m, k, n, g): (usize, usize, usize, usize)) -> Result<GpuTensor> {
    let params = Params {
        m: u32_of("matmul_i4 M", m)?,
        k: u32_of("matmul_i4 K", k)?,
        n: u32_of("matmul_i4 N", n)?,
        wpr: u32_of("matmul_i4 words per row", k / 8)?,
        tiles_m: u32_of("matmul_i4 M", m)?.div_ceil(TILE_M),
        tiles_n: u32_of("matmul_i4 N", n)?.div_ceil(TILE_N),
        groups: u32_of("matmul_i4 groups", k / g)?,
        gw: u32_of("matmul_i4 words per group", g / 8)?,
    };
    let y = be.alloc(&[m, n], DType::F32)?;
    let groups = be.grid(u64::from(params.tiles_m) * u64::from(params.tiles_n))?;
    be.dispatch(&KERNEL, &[x.buffer(), codes.buffer(), scales.buffer(), y.buffer()], bytemuck::bytes_of(&params), groups);
    Ok(y)
}
