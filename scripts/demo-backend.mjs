// The demo partner's back-end, for local runs: what a partner's server does for its settings
// page, mint a session JWT for the signed-in user, on 127.0.0.1. The demo page (/demo/ on the
// Worker) names it in `session-url`, so every load (a reload too) and every renewal the widget
// asks for gets a fresh JWT, as on a partner's real page. It stands in for the partner's own
// sign-in: whoever asks for `?user=<id>` is that partner user (loopback only, for trying).
// ./scripts/dev starts it. Usage: node scripts/demo-backend.mjs <port> <worker-origin>
// (the API key and session secret are read from .wrangler/demo-partner.json at each request, so a
// rotation is picked up).
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { SignJWT } from "jose";

/** How long a minted session lives: the widget asks for the next shortly before it ends. */
export const SESSION_SECS = 600;

/** `{ partner_id, session_secret }`, and whether this user's next session should be expired. */
export async function mintFor(partner, user, { expired = false, claims = {} } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const [iat, exp] = expired ? [now - 700, now - 100] : [now, now + SESSION_SECS];
  return new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256" })
    .setIssuer(partner.partner_id)
    .setSubject(user)
    .setAudience("keaplink")
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .sign(new TextEncoder().encode(partner.session_secret));
}

const esc = (t) => String(t).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

/**
 * The partner's sign-in for an MCP client (its `mcp.sign_in_url`): keaplink sends the browser
 * here with `keaplink_request`. The demo "signs in" whoever picks a user, then sends the browser
 * back to keaplink with a form POST of the request and a session JWT whose claims hold it.
 */
async function mcpSignIn(res, url, user, p, workerOrigin) {
  const request = url.searchParams.get("keaplink_request") ?? "";
  const page = (body) => res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" })
    .end(`<!doctype html><meta name="viewport" content="width=device-width, initial-scale=1"><title>Demo partner: sign in</title><body style="font:16px system-ui;max-width:30rem;margin:2rem auto">${body}</body>`);
  if (!p || !request) return page("<p>No request: start from your MCP client.</p>");
  if (!user) {
    const choices = ["user-1001", "user-1002"].map((u) =>
      `<form><input type="hidden" name="keaplink_request" value="${esc(request)}"><button name="user" value="${u}">Sign in as ${u}</button></form>`).join("");
    return page(`<h1>Demo partner</h1><p>Sign in to connect an AI assistant to your Keap account.</p>${choices}`);
  }
  const session = await mintFor(p, user, { claims: { keaplink_request: request } });
  page(`<h1>Signed in as ${esc(user)}</h1><form method="post" action="${esc(workerOrigin)}/mcp/oauth/continue">
<input type="hidden" name="request" value="${esc(request)}"><input type="hidden" name="session" value="${esc(session)}">
<button>Continue to keaplink</button></form>`);
}

/**
 * Serves GET /session?user=<id> → {"session": "<JWT>"} on 127.0.0.1:`port` (0: any), readable by
 * the page at `workerOrigin` alone. `partner()` gives the partner (read at each request);
 * `expired(user)`, when given, says to hand that user an expired JWT (the tests' stale cache).
 */
export async function startDemoBackend({ port = 0, workerOrigin, partner, expired = () => false }) {
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, "http://127.0.0.1");
    const cors = { "access-control-allow-origin": workerOrigin, vary: "origin", "cache-control": "no-store" };
    const user = url.searchParams.get("user") ?? "";
    if (req.method === "GET" && url.pathname === "/keaplink-mcp") {
      await mcpSignIn(res, url, user, await partner(), workerOrigin);
      return;
    }
    if (req.method !== "GET" || url.pathname !== "/session") {
      res.writeHead(404, { ...cors, "content-type": "text/plain" }).end("The demo partner's back-end: GET /session?user=<partner user id>\n");
      return;
    }
    const p = await partner();
    if (!p || !/^[^\u0000-\u001f]{1,256}$/.test(user)) {
      // As a partner's sign-in would: no one signed in (or no partner yet), no session.
      res.writeHead(401, { ...cors, "content-type": "application/json" }).end(JSON.stringify({ error: "not signed in" }));
      return;
    }
    const session = await mintFor(p, user, { expired: expired(user) });
    res.writeHead(200, { ...cors, "content-type": "application/json" }).end(JSON.stringify({ session }));
  });
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    stop: () => new Promise((r) => server.close(r)),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const root = join(dirname(fileURLToPath(import.meta.url)), "..");
  const [port, workerOrigin] = process.argv.slice(2);
  if (!port || !workerOrigin) {
    console.error("usage: node scripts/demo-backend.mjs <port> <worker-origin>");
    process.exit(2);
  }
  const saved = async () => {
    try { return JSON.parse(await readFile(join(root, ".wrangler", "demo-partner.json"), "utf8")); } catch { return null; }
  };
  const b = await startDemoBackend({ port: Number(port), workerOrigin: new URL(workerOrigin).origin, partner: saved });
  console.log(`  Demo back-end:     ${b.url}/session?user=<id> (mints the demo page's sessions, as a partner's server does)`);
}
