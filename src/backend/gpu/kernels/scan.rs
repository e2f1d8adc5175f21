//! Host side of `shaders/scan.wgsl`: the linear recurrence `h_t = a_t ⊙ h_{t-1} + b_t`, one
//! invocation per channel.

use super::{u32_of, Kernel, WG};
use crate::backend::gpu::{GpuBackend, GpuTensor};
use crate::error::{DType, Result};

pub const KERNEL: Kernel =
    Kernel { label: "scan", source: include_str!("../../../../shaders/scan.wgsl"), constants: &[("WG", WG as f64)] };

/// `ScanParams` of the shader.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub t: u32,
    pub d: u32,
    pub _pad: [u32; 2],
}

/// a, b `[T, D]` -> h `[T, D]`.
pub fn run(be: &GpuBackend, a: &GpuTensor, b: &GpuTensor, t: usize, d: usize) -> Result<GpuTensor> {
    // The shader indexes up to T * D.
    u32_of("scan elements", t.saturating_mul(d))?;
    let params = Params { t: u32_of("scan T", t)?, d: u32_of("scan D", d)?, _pad: [0; 2] };
    let h = be.alloc(&[t, d], DType::F32)?;
    let groups = be.grid(u64::from(params.d.div_ceil(WG)))?;
    be.dispatch(&KERNEL, &[a.buffer(), b.buffer(), h.buffer()], bytemuck::bytes_of(&params), groups);
    Ok(h)
}
