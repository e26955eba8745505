#!/usr/bin/env bash
# What the kernel image mount costs over the same data, one layer, no
# peers but the limits: the experiment behind "What the overlay itself
# costs" in BENCHMARKS.md.
#
#   [ROUNDS=11] [BENCH_DIR=/] benches/overlay-cost.sh [STRATA]
#
# One layer of 9,000 files (~300 MB, fs-bench's sizes), imported into a
# fresh store and read four ways, alternating, cold (page cache dropped)
# and warm (dropped, then filled by one untimed read), with
# `tar cf - . | cat`:
#   plain        `tar -x` of the layer into a fresh directory (the limit)
#   ovl-plain    kernel overlayfs whose lower is that plain tree (what
#                overlayfs itself costs, no metacopy, no shared inodes)
#   store-data   the store's files of the image hard-linked into a plain
#                tree (the store's placement, no overlay)
#   ovl-links    kernel overlayfs whose lower is that linked tree (what a
#                view of hard links instead of metacopy files would cost)
#   store        `strata mount --driver overlay` (the view: a metacopy
#                layer over a data-only layer)
# Prints each one's median with min and max, its ratio to plain's, the
# median of its paired ratios (each round's run over plain's of that
# round) and the median system time. Needs root, python3.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/benches/lib.sh"
ROUNDS=${ROUNDS:-11}
strata=$(realpath "${1:-$here/target/release/strata}")
[[ $(id -u) == 0 ]] || { echo "overlay-cost.sh: needs root" >&2; exit 2; }
work=$(bench_scratch overlay-cost)
S="$strata --root $work/store"
cleanup() {
    local m
    for m in ovl-plain ovl-links; do
        mountpoint -q "$work/$m" 2>/dev/null && umount "$work/$m"
    done
    mountpoint -q "$work/mnt" 2>/dev/null && $S umount "$work/mnt" >/dev/null
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

mkdir -p "$work"/{plain,mnt,ovl-plain,ovl-links,empty,t}
python3 - "$work/gen" <<'PY'
import os, random, sys
rnd = random.Random(42)
avg = 300 * 2**20 // 9000
for i in range(9000):
    d = os.path.join(sys.argv[1], f"d{(i // 50) % 60}", f"s{i % 7}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i}"), "wb") as f:
        f.write(os.urandom(max(1, int(rnd.expovariate(1 / avg)))))
PY
tar -C "$work/gen" -cf "$work/layer.tar" .
rm -rf "$work/gen"
tar -C "$work/plain" -xf "$work/layer.tar"
$S import "$work/layer.tar" bench/overlay:1 >/dev/null
$S mount --driver overlay bench/overlay:1 "$work/mnt" >/dev/null
hex=$($S images -q --no-trunc bench/overlay:1 | sed 's/^sha256://')
view=$work/store/views/$hex
bench_link_view "$view" "$work/store-data"
# overlayfs without an upper layer wants two layers: the view's data-only
# layer is the second (nothing in the linked tree redirects to it).
mount -t overlay overlay -o "ro,lowerdir=$work/store-data::$view/data" "$work/ovl-links"
# The plain tree's overlay gets an empty directory as its second layer.
mount -t overlay overlay -o "ro,lowerdir=$work/plain:$work/empty" "$work/ovl-plain"

variants=(plain ovl-plain store-data ovl-links store)
dir_of() { case $1 in store) echo "$work/mnt" ;; *) echo "$work/$1" ;; esac; }
for mode in cold warm; do
    for r in $(seq "$ROUNDS"); do
        for i in $(bench_rotate "${#variants[@]}" "$r"); do
            v=${variants[$i]}
            d=$(dir_of "$v")
            # A warm round fills the cache anew, so no round inherits the
            # pages an earlier filling happened to get (benches/warm-spread.sh).
            bench_drop_caches
            if [[ $mode == warm ]]; then bench_read_tree "$d"; fi
            s=$EPOCHREALTIME
            /usr/bin/time -f %S -o "$work/t/sys" sh -c "cd '$d' && tar cf - . | cat >/dev/null"
            echo "$EPOCHREALTIME - $s" | bc -l >>"$work/t/$mode.$v"
            cat "$work/t/sys" >>"$work/t/$mode-sys.$v"
        done
    done
done

printf '%-6s %-11s %8s %17s %7s %18s %8s\n' case variant median min-max ratio paired sys
for mode in cold warm; do
    read -r base _ _ < <(bench_stats <"$work/t/$mode.plain")
    for v in "${variants[@]}"; do
        read -r m lo hi < <(bench_stats <"$work/t/$mode.$v")
        read -r pm plo phi < <(bench_paired "$work/t/$mode.plain" "$work/t/$mode.$v")
        read -r sys _ _ < <(bench_stats <"$work/t/$mode-sys.$v")
        printf '%-6s %-11s %8.3f %8.3f-%8.3f %6.2fx %18s %8s\n' "$mode" "$v" "$m" "$lo" "$hi" "$(echo "$m / $base" | bc -l)" \
            "$(printf '%.2fx (%.2f-%.2f)' "$pm" "$plo" "$phi")" "$sys"
    done
done
echo "(median of $ROUNDS alternating rounds, each starting one variant further; ratio: median / plain's"
echo " median; paired: median (min-max) of each round's run / plain's run of that round;"
echo " sys: median system seconds of the pipeline)"
