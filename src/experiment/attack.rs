//! The spec's `attacks`: every model × clean (task, split) × attack config, example by example, then the transfer
//! matrices (the texts that fooled one model, scored on each of the others).

use super::{Hooks, LoadedModel, Progress, Spec};
use crate::attacks::metrics::{self, AttackSummary, Transfer};
use crate::attacks::search::{self, AttackConfig, AttackRecord, Input, Lexicon, ModelVictim, Outcome, Victim};
use crate::attacks::synonyms::SynonymTable;
use crate::backend::Backend;
use crate::data::{Example, Split, Task};
use crate::error::{Error, Result};

/// Splits an attack may start from: clean text (AdvGLUE's adversarial split is already attacked).
pub const CLEAN_SPLITS: [Split; 3] = [Split::Validation, Split::AdvGlueOriginal, Split::Train];

/// One attack of one model on one split of one task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttackUnit {
    pub model: String,
    pub task: Task,
    pub split: Split,
    pub config: usize,
}

/// The spec's attack units in run order: model, then task and split, then attack.
pub fn attack_units(spec: &Spec) -> Vec<AttackUnit> {
    let mut out = Vec::new();
    for m in &spec.model_names() {
        for (task, split) in spec.data() {
            if CLEAN_SPLITS.contains(&split) {
                for config in 0..spec.attacks.len() {
                    out.push(AttackUnit { model: m.clone(), task, split, config });
                }
            }
        }
    }
    out
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AttackTiming {
    pub seconds: f64,
    pub queries_per_second: f64,
    pub examples_per_second: f64,
}

/// A finished attack unit.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AttackResult {
    pub model: String,
    pub architecture: String,
    pub task: Task,
    pub split: Split,
    pub attack: AttackConfig,
    pub backend: String,
    pub summary: AttackSummary,
    pub records: Vec<AttackRecord>,
    pub timing: AttackTiming,
}

/// One transfer matrix: for a (task, split, attack), every source model × target model.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TransferMatrix {
    pub task: Task,
    pub split: Split,
    pub attack: AttackConfig,
    pub cells: Vec<Transfer>,
}

/// The spec's examples of a unit as attack inputs.
fn input(e: &Example) -> Input {
    Input { a: e.text_a.clone(), b: e.text_b.clone() }
}

/// Runs the attack units not yet in `done` and not in `skip` (indices into [`attack_units`]: units another worker
/// runs), appending each finished one; `false` when cancelled. Progress reports count attacked examples after
/// `before` examples of earlier work, of `total`.
#[allow(clippy::too_many_arguments)]
pub async fn run_attack_units<B: Backend, H: Hooks>(
    spec: &Spec,
    be: &B,
    models: &[LoadedModel<B>],
    data: &[super::Dataset],
    done: &mut Vec<AttackResult>,
    hooks: &mut H,
    before: usize,
    total: usize,
    skip: &[usize],
) -> Result<bool> {
    let units = attack_units(spec);
    let eval_units = spec.units().len();
    let mut before = before;
    for (ui, unit) in units.iter().enumerate() {
        let cfg = &spec.attacks[unit.config];
        let ds = data
            .iter()
            .find(|d| d.task == unit.task && d.split == unit.split)
            .ok_or_else(|| Error::Invalid(format!("the run was given no data for {}/{}", unit.task, unit.split)))?;
        let n = spec.limit.map_or(ds.examples.len(), |l| l.min(ds.examples.len()));
        if skip.contains(&ui) || done.iter().any(|r| r.model == unit.model && r.task == unit.task && r.split == unit.split && &r.attack == cfg) {
            before += n * super::ATTACK_EXAMPLE_WEIGHT;
            continue;
        }
        let lm = models.iter().find(|m| m.record.name == unit.model).ok_or_else(|| Error::Invalid(format!("the run was given no model {}", unit.model)))?;
        let mut victim = ModelVictim::with_readout(be, &lm.model, &lm.tokenizer, lm.readout(spec, unit.task)?);
        let lex = Lexicon { synonyms: SynonymTable::bundled(), neighbours: &lm.neighbours };
        let mut prog = Progress {
            unit: eval_units + ui,
            units: eval_units + units.len(),
            model: unit.model.clone(),
            task: unit.task,
            split: unit.split,
            attack: Some(cfg.recipe.name().to_string()),
            done: 0,
            total: n,
            fraction: before as f64 / total.max(1) as f64,
        };
        if !hooks.progress(&prog) {
            return Ok(false);
        }
        let t0 = hooks.now_ms();
        let mut records = Vec::with_capacity(n);
        for e in &ds.examples[..n] {
            records.push(search::attack(&mut victim, &lex, &input(e), e.label, e.idx, cfg, spec.seed).await?);
            prog.done += 1;
            prog.fraction = (before + prog.done * super::ATTACK_EXAMPLE_WEIGHT) as f64 / total.max(1) as f64;
            if !hooks.progress(&prog) {
                return Ok(false);
            }
            hooks.pause().await;
        }
        let seconds = (hooks.now_ms() - t0) / 1000.0;
        let queries: usize = records.iter().map(|r| r.queries).sum();
        done.push(AttackResult {
            model: unit.model.clone(),
            architecture: lm.record.architecture.clone(),
            task: unit.task,
            split: unit.split,
            attack: cfg.clone(),
            backend: be.info().kind,
            summary: metrics::summarize(&records)?,
            records,
            timing: AttackTiming { seconds, queries_per_second: queries as f64 / seconds.max(1e-9), examples_per_second: n as f64 / seconds.max(1e-9) },
        });
        before += n * super::ATTACK_EXAMPLE_WEIGHT;
    }
    Ok(true)
}

/// The transfer matrices of the finished attacks (only where at least two models attacked the same (task, split,
/// attack)): every target model classifies every source model's successful texts.
pub async fn transfer_matrices<B: Backend>(spec: &Spec, be: &B, models: &[LoadedModel<B>], done: &[AttackResult]) -> Result<Vec<TransferMatrix>> {
    let mut out: Vec<TransferMatrix> = Vec::new();
    for r in done {
        if out.iter().any(|m| m.task == r.task && m.split == r.split && m.attack == r.attack) {
            continue;
        }
        let group: Vec<&AttackResult> = done.iter().filter(|o| o.task == r.task && o.split == r.split && o.attack == r.attack).collect();
        if group.len() < 2 {
            continue;
        }
        let mut cells = Vec::new();
        for src in &group {
            for tgt in &group {
                let lm = models.iter().find(|m| m.record.name == tgt.model).ok_or_else(|| Error::Invalid(format!("no model {}", tgt.model)))?;
                // The target's own attack saw every original: its first prediction is its clean one.
                let clean_of: std::collections::HashMap<u64, u32> = tgt.records.iter().map(|t| (t.idx, t.before.prediction)).collect();
                let clean: Vec<u32> = src.records.iter().map(|s| clean_of.get(&s.idx).copied().unwrap_or(u32::MAX)).collect();
                let ok: Vec<usize> = (0..src.records.len()).filter(|&k| src.records[k].outcome == Outcome::Succeeded).collect();
                let mut adversarial = vec![u32::MAX; src.records.len()];
                if !ok.is_empty() {
                    let inputs: Vec<Input> = ok.iter().map(|&k| src.records[k].perturbed.clone()).collect();
                    let probs = ModelVictim::with_readout(be, &lm.model, &lm.tokenizer, lm.readout(spec, r.task)?).probs(&inputs).await?;
                    for (&k, p) in ok.iter().zip(&probs) {
                        adversarial[k] = crate::eval::argmax(p);
                    }
                }
                cells.push(metrics::transfer(&src.model, &tgt.model, &src.records, &clean, &adversarial)?);
            }
        }
        out.push(TransferMatrix { task: r.task, split: r.split, attack: r.attack.clone(), cells });
    }
    Ok(out)
}
