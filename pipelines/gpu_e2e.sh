#!/usr/bin/env bash
# Register pairs end to end on one GPU, in one command, from the repository's root:
#
#     bash pipelines/gpu_e2e.sh BUNDLE OUT
#
# BUNDLE: a folder of `python -m pipelines.gpu_bundle --no-training --test-sets opt-ir
# --wheels WHEELS` (its data/ and wheels/ are used; the code and the shipped weights are this
# repository's). For a machine with CUDA torch, numpy, OpenCV and scikit-image but no kornia,
# rasterio or internet: WHEELS holds kornia and kornia_rs for its Python (the device notes give
# the `pip download` line); rasterio is not needed (images are read by OpenCV, no aligned.tif
# is written). Steps, each logged to OUT/e2e.log:
#   1. pipelines.benchmark on the device, warm (model loaded once, --cold 0: the command line
#      writes aligned.tif with rasterio), for each of MODELS (default: the shipped lite preset
#      and the paper width), THREADS CPU threads for the CPU stages (search, shortlist, RANSAC);
#   2. pipelines.evaluate registration of the paper-width network (EVAL_MODEL) on the first
#      LIMIT pairs of each of EVAL_SETS (the bundle's test sets): accuracy on the GPU;
#   3. pipelines.scoring_bench, last and alone: network pairs/s as a fraction of the measured
#      bf16 peak for the library's path and the compiled variants (torch.compile, with CUDA
#      graphs, with bfloat16 weights), BENCH_ARGS (default: batch 4096, the paper preset).
# Sizes from the environment: DEVICE (cuda), MODELS, REPEATS (5), THREADS (16), EVAL_MODEL,
# EVAL_SETS, LIMIT (10; 0 skips step 2), BENCH (1; 0 skips step 3), BENCH_ARGS, BENCH_TIMEOUT
# (300 s), WORK (scratch folder).
set -uo pipefail
B=$(cd "${1:?usage: gpu_e2e.sh BUNDLE OUT}" && pwd)
OUT=${2:?usage: gpu_e2e.sh BUNDLE OUT}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
REPO=$(cd "$(dirname "$0")/.." && pwd)
W="$REPO/register/weights"
DEVICE=${DEVICE:-cuda} REPEATS=${REPEATS:-5} THREADS=${THREADS:-16} LIMIT=${LIMIT:-10}
MODELS=${MODELS:-auto $W/ssml_qnet_paper_all.pt} EVAL_MODEL=${EVAL_MODEL:-$W/ssml_qnet_paper_all.pt}
WORK=${WORK:-/tmp/register_e2e} BENCH=${BENCH:-1} BENCH_TIMEOUT=${BENCH_TIMEOUT:-300}
BENCH_ARGS=${BENCH_ARGS:---batch-sizes 4096 --seconds 2 --variants library eager_bf16 compile compile_graphs compile_bf16}
EVAL_SETS=${EVAL_SETS:-$(python3 -c "import json,sys; print(','.join(json.load(open(sys.argv[1]))['test_sets']))" "$B/bundle.json")}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" REGISTER_DATA="$B/data" PYTHONUNBUFFERED=1
LOG="$OUT/e2e.log"
say() { echo "[$(date +%T) +$SECONDS s] $*" | tee -a "$LOG"; }
run() { say "$*"; "$@" >>"$LOG" 2>&1; }
if ls "$B"/wheels/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --target "$WORK/site" "$B"/wheels/*.whl \
    >>"$LOG" 2>&1 || say "installing the bundle's wheels failed"
  export PYTHONPATH="$PYTHONPATH:$WORK/site"
fi
if ! python3 -c "import kornia" >>"$LOG" 2>&1; then
  say "kornia is not importable: carry its wheels (pipelines.gpu_bundle --wheels); stopping"
  exit 3
fi
say "bundle $(tr -d '\n ' <"$B/bundle.json" | cut -c1-200) device $DEVICE"

# 1. warm end-to-end timings per model
for m in $MODELS; do
  name=$(basename "$m" .pt)
  run python3 -m pipelines.benchmark --device "$DEVICE" --threads "$THREADS" --cold 0 \
    --repeats "$REPEATS" --model "$m" --out "$OUT/bench_$name" || say "benchmark $name failed"
  [ -f "$OUT/bench_$name/config.json" ] && say "$name: $(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('median', d['median_s'], 's')" "$OUT/bench_$name/config.json")"
done

# 2. registration accuracy of the paper-width network on the device
if [ "$LIMIT" != 0 ] && [ -n "$EVAL_SETS" ]; then
  run python3 -m pipelines.evaluate registration --sets "$EVAL_SETS" --methods ours \
    --device "$DEVICE" --model "$EVAL_MODEL" --limit "$LIMIT" --out "$OUT/eval" \
    || say "evaluation failed"
  [ -f "$OUT/eval/results.md" ] && cat "$OUT/eval/results.md" | tee -a "$LOG"
fi

# 3. network scoring throughput against the measured peak
if [ "$BENCH" != 0 ]; then
  run timeout "$BENCH_TIMEOUT" python3 -m pipelines.scoring_bench --device "$DEVICE" \
    --out "$OUT/scoring" $BENCH_ARGS || say "scoring benchmark failed or timed out"
  [ -f "$OUT/scoring/scoring_bench.json" ] && python3 -c "import json,sys
d = json.load(open(sys.argv[1]))
for r in d['runs']:
    print(r['variant'], r['batch'], r.get('error') or '%.0f pairs/s, %.1f %% of peak' % (r['pairs_per_s'], 100 * r['fraction_of_peak']))" "$OUT/scoring/scoring_bench.json" | tee -a "$LOG"
fi
say "done"
