//! Running a spec natively (`trilemma run`): model folders and bundled data read from disk,
//! the backend chosen as the spec asks (wgpu when a GPU is wanted and usable, else the CPU),
//! a GPU that fails mid-run replaced by the CPU for the remaining units.

use super::{assemble, run_units, Dataset, Hooks, LoadedModel, Progress, Results, Spec, UnitResult, BUNDLED_MODELS};
use crate::backend::cpu::CpuBackend;
use crate::backend::gpu::{GpuBackend, GpuContext};
use crate::backend::{Backend, BackendChoice};
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

/// Every regular file of a model folder, by name.
pub fn read_folder(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let io = |e: std::io::Error| Error::Io(format!("{}: {e}", dir.display()));
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if entry.file_type().map_err(io)?.is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            files.insert(name, std::fs::read(entry.path()).map_err(io)?);
        }
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
    gpu: Option<Arc<GpuContext>>,
}

impl<'a> NativeHooks<'a> {
    pub fn new(on_progress: &'a mut dyn FnMut(&Progress), cancel: Arc<AtomicBool>) -> Self {
        Self { start: std::time::Instant::now(), on_progress, cancel, gpu: None }
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
    fn memory(&self) -> (Option<u64>, Option<u64>) {
        (peak_rss(), self.gpu.as_ref().map(|g| g.memory().peak))
    }
}

fn load_models<B: Backend>(be: &B, spec: &Spec, folders: &BTreeMap<String, BTreeMap<String, Vec<u8>>>, check: &dyn Fn(&BTreeMap<String, Vec<u8>>) -> Result<()>) -> Result<Vec<LoadedModel<B>>> {
    spec.models
        .iter()
        .map(|m| {
            let files = &folders[m];
            check(files)?;
            LoadedModel::load(be, m, files).map_err(|e| match e {
                Error::Invalid(msg) => Error::Invalid(format!("model {m}: {msg}")),
                other => other,
            })
        })
        .collect()
}

/// Runs `spec` with bundled data from `assets`. `gpu` is the context to use when the spec wants
/// WebGPU (`None`: acquire one if needed). Returns the results, complete or as far as they got
/// when `hooks` cancelled.
pub fn run(spec: &Spec, assets: &Path, gpu: Option<Arc<GpuContext>>, hooks: &mut NativeHooks) -> Result<Results> {
    let folders: BTreeMap<String, BTreeMap<String, Vec<u8>>> =
        spec.models.iter().map(|m| Ok((m.clone(), read_folder(&model_dir(assets, m))?))).collect::<Result<_>>()?;
    let data: Vec<Dataset> = spec
        .data()
        .into_iter()
        .map(|(task, split)| {
            let rel = crate::data::bundled_path(task, split)?;
            let path = assets.join(rel);
            let bytes = std::fs::read(&path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
            Dataset::from_bytes(task, split, &bytes)
        })
        .collect::<Result<_>>()?;
    let t0 = std::time::Instant::now();
    let mut units: Vec<UnitResult> = Vec::new();
    let mut fallback: Option<String> = None;
    // The GPU, when the spec asks for it and it is usable.
    if spec.backend != BackendChoice::Cpu {
        let ctx = match gpu {
            Some(c) => Ok(c),
            None => pollster::block_on(GpuContext::acquire()).map_err(|e| e.to_string()),
        };
        match spec.backend.use_gpu(ctx.as_ref().map(|c| c.is_software()).map_err(Clone::clone)) {
            Ok(()) => {
                let ctx = ctx.expect("use_gpu accepted a context");
                let be = GpuBackend::new(ctx.clone());
                let fits = |files: &BTreeMap<String, Vec<u8>>| be.check_fits(&crate::io::Checkpoint::from_files(files)?.tensors).map(|_| ());
                match load_models(&be, spec, &folders, &fits) {
                    Ok(models) => {
                        hooks.gpu = Some(ctx);
                        let outcome = pollster::block_on(run_units(spec, &be, &models, &data, &mut units, hooks));
                        hooks.gpu = None;
                        match outcome {
                            Ok(finished) => {
                                let prov = super::Provenance::new(spec, &be, None, &models, &data);
                                return assemble(spec, prov, units, !finished, t0.elapsed().as_secs_f64());
                            }
                            Err(e) => fallback = Some(format!("WebGPU failed ({e}); the remaining evaluations ran on the CPU")),
                        }
                    }
                    Err(e) => fallback = Some(format!("the GPU could not hold the models ({e}); ran on the CPU")),
                }
            }
            Err(why) => fallback = Some(why),
        }
    }
    let be = CpuBackend::new();
    let models = load_models(&be, spec, &folders, &|_| Ok(()))?;
    let finished = pollster::block_on(run_units(spec, &be, &models, &data, &mut units, hooks))?;
    let fallback = if spec.backend == BackendChoice::Cpu { None } else { fallback };
    let prov = super::Provenance::new(spec, &be, fallback, &models, &data);
    assemble(spec, prov, units, !finished, t0.elapsed().as_secs_f64())
}
