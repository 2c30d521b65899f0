// Repair links in Chromium, as the user meets one: the link comes from a connection.needs_reauth
// webhook (the partner's back-end would mail it) and is opened in a fresh profile that has never
// seen the partner's page. The page under its own strict CSP (no console error, readable at
// 390 px, axe-core finds nothing serious), its button through Keap's sign-out hop to the
// restored page; then the same link used, an expired one, an unknown one. Screenshots go to
// tests/artifacts/, and over docs/repair-{page,restored,mismatch}.png when KEAPLINK_DOCS_SCREENSHOTS=1.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startStack, artifactPath, ROOT } from "./harness.mjs";
import { call, linkUser, logEvents, putPartner } from "./client.mjs";
import { ofType, startReceiver, verifyDelivery } from "./receiver.mjs";
import { withLocalKv } from "./seed.mjs";
import { launchProfile, failOnPageErrors, failedLoad } from "./browser.mjs";

const ORIGIN = "https://acme.example";
const pages = failOnPageErrors();
let stack;
let acme;
let receiver;
let kvDir;
let context;
let repairUrl;
let link;

/** axe-core's browser build, injected into the page under test. */
async function axeSource() {
  try {
    return await readFile(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
  } catch {
    throw new Error("npm package axe-core (4.14.1) is missing: npm install --no-save axe-core@4.14.1");
  }
}

before(async () => {
  kvDir = await mkdtemp(join(tmpdir(), "keaplink-repair-"));
  receiver = await startReceiver();
  stack = await startStack({ persistTo: kvDir, workerVars: { WEBHOOK_ALLOW_HTTP: "true", WEBHOOK_BACKOFF_SECS: "1" } });
  acme = await putPartner(stack.url, "acme", {
    origins: [ORIGIN],
    name: "Acme Bookings",
    extra: { webhook_url: receiver.url, webhook_repair_links: true },
  });
  // A link that dies: a stale token, so the next token request refreshes, with Ann's refresh
  // tokens revoked.
  await stack.sandbox.configure({ expires_in: 30 });
  const linked = await linkUser(stack, acme, "u1", "ann@ab123.example", { origin: ORIGIN });
  await stack.sandbox.configure({ expires_in: 86400 });
  await stack.sandbox.revoke("ann@ab123.example");
  const t = await call(stack.url, "POST", "/v1/token", { token: acme.api_key, body: { user: "u1" } });
  assert.equal(t.status, 409, t.text);
  // The webhook goes through the queue: a minute is generous even on 2 busy cores.
  const [hit] = await receiver.waitFor((d) => ofType("connection.needs_reauth")(d), "connection.needs_reauth", 60_000);
  const event = verifyDelivery(hit, acme.session_secret);
  assert.equal(event.connection.id, linked.connectionId);
  repairUrl = event.repair_url;
  link = event.connection;
  context = pages.watch(await launchProfile());
  // The stand-in Keap has no favicon; a 404 there is not keaplink's.
  await context.route(`${stack.sandbox.url}/favicon.ico`, (route) => route.fulfill({ status: 204 }));
});
after(async () => {
  await context?.close();
  await stack?.stop();
  await receiver?.stop();
  if (kvDir) await rm(kvDir, { recursive: true, force: true });
});

async function screenshot(page, name) {
  const image = await page.screenshot({ fullPage: true, animations: "disabled", caret: "hide" });
  await writeFile(await artifactPath(name), image);
  if (process.env.KEAPLINK_DOCS_SCREENSHOTS === "1") await writeFile(join(ROOT, "docs", name), image);
}

/** A phone's width: nothing wider than the window, so nothing scrolls sideways. */
async function assertFitsPhone(page) {
  await page.setViewportSize({ width: 390, height: 844 });
  const { scroll, client } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    client: document.documentElement.clientWidth,
  }));
  assert.ok(scroll <= client, `no horizontal scroll at 390 px: ${scroll} > ${client}`);
}

/** axe-core run in the page (by the DevTools protocol, which the page's CSP does not govern). */
async function assertAccessible(page) {
  await page.evaluate(await axeSource());
  const found = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.length }));
  });
  if (found.length) console.log(`axe-core on ${new URL(page.url()).pathname.split("/")[1]}: ${JSON.stringify(found)}`);
  const bad = found.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(bad, [], `axe-core: ${JSON.stringify(found)}`);
  return found;
}

/**
 * Whether the page's CSP keeps its form from going on to Keap. Browsers check `form-action` on
 * every redirect of the submission, and the button's answer is a 303 to Keap's sign-out hop, so
 * `form-action 'self'` alone would block the button (fetch-based tests cannot see it).
 */
function formActionBlocksKeap(csp) {
  const sources = /(?:^|;)\s*form-action ([^;]*)/.exec(csp)?.[1]?.trim().split(/\s+/);
  if (!sources) return false;
  const keap = new URL(stack.sandbox.url);
  return !sources.some((s) => s === "*" || s === `${keap.protocol}` || s.replace(/\/$/, "") === keap.origin);
}

/** Presses the page's button; resolves once Keap's login shows, and fails on the CSP refusal. */
async function pressButton(page) {
  const csp = (await call(stack.url, "GET", new URL(page.url()).pathname)).headers.get("content-security-policy") ?? "";
  assert.ok(!formActionBlocksKeap(csp), `the page's CSP must let its button go on to Keap: ${csp}`);
  const refused = new Promise((resolve) => page.on("console", (m) => {
    if (/Content Security Policy directive: "form-action/.test(m.text())) resolve(m.text());
  }));
  const login = page.waitForSelector('body[data-page="login"]').then(() => "Keap's login");
  await page.click("button");
  assert.equal(await Promise.race([login, refused]), "Keap's login");
}

const timeline = async () => (await call(stack.url, "GET", `/v1/connections/${link.id}`, { token: acme.api_key })).json.events.map((e) => e.type);

test("the repair page: partner, app and who to sign in as, one button; GET spends nothing; strict CSP, phone width, accessible", async () => {
  const page = await context.newPage();
  const res = await page.goto(repairUrl);
  assert.equal(res.status(), 200);
  const csp = res.headers()["content-security-policy"];
  assert.match(csp, /default-src 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline/);
  const text = await page.textContent("main");
  assert.match(text, /Acme Bookings needs you to sign in to Keap again/);
  assert.match(text, /Ann's Bakery \(ab123\)/);
  assert.match(text, /Sign in as ann@ab123\.example/);
  assert.equal(await page.locator("button").count(), 1);
  assert.equal(await page.getAttribute("form", "method"), "post");
  // The Worker's pages name no icon; a browser's own ask for /favicon.ico finds one (no 404 and
  // no log line per page). Under this page's CSP (no img-src) Chromium does not ask at all.
  const icon = await fetch(`${stack.url}/favicon.ico`);
  assert.equal(icon.status, 200);
  assert.match(icon.headers.get("content-type"), /icon/);
  assert.deepEqual(Buffer.from(await icon.arrayBuffer()).subarray(0, 4), Buffer.from([0, 0, 1, 0]), "an ICO");
  assert.deepEqual(logEvents(stack.worker, "request").filter((e) => e.path === "/favicon.ico"), [], "answered before the Worker runs");

  // Opened again (a mail scanner, the user twice): still usable, nothing spent.
  await page.reload();
  assert.equal((await call(stack.url, "GET", new URL(repairUrl).pathname)).status, 200);
  assert.ok(!(await timeline()).includes("repair_link_used"), "no GET spent it");
  assert.equal((await page.locator("button").textContent()).trim(), "Reconnect Keap");

  await page.setViewportSize({ width: 600, height: 360 });
  await screenshot(page, "repair-page.png");
  await assertFitsPhone(page);
  await assertAccessible(page);
  await page.close();
});

test("the button: through Keap's sign-out hop to its login, consent, and the restored page; same link id", async () => {
  const page = await context.newPage();
  const visited = [];
  page.on("request", (r) => { if (r.isNavigationRequest()) visited.push(new URL(r.url()).pathname); });
  await page.goto(repairUrl);
  await pressButton(page);
  assert.ok(visited.includes("/logout"), `signed out first: ${visited}`);
  await page.fill("input[name=email]", "ann@ab123.example");
  await page.fill("input[name=password]", "keap");
  await Promise.all([page.waitForSelector('body[data-page="consent"]'), page.click("button[type=submit]")]);
  await Promise.all([page.waitForURL(`${stack.url}/oauth/callback?**`), page.click("button[value=allow]")]);
  assert.equal(await page.textContent("h1"), "Your Keap account is reconnected");
  assert.match(await page.textContent("main"), /Acme Bookings works with Ann's Bakery \(ab123\) again/);
  const [c] = (await call(stack.url, "GET", "/v1/connections", { token: acme.api_key })).json.connections;
  assert.equal(c.id, link.id, "the same link");
  assert.equal(c.status, "active");
  await page.setViewportSize({ width: 600, height: 220 });
  await screenshot(page, "repair-restored.png");
  await assertFitsPhone(page);
  await assertAccessible(page);
  await page.close();
});

test("the same link again says it was used, and its button does nothing", async () => {
  pages.expect(failedLoad(410));
  const page = await context.newPage();
  const res = await page.goto(repairUrl);
  assert.equal(res.status(), 410);
  assert.match(await page.textContent("main"), /already been used/);
  assert.equal(await page.locator("button").count(), 0);
  await assertFitsPhone(page);
  await assertAccessible(page);
  await page.close();
});

test("a repair link signed in as someone else restores nothing, names both people, and offers Try again, which restores it", async () => {
  const made = await call(stack.url, "POST", `/v1/connections/${link.id}/repair-link`, { token: acme.api_key, body: {} });
  assert.equal(made.status, 200, made.text);
  const page = await context.newPage();
  await page.goto(made.json.url);
  await pressButton(page);
  await page.fill("input[name=email]", "amy@ab123.example");
  await page.fill("input[name=password]", "keap");
  await Promise.all([page.waitForSelector('body[data-page="consent"]'), page.click("button[type=submit]")]);
  pages.expect(failedLoad(409));
  const [res] = await Promise.all([page.waitForResponse((r) => r.url().startsWith(`${stack.url}/oauth/callback`)), page.click("button[value=allow]")]);
  assert.equal(res.status(), 409);
  const text = await page.textContent("main");
  assert.match(text, /You signed in to Keap as amy@ab123\.example, but this connection belongs to ann@ab123\.example/);
  assert.match(text, /Nothing was changed/);
  const [c] = (await call(stack.url, "GET", "/v1/connections", { token: acme.api_key })).json.connections;
  assert.equal(c.keap_user.email, "ann@ab123.example", "still Ann's");
  await assertAccessible(page);
  // The link is not spent by a refused attempt: its page still opens, and this one offers Try
  // again (as the widget does), which posts a fresh attempt of the same link.
  assert.equal((await call(stack.url, "GET", new URL(made.json.url).pathname)).status, 200, "not spent");
  assert.match(text, /This link still works: try again/);
  assert.equal(await page.locator("form").getAttribute("method"), "post");
  assert.match(await page.locator("form").getAttribute("action"), /^\/link\/again\/[A-Za-z0-9_-]{43}$/);
  assert.doesNotMatch(await page.content(), new RegExp(new URL(made.json.url).pathname.split("/").pop()), "the page never holds the link's token");
  assert.ok(!formActionBlocksKeap(res.headers()["content-security-policy"] ?? ""));
  await page.setViewportSize({ width: 600, height: 360 });
  await screenshot(page, "repair-mismatch.png");
  const visited = [];
  page.on("request", (r) => { if (r.isNavigationRequest()) visited.push(new URL(r.url()).pathname); });
  await Promise.all([page.waitForSelector('body[data-page="login"]'), page.getByRole("button", { name: "Try again" }).click()]);
  assert.ok(visited.includes("/logout"), `signed out of Keap first: ${visited}`);
  await page.fill("input[name=email]", "ann@ab123.example");
  await page.fill("input[name=password]", "keap");
  await Promise.all([page.waitForSelector('body[data-page="consent"]'), page.click("button[type=submit]")]);
  await Promise.all([page.waitForURL(`${stack.url}/oauth/callback?**`), page.click("button[value=allow]")]);
  assert.equal(await page.textContent("h1"), "Your Keap account is reconnected");
  // Two attempts, each on the timeline, then the restore spent it.
  const events = await timeline();
  assert.deepEqual(events.slice(0, 4), ["repair_link_used", "reconnected", "repair_link_tried", "identity_mismatch"]);
  assert.equal(events.filter((e) => e === "repair_link_tried").length >= 2, true);
  const detail = (await call(stack.url, "GET", `/v1/connections/${link.id}`, { token: acme.api_key })).json.events;
  assert.match(detail.find((e) => e.type === "repair_link_tried").detail, /^Attempt 2 of 5/);
  pages.expect(failedLoad(410));
  const spent = await call(stack.url, "GET", new URL(made.json.url).pathname);
  assert.equal(spent.status, 410);
  assert.match(spent.text, /already been used/);
  await page.close();
});

test("an expired link says so; an unknown one says it is not one we know", async () => {
  pages.expect(failedLoad(410), failedLoad(404));
  const made = await call(stack.url, "POST", `/v1/connections/${link.id}/repair-link`, { token: acme.api_key, body: { ttl_secs: 300 } });
  const { pathname } = new URL(made.json.url);
  // Aged in the stopped Worker's local KV, as identity.test.mjs does: only the hash is stored.
  const kvKey = `r/${createHash("sha256").update(pathname.split("/").pop()).digest("base64url")}`;
  await stack.worker.stop();
  await withLocalKv(kvDir, async (kv) => {
    const rec = JSON.parse(await kv.get(kvKey));
    rec.expires_at = Math.floor(Date.now() / 1000) - 10;
    await kv.put(kvKey, JSON.stringify(rec));
  });
  await stack.restartWorker();
  const page = await context.newPage();
  const expired = await page.goto(made.json.url);
  assert.equal(expired.status(), 410);
  assert.match(await page.textContent("main"), /expired/);
  assert.equal(await page.locator("button").count(), 0);
  await assertAccessible(page);

  const forged = pathname.slice(0, -4) + (pathname.endsWith("AAAA") ? "BBBB" : "AAAA");
  const unknown = await page.goto(`${stack.url}${forged}`);
  assert.equal(unknown.status(), 404);
  assert.match(await page.textContent("main"), /not one we know/);
  await assertFitsPhone(page);
  await page.close();
});
