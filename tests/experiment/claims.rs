//! The paper view's verdicts (`experiment::claims`) against runs of the claims' own specs (cut short): the numbers are
//! the pooled paired accuracy differences computed by hand from the predictions, the intervals contain them, and the
//! verdict follows the stated rule.

use super::{assets, run};
use trilemma::experiment::claims::{self, Holds};
use trilemma::experiment::native;
use trilemma::experiment::{Results, Spec};

fn run_claim(id: &str, limit: Option<usize>) -> Results {
    let c = claims::claims().into_iter().find(|c| c.id == id).unwrap();
    let mut spec = Spec::from_json(c.spec.as_bytes(), &|m| native::model_exists(&assets(), m)).unwrap();
    spec.limit = limit;
    spec.bootstrap = 200;
    spec.backend = trilemma::backend::BackendChoice::Cpu;
    // A small repair (the verdict reads its numbers, whatever their size).
    if let Some(rep) = spec.repair.as_mut() {
        rep.calibration = 16;
        rep.prompts = 2;
    }
    run(&spec)
}

#[test]
fn a_level_gap_is_the_pooled_paired_difference_and_the_verdict_follows_the_rule() {
    // Whole AdvGLUE dev sets (the first examples of a file are all word-level).
    let r = run_claim("epr-mmf", None);
    let v = claims::verdict("epr-mmf", &r).unwrap();
    assert_eq!(v.rows.len(), 3);
    for (row, level) in v.rows.iter().zip(["word", "sentence", "human"]) {
        // By hand: every task's AdvGLUE examples at this level, both models right or wrong.
        let (mut a, mut b, mut n) = (0usize, 0usize, 0usize);
        for u in r.units.iter().filter(|u| u.model == "hgrn_bit") {
            let t = r.units.iter().find(|t| t.model == "transformer" && t.task == u.task && t.split == u.split).unwrap();
            for (p, q) in u.predictions.iter().zip(&t.predictions) {
                assert_eq!(p.idx, q.idx);
                if p.level.map(|l| l.name()) == Some(level) {
                    a += (p.prediction == p.label) as usize;
                    b += (q.prediction == q.label) as usize;
                    n += 1;
                }
            }
        }
        assert_eq!(row.n, n, "{level}");
        assert!((row.value - (a as f64 - b as f64) / n as f64).abs() < 1e-12, "{level}: {row:?}");
        assert!(row.ci95[0] <= row.value + 1e-12 && row.value <= row.ci95[1] + 1e-12, "{row:?}");
        let expected = match level {
            "word" if row.ci95[0] > 0.0 => Holds::Holds,
            "word" if row.ci95[1] < 0.0 => Holds::DoesNotHold,
            "word" => Holds::Inconclusive,
            _ if row.ci95[0] <= 0.0 && row.ci95[1] >= 0.0 => Holds::Holds,
            _ => Holds::DoesNotHold,
        };
        assert_eq!(row.holds, expected, "{row:?}");
    }
    let overall = if v.rows.iter().all(|r| r.holds == Holds::Holds) {
        Holds::Holds
    } else if v.rows.iter().any(|r| r.holds == Holds::DoesNotHold) {
        Holds::DoesNotHold
    } else {
        Holds::Inconclusive
    };
    assert_eq!(v.holds, overall);
    // Deterministic: the same results give the same verdict; another claim's id is refused.
    assert_eq!(claims::verdict("epr-mmf", &r).unwrap(), v);
    assert!(claims::verdict("nope", &r).unwrap_err().to_string().contains("no claim"));
}

#[test]
fn kept_accuracy_and_the_idp_gain_come_from_their_runs() {
    let r = run_claim("lp", Some(32));
    let v = claims::verdict("lp", &r).unwrap();
    for row in &v.rows {
        let (copy, base) = row.label.split_once(" / ").unwrap();
        let base = base.split(',').next().unwrap();
        let acc = |m: &str| r.units.iter().find(|u| u.model == m).unwrap().metric("accuracy").unwrap().value;
        assert!((row.value - acc(copy) / acc(base)).abs() < 1e-12, "{row:?}");
        assert_eq!(row.expect, "≥ 0.95");
    }
    let r = run_claim("idp", Some(24));
    let v = claims::verdict("idp", &r).unwrap();
    for (row, rep) in v.rows.iter().zip(&r.repair) {
        let s = &rep.splits[0];
        assert_eq!((row.value, row.ci95), (s.idp_minus_best_prompt, s.idp_minus_best_prompt_ci95.unwrap()));
        assert!(row.ci95[0] <= row.value + 1e-12 && row.value <= row.ci95[1] + 1e-12);
    }
    // A claim's verdict needs its own experiment's units.
    assert!(claims::verdict("epr-gla", &r).is_err());
}
