//! Host side of `shaders/matmul_f16_arith.wgsl`: x · Wᵀ with W stored as packed f16 pairs and f16
//! multiplies (f32 sums). Same bindings, uniform and tiling as `matmul_f16`; only the device
//! differs: it must have been opened with `shader-f16` ([`crate::backend::gpu::GpuContext::has_shader_f16`]).

use super::matmul_f16::{Params, TILE};
use super::{u32_of, Kernel};
use crate::backend::gpu::{GpuBackend, GpuTensor};
use crate::error::{DType, Error, Result};

pub const KERNEL: Kernel =
    Kernel { label: "matmul_f16_arith", source: include_str!("../../../../shaders/matmul_f16_arith.wgsl"), constants: &[] };

/// x `[M, K]`, w `[N, ceil(K/2)]` packed halves -> `[M, N]` (checked by `check::matmul_f16`).
pub fn run(be: &GpuBackend, x: &GpuTensor, w: &GpuTensor, (m, k, n): (usize, usize, usize)) -> Result<GpuTensor> {
    if !be.context().has_shader_f16() {
        // The pipeline would fail to compile (`enable f16;`): refuse before recording anything.
        return Err(Error::Gpu("matmul_f16_arith needs a device with the shader-f16 feature".into()));
    }
    let (mm, kk, nn) = (u32_of("matmul_f16_arith M", m)?, u32_of("matmul_f16_arith K", k)?, u32_of("matmul_f16_arith N", n)?);
    let (tiles_m, tiles_n) = (mm.div_ceil(TILE), nn.div_ceil(TILE));
    let params = Params { m: mm, k: kk, n: nn, kw: u32_of("matmul_f16_arith words", k.div_ceil(2))?, tiles_m, tiles_n, _pad0: 0, _pad1: 0 };
    let c = be.alloc(&[m, n], DType::F32)?;
    let groups = be.grid(u64::from(tiles_m) * u64::from(tiles_n))?;
    be.dispatch(&KERNEL, &[x.buffer(), w.buffer(), c.buffer()], bytemuck::bytes_of(&params), groups);
    Ok(c)
}
