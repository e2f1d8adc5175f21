//! Share links (`experiment::share`) against real runs: a link made from a run and opened again re-runs to the same
//! numbers, bit for bit on the CPU; a changed number or prediction is caught; two results files compare the same way.

use super::{assets, run};
use trilemma::experiment::native;
use trilemma::experiment::share::{self, Fingerprint};
use trilemma::experiment::{Results, Spec};

fn exists(m: &str) -> Result<(), String> {
    native::model_exists(&assets(), m)
}

#[test]
fn a_link_reruns_to_the_same_numbers_and_catches_a_changed_one() {
    let spec = Spec::from_json(
        br#"{"name": "share", "models": ["transformer", "hgrn_bit"], "tasks": ["sst2"], "splits": ["validation", "advglue"], "limit": 16, "bootstrap": 50,
             "attacks": [{"recipe": "random_textbugger"}], "compressions": [{"method": "int8"}]}"#,
        &exists,
    )
    .unwrap();
    let first = run(&spec);
    let fp = share::fingerprint(&first).unwrap();
    // Every evaluation's accuracy, the attacks and the hemorrhage rows are in the headline numbers.
    assert_eq!(fp.numbers.iter().filter(|(l, _)| l.ends_with("· accuracy")).count(), first.units.len());
    assert!(fp.numbers.iter().any(|(l, _)| l.contains("random_textbugger · accuracy under attack")));
    assert!(fp.numbers.iter().any(|(l, _)| l.starts_with("transformer + int8 · sst2 validation · KL")));
    assert_eq!(fp.backend, "cpu");

    // The link carries the results' spec and numbers; opened, it re-runs to the same numbers, bit for bit.
    let fragment = share::encode(&first.spec, Some(&fp)).unwrap();
    assert!(fragment.len() < 2000, "compact: {} characters", fragment.len());
    let link = share::decode(&fragment, &exists).unwrap();
    assert_eq!(link.spec, first.spec);
    let again = run(&link.spec);
    let c = share::compare(link.numbers.as_ref().unwrap(), &again).unwrap();
    assert!(c.same && c.rows.iter().all(|r| r.same), "{c:?}");
    assert_eq!(c.bit_identical, Some(true));

    // A probability moved in its last bits: the numbers still agree, the digest does not.
    let mut v: serde_json::Value = serde_json::from_str(&again.to_json()).unwrap();
    let p = v["units"][0]["predictions"][0]["probs"][0].as_f64().unwrap();
    v["units"][0]["predictions"][0]["probs"][0] = (p * (1.0 + 1e-6)).into();
    let nudged = Results::from_json(v.to_string().as_bytes()).unwrap();
    let c = share::compare(&fp, &nudged).unwrap();
    assert!(c.same);
    assert_eq!(c.bit_identical, Some(false));
    // An accuracy changed: that row differs, and only it.
    let acc = v["units"][1]["metrics"][0]["value"].as_f64().unwrap();
    v["units"][1]["metrics"][0]["value"] = (acc + 0.0625).into();
    let changed = Results::from_json(v.to_string().as_bytes()).unwrap();
    let c = share::compare(&fp, &changed).unwrap();
    assert!(!c.same);
    let differ: Vec<&str> = c.rows.iter().filter(|r| !r.same).map(|r| r.label.as_str()).collect();
    assert_eq!(differ, vec!["transformer · sst2 advglue · accuracy"]);
    // Numbers from another backend: compared, but no bit-for-bit verdict.
    let other = Fingerprint { backend: "webgpu".into(), ..fp.clone() };
    let c = share::compare(&other, &again).unwrap();
    assert!(c.same && c.bit_identical.is_none());
    // A number the link lacks, or one the re-run lacks, is a difference.
    let fewer = Fingerprint { numbers: fp.numbers[1..].to_vec(), ..fp.clone() };
    let c = share::compare(&fewer, &again).unwrap();
    assert!(!c.same && c.rows.last().unwrap().link.is_none());
}
