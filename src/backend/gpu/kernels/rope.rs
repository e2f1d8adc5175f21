//! Host side of `shaders/rope.wgsl`: rotary embedding, one thread per element.

use super::{u32_of, Kernel, WG};
use crate::backend::gpu::{GpuBackend, GpuTensor};
use crate::backend::TensorMeta;
use crate::error::{DType, Result};

pub const KERNEL: Kernel =
    Kernel { label: "rope", source: include_str!("../../../../shaders/rope.wgsl"), constants: &[("WG", WG as f64)] };

/// `RopeParams` of the shader.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub total: u32,
    pub t: u32,
    pub hd: u32,
    pub _pad: u32,
}

/// x `[N, T, hd]`, cos/sin `[T, hd]` -> `[N, T, hd]` (shapes checked by `check::rope`).
pub fn run(be: &GpuBackend, x: &GpuTensor, cos: &GpuTensor, sin: &GpuTensor, t: usize, hd: usize) -> Result<GpuTensor> {
    let total = u32_of("rope elements", x.numel())?;
    let params = Params { total, t: u32_of("rope T", t)?, hd: u32_of("rope head dim", hd)?, _pad: 0 };
    let y = be.alloc(x.shape(), DType::F32)?;
    let groups = be.grid(u64::from(total.div_ceil(WG)))?;
    be.dispatch(&KERNEL, &[x.buffer(), cos.buffer(), sin.buffer(), y.buffer()], bytemuck::bytes_of(&params), groups);
    Ok(y)
}
