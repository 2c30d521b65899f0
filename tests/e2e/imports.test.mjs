// Links a partner already holds, brought in (POST /v1/imports) and taken out again
// (POST /v1/connections/export), end to end against the sandbox: every outcome, the rotated
// token stored before anything else, a lost refresh answer, Keap's 429s and 5xx waiting,
// idempotency, bad bodies refused whole, and the export's freeze.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { ADMIN_TOKEN, startStack } from "./harness.mjs";
import { call, runSweep } from "./client.mjs";
import { ofType, startReceiver, verifyDelivery } from "./receiver.mjs";

let stack;
let acme;
let other;
let receiver;

before(async () => {
  receiver = await startReceiver();
  stack = await startStack({
    // Retries of a throttled item after 1 s (30 s by default), so the storms below end soon.
    workerVars: { WEBHOOK_ALLOW_HTTP: "true", WEBHOOK_BACKOFF_SECS: "1", KEAP_IMPORT_RETRY_SECS: "1" },
  });
  const put = async (id, extra = {}) => {
    const res = await call(stack.url, "PUT", `/v1/admin/partners/${id}`, {
      token: ADMIN_TOKEN,
      body: { name: id, allowed_origins: [], return_urls: [], ...extra },
    });
    assert.equal(res.status, 200, res.text);
    return res.json;
  };
  acme = await put("acme", { webhook_url: receiver.url });
  other = await put("other");
});
after(async () => {
  await stack?.stop();
  await receiver?.stop();
});

const sandboxCall = async (path, body) => {
  const res = await fetch(`${stack.sandbox.url}/__sandbox/${path}`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  });
  const json = res.status === 204 ? null : await res.json();
  if (res.status !== 200 && res.status !== 204) throw new Error(`sandbox ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
};
/** Token answers "issued elsewhere": what the partner's own database holds. */
const mint = async (email, app, count = 1) => (await sandboxCall("mint", { email, ...(app ? { app } : {}), count })).tokens;
/** Whether Keap (the sandbox) still takes this refresh token (spends it if so). */
const refreshWorks = async (refresh_token) => {
  const res = await fetch(`${stack.sandbox.url}/token`, {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      authorization: `Basic ${Buffer.from(`${stack.secrets.KEAP_CLIENT_ID}:${stack.secrets.KEAP_CLIENT_SECRET}`).toString("base64")}`,
    },
    body: new URLSearchParams({ grant_type: "refresh_token", refresh_token }),
  });
  return res.status === 200;
};
const tokenCalls = async () => (await stack.sandbox.stats()).calls.token_refresh ?? 0;

const startImport = (links, { key = acme.api_key, idem } = {}) =>
  call(stack.url, "POST", "/v1/imports", { token: key, body: { links }, headers: idem ? { "idempotency-key": idem } : {} });

/** Polls the import until it is done; answers its whole item list (all pages). */
async function finished(id, { ms = 90_000, key = acme.api_key } = {}) {
  const until = Date.now() + ms;
  let last;
  while (Date.now() < until) {
    last = await call(stack.url, "GET", `/v1/imports/${id}`, { token: key });
    assert.equal(last.status, 200, last.text);
    if (last.json.status === "done") break;
    await new Promise((r) => setTimeout(r, 300));
  }
  assert.equal(last.json.status, "done", `not done in ${ms} ms: ${JSON.stringify(last.json.counts)}`);
  const items = [...last.json.items];
  let cursor = last.json.cursor;
  while (cursor) {
    const page = await call(stack.url, "GET", `/v1/imports/${id}?cursor=${cursor}`, { token: key });
    assert.equal(page.status, 200, page.text);
    items.push(...page.json.items);
    cursor = page.json.cursor;
  }
  return { ...last.json, items };
}

test("every outcome, per item, in index order; an imported link is a link like any other", async () => {
  const [ann] = await mint("ann@ab123.example");
  const [dan] = await mint("dan@gh012.example", "ij345");
  const [cat] = await mint("cat@ef789.example");
  assert.ok(await refreshWorks(cat.refresh_token), "cat's token rotated once at Keap...");
  const before = await tokenCalls();
  const links = [
    { user: "u-ann", refresh_token: ann.refresh_token },
    // A usable access token: no refresh; the partner's tokens are stored as they are.
    { user: "u-dan", refresh_token: dan.refresh_token, access_token: dan.access_token, expires_at: dan.expires_at },
    // ...so the copy the partner held is dead.
    { user: "u-cat", refresh_token: cat.refresh_token },
    { user: "u-ann2", refresh_token: ann.refresh_token },
    { user: "", refresh_token: "whatever-token-1" },
    { user: "u-x", refresh_token: "whatever-token-2", access_token: "a", expires_at: "next week" },
    { user: "u-y", refresh_token: "whatever-token-3", keap_app: "Not An App" },
  ];
  const res = await startImport(links);
  assert.equal(res.status, 202, res.text);
  assert.match(res.json.import_id, /^imp_[0-9a-f]{32}$/);
  assert.deepEqual([res.json.status, res.json.total], ["running", 7]);
  const done = await finished(res.json.import_id);
  assert.deepEqual(done.items.map((i) => i.index), [0, 1, 2, 3, 4, 5, 6]);
  assert.deepEqual(done.items.map((i) => i.outcome), ["imported", "imported", "dead", "duplicate", "invalid", "invalid", "invalid"]);
  assert.deepEqual(done.counts, { imported: 2, already_linked: 0, dead: 1, lost: 0, duplicate: 1, invalid: 3, pending: 0 });
  assert.ok(done.finished_at, "finished_at");
  const [a, d] = done.items;
  assert.equal(a.keap_app, "ab123");
  assert.equal(a.keap_user.email, "ann@ab123.example");
  assert.equal(d.keap_app, "ij345");
  assert.equal(done.items[2].error.code, "refresh_token_invalid");
  assert.match(done.items[4].error.message, /user must be 1-256 characters/);
  assert.match(done.items[5].error.message, /expires_at/);
  assert.match(done.items[6].error.message, /keap_app/);
  // Keap calls: Ann's and Cat's refreshes only (Dan's access token was good).
  assert.equal((await tokenCalls()) - before, 2, "one refresh per item that needed one");
  // The partner's copy of Ann's refresh token is dead (rotated and stored by keaplink); Dan's
  // was not refreshed, so it still works.
  assert.equal(await refreshWorks(ann.refresh_token), false, "Ann's old refresh token was rotated");
  // No token of the import in any answer.
  for (const t of [ann, dan, cat]) for (const v of [t.access_token, t.refresh_token]) assert.ok(!done.items.some((i) => JSON.stringify(i).includes(v)));

  // A link like any other: the token as the right Keap user, the proxy, the listing, the
  // timeline, the webhook.
  const tok = await call(stack.url, "POST", "/v1/token", { token: acme.api_key, body: { user: "u-ann" } });
  assert.equal(tok.status, 200, tok.text);
  const who = await fetch(`${stack.sandbox.url}/crm/rest/v2/oauth/connect/userinfo`, { headers: { authorization: `Bearer ${tok.json.access_token}` } });
  assert.equal((await who.json()).email, "ann@ab123.example");
  const danTok = await call(stack.url, "POST", "/v1/token", { token: acme.api_key, body: { user: "u-dan" } });
  assert.equal(danTok.json.access_token, dan.access_token, "Dan's access token, as imported");
  const viaProxy = await call(stack.url, "GET", "/v1/keap/crm/rest/v2/oauth/connect/userinfo", { token: acme.api_key, headers: { "keaplink-user": "u-dan" } });
  assert.equal(viaProxy.status, 200, viaProxy.text);
  assert.equal(viaProxy.json.email, "dan@gh012.example");
  const detail = await call(stack.url, "GET", `/v1/connections/${a.connection_id}`, { token: acme.api_key });
  assert.equal(detail.json.keap_app_name, "Ann's Bakery");
  assert.equal(detail.json.status, "active");
  assert.ok(detail.json.refresh_expires_at);
  assert.equal(detail.json.events[0].type, "imported");
  const found = await call(stack.url, "GET", "/v1/connections?q=u-dan", { token: acme.api_key });
  assert.deepEqual(found.json.connections.map((c) => c.id), [d.connection_id], "in the search index");
  const [created] = await receiver.waitFor((x) => ofType("connection.created")(x) && JSON.parse(x.body).user === "u-ann", "connection.created");
  assert.equal(verifyDelivery(created, acme.session_secret).connection.id, a.connection_id);
  const [fin] = await receiver.waitFor((x) => ofType("import.finished")(x) && JSON.parse(x.body).import_id === res.json.import_id, "import.finished");
  const event = verifyDelivery(fin, acme.session_secret);
  assert.deepEqual(event.counts, done.counts);
  assert.equal(event.total, 7);
  assert.equal(event.partner_id, "acme");
});

test("a link already here is kept as it is, and the partner's token is not spent on it", async () => {
  const [ann] = await mint("ann@ab123.example");
  const before = await tokenCalls();
  const res = await startImport([{ user: "u-ann", refresh_token: ann.refresh_token, keap_app: "ab123" }]);
  const done = await finished(res.json.import_id);
  assert.equal(done.items[0].outcome, "already_linked");
  assert.match(done.items[0].connection_id, /^[A-Za-z0-9_-]{22}$/);
  assert.equal(await tokenCalls(), before, "no refresh: the app was named and the link found first");
  assert.ok(await refreshWorks(ann.refresh_token), "the partner's token is still alive");
  // Without the app named, Keap says which after the refresh: still already_linked.
  const [again] = await mint("ann@ab123.example");
  const second = await finished((await startImport([{ user: "u-ann", refresh_token: again.refresh_token }])).json.import_id);
  assert.equal(second.items[0].outcome, "already_linked");
  assert.equal(second.items[0].connection_id, done.items[0].connection_id);
});

test("a refresh whose answer is lost is `lost`, and nothing is stored", async () => {
  const [bob] = await mint("bob@cd456.example");
  // Keap rotates the token, then the answer never arrives (longer than KEAP_TIMEOUT_MS).
  await stack.sandbox.fault("drop", 1, 4000);
  const done = await finished((await startImport([{ user: "u-bob", refresh_token: bob.refresh_token }])).json.import_id);
  assert.equal(done.items[0].outcome, "lost");
  assert.equal(done.items[0].error.code, "refresh_lost");
  assert.equal(done.items[0].connection_id, undefined);
  const list = await call(stack.url, "GET", "/v1/connections?q=u-bob", { token: acme.api_key });
  assert.deepEqual(list.json.connections, [], "nothing stored");
  const tok = await call(stack.url, "POST", "/v1/token", { token: acme.api_key, body: { user: "u-bob" } });
  assert.equal(tok.status, 404);
});

test("a 5xx that came after Keap rotated the token: tried again, and the dead token is `lost`, not `dead`", async () => {
  const [bob] = await mint("bob@cd456.example");
  // Keap rotates the token, then answers 500 at once (a gateway error after the work was done).
  await stack.sandbox.fault("drop", 1, 10);
  const done = await finished((await startImport([{ user: "u-bob-5xx", refresh_token: bob.refresh_token }])).json.import_id);
  assert.equal(done.items[0].outcome, "lost", JSON.stringify(done.items[0]));
  assert.match(done.items[0].error.message, /earlier refresh/);
  const list = await call(stack.url, "GET", "/v1/connections?q=u-bob-5xx", { token: acme.api_key });
  assert.deepEqual(list.json.connections, [], "nothing stored");
});

test("Keap's 429s and 5xx make items wait, never fail", async () => {
  const tokens = await mint("bob@cd456.example", undefined, 4);
  await stack.sandbox.fault("throttle", 3);
  await stack.sandbox.fault("server_error", 2);
  const links = tokens.map((t, i) => ({ user: `u-storm-${i}`, refresh_token: t.refresh_token }));
  const res = await startImport(links);
  const done = await finished(res.json.import_id, { ms: 120_000 });
  assert.deepEqual(done.items.map((i) => i.outcome), ["imported", "imported", "imported", "imported"]);
  for (const t of tokens) assert.equal(await refreshWorks(t.refresh_token), false, "each rotated exactly once, by keaplink");
});

test("the same idempotency key runs the import once", async () => {
  const [cat] = await mint("cat@ef789.example");
  const links = [{ user: "u-idem", refresh_token: cat.refresh_token }];
  const first = await startImport(links, { idem: "sunday-migration-1" });
  assert.equal(first.status, 202, first.text);
  await finished(first.json.import_id);
  const calls = await tokenCalls();
  const again = await startImport(links, { idem: "sunday-migration-1" });
  assert.equal(again.status, 200, again.text);
  assert.equal(again.json.import_id, first.json.import_id);
  assert.equal(again.json.status, "done");
  assert.equal(await tokenCalls(), calls, "nothing started again");
  // The same key is the partner's own: another partner's key space is apart.
  const theirs = await startImport([{ user: "u-idem", refresh_token: "x-token-unused" }], { key: other.api_key, idem: "sunday-migration-1" });
  assert.equal(theirs.status, 202);
  assert.notEqual(theirs.json.import_id, first.json.import_id);
  const bad = await startImport(links, { idem: "k".repeat(129) });
  assert.equal(bad.status, 400, bad.text);
  assert.match(bad.json.error.message, /idempotency-key must be 1-128 printable ASCII/);
});

test("another partner's import is 404; a malformed id is 400", async () => {
  const res = await startImport([{ user: "u-z", refresh_token: "dead-token-z" }]);
  const theirs = await call(stack.url, "GET", `/v1/imports/${res.json.import_id}`, { token: other.api_key });
  assert.equal(theirs.status, 404, theirs.text);
  assert.equal(theirs.json.error.code, "no_import");
  const unknown = await call(stack.url, "GET", `/v1/imports/imp_${"0".repeat(32)}`, { token: acme.api_key });
  assert.equal(unknown.status, 404);
  const bad = await call(stack.url, "GET", "/v1/imports/not-an-id", { token: acme.api_key });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error.code, "invalid_id");
  const cursor = await call(stack.url, "GET", `/v1/imports/${res.json.import_id}?cursor=zz`, { token: acme.api_key });
  assert.equal(cursor.status, 400);
  await finished(res.json.import_id);
});

test("a body that is not the shape, or breaks a limit, is refused whole and starts nothing", async () => {
  const calls = await tokenCalls();
  const cases = [
    [{ raw: "[]" }, 400, /JSON object/],
    [{ raw: "{\"links\": [" }, 400, /not valid JSON/],
    [{ body: { links: [] } }, 400, /1 to 1,000/],
    [{ body: { links: Array.from({ length: 1001 }, (_, i) => ({ user: `u${i}`, refresh_token: `r${i}` })) } }, 400, /1001 sent/],
    [{ body: { links: [{ user: "u", refresh_token: "x".repeat(10_000) }] } }, 400, /links\[0\]\.refresh_token is over 2,048/],
    [{ body: { links: [{ user: 5, refresh_token: "r" }] } }, 400, /not the JSON/],
    [{ body: { links: [{ user: "u", refresh_token: "r", refreshToken: "r" }] } }, 400, /refreshToken/],
  ];
  for (const [req, status, message] of cases) {
    const res = await call(stack.url, "POST", "/v1/imports", {
      token: acme.api_key, ...req, headers: req.raw ? { "content-type": "application/json" } : {},
    });
    assert.equal(res.status, status, `${JSON.stringify(req).slice(0, 80)}: ${res.text}`);
    assert.match(res.json.error.message, message);
    assert.ok(!res.text.includes("xxxxxxxx"), "no value echoed");
  }
  // Over 1 MiB: refused as declared, unread. On a connection of its own (one whose upload was cut
  // short is not reused).
  const huge = JSON.stringify({ links: [{ user: "u", refresh_token: "r".repeat(1_100_000) }] });
  const over = await new Promise((resolve, reject) => {
    const req = http.request(`${stack.url}/v1/imports`, {
      method: "POST", agent: false,
      headers: { authorization: `Bearer ${acme.api_key}`, "content-type": "application/json", "content-length": Buffer.byteLength(huge) },
    }, (res) => {
      let text = "";
      res.on("data", (d) => { text += d; });
      res.on("end", () => resolve({ status: res.statusCode, text }));
    });
    req.on("error", reject);
    req.end(huge);
  });
  assert.equal(over.status, 413, over.text);
  assert.match(JSON.parse(over.text).error.message, /1 MiB/);
  assert.equal(await tokenCalls(), calls, "nothing started");
});

test("export: off until the operator allows it, then frozen, handed out once, never refreshed", async () => {
  const [cat] = await mint("cat@ef789.example");
  const started = await startImport([{ user: "u-out", refresh_token: cat.refresh_token }]);
  assert.equal(started.status, 202, started.text);
  const imp = await finished(started.json.import_id);
  const id = imp.items[0].connection_id;
  const body = { connection_ids: [id] };
  const off = await call(stack.url, "POST", "/v1/connections/export", { token: acme.api_key, body });
  assert.equal(off.status, 403, off.text);
  assert.equal(off.json.error.code, "export_disabled");
  const patch = await call(stack.url, "PATCH", "/v1/partner", { token: acme.api_key, body: { export_enabled: true } });
  assert.equal(patch.status, 400, "a partner cannot allow itself");
  const on = await call(stack.url, "PUT", "/v1/admin/partners/acme", {
    token: ADMIN_TOKEN, body: { name: "acme", allowed_origins: [], return_urls: [], webhook_url: receiver.url, export_enabled: true },
  });
  assert.equal(on.status, 200, on.text);
  assert.equal(on.json.export_enabled, true);

  const theirs = await call(stack.url, "POST", "/v1/connections/export", { token: other.api_key, body });
  assert.equal(theirs.status, 403, "the other partner is not allowed at all");
  // Allowed to export its own, the other partner still never reaches acme's link.
  const otherOn = await call(stack.url, "PUT", "/v1/admin/partners/other", {
    token: ADMIN_TOKEN, body: { name: "other", allowed_origins: [], return_urls: [], export_enabled: true },
  });
  assert.equal(otherOn.status, 200, otherOn.text);
  const stolen = await call(stack.url, "POST", "/v1/connections/export", { token: other.api_key, body });
  assert.equal(stolen.status, 200, stolen.text);
  assert.deepEqual(stolen.json.links, []);
  assert.deepEqual(stolen.json.failed.map((f) => f.error.code), ["no_connection"]);
  const calls = await tokenCalls();
  const out = await call(stack.url, "POST", "/v1/connections/export", { token: acme.api_key, body: { connection_ids: [id, "AAAAAAAAAAAAAAAAAAAAAA"] } });
  assert.equal(out.status, 200, out.text);
  const [link] = out.json.links;
  assert.equal(link.connection_id, id);
  assert.equal(link.user, "u-out");
  assert.equal(link.keap_app, "ef789");
  assert.equal(link.keap_user.email, "cat@ef789.example");
  assert.ok(link.access_token && link.refresh_token && link.expires_at && link.refresh_expires_at);
  assert.deepEqual(out.json.failed.map((f) => [f.connection_id, f.error.code]), [["AAAAAAAAAAAAAAAAAAAAAA", "no_connection"]]);
  const requestId = out.headers.get("x-request-id");

  // Frozen: exported everywhere, refused by the token and the proxy, never refreshed.
  const detail = await call(stack.url, "GET", `/v1/connections/${id}`, { token: acme.api_key });
  assert.equal(detail.status, 200, detail.text);
  assert.equal(detail.json.status, "exported");
  assert.equal(detail.json.events[0].type, "exported");
  assert.match(detail.json.events[0].detail, new RegExp(requestId));
  const listed = await call(stack.url, "GET", "/v1/connections?status=exported", { token: acme.api_key });
  assert.deepEqual(listed.json.connections.map((c) => c.id), [id], "listed by status");
  const tok = await call(stack.url, "POST", "/v1/token", { token: acme.api_key, body: { user: "u-out" } });
  assert.equal(tok.status, 409, tok.text);
  assert.equal(tok.json.error.code, "exported");
  const proxied = await call(stack.url, "GET", "/v1/keap/crm/rest/v2/contacts", { token: acme.api_key, headers: { "keaplink-user": "u-out" } });
  assert.equal(proxied.status, 409);
  assert.equal(proxied.headers.get("keaplink-error"), "exported");
  await runSweep(stack.worker);
  const refreshed = await call(stack.url, "POST", `/v1/connections/${id}/refresh`, { token: acme.api_key });
  assert.equal(refreshed.json.status, "exported", "a refresh asked for is not made");
  assert.equal(await tokenCalls(), calls, "nothing refreshed the exported link");
  const again = await call(stack.url, "POST", "/v1/connections/export", { token: acme.api_key, body });
  assert.deepEqual(again.json.links, []);
  assert.deepEqual(again.json.failed.map((f) => f.error.code), ["exported"]);
  const [event] = await receiver.waitFor((x) => ofType("connection.exported")(x) && JSON.parse(x.body).connection.id === id, "connection.exported");
  const ev = verifyDelivery(event, acme.session_secret);
  assert.equal(ev.connection.status, "exported");
  assert.ok(!/"(access|refresh)_token"/.test(event.body), "no tokens in the event");
  // The token handed out is the live one: the partner can use and refresh it.
  assert.ok(await refreshWorks(link.refresh_token), "the exported refresh token is live at Keap");
  const stats = await call(stack.url, "GET", "/v1/stats", { token: acme.api_key });
  assert.ok(stats.json.connections.exported >= 1, "counted as exported");
  // Deleted once the cut-over is done.
  assert.equal((await call(stack.url, "DELETE", `/v1/connections/${id}`, { token: acme.api_key })).status, 204);
});
