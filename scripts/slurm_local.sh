#!/usr/bin/env bash
# A one-node Slurm cluster on this machine (controller and compute node both localhost), for CI and for trying
# `tweetlm data build --executor slurm` and runs/slurm_tiny_cpu.sbatch (tests/test_cluster_slurm.py).
#   sudo scripts/slurm_local.sh          # as root; idempotent: a second call checks the cluster and starts what is down
# Installs slurm-wlm and munge from Debian packages when missing, writes /etc/slurm/slurm.conf (the node's CPUs and
# memory from `slurmd -C`, one partition `local`, no accounting), starts munged, slurmctld and slurmd directly
# (containers have no systemd) and waits until the node is idle and `srun` and `sbatch --wait` run a job.
# No cgroup plugins (proctrack/linuxproc, task/none, jobacct_gather/none): a container rarely has a writable
# cgroup tree; jobs are therefore not confined to their CPUs or memory.
# Exits non-zero (with the daemons' log tails) when the cluster does not come up.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
LOG_DIR=/var/log/slurm
RUN_DIR=/run/slurm
PARTITION=local

say() { printf 'slurm_local: %s\n' "$*"; }
die() {
  say "ERROR: $*" >&2
  for f in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" /var/log/munge/munged.log; do
    [ -f "$f" ] && { echo "--- tail of $f" >&2; tail -n 20 "$f" >&2; }
  done
  exit 1
}
# the pid in a pid file, when that process is alive
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

[ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts daemons)"

# 1. packages
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
  || ! command -v munged >/dev/null; then
  say "installing slurm-wlm and munge (apt-get)"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge
else
  say "slurm-wlm $(slurmd -V | awk '{print $2}') and munge already installed"
fi

# 2. munge: a key (the package's postinst usually made one) and the daemon, run as the munge user
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge
install -d -o munge -g munge -m 0755 /run/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
  say "creating /etc/munge/munge.key"
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if alive /run/munge/munged.pid; then
  say "munged running (pid $(cat /run/munge/munged.pid))"
else
  say "starting munged"
  rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
  runuser -u munge -- /usr/sbin/munged
fi
for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
munge -n | unmunge >/dev/null || die "munge does not encode and decode a credential"

# 3. slurm.conf: this machine's CPUs and memory as slurmd measures them
install -d -m 0755 "$LOG_DIR" "$RUN_DIR" /var/spool/slurmctld /var/spool/slurmd
HW=$(slurmd -C | head -n 1 | sed -E 's/^NodeName=[^ ]+ //')
[ -n "$HW" ] || die "slurmd -C printed nothing"
NEW_CONF=$(cat <<EOF
# written by tweetlm scripts/slurm_local.sh: a one-node cluster on localhost
ClusterName=tweetlm
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=60
MinJobAge=300
NodeName=localhost NodeAddr=127.0.0.1 $HW State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
)
changed=0
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$NEW_CONF" ]; then
  say "writing $CONF ($HW)"
  printf '%s\n' "$NEW_CONF" >"$CONF"
  changed=1
else
  say "$CONF unchanged"
fi
# Debian's default cgroup.conf is not read without cgroup plugins; make sure none slipped in
if grep -Ei '^[^#]*(proctrack|task|jobacct_gather)[^=]*=.*cgroup' "$CONF"; then die "cgroup plugin in $CONF"; fi

# 4. daemons (restarted when the configuration changed)
if [ "$changed" = 1 ]; then
  for d in slurmd slurmctld; do
    if alive "$RUN_DIR/$d.pid"; then
      say "stopping $d (pid $(cat "$RUN_DIR/$d.pid")) for the new configuration"
      kill "$(cat "$RUN_DIR/$d.pid")"
      for _ in $(seq 50); do alive "$RUN_DIR/$d.pid" || break; sleep 0.1; done
    fi
  done
fi
if alive "$RUN_DIR/slurmctld.pid"; then
  say "slurmctld running (pid $(cat "$RUN_DIR/slurmctld.pid"))"
else
  say "starting slurmctld"
  /usr/sbin/slurmctld
fi
if alive "$RUN_DIR/slurmd.pid"; then
  say "slurmd running (pid $(cat "$RUN_DIR/slurmd.pid"))"
else
  say "starting slurmd"
  /usr/sbin/slurmd -N localhost
fi

# 5. wait for the node, then run one job each way
state=""
for _ in $(seq 60); do
  state=$(sinfo -h -N -n localhost -o '%t' 2>/dev/null || true)
  case "$state" in idle | mix | alloc) break ;; down* | drain* | fail*)
    scontrol update NodeName=localhost State=RESUME 2>/dev/null || true ;;
  esac
  sleep 1
done
case "$state" in idle | mix | alloc) say "node localhost is $state" ;; *) die "node localhost is '$state' after 60 s" ;; esac
out=$(timeout 60 srun -p "$PARTITION" -N1 -n1 hostname) || die "srun did not run a job"
say "srun ran on $out"
tmp=$(mktemp -d)
timeout 120 sbatch -p "$PARTITION" --wait -o "$tmp/out" --wrap 'echo sbatch-ok' >/dev/null || die "sbatch --wait failed"
grep -q sbatch-ok "$tmp/out" || die "the sbatch job wrote no output"
rm -rf "$tmp"
say "sbatch --wait ran a job"
sinfo
