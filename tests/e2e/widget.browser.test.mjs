// The widget in headless Chromium (Debian's), on a partner page of its own origin under a strict
// CSP, against the real Worker and the Keap sandbox. Screenshots go to tests/artifacts/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startStack, artifactPath } from "./harness.mjs";
import { call, mintSession, putPartner } from "./client.mjs";
import { startPartnerSite } from "./partner.mjs";
import { launchProfile } from "./browser.mjs";

let stack;
let site;
let partner;
let context; // one browser profile for every test: a shared computer

before(async () => {
  stack = await startStack();
  site = await startPartnerSite({ workerUrl: stack.url });
  partner = await putPartner(stack.url, "acme", { origins: [site.url], returnUrls: [`${site.url}/settings`] });
  site.setPartner(partner);
  context = await launchProfile();
});
after(async () => {
  await context?.close();
  await site?.stop();
  await stack?.stop();
});

const shot = async (page, name) => page.screenshot({ path: await artifactPath(`widget-${name}.png`), fullPage: true });

async function openSettings(user, query = "") {
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.goto(`${site.url}/settings?user=${user}${query}`);
  await page.locator('keap-link[data-rendered-by="wasm"]').waitFor();
  await page.locator("keap-link [data-state]:not([data-state=loading])").first().waitFor();
  return { page, errors };
}

/** Clicks Connect, walks the popup through the sandbox; returns what the popup showed first. */
async function connectInPopup(page, { email, button = "connect" } = {}) {
  const popupPromise = page.waitForEvent("popup");
  await page.locator(`keap-link [data-action=${button}]`).first().click();
  const popup = await popupPromise;
  await popup.waitForSelector("body[data-page]");
  const first = await popup.getAttribute("body", "data-page");
  if (first === "login") {
    await popup.fill("input[name=email]", email);
    await popup.fill("input[name=password]", "keap");
    await popup.click("button[type=submit]");
    await popup.waitForSelector('body[data-page="consent"]');
  }
  const consentFor = await popup.textContent("#email");
  const closed = popup.waitForEvent("close");
  await popup.click("button[value=allow]");
  await closed;
  return { first, consentFor };
}

const mine = async (user) =>
  (await call(stack.url, "GET", "/v1/me/connections", { token: await mintSession(partner, user) })).json.connections;

test("1. connect in a popup: login as Keap user A, consent, the widget shows it without a reload", async () => {
  const { page, errors } = await openSettings("alice");
  await page.evaluate(() => { window.__sameDocument = true; });
  assert.match(await page.locator("keap-link [data-state=empty]").textContent(), /Link your Keap account/);
  assert.match(await page.locator("keap-link .why").textContent(), /signed out of Keap first/);
  // Styled under a CSP without 'unsafe-inline': the accent reaches the primary button.
  const bg = await page.locator("keap-link button.primary").evaluate((b) => getComputedStyle(b).backgroundColor);
  assert.equal(bg, "rgb(47, 111, 221)");
  await shot(page, "empty");
  const timing = await page.evaluate(() => {
    const script = performance.getEntriesByType("resource").find((e) => e.name.endsWith("/widget/keap-link.js"));
    const mark = performance.getEntriesByName("keaplink:first-status")[0];
    return { script: script?.startTime, status: mark?.startTime };
  });
  console.log(`script load to first rendered status: ${(timing.status - timing.script).toFixed(1)} ms`);
  assert.ok(timing.status > timing.script);

  const connected = page.evaluate(() => new Promise((r) => document.getElementById("keap").addEventListener("keaplink:connected", (e) => r(e.detail), { once: true })));
  const { first } = await connectInPopup(page, { email: "ann@ab123.example" });
  assert.equal(first, "login", "a fresh profile signs in");
  const detail = await connected;
  assert.ok(detail.connection_id);
  const item = page.locator("keap-link li[data-status=active]");
  await item.waitFor();
  assert.match(await item.textContent(), /ab123/);
  assert.match(await item.textContent(), /ann@ab123\.example/);
  assert.match(await item.textContent(), /Connected/);
  assert.match(await page.locator("keap-link .live").textContent(), /connected/i);
  assert.ok(await page.evaluate(() => window.__sameDocument), "no reload");
  assert.deepEqual(errors, []);
  await shot(page, "connected");
  await page.close();
});

test("2. the shared browser: B must sign in as B; without the hop B lands on A's consent", async () => {
  const { page } = await openSettings("bob");
  const { first } = await connectInPopup(page, { email: "bob@cd456.example" });
  assert.equal(first, "login", "sign-out-first shows Keap's login, not the previous person's consent");
  const item = page.locator("keap-link li[data-status=active]");
  await item.waitFor();
  assert.match(await item.textContent(), /cd456/);
  assert.match(await item.textContent(), /bob@cd456\.example/);
  const alice = await mine("alice");
  assert.equal(alice.length, 1);
  assert.equal(alice[0].keap_user.email, "ann@ab123.example", "A's link is unchanged");
  await page.close();

  // The hop off: the next person is shown the previous person's consent screen.
  const { page: carol } = await openSettings("carol", "&hop=off");
  assert.match(await carol.locator("keap-link .why").textContent(), /Whoever is signed in/);
  await shot(carol, "hop-off");
  const popupPromise = carol.waitForEvent("popup");
  await carol.locator("keap-link [data-action=connect]").click();
  const popup = await popupPromise;
  await popup.waitForSelector("body[data-page]");
  assert.equal(await popup.getAttribute("body", "data-page"), "consent");
  assert.equal(await popup.textContent("#email"), "bob@cd456.example", "carol would link bob's Keap account");
  await popup.close();
  await carol.close();
});

test("3. disconnect removes the link from the widget and the API, and points to Account Central", async () => {
  const { page } = await openSettings("alice");
  const disconnected = page.evaluate(() => new Promise((r) => document.getElementById("keap").addEventListener("keaplink:disconnected", (e) => r(e.detail), { once: true })));
  await page.locator("keap-link [data-action=disconnect]").click();
  await page.locator("keap-link [data-action=confirm-disconnect]").waitFor();
  await shot(page, "confirm-disconnect");
  await page.locator("keap-link [data-action=confirm-disconnect]").click();
  await disconnected;
  await page.locator("keap-link [data-state=empty]").waitFor();
  assert.ok(await page.locator("keap-link a[data-central]").isVisible());
  assert.deepEqual(await mine("alice"), []);
  await shot(page, "disconnected");
  await page.close();
});

test("4. a needs_reauth link shows Reconnect, and reconnecting restores it in place", async () => {
  const { page } = await openSettings("dave");
  // A short-lived token, so the next token request must refresh, and finds the link dead.
  await stack.sandbox.configure({ expires_in: 30 });
  await connectInPopup(page, { email: "cat@ef789.example" });
  await stack.sandbox.configure({ expires_in: 86400 });
  await page.close();
  const [before] = await mine("dave");
  await stack.sandbox.revoke("cat@ef789.example");
  const t = await call(stack.url, "POST", "/v1/token", { token: partner.api_key, body: { user: "dave" } });
  assert.equal(t.status, 409);

  const { page: again } = await openSettings("dave");
  const item = again.locator("keap-link li[data-status=needs_reauth]");
  await item.waitFor();
  assert.match(await item.textContent(), /Needs reconnect/);
  assert.match(await item.textContent(), /reconnect/i);
  await shot(again, "needs-reauth");
  await connectInPopup(again, { email: "cat@ef789.example" });
  await again.locator("keap-link li[data-status=active]").waitFor();
  const [after] = await mine("dave");
  assert.equal(after.id, before.id, "same id");
  assert.equal(after.status, "active");
  await again.close();
});

test("5. popup blocked: the same tab goes to Keap and comes back connected", async () => {
  const page = await context.newPage();
  await page.addInitScript(() => { window.open = () => null; });
  await page.goto(`${site.url}/settings?user=erin`);
  await page.locator("keap-link [data-state=empty]").waitFor();
  await Promise.all([page.waitForURL(/\/(logout|app\/oauth)/), page.locator("keap-link [data-action=connect]").click()]);
  await page.waitForSelector("body[data-page]");
  if ((await page.getAttribute("body", "data-page")) === "login") {
    await page.fill("input[name=email]", "ann@ab123.example");
    await page.fill("input[name=password]", "keap");
    await page.click("button[type=submit]");
    await page.waitForSelector('body[data-page="consent"]');
  }
  await Promise.all([page.waitForURL(`${site.url}/settings?keaplink=connected`), page.click("button[value=allow]")]);
  await page.locator("keap-link li[data-status=active]").waitFor();
  assert.match(await page.locator("keap-link .live").textContent(), /connected/i);
  await shot(page, "after-redirect");
  await page.close();
});

test("6. a hostile postMessage claiming success changes nothing", async () => {
  const { page } = await openSettings("frank");
  await page.evaluate(() => {
    window.__events = [];
    const el = document.getElementById("keap");
    for (const name of ["keaplink:connected", "keaplink:error"]) el.addEventListener(name, () => window.__events.push(name));
  });
  // From the page's own origin, and from another origin in a frame.
  await page.evaluate(() => window.postMessage({ type: "keaplink:result", status: "connected", connection_id: "forged" }, "*"));
  await page.evaluate((other) => new Promise((r) => {
    const f = document.createElement("iframe");
    f.srcdoc = `<script>parent.postMessage({type:"keaplink:result",status:"connected",connection_id:"forged"},"*")<\/script>`;
    f.onload = () => setTimeout(r, 300);
    document.body.append(f);
  }), stack.sandbox.url);
  await page.waitForTimeout(300);
  assert.deepEqual(await page.evaluate(() => window.__events), []);
  assert.equal(await page.locator("keap-link [data-state=empty]").count(), 1);
  assert.equal(await page.locator("keap-link .live").textContent(), "");
  await page.close();
});

test("7. session-url: the widget fetches its session from the partner", async () => {
  const { page } = await openSettings("bob", "&mode=session-url");
  const item = page.locator("keap-link li[data-status=active]");
  await item.waitFor();
  assert.match(await item.textContent(), /bob@cd456\.example/);
  await page.close();
});

test("8. errors: an unreachable service shows a retry, never a blank box", async () => {
  const page = await context.newPage();
  await page.route(`${stack.url}/v1/**`, (route) => route.abort());
  await page.goto(`${site.url}/settings?user=alice`);
  const err = page.locator("keap-link [data-state=error]");
  await err.waitFor();
  assert.match(await err.textContent(), /Could not reach/);
  await shot(page, "error");
  await page.unroute(`${stack.url}/v1/**`);
  await page.locator("keap-link [data-action=retry]").click();
  await page.locator("keap-link [data-state=empty]").waitFor();
  await page.close();
});

test("9. an expired session says so and offers a retry", async () => {
  const page = await context.newPage();
  await page.addInitScript(() => {
    window.__errors = [];
    document.addEventListener("keaplink:error", (e) => window.__errors.push(e.detail));
  });
  await page.goto(`${site.url}/settings?user=alice&expired=1`);
  const err = page.locator("keap-link [data-state=error]");
  await err.waitFor();
  assert.match(await err.textContent(), /session has expired/);
  assert.deepEqual((await page.evaluate(() => window.__errors)).map((d) => d.error), ["invalid_session"]);
  assert.ok(await page.locator("keap-link [data-action=retry]").isVisible());
  await shot(page, "session-expired");
  await page.close();
});
