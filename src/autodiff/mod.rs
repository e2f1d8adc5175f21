//! Differentiable forwards on candle-core tensors, for everything that needs gradients: training
//! the bundled models natively ([`crate::train`]), and in the browser too, where the compression
//! and repair methods need them (gradient-aware pruning, soft prompts, calibration statistics).
//!
//! - [`twin`]: the batched, differentiable twin of the three inference forwards (`src/models/*`).
//! - [`vars`]: trainable parameters by checkpoint name, and AdamW.

pub mod twin;
pub mod vars;
