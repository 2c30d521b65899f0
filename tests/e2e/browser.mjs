// Launches Debian's Chromium headless with the flags this closed network needs, and watches the
// pages a browser test opens: any page error, unhandled rejection or console error it did not
// expect fails the test that was running.
import { chromium } from "playwright-core";
import { afterEach } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

const launchOptions = {
  executablePath: process.env.CHROMIUM_BIN ?? "/usr/bin/chromium",
  headless: true,
  // Without the background-networking flags Chromium keeps dialling hosts this network refuses.
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
  ],
};

export function launchBrowser() {
  return chromium.launch(launchOptions);
}

/** A persistent profile in a fresh folder: what a real shared browser keeps between visits. */
export async function launchProfile() {
  const dir = await mkdtemp(join(tmpdir(), "keaplink-profile-"));
  return chromium.launchPersistentContext(dir, launchOptions);
}

/**
 * Call once at the top of a browser test file. `watch(context)` follows every page the context
 * opens (popups included); after each test, whatever those pages raised fails it: page errors
 * (Chromium reports unhandled rejections as page errors too) and console errors, except those
 * the test declared with `expect(pattern)` (cleared after each test).
 */
export function failOnPageErrors() {
  const problems = [];
  let expected = [];
  const onPage = (page) => {
    page.on("pageerror", (err) => problems.push(`${page.url()}: page error: ${err.message}`));
    page.on("console", (msg) => {
      if (msg.type() !== "error") return;
      const text = msg.text();
      // A failed load names the resource in its location, not in its text.
      const where = msg.location().url || page.url();
      if (!expected.some((re) => re.test(text))) problems.push(`${where}: console error: ${text}`);
    });
  };
  afterEach(() => {
    const found = problems.splice(0);
    expected = [];
    assert.deepEqual(found, [], "the pages raised errors");
  });
  return {
    watch(context) {
      context.pages().forEach(onPage);
      context.on("page", onPage);
      return context;
    },
    /** Console errors matching `pattern` are expected in the current test. */
    expect(...patterns) {
      expected.push(...patterns);
    },
  };
}

/**
 * On Keap's pages (the sandbox's) in `page`: signs in as `email` if Keap asks (it does not when
 * its SSO session is still there), and waits for the consent page.
 */
export async function signInAtKeap(page, email, password = "keap") {
  await page.waitForSelector("body[data-page]");
  if ((await page.getAttribute("body", "data-page")) === "login") {
    await page.fill("input[name=email]", email);
    await page.fill("input[name=password]", password);
    await page.click("button[type=submit]");
    await page.waitForSelector('body[data-page="consent"]');
  }
}

/** Console lines Chromium itself writes when a fetch answers `status`. */
export const failedLoad = (status) => new RegExp(`^Failed to load resource: the server responded with a status of ${status}\\b`);
