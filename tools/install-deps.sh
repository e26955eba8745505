#!/usr/bin/env bash
# Installs the system packages strata's demo, tests and benchmarks use.
# Idempotent; needs root (apt-get). Nothing here downloads anything but
# Debian packages and crates.
set -euo pipefail
packages=(
  busybox-static   # the static shell inside test and demo images
  skopeo umoci     # independent oracles for image formats
  docker-registry  # the reference registry, started on 127.0.0.1 by tests
  fuse3 fuse-overlayfs attr libacl1-dev  # FUSE, the peer union fs, xattr tools, pjdfstest's needs
  uidmap           # newuidmap/newgidmap: rootless containers (tests/containers/rootless.rs)
  passt            # pasta: the default network of rootless containers, -p for them
  slirp4netns      # --network slirp4netns for rootless containers (their default without pasta)
  podman runc      # peer engine for interop and benchmarks
  openssl apache2-utils python3  # test CAs, htpasswd, helpers
  bc hyperfine pigz isal bubblewrap  # benchmarks (pigz: the inflate to compare with, Docker uses it when present; isal: igzip, ISA-L's inflate, for the durable-unpack floor; bubblewrap: run-bench's bare-namespaces peer)
  strace           # tests count the syscalls of a start (no fsync on `run`'s path)
  libseccomp-dev pkg-config  # building strata: seccomp filters (libseccomp crate)
  libisal-dev      # building strata: ISA-L, the inflate of gzip layers (src/image/isal.rs; zlib-rs without it)
  docker.io buildah  # oracles for build (dockerd is started by the tests, in their own namespaces)
  containerd       # the peer of `strata snapshotter` (containerd 1.6, ctr, the runc shim)
  golang-go golang-github-containerd-containerd-dev  # containerd's snapshotter conformance suite, built offline
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  # No package may start a service here (docker.io would start dockerd,
  # with its bridge and firewall rules, in the machine's own network):
  # tests start the daemons they need, in namespaces of their own.
  deny=/usr/sbin/policy-rc.d
  if [ ! -e "$deny" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$deny"
    chmod 755 "$deny"
    trap 'rm -f "$deny"' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Podman runs here only with runc and without default ulimits.
if [ -d /etc/containers ] || mkdir -p /etc/containers; then
  conf=/etc/containers/containers.conf
  if ! grep -q '^default_ulimits' "$conf" 2>/dev/null; then
    printf '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n' >> "$conf"
  fi
fi
modprobe fuse 2>/dev/null || true
