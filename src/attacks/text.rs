//! Words of GLUE-style pre-tokenised text and edits to them.
//!
//! GLUE's SST-2 sentences are already tokenised: words and punctuation are separated by single spaces,
//! clitics are their own tokens ("it 's a fine film ."). A token here is a maximal run of non-whitespace
//! characters; the whitespace between tokens is kept byte for byte, so an edit changes exactly the bytes of the
//! tokens it names. Text that is not pre-tokenised (MNLI, QNLI, RTE: "diet, a study shows.") is split the same way;
//! there punctuation stays attached to its word and the character-level bugs see it as part of the word.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A byte range `[start, end)` of a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The bytes of `text` this span covers.
    pub fn of<'a>(&self, text: &'a str) -> &'a str {
        &text[self.start..self.end]
    }
}

/// The tokens of `text`: maximal runs of non-whitespace characters, in order, as byte spans.
pub fn tokenize(text: &str) -> Vec<Span> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push(Span { start: s, end: i });
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(Span { start: s, end: text.len() });
    }
    out
}

/// A token that is a word, not punctuation: it holds at least one letter ("film", "'s", "n't", "foot-dragging",
/// "3rd"); "." "," "--" "..." "(" "1.8" are not words.
pub fn is_word(token: &str) -> bool {
    token.chars().any(char::is_alphabetic)
}

/// English stop words: the NLTK English stop-word list (`nltk_data` corpora/stopwords/english, 179 words), the
/// list TextFooler (Jin et al., AAAI 2020) and TextAttack's word-level recipes also skip. The last seven entries are
/// ours: SST-2's tokeniser splits clitics off ("it 's", "does n't"), so they appear as tokens of their own.
pub const STOP_WORDS: &[&str] = &[
    "i", "me", "my", "myself", "we", "our", "ours", "ourselves", "you", "you're", "you've", "you'll", "you'd", "your", "yours", "yourself",
    "yourselves", "he", "him", "his", "himself", "she", "she's", "her", "hers", "herself", "it", "it's", "its", "itself", "they", "them",
    "their", "theirs", "themselves", "what", "which", "who", "whom", "this", "that", "that'll", "these", "those", "am", "is", "are", "was",
    "were", "be", "been", "being", "have", "has", "had", "having", "do", "does", "did", "doing", "a", "an", "the", "and", "but", "if", "or",
    "because", "as", "until", "while", "of", "at", "by", "for", "with", "about", "against", "between", "into", "through", "during",
    "before", "after", "above", "below", "to", "from", "up", "down", "in", "out", "on", "off", "over", "under", "again", "further", "then",
    "once", "here", "there", "when", "where", "why", "how", "all", "any", "both", "each", "few", "more", "most", "other", "some", "such",
    "no", "nor", "not", "only", "own", "same", "so", "than", "too", "very", "s", "t", "can", "will", "just", "don", "don't", "should",
    "should've", "now", "d", "ll", "m", "o", "re", "ve", "y", "ain", "aren", "aren't", "couldn", "couldn't", "didn", "didn't", "doesn",
    "doesn't", "hadn", "hadn't", "hasn", "hasn't", "haven", "haven't", "isn", "isn't", "ma", "mightn", "mightn't", "mustn", "mustn't",
    "needn", "needn't", "shan", "shan't", "shouldn", "shouldn't", "wasn", "wasn't", "weren", "weren't", "won", "won't", "wouldn",
    "wouldn't", // NLTK ends here (179)
    "'s", "n't", "'re", "'ve", "'ll", "'d", "'m",
];

/// Whether `token` is a stop word (case-insensitive).
pub fn is_stop_word(token: &str) -> bool {
    let lower = token.to_lowercase();
    STOP_WORDS.contains(&lower.as_str())
}

/// Whether an attack may change `token`: a word and not a stop word.
pub fn is_attackable(token: &str) -> bool {
    is_word(token) && !is_stop_word(token)
}

/// Replace token `index` (into [`tokenize`]'s list) by `replacement`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edit {
    pub index: usize,
    pub replacement: String,
}

/// One changed region, for display: its bytes in the original text and in the new text, and both strings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub original: Span,
    pub new: Span,
    pub before: String,
    pub after: String,
}

/// Apply word edits to `text`. Every byte outside the edited tokens is copied unchanged. Returns the new text and
/// one [`Change`] per edit, in text order. An index past the last token or named twice is an `Error::Invalid`.
pub fn apply_edits(text: &str, edits: &[Edit]) -> Result<(String, Vec<Change>)> {
    let tokens = tokenize(text);
    let mut order: Vec<&Edit> = edits.iter().collect();
    order.sort_by_key(|e| e.index);
    for pair in order.windows(2) {
        if pair[0].index == pair[1].index {
            return Err(Error::Invalid(format!("attacks: word {} is edited twice", pair[0].index)));
        }
    }
    if let Some(e) = order.iter().find(|e| e.index >= tokens.len()) {
        return Err(Error::Invalid(format!("attacks: edit of word {} but the text has {} words", e.index, tokens.len())));
    }
    let mut out = String::with_capacity(text.len() + 16 * edits.len());
    let mut changes = Vec::with_capacity(edits.len());
    let mut copied = 0;
    for e in order {
        let span = tokens[e.index];
        out.push_str(&text[copied..span.start]);
        let start = out.len();
        out.push_str(&e.replacement);
        changes.push(Change { original: span, new: Span { start, end: out.len() }, before: span.of(text).to_string(), after: e.replacement.clone() });
        copied = span.end;
    }
    out.push_str(&text[copied..]);
    Ok((out, changes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizes_sst2_text_with_spans() {
        let t = "it 's a fine film . ";
        let toks: Vec<&str> = tokenize(t).iter().map(|s| s.of(t)).collect();
        assert_eq!(toks, ["it", "'s", "a", "fine", "film", "."]);
        assert_eq!(tokenize(t)[3], Span { start: 8, end: 12 });
        assert!(tokenize("").is_empty());
        assert!(tokenize("   ").is_empty());
        assert_eq!(tokenize("  a\tb\n"), vec![Span { start: 2, end: 3 }, Span { start: 4, end: 5 }]);
        let u = "café  naïve";
        assert_eq!(tokenize(u).iter().map(|s| s.of(u)).collect::<Vec<_>>(), ["café", "naïve"]);
    }

    #[test]
    fn words_and_stop_words() {
        for w in ["film", "'s", "n't", "foot-dragging", "3rd", "Café"] {
            assert!(is_word(w), "{w}");
        }
        for p in [".", ",", "--", "...", "(", "1.8", "``", ""] {
            assert!(!is_word(p), "{p}");
        }
        assert_eq!(STOP_WORDS.len(), 179 + 7);
        assert!(is_stop_word("The") && is_stop_word("'s") && is_stop_word("n't") && is_stop_word("not"));
        assert!(!is_stop_word("film"));
        assert!(is_attackable("film") && !is_attackable("the") && !is_attackable("."));
    }

    #[test]
    fn applies_edits_and_reports_spans() {
        let t = "it 's a fine film . ";
        let edits = [Edit { index: 4, replacement: "fi1m".into() }, Edit { index: 3, replacement: "f ine".into() }];
        let (out, ch) = apply_edits(t, &edits).unwrap();
        assert_eq!(out, "it 's a f ine fi1m . ");
        assert_eq!(ch.len(), 2);
        assert_eq!((ch[0].before.as_str(), ch[0].after.as_str()), ("fine", "f ine"));
        for c in &ch {
            assert_eq!(c.original.of(t), c.before);
            assert_eq!(c.new.of(&out), c.after);
        }
        assert_eq!(apply_edits(t, &[]).unwrap().0, t);
        assert!(apply_edits(t, &[Edit { index: 6, replacement: "x".into() }]).is_err());
        assert!(apply_edits(t, &[Edit { index: 1, replacement: "x".into() }, Edit { index: 1, replacement: "y".into() }]).is_err());
    }
}
