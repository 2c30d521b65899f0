// keaplink's consent page for an MCP client, in Chromium, as a user meets it: the assistant's
// authorize URL, the partner's sign-in (played here: a page of the partner that posts the request
// and a session JWT back to keaplink), the consent page under its strict CSP (no console error,
// readable at 390 px, the client's name marked unverified, the user's links by business name),
// then Allow back to the client with its code. Screenshots go to tests/artifacts/, and over
// docs/mcp-consent.png when KEAPLINK_DOCS_SCREENSHOTS=1.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { SignJWT } from "jose";
import { startStack, artifactPath, record, ROOT } from "./harness.mjs";
import { call, linkUser, putPartner } from "./client.mjs";
import { launchProfile, failOnPageErrors } from "./browser.mjs";

const pages = failOnPageErrors();
let stack;
let acme;
let context;

before(async () => {
  stack = await startStack();
  acme = await putPartner(stack.url, "acme", {
    name: "Acme Booking",
    origins: ["https://acme.example"],
    extra: { mcp: { enabled: true, sign_in_url: "https://acme.example/keaplink-mcp", tools: "read_write" } },
  });
  await linkUser(stack, acme, "u1", "ann@ab123.example");
  await linkUser(stack, acme, "u1", "bob@cd456.example");
  context = pages.watch(await launchProfile());
});
after(async () => {
  await context?.close();
  await stack?.stop();
});

async function screenshot(page, name) {
  const image = await page.screenshot({ fullPage: true, animations: "disabled", caret: "hide" });
  await writeFile(await artifactPath(name), image);
  if (process.env.KEAPLINK_DOCS_SCREENSHOTS === "1") await writeFile(join(ROOT, "docs", name), image);
}

test("the consent page: strict, readable on a phone, and Allow sends the client its code", async () => {
  const redirect = "http://127.0.0.1:9/callback";
  const reg = await call(stack.url, "POST", "/mcp/oauth/register", { body: { client_name: "Claude", redirect_uris: [redirect] } });
  const verifier = randomBytes(32).toString("base64url");
  record("secrets", { values: [verifier] });
  const q = new URLSearchParams({
    response_type: "code", client_id: reg.json.client_id, redirect_uri: redirect, state: "s-1",
    code_challenge: createHash("sha256").update(verifier).digest("base64url"), code_challenge_method: "S256",
    resource: `${stack.url}/mcp/acme`, scope: "keap.read keap.write",
  });
  // The partner's sign-in: signs u1 in and posts the request back with a session JWT for it.
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
  await page.setViewportSize({ width: 390, height: 844 });
  // The assistant opens the authorize URL; keaplink sends the browser to the partner's sign-in
  // (followed here by hand: Chromium's interception does not see a redirect's next request).
  const start = await call(stack.url, "GET", `/mcp/oauth/authorize?${q}`);
  assert.equal(start.status, 302);
  await page.goto(start.headers.get("location"));
  const [consent] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${stack.url}/mcp/oauth/continue`),
    page.click("button"),
  ]);
  assert.equal(consent.status(), 200);
  assert.match(consent.headers()["content-security-policy"], /^default-src 'none'; style-src 'sha256-/);
  assert.equal(consent.headers()["x-frame-options"], "DENY");
  await page.waitForSelector("text=Allow Claude to use Keap?");
  assert.match(await page.textContent("main"), /not verified/);
  assert.match(await page.textContent("main"), /Acme Booking/);
  // Both of the user's links, by business name; both access choices (the partner allows writing).
  assert.equal(await page.locator('input[name="connection"]').count(), 2);
  assert.equal(await page.locator('input[name="access"]').count(), 2);
  // Readable at 390 px: nothing wider than the screen.
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 390));
  await screenshot(page, "mcp-consent.png");
  await page.check('input[value="read_write"]');
  await page.click('button[value="allow"]');
  await page.waitForURL(/^http:\/\/127\.0\.0\.1:9\/callback/);
  assert.equal(back.searchParams.get("state"), "s-1");
  assert.equal(back.searchParams.get("iss"), stack.url);
  const code = back.searchParams.get("code");
  record("secrets", { values: [code] });
  const tokens = await call(stack.url, "POST", "/mcp/oauth/token", {
    raw: new URLSearchParams({ grant_type: "authorization_code", code, redirect_uri: redirect, code_verifier: verifier, client_id: reg.json.client_id }).toString(),
    headers: { "content-type": "application/x-www-form-urlencoded" },
  });
  record("secrets", { values: [tokens.json.access_token, tokens.json.refresh_token] });
  assert.equal(tokens.json.scope, "keap.read keap.write");
});
