// The whole link, end to end: connect → logout hop → login → consent → callback → listed →
// /v1/token returns a token Keap (the sandbox) accepts → disconnect → gone.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startStack } from "./harness.mjs";
import { Browser, call, linkThroughSandbox, mintSession, putPartner } from "./client.mjs";

const ORIGIN = "https://acme.example";
const RETURN = "https://acme.example/settings";
let stack;
let acme;

before(async () => {
  stack = await startStack();
  acme = await putPartner(stack.url, "acme", { origins: [ORIGIN], returnUrls: [RETURN] });
});
after(async () => { await stack?.stop(); });

const me = async (method, path, user, opts = {}) =>
  call(stack.url, method, `/v1/me${path}`, {
    token: await mintSession(acme, user),
    headers: { origin: ORIGIN, ...(opts.headers ?? {}) },
    ...opts,
  });

async function link(user, email, { signOutFirst = true, browser = new Browser() } = {}) {
  const res = await me("POST", "/connect", user, { body: { sign_out_first: signOutFirst } });
  assert.equal(res.status, 200, res.text);
  const journey = await linkThroughSandbox(browser, stack.sandbox.url, res.json.authorize_url, { email });
  return { ...journey, authorizeUrl: res.json.authorize_url, browser };
}

test("a full link: connect, sign in, consent, listed, token works at Keap, disconnect", async () => {
  const { final, sawLogin, authorizeUrl } = await link("user-1", "ann@ab123.example");
  assert.ok(authorizeUrl.startsWith(`${stack.sandbox.url}/logout?service=`), authorizeUrl);
  assert.ok(sawLogin, "a fresh browser must sign in");

  // The popup page posts the result to the recorded origin only, and cannot be framed.
  assert.equal(final.res.status, 200);
  assert.match(final.text, /"origin":"https:\/\/acme\.example"/);
  assert.match(final.text, /"status":"connected"/);
  const connectionId = final.text.match(/"connection_id":"([^"]+)"/)[1];
  assert.match(final.res.headers.get("content-security-policy"), /frame-ancestors 'none'/);
  assert.equal(final.res.headers.get("x-frame-options"), "DENY");

  const list = await me("GET", "/connections", "user-1");
  assert.equal(list.status, 200);
  assert.equal(list.headers.get("access-control-allow-origin"), ORIGIN);
  assert.equal(list.json.connections.length, 1);
  const c = list.json.connections[0];
  assert.equal(c.id, connectionId);
  assert.equal(c.keap_app, "ab123");
  assert.deepEqual(c.keap_user, { email: "ann@ab123.example", name: "Ann Bee" });
  assert.equal(c.status, "active");
  assert.equal(c.refreshed_at, null);
  assert.equal(c.last_error, null);
  assert.ok(Date.parse(c.access_expires_at) > Date.now() + 23 * 3600e3);

  // The partner's back-end gets a token, and Keap accepts it.
  const tok = await call(stack.url, "POST", "/v1/token", { token: acme.api_key, body: { user: "user-1", keap_app: "ab123" } });
  assert.equal(tok.status, 200, tok.text);
  assert.equal(tok.json.keap_app, "ab123");
  assert.ok(Date.parse(tok.json.expires_at) > Date.now() + 60e3);
  const who = await fetch(`${stack.sandbox.url}/crm/rest/v1/oauth/connect/userinfo`, {
    headers: { authorization: `Bearer ${tok.json.access_token}` },
  });
  assert.equal(who.status, 200);
  assert.equal((await who.json()).email, "ann@ab123.example");
  // keap_app may be left out when the user has exactly one link.
  const tok2 = await call(stack.url, "POST", "/v1/token", { token: acme.api_key, body: { user: "user-1" } });
  assert.equal(tok2.status, 200);
  assert.equal(tok2.json.access_token, tok.json.access_token, "a fresh token is handed out as stored");

  const all = await call(stack.url, "GET", "/v1/connections", { token: acme.api_key });
  assert.equal(all.status, 200);
  assert.deepEqual(all.json.connections.map((x) => [x.user, x.id]), [["user-1", connectionId]]);
  assert.equal(all.json.cursor, null);

  const del = await me("DELETE", `/connections/${connectionId}`, "user-1");
  assert.equal(del.status, 204);
  assert.match(del.headers.get("link"), /^<https:\/\/.+>; rel="related"/);
  assert.equal((await me("GET", "/connections", "user-1")).json.connections.length, 0);
  const gone = await call(stack.url, "POST", "/v1/token", { token: acme.api_key, body: { user: "user-1" } });
  assert.equal(gone.status, 404);
  assert.equal(gone.json.error.code, "no_connection");
});

test("the SSO session outlives the flow: without the logout hop the next person lands on the last one's consent", async () => {
  const browser = new Browser();
  const first = await link("user-2", "bob@cd456.example", { browser });
  assert.ok(first.sawLogin);
  // Same browser, another partner user, hop on: Keap asks for a login again.
  const second = await link("user-3", "cat@ef789.example", { browser });
  assert.ok(second.sawLogin, "sign-out-first must force a login");
  assert.equal(second.consentFor, "cat@ef789.example");
  // Hop off: straight to the previous person's consent page.
  const res = await me("POST", "/connect", "user-4", { body: { sign_out_first: false } });
  assert.ok(res.json.authorize_url.startsWith(`${stack.sandbox.url}/app/oauth/authorize?`));
  const page = await browser.go(res.json.authorize_url);
  assert.match(page.text, /data-page="consent"/);
  assert.match(page.text, /cat@ef789\.example/);
});

test("connecting the same Keap app again replaces the link in place, same id", async () => {
  const a = await link("user-5", "ann@ab123.example");
  const idA = a.final.text.match(/"connection_id":"([^"]+)"/)[1];
  const [first] = (await me("GET", "/connections", "user-5")).json.connections;
  assert.equal(first.reconnected_at, null, "a first link was never reconnected");
  const before = Date.now();
  const b = await link("user-5", "ann@ab123.example");
  const idB = b.final.text.match(/"connection_id":"([^"]+)"/)[1];
  assert.equal(idA, idB);
  const list = await me("GET", "/connections", "user-5");
  assert.equal(list.json.connections.length, 1);
  // The first link's time stays; the reconnect has its own.
  const [again] = list.json.connections;
  assert.equal(again.connected_at, first.connected_at);
  assert.ok(Date.parse(again.reconnected_at) >= Math.floor(before / 1000) * 1000 - 1000, again.reconnected_at);
  const listed = (await call(stack.url, "GET", "/v1/connections", { token: acme.api_key })).json.connections.find((c) => c.id === idA);
  assert.equal(listed.reconnected_at, again.reconnected_at, "the partner's listing (KV metadata) says the same");
});

test("several apps: keap_app must be named; redirect mode returns to the allowed URL", async () => {
  await link("user-6", "ann@ab123.example");
  const res = await me("POST", "/connect", "user-6", { body: { return_to: RETURN } });
  assert.equal(res.status, 200);
  const journey = await linkThroughSandbox(new Browser(), stack.sandbox.url, res.json.authorize_url, { email: "bob@cd456.example" });
  assert.match(journey.final.location, new RegExp(`^${RETURN.replaceAll("/", "\\/").replaceAll(".", "\\.")}\\?keaplink=connected&connection_id=[A-Za-z0-9_-]{22}$`));
  // The 302 carries the Worker's headers like any other answer (workers-rs redirects did not).
  const h = journey.final.res.headers;
  assert.equal(journey.final.res.status, 302);
  assert.ok(h.get("x-request-id"), "x-request-id on the redirect");
  assert.equal(h.get("cache-control"), "no-store");
  assert.equal(h.get("referrer-policy"), "no-referrer");
  const amb = await call(stack.url, "POST", "/v1/token", { token: acme.api_key, body: { user: "user-6" } });
  assert.equal(amb.status, 409);
  assert.equal(amb.json.error.code, "ambiguous_connection");
  const named = await call(stack.url, "POST", "/v1/token", { token: acme.api_key, body: { user: "user-6", keap_app: "cd456" } });
  assert.equal(named.status, 200);
  assert.equal(named.json.keap_app, "cd456");
  // An app the user has no link in: the answer names the apps they do have links in.
  const wrong = await call(stack.url, "POST", "/v1/token", { token: acme.api_key, body: { user: "user-6", keap_app: "zz999" } });
  assert.equal(wrong.status, 404);
  assert.equal(wrong.json.error.code, "no_connection");
  assert.match(wrong.json.error.message, /no link in the Keap app zz999, but has links in: ab123, cd456\./);
  // The proxy's keaplink-app header reads the same way.
  const viaProxy = await call(stack.url, "GET", "/v1/keap/crm/rest/v2/contacts", { token: acme.api_key, headers: { "keaplink-user": "user-6", "keaplink-app": "zz999" } });
  assert.equal(viaProxy.status, 404);
  assert.match(viaProxy.json.error.message, /has links in: ab123, cd456/);
  // A user with no link at all still reads plainly.
  const none = await call(stack.url, "POST", "/v1/token", { token: acme.api_key, body: { user: "user-nobody", keap_app: "zz999" } });
  assert.equal(none.status, 404);
  assert.equal(none.json.error.message, "No such connection.");
  // A body that starts with a UTF-8 byte order mark (as some Windows tools write) is accepted.
  const bom = await call(stack.url, "POST", "/v1/token", {
    token: acme.api_key,
    headers: { "content-type": "application/json" },
    raw: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify({ user: "user-6", keap_app: "cd456" }))]),
  });
  assert.equal(bom.status, 200, bom.text);
  assert.equal(bom.json.keap_app, "cd456");
});

test("deny at Keap: the popup reports access_denied and nothing is stored", async () => {
  const res = await me("POST", "/connect", "user-7", { body: {} });
  const j = await linkThroughSandbox(new Browser(), stack.sandbox.url, res.json.authorize_url, { email: "ann@ab123.example", decision: "deny" });
  assert.match(j.final.text, /"status":"error"/);
  assert.match(j.final.text, /"error":"access_denied"/);
  assert.equal((await me("GET", "/connections", "user-7")).json.connections.length, 0);
});
