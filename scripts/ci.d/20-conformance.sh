# Gateway conformance: Node 22 (npm package node@22) and @modelcontextprotocol/conformance, both pinned in
# conformance/package-lock.json and installed under conformance/node_modules. `make test` runs the suite through
# tests/e2e/test_conformance.py (also `make conformance`).
if [ ! -x conformance/node_modules/.bin/conformance ] || [ ! -x conformance/node_modules/node/bin/node ]; then
  if ! command -v npm >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  fi
  (cd conformance && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
if ! command -v curl >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
fi
