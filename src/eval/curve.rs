//! Hemorrhage curves and their thresholds (specs/methods.md §4.4): a modification's strength `s`
//! against the damage `y(s)`, here `y = −log retention` with `retention = acc(M′)/acc(M)` for a
//! classifier (`log PPL` for an LM).
//!
//! The fit is methods.md's own parameterisation [default: the follow-up paper describes the shape
//! only as "a power law, then an exponential"]: `y(s) = a + b·s^c` for `s ≤ s0` and
//! `y(s) = a + b·s0^c + k·(s − s0)` for `s > s0` (exponential growth of the loss is linear in its
//! log). `s0` runs over the midpoints of the measured strengths and `c` over {0.5, 1, 1.5, 2, 3};
//! for each pair `a, b, k` are least squares (the model is linear in them); the pair with the
//! lowest squared error wins and its `s0` is the **threshold** (phase-transition point). Beside it,
//! the simple threshold `s*₅%`: the largest measured `s` whose retention is still ≥ 0.95.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Exponents tried for the power-law part.
pub const EXPONENTS: [f64; 5] = [0.5, 1.0, 1.5, 2.0, 3.0];
/// Retention the simple threshold keeps (methods.md §4.4: PPL ratio ≤ 1.05, or retention ≥ 0.95).
pub const SIMPLE_RETENTION: f64 = 0.95;

/// The winning piecewise fit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurveFit {
    /// The threshold: where the power law gives way to the exponential.
    pub s0: f64,
    pub c: f64,
    pub a: f64,
    pub b: f64,
    pub k: f64,
    /// Sum of squared residuals.
    pub sse: f64,
}

impl CurveFit {
    /// `y(s)` of the fitted curve.
    pub fn at(&self, s: f64) -> f64 {
        let (f2, f3) = features(s, self.s0, self.c);
        self.a + self.b * f2 + self.k * f3
    }
}

/// The two non-constant regressors: `min(s, s0)^c` and `max(s − s0, 0)`.
fn features(s: f64, s0: f64, c: f64) -> (f64, f64) {
    (s.min(s0).max(0.0).powf(c), (s - s0).max(0.0))
}

/// Least squares of `y ≈ a + b·f2 + k·f3` by the 3×3 normal equations (Gaussian elimination with
/// partial pivoting); `None` when they are singular (the regressors are collinear on these points).
fn least_squares(rows: &[(f64, f64, f64)]) -> Option<[f64; 3]> {
    let mut m = [[0f64; 4]; 3];
    for &(f2, f3, y) in rows {
        let f = [1.0, f2, f3];
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] += f[i] * f[j];
            }
            m[i][3] += f[i] * y;
        }
    }
    let scale = m.iter().flat_map(|r| r[..3].iter()).fold(0f64, |a, &v| a.max(v.abs())).max(1e-300);
    for col in 0..3 {
        let p = (col..3).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        if m[p][col].abs() <= 1e-12 * scale {
            return None;
        }
        m.swap(col, p);
        for r in 0..3 {
            if r != col {
                let f = m[r][col] / m[col][col];
                for j in col..4 {
                    m[r][j] -= f * m[col][j];
                }
            }
        }
    }
    Some([m[0][3] / m[0][0], m[1][3] / m[1][1], m[2][3] / m[2][2]])
}

/// Fits the piecewise curve to `(s, y)` points. `Ok(None)` when there are fewer than 3 distinct
/// strengths (three unknowns need three points) or no candidate is solvable; an error for a
/// non-finite point.
pub fn fit(points: &[(f64, f64)]) -> Result<Option<CurveFit>> {
    if let Some((s, y)) = points.iter().find(|(s, y)| !s.is_finite() || !y.is_finite()) {
        return Err(Error::Invalid(format!("hemorrhage curve: non-finite point ({s}, {y})")));
    }
    let mut xs: Vec<f64> = points.iter().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    if xs.len() < 3 {
        return Ok(None);
    }
    let mut best: Option<CurveFit> = None;
    for w in xs.windows(2) {
        let s0 = (w[0] + w[1]) / 2.0;
        for &c in &EXPONENTS {
            let rows: Vec<(f64, f64, f64)> = points
                .iter()
                .map(|&(s, y)| {
                    let (f2, f3) = features(s, s0, c);
                    (f2, f3, y)
                })
                .collect();
            let Some([a, b, k]) = least_squares(&rows) else { continue };
            let cand = CurveFit { s0, c, a, b, k, sse: 0.0 };
            let sse = points.iter().map(|&(s, y)| (cand.at(s) - y).powi(2)).sum::<f64>();
            // Ties keep the earlier candidate (smaller s0, then smaller c): the numbers do not depend on float noise order.
            if best.as_ref().is_none_or(|b| sse < b.sse - 1e-12 * (1.0 + b.sse)) {
                best = Some(CurveFit { sse, ..cand });
            }
        }
    }
    Ok(best)
}

/// `s*₅%`: the largest strength whose retention is ≥ [`SIMPLE_RETENTION`]; `None` when none is.
pub fn simple_threshold(points: &[(f64, f64)]) -> Option<f64> {
    points.iter().filter(|(_, r)| *r >= SIMPLE_RETENTION).map(|(s, _)| *s).max_by(f64::total_cmp)
}

/// `y = −log retention`, retention floored at 1e-6 so a collapse to zero accuracy stays finite.
pub fn damage(retention: f64) -> f64 {
    -retention.max(1e-6).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_known_piecewise_curve() {
        // a = 0.1, b = 2, c = 2, s0 = 0.55 (the midpoint of 0.5 and 0.6), k = 5.
        let truth = CurveFit { s0: 0.55, c: 2.0, a: 0.1, b: 2.0, k: 5.0, sse: 0.0 };
        let pts: Vec<(f64, f64)> = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9].iter().map(|&s| (s, truth.at(s))).collect();
        let f = fit(&pts).unwrap().unwrap();
        assert!((f.s0 - 0.55).abs() < 1e-12, "{f:?}");
        assert_eq!(f.c, 2.0);
        assert!((f.a - 0.1).abs() < 1e-9 && (f.b - 2.0).abs() < 1e-9 && (f.k - 5.0).abs() < 1e-9, "{f:?}");
        assert!(f.sse < 1e-18);
    }

    #[test]
    fn by_hand_values() {
        // y(0.3) with s0 = 0.25, c = 1, a = 0, b = 1, k = 10: 0.25 + 10·0.05 = 0.75.
        let f = CurveFit { s0: 0.25, c: 1.0, a: 0.0, b: 1.0, k: 10.0, sse: 0.0 };
        assert!((f.at(0.3) - 0.75).abs() < 1e-12);
        assert!((f.at(0.2) - 0.2).abs() < 1e-12);
        assert!((damage(0.5) - std::f64::consts::LN_2).abs() < 1e-12);
        assert_eq!(damage(0.0), -(1e-6f64).ln());
        assert_eq!(simple_threshold(&[(0.0, 1.0), (0.3, 0.97), (0.5, 0.96), (0.7, 0.5)]), Some(0.5));
        assert_eq!(simple_threshold(&[(0.3, 0.9)]), None);
    }

    #[test]
    fn too_few_points_and_bad_points() {
        assert_eq!(fit(&[]).unwrap(), None);
        assert_eq!(fit(&[(0.0, 0.0), (0.5, 1.0)]).unwrap(), None);
        assert_eq!(fit(&[(0.0, 0.0), (0.5, 1.0), (0.5, 1.1)]).unwrap(), None, "two distinct strengths only");
        assert!(fit(&[(0.0, f64::NAN), (0.5, 1.0), (0.7, 1.0)]).is_err());
        // Three points: an exact fit exists (three unknowns).
        let f = fit(&[(0.0, 0.0), (0.5, 0.1), (0.9, 3.0)]).unwrap().unwrap();
        assert!(f.sse < 1e-18, "{f:?}");
    }
}
