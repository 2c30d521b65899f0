// Starts the real Worker under `wrangler dev` (workerd, local KV in a fresh temp folder) on
// loopback ports, and stops it. Every test file owns its own instance.
import { spawn } from "node:child_process";
import { mkdtemp, rm, mkdir } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const ARTIFACTS = join(ROOT, "tests", "artifacts");

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function waitFor(url, deadlineMs, exited) {
  const until = Date.now() + deadlineMs;
  let lastErr;
  while (Date.now() < until) {
    if (exited()) throw new Error(`the Worker exited before answering ${url}`);
    try {
      const res = await fetch(url);
      if (res.ok) return;
      lastErr = new Error(`status ${res.status}`);
    } catch (err) {
      lastErr = err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${url} did not answer within ${deadlineMs} ms: ${lastErr}`);
}

/**
 * Starts `wrangler dev` with the given `--var`s. Returns `{ url, logs, stop }`; `logs` collects
 * everything the Worker printed, for tests that check what it logs.
 */
export async function startWorker({ vars = {} } = {}) {
  const port = await freePort();
  const inspectorPort = await freePort();
  const persist = await mkdtemp(join(tmpdir(), "keaplink-kv-"));
  const args = [
    "dev",
    "--ip", "127.0.0.1",
    "--port", String(port),
    "--inspector-port", String(inspectorPort),
    "--test-scheduled",
    "--persist-to", persist,
    "--show-interactive-dev-session=false",
  ];
  for (const [name, value] of Object.entries(vars)) args.push("--var", `${name}:${value}`);

  const child = spawn(join(ROOT, "node_modules", ".bin", "wrangler"), args, {
    cwd: ROOT,
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CLOUDFLARE_CF_FETCH_ENABLED: "false" },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true, // its own process group, so stop() reaches workerd too
  });
  const logs = [];
  child.stdout.on("data", (d) => logs.push(d.toString()));
  child.stderr.on("data", (d) => logs.push(d.toString()));
  let exited = false;
  const exit = new Promise((resolve) => child.once("exit", () => { exited = true; resolve(); }));

  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (!exited) {
      try { process.kill(-child.pid, "SIGTERM"); } catch { /* already gone */ }
      await Promise.race([exit, new Promise((r) => setTimeout(r, 5000))]);
      if (!exited) try { process.kill(-child.pid, "SIGKILL"); } catch { /* gone */ }
    }
    await rm(persist, { recursive: true, force: true });
  };
  try {
    await waitFor(`${url}/healthz`, 60_000, () => exited);
  } catch (err) {
    await stop();
    throw new Error(`${err.message}\n--- wrangler output ---\n${logs.join("")}`);
  }
  return { url, logs, stop };
}

export async function artifactPath(name) {
  await mkdir(ARTIFACTS, { recursive: true });
  return join(ARTIFACTS, name);
}
