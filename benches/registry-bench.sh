#!/usr/bin/env bash
# Registry benchmark: pulls and a push through a docker-registry on
# 127.0.0.1, strata beside its peers in the same run:
#
#   pull one:1   one layer, ~460 MB of files from this machine's /usr, ~150 MB gzip
#   pull five:1  9,000 generated files, 300 MB, five gzip layers
#   pull one:2   one:1 plus a small layer, into a store that has one:1
#   pull one:re  one:1 rebuilt (every 50th file changed, a few new ones: a new
#                layer digest), into a store that has one:1
#   push five:1  to an empty registry
#
# Peers: `skopeo copy docker://... dir:` (download only), `podman pull`
# (runc, overlay storage, fresh --root), `docker pull` (Docker 20.10,
# overlay2, a dockerd of the script's own with its own data root and
# socket, one per run), and `unpack`, a plain durable unpack for
# reference: every layer blob fetched with curl, inflated by igzip (ISA-L)
# and extracted by tar into a fresh directory, the layers at once, then
# one `sync -f` (no digest checked, nothing recorded; its data is flushed
# only at the end, so it is no lower bound for strata). strata's pull
# returns once its rows are committed, with a flusher behind it
# (docs/store.md, "Write-behind"), as skopeo, podman and Docker return
# without flushing; an untimed `sync` follows every timed command. Each case
# prints the median of RUNS (default 5) runs with min and max; the runs of
# the peers alternate, so drift hits them alike. Nothing a peer wrote is
# deleted before the case ends (see pull_case). The second-image cases
# also print the bytes each pull wrote (write_bytes of the puller: strata,
# podman, or dockerd with its children). At the end: the stores' sizes
# against the images' distinct file contents and distinct layers.
#
# The whole script runs inside a network namespace of its own (loopback
# only); every store and copy lives under a fresh directory in BENCH_DIR
# (default /: see BENCHMARKS.md), removed at the end.
#
# Needs root, docker-registry, skopeo, python3, gzip, igzip; podman+runc and
# dockerd are used when present.
# Usage: [RUNS=5] [BENCH_DIR=/] [CASES="one five second rebuilt push size"]
#        [PEERS="strata skopeo unpack podman docker"] (fewer: a quicker look,
#        not a result) benches/registry-bench.sh [path/to/strata]    (default target/release/strata)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

STRATA=${1:-${STRATA:-target/release/strata}}
RUNS=${RUNS:-5}
CASES=${CASES:-one five second rebuilt push size}
[ -x "$STRATA" ] || { echo "no strata binary at $STRATA (cargo build --release)"; exit 1; }
STRATA=$(realpath "$STRATA")
[ "$(id -u)" = 0 ] || { echo "registry-bench.sh: needs root"; exit 2; }
for tool in docker-registry skopeo python3 gzip curl igzip; do
    command -v "$tool" >/dev/null || { echo "missing $tool (tools/install-deps.sh)"; exit 1; }
done
bench_in_own_netns "$@"

WORK=$(bench_scratch registry-bench)
cleanup() {
    bench_cleanup
    grep " $WORK" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

PEERS=${PEERS:-strata skopeo unpack podman docker}
want() { case " $PEERS " in *" $1 "*) return 0 ;; esac; return 1; }
HAVE_PODMAN=; want podman && command -v podman >/dev/null && command -v runc >/dev/null && HAVE_PODMAN=1
HAVE_DOCKER=; want docker && command -v dockerd >/dev/null && command -v docker >/dev/null && HAVE_DOCKER=1
printf '[engine]\nruntime = "runc"\n[containers]\ndefault_ulimits = []\n' >"$WORK/containers.conf"
export CONTAINERS_CONF=$WORK/containers.conf

echo "== generating the images (nothing is downloaded)"
python3 "$HERE/gen-images.py" "$WORK/gen"
bench_start_registry "$WORK/registry"
SRC=$REGISTRY
for name in one-1 one-2 one-re five-1; do
    skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$WORK/gen/layout:$name" \
        "docker://$SRC/bench/${name%%-*}:${name#*-}" >/dev/null
done
sync

now() { date +%s.%N; }
RESULTS=$WORK/results
mkdir -p "$RESULTS"
# record CASE PEER SECONDS [BYTES]
record() { echo "$3" >>"$RESULTS/$1.$2.t"; [ -z "${4:-}" ] || echo "$4" >>"$RESULTS/$1.$2.w"; }
# timed CASE PEER CMD...: runs CMD (its output to $WORK/last.log), records
# its time, then (untimed) flushes what it left for the disk to write, so
# the next peer starts on an idle disk: strata's flusher, skopeo's and
# podman's dirty pages would otherwise slow whoever comes next.
timed() {
    local case=$1 peer=$2 t0 t1; shift 2
    t0=$(now)
    "$@" >"$WORK/last.log" 2>&1 || { echo "$case/$peer failed:"; cat "$WORK/last.log"; exit 1; }
    t1=$(now)
    record "$case" "$peer" "$(echo "$t1 - $t0" | bc -l)"
    sync
}
# timed_bytes CASE PEER CMD...: the same, and the bytes the command's process tree wrote
timed_bytes() {
    local case=$1 peer=$2 t0 t1; shift 2
    t0=$(now)
    bench_write_bytes "$@" >"$WORK/last.log" 2>&1 3>"$WORK/bytes" || { echo "$case/$peer failed:"; cat "$WORK/last.log"; exit 1; }
    t1=$(now)
    record "$case" "$peer" "$(echo "$t1 - $t0" | bc -l)" "$(cat "$WORK/bytes")"
    sync
}

strata_root() { echo "$WORK/s-$1-$2"; }              # CASE RUN
podman_args() { echo "--root $WORK/p-$1-$2 --runroot $WORK/pr-$1-$2 --storage-driver overlay"; }
pull_strata() { "$STRATA" --root "$(strata_root "$1" "$2")" pull -q "$SRC/bench/$3"; }
pull_podman() { podman $(podman_args "$1" "$2") pull -q --tls-verify=false "$SRC/bench/$3"; }
pull_skopeo() { skopeo --insecure-policy copy -q --src-tls-verify=false "docker://$SRC/bench/$3" "dir:$WORK/k-$1-$2"; }
# The image's layer digests, from the generated layout (NAME as one:1).
layer_digests() {
    python3 - "$WORK/gen/layout" "${1/:/-}" <<'PY'
import json, sys
layout, name = sys.argv[1], sys.argv[2]
blob = lambda d: json.load(open(f"{layout}/blobs/sha256/{d.split(':')[1]}"))
for m in json.load(open(f"{layout}/index.json"))["manifests"]:
    if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == name:
        print(" ".join(l["digest"] for l in blob(m["digest"])["layers"]))
PY
}
# unpack CASE RUN IMAGE: a plain durable unpack (see the header)
pull_unpack() {
    local dir=$WORK/u-$1-$2 repo=${3%%:*} d pids=()
    for d in $(layer_digests "$3"); do
        mkdir -p "$dir/${d#sha256:}"
        (curl -sf "http://$SRC/v2/bench/$repo/blobs/$d" | igzip -dc | tar -x -C "$dir/${d#sha256:}") &
        pids+=($!)
    done
    for d in "${pids[@]}"; do wait "$d" || return 1; done
    sync -f "$dir"
}
podman_reset() { podman $(podman_args "$1" "$2") system reset -f >/dev/null 2>&1 || true; }

# docker_pull_timed CASE RUN IMAGE [BASE]: a fresh dockerd; BASE pulled first, untimed
docker_pull_timed() {
    local case=$1 run=$2 image=$3 base=${4:-} before after t0 t1
    bench_start_dockerd "$WORK/d-$case-$run"
    [ -z "$base" ] || $DOCKER pull -q "$SRC/bench/$base" >/dev/null
    sync
    before=$(bench_io_write_bytes "$DOCKERD_PID")
    t0=$(now)
    $DOCKER pull -q "$SRC/bench/$image" >"$WORK/last.log" 2>&1 || { echo "$case/docker failed:"; cat "$WORK/last.log"; exit 1; }
    t1=$(now)
    after=$(bench_io_write_bytes "$DOCKERD_PID")
    record "$case" docker "$(echo "$t1 - $t0" | bc -l)" "$((after - before))"
    # Its files stay until the end (no rmi): see pull_case.
    bench_stop_dockerd
    umount "$WORK/d-$case-$run/data/overlay2" 2>/dev/null || true
}

# pull_case CASE IMAGE [BASE]: every peer, RUNS times, alternating
pull_case() {
    local case=$1 image=$2 base=${3:-} r
    for r in $(seq "$RUNS"); do
        if [ -n "$base" ]; then
            pull_strata "$case" "$r" "$base" >/dev/null
            [ -z "$HAVE_PODMAN" ] || pull_podman "$case" "$r" "$base" >/dev/null
            sync
            timed_bytes "$case" strata pull_strata "$case" "$r" "$image"
            [ -z "$HAVE_PODMAN" ] || timed_bytes "$case" podman pull_podman "$case" "$r" "$image"
        else
            timed "$case" strata pull_strata "$case" "$r" "$image"
            ! want skopeo || timed "$case" skopeo pull_skopeo "$case" "$r" "$image"
            ! want unpack || timed "$case" unpack pull_unpack "$case" "$r" "$image"
            [ -z "$HAVE_PODMAN" ] || timed "$case" podman pull_podman "$case" "$r" "$image"
        fi
        sync
        [ -z "$HAVE_DOCKER" ] || docker_pull_timed "$case" "$r" "$image" "$base"
        sync
        echo "  $case run $r done" >&2
    done
    # Removed only now: on this ext4 without a journal, every file created
    # soon after thousands were deleted nearby costs a scan of them (see
    # BENCHMARKS.md), which would slow whichever puller ran next.
    [ -z "$HAVE_PODMAN" ] || for r in $(seq "$RUNS"); do podman_reset "$case" "$r"; done
    rm -rf "$WORK"/u-"$case"-*
}

case " $CASES " in *" one "*) echo "== pull one:1 (one layer)"; pull_case one one:1 ;; esac
case " $CASES " in *" five "*) echo "== pull five:1 (five layers)"; pull_case five five:1 ;; esac
case " $CASES " in *" second "*) echo "== pull one:2 (one:1 + a small layer) onto one:1"; pull_case second one:2 one:1 ;; esac
case " $CASES " in *" rebuilt "*) echo "== pull one:re (one:1 rebuilt) onto one:1"; pull_case rebuilt one:re one:1 ;; esac

if case " $CASES " in *" push "*) true ;; *) false ;; esac; then
    echo "== push five:1 to an empty registry"
    push_root=$WORK/push-store
    "$STRATA" --root "$push_root" pull -q "$SRC/bench/five:1" >/dev/null
    skopeo --insecure-policy copy -q --src-tls-verify=false "docker://$SRC/bench/five:1" "dir:$WORK/push-dir" >/dev/null
    for r in $(seq "$RUNS"); do
        bench_start_registry "$WORK/registry-strata-$r"
        "$STRATA" --root "$push_root" tag "$SRC/bench/five:1" "$REGISTRY/bench/five:1"
        timed push strata "$STRATA" --root "$push_root" push -q "$REGISTRY/bench/five:1"
        bench_start_registry "$WORK/registry-skopeo-$r"
        timed push skopeo skopeo --insecure-policy copy -q --dest-tls-verify=false "dir:$WORK/push-dir" "docker://$REGISTRY/bench/five:1"
    done
fi

SIZE_LINES=
if case " $CASES " in *" size "*) true ;; *) false ;; esac; then
    echo "== store sizes: one:1, one:2, one:re and five:1 in one store each"
    all="one:1 one:2 one:re five:1"
    for i in $all; do "$STRATA" --root "$WORK/size-strata" pull -q "$SRC/bench/$i" >/dev/null; done
    "$STRATA" --root "$WORK/size-strata" fsck -q
    sb_apparent=$(($(du -sb --apparent-size "$WORK/size-strata/files" | cut -f1) + $(du -sb --apparent-size "$WORK/size-strata/blobs" | cut -f1) + $(du -cb "$WORK/size-strata"/strata.db* | tail -1 | cut -f1)))
    sb_disk=$(du -sB1 "$WORK/size-strata" | cut -f1)
    SIZE_LINES="strata-apparent $sb_apparent
strata-disk $sb_disk"
    if [ -n "$HAVE_PODMAN" ]; then
        for i in $all; do podman $(podman_args size 1) pull -q --tls-verify=false "$SRC/bench/$i" >/dev/null; done
        SIZE_LINES="$SIZE_LINES
podman-disk $(du -sB1 -x "$WORK/p-size-1" | cut -f1)"
        podman_reset size 1
    fi
    if [ -n "$HAVE_DOCKER" ]; then
        bench_start_dockerd "$WORK/d-size"
        for i in $all; do $DOCKER pull -q "$SRC/bench/$i" >/dev/null; done
        SIZE_LINES="$SIZE_LINES
docker-disk $(du -sB1 -x "$WORK/d-size/data" | cut -f1)"
        $DOCKER rmi -f $(for i in $all; do echo "$SRC/bench/$i"; done) >/dev/null 2>&1 || true
        bench_stop_dockerd
    fi
fi

echo
python3 - "$RESULTS" "$WORK/gen/sizes.json" "$SIZE_LINES" <<'PY'
import json, os, statistics, sys
d, sizes, size_lines = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
def values(case, peer, ext="t"):
    p = os.path.join(d, f"{case}.{peer}.{ext}")
    return [float(x) for x in open(p).read().split()] if os.path.exists(p) else []
def med(case, peer):
    v = values(case, peer)
    return statistics.median(v) if v else None
titles = {"one": "pull one:1 (1 layer, %d MB gzip)" % (sizes["one_gzip"] >> 20),
          "five": "pull five:1 (5 layers, %d MB gzip)" % (sizes["five_gzip"] >> 20),
          "second": "pull one:2 onto one:1", "rebuilt": "pull one:re onto one:1",
          "push": "push five:1"}
print("%-34s %-8s %8s %8s %8s %6s %14s" % ("case", "peer", "median", "min", "max", "runs", "bytes written"))
for case in ["one", "five", "second", "rebuilt", "push"]:
    for peer in ["strata", "unpack", "skopeo", "podman", "docker"]:
        v = values(case, peer)
        if not v:
            continue
        w = values(case, peer, "w")
        wb = "%14s" % f"{int(statistics.median(w)):,}" if w else ""
        print("%-34s %-8s %8.3f %8.3f %8.3f %6d %s" % (titles[case], peer, statistics.median(v), min(v), max(v), len(v), wb))
print()
goals = [("one", "unpack", None), ("five", "unpack", None), ("one", "skopeo", 1.5), ("one", "docker", 0.3), ("five", "skopeo", 1.3), ("five", "podman", 0.35),
         ("five", "docker", None), ("second", "docker", None), ("second", "podman", None),
         ("rebuilt", "docker", None), ("rebuilt", "podman", None), ("push", "skopeo", 1.5)]
for case, peer, goal in goals:
    s, p = med(case, "strata"), med(case, peer)
    if s and p:
        g = f"(goal <= {goal}: {'met' if s / p <= goal else 'NOT met'})" if goal else ""
        print(f"{case:8s} strata / {peer:7s} = {s / p:.2f} {g}")
if size_lines:
    print()
    print("store sizes for one:1, one:2, one:re, five:1:")
    print("  distinct file contents %14s bytes" % f"{sizes['distinct_contents']:,}")
    print("  distinct layers (tar)  %14s bytes" % f"{sizes['distinct_layers']:,}")
    for line in size_lines.splitlines():
        name, b = line.split()
        b = int(b)
        print("  %-22s %14s bytes  %.3fx contents  %.3fx layers" % (name, f"{b:,}", b / sizes["distinct_contents"], b / sizes["distinct_layers"]))
PY
