// KEAP_QUOTA_RESERVE: once Keap's headers say the day's calls left are fewer than the reserve,
// proxied calls get 429 keap_quota (until the day resets) while the refreshes that keep links
// alive go on: the sweep still refreshes a due link, spending the reserve it was kept for.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { ADMIN_TOKEN, startStack } from "./harness.mjs";
import { call, linkUser, mintSession, putPartner, runSweep } from "./client.mjs";

let stack;
let acme;
const RESERVE = 100;

before(async () => {
  stack = await startStack({ workerVars: { KEAP_QUOTA_RESERVE: String(RESERVE) } });
  acme = await putPartner(stack.url, "acme", { origins: ["https://acme.example"] });
  await linkUser(stack, acme, "busy", "ann@ab123.example");
  // A link whose access token lives 2 minutes: due at the next sweep (margin: 6 hours).
  await stack.sandbox.configure({ expires_in: 120 });
  await linkUser(stack, acme, "idle", "bob@cd456.example");
  await stack.sandbox.configure({ expires_in: null });
});
after(async () => { await stack?.stop(); });

const keap = (user) =>
  call(stack.url, "GET", "/v1/keap/crm/rest/v2/oauth/connect/userinfo", { token: acme.api_key, headers: { "keaplink-user": user } });

test("under the reserve, proxied calls are held while the sweep's refreshes go on", async () => {
  // An hour-long "day" with 100 calls left: the next call leaves 99, under the reserve.
  const q = await stack.sandbox.quota({ product_quota: { limit: 1000, window_ms: 3_600_000, used: 900 } });
  const endsAt = q.product_quota.resets_at_ms;
  const last = await keap("busy");
  assert.equal(last.status, 200, last.text);
  assert.equal(last.headers.get("x-keap-product-quota-available"), "99");

  const s0 = await stack.sandbox.stats();
  const held = await keap("busy");
  assert.equal(held.status, 429, held.text);
  assert.equal(held.json.error.code, "keap_quota");
  assert.match(held.json.error.message, /kept for keeping links alive/);
  const wait = Number(held.headers.get("retry-after"));
  assert.ok(Math.abs(wait - (endsAt - Date.now()) / 1000) <= 3, `retry-after ${wait} s: until the day resets`);
  assert.equal((await keap("idle")).status, 429, "every proxied call, whoever it is for");
  assert.equal((await stack.sandbox.stats()).api_calls_total, s0.api_calls_total, "nothing sent");

  // The sweep refreshes the due link: Keap's token endpoint spends the day's reserve.
  const report = await runSweep(stack.worker);
  assert.equal(report.due, 1, JSON.stringify(report));
  assert.equal(report.guard_calls, 1, JSON.stringify(report));
  const s1 = await stack.sandbox.stats();
  assert.equal(s1.calls.token_refresh - (s0.calls.token_refresh ?? 0), 1, "the refresh went to Keap");
  assert.equal(s1.quota.product_quota.used, s0.quota.product_quota.used + 1, "and spent one call of the reserve");
  const mine = await call(stack.url, "GET", "/v1/me/connections", { token: await mintSession(acme, "idle"), headers: { origin: "https://acme.example" } });
  const [idle] = mine.json.connections;
  assert.ok(idle.refreshed_at, "the idle link was refreshed");
  assert.ok(Date.parse(idle.access_expires_at) - Date.now() > 3_600_000, "with a full-length token");
  // Handing out a stored token costs Keap nothing and goes on too.
  const token = await call(stack.url, "POST", "/v1/token", { token: acme.api_key, body: { user: "busy" } });
  assert.equal(token.status, 200);

  // Still held, and the admin stats say so.
  assert.equal((await keap("busy")).status, 429);
  const shown = (await call(stack.url, "GET", "/v1/admin/stats", { token: ADMIN_TOKEN })).json.keap_quota;
  assert.equal(shown.reserve, RESERVE);
  assert.equal(shown.quota.available, 99);
  assert.ok(Math.abs(Date.parse(shown.paused_until) - endsAt) <= 2_000, JSON.stringify(shown));
});
