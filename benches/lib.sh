# Shared helpers of the benchmark scripts (sourced, not run).
#
#   bench_stats            seconds on stdin, one per line -> "median min max"
#   bench_paired BASE FILE FILE's runs over BASE's, line by line -> "median min max"
#   bench_rotate N ROUND   the order of N variants in round ROUND (one further each round)
#   bench_scratch NAME     a fresh directory under BENCH_DIR (default /)
#   bench_in_own_netns ARGS...   re-runs the calling script inside a network
#                          namespace of its own (loopback up), once
#   bench_start_registry DIR     docker-registry on 127.0.0.1 -> $REGISTRY
#   bench_start_dockerd DIR      dockerd 20.10 (overlay2) with its own data
#                          root, exec root and socket -> $DOCKER, $DOCKERD_PID
#   bench_stop_dockerd     stops the dockerd started last
#   bench_drop_caches      sync and drop the page cache
#   bench_read_tree DIR    reads every file under DIR as the read cases
#                          do: `tar cf - . | cat`
#   bench_write_bytes CMD...     runs CMD, prints the bytes it (and its
#                          children) wrote to storage on fd 3
#
# Every process a helper starts is recorded in BENCH_PIDS and stopped by
# bench_cleanup, by pid.

BENCH_PIDS=()

bench_stats() {
    sort -g | awk '{a[NR] = $1}
        END { if (NR == 0) { print "n/a n/a n/a"; exit }
              m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
              printf "%.3f %.3f %.3f\n", m, a[1], a[NR] }'
}

# bench_paired BASE FILE: the median (with min and max) of FILE's runs
# each divided by BASE's run of the same round (line by line): what a
# variant costs against the limit read just before or after it, so drift
# of the machine that spans a round (the disk here reads the same cold
# tree in 1.7 s or 2.7 s from one minute to the next) cancels out.
bench_paired() {
    paste -d' ' "$1" "$2" | awk '$1 > 0 { print $2 / $1 }' | bench_stats
}

# bench_rotate N ROUND: the N variant indices in the order round ROUND
# (from 1) goes through them, starting one further each round, so no
# variant always follows the same one (a cold run after another's cold
# run; the cache dropped in between, the disk's own cache not).
bench_rotate() {
    local n=$1 r=$2 i
    for ((i = 0; i < n; i++)); do echo $(( (i + r - 1) % n )); done
}

# The scratch directory lives at the top of the filesystem by default: the
# disk here is ext4 without a journal, whose inode allocator skips inodes
# freed in the last minute by scanning them one by one; a directory in a
# block group where someone else just deleted a tree (/var/tmp, /tmp)
# makes every file creation slow. See BENCHMARKS.md.
bench_scratch() {
    local dir=${BENCH_DIR:-/}
    mktemp -d "${dir%/}/strata-$1.XXXXXX"
}

bench_in_own_netns() {
    if [ -z "${STRATA_BENCH_NETNS:-}" ]; then
        export STRATA_BENCH_NETNS=1
        exec unshare --net -- bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
    fi
}

bench_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

bench_start_registry() {
    local dir=$1 port
    port=$(bench_free_port)
    mkdir -p "$dir"
    cat >"$dir/config.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
http:
  addr: 127.0.0.1:$port
YML
    docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
    BENCH_PIDS+=($!)
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
        sleep 0.1
    done
    REGISTRY=127.0.0.1:$port
}

DOCKERD_PID=
bench_start_dockerd() {
    local dir=$1
    mkdir -p "$dir/data" "$dir/exec"
    dockerd --data-root "$dir/data" --exec-root "$dir/exec" -H "unix://$dir/sock" \
        --pidfile "$dir/pid" --storage-driver overlay2 --bridge=none --iptables=false \
        --ip6tables=false >"$dir/log" 2>&1 &
    DOCKERD_PID=$!
    BENCH_PIDS+=($!)
    DOCKER="docker -H unix://$dir/sock"
    for _ in $(seq 150); do
        $DOCKER version >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "dockerd did not start (see $dir/log)" >&2
    return 1
}

bench_stop_pid() {
    local pid=$1
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

bench_stop_dockerd() {
    [ -n "$DOCKERD_PID" ] && bench_stop_pid "$DOCKERD_PID"
    DOCKERD_PID=
}

bench_cleanup() {
    local pid
    for pid in "${BENCH_PIDS[@]}"; do bench_stop_pid "$pid"; done
    BENCH_PIDS=()
}

# bench_link_view VIEW OUT: a kernel mount's view (views/<hex>/, see
# docs/fs.md) rebuilt at OUT as plain directories, each regular file a
# hard link to the store file its redirect names (symlinks and empty
# files left out: they have no data): the store's placement, read
# without the overlay.
bench_link_view() {
    python3 - "$1" "$2" <<'PY'
import os, sys
view, out = sys.argv[1:]
meta, data = os.path.join(view, "meta"), os.path.join(view, "data")
for top, _, names in os.walk(meta):
    here = os.path.join(out, os.path.relpath(top, meta))
    os.makedirs(here, exist_ok=True)
    for name in names:
        try:
            target = os.getxattr(os.path.join(top, name), "trusted.overlay.redirect", follow_symlinks=False)
        except OSError:
            continue
        os.link(os.path.join(data, target.decode().lstrip("/")), os.path.join(here, name))
PY
}

bench_drop_caches() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
}

bench_read_tree() {
    (cd "$1" && tar cf - . | cat >/dev/null)
}

# Bytes written to storage by a process tree: write_bytes of /proc/PID/io
# counts the pages a process dirties, and a reaped child's counts go to
# its parent, so a parent that only waits sees its whole tree.
bench_write_bytes() {
    (
        rc=0
        "$@" || rc=$?
        awk '/^write_bytes/ {print $2}' "/proc/$BASHPID/io" >&3
        exit $rc
    )
}

bench_io_write_bytes() {   # PID -> write_bytes so far of that process (and its reaped children)
    awk '/^write_bytes/ {print $2}' "/proc/$1/io"
}
