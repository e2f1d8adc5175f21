//! Host side of `shaders/ternary_matmul.wgsl`: `x · Tᵀ` with T ternary and packed 16 weights per
//! u32 (see `backend::ternary`), additions and subtractions only.
//!
//! The kernel cannot refuse invalid words: it treats code 3 as 0 and never reads the padding.
//! Weights are validated once on the host with `ternary::validate` when a model is loaded.

use super::{u32_of, Kernel};
use crate::backend::gpu::{GpuBackend, GpuTensor};
use crate::backend::ternary;
use crate::error::{DType, Result};

pub const KERNEL: Kernel =
    Kernel { label: "ternary_matmul", source: include_str!("../../../../shaders/ternary_matmul.wgsl"), constants: &[] };

/// Output tile of one workgroup (the shader's BM x BN).
pub const TILE_M: u32 = 16;
pub const TILE_N: u32 = 64;

/// `TernaryParams` of the shader.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub m: u32,
    pub k: u32,
    pub n: u32,
    /// Packed words per weight row: ceil(K / 16).
    pub wpr: u32,
    pub tiles_m: u32,
    pub tiles_n: u32,
    pub _pad: [u32; 2],
}

/// x `[M, K]` f32, packed `[N, ceil(K/16)]` u32 -> y `[M, N]`. `(m, k, n)` from
/// `check::ternary_matmul`.
pub fn run(be: &GpuBackend, x: &GpuTensor, packed: &GpuTensor, (m, k, n): (usize, usize, usize)) -> Result<GpuTensor> {
    let params = Params {
        m: u32_of("ternary_matmul M", m)?,
        k: u32_of("ternary_matmul K", k)?,
        n: u32_of("ternary_matmul N", n)?,
        wpr: u32_of("ternary_matmul words per row", ternary::words_per_row(k))?,
        tiles_m: u32_of("ternary_matmul M", m)?.div_ceil(TILE_M),
        tiles_n: u32_of("ternary_matmul N", n)?.div_ceil(TILE_N),
        _pad: [0; 2],
    };
    let y = be.alloc(&[m, n], DType::F32)?;
    let groups = be.grid(u64::from(params.tiles_m) * u64::from(params.tiles_n))?;
    be.dispatch(&KERNEL, &[x.buffer(), packed.buffer(), y.buffer()], bytemuck::bytes_of(&params), groups);
    Ok(y)
}
