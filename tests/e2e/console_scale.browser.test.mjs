// The console over many links: CONSOLE_SCALE_COUNT links of one partner (2,000 by default) seeded
// straight into the stopped Worker's KV with their search index, then sign in, page forward and
// back, and search. What is asserted is behaviour at that size (a page of 50, no link twice across
// pages, a search finding exactly its ten); how fast it is at 10,000 links is measured by
// bench/run.mjs (BENCHMARKS.md, "Console"), not timed here.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startStack } from "./harness.mjs";
import { putPartner } from "./client.mjs";
import { seedConnections } from "./seed.mjs";
import { launchBrowser, failOnPageErrors } from "./browser.mjs";

const COUNT = Number(process.env.CONSOLE_SCALE_COUNT ?? 2_000);
const pages = failOnPageErrors();
let stack;
let kvDir;
let browser;
let acme;

before(async () => {
  kvDir = await mkdtemp(join(tmpdir(), "keaplink-console-scale-"));
  stack = await startStack({ persistTo: kvDir });
  acme = await putPartner(stack.url, "acme", { name: "Acme Booking", origins: ["https://app.acme.example"] });
  await stack.worker.stop();
  // Nothing due (one in COUNT): no sweep or refresh runs meanwhile.
  await seedConnections({ persistTo: kvDir, sandbox: stack.sandbox, partner: "acme", count: COUNT, dueEvery: COUNT, marginSecs: 21600, index: true });
  await stack.restartWorker();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await stack?.stop();
  await rm(kvDir, { recursive: true, force: true });
});

test(`${COUNT} links: a page of 50 at sign-in, pages forward and back with no link twice, a search finds exactly its ten`, { timeout: 300_000 }, async () => {
  const context = pages.watch(await browser.newContext({ viewport: { width: 1180, height: 820 } }));
  const page = await context.newPage();
  await page.goto(`${stack.url}/console/`);
  await page.getByLabel("API key").fill(acme.api_key);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#results tbody tr").first().waitFor();
  assert.equal(await page.locator("#results tbody tr").count(), 50, "a page of 50");
  // Paging: each page is one request with the cursor the Worker handed back.
  const seen = new Set(await page.locator("#results tbody tr").evaluateAll((rs) => rs.map((r) => r.dataset.connection)));
  const byPage = {};
  for (let p = 2; p <= 5; p++) {
    await page.getByRole("button", { name: "Next page" }).click();
    await page.locator(".pager span", { hasText: `Page ${p}` }).waitFor();
    const ids = await page.locator("#results tbody tr").evaluateAll((rs) => rs.map((r) => r.dataset.connection));
    byPage[p] = ids;
    assert.equal(ids.length, 50);
    for (const id of ids) {
      assert.ok(!seen.has(id), "no link twice across pages");
      seen.add(id);
    }
  }
  await page.getByRole("button", { name: "Previous page" }).click();
  await page.locator(".pager span", { hasText: "Page 4" }).waitFor();
  const back = await page.locator("#results tbody tr").evaluateAll((rs) => rs.map((r) => r.dataset.connection));
  assert.deepEqual(back, byPage[4], "Previous page shows the same links as before");

  // A search over all of them: seed-00012 is the start of ten partner user ids (seed-000120 to
  // seed-000129).
  await page.getByLabel("Search").fill("seed-00012");
  await page.getByRole("button", { name: "Search" }).click();
  await page.locator("#results tbody tr, #results [data-state=empty]").first().waitFor();
  await page.waitForFunction(() => !document.querySelector("#results [data-state=loading]"));
  const found = await page.locator("#results tbody tr").evaluateAll((rs) => rs.map((r) => r.textContent));
  assert.equal(found.length, 10);
  for (const row of found) assert.match(row, /seed-00012\d/);
  await context.close();
});
