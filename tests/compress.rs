//! Compression applied to the bundled checkpoints: zero compression is the identity, exact sparsity and the 2:4
//! pattern in every targeted tensor, quantization within its bound end to end (reference form), packed models against
//! their reference form (same logits within a named tolerance, same answers, bytes as stored), corrupted packed
//! tensors refused, dropped layers, refusals, and `trilemma compress` writing a folder that loads like any other; the
//! calibration-based recipes (Wanda, gradient-aware, SFSD with its bias) on the bundled models and through
//! `trilemma compress --task`.
#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};
use std::process::Command;
use trilemma::backend::cpu::CpuBackend;
use trilemma::backend::Data;
use trilemma::compress::apply::{apply, apply_reference, apply_with, apply_with_form, folder_files, Calibration, Form, Pattern, Recipe};
use trilemma::data::{load_split, Split, Task};
use trilemma::io::Checkpoint;
use trilemma::models::Model;
use trilemma::text::TextTokenizer;

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets")
}

fn checkpoint(name: &str) -> Checkpoint {
    Checkpoint::load_dir(&assets().join("models").join(name)).unwrap()
}

/// SST-2 logits of a checkpoint on the first 24 validation sentences.
fn logits(ck: &Checkpoint) -> Vec<Vec<f32>> {
    let be = CpuBackend::new();
    let tk = TextTokenizer::from_json_bytes(ck.tokenizer_json.as_deref().unwrap()).unwrap();
    let model = Model::load(&be, ck.clone()).unwrap();
    let ex: Vec<_> = load_split(&assets(), Task::Sst2, Split::Validation).unwrap().into_iter().take(24).collect();
    pollster::block_on(trilemma::eval::logits(&be, &model, &tk, Task::Sst2, &ex)).unwrap()
}

fn targeted(ck: &Checkpoint) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    ck.tensors
        .iter()
        .filter(|(n, t)| n.starts_with("model.layers.") && t.shape.len() == 2)
        .filter_map(|(n, t)| match &t.data {
            Data::F32(v) => Some((n.clone(), t.shape.clone(), v.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn zero_compression_gives_identical_outputs() {
    for name in ["transformer", "gla", "hgrn_bit"] {
        let ck = checkpoint(name);
        let base = logits(&ck);
        for r in [Recipe::Magnitude { sparsity: 0.0 }, Recipe::StructuredRows { sparsity: 0.0 }, Recipe::DropLayers { layers: vec![] }] {
            let (c, rec) = apply(&ck, &r).unwrap();
            assert_eq!(logits(&c), base, "{name} {r:?}");
            assert_eq!(rec.relative_error, 0.0);
        }
    }
}

#[test]
fn sparsity_is_exact_and_two_four_holds_in_every_tensor() {
    let ck = checkpoint("transformer");
    let (c, rec) = apply(&ck, &Recipe::Magnitude { sparsity: 0.5 }).unwrap();
    assert_eq!(rec.tensors, 14);
    for (name, shape, w) in targeted(&c) {
        let n = shape[0] * shape[1];
        assert_eq!(w.iter().filter(|v| **v == 0.0).count(), n / 2, "{name}");
    }
    assert!((rec.sparsity - 0.5).abs() < 1e-12);
    let (c, rec) = apply(&ck, &Recipe::NM { n: 2, m: 4 }).unwrap();
    for (name, shape, w) in targeted(&c) {
        let orig = match &ck.tensors[&name].data {
            Data::F32(v) => v.clone(),
            _ => unreachable!(),
        };
        for (g, (kept, was)) in w.chunks(4).zip(orig.chunks(4)).enumerate() {
            assert_eq!(kept.iter().filter(|v| **v != 0.0).count(), 2, "{name} group {g}");
            // The kept two are the two largest |w| of the group.
            let mut mags: Vec<f32> = was.iter().map(|v| v.abs()).collect();
            mags.sort_by(|a, b| b.total_cmp(a));
            for (k, v) in kept.iter().zip(was) {
                if *k != 0.0 {
                    assert_eq!(k, v);
                    assert!(v.abs() >= mags[1], "{name} group {g}");
                }
            }
        }
        assert_eq!(shape[1] % 4, 0);
    }
    // 2:4 stores the 2 kept f32 values of every 4 plus a 2-bit index each: (2·32 + 2·2) / 4 = 17 bits per weight.
    assert!((rec.bits_per_weight - 17.0).abs() < 1e-9, "{}", rec.bits_per_weight);
}

#[test]
fn quantized_weights_stay_within_their_bound_and_the_answers_barely_move() {
    let ck = checkpoint("gla");
    let base = logits(&ck);
    let (c, rec) = apply_reference(&ck, &Recipe::int8()).unwrap();
    assert_eq!(targeted(&c).len(), targeted(&ck).len());
    for (name, shape, w) in targeted(&c) {
        let Data::F32(orig) = &ck.tensors[&name].data else { unreachable!() };
        let inp = shape[1];
        for (r, (row, orow)) in w.chunks(inp).zip(orig.chunks(inp)).enumerate() {
            let scale = orow.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            for (a, b) in row.iter().zip(orow) {
                assert!((a - b).abs() <= scale / 2.0 + 1e-7, "{name} row {r}");
            }
        }
    }
    assert!(rec.bits_per_weight > 8.0 && rec.bits_per_weight < 8.5, "{}", rec.bits_per_weight);
    let q = logits(&c);
    let same = base.iter().zip(&q).filter(|(a, b)| trilemma::eval::argmax_rows(&[a.to_vec()]) == trilemma::eval::argmax_rows(&[b.to_vec()])).count();
    assert!(same >= 23, "int8 changed {} of 24 answers", 24 - same);
    // HGRN-bit's linear weights are packed ternary already: nothing to quantize, each one listed.
    let (_, h) = apply(&checkpoint("hgrn_bit"), &Recipe::int8()).unwrap();
    assert_eq!(h.tensors, 0);
    assert!(!h.skipped.is_empty() && h.skipped.iter().all(|s| s.contains("packed ternary")));
    // SVD at the break-even rank: factors take about as many bytes as the dense weight.
    let (_, s) = apply(&ck, &Recipe::Svd { rank_fraction: 1.0 }).unwrap();
    assert!(s.relative_error > 0.0 && s.bits_per_weight <= 32.0 + 1e-9, "{s:?}");
}

#[test]
fn dropping_layers_and_refusals() {
    let ck = checkpoint("transformer");
    let (c, rec) = apply(&ck, &Recipe::DropLayers { layers: vec![0] }).unwrap();
    assert_eq!((rec.layers_before, rec.layers_after), (2, 1));
    assert!(c.tensors.keys().all(|k| !k.starts_with("model.layers.1.")));
    // The remaining block is the old block 1.
    assert_eq!(c.tensors["model.layers.0.attn.q_proj.weight"], ck.tensors["model.layers.1.attn.q_proj.weight"]);
    assert_ne!(logits(&c), logits(&ck));
    // HGRN-bit keeps one lower-bound row per remaining layer.
    let h = checkpoint("hgrn_bit");
    let (hc, _) = apply(&h, &Recipe::DropLayers { layers: vec![0] }).unwrap();
    let Data::F32(all) = &h.tensors["model.lower_bounds"].data else { unreachable!() };
    let Data::F32(kept) = &hc.tensors["model.lower_bounds"].data else { unreachable!() };
    assert_eq!(kept.as_slice(), &all[128..]);
    assert_eq!(logits(&hc).len(), 24);
    for (r, msg) in [
        (Recipe::DropLayers { layers: vec![2] }, "does not exist"),
        (Recipe::DropLayers { layers: vec![0, 1] }, "no model"),
        (Recipe::Magnitude { sparsity: 1.5 }, "sparsity"),
        (Recipe::int4(48), "group"),
        (Recipe::NM { n: 5, m: 4 }, "N:M"),
    ] {
        let e = apply(&ck, &r).unwrap_err().to_string();
        assert!(e.contains(msg), "{r:?}: {e}");
    }
    assert!(serde_json::from_str::<Recipe>(r#"{"method": "int3"}"#).is_err());
    assert!(serde_json::from_str::<Recipe>(r#"{"method": "int8", "bits": 3}"#).is_err());
}

#[test]
fn trilemma_compress_writes_a_folder_that_loads() {
    let dir = std::env::temp_dir().join(format!("trilemma-compress-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_trilemma")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap();
    let out = dir.join("gla-int4");
    let o = run(&["compress", "--model", "gla", "--recipe", r#"{"method": "int4", "group": 32}"#, "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let record: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(record["recipe"]["method"], "int4");
    assert!((record["bits_per_weight"].as_f64().unwrap() - 5.0).abs() < 1e-9, "{record}");
    let loaded = Checkpoint::load_dir(&out).unwrap();
    assert_eq!(loaded.config["trilemma"]["compressions"][0]["recipe"]["group"], 32);
    let (mem, rec) = apply(&checkpoint("gla"), &Recipe::int4(32)).unwrap();
    assert_eq!(logits(&loaded), logits(&mem));
    // Stored packed: codes and scales, exactly the record's bytes.
    assert!(loaded.tensors.contains_key("model.layers.0.attn.q_proj.weight_int4"));
    let stored: usize = loaded.tensors.iter().filter(|(n, _)| n.ends_with(".weight_int4") || (n.ends_with(".weight_scale") && n.starts_with("model.layers."))).map(|(_, t)| t.numel() * 4).sum();
    assert_eq!((stored, record["bytes_compressed"].as_u64().unwrap() as usize), (rec.bytes_compressed, rec.bytes_compressed));
    // --form reference writes the f32 slow twin.
    let twin = dir.join("gla-int4-reference");
    let o = run(&["compress", "--model", "gla", "--recipe", r#"{"method": "int4", "group": 32}"#, "--form", "reference", "--out", twin.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let twin = Checkpoint::load_dir(&twin).unwrap();
    assert!(twin.tensors.keys().all(|n| !n.ends_with(".weight_int4")) && twin.tensors.contains_key("model.layers.0.attn.q_proj.weight"));
    assert_eq!(logits(&twin), logits(&apply_reference(&checkpoint("gla"), &Recipe::int4(32)).unwrap().0));
    let e = run(&["eval", "--model", out.to_str().unwrap(), "--task", "sst2", "--limit", "16"]);
    assert!(e.status.success(), "{}", String::from_utf8_lossy(&e.stderr));
    for (args, msg) in [
        (vec!["compress", "--model", "gla", "--recipe", r#"{"method": "int4", "group": 32}"#, "--out", out.to_str().unwrap()], "not empty"),
        (vec!["compress", "--model", "gla", "--recipe", "int4", "--out", dir.join("x").to_str().unwrap()], "--recipe"),
        (vec!["compress", "--model", "gla", "--recipe", r#"{"method": "int8"}"#, "--form", "zip", "--out", dir.join("z").to_str().unwrap()], "--form"),
        (vec!["compress", "--model", "nope", "--recipe", r#"{"method": "int8"}"#, "--out", dir.join("y").to_str().unwrap()], "does not exist"),
    ] {
        let o = run(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(msg), "{args:?}: {err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_spec_with_compressions_reports_the_hemorrhage() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use trilemma::experiment::native::{self, NativeHooks};
    use trilemma::experiment::{Progress, Spec};
    let exists = |m: &str| native::model_exists(&assets(), m);
    let spec = Spec::from_json(
        br#"{"models": ["transformer"], "tasks": ["sst2"], "splits": ["validation"], "limit": 40, "bootstrap": 100,
             "compressions": [{"method": "magnitude", "sparsity": 0.0}, {"method": "int4", "group": 32}, {"method": "drop_layers", "layers": [1]}]}"#,
        &exists,
    )
    .unwrap();
    let mut sink = |_: &Progress| {};
    let mut hooks = NativeHooks::new(&mut sink, Arc::new(AtomicBool::new(false)));
    let r = native::run(&spec, &assets(), None, &mut hooks).unwrap();
    let names: Vec<&str> = r.units.iter().map(|u| u.model.as_str()).collect();
    assert_eq!(names, ["transformer", "transformer + magnitude 0", "transformer + int4 g32", "transformer + drop layers [1]"]);
    assert_eq!(r.hemorrhage.len(), 3);
    let zero = &r.hemorrhage[0];
    assert_eq!((zero.kl, zero.agreement, zero.accuracy_drop.value, zero.broken, zero.repaired), (0.0, 1.0, 0.0, 0, 0));
    for h in &r.hemorrhage {
        assert_eq!((h.base.as_str(), h.n), ("transformer", 40));
        let u = r.units.iter().find(|u| u.model == h.model).unwrap();
        assert_eq!(h.accuracy, u.metric("accuracy").unwrap().value);
        assert!((h.base_accuracy - h.accuracy - h.accuracy_drop.value).abs() < 1e-12);
        assert!(h.accuracy_drop.ci95[0] <= h.accuracy_drop.value && h.accuracy_drop.value <= h.accuracy_drop.ci95[1]);
    }
    // Perplexity through the LM head: unchanged at zero compression, moved by the others (the bundled models were
    // fine-tuned after one LM epoch, so their LM heads are poor and a change can go either way).
    assert_eq!(zero.perplexity_ratio, Some(1.0));
    for h in &r.hemorrhage[1..] {
        let (b, c, q) = (h.perplexity_base.unwrap(), h.perplexity.unwrap(), h.perplexity_ratio.unwrap());
        assert!(b > 1.0 && c > 1.0 && (q - c / b).abs() < 1e-12 && q != 1.0, "{h:?}");
    }
    // Removing a block moves the outputs far more than int4 does.
    assert!(r.hemorrhage[2].kl > r.hemorrhage[1].kl && r.hemorrhage[1].kl > 0.0);
    let rec = r.provenance.models.iter().find(|m| m.name == "transformer + int4 g32").unwrap();
    assert_eq!(rec.compressed_from.as_deref(), Some("transformer"));
    let c = rec.compression.as_ref().unwrap();
    assert!((c.bits_per_weight - 5.0).abs() < 1e-9);
    // The model record's bytes are the packed checkpoint's: the original's with the targeted f32 weights swapped for
    // their codes and scales.
    let base = r.provenance.models.iter().find(|m| m.name == "transformer").unwrap();
    assert_eq!(rec.weight_bytes as usize + c.bytes_f32, base.weight_bytes as usize + c.bytes_compressed);
    let html = trilemma::report::html(&r).unwrap();
    assert!(html.contains("Hemorrhage") && html.contains("transformer + int4 g32"));
    assert!(html.contains("Packed form: quantized and low-rank weights run as stored"), "the compression section says what ran");
    assert!(html.contains("transformer: accuracy vs bits per weight (sst2 validation)"), "the hemorrhage chart");
    // Refusals name the field.
    for (json, field) in [
        (r#"{"models": ["gla"], "tasks": ["sst2"], "compressions": [{"method": "int4", "group": 7}]}"#, "`compressions[0]`"),
        (r#"{"models": ["gla"], "tasks": ["sst2"], "compressions": [{"method": "zip"}]}"#, "compressions[0]"),
        (r#"{"models": ["gla"], "tasks": ["sst2"], "compressions": [{"method": "int8"}, {"method": "int8"}]}"#, "`compressions[1]`"),
    ] {
        let e = Spec::from_json(json.as_bytes(), &exists).unwrap_err().to_string();
        assert!(e.contains(field), "{json}: {e}");
    }
}

/// Packed-vs-reference logits: the same weights, multiplied from codes and scales (the scale applied to the sum,
/// factors applied one after the other) instead of from the f32 matrix they stand for — summation order only, so the
/// whole-model bound of the GPU-vs-CPU parity.
const PACKED_VS_REFERENCE_LOGITS_ABS: f32 = trilemma::backend::tolerance::MODEL_LOGITS_ABS;

fn packed_recipes() -> Vec<Recipe> {
    use trilemma::compress::apply::ActQuant;
    vec![
        Recipe::int8(),
        Recipe::int4(32),
        Recipe::int4(128),
        Recipe::ternary(),
        Recipe::Svd { rank_fraction: 0.5 },
        Recipe::Int8 { activations: ActQuant::Int8 },
        Recipe::Int4 { group: 64, activations: ActQuant::Int8 },
    ]
}

/// Dynamic per-token int8 activations (W8A8): recorded in the folder, read back by the loader, and active — the
/// logits move from the weight-only int8 model's, by little.
#[test]
fn int8_activations_are_recorded_loaded_and_active() {
    use trilemma::compress::apply::{act_int8, ActQuant};
    let r: Recipe = serde_json::from_str(r#"{"method": "int8", "activations": "int8"}"#).unwrap();
    assert_eq!(r, Recipe::Int8 { activations: ActQuant::Int8 });
    assert_eq!(r.label(), "int8 a8");
    assert_eq!(serde_json::to_string(&Recipe::int8()).unwrap(), r#"{"method":"int8"}"#, "weight-only specs stay as they were");
    assert!(serde_json::from_str::<Recipe>(r#"{"method": "int8", "activations": "int4"}"#).is_err());
    for name in ["transformer", "gla"] {
        let ck = checkpoint(name);
        let (a8, _) = apply(&ck, &r).unwrap();
        let (w8, _) = apply(&ck, &Recipe::int8()).unwrap();
        assert!(act_int8(&a8.config) && !act_int8(&w8.config) && !act_int8(&ck.config));
        let (la, lw) = (logits(&a8), logits(&w8));
        let worst = la.iter().flatten().zip(lw.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst > 0.0, "{name}: the activations were not quantised");
        assert!(worst < 0.5, "{name}: |W8A8 − W8| = {worst}");
        let back = Checkpoint::from_files(&folder_files(&a8).unwrap()).unwrap();
        assert_eq!(logits(&back), la, "{name}: reloaded");
    }
}

const PACKED_SUFFIXES: [&str; 6] = [".weight_int8", ".weight_int4", ".weight_ternary", ".weight_scale", ".weight_lr_a", ".weight_lr_b"];

#[test]
fn packed_models_match_their_reference_form() {
    for name in ["transformer", "gla", "hgrn_bit"] {
        let ck = checkpoint(name);
        for r in packed_recipes() {
            let (p, prec) = apply(&ck, &r).unwrap();
            let (f, frec) = apply_reference(&ck, &r).unwrap();
            assert_eq!(prec, frec, "{name} {r:?}: both forms report the packed form");
            let (lp, lf) = (logits(&p), logits(&f));
            let worst = lp.iter().flatten().zip(lf.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst <= PACKED_VS_REFERENCE_LOGITS_ABS, "{name} {r:?}: |packed - reference| = {worst}");
            assert_eq!(trilemma::eval::argmax_rows(&lp), trilemma::eval::argmax_rows(&lf), "{name} {r:?}: predictions");
            // Bytes: what the record says is what the packed tensors hold, and the checkpoint's total moves by it.
            let layer_packed: usize = p
                .tensors
                .iter()
                .filter(|(n, _)| n.starts_with("model.layers.") && PACKED_SUFFIXES.iter().any(|s| n.ends_with(s)))
                .map(|(_, t)| t.numel() * 4)
                .sum();
            if name == "hgrn_bit" {
                // Its BitLinears are packed ternary already: nothing compressed, nothing changed.
                assert_eq!((prec.tensors, prec.bytes_compressed), (0, 0), "{r:?}");
                assert_eq!(p.weight_bytes(), ck.weight_bytes());
            } else {
                assert!(prec.tensors > 0);
                assert_eq!(layer_packed, prec.bytes_compressed, "{name} {r:?}");
                assert!(p.tensors.keys().all(|n| !PACKED_SUFFIXES.iter().any(|s| n.ends_with(s)) || n.starts_with("model.layers.")));
                assert_eq!(p.weight_bytes().0 + prec.bytes_f32, ck.weight_bytes().0 + prec.bytes_compressed, "{name} {r:?}");
                let left_f32 = p.tensors.keys().filter(|n| n.starts_with("model.layers.") && n.ends_with(".weight") && !n.contains("norm")).count();
                assert_eq!(left_f32, prec.skipped.len(), "{name} {r:?}: only the skipped weights stay f32: {:?}", prec.skipped);
                // The f32 size of the packed checkpoint is the original's (K is a multiple of 16 in the bundled models),
                // plus ternary's one scale per tensor, counted as HGRN-bit's always was.
                let scales = if matches!(r, Recipe::Ternary { .. }) { 4 * prec.tensors } else { 0 };
                assert_eq!(p.weight_bytes().1, ck.weight_bytes().1 + scales, "{name} {r:?}");
            }
            // The written folder reloads to the same model.
            let files = folder_files(&p).unwrap();
            let back = Checkpoint::from_files(&files).unwrap();
            assert_eq!(logits(&back), lp, "{name} {r:?}: reloaded");
        }
    }
}

#[test]
fn corrupted_packed_tensors_are_refused() {
    use trilemma::backend::{Data, HostTensor};
    let load = |ck: &Checkpoint| Model::load(&CpuBackend::new(), ck.clone()).map(|_| ()).map_err(|e| e.to_string());
    let ck = checkpoint("transformer");
    let q = "model.layers.0.attn.q_proj";
    let edit = |r: Recipe, f: &dyn Fn(&mut Checkpoint)| {
        let (mut c, _) = apply(&ck, &r).unwrap();
        load(&c).unwrap();
        f(&mut c);
        load(&c).unwrap_err()
    };
    let set_word = |c: &mut Checkpoint, name: &str, i: usize, v: u32| {
        let Data::U32(w) = &mut c.tensors.get_mut(name).unwrap().data else { unreachable!() };
        w[i] = v;
    };
    let reshape = |c: &mut Checkpoint, name: &str, shape: &[usize]| {
        let t = c.tensors.get_mut(name).unwrap();
        let n: usize = shape.iter().product();
        let data = match &t.data {
            Data::U32(w) => Data::U32(w.iter().copied().cycle().take(n).collect()),
            Data::F32(w) => Data::F32(w.iter().copied().cycle().take(n).collect()),
        };
        *t = HostTensor::new(shape, data).unwrap();
    };
    let cases: Vec<(Recipe, Box<dyn Fn(&mut Checkpoint)>, &str)> = vec![
        (Recipe::int8(), Box::new(|c| reshape(c, &format!("{q}.weight_int8"), &[128, 33])), "weight_int8 has shape"),
        (Recipe::int8(), Box::new(|c| set_word(c, &format!("{q}.weight_int8"), 5, 0x0000_8000)), "-128"),
        (Recipe::int8(), Box::new(|c| reshape(c, &format!("{q}.weight_scale"), &[64])), "scales must be [128]"),
        (Recipe::int8(), Box::new(|c| { c.tensors.get_mut(&format!("{q}.weight_scale")).unwrap().data = Data::F32(vec![f32::NAN; 128]); }), "finite"),
        (Recipe::int8(), Box::new(|c| { c.tensors.remove(&format!("{q}.weight_scale")); }), "missing tensor"),
        (Recipe::int4(32), Box::new(|c| set_word(c, &format!("{q}.weight_int4"), 3, 0x8000_0000)), "-8"),
        (Recipe::int4(32), Box::new(|c| reshape(c, &format!("{q}.weight_scale"), &[128, 8])), "g one of"),
        (Recipe::int4(32), Box::new(|c| reshape(c, &format!("{q}.weight_int4"), &[128, 15])), "weight_int4 has shape"),
        (Recipe::ternary(), Box::new(|c| set_word(c, &format!("{q}.weight_ternary"), 0, 3)), "code 3"),
        (Recipe::ternary(), Box::new(|c| { c.tensors.get_mut(&format!("{q}.weight_scale")).unwrap().data = Data::F32(vec![-1.0]); }), "scale"),
        (Recipe::Svd { rank_fraction: 0.5 }, Box::new(|c| reshape(c, &format!("{q}.weight_lr_b"), &[128, 3])), "weight_lr_b has shape"),
        (Recipe::Svd { rank_fraction: 0.5 }, Box::new(|c| { c.tensors.remove(&format!("{q}.weight_lr_a")); }), "missing tensor"),
        // Two forms of one weight: the second is refused as unused.
        (Recipe::int8(), Box::new(move |c| { c.tensors.insert(format!("{q}.weight"), ck_weight(q)); }), "does not use"),
    ];
    for (r, f, msg) in cases {
        let e = edit(r.clone(), &*f);
        assert!(e.contains(msg), "{r:?}, expected {msg:?}: {e}");
    }
    // A rank-0 SVD has no packed form.
    let e = apply(&ck, &Recipe::Svd { rank_fraction: 0.0 }).unwrap_err().to_string();
    assert!(e.contains("rank 0"), "{e}");
}

fn ck_weight(prefix: &str) -> trilemma::backend::HostTensor {
    checkpoint("transformer").tensors[&format!("{prefix}.weight")].clone()
}

#[test]
fn compressions_of_one_family_make_a_hemorrhage_curve_with_thresholds() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use trilemma::experiment::native::{self, NativeHooks};
    use trilemma::experiment::{Progress, Spec};
    let exists = |m: &str| native::model_exists(&assets(), m);
    let spec = Spec::from_json(
        br#"{"models": ["transformer"], "tasks": ["sst2"], "splits": ["validation"], "limit": 40, "bootstrap": 100,
             "compressions": [{"method": "magnitude", "sparsity": 0.9}, {"method": "magnitude", "sparsity": 0.25}, {"method": "int8"},
                              {"method": "magnitude", "sparsity": 0.5}, {"method": "svd", "rank_fraction": 0.5}]}"#,
        &exists,
    )
    .unwrap();
    let mut sink = |_: &Progress| {};
    let mut hooks = NativeHooks::new(&mut sink, Arc::new(AtomicBool::new(false)));
    let r = native::run(&spec, &assets(), None, &mut hooks).unwrap();
    // int8 alone (with the original: two points) and svd alone make no curve; magnitude makes one, in strength order.
    assert_eq!(r.curves.len(), 1, "{:?}", r.curves);
    let c = &r.curves[0];
    assert_eq!((c.base.as_str(), c.family.as_str()), ("transformer", "magnitude"));
    let s: Vec<f64> = c.points.iter().map(|p| p.strength).collect();
    assert_eq!(s, [0.0, 0.25, 0.5, 0.9]);
    assert_eq!((c.points[0].model.as_str(), c.points[0].retention, c.points[0].kl), ("transformer", 1.0, 0.0));
    for p in &c.points[1..] {
        let h = r.hemorrhage.iter().find(|h| h.model == p.model).unwrap();
        assert_eq!((p.accuracy, p.kl), (h.accuracy, h.kl));
        assert!((p.retention - h.accuracy / h.base_accuracy).abs() < 1e-12);
    }
    // The fit's knee lies between measured strengths; s*95 is a measured strength that keeps 95%.
    let fit = c.fit.as_ref().expect("four points fit");
    assert!(fit.s0 > 0.0 && fit.s0 < 0.9 && fit.sse.is_finite());
    let t = c.threshold_95.expect("the original keeps 100%");
    assert!(c.points.iter().any(|p| p.strength == t && p.retention >= 0.95));
    assert!(c.points.iter().all(|p| p.strength <= t || p.retention < 0.95));
    // Every compression's wall time is recorded, and left out of what must reproduce.
    for m in r.provenance.models.iter().filter(|m| m.compression.is_some()) {
        assert!(m.timing.as_ref().is_some_and(|t| t.compress_seconds >= 0.0), "{}", m.name);
    }
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.contains("compress_seconds") && !trilemma::experiment::without_timing(&json).unwrap().contains("compress_seconds"));
    let html = trilemma::report::html(&r).unwrap();
    assert!(html.contains("Hemorrhage curves") && html.contains("transformer: retention vs compression strength (sst2 validation)"));
}

#[test]
fn the_surgical_scan_follows_the_reference_protocol() {
    use trilemma::compress::surgical::{rank_grid, splits, Space};
    let surgical = |delta: f64, start_block: Option<usize>, space: Space| Recipe::Surgical { delta, start_block, space, mean_correction: true };
    let cal = sst2(42);
    let compress = |ck: &Checkpoint, r: &Recipe, t: Task, ex: &[trilemma::data::Example]| pollster::block_on(trilemma::experiment::surgical::compress(ck, r, t, ex, &cal));
    let ex: Vec<_> = load_split(&assets(), Task::Sst2, Split::Validation).unwrap().into_iter().take(240).collect();
    let ck = checkpoint("transformer");
    // δ = 1 accepts rank 1 everywhere: three chunk evaluations and one block check per linear (weight space).
    let (_, rec) = compress(&ck, &surgical(1.0, None, Space::Weight), Task::Sst2, &ex).unwrap();
    assert!(rec.calibration.is_none());
    let scan = rec.scan.as_ref().unwrap();
    let order: Vec<&str> = scan.steps.iter().map(|s| s.linear.as_str()).collect();
    let block1 = ["mlp.down_proj", "mlp.up_proj", "mlp.gate_proj", "attn.o_proj", "attn.v_proj", "attn.k_proj", "attn.q_proj"];
    assert_eq!(order, block1.map(|l| format!("model.layers.1.{l}")).iter().map(String::as_str).collect::<Vec<_>>(), "block 0 stays dense (⌈2/8⌉ = 1)");
    assert!(scan.steps.iter().all(|s| s.kept && s.rank == 1 && s.chunk_ranks == [1, 1, 1]));
    assert_eq!(scan.evaluations, 5 + 7 * 4 + 1);
    assert_eq!((rec.tensors, scan.splits.clone()), (7, splits(240).unwrap()));
    // 4·128² + 3·128·256 weights, each linear at rank 1: r·(in + out).
    assert_eq!(scan.params_before, 4 * 128 * 128 + 3 * 128 * 256);
    assert_eq!(scan.params_after, 4 * 256 + 3 * 384);
    // Feature space (the default) at δ = 1: the same search, plus each linear's mean-correction bias [out].
    let (fc, rec) = compress(&ck, &surgical(1.0, None, Space::Feature), Task::Sst2, &ex).unwrap();
    assert_eq!(rec.scan.as_ref().unwrap().params_after, 4 * 256 + 3 * 384 + 5 * 128 + 2 * 256);
    assert_eq!(rec.calibration.as_ref().map(|c| (c.task, c.seed, c.size)), Some((Some(Task::Sst2), 42, 128)));
    assert!(order.iter().all(|l| fc.tensors.contains_key(&format!("{l}.bias"))));
    // Written packed: each accepted linear as its two factors (rank 1 here) beside its bias, exactly the record's bytes;
    // the same model with the factors multiplied back into dense weights gives the same logits within the bound.
    let stored: usize = order.iter().flat_map(|l| ["weight_lr_a", "weight_lr_b", "bias"].map(|s| fc.tensors[&format!("{l}.{s}")].numel() * 4)).sum();
    assert_eq!(stored, rec.bytes_compressed);
    let mut dense = fc.clone();
    for l in &order {
        let (a, b) = (dense.tensors.remove(&format!("{l}.weight_lr_a")).unwrap(), dense.tensors.remove(&format!("{l}.weight_lr_b")).unwrap());
        let (r, k, n) = (a.shape[0], a.shape[1], b.shape[0]);
        assert_eq!((r, b.shape[1]), (1, 1), "{l}");
        let (av, bv) = (a.as_f32("a").unwrap(), b.as_f32("b").unwrap());
        let w: Vec<f32> = (0..n * k).map(|x| (0..r).map(|j| bv[(x / k) * r + j] as f64 * av[j * k + x % k] as f64).sum::<f64>() as f32).collect();
        dense.tensors.insert(format!("{l}.weight"), trilemma::backend::HostTensor::f32(&[n, k], w).unwrap());
    }
    let (lp, lr) = (logits(&fc), logits(&dense));
    let worst = lp.iter().flatten().zip(lr.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst <= PACKED_VS_REFERENCE_LOGITS_ABS, "surgical: |packed - reference| = {worst}");
    // δ = 0: every kept linear is below κ at a grid rank and passed the 20% check; the rest stayed dense.
    let (c, rec) = compress(&ck, &surgical(0.0, None, Space::Feature), Task::Sst2, &ex).unwrap();
    let scan = rec.scan.as_ref().unwrap();
    for s in &scan.steps {
        assert!(s.chunk_ranks.iter().all(|r| rank_grid(s.kappa).contains(r)) && s.rank == *s.chunk_ranks.iter().max().unwrap());
        if s.kept {
            assert!(s.rank < s.kappa && s.block_accuracy.unwrap() >= scan.block_baseline);
            assert_eq!(scan.ranks[&s.linear], s.rank);
        } else {
            assert!(!scan.ranks.contains_key(&s.linear));
            assert_eq!(c.tensors[&format!("{}.weight", s.linear)], ck.tensors[&format!("{}.weight", s.linear)]);
        }
    }
    assert!(scan.params_after <= scan.params_before);
    // HGRN-bit: nothing to decompose, the model unchanged; the same scan twice gives the same record.
    let h = checkpoint("hgrn_bit");
    let (hc, hrec) = compress(&h, &surgical(0.0, None, Space::Feature), Task::Sst2, &ex).unwrap();
    assert_eq!((hrec.tensors, hrec.scan.is_none(), hrec.skipped.len()), (0, true, 1));
    assert_eq!(logits(&hc), logits(&h));
    let (_, again) = compress(&ck, &surgical(0.0, None, Space::Feature), Task::Sst2, &ex).unwrap();
    assert_eq!(again, rec);
    // Refusals: out of range δ, a start block past the model, apply() without a task, too few examples.
    assert!(apply(&ck, &surgical(0.0, None, Space::Feature)).is_err());
    assert!(compress(&ck, &surgical(1.5, None, Space::Weight), Task::Sst2, &ex).is_err());
    assert!(compress(&ck, &surgical(0.0, Some(2), Space::Weight), Task::Sst2, &ex).is_err());
    assert!(compress(&ck, &surgical(0.0, None, Space::Weight), Task::Sst2, &ex[..10]).is_err());
    let e = Command::new(env!("CARGO_BIN_EXE_trilemma"))
        .args(["compress", "--model", "transformer", "--recipe", r#"{"method": "surgical"}"#, "--out", "never-written"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(!e.status.success() && String::from_utf8_lossy(&e.stderr).contains("--task"));
    // In a spec: the scan evaluates on the first task's validation split, which the spec must list.
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use trilemma::experiment::native::{self, NativeHooks};
    use trilemma::experiment::{Progress, Spec};
    let exists = |m: &str| native::model_exists(&assets(), m);
    let run_spec = |json: &str| {
        let spec = Spec::from_json(json.as_bytes(), &exists).unwrap();
        let mut sink = |_: &Progress| {};
        let mut hooks = NativeHooks::new(&mut sink, Arc::new(AtomicBool::new(false)));
        native::run(&spec, &assets(), None, &mut hooks)
    };
    let r = run_spec(r#"{"models": ["transformer"], "tasks": ["sst2"], "splits": ["validation"], "limit": 120, "bootstrap": 10, "compressions": [{"method": "surgical", "delta": 1.0}]}"#).unwrap();
    let m = r.provenance.models.iter().find(|m| m.name == "transformer + surgical δ=1").unwrap();
    assert_eq!(m.compression.as_ref().unwrap().scan.as_ref().unwrap().examples, 120);
    assert_eq!(r.hemorrhage.len(), 1);
    assert!(trilemma::report::html(&r).unwrap().contains("Surgical scan: transformer + surgical δ=1"));
    let e = run_spec(r#"{"models": ["transformer"], "tasks": ["sst2"], "splits": ["advglue"], "compressions": [{"method": "surgical"}]}"#).unwrap_err();
    assert!(e.to_string().contains("validation split"), "{e}");
}

fn sst2(seed: u64) -> Calibration {
    Calibration { task: Some(Task::Sst2), seed, size: 128 }
}

#[test]
fn calibrated_recipes_on_the_bundled_models() {
    let wanda = Recipe::Wanda { sparsity: Some(0.5), pattern: Pattern::Unstructured, n: 2, m: 4 };
    let ga24 = Recipe::GradientAware { sparsity: None, alpha: 1.0, pattern: Pattern::NM, n: 2, m: 4 };
    for name in ["transformer", "gla"] {
        let ck = checkpoint(name);
        let base = logits(&ck);
        // At zero the calibration-based recipes are the identity.
        for r in [
            Recipe::Wanda { sparsity: Some(0.0), pattern: Pattern::Unstructured, n: 2, m: 4 },
            Recipe::GradientAware { sparsity: Some(0.0), alpha: 1.0, pattern: Pattern::Unstructured, n: 2, m: 4 },
            Recipe::StructuredHeads { sparsity: 0.0 },
        ] {
            let (c, rec) = apply_with(&ck, &r, &sst2(1)).unwrap();
            assert_eq!(logits(&c), base, "{name} {r:?}");
            assert_eq!(rec.relative_error, 0.0);
        }
        // Exact per-row counts, 2:4 in every group, and the calibration data recorded.
        let (c, rec) = apply_with(&ck, &wanda, &sst2(1)).unwrap();
        let cal = rec.calibration.as_ref().unwrap();
        assert_eq!((cal.source.as_str(), cal.task, cal.size, cal.seed), ("calibration/glue.jsonl", Some(Task::Sst2), 128, 1));
        assert_eq!(cal.sha256, trilemma::data::calibration::subset(Some(Task::Sst2), 128, 1).unwrap().record.sha256);
        for (t, shape, w) in targeted(&c) {
            for row in w.chunks(shape[1]) {
                assert_eq!(row.iter().filter(|v| **v == 0.0).count(), shape[1] / 2, "{name} {t}");
            }
        }
        assert_eq!(c.config["trilemma"]["compressions"][0]["calibration"]["sha256"], cal.sha256.as_str());
        let (c, _) = apply_with(&ck, &ga24, &sst2(1)).unwrap();
        for (t, _, w) in targeted(&c) {
            assert!(w.chunks(4).all(|g| g.iter().filter(|v| **v != 0.0).count() == 2), "{name} {t}");
        }
        // Wanda keeps the answers closer than magnitude pruning at the same sparsity (KL on 24 sentences).
        let kl = |a: &[Vec<f32>], b: &[Vec<f32>]| -> f64 {
            let p = |z: &[f32]| {
                let m = z.iter().cloned().fold(f32::MIN, f32::max);
                let e: Vec<f64> = z.iter().map(|v| ((v - m) as f64).exp()).collect();
                let s: f64 = e.iter().sum();
                e.into_iter().map(|x| x / s).collect::<Vec<_>>()
            };
            a.iter().zip(b).map(|(x, y)| p(x).iter().zip(p(y)).map(|(u, v)| u * (u / v).ln()).sum::<f64>()).sum::<f64>() / a.len() as f64
        };
        let (w, _) = apply_with(&ck, &wanda, &sst2(1)).unwrap();
        let (m, _) = apply(&ck, &Recipe::Magnitude { sparsity: 0.5 }).unwrap();
        let (kw, km) = (kl(&base, &logits(&w)), kl(&base, &logits(&m)));
        assert!(kw.is_finite() && km.is_finite(), "{name}: wanda KL {kw}, magnitude KL {km}");
        // SFSD writes a bias per decomposed linear; the model loads it and runs.
        let (s, rec) = apply_with(&ck, &Recipe::Sfsd { rank_fraction: 0.5, mean_correction: true }, &sst2(1)).unwrap();
        let biases = s.tensors.keys().filter(|k| k.ends_with("_proj.bias") && !k.contains("gk_proj")).count();
        assert_eq!(biases, rec.tensors, "{name}");
        // Packed: both factors and the bias of every decomposed linear, exactly the record's bytes, and the reference
        // form's logits within the packed-vs-reference bound.
        let stored: usize = s
            .tensors
            .iter()
            .filter(|(k, _)| k.ends_with(".weight_lr_a") || k.ends_with(".weight_lr_b") || (k.ends_with("_proj.bias") && !k.contains("gk_proj")))
            .map(|(_, t)| t.numel() * 4)
            .sum();
        assert_eq!((s.tensors.keys().filter(|k| k.ends_with(".weight_lr_a")).count(), stored), (rec.tensors, rec.bytes_compressed), "{name}");
        let (sr, rrec) = apply_with_form(&ck, &Recipe::Sfsd { rank_fraction: 0.5, mean_correction: true }, &sst2(1), Form::Reference).unwrap();
        assert_eq!(rrec, rec, "{name}: both forms report the packed form");
        let (lp, lr) = (logits(&s), logits(&sr));
        let worst = lp.iter().flatten().zip(lr.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(lp.len() == 24 && worst <= PACKED_VS_REFERENCE_LOGITS_ABS, "{name}: sfsd |packed - reference| = {worst}");
        let (s0, _) = apply_with(&ck, &Recipe::Sfsd { rank_fraction: 0.5, mean_correction: false }, &sst2(1)).unwrap();
        assert!(s0.tensors.keys().all(|k| !k.ends_with("_proj.bias")));
        if name == "gla" {
            assert!(rec.skipped.iter().filter(|m| m.contains("gk_proj")).count() == 4, "{:?}", rec.skipped);
        }
    }
    // HGRN-bit: everything is packed ternary, so nothing is calibrated or changed.
    let (_, h) = apply_with(&checkpoint("hgrn_bit"), &wanda, &sst2(1)).unwrap();
    assert_eq!(h.tensors, 0);
    assert!(h.calibration.is_none());
}

#[test]
fn trilemma_compress_calibrates_on_the_named_task() {
    let dir = std::env::temp_dir().join(format!("trilemma-compress-cal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = dir.join("t-sfsd");
    let recipe = r#"{"method": "sfsd", "rank_fraction": 0.5}"#;
    let o = Command::new(env!("CARGO_BIN_EXE_trilemma"))
        .args(["compress", "--model", "transformer", "--recipe", recipe, "--task", "sst2", "--seed", "7", "--out", out.to_str().unwrap()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let record: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((record["calibration"]["task"].as_str(), record["calibration"]["seed"].as_u64()), (Some("sst2"), Some(7)));
    let loaded = Checkpoint::load_dir(&out).unwrap();
    let (mem, _) = apply_with(&checkpoint("transformer"), &serde_json::from_str(recipe).unwrap(), &sst2(7)).unwrap();
    assert_eq!(logits(&loaded), logits(&mem));
    let bad = Command::new(env!("CARGO_BIN_EXE_trilemma"))
        .args(["compress", "--model", "transformer", "--recipe", recipe, "--task", "nope", "--out", dir.join("x").to_str().unwrap()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("--task"));
    std::fs::remove_dir_all(&dir).ok();
}
