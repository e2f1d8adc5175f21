//! Nearest neighbours of a word in the model's own input-embedding space: the word-vector source of TextBugger's
//! Sub-W (Li et al., NDSS 2019) and the second synonym source of our TextFooler (Jin et al., AAAI 2020, who use
//! counter-fitted GloVe vectors; we have no bundled word vectors, so the victim's embeddings stand in, as the issue
//! asks).
//!
//! A word has a vector when the tokenizer has it as one whole-word token (`▁word`, the Metaspace marker then the
//! word); neighbours are other such tokens of at least two letters, ranked by cosine similarity (ties by token id),
//! and only those at or above a minimum similarity.

use std::collections::HashMap;

use crate::backend::HostTensor;
use crate::error::{Error, Result};
use crate::io::Checkpoint;
use crate::text::TextTokenizer;

/// The Metaspace marker the bundled tokenizer puts before every word.
const WORD_MARKER: char = '▁';

/// TextFooler's minimum cosine similarity between a word and a candidate: 0.5, TextAttack's `textfooler` recipe
/// (`WordEmbeddingDistance(min_cos_sim=0.5)`); Jin et al. report δ = 0.7 for counter-fitted vectors, which the
/// small models' embeddings rarely reach.
pub const MIN_COS: f32 = 0.5;

/// Unit-normalised embedding rows of the whole-word tokens.
#[derive(Clone, Debug)]
pub struct EmbeddingNeighbours {
    /// Lower-case word -> row in `unit`.
    index: HashMap<String, usize>,
    words: Vec<String>,
    /// `[words, H]` rows of unit length (a zero row stays zero).
    unit: Vec<f32>,
    hidden: usize,
}

impl EmbeddingNeighbours {
    /// From a checkpoint's input embeddings (`model.embeddings.weight` or `model.embed_tokens.weight`, `[N, H]`) and
    /// its tokenizer.
    pub fn from_checkpoint(ck: &Checkpoint, tk: &TextTokenizer) -> Result<Self> {
        let t = ["model.embeddings.weight", "model.embed_tokens.weight"]
            .iter()
            .find_map(|n| ck.tensors.get(*n))
            .ok_or_else(|| Error::Invalid("the checkpoint has no input embeddings (model.embeddings.weight)".into()))?;
        Self::new(t, tk)
    }

    /// From an `[N, H]` embedding matrix and the tokenizer whose ids index its rows.
    pub fn new(embeddings: &HostTensor, tk: &TextTokenizer) -> Result<Self> {
        let [n, hidden] = embeddings.shape[..] else {
            return Err(Error::Invalid(format!("input embeddings must be [N, H], got {:?}", embeddings.shape)));
        };
        let e = embeddings.as_f32("embedding neighbours")?;
        let mut entries: Vec<(u32, String)> = tk
            .vocab()
            .into_iter()
            .filter_map(|(tok, id)| {
                let w = tok.strip_prefix(WORD_MARKER)?;
                (w.chars().count() >= 2 && w.chars().all(char::is_alphabetic) && (id as usize) < n).then(|| (id, w.to_lowercase()))
            })
            .collect();
        entries.sort();
        let mut index = HashMap::with_capacity(entries.len());
        let mut words = Vec::with_capacity(entries.len());
        let mut unit = Vec::with_capacity(entries.len() * hidden);
        for (id, w) in entries {
            if index.contains_key(&w) {
                continue;
            }
            let row = &e[id as usize * hidden..(id as usize + 1) * hidden];
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
            unit.extend(row.iter().map(|v| v * scale));
            index.insert(w.clone(), words.len());
            words.push(w);
        }
        Ok(Self { index, words, unit, hidden })
    }

    /// Whether `word` (any case) is one whole-word token.
    pub fn has(&self, word: &str) -> bool {
        self.index.contains_key(&word.to_lowercase())
    }

    /// Number of whole-word tokens.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Up to `k` whole-word tokens closest to `word` by cosine similarity, best first (ties: lower token id first),
    /// each with its similarity: only those ≥ `min_cos` that `accept` takes, never the word itself. Empty when the
    /// word is not one token.
    pub fn nearest(&self, word: &str, k: usize, min_cos: f32, accept: &dyn Fn(&str) -> bool) -> Vec<(String, f32)> {
        let Some(&q) = self.index.get(&word.to_lowercase()) else { return Vec::new() };
        let h = self.hidden;
        let qv = &self.unit[q * h..(q + 1) * h];
        let mut scored: Vec<(f32, usize)> = (0..self.words.len())
            .filter(|&i| i != q)
            .map(|i| (self.unit[i * h..(i + 1) * h].iter().zip(qv).map(|(a, b)| a * b).sum::<f32>(), i))
            .filter(|&(c, _)| c >= min_cos)
            .collect();
        // Descending similarity; rows are in token-id order, so a stable sort keeps lower ids first on ties.
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.into_iter().filter(|&(_, i)| accept(&self.words[i])).take(k).map(|(c, i)| (self.words[i].clone(), c)).collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A word-level tokenizer with exactly these tokens (ids in order), for tests.
    pub(crate) fn tokenizer(words: &[&str]) -> TextTokenizer {
        let vocab: serde_json::Map<String, serde_json::Value> = words.iter().enumerate().map(|(i, w)| (w.to_string(), serde_json::json!(i))).collect();
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
            "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
            "post_processor": null, "decoder": null,
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": []}
        });
        TextTokenizer::from_json_bytes(json.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn hand_case() {
        // ids: 0 <unk>, 1 ▁good, 2 ▁great, 3 ▁bad, 4 ▁x (one letter: not a word), 5 ing (not word-initial), 6 ▁fine, 7 ▁zero
        let tk = tokenizer(&["<unk>", "▁good", "▁great", "▁bad", "▁x", "ing", "▁fine", "▁zero"]);
        #[rustfmt::skip]
        let e = HostTensor::f32(&[8, 2], vec![
            9.0, 9.0,
            1.0, 0.0,   // good
            2.0, 0.2,   // great: cos 0.995
            -1.0, 0.0,  // bad: cos -1
            1.0, 0.0,   // x: same direction, but not a word
            1.0, 0.0,   // ing: same direction, but not word-initial
            0.6, 0.8,   // fine: cos 0.6
            0.0, 0.0,   // zero vector: cos 0
        ]).unwrap();
        let nb = EmbeddingNeighbours::new(&e, &tk).unwrap();
        assert_eq!(nb.len(), 5);
        assert!(nb.has("Good") && !nb.has("x") && !nb.has("ing"));
        let all = |_: &str| true;
        let got = nb.nearest("good", 10, 0.5, &all);
        let names: Vec<&str> = got.iter().map(|(w, _)| w.as_str()).collect();
        assert_eq!(names, ["great", "fine"]);
        assert!((got[0].1 - 2.0 / (4.04f32).sqrt()).abs() < 1e-6 && (got[1].1 - 0.6).abs() < 1e-6);
        assert_eq!(nb.nearest("good", 1, 0.5, &all).len(), 1);
        assert_eq!(nb.nearest("good", 10, -1.0, &all).len(), 4);
        assert_eq!(nb.nearest("good", 10, 0.5, &|w| w != "great")[0].0, "fine");
        assert!(nb.nearest("unknown", 10, 0.0, &all).is_empty());
        assert!(nb.nearest("zero", 10, 0.1, &all).is_empty());
        assert!(EmbeddingNeighbours::new(&HostTensor::f32(&[16], vec![0.0; 16]).unwrap(), &tk).is_err());
    }
}
