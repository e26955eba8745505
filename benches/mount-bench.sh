#!/usr/bin/env bash
# Mount readiness and daemon memory (issue: the FUSE filesystem):
#   - `strata mount` of a 10k-file and of a 100k-file image: time until the
#     command returns (it returns once the mount answers), median of 5;
#   - a full walk (`find` with attributes) of the 100k-file mount, the
#     first one after mounting (every directory is read from the store);
#   - resident memory of the mount daemon for a 100k-file image.
#   benches/mount-bench.sh [WORKDIR]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d /var/tmp/strata-mbench.XXXXXX)}
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
ready_ms() {  # median of 5 mount-ready times of image $1, in ms
  local times=() s e mp
  for i in 1 2 3 4 5; do
    s=$(date +%s%N); mp=$($S mount "$1"); e=$(date +%s%N)
    times+=($(( (e - s) / 1000 )))
    ls "$mp" >/dev/null
    $S umount "$mp" >/dev/null
  done
  echo "$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p) / 1000" | bc -l
}
med10=$(ready_ms mb/10k)
med100=$(ready_ms mb/100k)
mp=$($S mount mb/100k)
s=$(date +%s%N)
find "$mp" -printf '%s %m %u\n' >/dev/null   # walk it all once
walk=$(( ($(date +%s%N) - s) / 1000000 ))
pid=$($S mount | awk -v m="$mp" '$3 == m {print $2}')
rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
$S umount "$mp" >/dev/null
printf '%-52s %10s\n' "what" "value"
printf '%-52s %8.1f ms\n' "strata mount of a 10k-file image, ready (median of 5)" "$med10"
printf '%-52s %8.1f ms\n' "strata mount of a 100k-file image, ready (median of 5)" "$med100"
printf '%-52s %8d ms\n' "first full walk of the 100k-file mount" "$walk"
printf '%-52s %7.1f MiB\n' "daemon RSS, 100k-file image, after a full walk" "$(echo "$rss / 1024" | bc -l)"
printf '%-52s %7.1f MiB\n' "daemon peak RSS (VmHWM), same" "$(echo "$hwm / 1024" | bc -l)"
