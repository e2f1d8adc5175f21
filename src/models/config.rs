//! `config.json` -> typed configs for the three architectures, with the defaults and legacy key
//! names of the reference code (specs/models.md §2.1, §3.1, §4.1). Unknown keys are ignored
//! (training-only switches); keys that change the math and are not supported are refused with a
//! message naming the key.

use crate::error::{Error, Result};
use serde_json::Value;

/// Which architecture a `config.json` describes (`model_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// FLA `transformer` (Transformer++).
    Transformer,
    /// FLA `gla`.
    Gla,
    /// MMF `hgrn_bit` (the MatMul-free LM).
    HgrnBit,
}

impl Arch {
    pub fn from_model_type(t: &str) -> Result<Self> {
        match t {
            "transformer" => Ok(Arch::Transformer),
            "gla" => Ok(Arch::Gla),
            "hgrn_bit" => Ok(Arch::HgrnBit),
            other => Err(Error::Invalid(format!(
                "config.json: model_type \"{other}\" is not supported (supported: transformer, gla, hgrn_bit)"
            ))),
        }
    }
    pub fn display_name(self) -> &'static str {
        match self {
            Arch::Transformer => "Transformer++",
            Arch::Gla => "GLA",
            Arch::HgrnBit => "MatMul-free (HGRN-bit)",
        }
    }
}

/// Typed access to a config object, with errors naming the key.
pub struct Cfg<'a>(pub &'a Value);

impl Cfg<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }
    pub fn usize(&self, key: &str) -> Result<usize> {
        let v = self.get(key).ok_or_else(|| Error::Invalid(format!("config.json: missing key \"{key}\"")))?;
        v.as_u64().map(|v| v as usize).ok_or_else(|| Error::Invalid(format!("config.json: \"{key}\" must be a non-negative integer, got {v}")))
    }
    pub fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        if self.get(key).is_some() { self.usize(key) } else { Ok(default) }
    }
    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        if self.get(key).is_some() { self.usize(key).map(Some) } else { Ok(None) }
    }
    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| Error::Invalid(format!("config.json: \"{key}\" must be a number, got {v}"))),
        }
    }
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| Error::Invalid(format!("config.json: \"{key}\" must be true or false, got {v}"))),
        }
    }
    pub fn str_or<'b>(&'b self, key: &str, default: &'b str) -> Result<&'b str> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_str().ok_or_else(|| Error::Invalid(format!("config.json: \"{key}\" must be a string, got {v}"))),
        }
    }
    /// `norm_eps`, or its legacy name `rms_norm_eps`.
    pub fn norm_eps(&self, default: f64) -> Result<f64> {
        if self.get("norm_eps").is_some() { self.f64_or("norm_eps", default) } else { self.f64_or("rms_norm_eps", default) }
    }
    /// Refuse a key whose non-null, non-false value would change the math in an unsupported way.
    pub fn refuse(&self, key: &str, why: &str) -> Result<()> {
        match self.get(key) {
            None | Some(Value::Bool(false)) => Ok(()),
            Some(v) => Err(Error::Invalid(format!("config.json: \"{key}\" = {v} is not supported ({why})"))),
        }
    }
    pub fn positive(&self, key: &str, v: usize) -> Result<usize> {
        if v == 0 { Err(Error::Invalid(format!("config.json: \"{key}\" must be positive"))) } else { Ok(v) }
    }
}

/// MLP width when `intermediate_size` is null: `256 · ceil(floor(H · hidden_ratio · 2/3) / 256)`
/// (FLA GatedMLP, specs/models.md §1.1).
pub fn default_intermediate(h: usize, hidden_ratio: usize) -> usize {
    let raw = h * hidden_ratio * 2 / 3;
    256 * raw.div_ceil(256)
}

/// Fields every architecture shares.
#[derive(Clone, Debug, PartialEq)]
pub struct Common {
    pub arch: Arch,
    pub vocab: usize,
    pub hidden: usize,
    pub layers: usize,
    pub intermediate: usize,
    pub norm_eps: f32,
    pub tie_word_embeddings: bool,
    /// Classes of the `score` head, when the folder is a classifier.
    pub num_labels: Option<usize>,
    /// The task `score.weight` was trained for (`trilemma.default_task`), when the folder says.
    pub default_task: Option<String>,
}

impl Common {
    pub fn parse(v: &Value) -> Result<Self> {
        let c = Cfg(v);
        let arch = Arch::from_model_type(c.str_or("model_type", "")?)?;
        let hidden = c.positive("hidden_size", c.usize("hidden_size")?)?;
        let layers = c.positive("num_hidden_layers", c.usize("num_hidden_layers")?)?;
        let vocab = c.positive("vocab_size", c.usize("vocab_size")?)?;
        let ratio = c.usize_or("hidden_ratio", 4)?;
        let intermediate = match c.opt_usize("intermediate_size")? {
            Some(i) => c.positive("intermediate_size", i)?,
            None => default_intermediate(hidden, ratio),
        };
        let act = c.str_or("hidden_act", "swish")?;
        if act != "swish" && act != "silu" {
            return Err(Error::Invalid(format!("config.json: hidden_act \"{act}\" is not supported (swish)")));
        }
        c.refuse("attnres_block_size", "2026 attention-residual blocks")?;
        let num_labels = match c.opt_usize("num_labels")? {
            Some(n) => Some(c.positive("num_labels", n)?),
            None => v.get("id2label").and_then(|m| m.as_object()).map(|m| m.len()).filter(|&n| n > 0),
        };
        Ok(Self {
            arch,
            vocab,
            hidden,
            layers,
            intermediate,
            norm_eps: c.norm_eps(1e-6)? as f32,
            tie_word_embeddings: c.bool_or("tie_word_embeddings", false)?,
            num_labels,
            default_task: match v.get("trilemma").and_then(|t| t.get("default_task")).filter(|d| !d.is_null()) {
                None => None,
                Some(d) => Some(
                    d.as_str()
                        .ok_or_else(|| Error::Invalid(format!("config.json: \"trilemma.default_task\" must be a task name, got {d}")))?
                        .to_string(),
                ),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn intermediate_rounding_rule() {
        for (h, i) in [(1024, 2816), (2048, 5632), (2560, 6912), (4096, 11008)] {
            assert_eq!(default_intermediate(h, 4), i, "H={h}");
        }
    }

    #[test]
    fn errors_name_the_key() {
        let e = Common::parse(&json!({"model_type": "mamba"})).unwrap_err().to_string();
        assert!(e.contains("model_type") && e.contains("mamba"), "{e}");
        let e = Common::parse(&json!({"model_type": "gla", "hidden_size": 8, "vocab_size": 5})).unwrap_err().to_string();
        assert!(e.contains("num_hidden_layers"), "{e}");
        let e = Common::parse(&json!({"model_type": "gla", "hidden_size": "big", "num_hidden_layers": 1, "vocab_size": 5}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("hidden_size"), "{e}");
        let base = json!({"model_type": "transformer", "hidden_size": 8, "num_hidden_layers": 1, "vocab_size": 5, "attnres_block_size": 4});
        assert!(Common::parse(&base).unwrap_err().to_string().contains("attnres_block_size"));
    }

    #[test]
    fn legacy_eps_and_defaults() {
        let c = Common::parse(&json!({"model_type": "hgrn_bit", "hidden_size": 1024, "num_hidden_layers": 2, "vocab_size": 5, "rms_norm_eps": 1e-5}))
            .unwrap();
        assert_eq!(c.norm_eps, 1e-5);
        assert_eq!(c.intermediate, 2816);
        assert!(!c.tie_word_embeddings);
        assert_eq!(c.num_labels, None);
    }
}
