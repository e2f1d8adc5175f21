//! Host side of `shaders/gla.wgsl`: chunkwise gated linear attention, one workgroup per (head,
//! tile of value columns) carrying its slice of the state through the whole sequence.

use super::{u32_of, Kernel};
use crate::backend::gpu::{GpuBackend, GpuTensor};
use crate::error::{DType, Result};

pub const KERNEL: Kernel = Kernel { label: "gla", source: include_str!("../../../../shaders/gla.wgsl"), constants: &[] };

/// Workgroup-memory budgets of the shader (in f32): `bc` [L, dk] and `st` [dk, BV].
const DECAY_SLOTS: usize = 2048;
const STATE_SLOTS: usize = 1024;
/// Longest chunk the shader's `a` [L, L] holds.
pub const MAX_CHUNK: usize = 16;

/// `GlaParams` of the shader.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n: u32,
    pub t: u32,
    pub dk: u32,
    pub dv: u32,
    pub chunk: u32,
    pub bv: u32,
    pub tiles_v: u32,
    pub _pad: u32,
}

/// The kernel's (chunk length, value-column tile) for these sizes, or `None` when dk is too wide
/// for its workgroup memory (the backend then runs the composed ops).
pub fn geometry(chunk: usize, dk: usize, dv: usize) -> Option<(usize, usize)> {
    if dk == 0 || dk > STATE_SLOTS {
        return None;
    }
    let l = chunk.min(MAX_CHUNK).min(DECAY_SLOTS / dk).max(1);
    let bv = (STATE_SLOTS / dk).min(dv).max(1);
    Some((l, bv))
}

/// q, k, lg `[N, T, dk]`, v `[N, T, dv]` -> o `[N, T, dv]`; `(l, bv)` from [`geometry`].
#[allow(clippy::too_many_arguments)]
pub fn run(
    be: &GpuBackend,
    q: &GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
    lg: &GpuTensor,
    (n, t, dk, dv): (usize, usize, usize, usize),
    (l, bv): (usize, usize),
) -> Result<GpuTensor> {
    let tiles_v = dv.div_ceil(bv);
    let params = Params {
        n: u32_of("gla heads", n)?,
        t: u32_of("gla T", t)?,
        dk: u32_of("gla key dim", dk)?,
        dv: u32_of("gla value dim", dv)?,
        chunk: u32_of("gla chunk", l)?,
        bv: u32_of("gla tile", bv)?,
        tiles_v: u32_of("gla tiles", tiles_v)?,
        _pad: 0,
    };
    let o = be.alloc(&[n, t, dv], DType::F32)?;
    let groups = be.grid((n as u64).saturating_mul(tiles_v as u64))?;
    be.dispatch(&KERNEL, &[q.buffer(), k.buffer(), v.buffer(), lg.buffer(), o.buffer()], bytemuck::bytes_of(&params), groups);
    Ok(o)
}
