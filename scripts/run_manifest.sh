#!/usr/bin/env bash
# Run a manifest of run.py override lines (slurm/make_manifest.py) as parallel local processes,
# e.g. many small runs sharing one GPU (scripts/run_jobs.sh runs them). Line N runs in
# RUN_ROOT/NNN_<overrides>, its output in RUN_ROOT/NNN_<overrides>.out. A rerun skips cells with a
# successful record in their directory (or under the sweep's records_root) and resumes unfinished
# ones, so after a crash only what is missing runs.
# Usage: bash scripts/run_manifest.sh MANIFEST PARALLEL RUN_ROOT [extra overrides...]
# FIRST_NUMBER=N numbers the lines from N (default 1): more seeds of a sweep continue its numbering
# (NNN) after the runs already there instead of reusing their numbers.
set -euo pipefail
MANIFEST=${1:?usage: run_manifest.sh MANIFEST PARALLEL RUN_ROOT [extra overrides...]}
PARALLEL=${2:?parallel processes}
RUN_ROOT=${3:?run root}
shift 3
JOBS=$(mktemp)
trap 'rm -f "$JOBS"' EXIT
grep -v '^$' "$MANIFEST" | awk -v root="$RUN_ROOT" -v first="${FIRST_NUMBER:-1}" \
  '{ print root "\t" (NR + first - 1) "\t" $0 }' > "$JOBS"
bash "$(dirname "$0")/run_jobs.sh" "$JOBS" "$PARALLEL" "$@"
