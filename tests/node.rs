//! wasm tests under Node (no browser, no WebGPU): acquiring the GPU must be a clean
//! `Error::NoGpu`, never a panic (wgpu's `Instance::new` would kill the process there), and the
//! CPU path must work as it does in the page.
#![cfg(target_arch = "wasm32")]

use trilemma::backend::conformance;
use trilemma::backend::cpu::CpuBackend;
use trilemma::backend::gpu::GpuContext;
use trilemma::demo::{self, DemoWeights};
use trilemma::Error;
use wasm_bindgen_test::*;

#[wasm_bindgen_test]
async fn no_webgpu_under_node_is_a_clean_error() {
    match GpuContext::acquire().await {
        Err(Error::NoGpu(reason)) => assert!(reason.contains("WebGPU"), "{reason}"),
        Err(other) => panic!("expected NoGpu, got {other:?}"),
        Ok(ctx) => panic!("Node unexpectedly has WebGPU: {}", ctx.adapter_description()),
    }
    // A second attempt is just as clean.
    assert!(matches!(GpuContext::acquire().await, Err(Error::NoGpu(_))));
}

#[wasm_bindgen_test]
async fn cpu_path_runs_under_node() {
    let cpu = CpuBackend::new();
    conformance::golden(&cpu).await.unwrap();
    conformance::bad_inputs(&cpu).await.unwrap();
    let w = DemoWeights::seeded(300, demo::DEMO_SEED).unwrap();
    let out = demo::run(&cpu, &w, &[1, 5, 299, 7], |_| {}).await.unwrap();
    let total: f32 = out.mean.iter().sum();
    assert!((total - 1.0).abs() < 1e-5, "mean probabilities sum to {total}");
}

/// The SIMD128 matmul kernels against a float64 triple loop at awkward sizes (bit-equal to the
/// in-order f32 sum and to the scalar twin), the weight cache of the CPU backend, and the CPU
/// backend on the kernels (matmul, element-wise and row ops) against candle on every conformance case.
#[wasm_bindgen_test]
async fn simd_matmul_kernels() {
    use trilemma::backend::simd;
    assert!(simd::SIMD128);
    let cases = simd::suite::run(simd::matmul, simd::matmul_packed).unwrap();
    assert!(cases > 1000, "{cases}");
    simd::suite::twins_agree(7).unwrap();
    simd::suite::backend_cache().unwrap();
    let n = conformance::parity(&CpuBackend::new().with_matmul_kernel(false), &CpuBackend::new(), 42).await.unwrap();
    assert!(n > 100, "{n}");
}

/// The SIMD128 exp, sigmoid, SiLU, log-sigmoid, softmax and RMSNorm kernels and the ternary
/// product give their scalar twins' bits at awkward lengths and on special values (NaN, ±∞, ±0, overflow, underflow), and
/// the twins match float64 (the same checks the native unit tests run on the twins alone). The
/// parity run above checks the CPU backend on them against candle.
#[wasm_bindgen_test]
fn simd_elementwise_kernels() {
    use trilemma::backend::vmath::suite;
    assert!(suite::twins_agree(11).unwrap() > 50);
    // The SIMD128 ternary product: the host product's bits, the same refusals.
    assert!(trilemma::backend::simd_ternary::suite::run(true, 5).unwrap() > 150);
    let worst = suite::accuracy().unwrap();
    assert!(worst > 0.0 && worst <= 1.0, "{worst}");
}

/// Soft prompts (the spec's `repair` section) train in wasm as natively: a pool on a small random
/// Transformer++ through candle's autograd, the same pool again for the same seed, a per-input
/// choice, and the chosen prompt on the CPU backend giving the twin's logits.
#[wasm_bindgen_test]
async fn soft_prompts_train_under_node() {
    use trilemma::backend::Backend;
    use trilemma::data::Task;
    use trilemma::models::config::Arch;
    use trilemma::models::init::{random_checkpoint, Dims};
    use trilemma::models::Model;
    use trilemma::repair::prompts::{logits_with_prompt, select, train_pool, FrozenTwin, Selector, Seq, TrainConfig};
    let ck = random_checkpoint(&Dims { vocab: 64, hidden: 32, ..Dims::default_for(Arch::Transformer) }, 11).unwrap();
    let twin = FrozenTwin::from_checkpoint(&ck, Task::Sst2).unwrap();
    let mut rng = trilemma::rng::SplitMix64::new(1);
    let data: Vec<Seq> = (0..24)
        .map(|_| {
            let len = 3 + rng.below(8) as usize;
            let ids: Vec<u32> = std::iter::once(trilemma::text::BOS_ID).chain((1..len).map(|_| 4 + rng.below(8) as u32)).collect();
            let label = ids.contains(&7) as u32;
            Seq { ids, label }
        })
        .collect();
    let cfg = TrainConfig { prompts: 2, tokens: 2, epochs: 2, lr: 1e-2, batch: 8, seed: 3, selector: Selector::Attention };
    let a = train_pool(&twin, &data, &cfg, &mut |_, _| true).unwrap();
    let b = train_pool(&twin, &data, &cfg, &mut |_, _| true).unwrap();
    assert_eq!(a.steps, 6);
    assert_eq!(a.pool, b.pool, "same seed, same pool");
    assert!(a.loss_before.is_finite() && a.loss_after.is_finite());
    let refs: Vec<&[u32]> = data.iter().map(|s| s.ids.as_slice()).collect();
    assert!(select(&twin, &a.pool, &refs, Selector::Attention).unwrap().iter().all(|&p| p < 2));
    let be = CpuBackend::new();
    let model = Model::load(&be, ck).unwrap();
    let want = logits_with_prompt(&twin, &a.pool, 1, &refs).unwrap();
    let got = be.read(&model.classify_batch_with_prefix(&be, &a.pool.prompt(1).unwrap(), &refs, None).unwrap()).await.unwrap();
    for (g, w) in got.as_f32("logits").unwrap().chunks(2).zip(&want) {
        for (x, y) in g.iter().zip(w) {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{g:?} vs {w:?}");
        }
    }
}

/// The whole engine in wasm with a `repair` section calibrating on the validation split (what the
/// page runs): a bundled model and its pruned copy, a trained pool, per-input choice, temperature
/// scaling; twice, with identical numbers.
#[wasm_bindgen_test]
async fn a_repair_spec_runs_in_wasm() {
    use trilemma::data::{Split, Task};
    use trilemma::experiment::{self, Dataset, Folders, Spec};
    let spec = Spec::from_json(
        br#"{"models": ["transformer"], "tasks": ["sst2"], "splits": ["validation"], "limit": 40, "bootstrap": 20, "backend": "cpu",
             "compressions": [{"method": "magnitude", "sparsity": 0.6}],
             "repair": {"prompts": 2, "tokens": 2, "epochs": 1, "batch": 8, "calibration": 16, "calibration_split": "validation"}}"#,
        &|_| Ok(()),
    )
    .unwrap();
    assert!(spec.calibration_data().is_empty());
    let mut folders = Folders::new();
    let files = [
        ("config.json", include_bytes!("../assets/models/transformer/config.json").to_vec()),
        ("model.safetensors", include_bytes!("../assets/models/transformer/model.safetensors").to_vec()),
        ("tokenizer.json", include_bytes!("../assets/models/transformer/tokenizer.json").to_vec()),
    ];
    folders.insert("transformer".into(), files.into_iter().map(|(n, b)| (n.to_string(), b)).collect());
    let data = vec![Dataset::from_bytes(Task::Sst2, Split::Validation, include_bytes!("../assets/data/glue/sst2/validation.jsonl")).unwrap()];
    let mut runs = Vec::new();
    for _ in 0..2 {
        let r = experiment::run(&spec, Err("no WebGPU under Node".into()), &folders, &data, &mut experiment::Silent).await.unwrap();
        runs.push(r.to_json());
    }
    assert_eq!(experiment::without_timing(&runs[0]).unwrap(), experiment::without_timing(&runs[1]).unwrap());
    let r = experiment::Results::from_json(runs[0].as_bytes()).unwrap();
    assert_eq!((r.repair.len(), r.calibration.len()), (1, 1));
    let sp = &r.repair[0].splits[0];
    assert_eq!((sp.n, sp.histogram.iter().sum::<usize>()), (24, 24));
    assert!(r.calibration[0].nll_after <= r.calibration[0].nll + 1e-6);
}
