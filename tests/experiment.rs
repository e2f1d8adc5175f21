//! The evaluation engine end to end on the bundled models: determinism of a spec's results,
//! cancellation, the official AdvGLUE score recomputed by hand from the predictions, operation
//! counts against formulas from the config, reports and CSV, and `trilemma run` / `report`.
#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use trilemma::backend::count::CountBackend;
use trilemma::data::{load_split, Split, Task};
use trilemma::experiment::native::{self, NativeHooks};
use trilemma::experiment::{without_timing, Progress, Results, Spec};

// The spec's readout, share links and the paper view's claims: modules of this test binary (one link, not three).
#[path = "experiment/claims.rs"]
mod claims;
#[path = "experiment/readout.rs"]
mod readout;
#[path = "experiment/share.rs"]
mod share;

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets")
}

fn spec(json: &str) -> Spec {
    Spec::from_json(json.as_bytes(), &|m| native::model_exists(&assets(), m)).unwrap()
}

fn try_run(s: &Spec) -> trilemma::Result<Results> {
    let mut sink = |_: &Progress| {};
    let mut hooks = NativeHooks::new(&mut sink, Arc::new(AtomicBool::new(false)));
    native::run(s, &assets(), None, &mut hooks)
}

fn run(s: &Spec) -> Results {
    try_run(s).unwrap()
}

/// Hooks that hand some evaluation units to "another worker" (`run_delegated` on the same inputs,
/// as the page's CPU pool does) and deliver the results of only some of them (a worker lost).
struct Delegating<'a> {
    inputs: &'a (trilemma::experiment::Folders, Vec<trilemma::experiment::Dataset>),
    spec: &'a Spec,
    delegated: Vec<usize>,
    delivered: Vec<usize>,
    /// Units this run reported progress on (so computed itself): evaluations 0-3, attacks 4-5.
    ran: std::collections::BTreeSet<usize>,
}

impl trilemma::experiment::Hooks for Delegating<'_> {
    fn progress(&mut self, p: &Progress) -> bool {
        // Evaluations and attacks (the perplexity and repair stages count models and steps instead).
        if !matches!(p.attack.as_deref(), Some("perplexity (LM head)" | "repair")) {
            self.ran.insert(p.unit);
        }
        true
    }
    fn now_ms(&self) -> f64 {
        0.0
    }
    async fn pause(&self) {}
    fn memory(&self) -> Option<u64> {
        None
    }
    fn delegated(&self) -> Vec<usize> {
        self.delegated.clone()
    }
    async fn delegated_results(&mut self) -> trilemma::experiment::Delegated {
        trilemma::experiment::run_delegated(self.spec, &self.inputs.0, &self.inputs.1, &self.delivered, &mut trilemma::experiment::Silent).await.unwrap()
    }
}

#[test]
fn evaluation_units_run_by_other_workers_give_one_workers_results() {
    let s = spec(
        r#"{"models": ["transformer", "hgrn_bit"], "tasks": ["sst2"], "splits": ["validation", "advglue"],
            "backend": "cpu", "limit": 12, "bootstrap": 50, "batch": 4, "seed": 5,
            "attacks": [{"recipe": "random_checklist", "budget": 0.2}]}"#,
    );
    let one = without_timing(&run(&s).to_json()).unwrap();
    let inputs = native::inputs(&s, &assets()).unwrap();
    // Units 0-3 are evaluations, 4-5 the attack on each model's SST-2 validation split.
    // (delegated, delivered): some elsewhere; all elsewhere but two delivered; two lost.
    for (delegated, delivered) in [(vec![1, 3, 5], vec![1, 3, 5]), (vec![0, 1, 2, 3, 4, 5], vec![2, 4]), (vec![3, 4], vec![])] {
        let mut hooks = Delegating { inputs: &inputs, spec: &s, delegated: delegated.clone(), delivered: delivered.clone(), ran: Default::default() };
        let r = pollster::block_on(trilemma::experiment::run(&s, Err("cpu".into()), &inputs.0, &inputs.1, &mut hooks)).unwrap();
        assert_eq!(without_timing(&r.to_json()).unwrap(), one, "delegated {delegated:?}, delivered {delivered:?}");
        let expected: std::collections::BTreeSet<usize> = (0..6).filter(|i| !delivered.contains(i)).collect();
        let ran: std::collections::BTreeSet<usize> = hooks.ran.clone();
        assert_eq!(ran, expected, "the run computed exactly the units not delivered");
    }
    // A unit past the spec's is refused.
    let err = pollster::block_on(trilemma::experiment::run_delegated(&s, &inputs.0, &inputs.1, &[6], &mut trilemma::experiment::Silent)).unwrap_err();
    assert!(err.to_string().contains("unit 6 of a spec with 4 evaluation and 2 attack units"), "{err}");
    // With a repair section the run takes the helpers' evaluations before its repair, which reads every evaluation.
    let r = spec(
        r#"{"models": ["transformer"], "tasks": ["sst2"], "splits": ["validation"], "backend": "cpu", "limit": 16, "bootstrap": 20,
            "batch": 8, "seed": 5, "compressions": [{"method": "magnitude", "sparsity": 0.6}],
            "repair": {"prompts": 2, "tokens": 2, "epochs": 1, "batch": 8, "calibration": 8, "calibration_split": "validation"}}"#,
    );
    let one = without_timing(&run(&r).to_json()).unwrap();
    let inputs = native::inputs(&r, &assets()).unwrap();
    let mut hooks = Delegating { inputs: &inputs, spec: &r, delegated: vec![1], delivered: vec![1], ran: Default::default() };
    let got = pollster::block_on(trilemma::experiment::run(&r, Err("cpu".into()), &inputs.0, &inputs.1, &mut hooks)).unwrap();
    assert!(!got.repair.is_empty(), "the repair ran");
    assert_eq!(without_timing(&got.to_json()).unwrap(), one, "a repair run with the compressed copy's evaluation elsewhere");
    assert!(!hooks.ran.contains(&1), "the compressed copy's evaluation was not run here");
}

#[test]
fn a_spec_run_twice_gives_identical_results_apart_from_timings() {
    let s = spec(
        r#"{"models": ["transformer", "hgrn_bit"], "tasks": ["mrpc", "rte"], "splits": ["validation", "advglue"],
            "backend": "cpu", "limit": 24, "bootstrap": 200, "batch": 8, "seed": 7}"#,
    );
    let (a, b) = (run(&s).to_json(), run(&s).to_json());
    assert_eq!(without_timing(&a).unwrap(), without_timing(&b).unwrap());
    assert!(a.contains("\"timing\""), "timings are recorded");
    let r = Results::from_json(a.as_bytes()).unwrap();
    assert!(r.status.complete && !r.status.cancelled);
    assert_eq!(r.status.skipped, ["mrpc/advglue"]);
    assert_eq!(r.units.len(), 6, "mrpc has no AdvGLUE split: models × (mrpc/validation, rte/validation, rte/advglue)");
    for u in &r.units {
        assert_eq!(u.n, 24);
        assert_eq!(u.backend, "cpu");
        let acc = u.metric("accuracy").unwrap();
        let right = u.predictions.iter().filter(|p| p.prediction == p.label).count();
        assert_eq!(acc.value, right as f64 / 24.0);
        assert!(acc.ci95[0] <= acc.value && acc.value <= acc.ci95[1], "{acc:?}");
        if u.task == Task::Mrpc {
            assert!(u.metric("f1").is_some() && u.metric("score").is_some());
        }
        if u.split == Split::AdvGlue {
            assert_eq!(u.by_level.iter().map(|g| g.n).sum::<usize>(), 24);
            assert!(!u.by_method.is_empty());
        }
    }
    // A different seed changes only the intervals.
    let mut s2 = s.clone();
    s2.seed = 8;
    let r2 = run(&s2);
    assert_eq!(r2.units[0].metrics[0].estimate.value, r.units[0].metrics[0].estimate.value);
    assert_ne!(r2.units[0].metrics[0].estimate.ci95, r.units[0].metrics[0].estimate.ci95);
    // Provenance: hashes of the files that were read.
    let prov = &r.provenance;
    assert_eq!(prov.models.len(), 2);
    let st = prov.models[0].files.iter().find(|f| f.path == "model.safetensors").unwrap();
    let bytes = std::fs::read(assets().join("models/transformer/model.safetensors")).unwrap();
    assert_eq!(st.sha256, trilemma::experiment::sha256_hex(&bytes));
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(assets().join("data/manifest.json")).unwrap()).unwrap();
    for f in &prov.data {
        let key = f.path.clone();
        assert_eq!(manifest["files"][&key]["sha256"], f.sha256.as_str(), "{key}");
    }
    assert_eq!(prov.crate_version, trilemma::VERSION);
    assert!(!prov.git_commit.is_empty());
}

#[test]
fn cancelling_keeps_the_finished_evaluations() {
    let s = spec(r#"{"models": ["gla"], "tasks": ["sst2", "rte"], "splits": ["validation"], "backend": "cpu", "limit": 40, "bootstrap": 50, "batch": 8}"#);
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let mut seen = Vec::new();
    // Cancel in the middle of the second unit.
    let mut on_progress = |p: &Progress| {
        seen.push((p.unit, p.done));
        if p.unit == 1 && p.done >= 16 {
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    };
    let mut hooks = NativeHooks::new(&mut on_progress, cancel);
    let r = native::run(&s, &assets(), None, &mut hooks).unwrap();
    assert!(r.status.cancelled && !r.status.complete);
    assert_eq!((r.status.units_done, r.status.units_total), (1, 2));
    assert_eq!(r.units[0].task, Task::Sst2);
    assert_eq!(r.units[0].n, 40);
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "progress moves forward: {seen:?}");
    assert_eq!(seen.first(), Some(&(0, 0)));
    // The partial results still make a report.
    let html = trilemma::report::html(&r).unwrap();
    assert!(html.contains("Cancelled"));
}

/// Binary F1 of class 1, written out by hand.
fn f1(preds: &[u32], labels: &[u32]) -> f64 {
    let tp = preds.iter().zip(labels).filter(|(p, l)| **p == 1 && **l == 1).count() as f64;
    let fp = preds.iter().zip(labels).filter(|(p, l)| **p == 1 && **l == 0).count() as f64;
    let fneg = preds.iter().zip(labels).filter(|(p, l)| **p == 0 && **l == 1).count() as f64;
    if tp == 0.0 {
        0.0
    } else {
        2.0 * tp / (2.0 * tp + fp + fneg)
    }
}

#[test]
fn advglue_official_score_on_crafted_predictions() {
    use trilemma::eval::{advglue_score, glue_score};
    let labels = |t| trilemma::data::labels(&load_split(&assets(), t, Split::AdvGlue).unwrap());
    // sst2 all right; qqp: the first 10 duplicates predicted "not duplicate"; mnli all right,
    // mnli-mm all wrong; qnli all wrong; rte all right.
    let flip = |t: Task, v: &[u32]| v.iter().map(|&l| (l + 1) % t.num_labels()).collect::<Vec<u32>>();
    let qqp = labels(Task::Qqp);
    let mut qqp_pred = qqp.clone();
    let mut flipped = 0;
    for p in qqp_pred.iter_mut() {
        if *p == 1 && flipped < 10 {
            *p = 0;
            flipped += 1;
        }
    }
    assert_eq!(flipped, 10);
    let positives = qqp.iter().filter(|&&l| l == 1).count() as f64;
    let qqp_acc = (78.0 - 10.0) / 78.0;
    let qqp_f1 = 2.0 * (positives - 10.0) / (2.0 * (positives - 10.0) + 10.0);
    assert!((f1(&qqp_pred, &qqp) - qqp_f1).abs() < 1e-12);
    let scores = vec![
        glue_score(Task::Sst2, &labels(Task::Sst2), &labels(Task::Sst2)).unwrap(),
        glue_score(Task::Qqp, &qqp_pred, &qqp).unwrap(),
        glue_score(Task::Mnli, &labels(Task::Mnli), &labels(Task::Mnli)).unwrap(),
        glue_score(Task::MnliMm, &flip(Task::MnliMm, &labels(Task::MnliMm)), &labels(Task::MnliMm)).unwrap(),
        glue_score(Task::Qnli, &flip(Task::Qnli, &labels(Task::Qnli)), &labels(Task::Qnli)).unwrap(),
        glue_score(Task::Rte, &labels(Task::Rte), &labels(Task::Rte)).unwrap(),
    ];
    let a = advglue_score(&scores).unwrap();
    let qqp_score = (qqp_acc + qqp_f1) / 2.0;
    // MNLI is the plain mean 0.5 of matched 1.0 and mismatched 0.0, not 121/283 by size.
    let want = (1.0 + qqp_score + 0.5 + 0.0 + 1.0) / 5.0;
    assert!((a.score - want).abs() < 1e-12, "{} vs {want}", a.score);
    assert!((a.task_scores[1].1 - qqp_score).abs() < 1e-12);
    assert!((a.task_scores[2].1 - 0.5).abs() < 1e-12);
    // A qqp with no predicted duplicate has F1 0 (the evaluate.py / sklearn convention).
    let none = glue_score(Task::Qqp, &vec![0; 78], &qqp).unwrap();
    assert_eq!(none.f1, Some(0.0));
}

#[test]
fn the_engine_reports_the_official_advglue_score_of_a_full_run() {
    let s = spec(
        r#"{"models": ["transformer"], "tasks": ["sst2", "qqp", "mnli", "mnli-mm", "qnli", "rte"], "splits": ["advglue"],
            "backend": "cpu", "bootstrap": 20}"#,
    );
    let r = run(&s);
    let adv = &r.advglue[0];
    let official = adv.official_score.as_ref().expect("all six tasks ran in full");
    // Recompute by hand from the per-example predictions.
    let task_score = |t: Task| {
        let u = r.units.iter().find(|u| u.task == t && u.split == Split::AdvGlue).unwrap();
        let p: Vec<u32> = u.predictions.iter().map(|p| p.prediction).collect();
        let l: Vec<u32> = u.predictions.iter().map(|p| p.label).collect();
        let acc = p.iter().zip(&l).filter(|(a, b)| a == b).count() as f64 / p.len() as f64;
        if t == Task::Qqp {
            (acc + f1(&p, &l)) / 2.0
        } else {
            acc
        }
    };
    let mnli = (task_score(Task::Mnli) + task_score(Task::MnliMm)) / 2.0;
    let want = (task_score(Task::Sst2) + task_score(Task::Qqp) + mnli + task_score(Task::Qnli) + task_score(Task::Rte)) / 5.0;
    assert!((official.score - want).abs() < 1e-12);
    // Levels: word / sentence / human with the dev counts of methods.md §5.4.
    let n: Vec<(String, usize)> = adv.levels.iter().map(|l| (l.level.name().to_string(), l.n)).collect();
    assert_eq!(n, vec![("word".into(), 455), ("sentence".into(), 201), ("human".into(), 82)]);
    // The official score's interval (each task file resampled on its own) holds the score.
    let [lo, hi] = adv.official_ci95.unwrap();
    assert!(lo <= official.score && official.score <= hi && lo < hi, "{lo} {} {hi}", official.score);
    // Word level pooled over tasks = right answers / 455, by hand.
    let word_right = r
        .units
        .iter()
        .flat_map(|u| &u.predictions)
        .filter(|p| p.level == Some(trilemma::data::AttackLevel::Word) && p.prediction == p.label)
        .count();
    assert_eq!(adv.levels[0].pooled_accuracy.value, word_right as f64 / 455.0);
    // A limited run has no official score and says why. The clean originals come first in each
    // AdvGLUE file (the human-crafted examples, which have none, are last), so the first 40 of
    // both splits pair up.
    let mut limited = s.clone();
    limited.limit = Some(40);
    limited.tasks = vec![Task::Sst2, Task::Rte];
    limited.splits = vec![Split::AdvGlue, Split::AdvGlueOriginal];
    let r = run(&limited);
    assert!(r.advglue[0].official_score.is_none());
    assert!(r.advglue[0].official_missing.as_deref().unwrap().contains("needs all of them"));
    let inside = |e: &trilemma::experiment::Estimate| e.ci95[0] <= e.value && e.value <= e.ci95[1];
    for l in &r.advglue[0].levels {
        assert!(inside(&l.macro_accuracy) && inside(&l.pooled_accuracy), "{l:?}");
    }
    // Paired clean vs adversarial, by hand.
    assert_eq!(r.robustness.len(), 2);
    let sst2 = r.robustness.iter().find(|g| g.task == Task::Sst2).unwrap();
    assert_eq!(sst2.paired_n, Some(40));
    let unit = |split| r.units.iter().find(|u| u.task == Task::Sst2 && u.split == split).unwrap();
    let (adv_u, clean_u) = (unit(Split::AdvGlue), unit(Split::AdvGlueOriginal));
    let right = |p: &trilemma::experiment::Prediction| p.prediction == p.label;
    let adv_right: std::collections::BTreeMap<u64, bool> = adv_u.predictions.iter().map(|p| (p.idx, right(p))).collect();
    let clean_acc = clean_u.predictions.iter().filter(|p| right(p)).count() as f64 / 40.0;
    let adv_acc = clean_u.predictions.iter().filter(|p| adv_right[&p.idx]).count() as f64 / 40.0;
    let broken = clean_u.predictions.iter().filter(|p| right(p) && !adv_right[&p.idx]).count();
    assert_eq!(sst2.clean_accuracy.as_ref().unwrap().value, clean_acc);
    assert_eq!(sst2.adversarial_accuracy.as_ref().unwrap().value, adv_acc);
    assert!((sst2.accuracy_drop.as_ref().unwrap().value - (clean_acc - adv_acc)).abs() < 1e-12);
    assert_eq!(sst2.broken, Some(broken));
    assert!(inside(sst2.accuracy_drop.as_ref().unwrap()));
}

#[test]
fn operation_counts_follow_the_config() {
    // Multiply-accumulates in the dense products of one forward pass at T tokens, from the
    // bundled configs (hidden 128, intermediate 256, 2 layers, 4 heads, 2 classes).
    let t = 10usize;
    let ids: Vec<u32> = (5..5 + t as u32).collect();
    let load = |name: &str| {
        let files = native::read_folder(&assets().join("models").join(name)).unwrap();
        let ck = trilemma::io::Checkpoint::from_files(&files).unwrap();
        let cfg = ck.config.clone();
        (trilemma::models::Model::load(&CountBackend::new(), ck).unwrap(), cfg)
    };
    let be = CountBackend::new();
    // Transformer++: q, k, v, o (H·H each), SwiGLU (3·H·I), causal attention over t(t+1)/2 pairs
    // per head (hd for scores + hd for values), and the score head (C·H at the last token).
    let (m, cfg) = load("transformer");
    let (h, i, l, nh) = (128u64, 256u64, cfg["num_hidden_layers"].as_u64().unwrap(), cfg["num_heads"].as_u64().unwrap());
    assert_eq!((cfg["hidden_size"].as_u64(), cfg["intermediate_size"].as_u64()), (Some(h), Some(i)));
    m.classify_batch(&be, &[&ids], Some("sst2")).unwrap();
    let tt = t as u64;
    let pairs = tt * (tt + 1) / 2;
    let want = l * (tt * 4 * h * h + tt * 3 * h * i + nh * pairs * 2 * (h / nh)) + 2 * h;
    assert_eq!(be.take().matmul_mul, want);
    // HGRN-bit: every projection is a BitLinear (additions only); the only products with
    // multiplications are the score head's.
    let (m, _) = load("hgrn_bit");
    m.classify_batch(&be, &[&ids], Some("sst2")).unwrap();
    let c = be.take();
    assert_eq!(c.matmul_mul, 2 * h);
    assert!(c.add > 10 * c.mul, "{c:?}");
}

#[test]
fn report_and_csv_from_results() {
    let s = spec(r#"{"name": "<script>x</script>", "models": ["gla", "hgrn_bit"], "tasks": ["sst2"], "splits": ["validation", "advglue"], "backend": "cpu", "limit": 30, "bootstrap": 50}"#);
    let r = run(&s);
    let html = trilemma::report::html(&r).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert!(!html.contains("<script>"), "text is escaped");
    assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
    assert_eq!(html.matches("<svg").count(), 3, "accuracy, AdvGLUE levels, efficiency vs robustness");
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"), "standalone: no external resources");
    let csv = trilemma::report::csv(&r);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 4 * 30);
    assert!(lines[0].starts_with("model,architecture,task,split,idx,label,prediction,correct"));
    assert_eq!(lines[1].split(',').count(), lines[0].split(',').count());
    assert!(lines.iter().any(|l| l.contains(",advglue,") && l.contains(",word,")));
}

#[test]
fn trilemma_run_and_report_on_the_command_line() {
    let dir = std::env::temp_dir().join(format!("trilemma-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spec_path = dir.join("spec.json");
    std::fs::write(&spec_path, r#"{"models": ["gla"], "tasks": ["rte"], "splits": ["advglue"], "backend": "cpu", "limit": 12, "bootstrap": 30}"#).unwrap();
    let (results, report, csv) = (dir.join("r.json"), dir.join("r.html"), dir.join("p.csv"));
    let cli = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_trilemma")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, err) = cli(&["run".as_ref(), spec_path.as_os_str(), "--out".as_ref(), results.as_os_str()]);
    assert!(ok, "{err}");
    let (ok, err) = cli(&["report".as_ref(), results.as_os_str(), "--out".as_ref(), report.as_os_str(), "--csv".as_ref(), csv.as_os_str()]);
    assert!(ok, "{err}");
    assert!(std::fs::read_to_string(&report).unwrap().contains("<svg"));
    assert_eq!(std::fs::read_to_string(&csv).unwrap().lines().count(), 13);
    // Bad specs and bad results files: a one-line message naming the problem.
    for (json, needle) in [
        (r#"{"models": ["no/such/folder"], "tasks": ["rte"]}"#, "models[0]"),
        (r#"{"models": ["gla"], "tasks": ["rte"], "limit": -1}"#, "`limit`"),
        (r#"{"models": ["gla"], "tasks": ["qqp"], "splits": ["validation"]}"#, "tasks[0]"),
        (r#"{"models": ["gla"], "tasks": ["rte"]"#, "not valid JSON"),
    ] {
        std::fs::write(&spec_path, json).unwrap();
        let (ok, err) = cli(&["run".as_ref(), spec_path.as_os_str()]);
        assert!(!ok && err.contains(needle), "{json}: {err}");
    }
    std::fs::write(&results, "{\"format\": \"something else\"}").unwrap();
    let (ok, err) = cli(&["report".as_ref(), results.as_os_str(), "--out".as_ref(), report.as_os_str()]);
    assert!(!ok && err.contains("not a Trilemma results file"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

fn gpu() -> Option<Arc<trilemma::backend::gpu::GpuContext>> {
    match pollster::block_on(trilemma::backend::gpu::GpuContext::acquire()) {
        Ok(c) => Some(c),
        Err(e) if std::env::var("TRILEMMA_REQUIRE_GPU").as_deref() == Ok("1") => panic!("GPU required: {e}"),
        Err(e) => {
            eprintln!("SKIP: no GPU adapter ({e})");
            None
        }
    }
}

#[test]
fn a_webgpu_run_matches_the_cpu_and_a_lost_device_hands_over_to_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let json = r#"{"models": ["gla", "hgrn_bit"], "tasks": ["sst2", "rte"], "splits": ["validation"], "backend": "webgpu", "limit": 10, "bootstrap": 20, "batch": 4}"#;
    let s = spec(json);
    let mut sink = |_: &Progress| {};
    let mut hooks = NativeHooks::new(&mut sink, Arc::new(AtomicBool::new(false)));
    let g = native::run(&s, &assets(), Some(ctx.clone()), &mut hooks).unwrap();
    assert_eq!(g.provenance.backend.kind, "webgpu");
    assert_eq!(g.provenance.fallback, None);
    assert!(g.units.iter().all(|u| u.backend == "webgpu" && u.timing.peak_gpu_bytes.unwrap_or(0) > 0));
    let mut cpu_spec = s.clone();
    cpu_spec.backend = trilemma::backend::BackendChoice::Cpu;
    let c = run(&cpu_spec);
    for (a, b) in g.units.iter().zip(&c.units) {
        let la: Vec<u32> = a.predictions.iter().map(|p| p.prediction).collect();
        let lb: Vec<u32> = b.predictions.iter().map(|p| p.prediction).collect();
        assert_eq!(la, lb, "{} {}: GPU and CPU labels", a.model, a.task);
    }
    // The device is lost after the first evaluation: the rest runs on the CPU, and says so.
    let lose = ctx.clone();
    let mut on_progress = move |p: &Progress| {
        if p.unit == 1 && p.done == 0 {
            lose.simulate_device_loss();
        }
    };
    let mut hooks = NativeHooks::new(&mut on_progress, Arc::new(AtomicBool::new(false)));
    let r = native::run(&s, &assets(), Some(ctx), &mut hooks).unwrap();
    assert!(r.status.complete, "the run completes");
    assert_eq!(r.units.len(), 4);
    assert_eq!(r.units[0].backend, "webgpu");
    assert!(r.units[1..].iter().all(|u| u.backend == "cpu"));
    assert_eq!(r.provenance.backend.kind, "cpu");
    assert!(r.provenance.fallback.as_deref().unwrap().contains("WebGPU failed"), "{:?}", r.provenance.fallback);
}

/// Every experiment spec shipped in `examples/` (the README's benchmark commands run them) parses and
/// names bundled models: a typo there would only show when someone runs a long benchmark.
#[test]
fn every_example_spec_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        if let Err(e) = Spec::from_json(&bytes, &|m| native::model_exists(&assets(), m)) {
            panic!("{}: {e}", path.display());
        }
        n += 1;
    }
    assert!(n >= 5, "only {n} example specs found");
}
