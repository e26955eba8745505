#!/usr/bin/env bash
# Registry benchmark (issue 4): pull a ~300 MB, ~9k-file image from a
# docker-registry on 127.0.0.1 with strata, `skopeo copy docker://... dir:`
# (download only) and `podman pull` (download and unpack); then push it to
# an empty registry with strata and with `skopeo copy dir:... docker://`.
# Prints the times (best of $RUNS) and the ratios the issue sets goals for.
#
# Needs: docker-registry, skopeo, python3; podman optional (run with runc:
# a containers.conf with `runtime = "runc"` is written for it).
# Usage: [RUNS=3] [BENCH_DIR=/var/tmp] benches/registry-bench.sh [path/to/strata]
#        (default: target/release/strata)
# Only 127.0.0.1 is ever contacted.
set -euo pipefail

STRATA=${1:-${STRATA:-target/release/strata}}
RUNS=${RUNS:-3}
FILES=${FILES:-9000}
TOTAL_MB=${TOTAL_MB:-300}
[ -x "$STRATA" ] || { echo "no strata binary at $STRATA (cargo build --release)"; exit 1; }
STRATA=$(realpath "$STRATA")
for tool in docker-registry skopeo python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y docker-registry skopeo python3)"; exit 1; }
done

# Where the stores and copies go. On a shared machine, pick a directory
# nobody else deletes in: ext4 without a journal skips recently deleted
# inodes when it allocates new ones, so 9,000 file creations in a block
# group where another process just removed many files cost seconds of
# system time (strata and podman alike).
BENCH_DIR=${BENCH_DIR:-/var/tmp}
WORK=$(mktemp -d "$BENCH_DIR/strata-bench.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_registry NAME -> sets REGISTRY_PORT
start_registry() {
  local dir=$WORK/registry-$1 port
  port=$(free_port)
  mkdir -p "$dir"
  cat > "$dir/config.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
http:
  addr: 127.0.0.1:$port
YML
  docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
    sleep 0.1
  done
  REGISTRY_PORT=$port
}

now() { date +%s.%N; }
# best_of CMD... : runs a setup-free command RUNS times (the command itself
# must use fresh state each time, see $RUN), prints the best time.
best=""
time_runs() {
  local name=$1; shift
  best=""
  for RUN in $(seq "$RUNS"); do
    export RUN
    local t0 t1
    t0=$(now)
    "$@" >/dev/null 2>"$WORK/$name.err" || { echo "$name failed:"; cat "$WORK/$name.err"; exit 1; }
    t1=$(now)
    local dt
    dt=$(python3 -c "print(f'{$t1-$t0:.3f}')")
    echo "  $name run $RUN: ${dt}s" >&2
    if [ -z "$best" ] || python3 -c "import sys; sys.exit(0 if $dt < $best else 1)"; then best=$dt; fi
    sync
  done
}

echo "== generating a ${TOTAL_MB} MB, ${FILES}-file image"
python3 - "$WORK/layout" "$FILES" "$TOTAL_MB" <<'PY'
import gzip, hashlib, io, json, os, random, sys, tarfile
out, nfiles, total_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(f"{out}/blobs/sha256", exist_ok=True)
rng = random.Random(4)
total = total_mb << 20
# Sizes: mostly small files, a few large ones, like a distribution image.
sizes = [rng.choice([200, 900, 2500, 6000, 14000, 40000]) for _ in range(nfiles - 20)]
big = max(0, total - sum(sizes)) // 20
sizes += [big] * 20
rng.shuffle(sizes)
words = b" ".join(bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(4000))
def content(i, n):
    if i % 3 == 0:  # incompressible (binaries, compressed data)
        return rng.randbytes(n)
    base = words[(i * 7919) % 1000:]
    reps = n // len(base) + 1
    return (base * reps)[:n]
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    with open(f"{out}/blobs/sha256/{d}", "wb") as f:
        f.write(data)
    return "sha256:" + d, len(data)
layers, diff_ids = [], []
nlayers = 5
per = (len(sizes) + nlayers - 1) // nlayers
for l in range(nlayers):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i in range(l * per, min(len(sizes), (l + 1) * per)):
            name = f"usr/share/l{l}/d{i % 97:02d}/file-{i:05d}"
            data = content(i, sizes[i])
            info = tarfile.TarInfo(name); info.size = len(data); info.mtime = 1700000000; info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    raw = raw.getvalue()
    diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
    digest, size = blob(gzip.compress(raw, compresslevel=6, mtime=0))
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size})
config = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {}}
cd, cs = blob(json.dumps(config).encode())
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs}, "layers": layers}
md, ms = blob(json.dumps(manifest).encode())
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
           "annotations": {"org.opencontainers.image.ref.name": "big"}}]}, open(f"{out}/index.json", "w"))
open(f"{out}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
print(f"  {len(sizes)} files, {sum(sizes) >> 20} MB uncompressed, {sum(l['size'] for l in layers) >> 20} MB compressed in {nlayers} layers")
PY

start_registry source
SRC=127.0.0.1:$REGISTRY_PORT
skopeo --insecure-policy copy --dest-tls-verify=false "oci:$WORK/layout:big" "docker://$SRC/bench/big:1" >/dev/null

echo "== pull"
strata_pull() { "$STRATA" --root "$WORK/strata-$RUN" pull "$SRC/bench/big:1"; }
time_runs strata-pull strata_pull; STRATA_PULL=$best
skopeo_pull() { skopeo --insecure-policy copy --src-tls-verify=false "docker://$SRC/bench/big:1" "dir:$WORK/skopeo-$RUN"; }
time_runs skopeo-pull skopeo_pull; SKOPEO_PULL=$best
PODMAN_PULL=""
if command -v podman >/dev/null && command -v runc >/dev/null; then
  printf '[engine]\nruntime = "runc"\n' > "$WORK/containers.conf"
  podman_pull() {
    CONTAINERS_CONF=$WORK/containers.conf podman --root "$WORK/podman-$RUN" --runroot "$WORK/podman-run-$RUN" \
      pull --tls-verify=false "$SRC/bench/big:1"
  }
  time_runs podman-pull podman_pull; PODMAN_PULL=$best
  for r in $(seq "$RUNS"); do
    CONTAINERS_CONF=$WORK/containers.conf podman --root "$WORK/podman-$r" --runroot "$WORK/podman-run-$r" system reset -f >/dev/null 2>&1 || true
  done
fi

echo "== push (to an empty registry each run)"
strata_push() {
  start_registry "strata-push-$RUN"
  "$STRATA" --root "$WORK/strata-1" tag "$SRC/bench/big:1" "127.0.0.1:$REGISTRY_PORT/bench/big:1"
  "$STRATA" --root "$WORK/strata-1" push "127.0.0.1:$REGISTRY_PORT/bench/big:1"
}
skopeo_push() {
  start_registry "skopeo-push-$RUN"
  skopeo --insecure-policy copy --dest-tls-verify=false "dir:$WORK/skopeo-1" "docker://127.0.0.1:$REGISTRY_PORT/bench/big:1"
}
# Registry start-up is inside the timed region for both; it is ~0.1 s.
time_runs strata-push strata_push; STRATA_PUSH=$best
time_runs skopeo-push skopeo_push; SKOPEO_PUSH=$best

ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
echo
echo "pull: strata ${STRATA_PULL}s, skopeo (download only) ${SKOPEO_PULL}s, podman ${PODMAN_PULL:-n/a}s"
echo "  strata/skopeo = $(ratio "$STRATA_PULL" "$SKOPEO_PULL") (goal <= 1.5)"
[ -n "$PODMAN_PULL" ] && echo "  strata/podman = $(ratio "$STRATA_PULL" "$PODMAN_PULL") (goal <= 0.35)"
echo "push: strata ${STRATA_PUSH}s, skopeo ${SKOPEO_PUSH}s"
echo "  strata/skopeo = $(ratio "$STRATA_PUSH" "$SKOPEO_PUSH")"
