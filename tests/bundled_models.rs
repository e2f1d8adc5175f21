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

/// The page's CPU workers run a job's batches in any order and split (`eval::Plan`, largest
/// first, round-robin here) and put the rows back by example index: the logits must be
/// bit-identical to one loop over all batches, for a single-text and a pair task.
#[test]
fn batches_run_in_any_split_give_bit_identical_logits() {
    let be = CpuBackend::new();
    for (task, n) in [(Task::Sst2, 32), (Task::Qnli, 16)] {
        let examples: Vec<_> = load_split(&assets(), task, Split::Validation).unwrap().into_iter().take(n).collect();
        for folder in FOLDERS {
            let ck = Checkpoint::load_dir(&assets().join("models").join(folder)).unwrap();
            let tk = TextTokenizer::from_json_bytes(ck.tokenizer_json.as_deref().unwrap()).unwrap();
            let model = Model::load(&be, ck).unwrap();
            let whole = pollster::block_on(trilemma::eval::logits_batched(&be, &model, &tk, task, &examples, 4)).unwrap();
            let plan = trilemma::eval::Plan::new(&model, &tk, task, &examples, 4).unwrap();
            assert!(plan.batches.len() >= 4, "{folder} {task}: {} batches", plan.batches.len());
            let mut order: Vec<usize> = (0..plan.batches.len()).collect();
            order.sort_by_key(|&b| (std::cmp::Reverse(plan.padded_tokens(b)), b));
            let mut merged = vec![Vec::new(); examples.len()];
            for worker in 0..2 {
                for &b in order.iter().skip(worker).step_by(2) {
                    let rows = pollster::block_on(plan.batch_logits(&be, &model, b)).unwrap();
                    for (row, &i) in rows.into_iter().zip(&plan.batches[b]) {
                        merged[i] = row;
                    }
                }
            }
            assert_eq!(merged, whole, "{folder} {task}");
        }
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

/// Compressed models run on their packed form on the GPU (`matmul_i8.wgsl`, `matmul_i4.wgsl`,
/// `ternary_matmul.wgsl`, the low-rank pair, int8 activations) and give the CPU's labels within the model tolerance.
#[test]
fn packed_models_give_the_same_labels_on_the_gpu() {
    use trilemma::backend::gpu::GpuBackend;
    use trilemma::backend::tolerance;
    use trilemma::compress::apply::{apply, Recipe};
    let gpu = match pollster::block_on(GpuBackend::acquire()) {
        Ok(g) => g,
        Err(e) if std::env::var("TRILEMMA_REQUIRE_GPU").as_deref() == Ok("1") => panic!("GPU required: {e}"),
        Err(e) => {
            eprintln!("SKIP: no GPU adapter ({e}): packed models not checked on the GPU");
            return;
        }
    };
    let cpu = CpuBackend::new();
    let sample: Vec<_> = load_split(&assets(), Task::Sst2, Split::Validation).unwrap().into_iter().step_by(80).collect();
    for folder in ["transformer", "gla"] {
        let base = Checkpoint::load_dir(&assets().join("models").join(folder)).unwrap();
        let tk = TextTokenizer::from_json_bytes(base.tokenizer_json.as_deref().unwrap()).unwrap();
        let a8 = Recipe::Int8 { activations: trilemma::compress::apply::ActQuant::Int8 };
        for r in [Recipe::int8(), Recipe::int4(32), Recipe::int4(128), Recipe::ternary(), Recipe::Svd { rank_fraction: 0.5 }, a8] {
            let (ck, _) = apply(&base, &r).unwrap();
            let gm = Model::load(&gpu, ck.clone()).unwrap();
            let cm = Model::load(&cpu, ck).unwrap();
            let c = pollster::block_on(trilemma::eval::logits(&cpu, &cm, &tk, Task::Sst2, &sample)).unwrap();
            let g = pollster::block_on(trilemma::eval::logits(&gpu, &gm, &tk, Task::Sst2, &sample)).unwrap();
            let a = trilemma::eval::agreement(&c, &g).unwrap();
            let tol = tolerance::model_logits_abs(cm.common.arch);
            eprintln!("{folder} {}: {} of {} labels equal, max |GPU − CPU| {:.3e}", r.label(), a.same_labels, a.n, a.max_abs_diff);
            assert_eq!(a.same_labels, a.n, "{folder} {r:?}: labels differ at {:?}", a.differing);
            assert!(a.max_abs_diff <= tol, "{folder} {r:?}: max |GPU − CPU| {} > {tol}", a.max_abs_diff);
        }
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

fn gpu_context() -> Option<std::sync::Arc<trilemma::backend::gpu::GpuContext>> {
    match pollster::block_on(trilemma::backend::gpu::GpuContext::acquire()) {
        Ok(c) => Some(c),
        Err(e) if std::env::var("TRILEMMA_REQUIRE_GPU").as_deref() == Ok("1") => panic!("GPU required: {e}"),
        Err(e) => {
            eprintln!("SKIP: no GPU adapter ({e})");
            None
        }
    }
}

const SENTENCES: [&str; 3] = ["a gripping , funny and ultimately moving film", "dull , lifeless and far too long", "it is what it is"];

#[test]
fn weights_over_the_binding_limit_are_split_and_give_the_same_answers() {
    use trilemma::backend::gpu::GpuBackend;
    use trilemma::backend::{tolerance, Backend};
    let Some(ctx) = gpu_context() else { return };
    for folder in FOLDERS {
        let ck = Checkpoint::load_dir(&assets().join("models").join(folder)).unwrap();
        let tk = TextTokenizer::from_json_bytes(ck.tokenizer_json.as_deref().unwrap()).unwrap();
        let gpu = GpuBackend::new(ctx.clone());
        // 300 kB bindings: the [8192, 128] embedding table (4 MiB) goes up in 15 row blocks (an
        // output must still fit one binding: the LM logits [9, 8192] take 295 kB).
        gpu.limit_binding_bytes(Some(300_000));
        gpu.check_fits(&ck.tensors).expect("split matrices only need one row to fit");
        let gm = Model::load(&gpu, ck.clone()).unwrap();
        assert_eq!(gm.embeddings.blocks.len(), 8192usize.div_ceil(300_000 / 512), "{folder}");
        let cpu = CpuBackend::new();
        let cm = Model::load(&cpu, ck).unwrap();
        for s in SENTENCES {
            let ids = tk.encode(s).unwrap().ids;
            let g = pollster::block_on(async { gpu.read(&gm.classify(&gpu, &ids)?).await }).unwrap();
            let c = cpu.read_sync(&cm.classify(&cpu, &ids).unwrap()).unwrap();
            let (g, c) = (g.as_f32("g").unwrap().to_vec(), c.as_f32("c").unwrap().to_vec());
            let diff = g.iter().zip(&c).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(diff <= tolerance::model_logits_abs(cm.common.arch), "{folder} {s:?}: {g:?} vs {c:?}");
            // The LM head (tied to the split embeddings for the float models) too.
            if let (Some(_), true) = (&gm.lm_head, folder != "hgrn_bit") {
                let gl = pollster::block_on(async { gpu.read(&gm.lm_logits(&gpu, &ids)?).await }).unwrap();
                let cl = cpu.read_sync(&cm.lm_logits(&cpu, &ids).unwrap()).unwrap();
                assert_eq!(gl.shape, vec![ids.len(), 8192]);
                let d = gl.as_f32("g").unwrap().iter().zip(cl.as_f32("c").unwrap()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
                assert!(d <= tolerance::MODEL_LOGITS_ABS, "{folder} LM logits differ by {d}");
            }
        }
    }
}

#[test]
fn gpu_out_of_memory_is_an_error_and_the_cpu_path_still_answers() {
    use trilemma::backend::gpu::GpuBackend;
    use trilemma::backend::Backend;
    let Some(ctx) = gpu_context() else { return };
    let ck = Checkpoint::load_dir(&assets().join("models").join("transformer")).unwrap();
    let tk = TextTokenizer::from_json_bytes(ck.tokenizer_json.as_deref().unwrap()).unwrap();
    let ids = tk.encode(SENTENCES[0]).unwrap().ids;
    let gpu = GpuBackend::new(ctx.clone());
    // A budget smaller than the weights: refused before anything is uploaded, with the numbers.
    ctx.set_memory_budget(Some(ctx.memory().allocated + 1_000_000));
    let err = gpu.check_fits(&ck.tensors).unwrap_err().to_string();
    assert!(err.contains("does not fit") && err.contains("budget"), "{err}");
    ctx.set_memory_budget(None);

    let gm = Model::load(&gpu, ck.clone()).unwrap();
    let first = pollster::block_on(async { gpu.read(&gm.classify(&gpu, &ids)?).await }).unwrap();
    // Buffers are pooled: the same forward pass again allocates nothing new.
    let held = ctx.memory().allocated;
    let again = pollster::block_on(async { gpu.read(&gm.classify(&gpu, &ids)?).await }).unwrap();
    assert_eq!(again, first);
    assert_eq!(ctx.memory().allocated, held, "a repeated forward pass should reuse its pooled buffers");

    // Out of memory mid-run: room for the weights but not for a longer input's activations.
    let long: Vec<u32> = ids.iter().cycle().take(120).copied().collect();
    ctx.set_memory_budget(Some(ctx.memory().allocated + 4096));
    let err = pollster::block_on(async { gpu.read(&gm.classify(&gpu, &long)?).await }).unwrap_err();
    assert!(matches!(&err, trilemma::Error::Gpu(m) if m.contains("out of GPU memory")), "{err:?}");
    // What the page and `eval` then do: the CPU path answers.
    let cpu = CpuBackend::new();
    let cm = Model::load(&cpu, ck).unwrap();
    assert_eq!(cpu.read_sync(&cm.classify(&cpu, &long).unwrap()).unwrap().shape, vec![1, 2]);
    // And the GPU works again once memory is available.
    ctx.set_memory_budget(None);
    assert!(pollster::block_on(async { gpu.read(&gm.classify(&gpu, &long)?).await }).is_ok());
}

#[test]
fn a_padded_batch_gives_each_sequence_its_own_answer() {
    use trilemma::backend::gpu::GpuBackend;
    use trilemma::backend::{tolerance, Backend};
    let examples = load_split(&assets(), Task::Sst2, Split::Validation).unwrap();
    let ctx = gpu_context();
    for folder in FOLDERS {
        let ck = Checkpoint::load_dir(&assets().join("models").join(folder)).unwrap();
        let tk = TextTokenizer::from_json_bytes(ck.tokenizer_json.as_deref().unwrap()).unwrap();
        // 13 sentences of different lengths (the longest sets the padding of the others).
        let seqs: Vec<Vec<u32>> = examples.iter().step_by(67).map(|e| tk.encode_example(&e.text_a, None).unwrap()).collect();
        let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
        let cpu = CpuBackend::new();
        let cm = Model::load(&cpu, ck.clone()).unwrap();
        let tol = tolerance::model_logits_abs(cm.common.arch);
        let batch = cpu.read_sync(&cm.classify_batch(&cpu, &refs, None).unwrap()).unwrap();
        assert_eq!(batch.shape, vec![refs.len(), 2]);
        let bv = batch.as_f32("b").unwrap();
        for (i, s) in refs.iter().enumerate() {
            let one = cpu.read_sync(&cm.classify(&cpu, s).unwrap()).unwrap();
            let d = one.as_f32("o").unwrap().iter().zip(&bv[2 * i..2 * i + 2]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(d <= tol, "{folder}: sequence {i} (length {}) differs by {d} in a batch on the CPU", s.len());
        }
        if let Some(ctx) = &ctx {
            let gpu = GpuBackend::new(ctx.clone());
            let gm = Model::load(&gpu, ck.clone()).unwrap();
            let g = pollster::block_on(async { gpu.read(&gm.classify_batch(&gpu, &refs, None)?).await }).unwrap();
            let d = g.as_f32("g").unwrap().iter().zip(bv).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(d <= tol, "{folder}: GPU batch differs from the CPU batch by {d}");
        }
        // Bad batches are errors, not panics.
        assert!(cm.classify_batch(&cpu, &[], None).is_err());
        assert!(cm.classify_batch(&cpu, &[refs[0], &[]], None).is_err());
    }
}

#[test]
fn half_precision_weights_on_the_gpu_match_the_cpu_twin() {
    use trilemma::backend::gpu::GpuBackend;
    use trilemma::backend::{tolerance, Backend};
    let examples = load_split(&assets(), Task::Sst2, Split::Validation).unwrap();
    let sample: Vec<_> = examples.iter().step_by(29).cloned().collect(); // 31 sentences
    let ctx = gpu_context();
    for folder in ["transformer", "gla"] {
        let ck = Checkpoint::load_dir(&assets().join("models").join(folder)).unwrap();
        let tk = TextTokenizer::from_json_bytes(ck.tokenizer_json.as_deref().unwrap()).unwrap();
        let f32_cpu = CpuBackend::new();
        let half_cpu = CpuBackend::with_half_weights();
        let full = Model::load(&f32_cpu, ck.clone()).unwrap();
        let half = Model::load(&half_cpu, ck.clone()).unwrap();
        assert!(half.lm_head.is_some());
        let a = pollster::block_on(trilemma::eval::logits(&f32_cpu, &full, &tk, Task::Sst2, &sample)).unwrap();
        let b = pollster::block_on(trilemma::eval::logits(&half_cpu, &half, &tk, Task::Sst2, &sample)).unwrap();
        let f16_vs_f32 = trilemma::eval::agreement(&a, &b).unwrap();
        eprintln!("{folder}: f16 weights vs f32 on {} sentences: {} same labels, max |Δ logit| {:.2e}", sample.len(), f16_vs_f32.same_labels, f16_vs_f32.max_abs_diff);
        // Rounding weights to 11 significant bits moves the logits a little, not the answers.
        assert!(f16_vs_f32.max_abs_diff < 0.05, "{folder}: {}", f16_vs_f32.max_abs_diff);
        if let Some(ctx) = &ctx {
            let gpu = GpuBackend::new(ctx.clone());
            gpu.set_half_weights(true);
            let gm = Model::load(&gpu, ck.clone()).unwrap();
            let g = pollster::block_on(trilemma::eval::logits(&gpu, &gm, &tk, Task::Sst2, &sample)).unwrap();
            // A device with shader-f16 multiplies the halves in f16: its twin is the CPU doing the same.
            let twin = if gpu.f16_arithmetic() {
                let twin_cpu = CpuBackend::with_f16_arithmetic();
                let tm = Model::load(&twin_cpu, ck.clone()).unwrap();
                let t = pollster::block_on(trilemma::eval::logits(&twin_cpu, &tm, &tk, Task::Sst2, &sample)).unwrap();
                let f16_vs_f32 = trilemma::eval::agreement(&b, &t).unwrap();
                eprintln!("{folder}: f16 products vs f32 products (CPU): {} same labels, max |Δ logit| {:.2e}", f16_vs_f32.same_labels, f16_vs_f32.max_abs_diff);
                t
            } else {
                b.clone()
            };
            let gpu_vs_cpu = trilemma::eval::agreement(&twin, &g).unwrap();
            eprintln!("{folder}: GPU (f16 products: {}) vs its CPU twin: max |Δ logit| {:.2e}", gpu.f16_arithmetic(), gpu_vs_cpu.max_abs_diff);
            assert_eq!(gpu_vs_cpu.same_labels, sample.len(), "{folder}");
            assert!(gpu_vs_cpu.max_abs_diff <= tolerance::MODEL_LOGITS_ABS, "{folder}: {}", gpu_vs_cpu.max_abs_diff);
        }
    }
}
