// The official MCP TypeScript SDK client against the gateway: one scenario per run, printed as one JSON line.
// Usage: node ts_client.mjs <url> <token|-> <scenario>
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, token, scenario] = process.argv.slice(2);
const headers = token && token !== "-" ? { Authorization: `Bearer ${token}` } : {};
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
const client = new Client({ name: "mcpplat-e2e-ts", version: "1.0.0" });
const out = {};
try {
  await client.connect(transport);
  out.protocolVersion = transport.protocolVersion ?? null;
  out.serverName = client.getServerVersion()?.name ?? null;
  if (scenario === "tools") {
    const listed = await client.listTools();
    out.tools = listed.tools.map((t) => t.name);
    const whoami = await client.callTool({ name: "platform.whoami", arguments: {} });
    out.whoami = whoami.structuredContent;
    out.isError = whoami.isError ?? false;
  } else if (scenario === "progress") {
    const seen = [];
    const result = await client.callTool(
      { name: "platform.e2e_count", arguments: { steps: 3, delay_ms: 20 } },
      undefined,
      { onprogress: (p) => seen.push([p.progress, p.total ?? null, p.message ?? null]) },
    );
    out.progress = seen;
    out.result = result.structuredContent;
  } else if (scenario === "bad_argument") {
    try {
      const result = await client.callTool({ name: "platform.e2e_echo", arguments: { text: "x".repeat(50) } });
      out.result = result;
    } catch (error) {
      out.error = { code: error.code ?? null, message: String(error.message ?? error) };
    }
  } else if (scenario === "denied") {
    const result = await client.callTool({ name: "platform.e2e_echo", arguments: { text: "hi" } });
    out.isError = result.isError ?? false;
    out.text = result.content?.map((c) => c.text).join("\n");
  } else {
    throw new Error(`unknown scenario ${scenario}`);
  }
} catch (error) {
  out.failure = { code: error.code ?? null, message: String(error.message ?? error) };
} finally {
  await client.close().catch(() => {});
}
console.log(JSON.stringify(out));
