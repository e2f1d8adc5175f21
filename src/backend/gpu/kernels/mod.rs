//! Host side of the WGSL kernels: one file per `shaders/<stem>.wgsl`, same stem, which is also
//! the pipeline label. Each file holds the kernel's [`Kernel`] (source and specialisation
//! constants), its typed uniform struct (`#[repr(C)]`, laid out exactly like the WGSL struct)
//! and `run`, which allocates the output and records the dispatch. Shapes and dtypes were already
//! checked by `backend::check` when `run` is called.

pub mod binary;
pub mod gather;
pub mod matmul;
pub mod reduce;
pub mod rms_norm;
pub mod softmax;
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

/// All kernels, for tests and for warming the pipeline cache.
pub const ALL: [&Kernel; 7] = [
    &binary::KERNEL,
    &gather::KERNEL,
    &matmul::KERNEL,
    &reduce::KERNEL,
    &rms_norm::KERNEL,
    &softmax::KERNEL,
    &unary::KERNEL,
];

/// A size as the shaders' u32. Buffer limits already keep element counts far below 2^32; this
/// only turns an impossible overflow into an error instead of a wrong index.
pub(crate) fn u32_of(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Gpu(format!("{what} = {v} does not fit the kernels' 32-bit indices")))
}
