#!/usr/bin/env bash
# A small multi-host cluster on this machine, made of Linux namespaces (root only).
#
#   launch/netns-cluster.sh up N [--latency US] [--rate GBIT] [--share DIR]...
#   launch/netns-cluster.sh run HOST COMMAND...    # run COMMAND on host HOST (node1..nodeN)
#   launch/netns-cluster.sh login COMMAND...       # run COMMAND on the login host
#   launch/netns-cluster.sh address HOST           # HOST's address (login: the login host)
#   launch/netns-cluster.sh link HOST up|down      # cut or restore HOST's network link
#   launch/netns-cluster.sh status                 # what `up` made, if anything
#   launch/netns-cluster.sh down                   # remove exactly what `up` made
#
# Each host nodeI has its own network namespace (address 10.213.0.I/24 on eth0), its own
# hostname (UTS namespace) and its own /tmp and /dev/shm (mount namespace), so host-local
# paths and MPI's shared-memory shortcuts differ between hosts as on a cluster. The
# hosts' links end on a bridge in a namespace of its own (the "switch"), so the traffic
# never leaves namespaces this script made and the host's firewall plays no part. Every
# host resolves node1..nodeN through its own /etc/hosts. The rest of the file system is
# shared, like a cluster's network file system; paths under /tmp are not, except the
# --share directories (default: this repository) and the directory `up` is called from,
# which are bind-mounted into every host's /tmp at the same path.
#
# --latency US and --rate GBIT shape every host's link (tc netem delay and tbf rate) on
# its switch end, where traffic leaves the switch for the host: a message between two
# hosts crosses one shaped queue, so US is the one-way latency (the round trip 2 x US)
# and GBIT each host's receiving bandwidth.
#
# As an MPI launcher: `mpiexec -launcher ssh -launcher-exec "$0 run" -hosts node1,node2`
# runs mpiexec's proxy on each host through `run` (hydra calls it as `run HOST CMD...`);
# run mpiexec itself on a host of the cluster (node1) so the proxies can reach it.
set -Eeuo pipefail

STATE=${MPIGD_CLUSTER_STATE:-/run/mpigd-cluster}
PREFIX=mpigd-
SUBNET=10.213.0
SWITCH=${PREFIX}switch
here=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "netns-cluster: $*" >&2; exit 2; }
need_root() { [[ $(id -u) == 0 ]] || die "needs root (namespaces, links and mounts)"; }

hosts() { [[ -f $STATE/hosts.list ]] && cat "$STATE/hosts.list"; }

require_tools() {
    local missing=()
    for tool in ip nsenter unshare tc; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    if ((${#missing[@]})); then
        command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
        echo "netns-cluster: installing iproute2 and util-linux (${missing[*]} missing)" >&2
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq iproute2 util-linux >/dev/null
    fi
}

shape() {  # shape LINK LATENCY_US RATE_GBIT (in the switch namespace)
    local link=$1 latency=$2 rate=$3 parent=root
    [[ -z $latency && -z $rate ]] && return 0
    if [[ -n $latency ]]; then
        ip netns exec "$SWITCH" tc qdisc add dev "$link" root handle 1: netem delay "${latency}us"
        parent="parent 1:"
    fi
    if [[ -n $rate ]]; then
        # shellcheck disable=SC2086
        ip netns exec "$SWITCH" tc qdisc add dev "$link" $parent handle 2: tbf \
            rate "${rate}gbit" burst 1mbit latency 50ms
    fi
}

attach() {  # attach NAMESPACE SUFFIX ADDRESS: a veth from the switch's bridge, as eth0
    local ns=$1 suffix=$2 address=$3
    ip netns add "$ns"
    echo "netns $ns" >>"$STATE/made"
    ip link add "${PREFIX}h$suffix" type veth peer name "${PREFIX}s$suffix"
    ip link set "${PREFIX}h$suffix" netns "$ns"
    ip link set "${PREFIX}s$suffix" netns "$SWITCH"
    ip netns exec "$SWITCH" ip link set "${PREFIX}s$suffix" master br0 up
    ip netns exec "$ns" ip link set "${PREFIX}h$suffix" name eth0
    ip netns exec "$ns" ip addr add "$address/24" dev eth0
    ip netns exec "$ns" ip link set eth0 up
    ip netns exec "$ns" ip link set lo up
}

up() {
    need_root
    local n=${1:-}; shift || true
    [[ $n =~ ^[0-9]+$ ]] && ((n >= 1 && n <= 200)) || die "up N: N hosts, 1 to 200"
    local latency="" rate="" shares=("$here" "$PWD")
    while (($#)); do
        case $1 in
            --latency) latency=$2; shift 2 ;;
            --rate) rate=$2; shift 2 ;;
            --share) shares+=("$(cd "$2" && pwd)"); shift 2 ;;
            *) die "unknown option $1" ;;
        esac
    done
    [[ -f $STATE/hosts.list ]] && die "a cluster is up already ($STATE); run down first"
    [[ -e $STATE ]] && die "$STATE exists but is not a cluster's state: choose another \
MPIGD_CLUSTER_STATE (down removes the folder)"
    [[ $STATE == /tmp/* ]] && die "MPIGD_CLUSTER_STATE must not be under /tmp (hosts have their own)"
    require_tools
    if [[ -n $latency ]] && ! modprobe -n sch_netem 2>/dev/null &&
        ! grep -qs "CONFIG_NET_SCH_NETEM=[ym]" <(zcat /proc/config.gz 2>/dev/null); then
        die "--latency needs the kernel's netem queueing discipline, which this kernel lacks \
(CONFIG_NET_SCH_NETEM); --rate (tbf) works without it"
    fi
    mkdir -p "$STATE"
    # Whatever ends `up` early (a failed command, or die) removes what it made.
    trap 'echo "netns-cluster: up failed; removing what it made" >&2; down >/dev/null' EXIT
    : >"$STATE/made"
    echo "$STATE" >>"$STATE/made"
    ip netns add "$SWITCH"
    echo "netns $SWITCH" >>"$STATE/made"
    ip netns exec "$SWITCH" ip link set lo up
    ip netns exec "$SWITCH" ip link add br0 type bridge
    ip netns exec "$SWITCH" ip link set br0 up
    attach "${PREFIX}login" l "$SUBNET.254"  # the login host, in this machine's processes
    {
        echo "127.0.0.1 localhost"
        echo "$SUBNET.254 login"
        for i in $(seq 1 "$n"); do echo "$SUBNET.$i node$i"; done
    } >"$STATE/hosts"
    : >"$STATE/hosts.list"
    for i in $(seq 1 "$n"); do
        local host=node$i ns=${PREFIX}node$i
        attach "$ns" "$i" "$SUBNET.$i"
        shape "${PREFIX}s$i" "$latency" "$rate"
        # Hostname, /tmp, /dev/shm and /etc/hosts of the host's own, held by an anchor
        # process whose namespaces `run` enters (through /proc, visible from any host).
        mkdir -p "$STATE/$host.orig-tmp"
        setsid nsenter --net="/run/netns/$ns" \
            unshare --uts --ipc --mount --pid --fork --propagation private \
            bash -c '
                set -e
                host=$1 orig=$2 hostsfile=$3 ready=$4
                shift 4
                hostname "$host"
                mount -t proc proc /proc           # this host`s own processes
                mount --bind /tmp "$orig"          # the shared /tmp, to lend paths from
                mount -t tmpfs -o mode=1777 tmpfs /tmp
                mount -t tmpfs -o mode=1777 tmpfs /dev/shm
                mount --bind "$hostsfile" /etc/hosts
                # A sysfs of the host`s own network, with the control groups under it
                # as on any node (slurmd needs them)
                mkdir -p "$orig.cgroup"
                mount --rbind /sys/fs/cgroup "$orig.cgroup"
                mount -t sysfs sysfs /sys
                mount --rbind "$orig.cgroup" /sys/fs/cgroup
                for path in "$@"; do
                    case $path in /tmp/*)
                        mkdir -p "$path"
                        mount --bind "$orig${path#/tmp}" "$path" ;;
                    esac
                done
                echo ready >"$ready"
                exec sleep infinity
            ' _ "$host" "$STATE/$host.orig-tmp" "$STATE/hosts" "$STATE/$host.ready" \
            "${shares[@]}" </dev/null >/dev/null 2>"$STATE/$host.log" &
        local outer=$!  # unshare; its child is the host's first process (pid 1 there)
        for _ in $(seq 100); do [[ -s $STATE/$host.ready ]] && break; sleep 0.05; done
        [[ -s $STATE/$host.ready ]] || die "$host did not start: $(cat "$STATE/$host.log")"
        pgrep -P "$outer" >"$STATE/$host.pid" || die "$host has no first process"
        echo "host $host" >>"$STATE/made"
        echo "$host" >>"$STATE/hosts.list"
    done
    trap - EXIT
    echo "netns-cluster: $n hosts up (node1..node$n, $SUBNET.1-$n)${latency:+, latency ${latency} us}${rate:+, rate ${rate} Gbit/s}"
}

run() {
    local host=${1:-}; shift || true
    [[ -n $host ]] && grep -qxF -- "$host" <(hosts) || die "no host '$host' (up: $(hosts | xargs))"
    (($#)) || die "run HOST COMMAND..."
    local anchor
    anchor=$(cat "$STATE/$host.pid")
    exec nsenter --target "$anchor" --net --uts --ipc --pid --mount --wd="$PWD" -- "$@"
}

login() {  # run a command on the login host, e.g. mpiexec
    [[ -f $STATE/hosts.list ]] || die "no cluster is up"
    (($#)) || die "login COMMAND..."
    exec ip netns exec "${PREFIX}login" unshare --uts bash -c \
        'hostname login; mount --bind "$0" /etc/hosts 2>/dev/null || true; cd "$1"; shift; exec "$@"' \
        "$STATE/hosts" "$PWD" "$@"
}

link() {
    need_root
    local host=${1:-} state=${2:-}
    [[ $state == up || $state == down ]] || die "link HOST up|down"
    grep -qxF -- "$host" <(hosts) || die "no host '$host'"
    ip netns exec "$SWITCH" ip link set "${PREFIX}s${host#node}" "$state"
}

down() {
    need_root
    [[ -f $STATE/made ]] || { echo "netns-cluster: nothing is up"; return 0; }
    local line
    tac "$STATE/made" | while read -r kind name; do
        case $kind in
            host)
                # Every process in the host's namespaces (its anchor last), then its files.
                pids=$(ip netns pids "${PREFIX}$name" 2>/dev/null || true)
                [[ -n $pids ]] && kill -9 $pids 2>/dev/null || true
                rm -rf "$STATE/$name".* ;;
            netns)
                pids=$(ip netns pids "$name" 2>/dev/null || true)
                [[ -n $pids ]] && kill -9 $pids 2>/dev/null || true
                ip netns delete "$name" 2>/dev/null || true ;;
        esac
    done
    rm -rf "$STATE"
    echo "netns-cluster: down"
}

status() {
    [[ -f $STATE/hosts.list ]] || { echo "netns-cluster: nothing is up"; return 0; }
    echo "netns-cluster: hosts $(hosts | xargs) (state in $STATE)"
}

command=${1:-}; shift || true
case $command in
    up) up "$@" ;;
    run) run "$@" ;;
    login) login "$@" ;;
    address) awk -v h="${1:-}" '$2 == h {print $1; found=1} END {exit !found}' "$STATE/hosts" ||
        die "no host '${1:-}'" ;;
    link) link "$@" ;;
    down) down ;;
    status) status ;;
    *) die "usage: $0 up N [--latency US] [--rate GBIT] [--share DIR] | run HOST CMD... | link HOST up|down | status | down" ;;
esac
