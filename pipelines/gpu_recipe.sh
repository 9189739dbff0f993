#!/usr/bin/env bash
# Train SSML-QNet on one GPU from a bundle of `python -m pipelines.gpu_bundle`, in one command:
#
#     bash BUNDLE/recipe.sh BUNDLE OUT
#
# On a machine with CUDA torch, numpy, OpenCV, Pillow and scikit-image (no rasterio, kornia or
# internet needed). Steps, each logged to OUT/recipe.log:
#   1. the training patches, built on the CPU cores (one process per modality and seed);
#   2. the paper-width network: trained from BUNDLE/init/init.pt when the bundle has one,
#      else from scratch (pipelines.train, bf16 autocast);
#   3. the lite CPU preset, distilled from step 2's best weights (pipelines.train --teacher);
#   4. test FPR95 of both (pipelines.evaluate patches) on the test sets the bundle carries;
#   5. the weights of both, float16, split under 16 MB per file, with their model cards
#      (pipelines.ship --dest), into OUT/weights;
#   6. the network scoring benchmark (pipelines.scoring_bench), last and alone (run on
#      2026-12-04 beside the patch builders, its host-side figures were perturbed).
# OUT then holds weights/, the runs' config.json and log.jsonl, the evaluations and the
# benchmark. Sizes come from the environment; the defaults fit 10 minutes on an H200 with 16
# cores and fine-tune the bundle's --init weights (on 2026-12-04: 437 s with 3 + 1.5 minutes of
# training; from scratch the paper-width network needs about 25 epochs, 8 minutes): DEVICE,
# SEEDS, PER_IMAGE, EPOCHS, LR, BATCH, STUDENT_EPOCHS, STUDENT_LR, MINUTES, STUDENT_MINUTES,
# MODS (modalities), PRESET (of step 2; lite for a quick check), BENCH (0 skips it),
# BENCH_ARGS, JOBS, WORK (scratch folder).
set -uo pipefail
B=$(cd "${1:?usage: recipe.sh BUNDLE OUT}" && pwd)
OUT=${2:?usage: recipe.sh BUNDLE OUT}
mkdir -p "$OUT/weights" && OUT=$(cd "$OUT" && pwd)
DEVICE=${DEVICE:-cuda} SEEDS=${SEEDS:-0 1 2 3} PER_IMAGE=${PER_IMAGE:-96}
EPOCHS=${EPOCHS:-9} LR=${LR:-0.0005} BATCH=${BATCH:-256} MINUTES=${MINUTES:-3}
STUDENT_EPOCHS=${STUDENT_EPOCHS:-14} STUDENT_LR=${STUDENT_LR:-0.002} STUDENT_MINUTES=${STUDENT_MINUTES:-3}
PRESET=${PRESET:-paper} BENCH=${BENCH:-1} BENCH_ARGS=${BENCH_ARGS:---variants library eager_bf16 channels_last compile} JOBS=${JOBS:-16} WORK=${WORK:-/tmp/register_recipe}
MODS=${MODS:-vis-nir opt-sar opt-ir vis-lwir}
export PYTHONPATH="$B/code${PYTHONPATH:+:$PYTHONPATH}" REGISTER_DATA="$B/data" PYTHONUNBUFFERED=1
if ls "$B"/wheels/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --target "$WORK/site" "$B"/wheels/*.whl || exit 1
  export PYTHONPATH="$PYTHONPATH:$WORK/site"
fi
LOG="$OUT/recipe.log"
say() { echo "[$(date +%T) +$SECONDS s] $*" | tee -a "$LOG"; }
run() { say "$*"; "$@" >>"$LOG" 2>&1; }
mkdir -p "$WORK/patches"
say "bundle $(cat "$B/bundle.json" | tr -d '\n ') device $DEVICE seeds '$SEEDS'"

# 1. training patches, one process per modality and seed
for s in $SEEDS; do for m in $MODS; do echo "$s $m"; done; done |
  OMP_NUM_THREADS=1 xargs -P "$JOBS" -n 2 sh -c 'python3 -m pipelines.patches --split train \
    --seed "$0" --modality "$1" --per-image '"$PER_IMAGE"' --out '"$WORK/patches"' \
    >'"$WORK"'/patches_$0_$1.log 2>&1 || echo "patches seed $0 $1 failed"' | tee -a "$LOG"
say "patches built: $(ls "$WORK/patches" | grep -c npz) files"
FIRST=${SEEDS%% *}
PATCHES=$(for m in $MODS; do printf '%s ' "$WORK/patches/train_${m}_seed${FIRST}.npz"; done)

# 2. paper-width network
INIT=()
[ -f "$B/init/init.pt" ] && INIT=(--init "$B/init/init.pt")
run python3 -m pipelines.train --modality all --preset "$PRESET" --device "$DEVICE" --amp \
  --epochs "$EPOCHS" --minutes "$MINUTES" --batch-size "$BATCH" --lr "$LR" \
  --patch-seeds $SEEDS --patches $PATCHES "${INIT[@]}" --out "$WORK/paper" || say "paper training failed"

# 3. lite CPU preset distilled from it
if [ -f "$WORK/paper/best.pt" ]; then
  run python3 -m pipelines.train --modality all --preset lite --device "$DEVICE" --amp \
    --epochs "$STUDENT_EPOCHS" --minutes "$STUDENT_MINUTES" --batch-size "$BATCH" \
    --lr "$STUDENT_LR" --patch-seeds $SEEDS --patches $PATCHES \
    --teacher "$WORK/paper/best.pt" --out "$WORK/lite" || say "lite distillation failed"
fi

# 4. test FPR95 and 5. compact weights with their cards
SETS=$(python3 -c "import json,sys; print(','.join(json.load(open(sys.argv[1]))['test_sets']))" "$B/bundle.json")
for p in paper lite; do
  [ -f "$WORK/$p/best.pt" ] || continue
  mkdir -p "$OUT/$p" && cp "$WORK/$p/config.json" "$WORK/$p/log.jsonl" "$OUT/$p/"
  EVAL=()
  if [ -n "$SETS" ]; then
    run python3 -m pipelines.evaluate patches --model "$WORK/$p/best.pt" --sets "$SETS" \
      --device "$DEVICE" --batch-size 2048 --cache-dir "$WORK/test_patches" --out "$OUT/$p/eval" \
      && EVAL=(--patch-eval "$OUT/$p/eval/summary.csv")
  fi
  run python3 -m pipelines.ship --run "$WORK/$p" --dest "$OUT/weights" \
    --name "ssml_qnet_${p}_all.pt" --card "ssml_qnet_${p}_all.md" "${EVAL[@]}" \
    --note "trained by pipelines/gpu_recipe.sh" || say "export of $p failed"
done
# 6. the scoring benchmark, alone on the machine (host-side work must not compete with builders)
if [ "$BENCH" != 0 ]; then
  run timeout 150 python3 -m pipelines.scoring_bench --device "$DEVICE" --out "$OUT/bench" \
    $BENCH_ARGS || say "benchmark failed or timed out"
fi
say "done: $(ls "$OUT/weights" | tr '\n' ' ')"
