// A stale or revoked access token heals itself behind /v1/keap/: Keap's 401 leads to one refresh
// through the connection's guard (none when the guard already holds a newer token) and one retry.
// 50 concurrent calls meeting a revoked token cost exactly one refresh at Keap and all succeed; a
// refused refresh token ends in 409 needs_reauth and the connection.needs_reauth webhook; a 401
// that survives the heal, Keap's 5xx and Keap's silence are told apart.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { ADMIN_TOKEN, startStack } from "./harness.mjs";
import { call, linkUser, putPartner } from "./client.mjs";
import { ofType, startReceiver, verifyDelivery } from "./receiver.mjs";

let stack;
let acme;
let receiver;
const ids = {};

before(async () => {
  receiver = await startReceiver();
  // KEAP_TIMEOUT_MS 2 s (the harness's): a hung Keap answer is given up well inside a test.
  stack = await startStack({ workerVars: { WEBHOOK_ALLOW_HTTP: "true", WEBHOOK_BACKOFF_SECS: "1" } });
  acme = await putPartner(stack.url, "acme", { origins: ["https://acme.example"], extra: { webhook_url: receiver.url } });
  for (const [user, email] of [["u1", "ann@ab123.example"], ["u2", "bob@cd456.example"], ["u3", "cat@ef789.example"]]) {
    await linkUser(stack, acme, user, email);
  }
  for (const c of (await call(stack.url, "GET", "/v1/connections", { token: acme.api_key })).json.connections) ids[c.user] = c.id;
});
after(async () => {
  await stack?.stop();
  await receiver?.stop();
});

const keap = (user, path = "/crm/rest/v2/oauth/connect/userinfo") =>
  call(stack.url, "GET", `/v1/keap${path}`, { token: acme.api_key, headers: { "keaplink-user": user } });
const refreshes = async () => (await stack.sandbox.stats()).calls.token_refresh ?? 0;
const userinfoCalls = async () => (await stack.sandbox.stats()).api_calls["GET /crm/rest/v2/oauth/connect/userinfo"] ?? 0;

test("50 concurrent calls meet a revoked access token: one refresh at Keap, 50 successes", async (t) => {
  // 50 at once first: the client's connections are then open, and the 50 below arrive together.
  const warm = await Promise.all(Array.from({ length: 50 }, () => keap("u1")));
  assert.deepEqual(warm.map((a) => a.status), Array(50).fill(200));
  // Keap kills the access token (the refresh token lives on): KV still hands out the dead one.
  const { revoked } = await stack.sandbox.revokeAccess("ann@ab123.example");
  assert.ok(revoked >= 1);
  const [refreshesBefore, callsBefore] = [await refreshes(), await userinfoCalls()];
  // Keap holds the next 50 calls until all 50 have arrived, so all 50 meet the 401 together
  // whatever the machine's speed (else a slow client would send its last calls after the first
  // heal, and they would test nothing). If keaplink sent them one at a time, the gate would
  // open after 15 s instead and the count of calls below would say so.
  await stack.sandbox.apiGate(50, 15_000);
  const started = performance.now();
  const answers = await Promise.all(Array.from({ length: 50 }, () => keap("u1")));
  const wallMs = performance.now() - started;
  const statuses = answers.map((a) => a.status);
  assert.deepEqual(statuses, Array(50).fill(200), answers.find((a) => a.status !== 200)?.text);
  for (const a of answers) {
    assert.equal(a.json.tenant_id, "ab123");
    assert.equal(a.headers.get("keaplink-connection-id"), ids.u1);
    assert.equal(a.headers.get("keaplink-error"), null);
  }
  assert.equal(await refreshes() - refreshesBefore, 1, "exactly one refresh for the 50");
  // Each call reached Keap twice: its 401, then the retry with the one refreshed token.
  const calls = await userinfoCalls() - callsBefore;
  assert.equal(calls, 100, `${calls} userinfo calls: ${calls - 50} met a 401`);
  const log = (await stack.sandbox.apiLog()).slice(-calls);
  assert.equal(log.filter((e) => e.authorized).length, 50);
  t.diagnostic(`50-way heal: ${await refreshes() - refreshesBefore} refresh at Keap, ${statuses.filter((s) => s === 200).length} successes, ${calls} calls reached Keap (${calls - 50} refused 401s), wall ${wallMs.toFixed(0)} ms`);

  // Healed for good: the next calls need no refresh and meet no 401.
  const again = await Promise.all(Array.from({ length: 5 }, () => keap("u1")));
  assert.deepEqual(again.map((a) => a.status), Array(5).fill(200));
  assert.equal(await refreshes() - refreshesBefore, 1);
  assert.ok((await stack.sandbox.apiLog()).slice(-5).every((e) => e.authorized));
});

test("Keap refuses the refresh token: 409 needs_reauth, the webhook goes out, and later calls send nothing", async () => {
  assert.equal((await keap("u2")).status, 200);
  // As when the user removes the app in Keap: access and refresh tokens die.
  await stack.sandbox.revoke("bob@cd456.example");
  const res = await keap("u2");
  assert.equal(res.status, 409, res.text);
  assert.equal(res.json.error.code, "needs_reauth");
  assert.equal(res.headers.get("keaplink-error"), "needs_reauth");
  const [hook] = await receiver.waitFor(ofType("connection.needs_reauth"), "a connection.needs_reauth webhook");
  const event = verifyDelivery(hook, acme.session_secret);
  assert.equal(event.connection.id, ids.u2);
  assert.equal(event.connection.status, "needs_reauth");
  assert.equal(event.user, "u2");

  const sent = (await stack.sandbox.stats()).api_calls_total;
  const later = await keap("u2");
  assert.equal(later.status, 409);
  assert.equal((await stack.sandbox.stats()).api_calls_total, sent, "a dead link calls Keap no more");
  const listed = await call(stack.url, "GET", "/v1/connections", { token: acme.api_key });
  assert.equal(listed.json.connections.find((c) => c.id === ids.u2).status, "needs_reauth");
});

test("a 401 that survives the heal is Keap's answer, relayed; Keap's 5xx is relayed; no answer is 504", async () => {
  const before = await refreshes();
  // Keap says 401 to a live token twice: one heal (a refresh), one retry, and its 401 passed on.
  await stack.sandbox.apiFaults("unauthorized", 2);
  const res = await keap("u3");
  assert.equal(res.status, 401);
  assert.equal(res.headers.get("keaplink-error"), null, "Keap's own 401");
  assert.equal(res.json.fault.detail.errorcode, "keymanagement.service.invalid_access_token");
  assert.equal(await refreshes() - before, 1);
  assert.equal((await keap("u3")).status, 200, "and the next call works with the refreshed token");

  await stack.sandbox.apiFaults("server_error", 1);
  const failed = await keap("u3");
  assert.equal(failed.status, 500);
  assert.equal(failed.headers.get("keaplink-error"), null);

  await stack.sandbox.apiFaults("hang", 1, 6_000);
  const started = Date.now();
  const slow = await keap("u3");
  assert.equal(slow.status, 504);
  assert.equal(slow.json.error.code, "keap_timeout");
  assert.equal(slow.headers.get("keaplink-error"), "keap_timeout");
  assert.ok(Date.now() - started < 5_500, "given up at KEAP_TIMEOUT_MS, not when Keap answered");
});

test("admin stats count the healed calls", async () => {
  // Past an exchange (the board hears from an isolate every 2 s at most), with room to spare.
  await new Promise((r) => setTimeout(r, 3_500));
  assert.equal((await keap("u1")).status, 200);
  const res = await call(stack.url, "GET", "/v1/admin/stats", { token: ADMIN_TOKEN });
  const p = res.json.proxy_last_24h;
  assert.ok(p.healed >= 50 && p.relayed >= 105, JSON.stringify(p));
  assert.ok(p.needs_reauth >= 2, JSON.stringify(p));
  assert.ok(p.keap_failed >= 1, JSON.stringify(p));
});
