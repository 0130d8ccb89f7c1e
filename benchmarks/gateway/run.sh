#!/usr/bin/env bash
# tools/call of an inline tool: mcpplat /mcp (whole pipeline: auth, RBAC, validation, rate limit, idempotency check,
# durable audit) vs the official SDK's MCPServer (stateless JSON), same wrk load, 1 process each, daphne and uvicorn.
# Usage: benchmarks/gateway/run.sh [SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${1:-15}
CONNECTIONS=${2:-16}
PY=.venv/bin/python
export MCP_RATE_LIMIT_TOOL=100000000/60 LOG_LEVEL=WARNING
"$PY" manage.py migrate -v0
"$PY" manage.py shell -v0 -c "
from apps.accounts import services
from apps.accounts.models import Role, RoleGrant
role, _ = Role.objects.get_or_create(name='bench', defaults={'description': 'benchmark', 'requests_per_minute': 100000000})
RoleGrant.objects.get_or_create(role=role, pattern='platform.*')
"
TOKEN=$("$PY" manage.py create_api_token --user gateway-bench --role bench)
export TOKEN
BODY='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"platform.whoami","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}'
port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

bench() { # name server app
  local name=$1 server=$2 app=$3 p pid
  p=$(port)
  if [ "$server" = daphne ]; then
    "$PY" -m daphne -b 127.0.0.1 -p "$p" "$app" >/dev/null 2>&1 &
  else
    "$PY" -m uvicorn --host 127.0.0.1 --port "$p" --no-access-log --lifespan off --log-level warning "$app" >/dev/null 2>&1 &
  fi
  pid=$!
  for _ in $(seq 1 600); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break; sleep 0.1; done; sleep 1
  # first request initialises pools and caches (slow on a busy machine): wait for one answer before timing
  curl -s -m 60 -o /dev/null "http://127.0.0.1:$p/mcp" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -H 'Accept: application/json, text/event-stream' -H 'MCP-Protocol-Version: 2026-07-28' -H 'Mcp-Method: tools/call' \
    -H 'Mcp-Name: platform.whoami' --data "$BODY" || true
  wrk -t1 -c"$CONNECTIONS" -d3s -s benchmarks/gateway/post.lua "http://127.0.0.1:$p/mcp" >/dev/null  # warm-up
  printf '%-44s ' "$name/$server"
  wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s benchmarks/gateway/post.lua "http://127.0.0.1:$p/mcp" | grep RESULT
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

for server in daphne uvicorn; do
  bench "sdk MCPServer (stateless JSON)" "$server" benchmarks.gateway.sdk_app:app
  bench "mcpplat /mcp (full pipeline)" "$server" mcpplat.asgi:application
  IDEMPOTENCY=1 bench "mcpplat /mcp + Idempotency-Key" "$server" mcpplat.asgi:application
done
