//! The bundled default models (`assets/models/`, written by `scripts/train.sh`): they load through
//! the inference path, fit the size budget, keep HGRN-bit's weights packed, carry every task's
//! head and a card, and classify SST-2 validation well above chance.

use std::path::{Path, PathBuf};
use trilemma::backend::cpu::CpuBackend;
use trilemma::data::{load_split, Split, Task};
use trilemma::io::Checkpoint;
use trilemma::models::Model;
use trilemma::text::TextTokenizer;

const FOLDERS: [&str; 3] = ["transformer", "gla", "hgrn_bit"];
/// The budget for all bundled weights together.
const MAX_TOTAL_BYTES: u64 = 24 * 1024 * 1024;

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets")
}

#[test]
fn bundled_models_fit_the_budget_and_keep_ternary_weights_packed() {
    let mut total = 0;
    for folder in FOLDERS {
        let dir = assets().join("models").join(folder);
        for f in ["config.json", "model.safetensors", "tokenizer.json", "README.md", "scores.json"] {
            assert!(dir.join(f).is_file(), "{folder}/{f} is missing: run scripts/train.sh");
        }
        total += std::fs::metadata(dir.join("model.safetensors")).unwrap().len();
        let ck = Checkpoint::load_dir(&dir).unwrap();
        // Every GLUE task has a head: SST-2 as `score.weight`, the others declared in the config.
        let heads = ck.config["trilemma"]["task_heads"].as_object().unwrap();
        for t in ["qnli", "qqp", "mnli", "rte", "mrpc", "cola"] {
            assert!(heads.contains_key(t), "{folder}: no {t} head");
        }
        assert_eq!(ck.config["trilemma"]["default_task"], "sst2");
        if folder == "hgrn_bit" {
            let latent: Vec<_> = ck.tensors.keys().filter(|n| n.ends_with("_proj.weight") || *n == "lm_head.weight").collect();
            assert!(latent.is_empty(), "HGRN-bit stores latent f32 BitLinear weights: {latent:?}");
            let packed = ck.tensors.keys().filter(|n| n.ends_with(".weight_ternary")).count();
            assert_eq!(packed, 2 * 6 + 1, "four MLGRU and two MLP BitLinears per layer, and the LM head");
        }
        let model = Model::load(&CpuBackend::new(), ck).unwrap();
        assert_eq!(model.heads.len(), 6, "{folder}");
    }
    assert!(total <= MAX_TOTAL_BYTES, "bundled weights take {total} bytes > {MAX_TOTAL_BYTES}");
}

#[test]
fn bundled_models_classify_sst2_well_above_chance() {
    let be = CpuBackend::new();
    let examples = load_split(&assets(), Task::Sst2, Split::Validation).unwrap();
    // Every 4th example (218 of 872), spread over the file; the full split is in each card.
    let sample: Vec<_> = examples.iter().step_by(4).cloned().collect();
    for folder in FOLDERS {
        let ck = Checkpoint::load_dir(&assets().join("models").join(folder)).unwrap();
        let tk = TextTokenizer::from_json_bytes(ck.tokenizer_json.as_deref().unwrap()).unwrap();
        let model = Model::load(&be, ck).unwrap();
        let preds = trilemma::eval::predict_cpu(&be, &model, &tk, Task::Sst2, &sample).unwrap();
        let acc = trilemma::eval::accuracy(&preds, &trilemma::data::labels(&sample)).unwrap();
        eprintln!("{folder}: SST-2 validation accuracy on {} examples: {acc:.4}", sample.len());
        // Chance is 0.5 (majority 0.51); the cards report the full-split numbers.
        assert!(acc > 0.7, "{folder}: SST-2 accuracy {acc:.4}");
    }
}

#[test]
fn bundled_models_give_the_same_labels_on_the_gpu() {
    use trilemma::backend::gpu::GpuBackend;
    use trilemma::backend::tolerance;
    let gpu = match pollster::block_on(GpuBackend::acquire()) {
        Ok(g) => g,
        Err(e) if std::env::var("TRILEMMA_REQUIRE_GPU").as_deref() == Ok("1") => panic!("GPU required: {e}"),
        Err(e) => {
            eprintln!("SKIP: no GPU adapter ({e})");
            return;
        }
    };
    let cpu = CpuBackend::new();
    let examples = load_split(&assets(), Task::Sst2, Split::Validation).unwrap();
    // Every 8th example here (the whole split: `trilemma eval --backend both`, README).
    let sample: Vec<_> = examples.iter().step_by(8).cloned().collect();
    for folder in FOLDERS {
        let ck = Checkpoint::load_dir(&assets().join("models").join(folder)).unwrap();
        let tk = TextTokenizer::from_json_bytes(ck.tokenizer_json.as_deref().unwrap()).unwrap();
        let gm = Model::load(&gpu, ck.clone()).unwrap();
        let cm = Model::load(&cpu, ck).unwrap();
        let c = pollster::block_on(trilemma::eval::logits(&cpu, &cm, &tk, Task::Sst2, &sample)).unwrap();
        let g = pollster::block_on(trilemma::eval::logits(&gpu, &gm, &tk, Task::Sst2, &sample)).unwrap();
        let a = trilemma::eval::agreement(&c, &g).unwrap();
        let tol = tolerance::model_logits_abs(cm.common.arch);
        eprintln!("{folder}: {} of {} labels equal, max |GPU − CPU| {:.3e} (tolerance {tol:.0e})", a.same_labels, a.n, a.max_abs_diff);
        assert_eq!(a.same_labels, a.n, "{folder}: labels differ at {:?}", a.differing);
        assert!(a.max_abs_diff <= tol, "{folder}: max |GPU − CPU| {} > {tol}", a.max_abs_diff);
    }
}

#[test]
fn a_lost_gpu_device_is_an_error_and_the_cpu_path_still_answers() {
    use trilemma::backend::gpu::{GpuBackend, GpuContext};
    let ctx = match pollster::block_on(GpuContext::acquire()) {
        Ok(c) => c,
        Err(e) if std::env::var("TRILEMMA_REQUIRE_GPU").as_deref() == Ok("1") => panic!("GPU required: {e}"),
        Err(e) => {
            eprintln!("SKIP: no GPU adapter ({e})");
            return;
        }
    };
    let gpu = GpuBackend::new(ctx.clone());
    let ck = Checkpoint::load_dir(&assets().join("models").join("gla")).unwrap();
    let tk = TextTokenizer::from_json_bytes(ck.tokenizer_json.as_deref().unwrap()).unwrap();
    let gm = Model::load(&gpu, ck.clone()).unwrap();
    let cpu = CpuBackend::new();
    let cm = Model::load(&cpu, ck).unwrap();
    let ids = tk.encode("a gripping , funny and ultimately moving film").unwrap().ids;
    use trilemma::backend::Backend;
    let before = pollster::block_on(async { gpu.read(&gm.classify(&gpu, &ids)?).await });
    assert!(before.is_ok(), "{before:?}");
    ctx.simulate_device_loss();
    let after = pollster::block_on(async { gpu.read(&gm.classify(&gpu, &ids)?).await });
    let err = after.expect_err("a destroyed device cannot answer");
    assert!(matches!(err, trilemma::Error::Gpu(_)), "a GPU error, not {err:?}");
    // What the page and `eval` then do: the CPU path answers.
    let c = cpu.read_sync(&cm.classify(&cpu, &ids).unwrap()).unwrap();
    assert_eq!(c.shape, vec![1, 2]);
}
