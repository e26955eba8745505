#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests use, checks
# formatting and lints, then runs every test (real FUSE mounts, a real
# registry on 127.0.0.1, skopeo/umoci/podman as oracles).
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace -- --test-threads=2 2>&1 | tee "$log"
# POSIX conformance of a writable mount, against the checked-in list of
# expected failures.
./tools/pjdfstest.sh 2>&1 | tee -a "$log"
# No mount may outlive the run.
left=$(grep -E ' fuse(\.|blk| )' /proc/mounts | grep -v /sys/fs/fuse || true)
if [ -n "$left" ]; then
  echo "FUSE mounts left behind by the tests:" >&2
  echo "$left" >&2
  exit 1
fi
# One closing line for the whole run.
passed=$(grep -oE '(test result: ok\.|test result: FAILED\.) [0-9]+ passed' "$log" | grep -oE '[0-9]+' | paste -sd+ | bc)
failed=$(grep -oE 'test result: [A-Za-z]+\. [0-9]+ passed; [0-9]+ failed' "$log" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+' | paste -sd+ | bc)
pjd=$(grep -oE 'pjdfstest on stratafs: [0-9]+ passed' "$log" | grep -oE '[0-9]+' | head -1)
echo "total: $((passed + ${pjd:-0})) passed, ${failed:-0} failed"
