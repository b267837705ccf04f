# Sourced by run_jobs.sh and gpu_embedded.sh: the directory name of a run from its override line,
# so the pool names runs and a later call finds them by the same rule.
# run_name_suffix LINE: "method-lora_task-bbc_news_seed-3" for "method=lora task=bbc_news seed=3".
run_name_suffix() {
  echo "$1" | sed "s/sweep=[^ ]*//; s/=/-/g; s/,/+/g; s/[^A-Za-z0-9._+-]/_/g; s/__*/_/g; s/_$//"
}
# run_done RUN_ROOT LINE: true when RUN_ROOT holds a successful run of LINE under any number
# (NNN_<suffix> exactly: a longer name that merely ends in the suffix is another cell). By name,
# not by config hash as run.py's skip is: composing each line's config costs a Hydra call, and a
# run this misses is still skipped by run.py.
run_done() {
  local dir suffix
  suffix=$(run_name_suffix "$2")
  for dir in "$1"/*_"$suffix"; do
    [[ ${dir##*/} =~ ^[0-9]+_(.*)$ && ${BASH_REMATCH[1]} == "$suffix" ]] || continue
    [ -f "$dir/record.json" ] && "${PYTHON:-python3}" -c 'import json, sys
sys.exit(json.load(open(sys.argv[1])).get("status") != "success")' "$dir/record.json" && return 0
  done
  return 1
}
