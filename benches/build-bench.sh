#!/bin/bash
# `strata build` against Docker 20.10's builder and buildah, side by side:
#   (a) cold build of a 6-step Dockerfile FROM busybox that COPYs a
#       ~300 MB, 9,000-file context and runs two RUNs
#   (b) the same rebuilt with nothing changed
#   (c) rebuilt after one context file changed
#   (d) a 100,000-file context of which the Dockerfile COPYs ten files,
#       against the same build with a ten-file context
# Medians of RUNS (default 5) with min and max, by hyperfine. Docker runs
# as a dockerd of the bench's own (inside `unshare --net`, its data under
# the work directory); buildah with its own storage (overlay). The whole
# script runs in a network namespace of its own (see below). BuildKit
# (DOCKER_BUILDKIT=1) needs the buildx plugin, which Debian's docker.io
# client here lacks: it is reported as skipped.
#
#   sudo benches/build-bench.sh [RUNS]     STRATA=path/to/strata to override
#   CASES=b (any of abcd, default all) runs only those cases; (b) and (c)
#   without (a) start from one untimed cold build of each engine.
set -eu

# strata's RUN steps use the default bridge, as Docker's builder does:
# the whole bench runs in a network namespace of its own, so the bridge,
# veths and nftables rules strata makes never touch the machine's.
if [ -z "${STRATA_BENCH_NETNS:-}" ]; then
    exec unshare --net env STRATA_BENCH_NETNS=1 "$0" "$@"
fi
ip link set lo up

RUNS=${1:-5}
CASES=${CASES:-abcd}
want() { case "$CASES" in *"$1"*) return 0 ;; *) return 1 ;; esac; }
HERE=$(cd "$(dirname "$0")/.." && pwd)
STRATA=${STRATA:-${CARGO_TARGET_DIR:-$HERE/target}/release/strata}
BUSYBOX=$(command -v busybox || true)
[ -x "$STRATA" ] || { echo "build first: cargo build --release (or set STRATA=)"; exit 1; }
[ -n "$BUSYBOX" ] || { echo "needs busybox (apt-get install busybox-static)"; exit 1; }
command -v hyperfine >/dev/null || { echo "needs hyperfine"; exit 1; }

WORK=$(mktemp -d /tmp/strata-build-bench.XXXXXX)
DOCKERD_PID=
cleanup() {
    if [ -n "$DOCKERD_PID" ]; then
        kill "$DOCKERD_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$DOCKERD_PID" 2>/dev/null || true
    fi
    "$STRATA" --root "$WORK/store" ps -aq 2>/dev/null | xargs -r "$STRATA" --root "$WORK/store" rm -f >/dev/null 2>&1 || true
    grep " $WORK" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# The base image: busybox and its applets.
TREE=$WORK/tree
mkdir -p "$TREE/bin" "$TREE/etc" "$TREE/tmp"
cp "$BUSYBOX" "$TREE/bin/busybox"
for a in sh ls cat echo du wc true; do ln -s busybox "$TREE/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$TREE/etc/passwd"
printf 'root:x:0:\n' >"$TREE/etc/group"
tar -C "$TREE" -cf "$WORK/bb.tar" .

# The contexts.
python3 - "$WORK" "$CASES" <<'PY'
import os, sys
work, cases = sys.argv[1], sys.argv[2]
def tree(root, count, size, dirs):
    for i in range(count):
        d = os.path.join(root, "files", "d%03d" % (i % dirs))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "f%06d" % i), "wb") as f:
            f.write(os.urandom(size))
big = os.path.join(work, "big")
tree(big, 9000, 300 * 1000 * 1000 // 9000, 90)
many = os.path.join(work, "many")
tree(many, 100000 if "d" in cases else 10, 64, 1000)
few = os.path.join(work, "few")
tree(few, 10, 64, 1)
PY
cat >"$WORK/big/Dockerfile" <<'EOF'
FROM bb
ENV APP=/app
COPY files/ /app/
RUN du -s /app > /size
RUN echo built > /built
CMD ["cat", "/built"]
EOF
# Ten files of each small context (in both at the same paths).
mkdir -p "$WORK/many/files/sel" "$WORK/few/files/sel"
for i in 0 1 2 3 4 5 6 7 8 9; do
    echo "selected $i" >"$WORK/many/files/sel/s$i"
    echo "selected $i" >"$WORK/few/files/sel/s$i"
done
for c in many few; do
    cat >"$WORK/$c/Dockerfile" <<'EOF'
FROM bb
COPY files/sel/ /sel/
RUN cat /sel/* > /all
CMD ["cat", "/all"]
EOF
done

S="$STRATA --root $WORK/store"
$S import "$WORK/bb.tar" bb:latest >/dev/null

# dockerd of our own.
DOCKER=
if command -v dockerd >/dev/null && command -v docker >/dev/null; then
    mkdir -p "$WORK/docker/data" "$WORK/docker/exec"
    unshare --net -- dockerd --data-root "$WORK/docker/data" --exec-root "$WORK/docker/exec" \
        -H "unix://$WORK/docker/sock" --pidfile "$WORK/docker/pid" \
        --bridge=none --iptables=false --ip6tables=false >"$WORK/docker/log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 1 150); do
        docker -H "unix://$WORK/docker/sock" version >/dev/null 2>&1 && break
        sleep 0.2
    done
    DOCKER="docker -H unix://$WORK/docker/sock"
    $DOCKER import "$WORK/bb.tar" bb:latest >/dev/null
fi
BUILDAH=
if command -v buildah >/dev/null && command -v skopeo >/dev/null; then
    BUILDAH="buildah --root $WORK/buildah/storage --runroot $WORK/buildah/run --storage-driver overlay"
    $DOCKER save -o "$WORK/bb-docker.tar" bb:latest
    skopeo copy --quiet "docker-archive:$WORK/bb-docker.tar" \
        "containers-storage:[overlay@$WORK/buildah/storage+$WORK/buildah/run]localhost/bb:latest"
    sed 's|^FROM bb|FROM localhost/bb|' "$WORK/big/Dockerfile" >"$WORK/Dockerfile.buildah"
fi

export DOCKER_BUILDKIT=0
RESULTS=$WORK/results
mkdir -p "$RESULTS"
# measure NAME PREPARE COMMAND
measure() {
    hyperfine --style none --runs "$RUNS" --prepare "$2" --export-json "$RESULTS/$1.json" "$3" >/dev/null 2>&1 ||
        { echo "$1: failed"; return 0; }
    python3 - "$RESULTS/$1.json" "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
t = sorted(r["times"])
print("%-28s median %8.3f s   min %8.3f   max %8.3f" % (sys.argv[2], r["median"], t[0], t[-1]))
PY
}
# (hyperfine's prepare runs /bin/sh, which has no $RANDOM: the time in
# nanoseconds makes each run's content new.)
change_one() { echo "date +%s%N > $WORK/big/files/d000/f000000"; }

if want a; then
echo "== (a) cold: 6 steps, COPY of 9,000 files (~300 MB), two RUNs"
measure strata-cold "$S builder prune -a -f >/dev/null; $S rmi -f app >/dev/null 2>&1; $S gc >/dev/null; sync" \
    "$S build -q -t app $WORK/big"
if [ -n "$DOCKER" ]; then
    measure docker-cold "$DOCKER rmi -f app >/dev/null 2>&1; $DOCKER image prune -f >/dev/null; sync" \
        "$DOCKER build -q -t app $WORK/big"
fi
if [ -n "$BUILDAH" ]; then
    measure buildah-cold "$BUILDAH rmi -f app >/dev/null 2>&1; $BUILDAH rmi --prune >/dev/null 2>&1; sync" \
        "unshare --net $BUILDAH bud --layers --isolation chroot -q -f $WORK/Dockerfile.buildah -t app $WORK/big"
fi
echo "   BuildKit (DOCKER_BUILDKIT=1): skipped, the docker client here has no buildx plugin"
elif want b || want c; then
    $S build -q -t app $WORK/big >/dev/null
    [ -n "$DOCKER" ] && $DOCKER build -q -t app $WORK/big >/dev/null
    [ -n "$BUILDAH" ] && unshare --net $BUILDAH bud --layers --isolation chroot -q -f $WORK/Dockerfile.buildah -t app $WORK/big >/dev/null
fi

if want b; then
echo "== (b) rebuilt, nothing changed"
measure strata-cached "true" "$S build -q -t app $WORK/big"
[ -n "$DOCKER" ] && measure docker-cached "true" "$DOCKER build -q -t app $WORK/big"
[ -n "$BUILDAH" ] && measure buildah-cached "true" \
    "unshare --net $BUILDAH bud --layers --isolation chroot -q -f $WORK/Dockerfile.buildah -t app $WORK/big"

fi

if want c; then
echo "== (c) rebuilt after one context file changed"
measure strata-one-changed "$(change_one)" "$S build -q -t app $WORK/big"
[ -n "$DOCKER" ] && measure docker-one-changed "$(change_one)" "$DOCKER build -q -t app $WORK/big"
[ -n "$BUILDAH" ] && measure buildah-one-changed "$(change_one)" \
    "unshare --net $BUILDAH bud --layers --isolation chroot -q -f $WORK/Dockerfile.buildah -t app $WORK/big"

fi

if want d; then
echo "== (d) COPY of ten files from a 100,000-file context vs a ten-file context (cold each time)"
measure strata-ten-of-100k "$S builder prune -a -f >/dev/null; $S rmi -f small >/dev/null 2>&1 || true" \
    "$S build -q -t small $WORK/many"
measure strata-ten-of-ten "$S builder prune -a -f >/dev/null; $S rmi -f small >/dev/null 2>&1 || true" \
    "$S build -q -t small $WORK/few"
if [ -n "$DOCKER" ]; then
    measure docker-ten-of-100k "$DOCKER rmi -f small >/dev/null 2>&1; $DOCKER image prune -f >/dev/null || true" \
        "$DOCKER build -q -t small $WORK/many"
    measure docker-ten-of-ten "$DOCKER rmi -f small >/dev/null 2>&1; $DOCKER image prune -f >/dev/null || true" \
        "$DOCKER build -q -t small $WORK/few"
fi

fi

echo "== ratios (medians)"
python3 - "$RESULTS" <<'PY'
import json, os, sys
d = sys.argv[1]
def med(n):
    p = os.path.join(d, n + ".json")
    return json.load(open(p))["results"][0]["median"] if os.path.exists(p) else None
for label, a, b in [
    ("(a) strata / docker, cold", "strata-cold", "docker-cold"),
    ("(b) strata / docker, cached", "strata-cached", "docker-cached"),
    ("(c) strata / docker, one file changed", "strata-one-changed", "docker-one-changed"),
    ("(a) strata / buildah, cold", "strata-cold", "buildah-cold"),
    ("(b) strata / buildah, cached", "strata-cached", "buildah-cached"),
    ("(c) strata / buildah, one file changed", "strata-one-changed", "buildah-one-changed"),
    ("(d) strata: 10 of 100,000 / 10 of 10", "strata-ten-of-100k", "strata-ten-of-ten"),
    ("(d) docker: 10 of 100,000 / 10 of 10", "docker-ten-of-100k", "docker-ten-of-ten"),
]:
    x, y = med(a), med(b)
    if x and y:
        print("%-42s %.3f" % (label, x / y))
PY
