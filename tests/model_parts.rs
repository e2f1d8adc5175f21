//! Model building blocks on the CPU reference: GLA's chunkwise form equals its recurrence at odd
//! lengths and chunk sizes (also with strongly negative gate logits), BitLinear's integer form
//! equals the dequantised float form, RoPE at position 0 is the identity.

use proptest::prelude::*;
use trilemma::backend::cpu::CpuBackend;
use trilemma::backend::{Backend, HostTensor, Unary};
use trilemma::models::gla;
use trilemma::nn::linear::{Linear, TernaryWeights};
use trilemma::rng::SplitMix64;

fn block<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

fn rand(be: &CpuBackend, r: &mut SplitMix64, shape: &[usize], lo: f32, hi: f32) -> trilemma::backend::cpu::CpuTensor {
    let n = shape.iter().product();
    be.upload(&HostTensor::f32(shape, r.vec_f32(n, lo, hi)).unwrap()).unwrap()
}

fn gla_case(seed: u64, nh: usize, t: usize, dk: usize, dv: usize, gate_lo: f32, gate_hi: f32, chunk: usize) -> f32 {
    let be = CpuBackend::new();
    let mut r = SplitMix64::new(seed);
    let q = rand(&be, &mut r, &[nh, t, dk], -1.0, 1.0);
    let k = rand(&be, &mut r, &[nh, t, dk], -1.0, 1.0);
    let v = rand(&be, &mut r, &[nh, t, dv], -1.0, 1.0);
    let z = rand(&be, &mut r, &[nh, t, dk], gate_lo, gate_hi);
    let lg = be.unary(Unary::Affine { mul: 1.0 / 16.0, add: 0.0 }, &be.unary(Unary::LogSigmoid, &z).unwrap()).unwrap();
    let a = block(be.read(&gla::recurrent(&be, &q, &k, &v, &lg).unwrap())).unwrap();
    let b = block(be.read(&gla::chunked(&be, &q, &k, &v, &lg, chunk).unwrap())).unwrap();
    assert_eq!(a.shape, b.shape);
    let (a, b) = (a.as_f32("a").unwrap().to_vec(), b.as_f32("b").unwrap().to_vec());
    assert!(a.iter().chain(&b).all(|x| x.is_finite()), "non-finite output");
    a.iter().zip(&b).map(|(x, y)| (x - y).abs() / (1.0 + x.abs())).fold(0.0, f32::max)
}

#[test]
fn gla_chunked_equals_recurrent() {
    for (seed, nh, t, dk, dv, chunk) in [(1, 1, 1, 1, 1, 4), (2, 2, 7, 3, 5, 4), (3, 3, 13, 4, 6, 16), (4, 2, 33, 8, 4, 7), (5, 1, 64, 5, 3, 64)] {
        let d = gla_case(seed, nh, t, dk, dv, -3.0, 3.0, chunk);
        assert!(d < 1e-5, "T={t} chunk={chunk}: max rel diff {d}");
    }
}

#[test]
fn gla_chunked_is_stable_with_strong_decay() {
    // z ≪ 0: per-step log decay ≈ −6/16·… summed over a chunk would overflow exp(−B) if factored.
    let d = gla_case(9, 2, 40, 4, 4, -120.0, -60.0, 16);
    assert!(d < 1e-5, "max rel diff {d}");
}

#[test]
fn rope_at_position_zero_is_identity() {
    let be = CpuBackend::new();
    let (cos, sin) = trilemma::nn::rope::tables(1, 6, 10_000.0, 0).unwrap();
    let x = HostTensor::f32(&[2, 1, 6], (0..12).map(|i| i as f32 - 3.5).collect()).unwrap();
    let y = be.rope(&be.upload(&x).unwrap(), &be.upload(&cos).unwrap(), &be.upload(&sin).unwrap()).unwrap();
    assert_eq!(block(be.read(&y)).unwrap(), x);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The integer-accumulator product equals the dequantised float product `(q/s)·(T·β)ᵀ` (§4.3).
    #[test]
    fn ternary_integer_form_equals_dequantised(seed in 0u64..10_000, t in 1usize..5, k in 1usize..70, n in 1usize..9) {
        let be = CpuBackend::new();
        let mut r = SplitMix64::new(seed);
        let q: Vec<f32> = (0..t * k).map(|_| r.below(255) as f32 - 127.0).collect();
        let tern: Vec<i8> = (0..n * k).map(|_| r.below(3) as i8 - 1).collect();
        let (beta, s) = (r.uniform(0.01, 0.5), r.uniform(1.0, 100.0));
        let packed = trilemma::backend::ternary::pack(&tern, n, k).unwrap();
        let pk = be.upload(&HostTensor::u32(&[n, trilemma::backend::ternary::words_per_row(k)], packed).unwrap()).unwrap();
        let qt = be.upload(&HostTensor::f32(&[t, k], q.clone()).unwrap()).unwrap();
        let acc = block(be.read(&be.ternary_matmul(&qt, &pk).unwrap())).unwrap();
        let acc = acc.as_f32("acc").unwrap();
        for i in 0..t {
            for j in 0..n {
                let exact: i64 = (0..k).map(|c| q[i * k + c] as i64 * tern[j * k + c] as i64).sum();
                prop_assert_eq!(acc[i * n + j], exact as f32, "integer sums are exact");
                let deq: f64 = (0..k).map(|c| (q[i * k + c] / s) as f64 * (tern[j * k + c] as f32 * beta) as f64).sum();
                let int_form = acc[i * n + j] as f64 * beta as f64 / s as f64;
                prop_assert!((int_form - deq).abs() <= 1e-5 * (1.0 + deq.abs()), "{} vs {}", int_form, deq);
            }
        }
    }

    /// BitLinear against the spec's formulas in f64. f32 and f64 may put a value on different sides
    /// of a .5 rounding boundary, which moves one output by at most β/s; such flips must be rare.
    #[test]
    fn bitlinear_matches_spec_formulas(seed in 0u64..10_000, t in 1usize..5, k in 1usize..40, n in 1usize..9) {
        let be = CpuBackend::new();
        let mut r = SplitMix64::new(seed);
        let w = HostTensor::f32(&[n, k], r.vec_f32(n * k, -1.0, 1.0)).unwrap();
        let norm = HostTensor::f32(&[k], r.vec_f32(k, 0.5, 1.5)).unwrap();
        let x = HostTensor::f32(&[t, k], r.vec_f32(t * k, -3.0, 3.0)).unwrap();
        let tw = TernaryWeights::from_latent(&w).unwrap();
        let lin = Linear::bit(&be, &tw, &norm).unwrap();
        let got = block(be.read(&lin.forward(&be, &be.upload(&x).unwrap()).unwrap())).unwrap();
        let got = got.as_f32("g").unwrap();
        let tern = trilemma::backend::ternary::unpack(&tw.packed, n, k).unwrap();
        let (xv, nv) = (x.as_f32("x").unwrap(), norm.as_f32("n").unwrap());
        let mut flips = 0;
        for i in 0..t {
            let row = &xv[i * k..(i + 1) * k];
            let ms = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / k as f64;
            let y: Vec<f64> = row.iter().zip(nv).map(|(v, w)| *v as f64 / (ms + 1e-6).sqrt() * *w as f64).collect();
            let s = 127.0 / y.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-5);
            let q: Vec<f64> = y.iter().map(|v| (v * s).round().clamp(-128.0, 127.0)).collect();
            for j in 0..n {
                let want: f64 = (0..k).map(|c| q[c] * tern[j * k + c] as f64).sum::<f64>() * tw.beta as f64 / s;
                let diff = (got[i * n + j] as f64 - want).abs();
                if diff > 1e-4 * (1.0 + want.abs()) {
                    prop_assert!(diff <= 1.01 * tw.beta as f64 / s + 1e-4 * (1.0 + want.abs()), "t{} n{}: {} vs {}", i, j, got[i * n + j], want);
                    flips += 1;
                }
            }
        }
        prop_assert!(flips * 10 <= t * n, "{} of {} outputs off by a rounding flip", flips, t * n);
    }
}
