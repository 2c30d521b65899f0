// TOKEN_KEYS rotation across a restart on the same KV: records sealed under the old key still
// open, new ones are sealed under the new first key, and the old key alone can no longer open them.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startStack, TOKEN_KEY } from "./harness.mjs";
import { Browser, call, linkThroughSandbox, mintSession, putPartner } from "./client.mjs";

let stack;
let kvDir;
let acme;
const NEW_KEY = randomBytes(32).toString("base64");

before(async () => {
  kvDir = await mkdtemp(join(tmpdir(), "keaplink-rotation-"));
  stack = await startStack({ persistTo: kvDir });
  acme = await putPartner(stack.url, "acme", { origins: ["https://acme.example"] });
});
after(async () => {
  await stack?.stop();
  await rm(kvDir, { recursive: true, force: true });
});

async function link(user, email) {
  const res = await call(stack.worker.url, "POST", "/v1/me/connect", { token: await mintSession(acme, user), body: {} });
  const j = await linkThroughSandbox(new Browser(), stack.sandbox.url, res.json.authorize_url, { email });
  assert.match(j.final.text, /Keap connected/);
}

const token = (user) => call(stack.worker.url, "POST", "/v1/token", { token: acme.api_key, body: { user } });

test("a new first key seals new records while old ones still open; the old key alone cannot open new ones", async () => {
  await link("old-user", "ann@ab123.example");
  const before = await token("old-user");
  assert.equal(before.status, 200);

  await stack.restartWorker({ TOKEN_KEYS: `${NEW_KEY},${TOKEN_KEY}` });
  const still = await token("old-user");
  assert.equal(still.status, 200, still.text);
  assert.equal(still.json.access_token, before.json.access_token);
  // The partner's session secret (sealed too) still opens: sessions keep working.
  await link("new-user", "bob@cd456.example");
  assert.equal((await token("new-user")).status, 200);

  // Only the old key: the new record is refused as a server-side fault, never half-read.
  await stack.restartWorker({ TOKEN_KEYS: TOKEN_KEY });
  const refused = await token("new-user");
  assert.equal(refused.status, 500);
  assert.equal(refused.json.error.code, "internal");
  assert.ok(!refused.text.includes(NEW_KEY));
  assert.equal((await token("old-user")).status, 200);
});
