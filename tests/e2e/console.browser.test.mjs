// The partner console (/console/) in headless Chromium against the real Worker and the Keap
// sandbox: sign-in (a wrong key, a partner key, the admin token), search and the status filter,
// a link's timeline and actions, webhook redelivery to a loopback receiver, settings and secret
// rotation, and no other partner's data anywhere. axe-core runs in the page on every view (light,
// dark, 390 px); screenshots go to tests/artifacts/console-*.png. Any page error, unhandled
// rejection or unexpected console error fails the test.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { ADMIN_TOKEN, startStack, artifactPath, record } from "./harness.mjs";
import { call, linkUser, putPartner } from "./client.mjs";
import { ofType, startReceiver } from "./receiver.mjs";
import { launchBrowser, failOnPageErrors, failedLoad } from "./browser.mjs";

const pages = failOnPageErrors();
let stack;
let receiver;
let browser;
let acme;
let globex;
let axeSource;
const ids = {};

before(async () => {
  let axePath;
  try {
    axePath = createRequire(import.meta.url).resolve("axe-core/axe.min.js");
  } catch {
    throw new Error("axe-core is not installed: it belongs in package.json's devDependencies (axe-core 4.14.1)");
  }
  axeSource = await readFile(axePath, "utf8");
  receiver = await startReceiver();
  stack = await startStack({ workerVars: { WEBHOOK_ALLOW_HTTP: "true", WEBHOOK_BACKOFF_SECS: "1" } });
  acme = await putPartner(stack.url, "acme", { name: "Acme Booking", origins: ["https://app.acme.example"], extra: { webhook_url: receiver.url } });
  globex = await putPartner(stack.url, "globex", { name: "Globex", origins: ["https://globex.example"] });
  await linkUser(stack, acme, "user-1001", "ann@ab123.example");
  await linkUser(stack, acme, "user-1002", "bob@cd456.example");
  await linkUser(stack, acme, "user-1003", "cat@ef789.example");
  // Another partner's link, whose Keap user (dan) no acme link has: it must never show.
  await linkUser(stack, globex, "g-7", "dan@gh012.example");
  const idOf = async (partner, user) => (await call(stack.url, "GET", "/v1/connections", { token: partner.api_key })).json.connections.find((c) => c.user === user).id;
  ids.ann = await idOf(acme, "user-1001");
  ids.bob = await idOf(acme, "user-1002");
  ids.cat = await idOf(acme, "user-1003");
  ids.globex = await idOf(globex, "g-7");
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await stack?.stop();
  await receiver?.stop();
});

/** A fresh browser context (its own sessionStorage), watched for page errors. */
async function open({ width = 1180, height = 560, scheme = "light" } = {}) {
  const context = pages.watch(await browser.newContext({ viewport: { width, height }, colorScheme: scheme, deviceScaleFactor: 1 }));
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: stack.url });
  const page = await context.newPage();
  await page.goto(`${stack.url}/console/`);
  await page.getByLabel("API key").waitFor();
  return { context, page };
}

async function signIn(page, key) {
  await page.getByLabel("API key").fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
}

const rows = (page) => page.locator("#results tbody tr");
const rowTexts = async (page) => (await rows(page).allTextContents()).map((t) => t.replace(/\s+/g, " "));

async function signedIn(key = acme.api_key, options) {
  const o = await open(options);
  await signIn(o.page, key);
  await rows(o.page).first().waitFor();
  return o;
}

/** axe-core in the page (evaluated, not a script tag: the console's CSP allows no inline script). */
async function axe(page, what) {
  if (!(await page.evaluate(() => typeof window.axe === "object"))) await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  const all = result.violations.map((v) => `${v.id} (${v.impact}, ${v.nodes.length})`);
  console.log(`axe ${what}: ${all.length ? all.join(", ") : "no violations"}`);
  assert.deepEqual(bad.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(" | ")}`), [], `axe, ${what}`);
}

// The notice (bottom left) is emptied for the pictures: it covers rows, and leaves by itself later.
// (Playwright's screenshot `style` would be an inline style, which the console's CSP refuses.)
async function shot(page, name) {
  await page.evaluate(() => { document.getElementById("notice").textContent = ""; });
  await page.screenshot({ path: await artifactPath(`console-${name}.png`), fullPage: true });
}

/** The console's own link to a view, as a person clicks it. */
const nav = (page, name) => page.getByRole("navigation", { name: "Console" }).getByRole("link", { name }).click();

test("1. a wrong key: a clear message, and nothing of any partner's is shown", async () => {
  const { context, page } = await open();
  pages.expect(failedLoad(401));
  await signIn(page, "klk.acme.not-the-key");
  const alert = page.getByRole("alert");
  await alert.waitFor();
  assert.match(await alert.textContent(), /API key is not valid/);
  assert.equal(await page.getByLabel("API key").getAttribute("aria-invalid"), "true");
  assert.equal(await page.locator("nav, table").count(), 0, "no navigation, no data");
  // Something that is not a key at all is tried as the admin token, and refused as such.
  await signIn(page, "hunter2");
  await page.getByRole("alert").filter({ hasText: "admin token" }).waitFor();
  assert.equal(await page.locator("nav, table").count(), 0);
  // The key never lands in the address bar, a cookie or localStorage.
  assert.ok(!page.url().includes("hunter2") && !page.url().includes("klk."));
  assert.deepEqual(await context.cookies(), []);
  assert.equal(await page.evaluate(() => localStorage.length), 0);
  await axe(page, "sign-in with an error");
  await shot(page, "sign-in-error");
  await context.close();
});

test("2. sign in with a partner key: its links with app id and email as text, no other partner's", async () => {
  const { context, page } = await open();
  await axe(page, "sign-in");
  await shot(page, "sign-in");
  await signIn(page, acme.api_key);
  await rows(page).first().waitFor();
  const texts = await rowTexts(page);
  assert.equal(texts.length, 3, texts.join("\n"));
  for (const [app, email] of [["ab123", "ann@ab123.example"], ["cd456", "bob@cd456.example"], ["ef789", "cat@ef789.example"]]) {
    const row = texts.find((t) => t.includes(email));
    assert.ok(row, `a row for ${email}`);
    assert.ok(row.includes(app), `${email}'s row names its app ${app}`);
  }
  assert.ok(!texts.some((t) => /dan@gh012|g-7/.test(t)), "globex's link is not acme's");
  assert.match(await page.locator(".who").textContent(), /Acme Booking/);
  // Held in this tab's sessionStorage only: never a cookie, never the URL.
  assert.deepEqual(await context.cookies(), []);
  assert.ok(!page.url().includes(acme.api_key));
  // A reload keeps the sign-in (sessionStorage); signing out forgets it.
  await page.reload();
  await rows(page).first().waitFor();
  await axe(page, "links (light)");
  await shot(page, "links");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("API key").waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, "the key is forgotten");
  await page.reload();
  await page.getByLabel("API key").waitFor();
  assert.equal(await page.locator("nav").count(), 0);
  await context.close();
});

test("3. find a linked app by Keap email; filter needs_reauth", async () => {
  const { context, page } = await signedIn();
  await page.getByLabel("Search").fill("BOB@cd4");
  await page.getByRole("button", { name: "Search" }).click();
  await page.waitForFunction(() => document.querySelectorAll("#results tbody tr").length === 1);
  const [bob] = await rowTexts(page);
  assert.match(bob, /bob@cd456\.example/);
  assert.match(bob, /cd456/);
  assert.match(bob, /user-1002/);
  // Typing searches by itself once the typing pauses.
  await page.getByLabel("Search").fill("ef7");
  await page.locator('#results tr[data-status] >> text=cat@ef789.example').waitFor();
  assert.equal(await rows(page).count(), 1);
  await page.getByLabel("Search").fill("nobody-matches");
  await page.locator("#results [data-state=empty]").waitFor();
  assert.match(await page.locator("#results").textContent(), /No link matches/);

  // cat's refresh token dies at Keap: the link needs its user.
  await stack.sandbox.revoke("cat@ef789.example");
  const dead = await call(stack.url, "POST", `/v1/connections/${ids.cat}/refresh`, { token: acme.api_key });
  assert.equal(dead.json.status, "needs_reauth", dead.text);
  await page.getByLabel("Search").fill("");
  await page.getByLabel("Status").selectOption("needs_reauth");
  await page.waitForFunction(() => {
    const r = document.querySelectorAll("#results tbody tr");
    return r.length === 1 && r[0].dataset.status === "needs_reauth";
  });
  const [row] = await rowTexts(page);
  assert.match(row, /cat@ef789\.example/);
  assert.match(row, /Needs its user/);
  assert.match(row, /refresh_token_invalid/);
  await axe(page, "links filtered");
  await shot(page, "links-needs-reauth");
  await context.close();
});

test("4. a link's timeline after a refresh and a failure", async () => {
  const { context, page } = await signedIn();
  pages.expect(failedLoad(409));
  await page.locator(`#results tr[data-connection="${ids.ann}"] a.app`).click();
  await page.getByRole("heading", { level: 1, name: /ab123/ }).waitFor();
  assert.match(await page.locator("dl.facts").textContent(), /ann@ab123\.example/);
  await page.getByRole("button", { name: "Refresh now" }).click();
  await page.locator(".outcome", { hasText: "Refreshed" }).waitFor();
  await page.locator('.timeline li[data-event="refreshed"]').waitFor();
  // Keap fails the next refresh (a 5xx): retried later, and said so.
  await stack.sandbox.fault("server_error", 1);
  await page.getByRole("button", { name: "Refresh now" }).click();
  await page.locator(".outcome", { hasText: "The refresh failed" }).waitFor();
  await page.locator('.timeline li[data-event="refresh_failed"]').waitFor();
  const events = await page.locator(".timeline li").evaluateAll((lis) => lis.map((li) => li.dataset.event));
  assert.deepEqual(events, ["refresh_failed", "refreshed", "created"], "newest first");
  assert.match(await page.locator('.timeline li[data-event="refresh_failed"]').textContent(), /keap_unavailable/);
  assert.match(await page.locator("dl.facts").textContent(), /keap_unavailable/);
  await axe(page, "link detail");
  await shot(page, "link");

  // A link that needs its user: refresh cannot restore it, and the page says why.
  await page.goto(`${stack.url}/console/#link/${ids.cat}`);
  await page.getByRole("heading", { level: 1, name: /ef789/ }).waitFor();
  await page.getByRole("button", { name: "Refresh now" }).click();
  await page.locator(".outcome", { hasText: "needs the user to reconnect" }).waitFor();
  await context.close();
});

test("5. make a repair link: shown with a copy button, never in the page's URL", async () => {
  const { context, page } = await signedIn();
  await page.goto(`${stack.url}/console/#link/${ids.cat}`);
  await page.getByRole("button", { name: "Make a repair link" }).click();
  const field = page.getByLabel("Repair link");
  await field.waitFor();
  const url = await field.inputValue();
  assert.ok(url.startsWith(`${stack.url}/link/`), url);
  await page.locator("[data-repair]").getByRole("button", { name: "Copy" }).click();
  await page.locator("#notice", { hasText: "Copied." }).waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), url);
  assert.ok(!page.url().includes(url.split("/link/")[1]), "not in the address bar");
  await axe(page, "repair link");
  await shot(page, "repair-link");
  // The page is the Worker's: it opens for the user.
  const repair = await fetch(url);
  assert.equal(repair.status, 200);
  // Its timeline entry shows its expiry as local time, like every other time on the page.
  await page.reload();
  const made = page.locator('.timeline li[data-event="repair_link_created"]').first();
  await made.waitFor();
  const expiry = made.locator(".sub time");
  assert.match(await expiry.getAttribute("datetime"), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.doesNotMatch(await made.locator(".sub").textContent(), /\d\dT\d\d:/, "no raw RFC 3339 in the words");
  await context.close();
});

test("6. disconnect asks first, then the link is gone from the console and the API", async () => {
  const { context, page } = await signedIn();
  await page.locator(`#results tr[data-connection="${ids.bob}"] a.app`).click();
  await page.getByRole("button", { name: "Disconnect…" }).click();
  const confirm = page.getByRole("group", { name: /Disconnect this link/ });
  await confirm.waitFor();
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Disconnect", "focus on the confirm");
  // Cancel keeps it.
  await confirm.getByRole("button", { name: "Cancel" }).click();
  assert.equal(await confirm.count(), 0);
  assert.equal((await call(stack.url, "GET", `/v1/connections/${ids.bob}`, { token: acme.api_key })).status, 200);
  await page.getByRole("button", { name: "Disconnect…" }).click();
  await axe(page, "confirm disconnect");
  await page.getByRole("button", { name: "Disconnect", exact: true }).click();
  await page.getByRole("heading", { level: 1, name: "Links" }).waitFor();
  await page.locator("#notice", { hasText: "Disconnected." }).waitFor();
  await page.waitForFunction(() => document.querySelectorAll("#results tbody tr").length === 2);
  assert.ok(!(await rowTexts(page)).some((t) => t.includes("bob@cd456.example")));
  assert.equal((await call(stack.url, "GET", `/v1/connections/${ids.bob}`, { token: acme.api_key })).status, 404);
  await context.close();
});

test("7. webhooks: a failed delivery redelivered to the loopback receiver", async () => {
  const deliveries = async () => (await call(stack.url, "GET", "/v1/webhooks/deliveries", { token: acme.api_key })).json.deliveries;
  // The disconnect's event (test 6) arrives first, so the planned 400 meets the next one.
  await receiver.waitFor(ofType("connection.deleted"), "the disconnect's event");
  // The next event is refused for good (a 400): a failed delivery.
  receiver.plan(400);
  await linkUser(stack, acme, "user-1004", "amy@ab123.example");
  let failed;
  for (let i = 0; i < 150 && !failed; i++) {
    failed = (await deliveries()).find((d) => d.state === "failed" && d.user === "user-1004");
    if (!failed) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(failed, `a failed delivery: ${JSON.stringify(await deliveries())}; the receiver saw ${receiver.deliveries.map((d) => `${d.status} ${JSON.parse(d.body).type} ${JSON.parse(d.body).user}`).join(", ")}`);
  const { context, page } = await signedIn();
  await nav(page, "Webhooks");
  const row = page.locator(`tr[data-delivery="${failed.id}"]`);
  await row.waitFor();
  assert.equal(await row.getAttribute("data-state"), "failed");
  assert.match(await row.textContent(), /connection\.created/);
  assert.match(await row.textContent(), /400/);
  await axe(page, "webhooks");
  await shot(page, "webhooks");
  const before = receiver.deliveries.length;
  await row.getByRole("button", { name: "Redeliver" }).click();
  await page.locator("#notice", { hasText: `Redelivery of ${failed.id} queued` }).waitFor();
  const hits = await receiver.waitFor((d) => d.status === 204 && d.headers["keaplink-event-id"] === failed.id, "the redelivery");
  assert.equal(hits.length, 1);
  assert.ok(receiver.deliveries.length > before);
  // The list shows it delivered once the Worker has recorded it (a reload of the view).
  for (let i = 0; i < 50; i++) {
    await nav(page, "Links");
    await nav(page, "Webhooks");
    await row.waitFor();
    if ((await row.getAttribute("data-state")) === "delivered") break;
    await page.waitForTimeout(200);
  }
  assert.equal(await row.getAttribute("data-state"), "delivered");
  await context.close();
});

test("8. the overview: links by status, refreshes, quota, failing webhooks", async () => {
  const { context, page } = await signedIn();
  await nav(page, "Overview");
  const links = page.locator('[data-card="links"]');
  await links.waitFor();
  const stats = (await call(stack.url, "GET", "/v1/stats", { token: acme.api_key })).json;
  assert.equal(await links.locator(".big").textContent(), String(stats.connections.total));
  assert.match(await links.textContent(), new RegExp(`Need their user${stats.connections.needs_reauth}`));
  assert.match(await page.locator('[data-card="refreshes"]').textContent(), new RegExp(`Succeeded${stats.refreshes_last_24h.succeeded}`));
  assert.match(await page.locator('[data-card="quota"]').textContent(), stats.keap_quota ? /left/ : /not reported it yet/);
  await axe(page, "overview (light)");
  await shot(page, "overview");
  await context.close();
  // Dark, as the OS asks.
  const dark = await signedIn(acme.api_key, { scheme: "dark" });
  await axe(dark.page, "links (dark)");
  await shot(dark.page, "links-dark");
  await nav(dark.page, "Overview");
  await dark.page.locator('[data-card="links"]').waitFor();
  await axe(dark.page, "overview (dark)");
  await shot(dark.page, "overview-dark");
  await dark.context.close();
});

test("9. readable at 390 px: no sideways scrolling, every row's app and email on screen", async () => {
  const { context, page } = await signedIn(acme.api_key, { width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `scrolls sideways by ${overflow}px`);
  const first = rows(page).first();
  assert.ok(await first.locator("a.app").isVisible());
  assert.ok(await first.locator(".email").isVisible());
  await axe(page, "links at 390 px");
  await shot(page, "links-390");
  await first.locator("a.app").click();
  await page.locator(".timeline").waitFor();
  assert.ok((await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth)) <= 0);
  await axe(page, "link at 390 px");
  await context.close();
});

test("10. keyboard only: sign in, search, open a link, all with visible focus", async () => {
  const { context, page } = await open();
  await page.keyboard.type(acme.api_key); // the key field has focus on arrival
  await page.keyboard.press("Enter");
  await rows(page).first().waitFor();
  await page.keyboard.press("Tab"); // from the view's heading onwards
  let focused = "";
  for (let i = 0; i < 20 && focused !== "q"; i++) {
    focused = await page.evaluate(() => document.activeElement?.id);
    if (focused !== "q") await page.keyboard.press("Tab");
  }
  assert.equal(focused, "q", "the search field is reachable by Tab");
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(outline, "none", "focus is visible");
  await page.keyboard.type("amy@");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.querySelectorAll("#results tbody tr").length === 1);
  await page.locator("#results a.app").focus();
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { level: 1, name: /amy@ab123/ }).waitFor();
  assert.equal(await page.evaluate(() => document.activeElement?.tagName), "H1", "focus moves to the new view");
  await context.close();
});

test("11. settings: saved, refused with the rule; rotate secrets and see the old key refused", async () => {
  const { context, page } = await signedIn();
  pages.expect(failedLoad(400), failedLoad(401));
  await nav(page, "Settings");
  const origins = page.getByLabel("Allowed origins");
  await origins.waitFor();
  assert.equal(await origins.inputValue(), "https://app.acme.example");
  assert.equal(await page.getByLabel("Webhook URL").inputValue(), receiver.url);
  await axe(page, "settings");
  await shot(page, "settings");
  await origins.fill("https://app.acme.example\nhttps://admin.acme.example\n");
  await page.getByLabel("Anyone who can sign in to the same Keap app").check();
  await page.getByRole("button", { name: "Save settings" }).click();
  await page.locator("#notice", { hasText: "Settings saved." }).waitFor();
  const saved = (await call(stack.url, "GET", "/v1/partner", { token: acme.api_key })).json;
  assert.deepEqual(saved.allowed_origins, ["https://app.acme.example", "https://admin.acme.example"]);
  assert.equal(saved.reconnect_identity, "app");
  assert.equal(saved.webhook_url, receiver.url, "left as it was");
  // A bad origin is refused with the rule, and nothing is stored.
  await page.getByLabel("Allowed origins").fill("app.acme.example/path");
  await page.getByRole("button", { name: "Save settings" }).click();
  const err = page.locator("#settings-error [role=alert]");
  await err.waitFor();
  assert.match(await err.textContent(), /Not saved: .*origin/i);
  assert.deepEqual((await call(stack.url, "GET", "/v1/partner", { token: acme.api_key })).json.allowed_origins, saved.allowed_origins);

  // The MCP server, turned on here: the partner's sign-in page, and read-write tools.
  assert.equal(await page.getByLabel("Offer an MCP server").isChecked(), false);
  await page.getByLabel("Allowed origins").fill(saved.allowed_origins.join("\n"));
  await page.getByLabel("Offer an MCP server").check();
  await page.getByLabel("MCP sign-in URL").fill("https://app.acme.example/keaplink-mcp");
  await page.getByLabel("Read and write").check();
  await page.getByRole("button", { name: "Save settings" }).click();
  await page.locator("[data-mcp]", { hasText: "On (read and write)" }).waitFor();
  const on = { enabled: true, sign_in_url: "https://app.acme.example/keaplink-mcp", tools: "read_write" };
  assert.deepEqual((await call(stack.url, "GET", "/v1/partner", { token: acme.api_key })).json.mcp, on);
  assert.equal(await page.getByLabel("Offer an MCP server").isChecked(), true, "the form shows what is stored");
  // A sign-in page that is not https: refused with the rule, nothing changed.
  await page.getByLabel("MCP sign-in URL").fill("http://app.acme.example/in");
  await page.getByRole("button", { name: "Save settings" }).click();
  await err.waitFor();
  assert.match(await err.textContent(), /Not saved: .*sign_in_url must be an absolute https URL/);
  assert.deepEqual((await call(stack.url, "GET", "/v1/partner", { token: acme.api_key })).json.mcp, on);
  await axe(page, "settings with the MCP server on");

  // A second console, signed in with the same (soon old) key.
  const other = await signedIn();
  const oldKey = acme.api_key;
  await page.getByRole("button", { name: "Rotate secrets…" }).click();
  await page.getByRole("button", { name: "Rotate secrets", exact: true }).click();
  const newKey = await page.getByLabel("New API key").inputValue();
  const newSecret = await page.getByLabel("New session secret").inputValue();
  // For the secrets check after the suite: no Worker answer or log line may carry them.
  record("secrets", { values: [newKey, newSecret] });
  assert.match(newKey, /^klk\.acme\./);
  assert.notEqual(newKey, oldKey);
  assert.ok(newSecret.length >= 32);
  assert.match(await page.locator("[data-rotated]").textContent(), /shown only once/);
  await axe(page, "secrets rotated");
  await shot(page, "secrets-rotated");
  await page.locator("[data-rotated]").getByRole("button", { name: "Copy" }).first().click();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), newKey);
  // The old key is refused by the API, and the other console is signed out with a message.
  assert.equal((await call(stack.url, "GET", "/v1/partner", { token: oldKey })).status, 401);
  await nav(other.page, "Overview");
  const refused = other.page.getByRole("alert");
  await refused.waitFor();
  assert.match(await refused.textContent(), /Signed out: The API key is not valid/);
  assert.equal(await other.page.locator("nav, table").count(), 0);
  await other.context.close();
  // This console carries on with the new key.
  await nav(page, "Links");
  await rows(page).first().waitFor();
  acme = { ...acme, api_key: newKey, session_secret: newSecret };
  await context.close();
});

test("12. the admin token: pick a partner, see only its links, change partner", async () => {
  const { context, page } = await open();
  await signIn(page, ADMIN_TOKEN);
  const table = page.getByRole("table", { name: /Partners/ });
  await table.waitFor();
  assert.match(await table.textContent(), /Acme Booking/);
  assert.match(await table.textContent(), /Globex/);
  assert.equal(await page.locator("nav a").count(), 0, "no partner's views before one is picked");
  // The operator's view of the whole deployment: its counts and quota, and each partner's links
  // and failing webhooks, as the API says them.
  const all = (await call(stack.url, "GET", "/v1/admin/stats", { token: ADMIN_TOKEN })).json;
  await page.locator('#deployment [data-card="partners"]').waitFor();
  assert.equal(await page.locator('#deployment [data-card="partners"] .big').textContent(), String(all.partners));
  assert.equal(await page.locator('#deployment [data-card="all-links"] .big').textContent(), String(all.connections.total));
  assert.ok(await page.locator('#deployment [data-card="quota"]').isVisible());
  for (const partner of [acme, globex]) {
    const own = (await call(stack.url, "GET", "/v1/stats", { token: partner.api_key })).json;
    const row = table.locator(`tr[data-partner="${partner.partner_id}"]`);
    await row.locator("[data-stats=links] strong").waitFor();
    assert.equal(await row.locator("[data-stats=links] strong").textContent(), String(own.connections.total));
    assert.equal(await row.locator("[data-stats=webhooks] [data-failed]").getAttribute("data-failed"), String(own.webhooks.failed));
    if (own.connections.needs_reauth > 0) {
      assert.equal(await row.locator("[data-needs-reauth]").getAttribute("data-needs-reauth"), String(own.connections.needs_reauth));
    }
  }
  await axe(page, "partner picker");
  await shot(page, "partners");
  await page.getByRole("button", { name: "Open Globex" }).click();
  await rows(page).first().waitFor();
  const texts = await rowTexts(page);
  assert.equal(texts.length, 1);
  assert.match(texts[0], /dan@gh012\.example/);
  assert.match(await page.locator(".who").textContent(), /Acting for Globex/);
  // Acme's link ids are not globex's: 404 in the console too.
  pages.expect(failedLoad(404));
  await page.goto(`${stack.url}/console/#link/${ids.ann}`);
  await page.getByRole("heading", { level: 1, name: "No such link" }).waitFor();
  await page.getByRole("button", { name: "Change partner" }).click();
  await page.getByRole("button", { name: "Open Acme Booking" }).click();
  await rows(page).first().waitFor();
  const acmeRows = await rowTexts(page);
  assert.ok(acmeRows.some((t) => t.includes("ann@ab123.example")));
  assert.ok(!acmeRows.some((t) => t.includes("dan@gh012.example")));
  await context.close();
});

test("13. the console's answers carry the strict headers", async () => {
  for (const path of ["/console/", "/console/console.js", "/console/keaplink_console_bg.wasm", "/console/console.css"]) {
    const res = await fetch(`${stack.url}${path}`);
    assert.equal(res.status, 200, path);
    const csp = res.headers.get("content-security-policy") ?? "";
    assert.match(csp, /frame-ancestors 'none'/, path);
    assert.match(csp, /script-src 'self' 'wasm-unsafe-eval'/, path);
    assert.doesNotMatch(csp, /unsafe-inline/, path);
    assert.equal(res.headers.get("x-frame-options"), "DENY", path);
    assert.equal(res.headers.get("x-content-type-options"), "nosniff", path);
    assert.equal(res.headers.get("referrer-policy"), "no-referrer", path);
    await res.arrayBuffer();
  }
});

test("14. the Links table never scrolls sideways from 360 px up; every column on screen", async () => {
  const { context, page } = await signedIn(acme.api_key, { width: 1280, height: 800 });
  for (const width of [360, 390, 768, 1024, 1280]) {
    await page.setViewportSize({ width, height: 800 });
    await rows(page).first().waitFor();
    const m = await page.evaluate(() => {
      const doc = document.documentElement;
      const box = document.querySelector("#results .scroll") ?? document.querySelector("#results");
      const cells = [...document.querySelectorAll("#results td")].filter((e) => e.offsetParent);
      const widest = cells.reduce((a, e) => (e.getBoundingClientRect().right > (a?.getBoundingClientRect().right ?? -1) ? e : a), null);
      const right = widest.getBoundingClientRect().right;
      return { page: doc.scrollWidth - doc.clientWidth, table: box.scrollWidth - box.clientWidth, right, width: doc.clientWidth, cell: widest.dataset.label, html: widest.innerHTML.slice(0, 300) };
    });
    assert.ok(m.page <= 0, `${width} px: the page scrolls sideways by ${m.page}px`);
    assert.ok(m.table <= 0, `${width} px: the table scrolls sideways by ${m.table}px`);
    assert.ok(m.right <= m.width, `${width} px: the ${m.cell} column ends at ${m.right}px, past ${m.width}px: ${m.html}`);
    await shot(page, `links-${width}`);
  }
  await context.close();
});

test("15. after a reconnect, the row and the link say Reconnected <when>; the first time stays", async () => {
  const before = (await call(stack.url, "GET", `/v1/connections/${ids.ann}`, { token: acme.api_key })).json;
  assert.equal(before.reconnected_at, null);
  await linkUser(stack, acme, "user-1001", "ann@ab123.example");
  const after = (await call(stack.url, "GET", `/v1/connections/${ids.ann}`, { token: acme.api_key })).json;
  assert.equal(after.connected_at, before.connected_at);
  assert.ok(after.reconnected_at, "reconnected_at is set");
  const { context, page } = await signedIn();
  const row = page.locator(`#results tr[data-connection="${ids.ann}"]`);
  const said = row.locator("[data-reconnected]");
  await said.waitFor();
  assert.match(await said.textContent(), /^Reconnected /);
  assert.equal(await said.locator("time").getAttribute("datetime"), after.reconnected_at);
  await row.locator("a.app").click();
  await page.locator("dl.facts").waitFor();
  assert.match(await page.locator("dl.facts").textContent(), /Reconnected/);
  await page.locator('.timeline li[data-event="reconnected"]').first().waitFor();
  await shot(page, "link-reconnected");
  await context.close();
});

test("16. a link's Keap events: each hook with its status and last event; a link without says none", async () => {
  const set = await call(stack.url, "PUT", `/v1/connections/${ids.ann}/hooks`, { token: acme.api_key, body: { event_keys: ["contact.add", "invoice.add"] } });
  assert.equal(set.status, 200, set.text);
  const fire = await fetch(`${stack.sandbox.url}/__sandbox/hooks/fire`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ app: "ab123", event_key: "contact.add", ids: [5] }),
  });
  assert.equal(fire.status, 200, await fire.text());
  const { hook_url: url } = (await (await fetch(`${stack.sandbox.url}/__sandbox/hooks`)).json()).hooks[0];
  record("secrets", { values: [url.split("/").pop()] });
  let hooks;
  for (const until = Date.now() + 20_000; Date.now() < until; await new Promise((r) => setTimeout(r, 200))) {
    hooks = (await call(stack.url, "GET", `/v1/connections/${ids.ann}/hooks`, { token: acme.api_key })).json;
    if (hooks.hooks.find((h) => h.event_key === "contact.add").last_event_at) break;
  }
  const last = hooks.hooks.find((h) => h.event_key === "contact.add").last_event_at;
  assert.ok(last, JSON.stringify(hooks));

  const { context, page } = await signedIn();
  await page.goto(`${stack.url}/console/#link/${ids.ann}`);
  const table = page.locator("table.hooks");
  await table.waitFor();
  assert.equal(await table.getAttribute("data-hooks"), "2");
  const contact = table.locator('tr[data-hook="contact.add"]');
  assert.equal(await contact.getAttribute("data-hook-status"), "verified");
  assert.match(await contact.textContent(), /Verified/);
  assert.equal(await contact.locator("time").getAttribute("datetime"), last, "the last event, as local time");
  assert.equal(await table.locator('tr[data-hook="invoice.add"]').getAttribute("data-hook-status"), "verified");
  assert.match(await table.locator('tr[data-hook="invoice.add"]').textContent(), /—/, "no event yet");
  assert.ok(!(await page.content()).includes(url), "the hook URL never reaches the page");
  // The timeline names the change too.
  assert.match(await page.locator('.timeline li[data-event="hooks_set"]').first().textContent(), /Keap hooks set/);
  await axe(page, "link with Keap events");
  await shot(page, "link-hooks");
  // Cat's link delivers none, and says so.
  await page.goto(`${stack.url}/console/#link/${ids.cat}`);
  await page.locator('[data-hooks="0"]').waitFor();
  assert.match(await page.locator('[data-hooks="0"]').textContent(), /delivers no Keap events/);
  await context.close();
  const narrow = await signedIn(acme.api_key, { width: 390, height: 844 });
  await narrow.page.goto(`${stack.url}/console/#link/${ids.ann}`);
  await narrow.page.locator("table.hooks").waitFor();
  assert.ok((await narrow.page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth)) <= 0, "no sideways scrolling at 390 px");
  await narrow.context.close();
});
