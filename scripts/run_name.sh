# Sourced by run_jobs.sh and gpu_embedded.sh: the directory name of a run from its override line,
# so the pool names runs and a later call finds them by the same rule.
# run_name_suffix LINE: "method-lora_task-bbc_news_seed-3" for "method=lora task=bbc_news seed=3".
run_name_suffix() {
  echo "$1" | sed "s/sweep=[^ ]*//; s/=/-/g; s/,/+/g; s/[^A-Za-z0-9._+-]/_/g; s/__*/_/g; s/_$//"
}
# run_done RUN_ROOT LINE: true when RUN_ROOT holds a successful run of LINE under any number.
run_done() {
  local dir
  for dir in "$1"/[0-9]*_"$(run_name_suffix "$2")"; do
    [ -f "$dir/record.json" ] && "${PYTHON:-python3}" -c 'import json, sys
sys.exit(json.load(open(sys.argv[1])).get("status") != "success")' "$dir/record.json" && return 0
  done
  return 1
}
