# Sandbox capability: Docker Engine (+ gVisor's runsc, 2024-07 or newer, registered as a runtime) and the offline-built
# sandbox image.
# Sourced by .ci/run; idempotent and quiet; a second run takes well under a second.
# The engine runs without a bridge or iptables rules: sandboxes get no network at all.
_sandbox_setup() {
  local need=()
  command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  # gVisor: bookworm's runsc (2022-12) stops sandboxes on an early exec; trixie's (2024-07, a static Go binary) works.
  # Only runsc is taken from trixie (pinned); every other package stays on bookworm.
  local runsc_date
  runsc_date=$(runsc --version 2>/dev/null | sed -n '1s/.*~\([0-9]\{8\}\).*/\1/p')
  if [ "${runsc_date:-0}" -lt 20240729 ]; then
    cat >/etc/apt/sources.list.d/mcpplat-trixie.sources <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    printf 'Package: *\nPin: release n=trixie\nPin-Priority: 1\n\nPackage: runsc\nPin: release n=trixie\nPin-Priority: 990\n' \
      >/etc/apt/preferences.d/mcpplat-trixie
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runsc >/dev/null
  fi
  if command -v runsc >/dev/null 2>&1; then
    # Register runsc in daemon.json, keeping whatever else is there.
    # --network=none: sandboxes never have a network, and runsc refuses a root-namespace network otherwise.
    mkdir -p /etc/docker
    python3 - "$(command -v runsc)" <<'PY'
import json, pathlib, sys
path = pathlib.Path("/etc/docker/daemon.json")
config = json.loads(path.read_text() or "{}") if path.exists() else {}
wanted = {"path": sys.argv[1], "runtimeArgs": ["--network=none"]}
if config.get("runtimes", {}).get("runsc") != wanted:
    config.setdefault("runtimes", {})["runsc"] = wanted
    path.write_text(json.dumps(config, indent=2) + "\n")
PY
  fi
  if ! docker version >/dev/null 2>&1; then
    nohup dockerd --bridge=none --iptables=false >/var/log/dockerd.log 2>&1 &
    local n=0
    until docker version >/dev/null 2>&1; do
      n=$((n + 1))
      if [ $n -gt 100 ]; then echo "30-docker: dockerd did not start; see /var/log/dockerd.log" >&2; return 1; fi
      sleep 0.2
    done
  elif command -v runsc >/dev/null 2>&1 && ! docker info --format '{{json .Runtimes}}' | grep -q '"runsc"'; then
    # A dockerd that was already running reloads its runtimes on SIGHUP.
    pkill -HUP -x dockerd || true
    local n=0
    until docker info --format '{{json .Runtimes}}' | grep -q '"runsc"'; do
      n=$((n + 1))
      if [ $n -gt 50 ]; then echo "30-docker: dockerd did not register runsc; see its log" >&2; return 1; fi
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
