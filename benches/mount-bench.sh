#!/usr/bin/env bash
# Mount readiness and daemon memory, both drivers (run as root):
#   - the first `strata mount` of a 10k-file and of a 100k-file image
#     (served by FUSE), and when the image's view, built in the background
#     since, is there (docs/fs.md, "Kernel image mounts");
#   - `strata mount` of each: time until the command returns (it returns
#     once the mount answers), median of 5, kernel (`--driver overlay`,
#     view already built) and fuse (`--driver fuse`);
#   - a full walk (`find` with attributes) of the 100k-file mount on a cold
#     cache, each driver (for fuse every directory is read from the store);
#   - resident memory of the fuse mount daemon for a 100k-file image.
#   [BENCH_DIR=/] benches/mount-bench.sh [WORKDIR]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/benches/lib.sh"
work=${1:-$(bench_scratch mbench)}
root=$work/root
cleanup() { "$strata" --root "$root" umount "$root/mounts" >/dev/null 2>&1 || true
  for m in $(awk -v b="$work" '$2 ~ "^"b {print $2}' /proc/mounts); do umount -l "$m" || true; done
  rm -rf "$work"; }
cargo build --release --quiet --manifest-path "$here/Cargo.toml" --bin strata
strata="$here/target/release/strata"
trap cleanup EXIT
S="$strata --root $root"
python3 - "$work" <<'PY'
import os, sys
work = sys.argv[1]
for name, count in (("t10k", 10000), ("t100k", 100000)):
    for i in range(count):
        d = os.path.join(work, name, "d%03d" % (i % 500), "e%02d" % (i % 20))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "f%06d" % i), "w") as f:
            f.write("file %d\n" % i)
PY
tar -C "$work/t10k" -cf "$work/t10k.tar" . && $S import "$work/t10k.tar" mb/10k >/dev/null
tar -C "$work/t100k" -cf "$work/t100k.tar" . && $S import "$work/t100k.tar" mb/100k >/dev/null
ms_since() { echo "($(date +%s%N) - $1) / 1000000" | bc -l; }
# The first mount as root is FUSE's and starts building the image's view
# (a kernel mount's) in the background: its readiness, and when the view
# is there.
first_mount() {  # IMAGE -> "ready_ms view_ms"
  local s mp ready hex
  hex=$($S images -q --no-trunc "$1" | sed 's/^sha256://')
  s=$(date +%s%N); mp=$($S mount "$1"); ready=$(ms_since $s)
  while [[ ! -d $root/views/$hex/data ]]; do sleep 0.01; done
  echo "$ready $(ms_since $s)"
  $S umount "$mp" >/dev/null
}
read -r first10 view10 < <(first_mount mb/10k)
read -r first100 view100 < <(first_mount mb/100k)
ready_ms() {  # median of 5 mount-ready times of image $1 with driver $2, in ms
  local times=() s e mp
  for i in 1 2 3 4 5; do
    s=$(date +%s%N); mp=$($S mount --driver "$2" "$1"); e=$(date +%s%N)
    times+=($(( (e - s) / 1000 )))
    ls "$mp" >/dev/null
    $S umount "$mp" >/dev/null
  done
  echo "$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p) / 1000" | bc -l
}
walk_ms() {  # first full walk of the 100k-file image mounted with driver $1
  local mp s w
  mp=$($S mount --driver "$1" mb/100k)
  sync; echo 3 >/proc/sys/vm/drop_caches
  s=$(date +%s%N); find "$mp" -printf '%s %m %u\n' >/dev/null; w=$(ms_since $s)
  $S umount "$mp" >/dev/null
  echo "$w"
}
k10=$(ready_ms mb/10k overlay); k100=$(ready_ms mb/100k overlay)
f10=$(ready_ms mb/10k fuse); f100=$(ready_ms mb/100k fuse)
kwalk=$(walk_ms overlay); fwalk=$(walk_ms fuse)
mp=$($S mount --driver fuse mb/100k)
find "$mp" -printf '%s %m %u\n' >/dev/null   # walk it all once
pid=$($S mount | awk -v m="$mp" '$4 == m {print $3}')
rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
$S umount "$mp" >/dev/null
printf '%-62s %10s\n' "what" "value"
printf '%-62s %8.1f ms\n' "first strata mount of the 10k-file image, ready (fuse)" "$first10"
printf '%-62s %8.1f ms\n' "  its view built in the background, after" "$view10"
printf '%-62s %8.1f ms\n' "first strata mount of the 100k-file image, ready (fuse)" "$first100"
printf '%-62s %8.1f ms\n' "  its view built in the background, after" "$view100"
printf '%-62s %8.1f ms\n' "mount of the 10k-file image, ready, kernel (median of 5)" "$k10"
printf '%-62s %8.1f ms\n' "mount of the 100k-file image, ready, kernel (median of 5)" "$k100"
printf '%-62s %8.1f ms\n' "mount of the 10k-file image, ready, fuse (median of 5)" "$f10"
printf '%-62s %8.1f ms\n' "mount of the 100k-file image, ready, fuse (median of 5)" "$f100"
printf '%-62s %8.0f ms\n' "full walk of the 100k-file mount, cold cache, kernel" "$kwalk"
printf '%-62s %8.0f ms\n' "first full walk of the 100k-file mount, cold cache, fuse" "$fwalk"
printf '%-62s %7.1f MiB\n' "fuse daemon RSS, 100k-file image, after a full walk" "$(echo "$rss / 1024" | bc -l)"
printf '%-62s %7.1f MiB\n' "fuse daemon peak RSS (VmHWM), same" "$(echo "$hwm / 1024" | bc -l)"
