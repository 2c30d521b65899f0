// The demo partner page in headless Chromium (Debian's), driven by playwright-core.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, artifactPath } from "./harness.mjs";
import { launchBrowser } from "./browser.mjs";

let worker;
let browser;
before(async () => {
  worker = await startWorker();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await worker?.stop();
});

test("the demo page renders <keap-link> from wasm", async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (err) => errors.push(err.message));
  await page.goto(`${worker.url}/demo/`);
  // Only the wasm module sets this attribute and fills the shadow root: no fallback can pass.
  const el = page.locator('keap-link[data-rendered-by="wasm"]');
  await el.waitFor({ timeout: 15_000 });
  const shadowText = await el.evaluate((node) => node.shadowRoot?.textContent ?? null);
  assert.ok(shadowText, "the widget has a shadow root with content");
  assert.match(shadowText, /Keap link/);
  assert.deepEqual(errors, []);
  await page.screenshot({ path: await artifactPath("demo-page.png"), fullPage: true });
  await page.close();
});
