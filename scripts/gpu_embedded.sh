#!/usr/bin/env bash
# The embedded studies on one GPU (issue 8), as run on an H200 through the device tool:
# install the offline bundle, then run each named sweep as parallel local processes sharing the GPU,
# and pack the records (and the LoRA checkpoints Section 7 needs) into $OUT/results.tgz.
# Usage: OUT=dir bash scripts/gpu_embedded.sh PARALLEL SECONDS sweep [sweep ...]
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
WEIGHTS="model.local_path=bundle/minilm-fp16 model.tokenizer=hub eval_batch_size=256"
END=$(( $(date +%s) + BUDGET_S ))
for sweep in "$@"; do
  if [ "$sweep" = choose_lr ]; then
    python3 scripts/choose_lr.py | tee results/choose_lr.txt
    continue
  fi
  LEFT=$(( END - $(date +%s) ))
  [ "$LEFT" -gt 30 ] || { echo "no time left for $sweep"; break; }
  mkdir -p "results/$sweep"
  python3 slurm/make_manifest.py "sweep=$sweep" > "results/$sweep/manifest.txt"
  echo "== $sweep: $(wc -l < "results/$sweep/manifest.txt") runs, ${LEFT}s left"
  START=$(date +%s)
  timeout "$LEFT" bash scripts/run_manifest.sh "results/$sweep/manifest.txt" "$PARALLEL" \
    "results/$sweep/runs" $WEIGHTS | tee "results/$sweep/status.txt"
  echo "== $sweep took $(( $(date +%s) - START ))s"
done
nvidia-smi --query-gpu=name,memory.used --format=csv
# One archive ($OUT returns at most 8 files): records, logs, the chosen hparams, and the small LoRA
# checkpoints of ranks 4, 8 and 64 on [q,v] that Section 7 needs (full fine-tuning's are 90 MB).
find results -name '*.ckpt' -path '*embedded_rank*' | grep -E 'rank-(4|8|64)_targets-_q[+]v_seed' > /tmp/keep.txt || true
find results conf/hparams -type f ! -name '*.ckpt' ! -name 'hparams.yaml' >> /tmp/keep.txt
tar czf "$OUT/results.tgz" -T /tmp/keep.txt
ls -la "$OUT"
