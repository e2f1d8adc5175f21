//! Whole-model fixtures: every architecture (and every legacy layout) loaded from a Hugging Face
//! folder and run on the CPU reference, compared layer by layer with an independent float64
//! implementation of specs/models.md (tests/fixtures/reference.py; its README explains the files).
//! Plus the loader's errors for malformed folders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use trilemma::backend::cpu::{CpuBackend, CpuTensor};
use trilemma::backend::Backend;
use trilemma::io::{write_safetensors, Checkpoint};
use trilemma::models::gla::GlaMode;
use trilemma::models::{Body, Model};

/// f32 model vs float64 reference: |got − want| ≤ TOL · (1 + |want|) (README: observed ≤ 1e-6).
const TOL: f64 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read(be: &CpuBackend, t: &CpuTensor) -> Vec<f32> {
    be.read_sync(t).unwrap().as_f32("t").unwrap().to_vec()
}

fn flat(v: &serde_json::Value) -> Vec<f64> {
    match v {
        serde_json::Value::Array(a) => a.iter().flat_map(flat).collect(),
        serde_json::Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("not a number: {other}"),
    }
}

fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((*g as f64 - w).abs() <= TOL * (1.0 + w.abs()), "{what}[{i}]: got {g}, reference {w}");
    }
}

fn check_fixture(name: &str, gla_mode: Option<GlaMode>) {
    let dir = fixtures().join(name);
    let expected: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let be = CpuBackend::new();
    let mut model = Model::load(&be, Checkpoint::load_dir(&dir).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
    if let (Some(mode), Body::Gla(g)) = (gla_mode, &mut model.body) {
        g.mode = mode;
    }
    let ids: Vec<u32> = flat(&expected["input_ids"]).iter().map(|&v| v as u32).collect();
    let (layers, final_norm) = model.hidden_states(&be, &ids).unwrap();
    let want_layers = expected["layers"].as_array().unwrap();
    assert_eq!(layers.len(), want_layers.len(), "{name}: layer count");
    for (l, (got, want)) in layers.iter().zip(want_layers).enumerate() {
        assert_close(&format!("{name} layer {l}"), &read(&be, got), &flat(want));
    }
    assert_close(&format!("{name} final norm"), &read(&be, &final_norm), &flat(&expected["final_norm"]));
    let logits = model.lm_logits(&be, &ids).unwrap();
    assert_close(&format!("{name} LM logits"), &read(&be, &logits), &flat(&expected["logits"]));
    let score = model.classify(&be, &ids).unwrap();
    assert_close(&format!("{name} score logits"), &read(&be, &score), &flat(&expected["score_logits"]));
}

#[test]
fn transformer_fixtures() {
    for name in ["transformer_tiny", "transformer_legacy", "transformer_gqa"] {
        check_fixture(name, None);
    }
}

#[test]
fn gla_fixtures_recurrent_and_chunked() {
    for name in ["gla_tiny", "gla_legacy", "gla_gqa"] {
        check_fixture(name, Some(GlaMode::Recurrent));
        for chunk in [1, 3, 4, 16] {
            check_fixture(name, Some(GlaMode::Chunked(chunk)));
        }
    }
}

#[test]
fn hgrn_bit_fixture() {
    check_fixture("hgrn_bit_tiny", None);
}

#[test]
fn gla_chunk_check_against_reference() {
    use trilemma::backend::HostTensor;
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(fixtures().join("gla_chunk_check.json")).unwrap()).unwrap();
    let (t, dk, dv) = (v["T"].as_u64().unwrap() as usize, v["dk"].as_u64().unwrap() as usize, v["dv"].as_u64().unwrap() as usize);
    let chunk = v["chunk_size"].as_u64().unwrap() as usize;
    let scale = v["scale"].as_f64().unwrap() as f32;
    let be = CpuBackend::new();
    for case in v["cases"].as_array().unwrap() {
        let up = |key: &str, d: usize, mul: f32| {
            let data = flat(&case[key]).iter().map(|&x| x as f32 * mul).collect();
            be.upload(&HostTensor::f32(&[1, t, d], data).unwrap()).unwrap()
        };
        let (q, k, vv, g) = (up("q", dk, scale), up("k", dk, 1.0), up("v", dv, 1.0), up("G", dk, 1.0));
        let want = flat(&case["o_recurrent"]);
        let name = case["name"].as_str().unwrap();
        let rec = trilemma::models::gla::recurrent(&be, &q, &k, &vv, &g).unwrap();
        assert_close(&format!("{name} recurrent"), &read(&be, &rec), &want);
        let chk = trilemma::models::gla::chunked(&be, &q, &k, &vv, &g, chunk).unwrap();
        assert_close(&format!("{name} chunked"), &read(&be, &chk), &want);
    }
}

#[test]
fn bitlinear_hand_cases() {
    use trilemma::backend::HostTensor;
    use trilemma::nn::linear::{quantize_activations, Linear, TernaryWeights};
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(fixtures().join("bitlinear_cases.json")).unwrap()).unwrap();
    let be = CpuBackend::new();
    for case in v["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let w = flat(&case["weight"]);
        let n = case["weight"].as_array().unwrap().len();
        let k = w.len() / n;
        let tw = TernaryWeights::from_latent(&HostTensor::f32(&[n, k], w.iter().map(|&x| x as f32).collect()).unwrap()).unwrap();
        assert!((tw.beta as f64 - case["beta"].as_f64().unwrap()).abs() < 1e-6, "{name}: beta");
        let tern = trilemma::backend::ternary::unpack(&tw.packed, n, k).unwrap();
        let want_t: Vec<i8> = flat(&case["T"]).iter().map(|&x| x as i8).collect();
        assert_eq!(tern, want_t, "{name}: ternary weights");
        if let Some(y) = case.get("y") {
            // Quantiser only: half away from zero at exact .5 ties.
            let y: Vec<f32> = flat(y).iter().map(|&x| x as f32).collect();
            let (q, s) = quantize_activations(&be, &be.upload(&HostTensor::f32(&[1, y.len()], y).unwrap()).unwrap()).unwrap();
            assert_eq!(read(&be, &s), vec![case["s_x"].as_f64().unwrap() as f32], "{name}: s_x");
            let want_q: Vec<f32> = flat(&case["q"]).iter().map(|&x| x as f32).collect();
            assert_eq!(read(&be, &q), want_q, "{name}: q");
            continue;
        }
        let norm: Vec<f32> = flat(&case["norm_weight"]).iter().map(|&x| x as f32).collect();
        let lin = Linear::bit(&be, &tw, &HostTensor::f32(&[k], norm).unwrap()).unwrap();
        for (i, tok) in case["tokens"].as_array().unwrap().iter().enumerate() {
            let x: Vec<f32> = flat(&tok["x"]).iter().map(|&x| x as f32).collect();
            let out = lin.forward(&be, &be.upload(&HostTensor::f32(&[1, k], x).unwrap()).unwrap()).unwrap();
            assert_close(&format!("{name} token {i}"), &read(&be, &out), &flat(&tok["out"]));
        }
    }
}

// ---- loader errors: each malformed folder gives a clear message, none panics ----

fn folder(name: &str) -> BTreeMap<String, Vec<u8>> {
    let dir = fixtures().join(name);
    ["config.json", "model.safetensors"].iter().map(|f| (f.to_string(), std::fs::read(dir.join(f)).unwrap())).collect()
}

fn load_err(files: &BTreeMap<String, Vec<u8>>) -> String {
    let ck = match Checkpoint::from_files(files) {
        Ok(ck) => ck,
        Err(e) => return e.to_string(),
    };
    match Model::load(&CpuBackend::new(), ck) {
        Ok(_) => panic!("a malformed folder loaded"),
        Err(e) => e.to_string(),
    }
}

fn edit_config(files: &mut BTreeMap<String, Vec<u8>>, f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let mut c: serde_json::Value = serde_json::from_slice(&files["config.json"]).unwrap();
    f(c.as_object_mut().unwrap());
    files.insert("config.json".into(), serde_json::to_vec(&c).unwrap());
}

fn edit_tensors(files: &mut BTreeMap<String, Vec<u8>>, f: impl FnOnce(&mut BTreeMap<String, trilemma::backend::HostTensor>)) {
    let mut t = trilemma::io::parse_safetensors("model.safetensors", &files["model.safetensors"]).unwrap();
    f(&mut t);
    files.insert("model.safetensors".into(), write_safetensors(&t, None).unwrap());
}

#[test]
fn malformed_folders_are_clear_errors() {
    let mut f = folder("gla_tiny");
    let n = f["model.safetensors"].len();
    f.get_mut("model.safetensors").unwrap().truncate(n - 10);
    assert!(load_err(&f).contains("not a valid safetensors"), "truncated");

    let mut f = folder("gla_tiny");
    edit_config(&mut f, |c| {
        c.remove("hidden_size");
    });
    assert!(load_err(&f).contains("hidden_size"), "missing key");

    let mut f = folder("gla_tiny");
    edit_config(&mut f, |c| {
        c.insert("model_type".into(), "mamba2".into());
    });
    assert!(load_err(&f).contains("mamba2"), "unknown model_type");

    let mut f = folder("gla_tiny");
    edit_config(&mut f, |c| {
        c.insert("attn".into(), serde_json::json!({"layers": [1], "num_heads": 2}));
    });
    assert!(load_err(&f).contains("\"attn\""), "hybrid layers refused");

    let mut f = folder("gla_tiny");
    edit_config(&mut f, |c| {
        c.insert("intermediate_size".into(), 40.into());
    });
    let e = load_err(&f);
    assert!(e.contains("mlp") && e.contains("shape"), "shape mismatch: {e}");

    let mut f = folder("transformer_gqa");
    edit_tensors(&mut f, |t| {
        t.remove("model.layers.0.attn.v_proj.weight");
    });
    assert!(load_err(&f).contains("missing tensor model.layers.0.attn.v_proj.weight"), "missing tensor");

    let mut f = folder("hgrn_bit_tiny");
    edit_tensors(&mut f, |t| {
        t.insert("model.layers.9.attn.x_proj.weight".into(), trilemma::backend::HostTensor::f32(&[1], vec![0.0]).unwrap());
    });
    assert!(load_err(&f).contains("does not use"), "unexpected tensor");

    let mut f = folder("gla_tiny");
    f.insert("config.json".into(), b"{\"model_type\": \"gla\",".to_vec());
    assert!(load_err(&f).contains("config.json"), "malformed JSON");
}

/// The same fixtures on the GPU backend (wgpu: lavapipe here), against the same reference.
#[test]
fn fixtures_on_gpu_match_reference() {
    use trilemma::backend::gpu::{GpuBackend, GpuContext};
    let ctx = match pollster::block_on(GpuContext::acquire()) {
        Ok(ctx) => ctx,
        Err(e) if std::env::var("TRILEMMA_REQUIRE_GPU").as_deref() == Ok("1") => panic!("GPU required: {e}"),
        Err(e) => {
            eprintln!("SKIP: no GPU adapter ({e})");
            return;
        }
    };
    let be = GpuBackend::new(ctx);
    let fetch = |t: &trilemma::backend::gpu::GpuTensor| pollster::block_on(be.read(t)).unwrap().as_f32("t").unwrap().to_vec();
    for name in ["transformer_tiny", "transformer_legacy", "transformer_gqa", "gla_tiny", "gla_legacy", "gla_gqa", "hgrn_bit_tiny"] {
        let dir = fixtures().join(name);
        let expected: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
        let model = Model::load(&be, Checkpoint::load_dir(&dir).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let ids: Vec<u32> = flat(&expected["input_ids"]).iter().map(|&v| v as u32).collect();
        assert_close(&format!("{name} GPU LM logits"), &fetch(&model.lm_logits(&be, &ids).unwrap()), &flat(&expected["logits"]));
        assert_close(&format!("{name} GPU score logits"), &fetch(&model.classify(&be, &ids).unwrap()), &flat(&expected["score_logits"]));
    }
}
