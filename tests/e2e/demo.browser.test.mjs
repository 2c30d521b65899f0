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
import { launchBrowser, failOnPageErrors, failedLoad, signInAtKeap } from "./browser.mjs";
import { startDemoBackend } from "../../scripts/demo-backend.mjs";

const pages = failOnPageErrors();
let stack;
let browser;
let context;
let demo;
let backend;
const stale = new Set(); // partner users the demo back-end hands an expired JWT, as a stale cache
before(async () => {
  stack = await startStack();
  browser = await launchBrowser();
  context = pages.watch(await browser.newContext());
  demo = await putPartner(stack.url, "demo", { origins: [stack.url], returnUrls: [`${stack.url}/demo/`] });
  backend = await startDemoBackend({ workerOrigin: new URL(stack.url).origin, partner: () => demo, expired: (user) => stale.has(user) });
  // Keap's pages are the stand-in's, which has no favicon; a 404 there is not the demo's.
  await context.route(`${stack.sandbox.url}/favicon.ico`, (route) => route.fulfill({ status: 204 }));
});
after(async () => {
  await context?.close();
  await backend?.stop();
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
  const back = page.waitForResponse((r) => r.url().startsWith(`${stack.url}/demo/?keaplink=connected`));
  await page.click("button[value=allow]");
  await back;
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

test("a demo page without a session says precisely why; the widget says it is not valid", async () => {
  pages.expect(/^keaplink: no_session /);
  const page = await context.newPage();
  await page.goto(`${stack.url}/demo/`);
  await page.locator("keap-link [data-state=error]").waitFor({ timeout: 15_000 });
  assert.match(await page.locator("keap-link [data-state=error]").textContent(), /not valid/);
  const why = page.locator("#why");
  await why.waitFor();
  assert.match(await why.textContent(), /^Why \(no_session\): The <keap-link> element has neither a session nor a session-url attribute\. This page has no session: open one of the demo links \.\/scripts\/dev prints\.$/);
  await page.close();
});

test("the demo page gets its session from the demo back-end: an expired one says why, and Reload mints afresh", async () => {
  pages.expect(/^keaplink: invalid_session /, failedLoad(401));
  stale.add("erin");
  const page = await context.newPage();
  await page.goto(`${stack.url}/demo/#user=erin&backend=${backend.url}`);
  // The fragment (who, and where the back-end is) is kept for the tab, not in the address bar.
  assert.equal(new URL(page.url()).hash, "");
  assert.equal(await page.textContent("#who"), "erin");
  // Expired twice (the widget asks the back-end once more on a 401): it says so, and why.
  const said = page.locator("keap-link [data-state=error]");
  await said.waitFor({ timeout: 15_000 });
  assert.match(await said.textContent(), /Your session has expired\. Reload the page/);
  assert.match(await page.locator("#why").textContent(), /^Why \(invalid_session\): The session token has expired; mint a new one\. Reload the page: it asks the demo partner's back-end for a new session\.$/);
  // The partner's back-end is fine again: a reload mints a fresh session, as the page says.
  stale.delete("erin");
  await page.reload();
  await page.locator("keap-link [data-state=empty]").waitFor({ timeout: 15_000 });
  assert.equal(await page.textContent("#who"), "erin", "still signed in after the reload");
  assert.ok(await page.locator("#why").isHidden());
  await page.close();
});
