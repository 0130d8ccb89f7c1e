#!/usr/bin/env bash
# The one provisioning path of `make run`, `make test` and `.ci/run`: system parts per capability
# (scripts/provision.d/NN-*.sh), then the virtualenv (scripts/venv.sh). Idempotent and quiet: a second run takes
# about a second and prints nothing.
#
#   scripts/provision.sh run    Redis, sandbox (Docker Engine + gVisor + image), browser (Chromium); venv: run
#   scripts/provision.sh test   the same, plus Node for the conformance suite; venv: dev
#
# As root with apt-get it installs and starts what is missing. Otherwise each missing part is one line naming the
# command that provides it, and the platform starts with that capability reported unavailable (`/readyz`).
# PROVISION_INSTALL=yes (what .ci/run sets) turns a capability that is still missing into a failure;
# PROVISION_INSTALL=no only reports. Package-manager output goes to var/log/provision.log.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-run}
case "$profile" in
  run) steps=(10-redis 30-sandbox 40-chromium); reqs=run ;;
  test) steps=(10-redis 20-node 30-sandbox 40-chromium); reqs=dev ;;
  *) echo "usage: scripts/provision.sh run|test" >&2; exit 2 ;;
esac

failed=()
for step in "${steps[@]}"; do
  rc=0
  bash -euo pipefail "scripts/provision.d/$step.sh" || rc=$?
  case $rc in
    0) ;;
    3) ;;  # unavailable: the step printed what is missing and how to get it
    *) failed+=("$step (exit $rc)") ;;
  esac
done
scripts/venv.sh "$reqs"
if [ ${#failed[@]} -gt 0 ]; then
  echo "mcpplat: provisioning failed: ${failed[*]} (details in ${PROVISION_LOG:-var/log/provision.log})" >&2
  exit 1
fi
