//! The native CLI as a user runs it: `trilemma eval` and `trilemma logits` on the bundled models,
//! and their one-line errors for bad arguments.
#![cfg(not(target_arch = "wasm32"))]

use std::process::Command;

fn trilemma(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trilemma")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn eval_prints_the_metric_and_the_majority_baseline() {
    let (ok, out, err) = trilemma(&["eval", "--model", "assets/models/gla", "--task", "mrpc", "--limit", "40"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["n"], 40);
    assert_eq!(v["task"], "mrpc");
    assert_eq!(v["metric"], "f1_and_accuracy");
    let (acc, f1, score) = (v["accuracy"].as_f64().unwrap(), v["f1"].as_f64().unwrap(), v["score"].as_f64().unwrap());
    assert!((score - (acc + f1) / 2.0).abs() < 1e-12, "MRPC's score is the mean of F1 and accuracy");
    assert_eq!(v["majority_baseline"]["n"], 40);
    // MNLI mismatched is scored with the MNLI head.
    let (ok, out, err) = trilemma(&["eval", "--model", "assets/models/transformer", "--task", "mnli-mm", "--split", "advglue", "--limit", "5"]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["n"], 5);
}

#[test]
fn eval_and_logits_refuse_bad_arguments_with_a_message() {
    let cases: [(&[&str], &str); 5] = [
        (&["eval", "--model", "assets/models/gla", "--task", "sts-b"], "unknown task"),
        (&["eval", "--model", "assets/models/gla", "--task", "sst2", "--split", "test"], "unknown split"),
        (&["eval", "--model", "assets/models/gla", "--task", "qqp", "--split", "validation"], "qqp"),
        (&["eval", "--model", "assets/models/gla", "--task", "sst2", "--limit", "0"], "--limit"),
        (&["eval", "--model", "assets/models/nope", "--task", "sst2"], "does not exist"),
    ];
    for (args, needle) in cases {
        let (ok, _, err) = trilemma(args);
        assert!(!ok, "{args:?} should fail");
        assert!(err.contains(needle), "{args:?}: stderr {err:?} should mention {needle:?}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
}

#[test]
fn logits_uses_the_named_task_head() {
    let (ok, out, err) = trilemma(&[
        "logits", "--model", "assets/models/hgrn_bit", "--task", "mnli",
        "--text", "A man plays a guitar .", "--text-pair", "Nobody plays music .",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["logits"].as_array().unwrap().len(), 3);
    assert!(["entailment", "neutral", "contradiction"].contains(&v["label_name"].as_str().unwrap()));
    let (ok, out, _) = trilemma(&["logits", "--model", "assets/models/hgrn_bit", "--text", "a gripping , funny and ultimately moving film"]);
    assert!(ok);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["label_name"], "positive");
}

#[test]
fn eval_records_the_backend_choice_what_ran_and_why() {
    let run = |backend: &str| -> serde_json::Value {
        let (ok, out, err) = trilemma(&["eval", "--model", "assets/models/hgrn_bit", "--task", "sst2", "--limit", "8", "--backend", backend]);
        assert!(ok, "--backend {backend}: {err}");
        serde_json::from_str(&out).unwrap()
    };
    let cpu = run("cpu");
    assert_eq!(cpu["backend_choice"], "cpu");
    assert_eq!(cpu["backend"]["kind"], "cpu");
    assert!(cpu["fallback"].as_str().unwrap().contains("CPU backend was chosen"));
    let webgpu = run("webgpu");
    assert_eq!(webgpu["backend_choice"], "webgpu");
    let auto = run("auto");
    assert_eq!(auto["backend_choice"], "auto");
    match webgpu["backend"]["kind"].as_str().unwrap() {
        "webgpu" => {
            assert!(webgpu["fallback"].is_null(), "{webgpu}");
            assert!(webgpu["backend"]["device"].as_str().unwrap().len() > 3, "the adapter is named");
            // The same predictions whichever backend ran.
            assert_eq!(webgpu["accuracy"], cpu["accuracy"]);
            // On a software rasterizer (lavapipe here) auto prefers the CPU, and says why.
            if webgpu["backend"]["device"].as_str().unwrap().contains("Cpu") {
                assert_eq!(auto["backend"]["kind"], "cpu");
                assert!(auto["fallback"].as_str().unwrap().contains("software"), "{auto}");
            }
        }
        _ => {
            eprintln!("SKIP: no GPU adapter ({})", webgpu["fallback"]);
            assert!(webgpu["fallback"].as_str().unwrap().contains("no GPU"));
        }
    }
    let (ok, _, err) = trilemma(&["eval", "--model", "assets/models/gla", "--task", "sst2", "--backend", "gpu"]);
    assert!(!ok && err.contains("auto"), "{err}");
}
