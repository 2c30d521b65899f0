// Calling Keap through keaplink (/v1/keap/<path>) against the sandbox's REST API: Keap's answer
// relayed (status, body, content-type, x-keap-* headers) with keaplink-connection-id, JSON bodies
// both ways, only three request headers forwarded, every path trick refused before anything
// reaches Keap, the connection chosen by keaplink-user (+ keaplink-app) and never another
// partner's, bodies over 1 MiB refused, and the admin stats' view of it all.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { ADMIN_TOKEN, record, startStack } from "./harness.mjs";
import { call, linkUser, mintSession, requestLine, putPartner } from "./client.mjs";

let stack;
let acme;
let globex;
const ids = {};

before(async () => {
  stack = await startStack();
  acme = await putPartner(stack.url, "acme", { origins: ["https://acme.example"] });
  globex = await putPartner(stack.url, "globex", { origins: ["https://globex.example"] });
  await linkUser(stack, acme, "u1", "ann@ab123.example");
  // One partner user with two Keap apps: calls for them must name one.
  await linkUser(stack, acme, "two", "ann@ab123.example");
  await linkUser(stack, acme, "two", "bob@cd456.example");
  await linkUser(stack, globex, "g1", "cat@ef789.example");
  const listed = async (p) => (await call(stack.url, "GET", "/v1/connections", { token: p.api_key })).json.connections;
  const idOf = (list, user, app) => list.find((c) => c.user === user && c.keap_app === app).id;
  const [a, g] = [await listed(acme), await listed(globex)];
  Object.assign(ids, { u1: idOf(a, "u1", "ab123"), twoAnn: idOf(a, "two", "ab123"), twoBob: idOf(a, "two", "cd456"), g1: idOf(g, "g1", "ef789") });
});
after(async () => { await stack?.stop(); });

/** A proxied call as a partner's back-end makes it (through client.mjs, so it is recorded). */
const keap = (partner, method, path, { user = "u1", app, headers = {}, body, raw } = {}) =>
  call(stack.url, method, `/v1/keap${path}`, {
    token: partner.api_key,
    headers: { "keaplink-user": user, ...(app ? { "keaplink-app": app } : {}), ...headers },
    body,
    raw,
  });

/**
 * A request sent exactly as written, on a raw socket: fetch (and every client library) would
 * resolve dot segments or refuse control characters before sending. Its answer is recorded like
 * call()'s, for the transcript checks.
 */
async function rawCall(method, target, headers = {}, body = "", { framed = false } = {}) {
  const { hostname, port } = new URL(stack.url);
  const lines = [`${method} ${target} HTTP/1.1`, `host: ${hostname}:${port}`, "connection: close"];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  if (body && !framed) lines.push(`content-length: ${Buffer.byteLength(body)}`);
  // Done when the answer is whole (by content-length or the last chunk): the server may keep
  // the connection open whatever we asked.
  const complete = (buf) => {
    const end = buf.indexOf("\r\n\r\n");
    if (end < 0) return false;
    const head = buf.subarray(0, end).toString("latin1");
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    if (length) return buf.length >= end + 4 + Number(length[1]);
    if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) return buf.subarray(end).includes("\r\n0\r\n\r\n");
    return method === "HEAD" || /^HTTP\/1\.1 (204|304)/.test(head);
  };
  const bytes = await new Promise((resolve, reject) => {
    const s = net.connect(Number(port), hostname, () => s.write(`${lines.join("\r\n")}\r\n\r\n${body}`, "latin1"));
    let buf = Buffer.alloc(0);
    const done = () => { s.destroy(); resolve(buf); };
    s.on("data", (c) => { buf = Buffer.concat([buf, c]); if (complete(buf)) done(); });
    s.on("end", done);
    // The server may stop reading an upload it refused: its answer still counts.
    s.on("error", (e) => (buf.length ? done() : reject(e)));
    s.setTimeout(20_000, () => s.destroy(new Error(`no answer to ${method} ${JSON.stringify(target)}`)));
  });
  const split = bytes.indexOf("\r\n\r\n");
  const [statusLine, ...headerLines] = bytes.subarray(0, split).toString("latin1").split("\r\n");
  const answerHeaders = {};
  for (const l of headerLines) {
    const i = l.indexOf(":");
    answerHeaders[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let rest = bytes.subarray(split + 4);
  if (/chunked/i.test(answerHeaders["transfer-encoding"] ?? "")) {
    const parts = [];
    for (;;) {
      const eol = rest.indexOf("\r\n");
      const size = parseInt(rest.subarray(0, eol).toString(), 16);
      if (!size) break;
      parts.push(rest.subarray(eol + 2, eol + 2 + size));
      rest = rest.subarray(eol + 4 + size);
    }
    rest = Buffer.concat(parts);
  }
  const status = Number(statusLine.split(" ")[1]);
  const text = rest.toString("utf8");
  let path;
  try { path = new URL(target, stack.url).pathname; } catch { path = target.split("?")[0]; }
  record("answer", { method, path, status, headers: answerHeaders, text });
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status, headers: answerHeaders, text, json };
}

/** What reached "Keap" so far: every REST call, and every token-endpoint call. */
async function keapSaw() {
  const s = await stack.sandbox.stats();
  const tokenCalls = Object.entries(s.calls).filter(([k]) => k.startsWith("token")).reduce((n, [, v]) => n + v, 0);
  return { rest: s.api_calls_total, token: tokenCalls, log: (await stack.sandbox.apiLog()).length };
}

test("GET with a query: Keap's status, body, content-type and x-keap-* headers, plus keaplink-connection-id and x-request-id", async () => {
  const res = await keap(acme, "GET", "/crm/rest/v1/contacts?limit=1&offset=1");
  assert.equal(res.status, 200, res.text);
  assert.equal(res.json.contacts.length, 1);
  assert.ok(res.json.count >= 2, "the app's contacts, counted by Keap");
  assert.match(res.headers.get("content-type"), /^application\/json/);
  for (const h of ["x-keap-product-quota-limit", "x-keap-product-quota-available", "x-keap-product-quota-expiry-time",
    "x-keap-product-throttle-limit", "x-keap-product-throttle-available", "x-keap-tenant-throttle-available"]) {
    assert.match(res.headers.get(h) ?? "", /^\d+$/, h);
  }
  assert.equal(res.headers.get("x-keap-tenant-id"), "ab123");
  assert.equal(res.headers.get("keaplink-connection-id"), ids.u1);
  assert.match(res.headers.get("x-request-id"), /^[0-9a-f]{16}$/);
  assert.equal(res.headers.get("keaplink-error"), null, "relayed, not made by keaplink");
  assert.equal(res.headers.get("set-cookie"), null);
  const [seen] = (await stack.sandbox.apiLog()).slice(-1);
  assert.deepEqual([seen.method, seen.path, seen.query, seen.authorized], ["GET", "/crm/rest/v1/contacts", "limit=1&offset=1", true]);

  const who = await keap(acme, "GET", "/crm/rest/v2/oauth/connect/userinfo");
  assert.equal(who.status, 200);
  assert.equal(who.json.tenant_id, "ab123");
  assert.equal(who.json.email, "ann@ab123.example");
  // HEAD is answered as GET without a body.
  const head = await keap(acme, "HEAD", "/crm/rest/v2/oauth/connect/userinfo");
  assert.equal(head.status, 200);
  assert.equal(head.text, "");
  assert.equal(head.headers.get("keaplink-connection-id"), ids.u1);
});

test("POST with a JSON body, then GET, PATCH and DELETE it: Keap's statuses and bodies both ways", async () => {
  const created = await keap(acme, "POST", "/crm/rest/v2/contacts", {
    body: { given_name: "Zoë", email_addresses: [{ email: "zoe@example.com", field: "EMAIL1" }] },
  });
  assert.equal(created.status, 201, created.text);
  assert.equal(created.json.given_name, "Zoë", "UTF-8 kept both ways");
  const id = created.json.id;
  const [seen] = (await stack.sandbox.apiLog()).slice(-1);
  assert.equal(seen.method, "POST");
  assert.equal(seen.body_bytes, Buffer.byteLength(JSON.stringify({ given_name: "Zoë", email_addresses: [{ email: "zoe@example.com", field: "EMAIL1" }] })));
  assert.ok(seen.headers.includes("content-type"));

  const got = await keap(acme, "GET", `/crm/rest/v2/contacts/${id}`);
  assert.equal(got.status, 200);
  assert.equal(got.json.email_addresses[0].email, "zoe@example.com");
  const patched = await keap(acme, "PATCH", `/crm/rest/v2/contacts/${id}?update_mask=family_name`, { body: { family_name: "Ng" } });
  assert.equal(patched.status, 200, patched.text);
  assert.equal(patched.json.family_name, "Ng");
  const put = await keap(acme, "PUT", `/crm/rest/v2/contacts/${id}`, { body: {} });
  assert.equal(put.status, 405, "Keap's own answer to a method it does not route");
  assert.equal(put.headers.get("keaplink-error"), null);
  const gone = await keap(acme, "DELETE", `/crm/rest/v2/contacts/${id}`);
  assert.equal(gone.status, 204);
  assert.equal(gone.text, "");
  // Keap's 404 is Keap's: its body, no keaplink-error.
  const missing = await keap(acme, "GET", `/crm/rest/v2/contacts/${id}`);
  assert.equal(missing.status, 404);
  assert.equal(missing.json.status, "NOT_FOUND");
  assert.equal(missing.headers.get("keaplink-error"), null);
  assert.equal(missing.headers.get("keaplink-connection-id"), ids.u1);
  // Keap's 400 for a body it refuses, likewise.
  const bad = await keap(acme, "POST", "/crm/rest/v1/contacts", { raw: "{not json", headers: { "content-type": "application/json" } });
  assert.equal(bad.status, 400);
  assert.match(bad.json.message, /not valid JSON/);
  assert.equal(bad.headers.get("keaplink-error"), null);
});

test("the caller's authorization, cookies, keaplink-* and hop-by-hop headers never reach Keap", async () => {
  const res = await keap(acme, "GET", "/crm/rest/v2/contacts?page_size=1", {
    headers: {
      cookie: "session=partner-cookie-value",
      "x-api-key": "klk.acme.not-for-keap",
      "x-forwarded-for": "10.1.2.3",
      "accept-language": "fr-CA",
      accept: "application/json",
      "proxy-authorization": "Basic c2VjcmV0",
      "cache-control": "no-cache",
      te: "trailers",
    },
  });
  assert.equal(res.status, 200, res.text);
  const [seen] = (await stack.sandbox.apiLog()).slice(-1);
  assert.equal(seen.authorized, true, "Keap saw a live access token: ours, not the caller's API key");
  for (const h of ["accept", "accept-language", "authorization"]) assert.ok(seen.headers.includes(h), `${h} forwarded`);
  for (const h of ["cookie", "x-api-key", "x-forwarded-for", "keaplink-user", "proxy-authorization", "cache-control", "te", "cf-connecting-ip"]) {
    assert.ok(!seen.headers.includes(h), `${h} must not reach Keap (got ${seen.headers.join(", ")})`);
  }
  // What else arrives is the runtime's own transport, nothing of the caller's.
  // (cf-worker names the sending Worker's zone: Cloudflare adds it to every subrequest.)
  const extra = seen.headers.filter((h) => !["accept", "accept-language", "authorization", "content-type"].includes(h));
  assert.deepEqual(extra.filter((h) => !["host", "content-length", "accept-encoding", "user-agent", "cf-worker"].includes(h)), []);
});

test("every path trick is refused with 400 invalid_keap_path, and nothing reaches Keap", async () => {
  const auth = { authorization: `Bearer ${acme.api_key}`, "keaplink-user": "u1" };
  const tricks = [
    // outside KEAP_PROXY_PATHS
    "/v1/keap/token",
    "/v1/keap/crm/xmlrpc/v1",
    "/v1/keap/CRM/REST/v1/contacts",
    "/v1/keap/crm/rest",
    // dot segments: raw ones are resolved by the runtime before the Worker sees them, so these
    // land outside the prefixes; encoded ones in any case, and double-encoded, are refused as such
    "/v1/keap/crm/rest/../../token",
    "/v1/keap/crm/rest/v1/../../../token",
    "/v1/keap/crm/rest/%2e%2e/%2e%2e/token",
    "/v1/keap/crm/rest/%2E%2E/token",
    "/v1/keap/crm/rest/.%2e/token",
    "/v1/keap/crm/rest/%252e%252e/token",
    "/v1/keap/crm/rest/%25252E%25252E/token",
    "/v1/keap/crm/rest/..;/token",
    "/v1/keap/crm/rest/v1/%2e%2e%2f%2e%2e%2ftoken",
    // empty segments, //host, absolute URLs
    "/v1/keap/crm/rest//v1/contacts",
    "/v1/keap/crm/rest/v1/contacts/",
    "/v1/keap//evil.example/crm/rest/v1/contacts",
    "/v1/keap/http://evil.example/crm/rest/v1",
    "/v1/keap/https:%2f%2fevil.example/crm/rest/",
    // encoded slashes and backslashes, encoded ? and #
    "/v1/keap/crm/rest/v1%2fcontacts",
    "/v1/keap/crm/rest/v1%2Fcontacts",
    "/v1/keap/crm/rest/v1%5ccontacts",
    "/v1/keap/crm/rest/v1%5Ccontacts",
    "/v1/keap/crm/rest/v1%252fcontacts",
    "/v1/keap/crm/rest/v1/contacts%3flimit=1",
    "/v1/keap/crm/rest/v1/contacts%23x",
    // control characters and NUL, encoded; a raw one (the runtime encodes it)
    "/v1/keap/crm/rest/v1/contacts%00",
    "/v1/keap/crm/rest/v1/contacts%0d%0aHost:%20evil.example",
    "/v1/keap/crm/rest/v1/contacts%09",
    "/v1/keap/crm/rest/v1/contacts%7F",
    "/v1/keap/crm/rest/v1/cont\x01acts",
    "/v1/keap/crm/rest/v1/contacts%",
    "/v1/keap/crm/rest/v1/contacts|x",
  ];
  const before = await keapSaw();
  const wrong = [];
  for (const path of tricks) {
    const res = await rawCall("GET", path, auth);
    if (res.status !== 400 || res.headers["keaplink-error"] !== "invalid_keap_path" || res.json?.error?.code !== "invalid_keap_path") {
      wrong.push(`${JSON.stringify(path)} → ${res.status} ${res.text.slice(0, 120)}`);
    }
  }
  // The same through every method, and with a body.
  for (const method of ["POST", "PUT", "PATCH", "DELETE"]) {
    const res = await rawCall(method, "/v1/keap/crm/rest/%2e%2e/token", { ...auth, "content-type": "application/json" }, "{}");
    if (res.status !== 400) wrong.push(`${method} → ${res.status}`);
  }
  // A method the runtime does not know (workers-rs reads it as GET) is not sent on as a GET.
  for (const method of ["QUERY", "PROPFIND"]) {
    const res = await rawCall(method, "/v1/keap/crm/rest/v1/contacts", auth);
    if (res.status !== 405 || res.headers.allow !== "GET, HEAD, POST, PUT, PATCH, DELETE" || res.json?.error?.code !== "method_not_allowed" || res.headers["keaplink-error"] !== "method_not_allowed") {
      wrong.push(`${method} → ${res.status} ${JSON.stringify(res.headers)}`);
    }
  }
  assert.deepEqual(wrong, []);
  assert.deepEqual(await keapSaw(), before, "not one request reached Keap");
});

test("every answer keaplink makes itself under /v1/keap says so in keaplink-error, and its log line keeps the code", async () => {
  const auth = { authorization: `Bearer ${acme.api_key}`, "keaplink-user": "u1" };
  const before = await keapSaw();
  // The router's own answers: a method the proxy does not take, and /v1/keap without a Keap path.
  const options = await rawCall("OPTIONS", "/v1/keap/crm/rest/v1/contacts", auth);
  assert.equal(options.status, 405);
  assert.equal(options.headers["keaplink-error"], "method_not_allowed");
  assert.equal(options.headers.allow, "GET, HEAD, POST, PUT, PATCH, DELETE");
  const bare = await rawCall("GET", "/v1/keap", auth);
  assert.equal(bare.status, 404);
  assert.equal(bare.headers["keaplink-error"], "not_found");
  // The proxy's own refusal: its code reaches the request's log line as for any endpoint.
  const res = await rawCall("GET", "/v1/keap/crm/rest/v1%2fcontacts", auth);
  assert.equal(res.status, 400);
  assert.equal(res.headers["keaplink-error"], "invalid_keap_path");
  const id = res.headers["x-request-id"];
  const line = await requestLine(stack.worker, id);
  assert.ok(line, "the request's log line");
  assert.equal(line.status, 400);
  assert.equal(line.error, "invalid_keap_path");
  assert.deepEqual(await keapSaw(), before, "not one request reached Keap");
});

test("control characters in keaplink-* headers are refused, and nothing reaches Keap", async () => {
  const before = await keapSaw();
  const path = "/v1/keap/crm/rest/v1/contacts";
  const auth = { authorization: `Bearer ${acme.api_key}` };
  for (const headers of [
    { "keaplink-user": "u1\x01" },
    { "keaplink-user": "u1\x7f" },
    { "keaplink-user": "u1\tsecond" },
    { "keaplink-user": "u1", "keaplink-app": "ab123\x0b" },
    { "keaplink-user": "u1", "keaplink-trace": "a\x1bb" },
  ]) {
    const res = await rawCall("GET", path, { ...auth, ...headers });
    assert.equal(res.status, 400, `${JSON.stringify(headers)}: ${res.text}`);
    assert.equal(res.json.error.code, "invalid_request");
    assert.equal(res.headers["keaplink-error"], "invalid_request");
  }
  // A CR or LF cannot travel inside a header value; as a line fold, the runtime unfolds it into
  // spaces before the Worker sees it, and the value names no link.
  const folded = await rawCall("GET", path, { ...auth, "keaplink-user": "u1\r\n x-injected: 1" });
  assert.equal(folded.status, 404);
  assert.equal(folded.json.error.code, "no_connection");
  assert.deepEqual(await keapSaw(), before);
});

test("what the runtime does with raw dot segments: resolved before the Worker, so a path that stays under a prefix reaches Keap resolved", async () => {
  for (const path of ["/v1/keap/crm/rest/v2/../v1/contacts?limit=1", "/v1/keap/crm/rest/%2e/v1/contacts?limit=1"]) {
    const res = await rawCall("GET", path, { authorization: `Bearer ${acme.api_key}`, "keaplink-user": "u1" });
    assert.equal(res.status, 200, res.text);
    const [seen] = (await stack.sandbox.apiLog()).slice(-1);
    assert.equal(seen.path, "/crm/rest/v1/contacts", "Keap got the resolved path, inside the prefix");
  }
});

test("what the runtime does with raw backslashes: read as / and resolved with the dot segments before the Worker, so keaplink never sees one", async () => {
  // The URL parser of the runtime (WHATWG's, as Cloudflare's edge and browsers) treats a raw `\`
  // in an http(s) path as `/`. What is left is checked by the proxy like any other path.
  const auth = { authorization: `Bearer ${acme.api_key}`, "keaplink-user": "u1" };
  const cases = [
    // Stays under the prefix: forwarded, resolved. Keap has no /crm/rest/token: its own 404.
    { path: "/v1/keap/crm/rest/v1/contacts\\..\\..\\token", status: 404 },
    { path: "/v1/keap/crm/rest/v2/contacts\\..\\..\\v1\\contacts?limit=1", keap: "/crm/rest/v1/contacts", status: 200 },
    { path: "/v1/keap/crm/rest/v1\\contacts?limit=1", keap: "/crm/rest/v1/contacts", status: 200 },
    // Leaves the prefixes once resolved: refused, nothing sent.
    { path: "/v1/keap/crm/rest/v1\\..\\..\\..\\token", refused: true },
  ];
  for (const c of cases) {
    const before = await keapSaw();
    const res = await rawCall("GET", c.path, auth);
    if (c.refused) {
      assert.equal(res.status, 400, `${c.path}: ${res.text}`);
      assert.equal(res.headers["keaplink-error"], "invalid_keap_path");
      assert.deepEqual(await keapSaw(), before, `${c.path}: nothing reached Keap`);
      continue;
    }
    assert.equal(res.headers["keaplink-error"], undefined, `${c.path}: Keap's own answer, relayed (${res.status} ${res.text.slice(0, 80)})`);
    assert.equal(res.status, c.status, res.text);
    if (!c.keap) continue;
    const [seen] = (await stack.sandbox.apiLog()).slice(-1);
    assert.equal(seen.path, c.keap, `${c.path} reached Keap resolved, without a backslash`);
  }
  // The encoded forms are what keaplink itself sees and refuses.
  for (const path of ["/v1/keap/crm/rest/v1%5ccontacts", "/v1/keap/crm/rest/v1%5C..%5C..%5Ctoken"]) {
    const res = await rawCall("GET", path, auth);
    assert.equal(res.status, 400, path);
    assert.equal(res.json.error.code, "invalid_keap_path");
  }
});

// (A GET with a body is refused by the core's rule; the runtime never hands one to the Worker.)
test("bodies: up to 1 MiB goes to Keap as sent; more is 413 before anything reaches Keap", async () => {
  const fill = (n) => JSON.stringify({ given_name: "Big", email_addresses: [{ email: "big@example.com", field: "EMAIL1" }], notes: "x".repeat(n) });
  const exact = fill(0).length;
  const mib = fill((1 << 20) - exact);
  assert.equal(mib.length, 1 << 20);
  const ok = await keap(acme, "POST", "/crm/rest/v1/contacts", { raw: mib, headers: { "content-type": "application/json" } });
  assert.equal(ok.status, 201, ok.text.slice(0, 200));
  const [seen] = (await stack.sandbox.apiLog()).slice(-1);
  assert.equal(seen.body_bytes, 1 << 20);

  const before = await keapSaw();
  // Refused as soon as the declared length says so, unread: sent on its own connection (one
  // whose upload was cut short is not reused), as the chunked one at the end of this file.
  const upload = { authorization: `Bearer ${acme.api_key}`, "keaplink-user": "u1", "content-type": "application/json" };
  const over = await rawCall("POST", "/v1/keap/crm/rest/v1/contacts", upload, `${mib} `);
  assert.equal(over.status, 413);
  assert.equal(over.json.error.code, "body_too_large");
  assert.equal(over.headers["keaplink-error"], "body_too_large");
  assert.deepEqual(await keapSaw(), before);
});

test("the connection is the one keaplink-user (+ keaplink-app) names, and never another partner's", async () => {
  const before = await keapSaw();
  const noUser = await call(stack.url, "GET", "/v1/keap/crm/rest/v1/contacts", { token: acme.api_key });
  assert.equal(noUser.status, 400);
  assert.equal(noUser.json.error.code, "invalid_request");
  assert.match(noUser.json.error.message, /keaplink-user/);
  const unknown = await keap(acme, "GET", "/crm/rest/v1/contacts", { user: "nobody" });
  assert.equal(unknown.status, 404);
  assert.equal(unknown.headers.get("keaplink-error"), "no_connection");
  // globex's user, through acme's key: 404, exactly as for a user who does not exist.
  const theirs = await keap(acme, "GET", "/crm/rest/v1/contacts", { user: "g1" });
  assert.equal(theirs.status, 404);
  assert.equal(theirs.json.error.code, "no_connection");
  const theirsByApp = await keap(acme, "GET", "/crm/rest/v1/contacts", { user: "g1", app: "ef789" });
  assert.equal(theirsByApp.status, 404);
  const ambiguous = await keap(acme, "GET", "/crm/rest/v1/contacts", { user: "two" });
  assert.equal(ambiguous.status, 409);
  assert.equal(ambiguous.json.error.code, "ambiguous_connection");
  assert.match(ambiguous.json.error.message, /the keaplink-app header on \/v1\/keap\//, "it names what the proxy takes");
  const notLinked = await keap(acme, "GET", "/crm/rest/v1/contacts", { user: "two", app: "ef789" });
  assert.equal(notLinked.status, 404);
  const badApp = await keap(acme, "GET", "/crm/rest/v1/contacts", { user: "two", app: "AB_123" });
  assert.equal(badApp.status, 400);
  const noKey = await call(stack.url, "GET", "/v1/keap/crm/rest/v1/contacts", { headers: { "keaplink-user": "u1" } });
  assert.equal(noKey.status, 401);
  assert.equal(noKey.headers.get("keaplink-error"), "missing_credentials");
  const session = await call(stack.url, "GET", "/v1/keap/crm/rest/v1/contacts", { token: await mintSession(acme, "u1"), headers: { "keaplink-user": "u1" } });
  assert.equal(session.status, 401);
  assert.equal(session.json.error.code, "invalid_api_key");
  assert.deepEqual(await keapSaw(), before, "none of these reached Keap");

  const ann = await keap(acme, "GET", "/crm/rest/v2/oauth/connect/userinfo", { user: "two", app: "ab123" });
  const bob = await keap(acme, "GET", "/crm/rest/v2/oauth/connect/userinfo", { user: "two", app: "CD456" });
  assert.deepEqual([ann.status, ann.json.tenant_id, ann.headers.get("keaplink-connection-id")], [200, "ab123", ids.twoAnn]);
  assert.deepEqual([bob.status, bob.json.tenant_id, bob.headers.get("keaplink-connection-id")], [200, "cd456", ids.twoBob]);
  const own = await keap(globex, "GET", "/crm/rest/v2/oauth/connect/userinfo", { user: "g1" });
  assert.deepEqual([own.status, own.json.email], [200, "cat@ef789.example"]);
});

test("admin stats: Keap's quota and throttle as last reported, and proxied calls by outcome", async () => {
  const stats = async () => (await call(stack.url, "GET", "/v1/admin/stats", { token: ADMIN_TOKEN })).json;
  // An isolate tells the shared board its counts with its next exchange (at most every 2 s,
  // riding along with a call to Keap), and, when no call follows, with one deferred report
  // about 2 s after its last exchange. So with no call at all the board settles: read it until
  // two reads 3.5 s apart agree (1.5 s more than a deferred report waits; a slow machine just
  // takes more reads).
  const settled = async () => {
    const key = (s) => JSON.stringify([s.proxy_last_24h, s.keap_quota?.quota?.available]);
    let last = await stats();
    for (let i = 0; i < 12; i++) {
      await new Promise((r) => setTimeout(r, 3_500));
      const now = await stats();
      if (key(now) === key(last)) return now;
      last = now;
    }
    assert.fail(`the admin stats did not settle: ${key(last)}`);
  };
  const s0 = await settled();
  for (let i = 0; i < 5; i++) assert.equal((await keap(acme, "GET", "/crm/rest/v1/contacts?limit=1")).status, 200);
  for (let i = 0; i < 3; i++) assert.equal((await keap(acme, "GET", "/crm/rest//v1")).status, 400);
  assert.equal((await keap(acme, "GET", "/crm/rest/v1/contacts", { user: "nobody" })).status, 404);
  const s1 = await settled();
  const [p0, p1] = [s0.proxy_last_24h, s1.proxy_last_24h];
  // Every call counted although none came after them: five relayed, four refused.
  assert.equal(p1.relayed - p0.relayed, 5, JSON.stringify({ p0, p1 }));
  assert.equal(p1.refused - p0.refused, 4, JSON.stringify({ p0, p1 }));
  assert.equal(p1.held_for_quota, 0);
  assert.equal(p1.healed, 0);

  const q = s1.keap_quota;
  const sandbox = (await stack.sandbox.stats()).quota;
  assert.equal(q.quota.limit, 150_000);
  assert.equal(q.throttle.limit, 1_500);
  // As Keap said to the last call (told by the deferred report: no call had to follow).
  assert.equal(q.quota.available, sandbox.product_quota.available, JSON.stringify(q));
  assert.match(q.quota.resets_at, /T00:00:00Z$/, "Keap's day ends at midnight UTC");
  assert.equal(q.reserve, 10_000);
  assert.equal(q.paused_until, null);
  assert.deepEqual(q.app_throttles, []);
  assert.ok(Date.now() - Date.parse(q.as_of) < 10_000, q.as_of);
});

// Last in this file: after an upload refused halfway, wrangler dev's local server stalls the
// next request on a new connection for a while (Cloudflare's edge does not); nothing follows it.
test("a chunked body (no content-length) over 1 MiB is refused 413 as it is read, and nothing reaches Keap", async () => {
  const before = await keapSaw();
  const upload = { authorization: `Bearer ${acme.api_key}`, "keaplink-user": "u1", "content-type": "application/json" };
  const chunk = "y".repeat(300_000);
  const chunks = Array.from({ length: 5 }, () => `${chunk.length.toString(16)}\r\n${chunk}\r\n`).join("") + "0\r\n\r\n";
  const chunked = await rawCall("POST", "/v1/keap/crm/rest/v1/contacts", { ...upload, "transfer-encoding": "chunked" }, chunks, { framed: true });
  const chunkedText = chunked.text;
  assert.equal(chunked.status, 413, chunkedText);
  assert.equal(chunked.json.error.code, "body_too_large");
  assert.deepEqual(await keapSaw(), before);
});
