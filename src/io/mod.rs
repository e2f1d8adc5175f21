//! Checkpoint files -> named host tensors; no model math here.
//!
//! A model folder in Hugging Face layout: `config.json`, `model.safetensors` (or shards listed in
//! `model.safetensors.index.json`) and `tokenizer.json`. The same parser serves the CLI (files on
//! disk) and the page (bytes from fetch or a file picker) through [`Checkpoint::from_files`].
//!
//! Header validation (offsets in range, contiguous, non-overlapping, sizes matching dtype × shape)
//! is done by the `safetensors` crate; this module adds dtype conversion (F32/F16/BF16 -> f32) and
//! the errors a user can act on.

pub mod source;

use crate::backend::HostTensor;
use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// Parsed `config.json` plus every tensor, by checkpoint name.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub config: serde_json::Value,
    pub tensors: BTreeMap<String, HostTensor>,
    /// Raw `tokenizer.json`, when the folder has one.
    pub tokenizer_json: Option<Vec<u8>>,
}

/// Parse one safetensors file into f32 host tensors.
pub fn parse_safetensors(file: &str, bytes: &[u8]) -> Result<BTreeMap<String, HostTensor>> {
    use safetensors::{Dtype, SafeTensors};
    let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Invalid(format!("{file}: not a valid safetensors file: {e}")))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let raw = view.data();
        if view.dtype() == Dtype::U32 {
            // Trilemma's packed-ternary extension stores its 2-bit codes as u32 words.
            let words = raw.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            let t = HostTensor::u32(view.shape(), words).map_err(|e| Error::Invalid(format!("{file}: tensor {name}: {e}")))?;
            out.insert(name, t);
            continue;
        }
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => raw.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => raw.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            other => {
                return Err(Error::Invalid(format!("{file}: tensor {name} has dtype {other:?}; supported: F32, F16, BF16 (and U32 for packed ternary weights)")));
            }
        };
        let t = HostTensor::f32(view.shape(), data).map_err(|e| Error::Invalid(format!("{file}: tensor {name}: {e}")))?;
        out.insert(name, t);
    }
    Ok(out)
}

impl Checkpoint {
    /// Build from a folder's files, given as `file name -> bytes`.
    pub fn from_files(files: &BTreeMap<String, Vec<u8>>) -> Result<Self> {
        let get = |name: &str| files.get(name).ok_or_else(|| Error::Invalid(format!("model folder has no {name}")));
        let config: serde_json::Value =
            serde_json::from_slice(get("config.json")?).map_err(|e| Error::Invalid(format!("config.json: {e}")))?;
        if !config.is_object() {
            return Err(Error::Invalid("config.json: expected a JSON object".into()));
        }
        let mut tensors = BTreeMap::new();
        if let Some(single) = files.get("model.safetensors") {
            tensors = parse_safetensors("model.safetensors", single)?;
        } else if let Some(index) = files.get("model.safetensors.index.json") {
            let index: serde_json::Value =
                serde_json::from_slice(index).map_err(|e| Error::Invalid(format!("model.safetensors.index.json: {e}")))?;
            let map = index
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| Error::Invalid("model.safetensors.index.json: missing \"weight_map\" object".into()))?;
            let mut shards: Vec<&str> = map.values().filter_map(|v| v.as_str()).collect();
            shards.sort();
            shards.dedup();
            for shard in shards {
                let bytes = files.get(shard).ok_or_else(|| Error::Invalid(format!("index names shard {shard}, which is missing")))?;
                for (name, t) in parse_safetensors(shard, bytes)? {
                    if tensors.insert(name.clone(), t).is_some() {
                        return Err(Error::Invalid(format!("tensor {name} appears in more than one shard")));
                    }
                }
            }
            for (name, shard) in map {
                if !tensors.contains_key(name) {
                    return Err(Error::Invalid(format!("index maps {name} to {shard}, but that shard does not hold it")));
                }
            }
        } else {
            return Err(Error::Invalid("model folder has neither model.safetensors nor model.safetensors.index.json".into()));
        }
        Ok(Self { config, tensors, tokenizer_json: files.get("tokenizer.json").cloned() })
    }

    /// Read a folder from disk (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_dir(dir: &std::path::Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::Io(format!("model folder {} does not exist", dir.display())));
        }
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            if name.ends_with(".json") || name.ends_with(".safetensors") {
                files.insert(name, std::fs::read(&path)?);
            }
        }
        Self::from_files(&files)
    }

    /// Bytes of the weights as held for inference (packed tensors as stored: ternary at 2 bits a weight, int8 and int4
    /// codes with their scales, both low-rank factors), and as f32: a packed weight counted as its `[N, K]` f32 matrix
    /// (ternary `[N, ⌈K/16⌉]` words -> `N·16·⌈K/16⌉` floats, int8 `[N, ⌈K/4⌉]` -> `N·4·⌈K/4⌉`, int4 `[N, K/8]` ->
    /// `N·K`: exact when K is a multiple of 16 / 4; low-rank `a [r, K]`, `b [N, r]` -> `N·K`), its scales not counted
    /// again except ternary's single one.
    pub fn weight_bytes(&self) -> (usize, usize) {
        let mut stored = 0;
        let mut f32_equiv = 0;
        for (name, t) in &self.tensors {
            stored += t.numel() * 4;
            let prefix = name.rsplit_once('.').map_or("", |(p, _)| p);
            let sibling = |s: &str| self.tensors.get(&format!("{prefix}.{s}"));
            f32_equiv += if name.ends_with(".weight_ternary") {
                t.numel() * crate::backend::ternary::PER_WORD * 4
            } else if name.ends_with(".weight_int8") {
                t.numel() * crate::backend::int8::PER_WORD * 4
            } else if name.ends_with(".weight_int4") {
                t.numel() * crate::compress::quant::int4::PER_WORD * 4
            } else if name.ends_with(".weight_scale") && (sibling("weight_int8").is_some() || sibling("weight_int4").is_some()) {
                0
            } else if name.ends_with(".weight_lr_a") {
                sibling("weight_lr_b").map_or(t.numel(), |b| b.shape.first().copied().unwrap_or(0) * t.shape.get(1).copied().unwrap_or(0)) * 4
            } else if name.ends_with(".weight_lr_b") && sibling("weight_lr_a").is_some() {
                0
            } else {
                t.numel() * 4
            };
        }
        (stored, f32_equiv)
    }

    /// `<prefix>.bias` `[n]` when the checkpoint has one (a block linear's optional bias, e.g. SFSD's mean correction,
    /// methods.md §2.3 step 5), removed from the map like [`Checkpoint::take`].
    pub fn take_bias(&mut self, prefix: &str, n: usize) -> Result<Option<HostTensor>> {
        let name = format!("{prefix}.bias");
        if self.tensors.contains_key(&name) {
            self.take(&name, &[n]).map(Some)
        } else {
            Ok(None)
        }
    }

    /// A config value, or an error naming the key.
    pub fn config_usize(&self, key: &str) -> Result<usize> {
        self.config
            .get(key)
            .and_then(|v| v.as_u64())
            .map(|v| v as usize)
            .ok_or_else(|| Error::Invalid(format!("config.json: missing or non-integer key \"{key}\"")))
    }

    /// Take a tensor, checking its shape against what the config implies.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<HostTensor> {
        let t = self.tensors.remove(name).ok_or_else(|| Error::Invalid(format!("checkpoint is missing tensor {name}")))?;
        if t.shape != shape {
            return Err(Error::Invalid(format!("tensor {name} has shape {:?}, but config.json implies {shape:?}", t.shape)));
        }
        Ok(t)
    }
}

/// Serialize tensors as a safetensors file: f32 as `F32`, u32 (packed ternary words) as `U32`.
pub fn write_safetensors(tensors: &BTreeMap<String, HostTensor>, metadata: Option<std::collections::HashMap<String, String>>) -> Result<Vec<u8>> {
    use crate::backend::Data;
    use safetensors::tensor::{Dtype, TensorView};
    let bytes: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| {
            let (dt, b): (Dtype, Vec<u8>) = match &t.data {
                Data::F32(v) => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                Data::U32(v) => (Dtype::U32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            };
            (n.clone(), dt, t.shape.clone(), b)
        })
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, dt, s, b)| Ok((n.clone(), TensorView::new(*dt, s.clone(), b).map_err(|e| Error::Invalid(e.to_string()))?)))
        .collect::<Result<_>>()?;
    safetensors::tensor::serialize(views, metadata).map_err(|e| Error::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, shape: &[usize]) -> BTreeMap<String, HostTensor> {
        let n = shape.iter().product();
        BTreeMap::from([(name.to_string(), HostTensor::f32(shape, (0..n).map(|i| i as f32).collect()).unwrap())])
    }

    fn folder(st: Vec<u8>) -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([("config.json".into(), br#"{"hidden_size": 4}"#.to_vec()), ("model.safetensors".into(), st)])
    }

    #[test]
    fn roundtrip_and_take() {
        let st = write_safetensors(&one("w", &[2, 3]), None).unwrap();
        let mut ck = Checkpoint::from_files(&folder(st)).unwrap();
        assert_eq!(ck.config_usize("hidden_size").unwrap(), 4);
        assert!(ck.config_usize("num_heads").unwrap_err().to_string().contains("num_heads"));
        assert!(ck.clone().take("w", &[3, 2]).unwrap_err().to_string().contains("[2, 3]"));
        assert!(ck.take("nope", &[1]).unwrap_err().to_string().contains("missing tensor nope"));
        assert_eq!(ck.take("w", &[2, 3]).unwrap().as_f32("t").unwrap(), &[0., 1., 2., 3., 4., 5.]);
    }

    #[test]
    fn half_precision_is_converted() {
        use safetensors::tensor::{Dtype, TensorView};
        let vals = [1.5f32, -2.25, 0.0];
        let f16: Vec<u8> = vals.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
        let bf16: Vec<u8> = vals.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect();
        let st = safetensors::tensor::serialize(
            vec![("a", TensorView::new(Dtype::F16, vec![3], &f16).unwrap()), ("b", TensorView::new(Dtype::BF16, vec![3], &bf16).unwrap())],
            None,
        )
        .unwrap();
        let t = parse_safetensors("x", &st).unwrap();
        assert_eq!(t["a"].as_f32("t").unwrap(), &vals);
        assert_eq!(t["b"].as_f32("t").unwrap(), &vals);
    }

    #[test]
    fn malformed_files_are_clear_errors() {
        let good = write_safetensors(&one("w", &[2, 3]), None).unwrap();
        // Truncated data.
        let e = parse_safetensors("m", &good[..good.len() - 4]).unwrap_err().to_string();
        assert!(e.contains("not a valid safetensors"), "{e}");
        // Truncated header / empty.
        assert!(parse_safetensors("m", &good[..5]).is_err());
        assert!(parse_safetensors("m", &[]).is_err());
        // Offsets out of range and overlapping: hand-written headers.
        for header in [
            r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,64]}}"#,
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
            r#"{"w":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}}"#,
        ] {
            let mut f = (header.len() as u64).to_le_bytes().to_vec();
            f.extend_from_slice(header.as_bytes());
            f.extend_from_slice(&[0u8; 12]);
            assert!(parse_safetensors("m", &f).is_err(), "accepted {header}");
        }
        // Unsupported but valid dtype.
        use safetensors::tensor::{Dtype, TensorView};
        let st = safetensors::tensor::serialize(vec![("i", TensorView::new(Dtype::I64, vec![1], &[0u8; 8]).unwrap())], None).unwrap();
        assert!(parse_safetensors("m", &st).unwrap_err().to_string().contains("dtype I64"));
        // Missing files / bad config.
        assert!(Checkpoint::from_files(&BTreeMap::new()).unwrap_err().to_string().contains("config.json"));
        let mut f = folder(good.clone());
        f.insert("config.json".into(), b"[1,2]".to_vec());
        assert!(Checkpoint::from_files(&f).is_err());
        let mut f = folder(good);
        f.remove("model.safetensors");
        assert!(Checkpoint::from_files(&f).unwrap_err().to_string().contains("neither"));
    }

    #[test]
    fn sharded_index() {
        let mut files = BTreeMap::from([("config.json".to_string(), b"{}".to_vec())]);
        files.insert("s1.safetensors".into(), write_safetensors(&one("a", &[2]), None).unwrap());
        files.insert("s2.safetensors".into(), write_safetensors(&one("b", &[3]), None).unwrap());
        files.insert("model.safetensors.index.json".into(), br#"{"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}}"#.to_vec());
        let ck = Checkpoint::from_files(&files).unwrap();
        assert_eq!(ck.tensors.len(), 2);
        files.insert("model.safetensors.index.json".into(), br#"{"weight_map":{"a":"s1.safetensors","c":"s2.safetensors"}}"#.to_vec());
        assert!(Checkpoint::from_files(&files).unwrap_err().to_string().contains("does not hold"));
        files.remove("s2.safetensors");
        assert!(Checkpoint::from_files(&files).unwrap_err().to_string().contains("missing"));
    }
}
