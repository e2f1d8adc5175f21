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
    let a = CpuBackend::new();
    let n = block(conformance::parity(&a, &a, 42)).unwrap();
    assert!(n > 100);
}
