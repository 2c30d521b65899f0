// What an attacker who can read the KV namespace gets: every value, key and metadata of a
// Worker that linked, refreshed and has a flow in progress, read raw from its local KV. No Keap
// token, client secret, partner secret, API key, session JWT or OAuth state is there in clear.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ADMIN_TOKEN, CLIENT_SECRET, startStack, TOKEN_KEY } from "./harness.mjs";
import { call, linkUser, mintSession, putPartner } from "./client.mjs";
import { withLocalKv } from "./seed.mjs";

let stack;
let kvDir;

before(async () => {
  kvDir = await mkdtemp(join(tmpdir(), "keaplink-at-rest-"));
  // Tokens live 90 s with a 100 s margin: every token request refreshes (and Keap rotates).
  stack = await startStack({ persistTo: kvDir, workerVars: { REFRESH_MARGIN_SECS: "100" }, sandbox: { expiresIn: 90 } });
});
after(async () => {
  await stack?.stop();
  await rm(kvDir, { recursive: true, force: true });
});

test("KV holds no secret and no token in clear", async () => {
  const acme = await putPartner(stack.url, "acme", { origins: ["https://acme.example"], returnUrls: ["https://acme.example/settings"] });
  const jwts = [];
  for (const [user, email] of [["u1", "ann@ab123.example"], ["u2", "bob@cd456.example"]]) {
    const jwt = await mintSession(acme, user);
    jwts.push(jwt);
    await linkUser(stack, acme, user, email, { origin: "https://acme.example" });
  }
  const handedOut = await call(stack.url, "POST", "/v1/token", { token: acme.api_key, body: { user: "u1" } });
  assert.equal(handedOut.status, 200, handedOut.text);
  // A flow in progress: its state sits in KV until the callback.
  const pending = await call(stack.url, "POST", "/v1/me/connect", { token: jwts[1], headers: { origin: "https://acme.example" }, body: { sign_out_first: false } });
  const state = new URL(pending.json.authorize_url).searchParams.get("state");
  assert.equal(state.length, 43);

  const issued = await (await fetch(`${stack.sandbox.url}/__sandbox/issued`)).json();
  const stats = await stack.sandbox.stats();
  assert.ok((stats.calls.token_refresh ?? 0) >= 1, "a refresh rotated the tokens");
  await stack.worker.stop();

  const dump = [];
  await withLocalKv(kvDir, async (kv) => {
    let cursor;
    do {
      const page = await kv.list({ cursor });
      for (const k of page.keys) dump.push({ key: k.name, metadata: JSON.stringify(k.metadata ?? null), value: await kv.get(k.name) });
      cursor = page.list_complete ? undefined : page.cursor;
    } while (cursor);
  });
  const prefixes = new Set(dump.map((e) => e.key.split("/")[0]));
  for (const p of ["p", "c", "i", "s"]) assert.ok(prefixes.has(p), `KV has ${p}/ entries: ${[...prefixes]}`);
  const raw = dump.map((e) => `${e.key}\n${e.metadata}\n${e.value}`).join("\n");

  const secrets = {
    "an access token": issued.access_tokens,
    "a refresh token": issued.refresh_tokens,
    "the handed-out access token": [handedOut.json.access_token],
    "the client secret": [CLIENT_SECRET],
    "the admin token": [ADMIN_TOKEN],
    "a TOKEN_KEYS key": [TOKEN_KEY, Buffer.from(TOKEN_KEY, "base64").toString("base64url")],
    "the partner's API key": [acme.api_key, acme.api_key.split(".")[2]],
    "the partner's session secret": [acme.session_secret],
    "a session JWT": jwts,
    "an OAuth state": [state],
  };
  assert.ok(issued.access_tokens.length >= 3 && issued.refresh_tokens.length >= 3);
  for (const [what, values] of Object.entries(secrets)) {
    for (const v of values) assert.ok(!raw.includes(v), `${what} is in KV in clear`);
  }
  // Keap account identity is stored in clear on purpose (listing needs it): say so here.
  assert.ok(raw.includes("ann@ab123.example"), "identity (not a secret) is readable for listings");
});
