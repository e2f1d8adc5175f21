//! Host side of `shaders/attention.wgsl`: fused causal attention (online softmax), one workgroup
//! per (head, query row).

use super::{u32_of, Kernel};
use crate::backend::gpu::{GpuBackend, GpuTensor};
use crate::error::{DType, Result};

pub const KERNEL: Kernel =
    Kernel { label: "attention", source: include_str!("../../../../shaders/attention.wgsl"), constants: &[] };

/// Largest head dim (q/k and v) the kernel holds: its `MAXD`.
pub const MAX_HEAD_DIM: usize = 256;

/// `AttentionParams` of the shader.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub nh: u32,
    pub kvh: u32,
    pub t: u32,
    pub hd: u32,
    pub dv: u32,
    pub window: u32,
    pub scale: f32,
    pub _pad: u32,
}

/// q `[nh, T, hd]`, k `[kvh, T, hd]`, v `[kvh, T, dv]` -> `[nh, T, dv]` (checked by
/// `check::attention`; hd, dv <= [`MAX_HEAD_DIM`]).
#[allow(clippy::too_many_arguments)]
pub fn run(
    be: &GpuBackend,
    q: &GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
    scale: f32,
    window: Option<usize>,
    (nh, kvh, t, hd, dv): (usize, usize, usize, usize, usize),
) -> Result<GpuTensor> {
    let params = Params {
        nh: u32_of("attention heads", nh)?,
        kvh: u32_of("attention kv heads", kvh)?,
        t: u32_of("attention T", t)?,
        hd: u32_of("attention head dim", hd)?,
        dv: u32_of("attention value dim", dv)?,
        // 0 = no window; a window longer than the sequence is the same as none.
        window: u32_of("attention window", window.unwrap_or(0).min(t))?,
        scale,
        _pad: 0,
    };
    let o = be.alloc(&[nh, t, dv], DType::F32)?;
    let groups = be.grid((nh as u64).saturating_mul(t as u64))?;
    be.dispatch(&KERNEL, &[q.buffer(), k.buffer(), v.buffer(), o.buffer()], bytemuck::bytes_of(&params), groups);
    Ok(o)
}
