#!/usr/bin/env bash
# Start a real one-node Slurm cluster on loopback (munged, MariaDB, slurmdbd, slurmctld, slurmd),
# for the slurm tests and CI. Idempotent: installs missing packages, (re)writes the configs from
# slurm/templates/ for this machine's CPUs and memory, starts only the daemons that are not alive,
# and returns once the node is idle and accepting jobs.
#
# Usage:  sudo bash slurm/start.sh            # then: export SLURM_CONF=<printed path>
#         sudo bash slurm/stop.sh [--purge]
#
# Settings (environment variables, all optional):
#   LOCAL_SLURM_DIR=/tmp/lora-exp-slurm   state, logs, sockets; short (socket paths < 108 bytes)
#   LOCAL_SLURM_PARTITION=debug           name of the one partition (the default partition)
#   LOCAL_SLURM_ACCOUNTING=1              slurmdbd + MariaDB; submitit needs sacct to see dead jobs
#   LOCAL_SLURM_AUTH=munge                munge | none (auth/none: Slurm 22.05 only, insecure)
#   LOCAL_SLURM_CGROUP=0                  1: proctrack/cgroup + task/cgroup (CPU and memory limits)
#   LOCAL_SLURM_CTLD_PORT=6817 LOCAL_SLURM_SLURMD_PORT=6818 LOCAL_SLURM_DBD_PORT=6819
#   LOCAL_SLURM_DB_PORT=13306
#   LOCAL_SLURM_LINK_ETC=0                1: symlink /etc/slurm/slurm.conf (no SLURM_CONF needed)
#   LOCAL_SLURM_SKIP_INSTALL=0            1: never run apt-get (fail if a package is missing)
#   LOCAL_SLURM_WAIT_S=60                 how long to wait for each daemon
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
D=${LOCAL_SLURM_DIR:-/tmp/lora-exp-slurm}
PARTITION=${LOCAL_SLURM_PARTITION:-debug}
ACCOUNTING=${LOCAL_SLURM_ACCOUNTING:-1}
AUTH=${LOCAL_SLURM_AUTH:-munge}
CGROUP=${LOCAL_SLURM_CGROUP:-0}
CTLD_PORT=${LOCAL_SLURM_CTLD_PORT:-6817}
SLURMD_PORT=${LOCAL_SLURM_SLURMD_PORT:-6818}
DBD_PORT=${LOCAL_SLURM_DBD_PORT:-6819}
DB_PORT=${LOCAL_SLURM_DB_PORT:-13306}
WAIT_S=${LOCAL_SLURM_WAIT_S:-60}
T0=$(date +%s.%N)

say() { echo "[slurm/start] $*"; }
logs=() # the logs worth showing when something fails
die() {
  echo "[slurm/start] error: $*" >&2
  for f in "${logs[@]}"; do
    [ -s "$f" ] || continue
    echo "--- last lines of $f" >&2
    tail -n 15 "$f" >&2
  done
  exit 1
}

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    vars=$(compgen -e | grep '^LOCAL_SLURM_' | paste -sd, -)
    exec sudo -n ${vars:+--preserve-env="$vars"} bash "$0" "$@"
  fi
  die "must run as root (the daemons run as root and packages may need installing): sudo bash $0"
fi
case "$AUTH" in
  munge | none) ;;
  *) die "LOCAL_SLURM_AUTH must be munge or none, got '$AUTH'" ;;
esac
if [ ${#D} -gt 70 ]; then
  die "LOCAL_SLURM_DIR is too long (${#D} chars): the munge socket path must stay under 108 bytes"
fi

mkdir -p "$D"/{etc,state,spool,log,run,munge,db}

# --- 1. packages --------------------------------------------------------------------------------
need=()
command -v slurmctld >/dev/null || need+=(slurmctld)
command -v slurmd >/dev/null || need+=(slurmd)
command -v sbatch >/dev/null || need+=(slurm-client)
if [ "$AUTH" = munge ]; then command -v munged >/dev/null || need+=(munge); fi
if [ "$ACCOUNTING" = 1 ]; then
  command -v slurmdbd >/dev/null || need+=(slurmdbd)
  command -v mariadbd >/dev/null || need+=(mariadb-server)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "${LOCAL_SLURM_SKIP_INSTALL:-0}" = 1 ]; then
    die "missing packages: ${need[*]} (LOCAL_SLURM_SKIP_INSTALL=1)"
  fi
  command -v apt-get >/dev/null || die "missing packages: ${need[*]}, and no apt-get to install"
  say "installing: ${need[*]}"
  # Package scripts must not start system-wide services: this cluster runs its own daemons.
  added_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    added_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || die "apt-get update failed"
  logs=("$D/log/apt.log")
  apt-get install -y -qq --no-install-recommends "${need[@]}" >"$D/log/apt.log" 2>&1 \
    || die "apt-get install ${need[*]} failed"
  if [ "$added_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

# --- 2. keys and configs -------------------------------------------------------------------------
chmod 755 "$D" "$D/run"
chmod 700 "$D/munge" "$D/etc"
MUNGE_SOCKET=$D/run/munge.socket.2
if [ "$AUTH" = munge ] && [ ! -s "$D/munge/munge.key" ]; then
  if command -v mungekey >/dev/null; then
    mungekey --create --keyfile="$D/munge/munge.key"
  else
    dd if=/dev/urandom bs=1 count=1024 of="$D/munge/munge.key" status=none
  fi
  chmod 600 "$D/munge/munge.key"
fi
if [ "$ACCOUNTING" = 1 ] && [ ! -s "$D/etc/db.pass" ]; then
  (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$D/etc/db.pass")
fi

# This machine, detected now: slurmd's view of the CPUs and 95 % of its memory (MiB).
cpus=$(slurmd -C 2>/dev/null | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' | head -n 1)
mem=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n 1)
[ -n "$cpus" ] || cpus=$(nproc)
[ -n "$mem" ] || mem=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024))
real_mem=$((mem * 95 / 100))
def_mem=$((real_mem / cpus))
if [ "$def_mem" -gt 1024 ]; then def_mem=1024; fi

if [ "$AUTH" = munge ]; then
  auth_lines="AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET"
else
  auth_lines="AuthType=auth/none
CredType=cred/none"
fi
dbd_auth_lines=$(echo "$auth_lines" | grep -v '^CredType')
if [ "$CGROUP" = 1 ]; then
  proctrack_lines="ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup"
else
  proctrack_lines="# No cgroup plugin (portable); LOCAL_SLURM_CGROUP=1 enables CPU/memory limits.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none"
fi
if [ "$ACCOUNTING" = 1 ]; then
  # AccountingStoragePass names the munge socket for the slurmdbd connection (AuthInfo does not
  # apply to it); without it slurmctld looks for /run/munge/munge.socket.2.
  accounting_lines="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT"
  if [ "$AUTH" = munge ]; then
    accounting_lines="$accounting_lines
AccountingStoragePass=$MUNGE_SOCKET"
  fi
else
  accounting_lines="# No accounting: sacct fails; submitit cannot see jobs that die without a result.
AccountingStorageType=accounting_storage/none"
fi

changed=0
render() { # render TEMPLATE OUT MODE: fill @VARS@; replace OUT only when its content changes
  local tmp
  tmp=$(mktemp "$2.XXXXXX")
  DIR="$D" CLUSTER=local CTLD_PORT="$CTLD_PORT" SLURMD_PORT="$SLURMD_PORT" DBD_PORT="$DBD_PORT" \
    DB_PORT="$DB_PORT" PARTITION="$PARTITION" CPUS="$cpus" REAL_MEMORY="$real_mem" \
    DEF_MEM_PER_CPU="$def_mem" AUTH_LINES="$auth_lines" PROCTRACK_LINES="$proctrack_lines" \
    ACCOUNTING_LINES="$accounting_lines" DBD_AUTH_LINES="$dbd_auth_lines" \
    DB_PASS="$(cat "$D/etc/db.pass" 2>/dev/null || true)" \
    awk '{
      while (match($0, /@[A-Z_]+@/)) {
        name = substr($0, RSTART + 1, RLENGTH - 2)
        $0 = substr($0, 1, RSTART - 1) ENVIRON[name] substr($0, RSTART + RLENGTH)
      }
      print
    }' "$1" >"$tmp"
  chmod "$3" "$tmp"
  if [ -f "$2" ] && cmp -s "$tmp" "$2"; then
    rm -f "$tmp"
  else
    mv -f "$tmp" "$2"
    changed=1
  fi
}
render "$HERE/templates/slurm.conf.in" "$D/etc/slurm.conf" 644
if [ "$ACCOUNTING" = 1 ]; then
  render "$HERE/templates/slurmdbd.conf.in" "$D/etc/slurmdbd.conf" 600
fi
if [ "$CGROUP" = 1 ]; then
  render "$HERE/templates/cgroup.conf.in" "$D/etc/cgroup.conf" 644
else
  rm -f "$D/etc/cgroup.conf"
fi
export SLURM_CONF=$D/etc/slurm.conf
printf 'export SLURM_CONF=%s\n' "$SLURM_CONF" >"$D/env.sh"
if [ "${LOCAL_SLURM_LINK_ETC:-0}" = 1 ]; then
  mkdir -p /etc/slurm
  ln -sfn "$SLURM_CONF" /etc/slurm/slurm.conf
fi

logs=("$D"/log/{munged,mariadb,slurmdbd,slurmctld,slurmd}.log)

# --- 3. daemons -----------------------------------------------------------------------------------
# PID 1 here reaps orphans late, so a dead daemon can linger as a zombie and `kill -0` succeeds on
# it: alive means the PID file's process exists, is not a zombie, and has the daemon's name.
alive() { # alive PIDFILE COMM
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || return 1
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]
}
wait_for() { # wait_for WHAT COMMAND...: retry COMMAND until it succeeds or WAIT_S passes
  local what=$1 end=$(($(date +%s) + WAIT_S))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || die "timed out after ${WAIT_S}s waiting for $what"
    sleep 0.2
  done
}

if [ "$changed" = 1 ] && alive "$D/run/slurmctld.pid" slurmctld; then
  say "configuration changed: restarting the slurm daemons"
  LOCAL_SLURM_DIR=$D LOCAL_SLURM_KEEP_JOBS=1 bash "$HERE/stop.sh" --slurm-only
fi

if [ "$AUTH" = munge ]; then
  if ! alive "$D/run/munged.pid" munged; then
    say "starting munged"
    munged --force -S "$MUNGE_SOCKET" --key-file="$D/munge/munge.key" \
      --log-file="$D/log/munged.log" --pid-file="$D/run/munged.pid" \
      --seed-file="$D/munge/munged.seed" || die "munged failed to start"
  fi
  wait_for "munge" bash -c "munge -S '$MUNGE_SOCKET' -n | unmunge -S '$MUNGE_SOCKET'"
fi

if [ "$ACCOUNTING" = 1 ]; then
  DB_SOCKET=$D/run/mysqld.sock
  if [ ! -d "$D/db/data/mysql" ]; then
    say "initialising the accounting database"
    mariadb-install-db --no-defaults --datadir="$D/db/data" --user=root \
      --auth-root-authentication-method=socket --skip-test-db >"$D/log/mariadb-install.log" 2>&1 \
      || die "mariadb-install-db failed (see $D/log/mariadb-install.log)"
  fi
  if ! alive "$D/run/mariadbd.pid" mariadbd; then
    say "starting mariadbd"
    setsid -f mariadbd --no-defaults --datadir="$D/db/data" --user=root \
      --bind-address=127.0.0.1 --port="$DB_PORT" --socket="$DB_SOCKET" \
      --pid-file="$D/run/mariadbd.pid" --log-error="$D/log/mariadb.log" --skip-name-resolve \
      --innodb-buffer-pool-size=64M --innodb-flush-log-at-trx-commit=2 </dev/null >/dev/null 2>&1
  fi
  wait_for "mariadbd" mariadb-admin --no-defaults --socket="$DB_SOCKET" -u root ping
  pass=$(cat "$D/etc/db.pass")
  mariadb --no-defaults --socket="$DB_SOCKET" -u root -e "
    CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$pass';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" || die "creating the database user failed"
  if ! alive "$D/run/slurmdbd.pid" slurmdbd; then
    say "starting slurmdbd"
    slurmdbd || die "slurmdbd failed to start"
  fi
  wait_for "slurmdbd" sacctmgr -n show cluster
fi

if ! alive "$D/run/slurmctld.pid" slurmctld; then
  say "starting slurmctld"
  slurmctld -i || die "slurmctld failed to start"
fi
wait_for "slurmctld" bash -c "scontrol ping | grep -q UP"
if ! alive "$D/run/slurmd.pid" slurmd; then
  say "starting slurmd"
  slurmd -N localhost || die "slurmd failed to start"
fi

# After a slurmctld restart the node is restored as idle from the state file before slurmd has
# registered, so "idle" alone is not enough: wait until slurmctld has seen this slurmd's boot.
registered() {
  local boot node
  boot=$(scontrol show slurmd 2>/dev/null | sed -n 's/^Boot time *= *//p')
  node=$(scontrol show node localhost 2>/dev/null | sed -n 's/.*SlurmdStartTime=\([^ ]*\).*/\1/p')
  [ -n "$boot" ] && [ "$boot" = "$node" ]
}
wait_for "slurmd to register with slurmctld" registered
node_state() { sinfo -h -n localhost -o %t 2>/dev/null | head -n 1; }
resumed=0
end=$(($(date +%s) + WAIT_S))
while true; do
  state=$(node_state)
  case "$state" in
    idle | mix | alloc) break ;;
    drain* | drng | down* | fail*)
      if [ "$resumed" = 0 ]; then
        say "node is '$state': resuming it"
        scontrol update nodename=localhost state=resume || true
        resumed=1
      fi
      ;;
  esac
  [ "$(date +%s)" -lt "$end" ] || die "timed out waiting for the node to be idle (state: '$state')"
  sleep 0.2
done
if [ "$ACCOUNTING" = 1 ]; then
  wait_for "the cluster to be registered in accounting" \
    bash -c "sacctmgr -n -P show cluster format=cluster | grep -qx local"
fi

elapsed=$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
say "ready in ${elapsed}s: $(sinfo -h -o '%P %a %D %t %c CPUs %m MiB')"
echo "export SLURM_CONF=$SLURM_CONF"
