//! GPU backend: WGSL kernels from `shaders/` run through wgpu (WebGPU in the browser, Vulkan
//! natively).
//!
//! - [`GpuContext`] (context.rs) acquires the device once and caches compiled pipelines.
//! - [`GpuBackend`] implements [`Backend`]: each op validates with [`check`] first (so errors are
//!   the CPU backend's), then records one compute pass into a pending command encoder. Nothing
//!   runs until [`Backend::read`]: it submits everything recorded so far in one submission, then
//!   maps a staging copy of the result. A whole forward pass is one submission.
//! - `kernels/<op>.rs` is the host side of `shaders/<op>.wgsl` (same stem, also the pipeline
//!   label): its uniform struct, dispatch geometry and the op itself.
//!
//! GPU errors (validation, out of memory, device loss) never panic: every call that touches the
//! device runs inside error scopes, and the scopes' results are awaited by the next `read`, which
//! returns them as [`Error::Gpu`].

// wgpu handles are Send + Sync natively but not on wasm32 (single-threaded): one `Arc`-based API
// serves both, so clippy's lint for a non-Send Arc does not apply there.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

mod context;
pub mod kernels;

pub use context::{GpuContext, Memory};

use crate::backend::{check, composite, Backend, BackendInfo, Binary, Data, HostTensor, Reduce, TensorMeta, Unary};
use crate::error::{DType, Error, Result};
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A tensor in GPU memory: a storage buffer plus its logical shape and dtype. Cloning shares
/// the buffer. The buffer is at least 4 bytes even for an empty tensor (wgpu wants no
/// zero-sized bindings); `shape` is the truth about its length.
#[derive(Clone, Debug)]
pub struct GpuTensor {
    buffer: Arc<PooledBuffer>,
    shape: Vec<usize>,
    dtype: DType,
    /// Id of the [`GpuBackend`] whose pending commands produce this buffer's contents.
    owner: u64,
}

impl GpuTensor {
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.buffer.get()
    }
}

/// Free output buffers of one backend by byte size, reused by later ops instead of allocating
/// (a forward pass allocates the same sizes layer after layer). Per backend, never shared: a
/// buffer freed while this backend's pending commands still read it may only be rewritten by
/// commands recorded after those reads, i.e. by this backend's own later ops.
struct Pool {
    ctx: Arc<GpuContext>,
    free: std::sync::Mutex<std::collections::HashMap<u64, Vec<wgpu::Buffer>>>,
}

impl Pool {
    fn take(&self, size: u64) -> Option<wgpu::Buffer> {
        context::lock(&self.free).get_mut(&size).and_then(Vec::pop)
    }

    /// Give every free buffer back to the device.
    fn trim(&self) {
        let drained: Vec<(u64, Vec<wgpu::Buffer>)> = context::lock(&self.free).drain().collect();
        for (size, bufs) in drained {
            self.ctx.release(size * bufs.len() as u64);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.trim();
    }
}

/// A storage buffer that goes back to its backend's [`Pool`] (op outputs) or to the device
/// (uploads: the queue writes them before the submission's commands run, so reusing one that
/// pending commands still read would be a hazard) when the last tensor using it drops.
pub struct PooledBuffer {
    buffer: Option<wgpu::Buffer>,
    size: u64,
    pooled: bool,
    pool: Arc<Pool>,
}

impl PooledBuffer {
    fn get(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("a PooledBuffer holds its buffer until dropped")
    }
}

impl std::fmt::Debug for PooledBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBuffer").field("size", &self.size).field("pooled", &self.pooled).finish()
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            if self.pooled {
                context::lock(&self.pool.free).entry(self.size).or_default().push(b);
            } else {
                self.pool.ctx.release(self.size);
            }
        }
    }
}

/// The buffer size an output of `bytes` gets: a power of two up to 4 KiB, then multiples of an
/// eighth of the power of two below (at most 12.5% slack), so near sizes share pooled buffers;
/// never past `max`.
pub fn size_class(bytes: u64, max: u64) -> u64 {
    let b = bytes.max(256);
    let class = if b <= 4096 {
        b.next_power_of_two()
    } else {
        let step = (1u64 << (63 - b.leading_zeros())) / 8;
        b.div_ceil(step) * step
    };
    if class > max {
        bytes.max(4)
    } else {
        class
    }
}

impl TensorMeta for GpuTensor {
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn dtype(&self) -> DType {
        self.dtype
    }
}

/// The future of one popped error scope. Natively it is already resolved (wgpu-core reports
/// errors synchronously) and `Send`; in the browser it waits on a JS promise.
#[cfg(not(target_arch = "wasm32"))]
type ScopeFuture = Pin<Box<dyn Future<Output = Option<wgpu::Error>> + Send>>;
#[cfg(target_arch = "wasm32")]
type ScopeFuture = Pin<Box<dyn Future<Output = Option<wgpu::Error>>>>;

static NEXT_BACKEND_ID: AtomicU64 = AtomicU64::new(1);

/// The wgpu implementation of [`Backend`]. Ops record into this backend's pending encoder, so a
/// tensor must be used with the backend that made it (checked: [`Error::Invalid`] otherwise).
pub struct GpuBackend {
    ctx: Arc<GpuContext>,
    id: u64,
    /// Commands recorded since the last `read`, created lazily.
    encoder: RefCell<Option<wgpu::CommandEncoder>>,
    /// Popped error scopes of ops since the last `read`.
    scopes: RefCell<Vec<ScopeFuture>>,
    pool: Arc<Pool>,
    /// A binding size below the device's, when set ([`GpuBackend::limit_binding_bytes`]).
    binding_cap: std::cell::Cell<Option<u64>>,
    /// Store dense weights of models loaded from now on in f16 ([`Backend::half_weights`]).
    half_weights: std::cell::Cell<bool>,
    /// Run `matmul_f16` with f16 products (`matmul_f16_arith.wgsl`) where the device allows it;
    /// on by default ([`GpuBackend::set_f16_arithmetic`]).
    f16_arithmetic: std::cell::Cell<bool>,
}

impl std::fmt::Debug for GpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuBackend").field("id", &self.id).field("ctx", &self.ctx).finish_non_exhaustive()
    }
}

/// Bytes of `numel` 32-bit elements (saturating: oversized is refused by `check_size`).
fn bytes_of(numel: usize) -> u64 {
    (numel as u64).saturating_mul(4)
}

impl GpuBackend {
    pub fn new(ctx: Arc<GpuContext>) -> Self {
        Self {
            id: NEXT_BACKEND_ID.fetch_add(1, Ordering::Relaxed),
            encoder: RefCell::new(None),
            scopes: RefCell::new(Vec::new()),
            pool: Arc::new(Pool { ctx: ctx.clone(), free: std::sync::Mutex::new(std::collections::HashMap::new()) }),
            binding_cap: std::cell::Cell::new(None),
            half_weights: std::cell::Cell::new(false),
            f16_arithmetic: std::cell::Cell::new(true),
            ctx,
        }
    }

    /// Treat `bytes` as the largest buffer binding (below the device's): weights larger than that
    /// are split into row blocks when a model loads. For leaving headroom, and for tests of the
    /// splitting on devices whose limit is far larger than any test model.
    pub fn limit_binding_bytes(&self, bytes: Option<u64>) {
        self.binding_cap.set(bytes);
    }

    /// Store the dense weights of models loaded from now on in f16 (`matmul_f16.wgsl`).
    pub fn set_half_weights(&self, on: bool) {
        self.half_weights.set(on);
    }

    /// Multiply f16 weights in f16 (`matmul_f16_arith.wgsl`) when the device has `shader-f16`
    /// (the default), or keep f16 as a storage format with f32 products (`matmul_f16.wgsl`) when
    /// `on` is false. Without `shader-f16` the storage kernel runs either way.
    pub fn set_f16_arithmetic(&self, on: bool) {
        self.f16_arithmetic.set(on);
    }

    /// Acquire a device ([`GpuContext::acquire`]) and wrap it.
    pub async fn acquire() -> Result<Self> {
        Ok(Self::new(GpuContext::acquire().await?))
    }

    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// Native convenience: [`Backend::read`] driven to completion on this thread.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_blocking(&self, t: &GpuTensor) -> Result<HostTensor> {
        pollster::block_on(self.read(t))
    }

    /// Run `f` inside Validation, OutOfMemory and Internal error scopes, popped in reverse order
    /// whatever `f` returns (wgpu panics on out-of-order pops); the popped futures are kept for
    /// the next `read`.
    fn scoped<T>(&self, f: impl FnOnce() -> T) -> T {
        let dev = &self.ctx.device;
        let validation = dev.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = dev.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let internal = dev.push_error_scope(wgpu::ErrorFilter::Internal);
        let out = f();
        let mut scopes = self.scopes.borrow_mut();
        scopes.push(Box::pin(internal.pop()));
        scopes.push(Box::pin(oom.pop()));
        scopes.push(Box::pin(validation.pop()));
        out
    }

    /// Await every pending error scope and drain the uncaptured-error sink.
    async fn take_errors(&self) -> Vec<String> {
        let scopes = std::mem::take(&mut *self.scopes.borrow_mut());
        let mut errors = Vec::new();
        for s in scopes {
            if let Some(e) = s.await {
                errors.push(e.to_string());
            }
        }
        errors.extend(self.ctx.take_uncaptured());
        errors
    }

    /// The tensor must come from this backend (its contents depend on our pending commands).
    fn own(&self, t: &GpuTensor) -> Result<()> {
        if t.owner != self.id {
            return Err(Error::Invalid(format!(
                "GPU tensor {:?} was made by another GpuBackend (#{}, this is #{}); upload it here instead",
                t.shape, t.owner, self.id
            )));
        }
        Ok(())
    }

    /// The largest buffer this device can hold and bind, in bytes.
    pub fn max_binding_bytes(&self) -> u64 {
        let lim = &self.ctx.limits;
        let device = lim.max_storage_buffer_binding_size.min(lim.max_buffer_size);
        self.binding_cap.get().map_or(device, |cap| cap.min(device))
    }

    /// Refuse a checkpoint whose weights this device cannot hold, before anything is uploaded:
    /// see [`check_fit`].
    pub fn check_fits(&self, tensors: &std::collections::BTreeMap<String, HostTensor>) -> Result<u64> {
        let m = self.ctx.memory();
        check_fit(tensors, self.max_binding_bytes(), m.budget.map(|b| b.saturating_sub(m.allocated)))
    }

    /// Refuse buffers the device cannot hold or bind, before wgpu sees them.
    fn check_size(&self, what: &str, bytes: u64) -> Result<()> {
        let max = self.max_binding_bytes();
        if bytes > max {
            return Err(Error::Gpu(format!(
                "{what}: {bytes} bytes exceed this device's storage buffer limit of {max} bytes"
            )));
        }
        Ok(())
    }

    /// Allocate an output tensor (contents undefined until an op writes it).
    pub(crate) fn alloc(&self, shape: &[usize], dtype: DType) -> Result<GpuTensor> {
        // Checked: an output shape comes from valid inputs but may still be absurdly large
        // (e.g. an outer product), and usize is 32 bits on wasm32.
        let numel = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        let bytes = numel.map_or(u64::MAX, bytes_of);
        self.check_size("output", bytes)?;
        let size = size_class(bytes, self.max_binding_bytes());
        let buffer = match self.pool.take(size) {
            Some(b) => b,
            None => self.create_buffer(size)?,
        };
        Ok(GpuTensor { buffer: Arc::new(PooledBuffer { buffer: Some(buffer), size, pooled: true, pool: self.pool.clone() }), shape: shape.to_vec(), dtype, owner: self.id })
    }

    /// A new storage buffer of `size` bytes, counted against the device's memory budget (when
    /// over it, this backend's free buffers go back first).
    fn create_buffer(&self, size: u64) -> Result<wgpu::Buffer> {
        if self.ctx.reserve(size).is_err() {
            self.pool.trim();
            self.ctx.reserve(size)?;
        }
        Ok(self.scoped(|| {
            self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        }))
    }

    /// Upload raw 32-bit words as a storage buffer (ids for gather, tensor data).
    pub(crate) fn upload_words(&self, what: &str, words: &[u8]) -> Result<Arc<PooledBuffer>> {
        self.check_size(what, words.len() as u64)?;
        let size = (words.len() as u64).max(4);
        let buffer = self.create_buffer(size)?;
        // Staged in the queue and applied before the next submission, i.e. before any recorded
        // op that reads it runs.
        if !words.is_empty() {
            self.scoped(|| self.ctx.queue.write_buffer(&buffer, 0, words));
        }
        Ok(Arc::new(PooledBuffer { buffer: Some(buffer), size, pooled: false, pool: self.pool.clone() }))
    }

    /// Record one dispatch of `kernel`: `buffers` bound at 0.. in order, then `params` as a
    /// uniform at the next binding. `groups` is the workgroup count in (x, y, z).
    pub(crate) fn dispatch(
        &self,
        kernel: &kernels::Kernel,
        buffers: &[&wgpu::Buffer],
        params: &[u8],
        groups: [u32; 3],
    ) {
        self.scoped(|| {
            let dev = &self.ctx.device;
            let pipeline = self.ctx.pipeline(kernel);
            let uniform = dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some(kernel.label),
                size: params.len() as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            self.ctx.queue.write_buffer(&uniform, 0, params);
            let mut entries: Vec<wgpu::BindGroupEntry<'_>> = buffers
                .iter()
                .enumerate()
                .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
                .collect();
            entries.push(wgpu::BindGroupEntry { binding: buffers.len() as u32, resource: uniform.as_entire_binding() });
            let bind_group = dev.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(kernel.label),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            });
            let mut slot = self.encoder.borrow_mut();
            let encoder = slot.get_or_insert_with(|| {
                dev.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("trilemma ops") })
            });
            let mut pass = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(kernel.label), timestamp_writes: None });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        });
    }

    /// Workgroup counts for `n` workgroups: `(n, 1, 1)`, or folded into `(x, y, 1)` when `n`
    /// exceeds the per-dimension limit (shaders linearise `x + y * num_workgroups.x` and drop
    /// the tail beyond `n`).
    pub(crate) fn grid(&self, n: u64) -> Result<[u32; 3]> {
        let max = u64::from(self.ctx.limits.max_compute_workgroups_per_dimension.max(1));
        if n <= max {
            return Ok([n as u32, 1, 1]);
        }
        let y = n.div_ceil(max);
        if y > max {
            return Err(Error::Gpu(format!("{n} workgroups exceed this device's dispatch limit of {max} x {max}")));
        }
        Ok([max as u32, y as u32, 1])
    }

    /// Every op's operands must come from this backend.
    pub(crate) fn own_all(&self, ts: &[&GpuTensor]) -> Result<()> {
        ts.iter().try_for_each(|t| self.own(t))
    }
}

impl Backend for GpuBackend {
    type Tensor = GpuTensor;

    fn info(&self) -> BackendInfo {
        self.ctx.info()
    }

    fn max_tensor_bytes(&self) -> u64 {
        self.max_binding_bytes()
    }

    fn half_weights(&self) -> bool {
        self.half_weights.get()
    }

    fn f16_arithmetic(&self) -> bool {
        self.f16_arithmetic.get() && self.ctx.has_shader_f16()
    }

    fn upload(&self, h: &HostTensor) -> Result<GpuTensor> {
        let bytes: &[u8] = match &h.data {
            Data::F32(v) => bytemuck::cast_slice(v),
            Data::U32(v) => bytemuck::cast_slice(v),
        };
        let buffer = self.upload_words("upload", bytes)?;
        Ok(GpuTensor { buffer, shape: h.shape.clone(), dtype: h.dtype(), owner: self.id })
    }

    async fn read(&self, t: &GpuTensor) -> Result<HostTensor> {
        self.own(t)?;
        let bytes = bytes_of(t.numel());
        let pending = self.scoped(|| {
            let dev = &self.ctx.device;
            let mut encoder = self.encoder.borrow_mut().take().unwrap_or_else(|| {
                dev.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("trilemma read") })
            });
            // An empty tensor has nothing to copy, but pending work is still submitted so that
            // its errors surface here like any other read's.
            let staging = (bytes > 0).then(|| {
                let staging = dev.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("trilemma staging"),
                    size: bytes,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                encoder.copy_buffer_to_buffer(t.buffer(), 0, &staging, 0, bytes);
                staging
            });
            self.ctx.queue.submit([encoder.finish()]);
            staging.map(|staging| {
                let (tx, rx) = futures_channel::oneshot::channel();
                staging.map_async(wgpu::MapMode::Read, .., move |r| {
                    // The receiver only goes away if `read` was dropped mid-way: nothing to tell.
                    let _ = tx.send(r);
                });
                (staging, rx)
            })
        });

        // Natively nothing runs the map callback unless the device is polled; in the browser the
        // event loop does it while we await.
        #[cfg(not(target_arch = "wasm32"))]
        let poll_error = self.ctx.device.poll(wgpu::PollType::wait_indefinitely()).err().map(|e| format!("poll: {e}"));
        #[cfg(target_arch = "wasm32")]
        let poll_error: Option<String> = None;

        let mapped = match pending {
            None => None,
            Some((staging, rx)) => Some((rx.await, staging)),
        };
        let mut errors = self.take_errors().await;
        errors.extend(poll_error);
        if !errors.is_empty() {
            return Err(Error::Gpu(errors.join("; ")));
        }

        let words: Vec<u32> = match mapped {
            None => Vec::new(),
            Some((Ok(Ok(())), staging)) => {
                let words = {
                    let view = staging.get_mapped_range(..).map_err(|e| Error::Gpu(e.to_string()))?;
                    // The mapping need not be 4-byte aligned in host memory: copy, don't cast.
                    bytemuck::pod_collect_to_vec::<u8, u32>(&view)
                };
                staging.unmap();
                words
            }
            Some((Ok(Err(e)), _)) => return Err(Error::Gpu(format!("reading back {:?}: {e}", t.shape))),
            Some((Err(_canceled), _)) => {
                return Err(Error::Gpu(format!("reading back {:?}: the map callback was dropped", t.shape)))
            }
        };
        let data = match t.dtype {
            DType::F32 => Data::F32(words.into_iter().map(f32::from_bits).collect()),
            DType::U32 => Data::U32(words),
        };
        HostTensor::new(&t.shape, data)
    }

    fn matmul(&self, a: &GpuTensor, b: &GpuTensor, trans_b: bool) -> Result<GpuTensor> {
        let (dims, out_shape) = check::matmul(a, b, trans_b)?;
        self.own_all(&[a, b])?;
        kernels::matmul::run(self, a, b, trans_b, dims, &out_shape)
    }

    fn unary(&self, op: Unary, x: &GpuTensor) -> Result<GpuTensor> {
        check::f32_nonempty("unary", x)?;
        self.own(x)?;
        kernels::unary::run(self, op, x)
    }

    fn binary(&self, op: Binary, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
        let out_shape = check::binary(a, b)?;
        self.own_all(&[a, b])?;
        kernels::binary::run(self, op, a, b, &out_shape)
    }

    fn softmax(&self, x: &GpuTensor) -> Result<GpuTensor> {
        let (rows, d) = check::rows("softmax", x)?;
        self.own(x)?;
        kernels::softmax::run(self, x, rows, d)
    }

    fn rms_norm(&self, x: &GpuTensor, w: &GpuTensor, eps: f32) -> Result<GpuTensor> {
        let (rows, d) = check::rms_norm(x, w, eps)?;
        self.own_all(&[x, w])?;
        kernels::rms_norm::run(self, x, w, eps, rows, d)
    }

    fn reduce(&self, op: Reduce, x: &GpuTensor) -> Result<GpuTensor> {
        let (rows, d) = check::rows("reduce", x)?;
        self.own(x)?;
        kernels::reduce::run(self, op, x, rows, d)
    }

    fn gather(&self, table: &GpuTensor, ids: &[u32]) -> Result<GpuTensor> {
        let (n, d) = check::gather(table, ids)?;
        self.own(table)?;
        kernels::gather::run(self, table, ids, n, d)
    }

    fn reshape(&self, x: &GpuTensor, shape: &[usize]) -> Result<GpuTensor> {
        check::reshape(x, shape)?;
        self.own(x)?;
        // Free: row-major data does not move, so the new tensor shares the buffer. Safe because no
        // op writes its inputs: every result goes to a fresh buffer.
        Ok(GpuTensor { buffer: Arc::clone(&x.buffer), shape: shape.to_vec(), dtype: x.dtype, owner: self.id })
    }

    fn permute(&self, x: &GpuTensor, perm: &[usize]) -> Result<GpuTensor> {
        let out_shape = check::permute(x, perm)?;
        self.own(x)?;
        kernels::copy::permute(self, x, perm, &out_shape)
    }

    fn narrow(&self, x: &GpuTensor, dim: usize, start: usize, len: usize) -> Result<GpuTensor> {
        let out_shape = check::narrow(x, dim, start, len)?;
        self.own(x)?;
        kernels::copy::narrow(self, x, dim, start, &out_shape)
    }

    fn concat(&self, xs: &[&GpuTensor], dim: usize) -> Result<GpuTensor> {
        let out_shape = check::concat(xs, dim)?;
        self.own_all(xs)?;
        kernels::copy::concat(self, xs, dim, &out_shape)
    }

    fn cumsum(&self, x: &GpuTensor) -> Result<GpuTensor> {
        let (rows, d) = check::rows("cumsum", x)?;
        self.own(x)?;
        kernels::cumsum::run(self, x, rows, d)
    }

    fn scan(&self, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
        let (t, d) = check::scan(a, b)?;
        self.own_all(&[a, b])?;
        kernels::scan::run(self, a, b, t, d)
    }

    fn ternary_matmul(&self, x: &GpuTensor, packed: &GpuTensor) -> Result<GpuTensor> {
        let dims = check::ternary_matmul(x, packed)?;
        self.own_all(&[x, packed])?;
        kernels::ternary_matmul::run(self, x, packed, dims)
    }

    fn matmul_f16(&self, x: &GpuTensor, w: &GpuTensor) -> Result<GpuTensor> {
        let dims = check::matmul_f16(x, w)?;
        self.own_all(&[x, w])?;
        if self.f16_arithmetic() {
            kernels::matmul_f16_arith::run(self, x, w, dims)
        } else {
            kernels::matmul_f16::run(self, x, w, dims)
        }
    }

    fn matmul_i8(&self, x: &GpuTensor, codes: &GpuTensor, scales: &GpuTensor) -> Result<GpuTensor> {
        let dims = check::matmul_i8(x, codes, scales)?;
        self.own_all(&[x, codes, scales])?;
        kernels::matmul_i8::run(self, x, codes, scales, dims)
    }

    fn matmul_i4(&self, x: &GpuTensor, codes: &GpuTensor, scales: &GpuTensor) -> Result<GpuTensor> {
        let dims = check::matmul_i4(x, codes, scales)?;
        self.own_all(&[x, codes, scales])?;
        kernels::matmul_i4::run(self, x, codes, scales, dims)
    }

    fn rope(&self, x: &GpuTensor, cos: &GpuTensor, sin: &GpuTensor) -> Result<GpuTensor> {
        let (_, t, hd) = check::rope(x, cos, sin)?;
        self.own_all(&[x, cos, sin])?;
        kernels::rope::run(self, x, cos, sin, t, hd)
    }

    fn attention(&self, q: &GpuTensor, k: &GpuTensor, v: &GpuTensor, scale: f32, window: Option<usize>) -> Result<GpuTensor> {
        let dims = check::attention(q, k, v, window)?;
        self.own_all(&[q, k, v])?;
        if dims.3 > kernels::attention::MAX_HEAD_DIM || dims.4 > kernels::attention::MAX_HEAD_DIM {
            return composite::attention(self, q, k, v, scale, window);
        }
        kernels::attention::run(self, q, k, v, scale, window, dims)
    }

    fn gla(&self, q: &GpuTensor, k: &GpuTensor, v: &GpuTensor, lg: &GpuTensor, chunk: usize) -> Result<GpuTensor> {
        let dims = check::gla(q, k, v, lg, chunk)?;
        self.own_all(&[q, k, v, lg])?;
        match kernels::gla::geometry(chunk, dims.2, dims.3) {
            Some(geo) => kernels::gla::run(self, q, k, v, lg, dims, geo),
            None => composite::gla_chunked(self, q, k, v, lg, chunk),
        }
    }

    fn last_token(&self, x: &GpuTensor, lengths: &[usize]) -> Result<GpuTensor> {
        let dims = check::last_token(x, lengths)?;
        self.own(x)?;
        kernels::last_token::run(self, x, lengths, dims)
    }

    fn bit_linear(&self, x: &GpuTensor, norm: &GpuTensor, packed: &GpuTensor, beta: f32, eps: f32) -> Result<GpuTensor> {
        let (m, k, n) = check::bit_linear(x, norm, packed, eps)?;
        self.own_all(&[x, norm, packed])?;
        let (q, s) = kernels::quantize_i8::run(self, x, norm, eps, m, k)?;
        kernels::ternary_matmul_i8::run(self, &q, &s, packed, beta, (m, k, n))
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    //! The error path: GPU validation errors must come back from `read` as `Error::Gpu`, never a
    //! panic, and the backend must work again afterwards. (Ops can't produce such errors from user
    //! input, so these tests break the internals on purpose.)
    use super::*;

    fn backend() -> Option<GpuBackend> {
        match pollster::block_on(GpuBackend::acquire()) {
            Ok(b) => Some(b),
            Err(e) => {
                assert!(std::env::var("TRILEMMA_REQUIRE_GPU").map_or(true, |v| v != "1"), "no GPU: {e}");
                eprintln!("SKIP: no GPU adapter ({e})");
                None
            }
        }
    }

    fn still_works(be: &GpuBackend) {
        let x = be.upload(&HostTensor::f32(&[3], vec![1.0, -2.0, 3.0]).expect("shape")).expect("upload");
        let y = be.unary(Unary::Abs, &x).expect("abs");
        assert_eq!(be.read_blocking(&y).expect("read after an error").data, Data::F32(vec![1.0, 2.0, 3.0]));
    }

    #[test]
    fn invalid_shader_is_an_error_from_read() {
        let Some(be) = backend() else { return };
        const BROKEN: kernels::Kernel =
            kernels::Kernel { label: "test_broken", source: "this is not WGSL", constants: &[] };
        let y = be.alloc(&[4], DType::F32).expect("alloc");
        be.dispatch(&BROKEN, &[y.buffer()], &[0u8; 16], [1, 1, 1]);
        match be.read_blocking(&y) {
            Err(Error::Gpu(msg)) => assert!(!msg.is_empty()),
            other => panic!("expected Error::Gpu, got {other:?}"),
        }
        still_works(&be);
    }

    #[test]
    fn wrong_bindings_are_an_error_from_read() {
        let Some(be) = backend() else { return };
        // unary.wgsl wants x, y and a 32-byte uniform: give it one buffer and a short uniform.
        let y = be.alloc(&[4], DType::F32).expect("alloc");
        be.dispatch(&kernels::unary::KERNEL, &[y.buffer()], &[0u8; 4], [1, 1, 1]);
        assert!(matches!(be.read_blocking(&y), Err(Error::Gpu(_))));
        still_works(&be);
    }

    #[test]
    fn oversized_buffers_are_refused_before_wgpu() {
        let Some(be) = backend() else { return };
        let max = be.ctx.limits.max_storage_buffer_binding_size.min(be.ctx.limits.max_buffer_size);
        let too_many = usize::try_from(max / 4 + 1).unwrap_or(usize::MAX);
        assert!(matches!(be.alloc(&[too_many], DType::F32), Err(Error::Gpu(_))));
        // An element count that overflows usize is refused the same way, not a panic.
        assert!(matches!(be.alloc(&[usize::MAX, 3], DType::F32), Err(Error::Gpu(_))));
        // Through the public API: a valid outer product far beyond any binding limit.
        let col = be.upload(&HostTensor::f32(&[1, 1], vec![1.0]).expect("shape")).expect("upload");
        let a = be.upload(&HostTensor::f32(&[1 << 17, 1], vec![1.0; 1 << 17]).expect("shape")).expect("upload");
        let b = be.upload(&HostTensor::f32(&[1, 1 << 17], vec![1.0; 1 << 17]).expect("shape")).expect("upload");
        assert!(be.matmul(&a, &col, false).is_ok());
        if (1u64 << 36) > max {
            assert!(matches!(be.matmul(&a, &b, false), Err(Error::Gpu(_))));
        }
        still_works(&be);
    }

    #[test]
    fn grid_folds_into_two_dimensions() {
        let Some(be) = backend() else { return };
        let max = u64::from(be.ctx.limits.max_compute_workgroups_per_dimension);
        assert_eq!(be.grid(1).expect("grid"), [1, 1, 1]);
        assert_eq!(be.grid(max).expect("grid"), [max as u32, 1, 1]);
        assert_eq!(be.grid(max + 1).expect("grid"), [max as u32, 2, 1]);
        assert!(be.grid(max * max + 1).is_err());
    }
}

/// Whether a checkpoint's weights can live on this GPU, before anything is uploaded: an f32
/// matrix `[N, K]` larger than one binding of `max_binding` bytes is split into row blocks
/// ([`crate::nn::linear::RowBlocks`]), so it only needs one row to fit; any other tensor must fit
/// whole; and all of them together must fit `free` bytes (what the memory budget leaves, when one
/// is set). Returns the total weight bytes, or an error with the numbers.
pub fn check_fit(tensors: &std::collections::BTreeMap<String, HostTensor>, max_binding: u64, free: Option<u64>) -> Result<u64> {
    let bytes = |t: &HostTensor| t.numel() as u64 * 4;
    let total: u64 = tensors.values().map(bytes).sum();
    // The smallest piece each tensor can be uploaded in.
    let piece = |t: &HostTensor| match (t.shape.as_slice(), t.dtype()) {
        ([_, k], DType::F32) => *k as u64 * 4,
        _ => bytes(t),
    };
    if let Some((name, t)) = tensors.iter().filter(|(_, t)| piece(t) > max_binding).max_by_key(|(_, t)| piece(t)) {
        return Err(Error::Gpu(format!(
            "this model does not fit the GPU: tensor {name} {:?} needs {} bytes in one buffer, but the adapter binds at most {max_binding} bytes per buffer ({total} bytes of weights in all); run it on the CPU",
            t.shape,
            piece(t)
        )));
    }
    if let Some(free) = free.filter(|&f| total > f) {
        return Err(Error::Gpu(format!(
            "this model does not fit the GPU: its weights take {total} bytes, but only {free} bytes of the GPU memory budget are free; run it on the CPU"
        )));
    }
    Ok(total)
}

#[cfg(test)]
mod fit_tests {
    use super::*;

    #[test]
    fn a_tensor_over_the_binding_limit_is_refused_with_the_numbers() {
        let mut t = std::collections::BTreeMap::new();
        t.insert("small".to_string(), HostTensor::f32(&[4], vec![0.0; 4]).unwrap());
        t.insert("big".to_string(), HostTensor::f32(&[8, 4], vec![0.0; 32]).unwrap());
        assert_eq!(check_fit(&t, 128, None).unwrap(), 144);
        // A matrix over the limit is split by rows: one 16-byte row must fit.
        assert_eq!(check_fit(&t, 100, None).unwrap(), 144);
        let err = check_fit(&t, 15, None).unwrap_err().to_string();
        assert!(err.contains("small") && err.contains("16 bytes") && err.contains("at most 15") && err.contains("144 bytes"), "{err}");
        // The memory budget counts every tensor.
        let err = check_fit(&t, 128, Some(143)).unwrap_err().to_string();
        assert!(err.contains("144 bytes") && err.contains("only 143 bytes"), "{err}");
        assert!(check_fit(&t, 128, Some(144)).is_ok());
    }

    #[test]
    fn size_classes_are_coarse_enough_to_share_and_never_exceed_the_limit() {
        assert_eq!(size_class(0, u64::MAX), 256);
        assert_eq!(size_class(300, u64::MAX), 512);
        assert_eq!(size_class(4096, u64::MAX), 4096);
        // Past 4 KiB: eighths of the power of two below, so at most 12.5% slack.
        assert_eq!(size_class(4097, u64::MAX), 4608);
        for b in [5000u64, 70_001, 1 << 20, (1 << 20) + 1, 123_456_789] {
            let c = size_class(b, u64::MAX);
            assert!(c >= b && (c - b) as f64 <= b as f64 / 8.0, "{b} -> {c}");
        }
        assert_eq!(size_class(1000, 600), 1000);
    }
}
