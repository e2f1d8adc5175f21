//! The end-to-end check the page runs on both backends: tokenize the user's text, then a small
//! seeded network made of every primitive op, and compare GPU with CPU.
//!
//! ```text
//! ids [T] --gather--> x [T, D] --rms_norm--> h [T, D] --matmul(Wᵀ)+bias--> z [T, C]
//!   --silu--> --softmax--> p [T, C] --argmax--> label [T, 1]
//!   mean over tokens: ones [1, T] · p / T --> m [1, C]
//! ```

use crate::backend::{Backend, Binary, HostTensor, Reduce, Unary};
use crate::error::{Error, Result};
use crate::rng::SplitMix64;

/// Width of the demo network.
pub const DEMO_DIM: usize = 96;
/// Output classes of the demo network.
pub const DEMO_CLASSES: usize = 64;
/// Seed of the demo weights (fixed: the numbers are part of the test fixtures).
pub const DEMO_SEED: u64 = 0x7121_1e3a;

/// The seeded weights of the demo network, in host memory.
#[derive(Clone, Debug)]
pub struct DemoWeights {
    /// `[N, D]` embedding table (N = vocabulary size).
    pub table: HostTensor,
    /// `[D]` RMSNorm weight.
    pub norm: HostTensor,
    /// `[C, D]` projection, PyTorch `Linear` layout.
    pub proj: HostTensor,
    /// `[C]` bias.
    pub bias: HostTensor,
}

impl DemoWeights {
    pub fn seeded(vocab: usize, seed: u64) -> Result<Self> {
        if vocab == 0 {
            return Err(Error::Invalid("vocabulary is empty".into()));
        }
        let mut r = SplitMix64::new(seed);
        let (d, c) = (DEMO_DIM, DEMO_CLASSES);
        Ok(Self {
            table: HostTensor::f32(&[vocab, d], r.vec_f32(vocab * d, -1.0, 1.0))?,
            norm: HostTensor::f32(&[d], r.vec_f32(d, 0.5, 1.5))?,
            proj: HostTensor::f32(&[c, d], r.vec_f32(c * d, -0.3, 0.3))?,
            bias: HostTensor::f32(&[c], r.vec_f32(c, -0.1, 0.1))?,
        })
    }
}

/// What one backend computed.
#[derive(Clone, Debug)]
pub struct DemoOutput {
    /// `[T, C]` per-token class probabilities.
    pub probs: HostTensor,
    /// `[C]` mean probability over tokens.
    pub mean: Vec<f32>,
    /// `[T]` per-token argmax class.
    pub argmax: Vec<u32>,
}

/// Run the demo network on `backend`. `progress(stage)` is called before each step.
pub async fn run<B: Backend>(backend: &B, w: &DemoWeights, ids: &[u32], mut progress: impl FnMut(&str)) -> Result<DemoOutput> {
    let t = ids.len();
    progress("upload weights");
    let table = backend.upload(&w.table)?;
    let norm = backend.upload(&w.norm)?;
    let proj = backend.upload(&w.proj)?;
    let bias = backend.upload(&w.bias)?;
    let ones = backend.upload(&HostTensor::f32(&[1, t], vec![1.0; t])?)?;
    progress("forward");
    let x = backend.gather(&table, ids)?; // [T, D]
    let h = backend.rms_norm(&x, &norm, 1e-6)?; // [T, D]
    let z = backend.matmul(&h, &proj, true)?; // [T, C]
    let z = backend.binary(Binary::Add, &z, &bias)?; // [T, C]
    let z = backend.unary(Unary::Silu, &z)?;
    let p = backend.softmax(&z)?; // [T, C]
    let arg = backend.reduce(Reduce::ArgMax, &p)?; // [T, 1]
    let m = backend.matmul(&ones, &p, false)?; // [1, C]
    let m = backend.unary(Unary::Affine { mul: 1.0 / t as f32, add: 0.0 }, &m)?;
    progress("read back");
    let probs = backend.read(&p).await?;
    let mean = backend.read(&m).await?.as_f32("demo")?.to_vec();
    let argmax = backend.read(&arg).await?.as_u32("demo")?.to_vec();
    Ok(DemoOutput { probs, mean, argmax })
}

/// Largest absolute element difference between two outputs (over probabilities and means).
pub fn max_abs_diff(a: &DemoOutput, b: &DemoOutput) -> Result<f32> {
    let (pa, pb) = (a.probs.as_f32("diff")?, b.probs.as_f32("diff")?);
    if pa.len() != pb.len() || a.mean.len() != b.mean.len() {
        return Err(Error::Shape { op: "diff", detail: "outputs have different sizes".into() });
    }
    Ok(pa.iter().zip(pb).chain(a.mean.iter().zip(&b.mean)).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max))
}

/// The top `k` classes of a probability vector, highest first (ties: lower class first).
pub fn top_k(probs: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    idx.into_iter().take(k).map(|i| (i, probs[i])).collect()
}
