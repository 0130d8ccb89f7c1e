# Node for the official MCP conformance suite (tests only): npm, then Node 22 (npm package node@22) and
# @modelcontextprotocol/conformance, both pinned in conformance/package-lock.json, under conformance/node_modules.
# shellcheck source=scripts/provision.d/lib.sh
. "$(dirname "$0")/lib.sh"
if [ ! -x conformance/node_modules/.bin/conformance ] || [ ! -x conformance/node_modules/node/bin/node ]; then
  have npm || apt_install npm || true
  if ! have npm; then
    missing conformance "npm is not installed" "apt-get install npm"
  elif ! (cd conformance && npm ci --no-audit --no-fund --loglevel=error >>"../$PROVISION_LOG" 2>&1); then
    missing conformance "npm ci in conformance/ failed (see $PROVISION_LOG)" "cd conformance && npm ci"
  fi
fi
have curl || apt_install curl || missing conformance "curl is not installed (conformance/run.sh polls the gateway with it)" "apt-get install curl"
finish
