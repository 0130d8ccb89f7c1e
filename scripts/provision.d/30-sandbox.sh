# Sandbox capability: the Docker Engine (Debian docker.io, started without a bridge or iptables rules: sandboxes get
# no network at all), gVisor's runsc (2024-07 or newer, from Debian trixie) registered as a runtime, and the
# offline-built sandbox image. A second run takes well under a second.
# shellcheck source=scripts/provision.d/lib.sh
. "$(dirname "$0")/lib.sh"
etc=${PROVISION_ETC:-/etc}  # the tests point it at a scratch folder

# The runsc version line reads "runsc version release-20240729.0 (Debian 0.0~20240729.0-5)"-like; 0 when absent.
runsc_date() {
  local line=""
  if have runsc; then line=$(runsc --version 2>/dev/null | head -n 1 || true); fi
  case "$line" in
    *~[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]*) line=${line#*~}; echo "${line:0:8}" ;;
    *release-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]*) line=${line#*release-}; echo "${line:0:8}" ;;
    *) echo 0 ;;
  esac
}

engine_up() { have docker && docker version >/dev/null 2>&1; }

need=()
have dockerd || need+=(docker.io)
have docker || need+=(docker.io)
have debootstrap || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then apt_install "${need[@]}" || true; fi

# gVisor: bookworm's runsc (2022-12) stops sandboxes on an early exec; trixie's (2024-07, a static Go binary) works.
# Only runsc is taken from trixie (pinned); every other package stays on bookworm.
if [ "$(runsc_date)" -lt 20240729 ] && can_install && [ -d "$etc/apt/sources.list.d" ]; then
  cat >"$etc/apt/sources.list.d/mcpplat-trixie.sources" <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  printf 'Package: *\nPin: release n=trixie\nPin-Priority: 1\n\nPackage: runsc\nPin: release n=trixie\nPin-Priority: 990\n' \
    >"$etc/apt/preferences.d/mcpplat-trixie"
  PROVISION_APT_UPDATED="" apt_install runsc || true
fi

registered=0
if [ "$(runsc_date)" -ge 20240729 ] && [ -w "$etc" ]; then
  # Register runsc in daemon.json, keeping whatever else is there. --network=none: sandboxes never have a network,
  # and runsc refuses a root-namespace network otherwise.
  mkdir -p "$etc/docker" "$etc/apt/preferences.d"
  if have python3; then
    python3 - "$(command -v runsc)" "$etc/docker/daemon.json" <<'PY' && registered=1
import json, pathlib, sys
path = pathlib.Path(sys.argv[2])
config = json.loads(path.read_text() or "{}") if path.exists() else {}
wanted = {"path": sys.argv[1], "runtimeArgs": ["--network=none"]}
if config.get("runtimes", {}).get("runsc") != wanted:
    config.setdefault("runtimes", {})["runsc"] = wanted
    path.write_text(json.dumps(config, indent=2) + "\n")
PY
  elif [ ! -s "$etc/docker/daemon.json" ]; then
    printf '{"runtimes": {"runsc": {"path": "%s", "runtimeArgs": ["--network=none"]}}}\n' "$(command -v runsc)" \
      >"$etc/docker/daemon.json" && registered=1
  fi
fi

if ! engine_up && have dockerd && [ "$(id -u 2>/dev/null || echo 1)" = 0 ] && [ "$PROVISION_INSTALL" != no ]; then
  # Its own session, so a Ctrl-C of `make run` does not reach the engine that outlives it.
  if have setsid; then
    setsid dockerd --bridge=none --iptables=false >>/var/log/dockerd.log 2>&1 </dev/null &
  else
    nohup dockerd --bridge=none --iptables=false >>/var/log/dockerd.log 2>&1 </dev/null &
  fi
  for _ in $(seq 1 150); do engine_up && break; sleep 0.2; done
elif engine_up && [ "$registered" = 1 ] && ! docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"'; then
  # A dockerd that was already running reloads its runtimes on SIGHUP.
  if have pkill; then pkill -HUP -x dockerd || true; fi
  for _ in $(seq 1 50); do
    docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"' && break
    sleep 0.2
  done
fi

image=${SANDBOX_DEFAULT_IMAGE:-mcpplat/sandbox-python:1}
if ! have dockerd && ! engine_up; then
  missing sandbox "no Docker Engine (dockerd)" "apt-get install docker.io, then run this again as root"
elif ! engine_up; then
  missing sandbox "the Docker Engine is not running" "dockerd --bridge=none --iptables=false (as root; log in /var/log/dockerd.log)"
else
  if ! docker image inspect "$image" >/dev/null 2>&1; then
    if have debootstrap && [ "$(id -u 2>/dev/null || echo 1)" = 0 ] && [ "$PROVISION_INSTALL" != no ]; then
      echo "mcpplat: building the sandbox image $image offline (debootstrap, about a minute)" >&2
      apps/sandbox/image/build.sh "$image" >>"$PROVISION_LOG" 2>&1 || true
    fi
    docker image inspect "$image" >/dev/null 2>&1 ||
      missing sandbox "the sandbox image $image is not built" "make sandbox-image (as root; needs debootstrap)"
  fi
  if ! docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"'; then
    missing "sandbox (gVisor)" "runsc 2024-07 or newer is not registered with the engine (sandboxes still run on runc)" \
      "as root: scripts/provision.d/30-sandbox.sh (installs runsc from Debian trixie)"
  fi
fi
finish
