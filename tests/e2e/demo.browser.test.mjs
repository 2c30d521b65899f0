// The demo partner page the run command prints, served by the Worker itself: the widget is
// rendered by the wasm module (only it sets data-rendered-by and fills the shadow root).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startStack, artifactPath } from "./harness.mjs";
import { mintSession, putPartner } from "./client.mjs";
import { launchBrowser } from "./browser.mjs";

let stack;
let browser;
before(async () => {
  stack = await startStack();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await stack?.stop();
});

test("the demo page renders <keap-link> from wasm with the demo user's status", async () => {
  const demo = await putPartner(stack.url, "demo", { origins: [stack.url], returnUrls: [`${stack.url}/demo/`] });
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (err) => errors.push(err.message));
  await page.goto(`${stack.url}/demo/#user=alice&session=${await mintSession(demo, "alice")}`);
  const el = page.locator('keap-link[data-rendered-by="wasm"]');
  await el.waitFor({ timeout: 15_000 });
  await page.locator("keap-link [data-state=empty]").waitFor();
  const shadowText = await el.evaluate((node) => node.shadowRoot?.textContent ?? "");
  assert.match(shadowText, /Connect Keap/);
  assert.equal(await page.textContent("#who"), "alice");
  assert.deepEqual(errors, []);
  await page.screenshot({ path: await artifactPath("demo-page.png"), fullPage: true });
  await page.close();
});
