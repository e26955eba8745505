#!/bin/sh
# A layer of a million entries: what importing it, starting a container
# on it and checking the store cost (wall time and peak RSS, from GNU
# time), and how large the database and its WAL grow. docs/store.md
# states the bounds these figures must stay within.
#
#   benches/million-bench.sh [ENTRIES]     STRATA=path/to/strata to override
#
# ENTRIES (default 1000000) small files, in directories of 1000, with 100
# distinct contents (so the store holds few files: the figures are the
# metadata's), plus a static busybox to run. Needs root, busybox, python3,
# bc, GNU time (/usr/bin/time). Nothing is downloaded.
set -eu

ENTRIES=${1:-1000000}
HERE=$(cd "$(dirname "$0")/.." && pwd)
STRATA=${STRATA:-${CARGO_TARGET_DIR:-$HERE/target}/release/strata}
BUSYBOX=$(command -v busybox || true)
[ -x "$STRATA" ] || { echo "build first: cargo build --release (or set STRATA=)"; exit 1; }
[ -n "$BUSYBOX" ] || { echo "needs busybox (apt-get install busybox-static)"; exit 1; }
[ -x /usr/bin/time ] || { echo "needs GNU time (apt-get install time)"; exit 1; }

WORK=$(mktemp -d /var/tmp/strata-million.XXXXXX)
cleanup() {
    "$STRATA" --root "$WORK/store" ps -aq 2>/dev/null | xargs -r "$STRATA" --root "$WORK/store" rm -f >/dev/null 2>&1 || true
    grep " $WORK" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

python3 - "$WORK/layer.tar" "$ENTRIES" "$BUSYBOX" <<'PY'
import io, os, sys, tarfile
out, entries, busybox = sys.argv[1], int(sys.argv[2]), sys.argv[3]
contents = [b"content %03d\n" % i for i in range(100)]
with tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as t:
    def add(name, kind=tarfile.REGTYPE, data=b"", link="", mode=0o644):
        info = tarfile.TarInfo(name)
        info.type, info.size, info.linkname, info.mode = kind, len(data), link, mode
        info.mtime = 1700000000
        t.addfile(info, io.BytesIO(data) if data else None)
    add("bin", tarfile.DIRTYPE, mode=0o755)
    with open(busybox, "rb") as f:
        add("bin/busybox", data=f.read(), mode=0o755)
    add("bin/true", tarfile.SYMTYPE, link="busybox", mode=0o777)
    n = 3
    d = 0
    while n < entries:
        add("d%04d" % d, tarfile.DIRTYPE, mode=0o755)
        n += 1
        for i in range(min(999, entries - n)):
            add("d%04d/f%03d" % (d, i), data=contents[(d + i) % 100])
            n += 1
        d += 1
PY

S="$STRATA --root $WORK/store"
measure() { # label, command...
    label=$1; shift
    /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >/dev/null
    read -r secs kb < "$WORK/time"
    printf '%-8s %8.2f s %8d MB RSS\n' "$label" "$secs" $((kb / 1024))
}
echo "== $ENTRIES entries, $(du -m "$WORK/layer.tar" | cut -f1) MB of tar ($STRATA)"
measure import $S import "$WORK/layer.tar" million:1
db=$(du -m "$WORK/store/strata.db" | cut -f1)
wal=$( (du -m "$WORK/store/strata.db-wal" 2>/dev/null || echo 0) | cut -f1)
printf '%-8s %8d MB database, %d MB WAL\n' "store" "$db" "$wal"
measure run $S run --rm --network none million:1 /bin/true
measure run $S run --rm --network none million:1 /bin/true
# The monitor (it serves the FUSE mount) is not the command's child: its
# peak RSS once a container on the image runs and `find` walks the tree.
$S run -d --name walk --network none million:1 /bin/busybox sleep 600 >/dev/null
monitor=$($S inspect -f '{{.State.MonitorPid}}' walk)
start=$(date +%s.%N)
$S exec walk /bin/busybox find / -xdev | wc -l > "$WORK/count"
walk=$(echo "$(date +%s.%N) - $start" | bc)
printf '%-8s %8.2f s %8d MB RSS of the monitor (%d names)\n' "walk" "$walk" \
    $(( $(awk '/VmHWM/ {print $2}' "/proc/$monitor/status") / 1024 )) "$(cat "$WORK/count")"
$S rm -f walk >/dev/null
measure fsck $S fsck
