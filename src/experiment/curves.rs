//! Hemorrhage curves of a run (specs/methods.md §4.4): the hemorrhage rows of one original, on one
//! (task, split), grouped by compression family ([`crate::compress::level`]) and ordered by strength,
//! the original itself at strength 0; with the piecewise fit's threshold and the simple 95%
//! threshold ([`crate::eval::curve`]). A family needs compressions at two strengths or more; the fit
//! needs three points (the original included).

use super::{Hemorrhage, ModelRecord};
use crate::data::{Split, Task};
use crate::error::Result;
use crate::eval::curve::{self, CurveFit};
use serde::{Deserialize, Serialize};

/// One point of a curve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// The compressed copy (the original's own name at strength 0).
    pub model: String,
    pub strength: f64,
    pub accuracy: f64,
    /// Compressed accuracy / original accuracy.
    pub retention: f64,
    /// Mean KL(original ‖ compressed), nats.
    pub kl: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HemorrhageCurve {
    pub base: String,
    pub task: Task,
    pub split: Split,
    pub family: String,
    /// What the strength measures.
    pub axis: String,
    /// By strength, the original first.
    pub points: Vec<CurvePoint>,
    /// The fit of `−log retention` against strength; `None` with fewer than 3 strengths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit: Option<CurveFit>,
    /// The largest strength with retention ≥ 0.95.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_95: Option<f64>,
}

/// Every curve the rows allow, in the order the originals, tasks, splits and families first appear.
pub fn curves(models: &[ModelRecord], rows: &[Hemorrhage]) -> Result<Vec<HemorrhageCurve>> {
    let mut out: Vec<HemorrhageCurve> = Vec::new();
    for h in rows {
        let Some(rec) = models.iter().find(|m| m.name == h.model) else { continue };
        let Some(c) = &rec.compression else { continue };
        let Some(level) = crate::compress::level::level(&c.recipe, c) else { continue };
        let retention = if h.base_accuracy > 0.0 { h.accuracy / h.base_accuracy } else { 1.0 };
        let point = CurvePoint { model: h.model.clone(), strength: level.value, accuracy: h.accuracy, retention, kl: h.kl };
        match out.iter_mut().find(|x| x.base == h.base && x.task == h.task && x.split == h.split && x.family == level.family) {
            Some(x) => x.points.push(point),
            None => out.push(HemorrhageCurve {
                base: h.base.clone(),
                task: h.task,
                split: h.split,
                family: level.family,
                axis: level.axis.into(),
                points: vec![CurvePoint { model: h.base.clone(), strength: 0.0, accuracy: h.base_accuracy, retention: 1.0, kl: 0.0 }, point],
                fit: None,
                threshold_95: None,
            }),
        }
    }
    out.retain(|x| x.points.len() >= 3);
    for x in &mut out {
        x.points.sort_by(|a, b| a.strength.total_cmp(&b.strength));
        let damage: Vec<(f64, f64)> = x.points.iter().map(|p| (p.strength, curve::damage(p.retention))).collect();
        x.fit = curve::fit(&damage)?;
        x.threshold_95 = curve::simple_threshold(&x.points.iter().map(|p| (p.strength, p.retention)).collect::<Vec<_>>());
    }
    Ok(out)
}
