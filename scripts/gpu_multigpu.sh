#!/usr/bin/env bash
# Issue 9 on GPUs: DDP throughput scaling (tokens/s on N GPUs over 1 GPU) for full_ft and LoRA on a
# roberta-large-shaped model (random init, bf16 autocast), written to results/multigpu/.
# Run from anywhere in the checkout, on a machine with >= 2 GPUs:
#   bash scripts/gpu_multigpu.sh                 # 1 GPU, then 2 GPUs (~2-3 min on H200s)
#   NGPUS="1 2 4" bash scripts/gpu_multigpu.sh   # more device counts
#   SCALING_ARGS="--batch 32 --seq 128" bash scripts/gpu_multigpu.sh
#   RUN_DDP=1 bash scripts/gpu_multigpu.sh       # also: run.py trainer=ddp vs 1 GPU, same global batch
# Writes results/multigpu/table.csv (one row per method and device count) and table.md (speed-up
# and scaling efficiency); with $OUT set (the device tool's output folder) copies them there.
# The scaling benchmark needs torch, transformers and omegaconf only (bundle/wheels has omegaconf);
# RUN_DDP=1 needs the full environment (hydra-core, lightning, datasets, the MiniLM package).
# CPU smoke test (gloo): NGPUS="1 2" SCALING_ARGS="--model tiny-roberta --batch 2 --seq 16 --steps 3"
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
NGPUS=${NGPUS:-1 2}
RESULTS=${RESULTS:-results/multigpu}
SCALING_ARGS=${SCALING_ARGS:-}
mkdir -p "$RESULTS"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
if ! $PY -c "import omegaconf" 2>/dev/null; then
  $PY -m pip --disable-pip-version-check -q install --no-index --find-links bundle/wheels \
    --no-deps omegaconf antlr4-python3-runtime || { echo "omegaconf missing" >&2; exit 2; }
fi
rm -f "$RESULTS/table.csv"   # one session's rows: speed-ups compare like with like
status=0
for n in $NGPUS; do
  echo "== DDP scaling, $n process(es) =="
  $PY -m torch.distributed.run --standalone --nproc_per_node "$n" -m lora_exp.measure.ddp_scaling \
    --out "$RESULTS" $SCALING_ARGS 2>&1 | tee "$RESULTS/scaling_$n.log" || status=1
done
$PY -m lora_exp.measure.ddp_scaling --table --out "$RESULTS" | tee "$RESULTS/table_stdout.txt"

# Metric agreement on real data: MiniLM + LoRA on tweets, 1 GPU vs trainer=ddp on 2 GPUs with
# the same global batch (bf16: agreement to ~1e-2, not bitwise). Records under $RESULTS/runs.
if [ "${RUN_DDP:-0}" = 1 ]; then
  COMMON="model=minilm method=lora task=tweet_sentiment budget=quick trainer.enable_progress_bar=false"
  $PY run.py $COMMON hydra.run.dir="$RESULTS/runs/one" records_root="$RESULTS/runs/one" \
    2>&1 | tail -8 | tee "$RESULTS/run_one.log" || status=1
  $PY run.py $COMMON trainer=ddp trainer.devices=2 hydra.run.dir="$RESULTS/runs/two" \
    records_root="$RESULTS/runs/two" 2>&1 | tail -8 | tee "$RESULTS/run_two.log" || status=1
fi
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT/results" && cp -r "$RESULTS" "$OUT/results/"; fi
exit $status
