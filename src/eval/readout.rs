//! How class logits are read from a model for a task: through the folder's classification head, or —
//! for a language model without one — zero-shot through its LM head with one of the task's text
//! templates ([`crate::repair::text_prompts`]: the input written into the template, each class the
//! next-token logit of its answer word's first token at the last position).
//!
//! The spec's `readout` picks it (`auto`: the head when the folder has one for the task, else the text
//! prompt when it has an LM head); every evaluation, attack and repair of a run reads its logits this way.

use crate::backend::Backend;
use crate::data::{Example, Task};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::repair::text_prompts::{self, Template, POOL_SIZE};
use crate::text::TextTokenizer;

/// What the spec asks for (`"readout": "auto" | "head" | "prompt"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadoutChoice {
    /// The task's head when the folder has one, else the text prompt through the LM head.
    #[default]
    Auto,
    Head,
    Prompt,
}

impl ReadoutChoice {
    pub fn is_auto(&self) -> bool {
        *self == ReadoutChoice::Auto
    }
}

/// The readout of one model on one task, resolved ([`Readout::resolve`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Readout {
    /// The head's name (`score.<task>.weight`, or the folder's `score.weight` for its default task).
    Head(&'static str),
    /// Template `template` of the task's pool and its answer words' token ids (one per class).
    Prompt { task: Task, template: usize, verbalizer: Vec<u32> },
}

impl Readout {
    /// The readout `choice` of `model` for `task`; `template` indexes the task's text pool. Refused: a head
    /// whose class count is not the task's, a prompt on a folder without an LM head, a template out of range,
    /// answer words the tokenizer cannot tell apart.
    pub fn resolve<B: Backend>(model: &Model<B>, tk: &TextTokenizer, task: Task, choice: ReadoutChoice, template: usize) -> Result<Self> {
        let prompt = || -> Result<Self> {
            if model.lm_head.is_none() {
                return Err(Error::Invalid("this model folder has no LM head (lm_head.weight) to read a text prompt through".into()));
            }
            let tpl = Self::template_of(task, template)?;
            Ok(Readout::Prompt { task, template, verbalizer: text_prompts::verbalizer_ids(tk, tpl)? })
        };
        match choice {
            ReadoutChoice::Head => Ok(Readout::Head(super::task_head(model, task)?)),
            ReadoutChoice::Prompt => prompt(),
            ReadoutChoice::Auto => match super::task_head(model, task) {
                Ok(h) => Ok(Readout::Head(h)),
                // A head with the wrong class count is a real mismatch, not a missing head: say so.
                Err(e) if model.head(Some(task.model_task().name())).is_ok() => Err(e),
                Err(Error::Invalid(m)) if model.lm_head.is_none() => Err(Error::Invalid(format!("{m}, and no LM head (lm_head.weight) to read a text prompt through"))),
                Err(_) => prompt(),
            },
        }
    }

    /// Template `i` of `task`'s pool.
    pub fn template_of(task: Task, i: usize) -> Result<&'static Template> {
        text_prompts::pool(task).get(i).ok_or_else(|| Error::Invalid(format!("there is no text template {i} for {task}: use 0 to {}", POOL_SIZE - 1)))
    }

    /// The token ids the model reads for an example.
    pub fn encode(&self, tk: &TextTokenizer, text_a: &str, text_b: Option<&str>) -> Result<Vec<u32>> {
        match self {
            Readout::Head(_) => tk.encode_example(text_a, text_b),
            Readout::Prompt { task, template, .. } => {
                let e = Example { idx: 0, text_a: text_a.into(), text_b: text_b.map(Into::into), label: 0, method: None, level: None, original_a: None, original_b: None };
                text_prompts::encode(tk, Self::template_of(*task, *template)?, &e)
            }
        }
    }

    /// The forward pass of a batch: `[B, C]` class logits for a head, `[B, N]` next-token logits for a
    /// prompt (the class columns are picked after the read: [`Readout::rows`]).
    pub fn forward<B: Backend>(&self, be: &B, model: &Model<B>, seqs: &[&[u32]]) -> Result<B::Tensor> {
        match self {
            Readout::Head(h) => model.classify_batch(be, seqs, Some(h)),
            Readout::Prompt { .. } => model.next_token_batch(be, seqs),
        }
    }

    /// The `[C]` class-logit rows of a batch of `n` sequences from the values [`Readout::forward`] read back.
    pub fn rows(&self, values: &[f32], n: usize) -> Result<Vec<Vec<f32>>> {
        if n == 0 || values.len() % n != 0 || values.is_empty() {
            return Err(Error::Invalid(format!("{} logits do not split into {n} rows", values.len())));
        }
        let width = values.len() / n;
        match self {
            Readout::Head(_) => Ok(values.chunks(width).map(<[f32]>::to_vec).collect()),
            Readout::Prompt { verbalizer, .. } => answer_columns(values, width, verbalizer),
        }
    }

    /// For the results: `head sst2`, or `prompt 0: "review: {a} sentiment:" → negative | positive`.
    pub fn describe(&self) -> String {
        match self {
            Readout::Head(h) => format!("head {h}"),
            Readout::Prompt { task, template, .. } => match Self::template_of(*task, *template) {
                Ok(t) => format!("prompt {template}: {:?} → {}", t.text, t.words.join(" | ")),
                Err(_) => format!("prompt {template}"),
            },
        }
    }

    pub fn is_prompt(&self) -> bool {
        matches!(self, Readout::Prompt { .. })
    }
}

/// Rows of `width` next-token logits, each cut down to the answer tokens `verbalizer` (one column per class, in class
/// order). Refused: an answer token outside the LM head's outputs.
pub fn answer_columns(values: &[f32], width: usize, verbalizer: &[u32]) -> Result<Vec<Vec<f32>>> {
    if let Some(&bad) = verbalizer.iter().find(|&&i| i as usize >= width) {
        return Err(Error::Invalid(format!("the answer token {bad} is outside the LM head's {width} outputs")));
    }
    Ok(values.chunks_exact(width).map(|r| verbalizer.iter().map(|&i| r[i as usize]).collect()).collect())
}
