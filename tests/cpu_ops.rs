//! The CPU reference backend against hand-computed values, and its typed errors for bad input.

use trilemma::backend::conformance;
use trilemma::backend::cpu::CpuBackend;

fn block<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

#[test]
fn cpu_golden_values() {
    let n = block(conformance::golden(&CpuBackend::new())).unwrap();
    assert!(n > 30, "ran {n} golden checks");
}

#[test]
fn cpu_bad_inputs_are_typed_errors() {
    block(conformance::bad_inputs(&CpuBackend::new())).unwrap();
}

#[test]
fn cpu_is_deterministic() {
    // The CPU path must give bit-identical numbers for the same inputs (shared links rely on it).
    use trilemma::demo::{self, DemoWeights};
    let w = DemoWeights::seeded(500, demo::DEMO_SEED).unwrap();
    let ids: Vec<u32> = (0..37).map(|i| (i * 13 % 500) as u32).collect();
    let a = block(demo::run(&CpuBackend::new(), &w, &ids, |_| {})).unwrap();
    let b = block(demo::run(&CpuBackend::new(), &w, &ids, |_| {})).unwrap();
    let bits = |o: &demo::DemoOutput| o.probs.as_f32("t").unwrap().iter().chain(&o.mean).map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b));
    assert_eq!(a.argmax, b.argmax);
}

#[test]
fn cpu_self_parity_runs_every_case() {
    let a = CpuBackend::new();
    let n = block(conformance::parity(&a, &a, 42)).unwrap();
    assert!(n > 100, "{n}");
}

/// The matmul kernels (`backend::simd`; natively their scalar twin, the same bits as SIMD128 on
/// wasm) behind the whole op set: golden values, typed errors, parity with candle's matmul on every
/// conformance case, and determinism.
#[test]
fn cpu_on_matmul_kernels() {
    let k = CpuBackend::new().with_matmul_kernel(true);
    assert!(block(conformance::golden(&k)).unwrap() > 30);
    block(conformance::bad_inputs(&k)).unwrap();
    let n = block(conformance::parity(&CpuBackend::new().with_matmul_kernel(false), &k, 42)).unwrap();
    assert!(n > 100, "{n}");
    use trilemma::demo::{self, DemoWeights};
    let w = DemoWeights::seeded(500, demo::DEMO_SEED).unwrap();
    let ids: Vec<u32> = (0..37).map(|i| (i * 13 % 500) as u32).collect();
    let a = block(demo::run(&k, &w, &ids, |_| {})).unwrap();
    let b = block(demo::run(&k, &w, &ids, |_| {})).unwrap();
    let bits = |o: &demo::DemoOutput| o.probs.as_f32("t").unwrap().iter().chain(&o.mean).map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b));
}
