#!/usr/bin/env bash
# The embedded studies on one GPU (issues 8 and 19), as run through the device tool: install the
# offline bundle, start the CUDA MPS daemon where the machine allows it (so the small MiniLM runs'
# kernels share the GPU instead of taking turns), run each named sweep as parallel local processes,
# and pack the records (and the LoRA checkpoints Section 7 needs) into $OUT.
# Usage: OUT=dir bash scripts/gpu_embedded.sh PARALLEL SECONDS sweep[@SEEDS] [sweep[@SEEDS] ...]
#   sweep@5,6,7,8,9 runs only these seeds of the sweep (more seeds for cells that already have
#     some), seed by seed, listed in manifest_seeds-5+6+7+8+9.txt.
#   sweep@SEEDS:key=v1,v2:key2=v ... runs only the cells these overrides select (e.g.
#     embedded_rank@3,4:rank=1,2:targets=[q,k,v,o]); listed in manifest_seeds-...+<filter>.txt.
#   New runs are numbered after the highest run number in the sweep's runs/, so a filtered call
#     and a later full one never give two cells the same number.
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
for item in "$@"; do
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
  LEFT=$(( END - $(date +%s) ))
  [ "$LEFT" -gt 30 ] || { echo "no time left for $sweep"; break; }
  mkdir -p "results/$sweep"
  if [ -n "$SEEDS" ]; then
    LABEL="seeds-${SEEDS//,/+}"
    for f in "${FILTER[@]}"; do LABEL="${LABEL}_$(echo "$f" | tr -c 'A-Za-z0-9=.\n' '+' | tr = -)"; done
    MANIFEST="results/$sweep/manifest_$LABEL.txt"
    LAST=$(ls "results/$sweep/runs" 2>/dev/null | sed -n 's/^\([0-9][0-9]*\)_.*/\1/p' | sort -n | tail -1)
    FIRST_NUMBER=$(( 10#${LAST:-0} + 1 ))
    # Seed-major order: a call cut short by its time limit leaves every cell with its next
    # seeds, not some cells with all of them and the rest with none.
    python3 slurm/make_manifest.py "sweep=$sweep" "seed=$SEEDS" "${FILTER[@]}" \
      | awk '{ match($0, /seed=[0-9]+/); print substr($0, RSTART + 5, RLENGTH - 5) "\t" $0 }' \
      | sort -s -n -k1,1 | cut -f2- > "$MANIFEST"
    STATUS="results/$sweep/status_$LABEL.txt"
  else
    MANIFEST="results/$sweep/manifest.txt"
    FIRST_NUMBER=1
    python3 slurm/make_manifest.py "sweep=$sweep" > "$MANIFEST"
    STATUS="results/$sweep/status.txt"
  fi
  echo "== $sweep: $(wc -l < "$MANIFEST") runs from $FIRST_NUMBER, ${LEFT}s left"
  START=$(date +%s)
  FIRST_NUMBER=$FIRST_NUMBER timeout "$LEFT" bash scripts/run_manifest.sh "$MANIFEST" "$PARALLEL" \
    "results/$sweep/runs" $WEIGHTS | tee "$STATUS"
  echo "== $sweep took $(( $(date +%s) - START ))s"
done
nvidia-smi --query-gpu=name,memory.used --format=csv
[ -n "${CUDA_MPS_PIPE_DIRECTORY:-}" ] && echo quit | nvidia-cuda-mps-control
# Archives ($OUT returns at most 8 files of 16 MiB): the records and logs, the chosen hparams, and
# apart the small LoRA checkpoints of ranks 4, 8 and 64 on [q,v] that Section 7 reads (full
# fine-tuning's are 90 MB): r=64's in two halves, as one archive of ten would pass 16 MiB.
CKPTS=$(find results -name best.ckpt -path '*embedded_rank*' | grep -E 'rank-(4|8|64)_targets-_q[+]v_seed' | sort)
echo "$CKPTS" | grep -E 'rank-(4|8)_' > /tmp/ckpt_r4_r8.txt || true
echo "$CKPTS" | grep -E 'rank-64_.*seed-[0-5]/' > /tmp/ckpt_r64_a.txt || true
echo "$CKPTS" | grep -E 'rank-64_.*seed-([6-9]|[1-9][0-9])/' > /tmp/ckpt_r64_b.txt || true
for part in r4_r8 r64_a r64_b; do
  [ -s "/tmp/ckpt_$part.txt" ] && tar czf "$OUT/ckpt_$part.tgz" -T "/tmp/ckpt_$part.txt"
done
find results conf/hparams -type f ! -name '*.ckpt' ! -name 'hparams.yaml' > /tmp/keep.txt
tar czf "$OUT/results.tgz" -T /tmp/keep.txt
ls -la "$OUT"
