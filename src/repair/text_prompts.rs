//! Hard text prompts through the LM head: the IDP pool (methods.md §3) for a model classified as a
//! language model rather than through a classification head.
//!
//! Each task has a pool of text templates ([`pool`]): the input's fields are written into the
//! template, which ends where the answer word comes, and each class is a verbalizer word. A class's
//! logit is the LM head's next-token logit of its word's first token at the last position
//! ([`class_logits`]). Nothing is trained: per input the most confident template is chosen
//! (§3.3's max-confidence option, m forward passes), against the single template that is best on
//! the calibration sample. The engine side is [`crate::experiment::repair`].

use crate::backend::Backend;
use crate::data::{Example, Task};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::text::TextTokenizer;

/// One text prompt: `{a}` and `{b}` stand for the example's fields; `words[c]` is class c's answer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Template {
    pub text: &'static str,
    pub words: &'static [&'static str],
}

/// Templates per task in every pool.
pub const POOL_SIZE: usize = 4;

/// Longest prompt (tokens, BOS included) a filled template is cut to: the start of the input is
/// dropped so that the question and the answer slot at the end stay.
pub const MAX_PROMPT_TOKENS: usize = 192;

const fn t(text: &'static str, words: &'static [&'static str]) -> Template {
    Template { text, words }
}

/// The task's pool of [`POOL_SIZE`] templates (labels in the task's order: [`Task::label_names`]).
pub fn pool(task: Task) -> &'static [Template; POOL_SIZE] {
    const SST2: [Template; POOL_SIZE] = [
        t("review: {a} sentiment:", &["negative", "positive"]),
        t("{a} all in all, it was", &["terrible", "great"]),
        t("{a} overall, the movie was", &["bad", "good"]),
        t("is this review positive? {a} answer:", &["no", "yes"]),
    ];
    const COLA: [Template; POOL_SIZE] = [
        t("sentence: {a} is this sentence grammatical? answer:", &["no", "yes"]),
        t("{a} this sentence is", &["wrong", "correct"]),
        t("is the following english acceptable? {a} answer:", &["no", "yes"]),
        t("{a} grammar:", &["bad", "good"]),
    ];
    const MRPC: [Template; POOL_SIZE] = [
        t("{a} {b} do these two sentences mean the same? answer:", &["no", "yes"]),
        t("sentence one: {a} sentence two: {b} paraphrase:", &["no", "yes"]),
        t("{a} in other words, {b} is that right?", &["no", "yes"]),
        t("{a} {b} the two sentences are", &["different", "equivalent"]),
    ];
    const QQP: [Template; POOL_SIZE] = [
        t("{a} {b} are these questions the same? answer:", &["no", "yes"]),
        t("question one: {a} question two: {b} duplicate:", &["no", "yes"]),
        t("{a} {b} the two questions are", &["different", "same"]),
        t("do {a} and {b} ask the same thing? answer:", &["no", "yes"]),
    ];
    const NLI3: [Template; POOL_SIZE] = [
        t("{a} question: {b} true, false or neither? answer:", &["true", "neither", "false"]),
        t("premise: {a} hypothesis: {b} does the premise entail the hypothesis?", &["yes", "maybe", "no"]),
        t("{a} based on that, is it true that {b}", &["yes", "maybe", "no"]),
        t("{a} {b} the second sentence is", &["true", "possible", "false"]),
    ];
    const QNLI: [Template; POOL_SIZE] = [
        t("question: {a} sentence: {b} does the sentence answer the question?", &["yes", "no"]),
        t("{a} {b} is the answer in the sentence? answer:", &["yes", "no"]),
        t("{b} does this answer {a}", &["yes", "no"]),
        t("{a} {b} answerable:", &["yes", "no"]),
    ];
    const RTE: [Template; POOL_SIZE] = [
        t("{a} question: {b} true or false? answer:", &["true", "false"]),
        t("premise: {a} hypothesis: {b} entailment:", &["yes", "no"]),
        t("{a} based on that, is it true that {b}", &["yes", "no"]),
        t("{a} {b} the second sentence is", &["true", "false"]),
    ];
    match task {
        Task::Sst2 => &SST2,
        Task::Cola => &COLA,
        Task::Mrpc => &MRPC,
        Task::Qqp => &QQP,
        Task::Mnli | Task::MnliMm => &NLI3,
        Task::Qnli => &QNLI,
        Task::Rte => &RTE,
    }
}

impl Template {
    /// The template with the example's fields written in (`{b}` needs a pair example).
    pub fn fill(&self, e: &Example) -> Result<String> {
        let mut s = self.text.replace("{a}", e.text_a.trim());
        if s.contains("{b}") {
            let b = e.text_b.as_deref().ok_or_else(|| Error::Invalid(format!("the text prompt {:?} needs a sentence pair", self.text)))?;
            s = s.replace("{b}", b.trim());
        }
        Ok(s)
    }
}

/// The first token of each class word as the tokenizer reads it after a space (the word as the
/// next token), in class order. Refused: a word that encodes to nothing, or two classes that
/// share a first token (their logits could not be told apart).
pub fn verbalizer_ids(tok: &TextTokenizer, tpl: &Template) -> Result<Vec<u32>> {
    let vocab = tok.vocab();
    let specials: Vec<u32> = crate::text::SPECIAL_TOKENS.iter().filter_map(|s| vocab.get(*s).copied()).collect();
    // Each word after a prefix, so a tokenizer that marks word starts (Metaspace, byte-level Ġ) gives the in-text form.
    let prefix = tok.encode("x")?.ids;
    let mut ids = Vec::with_capacity(tpl.words.len());
    for w in tpl.words {
        let with = tok.encode(&format!("x {w}"))?.ids;
        let id = with.iter().skip(prefix.len()).copied().find(|i| !specials.contains(i));
        let id = id.ok_or_else(|| Error::Invalid(format!("the answer word {w:?} of {:?} encodes to no token", tpl.text)))?;
        if let Some(j) = ids.iter().position(|&x| x == id) {
            return Err(Error::Invalid(format!("the answer words {:?} and {w:?} of {:?} start with the same token", tpl.words[j], tpl.text)));
        }
        ids.push(id);
    }
    Ok(ids)
}

/// The filled template's tokens: BOS and the last [`MAX_PROMPT_TOKENS`] − 1 others when longer.
pub fn encode(tok: &TextTokenizer, tpl: &Template, e: &Example) -> Result<Vec<u32>> {
    let ids = tok.encode(&tpl.fill(e)?)?.ids;
    if ids.len() <= MAX_PROMPT_TOKENS {
        return Ok(ids);
    }
    let mut out = vec![ids[0]];
    out.extend_from_slice(&ids[ids.len() - (MAX_PROMPT_TOKENS - 1)..]);
    Ok(out)
}

/// Class logits `[n][C]` of `examples` under template `tpl`, through `model`'s LM head, `batch`
/// sequences per forward pass. Refused: a model without an LM head, a template whose word count is
/// not the task's number of classes.
pub async fn class_logits<B: Backend>(be: &B, model: &Model<B>, tok: &TextTokenizer, task: Task, tpl: &Template, examples: &[Example], batch: usize) -> Result<Vec<Vec<f32>>> {
    if tpl.words.len() != task.num_labels() as usize {
        return Err(Error::Invalid(format!("the text prompt {:?} has {} answer words, {task} has {} classes", tpl.text, tpl.words.len(), task.num_labels())));
    }
    let verb = verbalizer_ids(tok, tpl)?;
    let seqs = examples.iter().map(|e| encode(tok, tpl, e)).collect::<Result<Vec<_>>>()?;
    let mut rows = Vec::with_capacity(examples.len());
    for chunk in seqs.chunks(batch.max(1)) {
        let refs: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
        let out = be.read(&model.next_token_batch(be, &refs)?).await?;
        let v = out.as_f32("next-token logits")?;
        rows.extend(crate::eval::readout::answer_columns(v, v.len() / chunk.len(), &verb)?);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(a: &str, b: Option<&str>) -> Example {
        Example { idx: 0, text_a: a.into(), text_b: b.map(Into::into), label: 0, method: None, level: None, original_a: None, original_b: None }
    }

    #[test]
    fn every_pool_has_one_word_per_class_and_only_its_fields() {
        for task in [Task::Sst2, Task::Cola, Task::Mrpc, Task::Qqp, Task::Mnli, Task::MnliMm, Task::Qnli, Task::Rte] {
            for tpl in pool(task) {
                assert_eq!(tpl.words.len(), task.num_labels() as usize, "{task} {:?}", tpl.text);
                assert!(tpl.text.contains("{a}"), "{task} {:?}", tpl.text);
                assert_eq!(tpl.text.contains("{b}"), task.is_pair(), "{task} {:?}", tpl.text);
            }
        }
    }

    #[test]
    fn fill_writes_the_fields_and_needs_a_pair_for_b() {
        let tpl = pool(Task::Rte)[0];
        assert_eq!(tpl.fill(&ex(" it rains ", Some("it is wet"))).unwrap(), "it rains question: it is wet true or false? answer:");
        assert!(tpl.fill(&ex("it rains", None)).unwrap_err().to_string().contains("needs a sentence pair"));
    }
}
