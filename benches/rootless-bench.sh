#!/usr/bin/env bash
# Rootless strata against rootless podman (issue 13), side by side, as one
# ordinary user made here (useradd gives it a subordinate id range) and
# removed at the end with everything it ran (killed by pid):
#   - `run --rm IMAGE true`: strata (its default network, pasta, and
#     --network none) against podman 4 with runc and the overlay driver
#     through fuse-overlayfs (same networks: podman's default, and none);
#   - a cold (page cache dropped) and a warm read of every file of a
#     mounted image: `strata mount` as the user against fuse-overlayfs
#     mounted as the user on the same tree, and against root's
#     `strata mount` of the same image (FUSE passthrough);
#   - a pull of the registry benchmark's five-layer image (five:1 of
#     benches/gen-images.py: 9,000 files, 300 MB) from a docker-registry
#     on 127.0.0.1: strata (a fresh store each run) against podman (a
#     fresh storage each run), both as the user.
# Medians of RUNS (default 7, at least 5) with min and max, in ms.
# The image (busybox-static and a generated tree of FILES files, default
# 10000, plus 20 files of 1 MiB) is built here, never downloaded.
# /dev/fuse and /dev/net/tun are bound to 0666 nodes in a private mount
# namespace (a host where they are root's is not changed for anyone).
#
#   benches/rootless-bench.sh [RUNS]      STRATA=path/to/strata to override
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/benches/lib.sh"
RUNS=${1:-7}
[ "$RUNS" -ge 5 ] || { echo "RUNS must be at least 5" >&2; exit 1; }
STRATA=${STRATA:-${CARGO_TARGET_DIR:-$here/target}/release/strata}
[ -x "$STRATA" ] || { echo "build first: cargo build --release (or set STRATA=)" >&2; exit 1; }
for t in busybox podman runc fuse-overlayfs fusermount3 newuidmap pasta setpriv useradd docker-registry skopeo curl; do
    command -v "$t" >/dev/null || { echo "needs $t" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "needs root (useradd, a private mount namespace)" >&2; exit 1; }

if [ -z "${STRATA_ROOTLESS_BENCH_NS:-}" ]; then
    export STRATA_ROOTLESS_BENCH_NS=1
    exec unshare -m --propagation private -- "$0" "$@"
fi

WORK=$(bench_scratch rlbench)
chmod 755 "$WORK"
USER_NAME=strlb$$
useradd -m -s /bin/sh "$USER_NAME"
U=$(id -u "$USER_NAME"); G=$(id -g "$USER_NAME"); H=$(getent passwd "$USER_NAME" | cut -d: -f6)
RUNDIR=/run/user/$U
cleanup() {
    set +e
    bench_cleanup
    for _ in 1 2 3; do
        for pid in $(pgrep -u "$U"); do kill -9 "$pid" 2>/dev/null; done
        sleep 0.2
    done
    grep -E " ($WORK|$H)" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
    userdel -r "$USER_NAME" >/dev/null 2>&1
    rm -rf "$H" "$RUNDIR" "$WORK"
}
trap cleanup EXIT INT TERM
mkdir -p "$RUNDIR" && chown "$U:$G" "$RUNDIR" && chmod 700 "$RUNDIR"
mknod -m 0666 "$WORK/fuse" c 10 229 && mount --bind "$WORK/fuse" /dev/fuse
mknod -m 0666 "$WORK/tun" c 10 200 && mount --bind "$WORK/tun" /dev/net/tun
cp "$STRATA" "$WORK/strata" && chmod 755 "$WORK/strata"

as_user() {  # runs sh -c "$1" as the user
    setpriv --reuid="$U" --regid="$G" --init-groups -- env -i HOME="$H" \
        XDG_DATA_HOME="$H/.local/share" XDG_RUNTIME_DIR="$RUNDIR" \
        PATH=/usr/sbin:/usr/bin:/sbin:/bin S="$WORK/strata" \
        P="podman --runtime runc --cgroup-manager cgroupfs --storage-driver overlay --storage-opt overlay.mount_program=/usr/bin/fuse-overlayfs" \
        /bin/sh -c "$1"
}
ms() { awk '{printf "%.1f\n", $1 / 1000000}'; }  # ns -> ms
timed() {  # ns of running sh -c "$1" as the user
    as_user "s=\$(date +%s%N); $1 >/dev/null 2>&1 || echo FAILED >&2; e=\$(date +%s%N); echo \$((e - s))"
}

# The image: busybox and its applets, a generated tree, 20 files of 1 MiB.
TREE=$WORK/tree
mkdir -p "$TREE/bin" "$TREE/etc" "$TREE/tmp" "$TREE/data/big"
cp "$(command -v busybox)" "$TREE/bin/busybox"
for a in sh true ls cat; do ln -s busybox "$TREE/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$TREE/etc/passwd"
printf 'root:x:0:\n' >"$TREE/etc/group"
python3 - "$TREE/data" "${FILES:-10000}" <<'PY'
import os, sys
root, count = sys.argv[1], int(sys.argv[2])
for i in range(count):
    d = os.path.join(root, "d%02d" % (i % 100), "e%d" % (i % 7))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%06d" % i), "wb") as f:
        f.write(os.urandom(512 + (i * 977) % 8192))
for i in range(20):
    with open(os.path.join(root, "big", "b%02d" % i), "wb") as f:
        f.write(os.urandom(1 << 20))
PY
tar -C "$TREE" -cf "$WORK/image.tar" . && chmod 644 "$WORK/image.tar"
as_user "\$S import $WORK/image.tar rlbench:1 >/dev/null && \$P import $WORK/image.tar localhost/rlbench:1 >/dev/null"
# fuse-overlayfs's lower directory: the same tree, the user's.
mkdir -p "$WORK/lower" "$WORK/fo" && chown "$U:$G" "$WORK/lower" "$WORK/fo"
as_user "tar -C $WORK/lower -xf $WORK/image.tar --no-same-owner"
# Warm-ups (layer caches, podman's first-run set-up).
as_user "\$S run --rm rlbench:1 true && \$P run --rm localhost/rlbench:1 true" >/dev/null

row() { printf '%-58s %9s %9s %9s\n' "$@"; }
stats() { ms | bench_stats; }
echo "rootless-bench: RUNS=$RUNS FILES=${FILES:-10000} $(date -u +%Y-%m-%dT%H:%MZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
row "what (ms)" median min max
declare -A MED
measure() {  # NAME COMMAND
    local name=$1 cmd=$2 out
    out=$(for _ in $(seq "$RUNS"); do timed "$cmd"; done | stats)
    MED[$name]=${out%% *}
    # shellcheck disable=SC2086
    row "$name" $out
}
measure "strata run --rm IMAGE true (pasta)" "\$S run --rm rlbench:1 true"
measure "podman run --rm IMAGE true (default network)" "\$P run --rm localhost/rlbench:1 true"
measure "strata run --rm --network none IMAGE true" "\$S run --rm --network none rlbench:1 true"
measure "podman run --rm --network none IMAGE true" "\$P run --rm --network none localhost/rlbench:1 true"

read_all='find "$M" -type f -print0 | xargs -0 cat >/dev/null'
mount_reads() {  # NAME MOUNT-COMMAND UMOUNT-COMMAND -> cold and warm rows
    local name=$1 mount=$2 umount=$3 cold=() warm=()
    for _ in $(seq "$RUNS"); do
        as_user "$mount" >/dev/null
        bench_drop_caches
        cold+=("$(timed "M=$WORK/m; $read_all")")
        warm+=("$(timed "M=$WORK/m; $read_all")")
        as_user "$umount" >/dev/null
    done
    local c w
    c=$(printf '%s\n' "${cold[@]}" | stats); w=$(printf '%s\n' "${warm[@]}" | stats)
    MED["$name cold"]=${c%% *}; MED["$name warm"]=${w%% *}
    # shellcheck disable=SC2086
    row "$name, cold read of every file" $c
    # shellcheck disable=SC2086
    row "$name, warm read of every file" $w
}
mkdir -p "$WORK/m" && chown "$U:$G" "$WORK/m"
mount_reads "strata mount" "\$S mount rlbench:1 $WORK/m" "\$S umount $WORK/m"
mount_reads "fuse-overlayfs" \
    "rm -rf $WORK/fo/u $WORK/fo/w; mkdir -p $WORK/fo/u $WORK/fo/w; fuse-overlayfs -o lowerdir=$WORK/lower,upperdir=$WORK/fo/u,workdir=$WORK/fo/w $WORK/m" \
    "fusermount3 -u $WORK/m"
# root's mount of the same image (passthrough), in a store of its own.
ROOT_STORE=$WORK/root-store
timed_root() {  # ns of running sh -c "$1" as root
    local s e
    s=$(date +%s%N); sh -c "$1" >/dev/null 2>&1 || echo FAILED >&2; e=$(date +%s%N); echo $((e - s))
}
"$WORK/strata" --root "$ROOT_STORE" import "$WORK/image.tar" rlbench:1 >/dev/null
root_cold=(); root_warm=()
for _ in $(seq "$RUNS"); do
    "$WORK/strata" --root "$ROOT_STORE" mount rlbench:1 "$WORK/m" >/dev/null
    bench_drop_caches
    root_cold+=("$(timed_root "M=$WORK/m; $read_all")")
    root_warm+=("$(timed_root "M=$WORK/m; $read_all")")
    "$WORK/strata" --root "$ROOT_STORE" umount "$WORK/m" >/dev/null
done
c=$(printf '%s\n' "${root_cold[@]}" | stats)
w=$(printf '%s\n' "${root_warm[@]}" | stats)
MED["root mount cold"]=${c%% *}; MED["root mount warm"]=${w%% *}
# shellcheck disable=SC2086
row "root's strata mount (passthrough), cold read of every file" $c
# shellcheck disable=SC2086
row "root's strata mount (passthrough), warm read of every file" $w

# The pull: five:1 of the registry benchmark, from a registry on loopback.
ONE_MB=16 SMALL_FILES=10 python3 "$here/benches/gen-images.py" "$WORK/gen" >/dev/null
bench_start_registry "$WORK/registry"
skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$WORK/gen/layout:five-1" \
    "docker://$REGISTRY/bench/five:1" >/dev/null
rm -rf "$WORK/gen"
sync
pull_strata=(); pull_podman=()
for r in $(seq "$RUNS"); do  # the peers alternate
    pull_strata+=("$(timed "\$S --root \$HOME/ps-$r pull -q $REGISTRY/bench/five:1")")
    pull_podman+=("$(timed "\$P --root \$HOME/pp-$r --runroot \$XDG_RUNTIME_DIR/pr-$r pull -q --tls-verify=false $REGISTRY/bench/five:1")")
    sync
done
# Removed only now: on this ext4 without a journal, every file created
# soon after thousands were deleted nearby costs a scan of them (ext4's
# recently_deleted(), see BENCHMARKS.md), which made every pull after the
# first take 4 s of system time (registry-bench.sh does the same).
for r in $(seq "$RUNS"); do
    as_user "rm -rf \$HOME/ps-$r; \$P --root \$HOME/pp-$r --runroot \$XDG_RUNTIME_DIR/pr-$r system reset -f; rm -rf \$HOME/pp-$r" >/dev/null 2>&1
done
p=$(printf '%s\n' "${pull_strata[@]}" | stats); q=$(printf '%s\n' "${pull_podman[@]}" | stats)
MED["pull strata"]=${p%% *}; MED["pull podman"]=${q%% *}
# shellcheck disable=SC2086
row "strata pull five:1 (fresh store)" $p
# shellcheck disable=SC2086
row "podman pull five:1 (fresh storage)" $q

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3fx", a / b }'; }
echo "run --rm, pasta vs podman's default:   $(ratio "${MED["strata run --rm IMAGE true (pasta)"]}" "${MED["podman run --rm IMAGE true (default network)"]}") (goal <= 0.1x)"
echo "run --rm, --network none:              $(ratio "${MED["strata run --rm --network none IMAGE true"]}" "${MED["podman run --rm --network none IMAGE true"]}") (goal <= 0.1x)"
echo "cold read, strata / fuse-overlayfs:    $(ratio "${MED["strata mount cold"]}" "${MED["fuse-overlayfs cold"]}") (goal < 1x)"
echo "warm read, strata / fuse-overlayfs:    $(ratio "${MED["strata mount warm"]}" "${MED["fuse-overlayfs warm"]}") (goal < 1x)"
echo "cold read, rootless / root's mount:    $(ratio "${MED["strata mount cold"]}" "${MED["root mount cold"]}") (goal <= 1.5x)"
echo "warm read, rootless / root's mount:    $(ratio "${MED["strata mount warm"]}" "${MED["root mount warm"]}") (goal <= 1.5x)"
echo "pull five:1, strata / podman:          $(ratio "${MED["pull strata"]}" "${MED["pull podman"]}") (goal <= 0.5x)"
