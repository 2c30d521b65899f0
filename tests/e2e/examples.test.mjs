// The partner examples in examples/ run against a real stack: each mints a session JWT the
// Worker accepts, gets an access token the sandbox (Keap) accepts, and verifies webhook
// signatures made the way the Worker makes them (webhooks.test.mjs checks the Worker's side).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { join } from "node:path";
import { ROOT, startStack } from "./harness.mjs";
import { Browser, call, linkThroughSandbox, mintSession, putPartner } from "./client.mjs";

let stack;
let acme;
let env;
const PY = join(ROOT, "target", "py", "bin", "python");

before(async () => {
  stack = await startStack();
  acme = await putPartner(stack.url, "acme", { origins: ["https://acme.example"] });
  const res = await call(stack.url, "POST", "/v1/me/connect", { token: await mintSession(acme, "u1"), body: {} });
  const j = await linkThroughSandbox(new Browser(), stack.sandbox.url, res.json.authorize_url, { email: "ann@ab123.example" });
  assert.match(j.final.text, /Keap connected/);
  env = {
    ...process.env,
    KEAPLINK_URL: stack.url,
    KEAPLINK_PARTNER_ID: "acme",
    KEAPLINK_SESSION_SECRET: acme.session_secret,
    KEAPLINK_API_KEY: acme.api_key,
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

test("Node example: session JWT, access token, webhook check", async () => {
  const cli = run(process.execPath, [join(ROOT, "examples", "partner-node", "keaplink.mjs"), "u1"]);
  assert.equal(cli.status, 0, cli.text);
  assert.match(cli.text, /keap_app ab123, access token \d+ chars/);
  assert.equal(run(process.execPath, [join(ROOT, "examples", "partner-node", "keaplink.mjs"), "nobody"]).status, 2);

  Object.assign(process.env, env);
  const ex = await import(join(ROOT, "examples", "partner-node", "keaplink.mjs"));
  const me = await call(stack.url, "GET", "/v1/me/connections", { token: await ex.sessionJwt("u1") });
  assert.equal(me.status, 200, me.text);
  assert.equal(me.json.connections.length, 1);
  const t = await ex.keapAccessToken("u1");
  const who = await fetch(`${stack.sandbox.url}/crm/rest/v1/oauth/connect/userinfo`, { headers: { authorization: `Bearer ${t.access_token}` } });
  assert.equal(who.status, 200, "Keap accepts the token");
  await assert.rejects(ex.keapAccessToken("nobody"), (e) => e.code === "no_connection");
  const body = '{"id":"evt_1","type":"connection.created"}';
  assert.equal(ex.verifyWebhook(body, signed(body)), true);
  assert.equal(ex.verifyWebhook(body + " ", signed(body)), false);
  assert.equal(ex.verifyWebhook(body, signed(body, Math.floor(Date.now() / 1000) - 600)), false, "replay window");
});

test("Python example (PyJWT): session JWT, access token, webhook check", async () => {
  const cli = run(PY, [join(ROOT, "examples", "partner-python", "keaplink.py"), "u1"]);
  assert.equal(cli.status, 0, cli.text);
  assert.match(cli.text, /keap_app ab123, access token \d+ chars/);
  const jwt = run(PY, ["-c", "import sys; sys.path.insert(0, sys.argv[1]); import keaplink; print(keaplink.session_jwt('u1'))", join(ROOT, "examples", "partner-python")]);
  assert.equal(jwt.status, 0, jwt.text);
  const me = await call(stack.url, "GET", "/v1/me/connections", { token: jwt.text.trim() });
  assert.equal(me.status, 200, me.text);
  const body = '{"id":"evt_2","type":"connection.deleted"}';
  const check = (b, sig) => run(PY, ["-c", "import sys; sys.path.insert(0, sys.argv[1]); import keaplink; print(keaplink.verify_webhook(sys.argv[2].encode(), sys.argv[3]))", join(ROOT, "examples", "partner-python"), b, sig]).text.trim();
  assert.equal(check(body, signed(body)), "True");
  assert.equal(check(body, signed(body + "x")), "False");
});
