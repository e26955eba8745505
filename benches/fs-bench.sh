#!/usr/bin/env bash
# Filesystem benchmark: the same multi-layer tree as a plain directory,
# through kernel overlayfs, through fuse-overlayfs and through stratafs.
#
#   benches/fs-bench.sh [WORKDIR]
#
# Environment: FILES (default 9000), TREE_MB (300), BIG_MB (512),
# WRITE_MB (1024), RUNS (3), LAYERS (3). Writes end with fsync. Needs root, /dev/fuse,
# fuse-overlayfs. Page cache is dropped before every cold run, and every
# mount is remounted before it, so the daemons start cold too. Prints the
# median of RUNS runs per case and its ratio to the plain directory.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
FILES=${FILES:-9000} TREE_MB=${TREE_MB:-300} BIG_MB=${BIG_MB:-512}
WRITE_MB=${WRITE_MB:-1024} RUNS=${RUNS:-3} LAYERS=${LAYERS:-3}
work=${1:-$(mktemp -d /var/tmp/strata-bench.XXXXXX)}

[[ $(id -u) == 0 ]] || { echo "fs-bench.sh: needs root" >&2; exit 2; }
command -v fuse-overlayfs >/dev/null || { echo "fs-bench.sh: needs fuse-overlayfs" >&2; exit 2; }
cargo build -q --release -p strata-tools --bin stratafs
stratafs="$CARGO_TARGET_DIR/release/stratafs"

pids=()
cleanup() {
    for m in "$work"/mnt/*; do umount -l "$m" 2>/dev/null || true; done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# --- the tree: LAYERS layers of small files plus one big file on top ----
mkdir -p "$work"/{layers,plain,mnt,upper,wk}
python3 - "$work/layers" "$FILES" "$TREE_MB" "$BIG_MB" "$LAYERS" <<'PY'
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
lowers=()            # top first, as overlayfs and stratafs take them
for ((i = LAYERS - 1; i >= 0; i--)); do lowers+=("$work/layers/l$i"); done
lowerdir=$(IFS=:; echo "${lowers[*]}")
# The plain directory hard-links the layer files: same data blocks, so
# the comparison measures the filesystems, not where the data landed.
for ((i = 0; i < LAYERS; i++)); do cp -al "$work/layers/l$i/." "$work/plain/"; done
sync
echo "tree: $(find "$work/plain" -type f | wc -l) files, $(du -sm "$work/plain" | cut -f1) MB, $LAYERS layers"

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
        plain) dir="$work/plain" ;;
        overlay) mount -t overlay overlay -o "lowerdir=$lowerdir$up" "$dir" ;;
        fuse-overlayfs) fuse-overlayfs -f -o "lowerdir=$lowerdir$up" "$dir" & daemon[$name]=$!; pids+=($!); wait_mount "$dir" ;;
        stratafs) "$stratafs" -f -o "lowerdir=$lowerdir$up" "$dir" & daemon[$name]=$!; pids+=($!); wait_mount "$dir" ;;
    esac
}
umount_variant() {
    mountpoint -q "$work/mnt/$1" 2>/dev/null && umount "$work/mnt/$1"
    if [[ -n ${daemon[$1]:-} ]]; then wait "${daemon[$1]}" 2>/dev/null || true; unset "daemon[$1]"; fi
    return 0
}

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
now() { echo "$EPOCHREALTIME"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# measure VARIANT COLD RW COMMAND... -> $last (median seconds)
measure() {
    local variant=$1 cold=$2 rw=$3; shift 3
    local times=() r t0
    for ((r = 0; r < RUNS; r++)); do
        if [[ $cold == 1 || $rw == 1 || $r == 0 ]]; then mount_variant "$variant" "$rw"; fi
        if [[ $cold == 1 ]]; then drop_caches; else sync; fi
        if [[ $cold == 0 && $rw == 0 && $r == 0 ]]; then (cd "$dir" && "$@") >/dev/null 2>&1; fi   # warm-up
        t0=$(now)
        (cd "$dir" && "$@") >/dev/null 2>&1
        times+=("$(echo "$(now) - $t0" | bc -l)")
        [[ $rw == 1 ]] && rm -f "$dir/written.bin"
    done
    umount_variant "$variant"
    last=$(printf '%s\n' "${times[@]}" | median)
}

variants=(plain overlay fuse-overlayfs stratafs)
declare -A result
labels=("cold walk" "warm walk" "cold read all" "cold read large" "write ${WRITE_MB} MiB")
# Case by case, every variant in turn, so drift hits all alike.
for v in "${variants[@]}"; do measure "$v" 1 0 find . -printf '%s %m %u\n'; result["cold walk/$v"]=$last; done
for v in "${variants[@]}"; do measure "$v" 0 0 find . -printf '%s %m %u\n'; result["warm walk/$v"]=$last; done
for v in "${variants[@]}"; do measure "$v" 1 0 sh -c 'tar cf - . | cat'; result["cold read all/$v"]=$last; done
for v in "${variants[@]}"; do measure "$v" 1 0 cat big/large.bin; result["cold read large/$v"]=$last; done
for v in "${variants[@]}"; do
    measure "$v" 0 1 dd if=/dev/zero of=written.bin bs=1M count="$WRITE_MB" conv=fsync
    result["write ${WRITE_MB} MiB/$v"]=$last
done

# stratafs: mount ready time and daemon memory after a walk
mkdir -p "$work/mnt/ready"
t0=$(now); "$stratafs" -f -o "lowerdir=$lowerdir" "$work/mnt/ready" & daemon[ready]=$!; pids+=($!)
wait_mount "$work/mnt/ready"; ready=$(echo "$(now) - $t0" | bc -l)
find "$work/mnt/ready" >/dev/null; rss=$(ps -o rss= -p "${daemon[ready]}")
umount_variant ready

printf '\n%-18s' "case"; for v in "${variants[@]}"; do printf '%22s' "$v"; done; echo
for label in "${labels[@]}"; do
    printf '%-18s' "$label"
    base=${result["$label/plain"]}
    for v in "${variants[@]}"; do
        t=${result["$label/$v"]}
        printf '%22s' "$(printf '%.3fs (%.2fx)' "$t" "$(echo "$t / $base" | bc -l)")"
    done
    echo
done
printf '\nstratafs: mount ready in %.0f ms (incl. process start), daemon RSS %d MB after a walk\n' \
    "$(echo "$ready * 1000" | bc -l)" "$((rss / 1024))"
