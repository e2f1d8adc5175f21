//! Zero-shot readout through the LM head (the spec's `readout`, `eval::readout`): a language-model folder without any
//! classification head is evaluated, attacked, compressed and repaired with text prompts; a folder with heads can be read
//! the same way, and gives the same numbers as the head-less folder with the same body.

use super::{assets, try_run as run};
use std::collections::BTreeMap;
use std::path::PathBuf;
use trilemma::backend::cpu::CpuBackend;
use trilemma::data::{Split, Task};
use trilemma::experiment::native;
use trilemma::experiment::{without_timing, Spec};
use trilemma::repair::text_prompts;

fn parse(json: &str) -> trilemma::Result<Spec> {
    Spec::from_json(json.as_bytes(), &|m| native::model_exists(&assets(), m))
}

/// The bundled `model` as a plain language-model folder: every `score*` tensor gone, and `config.json` without
/// `num_labels`, the label maps and the `trilemma` section (what a pretrained Hugging Face checkpoint looks like).
/// `tie`: keep the LM head (tied to the embeddings); without it the folder has no head at all.
fn lm_folder(model: &str, tag: &str, tie: bool) -> PathBuf {
    let src = assets().join("models").join(model);
    let dir = std::env::temp_dir().join(format!("trilemma-readout-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    let obj = config.as_object_mut().unwrap();
    for key in ["num_labels", "id2label", "label2id", "trilemma"] {
        obj.remove(key);
    }
    obj.insert("tie_word_embeddings".into(), tie.into());
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let tensors = trilemma::io::parse_safetensors("model.safetensors", &std::fs::read(src.join("model.safetensors")).unwrap()).unwrap();
    let kept: BTreeMap<_, _> = tensors.into_iter().filter(|(name, _)| !name.starts_with("score")).collect();
    std::fs::write(dir.join("model.safetensors"), trilemma::io::write_safetensors(&kept, None).unwrap()).unwrap();
    std::fs::copy(src.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    dir
}

/// A head-less folder is read through its LM head with template 0; its numbers are those of the templates run directly, and
/// the bundled folder (same body, with heads) read with `"readout": "prompt"` gives the very same numbers.
#[test]
fn a_language_model_without_heads_is_evaluated_through_its_lm_head() {
    const LIMIT: usize = 40;
    let dir = lm_folder("transformer", "eval", true);
    let d = dir.to_str().unwrap();
    let s = parse(&format!(r#"{{"models": [{d:?}], "tasks": ["sst2"], "splits": ["validation", "advglue"], "limit": {LIMIT}, "bootstrap": 50, "batch": 16}}"#)).unwrap();
    let r = run(&s).unwrap();
    assert_eq!(r.units.len(), 2);
    for u in &r.units {
        assert_eq!(u.readout, r#"prompt 0: "review: {a} sentiment:" → negative | positive"#);
        assert!(u.efficiency.ops_per_example.matmul_mul > 0.0);
    }

    // The numbers of template 0 run directly: class logits = next-token logits of the answer words.
    let be = CpuBackend::new();
    let ck = trilemma::io::Checkpoint::load_dir(&dir).unwrap();
    let tok = trilemma::text::TextTokenizer::from_json_bytes(ck.tokenizer_json.as_deref().unwrap()).unwrap();
    let model = trilemma::models::Model::load(&be, ck).unwrap();
    assert!(model.score.is_none() && model.heads.is_empty() && model.lm_head.is_some());
    let ex: Vec<_> = trilemma::data::load_split(&assets(), Task::Sst2, Split::Validation).unwrap().into_iter().take(LIMIT).collect();
    let rows = pollster::block_on(text_prompts::class_logits(&be, &model, &tok, Task::Sst2, &text_prompts::pool(Task::Sst2)[0], &ex, 1)).unwrap();
    let u = &r.units[0];
    assert_eq!(u.split, Split::Validation);
    for (p, row) in u.predictions.iter().zip(&rows) {
        let want = trilemma::eval::softmax(row);
        assert!(p.probs.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5), "{:?} vs {want:?}", p.probs);
        assert_eq!(p.prediction, trilemma::eval::argmax(row));
    }
    let right = u.predictions.iter().filter(|p| p.prediction == p.label).count() as f64 / LIMIT as f64;
    assert_eq!(u.metric("accuracy").unwrap().value, right);

    // The bundled folder read the same way: the same numbers; read with its head: a different readout.
    let bundled = |readout: &str| {
        let s = parse(&format!(r#"{{"models": ["transformer"], "tasks": ["sst2"], "splits": ["validation", "advglue"], "limit": {LIMIT}, "bootstrap": 50, "batch": 16, "readout": {readout:?}}}"#)).unwrap();
        run(&s).unwrap()
    };
    let prompt = bundled("prompt");
    for (a, b) in prompt.units.iter().zip(&r.units) {
        assert_eq!((a.readout.as_str(), &a.predictions), (b.readout.as_str(), &b.predictions));
        // (The intervals' resamples are seeded with the model's name, so only the values match.)
        assert_eq!(a.metric("accuracy").unwrap().value, b.metric("accuracy").unwrap().value);
    }
    assert_eq!(bundled("auto").units[0].readout, "head sst2");
    assert!(prompt.to_json().contains("\"readout\": \"prompt\""), "the spec records the readout");
    let html = trilemma::report::html(&r).unwrap();
    assert!(html.contains("Read zero-shot through the LM head") && html.contains("review: {a} sentiment:"), "the report names the readout");
}

/// `template` picks the task's template; pair tasks write both sentences in.
#[test]
fn the_template_is_chosen_by_the_spec() {
    let dir = lm_folder("gla", "template", true);
    let d = dir.to_str().unwrap();
    let s = parse(&format!(r#"{{"models": [{d:?}], "tasks": ["sst2", "rte"], "splits": ["validation"], "limit": 12, "bootstrap": 20, "template": 2}}"#)).unwrap();
    let r = run(&s).unwrap();
    assert_eq!(r.units[0].readout, r#"prompt 2: "{a} overall, the movie was" → bad | good"#);
    assert_eq!(r.units[1].readout, r#"prompt 2: "{a} based on that, is it true that {b}" → yes | no"#);
    // The prompt is what was run: its tokens are the filled template's.
    let tok = trilemma::text::TextTokenizer::from_json_bytes(&std::fs::read(dir.join("tokenizer.json")).unwrap()).unwrap();
    let ex = &trilemma::data::load_split(&assets(), Task::Rte, Split::Validation).unwrap()[0];
    let ids = text_prompts::encode(&tok, &text_prompts::pool(Task::Rte)[2], ex).unwrap();
    assert_eq!(r.units[1].predictions[0].tokens, ids.len());
}

/// Everything a spec does runs on a head-less folder: an attack (its clean verdicts are the evaluation's), a compression with
/// its hemorrhage row (KL of the prompt's class distributions, perplexity through the LM head), and the hard text pool.
#[test]
fn attacks_compression_and_text_repair_run_on_a_head_less_folder() {
    let dir = lm_folder("hgrn_bit", "all", true);
    let d = dir.to_str().unwrap();
    let s = parse(&format!(
        r#"{{"models": [{d:?}], "tasks": ["sst2"], "splits": ["validation"], "limit": 24, "bootstrap": 20, "batch": 8, "seed": 3,
            "attacks": [{{"recipe": "random_checklist"}}], "compressions": [{{"method": "int8"}}],
            "repair": {{"prompts": 2, "pool": "text", "calibration": 16}}}}"#
    ))
    .unwrap();
    let r = run(&s).unwrap();
    assert_eq!(without_timing(&r.to_json()).unwrap(), without_timing(&run(&s).unwrap().to_json()).unwrap(), "deterministic");
    let unit = r.units.iter().find(|u| u.model == d).unwrap();
    assert!(unit.readout.starts_with("prompt 0"));
    let attack = r.attacks.iter().find(|a| a.model == d).unwrap();
    assert_eq!(attack.records.len(), 24);
    for (rec, p) in attack.records.iter().zip(&unit.predictions) {
        assert_eq!((rec.idx, rec.before.prediction), (p.idx, p.prediction), "the attack's clean verdict is the evaluation's");
    }
    let h = &r.hemorrhage[0];
    assert_eq!(h.base, d);
    assert!(h.kl.is_finite() && h.kl >= 0.0 && (0.0..=1.0).contains(&h.agreement));
    assert!(h.perplexity_ratio.is_some_and(f64::is_finite));
    assert_eq!(r.repair.len(), 1);
    assert_eq!(r.repair[0].templates.len(), 2);
    assert_eq!(r.calibration.len(), 1, "temperature scaling on the prompt's class logits");

    // Soft prompts need a classification head: refused with the reason, at run time under `auto`.
    let soft = parse(&format!(
        r#"{{"models": [{d:?}], "tasks": ["sst2"], "splits": ["validation"], "limit": 24, "bootstrap": 20, "compressions": [{{"method": "int8"}}], "repair": {{"prompts": 2, "calibration": 16}}}}"#
    ))
    .unwrap();
    let e = run(&soft).unwrap_err().to_string();
    assert!(e.contains("no classification head") && e.contains("text pool"), "{e}");
}

/// Bad readouts are refused with the reason before or as they would run.
#[test]
fn bad_readouts_are_refused_with_the_reason() {
    for (json, needle) in [
        (r#"{"models": ["gla"], "tasks": ["sst2"], "template": 4}"#, "`template`"),
        (r#"{"models": ["gla"], "tasks": ["sst2"], "readout": "head", "template": 1}"#, "`template`"),
        (r#"{"models": ["gla"], "tasks": ["sst2"], "readout": "logits"}"#, "readout"),
        (r#"{"models": ["gla"], "tasks": ["sst2"], "readout": "prompt", "compressions": [{"method": "int8"}], "repair": {"prompts": 2}}"#, "`repair.pool`"),
    ] {
        let e = parse(json).unwrap_err().to_string();
        assert!(e.contains(needle), "{json}: {e}");
    }
    // A head-less folder read with `head`; a folder with neither a head nor an LM head.
    let lm = lm_folder("gla", "refuse", true);
    let s = parse(&format!(r#"{{"models": [{:?}], "tasks": ["sst2"], "splits": ["validation"], "limit": 4, "readout": "head"}}"#, lm.to_str().unwrap())).unwrap();
    let e = run(&s).unwrap_err().to_string();
    assert!(e.contains("sst2") && e.contains("no classification head"), "{e}");
    let bare = lm_folder("gla", "bare", false);
    let s = parse(&format!(r#"{{"models": [{:?}], "tasks": ["sst2"], "splits": ["validation"], "limit": 4}}"#, bare.to_str().unwrap())).unwrap();
    let e = run(&s).unwrap_err().to_string();
    assert!(e.contains("no classification head") && e.contains("no LM head"), "{e}");
}
