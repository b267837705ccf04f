#!/usr/bin/env bash
# Run a manifest of run.py override lines (slurm/make_manifest.py) as parallel local processes,
# e.g. many small runs sharing one GPU. Line N runs in RUN_ROOT/NNN_<overrides>, its output in
# RUN_ROOT/NNN_<overrides>.out. A rerun skips cells with a successful record in their directory (or
# under the sweep's records_root) and resumes unfinished ones, so after a crash only what is
# missing runs.
# Usage: bash scripts/run_manifest.sh MANIFEST PARALLEL RUN_ROOT [extra overrides...]
# FIRST_NUMBER=N numbers the lines from N (default 1): more seeds of a sweep continue its numbering
# (NNN) after the runs already there instead of reusing their numbers.
set -euo pipefail
MANIFEST=${1:?usage: run_manifest.sh MANIFEST PARALLEL RUN_ROOT [extra overrides...]}
PARALLEL=${2:?parallel processes}
RUN_ROOT=${3:?run root}
shift 3
PYTHON=${LORA_EXP_PYTHON:-python}
mkdir -p "$RUN_ROOT"
FIRST_NUMBER=${FIRST_NUMBER:-1}
export PYTHON RUN_ROOT OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONUNBUFFERED=1
export EXTRA="$*"
run_line() {
  local n=$1 line=$2
  local name
  name=$(printf '%03d_%s' "$n" "$(echo "$line" | sed "s/sweep=[^ ]*//; s/=/-/g; s/,/+/g; s/[^A-Za-z0-9._+-]/_/g; s/__*/_/g; s/_$//")")
  mapfile -t args < <("$PYTHON" -c 'import shlex, sys; print("\n".join(shlex.split(sys.argv[1])))' "$line $EXTRA")
  if "$PYTHON" run.py "${args[@]}" hydra.mode=RUN "hydra.run.dir=$RUN_ROOT/$name" \
      trainer.enable_progress_bar=false > "$RUN_ROOT/$name.out" 2>&1; then
    echo "ok   $name"
  else
    echo "FAIL $name (see $RUN_ROOT/$name.out)"
  fi
}
export -f run_line
grep -n . "$MANIFEST" | awk -F: -v first="$FIRST_NUMBER" '{ n = $1; sub(/^[0-9]+:/, ""); print (n + first - 1) "\t" $0 }' | xargs -P "$PARALLEL" -d '\n' -I{} bash -c 'IFS=$'"'"'\t'"'"' read -r n line <<< "{}"; run_line "$n" "$line"'
