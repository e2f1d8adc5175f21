//! wasm tests under Node (no browser, no WebGPU): acquiring the GPU must be a clean
//! `Error::NoGpu`, never a panic (wgpu's `Instance::new` would kill the process there), and the
//! CPU path must work as it does in the page.
#![cfg(target_arch = "wasm32")]

use trilemma::backend::conformance;
use trilemma::backend::cpu::CpuBackend;
use trilemma::backend::gpu::GpuContext;
use trilemma::demo::{self, DemoWeights};
use trilemma::Error;
use wasm_bindgen_test::*;

#[wasm_bindgen_test]
async fn no_webgpu_under_node_is_a_clean_error() {
    match GpuContext::acquire().await {
        Err(Error::NoGpu(reason)) => assert!(reason.contains("WebGPU"), "{reason}"),
        Err(other) => panic!("expected NoGpu, got {other:?}"),
        Ok(ctx) => panic!("Node unexpectedly has WebGPU: {}", ctx.adapter_description()),
    }
    // A second attempt is just as clean.
    assert!(matches!(GpuContext::acquire().await, Err(Error::NoGpu(_))));
}

#[wasm_bindgen_test]
async fn cpu_path_runs_under_node() {
    let cpu = CpuBackend::new();
    conformance::golden(&cpu).await.unwrap();
    conformance::bad_inputs(&cpu).await.unwrap();
    let w = DemoWeights::seeded(300, demo::DEMO_SEED).unwrap();
    let out = demo::run(&cpu, &w, &[1, 5, 299, 7], |_| {}).await.unwrap();
    let total: f32 = out.mean.iter().sum();
    assert!((total - 1.0).abs() < 1e-5, "mean probabilities sum to {total}");
}

/// The SIMD128 matmul kernels against a float64 triple loop at awkward sizes (bit-equal to the
/// in-order f32 sum and to the scalar twin), the weight cache of the CPU backend, and the CPU
/// backend on the kernels against candle's matmul on every conformance case.
#[wasm_bindgen_test]
async fn simd_matmul_kernels() {
    use trilemma::backend::simd;
    assert!(simd::SIMD128);
    let cases = simd::suite::run(simd::matmul, simd::matmul_packed).unwrap();
    assert!(cases > 1000, "{cases}");
    simd::suite::twins_agree(7).unwrap();
    simd::suite::backend_cache().unwrap();
    let n = conformance::parity(&CpuBackend::new().with_matmul_kernel(false), &CpuBackend::new(), 42).await.unwrap();
    assert!(n > 100, "{n}");
}
