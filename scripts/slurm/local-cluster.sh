#!/usr/bin/env bash
# A real single-node Slurm (Debian's slurm-wlm with munge) on this machine, to run the sharded evaluation's
# array job as a cluster would: `start` installs the packages if missing (needs root), writes a slurm.conf for
# this host under $SLURM_STATE and starts munged, slurmctld and slurmd; `stop` ends them. Clients find the
# cluster through SLURM_CONF, which `start` prints (and `env` prints for eval).
#
#   bash scripts/slurm/local-cluster.sh start && eval "$(bash scripts/slurm/local-cluster.sh env)"
#   sinfo; bash scripts/slurm/submit.sh ...; bash scripts/slurm/local-cluster.sh stop
set -euo pipefail
STATE="${SLURM_STATE:-${TRAVERSE_CACHE:-$HOME/.cache/traverse}/slurm}"
CONF="$STATE/slurm.conf"
HOST="$(hostname -s)"

start() {
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge
  fi
  mkdir -p "$STATE/ctld" "$STATE/slurmd"
  # Memory a little under the machine's, so slurmd's own check passes.
  local mem_mb; mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
  cat > "$CONF" <<CONF
ClusterName=traverse
SlurmctldHost=$HOST
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmdSpoolDir=$STATE/slurmd
StateSaveLocation=$STATE/ctld
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
NodeName=$HOST CPUs=$(nproc) RealMemory=$mem_mb State=UNKNOWN
PartitionName=local Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
  # munged runs as its own user; its key comes with Debian's package.
  mkdir -p /run/munge && chown munge:munge /run/munge
  if ! pgrep -x munged >/dev/null; then runuser -u munge -- /usr/sbin/munged; fi
  stop_daemons
  slurmctld -f "$CONF"
  slurmd -f "$CONF"
  export SLURM_CONF="$CONF"
  for _ in $(seq 30); do
    if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      echo "single-node Slurm up on $HOST ($(nproc) CPUs); export SLURM_CONF=$CONF"
      return 0
    fi
    sleep 1
  done
  echo "Slurm did not come up; logs in $STATE" >&2
  tail -5 "$STATE/slurmctld.log" "$STATE/slurmd.log" >&2 || true
  return 1
}

stop_daemons() {
  for pid in "$STATE/slurmd.pid" "$STATE/slurmctld.pid"; do
    if [[ -f $pid ]]; then kill "$(cat "$pid")" 2>/dev/null || true; rm -f "$pid"; fi
  done
  sleep 1
}

case "${1:-}" in
  start) start ;;
  stop) stop_daemons; echo "stopped Slurm (munged left running)" ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
