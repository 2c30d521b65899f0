// The console's API over HTTP: the admin acting for a partner, the partner's own settings and
// secrets, the overview, search and the status filter, a link's timeline and actions, webhook
// deliveries and redelivery; every call scoped to the key's partner (another partner's ids are 404).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { ADMIN_TOKEN, startStack } from "./harness.mjs";
import { call, linkUser, putPartner } from "./client.mjs";
import { startReceiver } from "./receiver.mjs";

let stack;
let acme;
let globex;
let receiver;

before(async () => {
  receiver = await startReceiver();
  stack = await startStack({ workerVars: { WEBHOOK_ALLOW_HTTP: "true", WEBHOOK_BACKOFF_SECS: "1" } });
  acme = await putPartner(stack.url, "acme", { origins: ["https://acme.example"], name: "Acme", extra: { webhook_url: receiver.url } });
  globex = await putPartner(stack.url, "globex", { origins: ["https://globex.example"] });
  await linkUser(stack, acme, "user-1001", "ann@ab123.example");
  await linkUser(stack, acme, "user-1002", "bob@cd456.example");
  await linkUser(stack, acme, "user-1003", "cat@ef789.example");
  await linkUser(stack, globex, "g-1", "ann@ab123.example");
});
after(async () => {
  await stack?.stop();
  await receiver?.stop();
});

const as = (partner) => ({ token: partner.api_key });
const asAdminFor = (id) => ({ token: ADMIN_TOKEN, headers: { "keaplink-partner": id } });
const list = async (query, who = as(acme)) => call(stack.url, "GET", `/v1/connections${query}`, who);

test("the admin token acts for the partner it names; without one it is told how", async () => {
  const mine = await call(stack.url, "GET", "/v1/connections", asAdminFor("acme"));
  assert.equal(mine.status, 200, mine.text);
  assert.equal(mine.json.connections.length, 3);
  const none = await call(stack.url, "GET", "/v1/connections", { token: ADMIN_TOKEN });
  assert.equal(none.status, 400);
  assert.match(none.json.error.message, /keaplink-partner/);
  const unknown = await call(stack.url, "GET", "/v1/connections", asAdminFor("nobody"));
  assert.equal(unknown.json.error.code, "partner_not_found");
  // The picker: every partner, a page at a time.
  const page1 = await call(stack.url, "GET", "/v1/admin/partners?limit=1", { token: ADMIN_TOKEN });
  assert.equal(page1.status, 200);
  assert.equal(page1.json.partners.length, 1);
  assert.ok(page1.json.cursor);
  const page2 = await call(stack.url, "GET", `/v1/admin/partners?limit=1&cursor=${encodeURIComponent(page1.json.cursor)}`, { token: ADMIN_TOKEN });
  assert.notEqual(page2.json.partners[0].partner_id, page1.json.partners[0].partner_id);
  assert.ok(!JSON.stringify(page1.json).includes("session_secret"), "no secrets in the list");
  assert.equal((await call(stack.url, "GET", "/v1/admin/partners", as(acme))).json.error.code, "invalid_admin_token");
});

test("search by Keap email, app or partner user; the needs_reauth filter; paging with a bound cursor", async () => {
  const byEmail = await list("?q=BOB%40cd4");
  assert.deepEqual(byEmail.json.connections.map((c) => c.user), ["user-1002"]);
  const byApp = await list("?q=ef789");
  assert.deepEqual(byApp.json.connections.map((c) => c.keap_user.email), ["cat@ef789.example"]);
  const byUser = await list("?q=user-100");
  assert.equal(byUser.json.connections.length, 3);
  assert.equal((await list("?q=nobody")).json.connections.length, 0);
  // Another partner's link with the same Keap user never shows.
  assert.ok(!(await list("?q=ann")).json.connections.some((c) => c.user === "g-1"));
  const paged = await list("?q=user-100&limit=2");
  assert.equal(paged.json.connections.length, 2);
  const rest = await list(`?q=user-100&limit=2&cursor=${encodeURIComponent(paged.json.cursor)}`);
  assert.equal(rest.json.connections.length, 1);
  // A cursor belongs to its filters.
  assert.equal((await list(`?q=ann&cursor=${encodeURIComponent(paged.json.cursor)}`)).json.error.code, "invalid_cursor");
  // needs_reauth: nobody yet, then the one whose refresh token died.
  assert.equal((await list("?status=needs_reauth")).json.connections.length, 0);
  await stack.sandbox.revoke("cat@ef789.example");
  const id = byApp.json.connections[0].id;
  const refreshed = await call(stack.url, "POST", `/v1/connections/${id}/refresh`, as(acme));
  assert.equal(refreshed.json.status, "needs_reauth");
  const dead = await list("?status=needs_reauth");
  assert.deepEqual(dead.json.connections.map((c) => c.id), [id]);
  assert.equal((await list("?status=active")).json.connections.length, 2);
  assert.equal((await list("?status=needs_reauth&q=ann")).json.connections.length, 0);
  for (const bad of ["?status=dead", "?q=" + "x".repeat(129), "?q=a&limit=101"]) {
    const res = await list(bad);
    assert.equal(res.status, 400, bad);
    assert.equal(res.json.error.code, "invalid_request", bad);
  }
});

test("a link's timeline, newest first, and its actions; another partner's ids are 404", async () => {
  const [c] = (await list("?q=ann")).json.connections;
  const refresh = await call(stack.url, "POST", `/v1/connections/${c.id}/refresh`, as(acme));
  assert.equal(refresh.status, 200, refresh.text);
  assert.ok(refresh.json.refreshed_at, "refreshed now");
  await stack.sandbox.fault("server_error", 1);
  const failed = await call(stack.url, "POST", `/v1/connections/${c.id}/refresh`, as(acme));
  assert.equal(failed.json.last_error.code, "keap_unavailable");
  const d = await call(stack.url, "GET", `/v1/connections/${c.id}`, as(acme));
  assert.equal(d.status, 200);
  assert.equal(d.json.user, "user-1001");
  assert.deepEqual(d.json.events.map((e) => e.type), ["refresh_failed", "refreshed", "created"]);
  assert.equal(d.json.events[0].code, "keap_unavailable");
  assert.ok(!d.text.includes("access_token") && !d.text.includes("refresh_token\""), "no token in a timeline");
  for (const path of [`/v1/connections/${c.id}`, `/v1/connections/${c.id}/refresh`, `/v1/connections/${c.id}/repair-link`]) {
    const res = await call(stack.url, path.endsWith(c.id) ? "GET" : "POST", path, as(globex));
    assert.equal(res.status, 404, path);
    assert.equal(res.json.error.code, "no_connection");
  }
});

test("the partner's own settings: changed field by field, refused with the rule, nothing half-stored", async () => {
  const before = await call(stack.url, "GET", "/v1/partner", as(acme));
  assert.equal(before.status, 200);
  assert.equal(before.json.partner_id, "acme");
  assert.equal(before.json.api_key, undefined);
  const changed = await call(stack.url, "PATCH", "/v1/partner", { ...as(acme), body: { reconnect_identity: "app", return_urls: ["https://acme.example/settings"] } });
  assert.equal(changed.status, 200, changed.text);
  assert.equal(changed.json.reconnect_identity, "app");
  assert.deepEqual(changed.json.allowed_origins, before.json.allowed_origins, "left out, left alone");
  assert.equal(changed.json.webhook_url, receiver.url);
  for (const body of [{ allowed_origins: ["not an origin"] }, { webhook_url: "http://" }, { reconnect_identity: "anyone" }, { name: "renamed" }]) {
    const res = await call(stack.url, "PATCH", "/v1/partner", { ...as(acme), body });
    assert.equal(res.status, 400, JSON.stringify(body));
  }
  const after = await call(stack.url, "GET", "/v1/partner", as(acme));
  assert.deepEqual(after.json, changed.json, "a refused change stores nothing");
  await call(stack.url, "PATCH", "/v1/partner", { ...as(acme), body: { reconnect_identity: "user" } });
});

test("rotating secrets shows the new ones once; the old key is refused at once", async () => {
  const rotated = await call(stack.url, "POST", "/v1/partner/rotate-secrets", as(globex));
  assert.equal(rotated.status, 200, rotated.text);
  assert.match(rotated.json.api_key, /^klk\.globex\./);
  assert.ok(rotated.json.session_secret);
  const old = await call(stack.url, "GET", "/v1/partner", as(globex));
  assert.equal(old.status, 401);
  assert.equal(old.json.error.code, "invalid_api_key");
  const fresh = await call(stack.url, "GET", "/v1/partner", { token: rotated.json.api_key });
  assert.equal(fresh.status, 200);
  assert.equal(fresh.json.api_key, undefined, "shown once");
  globex = { ...globex, ...rotated.json };
});

test("webhook deliveries with their attempts; a failed one redelivered with the same id", async () => {
  // Every event so far reaches the receiver (204): wait until none is on its way, then refuse
  // the next one for good (400).
  // (Three links created and one dead so far; the queue delivers in batches.)
  await receiver.waitFor(() => receiver.deliveries.length >= 4, "the first four events");
  const settled = receiver.deliveries.length;
  await new Promise((r) => setTimeout(r, 2000));
  assert.equal(receiver.deliveries.length, settled, "no delivery still on its way");
  receiver.plan(400);
  await linkUser(stack, acme, "user-1004", "amy@ab123.example");
  let deliveries;
  for (let i = 0; i < 100; i++) {
    deliveries = (await call(stack.url, "GET", "/v1/webhooks/deliveries", as(acme))).json.deliveries;
    if (deliveries.some((d) => d.state === "failed")) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const failed = deliveries.find((d) => d.state === "failed");
  assert.ok(failed, JSON.stringify(deliveries));
  assert.equal(failed.type, "connection.created");
  assert.equal(failed.user, "user-1004");
  assert.equal(failed.attempts, 1);
  assert.equal(failed.last_status, 400);
  assert.ok(deliveries.some((d) => d.state === "delivered"));
  const stats = await call(stack.url, "GET", "/v1/stats", as(acme));
  assert.equal(stats.status, 200, stats.text);
  assert.equal(stats.json.webhooks.failed, 1);
  assert.equal(stats.json.connections.total, 4);
  assert.equal(stats.json.connections.needs_reauth, 1);
  assert.ok(stats.json.refreshes_last_24h.succeeded >= 1);
  assert.ok(stats.json.refreshes_last_24h.needs_reauth >= 1);
  // Redeliver: the same event, the same id, delivered this time.
  const again = await call(stack.url, "POST", `/v1/webhooks/deliveries/${failed.id}/redeliver`, as(acme));
  assert.equal(again.status, 202, again.text);
  assert.equal(again.json.state, "pending");
  const hits = await receiver.waitFor((d) => d.status === 204 && d.headers["keaplink-event-id"] === failed.id, "the redelivery");
  assert.equal(hits.length, 1);
  for (let i = 0; i < 100; i++) {
    const d = (await call(stack.url, "GET", "/v1/webhooks/deliveries", as(acme))).json.deliveries.find((x) => x.id === failed.id);
    if (d.state === "delivered") {
      assert.equal(d.attempts, 2);
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  // Another partner's delivery is not ours to redeliver; garbage ids are refused as such.
  assert.equal((await call(stack.url, "POST", `/v1/webhooks/deliveries/${failed.id}/redeliver`, as(globex))).status, 404);
  assert.equal((await call(stack.url, "POST", "/v1/webhooks/deliveries/nope/redeliver", as(acme))).json.error.code, "invalid_id");
  assert.equal((await call(stack.url, "GET", "/v1/webhooks/deliveries", as(globex))).json.deliveries.length, 0);
});
