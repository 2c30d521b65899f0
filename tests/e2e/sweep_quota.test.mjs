// The sweep's pace follows what Keap reports: with the day's quota nearly spent (the sandbox's
// gate: 10 calls left of 1,000), a sweep over 40 due links spends what is left and no more; the
// rest wait in the refresh queue until the window starts over, and Keap refuses nothing.
// Without the pace the sweep would send all 40 and meet 30 refusals.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startStack } from "./harness.mjs";
import { putPartner, runSweep } from "./client.mjs";
import { seedConnections } from "./seed.mjs";

const COUNT = 40;
const LEFT = 10;
let stack;
let kvDir;

before(async () => {
  kvDir = await mkdtemp(join(tmpdir(), "keaplink-sweep-quota-"));
  // A budget above this sweep's needs: every due link is the sweep's to call directly.
  stack = await startStack({ persistTo: kvDir, workerVars: { SWEEP_SUBREQUEST_BUDGET: "5000" } });
});
after(async () => {
  await stack?.stop();
  await rm(kvDir, { recursive: true, force: true });
});

test("a nearly spent day: the sweep refreshes what Keap has left and queues the rest for its reset", { timeout: 120_000 }, async () => {
  await putPartner(stack.url, "acme", { origins: ["https://acme.example"] });
  await stack.worker.stop();
  const seeded = await seedConnections({ persistTo: kvDir, sandbox: stack.sandbox, partner: "acme", count: COUNT, dueEvery: 1, marginSecs: 21600 });
  assert.equal(seeded.due, COUNT);
  await stack.restartWorker();

  // The day (an hour long here) with LEFT calls left; the minute's throttle is roomy.
  const q = await stack.sandbox.quota({ product_quota: { limit: 1000, window_ms: 3_600_000, used: 1000 - LEFT } });
  assert.equal(q.product_quota.available, LEFT);
  const callsBefore = (await stack.sandbox.stats()).calls.token_refresh ?? 0;

  const report = await runSweep(stack.worker);
  console.log(JSON.stringify(report));
  const calls = ((await stack.sandbox.stats()).calls.token_refresh ?? 0) - callsBefore;
  const spent = (await stack.sandbox.quota({})).product_quota;
  const accepted = spent.used - (1000 - LEFT);

  assert.equal(report.due, COUNT);
  assert.ok(calls > 0, "the first refreshes go before Keap has said anything");
  assert.ok(calls <= LEFT, `Keap was sent ${calls} refreshes with ${LEFT} calls left`);
  assert.equal(calls, accepted, `Keap refused ${calls - accepted} refreshes`);
  assert.equal(report.refreshed, calls, JSON.stringify(report));
  assert.equal(report.errors, 0);
  assert.equal(report.still_failing, 0, "no link met a 429");
  // The rest wait in the queue until the day starts over (an hour: the sandbox's expiry header).
  assert.equal(report.paced, COUNT - calls);
  assert.equal(report.guard_calls, calls);
  assert.ok(report.paced_secs > 3000 && report.paced_secs <= 3660, `paced for ${report.paced_secs} s`);
  assert.ok(report.queue_sends >= 1);
  assert.ok(report.complete);
});
