//! Running a spec natively (`trilemma run`): model folders and bundled data read from disk,
//! the backend chosen as the spec asks (wgpu when a GPU is wanted and usable, else the CPU),
//! a GPU that fails mid-run replaced by the CPU for the remaining units.

use super::{Dataset, Folders, Hooks, Progress, Results, Spec, BUNDLED_MODELS};
use crate::backend::gpu::GpuContext;
use crate::backend::BackendChoice;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A model name of the spec → its folder: a bundled name is `assets/models/<name>`; anything else
/// is a folder path.
pub fn model_dir(assets: &Path, name: &str) -> PathBuf {
    if BUNDLED_MODELS.contains(&name) {
        assets.join("models").join(name)
    } else {
        PathBuf::from(name)
    }
}

/// Whether a spec's model name can be loaded here (for [`Spec::from_json`]).
pub fn model_exists(assets: &Path, name: &str) -> std::result::Result<(), String> {
    let dir = model_dir(assets, name);
    if !dir.is_dir() {
        return Err(format!("model folder {} does not exist (bundled models: {})", dir.display(), BUNDLED_MODELS.join(", ")));
    }
    if !dir.join("config.json").is_file() {
        return Err(format!("{} has no config.json", dir.display()));
    }
    Ok(())
}

/// The files of a model folder that the loader reads, by name: `config.json`, `tokenizer.json`
/// and `model.safetensors`, or `model.safetensors.index.json` with the shards it lists. (Model
/// cards and other files are neither read nor hashed, so the page and the CLI record the same
/// files.)
pub fn read_folder(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| Error::Io(format!("{}: {e}", dir.join(name).display())));
    let mut files = BTreeMap::new();
    for name in ["config.json", "tokenizer.json"] {
        files.insert(name.to_string(), read(name)?);
    }
    if dir.join("model.safetensors").is_file() || !dir.join("model.safetensors.index.json").is_file() {
        files.insert("model.safetensors".to_string(), read("model.safetensors")?);
    } else {
        let index = read("model.safetensors.index.json")?;
        let v: serde_json::Value = serde_json::from_slice(&index).map_err(|e| Error::Invalid(format!("{}: model.safetensors.index.json: {e}", dir.display())))?;
        let mut shards: Vec<String> = v["weight_map"].as_object().map(|m| m.values().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default();
        shards.sort();
        shards.dedup();
        for s in shards {
            if s.contains('/') || s.contains("..") {
                return Err(Error::Invalid(format!("{}: shard name {s:?} is not a file in the folder", dir.display())));
            }
            files.insert(s.clone(), read(&s)?);
        }
        files.insert("model.safetensors.index.json".to_string(), index);
    }
    Ok(files)
}

/// Reads a spec file, refusing bad ones with the field named.
pub fn read_spec(path: &Path, assets: &Path) -> Result<Spec> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    Spec::from_json(&bytes, &|m| model_exists(assets, m))
}

/// Peak resident memory of this process (Linux `VmHWM`), bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Native hooks: wall clock, a progress callback, a cancel flag (Ctrl-C in the CLI), memory.
pub struct NativeHooks<'a> {
    start: std::time::Instant,
    on_progress: &'a mut dyn FnMut(&Progress),
    cancel: Arc<AtomicBool>,
}

impl<'a> NativeHooks<'a> {
    pub fn new(on_progress: &'a mut dyn FnMut(&Progress), cancel: Arc<AtomicBool>) -> Self {
        Self { start: std::time::Instant::now(), on_progress, cancel }
    }
}

impl Hooks for NativeHooks<'_> {
    fn progress(&mut self, p: &Progress) -> bool {
        (self.on_progress)(p);
        !self.cancel.load(Ordering::Relaxed)
    }
    fn now_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1000.0
    }
    async fn pause(&self) {}
    fn memory(&self) -> Option<u64> {
        peak_rss()
    }
}

/// Runs `spec` with model folders and bundled data read from `assets`. `gpu` is the context to
/// use when the spec wants WebGPU (`None`: acquire one if needed). Returns the results, complete
/// or as far as they got when `hooks` cancelled.
pub fn run(spec: &Spec, assets: &Path, gpu: Option<Arc<GpuContext>>, hooks: &mut NativeHooks) -> Result<Results> {
    let (folders, data) = inputs(spec, assets)?;
    let gpu = match (spec.backend, gpu) {
        (BackendChoice::Cpu, _) => Err("the CPU backend was chosen".to_string()),
        (_, Some(c)) => Ok(c),
        (_, None) => pollster::block_on(GpuContext::acquire()).map_err(|e| e.to_string()),
    };
    pollster::block_on(super::run(spec, gpu, &folders, &data, hooks))
}

/// The model folders and bundled data `spec` reads, from `assets`.
pub fn inputs(spec: &Spec, assets: &Path) -> Result<(Folders, Vec<Dataset>)> {
    let folders: Folders = spec.models.iter().map(|m| Ok((m.clone(), read_folder(&model_dir(assets, m))?))).collect::<Result<_>>()?;
    let data: Vec<Dataset> = spec
        .data()
        .into_iter()
        .chain(spec.calibration_data())
        .map(|(task, split)| {
            let path = assets.join(crate::data::bundled_path(task, split)?);
            let bytes = std::fs::read(&path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
            Dataset::from_bytes(task, split, &bytes)
        })
        .collect::<Result<_>>()?;
    Ok((folders, data))
}
