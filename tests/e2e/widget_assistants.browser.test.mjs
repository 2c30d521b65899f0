// The widget's Connected assistants, in Chromium, end to end: an MCP client is allowed into a
// link through keaplink's OAuth flow (the partner's sign-in played as in mcp.browser.test.mjs,
// the consent page, Allow, the code exchanged for tokens), then the user opens the link's
// assistants in the widget on the partner's page (strict CSP): the client's name as registered,
// marked unverified, its access and dates, a Revoke named for it; axe finds nothing serious.
// Revoke ends the client's access at once: its MCP token is refused (401). The screenshot goes to
// tests/artifacts/, and over docs/widget-assistants.png when KEAPLINK_DOCS_SCREENSHOTS=1.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";
import { SignJWT } from "jose";
import { startStack, artifactPath, record, ROOT } from "./harness.mjs";
import { call, linkUser, mintSession, putPartner } from "./client.mjs";
import { startPartnerSite } from "./partner.mjs";
import { launchProfile, failOnPageErrors } from "./browser.mjs";

const pages = failOnPageErrors();
let stack;
let site;
let acme;
let context;
let axeSource;
let link;

before(async () => {
  axeSource = await readFile(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
  stack = await startStack();
  site = await startPartnerSite({ workerUrl: stack.url });
  acme = await putPartner(stack.url, "acme", {
    name: "Acme Booking",
    origins: [site.url, "https://acme.example"],
    returnUrls: [`${site.url}/settings`],
    extra: { mcp: { enabled: true, sign_in_url: "https://acme.example/keaplink-mcp", tools: "read_write" } },
  });
  site.setPartner(acme);
  await linkUser(stack, acme, "u1", "ann@ab123.example");
  link = (await call(stack.url, "GET", "/v1/connections", { token: acme.api_key })).json.connections.find((c) => c.user === "u1").id;
  context = pages.watch(await launchProfile());
  for (const origin of [stack.url, site.url]) await context.route(`${origin}/favicon.ico`, (route) => route.fulfill({ status: 204 }));
});
after(async () => {
  await context?.close();
  await site?.stop();
  await stack?.stop();
});

const mcp = (token) =>
  call(stack.url, "POST", "/mcp/acme", {
    token,
    body: { jsonrpc: "2.0", id: 1, method: "ping" },
    headers: { accept: "application/json, text/event-stream", "mcp-protocol-version": "2025-06-18" },
  });

/** An MCP client named `name` allowed into u1's link with `access` in the browser; its tokens. */
async function allowAssistant(name, access) {
  const redirect = "http://127.0.0.1:9/callback";
  const reg = await call(stack.url, "POST", "/mcp/oauth/register", { body: { client_name: name, redirect_uris: [redirect] } });
  assert.ok(reg.json?.client_id, reg.text);
  const verifier = randomBytes(32).toString("base64url");
  record("secrets", { values: [verifier] });
  const q = new URLSearchParams({
    response_type: "code", client_id: reg.json.client_id, redirect_uri: redirect, state: "s-1",
    code_challenge: createHash("sha256").update(verifier).digest("base64url"), code_challenge_method: "S256",
    resource: `${stack.url}/mcp/acme`, scope: "keap.read keap.write",
  });
  // The partner's MCP sign-in: signs u1 in and posts the request back with a session JWT for it.
  await context.route("https://acme.example/**", async (route) => {
    const request = new URL(route.request().url()).searchParams.get("keaplink_request");
    const now = Math.floor(Date.now() / 1000);
    const session = await new SignJWT({ keaplink_request: request })
      .setProtectedHeader({ alg: "HS256" }).setIssuer("acme").setSubject("u1").setAudience("keaplink")
      .setIssuedAt(now).setExpirationTime(now + 300).sign(new TextEncoder().encode(acme.session_secret));
    record("secrets", { values: [session] });
    const esc = (t) => t.replaceAll("&", "&amp;").replaceAll('"', "&quot;");
    await route.fulfill({
      contentType: "text/html",
      body: `<!doctype html><title>Acme sign-in</title><form method="post" action="${stack.url}/mcp/oauth/continue"><input type="hidden" name="request" value="${esc(request)}"><input type="hidden" name="session" value="${esc(session)}"><button>Continue</button></form>`,
    });
  });
  let back;
  await context.route("http://127.0.0.1:9/**", async (route) => {
    back = new URL(route.request().url());
    await route.fulfill({ contentType: "text/plain", body: "the assistant got its answer" });
  });
  const page = await context.newPage();
  const start = await call(stack.url, "GET", `/mcp/oauth/authorize?${q}`);
  assert.equal(start.status, 302);
  await page.goto(start.headers.get("location"));
  await page.click("button");
  await page.waitForSelector(`text=Allow ${name} to use Keap?`);
  await page.check(`input[name="connection"][value="${link}"]`);
  await page.check(`input[name="access"][value="${access}"]`);
  await page.click('button[value="allow"]');
  await page.waitForURL(/^http:\/\/127\.0\.0\.1:9\/callback/);
  await page.close();
  const code = back.searchParams.get("code");
  record("secrets", { values: [code] });
  const tokens = await call(stack.url, "POST", "/mcp/oauth/token", {
    raw: new URLSearchParams({ grant_type: "authorization_code", code, redirect_uri: redirect, code_verifier: verifier, client_id: reg.json.client_id }).toString(),
    headers: { "content-type": "application/x-www-form-urlencoded" },
  });
  assert.equal(tokens.status, 200, tokens.text);
  record("secrets", { values: [tokens.json.access_token, tokens.json.refresh_token] });
  return tokens.json;
}

/** axe-core in the page (evaluated: the partner's CSP allows no inline script); nothing serious. */
async function axe(page, what) {
  if (!(await page.evaluate(() => typeof window.axe === "object"))) await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(bad.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(" | ")}`), [], `axe, ${what}`);
}

test("the widget lists a link's assistants on request and Revoke ends one's access at once", async () => {
  const claude = await allowAssistant("Claude", "read_write");
  // A name is whatever the client registered: shown as text, never as markup.
  const other = await allowAssistant("Docs <b>helper</b>", "read");
  for (const t of [claude, other]) assert.equal((await mcp(t.access_token)).status, 200, "the assistants work before");
  const listed = await call(stack.url, "GET", `/v1/me/connections/${link}/assistants`, { token: await mintSession(acme, "u1") });
  const grant = listed.json.assistants.find((a) => a.client_name === "Claude").id;

  const page = await context.newPage();
  const asked = [];
  page.on("request", (r) => { if (r.url().includes("/assistants")) asked.push(`${r.method()} ${new URL(r.url()).pathname}`); });
  await page.goto(`${site.url}/settings?user=u1`);
  const item = page.locator(`keap-link li[data-connection="${link}"]`);
  const toggle = item.locator("[data-action=assistants]");
  await toggle.waitFor();
  // Closed: nothing asked, nothing listed.
  assert.equal(await toggle.getAttribute("aria-expanded"), "false");
  assert.equal(await item.locator("[data-assistants]").count(), 0);
  assert.deepEqual(asked, [], "a closed list costs no request");

  await toggle.click();
  const rows = item.locator("[data-assistants] li");
  await rows.first().waitFor();
  assert.equal(await toggle.getAttribute("aria-expanded"), "true");
  assert.match(await toggle.textContent(), /Connected assistants \(2\)/);
  assert.equal(await rows.count(), 2);
  const row = item.locator(`[data-assistant="${grant}"]`);
  // The registered name, marked unverified; the access it was allowed; when allowed and last used.
  assert.equal(await row.locator("strong").textContent(), "Claude");
  assert.match(await row.textContent(), /name not verified/);
  assert.match(await row.textContent(), /Can read and write · Allowed .*\d.* · Last used .*\d/);
  const docs = rows.filter({ hasText: "Docs" });
  assert.equal(await docs.locator("strong").textContent(), "Docs <b>helper</b>");
  assert.equal(await docs.locator("b").count(), 0, "no markup from a name");
  assert.match(await docs.textContent(), /Can read · Allowed/);
  // Each Revoke is named for its assistant.
  const revoke = page.getByRole("button", { name: "Revoke Claude", exact: true });
  assert.equal(await revoke.count(), 1);
  assert.equal(await page.getByRole("button", { name: "Revoke Docs <b>helper</b>", exact: true }).count(), 1);
  // Focus stays on the disclosure the render replaced.
  assert.equal(await page.evaluate(() => document.querySelector("keap-link").shadowRoot.activeElement?.dataset.action), "assistants");
  // No token anywhere in the widget.
  const html = await page.locator("keap-link").evaluate((el) => el.shadowRoot.innerHTML);
  for (const t of [claude, other]) for (const secret of [t.access_token, t.refresh_token]) assert.ok(!html.includes(secret));
  await axe(page, "assistants open");
  await shootWidget(page);

  await revoke.click();
  await page.locator("keap-link .live", { hasText: "Assistant's access revoked." }).waitFor();
  assert.equal(await row.count(), 0);
  assert.equal(await rows.count(), 1);
  assert.match(await toggle.textContent(), /Connected assistants \(1\)/);
  assert.equal((await mcp(claude.access_token)).status, 401, "the revoked assistant's token is refused at once");
  assert.equal((await mcp(other.access_token)).status, 200, "the other assistant keeps its access");
  const events = (await call(stack.url, "GET", `/v1/connections/${link}`, { token: acme.api_key })).json.events;
  assert.ok(events.some((e) => e.type === "mcp_revoked"));
  assert.deepEqual(asked, [
    `GET /v1/me/connections/${link}/assistants`,
    `DELETE /v1/me/connections/${link}/assistants/${grant}`,
    `GET /v1/me/connections/${link}/assistants`,
  ]);
  assert.equal(await page.evaluate(() => document.querySelector("keap-link").shadowRoot.activeElement?.dataset.action), "assistants");

  // Closed again: the list leaves, with no request.
  await toggle.click();
  assert.equal(await toggle.getAttribute("aria-expanded"), "false");
  assert.equal(await item.locator("[data-assistants]").count(), 0);
  assert.equal(asked.length, 3);

  // Revoked elsewhere (another tab) while this page still lists it: its Revoke here is what the
  // user wanted, not an error; the list shown is what remains.
  await toggle.click();
  await rows.first().waitFor();
  const docsGrant = await docs.getAttribute("data-assistant");
  const elsewhere = await call(stack.url, "DELETE", `/v1/me/connections/${link}/assistants/${docsGrant}`, { token: await mintSession(acme, "u1") });
  assert.equal(elsewhere.status, 204);
  // The browser logs the 404 the widget is about to get and take as "revoked already".
  pages.expect(/^Failed to load resource: .* 404/);
  await page.getByRole("button", { name: "Revoke Docs <b>helper</b>", exact: true }).click();
  await page.waitForFunction(() => /Connected assistants \(0\)/.test(document.querySelector("keap-link").shadowRoot.querySelector("[data-action=assistants]")?.textContent ?? ""));
  assert.equal(await page.locator("keap-link .live", { hasText: "Assistant's access revoked." }).count(), 1);
  assert.equal(await page.locator("keap-link .live", { hasText: "Something went wrong" }).count(), 0);
  assert.equal((await mcp(other.access_token)).status, 401);
  await page.close();
});

/** The widget's area with a margin of the page, light, at 1x, for the README. */
async function shootWidget(page) {
  await page.setViewportSize({ width: 640, height: 720 });
  const box = await page.locator("keap-link").boundingBox();
  const m = 12;
  const clip = { x: Math.max(0, box.x - m), y: Math.max(0, box.y - m), width: box.width + 2 * m, height: box.height + 2 * m };
  const image = await page.screenshot({ clip, scale: "css", animations: "disabled", caret: "hide" });
  await writeFile(await artifactPath("widget-assistants.png"), image);
  if (process.env.KEAPLINK_DOCS_SCREENSHOTS === "1") await writeFile(join(ROOT, "docs", "widget-assistants.png"), image);
}
