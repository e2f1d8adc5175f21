//! Trilemma: an in-browser laboratory for the trade-off between efficiency, accuracy and
//! adversarial robustness of small language models.
//!
//! Crate map (see README "Architecture"):
//! - [`error`]: the one error type; every bad input ends there.
//! - [`backend`]: the op set (trait [`backend::Backend`]), the CPU reference on candle-core and
//!   the wgpu/WGSL GPU backend whose kernels live in `shaders/`.
//! - [`io`]: checkpoint folders (config.json, safetensors, tokenizer.json) -> named tensors.
//! - [`nn`]: layers shared by the models (dense and BitLinear linears, RoPE).
//! - [`models`]: Transformer++, GLA and HGRN-bit, one file each, with the LM and classifier heads.
//! - [`compress`]: pure compression primitives on `[out, in]` weights (int8/int4/ternary quantisation,
//!   magnitude/Wanda/N:M/structured pruning, SVD and SFSD feature-space low rank).
//! - [`data`]: GLUE / AdvGLUE task definitions, bundled splits and their JSONL parser.
//! - [`attacks`]: adversarial text transformations (TextBugger bugs, StressTest / CheckList distractors), random baseline.
//! - [`eval`]: metrics (accuracy, F1, MCC, GLUE and AdvGLUE scores, bootstrap intervals).
//! - [`experiment`]: the experiment spec and the engine that turns it into results.
//! - [`repair`]: repairing compressed models: soft-prompt pools chosen per input (IDP) and
//!   temperature scaling / decoding calibration.
//! - [`report`]: results -> standalone HTML (tables, plotters SVG charts) and CSV.
//! - [`text`]: the tokenizer (the `tokenizers` crate) and the bundled default tokenizer.
//! - [`autodiff`]: the batched differentiable twin of the models (candle-core autograd), native and wasm.
//! - `train` (native only): `trilemma train`, the bundled models trained from scratch.
//! - [`demo`]: the end-to-end check the page runs on both backends.
//! - `web` (wasm32 only): the whole JavaScript-facing surface.

pub mod attacks;
pub mod autodiff;
pub mod backend;
pub mod compress;
pub mod data;
pub mod demo;
pub mod error;
pub mod eval;
pub mod experiment;
pub mod io;
pub mod models;
pub mod nn;
pub mod repair;
pub mod report;
pub mod rng;
pub mod text;
/// Native only: training needs the filesystem and candle autograd, not the page.
#[cfg(not(target_arch = "wasm32"))]
pub mod train;

#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};

/// The crate version, recorded in every result's provenance.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit of the build (`git describe --always --dirty`; `unknown` without git).
pub const GIT_COMMIT: &str = env!("TRILEMMA_GIT_COMMIT");
