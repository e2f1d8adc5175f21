//! The bundled calibration set: a few labelled GLUE *train* examples per task, compiled into the binary (the page
//! cannot read `assets/train/`), from which the calibration-based compressions (Wanda, gradient-aware pruning, SFSD)
//! draw a seeded subset (specs/methods.md §0.3, §2.4, §2.9, §4.6).
//!
//! The file `assets/calibration/glue.jsonl` is made by [`build_bundle`] (`trilemma calibration-set`): for each of the
//! seven GLUE tasks with a train split, [`BUNDLE_PER_TASK`] rows drawn without replacement with seed
//! [`BUNDLE_SEED`], each the train file's line unchanged behind a leading `"task"` field. Provenance:
//! `assets/calibration/README.md`.
//!
//! A [`CalibrationSet`] is either task-specific (the rows of one task, labelled for its head) or mixed (drawn evenly
//! over the seven tasks, each row labelled for its own task's head). Its [`CalibrationRecord`] carries the sha256 of
//! exactly the rows used, in the order used (each bundle line plus `\n`), so a run names its calibration data.

use super::{parse_jsonl, Example, Task};
use crate::error::{Error, Result};
use crate::rng::{derive_seed, SplitMix64};
use sha2::{Digest, Sha256};

/// The bundled file, relative to `assets/`.
pub const BUNDLE_PATH: &str = "calibration/glue.jsonl";
/// The bundled rows.
pub const BUNDLE: &[u8] = include_bytes!("../../assets/calibration/glue.jsonl");
/// Rows per task in the bundle (so a task-specific subset of the default size needs no repeats).
pub const BUNDLE_PER_TASK: usize = 128;
/// The seed [`build_bundle`] drew the bundle with.
pub const BUNDLE_SEED: u64 = 20_240_808;
/// Calibration examples a compression uses unless told otherwise (methods.md §4.6: 128 for the mitigations).
pub const DEFAULT_SIZE: usize = 128;

/// The tasks with a bundled train split, in GLUE order (MNLI mismatched shares MNLI's train split).
pub const TASKS: [Task; 7] = [Task::Cola, Task::Sst2, Task::Mrpc, Task::Qqp, Task::Mnli, Task::Qnli, Task::Rte];

/// Which calibration data a compression used: enough to draw it again and to check it is the same.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CalibrationRecord {
    /// The bundled file (`calibration/glue.jsonl`).
    pub source: String,
    /// The task the rows were drawn from, or `None` for the mixed set.
    pub task: Option<Task>,
    pub size: usize,
    pub seed: u64,
    /// sha256 of the rows used, in order, each as its bundle line plus `\n`.
    pub sha256: String,
}

/// A drawn calibration subset: `(task, example)` pairs (the task names the head a label belongs to) and its record.
#[derive(Clone, Debug)]
pub struct CalibrationSet {
    pub examples: Vec<(Task, Example)>,
    pub record: CalibrationRecord,
}

/// The bundle's lines by task (the rows of the file in order), checked: every line has a known `"task"` and parses
/// as that task's example.
fn bundle_lines(bytes: &[u8]) -> Result<Vec<(Task, &str)>> {
    let text = std::str::from_utf8(bytes).map_err(|e| Error::Invalid(format!("{BUNDLE_PATH}: not UTF-8 ({e})")))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = |m: String| Error::Invalid(format!("{BUNDLE_PATH} line {}: {m}", n + 1));
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        let name = v.get("task").and_then(|t| t.as_str()).ok_or_else(|| bad("no \"task\" field".into()))?;
        out.push((Task::parse(name).map_err(|e| bad(e.to_string()))?, line));
    }
    Ok(out)
}

/// Map a task to the one whose train rows calibrate it (MNLI mismatched -> MNLI).
fn train_task(task: Task) -> Task {
    task.model_task()
}

/// `k` of `n` indices, drawn without replacement by a seeded partial Fisher–Yates shuffle, in draw order.
fn draw(n: usize, k: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(seed);
    for i in 0..k.min(n) {
        let j = i + rng.below((n - i) as u64) as usize;
        idx.swap(i, j);
    }
    idx.truncate(k);
    idx
}

/// Draw `size` examples from the bundled set: of `task` (task-specific), or `None` for the mixed set, `size / 7` per
/// task with the remainder going to the first tasks in GLUE order. Same (task, size, seed), same rows, everywhere.
pub fn subset(task: Option<Task>, size: usize, seed: u64) -> Result<CalibrationSet> {
    subset_of(BUNDLE, task, size, seed)
}

/// [`subset`] of any bundle-format bytes.
pub fn subset_of(bytes: &[u8], task: Option<Task>, size: usize, seed: u64) -> Result<CalibrationSet> {
    if size == 0 {
        return Err(Error::Invalid("calibration: the subset size must be at least 1 example".into()));
    }
    let lines = bundle_lines(bytes)?;
    let per_task: Vec<(Task, usize)> = match task {
        Some(t) => vec![(train_task(t), size)],
        None => TASKS.iter().enumerate().map(|(i, &t)| (t, size / TASKS.len() + usize::from(i < size % TASKS.len()))).collect(),
    };
    let mut examples = Vec::with_capacity(size);
    let mut hash = Sha256::new();
    for (t, k) in per_task {
        let rows: Vec<&str> = lines.iter().filter(|(lt, _)| *lt == t).map(|(_, l)| *l).collect();
        if k > rows.len() {
            return Err(Error::Invalid(format!("calibration: {k} examples of {t} asked for, the bundled set has {}", rows.len())));
        }
        for i in draw(rows.len(), k, derive_seed(seed, &format!("calibration/{}", t.name()))) {
            let ex = parse_jsonl(t, rows[i].as_bytes())?.remove(0);
            hash.update(rows[i].as_bytes());
            hash.update(b"\n");
            examples.push((task.unwrap_or(t), ex));
        }
    }
    let sha256 = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(CalibrationSet { examples, record: CalibrationRecord { source: BUNDLE_PATH.into(), task, size, seed, sha256 } })
}

/// Make the bundle from the train files `<train_dir>/<task>/train.jsonl`: `per_task` rows of each task drawn
/// without replacement with `seed` (rows whose text is blank are never drawn), written in file order, each as
/// `{"task": "<task>", <the train line's fields unchanged>}`.
#[cfg(not(target_arch = "wasm32"))]
pub fn build_bundle(train_dir: &std::path::Path, per_task: usize, seed: u64) -> Result<String> {
    let mut out = String::new();
    for t in TASKS {
        let path = train_dir.join(t.name()).join("train.jsonl");
        let body = std::fs::read_to_string(&path).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        // Only rows that parse and have non-blank text are candidates (a row the tokenizer refuses is useless).
        let rows: Vec<&str> = body
            .lines()
            .filter(|l| {
                parse_jsonl(t, l.as_bytes()).ok().and_then(|v| v.into_iter().next()).is_some_and(|e| !e.text_a.trim().is_empty() && e.text_b.as_deref().is_none_or(|b| !b.trim().is_empty()))
            })
            .collect();
        if per_task > rows.len() {
            return Err(Error::Invalid(format!("{}: {per_task} rows asked for, {} usable", path.display(), rows.len())));
        }
        let mut chosen = draw(rows.len(), per_task, derive_seed(seed, &format!("calibration-bundle/{}", t.name())));
        chosen.sort_unstable();
        for i in chosen {
            let rest = rows[i].trim().strip_prefix('{').ok_or_else(|| Error::Invalid(format!("{}: a row is not a JSON object", path.display())))?;
            out.push_str(&format!("{{\"task\": \"{}\", {}\n", t.name(), rest.trim_start()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_has_every_task_and_parses() {
        let lines = bundle_lines(BUNDLE).unwrap();
        for t in TASKS {
            assert_eq!(lines.iter().filter(|(lt, _)| *lt == t).count(), BUNDLE_PER_TASK, "{t}");
        }
        assert_eq!(lines.len(), TASKS.len() * BUNDLE_PER_TASK);
    }

    #[test]
    fn subsets_are_seeded_and_hashed() {
        let a = subset(Some(Task::Sst2), DEFAULT_SIZE, 42).unwrap();
        let b = subset(Some(Task::Sst2), DEFAULT_SIZE, 42).unwrap();
        assert_eq!(a.record, b.record);
        assert_eq!(a.examples.iter().map(|(_, e)| e.idx).collect::<Vec<_>>(), b.examples.iter().map(|(_, e)| e.idx).collect::<Vec<_>>());
        assert_eq!(a.examples.len(), DEFAULT_SIZE);
        assert!(a.examples.iter().all(|(t, _)| *t == Task::Sst2));
        assert_eq!(a.record.sha256.len(), 64);
        let c = subset(Some(Task::Sst2), 16, 43).unwrap();
        assert_ne!(c.record.sha256, subset(Some(Task::Sst2), 16, 42).unwrap().record.sha256, "the seed changes the rows");
        // A smaller subset is a prefix of the draw order of a larger one with the same seed.
        let d = subset(Some(Task::Sst2), 16, 42).unwrap();
        assert_eq!(d.examples.iter().map(|(_, e)| e.idx).collect::<Vec<_>>(), a.examples[..16].iter().map(|(_, e)| e.idx).collect::<Vec<_>>());
        // The hash is of exactly the rows used: recompute it from the bundle lines.
        let lines = bundle_lines(BUNDLE).unwrap();
        let mut h = Sha256::new();
        for (_, e) in &d.examples {
            let line = lines.iter().find(|(t, l)| *t == Task::Sst2 && parse_jsonl(*t, l.as_bytes()).unwrap()[0].idx == e.idx).unwrap().1;
            h.update(line.as_bytes());
            h.update(b"\n");
        }
        assert_eq!(d.record.sha256, h.finalize().iter().map(|b| format!("{b:02x}")).collect::<String>());
    }

    #[test]
    fn mixed_set_is_even_over_tasks() {
        let m = subset(None, 128, 7).unwrap();
        assert_eq!(m.examples.len(), 128);
        for (i, t) in TASKS.iter().enumerate() {
            let n = m.examples.iter().filter(|(et, _)| et == t).count();
            assert_eq!(n, 18 + usize::from(i < 2), "{t}");
        }
        assert_eq!(m.record.task, None);
        // MNLI mismatched calibrates on MNLI's rows but keeps its own name for the head.
        let mm = subset(Some(Task::MnliMm), 8, 1).unwrap();
        assert!(mm.examples.iter().all(|(t, e)| *t == Task::MnliMm && e.text_b.is_some()));
    }

    #[test]
    fn bad_requests_are_errors() {
        assert!(matches!(subset(Some(Task::Rte), 0, 1), Err(Error::Invalid(_))));
        assert!(matches!(subset(Some(Task::Rte), BUNDLE_PER_TASK + 1, 1), Err(Error::Invalid(_))));
        assert!(matches!(subset_of(b"{\"idx\": 0, \"sentence\": \"x\", \"label\": 0}\n", Some(Task::Sst2), 1, 1), Err(Error::Invalid(_))));
        assert!(matches!(subset_of(b"{\"task\": \"nope\", \"idx\": 0}\n", None, 1, 1), Err(Error::Invalid(_))));
    }
}
