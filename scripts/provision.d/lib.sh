# Shared by every scripts/provision.d step (sourced). A step is run as `bash -euo pipefail step.sh` and exits
#   0  the capability is ready
#   3  the capability is unavailable: one line per missing part, each with the exact command that provides it
# It never exits 127: every external command is looked up with `have` before it is called.
#
# PROVISION_INSTALL  auto (default: install when root with apt-get), yes (install or fail), no (only report)
# PROVISION_LOG      where package-manager output goes (default var/log/provision.log)

PROVISION_INSTALL=${PROVISION_INSTALL:-auto}
PROVISION_LOG=${PROVISION_LOG:-var/log/provision.log}
case "$PROVISION_LOG" in /*) ;; *) PROVISION_LOG="$PWD/$PROVISION_LOG" ;; esac
mkdir -p "$(dirname "$PROVISION_LOG")"
_provision_missing=0

have() { command -v "$1" >/dev/null 2>&1; }

# can_install: true when this step may install system packages itself.
can_install() {
  [ "$PROVISION_INSTALL" = no ] && return 1
  have apt-get || return 1
  [ "$(id -u 2>/dev/null || echo 1)" = 0 ]
}

# apt_install PKG...: install Debian packages quietly (output in $PROVISION_LOG); false on failure.
apt_install() {
  can_install || return 1
  # One `apt-get update` per provisioning run (provision.sh exports the marker); a failed update still lets the
  # install try with the lists already on the machine.
  if [ -z "${PROVISION_APT_UPDATED:-}" ]; then
    apt-get update -qq >>"$PROVISION_LOG" 2>&1 || true
    export PROVISION_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >>"$PROVISION_LOG" 2>&1
}

# missing CAPABILITY WHAT COMMAND: report one missing part (stderr) and mark the step unavailable.
missing() {
  echo "mcpplat: $1 unavailable: $2 — to fix: $3" >&2
  _provision_missing=1
}

# finish: the step's exit status.
finish() {
  if [ "$_provision_missing" = 0 ]; then exit 0; fi
  if [ "$PROVISION_INSTALL" = yes ]; then exit 1; fi
  exit 3
}
