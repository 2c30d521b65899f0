// More due connections than one cron invocation may refresh: the rest go through the refresh
// queue, paced under Keap's quota by the pacer; an injected 429 halves the pace.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startStack } from "./harness.mjs";
import { putPartner, runSweep } from "./client.mjs";
import { seedConnections } from "./seed.mjs";

const COUNT = 200;
const RATE_PER_MIN = 600; // 10 a second
let stack;
let kvDir;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  kvDir = await mkdtemp(join(tmpdir(), "keaplink-queue-"));
  stack = await startStack({
    persistTo: kvDir,
    workerVars: { SWEEP_SUBREQUEST_BUDGET: "12", KEAP_REFRESH_RATE_PER_MIN: String(RATE_PER_MIN), REFRESH_BACKOFF_SECS: "2" },
  });
});
after(async () => {
  await stack?.stop();
  await rm(kvDir, { recursive: true, force: true });
});

/** Calls in the busiest `windowMs` among `times` between `from` and `to`. */
function peak(times, windowMs, from = 0, to = Infinity) {
  const t = times.filter((x) => x >= from && x <= to);
  let best = 0;
  for (let i = 0, j = 0; i < t.length; i++) {
    while (t[i] - t[j] > windowMs) j++;
    best = Math.max(best, i - j + 1);
  }
  return best;
}

test("the queue refreshes what the cron could not, under the pace, and slows down on a 429", { timeout: 240_000 }, async () => {
  await putPartner(stack.url, "acme", { origins: ["https://acme.example"] });
  await stack.worker.stop();
  await seedConnections({ persistTo: kvDir, sandbox: stack.sandbox, partner: "acme", count: COUNT, dueEvery: 1, marginSecs: 21600 });
  await stack.restartWorker();
  await stack.sandbox.reset();

  const started = Date.now();
  const report = await runSweep(stack.worker);
  console.log(JSON.stringify(report));
  assert.equal(report.due, COUNT);
  assert.ok(report.guard_calls + report.enqueued === COUNT, JSON.stringify(report));
  assert.ok(report.enqueued > 180, "most go through the queue");
  assert.ok(report.kv_list_calls + report.guard_calls + report.queue_sends <= 12, "within the subrequest budget");

  const count = async () => (await stack.sandbox.stats()).calls.token_refresh ?? 0;
  // Let the pace settle, then make Keap answer 429 to the next three refreshes.
  while ((await count()) < 140) await sleep(200);
  const throttledAt = Date.now();
  await stack.sandbox.fault("throttle", 3);
  const deadline = Date.now() + 180_000;
  while ((await count()) < COUNT && Date.now() < deadline) await sleep(500);
  const finished = Date.now();
  const stats = await stack.sandbox.stats();
  const times = stats.refresh_times_ms;
  assert.ok(stats.calls.token_refresh >= COUNT, `all attempted: ${stats.calls.token_refresh}`);

  // Never faster than the pace allows: 10 a second plus a two-second burst.
  const peak5s = peak(times, 5000);
  assert.ok(peak5s <= 5 * (RATE_PER_MIN / 60) + 2 * (RATE_PER_MIN / 60) + 6, `peak ${peak5s} in 5 s`);
  const before = times.filter((t) => t >= started + 3000 && t < throttledAt);
  const after = times.filter((t) => t > throttledAt + 3000);
  const rate = (xs) => (xs.length > 1 ? ((xs.length - 1) * 1000) / (xs.at(-1) - xs[0]) : 0);
  const rBefore = rate(before);
  const rAfter = rate(after);
  console.log(`pace: ${rBefore.toFixed(2)}/s before the 429s, ${rAfter.toFixed(2)}/s after; ${COUNT} refreshed in ${(finished - started) / 1000} s`);
  // Bursts of up to two seconds' worth sit on top of the steady rate.
  assert.ok(rBefore <= (RATE_PER_MIN / 60) * 1.3, `before: ${rBefore}`);
  assert.ok(rAfter < rBefore * 0.75, `after a 429 the pace drops: ${rBefore} -> ${rAfter}`);

  // The three throttled ones come back through a later sweep once their backoff ends.
  await sleep(2500);
  const late = await runSweep(stack.worker);
  assert.ok(late.due <= 3, JSON.stringify(late));
  await sleep(3000);
  const final = await runSweep(stack.worker);
  assert.equal(final.due, 0, JSON.stringify(final));
});
