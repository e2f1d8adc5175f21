//! The GPU device, acquired once: the only place in the crate that creates a wgpu `Instance`,
//! adapter or device. Everything else borrows a [`GpuContext`].

use super::kernels::Kernel;
use crate::backend::BackendInfo;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// An acquired device and its queue, the compiled-pipeline cache, and a sink for GPU errors that
/// escaped every error scope (device loss, errors raised by the runtime outside our calls).
pub struct GpuContext {
    // Kept alive for as long as the device is used (some backends tie the device to it).
    _instance: wgpu::Instance,
    adapter_info: wgpu::AdapterInfo,
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) limits: wgpu::Limits,
    /// The device was opened with `shader-f16` (f16 arithmetic in WGSL, `enable f16;`).
    shader_f16: bool,
    /// Compute pipelines by kernel label (== shader stem), compiled on first use.
    pipelines: Mutex<HashMap<&'static str, wgpu::ComputePipeline>>,
    /// Messages of uncaptured errors and device loss, drained by the next `read`.
    uncaptured: Arc<Mutex<Vec<String>>>,
    /// Bytes of every buffer our backends hold (in use or pooled), its peak, and an optional cap.
    memory: Mutex<Memory>,
}

/// GPU memory accounting of one device (WebGPU does not report free memory: this counts what we
/// allocated). `budget` caps it: an allocation past the cap is refused as out of memory, the same
/// error a real allocation failure gives, so callers take the same fallback path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Memory {
    pub allocated: u64,
    pub peak: u64,
    pub budget: Option<u64>,
}

/// Lock a mutex, ignoring poisoning: the guarded data (a cache, a message list) stays valid even
/// if a thread panicked while holding it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl GpuContext {
    /// Find an adapter and open a device on it.
    ///
    /// In the browser (wasm32) this uses WebGPU and first checks that the runtime has it at all:
    /// wgpu's `Instance::new` panics where there is neither a window nor a worker (e.g. Node).
    /// Natively it uses Vulkan only (lavapipe counts: a CPU Vulkan driver is still a device).
    /// No adapter, or a device request that fails, gives [`Error::NoGpu`] with wgpu's reason.
    pub async fn acquire() -> Result<Arc<GpuContext>> {
        #[cfg(target_arch = "wasm32")]
        let backends = {
            if !wgpu::util::is_browser_webgpu_supported().await {
                return Err(Error::NoGpu(
                    "WebGPU is not available here: no navigator.gpu, or the browser offers no adapter (Chromium without a GPU needs --enable-unsafe-webgpu)".into(),
                ));
            }
            wgpu::Backends::BROWSER_WEBGPU
        };
        #[cfg(not(target_arch = "wasm32"))]
        let backends = wgpu::Backends::VULKAN;
        let api = if cfg!(target_arch = "wasm32") { "WebGPU" } else { "Vulkan" };

        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = backends;
        let instance = wgpu::Instance::new(desc);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| Error::NoGpu(format!("no {api} adapter: {e}")))?;

        let required_limits = required_limits(&adapter.limits());
        // Ask only for what is offered: `shader-f16` where the adapter has it (lavapipe does,
        // SwiftShader in Chromium does not), no features otherwise.
        let shader_f16 = adapter.features().contains(wgpu::Features::SHADER_F16);
        let required_features = if shader_f16 { wgpu::Features::SHADER_F16 } else { wgpu::Features::empty() };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("trilemma"),
                required_features,
                required_limits,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::NoGpu(format!("the adapter refused a device: {e}")))?;

        // Errors outside any error scope would otherwise panic (wgpu-core's default handler):
        // record them instead and report them from the next `read`.
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&uncaptured);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| lock(&sink).push(e.to_string())));
        let sink = Arc::clone(&uncaptured);
        device.set_device_lost_callback(move |reason, msg| {
            // `Destroyed` is our own drop of the device, not a failure.
            if reason != wgpu::DeviceLostReason::Destroyed {
                lock(&sink).push(format!("device lost: {msg}"));
            }
        });

        let adapter_info = adapter.get_info();
        #[cfg(target_arch = "wasm32")]
        let adapter_info = browser_adapter_info(&device, adapter_info);

        Ok(Arc::new(GpuContext {
            _instance: instance,
            adapter_info,
            limits: device.limits(),
            shader_f16: device.features().contains(wgpu::Features::SHADER_F16),
            device,
            queue,
            pipelines: Mutex::new(HashMap::new()),
            uncaptured,
            memory: Mutex::new(Memory::default()),
        }))
    }

    /// Whether the adapter is a software rasterizer on the CPU (SwiftShader, lavapipe, a
    /// browser's fallback adapter) rather than a GPU.
    pub fn is_software(&self) -> bool {
        self.adapter_info.device_type == wgpu::DeviceType::Cpu
    }

    /// Whether the device has the `shader-f16` feature: WGSL `f16` arithmetic, used by
    /// `matmul_f16_arith.wgsl`. Half-precision *storage* (`matmul_f16.wgsl`) does not need it.
    pub fn has_shader_f16(&self) -> bool {
        self.shader_f16
    }

    /// One line naming the adapter, for the page, the CLI and results provenance, e.g.
    /// `llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu, driver llvmpipe: Mesa 22.3.6 (LLVM 15.0.6)) [fallback: CPU] [shader-f16]`
    /// on lavapipe; in headless Chromium (adapter architecture `swiftshader`) it ends in
    /// `[fallback: SwiftShader]`. `[shader-f16]` marks a device with f16 arithmetic.
    pub fn adapter_description(&self) -> String {
        let i = &self.adapter_info;
        let name = if i.name.is_empty() { "unnamed adapter" } else { i.name.as_str() };
        let mut s = format!("{name} ({:?}, {:?}", i.backend, i.device_type);
        match (i.driver.is_empty(), i.driver_info.is_empty()) {
            (false, false) => s.push_str(&format!(", driver {}: {}", i.driver, i.driver_info)),
            (false, true) => s.push_str(&format!(", driver {}", i.driver)),
            (true, false) => s.push_str(&format!(", driver {}", i.driver_info)),
            (true, true) => {}
        }
        s.push(')');
        // A CPU device (lavapipe natively; WebGPU's fallback adapter, which wgpu reports as Cpu,
        // e.g. SwiftShader) is far slower than a GPU: say so wherever timings are shown.
        let all = format!("{} {} {}", i.name, i.driver, i.driver_info).to_lowercase();
        if all.contains("swiftshader") {
            s.push_str(" [fallback: SwiftShader]");
        } else if i.device_type == wgpu::DeviceType::Cpu {
            s.push_str(" [fallback: CPU]");
        }
        if self.shader_f16 {
            s.push_str(" [shader-f16]");
        }
        s
    }

    /// Destroy the device, as a lost device would be: every later GPU op or read fails with
    /// `Error::Gpu`. For tests of the CPU fallback (there is no other way to lose a device on
    /// demand).
    pub fn simulate_device_loss(&self) {
        self.device.destroy();
    }

    /// Bytes allocated now, the peak, and the budget.
    pub fn memory(&self) -> Memory {
        *lock(&self.memory)
    }

    /// Cap the bytes of GPU buffers (`None`: no cap beyond the device's own). Used to leave room
    /// for other work on a shared GPU, and by tests to force the out-of-memory fallback.
    pub fn set_memory_budget(&self, budget: Option<u64>) {
        lock(&self.memory).budget = budget;
    }

    /// Count `bytes` as allocated, or refuse with [`Error::Gpu`] ("out of GPU memory") when that
    /// would pass the budget.
    pub(crate) fn reserve(&self, bytes: u64) -> Result<()> {
        let mut m = lock(&self.memory);
        let after = m.allocated.saturating_add(bytes);
        if let Some(budget) = m.budget {
            if after > budget {
                return Err(Error::Gpu(format!(
                    "out of GPU memory: {bytes} more bytes would make {after}, over the budget of {budget} bytes ({} in use)",
                    m.allocated
                )));
            }
        }
        m.allocated = after;
        m.peak = m.peak.max(after);
        Ok(())
    }

    pub(crate) fn release(&self, bytes: u64) {
        let mut m = lock(&self.memory);
        m.allocated = m.allocated.saturating_sub(bytes);
    }

    pub fn info(&self) -> BackendInfo {
        BackendInfo { kind: "webgpu".into(), device: self.adapter_description() }
    }

    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.adapter_info
    }

    /// The compiled pipeline of `kernel`, compiling it on first use. Call inside an error scope:
    /// a shader that fails to compile reports through the scope, not a panic.
    pub(crate) fn pipeline(&self, kernel: &Kernel) -> wgpu::ComputePipeline {
        let mut cache = lock(&self.pipelines);
        if let Some(p) = cache.get(kernel.label) {
            return p.clone();
        }
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(kernel.label),
            source: wgpu::ShaderSource::Wgsl(kernel.source.into()),
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.label),
            // Layout derived from the shader: every kernel uses all of its bindings.
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions { constants: kernel.constants, ..Default::default() },
            cache: None,
        });
        cache.insert(kernel.label, pipeline.clone());
        pipeline
    }

    /// Take the messages of errors that escaped every scope since the last call.
    pub(crate) fn take_uncaptured(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.uncaptured))
    }
}

/// wgpu's WebGPU backend fills only the adapter's description (often empty) and the fallback flag.
/// Add vendor and architecture from `GPUDevice.adapterInfo` (SwiftShader says so there), read
/// through `Reflect` so a browser without that attribute just keeps what wgpu gave.
#[cfg(target_arch = "wasm32")]
fn browser_adapter_info(device: &wgpu::Device, mut info: wgpu::AdapterInfo) -> wgpu::AdapterInfo {
    use wasm_bindgen::JsValue;
    let get = |obj: &JsValue, key: &str| {
        js_sys::Reflect::get(obj, &JsValue::from_str(key)).ok().filter(|v| !v.is_undefined() && !v.is_null())
    };
    let Some(dev) = device.as_webgpu() else { return info };
    let dev: &JsValue = dev.as_ref();
    let Some(ai) = get(dev, "adapterInfo") else { return info };
    let text = |key: &str| get(&ai, key).and_then(|v| v.as_string()).unwrap_or_default();
    let (vendor, arch, desc) = (text("vendor"), text("architecture"), text("description"));
    let vendor_arch =
        [vendor.as_str(), arch.as_str()].iter().filter(|s| !s.is_empty()).copied().collect::<Vec<_>>().join(" ");
    if info.name.is_empty() {
        info.name = if desc.is_empty() { vendor_arch.clone() } else { desc };
    }
    if info.driver.is_empty() {
        info.driver = vendor_arch;
    }
    if get(&ai, "isFallbackAdapter").and_then(|v| v.as_bool()) == Some(true) {
        info.device_type = wgpu::DeviceType::Cpu;
    }
    info
}

/// WebGPU's default limits (or the downlevel ones on an adapter that cannot meet them), raised to
/// the adapter's own storage-binding and buffer sizes: model weights (an embedding table) easily
/// exceed the 128 MiB default binding size.
fn required_limits(adapter: &wgpu::Limits) -> wgpu::Limits {
    let base = if wgpu::Limits::default().check_limits(adapter) {
        wgpu::Limits::default()
    } else {
        wgpu::Limits::downlevel_defaults()
    };
    wgpu::Limits {
        max_storage_buffer_binding_size: base
            .max_storage_buffer_binding_size
            .max(adapter.max_storage_buffer_binding_size),
        max_buffer_size: base.max_buffer_size.max(adapter.max_buffer_size),
        ..base
    }
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext").field("adapter", &self.adapter_description()).finish_non_exhaustive()
    }
}
