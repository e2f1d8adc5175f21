//! The surgical scan run against a task ([`crate::compress::surgical`]): the candidates are scored by
//! accuracy on the task's validation examples, on the CPU backend (the scan's numbers must be the
//! same wherever the run's evaluations happen), with feature-space bases from the calibration data (or
//! weight-space ones).

use crate::backend::cpu::CpuBackend;
use crate::compress::apply::{Calibration, CompressionRecord, Form, Recipe};
use crate::compress::{lowrank, surgical};
use crate::data::{Example, Task};
use crate::error::{Error, Result};
use crate::io::Checkpoint;
use crate::models::Model;
use crate::text::TextTokenizer;

/// Runs `recipe` (a [`Recipe::Surgical`]) on `ck` with `task`'s validation `examples`: the compressed
/// checkpoint (packed: the accepted decompositions as their factors) and its record, scan included.
/// `cal` names the calibration subset of the feature-space bases.
pub async fn compress(ck: &Checkpoint, recipe: &Recipe, task: Task, examples: &[Example], cal: &Calibration) -> Result<(Checkpoint, CompressionRecord)> {
    compress_form(ck, recipe, task, examples, cal, Form::Packed).await
}

/// [`compress`], writing the result in `form`. The scan itself always evaluates the reference form (the product of
/// the factors), so its record is the same in both.
pub async fn compress_form(ck: &Checkpoint, recipe: &Recipe, task: Task, examples: &[Example], cal: &Calibration, form: Form) -> Result<(Checkpoint, CompressionRecord)> {
    let (packed, reference, rec) = compress_both(ck, recipe, task, examples, cal).await?;
    Ok((if form == Form::Packed { packed } else { reference }, rec))
}

/// [`compress`] in both forms from one scan: (packed, reference, record). The reference form is what the soft
/// prompts' differentiable twin reads ([`crate::repair::prompts::FrozenTwin`]).
pub async fn compress_both(ck: &Checkpoint, recipe: &Recipe, task: Task, examples: &[Example], cal: &Calibration) -> Result<(Checkpoint, Checkpoint, CompressionRecord)> {
    let Recipe::Surgical { delta, start_block, space, mean_correction } = recipe else {
        return Err(Error::Invalid(format!("not a surgical scan: {}", recipe.label())));
    };
    recipe.check()?;
    let layers = ck.config_usize("num_hidden_layers")?;
    let start = start_block.unwrap_or_else(|| surgical::default_start_block(layers));
    let targets = surgical::targets(ck, start)?;
    let mut rec = CompressionRecord {
        recipe: recipe.clone(),
        tensors: 0,
        weights: 0,
        skipped: Vec::new(),
        bytes_f32: 0,
        bytes_compressed: 0,
        bits_per_weight: 32.0,
        sparsity: 0.0,
        relative_error: 0.0,
        layers_before: layers,
        layers_after: layers,
        scan: None,
        effective_depth: layers,
        calibration: None,
    };
    let (mut packed, mut reference) = (ck.clone(), ck.clone());
    if targets.is_empty() {
        rec.skipped.push("no decomposable f32 linear (HGRN-bit's BitLinears are packed ternary; SFSD leaves them dense, methods.md §2.9)".into());
    } else {
        let tk = TextTokenizer::from_json_bytes(ck.tokenizer_json.as_deref().ok_or_else(|| Error::Invalid("the folder has no tokenizer.json".into()))?)?;
        let bases = match space {
            surgical::Space::Weight => surgical::weight_bases(ck, &targets)?,
            surgical::Space::Feature => {
                let set = crate::data::calibration::subset(cal.task, cal.size, cal.seed)?;
                let (bases, record) = surgical::feature_bases(ck, &targets, &set, *mean_correction)?;
                rec.calibration = Some(record);
                bases
            }
        };
        let order = surgical::shuffled(examples.len(), surgical::SHUFFLE_SEED);
        let be = CpuBackend::new();
        let eval = async |c: &Checkpoint, range: std::ops::Range<usize>| -> Result<f64> {
            let model = Model::load(&be, c.clone())?;
            let ex: Vec<Example> = order[range].iter().map(|&i| examples[i].clone()).collect();
            let logits = crate::eval::logits(&be, &model, &tk, task, &ex).await?;
            let right = logits.iter().zip(&ex).filter(|(l, e)| crate::eval::argmax(l) == e.label).count();
            Ok(right as f64 / ex.len().max(1) as f64)
        };
        let (compressed, scan) = surgical::scan(ck, &targets, &bases, examples.len(), *delta, start, eval).await?;
        let (mut err2, mut norm2) = (0f64, 0f64);
        for t in targets.iter().filter(|t| scan.ranks.contains_key(&t.prefix)) {
            let name = format!("{}.weight", t.prefix);
            let (a, b) = (ck.tensors[&name].as_f32("scan")?, compressed.tensors[&name].as_f32("scan")?);
            for (x, y) in a.iter().zip(b) {
                err2 += ((x - y) as f64).powi(2);
                norm2 += (*x as f64).powi(2);
            }
            rec.tensors += 1;
            rec.weights += t.out * t.inp;
            rec.bytes_f32 += 4 * t.out * t.inp;
            rec.bytes_compressed += 4 * (lowrank::factor_params(t.out, t.inp, scan.ranks[&t.prefix]) + bases[&t.prefix].bias_params());
        }
        rec.relative_error = if norm2 > 0.0 { (err2 / norm2).sqrt() } else { 0.0 };
        rec.bits_per_weight = if rec.weights > 0 { 8.0 * rec.bytes_compressed as f64 / rec.weights as f64 } else { 32.0 };
        packed = surgical::compose_form(ck, &targets, &bases, &scan.ranks, Form::Packed)?;
        reference = compressed;
        rec.scan = Some(scan);
    }
    crate::compress::apply::write_record(&mut packed, &rec)?;
    crate::compress::apply::write_record(&mut reference, &rec)?;
    Ok((packed, reference, rec))
}
