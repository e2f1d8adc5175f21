//! Throughput of Layer Parallelism on the bundled models: sequential vs layer-parallel pairs in the reference
//! ("unfused") form vs the one-wider-layer ("fused") form, on the CPU and on the native GPU adapter when there is one.
//! The variants are timed in turn, round after round, and the median round is reported (the machine may be shared).
//! A measurement, not a test.
//!
//! ```text
//! CARGO_TARGET_DIR=… cargo run --profile native --example layer_parallel_bench -- [rounds] [examples]
//! ```

use std::time::Instant;

use trilemma::backend::cpu::CpuBackend;
use trilemma::backend::gpu::GpuBackend;
use trilemma::backend::Backend;
use trilemma::compress::apply::{apply, Recipe};
use trilemma::data::{load_split, Split, Task};
use trilemma::io::Checkpoint;
use trilemma::models::parallel::MlpNorm;
use trilemma::models::Model;
use trilemma::text::TextTokenizer;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench<B: Backend>(be: &B, label: &str, rounds: usize, n: usize) {
    let assets = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    let ex = load_split(&assets, Task::Sst2, Split::Validation).unwrap();
    for name in ["transformer", "gla", "hgrn_bit"] {
        let ck = Checkpoint::load_dir(&assets.join("models").join(name)).unwrap();
        let tk = TextTokenizer::from_json_bytes(ck.tokenizer_json.as_deref().unwrap()).unwrap();
        let seqs: Vec<Vec<u32>> = ex.iter().take(n).map(|e| tk.encode_example(&e.text_a, None).unwrap()).collect();
        let lp = |fused| apply(&ck, &Recipe::LayerParallel { start: 0, end: 2, mlp_norm: MlpNorm::Own, fused }).unwrap().0;
        let variants = [("sequential", ck.clone()), ("LP unfused", lp(false)), ("LP fused", lp(true))];
        let models: Vec<(&str, Model<B>)> = variants.into_iter().map(|(v, c)| (v, Model::load(be, c).unwrap())).collect();
        for batch in [1usize, 32] {
            let mut times = vec![Vec::new(); models.len()];
            for round in 0..rounds + 1 {
                for (i, (_, m)) in models.iter().enumerate() {
                    let t0 = Instant::now();
                    for chunk in seqs.chunks(batch) {
                        let refs: Vec<&[u32]> = chunk.iter().map(|s| s.as_slice()).collect();
                        let y = m.classify_batch(be, &refs, None).unwrap();
                        pollster::block_on(be.read(&y)).unwrap();
                    }
                    // Round 0 warms up (pipelines, caches) and is not counted.
                    if round > 0 {
                        times[i].push(seqs.len() as f64 / t0.elapsed().as_secs_f64());
                    }
                }
            }
            let base = median(times[0].clone());
            for (i, (v, _)) in models.iter().enumerate() {
                let eps = median(times[i].clone());
                println!("| {label} | {name} | {batch} | {v} | {eps:.1} | {:.2}× |", eps / base);
            }
        }
    }
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("rounds and examples are numbers")).collect();
    let (rounds, n) = (args.first().copied().unwrap_or(5), args.get(1).copied().unwrap_or(128));
    println!("| backend | model | batch | variant | examples/s (median of {rounds}) | vs sequential |");
    println!("|---|---|---|---|---|---|");
    bench(&CpuBackend::new(), "cpu", rounds, n);
    match pollster::block_on(GpuBackend::acquire()) {
        Ok(g) => {
            let label = format!("wgpu ({})", g.info().device);
            bench(&g, &label, rounds, n)
        }
        Err(e) => println!("(no GPU adapter: {e})"),
    }
}
