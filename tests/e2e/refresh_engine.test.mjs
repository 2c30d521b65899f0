// The refresh engine: one refresh at a time per connection, through its Durable Object; lost
// answers and dead links end as a clear needs_reauth; a Worker killed mid-refresh leaves a
// usable or a clearly dead link. (Backoff: refresh_backoff.test.mjs.)
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startStack } from "./harness.mjs";
import { call, linkUser, mintSession, putPartner, runSweep } from "./client.mjs";

let stack;
let kvDir;
let acme;
const ORIGIN = "https://acme.example";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  kvDir = await mkdtemp(join(tmpdir(), "keaplink-engine-"));
  stack = await startStack({ persistTo: kvDir, workerVars: { REFRESH_BACKOFF_SECS: "2", SWEEP_SUBREQUEST_BUDGET: "200" } });
  acme = await putPartner(stack.url, "acme", { origins: [ORIGIN] });
});
after(async () => {
  await stack?.stop();
  await rm(kvDir, { recursive: true, force: true });
});

/** Links `user` to `email`'s app with an access token that lives `lifetime` seconds. */
async function link(user, email, lifetime) {
  await stack.sandbox.configure({ expires_in: lifetime });
  const { connectionId } = await linkUser(stack, acme, user, email, { origin: ORIGIN });
  await stack.sandbox.configure({ expires_in: 86400 });
  return connectionId;
}

const token = (user) => call(stack.worker.url, "POST", "/v1/token", { token: acme.api_key, body: { user } });
const mine = async (user) =>
  (await call(stack.worker.url, "GET", "/v1/me/connections", { token: await mintSession(acme, user) })).json.connections[0];
const refreshCalls = async () => (await stack.sandbox.stats()).calls.token_refresh ?? 0;

const sweep = () => runSweep(stack.worker);

test("50 concurrent token requests and a sweep on a token with 1 s left: exactly one refresh", async () => {
  await link("racer", "ann@ab123.example", 1);
  const before = await refreshCalls();
  const answers = await Promise.all([
    ...Array.from({ length: 50 }, () => token("racer")),
    sweep().then(() => null),
  ]);
  const tokens = answers.filter(Boolean);
  assert.equal(await refreshCalls(), before + 1, "Keap saw exactly one refresh");
  assert.ok(tokens.every((t) => t.status === 200), tokens.map((t) => t.status).join(","));
  const distinct = new Set(tokens.map((t) => t.json.access_token));
  assert.equal(distinct.size, 1, "all 50 answers carry the same new token");
  const who = await fetch(`${stack.sandbox.url}/crm/rest/v1/oauth/connect/userinfo`, { headers: { authorization: `Bearer ${[...distinct][0]}` } });
  assert.equal(who.status, 200);
  const c = await mine("racer");
  assert.equal(c.status, "active");
  assert.ok(Date.parse(c.access_expires_at) > Date.now() + 86000e3);
});

test("Keap performs a refresh but its answer is lost: the link ends needs_reauth with a clear last_error", async () => {
  const id = await link("lost", "bob@cd456.example", 1);
  await stack.sandbox.fault("drop", 1, 4000);
  const first = await token("lost");
  assert.equal(first.status, 504, first.text);
  assert.equal(first.json.error.code, "keap_timeout");
  assert.equal((await mine("lost")).last_error.code, "keap_timeout");
  const second = await token("lost");
  assert.equal(second.status, 409);
  assert.equal(second.json.error.code, "needs_reauth");
  const c = await mine("lost");
  assert.equal(c.id, id, "kept, not deleted");
  assert.equal(c.status, "needs_reauth");
  assert.equal(c.last_error.code, "refresh_lost");
  assert.match(c.last_error.message, /lost/);
  // The sweep leaves a dead link alone.
  const before = await refreshCalls();
  const report = await sweep();
  assert.ok(report.complete);
  assert.equal(await refreshCalls(), before);
});

test("a Worker killed mid-refresh leaves a usable link (nothing rotated) or a clearly dead one (rotated)", async () => {
  await link("killed-hang", "ann@ab123.example", 1);
  await link("killed-drop", "bob@cd456.example", 1);
  // Keap hangs without doing anything; the Worker dies meanwhile.
  await stack.sandbox.fault("hang", 1, 8000);
  const pending = token("killed-hang").catch(() => null);
  await sleep(500);
  await stack.restartWorker();
  await pending;
  const t = await token("killed-hang");
  assert.equal(t.status, 200, t.text);
  assert.equal((await mine("killed-hang")).status, "active");

  // Keap rotates, then the Worker dies before the answer arrives.
  await stack.sandbox.fault("drop", 1, 8000);
  const pending2 = token("killed-drop").catch(() => null);
  await sleep(500);
  await stack.restartWorker();
  await pending2;
  const t2 = await token("killed-drop");
  assert.equal(t2.status, 409, t2.text);
  const c = await mine("killed-drop");
  assert.equal(c.status, "needs_reauth");
  assert.equal(c.last_error.code, "refresh_token_invalid");
});
