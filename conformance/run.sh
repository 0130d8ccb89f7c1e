#!/usr/bin/env bash
# `make conformance`: the official MCP conformance suite (npm @modelcontextprotocol/conformance, Node 22 from the
# npm package node@22, both pinned in conformance/package.json) against a gateway started with the
# conformance-only settings profile on a free loopback port. Runs every REQUIRED server scenario of 2025-11-25
# and 2026-07-28; conformance/expected-failures.yml lists known gaps, each with its reason.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$ROOT/conformance/node_modules/node/bin:$PATH"
if [ ! -x conformance/node_modules/.bin/conformance ] || ! node --version | grep -q '^v22\.'; then
  (cd conformance && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
PY=${PY:-.venv/bin/python}
export DJANGO_SETTINGS_MODULE=apps.gateway.conformance.settings
export VAR_DIR=${CONFORMANCE_VAR_DIR:-var/conformance}
export MCPPLAT_ENV=development
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export PORT BIND=127.0.0.1 PUBLIC_BASE_URL="http://127.0.0.1:$PORT"
"$PY" manage.py migrate -v0
LOG=$(mktemp)
"$PY" -m daphne -b 127.0.0.1 -p "$PORT" mcpplat.asgi:application >"$LOG" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -f "$LOG"' EXIT
for _ in $(seq 1 150); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
  kill -0 $SERVER 2>/dev/null || { cat "$LOG"; exit 1; }
  sleep 0.2
done
OUT=${CONFORMANCE_OUT:-var/conformance/results}
rm -rf "$OUT"; mkdir -p "$OUT"
status=0
for version in ${CONFORMANCE_VERSIONS:-2025-11-25 2026-07-28}; do
  echo "conformance: required server scenarios for $version"
  conformance/node_modules/.bin/conformance server --url "http://127.0.0.1:$PORT/mcp" --requirements "$version" \
    --expected-failures conformance/expected-failures.yml -o "$OUT/$version" ${CONFORMANCE_ARGS:-} || status=$?
done
exit $status
