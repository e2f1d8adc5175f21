//! The evaluation engine: an experiment spec in, results with provenance out. The CLI
//! (`trilemma run`) and the page load models and data their own way (files vs fetch), then call
//! the same two functions: [`run_units`] (every model × task × split, batch by batch, with
//! progress and cancellation) and [`assemble`] (cross-unit numbers: the official AdvGLUE score,
//! per-level summaries, robustness gaps).
//!
//! Determinism: results depend only on the spec, the model and data bytes and the backend's
//! arithmetic; every random choice (bootstrap resamples) derives its seed from `spec.seed`
//! ([`crate::rng::derive_seed`]). Everything measured (times, memory) sits under a `timing` key,
//! so two runs of one spec give byte-identical JSON once `timing` is removed (tested).

pub mod attack;
pub mod claims;
pub mod curves;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;
pub mod repair;
pub mod share;
pub mod spec;
pub mod surgical;

pub use spec::{Spec, Unit, BUNDLED_MODELS};

use crate::backend::count::{CountBackend, OpCounts};
use crate::backend::cpu::CpuBackend;
use crate::backend::gpu::{GpuBackend, GpuContext};
use crate::backend::{Backend, BackendChoice, BackendInfo};
use std::sync::Arc;
use crate::data::{AttackLevel, Example, GlueMetric, Split, Task};
use crate::error::{Error, Result};
use crate::eval::{self, bootstrap_ci, glue_score};
use crate::io::Checkpoint;
use crate::models::Model;
use crate::text::TextTokenizer;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::future::Future;

/// The results format; bumped when a field changes meaning.
pub const FORMAT: &str = "trilemma-results/1";

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A file that went into a run.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FileRecord {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

impl FileRecord {
    pub fn of(path: &str, bytes: &[u8]) -> Self {
        Self { path: path.into(), bytes: bytes.len() as u64, sha256: sha256_hex(bytes) }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelRecord {
    /// The name the spec used.
    pub name: String,
    pub architecture: String,
    /// Every file of the folder, with its hash.
    pub files: Vec<FileRecord>,
    /// Bytes of the weights as held for inference (packed ternary weights at 2 bits each).
    pub weight_bytes: u64,
    /// For a compressed copy: its original's name and what the compression did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compressed_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<crate::compress::apply::CompressionRecord>,
    /// Wall time of the compression (not part of what must reproduce: see [`without_timing`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<ModelTiming>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelTiming {
    /// Seconds `compress::apply` took on this machine (in the browser: in the worker).
    pub compress_seconds: f64,
}

/// A model ready to run: on the backend, on the operation counter, with its tokenizer.
pub struct LoadedModel<B: Backend> {
    pub record: ModelRecord,
    pub model: Model<B>,
    pub tokenizer: TextTokenizer,
    /// Whole-word neighbours in the input embeddings (the attacks' Sub-W and synonym source).
    pub neighbours: crate::attacks::neighbours::EmbeddingNeighbours,
    counter: Model<CountBackend>,
    /// For a compressed copy that the spec's `repair` section trains soft prompts for: its reference form (the
    /// compressed weights as f32, which the prompts' differentiable twin reads); `None` otherwise.
    pub checkpoint: Option<Checkpoint>,
}

impl<B: Backend> LoadedModel<B> {
    /// Loads a model folder given as `file name -> bytes` (`config.json`, `model.safetensors`,
    /// `tokenizer.json`, …), hashing every file.
    pub fn load(be: &B, name: &str, files: &BTreeMap<String, Vec<u8>>) -> Result<Self> {
        Self::from_checkpoint(be, name, Checkpoint::from_files(files)?, files)
    }

    /// A compressed copy of the folder `files` (packed form, run as stored: [`crate::compress::apply`]), named `name`; `cal` is
    /// the calibration data of a calibration-based recipe. `now` is a clock in milliseconds: the compression's wall
    /// time goes in the record's `timing`. The surgical scan evaluates on `scan_data` (the run's first task and its
    /// first `limit` validation examples). `keep`: keep its checkpoint in [`LoadedModel::checkpoint`].
    #[allow(clippy::too_many_arguments)]
    pub async fn load_compressed(
        be: &B,
        name: &str,
        base: &str,
        files: &BTreeMap<String, Vec<u8>>,
        recipe: &crate::compress::apply::Recipe,
        scan_data: Option<(Task, &[Example])>,
        cal: &crate::compress::apply::Calibration,
        now: &dyn Fn() -> f64,
        keep: bool,
    ) -> Result<Self> {
        use crate::compress::apply::{apply_with, apply_with_form, Form, Recipe};
        let original = Checkpoint::from_files(files)?;
        let t0 = now();
        // The soft prompts' differentiable twin reads f32 weights: `kept` is the reference form of the compression (the
        // packed form's slow twin), made only when asked for.
        let (ck, kept, record, seconds) = match (recipe, scan_data) {
            (Recipe::Surgical { .. }, Some((task, ex))) => {
                let (packed, reference, record) = surgical::compress_both(&original, recipe, task, ex, cal).await?;
                (packed, keep.then_some(reference), record, (now() - t0) / 1000.0)
            }
            (Recipe::Surgical { .. }, None) => {
                return Err(Error::Invalid("the surgical scan needs the validation split of the run's first task among the spec's splits".into()))
            }
            _ => {
                let (packed, record) = apply_with(&original, recipe, cal)?;
                let seconds = (now() - t0) / 1000.0;
                let kept = if keep { Some(apply_with_form(&original, recipe, cal, Form::Reference)?.0) } else { None };
                (packed, kept, record, seconds)
            }
        };
        let mut m = Self::from_checkpoint(be, name, ck, files)?;
        m.checkpoint = kept;
        m.record.compressed_from = Some(base.to_string());
        m.record.compression = Some(record);
        m.record.timing = Some(ModelTiming { compress_seconds: seconds });
        Ok(m)
    }

    /// How the spec reads this model's class logits on `task` ([`eval::Readout`]), refused with the model's name.
    pub fn readout(&self, spec: &Spec, task: Task) -> Result<eval::Readout> {
        eval::Readout::resolve(&self.model, &self.tokenizer, task, spec.readout, spec.template).map_err(|e| match e {
            Error::Invalid(m) => Error::Invalid(format!("model {}, {task}: {m}", self.record.name)),
            other => other,
        })
    }

    fn from_checkpoint(be: &B, name: &str, ck: Checkpoint, files: &BTreeMap<String, Vec<u8>>) -> Result<Self> {
        let tok = ck.tokenizer_json.clone().ok_or_else(|| Error::Invalid(format!("model {name}: the folder has no tokenizer.json")))?;
        let tokenizer = TextTokenizer::from_json_bytes(&tok)?;
        let weight_bytes = ck.weight_bytes().0 as u64;
        let neighbours = crate::attacks::neighbours::EmbeddingNeighbours::from_checkpoint(&ck, &tokenizer)?;
        let counter = Model::load(&CountBackend::new(), ck.clone())?;
        let model = Model::load(be, ck)?;
        if tokenizer.vocab_size() > model.common.vocab {
            return Err(Error::Invalid(format!(
                "model {name}: tokenizer.json has {} tokens but config.json's vocab_size is {}",
                tokenizer.vocab_size(),
                model.common.vocab
            )));
        }
        let files = files.iter().map(|(f, b)| FileRecord::of(f, b)).collect();
        let record = ModelRecord {
            name: name.into(),
            architecture: model.common.arch.display_name().into(),
            files,
            weight_bytes,
            compressed_from: None,
            compression: None,
            timing: None,
        };
        Ok(Self { record, model, tokenizer, neighbours, counter, checkpoint: None })
    }
}

/// One bundled split, as read.
pub struct Dataset {
    pub task: Task,
    pub split: Split,
    pub examples: Vec<Example>,
    pub file: FileRecord,
}

impl Dataset {
    /// Parses and checks a bundled file's bytes (`path` relative to `assets/`).
    pub fn from_bytes(task: Task, split: Split, bytes: &[u8]) -> Result<Self> {
        let examples = crate::data::parse_bundled(task, split, bytes)?;
        Ok(Self { task, split, examples, file: FileRecord::of(crate::data::bundled_path(task, split)?, bytes) })
    }
}

/// Where a run stands, after every batch.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Progress {
    /// 0-based index of the running unit, and how many there are.
    pub unit: usize,
    pub units: usize,
    pub model: String,
    pub task: Task,
    pub split: Split,
    /// The attack recipe, for an attack unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attack: Option<String>,
    /// Examples done in this unit, of `total`.
    pub done: usize,
    pub total: usize,
    /// Fraction of the whole run, by examples (an attacked example counts [`ATTACK_EXAMPLE_WEIGHT`]).
    pub fraction: f64,
}

/// How many evaluated examples one attacked example counts as in [`Progress::fraction`]: roughly the queries an
/// attack spends per example on the bundled models [measured on SST-2 with the default budgets: 2 for the random
/// baselines, 4 to 47 for the sentence-level, TextBugger and combined recipes, 28 to 94 for TextFooler].
pub const ATTACK_EXAMPLE_WEIGHT: usize = 25;

/// What the host provides to a run.
#[allow(async_fn_in_trait)]
pub trait Hooks {
    /// Called after every batch; return `false` to cancel (the units finished so far are kept).
    fn progress(&mut self, p: &Progress) -> bool;
    /// Milliseconds from an arbitrary origin (`performance.now()` in the page).
    fn now_ms(&self) -> f64;
    /// Gives the host a turn between batches (the page: a macrotask, so a cancel message can
    /// arrive); natively nothing.
    fn pause(&self) -> impl Future<Output = ()>;
    /// Peak host memory so far: the wasm heap in the page, resident bytes natively.
    fn memory(&self) -> Option<u64>;
    /// Units that other CPU workers run for this run (the page's worker pool, [`run_delegated`]):
    /// indices into [`Spec::units`] for evaluations, and `Spec::units().len() + i` for attack unit
    /// `i` ([`attack::attack_units`]). A CPU run leaves them out of its own passes. None by default.
    fn delegated(&self) -> Vec<usize> {
        Vec::new()
    }
    /// The delegated units' results, awaited once the run's own evaluations (with a repair
    /// section) or its own attacks are done. Units missing from the answer (a worker that failed
    /// or was cancelled) are then run here, so the results are complete and the same as one
    /// worker's either way.
    fn delegated_results(&mut self) -> impl Future<Output = Delegated> {
        async { Delegated::default() }
    }
}

/// Hooks for a run with no host to report to: never cancels, no clock (timings read 0), no memory
/// reading, no helper workers. For tests and for a worker's share of a run that reports nothing.
pub struct Silent;

impl Hooks for Silent {
    fn progress(&mut self, _: &Progress) -> bool {
        true
    }
    fn now_ms(&self) -> f64 {
        0.0
    }
    async fn pause(&self) {}
    fn memory(&self) -> Option<u64> {
        None
    }
}

/// A number with its seeded bootstrap 95% interval.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Estimate {
    pub value: f64,
    pub ci95: [f64; 2],
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Metric {
    /// `accuracy`, `f1`, `matthews` or `score` (the task's GLUE score).
    pub name: String,
    #[serde(flatten)]
    pub estimate: Estimate,
}

/// Accuracy on a subset (an attack level or method).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Group {
    pub name: String,
    pub n: usize,
    pub accuracy: Estimate,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Prediction {
    /// The example's `idx` in its file.
    pub idx: u64,
    pub label: u32,
    pub prediction: u32,
    /// Softmax of the class logits.
    pub probs: Vec<f32>,
    pub tokens: usize,
    /// AdvGLUE rows: the attack level and method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<AttackLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// Operations per forward pass, averaged over the unit's examples at their own lengths
/// ([`crate::backend::count`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OpsPerExample {
    pub mul: f64,
    pub add: f64,
    pub other: f64,
    pub matmul_mul: f64,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Efficiency {
    pub weight_bytes: u64,
    pub mean_tokens: f64,
    pub ops_per_example: OpsPerExample,
}

/// Everything measured in a unit (excluded from determinism comparisons).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UnitTiming {
    pub seconds: f64,
    pub examples_per_second: f64,
    /// Per example, its batch's time divided by the batch size (with `batch: 1`, the latency).
    pub latency_ms_p50: f64,
    pub latency_ms_p95: f64,
    /// wasm heap (page) or peak resident memory (native) after the unit, bytes.
    pub peak_memory_bytes: Option<u64>,
    /// Peak bytes of GPU buffers (when the GPU ran).
    pub peak_gpu_bytes: Option<u64>,
}

/// One model on one split of one task.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UnitResult {
    pub model: String,
    pub architecture: String,
    pub task: Task,
    pub split: Split,
    /// The backend that ran it (`cpu` or `webgpu`; a GPU failure mid-run leaves earlier units
    /// on the GPU and later ones on the CPU).
    pub backend: String,
    /// How the class logits were read: `head sst2`, or `prompt 0: "…" → negative | positive` (zero-shot through
    /// the LM head, [`eval::Readout`]).
    #[serde(default)]
    pub readout: String,
    pub n: usize,
    pub metrics: Vec<Metric>,
    /// AdvGLUE splits: accuracy per attack level (word / sentence / human) and per method.
    pub by_level: Vec<Group>,
    pub by_method: Vec<Group>,
    pub efficiency: Efficiency,
    pub timing: UnitTiming,
    pub predictions: Vec<Prediction>,
}

impl UnitResult {
    pub fn metric(&self, name: &str) -> Option<&Estimate> {
        self.metrics.iter().find(|m| m.name == name).map(|m| &m.estimate)
    }
}

/// Where the numbers came from.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Provenance {
    pub crate_version: String,
    /// `git describe`-style commit of the build (`unknown` outside a git checkout).
    pub git_commit: String,
    /// `native <arch>-<os>` or `wasm32 (browser)`.
    pub target: String,
    pub backend_choice: BackendChoice,
    /// The backend and adapter that ran.
    pub backend: BackendInfo,
    /// Why the CPU path ran instead of the chosen GPU, when it did.
    pub fallback: Option<String>,
    pub seed: u64,
    pub bootstrap_resamples: usize,
    pub models: Vec<ModelRecord>,
    pub data: Vec<FileRecord>,
}

impl Provenance {
    pub fn new<B: Backend>(spec: &Spec, be: &B, fallback: Option<String>, models: &[LoadedModel<B>], data: &[Dataset]) -> Self {
        let target = if cfg!(target_arch = "wasm32") {
            "wasm32 (browser)".to_string()
        } else {
            format!("native {}-{}", std::env::consts::ARCH, std::env::consts::OS)
        };
        let mut files: Vec<FileRecord> = Vec::new();
        for d in data {
            if !files.contains(&d.file) {
                files.push(d.file.clone());
            }
        }
        Self {
            crate_version: crate::VERSION.into(),
            git_commit: crate::GIT_COMMIT.into(),
            target,
            backend_choice: spec.backend,
            backend: be.info(),
            fallback,
            seed: spec.seed,
            bootstrap_resamples: spec.bootstrap,
            models: models.iter().map(|m| m.record.clone()).collect(),
            data: files,
        }
    }
}

/// AdvGLUE per attack level across tasks (methods.md §5.5).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LevelSummary {
    pub level: AttackLevel,
    /// Mean of the per-task accuracies over the tasks that have this level.
    pub macro_accuracy: Estimate,
    /// All examples of the level pooled.
    pub pooled_accuracy: Estimate,
    pub n: usize,
    pub tasks: usize,
}

/// A model's AdvGLUE summary.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdvGlueSummary {
    pub model: String,
    /// The official score (`evaluate.py`): present when all six AdvGLUE dev tasks ran in full.
    pub official_score: Option<eval::AdvGlueScore>,
    /// Its bootstrap 95% interval (each task file resampled on its own).
    pub official_ci95: Option<[f64; 2]>,
    /// Why the official score is absent.
    pub official_missing: Option<String>,
    pub levels: Vec<LevelSummary>,
}

/// Clean vs adversarial on the same examples (the `advglue-original` and `advglue` units), and
/// GLUE dev vs AdvGLUE (methods.md §5.5's robustness gap), for one model and task.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Robustness {
    pub model: String,
    pub task: Task,
    /// Paired: examples that have a clean original.
    pub paired_n: Option<usize>,
    pub clean_accuracy: Option<Estimate>,
    pub adversarial_accuracy: Option<Estimate>,
    /// Clean − adversarial accuracy on the same examples (paired resamples).
    pub accuracy_drop: Option<Estimate>,
    /// Right on the original, wrong on its adversarial version, and the reverse.
    pub broken: Option<usize>,
    pub repaired: Option<usize>,
    /// GLUE dev accuracy − AdvGLUE accuracy (when both ran; the two resampled independently).
    pub dev_minus_advglue: Option<Estimate>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Status {
    /// The spec's (task, split) combinations that are not bundled, so not run.
    pub skipped: Vec<String>,
    pub complete: bool,
    pub cancelled: bool,
    pub units_done: usize,
    pub units_total: usize,
    #[serde(default)]
    pub attacks_done: usize,
    #[serde(default)]
    pub attacks_total: usize,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunTiming {
    pub seconds: f64,
}

/// The results of one spec.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Results {
    pub format: String,
    pub spec: Spec,
    pub provenance: Provenance,
    pub status: Status,
    pub units: Vec<UnitResult>,
    pub advglue: Vec<AdvGlueSummary>,
    pub robustness: Vec<Robustness>,
    /// The spec's attacks, one per model × clean (task, split) × attack.
    #[serde(default)]
    pub attacks: Vec<attack::AttackResult>,
    /// Transfer of successful adversarial texts between the models (two or more models attacked).
    #[serde(default)]
    pub transfer: Vec<attack::TransferMatrix>,
    /// Every compressed copy against its original, per (task, split).
    #[serde(default)]
    pub hemorrhage: Vec<Hemorrhage>,
    /// The hemorrhage rows as curves against compression strength, per family, with thresholds.
    #[serde(default)]
    pub curves: Vec<curves::HemorrhageCurve>,
    /// The spec's `repair` section: a soft-prompt pool per compressed copy × task (IDP).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repair: Vec<repair::RepairResult>,
    /// Its decoding calibration per compressed copy × task, on the calibration split.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calibration: Vec<repair::CalibrationFit>,
    pub timing: RunTiming,
}

/// A compressed copy against its original on one (task, split): methods.md §4.4's hemorrhage numbers.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Hemorrhage {
    pub model: String,
    pub base: String,
    pub task: Task,
    pub split: Split,
    pub n: usize,
    pub base_accuracy: f64,
    pub accuracy: f64,
    /// Original − compressed accuracy, examples resampled as pairs.
    pub accuracy_drop: Estimate,
    /// Mean KL(original ‖ compressed) of the class distributions, nats.
    pub kl: f64,
    /// Share of examples with the same predicted label.
    pub agreement: f64,
    /// Right before, wrong after; and the reverse.
    pub broken: usize,
    pub repaired: usize,
    /// Perplexity through the LM head on the first [`PERPLEXITY_TEXTS`] texts of the split (first segments),
    /// original and compressed, and their ratio (methods.md §4.4); absent when a model has no LM head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perplexity_base: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perplexity: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perplexity_ratio: Option<f64>,
    /// Temperature scaling and decoding calibration fitted on the calibration split, applied to this
    /// split (with the spec's `repair` section).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<repair::HemorrhageCalibration>,
}

/// Texts per split whose perplexity the hemorrhage rows report [default: ours; a quick check, not a corpus].
pub const PERPLEXITY_TEXTS: usize = 32;

/// Perplexity of one model on one split's first texts.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitPerplexity {
    pub model: String,
    pub task: Task,
    pub split: Split,
    pub perplexity: f64,
}

/// Perplexity through the LM head over the first [`PERPLEXITY_TEXTS`] first segments of `examples` (BOS + text, cut
/// to the evaluation's length): exp of the mean next-token negative log-likelihood. `None` without an LM head.
async fn lm_perplexity<B: Backend>(be: &B, lm: &LoadedModel<B>, examples: &[Example]) -> Result<Option<f64>> {
    if lm.model.lm_head.is_none() {
        return Ok(None);
    }
    let (mut nll, mut tokens) = (0f64, 0usize);
    for e in examples.iter().take(PERPLEXITY_TEXTS) {
        let ids = lm.tokenizer.encode(&e.text_a)?.ids;
        let ids = &ids[..ids.len().min(crate::text::MAX_EXAMPLE_TOKENS)];
        if ids.len() < 2 {
            continue;
        }
        let logits = be.read(&lm.model.lm_logits(be, ids)?).await?;
        let v = logits.as_f32("lm logits")?;
        let vocab = v.len() / ids.len();
        for t in 0..ids.len() - 1 {
            let row = &v[t * vocab..(t + 1) * vocab];
            let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
            let lse = m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
            nll += lse - row[ids[t + 1] as usize] as f64;
            tokens += 1;
        }
    }
    eval::hemorrhage::perplexity(nll, tokens).map(Some)
}

/// What a run has finished so far (kept when a GPU failure hands the rest to the CPU).
#[derive(Default)]
pub struct Done {
    pub units: Vec<UnitResult>,
    pub attacks: Vec<attack::AttackResult>,
    pub transfer: Vec<attack::TransferMatrix>,
    pub perplexity: Vec<SplitPerplexity>,
    pub repairs: Vec<repair::RepairResult>,
    pub calibration: Vec<repair::CalibrationFit>,
}

/// What another CPU worker ran for a run ([`run_delegated`], [`Hooks::delegated_results`]).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Delegated {
    pub units: Vec<UnitResult>,
    pub attacks: Vec<attack::AttackResult>,
}

/// Adds the delegated results that are this run's to make (`delegated` indices, see
/// [`Hooks::delegated`]) and not already in `done`.
fn merge_delegated(spec: &Spec, done: &mut Done, delegated: &[usize], got: Delegated) {
    let units = spec.units();
    let attacks = attack::attack_units(spec);
    for r in got.units {
        let i = units.iter().position(|u| u.model == r.model && u.task == r.task && u.split == r.split);
        let fresh = !done.units.iter().any(|d| d.model == r.model && d.task == r.task && d.split == r.split);
        if fresh && i.is_some_and(|i| delegated.contains(&i)) {
            done.units.push(r);
        }
    }
    for r in got.attacks {
        let i = attacks.iter().position(|u| u.model == r.model && u.task == r.task && u.split == r.split && spec.attacks[u.config] == r.attack);
        let fresh = !done.attacks.iter().any(|d| d.model == r.model && d.task == r.task && d.split == r.split && d.attack == r.attack);
        if fresh && i.is_some_and(|i| delegated.contains(&(units.len() + i))) {
            done.attacks.push(r);
        }
    }
}

/// Evaluations and attacks in the spec's order, as one worker makes them.
fn sort_done(spec: &Spec, done: &mut Done) {
    let units = spec.units();
    let attacks = attack::attack_units(spec);
    done.units.sort_by_key(|r| units.iter().position(|u| u.model == r.model && u.task == r.task && u.split == r.split));
    done.attacks.sort_by_key(|r| attacks.iter().position(|u| u.model == r.model && u.task == r.task && u.split == r.split && spec.attacks[u.config] == r.attack));
}

/// The run's work in examples: evaluated ones, and attacked ones times [`ATTACK_EXAMPLE_WEIGHT`].
fn work(spec: &Spec, data: &[Dataset]) -> (usize, usize) {
    let size = |task: Task, split: Split| {
        data.iter().find(|d| d.task == task && d.split == split).map_or(0, |d| spec.limit.map_or(d.examples.len(), |l| l.min(d.examples.len())))
    };
    let eval = spec.units().iter().map(|u| size(u.task, u.split)).sum();
    let attacks = attack::attack_units(spec).iter().map(|u| size(u.task, u.split) * ATTACK_EXAMPLE_WEIGHT).sum();
    (eval, attacks)
}

/// Every evaluation, then every attack, then the transfer matrices; `false` when cancelled.
pub async fn run_all<B: Backend, H: Hooks>(spec: &Spec, be: &B, gpu: Option<&GpuContext>, models: &[LoadedModel<B>], data: &[Dataset], done: &mut Done, hooks: &mut H) -> Result<bool> {
    // Other CPU workers may run some evaluation and attack units (never on the GPU: their results
    // must be the CPU path's). Their results are merged once this worker's attacks are done — or
    // after its evaluations when a repair section needs every evaluation — and whatever they did
    // not deliver then runs here.
    let delegated = if gpu.is_none() { hooks.delegated() } else { Vec::new() };
    let mut waiting = !delegated.is_empty();
    let own = run_units(spec, be, gpu, models, data, &mut done.units, hooks, &delegated).await?;
    if waiting && (!own || spec.repair.is_some()) {
        let got = hooks.delegated_results().await;
        merge_delegated(spec, done, &delegated, got);
        waiting = false;
        let complete = own && run_units(spec, be, gpu, models, data, &mut done.units, hooks, &[]).await?;
        sort_done(spec, done);
        if !complete {
            return Ok(false);
        }
    } else if !own {
        return Ok(false);
    }
    let (eval, attacks) = work(spec, data);
    let fraction = eval as f64 / (eval + attacks).max(1) as f64;
    // This worker's remaining stages; `false` when cancelled (the helpers' finished units are still merged below).
    let own = 'stages: {
        // Perplexity of every compressed copy and its original, for the hemorrhage rows (shown as its own stage: on a
        // software GPU it takes minutes).
        if !spec.compressions.is_empty() {
            done.perplexity.clear();
            for (i, lm) in models.iter().enumerate() {
                for d in data.iter().filter(|d| d.split != Split::Train) {
                    let prog = Progress {
                        unit: i,
                        units: models.len(),
                        model: lm.record.name.clone(),
                        task: d.task,
                        split: d.split,
                        attack: Some("perplexity (LM head)".into()),
                        done: i,
                        total: models.len(),
                        fraction,
                    };
                    if !hooks.progress(&prog) {
                        break 'stages false;
                    }
                    if let Some(p) = lm_perplexity(be, lm, &d.examples).await? {
                        done.perplexity.push(SplitPerplexity { model: lm.record.name.clone(), task: d.task, split: d.split, perplexity: p });
                    }
                }
                hooks.pause().await;
            }
        }
        if !repair::run(spec, be, models, data, done, hooks, fraction).await? {
            break 'stages false;
        }
        let skip: Vec<usize> = if waiting { delegated.iter().filter_map(|&i| i.checked_sub(spec.units().len())).collect() } else { Vec::new() };
        attack::run_attack_units(spec, be, models, data, &mut done.attacks, hooks, eval, eval + attacks, &skip).await?
    };
    if waiting {
        let got = hooks.delegated_results().await;
        merge_delegated(spec, done, &delegated, got);
        let complete = own
            && run_units(spec, be, gpu, models, data, &mut done.units, hooks, &[]).await?
            && attack::run_attack_units(spec, be, models, data, &mut done.attacks, hooks, eval, eval + attacks, &[]).await?;
        sort_done(spec, done);
        if !complete {
            return Ok(false);
        }
    } else if !own {
        return Ok(false);
    }
    done.transfer = attack::transfer_matrices(spec, be, models, &done.attacks).await?;
    Ok(true)
}

impl Results {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("results always serialise")
    }

    /// Reads results JSON (for `trilemma report` and the page), refusing other formats.
    pub fn from_json(bytes: &[u8]) -> Result<Results> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let r: Results = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            Error::Invalid(format!("not a Trilemma results file (at `{path}`: {})", e.into_inner()))
        })?;
        de.end().map_err(|e| Error::Invalid(format!("not a Trilemma results file: {e}")))?;
        if r.format != FORMAT {
            return Err(Error::Invalid(format!("results format {:?}; this version reads {FORMAT:?}", r.format)));
        }
        Ok(r)
    }
}

/// Runs every unit of `spec` not already in `units` (a run resumed after a GPU failure passes
/// the finished ones) and not in `skip` (indices into [`Spec::units`]), appending each finished
/// unit. Returns `false` when cancelled (`units` keeps what finished). A backend error stops the
/// run with the finished units in `units`.
#[allow(clippy::too_many_arguments)]
pub async fn run_units<B: Backend, H: Hooks>(
    spec: &Spec,
    be: &B,
    gpu: Option<&GpuContext>,
    models: &[LoadedModel<B>],
    data: &[Dataset],
    units: &mut Vec<UnitResult>,
    hooks: &mut H,
    skip: &[usize],
) -> Result<bool> {
    let all = spec.units();
    let find_data = |task: Task, split: Split| {
        data.iter()
            .find(|d| d.task == task && d.split == split)
            .ok_or_else(|| Error::Invalid(format!("the run was given no data for {task}/{split}")))
    };
    let size = |u: &Unit| find_data(u.task, u.split).map(|d| spec.limit.map_or(d.examples.len(), |l| l.min(d.examples.len())));
    let (eval_work, attack_work) = work(spec, data);
    let total = eval_work + attack_work;
    let mut before: usize = 0;
    for (ui, unit) in all.iter().enumerate() {
        let n = size(unit)?;
        if skip.contains(&ui) || units.iter().any(|r| r.model == unit.model && r.task == unit.task && r.split == unit.split) {
            before += n;
            continue;
        }
        let lm = models
            .iter()
            .find(|m| m.record.name == unit.model)
            .ok_or_else(|| Error::Invalid(format!("the run was given no model {}", unit.model)))?;
        let ds = find_data(unit.task, unit.split)?;
        let examples = &ds.examples[..n];
        let mut prog = Progress {
            unit: ui,
            units: all.len() + attack::attack_units(spec).len(),
            model: unit.model.clone(),
            task: unit.task,
            split: unit.split,
            attack: None,
            done: 0,
            total: n,
            fraction: before as f64 / total.max(1) as f64,
        };
        if !hooks.progress(&prog) {
            return Ok(false);
        }
        let plan = eval::Plan::with_readout(&lm.tokenizer, lm.readout(spec, unit.task)?, examples, spec.batch)?;
        let mut rows = vec![Vec::new(); n];
        let mut per_example_ms = vec![0f64; n];
        let t_unit = hooks.now_ms();
        for b in 0..plan.batches.len() {
            let t0 = hooks.now_ms();
            let logits = be.read(&plan.forward(be, &lm.model, b)?).await?;
            plan.scatter(b, &logits, &mut rows)?;
            let ms = (hooks.now_ms() - t0) / plan.batches[b].len() as f64;
            for &i in &plan.batches[b] {
                per_example_ms[i] = ms;
            }
            prog.done += plan.batches[b].len();
            prog.fraction = (before + prog.done) as f64 / total.max(1) as f64;
            if !hooks.progress(&prog) {
                return Ok(false);
            }
            hooks.pause().await;
        }
        let seconds = (hooks.now_ms() - t_unit) / 1000.0;
        let mut result = score_unit(spec, lm, unit, &plan.readout, examples, &plan.seqs, &rows, per_example_ms, seconds, (hooks.memory(), gpu.map(|g| g.memory().peak)))?;
        result.backend = be.info().kind;
        units.push(result);
        before += n;
    }
    Ok(true)
}

/// Metrics, groups, efficiency and predictions of one finished unit.
#[allow(clippy::too_many_arguments)]
fn score_unit<B: Backend>(
    spec: &Spec,
    lm: &LoadedModel<B>,
    unit: &Unit,
    readout: &eval::Readout,
    examples: &[Example],
    seqs: &[Vec<u32>],
    rows: &[Vec<f32>],
    mut per_example_ms: Vec<f64>,
    seconds: f64,
    memory: (Option<u64>, Option<u64>),
) -> Result<UnitResult> {
    let task = unit.task;
    let preds = eval::argmax_rows(rows);
    let labels = crate::data::labels(examples);
    let seed = |what: &str| crate::rng::derive_seed(spec.seed, &format!("bootstrap/{}/{}/{}/{what}", unit.model, task, unit.split));
    let ci = |what: &str, f: &dyn Fn(&[u32], &[u32]) -> Result<f64>, p: &[u32], l: &[u32]| -> Result<Estimate> {
        Ok(Estimate { value: f(p, l)?, ci95: bootstrap_ci(p, l, f, spec.bootstrap, seed(what)).map(|(a, b)| [a, b])? })
    };
    let score = glue_score(task, &preds, &labels)?;
    let mut metrics = vec![Metric { name: "accuracy".into(), estimate: ci("accuracy", &eval::accuracy, &preds, &labels)? }];
    match score.metric {
        GlueMetric::Accuracy => {}
        GlueMetric::F1AndAccuracy => {
            metrics.push(Metric { name: "f1".into(), estimate: ci("f1", &eval::f1_binary, &preds, &labels)? });
            let s = move |p: &[u32], l: &[u32]| glue_score(task, p, l).map(|s| s.score);
            metrics.push(Metric { name: "score".into(), estimate: ci("score", &s, &preds, &labels)? });
        }
        GlueMetric::Matthews => {
            metrics.push(Metric { name: "matthews".into(), estimate: ci("matthews", &eval::matthews_corrcoef, &preds, &labels)? });
        }
    }
    // Per level and per method (AdvGLUE rows carry both).
    let group = |key: &dyn Fn(&Example) -> Option<String>, kind: &str| -> Result<Vec<Group>> {
        let mut names: Vec<String> = examples.iter().filter_map(key).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let idx: Vec<usize> = (0..examples.len()).filter(|&i| key(&examples[i]).as_deref() == Some(name.as_str())).collect();
                let p: Vec<u32> = idx.iter().map(|&i| preds[i]).collect();
                let l: Vec<u32> = idx.iter().map(|&i| labels[i]).collect();
                Ok(Group { n: idx.len(), accuracy: ci(&format!("{kind}/{name}"), &eval::accuracy, &p, &l)?, name })
            })
            .collect()
    };
    let mut by_level = group(&|e: &Example| e.level.map(|l| l.name().to_string()), "level")?;
    let order = |n: &str| AttackLevel::ALL.iter().position(|l| l.name() == n);
    by_level.sort_by_key(|g| order(&g.name));
    let by_method = group(&|e: &Example| e.method.clone(), "method")?;
    // Operations per forward pass, counted once per distinct length on the shape-only backend.
    let counter = CountBackend::new();
    let mut per_len: BTreeMap<usize, OpCounts> = BTreeMap::new();
    let mut sum = [0f64; 4];
    for s in seqs {
        let c = match per_len.get(&s.len()) {
            Some(c) => *c,
            None => {
                readout.forward(&counter, &lm.counter, &[s.as_slice()])?;
                let c = counter.take();
                per_len.insert(s.len(), c);
                c
            }
        };
        for (acc, v) in sum.iter_mut().zip([c.mul, c.add, c.other, c.matmul_mul]) {
            *acc += v as f64;
        }
    }
    let n = examples.len().max(1) as f64;
    let efficiency = Efficiency {
        weight_bytes: lm.record.weight_bytes,
        mean_tokens: seqs.iter().map(|s| s.len()).sum::<usize>() as f64 / n,
        ops_per_example: OpsPerExample { mul: sum[0] / n, add: sum[1] / n, other: sum[2] / n, matmul_mul: sum[3] / n },
    };
    per_example_ms.sort_by(f64::total_cmp);
    let timing = UnitTiming {
        seconds,
        examples_per_second: examples.len() as f64 / seconds.max(1e-9),
        latency_ms_p50: eval::metrics::percentile(&per_example_ms, 0.5),
        latency_ms_p95: eval::metrics::percentile(&per_example_ms, 0.95),
        peak_memory_bytes: memory.0,
        peak_gpu_bytes: memory.1,
    };
    let predictions = examples
        .iter()
        .zip(rows)
        .zip(&preds)
        .zip(seqs)
        .map(|(((e, r), &p), s)| Prediction {
            idx: e.idx,
            label: e.label,
            prediction: p,
            probs: eval::softmax(r),
            tokens: s.len(),
            level: e.level,
            method: e.method.clone(),
        })
        .collect();
    Ok(UnitResult {
        model: unit.model.clone(),
        architecture: lm.record.architecture.clone(),
        task,
        split: unit.split,
        backend: String::new(),
        readout: readout.describe(),
        n: examples.len(),
        metrics,
        by_level,
        by_method,
        efficiency,
        timing,
        predictions,
    })
}

/// The files of a model folder a run reads and hashes (single-file safetensors checkpoints; the
/// CLI also reads sharded ones).
pub const MODEL_FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];

/// A model folder as `file name -> bytes`, by the spec's model name.
pub type Folders = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

async fn load_models<B: Backend>(
    be: &B,
    spec: &Spec,
    folders: &Folders,
    data: &[Dataset],
    check: &dyn Fn(&BTreeMap<String, Vec<u8>>) -> Result<()>,
    now: &dyn Fn() -> f64,
) -> Result<Vec<LoadedModel<B>>> {
    let scan_data = spec.tasks.first().and_then(|&t| data.iter().find(|d| d.task == t && d.split == Split::Validation)).map(|d| (d.task, &d.examples[..spec.limit.map_or(d.examples.len(), |l| l.min(d.examples.len()))]));
    let mut out = Vec::new();
    for m in &spec.models {
        let files = folders.get(m).ok_or_else(|| Error::Invalid(format!("the run was given no files for model {m}")))?;
        check(files)?;
        let named = |e: Error| match e {
            Error::Invalid(msg) => Error::Invalid(format!("model {m}: {msg}")),
            other => other,
        };
        out.push(LoadedModel::load(be, m, files).map_err(named)?);
        let cal = spec.calibration();
        for c in &spec.compressions {
            let keep = spec.repair.as_ref().is_some_and(|r| r.prompts > 0 && r.pool.is_soft()) && spec.repaired_compressions().contains(&c);
            out.push(LoadedModel::load_compressed(be, &spec::compressed_name(m, c), m, files, c, scan_data, &cal, now, keep).await.map_err(named)?);
        }
    }
    Ok(out)
}

/// Runs a whole spec — the one function behind `trilemma run` and the page. The backend is the
/// spec's choice: the GPU (`gpu`: the acquired context, or why there is none) when
/// [`BackendChoice::use_gpu`] accepts it and the models fit, else the CPU; a GPU that fails
/// mid-run leaves its finished units and the CPU runs the rest. Results say which backend ran
/// and why the CPU did, when it did.
pub async fn run<H: Hooks>(spec: &Spec, gpu: std::result::Result<Arc<GpuContext>, String>, folders: &Folders, data: &[Dataset], hooks: &mut H) -> Result<Results> {
    let t0 = hooks.now_ms();
    let mut done = Done::default();
    let mut fallback: Option<String> = None;
    if spec.backend != BackendChoice::Cpu {
        match spec.backend.use_gpu(gpu.as_ref().map(|c| c.is_software()).map_err(Clone::clone)) {
            Ok(()) => {
                let ctx = gpu.expect("use_gpu accepted a context");
                let be = GpuBackend::new(ctx.clone());
                let fits = |files: &BTreeMap<String, Vec<u8>>| be.check_fits(&Checkpoint::from_files(files)?.tensors).map(|_| ());
                let loaded = load_models(&be, spec, folders, data, &fits, &|| hooks.now_ms()).await;
                match loaded {
                    Ok(models) => match run_all(spec, &be, Some(&ctx), &models, data, &mut done, hooks).await {
                        Ok(finished) => {
                            let prov = Provenance::new(spec, &be, None, &models, data);
                            return assemble(spec, prov, done, !finished, (hooks.now_ms() - t0) / 1000.0);
                        }
                        Err(e) => fallback = Some(format!("WebGPU failed ({e}); the remaining evaluations ran on the CPU")),
                    },
                    Err(e) => fallback = Some(format!("the GPU could not hold the models ({e}); ran on the CPU")),
                }
            }
            Err(why) => fallback = Some(why),
        }
    }
    let be = CpuBackend::new();
    let models = load_models(&be, spec, folders, data, &|_| Ok(()), &|| hooks.now_ms()).await?;
    let finished = run_all(spec, &be, None, &models, data, &mut done, hooks).await?;
    let prov = Provenance::new(spec, &be, fallback, &models, data);
    assemble(spec, prov, done, !finished, (hooks.now_ms() - t0) / 1000.0)
}

/// Runs only the units `units` of `spec` (indices as in [`Hooks::delegated`]: evaluations, then
/// attacks) on the CPU, for another worker's [`run`]: the same models, data and code, so the same
/// results that worker would compute (timings and memory apart). Cancelled: the finished ones.
pub async fn run_delegated<H: Hooks>(spec: &Spec, folders: &Folders, data: &[Dataset], units: &[usize], hooks: &mut H) -> Result<Delegated> {
    let (evals, attacks) = (spec.units().len(), attack::attack_units(spec).len());
    if let Some(bad) = units.iter().find(|&&i| i >= evals + attacks) {
        return Err(Error::Invalid(format!("unit {bad} of a spec with {evals} evaluation and {attacks} attack units")));
    }
    let skip: Vec<usize> = (0..evals).filter(|i| !units.contains(i)).collect();
    let skip_attacks: Vec<usize> = (0..attacks).filter(|i| !units.contains(&(evals + i))).collect();
    let be = CpuBackend::new();
    let models = load_models(&be, spec, folders, data, &|_| Ok(()), &|| hooks.now_ms()).await?;
    let mut done = Delegated::default();
    if run_units(spec, &be, None, &models, data, &mut done.units, hooks, &skip).await? && skip_attacks.len() < attacks {
        let (eval, attack_work) = work(spec, data);
        attack::run_attack_units(spec, &be, &models, data, &mut done.attacks, hooks, eval, eval + attack_work, &skip_attacks).await?;
    }
    Ok(done)
}

/// Predictions and labels of a unit.
fn pairs(u: &UnitResult) -> (Vec<u32>, Vec<u32>) {
    u.predictions.iter().map(|p| (p.prediction, p.label)).unzip()
}

fn correct(u: &UnitResult) -> Vec<bool> {
    u.predictions.iter().map(|p| p.prediction == p.label).collect()
}

/// Fraction of `true` among `v[idx]`.
fn frac(v: &[bool], idx: &[usize]) -> f64 {
    idx.iter().filter(|&&i| v[i]).count() as f64 / idx.len().max(1) as f64
}

/// The results of a run: its units plus the numbers across units, each with a seeded bootstrap
/// 95% interval (strata resampled independently: task files, attack levels per task, the two
/// splits of a gap; clean and adversarial versions of an example resampled together).
pub fn assemble(spec: &Spec, provenance: Provenance, done: Done, cancelled: bool, seconds: f64) -> Result<Results> {
    let Done { units, attacks, transfer, perplexity, repairs, calibration } = done;
    let ppl = |model: &str, task: Task, split: Split| perplexity.iter().find(|p| p.model == model && p.task == task && p.split == split).map(|p| p.perplexity);
    let seed = |what: &str| crate::rng::derive_seed(spec.seed, &format!("bootstrap/{what}"));
    let mut advglue = Vec::new();
    let mut robustness = Vec::new();
    for model in &spec.model_names() {
        let mine: Vec<&UnitResult> = units.iter().filter(|u| &u.model == model).collect();
        let adv: Vec<&UnitResult> = mine.iter().copied().filter(|u| u.split == Split::AdvGlue).collect();
        if !adv.is_empty() {
            let data: Vec<(Task, Vec<u32>, Vec<u32>)> = adv.iter().map(|u| {
                let (p, l) = pairs(u);
                (u.task, p, l)
            }).collect();
            let scores = data.iter().map(|(t, p, l)| glue_score(*t, p, l)).collect::<Result<Vec<_>>>()?;
            let (official_score, official_ci95, official_missing) = match eval::advglue_score(&scores) {
                Ok(s) => {
                    let sizes: Vec<usize> = data.iter().map(|d| d.1.len()).collect();
                    let (lo, hi) = eval::metrics::bootstrap_strata(&sizes, spec.bootstrap, seed(&format!("{model}/advglue-score")), |idx| {
                        let resampled = data
                            .iter()
                            .zip(idx)
                            .map(|((t, p, l), ix)| {
                                let (bp, bl): (Vec<u32>, Vec<u32>) = ix.iter().map(|&i| (p[i], l[i])).unzip();
                                // The official score takes the full dev size; a resample has it.
                                glue_score(*t, &bp, &bl)
                            })
                            .collect::<Result<Vec<_>>>()?;
                        Ok(eval::advglue_score(&resampled)?.score)
                    })?;
                    (Some(s), Some([lo, hi]), None)
                }
                Err(e) => (None, None, Some(e.to_string())),
            };
            let mut levels = Vec::new();
            for level in AttackLevel::ALL {
                // Per task: which examples have this level, and whether each was right.
                let cells: Vec<Vec<bool>> = adv
                    .iter()
                    .map(|u| u.predictions.iter().filter(|p| p.level == Some(level)).map(|p| p.prediction == p.label).collect::<Vec<bool>>())
                    .filter(|c| !c.is_empty())
                    .collect();
                if cells.is_empty() {
                    continue;
                }
                let n: usize = cells.iter().map(Vec::len).sum();
                let sizes: Vec<usize> = cells.iter().map(Vec::len).collect();
                let macro_of = |idx: &[Vec<usize>]| cells.iter().zip(idx).map(|(c, ix)| frac(c, ix)).sum::<f64>() / cells.len() as f64;
                let pooled_of = |idx: &[Vec<usize>]| cells.iter().zip(idx).map(|(c, ix)| frac(c, ix) * c.len() as f64).sum::<f64>() / n as f64;
                let all: Vec<Vec<usize>> = cells.iter().map(|c| (0..c.len()).collect()).collect();
                let level_seed = seed(&format!("{model}/level/{}", level.name()));
                let ci = |f: &dyn Fn(&[Vec<usize>]) -> f64| eval::metrics::bootstrap_strata(&sizes, spec.bootstrap, level_seed, |idx| Ok(f(idx))).map(|(a, b)| [a, b]);
                levels.push(LevelSummary {
                    level,
                    macro_accuracy: Estimate { value: macro_of(&all), ci95: ci(&macro_of)? },
                    pooled_accuracy: Estimate { value: pooled_of(&all), ci95: ci(&pooled_of)? },
                    n,
                    tasks: cells.len(),
                });
            }
            advglue.push(AdvGlueSummary { model: model.clone(), official_score, official_ci95, official_missing, levels });
        }
        for &task in &spec.tasks {
            let get = |split: Split| mine.iter().copied().find(|u| u.task == task && u.split == split);
            let (dev, adv, clean) = (get(Split::Validation), get(Split::AdvGlue), get(Split::AdvGlueOriginal));
            let mut r = Robustness {
                model: model.clone(),
                task,
                paired_n: None,
                clean_accuracy: None,
                adversarial_accuracy: None,
                accuracy_drop: None,
                broken: None,
                repaired: None,
                dev_minus_advglue: None,
            };
            if let (Some(dev), Some(adv)) = (dev, adv) {
                let (d, a) = (correct(dev), correct(adv));
                let all = [(0..d.len()).collect::<Vec<_>>(), (0..a.len()).collect()];
                let gap = |idx: &[Vec<usize>]| frac(&d, &idx[0]) - frac(&a, &idx[1]);
                let (lo, hi) = eval::metrics::bootstrap_strata(&[d.len(), a.len()], spec.bootstrap, seed(&format!("{model}/{task}/dev-minus-advglue")), |idx| Ok(gap(idx)))?;
                r.dev_minus_advglue = Some(Estimate { value: gap(&all), ci95: [lo, hi] });
            }
            if let (Some(adv), Some(clean)) = (adv, clean) {
                let by_idx: BTreeMap<u64, &Prediction> = adv.predictions.iter().map(|p| (p.idx, p)).collect();
                let matched: Vec<(bool, bool)> = clean
                    .predictions
                    .iter()
                    .filter_map(|c| by_idx.get(&c.idx).map(|a| (c.prediction == c.label, a.prediction == a.label)))
                    .collect();
                if !matched.is_empty() {
                    let (c, a): (Vec<bool>, Vec<bool>) = matched.iter().copied().unzip();
                    let k = matched.len();
                    let seed = seed(&format!("{model}/{task}/paired"));
                    let est = |f: &dyn Fn(&[usize]) -> f64| -> Result<Estimate> {
                        let (lo, hi) = eval::metrics::bootstrap_strata(&[k], spec.bootstrap, seed, |idx| Ok(f(&idx[0])))?;
                        Ok(Estimate { value: f(&(0..k).collect::<Vec<_>>()), ci95: [lo, hi] })
                    };
                    r.paired_n = Some(k);
                    r.clean_accuracy = Some(est(&|ix| frac(&c, ix))?);
                    r.adversarial_accuracy = Some(est(&|ix| frac(&a, ix))?);
                    r.accuracy_drop = Some(est(&|ix| frac(&c, ix) - frac(&a, ix))?);
                    r.broken = Some(matched.iter().filter(|(c, a)| *c && !*a).count());
                    r.repaired = Some(matched.iter().filter(|(c, a)| !*c && *a).count());
                }
            }
            if r.dev_minus_advglue.is_some() || r.paired_n.is_some() {
                robustness.push(r);
            }
        }
    }
    let mut hemorrhage = Vec::new();
    for m in provenance.models.iter().filter(|m| m.compressed_from.is_some()) {
        let base = m.compressed_from.as_deref().unwrap_or_default();
        for u in units.iter().filter(|u| u.model == m.name) {
            let Some(b) = units.iter().find(|b| b.model == base && b.task == u.task && b.split == u.split) else { continue };
            let bp: Vec<Vec<f32>> = b.predictions.iter().map(|p| p.probs.clone()).collect();
            let cp: Vec<Vec<f32>> = u.predictions.iter().map(|p| p.probs.clone()).collect();
            let (bc, cc) = (correct(b), correct(u));
            let k = bc.len().min(cc.len());
            let drop = |ix: &[usize]| frac(&bc, ix) - frac(&cc, ix);
            let (lo, hi) = eval::metrics::bootstrap_strata(&[k], spec.bootstrap, seed(&format!("{}/{}/{}/hemorrhage", m.name, u.task, u.split)), |idx| Ok(drop(&idx[0])))?;
            let all: Vec<usize> = (0..k).collect();
            hemorrhage.push(Hemorrhage {
                model: m.name.clone(),
                base: base.to_string(),
                task: u.task,
                split: u.split,
                n: k,
                base_accuracy: frac(&bc, &all),
                accuracy: frac(&cc, &all),
                accuracy_drop: Estimate { value: drop(&all), ci95: [lo, hi] },
                kl: eval::hemorrhage::kl_divergence(&bp, &cp)?,
                agreement: eval::hemorrhage::agreement_rate(&bp, &cp)?,
                broken: (0..k).filter(|&i| bc[i] && !cc[i]).count(),
                repaired: (0..k).filter(|&i| !bc[i] && cc[i]).count(),
                perplexity_base: ppl(base, u.task, u.split),
                perplexity: ppl(&m.name, u.task, u.split),
                perplexity_ratio: match (ppl(base, u.task, u.split), ppl(&m.name, u.task, u.split)) {
                    (Some(b), Some(c)) => Some(eval::hemorrhage::perplexity_ratio(b, c)?),
                    _ => None,
                },
                calibration: match calibration.iter().find(|c| c.model == m.name && c.task == u.task) {
                    Some(fit) => {
                        let labels: Vec<u32> = u.predictions.iter().map(|p| p.label).collect();
                        let cal = repair::held_out(spec, u.task, u.split, k).unwrap_or_default();
                        let keep: Vec<usize> = (0..k).filter(|i| cal.binary_search(i).is_err()).collect();
                        if keep.is_empty() { None } else { Some(repair::hemorrhage_calibration(fit, &bp, &cp, &labels, &keep)?) }
                    }
                    None => None,
                },
            });
        }
    }
    let curves = curves::curves(&provenance.models, &hemorrhage)?;
    let units_total = spec.units().len();
    let attacks_total = attack::attack_units(spec).len();
    Ok(Results {
        format: FORMAT.into(),
        spec: spec.clone(),
        provenance,
        status: Status {
            skipped: spec.skipped(),
            complete: units.len() == units_total && attacks.len() == attacks_total,
            cancelled,
            units_done: units.len(),
            units_total,
            attacks_done: attacks.len(),
            attacks_total,
        },
        units,
        advglue,
        robustness,
        attacks,
        transfer,
        hemorrhage,
        curves,
        repair: repairs,
        calibration,
        timing: RunTiming { seconds },
    })
}

/// The results JSON with every `timing` object removed: what must be byte-identical between two
/// runs of one spec.
pub fn without_timing(json: &str) -> Result<String> {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("timing");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v: serde_json::Value = serde_json::from_str(json).map_err(|e| Error::Invalid(format!("results JSON: {e}")))?;
    strip(&mut v);
    Ok(serde_json::to_string_pretty(&v).expect("a JSON value serialises"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_softmax() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(eval::metrics::percentile(&v, 0.5), 3.0);
        assert!((eval::metrics::percentile(&v, 0.95) - 4.8).abs() < 1e-12);
        assert_eq!(eval::metrics::percentile(&[], 0.5), 0.0);
        let p = eval::softmax(&[0.0, (3f32).ln()]);
        assert!((p[0] - 0.25).abs() < 1e-6 && (p[1] - 0.75).abs() < 1e-6);
    }

    #[test]
    fn sha256_of_abc() {
        // FIPS 180-2 appendix B.1.
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
