//! Repairing a compressed model without touching its weights: the spec's `repair` section.
//!
//! - [`prompts`]: Inference-time Dynamic Prompting (arXiv 2310.00867, methods.md §3): a pool of
//!   soft prompts trained on the compressed model (frozen) over a labelled calibration split, one
//!   chosen per input; against the single best fixed prompt.
//! - [`text_prompts`]: the same choice among hard text prompts read through the LM head (a pool of
//!   templates per task with answer words; nothing trained; the most confident template per input).
//! - Decoding calibration (methods.md §4.5.3) and temperature scaling (Guo et al. 2017) of every
//!   compressed copy: [`crate::eval::hemorrhage::fit_temperature`] on gold labels and
//!   [`crate::eval::hemorrhage::fit_temperature_kl`] on the original model's outputs; the engine
//!   puts the numbers in the hemorrhage rows ([`crate::experiment::Hemorrhage::calibration`]).
//!
//! The engine side (which copies, which splits, timing) is [`crate::experiment::repair`].

pub mod prompts;
pub mod text_prompts;

use crate::error::{Error, Result};
pub use prompts::Selector;

/// The spec's `repair` section: `{"prompts": 4, "tokens": 8, "epochs": 2, "lr": 0.01}` (every field
/// optional). Off when absent. [defaults: methods.md §3.2/§3.4, except `tokens` (n = 8 instead of
/// 16: the bundled inputs are ~25 tokens long); `calibration`: 128 examples (§4.6) of the bundled set (ours)]
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
    /// At most this many optimiser steps (training stops inside an epoch); all of `epochs` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    /// Adam learning rate of the prompt vectors.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Calibration examples per optimiser step.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Calibration examples drawn (seeded) from `calibration_split`; fewer if a data split has fewer (the bundled
    /// set: at most its 128 rows per task).
    #[serde(default = "default_calibration")]
    pub calibration: usize,
    /// Where the calibration examples come from (see [`CalibrationSplit`]).
    #[serde(default)]
    pub calibration_split: CalibrationSplit,
    /// Which of the spec's `compressions` to repair, by index (`[0, 2]`); all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compressions: Option<Vec<usize>>,
    #[serde(default)]
    pub selector: Selector,
    /// Also train one prompt of m·n vectors alone (the "single long prompt" baseline of §3.7; soft pools only).
    #[serde(default = "default_true")]
    pub long_prompt: bool,
    /// `soft` (trained prompt vectors before the input, read by the task's head) or `text` (the first m of the task's
    /// hard text prompts read through the LM head: [`text_prompts`]; nothing trained, chosen by confidence).
    #[serde(default)]
    pub pool: PromptPool,
}

/// What the pool holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptPool {
    /// Soft prompts trained on the compressed copy ([`prompts`]), classified by the task's head.
    #[default]
    Soft,
    /// Hard text prompts with answer words, classified through the LM head ([`text_prompts`]): what a language-model
    /// checkpoint without a classification head can use.
    Text,
}

impl PromptPool {
    pub fn is_soft(&self) -> bool {
        *self == PromptPool::Soft
    }
}

/// Where the calibration examples come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalibrationSplit {
    /// The task's rows of the bundled calibration set ([`crate::data::calibration`]: 128 GLUE train rows per task,
    /// compiled into the library; MNLI mismatched: MNLI's), as the calibration-based compressions draw them with the
    /// spec's seed. Disjoint from every evaluated split; runs natively and in the page.
    #[default]
    Bundled,
    /// The task's training split (MNLI mismatched: MNLI's), disjoint from every evaluated split. Natively only:
    /// the page does not serve the training data.
    Train,
    /// The task's validation split. When the spec evaluates it, the sample is drawn from its evaluated examples (the
    /// first `limit`) and every repair number on it is measured on the rest (held out); runs in the page.
    Validation,
}

impl CalibrationSplit {
    /// The data split the examples are read from (`None`: the bundled calibration set, compiled in).
    pub fn split(self) -> Option<crate::data::Split> {
        match self {
            CalibrationSplit::Bundled => None,
            CalibrationSplit::Train => Some(crate::data::Split::Train),
            CalibrationSplit::Validation => Some(crate::data::Split::Validation),
        }
    }

    /// The task whose rows hold `task`'s calibration examples (training rows of MNLI mismatched are MNLI's).
    pub fn source(self, task: crate::data::Task) -> crate::data::Task {
        match self {
            CalibrationSplit::Bundled | CalibrationSplit::Train => task.model_task(),
            CalibrationSplit::Validation => task,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CalibrationSplit::Bundled => "bundled",
            CalibrationSplit::Train => "train",
            CalibrationSplit::Validation => "validation",
        }
    }
}

impl std::fmt::Display for CalibrationSplit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Per input, the prompt (index into `per_prompt`, each prompt's class-logit rows in input order) whose softmax has
/// the highest maximum; ties → lowest: the max-confidence choice of §3.3, for soft and text pools alike.
pub fn most_confident(per_prompt: &[Vec<Vec<f32>>]) -> Vec<usize> {
    let n = per_prompt.first().map_or(0, Vec::len);
    (0..n)
        .map(|e| {
            let mut best = (f32::NEG_INFINITY, 0);
            for (i, rows) in per_prompt.iter().enumerate() {
                let conf = crate::eval::softmax(&rows[e]).into_iter().fold(f32::NEG_INFINITY, f32::max);
                if conf > best.0 {
                    best = (conf, i);
                }
            }
            best.1
        })
        .collect()
}

/// The positions (ascending) of a seeded sample of `size` among `len` examples (all of them when
/// `size ≥ len`): the calibration examples of `source` under the spec's `seed`.
pub fn calibration_sample(seed: u64, source: crate::data::Task, split: crate::data::Split, len: usize, size: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..len).collect();
    let mut rng = crate::rng::SplitMix64::new(crate::rng::derive_seed(seed, &format!("repair/calibration/{source}/{split}")));
    let k = size.min(len);
    for i in 0..k {
        let j = i + rng.below((len - i) as u64) as usize;
        idx.swap(i, j);
    }
    let mut pick = idx[..k].to_vec();
    pick.sort_unstable();
    pick
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
    crate::data::calibration::DEFAULT_SIZE
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
            steps: None,
            lr: default_lr(),
            batch: default_batch(),
            calibration: default_calibration(),
            calibration_split: CalibrationSplit::default(),
            compressions: None,
            selector: Selector::default(),
            long_prompt: true,
            pool: PromptPool::Soft,
        }
    }
}

impl RepairSpec {
    /// Refuses values out of range, naming the field (`repair.lr: …`).
    pub fn check(&self) -> Result<()> {
        self.check_field().map_err(|(f, msg)| Error::Invalid(format!("repair.{f}: {msg}")))
    }

    /// [`RepairSpec::check`] as (field relative to `repair`, message), for the spec's own errors.
    pub fn check_field(&self) -> std::result::Result<(), (&'static str, String)> {
        let bad = |f: &'static str, msg: String| Err((f, msg));
        if self.prompts > MAX_PROMPTS {
            return bad("prompts", format!("{} prompts; use 0 (calibration only) to {MAX_PROMPTS}", self.prompts));
        }
        if self.pool == PromptPool::Text && self.prompts > text_prompts::POOL_SIZE {
            return bad("prompts", format!("{} text prompts; each task's text pool has {}", self.prompts, text_prompts::POOL_SIZE));
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
        if self.steps == Some(0) {
            return bad("steps", "0; use a positive number of optimiser steps (or leave it out for all the epochs)".into());
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
        let per_task = crate::data::calibration::BUNDLE_PER_TASK;
        if self.calibration_split == CalibrationSplit::Bundled && self.calibration > per_task {
            return bad("calibration", format!("{} examples; the bundled calibration set has {per_task} per task (use calibration_split train, natively, for more)", self.calibration));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_confident_picks_the_sharpest_distribution_with_ties_to_the_lowest() {
        let a = vec![vec![0.0, 0.1], vec![3.0, 0.0], vec![1.0, 0.0]];
        let b = vec![vec![2.0, 0.0], vec![0.0, 1.0], vec![0.0, 1.0]];
        assert_eq!(most_confident(&[a, b]), vec![1, 0, 0]);
        assert!(most_confident(&[]).is_empty());
    }
}
