//! Host side of `shaders/gather.wgsl`: embedding lookup, rows of a table picked by host ids.

use super::{u32_of, Kernel, WG};
use crate::backend::gpu::{GpuBackend, GpuTensor};
use crate::error::{DType, Result};

pub const KERNEL: Kernel = Kernel {
    label: "gather",
    source: include_str!("../../../../shaders/gather.wgsl"),
    constants: &[("WG", WG as f64)],
};

/// `GatherParams` of the shader.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// T * D output elements.
    pub n_out: u32,
    pub d: u32,
    /// N, rows of the table.
    pub rows: u32,
    pub _pad: u32,
}

/// table `[N, D]`, ids `[T]` (already bounds-checked) -> y `[T, D]`.
pub fn run(be: &GpuBackend, table: &GpuTensor, ids: &[u32], n: usize, d: usize) -> Result<GpuTensor> {
    let t = ids.len();
    // Saturating: an overflow becomes usize::MAX, which u32_of then refuses.
    let n_out = u32_of("gather elements", t.saturating_mul(d))?;
    let params = Params { n_out, d: u32_of("gather row length", d)?, rows: u32_of("gather table rows", n)?, _pad: 0 };
    let ids_buf = be.upload_words("gather ids", bytemuck::cast_slice(ids))?;
    let y = be.alloc(&[t, d], DType::F32)?;
    let groups = be.grid(u64::from(n_out.div_ceil(WG)))?;
    be.dispatch(&KERNEL, &[table.buffer(), ids_buf.get(), y.buffer()], bytemuck::bytes_of(&params), groups);
    Ok(y)
}
