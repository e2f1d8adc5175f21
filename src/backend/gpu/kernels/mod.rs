//! Host side of the WGSL kernels: one file per `shaders/<stem>.wgsl`, same stem, which is also
//! the pipeline label. Each file holds the kernel's [`Kernel`] (source and specialisation
//! constants), its typed uniform struct (`#[repr(C)]`, laid out exactly like the WGSL struct)
//! and `run`, which allocates the output and records the dispatch (`copy.rs`, one kernel behind
//! three ops, has `permute`, `narrow` and `concat` instead). Shapes and dtypes were already
//! checked by `backend::check` when these are called.

pub mod attention;
pub mod binary;
pub mod copy;
pub mod cumsum;
pub mod gather;
pub mod gla;
pub mod last_token;
pub mod matmul;
pub mod matmul_f16;
pub mod matmul_f16_arith;
pub mod matmul_i4;
pub mod matmul_i8;
pub mod quantize_i8;
pub mod reduce;
pub mod rms_norm;
pub mod rope;
pub mod scan;
pub mod softmax;
pub mod ternary_matmul;
pub mod ternary_matmul_i8;
pub mod unary;

use crate::error::{Error, Result};

/// A compute shader: label (== file stem == pipeline cache key), WGSL source, and values for its
/// `override` constants.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    pub label: &'static str,
    pub source: &'static str,
    pub constants: &'static [(&'static str, f64)],
}

/// Threads per workgroup of every kernel: the `WG` of the element-wise shaders (passed as their
/// `override`) and of the row kernels (a `const` there, since it also sizes workgroup memory).
pub const WG: u32 = 256;

/// All kernels, for tests and for warming the pipeline cache (`matmul_f16_arith` compiles only on
/// a device with `shader-f16`).
pub const ALL: [&Kernel; 21] = [
    &attention::KERNEL,
    &binary::KERNEL,
    &copy::KERNEL,
    &cumsum::KERNEL,
    &gather::KERNEL,
    &gla::KERNEL,
    &last_token::KERNEL,
    &matmul::KERNEL,
    &matmul_f16::KERNEL,
    &matmul_f16_arith::KERNEL,
    &matmul_i4::KERNEL,
    &matmul_i8::KERNEL,
    &quantize_i8::KERNEL,
    &reduce::KERNEL,
    &rms_norm::KERNEL,
    &rope::KERNEL,
    &scan::KERNEL,
    &softmax::KERNEL,
    &ternary_matmul::KERNEL,
    &ternary_matmul_i8::KERNEL,
    &unary::KERNEL,
];

/// Slots for a shape or strides in the strided kernels' uniforms (`binary`, `copy`): two
/// `vec4<u32>` in WGSL (uniform arrays need a 16-byte element stride).
pub const MAX_RANK: usize = crate::backend::check::MAX_RANK;

/// Simplify a strided walk over `shape` by N operands (`strides[o][d]`, in elements): drop size-1
/// dims and merge each dim into its outer neighbour when every operand steps through the pair as
/// one run (`outer stride == inner stride * inner size`; broadcast strides of 0 merge too). Same
/// element order, fewer dims for the shader's div/mod walk: a contiguous copy or a same-shape
/// binary becomes rank 1.
pub(crate) fn collapse<const N: usize>(shape: &[usize], strides: [&[usize]; N]) -> (Vec<usize>, [Vec<usize>; N]) {
    let mut out_shape: Vec<usize> = Vec::with_capacity(shape.len());
    let mut out_strides: [Vec<usize>; N] = std::array::from_fn(|_| Vec::with_capacity(shape.len()));
    for (d, &size) in shape.iter().enumerate() {
        if size == 1 {
            continue;
        }
        let k = out_shape.len();
        if k > 0 && (0..N).all(|o| out_strides[o][k - 1] == strides[o][d] * size) {
            out_shape[k - 1] *= size;
            for o in 0..N {
                out_strides[o][k - 1] = strides[o][d];
            }
        } else {
            out_shape.push(size);
            for o in 0..N {
                out_strides[o].push(strides[o][d]);
            }
        }
    }
    (out_shape, out_strides)
}

/// A shape or strides as the shaders' fixed `[u32; MAX_RANK]` (unused slots 0).
pub(crate) fn dims(op: &'static str, v: &[usize]) -> Result<[u32; MAX_RANK]> {
    if v.len() > MAX_RANK {
        return Err(Error::Shape {
            op,
            detail: format!("rank {} exceeds the GPU kernels' limit of {MAX_RANK}", v.len()),
        });
    }
    let mut out = [0u32; MAX_RANK];
    for (o, &x) in out.iter_mut().zip(v) {
        *o = u32_of(op, x)?;
    }
    Ok(out)
}

/// Row-major (contiguous) strides of `shape`, in elements.
pub(crate) fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

/// A size as the shaders' u32. Buffer limits already keep element counts far below 2^32; this
/// only turns an impossible overflow into an error instead of a wrong index.
pub(crate) fn u32_of(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Gpu(format!("{what} = {v} does not fit the kernels' 32-bit indices")))
}
