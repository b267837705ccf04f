#!/usr/bin/env bash
# Issue 5 on a GPU: the paper's Table 1 latency and the training-efficiency benchmark.
# Run from anywhere in the checkout, on the GPU machine:
#   bash scripts/gpu_measure.sh                      # stages "latency efficiency compiled captured"
#   bash scripts/gpu_measure.sh latency              # one stage (~2.5 min on an H200)
#   bash scripts/gpu_measure.sh efficiency           # eager + CUDA-graphed steps, 2 rounds (~8 min)
#   bash scripts/gpu_measure.sh compiled             # regional torch.compile, roberta-large (~2 min)
#   bash scripts/gpu_measure.sh captured             # the compiled step as one CUDA graph, both models (~3 min)
# Writes results/table1_latency and results/efficiency (each efficiency invocation adds a record to
# results/efficiency/runs; `python -m lora_exp.report efficiency` then rebuilds table.* and
# targets.md from all of them). When $OUT is set (the device tool's output folder) copies them to
# $OUT/results and tees logs to $OUT/logs. EFFICIENCY_ARGS narrows a stage, e.g. to fit a call's
# time limit: the committed runs were `efficiency` with "--models roberta-large", with
# "--models gpt2-medium --seq-lens 512 --modes eager --rounds 1", with "--models gpt2-medium
# --seq-lens 128" and with "--models roberta-large --modes graphed --rounds 1"; `compiled` with
# "--seq-lens 128", with "--seq-lens 512" and with "--models gpt2-medium"; and the `captured` runs
# as `compiled` with "--models roberta-large --seq-lens 128 512 --modes compiled-graphed" and with
# "--models gpt2-medium --seq-lens 128 512 --modes compiled-graphed" (the stage did not exist yet).
# Needs torch (CUDA), transformers, peft; installs omegaconf from bundle/wheels if it is missing.
# RESULTS=DIR writes elsewhere than results/; LATENCY_ARGS / EFFICIENCY_ARGS append options
# (a CPU smoke test: LATENCY_ARGS="--protocol custom --model tiny-gpt2 --sizes 2x16 --trials 2").
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
STAGES=${*:-latency efficiency compiled captured}
RESULTS=${RESULTS:-results}
LOGS=${OUT:+$OUT/logs}
LOGS=${LOGS:-$RESULTS/logs}
mkdir -p "$LOGS"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"

# The benchmarks import omegaconf (configs) but not hydra, lightning, datasets or wandb.
if ! $PY -c "import omegaconf" 2>/dev/null; then
  if ls bundle/wheels/omegaconf-*.whl bundle/wheels/antlr4_python3_runtime-*.whl >/dev/null 2>&1; then
    $PY -m pip --disable-pip-version-check -q install --no-index --find-links bundle/wheels \
      --no-deps omegaconf antlr4-python3-runtime 2>&1 | tee -a "$LOGS/setup.log"
  else
    echo "omegaconf is missing and bundle/wheels has no omegaconf/antlr4 wheels" \
      "(make them with scripts/make_offline_bundle.sh)" | tee -a "$LOGS/setup.log" >&2
    exit 2
  fi
fi
$PY - <<'EOF' 2>&1 | tee "$LOGS/environment.txt"
import importlib.metadata as md, torch
print("python", __import__("sys").version.split()[0], "| torch", torch.__version__,
      "| transformers", md.version("transformers"), "| peft", md.version("peft"),
      "| omegaconf", md.version("omegaconf"))
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv 2>&1 \
  | tee -a "$LOGS/environment.txt"

status=0
run() {  # run NAME COMMAND...: tee the output into $LOGS/NAME.log and time it
  local name=$1 start=$SECONDS
  shift
  echo "== $name: $*" | tee "$LOGS/$name.log"
  "$@" 2>&1 | tee -a "$LOGS/$name.log"
  local rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || status=1
  echo "== $name: exit $rc, $((SECONDS - start)) s" | tee -a "$LOGS/$name.log"
}

for stage in $STAGES; do
  case $stage in
    latency)  # Table 1: GPT-2 medium fp16, (32,512) (16,256) (1,128), 100 trials, eager + graphs
      run latency $PY -m lora_exp.measure.latency --protocol paper --out "$RESULTS/table1_latency" \
        --variants base lora_merged lora_unmerged adapter_l adapter_h prefix_layer peft_unmerged base_copy \
        ${LATENCY_ARGS:-} ;;
    efficiency)  # roberta-large, gpt2-medium x 128, 512 x full_ft lora adapter_h bitfit + PEFT
      run efficiency $PY -m lora_exp.measure.efficiency --out "$RESULTS/efficiency" \
        --modes eager graphed --rounds 2 --profile-steps 2 ${EFFICIENCY_ARGS:-} ;;
    compiled)  # full FT, LoRA and PEFT's LoRA under regional torch.compile (one graph per block)
      run compiled $PY -m lora_exp.measure.efficiency --out "$RESULTS/efficiency" \
        --models roberta-large --methods full_ft lora --modes compiled --compile-scope blocks \
        --profile-steps 2 ${EFFICIENCY_ARGS:-} ;;
    captured)  # the regionally compiled step captured as one CUDA graph (engine.step.TrainStep)
      run captured $PY -m lora_exp.measure.efficiency --out "$RESULTS/efficiency" \
        --models roberta-large gpt2-medium --methods full_ft lora --modes compiled-graphed \
        --compile-scope blocks --profile-steps 2 ${EFFICIENCY_ARGS:-} ;;
    *)
      echo "unknown stage '$stage' (latency, efficiency, compiled, captured)" >&2
      exit 2 ;;
  esac
done

if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT/results"
  for dir in table1_latency efficiency; do
    [ -d "$RESULTS/$dir" ] && cp -r "$RESULTS/$dir" "$OUT/results/"
  done
  echo "copied to $OUT/results: $(ls "$OUT/results" | tr '\n' ' ')"
fi
exit $status
