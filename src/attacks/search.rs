//! Model-in-the-loop attacks, built from TextAttack's four parts (Morris et al., "TextAttack", EMNLP 2020 demos):
//!
//! - **transformation** — what may change a text: TextBugger's bugs, TextFooler's synonym swaps, AdvGLUE's
//!   sentence-level distractors ([`super::Transformation`]);
//! - **constraints** — what every change must respect: stop words and punctuation stay, no word is changed twice, at
//!   most [`word_budget`] words change, at most `max_queries` model queries, synonyms share a part of speech with the
//!   word where the WordNet table gives one, embedding neighbours are at least [`MIN_COS`] similar;
//! - **goal** — untargeted classification: lower the probability of the true label until the prediction differs
//!   from it; an example the model already gets wrong is skipped (TextAttack's `SkippedAttackResult`);
//! - **search** — greedy by word importance (TextAttack's `GreedyWordSwapWIR` with `wir_method="delete"`, the
//!   black-box ranking of TextBugger and TextFooler): rank the words by how much deleting each lowers the true
//!   label's probability, then visit them in that order keeping the most damaging candidate when it lowers the
//!   score, until the label flips or a budget is spent. Sentence level tries every distractor the recipe has and
//!   keeps the most damaging one.
//!
//! The random recipes are the non-adaptive baselines: the same transformations and budgets, words and candidates
//! drawn at random, the model asked only before and after.
//!
//! In a pair task only the second segment (hypothesis, second question or sentence) is edited, as in AdvGLUE and
//! TextFooler. Every random choice comes from the seed, the example's `idx` and the word's position, so the same
//! spec gives the same texts everywhere.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::char_level::{self, Bug};
use super::neighbours::{EmbeddingNeighbours, MIN_COS};
use super::sentence_level::{self, Distractor, Placement, Segment};
use super::synonyms::SynonymTable;
use super::text::{self, Change, Edit, Span};
use super::{word_budget, Transformation};
use crate::backend::Backend;
use crate::data::Task;
use crate::error::{Error, Result};
use crate::eval;
use crate::models::Model;
use crate::rng::{derive_seed, SplitMix64};
use crate::text::TextTokenizer;

/// Share of a text's words an attack may change unless the spec says otherwise [default: ours; TextFooler and
/// TextBugger set no limit, and a quarter keeps most attacked SST-2 sentences readable].
pub const DEFAULT_BUDGET: f64 = 0.25;
/// Model queries per example unless the spec says otherwise [default: ours; TextAttack's default is unlimited].
pub const DEFAULT_MAX_QUERIES: usize = 2000;
/// TextFooler's candidates per word: K = 50 (Jin et al., AAAI 2020).
pub const TEXTFOOLER_CANDIDATES: usize = 50;
/// Random CheckList strings the model-guided search tries at each placement (URL and handle each) [default: ours].
pub const CHECKLIST_SAMPLES: usize = 5;
/// Longest text (in characters, both segments) an attack accepts: the word ranking costs one query per word.
pub const MAX_ATTACK_CHARS: usize = 10_000;

/// Which of the seed paper's levels (arXiv 2408.04585, after AdvGLUE) a recipe attacks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Word,
    Sentence,
    /// A sentence-level distractor and word-level changes together.
    Combined,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Word => "word",
            Level::Sentence => "sentence",
            Level::Combined => "combined",
        }
    }
}

/// An attack recipe by its spec name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recipe {
    /// TextBugger (Li et al., NDSS 2019): per word one random instance of each of the five bugs, the most damaging
    /// kept.
    Textbugger,
    /// TextFooler (Jin et al., AAAI 2020): WordNet synonyms and embedding neighbours, greedy.
    Textfooler,
    /// AdvGLUE's StressTest distractors (tautology, negation, length mismatch), the most damaging kept.
    StressTest,
    /// AdvGLUE's CheckList distractors (random URL or handle at the start or the end), the most damaging kept.
    Checklist,
    /// The most damaging distractor of all five, then TextBugger's and TextFooler's word changes together.
    Combined,
    RandomTextbugger,
    RandomTextfooler,
    RandomStressTest,
    RandomChecklist,
    RandomCombined,
}

impl Recipe {
    pub const ALL: [Recipe; 10] = [
        Recipe::Textbugger,
        Recipe::Textfooler,
        Recipe::StressTest,
        Recipe::Checklist,
        Recipe::Combined,
        Recipe::RandomTextbugger,
        Recipe::RandomTextfooler,
        Recipe::RandomStressTest,
        Recipe::RandomChecklist,
        Recipe::RandomCombined,
    ];

    /// The spec name.
    pub fn name(self) -> &'static str {
        match self {
            Recipe::Textbugger => "textbugger",
            Recipe::Textfooler => "textfooler",
            Recipe::StressTest => "stress_test",
            Recipe::Checklist => "checklist",
            Recipe::Combined => "combined",
            Recipe::RandomTextbugger => "random_textbugger",
            Recipe::RandomTextfooler => "random_textfooler",
            Recipe::RandomStressTest => "random_stress_test",
            Recipe::RandomChecklist => "random_checklist",
            Recipe::RandomCombined => "random_combined",
        }
    }

    pub fn parse(name: &str) -> Result<Recipe> {
        Recipe::ALL.into_iter().find(|r| r.name() == name).ok_or_else(|| {
            let names: Vec<&str> = Recipe::ALL.iter().map(|r| r.name()).collect();
            Error::Invalid(format!("unknown attack recipe {name:?}; the recipes are {}", names.join(", ")))
        })
    }

    /// The model-guided recipe a random one is the baseline of (itself when model-guided).
    pub fn guided(self) -> Recipe {
        match self {
            Recipe::RandomTextbugger => Recipe::Textbugger,
            Recipe::RandomTextfooler => Recipe::Textfooler,
            Recipe::RandomStressTest => Recipe::StressTest,
            Recipe::RandomChecklist => Recipe::Checklist,
            Recipe::RandomCombined => Recipe::Combined,
            r => r,
        }
    }

    pub fn is_random(self) -> bool {
        self.guided() != self
    }

    pub fn level(self) -> Level {
        match self.guided() {
            Recipe::Textbugger | Recipe::Textfooler => Level::Word,
            Recipe::StressTest | Recipe::Checklist => Level::Sentence,
            _ => Level::Combined,
        }
    }

    /// Whether the recipe changes words (with TextBugger's bugs, TextFooler's synonyms, or both).
    fn word_kinds(self) -> (bool, bool) {
        match self.guided() {
            Recipe::Textbugger => (true, false),
            Recipe::Textfooler => (false, true),
            Recipe::Combined => (true, true),
            _ => (false, false),
        }
    }

    /// The distractors the recipe adds.
    fn distractors(self) -> &'static [Distractor] {
        const STRESS: [Distractor; 3] = [Distractor::Tautology, Distractor::Negation, Distractor::LengthMismatch];
        const CHECK: [Distractor; 2] = [Distractor::Url, Distractor::Handle];
        const ALL: [Distractor; 5] = [Distractor::Tautology, Distractor::Negation, Distractor::LengthMismatch, Distractor::Url, Distractor::Handle];
        match self.guided() {
            Recipe::StressTest => &STRESS,
            Recipe::Checklist => &CHECK,
            Recipe::Combined => &ALL,
            _ => &[],
        }
    }

    /// Every transformation the recipe may apply (its changes' `kind`s are among these).
    pub fn transformations(self) -> Vec<Transformation> {
        let (bugs, synonyms) = self.word_kinds();
        let mut out = Vec::new();
        if bugs {
            out.extend(Bug::ALL.map(Transformation::of_bug));
        }
        if synonyms {
            out.push(Transformation::Synonym);
        }
        out.extend(self.distractors().iter().map(|&d| Transformation::of_distractor(d)));
        out
    }
}

/// How hard to attack: the recipe and its two budgets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackConfig {
    pub recipe: Recipe,
    /// Largest share of the edited segment's words that may change, in [0, 1] ([`word_budget`]). Zero changes
    /// nothing at all, distractors included.
    #[serde(default = "default_budget")]
    pub budget: f64,
    /// Most model queries per example, the first (the unchanged text) included; at least 1.
    #[serde(default = "default_max_queries")]
    pub max_queries: usize,
}

fn default_budget() -> f64 {
    DEFAULT_BUDGET
}

fn default_max_queries() -> usize {
    DEFAULT_MAX_QUERIES
}

impl AttackConfig {
    pub fn new(recipe: Recipe) -> Self {
        Self { recipe, budget: DEFAULT_BUDGET, max_queries: DEFAULT_MAX_QUERIES }
    }

    /// Refuses a budget outside [0, 1] or no queries.
    pub fn check(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.budget) {
            return Err(Error::Invalid(format!("attack budget {} is not a share of words in [0, 1]", self.budget)));
        }
        if self.max_queries == 0 {
            return Err(Error::Invalid("max_queries must be at least 1 (the unchanged text is one query)".into()));
        }
        Ok(())
    }
}

/// One model input: a text, or a pair.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Input {
    pub a: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b: Option<String>,
}

impl Input {
    /// The segment an attack edits: the second of a pair, else the only one.
    pub fn segment(&self) -> Segment {
        if self.b.is_some() {
            Segment::Second
        } else {
            Segment::First
        }
    }

    fn edited(&self) -> &str {
        self.b.as_deref().unwrap_or(&self.a)
    }

    fn with_edited(&self, text: String) -> Input {
        match self.b {
            Some(_) => Input { a: self.a.clone(), b: Some(text) },
            None => Input { a: text, b: None },
        }
    }
}

/// The model under attack: class probabilities for a list of inputs.
#[allow(async_fn_in_trait)]
pub trait Victim {
    async fn probs(&mut self, inputs: &[Input]) -> Result<Vec<Vec<f32>>>;
}

/// A loaded model read out for one task ([`eval::Readout`]: its head, or a text prompt through the LM head) as a
/// [`Victim`], in the evaluation's length-sorted batches.
pub struct ModelVictim<'m, B: Backend> {
    be: &'m B,
    model: &'m Model<B>,
    tokenizer: &'m TextTokenizer,
    readout: eval::Readout,
}

impl<'m, B: Backend> ModelVictim<'m, B> {
    /// With the automatic readout; refuses a model whose head for `task` has the wrong number of classes.
    pub fn new(be: &'m B, model: &'m Model<B>, tokenizer: &'m TextTokenizer, task: Task) -> Result<Self> {
        let readout = eval::Readout::resolve(model, tokenizer, task, eval::ReadoutChoice::Auto, 0)?;
        Ok(Self::with_readout(be, model, tokenizer, readout))
    }

    pub fn with_readout(be: &'m B, model: &'m Model<B>, tokenizer: &'m TextTokenizer, readout: eval::Readout) -> Self {
        Self { be, model, tokenizer, readout }
    }
}

impl<B: Backend> Victim for ModelVictim<'_, B> {
    async fn probs(&mut self, inputs: &[Input]) -> Result<Vec<Vec<f32>>> {
        let seqs = inputs.iter().map(|i| self.readout.encode(self.tokenizer, &i.a, i.b.as_deref())).collect::<Result<Vec<_>>>()?;
        let lengths: Vec<usize> = seqs.iter().map(Vec::len).collect();
        let mut out = vec![Vec::new(); inputs.len()];
        for batch in eval::batches(&lengths, eval::MAX_BATCH, eval::MAX_BATCH_TOKENS) {
            let ids: Vec<&[u32]> = batch.iter().map(|&i| seqs[i].as_slice()).collect();
            let logits = self.be.read(&self.readout.forward(self.be, self.model, &ids)?).await?;
            for (row, &i) in self.readout.rows(logits.as_f32("logits")?, batch.len())?.iter().zip(&batch) {
                out[i] = eval::softmax(row);
            }
        }
        Ok(out)
    }
}

/// The goal function with its query counter and cache (TextAttack counts a query per text the model has not seen;
/// repeated texts are free).
struct Oracle<'v, V: Victim> {
    victim: &'v mut V,
    cache: HashMap<Input, Vec<f32>>,
    queries: usize,
    max_queries: usize,
    label: usize,
}

impl<V: Victim> Oracle<'_, V> {
    /// Probabilities for as many leading `inputs` as the query budget allows (shorter than `inputs` when it ran out).
    async fn ask(&mut self, inputs: &[Input]) -> Result<Vec<Vec<f32>>> {
        let mut todo: Vec<Input> = Vec::new();
        let mut seen: HashSet<&Input> = HashSet::new();
        let mut allowed = inputs.len();
        for (k, inp) in inputs.iter().enumerate() {
            if self.cache.contains_key(inp) || seen.contains(inp) {
                continue;
            }
            if self.queries + todo.len() >= self.max_queries {
                allowed = k;
                break;
            }
            seen.insert(inp);
            todo.push(inp.clone());
        }
        if !todo.is_empty() {
            let probs = self.victim.probs(&todo).await?;
            self.queries += todo.len();
            for (inp, p) in todo.into_iter().zip(probs) {
                self.cache.insert(inp, p);
            }
        }
        Ok(inputs[..allowed].iter().map(|i| self.cache[i].clone()).collect())
    }

    /// Untargeted goal score: 1 − p(true label).
    fn score(&self, p: &[f32]) -> f64 {
        1.0 - p.get(self.label).copied().unwrap_or(0.0) as f64
    }

    fn exhausted(&self) -> bool {
        self.queries >= self.max_queries
    }
}

/// A prediction with its class probabilities.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub prediction: u32,
    pub probs: Vec<f32>,
}

impl Verdict {
    fn of(p: Vec<f32>) -> Self {
        Verdict { prediction: eval::argmax(&p), probs: p }
    }

    /// The probability of the predicted class.
    pub fn confidence(&self) -> f32 {
        self.probs.get(self.prediction as usize).copied().unwrap_or(0.0)
    }
}

/// TextAttack's result kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The prediction no longer equals the label.
    Succeeded,
    /// The budgets ran out (or nothing applied) with the label still predicted.
    Failed,
    /// The model was already wrong on the unchanged text; not attacked.
    Skipped,
}

/// One change of an attacked segment, with the transformation that made it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttackChange {
    #[serde(flatten)]
    pub change: Change,
    pub kind: Transformation,
}

/// Everything about one attacked example.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttackRecord {
    pub idx: u64,
    pub label: u32,
    pub outcome: Outcome,
    pub original: Input,
    pub perturbed: Input,
    /// Which segment was edited; the changes' spans are in that segment.
    pub segment: Segment,
    pub changes: Vec<AttackChange>,
    /// Words ([`text::is_word`]) of the edited segment before the attack.
    pub words: usize,
    /// Words changed (a distractor only adds words and changes none, as in TextAttack's word diff).
    pub words_changed: usize,
    pub queries: usize,
    pub before: Verdict,
    pub after: Verdict,
}

/// Where an attack stands: word edits and at most one distractor on the edited segment.
#[derive(Clone, Debug, Default)]
struct Draft {
    edits: BTreeMap<usize, (String, Transformation)>,
    distractor: Option<(Distractor, String, Placement)>,
}

impl Draft {
    /// The edited segment and its changes (in the new text's order). A distractor goes on the word-edited text; a
    /// changed word it lands inside (glued final punctuation) gets a span that covers the distractor too.
    fn render(&self, original: &str) -> (String, Vec<AttackChange>) {
        let edits: Vec<Edit> = self.edits.iter().map(|(&index, (r, _))| Edit { index, replacement: r.clone() }).collect();
        let (t1, changes) = text::apply_edits(original, &edits).expect("drafts edit distinct tokens of their text");
        let mut out: Vec<AttackChange> = changes.into_iter().zip(self.edits.values()).map(|(change, (_, kind))| AttackChange { change, kind: *kind }).collect();
        let Some((d, phrase, placement)) = &self.distractor else { return (t1, out) };
        let (t2, mut c) = sentence_level::place(&t1, *d, phrase, *placement);
        let (at, len) = (c.original.start, c.new.len());
        // The insertion point in the original text: back over the length changes of the word edits before it.
        let mut at_orig = at as isize;
        for a in &out {
            if a.change.new.end <= at {
                at_orig -= a.change.new.len() as isize - a.change.original.len() as isize;
            } else if a.change.new.start < at {
                at_orig = a.change.original.end as isize;
                break;
            }
        }
        let at_orig = at_orig.max(0) as usize;
        c.original = Span { start: at_orig, end: at_orig };
        for a in &mut out {
            let s = &mut a.change.new;
            *s = Span { start: if s.start >= at { s.start + len } else { s.start }, end: if s.end > at || s.start >= at { s.end + len } else { s.end } };
        }
        out.push(AttackChange { change: c, kind: Transformation::of_distractor(*d) });
        out.sort_by_key(|a| (a.change.new.start, a.change.new.end));
        (t2, out)
    }
}

/// What the word-level transformations draw on: the WordNet table and the victim's embedding neighbours.
pub struct Lexicon<'a> {
    pub synonyms: &'a SynonymTable,
    pub neighbours: &'a EmbeddingNeighbours,
}

/// `(prefix, core, suffix)` of a token: the core runs from its first to its last alphanumeric character ("film."
/// → "", "film", ".").
fn split_core(token: &str) -> (&str, &str, &str) {
    let start = token.find(char::is_alphanumeric).unwrap_or(token.len());
    let end = token.rfind(char::is_alphanumeric).map_or(start, |i| i + token[i..].chars().next().map_or(1, char::len_utf8));
    (&token[..start], &token[start..end.max(start)], &token[end.max(start)..])
}

/// `word` with the first letter upper-cased when `like` starts with an upper-case letter.
fn match_case(word: &str, like: &str) -> String {
    if like.chars().next().is_some_and(char::is_uppercase) {
        let mut c = word.chars();
        c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
    } else {
        word.to_string()
    }
}

impl Lexicon<'_> {
    /// TextFooler's candidates for a token: WordNet synonyms, then embedding neighbours (≥ [`MIN_COS`], known to
    /// WordNet and sharing a part of speech with the word where WordNet gives one), at most
    /// [`TEXTFOOLER_CANDIDATES`], with the token's surrounding punctuation and initial capital kept.
    pub fn textfooler(&self, token: &str) -> Vec<String> {
        let (pre, core, suf) = split_core(token);
        if core.is_empty() {
            return Vec::new();
        }
        let lower = core.to_lowercase();
        let mut out: Vec<String> = Vec::new();
        let push = |w: &str, out: &mut Vec<String>| {
            let r = format!("{pre}{}{suf}", match_case(w, core));
            if w != lower && r != token && !out.contains(&r) && out.len() < TEXTFOOLER_CANDIDATES {
                out.push(r);
            }
        };
        for (w, _) in self.synonyms.synonyms(&lower) {
            push(w, &mut out);
        }
        let accept = |w: &str| !self.synonyms.pos(w).is_empty() && self.synonyms.compatible(&lower, w);
        for (w, _) in self.neighbours.nearest(&lower, TEXTFOOLER_CANDIDATES, MIN_COS, &accept) {
            push(&w, &mut out);
        }
        out
    }

    /// Sub-W's neighbours: the [`char_level::SUB_W_TOP_K`] nearest whole-word tokens that WordNet knows (no
    /// similarity floor, as TextAttack's TextBugger), the token's punctuation and capital kept.
    pub fn sub_w(&self, token: &str) -> Vec<String> {
        let (pre, core, suf) = split_core(token);
        let accept = |w: &str| !self.synonyms.pos(w).is_empty();
        self.neighbours
            .nearest(&core.to_lowercase(), char_level::SUB_W_TOP_K, -1.0, &accept)
            .into_iter()
            .map(|(w, _)| format!("{pre}{}{suf}", match_case(&w, core)))
            .collect()
    }
}

/// The random stream of one decision of one example.
fn stream(seed: u64, idx: u64, what: &str) -> SplitMix64 {
    SplitMix64::new(derive_seed(seed, &format!("attacks/{idx}/{what}")))
}

/// The word candidates of token `i` (`token`) for a recipe: per TextBugger bug one random instance (TextBugger
/// generates one bug of each kind and keeps the best), then TextFooler's synonyms; distinct, never the token.
fn word_candidates(recipe: Recipe, lex: &Lexicon, token: &str, seed: u64, idx: u64, i: usize) -> Vec<(String, Transformation)> {
    let (bugs, synonyms) = recipe.word_kinds();
    let mut out: Vec<(String, Transformation)> = Vec::new();
    if bugs {
        let near = |w: &str| lex.sub_w(w);
        let mut rng = stream(seed, idx, &format!("bugs/{i}"));
        for b in Bug::ALL {
            if let Some(r) = char_level::apply(b, token, &near, &mut rng) {
                if r != token && !out.iter().any(|(o, _)| *o == r) {
                    out.push((r, Transformation::of_bug(b)));
                }
            }
        }
    }
    if synonyms {
        for r in lex.textfooler(token) {
            if !out.iter().any(|(o, _)| *o == r) {
                out.push((r, Transformation::Synonym));
            }
        }
    }
    out
}

/// The distractor candidates of a recipe: each StressTest phrase once; CheckList's URL and handle
/// [`CHECKLIST_SAMPLES`] times each at the end and at the start, random strings from the seed.
fn distractor_candidates(recipe: Recipe, seed: u64, idx: u64) -> Vec<(Distractor, String, Placement)> {
    let mut rng = stream(seed, idx, "distractors");
    let mut out = Vec::new();
    for &d in recipe.distractors() {
        match d {
            Distractor::Url | Distractor::Handle => {
                for placement in [Placement::End, Placement::Start] {
                    for _ in 0..CHECKLIST_SAMPLES {
                        out.push((d, sentence_level::phrase(d, &mut rng), placement));
                    }
                }
            }
            _ => out.push((d, sentence_level::phrase(d, &mut rng), Placement::End)),
        }
    }
    out
}

/// Attacks one example (`label`: its gold label; `idx`: its id, for the random streams). Errors: an empty or blank
/// segment, a text over [`MAX_ATTACK_CHARS`], a bad config, or the victim failing.
pub async fn attack<V: Victim>(victim: &mut V, lex: &Lexicon<'_>, input: &Input, label: u32, idx: u64, cfg: &AttackConfig, seed: u64) -> Result<AttackRecord> {
    cfg.check()?;
    if input.a.trim().is_empty() || input.b.as_deref().is_some_and(|b| b.trim().is_empty()) {
        return Err(Error::Invalid("cannot attack an empty text".into()));
    }
    let chars = input.a.chars().count() + input.b.as_deref().map_or(0, |b| b.chars().count());
    if chars > MAX_ATTACK_CHARS {
        return Err(Error::Invalid(format!("the text has {chars} characters; attacks take at most {MAX_ATTACK_CHARS}")));
    }
    let original = input.edited();
    let tokens = text::tokenize(original);
    let n_words = tokens.iter().filter(|s| text::is_word(s.of(original))).count();
    let budget_words = word_budget(n_words, cfg.budget);
    let mut oracle = Oracle { victim, cache: HashMap::new(), queries: 0, max_queries: cfg.max_queries, label: label as usize };
    let p0 = oracle.ask(std::slice::from_ref(input)).await?.remove(0);
    let before = Verdict::of(p0.clone());
    let finish = |draft: &Draft, outcome: Outcome, p: Vec<f32>, queries: usize| {
        let (t, changes) = draft.render(original);
        let words_changed = changes.iter().filter(|c| c.kind.is_word_level()).count();
        AttackRecord {
            idx,
            label,
            outcome,
            original: input.clone(),
            perturbed: input.with_edited(t),
            segment: input.segment(),
            changes,
            words: n_words,
            words_changed,
            queries,
            before: before.clone(),
            after: Verdict::of(p),
        }
    };
    if before.prediction != label {
        return Ok(finish(&Draft::default(), Outcome::Skipped, p0, oracle.queries));
    }
    let mut draft = Draft::default();
    if cfg.budget == 0.0 {
        return Ok(finish(&draft, Outcome::Failed, p0, oracle.queries));
    }
    let render_input = |d: &Draft| input.with_edited(d.render(original).0);
    let attackable: Vec<usize> = (0..tokens.len()).filter(|&i| text::is_attackable(tokens[i].of(original))).collect();

    if cfg.recipe.is_random() {
        // Non-adaptive: the distractor, then words in a random order, each with a random candidate.
        let mut rng = stream(seed, idx, "random");
        let ds = distractor_candidates(cfg.recipe, seed, idx);
        if !ds.is_empty() {
            draft.distractor = Some(ds[rng.below(ds.len() as u64) as usize].clone());
        }
        let mut order = attackable.clone();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for i in order {
            if draft.edits.len() >= budget_words {
                break;
            }
            let cands = word_candidates(cfg.recipe, lex, tokens[i].of(original), seed, idx, i);
            if !cands.is_empty() {
                draft.edits.insert(i, cands[rng.below(cands.len() as u64) as usize].clone());
            }
        }
        let p = match oracle.ask(&[render_input(&draft)]).await?.pop() {
            Some(p) => p,
            None => return Ok(finish(&Draft::default(), Outcome::Failed, p0, oracle.queries)),
        };
        let outcome = if eval::argmax(&p) != label { Outcome::Succeeded } else { Outcome::Failed };
        return Ok(finish(&draft, outcome, p, oracle.queries));
    }

    let mut current = p0;
    let succeeded = |p: &[f32]| eval::argmax(p) != label;
    // Sentence level: the most damaging distractor, kept when it lowers the true label's probability.
    let ds = distractor_candidates(cfg.recipe, seed, idx);
    if !ds.is_empty() {
        let tries: Vec<Input> = ds.iter().map(|d| render_input(&Draft { edits: BTreeMap::new(), distractor: Some(d.clone()) })).collect();
        let probs = oracle.ask(&tries).await?;
        if let Some((k, p)) = best(&oracle, &probs) {
            if oracle.score(p) > oracle.score(&current) {
                draft.distractor = Some(ds[k].clone());
                current = p.clone();
            }
        }
    }
    if succeeded(&current) || budget_words == 0 || cfg.recipe.word_kinds() == (false, false) {
        let outcome = if succeeded(&current) { Outcome::Succeeded } else { Outcome::Failed };
        return Ok(finish(&draft, outcome, current, oracle.queries));
    }
    // Word importance by deletion (with the distractor in place, when there is one).
    let deleted: Vec<(usize, Input)> = attackable
        .iter()
        .filter_map(|&i| {
            let mut d = draft.clone();
            d.edits.insert(i, (String::new(), Transformation::Delete));
            let inp = render_input(&d);
            (!inp.edited().trim().is_empty()).then_some((i, inp))
        })
        .collect();
    let inputs: Vec<Input> = deleted.iter().map(|(_, inp)| inp.clone()).collect();
    let probs = oracle.ask(&inputs).await?;
    let base = oracle.score(&current);
    let mut ranked: Vec<(f64, usize)> = attackable.iter().map(|&i| (f64::NEG_INFINITY, i)).collect();
    for ((i, _), p) in deleted.iter().zip(&probs) {
        if let Some(r) = ranked.iter_mut().find(|r| r.1 == *i) {
            r.0 = oracle.score(p) - base;
        }
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in ranked {
        if draft.edits.len() >= budget_words || oracle.exhausted() {
            break;
        }
        let cands = word_candidates(cfg.recipe, lex, tokens[i].of(original), seed, idx, i);
        if cands.is_empty() {
            continue;
        }
        let tries: Vec<Input> = cands
            .iter()
            .map(|c| {
                let mut d = draft.clone();
                d.edits.insert(i, c.clone());
                render_input(&d)
            })
            .collect();
        let probs = oracle.ask(&tries).await?;
        if let Some((k, p)) = best(&oracle, &probs) {
            if oracle.score(p) > oracle.score(&current) {
                draft.edits.insert(i, cands[k].clone());
                current = p.clone();
                if succeeded(&current) {
                    break;
                }
            }
        }
    }
    let outcome = if succeeded(&current) { Outcome::Succeeded } else { Outcome::Failed };
    Ok(finish(&draft, outcome, current, oracle.queries))
}

/// The candidate with the highest goal score (the first on ties).
fn best<'p, V: Victim>(oracle: &Oracle<V>, probs: &'p [Vec<f32>]) -> Option<(usize, &'p Vec<f32>)> {
    let mut out: Option<(usize, &Vec<f32>)> = None;
    for (k, p) in probs.iter().enumerate() {
        if out.is_none_or(|(_, b)| oracle.score(p) > oracle.score(b)) {
            out = Some((k, p));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attacks::neighbours::tests::tokenizer;
    use crate::backend::HostTensor;
    use proptest::prelude::*;

    /// A victim whose belief in class 1 grows with every token of the text that is not a token of `original`, and
    /// with each `@` or `https`: a stand-in that any change moves, so the search has something to climb.
    struct Drift {
        original: HashSet<String>,
        calls: usize,
    }

    impl Drift {
        fn new(text: &str) -> Self {
            Drift { original: text.split_whitespace().map(str::to_string).collect(), calls: 0 }
        }
    }

    impl Victim for Drift {
        async fn probs(&mut self, inputs: &[Input]) -> Result<Vec<Vec<f32>>> {
            self.calls += inputs.len();
            Ok(inputs
                .iter()
                .map(|i| {
                    let t = i.b.as_deref().unwrap_or(&i.a);
                    let new = t.split_whitespace().filter(|w| !self.original.contains(*w)).count() as f32;
                    let p1 = (0.1 + 0.12 * new + 0.01 * (t.matches('@').count() + t.matches("https").count()) as f32).min(0.97);
                    vec![1.0 - p1, p1]
                })
                .collect())
        }
    }

    /// Words with embeddings: good ~ great ~ fine (a cone), film ~ movie, bad far from all.
    fn lexicon_parts() -> (SynonymTable, EmbeddingNeighbours) {
        let words = ["<unk>", "▁good", "▁great", "▁fine", "▁film", "▁movie", "▁bad", "▁th"];
        let tk = tokenizer(&words);
        #[rustfmt::skip]
        let e = HostTensor::f32(&[8, 3], vec![
            0.0, 0.0, 1.0,
            1.0, 0.1, 0.0,
            1.0, 0.2, 0.0,
            1.0, 0.0, 0.3,
            0.0, 1.0, 0.0,
            0.1, 1.0, 0.0,
            -1.0, 0.0, 0.0,
            1.0, 0.15, 0.0,
        ]).unwrap();
        let table = SynonymTable::parse("bad\ta\ta:poor\nfilm\tnv\tn:movie,picture;v:shoot\nfine\tan\ta:good,great;n:penalty\ngood\tan\ta:fine,great\ngreat\ta\t\nmovie\tn\t\n").unwrap();
        (table, EmbeddingNeighbours::new(&e, &tk).unwrap())
    }

    fn block<F: std::future::Future>(f: F) -> F::Output {
        pollster::block_on(f)
    }

    fn run(input: &Input, recipe: Recipe, budget: f64, seed: u64) -> AttackRecord {
        let (t, n) = lexicon_parts();
        let lex = Lexicon { synonyms: &t, neighbours: &n };
        let mut v = Drift::new(input.b.as_deref().unwrap_or(&input.a));
        let cfg = AttackConfig { recipe, budget, max_queries: 400 };
        block(attack(&mut v, &lex, input, 0, 7, &cfg, seed)).unwrap()
    }

    fn single(t: &str) -> Input {
        Input { a: t.into(), b: None }
    }

    #[test]
    fn lexicon_candidates() {
        let (t, n) = lexicon_parts();
        let lex = Lexicon { synonyms: &t, neighbours: &n };
        // WordNet first (in table order), then embedding neighbours known to WordNet with a shared POS (not "th").
        assert_eq!(lex.textfooler("good"), ["fine", "great"]);
        assert_eq!(lex.textfooler("Film."), ["Movie.", "Picture.", "Shoot."]);
        assert!(lex.textfooler("...").is_empty() && lex.textfooler("zzz").is_empty());
        // Sub-W: nearest known words, no similarity floor.
        assert_eq!(lex.sub_w("good")[..2], ["great".to_string(), "fine".to_string()]);
        assert_eq!(split_core("(film),"), ("(", "film", "),"));
        assert_eq!(split_core("--"), ("--", "", ""));
        assert_eq!(match_case("movie", "Film"), "Movie");
    }

    #[test]
    fn greedy_textfooler_hand_case() {
        // Drift: each token not in the original adds 0.12 to p(1), which starts at 0.1, so four new tokens flip it
        // (0.46 → 0.58). Deleting a word adds no token, so every importance is 0 and the words go in text order:
        // good → {fine: +0, great: +1} great; film → movie (+1, the first of three ties); fine → {good: +0,
        // great: +1} great; film → movie: flipped.
        let r = run(&single("a good film , a fine film and a good cast ."), Recipe::Textfooler, 1.0, 1);
        assert_eq!(r.outcome, Outcome::Succeeded);
        assert_eq!(r.words_changed, 4);
        assert_eq!(r.perturbed.a, "a great movie , a great movie and a good cast .");
        assert!((r.after.probs[1] - 0.58).abs() < 1e-6);
        assert!(r.after.probs[1] > 0.5 && r.before.prediction == 0 && r.after.prediction == 1);
        // Queries: the original, 8 deletions, then the candidates of the words visited.
        assert!(r.queries > 9 && r.queries <= 400);
        // With a budget of one word of eleven it cannot flip.
        let f = run(&single("a good film , a fine film and a good cast ."), Recipe::Textfooler, 0.05, 1);
        assert_eq!((f.outcome, f.words_changed), (Outcome::Failed, 1));
    }

    #[test]
    fn skipped_when_already_wrong_and_errors_on_bad_input() {
        let (t, n) = lexicon_parts();
        let lex = Lexicon { synonyms: &t, neighbours: &n };
        let mut v = Drift::new("a good film .");
        let cfg = AttackConfig::new(Recipe::Textbugger);
        // Label 1 while the victim says 0: skipped after one query, text unchanged.
        let r = block(attack(&mut v, &lex, &single("a good film ."), 1, 0, &cfg, 1)).unwrap();
        assert_eq!((r.outcome, r.queries, r.perturbed.a.as_str()), (Outcome::Skipped, 1, "a good film ."));
        for bad in ["", "   \t\n"] {
            let e = block(attack(&mut v, &lex, &single(bad), 0, 0, &cfg, 1)).unwrap_err().to_string();
            assert!(e.contains("empty"), "{e}");
            let e = block(attack(&mut v, &lex, &Input { a: "fine".into(), b: Some(bad.into()) }, 0, 0, &cfg, 1)).unwrap_err().to_string();
            assert!(e.contains("empty"), "{e}");
        }
        let long = "word ".repeat(MAX_ATTACK_CHARS / 5 + 1);
        let e = block(attack(&mut v, &lex, &single(&long), 0, 0, &cfg, 1)).unwrap_err().to_string();
        assert!(e.contains("at most 10000"), "{e}");
        let e = block(attack(&mut v, &lex, &single("a film"), 0, 0, &AttackConfig { budget: 1.5, ..cfg.clone() }, 1)).unwrap_err().to_string();
        assert!(e.contains("budget"), "{e}");
        let e = block(attack(&mut v, &lex, &single("a film"), 0, 0, &AttackConfig { max_queries: 0, ..cfg }, 1)).unwrap_err().to_string();
        assert!(e.contains("max_queries"), "{e}");
        assert!(Recipe::parse("textfooler").is_ok());
        assert!(Recipe::parse("deepwordbug").unwrap_err().to_string().contains("textbugger, textfooler"));
    }

    #[test]
    fn unicode_and_long_inputs() {
        let r = run(&single("naïve café films, très bien — 映画 は 良い ."), Recipe::Combined, 1.0, 3);
        assert_ne!(r.outcome, Outcome::Skipped);
        for c in &r.changes {
            assert_eq!(c.change.original.of(&r.original.a), c.change.before);
        }
        let long = "the good film is fine ".repeat(400); // 2,000 words, 8,800 characters.
        let r = run(&single(&long), Recipe::Textbugger, 0.5, 3);
        assert!(r.queries <= 400 && r.words_changed <= word_budget(r.words, 0.5));
        assert_eq!(r.words, 2000);
    }

    #[test]
    fn query_budget_is_respected() {
        let (t, n) = lexicon_parts();
        let lex = Lexicon { synonyms: &t, neighbours: &n };
        for max in [1, 2, 5, 13] {
            let text = "a good film , a fine film and a good cast .";
            let mut v = Drift::new(text);
            let cfg = AttackConfig { recipe: Recipe::Combined, budget: 1.0, max_queries: max };
            let r = block(attack(&mut v, &lex, &single(text), 0, 0, &cfg, 1)).unwrap();
            assert!(r.queries <= max && v.calls == r.queries, "{max}: {} {}", r.queries, v.calls);
        }
    }

    /// Whether `after` is what `kind` can make of `before`.
    fn is_instance(kind: Transformation, before: &str, after: &str, lex: &Lexicon) -> bool {
        let (b, a): (Vec<char>, Vec<char>) = (before.chars().collect(), after.chars().collect());
        let diff: Vec<usize> = (0..b.len().min(a.len())).filter(|&i| b[i] != a[i]).collect();
        let one_removed = |long: &[char], short: &[char]| (1..long.len().saturating_sub(1)).any(|i| long[..i] == short[..i] && long[i + 1..] == short[i..]);
        match kind {
            Transformation::Insert => a.len() == b.len() + 1 && (1..b.len()).any(|i| a[i] == ' ' && a[..i] == b[..i] && a[i + 1..] == b[i..]),
            Transformation::Delete => b.len() == a.len() + 1 && one_removed(&b, &a),
            Transformation::Swap => a.len() == b.len() && diff.len() == 2 && diff[1] == diff[0] + 1 && diff[0] > 0 && diff[1] < b.len() - 1 && a[diff[0]] == b[diff[1]] && a[diff[1]] == b[diff[0]],
            Transformation::SubC => a.len() == b.len() && diff.len() == 1 && char_level::sub_c_options(b[diff[0]]).contains(&a[diff[0]]),
            Transformation::SubW => lex.sub_w(before).contains(&after.to_string()),
            Transformation::Synonym => lex.textfooler(before).contains(&after.to_string()),
            Transformation::StressTautology => before.is_empty() && after.trim() == sentence_level::STRESS_TAUTOLOGY,
            Transformation::StressNegation => before.is_empty() && after.trim() == sentence_level::STRESS_NEGATION,
            Transformation::StressLength => before.is_empty() && after.trim() == [sentence_level::STRESS_TAUTOLOGY; 5].join(" "),
            Transformation::ChecklistUrl => before.is_empty() && after.trim().strip_prefix("https://t.co/").is_some_and(|s| s.len() == 6 && s.chars().all(|c| c.is_ascii_alphanumeric())),
            Transformation::ChecklistHandle => before.is_empty() && after.trim().strip_prefix('@').is_some_and(|s| s.len() == 6 && s.chars().all(|c| c.is_ascii_alphanumeric())),
            Transformation::AnyBug => false,
        }
    }

    fn texts() -> impl Strategy<Value = String> {
        let words = prop_oneof![
            "[a-z]{1,9}",
            Just("good".to_string()),
            Just("film".to_string()),
            Just("fine".to_string()),
            Just("the".to_string()),
            Just(".".to_string()),
            Just("'s".to_string()),
            Just("Film.".to_string()),
            Just("café".to_string())
        ];
        prop_oneof![
            4 => proptest::collection::vec(words, 1..20).prop_map(|w| w.join(" ")),
            1 => "\\PC{1,40}",
        ]
        .prop_filter("non-blank", |t| !t.trim().is_empty())
    }

    fn recipes() -> impl Strategy<Value = Recipe> {
        (0..Recipe::ALL.len()).prop_map(|i| Recipe::ALL[i])
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 160, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn attack_properties(text in texts(), first in proptest::option::of(texts()), recipe in recipes(), budget in prop_oneof![Just(0.0), 0.0f64..1.0, Just(1.0)], seed in any::<u64>()) {
            let (t, n) = lexicon_parts();
            let lex = Lexicon { synonyms: &t, neighbours: &n };
            let input = match &first { Some(a) => Input { a: a.clone(), b: Some(text.clone()) }, None => single(&text) };
            let r = run(&input, recipe, budget, seed);
            // Same seed, same attack.
            prop_assert_eq!(&run(&input, recipe, budget, seed), &r);
            // Budgets.
            prop_assert!(r.words_changed <= word_budget(r.words, budget));
            prop_assert!(r.queries <= 400);
            prop_assert_eq!(r.words_changed, r.changes.iter().filter(|c| c.kind.is_word_level()).count());
            // Zero budget is the identity.
            if budget == 0.0 {
                prop_assert_eq!(&r.perturbed, &input);
                prop_assert!(r.changes.is_empty());
            }
            // Pair tasks keep the first segment byte for byte.
            prop_assert_eq!(r.perturbed.a.as_bytes(), if first.is_some() { input.a.as_bytes() } else { r.perturbed.a.as_bytes() });
            prop_assert_eq!(r.perturbed.b.is_some(), first.is_some());
            // Only the recipe's edit types, each a true instance, each word at most once.
            let kinds = recipe.transformations();
            let (orig, new) = (input.b.as_deref().unwrap_or(&input.a), r.perturbed.b.as_deref().unwrap_or(&r.perturbed.a));
            let mut starts = HashSet::new();
            for c in &r.changes {
                prop_assert!(kinds.contains(&c.kind), "{:?} not in {:?}", c.kind, kinds);
                prop_assert!(is_instance(c.kind, &c.change.before, &c.change.after, &lex), "{:?}: {:?} -> {:?}", c.kind, c.change.before, c.change.after);
                prop_assert_eq!(c.change.original.of(orig), c.change.before.as_str());
                if c.kind.is_word_level() {
                    prop_assert!(text::is_attackable(&c.change.before));
                    prop_assert!(starts.insert(c.change.original.start));
                }
            }
            let distractor_inside = |s: Span| r.changes.iter().any(|d| !d.kind.is_word_level() && d.change.new.start > s.start && d.change.new.start < s.end);
            for c in &r.changes {
                if !distractor_inside(c.change.new) {
                    prop_assert_eq!(c.change.new.of(new), c.change.after.as_str());
                }
            }
            // Outcome and verdicts agree.
            match r.outcome {
                Outcome::Skipped => prop_assert!(r.before.prediction != 0 && r.perturbed == input),
                Outcome::Succeeded => prop_assert!(r.before.prediction == 0 && r.after.prediction != 0),
                Outcome::Failed => prop_assert!(r.before.prediction == 0 && r.after.prediction == 0),
            }
            if recipe.is_random() {
                prop_assert!(r.queries <= 2);
            }
        }
    }

    #[test]
    fn different_seeds_give_different_texts() {
        let text = "the movie is a charming and often affecting journey with a fine cast and great music .";
        for recipe in [Recipe::Textbugger, Recipe::Checklist, Recipe::RandomTextbugger, Recipe::RandomTextfooler, Recipe::RandomChecklist, Recipe::RandomCombined] {
            let texts: HashSet<String> = (0..6).map(|s| run(&single(text), recipe, 0.3, s).perturbed.a).collect();
            assert!(texts.len() >= 3, "{recipe:?}: {texts:?}");
        }
        // TextFooler and StressTest make no random choice: the seed changes nothing.
        for recipe in [Recipe::Textfooler, Recipe::StressTest] {
            let texts: HashSet<String> = (0..4).map(|s| run(&single(text), recipe, 0.3, s).perturbed.a).collect();
            assert_eq!(texts.len(), 1, "{recipe:?}");
        }
    }

    #[test]
    fn distractor_spans_map_back_to_the_original() {
        let d = Draft {
            edits: BTreeMap::from([(1, ("greatest".to_string(), Transformation::Synonym)), (2, ("movie.".to_string(), Transformation::Synonym))]),
            distractor: Some((Distractor::Tautology, sentence_level::STRESS_TAUTOLOGY.into(), Placement::End)),
        };
        let (t, ch) = d.render("a good film.");
        // The tautology goes before the final "." which sits inside the edited last word.
        assert_eq!(t, "a greatest movie and true is true .");
        assert_eq!(ch.len(), 3);
        assert_eq!(ch[0].change.new.of(&t), "greatest");
        let w = Draft { edits: BTreeMap::from([(1, ("greatest".to_string(), Transformation::Synonym))]), distractor: Some((Distractor::Url, "https://t.co/abcdef".into(), Placement::End)) };
        let (t, ch) = w.render("a good film .");
        assert_eq!(t, "a greatest film . https://t.co/abcdef");
        assert_eq!(ch[1].change.original, Span { start: 13, end: 13 });
        assert_eq!(ch[1].change.new.of(&t), " https://t.co/abcdef");
        let s = Draft { edits: BTreeMap::from([(0, ("an".to_string(), Transformation::Synonym))]), distractor: Some((Distractor::Handle, "@abcdef".into(), Placement::Start)) };
        let (t, ch) = s.render("a film");
        assert_eq!(t, "@abcdef an film");
        assert_eq!(ch[0].change.new.of(&t), "@abcdef ");
        assert_eq!(ch[1].change.new.of(&t), "an");
        assert_eq!(ch[1].change.original.of("a film"), "a");
    }
}
