// The console at scale: 10,000 links of one partner in local KV (seeded straight into the stopped
// Worker's KV), then sign in and time the first page of links on screen, a page forward, and a
// search. The budget (issue 15) is 1 s from sign-in to the first row. The figure printed is the
// median of five sign-ins (the first after the Worker started included), each from the click on
// "Sign in" to the first row visible, as the test's clock sees it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startStack } from "./harness.mjs";
import { putPartner } from "./client.mjs";
import { seedConnections } from "./seed.mjs";
import { launchBrowser, failOnPageErrors } from "./browser.mjs";

const COUNT = Number(process.env.CONSOLE_SCALE_COUNT ?? 10_000);
const BUDGET_MS = 1000;
const pages = failOnPageErrors();
let stack;
let kvDir;
let browser;
let acme;
let indexed = false;

before(async () => {
  kvDir = await mkdtemp(join(tmpdir(), "keaplink-console-scale-"));
  stack = await startStack({ persistTo: kvDir });
  acme = await putPartner(stack.url, "acme", { name: "Acme Booking", origins: ["https://app.acme.example"] });
  await stack.worker.stop();
  const t0 = Date.now();
  // Nothing due (one in COUNT): no sweep or refresh competes with the console for the 2 cores.
  const seeded = await seedConnections({ persistTo: kvDir, sandbox: stack.sandbox, partner: "acme", count: COUNT, dueEvery: COUNT, marginSecs: 21600, index: true });
  // Each link is two KV entries (the record and its id); a seeder that writes the search index
  // writes more.
  indexed = seeded.written > 2 * COUNT;
  console.log(`seeded ${COUNT} links (${seeded.written} KV entries${indexed ? ", with the search index" : ", no search index"}) in ${Date.now() - t0} ms`);
  await stack.restartWorker();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await stack?.stop();
  await rm(kvDir, { recursive: true, force: true });
});

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

test(`${COUNT} links: the first page is on screen within ${BUDGET_MS} ms of sign-in`, { timeout: 300_000 }, async () => {
  const context = pages.watch(await browser.newContext({ viewport: { width: 1180, height: 820 } }));
  const page = await context.newPage();
  const clicks = [];
  const marks = [];
  for (let i = 0; i < 5; i++) {
    await page.goto(`${stack.url}/console/`);
    await page.getByLabel("API key").fill(acme.api_key);
    const t0 = Date.now();
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.locator("#results tbody tr").first().waitFor();
    clicks.push(Date.now() - t0);
    // The console's own marks: from the sign-in's submit to the first rows in the page.
    marks.push(await page.evaluate(() => {
      const [a] = performance.getEntriesByName("keaplink-console:sign-in");
      const [b] = performance.getEntriesByName("keaplink-console:first-rows");
      return b.startTime - a.startTime;
    }));
    assert.equal(await page.locator("#results tbody tr").count(), 50, "a page of 50");
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByLabel("API key").waitFor();
  }
  console.log(`sign-in to first row, ${COUNT} links: click to visible ${clicks.join(", ")} ms (median ${median(clicks)}); console marks ${marks.map((m) => m.toFixed(0)).join(", ")} ms (median ${median(marks).toFixed(0)})`);
  assert.ok(median(clicks) <= BUDGET_MS, `median ${median(clicks)} ms over the ${BUDGET_MS} ms budget`);

  // Paging: each page is one request, however deep.
  await page.getByLabel("API key").fill(acme.api_key);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#results tbody tr").first().waitFor();
  const seen = new Set(await page.locator("#results tbody tr").evaluateAll((rs) => rs.map((r) => r.dataset.connection)));
  const steps = [];
  for (let p = 2; p <= 5; p++) {
    const t0 = Date.now();
    await page.getByRole("button", { name: "Next page" }).click();
    await page.locator(".pager span", { hasText: `Page ${p}` }).waitFor();
    steps.push(Date.now() - t0);
    const ids = await page.locator("#results tbody tr").evaluateAll((rs) => rs.map((r) => r.dataset.connection));
    assert.equal(ids.length, 50);
    for (const id of ids) {
      assert.ok(!seen.has(id), "no link twice across pages");
      seen.add(id);
    }
  }
  await page.getByRole("button", { name: "Previous page" }).click();
  await page.locator(".pager span", { hasText: "Page 4" }).waitFor();
  console.log(`next page, ${COUNT} links: ${steps.join(", ")} ms (median ${median(steps)})`);

  // A search over all of them: seed-00012 is the start of ten partner user ids.
  const t0 = Date.now();
  await page.getByLabel("Search").fill("seed-00012");
  await page.getByRole("button", { name: "Search" }).click();
  await page.locator("#results tbody tr, #results [data-state=empty]").first().waitFor();
  await page.waitForFunction(() => !document.querySelector("#results [data-state=loading]"));
  const found = await page.locator("#results tbody tr").count();
  console.log(`search "seed-00012" over ${COUNT} links: ${found} found in ${Date.now() - t0} ms (index ${indexed ? "seeded" : "not written by this keaplink-seed build"})`);
  if (indexed) assert.equal(found, 10);
  await context.close();
});
