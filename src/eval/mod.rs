//! Evaluation: metrics with the conventions of scikit-learn, the Hugging Face GLUE metric and
//! AdvGLUE's `evaluate.py`, and seeded bootstrap confidence intervals ([`metrics`]).

pub mod metrics;

pub use metrics::{
    accuracy, advglue_score, bootstrap_ci, f1_binary, glue_score, majority_baseline, majority_label, matthews_corrcoef,
    AdvGlueScore, BinaryCounts, GlueScore,
};
