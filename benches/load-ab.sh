#!/usr/bin/env bash
# Alternating load rounds of two or more strata builds, with `tar -x` of
# the same layer beside them: the A/B behind the load figures in
# BENCHMARKS.md ("Store: deduplication and load throughput").
#
#   [ROUNDS=8] [BENCH_DIR=/] benches/load-ab.sh STRATA [STRATA...]
#
# The tree is store-bench.sh's base (9,000 files, ~300 MB), imported and
# saved by the first build. Each round loads the archive with every
# build in turn into a fresh root, then runs `tar -x` of the layer into a
# fresh directory; each from a dropped page cache with its input read
# back. Nothing is deleted until the end (see bench_scratch in lib.sh:
# creates right after a large delete are slower on this ext4). Prints
# each one's median with min and max. Needs root (drop_caches), python3.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/benches/lib.sh"
ROUNDS=${ROUNDS:-8}
[[ $# -ge 1 ]] || { echo "usage: load-ab.sh STRATA [STRATA...]" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "load-ab.sh: needs root" >&2; exit 2; }
builds=()
for b in "$@"; do builds+=("$(realpath "$b")"); done
work=$(bench_scratch load-ab)
trap 'rm -rf "$work"' EXIT
python3 - "$work/base" <<'PY'
import os, random, sys
rnd = random.Random(1234)
for i in range(9000):
    d = os.path.join(sys.argv[1], "usr/share/d%03d" % (i % 300))
    os.makedirs(d, exist_ok=True)
    size = min(int(rnd.expovariate(1 / 33000)), 4 << 20)
    with open(os.path.join(d, "f%05d" % i), "wb") as f:
        f.write(rnd.randbytes(size))
PY
tar -C "$work/base" -cf "$work/base.tar" .
"${builds[0]}" --root "$work/seed" import "$work/base.tar" bench/a:1 >/dev/null
"${builds[0]}" --root "$work/seed" save -o "$work/a.tar" bench/a:1
# The input and the programs are read back after the drop: what is timed
# is the load, not reading a 25 MB executable (strata's text is about
# 22 MB, tar's 0.5 MB; BENCHMARKS.md, "Cold start").
tar_bin=$(command -v tar)
fresh() { sync; echo 3 >/proc/sys/vm/drop_caches; cat "$1" "${builds[@]}" "$tar_bin" ${WARM:-} >/dev/null; }
for r in $(seq "$ROUNDS"); do
    for i in "${!builds[@]}"; do
        fresh "$work/a.tar"
        s=$EPOCHREALTIME
        "${builds[$i]}" --root "$work/r$r-$i" load -q -i "$work/a.tar" >/dev/null
        echo "$EPOCHREALTIME - $s" | bc -l >>"$work/t$i"
    done
    fresh "$work/base.tar"; mkdir "$work/x$r"
    s=$EPOCHREALTIME
    tar -C "$work/x$r" -xf "$work/base.tar"
    echo "$EPOCHREALTIME - $s" | bc -l >>"$work/tar"
done
read -r tm _ _ < <(bench_stats <"$work/tar")
printf '%-50s %8s %17s %7s\n' what median min-max ratio
for i in "${!builds[@]}"; do
    read -r m lo hi < <(bench_stats <"$work/t$i")
    printf '%-50s %8.3f %8.3f-%8.3f %7.2f\n' "load: ${builds[$i]}" "$m" "$lo" "$hi" "$(echo "$m / $tm" | bc -l)"
done
read -r m lo hi < <(bench_stats <"$work/tar")
printf '%-50s %8.3f %8.3f-%8.3f %7.2f\n' "tar -x" "$m" "$lo" "$hi" 1
echo "(median of $ROUNDS alternating rounds)"
