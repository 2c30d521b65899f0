// The partner examples in examples/ run against a real stack: each mints a session JWT the
// Worker accepts, calls Keap (the sandbox) through keaplink's proxy, gets an access token Keap
// accepts, and verifies webhook signatures made the way the Worker makes them
// (webhooks.test.mjs checks the Worker's side). The two Lambdas of examples/lambda do the same
// job with and without the proxy; their HTTP calls are counted here (docs/proxy.md quotes them).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, record, startStack } from "./harness.mjs";
import { call, linkUser, mintSession, putPartner } from "./client.mjs";

let stack;
let acme;
let env;
const PY = join(ROOT, "target", "py", "bin", "python");

before(async () => {
  stack = await startStack();
  acme = await putPartner(stack.url, "acme", { origins: ["https://acme.example"] });
  await linkUser(stack, acme, "u1", "ann@ab123.example");
  // A user id outside Latin-1 travels in keaplink-user as UTF-8 bytes.
  await linkUser(stack, acme, "zoë-日本", "bob@cd456.example");
  await linkUser(stack, acme, "lambda-user", "cat@ef789.example");
  env = {
    ...process.env,
    KEAPLINK_URL: stack.url,
    KEAPLINK_PARTNER_ID: "acme",
    KEAPLINK_SESSION_SECRET: acme.session_secret,
    KEAPLINK_API_KEY: acme.api_key,
    KEAP_API_URL: stack.sandbox.url,
  };
});
after(async () => { await stack?.stop(); });

function signed(body, t = Math.floor(Date.now() / 1000)) {
  const key = createHmac("sha256", acme.session_secret).update("keaplink-webhook-v1").digest();
  return `t=${t},v1=${createHmac("sha256", key).update(`${t}.${body}`).digest("hex")}`;
}

const run = (cmd, args) => {
  const out = spawnSync(cmd, args, { env, encoding: "utf8", timeout: 30_000 });
  return { status: out.status, text: `${out.stdout}${out.stderr}` };
};

/**
 * Runs `fn` with fetch counted by destination (keaplink or Keap); the Worker's answers are
 * recorded for the transcript checks, as client.mjs's are.
 */
async function counted(fn) {
  const real = globalThis.fetch;
  const calls = { keaplink: [], keap: [] };
  globalThis.fetch = async (url, init = {}) => {
    const u = new URL(url);
    const res = await real(url, init);
    if (u.origin === new URL(stack.url).origin) {
      calls.keaplink.push(`${init.method ?? "GET"} ${u.pathname}`);
      const copy = res.clone();
      record("answer", { method: init.method ?? "GET", path: u.pathname, status: res.status, headers: Object.fromEntries(res.headers), text: await copy.text() });
    } else {
      calls.keap.push(`${init.method ?? "GET"} ${u.pathname} → ${res.status}`);
    }
    return res;
  };
  try {
    return { result: await fn(), calls };
  } finally {
    globalThis.fetch = real;
  }
}

test("Node example: session JWT, a call through keaplink, an access token, webhook check", async () => {
  const cli = run(process.execPath, [join(ROOT, "examples", "partner-node", "keaplink.mjs"), "u1"]);
  assert.equal(cli.status, 0, cli.text);
  assert.match(cli.text, /through keaplink: Keap answered 200, tenant ab123, \d+ calls left today/);
  assert.match(cli.text, /keap_app ab123, access token \d+ chars/);
  const nobody = run(process.execPath, [join(ROOT, "examples", "partner-node", "keaplink.mjs"), "nobody"]);
  assert.equal(nobody.status, 2);
  assert.match(nobody.text, /keaplink said no_connection/);

  Object.assign(process.env, env);
  const ex = await import(join(ROOT, "examples", "partner-node", "keaplink.mjs"));
  const me = await call(stack.url, "GET", "/v1/me/connections", { token: await ex.sessionJwt("u1") });
  assert.equal(me.status, 200, me.text);
  assert.equal(me.json.connections.length, 1);
  const { result: made } = await counted(() => ex.callKeap("u1", "POST", "/crm/rest/v2/contacts", { body: { given_name: "Node", email_addresses: [{ email: "node@example.com", field: "EMAIL1" }] } }));
  assert.equal(made.status, 201);
  const { result: got } = await counted(() => ex.callKeap("u1", "GET", `/crm/rest/v2/contacts/${made.body.id}`));
  assert.equal(got.body.given_name, "Node");
  const { result: missing } = await counted(() => ex.callKeap("u1", "GET", "/crm/rest/v2/contacts/999999"));
  assert.equal(missing.status, 404, "Keap's own 404 is an answer, not an exception");
  const { result: who } = await counted(() => ex.callKeap("zoë-日本", "GET", "/crm/rest/v2/oauth/connect/userinfo"));
  assert.equal(who.body.tenant_id, "cd456", "a UTF-8 user id names its link");
  await assert.rejects(counted(() => ex.callKeap("u1", "GET", "/crm/rest/../../v1/token")), (e) => e.code === "invalid_keap_path");
  await assert.rejects(counted(() => ex.callKeap("nobody", "GET", "/crm/rest/v2/contacts")), (e) => e instanceof ex.KeaplinkError && e.code === "no_connection");

  const t = await ex.keapAccessToken("u1");
  const keapSays = await fetch(`${stack.sandbox.url}/crm/rest/v1/oauth/connect/userinfo`, { headers: { authorization: `Bearer ${t.access_token}` } });
  assert.equal(keapSays.status, 200, "Keap accepts the token");
  await assert.rejects(ex.keapAccessToken("nobody"), (e) => e instanceof ex.KeaplinkError && e.code === "no_connection" && e.status === 404);
  // Through the generated client too: a repair link for u1's connection, and its hosted page.
  const [mine] = (await call(stack.url, "GET", "/v1/connections", { token: env.KEAPLINK_API_KEY })).json.connections.filter((c) => c.user === "u1");
  const repair = await ex.repairLink(mine.id, { ttlSecs: 3_600 });
  assert.ok(repair.url.startsWith(`${stack.url}/link/`), repair.url);
  assert.ok(Math.abs(Date.parse(repair.expires_at) - Date.now() - 3_600_000) < 120_000, repair.expires_at);
  assert.equal((await fetch(repair.url)).status, 200, "the repair page opens");
  await assert.rejects(ex.repairLink(mine.id, { ttlSecs: 10 }), (e) => e.code === "invalid_request" && e.status === 400);
  await assert.rejects(ex.repairLink("AAAAAAAAAAAAAAAAAAAAAA"), (e) => e.code === "no_connection" && e.status === 404, "an id of no link");
  await assert.rejects(ex.repairLink("not-an-id"), (e) => e.code === "invalid_id" && e.status === 400);
  const body = '{"id":"evt_1","type":"connection.created"}';
  assert.equal(ex.verifyWebhook(body, signed(body)), true);
  assert.equal(ex.verifyWebhook(body + " ", signed(body)), false);
  assert.equal(ex.verifyWebhook(body, signed(body, Math.floor(Date.now() / 1000) - 600)), false, "replay window");
});

test("with an environment variable unset, each example names it instead of calling keaplink", () => {
  const node = [process.execPath, [join(ROOT, "examples", "partner-node", "keaplink.mjs"), "u1"]];
  const python = [PY, [join(ROOT, "examples", "partner-python", "keaplink.py"), "u1"]];
  for (const [cmd, args] of [node, python]) {
    for (const unset of [["KEAPLINK_API_KEY"], ["KEAPLINK_URL", "KEAPLINK_SESSION_SECRET"], ["KEAPLINK_PARTNER_ID"]]) {
      const without = { ...env };
      for (const n of unset) without[n] = "";
      const out = spawnSync(cmd, args, { env: without, encoding: "utf8", timeout: 30_000 });
      const text = `${out.stdout}${out.stderr}`;
      assert.equal(out.status, 1, `${cmd} without ${unset}: ${text}`);
      for (const n of unset) assert.match(out.stderr, new RegExp(`^  ${n}: `, "m"), `${cmd} names ${n}`);
      const named = [...out.stderr.matchAll(/^ {2}(KEAPLINK_[A-Z_]+): /gm)].map((m) => m[1]);
      assert.deepEqual(named.sort(), [...unset].sort(), "only the ones missing");
      assert.doesNotMatch(text, /invalid_api_key|missing_credentials|keaplink said/, "nothing was sent");
      assert.match(out.stderr, /Quick start/);
    }
  }
});

test("used as a library with a variable unset, the example's functions name it", async () => {
  const saved = process.env.KEAPLINK_API_KEY;
  Object.assign(process.env, env);
  delete process.env.KEAPLINK_API_KEY;
  try {
    // A fresh module instance: the example reads its environment when imported.
    const ex = await import(`${join(ROOT, "examples", "partner-node", "keaplink.mjs")}?unset=${Date.now()}`);
    await assert.rejects(ex.callKeap("u1", "GET", "/crm/rest/v2/contacts"), /set KEAPLINK_API_KEY \(your partner's api_key/);
    await assert.rejects(ex.keapAccessToken("u1"), /set KEAPLINK_API_KEY/);
    assert.ok((await ex.sessionJwt("u1")).split(".").length === 3, "what needs no API key still works");
  } finally {
    if (saved === undefined) delete process.env.KEAPLINK_API_KEY;
    else process.env.KEAPLINK_API_KEY = saved;
  }
  const py = spawnSync(PY, ["-c", "import sys; sys.path.insert(0, sys.argv[1]); import keaplink\ntry:\n    keaplink.keap_access_token('u1')\nexcept RuntimeError as e:\n    print(e)", join(ROOT, "examples", "partner-python")], { env: { ...env, KEAPLINK_API_KEY: "" }, encoding: "utf8" });
  assert.match(py.stdout, /^set KEAPLINK_API_KEY \(your partner's api_key/, py.stderr);
});

test("Python example (PyJWT): session JWT, a call through keaplink, an access token, webhook check", async () => {
  const cli = run(PY, [join(ROOT, "examples", "partner-python", "keaplink.py"), "u1"]);
  assert.equal(cli.status, 0, cli.text);
  assert.match(cli.text, /through keaplink: Keap answered 200, tenant ab123, \d+ calls left today/);
  assert.match(cli.text, /keap_app ab123, access token \d+ chars/);
  const nobody = run(PY, [join(ROOT, "examples", "partner-python", "keaplink.py"), "nobody"]);
  assert.equal(nobody.status, 2);
  assert.match(nobody.text, /keaplink said no_connection/);
  const py = (code, ...args) => run(PY, ["-c", `import sys, json; sys.path.insert(0, sys.argv[1]); import keaplink\n${code}`, join(ROOT, "examples", "partner-python"), ...args]);
  const roundTrip = py([
    "s, made, _ = keaplink.call_keap('u1', 'POST', '/crm/rest/v2/contacts', {'given_name': 'Py', 'email_addresses': [{'email': 'py@example.com', 'field': 'EMAIL1'}]})",
    "g, got, _ = keaplink.call_keap('u1', 'GET', f\"/crm/rest/v2/contacts/{made['id']}\")",
    "m, _, _ = keaplink.call_keap('u1', 'GET', '/crm/rest/v2/contacts/999999')",
    "w, who, _ = keaplink.call_keap(sys.argv[2], 'GET', '/crm/rest/v2/oauth/connect/userinfo')",
    "try:\n    keaplink.call_keap('u1', 'GET', '/crm/rest/v1/contacts%2f..%2f..%2ftoken')\nexcept keaplink.KeaplinkError as e:\n    bad = e.code",
    "print(json.dumps([s, got['given_name'], m, who['tenant_id'], bad]))",
  ].join("\n"), "zoë-日本");
  assert.equal(roundTrip.status, 0, roundTrip.text);
  assert.deepEqual(JSON.parse(roundTrip.text.trim().split("\n").at(-1)), [201, "Py", 404, "cd456", "invalid_keap_path"]);
  const jwt = py("print(keaplink.session_jwt('u1'))");
  assert.equal(jwt.status, 0, jwt.text);
  const me = await call(stack.url, "GET", "/v1/me/connections", { token: jwt.text.trim() });
  assert.equal(me.status, 200, me.text);
  const body = '{"id":"evt_2","type":"connection.deleted"}';
  const check = (b, sig) => py("print(keaplink.verify_webhook(sys.argv[2].encode(), sys.argv[3]))", b, sig).text.trim();
  assert.equal(check(body, signed(body)), "True");
  assert.equal(check(body, signed(body + "x")), "False");
});

test("Keap's events in both examples: subscribe a link, then receive each event once", async () => {
  Object.assign(process.env, env);
  const ex = await import(join(ROOT, "examples", "partner-node", "keaplink.mjs"));
  const [mine] = (await call(stack.url, "GET", "/v1/connections", { token: env.KEAPLINK_API_KEY })).json.connections.filter((c) => c.user === "u1");
  const sub = await ex.subscribeKeapEvents(mine.id, ["contact.add"]);
  assert.deepEqual(sub.hooks.map((h) => [h.event_key, h.status]), [["contact.add", "verified"]]);
  await assert.rejects(ex.subscribeKeapEvents(mine.id, ["contact.explode"]), (e) => e.code === "invalid_request" && e.status === 400);
  const body = JSON.stringify({ id: "evt_k1", type: "keap.contact.add", connection: { id: mine.id }, keap_event: { event_key: "contact.add", object_type: "contact", object_keys: [{ id: 5 }] } });
  const seen = new Set();
  const handled = [];
  const opts = { seen, onKeapEvent: (e) => handled.push(e.keap_event.object_keys[0].id) };
  assert.equal((await ex.receiveWebhook(body, { "keaplink-signature": signed(body) }, opts)).status, 200);
  assert.equal((await ex.receiveWebhook(body, { "keaplink-signature": signed(body) }, opts)).duplicate, true, "a retry");
  assert.equal((await ex.receiveWebhook(body, { "keaplink-signature": signed(`${body} `) }, opts)).status, 401);
  assert.deepEqual(handled, [5], "handled once");

  const py = (code, ...args) => run(PY, ["-c", `import sys, json; sys.path.insert(0, sys.argv[1]); import keaplink\n${code}`, join(ROOT, "examples", "partner-python"), ...args]);
  const pySub = py("print(json.dumps(keaplink.subscribe_keap_events(sys.argv[2], ['contact.add', 'invoice.add'], hydrate=True)))", mine.id);
  assert.equal(pySub.status, 0, pySub.text);
  const subbed = JSON.parse(pySub.text.trim().split("\n").at(-1));
  assert.deepEqual(subbed.hooks.map((h) => h.status), ["verified", "verified"]);
  assert.equal(subbed.hydrate, true);
  const pyRecv = py([
    "seen, got = set(), []",
    "b, sig = sys.argv[2].encode(), sys.argv[3]",
    "a = keaplink.receive_webhook(b, {'keaplink-signature': sig}, seen, on_keap_event=lambda e: got.append(e['type']))",
    "r = keaplink.receive_webhook(b, {'keaplink-signature': sig}, seen, on_keap_event=lambda e: got.append(e['type']))",
    "x = keaplink.receive_webhook(b + b' ', {'keaplink-signature': sig}, seen)",
    "print(json.dumps([a, r, x, got]))",
  ].join("\n"), body, signed(body));
  assert.equal(pyRecv.status, 0, pyRecv.text);
  assert.deepEqual(JSON.parse(pyRecv.text.trim().split("\n").at(-1)), [200, 200, 401, ["keap.contact.add"]]);
  assert.deepEqual((await ex.subscribeKeapEvents(mine.id, [])).hooks, [], "unsubscribed");
});

/** Lines of code: neither blank nor only a comment. */
const loc = (file) => readFileSync(join(ROOT, "examples", "lambda", file), "utf8").split("\n").filter((l) => l.trim() && !l.trim().startsWith("//")).length;

test("the Lambda before and after the proxy: same results, fewer calls, and the stale token healed for it", async (t) => {
  Object.assign(process.env, env);
  const before = await import(join(ROOT, "examples", "lambda", "before.mjs"));
  const after = await import(join(ROOT, "examples", "lambda", "after.mjs"));
  const user = "lambda-user";
  const rows = [];
  const runBoth = async (label, event, prepare) => {
    const out = {};
    for (const [name, mod] of [["before", before], ["after", after]]) {
      if (prepare) await prepare();
      const { result, calls } = await counted(() => mod.handler(event(name)));
      out[name] = { result, calls };
    }
    rows.push(`${label}: before ${out.before.calls.keaplink.length + out.before.calls.keap.length} calls (${out.before.calls.keaplink.length} to keaplink, ${out.before.calls.keap.length} to Keap), after ${out.after.calls.keaplink.length + out.after.calls.keap.length} (to keaplink only)`);
    return out;
  };

  const fresh = await runBoth("new contact", (n) => ({ user, email: `${n}@example.com`, givenName: n }));
  for (const n of ["before", "after"]) assert.equal(fresh[n].result.created, true, JSON.stringify(fresh[n]));
  assert.deepEqual(fresh.before.calls.keaplink, ["POST /v1/token"]);
  assert.equal(fresh.before.calls.keap.length, 2);
  assert.deepEqual(fresh.after.calls.keaplink, ["GET /v1/keap/crm/rest/v2/contacts", "POST /v1/keap/crm/rest/v2/contacts"]);
  assert.equal(fresh.after.calls.keap.length, 0, "the proxied Lambda never talks to Keap itself");

  const known = await runBoth("existing contact", (n) => ({ user, email: `${n}@example.com`, givenName: n }));
  for (const n of ["before", "after"]) assert.deepEqual(known[n].result, { contactId: fresh[n].result.contactId, created: false });

  // Keap revoked the access token KV still holds.
  const stale = await runBoth("revoked token, new contact", (n) => ({ user, email: `${n}.2@example.com`, givenName: n }), () => stack.sandbox.revokeAccess("cat@ef789.example"));
  for (const n of ["before", "after"]) assert.equal(stale[n].result.created, true, JSON.stringify(stale[n]));
  assert.deepEqual(stale.before.calls.keaplink, ["POST /v1/token", "GET /v1/connections", "POST /v1/connections/" + stale.before.calls.keaplink[2].split("/")[3] + "/refresh", "POST /v1/token"]);
  assert.match(stale.before.calls.keap[0], /→ 401$/);
  assert.equal(stale.after.calls.keaplink.length, 2, "the heal happened inside keaplink");

  const lines = { before: loc("before.mjs"), after: loc("after.mjs") };
  assert.ok(lines.after < lines.before);
  t.diagnostic(`lines of code: before ${lines.before}, after ${lines.after}`);
  for (const r of rows) t.diagnostic(r);
});
