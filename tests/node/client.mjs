// Connects an official TypeScript SDK client to a KAMIYO server, lists its tools and calls
// every tool, then prints what it saw as JSON on stdout.
//
//   node client.mjs [script] v1|v2 stdio <command> [args...]
//   node client.mjs [script] v1|v2 http|sse <url>
//
// A script does one thing instead, printing {tools, calls, result} or, when the client threw
// (it rejects an answer that does not match the tool's output schema), {tools, calls, thrown}:
//   --call <tool> <arguments as JSON>                  one call
//   --until-refused <n> <tool> <arguments as JSON>     up to n calls, until one is isError
import * as v1Client from "@modelcontextprotocol/sdk/client/index.js";
import * as v1Stdio from "@modelcontextprotocol/sdk/client/stdio.js";
import * as v1Http from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import * as v1Sse from "@modelcontextprotocol/sdk/client/sse.js";
import * as v2 from "@modelcontextprotocol/client";
import * as v2Stdio from "@modelcontextprotocol/client/stdio";

let argv = process.argv.slice(2);
let script = null;
if (argv[0] === "--call" || argv[0] === "--until-refused") {
  const [flag, ...more] = argv;
  const times = flag === "--call" ? 1 : Number(more.shift());
  const [tool, args, ...after] = more;
  script = { times, tool, args: JSON.parse(args) };
  argv = after;
}
const [sdk, transportName, target, ...rest] = argv;

function makeTransport() {
  if (transportName === "stdio") {
    const Stdio = sdk === "v1" ? v1Stdio.StdioClientTransport : v2Stdio.StdioClientTransport;
    return new Stdio({ command: target, args: rest, env: process.env, stderr: "inherit" });
  }
  const url = new URL(target);
  // The key in KAMIYO_API_KEY goes out as a bearer token; a stdio server reads it from its env.
  const key = process.env.KAMIYO_API_KEY;
  const options = key ? { requestInit: { headers: { Authorization: `Bearer ${key}` } } } : {};
  if (transportName === "sse") {
    return new (sdk === "v1" ? v1Sse.SSEClientTransport : v2.SSEClientTransport)(url, options);
  }
  const Http = sdk === "v1" ? v1Http.StreamableHTTPClientTransport : v2.StreamableHTTPClientTransport;
  return new Http(url, options);
}

const ClientClass = sdk === "v1" ? v1Client.Client : v2.Client;
const client = new ClientClass({ name: `kamiyo-test-${sdk}`, version: "1.0.0" });
const transport = makeTransport();
await client.connect(transport);
const tools = await client.listTools();
if (script !== null) {
  const seen = { tools: tools.tools.map((t) => t.name), calls: 0 };
  try {
    while (seen.calls < script.times) {
      seen.calls += 1;
      seen.result = await client.callTool({ name: script.tool, arguments: script.args });
      if (seen.result.isError) break;
    }
  } catch (error) {
    seen.thrown = { code: error.code ?? null, message: String(error.message ?? error) };
  }
  process.stdout.write(JSON.stringify(seen) + "\n");
  await client.close();
  process.exit(0);
}
// One call of every tool, as an agent would make them.
const calls = {
  health_check: {},
  search_exploits: { query: "ronin", limit: 3 },
  get_exploit: { exploit_id: "20230313_eulerfinance" },
  find_exploit_by_tx: {
    tx_hash: "0x9dbf0326a03a2a3719c27be4fa69aacc9857fd231a8d9dcaede4bb083def75ec",
  },
  get_exploit_stats: { group_by: "chain" },
  assess_protocol_risk: { protocol_name: "Euler" },
  check_wallet_interactions: { wallet_address: "0x2419432344b0b892e592b2601b98eae702ba360e" },
  screen_transaction: {
    tx_hash: "0xc310a0affe2169d1f6feec1c63dbc7f7c62a887fa48795d327d4d2da2d6b111d",
  },
  get_pricing: {},
  create_alert: { filters: { protocols: ["Euler"] }, webhook_url: "https://hooks.example.com/node" },
  list_alerts: {},
};
const results = {};
for (const [name, args] of Object.entries(calls)) {
  results[name] = await client.callTool({ name, arguments: args });
}
// The alert tools that take the rule just made, then get_usage, which counts every call before.
const alertId = results.create_alert.structuredContent?.alert?.alert_id;
for (const name of ["test_alert", "delete_alert"]) {
  results[name] = await client.callTool({ name, arguments: { alert_id: alertId } });
}
results.get_usage = await client.callTool({ name: "get_usage", arguments: {} });
const result = results.search_exploits;
const bad = await client.callTool({ name: "search_exploits", arguments: { since: "2023-13-45" } });
process.stdout.write(
  JSON.stringify({
    protocolVersion: transport.protocolVersion ?? client.getNegotiatedProtocolVersion?.() ?? null,
    server: client.getServerVersion?.() ?? null,
    tools: tools.tools.map((t) => t.name),
    result,
    results,
    bad,
  }) + "\n",
);
await client.close();
