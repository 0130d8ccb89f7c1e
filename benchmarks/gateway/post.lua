-- wrk: POST one stateless 2026-07-28 tools/call of platform.whoami. TOKEN (env) authenticates against mcpplat;
-- IDEMPOTENCY=1 adds a fresh Idempotency-Key per request (exercises claim + store in Redis).
local token = os.getenv("TOKEN") or ""
local idem = os.getenv("IDEMPOTENCY") == "1"
local counter = 0
local body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"platform.whoami","arguments":{},'
  .. '"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",'
  .. '"io.modelcontextprotocol/clientCapabilities":{},'
  .. '"io.modelcontextprotocol/clientInfo":{"name":"wrk","version":"1"}}}}'
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2026-07-28"
wrk.headers["Mcp-Method"] = "tools/call"
wrk.headers["Mcp-Name"] = "platform.whoami"
if token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end

local thread_id = tostring(math.random(1, 1e9))
request = function()
  if idem then
    counter = counter + 1
    wrk.headers["Idempotency-Key"] = thread_id .. "-" .. counter
  end
  return wrk.format(nil, nil, nil, body)
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT rps=%.1f p50_ms=%.2f p99_ms=%.2f errors=%d non2xx=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
