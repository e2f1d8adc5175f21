//! Evaluation: metrics with the conventions of scikit-learn, the Hugging Face GLUE metric and
//! AdvGLUE's `evaluate.py`, and seeded bootstrap confidence intervals ([`metrics`]).

pub mod curve;
pub mod hemorrhage;
pub mod metrics;
pub mod readout;

pub use metrics::{
    accuracy, advglue_score, bootstrap_ci, f1_binary, glue_score, majority_baseline, majority_label, matthews_corrcoef,
    AdvGlueScore, BinaryCounts, GlueScore,
};

use crate::backend::cpu::CpuBackend;
use crate::backend::{Backend, HostTensor, TensorMeta};
use crate::data::{Example, Split, Task};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::text::TextTokenizer;
pub use readout::{Readout, ReadoutChoice};

/// Sequences per batch and padded tokens per batch (B·T) of the evaluation loops: large enough
/// that the products are matrix-sized, small enough that padding and memory stay modest.
pub const MAX_BATCH: usize = 32;
pub const MAX_BATCH_TOKENS: usize = 2048;

/// Group example indices into batches of similar length (sorted by length, ties by index, so the
/// grouping — and the numbers — depend only on the inputs): at most `max_batch` sequences and
/// `max_tokens` padded tokens each (a longer sequence gets a batch of its own).
pub fn batches(lengths: &[usize], max_batch: usize, max_tokens: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| (lengths[i], i));
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    for i in order {
        // Sorted ascending: this sequence is the longest so far, so it sets the padding.
        if !cur.is_empty() && (cur.len() >= max_batch.max(1) || (cur.len() + 1) * lengths[i] > max_tokens) {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(i);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The work of one evaluation loop: how the class logits are read ([`Readout`]: `task`'s head, or a text
/// prompt through the LM head), every example's token ids, and the length-sorted batches to run them in.
/// The batches depend only on the examples and `max_batch`, and each batch's logits only on its
/// sequences, so running any subset of batches anywhere (the page's workers) and putting the rows
/// back by example index gives the same numbers as one loop over all of them.
pub struct Plan {
    pub readout: Readout,
    pub seqs: Vec<Vec<u32>>,
    pub batches: Vec<Vec<usize>>,
}

impl Plan {
    /// The plan with the automatic readout ([`ReadoutChoice::Auto`], template 0).
    pub fn new<B: Backend>(model: &Model<B>, tk: &TextTokenizer, task: Task, examples: &[Example], max_batch: usize) -> Result<Self> {
        Self::with_readout(tk, Readout::resolve(model, tk, task, ReadoutChoice::Auto, 0)?, examples, max_batch)
    }

    pub fn with_readout(tk: &TextTokenizer, readout: Readout, examples: &[Example], max_batch: usize) -> Result<Self> {
        if max_batch == 0 {
            return Err(Error::Invalid("the batch size must be positive".into()));
        }
        let seqs = examples.iter().map(|e| readout.encode(tk, &e.text_a, e.text_b.as_deref())).collect::<Result<Vec<_>>>()?;
        let lengths: Vec<usize> = seqs.iter().map(Vec::len).collect();
        let batches = batches(&lengths, max_batch, MAX_BATCH_TOKENS);
        Ok(Self { readout, seqs, batches })
    }

    /// Padded tokens of batch `b` (sequences × the longest): its share of the work.
    pub fn padded_tokens(&self, b: usize) -> usize {
        let batch = &self.batches[b];
        batch.len() * batch.iter().map(|&i| self.seqs[i].len()).max().unwrap_or(0)
    }

    /// Batch `b`'s forward pass (see [`Readout::forward`]); read it and [`Plan::scatter`] the rows.
    pub fn forward<B: Backend>(&self, be: &B, model: &Model<B>, b: usize) -> Result<B::Tensor> {
        self.readout.forward(be, model, &self.batch(b))
    }

    /// Batch `b` through `model`: one `[C]` row of class logits per example of the batch, in the
    /// batch's order (the GPU path reads back only these, or the next-token logits of a prompt readout).
    pub async fn batch_logits<B: Backend>(&self, be: &B, model: &Model<B>, b: usize) -> Result<Vec<Vec<f32>>> {
        self.rows(b, &be.read(&self.forward(be, model, b)?).await?)
    }

    /// Batch `b`'s logits, as read back for that batch, split into one class row per example.
    fn rows(&self, b: usize, logits: &HostTensor) -> Result<Vec<Vec<f32>>> {
        self.readout.rows(logits.as_f32("logits")?, self.batches[b].len())
    }

    /// Batch `b`'s logits, as read back for that batch, into `out` (one row per example).
    pub fn scatter(&self, b: usize, logits: &HostTensor, out: &mut [Vec<f32>]) -> Result<()> {
        for (row, &i) in self.rows(b, logits)?.into_iter().zip(&self.batches[b]) {
            out[i] = row;
        }
        Ok(())
    }

    pub fn batch(&self, b: usize) -> Vec<&[u32]> {
        self.batches[b].iter().map(|&i| self.seqs[i].as_slice()).collect()
    }
}

/// Predicted labels of `model` on `examples` with `task`'s head (MNLI mismatched uses the MNLI
/// head) on the CPU backend, in length-sorted batches ([`batches`]). A head whose class count
/// differs from the task's is refused.
pub fn predict_cpu(be: &CpuBackend, model: &Model<CpuBackend>, tk: &TextTokenizer, task: Task, examples: &[Example]) -> Result<Vec<u32>> {
    let plan = Plan::new(model, tk, task, examples, MAX_BATCH)?;
    let mut rows = vec![Vec::new(); examples.len()];
    for b in 0..plan.batches.len() {
        let logits = be.read_sync(&plan.forward(be, model, b)?)?;
        plan.scatter(b, &logits, &mut rows)?;
    }
    Ok(argmax_rows(&rows))
}

/// One task scored on one split, with the majority-class baseline beside it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TaskEval {
    pub task: Task,
    pub split: Split,
    pub score: GlueScore,
    /// Predicting the most frequent training label for every example.
    pub majority: GlueScore,
    pub seconds: f64,
    pub examples_per_second: f64,
}

/// Score `model` on `examples` of `task`; `train_labels` give the majority baseline.
pub fn evaluate_cpu(
    be: &CpuBackend,
    model: &Model<CpuBackend>,
    tk: &TextTokenizer,
    task: Task,
    split: Split,
    examples: &[Example],
    train_labels: &[u32],
) -> Result<(TaskEval, Vec<u32>)> {
    let t0 = std::time::Instant::now();
    let preds = predict_cpu(be, model, tk, task, examples)?;
    let seconds = t0.elapsed().as_secs_f64();
    let labels = crate::data::labels(examples);
    let score = glue_score(task, &preds, &labels)?;
    let majority = majority_baseline(task, train_labels, &labels)?;
    Ok((TaskEval { task, split, score, majority, seconds, examples_per_second: examples.len() as f64 / seconds.max(1e-9) }, preds))
}

/// Class logits of `model` for every example (one `[C]` row each), with `task`'s head, on any
/// backend, in length-sorted batches ([`batches`]): the GPU path reads back only each batch's
/// final logits (one submission per batch).
pub async fn logits<B: Backend>(be: &B, model: &Model<B>, tk: &TextTokenizer, task: Task, examples: &[Example]) -> Result<Vec<Vec<f32>>> {
    logits_batched(be, model, tk, task, examples, MAX_BATCH).await
}

/// [`logits`] with at most `max_batch` sequences per batch (1: one at a time).
pub async fn logits_batched<B: Backend>(be: &B, model: &Model<B>, tk: &TextTokenizer, task: Task, examples: &[Example], max_batch: usize) -> Result<Vec<Vec<f32>>> {
    let plan = Plan::new(model, tk, task, examples, max_batch)?;
    let mut out = vec![Vec::new(); examples.len()];
    for b in 0..plan.batches.len() {
        let logits = be.read(&plan.forward(be, model, b)?).await?;
        plan.scatter(b, &logits, &mut out)?;
    }
    Ok(out)
}

/// Softmax of one row of class logits (max-subtracted).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|&x| (x - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|&x| x / s).collect()
}

/// The predicted class of each logit row (first maximum, as argmax).
pub fn argmax_rows(rows: &[Vec<f32>]) -> Vec<u32> {
    rows.iter().map(|r| argmax(r)).collect()
}

/// Index of the largest value of a row by `f32::total_cmp`, the first on ties (0 for an empty row): the
/// predicted label everywhere in the crate.
pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (j, x) in row.iter().enumerate().skip(1) {
        if x.total_cmp(&row[best]).is_gt() {
            best = j;
        }
    }
    best as u32
}

/// The name of `model`'s head for `task` (MNLI mismatched uses the MNLI head), refused when its class count
/// differs from the task's.
pub fn task_head<B: Backend>(model: &Model<B>, task: Task) -> Result<&'static str> {
    let head = task.model_task().name();
    let classes = model.head(Some(head))?.shape()[0];
    if classes != task.num_labels() as usize {
        return Err(Error::Invalid(format!("the model's head for {task} has {classes} classes, but {task} has {}", task.num_labels())));
    }
    Ok(head)
}

/// How two backends' logits compare on the same examples.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Agreement {
    pub n: usize,
    pub same_labels: usize,
    pub max_abs_diff: f32,
    /// The examples whose labels differ (positions in the list).
    pub differing: Vec<usize>,
}

pub fn agreement(a: &[Vec<f32>], b: &[Vec<f32>]) -> Result<Agreement> {
    if a.len() != b.len() {
        return Err(Error::Invalid(format!("agreement: {} vs {} rows", a.len(), b.len())));
    }
    let (la, lb) = (argmax_rows(a), argmax_rows(b));
    let differing: Vec<usize> = (0..a.len()).filter(|&i| la[i] != lb[i]).collect();
    let max_abs_diff = a.iter().zip(b).flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs())).fold(0f32, f32::max);
    Ok(Agreement { n: a.len(), same_labels: a.len() - differing.len(), max_abs_diff, differing })
}

#[cfg(test)]
mod batch_tests {
    use super::batches;

    #[test]
    fn batches_group_by_length_and_respect_both_limits() {
        let lengths = [5, 1, 9, 5, 2, 100, 3];
        let b = batches(&lengths, 3, 20);
        // Sorted: 1(1) 2(4) 3(6) | 5(0) 5(3) | 9(2) | 100(5)  — 3·5 = 15 but 3·9 = 27 > 20.
        assert_eq!(b, vec![vec![1, 4, 6], vec![0, 3], vec![2], vec![5]]);
        let mut all: Vec<usize> = b.concat();
        all.sort();
        assert_eq!(all, (0..lengths.len()).collect::<Vec<_>>());
        assert!(batches(&[], 4, 10).is_empty());
        assert_eq!(batches(&[7, 7], 0, 0), vec![vec![0], vec![1]]);
    }
}
