//! Host side of `shaders/ternary_matmul_i8.wgsl`: 8-bit activations times packed ternary weights
//! with integer additions only, dequantised per output (the second half of a BitLinear).

use super::{u32_of, Kernel};
use crate::backend::gpu::{GpuBackend, GpuTensor};
use crate::backend::ternary;
use crate::error::{DType, Result};

pub const KERNEL: Kernel = Kernel {
    label: "ternary_matmul_i8",
    source: include_str!("../../../../shaders/ternary_matmul_i8.wgsl"),
    constants: &[],
};

/// Output tile of one workgroup.
pub const TILE_M: u32 = 16;
pub const TILE_N: u32 = 64;

/// `TernaryI8Params` of the shader.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub m: u32,
    pub k: u32,
    pub n: u32,
    pub wpr: u32,
    pub qwords: u32,
    pub tiles_m: u32,
    pub tiles_n: u32,
    pub beta: f32,
}

/// q `[M, ceil(K/4)]` bytes, scales `[M]`, packed weights `[N, ceil(K/16)]` -> y `[M, N]`.
pub fn run(be: &GpuBackend, q: &GpuTensor, scales: &GpuTensor, packed: &GpuTensor, beta: f32, (m, k, n): (usize, usize, usize)) -> Result<GpuTensor> {
    let (m, kk, n) = (u32_of("bitlinear M", m)?, u32_of("bitlinear K", k)?, u32_of("bitlinear N", n)?);
    let (tiles_m, tiles_n) = (m.div_ceil(TILE_M), n.div_ceil(TILE_N));
    let params = Params {
        m,
        k: kk,
        n,
        wpr: u32_of("bitlinear words per row", ternary::words_per_row(k))?,
        qwords: u32_of("bitlinear activation words", k.div_ceil(4))?,
        tiles_m,
        tiles_n,
        beta,
    };
    let y = be.alloc(&[m as usize, n as usize], DType::F32)?;
    let groups = be.grid(u64::from(tiles_m) * u64::from(tiles_n))?;
    be.dispatch(&KERNEL, &[q.buffer(), scales.buffer(), packed.buffer(), y.buffer()], bytemuck::bytes_of(&params), groups);
    Ok(y)
}
