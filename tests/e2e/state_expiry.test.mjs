// A state older than 10 minutes is refused at the callback and stores nothing. The state's
// record is aged in the stopped Worker's local KV (no clock in the Worker to move).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startStack } from "./harness.mjs";
import { Browser, call, hiddenInputs, mintSession, putPartner } from "./client.mjs";
import { withLocalKv } from "./seed.mjs";

let stack;
let kvDir;
before(async () => {
  kvDir = await mkdtemp(join(tmpdir(), "keaplink-state-"));
  stack = await startStack({ persistTo: kvDir });
});
after(async () => {
  await stack?.stop();
  await rm(kvDir, { recursive: true, force: true });
});

test("an expired state (over 10 minutes) stores nothing and says so", async () => {
  const acme = await putPartner(stack.url, "acme", { origins: ["https://acme.example"] });
  const session = await mintSession(acme, "late-user");
  const res = await call(stack.worker.url, "POST", "/v1/me/connect", { token: session, headers: { origin: "https://acme.example" }, body: { sign_out_first: false } });
  const state = new URL(res.json.authorize_url).searchParams.get("state");

  // Walk to Keap's consent page, then let 11 minutes pass for the state before approving.
  const browser = new Browser();
  let page = await browser.go(res.json.authorize_url);
  page = await browser.go(`${stack.sandbox.url}/app/oauth/login`, { form: { ...hiddenInputs(page.text), email: "ann@ab123.example", password: "keap" } });
  assert.match(page.text, /data-page="consent"/);
  await stack.worker.stop();
  const key = `s/${createHash("sha256").update(state).digest("base64url")}`;
  await withLocalKv(kvDir, async (kv) => {
    const link = JSON.parse(await kv.get(key));
    link.created_at -= 11 * 60;
    await kv.put(key, JSON.stringify(link));
  });
  await stack.restartWorker();

  const final = await browser.go(`${stack.sandbox.url}/app/oauth/consent`, { form: { ...hiddenInputs(page.text), decision: "allow" } });
  assert.equal(final.res.status, 400);
  assert.match(final.text, /expired/);
  assert.doesNotMatch(final.text, /postMessage\(/);
  const mine = await call(stack.worker.url, "GET", "/v1/me/connections", { token: session });
  assert.deepEqual(mine.json.connections, []);
  assert.equal((await stack.sandbox.stats()).calls.token_code ?? 0, 0, "the code was never exchanged");
});
