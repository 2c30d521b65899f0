// Runs after the whole end-to-end suite (scripts/test, its own phase): reads what every earlier test process saw,
// recorded by the harness (target/test-logs/transcript), and checks that no Worker answer and no
// Worker log line carries a secret or a token: the Keap client secret, TOKEN_KEYS, the admin
// token, any partner's API key or session secret, any session JWT, any access or refresh token
// or SSO session the sandbox issued, any repair link's token. The exceptions are what an answer is
// for: the access token in a 200 from POST /v1/token, the tokens in a 200 from POST
// /v1/connections/export, a partner's two secrets in the answer to the
// PUT (or the rotate-secrets POST) that created or rotated them (shown once), a repair link in
// the answer that made it, and the MCP authorization server's tokens (POST /mcp/oauth/token) and
// authorization code (in the consent's redirect, as OAuth carries it).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { TRANSCRIPT } from "../e2e/harness.mjs";

async function transcript() {
  let files = [];
  try { files = (await readdir(TRANSCRIPT)).filter((f) => f.endsWith(".jsonl")); } catch { /* none */ }
  const out = { answers: [], logs: [], secrets: new Set(), tokens: new Set() };
  for (const f of files) {
    for (const line of (await readFile(join(TRANSCRIPT, f), "utf8")).split("\n")) {
      if (!line) continue;
      const r = JSON.parse(line);
      if (r.kind === "answer") {
        out.answers.push(r);
      } else if (r.kind === "worker-log") {
        out.logs.push(r.text);
      } else if (r.kind === "secrets") {
        for (const v of r.values) if (v && v.length >= 12) out.secrets.add(v);
      } else if (r.kind === "issued") {
        for (const v of [...r.access_tokens, ...r.refresh_tokens, ...r.sso_sessions]) out.tokens.add(v);
      }
    }
  }
  return out;
}

/** The text of an answer minus what it is allowed to carry. */
function scrub(a) {
  let text = `${JSON.stringify(a.headers)}\n${a.text}`;
  if (a.status === 200 && a.method === "POST" && a.path === "/v1/token") {
    text = text.replace(/"access_token":"[^"]*"/, '"access_token":"(allowed)"');
  }
  if (a.status === 200 && a.method === "POST" && a.path === "/v1/connections/export") {
    // What an export is for: the links' live tokens, handed to their partner once.
    text = text.replace(/"(access_token|refresh_token)":"[^"]*"/g, '"$1":"(allowed)"');
  }
  if (a.status === 200 && a.method === "POST" && /^\/v1\/connections\/[^/]+\/repair-link$/.test(a.path)) {
    text = text.replace(/"url":"[^"]*"/, '"url":"(allowed)"');
  }
  if (a.status === 200 && a.method === "POST" && a.path === "/v1/partner/rotate-secrets") {
    text = text.replace(/"(api_key|session_secret)":"[^"]*"/g, '"$1":"(allowed)"');
  }
  if (a.status === 200 && a.method === "POST" && a.path === "/mcp/oauth/token") {
    // The MCP authorization server's token endpoint: what it is for.
    // Only MCP-shaped tokens: a Keap token in these fields would still be caught.
    text = text.replace(/"(access_token|refresh_token)":"km[ar]_[A-Za-z0-9_-]*"/g, '"$1":"(allowed)"');
  }
  if (a.status === 303 && a.method === "POST" && a.path === "/mcp/oauth/consent") {
    // OAuth's authorization code rides the redirect to the client's registered redirect URI, as
    // OAuth 2.1 requires: single use, minutes long, bound to the client's PKCE verifier.
    text = text.replace(/([?&]code=)kmc_[A-Za-z0-9_-]+/g, "$1(allowed)");
  }
  if (a.status === 200 && a.method === "PUT" && a.path.startsWith("/v1/admin/partners/")) {
    text = text.replace(/"(api_key|session_secret)":"[^"]*"/g, '"$1":"(allowed)"');
  }
  return text;
}

/**
 * The dev server's own request lines (`[wrangler:info] GET /link/<token> 200 OK`) carry a repair
 * link's path, as Cloudflare's request logs carry every URL: a repair link is a URL by design (it
 * is mailed), and so is a link's hook URL (`POST /hooks/keap/<token>`: Keap is given it). They
 * are the platform's log, not keaplink's; keaplink's own lines (checked below) write
 * `/link/[token]` and `/hooks/keap/[token]`.
 */
function platformLinesOut(log) {
  return log.replace(/\[wrangler:info\] (GET|POST|HEAD) \/(link|hooks\/keap)\/[A-Za-z0-9_-]+/g, "[wrangler:info] $1 /$2/(path)");
}

/** Finds any of `tokens` (sandbox-issued, base64url) as a whole run of the token alphabet. */
function tokenHits(text, tokens) {
  const hits = [];
  for (const m of text.matchAll(/[A-Za-z0-9_-]{16,}/g)) if (tokens.has(m[0])) hits.push(m[0]);
  return hits;
}

test("no Worker answer or log line of the whole suite carries a secret or a token", async (t) => {
  const { answers, logs, secrets, tokens } = await transcript();
  if (answers.length === 0) {
    t.skip("no transcript: run the whole suite (scripts/test) for this check");
    return;
  }
  t.diagnostic(`${answers.length} answers, ${logs.length} Worker logs (${logs.reduce((s, l) => s + l.length, 0)} chars), ${secrets.size} secrets, ${tokens.size} issued tokens`);
  // A suite that never saw tokens or secrets would pass this vacuously.
  assert.ok(tokens.size >= 20 && secrets.size >= 20, "the transcript holds the suite's secrets and tokens");
  assert.ok(answers.some((a) => a.path === "/v1/token" && a.status === 200), "token answers were recorded");

  const leaks = [];
  const texts = [
    ...answers.map((a) => [`${a.method} ${a.path} → ${a.status}`, scrub(a)]),
    ...logs.map((l, i) => [`Worker log #${i}`, platformLinesOut(l)]),
  ];
  for (const [where, text] of texts) {
    for (const s of secrets) if (text.includes(s)) leaks.push(`${where}: a secret (${s.slice(0, 4)}…)`);
    for (const h of tokenHits(text, tokens)) leaks.push(`${where}: a Keap token or session (${h.slice(0, 4)}…)`);
  }
  assert.deepEqual(leaks.slice(0, 20), [], `${leaks.length} leaks`);
});

test("the check itself catches a planted leak", async () => {
  // Only the platform's request line is set aside: the same token in keaplink's own line is a leak.
  const secret = "R".repeat(43);
  assert.ok(!platformLinesOut(`[wrangler:info] GET /link/${secret} 200 OK`).includes(secret));
  assert.ok(platformLinesOut(`{"event":"request","path":"/link/${secret}"}`).includes(secret));
  const tokens = new Set(["AbCdEfGhIjKlMnOpQrStUvWx"]);
  assert.deepEqual(tokenHits('{"x":"AbCdEfGhIjKlMnOpQrStUvWx"}', tokens), ["AbCdEfGhIjKlMnOpQrStUvWx"]);
  assert.deepEqual(tokenHits("Bearer AbCdEfGhIjKlMnOpQrStUvWx\n", tokens), ["AbCdEfGhIjKlMnOpQrStUvWx"]);
  const a = { method: "POST", path: "/v1/token", status: 200, headers: {}, text: '{"access_token":"AbCdEfGhIjKlMnOpQrStUvWx","keap_app":"x"}' };
  assert.deepEqual(tokenHits(scrub(a), tokens), [], "the one allowed place");
  assert.deepEqual(tokenHits(scrub({ ...a, path: "/v1/connections" }), tokens), ["AbCdEfGhIjKlMnOpQrStUvWx"]);
  // The consent's redirect may carry keaplink's code, not anything else; the MCP token
  // endpoint its own tokens, not a Keap token.
  const consent = { method: "POST", path: "/mcp/oauth/consent", status: 303, text: "",
    headers: { location: "https://client.example/cb?code=AbCdEfGhIjKlMnOpQrStUvWx&state=AbCdEfGhIjKlMnOpQrStUvWx" } };
  assert.deepEqual(tokenHits(scrub(consent), tokens), ["AbCdEfGhIjKlMnOpQrStUvWx", "AbCdEfGhIjKlMnOpQrStUvWx"], "not a code of another shape");
  const mcpToken = { method: "POST", path: "/mcp/oauth/token", status: 200, headers: {}, text: '{"access_token":"AbCdEfGhIjKlMnOpQrStUvWx"}' };
  assert.deepEqual(tokenHits(scrub(mcpToken), tokens), ["AbCdEfGhIjKlMnOpQrStUvWx"], "a Keap token where an MCP one goes");
  const mcpSecret = "kma_0123456789abcdef_" + "Q".repeat(30);
  assert.ok(!scrub({ ...mcpToken, text: `{"access_token":"${mcpSecret}"}` }).includes(mcpSecret), "the MCP token is what the answer is for");
});

test("no Worker answer of the whole suite grants CORS to '*' (but public files) or with credentials", async (t) => {
  const { answers } = await transcript();
  if (answers.length === 0) return t.skip("no transcript");
  // Public files are for any origin: the widget's, and the OpenAPI document.
  const wild = answers.filter((a) => a.headers["access-control-allow-origin"] === "*" && !a.path.startsWith("/widget/") && a.path !== "/v1/openapi.json");
  assert.deepEqual(wild.map((a) => `${a.method} ${a.path}`), []);
  const creds = answers.filter((a) => a.headers["access-control-allow-credentials"]);
  assert.deepEqual(creds.map((a) => `${a.method} ${a.path}`), []);
  assert.ok(answers.some((a) => a.headers["access-control-allow-origin"]), "CORS answers were recorded");
});
