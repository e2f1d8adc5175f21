//! Compression primitives: pure functions from an f32 weight matrix to its compressed form (and
//! back), with the error bounds they guarantee. Nothing here knows about models or backends; the
//! model code keeps running over a different `Linear` (architecture.md, example 9).
//!
//! Every weight is a row-major `[out, in]` f32 matrix in PyTorch's `Linear` layout (row = output
//! channel; `[N, K]` in the backend's alphabet). Bad input (a wrong length, a zero dimension, a
//! non-finite weight, an option outside its range) is refused with [`Error::Invalid`]; nothing here
//! panics on user data.
//!
//! - [`quant`]: int8 symmetric per output channel (or per input group), int4 symmetric per input
//!   group of 32/64/128 packed 8 per u32, ternary absmean (BitNet b1.58, Ma et al. 2024, arXiv
//!   2402.17764) packed in the BitLinear format of [`crate::backend::ternary`], and dynamic
//!   per-token int8 activation scales (specs/methods.md §4.5, "dynamic quantisation scaling").
//! - [`prune`]: magnitude (per tensor), Wanda `|W_ij|·‖X_j‖₂` per output row (Sun et al. 2023,
//!   arXiv 2306.11695), N:M semi-structured (2:4 by default), structured output channels by L2
//!   norm and attention-head scores; masks are exact counts with deterministic tie-breaking.
//! - [`lowrank`]: truncated SVD in f64 (SFSD's weight-space baseline, specs/methods.md §2.2), the
//!   SFSD feature-space decomposition from the covariance of the layer's outputs (§2.3, Surgical
//!   Feature-Space Decomposition, arXiv 2405.13039) and the rank-budget rule `κ = ⌊in·out/(in+out)⌋`,
//!   `r = ⌊κ·ρ⌋`. Linear algebra by `faer` (pure Rust, builds for wasm32).
//! - [`calibrate`]: the statistics those need from calibration data (input column norms, output covariance,
//!   summed loss gradients), read off the differentiable twin running the bundled calibration set.
//! - [`apply`]: a recipe applied to a whole checkpoint, packed (codes and scales, low-rank factors, which models run
//!   as stored) or in the f32 reference form (their slow twin), with its record.

pub mod apply;
pub mod calibrate;
pub mod level;
pub mod lowrank;
pub mod prune;
pub mod quant;
pub mod surgical;

use crate::error::{Error, Result};

/// Storage of a compressed weight, scales included.
pub trait Footprint {
    /// Bytes of the stored form, everything included: codes as packed (with their padding) and
    /// scales, or both low-rank factors and the bias.
    fn bytes(&self) -> usize;
    /// Number of weights represented.
    fn weights(&self) -> usize;
    /// `8 · bytes / weights`: 32 for dense f32, 8.25 for int8 per channel at in = 128.
    fn bits_per_weight(&self) -> f64 {
        8.0 * self.bytes() as f64 / self.weights().max(1) as f64
    }
}

/// Check a row-major `[out, in]` matrix: both dimensions non-zero, the right length, every value
/// finite (a NaN or inf would poison a scale, a sort or an SVD without an error).
pub(crate) fn check_matrix(op: &str, w: &[f32], out: usize, inp: usize) -> Result<()> {
    if out == 0 || inp == 0 {
        return Err(Error::Invalid(format!("{op}: matrix [{out}, {inp}] has a zero dimension")));
    }
    if Some(w.len()) != out.checked_mul(inp) {
        return Err(Error::Invalid(format!("{op}: {} values for a [{out}, {inp}] matrix (need {})", w.len(), out.saturating_mul(inp))));
    }
    if let Some(i) = w.iter().position(|x| !x.is_finite()) {
        return Err(Error::Invalid(format!("{op}: non-finite value {} at [{}, {}]", w[i], i / inp, i % inp)));
    }
    Ok(())
}

/// Check a fraction (sparsity, rank budget) lies in [0, 1].
pub(crate) fn check_fraction(op: &str, name: &str, s: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&s) {
        return Err(Error::Invalid(format!("{op}: {name} must be in [0, 1], got {s}")));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod test_util {
    use crate::rng::SplitMix64;

    /// A seeded `[out, in]` matrix uniform in [-1, 1).
    pub fn matrix(seed: u64, out: usize, inp: usize) -> Vec<f32> {
        SplitMix64::new(seed).vec_f32(out * inp, -1.0, 1.0)
    }

    /// A tiny random checkpoint of `arch` (H 16, 2 layers, I 32, 2 heads; an SST-2 `score.weight`) with the bundled
    /// tokenizer, so the calibration text tokenizes.
    pub fn tiny_checkpoint(arch: crate::models::config::Arch, seed: u64) -> crate::io::Checkpoint {
        use crate::models::config::Arch;
        use crate::models::init::{random_checkpoint, Dims};
        let heads = if arch == Arch::HgrnBit { 1 } else { 2 };
        let dims = Dims { vocab: 8192, hidden: 16, layers: 2, intermediate: 32, heads, kv_heads: heads, ..Dims::default_for(arch) };
        let mut ck = random_checkpoint(&dims, seed).unwrap();
        ck.tokenizer_json = Some(include_bytes!("../../assets/tokenizer/tokenizer.json").to_vec());
        ck
    }
}
