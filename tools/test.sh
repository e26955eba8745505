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
cargo test --workspace -- --test-threads=2
# No mount may outlive the run.
left=$(grep -E ' fuse(\.|blk| )' /proc/mounts | grep -v /sys/fs/fuse || true)
if [ -n "$left" ]; then
  echo "FUSE mounts left behind by the tests:" >&2
  echo "$left" >&2
  exit 1
fi
