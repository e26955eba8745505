#!/usr/bin/env bash
# Filesystem benchmark: one multi-layer image read every way it can be,
# side by side in one run:
#
#   plain           the image unpacked by umoci into a fresh directory (the limit)
#   store           the image pulled into a strata store, `strata mount IMAGE DIR`
#                   (as root: the kernel's overlayfs over the image's view)
#   store-fuse      the same, `strata mount --driver fuse IMAGE DIR` (strata-fs)
#   store-data      a plain directory tree whose files are hard links to the
#                   store's files of the image: where the store put the data,
#                   read without the overlay (store minus store-data is what
#                   the kernel mount itself costs)
#   docker          Docker 20.10's overlay2 layers of the same image (pulled by a
#                   dockerd of the script's own), mounted as Docker mounts them
#   overlay         kernel overlayfs over the layers extracted to plain directories
#   fuse-overlayfs  the same layer directories
#   stratafs        the same layer directories
#
#   [RUNS=5] [BENCH_DIR=/] [CASES="cold-walk warm-walk cold-read warm-read cold-large write"]
#   [STRATA=path/to/strata STRATAFS=path/to/stratafs]
#   [STRATA_BEFORE=path/to/other/strata] [VARIANTS="store docker ..."] benches/fs-bench.sh
#
# VARIANTS runs only those (plain, the limit, always), so a case can get
# more runs in the same time.
#
# STRATA_BEFORE adds a variant, store-before: the same store mounted by
# another strata build (same store schema), to compare two builds in one
# run.
#
# (release builds of both unless STRATA and STRATAFS name them)
# The image: LAYERS (3) layers of FILES (9,000) files, TREE_MB (300) MB,
# plus one BIG_MB (512) MB file in the top layer, pushed to a
# docker-registry on 127.0.0.1 (the script runs in a network namespace of
# its own). Cases: cold and warm walk (`find -printf '%s %m %u'`), cold
# and warm read of every file (`tar cf - . | cat`), cold read of the big
# file, and WRITE_MB (1024) MB written with fsync into a writable mount
# (the variants that have one). Every run remounts the variant (so
# FUSE daemons start cold too) and drops the page cache first; a warm run
# then reads once untimed, so every warm run times a cache filled anew
# (one tree read warm varied by 7-15% from one filling of the cache
# to the next, median of 5 each: a cache kept across runs carries its
# luck into every run of a variant; benches/warm-spread.sh); each round
# goes through every variant in turn, starting one further each round,
# so drift hits them alike and none always follows the same one. Prints
# the median of RUNS runs with min and max, and the median's ratio to the
# plain directory; then the median of the paired ratios (each run over
# plain's run of the same round: the cost with drift between rounds
# taken out); then, for the cold cases, the median number of reads
# each run issued to the disk (/proc/diskstats), beside plain's: where
# the store lays an image out shows there first. Needs root, /dev/fuse, umoci, skopeo, docker-registry,
# fuse-overlayfs; dockerd when present.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
root=$(cd "$HERE/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
FILES=${FILES:-9000} TREE_MB=${TREE_MB:-300} BIG_MB=${BIG_MB:-512}
WRITE_MB=${WRITE_MB:-1024} RUNS=${RUNS:-5} LAYERS=${LAYERS:-3}
CASES=${CASES:-cold-walk warm-walk cold-read warm-read cold-large write}

[[ $(id -u) == 0 ]] || { echo "fs-bench.sh: needs root" >&2; exit 2; }
for tool in fuse-overlayfs umoci skopeo docker-registry python3 bc; do
    command -v "$tool" >/dev/null || { echo "fs-bench.sh: needs $tool (tools/install-deps.sh)" >&2; exit 2; }
done
known="plain store store-data store-fuse store-before docker overlay fuse-overlayfs stratafs"
for v in ${VARIANTS:-}; do   # checked before the few minutes of setup
    [[ " $known " == *" $v "* ]] || { echo "fs-bench.sh: no variant $v ($known)" >&2; exit 2; }
done
bench_in_own_netns "$@"
if [[ -z ${STRATA:-} || -z ${STRATAFS:-} ]]; then
    cargo build -q --release -p strata-tools --bin stratafs
    cargo build -q --release --bin strata
fi
stratafs=${STRATAFS:-$CARGO_TARGET_DIR/release/stratafs}
strata=${STRATA:-$CARGO_TARGET_DIR/release/strata}

work=$(bench_scratch fs-bench)
S="$strata --root $work/store"
cleanup() {
    $S umount "$work/mnt/store" >/dev/null 2>&1 || true
    $S umount "$work/mnt/store-before" >/dev/null 2>&1 || true
    for m in "$work"/mnt/*; do umount -l "$m" 2>/dev/null || true; done
    bench_cleanup
    grep " $work" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

# --- the image --------------------------------------------------------------
mkdir -p "$work"/{gen,layers,mnt,upper,wk,oci}
python3 - "$work/gen" "$FILES" "$TREE_MB" "$BIG_MB" "$LAYERS" <<'PY'
import os, random, sys
base, files, tree_mb, big_mb, layers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rnd = random.Random(42)
avg = tree_mb * 2**20 // files
for i in range(files):
    layer = os.path.join(base, f"l{i % layers}")
    d = os.path.join(layer, f"d{(i // 50) % 60}", f"s{i % 7}")
    os.makedirs(d, exist_ok=True)
    size = max(1, int(rnd.expovariate(1 / avg)))
    with open(os.path.join(d, f"f{i}"), "wb") as f:
        f.write(os.urandom(size))
top = os.path.join(base, f"l{layers - 1}", "big")
os.makedirs(top, exist_ok=True)
with open(os.path.join(top, "large.bin"), "wb") as f:
    for _ in range(big_mb):
        f.write(os.urandom(2**20))
PY
for ((i = 0; i < LAYERS; i++)); do tar -C "$work/gen/l$i" -cf "$work/l$i.tar" .; done
rm -rf "$work/gen"
# The layer directories, each extracted in one go (as a layer store would).
for ((i = 0; i < LAYERS; i++)); do mkdir -p "$work/layers/l$i"; tar -C "$work/layers/l$i" -xf "$work/l$i.tar"; done
python3 - "$work" "$LAYERS" <<'PY'
import hashlib, json, os, sys
work, layers = sys.argv[1], int(sys.argv[2])
out = os.path.join(work, "oci")
os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
def put(path=None, data=None):
    h = hashlib.sha256()
    if data is None:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        size = os.path.getsize(path)
        os.rename(path, os.path.join(out, "blobs", "sha256", h.hexdigest()))
    else:
        h.update(data); size = len(data)
        open(os.path.join(out, "blobs", "sha256", h.hexdigest()), "wb").write(data)
    return "sha256:" + h.hexdigest(), size
descs = [put(os.path.join(work, f"l{i}.tar")) for i in range(layers)]
config = {"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": [d for d, _ in descs]}}
cd, cs = put(data=json.dumps(config).encode())
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s} for d, s in descs]}
md, ms = put(data=json.dumps(manifest).encode())
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md,
           "size": ms, "annotations": {"org.opencontainers.image.ref.name": "tree"}}]}, open(os.path.join(out, "index.json"), "w"))
open(os.path.join(out, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
bench_start_registry "$work/registry"
image=$REGISTRY/bench/tree:1
skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$work/oci:tree" "docker://$image"

# plain: umoci's unpack into a fresh directory
umoci unpack --image "$work/oci:tree" "$work/bundle" >/dev/null
plain="$work/bundle/rootfs"
# store: pulled, as a user gets an image. Its first mount (FUSE's) starts
# building its view (the kernel mount's) in the background; timed here
# once, from the mount until the view is there.
$S pull -q "$image" >/dev/null
sync; bench_drop_caches
hex=$($S images -q --no-trunc "$image" | sed 's/^sha256://')
t0=$EPOCHREALTIME; first=$($S mount "$image"); t1=$EPOCHREALTIME
while [[ ! -d $work/store/views/$hex/data ]]; do sleep 0.01; done; t2=$EPOCHREALTIME
$S umount "$first" >/dev/null
echo "first strata mount: ready in $(echo "$t1 - $t0" | bc -l | cut -c1-6) s (fuse), view built $(echo "$t2 - $t0" | bc -l | cut -c1-6) s after it (cold cache)"
# store-data: the view's files as a plain tree of links (lib.sh).
bench_link_view "$work/store/views/$hex" "$work/store-data"
# docker: pulled by our own dockerd; its overlay2 directories of the image
variants=(plain store store-data store-fuse overlay fuse-overlayfs stratafs)
docker_lower=
if command -v dockerd >/dev/null && command -v docker >/dev/null; then
    bench_start_dockerd "$work/docker"
    $DOCKER pull -q "$image" >/dev/null
    upper=$($DOCKER image inspect -f '{{.GraphDriver.Data.UpperDir}}' "$image")
    lower=$($DOCKER image inspect -f '{{.GraphDriver.Data.LowerDir}}' "$image")
    docker_lower=$upper${lower:+:$lower}
    variants=(plain store store-data store-fuse docker overlay fuse-overlayfs stratafs)
fi
if [[ -n ${STRATA_BEFORE:-} ]]; then
    variants=("${variants[0]}" store-before "${variants[@]:1}")
fi
if [[ -n ${VARIANTS:-} ]]; then   # a subset, in the order given; plain always first
    picked=(plain)
    for v in $VARIANTS; do
        [[ $v == plain ]] && continue
        [[ " ${variants[*]} " == *" $v "* ]] || { echo "fs-bench.sh: no variant $v here (${variants[*]})" >&2; exit 2; }
        picked+=("$v")
    done
    variants=("${picked[@]}")
fi
sync
echo "tree: $(find "$plain" -type f | wc -l) files, $(du -sm "$plain" | cut -f1) MB, $LAYERS layers; variants: ${variants[*]}"

lowers=()            # top first, as overlayfs and stratafs take them
for ((i = LAYERS - 1; i >= 0; i--)); do lowers+=("$work/layers/l$i"); done
lowerdir=$(IFS=:; echo "${lowers[*]}")

# --- mounting -------------------------------------------------------------
declare -A daemon
wait_mount() { for _ in $(seq 500); do mountpoint -q "$1" && return 0; sleep 0.01; done; echo "no mount at $1" >&2; exit 1; }

mount_variant() {   # NAME RW(0/1) -> sets $dir
    local name=$1 rw=$2 up=""
    umount_variant "$name"
    dir="$work/mnt/$name"
    mkdir -p "$dir"
    if [[ $rw == 1 ]]; then
        rm -rf "$work/upper/$name" "$work/wk/$name"; mkdir -p "$work/upper/$name" "$work/wk/$name"
        up=",upperdir=$work/upper/$name,workdir=$work/wk/$name"
    fi
    case $name in
        plain) dir="$plain" ;;
        store-data) dir="$work/store-data" ;;
        store) $S mount "$image" "$dir" >/dev/null ;;
        store-fuse) $S mount --driver fuse "$image" "$dir" >/dev/null ;;
        store-before) "$STRATA_BEFORE" --root "$work/store" mount "$image" "$dir" >/dev/null ;;
        docker) mount -t overlay overlay -o "lowerdir=$docker_lower" "$dir" ;;
        overlay) mount -t overlay overlay -o "lowerdir=$lowerdir$up" "$dir" ;;
        fuse-overlayfs) fuse-overlayfs -f -o "lowerdir=$lowerdir$up" "$dir" & daemon[$name]=$!; BENCH_PIDS+=($!); wait_mount "$dir" ;;
        stratafs) "$stratafs" -f -o "lowerdir=$lowerdir$up" "$dir" & daemon[$name]=$!; BENCH_PIDS+=($!); wait_mount "$dir" ;;
    esac
}
umount_variant() {
    if [[ $1 == store || $1 == store-fuse || $1 == store-before ]]; then
        mountpoint -q "$work/mnt/$1" 2>/dev/null && $S umount "$work/mnt/$1" >/dev/null
    else
        mountpoint -q "$work/mnt/$1" 2>/dev/null && umount "$work/mnt/$1"
    fi
    if [[ -n ${daemon[$1]:-} ]]; then wait "${daemon[$1]}" 2>/dev/null || true; unset "daemon[$1]"; fi
    return 0
}

now() { echo "$EPOCHREALTIME"; }
# The reads each cold run issues to the disk under $work (every variant's
# files are there): /proc/diskstats of its device.
dev=$(stat -c '%d' "$work")
dev_major=$(( (dev >> 8) & 0xfff )) dev_minor=$(( (dev & 0xff) | ((dev >> 12) & 0xfff00) ))
disk_reads() { awk -v M="$dev_major" -v m="$dev_minor" '$1 == M && $2 == m { print $4 }' /proc/diskstats; }
results=$work/results
mkdir -p "$results"

# one_run CASE VARIANT COLD RW COMMAND...: one timed run into results/CASE.VARIANT
one_run() {
    local case=$1 variant=$2 cold=$3 rw=$4 t0; shift 4
    mount_variant "$variant" "$rw"
    bench_drop_caches
    if [[ $cold == 0 ]]; then (cd "$dir" && "$@") >/dev/null 2>&1; fi   # fill the cache anew
    local r0; r0=$(disk_reads)
    t0=$(now)
    (cd "$dir" && "$@") >/dev/null 2>&1
    echo "$(now) - $t0" | bc -l >>"$results/$case.$variant"
    [[ $cold == 1 && -n $r0 ]] && echo "$(( $(disk_reads) - r0 ))" >>"$results/$case.$variant.reads"
    [[ $rw == 1 ]] && rm -f "$dir/written.bin"
    umount_variant "$variant"
}

# run_case CASE COLD RW VARIANTS COMMAND...
run_case() {
    local case=$1 cold=$2 rw=$3 vs=$4 r v; shift 4
    case " $CASES " in *" $case "*) ;; *) return 0 ;; esac
    local -a list=($vs)
    for r in $(seq "$RUNS"); do
        for i in $(bench_rotate "${#list[@]}" "$r"); do one_run "$case" "${list[$i]}" "$cold" "$rw" "$@"; done
    done
    echo "  $case done" >&2
}

all="${variants[*]}"
run_case cold-walk 1 0 "$all" find . -printf '%s %m %u\n'
run_case warm-walk 0 0 "$all" find . -printf '%s %m %u\n'
run_case cold-read 1 0 "$all" sh -c 'tar cf - . | cat'
run_case warm-read 0 0 "$all" sh -c 'tar cf - . | cat'
run_case cold-large 1 0 "$all" cat big/large.bin
writable=$(for v in "${variants[@]}"; do case $v in plain | overlay | fuse-overlayfs | stratafs) echo "$v" ;; esac; done)
run_case write 0 1 "$writable" dd if=/dev/zero of=written.bin bs=1M count="$WRITE_MB" conv=fsync

echo
printf '%-12s' case; for v in "${variants[@]}"; do printf '%30s' "$v"; done; echo
for case in $CASES; do
    [[ -e $results/$case.plain ]] || continue
    read -r base _ _ < <(bench_stats <"$results/$case.plain")
    printf '%-12s' "$case"
    for v in "${variants[@]}"; do
        if [[ -e $results/$case.$v ]]; then
            read -r m lo hi < <(bench_stats <"$results/$case.$v")
            printf '%30s' "$(printf '%.3f (%.3f-%.3f) %.2fx' "$m" "$lo" "$hi" "$(echo "$m / $base" | bc -l)")"
        else
            printf '%30s' "-"
        fi
    done
    echo
done
echo "(median seconds of $RUNS runs, (min-max), median / plain's median)"
echo
echo "paired: each run / plain's run of the same round, median (min-max):"
printf '%-12s' case; for v in "${variants[@]:1}"; do printf '%22s' "$v"; done; echo
for case in $CASES; do
    [[ -e $results/$case.plain ]] || continue
    printf '%-12s' "$case"
    for v in "${variants[@]:1}"; do
        if [[ -e $results/$case.$v ]]; then
            read -r m lo hi < <(bench_paired "$results/$case.plain" "$results/$case.$v")
            printf '%22s' "$(printf '%.2fx (%.2f-%.2f)' "$m" "$lo" "$hi")"
        else
            printf '%22s' "-"
        fi
    done
    echo
done
echo
echo "reads issued to the disk by each cold run (median of $RUNS, the difference to plain's):"
printf '%-12s' case; for v in "${variants[@]}"; do printf '%16s' "$v"; done; echo
for case in $CASES; do
    [[ -e $results/$case.plain.reads ]] || continue
    read -r base _ _ < <(bench_stats <"$results/$case.plain.reads")
    printf '%-12s' "$case"
    for v in "${variants[@]}"; do
        if [[ -e $results/$case.$v.reads ]]; then
            read -r m _ _ < <(bench_stats <"$results/$case.$v.reads")
            printf '%16s' "$(printf '%.0f %+.0f' "$m" "$(echo "$m - $base" | bc -l)")"
        else
            printf '%16s' "-"
        fi
    done
    echo
done
