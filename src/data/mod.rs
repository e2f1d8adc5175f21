//! GLUE / AdvGLUE data: task definitions ([`Task`]), the JSONL reader ([`parse_jsonl`]) and the
//! bundled splits ([`Split`], [`BUNDLED`], [`load_split`] on native, [`parse_bundled`] on both).
//!
//! Layout and provenance of the files: `assets/data/README.md` (GLUE validation, AdvGLUE dev;
//! served by the page) and `assets/train/README.md` (GLUE train; native only). Field names and
//! label ids follow the Hugging Face `glue` card; AdvGLUE uses the same. [`calibration`]: the bundled calibration
//! set (a few GLUE train rows per task, compiled in) and its seeded subsets.

pub mod calibration;
mod jsonl;
mod split;
mod task;

pub use jsonl::{parse_jsonl, AttackLevel, Example};
#[cfg(not(target_arch = "wasm32"))]
pub use split::load_split;
pub use split::{bundled, bundled_path, parse_bundled, BundledFile, Split, BUNDLED};
pub use task::{GlueMetric, Task};

/// The gold labels of a list of examples, in order (the `labels` argument of `eval::metrics`).
pub fn labels(examples: &[Example]) -> Vec<u32> {
    examples.iter().map(|e| e.label).collect()
}
