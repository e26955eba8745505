#!/usr/bin/env bash
# How much a warm read of one plain tree moves from one filling of the
# page cache to the next, and between identical trees written different
# ways: the noise floor under fs-bench's and overlay-cost's warm cases.
#
#   [FILLS=6] [READS=5] [BENCH_DIR=/] benches/warm-spread.sh
#
# One tree of 9,000 files (~300 MB, fs-bench's sizes) three ways, the
# same names and bytes:
#   gen     written by a generator that creates files round-robin across
#           its 60 directories
#   copy    `cp -a` of gen (one directory after another)
#   tar-x   `tar -x` of gen's tar (the order an unpack writes)
# For each of FILLS fillings: drop the page cache, read every tree once
# untimed, then time READS warm `tar cf - . | cat` of each, alternating.
# Prints each filling's median per tree, then per tree the median of
# those medians with their min and max, and the spread (max/min).
# No strata involved. Needs root, python3.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/benches/lib.sh"
FILLS=${FILLS:-6} READS=${READS:-5}
[[ $(id -u) == 0 ]] || { echo "warm-spread.sh: needs root" >&2; exit 2; }
work=$(bench_scratch warm-spread)
trap 'rm -rf "$work"' EXIT INT TERM

python3 - "$work/gen" <<'PY'
import os, random, sys
rnd = random.Random(7)
avg = 300 * 2**20 // 9000
for i in range(9000):
    d = os.path.join(sys.argv[1], f"d{i % 60:02d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05d}"), "wb") as f:
        f.write(os.urandom(max(1, int(rnd.expovariate(1 / avg)))))
PY
cp -a "$work/gen" "$work/copy"
mkdir "$work/tar-x"
tar -C "$work/gen" -cf - . | tar -C "$work/tar-x" -xf -
trees=(gen copy tar-x)
mkdir "$work/t"

printf '%-7s' filling; printf ' %8s' "${trees[@]}"; echo
for f in $(seq "$FILLS"); do
    bench_drop_caches
    for t in "${trees[@]}"; do bench_read_tree "$work/$t"; done
    for r in $(seq "$READS"); do
        for t in "${trees[@]}"; do
            s=$EPOCHREALTIME; bench_read_tree "$work/$t"
            echo "$EPOCHREALTIME - $s" | bc -l >>"$work/t/$f.$t"
        done
    done
    printf '%-7s' "$f"
    for t in "${trees[@]}"; do
        read -r m _ _ < <(bench_stats <"$work/t/$f.$t")
        echo "$m" >>"$work/t/fills.$t"
        printf ' %8.3f' "$m"
    done
    echo
done
echo
printf '%-7s %8s %17s %7s\n' tree median min-max spread
for t in "${trees[@]}"; do
    read -r m lo hi < <(bench_stats <"$work/t/fills.$t")
    printf '%-7s %8.3f %8.3f-%8.3f %6.2fx\n' "$t" "$m" "$lo" "$hi" "$(echo "$hi / $lo" | bc -l)"
done
echo "(seconds; per filling the median of $READS warm reads; then the median of the $FILLS fillings' medians)"
