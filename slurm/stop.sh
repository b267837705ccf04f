#!/usr/bin/env bash
# Stop the one-node Slurm cluster started by slurm/start.sh: cancel its jobs, then stop exactly the
# daemons named in its PID files (slurmd, slurmctld, slurmdbd, mariadbd, munged). Safe to run twice.
#
# Usage:  sudo bash slurm/stop.sh              # stop; state, accounting data and logs are kept
#         sudo bash slurm/stop.sh --slurm-only # stop only the three slurm daemons
#         sudo bash slurm/stop.sh --purge      # stop, then delete $LOCAL_SLURM_DIR
# Settings: LOCAL_SLURM_DIR (as for start.sh), LOCAL_SLURM_KEEP_JOBS=1 (do not scancel).
set -euo pipefail

D=${LOCAL_SLURM_DIR:-/tmp/lora-exp-slurm}
SLURM_ONLY=0
PURGE=0
for arg in "$@"; do
  case "$arg" in
    --slurm-only) SLURM_ONLY=1 ;;
    --purge) PURGE=1 ;;
    *) echo "usage: $0 [--slurm-only] [--purge]" >&2; exit 2 ;;
  esac
done
say() { echo "[slurm/stop] $*"; }

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    exec sudo -n --preserve-env=LOCAL_SLURM_DIR,LOCAL_SLURM_KEEP_JOBS bash "$0" "$@"
  fi
  echo "[slurm/stop] error: must run as root: sudo bash $0" >&2
  exit 1
fi
if [ ! -d "$D" ]; then
  say "nothing to stop ($D does not exist)"
  exit 0
fi
export SLURM_CONF=$D/etc/slurm.conf

# Same liveness test as start.sh: PID 1 reaps late, so zombies and reused PIDs must not count.
alive_pid() { # alive_pid PIDFILE COMM -> prints the PID of a live daemon
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || return 1
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
  echo "$pid"
}
stop_daemon() { # stop_daemon NAME: TERM, wait up to 30 s, then KILL
  local name=$1 pidfile=$D/run/$1.pid pid i
  if pid=$(alive_pid "$pidfile" "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 300); do
      alive_pid "$pidfile" "$name" >/dev/null || break
      sleep 0.1
    done
    if alive_pid "$pidfile" "$name" >/dev/null; then
      say "$name ($pid) ignored TERM for 30 s: killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    say "stopped $name ($pid)"
  fi
  rm -f "$pidfile"
}

keep_jobs=${LOCAL_SLURM_KEEP_JOBS:-0}
if [ "$keep_jobs" != 1 ] && alive_pid "$D/run/slurmctld.pid" slurmctld >/dev/null; then
  if [ -n "$(squeue -h -o %i 2>/dev/null | head -n 1)" ]; then
    say "cancelling all jobs"
    scancel --full --quiet --user=root 2>/dev/null || true
    scancel --full --quiet $(squeue -h -o %i 2>/dev/null) 2>/dev/null || true
    for i in $(seq 1 100); do
      [ -z "$(squeue -h -o %i 2>/dev/null | head -n 1)" ] && break
      sleep 0.1
    done
  fi
fi

stop_daemon slurmd
stop_daemon slurmctld
stop_daemon slurmdbd
if [ "$SLURM_ONLY" = 0 ]; then
  stop_daemon mariadbd
  stop_daemon munged
fi
# Job steps (slurmstepd) outlive slurmd by design; none should be left once jobs were cancelled.
for pid in $(pgrep -x slurmstepd 2>/dev/null || true); do
  if grep -qa "$D" "/proc/$pid/environ" 2>/dev/null; then
    say "killing leftover slurmstepd $pid"
    kill -KILL "$pid" 2>/dev/null || true
  fi
done
# Empty cgroups left by LOCAL_SLURM_CGROUP=1.
for cg in /sys/fs/cgroup/*/slurm_localhost /sys/fs/cgroup/*/slurm; do
  [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
done
if [ "$PURGE" = 1 ]; then
  rm -rf "$D"
  say "purged $D"
fi
