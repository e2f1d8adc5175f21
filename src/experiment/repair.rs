//! The spec's `repair` section in the engine: for every compressed copy × task, decoding
//! calibration fitted on a labelled calibration split (temperature scaling on gold labels, and T, β
//! fitted to the original model's outputs by KL, methods.md §4.5.3), and, with `prompts > 0`, a
//! pool of soft prompts trained on the compressed copy and evaluated per input (IDP, §3) against the
//! single best fixed prompt and one long prompt.
//!
//! Calibration data: by default the task's rows of the bundled calibration set (GLUE train rows
//! compiled into the library, [`crate::data::calibration`], drawn with the spec's seed as the
//! calibration-based compressions draw them); or a seeded sample of the task's training split (MNLI
//! mismatched uses MNLI's; natively only: the page does not serve `assets/train/`) or of its
//! validation split, given to the run as a [`Dataset`] ([`Spec::calibration_data`]). Calibration
//! examples drawn from an evaluated split are held out: every number of this module on that split
//! (the hemorrhage rows' calibration too) is measured on the rest.
//!
//! Prompts are trained and chosen on candle's CPU tensors (the twin of the compressed model, in wasm
//! too); classification with the chosen prompt runs on the run's backend
//! ([`crate::models::Model::classify_batch_with_prefix`]). Everything measured sits under `timing`.

use super::{Dataset, Done, Hooks, LoadedModel, Progress, Spec};
use crate::backend::{Backend, HostTensor};
use crate::data::{Example, Split, Task};
use crate::error::{Error, Result};
use crate::eval::{self, hemorrhage as hm};
use crate::repair::prompts::{self, FrozenTwin, Pool, Selector, Seq, TrainConfig};
use crate::data::calibration::CalibrationRecord;
use crate::repair::{calibration_sample, text_prompts, CalibrationSplit, PromptPool, RepairSpec};

/// Decoding calibration of one compressed copy on one task's calibration split.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CalibrationFit {
    pub model: String,
    pub base: String,
    pub task: Task,
    /// Where the calibration examples come from, and how many; for the bundled set, which rows (sha256).
    pub split: CalibrationSplit,
    pub n: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundled: Option<CalibrationRecord>,
    /// Guo et al.: T minimising the compressed copy's NLL on the gold labels; its ECE (15 bins) and
    /// mean NLL before and after (T minimises the NLL on these examples; the ECE may move either way).
    pub temperature: f64,
    pub ece: f64,
    pub ece_after: f64,
    pub nll: f64,
    pub nll_after: f64,
    /// §4.5.3: T and β minimising KL(original ‖ softmax(z/T + β)); the KL before and after.
    pub kl_temperature: f64,
    pub kl_bias: Vec<f64>,
    pub kl: f64,
    pub kl_after: f64,
}

/// A hemorrhage row's decoding calibration: the fits of [`CalibrationFit`] applied to the row's split
/// (its examples less the calibration ones when they were drawn from it).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HemorrhageCalibration {
    /// Calibration examples the fits used, and the row's examples measured here (held out).
    pub calibration_n: usize,
    pub n: usize,
    pub temperature: f64,
    /// ECE (15 bins) of the compressed copy on this split, before and after T.
    pub ece: f64,
    pub ece_after: f64,
    pub kl_temperature: f64,
    pub kl_bias: Vec<f64>,
    /// KL(original ‖ compressed) and agreement on these examples, before and after `softmax(z/T + β)`.
    pub kl: f64,
    pub kl_after: f64,
    pub agreement: f64,
    pub agreement_after: f64,
}

/// One evaluated split of a repaired copy.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RepairSplit {
    pub split: Split,
    /// Examples measured: the evaluated ones, less the calibration examples when drawn from this split.
    pub n: usize,
    pub accuracy_original: f64,
    pub accuracy_compressed: f64,
    /// The pool's best prompt on the calibration split, used for every input (n vectors).
    pub accuracy_best_prompt: f64,
    /// One prompt of m·n vectors trained alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_long_prompt: Option<f64>,
    /// One prompt of the pool per input (IDP).
    pub accuracy_idp: f64,
    /// `(acc_X − acc_comp)/(acc_orig − acc_comp)`; absent when the compression lost nothing.
    pub recovery: Option<f64>,
    pub recovery_best_prompt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_long_prompt: Option<f64>,
    /// `acc_IDP − acc_fixed`: what choosing per input adds over the single best fixed prompt.
    pub idp_minus_best_prompt: f64,
    /// Its 95% interval, the examples resampled as pairs (seeded, the spec's `bootstrap` resamples).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_minus_best_prompt_ci95: Option<[f64; 2]>,
    /// How many inputs chose each prompt.
    pub histogram: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RepairTiming {
    /// Training the pool, and the long prompt.
    pub train_seconds: f64,
    pub long_train_seconds: Option<f64>,
    /// Selection and classification of every evaluated split (pool, best prompt, long prompt).
    pub eval_seconds: f64,
}

/// A long prompt's training.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LongPrompt {
    pub tokens: usize,
    pub steps: usize,
    pub loss_before: f64,
    pub loss_after: f64,
}

/// A pool trained (soft) or chosen from (text) for one compressed copy and task. A text pool is not
/// trained: `tokens`, `steps` and `extra_parameters` are 0, `loss_before` is the calibration
/// cross-entropy of the copy with the original's best template and `loss_after` with the template
/// chosen per input.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RepairResult {
    pub model: String,
    pub base: String,
    pub task: Task,
    #[serde(default)]
    pub pool: PromptPool,
    /// The text pool's templates (`{a}`, `{b}`: the example's fields) and answer words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<String>,
    /// The text pool's best template for the original model on the calibration sample: the prompt the
    /// split's `accuracy_original` and `accuracy_compressed` are measured with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_prompt_original: Option<usize>,
    pub prompts: usize,
    pub tokens: usize,
    pub selector: Selector,
    /// m·n·H.
    pub extra_parameters: usize,
    pub calibration_split: CalibrationSplit,
    pub calibration_n: usize,
    pub steps: usize,
    /// Mean calibration cross-entropy (selected prompts) of the initial and the trained pool.
    pub loss_before: f64,
    pub loss_after: f64,
    /// Accuracy of each pool prompt alone on the calibration split, and the best (ties → lowest).
    pub prompt_calibration_accuracy: Vec<f64>,
    pub best_prompt: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_prompt: Option<LongPrompt>,
    pub splits: Vec<RepairSplit>,
    pub timing: RepairTiming,
}

/// The positions among the `evaluated` first examples of (`task`, `split`) that the spec's `repair`
/// section calibrates on, when it draws them from that evaluated split (held out of its numbers there).
pub fn held_out(spec: &Spec, task: Task, split: Split, evaluated: usize) -> Option<Vec<usize>> {
    let r = spec.repair.as_ref()?;
    (r.calibration_split.split() == Some(split) && r.calibration_split.source(task) == task && spec.data().contains(&(task, split)))
        .then(|| calibration_sample(spec.seed, task, split, evaluated, r.calibration))
}

/// The calibration examples of `task`: the task's rows of the bundled set (with their record), or a
/// seeded sample of `rs.calibration` from the calibration split's data in `data` (in file order),
/// drawn among the evaluated examples (the first `limit`) when the spec evaluates that split.
pub fn calibration_examples(spec: &Spec, rs: &RepairSpec, data: &[Dataset], task: Task) -> Result<(Vec<Example>, Option<CalibrationRecord>)> {
    let source = rs.calibration_split.source(task);
    let Some(split) = rs.calibration_split.split() else {
        let set = crate::data::calibration::subset(Some(source), rs.calibration, spec.seed)?;
        return Ok((set.examples.into_iter().map(|(_, e)| e).collect(), Some(set.record)));
    };
    let d = data.iter().find(|d| d.task == source && d.split == split).ok_or_else(|| {
        Error::Invalid(format!("repair needs the {split} split of {source} as calibration data, and the run was given none"))
    })?;
    let pick = match held_out(spec, task, split, evaluated(spec, d)) {
        Some(p) => p,
        None => calibration_sample(spec.seed, source, split, d.examples.len(), rs.calibration),
    };
    Ok((pick.into_iter().map(|i| d.examples[i].clone()).collect(), None))
}

/// How many of `d`'s examples the run evaluates (the first `limit`).
fn evaluated(spec: &Spec, d: &Dataset) -> usize {
    spec.limit.map_or(d.examples.len(), |l| l.min(d.examples.len()))
}

/// Class logits of `model` on `examples` with `task`'s head, optionally with a soft prompt: rows in
/// example order, plus the token ids.
async fn logits<B: Backend>(spec: &Spec, be: &B, lm: &LoadedModel<B>, task: Task, examples: &[Example], prefix: Option<&HostTensor>) -> Result<(Vec<Vec<f32>>, Vec<Vec<u32>>)> {
    let plan = eval::Plan::with_readout(&lm.tokenizer, lm.readout(spec, task)?, examples, spec.batch)?;
    let mut rows = vec![Vec::new(); examples.len()];
    for b in 0..plan.batches.len() {
        let out = match (prefix, &plan.readout) {
            (Some(p), eval::Readout::Head(head)) => lm.model.classify_batch_with_prefix(be, p, &plan.batch(b), Some(head))?,
            (Some(_), eval::Readout::Prompt { .. }) => {
                return Err(Error::Invalid(format!("repair: {} has no classification head for {task} to train soft prompts for: use the text pool", lm.record.name)))
            }
            (None, _) => plan.forward(be, &lm.model, b)?,
        };
        plan.scatter(b, &be.read(&out).await?, &mut rows)?;
    }
    Ok((rows, plan.seqs))
}

/// Class logits with a different prompt per example (`pick[i]` of `pool`): one batch per prompt.
async fn logits_picked<B: Backend>(spec: &Spec, be: &B, lm: &LoadedModel<B>, task: Task, examples: &[Example], pool: &Pool, pick: &[usize]) -> Result<Vec<Vec<f32>>> {
    let mut rows = vec![Vec::new(); examples.len()];
    for i in 0..pool.prompts {
        let mine: Vec<usize> = (0..examples.len()).filter(|&e| pick[e] == i).collect();
        if mine.is_empty() {
            continue;
        }
        let ex: Vec<Example> = mine.iter().map(|&e| examples[e].clone()).collect();
        let (r, _) = logits(spec, be, lm, task, &ex, Some(&pool.prompt(i)?)).await?;
        for (&e, row) in mine.iter().zip(r) {
            rows[e] = row;
        }
    }
    Ok(rows)
}

/// Row `e` of `rows[pick[e]]` for every input `e`: the class logits of each input's chosen prompt.
fn pick_rows(rows: &[Vec<Vec<f32>>], pick: &[usize]) -> Vec<Vec<f32>> {
    pick.iter().enumerate().map(|(e, &i)| rows[i][e].clone()).collect()
}

fn accuracy(rows: &[Vec<f32>], examples: &[Example]) -> f64 {
    let right = rows.iter().zip(examples).filter(|(r, e)| eval::argmax(r) == e.label).count();
    right as f64 / examples.len().max(1) as f64
}

/// 95% interval of accuracy(`x`) − accuracy(`y`) on the same examples, resampled as pairs; `what` names the seed.
fn gap_ci(spec: &Spec, what: &str, x: &[Vec<f32>], y: &[Vec<f32>], examples: &[Example]) -> Result<Option<[f64; 2]>> {
    if examples.is_empty() {
        return Ok(None);
    }
    let right = |rows: &[Vec<f32>]| -> Vec<bool> { rows.iter().zip(examples).map(|(r, e)| eval::argmax(r) == e.label).collect() };
    let (rx, ry) = (right(x), right(y));
    let acc = |v: &[bool], ix: &[usize]| ix.iter().filter(|&&i| v[i]).count() as f64 / ix.len() as f64;
    let seed = crate::rng::derive_seed(spec.seed, &format!("repair/{what}/idp-gap"));
    let (lo, hi) = eval::metrics::bootstrap_strata(&[examples.len()], spec.bootstrap, seed, |ix| Ok(acc(&rx, &ix[0]) - acc(&ry, &ix[0])))?;
    Ok(Some([lo, hi]))
}

fn recovery(x: f64, orig: f64, comp: f64) -> Option<f64> {
    (orig - comp > 1e-12).then(|| (x - comp) / (orig - comp))
}

/// Runs the spec's `repair` section (nothing without one) on the compressed copies it names; `false`
/// when cancelled. The soft prompts need each copy's checkpoint ([`LoadedModel::checkpoint`]).
pub async fn run<B: Backend, H: Hooks>(spec: &Spec, be: &B, models: &[LoadedModel<B>], data: &[Dataset], done: &mut Done, hooks: &mut H, fraction: f64) -> Result<bool> {
    let Some(rs) = &spec.repair else { return Ok(true) };
    done.calibration.clear();
    done.repairs.clear();
    let repaired = spec.repaired_compressions();
    let copies: Vec<&LoadedModel<B>> = models
        .iter()
        .filter(|m| match (&m.record.compressed_from, &m.record.compression) {
            (Some(base), Some(c)) => repaired.iter().any(|r| **r == c.recipe && super::spec::compressed_name(base, r) == m.record.name),
            _ => false,
        })
        .collect();
    let total = copies.len() * spec.tasks.len();
    for (ci, lm) in copies.iter().enumerate() {
        let base_name = lm.record.compressed_from.clone().unwrap_or_default();
        let base = models.iter().find(|m| m.record.name == base_name).ok_or_else(|| Error::Invalid(format!("the run has no model {base_name}")))?;
        for (ti, &task) in spec.tasks.iter().enumerate() {
            let mut prog = Progress {
                unit: ci * spec.tasks.len() + ti,
                units: total,
                model: lm.record.name.clone(),
                task,
                split: rs.calibration_split.split().unwrap_or(Split::Train),
                attack: Some("repair".into()),
                done: 0,
                total: 1,
                fraction,
            };
            if !hooks.progress(&prog) {
                return Ok(false);
            }
            let (calib, bundled) = calibration_examples(spec, rs, data, task)?;
            if calib.is_empty() {
                return Err(Error::Invalid(format!("repair: the calibration split of {task} has no examples")));
            }
            // Temperature scaling (gold labels) and decoding calibration (the original's outputs).
            let (base_rows, _) = logits(spec, be, base, task, &calib, None).await?;
            let (comp_rows, seqs) = logits(spec, be, lm, task, &calib, None).await?;
            let labels = crate::data::labels(&calib);
            let t = hm::fit_temperature(&comp_rows, &labels)?;
            let base_p = hm::apply_temperature(&base_rows, 1.0)?;
            let comp_p = hm::apply_temperature(&comp_rows, 1.0)?;
            let comp_t = hm::apply_temperature(&comp_rows, t)?;
            let (kt, kb) = hm::fit_temperature_kl(&base_p, &comp_rows)?;
            done.calibration.push(CalibrationFit {
                model: lm.record.name.clone(),
                base: base_name.clone(),
                task,
                split: rs.calibration_split,
                n: calib.len(),
                bundled,
                temperature: t,
                ece: hm::ece(&comp_p, &labels, hm::ECE_BINS)?,
                ece_after: hm::ece(&comp_t, &labels, hm::ECE_BINS)?,
                nll: mean_nll(&comp_p, &labels),
                nll_after: mean_nll(&comp_t, &labels),
                kl_temperature: kt,
                kl_bias: kb.clone(),
                kl: hm::kl_divergence(&base_p, &comp_p)?,
                kl_after: hm::kl_divergence(&base_p, &hm::apply_temperature_bias(&comp_rows, kt, &kb)?)?,
            });
            hooks.pause().await;
            if rs.prompts == 0 {
                continue;
            }
            if rs.pool == PromptPool::Text {
                let Some(result) = text_pool(spec, rs, be, base, lm, task, &calib, data, &mut prog, hooks).await? else { return Ok(false) };
                done.repairs.push(result);
                continue;
            }
            // Soft prompts, trained on the compressed copy's frozen twin (for a classification head).
            if lm.readout(spec, task)?.is_prompt() {
                return Err(Error::Invalid(format!(
                    "repair: {} has no classification head for {task} to train soft prompts for: use the text pool (\"pool\": \"text\")",
                    lm.record.name
                )));
            }
            let ck = lm.checkpoint.as_ref().ok_or_else(|| Error::Invalid(format!("repair: the run kept no checkpoint of {}", lm.record.name)))?;
            let twin = FrozenTwin::from_checkpoint(ck, task)?;
            let train: Vec<Seq> = seqs.into_iter().zip(&calib).map(|(ids, e)| Seq { ids, label: e.label }).collect();
            let seed = crate::rng::derive_seed(spec.seed, &format!("repair/{}/{task}", lm.record.name));
            let cfg = TrainConfig { prompts: rs.prompts, tokens: rs.tokens, epochs: rs.epochs, lr: rs.lr, batch: rs.batch, seed, selector: rs.selector };
            let t0 = hooks.now_ms();
            let Some(trained) = train_with_progress(&twin, &train, &cfg, rs.steps, &mut prog, hooks)? else { return Ok(false) };
            let train_seconds = (hooks.now_ms() - t0) / 1000.0;
            hooks.pause().await;
            let acc = prompts::prompt_accuracies(&twin, &trained.pool, &train)?;
            let best = prompts::argmax_lowest(&acc);
            let long = if rs.long_prompt {
                let t1 = hooks.now_ms();
                let lcfg = TrainConfig { prompts: 1, tokens: rs.prompts * rs.tokens, seed: crate::rng::derive_seed(seed, "long"), ..cfg.clone() };
                let Some(l) = train_with_progress(&twin, &train, &lcfg, rs.steps, &mut prog, hooks)? else { return Ok(false) };
                Some((l, (hooks.now_ms() - t1) / 1000.0))
            } else {
                None
            };
            hooks.pause().await;
            // Every evaluated split of the task (less the calibration examples when drawn from it).
            let t2 = hooks.now_ms();
            let mut splits = Vec::new();
            for d in data.iter().filter(|d| d.task == task && d.split != Split::Train && spec.data().contains(&(d.task, d.split))) {
                let n = evaluated(spec, d);
                let unit = |model: &str| done.units.iter().find(|u| u.model == model && u.task == task && u.split == d.split);
                let (Some(ou), Some(cu)) = (unit(&base_name), unit(&lm.record.name)) else { continue };
                if ou.predictions.len() != n || cu.predictions.len() != n {
                    return Err(Error::Invalid(format!("repair: {task} {} has {n} examples but the evaluations have {} and {}", d.split, ou.predictions.len(), cu.predictions.len())));
                }
                let Some((keep, examples)) = measured(spec, task, d, n) else { continue };
                let unit_acc = |u: &super::UnitResult| keep.iter().filter(|&&i| u.predictions[i].prediction == u.predictions[i].label).count() as f64 / keep.len() as f64;
                let (orig, comp) = (unit_acc(ou), unit_acc(cu));
                let plan = eval::Plan::with_readout(&lm.tokenizer, lm.readout(spec, task)?, &examples, spec.batch)?;
                let refs: Vec<&[u32]> = plan.seqs.iter().map(Vec::as_slice).collect();
                // Class logits of the per-input choice and of the best fixed prompt. Max confidence runs every prompt
                // on the backend and keeps the most confident row (ties → lowest): both come from those rows.
                let (pick, idp_rows, fixed_rows) = match rs.selector {
                    Selector::Attention => {
                        let pick = prompts::select(&twin, &trained.pool, &refs, Selector::Attention)?;
                        let idp_rows = logits_picked(spec, be, lm, task, &examples, &trained.pool, &pick).await?;
                        (pick, idp_rows, logits(spec, be, lm, task, &examples, Some(&trained.pool.prompt(best)?)).await?.0)
                    }
                    Selector::Confidence => {
                        let mut rows = Vec::with_capacity(trained.pool.prompts);
                        for i in 0..trained.pool.prompts {
                            rows.push(logits(spec, be, lm, task, &examples, Some(&trained.pool.prompt(i)?)).await?.0);
                        }
                        let pick = crate::repair::most_confident(&rows);
                        let idp_rows = pick_rows(&rows, &pick);
                        (pick, idp_rows, rows.swap_remove(best))
                    }
                };
                let (idp, fixed) = (accuracy(&idp_rows, &examples), accuracy(&fixed_rows, &examples));
                let long_acc = match &long {
                    Some((l, _)) => Some(accuracy(&logits(spec, be, lm, task, &examples, Some(&l.pool.prompt(0)?)).await?.0, &examples)),
                    None => None,
                };
                let mut histogram = vec![0usize; trained.pool.prompts];
                pick.iter().for_each(|&i| histogram[i] += 1);
                splits.push(RepairSplit {
                    split: d.split,
                    n: examples.len(),
                    accuracy_original: orig,
                    accuracy_compressed: comp,
                    accuracy_best_prompt: fixed,
                    accuracy_long_prompt: long_acc,
                    accuracy_idp: idp,
                    recovery: recovery(idp, orig, comp),
                    recovery_best_prompt: recovery(fixed, orig, comp),
                    recovery_long_prompt: long_acc.and_then(|a| recovery(a, orig, comp)),
                    idp_minus_best_prompt: idp - fixed,
                    idp_minus_best_prompt_ci95: gap_ci(spec, &format!("{}/{task}/{}", lm.record.name, d.split), &idp_rows, &fixed_rows, &examples)?,
                    histogram,
                });
                hooks.pause().await;
            }
            done.repairs.push(RepairResult {
                model: lm.record.name.clone(),
                base: base_name.clone(),
                task,
                pool: PromptPool::Soft,
                templates: Vec::new(),
                best_prompt_original: None,
                prompts: rs.prompts,
                tokens: rs.tokens,
                selector: rs.selector,
                extra_parameters: trained.pool.parameters(),
                calibration_split: rs.calibration_split,
                calibration_n: train.len(),
                steps: trained.steps,
                loss_before: trained.loss_before,
                loss_after: trained.loss_after,
                prompt_calibration_accuracy: acc,
                best_prompt: best,
                long_prompt: long.as_ref().map(|(l, _)| LongPrompt { tokens: l.pool.tokens, steps: l.steps, loss_before: l.loss_before, loss_after: l.loss_after }),
                splits,
                timing: RepairTiming { train_seconds, long_train_seconds: long.as_ref().map(|(_, s)| *s), eval_seconds: (hooks.now_ms() - t2) / 1000.0 },
            });
        }
    }
    Ok(true)
}

/// The positions of `d`'s evaluated examples (the first `n`) that repair numbers are measured on (less the
/// calibration examples when drawn from this split), and those examples; `None` when none is left.
fn measured(spec: &Spec, task: Task, d: &Dataset, n: usize) -> Option<(Vec<usize>, Vec<Example>)> {
    let cal = held_out(spec, task, d.split, n).unwrap_or_default();
    let keep: Vec<usize> = (0..n).filter(|i| cal.binary_search(i).is_err()).collect();
    let examples: Vec<Example> = keep.iter().map(|&i| d.examples[i].clone()).collect();
    (!keep.is_empty()).then_some((keep, examples))
}

/// The hard text pool ([`text_prompts`]) for the copy `lm` of `base` on `task`: each of the first m templates
/// read through both models' LM heads on the calibration examples picks the original's best template (the
/// baseline prompt: what a user kept from before the compression) and the copy's best fixed template; on every
/// evaluated split, the copy with the template chosen per input (most confident) against both. `None` when
/// cancelled.
#[allow(clippy::too_many_arguments)]
async fn text_pool<B: Backend, H: Hooks>(
    spec: &Spec,
    rs: &RepairSpec,
    be: &B,
    base: &LoadedModel<B>,
    lm: &LoadedModel<B>,
    task: Task,
    calib: &[Example],
    data: &[Dataset],
    prog: &mut Progress,
    hooks: &mut H,
) -> Result<Option<RepairResult>> {
    let templates = &text_prompts::pool(task)[..rs.prompts.min(text_prompts::POOL_SIZE)];
    let m = templates.len();
    let splits_run: Vec<&Dataset> = data.iter().filter(|d| d.task == task && d.split != Split::Train && spec.data().contains(&(d.task, d.split))).collect();
    prog.total = 2 * m + splits_run.len() * (m + 1);
    prog.done = 0;
    let step = async |prog: &mut Progress, hooks: &mut H| -> bool {
        prog.done += 1;
        let go = hooks.progress(prog);
        hooks.pause().await;
        go
    };
    let t0 = hooks.now_ms();
    let labels = crate::data::labels(calib);
    let (mut acc_orig, mut acc_comp, mut calib_rows) = (Vec::new(), Vec::new(), Vec::new());
    for tpl in templates {
        let ro = text_prompts::class_logits(be, &base.model, &base.tokenizer, task, tpl, calib, spec.batch).await?;
        acc_orig.push(accuracy(&ro, calib));
        if !step(prog, hooks).await {
            return Ok(None);
        }
        let rc = text_prompts::class_logits(be, &lm.model, &lm.tokenizer, task, tpl, calib, spec.batch).await?;
        acc_comp.push(accuracy(&rc, calib));
        calib_rows.push(rc);
        if !step(prog, hooks).await {
            return Ok(None);
        }
    }
    let (best_orig, best) = (prompts::argmax_lowest(&acc_orig), prompts::argmax_lowest(&acc_comp));
    let calib_pick = crate::repair::most_confident(&calib_rows);
    let ce = |rows: &[Vec<f32>]| hm::apply_temperature(rows, 1.0).map(|p| mean_nll(&p, &labels));
    let (loss_before, loss_after) = (ce(&calib_rows[best_orig])?, ce(&pick_rows(&calib_rows, &calib_pick))?);
    let train_seconds = (hooks.now_ms() - t0) / 1000.0;
    let t1 = hooks.now_ms();
    let mut splits = Vec::new();
    for d in splits_run {
        let n = evaluated(spec, d);
        let Some((_, examples)) = measured(spec, task, d, n) else { continue };
        let orig_rows = text_prompts::class_logits(be, &base.model, &base.tokenizer, task, &templates[best_orig], &examples, spec.batch).await?;
        if !step(prog, hooks).await {
            return Ok(None);
        }
        let mut rows = Vec::with_capacity(m);
        for tpl in templates {
            rows.push(text_prompts::class_logits(be, &lm.model, &lm.tokenizer, task, tpl, &examples, spec.batch).await?);
            if !step(prog, hooks).await {
                return Ok(None);
            }
        }
        let pick = crate::repair::most_confident(&rows);
        let (orig, comp) = (accuracy(&orig_rows, &examples), accuracy(&rows[best_orig], &examples));
        let idp_rows = pick_rows(&rows, &pick);
        let (fixed, idp) = (accuracy(&rows[best], &examples), accuracy(&idp_rows, &examples));
        let mut histogram = vec![0usize; m];
        pick.iter().for_each(|&i| histogram[i] += 1);
        splits.push(RepairSplit {
            split: d.split,
            n: examples.len(),
            accuracy_original: orig,
            accuracy_compressed: comp,
            accuracy_best_prompt: fixed,
            accuracy_long_prompt: None,
            accuracy_idp: idp,
            recovery: recovery(idp, orig, comp),
            recovery_best_prompt: recovery(fixed, orig, comp),
            recovery_long_prompt: None,
            idp_minus_best_prompt: idp - fixed,
            idp_minus_best_prompt_ci95: gap_ci(spec, &format!("{}/{task}/{}", lm.record.name, d.split), &idp_rows, &rows[best], &examples)?,
            histogram,
        });
    }
    Ok(Some(RepairResult {
        model: lm.record.name.clone(),
        base: base.record.name.clone(),
        task,
        pool: PromptPool::Text,
        templates: templates.iter().map(|t| format!("{} → {}", t.text, t.words.join(" / "))).collect(),
        best_prompt_original: Some(best_orig),
        prompts: m,
        tokens: 0,
        selector: Selector::Confidence,
        extra_parameters: 0,
        calibration_split: rs.calibration_split,
        calibration_n: calib.len(),
        steps: 0,
        loss_before,
        loss_after,
        prompt_calibration_accuracy: acc_comp,
        best_prompt: best,
        long_prompt: None,
        splits,
        timing: RepairTiming { train_seconds, long_train_seconds: None, eval_seconds: (hooks.now_ms() - t1) / 1000.0 },
    }))
}

/// [`prompts::train_pool`] with progress, cancellation and the `steps` cap; `None` when cancelled.
fn train_with_progress<H: Hooks>(twin: &FrozenTwin, seqs: &[Seq], cfg: &TrainConfig, cap: Option<usize>, prog: &mut Progress, hooks: &mut H) -> Result<Option<prompts::Trained>> {
    let mut cancelled = false;
    let trained = prompts::train_pool(twin, seqs, cfg, &mut |step, steps| {
        prog.done = step;
        prog.total = cap.map_or(steps, |c| c.min(steps));
        cancelled = !hooks.progress(prog);
        !cancelled && cap.is_none_or(|c| step < c)
    })?;
    Ok((!cancelled).then_some(trained))
}

/// Mean NLL of probability rows at the gold labels (probabilities clamped to 1e-30).
fn mean_nll(probs: &[Vec<f32>], labels: &[u32]) -> f64 {
    probs.iter().zip(labels).map(|(p, &l)| -(p[l as usize].max(1e-30) as f64).ln()).sum::<f64>() / probs.len().max(1) as f64
}

/// The decoding calibration of a hemorrhage row: `fit`'s T (gold labels) and T, β (KL) applied to
/// the row's probabilities (`base`, `comp`, stored as probabilities: their logs serve as logits) at
/// the positions `keep`.
pub fn hemorrhage_calibration(fit: &CalibrationFit, base: &[Vec<f32>], comp: &[Vec<f32>], labels: &[u32], keep: &[usize]) -> Result<HemorrhageCalibration> {
    let pick = |rows: &[Vec<f32>]| keep.iter().map(|&i| rows[i].clone()).collect::<Vec<_>>();
    let (base, comp) = (pick(base), pick(comp));
    let labels: Vec<u32> = keep.iter().map(|&i| labels[i]).collect();
    let z = hm::logits_of_probs(&comp);
    let kl_cal = hm::apply_temperature_bias(&z, fit.kl_temperature, &fit.kl_bias)?;
    Ok(HemorrhageCalibration {
        calibration_n: fit.n,
        n: keep.len(),
        temperature: fit.temperature,
        ece: hm::ece(&comp, &labels, hm::ECE_BINS)?,
        ece_after: hm::ece(&hm::apply_temperature(&z, fit.temperature)?, &labels, hm::ECE_BINS)?,
        kl_temperature: fit.kl_temperature,
        kl_bias: fit.kl_bias.clone(),
        kl: hm::kl_divergence(&base, &comp)?,
        kl_after: hm::kl_divergence(&base, &kl_cal)?,
        agreement: hm::agreement_rate(&base, &comp)?,
        agreement_after: hm::agreement_rate(&base, &kl_cal)?,
    })
}
