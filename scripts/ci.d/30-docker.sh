# Sandbox capability: Docker Engine (+ gVisor runsc registered as a runtime) and the offline-built sandbox image.
# Sourced by .ci/run; idempotent and quiet; a second run takes well under a second.
# The engine runs without a bridge or iptables rules: sandboxes get no network at all.
_sandbox_setup() {
  local need=()
  command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
  command -v runsc >/dev/null 2>&1 || need+=(runsc)
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  if [ ! -f /etc/docker/daemon.json ] && command -v runsc >/dev/null 2>&1; then
    mkdir -p /etc/docker
    # --network=none: sandboxes never have a network, and runsc refuses a root-namespace network otherwise.
    echo '{"runtimes": {"runsc": {"path": "'"$(command -v runsc)"'", "runtimeArgs": ["--network=none"]}}}' \
      >/etc/docker/daemon.json
  fi
  if ! docker version >/dev/null 2>&1; then
    nohup dockerd --bridge=none --iptables=false >/var/log/dockerd.log 2>&1 &
    local n=0
    until docker version >/dev/null 2>&1; do
      n=$((n + 1))
      if [ $n -gt 100 ]; then echo "30-docker: dockerd did not start; see /var/log/dockerd.log" >&2; return 1; fi
      sleep 0.2
    done
  fi
  local image=${SANDBOX_DEFAULT_IMAGE:-mcpplat/sandbox-python:1}
  if ! docker image inspect "$image" >/dev/null 2>&1; then
    apps/sandbox/image/build.sh "$image"
  fi
}
_sandbox_setup
unset -f _sandbox_setup
