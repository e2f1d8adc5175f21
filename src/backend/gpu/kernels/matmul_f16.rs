//! Host side of `shaders/matmul_f16.wgsl`: x · Wᵀ with W stored as packed f16 pairs.

use super::{u32_of, Kernel};
use crate::backend::gpu::{GpuBackend, GpuTensor};
use crate::error::{DType, Result};

pub const KERNEL: Kernel =
    Kernel { label: "matmul_f16", source: include_str!("../../../../shaders/matmul_f16.wgsl"), constants: &[] };

/// Output tile of one workgroup (the shader's BM = BN).
pub const TILE: u32 = 64;

/// `MatmulF16Params` of the shader.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub m: u32,
    pub k: u32,
    pub n: u32,
    pub kw: u32,
    pub tiles_m: u32,
    pub tiles_n: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

/// x `[M, K]`, w `[N, ceil(K/2)]` packed halves -> `[M, N]` (checked by `check::matmul_f16`).
pub fn run(be: &GpuBackend, x: &GpuTensor, w: &GpuTensor, (m, k, n): (usize, usize, usize)) -> Result<GpuTensor> {
    let (mm, kk, nn) = (u32_of("matmul_f16 M", m)?, u32_of("matmul_f16 K", k)?, u32_of("matmul_f16 N", n)?);
    let (tiles_m, tiles_n) = (mm.div_ceil(TILE), nn.div_ceil(TILE));
    let params = Params { m: mm, k: kk, n: nn, kw: u32_of("matmul_f16 words", k.div_ceil(2))?, tiles_m, tiles_n, _pad0: 0, _pad1: 0 };
    let c = be.alloc(&[m, n], DType::F32)?;
    let groups = be.grid(u64::from(tiles_m) * u64::from(tiles_n))?;
    be.dispatch(&KERNEL, &[x.buffer(), w.buffer(), c.buffer()], bytemuck::bytes_of(&params), groups);
    Ok(c)
}
