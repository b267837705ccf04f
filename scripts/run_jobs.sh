#!/usr/bin/env bash
# Run a list of jobs as parallel local processes, e.g. many small runs of several sweeps sharing
# one GPU in one pool (so no sweep waits for the last runs of the one before it).
# Usage: bash scripts/run_jobs.sh JOBS PARALLEL [extra overrides...]
#   JOBS: one job per line, tab-separated: RUN_ROOT, number N, run.py override line (shell-quoted,
#   as slurm/make_manifest.py writes it). Job N runs in RUN_ROOT/NNN_<overrides>, its output in
#   RUN_ROOT/NNN_<overrides>.out. A rerun skips cells with a successful record in their directory
#   (or under the sweep's records_root) and resumes unfinished ones (run.py does).
#   LAUNCH_UNTIL=<unix seconds> (env): start no job after that time ("SKIP" lines), so a pool with
#   a time limit lets the runs it started finish instead of being killed halfway.
set -euo pipefail
JOBS=${1:?usage: run_jobs.sh JOBS PARALLEL [extra overrides...]}
PARALLEL=${2:?parallel processes}
shift 2
PYTHON=${LORA_EXP_PYTHON:-python}
source "$(dirname "$0")/run_name.sh"
export PYTHON OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONUNBUFFERED=1 LAUNCH_UNTIL=${LAUNCH_UNTIL:-}
export EXTRA="$*"
run_job() {
  local root=$1 n=$2 line=$3
  local name
  name=$(printf '%03d_%s' "$n" "$(run_name_suffix "$line")")
  if [ -n "$LAUNCH_UNTIL" ] && [ "$(date +%s)" -ge "$LAUNCH_UNTIL" ]; then
    echo "SKIP $root/$name (launch deadline passed)"
    return
  fi
  mkdir -p "$root"
  mapfile -t args < <("$PYTHON" -c 'import shlex, sys; print("\n".join(shlex.split(sys.argv[1])))' "$line $EXTRA")
  if "$PYTHON" run.py "${args[@]}" hydra.mode=RUN "hydra.run.dir=$root/$name" \
      trainer.enable_progress_bar=false > "$root/$name.out" 2>&1; then
    echo "ok   $root/$name"
  else
    echo "FAIL $root/$name (see $root/$name.out)"
  fi
}
export -f run_job run_name_suffix
# xargs hands each line to bash as "$1"; the tabs split it into the job's three fields.
xargs -P "$PARALLEL" -d '\n' -n 1 bash -c 'IFS=$'"'"'\t'"'"' read -r root n line <<< "$1"; run_job "$root" "$n" "$line"' _ < "$JOBS"
