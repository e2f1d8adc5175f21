//! TextAttack's attack summary (Morris et al., EMNLP 2020 demos; `textattack.metrics.attack_metrics`), as fractions:
//!
//! - original accuracy = (attacked) / all, where skipped examples are the ones the model already got wrong;
//! - accuracy under attack = failed / all;
//! - attack success rate = succeeded / (succeeded + failed) — skipped examples do not count;
//! - average perturbed-word share = mean over **succeeded** attacks of words changed / words;
//! - average queries = mean over succeeded and failed attacks (not skipped ones).
//!
//! And transfer: texts that fooled one model, scored on another (AdvGLUE kept the texts that fooled its surrogate
//! models and asks how well they transfer).

use serde::{Deserialize, Serialize};

use super::search::{AttackRecord, Outcome};
use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttackSummary {
    pub n: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
    pub original_accuracy: f64,
    pub accuracy_under_attack: f64,
    /// `None` when every example was skipped.
    pub success_rate: Option<f64>,
    /// `None` when no attack succeeded.
    pub perturbed_word_share: Option<f64>,
    /// Mean words of the edited segment, over all examples.
    pub mean_words: f64,
    /// `None` when every example was skipped.
    pub mean_queries: Option<f64>,
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| s / n as f64)
}

/// The summary of a list of attacked examples; no examples is an error.
pub fn summarize(records: &[AttackRecord]) -> Result<AttackSummary> {
    if records.is_empty() {
        return Err(Error::Invalid("attack summary: no examples".into()));
    }
    let count = |o: Outcome| records.iter().filter(|r| r.outcome == o).count();
    let (succeeded, failed, skipped) = (count(Outcome::Succeeded), count(Outcome::Failed), count(Outcome::Skipped));
    let n = records.len();
    let attacked = || records.iter().filter(|r| r.outcome != Outcome::Skipped);
    Ok(AttackSummary {
        n,
        succeeded,
        failed,
        skipped,
        original_accuracy: (n - skipped) as f64 / n as f64,
        accuracy_under_attack: failed as f64 / n as f64,
        success_rate: (succeeded + failed > 0).then(|| succeeded as f64 / (succeeded + failed) as f64),
        perturbed_word_share: mean(
            records.iter().filter(|r| r.outcome == Outcome::Succeeded).map(|r| if r.words == 0 { 0.0 } else { r.words_changed as f64 / r.words as f64 }),
        ),
        mean_words: records.iter().map(|r| r.words as f64).sum::<f64>() / n as f64,
        mean_queries: mean(attacked().map(|r| r.queries as f64)),
    })
}

/// The successful adversarial texts of one source model, scored on a target model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    pub source: String,
    pub target: String,
    /// Texts that fooled the source.
    pub n: usize,
    /// The target's accuracy on their unchanged versions.
    pub clean_accuracy: Option<f64>,
    /// The target's accuracy on the adversarial texts.
    pub adversarial_accuracy: Option<f64>,
    /// Of the ones the target got right unchanged, the share it gets wrong attacked (`None` when there are none).
    pub transfer_rate: Option<f64>,
}

/// Transfer from `source`'s records to a target's predictions: `clean[k]` and `adversarial[k]` are the target's
/// predictions on the original and perturbed input of `source_records[k]` (only the succeeded records count).
pub fn transfer(source: &str, target: &str, source_records: &[AttackRecord], clean: &[u32], adversarial: &[u32]) -> Result<Transfer> {
    if clean.len() != source_records.len() || adversarial.len() != source_records.len() {
        return Err(Error::Invalid(format!(
            "transfer {source} -> {target}: {} records but {} clean and {} adversarial predictions",
            source_records.len(),
            clean.len(),
            adversarial.len()
        )));
    }
    let ok: Vec<usize> = (0..source_records.len()).filter(|&k| source_records[k].outcome == Outcome::Succeeded).collect();
    let n = ok.len();
    let acc = |p: &[u32]| (n > 0).then(|| ok.iter().filter(|&&k| p[k] == source_records[k].label).count() as f64 / n as f64);
    let right: Vec<usize> = ok.iter().copied().filter(|&k| clean[k] == source_records[k].label).collect();
    let transfer_rate = (!right.is_empty()).then(|| right.iter().filter(|&&k| adversarial[k] != source_records[k].label).count() as f64 / right.len() as f64);
    Ok(Transfer { source: source.into(), target: target.into(), n, clean_accuracy: acc(clean), adversarial_accuracy: acc(adversarial), transfer_rate })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attacks::search::{Input, Verdict};
    use crate::attacks::sentence_level::Segment;

    fn rec(outcome: Outcome, words: usize, changed: usize, queries: usize) -> AttackRecord {
        let v = Verdict { prediction: 0, probs: vec![1.0, 0.0] };
        let i = Input { a: "x".into(), b: None };
        AttackRecord {
            idx: 0,
            label: 0,
            outcome,
            original: i.clone(),
            perturbed: i,
            segment: Segment::First,
            changes: Vec::new(),
            words,
            words_changed: changed,
            queries,
            before: v.clone(),
            after: v,
        }
    }

    #[test]
    fn textattack_summary_by_hand() {
        // 5 examples: 2 succeeded (2 of 10 words, 1 of 4), 1 failed, 2 skipped (already wrong).
        let r = [
            rec(Outcome::Succeeded, 10, 2, 30),
            rec(Outcome::Succeeded, 4, 1, 10),
            rec(Outcome::Failed, 8, 2, 50),
            rec(Outcome::Skipped, 6, 0, 1),
            rec(Outcome::Skipped, 2, 0, 1),
        ];
        let s = summarize(&r).unwrap();
        assert_eq!((s.n, s.succeeded, s.failed, s.skipped), (5, 2, 1, 2));
        assert_eq!(s.original_accuracy, 3.0 / 5.0);
        assert_eq!(s.accuracy_under_attack, 1.0 / 5.0);
        assert_eq!(s.success_rate, Some(2.0 / 3.0));
        // Mean of 2/10 and 1/4 over the successful attacks only.
        assert_eq!(s.perturbed_word_share, Some((0.2 + 0.25) / 2.0));
        assert_eq!(s.mean_words, 30.0 / 5.0);
        // Skipped examples' single query does not count.
        assert_eq!(s.mean_queries, Some(90.0 / 3.0));
        let all_skipped = summarize(&[rec(Outcome::Skipped, 3, 0, 1)]).unwrap();
        assert_eq!((all_skipped.success_rate, all_skipped.mean_queries, all_skipped.perturbed_word_share), (None, None, None));
        assert_eq!((all_skipped.original_accuracy, all_skipped.accuracy_under_attack), (0.0, 0.0));
        let none_won = summarize(&[rec(Outcome::Failed, 3, 1, 7)]).unwrap();
        assert_eq!((none_won.success_rate, none_won.perturbed_word_share), (Some(0.0), None));
        assert!(summarize(&[]).is_err());
    }

    #[test]
    fn transfer_by_hand() {
        // Source records: succeeded, succeeded, failed, succeeded, skipped; labels all 0.
        let r = [rec(Outcome::Succeeded, 1, 1, 1), rec(Outcome::Succeeded, 1, 1, 1), rec(Outcome::Failed, 1, 1, 1), rec(Outcome::Succeeded, 1, 1, 1), rec(Outcome::Skipped, 1, 0, 1)];
        // Target: right on originals 0, 1 (wrong on 3); on the adversarial texts wrong on 0, right on 1 and 3.
        let t = transfer("a", "b", &r, &[0, 0, 9, 1, 9], &[1, 0, 9, 0, 9]).unwrap();
        assert_eq!(t.n, 3);
        assert_eq!(t.clean_accuracy, Some(2.0 / 3.0));
        assert_eq!(t.adversarial_accuracy, Some(2.0 / 3.0));
        // Of the two it had right, one broke.
        assert_eq!(t.transfer_rate, Some(0.5));
        let none = transfer("a", "b", &r[2..3], &[0], &[0]).unwrap();
        assert_eq!((none.n, none.clean_accuracy, none.transfer_rate), (0, None, None));
        assert!(transfer("a", "b", &r, &[0], &[0]).is_err());
    }
}
