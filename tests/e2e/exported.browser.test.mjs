// An exported link as people see it, in headless Chromium: the user's widget says the link is
// managed elsewhere (no Reconnect, Disconnect still there), and the partner's console shows it
// as Exported on its list and on its own page with the export in its timeline. Screenshots go to
// tests/artifacts/exported-*.png.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { ADMIN_TOKEN, startStack, artifactPath } from "./harness.mjs";
import { call, putPartner } from "./client.mjs";
import { startPartnerSite } from "./partner.mjs";
import { launchBrowser, failOnPageErrors } from "./browser.mjs";

const pages = failOnPageErrors();
let stack;
let site;
let partner;
let browser;
let linkId;

before(async () => {
  stack = await startStack();
  site = await startPartnerSite({ workerUrl: stack.url });
  partner = await putPartner(stack.url, "acme", { name: "Acme Booking", origins: [site.url], returnUrls: [`${site.url}/settings`], extra: { export_enabled: true } });
  site.setPartner(partner);
  // A link the partner held (tokens minted "elsewhere" by the sandbox), imported, then exported.
  const minted = await fetch(`${stack.sandbox.url}/__sandbox/mint`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ email: "ann@ab123.example" }),
  });
  const [t] = (await minted.json()).tokens;
  const started = await call(stack.url, "POST", "/v1/imports", { token: partner.api_key, body: { links: [{ user: "erin", refresh_token: t.refresh_token }] } });
  assert.equal(started.status, 202, started.text);
  for (let i = 0; i < 200; i++) {
    const r = await call(stack.url, "GET", `/v1/imports/${started.json.import_id}`, { token: partner.api_key });
    if (r.json.status === "done") {
      linkId = r.json.items[0].connection_id;
      break;
    }
    await new Promise((r2) => setTimeout(r2, 200));
  }
  assert.ok(linkId, "imported");
  const out = await call(stack.url, "POST", "/v1/connections/export", { token: partner.api_key, body: { connection_ids: [linkId] } });
  assert.equal(out.status, 200, out.text);
  assert.equal(out.json.links.length, 1);
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await site?.stop();
  await stack?.stop();
});

test("the widget shows an exported link as managed elsewhere, with no Reconnect", async () => {
  const context = pages.watch(await browser.newContext({ viewport: { width: 640, height: 600 } }));
  const page = await context.newPage();
  await page.route(`${stack.url}/favicon.ico`, (route) => route.fulfill({ status: 204 }));
  await page.goto(`${site.url}/settings?user=erin`);
  const item = page.locator(`keap-link >> li[data-connection="${linkId}"]`);
  await item.waitFor();
  assert.equal(await item.getAttribute("data-status"), "exported");
  const text = (await item.textContent()).replace(/\s+/g, " ");
  assert.match(text, /Managed elsewhere/);
  assert.match(text, /managed by the app directly/);
  assert.equal(await item.locator('button[data-action="reconnect"]').count(), 0, "nothing to reconnect here");
  assert.equal(await item.locator('button[data-action="disconnect"]').count(), 1);
  await page.screenshot({ path: await artifactPath("exported-widget.png"), fullPage: true });
  await context.close();
});

test("the console lists the link as Exported, and its page shows the export in the timeline", async () => {
  const context = pages.watch(await browser.newContext({ viewport: { width: 1180, height: 700 } }));
  const page = await context.newPage();
  await page.goto(`${stack.url}/console/`);
  await page.getByLabel("API key").fill(partner.api_key);
  await page.getByRole("button", { name: "Sign in" }).click();
  const row = page.locator("#results tbody tr").first();
  await row.waitFor();
  assert.match((await row.textContent()).replace(/\s+/g, " "), /Exported/);
  await page.goto(`${stack.url}/console/#link/${linkId}`);
  const badge = page.locator(".badge", { hasText: "Exported" }).first();
  await badge.waitFor();
  assert.match(await page.locator("[data-exported]").textContent(), /Delete it once your cut-over is done/);
  assert.equal(await page.locator('button[data-action="refresh"]').count(), 0, "nothing to refresh");
  assert.equal(await page.locator('button[data-action="repair"]').count(), 0, "nothing to repair");
  assert.equal(await page.locator('button[data-action="disconnect"]').count(), 1);
  const timeline = page.locator('[data-event="exported"]');
  await timeline.first().waitFor();
  assert.equal(await page.locator('[data-event="imported"]').count(), 1, "the import is on the timeline too");
  await page.screenshot({ path: await artifactPath("exported-console-link.png"), fullPage: true });
  await context.close();
  // The operator's view is the same link.
  const admin = await call(stack.url, "GET", `/v1/connections/${linkId}`, { token: ADMIN_TOKEN, headers: { "keaplink-partner": "acme" } });
  assert.equal(admin.json.status, "exported");
});
