//! Host side of `shaders/matmul.wgsl`: tiled (batched) matrix product, optionally with bᵀ.

use super::{u32_of, Kernel};
use crate::backend::gpu::{GpuBackend, GpuTensor};
use crate::backend::TensorMeta;
use crate::error::{DType, Result};

pub const KERNEL: Kernel =
    Kernel { label: "matmul", source: include_str!("../../../../shaders/matmul.wgsl"), constants: &[] };

/// Output tile of one workgroup (the shader's BM = BN).
pub const TILE: u32 = 64;

/// `MatmulParams` of the shader.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub m: u32,
    pub k: u32,
    pub n: u32,
    pub batch: u32,
    /// Elements between consecutive batch entries of b: K * N, or 0 for a rank-2 b shared by all.
    pub b_batch_stride: u32,
    pub trans_b: u32,
    pub tiles_m: u32,
    pub tiles_n: u32,
}

/// a `[M, K]` / `[B, M, K]`; b `[K, N]` / `[B, K, N]` (`[N, K]` / `[B, N, K]` with `trans_b`)
/// -> `out_shape` (`[M, N]` / `[B, M, N]`). `dims` = (B, M, K, N) from `check::matmul`.
pub fn run(
    be: &GpuBackend,
    a: &GpuTensor,
    b: &GpuTensor,
    trans_b: bool,
    (batch, m, k, n): (usize, usize, usize, usize),
    out_shape: &[usize],
) -> Result<GpuTensor> {
    let (m, k, n, batch) =
        (u32_of("matmul M", m)?, u32_of("matmul K", k)?, u32_of("matmul N", n)?, u32_of("matmul B", batch)?);
    let b_batch_stride =
        if b.shape().len() == 3 { u32_of("matmul b batch stride", b.numel() / batch as usize)? } else { 0 };
    let (tiles_m, tiles_n) = (m.div_ceil(TILE), n.div_ceil(TILE));
    let params = Params { m, k, n, batch, b_batch_stride, trans_b: trans_b as u32, tiles_m, tiles_n };
    let c = be.alloc(out_shape, DType::F32)?;
    let groups = be.grid(u64::from(tiles_m) * u64::from(tiles_n) * u64::from(batch))?;
    be.dispatch(&KERNEL, &[a.buffer(), b.buffer(), c.buffer()], bytemuck::bytes_of(&params), groups);
    Ok(c)
}
