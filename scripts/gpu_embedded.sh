#!/usr/bin/env bash
# The embedded studies on one GPU (issues 8 and 19), as run through the device tool: install the
# offline bundle, start the CUDA MPS daemon where the machine allows it (so the small MiniLM runs'
# kernels share the GPU instead of taking turns), run each named sweep as parallel local processes,
# and pack the records (and the LoRA checkpoints Section 7 needs) into $OUT.
# Usage: OUT=dir bash scripts/gpu_embedded.sh PARALLEL SECONDS sweep[@SEEDS] [sweep[@SEEDS] ...]
#   sweep@5,6,7,8,9 runs only these seeds of the sweep (more seeds for cells that already have
#     some), listed in manifest_seeds-5+6+7+8+9.txt.
#   sweep@SEEDS:key=v1,v2:key2=v ... runs only the cells these overrides select (e.g.
#     embedded_rank@3,4:rank=1,2:targets=[q,k,v,o]); listed in manifest_seeds-...+<filter>.txt.
#   New runs are numbered after the highest run number in the sweep's runs/, so a filtered call
#     and a later full one never give two cells the same number.
#   All runs share one pool of PARALLEL processes, seed-major across the sweeps; none starts later
#     than RUN_S (env, default 150) seconds before the SECONDS budget ends. A "--" between items
#     starts a later group: every run of the items before it is started first (priorities).
#   a sweep named "choose_lr" runs scripts/choose_lr.py (the LR search must come before it).
set -uo pipefail
PARALLEL=$1
BUDGET_S=$2
shift 2
OUT=${OUT:-out}
mkdir -p "$OUT"
python3 -c "import hydra" 2>/dev/null || bash scripts/install_offline_bundle.sh bundle
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export LORA_EXP_PYTHON=python3
# RUN_OVERRIDES (env): more overrides for every run; unset, the eager step. Measured on an H200
# (2026-12-07): the captured (graphed) step under MPS with 15 processes lost 45 of 91 runs to
# "illegal memory access", always whole waves at once (a fault in one MPS client can end all the
# clients beside it), while 108 of 108 eager runs under MPS with 20 processes finished; eager is
# also the step the committed seeds 0-2 ran with. RUN_OVERRIDES= (set, empty) runs the default.
RUN_OVERRIDES=${RUN_OVERRIDES-trainer.step=eager}
WEIGHTS="model.local_path=bundle/minilm-fp16 model.tokenizer=hub eval_batch_size=256 $RUN_OVERRIDES"
END=$(( $(date +%s) + BUDGET_S ))
export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
if command -v nvidia-cuda-mps-control >/dev/null && nvidia-cuda-mps-control -d \
    && python3 -c "import torch; torch.ones(1, device='cuda').sum().item()"; then
  echo "MPS: on"
else
  echo quit | nvidia-cuda-mps-control 2>/dev/null
  unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
  echo "MPS: off (processes time-share the GPU)"
fi
# Every sweep's runs go into one pool of PARALLEL processes, seed-major across the sweeps (seed 0
# of every named cell, then seed 1, ...) within each "--"-separated group: a call cut short leaves
# every cell of a group with its next seeds, and no sweep waits for the last runs of the one
# before it.
source scripts/run_name.sh
JOBS=$(mktemp)
trap 'rm -f "$JOBS"' EXIT
declare -A NEXT_NUMBER QUEUED
GROUP=0
for item in "$@"; do
  if [ "$item" = "--" ]; then GROUP=$(( GROUP + 1 )); continue; fi
  sweep=${item%%@*}
  SEEDS=""
  FILTER=()
  if [ "$item" != "$sweep" ]; then
    IFS=: read -r -a parts <<< "${item#*@}"
    SEEDS=${parts[0]}
    FILTER=("${parts[@]:1}")
  fi
  if [ "$sweep" = choose_lr ]; then
    python3 scripts/choose_lr.py | tee results/choose_lr.txt
    continue
  fi
  mkdir -p "results/$sweep"
  if [ -n "$SEEDS" ]; then
    LABEL="seeds-${SEEDS//,/+}"
    for f in "${FILTER[@]}"; do LABEL="${LABEL}_$(echo "$f" | tr -c 'A-Za-z0-9=.\n' '+' | tr = -)"; done
    MANIFEST="results/$sweep/manifest_$LABEL.txt"
    python3 slurm/make_manifest.py "sweep=$sweep" "seed=$SEEDS" "${FILTER[@]}" > "$MANIFEST"
  else
    MANIFEST="results/$sweep/manifest.txt"
    python3 slurm/make_manifest.py "sweep=$sweep" > "$MANIFEST"
  fi
  # New runs are numbered after the highest run number in the sweep's runs/ (and after this
  # call's earlier items of the same sweep), so no two cells share a number.
  if [ -z "${NEXT_NUMBER[$sweep]:-}" ]; then
    LAST=$(ls "results/$sweep/runs" 2>/dev/null | sed -n 's/^\([0-9][0-9]*\)_.*/\1/p' | sort -n | tail -1)
    NEXT_NUMBER[$sweep]=$(( 10#${LAST:-0} + 1 ))
  fi
  # Runs that already succeeded in the sweep's runs/ (an earlier call's) are left out here, so
  # the pool's count, order and status lines are about the runs still to do.
  PENDING=0
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    run_done "results/$sweep/runs" "$line" && continue
    # A cell named by two items (a priority group, then its whole sweep) is queued once.
    [ -n "${QUEUED[$sweep $(run_name_suffix "$line")]:-}" ] && continue
    QUEUED[$sweep $(run_name_suffix "$line")]=1
    seed=$(echo "$line" | sed -n 's/.*seed=\([0-9][0-9]*\).*/\1/p')
    printf '%s\t%s\t%s\t%s\t%s\n' "$GROUP" "${seed:-0}" "results/$sweep/runs" "${NEXT_NUMBER[$sweep]}" "$line" >> "$JOBS"
    NEXT_NUMBER[$sweep]=$(( NEXT_NUMBER[$sweep] + 1 ))
    PENDING=$(( PENDING + 1 ))
  done < "$MANIFEST"
  echo "== $sweep: $PENDING of $(wc -l < "$MANIFEST") runs to do ($MANIFEST)"
done
POOL=results/pool_$(date -u +%Y%m%d_%H%M%S).txt
sort -s -k1,1n -k2,2n "$JOBS" | cut -f3- > "$POOL"  # stable: item order within a seed
LEFT=$(( END - $(date +%s) ))
# A MiniLM run takes ~2 min with 20 beside it (eager, H200): start none later than RUN_S before
# the end, so the runs started finish instead of being killed halfway.
RUN_S=${RUN_S:-150}
echo "== pool: $(wc -l < "$POOL") runs, ${LEFT}s left, launching for $(( LEFT - RUN_S ))s ($POOL)"
START=$(date +%s)
LAUNCH_UNTIL=$(( END - RUN_S )) timeout "$LEFT" bash scripts/run_jobs.sh "$POOL" "$PARALLEL" \
  $WEIGHTS | tee "${POOL%.txt}_status.txt"
echo "== pool took $(( $(date +%s) - START ))s: $(grep -c '^ok' "${POOL%.txt}_status.txt") ok," \
  "$(grep -c '^FAIL' "${POOL%.txt}_status.txt") failed, $(grep -c '^SKIP' "${POOL%.txt}_status.txt") not started"
nvidia-smi --query-gpu=name,memory.used --format=csv
[ -n "${CUDA_MPS_PIPE_DIRECTORY:-}" ] && echo quit | nvidia-cuda-mps-control
# Archives ($OUT returns at most 8 files of 16 MiB): the records and logs, the chosen hparams, and
# apart the small LoRA [q,v] checkpoints Section 7 reads, of the current runs/ only (full
# fine-tuning's are 90 MB): rank 4 and rank 64 from embedded_rank, rank 8 from embedded_methods'
# LoRA on tweet_sentiment (the same cell); rank 64's (3 MB each) in three parts of at most 12 MB.
find results/embedded_rank/runs -name best.ckpt -path '*rank-4_targets-_q+v_seed*' | sort > /tmp/ckpt_r4.txt
find results/embedded_methods/runs -name best.ckpt -path '*method-lora_task-tweet_sentiment_seed*' | sort > /tmp/ckpt_r8.txt
R64=$(find results/embedded_rank/runs -name best.ckpt -path '*rank-64_targets-_q+v_seed*' | sort)
echo "$R64" | grep -E 'seed-[0-3]/' > /tmp/ckpt_r64_a.txt || true
echo "$R64" | grep -E 'seed-[4-6]/' > /tmp/ckpt_r64_b.txt || true
echo "$R64" | grep -E 'seed-([7-9]|[1-9][0-9])/' > /tmp/ckpt_r64_c.txt || true
for part in r4 r8 r64_a r64_b r64_c; do
  [ -s "/tmp/ckpt_$part.txt" ] && tar czf "$OUT/ckpt_$part.tgz" -T "/tmp/ckpt_$part.txt"
done
find results conf/hparams -type f ! -name '*.ckpt' ! -name 'hparams.yaml' > /tmp/keep.txt
tar czf "$OUT/results.tgz" -T /tmp/keep.txt
ls -la "$OUT"
