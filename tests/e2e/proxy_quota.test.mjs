// Keap's quota governed behind /v1/keap/: keaplink learns each window from Keap's x-keap-*
// headers and from its 429s, and while a window is spent answers 429 keap_quota with a computed
// retry-after itself, sending nothing to Keap until the window has passed. A Keap app's own
// throttle holds that app only; one partner's burst meets its own rate limit, not the others'.
// (KEAP_QUOTA_RESERVE is 0 here, so these are Keap's limits alone; proxy_reserve covers it.)
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { ADMIN_TOKEN, startStack } from "./harness.mjs";
import { call, linkUser, putPartner } from "./client.mjs";

let stack;
let acme;
let busy;
const LIMITS = { LIMIT_PROXY_PARTNER: 12 };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  stack = await startStack({ workerVars: { KEAP_QUOTA_RESERVE: "0" }, limits: LIMITS });
  acme = await putPartner(stack.url, "acme");
  busy = await putPartner(stack.url, "busy");
  await linkUser(stack, acme, "ann", "ann@ab123.example");
  await linkUser(stack, acme, "bob", "bob@cd456.example");
  await linkUser(stack, busy, "cat", "cat@ef789.example");
});
after(async () => { await stack?.stop(); });

const keap = (partner, user) =>
  call(stack.url, "GET", "/v1/keap/crm/rest/v2/oauth/connect/userinfo", { token: partner.api_key, headers: { "keaplink-user": user } });
const sent = async () => (await stack.sandbox.stats()).api_calls_total;
const stats = async () => (await call(stack.url, "GET", "/v1/admin/stats", { token: ADMIN_TOKEN })).json;

function assertHeld(res, { maxSecs }) {
  assert.equal(res.status, 429, res.text);
  assert.equal(res.json.error.code, "keap_quota");
  assert.equal(res.headers.get("keaplink-error"), "keap_quota");
  const wait = Number(res.headers.get("retry-after"));
  assert.ok(Number.isInteger(wait) && wait >= 1 && wait <= maxSecs, `retry-after ${res.headers.get("retry-after")}`);
  assert.match(res.json.error.message, new RegExp(`try again in ${wait} seconds`));
  return wait;
}

test("a spent day quota: our 429 with retry-after, nothing reaches Keap until the window passes, then calls flow", async () => {
  // Keap's "day" shortened to 5 s by the sandbox, with 3 calls left in it.
  const q = await stack.sandbox.quota({ product_quota: { limit: 1000, window_ms: 5_000, used: 997 } });
  const endsAt = q.product_quota.resets_at_ms;
  for (let i = 0; i < 3; i++) {
    const res = await keap(acme, "ann");
    assert.equal(res.status, 200, res.text);
    assert.equal(res.headers.get("x-keap-product-quota-available"), String(2 - i));
  }
  // Keap said 0 left: no further call goes out, and Keap never had to refuse one.
  const before = await sent();
  const waits = [];
  while (Date.now() < endsAt - 400) {
    const res = await keap(acme, "ann");
    const wait = assertHeld(res, { maxSecs: 6 });
    assert.ok(wait * 1000 >= endsAt - Date.now() - 50, `retry-after ${wait} s reaches the window's end`);
    assert.match(res.json.error.message, /daily API quota/);
    waits.push(wait);
    // Another user of another app is held too: the day quota is the whole client's.
    assertHeld(await keap(acme, "bob"), { maxSecs: 6 });
    await sleep(300);
  }
  assert.ok(waits.length >= 5, `${waits.length} held calls`);
  assert.ok(waits[0] >= waits.at(-1), "the wait shrinks as the window ends");
  assert.equal(await sent(), before, "zero calls reached Keap while the window was spent");
  const shown = await stats();
  assert.equal(shown.keap_quota.quota.available, 0);
  assert.ok(Date.parse(shown.keap_quota.paused_until) >= endsAt - 1000, JSON.stringify(shown.keap_quota));

  // The window passes: calls flow again, the first one no earlier than its end.
  let ok;
  for (let i = 0; i < 40 && !ok; i++) {
    const res = await keap(acme, "ann");
    if (res.status === 200) ok = { at: Date.now(), res };
    else { assertHeld(res, { maxSecs: 6 }); await sleep(150); }
  }
  assert.ok(ok, "calls flow once the window has passed");
  assert.ok(ok.at >= endsAt, `${ok.at - endsAt} ms after the window's end`);
  assert.equal(await sent(), before + 1);
  assert.equal((await keap(acme, "bob")).status, 200);
  await stack.sandbox.quota({ product_quota: { limit: 150_000, window_ms: 86_400_000 } });
});

test("a Keap app's own throttle holds that app only", async () => {
  await stack.sandbox.quota({ tenant_throttle: { limit: 3, used: { ab123: 2 } } });
  const last = await keap(acme, "ann");
  assert.equal(last.status, 200);
  assert.equal(last.headers.get("x-keap-tenant-throttle-available"), "0");
  const before = await sent();
  const held = await keap(acme, "ann");
  assertHeld(held, { maxSecs: 60 });
  assert.match(held.json.error.message, /this Keap app/);
  assert.equal(await sent(), before, "ab123's call was held");
  const other = await keap(acme, "bob");
  assert.equal(other.status, 200, "cd456 goes on");
  assert.equal(other.headers.get("x-keap-tenant-id"), "cd456");
  // Past an exchange (the board hears from an isolate every 2 s at most), with room to spare.
  await sleep(3_500);
  assert.equal((await keap(acme, "bob")).status, 200);
  const shown = (await stats()).keap_quota;
  const ab = shown.app_throttles.find((a) => a.keap_app === "ab123");
  assert.ok(ab && ab.available === 0 && ab.limit === 3, JSON.stringify(shown));
  assert.equal(shown.paused_until, null, "the client's own windows are not spent");
  await stack.sandbox.quota({ tenant_throttle: { limit: 10_000 } });
});

test("one partner's burst meets its own limit (LIMIT_PROXY_PARTNER); another partner is untouched", async () => {
  const into = (Date.now() / 1000) % 10;
  if (into > 4) await sleep((10 - into + 0.05) * 1000);
  const burst = await Promise.all(Array.from({ length: 20 }, () => keap(busy, "cat")));
  const ok = burst.filter((r) => r.status === 200);
  const limited = burst.filter((r) => r.status === 429);
  assert.equal(ok.length, LIMITS.LIMIT_PROXY_PARTNER);
  assert.equal(limited.length, 20 - LIMITS.LIMIT_PROXY_PARTNER);
  for (const r of limited) {
    assert.equal(r.json.error.code, "rate_limited");
    assert.equal(r.headers.get("keaplink-error"), "rate_limited");
    assert.equal(r.headers.get("retry-after"), "10");
  }
  assert.equal((await keap(acme, "bob")).status, 200);
});

test("Keap's own 429 is answered 429 keap_quota with the wait to the next minute, and holds every call till then", async () => {
  // Keap's per-minute throttle starts on the minute; leave room for two calls before the next.
  const into = (Date.now() / 1000) % 60;
  if (into > 50) await sleep((60 - into + 1) * 1000);
  await stack.sandbox.apiFaults("throttle", 1);
  const before = await sent();
  const res = await keap(acme, "bob");
  const wait = assertHeld(res, { maxSecs: 60 });
  const toMinute = 60 - Math.floor((Date.now() / 1000) % 60);
  assert.ok(Math.abs(wait - toMinute) <= 2, `retry-after ${wait}, the minute ends in ${toMinute} s`);
  assert.match(res.json.error.message, /per-minute API limit for this deployment/);
  assert.equal(await sent(), before + 1, "the one call Keap refused");
  // Every call waits for the minute now, whatever partner or app.
  assertHeld(await keap(busy, "cat"), { maxSecs: 60 });
  assertHeld(await keap(acme, "bob"), { maxSecs: 60 });
  assert.equal(await sent(), before + 1);
  const shown = await stats();
  assert.equal(shown.keap_quota.throttle.available, 0);
  assert.ok(shown.keap_quota.paused_until);
  await sleep(3_500);
  assertHeld(await keap(busy, "cat"), { maxSecs: 60 });
  const p = (await stats()).proxy_last_24h;
  assert.ok(p.keap_throttled >= 1 && p.held_for_quota >= 12, JSON.stringify(p));
});
