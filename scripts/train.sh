#!/usr/bin/env bash
# Retrain every bundled default model from scratch (README "Training"): the tokenizer, then the
# three architectures as three processes side by side (candle's elementwise ops use one core
# each, so parallel processes use the machine better than one process with many threads).
# Writes assets/tokenizer/tokenizer.json and assets/models/{transformer,gla,hgrn_bit}/; logs go
# to target/train-logs/. Extra arguments are passed to every `trilemma train` (e.g. --seed 7).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --profile native --bin trilemma
bin=target/native/trilemma
mkdir -p target/train-logs
"$bin" tokenizer --data assets/train/glue --out assets/tokenizer/tokenizer.json
pids=()
for arch in transformer gla hgrn_bit; do
  RAYON_NUM_THREADS=1 "$bin" train --arch "$arch" "$@" >"target/train-logs/$arch.log" 2>&1 &
  pids+=($!)
  echo "training $arch (pid $!, log target/train-logs/$arch.log)"
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
tail -n 15 target/train-logs/*.log
exit $status
