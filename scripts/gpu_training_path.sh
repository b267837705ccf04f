#!/usr/bin/env bash
# Issue 16 on one GPU through the device tool: the training-path benchmark and the GPU checks.
# Usage: OUT=dir bash scripts/gpu_training_path.sh STAGE [STAGE ...]
#   minilm   python run.py budget=full (default) vs trainer.step=eager vs HF Trainer + PEFT
#   seeds    seeds 1-2 of the default and the eager run (concurrent; accuracy only)
#   scaling  roberta-large, gpt2-medium (random weights): LoRA vs full FT at 128 and 512
#   checks   pytest -m gpu tests/test_gpu_training_step.py
# Everything lands in $OUT/training_path.tgz (records, logs, tables) and $OUT/*.log.
set -uo pipefail
OUT=${OUT:-out}; mkdir -p "$OUT"
python3 -c "import hydra" 2>/dev/null || bash scripts/install_offline_bundle.sh bundle >/dev/null
export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export LORA_EXP_CACHE=/tmp/lora_exp_cache  # what a user's sweep has: the second cell reuses tokens
TP=/tmp/training_path
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
for stage in "$@"; do
  case $stage in
    minilm|seeds|scaling)
      timeout 540 python3 -m lora_exp.bench.training_path run "$stage" --out $TP \
        --weights bundle/minilm-fp16 --timeout 240 2>&1 | tee "$OUT/$stage.log" ;;
    checks)
      timeout 400 python3 -m pytest -p no:cacheprovider -q -s -m gpu tests/test_gpu_training_step.py \
        2>&1 | tee "$OUT/checks.log" ;;
  esac
  tar czf "$OUT/training_path.tgz" -C /tmp training_path 2>/dev/null
done
