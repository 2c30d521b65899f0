// The browser-facing surface: the callback page cannot be framed and runs only its pinned
// script, posts its result to the recorded origin alone (or nowhere), every redirect goes to an
// exact allow-listed URL, and CORS never grants `*` to anything that carries credentials.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
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

async function connect(user, { origin = ORIGIN, body = {}, query = "" } = {}) {
  const headers = origin ? { origin } : {};
  return call(stack.url, "POST", `/v1/me/connect${query}`, { token: await mintSession(acme, user), headers, body });
}

/** Checks the callback page's headers, and that its CSP pins exactly the one script it has. */
function assertLockedDown(res, html) {
  const csp = res.headers.get("content-security-policy");
  const directives = Object.fromEntries(csp.split(";").map((d) => d.trim().split(/\s+/)).map(([k, ...v]) => [k, v]));
  assert.deepEqual(directives["default-src"], ["'none'"]);
  assert.deepEqual(directives["frame-ancestors"], ["'none'"]);
  assert.deepEqual(directives["base-uri"], ["'none'"]);
  assert.deepEqual(directives["form-action"], ["'none'"]);
  assert.equal(directives["script-src"].length, 1);
  assert.ok(!csp.includes("unsafe-eval") && !/script-src[^;]*unsafe-inline/.test(csp), csp);
  assert.equal(res.headers.get("x-frame-options"), "DENY");
  assert.equal(res.headers.get("x-content-type-options"), "nosniff");
  assert.equal(res.headers.get("referrer-policy"), "no-referrer");
  assert.equal(res.headers.get("cache-control"), "no-store");
  assert.equal(res.headers.get("access-control-allow-origin"), null);
  const scripts = [...html.matchAll(/<script(?![^>]*type="application\/json")[^>]*>([\s\S]*?)<\/script>/g)].map((m) => m[1]);
  assert.ok(scripts.length <= 1, "one script at most");
  if (scripts.length === 1) {
    const hash = createHash("sha256").update(scripts[0]).digest("base64");
    assert.deepEqual(directives["script-src"], [`'sha256-${hash}'`], "the CSP pins the page's script");
  }
}

const payloadOf = (html) => {
  const m = html.match(/<script type="application\/json" id="keaplink-result">([\s\S]*?)<\/script>/);
  return m ? JSON.parse(m[1]) : null;
};

test("callback pages (connected, denied, bad state) are locked down and post only to the recorded origin", async () => {
  const ok = await connect("u1");
  const linked = await linkThroughSandbox(new Browser(), stack.sandbox.url, ok.json.authorize_url, { email: "ann@ab123.example" });
  assertLockedDown(linked.final.res, linked.final.text);
  const p = payloadOf(linked.final.text);
  assert.equal(p.origin, ORIGIN, "posted to the widget's own origin, never '*'");
  assert.equal(p.message.status, "connected");

  const no = await connect("u2");
  const denied = await linkThroughSandbox(new Browser(), stack.sandbox.url, no.json.authorize_url, { email: "bob@cd456.example", decision: "deny" });
  assertLockedDown(denied.final.res, denied.final.text);
  assert.equal(payloadOf(denied.final.text).origin, ORIGIN);

  const bad = await call(stack.url, "GET", `/oauth/callback?code=x&state=${"A".repeat(43)}`);
  assert.equal(bad.status, 400);
  assertLockedDown(bad, bad.text);
  assert.equal(payloadOf(bad.text), null, "an untrusted callback posts nothing");
});

test("a flow started without an Origin (server-side) posts its result nowhere", async () => {
  const res = await connect("u3", { origin: null });
  assert.equal(res.status, 200, res.text);
  const linked = await linkThroughSandbox(new Browser(), stack.sandbox.url, res.json.authorize_url, { email: "ann@ab123.example" });
  assert.match(linked.final.text, /Keap connected/);
  assert.equal(payloadOf(linked.final.text), null);
  assertLockedDown(linked.final.res, linked.final.text);
});

test("the authorize URL is built from configuration only: no caller input reaches service, redirect_uri or the host", async () => {
  const expectedRedirect = `${stack.url}/oauth/callback`;
  // In the query: refused by name (the endpoint takes no query parameter), so nothing reaches
  // the URL; the URL a connect does answer is built from configuration alone.
  for (const [query, name] of [
    [`?service=${encodeURIComponent("https://evil.example/")}`, "service"],
    [`?redirect_uri=${encodeURIComponent("https://evil.example/cb")}&authorize_url=https://evil.example`, "redirect_uri"],
  ]) {
    const res = await connect("u4", { query });
    assert.equal(res.status, 400, res.text);
    assert.equal(res.json.error.code, "invalid_request");
    assert.match(res.json.error.message, new RegExp(`Unknown query parameter \`${name}\``));
  }
  {
    const res = await connect("u4");
    assert.equal(res.status, 200, res.text);
    const hop = new URL(res.json.authorize_url);
    assert.equal(`${hop.origin}${hop.pathname}`, `${stack.sandbox.url}/logout`);
    assert.deepEqual([...hop.searchParams.keys()], ["service"]);
    const authorize = new URL(hop.searchParams.get("service"));
    assert.equal(`${authorize.origin}${authorize.pathname}`, `${stack.sandbox.url}/app/oauth/authorize`);
    assert.equal(authorize.searchParams.get("redirect_uri"), expectedRedirect);
    assert.equal(authorize.searchParams.getAll("redirect_uri").length, 1);
  }
  for (const body of [{ service: "https://evil.example/" }, { redirect_uri: "https://evil.example/" }]) {
    const res = await connect("u4", { body });
    assert.equal(res.status, 400);
    assert.equal(res.json.error.code, "invalid_request");
  }
});

test("return_to: only the exact registered URL, whatever the encoding trick; the redirect goes exactly there", async () => {
  const tricks = [
    "https://acme.example/settings/", "https://acme.example/settings?next=https://evil.example",
    "https://acme.example/settings#x", "https://ACME.example/settings", "HTTPS://acme.example/settings",
    "https://acme.example:443/settings", "https://acme.example/./settings", "https://acme.example/x/../settings",
    "https://acme.example/settings%2F..%2F..%2Fevil", "https://acme.example%2F@evil.example/settings",
    "https://acme.example@evil.example/settings", "https://evil.example\\@acme.example/settings",
    "https://evil.example/https://acme.example/settings", "//acme.example/settings", "/settings",
    "https://acme.example/settings\n", " https://acme.example/settings", "https://acme.example/settings\u0000",
    "https://acme.example.evil.example/settings", "http://acme.example/settings", "javascript://acme.example/settings",
  ];
  for (const return_to of tricks) {
    const res = await connect("u5", { body: { return_to } });
    assert.equal(res.status, 400, `${JSON.stringify(return_to)} → ${res.status}`);
    assert.equal(res.json.error.code, "return_url_not_allowed");
  }
  const res = await connect("u5", { body: { return_to: RETURN } });
  assert.equal(res.status, 200);
  const j = await linkThroughSandbox(new Browser(), stack.sandbox.url, res.json.authorize_url, { email: "ann@ab123.example" });
  assert.equal(j.final.res.status, 302);
  // Exactly the registered URL, plus the outcome and which link it was.
  const back = new URL(j.final.location);
  assert.equal(`${back.origin}${back.pathname}`, RETURN);
  assert.deepEqual([...back.searchParams.keys()], ["keaplink", "connection_id"]);
  assert.equal(back.searchParams.get("keaplink"), "connected");
});

test("CORS: the exact allowed origin is echoed (never *), others get nothing; back-end endpoints grant no origin", async () => {
  const session = await mintSession(acme, "u1");
  for (const [method, path] of [["GET", "/v1/me/connections"], ["POST", "/v1/me/connect"]]) {
    const ok = await call(stack.url, method, path, { token: session, headers: { origin: ORIGIN }, body: method === "POST" ? {} : undefined });
    assert.equal(ok.headers.get("access-control-allow-origin"), ORIGIN);
    assert.match(ok.headers.get("vary") ?? "", /origin/i);
    for (const origin of ["https://evil.example", "null", "https://acme.example.evil.example", "http://acme.example", "https://acme.example:8443"]) {
      const no = await call(stack.url, method, path, { token: session, headers: { origin }, body: method === "POST" ? {} : undefined });
      assert.equal(no.status, 403, `${origin}: ${no.status}`);
      assert.equal(no.headers.get("access-control-allow-origin"), null);
    }
    const pre = await call(stack.url, "OPTIONS", path, { headers: { origin: ORIGIN, "access-control-request-method": method } });
    assert.equal(pre.headers.get("access-control-allow-origin"), ORIGIN);
    assert.notEqual(pre.headers.get("access-control-allow-credentials"), "true", "no cookies are ever accepted");
    const badPre = await call(stack.url, "OPTIONS", path, { headers: { origin: "https://evil.example", "access-control-request-method": method } });
    assert.equal(badPre.headers.get("access-control-allow-origin"), null);
  }
  const token = await call(stack.url, "POST", "/v1/token", { token: acme.api_key, headers: { origin: ORIGIN }, body: { user: "u1" } });
  assert.equal(token.status, 200);
  assert.equal(token.headers.get("access-control-allow-origin"), null, "the API key endpoints are not for browsers");
  // The widget's files are public (`*`), and carry no credentials grant.
  const asset = await fetch(`${stack.url}/widget/keap-link.js`, { headers: { origin: ORIGIN } });
  assert.equal(asset.status, 200);
  assert.equal(asset.headers.get("access-control-allow-origin"), "*");
  assert.equal(asset.headers.get("access-control-allow-credentials"), null);
});
