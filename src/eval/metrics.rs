//! Classification metrics with the conventions of the reference implementations: scikit-learn
//! (`accuracy_score`, `f1_score`, `matthews_corrcoef`), the Hugging Face GLUE metric
//! (`metrics/glue/glue.py`) and AdvGLUE's `evaluate.py` (methods.md §6).
//!
//! Predictions and labels are class ids (`u32`), one per example, in the same order. Every
//! function returns [`Error::Invalid`] on empty input or on a length mismatch; none panics.
//! Values are fractions (accuracy 0.85, not 85).

use std::collections::BTreeMap;

use crate::data::{GlueMetric, Split, Task};
use crate::rng::SplitMix64;
use crate::{Error, Result};

fn check(op: &str, preds: &[u32], labels: &[u32]) -> Result<()> {
    if preds.len() != labels.len() {
        return Err(Error::Invalid(format!("{op}: {} predictions but {} labels", preds.len(), labels.len())));
    }
    if preds.is_empty() {
        return Err(Error::Invalid(format!("{op}: no examples (empty predictions and labels)")));
    }
    Ok(())
}

/// Fraction of examples with `pred == label` (sklearn `accuracy_score`).
pub fn accuracy(preds: &[u32], labels: &[u32]) -> Result<f64> {
    check("accuracy", preds, labels)?;
    let correct = preds.iter().zip(labels).filter(|(p, l)| p == l).count();
    Ok(correct as f64 / preds.len() as f64)
}

/// The 2×2 confusion matrix of a binary task with positive class 1 (the GLUE convention for
/// MRPC "equivalent" and QQP "duplicate").
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BinaryCounts {
    pub true_pos: u64,
    pub false_pos: u64,
    pub false_neg: u64,
    pub true_neg: u64,
}

impl BinaryCounts {
    /// Counts the four cells; every prediction and label must be 0 or 1.
    pub fn new(preds: &[u32], labels: &[u32]) -> Result<BinaryCounts> {
        check("binary confusion matrix", preds, labels)?;
        let mut c = BinaryCounts { true_pos: 0, false_pos: 0, false_neg: 0, true_neg: 0 };
        for (i, (&p, &l)) in preds.iter().zip(labels).enumerate() {
            match (p, l) {
                (1, 1) => c.true_pos += 1,
                (1, 0) => c.false_pos += 1,
                (0, 1) => c.false_neg += 1,
                (0, 0) => c.true_neg += 1,
                _ => {
                    return Err(Error::Invalid(format!(
                        "binary metric: prediction {p} / label {l} at position {i}; a binary task has classes 0 and 1"
                    )))
                }
            }
        }
        Ok(c)
    }

    /// Binary F1 of class 1, `2TP / (2TP + FP + FN)` (= 2PR/(P+R) whenever both are defined).
    /// As sklearn `f1_score(average="binary")` with its default `zero_division` (which acts as
    /// 0): F1 is 0 when there is no true positive, including the all-negative case where the
    /// denominator is 0.
    pub fn f1(&self) -> f64 {
        let den = 2 * self.true_pos + self.false_pos + self.false_neg;
        if den == 0 {
            0.0
        } else {
            (2 * self.true_pos) as f64 / den as f64
        }
    }
}

/// Binary F1 with positive class 1 (see [`BinaryCounts::f1`]); predictions and labels must be 0/1.
pub fn f1_binary(preds: &[u32], labels: &[u32]) -> Result<f64> {
    Ok(BinaryCounts::new(preds, labels)?.f1())
}

/// Matthews correlation coefficient, sklearn's `matthews_corrcoef` (its multiclass form, which
/// for two classes is `(TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN))`). Returns 0 when
/// the denominator is 0 (all predictions or all labels one class), as sklearn does. Any class
/// ids are accepted; GLUE uses it for CoLA.
pub fn matthews_corrcoef(preds: &[u32], labels: &[u32]) -> Result<f64> {
    check("matthews_corrcoef", preds, labels)?;
    // Per class: (times it is the label t_k, times it is predicted p_k).
    let mut counts: BTreeMap<u32, (i128, i128)> = BTreeMap::new();
    let mut correct: i128 = 0;
    for (&p, &l) in preds.iter().zip(labels) {
        counts.entry(l).or_default().0 += 1;
        counts.entry(p).or_default().1 += 1;
        correct += i128::from(p == l);
    }
    let s = preds.len() as i128;
    // Gorodkin (2004) R_K as in sklearn: cov(y,ŷ) = c·s − Σ t_k p_k, etc. Exact in i128.
    let cov_ytyp = correct * s - counts.values().map(|(t, p)| t * p).sum::<i128>();
    let cov_ypyp = s * s - counts.values().map(|(_, p)| p * p).sum::<i128>();
    let cov_ytyt = s * s - counts.values().map(|(t, _)| t * t).sum::<i128>();
    if cov_ypyp == 0 || cov_ytyt == 0 {
        return Ok(0.0);
    }
    Ok(cov_ytyp as f64 / ((cov_ytyt as f64) * (cov_ypyp as f64)).sqrt())
}

/// The most frequent label (ties → the lowest label id): the majority-class baseline predicts it
/// for every example. Pass the *training* labels to get the usual baseline.
pub fn majority_label(labels: &[u32]) -> Result<u32> {
    if labels.is_empty() {
        return Err(Error::Invalid("majority_label: no labels (empty input)".into()));
    }
    let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
    for &l in labels {
        *counts.entry(l).or_default() += 1;
    }
    // BTreeMap iterates in ascending label order; only a strictly larger count replaces.
    let mut best = (0u32, 0usize);
    for (&l, &c) in &counts {
        if c > best.1 {
            best = (l, c);
        }
    }
    Ok(best.0)
}

/// The GLUE score of the majority-class baseline: predict `majority_label(train_labels)` for
/// every example of `eval_labels`.
pub fn majority_baseline(task: Task, train_labels: &[u32], eval_labels: &[u32]) -> Result<GlueScore> {
    let m = majority_label(train_labels)?;
    glue_score(task, &vec![m; eval_labels.len()], eval_labels)
}

/// A task's GLUE numbers.
///
/// What is reported: `accuracy` always; `f1` (class 1) for MRPC and QQP; `matthews` for CoLA.
/// `score` is the single number GLUE ranks by, as in the GLUE leaderboard and AdvGLUE's
/// `evaluate.py`: the mean of F1 and accuracy for MRPC/QQP, MCC for CoLA, accuracy otherwise.
/// (The HF GLUE metric reports only MCC for CoLA; accuracy is extra here, for the E-P-R tables.)
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GlueScore {
    pub task: Task,
    /// Number of examples scored.
    pub n: usize,
    pub metric: GlueMetric,
    pub accuracy: f64,
    pub f1: Option<f64>,
    pub matthews: Option<f64>,
    pub score: f64,
}

/// Scores predictions on one task. Every prediction and label must be a class id of the task.
pub fn glue_score(task: Task, preds: &[u32], labels: &[u32]) -> Result<GlueScore> {
    check(&format!("glue_score({task})"), preds, labels)?;
    let k = task.num_labels();
    for (what, values) in [("prediction", preds), ("label", labels)] {
        if let Some((i, v)) = values.iter().enumerate().find(|(_, &v)| v >= k) {
            return Err(Error::Invalid(format!(
                "glue_score({task}): {what} {v} at position {i} is not a class of {task} ({})",
                task.describe_labels()
            )));
        }
    }
    let acc = accuracy(preds, labels)?;
    let metric = task.metric();
    let (f1, matthews, score) = match metric {
        GlueMetric::Accuracy => (None, None, acc),
        GlueMetric::F1AndAccuracy => {
            let f1 = f1_binary(preds, labels)?;
            (Some(f1), None, (f1 + acc) / 2.0)
        }
        GlueMetric::Matthews => {
            let m = matthews_corrcoef(preds, labels)?;
            (None, Some(m), m)
        }
    };
    Ok(GlueScore { task, n: preds.len(), metric, accuracy: acc, f1, matthews, score })
}

/// The official AdvGLUE score (`evaluate.py`, methods.md §6).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdvGlueScore {
    /// Task scores in the order sst2, qqp, mnli, qnli, rte; `mnli` is the plain mean of the
    /// mnli and mnli-mm scores (not weighted by their sizes 121 and 162).
    pub task_scores: Vec<(Task, f64)>,
    /// Unweighted mean of the five task scores.
    pub score: f64,
}

/// Combines the [`GlueScore`]s of the six AdvGLUE dev tasks (each exactly once, each over the
/// whole bundled dev file, as `evaluate.py` requires) into the official score.
pub fn advglue_score(scores: &[GlueScore]) -> Result<AdvGlueScore> {
    let mut by_task: BTreeMap<Task, f64> = BTreeMap::new();
    for s in scores {
        if !Task::ADVGLUE.contains(&s.task) {
            return Err(Error::Invalid(format!("advglue_score: task {} is not an AdvGLUE task", s.task)));
        }
        let rows = crate::data::bundled(s.task, Split::AdvGlue)?.rows;
        if s.n != rows {
            return Err(Error::Invalid(format!(
                "advglue_score: {} was scored on {} examples, AdvGLUE dev has {rows}; the official score needs all of them",
                s.task, s.n
            )));
        }
        if by_task.insert(s.task, s.score).is_some() {
            return Err(Error::Invalid(format!("advglue_score: task {} given twice", s.task)));
        }
    }
    let missing: Vec<&str> = Task::ADVGLUE.iter().filter(|t| !by_task.contains_key(t)).map(|t| t.name()).collect();
    if !missing.is_empty() {
        return Err(Error::Invalid(format!("advglue_score: missing task(s) {}", missing.join(", "))));
    }
    let mnli = (by_task[&Task::Mnli] + by_task[&Task::MnliMm]) / 2.0;
    let task_scores = vec![
        (Task::Sst2, by_task[&Task::Sst2]),
        (Task::Qqp, by_task[&Task::Qqp]),
        (Task::Mnli, mnli),
        (Task::Qnli, by_task[&Task::Qnli]),
        (Task::Rte, by_task[&Task::Rte]),
    ];
    let score = task_scores.iter().map(|(_, s)| s).sum::<f64>() / task_scores.len() as f64;
    Ok(AdvGlueScore { task_scores, score })
}

/// Seeded nonparametric bootstrap 95% percentile interval of `metric` (Efron & Tibshirani 1993):
/// draw `resamples` samples of n examples with replacement (indices from [`SplitMix64`] seeded
/// with `seed`, so the interval is identical on every platform), compute the metric on each, and
/// return the 2.5th and 97.5th percentiles, interpolated linearly between order statistics
/// (numpy `percentile`'s default). methods.md §5.5 asks for 10,000 resamples.
///
/// `metric` gets (preds, labels) of one resample, e.g. `accuracy` or
/// `|p, l| glue_score(task, p, l).map(|s| s.score)`; its errors are passed on.
pub fn bootstrap_ci<F>(preds: &[u32], labels: &[u32], metric: F, resamples: usize, seed: u64) -> Result<(f64, f64)>
where
    F: Fn(&[u32], &[u32]) -> Result<f64>,
{
    check("bootstrap_ci", preds, labels)?;
    if resamples == 0 {
        return Err(Error::Invalid("bootstrap_ci: resamples must be at least 1".into()));
    }
    let n = preds.len();
    let mut rng = SplitMix64::new(seed);
    let (mut bp, mut bl) = (vec![0u32; n], vec![0u32; n]);
    let mut stats = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for j in 0..n {
            let i = rng.below(n as u64) as usize;
            bp[j] = preds[i];
            bl[j] = labels[i];
        }
        let v = metric(&bp, &bl)?;
        if !v.is_finite() {
            return Err(Error::Invalid(format!("bootstrap_ci: the metric returned {v} on a resample")));
        }
        stats.push(v);
    }
    stats.sort_by(f64::total_cmp);
    Ok((percentile(&stats, 0.025), percentile(&stats, 0.975)))
}

/// Seeded percentile bootstrap 95% interval of a statistic over several strata resampled
/// independently, each keeping its size (stratified bootstrap; e.g. the AdvGLUE score over its
/// six task files, or a paired comparison as one stratum). `stat` gets, per stratum, the indices
/// of one resample. Same generator, percentiles and interpolation as [`bootstrap_ci`].
pub fn bootstrap_strata<F>(sizes: &[usize], resamples: usize, seed: u64, mut stat: F) -> Result<(f64, f64)>
where
    F: FnMut(&[Vec<usize>]) -> Result<f64>,
{
    if resamples == 0 {
        return Err(Error::Invalid("bootstrap_strata: resamples must be at least 1".into()));
    }
    if let Some(i) = sizes.iter().position(|&n| n == 0) {
        return Err(Error::Invalid(format!("bootstrap_strata: stratum {i} is empty")));
    }
    let mut rng = SplitMix64::new(seed);
    let mut idx: Vec<Vec<usize>> = sizes.iter().map(|&n| vec![0; n]).collect();
    let mut stats = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for (v, &n) in idx.iter_mut().zip(sizes) {
            for x in v.iter_mut() {
                *x = rng.below(n as u64) as usize;
            }
        }
        let v = stat(&idx)?;
        if !v.is_finite() {
            return Err(Error::Invalid(format!("bootstrap_strata: the statistic returned {v} on a resample")));
        }
        stats.push(v);
    }
    stats.sort_by(f64::total_cmp);
    Ok((percentile(&stats, 0.025), percentile(&stats, 0.975)))
}

/// The `q` quantile of sorted `v`, linear between order statistics (Hyndman & Fan type 7,
/// numpy's default); 0 for an empty list.
pub fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    v[lo] + (pos - lo as f64) * (v[hi] - v[lo])
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: f64 = 1e-12;

    /// preds/labels with TP=3, FP=1, FN=2, TN=4 (n = 10).
    fn cm_3_1_2_4() -> (Vec<u32>, Vec<u32>) {
        let preds = vec![1, 1, 1, 1, 0, 0, 0, 0, 0, 0];
        let labels = vec![1, 1, 1, 0, 1, 1, 0, 0, 0, 0];
        (preds, labels)
    }

    #[test]
    fn hand_computed_confusion_matrix() {
        let (p, l) = cm_3_1_2_4();
        let c = BinaryCounts::new(&p, &l).unwrap();
        assert_eq!(c, BinaryCounts { true_pos: 3, false_pos: 1, false_neg: 2, true_neg: 4 });
        // accuracy = (3 + 4) / 10
        assert!((accuracy(&p, &l).unwrap() - 0.7).abs() < EPS);
        // precision = 3/4 = .75, recall = 3/5 = .6, F1 = 2·.75·.6 / 1.35 = 2/3 (= 2·3 / (6+1+2))
        assert!((f1_binary(&p, &l).unwrap() - 2.0 / 3.0).abs() < EPS);
        // MCC = (3·4 − 1·2) / sqrt((3+1)(3+2)(4+1)(4+2)) = 10 / sqrt(600) = 0.408248…
        let mcc = matthews_corrcoef(&p, &l).unwrap();
        assert!((mcc - 10.0 / 600f64.sqrt()).abs() < EPS);
        assert!((mcc - 0.408_248_290_463_863).abs() < 1e-12);
        // MRPC/QQP score = (F1 + acc)/2 = (2/3 + 0.7)/2 = 0.68333…
        let s = glue_score(Task::Qqp, &p, &l).unwrap();
        assert_eq!(s.n, 10);
        assert_eq!(s.f1, Some(f1_binary(&p, &l).unwrap()));
        assert!((s.score - (2.0 / 3.0 + 0.7) / 2.0).abs() < EPS);
        let s = glue_score(Task::Cola, &p, &l).unwrap();
        assert_eq!((s.matthews, s.f1), (Some(mcc), None));
        assert_eq!(s.score, mcc);
        let s = glue_score(Task::Rte, &p, &l).unwrap();
        assert_eq!((s.score, s.f1, s.matthews, s.metric), (0.7, None, None, GlueMetric::Accuracy));
    }

    #[test]
    fn mcc_symmetry_and_perfect_and_inverse() {
        let (p, l) = cm_3_1_2_4();
        // MCC is symmetric in (pred, label); F1 is too (swapping FP and FN).
        assert!((matthews_corrcoef(&l, &p).unwrap() - matthews_corrcoef(&p, &l).unwrap()).abs() < EPS);
        assert_eq!(matthews_corrcoef(&l, &l).unwrap(), 1.0);
        let inv: Vec<u32> = l.iter().map(|x| 1 - x).collect();
        assert!((matthews_corrcoef(&inv, &l).unwrap() + 1.0).abs() < EPS);
        assert_eq!(f1_binary(&inv, &l).unwrap(), 0.0);
    }

    #[test]
    fn mcc_multiclass_matches_sklearn_formula() {
        // labels 0 0 1 1 2 2, preds 0 1 1 1 2 0: c = 4, s = 6, t = (2,2,2), p = (2,3,1)
        // cov(y,ŷ) = 4·6 − (2·2 + 2·3 + 2·1) = 12; cov(ŷ,ŷ) = 36 − (4+9+1) = 22; cov(y,y) = 36 − 12 = 24
        // MCC = 12 / sqrt(22·24) = 0.522232…
        let l = [0, 0, 1, 1, 2, 2];
        let p = [0, 1, 1, 1, 2, 0];
        let m = matthews_corrcoef(&p, &l).unwrap();
        assert!((m - 12.0 / (22.0f64 * 24.0).sqrt()).abs() < EPS);
        // Huge class ids cost nothing (counts are sparse).
        assert_eq!(matthews_corrcoef(&[u32::MAX, 0], &[u32::MAX, 0]).unwrap(), 1.0);
    }

    #[test]
    fn degenerate_cases_follow_sklearn() {
        // All labels and predictions negative: F1's denominator is 0 → 0 (zero_division);
        // MCC's denominator is 0 → 0. Accuracy is 1.
        let z = [0u32; 5];
        assert_eq!(f1_binary(&z, &z).unwrap(), 0.0);
        assert_eq!(matthews_corrcoef(&z, &z).unwrap(), 0.0);
        assert_eq!(accuracy(&z, &z).unwrap(), 1.0);
        // All positive and all correct: F1 = 1, MCC = 0 (one class only).
        let o = [1u32; 4];
        assert_eq!(f1_binary(&o, &o).unwrap(), 1.0);
        assert_eq!(matthews_corrcoef(&o, &o).unwrap(), 0.0);
        // Class 1 never predicted: F1 = 0; constant predictor has MCC 0.
        let l = [1, 0, 1, 0];
        assert_eq!(f1_binary(&z[..4], &l).unwrap(), 0.0);
        assert_eq!(matthews_corrcoef(&z[..4], &l).unwrap(), 0.0);
        // Class 1 never present but predicted: F1 = 0.
        assert_eq!(f1_binary(&[1, 0, 1], &[0, 0, 0]).unwrap(), 0.0);
        // Single example.
        assert_eq!(accuracy(&[2], &[2]).unwrap(), 1.0);
    }

    #[test]
    fn empty_mismatch_and_out_of_range_are_errors() {
        let e: &[u32] = &[];
        for r in
            [accuracy(e, e), f1_binary(e, e), matthews_corrcoef(e, e), glue_score(Task::Sst2, e, e).map(|s| s.score)]
        {
            assert!(r.unwrap_err().to_string().contains("no examples"));
        }
        for r in [
            accuracy(&[0, 1], &[0]),
            f1_binary(&[0], &[0, 1]),
            matthews_corrcoef(&[0, 1, 1], &[0]),
            glue_score(Task::Mrpc, &[0], &[0, 1]).map(|s| s.score),
            bootstrap_ci(&[0], &[0, 1], accuracy, 10, 1).map(|ci| ci.0),
        ] {
            assert!(r.unwrap_err().to_string().contains("predictions but"));
        }
        assert!(majority_label(&[]).unwrap_err().to_string().contains("no labels"));
        assert!(bootstrap_ci(e, e, accuracy, 10, 1).unwrap_err().to_string().contains("no examples"));
        assert!(bootstrap_ci(&[1], &[1], accuracy, 0, 1).unwrap_err().to_string().contains("at least 1"));
        let err = f1_binary(&[0, 2], &[0, 1]).unwrap_err().to_string();
        assert!(err.contains("prediction 2 / label 1 at position 1"), "{err}");
        let err = glue_score(Task::Sst2, &[0, 1, 2], &[0, 1, 1]).unwrap_err().to_string();
        assert!(err.contains("prediction 2 at position 2 is not a class of sst2"), "{err}");
        let err = glue_score(Task::Mnli, &[0, 1], &[0, 3]).unwrap_err().to_string();
        assert!(err.contains("label 3 at position 1"), "{err}");
        assert_eq!(glue_score(Task::Mnli, &[2, 1], &[2, 0]).unwrap().score, 0.5);
    }

    #[test]
    fn majority_class() {
        assert_eq!(majority_label(&[1, 0, 1, 2, 1, 0]).unwrap(), 1);
        // Ties go to the lowest label.
        assert_eq!(majority_label(&[2, 1, 2, 1]).unwrap(), 1);
        assert_eq!(majority_label(&[1, 0]).unwrap(), 0);
        assert_eq!(majority_label(&[7]).unwrap(), 7);
        // MRPC-like: train majority 1; eval 3 of 4 positive → acc .75, F1 = 2·3/(6+1+0) = 6/7.
        let s = majority_baseline(Task::Mrpc, &[1, 1, 0], &[1, 1, 1, 0]).unwrap();
        assert_eq!(s.accuracy, 0.75);
        assert!((s.f1.unwrap() - 6.0 / 7.0).abs() < EPS);
        // CoLA majority baseline: MCC 0.
        assert_eq!(majority_baseline(Task::Cola, &[1, 1, 0], &[1, 0, 1]).unwrap().score, 0.0);
    }

    fn score(task: Task, n: usize, score: f64) -> GlueScore {
        GlueScore { task, n, metric: task.metric(), accuracy: score, f1: None, matthews: None, score }
    }

    #[test]
    fn advglue_official_score() {
        // sst2 .5, qqp .6, mnli .3 & mnli-mm .5 → .4 (plain mean), qnli .7, rte .8
        // overall = (.5 + .6 + .4 + .7 + .8) / 5 = .6
        let all = vec![
            score(Task::Sst2, 148, 0.5),
            score(Task::Qqp, 78, 0.6),
            score(Task::Mnli, 121, 0.3),
            score(Task::MnliMm, 162, 0.5),
            score(Task::Qnli, 148, 0.7),
            score(Task::Rte, 81, 0.8),
        ];
        let a = advglue_score(&all).unwrap();
        assert!((a.score - 0.6).abs() < EPS);
        assert_eq!(
            a.task_scores.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            vec![Task::Sst2, Task::Qqp, Task::Mnli, Task::Qnli, Task::Rte]
        );
        assert!((a.task_scores[2].1 - 0.4).abs() < EPS);

        let e = advglue_score(&all[..5]).unwrap_err().to_string();
        assert!(e.contains("missing task(s) rte"), "{e}");
        let mut dup = all.clone();
        dup.push(score(Task::Rte, 81, 0.1));
        assert!(advglue_score(&dup).unwrap_err().to_string().contains("rte given twice"));
        let mut short = all.clone();
        short[1].n = 70;
        assert!(advglue_score(&short)
            .unwrap_err()
            .to_string()
            .contains("qqp was scored on 70 examples, AdvGLUE dev has 78"));
        let mut other = all.clone();
        other[0] = score(Task::Cola, 148, 0.5);
        assert!(advglue_score(&other).unwrap_err().to_string().contains("cola is not an AdvGLUE task"));
    }

    #[test]
    fn stratified_bootstrap_keeps_strata_apart() {
        // A constant statistic has a zero-width interval; the stratum sizes are respected.
        let (lo, hi) = bootstrap_strata(&[3, 5], 50, 1, |idx| {
            assert_eq!((idx[0].len(), idx[1].len()), (3, 5));
            assert!(idx[0].iter().all(|&i| i < 3) && idx[1].iter().all(|&i| i < 5));
            Ok(0.25)
        })
        .unwrap();
        assert_eq!((lo, hi), (0.25, 0.25));
        // One stratum gives exactly bootstrap_ci's interval (same draws).
        let (p, l) = sample();
        let direct = bootstrap_ci(&p, &l, accuracy, 500, 9).unwrap();
        let via = bootstrap_strata(&[p.len()], 500, 9, |idx| {
            let (bp, bl): (Vec<u32>, Vec<u32>) = idx[0].iter().map(|&i| (p[i], l[i])).unzip();
            accuracy(&bp, &bl)
        })
        .unwrap();
        assert_eq!(direct, via);
        assert!(bootstrap_strata(&[2, 0], 10, 1, |_| Ok(0.0)).is_err());
        assert!(bootstrap_strata(&[2], 0, 1, |_| Ok(0.0)).is_err());
    }

    #[test]
    fn percentile_interpolates_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        // numpy.percentile([1..5], 2.5) = 1.1, 97.5 → 4.9, 50 → 3
        assert!((percentile(&v, 0.025) - 1.1).abs() < EPS);
        assert!((percentile(&v, 0.975) - 4.9).abs() < EPS);
        assert_eq!(percentile(&v, 0.5), 3.0);
        assert_eq!(percentile(&[7.0], 0.975), 7.0);
    }

    /// 200 examples, 150 correct, alternating classes.
    fn sample() -> (Vec<u32>, Vec<u32>) {
        let labels: Vec<u32> = (0..200).map(|i| (i % 2) as u32).collect();
        let preds: Vec<u32> = labels.iter().enumerate().map(|(i, &l)| if i % 4 == 3 { 1 - l } else { l }).collect();
        (preds, labels)
    }

    #[test]
    fn bootstrap_is_seeded_and_covers_the_estimate() {
        let (p, l) = sample();
        let acc = accuracy(&p, &l).unwrap();
        assert_eq!(acc, 0.75);
        let a = bootstrap_ci(&p, &l, accuracy, 2000, 42).unwrap();
        let b = bootstrap_ci(&p, &l, accuracy, 2000, 42).unwrap();
        assert_eq!(a, b, "same seed, same interval");
        // Accuracy on 200 examples moves in steps of 0.005, so two seeds can land on the same
        // endpoints; other seeds must give other resamples and, for some seed, another interval.
        let others: Vec<_> = (43..48).map(|s| bootstrap_ci(&p, &l, accuracy, 2000, s).unwrap()).collect();
        assert!(others.iter().any(|c| *c != a), "{a:?} vs {others:?}");
        let m1 = bootstrap_ci(&p, &l, matthews_corrcoef, 300, 1).unwrap();
        let m2 = bootstrap_ci(&p, &l, matthews_corrcoef, 300, 2).unwrap();
        assert_ne!(m1, m2, "different seed, different interval");
        assert_eq!(m1, bootstrap_ci(&p, &l, matthews_corrcoef, 300, 1).unwrap());
        assert!(a.0 < acc && acc < a.1, "{a:?} should contain {acc}");
        // Normal approximation: ±1.96·sqrt(.75·.25/200) = ±0.060; the percentile interval is close.
        assert!((a.0 - (acc - 0.060)).abs() < 0.02 && (a.1 - (acc + 0.060)).abs() < 0.02, "{a:?}");
        // Any metric, including the task's GLUE score; F1 and MCC intervals also cover theirs.
        for (name, f) in [("f1", f1_binary as fn(&[u32], &[u32]) -> Result<f64>), ("mcc", matthews_corrcoef)] {
            let point = f(&p, &l).unwrap();
            let (lo, hi) = bootstrap_ci(&p, &l, f, 1000, 7).unwrap();
            assert!(lo < point && point < hi, "{name}: {lo}..{hi} vs {point}");
        }
        let (lo, hi) = bootstrap_ci(&p, &l, |p, l| glue_score(Task::Qqp, p, l).map(|s| s.score), 500, 1).unwrap();
        assert!(lo <= hi && (0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi));
        // A constant sample has a zero-width interval.
        assert_eq!(bootstrap_ci(&[1, 1, 1], &[1, 1, 1], accuracy, 100, 3).unwrap(), (1.0, 1.0));
        // Metric errors are passed on.
        let e = bootstrap_ci(&[0, 2], &[0, 1], f1_binary, 10, 3).unwrap_err().to_string();
        assert!(e.contains("binary"), "{e}");
    }
}
