// Deleting a partner destroys its users' links, not just its credentials: the tokens leave KV and
// the guards (so no sweep keeps them alive at Keap for months), another partner's links stay, and
// the same id registered again starts empty.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { ADMIN_TOKEN, startStack } from "./harness.mjs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { call, linkUser, logEvents, putPartner } from "./client.mjs";
import { seedConnections } from "./seed.mjs";

let stack;

before(async () => { stack = await startStack(); });
after(async () => { await stack?.stop(); });

const link = (partner, user, email) => linkUser(stack, partner, user, email);
const stats = async () => (await call(stack.url, "GET", "/v1/admin/stats", { token: ADMIN_TOKEN })).json;

test("DELETE a partner: its connections are destroyed through the queue; others stay; the id comes back empty", async () => {
  const acme = await putPartner(stack.url, "acme", { origins: ["https://acme.example"] });
  const globex = await putPartner(stack.url, "globex", { origins: ["https://globex.example"] });
  await link(acme, "u1", "ann@ab123.example");
  await link(acme, "u1", "bob@cd456.example");
  await link(acme, "u2", "cat@ef789.example");
  await link(globex, "g1", "ann@ab123.example");
  assert.equal((await stats()).connections.total, 4);
  const acmeIds = (await call(stack.url, "GET", "/v1/connections", { token: acme.api_key })).json.connections.map((c) => c.id);
  assert.equal(acmeIds.length, 3);

  const del = await call(stack.url, "DELETE", "/v1/admin/partners/acme", { token: ADMIN_TOKEN });
  assert.equal(del.status, 204);
  assert.equal((await call(stack.url, "POST", "/v1/token", { token: acme.api_key, body: { user: "u1", keap_app: "ab123" } })).status, 401, "the key is dead at once");

  let left;
  for (let i = 0; i < 100; i++) {
    left = (await stats()).connections.total;
    if (left === 1) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(left, 1, "only globex's link is left");
  const g = await call(stack.url, "POST", "/v1/token", { token: globex.api_key, body: { user: "g1" } });
  assert.equal(g.status, 200, g.text);

  // The same id registered again sees none of the old links, by listing or by id.
  const again = await putPartner(stack.url, "acme", { origins: ["https://acme.example"] });
  assert.deepEqual((await call(stack.url, "GET", "/v1/connections", { token: again.api_key })).json.connections, []);
  for (const id of acmeIds) {
    assert.equal((await call(stack.url, "DELETE", `/v1/connections/${id}`, { token: again.api_key })).status, 404);
  }
  assert.equal((await call(stack.url, "POST", "/v1/token", { token: again.api_key, body: { user: "u1" } })).json.error.code, "no_connection");
  const purges = logEvents(stack.worker, "purge");
  assert.deepEqual(purges.map((p) => [p.partner, p.deleted, p.more]), [["acme", 3, false]]);
});

test("a partner with more links than one page: the purge walks every page", async () => {
  const dir = await mkdtemp(join(tmpdir(), "keaplink-purge-"));
  const big = await startStack({ persistTo: dir });
  try {
    await putPartner(big.url, "bulk", { origins: ["https://bulk.example"] });
    await big.worker.stop();
    const seeded = await seedConnections({ persistTo: dir, sandbox: big.sandbox, partner: "bulk", count: 100, dueEvery: 50, marginSecs: 21600 });
    assert.equal(seeded.written, 200, "100 records and their id index");
    await big.restartWorker();
    const count = async () => (await call(big.url, "GET", "/v1/admin/stats", { token: ADMIN_TOKEN })).json.connections.total;
    assert.equal(await count(), 100);
    assert.equal((await call(big.url, "DELETE", "/v1/admin/partners/bulk", { token: ADMIN_TOKEN })).status, 204);
    let left = 100;
    for (let i = 0; i < 150 && left > 0; i++) {
      await new Promise((r) => setTimeout(r, 200));
      left = await count();
    }
    assert.equal(left, 0);
    const pages = logEvents(big.worker, "purge");
    assert.deepEqual(pages.map((p) => [p.deleted, p.more]), [[40, true], [40, true], [20, false]]);
  } finally {
    await big.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
