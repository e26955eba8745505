#!/usr/bin/env bash
# The main job, offline: install what is needed, build strata, build a demo
# image from busybox-static, and show it working.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/install-deps.sh
cargo build --release --workspace
strata="$PWD/target/release/strata"
root=${STRATA_ROOT:-/var/lib/strata}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
cp /bin/busybox "$work/rootfs/bin/busybox"
for applet in sh ls cat echo env id hostname ps true uname; do ln -sf busybox "$work/rootfs/bin/$applet"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' > "$work/rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$work/rootfs/etc/group"
echo "Hello from a strata container" > "$work/rootfs/etc/motd"
tar -C "$work/rootfs" -cf "$work/demo.tar" .
"$strata" --root "$root" import -c 'CMD ["/bin/sh", "-c", "cat /etc/motd; uname -a; id"]' -m "strata demo image" "$work/demo.tar" strata-demo:latest
S() { "$strata" --root "$root" "$@"; }
S images
S history strata-demo
echo "== the image as a directory"
mp=$(S mount strata-demo)
ls -l "$mp" "$mp/etc"
S umount "$mp" >/dev/null
echo "== a container from it"
S run --rm --network none --name strata-demo-run strata-demo
S run --rm --network none --hostname demo strata-demo sh -c 'echo "hostname: $(hostname)"; ls /proc/1/ns | head -3'
echo "== an image built from a Dockerfile"
app="$work/app"
mkdir -p "$app"
echo "hello from strata build" > "$app/greeting.txt"
printf 'FROM strata-demo\nCOPY greeting.txt /srv/\nRUN cat /srv/greeting.txt > /srv/copy\nCMD ["cat", "/srv/copy"]\n' > "$app/Dockerfile"
S build --network none -t strata-demo-app "$app"
S run --rm --network none strata-demo-app
S fsck
