//! Evaluation: metrics with the conventions of scikit-learn, the Hugging Face GLUE metric and
//! AdvGLUE's `evaluate.py`, and seeded bootstrap confidence intervals ([`metrics`]).

pub mod metrics;

pub use metrics::{
    accuracy, advglue_score, bootstrap_ci, f1_binary, glue_score, majority_baseline, majority_label, matthews_corrcoef,
    AdvGlueScore, BinaryCounts, GlueScore,
};

use crate::backend::cpu::CpuBackend;
use crate::backend::{Backend, TensorMeta};
use crate::data::{Example, Split, Task};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::text::TextTokenizer;

/// Predicted labels of `model` on `examples` with `task`'s head (MNLI mismatched uses the MNLI
/// head), one unpadded sequence at a time on the CPU backend. A head whose class count differs
/// from the task's is refused.
pub fn predict_cpu(be: &CpuBackend, model: &Model<CpuBackend>, tk: &TextTokenizer, task: Task, examples: &[Example]) -> Result<Vec<u32>> {
    let head_task = task.model_task().name();
    let classes = model.head(Some(head_task))?.shape()[0];
    if classes != task.num_labels() as usize {
        return Err(Error::Invalid(format!("the model's head for {task} has {classes} classes, but {task} has {}", task.num_labels())));
    }
    examples
        .iter()
        .map(|e| {
            let ids = tk.encode_example(&e.text_a, e.text_b.as_deref())?;
            let logits = be.read_sync(&model.classify_task(be, &ids, Some(head_task))?)?;
            Ok(crate::demo::top_k(logits.as_f32("logits")?, 1)[0].0 as u32)
        })
        .collect()
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
/// backend: the GPU path reads back only each example's final logits.
pub async fn logits<B: Backend>(be: &B, model: &Model<B>, tk: &TextTokenizer, task: Task, examples: &[Example]) -> Result<Vec<Vec<f32>>> {
    let head_task = task.model_task().name();
    let classes = model.head(Some(head_task))?.shape()[0];
    if classes != task.num_labels() as usize {
        return Err(Error::Invalid(format!("the model's head for {task} has {classes} classes, but {task} has {}", task.num_labels())));
    }
    let mut out = Vec::with_capacity(examples.len());
    for e in examples {
        let ids = tk.encode_example(&e.text_a, e.text_b.as_deref())?;
        out.push(be.read(&model.classify_task(be, &ids, Some(head_task))?).await?.as_f32("logits")?.to_vec());
    }
    Ok(out)
}

/// The predicted class of each logit row (first maximum, as argmax).
pub fn argmax_rows(rows: &[Vec<f32>]) -> Vec<u32> {
    rows.iter().map(|r| crate::demo::top_k(r, 1).first().map_or(0, |t| t.0 as u32)).collect()
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
