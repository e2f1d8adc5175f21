//! Which (task, split) pairs ship with the lab, where they live under `assets/`, and the
//! checksums recorded in result provenance (`assets/data/README.md`, `assets/train/README.md`).

use super::{parse_jsonl, Example, Task};
use crate::{Error, Result};

/// A data split. GLUE's `validation` is the dev set models are scored on (GLUE's test labels
/// are hidden); `advglue` is AdvGLUE's public dev set (its test set is hidden too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// GLUE train (full for sst2/rte/mrpc/cola, a 9,999-row subset for qnli/qqp/mnli).
    Train,
    /// GLUE validation (dev).
    Validation,
    /// AdvGLUE dev: adversarial versions of GLUE dev examples.
    #[serde(rename = "advglue")]
    AdvGlue,
    /// The clean GLUE originals of the AdvGLUE dev examples that have one (`original_*` fields of
    /// `dev_ann.json`; the human-crafted examples have none), in the same order with the same
    /// `idx`, so clean and adversarial accuracy are measured on the same examples — also for QQP
    /// and MNLI, whose GLUE validation sets are not bundled. Read from the AdvGLUE file.
    #[serde(rename = "advglue-original")]
    AdvGlueOriginal,
}

impl Split {
    pub const ALL: [Split; 4] = [Split::Train, Split::Validation, Split::AdvGlue, Split::AdvGlueOriginal];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::AdvGlue => "advglue",
            Split::AdvGlueOriginal => "advglue-original",
        }
    }

    /// Parses `train` / `validation` / `advglue`; anything else is an error naming the valid ones.
    pub fn parse(name: &str) -> Result<Split> {
        Split::ALL
            .iter()
            .copied()
            .find(|s| s.name() == name)
            .ok_or_else(|| Error::Invalid(format!("unknown split {name:?}; valid splits: train, validation, advglue, advglue-original")))
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Split {
    type Err = Error;
    fn from_str(s: &str) -> Result<Split> {
        Split::parse(s)
    }
}

/// One bundled data file: the numbers here are those of the README tables and
/// `assets/data/manifest.json` (a test keeps all three in agreement with the files).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BundledFile {
    pub task: Task,
    pub split: Split,
    /// Relative to `assets/`.
    pub path: &'static str,
    pub rows: usize,
    pub bytes: u64,
    /// Lowercase hex sha256 of the file's bytes.
    pub sha256: &'static str,
    /// True when the file is a subset of the official split (qnli/qqp/mnli train: 9,999 rows).
    pub subset: bool,
}

const fn f(
    task: Task,
    split: Split,
    path: &'static str,
    rows: usize,
    bytes: u64,
    sha256: &'static str,
    subset: bool,
) -> BundledFile {
    BundledFile { task, split, path, rows, bytes, sha256, subset }
}

/// Every bundled file. Sources and terms: `assets/data/README.md` (evaluation, served by the
/// page) and `assets/train/README.md` (training, native only).
pub const BUNDLED: &[BundledFile] = &[
    f(
        Task::Sst2,
        Split::Validation,
        "data/glue/sst2/validation.jsonl",
        872,
        127942,
        "789c401b3771a8e920d022746df4f79e12dab48079163ec725ff94b91c6309ac",
        false,
    ),
    f(
        Task::Qnli,
        Split::Validation,
        "data/glue/qnli/validation.jsonl",
        5463,
        1576318,
        "ad355f8956678279fda6626484796a4e968b494e7f47ae68c42b399c6892d034",
        false,
    ),
    f(
        Task::Rte,
        Split::Validation,
        "data/glue/rte/validation.jsonl",
        277,
        101576,
        "f355d8417f03061a511d996c43db406c3917f80cd538c5242656b5c2c6ca9e2a",
        false,
    ),
    f(
        Task::Mrpc,
        Split::Validation,
        "data/glue/mrpc/validation.jsonl",
        408,
        122354,
        "7a8d51532efe0fab3f9fd281d26ba8a662e61269545940d7c9afb315ef22a14c",
        false,
    ),
    f(
        Task::Cola,
        Split::Validation,
        "data/glue/cola/validation.jsonl",
        1043,
        86330,
        "12dc0ba258ee95642ff443719957b415ac03091004703013094ee68aaa3a6b93",
        false,
    ),
    f(
        Task::Sst2,
        Split::AdvGlue,
        "data/advglue/sst2/dev.jsonl",
        148,
        43507,
        "12356431ad20b4bec764005d8ea53bf1a5f23d1612b76ee4f8f43265173dadf4",
        false,
    ),
    f(
        Task::Qqp,
        Split::AdvGlue,
        "data/advglue/qqp/dev.jsonl",
        78,
        22668,
        "5425204781108d34811568dca432fef33ccabfd080aaddf803cc5c4e3a42e950",
        false,
    ),
    f(
        Task::Mnli,
        Split::AdvGlue,
        "data/advglue/mnli/dev.jsonl",
        121,
        47077,
        "dbb7dc0f48a805456ae53b4b687c8ed2d817f3f3bafe561c88c9ea4b8221eed2",
        false,
    ),
    f(
        Task::MnliMm,
        Split::AdvGlue,
        "data/advglue/mnli-mm/dev.jsonl",
        162,
        69830,
        "1e3d02a106c696cd9a82bdd2c543b7b55423d686f9bc71c78828eeb0d66690b7",
        false,
    ),
    f(
        Task::Qnli,
        Split::AdvGlue,
        "data/advglue/qnli/dev.jsonl",
        148,
        65067,
        "4c6da4126ba061a5b5043e735715771f5a09e2488fc18d3bb50f7674e4e35386",
        false,
    ),
    f(
        Task::Rte,
        Split::AdvGlue,
        "data/advglue/rte/dev.jsonl",
        81,
        48027,
        "4db680ef5a75df037d011c2a2d2bd4dc77172b3005f89966f90339d2c79c0de7",
        false,
    ),
    f(
        Task::Sst2,
        Split::Train,
        "train/glue/sst2/train.jsonl",
        67349,
        6421566,
        "cccb02d198aae4e4b8b173d9937208253ec9f0a7163357607181dbf8dad67028",
        false,
    ),
    f(
        Task::Qnli,
        Split::Train,
        "train/glue/qnli/train.jsonl",
        9999,
        2817541,
        "569c78d33013c9bed805fadb9bce163adce3fb48ca08b937ddee58992c798a50",
        true,
    ),
    f(
        Task::Qqp,
        Split::Train,
        "train/glue/qqp/train.jsonl",
        9999,
        1804934,
        "12212e5dc1a0266439790004ceb06452fd11696dce8116653f8ce7905bd638ff",
        true,
    ),
    f(
        Task::Mnli,
        Split::Train,
        "train/glue/mnli/train.jsonl",
        9999,
        2298230,
        "7cff4f735debbed35233594a7592b423ebe2bfec7de8fbee3b4ef9cfc2de807e",
        true,
    ),
    f(
        Task::Rte,
        Split::Train,
        "train/glue/rte/train.jsonl",
        2490,
        947253,
        "072ffc1b6d17189eb5e0fa3bef57c6d75dbd282074e6f333dbe5428ad9d5d9df",
        false,
    ),
    f(
        Task::Mrpc,
        Split::Train,
        "train/glue/mrpc/train.jsonl",
        3668,
        1092073,
        "9d07f2833c8140e7cad68f218c0299f451b6989222b1edd343d1c4b16255acf9",
        false,
    ),
    f(
        Task::Cola,
        Split::Train,
        "train/glue/cola/train.jsonl",
        8551,
        706092,
        "70ffae71f332a99d1a4c5532c9f02ef5a44f82a439a2293b2037c58f94cd1f18",
        false,
    ),
];

/// The bundled file of `(task, split)`, or an error listing what is bundled
/// (`advglue-original` is read from the AdvGLUE file).
pub fn bundled(task: Task, split: Split) -> Result<&'static BundledFile> {
    let file_split = if split == Split::AdvGlueOriginal { Split::AdvGlue } else { split };
    BUNDLED.iter().find(|b| b.task == task && b.split == file_split).ok_or_else(|| {
        let list = BUNDLED.iter().map(|b| format!("{}/{}", b.task, b.split)).collect::<Vec<_>>().join(", ");
        let hint = if task == Task::MnliMm && split == Split::Train {
            " (mnli-mm is evaluated with the mnli model; train on task mnli)"
        } else {
            ""
        };
        Error::Invalid(format!("split {split} of task {task} is not bundled{hint}; bundled: {list}"))
    })
}

/// The path of `(task, split)` relative to `assets/`.
pub fn bundled_path(task: Task, split: Split) -> Result<&'static str> {
    bundled(task, split).map(|b| b.path)
}

/// Parses the bytes of a bundled split (fetched by the page or read by [`load_split`]) and
/// checks them against the bundled file: same byte length and row count, and for AdvGLUE every
/// row carries `method` and `data_construction` (the per-level scores need them).
pub fn parse_bundled(task: Task, split: Split, bytes: &[u8]) -> Result<Vec<Example>> {
    let file = bundled(task, split)?;
    if bytes.len() as u64 != file.bytes {
        return Err(Error::Invalid(format!(
            "{}: {} bytes, but the bundled file has {} (sha256 {}); the data was changed or truncated",
            file.path,
            bytes.len(),
            file.bytes,
            file.sha256
        )));
    }
    let examples = parse_jsonl(task, bytes).map_err(|e| match e {
        Error::Invalid(m) => Error::Invalid(format!("{}: {m}", file.path)),
        other => other,
    })?;
    if examples.len() != file.rows {
        return Err(Error::Invalid(format!(
            "{}: {} rows, but the bundled file has {}",
            file.path,
            examples.len(),
            file.rows
        )));
    }
    if matches!(split, Split::AdvGlue | Split::AdvGlueOriginal) {
        if let Some((i, _)) = examples.iter().enumerate().find(|(_, e)| e.method.is_none() || e.level.is_none()) {
            return Err(Error::Invalid(format!(
                "{}: example {} (row {}) lacks `method` or `data_construction`",
                file.path,
                examples[i].idx,
                i + 1
            )));
        }
    }
    if split == Split::AdvGlueOriginal {
        return Ok(clean_originals(examples));
    }
    Ok(examples)
}

/// The AdvGLUE examples that have a clean original, with the original text in place of the
/// perturbed field(s) (AdvGLUE perturbs one field of a pair; the other is kept as is).
fn clean_originals(examples: Vec<Example>) -> Vec<Example> {
    examples
        .into_iter()
        .filter(|e| e.original_a.is_some() || e.original_b.is_some())
        .map(|mut e| {
            if let Some(a) = e.original_a.clone() {
                e.text_a = a;
            }
            if let Some(b) = e.original_b.clone() {
                e.text_b = Some(b);
            }
            e
        })
        .collect()
}

/// Reads and parses a bundled split from `assets_dir` (the repository's `assets/`). Native only:
/// the page fetches the bytes itself and calls [`parse_bundled`].
#[cfg(not(target_arch = "wasm32"))]
pub fn load_split(assets_dir: &std::path::Path, task: Task, split: Split) -> Result<Vec<Example>> {
    let file = bundled(task, split)?;
    let path = assets_dir.join(file.path);
    let bytes = std::fs::read(&path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    parse_bundled(task, split, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::AttackLevel;
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    fn assets() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets")
    }

    #[test]
    fn split_names_round_trip() {
        for s in Split::ALL {
            assert_eq!(s.name().parse::<Split>().unwrap(), s);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        let e = Split::parse("dev").unwrap_err().to_string();
        assert!(e.contains("valid splits: train, validation, advglue, advglue-original"), "{e}");
    }

    #[test]
    fn paths_and_refusals() {
        assert_eq!(bundled_path(Task::Sst2, Split::Validation).unwrap(), "data/glue/sst2/validation.jsonl");
        assert_eq!(bundled_path(Task::MnliMm, Split::AdvGlue).unwrap(), "data/advglue/mnli-mm/dev.jsonl");
        assert_eq!(bundled_path(Task::Cola, Split::Train).unwrap(), "train/glue/cola/train.jsonl");
        let e = bundled_path(Task::Mnli, Split::Validation).unwrap_err().to_string();
        assert!(e.contains("split validation of task mnli is not bundled; bundled: sst2/validation"), "{e}");
        assert!(e.contains("mnli-mm/advglue"), "{e}");
        let e = bundled_path(Task::Cola, Split::AdvGlue).unwrap_err().to_string();
        assert!(e.contains("split advglue of task cola is not bundled"), "{e}");
        let e = bundled_path(Task::MnliMm, Split::Train).unwrap_err().to_string();
        assert!(e.contains("train on task mnli"), "{e}");
        // One entry per (task, split).
        for (i, a) in BUNDLED.iter().enumerate() {
            assert!(BUNDLED[i + 1..].iter().all(|b| (a.task, a.split) != (b.task, b.split)));
        }
    }

    /// Every bundled file parses, with the README's row count; AdvGLUE level counts are those of
    /// methods.md §5.4, and an AdvGLUE example has an original text exactly when it is not
    /// human-crafted (checked on the bundled files).
    #[test]
    fn every_bundled_file_parses_with_the_readme_counts() {
        let expected: &[(Task, Split, usize)] = &[
            (Task::Sst2, Split::Validation, 872),
            (Task::Qnli, Split::Validation, 5463),
            (Task::Rte, Split::Validation, 277),
            (Task::Mrpc, Split::Validation, 408),
            (Task::Cola, Split::Validation, 1043),
            (Task::Sst2, Split::AdvGlue, 148),
            (Task::Qqp, Split::AdvGlue, 78),
            (Task::Mnli, Split::AdvGlue, 121),
            (Task::MnliMm, Split::AdvGlue, 162),
            (Task::Qnli, Split::AdvGlue, 148),
            (Task::Rte, Split::AdvGlue, 81),
            (Task::Sst2, Split::Train, 67349),
            (Task::Qnli, Split::Train, 9999),
            (Task::Qqp, Split::Train, 9999),
            (Task::Mnli, Split::Train, 9999),
            (Task::Rte, Split::Train, 2490),
            (Task::Mrpc, Split::Train, 3668),
            (Task::Cola, Split::Train, 8551),
        ];
        assert_eq!(expected.len(), BUNDLED.len());
        for &(task, split, rows) in expected {
            let ex = load_split(&assets(), task, split).unwrap_or_else(|e| panic!("{task}/{split}: {e}"));
            assert_eq!(ex.len(), rows, "{task}/{split}");
            assert_eq!(ex.iter().all(|e| e.text_b.is_some()), task.is_pair(), "{task}/{split}");
            assert!(ex.iter().all(|e| e.label < task.num_labels()));
            if split == Split::AdvGlue {
                let count = |l| ex.iter().filter(|e| e.level == Some(l)).count();
                let levels = (count(AttackLevel::Word), count(AttackLevel::Sentence), count(AttackLevel::Human));
                let want = match task {
                    Task::Sst2 => (80, 51, 17),
                    Task::Qqp => (66, 5, 7),
                    Task::Mnli => (85, 36, 0),
                    Task::MnliMm => (71, 48, 43),
                    Task::Qnli => (91, 42, 15),
                    Task::Rte => (62, 19, 0),
                    _ => unreachable!(),
                };
                assert_eq!(levels, want, "{task}");
                // At most one original per example; present exactly for word/sentence attacks.
                assert!(ex.iter().all(|e| !(e.original_a.is_some() && e.original_b.is_some())));
                assert!(ex.iter().all(
                    |e| (e.original_a.is_some() || e.original_b.is_some()) == (e.level != Some(AttackLevel::Human))
                ));
                assert!(ex.iter().enumerate().all(|(i, e)| e.idx == i as u64), "{task}: idx is the dev.json position");
            } else {
                assert!(ex.iter().all(|e| e.method.is_none() && e.level.is_none() && e.original_a.is_none()));
            }
        }
    }

    #[test]
    fn advglue_originals_are_the_clean_texts_of_the_same_examples() {
        for task in Task::ADVGLUE {
            let adv = load_split(&assets(), task, Split::AdvGlue).unwrap();
            let clean = load_split(&assets(), task, Split::AdvGlueOriginal).unwrap();
            let with_original: Vec<&Example> = adv.iter().filter(|e| e.level != Some(AttackLevel::Human)).collect();
            assert_eq!(clean.len(), with_original.len(), "{task}");
            for (c, a) in clean.iter().zip(&with_original) {
                assert_eq!((c.idx, c.label, c.level, &c.method), (a.idx, a.label, a.level, &a.method), "{task}");
                // Exactly the perturbed field is replaced by its original.
                match (&a.original_a, &a.original_b) {
                    (Some(o), None) => assert!(c.text_a == *o && c.text_b == a.text_b, "{task} {}", a.idx),
                    (None, Some(o)) => assert!(c.text_b.as_ref() == Some(o) && c.text_a == a.text_a, "{task} {}", a.idx),
                    _ => panic!("{task} {}: one original expected", a.idx),
                }
            }
            // Most adversarial texts differ from their originals.
            let changed = clean.iter().zip(&with_original).filter(|(c, a)| c.text_a != a.text_a || c.text_b != a.text_b).count();
            assert!(changed * 10 >= clean.len() * 9, "{task}: only {changed} of {} differ", clean.len());
        }
        assert_eq!(Split::parse("advglue-original").unwrap(), Split::AdvGlueOriginal);
        assert!(bundled(Task::Cola, Split::AdvGlueOriginal).is_err());
    }

    #[test]
    fn advglue_first_rows_match_the_files() {
        let sst = load_split(&assets(), Task::Sst2, Split::AdvGlue).unwrap();
        assert_eq!(sst[0].label, 1);
        assert_eq!(sst[0].method.as_deref(), Some("SememePSO"));
        assert!(sst[0].text_a.starts_with("it 's an uneven treat that bores fun"));
        assert!(sst[0].original_a.as_deref().unwrap().starts_with("it 's an offbeat treat that pokes fun"));
        let mm = load_split(&assets(), Task::MnliMm, Split::AdvGlue).unwrap();
        assert_eq!(mm[0].label, 0);
        assert!(mm[0].original_b.as_deref().unwrap().contains("one of the members"));
        let mrpc = load_split(&assets(), Task::Mrpc, Split::Validation).unwrap();
        assert_eq!(mrpc[0].idx, 9); // HF glue idx, not the row number
    }

    /// `assets/data/manifest.json` and [`BUNDLED`] agree on every evaluation file.
    #[test]
    fn manifest_agrees_with_the_table() {
        let text = std::fs::read_to_string(assets().join("data/manifest.json")).unwrap();
        let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
        let files = manifest["files"].as_object().unwrap();
        let mut seen = BTreeMap::new();
        for b in BUNDLED.iter().filter(|b| b.path.starts_with("data/")) {
            let m = &files[b.path];
            assert_eq!(m["sha256"].as_str().unwrap(), b.sha256, "{}", b.path);
            assert_eq!(m["rows"].as_u64().unwrap(), b.rows as u64, "{}", b.path);
            assert_eq!(m["bytes"].as_u64().unwrap(), b.bytes, "{}", b.path);
            assert_eq!(m["task"].as_str().unwrap(), b.task.name());
            assert_eq!(m["split"].as_str().unwrap(), b.split.name());
            assert_eq!(std::fs::metadata(assets().join(b.path)).unwrap().len(), b.bytes, "{}", b.path);
            seen.insert(b.path, ());
        }
        assert_eq!(seen.len(), files.len(), "manifest lists a file the table lacks");
        let readme = std::fs::read_to_string(assets().join("data/README.md")).unwrap();
        let train_readme = std::fs::read_to_string(assets().join("train/README.md")).unwrap();
        for b in BUNDLED {
            assert!(readme.contains(b.sha256) || train_readme.contains(b.sha256), "{} not in a README", b.path);
        }
    }

    #[test]
    fn changed_bytes_are_refused() {
        let path = assets().join("data/advglue/rte/dev.jsonl");
        let mut bytes = std::fs::read(path).unwrap();
        bytes.truncate(bytes.len() - 1);
        let e = parse_bundled(Task::Rte, Split::AdvGlue, &bytes).unwrap_err().to_string();
        assert!(e.contains("data/advglue/rte/dev.jsonl: 48026 bytes, but the bundled file has 48027"), "{e}");
        // A same-length edit that breaks a label is reported with the file and line.
        let mut bytes = std::fs::read(assets().join("data/advglue/rte/dev.jsonl")).unwrap();
        let pos = bytes.windows(10).position(|w| w == b"\"label\": 0").unwrap();
        bytes[pos + 9] = b'7';
        let e = parse_bundled(Task::Rte, Split::AdvGlue, &bytes).unwrap_err().to_string();
        assert!(e.contains("data/advglue/rte/dev.jsonl: rte JSONL line 1: field `label` 7 out of range"), "{e}");
        let e = load_split(Path::new("/nonexistent-assets"), Task::Rte, Split::AdvGlue).unwrap_err();
        assert!(matches!(e, Error::Io(ref m) if m.contains("/nonexistent-assets/data/advglue/rte/dev.jsonl")), "{e}");
    }
}
