#!/usr/bin/env bash
# Networking benchmark (issue 11), inside a network namespace this script
# makes (it re-executes itself under `unshare --net --mount`), so nothing
# touches the machine's interfaces or rules and no packet leaves it.
#
#   1. `run --rm IMAGE true`: strata on the default bridge vs strata with
#      --network none, Docker 20.10 and podman with their default networks;
#   2. TCP throughput host -> container through -p (iperf3);
#   3. short HTTP requests per second through -p to busybox httpd (ab).
# Docker forwards 127.0.0.1 through docker-proxy (a userland proxy, as
# strata); podman (rootful, runc, netavark) with iptables DNAT in the
# kernel and no userland proxy.
#
# RUNS (default 7) runs each; medians with min and max. Needs root,
# busybox-static, iperf3, apache2-utils (ab); the Docker and podman parts
# say why they are skipped when their tools are missing or fail here.
# STRATA=path uses that binary instead of a release build.
# Usage: [RUNS=N] [STRATA=target/debug/strata] benches/net-bench.sh
set -euo pipefail
RUNS=${RUNS:-7}
if [ -z "${NET_BENCH_INSIDE:-}" ]; then
    exec env NET_BENCH_INSIDE=1 unshare --net --mount --propagation private "$0" "$@"
fi
here=$(cd "$(dirname "$0")/.." && pwd)
if [ -n "${STRATA:-}" ]; then
    strata=$(realpath "$STRATA")
else
    cargo build --release -q --manifest-path "$here/Cargo.toml" -p strata
    strata="$here/target/release/strata"
fi
work=$(mktemp -d /tmp/net-bench.XXXXXX)
cleanup() {
    "$strata" --root "$work/root" rm -f web >/dev/null 2>&1 || true
    [ -n "${podman_ok:-}" ] && podman --root "$work/podman" --runroot "$work/podman-run" rm -f web >/dev/null 2>&1 || true
    [ -f "$work/dockerd.pid" ] && kill "$(cat "$work/dockerd.pid")" 2>/dev/null || true
    sleep 1; rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT
ip link set lo up
mkdir -p /run && mount -t tmpfs none /run
S() { "$strata" --root "$work/root" "$@"; }

# An image: static busybox and iperf3 (with its libraries).
img="$work/img"; mkdir -p "$img/bin" "$img/etc" "$img/www" "$img/tmp"; chmod 1777 "$img/tmp"   # iperf3 keeps its buffer in a file in /tmp
cp "$(command -v busybox)" "$img/bin/busybox"
for a in sh true cat sleep; do ln -s busybox "$img/bin/$a"; done
echo hello > "$img/www/index.html"
if command -v iperf3 >/dev/null; then
    cp "$(command -v iperf3)" "$img/bin/iperf3"
    for lib in $(ldd "$(command -v iperf3)" | grep -o '/[^ ]*'); do
        mkdir -p "$img$(dirname "$lib")"; cp -L "$lib" "$img$lib"
    done
fi
tar -C "$img" -cf "$work/img.tar" .
S import "$work/img.tar" bench:latest >/dev/null

stats() { sort -n | awk '{a[NR]=$1} END {printf "median %.1f min %.1f max %.1f (n=%d)\n", a[int((NR+1)/2)], a[1], a[NR], NR}'; }
time_runs() { # label, command...
    local label=$1; shift
    "$@" >/dev/null 2>&1 || true   # warm-up
    for _ in $(seq "$RUNS"); do
        local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N)
        echo "scale=1; ($e - $s) / 1000000" | bc
    done | stats | sed "s/^/$label: ms /"
}

echo "== run --rm IMAGE true"
time_runs "strata --network none" S run --rm --network none bench true
time_runs "strata default bridge" S run --rm bench true
if ! command -v dockerd >/dev/null; then
    echo "docker: skipped (no dockerd)"
else
    dockerd --data-root "$work/docker" --exec-root "$work/docker-exec" -H "unix://$work/docker.sock" \
        --pidfile "$work/dockerd.pid" >"$work/dockerd.log" 2>&1 &
    for _ in $(seq 100); do [ -S "$work/docker.sock" ] && break; sleep 0.2; done
    export DOCKER_HOST="unix://$work/docker.sock"
    docker import "$work/img.tar" bench:latest >/dev/null
    time_runs "docker default bridge" docker run --rm bench true
fi
P() { podman --root "$work/podman" --runroot "$work/podman-run" "$@"; }
if ! command -v podman >/dev/null; then
    echo "podman: skipped (not installed)"
elif ! why=$(P import "$work/img.tar" bench:latest 2>&1 >/dev/null && P run --rm bench true 2>&1); then
    echo "podman: skipped (cannot run here: $(tail -1 <<<"$why"))"
else
    podman_ok=1
    time_runs "podman default network" P run --rm bench true
fi

# RUNS measurements of a command that prints one number.
measure_runs() { # label, unit, command...
    local label=$1 unit=$2; shift 2
    for _ in $(seq "$RUNS"); do "$@"; done | stats | sed "s|^|$label: $unit |"
}
iperf() { # the server takes one test at a time: wait until the last one ended
    local out
    for _ in $(seq 20); do
        out=$(iperf3 -c 127.0.0.1 -p "$1" -t 3 -f m 2>&1) && break
        sleep 0.5
    done
    awk '/receiver/ {print $(NF-2)}' <<<"$out"
}
ab_rps() { ab -q -n 2000 -c 16 "$1" | awk '/Requests per second/ {print $4}'; }

S run -d --name web -p 127.0.0.1:5201:5201 -p 127.0.0.1:8080:80 bench \
    sh -c 'busybox httpd -p 80 -h /www; exec iperf3 -s' >/dev/null
if [ -n "${DOCKER_HOST:-}" ]; then
    docker run -d --name web -p 127.0.0.1:5202:5201 -p 127.0.0.1:8081:80 bench \
        sh -c 'busybox httpd -p 80 -h /www; exec iperf3 -s' >/dev/null
fi
if [ -n "${podman_ok:-}" ]; then
    P run -d --name web -p 127.0.0.1:5203:5201 -p 127.0.0.1:8082:80 bench \
        sh -c 'busybox httpd -p 80 -h /www; exec iperf3 -s' >/dev/null
fi
sleep 1
echo "== TCP throughput through -p (iperf3, 3 s, Mbit/s)"
measure_runs "strata" "Mbit/s" iperf 5201
[ -n "${DOCKER_HOST:-}" ] && measure_runs "docker" "Mbit/s" iperf 5202
[ -n "${podman_ok:-}" ] && measure_runs "podman" "Mbit/s" iperf 5203

echo "== HTTP requests per second through -p (ab -n 2000 -c 16)"
measure_runs "strata" "req/s" ab_rps http://127.0.0.1:8080/
if [ -n "${DOCKER_HOST:-}" ]; then
    measure_runs "docker" "req/s" ab_rps http://127.0.0.1:8081/
    docker rm -f web >/dev/null
fi
if [ -n "${podman_ok:-}" ]; then
    measure_runs "podman" "req/s" ab_rps http://127.0.0.1:8082/
    P rm -f web >/dev/null
fi
