//! TextBugger's five bugs (Li, Ji, Du, Li & Wang, "TextBugger: Generating Adversarial Text Against Real-world
//! Applications", NDSS 2019, section III): Insert (a space into the word), Delete (a random character except the
//! first and the last), Swap (two adjacent letters, not the first or the last), Sub-C (a visually similar character,
//! e.g. o→0, l→1, a→@, or a neighbouring key, e.g. m→n) and Sub-W (a nearest neighbour in a word-vector space).
//!
//! Each bug is a pure function of the word and the random stream; it never returns the word itself and returns `None`
//! where it cannot change the word. Characters are Unicode scalar values, never bytes, so no bug splits a character.
//! The bug definitions state no minimum word length [unverified against the paper's full text]; ours are the
//! shortest words each bug as defined can change
//! ([`MIN_CHARS_INSERT`], [`MIN_CHARS_DELETE`], [`MIN_CHARS_SWAP`]). Alongside each random bug, `*_candidates` lists
//! every distinct result (for the model-guided search that picks the best one).

use serde::{Deserialize, Serialize};

use crate::rng::SplitMix64;

/// TextBugger's bugs (Li et al., NDSS 2019).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bug {
    Insert,
    Delete,
    Swap,
    SubC,
    SubW,
}

impl Bug {
    pub const ALL: [Bug; 5] = [Bug::Insert, Bug::Delete, Bug::Swap, Bug::SubC, Bug::SubW];
}

/// Insert needs a gap between the first and the last character (TextBugger inserts inside the word): 2 characters.
pub const MIN_CHARS_INSERT: usize = 2;
/// Delete keeps the first and the last character (TextBugger), so it needs one more: 3 characters.
pub const MIN_CHARS_DELETE: usize = 3;
/// Swap exchanges two adjacent characters that are neither the first nor the last (TextBugger): 4 characters.
pub const MIN_CHARS_SWAP: usize = 4;

/// Sub-C's visually similar characters. The first three are the paper's examples (TextBugger, NDSS 2019, section
/// III: o→0, l→1, a→@); the rest are common look-alikes we add [default].
pub const LOOK_ALIKES: &[(char, char)] = &[('o', '0'), ('l', '1'), ('a', '@'), ('O', '0'), ('i', '1'), ('e', '3'), ('s', '$'), ('t', '7'), ('b', '8'), ('g', '9')];

/// Sub-C's keyboard neighbours on the US QWERTY layout: keys touching each letter in its own row and the rows above
/// and below (the paper's example m→n is one). The table is ours; upper-case letters use it through their lower case.
pub const QWERTY_NEIGHBOURS: &[(char, &str)] = &[
    ('q', "wa"), ('w', "qeas"), ('e', "wrsd"), ('r', "etdf"), ('t', "ryfg"), ('y', "tugh"), ('u', "yihj"), ('i', "uojk"), ('o', "ipkl"), ('p', "ol"),
    ('a', "qwsz"), ('s', "adwezx"), ('d', "sferxc"), ('f', "dgrtcv"), ('g', "fhtyvb"), ('h', "gjyubn"), ('j', "hkuinm"), ('k', "jliom"),
    ('l', "kop"), ('z', "asx"), ('x', "zcsd"), ('c', "xvdf"), ('v', "cbfg"), ('b', "vngh"), ('n', "bmhj"), ('m', "njk"),
];

/// Sub-W's number of nearest neighbours to choose from (TextBugger's top-k; 5 as in the TextAttack reproduction of
/// the recipe [unverified against the paper's text]).
pub const SUB_W_TOP_K: usize = 5;

fn chars(word: &str) -> Vec<char> {
    word.chars().collect()
}

fn pick<T>(items: &[T], rng: &mut SplitMix64) -> Option<usize> {
    (!items.is_empty()).then(|| rng.below(items.len() as u64) as usize)
}

/// Insert: a space at a random position strictly inside the word ("film" → "fi lm").
pub fn insert(word: &str, rng: &mut SplitMix64) -> Option<String> {
    let c = chars(word);
    if c.len() < MIN_CHARS_INSERT {
        return None;
    }
    let at = 1 + rng.below(c.len() as u64 - 1) as usize;
    Some(c[..at].iter().chain(&[' ']).chain(&c[at..]).collect())
}

/// Delete: a random character except the first and the last ("film" → "fim").
pub fn delete(word: &str, rng: &mut SplitMix64) -> Option<String> {
    let c = chars(word);
    if c.len() < MIN_CHARS_DELETE {
        return None;
    }
    let at = 1 + rng.below(c.len() as u64 - 2) as usize;
    Some(c[..at].iter().chain(&c[at + 1..]).collect())
}

/// The interior positions `i` where swapping characters `i` and `i + 1` changes the word.
fn swap_positions(c: &[char]) -> Vec<usize> {
    if c.len() < MIN_CHARS_SWAP {
        return Vec::new();
    }
    (1..c.len() - 2).filter(|&i| c[i] != c[i + 1]).collect()
}

fn swapped(c: &[char], i: usize) -> String {
    let mut c = c.to_vec();
    c.swap(i, i + 1);
    c.into_iter().collect()
}

/// Swap: two adjacent characters, neither the first nor the last ("film" → "flim"); `None` where all such pairs are
/// equal letters ("keep" has only "ee").
pub fn swap(word: &str, rng: &mut SplitMix64) -> Option<String> {
    let c = chars(word);
    let pos = swap_positions(&c);
    pick(&pos, rng).map(|k| swapped(&c, pos[k]))
}

/// The Sub-C replacements of one character: its look-alikes, then its keyboard neighbours (case kept).
pub fn sub_c_options(ch: char) -> Vec<char> {
    let mut out: Vec<char> = LOOK_ALIKES.iter().filter(|(from, _)| *from == ch).map(|(_, to)| *to).collect();
    let lower = ch.to_ascii_lowercase();
    if let Some((_, keys)) = QWERTY_NEIGHBOURS.iter().find(|(k, _)| *k == lower) {
        out.extend(keys.chars().map(|k| if ch.is_ascii_uppercase() { k.to_ascii_uppercase() } else { k }));
    }
    out.retain(|&r| r != ch);
    out
}

fn sub_c_pairs(c: &[char]) -> Vec<(usize, char)> {
    c.iter().enumerate().flat_map(|(i, &ch)| sub_c_options(ch).into_iter().map(move |r| (i, r))).collect()
}

/// Sub-C: one character replaced by a look-alike or a keyboard neighbour, uniformly over all (position,
/// replacement) pairs of the word; any position, as in the paper ("film" → "fi1m", "fikm").
pub fn sub_c(word: &str, rng: &mut SplitMix64) -> Option<String> {
    let mut c = chars(word);
    let pairs = sub_c_pairs(&c);
    let (i, r) = pairs[pick(&pairs, rng)?];
    c[i] = r;
    Some(c.into_iter().collect())
}

/// The usable Sub-W candidates from `near`: the first [`SUB_W_TOP_K`] distinct, non-empty, whitespace-free ones that
/// differ from the word.
pub fn sub_w_candidates(word: &str, near: &dyn Fn(&str) -> Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in near(word) {
        if out.len() == SUB_W_TOP_K {
            break;
        }
        if !n.is_empty() && n != word && !n.chars().any(char::is_whitespace) && !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// Sub-W: a random one of the word's nearest neighbours, which `near` supplies (later: the model's embeddings).
pub fn sub_w(word: &str, near: &dyn Fn(&str) -> Vec<String>, rng: &mut SplitMix64) -> Option<String> {
    let mut cands = sub_w_candidates(word, near);
    let k = pick(&cands, rng)?;
    Some(cands.swap_remove(k))
}

/// Whether `bug` can change `word` (linear in the word's length, unlike [`candidates`]).
pub fn applies(bug: Bug, word: &str, near: &dyn Fn(&str) -> Vec<String>) -> bool {
    let n = word.chars().count();
    match bug {
        Bug::Insert => n >= MIN_CHARS_INSERT,
        Bug::Delete => n >= MIN_CHARS_DELETE,
        Bug::Swap => !swap_positions(&chars(word)).is_empty(),
        Bug::SubC => word.chars().any(|c| !sub_c_options(c).is_empty()),
        Bug::SubW => !sub_w_candidates(word, near).is_empty(),
    }
}

/// One random application of `bug`; `near` is only asked by Sub-W.
pub fn apply(bug: Bug, word: &str, near: &dyn Fn(&str) -> Vec<String>, rng: &mut SplitMix64) -> Option<String> {
    match bug {
        Bug::Insert => insert(word, rng),
        Bug::Delete => delete(word, rng),
        Bug::Swap => swap(word, rng),
        Bug::SubC => sub_c(word, rng),
        Bug::SubW => sub_w(word, near, rng),
    }
}

/// Every distinct result of `bug` on `word`, in a fixed order, never the word itself (empty: not applicable).
/// Quadratic in the word's length; meant for words, not documents.
pub fn candidates(bug: Bug, word: &str, near: &dyn Fn(&str) -> Vec<String>) -> Vec<String> {
    let c = chars(word);
    let mut out: Vec<String> = match bug {
        Bug::Insert if c.len() >= MIN_CHARS_INSERT => (1..c.len()).map(|at| c[..at].iter().chain(&[' ']).chain(&c[at..]).collect()).collect(),
        Bug::Delete if c.len() >= MIN_CHARS_DELETE => (1..c.len() - 1).map(|at| c[..at].iter().chain(&c[at + 1..]).collect()).collect(),
        Bug::Swap => swap_positions(&c).into_iter().map(|i| swapped(&c, i)).collect(),
        Bug::SubC => sub_c_pairs(&c)
            .into_iter()
            .map(|(i, r)| {
                let mut d = c.clone();
                d[i] = r;
                d.into_iter().collect()
            })
            .collect(),
        Bug::SubW => sub_w_candidates(word, near),
        _ => Vec::new(),
    };
    let mut seen = std::collections::HashSet::new();
    out.retain(|s| s != word && seen.insert(s.clone()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn none(_: &str) -> Vec<String> {
        Vec::new()
    }

    fn first_last(s: &str) -> (Option<char>, Option<char>) {
        (s.chars().next(), s.chars().last())
    }

    #[test]
    fn insert_hand_cases() {
        let mut r = SplitMix64::new(1);
        let out = insert("film", &mut r).unwrap();
        assert!(["f ilm", "fi lm", "fil m"].contains(&out.as_str()), "{out}");
        assert_eq!(insert("ok", &mut r).unwrap(), "o k");
        assert_eq!(insert("a", &mut r), None);
        assert_eq!(insert("", &mut r), None);
        assert_eq!(candidates(Bug::Insert, "film", &none), ["f ilm", "fi lm", "fil m"]);
    }

    #[test]
    fn delete_hand_cases() {
        let mut r = SplitMix64::new(2);
        let out = delete("film", &mut r).unwrap();
        assert!(["flm", "fim"].contains(&out.as_str()), "{out}");
        assert_eq!(delete("cat", &mut r).unwrap(), "ct");
        assert_eq!(delete("at", &mut r), None);
        // "hello": deleting either l gives "helo" once.
        assert_eq!(candidates(Bug::Delete, "hello", &none), ["hllo", "helo"]);
    }

    #[test]
    fn swap_hand_cases() {
        let mut r = SplitMix64::new(3);
        assert_eq!(swap("film", &mut r).unwrap(), "flim");
        let out = swap("great", &mut r).unwrap();
        assert!(["gerat", "graet"].contains(&out.as_str()), "{out}");
        assert_eq!(swap("cat", &mut r), None);
        assert_eq!(swap("keep", &mut r), None);
        assert_eq!(candidates(Bug::Swap, "keeps", &none), ["kepes"]);
    }

    #[test]
    fn sub_c_hand_cases() {
        assert_eq!(sub_c_options('o'), ['0', 'i', 'p', 'k', 'l']);
        assert_eq!(sub_c_options('l'), ['1', 'k', 'o', 'p']);
        assert_eq!(sub_c_options('a'), ['@', 'q', 'w', 's', 'z']);
        assert_eq!(sub_c_options('m'), ['n', 'j', 'k']);
        assert_eq!(sub_c_options('M'), ['N', 'J', 'K']);
        assert!(sub_c_options('é').is_empty() && sub_c_options('7').is_empty() && sub_c_options('.').is_empty());
        let mut r = SplitMix64::new(4);
        assert_eq!(sub_c("é", &mut r), None);
        let c = candidates(Bug::SubC, "lo", &none);
        assert!(c.contains(&"1o".to_string()) && c.contains(&"l0".to_string()) && c.contains(&"ko".to_string()));
        for _ in 0..50 {
            let out = sub_c("good", &mut r).unwrap();
            assert_eq!(out.chars().count(), 4);
            assert_eq!(out.chars().zip("good".chars()).filter(|(a, b)| a != b).count(), 1, "{out}");
        }
    }

    #[test]
    fn sub_w_hand_cases() {
        let near = |w: &str| -> Vec<String> {
            match w {
                "good" => ["good", "great", "", "fine day", "great", "nice", "decent", "solid", "fine", "okay"].iter().map(|s| s.to_string()).collect(),
                _ => Vec::new(),
            }
        };
        assert_eq!(sub_w_candidates("good", &near), ["great", "nice", "decent", "solid", "fine"]);
        let mut r = SplitMix64::new(5);
        let out = sub_w("good", &near, &mut r).unwrap();
        assert!(["great", "nice", "decent", "solid", "fine"].contains(&out.as_str()));
        assert_eq!(sub_w("bad", &near, &mut r), None);
        assert_eq!(apply(Bug::SubW, "good", &none, &mut r), None);
    }

    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z]{0,12}",
            "[a-z'\\-]{1,8}",
            "\\PC{0,10}",
            Just("é".to_string()),
            Just("ааа".to_string()),
            "[a-z]{300,400}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn bugs_are_seeded_and_never_identity(w in word(), seed in any::<u64>()) {
            let near = |x: &str| vec![x.to_string(), format!("{x}s"), "other".to_string()];
            for bug in Bug::ALL {
                let a = apply(bug, &w, &near, &mut SplitMix64::new(seed));
                let b = apply(bug, &w, &near, &mut SplitMix64::new(seed));
                prop_assert_eq!(&a, &b);
                if let Some(out) = &a {
                    prop_assert_ne!(out, &w);
                    prop_assert!(candidates(bug, &w, &near).contains(out), "{:?} {:?} not among candidates", bug, out);
                }
                let cands = candidates(bug, &w, &near);
                prop_assert_eq!(a.is_none(), cands.is_empty(), "{:?} applicability", bug);
                prop_assert_eq!(applies(bug, &w, &near), !cands.is_empty());
                prop_assert!(!cands.contains(&w));
            }
        }

        #[test]
        fn interior_bugs_keep_first_and_last(w in word(), seed in any::<u64>()) {
            for bug in [Bug::Insert, Bug::Delete, Bug::Swap] {
                if let Some(out) = apply(bug, &w, &none, &mut SplitMix64::new(seed)) {
                    prop_assert_eq!(first_last(&out), first_last(&w), "{:?}: {} -> {}", bug, w, out);
                }
            }
            let n = w.chars().count();
            if let Some(out) = insert(&w, &mut SplitMix64::new(seed)) {
                prop_assert_eq!(out.chars().count(), n + 1);
                let o: Vec<char> = out.chars().collect();
                let removed_one_space = (0..o.len()).filter(|&i| o[i] == ' ').any(|i| o[..i].iter().chain(&o[i + 1..]).collect::<String>() == w);
                prop_assert!(removed_one_space, "{} -> {}", w, out);
            }
            if let Some(out) = delete(&w, &mut SplitMix64::new(seed)) { prop_assert_eq!(out.chars().count(), n - 1); }
            if let Some(out) = swap(&w, &mut SplitMix64::new(seed)) {
                let (mut a, mut b): (Vec<char>, Vec<char>) = (out.chars().collect(), w.chars().collect());
                a.sort_unstable();
                b.sort_unstable();
                prop_assert_eq!(a, b);
            }
        }
    }
}
