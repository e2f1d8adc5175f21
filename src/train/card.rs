//! Writing a trained model folder: `config.json`, `model.safetensors`, `tokenizer.json`, the
//! scores (`scores.json`) and the model card (`README.md`), all measured on the written files.

use super::{export, train, Corpus, LogLine, Recipe, Trainee};
use crate::backend::cpu::CpuBackend;
use crate::data::{load_split, Split, Task};
use crate::error::{Error, Result};
use crate::eval::{evaluate_cpu, TaskEval};
use crate::io::{write_safetensors, Checkpoint};
use crate::models::config::Arch;
use crate::models::Model;
use crate::text::TextTokenizer;
use serde_json::json;
use std::fmt::Write as _;
use std::path::Path;

/// The folder name of an architecture's default model under `assets/models/`.
pub fn folder_name(arch: Arch) -> &'static str {
    match arch {
        Arch::Transformer => "transformer",
        Arch::Gla => "gla",
        Arch::HgrnBit => "hgrn_bit",
    }
}

/// What a finished run reports.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub architecture: String,
    pub parameters: usize,
    pub safetensors_bytes: u64,
    pub train_seconds: f64,
    pub scores: Vec<TaskEval>,
    /// Share of SST-2 validation examples where the training twin and the loaded folder predict
    /// the same label (the twin computes BitLinear in float; the folder adds packed integers).
    pub twin_agreement_sst2: f64,
    pub log: Vec<LogLine>,
}

/// Train `arch` with `recipe` on `corpus`, write the folder `out`, score it and write its card.
pub fn build(
    arch: Arch,
    assets: &Path,
    tokenizer_json: &[u8],
    corpus: &Corpus,
    recipe: &Recipe,
    out: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Report> {
    let tasks: Vec<Task> = corpus.tasks.iter().map(|(t, _)| *t).collect();
    let trainee = Trainee::init(arch, &tasks, recipe.seed)?;
    progress(&format!("{}: {} parameters", arch.display_name(), trainee.param_count()));
    let t0 = std::time::Instant::now();
    let log = train(&trainee, corpus, recipe, progress)?;
    let train_seconds = t0.elapsed().as_secs_f64();
    let (config, tensors) = export(&trainee, recipe)?;
    std::fs::create_dir_all(out).map_err(|e| Error::Io(format!("{}: {e}", out.display())))?;
    let write = |name: &str, bytes: &[u8]| std::fs::write(out.join(name), bytes).map_err(|e| Error::Io(format!("{}: {e}", out.join(name).display())));
    write("config.json", (serde_json::to_string_pretty(&config).map_err(|e| Error::Invalid(e.to_string()))? + "\n").as_bytes())?;
    let st = write_safetensors(&tensors, None)?;
    write("model.safetensors", &st)?;
    write("tokenizer.json", tokenizer_json)?;

    // Score what was written, through the inference path.
    let be = CpuBackend::new();
    let model = Model::load(&be, Checkpoint::load_dir(out)?)?;
    let tk = TextTokenizer::from_json_bytes(tokenizer_json)?;
    let mut scores = Vec::new();
    let mut agreement = f64::NAN;
    for &(split, task) in EVAL_SPLITS {
        if !tasks.contains(&task.model_task()) {
            continue;
        }
        let examples = load_split(assets, task, split)?;
        let train_labels = crate::data::labels(&load_split(assets, task.model_task(), Split::Train)?);
        let (ev, preds) = evaluate_cpu(&be, &model, &tk, task, split, &examples, &train_labels)?;
        progress(&format!("  {task:<8} {split:<10} score {:.4} (majority {:.4})", ev.score.score, ev.majority.score));
        if task == Task::Sst2 && split == Split::Validation {
            let twin = trainee.predict(task, &super::tokenize(&tk, &examples))?;
            agreement = twin.iter().zip(&preds).filter(|(a, b)| a == b).count() as f64 / preds.len() as f64;
        }
        scores.push(ev);
    }
    let report = Report {
        architecture: arch.display_name().into(),
        parameters: trainee.param_count(),
        safetensors_bytes: st.len() as u64,
        train_seconds,
        scores,
        twin_agreement_sst2: agreement,
        log,
    };
    write("scores.json", (serde_json::to_string_pretty(&report).map_err(|e| Error::Invalid(e.to_string()))? + "\n").as_bytes())?;
    write("README.md", card(arch, recipe, &report).as_bytes())?;
    Ok(report)
}

/// The splits a default model is scored on: GLUE validation where bundled, AdvGLUE dev.
pub const EVAL_SPLITS: &[(Split, Task)] = &[
    (Split::Validation, Task::Sst2),
    (Split::Validation, Task::Qnli),
    (Split::Validation, Task::Rte),
    (Split::Validation, Task::Mrpc),
    (Split::Validation, Task::Cola),
    (Split::AdvGlue, Task::Sst2),
    (Split::AdvGlue, Task::Qqp),
    (Split::AdvGlue, Task::Mnli),
    (Split::AdvGlue, Task::MnliMm),
    (Split::AdvGlue, Task::Qnli),
    (Split::AdvGlue, Task::Rte),
];

fn card(arch: Arch, recipe: &Recipe, r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Trilemma default model: {}\n", arch.display_name());
    let _ = writeln!(
        s,
        "Trained from scratch by `trilemma train --arch {}` (see the project README, \"Training\"). \
         Hugging Face layout; `score.weight` is the SST-2 head, the other GLUE tasks' heads are \
         `score.<task>.weight` (listed in `config.json` under `trilemma.task_heads`).\n",
        folder_name(arch)
    );
    let _ = writeln!(s, "- Parameters: {} ({} bytes of model.safetensors{})", r.parameters, r.safetensors_bytes,
        if arch == Arch::HgrnBit { "; BitLinear weights stored packed, 2 bits each" } else { "; f32" });
    let _ = writeln!(s, "- Training time: {:.0} s on the build machine (2 CPU cores)", r.train_seconds);
    let _ = writeln!(s, "- Seed: {}", recipe.seed);
    let _ = writeln!(s, "- Data: the GLUE training files bundled in `assets/train/` (SST-2, RTE, MRPC, CoLA full; QNLI, QQP, MNLI 9,999-row subsets); tokenizer `assets/tokenizer/tokenizer.json` (BPE, 8192 tokens, trained on the same text by `trilemma tokenizer`).");
    let _ = writeln!(s, "- Recipe: language-model pretraining on all training text, then multi-task fine-tuning of one backbone with one head per task. Exact values:\n\n```json\n{}\n```\n", serde_json::to_string_pretty(&json!(recipe)).unwrap_or_default());
    let _ = writeln!(s, "## Scores (this folder, CPU inference path)\n");
    let _ = writeln!(s, "| task | split | n | metric | score | majority baseline |\n|---|---|---|---|---|---|");
    for e in &r.scores {
        let _ = writeln!(s, "| {} | {} | {} | {:?} | {:.4} | {:.4} |", e.task, e.split, e.score.n, e.score.metric, e.score.score, e.majority.score);
    }
    let _ = writeln!(s, "\nScore = accuracy, except MRPC/QQP (mean of F1 and accuracy) and CoLA (Matthews correlation). \
        The majority baseline predicts the most frequent training label. Training twin vs this folder, same SST-2 validation label: {:.2}%.", 100.0 * r.twin_agreement_sst2);
    s
}
