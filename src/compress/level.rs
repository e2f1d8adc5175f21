//! How strong a compression is, on one axis per family, so several compressions of the same kind
//! make a hemorrhage curve (specs/methods.md §4.4: "sweep the modification strength s (sparsity,
//! 1 − bits/16, rank reduction, Δ for LP, …)"). Every strength lies in [0, 1], 0 being the original.
//!
//! - pruning (magnitude, structured rows or heads, N:M, Wanda, gradient-aware; one curve each): the share of weights
//!   (or heads) removed;
//! - quantisation (int8, int4, ternary — one family, so the three make one curve): `1 − bits/32`
//!   with the stored bits per weight, scales included [default: our originals are f32, not the
//!   fp16 of the hemorrhage paper's `1 − bits/16`];
//! - low rank (svd, sfsd): the rank reduction `1 − ρ`;
//! - dropping layers: the share of blocks removed;
//! - layer parallelism: Δ/L, the share of blocks run in parallel pairs (methods.md §4.4's "Δ for LP",
//!   normalised by depth).

use super::apply::{CompressionRecord, Pattern, Recipe};

/// One compression placed on its family's axis.
#[derive(Clone, Debug, PartialEq)]
pub struct Level {
    /// The curve it belongs to ("magnitude", "quantisation", …).
    pub family: String,
    /// What `value` measures.
    pub axis: &'static str,
    pub value: f64,
}

const SPARSITY: &str = "share of weights removed";

/// The strength of `recipe`, given what it did; `None` for a compression with no natural strength.
pub fn level(recipe: &Recipe, rec: &CompressionRecord) -> Option<Level> {
    let l = |family: &str, axis: &'static str, value: f64| Some(Level { family: family.into(), axis, value });
    match recipe {
        Recipe::Magnitude { sparsity } => l("magnitude", SPARSITY, *sparsity),
        Recipe::StructuredRows { sparsity } => l("structured rows", SPARSITY, *sparsity),
        Recipe::NM { n, m } => l("N:M", SPARSITY, 1.0 - *n as f64 / *m as f64),
        Recipe::Int8 { activations } | Recipe::Int4 { activations, .. } | Recipe::Ternary { activations } => {
            let family = if activations.is_f32() { "quantisation" } else { "quantisation, int8 activations" };
            l(family, "1 − bits per weight / 32", (1.0 - rec.bits_per_weight / 32.0).clamp(0.0, 1.0))
        }
        Recipe::Svd { rank_fraction } => l("svd", "rank reduction 1 − ρ", 1.0 - rank_fraction),
        Recipe::DropLayers { layers } => l("drop layers", "share of blocks removed", layers.len() as f64 / rec.layers_before.max(1) as f64),
        Recipe::Wanda { sparsity, pattern, n, m } => l("wanda", SPARSITY, pruned_share(*sparsity, *pattern, *n, *m)),
        Recipe::GradientAware { sparsity, pattern, n, m, .. } => l("gradient-aware", SPARSITY, pruned_share(*sparsity, *pattern, *n, *m)),
        Recipe::StructuredHeads { sparsity } => l("structured heads", "share of heads removed", *sparsity),
        Recipe::Sfsd { rank_fraction, .. } => l("sfsd", "rank reduction 1 − ρ", 1.0 - rank_fraction),
        Recipe::LayerParallel { start, end, .. } => {
            l("layer parallel", "share of blocks paired Δ/L", (end - start) as f64 / rec.layers_before.max(1) as f64)
        }
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

fn pruned_share(sparsity: Option<f64>, pattern: Pattern, n: usize, m: usize) -> f64 {
    match pattern {
        Pattern::NM => 1.0 - n as f64 / m.max(1) as f64,
        _ => sparsity.unwrap_or(0.0),
    }
}
