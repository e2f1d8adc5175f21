//! Checkpoints the page loads itself (README "Loading a checkpoint"): the names a spec gives them, the address of a
//! Hugging Face-layout folder, the shards of a sharded one, and the memory check made before the weights are
//! downloaded (from sizes the server declares and from the safetensors header, the first bytes of a weights file).
//!
//! Pure logic, tested natively; the fetching, caching and progress are JavaScript in the worker (`www/checkpoint.js`),
//! which asks these functions through `web.rs`.

use crate::models::config::Common;
use serde::Serialize;

/// The prefix of a model the page loaded from local files: it exists only in the tab that loaded it.
pub const LOCAL_PREFIX: &str = "local:";
/// The longest model address or local name accepted.
pub const MAX_NAME: usize = 2048;

/// What a spec's model name refers to on the page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// One of [`crate::experiment::BUNDLED_MODELS`], served with the page.
    Bundled { name: String },
    /// A folder address ending in `/`, as [`folder_url`] writes it; the files are `base` + file name.
    Url { base: String },
    /// Files loaded from the user's disk in this tab, as `local:NAME`.
    Local { name: String },
}

impl Source {
    /// Reads a spec's model name: a bundled name, a folder URL in the form [`folder_url`] writes, or `local:NAME`.
    pub fn parse(name: &str) -> Result<Self, String> {
        if crate::experiment::BUNDLED_MODELS.contains(&name) {
            return Ok(Source::Bundled { name: name.into() });
        }
        if name.len() > MAX_NAME {
            return Err(format!("a model name of {} characters is too long ({MAX_NAME} at most)", name.len()));
        }
        if let Some(local) = name.strip_prefix(LOCAL_PREFIX) {
            if local.trim().is_empty() || local.trim() != local || local.chars().any(char::is_control) {
                return Err(format!("{name:?}: a local model is named local:NAME (NAME: the folder's name, no surrounding spaces)"));
            }
            return Ok(Source::Local { name: local.into() });
        }
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("https://") || lower.starts_with("http://") {
            let base = folder_url(name)?;
            if base != name {
                return Err(format!("write the model address {name:?} as {base:?}"));
            }
            return Ok(Source::Url { base });
        }
        Err(format!(
            "{name:?}: the page runs the bundled models only ({}) or a checkpoint it loads: a model folder's URL (https://huggingface.co/ORG/NAME/resolve/main/) or local:NAME for files loaded in this tab; run other folders with `trilemma run`",
            crate::experiment::BUNDLED_MODELS.join(", ")
        ))
    }
}

/// The files a folder URL's loader reads by name (the weights are `model.safetensors`, or the index and its shards).
pub const FOLDER_FILES: [&str; 4] = ["config.json", "tokenizer.json", "model.safetensors", "model.safetensors.index.json"];

/// A typed model address as the folder URL the page fetches from (ending in `/`): `https://huggingface.co/ORG/NAME`,
/// `…/tree/REV` and `…/blob/REV/config.json` become `https://huggingface.co/ORG/NAME/resolve/REV/`; any other
/// `https://` address is a folder (a trailing file name of the folder is dropped). `http://` only for this machine
/// (`localhost`, `127.0.0.1`, `[::1]`): the page's Content-Security-Policy allows nothing else.
pub fn folder_url(input: &str) -> Result<String, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("type the address of a model folder (https://huggingface.co/ORG/NAME/resolve/main/)".into());
    }
    if s.len() > MAX_NAME {
        return Err(format!("an address of {} characters is too long ({MAX_NAME} at most)", s.len()));
    }
    let (scheme, rest) = s.split_once("://").ok_or_else(|| format!("{s:?} is not an address: it should start with https://"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return Err(format!("{s:?}: only https:// addresses (and http:// on this machine) can be loaded"));
    }
    if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '\\' | '"' | '<' | '>')) {
        return Err(format!("{s:?}: a folder address cannot contain {c:?}"));
    }
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = host.to_ascii_lowercase();
    if host.is_empty() || host.contains('@') {
        return Err(format!("{s:?}: the address has no host, or a user name in it"));
    }
    let hostname = if host.starts_with('[') { host.split(']').next().map(|h| format!("{h}]")).unwrap_or_default() } else { host.split(':').next().unwrap_or_default().to_string() };
    if scheme == "http" && !["localhost", "127.0.0.1", "[::1]"].contains(&hostname.as_str()) {
        return Err(format!("{s:?}: http:// is allowed only for this machine (localhost); use https://"));
    }
    let mut segs: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if segs.iter().any(|p| *p == "." || *p == "..") {
        return Err(format!("{s:?}: a folder address cannot contain . or .. segments"));
    }
    if segs.last().is_some_and(|f| FOLDER_FILES.contains(f)) {
        segs.pop();
    }
    if hostname == "huggingface.co" || hostname == "hf.co" {
        let marker = segs.iter().position(|p| ["resolve", "tree", "blob"].contains(p));
        let (repo, rev, sub) = match marker {
            Some(i) if (1..=2).contains(&i) && segs.len() > i + 1 => (&segs[..i], segs[i + 1], &segs[i + 2..]),
            Some(_) => return Err(format!("{s:?}: expected https://huggingface.co/ORG/NAME/resolve/REVISION/")),
            None if (1..=2).contains(&segs.len()) => (&segs[..], "main", &[][..]),
            None => return Err(format!("{s:?}: expected https://huggingface.co/ORG/NAME (or …/resolve/REVISION/)")),
        };
        let mut out = format!("https://huggingface.co/{}/resolve/{rev}/", repo.join("/"));
        for p in sub {
            out.push_str(p);
            out.push('/');
        }
        return Ok(out);
    }
    let mut out = format!("{scheme}://{host}/");
    for p in &segs {
        out.push_str(p);
        out.push('/');
    }
    Ok(out)
}

/// The shards a `model.safetensors.index.json` lists, and the total weight bytes it declares (`metadata.total_size`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Shards {
    pub files: Vec<String>,
    pub total_size: Option<u64>,
}

pub fn index_shards(bytes: &[u8]) -> Result<Shards, String> {
    const FILE: &str = "model.safetensors.index.json";
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("{FILE} is not JSON: {e}"))?;
    let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| format!("{FILE}: missing \"weight_map\" object"))?;
    let mut files = Vec::new();
    for (tensor, shard) in map {
        let shard = shard.as_str().ok_or_else(|| format!("{FILE}: weight_map[{tensor:?}] is not a file name"))?;
        if shard.is_empty() || shard.contains('/') || shard.contains('\\') || shard.contains("..") || !shard.ends_with(".safetensors") {
            return Err(format!("{FILE}: shard name {shard:?} is not a .safetensors file in the folder"));
        }
        files.push(shard.to_string());
    }
    files.sort();
    files.dedup();
    if files.is_empty() {
        return Err(format!("{FILE}: the weight_map is empty"));
    }
    let total_size = v.get("metadata").and_then(|m| m.get("total_size")).and_then(|t| t.as_u64());
    Ok(Shards { files, total_size })
}

/// What `config.json` says before any weights are fetched: the architecture and its size.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConfigSummary {
    pub architecture: String,
    pub model_type: String,
    pub vocab: usize,
    pub hidden: usize,
    pub layers: usize,
    pub num_labels: Option<usize>,
}

/// Parses `config.json` with the loader's own checks, the file named in every error.
pub fn config_summary(bytes: &[u8]) -> Result<ConfigSummary, String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("config.json is not JSON: {e}"))?;
    if !v.is_object() {
        return Err("config.json: expected a JSON object".into());
    }
    let c = Common::parse(&v).map_err(|e| {
        let e = match e {
            crate::error::Error::Invalid(msg) => msg,
            other => other.to_string(),
        };
        if e.starts_with("config.json") { e } else { format!("config.json: {e}") }
    })?;
    Ok(ConfigSummary {
        architecture: c.arch.display_name().into(),
        model_type: v["model_type"].as_str().unwrap_or_default().into(),
        vocab: c.vocab,
        hidden: c.hidden,
        layers: c.layers,
        num_labels: c.num_labels,
    })
}

/// A safetensors header read from the first bytes of a file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Header {
    /// 8 + the JSON header's length: the bytes before the data.
    pub header_bytes: u64,
    /// Bytes of tensor data the header describes.
    pub data_bytes: u64,
    pub tensors: usize,
    /// The tensors as the loader holds them: F32, F16 and BF16 as f32, U32 (packed ternary) as stored.
    pub f32_bytes: u64,
    /// The largest tensor as held, and its name.
    pub largest_bytes: u64,
    pub largest: String,
}

/// The header of a safetensors file from its first bytes (`prefix`): `Ok(Err(n))` when it needs the first `n` bytes,
/// `Ok(Ok(header))` once they are there. `file_len` (from Content-Length or the file's size), when known, must
/// match the header's description. Refuses, naming `file`, what the loader would refuse: not a safetensors file,
/// dtypes other than F32, F16, BF16 and U32, offsets that do not add up.
pub fn safetensors_header(file: &str, prefix: &[u8], file_len: Option<u64>) -> Result<std::result::Result<Header, u64>, String> {
    // The safetensors crate's own cap on the JSON header.
    const MAX_HEADER: u64 = 100_000_000;
    if prefix.len() < 8 {
        if file_len.is_some_and(|l| l < 8) {
            return Err(format!("{file} is not a safetensors file: it has {} bytes", file_len.unwrap_or(0)));
        }
        return Ok(Err(8));
    }
    let n = u64::from_le_bytes(prefix[..8].try_into().expect("8 bytes"));
    if n > MAX_HEADER || n < 2 {
        return Err(format!("{file} is not a safetensors file (its first 8 bytes declare a header of {n} bytes)"));
    }
    if let Some(len) = file_len.filter(|&l| 8 + n > l) {
        return Err(format!("{file} is not a safetensors file (a header of {n} bytes in a file of {len})"));
    }
    let end = 8 + n as usize;
    if prefix.len() < end {
        return Ok(Err(end as u64));
    }
    let json: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&prefix[8..end]).map_err(|e| format!("{file} is not a safetensors file (its header is not a JSON object: {e})"))?;
    let mut h = Header { header_bytes: end as u64, data_bytes: 0, tensors: 0, f32_bytes: 0, largest_bytes: 0, largest: String::new() };
    for (name, t) in &json {
        if name == "__metadata__" {
            continue;
        }
        let bad = |what: &str| format!("{file}: tensor {name}: {what}");
        let dtype = t.get("dtype").and_then(|d| d.as_str()).ok_or_else(|| bad("no dtype"))?;
        let shape: Vec<u64> = t
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(|| bad("no shape"))?
            .iter()
            .map(|d| d.as_u64().ok_or_else(|| bad("a dimension is not a non-negative integer")))
            .collect::<Result<_, _>>()?;
        let offsets: Vec<u64> = t.get("data_offsets").and_then(|o| o.as_array()).map(|o| o.iter().filter_map(|x| x.as_u64()).collect()).unwrap_or_default();
        let [start, stop] = offsets[..] else { return Err(bad("data_offsets must be two non-negative integers")) };
        let size = match dtype {
            "F32" | "U32" => 4,
            "F16" | "BF16" => 2,
            _ => return Err(bad(&format!("dtype {dtype}; supported: F32, F16, BF16 (and U32 for packed ternary weights)"))),
        };
        let numel = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("its shape overflows"))?;
        let stored = numel.checked_mul(size).ok_or_else(|| bad("its shape overflows"))?;
        if stop < start || stop - start != stored {
            return Err(bad(&format!("data_offsets {start}..{stop} do not hold {dtype} {shape:?}")));
        }
        let held = if dtype == "U32" { stored } else { numel * 4 };
        h.tensors += 1;
        h.data_bytes = h.data_bytes.max(stop);
        h.f32_bytes += held;
        if held > h.largest_bytes {
            h.largest_bytes = held;
            h.largest = name.clone();
        }
    }
    if let Some(len) = file_len.filter(|&l| l != h.header_bytes + h.data_bytes) {
        return Err(format!("{file}: the header describes {} bytes but the file has {len} (truncated, or not a safetensors file)", h.header_bytes + h.data_bytes));
    }
    Ok(Ok(h))
}

/// The address space of a wasm32 module: 65,536 pages of 64 KiB.
pub const WASM32_BYTES: u64 = 4 << 30;
/// The largest single allocation on wasm32 (`isize::MAX`): a file is one `Vec<u8>`, a tensor one `Vec<f32>`.
pub const MAX_ALLOCATION: u64 = (1 << 31) - 1;
/// What the worker holds besides the model: the module, the bundled models and data, activations.
pub const WORKING_BYTES: u64 = 256 << 20;

/// The memory a checkpoint needs on the page's CPU path, as estimated before its weights are downloaded.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemoryEstimate {
    pub file_bytes: u64,
    pub f32_bytes: u64,
    /// `file_bytes + 2 × f32_bytes + WORKING_BYTES`.
    pub need: u64,
    pub limit: u64,
    pub assumption: &'static str,
}

pub const ASSUMPTION: &str = "the worker copies the files into its wasm memory and holds the weights as f32 about twice while loading \
     (the parsed checkpoint and the model), plus 256 MiB for the rest";

/// Decimal megabytes or gigabytes, for messages.
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{bytes} bytes")
    }
}

/// Refuses, with the numbers, a checkpoint that cannot fit the worker's wasm32 memory: `file_bytes` of files (the
/// largest `largest_file`), `f32_bytes` of weights as held (the largest tensor `largest_tensor`). Sizes not known yet
/// may be passed as lower bounds (a weights file's f32 size is at least its size).
pub fn check_memory(file_bytes: u64, f32_bytes: u64, largest_file: (&str, u64), largest_tensor: (&str, u64)) -> Result<MemoryEstimate, String> {
    let need = file_bytes.saturating_add(f32_bytes.saturating_mul(2)).saturating_add(WORKING_BYTES);
    let est = MemoryEstimate { file_bytes, f32_bytes, need, limit: WASM32_BYTES, assumption: ASSUMPTION };
    let native = "run it natively with `trilemma run`, or load a smaller (or quantized) checkpoint";
    if largest_file.1 > MAX_ALLOCATION {
        return Err(format!(
            "too large for the page: {} is {}, and one file must be under 2 GiB (2.15 GB) in wasm32 memory (it is held as one allocation); a sharded checkpoint (model.safetensors.index.json) splits it — or {native}",
            largest_file.0,
            human(largest_file.1)
        ));
    }
    if largest_tensor.1 > MAX_ALLOCATION {
        return Err(format!("too large for the page: tensor {} is {} as f32, over the 2 GiB one allocation can hold in wasm32 memory; {native}", largest_tensor.0, human(largest_tensor.1)));
    }
    if need > WASM32_BYTES {
        return Err(format!(
            "too large for the page: {} of files and {} of weights as f32 need about {} + 2 × {} + {} = {}, more than the {} (4 GiB) a wasm32 module can address ({ASSUMPTION}); {native} (the GPU path, too, reads the weights into this memory before uploading them)",
            human(file_bytes),
            human(f32_bytes),
            human(file_bytes),
            human(f32_bytes),
            human(WORKING_BYTES),
            human(need),
            human(WASM32_BYTES)
        ));
    }
    Ok(est)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(Source::parse("gla").unwrap(), Source::Bundled { name: "gla".into() });
        let hf = "https://huggingface.co/org/tiny/resolve/main/";
        assert_eq!(Source::parse(hf).unwrap(), Source::Url { base: hf.into() });
        assert_eq!(Source::parse("http://127.0.0.1:8000/org/m/").unwrap(), Source::Url { base: "http://127.0.0.1:8000/org/m/".into() });
        assert_eq!(Source::parse("local:my model").unwrap(), Source::Local { name: "my model".into() });
        // Not in the canonical form: refused with the form to write.
        let e = Source::parse("https://huggingface.co/org/tiny").unwrap_err();
        assert!(e.contains(hf), "{e}");
        for bad in ["local:", "local: x", "../../etc/passwd", "gla2", "ftp://x/y/", "http://example.com/m/", "https://x.org/m/?a=1"] {
            let e = Source::parse(bad).unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
        // The playground test's crafted link expects this phrase.
        assert!(Source::parse("../../etc/passwd").unwrap_err().contains("bundled models only"));
        assert!(Source::parse(&format!("local:{}", "x".repeat(MAX_NAME))).is_err());
    }

    #[test]
    fn folder_urls() {
        let ok = |i: &str, o: &str| assert_eq!(folder_url(i).unwrap(), o, "{i}");
        ok("https://huggingface.co/org/tiny", "https://huggingface.co/org/tiny/resolve/main/");
        ok(" https://huggingface.co/org/tiny/ ", "https://huggingface.co/org/tiny/resolve/main/");
        ok("https://huggingface.co/gpt2", "https://huggingface.co/gpt2/resolve/main/");
        ok("https://huggingface.co/org/tiny/tree/v1.0", "https://huggingface.co/org/tiny/resolve/v1.0/");
        ok("https://huggingface.co/org/tiny/blob/main/config.json", "https://huggingface.co/org/tiny/resolve/main/");
        ok("https://hf.co/org/tiny/resolve/abc123/sub/", "https://huggingface.co/org/tiny/resolve/abc123/sub/");
        ok("HTTPS://Example.ORG/models/x", "https://example.org/models/x/");
        ok("https://example.org/models/x/model.safetensors", "https://example.org/models/x/");
        ok("http://localhost:8080/a/b", "http://localhost:8080/a/b/");
        ok("http://[::1]:9/a/", "http://[::1]:9/a/");
        for bad in ["", "huggingface.co/org/tiny", "http://example.org/m/", "https://user@x.org/m/", "https://x.org/a b/", "https://x.org/m/#f", "https:///m/", "https://x.org/../m/", "https://huggingface.co/a/b/c/d"] {
            assert!(folder_url(bad).is_err(), "{bad:?} accepted");
        }
        // Canonical forms are fixed points.
        for u in ["https://huggingface.co/org/tiny/resolve/main/", "http://127.0.0.1:1234/org/NAME/resolve/main/", "https://example.org/"] {
            assert_eq!(folder_url(u).unwrap(), u);
        }
    }

    fn st(header: &str, data: usize) -> Vec<u8> {
        let mut v = (header.len() as u64).to_le_bytes().to_vec();
        v.extend(header.as_bytes());
        v.extend(std::iter::repeat_n(0u8, data));
        v
    }

    #[test]
    fn headers() {
        let h = r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[4],"data_offsets":[12,28]}}"#;
        let f = st(h, 28);
        // Needs the length, then the whole header.
        assert_eq!(safetensors_header("m", &f[..3], None).unwrap(), Err(8));
        assert_eq!(safetensors_header("m", &f[..8], None).unwrap(), Err(8 + h.len() as u64));
        let got = safetensors_header("m", &f[..8 + h.len()], Some(f.len() as u64)).unwrap().unwrap();
        assert_eq!((got.tensors, got.data_bytes, got.f32_bytes, got.largest_bytes, got.largest.as_str()), (2, 28, 24 + 16, 24, "a"));
        // Against the real parser: the same file loads.
        assert_eq!(super::super::parse_safetensors("m", &f).unwrap().len(), 2);
        // Wrong length, garbage, wrong dtype, offsets that do not add up.
        assert!(safetensors_header("m", &f, Some(f.len() as u64 + 1)).unwrap_err().contains("truncated"));
        let garbage = b"this is not a safetensors file at all".to_vec();
        assert!(safetensors_header("model.safetensors", &garbage, Some(garbage.len() as u64)).unwrap_err().starts_with("model.safetensors is not a safetensors file"));
        let notjson = st("{nope", 0);
        assert!(safetensors_header("m", &notjson, None).unwrap_err().contains("not a JSON object"));
        let i64 = st(r#"{"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#, 8);
        assert!(safetensors_header("m", &i64, None).unwrap_err().contains("dtype I64"));
        let off = st(r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, 8);
        assert!(safetensors_header("m", &off, None).unwrap_err().contains("data_offsets"));
        let packed = st(r#"{"w":{"dtype":"U32","shape":[2,2],"data_offsets":[0,16]}}"#, 16);
        assert_eq!(safetensors_header("m", &packed, None).unwrap().unwrap().f32_bytes, 16);
    }

    #[test]
    fn shards_of_an_index() {
        let s = index_shards(br#"{"metadata":{"total_size":123},"weight_map":{"a":"model-2.safetensors","b":"model-1.safetensors","c":"model-1.safetensors"}}"#).unwrap();
        assert_eq!(s, Shards { files: vec!["model-1.safetensors".into(), "model-2.safetensors".into()], total_size: Some(123) });
        assert!(index_shards(b"nope").unwrap_err().contains("not JSON"));
        assert!(index_shards(br#"{"weight_map":{"a":"../x.safetensors"}}"#).is_err());
        assert!(index_shards(br#"{"weight_map":{}}"#).is_err());
    }

    #[test]
    fn configs() {
        let c = config_summary(br#"{"model_type":"gla","hidden_size":8,"num_hidden_layers":2,"vocab_size":10}"#).unwrap();
        assert_eq!((c.architecture.as_str(), c.layers, c.vocab), ("GLA", 2, 10));
        assert!(config_summary(b"{not json").unwrap_err().starts_with("config.json is not JSON"));
        let e = config_summary(br#"{"model_type":"mamba","hidden_size":8,"num_hidden_layers":2,"vocab_size":10}"#).unwrap_err();
        assert!(e.starts_with("config.json") && e.contains("mamba"), "{e}");
        assert!(config_summary(b"[]").is_err());
        let bundled = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/models/gla/config.json")).unwrap();
        assert_eq!(config_summary(&bundled).unwrap().model_type, "gla");
    }

    #[test]
    fn memory() {
        let small = check_memory(6_000_000, 5_500_000, ("model.safetensors", 5_500_000), ("e", 1_000_000)).unwrap();
        assert_eq!(small.need, 6_000_000 + 11_000_000 + WORKING_BYTES);
        // 1.5 GB of f16 weights: 3 GB as f32, twice, does not fit; the message has the numbers.
        let e = check_memory(1_500_000_000, 3_000_000_000, ("model.safetensors", 1_000_000_000), ("e", 1_000_000)).unwrap_err();
        assert!(e.contains("1.50 GB") && e.contains("3.00 GB") && e.contains("4 GiB"), "{e}");
        // One file over 2 GiB.
        assert!(check_memory(2_200_000_000, 0, ("model.safetensors", 2_200_000_000), ("e", 0)).unwrap_err().contains("sharded"));
        assert!(check_memory(0, 2_200_000_000, ("x", 0), ("model.embed_tokens.weight", 2_200_000_000)).unwrap_err().contains("model.embed_tokens.weight"));
        // The bound itself.
        let max_f32 = (WASM32_BYTES - WORKING_BYTES - 1000) / 2;
        assert!(check_memory(1000, max_f32, ("f", 1000), ("t", 1)).is_ok());
        assert!(check_memory(1001, max_f32, ("f", 1001), ("t", 1)).is_err());
        assert_eq!(human(5_544_504), "5.5 MB");
    }
}
