# Node for the tests' foreign clients (tests only): npm, then under each folder's node_modules, pinned in its
# package-lock.json: Node 22 (npm package node@22) and
#   conformance/        the official MCP conformance suite (@modelcontextprotocol/conformance)
#   tests/e2e/clients/  the official TypeScript SDK client and the MCP Inspector CLI
# shellcheck source=scripts/provision.d/lib.sh
. "$(dirname "$0")/lib.sh"
for folder in conformance tests/e2e/clients; do
  [ -f "$folder/package-lock.json" ] || continue
  [ -x "$folder/node_modules/node/bin/node" ] && [ -f "$folder/node_modules/.package-lock.json" ] &&
    [ ! "$folder/package-lock.json" -nt "$folder/node_modules/.package-lock.json" ] && continue
  have npm || apt_install npm || true
  if ! have npm; then
    missing conformance "npm is not installed (for $folder)" "apt-get install npm"
  elif ! (cd "$folder" && npm ci --no-audit --no-fund --loglevel=error >>"$PROVISION_LOG" 2>&1); then
    missing conformance "npm ci in $folder failed (see $PROVISION_LOG)" "cd $folder && npm ci"
  fi
done
have curl || apt_install curl || missing conformance "curl is not installed (conformance/run.sh polls the gateway with it)" "apt-get install curl"
finish
