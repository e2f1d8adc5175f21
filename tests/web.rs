//! Browser tests (wasm-bindgen-test in headless Chromium, WebGPU on SwiftShader there).
//!
//! Run by `scripts/test.sh` with `TRILEMMA_REQUIRE_WEBGPU=1` at compile time, so a missing
//! adapter is a failure, not a skip; without it, GPU tests skip and say so in the console.
#![cfg(target_arch = "wasm32")]

use std::sync::Arc;
use trilemma::backend::conformance;
use trilemma::backend::cpu::CpuBackend;
use trilemma::backend::gpu::{GpuBackend, GpuContext};
use trilemma::backend::{tolerance, Backend};
use trilemma::demo::{self, DemoWeights};
use trilemma::text::TextTokenizer;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

async fn gpu() -> Option<Arc<GpuContext>> {
    match GpuContext::acquire().await {
        Ok(ctx) => {
            web_sys::console::log_1(&format!("WebGPU adapter: {}", ctx.adapter_description()).into());
            Some(ctx)
        }
        Err(e) if option_env!("TRILEMMA_REQUIRE_WEBGPU") == Some("1") => panic!("WebGPU required but unavailable: {e}"),
        Err(e) => {
            web_sys::console::log_1(&format!("SKIP: no WebGPU adapter ({e})").into());
            None
        }
    }
}

#[wasm_bindgen_test]
async fn cpu_conformance_in_wasm() {
    let cpu = CpuBackend::new();
    conformance::golden(&cpu).await.unwrap();
    conformance::bad_inputs(&cpu).await.unwrap();
    // The f16-arithmetic twin: its hand values, and the f16 bound against f32 products.
    let twin = CpuBackend::with_f16_arithmetic();
    conformance::golden(&twin).await.unwrap();
    conformance::parity(&cpu, &twin, 3).await.unwrap();
}

#[wasm_bindgen_test]
async fn webgpu_golden_and_bad_inputs() {
    let Some(ctx) = gpu().await else { return };
    let g = GpuBackend::new(ctx);
    assert_eq!(g.info().kind, "webgpu");
    conformance::golden(&g).await.unwrap();
    conformance::bad_inputs(&g).await.unwrap();
}

#[wasm_bindgen_test]
async fn webgpu_matches_cpu_at_awkward_sizes() {
    let Some(ctx) = gpu().await else { return };
    let n = conformance::parity(&CpuBackend::new(), &GpuBackend::new(ctx), 7).await.unwrap();
    web_sys::console::log_1(&format!("{n} parity comparisons passed").into());
    assert!(n > 100);
}

#[wasm_bindgen_test]
async fn demo_pipeline_gpu_vs_cpu_with_bundled_tokenizer() {
    let tk = TextTokenizer::from_json_bytes(include_bytes!("../assets/tokenizer/tokenizer.json")).unwrap();
    let enc = tk.encode("a gripping , funny and ultimately moving film").unwrap();
    assert_eq!(enc.ids[0], trilemma::text::BOS_ID);
    let w = DemoWeights::seeded(tk.vocab_size(), demo::DEMO_SEED).unwrap();
    let cpu = demo::run(&CpuBackend::new(), &w, &enc.ids, |_| {}).await.unwrap();
    let Some(ctx) = gpu().await else { return };
    let g = demo::run(&GpuBackend::new(ctx), &w, &enc.ids, |_| {}).await.unwrap();
    let d = demo::max_abs_diff(&cpu, &g).unwrap();
    assert!(d <= tolerance::PIPELINE_ABS, "max |gpu - cpu| = {d}");
    assert_eq!(cpu.argmax, g.argmax);
}

/// The SIMD128 matmul kernels against a float64 triple loop at awkward sizes (bit-equal to the
/// in-order f32 sum and to the scalar twin), the weight cache of the CPU backend, and the CPU
/// backend on the kernels (matmul, element-wise and row ops) against candle on every conformance case.
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

/// The SIMD128 exp, sigmoid, SiLU, log-sigmoid, softmax and RMSNorm kernels and the ternary
/// product give their scalar twins' bits at awkward lengths and on special values (NaN, ±∞, ±0, overflow, underflow), and
/// the twins match float64 (the same checks the native unit tests run on the twins alone). The
/// parity run above checks the CPU backend on them against candle.
#[wasm_bindgen_test]
fn simd_elementwise_kernels() {
    use trilemma::backend::vmath::suite;
    assert!(suite::twins_agree(11).unwrap() > 50);
    // The SIMD128 ternary product: the host product's bits, the same refusals.
    assert!(trilemma::backend::simd_ternary::suite::run(true, 5).unwrap() > 150);
    let worst = suite::accuracy().unwrap();
    assert!(worst > 0.0 && worst <= 1.0, "{worst}");
}

#[wasm_bindgen_test]
async fn webgpu_f16_arithmetic_where_the_adapter_has_shader_f16() {
    let Some(ctx) = gpu().await else { return };
    let g = GpuBackend::new(ctx.clone());
    if !ctx.has_shader_f16() {
        // SwiftShader in Chromium offers no shader-f16: matmul_f16 keeps f32 products (checked above).
        assert!(!g.f16_arithmetic());
        web_sys::console::log_1(&format!("SKIP: no shader-f16 on {}, matmul_f16_arith not run", ctx.adapter_description()).into());
        return;
    }
    assert!(g.f16_arithmetic());
    conformance::golden(&g).await.unwrap();
    let n = conformance::parity(&CpuBackend::with_f16_arithmetic(), &g, 7).await.unwrap();
    web_sys::console::log_1(&format!("f16 arithmetic: {n} parity comparisons passed").into());
}
