// The sandbox as a partner's rehearsal stage, in headless Chromium: the page its printed URL
// opens (its users and what each is for, its apps, its controls), and its Account Central, which
// the widget's Account Central link opens under ./scripts/dev (KEAP_ACCOUNT_CENTRAL_URL):
// removing the app there revokes the tokens, and the widget then asks for a Reconnect. Also the
// dev webhook receiver's answer to a browser.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { ROOT, artifactPath, freePort, startStack } from "./harness.mjs";
import { call, putPartner } from "./client.mjs";
import { startPartnerSite } from "./partner.mjs";
import { failOnPageErrors, launchProfile, signInAtKeap } from "./browser.mjs";

/** Each sandbox user and a word of what the page says they are for. */
const USERS_FOR_TRYING = {
  "ann@ab123.example": /first link/,
  "amy@ab123.example": /identity lock/,
  "bob@cd456.example": /same browser/,
  "cat@ef789.example": /independent link/,
  "dan@gh012.example": /two Keap apps/,
};

const pages = failOnPageErrors();
let stack;
let site;
let partner;
let context;
let central;

before(async () => {
  // As scripts/dev wires it: the widget's Account Central link is the sandbox's.
  stack = await startStack({ workerVars: (sandbox) => ({ KEAP_ACCOUNT_CENTRAL_URL: `${sandbox}/app/central/home` }) });
  central = `${stack.sandbox.url}/app/central/home`;
  site = await startPartnerSite({ workerUrl: stack.url });
  partner = await putPartner(stack.url, "acme", { origins: [site.url], returnUrls: [`${site.url}/settings`] });
  site.setPartner(partner);
  context = pages.watch(await launchProfile());
  for (const origin of [stack.sandbox.url, stack.url]) {
    await context.route(`${origin}/favicon.ico`, (route) => route.fulfill({ status: 204 }));
  }
});
after(async () => {
  await context?.close();
  await site?.stop();
  await stack?.stop();
});

test("the sandbox's URL opens a page with its users and what each is for, its apps and its controls", async () => {
  const page = await context.newPage();
  await page.goto(`${stack.sandbox.url}/`);
  assert.equal(await page.getAttribute("body", "data-page"), "sandbox");
  const users = await page.locator("#users tr[data-user]").evaluateAll((rows) => rows.map((r) => [r.dataset.user, r.cells[3].textContent]));
  assert.deepEqual(users.map(([u]) => u).sort(), Object.keys(USERS_FOR_TRYING).sort());
  for (const [email, purpose] of users) assert.match(purpose, USERS_FOR_TRYING[email], email);
  const apps = await page.locator("#apps tr[data-app]").evaluateAll((rows) => rows.map((r) => r.dataset.app));
  assert.deepEqual(apps, ["ab123", "cd456", "ef789", "gh012", "ij345"]);
  const controls = await page.locator("#controls tr[data-control]").evaluateAll((rows) => rows.map((r) => r.dataset.control));
  for (const c of ["POST /__sandbox/revoke", "POST /__sandbox/revoke-access", "POST /__sandbox/quota", "POST /__sandbox/faults", "POST /__sandbox/api-faults"]) {
    assert.ok(controls.includes(c), `${c} in ${controls.join(", ")}`);
  }
  await page.setViewportSize({ width: 1000, height: 800 });
  await page.screenshot({ path: await artifactPath("sandbox-landing.png"), fullPage: true });
  // The way to Account Central.
  await page.click("a[href='/app/central/home']");
  await page.waitForSelector("body[data-page=central-login]");
  await page.close();
});

test("removing the app in the sandbox's Account Central revokes the link's tokens; the widget then asks for a Reconnect", async () => {
  const page = await context.newPage();
  await page.goto(`${site.url}/settings?user=alice`);
  await page.locator("keap-link [data-state]:not([data-state=loading])").first().waitFor();
  const popupPromise = page.waitForEvent("popup");
  await page.locator("keap-link [data-action=connect]").click();
  const popup = await popupPromise;
  await signInAtKeap(popup, "ann@ab123.example");
  const closed = popup.waitForEvent("close");
  await popup.click("button[value=allow]");
  await closed;
  const item = page.locator("keap-link li[data-status=active]");
  await item.waitFor();
  const id = await item.getAttribute("data-connection");
  assert.ok(id);

  // Ann, signed in to Keap in this browser since the connect, opens Account Central.
  const keap = await context.newPage();
  await keap.goto(central);
  assert.equal(await keap.getAttribute("body", "data-page"), "central");
  assert.match(await keap.textContent("#who"), /Ann/);
  const app = keap.locator("section[data-app=ab123]");
  assert.ok(await app.locator("[data-connected]").isVisible(), "keaplink's client is a connected app");
  await keap.screenshot({ path: await artifactPath("sandbox-central.png"), fullPage: true });
  await app.locator("button[name=app]").click();
  await keap.waitForSelector("body[data-page=central]");
  assert.equal(await keap.locator("section[data-app=ab123] [data-connected]").count(), 0);
  assert.match(await keap.locator("section[data-app=ab123]").textContent(), /No connected apps/);

  // keaplink finds out at its next refresh (forced here, as the sweep or a token request would).
  const r = await call(stack.url, "POST", `/v1/connections/${id}/refresh`, { token: partner.api_key });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.status, "needs_reauth");
  assert.equal(r.json.last_error.code, "refresh_token_invalid");
  await page.evaluate(() => document.getElementById("keap").refresh());
  const reauth = page.locator("keap-link li[data-status=needs_reauth]");
  await reauth.waitFor();
  assert.match(await reauth.textContent(), /sign in again/);
  assert.ok(await reauth.locator("[data-action=reconnect]").isVisible());

  // The widget's Account Central link (after a Disconnect) is the sandbox's page.
  await reauth.locator("[data-action=disconnect]").click();
  await page.locator("keap-link [data-action=confirm-disconnect]").click();
  const link = page.locator("keap-link a[data-central]");
  await link.waitFor();
  assert.equal(await link.getAttribute("href"), central);
  await keap.close();
  await page.close();
});

test("the dev webhook receiver tells a browser what it is, and refuses what is not a signed event", async () => {
  const port = await freePort();
  const proc = spawn(process.execPath, [join(ROOT, "scripts", "webhook-receiver.mjs"), String(port)], { stdio: ["ignore", "pipe", "pipe"] });
  try {
    let out = "";
    proc.stdout.on("data", (d) => { out += d; });
    for (let i = 0; i < 100 && !out.includes("Webhook receiver:"); i++) await new Promise((r) => setTimeout(r, 50));
    assert.match(out, new RegExp(`http://127\\.0\\.0\\.1:${port}/hooks`));
    const page = await context.newPage();
    const res = await page.goto(`http://127.0.0.1:${port}/hooks`);
    assert.equal(res.status(), 200);
    assert.match(res.headers()["content-type"], /^text\/plain/);
    const text = await page.textContent("body");
    assert.match(text, /keaplink's demo webhook receiver/);
    assert.match(text, /POSTs the demo partner's events here/);
    await page.close();
    const unsigned = await fetch(`http://127.0.0.1:${port}/hooks`, { method: "POST", body: "{}" });
    assert.equal(unsigned.status, 400);
    const put = await fetch(`http://127.0.0.1:${port}/hooks`, { method: "PUT", body: "{}" });
    assert.equal(put.status, 405);
    assert.equal(put.headers.get("allow"), "GET, HEAD, POST");
  } finally {
    proc.kill();
  }
});
