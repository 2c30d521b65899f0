// Answers that must not mislead: cursors we did not issue, methods and HEAD, trailing slashes,
// fields and parameters sent twice, a credential sent where another belongs, a webhook no
// delivery could reach, and a 500 whose cause reaches the log line but never the answer.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ADMIN_TOKEN, startStack } from "./harness.mjs";
import { call, linkUser, mintSession, requestLine, putPartner } from "./client.mjs";
import { withLocalKv } from "./seed.mjs";

const ORIGIN = "https://acme.example";
let stack;
let acme;
let globex;
let kvDir;

before(async () => {
  kvDir = await mkdtemp(join(tmpdir(), "keaplink-answers-"));
  stack = await startStack({ persistTo: kvDir });
  acme = await putPartner(stack.url, "acme", { origins: [ORIGIN] });
  globex = await putPartner(stack.url, "globex", { origins: ["https://globex.example"] });
  await linkUser(stack, acme, "u1", "ann@ab123.example");
  await linkUser(stack, acme, "u2", "bob@cd456.example");
  await linkUser(stack, globex, "g1", "cat@ef789.example");
});
after(async () => {
  await stack?.stop();
  await rm(kvDir, { recursive: true, force: true });
});

function assertError(res, status, code, message) {
  assert.equal(res.status, status, `${status} expected, got ${res.status}: ${res.text}`);
  assert.equal(res.json?.error?.code, code, res.text);
  if (message) assert.match(res.json.error.message, message);
}

test("a cursor we did not issue is 400 invalid_cursor on every listing; ours page through", async () => {
  const page1 = await call(stack.url, "GET", "/v1/connections?limit=1", { token: acme.api_key });
  assert.equal(page1.status, 200, page1.text);
  assert.equal(page1.json.connections.length, 1);
  assert.ok(page1.json.cursor, "a next page");
  const page2 = await call(stack.url, "GET", `/v1/connections?limit=1&cursor=${encodeURIComponent(page1.json.cursor)}`, { token: acme.api_key });
  assert.equal(page2.status, 200, page2.text);
  assert.equal(page2.json.connections.length, 1);
  assert.notEqual(page2.json.connections[0].id, page1.json.connections[0].id);
  for (const cursor of ["garbage", "", page1.json.cursor.slice(0, -2), `${page1.json.cursor}x`]) {
    if (cursor === "") continue; // empty means "from the start"
    const res = await call(stack.url, "GET", `/v1/connections?cursor=${encodeURIComponent(cursor)}`, { token: acme.api_key });
    assertError(res, 400, "invalid_cursor", /not one this listing gave out/);
  }
  // Another partner's cursor does not walk this partner's listing.
  const theirs = await call(stack.url, "GET", `/v1/connections?cursor=${encodeURIComponent(page1.json.cursor)}`, { token: globex.api_key });
  assertError(theirs, 400, "invalid_cursor");
  // The admin walk too.
  assertError(await call(stack.url, "POST", "/v1/admin/reseal?cursor=garbage", { token: ADMIN_TOKEN }), 400, "invalid_cursor");
});

test("every 405 lists the allowed methods in Allow; HEAD is answered wherever GET is", async () => {
  for (const [method, path, allow] of [
    ["POST", "/healthz", "GET, HEAD"],
    ["GET", "/v1/token", "POST"],
    ["PATCH", "/v1/admin/partners/acme", "PUT, GET, HEAD, DELETE"],
    ["POST", "/v1/connections", "GET, HEAD"],
    ["GET", "/v1/me/connect", "POST, OPTIONS"],
    ["PUT", "/v1/me/connections", "GET, HEAD, OPTIONS"],
    ["DELETE", "/v1/admin/stats", "GET, HEAD"],
  ]) {
    const res = await call(stack.url, method, path, { token: ADMIN_TOKEN });
    assertError(res, 405, "method_not_allowed");
    assert.equal(res.headers.get("allow"), allow, `${method} ${path}`);
    assert.ok(res.json.error.message.includes(allow), res.text);
  }
  // A method the runtime does not know is not read as GET.
  for (const method of ["QUERY", "PROPFIND"]) {
    const res = await fetch(`${stack.url}/healthz`, { method });
    assert.equal(res.status, 405, method);
    assert.equal(res.headers.get("allow"), "GET, HEAD");
  }
  const jwt = await mintSession(acme, "u1");
  for (const [path, token, expect] of [
    ["/healthz", undefined, 200],
    ["/v1/connections", acme.api_key, 200],
    ["/v1/admin/stats", ADMIN_TOKEN, 200],
    ["/v1/me/connections", jwt, 200],
    ["/v1/connections", "klk.acme.not-the-key-not-the-key-not-the-key-xxxx", 401],
  ]) {
    const get = await call(stack.url, "GET", path, { token });
    const head = await call(stack.url, "HEAD", path, { token });
    assert.equal(get.status, expect, `GET ${path}: ${get.text}`);
    assert.equal(head.status, get.status, `HEAD ${path}`);
    assert.equal(head.text, "", `HEAD ${path} has no body`);
    assert.equal(head.headers.get("content-type"), get.headers.get("content-type"), `HEAD ${path}`);
    assert.ok(head.headers.get("x-request-id"));
  }
});

test("one rule for trailing slashes: a path with one is no endpoint (404, with the path to use)", async () => {
  for (const [method, path, token] of [
    ["GET", "/v1/connections/", acme.api_key],
    ["POST", "/v1/token/", acme.api_key],
    ["GET", "/v1/me/connections/", await mintSession(acme, "u1")],
    ["GET", "/healthz/", undefined],
    ["GET", "/v1/admin/stats/", ADMIN_TOKEN],
  ]) {
    const res = await call(stack.url, method, path, { token, body: method === "POST" ? { user: "u1" } : undefined });
    assertError(res, 404, "not_found", new RegExp(`no trailing slash \\(try ${path.slice(0, -1).replaceAll("/", "\\/")}\\)`));
  }
  assertError(await call(stack.url, "GET", "//v1/connections", { token: acme.api_key }), 404, "not_found");
  assertError(await call(stack.url, "GET", "/v1//connections", { token: acme.api_key }), 404, "not_found");
});

test("a field or parameter sent twice is named, with the rule", async () => {
  const dup = await call(stack.url, "POST", "/v1/token", { token: acme.api_key, raw: '{"user": "u1", "user": "u2"}', headers: { "content-type": "application/json" } });
  assertError(dup, 400, "invalid_request", /`user` appears twice/);
  const q = await call(stack.url, "GET", "/v1/connections?limit=1&limit=2", { token: acme.api_key });
  assertError(q, 400, "invalid_request", /`limit` appears twice/);
  const unknown = await call(stack.url, "GET", "/v1/connections?limt=5", { token: acme.api_key });
  assertError(unknown, 400, "invalid_request", /Unknown query parameter `limt`/);
  const range = await call(stack.url, "GET", "/v1/connections?limit=0", { token: acme.api_key });
  assertError(range, 400, "invalid_request", /limit must be a whole number from 1 to 1000/);
});

test("an endpoint that takes no query parameter refuses one by name, and changes nothing", async () => {
  const jwt = await mintSession(acme, "u1");
  const [link] = (await call(stack.url, "GET", "/v1/connections", { token: acme.api_key })).json.connections;
  const cases = [
    ["GET", "/v1/admin/stats?x=1", { token: ADMIN_TOKEN }],
    ["GET", "/v1/admin/partners/acme?x=1", { token: ADMIN_TOKEN }],
    ["GET", "/v1/stats?x=1", { token: acme.api_key }],
    ["GET", "/v1/partner?x=1", { token: acme.api_key }],
    ["POST", "/v1/token?x=1", { token: acme.api_key, body: { user: "u1" } }],
    ["GET", `/v1/connections/${link.id}?x=1`, { token: acme.api_key }],
    ["DELETE", `/v1/connections/${link.id}?x=1`, { token: acme.api_key }],
    ["POST", "/v1/partner/rotate-secrets?x=1", { token: acme.api_key }],
    ["GET", "/v1/me/connections?x=1", { token: jwt, headers: { origin: ORIGIN } }],
    ["DELETE", `/v1/me/connections/${link.id}?x=1`, { token: jwt, headers: { origin: ORIGIN } }],
  ];
  for (const [method, path, opts] of cases) {
    const res = await call(stack.url, method, path, opts);
    assertError(res, 400, "invalid_request", /Unknown query parameter `x`\. This endpoint takes no query parameters\./);
  }
  // A credential pasted into the query is refused without being quoted back. (Credential-shaped
  // strings, not the run's own: the dev server's request line prints the query, and the suite's
  // secrets check rightly refuses a real key there.)
  for (const secret of ["klk.acme.0123456789abcdefghijklmnopqrstuv", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJl"]) {
    const res = await call(stack.url, "POST", `/v1/token?${secret}`, { token: acme.api_key, body: { user: "u1" } });
    assertError(res, 400, "invalid_request", /not one of this endpoint's parameters/);
    assert.ok(!res.text.includes(secret.slice(0, 12)), res.text);
  }
  // The widget reads the refusal: it carries the page's CORS grant.
  const me = await call(stack.url, "GET", "/v1/me/connections?x=1", { token: jwt, headers: { origin: ORIGIN } });
  assert.equal(me.headers.get("access-control-allow-origin"), ORIGIN);
  // Nothing was done: the link is there, the key was not rotated.
  const after = await call(stack.url, "GET", `/v1/connections/${link.id}`, { token: acme.api_key });
  assert.equal(after.status, 200, "neither DELETE removed the link, and the API key still works");
  // A health check may add what it likes (load balancers and monitors add cache-busters).
  assert.equal((await call(stack.url, "GET", "/healthz?probe=1")).status, 200);
});

test("a credential sent where another kind belongs says which one the endpoint takes", async () => {
  const jwt = await mintSession(acme, "u1");
  assertError(await call(stack.url, "GET", "/v1/me/connections", { token: acme.api_key, headers: { origin: ORIGIN } }), 401, "invalid_session", /takes a session JWT .*not your API key/);
  assertError(await call(stack.url, "POST", "/v1/token", { token: jwt, body: { user: "u1" } }), 401, "invalid_api_key", /takes your API key .*not a session JWT/);
  assertError(await call(stack.url, "GET", "/v1/connections", { token: jwt }), 401, "invalid_api_key", /not a session JWT/);
  assertError(await call(stack.url, "GET", "/v1/admin/stats", { token: acme.api_key }), 401, "invalid_admin_token", /not a partner's API key/);
  assertError(await call(stack.url, "GET", "/v1/admin/stats", { token: jwt }), 401, "invalid_admin_token", /not a session JWT/);
  // The admin token acts for a partner on its back-end endpoints, but not where a call acts for
  // one of the partner's users: it is told so, not that it is "not valid".
  const asAdmin = { token: ADMIN_TOKEN, headers: { "keaplink-partner": "acme", "keaplink-user": "u1" } };
  assertError(await call(stack.url, "POST", "/v1/token", { ...asAdmin, body: { user: "u1" } }), 401, "invalid_api_key", /takes the partner's API key .*not the admin token/);
  assertError(await call(stack.url, "GET", "/v1/keap/crm/rest/v2/contacts", asAdmin), 401, "invalid_api_key", /not the admin token/);
  assertError(await call(stack.url, "POST", "/v1/token", { token: "klk.acme.wrong", body: { user: "u1" } }), 401, "invalid_api_key", /^The API key is not valid\.$/);
});

test("a session refused before its partner is known is still readable by a page some partner allows", async () => {
  const unknown = await mintSession({ ...acme, partner_id: "nobody" }, "u1");
  const allowed = await call(stack.url, "GET", "/v1/me/connections", { token: unknown, headers: { origin: ORIGIN } });
  assertError(allowed, 401, "invalid_session", /no known partner/);
  assert.equal(allowed.headers.get("access-control-allow-origin"), ORIGIN);
  const garbled = await call(stack.url, "GET", "/v1/me/connections", { token: "not.a.jwt", headers: { origin: ORIGIN } });
  assert.equal(garbled.headers.get("access-control-allow-origin"), ORIGIN);
  const stranger = await call(stack.url, "GET", "/v1/me/connections", { token: unknown, headers: { origin: "https://evil.example" } });
  assert.equal(stranger.status, 401);
  assert.equal(stranger.headers.get("access-control-allow-origin"), null, "no grant to an origin no partner allows");
});

test("a webhook URL no delivery would reach is refused at registration, and nothing changes", async () => {
  const before = await call(stack.url, "GET", "/v1/admin/partners/acme", { token: ADMIN_TOKEN });
  const res = await call(stack.url, "PUT", "/v1/admin/partners/acme", {
    token: ADMIN_TOKEN,
    body: { name: "Acme", allowed_origins: [ORIGIN], return_urls: [], webhook_url: "http://hooks.acme.example/keaplink" },
  });
  assertError(res, 400, "invalid_partner", /webhook_url must be https/);
  assert.deepEqual((await call(stack.url, "GET", "/v1/admin/partners/acme", { token: ADMIN_TOKEN })).json, before.json);
});

test("a 500 names its cause in the request's log line, never in the answer", async () => {
  // A stored partner record that no longer parses: every call with its key fails inside.
  await stack.worker.stop();
  await withLocalKv(kvDir, (kv) => kv.put("p/globex", '{"partner_id": "globex", "broken": '));
  await stack.restartWorker();
  const res = await call(stack.url, "GET", "/v1/connections", { token: globex.api_key });
  assertError(res, 500, "internal", /went wrong on our side/);
  assert.doesNotMatch(res.text, /parse|p\/globex|EOF|line \d/, "the answer carries no cause");
  const id = res.headers.get("x-request-id");
  const line = await requestLine(stack.worker, id);
  assert.ok(line, "the request's log line");
  assert.equal(line.status, 500);
  assert.equal(line.error, "internal");
  assert.match(line.cause, /the stored p\/ record does not parse/);
});
