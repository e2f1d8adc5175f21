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
