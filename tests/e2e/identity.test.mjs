// Links stay in the right hands: identity-locked reconnects (another Keap user of the same app,
// another app of the same Keap user, a plain connect landing on a linked app), `reconnect_identity:
// "app"`, the right user restoring a dead link in place; Keap's business name and v2 userinfo;
// repair links over HTTP (single-use, GET spends nothing, expiry, forged tokens, a replayed
// button); `connection.expiring` with a short refresh-token lifetime; repair links in webhooks.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startStack } from "./harness.mjs";
import { Browser, call, hiddenInputs, linkUser, mintSession, requestLine, putPartner } from "./client.mjs";
import { ofType, startReceiver, verifyDelivery } from "./receiver.mjs";
import { withLocalKv } from "./seed.mjs";

const ORIGIN = "https://acme.example";
let stack;
let acme;
let relaxed;
let receiver;
let kvDir;

before(async () => {
  kvDir = await mkdtemp(join(tmpdir(), "keaplink-identity-"));
  receiver = await startReceiver();
  stack = await startStack({
    persistTo: kvDir,
    // A refresh token that "lives" 10 minutes: any failing refresh is inside its last week.
    workerVars: { WEBHOOK_ALLOW_HTTP: "true", WEBHOOK_BACKOFF_SECS: "1", KEAP_REFRESH_TOKEN_LIFETIME_SECS: "600" },
  });
  acme = await putPartner(stack.url, "acme", {
    origins: [ORIGIN],
    name: "Acme Bookings",
    extra: { webhook_url: receiver.url, webhook_repair_links: true },
  });
  relaxed = await putPartner(stack.url, "relaxed", { origins: [ORIGIN], extra: { reconnect_identity: "app" } });
});
after(async () => {
  await stack?.stop();
  await receiver?.stop();
  await rm(kvDir, { recursive: true, force: true });
});

const mine = async (partner, user) =>
  (await call(stack.url, "GET", "/v1/me/connections", { token: await mintSession(partner, user), headers: { origin: ORIGIN } })).json.connections;
const token = (partner, user, keapApp) =>
  call(stack.url, "POST", "/v1/token", { token: partner.api_key, body: keapApp ? { user, keap_app: keapApp } : { user } });
const detail = async (partner, id) => (await call(stack.url, "GET", `/v1/connections/${id}`, { token: partner.api_key })).json;
/** The popup page's posted message. */
const message = (journey) => JSON.parse(journey.final.text.match(/<script type="application\/json" id="keaplink-result">(.*?)<\/script>/)[1]).message;

test("a link records its Keap user, the app's business name and when its refresh token dies", async () => {
  const { connectionId } = await linkUser(stack, acme, "u1", "ann@ab123.example", { origin: ORIGIN });
  const [c] = await mine(acme, "u1");
  assert.equal(c.id, connectionId);
  assert.equal(c.keap_app, "ab123");
  assert.equal(c.keap_app_name, "Ann's Bakery", "read from Keap's v2 businessProfile");
  assert.equal(c.reconnect_before, null);
  const lifetime = Date.parse(c.refresh_expires_at) - Date.parse(c.connected_at);
  assert.equal(lifetime, 600_000, "KEAP_REFRESH_TOKEN_LIFETIME_SECS after the token was issued");
  const calls = (await stack.sandbox.stats()).api_calls;
  assert.ok(calls["GET /crm/rest/v2/oauth/connect/userinfo"] >= 1, "v2 userinfo by default");
  assert.ok(calls["GET /crm/rest/v2/businessProfile"] >= 1);
  const d = await detail(acme, connectionId);
  assert.equal(d.events[0].type, "created");
  assert.match(d.events[0].detail, /ann@ab123\.example in ab123/);
});

test("a reconnect as another Keap user of the same app stores nothing and names both", async () => {
  const [before] = await mine(acme, "u1");
  const tokenBefore = (await token(acme, "u1")).json.access_token;
  const { journey } = await linkUser(stack, acme, "u1", "amy@ab123.example", { origin: ORIGIN, body: { connection_id: before.id }, expect: "error" });
  const msg = message(journey);
  assert.equal(msg.error, "identity_mismatch");
  assert.equal(msg.signed_in, "amy@ab123.example");
  assert.equal(msg.expected, "ann@ab123.example");
  const [after] = await mine(acme, "u1");
  assert.deepEqual(after, before, "the link, its status and id untouched");
  const t = await token(acme, "u1");
  assert.equal(t.status, 200);
  assert.equal(t.json.access_token, tokenBefore, "the old token is still the one handed out");
  const d = await detail(acme, before.id);
  assert.equal(d.events[0].type, "identity_mismatch");
  assert.match(d.events[0].detail, /amy@ab123\.example signed in/);
});

test("a plain connect that lands on an app the user already has is a locked reconnect too", async () => {
  const [before] = await mine(acme, "u1");
  const { journey } = await linkUser(stack, acme, "u1", "amy@ab123.example", { origin: ORIGIN, expect: "error" });
  assert.equal(message(journey).error, "identity_mismatch");
  assert.deepEqual(await mine(acme, "u1"), [before]);
});

test("a reconnect that picks another app on Keap's chooser is refused whatever the rule", async () => {
  const { connectionId } = await linkUser(stack, relaxed, "d1", "dan@gh012.example", { origin: ORIGIN });
  const [before] = await mine(relaxed, "d1");
  assert.equal(before.keap_app, "gh012");
  const { journey } = await linkUser(stack, relaxed, "d1", "dan@gh012.example", { origin: ORIGIN, app: "ij345", body: { connection_id: connectionId }, expect: "error" });
  const msg = message(journey);
  assert.equal(msg.error, "identity_mismatch");
  assert.deepEqual(await mine(relaxed, "d1"), [before], "no second link, the first untouched");
  assert.match((await detail(relaxed, connectionId)).events[0].detail, /Keap app ij345; this link is for dan@gh012\.example in gh012/);
});

test("reconnect_identity \"app\" lets another user of the same app restore the link in place", async () => {
  const { connectionId } = await linkUser(stack, relaxed, "r1", "ann@ab123.example", { origin: ORIGIN });
  const again = await linkUser(stack, relaxed, "r1", "amy@ab123.example", { origin: ORIGIN, body: { connection_id: connectionId } });
  assert.equal(again.connectionId, connectionId, "same id");
  const [c] = await mine(relaxed, "r1");
  assert.equal(c.keap_user.email, "amy@ab123.example");
  assert.equal((await detail(relaxed, connectionId)).events[0].type, "reconnected");
});

test("the right user restores a dead link: same id, active, connection.recovered", async () => {
  const { connectionId } = await linkUser(stack, acme, "u3", "cat@ef789.example", { origin: ORIGIN });
  await stack.sandbox.revoke("cat@ef789.example");
  // An operator's "refresh now": Keap refuses the revoked refresh token.
  const refresh = await call(stack.url, "POST", `/v1/connections/${connectionId}/refresh`, { token: acme.api_key });
  assert.equal(refresh.status, 200, refresh.text);
  assert.equal(refresh.json.status, "needs_reauth");
  assert.equal(refresh.json.last_error.code, "refresh_token_invalid");
  const again = await call(stack.url, "POST", `/v1/connections/${connectionId}/refresh`, { token: acme.api_key });
  assert.equal(again.status, 409, "nothing to try until the user reconnects");
  assert.equal(again.json.error.code, "needs_reauth");
  const back = await linkUser(stack, acme, "u3", "cat@ef789.example", { origin: ORIGIN, body: { connection_id: connectionId } });
  assert.equal(back.connectionId, connectionId);
  const [c] = await mine(acme, "u3");
  assert.equal(c.status, "active");
  assert.equal(c.id, connectionId);
  const recovered = await receiver.waitFor((d) => ofType("connection.recovered")(d) && JSON.parse(d.body).connection.id === connectionId, "connection.recovered");
  assert.equal(verifyDelivery(recovered[0], acme.session_secret).user, "u3");
  // Newest first; acme asked for repair links in its webhooks, so the death made one.
  assert.deepEqual((await detail(acme, connectionId)).events.map((e) => e.type), ["recovered", "repair_link_created", "needs_reauth", "created"]);
});

test("a v2 userinfo whose tenant_id contradicts the token's app is not believed: nothing stored, new link or reconnect", async () => {
  // Keap's token said ab123 (or cd456) in its scope; its userinfo then names another tenant.
  const [before] = await mine(acme, "u1");
  const tokenBefore = (await token(acme, "u1")).json.access_token;
  await stack.sandbox.apiFaults("wrong_tenant", 1);
  const { journey } = await linkUser(stack, acme, "u1", "ann@ab123.example", { origin: ORIGIN, body: { connection_id: before.id }, expect: "error" });
  assert.equal(message(journey).error, "keap_bad_response");
  assert.deepEqual(await mine(acme, "u1"), [before], "the link as it was");
  assert.equal((await token(acme, "u1")).json.access_token, tokenBefore);

  await stack.sandbox.apiFaults("wrong_tenant", 1);
  const fresh = await linkUser(stack, acme, "tenant-check", "bob@cd456.example", { origin: ORIGIN, expect: "error" });
  assert.equal(message(fresh.journey).error, "keap_bad_response");
  assert.deepEqual(await mine(acme, "tenant-check"), [], "no link made");
  assert.equal((await stack.sandbox.stats()).api_faults_queued, 0, "both faults were used (the callback's first REST call is userinfo)");
});

test("connection_id must be one of the signed-in user's own links", async () => {
  const [theirs] = await mine(acme, "u1");
  const asOther = await call(stack.url, "POST", "/v1/me/connect", { token: await mintSession(acme, "someone-else"), headers: { origin: ORIGIN }, body: { connection_id: theirs.id } });
  assert.equal(asOther.status, 404, asOther.text);
  assert.equal(asOther.json.error.code, "no_connection");
  const garbage = await call(stack.url, "POST", "/v1/me/connect", { token: await mintSession(acme, "u1"), headers: { origin: ORIGIN }, body: { connection_id: "../x" } });
  assert.equal(garbage.json.error.code, "invalid_id");
  const otherPartner = await call(stack.url, "POST", "/v1/me/connect", { token: await mintSession(relaxed, "u1"), headers: { origin: ORIGIN }, body: { connection_id: theirs.id } });
  assert.equal(otherPartner.status, 404);
});

// ---- repair links over HTTP ------------------------------------------------------------------

const repairLink = (partner, id, body) => call(stack.url, "POST", `/v1/connections/${id}/repair-link`, { token: partner.api_key, body });

test("a repair link: GET spends nothing; the button starts a sign-out-first reconnect; then it is used", async () => {
  const [c] = await mine(acme, "u1");
  const made = await repairLink(acme, c.id, { ttl_secs: 3600 });
  assert.equal(made.status, 200, made.text);
  assert.match(made.json.url, new RegExp(`^${stack.url}/link/[A-Za-z0-9_-]{43}$`));
  assert.ok(Math.abs(Date.parse(made.json.expires_at) - Date.now() - 3600e3) < 60e3);
  const path = new URL(made.json.url).pathname;
  for (let i = 0; i < 3; i++) {
    const page = await call(stack.url, "GET", path);
    assert.equal(page.status, 200);
    assert.match(page.text, /Acme Bookings/);
    assert.match(page.text, /Ann&#x27;s Bakery \(ab123\)|Ann&#39;s Bakery \(ab123\)|Ann's Bakery \(ab123\)/);
    assert.match(page.text, /<form method="post">/);
    if (i === 0) {
      // Our log line never carries the token (it is the link).
      const id = page.headers.get("x-request-id");
      const line = await requestLine(stack.worker, id);
      assert.equal(line.path, "/link/[token]");
    }
    const csp = page.headers.get("content-security-policy");
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline/);
  }
  // The button: a POST, answered with the sign-out hop to Keap.
  const browser = new Browser();
  const pressed = await browser.go(made.json.url, { form: {} });
  assert.match(pressed.url, /\/app\/oauth\/authorize/, "went through the hop to Keap's sign-in");
  assert.ok(browser.visited.some((u) => u.includes("/logout?service=")), "signed out first");
  assert.match(pressed.text, /data-page="login"/);
  const login = await browser.go(`${stack.sandbox.url}/app/oauth/login`, { form: { ...hiddenInputs(pressed.text), email: "ann@ab123.example", password: "keap" } });
  const done = await browser.go(`${stack.sandbox.url}/app/oauth/consent`, { form: { ...hiddenInputs(login.text), decision: "allow" } });
  assert.equal(done.res.status, 200);
  assert.match(done.text, /Your Keap account is reconnected/);
  assert.equal((await mine(acme, "u1"))[0].id, c.id, "the same connection id");
  // Used: the page says so, and the button does nothing.
  const again = await call(stack.url, "GET", path);
  assert.equal(again.status, 410);
  assert.match(again.text, /already been used/);
  const replay = await call(stack.url, "POST", path, { raw: "", headers: { "content-type": "application/x-www-form-urlencoded" } });
  assert.equal(replay.status, 410);
  const events = (await detail(acme, c.id)).events.map((e) => e.type);
  // The press was an attempt; the restore spent the link.
  assert.deepEqual(events.slice(0, 4), ["repair_link_used", "reconnected", "repair_link_tried", "repair_link_created"]);
});

test("a repair link finished as another Keap user, or cancelled at Keap, restores nothing and says why", async () => {
  const [c] = await mine(acme, "u1");
  const tokenBefore = (await token(acme, "u1")).json.access_token;
  const journey = async (email, decision) => {
    const { url } = (await repairLink(acme, c.id, {})).json;
    const browser = new Browser();
    const pressed = await browser.go(url, { form: {} });
    const login = await browser.go(`${stack.sandbox.url}/app/oauth/login`, { form: { ...hiddenInputs(pressed.text), email, password: "keap" } });
    return browser.go(`${stack.sandbox.url}/app/oauth/consent`, { form: { ...hiddenInputs(login.text), decision } });
  };
  const wrong = await journey("amy@ab123.example", "allow");
  assert.equal(wrong.res.status, 409, "identity_mismatch");
  assert.match(wrong.text, /Your Keap account was not reconnected/);
  assert.match(wrong.text, /amy@ab123\.example.*ann@ab123\.example/s);
  assert.match(wrong.text, /<form method="post" action="\/link\/again\/[A-Za-z0-9_-]{43}"><button type="submit">Try again<\/button><\/form>/);
  const cancelled = await journey("ann@ab123.example", "deny");
  assert.equal(cancelled.res.status, 400, "access_denied");
  assert.match(cancelled.text, /You cancelled the connection\. Nothing was changed\./);
  assert.match(cancelled.text, /Try again/, "a cancel at Keap does not spend the link either");
  assert.deepEqual((await mine(acme, "u1"))[0], c, "the link as it was");
  assert.equal((await token(acme, "u1")).json.access_token, tokenBefore);
});

test("a repair link is tried at most 5 times, each press counted once and on the timeline, even at once", async () => {
  const [c] = await mine(acme, "u1");
  const { url } = (await repairLink(acme, c.id, {})).json;
  const path = new URL(url).pathname;
  const press = () => call(stack.url, "POST", path, { raw: "", headers: { "content-type": "application/x-www-form-urlencoded" } });
  // Three at once and two more: five attempts, each its own trip to Keap.
  const first = await Promise.all([press(), press(), press()]);
  const rest = [await press(), await press()];
  assert.deepEqual([...first, ...rest].map((p) => p.status), [303, 303, 303, 303, 303]);
  const sixth = await press();
  assert.equal(sixth.status, 410);
  assert.match(sixth.text, /tried 5 times without reconnecting/);
  // A GET still changes nothing (its page shows; its button says the same).
  assert.equal((await call(stack.url, "GET", path)).status, 200);
  assert.equal((await press()).status, 410);
  const tried = (await detail(acme, c.id)).events.filter((e) => e.type === "repair_link_tried").map((e) => e.detail.slice(0, 12));
  assert.deepEqual(tried.slice(0, 5).sort(), ["Attempt 1 of", "Attempt 2 of", "Attempt 3 of", "Attempt 4 of", "Attempt 5 of"]);
  assert.deepEqual((await mine(acme, "u1"))[0], c, "the link as it was");
});

test("Try again on a refused repair attempt works once; a made-up one is unknown", async () => {
  const [c] = await mine(acme, "u1");
  const { url } = (await repairLink(acme, c.id, {})).json;
  const browser = new Browser();
  const pressed = await browser.go(url, { form: {} });
  const login = await browser.go(`${stack.sandbox.url}/app/oauth/login`, { form: { ...hiddenInputs(pressed.text), email: "amy@ab123.example", password: "keap" } });
  const refused = await browser.go(`${stack.sandbox.url}/app/oauth/consent`, { form: { ...hiddenInputs(login.text), decision: "allow" } });
  const again = refused.text.match(/action="(\/link\/again\/[A-Za-z0-9_-]{43})"/)[1];
  const form = { raw: "", headers: { "content-type": "application/x-www-form-urlencoded" } };
  const once = await call(stack.url, "POST", again, form);
  assert.equal(once.status, 303);
  assert.match(once.headers.get("location"), /\/logout\?service=/, "signed out of Keap first");
  const twice = await call(stack.url, "POST", again, form);
  assert.equal(twice.status, 404, "a Try again button works once");
  assert.equal((await call(stack.url, "POST", `/link/again/${"A".repeat(43)}`, form)).status, 404);
  assert.equal((await call(stack.url, "GET", again)).status, 405, "only its button's POST");
  const line = await requestLine(stack.worker, once.headers.get("x-request-id"));
  assert.equal(line.path, "/link/[token]", "the state stays out of the log");
  assert.deepEqual((await mine(acme, "u1"))[0], c, "the link as it was");
});

test("repair-link bad input: ttl out of range, foreign or malformed ids, forged and truncated tokens", async () => {
  const [c] = await mine(acme, "u1");
  for (const ttl_secs of [0, 299, 2_592_001, "a week"]) {
    const res = await repairLink(acme, c.id, { ttl_secs });
    assert.equal(res.status, 400, `${ttl_secs}: ${res.text}`);
    assert.equal(res.json.error.code, "invalid_request");
  }
  assert.equal((await repairLink(relaxed, c.id, {})).json.error.code, "no_connection", "another partner's id is 404");
  assert.equal((await repairLink(acme, "nope", {})).json.error.code, "invalid_id");
  const { url } = (await repairLink(acme, c.id, {})).json;
  const real = new URL(url).pathname;
  const forged = real.slice(0, -4) + (real.endsWith("AAAA") ? "BBBB" : "AAAA");
  for (const path of [forged, real.slice(0, -1), "/link/", "/link/short", `/link/${"a".repeat(43)}`]) {
    const res = await call(stack.url, "GET", path);
    assert.ok([404].includes(res.status), `${path}: ${res.status}`);
    if (res.status === 404 && res.headers.get("content-type")?.includes("html")) assert.match(res.text, /not one we know/);
    const post = await call(stack.url, "POST", path, { raw: "", headers: { "content-type": "application/x-www-form-urlencoded" } });
    assert.equal(post.status, 404, path);
  }
  // The real one was never spent by any of that.
  assert.equal((await call(stack.url, "GET", real)).status, 200);
});

test("an expired repair link says so and changes nothing", async () => {
  const [c] = await mine(acme, "u1");
  const { url } = (await repairLink(acme, c.id, { ttl_secs: 300 })).json;
  const tokenPart = new URL(url).pathname.split("/").pop();
  const kvKey = `r/${createHash("sha256").update(tokenPart).digest("base64url")}`;
  await stack.worker.stop();
  await withLocalKv(kvDir, async (kv) => {
    const rec = JSON.parse(await kv.get(kvKey));
    rec.expires_at = Math.floor(Date.now() / 1000) - 10;
    await kv.put(kvKey, JSON.stringify(rec));
  });
  await stack.restartWorker();
  const page = await call(stack.url, "GET", new URL(url).pathname);
  assert.equal(page.status, 410);
  assert.match(page.text, /expired/);
  const post = await call(stack.url, "POST", new URL(url).pathname, { raw: "", headers: { "content-type": "application/x-www-form-urlencoded" } });
  assert.equal(post.status, 410);
});

// ---- warnings before a link dies ----------------------------------------------------------------

test("refreshes failing in the refresh token's last week: connection.expiring once, with a repair link", async () => {
  await stack.sandbox.configure({ expires_in: 30 });
  const { connectionId } = await linkUser(stack, acme, "w1", "bob@cd456.example", { origin: ORIGIN });
  await stack.sandbox.configure({ expires_in: null });
  // Two refreshes fail: one per token request below.
  await stack.sandbox.fault("server_error", 2);
  // The token is stale (30 s < the margin): a token request refreshes, Keap answers 500.
  await token(acme, "w1");
  const [expiring] = await receiver.waitFor(ofType("connection.expiring"), "connection.expiring");
  const event = verifyDelivery(expiring, acme.session_secret);
  assert.equal(event.connection.id, connectionId);
  assert.ok(event.connection.reconnect_before, "the event says when the link dies");
  assert.match(event.repair_url, new RegExp(`^${stack.url}/link/`));
  const [c] = await mine(acme, "w1");
  assert.equal(c.reconnect_before, c.refresh_expires_at);
  // Another failure does not announce it again.
  await token(acme, "w1");
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(receiver.deliveries.filter(ofType("connection.expiring")).length, 1);
  // The link from the event works.
  assert.equal((await call(stack.url, "GET", new URL(event.repair_url).pathname)).status, 200);
  assert.equal((await stack.sandbox.stats()).faults_queued, 0);
});

test("connection.needs_reauth carries a fresh repair link when the partner asked for them", async () => {
  await stack.sandbox.configure({ expires_in: 30 });
  const { connectionId } = await linkUser(stack, acme, "w2", "cat@ef789.example", { origin: ORIGIN });
  await stack.sandbox.configure({ expires_in: null });
  await stack.sandbox.revoke("cat@ef789.example");
  const t = await token(acme, "w2");
  assert.equal(t.status, 409);
  const hits = await receiver.waitFor((d) => ofType("connection.needs_reauth")(d) && JSON.parse(d.body).connection.id === connectionId, "needs_reauth");
  const event = verifyDelivery(hits[0], acme.session_secret);
  assert.match(event.repair_url, new RegExp(`^${stack.url}/link/`));
  const page = await call(stack.url, "GET", new URL(event.repair_url).pathname);
  assert.equal(page.status, 200);
  assert.match(page.text, /cat@ef789\.example/);
});
