//! The spec's `repair` section end to end on the bundled models: soft-prompt pools (IDP) and
//! temperature scaling / decoding calibration of compressed copies. Kept small (a few dozen
//! calibration examples, a handful of optimiser steps) so it runs in seconds.
#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use trilemma::data::{Split, Task};
use trilemma::experiment::native::{self, NativeHooks};
use trilemma::experiment::{without_timing, Progress, Results, Spec};
use trilemma::repair::{calibration_sample, CalibrationSplit};

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets")
}

fn spec(json: &str) -> Spec {
    Spec::from_json(json.as_bytes(), &|m| native::model_exists(&assets(), m)).unwrap()
}

fn run(s: &Spec) -> Results {
    let mut sink = |_: &Progress| {};
    let mut hooks = NativeHooks::new(&mut sink, Arc::new(AtomicBool::new(false)));
    native::run(s, &assets(), None, &mut hooks).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12
}

/// Calibration on a held-out part of the validation split (what the page runs): the numbers are
/// deterministic, measured on the rest of the split, and agree with the evaluations they build on.
#[test]
fn a_repair_run_on_the_validation_split_is_deterministic_and_consistent() {
    const LIMIT: usize = 56;
    const CALIB: usize = 24;
    let json = format!(
        r#"{{"models": ["transformer"], "tasks": ["sst2"], "splits": ["validation"], "limit": {LIMIT}, "bootstrap": 50, "batch": 16, "seed": 5,
            "compressions": [{{"method": "magnitude", "sparsity": 0.6}}, {{"method": "int8"}}],
            "repair": {{"prompts": 3, "tokens": 2, "epochs": 1, "batch": 8, "calibration": {CALIB}, "calibration_split": "validation", "compressions": [0]}}}}"#
    );
    let s = spec(&json);
    let a = run(&s).to_json();
    let b = run(&s).to_json();
    assert_eq!(without_timing(&a).unwrap(), without_timing(&b).unwrap(), "same spec and seed, same numbers");
    let r = Results::from_json(a.as_bytes()).unwrap();
    // Only the first compression is repaired.
    let name = "transformer + magnitude 0.6";
    assert_eq!(r.calibration.len(), 1);
    assert_eq!(r.repair.len(), 1);
    let (fit, rep) = (&r.calibration[0], &r.repair[0]);
    assert_eq!((fit.model.as_str(), fit.task, fit.split, fit.n), (name, Task::Sst2, CalibrationSplit::Validation, CALIB));
    assert!(fit.bundled.is_none());
    // T minimises the NLL on the calibration examples (T = 1 is in the searched range), and T, β the KL to the
    // original (the fit starts at T = 1, β = 0 and keeps only improvements); the ECE is not what is minimised.
    assert!(fit.nll_after <= fit.nll + 1e-6, "{fit:?}");
    assert!(fit.kl_after <= fit.kl + 1e-6, "{fit:?}");
    assert!(fit.temperature > 0.0 && fit.kl_temperature > 0.0 && fit.kl_bias.len() == 2);
    assert!((0.0..=1.0).contains(&fit.ece) && (0.0..=1.0).contains(&fit.ece_after));

    // The held-out examples: the validation examples less the seeded calibration sample.
    let cal = calibration_sample(s.seed, Task::Sst2, Split::Validation, LIMIT, CALIB);
    assert_eq!(cal.len(), CALIB);
    let keep: Vec<usize> = (0..LIMIT).filter(|i| !cal.contains(i)).collect();
    let unit = |m: &str| r.units.iter().find(|u| u.model == m && u.split == Split::Validation).unwrap();
    let acc = |m: &str| keep.iter().filter(|&&i| unit(m).predictions[i].prediction == unit(m).predictions[i].label).count() as f64 / keep.len() as f64;

    assert_eq!((rep.model.as_str(), rep.base.as_str(), rep.prompts, rep.tokens), (name, "transformer", 3, 2));
    assert_eq!((rep.calibration_split, rep.calibration_n), (CalibrationSplit::Validation, CALIB));
    assert_eq!(rep.steps, CALIB.div_ceil(8), "one epoch of batches of 8");
    assert_eq!(rep.extra_parameters, 3 * 2 * 128, "m·n·H");
    assert_eq!(rep.prompt_calibration_accuracy.len(), 3);
    let best = rep.prompt_calibration_accuracy.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(rep.prompt_calibration_accuracy[rep.best_prompt], best);
    assert!(rep.prompt_calibration_accuracy[..rep.best_prompt].iter().all(|&a| a < best), "ties go to the lowest index");
    assert!(rep.loss_before.is_finite() && rep.loss_after.is_finite());
    assert_eq!(rep.splits.len(), 1);
    let sp = &rep.splits[0];
    assert_eq!((sp.split, sp.n), (Split::Validation, LIMIT - CALIB));
    assert_eq!(sp.accuracy_original, acc("transformer"));
    assert_eq!(sp.accuracy_compressed, acc(name));
    assert_eq!(sp.histogram.len(), 3);
    assert_eq!(sp.histogram.iter().sum::<usize>(), sp.n);
    let n = sp.n as f64;
    for x in [sp.accuracy_best_prompt, sp.accuracy_idp, sp.accuracy_long_prompt.unwrap()] {
        assert!((0.0..=1.0).contains(&x) && close((x * n).round(), x * n), "{x} is a share of {n} examples");
    }
    assert!(close(sp.idp_minus_best_prompt, sp.accuracy_idp - sp.accuracy_best_prompt));
    let gap = sp.accuracy_original - sp.accuracy_compressed;
    match sp.recovery {
        Some(rec) => {
            assert!(gap > 0.0);
            assert!(close(rec, (sp.accuracy_idp - sp.accuracy_compressed) / gap));
            assert!(close(sp.recovery_best_prompt.unwrap(), (sp.accuracy_best_prompt - sp.accuracy_compressed) / gap));
        }
        None => assert!(gap <= 0.0 && sp.recovery_best_prompt.is_none()),
    }
    let long = rep.long_prompt.as_ref().unwrap();
    assert_eq!((long.tokens, long.steps), (6, rep.steps));

    // The hemorrhage rows: the repaired copy's carries the calibration, on the held-out examples.
    let h = r.hemorrhage.iter().find(|h| h.model == name).unwrap();
    let c = h.calibration.as_ref().unwrap();
    assert_eq!((h.n, c.n, c.calibration_n), (LIMIT, LIMIT - CALIB, CALIB));
    assert_eq!((c.temperature, c.kl_temperature, &c.kl_bias), (fit.temperature, fit.kl_temperature, &fit.kl_bias));
    let agree = keep.iter().filter(|&&i| unit(name).predictions[i].prediction == unit("transformer").predictions[i].prediction).count();
    assert!(close(c.agreement, agree as f64 / keep.len() as f64));
    assert!(r.hemorrhage.iter().find(|h| h.model == "transformer + int8").unwrap().calibration.is_none(), "not repaired");

    // Another seed draws another calibration sample and another pool.
    let mut s2 = s.clone();
    s2.seed = 6;
    assert_ne!(run(&s2).repair, r.repair);

    let html = trilemma::report::html(&r).unwrap();
    assert!(html.contains("<h2>Repair</h2>") && html.contains("Soft prompts chosen per input") && html.contains("Temperature scaling"));
}

/// Calibration on the training split (natively only), one prompt in the pool, the `steps` cap and the
/// max-confidence selector: with one prompt the per-input choice is that prompt, so IDP and the best
/// fixed prompt are the same numbers.
#[test]
fn a_pool_of_one_prompt_is_the_fixed_prompt() {
    let s = spec(
        r#"{"models": ["gla"], "tasks": ["rte"], "splits": ["validation"], "limit": 24, "bootstrap": 50, "batch": 16,
            "compressions": [{"method": "int4", "group": 32}],
            "repair": {"prompts": 1, "tokens": 2, "steps": 2, "batch": 4, "calibration": 16, "calibration_split": "train", "selector": "confidence", "long_prompt": false}}"#,
    );
    assert_eq!(s.calibration_data(), [(Task::Rte, Split::Train)]);
    let r = run(&s);
    let rep = &r.repair[0];
    assert_eq!((rep.steps, rep.calibration_split, rep.calibration_n, rep.best_prompt), (2, CalibrationSplit::Train, 16, 0));
    assert!(rep.long_prompt.is_none());
    let sp = &rep.splits[0];
    assert_eq!((sp.n, &sp.histogram), (24, &vec![24]), "nothing held out of validation");
    assert_eq!(sp.accuracy_idp, sp.accuracy_best_prompt);
    assert_eq!(sp.idp_minus_best_prompt, 0.0);
    assert!(sp.accuracy_long_prompt.is_none());
    let c = r.hemorrhage[0].calibration.as_ref().unwrap();
    assert_eq!((c.n, c.calibration_n), (24, 16));
    assert_eq!(r.calibration[0].split, CalibrationSplit::Train);
}

/// `prompts: 0`: temperature scaling and decoding calibration only, on the bundled calibration set
/// (the default: compiled in, disjoint from the evaluated examples, nothing held out).
#[test]
fn prompts_zero_calibrates_only_on_the_bundled_set() {
    let s = spec(
        r#"{"models": ["transformer"], "tasks": ["sst2"], "splits": ["validation"], "limit": 40, "bootstrap": 50,
            "compressions": [{"method": "svd", "rank_fraction": 0.25}],
            "repair": {"prompts": 0, "calibration": 16}}"#,
    );
    assert!(s.calibration_data().is_empty());
    let r = run(&s);
    assert!(r.repair.is_empty());
    assert_eq!(r.calibration.len(), 1);
    let fit = &r.calibration[0];
    assert_eq!((fit.split, fit.n), (CalibrationSplit::Bundled, 16));
    let rec = fit.bundled.as_ref().unwrap();
    assert_eq!(rec, &trilemma::data::calibration::subset(Some(Task::Sst2), 16, s.seed).unwrap().record, "the rows the compressions would draw");
    assert!(fit.nll_after <= fit.nll + 1e-6 && fit.kl_after <= fit.kl + 1e-6, "{fit:?}");
    assert_eq!(r.hemorrhage[0].calibration.as_ref().unwrap().n, 40);
    assert!(trilemma::report::html(&r).unwrap().contains("Temperature scaling and decoding calibration"));
}

/// Every task's text pool gives each class a distinct answer token with the bundled tokenizer.
#[test]
fn every_text_pool_has_distinct_answer_tokens_with_the_bundled_tokenizer() {
    use trilemma::repair::text_prompts;
    let tok = trilemma::text::TextTokenizer::from_json_bytes(&std::fs::read(assets().join("models/gla/tokenizer.json")).unwrap()).unwrap();
    for task in [Task::Sst2, Task::Cola, Task::Mrpc, Task::Qqp, Task::Mnli, Task::Qnli, Task::Rte] {
        for tpl in text_prompts::pool(task) {
            let ids = text_prompts::verbalizer_ids(&tok, tpl).unwrap_or_else(|e| panic!("{task} {:?}: {e}", tpl.text));
            assert_eq!(ids.len(), task.num_labels() as usize);
        }
    }
}

/// The hard text pool through the LM head: its numbers are what the prompts give when the models are
/// run directly; the choice is per input and the best fixed template is the calibration's best; at zero
/// compression the copy is the original (same accuracies, no recovery to measure); run twice, the same.
#[test]
fn a_text_pool_through_the_lm_head_matches_the_models_run_directly() {
    use trilemma::backend::cpu::CpuBackend;
    use trilemma::compress::apply::{apply, Recipe};
    use trilemma::repair::{text_prompts, PromptPool};
    const LIMIT: usize = 40;
    let s = spec(
        r#"{"models": ["gla"], "tasks": ["sst2"], "splits": ["validation"], "limit": 40, "bootstrap": 50, "batch": 16,
            "compressions": [{"method": "int4", "group": 32}, {"method": "magnitude", "sparsity": 0.0}],
            "repair": {"prompts": 3, "pool": "text", "calibration": 16}}"#,
    );
    let r = run(&s);
    assert_eq!(without_timing(&r.to_json()).unwrap(), without_timing(&run(&s).to_json()).unwrap(), "deterministic");
    assert_eq!(r.repair.len(), 2);
    let rep = &r.repair[0];
    assert_eq!((rep.model.as_str(), rep.pool, rep.prompts, rep.tokens, rep.steps, rep.extra_parameters), ("gla + int4 g32", PromptPool::Text, 3, 0, 0, 0));
    assert_eq!(rep.templates.len(), 3);
    assert!(rep.long_prompt.is_none());
    let best_orig = rep.best_prompt_original.unwrap();
    let best = rep.best_prompt;
    let top = rep.prompt_calibration_accuracy.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(rep.prompt_calibration_accuracy[best], top);
    assert!(rep.prompt_calibration_accuracy[..best].iter().all(|&a| a < top), "ties go to the lowest index");

    // The same numbers from the models run directly on the CPU.
    let be = CpuBackend::new();
    let ck = trilemma::io::Checkpoint::load_dir(&assets().join("models/gla")).unwrap();
    let tok = trilemma::text::TextTokenizer::from_json_bytes(ck.tokenizer_json.as_deref().unwrap()).unwrap();
    let original = trilemma::models::Model::load(&be, ck.clone()).unwrap();
    let copy = trilemma::models::Model::load(&be, apply(&ck, &Recipe::int4(32)).unwrap().0).unwrap();
    let ex: Vec<_> = trilemma::data::load_split(&assets(), Task::Sst2, Split::Validation).unwrap().into_iter().take(LIMIT).collect();
    let pool = &text_prompts::pool(Task::Sst2)[..3];
    let logits = |m: &trilemma::models::Model<CpuBackend>, i: usize| pollster::block_on(text_prompts::class_logits(&be, m, &tok, Task::Sst2, &pool[i], &ex, 7)).unwrap();
    let acc = |rows: &[Vec<f32>]| rows.iter().zip(&ex).filter(|(r, e)| trilemma::eval::argmax(r) == e.label).count() as f64 / LIMIT as f64;
    let rows: Vec<Vec<Vec<f32>>> = (0..3).map(|i| logits(&copy, i)).collect();
    let pick = trilemma::repair::most_confident(&rows);
    let sp = &rep.splits[0];
    assert_eq!((sp.split, sp.n), (Split::Validation, LIMIT), "the bundled calibration set holds nothing out");
    assert_eq!(sp.accuracy_original, acc(&logits(&original, best_orig)));
    assert_eq!(sp.accuracy_compressed, acc(&rows[best_orig]));
    assert_eq!(sp.accuracy_best_prompt, acc(&rows[best]));
    let chosen: Vec<Vec<f32>> = pick.iter().enumerate().map(|(e, &i)| rows[i][e].clone()).collect();
    assert_eq!(sp.accuracy_idp, acc(&chosen));
    let mut histogram = vec![0; 3];
    pick.iter().for_each(|&i| histogram[i] += 1);
    assert_eq!(sp.histogram, histogram);
    assert!(sp.accuracy_long_prompt.is_none() && sp.recovery_long_prompt.is_none());

    // Zero compression: the copy is the original.
    let zero = &r.repair[1];
    assert_eq!(zero.best_prompt_original, Some(zero.best_prompt));
    assert_eq!(zero.splits[0].accuracy_original, zero.splits[0].accuracy_compressed);
    assert!(zero.splits[0].recovery.is_none());
    let html = trilemma::report::html(&r).unwrap();
    assert!(html.contains("Text prompts of gla + int4 g32") && html.contains("3 × text"));
}

/// A text pool larger than the task's templates is refused, naming the field.
#[test]
fn a_text_pool_larger_than_the_templates_is_refused() {
    let e = Spec::from_json(
        br#"{"models": ["gla"], "tasks": ["sst2"], "splits": ["validation"], "compressions": [{"method": "int8"}], "repair": {"prompts": 5, "pool": "text"}}"#,
        &|m| native::model_exists(&assets(), m),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("repair.prompts") && e.contains("text pool"), "{e}");
}
