#!/usr/bin/env bash
# Build the default Python sandbox image OFFLINE: no registry pull. A debootstrap minbase rootfs with python3
# (packages come from the Debian mirror apt already uses), two unprivileged users, then `docker import`.
#   uid 10000 `sbx-init`  runs the keep-alive (PID 1 under tini); never the user's code
#   uid 10001 `sandbox`   runs every exec: it cannot signal, ptrace or read /proc of the keep-alive
# Usage: build.sh [image-ref]   (default mcpplat/sandbox-python:1; SANDBOX_DEFAULT_IMAGE overrides)
# Needs root (debootstrap) and a running Docker Engine. About 40 s + 2 s.
set -euo pipefail
image=${1:-${SANDBOX_DEFAULT_IMAGE:-mcpplat/sandbox-python:1}}
suite=${SANDBOX_IMAGE_SUITE:-bookworm}
mirror=${SANDBOX_IMAGE_MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
mirror=${mirror:-http://deb.debian.org/debian}

command -v debootstrap >/dev/null || { echo "sandbox-image: debootstrap missing: apt-get install -y debootstrap" >&2; exit 2; }
docker version >/dev/null 2>&1 || { echo "sandbox-image: Docker Engine not reachable (DOCKER_HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}): start dockerd" >&2; exit 2; }

work=$(mktemp -d /tmp/sandbox-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
debootstrap --variant=minbase --include=python3 "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -20 "$work/debootstrap.log" >&2; exit 1; }

# Users: fixed uids the runtime relies on (apps/sandbox/runtime.py KEEPALIVE_USER / EXEC_USER).
chroot "$root" groupadd -g 10000 sbx-init
chroot "$root" useradd -u 10000 -g 10000 -M -d /nonexistent -s /usr/sbin/nologin sbx-init
chroot "$root" groupadd -g 10001 sandbox
chroot "$root" useradd -u 10001 -g 10001 -M -d /workspace -s /bin/bash sandbox
mkdir -p "$root/workspace"
chown 10001:10001 "$root/workspace"
# Smaller image; nothing here needs apt caches, docs or setuid binaries.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
find "$root" -xdev -perm /6000 -type f -exec chmod ug-s {} + 2>/dev/null || true

tar -C "$root" -c . | docker import \
  --change 'USER 10000:10000' \
  --change 'WORKDIR /workspace' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/workspace PYTHONDONTWRITEBYTECODE=1' \
  --change 'CMD ["sleep", "infinity"]' \
  --change 'LABEL io.mcpplat.sandbox.base=python' \
  - "$image" >/dev/null
echo "sandbox-image: built $image"
