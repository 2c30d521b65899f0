// Keap for AI agents: a real MCP client (the MCP Python SDK, tests/mcp/client.py) discovers
// keaplink's authorization server from the MCP endpoint's 401, registers, and runs the
// authorization code flow with PKCE while this test plays the browser (authorize → the partner's
// sign-in → keaplink's consent page → Allow); then it lists and calls tools that reach the
// sandbox with the chosen user's Keap token. Also every refusal: a read grant's write tools, a
// token at another partner's endpoint, after revocation and disconnection, a replayed code, a
// wrong verifier, another partner's resource, an unregistered redirect URI, a session JWT
// without the request claim or for another request (nothing issued), Deny, MCP turned off, the
// link exported, the partner deleted.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SignJWT } from "jose";
import { ADMIN_TOKEN, ROOT, record, startStack } from "./harness.mjs";
import { call, linkUser, mintSession, putPartner } from "./client.mjs";
import { withLocalKv } from "./seed.mjs";

const PYTHON = join(ROOT, "target", "mcp", "bin", "python");
const CLIENT = join(ROOT, "tests", "mcp", "client.py");

let stack;
let kvDir;
let acme;
let globex;
const ids = {};

const mcpSettings = (host, tools) => ({ mcp: { enabled: true, sign_in_url: `https://${host}/keaplink-mcp`, tools } });

before(async () => {
  kvDir = await mkdtemp(join(tmpdir(), "keaplink-mcp-"));
  stack = await startStack({ persistTo: kvDir });
  acme = await putPartner(stack.url, "acme", { name: "Acme Booking", origins: ["https://acme.example"], extra: mcpSettings("acme.example", "read_write") });
  globex = await putPartner(stack.url, "globex", { origins: ["https://globex.example"], extra: { ...mcpSettings("globex.example", "read"), export_enabled: true } });
  await linkUser(stack, acme, "u1", "ann@ab123.example");
  await linkUser(stack, acme, "u2", "bob@cd456.example");
  await linkUser(stack, globex, "g1", "cat@ef789.example");
  const list = (await call(stack.url, "GET", "/v1/connections", { token: acme.api_key })).json.connections;
  ids.u1 = list.find((c) => c.user === "u1").id;
  ids.u2 = list.find((c) => c.user === "u2").id;
});
after(async () => {
  await stack?.stop();
  if (kvDir) await rm(kvDir, { recursive: true, force: true });
});

/** A session JWT as the partner's sign-in mints it, with the request claim (or as given). */
async function session(partner, user, claims) {
  const now = Math.floor(Date.now() / 1000);
  const jwt = await new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256" })
    .setIssuer(partner.partner_id).setSubject(user).setAudience("keaplink")
    .setIssuedAt(now).setExpirationTime(now + 300)
    .sign(new TextEncoder().encode(partner.session_secret));
  record("secrets", { values: [jwt] });
  return jwt;
}

/** A form POST to the Worker, not following redirects. */
async function post(path, form) {
  return call(stack.url, "POST", path, {
    raw: new URLSearchParams(form).toString(),
    headers: { "content-type": "application/x-www-form-urlencoded" },
  });
}

const hidden = (html, name) => {
  const m = new RegExp(`name="${name}" value="([^"]*)"`).exec(html);
  return m && m[1].replaceAll("&quot;", '"').replaceAll("&amp;", "&");
};
const radios = (html, name) => [...html.matchAll(new RegExp(`name="${name}" value="([^"]*)"`, "g"))].map((m) => m[1]);

/**
 * The browser's part, from the authorization URL: the partner's sign-in (mocked here: the
 * request read off the redirect, a session minted with its claim), the consent page, the choice.
 * Answers the last answer (the redirect back to the client, or a refusal) and the consent page.
 */
async function browse(authorizeUrl, { partner = acme, user = "u1", connection, access = "read", decision = "allow", claims } = {}) {
  const start = await call(stack.url, "GET", authorizeUrl.slice(stack.url.length));
  if (start.status !== 302) return { last: start };
  const to = new URL(start.headers.get("location"));
  if (!to.searchParams.has("keaplink_request")) return { last: start };
  const request = to.searchParams.get("keaplink_request");
  const jwt = await session(partner, user, claims ?? { keaplink_request: request });
  const page = await post("/mcp/oauth/continue", { request, session: jwt });
  if (page.status !== 200) return { last: page, page };
  const form = { consent: hidden(page.text, "consent"), decision, connection: connection ?? radios(page.text, "connection")[0], access };
  const last = await post("/mcp/oauth/consent", form);
  const back = last.headers.get("location");
  if (back) {
    const code = new URL(back).searchParams.get("code");
    if (code) record("secrets", { values: [code] });
  }
  return { last, page, request };
}

/** Runs the Python SDK client: connects, lists tools, makes `calls`; the test is its browser. */
function runClient(path, scope, calls, browsing = {}) {
  return new Promise((resolve, reject) => {
    const py = spawn(PYTHON, [CLIENT, `${stack.url}${path}`, scope, JSON.stringify(calls)], { stdio: ["pipe", "pipe", "pipe"] });
    const out = [];
    let err = "";
    let buf = "";
    py.stderr.on("data", (d) => { err += d; });
    py.stdout.on("data", async (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = JSON.parse(buf.slice(0, i));
        buf = buf.slice(i + 1);
        out.push(line);
        if (line.authorize) {
          try {
            const { last } = await browse(line.authorize, browsing);
            py.stdin.write(`${last.headers.get("location") ?? ""}\n`);
          } catch (e) { py.kill(); reject(e); }
        }
        if (line.tokens) record("secrets", { values: [line.tokens.access_token, line.tokens.refresh_token] });
      }
    });
    py.on("close", (code) => {
      if (code !== 0) return reject(new Error(`client.py exited ${code}: ${err.slice(-2000)}`));
      resolve(out);
    });
  });
}

const mcp = (partner, token, message) =>
  call(stack.url, "POST", `/mcp/${partner}`, {
    token,
    body: message,
    headers: { accept: "application/json, text/event-stream", "mcp-protocol-version": "2025-06-18" },
  });

let readWrite; // the tokens of the read-write client of u1

test("the MCP Python SDK signs in through OAuth and its tools reach the sandbox with the chosen user's token", async () => {
  const out = await runClient("/mcp/acme", "keap.read keap.write", [
    ["search_contacts", { email: "ben.crumb@mail.example" }],
    ["search_contacts", { email: "gus.gear@mail.example" }],
    ["get_contact", { contact_id: "102" }],
    ["list_tags", {}],
    ["create_contact", { email: "new.person@mail.example", given_name: "New" }],
    ["apply_tags", { tag_id: "103", contact_ids: ["101"] }],
    ["add_note", { contact_id: "101", text: "Called about the spring order", title: "Call" }],
    ["get_contact", { contact_id: "999999" }],
  ], { access: "read_write" });
  const by = (k) => out.filter((l) => k in l);
  // The SDK tried the stateless discover first, heard "method not found", and shook hands.
  assert.equal(by("protocol_version")[0].protocol_version, "2025-11-25");
  assert.deepEqual(by("tools")[0].tools, ["search_contacts", "get_contact", "list_tags", "create_contact", "apply_tags", "add_note"]);
  const calls = by("call");
  const json = (i) => JSON.parse(calls[i].text);
  // u1's link is app ab123: its contact is found, another app's (cd456, u2's) is not.
  assert.equal(json(0).contacts[0].id, "101");
  assert.deepEqual(json(0).contacts[0].emails, ["ben.crumb@mail.example"]);
  assert.deepEqual(json(1).contacts, []);
  assert.equal(json(2).given_name, "Dora");
  assert.ok(json(3).tags.some((t) => t.id === "103" && t.name === "VIP"));
  assert.match(json(4).id, /^\d+$/);
  assert.equal(json(5).applied, true);
  assert.match(String(json(6).note_id), /^\d+$/);
  // Keap's 404 is a tool error the model can act on, not a protocol error.
  assert.equal(calls[7].is_error, true);
  assert.match(calls[7].text, /no such record/);
  // The note reached the sandbox, in u1's app.
  const notes = await call(stack.url, "GET", "/v1/keap/crm/rest/v2/contacts/101/notes", { token: acme.api_key, headers: { "keaplink-user": "u1" } });
  assert.equal(notes.json.notes[0].text, "Called about the spring order");
  readWrite = by("tokens")[0];
  assert.equal(readWrite.tokens.scope, "keap.read keap.write");
  // The link's timeline: the grant and each call by tool and outcome, never an argument.
  const detail = await call(stack.url, "GET", `/v1/connections/${ids.u1}`, { token: acme.api_key });
  const events = detail.json.events;
  assert.ok(events.some((e) => e.type === "mcp_granted"));
  const toolEvents = events.filter((e) => e.type === "mcp_tool_call");
  assert.equal(toolEvents.length, 8);
  assert.ok(toolEvents.some((e) => e.detail === "add_note: ok"));
  assert.ok(toolEvents.some((e) => e.detail === "get_contact: keap_refused"));
  assert.ok(!JSON.stringify(events).includes("spring order") && !JSON.stringify(events).includes("ben.crumb"));
});

test("a read grant neither lists nor runs write tools", async () => {
  const out = await runClient("/mcp/acme", "keap.read keap.write", [
    ["list_tags", {}],
    ["create_contact", { email: "x@mail.example" }],
  ], { access: "read", user: "u2" });
  assert.deepEqual(out.find((l) => l.tools).tools, ["search_contacts", "get_contact", "list_tags"]);
  const calls = out.filter((l) => l.call);
  assert.ok(JSON.parse(calls[0].text).tags.length > 0);
  assert.match(calls[1].protocol_error, /Unknown tool/);
  assert.equal(out.find((l) => l.tokens).tokens.scope, "keap.read");
});

test("the MCP endpoint: 401 with the metadata's URL, JSON-RPC errors, and a token bound to its partner", async () => {
  const none = await mcp("acme", undefined, { jsonrpc: "2.0", id: 1, method: "ping" });
  assert.equal(none.status, 401);
  assert.equal(
    none.headers.get("www-authenticate"),
    `Bearer resource_metadata="${stack.url}/.well-known/oauth-protected-resource/mcp/acme", error="invalid_token"`,
  );
  const prm = await call(stack.url, "GET", "/.well-known/oauth-protected-resource/mcp/acme");
  assert.deepEqual(prm.json.authorization_servers, [stack.url]);
  assert.equal(prm.json.resource, `${stack.url}/mcp/acme`);
  const asm = await call(stack.url, "GET", "/.well-known/oauth-authorization-server");
  assert.deepEqual(asm.json.code_challenge_methods_supported, ["S256"]);
  assert.equal(asm.json.issuer, stack.url);
  const token = readWrite.tokens.access_token;
  // At another partner's endpoint: refused.
  assert.equal((await mcp("globex", token, { jsonrpc: "2.0", id: 1, method: "ping" })).status, 401);
  for (const version of ["2025-06-18", "2025-11-25"]) {
    const init = await mcp("acme", token, { jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: version, capabilities: {}, clientInfo: { name: "t", version: "1" } } });
    assert.equal(init.json.result.protocolVersion, version);
  }
  assert.deepEqual((await mcp("acme", token, { jsonrpc: "2.0", id: 2, method: "ping" })).json.result, {});
  assert.equal((await mcp("acme", token, { jsonrpc: "2.0", id: 3, method: "server/discover" })).json.error.code, -32601);
  assert.equal((await mcp("acme", token, { jsonrpc: "2.0", id: 4, method: "tools/call", params: { name: "drop_tables" } })).json.error.code, -32602);
  assert.equal((await mcp("acme", token, { jsonrpc: "2.0", method: "notifications/initialized" })).status, 202);
  const bad = await mcp("acme", token, { jsonrpc: "2.0", id: 5, method: "tools/call", params: { name: "get_contact", arguments: { contact_id: "../tags" } } });
  assert.equal(bad.json.result.isError, true);
  assert.equal((await call(stack.url, "GET", "/mcp/acme", { token })).status, 405);
});

/** Registers a client and walks the browser's part with PKCE; answers what a test needs. */
async function authorized({ redirect = "http://127.0.0.1:9/cb", resource = `${stack.url}/mcp/acme`, browsing = {} } = {}) {
  const reg = await call(stack.url, "POST", "/mcp/oauth/register", { body: { client_name: "Direct", redirect_uris: [redirect] } });
  assert.equal(reg.status, 201);
  const verifier = randomBytes(32).toString("base64url");
  record("secrets", { values: [verifier] });
  const challenge = createHash("sha256").update(verifier).digest("base64url");
  const q = new URLSearchParams({ response_type: "code", client_id: reg.json.client_id, redirect_uri: redirect, state: "st-1", code_challenge: challenge, code_challenge_method: "S256", resource });
  const { last, page, request } = await browse(`${stack.url}/mcp/oauth/authorize?${q}`, browsing);
  const location = last.headers.get("location");
  const back = location ? new URL(location) : null;
  return { client_id: reg.json.client_id, verifier, redirect, last, page, request, back, code: back?.searchParams.get("code") };
}

const exchange = (a, extra = {}) =>
  post("/mcp/oauth/token", { grant_type: "authorization_code", code: a.code, redirect_uri: a.redirect, code_verifier: a.verifier, client_id: a.client_id, ...extra });

function noteTokens(r) {
  if (r.json?.access_token) record("secrets", { values: [r.json.access_token, r.json.refresh_token] });
  return r;
}

test("codes: single use, the right verifier, the right resource; the answer carries iss and state", async () => {
  const a = await authorized();
  assert.equal(a.back.searchParams.get("iss"), stack.url);
  assert.equal(a.back.searchParams.get("state"), "st-1");
  const first = noteTokens(await exchange(a));
  assert.equal(first.status, 200);
  assert.equal(first.headers.get("cache-control"), "no-store");
  assert.equal(first.json.token_type, "Bearer");
  assert.equal((await mcp("acme", first.json.access_token, { jsonrpc: "2.0", id: 1, method: "ping" })).status, 200);
  // Replayed: refused, and what the code gave is revoked.
  const again = await exchange(a);
  assert.equal(again.status, 400);
  assert.equal(again.json.error, "invalid_grant");
  assert.equal((await mcp("acme", first.json.access_token, { jsonrpc: "2.0", id: 1, method: "ping" })).status, 401);

  const b = await authorized();
  const wrong = await exchange(b, { code_verifier: randomBytes(32).toString("base64url") });
  assert.equal(wrong.json.error, "invalid_grant");
  assert.ok(!("access_token" in wrong.json));
  // The code was tried once: the right verifier now finds nothing.
  assert.equal((await exchange(b)).json.error, "invalid_grant");

  const c = await authorized();
  const other = await exchange(c, { resource: `${stack.url}/mcp/globex` });
  assert.equal(other.status, 400);
  assert.equal(other.json.error, "invalid_grant", "another server's resource: not the code's");
  assert.ok(!("access_token" in other.json));
  // A resource no MCP server here answers to (RFC 8707): refused before the code is looked at.
  const e = await authorized();
  const nowhere = await exchange(e, { resource: `${stack.url}/mcp/nobody` });
  assert.equal(nowhere.json.error, "invalid_target", nowhere.text);
  assert.equal(noteTokens(await exchange(e)).status, 200, "the code was not spent");

  // A resource of a partner without an MCP server, at authorize: back to the client, refused.
  const d = await authorized({ resource: `${stack.url}/mcp/nobody` });
  assert.equal(d.back.searchParams.get("error"), "invalid_target");
  assert.equal(d.code, null);
});

test("refresh rotates; a concurrent retry with the same refresh token gets the same answer; revoke ends it", async () => {
  const a = await authorized();
  const first = noteTokens(await exchange(a));
  const refresh = () => post("/mcp/oauth/token", { grant_type: "refresh_token", refresh_token: first.json.refresh_token, client_id: a.client_id });
  const [x, y] = await Promise.all([refresh(), refresh()]);
  noteTokens(x);
  assert.equal(x.status, 200);
  assert.equal(y.status, 200);
  assert.equal(x.json.refresh_token, y.json.refresh_token);
  assert.notEqual(x.json.refresh_token, first.json.refresh_token);
  assert.equal(x.headers.get("cache-control"), "no-store");
  assert.equal((await mcp("acme", first.json.access_token, { jsonrpc: "2.0", id: 1, method: "ping" })).status, 401);
  assert.equal((await mcp("acme", x.json.access_token, { jsonrpc: "2.0", id: 1, method: "ping" })).status, 200);
  const revoked = await post("/mcp/oauth/revoke", { token: x.json.refresh_token, client_id: a.client_id });
  assert.equal(revoked.status, 200);
  assert.equal((await mcp("acme", x.json.access_token, { jsonrpc: "2.0", id: 1, method: "ping" })).status, 401);
  // RFC 7009: an unknown token is no error.
  assert.equal((await post("/mcp/oauth/revoke", { token: "nothing-like-a-token" })).status, 200);
});

test("authorize refuses an unregistered redirect URI, a session without or for another request, and Deny", async () => {
  const reg = await call(stack.url, "POST", "/mcp/oauth/register", { body: { client_name: "R", redirect_uris: ["http://127.0.0.1:7/cb"] } });
  const q = (redirect) => new URLSearchParams({ response_type: "code", client_id: reg.json.client_id, redirect_uri: redirect, code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", code_challenge_method: "S256", resource: `${stack.url}/mcp/acme` });
  const unregistered = await call(stack.url, "GET", `/mcp/oauth/authorize?${q("https://evil.example/cb")}`);
  assert.equal(unregistered.status, 400);
  assert.equal(unregistered.headers.get("location"), null);
  // Loopback matches with any port.
  const otherPort = await call(stack.url, "GET", `/mcp/oauth/authorize?${q("http://127.0.0.1:45678/cb")}`);
  assert.equal(otherPort.status, 302);
  assert.match(otherPort.headers.get("location"), /^https:\/\/acme\.example\/keaplink-mcp\?keaplink_request=/);
  // Registration refuses what authorize would.
  for (const bad of ["http://evil.example/cb", "https://u:p@a.example/cb", "https://a.example/cb#f"]) {
    const r = await call(stack.url, "POST", "/mcp/oauth/register", { body: { redirect_uris: [bad] } });
    assert.equal(r.status, 400);
    assert.equal(r.json.error, "invalid_redirect_uri");
  }

  const without = await authorized({ browsing: { claims: {} } });
  assert.equal(without.last.status, 401);
  assert.ok(!without.code);
  const earlier = await authorized();
  const forOther = await authorized({ browsing: { claims: { keaplink_request: earlier.request } } });
  assert.equal(forOther.last.status, 401);
  assert.ok(!forOther.code);

  const denied = await authorized({ browsing: { decision: "deny" } });
  assert.equal(denied.back.searchParams.get("error"), "access_denied");
  assert.equal(denied.back.searchParams.get("state"), "st-1");
  assert.equal(denied.code, null);
  // The consent page: the client's name as registered, marked unverified; the user's links by business.
  assert.match(earlier.page.text, /Direct/);
  assert.match(earlier.page.text, /not verified/);
  assert.match(earlier.page.headers.get("content-security-policy"), /default-src 'none'/);
});

test("the widget's Connected assistants: the user lists the MCP clients in a link and revokes one at once", async () => {
  const jwt = await mintSession(acme, "u1");
  const listed = await call(stack.url, "GET", `/v1/me/connections/${ids.u1}/assistants`, { token: jwt });
  assert.equal(listed.status, 200);
  const mine = listed.json.assistants.find((a) => a.client_name === "keaplink e2e assistant" && a.access === "read_write");
  assert.ok(mine, JSON.stringify(listed.json));
  // Another user's session does not see or touch u1's link.
  const other = await mintSession(acme, "u3");
  assert.equal((await call(stack.url, "GET", `/v1/me/connections/${ids.u1}/assistants`, { token: other })).status, 404);
  const token = readWrite.tokens.access_token;
  assert.equal((await mcp("acme", token, { jsonrpc: "2.0", id: 1, method: "ping" })).status, 200);
  const revoked = await call(stack.url, "DELETE", `/v1/me/connections/${ids.u1}/assistants/${mine.id}`, { token: jwt });
  assert.equal(revoked.status, 204);
  assert.equal((await mcp("acme", token, { jsonrpc: "2.0", id: 1, method: "ping" })).status, 401);
  assert.equal((await call(stack.url, "DELETE", `/v1/me/connections/${ids.u1}/assistants/${mine.id}`, { token: jwt })).status, 404);
  const events = (await call(stack.url, "GET", `/v1/connections/${ids.u1}`, { token: acme.api_key })).json.events;
  assert.ok(events.some((e) => e.type === "mcp_revoked"));
});

test("disconnecting the link, or the partner turning MCP off, ends the tokens", async () => {
  const a = await authorized({ browsing: { user: "u2" } });
  const t = noteTokens(await exchange(a)).json;
  assert.equal((await mcp("acme", t.access_token, { jsonrpc: "2.0", id: 1, method: "ping" })).status, 200);
  assert.equal((await call(stack.url, "DELETE", `/v1/connections/${ids.u2}`, { token: acme.api_key })).status, 204);
  assert.equal((await mcp("acme", t.access_token, { jsonrpc: "2.0", id: 1, method: "ping" })).status, 401);
  assert.equal((await post("/mcp/oauth/token", { grant_type: "refresh_token", refresh_token: t.refresh_token, client_id: a.client_id })).json.error, "invalid_grant");

  const b = await authorized();
  const u = noteTokens(await exchange(b)).json;
  assert.equal((await mcp("acme", u.access_token, { jsonrpc: "2.0", id: 1, method: "ping" })).status, 200);
  const off = await call(stack.url, "PATCH", "/v1/partner", { token: acme.api_key, body: { mcp: { enabled: false } } });
  assert.equal(off.status, 200);
  assert.equal(off.json.mcp.enabled, false);
  assert.equal((await mcp("acme", u.access_token, { jsonrpc: "2.0", id: 1, method: "ping" })).status, 404);
  assert.equal((await call(stack.url, "GET", "/.well-known/oauth-protected-resource/mcp/acme")).status, 404);
  // On again: the tokens from before stay ended.
  await new Promise((r) => setTimeout(r, 1100));
  const on = await call(stack.url, "PATCH", "/v1/partner", { token: acme.api_key, body: { mcp: { enabled: true, sign_in_url: "https://acme.example/keaplink-mcp", tools: "read_write" } } });
  assert.equal(on.status, 200);
  assert.equal((await mcp("acme", u.access_token, { jsonrpc: "2.0", id: 1, method: "ping" })).status, 401);
  const stale = await post("/mcp/oauth/token", { grant_type: "refresh_token", refresh_token: u.refresh_token, client_id: b.client_id });
  assert.equal(stale.json.error, "invalid_grant", "nor does its refresh token get new ones");
});

// It deletes globex: no test after it uses globex.
test("exporting the link, or deleting the partner, ends the tokens", async () => {
  const ping = { jsonrpc: "2.0", id: 1, method: "ping" };
  const resource = `${stack.url}/mcp/globex`;
  const allow = async (user) => {
    const a = await authorized({ resource, browsing: { partner: globex, user } });
    const t = noteTokens(await exchange(a)).json;
    assert.ok(t.access_token, JSON.stringify(t));
    assert.equal((await mcp("globex", t.access_token, ping)).status, 200);
    return { a, t };
  };
  const refresh = ({ a, t }) => post("/mcp/oauth/token", { grant_type: "refresh_token", refresh_token: t.refresh_token, client_id: a.client_id });

  // Export: the link leaves keaplink with its Keap tokens, and its assistants' access with it.
  const g1 = await allow("g1");
  const list = (await call(stack.url, "GET", "/v1/connections", { token: globex.api_key })).json.connections;
  const out = await call(stack.url, "POST", "/v1/connections/export", { token: globex.api_key, body: { connection_ids: [list.find((c) => c.user === "g1").id] } });
  assert.equal(out.status, 200, out.text);
  assert.equal((await mcp("globex", g1.t.access_token, ping)).status, 401);
  assert.equal((await refresh(g1)).json.error, "invalid_grant");

  // The partner deleted: its MCP server is gone and no token of its users works anywhere.
  await linkUser(stack, globex, "g2", "dan@gh012.example");
  const g2 = await allow("g2");
  const gone = await call(stack.url, "DELETE", "/v1/admin/partners/globex", { token: ADMIN_TOKEN });
  assert.equal(gone.status, 204, gone.text);
  assert.equal((await mcp("globex", g2.t.access_token, ping)).status, 404);
  assert.equal((await mcp("acme", g2.t.access_token, ping)).status, 401, "nor at another partner's endpoint");
  const again = await refresh(g2);
  assert.equal(again.json.error, "invalid_grant", again.text);
  assert.equal(again.json.access_token, undefined);
});

test("a registration is marked in KV only once it authorizes something, for its lifetime (registrations expire unused)", async () => {
  const idle = await call(stack.url, "POST", "/mcp/oauth/register", { body: { client_name: "Idle", redirect_uris: ["http://127.0.0.1:9/cb"] } });
  assert.equal(idle.status, 201);
  const used = await authorized();
  assert.equal(noteTokens(await exchange(used)).status, 200);
  const at = Date.now() / 1000;
  await stack.worker.stop();
  const marks = await withLocalKv(kvDir, async (kv) => (await kv.list({ prefix: "mcpc/" })).keys);
  await stack.restartWorker();
  const mark = (clientId) => marks.find((k) => k.name === `mcpc/${createHash("sha256").update(clientId).digest("base64url")}`);
  assert.ok(!mark(idle.json.client_id), "a registration that authorized nothing stores nothing");
  const m = mark(used.client_id);
  assert.ok(m, "the one that did is marked");
  // It keeps the registration current for 30 days from its last authorization, then goes.
  assert.ok(Math.abs(m.expiration - (at + 30 * 86400)) < 600, `expires in 30 days: ${m.expiration}`);
});
