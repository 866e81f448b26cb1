#!/usr/bin/env bash
# Integration test of profiles/slurm against a live single-node SLURM started here (make test-slurm).
#
# As root on a Debian/Ubuntu machine: installs slurm-wlm and munge when missing, starts a private
# munged, slurmctld and slurmd (temporary config/state/ports; one node with four fake GPUs: gres with
# File=<symlinks to /dev/null>; partitions cpu (default) and gpu), then
#   1. runs the test config locally (profiles/local) as the reference,
#   2. runs the same config with `snakemake --profile profiles/slurm` + this test's overrides,
#      cancels one running per-shard SLURM job with scancel and lets Snakemake's retry finish it,
#   3. checks: every non-local job went through sbatch, GPU rules asked for a GPU and saw
#      CUDA_VISIBLE_DEVICES, the data-parallel training job (train.processes: 4 in the test config)
#      asked for --gpus=4, saw four devices and ran four ranks, no half-written shard is left, outputs
#      match the local run (tests/slurm/check_outputs.py),
# and always stops every daemon it started (by PID), also when a step fails.
# Not root, or no apt-get: prints one line and exits 0 (skipped).
#
# Environment: RHOSYM_SLURM_TEST_CONFIG (default tests/slurm/config.slurm.yaml), RHOSYM_SLURM_TEST_SNAKEFILE,
#   RHOSYM_SLURM_TEST_KEEP=1 keeps the temporary folder, RHOSYM_SLURM_TEST_PORT (default 16817; +1 for slurmd).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
T0=$(date +%s)
CONFIG=${RHOSYM_SLURM_TEST_CONFIG:-tests/slurm/config.slurm.yaml}
SNAKEFILE=${RHOSYM_SLURM_TEST_SNAKEFILE:-Snakefile}  # another workflow: to debug this harness
PORT=${RHOSYM_SLURM_TEST_PORT:-16817}
BIN="$ROOT/.venv/bin"
SMK="$BIN/snakemake"
PY="$BIN/python"
export PATH="$BIN:$PATH"

say() { echo "test-slurm: $*"; }
if [ "$(id -u)" -ne 0 ]; then
    say "SKIP: not root (it installs slurm-wlm/munge and starts slurmctld/slurmd as root)"; exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    say "SKIP: apt-get is unavailable (needs a Debian/Ubuntu machine to install slurm-wlm and munge)"; exit 0
fi

# ---------------------------------------------------------------- install (only what is missing)
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
    || ! command -v sbatch >/dev/null; then
    say "installing slurm-wlm and munge with apt-get"
    made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then  # keep the packages from starting system daemons
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
    [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

# ---------------------------------------------------------------- private cluster in a temp folder
WORK=$(mktemp -d /tmp/rhosym-slurm.XXXXXX)
mkdir -p "$WORK"/{munge,state,spool,run,log,bin}
PIDS=()      # every daemon / background process this script started, in start order
SMK_PID=""

cleanup() {
    local rc=$?
    set +e
    # Snakemake first: SIGTERM stops new submissions; cancelling the jobs of our private cluster
    # (only this test's jobs are there) makes it return; SIGKILL after 20 s.
    if [ -n "$SMK_PID" ] && kill -0 "$SMK_PID" 2>/dev/null; then kill -TERM "$SMK_PID"; fi
    if [ -n "${SLURM_CONF:-}" ] && command -v scancel >/dev/null && [ "${#PIDS[@]}" -gt 1 ]; then
        scancel --quiet --user="$(id -un)" 2>/dev/null
    fi
    if [ -n "$SMK_PID" ]; then
        for _ in $(seq 1 100); do kill -0 "$SMK_PID" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$SMK_PID" 2>/dev/null && kill -KILL "$SMK_PID"
        wait "$SMK_PID" 2>/dev/null
    fi
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        local pid=${PIDS[$i]}
        kill -0 "$pid" 2>/dev/null || continue
        kill -TERM "$pid"
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        wait "$pid" 2>/dev/null
    done
    if [ "$rc" -ne 0 ]; then
        say "FAILED (exit $rc) after $(($(date +%s) - T0)) s; daemon logs:"
        tail -n 20 "$WORK"/log/*.log 2>/dev/null | sed 's/^/    /'
    fi
    if [ "${RHOSYM_SLURM_TEST_KEEP:-0}" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

HOST=$(hostname -s)
NCPU=$(nproc)
MEM_MB=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
# The fake node advertises at least 64 GB so that the profile's memory requests (e.g. 32 GB for
# training) can be scheduled here; nothing enforces memory (no cgroups), only scheduling sees it.
NODE_MEM_MB=$((MEM_MB > 65536 ? MEM_MB : 65536))

# munge: own key, socket, pid file
MUNGE_SOCK="$WORK/munge/munge.sock"
dd if=/dev/urandom of="$WORK/munge/munge.key" bs=1 count=1024 status=none
chmod 0400 "$WORK/munge/munge.key"
munged --foreground --force --key-file="$WORK/munge/munge.key" --socket="$MUNGE_SOCK" \
    --pid-file="$WORK/run/munged.pid" --log-file="$WORK/log/munged.log" --seed-file="$WORK/munge/seed" \
    >"$WORK/log/munged.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 50); do [ -S "$MUNGE_SOCK" ] && break; sleep 0.1; done
[ -S "$MUNGE_SOCK" ] || { say "munged did not start"; exit 1; }

# Four fake GPUs: symlinks to /dev/null (slurmd wants character devices; nothing opens them, SLURM only
# hands out their indices in CUDA_VISIBLE_DEVICES). The data-parallel training job of the test config
# (train.processes: 4) asks for all four.
NGPU=4
mkdir -p "$WORK/dev"
for i in $(seq 0 $((NGPU - 1))); do ln -s /dev/null "$WORK/dev/fakegpu$i"; done

# Records the environment of every SLURM task (the GPU check reads CUDA_VISIBLE_DEVICES here).
cat >"$WORK/task_prolog.sh" <<EOF
#!/bin/sh
echo "job=\$SLURM_JOB_ID step=\${SLURM_STEP_ID:-batch} partition=\$SLURM_JOB_PARTITION CUDA_VISIBLE_DEVICES=\${CUDA_VISIBLE_DEVICES-unset} SLURM_JOB_GPUS=\${SLURM_JOB_GPUS-}" >>"$WORK/job-env.log"
EOF
chmod +x "$WORK/task_prolog.sh"

export SLURM_CONF="$WORK/slurm.conf"
cat >"$SLURM_CONF" <<EOF
ClusterName=rhosymtest
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCK
CredType=cred/munge
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/run/slurmctld.pid
SlurmdPidFile=$WORK/run/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
TaskProlog=$WORK/task_prolog.sh
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=900
KillWait=5
InactiveLimit=0
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$NCPU RealMemory=$NODE_MEM_MB Gres=gpu:$NGPU State=UNKNOWN
PartitionName=cpu Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$HOST MaxTime=INFINITE State=UP
EOF
cat >"$WORK/gres.conf" <<EOF
AutoDetect=off
NodeName=$HOST Name=gpu File=$WORK/dev/fakegpu[0-$((NGPU - 1))]
EOF

slurmctld -D -c -f "$SLURM_CONF" >"$WORK/log/slurmctld.out" 2>&1 &
PIDS+=($!)
slurmd -D -f "$SLURM_CONF" >"$WORK/log/slurmd.out" 2>&1 &
PIDS+=($!)
say "started munged, slurmctld, slurmd (PIDs ${PIDS[*]}); node $HOST: $NCPU CPUs, ${NODE_MEM_MB} MB, gpu:$NGPU (fake)"
state=""
for _ in $(seq 1 120); do
    state=$(sinfo -h -N -n "$HOST" -o '%t' 2>/dev/null | head -n1 || true)
    case "$state" in idle*|mix*) break ;; esac
    sleep 0.5
done
case "$state" in idle*|mix*) ;; *) say "node did not become idle within 60 s (state '$state')"; exit 1 ;; esac
sinfo | sed 's/^/    /'

# sbatch wrapper: logs every submission (the GPU check greps it), then calls the real sbatch.
REAL_SBATCH=$(command -v sbatch)
cat >"$WORK/bin/sbatch" <<EOF
#!/bin/sh
printf '%s\n' "sbatch \$*" >>"$WORK/sbatch-calls.log"
exec "$REAL_SBATCH" "\$@"
EOF
chmod +x "$WORK/bin/sbatch"
# srun wrapper: the job-step plugin removes every SLURM_* variable, SLURM_CONF included, before it
# calls srun inside the job; with the config outside /etc/slurm, srun needs it back.
REAL_SRUN=$(command -v srun)
cat >"$WORK/bin/srun" <<EOF
#!/bin/sh
SLURM_CONF="$SLURM_CONF" exec "$REAL_SRUN" "\$@"
EOF
chmod +x "$WORK/bin/srun"

# ---------------------------------------------------------------- 1. reference: a local run
LOCAL="$WORK/results-local"
SLURM_RES="$WORK/results-slurm"
say "local reference run of $CONFIG"
t=$(date +%s)
"$SMK" -s "$SNAKEFILE" --profile profiles/local --cores "$NCPU" --configfile "$CONFIG" --config "results=$LOCAL" \
    --quiet rules all >"$WORK/local-run.log" 2>&1 || { tail -n 40 "$WORK/local-run.log"; exit 1; }
say "local run done in $(($(date +%s) - t)) s"

# ---------------------------------------------------------------- 2. the SLURM run, with one scancel
say "SLURM run of $CONFIG with --profile profiles/slurm"
t=$(date +%s)
PATH="$WORK/bin:$PATH" RHOSYM_PARTITION=cpu RHOSYM_GPU_PARTITION=gpu \
    "$SMK" -s "$SNAKEFILE" --profile profiles/slurm --configfile "$CONFIG" --config "results=$SLURM_RES" \
    --slurm-status-command squeue --slurm-no-account --slurm-init-seconds-before-status-checks 2 \
    --slurm-logdir "$WORK/slurm_logs" --slurm-keep-successful-logs --cores "$NCPU" \
    --latency-wait 5 --seconds-between-status-checks 2 all >"$WORK/slurm-run.log" 2>&1 &
SMK_PID=$!
PIDS+=("$SMK_PID")

# Cancel the first per-shard job (comment rule_<rule>... or rule_<group>_<rules>) that has been
# running for 3 s or more: it is then mid-way through its shards (a group job takes ~10 s here).
SHARD_RULES='ingest|density|sample|xrd|graphs'
killed=""
while kill -0 "$SMK_PID" 2>/dev/null; do
    line=$(squeue -h -t RUNNING -o '%i %M %k' 2>/dev/null | grep -E " rule_($SHARD_RULES)" \
        | awk '{n = split($2, t, ":"); s = t[n] + 60 * t[n - 1]; if (s >= 3) {print; exit}}' || true)
    if [ -n "$line" ]; then
        killed=${line%% *}
        scancel "$killed" && say "scancel $killed (jobid, elapsed, comment: $line)"
        break
    fi
    sleep 0.3
done
rc=0
wait "$SMK_PID" || rc=$?
SMK_PID=""
SLURM_SECONDS=$(($(date +%s) - t))
if [ "$rc" -ne 0 ]; then
    say "snakemake --profile profiles/slurm failed (exit $rc):"; tail -n 60 "$WORK/slurm-run.log"; exit 1
fi
say "SLURM run done in $SLURM_SECONDS s"

# ---------------------------------------------------------------- 3. checks
fail=0
bad() { say "FAIL: $*"; fail=1; }
LOG="$WORK/slurm-run.log"
CALLS="$WORK/sbatch-calls.log"
touch "$CALLS" "$WORK/job-env.log"
n_jobs=$(grep -c 'has been submitted with SLURM jobid' "$LOG" || true)
n_sbatch=$(grep -c '^sbatch ' "$CALLS" || true)
[ "$n_jobs" -gt 0 ] || bad "no job was submitted to SLURM"
[ "$n_jobs" = "$n_sbatch" ] || bad "$n_jobs submissions in the Snakemake log but $n_sbatch sbatch calls"

# every non-local rule ran as a SLURM job: the rules named in sbatch comments cover every
# 'rule X:' job Snakemake started (localrules print 'localrule X:').
"$PY" - "$LOG" "$CALLS" <<'EOF' || fail=1
import re, sys
log, calls = (open(p).read() for p in sys.argv[1:])
# non-local jobs, members of group jobs (indented) included
started = set(re.findall(r"^\s*rule (\w+):", log, re.M))
# the comment is rule_<rule>[_wildcards_...] or, for a group job, rule_<group>_<member rules>
submitted = set(re.findall(r"--comment '?rule_(\w+?)(?:_wildcards_\S*)?'?(?: |$)", calls, re.M))
local = sorted(set(re.findall(r"^\s*localrule (\w+):", log, re.M)))
missing = sorted(r for r in started if not any(s == r or s.endswith("_" + r) for s in submitted))
print(f"test-slurm: rules run as SLURM jobs: {' '.join(sorted(submitted))}; local rules: {' '.join(local)}")
if missing:
    print(f"test-slurm: FAIL: rules that ran but were not submitted to SLURM: {missing}")
    sys.exit(1)
EOF

# GPU rules: submitted with a GPU request, and the job saw CUDA_VISIBLE_DEVICES.
GPU_LINE=$(grep -E -- '--gpus=|--gres=gpu' "$CALLS" | head -n1 || true)
if [ -z "$GPU_LINE" ]; then
    bad "no sbatch call asked for a GPU (--gpus / --gres=gpu)"
else
    gpu_job_ids=$(grep -E 'has been submitted with SLURM jobid' "$LOG" | sed -E 's/.*SLURM jobid ([0-9_]+).*/\1/' || true)
    seen=0
    for id in $gpu_job_ids; do
        if scontrol show job "$id" 2>/dev/null | grep -qE 'TresPerJob=.*gpu|TresPerNode=.*gpu'; then
            grep -qE "^job=$id .*CUDA_VISIBLE_DEVICES=[0-9]" "$WORK/job-env.log" && seen=$((seen + 1)) \
                || bad "GPU job $id ran without CUDA_VISIBLE_DEVICES: $(grep "^job=$id " "$WORK/job-env.log" | head -n1)"
        fi
    done
    [ "$seen" -gt 0 ] || bad "no GPU job found in scontrol with CUDA_VISIBLE_DEVICES set"
    say "GPU jobs that saw CUDA_VISIBLE_DEVICES: $seen"
fi

# Data-parallel training: the test config sets train.processes: 4 for DDP_MODEL. Its train_model job asks
# for one GPU per rank (--gpus=4), the other training jobs for one (--gpus=1); the job saw four devices
# and its log shows four ranks (on this CPU-only node: gloo).
DDP_MODEL=xrd_fcn
DDP_LINE=$(grep -E -- "--comment '?rule_train_model_wildcards_\S*${DDP_MODEL}" "$CALLS" | head -n1 || true)
if [ -z "$DDP_LINE" ]; then
    bad "no train_model job of $DDP_MODEL was submitted"
else
    echo "$DDP_LINE" | grep -qE -- '--gpus=4( |$)' \
        || bad "train_model of $DDP_MODEL (train.processes: 4) was not submitted with --gpus=4: $DDP_LINE"
    ddp_ids=""
    for id in $(grep -E 'has been submitted with SLURM jobid' "$LOG" | sed -E 's/.*SLURM jobid ([0-9_]+).*/\1/' || true); do
        scontrol show job "$id" 2>/dev/null | grep -qE "Comment=rule_train_model_wildcards_\S*${DDP_MODEL}" \
            && ddp_ids="$ddp_ids $id"
    done
    ddp_seen=0
    for id in $ddp_ids; do
        scontrol show job "$id" | grep -qE 'TresPerJob=.*gpu:4' || bad "job $id: no gpu:4 in scontrol"
        grep -qE "^job=$id .*CUDA_VISIBLE_DEVICES=[0-9]+,[0-9]+,[0-9]+,[0-9]+( |$)" "$WORK/job-env.log" \
            && ddp_seen=$((ddp_seen + 1))
    done
    [ "$ddp_seen" -gt 0 ] || bad "the $DDP_MODEL training job did not see four CUDA_VISIBLE_DEVICES (jobs:$ddp_ids)"
fi
grep -E -- "--comment '?rule_train_model_wildcards_" "$CALLS" | grep -v -- "$DDP_MODEL" | grep -vqE -- '--gpus=1( |$)' \
    && bad "a single-process train_model job was not submitted with --gpus=1"
grep -rqs "data-parallel: 4 ranks" "$SLURM_RES/logs/train_model" \
    || bad "no train_model log under $SLURM_RES/logs/train_model shows 'data-parallel: 4 ranks'"

# the cancelled job was retried and the run completed
if [ -z "$killed" ]; then
    bad "no per-shard job was seen running, nothing was cancelled"
else
    squeue -h --states=all -j "$killed" -o '%T' 2>/dev/null | grep -q CANCELLED || bad "job $killed is not CANCELLED"
    grep -q "Trying to restart job" "$LOG" || bad "no retry after scancel $killed in the Snakemake log"
fi

# outputs: no half-written shard, every store readable, same files and bytes as the local run
"$PY" tests/slurm/check_outputs.py "$SLURM_RES" "$LOCAL" || fail=1

# ---------------------------------------------------------------- summary (the lead quotes these)
say "SLURM jobs submitted: $n_jobs (sbatch calls: $n_sbatch); cancelled and retried: ${killed:-none}"
say "GPU-rule submission: $(echo "$GPU_LINE" | sed -E 's/ --wrap=.*//')"
say "data-parallel training submission: $(echo "${DDP_LINE:-none}" | sed -E 's/ --wrap=.*//')"
say "elapsed: $(($(date +%s) - T0)) s in all (SLURM run $SLURM_SECONDS s)"
if [ "$fail" -ne 0 ]; then
    say "FAILED"; tail -n 30 "$LOG" | sed 's/^/    /'; exit 1
fi
say "PASSED"
