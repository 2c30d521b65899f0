// Partner webhooks end to end: a receiver on loopback gets connection.created, .needs_reauth,
// .recovered and .deleted, each HMAC-SHA256 signed, retried through the queue after a 500 and a
// 429 with the same event id, never retried after a 400. Also GET /v1/admin/stats.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { ADMIN_TOKEN, startStack } from "./harness.mjs";
import { call, linkUser } from "./client.mjs";
import { ofType, startReceiver, verifyDelivery } from "./receiver.mjs";
import { KeaplinkWebhookError, verifyWebhook } from "../../clients/typescript/keaplink.mjs";

let stack;
let acme;
let receiver;
let deliveries;

before(async () => {
  receiver = await startReceiver();
  deliveries = receiver.deliveries;
  stack = await startStack({
    workerVars: { WEBHOOK_ALLOW_HTTP: "true", WEBHOOK_BACKOFF_SECS: "1", REFRESH_MARGIN_SECS: "100" },
    sandbox: { expiresIn: 90 },
  });
  const res = await call(stack.url, "PUT", "/v1/admin/partners/acme", {
    token: ADMIN_TOKEN,
    body: { name: "Acme", allowed_origins: ["https://acme.example"], return_urls: [], webhook_url: receiver.url },
  });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.json.webhook_url, receiver.url);
  acme = res.json;
});
after(async () => {
  await stack?.stop();
  await receiver?.stop();
});

const verify = (d) => verifyDelivery(d, acme.session_secret);
const waitFor = (pred, what, ms) => receiver.waitFor(pred, what, ms);

const link = async (user, email) => (await linkUser(stack, acme, user, email, { origin: "https://acme.example" })).connectionId;

test("connection.created: signed, retried after 500 and 429 with the same id, then delivered once", async () => {
  receiver.plan(500, 429);
  const id = await link("u1", "ann@ab123.example");
  const [ok] = await waitFor(ofType("connection.created"), "connection.created");
  const event = verify(ok);
  assert.equal(event.connection.id, id);
  assert.equal(event.partner_id, "acme");
  assert.equal(event.user, "u1");
  assert.equal(event.connection.status, "active");
  assert.match(event.id, /^evt_[0-9a-f]{32}$/);
  const attempts = deliveries.filter((d) => JSON.parse(d.body).id === event.id);
  assert.deepEqual(attempts.map((d) => d.status), [500, 429, 204]);
  assert.ok(attempts[2].at - attempts[0].at >= 2000, "waited between attempts");
  assert.ok(!/"(access|refresh)_token"/.test(ok.body), "no tokens in events");
});

test("needs_reauth when Keap refuses the refresh token, recovered on reconnect, deleted on disconnect", async () => {
  await stack.sandbox.revoke("ann@ab123.example");
  const t = await call(stack.url, "POST", "/v1/token", { token: acme.api_key, body: { user: "u1" } });
  assert.equal(t.status, 409, t.text);
  const [dead] = await waitFor(ofType("connection.needs_reauth"), "connection.needs_reauth");
  assert.equal(verify(dead).connection.status, "needs_reauth");

  const id = await link("u1", "ann@ab123.example");
  const [back] = await waitFor(ofType("connection.recovered"), "connection.recovered");
  assert.equal(verify(back).connection.id, id, "the same link, restored");

  const del = await call(stack.url, "DELETE", `/v1/connections/${id}`, { token: acme.api_key });
  assert.equal(del.status, 204);
  const [gone] = await waitFor(ofType("connection.deleted"), "connection.deleted");
  assert.equal(verify(gone).connection.id, id);
});

test("a 400 from the receiver is not retried", async () => {
  receiver.plan(400);
  await link("u2", "bob@cd456.example");
  const [refused] = await waitFor((d) => d.status === 400, "the refused delivery");
  const id = JSON.parse(refused.body).id;
  await new Promise((r) => setTimeout(r, 4000));
  assert.equal(deliveries.filter((d) => JSON.parse(d.body).id === id).length, 1);
});

test("the TypeScript client's verifyWebhook accepts every real delivery and refuses a changed one", async () => {
  const real = deliveries.filter((d) => d.status < 300);
  assert.ok(real.length >= 4, `${real.length} deliveries`);
  const check = (d, over = {}) => verifyWebhook({
    body: d.body, signature: d.headers["keaplink-signature"], eventId: d.headers["keaplink-event-id"],
    // As the receiver would have, when it got it.
    sessionSecret: acme.session_secret, now: d.at / 1000, ...over,
  });
  for (const d of real) {
    const event = await check(d);
    assert.equal(event.id, JSON.parse(d.body).id);
    assert.ok(["connection.created", "connection.needs_reauth", "connection.recovered", "connection.deleted"].includes(event.type), event.type);
  }
  const [d] = real;
  // Raw bytes work as well as text.
  assert.equal((await check(d, { body: new TextEncoder().encode(d.body) })).id, JSON.parse(d.body).id);
  const refused = async (over, reason) => {
    await assert.rejects(check(d, over), (e) => e instanceof KeaplinkWebhookError && e.reason === reason, reason);
  };
  await refused({ body: d.body.replace('"user":"', '"user":"x') }, "mismatch");
  await refused({ body: `${d.body} ` }, "mismatch");
  await refused({ sessionSecret: `${acme.session_secret}x` }, "mismatch");
  await refused({ signature: undefined }, "malformed");
  await refused({ signature: d.headers["keaplink-signature"].replace(/,v1=.*/, "") }, "malformed");
  const t = Number(/^t=(\d+)/.exec(d.headers["keaplink-signature"])[1]);
  await refused({ now: t + 301 }, "stale");
  await refused({ now: t - 301 }, "stale");
  assert.equal((await check(d, { now: t + 299 })).id, JSON.parse(d.body).id, "within the tolerance");
  await refused({ eventId: "evt_00000000000000000000000000000000" }, "event_id");
});

test("GET /v1/admin/stats: connections by status and the last 24 h of refreshes", async () => {
  assert.equal((await call(stack.url, "GET", "/v1/admin/stats", { token: acme.api_key })).status, 401);
  const s = await call(stack.url, "GET", "/v1/admin/stats", { token: ADMIN_TOKEN });
  assert.equal(s.status, 200, s.text);
  assert.equal(s.json.partners, 1);
  assert.deepEqual(s.json.connections, { total: 1, active: 1, needs_reauth: 0, exported: 0 });
  assert.equal(s.json.refreshes_last_24h.needs_reauth, 1);
  // One more: a refresh that works (u2's token is inside the margin: every request refreshes).
  assert.equal((await call(stack.url, "POST", "/v1/token", { token: acme.api_key, body: { user: "u2" } })).status, 200);
  const s2 = await call(stack.url, "GET", "/v1/admin/stats", { token: ADMIN_TOKEN });
  assert.equal(s2.json.refreshes_last_24h.succeeded, s.json.refreshes_last_24h.succeeded + 1);
});
