#!/usr/bin/env bash
# Quick GPU check of the training path: the default run (captured step) and trainer.step=eager on
# the embedded default at budget=full, each record copied to $OUT. Usage: OUT=dir bash scripts/gpu_smoke.sh
set -uo pipefail
OUT=${OUT:-out}; mkdir -p "$OUT"
python3 -c "import hydra" 2>/dev/null || bash scripts/install_offline_bundle.sh bundle >/dev/null
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export LORA_EXP_CACHE=/tmp/lora_exp_cache
W="model.local_path=bundle/minilm-fp16 model.tokenizer=hub trainer.enable_progress_bar=false"
for mode in "${@:-auto eager}"; do
  for m in $mode; do
    S=$(date +%s.%N)
    timeout 240 python3 run.py budget=full $W trainer.step=$m hydra.run.dir=/tmp/runs/$m records_root=/tmp/roots/$m > "$OUT/$m.log" 2>&1
    echo "$m rc=$? wall=$(echo "$(date +%s.%N) - $S" | bc)" | tee -a "$OUT/summary.txt"
    cp /tmp/runs/$m/record.json "$OUT/$m.record.json" 2>/dev/null
  done
done
