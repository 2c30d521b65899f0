// /v1/token on a token that is not fresh: it refreshes first (Keap rotates the refresh token),
// keeps a working token through Keap's transient failures, and marks a dead link needs_reauth.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startStack } from "./harness.mjs";
import { call, linkUser, mintSession, putPartner } from "./client.mjs";

let stack;
let acme;

before(async () => {
  // Keap's tokens live 90 s here and the margin is 100 s: every token request must refresh.
  stack = await startStack({ workerVars: { REFRESH_MARGIN_SECS: "100" }, sandbox: { expiresIn: 90 } });
  acme = await putPartner(stack.url, "acme", { origins: ["https://acme.example"] });
});
after(async () => { await stack?.stop(); });

const link = async (user, email) => (await linkUser(stack, acme, user, email, { origin: "https://acme.example" })).connectionId;

const token = (user) => call(stack.url, "POST", "/v1/token", { token: acme.api_key, body: { user } });
const mine = async (user) =>
  (await call(stack.url, "GET", "/v1/me/connections", { token: await mintSession(acme, user) })).json.connections;
const refreshes = async () => (await stack.sandbox.stats()).calls.token_refresh ?? 0;

test("a token that is not fresh is refreshed before it is handed out", async () => {
  await link("u1", "ann@ab123.example");
  const before = await refreshes();
  const t = await token("u1");
  assert.equal(t.status, 200, t.text);
  assert.equal(await refreshes(), before + 1);
  const who = await fetch(`${stack.sandbox.url}/crm/rest/v1/oauth/connect/userinfo`, { headers: { authorization: `Bearer ${t.json.access_token}` } });
  assert.equal(who.status, 200);
  const [c] = await mine("u1");
  assert.equal(c.status, "active");
  assert.ok(c.refreshed_at, "refreshed_at is set");
  // Keap rotated the refresh token; the next refresh uses the new one and succeeds.
  const t2 = await token("u1");
  assert.equal(t2.status, 200);
  assert.notEqual(t2.json.access_token, t.json.access_token);
});

test("Keap failing transiently: the still-valid token is handed out and the failure is shown", async () => {
  await link("u2", "bob@cd456.example");
  await stack.sandbox.fault("server_error", 1);
  const t = await token("u2");
  assert.equal(t.status, 200, "90 s left is more than the 60 s the contract promises");
  const [c] = await mine("u2");
  assert.equal(c.status, "active");
  assert.equal(c.last_error.code, "keap_unavailable");
  // Recovered on the next call.
  const t2 = await token("u2");
  assert.equal(t2.status, 200);
  const [c2] = await mine("u2");
  assert.equal(c2.last_error, null);
});

test("a dead refresh token marks the link needs_reauth, kept; reconnecting restores it in place", async () => {
  const id = await link("u3", "cat@ef789.example");
  await stack.sandbox.revoke("cat@ef789.example");
  const t = await token("u3");
  assert.equal(t.status, 409);
  assert.equal(t.json.error.code, "needs_reauth");
  const [c] = await mine("u3");
  assert.equal(c.id, id);
  assert.equal(c.status, "needs_reauth");
  assert.equal(c.last_error.code, "refresh_token_invalid");
  // No more calls to Keap for a dead link.
  const before = await refreshes();
  assert.equal((await token("u3")).status, 409);
  assert.equal(await refreshes(), before);
  // The user reconnects: same id, active again.
  assert.equal(await link("u3", "cat@ef789.example"), id);
  const [back] = await mine("u3");
  assert.equal(back.status, "active");
  assert.equal(back.last_error, null);
  assert.equal((await token("u3")).status, 200);
});
