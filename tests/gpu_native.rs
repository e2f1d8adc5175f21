//! GPU-vs-CPU parity on a native Vulkan device (lavapipe, Vulkan on the CPU, is enough).
//!
//! Every kernel is checked against its slow twin, the candle-core CPU backend, with seeded random
//! inputs at awkward sizes (odd lengths, non-multiples of the 64-wide matmul tile and of the
//! 256-thread workgroup, rows longer than a workgroup, dispatches too large for one dimension),
//! within the named tolerances of `trilemma::backend::tolerance`. Every bad input must give the
//! same typed error on both backends.
//!
//! Without a Vulkan adapter each test prints `SKIP: ...` and passes, unless
//! `TRILEMMA_REQUIRE_GPU=1`, which turns the missing GPU into a failure (for CI machines that
//! are supposed to have one).

// Native only: pollster and the file system are not there on wasm32 (browser tests live elsewhere).
#![cfg(not(target_arch = "wasm32"))]

use trilemma::backend::cpu::CpuBackend;
use trilemma::backend::gpu::GpuBackend;
use trilemma::backend::{check, ternary, tolerance, Backend, Binary, Data, HostTensor, Reduce, TensorMeta, Unary};
use trilemma::error::{DType, Error, Result};

/// The GPU backend, or `None` (after printing why) when this machine has no adapter.
fn gpu() -> Option<GpuBackend> {
    match pollster::block_on(GpuBackend::acquire()) {
        Ok(g) => Some(g),
        Err(Error::NoGpu(reason)) => {
            if std::env::var("TRILEMMA_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("TRILEMMA_REQUIRE_GPU=1 but no GPU adapter: {reason}");
            }
            eprintln!("SKIP: no GPU adapter ({reason})");
            None
        }
        Err(e) => panic!("acquiring the GPU failed with a non-NoGpu error: {e}"),
    }
}

macro_rules! gpu_or_skip {
    () => {
        match gpu() {
            Some(g) => g,
            None => return,
        }
    };
}

/// Run `$body` on both backends with `$inputs` (a `&[HostTensor]`) uploaded as `$t`, and read
/// the result back.
/// Returns `(gpu, cpu)` results (errors included, for the error-parity tests). The body is
/// expanded once per backend, so it can use the op's full generic API and capture locals.
macro_rules! on_both {
    ($gpu:expr, $inputs:expr, |$be:ident, $t:ident| $body:expr) => {{
        let inputs: &[HostTensor] = $inputs;
        let gpu_result = {
            let $be: &GpuBackend = $gpu;
            (|| -> Result<HostTensor> {
                let $t: Vec<_> = inputs.iter().map(|h| $be.upload(h)).collect::<Result<Vec<_>>>()?;
                let y = $body?;
                pollster::block_on($be.read(&y))
            })()
        };
        let cpu_result = {
            let cpu = CpuBackend::new();
            let $be: &CpuBackend = &cpu;
            (|| -> Result<HostTensor> {
                let $t: Vec<_> = inputs.iter().map(|h| $be.upload(h)).collect::<Result<Vec<_>>>()?;
                let y = $body?;
                pollster::block_on($be.read(&y))
            })()
        };
        (gpu_result, cpu_result)
    }};
}

// ---------------------------------------------------------------------------------------------
// Seeded inputs

/// SplitMix64: a tiny deterministic generator, so failures reproduce exactly.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
    fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
    /// Magnitude in [lo, hi) with a random sign: for divisors and reciprocals (never near 0).
    fn signed_vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| if self.next_u64() & 1 == 0 { self.uniform(lo, hi) } else { -self.uniform(lo, hi) }).collect()
    }
    fn tensor(&mut self, shape: &[usize], lo: f32, hi: f32) -> HostTensor {
        HostTensor::f32(shape, self.vec(shape.iter().product(), lo, hi)).expect("shape matches data")
    }
}

fn f32s(t: &HostTensor) -> &[f32] {
    t.as_f32("test").expect("f32 tensor")
}

// ---------------------------------------------------------------------------------------------
// Comparisons

/// Compare element-wise with a per-element bound `tol(index, cpu_value)`. Equal non-finite values
/// (same infinity, or both NaN) count as equal.
fn assert_close(what: &str, gpu: &HostTensor, cpu: &HostTensor, tol: impl Fn(usize, f32) -> f32) {
    assert_eq!(gpu.shape, cpu.shape, "{what}: shapes differ");
    let (g, c) = (f32s(gpu), f32s(cpu));
    let mut worst: Option<(usize, f32, f32, f32)> = None;
    let mut bad = 0usize;
    for (i, (&gv, &cv)) in g.iter().zip(c).enumerate() {
        let same_special = (gv.is_nan() && cv.is_nan()) || (gv.is_infinite() && gv == cv);
        if same_special {
            continue;
        }
        let (diff, bound) = ((gv - cv).abs(), tol(i, cv));
        if diff.is_nan() || diff > bound {
            bad += 1;
            if worst.is_none_or(|(_, d, _, _)| diff > d || d.is_nan()) {
                worst = Some((i, diff, gv, cv));
            }
        }
    }
    if let Some((i, diff, gv, cv)) = worst {
        panic!(
            "{what}: {bad} of {} elements out of tolerance; worst at {i}: gpu {gv} cpu {cv} |diff| {diff} > {}",
            g.len(),
            tol(i, cv)
        );
    }
}

fn elementwise_tol(_: usize, c: f32) -> f32 {
    tolerance::ELEMENTWISE_ABS + tolerance::ELEMENTWISE_REL * c.abs()
}

/// Row-wise ops: the bound is ROW_REL times a per-row magnitude.
fn row_tol(scale: Vec<f32>, d: usize) -> impl Fn(usize, f32) -> f32 {
    move |i, _| tolerance::ROW_REL * scale[i / d].max(f32::MIN_POSITIVE)
}

/// Per-row statistic of a row-major `[rows, d]` slice.
fn per_row(v: &[f32], d: usize, f: impl Fn(&[f32]) -> f32) -> Vec<f32> {
    v.chunks(d).map(f).collect()
}

fn max_abs(r: &[f32]) -> f32 {
    r.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

fn sum_abs(r: &[f32]) -> f32 {
    r.iter().map(|v| v.abs()).sum()
}

// ---------------------------------------------------------------------------------------------
// Matmul

/// `sum_k |a_ik * b_kj|` in f64 for every output: the scale of the dot product's rounding error.
fn matmul_abs_scale(
    a: &HostTensor,
    b: &HostTensor,
    trans_b: bool,
    (batch, m, k, n): (usize, usize, usize, usize),
) -> Vec<f32> {
    let (av, bv) = (f32s(a), f32s(b));
    let b_stride = if b.shape.len() == 3 { k * n } else { 0 };
    let mut out = vec![0f32; batch * m * n];
    for bi in 0..batch {
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for kk in 0..k {
                    let x = av[bi * m * k + i * k + kk] as f64;
                    let y =
                        if trans_b { bv[bi * b_stride + j * k + kk] } else { bv[bi * b_stride + kk * n + j] } as f64;
                    s += (x * y).abs();
                }
                out[bi * m * n + i * n + j] = s as f32;
            }
        }
    }
    out
}

/// One matmul case: `batch` = None for a rank-2 a; `b_batched` picks a rank-3 b.
fn check_matmul(
    g: &GpuBackend,
    rng: &mut Rng,
    batch: Option<usize>,
    (m, k, n): (usize, usize, usize),
    trans_b: bool,
    b_batched: bool,
) {
    let a_shape: Vec<usize> = match batch {
        Some(bt) => vec![bt, m, k],
        None => vec![m, k],
    };
    let b_mat = if trans_b { [n, k] } else { [k, n] };
    let b_shape: Vec<usize> = match (batch, b_batched) {
        (Some(bt), true) => vec![bt, b_mat[0], b_mat[1]],
        _ => b_mat.to_vec(),
    };
    let a = rng.tensor(&a_shape, -1.0, 1.0);
    let b = rng.tensor(&b_shape, -1.0, 1.0);
    let (gy, cy) = on_both!(g, &[a.clone(), b.clone()], |be, t| be.matmul(&t[0], &t[1], trans_b));
    let what = format!("matmul a{a_shape:?} b{b_shape:?} trans_b={trans_b}");
    let (gy, cy) =
        (gy.unwrap_or_else(|e| panic!("{what}: gpu: {e}")), cy.unwrap_or_else(|e| panic!("{what}: cpu: {e}")));
    let scale = matmul_abs_scale(&a, &b, trans_b, (batch.unwrap_or(1), m, k, n));
    assert_close(&what, &gy, &cy, |i, _| tolerance::MATMUL_REL * scale[i] + tolerance::MATMUL_ABS);
}

#[test]
fn matmul_parity() {
    let g = gpu_or_skip!();
    let mut rng = Rng::new(1);
    let mut cases = 0;
    for &(m, k, n) in &[(1, 1, 1), (7, 13, 5), (33, 65, 17), (64, 64, 64), (65, 16, 63), (1, 300, 70), (130, 7, 129)] {
        for trans_b in [false, true] {
            check_matmul(&g, &mut rng, None, (m, k, n), trans_b, false);
            cases += 1;
        }
    }
    // Batched: b batched too, and a rank-2 b broadcast over the batch.
    for &(bt, m, k, n) in &[(3, 50, 31, 19), (2, 1, 1, 1), (4, 65, 17, 66)] {
        for trans_b in [false, true] {
            for b_batched in [true, false] {
                check_matmul(&g, &mut rng, Some(bt), (m, k, n), trans_b, b_batched);
                cases += 1;
            }
        }
    }
    // 70_000 one-tile batch entries: more workgroups than one dispatch dimension allows (so the
    // grid folds into 2D). Slow on lavapipe (~15 s: each tiny workgroup still walks a 64x64
    // tile), hence a single case.
    check_matmul(&g, &mut rng, Some(70_000), (1, 2, 3), true, true);
    cases += 1;
    eprintln!("matmul: {cases} parity cases on {}", g.info().device);
}

// ---------------------------------------------------------------------------------------------
// Element-wise

/// Sizes that are not multiples of the 256-thread workgroup (and 1).
const LENGTHS: [usize; 6] = [1, 3, 255, 257, 1000, 4099];

/// A valid input domain per op: positive for log/sqrt, away from 0 for recip, wide for the
/// saturating functions (to exercise their stable forms).
fn unary_input(op: Unary, rng: &mut Rng, n: usize) -> Vec<f32> {
    match op {
        Unary::Log | Unary::Sqrt => rng.vec(n, 0.01, 10.0),
        Unary::Recip => rng.signed_vec(n, 0.1, 10.0),
        Unary::Exp => rng.vec(n, -10.0, 10.0),
        Unary::Tanh | Unary::Sigmoid | Unary::Silu | Unary::LogSigmoid => rng.vec(n, -30.0, 30.0),
        _ => rng.vec(n, -5.0, 5.0),
    }
}

#[test]
fn unary_parity() {
    let g = gpu_or_skip!();
    let mut rng = Rng::new(2);
    let mut cases = 0;
    for op in
        Unary::ALL.into_iter().chain([Unary::Affine { mul: -3.0, add: 0.0 }, Unary::Affine { mul: 1.0, add: 7.5 }])
    {
        for &n in &LENGTHS {
            let x = HostTensor::f32(&[n], unary_input(op, &mut rng, n)).expect("shape matches data");
            let (gy, cy) = on_both!(&g, &[x], |be, t| be.unary(op, &t[0]));
            assert_close(&format!("unary {op:?} [{n}]"), &gy.expect("gpu"), &cy.expect("cpu"), elementwise_tol);
            cases += 1;
        }
        // A rank-3 shape: the kernel is shape-blind, the output must keep the shape.
        let x = HostTensor::f32(&[2, 3, 7], unary_input(op, &mut rng, 42)).expect("shape matches data");
        let (gy, cy) = on_both!(&g, &[x], |be, t| be.unary(op, &t[0]));
        assert_close(&format!("unary {op:?} [2,3,7]"), &gy.expect("gpu"), &cy.expect("cpu"), elementwise_tol);
        cases += 1;
    }
    eprintln!("unary: {cases} parity cases");
}

#[test]
fn saturating_unaries_are_stable_at_extremes() {
    // Large |x| must give the limits, never NaN (the reason for the stable WGSL forms).
    let g = gpu_or_skip!();
    let xs = vec![-1e4f32, -200.0, -88.0, -30.0, -1e-6, 0.0, 1e-6, 30.0, 88.0, 200.0, 1e4];
    let x = HostTensor::f32(&[xs.len()], xs.clone()).expect("shape matches data");
    for op in [Unary::Sigmoid, Unary::Silu, Unary::LogSigmoid, Unary::Tanh] {
        let (gy, cy) = on_both!(&g, std::slice::from_ref(&x), |be, t| be.unary(op, &t[0]));
        let (gy, cy) = (gy.expect("gpu"), cy.expect("cpu"));
        for (i, &v) in f32s(&gy).iter().enumerate() {
            assert!(!v.is_nan(), "unary {op:?}({}) is NaN on the GPU", xs[i]);
        }
        // Against the f64 golden model (candle's naive sigmoid formula is also exact here).
        let golden =
            HostTensor::f32(&gy.shape, xs.iter().map(|&v| op.eval_f64(v as f64) as f32).collect()).expect("shape");
        assert_close(&format!("unary {op:?} extremes vs f64"), &gy, &golden, elementwise_tol);
        assert_close(&format!("unary {op:?} extremes vs cpu"), &gy, &cy, elementwise_tol);
    }
}

#[test]
fn binary_parity() {
    let g = gpu_or_skip!();
    let mut rng = Rng::new(3);
    let mut cases = 0;
    // (a shape, b shape): same shape, suffix broadcast, single element (rank 1 and same rank).
    // ... and size-1 dims in both operands, a broadcast first operand, rank 6 and 8.
    let shapes: [(&[usize], &[usize]); 14] = [
        (&[1], &[1]),
        (&[7, 33], &[7, 33]),
        (&[7, 33], &[33]),
        (&[7, 33], &[1]),
        (&[3, 5, 257], &[5, 257]),
        (&[3, 5, 257], &[1, 1, 1]),
        (&[4099], &[4099]),
        (&[7, 33], &[7, 1]),
        (&[33], &[7, 33]),
        (&[1], &[3, 5, 257]),
        (&[7, 1, 5], &[1, 3, 1]),
        (&[300, 1], &[1, 257]),
        (&[2, 1, 3, 1, 5, 1], &[1, 4, 1, 6, 1, 2]),
        (&[2, 1, 2, 1, 2, 1, 2, 1], &[1, 2, 1, 3, 1, 2, 1, 2]),
    ];
    for op in Binary::ALL {
        for &(sa, sb) in &shapes {
            let a = rng.tensor(sa, -5.0, 5.0);
            let nb: usize = sb.iter().product();
            // Divisors stay away from zero.
            let b = HostTensor::f32(sb, rng.signed_vec(nb, 0.5, 4.0)).expect("shape matches data");
            let (gy, cy) = on_both!(&g, &[a, b], |be, t| be.binary(op, &t[0], &t[1]));
            assert_close(
                &format!("binary {op:?} a{sa:?} b{sb:?}"),
                &gy.expect("gpu"),
                &cy.expect("cpu"),
                elementwise_tol,
            );
            cases += 1;
        }
    }
    eprintln!("binary: {cases} parity cases");
}

#[test]
fn elementwise_dispatch_beyond_one_dimension() {
    // More than 65535 workgroups of 256 threads: the dispatch folds into (x, y).
    let g = gpu_or_skip!();
    // [16778, 1000] = 16_778_000 elements > 65_535 * 256 = 16_776_960.
    let mut rng = Rng::new(4);
    let x = rng.tensor(&[16_778, 1000], -5.0, 5.0);
    let (gy, cy) =
        on_both!(&g, std::slice::from_ref(&x), |be, t| be.unary(Unary::Affine { mul: 2.0, add: 1.0 }, &t[0]));
    assert_close("unary affine, 2D dispatch", &gy.expect("gpu"), &cy.expect("cpu"), elementwise_tol);
    let b = rng.tensor(&[1000], -5.0, 5.0);
    let (gy, cy) = on_both!(&g, &[x, b], |be, t| be.binary(Binary::Sub, &t[0], &t[1]));
    assert_close("binary sub, 2D dispatch", &gy.expect("gpu"), &cy.expect("cpu"), elementwise_tol);
    // Both operands broadcast into the same 16.8M outputs.
    let (col, row) = (rng.tensor(&[16_778, 1], -5.0, 5.0), rng.tensor(&[1, 1000], -5.0, 5.0));
    let (gy, cy) = on_both!(&g, &[col, row], |be, t| be.binary(Binary::Mul, &t[0], &t[1]));
    assert_close("binary [16778,1] * [1,1000], 2D dispatch", &gy.expect("gpu"), &cy.expect("cpu"), elementwise_tol);
}

#[test]
fn round_ties_go_away_from_zero_on_both_backends() {
    // Every half from -20.5 to 20.5, their neighbours one ulp either side, and 2^23 + 1.
    let g = gpu_or_skip!();
    let mut xs: Vec<f32> = Vec::new();
    for k in -41..=41 {
        let v = k as f32 / 2.0;
        xs.extend([v, f32::from_bits(v.to_bits() + 1), f32::from_bits(v.to_bits().saturating_sub(1))]);
    }
    xs.push(8_388_609.0);
    let x = HostTensor::f32(&[xs.len()], xs.clone()).expect("shape matches data");
    let (gy, cy) = on_both!(&g, &[x], |be, t| be.unary(Unary::Round, &t[0]));
    let (gy, cy) = (gy.expect("gpu"), cy.expect("cpu"));
    let want: Vec<f32> = xs.iter().map(|v| v.round()).collect();
    assert_eq!(f32s(&gy), want.as_slice(), "gpu round");
    assert_eq!(f32s(&cy), want.as_slice(), "cpu round");
}

// ---------------------------------------------------------------------------------------------
// Row ops: softmax, RMSNorm, reductions

/// Shapes whose last dim takes every awkward length, with a few rows, plus rank-1 and rank-3.
fn row_shapes() -> Vec<Vec<usize>> {
    let mut v: Vec<Vec<usize>> = LENGTHS.iter().map(|&d| vec![5, d]).collect();
    v.push(vec![4099]);
    v.push(vec![2, 3, 257]);
    v.push(vec![1, 1]);
    v
}

#[test]
fn softmax_parity() {
    let g = gpu_or_skip!();
    let mut rng = Rng::new(5);
    let mut cases = 0;
    for shape in row_shapes() {
        // Wide inputs: exp would overflow without the max subtraction.
        for (lo, hi) in [(-3.0, 3.0), (-80.0, 120.0)] {
            let x = rng.tensor(&shape, lo, hi);
            let (gy, cy) = on_both!(&g, &[x], |be, t| be.softmax(&t[0]));
            let (gy, cy) = (gy.expect("gpu"), cy.expect("cpu"));
            let d = *shape.last().expect("rank >= 1");
            // Outputs are probabilities: each row's scale is its largest probability.
            let scale = per_row(f32s(&cy), d, max_abs);
            assert_close(&format!("softmax {shape:?} in [{lo},{hi})"), &gy, &cy, row_tol(scale, d));
            cases += 1;
        }
    }
    eprintln!("softmax: {cases} parity cases");
}

#[test]
fn rms_norm_parity() {
    let g = gpu_or_skip!();
    let mut rng = Rng::new(6);
    let mut cases = 0;
    for shape in row_shapes() {
        let d = *shape.last().expect("rank >= 1");
        for eps in [1e-5f32, 1e-6] {
            let x = rng.tensor(&shape, -4.0, 4.0);
            let w = rng.tensor(&[d], -2.0, 2.0);
            let (gy, cy) = on_both!(&g, &[x, w], |be, t| be.rms_norm(&t[0], &t[1], eps));
            let (gy, cy) = (gy.expect("gpu"), cy.expect("cpu"));
            let scale = per_row(f32s(&cy), d, max_abs);
            assert_close(&format!("rms_norm {shape:?} eps={eps}"), &gy, &cy, row_tol(scale, d));
            cases += 1;
        }
    }
    eprintln!("rms_norm: {cases} parity cases");
}

/// Compare a reduction's output `[.., 1]` with the CPU's: exact for max/min/argmax (they pick an
/// element), within ROW_REL of the row's sum of |x| (or mean of |x|) for sum/mean.
fn check_reduce(g: &GpuBackend, op: Reduce, x: &HostTensor) {
    let d = *x.shape.last().expect("rank >= 1");
    let (gy, cy) = on_both!(g, std::slice::from_ref(x), |be, t| be.reduce(op, &t[0]));
    let what = format!("reduce {op:?} {:?}", x.shape);
    let (gy, cy) =
        (gy.unwrap_or_else(|e| panic!("{what}: gpu: {e}")), cy.unwrap_or_else(|e| panic!("{what}: cpu: {e}")));
    match op {
        Reduce::ArgMax => {
            assert_eq!(gy.dtype(), DType::U32, "{what}: argmax must be u32");
            assert_eq!(gy, cy, "{what}: argmax differs (ties must go to the first maximum)");
        }
        Reduce::Max | Reduce::Min => assert_eq!(gy, cy, "{what}: max/min must be exact"),
        Reduce::Sum | Reduce::Mean => {
            let mut scale = per_row(f32s(x), d, sum_abs);
            if op == Reduce::Mean {
                scale.iter_mut().for_each(|s| *s /= d as f32);
            }
            assert_close(&what, &gy, &cy, row_tol(scale, 1));
        }
    }
}

#[test]
fn reduce_parity() {
    let g = gpu_or_skip!();
    let mut rng = Rng::new(7);
    let mut cases = 0;
    for op in Reduce::ALL {
        for shape in row_shapes() {
            check_reduce(&g, op, &rng.tensor(&shape, -10.0, 10.0));
            cases += 1;
        }
        // All-negative rows: max must not be clamped by a 0 start value.
        check_reduce(&g, op, &rng.tensor(&[3, 300], -10.0, -1.0));
        cases += 1;
    }
    eprintln!("reduce: {cases} parity cases");
}

#[test]
fn argmax_ties_pick_the_first_maximum() {
    let g = gpu_or_skip!();
    let mut rng = Rng::new(8);
    // Values from a 3-element set: every row has many tied maxima, spread over all threads.
    for d in [2, 3, 255, 257, 1000, 4099] {
        let data: Vec<f32> = (0..4 * d).map(|_| (rng.next_u64() % 3) as f32).collect();
        check_reduce(&g, Reduce::ArgMax, &HostTensor::f32(&[4, d], data).expect("shape matches data"));
    }
    // A constant row: index 0.
    check_reduce(&g, Reduce::ArgMax, &HostTensor::f32(&[1, 600], vec![1.5; 600]).expect("shape matches data"));
    // The maximum only in the last element, and only in the first.
    let mut last = vec![0.0f32; 513];
    last[512] = 1.0;
    check_reduce(&g, Reduce::ArgMax, &HostTensor::f32(&[513], last).expect("shape matches data"));
    let mut first = vec![0.0f32; 513];
    first[0] = 1.0;
    check_reduce(&g, Reduce::ArgMax, &HostTensor::f32(&[513], first).expect("shape matches data"));
}

#[test]
fn row_ops_beyond_one_dispatch_dimension() {
    // 70_000 rows: one workgroup per row needs a 2D dispatch.
    let g = gpu_or_skip!();
    let mut rng = Rng::new(9);
    let x = rng.tensor(&[70_000, 3], -3.0, 3.0);
    let (gy, cy) = on_both!(&g, std::slice::from_ref(&x), |be, t| be.softmax(&t[0]));
    let cy = cy.expect("cpu");
    let scale = per_row(f32s(&cy), 3, max_abs);
    assert_close("softmax [70000, 3]", &gy.expect("gpu"), &cy, row_tol(scale, 3));
    let w = rng.tensor(&[3], -1.0, 1.0);
    let (gy, cy) = on_both!(&g, &[x.clone(), w], |be, t| be.rms_norm(&t[0], &t[1], 1e-5));
    let cy = cy.expect("cpu");
    let scale = per_row(f32s(&cy), 3, max_abs);
    assert_close("rms_norm [70000, 3]", &gy.expect("gpu"), &cy, row_tol(scale, 3));
    check_reduce(&g, Reduce::ArgMax, &x);
    check_reduce(&g, Reduce::Sum, &x);
}

// ---------------------------------------------------------------------------------------------
// Gather

#[test]
fn gather_parity() {
    let g = gpu_or_skip!();
    let mut rng = Rng::new(10);
    let mut cases = 0;
    for &(n, d, t) in &[(1, 1, 1), (50, 7, 13), (1, 4099, 3), (300, 257, 64), (5, 3, 1000)] {
        let table = rng.tensor(&[n, d], -1.0, 1.0);
        let ids: Vec<u32> = (0..t).map(|_| (rng.next_u64() % n as u64) as u32).collect();
        let (gy, cy) = on_both!(&g, &[table], |be, tt| be.gather(&tt[0], &ids));
        // A copy: exact.
        assert_eq!(gy.expect("gpu"), cy.expect("cpu"), "gather table [{n},{d}] ids x{t}");
        cases += 1;
    }
    eprintln!("gather: {cases} parity cases");
}

// ---------------------------------------------------------------------------------------------
// Data movement, scans and the ternary product beyond the conformance suite's sizes
// (its parity cases run in `conformance_suite_on_the_gpu`)

#[test]
fn reshape_is_free() {
    let g = gpu_or_skip!();
    let x = g.upload(&f(&[2, 3, 4])).expect("upload");
    let y = g.reshape(&x, &[6, 4]).expect("reshape");
    // The same buffer, no copy recorded: a new shape over the same words.
    assert!(std::ptr::eq(x.buffer(), y.buffer()));
    assert_eq!(y.shape(), &[6, 4]);
    assert_eq!(g.read_blocking(&y).expect("read"), HostTensor::f32(&[6, 4], f32s(&f(&[24])).to_vec()).expect("24"));
    // Ops on the view leave the original alone.
    let z = g.unary(Unary::Neg, &y).expect("neg");
    assert_eq!(g.read_blocking(&x).expect("read"), f(&[2, 3, 4]));
    assert_eq!(g.read_blocking(&z).expect("read").shape, vec![6, 4]);
}

#[test]
fn copies_beyond_one_dispatch_dimension() {
    // 16.8M elements: more than 65535 workgroups of 256 threads, so the grid folds into (x, y).
    let g = gpu_or_skip!();
    let mut rng = Rng::new(20);
    let x = rng.tensor(&[16_778, 1000], -1.0, 1.0);
    let (gy, cy) = on_both!(&g, std::slice::from_ref(&x), |be, t| be.permute(&t[0], &[1, 0]));
    assert_eq!(gy.expect("gpu"), cy.expect("cpu"), "transpose [16778, 1000]");
    let (gy, cy) = on_both!(&g, std::slice::from_ref(&x), |be, t| be.narrow(&t[0], 1, 1, 998));
    assert_eq!(gy.expect("gpu"), cy.expect("cpu"), "narrow [16778, 1000] dim 1");
    // (Two such halves would exceed lavapipe's 128 MiB binding limit: add a thin column instead.)
    let col = rng.tensor(&[16_778, 1], -1.0, 1.0);
    let (gy, cy) = on_both!(&g, &[x, col], |be, t| be.concat(&[&t[0], &t[1]], 1));
    assert_eq!(gy.expect("gpu"), cy.expect("cpu"), "concat [16778, 1000] + [16778, 1] dim 1");
}

#[test]
fn scans_at_the_edges_of_their_dispatches() {
    let g = gpu_or_skip!();
    let mut rng = Rng::new(21);
    // 70_000 rows: one workgroup per row needs a 2D dispatch; and one row of 3 chunks + 1.
    for shape in [[70_000, 3], [1, 3 * 1024 + 1]] {
        let x = rng.tensor(&shape, -3.0, 3.0);
        let (gy, cy) = on_both!(&g, std::slice::from_ref(&x), |be, t| be.cumsum(&t[0]));
        let d = shape[1];
        let prefix: Vec<f32> = f32s(&x)
            .chunks(d)
            .flat_map(|r| {
                r.iter().scan(0f32, |acc, v| {
                    *acc += v.abs();
                    Some(*acc)
                })
            })
            .collect();
        assert_close(&format!("cumsum {shape:?}"), &gy.expect("gpu"), &cy.expect("cpu"), |i, _| {
            tolerance::SCAN_REL * prefix[i]
        });
    }
    // 70_001 channels (not a multiple of the workgroup), a few steps, decays in (0, 1).
    let (t, d) = (5, 70_001);
    let a = rng.tensor(&[t, d], 0.001, 0.999);
    let b = rng.tensor(&[t, d], -1.0, 1.0);
    let (gy, cy) = on_both!(&g, &[a, b], |be, x| be.scan(&x[0], &x[1]));
    // |h_t| <= sum_s |b_s| <= t.
    assert_close("scan [5, 70001]", &gy.expect("gpu"), &cy.expect("cpu"), |_, _| tolerance::SCAN_REL * t as f32);
}

/// Random ternary values `[n, k]` and their packed words.
fn random_ternary(rng: &mut Rng, n: usize, k: usize) -> (Vec<i8>, HostTensor) {
    let values: Vec<i8> = (0..n * k).map(|_| (rng.next_u64() % 3) as i8 - 1).collect();
    let words = ternary::pack(&values, n, k).expect("valid ternary values");
    (values, HostTensor::u32(&[n, ternary::words_per_row(k)], words).expect("shape matches data"))
}

#[test]
fn ternary_matmul_beyond_one_dispatch_dimension() {
    // 65_537 column tiles of 64: the tile grid folds into (x, y).
    let g = gpu_or_skip!();
    let mut rng = Rng::new(22);
    let (m, k, n) = (2, 16, 64 * 65_536 + 1);
    let (_, packed) = random_ternary(&mut rng, n, k);
    let x = HostTensor::f32(&[m, k], (0..m * k).map(|i| (i as f32) - 15.0).collect()).expect("shape");
    let (gy, cy) = on_both!(&g, &[x, packed], |be, t| be.ternary_matmul(&t[0], &t[1]));
    // Integer x: exact.
    assert_eq!(gy.expect("gpu"), cy.expect("cpu"), "ternary_matmul [{m},{k}] x [{n},{k}]");
}

#[test]
fn ternary_matmul_on_random_floats_is_bit_identical_to_the_cpu() {
    // The kernel sums j = 0..K in order like `ternary_matmul_host`, with additions only, so even
    // rounding agrees (beyond the tolerance the conformance suite asks for).
    let g = gpu_or_skip!();
    let mut rng = Rng::new(23);
    for (m, k, n) in [(17, 1000, 129), (33, 257, 70), (1, 4099, 3)] {
        let (_, packed) = random_ternary(&mut rng, n, k);
        let x = rng.tensor(&[m, k], -1.0, 1.0);
        let (gy, cy) = on_both!(&g, &[x, packed], |be, t| be.ternary_matmul(&t[0], &t[1]));
        let (gy, cy) = (gy.expect("gpu"), cy.expect("cpu"));
        let bits = |h: &HostTensor| f32s(h).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&gy), bits(&cy), "ternary_matmul {m}x{k}x{n}");
    }
}

#[test]
fn invalid_ternary_words_gpu_reads_code_3_as_zero_cpu_refuses() {
    // The contract: weights are validated once on the host when loaded; the kernel cannot return
    // errors, so it decodes code 3 as 0 and never reads the padding. The CPU reference refuses.
    let g = gpu_or_skip!();
    let k = 17;
    let x = HostTensor::f32(&[1, k], (1..=k).map(|v| v as f32).collect()).expect("shape");
    // Row 0: weight 0 = +1, weight 1 = code 3, weight 2 = -1. Row 1: weight 16 = +1, then padding
    // bits set (weight 17 would be +1).
    let words = vec![1 | 3 << 2 | 2 << 4, 0, 0, 1 | 1 << 2];
    let packed = HostTensor::u32(&[2, 2], words.clone()).expect("shape");
    assert!(matches!(ternary::validate(&words, 2, k), Err(Error::Invalid(_))));
    assert!(matches!(ternary::validate(&[0, 0, 0, 1 | 1 << 2], 2, k), Err(Error::Invalid(_))));
    let (gy, cy) = on_both!(&g, &[x, packed], |be, t| be.ternary_matmul(&t[0], &t[1]));
    assert!(matches!(cy, Err(Error::Invalid(_))), "cpu: {cy:?}");
    assert_eq!(gy.expect("gpu"), HostTensor::f32(&[1, 2], vec![1.0 - 3.0, 17.0]).expect("shape"));
}

#[test]
fn hgrn_style_chain_in_one_submission() {
    // Every new op in one recorded chain, read once: ternary projections of quantised inputs,
    // a broadcast gate, the recurrence, then data movement and a cumsum.
    let g = gpu_or_skip!();
    let mut rng = Rng::new(24);
    let (t, d, k) = (9, 40, 33);
    let x: Vec<f32> = (0..t * k).map(|_| rng.uniform(-3.0, 3.0)).collect();
    let (_, wf) = random_ternary(&mut rng, d, k);
    let (_, wi) = random_ternary(&mut rng, d, k);
    let inputs = [HostTensor::f32(&[t, k], x).expect("x"), wf, wi, rng.tensor(&[1, d], -1.0, 1.0)];
    let (gy, cy) = on_both!(&g, &inputs, |be, w| {
        // Quantise: round(clamp(x * 127 / 3)).
        let q = be.unary(Unary::Affine { mul: 127.0 / 3.0, add: 0.0 }, &w[0])?;
        let q = be.unary(Unary::Round, &be.unary(Unary::Clamp { lo: -127.0, hi: 127.0 }, &q)?)?;
        let f = be.ternary_matmul(&q, &w[1])?;
        let f = be.binary(Binary::Add, &f, &w[3])?;
        let a = be.unary(Unary::Sigmoid, &be.unary(Unary::Affine { mul: 0.01, add: 0.0 }, &f)?)?;
        let i = be.unary(Unary::Affine { mul: 0.01, add: 0.0 }, &be.ternary_matmul(&q, &w[2])?)?;
        let b = be.binary(Binary::Mul, &be.unary(Unary::Affine { mul: -1.0, add: 1.0 }, &a)?, &i)?;
        let h = be.scan(&a, &b)?;
        // [T, D] -> [T, 4, 10] -> [4, T, 10], last two heads, back to rows, plus the first rows.
        let h = be.permute(&be.reshape(&h, &[t, 4, 10])?, &[1, 0, 2])?;
        let h = be.reshape(&be.narrow(&h, 0, 2, 2)?, &[2 * t, 10])?;
        let h = be.concat(&[&h, &be.narrow(&h, 0, 0, 3)?], 0)?;
        be.cumsum(&h)
    });
    let (gy, cy) = (gy.expect("gpu"), cy.expect("cpu"));
    assert_eq!(gy.shape, vec![2 * t + 3, 10]);
    assert_close("hgrn-style chain", &gy, &cy, |_, _| tolerance::PIPELINE_ABS);
}

// ---------------------------------------------------------------------------------------------
// Uploads, reads, chains

#[test]
fn upload_read_roundtrip_including_empty() {
    let g = gpu_or_skip!();
    let cases = [
        HostTensor::f32(&[0], vec![]).expect("empty"),
        HostTensor::f32(&[2, 0, 3], vec![]).expect("empty"),
        HostTensor::u32(&[0], vec![]).expect("empty"),
        HostTensor::f32(&[1], vec![-0.0]).expect("one"),
        HostTensor::f32(&[2, 3], vec![1.0, f32::INFINITY, f32::NEG_INFINITY, f32::MIN_POSITIVE, f32::MAX, 1e-42])
            .expect("six"),
        HostTensor::u32(&[3], vec![0, 7, u32::MAX]).expect("three"),
        HostTensor::f32(&[], vec![42.0]).expect("scalar"),
    ];
    for h in cases {
        let t = g.upload(&h).expect("upload");
        assert_eq!(t.shape(), h.shape.as_slice());
        assert_eq!(t.dtype(), h.dtype());
        let back = g.read_blocking(&t).expect("read");
        // Bit-exact (covers -0.0 and subnormals, which PartialEq on f32 would blur).
        match (&back.data, &h.data) {
            (Data::F32(a), Data::F32(b)) => {
                assert_eq!(
                    a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                )
            }
            _ => assert_eq!(back, h),
        }
        assert_eq!(back.shape, h.shape);
    }
}

#[test]
fn pipeline_in_one_submission_matches_cpu() {
    // gather -> RMSNorm -> matmul (Linear layout) -> SiLU -> matmul -> softmax, read once.
    let g = gpu_or_skip!();
    let mut rng = Rng::new(11);
    let (vocab, d, f, t) = (97, 48, 70, 9);
    let ids: Vec<u32> = (0..t).map(|_| (rng.next_u64() % vocab) as u32).collect();
    let inputs = [
        rng.tensor(&[vocab as usize, d], -1.0, 1.0),
        rng.tensor(&[d], 0.5, 1.5),
        rng.tensor(&[f, d], -0.3, 0.3),
        rng.tensor(&[f, 5], -0.3, 0.3),
    ];
    let (gy, cy) = on_both!(&g, &inputs, |be, w| {
        let x = be.gather(&w[0], &ids)?;
        let x = be.rms_norm(&x, &w[1], 1e-5)?;
        let h = be.matmul(&x, &w[2], true)?;
        let h = be.unary(Unary::Silu, &h)?;
        let logits = be.matmul(&h, &w[3], false)?;
        be.softmax(&logits)
    });
    let (gy, cy) = (gy.expect("gpu"), cy.expect("cpu"));
    assert_eq!(gy.shape, vec![t, 5]);
    assert_close("pipeline", &gy, &cy, |_, _| tolerance::PIPELINE_ABS);
}

#[test]
fn reads_between_ops_and_repeated_reads() {
    let g = gpu_or_skip!();
    let x = g.upload(&HostTensor::f32(&[4], vec![1.0, 2.0, 3.0, 4.0]).expect("four")).expect("upload");
    let y = g.unary(Unary::Square, &x).expect("square");
    assert_eq!(g.read_blocking(&y).expect("read").data, Data::F32(vec![1.0, 4.0, 9.0, 16.0]));
    // Read again (nothing pending), then keep recording on results of earlier submissions.
    assert_eq!(g.read_blocking(&y).expect("read").data, Data::F32(vec![1.0, 4.0, 9.0, 16.0]));
    let z = g.binary(Binary::Add, &y, &x).expect("add");
    let s = g.reduce(Reduce::Sum, &z).expect("sum");
    assert_eq!(g.read_blocking(&s).expect("read"), HostTensor::f32(&[1], vec![40.0]).expect("one"));
    assert_eq!(g.read_blocking(&x).expect("read").data, Data::F32(vec![1.0, 2.0, 3.0, 4.0]));
}

#[test]
fn tensors_of_another_backend_are_refused() {
    let g1 = gpu_or_skip!();
    let g2 = GpuBackend::new(g1.context().clone());
    let x = g1.upload(&HostTensor::f32(&[2], vec![1.0, 2.0]).expect("two")).expect("upload");
    assert!(matches!(g2.unary(Unary::Neg, &x), Err(Error::Invalid(_))));
    assert!(matches!(g2.read_blocking(&x), Err(Error::Invalid(_))));
}

#[test]
fn info_names_the_adapter() {
    let g = gpu_or_skip!();
    let info = g.info();
    assert_eq!(info.kind, "webgpu");
    assert!(!info.device.is_empty());
    eprintln!("adapter: {}", info.device);
}

// ---------------------------------------------------------------------------------------------
// Error parity: the same bad input gives the same typed error on both backends.

/// Run a failing op on both backends and require the identical error.
macro_rules! same_error {
    ($g:expr, $inputs:expr, |$be:ident, $t:ident| $body:expr) => {{
        let (ge, ce) = on_both!($g, $inputs, |$be, $t| $body);
        let what = stringify!($body);
        let ce = ce.err().unwrap_or_else(|| panic!("{what}: the CPU accepted a bad input"));
        let ge = ge.err().unwrap_or_else(|| panic!("{what}: the GPU accepted a bad input (CPU said: {ce})"));
        assert_eq!(ge, ce, "{what}: GPU and CPU errors differ");
        ge
    }};
}

fn f(shape: &[usize]) -> HostTensor {
    let n = shape.iter().product();
    HostTensor::f32(shape, (0..n).map(|i| i as f32 + 1.0).collect()).expect("shape matches data")
}

fn u(shape: &[usize]) -> HostTensor {
    let n: usize = shape.iter().product();
    HostTensor::u32(shape, (0..n as u32).collect()).expect("shape matches data")
}

#[test]
fn bad_inputs_give_the_same_typed_errors() {
    let g = gpu_or_skip!();
    let shape_err = |e: &Error| matches!(e, Error::Shape { .. });
    let empty_err = |e: &Error| matches!(e, Error::Empty { .. });
    let dtype_err = |e: &Error| matches!(e, Error::DType { expected: DType::F32, got: DType::U32, .. });

    // matmul
    assert!(shape_err(&same_error!(&g, &[f(&[2, 3]), f(&[4, 5])], |be, t| be.matmul(&t[0], &t[1], false))));
    assert!(shape_err(&same_error!(&g, &[f(&[2, 3]), f(&[3, 5])], |be, t| be.matmul(&t[0], &t[1], true))));
    assert!(shape_err(&same_error!(&g, &[f(&[3]), f(&[3, 5])], |be, t| be.matmul(&t[0], &t[1], false))));
    assert!(shape_err(&same_error!(&g, &[f(&[2, 3]), f(&[2, 3, 5])], |be, t| be.matmul(&t[0], &t[1], false))));
    assert!(shape_err(&same_error!(&g, &[f(&[2, 2, 3]), f(&[3, 3, 5])], |be, t| be.matmul(&t[0], &t[1], false))));
    assert!(shape_err(&same_error!(&g, &[f(&[1, 2, 2, 3]), f(&[3, 5])], |be, t| be.matmul(&t[0], &t[1], false))));
    assert!(empty_err(&same_error!(&g, &[f(&[0, 3]), f(&[3, 5])], |be, t| be.matmul(&t[0], &t[1], false))));
    assert!(empty_err(&same_error!(&g, &[f(&[2, 3]), f(&[3, 0])], |be, t| be.matmul(&t[0], &t[1], false))));
    assert!(dtype_err(&same_error!(&g, &[u(&[2, 3]), f(&[3, 5])], |be, t| be.matmul(&t[0], &t[1], false))));
    assert!(dtype_err(&same_error!(&g, &[f(&[2, 3]), u(&[3, 5])], |be, t| be.matmul(&t[0], &t[1], false))));

    // unary (every op refuses the same way)
    for op in Unary::ALL {
        assert!(empty_err(&same_error!(&g, &[f(&[0])], |be, t| be.unary(op, &t[0]))));
        assert!(empty_err(&same_error!(&g, &[f(&[3, 0])], |be, t| be.unary(op, &t[0]))));
        assert!(dtype_err(&same_error!(&g, &[u(&[4])], |be, t| be.unary(op, &t[0]))));
    }

    // binary
    for op in Binary::ALL {
        assert!(shape_err(&same_error!(&g, &[f(&[2, 3]), f(&[2])], |be, t| be.binary(op, &t[0], &t[1]))));
        // Right-aligned broadcasting: [3] over [2, 3] is fine now, [3] over [2, 2] is not.
        assert!(shape_err(&same_error!(&g, &[f(&[3]), f(&[2, 2])], |be, t| be.binary(op, &t[0], &t[1]))));
        assert!(shape_err(&same_error!(&g, &[f(&[2, 1, 3]), f(&[4, 2])], |be, t| be.binary(op, &t[0], &t[1]))));
        assert!(shape_err(&same_error!(&g, &[f(&[4, 3]), f(&[2, 3])], |be, t| be.binary(op, &t[0], &t[1]))));
        assert!(empty_err(&same_error!(&g, &[f(&[0]), f(&[1])], |be, t| be.binary(op, &t[0], &t[1]))));
        assert!(empty_err(&same_error!(&g, &[f(&[2]), f(&[0])], |be, t| be.binary(op, &t[0], &t[1]))));
        assert!(dtype_err(&same_error!(&g, &[u(&[2]), f(&[2])], |be, t| be.binary(op, &t[0], &t[1]))));
        assert!(dtype_err(&same_error!(&g, &[f(&[2]), u(&[2])], |be, t| be.binary(op, &t[0], &t[1]))));
    }

    // softmax
    assert!(empty_err(&same_error!(&g, &[f(&[3, 0])], |be, t| be.softmax(&t[0]))));
    assert!(empty_err(&same_error!(&g, &[f(&[0, 3])], |be, t| be.softmax(&t[0]))));
    assert!(dtype_err(&same_error!(&g, &[u(&[2, 3])], |be, t| be.softmax(&t[0]))));

    // rms_norm
    assert!(shape_err(&same_error!(&g, &[f(&[2, 3]), f(&[4])], |be, t| be.rms_norm(&t[0], &t[1], 1e-5))));
    assert!(shape_err(&same_error!(&g, &[f(&[2, 3]), f(&[1, 3])], |be, t| be.rms_norm(&t[0], &t[1], 1e-5))));
    assert!(empty_err(&same_error!(&g, &[f(&[2, 0]), f(&[3])], |be, t| be.rms_norm(&t[0], &t[1], 1e-5))));
    assert!(empty_err(&same_error!(&g, &[f(&[2, 3]), f(&[0])], |be, t| be.rms_norm(&t[0], &t[1], 1e-5))));
    assert!(dtype_err(&same_error!(&g, &[u(&[2, 3]), f(&[3])], |be, t| be.rms_norm(&t[0], &t[1], 1e-5))));
    assert!(dtype_err(&same_error!(&g, &[f(&[2, 3]), u(&[3])], |be, t| be.rms_norm(&t[0], &t[1], 1e-5))));
    for eps in [0.0, -1e-5, f32::NAN, f32::INFINITY] {
        let e = same_error!(&g, &[f(&[2, 3]), f(&[3])], |be, t| be.rms_norm(&t[0], &t[1], eps));
        assert!(matches!(e, Error::Invalid(_)), "eps {eps}: {e}");
    }

    // reduce
    for op in Reduce::ALL {
        assert!(empty_err(&same_error!(&g, &[f(&[4, 0])], |be, t| be.reduce(op, &t[0]))));
        assert!(empty_err(&same_error!(&g, &[f(&[0])], |be, t| be.reduce(op, &t[0]))));
        assert!(dtype_err(&same_error!(&g, &[u(&[4, 2])], |be, t| be.reduce(op, &t[0]))));
    }

    // gather
    let e = same_error!(&g, &[f(&[5, 3])], |be, t| be.gather(&t[0], &[0, 4, 5]));
    assert_eq!(e, Error::Index { op: "gather", index: 5, size: 5 });
    let e = same_error!(&g, &[f(&[5, 3])], |be, t| be.gather(&t[0], &[u32::MAX]));
    assert!(matches!(e, Error::Index { .. }));
    assert!(empty_err(&same_error!(&g, &[f(&[5, 3])], |be, t| be.gather(&t[0], &[]))));
    assert!(empty_err(&same_error!(&g, &[f(&[0, 3])], |be, t| be.gather(&t[0], &[0]))));
    assert!(shape_err(&same_error!(&g, &[f(&[2, 5, 3])], |be, t| be.gather(&t[0], &[0]))));
    assert!(shape_err(&same_error!(&g, &[f(&[15])], |be, t| be.gather(&t[0], &[0]))));
    assert!(dtype_err(&same_error!(&g, &[u(&[5, 3])], |be, t| be.gather(&t[0], &[0]))));

    // reshape / permute / narrow / concat (any dtype)
    assert!(shape_err(&same_error!(&g, &[f(&[2, 3])], |be, t| be.reshape(&t[0], &[4, 2]))));
    assert!(shape_err(&same_error!(&g, &[u(&[2, 3])], |be, t| be.reshape(&t[0], &[]))));
    for perm in [&[0usize, 0][..], &[0], &[0, 2], &[1, 0, 2]] {
        assert!(shape_err(&same_error!(&g, &[f(&[2, 3])], |be, t| be.permute(&t[0], perm))));
    }
    let deep: Vec<usize> = vec![1; check::MAX_RANK + 1];
    let deep_perm: Vec<usize> = (0..=check::MAX_RANK).collect();
    let e = same_error!(&g, &[f(&deep)], |be, t| be.permute(&t[0], &deep_perm));
    assert!(shape_err(&e) && e.to_string().contains("limit"), "{e}");
    let e = same_error!(&g, &[f(&deep), f(&[1])], |be, t| be.binary(Binary::Add, &t[0], &t[1]));
    assert!(shape_err(&e) && e.to_string().contains("limit"), "{e}");
    for (dim, start, len) in [(2, 0, 1), (1, 2, 2), (0, 0, 0), (1, usize::MAX, 2)] {
        assert!(shape_err(&same_error!(&g, &[u(&[2, 3])], |be, t| be.narrow(&t[0], dim, start, len))));
    }
    assert!(shape_err(&same_error!(&g, &[f(&[2, 3]), f(&[2, 2])], |be, t| be.concat(&[&t[0], &t[1]], 0))));
    assert!(shape_err(&same_error!(&g, &[f(&[2, 3]), f(&[6])], |be, t| be.concat(&[&t[0], &t[1]], 0))));
    assert!(shape_err(&same_error!(&g, &[f(&[2, 3]), f(&[2, 3])], |be, t| be.concat(&[&t[0], &t[1]], 2))));
    let e = same_error!(&g, &[u(&[2, 3]), f(&[2, 3])], |be, t| be.concat(&[&t[0], &t[1]], 0));
    assert_eq!(e, Error::DType { op: "concat", expected: DType::U32, got: DType::F32 });
    assert!(empty_err(&same_error!(&g, &[], |be, _t| be.concat(&[], 0))));

    // cumsum, scan
    assert!(empty_err(&same_error!(&g, &[f(&[2, 0])], |be, t| be.cumsum(&t[0]))));
    assert!(dtype_err(&same_error!(&g, &[u(&[2, 3])], |be, t| be.cumsum(&t[0]))));
    assert!(shape_err(&same_error!(&g, &[f(&[2, 3]), f(&[3, 2])], |be, t| be.scan(&t[0], &t[1]))));
    assert!(shape_err(&same_error!(&g, &[f(&[6]), f(&[6])], |be, t| be.scan(&t[0], &t[1]))));
    assert!(empty_err(&same_error!(&g, &[f(&[0, 2]), f(&[0, 2])], |be, t| be.scan(&t[0], &t[1]))));
    assert!(dtype_err(&same_error!(&g, &[f(&[2, 3]), u(&[2, 3])], |be, t| be.scan(&t[0], &t[1]))));

    // ternary_matmul: x [M, K] f32, packed [N, ceil(K/16)] u32
    assert!(shape_err(&same_error!(&g, &[f(&[2, 17]), u(&[3, 1])], |be, t| be.ternary_matmul(&t[0], &t[1]))));
    assert!(shape_err(&same_error!(&g, &[f(&[2, 16]), u(&[3, 2])], |be, t| be.ternary_matmul(&t[0], &t[1]))));
    assert!(shape_err(&same_error!(&g, &[f(&[1, 2, 16]), u(&[3, 1])], |be, t| be.ternary_matmul(&t[0], &t[1]))));
    assert!(dtype_err(&same_error!(&g, &[u(&[2, 16]), u(&[3, 1])], |be, t| be.ternary_matmul(&t[0], &t[1]))));
    let e = same_error!(&g, &[f(&[2, 16]), f(&[3, 1])], |be, t| be.ternary_matmul(&t[0], &t[1]));
    assert_eq!(e, Error::DType { op: "ternary_matmul", expected: DType::U32, got: DType::F32 });
    assert!(empty_err(&same_error!(&g, &[f(&[2, 16]), u(&[0, 1])], |be, t| be.ternary_matmul(&t[0], &t[1]))));

    // The backend is still usable after all those refusals.
    let x = g.upload(&f(&[3])).expect("upload");
    let y = g.unary(Unary::Neg, &x).expect("neg");
    assert_eq!(g.read_blocking(&y).expect("read").data, Data::F32(vec![-1.0, -2.0, -3.0]));
}

// ---------------------------------------------------------------------------------------------
// The shared conformance suite (the same checks the browser runs on WebGPU)

#[test]
fn conformance_suite_on_the_gpu() {
    use trilemma::backend::conformance;
    let g = gpu_or_skip!();
    let golden = pollster::block_on(conformance::golden(&g)).unwrap_or_else(|e| panic!("golden: {e}"));
    let bad = pollster::block_on(conformance::bad_inputs(&g)).unwrap_or_else(|e| panic!("bad inputs: {e}"));
    let parity =
        pollster::block_on(conformance::parity(&CpuBackend::new(), &g, 42)).unwrap_or_else(|e| panic!("parity: {e}"));
    eprintln!("conformance on the GPU: {golden} golden, {bad} bad-input, {parity} parity checks");
}

// ---------------------------------------------------------------------------------------------
// f16 arithmetic (`matmul_f16_arith.wgsl`, needs the adapter's shader-f16 feature)

#[test]
fn f16_arithmetic_matches_its_cpu_twin_where_the_device_has_shader_f16() {
    use trilemma::backend::conformance;
    let g = gpu_or_skip!();
    let desc = g.context().adapter_description();
    if !g.context().has_shader_f16() {
        // Not a pass: the kernel did not run. The storage-only kernel is checked by the suite.
        assert!(!g.f16_arithmetic(), "f16 arithmetic claimed without shader-f16");
        eprintln!("SKIP: the adapter has no shader-f16 feature, so matmul_f16_arith cannot run here ({desc})");
        return;
    }
    // Present: it is used by default, and must pass.
    assert!(g.f16_arithmetic(), "{desc}: shader-f16 present but matmul_f16 does not use it");
    assert!(desc.ends_with("[shader-f16]"), "{desc}");
    let golden = pollster::block_on(conformance::golden(&g)).unwrap_or_else(|e| panic!("golden (f16 products): {e}"));
    // Same arithmetic on both sides: the twin within the f32 matmul tolerance.
    let twin = pollster::block_on(conformance::parity(&CpuBackend::with_f16_arithmetic(), &g, 7))
        .unwrap_or_else(|e| panic!("parity vs the f16 CPU twin: {e}"));
    // And the f32-product CPU within tolerance::f16_arith_matmul (plus the twin check again).
    let f32_ref = pollster::block_on(conformance::parity(&CpuBackend::new(), &g, 11)).unwrap_or_else(|e| panic!("parity vs f32 products: {e}"));
    // The switch back to the storage-only kernel: f32 products again, f32 tolerances.
    g.set_f16_arithmetic(false);
    assert!(!g.f16_arithmetic());
    let storage = pollster::block_on(conformance::golden(&g)).unwrap_or_else(|e| panic!("golden (f32 products): {e}"));
    pollster::block_on(conformance::parity(&CpuBackend::new(), &g, 13)).unwrap_or_else(|e| panic!("parity, storage-only kernel: {e}"));
    eprintln!("f16 arithmetic on {desc}: {golden} golden, {twin} + {f32_ref} parity checks; storage-only kernel {storage} golden");
}

#[test]
fn f16_arithmetic_error_stays_within_its_bound_at_a_long_row() {
    // One long reduction (K = 4096) with outputs of both signs, against exact f64 sums of the
    // same halves: the measured error and the bound, printed for the README.
    let g = gpu_or_skip!();
    if !g.f16_arithmetic() {
        eprintln!("SKIP: no shader-f16 on {}", g.context().adapter_description());
        return;
    }
    let (m, k, n) = (3usize, 4096usize, 70usize);
    let mut rng = trilemma::rng::SplitMix64::new(5);
    let xv = rng.vec_f32(m * k, -2.0, 2.0);
    let words = trilemma::backend::half_pairs::pack(&rng.vec_f32(n * k, -1.0, 1.0), n, k).expect("pack");
    let wh = trilemma::backend::half_pairs::unpack(&words, n, k).expect("unpack");
    let x = g.upload(&HostTensor::f32(&[m, k], xv.clone()).expect("x")).expect("upload");
    let w = g.upload(&HostTensor::u32(&[n, k.div_ceil(2)], words).expect("w")).expect("upload");
    let got = g.read_blocking(&g.matmul_f16(&x, &w).expect("matmul_f16")).expect("read");
    let got = got.as_f32("c").expect("f32");
    let (mut worst, mut worst_rel) = (0f64, 0f64);
    for r in 0..m {
        for c in 0..n {
            let terms = xv[r * k..(r + 1) * k].iter().zip(&wh[c * k..(c + 1) * k]).map(|(&a, &b)| a as f64 * b as f64);
            let exact: f64 = terms.clone().sum();
            let sum_xw: f64 = terms.map(f64::abs).sum();
            let sum_w: f64 = wh[c * k..(c + 1) * k].iter().map(|&b| (b as f64).abs()).sum();
            let d = (got[r * n + c] as f64 - exact).abs();
            let bound = tolerance::f16_arith_matmul(k, sum_xw as f32, sum_w as f32) as f64;
            assert!(d <= bound, "[{r}, {c}]: |{} - {exact}| = {d:e} > {bound:e}", got[r * n + c]);
            worst = worst.max(d);
            worst_rel = worst_rel.max(d / sum_xw);
        }
    }
    // The twin rounds the same way and sums in the same order: how many outputs differ at all.
    let twin = trilemma::backend::cpu::matmul_f16_arith_host(&xv, &trilemma::backend::half_pairs::pack(&wh, n, k).expect("pack"), m, k, n).expect("twin");
    let differ = got.iter().zip(&twin).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
    eprintln!(
        "f16 products, K = {k}: max |err| {worst:.2e}, max |err| / Σ|x w| {worst_rel:.2e} (bound {:.2e} of Σ|x w|); {differ} of {} outputs differ from the CPU twin's bits",
        tolerance::f16_arith_matmul(k, 1.0, 0.0),
        got.len()
    );
}
