//! The conformance suite every backend must pass, shared by the native tests (CPU, wgpu on
//! lavapipe) and the browser tests (WebGPU on SwiftShader), so all layers check the same things:
//!
//! - [`golden`]: hand-computed values for every op;
//! - [`bad_inputs`]: a typed error for every shape mismatch, empty tensor and wrong dtype;
//! - [`parity`]: seeded random inputs at awkward sizes, compared with a reference backend
//!   (the CPU) under the named [`tolerance`]s.
//!
//! Each returns the number of checks run, or a message naming the first failure.

use super::{tolerance, Backend, Binary, HostTensor, Reduce, Unary};
use crate::error::{DType, Error};
use crate::rng::SplitMix64;

type Check = std::result::Result<usize, String>;

fn f32s<B: Backend>(b: &B, shape: &[usize], v: &[f32]) -> std::result::Result<B::Tensor, String> {
    b.upload(&HostTensor::f32(shape, v.to_vec()).map_err(|e| e.to_string())?).map_err(|e| e.to_string())
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
    expect_err("matmul K mismatch", b.matmul(&m23, &m22, false), is_shape)?;
    expect_err("matmul trans_b K mismatch", b.matmul(&m23, &m22, true), is_shape)?;
    expect_err("matmul rank 4", b.matmul(&r4, &m22, false), is_shape)?;
    expect_err("matmul rank 1", b.matmul(&v3, &m22, false), is_shape)?;
    expect_err("matmul batch mismatch", b.matmul(&a223, &b3, false), is_shape)?;
    expect_err("binary shape", b.binary(Binary::Add, &m23, &m22), is_shape)?;
    expect_err("binary suffix", b.binary(Binary::Mul, &m23, &v2), is_shape)?;
    expect_err("rms_norm weight", b.rms_norm(&m23, &v2, 1e-6), is_shape)?;
    expect_err("rms_norm eps", b.rms_norm(&m23, &v3, 0.0), |e| matches!(e, Error::Invalid(_)))?;
    expect_err("rms_norm eps NaN", b.rms_norm(&m23, &v3, f32::NAN), |e| matches!(e, Error::Invalid(_)))?;
    expect_err("gather table rank", b.gather(&v3, &[0]), is_shape)?;
    expect_err("gather index", b.gather(&m23, &[0, 2]), |e| matches!(e, Error::Index { index: 2, size: 2, .. }))?;
    // Empty tensors.
    expect_err("matmul empty", b.matmul(&empty, &m22, false), is_empty)?;
    expect_err("unary empty", b.unary(Unary::Exp, &empty), is_empty)?;
    expect_err("binary empty", b.binary(Binary::Add, &empty, &v3), is_empty)?;
    expect_err("softmax empty", b.softmax(&empty), is_empty)?;
    expect_err("rms_norm empty", b.rms_norm(&empty, &v3, 1e-6), is_empty)?;
    expect_err("reduce empty", b.reduce(Reduce::Sum, &empty), is_empty)?;
    expect_err("gather empty table", b.gather(&empty, &[0]), is_empty)?;
    expect_err("gather empty ids", b.gather(&m23, &[]), is_empty)?;
    // Wrong dtype.
    expect_err("matmul dtype", b.matmul(&ints, &m22, false), is_dtype)?;
    expect_err("unary dtype", b.unary(Unary::Neg, &ints), is_dtype)?;
    expect_err("binary dtype", b.binary(Binary::Add, &m23, &ints), is_dtype)?;
    expect_err("softmax dtype", b.softmax(&ints), is_dtype)?;
    expect_err("rms_norm dtype", b.rms_norm(&ints, &v3, 1e-6), is_dtype)?;
    expect_err("reduce dtype", b.reduce(Reduce::Max, &ints), is_dtype)?;
    expect_err("gather dtype", b.gather(&ints, &[0]), is_dtype)?;
    // Host data that does not fit its shape.
    expect_err("host data length", HostTensor::f32(&[2, 2], vec![0.; 3]), |e| matches!(e, Error::DataLen { .. }))?;
    Ok(28)
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
    Ok(n)
}
