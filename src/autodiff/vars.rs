//! Trainable parameters by Hugging Face name, and AdamW.

use crate::backend::HostTensor;
use crate::error::{Error, Result};
use candle_core::{backprop::GradStore, Device, Tensor, Var};
use std::collections::BTreeMap;

/// Every tensor of a model under its checkpoint name: trainable variables, or frozen constants
/// (no gradient is recorded through them, so a backward pass only costs what the variables need).
pub struct Params {
    vars: BTreeMap<String, Var>,
    fixed: BTreeMap<String, Tensor>,
}

impl Params {
    /// Variables initialised from host tensors (e.g. [`crate::models::init::random_checkpoint`]).
    pub fn from_host(tensors: &BTreeMap<String, HostTensor>) -> Result<Self> {
        let mut vars = BTreeMap::new();
        for (name, t) in tensors {
            let v = Tensor::from_slice(t.as_f32("params")?, t.shape.as_slice(), &Device::Cpu)?;
            vars.insert(name.clone(), Var::from_tensor(&v)?);
        }
        Ok(Params { vars, fixed: BTreeMap::new() })
    }

    /// Frozen constants from host tensors (a compressed model whose prompts are trained).
    pub fn frozen(tensors: &BTreeMap<String, HostTensor>) -> Result<Self> {
        let mut fixed = BTreeMap::new();
        for (name, t) in tensors {
            fixed.insert(name.clone(), Tensor::from_slice(t.as_f32("params")?, t.shape.as_slice(), &Device::Cpu)?);
        }
        Ok(Params { vars: BTreeMap::new(), fixed })
    }

    pub fn get(&self, name: &str) -> candle_core::Result<&Tensor> {
        match self.vars.get(name) {
            Some(v) => Ok(v.as_tensor()),
            None => self.fixed.get(name).ok_or_else(|| candle_core::Error::Msg(format!("no parameter {name}"))),
        }
    }

    /// The current values of the variables, by name.
    pub fn to_host(&self) -> Result<BTreeMap<String, HostTensor>> {
        self.vars
            .iter()
            .map(|(n, v)| Ok((n.clone(), HostTensor::f32(v.dims(), v.flatten_all()?.to_vec1::<f32>()?)?)))
            .collect()
    }

    /// Trainable values.
    pub fn count(&self) -> usize {
        self.vars.values().map(|v| v.elem_count()).sum()
    }

    /// The variables' names.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.vars.keys()
    }
}

/// AdamW (Loshchilov & Hutter) with bias correction, decoupled weight decay on matrices only
/// (norm weights, biases and HGRN-bit's lower bounds are not decayed), and global-norm clipping.
pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub clip: f64,
    step: i32,
    state: BTreeMap<String, (Tensor, Tensor)>,
}

impl AdamW {
    pub fn new(weight_decay: f64, clip: f64) -> Self {
        AdamW { beta1: 0.9, beta2: 0.98, eps: 1e-8, weight_decay, clip, step: 0, state: BTreeMap::new() }
    }

    /// One update with learning rate `lr`; returns the gradient norm before clipping.
    pub fn step(&mut self, params: &Params, grads: &GradStore, lr: f64) -> Result<f64> {
        let mut sq = 0f64;
        for v in params.vars.values() {
            if let Some(g) = grads.get(v.as_tensor()) {
                sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        let norm = sq.sqrt();
        if !norm.is_finite() {
            return Err(Error::Invalid(format!("gradient norm is {norm}: training diverged (lower the learning rate)")));
        }
        let scale = if self.clip > 0.0 && norm > self.clip { self.clip / norm } else { 1.0 };
        self.step += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(self.step);
        let c2 = 1.0 - b2.powi(self.step);
        for (name, v) in &params.vars {
            let Some(g) = grads.get(v.as_tensor()) else { continue };
            let g = (g * scale)?;
            let (m, s) = match self.state.remove(name) {
                Some(st) => st,
                None => (g.zeros_like()?, g.zeros_like()?),
            };
            let m = ((m * b1)? + (&g * (1.0 - b1))?)?;
            let s = ((s * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let upd = ((&m * (1.0 / c1))? / ((&s * (1.0 / c2))?.sqrt()? + self.eps)?)?;
            let decay = v.rank() >= 2 && !name.ends_with("lower_bounds");
            let mut w = v.as_tensor().clone();
            if decay {
                w = (w * (1.0 - lr * self.weight_decay))?;
            }
            v.set(&(w - (upd * lr)?)?)?;
            self.state.insert(name.clone(), (m, s));
        }
        Ok(norm)
    }
}
