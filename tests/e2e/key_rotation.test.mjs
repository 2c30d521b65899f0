// TOKEN_KEYS rotation across a restart on the same KV: records sealed under the old key still
// open, new ones are sealed under the new first key, and the old key alone can no longer open
// them. Then the README's procedure: re-seal everything (POST /v1/admin/reseal), remove the old key.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { createHash, randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ADMIN_TOKEN, startStack, TOKEN_KEY } from "./harness.mjs";
import { withLocalKv } from "./seed.mjs";
import { call, linkUser, mintSession, putPartner } from "./client.mjs";

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

const link = (user, email) => linkUser(stack, acme, user, email);

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

/** A key's public id, as keaplink-core names it: base64url(SHA-256("keaplink-key-id:" + key))[0..6 bytes]. */
const keyId = (b64) =>
  createHash("sha256").update(Buffer.concat([Buffer.from("keaplink-key-id:"), Buffer.from(b64, "base64")])).digest().subarray(0, 6).toString("base64url");

/** Every sealed blob in the stopped Worker's KV, by key id. */
async function sealedBlobs() {
  const byKey = {};
  await withLocalKv(kvDir, async (kv) => {
    for (const prefix of ["p/", "c/"]) {
      for (const { name } of (await kv.list({ prefix })).keys) {
        const v = JSON.parse(await kv.get(name));
        const blob = prefix === "p/" ? v.session_secret : v.tokens;
        const id = blob.split(".")[1];
        (byKey[id] ??= []).push(name);
      }
    }
  });
  return byKey;
}

async function resealWalk() {
  const pages = [];
  let cursor = "";
  do {
    const q = cursor ? `?limit=1&cursor=${encodeURIComponent(cursor)}` : "?limit=1";
    const res = await call(stack.worker.url, "POST", `/v1/admin/reseal${q}`, { token: ADMIN_TOKEN });
    assert.equal(res.status, 200, res.text);
    pages.push(res.json);
    cursor = res.json.cursor;
  } while (cursor);
  const sum = (k) => pages.reduce((s, p) => s + p[k], 0);
  return { resealed: sum("resealed"), current: sum("current"), unreadable: sum("unreadable"), pages: pages.length };
}

test("the documented rotation: add a new first key, re-seal everything, remove the old key", async () => {
  // Where the first test left it: records under the old key (old-user, the partner) and the
  // new one (new-user).
  await stack.restartWorker({ TOKEN_KEYS: `${NEW_KEY},${TOKEN_KEY}` });
  const before = await token("old-user");
  assert.equal(before.status, 200, before.text);

  // Admin only.
  const anon = await call(stack.worker.url, "POST", "/v1/admin/reseal", { token: acme.api_key });
  assert.equal(anon.status, 401);
  assert.equal((await call(stack.worker.url, "POST", "/v1/admin/reseal?cursor=zz", { token: ADMIN_TOKEN })).json.error.code, "invalid_cursor");

  const first = await resealWalk();
  assert.deepEqual({ ...first, pages: undefined }, { resealed: 2, current: 1, unreadable: 0, pages: undefined }, "the partner and old-user moved, new-user already was");
  const again = await resealWalk();
  assert.deepEqual({ ...again, pages: undefined }, { resealed: 0, current: 3, unreadable: 0, pages: undefined }, "a second walk finds nothing to do");

  await stack.worker.stop();
  const blobs = await sealedBlobs();
  assert.deepEqual(Object.keys(blobs), [keyId(NEW_KEY)], `every blob under the new key: ${JSON.stringify(blobs)}`);

  // The old key removed: everything still works, with the same tokens.
  await stack.restartWorker({ TOKEN_KEYS: NEW_KEY });
  const after = await token("old-user");
  assert.equal(after.status, 200, after.text);
  assert.equal(after.json.access_token, before.json.access_token);
  assert.equal((await token("new-user")).status, 200);
  const mine = await call(stack.worker.url, "GET", "/v1/me/connections", { token: await mintSession(acme, "old-user") });
  assert.equal(mine.status, 200, "sessions verify: the partner's session secret moved too");
  assert.equal(mine.json.connections.length, 1);
});

test("partners rotated while re-seal walks run: every rotation holds (old key and secret refused, new ones accepted)", async () => {
  // Where the second test left it: everything under NEW_KEY alone.
  const N = 40;
  const ids = Array.from({ length: N }, (_, i) => `rot-${String(i).padStart(2, "0")}`);
  const first = await Promise.all(ids.map((id) => putPartner(stack.worker.url, id, { origins: [`https://${id}.example`] })));
  const THIRD_KEY = randomBytes(32).toString("base64");
  await stack.restartWorker({ TOKEN_KEYS: `${THIRD_KEY},${NEW_KEY}` });

  // Walks a page (one partner) at a time while the partners are rotated one after another, in
  // the same order at about the same pace: a walk that reads a partner just before its rotation
  // must not write the old record back just after it.
  // (Cursors are opaque and tagged: a page says which phase it walked, and the walk stops at the
  // first page of connections.)
  const walk = async () => {
    const pages = [];
    for (let cursor = ""; ;) {
      const res = await call(stack.worker.url, "POST", `/v1/admin/reseal?limit=1&cursor=${encodeURIComponent(cursor)}`, { token: ADMIN_TOKEN });
      assert.equal(res.status, 200, res.text);
      pages.push(res.json);
      cursor = res.json.cursor;
      if (res.json.phase !== "partners" || !cursor) break;
    }
    assert.ok(pages.filter((p) => p.phase === "partners").length >= N, "every partner was walked");
    return pages;
  };
  const rotateAll = async () => {
    const out = [];
    for (const id of ids) out.push(await putPartner(stack.worker.url, id, { origins: [`https://${id}.example`], rotate: true }));
    return out;
  };
  const [walks, rotated] = await Promise.all([Promise.all([walk(), walk(), walk()]), rotateAll()]);
  for (const pages of walks) assert.ok(pages.every((p) => p.unreadable === 0), JSON.stringify(pages));

  // A fresh isolate (no cached partner records): what KV and the guards hold is what counts.
  await stack.restartWorker({ TOKEN_KEYS: THIRD_KEY });
  const wrong = [];
  for (const [i, id] of ids.entries()) {
    assert.notEqual(rotated[i].api_key, first[i].api_key);
    const fresh = await call(stack.worker.url, "POST", "/v1/token", { token: rotated[i].api_key, body: { user: "nobody" } });
    const stale = await call(stack.worker.url, "POST", "/v1/token", { token: first[i].api_key, body: { user: "nobody" } });
    const mineNew = await call(stack.worker.url, "GET", "/v1/me/connections", { token: await mintSession(rotated[i], "u") });
    const mineOld = await call(stack.worker.url, "GET", "/v1/me/connections", { token: await mintSession(first[i], "u") });
    // The rotated key is accepted (no such user: 404), the one it replaced refused; likewise
    // sessions signed with the new and the replaced secret.
    const got = [fresh.json.error?.code, stale.status, mineNew.status, mineOld.status];
    if (JSON.stringify(got) !== JSON.stringify(["no_connection", 401, 200, 401])) wrong.push(`${id}: ${got}`);
  }
  assert.deepEqual(wrong, [], "every rotation holds");
});
