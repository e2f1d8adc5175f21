//! The paper view: each seed paper's stated finding (methods.md §1–§5) as a ready experiment spec, with the number
//! a run of it gives here, a 95% interval, and an honest verdict: **holds**, **does not hold**, or **inconclusive**
//! (the interval allows both).
//!
//! Every number comes from the run's results: accuracy differences between two models on the same examples are
//! resampled as pairs (seeded, the spec's `bootstrap` resamples), pooled over the spec's tasks with each task a
//! stratum. The rules are ours where the papers give none, and are stated with each claim.

use super::{spec::compressed_name, Results, UnitResult};
use crate::data::Split;
use crate::error::{Error, Result};

/// Which model of the spec: a listed model, or its copy under compression `compression` (index in `compressions`).
#[derive(Clone, Copy, Debug)]
pub struct Pick {
    pub model: &'static str,
    pub compression: Option<usize>,
}

const fn m(model: &'static str) -> Pick {
    Pick { model, compression: None }
}
const fn c(model: &'static str, compression: usize) -> Pick {
    Pick { model, compression: Some(compression) }
}

/// What a claim expects of one measured number.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    /// Greater than zero: holds when the interval is above 0, does not hold when below.
    Positive,
    /// No difference: holds when the interval contains 0, does not hold otherwise.
    Comparable,
    /// At least this much: holds when the interval is above it, does not hold when below.
    AtLeast(f64),
    /// At most this much: holds when the interval is below it, does not hold when above.
    AtMost(f64),
}

/// One measured number of a claim.
#[derive(Clone, Copy, Debug)]
pub enum Test {
    /// Accuracy of `a` minus accuracy of `b` on the same examples of `split` (one AdvGLUE `level` only, when given).
    Gap { a: Pick, b: Pick, split: Split, level: Option<&'static str>, expect: Expect },
    /// Accuracy of `a` over accuracy of `b` on the same examples (the share of accuracy a compression keeps).
    Kept { a: Pick, b: Pick, split: Split, expect: Expect },
    /// Accuracy with the prompt chosen per input minus with the single best prompt, for compressed copy `copy`
    /// (the spec's `repair` section).
    IdpGain { copy: Pick, split: Split, expect: Expect },
}

pub struct Claim {
    pub id: &'static str,
    pub paper: &'static str,
    /// The paper's finding, as methods.md records it.
    pub finding: &'static str,
    /// What we run, what we measure and when we say it holds.
    pub here: &'static str,
    pub spec: &'static str,
    pub tests: Vec<Test>,
}

/// The six AdvGLUE tasks' dev sets (a literal, for `concat!`).
macro_rules! adv_tasks {
    () => {
        r#""tasks": ["sst2", "qqp", "mnli", "mnli-mm", "qnli", "rte"], "splits": ["advglue"], "backend": "auto", "bootstrap": 1000}"#
    };
}

/// The claims, in the papers' order of the mission (E-P-R first).
pub fn claims() -> Vec<Claim> {
    use Expect::*;
    use Split::{AdvGlue, Validation};
    let gap = |a, b, level, expect| Test::Gap { a, b, split: AdvGlue, level, expect };
    vec![
        Claim {
            id: "epr-gla",
            paper: "Towards Resilient and Efficient LLMs (E-P-R), arXiv 2408.04585",
            finding: "GLA is more robust than Transformer++ at all attack levels (word, sentence and human-crafted).",
            here: "GLA − Transformer++ accuracy on the same AdvGLUE dev examples of all six tasks, per attack level; holds when every level's interval is above 0.",
            spec: concat!(r#"{"name": "Paper view: GLA vs Transformer++ on AdvGLUE", "models": ["transformer", "gla"], "#, adv_tasks!()),
            tests: vec![
                gap(m("gla"), m("transformer"), Some("word"), Positive),
                gap(m("gla"), m("transformer"), Some("sentence"), Positive),
                gap(m("gla"), m("transformer"), Some("human"), Positive),
            ],
        },
        Claim {
            id: "epr-mmf",
            paper: "Towards Resilient and Efficient LLMs (E-P-R), arXiv 2408.04585",
            finding: "MatMul-free (HGRN-bit) is more robust than Transformer++ at the word level, and comparable at the sentence and human levels.",
            here: "HGRN-bit − Transformer++ accuracy on the same AdvGLUE dev examples of all six tasks: word level above 0; sentence and human levels: intervals containing 0.",
            spec: concat!(r#"{"name": "Paper view: MatMul-free vs Transformer++ on AdvGLUE", "models": ["transformer", "hgrn_bit"], "#, adv_tasks!()),
            tests: vec![
                gap(m("hgrn_bit"), m("transformer"), Some("word"), Positive),
                gap(m("hgrn_bit"), m("transformer"), Some("sentence"), Comparable),
                gap(m("hgrn_bit"), m("transformer"), Some("human"), Comparable),
            ],
        },
        Claim {
            id: "epr-glue",
            paper: "Towards Resilient and Efficient LLMs (E-P-R), arXiv 2408.04585",
            finding: "GLA and MatMul-free reach slightly lower GLUE accuracy than Transformer++ (and are more efficient).",
            here: "Transformer++ − GLA and Transformer++ − HGRN-bit accuracy on the same GLUE dev examples (SST-2, CoLA, MRPC, QNLI, RTE; the first 500 of each); holds when both intervals are above 0.",
            spec: r#"{"name": "Paper view: GLUE accuracy of the three architectures", "models": ["transformer", "gla", "hgrn_bit"], "tasks": ["sst2", "cola", "mrpc", "qnli", "rte"], "splits": ["validation"], "limit": 500, "backend": "auto", "bootstrap": 1000}"#,
            tests: vec![
                Test::Gap { a: m("transformer"), b: m("gla"), split: Validation, level: None, expect: Positive },
                Test::Gap { a: m("transformer"), b: m("hgrn_bit"), split: Validation, level: None, expect: Positive },
            ],
        },
        Claim {
            id: "lp",
            paper: "Leveraging the True Depth of LLMs (layer parallelism), arXiv 2502.02790",
            finding: "Running consecutive layer pairs in parallel keeps 95–99% of the accuracy with about 1.2× the throughput, without retraining.",
            here: "The bundled models have two blocks: the pair (0, 1) run in parallel halves their depth. Share of SST-2 dev accuracy kept by each model; holds when every interval is above 95%.",
            spec: r#"{"name": "Paper view: layer-parallel pairs", "models": ["transformer", "gla", "hgrn_bit"], "tasks": ["sst2"], "splits": ["validation"], "compressions": [{"method": "layer_parallel", "start": 0, "end": 2}], "backend": "auto", "bootstrap": 1000}"#,
            tests: vec![
                Test::Kept { a: c("transformer", 0), b: m("transformer"), split: Validation, expect: AtLeast(0.95) },
                Test::Kept { a: c("gla", 0), b: m("gla"), split: Validation, expect: AtLeast(0.95) },
                Test::Kept { a: c("hgrn_bit", 0), b: m("hgrn_bit"), split: Validation, expect: AtLeast(0.95) },
            ],
        },
        Claim {
            id: "sfsd",
            paper: "Surgical Feature-Space Decomposition (SFSD), arXiv 2405.13039",
            finding: "Decomposing in feature space (principal components of a layer's outputs on calibration data) keeps far more accuracy than truncating the weights' SVD at the same size.",
            here: "SFSD − weight SVD accuracy on SST-2 dev at the same rank (ρ = 0.25 of the break-even rank), Transformer++ and GLA; holds when both intervals are above 0.",
            spec: r#"{"name": "Paper view: feature-space vs weight-space low rank", "models": ["transformer", "gla"], "tasks": ["sst2"], "splits": ["validation"], "compressions": [{"method": "svd", "rank_fraction": 0.25}, {"method": "sfsd", "rank_fraction": 0.25}], "backend": "auto", "bootstrap": 1000}"#,
            tests: vec![
                Test::Gap { a: c("transformer", 1), b: c("transformer", 0), split: Validation, level: None, expect: Positive },
                Test::Gap { a: c("gla", 1), b: c("gla", 0), split: Validation, level: None, expect: Positive },
            ],
        },
        Claim {
            id: "idp",
            paper: "Inference-time Dynamic Prompting (IDP), arXiv 2310.00867",
            finding: "Choosing a prompt from a pool per input recovers compressed models better than the single best prompt (+1.24 points on average over nine tasks).",
            here: "Hard text prompts through the LM head (4 templates, most confident per input) on int4 g32 copies, the first 400 SST-2 dev examples: accuracy with the per-input choice − with the best single template; holds when each interval is above 0.",
            spec: r#"{"name": "Paper view: prompts chosen per input", "models": ["transformer", "gla"], "tasks": ["sst2"], "splits": ["validation"], "limit": 400, "compressions": [{"method": "int4", "group": 32}], "repair": {"prompts": 4, "pool": "text"}, "backend": "auto", "bootstrap": 1000}"#,
            tests: vec![
                Test::IdpGain { copy: c("transformer", 0), split: Validation, expect: Positive },
                Test::IdpGain { copy: c("gla", 0), split: Validation, expect: Positive },
            ],
        },
        Claim {
            id: "mh-quant",
            paper: "Model Hemorrhage, arXiv 2503.23924",
            finding: "Quantisation has a safe zone down to 3–4 bits (most methods lose at most about 5% at 4 bits).",
            here: "Accuracy kept by int4 (group 64) copies on SST-2 dev; we call it safe when every interval is above 95%.",
            spec: r#"{"name": "Paper view: the 4-bit safe zone", "models": ["transformer", "gla"], "tasks": ["sst2"], "splits": ["validation", "advglue"], "compressions": [{"method": "int4", "group": 64}], "backend": "auto", "bootstrap": 1000}"#,
            tests: vec![
                Test::Kept { a: c("transformer", 0), b: m("transformer"), split: Validation, expect: AtLeast(0.95) },
                Test::Kept { a: c("gla", 0), b: m("gla"), split: Validation, expect: AtLeast(0.95) },
            ],
        },
        Claim {
            id: "mh-prune",
            paper: "Model Hemorrhage, arXiv 2503.23924",
            finding: "Unstructured pruning tolerates far more sparsity than structured pruning (critical sparsity about 80% vs about 50%).",
            here: "At 50% sparsity, magnitude (unstructured) − structured-rows accuracy on SST-2 dev, Transformer++ and GLA (HGRN-bit's weights are packed ternary, which the prunings leave as they are); holds when both intervals are above 0.",
            spec: r#"{"name": "Paper view: unstructured vs structured pruning", "models": ["transformer", "gla"], "tasks": ["sst2"], "splits": ["validation"], "compressions": [{"method": "magnitude", "sparsity": 0.5}, {"method": "structured_rows", "sparsity": 0.5}], "backend": "auto", "bootstrap": 1000}"#,
            tests: vec![
                Test::Gap { a: c("transformer", 0), b: c("transformer", 1), split: Validation, level: None, expect: Positive },
                Test::Gap { a: c("gla", 0), b: c("gla", 1), split: Validation, level: None, expect: Positive },
            ],
        },
    ]
}

/// What one measured number says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Holds {
    Holds,
    DoesNotHold,
    Inconclusive,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Row {
    pub label: String,
    pub value: f64,
    pub ci95: [f64; 2],
    /// Examples in the comparison.
    pub n: usize,
    pub expect: String,
    pub holds: Holds,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Verdict {
    pub id: String,
    pub paper: String,
    pub finding: String,
    pub here: String,
    pub rows: Vec<Row>,
    /// Holds when every row holds; does not hold when any row does not; else inconclusive.
    pub holds: Holds,
}

fn judge(expect: Expect, [lo, hi]: [f64; 2]) -> (Holds, String) {
    match expect {
        Expect::Positive => (if lo > 0.0 { Holds::Holds } else if hi < 0.0 { Holds::DoesNotHold } else { Holds::Inconclusive }, "> 0".into()),
        Expect::Comparable => (if lo <= 0.0 && hi >= 0.0 { Holds::Holds } else { Holds::DoesNotHold }, "≈ 0 (interval contains 0)".into()),
        Expect::AtLeast(x) => (if lo >= x { Holds::Holds } else if hi < x { Holds::DoesNotHold } else { Holds::Inconclusive }, format!("≥ {x}")),
        Expect::AtMost(x) => (if hi <= x { Holds::Holds } else if lo > x { Holds::DoesNotHold } else { Holds::Inconclusive }, format!("≤ {x}")),
    }
}

fn name(r: &Results, p: Pick) -> Result<String> {
    match p.compression {
        None => Ok(p.model.to_string()),
        Some(i) => {
            let c = r.spec.compressions.get(i).ok_or_else(|| Error::Invalid(format!("the results have no compression {i}")))?;
            Ok(compressed_name(p.model, c))
        }
    }
}

/// Per task of the results (one stratum each): whether `a` and `b` were right on each shared example of `split`
/// (of `level` only, when given).
fn pairs(r: &Results, a: &str, b: &str, split: Split, level: Option<&str>) -> Result<Vec<(Vec<bool>, Vec<bool>)>> {
    let unit = |m: &str, t| r.units.iter().find(|u: &&UnitResult| u.model == m && u.task == t && u.split == split);
    let mut out = Vec::new();
    for &task in &r.spec.tasks {
        let (Some(ua), Some(ub)) = (unit(a, task), unit(b, task)) else { continue };
        let right_b: std::collections::HashMap<u64, bool> = ub.predictions.iter().map(|p| (p.idx, p.prediction == p.label)).collect();
        let (mut ra, mut rb) = (Vec::new(), Vec::new());
        for p in &ua.predictions {
            if level.is_some_and(|l| p.level.map(|x| x.name()) != Some(l)) {
                continue;
            }
            if let Some(&q) = right_b.get(&p.idx) {
                ra.push(p.prediction == p.label);
                rb.push(q);
            }
        }
        if !ra.is_empty() {
            out.push((ra, rb));
        }
    }
    if out.is_empty() {
        return Err(Error::Invalid(format!("the results have no shared {split} examples of {a} and {b}{}", level.map(|l| format!(" at the {l} level")).unwrap_or_default())));
    }
    Ok(out)
}

/// Pooled accuracy of side `b` (false: the first model, true: the second) over the strata, on resample `idx` when given.
fn pooled(strata: &[(Vec<bool>, Vec<bool>)], second: bool, idx: Option<&[Vec<usize>]>) -> f64 {
    let (mut right, mut n) = (0usize, 0usize);
    for (s, (a, b)) in strata.iter().enumerate() {
        let v = if second { b } else { a };
        match idx {
            Some(ix) => {
                right += ix[s].iter().filter(|&&i| v[i]).count();
                n += ix[s].len();
            }
            None => {
                right += v.iter().filter(|&&x| x).count();
                n += v.len();
            }
        }
    }
    right as f64 / n.max(1) as f64
}

/// Paired stratified bootstrap of `stat(accuracy a, accuracy b)` over the strata: the value, its 95% interval and
/// the number of pairs.
fn paired(r: &Results, strata: &[(Vec<bool>, Vec<bool>)], label: &str, stat: &dyn Fn(f64, f64) -> f64) -> Result<(f64, [f64; 2], usize)> {
    let value = stat(pooled(strata, false, None), pooled(strata, true, None));
    let sizes: Vec<usize> = strata.iter().map(|s| s.0.len()).collect();
    let seed = crate::rng::derive_seed(r.spec.seed, &format!("claim/{label}"));
    let (lo, hi) = crate::eval::metrics::bootstrap_strata(&sizes, r.spec.bootstrap, seed, |ix| {
        let v = stat(pooled(strata, false, Some(ix)), pooled(strata, true, Some(ix)));
        // A resample where the reference has no right answer gives no ratio: count it as nothing kept.
        Ok(if v.is_finite() { v } else { 0.0 })
    })?;
    Ok((value, [lo, hi], sizes.iter().sum()))
}

/// The verdict of claim `id` on the results of a run of its spec.
pub fn verdict(id: &str, r: &Results) -> Result<Verdict> {
    let all = claims();
    let claim = all.iter().find(|c| c.id == id).ok_or_else(|| Error::Invalid(format!("there is no claim {id:?}")))?;
    let mut rows = Vec::new();
    for t in &claim.tests {
        let (label, value, ci95, n, expect) = match *t {
            Test::Gap { a, b, split, level, expect } => {
                let (na, nb) = (name(r, a)?, name(r, b)?);
                let label = format!("{na} − {nb}, {split}{} accuracy", level.map(|l| format!(" {l}-level")).unwrap_or_default());
                let (v, ci, n) = paired(r, &pairs(r, &na, &nb, split, level)?, &format!("{id}/{label}"), &|x, y| x - y)?;
                (label, v, ci, n, expect)
            }
            Test::Kept { a, b, split, expect } => {
                let (na, nb) = (name(r, a)?, name(r, b)?);
                let label = format!("{na} / {nb}, {split} accuracy kept");
                let (v, ci, n) = paired(r, &pairs(r, &na, &nb, split, None)?, &format!("{id}/{label}"), &|x, y| if y > 0.0 { x / y } else { f64::NAN })?;
                (label, v, ci, n, expect)
            }
            Test::IdpGain { copy, split, expect } => {
                let nc = name(r, copy)?;
                let rep = r.repair.iter().find(|x| x.model == nc).ok_or_else(|| Error::Invalid(format!("the results have no repair of {nc}")))?;
                let s = rep.splits.iter().find(|s| s.split == split).ok_or_else(|| Error::Invalid(format!("the repair of {nc} has no {split} numbers")))?;
                let ci = s.idp_minus_best_prompt_ci95.ok_or_else(|| Error::Invalid(format!("the repair of {nc} has no interval (results of an older version)")))?;
                (format!("{nc}: per-input choice − best single prompt, {split} accuracy"), s.idp_minus_best_prompt, ci, s.n, expect)
            }
        };
        let (holds, expect) = judge(expect, ci95);
        rows.push(Row { label, value, ci95, n, expect, holds });
    }
    let holds = if rows.iter().all(|r| r.holds == Holds::Holds) {
        Holds::Holds
    } else if rows.iter().any(|r| r.holds == Holds::DoesNotHold) {
        Holds::DoesNotHold
    } else {
        Holds::Inconclusive
    };
    Ok(Verdict { id: claim.id.into(), paper: claim.paper.into(), finding: claim.finding.into(), here: claim.here.into(), rows, holds })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_claim_has_a_valid_spec_naming_what_its_tests_read() {
        let all = claims();
        assert!(all.len() >= 5);
        for c in &all {
            let spec = super::super::Spec::from_json(c.spec.as_bytes(), &|m| if super::super::BUNDLED_MODELS.contains(&m) { Ok(()) } else { Err("not bundled".into()) })
                .unwrap_or_else(|e| panic!("{}: {e}", c.id));
            assert!(!c.tests.is_empty(), "{}", c.id);
            for t in &c.tests {
                let picks = match *t {
                    Test::Gap { a, b, .. } | Test::Kept { a, b, .. } => vec![a, b],
                    Test::IdpGain { copy, .. } => vec![copy],
                };
                for p in picks {
                    assert!(spec.models.iter().any(|m| m == p.model), "{}: {}", c.id, p.model);
                    if let Some(i) = p.compression {
                        assert!(i < spec.compressions.len(), "{}: compression {i}", c.id);
                    }
                }
                if let Test::IdpGain { .. } = *t {
                    assert!(spec.repair.is_some(), "{}", c.id);
                }
            }
        }
        let mut ids: Vec<&str> = all.iter().map(|c| c.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), all.len(), "unique ids");
    }

    #[test]
    fn the_rules_by_hand() {
        assert_eq!(judge(Expect::Positive, [0.01, 0.05]).0, Holds::Holds);
        assert_eq!(judge(Expect::Positive, [-0.01, 0.05]).0, Holds::Inconclusive);
        assert_eq!(judge(Expect::Positive, [-0.05, -0.01]).0, Holds::DoesNotHold);
        assert_eq!(judge(Expect::Comparable, [-0.05, 0.01]).0, Holds::Holds);
        assert_eq!(judge(Expect::Comparable, [0.01, 0.05]).0, Holds::DoesNotHold);
        assert_eq!(judge(Expect::AtLeast(0.95), [0.96, 1.01]).0, Holds::Holds);
        assert_eq!(judge(Expect::AtLeast(0.95), [0.90, 0.99]).0, Holds::Inconclusive);
        assert_eq!(judge(Expect::AtLeast(0.95), [0.80, 0.94]).0, Holds::DoesNotHold);
        assert_eq!(judge(Expect::AtMost(0.02), [0.0, 0.01]).0, Holds::Holds);
        assert_eq!(judge(Expect::AtMost(0.02), [0.03, 0.05]).0, Holds::DoesNotHold);
    }
}
