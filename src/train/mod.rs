//! `trilemma train`: the bundled default models, trained from scratch natively on the bundled
//! GLUE training data with candle-core autograd.
//!
//! The recipe ([`Recipe`], recorded in each model's `config.json` and card):
//! 1. random init ([`crate::models::init`], seeded);
//! 2. language-model pretraining of the backbone on every bundled training text (next-token
//!    loss; embeddings tied to the LM head for Transformer++ and GLA, HGRN-bit's BitLinear head);
//! 3. multi-task fine-tuning: one shared backbone, one classification head per task, batches
//!    drawn from all tasks (small tasks repeated up to [`Recipe::min_task_examples`]).
//!
//! The result is one Hugging Face folder per architecture: `score.weight` is the SST-2 head (so
//! any HF-style loader sees an SST-2 classifier); the other tasks' heads are
//! `score.<task>.weight`, listed in `config.json` under `trilemma.task_heads` (README "Model
//! folders"). HGRN-bit's BitLinear weights are exported packed (`weight_ternary` + `weight_scale`).

pub mod card;
pub use crate::autodiff::{twin, vars};

use crate::backend::{ternary, HostTensor};
use crate::data::{load_split, Example, Split, Task};
use crate::error::{Error, Result};
use crate::models::config::Arch;
use crate::models::init::{config_json, random_checkpoint, Dims, INIT_STD};
use crate::nn::linear::TernaryWeights;
use crate::rng::SplitMix64;
use crate::text::TextTokenizer;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use twin::{cross_entropy, Dropout, Twin};
use vars::{AdamW, Params};

/// The task whose head is the folder's `score.weight`.
pub const DEFAULT_TASK: Task = Task::Sst2;

/// Everything that decides a trained model, recorded with it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub seed: u64,
    /// Sequences per optimiser step.
    pub batch: usize,
    /// Language-model pretraining passes over all training text.
    pub lm_epochs: usize,
    pub lm_lr: f64,
    /// Multi-task fine-tuning passes.
    pub ft_epochs: usize,
    pub ft_lr: f64,
    /// Fraction of each phase's steps spent warming the learning rate up linearly; it then decays
    /// linearly to `final_lr_fraction` of the peak.
    pub warmup: f64,
    pub final_lr_fraction: f64,
    pub weight_decay: f64,
    pub dropout: f64,
    /// Global gradient-norm clip.
    pub clip: f64,
    /// Tasks with fewer training examples are repeated to at least this many per epoch.
    pub min_task_examples: usize,
    pub tasks: Vec<Task>,
    /// Stop each phase after this many steps (0 = no limit; for smoke tests).
    pub max_steps: usize,
    /// Print (and log) the mean loss every this many steps.
    #[serde(default = "default_log_every")]
    pub log_every: usize,
}

fn default_log_every() -> usize {
    200
}

impl Default for Recipe {
    fn default() -> Self {
        Recipe {
            seed: 20240808,
            batch: 64,
            lm_epochs: 1,
            lm_lr: 2e-3,
            ft_epochs: 1,
            ft_lr: 1e-3,
            warmup: 0.05,
            final_lr_fraction: 0.1,
            weight_decay: 0.05,
            dropout: 0.1,
            clip: 1.0,
            min_task_examples: 8000,
            tasks: vec![Task::Sst2, Task::Qnli, Task::Qqp, Task::Mnli, Task::Rte, Task::Mrpc, Task::Cola],
            max_steps: 0,
            log_every: default_log_every(),
        }
    }
}

/// The tensor name of a task's classification head.
pub fn head_name(task: Task) -> String {
    if task == DEFAULT_TASK {
        "score.weight".into()
    } else {
        format!("score.{}.weight", task.name())
    }
}

/// One tokenized example.
#[derive(Clone, Debug)]
pub struct Seq {
    pub ids: Vec<u32>,
    pub label: u32,
}

/// The tokenized training data.
pub struct Corpus {
    /// Every training text (pairs as pairs) for LM pretraining.
    pub lm: Vec<Vec<u32>>,
    pub tasks: Vec<(Task, Vec<Seq>)>,
    /// Bundled validation sets, only printed during training (never used to choose anything).
    pub monitor: Vec<(Task, Vec<Seq>)>,
}

/// Tokenize a list of examples (an empty text is skipped, not fatal: SST-2 has none, but a user's
/// file might).
pub fn tokenize(tk: &TextTokenizer, examples: &[Example]) -> Vec<Seq> {
    examples
        .iter()
        .filter_map(|e| tk.encode_example(&e.text_a, e.text_b.as_deref()).ok().map(|ids| Seq { ids, label: e.label }))
        .collect()
}

/// Read and tokenize the bundled training splits of `tasks` under `assets`.
pub fn load_corpus(assets: &Path, tk: &TextTokenizer, tasks: &[Task]) -> Result<Corpus> {
    let mut out = Corpus { lm: Vec::new(), tasks: Vec::new(), monitor: Vec::new() };
    for &task in tasks {
        let seqs = tokenize(tk, &load_split(assets, task, Split::Train)?);
        if seqs.is_empty() {
            return Err(Error::Invalid(format!("{task} train has no usable example")));
        }
        out.lm.extend(seqs.iter().map(|s| s.ids.clone()));
        out.tasks.push((task, seqs));
        if crate::data::bundled(task, Split::Validation).is_ok() {
            out.monitor.push((task, tokenize(tk, &load_split(assets, task, Split::Validation)?)));
        }
    }
    Ok(out)
}

/// Split example indices into batches of similar length: shuffle, sort windows of 32 batches by
/// length, cut, and shuffle the batches.
fn bucketed_batches(lens: &[usize], batch: usize, rng: &mut SplitMix64) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..lens.len()).collect();
    shuffle(&mut idx, rng);
    let mut out = Vec::new();
    for window in idx.chunks(batch * 32) {
        let mut w = window.to_vec();
        w.sort_by_key(|&i| lens[i]);
        out.extend(w.chunks(batch).map(|c| c.to_vec()));
    }
    shuffle(&mut out, rng);
    out
}

fn shuffle<T>(v: &mut [T], rng: &mut SplitMix64) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

/// Right-pad sequences with `<pad>` into ids `[B, T]`; returns the lengths.
fn pad(seqs: &[&[u32]]) -> candle_core::Result<(Tensor, Vec<usize>)> {
    let t = seqs.iter().map(|s| s.len()).max().unwrap_or(1).max(1);
    let mut ids = vec![crate::text::PAD_ID; seqs.len() * t];
    for (b, s) in seqs.iter().enumerate() {
        ids[b * t..b * t + s.len()].copy_from_slice(s);
    }
    Ok((Tensor::from_vec(ids, (seqs.len(), t), &Device::Cpu)?, seqs.iter().map(|s| s.len()).collect()))
}

/// Learning rate at `step` of `total`: linear warm-up, then linear decay to `final_frac · peak`.
pub fn lr_at(step: usize, total: usize, peak: f64, warmup: f64, final_frac: f64) -> f64 {
    let w = ((total as f64) * warmup).ceil().max(1.0) as usize;
    if step < w {
        return peak * (step + 1) as f64 / w as f64;
    }
    let rest = (total - w).max(1) as f64;
    let done = (step - w) as f64 / rest;
    peak * (1.0 - (1.0 - final_frac) * done.min(1.0))
}

/// A model being trained: its sizes, parameters and the heads it carries.
pub struct Trainee {
    pub dims: Dims,
    pub params: Params,
    pub heads: Vec<(Task, usize)>,
    pub eps: f64,
}

impl Trainee {
    /// Random init for `arch` at the default size, with one head per task.
    pub fn init(arch: Arch, tasks: &[Task], seed: u64) -> Result<Self> {
        let dims = Dims { num_labels: Some(DEFAULT_TASK.num_labels() as usize), ..Dims::default_for(arch) };
        Self::init_dims(dims, tasks, seed)
    }

    pub fn init_dims(dims: Dims, tasks: &[Task], seed: u64) -> Result<Self> {
        let ck = random_checkpoint(&dims, seed)?;
        let mut tensors = ck.tensors;
        if arch_ties(dims.arch) {
            tensors.remove("lm_head.weight");
        }
        let mut rng = SplitMix64::new(seed ^ 0x4845_4144); // "HEAD"
        let mut heads = Vec::new();
        for &task in tasks {
            let c = task.num_labels() as usize;
            if task != DEFAULT_TASK {
                // Uniform with the init's standard deviation: √3·σ bounds.
                let a = INIT_STD * 3f32.sqrt();
                tensors.insert(head_name(task), HostTensor::f32(&[c, dims.hidden], rng.vec_f32(c * dims.hidden, -a, a))?);
            }
            heads.push((task, c));
        }
        if !tasks.contains(&DEFAULT_TASK) {
            return Err(Error::Invalid(format!("the task list must include {DEFAULT_TASK} (the folder's default head)")));
        }
        let eps = crate::models::init::INIT_NORM_EPS;
        Ok(Trainee { params: Params::from_host(&tensors)?, dims, heads, eps })
    }

    pub fn twin(&self) -> Twin<'_> {
        Twin { dims: &self.dims, params: &self.params, eps: self.eps }
    }

    fn lm_loss(&self, seqs: &[&[u32]], drop: &mut Dropout) -> candle_core::Result<Tensor> {
        let (ids, lens) = pad(seqs)?;
        let t = ids.dim(1)?;
        let h = self.twin().hidden(&ids, drop)?;
        let (mut rows, mut targets) = (Vec::new(), Vec::new());
        for (b, s) in seqs.iter().enumerate() {
            for p in 0..lens[b].saturating_sub(1) {
                rows.push((b * t + p) as u32);
                targets.push(s[p + 1]);
            }
        }
        let n = rows.len();
        let hr = h.reshape((seqs.len() * t, self.dims.hidden))?.index_select(&Tensor::from_vec(rows, n, &Device::Cpu)?, 0)?;
        cross_entropy(&self.twin().lm_logits(&hr)?, &targets)
    }

    /// Class logits `[B, C]` of `task`'s head.
    pub fn class_logits(&self, task: Task, seqs: &[&[u32]], drop: &mut Dropout) -> candle_core::Result<Tensor> {
        let (ids, lens) = pad(seqs)?;
        let h = self.twin().hidden(&ids, drop)?;
        let last = Twin::last_token(&h, &lens)?;
        last.matmul(&self.params.get(&head_name(task))?.t()?)
    }

    /// Predicted labels (no dropout), batched by length.
    pub fn predict(&self, task: Task, seqs: &[Seq]) -> Result<Vec<u32>> {
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        order.sort_by_key(|&i| seqs[i].ids.len());
        let mut preds = vec![0u32; seqs.len()];
        let mut rng = SplitMix64::new(0);
        let mut nodrop = Dropout { p: 0.0, rng: &mut rng };
        for chunk in order.chunks(64) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| seqs[i].ids.as_slice()).collect();
            let logits = self.class_logits(task, &batch, &mut nodrop)?.argmax_keepdim(1)?.flatten_all()?.to_vec1::<u32>()?;
            for (&i, p) in chunk.iter().zip(logits) {
                preds[i] = p;
            }
        }
        Ok(preds)
    }

    pub fn param_count(&self) -> usize {
        self.params.count()
    }
}

fn arch_ties(arch: Arch) -> bool {
    arch != Arch::HgrnBit
}

/// One line of the training log.
#[derive(Clone, Debug, Serialize)]
pub struct LogLine {
    pub phase: String,
    pub step: usize,
    pub steps: usize,
    pub loss: f64,
    pub lr: f64,
    pub seconds: f64,
}

/// Run both phases of `recipe` on `trainee`. `progress` receives human-readable lines.
pub fn train(trainee: &Trainee, corpus: &Corpus, recipe: &Recipe, progress: &mut dyn FnMut(&str)) -> Result<Vec<LogLine>> {
    let started = std::time::Instant::now();
    let mut log = Vec::new();
    let mut rng = SplitMix64::new(recipe.seed);
    let mut drop_rng = SplitMix64::new(recipe.seed ^ 0x44524f50); // "DROP"
    // Phase 1: language model.
    let lens: Vec<usize> = corpus.lm.iter().map(|s| s.len()).collect();
    let mut steps_lm: Vec<Vec<usize>> = Vec::new();
    for _ in 0..recipe.lm_epochs {
        steps_lm.extend(bucketed_batches(&lens, recipe.batch, &mut rng).into_iter().filter(|b| b.iter().any(|&i| lens[i] > 1)));
    }
    cap(&mut steps_lm, recipe.max_steps);
    let mut opt = AdamW::new(recipe.weight_decay, recipe.clip);
    let total = steps_lm.len();
    let mut avg = Avg::default();
    for (step, batch) in steps_lm.iter().enumerate() {
        let seqs: Vec<&[u32]> = batch.iter().map(|&i| corpus.lm[i].as_slice()).collect();
        let mut drop = Dropout { p: recipe.dropout as f32, rng: &mut drop_rng };
        let loss = trainee.lm_loss(&seqs, &mut drop)?;
        let lr = lr_at(step, total, recipe.lm_lr, recipe.warmup, recipe.final_lr_fraction);
        opt.step(&trainee.params, &loss.backward()?, lr)?;
        avg.add(loss.to_scalar::<f32>()? as f64);
        if (step + 1) % recipe.log_every.max(1) == 0 || step + 1 == total {
            let line = LogLine { phase: "lm".into(), step: step + 1, steps: total, loss: avg.take(), lr, seconds: started.elapsed().as_secs_f64() };
            progress(&format!("lm    step {:>6}/{total}  loss {:.4}  lr {:.2e}  {:.0} s", line.step, line.loss, lr, line.seconds));
            log.push(line);
        }
    }
    // Phase 2: multi-task fine-tuning, a fresh optimiser.
    let mut steps_ft: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut epoch_ends = Vec::new();
    for _ in 0..recipe.ft_epochs {
        let mut epoch = Vec::new();
        for (ti, (_, seqs)) in corpus.tasks.iter().enumerate() {
            let reps = recipe.min_task_examples.div_ceil(seqs.len()).max(1);
            let lens: Vec<usize> = (0..reps).flat_map(|_| seqs.iter().map(|s| s.ids.len())).collect();
            for b in bucketed_batches(&lens, recipe.batch, &mut rng) {
                epoch.push((ti, b.into_iter().map(|i| i % seqs.len()).collect()));
            }
        }
        shuffle(&mut epoch, &mut rng);
        steps_ft.extend(epoch);
        epoch_ends.push(steps_ft.len());
    }
    cap(&mut steps_ft, recipe.max_steps);
    let mut opt = AdamW::new(recipe.weight_decay, recipe.clip);
    let total = steps_ft.len();
    for (step, (ti, batch)) in steps_ft.iter().enumerate() {
        let (task, data) = &corpus.tasks[*ti];
        let seqs: Vec<&[u32]> = batch.iter().map(|&i| data[i].ids.as_slice()).collect();
        let labels: Vec<u32> = batch.iter().map(|&i| data[i].label).collect();
        let mut drop = Dropout { p: recipe.dropout as f32, rng: &mut drop_rng };
        let loss = cross_entropy(&trainee.class_logits(*task, &seqs, &mut drop)?, &labels)?;
        let lr = lr_at(step, total, recipe.ft_lr, recipe.warmup, recipe.final_lr_fraction);
        opt.step(&trainee.params, &loss.backward()?, lr)?;
        avg.add(loss.to_scalar::<f32>()? as f64);
        if (step + 1) % recipe.log_every.max(1) == 0 || step + 1 == total {
            let line = LogLine { phase: "finetune".into(), step: step + 1, steps: total, loss: avg.take(), lr, seconds: started.elapsed().as_secs_f64() };
            progress(&format!("tasks step {:>6}/{total}  loss {:.4}  lr {:.2e}  {:.0} s", line.step, line.loss, lr, line.seconds));
            log.push(line);
        }
        if epoch_ends.contains(&(step + 1)) || (step + 1) % 1000 == 0 || step + 1 == total {
            let mut parts = Vec::new();
            for (task, seqs) in &corpus.monitor {
                let preds = trainee.predict(*task, seqs)?;
                let labels: Vec<u32> = seqs.iter().map(|s| s.label).collect();
                parts.push(format!("{task} {:.4}", crate::eval::glue_score(*task, &preds, &labels)?.score));
            }
            progress(&format!("tasks step {:>6}/{total}  validation (monitor only): {}", step + 1, parts.join(", ")));
        }
    }
    Ok(log)
}

fn cap<T>(v: &mut Vec<T>, max: usize) {
    if max > 0 {
        v.truncate(max);
    }
}

#[derive(Default)]
struct Avg {
    sum: f64,
    n: usize,
}

impl Avg {
    fn add(&mut self, x: f64) {
        self.sum += x;
        self.n += 1;
    }
    fn take(&mut self) -> f64 {
        let m = self.sum / self.n.max(1) as f64;
        *self = Avg::default();
        m
    }
}

/// The Hugging Face folder of a trained model: `config.json` and `model.safetensors` contents.
pub fn export(trainee: &Trainee, recipe: &Recipe) -> Result<(Value, BTreeMap<String, HostTensor>)> {
    let d = &trainee.dims;
    let mut config = config_json(d);
    let obj = config.as_object_mut().expect("object");
    obj.insert("tie_word_embeddings".into(), json!(arch_ties(d.arch)));
    let names = DEFAULT_TASK.label_names();
    obj.insert("id2label".into(), Value::Object(names.iter().enumerate().map(|(i, n)| (i.to_string(), json!(n))).collect()));
    obj.insert("label2id".into(), Value::Object(names.iter().enumerate().map(|(i, n)| (n.to_string(), json!(i))).collect()));
    let heads: serde_json::Map<String, Value> =
        trainee.heads.iter().filter(|(t, _)| *t != DEFAULT_TASK).map(|(t, c)| (t.name().to_string(), json!(c))).collect();
    obj.insert(
        "trilemma".into(),
        json!({ "default_task": DEFAULT_TASK.name(), "task_heads": heads, "recipe": recipe }),
    );
    let mut tensors = trainee.params.to_host()?;
    if d.arch == Arch::HgrnBit {
        let latent: Vec<String> = tensors
            .keys()
            .filter(|n| n.ends_with("_proj.weight") || *n == "lm_head.weight")
            .cloned()
            .collect();
        for name in latent {
            let w = tensors.remove(&name).expect("listed");
            let t = TernaryWeights::from_latent(&w)?;
            let stem = name.trim_end_matches(".weight");
            tensors.insert(format!("{stem}.weight_ternary"), HostTensor::u32(&[t.n, ternary::words_per_row(t.k)], t.packed)?);
            tensors.insert(format!("{stem}.weight_scale"), HostTensor::f32(&[1], vec![t.beta])?);
        }
    }
    Ok((config, tensors))
}
