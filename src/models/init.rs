//! Randomly initialised checkpoints: a `config.json` and every tensor of specs/models.md §1–4
//! under its current (non-legacy) name, initialised like the reference code (FLA / MMF
//! `_init_weights`): linear and embedding weights `N(0, 0.02)`, biases zero, norms one, HGRN-bit's
//! `model.lower_bounds` zero. The classification head `score.weight` is `N(0, 0.02)` too.
//!
//! Every number comes from one [`SplitMix64`] stream seeded with `seed` (normals by Box–Muller,
//! drawn tensor by tensor in a fixed order), so a seed names the same model everywhere. FLA's
//! optional prenorm-residual rescaling of `o_proj` / `down_proj` is not applied.

use super::config::Arch;
use super::gla::GATE_LOW_RANK_DIM;
use crate::backend::HostTensor;
use crate::error::{Error, Result};
use crate::io::Checkpoint;
use crate::rng::SplitMix64;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Standard deviation of the reference code's `initializer_range`.
pub const INIT_STD: f32 = 0.02;
/// RMSNorm eps written to every config (the reference default).
pub const INIT_NORM_EPS: f64 = 1e-6;

/// The sizes of a randomly initialised model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dims {
    pub arch: Arch,
    pub vocab: usize,
    pub hidden: usize,
    pub layers: usize,
    /// Query heads (Transformer++, GLA); HGRN-bit's `num_heads` only reshapes, keep it 1.
    pub heads: usize,
    /// Key-value heads (GQA); equal to `heads` for no grouping.
    pub kv_heads: usize,
    /// MLP width I (HGRN-bit's fused gate projection is `[2I, H]`).
    pub intermediate: usize,
    /// Classes of the `score` head, or `None` for an LM-only checkpoint.
    pub num_labels: Option<usize>,
}

impl Dims {
    /// The size of the project's bundled default models: vocab 8192 (the bundled tokenizer), H 128,
    /// 2 layers, I 256, two classes; 4 heads for Transformer++, 2 for GLA, 1 for HGRN-bit.
    pub fn default_for(arch: Arch) -> Dims {
        let heads = match arch {
            Arch::Transformer => 4,
            Arch::Gla => 2,
            Arch::HgrnBit => 1,
        };
        Dims { arch, vocab: 8192, hidden: 128, layers: 2, heads, kv_heads: heads, intermediate: 256, num_labels: Some(2) }
    }

    fn check(&self) -> Result<()> {
        let Dims { vocab, hidden, layers, heads, kv_heads, intermediate, .. } = *self;
        if [vocab, hidden, layers, heads, kv_heads, intermediate].contains(&0) || self.num_labels == Some(0) {
            return Err(Error::Invalid(format!("model dims must be positive: {self:?}")));
        }
        let ok = match self.arch {
            // head_dim = H / heads must be even for RoPE's rotate-half.
            Arch::Transformer => hidden % heads == 0 && heads % kv_heads == 0 && (hidden / heads) % 2 == 0,
            // K = H/2 and V = H must split into heads.
            Arch::Gla => heads % kv_heads == 0 && (hidden / 2) % heads == 0 && hidden / 2 > 0,
            Arch::HgrnBit => hidden % heads == 0,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Invalid(format!("heads {heads} / kv_heads {kv_heads} do not fit hidden {hidden} for {}", self.arch.display_name())))
        }
    }
}

/// A standard normal sampler: Box–Muller on two uniforms from SplitMix64, both outputs used.
struct Normal {
    rng: SplitMix64,
    spare: Option<f64>,
}

impl Normal {
    fn new(seed: u64) -> Self {
        Normal { rng: SplitMix64::new(seed), spare: None }
    }

    fn next(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        const TWO_POW_M53: f64 = 1.0 / (1u64 << 53) as f64;
        let u1 = ((self.rng.next_u64() >> 11) + 1) as f64 * TWO_POW_M53; // (0, 1]: ln is finite
        let u2 = (self.rng.next_u64() >> 11) as f64 * TWO_POW_M53; // [0, 1)
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        self.spare = Some(r * s);
        r * c
    }
}

enum Init {
    Normal,
    Zeros,
    Ones,
}

/// Every tensor of `dims`' architecture, in a fixed order: (name, shape, init).
fn layout(d: &Dims) -> Vec<(String, Vec<usize>, Init)> {
    let (h, i, n) = (d.hidden, d.intermediate, d.vocab);
    let mut v: Vec<(String, Vec<usize>, Init)> = vec![("model.embeddings.weight".into(), vec![n, h], Init::Normal)];
    if d.arch == Arch::HgrnBit {
        v.push(("model.lower_bounds".into(), vec![d.layers, h], Init::Zeros));
    }
    for l in 0..d.layers {
        let p = format!("model.layers.{l}.");
        let mut add = |name: &str, shape: &[usize], init: Init| v.push((format!("{p}{name}"), shape.to_vec(), init));
        add("attn_norm.weight", &[h], Init::Ones);
        match d.arch {
            Arch::Transformer => {
                let kvd = d.kv_heads * (h / d.heads);
                add("attn.q_proj.weight", &[h, h], Init::Normal);
                add("attn.k_proj.weight", &[kvd, h], Init::Normal);
                add("attn.v_proj.weight", &[kvd, h], Init::Normal);
                add("attn.o_proj.weight", &[h, h], Init::Normal);
            }
            Arch::Gla => {
                let g = d.heads / d.kv_heads;
                let (kd, vd) = (h / 2, h); // expand_k 0.5, expand_v 1
                add("attn.q_proj.weight", &[kd, h], Init::Normal);
                add("attn.k_proj.weight", &[kd / g, h], Init::Normal);
                add("attn.v_proj.weight", &[vd / g, h], Init::Normal);
                add("attn.g_proj.weight", &[vd, h], Init::Normal);
                add("attn.gk_proj.0.weight", &[GATE_LOW_RANK_DIM, h], Init::Normal);
                add("attn.gk_proj.1.weight", &[kd / g, GATE_LOW_RANK_DIM], Init::Normal);
                add("attn.gk_proj.1.bias", &[kd / g], Init::Zeros);
                add("attn.o_proj.weight", &[h, vd], Init::Normal);
                add("attn.g_norm_swish_gate.weight", &[vd / d.heads], Init::Ones);
            }
            Arch::HgrnBit => {
                for proj in ["i_proj", "f_proj", "g_proj"] {
                    add(&format!("attn.{proj}.weight"), &[h, h], Init::Normal);
                    add(&format!("attn.{proj}.norm.weight"), &[h], Init::Ones);
                }
                add("attn.g_norm.weight", &[h], Init::Ones);
                add("attn.o_proj.weight", &[h, h], Init::Normal);
                add("attn.o_proj.norm.weight", &[h], Init::Ones);
            }
        }
        add("mlp_norm.weight", &[h], Init::Ones);
        if d.arch == Arch::HgrnBit {
            add("mlp.gate_proj.weight", &[2 * i, h], Init::Normal);
            add("mlp.gate_proj.norm.weight", &[h], Init::Ones);
            add("mlp.down_proj.weight", &[h, i], Init::Normal);
            add("mlp.down_proj.norm.weight", &[i], Init::Ones);
        } else {
            add("mlp.gate_proj.weight", &[i, h], Init::Normal);
            add("mlp.up_proj.weight", &[i, h], Init::Normal);
            add("mlp.down_proj.weight", &[h, i], Init::Normal);
        }
    }
    v.push(("model.norm.weight".into(), vec![h], Init::Ones));
    v.push(("lm_head.weight".into(), vec![n, h], Init::Normal));
    if d.arch == Arch::HgrnBit {
        v.push(("lm_head.norm.weight".into(), vec![h], Init::Ones));
    }
    if let Some(c) = d.num_labels {
        v.push(("score.weight".into(), vec![c, h], Init::Normal));
    }
    v
}

/// The `config.json` of `dims` (the keys of specs/models.md §2.1 / §3.1 / §4.1).
pub fn config_json(d: &Dims) -> Value {
    let mut c = json!({
        "vocab_size": d.vocab,
        "hidden_size": d.hidden,
        "num_hidden_layers": d.layers,
        "num_heads": d.heads,
        "intermediate_size": d.intermediate,
        "hidden_act": "swish",
        "tie_word_embeddings": false,
        "initializer_range": INIT_STD,
        "bos_token_id": 1,
        "eos_token_id": 2,
    });
    let extra = match d.arch {
        Arch::Transformer => json!({
            "model_type": "transformer",
            "num_kv_heads": d.kv_heads,
            "norm_eps": INIT_NORM_EPS,
            "rope_theta": 10000.0,
            "qkv_bias": false,
            "qk_norm": false,
            "window_size": null,
            "max_position_embeddings": 8192,
        }),
        Arch::Gla => json!({
            "model_type": "gla",
            "num_kv_heads": d.kv_heads,
            "norm_eps": INIT_NORM_EPS,
            "expand_k": 0.5,
            "expand_v": 1.0,
            "use_output_gate": true,
            "use_short_conv": false,
            "feature_map": null,
            "fuse_norm": true,
            "attn": null,
        }),
        Arch::HgrnBit => json!({
            "model_type": "hgrn_bit",
            "rms_norm_eps": INIT_NORM_EPS,
            "attn_mode": "fused_recurrent",
            "expand_ratio": 1,
            "use_short_conv": false,
            "use_lower_bound": true,
        }),
    };
    let obj = c.as_object_mut().expect("object");
    obj.extend(extra.as_object().expect("object").clone());
    if let Some(n) = d.num_labels {
        obj.insert("num_labels".into(), json!(n));
        let labels: serde_json::Map<String, Value> = (0..n).map(|k| (k.to_string(), json!(format!("LABEL_{k}")))).collect();
        obj.insert("id2label".into(), Value::Object(labels));
    }
    c
}

/// A randomly initialised checkpoint of `dims` (no tokenizer); loads with [`super::Model::load`].
pub fn random_checkpoint(dims: &Dims, seed: u64) -> Result<Checkpoint> {
    dims.check()?;
    let mut normal = Normal::new(seed);
    let mut tensors = BTreeMap::new();
    for (name, shape, init) in layout(dims) {
        let numel = shape.iter().product();
        let data = match init {
            Init::Normal => (0..numel).map(|_| (normal.next() * INIT_STD as f64) as f32).collect(),
            Init::Zeros => vec![0.0; numel],
            Init::Ones => vec![1.0; numel],
        };
        tensors.insert(name, HostTensor::f32(&shape, data)?);
    }
    Ok(Checkpoint { config: config_json(dims), tensors, tokenizer_json: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::backend::TensorMeta;
    use crate::models::Model;

    const ARCHS: [Arch; 3] = [Arch::Transformer, Arch::Gla, Arch::HgrnBit];

    fn small(arch: Arch) -> Dims {
        Dims { vocab: 64, hidden: 32, ..Dims::default_for(arch) }
    }

    #[test]
    fn loads_and_runs_for_every_arch() {
        let be = CpuBackend::new();
        for arch in ARCHS {
            // The full default size loads (every name and shape the loader expects, nothing extra).
            let m = Model::load(&be, random_checkpoint(&Dims::default_for(arch), 1).unwrap()).unwrap();
            assert_eq!(m.common.arch, arch);
            assert_eq!((m.common.vocab, m.common.hidden, m.common.layers, m.common.intermediate), (8192, 128, 2, 256));
            assert_eq!(m.common.num_labels, Some(2));
            assert!(m.lm_head.is_some() && m.score.is_some(), "{arch:?}");
            assert!(!m.common.tie_word_embeddings);
            // A smaller one runs end to end with finite outputs.
            let m = Model::load(&be, random_checkpoint(&small(arch), 2).unwrap()).unwrap();
            let ids = [1u32, 5, 9, 63, 0, 7];
            let logits = be.read_sync(&m.classify(&be, &ids).unwrap()).unwrap();
            assert_eq!(logits.shape, [1, 2]);
            assert!(logits.as_f32("t").unwrap().iter().all(|x| x.is_finite()), "{arch:?}");
            let lm = m.lm_logits(&be, &ids).unwrap();
            assert_eq!(lm.shape(), [6, 64]);
        }
    }

    #[test]
    fn same_seed_same_bits_other_seed_differs() {
        for arch in ARCHS {
            let d = small(arch);
            let a = random_checkpoint(&d, 7).unwrap();
            let b = random_checkpoint(&d, 7).unwrap();
            let c = random_checkpoint(&d, 8).unwrap();
            assert_eq!(a.config, b.config);
            assert_eq!(a.tensors.keys().collect::<Vec<_>>(), c.tensors.keys().collect::<Vec<_>>());
            for (name, ta) in &a.tensors {
                let (va, vb, vc) = (ta.as_f32("a").unwrap(), b.tensors[name].as_f32("b").unwrap(), c.tensors[name].as_f32("c").unwrap());
                assert!(va.iter().zip(vb).all(|(x, y)| x.to_bits() == y.to_bits()), "{name}");
                let random = va.iter().any(|&x| x != 0.0 && x != 1.0);
                if random {
                    assert!(va.iter().zip(vc).any(|(x, y)| x != y), "{name} did not change with the seed");
                }
            }
        }
    }

    #[test]
    fn reference_initialisation() {
        let ck = random_checkpoint(&Dims::default_for(Arch::Gla), 3).unwrap();
        let t = |n: &str| ck.tensors[n].as_f32("t").unwrap();
        assert!(t("model.layers.0.attn.gk_proj.1.bias").iter().all(|&x| x == 0.0));
        assert!(t("model.layers.1.attn.g_norm_swish_gate.weight").iter().all(|&x| x == 1.0));
        assert_eq!(ck.config["norm_eps"], json!(1e-6));
        // Embeddings: 1M draws from N(0, 0.02).
        let e = t("model.embeddings.weight");
        let mean = e.iter().map(|&x| x as f64).sum::<f64>() / e.len() as f64;
        let sd = (e.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / e.len() as f64).sqrt();
        assert!(mean.abs() < 1e-4 && (sd - 0.02).abs() < 1e-4, "mean {mean} sd {sd}");
        let ck = random_checkpoint(&Dims::default_for(Arch::HgrnBit), 3).unwrap();
        assert!(ck.tensors["model.lower_bounds"].as_f32("lb").unwrap().iter().all(|&x| x == 0.0));
        assert_eq!(ck.config["rms_norm_eps"], json!(1e-6));
        assert!(ck.config.get("norm_eps").is_none());
        assert_eq!(ck.tensors["score.weight"].shape, [2, 128]);
    }

    #[test]
    fn bad_dims_are_refused() {
        let d = Dims { heads: 3, kv_heads: 3, ..Dims::default_for(Arch::Transformer) };
        assert!(random_checkpoint(&d, 0).is_err());
        let d = Dims { layers: 0, ..Dims::default_for(Arch::Gla) };
        assert!(random_checkpoint(&d, 0).is_err());
    }
}
