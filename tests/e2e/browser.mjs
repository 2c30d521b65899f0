// Launches Debian's Chromium headless with the flags this closed network needs.
import { chromium } from "playwright-core";
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
