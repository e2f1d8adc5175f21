//! The JSONL reader for GLUE / AdvGLUE files: one JSON object per line with `idx`, the task's
//! text field(s) and `label` (HF `glue` layout); AdvGLUE rows add `method`, `data_construction`
//! and `original_<field>` (from AdvGLUE's annotated `dev_ann.json`).
//!
//! Works on bytes so the page (wasm32) and the CLI share it. Every malformed line is an
//! [`Error::Invalid`] naming the 1-based line and the field; nothing here panics on input.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::Task;
use crate::{Error, Result};

/// How an AdvGLUE example was built (`data_construction` in `dev_ann.json`): the attack level
/// of the E-P-R study (methods.md §5.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttackLevel {
    /// Word-level attacks (TextBugger, TextFooler, BERT-ATTACK, SememePSO, SemAttack).
    Word,
    /// Sentence-level attacks (T3, SCPN, StressTest, CheckList, AdvFever).
    Sentence,
    /// Human-crafted examples (CheckList, StressTest, ANLI, AdvSQuAD).
    Human,
}

impl AttackLevel {
    pub const ALL: [AttackLevel; 3] = [AttackLevel::Word, AttackLevel::Sentence, AttackLevel::Human];

    /// The name used in `dev_ann.json`.
    pub fn name(self) -> &'static str {
        match self {
            AttackLevel::Word => "word",
            AttackLevel::Sentence => "sentence",
            AttackLevel::Human => "human",
        }
    }

    /// Parses `word` / `sentence` / `human`; anything else is an error naming the valid values.
    pub fn parse(name: &str) -> Result<AttackLevel> {
        AttackLevel::ALL.iter().copied().find(|l| l.name() == name).ok_or_else(|| {
            Error::Invalid(format!("unknown attack level {name:?}; valid levels: word, sentence, human"))
        })
    }
}

impl std::fmt::Display for AttackLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for AttackLevel {
    type Err = Error;
    fn from_str(s: &str) -> Result<AttackLevel> {
        AttackLevel::parse(s)
    }
}

/// One labelled example. `text_b` is set exactly for sentence-pair tasks. The AdvGLUE-only
/// fields are `None` on GLUE rows; `original_a`/`original_b` hold the benign GLUE text of the
/// field that was perturbed (AdvGLUE annotates at most one of them per example).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Example {
    /// The file's `idx` (HF `glue` idx for GLUE rows; position in `dev.json` for AdvGLUE).
    pub idx: u64,
    pub text_a: String,
    pub text_b: Option<String>,
    pub label: u32,
    /// The AdvGLUE attack (`method`, e.g. `SememePSO`, `CheckList`).
    pub method: Option<String>,
    /// The AdvGLUE attack level (`data_construction`).
    pub level: Option<AttackLevel>,
    pub original_a: Option<String>,
    pub original_b: Option<String>,
}

/// Parses a task's JSONL bytes (UTF-8, LF or CRLF line ends; a leading BOM and blank lines are
/// skipped; fields not named below are ignored).
///
/// Required: `idx` (non-negative integer, unique within the file), the task's text field(s)
/// (strings), `label` (integer in `0..task.num_labels()`). Optional (absent or `null`):
/// `method` (string), `data_construction` (`word`/`sentence`/`human`), `original_<field>`
/// (string). An input with no example is an error.
pub fn parse_jsonl(task: Task, bytes: &[u8]) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let n = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let raw = if i == 0 { raw.strip_prefix("\u{feff}".as_bytes()).unwrap_or(raw) } else { raw };
        let line = std::str::from_utf8(raw).map_err(|e| {
            Error::Invalid(format!("{task} JSONL line {n}: not valid UTF-8 (at byte {} of the line)", e.valid_up_to()))
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let ex = parse_line(task, n, line)?;
        if let Some(first) = seen.insert(ex.idx, n) {
            return Err(Error::Invalid(format!(
                "{task} JSONL line {n}: duplicate idx {} (first on line {first})",
                ex.idx
            )));
        }
        out.push(ex);
    }
    if out.is_empty() {
        return Err(Error::Invalid(format!("{task} JSONL: no examples (the input is empty or blank)")));
    }
    Ok(out)
}

fn parse_line(task: Task, n: usize, line: &str) -> Result<Example> {
    let bad = |msg: String| Error::Invalid(format!("{task} JSONL line {n}: {msg}"));
    let value: Value = serde_json::from_str(line).map_err(|e| {
        // serde_json appends "at line 1 column C" (the line is its whole input): keep the column.
        let full = e.to_string();
        let msg = full.rsplit_once(" at line ").map_or(full.as_str(), |(m, _)| m);
        bad(format!("invalid JSON at column {}: {msg}", e.column()))
    })?;
    let Value::Object(obj) = value else {
        return Err(bad(format!("expected a JSON object, got {}", kind(&value))));
    };

    let idx = match obj.get("idx") {
        None | Some(Value::Null) => return Err(bad("missing field `idx`".into())),
        Some(v) => v.as_u64().ok_or_else(|| bad(format!("field `idx` must be a non-negative integer, got {v}")))?,
    };

    let needs = match task.second_field() {
        Some(b) => format!("`{}` and `{b}`", task.first_field()),
        None => format!("`{}`", task.first_field()),
    };
    let required = |field: &str| -> Result<String> {
        match obj.get(field) {
            None | Some(Value::Null) => Err(bad(format!("missing field `{field}` (task {task} needs {needs})"))),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(bad(format!("field `{field}` must be a string, got {}", kind(v)))),
        }
    };
    let text_a = required(task.first_field())?;
    let text_b = task.second_field().map(required).transpose()?;

    let label = match obj.get("label") {
        None | Some(Value::Null) => return Err(bad("missing field `label`".into())),
        Some(v @ Value::Number(num)) => match (num.as_u64(), num.as_i64()) {
            (Some(l), _) if l < u64::from(task.num_labels()) => l as u32,
            (Some(_), _) | (None, Some(_)) => {
                let hint = if num.as_i64() == Some(-1) { " (-1 marks GLUE's unlabelled test split)" } else { "" };
                return Err(bad(format!(
                    "field `label` {v} out of range for task {task} (valid: {}){hint}",
                    task.describe_labels()
                )));
            }
            (None, None) => return Err(bad(format!("field `label` must be an integer, got {v}"))),
        },
        Some(v) => return Err(bad(format!("field `label` must be an integer, got {}", kind(v)))),
    };

    let method = optional(&obj, "method").map_err(&bad)?;
    let level = optional(&obj, "data_construction")
        .map_err(&bad)?
        .map(|s| {
            AttackLevel::parse(&s)
                .map_err(|_| bad(format!("field `data_construction` must be word, sentence or human, got {s:?}")))
        })
        .transpose()?;
    let original_a = optional(&obj, &format!("original_{}", task.first_field())).map_err(&bad)?;
    let original_b = match task.second_field() {
        Some(f) => optional(&obj, &format!("original_{f}")).map_err(&bad)?,
        None => None,
    };

    Ok(Example { idx, text_a, text_b, label, method, level, original_a, original_b })
}

/// An optional string field: absent or `null` is `None`; any other non-string is an error.
fn optional(obj: &Map<String, Value>, field: &str) -> std::result::Result<Option<String>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(format!("field `{field}` must be a string, got {}", kind(v))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(task: Task, text: &str) -> String {
        parse_jsonl(task, text.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn parses_single_and_pair_rows() {
        let sst = "{\"idx\": 0, \"sentence\": \"a fine film\", \"label\": 1}\n{\"idx\": 7, \"sentence\": \"dull\", \"label\": 0}\n";
        let ex = parse_jsonl(Task::Sst2, sst.as_bytes()).unwrap();
        assert_eq!(ex.len(), 2);
        assert_eq!(
            ex[0],
            Example {
                idx: 0,
                text_a: "a fine film".into(),
                text_b: None,
                label: 1,
                method: None,
                level: None,
                original_a: None,
                original_b: None
            }
        );
        assert_eq!((ex[1].idx, ex[1].label), (7, 0));

        let mnli = r#"{"idx": 3, "premise": "P", "hypothesis": "H", "label": 2, "method": "SememePSO", "data_construction": "word", "original_hypothesis": "H0", "extra": [1]}"#;
        let ex = parse_jsonl(Task::MnliMm, mnli.as_bytes()).unwrap();
        assert_eq!(ex[0].text_a, "P");
        assert_eq!(ex[0].text_b.as_deref(), Some("H"));
        assert_eq!(ex[0].label, 2);
        assert_eq!(ex[0].method.as_deref(), Some("SememePSO"));
        assert_eq!(ex[0].level, Some(AttackLevel::Word));
        assert_eq!((ex[0].original_a.as_deref(), ex[0].original_b.as_deref()), (None, Some("H0")));

        let qqp = r#"{"idx": 1, "question1": "q1", "question2": "q2", "label": 0, "original_question1": "o1", "data_construction": "human", "method": null}"#;
        let ex = parse_jsonl(Task::Qqp, qqp.as_bytes()).unwrap();
        assert_eq!(ex[0].original_a.as_deref(), Some("o1"));
        assert_eq!(ex[0].level, Some(AttackLevel::Human));
        assert_eq!(ex[0].method, None);
    }

    #[test]
    fn tolerates_crlf_bom_and_blank_lines() {
        let text = "\u{feff}{\"idx\": 0, \"sentence\": \"x\", \"label\": 0}\r\n\r\n  \n{\"idx\": 1, \"sentence\": \"y\", \"label\": 1}";
        let ex = parse_jsonl(Task::Cola, text.as_bytes()).unwrap();
        assert_eq!(ex.iter().map(|e| e.idx).collect::<Vec<_>>(), vec![0, 1]);
    }

    #[test]
    fn empty_input_is_an_error() {
        for text in ["", "\n", "  \n\r\n"] {
            let e = err(Task::Sst2, text);
            assert!(e.contains("no examples"), "{e}");
        }
    }

    #[test]
    fn bad_json_names_the_line_and_column() {
        let text = "{\"idx\": 0, \"sentence\": \"x\", \"label\": 0}\n{\"idx\": 1, \"sentence\": \"y\" \"label\": 1}\n";
        let e = err(Task::Sst2, text);
        assert!(e.contains("sst2 JSONL line 2: invalid JSON at column"), "{e}");
        assert!(!e.contains("at line 1"), "{e}");
        let e = err(Task::Sst2, "[1, 2]\n");
        assert!(e.contains("line 1: expected a JSON object, got an array"), "{e}");
        let e = err(Task::Sst2, "{\"idx\": 0, \"sentence\": \"x\", \"label\": 0}\n{\"idx\": 1, \"sentence\"");
        assert!(e.contains("line 2: invalid JSON"), "{e}");
        let bytes = b"{\"idx\": 0, \"sentence\": \"\xff\", \"label\": 0}\n";
        let e = parse_jsonl(Task::Sst2, bytes).unwrap_err().to_string();
        assert!(e.contains("line 1: not valid UTF-8"), "{e}");
    }

    #[test]
    fn missing_or_mistyped_fields_are_named() {
        let e = err(Task::Sst2, r#"{"sentence": "x", "label": 0}"#);
        assert!(e.contains("line 1: missing field `idx`"), "{e}");
        let e = err(Task::Rte, "{\"idx\": 0, \"sentence1\": \"a\", \"sentence2\": \"b\", \"label\": 0}\n{\"idx\": 1, \"sentence1\": \"a\", \"label\": 0}");
        assert!(e.contains("rte JSONL line 2: missing field `sentence2`"), "{e}");
        assert!(e.contains("needs `sentence1` and `sentence2`"), "{e}");
        let e = err(Task::Qnli, r#"{"idx": 0, "question": "a", "sentence": null, "label": 0}"#);
        assert!(e.contains("missing field `sentence`"), "{e}");
        let e = err(Task::Sst2, r#"{"idx": 0, "sentence": 5, "label": 0}"#);
        assert!(e.contains("field `sentence` must be a string, got a number"), "{e}");
        let e = err(Task::Sst2, r#"{"idx": 0, "sentence": "x"}"#);
        assert!(e.contains("missing field `label`"), "{e}");
        let e = err(Task::Sst2, r#"{"idx": 0, "sentence": "x", "label": "1"}"#);
        assert!(e.contains("field `label` must be an integer, got a string"), "{e}");
        let e = err(Task::Sst2, r#"{"idx": 0, "sentence": "x", "label": 1.5}"#);
        assert!(e.contains("field `label` must be an integer, got 1.5"), "{e}");
        let e = err(Task::Sst2, r#"{"idx": -3, "sentence": "x", "label": 1}"#);
        assert!(e.contains("field `idx` must be a non-negative integer, got -3"), "{e}");
        let e = err(Task::Sst2, r#"{"idx": 0, "sentence": "x", "label": 1, "method": 3}"#);
        assert!(e.contains("field `method` must be a string"), "{e}");
        let e = err(Task::Sst2, r#"{"idx": 0, "sentence": "x", "label": 1, "data_construction": "char"}"#);
        assert!(e.contains("field `data_construction` must be word, sentence or human, got \"char\""), "{e}");
        let e = err(Task::Sst2, r#"{"idx": 0, "sentence": "x", "label": 1, "original_sentence": []}"#);
        assert!(e.contains("field `original_sentence` must be a string, got an array"), "{e}");
    }

    #[test]
    fn label_out_of_range_names_the_line() {
        let ok = "{\"idx\": 0, \"premise\": \"p\", \"hypothesis\": \"h\", \"label\": 2}\n";
        assert_eq!(parse_jsonl(Task::Mnli, ok.as_bytes()).unwrap()[0].label, 2);
        let e = err(
            Task::Qnli,
            &format!(
                "{}\n{}",
                r#"{"idx": 0, "question": "q", "sentence": "s", "label": 1}"#,
                r#"{"idx": 1, "question": "q", "sentence": "s", "label": 2}"#
            ),
        );
        assert!(e.contains("qnli JSONL line 2: field `label` 2 out of range for task qnli"), "{e}");
        assert!(e.contains("0 entailment, 1 not_entailment"), "{e}");
        let e = err(Task::Sst2, r#"{"idx": 0, "sentence": "x", "label": -1}"#);
        assert!(e.contains("out of range") && e.contains("unlabelled test split"), "{e}");
        let e = err(Task::Sst2, r#"{"idx": 0, "sentence": "x", "label": 18446744073709551615}"#);
        assert!(e.contains("out of range"), "{e}");
    }

    #[test]
    fn duplicate_idx_is_refused() {
        let text = "{\"idx\": 4, \"sentence\": \"x\", \"label\": 0}\n{\"idx\": 5, \"sentence\": \"y\", \"label\": 0}\n{\"idx\": 4, \"sentence\": \"z\", \"label\": 1}\n";
        let e = err(Task::Sst2, text);
        assert!(e.contains("line 3: duplicate idx 4 (first on line 1)"), "{e}");
    }

    #[test]
    fn attack_level_names() {
        for l in AttackLevel::ALL {
            assert_eq!(l.name().parse::<AttackLevel>().unwrap(), l);
            assert_eq!(serde_json::to_string(&l).unwrap(), format!("\"{l}\""));
        }
        assert!(AttackLevel::parse("Word").unwrap_err().to_string().contains("word, sentence, human"));
    }
}
