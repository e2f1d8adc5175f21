//! AdvGLUE's sentence-level distractors that need no model (Wang et al., "Adversarial GLUE", NeurIPS 2021 Datasets
//! and Benchmarks): StressTest's tautologies (Naik et al., "Stress Test Evaluation for Natural Language Inference",
//! COLING 2018) and CheckList's irrelevant URLs and handles (Ribeiro et al., "Beyond Accuracy: Behavioral Testing of
//! NLP Models with CheckList", ACL 2020).
//!
//! Every distractor is a pure insertion: all bytes of the original text survive, in order, and the one [`Change`]
//! has an empty original span at the insertion point. The forms follow the AdvGLUE dev examples labelled
//! `StressTest` / `CheckList` at the sentence level (`dev_ann.json`): the tautology goes before the sentence's final
//! `.`, `!` or `?` ("holden caulfield did it better and true is true ."), the URL or handle at the start or the end
//! ("https://t.co/Fckn0a", "@U7MdXw"). In pair tasks AdvGLUE edits either segment; [`distract_pair`] takes which.

use serde::{Deserialize, Serialize};

use super::text::{Change, Span};
use crate::rng::SplitMix64;

/// StressTest's word-overlap tautology (Naik et al., COLING 2018).
pub const STRESS_TAUTOLOGY: &str = "and true is true";
/// StressTest's negation tautology (Naik et al., COLING 2018).
pub const STRESS_NEGATION: &str = "and false is not true";
/// StressTest's length mismatch repeats the tautology five times (Naik et al., COLING 2018).
pub const STRESS_LENGTH_REPEATS: usize = 5;
/// CheckList's random URL prefix (Ribeiro et al., ACL 2020: `https://t.co/` + a random string).
pub const CHECKLIST_URL_PREFIX: &str = "https://t.co/";
/// Length of CheckList's random URL and handle strings: 6 ASCII letters or digits, as in CheckList's robustness
/// tests and every AdvGLUE dev example ("https://t.co/1GPp0U", "@OFLhmi").
pub const CHECKLIST_RANDOM_CHARS: usize = 6;
/// CheckList's random strings draw from ASCII letters and digits (Ribeiro et al., ACL 2020).
const ALPHANUMERIC: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// A sentence-level distractor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Distractor {
    /// "and true is true" (StressTest word overlap).
    Tautology,
    /// "and false is not true" (StressTest negation).
    Negation,
    /// "and true is true" five times (StressTest length mismatch).
    LengthMismatch,
    /// `https://t.co/` + 6 random alphanumerics (CheckList).
    Url,
    /// `@` + 6 random alphanumerics (CheckList).
    Handle,
}

/// Where CheckList's URL or handle goes (AdvGLUE has both); StressTest phrases always go before the final punctuation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    Start,
    End,
}

/// Which segment of a sentence pair is edited (the other stays byte-identical).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Segment {
    First,
    Second,
}

fn random_alphanumerics(n: usize, rng: &mut SplitMix64) -> String {
    (0..n).map(|_| ALPHANUMERIC[rng.below(ALPHANUMERIC.len() as u64) as usize] as char).collect()
}

/// A random CheckList URL, `https://t.co/` + 6 alphanumerics.
pub fn random_url(rng: &mut SplitMix64) -> String {
    format!("{CHECKLIST_URL_PREFIX}{}", random_alphanumerics(CHECKLIST_RANDOM_CHARS, rng))
}

/// A random CheckList handle, `@` + 6 alphanumerics.
pub fn random_handle(rng: &mut SplitMix64) -> String {
    format!("@{}", random_alphanumerics(CHECKLIST_RANDOM_CHARS, rng))
}

/// The phrase a distractor adds (random for URL and handle).
pub fn phrase(d: Distractor, rng: &mut SplitMix64) -> String {
    match d {
        Distractor::Tautology => STRESS_TAUTOLOGY.to_string(),
        Distractor::Negation => STRESS_NEGATION.to_string(),
        Distractor::LengthMismatch => vec![STRESS_TAUTOLOGY; STRESS_LENGTH_REPEATS].join(" "),
        Distractor::Url => random_url(rng),
        Distractor::Handle => random_handle(rng),
    }
}

fn insert_at(text: &str, at: usize, inserted: String) -> (String, Change) {
    let mut out = String::with_capacity(text.len() + inserted.len());
    out.push_str(&text[..at]);
    out.push_str(&inserted);
    out.push_str(&text[at..]);
    let change = Change { original: Span { start: at, end: at }, new: Span { start: at, end: at + inserted.len() }, before: String::new(), after: inserted };
    (out, change)
}

/// Add `d` to `text`. StressTest phrases go before a final `.`, `!` or `?` (trailing whitespace ignored), else at
/// the end of the text; URL and handle go at `placement`. A space separates the phrase from the text on each side
/// where none is there already.
pub fn distract(text: &str, d: Distractor, placement: Placement, rng: &mut SplitMix64) -> (String, Change) {
    place(text, d, &phrase(d, rng), placement)
}

/// [`distract`] with the phrase given (`p`: one [`phrase`] of `d`), for a search that draws phrases first and renders
/// them later.
pub fn place(text: &str, d: Distractor, p: &str, placement: Placement) -> (String, Change) {
    let trimmed = text.trim_end();
    let stress = matches!(d, Distractor::Tautology | Distractor::Negation | Distractor::LengthMismatch);
    if !stress && placement == Placement::Start {
        let sep = if text.is_empty() || text.starts_with(char::is_whitespace) { "" } else { " " };
        return insert_at(text, 0, format!("{p}{sep}"));
    }
    let at = match trimmed.chars().last() {
        Some(c @ ('.' | '!' | '?')) if stress => trimmed.len() - c.len_utf8(),
        _ => trimmed.len(),
    };
    let before = &text[..at];
    let lead = if before.is_empty() || before.ends_with(char::is_whitespace) { "" } else { " " };
    let trail = if at < trimmed.len() { " " } else { "" };
    insert_at(text, at, format!("{lead}{p}{trail}"))
}

/// [`distract`] on one segment of a pair; the other segment is returned unchanged. The change's spans refer to the
/// edited segment.
pub fn distract_pair(first: &str, second: &str, segment: Segment, d: Distractor, placement: Placement, rng: &mut SplitMix64) -> (String, String, Change) {
    match segment {
        Segment::First => {
            let (a, c) = distract(first, d, placement, rng);
            (a, second.to_string(), c)
        }
        Segment::Second => {
            let (b, c) = distract(second, d, placement, rng);
            (first.to_string(), b, c)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(text: &str, d: Distractor, p: Placement) -> String {
        distract(text, d, p, &mut SplitMix64::new(9)).0
    }

    #[test]
    fn stress_test_forms() {
        assert_eq!(run("holden caulfield did it better . ", Distractor::Tautology, Placement::End), "holden caulfield did it better and true is true . ");
        assert_eq!(run("good old-fashioned slash-and-hack is back ! ", Distractor::Negation, Placement::End), "good old-fashioned slash-and-hack is back and false is not true ! ");
        assert_eq!(run("unflinchingly bleak and desperate ", Distractor::Tautology, Placement::End), "unflinchingly bleak and desperate and true is true ");
        assert_eq!(run("The whole countryside is scattered with small villages.", Distractor::Negation, Placement::End), "The whole countryside is scattered with small villages and false is not true .");
        assert_eq!(run("Which company is the gallery named after?", Distractor::Tautology, Placement::Start), "Which company is the gallery named after and true is true ?");
        let five = run("holden caulfield did it better .", Distractor::LengthMismatch, Placement::End);
        assert_eq!(five, format!("holden caulfield did it better {} .", ["and true is true"; 5].join(" ")));
        assert_eq!(five.matches("and true is true").count(), 5);
        assert_eq!(run("", Distractor::Tautology, Placement::End), "and true is true");
        assert_eq!(run(".", Distractor::Tautology, Placement::End), "and true is true .");
    }

    #[test]
    fn checklist_forms() {
        let t = "holden caulfield did it better . ";
        let url = run(t, Distractor::Url, Placement::End);
        // Inserted before the trailing space, which stays last.
        let tail = url.strip_prefix(t).unwrap().strip_prefix(CHECKLIST_URL_PREFIX).unwrap().strip_suffix(' ').unwrap();
        assert_eq!(tail.len(), 6);
        assert!(tail.bytes().all(|b| b.is_ascii_alphanumeric()));
        let h = run("the iditarod lasts for days .", Distractor::Handle, Placement::End);
        let tail = h.strip_prefix("the iditarod lasts for days . @").unwrap();
        assert!(tail.len() == 6 && tail.bytes().all(|b| b.is_ascii_alphanumeric()));
        let s = run("the iditarod lasts for days .", Distractor::Url, Placement::Start);
        assert!(s.starts_with("https://t.co/") && s.ends_with(" the iditarod lasts for days .") && s.len() == 13 + 6 + 1 + 29);
        assert_eq!(random_url(&mut SplitMix64::new(1)), random_url(&mut SplitMix64::new(1)));
        assert_ne!(random_url(&mut SplitMix64::new(1)), random_url(&mut SplitMix64::new(2)));
        assert_eq!(run("", Distractor::Handle, Placement::Start).len(), 7);
    }

    #[test]
    fn pairs_edit_one_segment() {
        let (a, b, c) = distract_pair("Mice given wine lived longer.", "Mice fed with wine lived longer.", Segment::Second, Distractor::Negation, Placement::End, &mut SplitMix64::new(3));
        assert_eq!(a, "Mice given wine lived longer.");
        assert_eq!(b, "Mice fed with wine lived longer and false is not true .");
        assert_eq!(c.new.of(&b), " and false is not true ");
        let (a, b, _) = distract_pair("q ?", "s .", Segment::First, Distractor::Handle, Placement::Start, &mut SplitMix64::new(3));
        assert!(a.starts_with('@') && a.ends_with(" q ?"));
        assert_eq!(b, "s .");
    }

    const ALL: [Distractor; 5] = [Distractor::Tautology, Distractor::Negation, Distractor::LengthMismatch, Distractor::Url, Distractor::Handle];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn distractors_only_insert(text in "\\PC{0,60}|[a-z .!?]{0,60}", seed in any::<u64>(), di in 0usize..5, start in any::<bool>()) {
            let d = ALL[di];
            let placement = if start { Placement::Start } else { Placement::End };
            let (out, c) = distract(&text, d, placement, &mut SplitMix64::new(seed));
            prop_assert_eq!(&distract(&text, d, placement, &mut SplitMix64::new(seed)).0, &out);
            prop_assert!(c.original.is_empty() && c.before.is_empty());
            prop_assert_eq!(c.new.of(&out), c.after.as_str());
            prop_assert_eq!(format!("{}{}", &out[..c.new.start], &out[c.new.end..]), text.clone());
            prop_assert_eq!(&text[..c.original.start], &out[..c.new.start]);
            prop_assert!(c.after.contains(phrase(d, &mut SplitMix64::new(seed)).as_str()));
        }

        #[test]
        fn pair_other_segment_is_byte_identical(a in "\\PC{0,30}", b in "\\PC{0,30}", seed in any::<u64>(), di in 0usize..5, second in any::<bool>()) {
            let seg = if second { Segment::Second } else { Segment::First };
            let (x, y, _) = distract_pair(&a, &b, seg, ALL[di], Placement::End, &mut SplitMix64::new(seed));
            if second { prop_assert_eq!(x, a); prop_assert_ne!(y, b); } else { prop_assert_eq!(y, b); prop_assert_ne!(x, a); }
        }
    }
}
