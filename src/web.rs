//! The whole JavaScript-facing surface (wasm-bindgen). Nothing else in the crate touches JS.
//!
//! Plain objects in and out (serde-wasm-bindgen, JSON-compatible: `None` becomes `null`);
//! every error becomes a JS `Error` with the crate's readable message. Runs in a Web Worker.

use crate::backend::cpu::CpuBackend;
use crate::backend::gpu::{GpuBackend, GpuContext};
use crate::backend::{tolerance, Backend, BackendInfo};
use crate::demo::{self, DemoOutput, DemoWeights};
use crate::error::{Error, Result};
use crate::text::TextTokenizer;
use serde::Serialize;
use std::cell::RefCell;
use std::sync::Arc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

/// Where the bundled tokenizer is served, relative to the worker script.
const TOKENIZER_URL: &str = "assets/tokenizer/tokenizer.json";

struct Session {
    tokenizer: TextTokenizer,
    weights: DemoWeights,
    gpu: Option<Arc<GpuContext>>,
    gpu_error: Option<String>,
}

thread_local! {
    static SESSION: RefCell<Option<Arc<Session>>> = const { RefCell::new(None) };
}

#[derive(Serialize)]
struct StartReport {
    version: &'static str,
    backend: BackendInfo,
    gpu_error: Option<String>,
}

#[derive(Serialize)]
struct Top {
    class: usize,
    prob: f32,
}

#[derive(Serialize)]
struct RunReport {
    backend: BackendInfo,
    ms: f64,
    probs: Vec<f32>,
    top5: Vec<Top>,
}

#[derive(Serialize)]
struct DemoReport {
    text: String,
    tokens: Vec<String>,
    ids: Vec<u32>,
    classes: usize,
    cpu: RunReport,
    gpu: Option<RunReport>,
    gpu_error: Option<String>,
    max_abs_diff: Option<f32>,
    tolerance: f32,
    within_tolerance: Option<bool>,
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
    console_error_panic_hook::set_once();
    let existing = SESSION.with(|s| s.borrow().clone());
    let session = match existing {
        Some(s) => s,
        None => {
            let tokenizer = TextTokenizer::from_json_bytes(&fetch_bytes(TOKENIZER_URL).await.map_err(js_err)?).map_err(js_err)?;
            let weights = DemoWeights::seeded(tokenizer.vocab_size(), demo::DEMO_SEED).map_err(js_err)?;
            let (gpu, gpu_error) = match GpuContext::acquire().await {
                Ok(ctx) => (Some(ctx), None),
                Err(e) => (None, Some(e.to_string())),
            };
            let s = Arc::new(Session { tokenizer, weights, gpu, gpu_error });
            SESSION.with(|cell| *cell.borrow_mut() = Some(s.clone()));
            s
        }
    };
    let backend = match &session.gpu {
        Some(ctx) => ctx.info(),
        None => CpuBackend::new().info(),
    };
    to_js(&StartReport { version: crate::VERSION, backend, gpu_error: session.gpu_error.clone() })
}

fn run_report(info: BackendInfo, ms: f64, out: &DemoOutput) -> RunReport {
    let top5 = demo::top_k(&out.mean, 5).into_iter().map(|(class, prob)| Top { class, prob }).collect();
    RunReport { backend: info, ms, probs: out.mean.clone(), top5 }
}

/// Tokenize `text` and run the demo network on the CPU and (when there is one) the GPU,
/// reporting progress as `on_progress(stage, fraction)`.
#[wasm_bindgen]
pub async fn demo(text: String, on_progress: js_sys::Function) -> std::result::Result<JsValue, JsError> {
    let session = SESSION
        .with(|s| s.borrow().clone())
        .ok_or_else(|| JsError::new("call start() before demo()"))?;
    let report = |stage: &str, f: f64| {
        // A throwing progress callback must not abort the run.
        let _ = on_progress.call2(&JsValue::NULL, &JsValue::from_str(stage), &JsValue::from_f64(f));
    };
    report("tokenize", 0.0);
    let enc = session.tokenizer.encode(&text).map_err(js_err)?;

    let cpu = CpuBackend::new();
    let t0 = now_ms();
    let cpu_out = demo::run(&cpu, &session.weights, &enc.ids, |s| report(&format!("CPU: {s}"), 0.2)).await.map_err(js_err)?;
    let cpu_report = run_report(cpu.info(), now_ms() - t0, &cpu_out);

    let (mut gpu_report, mut gpu_error, mut diff) = (None, session.gpu_error.clone(), None);
    if let Some(ctx) = &session.gpu {
        let gpu = GpuBackend::new(ctx.clone());
        let t0 = now_ms();
        match demo::run(&gpu, &session.weights, &enc.ids, |s| report(&format!("WebGPU: {s}"), 0.6)).await {
            Ok(out) => {
                diff = Some(demo::max_abs_diff(&cpu_out, &out).map_err(js_err)?);
                gpu_report = Some(run_report(gpu.info(), now_ms() - t0, &out));
            }
            // The CPU result stands; the page says why the GPU one is missing.
            Err(e) => gpu_error = Some(e.to_string()),
        }
    }
    report("done", 1.0);
    to_js(&DemoReport {
        text,
        tokens: enc.tokens,
        ids: enc.ids,
        classes: demo::DEMO_CLASSES,
        cpu: cpu_report,
        gpu: gpu_report,
        gpu_error,
        max_abs_diff: diff,
        tolerance: tolerance::PIPELINE_ABS,
        within_tolerance: diff.map(|d| d <= tolerance::PIPELINE_ABS),
    })
}
