#!/bin/sh
# Start-up cost of a container that runs `true`:
#   strata run --rm IMAGE true
#   podman --runtime runc run --rm IMAGE true   (same image, imported)
#   bwrap on the same tree as a plain directory
#   strata run --rm BIG-IMAGE true   (the same plus BIG_FILES files, default
#   100000: start-up must not grow with the image)
# Needs root, busybox (static), hyperfine (else a shell loop), podman+runc
# and bwrap (each skipped if absent). Prints the means and ratios.
#
#   benches/run-bench.sh [RUNS]        STRATA=path/to/strata to override
set -eu

# In a network namespace of its own: strata's default bridge (strata0) and
# its nftables table must not be left in the machine's namespace.
if [ -z "${STRATA_BENCH_NETNS:-}" ]; then
    export STRATA_BENCH_NETNS=1
    exec unshare --net -- sh -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
fi

RUNS=${1:-50}
HERE=$(cd "$(dirname "$0")/.." && pwd)
STRATA=${STRATA:-${CARGO_TARGET_DIR:-$HERE/target}/release/strata}
BUSYBOX=$(command -v busybox || true)
[ -x "$STRATA" ] || { echo "build first: cargo build --release (or set STRATA=)"; exit 1; }
[ -n "$BUSYBOX" ] || { echo "needs busybox (apt-get install busybox-static)"; exit 1; }

WORK=$(mktemp -d /tmp/strata-bench.XXXXXX)
PODMAN_IMAGE=localhost/strata-bench:latest
cleanup() {
    "$STRATA" --root "$WORK/store" ps -aq 2>/dev/null | xargs -r "$STRATA" --root "$WORK/store" rm -f >/dev/null 2>&1 || true
    if command -v podman >/dev/null 2>&1; then podman rmi -f "$PODMAN_IMAGE" >/dev/null 2>&1 || true; fi
    grep " $WORK" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# The image: busybox and its applets, as a directory and as a tar.
TREE=$WORK/tree
mkdir -p "$TREE/bin" "$TREE/etc" "$TREE/tmp" "$TREE/proc" "$TREE/dev"
cp "$BUSYBOX" "$TREE/bin/busybox"
for a in sh true ls cat echo; do ln -s busybox "$TREE/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$TREE/etc/passwd"
printf 'root:x:0:\n' >"$TREE/etc/group"
tar -C "$TREE" -cf "$WORK/image.tar" .
"$STRATA" --root "$WORK/store" import "$WORK/image.tar" strata-bench:latest >/dev/null
"$STRATA" --root "$WORK/store" run --rm strata-bench true   # warm the layer cache

# The same image with BIG_FILES more files in 1,000 directories.
BIG_FILES=${BIG_FILES:-100000}
python3 - "$TREE/data" "$BIG_FILES" <<'PY'
import os, sys
root, count = sys.argv[1], int(sys.argv[2])
for i in range(count):
    d = os.path.join(root, "d%03d" % (i % 1000))
    if i < 1000:
        os.makedirs(d)
    with open(os.path.join(d, "f%06d" % i), "w") as f:
        f.write("%d\n" % i)
PY
tar -C "$TREE" -cf "$WORK/big.tar" .
rm -rf "$TREE/data"
"$STRATA" --root "$WORK/store" import "$WORK/big.tar" strata-bench-big:latest >/dev/null
"$STRATA" --root "$WORK/store" run --rm strata-bench-big true

STRATA_CMD="$STRATA --root $WORK/store run --rm strata-bench true"
BIG_CMD="$STRATA --root $WORK/store run --rm strata-bench-big true"
BWRAP_CMD="bwrap --bind $TREE / --proc /proc --dev /dev --unshare-pid --unshare-ipc --unshare-uts --die-with-parent /bin/true"
PODMAN_CMD="podman --runtime runc run --rm --ulimit host --network none $PODMAN_IMAGE true"

set -- "$STRATA_CMD" "$BIG_CMD"
NAMES="strata strata-big"
if command -v bwrap >/dev/null 2>&1; then set -- "$@" "$BWRAP_CMD"; NAMES="$NAMES bwrap"; fi
if command -v podman >/dev/null 2>&1 && command -v runc >/dev/null 2>&1; then
    # podman's default ulimits make runc fail in some sandboxes; a private
    # containers.conf empties them without touching /etc.
    export CONTAINERS_CONF="$WORK/containers.conf"
    printf '[containers]\ndefault_ulimits = []\n' >"$CONTAINERS_CONF"
    podman import "$WORK/image.tar" "$PODMAN_IMAGE" >/dev/null
    if $PODMAN_CMD >/dev/null 2>&1; then set -- "$@" "$PODMAN_CMD"; NAMES="$NAMES podman-runc"; else echo "podman+runc cannot run here; skipped"; fi
fi

# The set-up wrote ~100,000 files and two tars: let the disk write them
# back before timing, or the first command timed pays for it.
sync
sleep 2
echo "kernel $(uname -r), $(nproc) CPUs; $RUNS runs each"
if command -v hyperfine >/dev/null 2>&1; then
    hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$WORK/result.json" "$@" >&2
    python3 - "$WORK/result.json" $NAMES <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
names = sys.argv[2:]
means = {n: r["mean"] * 1000 for n, r in zip(names, results)}
for n, r in zip(names, results):
    print(f"{n:12s} mean {r['mean']*1000:8.2f} ms  median {r['median']*1000:8.2f} ms  min {r['min']*1000:8.2f} ms")
s = means["strata"]
for n in names[1:]:
    print(f"strata / {n}: {s / means[n]:.3f}  ({n} / strata: {means[n] / s:.2f})")
PY
else
    for cmd in "$@"; do
        start=$(date +%s%N)
        i=0; while [ $i -lt "$RUNS" ]; do $cmd >/dev/null; i=$((i+1)); done
        end=$(date +%s%N)
        echo "$(( (end - start) / RUNS / 1000 )) us  $cmd"
    done
fi
