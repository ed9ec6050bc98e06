// The official TypeScript SDK's (v1) OAuth client provider completing KAMIYO's OAuth flow, the
// consent step scripted as a person would click it (logging in with an API key), then calling
// get_usage, then again after its access token is refused (it refreshes). The client registers
// (RFC 7591); the SDK only uses Client ID Metadata Documents from https URLs, which a loopback
// test cannot serve (those are tested from Python). Prints what it saw as JSON on stdout.
//
//   KAMIYO_API_KEY=kmy_live_... node oauth_client.mjs <server url>
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";

const [serverUrl] = process.argv.slice(2);
const apiKey = process.env.KAMIYO_API_KEY;
const redirectUrl = "http://127.0.0.1:33419/callback";

function hiddenFields(page) {
  const fields = {};
  for (const [, name, value] of page.matchAll(/<input type="hidden" name="(\w+)" value="([^"]*)">/g)) {
    fields[name] = value.replaceAll("&amp;", "&");
  }
  return fields;
}

// The person's browser: the authorization URL, the consent page, Allow.
async function consent(authorizationUrl) {
  const first = await fetch(authorizationUrl, { redirect: "manual" });
  if (first.status !== 302) throw new Error(`authorize: ${first.status} ${await first.text()}`);
  const page = await fetch(first.headers.get("location"));
  const cookie = page.headers.get("set-cookie").split(";")[0];
  const form = new URLSearchParams({ ...hiddenFields(await page.text()), decision: "approve", api_key: apiKey });
  const back = await fetch(new URL("/oauth/authorize", serverUrl), {
    method: "POST", body: form, headers: { cookie }, redirect: "manual",
  });
  const location = new URL(back.headers.get("location"));
  if (!location.href.startsWith(redirectUrl)) throw new Error(`consent went to ${location}`);
  return location.searchParams.get("code");
}

const saved = { client: undefined, tokens: undefined, verifier: undefined, code: undefined };
const provider = {
  get redirectUrl() { return redirectUrl; },
  get clientMetadata() {
    return {
      client_name: "TypeScript SDK (registered)",
      redirect_uris: [redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  },
  clientInformation: () => saved.client,
  saveClientInformation: (info) => { saved.client = info; },
  tokens: () => saved.tokens,
  saveTokens: (tokens) => { saved.tokens = tokens; },
  saveCodeVerifier: (verifier) => { saved.verifier = verifier; },
  codeVerifier: () => saved.verifier,
  redirectToAuthorization: async (url) => { saved.code = await consent(url); },
};

const mcpUrl = new URL("/mcp", serverUrl);
async function connected() {
  const client = new Client({ name: "kamiyo-oauth-test", version: "0" });
  await client.connect(new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider }));
  return client;
}

const transport = new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider });
try {
  await new Client({ name: "kamiyo-oauth-test", version: "0" }).connect(transport);
  throw new Error("connected without authorization");
} catch (error) {
  if (!(error instanceof UnauthorizedError)) throw error;
}
await transport.finishAuth(saved.code);
let client = await connected();
const usage = await client.callTool({ name: "get_usage", arguments: {} });
await client.close();

// The access token refused (as when it expires): the provider refreshes and goes on.
const firstRefresh = saved.tokens.refresh_token;
saved.tokens = { ...saved.tokens, access_token: "expired.access.token" };
client = await connected();
const again = await client.callTool({ name: "get_usage", arguments: {} });
await client.close();
console.log(JSON.stringify({
  tier: usage.structuredContent.tier,
  tier_after_refresh: again.structuredContent.tier,
  client_id: saved.client?.client_id,
  refreshed: saved.tokens.refresh_token !== firstRefresh,
}));
