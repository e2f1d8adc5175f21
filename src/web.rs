//! The whole JavaScript-facing surface (wasm-bindgen). Nothing else in the crate touches JS.
//!
//! Plain objects in and out (serde-wasm-bindgen, JSON-compatible: `None` becomes `null`);
//! every error becomes a JS `Error` with the crate's readable message. Runs in a Web Worker.

use crate::backend::cpu::CpuBackend;
use crate::backend::gpu::{GpuBackend, GpuContext};
use crate::backend::{tolerance, Backend, BackendInfo};
use crate::demo;
use crate::data::Task;
use crate::error::{Error, Result};
use crate::io::Checkpoint;
use crate::models::Model;
use crate::text::TextTokenizer;
use serde::Serialize;
use std::cell::RefCell;
use std::sync::Arc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

/// Where the bundled tokenizer is served, relative to the worker script.
const TOKENIZER_URL: &str = "assets/tokenizer/tokenizer.json";
/// The bundled default models (`trilemma train`), one Hugging Face folder each.
const MODELS_URL: &str = "assets/models";
const MODEL_FOLDERS: [&str; 3] = ["transformer", "gla", "hgrn_bit"];

/// One bundled model, loaded on the CPU and (when there is a GPU) uploaded once to it.
struct Loaded {
    folder: &'static str,
    architecture: &'static str,
    tokenizer: TextTokenizer,
    cpu: Model<CpuBackend>,
    /// The backend the model was uploaded with (GPU tensors belong to one backend) and the model.
    gpu: Option<(GpuBackend, Model<GpuBackend>)>,
    gpu_error: Option<String>,
    label_names: Vec<String>,
    /// Whole-word neighbours in the input embeddings (the attacks' Sub-W and synonym source).
    neighbours: crate::attacks::neighbours::EmbeddingNeighbours,
    bytes: usize,
    /// (as stored, as f32) — see [`Checkpoint::weight_bytes`].
    weight_bytes: (usize, usize),
    load_ms: f64,
}

struct Session {
    tokenizer: TextTokenizer,
    gpu: Option<Arc<GpuContext>>,
    gpu_error: Option<String>,
    /// Per folder: the loaded model, or why it could not be loaded.
    models: Vec<std::result::Result<Loaded, (String, String)>>,
}

thread_local! {
    static SESSION: RefCell<Option<Arc<Session>>> = const { RefCell::new(None) };
}

#[derive(Serialize)]
struct StartReport {
    version: &'static str,
    backend: BackendInfo,
    gpu_error: Option<String>,
    models: Vec<ModelInfo>,
}

#[derive(Serialize)]
struct ModelInfo {
    folder: String,
    architecture: Option<String>,
    bytes: Option<usize>,
    load_ms: Option<f64>,
    tasks: Vec<String>,
    on_gpu: bool,
    error: Option<String>,
}

fn to_js<T: Serialize>(v: &T) -> std::result::Result<JsValue, JsError> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(|e| JsError::new(&e.to_string()))
}

fn js_err(e: Error) -> JsError {
    JsError::new(&e.to_string())
}

/// `performance.now()` in workers and windows alike (milliseconds).
fn now_ms() -> f64 {
    js_sys::Reflect::get(&js_sys::global(), &"performance".into())
        .ok()
        .and_then(|p| p.dyn_into::<web_sys::Performance>().ok())
        .map(|p| p.now())
        .unwrap_or_else(js_sys::Date::now)
}

async fn fetch_bytes(url: &str) -> Result<Vec<u8>> {
    let global: web_sys::WorkerGlobalScope = js_sys::global()
        .dyn_into()
        .map_err(|_| Error::Invalid("the Trilemma core must run in a Web Worker".into()))?;
    let resp = JsFuture::from(global.fetch_with_str(url)).await.map_err(|e| Error::Io(format!("fetch {url}: {e:?}")))?;
    let resp: web_sys::Response = resp.dyn_into().map_err(|_| Error::Io(format!("fetch {url}: not a Response")))?;
    if !resp.ok() {
        return Err(Error::Io(format!("fetch {url}: HTTP {}", resp.status())));
    }
    let buf = resp.array_buffer().map_err(|e| Error::Io(format!("{url}: {e:?}")))?;
    let buf = JsFuture::from(buf).await.map_err(|e| Error::Io(format!("{url}: {e:?}")))?;
    Ok(js_sys::Uint8Array::new(&buf).to_vec())
}

/// Load the bundled tokenizer and acquire the GPU (once). Safe to call again: the second call
/// returns the same report without re-acquiring anything.
#[wasm_bindgen]
pub async fn start() -> std::result::Result<JsValue, JsError> {
    start_session(true).await
}

/// [`start`] without the GPU: the tokenizer and the models on the CPU only. The page's helper
/// workers call this (they run batches of an evaluation or benchmark on the CPU, each with its own
/// wasm instance and its own copy of the models); `gpu_error` says the GPU was not asked for.
#[wasm_bindgen]
pub async fn start_cpu() -> std::result::Result<JsValue, JsError> {
    start_session(false).await
}

async fn start_session(with_gpu: bool) -> std::result::Result<JsValue, JsError> {
    console_error_panic_hook::set_once();
    let existing = SESSION.with(|s| s.borrow().clone());
    let session = match existing {
        Some(s) => s,
        None => {
            let tokenizer = TextTokenizer::from_json_bytes(&fetch_bytes(TOKENIZER_URL).await.map_err(js_err)?).map_err(js_err)?;
            let (gpu, gpu_error) = match with_gpu {
                false => (None, Some("a CPU-only worker: the GPU was not asked for".to_string())),
                true => match GpuContext::acquire().await {
                    Ok(ctx) => (Some(ctx), None),
                    Err(e) => (None, Some(e.to_string())),
                },
            };
            let mut models = Vec::new();
            for folder in MODEL_FOLDERS {
                models.push(load_model(folder, gpu.as_ref()).await.map_err(|e| (folder.to_string(), e.to_string())));
            }
            let s = Arc::new(Session { tokenizer, gpu, gpu_error, models });
            SESSION.with(|cell| *cell.borrow_mut() = Some(s.clone()));
            s
        }
    };
    let backend = match &session.gpu {
        Some(ctx) => ctx.info(),
        None => CpuBackend::new().info(),
    };
    let models = session
        .models
        .iter()
        .map(|m| match m {
            Ok(l) => ModelInfo {
                folder: l.folder.into(),
                architecture: Some(l.architecture.into()),
                bytes: Some(l.bytes),
                load_ms: Some(l.load_ms),
                tasks: l.cpu.common.default_task.iter().chain(l.cpu.heads.keys()).cloned().collect(),
                on_gpu: l.gpu.is_some(),
                error: l.gpu_error.clone(),
            },
            Err((folder, e)) => ModelInfo {
                folder: folder.clone(),
                architecture: None,
                bytes: None,
                load_ms: None,
                tasks: vec![],
                on_gpu: false,
                error: Some(e.clone()),
            },
        })
        .collect();
    to_js(&StartReport { version: crate::VERSION, backend, gpu_error: session.gpu_error.clone(), models })
}

/// Fetch and load one bundled model folder on the CPU, and on the GPU when there is one.
async fn load_model(folder: &'static str, gpu: Option<&Arc<GpuContext>>) -> Result<Loaded> {
    let t0 = now_ms();
    let mut files = std::collections::BTreeMap::new();
    for name in crate::experiment::MODEL_FILES {
        files.insert(name.to_string(), fetch_bytes(&format!("{MODELS_URL}/{folder}/{name}")).await?);
    }
    let bytes = files.values().map(|f| f.len()).sum();
    let ck = Checkpoint::from_files(&files)?;
    let tokenizer = TextTokenizer::from_json_bytes(ck.tokenizer_json.as_deref().unwrap_or_default())?;
    let label_names = label_names(&ck.config);
    let weight_bytes = ck.weight_bytes();
    let neighbours = crate::attacks::neighbours::EmbeddingNeighbours::from_checkpoint(&ck, &tokenizer)?;
    let (gpu_model, gpu_error) = match gpu {
        Some(ctx) => {
            let be = GpuBackend::new(ctx.clone());
            match be.check_fits(&ck.tensors).and_then(|_| Model::load(&be, ck.clone())) {
                Ok(m) => (Some((be, m)), None),
                Err(e) => (None, Some(format!("not loaded on the GPU: {e}"))),
            }
        }
        None => (None, None),
    };
    let cpu = Model::load(&CpuBackend::new(), ck)?;
    if tokenizer.vocab_size() > cpu.common.vocab {
        return Err(Error::Invalid(format!("{folder}: tokenizer has {} tokens, the model {}", tokenizer.vocab_size(), cpu.common.vocab)));
    }
    let architecture = cpu.common.arch.display_name();
    Ok(Loaded { folder, architecture, tokenizer, cpu, gpu: gpu_model, gpu_error, label_names, neighbours, bytes, weight_bytes, load_ms: now_ms() - t0 })
}

/// `id2label` in id order.
fn label_names(config: &serde_json::Value) -> Vec<String> {
    let Some(m) = config.get("id2label").and_then(|m| m.as_object()) else { return Vec::new() };
    let mut v: Vec<(usize, String)> = m.iter().filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_string()))).collect();
    v.sort();
    v.into_iter().map(|(_, s)| s).collect()
}

#[derive(Serialize)]
struct ModelRun {
    probs: Vec<f32>,
    label: usize,
    label_name: String,
    ms: f64,
}

#[derive(Serialize)]
struct ModelRow {
    folder: String,
    architecture: String,
    tokens: usize,
    cpu: Option<ModelRun>,
    gpu: Option<ModelRun>,
    /// max |GPU − CPU| over the class logits, and its tolerance for this architecture.
    max_abs_diff: Option<f32>,
    tolerance: f32,
    same_label: Option<bool>,
    error: Option<String>,
}

#[derive(Serialize)]
struct ClassifyReport {
    task: String,
    text: String,
    text_pair: Option<String>,
    tokens: Vec<String>,
    rows: Vec<ModelRow>,
    /// Why nothing ran on the GPU, when there is no adapter.
    gpu_error: Option<String>,
}

async fn run_model<B: Backend>(be: &B, m: &Model<B>, ids: &[u32], task: Task, names: &[String]) -> Result<(ModelRun, Vec<f32>)> {
    let t0 = now_ms();
    let logits = be.read(&m.classify_task(be, ids, Some(task.model_task().name()))?).await?;
    let ms = now_ms() - t0;
    let logits = logits.as_f32("logits")?.to_vec();
    let probs = crate::eval::softmax(&logits);
    let label = demo::top_k(&probs, 1)[0].0;
    let label_name = match task.label_name(label as u32) {
        Ok(n) => n.to_string(),
        Err(_) => names.get(label).cloned().unwrap_or_else(|| format!("class {label}")),
    };
    Ok((ModelRun { probs, label, label_name, ms }, logits))
}

/// The task by name and the second text, refused when the task reads two texts and there is one, or the reverse
/// (a blank second text counts as none).
fn task_and_pair(task: &str, text_pair: Option<String>) -> std::result::Result<(Task, Option<String>), JsError> {
    let task = Task::parse(task).map_err(js_err)?;
    let pair = text_pair.filter(|p| !p.trim().is_empty());
    match (task.is_pair(), &pair) {
        (true, None) => Err(JsError::new(&format!("{task} compares two texts: fill in the second text too"))),
        (false, Some(_)) => Err(JsError::new(&format!("{task} reads one text: leave the second text empty"))),
        _ => Ok((task, pair)),
    }
}

/// Classify `text` (and `text_pair` for pair tasks) for `task` with every bundled model, on the
/// CPU and on the GPU when there is one.
#[wasm_bindgen]
pub async fn classify(task: String, text: String, text_pair: Option<String>, on_progress: js_sys::Function) -> std::result::Result<JsValue, JsError> {
    let session = SESSION.with(|s| s.borrow().clone()).ok_or_else(|| JsError::new("call start() before classify()"))?;
    let (task, pair) = task_and_pair(&task, text_pair)?;
    let report = |stage: &str, f: f64| {
        let _ = on_progress.call2(&JsValue::NULL, &JsValue::from_str(stage), &JsValue::from_f64(f));
    };
    let enc = match &pair {
        Some(b) => session.tokenizer.encode_pair(&text, b),
        None => session.tokenizer.encode(&text),
    }
    .map_err(js_err)?;
    let mut rows = Vec::new();
    let n = session.models.len().max(1) as f64;
    for (i, m) in session.models.iter().enumerate() {
        let l = match m {
            Ok(l) => l,
            Err((folder, e)) => {
                rows.push(ModelRow {
                    folder: folder.clone(),
                    architecture: String::new(),
                    tokens: 0,
                    cpu: None,
                    gpu: None,
                    max_abs_diff: None,
                    tolerance: tolerance::MODEL_LOGITS_ABS,
                    same_label: None,
                    error: Some(e.clone()),
                });
                continue;
            }
        };
        report(&format!("{}: CPU", l.architecture), i as f64 / n);
        let mut row = ModelRow {
            folder: l.folder.into(),
            architecture: l.architecture.into(),
            tokens: 0,
            cpu: None,
            gpu: None,
            max_abs_diff: None,
            tolerance: tolerance::model_logits_abs(l.cpu.common.arch),
            same_label: None,
            error: None,
        };
        let ids = match l.tokenizer.encode_example(&text, pair.as_deref()) {
            Ok(ids) => ids,
            Err(e) => {
                row.error = Some(e.to_string());
                rows.push(row);
                continue;
            }
        };
        row.tokens = ids.len();
        let cpu = CpuBackend::new();
        let cpu_out = match run_model(&cpu, &l.cpu, &ids, task, &l.label_names).await {
            Ok(r) => Some(r),
            Err(e) => {
                row.error = Some(e.to_string());
                None
            }
        };
        if let Some((gbe, gm)) = &l.gpu {
            report(&format!("{}: WebGPU", l.architecture), (i as f64 + 0.5) / n);
            match run_model(gbe, gm, &ids, task, &l.label_names).await {
                Ok((run, logits)) => {
                    if let Some((c, cl)) = &cpu_out {
                        row.max_abs_diff = Some(logits.iter().zip(cl).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max));
                        row.same_label = Some(c.label == run.label);
                    }
                    row.gpu = Some(run);
                }
                // The CPU result stands; the row says why the GPU one is missing.
                Err(e) => row.error = Some(format!("WebGPU: {e}")),
            }
        } else if let Some(e) = &l.gpu_error {
            row.error = Some(e.clone());
        }
        row.cpu = cpu_out.map(|(r, _)| r);
        rows.push(row);
    }
    report("done", 1.0);
    to_js(&ClassifyReport { task: task.name().into(), text, text_pair: pair, tokens: enc.tokens, rows, gpu_error: session.gpu_error.clone() })
}

#[derive(Serialize)]
struct AttackReport {
    folder: String,
    architecture: String,
    recipe: String,
    label_names: Vec<String>,
    record: crate::attacks::search::AttackRecord,
    ms: f64,
}

/// Attack one text (or pair: the second text is edited) with `recipe` against bundled model `folder` on the CPU
/// path, taking the model's own prediction on the unchanged text as the label to move away from (there is no gold
/// label for a typed text). `budget` is the share of words that may change, `max_queries` the model queries.
#[wasm_bindgen]
#[allow(clippy::too_many_arguments)]
pub async fn attack_text(
    folder: String,
    task: String,
    text: String,
    text_pair: Option<String>,
    recipe: String,
    seed: f64,
    budget: f64,
    max_queries: usize,
) -> std::result::Result<JsValue, JsError> {
    use crate::attacks::search::{self, AttackConfig, Input, Lexicon, ModelVictim, Recipe, Victim};
    let session = SESSION.with(|s| s.borrow().clone()).ok_or_else(|| JsError::new("call start() before attack_text()"))?;
    let (task, pair) = task_and_pair(&task, text_pair)?;
    if !(seed >= 0.0 && seed.fract() == 0.0 && seed <= 9_007_199_254_740_991.0) {
        return Err(JsError::new("the seed must be a whole number from 0 to 2^53 − 1"));
    }
    let cfg = AttackConfig { recipe: Recipe::parse(&recipe).map_err(js_err)?, budget, max_queries };
    cfg.check().map_err(js_err)?;
    let l = match session.models.iter().find(|m| matches!(m, Ok(l) if l.folder == folder) || matches!(m, Err((f, _)) if *f == folder)) {
        Some(Ok(l)) => l,
        Some(Err((_, e))) => return Err(JsError::new(&format!("model {folder} did not load: {e}"))),
        None => return Err(JsError::new(&format!("no bundled model {folder:?}"))),
    };
    let be = CpuBackend::new();
    let mut victim = ModelVictim::new(&be, &l.cpu, &l.tokenizer, task).map_err(js_err)?;
    let input = Input { a: text, b: pair };
    if input.a.trim().is_empty() {
        return Err(JsError::new("type a text to attack"));
    }
    let t0 = now_ms();
    let p = victim.probs(std::slice::from_ref(&input)).await.map_err(js_err)?;
    let label = crate::eval::argmax_rows(&p)[0];
    let lex = Lexicon { synonyms: crate::attacks::synonyms::SynonymTable::bundled(), neighbours: &l.neighbours };
    let record = search::attack(&mut victim, &lex, &input, label, 0, &cfg, seed as u64).await.map_err(js_err)?;
    to_js(&AttackReport { folder, architecture: l.architecture.into(), recipe: cfg.recipe.name().into(), label_names: task.label_names().iter().map(|n| n.to_string()).collect(), record, ms: now_ms() - t0 })
}

/// The examples of one evaluation or benchmark and, per bundled model, its batch plan
/// (`eval::Plan`): what [`prepare`] sets up and [`run_batches`] runs parts of.
struct Job {
    /// Per model (in `Session::models` order): the plan, or why there is none.
    plans: Vec<std::result::Result<crate::eval::Plan, String>>,
}

thread_local! {
    static JOB: RefCell<Option<Arc<Job>>> = const { RefCell::new(None) };
}

#[derive(Serialize)]
struct JobModel {
    folder: String,
    architecture: String,
    examples: usize,
    tokens: usize,
    /// Example indices of each batch, and its padded tokens (sequences × the longest).
    batches: Vec<Vec<usize>>,
    batch_tokens: Vec<usize>,
    /// Bytes of the weights as loaded (BitLinear weights packed), and what they would take in f32.
    weight_bytes: usize,
    weight_bytes_f32: usize,
    on_gpu: bool,
    error: Option<String>,
}

#[derive(Serialize)]
struct JobReport {
    task: String,
    split: String,
    examples: usize,
    backend: BackendInfo,
    models: Vec<JobModel>,
}

/// Set up a run over the first `n` examples (0: all) of a bundled split of `task`: fetch and
/// parse the split, encode it with each bundled model's tokenizer and plan the length-sorted
/// batches of up to `max_batch` sequences (`eval::Plan`, the evaluation's own). Replaces the
/// previous job. The plan depends only on the examples and `max_batch`, so every worker that
/// prepares the same job gets the same batches; the page then hands each worker some of them
/// ([`run_batches`]) and puts the rows back by example index.
#[wasm_bindgen]
pub async fn prepare(task: String, split: String, n: usize, max_batch: usize) -> std::result::Result<JsValue, JsError> {
    let session = SESSION.with(|s| s.borrow().clone()).ok_or_else(|| JsError::new("call start() before prepare()"))?;
    if max_batch == 0 {
        return Err(JsError::new("the number of sentences per batch must be positive"));
    }
    let task = Task::parse(&task).map_err(js_err)?;
    let split = crate::data::Split::parse(&split).map_err(js_err)?;
    let path = crate::data::bundled_path(task, split).map_err(js_err)?;
    let bytes = fetch_bytes(&format!("assets/{path}")).await.map_err(js_err)?;
    let mut examples = crate::data::parse_bundled(task, split, &bytes).map_err(js_err)?;
    if n > 0 {
        examples.truncate(n);
    }
    let mut plans = Vec::new();
    let mut models = Vec::new();
    for m in &session.models {
        let (plan, info) = match m {
            Err((folder, e)) => (Err(e.clone()), JobModel::failed(folder, e)),
            Ok(l) => match crate::eval::Plan::new(&l.cpu, &l.tokenizer, task, &examples, max_batch) {
                Err(e) => (Err(e.to_string()), JobModel::failed(l.folder, &e.to_string())),
                Ok(plan) => {
                    let info = JobModel {
                        folder: l.folder.into(),
                        architecture: l.architecture.into(),
                        examples: plan.seqs.len(),
                        tokens: plan.seqs.iter().map(Vec::len).sum(),
                        batch_tokens: (0..plan.batches.len()).map(|b| plan.padded_tokens(b)).collect(),
                        batches: plan.batches.clone(),
                        weight_bytes: l.weight_bytes.0,
                        weight_bytes_f32: l.weight_bytes.1,
                        on_gpu: l.gpu.is_some(),
                        error: None,
                    };
                    (Ok(plan), info)
                }
            },
        };
        plans.push(plan);
        models.push(info);
    }
    JOB.with(|j| *j.borrow_mut() = Some(Arc::new(Job { plans })));
    let backend = match &session.gpu {
        Some(ctx) => ctx.info(),
        None => CpuBackend::new().info(),
    };
    to_js(&JobReport { task: task.name().into(), split: split.name().into(), examples: examples.len(), backend, models })
}

impl JobModel {
    fn failed(folder: &str, e: &str) -> Self {
        JobModel {
            folder: folder.into(),
            architecture: String::new(),
            examples: 0,
            tokens: 0,
            batches: vec![],
            batch_tokens: vec![],
            weight_bytes: 0,
            weight_bytes_f32: 0,
            on_gpu: false,
            error: Some(e.into()),
        }
    }
}

#[derive(Serialize)]
struct BatchesReport {
    /// Example index of each row, and the rows: `classes` logits each, concatenated.
    indices: Vec<usize>,
    classes: usize,
    logits: Vec<f32>,
    /// Time in these batches (after the warm-up, when there was one).
    ms: f64,
}

/// Run batches `batch_ids` of the prepared job ([`prepare`]) through bundled model `model` (its
/// index in the start report) on `backend` (`"cpu"` or `"webgpu"`) and return their logits with
/// each row's example index. With `warm_up`, one untimed single-example pass first (the first
/// GPU dispatches compile the pipelines).
#[wasm_bindgen]
pub async fn run_batches(model: usize, batch_ids: Vec<u32>, backend: String, warm_up: bool) -> std::result::Result<JsValue, JsError> {
    let session = SESSION.with(|s| s.borrow().clone()).ok_or_else(|| JsError::new("call start() before run_batches()"))?;
    let job = JOB.with(|j| j.borrow().clone()).ok_or_else(|| JsError::new("call prepare() before run_batches()"))?;
    let l = match session.models.get(model) {
        None => return Err(JsError::new(&format!("there is no model {model}"))),
        Some(Err((folder, e))) => return Err(JsError::new(&format!("{folder}: {e}"))),
        Some(Ok(l)) => l,
    };
    let plan = match &job.plans[model] {
        Ok(p) => p,
        Err(e) => return Err(JsError::new(&format!("{}: {e}", l.folder))),
    };
    if let Some(&b) = batch_ids.iter().find(|&&b| b as usize >= plan.batches.len()) {
        return Err(JsError::new(&format!("batch {b} of {}", plan.batches.len())));
    }
    async fn go<B: Backend>(be: &B, m: &Model<B>, plan: &crate::eval::Plan, ids: &[u32], warm_up: bool) -> Result<BatchesReport> {
        if warm_up {
            if let Some(&i) = ids.first().and_then(|&b| plan.batches[b as usize].first()) {
                be.read(&plan.readout.forward(be, m, &[plan.seqs[i].as_slice()])?).await?;
            }
        }
        let t0 = now_ms();
        let mut r = BatchesReport { indices: vec![], classes: 0, logits: vec![], ms: 0.0 };
        for &b in ids {
            for (row, &i) in plan.batch_logits(be, m, b as usize).await?.into_iter().zip(&plan.batches[b as usize]) {
                r.classes = row.len();
                r.indices.push(i);
                r.logits.extend(row);
            }
        }
        r.ms = now_ms() - t0;
        Ok(r)
    }
    let report = match backend.as_str() {
        "cpu" => go(&CpuBackend::new(), &l.cpu, plan, &batch_ids, warm_up).await.map_err(|e| e.to_string()),
        "webgpu" => match &l.gpu {
            Some((gbe, gm)) => go(gbe, gm, plan, &batch_ids, warm_up).await.map_err(|e| format!("WebGPU: {e}")),
            None => Err(format!("{} is not on the GPU{}", l.architecture, l.gpu_error.as_deref().map(|e| format!(": {e}")).unwrap_or_default())),
        },
        other => Err(format!("unknown backend {other:?} (cpu or webgpu)")),
    };
    to_js(&report.map_err(|e| JsError::new(&e))?)
}

/// Destroy the GPU device as a lost device would be (for the fallback test: the page sends this
/// when opened with `?simulate=gpu-lost`). Later runs keep their CPU results and say why the GPU
/// ones are missing.
#[wasm_bindgen]
pub fn simulate_gpu_loss() -> std::result::Result<bool, JsError> {
    let session = SESSION.with(|s| s.borrow().clone()).ok_or_else(|| JsError::new("call start() first"))?;
    Ok(match &session.gpu {
        Some(ctx) => {
            ctx.simulate_device_loss();
            true
        }
        None => false,
    })
}

/// Cap the GPU memory at what is allocated now plus `headroom` bytes (negative: lift the cap).
/// The page sends this with `?simulate=gpu-oom` and a headroom of 4 KiB, so the next run's
/// activations do not fit: the runs then complete on the CPU and say "out of GPU memory" (the
/// out-of-memory fallback test). Returns whether there is a GPU.
#[wasm_bindgen]
pub fn set_gpu_memory_headroom(headroom: f64) -> std::result::Result<bool, JsError> {
    let session = SESSION.with(|s| s.borrow().clone()).ok_or_else(|| JsError::new("call start() first"))?;
    Ok(match &session.gpu {
        Some(ctx) => {
            let budget = (headroom >= 0.0).then(|| ctx.memory().allocated.saturating_add(headroom as u64));
            ctx.set_memory_budget(budget);
            true
        }
        None => false,
    })
}

// ---------------------------------------------------------------- experiments

/// The models a spec may name on the page: the bundled ones, and checkpoints the page loads itself — a folder URL or
/// `local:NAME` (files loaded in this tab): [`crate::io::source::Source::parse`]. Whether a URL or local model's
/// files are there is the worker's to check when it runs the spec (www/checkpoint.js), not the link's.
fn page_model(m: &str) -> std::result::Result<(), String> {
    crate::io::source::Source::parse(m).map(|_| ())
}

/// Set by [`set_experiment_cancelled`] (the page's Cancel button: the message reaches the worker
/// while a run waits between batches), read after every batch.
static CANCEL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

struct WebHooks {
    on_progress: js_sys::Function,
    /// Units the page's helper workers run ([`run_experiment`]'s `delegated`).
    delegated: Vec<usize>,
    /// Called once the run's own units are done: a Promise of the helpers' units (JSON array).
    delegated_results: Option<js_sys::Function>,
}

impl crate::experiment::Hooks for WebHooks {
    fn progress(&mut self, p: &crate::experiment::Progress) -> bool {
        if let Ok(v) = to_js(p) {
            let _ = self.on_progress.call1(&JsValue::NULL, &v);
        }
        !CANCEL.load(std::sync::atomic::Ordering::Relaxed)
    }
    fn now_ms(&self) -> f64 {
        now_ms()
    }
    /// A macrotask turn, so messages (Cancel) are handled between batches.
    async fn pause(&self) {
        gloo::timers::future::TimeoutFuture::new(0).await;
    }
    /// The wasm heap: linear memory only grows, so its size is the peak.
    fn memory(&self) -> Option<u64> {
        Some(core::arch::wasm32::memory_size(0) as u64 * 65_536)
    }
    fn delegated(&self) -> Vec<usize> {
        self.delegated.clone()
    }
    /// The helpers' units; anything unreadable counts as not delivered (the engine then runs
    /// those units here), so a helper's failure never fails the run.
    async fn delegated_results(&mut self) -> crate::experiment::Delegated {
        let Some(f) = self.delegated_results.take() else { return Default::default() };
        let Ok(promise) = f.call0(&JsValue::NULL).and_then(|v| v.dyn_into::<js_sys::Promise>()) else { return Default::default() };
        match JsFuture::from(promise).await.ok().and_then(|v| v.as_string()) {
            Some(json) => serde_json::from_str(&json).unwrap_or_default(),
            None => Default::default(),
        }
    }
}

/// Run an experiment spec (JSON) on the bundled models and data — the engine `trilemma run`
/// uses ([`crate::experiment::run`]) — and on checkpoints the page loaded: `models` maps each URL or `local:` model
/// of the spec to its files (`{file name: Uint8Array}`, from www/checkpoint.js). `on_progress(progress)` is called after every batch.
/// Returns the results JSON (cancelled runs keep their finished evaluations). The cancel flag is
/// the caller's to reset before a run ([`set_experiment_cancelled`]), so a Cancel that arrives
/// while the run is still queued is not lost. `delegated` (indices into the spec's evaluation
/// units, [`experiment_plan`]) are run by the page's helper workers ([`run_experiment_units`]) on
/// a CPU run: `delegated_results()` returns a Promise of their results, awaited after this
/// worker's own units; whatever it does not deliver runs here.
#[wasm_bindgen]
pub async fn run_experiment(
    spec_json: String,
    models: JsValue,
    on_progress: js_sys::Function,
    delegated: Vec<u32>,
    delegated_results: Option<js_sys::Function>,
) -> std::result::Result<String, JsError> {
    let session = SESSION.with(|s| s.borrow().clone()).ok_or_else(|| JsError::new("call start() before run_experiment()"))?;
    let (spec, folders, data) = experiment_inputs(&spec_json, &models).await?;
    let gpu = match &session.gpu {
        Some(ctx) => Ok(ctx.clone()),
        None => Err(session.gpu_error.clone().unwrap_or_else(|| "no WebGPU adapter".into())),
    };
    let delegated = delegated.into_iter().map(|i| i as usize).collect();
    let mut hooks = WebHooks { on_progress, delegated, delegated_results };
    let results = crate::experiment::run(&spec, gpu, &folders, &data, &mut hooks).await.map_err(js_err)?;
    Ok(results.to_json())
}

/// How a spec's units may be shared with the page's helper workers: `cpu` (the run will be on the
/// CPU path, where helpers' results are the run's own; not when the spec's backend takes this
/// page's GPU), `bundled` (every model is bundled: helpers load those themselves), and the units
/// that may be shared, each with its `index` ([`crate::experiment::Hooks::delegated`]) and `work`
/// (examples; an attacked example counts [`crate::experiment::ATTACK_EXAMPLE_WEIGHT`]) for
/// balancing: every evaluation, and every attack unless a repair section (which needs every
/// evaluation before the attacks start) makes the run wait for the helpers earlier. Only the main
/// worker knows the GPU, so it answers.
#[wasm_bindgen]
pub fn experiment_plan(spec_json: &str) -> std::result::Result<JsValue, JsError> {
    use crate::experiment::Spec;
    use crate::io::source::Source;
    #[derive(Serialize)]
    struct PlanUnit {
        index: usize,
        model: String,
        task: String,
        split: String,
        /// The recipe of an attack unit.
        attack: Option<String>,
        work: usize,
    }
    #[derive(Serialize)]
    struct Plan {
        cpu: bool,
        bundled: bool,
        units: Vec<PlanUnit>,
    }
    let session = SESSION.with(|s| s.borrow().clone()).ok_or_else(|| JsError::new("call start() before experiment_plan()"))?;
    let spec = Spec::from_json(spec_json.as_bytes(), &page_model).map_err(js_err)?;
    // The engine's own choice ([`crate::experiment::run`]): the CPU unless the spec takes this GPU.
    let cpu = spec.backend.use_gpu(session.gpu.as_ref().map(|c| c.is_software()).ok_or_else(String::new)).is_err();
    let bundled = spec.models.iter().all(|m| matches!(Source::parse(m), Ok(Source::Bundled { .. })));
    let examples = |task, split| {
        let rows = crate::data::bundled(task, split).map(|b| b.rows).unwrap_or(0);
        spec.limit.map_or(rows, |l| l.min(rows))
    };
    let evals = spec.units();
    let mut units: Vec<PlanUnit> = evals
        .iter()
        .enumerate()
        .map(|(index, u)| PlanUnit { index, model: u.model.clone(), task: u.task.to_string(), split: u.split.to_string(), attack: None, work: examples(u.task, u.split) })
        .collect();
    if spec.repair.is_none() {
        for (i, u) in crate::experiment::attack::attack_units(&spec).into_iter().enumerate() {
            units.push(PlanUnit {
                index: evals.len() + i,
                model: u.model,
                task: u.task.to_string(),
                split: u.split.to_string(),
                attack: Some(spec.attacks[u.config].recipe.name().to_string()),
                work: examples(u.task, u.split) * crate::experiment::ATTACK_EXAMPLE_WEIGHT,
            });
        }
    }
    to_js(&Plan { cpu, bundled, units })
}

/// A helper worker's share of the main worker's run ([`experiment_plan`], [`run_experiment`]'s
/// `delegated`): the units `units` of the spec (evaluations, then attacks), on the CPU, bundled
/// models only. Returns their results as JSON `{units, attacks}`; cancelled, the finished ones.
#[wasm_bindgen]
pub async fn run_experiment_units(spec_json: String, units: Vec<u32>, on_progress: js_sys::Function) -> std::result::Result<String, JsError> {
    let (spec, folders, data) = experiment_inputs(&spec_json, &JsValue::UNDEFINED).await?;
    let units: Vec<usize> = units.into_iter().map(|i| i as usize).collect();
    let mut hooks = WebHooks { on_progress, delegated: Vec::new(), delegated_results: None };
    let done = crate::experiment::run_delegated(&spec, &folders, &data, &units, &mut hooks).await.map_err(js_err)?;
    serde_json::to_string(&done).map_err(|e| JsError::new(&e.to_string()))
}

/// The spec, its model folders and its data, fetched: bundled models from the page's assets, URL
/// and local models from `models` (`{name: {file: Uint8Array}}`, www/checkpoint.js).
async fn experiment_inputs(
    spec_json: &str,
    models: &JsValue,
) -> std::result::Result<(crate::experiment::Spec, crate::experiment::Folders, Vec<crate::experiment::Dataset>), JsError> {
    use crate::experiment::{self, Dataset, Spec};
    let spec = Spec::from_json(spec_json.as_bytes(), &page_model).map_err(js_err)?;
    // The page serves the validation splits but not the training data (www/index.html copies
    // assets/data only): a `repair` section calibrates on the bundled set or on validation here.
    if spec.repair.as_ref().is_some_and(|r| r.calibration_split == crate::repair::CalibrationSplit::Train) {
        return Err(JsError::new(
            "the spec's repair section calibrates on the training split, which the page does not serve: set \"calibration_split\" to \"bundled\" (the default: the bundled calibration set's train rows) or \"validation\" there, or run it with `trilemma run`",
        ));
    }
    let mut folders = experiment::Folders::new();
    for m in &spec.models {
        use crate::io::source::Source;
        let files = match Source::parse(m).map_err(|e| JsError::new(&e))? {
            Source::Bundled { .. } => {
                let mut files = std::collections::BTreeMap::new();
                for name in experiment::MODEL_FILES {
                    files.insert(name.to_string(), fetch_bytes(&format!("{MODELS_URL}/{m}/{name}")).await.map_err(js_err)?);
                }
                files
            }
            // Fetched (or read from the cache, or from local files) by the worker's JavaScript: www/checkpoint.js.
            Source::Url { .. } | Source::Local { .. } => {
                let given = js_sys::Reflect::get(models, &JsValue::from_str(m)).unwrap_or(JsValue::UNDEFINED);
                if given.is_undefined() || given.is_null() {
                    return Err(JsError::new(&format!("model {m}: its files were not loaded")));
                }
                files_of(&given).map_err(|e| JsError::new(&format!("model {m}: {e}")))?
            }
        };
        folders.insert(m.clone(), files);
    }
    let mut data = Vec::new();
    for (task, split) in spec.data() {
        let path = crate::data::bundled_path(task, split).map_err(js_err)?;
        let bytes = fetch_bytes(&format!("assets/{path}")).await.map_err(js_err)?;
        data.push(Dataset::from_bytes(task, split, &bytes).map_err(js_err)?);
    }
    // The `repair` section's calibration examples (validation splits: see the check above).
    for (task, split) in spec.calibration_data() {
        let path = crate::data::bundled_path(task, split).map_err(js_err)?;
        let bytes = fetch_bytes(&format!("assets/{path}")).await.map_err(js_err)?;
        data.push(Dataset::from_bytes(task, split, &bytes).map_err(js_err)?);
    }
    Ok((spec, folders, data))
}

/// Ask the running experiment to stop after its current batch (`true`), or clear the request
/// before starting one (`false`).
#[wasm_bindgen]
pub fn set_experiment_cancelled(cancelled: bool) {
    CANCEL.store(cancelled, std::sync::atomic::Ordering::Relaxed);
}

fn parse_results(json: &str) -> std::result::Result<crate::experiment::Results, JsError> {
    crate::experiment::Results::from_json(json.as_bytes()).map_err(js_err)
}

/// The report of a results JSON as an HTML fragment for the page. Call on the page's main
/// thread: the charts measure their text with the DOM.
#[wasm_bindgen]
pub fn report_fragment(results_json: &str) -> std::result::Result<String, JsError> {
    crate::report::body(&parse_results(results_json)?).map_err(js_err)
}

/// The standalone HTML report (for download). Main thread, as [`report_fragment`].
#[wasm_bindgen]
pub fn report_document(results_json: &str) -> std::result::Result<String, JsError> {
    crate::report::html(&parse_results(results_json)?).map_err(js_err)
}

/// Per-example predictions as CSV.
#[wasm_bindgen]
pub fn report_csv(results_json: &str) -> std::result::Result<String, JsError> {
    Ok(crate::report::csv(&parse_results(results_json)?))
}

// ---------------------------------------------------------------- checkpoints from a URL or local files

/// A JS object `{file name: Uint8Array}` as a model folder.
fn files_of(v: &JsValue) -> std::result::Result<std::collections::BTreeMap<String, Vec<u8>>, String> {
    let obj: &js_sys::Object = v.dyn_ref().ok_or("the model's files are not an object of file name -> bytes")?;
    let mut files = std::collections::BTreeMap::new();
    for entry in js_sys::Object::entries(obj).iter() {
        let pair: js_sys::Array = entry.into();
        let name = pair.get(0).as_string().ok_or("a file name is not a string")?;
        let bytes: js_sys::Uint8Array = pair.get(1).dyn_into().map_err(|_| format!("{name}: not bytes (a Uint8Array)"))?;
        files.insert(name, bytes.to_vec());
    }
    Ok(files)
}

/// What a spec's model name refers to: `{kind: "bundled" | "url" | "local", name | base}`, or why the page cannot load
/// it ([`crate::io::source::Source::parse`]).
#[wasm_bindgen]
pub fn model_source(name: &str) -> std::result::Result<JsValue, JsError> {
    to_js(&crate::io::source::Source::parse(name).map_err(|e| JsError::new(&e))?)
}

/// A typed model address as the folder URL the page fetches from ([`crate::io::source::folder_url`]).
#[wasm_bindgen]
pub fn model_folder_url(input: &str) -> std::result::Result<String, JsError> {
    crate::io::source::folder_url(input).map_err(|e| JsError::new(&e))
}

/// `config.json` checked before any weights are fetched: `{architecture, model_type, vocab, hidden, layers, num_labels}`.
#[wasm_bindgen]
pub fn model_config_summary(bytes: &[u8]) -> std::result::Result<JsValue, JsError> {
    to_js(&crate::io::source::config_summary(bytes).map_err(|e| JsError::new(&e))?)
}

/// The shards of a `model.safetensors.index.json`: `{files, total_size}`.
#[wasm_bindgen]
pub fn model_index_shards(bytes: &[u8]) -> std::result::Result<JsValue, JsError> {
    to_js(&crate::io::source::index_shards(bytes).map_err(|e| JsError::new(&e))?)
}

/// The header of a safetensors file from its first bytes: `{need: n}` while it needs the first `n` bytes, then the
/// header (`{header_bytes, data_bytes, tensors, f32_bytes, largest_bytes, largest}`); refused when it is not one.
#[wasm_bindgen]
pub fn model_safetensors_header(file: &str, prefix: &[u8], file_len: Option<f64>) -> std::result::Result<JsValue, JsError> {
    match crate::io::source::safetensors_header(file, prefix, file_len.map(|l| l as u64)).map_err(|e| JsError::new(&e))? {
        Ok(h) => to_js(&h),
        Err(need) => to_js(&serde_json::json!({ "need": need })),
    }
}

/// The memory check made before the weights are downloaded ([`crate::io::source::check_memory`]): the estimate, or
/// an error with the numbers.
#[wasm_bindgen]
pub fn model_check_memory(file_bytes: f64, f32_bytes: f64, largest_file: &str, largest_file_bytes: f64, largest_tensor: &str, largest_tensor_bytes: f64) -> std::result::Result<JsValue, JsError> {
    let est = crate::io::source::check_memory(file_bytes as u64, f32_bytes as u64, (largest_file, largest_file_bytes as u64), (largest_tensor, largest_tensor_bytes as u64))
        .map_err(|e| JsError::new(&e))?;
    to_js(&est)
}

#[derive(Serialize)]
struct GpuLimits {
    max_buffer_size: u64,
    max_storage_buffer_binding_size: u64,
}

/// The GPU's buffer limits (`null` without a GPU): weight matrices larger than one binding are uploaded in row
/// blocks (README "Limits"); any other tensor must fit one binding.
#[wasm_bindgen]
pub fn gpu_limits() -> std::result::Result<JsValue, JsError> {
    let session = SESSION.with(|s| s.borrow().clone()).ok_or_else(|| JsError::new("call start() first"))?;
    let limits = session.gpu.as_ref().map(|ctx| GpuLimits { max_buffer_size: ctx.limits.max_buffer_size, max_storage_buffer_binding_size: ctx.limits.max_storage_buffer_binding_size });
    to_js(&limits)
}

#[derive(Serialize)]
struct ModelInspection {
    name: String,
    architecture: String,
    layers: usize,
    hidden: usize,
    vocab: usize,
    parameters: usize,
    /// (as stored, as f32): [`Checkpoint::weight_bytes`].
    weight_bytes: usize,
    weight_bytes_f32: usize,
    /// Task heads; none: the spec's `readout: auto` reads it zero-shot through its LM head.
    tasks: Vec<String>,
    lm_head: bool,
    files: Vec<crate::experiment::FileRecord>,
    /// Whether the weights fit this GPU (`null` without one), and why not.
    gpu_fits: Option<bool>,
    gpu_note: Option<String>,
    load_ms: f64,
}

/// Loads a checkpoint's files (`{file name: Uint8Array}`) as a run would, on the CPU, and says what it is; refused
/// with the loader's error (which names the file) when it is not a model the page can run. Nothing is kept.
#[wasm_bindgen]
pub fn inspect_model(name: &str, files: JsValue) -> std::result::Result<JsValue, JsError> {
    let t0 = now_ms();
    let files = files_of(&files).map_err(|e| JsError::new(&e))?;
    let ck = Checkpoint::from_files(&files).map_err(js_err)?;
    let tok = ck.tokenizer_json.as_deref().ok_or_else(|| JsError::new("the folder has no tokenizer.json"))?;
    let tokenizer = TextTokenizer::from_json_bytes(tok).map_err(js_err)?;
    let (weight_bytes, weight_bytes_f32) = ck.weight_bytes();
    let parameters = ck.tensors.values().map(|t| t.numel()).sum();
    let session = SESSION.with(|s| s.borrow().clone());
    let (gpu_fits, gpu_note) = match session.as_ref().and_then(|s| s.gpu.clone()) {
        None => (None, None),
        Some(ctx) => {
            let be = GpuBackend::new(ctx);
            match be.check_fits(&ck.tensors) {
                Ok(_) => (Some(true), None),
                Err(e) => (Some(false), Some(format!("runs on the CPU: {e}"))),
            }
        }
    };
    let model = Model::load(&CpuBackend::new(), ck).map_err(|e| JsError::new(&format!("the weights do not match config.json: {e}")))?;
    if tokenizer.vocab_size() > model.common.vocab {
        return Err(JsError::new(&format!("tokenizer.json has {} tokens but config.json's vocab_size is {}", tokenizer.vocab_size(), model.common.vocab)));
    }
    let info = ModelInspection {
        name: name.into(),
        architecture: model.common.arch.display_name().into(),
        layers: model.common.layers,
        hidden: model.common.hidden,
        vocab: model.common.vocab,
        parameters,
        weight_bytes,
        weight_bytes_f32,
        tasks: model.common.default_task.iter().chain(model.heads.keys()).cloned().collect(),
        lm_head: model.lm_head.is_some(),
        files: files.iter().map(|(f, b)| crate::experiment::FileRecord::of(f, b)).collect(),
        gpu_fits,
        gpu_note,
        load_ms: now_ms() - t0,
    };
    to_js(&info)
}

// ---------------------------------------------------------------- share links

/// The fragment (without `#`) of a share link to a finished run: its spec and its numbers ([`crate::experiment::share`]).
#[wasm_bindgen]
pub fn share_link(results_json: &str) -> std::result::Result<String, JsError> {
    use crate::experiment::share;
    let r = parse_results(results_json)?;
    share::encode(&r.spec, Some(&share::fingerprint(&r).map_err(js_err)?)).map_err(js_err)
}

/// A link's fragment read and checked: `{"spec": …, "numbers": …}` as JSON, or why it cannot be opened.
#[wasm_bindgen]
pub fn open_link(fragment: &str) -> std::result::Result<String, JsError> {
    let link = crate::experiment::share::decode(fragment, &page_model).map_err(js_err)?;
    serde_json::to_string(&link).map_err(|e| JsError::new(&e.to_string()))
}

/// A re-run's numbers against those of the link it was opened from ([`crate::experiment::share::Comparison`]).
#[wasm_bindgen]
pub fn compare_link(fragment: &str, results_json: &str) -> std::result::Result<JsValue, JsError> {
    use crate::experiment::share;
    let link = share::decode(fragment, &page_model).map_err(js_err)?;
    let numbers = link.numbers.ok_or_else(|| JsError::new("the link has no numbers to compare with"))?;
    to_js(&share::compare(&numbers, &parse_results(results_json)?).map_err(js_err)?)
}

/// Two results files' headline numbers side by side (`link`: the first's, `now`: the second's).
#[wasm_bindgen]
pub fn compare_results(first_json: &str, second_json: &str) -> std::result::Result<JsValue, JsError> {
    use crate::experiment::share;
    let first = share::fingerprint(&parse_results(first_json)?).map_err(js_err)?;
    to_js(&share::compare(&first, &parse_results(second_json)?).map_err(js_err)?)
}

// ---------------------------------------------------------------- the paper view

#[derive(Serialize)]
struct ClaimInfo {
    id: &'static str,
    paper: &'static str,
    finding: &'static str,
    here: &'static str,
    spec: &'static str,
}

/// The seed papers' claims as ready experiments ([`crate::experiment::claims`]).
#[wasm_bindgen]
pub fn paper_claims() -> std::result::Result<JsValue, JsError> {
    let list: Vec<ClaimInfo> =
        crate::experiment::claims::claims().into_iter().map(|c| ClaimInfo { id: c.id, paper: c.paper, finding: c.finding, here: c.here, spec: c.spec }).collect();
    to_js(&list)
}

/// Claim `id`'s verdict on the results of a run of its spec.
#[wasm_bindgen]
pub fn claim_verdict(id: &str, results_json: &str) -> std::result::Result<JsValue, JsError> {
    to_js(&crate::experiment::claims::verdict(id, &parse_results(results_json)?).map_err(js_err)?)
}

/// Matmul kernel benchmark (a measurement, not a test; separate from the page's exports): the
/// SIMD128 peak of this build, the kernels and candle's stock matmul at the models' shapes,
/// single-threaded, as JSON ([`crate::backend::simd::bench::Report`]). `only` filters shapes by
/// name (empty: all). Run by `scripts/bench-simd.mjs`.
#[wasm_bindgen]
pub fn bench_matmul(sample_ms: f64, samples: usize, only: String) -> std::result::Result<JsValue, JsError> {
    let report = crate::backend::simd::bench::run(&now_ms, sample_ms.max(1.0), samples.max(1), &only).map_err(js_err)?;
    to_js(&report)
}
