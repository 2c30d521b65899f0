// Keap's events per link, end to end against the sandbox's REST hooks: subscribing verifies at
// Keap (the handshake echoed at the edge, or delayedVerify), an event reaches the partner once,
// signed, naming the link (Keap's retry of the same batch too), a receiver that is down never
// makes Keap wait, the sweep restores Inactive and deleted hooks, disconnect deletes them at Keap
// and the URL then answers 410, the URL alone decides the link, and bad input changes nothing.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { ADMIN_TOKEN, record, startStack } from "./harness.mjs";
import { call, linkUser, runSweep } from "./client.mjs";
import { startReceiver, verifyDelivery } from "./receiver.mjs";

let stack;
let acme;
let receiver;
let ann; // connection id (ann, app ab123)
let bob; // connection id (bob, app cd456)

const sandbox = async (path, body) => {
  const res = await fetch(`${stack.sandbox.url}/__sandbox/${path}`, body === undefined ? {} : {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  });
  const text = await res.text();
  assert.ok(res.status < 300, `sandbox ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
};
const keapHooks = async () => {
  const all = (await sandbox("hooks")).hooks;
  // The hook URLs are credentials: the transcript checks make sure no answer or log line has one.
  const tokens = all.map((h) => h.hook_url.split("/").pop());
  if (tokens.length) record("secrets", { values: tokens });
  return all;
};
const hooksOf = (all, id) => all.filter((h) => h.app === id);
const keapEvents = (type) => receiver.deliveries.filter((d) => d.status < 300 && JSON.parse(d.body).type === type);
const hooksApi = (method, id, body) => call(stack.url, method, `/v1/connections/${id}/hooks`, { token: acme.api_key, body });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  receiver = await startReceiver();
  stack = await startStack({
    workerVars: { WEBHOOK_ALLOW_HTTP: "true", WEBHOOK_BACKOFF_SECS: "1", KEAP_HOOKS_CHECK_SECS: "0" },
  });
  const res = await call(stack.url, "PUT", "/v1/admin/partners/acme", {
    token: ADMIN_TOKEN,
    body: { name: "Acme", allowed_origins: ["https://acme.example"], return_urls: [], webhook_url: receiver.url },
  });
  assert.equal(res.status, 200, res.text);
  acme = res.json;
  // Keap's tries, compressed: 300 ms apart instead of minutes.
  await sandbox("hooks/config", { gaps_ms: [300, 300, 300], timeout_ms: 3000 });
  ann = (await linkUser(stack, acme, "u1", "ann@ab123.example", { origin: "https://acme.example" })).connectionId;
  bob = (await linkUser(stack, acme, "u2", "bob@cd456.example", { origin: "https://acme.example" })).connectionId;
});
after(async () => {
  await stack?.stop();
  await receiver?.stop();
});

test("bad input is refused whole and subscribes nothing", async () => {
  for (const [body, says] of [
    [{ event_keys: ["contact.add", "contact.explode"] }, /contact\.explode/],
    [{ event_keys: Array.from({ length: 100 }, (_, i) => `k${i}.add`) }, /100 keys/],
    [{ event_keys: "contact.add" }, /event_keys/],
    [{ event_keys: ["contact.add", "contact.add"] }, /twice/],
    [["contact.add"], /event_keys/],
  ]) {
    const res = await hooksApi("PUT", ann, body);
    assert.equal(res.status, 400, res.text);
    assert.equal(res.json.error.code, "invalid_request");
    assert.match(res.json.error.message, says);
  }
  assert.deepEqual(await keapHooks(), [], "nothing subscribed at Keap");
  const none = await hooksApi("GET", ann);
  assert.equal(none.status, 200, none.text);
  assert.deepEqual(none.json, { hooks: [], hydrate: false });
  const other = await hooksApi("PUT", "c_notours0000000000000", { event_keys: ["contact.add"] });
  assert.ok([400, 404].includes(other.status), other.text);
});

test("subscribe: verified at Keap through the handshake, one URL per link", async () => {
  const res = await hooksApi("PUT", ann, { event_keys: ["contact.add", "invoice.add"] });
  assert.equal(res.status, 200, res.text);
  assert.deepEqual(res.json.hooks.map((h) => [h.event_key, h.status]), [["contact.add", "verified"], ["invoice.add", "verified"]]);
  assert.equal(res.json.hydrate, false);
  assert.ok(!JSON.stringify(res.json).includes("/hooks/keap/"), "the hook URL is never answered");
  const b = await hooksApi("PUT", bob, { event_keys: ["contact.add"], hydrate: true });
  assert.equal(b.status, 200, b.text);
  const all = await keapHooks();
  const annHooks = hooksOf(all, "ab123");
  assert.equal(annHooks.length, 2);
  assert.ok(annHooks.every((h) => h.status === "Verified"), JSON.stringify(annHooks));
  const urls = new Set(all.map((h) => h.hook_url));
  assert.equal(urls.size, 2, "one URL per link");
  for (const u of urls) assert.match(u, new RegExp(`^${stack.url}/hooks/keap/[A-Za-z0-9_-]{43}$`));
  const got = await hooksApi("GET", ann);
  assert.deepEqual(got.json.hooks.map((h) => h.status), ["verified", "verified"]);
  const detail = await call(stack.url, "GET", `/v1/connections/${ann}`, { token: acme.api_key });
  assert.ok(detail.json.events.some((e) => e.type === "hooks_set" && /contact\.add, invoice\.add/.test(e.detail)), detail.text);
});

test("an event reaches the partner once, signed, naming the link; Keap's retry of the batch too", async () => {
  const fired = await sandbox("hooks/fire", { app: "ab123", event_key: "contact.add", ids: [11, 12], repeat: 2 });
  assert.deepEqual(fired.hooks.map((h) => h.status), [200, 200], "keaplink answered Keap 200 both times");
  const [d] = await receiver.waitFor((x) => x.status < 300 && JSON.parse(x.body).type === "keap.contact.add", "keap.contact.add");
  const event = verifyDelivery(d, acme.session_secret);
  assert.equal(event.connection.id, ann);
  assert.equal(event.user, "u1");
  assert.equal(event.partner_id, "acme");
  assert.deepEqual(event.keap_event.object_keys.map((k) => k.id), [11, 12]);
  assert.equal(event.keap_event.object_type, "contact");
  assert.equal(event.keap_event.objects, undefined, "no hydrate: no objects");
  // A later, different event proves the consumer got past the repeat.
  await sandbox("hooks/fire", { app: "ab123", event_key: "invoice.add", ids: [7] });
  await receiver.waitFor((x) => x.status < 300 && JSON.parse(x.body).type === "keap.invoice.add", "keap.invoice.add");
  await sleep(1500);
  assert.equal(keapEvents("keap.contact.add").length, 1, "the repeated batch was delivered once");
  const hooks = await hooksApi("GET", ann);
  assert.ok(hooks.json.hooks.every((h) => h.last_event_at), hooks.text);
});

test("the stats count Keap's events in, deduplicated and delivered, for the partner and the deployment", async () => {
  // So far: contact.add posted twice by Keap (one batch, repeated) and invoice.add once; two delivered.
  const want = { received: 3, deduplicated: 1, delivered: 2 };
  const until = Date.now() + 20_000;
  let partner;
  let admin;
  while (Date.now() < until) {
    partner = await call(stack.url, "GET", "/v1/stats", { token: acme.api_key });
    admin = await call(stack.url, "GET", "/v1/admin/stats", { token: ADMIN_TOKEN });
    // The delivery is counted once keaplink has the receiver's answer: just after the receiver saw it.
    if (partner.json?.keap_events_last_24h?.delivered === 2 && admin.json?.keap_events_last_24h?.delivered === 2) break;
    await sleep(200);
  }
  assert.equal(partner.status, 200, partner.text);
  assert.equal(admin.status, 200, admin.text);
  assert.deepEqual(partner.json.keap_events_last_24h, want, partner.text);
  assert.deepEqual(admin.json.keap_events_last_24h, want, admin.text);
});

test("a receiver that is down: Keap still got 200 at once, and the event comes later", async () => {
  receiver.plan(500, 500);
  const fired = await sandbox("hooks/fire", { app: "ab123", event_key: "contact.add", ids: [21] });
  assert.deepEqual(fired.hooks.map((h) => h.status), [200]);
  const [d] = await receiver.waitFor(
    (x) => x.status < 300 && JSON.parse(x.body).keap_event?.object_keys?.[0]?.id === 21, "the redelivered event", 30_000);
  const id = JSON.parse(d.body).id;
  const tries = receiver.deliveries.filter((x) => JSON.parse(x.body).id === id).map((x) => x.status);
  assert.deepEqual(tries, [500, 500, 204]);
  const attempts = (await sandbox("hooks")).attempts.filter((a) => a.status !== 200);
  assert.deepEqual(attempts, [], "Keap never saw a failure");
});

test("hydrate reads each object through the link's token and names what it could not read", async () => {
  const list = await call(stack.url, "GET", "/v1/keap/crm/rest/v2/contacts?page_size=2", {
    token: acme.api_key, headers: { "keaplink-user": "u2" },
  });
  assert.equal(list.status, 200, list.text);
  const ids = list.json.contacts.map((c) => Number(c.id));
  await sandbox("hooks/fire", { app: "cd456", event_key: "contact.add", ids: [...ids, 999999] });
  const [d] = await receiver.waitFor((x) => x.status < 300 && JSON.parse(x.body).type === "keap.contact.add" && JSON.parse(x.body).connection.id === bob, "bob's event");
  const e = JSON.parse(d.body).keap_event;
  assert.deepEqual(e.objects.map((o) => Number(o.id)), ids);
  assert.deepEqual(e.unread.map((u) => [u.id, u.code]), [[999999, "not_found"]]);
});

test("the URL decides the link: nothing in the body can name another; an unknown URL answers 410", async () => {
  const annUrl = hooksOf(await keapHooks(), "ab123")[0].hook_url;
  const before = receiver.deliveries.length;
  // Posted as Keap posts (through call(), so the contract check sees the inbox's answers).
  const res = await call(stack.url, "POST", new URL(annUrl).pathname, {
    body: { event_key: "contact.add", object_type: "contact", object_keys: [{ id: 31 }], connection_id: bob, user: "u2" },
  });
  assert.equal(res.status, 200);
  const [d] = await receiver.waitFor((x) => x.status < 300 && JSON.parse(x.body).keap_event?.object_keys?.[0]?.id === 31, "the posted event");
  assert.equal(JSON.parse(d.body).connection.id, ann);
  assert.ok(receiver.deliveries.length > before);
  const unknown = await call(stack.url, "POST", `/hooks/keap/${"A".repeat(43)}`, { raw: "{}" });
  assert.equal(unknown.status, 410);
  assert.equal(unknown.json.error.code, "hook_gone");
  const bad = await call(stack.url, "POST", new URL(annUrl).pathname, { raw: "not json" });
  assert.equal(bad.status, 400);
});

test("the sweep restores a hook Keap made Inactive and one that vanished", async () => {
  const annHooks = hooksOf(await keapHooks(), "ab123");
  const [a, b] = annHooks;
  await sandbox(`hooks/${a.key}/inactive`, {});
  await sandbox(`hooks/${b.key}/delete`, {});
  const report = await runSweep(stack.worker);
  assert.ok(report.hooks_due >= 1, JSON.stringify(report));
  const until = Date.now() + 30_000;
  let now;
  while (Date.now() < until) {
    now = hooksOf(await keapHooks(), "ab123");
    if (now.length === 2 && now.every((h) => h.status === "Verified")) break;
    await sleep(200);
  }
  assert.equal(now.length, 2, JSON.stringify(now));
  assert.ok(now.every((h) => h.status === "Verified"), JSON.stringify(now));
  const detail = await call(stack.url, "GET", `/v1/connections/${ann}`, { token: acme.api_key });
  const restored = detail.json.events.filter((e) => e.type === "hook_restored").map((e) => e.detail);
  assert.ok(restored.some((d) => /Inactive at Keap; verified again/.test(d)), restored.join(" | "));
  assert.ok(restored.some((d) => /gone at Keap; created again/.test(d)), restored.join(" | "));
});

test("a handshake Keap does not take in time is completed with delayedVerify", async () => {
  await sandbox("hooks/config", { ignore_echo: true });
  try {
    const res = await hooksApi("PUT", ann, { event_keys: ["contact.add", "invoice.add", "order.add"] });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.hooks.find((h) => h.event_key === "order.add").status, "verified");
    const order = hooksOf(await keapHooks(), "ab123").find((h) => h.event_key === "order.add");
    assert.equal(order.status, "Verified");
  } finally {
    await sandbox("hooks/config", { ignore_echo: false });
  }
});

test("dropping an event key deletes its hook at Keap; disconnect deletes the rest and retires the URL", async () => {
  const res = await hooksApi("PUT", ann, { event_keys: ["contact.add"] });
  assert.equal(res.status, 200, res.text);
  assert.deepEqual(hooksOf(await keapHooks(), "ab123").map((h) => h.event_key), ["contact.add"]);
  const url = hooksOf(await keapHooks(), "ab123")[0].hook_url;
  const del = await call(stack.url, "DELETE", `/v1/connections/${ann}`, { token: acme.api_key });
  assert.equal(del.status, 204, del.text);
  assert.deepEqual(hooksOf(await keapHooks(), "ab123"), [], "gone at Keap");
  const gone = await call(stack.url, "POST", new URL(url).pathname, { body: { event_key: "contact.add", object_keys: [] } });
  assert.equal(gone.status, 410);
  // DELETE .../hooks removes every hook of a link that stays.
  const d = await call(stack.url, "DELETE", `/v1/connections/${bob}/hooks`, { token: acme.api_key });
  assert.equal(d.status, 204, d.text);
  assert.deepEqual(hooksOf(await keapHooks(), "cd456"), []);
});

test("a link that needs its user keeps its hooks, and its events arrive with every object unread: needs_reauth", async () => {
  const cara = (await linkUser(stack, acme, "u3", "cat@ef789.example", { origin: "https://acme.example" })).connectionId;
  const set = await hooksApi("PUT", cara, { event_keys: ["contact.add"], hydrate: true });
  assert.equal(set.status, 200, set.text);
  assert.deepEqual(set.json.hooks.map((h) => h.status), ["verified"]);
  await sandbox("revoke", { email: "cat@ef789.example" });
  // The next refresh is refused: the link needs its user.
  await call(stack.url, "POST", `/v1/connections/${cara}/refresh`, { token: acme.api_key });
  const detail = await call(stack.url, "GET", `/v1/connections/${cara}`, { token: acme.api_key });
  assert.equal(detail.json.status, "needs_reauth", detail.text);
  const kept = await hooksApi("GET", cara);
  assert.equal(kept.status, 200, kept.text);
  assert.deepEqual(kept.json.hooks.map((h) => [h.event_key, h.status]), [["contact.add", "verified"]]);
  assert.deepEqual(hooksOf(await keapHooks(), "ef789").map((h) => [h.event_key, h.status]), [["contact.add", "Verified"]], "kept at Keap");
  const fired = await sandbox("hooks/fire", { app: "ef789", event_key: "contact.add", ids: [41, 42] });
  assert.deepEqual(fired.hooks.map((h) => h.status), [200]);
  const [d] = await receiver.waitFor(
    (x) => x.status < 300 && JSON.parse(x.body).type === "keap.contact.add" && JSON.parse(x.body).connection.id === cara, "cara's event");
  const event = verifyDelivery(d, acme.session_secret);
  assert.equal(event.connection.status, "needs_reauth");
  assert.deepEqual(event.keap_event.objects ?? [], [], "nothing read");
  assert.deepEqual(event.keap_event.unread.map((u) => [u.id, u.code]), [[41, "needs_reauth"], [42, "needs_reauth"]]);
});

test("exporting a link deletes its hooks at Keap", async () => {
  const on = await call(stack.url, "PUT", "/v1/admin/partners/acme", {
    token: ADMIN_TOKEN,
    body: { name: "Acme", allowed_origins: ["https://acme.example"], return_urls: [], webhook_url: receiver.url, export_enabled: true },
  });
  assert.equal(on.status, 200, on.text);
  const dan = (await linkUser(stack, acme, "u4", "dan@gh012.example", { origin: "https://acme.example" })).connectionId;
  const set = await hooksApi("PUT", dan, { event_keys: ["contact.add", "invoice.add"] });
  assert.equal(set.status, 200, set.text);
  assert.equal(hooksOf(await keapHooks(), "gh012").length, 2);
  const url = hooksOf(await keapHooks(), "gh012")[0].hook_url;
  const out = await call(stack.url, "POST", "/v1/connections/export", { token: acme.api_key, body: { connection_ids: [dan] } });
  assert.equal(out.status, 200, out.text);
  assert.deepEqual(hooksOf(await keapHooks(), "gh012"), [], "gone at Keap");
  // Whatever Keap still had in flight finds no hook: its URL no longer names a link that wants events.
  const late = await fetch(url, { method: "POST", body: JSON.stringify({ event_key: "contact.add", object_keys: [{ id: 1 }] }) });
  assert.ok([200, 410].includes(late.status), String(late.status));
});
