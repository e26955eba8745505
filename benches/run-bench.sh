#!/usr/bin/env bash
# Start-up cost of a container that runs `true`, strata beside its peers
# in one run:
#   strata-none      strata run --rm --network none IMAGE true
#   strata-big       strata run --rm --network none BIG-IMAGE true   (the same
#                    plus BIG_FILES files, default 100000: start-up must not
#                    grow with the image)
#   docker           docker run --rm --network none IMAGE true   (Docker 20.10,
#                    a dockerd of the script's own: own data root and socket)
#   podman-runc      podman --runtime runc run --rm --network none IMAGE true
#   bwrap            bwrap on the same tree as a plain directory
#   strata           strata run --rm IMAGE true   (its default network: a
#                    bridge; timed last, see below)
# The image is a busybox tree, imported by each engine from the same tar.
# Each case prints the median of RUNS runs (hyperfine -N, 3 warm-ups) with
# min and max, and the ratios of strata's medians to Docker's and podman's
# (same network mode: none).
#
# Needs root, busybox (static), hyperfine, python3; docker, podman+runc and
# bwrap are used when present (each row says when it is missing).
# The whole script runs in a network namespace of its own (strata's default
# bridge and its nftables table stay there); scratch in a fresh directory
# under BENCH_DIR (default /, see BENCHMARKS.md), removed at the end.
#
#   [BENCH_DIR=/] [STRATA=path/to/strata] benches/run-bench.sh [RUNS]   (default 50)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

RUNS=${1:-50}
[ "$RUNS" -ge 5 ] || { echo "run-bench.sh: RUNS must be at least 5" >&2; exit 2; }
STRATA=${STRATA:-${CARGO_TARGET_DIR:-$HERE/../target}/release/strata}
[ -x "$STRATA" ] || { echo "build first: cargo build --release (or set STRATA=)" >&2; exit 1; }
STRATA=$(realpath "$STRATA")
[ "$(id -u)" = 0 ] || { echo "run-bench.sh: needs root" >&2; exit 2; }
for tool in busybox hyperfine python3; do
    command -v "$tool" >/dev/null || { echo "run-bench.sh: needs $tool (tools/install-deps.sh)" >&2; exit 2; }
done
bench_in_own_netns "$@"

WORK=$(bench_scratch run-bench)
S="$STRATA --root $WORK/store"
PODMAN_IMAGE=localhost/strata-bench:latest
export CONTAINERS_CONF=$WORK/containers.conf
podman_args="--root $WORK/podman --runroot $WORK/podman-run --storage-driver overlay"
cleanup() {
    $S ps -aq 2>/dev/null | xargs -r $S rm -f >/dev/null 2>&1 || true
    if command -v podman >/dev/null 2>&1; then
        podman $podman_args system reset -f >/dev/null 2>&1 || true
    fi
    bench_cleanup
    grep " $WORK" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# The image: busybox and its applets, as a directory and as a tar.
TREE=$WORK/tree
mkdir -p "$TREE/bin" "$TREE/etc" "$TREE/tmp" "$TREE/proc" "$TREE/dev"
cp "$(command -v busybox)" "$TREE/bin/busybox"
for a in sh true ls cat echo; do ln -s busybox "$TREE/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$TREE/etc/passwd"
printf 'root:x:0:\n' >"$TREE/etc/group"
tar -C "$TREE" -cf "$WORK/image.tar" .
$S import "$WORK/image.tar" strata-bench:latest >/dev/null

# The same image with BIG_FILES more files in 1,000 directories, written
# straight into the tar: 100,000 files made and deleted here would slow
# every file creation after them on this disk (ext4 without a journal
# scans recently freed inodes: BENCHMARKS.md, "Why BENCH_DIR"), the
# containers' included, and double what is timed.
BIG_FILES=${BIG_FILES:-100000}
python3 - "$WORK/image.tar" "$WORK/big.tar" "$BIG_FILES" <<'PY'
import io, sys, tarfile
src, dst, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
with tarfile.open(src) as base, tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as out:
    for member in base.getmembers():
        out.addfile(member, base.extractfile(member) if member.isfile() else None)
    for d in range(min(count, 1000)):
        info = tarfile.TarInfo("./data/d%03d" % d)
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        out.addfile(info)
    for i in range(count):
        data = b"%d\n" % i
        info = tarfile.TarInfo("./data/d%03d/f%06d" % (i % 1000, i))
        info.size, info.mode = len(data), 0o644
        out.addfile(info, io.BytesIO(data))
PY
$S import "$WORK/big.tar" strata-bench-big:latest >/dev/null
rm -f "$WORK/big.tar"

names=(strata-none strata-big)
cmds=("$S run --rm --network none strata-bench true"
      "$S run --rm --network none strata-bench-big true")
missing=()
if command -v dockerd >/dev/null && command -v docker >/dev/null; then
    bench_start_dockerd "$WORK/docker"
    $DOCKER import "$WORK/image.tar" strata-bench:latest >/dev/null
    names+=(docker)
    cmds+=("$DOCKER run --rm --network none strata-bench:latest true")
else
    missing+=("docker (no dockerd)")
fi
if command -v podman >/dev/null && command -v runc >/dev/null; then
    # podman's default ulimits make runc fail in some sandboxes: a private
    # containers.conf empties them without touching /etc.
    printf '[containers]\ndefault_ulimits = []\n' >"$CONTAINERS_CONF"
    podman $podman_args import "$WORK/image.tar" "$PODMAN_IMAGE" >/dev/null 2>&1
    names+=(podman-runc)
    cmds+=("podman $podman_args --runtime runc run --rm --network none $PODMAN_IMAGE true")
else
    missing+=("podman-runc (no podman or runc)")
fi
if command -v bwrap >/dev/null; then
    names+=(bwrap)
    cmds+=("bwrap --bind $TREE / --proc /proc --dev /dev --unshare-pid --unshare-ipc --unshare-uts --die-with-parent /bin/true")
else
    missing+=("bwrap (not installed)")
fi
# The bridged case last: the kernel tears each run's network namespace
# down in the background, which would slow the cases after it.
names+=(strata)
cmds+=("$S run --rm strata-bench true")
# Every command must work before anything is timed.
for i in "${!cmds[@]}"; do
    ${cmds[$i]} >/dev/null 2>"$WORK/err" || { echo "${names[$i]} cannot run here:"; cat "$WORK/err"; exit 1; }
done

# The set-up wrote ~100,000 files and two tars: let the disk write them
# back before timing, or the first command timed pays for it.
sync
sleep 2
echo "kernel $(uname -r), $(nproc) CPUs; $RUNS runs each (hyperfine -N, 3 warm-ups), medians"
hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$WORK/result.json" "${cmds[@]}" >"$WORK/hyperfine.log" 2>&1 \
    || { cat "$WORK/hyperfine.log"; exit 1; }
python3 - "$WORK/result.json" "${names[@]}" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
names = sys.argv[2:]
median = {}
print(f"{'case':12s} {'median':>10s} {'min':>10s} {'max':>10s}  runs")
for n, r in zip(names, results):
    median[n] = r["median"] * 1000
    print(f"{n:12s} {r['median']*1000:8.2f}ms {r['min']*1000:8.2f}ms {r['max']*1000:8.2f}ms  {len(r['times'])}")
print()
s = median["strata-none"]
for peer in ("docker", "podman-runc", "bwrap"):
    if peer in median:
        print(f"strata-none / {peer}: {s / median[peer]:.3f}")
print(f"strata / strata-none (the bridge's cost): {median['strata'] / s:.2f}")
print(f"strata-big / strata-none (must stay ~1): {median['strata-big'] / s:.2f}")
PY
for m in "${missing[@]}"; do echo "not measured: $m"; done
