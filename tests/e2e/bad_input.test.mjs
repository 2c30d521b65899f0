// Bad input of every kind: a clear error code, nothing stored, no secret in any answer or log.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { SignJWT, UnsecuredJWT } from "jose";
import { ADMIN_TOKEN, TOKEN_KEY, CLIENT_SECRET, startStack } from "./harness.mjs";
import { Browser, call, linkThroughSandbox, mintSession, putPartner } from "./client.mjs";

const ORIGIN = "https://acme.example";
let stack;
let acme;
let other;
const answers = []; // every body the Worker answered, checked for secrets at the end

before(async () => {
  stack = await startStack();
  acme = await putPartner(stack.url, "acme", { origins: [ORIGIN], returnUrls: ["https://acme.example/settings"] });
  other = await putPartner(stack.url, "other", { origins: ["https://other.example"] });
});
after(async () => { await stack?.stop(); });

async function req(method, path, opts = {}) {
  const res = await call(stack.url, method, path, opts);
  answers.push(res.text);
  return res;
}

function assertError(res, status, code) {
  assert.equal(res.status, status, `${status} expected, got ${res.status}: ${res.text}`);
  assert.equal(res.json?.error?.code, code, res.text);
  assert.ok(res.json.error.message.length > 10, "a message a person can act on");
  assert.match(res.headers.get("content-type"), /^application\/json/);
}

async function nothingStored(user = "victim") {
  const list = await req("GET", "/v1/me/connections", { token: await mintSession(acme, user) });
  assert.deepEqual(list.json.connections, []);
}

async function connectUrl(user = "victim") {
  const res = await req("POST", "/v1/me/connect", { token: await mintSession(acme, user), headers: { origin: ORIGIN }, body: {} });
  assert.equal(res.status, 200, res.text);
  return res.json.authorize_url;
}

// ---- the callback's state -------------------------------------------------------------------

test("callback: missing, garbled, unknown (foreign) and reused state store nothing and say why", async () => {
  const cases = [
    "/oauth/callback",
    "/oauth/callback?code=abc",
    "/oauth/callback?code=abc&state=",
    "/oauth/callback?code=abc&state=%00%01garbled",
    `/oauth/callback?code=abc&state=${"A".repeat(43)}`, // well-formed, never issued
    `/oauth/callback?code=abc&state=${"x".repeat(5000)}`,
    "/oauth/callback?code=a&code=b&state=s",
  ];
  for (const path of cases) {
    const res = await req("GET", path);
    assert.ok([400].includes(res.status), `${path}: ${res.status}`);
    assert.match(res.text, /invalid, was already used, or expired|malformed/, path);
    assert.match(res.headers.get("content-type"), /text\/html/);
    assert.doesNotMatch(res.text, /postMessage\(/, "no trusted state, nothing posted");
  }
  // Reused: a state that completed once is refused the second time.
  const browser = new Browser();
  const j = await linkThroughSandbox(browser, stack.sandbox.url, await connectUrl("reuser"), { email: "ann@ab123.example" });
  assert.match(j.final.text, /"status":"connected"/);
  const callbackUrl = browser.visited.at(-1);
  assert.match(callbackUrl, /\/oauth\/callback\?/);
  const again = await req("GET", new URL(callbackUrl).pathname + new URL(callbackUrl).search);
  assert.equal(again.status, 400);
  assert.match(again.text, /already used/);
  await nothingStored();
});

test("callback: a state is bound to the user who asked: another user's login lands on the asker", async () => {
  // The state carries partner, user and origin; the callback never takes them from the query.
  const url = await connectUrl("asker");
  await linkThroughSandbox(new Browser(), stack.sandbox.url, url, { email: "bob@cd456.example" });
  const asker = await req("GET", "/v1/me/connections", { token: await mintSession(acme, "asker") });
  assert.equal(asker.json.connections.length, 1);
  await nothingStored("victim");
});

// ---- Keap failing the code exchange ------------------------------------------------------------

for (const [fault, code] of [
  ["bad_request", "keap_error"],
  ["server_error", "keap_error"],
  ["garbage", "keap_bad_response"],
  ["hang", "keap_timeout"],
  ["omit_refresh_token", "keap_bad_response"],
  ["omit_app", "keap_bad_response"],
]) {
  test(`callback: Keap answers the code exchange with ${fault}: error ${code}, nothing stored`, async () => {
    const user = `fault-${fault}`;
    const url = await connectUrl(user);
    // The sandbox hangs 8 s against the Worker's 2 s KEAP_TIMEOUT_MS: a wide margin, since a busy
    // 2-core machine can delay the Worker's timer by seconds.
    await stack.sandbox.fault(fault, 1, fault === "hang" ? 8000 : undefined);
    const j = await linkThroughSandbox(new Browser(), stack.sandbox.url, url, { email: "ann@ab123.example" });
    assert.equal(j.final.res.status, 200);
    assert.match(j.final.text, /"status":"error"/);
    assert.match(j.final.text, new RegExp(`"error":"${code}"`));
    answers.push(j.final.text);
    await nothingStored(user);
    const all = await req("GET", "/v1/connections", { token: acme.api_key });
    assert.ok(!all.json.connections.some((c) => c.user === user));
  });
}

// ---- session JWTs ---------------------------------------------------------------------------

test("bad session JWTs get 401 invalid_session", async () => {
  const now = Math.floor(Date.now() / 1000);
  const sign = (claims, { alg = "HS256", secret = acme.session_secret } = {}) =>
    new SignJWT(claims).setProtectedHeader({ alg }).sign(new TextEncoder().encode(secret));
  const base = { iss: "acme", sub: "u", aud: "keaplink", iat: now, exp: now + 600 };
  const tokens = {
    "bad signature": await sign(base, { secret: "not-the-secret-not-the-secret-xx" }),
    "alg none": new UnsecuredJWT(base).encode(),
    HS512: await sign(base, { alg: "HS512", secret: acme.session_secret + acme.session_secret }),
    "wrong aud": await sign({ ...base, aud: "someone-else" }),
    expired: await sign({ ...base, iat: now - 700, exp: now - 100 }),
    "too long-lived": await sign({ ...base, exp: now + 3700 }),
    "iat in the future": await sign({ ...base, iat: now + 300, exp: now + 600 }),
    "unknown partner": await sign({ ...base, iss: "nobody" }),
    "other partner's secret": await sign(base, { secret: other.session_secret }),
    "empty sub": await sign({ ...base, sub: "" }),
    garbage: "not.a.jwt",
    huge: "x".repeat(10_000),
  };
  for (const [name, token] of Object.entries(tokens)) {
    const res = await req("GET", "/v1/me/connections", { token, headers: { origin: ORIGIN } });
    assertError(res, 401, "invalid_session");
    assert.ok(!res.text.includes(token.slice(0, 40)) || name === "garbage", `${name}: the token is not echoed`);
  }
  assertError(await req("GET", "/v1/me/connections"), 401, "missing_credentials");
  assertError(await req("GET", "/v1/me/connections", { headers: { authorization: "Basic abc" } }), 401, "missing_credentials");
});

test("a session JWT without iat names the claim; milliseconds are told to be seconds", async () => {
  const now = Math.floor(Date.now() / 1000);
  const sign = (claims) =>
    new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).sign(new TextEncoder().encode(acme.session_secret));
  const base = { iss: "acme", sub: "u", aud: "keaplink", iat: now, exp: now + 600 };
  const { iat: _, ...noIat } = base;
  const cases = [
    [noIat, /no iat claim.*seconds since 1970/],
    [{ ...base, iat: now * 1000, exp: (now + 600) * 1000 }, /exp is in milliseconds: it must be seconds/],
    [{ ...base, iat: Date.now() }, /iat is in milliseconds: it must be seconds/],
    [{ ...base, iat: now + 0.5 }, /iat and exp must be whole numbers of seconds since 1970, without a fraction/],
  ];
  for (const [claims, message] of cases) {
    const res = await req("GET", "/v1/me/connections", { token: await sign(claims), headers: { origin: ORIGIN } });
    assertError(res, 401, "invalid_session");
    assert.match(res.json.error.message, message, JSON.stringify(claims));
    assert.doesNotMatch(res.json.error.message, /not a well-formed JWT/);
  }
  // The same claims in seconds pass.
  assert.equal((await req("GET", "/v1/me/connections", { token: await sign(base), headers: { origin: ORIGIN } })).status, 200);
});

// ---- CORS and return_to ----------------------------------------------------------------------

test("an origin the partner did not allow gets 403 and no CORS grant; preflights too", async () => {
  const token = await mintSession(acme, "u");
  const res = await req("GET", "/v1/me/connections", { token, headers: { origin: "https://evil.example" } });
  assertError(res, 403, "origin_not_allowed");
  assert.equal(res.headers.get("access-control-allow-origin"), null);
  // Another partner's origin is not this partner's.
  assertError(await req("GET", "/v1/me/connections", { token, headers: { origin: "https://other.example" } }), 403, "origin_not_allowed");
  const bad = await req("OPTIONS", "/v1/me/connections", { headers: { origin: "https://evil.example", "access-control-request-method": "GET" } });
  assertError(bad, 403, "origin_not_allowed");
  const good = await req("OPTIONS", "/v1/me/connect", { headers: { origin: ORIGIN, "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type" } });
  assert.equal(good.status, 204);
  assert.equal(good.headers.get("access-control-allow-origin"), ORIGIN);
  assert.match(good.headers.get("access-control-allow-headers"), /authorization/);
  // No Origin (a server) is allowed.
  assert.equal((await req("GET", "/v1/me/connections", { token })).status, 200);
});

test("return_to must be exactly an allowed URL", async () => {
  const token = await mintSession(acme, "u");
  for (const return_to of ["https://evil.example/", "https://acme.example/settings/", "https://acme.example/settings?x", "//evil.example", "javascript:alert(1)", "https://acme.example.evil.example/settings"]) {
    const res = await req("POST", "/v1/me/connect", { token, headers: { origin: ORIGIN }, body: { return_to } });
    assertError(res, 400, "return_url_not_allowed");
  }
});

// ---- bodies, routes, methods, ids --------------------------------------------------------------

test("bodies over 16 KiB get 413, malformed ones 400, and nothing is stored", async () => {
  const token = await mintSession(acme, "u");
  const big = JSON.stringify({ return_to: null, pad: "x".repeat(17 * 1024) });
  assertError(await req("POST", "/v1/me/connect", { token, raw: big, headers: { "content-type": "application/json" } }), 413, "body_too_large");
  assertError(await req("POST", "/v1/token", { token: acme.api_key, raw: big }), 413, "body_too_large");
  assertError(await req("PUT", "/v1/admin/partners/big", { token: ADMIN_TOKEN, raw: big }), 413, "body_too_large");
  assertError(await req("GET", "/v1/admin/partners/big", { token: ADMIN_TOKEN }), 404, "partner_not_found");
  for (const raw of ["{", "[]", '{"user": 5}', '{"user": "u", "extra": 1}', "null", '{"user": "a\\u0000b"}']) {
    const res = await req("POST", "/v1/token", { token: acme.api_key, raw });
    assertError(res, 400, "invalid_request");
  }
  assertError(await req("POST", "/v1/token", { token: acme.api_key, body: { user: "u", keap_app: "../x" } }), 400, "invalid_request");
  assertError(await req("POST", "/v1/me/connect", { token, raw: '{"sign_out_first": "yes"}' }), 400, "invalid_request");
});

test("unknown routes get 404, wrong methods 405", async () => {
  assertError(await req("GET", "/nope"), 404, "not_found");
  assertError(await req("GET", "/v1/me/unknown", { token: await mintSession(acme, "u") }), 404, "not_found");
  assertError(await req("DELETE", "/v1/token", { token: acme.api_key }), 405, "method_not_allowed");
  assertError(await req("POST", "/v1/connections", { token: acme.api_key }), 405, "method_not_allowed");
  assertError(await req("PUT", "/v1/me/connections", { token: await mintSession(acme, "u") }), 405, "method_not_allowed");
  assertError(await req("POST", "/oauth/callback"), 405, "method_not_allowed");
  assertError(await req("PATCH", "/v1/admin/partners/acme", { token: ADMIN_TOKEN }), 405, "method_not_allowed");
});

test("ids with slashes, dots or 10 KB of text are refused clearly", async () => {
  const token = await mintSession(acme, "u");
  for (const id of ["..%2F..%2Fp%2Facme", "a%2Fb", "x".repeat(10_000), "AAAAAAAAAAAAAAAAAAAAA%21", "%00"]) {
    const res = await req("DELETE", `/v1/me/connections/${id}`, { token });
    assertError(res, 400, "invalid_id");
    assertError(await req("DELETE", `/v1/connections/${id}`, { token: acme.api_key }), 400, "invalid_id");
  }
  // Dot segments are resolved by URL parsing before routing: `/v1/me/connections/..` is `/v1/me/`.
  for (const id of ["..", "%2E%2E"]) {
    assertError(await req("DELETE", `/v1/me/connections/${id}`, { token }), 404, "not_found");
    assertError(await req("DELETE", `/v1/connections/${id}`, { token: acme.api_key }), 404, "not_found");
  }
  assertError(await req("DELETE", "/v1/me/connections/a/b", { token }), 404, "not_found");
  for (const id of ["ACME", "a_b", "...", "a%2Fb", "x".repeat(65)]) {
    assertError(await req("PUT", `/v1/admin/partners/${id}`, { token: ADMIN_TOKEN, body: { name: "x", allowed_origins: [], return_urls: [] } }), 400, "invalid_id");
  }
  assertError(await req("PUT", "/v1/admin/partners/p1", { token: ADMIN_TOKEN, body: { name: "x", allowed_origins: ["https://a.example/path"], return_urls: [] } }), 400, "invalid_partner");
  assertError(await req("GET", "/v1/admin/partners/p1", { token: ADMIN_TOKEN }), 404, "partner_not_found");
  assertError(await req("GET", "/v1/connections?limit=0", { token: acme.api_key }), 400, "invalid_request");
  assertError(await req("GET", "/v1/connections?limit=abc", { token: acme.api_key }), 400, "invalid_request");
});

test("credentials: wrong admin token, wrong or foreign API key", async () => {
  assertError(await req("GET", "/v1/admin/partners/acme", { token: "nope" }), 401, "invalid_admin_token");
  assertError(await req("GET", "/v1/admin/partners/acme"), 401, "missing_credentials");
  assertError(await req("POST", "/v1/token", { token: "klk.acme.nope", body: { user: "u" } }), 401, "invalid_api_key");
  const forged = acme.api_key.replace(/.$/, (c) => (c === "A" ? "B" : "A"));
  assertError(await req("POST", "/v1/token", { token: forged, body: { user: "u" } }), 401, "invalid_api_key");
  // other's key, acme's partner id: refused.
  const spliced = `klk.acme.${other.api_key.split(".")[2]}`;
  assertError(await req("POST", "/v1/token", { token: spliced, body: { user: "u" } }), 401, "invalid_api_key");
});

test("admin additions: bad webhook_url, reseal limit and cursor, wrong methods; nothing changed", async () => {
  const before = await req("GET", "/v1/admin/partners/acme", { token: ADMIN_TOKEN });
  const base = { name: "Acme", allowed_origins: [ORIGIN], return_urls: ["https://acme.example/settings"] };
  for (const webhook_url of ["not a url", "ftp://acme.example/hook", "https://user:pw@acme.example/hook", "https://acme.example/hook#x", "/hook", 42]) {
    const res = await req("PUT", "/v1/admin/partners/acme", { token: ADMIN_TOKEN, body: { ...base, webhook_url } });
    assertError(res, 400, typeof webhook_url === "number" ? "invalid_request" : "invalid_partner");
  }
  const after = await req("GET", "/v1/admin/partners/acme", { token: ADMIN_TOKEN });
  assert.deepEqual(after.json, before.json, "the partner is unchanged");
  for (const q of ["?limit=0", "?limit=501", "?limit=x", "?limit=1&limit=2", "?lmit=5"]) {
    assertError(await req("POST", `/v1/admin/reseal${q}`, { token: ADMIN_TOKEN }), 400, "invalid_request");
  }
  // A cursor we did not issue is refused as such (issue 11: every listing); an empty one starts
  // the walk, as the README's loop sends it first.
  for (const q of ["?cursor=x", "?cursor=q%3Aabc", "?cursor=cA.AAAAAAAAAAAAAAAAAAAAAA"]) {
    assertError(await req("POST", `/v1/admin/reseal${q}`, { token: ADMIN_TOKEN }), 400, "invalid_cursor");
  }
  assert.equal((await req("POST", "/v1/admin/reseal?limit=10&cursor=", { token: ADMIN_TOKEN })).status, 200);
  assertError(await req("GET", "/v1/admin/reseal", { token: ADMIN_TOKEN }), 405, "method_not_allowed");
  assertError(await req("POST", "/v1/admin/stats", { token: ADMIN_TOKEN }), 405, "method_not_allowed");
  assertError(await req("GET", "/v1/admin/stats", { token: acme.api_key }), 401, "invalid_admin_token");
});

test("another partner's or another user's connection id is 404, never 403", async () => {
  const j = await linkThroughSandbox(new Browser(), stack.sandbox.url, await connectUrl("owner"), { email: "cat@ef789.example" });
  const id = j.final.text.match(/"connection_id":"([^"]+)"/)[1];
  assertError(await req("DELETE", `/v1/connections/${id}`, { token: other.api_key }), 404, "no_connection");
  assertError(await req("POST", "/v1/token", { token: other.api_key, body: { user: "owner" } }), 404, "no_connection");
  const otherList = await req("GET", "/v1/connections", { token: other.api_key });
  assert.ok(!otherList.text.includes(id));
  assertError(await req("DELETE", `/v1/me/connections/${id}`, { token: await mintSession(acme, "not-owner") }), 404, "no_connection");
  // A random, well-formed id.
  assertError(await req("DELETE", `/v1/connections/${randomBytes(16).toString("base64url")}`, { token: acme.api_key }), 404, "no_connection");
  // Still there for its owner.
  const mine = await req("GET", "/v1/me/connections", { token: await mintSession(acme, "owner") });
  assert.equal(mine.json.connections.length, 1);
});

test("no answer and no log line carries a secret or a token", async () => {
  const secrets = [CLIENT_SECRET, ADMIN_TOKEN, TOKEN_KEY, acme.session_secret, acme.api_key, other.session_secret, other.api_key];
  const logs = stack.worker.logs.join("");
  for (const s of secrets) {
    for (const text of answers) assert.ok(!text.includes(s), "a secret leaked into an answer");
    assert.ok(!logs.includes(s), "a secret leaked into the Worker's log");
  }
});
