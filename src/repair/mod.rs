//! Repairing a compressed model without touching its weights: the spec's `repair` section.
//!
//! - [`prompts`]: Inference-time Dynamic Prompting (arXiv 2310.00867, methods.md §3): a pool of
//!   soft prompts trained on the compressed model (frozen) over a labelled calibration split, one
//!   chosen per input; against the single best fixed prompt.
//! - Decoding calibration (methods.md §4.5.3) and temperature scaling (Guo et al. 2017) of every
//!   compressed copy: [`crate::eval::hemorrhage::fit_temperature`] on gold labels and
//!   [`crate::eval::hemorrhage::fit_temperature_kl`] on the original model's outputs; the engine
//!   puts the numbers in the hemorrhage rows ([`crate::experiment::Hemorrhage::calibration`]).
//!
//! The engine side (which copies, which splits, timing) is [`crate::experiment::repair`].

pub mod prompts;

use crate::error::{Error, Result};
pub use prompts::Selector;

/// The spec's `repair` section: `{"prompts": 4, "tokens": 8, "epochs": 2, "lr": 0.01}` (every field
/// optional). Off when absent. [defaults: methods.md §3.2/§3.4, except `tokens` (n = 8 instead of
/// 16: the bundled inputs are ~25 tokens long) and `calibration` (ours)]
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepairSpec {
    /// m, prompts in the pool (0: no prompts, decoding calibration only).
    #[serde(default = "default_prompts")]
    pub prompts: usize,
    /// n, vectors per prompt.
    #[serde(default = "default_tokens")]
    pub tokens: usize,
    /// Passes over the calibration split.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Adam learning rate of the prompt vectors.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Calibration examples per optimiser step.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Calibration examples drawn (seeded) from the task's training split; fewer if it has fewer.
    #[serde(default = "default_calibration")]
    pub calibration: usize,
    #[serde(default)]
    pub selector: Selector,
    /// Also train one prompt of m·n vectors alone (the "single long prompt" baseline of §3.7).
    #[serde(default = "default_true")]
    pub long_prompt: bool,
}

fn default_prompts() -> usize {
    4
}
fn default_tokens() -> usize {
    8
}
fn default_epochs() -> usize {
    2
}
fn default_lr() -> f64 {
    1e-2
}
fn default_batch() -> usize {
    16
}
fn default_calibration() -> usize {
    512
}
fn default_true() -> bool {
    true
}

/// Upper bounds a spec may ask for (a browser tab must stay responsive).
pub const MAX_PROMPTS: usize = 32;
pub const MAX_TOKENS: usize = 64;
pub const MAX_EPOCHS: usize = 50;
pub const MAX_CALIBRATION: usize = 20_000;

impl Default for RepairSpec {
    fn default() -> Self {
        RepairSpec {
            prompts: default_prompts(),
            tokens: default_tokens(),
            epochs: default_epochs(),
            lr: default_lr(),
            batch: default_batch(),
            calibration: default_calibration(),
            selector: Selector::default(),
            long_prompt: true,
        }
    }
}

impl RepairSpec {
    /// Refuses values out of range, naming the field (relative to `repair`).
    pub fn check(&self) -> Result<()> {
        let bad = |f: &str, msg: String| Err(Error::Invalid(format!("repair.{f}: {msg}")));
        if self.prompts > MAX_PROMPTS {
            return bad("prompts", format!("{} prompts; use 0 (calibration only) to {MAX_PROMPTS}", self.prompts));
        }
        if !(1..=MAX_TOKENS).contains(&self.tokens) {
            return bad("tokens", format!("{} vectors per prompt; use 1 to {MAX_TOKENS}", self.tokens));
        }
        if self.long_prompt && self.prompts * self.tokens > MAX_TOKENS * 4 {
            return bad("tokens", format!("the long prompt would have {} vectors; at most {}", self.prompts * self.tokens, MAX_TOKENS * 4));
        }
        if !(1..=MAX_EPOCHS).contains(&self.epochs) {
            return bad("epochs", format!("{}; use 1 to {MAX_EPOCHS}", self.epochs));
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= 1.0) {
            return bad("lr", format!("{}; use a learning rate in (0, 1]", self.lr));
        }
        if !(1..=crate::experiment::spec::MAX_BATCH).contains(&self.batch) {
            return bad("batch", format!("{}; use 1 to {}", self.batch, crate::experiment::spec::MAX_BATCH));
        }
        if !(1..=MAX_CALIBRATION).contains(&self.calibration) {
            return bad("calibration", format!("{} examples; use 1 to {MAX_CALIBRATION}", self.calibration));
        }
        Ok(())
    }
}
