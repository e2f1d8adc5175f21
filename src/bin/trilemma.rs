//! The native command-line interface: `trilemma info`, `trilemma tokenizer`.

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
    }

    pub fn main() -> Result<(), String> {
        match Cli::parse().cmd {
            Cmd::Info => info(),
            Cmd::Logits { model, text, text_pair } => logits(&model, &text, text_pair.as_deref()),
            Cmd::Tokenizer { data, vocab_size, out } => tokenizer(&data, vocab_size, &out),
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

    fn logits(dir: &std::path::Path, text: &str, pair: Option<&str>) -> Result<(), String> {
        use trilemma::io::Checkpoint;
        use trilemma::models::Model;
        use trilemma::text::TextTokenizer;
        let ck = Checkpoint::load_dir(dir).map_err(|e| e.to_string())?;
        let tok_json = ck.tokenizer_json.clone().ok_or_else(|| format!("{} has no tokenizer.json", dir.display()))?;
        let tk = TextTokenizer::from_json_bytes(&tok_json).map_err(|e| e.to_string())?;
        let labels = label_names(&ck.config);
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
        let out = be.read_sync(&model.classify(&be, &enc.ids).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
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
