//! The experiment spec: what to run, as JSON. The same spec is what the page puts in a link and
//! what `trilemma run SPEC.json` reads; the results embed it.
//!
//! ```json
//! { "name": "E-P-R on SST-2",
//!   "models": ["transformer", "gla", "hgrn_bit"],
//!   "tasks": ["sst2"], "splits": ["validation", "advglue"],
//!   "backend": "cpu", "seed": 42, "limit": 200, "bootstrap": 1000, "batch": 32 }
//! ```
//!
//! Every bad spec is refused before anything runs, with a message naming the field.

use crate::backend::BackendChoice;
use crate::data::{Split, Task};
use crate::error::{Error, Result};
use crate::eval::ReadoutChoice;

/// The bundled default models, by the names the spec uses (`assets/models/<name>/`).
pub const BUNDLED_MODELS: [&str; 3] = ["transformer", "gla", "hgrn_bit"];

/// Most resamples a spec may ask for (an interval over 10⁵ resamples is already stable to ~0.1%).
pub const MAX_BOOTSTRAP: usize = 100_000;
/// Most sequences per batch.
pub const MAX_BATCH: usize = 256;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// A label for reports.
    #[serde(default)]
    pub name: String,
    /// Bundled model names (`transformer`, `gla`, `hgrn_bit`) or, natively, model folders.
    pub models: Vec<String>,
    pub tasks: Vec<Task>,
    /// Which splits of every task: `validation` (GLUE dev), `advglue` (AdvGLUE dev),
    /// `advglue-original` (the clean originals of the AdvGLUE examples), `train`. A combination
    /// that is not bundled (QQP and MNLI validation; CoLA and MRPC AdvGLUE) is skipped and listed
    /// in the results.
    #[serde(default = "default_splits")]
    pub splits: Vec<Split>,
    /// Attacks on every model × clean split (`validation`, `advglue-original`, `train`) of every task:
    /// `{"recipe": "textfooler", "budget": 0.25, "max_queries": 2000}` (budget and max_queries optional).
    #[serde(default)]
    pub attacks: Vec<crate::attacks::search::AttackConfig>,
    /// Weight compressions: each makes a compressed copy of every model (`"gla + int8"`), evaluated and attacked like
    /// the others and compared with its original (`{"method": "int4", "group": 64}`, see `compress::apply::Recipe`).
    /// The calibration-based ones (`wanda`, `gradient_aware`, `sfsd`) calibrate on 128 bundled train examples drawn
    /// with the spec's seed: of the spec's task when it names one, else the mixed set over all seven tasks (one
    /// compressed copy serves every task of the run), see [`Spec::calibration`].
    #[serde(default)]
    pub compressions: Vec<crate::compress::apply::Recipe>,
    /// Repair compressed copies on every task (`{"prompts": 4, "tokens": 8, "epochs": 2, "lr": 0.01}`, see
    /// `repair::RepairSpec`): soft-prompt pools (IDP) and decoding calibration, fitted on a seeded calibration sample
    /// (of the bundled calibration set by default). Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair: Option<crate::repair::RepairSpec>,
    #[serde(default)]
    pub backend: BackendChoice,
    /// The one seed every random choice derives from (bootstrap resamples, attacks, …).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// At most this many examples of each (task, split), the first ones in file order.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Bootstrap resamples per confidence interval (methods.md §5.5: 10,000).
    #[serde(default = "default_bootstrap")]
    pub bootstrap: usize,
    /// Sequences per batch (1: one example at a time, so latency is per example).
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// How class logits are read (`eval::readout`): `auto` (the default: each model's head for the task, or — for a
    /// language model without one — zero-shot through its LM head with text template `template`), `head`, `prompt`.
    #[serde(default, skip_serializing_if = "ReadoutChoice::is_auto")]
    pub readout: ReadoutChoice,
    /// The text template a prompt readout uses: its index in the task's pool (0 to 3, `repair::text_prompts`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub template: usize,
}

fn is_zero(x: &usize) -> bool {
    *x == 0
}

fn default_splits() -> Vec<Split> {
    vec![Split::Validation, Split::AdvGlue]
}
fn default_seed() -> u64 {
    42
}
fn default_bootstrap() -> usize {
    10_000
}
fn default_batch() -> usize {
    crate::eval::MAX_BATCH
}

/// One evaluation: a model on one split of one task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    pub model: String,
    pub task: Task,
    pub split: Split,
}

impl Spec {
    /// Parses and validates a spec. `model_exists` says whether a model name can be loaded where
    /// this runs (the page: bundled names only; natively: bundled names and existing folders),
    /// and why not.
    pub fn from_json(bytes: &[u8], model_exists: &dyn Fn(&str) -> std::result::Result<(), String>) -> Result<Spec> {
        let spec: Spec = parse(bytes)?;
        spec.validate(model_exists)?;
        Ok(spec)
    }

    /// The checks serde cannot express, each naming its field.
    pub fn validate(&self, model_exists: &dyn Fn(&str) -> std::result::Result<(), String>) -> Result<()> {
        let bad = |field: String, msg: String| Err(Error::Invalid(format!("spec field `{field}`: {msg}")));
        if self.models.is_empty() {
            return bad("models".into(), "name at least one model".into());
        }
        for (i, m) in self.models.iter().enumerate() {
            if m.trim().is_empty() {
                return bad(format!("models[{i}]"), "empty model name".into());
            }
            if self.models[..i].contains(m) {
                return bad(format!("models[{i}]"), format!("{m:?} is listed twice"));
            }
            if let Err(why) = model_exists(m) {
                return bad(format!("models[{i}]"), why);
            }
        }
        if self.tasks.is_empty() {
            return bad("tasks".into(), "name at least one task".into());
        }
        for (i, t) in self.tasks.iter().enumerate() {
            if self.tasks[..i].contains(t) {
                return bad(format!("tasks[{i}]"), format!("{t} is listed twice"));
            }
        }
        if self.splits.is_empty() {
            return bad("splits".into(), "name at least one split".into());
        }
        for (i, s) in self.splits.iter().enumerate() {
            if self.splits[..i].contains(s) {
                return bad(format!("splits[{i}]"), format!("{s} is listed twice"));
            }
        }
        // Combinations that are not bundled are skipped (GLUE validation of QQP and MNLI, AdvGLUE
        // of CoLA and MRPC); a task or split with nothing to run is refused.
        for (i, t) in self.tasks.iter().enumerate() {
            if !self.splits.iter().any(|s| crate::data::bundled(*t, *s).is_ok()) {
                let why = crate::data::bundled(*t, self.splits[0]).err().map(message).unwrap_or_default();
                return bad(format!("tasks[{i}]"), format!("none of the listed splits is bundled for {t} ({why})"));
            }
        }
        for (i, s) in self.splits.iter().enumerate() {
            if !self.tasks.iter().any(|t| crate::data::bundled(*t, *s).is_ok()) {
                let why = crate::data::bundled(self.tasks[0], *s).err().map(message).unwrap_or_default();
                return bad(format!("splits[{i}]"), format!("split {s} is bundled for none of the listed tasks ({why})"));
            }
        }
        for (i, a) in self.attacks.iter().enumerate() {
            if let Err(e) = a.check() {
                return bad(format!("attacks[{i}]"), message(e));
            }
            if self.attacks[..i].contains(a) {
                return bad(format!("attacks[{i}]"), "this attack is listed twice".into());
            }
        }
        if !self.attacks.is_empty() && !self.data().iter().any(|(_, s)| super::attack::CLEAN_SPLITS.contains(s)) {
            return bad("attacks".into(), "attacks start from clean text: add a split validation, advglue-original or train".into());
        }
        for (i, c) in self.compressions.iter().enumerate() {
            if let Err(e) = c.check() {
                return bad(format!("compressions[{i}]"), message(e));
            }
            if self.compressions[..i].contains(c) {
                return bad(format!("compressions[{i}]"), "this compression is listed twice".into());
            }
        }
        if let Some(r) = &self.repair {
            if let Err((f, msg)) = r.check_field() {
                return bad(format!("repair.{f}"), msg);
            }
            if self.compressions.is_empty() {
                return bad("repair".into(), "repair works on compressed copies: add a compression".into());
            }
            if let Some(list) = &r.compressions {
                if list.is_empty() {
                    return bad("repair.compressions".into(), "name at least one compression by its index in `compressions`, or leave it out to repair all".into());
                }
                for (i, &c) in list.iter().enumerate() {
                    if c >= self.compressions.len() {
                        return bad(format!("repair.compressions[{i}]"), format!("{c} is no index of `compressions`, which has {} (0 to {})", self.compressions.len(), self.compressions.len() - 1));
                    }
                    if list[..i].contains(&c) {
                        return bad(format!("repair.compressions[{i}]"), format!("{c} is listed twice"));
                    }
                }
            }
            if r.prompts > 0 {
                if let Some(i) = self.compressions.iter().position(|c| matches!(c, crate::compress::apply::Recipe::LayerParallel { .. }) && self.repaired_compressions().contains(&c)) {
                    return bad(
                        "repair.compressions".into(),
                        format!("compressions[{i}] is layer parallelism, which the soft prompts' differentiable twin does not run (it runs every layer in sequence): leave it out of repair.compressions, or set repair.prompts to 0 for calibration only"),
                    );
                }
            }
            // The bundled calibration set has rows of every task (MNLI mismatched: MNLI's); data splits must be bundled.
            if let Some(split) = r.calibration_split.split() {
                for (i, &t) in self.tasks.iter().enumerate() {
                    let source = r.calibration_split.source(t);
                    let file = match crate::data::bundled(source, split) {
                        Ok(f) => f,
                        Err(e) => return bad(format!("tasks[{i}]"), format!("repair draws calibration examples from the {split} split of {source}: {}", message(e))),
                    };
                    // Calibrating on evaluated validation examples holds them out: some must be left.
                    if self.data().contains(&(t, split)) {
                        let evaluated = self.limit.map_or(file.rows, |l| l.min(file.rows));
                        if r.calibration >= evaluated {
                            return bad(
                                "repair.calibration".into(),
                                format!("{} calibration examples drawn from the {evaluated} evaluated {split} examples of {t} leave none held out; use fewer", r.calibration),
                            );
                        }
                    }
                }
            }
        }
        if self.template >= crate::repair::text_prompts::POOL_SIZE {
            return bad("template".into(), format!("{} is no text template: use 0 to {}", self.template, crate::repair::text_prompts::POOL_SIZE - 1));
        }
        if self.template > 0 && self.readout == ReadoutChoice::Head {
            return bad("template".into(), "a text template is read only with `readout` prompt or auto".into());
        }
        if let Some(r) = &self.repair {
            if self.readout == ReadoutChoice::Prompt && r.prompts > 0 && r.pool == crate::repair::PromptPool::Soft {
                return bad("repair.pool".into(), "soft prompts are trained for a classification head; with `readout` prompt use the text pool (\"pool\": \"text\")".into());
            }
        }
        if self.limit == Some(0) {
            return bad("limit".into(), "must be a positive number of examples (or absent for all)".into());
        }
        if !(1..=MAX_BOOTSTRAP).contains(&self.bootstrap) {
            return bad("bootstrap".into(), format!("{} resamples; use 1 to {MAX_BOOTSTRAP}", self.bootstrap));
        }
        if !(1..=MAX_BATCH).contains(&self.batch) {
            return bad("batch".into(), format!("{} sequences; use 1 to {MAX_BATCH}", self.batch));
        }
        Ok(())
    }

    /// The calibration data of the spec's calibration-based compressions: the one task's train rows when the spec
    /// lists a single task, else the mixed set (a compressed copy is made once per model and serves every task);
    /// seeded with the spec's seed, the default 128 examples.
    pub fn calibration(&self) -> crate::compress::apply::Calibration {
        let task = if self.tasks.len() == 1 { Some(self.tasks[0]) } else { None };
        crate::compress::apply::Calibration { task, seed: self.seed, ..Default::default() }
    }

    /// Every model a run evaluates: each listed model, then its compressed copies (`"gla + int8"`), in order.
    pub fn model_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for m in &self.models {
            out.push(m.clone());
            for c in &self.compressions {
                out.push(compressed_name(m, c));
            }
        }
        out
    }

    /// The evaluations in run order: model by model (compressed copies after their original), then task, then split.
    pub fn units(&self) -> Vec<Unit> {
        let mut out = Vec::new();
        for m in &self.model_names() {
            for (task, split) in self.data() {
                out.push(Unit { model: m.clone(), task, split });
            }
        }
        out
    }

    /// The bundled (task, split) data the spec reads, each once, in run order.
    pub fn data(&self) -> Vec<(Task, Split)> {
        let mut out = Vec::new();
        for &task in &self.tasks {
            for &split in &self.splits {
                if crate::data::bundled(task, split).is_ok() {
                    out.push((task, split));
                }
            }
        }
        out
    }

    /// The (task, split) files the `repair` section draws its calibration examples from that
    /// [`Spec::data`] does not already read (none without a `repair` section, or with the bundled
    /// calibration set, which is compiled in), each once.
    pub fn calibration_data(&self) -> Vec<(Task, Split)> {
        let mut out: Vec<(Task, Split)> = Vec::new();
        if let Some(r) = &self.repair {
            let have = self.data();
            if let Some(split) = r.calibration_split.split() {
                for &t in &self.tasks {
                    let d = (r.calibration_split.source(t), split);
                    if !out.contains(&d) && !have.contains(&d) {
                        out.push(d);
                    }
                }
            }
        }
        out
    }

    /// The compressions the `repair` section repairs (none without one), in `compressions` order.
    pub fn repaired_compressions(&self) -> Vec<&crate::compress::apply::Recipe> {
        match &self.repair {
            None => Vec::new(),
            Some(r) => self.compressions.iter().enumerate().filter(|(i, _)| r.compressions.as_ref().is_none_or(|l| l.contains(i))).map(|(_, c)| c).collect(),
        }
    }

    /// The (task, split) combinations of the spec that are not bundled, so not run.
    pub fn skipped(&self) -> Vec<String> {
        let mut out = Vec::new();
        for &task in &self.tasks {
            for &split in &self.splits {
                if crate::data::bundled(task, split).is_err() {
                    out.push(format!("{task}/{split}"));
                }
            }
        }
        out
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a spec always serialises")
    }
}

/// The name of `model` compressed with `c`.
pub fn compressed_name(model: &str, c: &crate::compress::apply::Recipe) -> String {
    format!("{model} + {}", c.label())
}

/// An error's message without the "invalid input" prefix.
fn message(e: Error) -> String {
    match e {
        Error::Invalid(m) => m,
        other => other.to_string(),
    }
}

/// JSON → spec with the failing field's path in the message (`tasks[1]: unknown variant …`).
fn parse(bytes: &[u8]) -> Result<Spec> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let spec: Spec = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            Error::Invalid(format!("the spec is not valid JSON: {inner}"))
        } else if path == "." {
            Error::Invalid(format!("spec: {inner}"))
        } else {
            Error::Invalid(format!("spec field `{path}`: {inner}"))
        }
    })?;
    de.end().map_err(|e| Error::Invalid(format!("the spec is not valid JSON: {e}")))?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundled_only(name: &str) -> std::result::Result<(), String> {
        if BUNDLED_MODELS.contains(&name) {
            Ok(())
        } else {
            Err(format!("no bundled model {name:?}; bundled: {}", BUNDLED_MODELS.join(", ")))
        }
    }

    fn refuse(json: &str) -> String {
        Spec::from_json(json.as_bytes(), &bundled_only).unwrap_err().to_string()
    }

    #[test]
    fn defaults_and_units() {
        let s = Spec::from_json(br#"{"models": ["gla", "hgrn_bit"], "tasks": ["sst2", "rte"]}"#, &bundled_only).unwrap();
        assert_eq!((s.seed, s.bootstrap, s.batch, s.limit, s.backend), (42, 10_000, 32, None, BackendChoice::Auto));
        assert_eq!(s.splits, vec![Split::Validation, Split::AdvGlue]);
        let u = s.units();
        assert_eq!(u.len(), 8);
        assert_eq!(u[0], Unit { model: "gla".into(), task: Task::Sst2, split: Split::Validation });
        assert_eq!(u[3], Unit { model: "gla".into(), task: Task::Rte, split: Split::AdvGlue });
        assert_eq!(u[4].model, "hgrn_bit");
        // Round trip.
        assert_eq!(Spec::from_json(s.to_json().as_bytes(), &bundled_only).unwrap(), s);
        // Calibration: the mixed set for several tasks, the task's own rows for one; the spec's seed either way.
        assert_eq!(s.calibration(), crate::compress::apply::Calibration { task: None, seed: 42, size: 128 });
        let one = Spec::from_json(br#"{"models": ["gla"], "tasks": ["rte"], "seed": 7}"#, &bundled_only).unwrap();
        assert_eq!(one.calibration(), crate::compress::apply::Calibration { task: Some(Task::Rte), seed: 7, size: 128 });
    }

    #[test]
    fn bad_specs_name_the_field() {
        let cases = [
            (r#"{"models": ["gla"], "tasks": ["sts"]}"#, "`tasks[0]`"),
            (r#"{"models": ["gla"], "tasks": ["sst2"], "limit": -5}"#, "`limit`"),
            (r#"{"models": ["gla"], "tasks": ["sst2"], "limit": 0}"#, "`limit`"),
            (r#"{"models": ["gla", "nope"], "tasks": ["sst2"]}"#, "`models[1]`"),
            (r#"{"models": ["gla"], "tasks": ["qqp"], "splits": ["validation"]}"#, "`tasks[0]`"),
            (r#"{"models": ["gla"], "tasks": ["cola", "mrpc"], "splits": ["validation", "advglue"]}"#, "`splits[1]`"),
            (r#"{"models": ["gla"], "tasks": ["sst2"], "splits": ["dev"]}"#, "`splits[0]`"),
            (r#"{"models": ["gla"], "tasks": ["sst2"], "backend": "tpu"}"#, "`backend`"),
            (r#"{"models": ["gla"], "tasks": ["sst2"], "seeed": 1}"#, "seeed"),
            (r#"{"models": ["gla"], "tasks": ["sst2"], "bootstrap": 0}"#, "`bootstrap`"),
            (r#"{"models": ["gla"], "tasks": ["sst2"], "batch": 100000}"#, "`batch`"),
            (r#"{"models": ["gla"], "tasks": ["sst2"], "attacks": [{"recipe": "textfoolr"}]}"#, "attacks[0].recipe"),
            (r#"{"models": [], "tasks": ["sst2"]}"#, "`models`"),
            (r#"{"models": ["gla"], "tasks": ["sst2", "sst2"]}"#, "`tasks[1]`"),
            (r#"{"tasks": ["sst2"]}"#, "models"),
        ];
        for (json, field) in cases {
            let e = refuse(json);
            assert!(e.contains(field), "{json}: {e}");
        }
        // The split message says what is bundled.
        assert!(refuse(r#"{"models": ["gla"], "tasks": ["qqp"], "splits": ["validation"]}"#).contains("not bundled"));
        // Mixed: what is bundled runs, the rest is listed as skipped.
        let s = Spec::from_json(br#"{"models": ["gla"], "tasks": ["sst2", "qqp", "cola"], "splits": ["validation", "advglue"]}"#, &bundled_only).unwrap();
        let units: Vec<String> = s.units().iter().map(|u| format!("{}/{}", u.task, u.split)).collect();
        assert_eq!(units, ["sst2/validation", "sst2/advglue", "qqp/advglue", "cola/validation"]);
        assert_eq!(s.skipped(), ["qqp/validation", "cola/advglue"]);
        assert!(refuse(r#"{"models": ["gla"], "tasks": ["sst2"], "seed": 1.5}"#).contains("`seed`"));
        for malformed in ["", "{", "[1, 2]", "{\"models\": [\"gla\"], \"tasks\": [\"sst2\"]} trailing", "\u{0}"] {
            let e = refuse(malformed);
            assert!(e.contains("JSON") || e.contains("spec"), "{malformed:?}: {e}");
        }
    }

    #[test]
    fn the_repair_section_round_trips_and_bad_values_name_the_field() {
        use crate::repair::{CalibrationSplit, RepairSpec, Selector};
        let s = Spec::from_json(
            br#"{"models": ["gla"], "tasks": ["sst2", "rte"], "splits": ["validation"], "limit": 64,
                 "compressions": [{"method": "int8"}, {"method": "magnitude", "sparsity": 0.5}],
                 "repair": {"prompts": 3, "tokens": 2, "epochs": 1, "steps": 5, "lr": 0.02, "batch": 8, "calibration": 32,
                            "calibration_split": "validation", "compressions": [1], "selector": "confidence", "long_prompt": false}}"#,
            &bundled_only,
        )
        .unwrap();
        let r = s.repair.clone().unwrap();
        assert_eq!(
            r,
            RepairSpec {
                prompts: 3,
                tokens: 2,
                epochs: 1,
                steps: Some(5),
                lr: 0.02,
                batch: 8,
                calibration: 32,
                calibration_split: CalibrationSplit::Validation,
                compressions: Some(vec![1]),
                selector: Selector::Confidence,
                long_prompt: false,
                pool: crate::repair::PromptPool::Soft,
            }
        );
        assert_eq!(Spec::from_json(s.to_json().as_bytes(), &bundled_only).unwrap(), s);
        assert_eq!(s.repaired_compressions(), [&s.compressions[1]]);
        assert!(s.calibration_data().is_empty(), "validation is read for the evaluation already");
        // Defaults: every compression, 128 rows of the bundled calibration set (compiled in: no file to read).
        let d = Spec::from_json(br#"{"models": ["gla"], "tasks": ["sst2", "mnli-mm"], "compressions": [{"method": "int8"}], "repair": {}}"#, &bundled_only).unwrap();
        assert_eq!(d.repair, Some(RepairSpec::default()));
        let r = d.repair.as_ref().unwrap();
        assert_eq!((r.calibration_split, r.calibration, r.prompts, r.tokens), (CalibrationSplit::Bundled, 128, 4, 8));
        assert_eq!(d.repaired_compressions().len(), 1);
        assert!(d.calibration_data().is_empty());
        assert_eq!(Spec::from_json(d.to_json().as_bytes(), &bundled_only).unwrap(), d);
        // The training split is read besides the evaluated splits (MNLI mismatched: MNLI's).
        let t = Spec::from_json(br#"{"models": ["gla"], "tasks": ["sst2", "mnli-mm"], "compressions": [{"method": "int8"}], "repair": {"calibration_split": "train"}}"#, &bundled_only).unwrap();
        assert_eq!(t.calibration_data(), [(Task::Sst2, Split::Train), (Task::Mnli, Split::Train)]);
        assert_eq!(Spec::from_json(t.to_json().as_bytes(), &bundled_only).unwrap(), t);
        let base = r#""models": ["gla"], "tasks": ["sst2"], "splits": ["validation"], "limit": 64, "compressions": [{"method": "int8"}]"#;
        let cases = [
            (r#""repair": {"prompts": 33}"#, "`repair.prompts`"),
            (r#""repair": {"tokens": 0}"#, "`repair.tokens`"),
            (r#""repair": {"epochs": 0}"#, "`repair.epochs`"),
            (r#""repair": {"steps": 0}"#, "`repair.steps`"),
            (r#""repair": {"lr": 0}"#, "`repair.lr`"),
            (r#""repair": {"lr": 2.5}"#, "`repair.lr`"),
            (r#""repair": {"batch": 0}"#, "`repair.batch`"),
            (r#""repair": {"calibration": 0}"#, "`repair.calibration`"),
            (r#""repair": {"calibration": 129}"#, "`repair.calibration`"),
            (r#""repair": {"prompt": 4}"#, "repair"),
            (r#""repair": {"selector": "loudest"}"#, "repair.selector"),
            (r#""repair": {"calibration_split": "test"}"#, "repair.calibration_split"),
            (r#""repair": {"compressions": [1]}"#, "`repair.compressions[0]`"),
            (r#""repair": {"compressions": [0, 0]}"#, "`repair.compressions[1]`"),
            (r#""repair": {"compressions": []}"#, "`repair.compressions`"),
            (r#""repair": {"prompts": -1}"#, "repair.prompts"),
            (r#""repair": {"calibration_split": "validation", "calibration": 64}"#, "`repair.calibration`"),
            (r#""repair": 4"#, "repair"),
        ];
        for (extra, field) in cases {
            let json = format!("{{{base}, {extra}}}");
            let e = refuse(&json);
            assert!(e.contains(field), "{json}: {e}");
        }
        // Held out of 64 evaluated validation examples: 63 leave one.
        assert!(Spec::from_json(format!(r#"{{{base}, "repair": {{"calibration_split": "validation", "calibration": 63}}}}"#).as_bytes(), &bundled_only).is_ok());
        // Without a limit the whole file is evaluated (SST-2 validation: 872).
        let nolimit = r#""models": ["gla"], "tasks": ["sst2"], "splits": ["validation"], "compressions": [{"method": "int8"}]"#;
        assert!(refuse(&format!(r#"{{{nolimit}, "repair": {{"calibration_split": "validation", "calibration": 872}}}}"#)).contains("`repair.calibration`"));
        assert!(refuse(r#"{"models": ["gla"], "tasks": ["sst2"], "repair": {}}"#).contains("add a compression"));
        // Layer parallelism: calibration only (the twin runs layers in sequence).
        let lp = r#""models": ["gla"], "tasks": ["sst2"], "compressions": [{"method": "int8"}, {"method": "layer_parallel", "start": 0, "end": 2}]"#;
        assert!(refuse(&format!(r#"{{{lp}, "repair": {{}}}}"#)).contains("`repair.compressions`"));
        for ok in [r#""repair": {"prompts": 0}"#, r#""repair": {"compressions": [0]}"#] {
            assert!(Spec::from_json(format!("{{{lp}, {ok}}}").as_bytes(), &bundled_only).is_ok(), "{ok}");
        }
        // MNLI has no bundled validation split to calibrate on.
        let e = refuse(r#"{"models": ["gla"], "tasks": ["mnli"], "splits": ["advglue"], "compressions": [{"method": "int8"}], "repair": {"calibration_split": "validation"}}"#);
        assert!(e.contains("`tasks[0]`") && e.contains("calibration"), "{e}");
    }
}
