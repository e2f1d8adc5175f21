//! `trilemma train` on tiny models: the training twin against the inference models (export, load,
//! same logits on padded batches of awkward lengths), determinism, the loss going down, the packed
//! export, the multi-task head folder.

use trilemma::backend::cpu::CpuBackend;
use trilemma::backend::{HostTensor, TensorMeta};
use trilemma::data::Task;
use trilemma::io::{write_safetensors, Checkpoint};
use trilemma::models::config::Arch;
use trilemma::models::init::Dims;
use trilemma::models::Model;
use trilemma::rng::SplitMix64;
use trilemma::train::{export, train, Corpus, Recipe, Seq, Trainee};

const ARCHS: [Arch; 3] = [Arch::Transformer, Arch::Gla, Arch::HgrnBit];
const TASKS: [Task; 2] = [Task::Sst2, Task::Mnli];

fn dims(arch: Arch) -> Dims {
    let heads = match arch {
        Arch::Transformer => 4,
        Arch::Gla => 2,
        Arch::HgrnBit => 1,
    };
    Dims { arch, vocab: 61, hidden: 32, layers: 2, heads, kv_heads: heads, intermediate: 48, num_labels: Some(2) }
}

/// Sequences that start with `<s>` (id 1) and mostly follow a rule (next = 4 + (5·prev + 3) mod 57,
/// else a random token), so a language model has something to learn; labels are functions of the
/// tokens: SST-2 = whether token 7 occurs, MNLI = first token mod 3.
fn corpus(seed: u64) -> Corpus {
    let mut rng = SplitMix64::new(seed);
    let mut seq = |len: usize| -> Vec<u32> {
        let mut s = vec![1u32];
        for _ in 1..len {
            let prev = *s.last().unwrap();
            s.push(if rng.next_f32() < 0.8 { 4 + (5 * prev + 3) % 57 } else { 4 + rng.below(57) as u32 });
        }
        s
    };
    let mk = |s: Vec<u32>, task: Task| {
        let label = match task {
            Task::Sst2 => s.contains(&7) as u32,
            _ => s[1] % 3,
        };
        Seq { ids: s, label }
    };
    let sst: Vec<Seq> = (0..48).map(|i| mk(seq(2 + i % 23), Task::Sst2)).collect();
    let mnli: Vec<Seq> = (0..40).map(|i| mk(seq(3 + i % 37), Task::Mnli)).collect();
    let lm = sst.iter().chain(&mnli).map(|s| s.ids.clone()).collect();
    Corpus { lm, tasks: vec![(Task::Sst2, sst), (Task::Mnli, mnli)], monitor: vec![] }
}

fn recipe(steps: usize) -> Recipe {
    Recipe { batch: 8, max_steps: steps, min_task_examples: 0, lm_lr: 3e-3, ft_lr: 3e-3, log_every: 1, tasks: TASKS.to_vec(), ..Recipe::default() }
}

fn trained(arch: Arch, steps: usize) -> Trainee {
    let t = Trainee::init_dims(dims(arch), &TASKS, 11).unwrap();
    train(&t, &corpus(3), &recipe(steps), &mut |_| {}).unwrap();
    t
}

fn load(t: &Trainee) -> Model<CpuBackend> {
    let (config, tensors) = export(t, &recipe(0)).unwrap();
    // Through the real file format, as a folder would be read.
    let st = write_safetensors(&tensors, None).unwrap();
    let files = [("config.json".to_string(), serde_json::to_vec(&config).unwrap()), ("model.safetensors".to_string(), st)];
    Model::load(&CpuBackend::new(), Checkpoint::from_files(&files.into_iter().collect()).unwrap()).unwrap()
}

#[test]
fn twin_and_loaded_model_agree_on_padded_batches() {
    let be = CpuBackend::new();
    let mut rng = SplitMix64::new(5);
    // Lengths around GLA's chunk of 16 and one token alone, in one right-padded batch.
    let seqs: Vec<Vec<u32>> = [1usize, 7, 16, 17, 33].iter().map(|&n| (0..n).map(|_| rng.below(61) as u32).collect()).collect();
    let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
    for arch in ARCHS {
        let t = trained(arch, 6);
        let model = load(&t);
        for task in TASKS {
            let mut nodrop_rng = SplitMix64::new(0);
            let mut nodrop = trilemma::train::twin::Dropout { p: 0.0, rng: &mut nodrop_rng };
            let twin = t.class_logits(task, &refs, &mut nodrop).unwrap().to_vec2::<f32>().unwrap();
            for (i, s) in seqs.iter().enumerate() {
                let out = be.read_sync(&model.classify_task(&be, s, Some(task.name())).unwrap()).unwrap();
                let got = out.as_f32("logits").unwrap();
                assert_eq!(got.len(), task.num_labels() as usize);
                // BitLinear: the twin multiplies dequantised floats, the model sums packed integers
                // then scales; the same numbers rounded differently.
                let tol = if arch == Arch::HgrnBit { 2e-3 } else { 2e-5 };
                for (a, b) in got.iter().zip(&twin[i]) {
                    assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{arch:?} {task} len {}: model {got:?} vs twin {:?}", s.len(), twin[i]);
                }
            }
        }
    }
}

#[test]
fn training_is_deterministic_and_the_loss_goes_down() {
    for arch in ARCHS {
        let run = || {
            let t = Trainee::init_dims(dims(arch), &TASKS, 11).unwrap();
            let log = train(&t, &corpus(3), &Recipe { lm_epochs: 4, ft_epochs: 0, ..recipe(0) }, &mut |_| {}).unwrap();
            (t.params.to_host().unwrap(), log)
        };
        let (a, log) = run();
        let (b, _) = run();
        assert_eq!(a, b, "{arch:?}: the same recipe gives the same weights, bit for bit");
        let lm: Vec<f64> = log.iter().filter(|l| l.phase == "lm").map(|l| l.loss).collect();
        let (first, last) = (lm[..3].iter().sum::<f64>() / 3.0, lm[lm.len() - 3..].iter().sum::<f64>() / 3.0);
        // Uniform over 61 tokens is ln 61 ≈ 4.11; 44 steps on the rule-following sequences must
        // get well below where they started.
        assert!(last < first - 0.5, "{arch:?}: LM loss {first:.3} -> {last:.3}");
    }
}

#[test]
fn export_packs_bitlinear_and_declares_the_heads() {
    let t = Trainee::init_dims(dims(Arch::HgrnBit), &TASKS, 2).unwrap();
    let (config, tensors) = export(&t, &recipe(0)).unwrap();
    assert_eq!(config["trilemma"]["default_task"], "sst2");
    assert_eq!(config["trilemma"]["task_heads"]["mnli"], 3);
    assert_eq!(config["id2label"]["1"], "positive");
    assert!(tensors.keys().all(|n| !n.ends_with("_proj.weight")), "no latent BitLinear weight left");
    let packed = &tensors["model.layers.0.attn.i_proj.weight_ternary"];
    assert_eq!(packed.shape, vec![32, 2]);
    assert_eq!(tensors["lm_head.weight_ternary"].shape, vec![61, 2]);
    assert_eq!(tensors["score.mnli.weight"].shape, vec![3, 32]);
    // Tied embeddings for the float architectures: no lm_head tensor at all.
    let (c, tensors) = export(&Trainee::init_dims(dims(Arch::Gla), &TASKS, 2).unwrap(), &recipe(0)).unwrap();
    assert_eq!(c["tie_word_embeddings"], true);
    assert!(!tensors.contains_key("lm_head.weight"));
}

#[test]
fn task_heads_are_chosen_by_name_and_refused_when_absent() {
    let be = CpuBackend::new();
    let model = load(&Trainee::init_dims(dims(Arch::Transformer), &TASKS, 4).unwrap());
    assert_eq!(model.head(Some("mnli")).unwrap().shape(), &[3, 32]);
    assert_eq!(model.head(Some("sst2")).unwrap().shape(), &[2, 32]);
    assert_eq!(model.head(None).unwrap().shape(), &[2, 32]);
    let err = model.head(Some("qnli")).unwrap_err().to_string();
    assert!(err.contains("qnli") && err.contains("sst2, mnli"), "{err}");
    assert_eq!(be.read_sync(&model.classify_task(&be, &[1, 5, 9], Some("mnli")).unwrap()).unwrap().shape, vec![1, 3]);

    // A declared head that is missing, and a malformed declaration, are clear errors.
    let (mut config, mut tensors) = export(&Trainee::init_dims(dims(Arch::Gla), &TASKS, 4).unwrap(), &recipe(0)).unwrap();
    let folder = |config: &serde_json::Value, tensors: &std::collections::BTreeMap<String, HostTensor>| {
        let files = [("config.json".to_string(), serde_json::to_vec(config).unwrap()), ("model.safetensors".to_string(), write_safetensors(tensors, None).unwrap())];
        Model::load(&be, Checkpoint::from_files(&files.into_iter().collect()).unwrap()).map(|_| ())
    };
    tensors.remove("score.mnli.weight");
    assert!(folder(&config, &tensors).unwrap_err().to_string().contains("score.mnli.weight"));
    config["trilemma"]["task_heads"] = serde_json::json!({ "mnli": 0 });
    assert!(folder(&config, &tensors).unwrap_err().to_string().contains("trilemma.task_heads.mnli"));
    config["trilemma"]["task_heads"] = serde_json::json!([3]);
    assert!(folder(&config, &tensors).unwrap_err().to_string().contains("task_heads"));
}

#[test]
fn learning_rate_schedule_warms_up_and_decays() {
    use trilemma::train::lr_at;
    assert!((lr_at(0, 100, 1.0, 0.1, 0.1) - 0.1).abs() < 1e-12);
    assert!((lr_at(9, 100, 1.0, 0.1, 0.1) - 1.0).abs() < 1e-12);
    assert!((lr_at(99, 100, 1.0, 0.1, 0.1) - (1.0 - 0.9 * 89.0 / 90.0)).abs() < 1e-12);
    assert!(lr_at(1, 1, 1.0, 0.05, 0.1).is_finite());
}
