//! Host side of `shaders/copy.wgsl`: the strided copy behind permute, narrow and concat (any
//! dtype: the kernel moves raw 32-bit words).

use super::{collapse, contiguous_strides, dims, u32_of, Kernel, WG};
use crate::backend::gpu::{GpuBackend, GpuTensor};
use crate::backend::TensorMeta;
use crate::error::Result;

pub const KERNEL: Kernel =
    Kernel { label: "copy", source: include_str!("../../../../shaders/copy.wgsl"), constants: &[("WG", WG as f64)] };

/// `CopyParams` of the shader.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub n: u32,
    pub rank: u32,
    pub src_offset: u32,
    pub dst_offset: u32,
    /// The walk's shape, innermost dim last; unused slots 0.
    pub shape: [u32; super::MAX_RANK],
    pub src_strides: [u32; super::MAX_RANK],
    pub dst_strides: [u32; super::MAX_RANK],
}

/// One side of a copy: a buffer, the element offset of the walk's origin, strides over the walk.
struct View<'a> {
    buffer: &'a wgpu::Buffer,
    offset: usize,
    strides: &'a [usize],
}

/// Record the copy of every element of a walk over `shape` from `src` to `dst`.
fn record(be: &GpuBackend, shape: &[usize], src: View<'_>, dst: View<'_>) -> Result<()> {
    let numel: usize = shape.iter().product();
    if numel == 0 {
        return Ok(());
    }
    let (shape, [ss, ds]) = collapse(shape, [src.strides, dst.strides]);
    let n = u32_of("copy elements", numel)?;
    let params = Params {
        n,
        rank: u32_of("copy rank", shape.len())?,
        src_offset: u32_of("copy source offset", src.offset)?,
        dst_offset: u32_of("copy destination offset", dst.offset)?,
        shape: dims("copy", &shape)?,
        src_strides: dims("copy", &ss)?,
        dst_strides: dims("copy", &ds)?,
    };
    let groups = be.grid(u64::from(n.div_ceil(WG)))?;
    be.dispatch(&KERNEL, &[src.buffer, dst.buffer], bytemuck::bytes_of(&params), groups);
    Ok(())
}

/// x -> y with `y.shape[i] = x.shape[perm[i]]`, e.g. `[T, H, K] -> [H, T, K]` (`out_shape` from
/// `check::permute`).
pub fn permute(be: &GpuBackend, x: &GpuTensor, perm: &[usize], out_shape: &[usize]) -> Result<GpuTensor> {
    let y = be.alloc(out_shape, x.dtype())?;
    let xs = contiguous_strides(x.shape());
    // Output dim i walks input dim perm[i].
    let src_strides: Vec<usize> = perm.iter().map(|&p| xs[p]).collect();
    let dst_strides = contiguous_strides(out_shape);
    record(
        be,
        out_shape,
        View { buffer: x.buffer(), offset: 0, strides: &src_strides },
        View { buffer: y.buffer(), offset: 0, strides: &dst_strides },
    )?;
    Ok(y)
}

/// `outer` and `inner` element counts around `dim`: a tensor seen as `[outer, S_dim, inner]`.
fn around(shape: &[usize], dim: usize) -> (usize, usize) {
    (shape[..dim].iter().product(), shape[dim + 1..].iter().product())
}

/// x -> y, the slice start..start + len of `dim` (e.g. `[T, D] -> [T, D/2]` along dim 1).
pub fn narrow(be: &GpuBackend, x: &GpuTensor, dim: usize, start: usize, out_shape: &[usize]) -> Result<GpuTensor> {
    let y = be.alloc(out_shape, x.dtype())?;
    let (outer, inner) = around(x.shape(), dim);
    let (size, len) = (x.shape()[dim], out_shape[dim]);
    record(
        be,
        &[outer, len, inner],
        View { buffer: x.buffer(), offset: start * inner, strides: &[size * inner, inner, 1] },
        View { buffer: y.buffer(), offset: 0, strides: &[len * inner, inner, 1] },
    )?;
    Ok(y)
}

/// xs -> y, joined along `dim` (e.g. `[T1, D] + [T2, D] -> [T1 + T2, D]`): one copy per input
/// into its slot of `dim`.
pub fn concat(be: &GpuBackend, xs: &[&GpuTensor], dim: usize, out_shape: &[usize]) -> Result<GpuTensor> {
    let dtype = xs.first().map_or(crate::error::DType::F32, |x| x.dtype());
    let y = be.alloc(out_shape, dtype)?;
    let (outer, inner) = around(out_shape, dim);
    let total = out_shape[dim];
    let mut at = 0;
    for x in xs {
        let len = x.shape()[dim];
        record(
            be,
            &[outer, len, inner],
            View { buffer: x.buffer(), offset: 0, strides: &[len * inner, inner, 1] },
            View { buffer: y.buffer(), offset: at * inner, strides: &[total * inner, inner, 1] },
        )?;
        at += len;
    }
    Ok(y)
}
