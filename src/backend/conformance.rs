//! The conformance suite every backend must pass, shared by the native tests (CPU, wgpu on
//! lavapipe) and the browser tests (WebGPU on SwiftShader), so all layers check the same things:
//!
//! - [`golden`]: hand-computed values for every op;
//! - [`bad_inputs`]: a typed error for every shape mismatch, empty tensor and wrong dtype;
//! - [`parity`]: seeded random inputs at awkward sizes, compared with a reference backend
//!   (the CPU) under the named [`tolerance`]s.
//!
//! Each returns the number of checks run, or a message naming the first failure.

use super::{check, half_pairs, int8, ternary, tolerance, Backend, Binary, Data, HostTensor, Reduce, Unary};
use crate::error::{DType, Error};
use crate::rng::SplitMix64;

type Check = std::result::Result<usize, String>;

fn f32s<B: Backend>(b: &B, shape: &[usize], v: &[f32]) -> std::result::Result<B::Tensor, String> {
    b.upload(&HostTensor::f32(shape, v.to_vec()).map_err(|e| e.to_string())?).map_err(|e| e.to_string())
}

fn u32s<B: Backend>(b: &B, shape: &[usize], v: &[u32]) -> std::result::Result<B::Tensor, String> {
    b.upload(&HostTensor::u32(shape, v.to_vec()).map_err(|e| e.to_string())?).map_err(|e| e.to_string())
}

async fn read_u32<B: Backend>(b: &B, t: std::result::Result<B::Tensor, Error>, what: &str) -> std::result::Result<(Vec<usize>, Vec<u32>), String> {
    let t = t.map_err(|e| format!("{what}: {e}"))?;
    let h = b.read(&t).await.map_err(|e| format!("{what}: read: {e}"))?;
    let v = h.as_u32("read").map_err(|e| format!("{what}: {e}"))?.to_vec();
    Ok((h.shape, v))
}

/// The golden model of broadcasting `op`: plain index arithmetic in f64, independent of both
/// backends. Returns the output shape and values.
fn broadcast_golden(op: Binary, sa: &[usize], a: &[f32], sb: &[usize], b: &[f32]) -> std::result::Result<(Vec<usize>, Vec<f64>), String> {
    let out = check::broadcast_shape("golden", sa, sb).map_err(|e| e.to_string())?;
    // Flat index of `coords` (over `out`) in an operand of shape `s`: aligned from the right,
    // coordinate 0 on its size-1 dims.
    let index = |s: &[usize], coords: &[usize]| {
        let lead = coords.len() - s.len();
        s.iter().enumerate().fold(0, |acc, (d, &size)| acc * size + if size == 1 { 0 } else { coords[lead + d] })
    };
    let n: usize = out.iter().product();
    let mut coords = vec![0; out.len()];
    let mut values = Vec::with_capacity(n);
    for i in 0..n {
        let mut rem = i;
        for d in (0..out.len()).rev() {
            coords[d] = rem % out[d];
            rem /= out[d];
        }
        values.push(op.eval_f64(a[index(sa, &coords)] as f64, b[index(sb, &coords)] as f64));
    }
    Ok((out, values))
}

async fn read_f32<B: Backend>(b: &B, t: std::result::Result<B::Tensor, Error>, what: &str) -> std::result::Result<(Vec<usize>, Vec<f32>), String> {
    let t = t.map_err(|e| format!("{what}: {e}"))?;
    let h = b.read(&t).await.map_err(|e| format!("{what}: read: {e}"))?;
    let v = h.as_f32("read").map_err(|e| format!("{what}: {e}"))?.to_vec();
    Ok((h.shape, v))
}

fn close(what: &str, got: &[f32], want: &[f64], tol: f64) -> std::result::Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{what}: {} values, expected {}", got.len(), want.len()));
    }
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if !((g as f64 - w).abs() <= tol * (1.0 + w.abs())) {
            return Err(format!("{what}[{i}]: got {g}, expected {w}"));
        }
    }
    Ok(())
}

/// Hand-computed values for every op.
pub async fn golden<B: Backend>(b: &B) -> Check {
    let mut n = 0;
    let a = f32s(b, &[2, 2], &[1., 2., 3., 4.])?;
    let m = f32s(b, &[2, 2], &[5., 6., 7., 8.])?;
    let (s, v) = read_f32(b, b.matmul(&a, &m, false), "matmul").await?;
    assert_shape("matmul", &s, &[2, 2])?;
    close("matmul", &v, &[19., 22., 43., 50.], 1e-6)?;
    let (_, v) = read_f32(b, b.matmul(&a, &m, true), "matmul trans_b").await?;
    close("matmul trans_b", &v, &[17., 23., 39., 53.], 1e-6)?;
    n += 2;

    // Batched [2,1,2]·[2,2] (b broadcast over the batch).
    let ab = f32s(b, &[2, 1, 2], &[1., 0., 0., 1.])?;
    let (s, v) = read_f32(b, b.matmul(&ab, &m, false), "matmul batched").await?;
    assert_shape("matmul batched", &s, &[2, 1, 2])?;
    close("matmul batched", &v, &[5., 6., 7., 8.], 1e-6)?;
    n += 1;

    let x = f32s(b, &[5], &[-2.0, -0.5, 0.25, 1.0, 3.0])?;
    let pos = f32s(b, &[4], &[0.25, 1.0, 2.0, 9.0])?;
    for op in Unary::ALL {
        let (xs, t) = match op {
            Unary::Log | Unary::Sqrt | Unary::Recip => (&[0.25f32, 1.0, 2.0, 9.0][..], &pos),
            _ => (&[-2.0f32, -0.5, 0.25, 1.0, 3.0][..], &x),
        };
        let want: Vec<f64> = xs.iter().map(|&v| op.eval_f64(v as f64)).collect();
        let (_, v) = read_f32(b, b.unary(op, t), &format!("{op:?}")).await?;
        close(&format!("{op:?}"), &v, &want, 1e-5)?;
        n += 1;
    }

    let bias = f32s(b, &[2], &[10., 20.])?;
    let (_, v) = read_f32(b, b.binary(Binary::Add, &a, &bias), "add broadcast").await?;
    close("add broadcast", &v, &[11., 22., 13., 24.], 1e-6)?;
    let two = f32s(b, &[1], &[2.])?;
    let (_, v) = read_f32(b, b.binary(Binary::Div, &a, &two), "div scalar").await?;
    close("div scalar", &v, &[0.5, 1.0, 1.5, 2.0], 1e-6)?;
    for op in Binary::ALL {
        let want: Vec<f64> = [(1., 5.), (2., 6.), (3., 7.), (4., 8.)].iter().map(|&(p, q)| op.eval_f64(p, q)).collect();
        let (_, v) = read_f32(b, b.binary(op, &a, &m), &format!("{op:?}")).await?;
        close(&format!("{op:?}"), &v, &want, 1e-6)?;
        n += 1;
    }

    let row = f32s(b, &[2, 3], &[1., 2., 3., 0., 0., 0.])?;
    let (_, v) = read_f32(b, b.softmax(&row), "softmax").await?;
    close("softmax", &v, &[0.090_030_57, 0.244_728_47, 0.665_240_96, 1. / 3., 1. / 3., 1. / 3.], 1e-5)?;
    // Large logits must not overflow (max-subtracted).
    let big = f32s(b, &[2], &[1000., 1000.])?;
    let (_, v) = read_f32(b, b.softmax(&big), "softmax large").await?;
    close("softmax large", &v, &[0.5, 0.5], 1e-6)?;
    n += 2;

    // [3,4]: mean square 12.5, rms 3.5355339; weight [1,2].
    let x34 = f32s(b, &[1, 2], &[3., 4.])?;
    let w12 = f32s(b, &[2], &[1., 2.])?;
    let (_, v) = read_f32(b, b.rms_norm(&x34, &w12, 1e-6), "rms_norm").await?;
    close("rms_norm", &v, &[3. / 12.500_001f64.sqrt(), 8. / 12.500_001f64.sqrt()], 1e-5)?;
    n += 1;

    let r = f32s(b, &[2, 3], &[1., 5., 3., -2., -7., 4.])?;
    let cases: [(Reduce, [f64; 2]); 4] =
        [(Reduce::Sum, [9., -5.]), (Reduce::Mean, [3., -5. / 3.]), (Reduce::Max, [5., 4.]), (Reduce::Min, [1., -7.])];
    for (op, want) in cases {
        let (s, v) = read_f32(b, b.reduce(op, &r), &format!("{op:?}")).await?;
        assert_shape(&format!("{op:?}"), &s, &[2, 1])?;
        close(&format!("{op:?}"), &v, &want, 1e-6)?;
        n += 1;
    }
    let t = b.reduce(Reduce::ArgMax, &r).map_err(|e| e.to_string())?;
    let h = b.read(&t).await.map_err(|e| e.to_string())?;
    if h.as_u32("argmax").map_err(|e| e.to_string())? != [1, 2] {
        return Err(format!("ArgMax: got {h:?}, expected [1, 2]"));
    }
    // Ties resolve to the first maximum.
    let tie = f32s(b, &[4], &[2., 7., 7., 1.])?;
    let h = b.read(&b.reduce(Reduce::ArgMax, &tie).map_err(|e| e.to_string())?).await.map_err(|e| e.to_string())?;
    if h.as_u32("argmax").map_err(|e| e.to_string())? != [1] {
        return Err(format!("ArgMax tie: got {h:?}, expected [1]"));
    }
    n += 2;

    let table = f32s(b, &[3, 2], &[1., 2., 3., 4., 5., 6.])?;
    let (s, v) = read_f32(b, b.gather(&table, &[2, 0, 2]), "gather").await?;
    assert_shape("gather", &s, &[3, 2])?;
    close("gather", &v, &[5., 6., 1., 2., 5., 6.], 0.0)?;
    n += 1;

    // Round goes half away from zero (WGSL's round() goes half to even), and the largest f32
    // below 0.5 stays 0 (floor(x + 0.5) would round it up). Clamp is max then min.
    let h = 0.499_999_97f32;
    let halves = f32s(b, &[9], &[-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, h, -h, 8_388_609.0])?;
    let (_, v) = read_f32(b, b.unary(Unary::Round, &halves), "round halves").await?;
    close("round halves", &v, &[-3., -2., -1., 1., 2., 3., 0., 0., 8_388_609.], 0.0)?;
    let (_, v) = read_f32(b, b.unary(Unary::Clamp { lo: -1.0, hi: 1.0 }, &halves), "clamp").await?;
    close("clamp", &v, &[-1., -1., -0.5, 0.5, 1., 1., h as f64, -h as f64, 1.], 0.0)?;
    n += 2;

    n += golden_broadcast(b).await?;
    n += golden_data_movement(b).await?;
    n += golden_scans_and_ternary(b).await?;
    n += golden_fused(b).await?;
    n += golden_packed(b).await?;
    Ok(n)
}

/// The int8 and int4 products on weights packed by hand.
async fn golden_packed<B: Backend>(b: &B) -> Check {
    // int8, K = 5 (two words, the second padded): rows c0 = [1, −1, 2, 0, 127], c1 = [−127, 0, 0, 0, 1],
    // scales [0.5, 2]; x = [1, 2, 3, 4, 5] -> [0.5·(1 − 2 + 6 + 635), 2·(−127 + 5)] = [320, −244].
    let words = [0x0002_FF01u32, 0x7F, 0x0000_0081, 0x01];
    if int8::pack(&[1, -1, 2, 0, 127, -127, 0, 0, 0, 1], 2, 5).map_err(|e| e.to_string())? != words {
        return Err("int8::pack disagrees with the hand-packed words".into());
    }
    let x5 = f32s(b, &[1, 5], &[1., 2., 3., 4., 5.])?;
    let (s, v) = read_f32(b, b.matmul_i8(&x5, &u32s(b, &[2, 2], &words)?, &f32s(b, &[2], &[0.5, 2.])?), "matmul_i8").await?;
    assert_shape("matmul_i8", &s, &[1, 2])?;
    close("matmul_i8", &v, &[320., -244.], 0.0)?;
    // int4, K = 16 in two groups of 8: codes +1 then −1 (nibbles 0x1, 0xF), scales [0.5, 2];
    // x = 1..16 -> 0.5·(1 + .. + 8) − 2·(9 + .. + 16) = 18 − 200 = −182.
    let x16: Vec<f32> = (1..=16).map(|i| i as f32).collect();
    let (s, v) = read_f32(b, b.matmul_i4(&f32s(b, &[1, 16], &x16)?, &u32s(b, &[1, 2], &[0x1111_1111, 0xFFFF_FFFF])?, &f32s(b, &[1, 2], &[0.5, 2.])?), "matmul_i4").await?;
    assert_shape("matmul_i4", &s, &[1, 1])?;
    close("matmul_i4", &v, &[-182.], 0.0)?;
    Ok(2)
}

/// The fused model ops on cases small enough to work out by hand.
async fn golden_fused<B: Backend>(b: &B) -> Check {
    let mut n = 0;
    // RoPE, hd = 2, one position with cos 0.6, sin 0.8: [x0 c − x1 s, x1 c + x0 s].
    let x = f32s(b, &[1, 1, 2], &[1., 2.])?;
    let (c, s) = (f32s(b, &[1, 2], &[0.6, 0.6])?, f32s(b, &[1, 2], &[0.8, 0.8])?);
    let (sh, v) = read_f32(b, b.rope(&x, &c, &s), "rope").await?;
    assert_shape("rope", &sh, &[1, 1, 2])?;
    close("rope", &v, &[-1.0, 2.0], 1e-6)?;
    n += 1;

    // Attention, hd = 1, q = 1, keys 0 and ln 3: token 1 weighs values 4 and 8 by 1/4 and 3/4.
    let q = f32s(b, &[1, 2, 1], &[1., 1.])?;
    let k = f32s(b, &[1, 2, 1], &[0., 3f32.ln()])?;
    let vv = f32s(b, &[1, 2, 1], &[4., 8.])?;
    let (sh, v) = read_f32(b, b.attention(&q, &k, &vv, 1.0, None), "attention").await?;
    assert_shape("attention", &sh, &[1, 2, 1])?;
    close("attention", &v, &[4.0, 7.0], 1e-6)?;
    // A window of one token: each query sees only itself.
    let (_, v) = read_f32(b, b.attention(&q, &k, &vv, 1.0, Some(1)), "attention window 1").await?;
    close("attention window 1", &v, &[4.0, 8.0], 1e-6)?;
    // Two query heads share one kv head (GQA); scale 0 gives a plain running mean.
    let q2 = f32s(b, &[2, 2, 1], &[1., 1., 5., 5.])?;
    let (sh, v) = read_f32(b, b.attention(&q2, &k, &vv, 0.0, None), "attention gqa").await?;
    assert_shape("attention gqa", &sh, &[2, 2, 1])?;
    close("attention gqa", &v, &[4.0, 6.0, 4.0, 6.0], 1e-6)?;
    n += 3;

    // GLA, dk = dv = 1: S0 = 1·2 = 2, o0 = 2; S1 = 0.5·2 + 1·3 = 4, o1 = 4.
    let ones = f32s(b, &[1, 2, 1], &[1., 1.])?;
    let vv = f32s(b, &[1, 2, 1], &[2., 3.])?;
    let lg = f32s(b, &[1, 2, 1], &[0., 0.5f32.ln()])?;
    for chunk in [1, 2, 16] {
        let what = format!("gla chunk {chunk}");
        let (sh, v) = read_f32(b, b.gla(&ones, &ones, &vv, &lg, chunk), &what).await?;
        assert_shape(&what, &sh, &[1, 2, 1])?;
        close(&what, &v, &[2.0, 4.0], 1e-6)?;
        n += 1;
    }

    // Last token of sequences of lengths 2 and 3 in a [2, 3, 1] batch.
    let x = f32s(b, &[2, 3, 1], &[1., 2., 3., 4., 5., 6.])?;
    let (sh, v) = read_f32(b, b.last_token(&x, &[2, 3]), "last_token").await?;
    assert_shape("last_token", &sh, &[2, 1])?;
    close("last_token", &v, &[2.0, 6.0], 0.0)?;
    n += 1;

    // f16 weights: 1, 0.5, 2, −1 and 3 are exact halves; K = 3 pads each row with a zero half.
    let x = f32s(b, &[1, 3], &[1., 2., 4.])?;
    let w = half_pairs::pack(&[1.0, 0.5, 2.0, -1.0, 3.0, 0.25], 2, 3).map_err(|e| e.to_string())?;
    let (sh, v) = read_f32(b, b.matmul_f16(&x, &u32s(b, &[2, 2], &w)?), "matmul_f16").await?;
    assert_shape("matmul_f16", &sh, &[1, 2])?;
    close("matmul_f16", &v, &[10.0, 6.0], 0.0)?;
    n += 1;

    // f16 weights, values that tell the arithmetic apart. Row 0: (1 + 2^-10)² = 1 + 2^-9 + 2^-20,
    // exact in f32, 1 + 2^-9 once the product is rounded to f16. Row 1: 2048 + 1 = 2049 in both
    // (sums are f32; an f16 sum would give 2048). Row 2: x = 1 + 2^-11 is a tie that rounds to
    // the even half 1 when x is converted to f16.
    let e10 = 1.0 + 2f32.powi(-10);
    let x = f32s(b, &[1, 4], &[e10, 2048., 1., 1.0 + 2f32.powi(-11)])?;
    let w = half_pairs::pack(&[e10, 0., 0., 0., 0., 1., 1., 0., 0., 0., 0., 1.], 3, 4).map_err(|e| e.to_string())?;
    let what = if b.f16_arithmetic() { "matmul_f16 (f16 products)" } else { "matmul_f16 (f32 products)" };
    let (sh, v) = read_f32(b, b.matmul_f16(&x, &u32s(b, &[3, 2], &w)?), what).await?;
    assert_shape(what, &sh, &[1, 3])?;
    let want = if b.f16_arithmetic() { [1.0 + 2f64.powi(-9), 2049.0, 1.0] } else { [1.0 + 2f64.powi(-9) + 2f64.powi(-20), 2049.0, 1.0 + 2f64.powi(-11)] };
    close(what, &v, &want, 0.0)?;
    n += 1;

    // BitLinear: x = [3, 4] -> ŷ = x / sqrt(12.5) = [0.8485, 1.1314]; s = 127 / 1.1314 = 112.25;
    // q = [round(95.25), 127] = [95, 127]; T = [+1, −1], β = 0.5: (95 − 127) / 112.25 · 0.5.
    let x = f32s(b, &[1, 2], &[3., 4.])?;
    let norm = f32s(b, &[2], &[1., 1.])?;
    let packed = u32s(b, &[1, 1], &[1 | (2 << 2)])?;
    let (sh, v) = read_f32(b, b.bit_linear(&x, &norm, &packed, 0.5, 1e-6), "bit_linear").await?;
    assert_shape("bit_linear", &sh, &[1, 1])?;
    let s = 127.0 / (4.0 / 12.5f64.sqrt());
    close("bit_linear", &v, &[-32.0 / s * 0.5], 1e-5)?;
    n += 1;
    Ok(n)
}

/// NumPy broadcasting of both operands.
async fn golden_broadcast<B: Backend>(b: &B) -> Check {
    let mut n = 0;
    // [2,1,3] + [4,1] -> [2,4,3]: out[i,j,k] = a[i,0,k] + b[j,0].
    let a213 = f32s(b, &[2, 1, 3], &[1., 2., 3., 4., 5., 6.])?;
    let b41 = f32s(b, &[4, 1], &[10., 20., 30., 40.])?;
    let (s, v) = read_f32(b, b.binary(Binary::Add, &a213, &b41), "[2,1,3] + [4,1]").await?;
    assert_shape("[2,1,3] + [4,1]", &s, &[2, 4, 3])?;
    #[rustfmt::skip]
    let want = [11., 12., 13., 21., 22., 23., 31., 32., 33., 41., 42., 43.,
                14., 15., 16., 24., 25., 26., 34., 35., 36., 44., 45., 46.];
    close("[2,1,3] + [4,1]", &v, &want, 0.0)?;
    n += 1;

    let m23 = f32s(b, &[2, 3], &[1., 2., 3., 4., 5., 6.])?;
    let col = f32s(b, &[2, 1], &[10., 20.])?;
    let v3 = f32s(b, &[3], &[1., 2., 3.])?;
    // Each gives a [2, 3].
    let cases = [
        // A column per row (was refused by the old suffix-only rule).
        ("[2,3] + [2,1]", Binary::Add, (&m23, &col), [11., 12., 13., 24., 25., 26.]),
        // The first operand broadcast too.
        ("[3] - [2,1]", Binary::Sub, (&v3, &col), [-9., -8., -7., -19., -18., -17.]),
        ("[2,1] - [3]", Binary::Sub, (&col, &v3), [9., 8., 7., 19., 18., 17.]),
    ];
    for (what, op, (x, y), want) in cases {
        let (s, v) = read_f32(b, b.binary(op, x, y), what).await?;
        assert_shape(what, &s, &[2, 3])?;
        close(what, &v, &want, 0.0)?;
        n += 1;
    }
    // An outer "product" of size-1 dims in both operands: [2,1] max [1,3].
    let c2 = f32s(b, &[2, 1], &[1., 5.])?;
    let r3 = f32s(b, &[1, 3], &[2., 3., 4.])?;
    let (s, v) = read_f32(b, b.binary(Binary::Max, &c2, &r3), "[2,1] max [1,3]").await?;
    assert_shape("[2,1] max [1,3]", &s, &[2, 3])?;
    close("[2,1] max [1,3]", &v, &[2., 3., 4., 5., 5., 5.], 0.0)?;
    // A one-element first operand: [1] / [2,2].
    let twelve = f32s(b, &[1], &[12.])?;
    let q = f32s(b, &[2, 2], &[1., 2., 3., 4.])?;
    let (s, v) = read_f32(b, b.binary(Binary::Div, &twelve, &q), "[1] / [2,2]").await?;
    assert_shape("[1] / [2,2]", &s, &[2, 2])?;
    close("[1] / [2,2]", &v, &[12., 6., 4., 3.], 0.0)?;
    n += 2;

    // Rank 6 and rank 8 (the limit), against the f64 golden model.
    let ranked: [(&[usize], &[usize]); 2] = [
        (&[2, 1, 3, 1, 2, 1], &[1, 2, 1, 2, 1, 3]),
        (&[2, 1, 2, 1, 2, 1, 2, 1], &[1, 2, 1, 3, 1, 2, 1, 2]),
    ];
    for (sa, sb) in ranked {
        let av: Vec<f32> = (0..sa.iter().product::<usize>()).map(|i| i as f32).collect();
        let bv: Vec<f32> = (0..sb.iter().product::<usize>()).map(|i| 100.0 * (i + 1) as f32).collect();
        let (shape, want) = broadcast_golden(Binary::Add, sa, &av, sb, &bv)?;
        let what = format!("{sa:?} + {sb:?}");
        let (s, v) = read_f32(b, b.binary(Binary::Add, &f32s(b, sa, &av)?, &f32s(b, sb, &bv)?), &what).await?;
        assert_shape(&what, &s, &shape)?;
        close(&what, &v, &want, 0.0)?;
        n += 1;
    }
    Ok(n)
}

/// reshape, permute, narrow, concat, in f32 and u32.
async fn golden_data_movement<B: Backend>(b: &B) -> Check {
    let mut n = 0;
    let m23 = f32s(b, &[2, 3], &[1., 2., 3., 4., 5., 6.])?;
    let (s, v) = read_f32(b, b.reshape(&m23, &[3, 2]), "reshape").await?;
    assert_shape("reshape", &s, &[3, 2])?;
    close("reshape", &v, &[1., 2., 3., 4., 5., 6.], 0.0)?;
    let (s, _) = read_f32(b, b.reshape(&m23, &[1, 6, 1]), "reshape unit dims").await?;
    assert_shape("reshape unit dims", &s, &[1, 6, 1])?;
    // A reshaped tensor is an ordinary operand.
    let flat = b.reshape(&m23, &[6]).map_err(|e| e.to_string())?;
    let (_, v) = read_f32(b, b.unary(Unary::Neg, &flat), "neg of reshape").await?;
    close("neg of reshape", &v, &[-1., -2., -3., -4., -5., -6.], 0.0)?;
    n += 3;

    let (s, v) = read_f32(b, b.permute(&m23, &[1, 0]), "transpose").await?;
    assert_shape("transpose", &s, &[3, 2])?;
    close("transpose", &v, &[1., 4., 2., 5., 3., 6.], 0.0)?;
    // out[i, j, k] = x[j, k, i] for x [2,3,2] = 0..12.
    let x322: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let x = f32s(b, &[2, 3, 2], &x322)?;
    let (s, v) = read_f32(b, b.permute(&x, &[2, 0, 1]), "permute [2,0,1]").await?;
    assert_shape("permute [2,0,1]", &s, &[2, 2, 3])?;
    close("permute [2,0,1]", &v, &[0., 2., 4., 6., 8., 10., 1., 3., 5., 7., 9., 11.], 0.0)?;
    let ids = u32s(b, &[2, 3], &[0, 1, 2, 3, 4, 5])?;
    let (s, v) = read_u32(b, b.permute(&ids, &[1, 0]), "transpose u32").await?;
    if s != [3, 2] || v != [0, 3, 1, 4, 2, 5] {
        return Err(format!("transpose u32: got {s:?} {v:?}"));
    }
    n += 3;

    // x [3,4] = 0..12.
    let x34v: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let x34 = f32s(b, &[3, 4], &x34v)?;
    let (s, v) = read_f32(b, b.narrow(&x34, 1, 1, 2), "narrow dim 1").await?;
    assert_shape("narrow dim 1", &s, &[3, 2])?;
    close("narrow dim 1", &v, &[1., 2., 5., 6., 9., 10.], 0.0)?;
    let (s, v) = read_f32(b, b.narrow(&x34, 0, 2, 1), "narrow dim 0").await?;
    assert_shape("narrow dim 0", &s, &[1, 4])?;
    close("narrow dim 0", &v, &[8., 9., 10., 11.], 0.0)?;
    let (s, v) = read_u32(b, b.narrow(&ids, 1, 2, 1), "narrow u32").await?;
    if s != [2, 1] || v != [2, 5] {
        return Err(format!("narrow u32: got {s:?} {v:?}"));
    }
    n += 3;

    let top = f32s(b, &[1, 2], &[1., 2.])?;
    let rest = f32s(b, &[2, 2], &[3., 4., 5., 6.])?;
    let (s, v) = read_f32(b, b.concat(&[&top, &rest], 0), "concat dim 0").await?;
    assert_shape("concat dim 0", &s, &[3, 2])?;
    close("concat dim 0", &v, &[1., 2., 3., 4., 5., 6.], 0.0)?;
    let left = f32s(b, &[2, 1], &[1., 2.])?;
    let (s, v) = read_f32(b, b.concat(&[&left, &rest], 1), "concat dim 1").await?;
    assert_shape("concat dim 1", &s, &[2, 3])?;
    close("concat dim 1", &v, &[1., 3., 4., 2., 5., 6.], 0.0)?;
    let (s, v) = read_f32(b, b.concat(&[&left, &rest, &left], 1), "concat three").await?;
    assert_shape("concat three", &s, &[2, 4])?;
    close("concat three", &v, &[1., 3., 4., 1., 2., 5., 6., 2.], 0.0)?;
    let (u1, u2) = (u32s(b, &[2], &[7, 8])?, u32s(b, &[1], &[9])?);
    let (s, v) = read_u32(b, b.concat(&[&u1, &u2], 0), "concat u32").await?;
    if s != [3] || v != [7, 8, 9] {
        return Err(format!("concat u32: got {s:?} {v:?}"));
    }
    n += 4;
    Ok(n)
}

/// cumsum, scan and the packed ternary product.
async fn golden_scans_and_ternary<B: Backend>(b: &B) -> Check {
    let mut n = 0;
    let m23 = f32s(b, &[2, 3], &[1., 2., 3., 4., 5., 6.])?;
    let (s, v) = read_f32(b, b.cumsum(&m23), "cumsum").await?;
    assert_shape("cumsum", &s, &[2, 3])?;
    close("cumsum", &v, &[1., 3., 6., 4., 9., 15.], 0.0)?;
    let signs = f32s(b, &[5], &[1., -1., 2., -2., 0.5])?;
    let (_, v) = read_f32(b, b.cumsum(&signs), "cumsum signs").await?;
    close("cumsum signs", &v, &[1., 0., 2., 0., 0.5], 0.0)?;
    n += 2;

    // h0 = b0 = [1, 1]; h1 = [0.5·1 + 2, −1·1 + 3] = [2.5, 2]; h2 = [0·2.5 + 4, 1·2 + 5] = [4, 7].
    let a = f32s(b, &[3, 2], &[0.5, 2., 0.5, -1., 0., 1.])?;
    let bb = f32s(b, &[3, 2], &[1., 1., 2., 3., 4., 5.])?;
    let (s, v) = read_f32(b, b.scan(&a, &bb), "scan").await?;
    assert_shape("scan", &s, &[3, 2])?;
    close("scan", &v, &[1., 1., 2.5, 2., 4., 7.], 0.0)?;
    n += 1;

    // T = [[1, 0, -1], [-1, 1, 1]], packed by hand: codes (1, 0, 2) -> 1 | 2 << 4 = 33,
    // (2, 1, 1) -> 2 | 1 << 2 | 1 << 4 = 22. x · Tᵀ = [[1−3, −1+2+3], [4−6, −4+5+6]].
    let words = [33u32, 22];
    if ternary::pack(&[1, 0, -1, -1, 1, 1], 2, 3).map_err(|e| e.to_string())? != words {
        return Err("ternary::pack disagrees with the hand-packed words".into());
    }
    let w = u32s(b, &[2, 1], &words)?;
    let (s, v) = read_f32(b, b.ternary_matmul(&m23, &w), "ternary_matmul").await?;
    assert_shape("ternary_matmul", &s, &[2, 2])?;
    close("ternary_matmul", &v, &[-2., 4., -2., 7.], 0.0)?;
    // K = 17 crosses a word: sixteen +1 then one −1 -> 1 + .. + 16 − 17 = 119.
    let x17: Vec<f32> = (1..=17).map(|i| i as f32).collect();
    let (s, v) = read_f32(b, b.ternary_matmul(&f32s(b, &[1, 17], &x17)?, &u32s(b, &[1, 2], &[0x5555_5555, 2])?), "ternary K=17").await?;
    assert_shape("ternary K=17", &s, &[1, 1])?;
    close("ternary K=17", &v, &[119.], 0.0)?;
    n += 2;
    Ok(n)
}

fn assert_shape(what: &str, got: &[usize], want: &[usize]) -> std::result::Result<(), String> {
    if got != want {
        return Err(format!("{what}: shape {got:?}, expected {want:?}"));
    }
    Ok(())
}

fn expect_err<T>(what: &str, r: std::result::Result<T, Error>, ok: impl Fn(&Error) -> bool) -> std::result::Result<(), String> {
    match r {
        Ok(_) => Err(format!("{what}: expected an error, got Ok")),
        Err(e) if ok(&e) => Ok(()),
        Err(e) => Err(format!("{what}: wrong error kind: {e:?}")),
    }
}

fn is_shape(e: &Error) -> bool {
    matches!(e, Error::Shape { .. })
}
fn is_empty(e: &Error) -> bool {
    matches!(e, Error::Empty { .. })
}
fn is_dtype(e: &Error) -> bool {
    matches!(e, Error::DType { expected: DType::F32, got: DType::U32, .. })
}

/// Every bad input gives its typed error (and no panic, no GPU work).
pub async fn bad_inputs<B: Backend>(b: &B) -> Check {
    let mut n = 0;
    macro_rules! bad {
        ($what:expr, $r:expr, $ok:expr) => {{
            expect_err($what, $r, $ok)?;
            n += 1;
        }};
    }
    let m23 = f32s(b, &[2, 3], &[0.; 6])?;
    let m22 = f32s(b, &[2, 2], &[0.; 4])?;
    let v3 = f32s(b, &[3], &[0.; 3])?;
    let v2 = f32s(b, &[2], &[0.; 2])?;
    let empty = b.upload(&HostTensor::f32(&[0, 3], vec![]).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let ints = b.upload(&HostTensor::u32(&[2, 3], vec![0; 6]).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let r4 = f32s(b, &[1, 1, 1, 1], &[0.])?;
    let b3 = f32s(b, &[3, 3, 2], &[0.; 18])?;
    let a223 = f32s(b, &[2, 2, 3], &[0.; 12])?;

    // Shape mismatches.
    bad!("matmul K mismatch", b.matmul(&m23, &m22, false), is_shape);
    bad!("matmul trans_b K mismatch", b.matmul(&m23, &m22, true), is_shape);
    bad!("matmul rank 4", b.matmul(&r4, &m22, false), is_shape);
    bad!("matmul rank 1", b.matmul(&v3, &m22, false), is_shape);
    bad!("matmul batch mismatch", b.matmul(&a223, &b3, false), is_shape);
    bad!("binary shape", b.binary(Binary::Add, &m23, &m22), is_shape);
    // Broadcasting aligns from the right: [2] does not stretch over [2, 3] (dim 1: 3 vs 2).
    bad!("binary suffix", b.binary(Binary::Mul, &m23, &v2), is_shape);
    bad!("rms_norm weight", b.rms_norm(&m23, &v2, 1e-6), is_shape);
    bad!("rms_norm eps", b.rms_norm(&m23, &v3, 0.0), |e| matches!(e, Error::Invalid(_)));
    bad!("rms_norm eps NaN", b.rms_norm(&m23, &v3, f32::NAN), |e| matches!(e, Error::Invalid(_)));
    bad!("gather table rank", b.gather(&v3, &[0]), is_shape);
    bad!("gather index", b.gather(&m23, &[0, 2]), |e| matches!(e, Error::Index { index: 2, size: 2, .. }));
    // Empty tensors.
    bad!("matmul empty", b.matmul(&empty, &m22, false), is_empty);
    bad!("unary empty", b.unary(Unary::Exp, &empty), is_empty);
    bad!("binary empty", b.binary(Binary::Add, &empty, &v3), is_empty);
    bad!("softmax empty", b.softmax(&empty), is_empty);
    bad!("rms_norm empty", b.rms_norm(&empty, &v3, 1e-6), is_empty);
    bad!("reduce empty", b.reduce(Reduce::Sum, &empty), is_empty);
    bad!("gather empty table", b.gather(&empty, &[0]), is_empty);
    bad!("gather empty ids", b.gather(&m23, &[]), is_empty);
    // Wrong dtype.
    bad!("matmul dtype", b.matmul(&ints, &m22, false), is_dtype);
    bad!("unary dtype", b.unary(Unary::Neg, &ints), is_dtype);
    bad!("binary dtype", b.binary(Binary::Add, &m23, &ints), is_dtype);
    bad!("softmax dtype", b.softmax(&ints), is_dtype);
    bad!("rms_norm dtype", b.rms_norm(&ints, &v3, 1e-6), is_dtype);
    bad!("reduce dtype", b.reduce(Reduce::Max, &ints), is_dtype);
    bad!("gather dtype", b.gather(&ints, &[0]), is_dtype);
    // Host data that does not fit its shape.
    bad!("host data length", HostTensor::f32(&[2, 2], vec![0.; 3]), |e| matches!(e, Error::DataLen { .. }));

    // Broadcasting: incompatible dims anywhere, and ranks beyond the limit.
    let b42 = f32s(b, &[4, 2], &[0.; 8])?;
    let a213 = f32s(b, &[2, 1, 3], &[0.; 6])?;
    bad!("broadcast [2,1,3] + [4,2]", b.binary(Binary::Add, &a213, &b42), is_shape);
    bad!("broadcast [3] + [2]", b.binary(Binary::Add, &v3, &v2), is_shape);
    bad!("broadcast [3] + [2,2]", b.binary(Binary::Sub, &v3, &m22), is_shape);
    let deep = f32s(b, &[1; check::MAX_RANK + 1], &[0.])?;
    bad!("binary rank limit", b.binary(Binary::Add, &deep, &v3), |e| is_shape(e) && e.to_string().contains("limit"));
    bad!("unary Round dtype", b.unary(Unary::Round, &ints), is_dtype);
    bad!("unary Clamp empty", b.unary(Unary::Clamp { lo: 0., hi: 1. }, &empty), is_empty);

    // reshape: element counts must agree.
    bad!("reshape count", b.reshape(&m23, &[4, 2]), is_shape);
    bad!("reshape to rank 0", b.reshape(&m23, &[]), is_shape);
    bad!("reshape u32 count", b.reshape(&ints, &[7]), is_shape);
    // permute: a permutation of the dims, nothing else.
    bad!("permute repeated dim", b.permute(&m23, &[0, 0]), is_shape);
    bad!("permute too short", b.permute(&m23, &[0]), is_shape);
    bad!("permute out of range", b.permute(&m23, &[0, 2]), is_shape);
    bad!("permute too long", b.permute(&ints, &[0, 1, 2]), is_shape);
    let deep_perm: Vec<usize> = (0..=check::MAX_RANK).collect();
    bad!("permute rank limit", b.permute(&deep, &deep_perm), is_shape);
    // narrow: a non-empty slice inside the dim.
    bad!("narrow dim out of range", b.narrow(&m23, 2, 0, 1), is_shape);
    bad!("narrow past the end", b.narrow(&m23, 1, 2, 2), is_shape);
    bad!("narrow empty", b.narrow(&m23, 0, 0, 0), is_shape);
    bad!("narrow start overflow", b.narrow(&m23, 1, usize::MAX, 1), is_shape);
    bad!("narrow u32 past the end", b.narrow(&ints, 0, 2, 1), is_shape);
    // concat: same rank, same dims outside `dim`, same dtype, at least one input.
    bad!("concat mismatch", b.concat(&[&m23, &m22], 0), is_shape);
    bad!("concat rank mismatch", b.concat(&[&m23, &v3], 1), is_shape);
    bad!("concat dim out of range", b.concat(&[&m23, &m23], 2), is_shape);
    bad!("concat dtype mismatch", b.concat(&[&m23, &ints], 0), is_dtype);
    bad!("concat nothing", b.concat(&[], 0), is_empty);
    // cumsum: like every op over the last dim.
    bad!("cumsum empty", b.cumsum(&empty), is_empty);
    bad!("cumsum dtype", b.cumsum(&ints), is_dtype);
    // scan: a and b both [T, D].
    let m32 = f32s(b, &[3, 2], &[0.; 6])?;
    bad!("scan shape mismatch", b.scan(&m23, &m32), is_shape);
    bad!("scan rank 1", b.scan(&v3, &v3), is_shape);
    bad!("scan rank 3", b.scan(&a213, &a213), is_shape);
    bad!("scan empty", b.scan(&empty, &empty), is_empty);
    bad!("scan dtype", b.scan(&m23, &ints), is_dtype);
    // ternary_matmul: x [M, K] f32, packed [N, ceil(K/16)] u32.
    let x217 = f32s(b, &[2, 17], &[0.; 34])?;
    let w31 = u32s(b, &[3, 1], &[0; 3])?;
    let w32 = u32s(b, &[3, 2], &[0; 6])?;
    bad!("ternary words per row (17 needs 2)", b.ternary_matmul(&x217, &w31), is_shape);
    bad!("ternary words per row (3 needs 1)", b.ternary_matmul(&m23, &w32), is_shape);
    bad!("ternary x rank", b.ternary_matmul(&a213, &w31), is_shape);
    bad!("ternary packed rank", b.ternary_matmul(&m23, &u32s(b, &[3], &[0; 3])?), is_shape);
    bad!("ternary x dtype", b.ternary_matmul(&ints, &w31), is_dtype);
    bad!("ternary packed dtype", b.ternary_matmul(&m23, &m23), |e| matches!(e, Error::DType { expected: DType::U32, got: DType::F32, .. }));
    bad!("ternary x empty", b.ternary_matmul(&empty, &w31), is_empty);
    bad!("ternary packed empty", b.ternary_matmul(&m23, &u32s(b, &[0, 1], &[])?), is_empty);

    // matmul_i8: x [M, K], codes [N, ceil(K/4)] u32, scales [N]; matmul_i4: codes [N, K/8], scales [N, K/g], g a multiple of 8.
    let x16 = f32s(b, &[2, 16], &[0.; 32])?;
    let c34 = u32s(b, &[3, 4], &[0; 12])?;
    bad!("int8 words per row (3 needs 1)", b.matmul_i8(&m23, &c34, &v3), is_shape);
    bad!("int8 scales shape", b.matmul_i8(&x16, &c34, &v2), is_shape);
    bad!("int8 scales rank", b.matmul_i8(&x16, &c34, &m23), is_shape);
    bad!("int8 codes dtype", b.matmul_i8(&x16, &x16, &v3), |e| matches!(e, Error::DType { expected: DType::U32, got: DType::F32, .. }));
    bad!("int8 scales dtype", b.matmul_i8(&x16, &c34, &u32s(b, &[3], &[0; 3])?), is_dtype);
    bad!("int8 x dtype", b.matmul_i8(&ints, &c34, &v3), is_dtype);
    bad!("int8 x empty", b.matmul_i8(&empty, &c34, &v3), is_empty);
    bad!("int8 x rank", b.matmul_i8(&a213, &c34, &v3), is_shape);
    let c32 = u32s(b, &[3, 2], &[0; 6])?;
    let s32 = f32s(b, &[3, 2], &[0.; 6])?;
    bad!("int4 words per row (16 needs 2)", b.matmul_i4(&x16, &c34, &s32), is_shape);
    bad!("int4 K not a multiple of 8", b.matmul_i4(&m23, &u32s(b, &[3, 1], &[0; 3])?, &f32s(b, &[3, 1], &[0.; 3])?), is_shape);
    bad!("int4 groups of 16/3", b.matmul_i4(&x16, &c32, &f32s(b, &[3, 3], &[0.; 9])?), is_shape);
    bad!("int4 groups of 4", b.matmul_i4(&x16, &c32, &f32s(b, &[3, 4], &[0.; 12])?), is_shape);
    bad!("int4 scales rows", b.matmul_i4(&x16, &c32, &f32s(b, &[2, 2], &[0.; 4])?), is_shape);
    bad!("int4 scales rank", b.matmul_i4(&x16, &c32, &v3), is_shape);
    bad!("int4 codes dtype", b.matmul_i4(&x16, &s32, &s32), |e| matches!(e, Error::DType { expected: DType::U32, got: DType::F32, .. }));
    bad!("int4 codes empty", b.matmul_i4(&x16, &u32s(b, &[0, 2], &[])?, &s32), is_empty);

    // Fused ops.
    let is_invalid = |e: &Error| matches!(e, Error::Invalid(_));
    let x236 = f32s(b, &[2, 3, 6], &[0.; 36])?;
    let t36 = f32s(b, &[3, 6], &[0.; 18])?;
    bad!("rope odd head dim", b.rope(&a213, &f32s(b, &[1, 3], &[0.; 3])?, &f32s(b, &[1, 3], &[0.; 3])?), is_shape);
    bad!("rope table shape", b.rope(&x236, &m23, &t36), is_shape);
    bad!("rope rank", b.rope(&m23, &t36, &t36), is_shape);
    bad!("rope dtype", b.rope(&ints, &t36, &t36), is_dtype);
    bad!("rope empty", b.rope(&empty, &t36, &t36), is_empty);
    let k136 = f32s(b, &[1, 3, 6], &[0.; 18])?;
    let k336 = f32s(b, &[3, 3, 6], &[0.; 54])?;
    bad!("attention kv heads do not divide", b.attention(&x236, &k336, &k336, 1.0, None), is_shape);
    bad!("attention T differs", b.attention(&x236, &f32s(b, &[1, 2, 6], &[0.; 12])?, &k136, 1.0, None), is_shape);
    bad!("attention head dim differs", b.attention(&x236, &f32s(b, &[1, 3, 5], &[0.; 15])?, &k136, 1.0, None), is_shape);
    bad!("attention window 0", b.attention(&x236, &k136, &k136, 1.0, Some(0)), is_invalid);
    bad!("attention rank", b.attention(&m23, &k136, &k136, 1.0, None), is_shape);
    bad!("gla chunk 0", b.gla(&x236, &x236, &x236, &x236, 0), is_invalid);
    bad!("gla k shape", b.gla(&x236, &k136, &x236, &x236, 4), is_shape);
    bad!("gla v length", b.gla(&x236, &x236, &f32s(b, &[2, 2, 6], &[0.; 24])?, &x236, 4), is_shape);
    bad!("gla dtype", b.gla(&x236, &x236, &x236, &ints, 4), is_dtype);
    bad!("last_token length 0", b.last_token(&x236, &[1, 0]), is_shape);
    bad!("last_token length > T", b.last_token(&x236, &[4, 1]), is_shape);
    bad!("last_token count", b.last_token(&x236, &[1]), is_shape);
    bad!("last_token rank", b.last_token(&m23, &[1, 1]), is_shape);
    let n2 = f32s(b, &[2], &[1.; 2])?;
    let n3 = f32s(b, &[3], &[1.; 3])?;
    bad!("matmul_f16 words per row (3 needs 2)", b.matmul_f16(&m23, &w31), is_shape);
    bad!("matmul_f16 dtype", b.matmul_f16(&m23, &m23), |e| matches!(e, Error::DType { expected: DType::U32, got: DType::F32, .. }));
    bad!("matmul_f16 x rank", b.matmul_f16(&a213, &w32), is_shape);
    bad!("matmul_f16 empty", b.matmul_f16(&empty, &w32), is_empty);
    bad!("bit_linear norm shape", b.bit_linear(&m23, &n2, &w31, 1.0, 1e-6), is_shape);
    bad!("bit_linear eps", b.bit_linear(&m23, &n3, &w31, 1.0, 0.0), is_invalid);
    bad!("bit_linear packed shape", b.bit_linear(&x217, &f32s(b, &[17], &[1.; 17])?, &w31, 1.0, 1e-6), is_shape);
    bad!("bit_linear packed dtype", b.bit_linear(&m23, &n3, &m23, 1.0, 1e-6), |e| matches!(e, Error::DType { expected: DType::U32, got: DType::F32, .. }));
    Ok(n)
}

/// `|got - want| <= abs + rel * scale` element-wise, where `scale` is each element's magnitude bound.
fn within(what: &str, got: &[f32], want: &[f32], scale: &[f32], abs: f32, rel: f32) -> std::result::Result<f32, String> {
    if got.len() != want.len() {
        return Err(format!("{what}: {} values vs {}", got.len(), want.len()));
    }
    let mut worst = 0f32;
    for i in 0..got.len() {
        let d = (got[i] - want[i]).abs();
        let bound = abs + rel * scale[i];
        let both_nan = got[i].is_nan() && want[i].is_nan();
        if !(d <= bound || both_nan || got[i] == want[i]) {
            return Err(format!("{what}[{i}]: got {}, reference {} (|diff| {d:e} > bound {bound:e})", got[i], want[i]));
        }
        worst = worst.max(d);
    }
    Ok(worst)
}

async fn host<B: Backend>(b: &B, t: std::result::Result<B::Tensor, Error>, what: &str) -> std::result::Result<HostTensor, String> {
    let t = t.map_err(|e| format!("{what}: {e}"))?;
    b.read(&t).await.map_err(|e| format!("{what}: {e}"))
}

async fn upload_all<B: Backend>(b: &B, inputs: &[HostTensor], what: &str) -> std::result::Result<Vec<B::Tensor>, String> {
    inputs.iter().map(|h| b.upload(h).map_err(|e| format!("{what}: upload: {e}"))).collect()
}

/// Run `$body` on the reference backend and on the test backend, each with `$inputs` uploaded as
/// `$x` (a `Vec` of its tensors), and read both results back: `(got, want)` with equal shapes.
/// The body is expanded once per backend, so it can use each backend's own tensor type.
macro_rules! both {
    ($reference:expr, $test:expr, $inputs:expr, $what:expr, |$be:ident, $x:ident| $body:expr) => {{
        let inputs: &[HostTensor] = $inputs;
        let what: &str = &$what;
        let want = {
            let $be = $reference;
            let $x = upload_all($be, inputs, what).await?;
            host($be, $body, what).await?
        };
        let got = {
            let $be = $test;
            let $x = upload_all($be, inputs, what).await?;
            host($be, $body, what).await?
        };
        if got.shape != want.shape || got.dtype() != want.dtype() {
            return Err(format!("{what}: got {:?} {:?}, reference {:?} {:?}", got.dtype(), got.shape, want.dtype(), want.shape));
        }
        (got, want)
    }};
}

/// Bit-for-bit equality (copies move bits; exact sums must agree to the last bit, -0.0 included).
fn same_bits(what: &str, got: &HostTensor, want: &HostTensor) -> std::result::Result<(), String> {
    let bits = |h: &HostTensor| -> Vec<u32> {
        match &h.data {
            Data::F32(v) => v.iter().map(|x| x.to_bits()).collect(),
            Data::U32(v) => v.clone(),
        }
    };
    let (g, w) = (bits(got), bits(want));
    if got.shape != want.shape || got.dtype() != want.dtype() || g.len() != w.len() {
        return Err(format!("{what}: got {:?} {:?}, reference {:?} {:?}", got.dtype(), got.shape, want.dtype(), want.shape));
    }
    match g.iter().zip(&w).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(i) => Err(format!("{what}[{i}]: got bits {:#010x}, reference {:#010x}", g[i], w[i])),
    }
}

/// Random contents of the given dtype: f32 in [-1, 1) or arbitrary u32 words.
fn random_tensor(rng: &mut SplitMix64, shape: &[usize], dtype: DType) -> HostTensor {
    let n = shape.iter().product();
    let data = match dtype {
        DType::F32 => Data::F32(rng.vec_f32(n, -1.0, 1.0)),
        DType::U32 => Data::U32((0..n).map(|_| rng.next_u64() as u32).collect()),
    };
    HostTensor { shape: shape.to_vec(), data }
}

/// All permutations of `0..r` (Heap's algorithm).
fn permutations(r: usize) -> Vec<Vec<usize>> {
    fn heap(k: usize, p: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if k <= 1 {
            out.push(p.clone());
            return;
        }
        for i in 0..k {
            heap(k - 1, p, out);
            let j = if k.is_multiple_of(2) { i } else { 0 };
            p.swap(j, k - 1);
        }
    }
    let mut out = Vec::new();
    heap(r, &mut (0..r).collect(), &mut out);
    out
}

/// Seeded random parity of `test` against `reference` at awkward sizes (odd lengths, sizes that are
/// not multiples of any workgroup or tile). Returns the number of comparisons.
pub async fn parity<R: Backend, T: Backend>(reference: &R, test: &T, seed: u64) -> Check {
    let mut rng = SplitMix64::new(seed);
    let mut n = 0;

    // Matmul: (batch, m, k, n, trans_b, b batched).
    let mm: [(usize, usize, usize, usize, bool, bool); 9] = [
        (1, 1, 1, 1, false, false),
        (1, 7, 13, 5, false, false),
        (1, 7, 13, 5, true, false),
        (1, 33, 65, 17, true, false),
        (1, 64, 64, 64, false, false),
        (1, 1, 257, 129, true, false),
        (3, 50, 31, 19, false, true),
        (3, 50, 31, 19, true, true),
        (2, 17, 9, 23, true, false),
    ];
    for (bt, m, k, nn, tb, bb) in mm {
        let a = HostTensor::f32(&if bt > 1 { vec![bt, m, k] } else { vec![m, k] }, rng.vec_f32(bt * m * k, -1.0, 1.0)).unwrap();
        let bshape = match (tb, bb) {
            (false, false) => vec![k, nn],
            (true, false) => vec![nn, k],
            (false, true) => vec![bt, k, nn],
            (true, true) => vec![bt, nn, k],
        };
        let bh = HostTensor::f32(&bshape, rng.vec_f32(bshape.iter().product(), -1.0, 1.0)).unwrap();
        let what = format!("matmul b{bt} {m}x{k}x{nn} trans_b={tb}");
        let want = host(reference, reference.upload(&a).and_then(|x| reference.upload(&bh).and_then(|y| reference.matmul(&x, &y, tb))), &what).await?;
        let got = host(test, test.upload(&a).and_then(|x| test.upload(&bh).and_then(|y| test.matmul(&x, &y, tb))), &what).await?;
        if got.shape != want.shape {
            return Err(format!("{what}: shape {:?} vs {:?}", got.shape, want.shape));
        }
        // Bound per output: sum_k |a_ik||b_kj| (a and b entries are in [-1,1), so K bounds it).
        let scale = vec![k as f32; want.numel()];
        within(&what, got.as_f32("p").unwrap(), want.as_f32("p").unwrap(), &scale, tolerance::MATMUL_ABS, tolerance::MATMUL_REL)?;
        n += 1;
    }

    // Row ops at awkward row lengths.
    for &(rows, d) in &[(1usize, 1usize), (3, 3), (2, 255), (5, 257), (1, 1000), (2, 4099), (70, 33)] {
        let xv = rng.vec_f32(rows * d, -4.0, 4.0);
        let x = HostTensor::f32(&[rows, d], xv.clone()).unwrap();
        let w = HostTensor::f32(&[d], rng.vec_f32(d, 0.5, 1.5)).unwrap();
        let what = format!("softmax {rows}x{d}");
        let want = host(reference, reference.upload(&x).and_then(|t| reference.softmax(&t)), &what).await?;
        let got = host(test, test.upload(&x).and_then(|t| test.softmax(&t)), &what).await?;
        let ones = vec![1.0; want.numel()];
        within(&what, got.as_f32("p").unwrap(), want.as_f32("p").unwrap(), &ones, 0.0, tolerance::ROW_REL)?;
        let what = format!("rms_norm {rows}x{d}");
        let want = host(reference, reference.upload(&x).and_then(|t| reference.upload(&w).and_then(|wt| reference.rms_norm(&t, &wt, 1e-6))), &what).await?;
        let got = host(test, test.upload(&x).and_then(|t| test.upload(&w).and_then(|wt| test.rms_norm(&t, &wt, 1e-6))), &what).await?;
        let scale: Vec<f32> = want.as_f32("p").unwrap().iter().map(|v| v.abs().max(1.0)).collect();
        within(&what, got.as_f32("p").unwrap(), want.as_f32("p").unwrap(), &scale, 0.0, tolerance::ROW_REL)?;
        n += 2;
        for op in Reduce::ALL {
            let what = format!("reduce {op:?} {rows}x{d}");
            let want = host(reference, reference.upload(&x).and_then(|t| reference.reduce(op, &t)), &what).await?;
            let got = host(test, test.upload(&x).and_then(|t| test.reduce(op, &t)), &what).await?;
            if op == Reduce::ArgMax {
                if got != want {
                    return Err(format!("{what}: {:?} vs {:?}", got.as_u32("a").ok(), want.as_u32("a").ok()));
                }
            } else {
                // Sums of d values in [-4,4): bound by 4·d.
                let scale = vec![4.0 * d as f32; want.numel()];
                within(&what, got.as_f32("p").unwrap(), want.as_f32("p").unwrap(), &scale, 0.0, tolerance::ROW_REL)?;
            }
            n += 1;
        }
    }

    // Element-wise at lengths that are not multiples of a workgroup.
    for &len in &[1usize, 63, 65, 1000, 4097, 70_001] {
        let xv = rng.vec_f32(len, -6.0, 6.0);
        let posv: Vec<f32> = xv.iter().map(|v| v.abs() + 0.05).collect();
        for op in Unary::ALL {
            let src = if matches!(op, Unary::Log | Unary::Sqrt | Unary::Recip) { &posv } else { &xv };
            let x = HostTensor::f32(&[len], src.clone()).unwrap();
            let what = format!("unary {op:?} len {len}");
            let want = host(reference, reference.upload(&x).and_then(|t| reference.unary(op, &t)), &what).await?;
            let got = host(test, test.upload(&x).and_then(|t| test.unary(op, &t)), &what).await?;
            let scale: Vec<f32> = want.as_f32("p").unwrap().iter().map(|v| v.abs()).collect();
            within(&what, got.as_f32("p").unwrap(), want.as_f32("p").unwrap(), &scale, tolerance::ELEMENTWISE_ABS, tolerance::ELEMENTWISE_REL)?;
            n += 1;
        }
        let a = HostTensor::f32(&[len], xv.clone()).unwrap();
        let bv: Vec<f32> = rng.vec_f32(len, 0.5, 3.0);
        for (bshape, bdata) in [(vec![len], bv.clone()), (vec![1], vec![bv[0]])] {
            let bh = HostTensor::f32(&bshape, bdata).unwrap();
            for op in Binary::ALL {
                let what = format!("binary {op:?} len {len} b {bshape:?}");
                let want = host(reference, reference.upload(&a).and_then(|x| reference.upload(&bh).and_then(|y| reference.binary(op, &x, &y))), &what).await?;
                let got = host(test, test.upload(&a).and_then(|x| test.upload(&bh).and_then(|y| test.binary(op, &x, &y))), &what).await?;
                let scale: Vec<f32> = want.as_f32("p").unwrap().iter().map(|v| v.abs()).collect();
                within(&what, got.as_f32("p").unwrap(), want.as_f32("p").unwrap(), &scale, tolerance::ELEMENTWISE_ABS, tolerance::ELEMENTWISE_REL)?;
                n += 1;
            }
        }
    }
    // Suffix broadcast: [7, 3, 5] op [3, 5].
    let a = HostTensor::f32(&[7, 3, 5], rng.vec_f32(105, -2.0, 2.0)).unwrap();
    let bh = HostTensor::f32(&[3, 5], rng.vec_f32(15, 0.5, 2.0)).unwrap();
    for op in Binary::ALL {
        let what = format!("binary {op:?} suffix broadcast");
        let want = host(reference, reference.upload(&a).and_then(|x| reference.upload(&bh).and_then(|y| reference.binary(op, &x, &y))), &what).await?;
        let got = host(test, test.upload(&a).and_then(|x| test.upload(&bh).and_then(|y| test.binary(op, &x, &y))), &what).await?;
        let scale: Vec<f32> = want.as_f32("p").unwrap().iter().map(|v| v.abs()).collect();
        within(&what, got.as_f32("p").unwrap(), want.as_f32("p").unwrap(), &scale, tolerance::ELEMENTWISE_ABS, tolerance::ELEMENTWISE_REL)?;
        n += 1;
    }

    // Gather: odd table widths, repeated ids.
    for &(rows, d, t) in &[(1usize, 1usize, 1usize), (10, 7, 13), (1000, 129, 37)] {
        let table = HostTensor::f32(&[rows, d], rng.vec_f32(rows * d, -1.0, 1.0)).unwrap();
        let ids: Vec<u32> = (0..t).map(|_| rng.below(rows as u64) as u32).collect();
        let what = format!("gather {rows}x{d} t {t}");
        let want = host(reference, reference.upload(&table).and_then(|x| reference.gather(&x, &ids)), &what).await?;
        let got = host(test, test.upload(&table).and_then(|x| test.gather(&x, &ids)), &what).await?;
        if got != want {
            return Err(format!("{what}: gathered rows differ"));
        }
        n += 1;
    }
    n += parity_broadcast(reference, test, &mut rng).await?;
    n += parity_data_movement(reference, test, &mut rng).await?;
    n += parity_scans(reference, test, &mut rng).await?;
    n += parity_ternary(reference, test, &mut rng).await?;
    n += parity_packed(reference, test, &mut rng).await?;
    n += parity_fused(reference, test, &mut rng).await?;
    Ok(n)
}

/// The fused model ops (`rope`, `attention`, `gla`, `last_token`, `bit_linear`) against the
/// reference backend's composition of primitive ops, at awkward sizes and past the kernels'
/// tile and workgroup-memory limits (where the GPU falls back to the composition).
async fn parity_fused<R: Backend, T: Backend>(reference: &R, test: &T, rng: &mut SplitMix64) -> Check {
    let mut n = 0;
    for (heads, t, hd) in [(1usize, 1usize, 2usize), (3, 7, 6), (4, 33, 64), (2, 130, 32)] {
        let x = HostTensor::f32(&[heads, t, hd], rng.vec_f32(heads * t * hd, -1.0, 1.0)).unwrap();
        let (cos, sin) = crate::nn::rope::tables(t, hd, 10_000.0, 3).map_err(|e| e.to_string())?;
        let what = format!("rope {heads}x{t}x{hd}");
        let (got, want) = both!(reference, test, &[x, cos, sin], what, |be, i| be.rope(&i[0], &i[1], &i[2]));
        let ones = vec![2f32; want.numel()];
        within(&what, got.as_f32("p").unwrap(), want.as_f32("p").unwrap(), &ones, tolerance::ELEMENTWISE_ABS, tolerance::ELEMENTWISE_REL)?;
        n += 1;
    }

    // (nh, kvh, T, hd, dv, window); dv 300 is past the kernel's MAXD (composed path).
    let att: [(usize, usize, usize, usize, usize, Option<usize>); 7] = [
        (1, 1, 1, 1, 1, None),
        (4, 4, 7, 16, 16, None),
        (4, 2, 65, 32, 32, None),
        (2, 1, 130, 64, 64, Some(5)),
        (3, 3, 17, 5, 9, Some(1)),
        (2, 2, 70, 3, 257, Some(200)),
        (2, 2, 9, 8, 300, None),
    ];
    for (nh, kvh, t, hd, dv, window) in att {
        let q = HostTensor::f32(&[nh, t, hd], rng.vec_f32(nh * t * hd, -2.0, 2.0)).unwrap();
        let k = HostTensor::f32(&[kvh, t, hd], rng.vec_f32(kvh * t * hd, -2.0, 2.0)).unwrap();
        let v = HostTensor::f32(&[kvh, t, dv], rng.vec_f32(kvh * t * dv, -1.0, 1.0)).unwrap();
        let scale = 1.0 / (hd as f32).sqrt();
        let what = format!("attention nh {nh} kvh {kvh} T {t} hd {hd} dv {dv} window {window:?}");
        let (got, want) = both!(reference, test, &[q, k, v], what, |be, i| be.attention(&i[0], &i[1], &i[2], scale, window));
        // Outputs are convex combinations of values in [-1, 1): bound 1 per element.
        let ones = vec![1f32; want.numel()];
        within(&what, got.as_f32("p").unwrap(), want.as_f32("p").unwrap(), &ones, tolerance::ELEMENTWISE_ABS, tolerance::ROW_REL)?;
        n += 1;
    }

    // (N, T, dk, dv, chunk); dk 300 shrinks the kernel's chunk to 6 and its tile to 3 columns.
    let gla: [(usize, usize, usize, usize, usize); 7] =
        [(1, 1, 1, 1, 16), (2, 7, 32, 64, 16), (3, 33, 17, 5, 16), (2, 100, 64, 64, 16), (1, 50, 128, 40, 4), (2, 19, 300, 7, 16), (1, 40, 8, 8, 64)];
    for (nh, t, dk, dv, chunk) in gla {
        let q = rng.vec_f32(nh * t * dk, -1.0, 1.0);
        let k = rng.vec_f32(nh * t * dk, -1.0, 1.0);
        let v = rng.vec_f32(nh * t * dv, -1.0, 1.0);
        let lg = rng.vec_f32(nh * t * dk, -1.0, 0.0);
        // Scale: the same recurrence on magnitudes, |o_t| <= |q_t| S⁺_t with S⁺ from |k|, |v|.
        let mut scale = vec![0f32; nh * t * dv];
        for h in 0..nh {
            let mut st = vec![0f64; dk * dv];
            for i in 0..t {
                let r = (h * t + i) * dk;
                for d in 0..dk {
                    let a = (lg[r + d] as f64).exp();
                    for c in 0..dv {
                        st[d * dv + c] = a * st[d * dv + c] + (k[r + d].abs() * v[(h * t + i) * dv + c].abs()) as f64;
                    }
                }
                for c in 0..dv {
                    scale[(h * t + i) * dv + c] = (0..dk).map(|d| q[r + d].abs() as f64 * st[d * dv + c]).sum::<f64>() as f32;
                }
            }
        }
        let sh = [nh, t, dk];
        let inputs = [
            HostTensor::f32(&sh, q).unwrap(),
            HostTensor::f32(&sh, k).unwrap(),
            HostTensor::f32(&[nh, t, dv], v).unwrap(),
            HostTensor::f32(&sh, lg).unwrap(),
        ];
        let what = format!("gla N {nh} T {t} dk {dk} dv {dv} chunk {chunk}");
        let (got, want) = both!(reference, test, &inputs, what, |be, i| be.gla(&i[0], &i[1], &i[2], &i[3], chunk));
        within(&what, got.as_f32("p").unwrap(), want.as_f32("p").unwrap(), &scale, tolerance::MATMUL_ABS, tolerance::SCAN_REL)?;
        n += 1;
    }

    for (bt, t, h, lengths) in [(1usize, 1usize, 1usize, vec![1usize]), (3, 7, 5, vec![7, 1, 4]), (2, 300, 129, vec![300, 17])] {
        let x = HostTensor::f32(&[bt, t, h], rng.vec_f32(bt * t * h, -1.0, 1.0)).unwrap();
        let what = format!("last_token {bt}x{t}x{h}");
        let (got, want) = both!(reference, test, std::slice::from_ref(&x), what, |be, i| be.last_token(&i[0], &lengths));
        same_bits(&what, &got, &want)?;
        n += 1;
    }

    // f16 weights: both backends decode the same halves, so with the same arithmetic only the
    // summation order differs. When one side multiplies in f16 ([`Backend::f16_arithmetic`]) it
    // is held to the f16 bound against the other, and the f16 side to its twin
    // (`cpu::matmul_f16_arith_host`, same roundings) under the f32 matmul tolerance.
    let f16_sides = (reference.f16_arithmetic(), test.f16_arithmetic());
    for (m, k, nn) in [(1usize, 1usize, 1usize), (7, 13, 5), (33, 65, 17), (64, 64, 64), (3, 257, 129), (130, 128, 9), (5, 1000, 67)] {
        let wv = rng.vec_f32(nn * k, -1.0, 1.0);
        let xv = rng.vec_f32(m * k, -1.0, 1.0);
        let words = half_pairs::pack(&wv, nn, k).map_err(|e| e.to_string())?;
        let inputs = [HostTensor::f32(&[m, k], xv.clone()).unwrap(), HostTensor::u32(&[nn, half_pairs::words_per_row(k)], words.clone()).unwrap()];
        let what = format!("matmul_f16 {m}x{k}x{nn}");
        let (got, want) = both!(reference, test, &inputs, what, |be, i| be.matmul_f16(&i[0], &i[1]));
        let (got, want) = (got.as_f32("p").unwrap(), want.as_f32("p").unwrap());
        let scale = vec![k as f32; want.len()];
        if f16_sides.0 == f16_sides.1 {
            within(&what, got, want, &scale, tolerance::MATMUL_ABS, tolerance::MATMUL_REL)?;
            n += 1;
            continue;
        }
        // Σ|x w| and Σ|w| of each output, over the decoded halves.
        let wh = half_pairs::unpack(&words, nn, k).map_err(|e| e.to_string())?;
        let mut bound = Vec::with_capacity(m * nn);
        for r in 0..m {
            for c in 0..nn {
                let (xr, wr) = (&xv[r * k..(r + 1) * k], &wh[c * k..(c + 1) * k]);
                let sum_xw: f64 = xr.iter().zip(wr).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
                let sum_w: f64 = wr.iter().map(|&b| (b as f64).abs()).sum();
                bound.push(tolerance::f16_arith_matmul(k, sum_xw as f32, sum_w as f32));
            }
        }
        within(&format!("{what} f16 products vs f32"), got, want, &bound, 0.0, 1.0)?;
        let f16_side = if f16_sides.1 { got } else { want };
        let twin = super::cpu::matmul_f16_arith_host(&xv, &words, m, k, nn).map_err(|e| e.to_string())?;
        within(&format!("{what} f16 products vs their CPU twin"), f16_side, &twin, &scale, tolerance::MATMUL_ABS, tolerance::MATMUL_REL)?;
        n += 2;
    }

    // BitLinear: the two backends' RMSNorms differ in summation order, so an activation within
    // an ulp of a rounding boundary may land on the neighbouring 8-bit code on one of them. Each
    // such flip moves an output by one step β · max|ŷ| / 127 (the weight is ±1); allow two.
    for (m, k, nn) in [(1usize, 1usize, 1usize), (3, 17, 5), (7, 300, 129), (17, 1000, 33), (2, 64, 70)] {
        let values: Vec<i8> = (0..nn * k).map(|_| rng.below(3) as i8 - 1).collect();
        let words = ternary::pack(&values, nn, k).map_err(|e| e.to_string())?;
        let xv = rng.vec_f32(m * k, -3.0, 3.0);
        let normv = rng.vec_f32(k, 0.5, 1.5);
        let beta = 0.37f32;
        let eps = 1e-6f32;
        let mut scale = vec![0f32; m * nn];
        for r in 0..m {
            let row = &xv[r * k..(r + 1) * k];
            let inv = 1.0 / (row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / k as f64 + eps as f64).sqrt();
            let amax = row.iter().zip(&normv).map(|(&v, &w)| (v as f64 * inv * w as f64).abs()).fold(1e-5, f64::max);
            for c in 0..nn {
                scale[r * nn + c] = (beta as f64 * amax / 127.0) as f32;
            }
        }
        let inputs = [
            HostTensor::f32(&[m, k], xv).unwrap(),
            HostTensor::f32(&[k], normv).unwrap(),
            HostTensor::u32(&[nn, ternary::words_per_row(k)], words).unwrap(),
        ];
        let what = format!("bit_linear {m}x{k}x{nn}");
        let (got, want) = both!(reference, test, &inputs, what, |be, i| be.bit_linear(&i[0], &i[1], &i[2], beta, eps));
        within(&what, got.as_f32("p").unwrap(), want.as_f32("p").unwrap(), &scale, 1e-5, 2.0)?;
        n += 1;
    }
    Ok(n)
}

/// Binary ops with size-1 dims in both operands, up to the rank limit.
async fn parity_broadcast<R: Backend, T: Backend>(reference: &R, test: &T, rng: &mut SplitMix64) -> Check {
    let mut n = 0;
    let pairs: [(&[usize], &[usize]); 7] = [
        (&[7, 1, 5], &[1, 3, 1]),
        (&[4099, 1], &[1, 3]),
        (&[1], &[3, 1, 257]),
        (&[5, 1, 1, 33], &[3, 1, 33]),
        (&[2, 1, 3, 1, 5, 1], &[1, 4, 1, 6, 1, 2]),
        (&[2, 1, 2, 1, 2, 1, 2, 1], &[1, 2, 1, 3, 1, 2, 1, 2]),
        (&[1, 1, 65], &[70, 1, 1]),
    ];
    for (sa, sb) in pairs {
        let a = HostTensor::f32(sa, rng.vec_f32(sa.iter().product(), -2.0, 2.0)).unwrap();
        // Divisors away from zero.
        let bh = HostTensor::f32(sb, rng.vec_f32(sb.iter().product(), 0.5, 3.0)).unwrap();
        for op in Binary::ALL {
            let what = format!("binary {op:?} {sa:?} {sb:?}");
            let (got, want) = both!(reference, test, &[a.clone(), bh.clone()], what, |be, x| be.binary(op, &x[0], &x[1]));
            let scale: Vec<f32> = want.as_f32("p").unwrap().iter().map(|v| v.abs()).collect();
            within(&what, got.as_f32("p").unwrap(), want.as_f32("p").unwrap(), &scale, tolerance::ELEMENTWISE_ABS, tolerance::ELEMENTWISE_REL)?;
            n += 1;
        }
    }
    Ok(n)
}

/// reshape, permute, narrow and concat: copies, so bit-exact, in both dtypes.
async fn parity_data_movement<R: Backend, T: Backend>(reference: &R, test: &T, rng: &mut SplitMix64) -> Check {
    let mut n = 0;
    for dtype in [DType::F32, DType::U32] {
        // Every permutation of a rank-3 and a rank-4 tensor with distinct odd-ish sizes.
        for shape in [&[3usize, 5, 7][..], &[2, 3, 4, 5]] {
            let x = random_tensor(rng, shape, dtype);
            for perm in permutations(shape.len()) {
                let what = format!("permute {dtype} {shape:?} {perm:?}");
                let (got, want) = both!(reference, test, std::slice::from_ref(&x), what, |be, t| be.permute(&t[0], &perm));
                same_bits(&what, &got, &want)?;
                n += 1;
            }
        }
        // Larger than a workgroup, with size-1 dims that collapse away, at rank 6.
        for (shape, perm) in [(&[33usize, 65, 17][..], &[2usize, 0, 1][..]), (&[2, 1, 3, 1, 4, 5], &[5, 3, 1, 4, 0, 2])] {
            let x = random_tensor(rng, shape, dtype);
            let what = format!("permute {dtype} {shape:?} {perm:?}");
            let (got, want) = both!(reference, test, std::slice::from_ref(&x), what, |be, t| be.permute(&t[0], perm));
            same_bits(&what, &got, &want)?;
            n += 1;
        }

        // Narrow on each dim: the start, the middle, the end, and the whole dim.
        let x = random_tensor(rng, &[3, 5, 7], dtype);
        for (dim, start, len) in [(0, 0, 1), (0, 1, 2), (0, 0, 3), (1, 0, 1), (1, 2, 3), (1, 4, 1), (2, 0, 7), (2, 3, 4), (2, 6, 1)] {
            let what = format!("narrow {dtype} [3,5,7] dim {dim} {start}..{}", start + len);
            let (got, want) = both!(reference, test, std::slice::from_ref(&x), what, |be, t| be.narrow(&t[0], dim, start, len));
            same_bits(&what, &got, &want)?;
            n += 1;
        }
        let x = random_tensor(rng, &[4, 3, 300, 5], dtype);
        for dim in 0..4 {
            let (start, len) = (1, x.shape[dim] - 2);
            let what = format!("narrow {dtype} [4,3,300,5] dim {dim} {start}..{}", start + len);
            let (got, want) = both!(reference, test, std::slice::from_ref(&x), what, |be, t| be.narrow(&t[0], dim, start, len));
            same_bits(&what, &got, &want)?;
            n += 1;
        }

        // Concat of three tensors on each dim, pieces of sizes 1, 4 and 2 along it.
        for base in [&[3usize, 5, 7][..], &[2, 1, 3, 129]] {
            for dim in 0..base.len() {
                let parts: Vec<HostTensor> = [1, 4, 2]
                    .iter()
                    .map(|&len| {
                        let mut s = base.to_vec();
                        s[dim] = len;
                        random_tensor(rng, &s, dtype)
                    })
                    .collect();
                let what = format!("concat {dtype} 3 x {base:?} dim {dim}");
                let (got, want) = both!(reference, test, &parts, what, |be, t| be.concat(&[&t[0], &t[1], &t[2]], dim));
                same_bits(&what, &got, &want)?;
                n += 1;
            }
        }

        // A chain through a free reshape: [3,5,7] -> [15,7] -> transpose -> narrow.
        let x = random_tensor(rng, &[3, 5, 7], dtype);
        let what = format!("reshape/permute/narrow chain {dtype}");
        let (got, want) = both!(reference, test, std::slice::from_ref(&x), what, |be, t| be
            .reshape(&t[0], &[15, 7])
            .and_then(|y| be.permute(&y, &[1, 0]))
            .and_then(|y| be.narrow(&y, 1, 3, 11)));
        same_bits(&what, &got, &want)?;
        n += 1;
    }

    // Empty tensors move too (nothing to copy), and a rank-0 permute is the identity.
    let empty = HostTensor::f32(&[0, 3], vec![]).unwrap();
    let three = HostTensor::f32(&[2, 3], rng.vec_f32(6, -1.0, 1.0)).unwrap();
    let (got, want) = both!(reference, test, std::slice::from_ref(&empty), "permute empty", |be, t| be.permute(&t[0], &[1, 0]));
    same_bits("permute empty", &got, &want)?;
    let (got, want) = both!(reference, test, std::slice::from_ref(&empty), "narrow empty", |be, t| be.narrow(&t[0], 1, 1, 2));
    same_bits("narrow empty", &got, &want)?;
    let (got, want) = both!(reference, test, &[empty.clone(), three.clone()], "concat with empty", |be, t| be.concat(&[&t[0], &t[1]], 0));
    same_bits("concat with empty", &got, &want)?;
    let scalar = HostTensor::f32(&[], vec![2.5]).unwrap();
    let (got, want) = both!(reference, test, std::slice::from_ref(&scalar), "permute scalar", |be, t| be.permute(&t[0], &[]));
    same_bits("permute scalar", &got, &want)?;
    n += 4;
    Ok(n)
}

/// cumsum at row lengths around the workgroup and chunk sizes; scan over T x D.
async fn parity_scans<R: Backend, T: Backend>(reference: &R, test: &T, rng: &mut SplitMix64) -> Check {
    let mut n = 0;
    let shapes: [&[usize]; 8] = [&[3, 1], &[3, 3], &[3, 255], &[3, 257], &[2, 1000], &[2, 4099], &[4099], &[2, 3, 1025]];
    for shape in shapes {
        let d = *shape.last().unwrap();
        let x = HostTensor::f32(shape, rng.vec_f32(shape.iter().product(), -4.0, 4.0)).unwrap();
        let what = format!("cumsum {shape:?}");
        let (got, want) = both!(reference, test, std::slice::from_ref(&x), what, |be, t| be.cumsum(&t[0]));
        // Element j's scale: the sum of |x| up to j.
        let scale: Vec<f32> = x
            .as_f32("p")
            .unwrap()
            .chunks(d)
            .flat_map(|row| row.iter().scan(0f32, |acc, v| {
                *acc += v.abs();
                Some(*acc)
            }))
            .collect();
        within(&what, got.as_f32("p").unwrap(), want.as_f32("p").unwrap(), &scale, 0.0, tolerance::SCAN_REL)?;
        n += 1;
    }

    for t in [1usize, 7, 300] {
        for d in [1usize, 33, 1000] {
            // Decays in (0, 1), as a sigmoid gate gives them.
            let a = HostTensor::f32(&[t, d], rng.vec_f32(t * d, 0.001, 0.999)).unwrap();
            let bv = rng.vec_f32(t * d, -1.0, 1.0);
            // Scale: the same recurrence on magnitudes, s_t = |a_t| s_{t-1} + |b_t|.
            let av = a.as_f32("p").unwrap();
            let mut scale = vec![0f32; t * d];
            for i in 0..t * d {
                let prev = if i >= d { scale[i - d] } else { 0.0 };
                scale[i] = av[i].abs() * prev + bv[i].abs();
            }
            let bh = HostTensor::f32(&[t, d], bv).unwrap();
            let what = format!("scan T={t} D={d}");
            let (got, want) = both!(reference, test, &[a.clone(), bh], what, |be, x| be.scan(&x[0], &x[1]));
            within(&what, got.as_f32("p").unwrap(), want.as_f32("p").unwrap(), &scale, 0.0, tolerance::SCAN_REL)?;
            n += 1;
        }
    }
    Ok(n)
}

/// The packed ternary product: exact for integer x (checked against an i64 dot product too),
/// within the matmul tolerance for random x.
async fn parity_ternary<R: Backend, T: Backend>(reference: &R, test: &T, rng: &mut SplitMix64) -> Check {
    let mut n = 0;
    for m in [1usize, 3, 17] {
        for k in [1usize, 15, 16, 17, 33, 1000] {
            for nn in [1usize, 5, 129] {
                let values: Vec<i8> = (0..nn * k).map(|_| rng.below(3) as i8 - 1).collect();
                let words = ternary::pack(&values, nn, k).map_err(|e| e.to_string())?;
                let packed = HostTensor::u32(&[nn, ternary::words_per_row(k)], words).unwrap();

                // 8-bit activations: integers in [-127, 127], sums exact in f32 (|sum| < 2^24).
                let xi: Vec<i64> = (0..m * k).map(|_| rng.below(255) as i64 - 127).collect();
                let x = HostTensor::f32(&[m, k], xi.iter().map(|&v| v as f32).collect()).unwrap();
                let what = format!("ternary_matmul {m}x{k}x{nn} integer x");
                let (got, want) = both!(reference, test, &[x, packed.clone()], what, |be, t| be.ternary_matmul(&t[0], &t[1]));
                same_bits(&what, &got, &want)?;
                let exact: Vec<f32> = (0..m * nn)
                    .map(|o| (0..k).map(|j| xi[(o / nn) * k + j] * values[(o % nn) * k + j] as i64).sum::<i64>() as f32)
                    .collect();
                if got.as_f32("p").unwrap() != exact.as_slice() {
                    return Err(format!("{what}: differs from the exact integer dot products"));
                }

                let xv = rng.vec_f32(m * k, -1.0, 1.0);
                let scale: Vec<f32> = (0..m * nn)
                    .map(|o| (0..k).map(|j| (xv[(o / nn) * k + j] * values[(o % nn) * k + j] as f32).abs()).sum())
                    .collect();
                let x = HostTensor::f32(&[m, k], xv).unwrap();
                let what = format!("ternary_matmul {m}x{k}x{nn} float x");
                let (got, want) = both!(reference, test, &[x, packed], what, |be, t| be.ternary_matmul(&t[0], &t[1]));
                within(&what, got.as_f32("p").unwrap(), want.as_f32("p").unwrap(), &scale, tolerance::MATMUL_ABS, tolerance::MATMUL_REL)?;
                n += 2;
            }
        }
    }
    Ok(n)
}

/// The int8 and int4 products at awkward sizes (M = 1, 3, 17; int8 K not a multiple of 4 or 32;
/// int4 with one to several groups; N past one 64-column tile): the test backend's op against the
/// reference's within [`tolerance::MATMUL_REL`], and both against their slow twin, the reference's
/// plain product with the dequantised weight, within [`tolerance::PACKED_MATMUL_REL`].
async fn parity_packed<R: Backend, T: Backend>(reference: &R, test: &T, rng: &mut SplitMix64) -> Check {
    use crate::compress::quant;
    let mut n = 0;
    // (K, group): group 0 = int8 per channel.
    let shapes: [(usize, usize); 9] = [(1, 0), (5, 0), (31, 0), (33, 0), (130, 0), (32, 32), (96, 32), (128, 64), (256, 128)];
    for m in [1usize, 3, 17] {
        for (k, g) in shapes {
            for nn in [1usize, 5, 70] {
                let w = rng.vec_f32(nn * k, -1.0, 1.0);
                let (codes, scales, deq) = if g == 0 {
                    let q = quant::quantize_int8(&w, nn, k).map_err(|e| e.to_string())?;
                    let words = int8::pack(&q.codes, nn, k).map_err(|e| e.to_string())?;
                    let deq = q.dequantize().map_err(|e| e.to_string())?;
                    (HostTensor::u32(&[nn, int8::words_per_row(k)], words).unwrap(), HostTensor::f32(&[nn], q.scales).unwrap(), deq)
                } else {
                    let q = quant::quantize_int4(&w, nn, k, g).map_err(|e| e.to_string())?;
                    let deq = q.dequantize().map_err(|e| e.to_string())?;
                    (HostTensor::u32(&[nn, k / 8], q.packed).unwrap(), HostTensor::f32(&[nn, k / g], q.scales).unwrap(), deq)
                };
                let xv = rng.vec_f32(m * k, -1.0, 1.0);
                let scale: Vec<f32> = (0..m * nn).map(|o| (0..k).map(|j| (xv[(o / nn) * k + j] * deq[(o % nn) * k + j]).abs()).sum()).collect();
                let x = HostTensor::f32(&[m, k], xv).unwrap();
                let what = format!("matmul_{} {m}x{k}x{nn} g{g}", if g == 0 { "i8" } else { "i4" });
                let inputs = [x.clone(), codes, scales];
                let (got, want) = if g == 0 {
                    both!(reference, test, &inputs, what, |be, t| be.matmul_i8(&t[0], &t[1], &t[2]))
                } else {
                    both!(reference, test, &inputs, what, |be, t| be.matmul_i4(&t[0], &t[1], &t[2]))
                };
                within(&what, got.as_f32("p").unwrap(), want.as_f32("p").unwrap(), &scale, tolerance::MATMUL_ABS, tolerance::MATMUL_REL)?;
                // The slow twin: dequantise, then the plain product.
                let twin = format!("{what} vs dequantised matmul");
                let wt = HostTensor::f32(&[nn, k], deq).unwrap();
                let slow = host(reference, reference.upload(&x).and_then(|xt| reference.upload(&wt).and_then(|wt| reference.matmul(&xt, &wt, true))), &twin).await?;
                for (who, h) in [("reference", &want), ("test", &got)] {
                    within(&format!("{twin} ({who})"), h.as_f32("p").unwrap(), slow.as_f32("p").unwrap(), &scale, tolerance::MATMUL_ABS, tolerance::PACKED_MATMUL_REL)?;
                }
                n += 3;
            }
        }
    }
    Ok(n)
}
