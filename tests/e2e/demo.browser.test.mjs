// The demo partner page the run command prints, served by the Worker itself: the widget is
// rendered by the wasm module (only it sets data-rendered-by and fills the shadow root). Also
// takes the README's screenshots of it (connected, needing a reconnect; light and dark): into
// tests/artifacts/ always, and over docs/widget-*.png when KEAPLINK_DOCS_SCREENSHOTS=1 (the
// dates they show change with every run, so a plain test run leaves docs/ alone).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startStack, artifactPath, ROOT } from "./harness.mjs";
import { call, mintSession, putPartner } from "./client.mjs";
import { launchBrowser, failOnPageErrors, signInAtKeap } from "./browser.mjs";

const pages = failOnPageErrors();
let stack;
let browser;
let context;
let demo;
before(async () => {
  stack = await startStack();
  browser = await launchBrowser();
  context = pages.watch(await browser.newContext());
  demo = await putPartner(stack.url, "demo", { origins: [stack.url], returnUrls: [`${stack.url}/demo/`] });
  // Keap's pages are the stand-in's, which has no favicon; a 404 there is not the demo's.
  await context.route(`${stack.sandbox.url}/favicon.ico`, (route) => route.fulfill({ status: 204 }));
});
after(async () => {
  await context?.close();
  await browser?.close();
  await stack?.stop();
});

const openDemo = async (user) => {
  const page = await context.newPage();
  await page.goto(`${stack.url}/demo/#user=${user}&session=${await mintSession(demo, user)}`);
  await page.locator('keap-link[data-rendered-by="wasm"]').waitFor({ timeout: 15_000 });
  await page.locator("keap-link [data-state]:not([data-state=loading])").first().waitFor();
  return page;
};

test("the demo page renders <keap-link> from wasm with the demo user's status, and nothing it asks for is missing", async () => {
  const page = await context.newPage();
  const answers = [];
  page.on("response", (r) => answers.push([r.status(), new URL(r.url()).pathname]));
  const logFrom = stack.worker.logs.length;
  const icon = page.waitForResponse((r) => r.url().endsWith("/demo/favicon.svg"));
  await page.goto(`${stack.url}/demo/#user=alice&session=${await mintSession(demo, "alice")}`);
  const el = page.locator('keap-link[data-rendered-by="wasm"]');
  await el.waitFor({ timeout: 15_000 });
  await page.locator("keap-link [data-state=empty]").waitFor();
  const shadowText = await el.evaluate((node) => node.shadowRoot?.textContent ?? "");
  assert.match(shadowText, /Connect Keap/);
  assert.equal(await page.textContent("#who"), "alice");
  // The favicon is asked for (Chromium asks for /favicon.ico when a page names none) and found.
  const iconAnswer = await icon;
  assert.equal(iconAnswer.status(), 200);
  assert.match(iconAnswer.headers()["content-type"], /^image\/svg\+xml/);
  await page.waitForLoadState("networkidle");
  assert.deepEqual(answers.filter(([status]) => status >= 400), [], "no request answered an error");
  assert.ok(answers.some(([, path]) => path === "/v1/me/connections"), "the widget did call the API");
  const workerErrors = stack.worker.logs.slice(logFrom).join("").split("\n").filter((l) => /"status":4\d\d/.test(l));
  assert.deepEqual(workerErrors, [], "the Worker logged no 4xx for the page");
  await page.screenshot({ path: await artifactPath("demo-page.png"), fullPage: true });
  await page.close();
});

test("popup blocked on the demo page: the same tab goes to Keap and comes back connected, still signed in", async () => {
  const page = await context.newPage();
  await page.addInitScript(() => { window.open = () => null; });
  await page.goto(`${stack.url}/demo/#user=dora&session=${await mintSession(demo, "dora")}`);
  await page.locator("keap-link [data-state=empty]").waitFor({ timeout: 15_000 });
  await Promise.all([page.waitForURL(/\/(logout|app\/oauth)/), page.locator("keap-link [data-action=connect]").click()]);
  await signInAtKeap(page, "cat@ef789.example");
  await Promise.all([page.waitForURL(new RegExp(`^${stack.url}/demo/\\?keaplink=connected`)), page.click("button[value=allow]")]);
  await page.locator("keap-link li[data-status=active]").waitFor();
  assert.equal(await page.textContent("#who"), "dora", "the page still knows who is signed in");
  const shadowText = await page.locator("keap-link").evaluate((node) => node.shadowRoot?.textContent ?? "");
  assert.doesNotMatch(shadowText, /not valid/, "the widget has its session");
  await page.close();
});

/** The widget's area of the page, with a margin of the page around it, at 1x, light and dark. */
async function shootWidget(page, name) {
  const box = await page.locator("keap-link").boundingBox();
  const m = 12;
  const clip = { x: Math.max(0, box.x - m), y: Math.max(0, box.y - m), width: box.width + 2 * m, height: box.height + 2 * m };
  for (const scheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme: scheme });
    const bg = await page.locator("keap-link section.kl").evaluate((s) => getComputedStyle(s).backgroundColor);
    assert.equal(bg, scheme === "light" ? "rgb(255, 255, 255)" : "rgb(27, 31, 39)", `the demo follows the OS: ${scheme}`);
    const file = `widget-${name}-${scheme}.png`;
    const image = await page.screenshot({ clip, scale: "css", animations: "disabled", caret: "hide" });
    await writeFile(await artifactPath(file), image);
    if (process.env.KEAPLINK_DOCS_SCREENSHOTS === "1") await writeFile(join(ROOT, "docs", file), image);
  }
  await page.emulateMedia({ colorScheme: "light" });
}

test("screenshots: the demo page's widget connected, and with a link that needs a reconnect", async () => {
  // A short-lived Keap token, so the token request below must refresh, and finds the link dead.
  await stack.sandbox.configure({ expires_in: 30 });
  const page = await openDemo("alice");
  const popupPromise = page.waitForEvent("popup");
  await page.locator("keap-link [data-action=connect]").click();
  const popup = await popupPromise;
  await signInAtKeap(popup, "ann@ab123.example");
  const closed = popup.waitForEvent("close");
  await popup.click("button[value=allow]");
  await closed;
  await stack.sandbox.configure({ expires_in: 86400 });
  await page.locator("keap-link li[data-status=active] [data-linked]").waitFor();
  await page.close();
  // The steady state, as the user finds it on a later visit (without the "Linked as" of the
  // moment after connecting).
  const connected = await openDemo("alice");
  await connected.locator("keap-link li[data-status=active]").waitFor();
  assert.equal(await connected.locator("keap-link li .app").textContent(), "Ann's Bakery (ab123)");
  await shootWidget(connected, "connected");
  await connected.close();

  await stack.sandbox.revoke("ann@ab123.example");
  const t = await call(stack.url, "POST", "/v1/token", { token: demo.api_key, body: { user: "alice" } });
  assert.equal(t.status, 409);
  const again = await openDemo("alice");
  await again.locator("keap-link li[data-status=needs_reauth]").waitFor();
  await shootWidget(again, "reauth");
  await again.close();
});
