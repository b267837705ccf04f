#!/usr/bin/env bash
# Issue 16 on one GPU through the device tool: the training-path benchmark and the GPU checks.
# Usage: OUT=dir SECONDS_LEFT=570 bash scripts/gpu_training_path.sh STAGE [STAGE ...]
#   minilm   python run.py budget=full (default) vs trainer.step=eager vs HF Trainer + PEFT
#   checks   pytest -m gpu tests/test_gpu_training_step.py alone
#   checks+seeds   pytest -m gpu tests/test_gpu_training_step.py, and beside it seeds 1-2 of the
#            default and the eager run (concurrent: accuracy only, never timings)
#   scaling  roberta-large, gpt2-medium (random weights): LoRA vs full FT at 128 and 512
# Stages run in order until SECONDS_LEFT is spent; each one's records, logs and tables land in
# $OUT/training_path.tgz as soon as it ends.
set -uo pipefail
OUT=${OUT:-out}; mkdir -p "$OUT"
END=$(( $(date +%s) + ${SECONDS_LEFT:-570} ))
python3 -c "import hydra" 2>/dev/null || bash scripts/install_offline_bundle.sh bundle >/dev/null
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export LORA_EXP_CACHE=/tmp/lora_exp_cache  # what a user's sweep has: the second cell reuses tokens
TP=/tmp/training_path
BENCH="python3 -m lora_exp.bench.training_path run --out $TP --weights bundle/minilm-fp16 --timeout 240"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
for stage in "$@"; do
  LEFT=$(( END - $(date +%s) ))
  [ "$LEFT" -gt 20 ] || { echo "no time left for $stage" | tee -a "$OUT/skipped.txt"; continue; }
  case $stage in
    minilm|scaling)
      timeout "$LEFT" $BENCH "$stage" ${MODELS:+--models $MODELS} 2>&1 | tee "$OUT/$stage.log" ;;
    checks)
      timeout "$LEFT" python3 -m pytest -p no:cacheprovider -q -s -m gpu \
        tests/test_gpu_training_step.py 2>&1 | tee "$OUT/checks.log" ;;
    checks+seeds)
      timeout "$LEFT" $BENCH seeds > "$OUT/seeds.log" 2>&1 &
      timeout "$LEFT" python3 -m pytest -p no:cacheprovider -q -s -m gpu \
        tests/test_gpu_training_step.py 2>&1 | tee "$OUT/checks.log"
      wait ;;
  esac
  python3 -m lora_exp.bench.training_path table --out $TP > /dev/null 2>&1
  tar czf "$OUT/training_path.tgz" -C /tmp training_path 2>/dev/null
done
