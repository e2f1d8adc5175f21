//! Host side of `shaders/binary.wgsl`: element-wise functions of two tensors with NumPy
//! broadcasting of both operands.

use super::{collapse, dims, u32_of, Kernel, WG};
use crate::backend::gpu::{GpuBackend, GpuTensor};
use crate::backend::{Binary, TensorMeta};
use crate::error::{DType, Result};

pub const KERNEL: Kernel = Kernel {
    label: "binary",
    source: include_str!("../../../../shaders/binary.wgsl"),
    constants: &[("WG", WG as f64)],
};

/// `BinaryParams` of the shader.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n: u32,
    pub rank: u32,
    /// `Binary::code()`.
    pub op: u32,
    pub _pad: u32,
    /// y's shape after collapsing, innermost dim last; unused slots 0.
    pub shape: [u32; super::MAX_RANK],
    /// Strides of a and b over that shape, 0 on broadcast dims.
    pub a_strides: [u32; super::MAX_RANK],
    pub b_strides: [u32; super::MAX_RANK],
}

/// Row-major strides of `shape` as seen from the broadcast shape `out` (aligned from the right):
/// 0 on a dim that is missing or of size 1, so every output coordinate reads a valid element.
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let lead = out.len() - shape.len();
    let mut strides = vec![0; out.len()];
    let mut s = 1;
    for d in (0..shape.len()).rev() {
        strides[lead + d] = if shape[d] == 1 { 0 } else { s };
        s *= shape[d];
    }
    strides
}

/// a, b broadcastable to `out_shape` (from `check::binary`) -> y `out_shape`.
pub fn run(be: &GpuBackend, op: Binary, a: &GpuTensor, b: &GpuTensor, out_shape: &[usize]) -> Result<GpuTensor> {
    let y = be.alloc(out_shape, DType::F32)?;
    let n = u32_of("binary elements", y.numel())?;
    let (shape, [sa, sb]) =
        collapse(out_shape, [&broadcast_strides(a.shape(), out_shape), &broadcast_strides(b.shape(), out_shape)]);
    let params = Params {
        n,
        rank: u32_of("binary rank", shape.len())?,
        op: op.code(),
        _pad: 0,
        shape: dims("binary", &shape)?,
        a_strides: dims("binary", &sa)?,
        b_strides: dims("binary", &sb)?,
    };
    let groups = be.grid(u64::from(n.div_ceil(WG)))?;
    be.dispatch(&KERNEL, &[a.buffer(), b.buffer(), y.buffer()], bytemuck::bytes_of(&params), groups);
    Ok(y)
}
