#!/bin/sh
# containerd 1.6 with its overlayfs snapshotter against containerd with
# strata's (`strata snapshotter`), side by side in one run, and strata's
# own pull + run. Medians of RUNS (default 5); every run starts from empty
# stores (a fresh containerd root and strata store), so every pull
# downloads.
#
#   pull-to-run   time from `ctr images pull` (or the CRI-style pull) to
#                 the first output of `ctr run --rm IMAGE ID echo`, for the
#                 benchmark image (busybox + FILES files, ~SIZE_MB MB)
#   disk          bytes the snapshotter keeps for three images that share
#                 most files (containerd's content store, the same
#                 compressed blobs in every mode, reported apart)
#   mostly-stored bytes downloaded and pull-to-run time for a fourth image
#                 whose files are mostly those of the first, pulled after it
#
# Modes: overlayfs (ctr pull), strata (ctr pull: containerd downloads and
# applies into strata's mount), strata-cri (a CRI-style pull: containerd's
# client with the CRI's layer labels, so strata fetches layers itself),
# strata-native (strata pull + strata run --rm).
#
# Needs root, containerd, ctr, runc, docker-registry, busybox (static), go
# with golang-github-containerd-containerd-dev (for the CRI-style pull,
# built offline; the mode is skipped without it).
#
#   benches/snapshotter-bench.sh [RUNS]     STRATA=path/to/strata to override,
#                                           RESULTS=FILE to keep every round's figures,
#                                           BENCH_DIR (default /) for the scratch directory
set -eu

RUNS=${1:-5}
FILES=${FILES:-2000}
HERE=$(cd "$(dirname "$0")/.." && pwd)
STRATA=${STRATA:-${CARGO_TARGET_DIR:-$HERE/target}/release/strata}
[ -x "$STRATA" ] || { echo "build first: cargo build --release (or set STRATA=)"; exit 1; }
for t in containerd ctr runc docker-registry busybox python3; do
    command -v $t >/dev/null || { echo "needs $t (tools/install-deps.sh)"; exit 1; }
done

WORK=$(mktemp -d "${BENCH_DIR:-}/snapbench.XXXXXX")
C= SD=
CONTAINERD_PID= SNAP_PID= REG_PID=
stop_pid() { [ -n "$1" ] && kill "$1" 2>/dev/null && while kill -0 "$1" 2>/dev/null; do sleep 0.05; done; true; }
detach_under() { grep " $1" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true; }
stop_all() {
    [ -n "$C" ] || return 0
    stop_pid "$CONTAINERD_PID"; CONTAINERD_PID=
    # Shims of this containerd (they name its socket).
    for p in $(grep -l -a "$C/c.sock" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do kill -9 "$p" 2>/dev/null || true; done
    stop_pid "$SNAP_PID"; SNAP_PID=
    detach_under "$C"
    detach_under "$SD"
}
cleanup() {
    stop_all
    stop_pid "$REG_PID"
    rm -rf "$WORK" $STARTS
}
trap cleanup EXIT INT TERM

# The registry, on loopback.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG=127.0.0.1:$PORT
cat >"$WORK/registry.yml" <<EOF2
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $WORK/registry}}
http: {addr: $REG}
EOF2
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
REG_PID=$!
until python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT))" 2>/dev/null; do sleep 0.1; done

# The images: one layer each (strata import), pushed by strata.
python3 - "$WORK/trees" "$FILES" "$(command -v busybox)" <<'PY'
import os, random, shutil, sys
out, count, busybox = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def tree(name, salt, extra):
    root = os.path.join(out, name)
    os.makedirs(os.path.join(root, "bin"))
    os.makedirs(os.path.join(root, "etc"))
    shutil.copy(busybox, os.path.join(root, "bin/busybox"))
    os.symlink("busybox", os.path.join(root, "bin/sh"))
    rng = random.Random(1)
    for i in range(count):
        d = os.path.join(root, "data", "d%02d" % (i % 50))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "f%05d" % i), "wb") as f:
            f.write(rng.randbytes(rng.choice([512, 4096, 16384, 65536])))
    rng = random.Random(salt)
    for i in range(extra):
        with open(os.path.join(root, "etc", "own%03d" % i), "wb") as f:
            f.write(rng.randbytes(16384))
    with open(os.path.join(root, "etc/motd"), "w") as f:
        f.write("image %s\n" % name)
tree("bench", 1, 10)
for i, n in enumerate(("over1", "over2", "over3")):
    tree(n, 10 + i, 40)
tree("mostly", 99, 40)
PY
IMPORT_ROOT=$WORK/import
for n in bench over1 over2 over3 mostly; do
    tar -C "$WORK/trees/$n" -cf "$WORK/$n.tar" .
    "$STRATA" --root "$IMPORT_ROOT" import "$WORK/$n.tar" "$REG/bench/$n:t" >/dev/null
    "$STRATA" --root "$IMPORT_ROOT" push -q "$REG/bench/$n:t" >/dev/null
done
SIZE=$(du -sm "$WORK/trees/bench" | cut -f1)
rm -rf "$WORK/trees" "$IMPORT_ROOT" "$WORK"/*.tar

# The CRI-style pull (containerd's client with the CRI's layer labels).
CRI_PULL=
if command -v go >/dev/null && [ -d /usr/share/gocode/src/github.com/containerd/containerd/pkg/snapshotters ]; then
    (cd "$HERE/tests/snapshotter-cri-pull" && GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off GOFLAGS= \
        go build -o "$WORK/cri-pull" .) && CRI_PULL=$WORK/cri-pull
fi

# Every start gets fresh directories at the top of the filesystem, and
# the old ones are removed only at the end: on this ext4 without a
# journal, files created soon after thousands were deleted nearby cost a
# scan of those (ext4's recently_deleted(), see BENCHMARKS.md). Under
# one common directory, a start paid for what the one before it deleted
# (strata's plain-path Commit removes each applied upper directory; the
# setup removes its trees), and the next mode, whichever it was, ran
# slow; ext4 places each new top-level directory in a block group of its
# own choosing, away from those deletions.
STARTS=
start_all() {
    C=$(mktemp -d "${BENCH_DIR:-}/snapbench.c.XXXXXX")
    SD=$(mktemp -d "${BENCH_DIR:-}/snapbench.s.XXXXXX")
    STARTS="$STARTS $C $SD"
    "$STRATA" --root "$SD/root" snapshotter --address "$SD/s.sock" 2>>"$WORK/snapshotter.log" &
    SNAP_PID=$!
    cat >"$C/config.toml" <<EOF2
version = 2
root = "$C/root"
state = "$C/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$C/c.sock"
[ttrpc]
  address = "$C/c.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$C/opt"
[proxy_plugins]
  [proxy_plugins.strata]
    type = "snapshot"
    address = "$SD/s.sock"
EOF2
    until [ -S "$SD/s.sock" ]; do sleep 0.05; done
    containerd --config "$C/config.toml" >>"$WORK/containerd.log" 2>&1 &
    CONTAINERD_PID=$!
    until ctr --address "$C/c.sock" version >/dev/null 2>&1; do sleep 0.05; done
}
CTR() { ctr --address "$C/c.sock" --namespace bench "$@"; }
now() { date +%s.%N; }
N=0
# pull_run MODE IMAGE: seconds from the pull to the run's first output,
# then the pull's and the run's shares.
pull_run() {
    mode=$1 image=$REG/bench/$2:t
    N=$((N + 1))
    t0=$(now)
    case $mode in
        overlayfs) CTR images pull --plain-http --snapshotter overlayfs "$image" >/dev/null ;;
        strata) CTR images pull --plain-http --snapshotter strata "$image" >/dev/null ;;
        strata-cri) "$CRI_PULL" "$C/c.sock" bench strata "$image" >/dev/null ;;
        strata-native) "$STRATA" --root "$SD/root" pull -q "$image" >/dev/null ;;
    esac
    tp=$(now)
    case $mode in
        strata-native) first=$("$STRATA" --root "$SD/root" run --rm --network none "$image" /bin/busybox echo ready | head -1) ;;
        *) sn=$mode; [ "$mode" = strata-cri ] && sn=strata
           first=$(CTR run --rm --snapshotter "$sn" "$image" "run$N" /bin/busybox echo ready | head -1) ;;
    esac
    t1=$(now)
    [ "$first" = ready ] || { echo "$mode $image: no output" >&2; exit 1; }
    echo "$(echo "$t1 - $t0" | bc) $(echo "$tp - $t0" | bc) $(echo "$t1 - $tp" | bc)"
}
# Bytes of blobs containerd holds, and strata fetched itself.
content_bytes() { CTR content ls 2>/dev/null | awk 'NR>1 {print $2}' | python3 -c '
import sys
u = {"B":1,"KiB":1024,"MiB":1024**2,"GiB":1024**3,"kB":1000,"MB":1000**2,"GB":1000**3}
t = 0
for w in sys.stdin.read().split():
    n = w.rstrip("KMGiBkb"); unit = w[len(n):] or "B"
    try: t += float(n) * u.get(unit, 1)
    except ValueError: pass
print(int(t))'; }
strata_fetched() { python3 -c "
import sqlite3,sys
try:
    c = sqlite3.connect('file:$SD/root/strata.db?mode=ro', uri=True)
    print(c.execute('SELECT COALESCE(SUM(size),0) FROM layer_blobs').fetchone()[0])
except Exception: print(0)"; }
snap_disk() {
    case $1 in
        # (2>/dev/null: containerd may be removing a --rm container's snapshot)
        overlayfs) du -sb "$C/root/io.containerd.snapshotter.v1.overlayfs" 2>/dev/null | cut -f1 ;;
        *) du -sbx --exclude=tmp "$SD/root" | cut -f1 ;;
    esac
}
# "median (min-max)" of the numbers on stdin.
spread() { sort -g | awk '{a[NR]=$1} END {if (!NR) {print "-"; exit}; m = (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2; printf "%s (%s-%s)\n", m, a[1], a[NR]}'; }

MODES="overlayfs strata strata-native"
[ -n "$CRI_PULL" ] && MODES="overlayfs strata strata-cri strata-native"
: >"$WORK/results"
for run in $(seq "$RUNS"); do
    for mode in $MODES; do
        start_all
        set -- $(pull_run "$mode" bench)
        echo "$mode pull_run $1" >>"$WORK/results"
        echo "$mode pull $2" >>"$WORK/results"
        echo "$mode run $3" >>"$WORK/results"
        stop_all
        start_all
        for i in 1 2 3; do pull_run "$mode" "over$i" >/dev/null; done
        if [ "$mode" != strata-native ]; then
            echo "$mode disk $(snap_disk "$mode")" >>"$WORK/results"
            echo "$mode content $(content_bytes)" >>"$WORK/results"
        else
            echo "$mode disk $(du -sbx --exclude=tmp "$SD/root" | cut -f1)" >>"$WORK/results"
        fi
        before=$(( $(content_bytes) + $(strata_fetched) ))
        t=$(pull_run "$mode" mostly | cut -d' ' -f1)
        after=$(( $(content_bytes) + $(strata_fetched) ))
        echo "$mode mostly_time $t" >>"$WORK/results"
        echo "$mode mostly_bytes $((after - before))" >>"$WORK/results"
        stop_all
    done
done

[ -n "${RESULTS:-}" ] && cp "$WORK/results" "$RESULTS"
echo "benchmark image: busybox + $FILES files, ${SIZE} MB; $RUNS runs; median (min-max)"
for mode in $MODES; do
    m() { grep "^$mode $1 " "$WORK/results" | awk '{print $3}' | spread; }
    echo "$mode: pull-to-run-s $(m pull_run) [pull $(m pull), run $(m run)]; disk-3-images $(m disk); content-store $(m content); mostly-bytes $(m mostly_bytes); mostly-s $(m mostly_time)"
done
