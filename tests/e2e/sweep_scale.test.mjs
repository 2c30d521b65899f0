// 10,000 connections in local KV, 10% due: one sweep refreshes exactly the due ones, decides
// from metadata alone (no KV value read by the sweep), and reports what it did.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startStack } from "./harness.mjs";
import { call, putPartner, runSweep } from "./client.mjs";
import { seedConnections } from "./seed.mjs";

const COUNT = Number(process.env.SWEEP_SCALE_COUNT ?? 10_000);
let stack;
let kvDir;

before(async () => {
  kvDir = await mkdtemp(join(tmpdir(), "keaplink-scale-"));
  // A budget above this sweep's needs: everything in one invocation (the queue test covers less).
  stack = await startStack({ persistTo: kvDir, workerVars: { SWEEP_SUBREQUEST_BUDGET: "5000" } });
});
after(async () => {
  await stack?.stop();
  await rm(kvDir, { recursive: true, force: true });
});

test(`${COUNT} connections, 10% due: one sweep refreshes exactly the due ones`, { timeout: 600_000 }, async () => {
  const acme = await putPartner(stack.url, "acme", { origins: ["https://acme.example"] });
  await stack.worker.stop();
  const t0 = Date.now();
  // The 90% not due get unreadable values under intact metadata: reading any of them fails.
  const seeded = await seedConnections({ persistTo: kvDir, sandbox: stack.sandbox, partner: "acme", count: COUNT, dueEvery: 10, marginSecs: 21600, unreadableIdle: true });
  console.log(`seeded ${COUNT} connections (${seeded.written} KV entries) in ${Date.now() - t0} ms`);
  await stack.restartWorker();

  const before = (await stack.sandbox.stats()).calls.token_refresh ?? 0;
  const report = await runSweep(stack.worker);
  console.log(JSON.stringify(report));
  const after = (await stack.sandbox.stats()).calls.token_refresh ?? 0;
  assert.equal(report.listed, COUNT);
  assert.equal(report.due, seeded.due);
  assert.equal(report.refreshed, seeded.due, JSON.stringify(report));
  assert.equal(after - before, seeded.due, "Keap saw one refresh per due connection, none for the rest");
  assert.equal(report.kv_value_reads, 0, "the sweep itself reads no value");
  assert.equal(report.errors, 0, "nobody read an unreadable (not due) value");
  assert.equal(report.kv_list_calls, Math.ceil(COUNT / 1000));
  assert.equal(report.enqueued, 0);
  assert.equal(report.guard_calls, seeded.due);
  assert.ok(report.complete);

  // A second sweep finds nothing due.
  const again = await runSweep(stack.worker);
  assert.equal(again.due, 0);
  assert.equal(again.errors, 0);
  // Proof the trap works: a not-due connection's value is indeed unreadable.
  const idle = await call(stack.worker.url, "POST", "/v1/token", { token: acme.api_key, body: { user: "seed-000001" } });
  assert.equal(idle.status, 500);
  // The refreshed ones hand out working tokens.
  const t = await call(stack.worker.url, "POST", "/v1/token", { token: acme.api_key, body: { user: "seed-000000" } });
  assert.equal(t.status, 200, t.text);
  const who = await fetch(`${stack.sandbox.url}/crm/rest/v1/oauth/connect/userinfo`, { headers: { authorization: `Bearer ${t.json.access_token}` } });
  assert.equal(who.status, 200);
});
