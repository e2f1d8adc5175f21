//! Client-side adversarial attacks, part 1: the transformations and a random (non-adaptive) baseline.
//!
//! - [`text`]: words of GLUE-style pre-tokenised text, stop words, edits with byte spans for display.
//! - [`char_level`]: TextBugger's five bugs (Li et al., NDSS 2019).
//! - [`sentence_level`]: AdvGLUE's model-free sentence-level distractors, StressTest and CheckList.
//!
//! Everything is a pure function of its input and a seed ([`crate::rng`]), so the same seed gives the same attack on
//! every platform. The model-guided search (TextBugger's word-importance ranking and bug choice), Sub-W's
//! neighbours from the model's embeddings, the metrics and the CLI come later.

pub mod char_level;
pub mod metrics;
pub mod neighbours;
pub mod search;
pub mod sentence_level;
pub mod synonyms;
pub mod text;

use serde::{Deserialize, Serialize};

use crate::rng::{derive_seed, SplitMix64};
use char_level::Bug;
use sentence_level::{Distractor, Placement, Segment};
use text::{Change, Edit};

/// A transformation by the name an experiment spec will use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Transformation {
    /// TextBugger's Insert (a space inside the word).
    #[serde(rename = "textbugger_insert")]
    Insert,
    /// TextBugger's Delete (an interior character).
    #[serde(rename = "textbugger_delete")]
    Delete,
    /// TextBugger's Swap (two adjacent interior characters).
    #[serde(rename = "textbugger_swap")]
    Swap,
    /// TextBugger's Sub-C (look-alike or keyboard-neighbour character).
    #[serde(rename = "textbugger_sub_c")]
    SubC,
    /// TextBugger's Sub-W (a nearest-neighbour word; needs a neighbour source).
    #[serde(rename = "textbugger_sub_w")]
    SubW,
    /// Any TextBugger bug: per word, one uniformly among those that apply (the random stand-in for TextBugger's choice
    /// of the most damaging bug).
    #[serde(rename = "textbugger")]
    AnyBug,
    /// TextFooler's synonym swap (Jin et al., AAAI 2020): a WordNet synonym or an embedding neighbour of the word.
    #[serde(rename = "textfooler_synonym")]
    Synonym,
    #[serde(rename = "stress_test_tautology")]
    StressTautology,
    #[serde(rename = "stress_test_negation")]
    StressNegation,
    #[serde(rename = "stress_test_length")]
    StressLength,
    /// CheckList's random URL, appended at the end.
    #[serde(rename = "checklist_url")]
    ChecklistUrl,
    /// CheckList's random handle, appended at the end.
    #[serde(rename = "checklist_handle")]
    ChecklistHandle,
}

impl Transformation {
    pub const ALL: [Transformation; 12] = [
        Transformation::Insert,
        Transformation::Delete,
        Transformation::Swap,
        Transformation::SubC,
        Transformation::SubW,
        Transformation::AnyBug,
        Transformation::Synonym,
        Transformation::StressTautology,
        Transformation::StressNegation,
        Transformation::StressLength,
        Transformation::ChecklistUrl,
        Transformation::ChecklistHandle,
    ];

    /// The name in a spec (the serde name).
    pub fn name(self) -> &'static str {
        match self {
            Transformation::Insert => "textbugger_insert",
            Transformation::Delete => "textbugger_delete",
            Transformation::Swap => "textbugger_swap",
            Transformation::SubC => "textbugger_sub_c",
            Transformation::SubW => "textbugger_sub_w",
            Transformation::AnyBug => "textbugger",
            Transformation::Synonym => "textfooler_synonym",
            Transformation::StressTautology => "stress_test_tautology",
            Transformation::StressNegation => "stress_test_negation",
            Transformation::StressLength => "stress_test_length",
            Transformation::ChecklistUrl => "checklist_url",
            Transformation::ChecklistHandle => "checklist_handle",
        }
    }

    /// The TextBugger bugs this transformation draws from; empty for sentence-level ones.
    pub fn bugs(self) -> &'static [Bug] {
        match self {
            Transformation::Insert => &[Bug::Insert],
            Transformation::Delete => &[Bug::Delete],
            Transformation::Swap => &[Bug::Swap],
            Transformation::SubC => &[Bug::SubC],
            Transformation::SubW => &[Bug::SubW],
            Transformation::AnyBug => &Bug::ALL,
            _ => &[],
        }
    }

    /// The sentence-level distractor, `None` for word-level transformations.
    pub fn distractor(self) -> Option<Distractor> {
        match self {
            Transformation::StressTautology => Some(Distractor::Tautology),
            Transformation::StressNegation => Some(Distractor::Negation),
            Transformation::StressLength => Some(Distractor::LengthMismatch),
            Transformation::ChecklistUrl => Some(Distractor::Url),
            Transformation::ChecklistHandle => Some(Distractor::Handle),
            _ => None,
        }
    }

    pub fn is_word_level(self) -> bool {
        self.distractor().is_none()
    }

    /// The transformation of a distractor.
    pub fn of_distractor(d: Distractor) -> Transformation {
        match d {
            Distractor::Tautology => Transformation::StressTautology,
            Distractor::Negation => Transformation::StressNegation,
            Distractor::LengthMismatch => Transformation::StressLength,
            Distractor::Url => Transformation::ChecklistUrl,
            Distractor::Handle => Transformation::ChecklistHandle,
        }
    }

    /// The transformation of a TextBugger bug.
    pub fn of_bug(b: Bug) -> Transformation {
        match b {
            Bug::Insert => Transformation::Insert,
            Bug::Delete => Transformation::Delete,
            Bug::Swap => Transformation::Swap,
            Bug::SubC => Transformation::SubC,
            Bug::SubW => Transformation::SubW,
        }
    }

    /// Every distinct replacement of token `word_index` of `text` (for the model-guided search): empty for a
    /// sentence-level transformation, an index past the end, punctuation or a stop word.
    pub fn candidates(self, text: &str, word_index: usize, near: &dyn Fn(&str) -> Vec<String>) -> Vec<String> {
        let Some(span) = text::tokenize(text).get(word_index).copied() else { return Vec::new() };
        let word = span.of(text);
        if !text::is_attackable(word) {
            return Vec::new();
        }
        let mut out: Vec<String> = Vec::new();
        if self == Transformation::Synonym {
            for c in near(word) {
                if c != word && !c.is_empty() && !out.contains(&c) {
                    out.push(c);
                }
            }
        }
        for &bug in self.bugs() {
            for c in char_level::candidates(bug, word, near) {
                if !out.contains(&c) {
                    out.push(c);
                }
            }
        }
        out
    }

    /// One random replacement of `word`, `None` where no bug of this transformation applies (for
    /// [`Transformation::Synonym`], `near` supplies the synonyms).
    pub fn apply_word(self, word: &str, near: &dyn Fn(&str) -> Vec<String>, rng: &mut SplitMix64) -> Option<String> {
        if self == Transformation::Synonym {
            let c: Vec<String> = near(word).into_iter().filter(|s| s != word && !s.is_empty()).collect();
            return (!c.is_empty()).then(|| c[rng.below(c.len() as u64) as usize].clone());
        }
        let bugs = self.bugs();
        if bugs.len() == 1 {
            return char_level::apply(bugs[0], word, near, rng);
        }
        // Any bug: the applicable ones, then one of them uniformly.
        let applicable: Vec<Bug> = bugs.iter().copied().filter(|&b| char_level::applies(b, word, near)).collect();
        if applicable.is_empty() {
            return None;
        }
        let b = applicable[rng.below(applicable.len() as u64) as usize];
        char_level::apply(b, word, near, rng)
    }
}

/// An attacked text: the new text, its changes (original and new byte spans) and the number of words changed (0 for
/// a sentence-level distractor, which only inserts).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Perturbed {
    pub text: String,
    pub changes: Vec<Change>,
    pub words_changed: usize,
}

/// The most words a budget allows: `⌈share × words⌉` with `share` clamped to [0, 1] (NaN counts as 0), where
/// `words` counts the word tokens ([`text::is_word`]) of the text, stop words included.
pub fn word_budget(words: usize, share: f64) -> usize {
    let s = if share.is_nan() { 0.0 } else { share.clamp(0.0, 1.0) };
    ((s * words as f64).ceil() as usize).min(words)
}

/// The label of the random baseline's stream (for [`derive_seed`]).
const RANDOM_ATTACK_LABEL: &str = "attacks/random";

/// The random baseline with no Sub-W neighbours (Sub-W never applies; [`Transformation::AnyBug`] uses the other four).
pub fn random_attack(text: &str, t: Transformation, budget_share: f64, seed: u64) -> Perturbed {
    random_attack_with(text, t, budget_share, seed, &|_| Vec::new())
}

/// The random (non-adaptive) baseline. Word level: visits the attackable words (words, not stop words) in a seeded
/// uniformly random order and changes each one the transformation applies to, until [`word_budget`] words are
/// changed; no word is changed twice, every other byte is kept. Sentence level: adds the distractor once (the
/// budget does not apply). `near` supplies Sub-W's neighbours.
pub fn random_attack_with(text: &str, t: Transformation, budget_share: f64, seed: u64, near: &dyn Fn(&str) -> Vec<String>) -> Perturbed {
    let mut rng = SplitMix64::new(derive_seed(seed, RANDOM_ATTACK_LABEL));
    if let Some(d) = t.distractor() {
        let (out, change) = sentence_level::distract(text, d, Placement::End, &mut rng);
        return Perturbed { text: out, changes: vec![change], words_changed: 0 };
    }
    let tokens = text::tokenize(text);
    let n_words = tokens.iter().filter(|s| text::is_word(s.of(text))).count();
    let budget = word_budget(n_words, budget_share);
    let mut order: Vec<usize> = (0..tokens.len()).filter(|&i| text::is_attackable(tokens[i].of(text))).collect();
    // Fisher-Yates.
    for i in (1..order.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    let mut edits = Vec::new();
    for i in order {
        if edits.len() == budget {
            break;
        }
        if let Some(r) = t.apply_word(tokens[i].of(text), near, &mut rng) {
            edits.push(Edit { index: i, replacement: r });
        }
    }
    let (out, changes) = text::apply_edits(text, &edits).expect("edits name distinct tokens of this text");
    Perturbed { text: out, words_changed: changes.len(), changes }
}

/// An attacked pair: only `segment` changed; `changes` refer to that segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerturbedPair {
    pub first: String,
    pub second: String,
    pub segment: Segment,
    pub changes: Vec<Change>,
    pub words_changed: usize,
}

/// [`random_attack_with`] on one segment of a pair; the other segment is copied unchanged.
pub fn random_attack_pair(first: &str, second: &str, segment: Segment, t: Transformation, budget_share: f64, seed: u64, near: &dyn Fn(&str) -> Vec<String>) -> PerturbedPair {
    let target = match segment {
        Segment::First => first,
        Segment::Second => second,
    };
    let p = random_attack_with(target, t, budget_share, seed, near);
    let (a, b) = match segment {
        Segment::First => (p.text, second.to_string()),
        Segment::Second => (first.to_string(), p.text),
    };
    PerturbedPair { first: a, second: b, segment, changes: p.changes, words_changed: p.words_changed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SST: &str = "it 's a charming and often affecting journey . ";

    #[test]
    fn names_round_trip_through_serde() {
        for t in Transformation::ALL {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.name()));
            assert_eq!(serde_json::from_str::<Transformation>(&json).unwrap(), t);
            assert_ne!(t.is_word_level(), t.distractor().is_some());
        }
        assert!(serde_json::from_str::<Transformation>("\"textfooler\"").is_err());
    }

    #[test]
    fn budget() {
        assert_eq!(word_budget(10, 0.1), 1);
        assert_eq!(word_budget(10, 0.15), 2);
        assert_eq!(word_budget(7, 0.0), 0);
        assert_eq!(word_budget(7, f64::NAN), 0);
        assert_eq!(word_budget(7, 5.0), 7);
        assert_eq!(word_budget(0, 0.5), 0);
    }

    #[test]
    fn random_attack_hand_case() {
        // Attackable: charming, often, affecting, journey (it, 's, a, and are stop words; . is punctuation).
        let p = random_attack(SST, Transformation::Delete, 1.0, 7);
        assert_eq!(p.words_changed, 4);
        let before: Vec<&str> = p.changes.iter().map(|c| c.before.as_str()).collect();
        assert_eq!(before, ["charming", "often", "affecting", "journey"]);
        assert!(p.text.starts_with("it 's a ") && p.text.ends_with(" . "));
        let one = random_attack(SST, Transformation::Swap, 0.1, 7);
        assert_eq!(one.words_changed, 1);
        assert_eq!(random_attack(SST, Transformation::SubW, 1.0, 7).text, SST);
        let near = |w: &str| if w == "journey" { vec!["trip".to_string()] } else { Vec::new() };
        assert_eq!(random_attack_with(SST, Transformation::SubW, 1.0, 7, &near).text, "it 's a charming and often affecting trip . ");
        let s = random_attack(SST, Transformation::StressTautology, 0.0, 7);
        assert_eq!(s.text, "it 's a charming and often affecting journey and true is true . ");
        assert_eq!(s.words_changed, 0);
        assert_eq!(random_attack("", Transformation::AnyBug, 1.0, 1).text, "");
        assert_eq!(random_attack(". , !", Transformation::AnyBug, 1.0, 1).words_changed, 0);
    }

    #[test]
    fn golden_outputs() {
        // Pinned outputs: a change here changes every recorded attack of a seed.
        assert_eq!(random_attack(SST, Transformation::AnyBug, 0.5, 42).text, "it 's a chzrming and of ten afecting jojrney . ");
        assert_eq!(random_attack(SST, Transformation::ChecklistUrl, 0.0, 42).text, "it 's a charming and often affecting journey . https://t.co/oWEns8 ");
    }

    #[test]
    fn candidates_by_word_index() {
        let none = |_: &str| Vec::new();
        assert_eq!(Transformation::Insert.candidates("a fine film .", 2, &none), ["f ilm", "fi lm", "fil m"]);
        assert!(Transformation::Insert.candidates("a fine film .", 0, &none).is_empty());
        assert!(Transformation::Insert.candidates("a fine film .", 3, &none).is_empty());
        assert!(Transformation::Insert.candidates("a fine film .", 9, &none).is_empty());
        assert!(Transformation::ChecklistUrl.candidates("a fine film .", 2, &none).is_empty());
        let all = Transformation::AnyBug.candidates("a fine film .", 2, &none);
        assert!(all.contains(&"fim".to_string()) && all.contains(&"flim".to_string()) && all.contains(&"fi1m".to_string()));
    }

    fn texts() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::collection::vec(prop_oneof!["[a-z]{1,9}", Just("the".to_string()), Just(".".to_string()), Just("'s".to_string()), Just("n't".to_string()), Just(",".to_string())], 0..25).prop_map(|w| w.join(" ")),
            "\\PC{0,80}",
            "[a-zé ]{0,40}",
            "[a-z]{500,600}( [a-z]{1,3}){0,3}",
        ]
    }

    fn t_strategy() -> impl Strategy<Value = Transformation> {
        (0usize..Transformation::ALL.len()).prop_map(|i| Transformation::ALL[i])
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn random_attack_properties(text in texts(), t in t_strategy(), share in 0.0f64..1.0, seed in any::<u64>()) {
            let near = |w: &str| vec![format!("{w}x"), w.to_uppercase()];
            let p = random_attack_with(&text, t, share, seed, &near);
            prop_assert_eq!(&random_attack_with(&text, t, share, seed, &near), &p);
            let tokens = text::tokenize(&text);
            let n_words = tokens.iter().filter(|s| text::is_word(s.of(&text))).count();
            prop_assert!(p.words_changed <= word_budget(n_words, share));
            prop_assert_eq!(p.words_changed, if t.is_word_level() { p.changes.len() } else { 0 });
            for c in &p.changes {
                prop_assert_eq!(c.original.of(&text), c.before.as_str());
                prop_assert_eq!(c.new.of(&p.text), c.after.as_str());
                prop_assert_ne!(&c.before, &c.after);
                if t.is_word_level() {
                    prop_assert!(text::is_attackable(&c.before));
                }
            }
            // Outside the changes, the bytes are the original ones in order.
            let mut kept_old = String::new();
            let mut kept_new = String::new();
            let (mut o, mut n) = (0, 0);
            for c in &p.changes {
                kept_old.push_str(&text[o..c.original.start]);
                kept_new.push_str(&p.text[n..c.new.start]);
                o = c.original.end;
                n = c.new.end;
            }
            kept_old.push_str(&text[o..]);
            kept_new.push_str(&p.text[n..]);
            prop_assert_eq!(kept_old, kept_new);
            // Each original token is changed at most once.
            let mut starts: Vec<usize> = p.changes.iter().map(|c| c.original.start).collect();
            starts.dedup();
            prop_assert_eq!(starts.len(), p.changes.len());
        }

        #[test]
        fn pair_attack_keeps_other_segment(a in texts(), b in texts(), t in t_strategy(), seed in any::<u64>(), second in any::<bool>()) {
            let seg = if second { Segment::Second } else { Segment::First };
            let p = random_attack_pair(&a, &b, seg, t, 0.5, seed, &|_| Vec::new());
            match seg {
                Segment::First => prop_assert_eq!(p.second.as_bytes(), b.as_bytes()),
                Segment::Second => prop_assert_eq!(p.first.as_bytes(), a.as_bytes()),
            }
            let edited = if second { &p.second } else { &p.first };
            prop_assert_eq!(edited, &random_attack(if second { &b } else { &a }, t, 0.5, seed).text);
        }
    }
}
