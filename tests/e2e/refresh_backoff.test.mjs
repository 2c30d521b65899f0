// Transient failures of Keap's token endpoint (500, 429, a hang): the tokens are kept and still
// handed out, the sweep backs off (exponential, jittered), and the link recovers with Keap.
// Here every link is due by age after 5 s (keep-alive), while its access token stays fresh.
// The base backoff is 4 s: the k-th failure waits 4 s × 2^k scaled by a jitter in [0.5, 1), in
// whole seconds counted from the second of the failure, so at least 1 s passes before a retry
// (with a 2 s base the first wait could be 1 s, crossed by any second boundary: a flaky test).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startStack } from "./harness.mjs";
import { call, linkUser, mintSession, putPartner, runSweep } from "./client.mjs";

let stack;
let acme;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  stack = await startStack({ workerVars: { REFRESH_BACKOFF_SECS: "4", REFRESH_KEEPALIVE_SECS: "5" } });
  acme = await putPartner(stack.url, "acme", { origins: ["https://acme.example"] });
});
after(async () => { await stack?.stop(); });

const token = () => call(stack.url, "POST", "/v1/token", { token: acme.api_key, body: { user: "flaky" } });
const mine = async () =>
  (await call(stack.url, "GET", "/v1/me/connections", { token: await mintSession(acme, "flaky") })).json.connections[0];
const refreshCalls = async () => (await stack.sandbox.stats()).calls.token_refresh ?? 0;

test("500, 429 and a hang: tokens kept, retried after a backoff, recovered when Keap recovers", async () => {
  await linkUser(stack, acme, "flaky", "cat@ef789.example");
  const original = await token();
  assert.equal(original.status, 200);
  await sleep(5200); // the refresh token is now "old": due by keep-alive

  const failures = [["server_error", "keap_unavailable"], ["throttle", "keap_throttled"], ["hang", "keap_timeout"]];
  for (const [k, [fault, code]] of failures.entries()) {
    await stack.sandbox.fault(fault, 1, fault === "hang" ? 4000 : undefined);
    const before = await refreshCalls();
    const report = await runSweep(stack.worker);
    assert.equal(await refreshCalls(), before + 1, `${fault}: one attempt`);
    assert.equal(report.due, 1);
    assert.equal(report.still_failing, 1, JSON.stringify(report));
    // Backing off: an immediate sweep leaves it alone.
    const again = await runSweep(stack.worker);
    assert.equal(again.due, 0, JSON.stringify(again));
    assert.equal(await refreshCalls(), before + 1);
    const c = await mine();
    assert.equal(c.status, "active", "a valid token keeps the link active");
    assert.equal(c.last_error.code, code);
    // The tokens are kept: the stored one is still handed out, and Keap still takes it.
    const t = await token();
    assert.equal(t.status, 200);
    assert.equal(t.json.access_token, original.json.access_token);
    // The k-th failure waits at most 4 s × 2^k.
    await sleep(4000 * 2 ** k + 300);
  }
  const report = await runSweep(stack.worker);
  assert.equal(report.refreshed, 1, JSON.stringify(report));
  const c = await mine();
  assert.equal(c.last_error, null);
  assert.equal(c.status, "active");
  assert.ok(c.refreshed_at);
  const fresh = await token();
  assert.notEqual(fresh.json.access_token, original.json.access_token);
  const who = await fetch(`${stack.sandbox.url}/crm/rest/v1/oauth/connect/userinfo`, { headers: { authorization: `Bearer ${fresh.json.access_token}` } });
  assert.equal(who.status, 200);
});
