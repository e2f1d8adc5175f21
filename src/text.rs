//! Text -> token ids, with the `tokenizers` crate (the same code natively and in wasm32).
//!
//! The bundled default tokenizer (`assets/tokenizer/tokenizer.json`) is trained by
//! [`train_bpe`] on the bundled GLUE training text (`trilemma tokenizer`). Its design follows the
//! SentencePiece-style BPE of the public checkpoints (specs/models.md §5: `▁` word marker, `<s>` = 1
//! prepended, `</s>` = 2) with two deliberate differences for small GLUE models: NFKC + lowercase
//! normalisation, and an 8k vocabulary.
//!
//! Pair tasks are a two-segment input: `<s> A </s> B` (type ids 0 for `<s> A </s>`, 1 for `B`).

use crate::error::{Error, Result};
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::normalizers::{Lowercase, NormalizerWrapper, Sequence, NFKC};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder};

/// Special tokens of the bundled tokenizer, in id order.
pub const SPECIAL_TOKENS: [&str; 4] = ["<unk>", "<s>", "</s>", "<pad>"];
pub const BOS_ID: u32 = 1;
pub const EOS_ID: u32 = 2;
pub const PAD_ID: u32 = 3;

/// Token ids and their string pieces.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub tokens: Vec<String>,
}

/// A loaded `tokenizer.json`.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TextTokenizer(vocab {})", self.vocab_size())
    }
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

impl TextTokenizer {
    /// Parse a Hugging Face `tokenizer.json`.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.is_empty() {
            return Err(Error::Tokenizer("tokenizer.json is empty".into()));
        }
        let inner = Tokenizer::from_bytes(bytes).map_err(|e| Error::Tokenizer(format!("cannot parse tokenizer.json: {e}")))?;
        Ok(Self { inner })
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Every token string with its id (special tokens included).
    pub fn vocab(&self) -> std::collections::HashMap<String, u32> {
        self.inner.get_vocab(true)
    }

    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(true).map_err(tok_err)
    }

    /// Encode one text with the tokenizer's special tokens (BOS). Empty or blank text is refused.
    pub fn encode(&self, text: &str) -> Result<Encoded> {
        if text.trim().is_empty() {
            return Err(Error::Invalid("text is empty".into()));
        }
        let enc = self.inner.encode(text, true).map_err(tok_err)?;
        Ok(Encoded { ids: enc.get_ids().to_vec(), tokens: enc.get_tokens().to_vec() })
    }

    /// Encode a sentence pair as the documented two-segment input.
    pub fn encode_pair(&self, first: &str, second: &str) -> Result<Encoded> {
        if first.trim().is_empty() || second.trim().is_empty() {
            return Err(Error::Invalid("both segments of a pair must be non-empty".into()));
        }
        let enc = self.inner.encode((first, second), true).map_err(tok_err)?;
        Ok(Encoded { ids: enc.get_ids().to_vec(), tokens: enc.get_tokens().to_vec() })
    }
}

/// Longest input (in tokens, specials included) a task example is cut to, in training and in
/// evaluation alike: `<s> A` or `<s> A </s> B`, cut at the end (so a long pair loses the tail of
/// its second segment).
pub const MAX_EXAMPLE_TOKENS: usize = 128;

impl TextTokenizer {
    /// A task example as the models see it: the single or pair encoding, cut to
    /// [`MAX_EXAMPLE_TOKENS`].
    pub fn encode_example(&self, text_a: &str, text_b: Option<&str>) -> Result<Vec<u32>> {
        let mut ids = match text_b {
            Some(b) => self.encode_pair(text_a, b)?.ids,
            None => self.encode(text_a)?.ids,
        };
        ids.truncate(MAX_EXAMPLE_TOKENS);
        Ok(ids)
    }
}

/// Train the project's BPE tokenizer on `texts` (deterministic for the same texts and size).
pub fn train_bpe<I, S>(texts: I, vocab_size: usize) -> Result<TextTokenizer>
where
    I: Iterator<Item = S> + Send,
    S: AsRef<str> + Send,
{
    if vocab_size < SPECIAL_TOKENS.len() + 64 {
        return Err(Error::Invalid(format!("vocab_size {vocab_size} is too small")));
    }
    let model = BPE::builder().unk_token("<unk>".into()).build().map_err(tok_err)?;
    let normalizer: NormalizerWrapper = Sequence::new(vec![NFKC.into(), Lowercase.into()]).into();
    let metaspace = Metaspace::new('▁', PrependScheme::Always, true);
    let template = TemplateProcessing::builder()
        .try_single("<s> $A")
        .map_err(tok_err)?
        .try_pair("<s> $A </s> $B:1")
        .map_err(tok_err)?
        .special_tokens(vec![("<s>", BOS_ID), ("</s>", EOS_ID)])
        .build()
        .map_err(tok_err)?;
    let mut tk = TokenizerBuilder::<BPE, NormalizerWrapper, Metaspace, TemplateProcessing, Metaspace>::new()
        .with_model(model)
        .with_normalizer(Some(normalizer))
        .with_pre_tokenizer(Some(metaspace.clone()))
        .with_post_processor(Some(template))
        .with_decoder(Some(metaspace))
        .build()
        .map_err(tok_err)?;
    let specials = SPECIAL_TOKENS.iter().map(|s| AddedToken::from(*s, true)).collect();
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials)
        .build();
    tk.train(&mut trainer, texts).map_err(tok_err)?;
    let json = tk.to_string(false).map_err(tok_err)?;
    TextTokenizer::from_json_bytes(json.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> TextTokenizer {
        let texts = ["the film is good", "the film is bad", "a good film", "a bad movie", "good good good"];
        train_bpe(texts.iter().cycle().take(50), 100).unwrap()
    }

    #[test]
    fn examples_are_cut_to_the_model_limit() {
        let tk = tiny();
        let long = vec!["good"; 3 * MAX_EXAMPLE_TOKENS].join(" ");
        let ids = tk.encode_example(&long, None).unwrap();
        assert_eq!(ids.len(), MAX_EXAMPLE_TOKENS);
        assert_eq!(ids[0], BOS_ID);
        let pair = tk.encode_example("a good film", Some(&long)).unwrap();
        assert_eq!(pair.len(), MAX_EXAMPLE_TOKENS);
        assert!(pair.contains(&EOS_ID), "the separator survives: the cut is at the end");
        let short = tk.encode_example("a bad movie", Some("good")).unwrap();
        assert_eq!(short, tk.encode_pair("a bad movie", "good").unwrap().ids);
        assert!(tk.encode_example("  ", None).is_err());
    }

    #[test]
    fn special_ids_and_bos() {
        let t = tiny();
        let e = t.encode("The film").unwrap();
        assert_eq!(e.ids[0], BOS_ID);
        assert_eq!(e.tokens[0], "<s>");
        // Lowercased, word-marked pieces.
        assert!(e.tokens[1].starts_with('▁'));
        assert!(e.tokens.iter().all(|s| s.to_lowercase() == *s));
    }

    #[test]
    fn pair_is_two_segments() {
        let t = tiny();
        let e = t.encode_pair("good film", "bad movie").unwrap();
        assert_eq!(e.ids[0], BOS_ID);
        assert_eq!(e.ids.iter().filter(|&&i| i == EOS_ID).count(), 1);
    }

    #[test]
    fn empty_text_is_refused() {
        let t = tiny();
        assert!(matches!(t.encode("   "), Err(Error::Invalid(_))));
        assert!(matches!(t.encode_pair("a", ""), Err(Error::Invalid(_))));
        assert!(matches!(TextTokenizer::from_json_bytes(b""), Err(Error::Tokenizer(_))));
        assert!(matches!(TextTokenizer::from_json_bytes(b"{not json"), Err(Error::Tokenizer(_))));
    }

    #[test]
    fn training_is_deterministic() {
        assert_eq!(tiny().to_json().unwrap(), tiny().to_json().unwrap());
    }
}
