//! The GLUE / AdvGLUE tasks: names, text fields, label names and the metric each one reports.
//!
//! Names are the lowercase GLUE names used by the Hugging Face `glue` dataset and by AdvGLUE's
//! `dev.json` keys; `mnli-mm` is AdvGLUE's key for MNLI mismatched. Field names and label
//! mappings are those of the HF `glue` card (`class_label` names), which AdvGLUE shares.

use crate::{Error, Result};

/// One GLUE task as the lab uses it. MNLI matched and mismatched are separate tasks because
/// AdvGLUE scores them separately (then averages them, see `eval::metrics::advglue_score`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Task {
    #[serde(rename = "sst2")]
    Sst2,
    #[serde(rename = "cola")]
    Cola,
    #[serde(rename = "mrpc")]
    Mrpc,
    #[serde(rename = "qqp")]
    Qqp,
    #[serde(rename = "mnli")]
    Mnli,
    #[serde(rename = "mnli-mm")]
    MnliMm,
    #[serde(rename = "qnli")]
    Qnli,
    #[serde(rename = "rte")]
    Rte,
}

/// The metric GLUE reports for a task (HF `glue` metric, `metrics/glue/glue.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GlueMetric {
    /// `mean(pred == label)`: sst2, mnli, mnli-mm, qnli, rte.
    Accuracy,
    /// Binary F1 of class 1 and accuracy; the task's GLUE score is their mean: mrpc, qqp.
    F1AndAccuracy,
    /// Matthews correlation coefficient: cola.
    Matthews,
}

impl Task {
    /// Every task, in GLUE order (mnli-mm right after mnli).
    pub const ALL: [Task; 8] =
        [Task::Cola, Task::Sst2, Task::Mrpc, Task::Qqp, Task::Mnli, Task::MnliMm, Task::Qnli, Task::Rte];

    /// The six AdvGLUE dev tasks, in the order of the keys of AdvGLUE's `dev.json`.
    pub const ADVGLUE: [Task; 6] = [Task::Sst2, Task::Qqp, Task::Mnli, Task::MnliMm, Task::Qnli, Task::Rte];

    /// The lowercase GLUE name (`mnli-mm` for MNLI mismatched, as in AdvGLUE).
    pub fn name(self) -> &'static str {
        match self {
            Task::Sst2 => "sst2",
            Task::Cola => "cola",
            Task::Mrpc => "mrpc",
            Task::Qqp => "qqp",
            Task::Mnli => "mnli",
            Task::MnliMm => "mnli-mm",
            Task::Qnli => "qnli",
            Task::Rte => "rte",
        }
    }

    /// Parses a lowercase GLUE name; anything else is refused with the list of valid names.
    pub fn parse(name: &str) -> Result<Task> {
        Task::ALL.iter().copied().find(|t| t.name() == name).ok_or_else(|| {
            Error::Invalid(format!(
                "unknown task {name:?}; valid tasks: {}",
                Task::ALL.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// The JSON field of the first (or only) text.
    pub fn first_field(self) -> &'static str {
        self.fields().0
    }

    /// The JSON field of the second text of a sentence-pair task; `None` for single-sentence tasks.
    pub fn second_field(self) -> Option<&'static str> {
        self.fields().1
    }

    /// Whether the task classifies a pair of texts.
    pub fn is_pair(self) -> bool {
        self.second_field().is_some()
    }

    fn fields(self) -> (&'static str, Option<&'static str>) {
        match self {
            Task::Sst2 | Task::Cola => ("sentence", None),
            Task::Mrpc | Task::Rte => ("sentence1", Some("sentence2")),
            Task::Qqp => ("question1", Some("question2")),
            Task::Mnli | Task::MnliMm => ("premise", Some("hypothesis")),
            Task::Qnli => ("question", Some("sentence")),
        }
    }

    /// Label names indexed by label id (HF `glue` card `class_label` names).
    pub fn label_names(self) -> &'static [&'static str] {
        match self {
            Task::Sst2 => &["negative", "positive"],
            Task::Cola => &["unacceptable", "acceptable"],
            Task::Mrpc => &["not_equivalent", "equivalent"],
            Task::Qqp => &["not_duplicate", "duplicate"],
            Task::Mnli | Task::MnliMm => &["entailment", "neutral", "contradiction"],
            Task::Qnli | Task::Rte => &["entailment", "not_entailment"],
        }
    }

    /// Number of classes (the classification head's width).
    pub fn num_labels(self) -> u32 {
        self.label_names().len() as u32
    }

    /// The name of one label id, or an error naming the valid ids.
    pub fn label_name(self, label: u32) -> Result<&'static str> {
        self.label_names().get(label as usize).copied().ok_or_else(|| {
            Error::Invalid(format!(
                "label {label} out of range for task {self}; valid labels: {}",
                self.describe_labels()
            ))
        })
    }

    /// `"0 negative, 1 positive"`: for error messages and UI legends.
    pub fn describe_labels(self) -> String {
        self.label_names().iter().enumerate().map(|(i, n)| format!("{i} {n}")).collect::<Vec<_>>().join(", ")
    }

    /// The metric GLUE reports for this task (HF `glue` metric; mnli-mm uses the `mnli` config).
    pub fn metric(self) -> GlueMetric {
        match self {
            Task::Cola => GlueMetric::Matthews,
            Task::Mrpc | Task::Qqp => GlueMetric::F1AndAccuracy,
            Task::Sst2 | Task::Mnli | Task::MnliMm | Task::Qnli | Task::Rte => GlueMetric::Accuracy,
        }
    }

    /// The task whose fine-tuned model and training data serve this one: MNLI mismatched is
    /// evaluated with the MNLI model (there is one MNLI train set); every other task is itself.
    pub fn model_task(self) -> Task {
        match self {
            Task::MnliMm => Task::Mnli,
            t => t,
        }
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Task {
    type Err = Error;
    fn from_str(s: &str) -> Result<Task> {
        Task::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in Task::ALL {
            assert_eq!(Task::parse(t.name()).unwrap(), t);
            assert_eq!(t.to_string().parse::<Task>().unwrap(), t);
            // serde uses the same names (experiment specs and share links).
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.name()));
            assert_eq!(serde_json::from_str::<Task>(&json).unwrap(), t);
        }
        assert_eq!(Task::MnliMm.name(), "mnli-mm");
    }

    #[test]
    fn unknown_names_are_refused_with_the_valid_ones() {
        for bad in ["SST2", "sst-2", "mnli_mismatched", "wnli", "stsb", ""] {
            let e = Task::parse(bad).unwrap_err().to_string();
            assert!(e.contains("unknown task"), "{e}");
            assert!(e.contains("sst2, mrpc") || e.contains("cola, sst2"), "{e}");
            assert!(e.contains("mnli-mm"), "{e}");
        }
    }

    #[test]
    fn fields_labels_metrics_follow_the_glue_card() {
        assert_eq!((Task::Sst2.first_field(), Task::Sst2.second_field()), ("sentence", None));
        assert_eq!((Task::Cola.first_field(), Task::Cola.second_field()), ("sentence", None));
        assert_eq!((Task::Mrpc.first_field(), Task::Mrpc.second_field()), ("sentence1", Some("sentence2")));
        assert_eq!((Task::Rte.first_field(), Task::Rte.second_field()), ("sentence1", Some("sentence2")));
        assert_eq!((Task::Qqp.first_field(), Task::Qqp.second_field()), ("question1", Some("question2")));
        assert_eq!((Task::Qnli.first_field(), Task::Qnli.second_field()), ("question", Some("sentence")));
        for t in [Task::Mnli, Task::MnliMm] {
            assert_eq!((t.first_field(), t.second_field()), ("premise", Some("hypothesis")));
            assert_eq!(t.num_labels(), 3);
            assert_eq!(t.label_name(2).unwrap(), "contradiction");
        }
        assert!(!Task::Sst2.is_pair() && Task::Qnli.is_pair());
        assert_eq!(Task::Qnli.label_name(0).unwrap(), "entailment");
        assert_eq!(Task::Rte.label_name(1).unwrap(), "not_entailment");
        assert_eq!(Task::Sst2.describe_labels(), "0 negative, 1 positive");
        let e = Task::Sst2.label_name(2).unwrap_err().to_string();
        assert!(e.contains("label 2 out of range for task sst2") && e.contains("1 positive"), "{e}");

        assert_eq!(Task::Cola.metric(), GlueMetric::Matthews);
        assert_eq!(Task::Mrpc.metric(), GlueMetric::F1AndAccuracy);
        assert_eq!(Task::Qqp.metric(), GlueMetric::F1AndAccuracy);
        for t in [Task::Sst2, Task::Mnli, Task::MnliMm, Task::Qnli, Task::Rte] {
            assert_eq!(t.metric(), GlueMetric::Accuracy);
        }
        assert_eq!(Task::MnliMm.model_task(), Task::Mnli);
        assert_eq!(Task::Rte.model_task(), Task::Rte);
    }
}
