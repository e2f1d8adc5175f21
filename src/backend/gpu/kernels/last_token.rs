//! Host side of `shaders/last_token.wgsl`: last-token pooling of right-padded sequences.

use super::{u32_of, Kernel, WG};
use crate::backend::gpu::{GpuBackend, GpuTensor};
use crate::error::{DType, Result};

pub const KERNEL: Kernel = Kernel {
    label: "last_token",
    source: include_str!("../../../../shaders/last_token.wgsl"),
    constants: &[("WG", WG as f64)],
};

/// `LastTokenParams` of the shader.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub total: u32,
    pub t: u32,
    pub h: u32,
    pub _pad: u32,
}

/// x `[B, T, H]`, lengths (checked, 1..=T) -> `[B, H]`.
pub fn run(be: &GpuBackend, x: &GpuTensor, lengths: &[usize], (b, t, h): (usize, usize, usize)) -> Result<GpuTensor> {
    let total = u32_of("last_token elements", b.saturating_mul(h))?;
    let params = Params { total, t: u32_of("last_token T", t)?, h: u32_of("last_token H", h)?, _pad: 0 };
    let lens: Vec<u32> = lengths.iter().map(|&l| u32_of("last_token length", l)).collect::<Result<_>>()?;
    let lens = be.upload_words("last_token lengths", bytemuck::cast_slice(&lens))?;
    let y = be.alloc(&[b, h], DType::F32)?;
    let groups = be.grid(u64::from(total.div_ceil(WG)))?;
    be.dispatch(&KERNEL, &[x.buffer(), lens.get(), y.buffer()], bytemuck::bytes_of(&params), groups);
    Ok(y)
}
