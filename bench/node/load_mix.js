// Fixed-rate load with a mix of MCP calls, for bench/load.py (stateless JSON Streamable HTTP).
//
//   node bench/node/load_mix.js PLAN.json     # prints one JSON report on stdout
//
// PLAN: {url, rate, duration, connections, calls: [{kind, weight, headers, body}]}. Each
// request picks a call by weight; its answer is classified as "ok", the refusal's
// structuredContent.error (rate_limited, invalid_arguments, forbidden...), "jsonrpc_error" or
// "http_<status>", and counted per kind. autocannon keeps one request in flight per connection,
// so a connection's context tells which call its answer belongs to. autocannon does not
// correct for coordinated omission: once the servers fall behind, the rate achieved drops
// below the rate asked for (the report says both).
"use strict";

const fs = require("fs");
const autocannon = require("autocannon");

const plan = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const total = plan.calls.reduce((sum, call) => sum + call.weight, 0);
const counts = {};

function pick() {
  let r = Math.random() * total;
  for (const call of plan.calls) {
    r -= call.weight;
    if (r < 0) return call;
  }
  return plan.calls[plan.calls.length - 1];
}

function outcome(status, body) {
  if (status !== 200) return `http_${status}`;
  let answer;
  try {
    answer = JSON.parse(body);
  } catch (_) {
    return "unparsable";
  }
  if (answer.error) return "jsonrpc_error";
  const result = answer.result || {};
  if (!result.isError) return "ok";
  return (result.structuredContent && result.structuredContent.error) || "tool_error";
}

const instance = autocannon(
  {
    url: plan.url,
    connections: plan.connections,
    // A number of calls, not a duration: autocannon then waits for every answer, so the
    // counts below are every call the servers answered (the metering check needs them all).
    amount: Math.max(1, Math.round(plan.rate * plan.duration)),
    overallRate: plan.rate,
    timeout: 30,
    requests: [
      {
        setupRequest: (request, context) => {
          const call = pick();
          context.kind = call.kind;
          return {
            ...request,
            method: "POST",
            headers: { ...plan.headers, ...call.headers },
            body: call.body,
          };
        },
        onResponse: (status, body, context) => {
          const byKind = (counts[context.kind] = counts[context.kind] || {});
          const seen = outcome(status, body);
          byKind[seen] = (byKind[seen] || 0) + 1;
        },
      },
    ],
  },
  (error, result) => {
    if (error) {
      console.error(error);
      process.exit(1);
    }
    console.log(
      JSON.stringify({
        rate_asked: plan.rate,
        requests: result.requests,
        latency: result.latency,
        non2xx: result.non2xx,
        errors: result.errors,
        timeouts: result.timeouts,
        counts,
      }),
    );
  },
);
autocannon.track(instance, { renderProgressBar: false, renderResultsTable: false });
