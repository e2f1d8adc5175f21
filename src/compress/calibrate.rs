//! Calibration statistics of a checkpoint's block linears, read off the differentiable twin
//! ([`crate::autodiff::twin`]) while it runs a calibration set: per linear, the input column norms `‖X_j‖₂` (Wanda,
//! gradient-aware pruning), the streamed output statistics `Σy`, `Σyyᵀ` in f64 (SFSD, specs/methods.md §2.9), and
//! the gradient `G = Σ_examples ∂L/∂W` of the cross-entropy on the labels through the task's head (gradient-aware
//! pruning, §4.5.1).
//!
//! Inputs are formatted as the classifier sees them (`TextTokenizer::encode_example`: BOS + text, pairs as two
//! segments, cut to 128 tokens), batched by task and length, right-padded; padded positions are masked out of
//! every statistic (§2.9: "padded positions masked out"; the reference includes them). All three mixers are causal,
//! so a real position never sees the padding and its statistics equal those of the sequence run alone.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use candle_core::{Device, Tensor};

use super::lowrank::OutputStats;
use crate::autodiff::twin::{self, Dropout, Twin};
use crate::autodiff::vars::Params;
use crate::backend::{Data, HostTensor};
use crate::data::calibration::{CalibrationRecord, CalibrationSet};
use crate::data::Task;
use crate::error::{Error, Result};
use crate::io::Checkpoint;
use crate::models::config::{Arch, Cfg, Common};
use crate::models::init::Dims;
use crate::text::{TextTokenizer, PAD_ID};

/// Sequences per calibration batch.
pub const BATCH: usize = 16;

/// Which statistics to collect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// `Σ_t x_tj²` per input feature (Wanda, gradient-aware).
    pub inputs: bool,
    /// `Σy`, `Σyyᵀ` of the outputs (SFSD).
    pub outputs: bool,
    /// `Σ_examples ∂L/∂W` (gradient-aware).
    pub grads: bool,
}

/// The statistics of one linear `W` `[out, in]` over the real (unpadded) calibration tokens.
#[derive(Clone, Debug)]
pub struct LinearStats {
    pub out: usize,
    pub inp: usize,
    /// Token rows seen.
    pub rows: u64,
    /// `[in]`: `Σ_t x_tj²`, empty unless asked for.
    pub sum_sq: Vec<f64>,
    pub outputs: Option<OutputStats>,
    /// `[out, in]`: `Σ_examples ∂L/∂W`, summed in f64, unless not asked for.
    pub grad: Option<Vec<f64>>,
}

impl LinearStats {
    /// `‖X_j‖₂` `[in]` (Wanda's activation norms).
    pub fn col_norms(&self) -> Vec<f32> {
        self.sum_sq.iter().map(|s| s.sqrt() as f32).collect()
    }
}

/// The statistics of every targeted linear, by weight name, and the data they came from.
#[derive(Clone, Debug)]
pub struct Captured {
    pub linears: BTreeMap<String, LinearStats>,
    pub record: CalibrationRecord,
    /// Real token positions run (the rows of every linear's statistics).
    pub tokens: u64,
}

impl Captured {
    pub fn get(&self, name: &str) -> Result<&LinearStats> {
        self.linears.get(name).ok_or_else(|| Error::Invalid(format!("calibration: no statistics for {name} (the twin never ran it)")))
    }
}

/// The twin's sizes from a checkpoint's `config.json`, refusing what the twin does not implement.
pub fn twin_dims(ck: &Checkpoint) -> Result<(Dims, f64)> {
    let common = Common::parse(&ck.config)?;
    let cfg = Cfg(&ck.config);
    let heads = cfg.usize_or("num_heads", 1)?;
    let kv_heads = cfg.usize_or("num_kv_heads", heads)?;
    let unsupported = |what: &str| Err(Error::Invalid(format!("calibration: the differentiable twin has no {what}; this checkpoint needs it")));
    if kv_heads != heads && common.arch != Arch::HgrnBit {
        return unsupported("grouped key-value heads (num_kv_heads ≠ num_heads)");
    }
    if common.arch == Arch::Transformer {
        if cfg.bool_or("qk_norm", false)? {
            return unsupported("qk_norm");
        }
        if cfg.bool_or("qkv_bias", false)? {
            return unsupported("q/k/v bias");
        }
        if cfg.f64_or("rope_theta", 10_000.0)? != 10_000.0 {
            return unsupported("rope_theta other than 10000");
        }
    }
    if cfg.bool_or("use_short_conv", false)? {
        return unsupported("short convolution");
    }
    let dims = Dims {
        arch: common.arch,
        vocab: common.vocab,
        hidden: common.hidden,
        layers: common.layers,
        heads,
        kv_heads,
        intermediate: common.intermediate,
        num_labels: common.num_labels,
    };
    Ok((dims, common.norm_eps as f64))
}

/// The head tensor that classifies `task` (as `Model::head` picks it): `score.<task>.weight` when the folder has one,
/// else `score.weight` when it is the folder's default task (or the folder names none and has no extra heads).
pub fn head_tensor(ck: &Checkpoint, task: Task) -> Result<String> {
    let name = task.model_task().name();
    let own = format!("score.{name}.weight");
    if ck.tensors.contains_key(&own) {
        check_classes(ck, &own, task)?;
        return Ok(own);
    }
    let default = ck.config.get("trilemma").and_then(|t| t.get("default_task")).and_then(|d| d.as_str());
    let extra = ck.tensors.keys().any(|k| k.starts_with("score.") && k != "score.weight");
    let head = if ck.tensors.contains_key("score.weight") && (default == Some(name) || (default.is_none() && !extra)) {
        "score.weight".to_string()
    } else {
        return Err(Error::Invalid(format!("calibration: the checkpoint has no classification head for {task}")));
    };
    check_classes(ck, &head, task)?;
    Ok(head)
}

fn check_classes(ck: &Checkpoint, head: &str, task: Task) -> Result<()> {
    let classes = ck.tensors[head].shape.first().copied().unwrap_or(0);
    if classes != task.num_labels() as usize {
        return Err(Error::Invalid(format!("calibration: the head {head} has {classes} classes, but {task} has {}", task.num_labels())));
    }
    Ok(())
}

/// Right-pad `seqs` with `<pad>`: ids `[B, T]`, lengths, and which of the `B·T` positions are real.
fn pad(seqs: &[&[u32]]) -> Result<(Tensor, Vec<usize>, Vec<bool>)> {
    let t = seqs.iter().map(|s| s.len()).max().unwrap_or(1).max(1);
    let mut ids = vec![PAD_ID; seqs.len() * t];
    let mut real = vec![false; seqs.len() * t];
    for (b, s) in seqs.iter().enumerate() {
        ids[b * t..b * t + s.len()].copy_from_slice(s);
        real[b * t..b * t + s.len()].fill(true);
    }
    Ok((Tensor::from_vec(ids, (seqs.len(), t), &Device::Cpu)?, seqs.iter().map(|s| s.len()).collect(), real))
}

struct TapState {
    targets: BTreeSet<String>,
    needs: Needs,
    /// Which rows of the current batch are real.
    real: Vec<bool>,
    linears: BTreeMap<String, LinearStats>,
    err: Option<Error>,
}

impl TapState {
    fn observe(&mut self, name: &str, x: &Tensor, y: &Tensor) -> Result<()> {
        if !self.targets.contains(name) {
            return Ok(());
        }
        let (inp, out) = (*x.dims().last().unwrap_or(&0), *y.dims().last().unwrap_or(&0));
        let xs = x.flatten_all()?.to_vec1::<f32>()?;
        let rows = xs.len() / inp.max(1);
        if rows != self.real.len() {
            return Err(Error::Invalid(format!("calibration: {name} ran on {rows} rows, the batch has {}", self.real.len())));
        }
        let needs = self.needs;
        let st = match self.linears.entry(name.to_string()) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(LinearStats {
                out,
                inp,
                rows: 0,
                sum_sq: if needs.inputs { vec![0.0; inp] } else { Vec::new() },
                outputs: if needs.outputs { Some(OutputStats::new(out)?) } else { None },
                grad: None,
            }),
        };
        if st.inp != inp || st.out != out {
            return Err(Error::Invalid(format!("calibration: {name} changed shape between batches")));
        }
        let kept = self.real.iter().filter(|&&r| r).count();
        st.rows += kept as u64;
        if needs.inputs {
            for (row, _) in xs.chunks_exact(inp).zip(&self.real).filter(|(_, &r)| r) {
                for (acc, &v) in st.sum_sq.iter_mut().zip(row) {
                    *acc += v as f64 * v as f64;
                }
            }
        }
        if let Some(os) = st.outputs.as_mut() {
            let ys = y.flatten_all()?.to_vec1::<f32>()?;
            let real: Vec<f32> = ys.chunks_exact(out).zip(&self.real).filter(|(_, &r)| r).flat_map(|(row, _)| row.iter().copied()).collect();
            os.add_outputs(&real, kept)?;
        }
        Ok(())
    }
}

/// Run the calibration set through the twin of `ck` and collect `needs` for every weight named in `targets` (2-D f32
/// tensors of linears the twin runs). The tokenizer is the checkpoint's own `tokenizer.json`.
pub fn capture(ck: &Checkpoint, set: &CalibrationSet, targets: &[String], needs: Needs) -> Result<Captured> {
    if set.examples.is_empty() {
        return Err(Error::Invalid("calibration: the calibration set is empty".into()));
    }
    let tok = ck.tokenizer_json.as_ref().ok_or_else(|| Error::Invalid("calibration: the model folder has no tokenizer.json".into()))?;
    let tk = TextTokenizer::from_json_bytes(tok)?;
    let (dims, eps) = twin_dims(ck)?;
    let floats: BTreeMap<String, HostTensor> = ck.tensors.iter().filter(|(_, t)| matches!(t.data, Data::F32(_))).map(|(n, t)| (n.clone(), t.clone())).collect();
    for t in targets {
        if !floats.get(t).is_some_and(|w| w.shape.len() == 2) {
            return Err(Error::Invalid(format!("calibration: {t} is not a 2-D f32 weight of the checkpoint")));
        }
    }
    let params = Params::from_host(&floats)?;
    let twin = Twin { dims: &dims, params: &params, eps };
    // Tokenize; batch by task (one head per batch) and by length (little padding).
    let mut items: Vec<(Task, Vec<u32>, u32)> = Vec::with_capacity(set.examples.len());
    for (task, e) in &set.examples {
        let ids = tk.encode_example(&e.text_a, e.text_b.as_deref())?;
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= dims.vocab) {
            return Err(Error::Invalid(format!("calibration: token id {bad} is outside the model's vocabulary of {}", dims.vocab)));
        }
        items.push((*task, ids, e.label));
    }
    items.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.len().cmp(&b.1.len())));
    let heads: BTreeMap<Task, String> = if needs.grads {
        items.iter().map(|(t, _, _)| *t).collect::<BTreeSet<_>>().into_iter().map(|t| Ok((t, head_tensor(ck, t)?))).collect::<Result<_>>()?
    } else {
        BTreeMap::new()
    };
    let state = Rc::new(RefCell::new(TapState { targets: targets.iter().cloned().collect(), needs, real: Vec::new(), linears: BTreeMap::new(), err: None }));
    let mut grads: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut tokens = 0u64;
    let mut rng = crate::rng::SplitMix64::new(0);
    let mut start = 0;
    while start < items.len() {
        let task = items[start].0;
        let end = (start..items.len()).take(BATCH).take_while(|&i| items[i].0 == task).last().map_or(start + 1, |i| i + 1);
        let batch = &items[start..end];
        start = end;
        let seqs: Vec<&[u32]> = batch.iter().map(|(_, ids, _)| ids.as_slice()).collect();
        let (ids, lens, real) = pad(&seqs)?;
        tokens += real.iter().filter(|&&r| r).count() as u64;
        state.borrow_mut().real = real;
        let s2 = state.clone();
        let tap: twin::Tap = Box::new(move |name, x, y| {
            let mut st = s2.borrow_mut();
            if st.err.is_none() {
                if let Err(e) = st.observe(name, x, y) {
                    st.err = Some(e);
                }
            }
            Ok(())
        });
        let (hidden, _) = twin::with_tap(tap, || twin.hidden(&ids, &mut Dropout { p: 0.0, rng: &mut rng }));
        let hidden = hidden?;
        if let Some(e) = state.borrow_mut().err.take() {
            return Err(e);
        }
        if needs.grads {
            let head = params.get(&heads[&task])?;
            let logits = Twin::last_token(&hidden, &lens)?.matmul(&head.t()?)?; // [B, C]
            let c = logits.dim(1)?;
            let labels: Vec<u32> = batch.iter().map(|(_, _, l)| *l).collect();
            if let Some(&l) = labels.iter().find(|&&l| l as usize >= c) {
                return Err(Error::Invalid(format!("calibration: label {l} for a {c}-class head of {task}")));
            }
            // Σ over the batch of −log softmax(z)[label]: the sum, so G sums per-example gradients.
            let logp = twin::softmax(&logits)?.log()?;
            let idx = Tensor::from_vec(labels, (batch.len(), 1), &Device::Cpu)?;
            let loss = logp.gather(&idx, 1)?.sum_all()?.neg()?;
            let g = loss.backward()?;
            for name in targets {
                let w = params.get(name)?;
                let acc = grads.entry(name.clone()).or_insert_with(|| vec![0.0; w.elem_count()]);
                if let Some(gw) = g.get(w) {
                    for (a, v) in acc.iter_mut().zip(gw.flatten_all()?.to_vec1::<f32>()?) {
                        *a += v as f64;
                    }
                }
            }
        }
    }
    let mut linears = std::mem::take(&mut state.borrow_mut().linears);
    for name in targets {
        let st = linears.get_mut(name).ok_or_else(|| Error::Invalid(format!("calibration: the twin never ran {name}")))?;
        st.grad = grads.remove(name);
    }
    Ok(Captured { linears, record: set.record.clone(), tokens })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::calibration::subset;

    fn tiny(arch: Arch, seed: u64) -> Checkpoint {
        super::super::test_util::tiny_checkpoint(arch, seed)
    }

    fn dense_targets(ck: &Checkpoint) -> Vec<String> {
        ck.tensors.iter().filter(|(n, t)| n.starts_with("model.layers.") && t.shape.len() == 2 && matches!(t.data, Data::F32(_))).map(|(n, _)| n.clone()).collect()
    }

    #[test]
    fn statistics_equal_a_direct_computation() {
        for arch in [Arch::Transformer, Arch::Gla] {
            let ck = tiny(arch, 3);
            let set = subset(Some(Task::Sst2), 20, 5).unwrap();
            let targets = dense_targets(&ck);
            let cap = capture(&ck, &set, &targets, Needs { inputs: true, outputs: true, grads: false }).unwrap();
            // Direct: run each sequence alone (no padding) and record the raw inputs of every linear.
            let tk = TextTokenizer::from_json_bytes(ck.tokenizer_json.as_ref().unwrap()).unwrap();
            let (dims, eps) = twin_dims(&ck).unwrap();
            let floats: BTreeMap<String, HostTensor> = ck.tensors.iter().map(|(n, t)| (n.clone(), t.clone())).collect();
            let params = Params::from_host(&floats).unwrap();
            let tw = Twin { dims: &dims, params: &params, eps };
            let rows: Rc<RefCell<BTreeMap<String, (Vec<f32>, Vec<f32>)>>> = Rc::default();
            let mut tokens = 0;
            for (_, e) in &set.examples {
                let ids = tk.encode_example(&e.text_a, e.text_b.as_deref()).unwrap();
                tokens += ids.len() as u64;
                let r2 = rows.clone();
                let tap: twin::Tap = Box::new(move |name, x, y| {
                    let mut m = r2.borrow_mut();
                    let ent = m.entry(name.to_string()).or_default();
                    ent.0.extend(x.flatten_all()?.to_vec1::<f32>()?);
                    ent.1.extend(y.flatten_all()?.to_vec1::<f32>()?);
                    Ok(())
                });
                let t = Tensor::from_vec(ids.clone(), (1, ids.len()), &Device::Cpu).unwrap();
                let mut rng = crate::rng::SplitMix64::new(0);
                twin::with_tap(tap, || tw.hidden(&t, &mut Dropout { p: 0.0, rng: &mut rng })).0.unwrap();
            }
            assert_eq!(cap.tokens, tokens);
            for name in &targets {
                let st = cap.get(name).unwrap();
                let (x, y) = &rows.borrow()[name];
                assert_eq!(st.rows, tokens, "{name}");
                let norms = super::super::prune::column_norms(x, tokens as usize, st.inp).unwrap();
                for (a, b) in st.col_norms().iter().zip(&norms) {
                    assert!((a - b).abs() <= 1e-4 * b.max(1.0), "{arch:?} {name}: {a} vs {b}");
                }
                let mut direct = OutputStats::new(st.out).unwrap();
                direct.add_outputs(y, tokens as usize).unwrap();
                let (c1, c2) = (st.outputs.as_ref().unwrap().covariance().unwrap(), direct.covariance().unwrap());
                let scale = c2.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-12);
                for (a, b) in c1.iter().zip(&c2) {
                    assert!((a - b).abs() <= 1e-4 * scale, "{arch:?} {name}: covariance {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let ck = tiny(Arch::Transformer, 11);
        let set = subset(Some(Task::Sst2), 6, 2).unwrap();
        let name = "model.layers.1.mlp.down_proj.weight".to_string();
        let cap = capture(&ck, &set, std::slice::from_ref(&name), Needs { grads: true, ..Needs::default() }).unwrap();
        let g = cap.get(&name).unwrap().grad.clone().unwrap();
        // L(W) = Σ_examples CE, evaluated in f64 around W through the twin (f32 forward, central differences).
        let loss = |w: &HostTensor| -> f64 {
            let mut ck2 = ck.clone();
            ck2.tensors.insert(name.clone(), w.clone());
            let tk = TextTokenizer::from_json_bytes(ck2.tokenizer_json.as_ref().unwrap()).unwrap();
            let (dims, eps) = twin_dims(&ck2).unwrap();
            let params = Params::from_host(&ck2.tensors).unwrap();
            let tw = Twin { dims: &dims, params: &params, eps };
            let head = params.get("score.weight").unwrap();
            let mut total = 0f64;
            for (_, e) in &set.examples {
                let ids = tk.encode_example(&e.text_a, e.text_b.as_deref()).unwrap();
                let t = Tensor::from_vec(ids.clone(), (1, ids.len()), &Device::Cpu).unwrap();
                let mut rng = crate::rng::SplitMix64::new(0);
                let h = tw.hidden(&t, &mut Dropout { p: 0.0, rng: &mut rng }).unwrap();
                let z = Twin::last_token(&h, &[ids.len()]).unwrap().matmul(&head.t().unwrap()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let m = z.iter().cloned().fold(f32::MIN, f32::max) as f64;
                let lse = m + z.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
                total += lse - z[e.label as usize] as f64;
            }
            total
        };
        let w = ck.tensors[&name].clone();
        let v = w.as_f32("t").unwrap().to_vec();
        // The largest few gradient entries (well above f32 noise).
        let mut order: Vec<usize> = (0..g.len()).collect();
        order.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
        let h = 1e-2f32;
        for &i in &order[..4] {
            let mut p = v.clone();
            p[i] += h;
            let mut m = v.clone();
            m[i] -= h;
            let fd = (loss(&HostTensor::f32(&w.shape, p).unwrap()) - loss(&HostTensor::f32(&w.shape, m).unwrap())) / (2.0 * h as f64);
            assert!((fd - g[i]).abs() <= 0.02 * g[i].abs() + 1e-4, "entry {i}: finite difference {fd} vs autograd {}", g[i]);
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let ck = tiny(Arch::Transformer, 1);
        let set = subset(Some(Task::Sst2), 4, 1).unwrap();
        let bad = vec!["model.layers.0.attn_norm.weight".to_string()];
        assert!(matches!(capture(&ck, &set, &bad, Needs { inputs: true, ..Needs::default() }), Err(Error::Invalid(_))));
        let mut no_tok = ck.clone();
        no_tok.tokenizer_json = None;
        assert!(matches!(capture(&no_tok, &set, &dense_targets(&ck), Needs { inputs: true, ..Needs::default() }), Err(Error::Invalid(_))));
        // A task the checkpoint has no head for, when gradients need the head.
        let mnli = subset(Some(Task::Mnli), 4, 1).unwrap();
        assert!(matches!(capture(&ck, &mnli, &dense_targets(&ck), Needs { grads: true, ..Needs::default() }), Err(Error::Invalid(_))));
    }
}
