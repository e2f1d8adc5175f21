//! The native command-line interface: `trilemma info`, `trilemma logits`, `trilemma eval`,
//! `trilemma run`, `trilemma report`, `trilemma tokenizer`, `trilemma train`, `trilemma bench`.

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use clap::{Parser, Subcommand};
    use std::path::PathBuf;
    use trilemma::backend::gpu::GpuContext;
    use trilemma::backend::{cpu::CpuBackend, Backend};

    #[derive(Parser)]
    #[command(name = "trilemma", version, about = "Efficiency, accuracy and robustness of small language models")]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(Subcommand)]
    enum Cmd {
        /// Print JSON: the crate version and the backends available on this machine.
        Info,
        /// Classify one text (or a pair) with a model folder; prints JSON logits and the label.
        Logits {
            /// Hugging Face-layout folder: config.json, model.safetensors, tokenizer.json.
            #[arg(long)]
            model: PathBuf,
            #[arg(long)]
            text: String,
            /// Second segment for pair tasks (`<s> A </s> B`).
            #[arg(long)]
            text_pair: Option<String>,
            /// Which task head to use in a multi-task folder (default: the folder's `score.weight`).
            #[arg(long)]
            task: Option<String>,
        },
        /// Score a model folder on a bundled split; prints JSON with accuracy, the task's GLUE
        /// metric and the majority-class baseline.
        Eval {
            #[arg(long)]
            model: PathBuf,
            /// sst2, qnli, rte, mrpc, cola (validation); also qqp, mnli, mnli-mm (advglue).
            #[arg(long)]
            task: String,
            /// validation, advglue or train.
            #[arg(long, default_value = "validation")]
            split: String,
            /// Score only the first N examples.
            #[arg(long)]
            limit: Option<usize>,
            #[arg(long, default_value = "assets")]
            assets: PathBuf,
            /// Also write the per-example predictions as CSV here.
            #[arg(long)]
            predictions: Option<PathBuf>,
            /// auto (a hardware GPU when there is one, else the CPU), webgpu (wgpu on any adapter,
            /// software included; Vulkan natively), cpu (the reference), or both (scores the CPU
            /// and reports how the GPU's logits and labels compare). A GPU that fails mid-run
            /// (lost, out of memory) falls back to the CPU; the JSON says so under "fallback".
            #[arg(long, value_enum, default_value_t = EvalBackend::Auto)]
            backend: EvalBackend,
        },
        /// Run an experiment spec (JSON, see README "Experiment specs"): every model on every task
        /// and split, with bootstrap intervals, efficiency numbers and provenance. Progress goes to
        /// stderr; Ctrl-C stops after the current batch and keeps the finished evaluations.
        Run {
            spec: PathBuf,
            /// Write the results JSON here (default: standard output).
            #[arg(long)]
            out: Option<PathBuf>,
            #[arg(long, default_value = "assets")]
            assets: PathBuf,
            /// Also write the HTML report here.
            #[arg(long)]
            report: Option<PathBuf>,
            /// Also write per-example predictions as CSV here.
            #[arg(long)]
            csv: Option<PathBuf>,
        },
        /// The paper view: run each seed paper's claim as its ready experiment (on the CPU) and print the number
        /// we get, its 95% interval and whether the claim holds here (README "Paper view").
        Paper {
            /// Only this claim (epr-gla, epr-mmf, epr-glue, lp, sfsd, idp, mh-quant, mh-prune); all when absent.
            #[arg(long)]
            id: Option<String>,
            /// At most this many examples per (task, split): a quick look, not the claim's full experiment.
            #[arg(long)]
            limit: Option<usize>,
            /// Write every verdict (JSON) here.
            #[arg(long)]
            out: Option<PathBuf>,
            #[arg(long, default_value = "assets")]
            assets: PathBuf,
        },
        /// Attack a model on a bundled split with one recipe (TextBugger, TextFooler, StressTest, CheckList,
        /// combined, or their random baselines): prints TextAttack's summary and a few attacked examples; the
        /// whole record goes to --out. The same as a spec with one `attacks` entry.
        Attack {
            /// A bundled model name (transformer, gla, hgrn_bit) or a Hugging Face-layout folder.
            #[arg(long)]
            model: String,
            #[arg(long)]
            task: String,
            /// textbugger, textfooler, stress_test, checklist, combined, random_textbugger, random_textfooler,
            /// random_stress_test, random_checklist, random_combined.
            #[arg(long)]
            recipe: String,
            #[arg(long, default_value_t = 42)]
            seed: u64,
            /// Largest share of the words that may change, in [0, 1].
            #[arg(long, default_value_t = trilemma::attacks::search::DEFAULT_BUDGET)]
            budget: f64,
            /// Most model queries per example.
            #[arg(long, default_value_t = trilemma::attacks::search::DEFAULT_MAX_QUERIES)]
            max_queries: usize,
            /// Attack only the first N examples.
            #[arg(long)]
            limit: Option<usize>,
            /// advglue-original (default where bundled: the clean originals of AdvGLUE's examples), validation or train.
            #[arg(long)]
            split: Option<String>,
            /// cpu (the reference; default), webgpu or auto.
            #[arg(long, default_value = "cpu")]
            backend: String,
            #[arg(long, default_value = "assets")]
            assets: PathBuf,
            /// Write the results JSON (every attacked example) here.
            #[arg(long)]
            out: Option<PathBuf>,
            /// Also write the HTML report here.
            #[arg(long)]
            report: Option<PathBuf>,
        },
        /// Compress a model folder's linear weights and write a folder that loads like any other (packed form: int8 /
        /// int4 codes and scales, packed ternary, low-rank factors, which models run on as they are; the record in
        /// config.json under trilemma.compressions).
        /// Prints the record as JSON.
        Compress {
            /// A bundled model name (transformer, gla, hgrn_bit) or a Hugging Face-layout folder.
            #[arg(long)]
            model: String,
            /// JSON, e.g. '{"method": "int4", "group": 64}'; methods: magnitude {sparsity}, n_m {n, m}, structured_rows
            /// {sparsity}, int8, int4 {group}, ternary, svd {rank_fraction}, drop_layers {layers}, layer_parallel {start,
            /// end, mlp_norm: own | mean, fused}, surgical {delta, start_block, space: feature | weight,
            /// mean_correction} (needs --task), and on calibration data
            /// wanda {sparsity | pattern: n_m}, gradient_aware {sparsity, alpha, pattern: unstructured | n_m |
            /// structured}, sfsd {rank_fraction, mean_correction}; also structured_heads {sparsity}.
            #[arg(long)]
            recipe: String,
            /// packed (what models run on) or reference (the compressed weights written back as f32: the slow twin).
            #[arg(long, default_value = "packed")]
            form: String,
            /// The calibration task of wanda, gradient_aware and sfsd (default: the mixed set over the seven tasks); the
            /// task whose validation split the surgical scan evaluates on (required there).
            #[arg(long)]
            task: Option<String>,
            /// The seed of the calibration subset.
            #[arg(long, default_value_t = 42)]
            seed: u64,
            /// Calibration examples.
            #[arg(long, default_value_t = trilemma::data::calibration::DEFAULT_SIZE)]
            calibration_size: usize,
            #[arg(long)]
            out: PathBuf,
            #[arg(long, default_value = "assets")]
            assets: PathBuf,
        },
        /// Write a standalone HTML report (tables and SVG charts) of a results file.
        Report {
            results: PathBuf,
            #[arg(long)]
            out: PathBuf,
            /// Also write per-example predictions as CSV here.
            #[arg(long)]
            csv: Option<PathBuf>,
        },
        /// Train the default models from scratch (see README "Training"): writes one Hugging Face
        /// folder per architecture with scores.json and a model card.
        Train {
            /// Architectures, comma-separated: transformer, gla, hgrn_bit.
            #[arg(long, value_delimiter = ',', default_value = "transformer,gla,hgrn_bit")]
            arch: Vec<String>,
            #[arg(long, default_value = "assets")]
            assets: PathBuf,
            #[arg(long, default_value = "assets/models")]
            out: PathBuf,
            /// A JSON recipe (fields of `train::Recipe`; missing fields take the defaults).
            #[arg(long)]
            recipe: Option<PathBuf>,
            /// Override the recipe's seed.
            #[arg(long)]
            seed: Option<u64>,
            /// Stop each phase after N optimiser steps (smoke runs).
            #[arg(long)]
            max_steps: Option<usize>,
        },
        /// Train the bundled BPE tokenizer on the GLUE training text under `--data`.
        Tokenizer {
            /// Folder holding `<task>/train.jsonl` files.
            #[arg(long, default_value = "assets/train/glue")]
            data: PathBuf,
            #[arg(long, default_value_t = 8192)]
            vocab_size: usize,
            #[arg(long, default_value = "assets/tokenizer/tokenizer.json")]
            out: PathBuf,
        },
        /// Write the bundled calibration set (a seeded draw of GLUE train rows per task, compiled into the binary for
        /// Wanda, gradient-aware pruning and SFSD) from the train files under `--data`.
        CalibrationSet {
            /// Folder holding `<task>/train.jsonl` files.
            #[arg(long, default_value = "assets/train/glue")]
            data: PathBuf,
            #[arg(long, default_value_t = trilemma::data::calibration::BUNDLE_PER_TASK)]
            per_task: usize,
            #[arg(long, default_value_t = trilemma::data::calibration::BUNDLE_SEED)]
            seed: u64,
            #[arg(long, default_value = "assets/calibration/glue.jsonl")]
            out: PathBuf,
        },
        /// Benchmark the three architectures at the bundled default size with random weights:
        /// classification throughput, per-token cost of a forward pass by sequence length, and
        /// weight bytes. A measurement, not a test: prints a table (and JSON with --json).
        Bench {
            /// Sequence lengths for the per-token cost of `Model::hidden`.
            #[arg(long, value_delimiter = ',', default_value = "128,256,512,1024,2048,4096")]
            seq_lens: Vec<usize>,
            /// Sequences classified, one at a time, for the throughput figure.
            #[arg(long, default_value_t = 32)]
            batch: usize,
            /// Tokens per classified sequence.
            #[arg(long, default_value_t = 64)]
            tokens: usize,
            /// Seed of the random weights and token ids.
            #[arg(long, default_value_t = 1)]
            seed: u64,
            #[arg(long, value_enum, default_value_t = BenchBackend::Cpu)]
            backend: BenchBackend,
            /// Also write the results as JSON here.
            #[arg(long)]
            json: Option<PathBuf>,
            /// Instead: GFLOP/s of candle's matmul (and the SIMD kernels' scalar twin) at the
            /// models' shapes; JSON on stdout (one thread with RAYON_NUM_THREADS=1; the wasm side:
            /// scripts/bench-simd.mjs).
            #[arg(long)]
            kernels: bool,
        },
    }

    #[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
    enum EvalBackend {
        Auto,
        Webgpu,
        Cpu,
        Both,
    }

    #[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
    enum BenchBackend {
        Cpu,
        Gpu,
        Both,
    }

    pub fn main() -> Result<(), String> {
        match Cli::parse().cmd {
            Cmd::Info => info(),
            Cmd::Logits { model, text, text_pair, task } => logits(&model, &text, text_pair.as_deref(), task.as_deref()),
            Cmd::Tokenizer { data, vocab_size, out } => tokenizer(&data, vocab_size, &out),
            Cmd::CalibrationSet { data, per_task, seed, out } => {
                let body = trilemma::data::calibration::build_bundle(&data, per_task, seed).map_err(|e| e.to_string())?;
                if let Some(dir) = out.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                }
                std::fs::write(&out, &body).map_err(|e| format!("{}: {e}", out.display()))?;
                eprintln!("wrote {} ({} rows, sha256 {})", out.display(), body.lines().count(), trilemma::experiment::sha256_hex(body.as_bytes()));
                Ok(())
            }
            Cmd::Eval { model, task, split, limit, assets, predictions, backend } => {
                eval(&model, &task, &split, limit, &assets, predictions.as_deref(), backend)
            }
            Cmd::Run { spec, out, assets, report, csv } => run(&spec, out.as_deref(), &assets, report.as_deref(), csv.as_deref()),
            Cmd::Report { results, out, csv } => report(&results, &out, csv.as_deref()),
            Cmd::Compress { model, recipe, out, form, assets, task, seed, calibration_size } => {
                let task = task.as_deref().map(trilemma::data::Task::parse).transpose().map_err(|e| format!("--task: {e}"))?;
                let cal = trilemma::compress::apply::Calibration { task, seed, size: calibration_size };
                compress(&model, &recipe, &form, &out, &assets, &cal)
            }
            Cmd::Paper { id, limit, out, assets } => paper(id.as_deref(), limit, out.as_deref(), &assets),
            Cmd::Attack { model, task, recipe, seed, budget, max_queries, limit, split, backend, assets, out, report } => {
                attack(&model, &task, &recipe, seed, budget, max_queries, limit, split.as_deref(), backend, &assets, out.as_deref(), report.as_deref())
            }
            Cmd::Train { arch, assets, out, recipe, seed, max_steps } => train(&arch, &assets, &out, recipe.as_deref(), seed, max_steps),
            Cmd::Bench { kernels: true, .. } => {
                let t0 = std::time::Instant::now();
                let clock = move || t0.elapsed().as_secs_f64() * 1e3;
                let report = trilemma::backend::simd::bench::run(&clock, 50.0, 5, "").map_err(|e| e.to_string())?;
                println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
                Ok(())
            }
            Cmd::Bench { seq_lens, batch, tokens, seed, backend, json, kernels: false } => {
                bench::run(&bench::Params { seq_lens, batch, tokens, seed }, backend != BenchBackend::Gpu, backend != BenchBackend::Cpu, json.as_deref())
            }
        }
    }

    fn info() -> Result<(), String> {
        quiet_vulkan_loader();
        let cpu = CpuBackend::new().info();
        let gpu = match pollster::block_on(GpuContext::acquire()) {
            Ok(ctx) => serde_json::json!({ "available": true, "backend": ctx.info() }),
            Err(e) => serde_json::json!({ "available": false, "reason": e.to_string() }),
        };
        let out = serde_json::json!({
            "name": "trilemma",
            "version": trilemma::VERSION,
            "backends": { "cpu": { "available": true, "backend": cpu }, "webgpu": gpu },
        });
        println!("{}", serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?);
        Ok(())
    }

    fn logits(dir: &std::path::Path, text: &str, pair: Option<&str>, task: Option<&str>) -> Result<(), String> {
        use trilemma::io::Checkpoint;
        use trilemma::models::Model;
        use trilemma::text::TextTokenizer;
        let ck = Checkpoint::load_dir(dir).map_err(|e| e.to_string())?;
        let tok_json = ck.tokenizer_json.clone().ok_or_else(|| format!("{} has no tokenizer.json", dir.display()))?;
        let tk = TextTokenizer::from_json_bytes(&tok_json).map_err(|e| e.to_string())?;
        let task = task.map(trilemma::data::Task::parse).transpose().map_err(|e| e.to_string())?;
        let labels = match task {
            Some(t) => t.label_names().iter().map(|s| s.to_string()).collect(),
            None => label_names(&ck.config),
        };
        let be = CpuBackend::new();
        let model = Model::load(&be, ck).map_err(|e| e.to_string())?;
        if tk.vocab_size() > model.common.vocab {
            return Err(format!(
                "tokenizer.json has {} tokens but config.json's vocab_size is {}: tokenizer and model do not belong together",
                tk.vocab_size(),
                model.common.vocab
            ));
        }
        let enc = match pair {
            Some(b) => tk.encode_pair(text, b),
            None => tk.encode(text),
        }
        .map_err(|e| e.to_string())?;
        let head = task.map(|t| t.model_task().name());
        let out = be.read_sync(&model.classify_task(&be, &enc.ids, head).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        let logits = out.as_f32("logits").map_err(|e| e.to_string())?.to_vec();
        let pred = trilemma::demo::top_k(&logits, 1)[0].0;
        let json = serde_json::json!({
            "model": dir.display().to_string(),
            "architecture": model.common.arch.display_name(),
            "tokens": enc.tokens,
            "logits": logits,
            "label": pred,
            "label_name": labels.get(pred).cloned(),
        });
        println!("{}", serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?);
        Ok(())
    }

    fn eval(
        dir: &std::path::Path,
        task: &str,
        split: &str,
        limit: Option<usize>,
        assets: &std::path::Path,
        predictions: Option<&std::path::Path>,
        backend: EvalBackend,
    ) -> Result<(), String> {
        use trilemma::backend::gpu::GpuBackend;
        use trilemma::data::{load_split, Split, Task};
        use trilemma::io::Checkpoint;
        use trilemma::models::Model;
        use trilemma::text::TextTokenizer;
        let e = |err: trilemma::Error| err.to_string();
        let task = Task::parse(task).map_err(e)?;
        let split = Split::parse(split).map_err(e)?;
        let mut examples = load_split(assets, task, split).map_err(e)?;
        if let Some(n) = limit {
            if n == 0 {
                return Err("--limit must be positive".into());
            }
            examples.truncate(n);
        }
        let train_labels = trilemma::data::labels(&load_split(assets, task.model_task(), Split::Train).map_err(e)?);
        let ck = Checkpoint::load_dir(dir).map_err(e)?;
        let tok_json = ck.tokenizer_json.clone().ok_or_else(|| format!("{} has no tokenizer.json", dir.display()))?;
        let tk = TextTokenizer::from_json_bytes(&tok_json).map_err(e)?;
        let be = CpuBackend::new();
        let choice = match backend {
            EvalBackend::Auto => trilemma::backend::BackendChoice::Auto,
            EvalBackend::Cpu => trilemma::backend::BackendChoice::Cpu,
            EvalBackend::Webgpu | EvalBackend::Both => trilemma::backend::BackendChoice::Webgpu,
        };
        let ctx = if choice == trilemma::backend::BackendChoice::Cpu {
            Err("not asked for".to_string())
        } else {
            quiet_vulkan_loader();
            pollster::block_on(trilemma::backend::gpu::GpuContext::acquire()).map_err(|err| err.to_string())
        };
        // Why the CPU path runs instead of the GPU, when it does (recorded in the results).
        let mut fallback: Option<String> = None;
        let gpu = match choice.use_gpu(ctx.as_ref().map(|c| c.is_software()).map_err(Clone::clone)) {
            Ok(()) => {
                let g = GpuBackend::new(ctx.as_ref().expect("checked above").clone());
                match g.check_fits(&ck.tensors).and_then(|_| Model::load(&g, ck.clone())) {
                    Ok(m) => Some((g, m)),
                    Err(err) => {
                        fallback = Some(err.to_string());
                        None
                    }
                }
            }
            Err(why) => {
                fallback = Some(why);
                None
            }
        };
        if backend == EvalBackend::Both && gpu.is_none() {
            return Err(format!("--backend both needs the GPU: {}", fallback.unwrap_or_default()));
        }
        let model = Model::load(&be, ck).map_err(e)?;
        if tk.vocab_size() > model.common.vocab {
            return Err(format!("tokenizer.json has {} tokens but config.json's vocab_size is {}", tk.vocab_size(), model.common.vocab));
        }
        let labels = trilemma::data::labels(&examples);
        let t0 = std::time::Instant::now();
        let mut ran_on_gpu = false;
        let mut gpu_run = None;
        if let (Some((g, gm)), false) = (&gpu, backend == EvalBackend::Both) {
            match pollster::block_on(trilemma::eval::logits(g, gm, &tk, task, &examples)) {
                Ok(rows) => {
                    ran_on_gpu = true;
                    gpu_run = Some(rows);
                }
                // Lost device, out of memory...: the run continues on the CPU and says why.
                Err(err) => fallback = Some(format!("WebGPU failed ({err}); ran on the CPU")),
            }
        }
        let (ev, preds, compared) = match gpu_run {
            Some(rows) => {
                let seconds = t0.elapsed().as_secs_f64();
                let preds = trilemma::eval::argmax_rows(&rows);
                let ev = trilemma::eval::TaskEval {
                    task,
                    split,
                    score: trilemma::eval::glue_score(task, &preds, &labels).map_err(e)?,
                    majority: trilemma::eval::majority_baseline(task, &train_labels, &labels).map_err(e)?,
                    seconds,
                    examples_per_second: examples.len() as f64 / seconds.max(1e-9),
                };
                (ev, preds, None)
            }
            None => {
                let (ev, preds) = trilemma::eval::evaluate_cpu(&be, &model, &tk, task, split, &examples, &train_labels).map_err(e)?;
                let compared = match (&gpu, backend) {
                    (Some((g, gm)), EvalBackend::Both) => {
                        let t1 = std::time::Instant::now();
                        let cpu_rows = pollster::block_on(trilemma::eval::logits(&be, &model, &tk, task, &examples)).map_err(e)?;
                        let gpu_rows = pollster::block_on(trilemma::eval::logits(g, gm, &tk, task, &examples)).map_err(e)?;
                        let a = trilemma::eval::agreement(&cpu_rows, &gpu_rows).map_err(e)?;
                        Some((a, t1.elapsed().as_secs_f64()))
                    }
                    _ => None,
                };
                (ev, preds, compared)
            }
        };
        if let Some(path) = predictions {
            let mut csv = String::from("idx,label,prediction\n");
            for (x, p) in examples.iter().zip(&preds) {
                csv += &format!("{},{},{}\n", x.idx, x.label, p);
            }
            std::fs::write(path, csv).map_err(|err| format!("{}: {err}", path.display()))?;
        }
        let json = serde_json::json!({
            "model": dir.display().to_string(),
            "architecture": model.common.arch.display_name(),
            "task": task,
            "split": split,
            "n": ev.score.n,
            "accuracy": ev.score.accuracy,
            "metric": ev.score.metric,
            "f1": ev.score.f1,
            "matthews": ev.score.matthews,
            "score": ev.score.score,
            "majority_baseline": ev.majority,
            "seconds": ev.seconds,
            "examples_per_second": ev.examples_per_second,
            "backend_choice": choice,
            "backend": match (&gpu, ran_on_gpu) {
                (Some((g, _)), true) => serde_json::to_value(g.info()).unwrap_or_default(),
                _ => serde_json::to_value(be.info()).unwrap_or_default(),
            },
            "fallback": if backend == EvalBackend::Both { None } else { fallback },
            "gpu_vs_cpu": compared.map(|(a, secs)| serde_json::json!({
                "gpu": gpu.as_ref().map(|(g, _)| g.info()),
                "n": a.n,
                "same_labels": a.same_labels,
                "differing": a.differing,
                "max_abs_logit_diff": a.max_abs_diff,
                "tolerance": trilemma::backend::tolerance::MODEL_LOGITS_ABS,
                "seconds_both": secs,
            })),
        });
        println!("{}", serde_json::to_string_pretty(&json).map_err(|err| err.to_string())?);
        Ok(())
    }

    fn write(path: &std::path::Path, text: &str) -> Result<(), String> {
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn run(
        spec: &std::path::Path,
        out: Option<&std::path::Path>,
        assets: &std::path::Path,
        report: Option<&std::path::Path>,
        csv: Option<&std::path::Path>,
    ) -> Result<(), String> {
        let e = |err: trilemma::Error| err.to_string();
        let spec = trilemma::experiment::native::read_spec(spec, assets).map_err(e)?;
        let results = execute(&spec, assets)?;
        let json = results.to_json();
        match out {
            Some(path) => write(path, &json)?,
            None => println!("{json}"),
        }
        if let Some(path) = report {
            write(path, &trilemma::report::html(&results).map_err(e)?)?;
        }
        if let Some(path) = csv {
            write(path, &trilemma::report::csv(&results))?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn attack(
        model: &str,
        task: &str,
        recipe: &str,
        seed: u64,
        budget: f64,
        max_queries: usize,
        limit: Option<usize>,
        split: Option<&str>,
        backend: String,
        assets: &std::path::Path,
        out: Option<&std::path::Path>,
        report: Option<&std::path::Path>,
    ) -> Result<(), String> {
        let backend: trilemma::backend::BackendChoice =
            serde_json::from_value(serde_json::Value::String(backend.clone())).map_err(|_| format!("unknown backend {backend:?}; use cpu, webgpu or auto"))?;
        use trilemma::attacks::search::{AttackConfig, Outcome, Recipe};
        use trilemma::data::{Split, Task};
        let e = |err: trilemma::Error| err.to_string();
        let task: Task = task.parse().map_err(e)?;
        let split = match split {
            Some(s) => s.parse::<Split>().map_err(e)?,
            None if trilemma::data::bundled(task, Split::AdvGlueOriginal).is_ok() => Split::AdvGlueOriginal,
            None => Split::Validation,
        };
        let config = AttackConfig { recipe: Recipe::parse(recipe).map_err(e)?, budget, max_queries };
        let spec = trilemma::experiment::Spec {
            name: format!("{recipe} on {model}, {task}/{split}"),
            models: vec![model.to_string()],
            tasks: vec![task],
            splits: vec![split],
            attacks: vec![config],
            compressions: Vec::new(),
            repair: None,
            backend,
            seed,
            limit,
            bootstrap: 1000,
            batch: trilemma::eval::MAX_BATCH,
            readout: Default::default(),
            template: 0,
        };
        spec.validate(&|m| trilemma::experiment::native::model_exists(assets, m)).map_err(e)?;
        let results = execute(&spec, assets)?;
        let Some(a) = results.attacks.first() else {
            return Err("the attack was cancelled before it finished".into());
        };
        let s = &a.summary;
        let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0));
        println!("{} against {} ({}), {}/{}: {} examples, seed {seed}, budget {budget}, max {max_queries} queries", recipe, model, a.architecture, task, split, s.n);
        println!("  original accuracy       {:>7}", pct(Some(s.original_accuracy)));
        println!("  accuracy under attack   {:>7}", pct(Some(s.accuracy_under_attack)));
        println!("  attack success rate     {:>7}   ({} succeeded, {} failed, {} skipped)", pct(s.success_rate), s.succeeded, s.failed, s.skipped);
        println!("  perturbed words         {:>7}   (mean over successful attacks; {:.1} words per input)", pct(s.perturbed_word_share), s.mean_words);
        println!("  queries per attack      {:>7}", s.mean_queries.map_or("-".to_string(), |q| format!("{q:.1}")));
        println!("  time                    {:>6.1}s   ({:.0} queries/s)", a.timing.seconds, a.timing.queries_per_second);
        for r in a.records.iter().filter(|r| r.outcome == Outcome::Succeeded).take(3) {
            let seg = |i: &trilemma::attacks::search::Input| i.b.clone().unwrap_or_else(|| i.a.clone());
            println!("  #{}: {:?} ({:.2})\n      -> {:?} ({} {:.2})", r.idx, seg(&r.original), r.before.confidence(), seg(&r.perturbed), r.after.prediction, r.after.confidence());
        }
        if let Some(path) = out {
            write(path, &results.to_json())?;
        }
        if let Some(path) = report {
            write(path, &trilemma::report::html(&results).map_err(e)?)?;
        }
        Ok(())
    }

    fn compress(model: &str, recipe: &str, form: &str, out: &std::path::Path, assets: &std::path::Path, cal: &trilemma::compress::apply::Calibration) -> Result<(), String> {
        use trilemma::compress::apply::{self, Form, Recipe};
        use trilemma::experiment::native;
        let recipe: Recipe = serde_json::from_str(recipe).map_err(|e| format!("--recipe: {e}"))?;
        native::model_exists(assets, model)?;
        let dir = native::model_dir(assets, model);
        let files = native::read_folder(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let ck = trilemma::io::Checkpoint::from_files(&files).map_err(|e| format!("{}: {e}", dir.display()))?;
        let form = match form {
            "packed" => Form::Packed,
            "reference" => Form::Reference,
            other => return Err(format!("--form: \"{other}\" is not one of packed, reference")),
        };
        let t0 = std::time::Instant::now();
        let (compressed, record) = match (&recipe, cal.task) {
            (Recipe::Surgical { .. }, None) => return Err("the surgical scan needs --task (it evaluates on that task's validation split)".into()),
            (Recipe::Surgical { .. }, Some(task)) => {
                let ex = trilemma::data::load_split(assets, task, trilemma::data::Split::Validation).map_err(|e| e.to_string())?;
                pollster::block_on(trilemma::experiment::surgical::compress_form(&ck, &recipe, task, &ex, cal, form)).map_err(|e| e.to_string())?
            }
            _ => apply::apply_with_form(&ck, &recipe, cal, form).map_err(|e| e.to_string())?,
        };
        eprintln!("compressed in {:.2} s", t0.elapsed().as_secs_f64());
        if out.exists() && std::fs::read_dir(out).map(|mut d| d.next().is_some()).unwrap_or(true) {
            return Err(format!("{}: exists and is not empty; choose a new folder", out.display()));
        }
        std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
        for (name, bytes) in apply::folder_files(&compressed).map_err(|e| e.to_string())? {
            std::fs::write(out.join(&name), bytes).map_err(|e| format!("{}: {e}", out.join(&name).display()))?;
        }
        println!("{}", serde_json::to_string_pretty(&record).map_err(|e| e.to_string())?);
        Ok(())
    }

    fn paper(id: Option<&str>, limit: Option<usize>, out: Option<&std::path::Path>, assets: &std::path::Path) -> Result<(), String> {
        use trilemma::experiment::{claims, native, Spec};
        let all = claims::claims();
        if let Some(id) = id {
            if !all.iter().any(|c| c.id == id) {
                return Err(format!("no claim {id:?}; the claims: {}", all.iter().map(|c| c.id).collect::<Vec<_>>().join(", ")));
            }
        }
        let mut verdicts = Vec::new();
        for c in all.iter().filter(|c| id.is_none_or(|i| i == c.id)) {
            let mut spec = Spec::from_json(c.spec.as_bytes(), &|m| native::model_exists(assets, m)).map_err(|e| format!("{}: {e}", c.id))?;
            spec.backend = trilemma::backend::BackendChoice::Cpu;
            if limit.is_some() {
                spec.limit = limit;
            }
            eprintln!("{}: {}", c.id, c.paper);
            let t0 = std::time::Instant::now();
            let results = execute(&spec, assets)?;
            let v = claims::verdict(c.id, &results).map_err(|e| format!("{}: {e}", c.id))?;
            println!("\n{} — {:?} ({:.0} s)\n  paper: {}\n  here:  {}", c.id, v.holds, t0.elapsed().as_secs_f64(), v.finding, v.here);
            for r in &v.rows {
                println!("  {:<72} {:>8.4}  [{:.4}, {:.4}]  n={:<5} expect {:<12} {:?}", r.label, r.value, r.ci95[0], r.ci95[1], r.n, r.expect, r.holds);
            }
            verdicts.push(v);
        }
        if let Some(out) = out {
            std::fs::write(out, serde_json::to_string_pretty(&verdicts).map_err(|e| e.to_string())?).map_err(|e| format!("{}: {e}", out.display()))?;
        }
        Ok(())
    }

    /// Runs a spec with progress on stderr; Ctrl-C stops after the current batch or example.
    fn execute(spec: &trilemma::experiment::Spec, assets: &std::path::Path) -> Result<trilemma::experiment::Results, String> {
        use std::sync::atomic::{AtomicBool, Ordering};
        use trilemma::experiment::native;
        let e = |err: trilemma::Error| err.to_string();
        let cancel = std::sync::Arc::new(AtomicBool::new(false));
        {
            let cancel = cancel.clone();
            // A second Ctrl-C while the first is being honoured ends the process as usual.
            let _ = ctrlc::set_handler(move || {
                if cancel.swap(true, Ordering::Relaxed) {
                    std::process::exit(130);
                }
                eprintln!("\ncancelling after the current batch (Ctrl-C again to quit now)");
            });
        }
        if spec.backend != trilemma::backend::BackendChoice::Cpu {
            quiet_vulkan_loader();
        }
        let mut last = String::new();
        let mut on_progress = |p: &trilemma::experiment::Progress| {
            let what = p.attack.as_deref().map(|a| format!(" attack {a}")).unwrap_or_default();
            let line = format!("[{}/{}] {} {} {}{what}: {}/{} ({:.0}%)", p.unit + 1, p.units, p.model, p.task, p.split, p.done, p.total, p.fraction * 100.0);
            if line != last {
                eprint!("\r{line}   ");
                last = line;
            }
        };
        let mut hooks = native::NativeHooks::new(&mut on_progress, cancel);
        let results = native::run(spec, assets, None, &mut hooks).map_err(e)?;
        eprintln!();
        if results.status.cancelled {
            eprintln!(
                "cancelled: {} of {} evaluations and {} of {} attacks finished and are kept",
                results.status.units_done, results.status.units_total, results.status.attacks_done, results.status.attacks_total
            );
        }
        if let Some(f) = &results.provenance.fallback {
            eprintln!("note: {f}");
        }
        Ok(results)
    }

    fn report(results: &std::path::Path, out: &std::path::Path, csv: Option<&std::path::Path>) -> Result<(), String> {
        let bytes = std::fs::read(results).map_err(|err| format!("{}: {err}", results.display()))?;
        let r = trilemma::experiment::Results::from_json(&bytes).map_err(|err| format!("{}: {err}", results.display()))?;
        write(out, &trilemma::report::html(&r).map_err(|err| err.to_string())?)?;
        if let Some(path) = csv {
            write(path, &trilemma::report::csv(&r))?;
        }
        Ok(())
    }

    fn train(
        archs: &[String],
        assets: &std::path::Path,
        out: &std::path::Path,
        recipe: Option<&std::path::Path>,
        seed: Option<u64>,
        max_steps: Option<usize>,
    ) -> Result<(), String> {
        use trilemma::models::config::Arch;
        use trilemma::text::TextTokenizer;
        use trilemma::train::{card, load_corpus, Recipe};
        let e = |err: trilemma::Error| err.to_string();
        let mut r = match recipe {
            Some(p) => {
                let bytes = std::fs::read(p).map_err(|err| format!("{}: {err}", p.display()))?;
                // Missing fields take the defaults: merge onto the default recipe.
                let mut base = serde_json::to_value(Recipe::default()).map_err(|err| err.to_string())?;
                let over: serde_json::Value = serde_json::from_slice(&bytes).map_err(|err| format!("{}: {err}", p.display()))?;
                let obj = over.as_object().ok_or_else(|| format!("{}: a recipe is a JSON object", p.display()))?;
                for (k, v) in obj {
                    if base.get(k).is_none() {
                        return Err(format!("{}: unknown recipe field {k:?}", p.display()));
                    }
                    base[k] = v.clone();
                }
                serde_json::from_value::<Recipe>(base).map_err(|err| format!("{}: {err}", p.display()))?
            }
            None => Recipe::default(),
        };
        if let Some(s) = seed {
            r.seed = s;
        }
        if let Some(m) = max_steps {
            r.max_steps = m;
        }
        if r.batch == 0 {
            return Err("recipe: batch must be positive".into());
        }
        let archs: Vec<Arch> = archs.iter().map(|a| Arch::from_model_type(a).map_err(e)).collect::<Result<_, _>>()?;
        let tok_path = assets.join("tokenizer/tokenizer.json");
        let tok_json = std::fs::read(&tok_path).map_err(|err| format!("{}: {err}", tok_path.display()))?;
        let tk = TextTokenizer::from_json_bytes(&tok_json).map_err(e)?;
        let corpus = load_corpus(assets, &tk, &r.tasks).map_err(e)?;
        eprintln!("corpus: {} texts for the LM, tasks {:?}", corpus.lm.len(), corpus.tasks.iter().map(|(t, s)| (t.name(), s.len())).collect::<Vec<_>>());
        for arch in archs {
            let dir = out.join(card::folder_name(arch));
            let report = card::build(arch, assets, &tok_json, &corpus, &r, &dir, &mut |line| eprintln!("{line}")).map_err(e)?;
            eprintln!("wrote {} ({} bytes of weights, {:.0} s)", dir.display(), report.safetensors_bytes, report.train_seconds);
        }
        Ok(())
    }

    /// `id2label` of an HF config, in id order (empty when absent).
    fn label_names(config: &serde_json::Value) -> Vec<String> {
        let Some(m) = config.get("id2label").and_then(|m| m.as_object()) else { return Vec::new() };
        let mut v: Vec<(usize, String)> =
            m.iter().filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_string()))).collect();
        v.sort();
        v.into_iter().map(|(_, s)| s).collect()
    }

    /// The Vulkan loader complains on stderr when XDG_RUNTIME_DIR is unset (common in containers
    /// and CI); point it at a private temporary folder so `info`'s output stays clean.
    fn quiet_vulkan_loader() {
        if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
            let dir = std::env::temp_dir().join(format!("trilemma-xdg-{}", std::process::id()));
            if std::fs::create_dir_all(&dir).is_ok() {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
                }
                // Single-threaded at this point: no other thread reads the environment.
                std::env::set_var("XDG_RUNTIME_DIR", &dir);
            }
        }
    }

    /// The text fields of every GLUE task (data/README.md of the shared data).
    const TEXT_FIELDS: [&str; 8] = ["sentence", "sentence1", "sentence2", "question", "question1", "question2", "premise", "hypothesis"];

    fn tokenizer(data: &PathBuf, vocab_size: usize, out: &PathBuf) -> Result<(), String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(data)
            .map_err(|e| format!("cannot read {}: {e}", data.display()))?
            .filter_map(|d| d.ok().map(|d| d.path().join("train.jsonl")))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(format!("no <task>/train.jsonl under {}", data.display()));
        }
        let mut texts = Vec::new();
        for f in &files {
            let body = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
            for (n, line) in body.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", f.display(), n + 1))?;
                texts.extend(TEXT_FIELDS.iter().filter_map(|k| v.get(k).and_then(|s| s.as_str()).map(str::to_owned)));
            }
        }
        let tk = trilemma::text::train_bpe(texts.iter(), vocab_size).map_err(|e| e.to_string())?;
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(out, tk.to_json().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        eprintln!("trained on {} texts from {} files; vocab {}; wrote {}", texts.len(), files.len(), tk.vocab_size(), out.display());
        Ok(())
    }

    /// `trilemma bench`: timings of the three architectures at the bundled default size.
    mod bench {
        use serde_json::{json, Value};
        use std::time::{Duration, Instant};
        use trilemma::backend::gpu::GpuBackend;
        use trilemma::backend::{cpu::CpuBackend, Backend, HostTensor, TensorMeta};
        use trilemma::io::Checkpoint;
        use trilemma::models::init::{random_checkpoint, Dims};
        use trilemma::models::{Arch, Model};
        use trilemma::nn::linear::TernaryWeights;
        use trilemma::rng::SplitMix64;

        pub struct Params {
            pub seq_lens: Vec<usize>,
            pub batch: usize,
            pub tokens: usize,
            pub seed: u64,
        }

        const ARCHS: [Arch; 3] = [Arch::Transformer, Arch::Gla, Arch::HgrnBit];
        /// Per sequence length: repeat a forward pass until this much time is spent (at most
        /// `MAX_REPS` times); a pass slower than this is measured once, without warm-up.
        const MIN_TIME: Duration = Duration::from_millis(500);
        const MAX_REPS: usize = 10;

        fn e(x: impl std::fmt::Display) -> String {
            x.to_string()
        }

        fn random_ids(rng: &mut SplitMix64, n: usize, vocab: usize) -> Vec<u32> {
            (0..n).map(|_| rng.below(vocab as u64) as u32).collect()
        }

        /// Host bytes of the weights: all at f32, and as the model holds them (HGRN-bit's
        /// BitLinear weights packed 2-bit + one f32 scale, via `TernaryWeights::bytes`).
        fn weight_bytes(ck: &Checkpoint, arch: Arch) -> Result<Value, String> {
            let (mut params, mut f32_all, mut stored, mut bit_f32, mut bit_packed) = (0usize, 0usize, 0usize, 0usize, 0usize);
            for (name, t) in &ck.tensors {
                let n = t.numel();
                params += n;
                f32_all += 4 * n;
                let bit = arch == Arch::HgrnBit && (name.ends_with("_proj.weight") || name == "lm_head.weight");
                if bit {
                    let packed = TernaryWeights::from_latent(t).map_err(e)?.bytes();
                    bit_f32 += 4 * n;
                    bit_packed += packed;
                    stored += packed;
                } else {
                    stored += 4 * n;
                }
            }
            Ok(json!({
                "params": params,
                "f32_bytes": f32_all,
                "stored_bytes": stored,
                "bitlinear_f32_bytes": bit_f32,
                "bitlinear_packed_bytes": bit_packed,
            }))
        }

        /// Run `f` (one forward pass plus its read-back) and return seconds per pass.
        fn time_reps(mut f: impl FnMut() -> Result<(), String>) -> Result<(f64, usize), String> {
            let t0 = Instant::now();
            f()?;
            let first = t0.elapsed();
            if first >= MIN_TIME {
                return Ok((first.as_secs_f64(), 1));
            }
            // The first pass was warm-up; time fresh ones.
            let mut times = Vec::new();
            let start = Instant::now();
            while times.len() < MAX_REPS && (times.is_empty() || start.elapsed() < MIN_TIME) {
                let t = Instant::now();
                f()?;
                times.push(t.elapsed().as_secs_f64());
            }
            times.sort_by(f64::total_cmp);
            Ok((times[times.len() / 2], times.len()))
        }

        fn bench_one<B: Backend>(be: &B, ck: Checkpoint, p: &Params) -> Result<Value, String> {
            let read = |t: &B::Tensor| -> Result<HostTensor, String> { pollster::block_on(be.read(t)).map_err(e) };
            let t_load = Instant::now();
            let model = Model::load(be, ck).map_err(e)?;
            // Loading is lazy on the GPU: force it with a first pass below, timed as part of load.
            let mut rng = SplitMix64::new(p.seed ^ 0x5EED_1D5);
            let vocab = model.common.vocab;
            let warm = random_ids(&mut rng, p.tokens, vocab);
            read(&model.classify(be, &warm).map_err(e)?)?;
            let load_s = t_load.elapsed().as_secs_f64();

            // (a) Throughput: `batch` sequences classified one at a time, each read back.
            let seqs: Vec<Vec<u32>> = (0..p.batch).map(|_| random_ids(&mut rng, p.tokens, vocab)).collect();
            let t0 = Instant::now();
            for ids in &seqs {
                let out = read(&model.classify(be, ids).map_err(e)?)?;
                if out.as_f32("logits").map_err(e)?.iter().any(|x| !x.is_finite()) {
                    return Err("non-finite logits".into());
                }
            }
            let cls_s = t0.elapsed().as_secs_f64();

            // (b) Per-token cost of `Model::hidden` by length (the last row is read back, which
            // forces the whole pass on a lazy backend).
            let mut per_token = Vec::new();
            for &t in &p.seq_lens {
                let ids = random_ids(&mut rng, t, vocab);
                let timed = time_reps(|| {
                    let h = model.hidden(be, &ids).map_err(e)?;
                    let last = be.narrow(&h, 0, h.shape()[0] - 1, 1).map_err(e)?;
                    read(&last).map(|_| ())
                });
                // One length failing (e.g. a buffer over the device's limit) does not end the run.
                let (s, reps) = match timed {
                    Ok(x) => x,
                    Err(err) => {
                        eprintln!("    {:<24} T={t:<5} failed: {err}", model.common.arch.display_name());
                        per_token.push(json!({ "tokens": t, "error": err }));
                        continue;
                    }
                };
                eprintln!("    {:<24} T={t:<5} {:>10.2} µs/token ({reps} rep{})", model.common.arch.display_name(), s * 1e6 / t as f64, if reps == 1 { "" } else { "s" });
                per_token.push(json!({ "tokens": t, "seconds": s, "reps": reps, "us_per_token": s * 1e6 / t as f64 }));
            }
            Ok(json!({
                "load_and_first_pass_s": load_s,
                "classify": {
                    "sequences": p.batch,
                    "tokens": p.tokens,
                    "seconds": cls_s,
                    "examples_per_s": p.batch as f64 / cls_s,
                },
                "per_token": per_token,
            }))
        }

        fn outcome(r: Result<Value, String>) -> Value {
            r.unwrap_or_else(|err| {
                eprintln!("    failed: {err}");
                json!({ "error": err })
            })
        }

        fn loadavg() -> Option<String> {
            std::fs::read_to_string("/proc/loadavg").ok().map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        }

        fn fmt_bytes(b: u64) -> String {
            if b >= 1 << 20 { format!("{:.2} MiB", b as f64 / (1u64 << 20) as f64) } else { format!("{:.1} KiB", b as f64 / 1024.0) }
        }

        pub fn run(p: &Params, cpu: bool, gpu: bool, json_out: Option<&std::path::Path>) -> Result<(), String> {
            if p.batch == 0 || p.tokens == 0 || p.seq_lens.contains(&0) {
                return Err("--batch, --tokens and every --seq-lens value must be positive".into());
            }
            let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            let load_start = loadavg();
            let mut backends: Vec<Value> = Vec::new();
            let mut results: Vec<Value> = Vec::new();
            let mut weights: Vec<(Arch, Value)> = Vec::new();
            let mut cks = Vec::new();
            for arch in ARCHS {
                let dims = Dims::default_for(arch);
                let ck = random_checkpoint(&dims, p.seed).map_err(e)?;
                weights.push((arch, weight_bytes(&ck, arch)?));
                cks.push((arch, dims, ck));
            }
            let t_all = Instant::now();
            if cpu {
                let be = CpuBackend::new();
                eprintln!("cpu: {}", be.info().device);
                backends.push(json!({ "name": "cpu", "available": true, "backend": be.info() }));
                for (arch, _, ck) in &cks {
                    results.push(json!({ "backend": "cpu", "arch": arch, "result": outcome(bench_one(&be, ck.clone(), p)) }));
                }
            }
            if gpu {
                super::quiet_vulkan_loader();
                match pollster::block_on(GpuBackend::acquire()) {
                    Err(err) => {
                        eprintln!("gpu: not available ({err}); skipped");
                        backends.push(json!({ "name": "gpu", "available": false, "reason": err.to_string() }));
                    }
                    Ok(be) => {
                        eprintln!("gpu: {}", be.info().device);
                        backends.push(json!({ "name": "gpu", "available": true, "backend": be.info() }));
                        for (arch, _, ck) in &cks {
                            results.push(json!({ "backend": "gpu", "arch": arch, "result": outcome(bench_one(&be, ck.clone(), p)) }));
                        }
                    }
                }
            }
            let total_s = t_all.elapsed().as_secs_f64();
            let load_end = loadavg();

            // The table.
            println!("trilemma {} bench — {} hardware threads, load average {} (start) / {} (end), {:.0} s",
                trilemma::VERSION, threads, load_start.as_deref().unwrap_or("n/a"), load_end.as_deref().unwrap_or("n/a"), total_s);
            for b in &backends {
                match b["backend"]["device"].as_str() {
                    Some(d) => println!("  {}: {d}", b["name"].as_str().unwrap_or("")),
                    None => println!("  {}: not available ({})", b["name"].as_str().unwrap_or(""), b["reason"].as_str().unwrap_or("")),
                }
            }
            println!("Random weights (seed {}), default dims: vocab 8192, hidden 128, 2 layers, intermediate 256; GLA chunked (16).", p.seed);
            println!();
            println!("{:<24} {:>10} {:>12} {:>14} {:>22}", "model", "params", "f32 weights", "stored weights", "BitLinear f32 -> packed");
            for (arch, w) in &weights {
                let bl = if w["bitlinear_f32_bytes"].as_u64() == Some(0) {
                    "-".to_string()
                } else {
                    format!("{} -> {}", fmt_bytes(w["bitlinear_f32_bytes"].as_u64().unwrap_or(0)), fmt_bytes(w["bitlinear_packed_bytes"].as_u64().unwrap_or(0)))
                };
                println!("{:<24} {:>10} {:>12} {:>14} {:>22}", arch.display_name(), w["params"], fmt_bytes(w["f32_bytes"].as_u64().unwrap_or(0)), fmt_bytes(w["stored_bytes"].as_u64().unwrap_or(0)), bl);
            }
            println!();
            let mut head = format!("{:<8} {:<24} {:>12}", "backend", "model", format!("ex/s (T={})", p.tokens));
            for t in &p.seq_lens {
                head.push_str(&format!(" {:>9}", format!("T={t}")));
            }
            println!("{head}");
            println!("{:<8} {:<24} {:>12} {}", "", "", "", "(µs per token of Model::hidden; * = 1 rep)");
            for r in &results {
                let arch: Arch = serde_json::from_value(r["arch"].clone()).map_err(e)?;
                let res = &r["result"];
                let mut line = format!("{:<8} {:<24} {:>12.1}", r["backend"].as_str().unwrap_or(""), arch.display_name(), res["classify"]["examples_per_s"].as_f64().unwrap_or(f64::NAN));
                if let Some(err) = res["error"].as_str() {
                    line.push_str(&format!(" failed: {err}"));
                }
                for pt in res["per_token"].as_array().into_iter().flatten() {
                    if pt.get("error").is_some() {
                        line.push_str(&format!(" {:>9}", "error"));
                        continue;
                    }
                    let star = if pt["reps"].as_u64() == Some(1) { "*" } else { " " };
                    line.push_str(&format!(" {:>8.1}{star}", pt["us_per_token"].as_f64().unwrap_or(f64::NAN)));
                }
                println!("{line}");
            }

            if let Some(path) = json_out {
                let out = json!({
                    "name": "trilemma bench",
                    "version": trilemma::VERSION,
                    "machine": { "hardware_threads": threads, "loadavg_start": load_start, "loadavg_end": load_end, "os": std::env::consts::OS, "arch": std::env::consts::ARCH },
                    "params": { "seq_lens": p.seq_lens, "batch": p.batch, "tokens": p.tokens, "seed": p.seed, "min_time_s": MIN_TIME.as_secs_f64(), "max_reps": MAX_REPS },
                    "dims": cks.iter().map(|(a, d, _)| json!({ "arch": a, "vocab": d.vocab, "hidden": d.hidden, "layers": d.layers, "heads": d.heads, "kv_heads": d.kv_heads, "intermediate": d.intermediate, "num_labels": d.num_labels })).collect::<Vec<_>>(),
                    "weights": weights.iter().map(|(a, w)| json!({ "arch": a, "bytes": w })).collect::<Vec<_>>(),
                    "backends": backends,
                    "results": results,
                    "total_s": total_s,
                });
                std::fs::write(path, serde_json::to_string_pretty(&out).map_err(e)? + "\n").map_err(|err| format!("{}: {err}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
            Ok(())
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    if let Err(e) = cli::main() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

#[cfg(target_arch = "wasm32")]
fn main() {}
