// The widget in headless Chromium (Debian's), on a partner page of its own origin under a strict
// CSP, against the real Worker and the Keap sandbox. Screenshots go to tests/artifacts/ (and the
// README's, docs/widget-{mismatch,not-you,expiring}-light.png, over docs/ when
// KEAPLINK_DOCS_SCREENSHOTS=1: their dates change with every run). Any page error, unhandled
// rejection or unexpected console error in any page fails the test.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startStack, artifactPath, ROOT } from "./harness.mjs";
import { call, mintSession, putPartner } from "./client.mjs";
import { startPartnerSite } from "./partner.mjs";
import { launchProfile, failOnPageErrors, failedLoad, signInAtKeap } from "./browser.mjs";

const pages = failOnPageErrors();
let stack;
let site;
let partner;
let context; // one browser profile for every test: a shared computer

before(async () => {
  // A refresh token that "lives" 10 minutes, so one failing refresh puts a link in its last week
  // ("Reconnect before"). Nothing else here depends on it: no other test fails a refresh
  // transiently, and the file runs in well under 10 minutes.
  stack = await startStack({ workerVars: { KEAP_REFRESH_TOKEN_LIFETIME_SECS: "600" } });
  site = await startPartnerSite({ workerUrl: stack.url });
  partner = await putPartner(stack.url, "acme", { origins: [site.url], returnUrls: [`${site.url}/settings`] });
  site.setPartner(partner);
  context = pages.watch(await launchProfile());
  // Chromium asks every origin for /favicon.ico; the stand-in Keap and the Worker's own pages
  // (the callback, /healthz) have none, and a 404 there is not the widget's. The demo page's
  // favicon is checked in demo.browser.test.mjs.
  for (const origin of [stack.sandbox.url, stack.url]) {
    await context.route(`${origin}/favicon.ico`, (route) => route.fulfill({ status: 204 }));
  }
});
after(async () => {
  await context?.close();
  await site?.stop();
  await stack?.stop();
});

const shot = async (page, name) => page.screenshot({ path: await artifactPath(`widget-${name}.png`), fullPage: true });

/** The widget's area with a margin of the page, light, at 1x: for the README (see the top). */
async function shootWidget(page, name) {
  // As wide as a settings column, not the whole 1280 px test window.
  await page.setViewportSize({ width: 640, height: 720 });
  const box = await page.locator("keap-link").boundingBox();
  const m = 12;
  const clip = { x: Math.max(0, box.x - m), y: Math.max(0, box.y - m), width: box.width + 2 * m, height: box.height + 2 * m };
  const image = await page.screenshot({ clip, scale: "css", animations: "disabled", caret: "hide" });
  const file = `widget-${name}-light.png`;
  await writeFile(await artifactPath(file), image);
  if (process.env.KEAPLINK_DOCS_SCREENSHOTS === "1") await writeFile(join(ROOT, "docs", file), image);
}

/** Collects the widget's events of `names` on the page, from now on. */
async function recordEvents(page, ...names) {
  await page.evaluate((names) => {
    window.__events = [];
    const el = document.getElementById("keap");
    for (const name of names) el.addEventListener(name, (e) => window.__events.push({ name, ...e.detail }));
  }, names);
  return () => page.evaluate(() => window.__events);
}

/** The JSON bodies of the page's POST /v1/me/connect calls, from now on. */
function connectBodies(page) {
  const bodies = [];
  page.on("request", (r) => {
    if (r.method() === "POST" && new URL(r.url()).pathname === "/v1/me/connect") bodies.push(JSON.parse(r.postData()));
  });
  return bodies;
}

/** Records the widget's keaplink:error details and console.error lines from the first script on. */
async function recordErrors(page) {
  await page.addInitScript(() => {
    window.__errors = [];
    document.addEventListener("keaplink:error", (e) => window.__errors.push(e.detail));
  });
  const consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  return { events: () => page.evaluate(() => window.__errors), consoleErrors };
}

async function openSettings(user, query = "") {
  const page = await context.newPage();
  const errors = await recordErrors(page);
  await page.goto(`${site.url}/settings?user=${user}${query}`);
  await page.locator('keap-link[data-rendered-by="wasm"]').waitFor();
  await page.locator("keap-link [data-state]:not([data-state=loading])").first().waitFor();
  return { page, errors };
}

/** Clicks Connect, and signs in at the sandbox's login when it shows one; returns the popup at consent. */
async function openConsent(page, { email, button = "connect" } = {}) {
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
  return { popup, first };
}

/** Clicks Connect, walks the popup through the sandbox; returns what the popup showed first. */
async function connectInPopup(page, { email, button = "connect", decision = "allow" } = {}) {
  const { popup, first } = await openConsent(page, { email, button });
  const consentFor = await popup.textContent("#email");
  const closed = popup.waitForEvent("close");
  await popup.click(`button[value=${decision}]`);
  await closed;
  return { first, consentFor };
}

const mine = async (user) =>
  (await call(stack.url, "GET", "/v1/me/connections", { token: await mintSession(partner, user) })).json.connections;

const live = (page) => page.locator("keap-link .live").textContent();

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
  assert.equal(await item.locator(".app").textContent(), "Ann's Bakery (ab123)", "the business name Keap gave, and the id");
  assert.match(await item.textContent(), /ann@ab123\.example/);
  assert.match(await item.textContent(), /Connected/);
  assert.match(await live(page), /connected/i);
  // Whom it linked, with the undo (test 17 presses it).
  assert.match(await item.locator("[data-linked]").textContent(), /^Linked as ann@ab123\.example in Ann's Bakery \(ab123\)\. Not you\? Disconnect it$/);
  assert.equal(await item.locator("[data-linked] [data-action=undo]").getAttribute("data-id"), detail.connection_id);
  assert.ok(await page.evaluate(() => window.__sameDocument), "no reload");
  // The popup closed itself after its message: longer than the closed-popup watcher's poll
  // (0.5 s) plus its grace (1 s), the success must still stand, with no error reported.
  await page.waitForTimeout(2500);
  assert.match(await live(page), /Keap account connected/);
  assert.deepEqual(await errors.events(), []);
  await shot(page, "connected");
  await page.close();
});

test("2. the shared browser: B must sign in as B; without the hop B lands on A's consent", async () => {
  const { page } = await openSettings("bob");
  const { first } = await connectInPopup(page, { email: "bob@cd456.example" });
  assert.equal(first, "login", "sign-out-first shows Keap's login, not the previous person's consent");
  const item = page.locator("keap-link li[data-status=active]");
  await item.waitFor();
  assert.equal(await item.locator(".app").textContent(), "Bob's Bikes (cd456)");
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
  // Closing it is giving up, which the widget may report before this page closes.
  pages.expect(/^keaplink: popup_closed/);
  await popup.close();
  await carol.close();
});

test("3. disconnect removes the link from the widget and the API, and points to Account Central", async () => {
  const { page, errors } = await openSettings("alice");
  const disconnected = page.evaluate(() => new Promise((r) => document.getElementById("keap").addEventListener("keaplink:disconnected", (e) => r(e.detail), { once: true })));
  await page.locator("keap-link [data-action=disconnect]").click();
  await page.locator("keap-link [data-action=confirm-disconnect]").waitFor();
  await shot(page, "confirm-disconnect");
  // A destructive action: the confirmation is red (the danger style), not the accent.
  const confirmBg = await page.locator("keap-link [data-action=confirm-disconnect]").evaluate((b) => getComputedStyle(b).backgroundColor);
  assert.equal(confirmBg, "rgb(198, 40, 40)", "the danger colour");
  assert.ok(await page.locator("keap-link [data-action=confirm-disconnect].danger").count() === 1);
  assert.equal(await page.locator("keap-link [data-action=confirm-disconnect].primary").count(), 0);
  await page.locator("keap-link [data-action=confirm-disconnect]").click();
  await disconnected;
  await page.locator("keap-link [data-state=empty]").waitFor();
  assert.ok(await page.locator("keap-link a[data-central]").isVisible());
  assert.deepEqual(await mine("alice"), []);
  // The 204 has no body: reading it must raise nothing (an unhandled rejection here used to
  // follow every Disconnect; the page guard fails the test on one).
  await page.waitForTimeout(300);
  assert.deepEqual(await errors.events(), []);
  await shot(page, "disconnected");
  await page.close();
});

test("4. a needs_reauth link says so in plain words, and reconnecting restores it in place", async () => {
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
  assert.equal((await mine("dave"))[0].last_error.code, "refresh_token_invalid");

  const { page: again } = await openSettings("dave");
  const item = again.locator("keap-link li[data-status=needs_reauth]");
  await item.waitFor();
  assert.match(await item.textContent(), /Needs reconnect/);
  assert.match(await item.textContent(), /Keap needs you to sign in again to keep this connection working\./);
  assert.doesNotMatch(await item.textContent(), /refresh.token|refresh_token_invalid/i, "no jargon for the user");
  await shot(again, "needs-reauth");
  // Every sentence can be reworded by the page, these included.
  await again.evaluate(() => {
    const el = document.getElementById("keap");
    el.setAttribute("text-refresh-token-invalid", "Please sign in to Keap again, Dave.");
    el.refresh();
  });
  await again.locator("keap-link li[data-status=needs_reauth]", { hasText: "Please sign in to Keap again, Dave." }).waitFor();
  const bodies = connectBodies(again);
  await connectInPopup(again, { email: "cat@ef789.example", button: "reconnect" });
  await again.locator("keap-link li[data-status=active]").waitFor();
  assert.deepEqual(bodies, [{ sign_out_first: true, connection_id: before.id }], "Reconnect names its link");
  assert.match(await live(again), /Keap account reconnected\./, "a link restored, not a new one");
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
  await signInAtKeap(page, "ann@ab123.example");
  const back = page.waitForResponse((r) => r.url().startsWith(`${site.url}/settings?`));
  await page.click("button[value=allow]");
  assert.match((await back).url(), new RegExp(`^${site.url}/settings\\?keaplink=connected&connection_id=[A-Za-z0-9_-]{22}$`));
  await page.locator("keap-link li[data-status=active]").waitFor();
  assert.match(await live(page), /connected/i);
  // The widget read the outcome; the address bar loses it (no reload), and the message stays.
  await page.waitForFunction(() => !location.search.includes("keaplink"));
  assert.equal(page.url(), `${site.url}/settings`);
  assert.match(await live(page), /connected/i);
  await shot(page, "after-redirect");
  await page.close();
});

test("6. a hostile postMessage claiming success changes nothing", async () => {
  const { page } = await openSettings("frank");
  await page.evaluate(() => {
    window.__events = [];
    const el = document.getElementById("keap");
    for (const name of ["keaplink:connected", "keaplink:error"]) el.addEventListener(name, () => window.__events.push(name));
    window.__seen = [];
    window.addEventListener("message", (e) => window.__seen.push(e.origin));
  });
  // From the page's own origin, and from the Worker's origin in a window the widget did not open.
  await page.evaluate(() => window.postMessage({ type: "keaplink:result", status: "connected", connection_id: "forged" }, "*"));
  const [other] = await Promise.all([
    page.waitForEvent("popup"),
    page.evaluate((url) => { window.open(url, "not-the-widgets"); }, `${stack.url}/healthz`),
  ]);
  await other.waitForLoadState();
  await other.evaluate(() => window.opener.postMessage({ type: "keaplink:result", status: "connected", connection_id: "forged" }, "*"));
  await other.close();
  await page.waitForTimeout(300);
  assert.deepEqual(await page.evaluate(() => window.__seen), [site.url, stack.url], "both forgeries arrived");
  assert.deepEqual(await page.evaluate(() => window.__events), []);
  assert.equal(await page.locator("keap-link [data-state=empty]").count(), 1);
  assert.equal(await live(page), "");
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
  pages.expect(/^Failed to load resource: net::ERR_FAILED/, /^keaplink: network /);
  const page = await context.newPage();
  const errors = await recordErrors(page);
  await page.route(`${stack.url}/v1/**`, (route) => route.abort());
  await page.goto(`${site.url}/settings?user=alice`);
  const err = page.locator("keap-link [data-state=error]");
  await err.waitFor();
  assert.match(await err.textContent(), /Could not reach/);
  assert.deepEqual((await errors.events()).map((d) => d.error), ["network"]);
  await shot(page, "error");
  await page.unroute(`${stack.url}/v1/**`);
  await page.locator("keap-link [data-action=retry]").click();
  await page.locator("keap-link [data-state=empty]").waitFor();
  await page.close();
});

// A refused session: the user reads what is true and no useless Try again; the developer gets the
// API's code and message, in the event and on the console.
for (const [kind, says, apiMessage] of [
  ["expired", "Your session has expired. Reload the page to sign in again.", /has expired/],
  ["long", "This page's keaplink session is not valid.", /longer than 3600 s/],
  ["audience", "This page's keaplink session is not valid.", /aud must be "keaplink"/],
]) {
  test(`9. a session refused as ${kind} says so, without a retry that cannot help`, async () => {
    pages.expect(failedLoad(401), /^keaplink: invalid_session /);
    const { page, errors } = await openSettings("alice", `&session=${kind}`);
    const err = page.locator("keap-link [data-state=error]");
    assert.equal(await err.textContent(), says);
    assert.equal(await page.locator("keap-link [data-action=retry]").count(), 0);
    const [event, ...more] = await errors.events();
    assert.deepEqual(more, []);
    assert.equal(event.error, "invalid_session");
    assert.match(event.message, apiMessage);
    assert.ok(
      errors.consoleErrors.some((line) => line.includes("invalid_session") && apiMessage.test(line)),
      `console.error has the code and message: ${errors.consoleErrors}`,
    );
    if (kind === "expired") await shot(page, "session-expired");
    await page.close();
  });
}

test("10. session-url: an expired session from the partner is renewed once, silently", async () => {
  pages.expect(failedLoad(401));
  const { page, errors } = await openSettings("hank", "&mode=session-url&stale=1");
  await page.locator("keap-link [data-state=empty]").waitFor();
  assert.equal(site.sessionCalls("hank"), 2, "the stale session, then a fresh one");
  assert.deepEqual(await errors.events(), []);
  await page.close();
});

test("11. closing the popup mid-flow puts the widget back as it was, with a short notice", async () => {
  pages.expect(/^keaplink: popup_closed /);
  const { page, errors } = await openSettings("gina");
  const { popup } = await openConsent(page, { email: "bob@cd456.example" });
  assert.match(await live(page), /Opening Keap/);
  await popup.close();
  // The widget polls every 0.5 s and allows 1 s for a message in flight: 10 s is generous.
  await page.locator("keap-link .live", { hasText: "The Keap window was closed before the connection was made." }).waitFor({ timeout: 10_000 });
  assert.equal(await page.locator("keap-link [data-state=empty] ~ button[data-action=connect]").count(), 1);
  assert.deepEqual((await errors.events()).map((d) => d.error), ["popup_closed"]);
  assert.deepEqual(await mine("gina"), []);
  await shot(page, "popup-closed");
  // And the next attempt goes through.
  await connectInPopup(page, { email: "bob@cd456.example" });
  await page.locator("keap-link li[data-status=active]").waitFor();
  assert.match(await live(page), /Keap account connected/);
  await page.close();
});

test("12. a connection the user cancels, or Keap fails, reads as a plain sentence; the code goes to the developer", async () => {
  pages.expect(/^keaplink: access_denied /, /^keaplink: keap_throttled /);
  const { page, errors } = await openSettings("ivan");
  await connectInPopup(page, { email: "ann@ab123.example", decision: "deny" });
  await page.locator("keap-link .live", { hasText: "You cancelled the connection." }).waitFor();
  assert.doesNotMatch(await live(page), /access_denied/);

  // Keap throttles the code exchange: the callback reports keap_throttled.
  const { popup } = await openConsent(page, { email: "ann@ab123.example" });
  await stack.sandbox.fault("throttle");
  const closed = popup.waitForEvent("close");
  await popup.click("button[value=allow]");
  await closed;
  await page.locator("keap-link .live", { hasText: "Keap is busy right now. Please try again in a minute." }).waitFor();
  const events = await errors.events();
  assert.deepEqual(events.map((d) => d.error), ["access_denied", "keap_throttled"]);
  assert.deepEqual(events.map((d) => d.message), ["You cancelled the connection.", "Keap is busy right now. Please try again in a minute."]);
  assert.deepEqual(await mine("ivan"), []);
  await page.close();
});

test("13. identity_mismatch from the callback names both Keap users", async () => {
  pages.expect(/^keaplink: identity_mismatch /);
  const { page, errors } = await openSettings("jane");
  const popupPromise = page.waitForEvent("popup");
  await page.locator("keap-link [data-action=connect]").click();
  const popup = await popupPromise;
  await popup.waitForSelector("body[data-page]");
  // What the Worker's callback page will post for a reconnect as the wrong Keap user: sent from
  // a page of the Worker's origin in the widget's own popup, as the real one is.
  await popup.goto(`${stack.url}/healthz`);
  await popup.evaluate(() => window.opener.postMessage({
    type: "keaplink:result", status: "error", error: "identity_mismatch",
    signed_in: "bob@cd456.example", expected: "ann@ab123.example",
  }, "*"));
  // jane has no link the mismatch could be about (a forged case): the notice says it.
  await page.locator("keap-link .live", { hasText: "You signed in to Keap as bob@cd456.example, but this connection belongs to ann@ab123.example." }).waitFor();
  assert.deepEqual(await errors.events(), [{
    error: "identity_mismatch",
    message: "You signed in to Keap as bob@cd456.example, but this connection belongs to ann@ab123.example.",
    signed_in: "bob@cd456.example",
    expected: "ann@ab123.example",
  }]);
  await popup.close();
  await page.close();
});

test("14. colours follow the page's color-scheme, not the OS; theme forces one", async () => {
  const colours = async (query, colorScheme) => {
    const page = await context.newPage();
    await page.emulateMedia({ colorScheme });
    await page.goto(`${site.url}/settings?user=alice${query}`);
    const box = page.locator("keap-link section.kl");
    await page.locator("keap-link [data-state=empty]").waitFor();
    const bg = await box.evaluate((el) => getComputedStyle(el).backgroundColor);
    await page.close();
    return bg;
  };
  const light = "rgb(255, 255, 255)";
  const dark = "rgb(27, 31, 39)";
  assert.equal(await colours("", "dark"), light, "a light page keeps a light widget in a dark OS");
  assert.equal(await colours("&scheme=dark", "light"), dark, "a dark page gets a dark widget");
  assert.equal(await colours("&scheme=light%20dark", "dark"), dark, "a page that follows the OS");
  assert.equal(await colours("&scheme=light%20dark", "light"), light);
  assert.equal(await colours("&theme=dark", "light"), dark, "theme=dark on a light page");
  assert.equal(await colours("&scheme=dark&theme=light", "dark"), light, "theme=light on a dark page");
  assert.equal(await colours("&theme=auto", "dark"), dark, "theme=auto follows the OS");
  assert.equal(await colours("&scheme=dark&theme=auto", "light"), light);
});

/** Links `user` to `email` through the widget (a short-lived token when `stale`), and closes the page. */
async function linkThroughWidget(user, email, { stale = false } = {}) {
  if (stale) await stack.sandbox.configure({ expires_in: 30 });
  const { page } = await openSettings(user);
  await connectInPopup(page, { email });
  if (stale) await stack.sandbox.configure({ expires_in: 86400 });
  await page.locator("keap-link li[data-status=active]").waitFor();
  await page.close();
  const [link] = await mine(user);
  return link;
}

const token = (user) => call(stack.url, "POST", "/v1/token", { token: partner.api_key, body: { user } });

test("15. Reconnect as another Keap user: both emails, nothing stored; Try again as the right user restores the same link", async () => {
  pages.expect(/^keaplink: identity_mismatch /);
  // A dead link of kim's to Ann's app (ann's refresh tokens revoked; a stale token makes the
  // next token request refresh and find it dead).
  const linked = await linkThroughWidget("kim", "ann@ab123.example", { stale: true });
  await stack.sandbox.revoke("ann@ab123.example");
  assert.equal((await token("kim")).status, 409);
  const [dead] = await mine("kim");
  assert.equal(dead.status, "needs_reauth");

  const { page, errors } = await openSettings("kim");
  const bodies = connectBodies(page);
  await page.locator("keap-link li[data-status=needs_reauth]").waitFor();
  // Amy works in the same Keap app; the link is Ann's.
  const { first } = await connectInPopup(page, { email: "amy@ab123.example", button: "reconnect" });
  assert.equal(first, "login", "signed out first");
  const box = page.locator(`keap-link li[data-connection="${linked.id}"] [data-mismatch]`);
  await box.waitFor();
  assert.equal(await box.getAttribute("role"), "alert");
  assert.equal(
    await box.locator("p").first().textContent(),
    "You signed in to Keap as amy@ab123.example, but this connection belongs to ann@ab123.example.",
  );
  assert.match(await box.textContent(), /Nothing was changed\. Try again and sign in as ann@ab123\.example/);
  assert.ok(await box.locator("[data-action=try-again]").isVisible());
  assert.ok(await box.locator("[data-action=link-anew]").isVisible());
  assert.equal(await live(page), "", "said once, on the link itself");
  assert.equal(await page.evaluate(() => document.getElementById("keap").shadowRoot.activeElement?.dataset.action), "try-again", "keyboard focus on the way on");
  assert.deepEqual(bodies, [{ sign_out_first: true, connection_id: linked.id }]);
  const [event, ...more] = await errors.events();
  assert.deepEqual(more, []);
  assert.deepEqual(
    { error: event.error, signed_in: event.signed_in, expected: event.expected },
    { error: "identity_mismatch", signed_in: "amy@ab123.example", expected: "ann@ab123.example" },
  );
  assert.deepEqual(await mine("kim"), [dead], "nothing stored: the same dead link");
  await shootWidget(page, "mismatch");

  // Try again, as Ann: a new sign-out-first reconnect of the same link.
  const { first: again } = await connectInPopup(page, { email: "ann@ab123.example", button: "try-again" });
  assert.equal(again, "login", "signed out of Amy's Keap session first");
  assert.deepEqual(bodies[1], { sign_out_first: true, connection_id: linked.id });
  const item = page.locator(`keap-link li[data-connection="${linked.id}"][data-status=active]`);
  await item.waitFor();
  assert.equal(await page.locator("keap-link [data-mismatch]").count(), 0);
  assert.equal(await item.locator("[data-linked]").textContent(), "Linked as ann@ab123.example in Ann's Bakery (ab123).");
  assert.equal(await item.locator("[data-action=undo]").count(), 0, "no one-click undo of a link that was there before");
  const [restored] = await mine("kim");
  assert.equal(restored.id, linked.id, "same id");
  assert.equal(restored.status, "active");
  assert.equal(restored.keap_user.email, "ann@ab123.example");
  await page.close();
});

test("16. a connect that lands on a linked app as someone else shows the mismatch there; Disconnect and link anew replaces it", async () => {
  pages.expect(/^keaplink: identity_mismatch /);
  const ann = await linkThroughWidget("lou", "ann@ab123.example");
  const { page } = await openSettings("lou");
  const events = await recordEvents(page, "keaplink:connected", "keaplink:disconnected", "keaplink:error");
  const bodies = connectBodies(page);
  // "Connect another Keap account", as Amy: Keap's answer is Ann's app again, which lou has.
  await connectInPopup(page, { email: "amy@ab123.example", button: "connect" });
  const item = page.locator(`keap-link li[data-connection="${ann.id}"]`);
  await item.locator("[data-mismatch]").waitFor();
  assert.deepEqual(bodies, [{ sign_out_first: true }], "a plain connect names no link");

  await item.locator("[data-action=link-anew]").click();
  const confirm = item.locator("[data-action=confirm-anew]");
  await confirm.waitFor();
  assert.equal(await page.evaluate(() => document.getElementById("keap").shadowRoot.activeElement?.dataset.action), "confirm-anew", "focus on the confirmation");
  assert.match(await item.textContent(), /Disconnect ann@ab123\.example from this app and link another Keap account\?/);
  const { first } = await connectInPopup(page, { email: "amy@ab123.example", button: "confirm-anew" });
  assert.equal(first, "login");
  const amy = page.locator("keap-link li[data-status=active]", { hasText: "amy@ab123.example" });
  await amy.waitFor();
  const links = await mine("lou");
  assert.equal(links.length, 1);
  assert.equal(links[0].keap_user.email, "amy@ab123.example");
  assert.notEqual(links[0].id, ann.id, "a new link, Ann's is gone");
  assert.deepEqual((await events()).map((e) => [e.name, e.connection_id ?? e.error]), [
    ["keaplink:error", "identity_mismatch"],
    ["keaplink:disconnected", ann.id],
    ["keaplink:connected", links[0].id],
  ]);
  assert.equal(await amy.locator("[data-linked]").textContent(), "Linked as amy@ab123.example in Ann's Bakery (ab123). Not you? Disconnect it");
  await page.close();
});

test("17. Not you? One click undoes the link just made, in the widget and the API", async () => {
  const { page } = await openSettings("max");
  const events = await recordEvents(page, "keaplink:connected", "keaplink:disconnected");
  await connectInPopup(page, { email: "bob@cd456.example" });
  const linked = page.locator("keap-link [data-linked]");
  await linked.waitFor();
  assert.equal(await linked.textContent(), "Linked as bob@cd456.example in Bob's Bikes (cd456). Not you? Disconnect it");
  const [link] = await mine("max");
  await shootWidget(page, "not-you");
  await linked.locator("[data-action=undo]").click();
  await page.locator("keap-link [data-state=empty]").waitFor();
  assert.deepEqual(await events(), [
    { name: "keaplink:connected", connection_id: link.id },
    { name: "keaplink:disconnected", connection_id: link.id },
  ]);
  assert.deepEqual(await mine("max"), [], "gone from the API too");
  assert.match(await live(page), /^Disconnected\./);
  assert.ok(await page.locator("keap-link a[data-central]").isVisible(), "and where to remove the app in Keap");
  await page.close();
});

test("18. a link at risk says calmly to reconnect before the date, in the reader's locale; Reconnect clears it", async () => {
  const linked = await linkThroughWidget("nia", "cat@ef789.example", { stale: true });
  // One refresh fails (Keap answers 500): transient, but with under a week left on the refresh
  // token the link is at risk.
  await stack.sandbox.fault("server_error", 1);
  const failed = await token("nia");
  assert.ok(failed.status >= 500, `the refresh failed: ${failed.status} ${failed.text}`);
  const [risky] = await mine("nia");
  assert.equal(risky.status, "active");
  assert.ok(risky.reconnect_before, "the API says by when");

  const { page } = await openSettings("nia");
  const item = page.locator(`keap-link li[data-connection="${linked.id}"]`);
  const soon = item.locator("[data-reconnect-before]");
  await soon.waitFor();
  const date = await page.evaluate((iso) => new Date(iso).toLocaleString("default", { dateStyle: "medium", timeStyle: "short" }), risky.reconnect_before);
  assert.equal(await soon.textContent(), `Reconnect before ${date} to keep this connection working.`);
  assert.equal(await item.locator(".app").textContent(), "Cat's Cafe (ef789)");
  assert.equal(await item.locator(".badge").textContent(), "Connected", "it still works");
  // Calm: the page's own text colour, not the error one; the Reconnect button beside it.
  const colours = await item.evaluate((li) => [getComputedStyle(li).color, getComputedStyle(li.querySelector("[data-reconnect-before]")).color]);
  assert.equal(colours[1], colours[0]);
  assert.equal(await item.locator(".warn").count(), 0);
  assert.ok(await item.locator("[data-action=reconnect]").isVisible());
  await shootWidget(page, "expiring");

  await connectInPopup(page, { email: "cat@ef789.example", button: "reconnect" });
  await item.locator("[data-linked]").waitFor();
  assert.equal(await item.locator("[data-action=undo]").count(), 0);
  assert.equal(await item.locator("[data-reconnect-before]").count(), 0);
  const [after] = await mine("nia");
  assert.equal(after.id, linked.id);
  assert.equal(after.reconnect_before, null);
  assert.equal(after.last_error, null);
  await page.close();
});

test("19. popup blocked: a same-tab reconnect as the wrong person shows the mismatch on its link; Try again restores it", async () => {
  pages.expect(/^keaplink: identity_mismatch /);
  const linked = await linkThroughWidget("oli", "bob@cd456.example", { stale: true });
  await stack.sandbox.revoke("bob@cd456.example");
  assert.equal((await token("oli")).status, 409);
  const page = await context.newPage();
  await page.addInitScript(() => { window.open = () => null; });
  const bodies = connectBodies(page);
  await page.goto(`${site.url}/settings?user=oli`);
  const item = page.locator(`keap-link li[data-connection="${linked.id}"]`);
  await item.locator("[data-action=reconnect]").waitFor();
  /** Clicks `action` on the link and signs in to Keap in this same tab as `email`. */
  const viaKeap = async (action, email) => {
    await Promise.all([page.waitForURL(/\/(logout|app\/oauth)/), item.locator(`[data-action=${action}]`).click()]);
    await page.waitForSelector('body[data-page="login"]');
    await page.fill("input[name=email]", email);
    await page.fill("input[name=password]", "keap");
    await page.click("button[type=submit]");
    await page.waitForSelector('body[data-page="consent"]');
    const back = page.waitForResponse((r) => r.url().startsWith(`${site.url}/settings?keaplink=`));
    await page.click("button[value=allow]");
    return new URL((await back).url()).search;
  };
  // Amy: another person, and another app than Bob's.
  assert.equal(await viaKeap("reconnect", "amy@ab123.example"), "?keaplink=error&reason=identity_mismatch", "no emails in a URL");
  // The return does not say who signed in; the widget remembered which link it was for.
  const box = item.locator("[data-mismatch]");
  await box.waitFor();
  assert.match(await box.textContent(), /^You signed in to Keap as someone other than the owner of this connection\.Nothing was changed\. Try again and sign in as bob@cd456\.example/);
  assert.equal((await mine("oli"))[0].status, "needs_reauth", "nothing stored");

  assert.match(await viaKeap("try-again", "bob@cd456.example"), /^\?keaplink=connected&connection_id=[A-Za-z0-9_-]{22}$/);
  await item.locator("[data-linked]").waitFor();
  assert.equal(new URL(page.url()).search, "", "the outcome is cleaned from the address bar");
  assert.equal(await item.locator("[data-linked]").textContent(), "Linked as bob@cd456.example in Bob's Bikes (cd456).");
  // Restored: the line says when, beside the first link's time.
  assert.match(await item.locator("[data-reconnected]").textContent(), /^Reconnected \S/);
  assert.match(await item.locator(".muted").first().textContent(), /^Connected .+ · Reconnected .+$/);
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, "the attempt's note is read once");
  const returnTo = `${site.url}/settings`;
  assert.deepEqual(bodies, [
    { sign_out_first: true, return_to: returnTo, connection_id: linked.id },
    { sign_out_first: true, return_to: returnTo, connection_id: linked.id },
  ]);
  const [after] = await mine("oli");
  assert.equal(after.id, linked.id);
  assert.equal(after.status, "active");
  await page.close();
});

test("20. the right person picking another app on Keap's chooser is told which app the link is for", async () => {
  pages.expect(/^keaplink: identity_mismatch /);
  const linked = await linkThroughWidget("pia", "dan@gh012.example", { stale: true });
  assert.equal(linked.keap_app, "gh012", "the chooser's first app");
  await stack.sandbox.revoke("dan@gh012.example");
  assert.equal((await token("pia")).status, 409);
  const { page, errors } = await openSettings("pia");
  const { popup } = await openConsent(page, { email: "dan@gh012.example", button: "reconnect" });
  await popup.selectOption("select[name=app]", "ij345");
  const closed = popup.waitForEvent("close");
  await popup.click("button[value=allow]");
  await closed;
  const box = page.locator(`keap-link li[data-connection="${linked.id}"] [data-mismatch]`);
  await box.waitFor();
  const says = "You signed in to Keap as dan@gh012.example but chose another Keap app; this connection is for Dan's Deli (gh012).";
  assert.equal(await box.locator("p").first().textContent(), says);
  assert.deepEqual((await errors.events()).map((e) => e.message), [says]);
  assert.deepEqual((await mine("pia")).map((c) => [c.id, c.keap_app, c.status]), [[linked.id, "gh012", "needs_reauth"]], "no link to the other app");
  await page.close();
});
