#!/usr/bin/env bash
# Runs pjdfstest (crates.io) on a writable stratafs mount and compares the
# failures with tests/pjdfstest-expected-failures.txt (one test name per
# line, then "#" and the reason).
#
#   tools/pjdfstest.sh            run and compare; exit 1 on an unexpected failure
#   tools/pjdfstest.sh --list     also print every failing test
#   STRATAFS_OPTS=no_passthrough tools/pjdfstest.sh   extra stratafs -o options
#
# Needs root and /dev/fuse. Creates the user and group "tests" if missing
# (pjdfstest switches to nobody and tests). Everything it mounts is
# unmounted and the daemon it started is killed (by pid) on exit.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
expected="$root/tests/pjdfstest-expected-failures.txt"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}

if [[ $(id -u) != 0 || ! -e /dev/fuse ]]; then
    echo "pjdfstest.sh: needs root and /dev/fuse" >&2
    exit 2
fi
command -v pjdfstest >/dev/null || cargo install pjdfstest
cargo build -q --release -p strata-tools --bin stratafs
stratafs="$CARGO_TARGET_DIR/release/stratafs"

getent group tests >/dev/null || groupadd tests
id tests >/dev/null 2>&1 || useradd -g tests -M -s /usr/sbin/nologin tests

work=$(mktemp -d /tmp/strata-pjdfstest.XXXXXX)
chmod 755 "$work"
mkdir "$work"/{lower,upper,work,mnt}
daemon=
cleanup() {
    umount -l "$work/mnt" 2>/dev/null || true
    if [[ -n $daemon ]]; then kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/pjdfstest.toml" <<'CONF'
[features]
posix_fallocate = {}
utime_now = {}
utimensat = {}

[settings]
naptime = 0.01
allow_remount = false

[dummy_auth]
entries = [["nobody", "nogroup"], ["tests", "tests"]]
CONF

# Foreground daemon in the background: its pid is ours to kill.
"$stratafs" -f -o "lowerdir=$work/lower,upperdir=$work/upper,workdir=$work/work${STRATAFS_OPTS:+,$STRATAFS_OPTS}" "$work/mnt" &
daemon=$!
for _ in $(seq 100); do
    mountpoint -q "$work/mnt" && break
    sleep 0.05
done
mountpoint -q "$work/mnt" || { echo "pjdfstest.sh: mount did not come up" >&2; exit 1; }

(cd "$work/mnt" && pjdfstest -c "$work/pjdfstest.toml" -p "$work/mnt") > "$work/log" 2>&1 || true
passed=$(grep -cE '[[:space:]]ok$' "$work/log" || true)
{ grep -E '[[:space:]]FAILED$' "$work/log" || true; } | awk '{print $1}' | sort -u > "$work/failed"
{ grep -vE '^[[:space:]]*(#|$)' "$expected" || true; } | awk '{print $1}' | sort -u > "$work/expected"

failed=$(wc -l < "$work/failed")
echo "pjdfstest on stratafs: $passed passed, $failed failed"
[[ ${1:-} == --list ]] && sed 's/^/  failed: /' "$work/failed"
unexpected=$(comm -23 "$work/failed" "$work/expected")
fixed=$(comm -13 "$work/failed" "$work/expected")
if [[ -n $fixed ]]; then
    echo "listed in $(basename "$expected") but passed (flaky, or fixed: see its reasons):"
    sed 's/^/  /' <<< "$fixed"
fi
if [[ -n $unexpected ]]; then
    echo "unexpected failures:"
    for t in $unexpected; do
        echo "  $t"
        grep -A4 -E "^$t[[:space:]]" "$work/log" | grep -vE "^$t|Backtrace" | sed 's/^/      /' | head -3
    done
    exit 1
fi
echo "no unexpected failures"
