//! Attacks end to end on the bundled models: a spec with attacks (deterministic, TextAttack metrics consistent
//! with the records, a transfer matrix whose diagonal is fooled by construction), the same attack run by hand
//! through `attacks::search`, pair tasks, refusals, and `trilemma attack`.
#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use trilemma::attacks::metrics::summarize;
use trilemma::attacks::search::{self, AttackConfig, Input, Lexicon, ModelVictim, Outcome, Recipe};
use trilemma::attacks::synonyms::SynonymTable;
use trilemma::backend::cpu::CpuBackend;
use trilemma::data::{Split, Task};
use trilemma::experiment::native::{self, NativeHooks};
use trilemma::experiment::{without_timing, LoadedModel, Progress, Results, Spec};

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

#[test]
fn a_spec_with_attacks_is_deterministic_and_its_numbers_add_up() {
    let s = spec(
        r#"{"models": ["transformer", "hgrn_bit"], "tasks": ["sst2"], "splits": ["advglue-original", "advglue"],
            "attacks": [{"recipe": "textbugger", "budget": 0.3}, {"recipe": "random_checklist"}],
            "backend": "cpu", "limit": 8, "bootstrap": 100, "seed": 5}"#,
    );
    let (a, b) = (run(&s).to_json(), run(&s).to_json());
    assert_eq!(without_timing(&a).unwrap(), without_timing(&b).unwrap());
    let r = Results::from_json(a.as_bytes()).unwrap();
    assert!(r.status.complete);
    assert_eq!((r.status.attacks_done, r.status.attacks_total), (4, 4));
    // Attacks start from clean text only: advglue-original, not advglue.
    assert!(r.attacks.iter().all(|u| u.split == Split::AdvGlueOriginal && u.records.len() == 8));
    for u in &r.attacks {
        assert_eq!(u.summary, summarize(&u.records).unwrap());
        // The clean evaluation and the attack's first query agree on every example.
        let clean = r.units.iter().find(|e| e.model == u.model && e.split == Split::AdvGlueOriginal).unwrap();
        for (p, rec) in clean.predictions.iter().zip(&u.records) {
            assert_eq!((p.idx, p.prediction), (rec.idx, rec.before.prediction));
            assert_eq!(rec.outcome == Outcome::Skipped, p.prediction != p.label);
        }
        for rec in &u.records {
            assert!(rec.words_changed <= trilemma::attacks::word_budget(rec.words, u.attack.budget));
            assert!(rec.queries <= u.attack.max_queries);
            if u.attack.recipe == Recipe::RandomChecklist {
                assert!(rec.queries <= 2);
            }
        }
    }
    let tb = r.attacks.iter().find(|u| u.attack.recipe == Recipe::Textbugger).unwrap();
    assert!(tb.summary.succeeded > 0, "TextBugger flips some SST-2 predictions of the bundled models");
    // Transfer: one matrix per attack, 2 × 2 cells; a model's own successful texts fool it by construction.
    assert_eq!(r.transfer.len(), 2);
    for m in &r.transfer {
        assert_eq!(m.cells.len(), 4);
        for c in m.cells.iter().filter(|c| c.source == c.target && c.n > 0) {
            assert_eq!(c.adversarial_accuracy, Some(0.0), "{c:?}");
            assert_eq!(c.transfer_rate, Some(1.0));
        }
    }
    // The report shows the attacks.
    let html = trilemma::report::html(&r).unwrap();
    assert!(html.contains("Attacks") && html.contains("textbugger") && html.contains("Transfer"));
}

#[test]
fn the_search_by_hand_matches_the_engine_and_edits_only_the_hypothesis() {
    let be = CpuBackend::new();
    let files = native::read_folder(&assets().join("models/gla")).unwrap();
    let lm = LoadedModel::load(&be, "gla", &files).unwrap();
    let lex = Lexicon { synonyms: SynonymTable::bundled(), neighbours: &lm.neighbours };
    let rte = trilemma::data::load_split(&assets(), Task::Rte, Split::AdvGlueOriginal).unwrap();
    let mut victim = ModelVictim::new(&be, &lm.model, &lm.tokenizer, Task::Rte).unwrap();
    let cfg = AttackConfig { max_queries: 300, ..AttackConfig::new(Recipe::Combined) };
    for e in rte.iter().take(2) {
        let input = Input { a: e.text_a.clone(), b: e.text_b.clone() };
        let r = pollster::block_on(search::attack(&mut victim, &lex, &input, e.label, e.idx, &cfg, 42)).unwrap();
        assert_eq!(r.perturbed.a, e.text_a, "the premise is never edited");
        assert_eq!(r.segment, trilemma::attacks::sentence_level::Segment::Second);
        let again = pollster::block_on(search::attack(&mut victim, &lex, &input, e.label, e.idx, &cfg, 42)).unwrap();
        assert_eq!(again, r);
    }
    // A model whose head does not fit the task is refused.
    assert!(ModelVictim::new(&be, &lm.model, &lm.tokenizer, Task::Mnli).is_err() || lm.model.head(Some("mnli")).is_ok());
}

#[test]
fn bad_attack_specs_are_refused_with_the_field() {
    for (json, field) in [
        (r#"{"models": ["gla"], "tasks": ["sst2"], "attacks": [{"recipe": "deepwordbug"}]}"#, "attacks[0].recipe"),
        (r#"{"models": ["gla"], "tasks": ["sst2"], "attacks": [{"recipe": "textfooler", "budget": 2}]}"#, "`attacks[0]`"),
        (r#"{"models": ["gla"], "tasks": ["sst2"], "attacks": [{"recipe": "textfooler", "max_queries": 0}]}"#, "`attacks[0]`"),
        (r#"{"models": ["gla"], "tasks": ["sst2"], "attacks": [{"recipe": "textfooler", "budgett": 0.1}]}"#, "budgett"),
        (r#"{"models": ["gla"], "tasks": ["sst2"], "attacks": [{"recipe": "textfooler"}, {"recipe": "textfooler"}]}"#, "`attacks[1]`"),
        (r#"{"models": ["gla"], "tasks": ["sst2"], "splits": ["advglue"], "attacks": [{"recipe": "textfooler"}]}"#, "clean text"),
    ] {
        let e = Spec::from_json(json.as_bytes(), &|m| native::model_exists(&assets(), m)).unwrap_err().to_string();
        assert!(e.contains(field), "{json}: {e}");
    }
}

fn trilemma(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_trilemma")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

#[test]
fn trilemma_attack_on_the_command_line() {
    let dir = std::env::temp_dir().join(format!("trilemma-attack-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("attack.json");
    let o = trilemma(&["attack", "--model", "assets/models/hgrn_bit", "--task", "sst2", "--recipe", "textfooler", "--seed", "3", "--limit", "5", "--out", out.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    for needle in ["textfooler against assets/models/hgrn_bit", "original accuracy", "accuracy under attack", "attack success rate", "perturbed words", "queries per attack"] {
        assert!(stdout.contains(needle), "{needle} missing from:\n{stdout}");
    }
    let r = Results::from_json(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(r.attacks.len(), 1);
    assert_eq!((r.attacks[0].split, r.attacks[0].attack.recipe, r.spec.seed), (Split::AdvGlueOriginal, Recipe::Textfooler, 3));
    assert_eq!(r.attacks[0].records.len(), 5);
    for (args, msg) in [
        (vec!["attack", "--model", "gla", "--task", "sst2", "--recipe", "nope"], "unknown attack recipe"),
        (vec!["attack", "--model", "gla", "--task", "sst2", "--recipe", "textfooler", "--budget", "1.5"], "budget"),
        (vec!["attack", "--model", "no/such/folder", "--task", "sst2", "--recipe", "textfooler"], "models[0]"),
        (vec!["attack", "--model", "gla", "--task", "sst2", "--recipe", "textfooler", "--split", "advglue"], "clean text"),
    ] {
        let o = trilemma(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(msg), "{args:?}: {err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
